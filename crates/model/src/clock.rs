//! Time in the model: a clock that never stands still and a state space that
//! stays finite.
//!
//! The rules compare stored times with "now": a reservation is due when it
//! was created (or last advanced) at or before `now - ttl`, a lease when its
//! end is at or before `now`. The model keeps `now` fixed at [`NOW_MS`] and,
//! when time passes, ages every stored time by [`TICK_MS`] instead, never
//! below [`FLOOR_MS`]. Every comparison the rules make is preserved, because
//! each compares a stored time with `now` minus a constant no larger than the
//! horizon, and every time at the floor is already past all of them. The
//! stored times then take a handful of values, so ticking adds finitely many
//! states, and a tick that ages nothing is no step at all.

/// The model's "now", in milliseconds since the epoch: fixed, while stored
/// times age.
pub const NOW_MS: i64 = 1_000_000;

/// How much time one tick of the clock lets pass.
pub const TICK_MS: i64 = 1_000;

/// A reservation's time to live: one tick, so that any reservation may expire
/// at any point after it was made.
pub const RESERVATION_TTL_MS: i64 = TICK_MS;

/// How long a consumer's lease lasts: one tick, so that any lease may run out
/// under its holder.
pub const LEASE_MS: u64 = TICK_MS as u64;

/// The oldest a stored time gets: past every cutoff the rules use.
pub const FLOOR_MS: i64 = NOW_MS - TICK_MS;

const _: () = assert!(RESERVATION_TTL_MS <= NOW_MS - FLOOR_MS);
const _: () = assert!(FLOOR_MS <= NOW_MS - RESERVATION_TTL_MS);
const _: () = assert!(LEASE_MS as i64 <= TICK_MS);
const _: () = assert!(LEASE_MS >= stockroom_domain::outbox::MIN_LEASE_MS);

/// A stored time one tick later. A time at or before now is past every
/// comparison the rules make with it (a lease that ran out, a reservation
/// that is due), so it goes straight to the floor: one state, not two.
pub fn aged(time_ms: i64) -> i64 {
    let older = time_ms - TICK_MS;
    if older <= NOW_MS { FLOOR_MS } else { older }
}

/// The sweep's cutoff: reservations last advanced at or before it are due.
pub fn sweep_cutoff_ms() -> i64 {
    NOW_MS - RESERVATION_TTL_MS
}
