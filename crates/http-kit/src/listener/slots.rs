//! A listener's connection slots, shared fairly.
//!
//! A full listener used to refuse every new connection, so whoever opened
//! connections first and never finished a request kept the service to
//! themselves. Now a connection that is waiting for a request head (new, or
//! idle between requests) holds its slot only until someone needs it: when
//! the listener is full, the connection that has waited longest is closed to
//! admit the new one. A connection that is serving a request is never
//! closed for another; its request is bounded in time instead (the body
//! deadline, the write-stall timeout).
//!
//! Each peer (an IPv4 address, or an IPv6 /64) may also hold at most its
//! share of the slots, so one client cannot fill the listener with requests
//! in flight either: a peer at its share that opens another connection
//! closes its own longest-waiting one, or is refused.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

/// The address a client's connections are counted under: an IPv4 address,
/// or the /64 prefix of an IPv6 address (one subscriber usually holds a whole
/// /64, so counting single IPv6 addresses would give one client billions of
/// shares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(IpAddr);

impl PeerKey {
    pub fn of(address: IpAddr) -> PeerKey {
        match address.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !(u128::MAX >> 64);
                PeerKey(IpAddr::V6(prefix.into()))
            }
            v4 => PeerKey(v4),
        }
    }
}

impl std::fmt::Display for PeerKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(address) => address.fmt(formatter),
            IpAddr::V6(prefix) => write!(formatter, "{prefix}/64"),
        }
    }
}

/// One connection's entry.
struct Entry {
    peer: PeerKey,
    /// Since when it has been waiting for a request head; `None` while it
    /// serves a request.
    waiting_since: Option<Instant>,
    evict: Arc<Notify>,
}

/// What one peer holds.
#[derive(Default)]
struct PeerSlots {
    connections: usize,
    /// Its connections waiting for a request head, oldest first.
    waiting: BTreeSet<(Instant, u64)>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    /// Every connection waiting for a request head, oldest first.
    waiting: BTreeSet<(Instant, u64)>,
    peers: HashMap<PeerKey, PeerSlots>,
    evicted: u64,
}

impl Table {
    fn stop_waiting(&mut self, id: u64) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if let Some(since) = entry.waiting_since.take() {
            self.waiting.remove(&(since, id));
            if let Some(peer) = self.peers.get_mut(&entry.peer) {
                peer.waiting.remove(&(since, id));
            }
        }
    }

    fn start_waiting(&mut self, id: u64, now: Instant) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.waiting_since.is_none() {
            entry.waiting_since = Some(now);
            self.waiting.insert((now, id));
            self.peers
                .entry(entry.peer)
                .or_default()
                .waiting
                .insert((now, id));
        }
    }

    /// Forgets a connection; returns its entry if it was still held.
    fn remove(&mut self, id: u64) -> Option<Entry> {
        self.stop_waiting(id);
        let entry = self.entries.remove(&id)?;
        if let Some(peer) = self.peers.get_mut(&entry.peer) {
            peer.connections -= 1;
            if peer.connections == 0 {
                self.peers.remove(&entry.peer);
            }
        }
        Some(entry)
    }
}

/// The slots of one listener. Cloning shares them.
#[derive(Clone)]
pub(crate) struct Slots {
    table: Arc<Mutex<Table>>,
    max_connections: usize,
    max_per_peer: usize,
}

/// What admitting a connection did.
pub(crate) enum Admission {
    /// The connection holds a slot; `evicted` says whether another
    /// connection was closed to make room.
    Admitted { slot: Slot, evicted: bool },
    /// No slot could be had: every connection that could give way is
    /// serving a request.
    Refused,
}

impl Slots {
    pub fn new(max_connections: usize, max_per_peer: usize) -> Slots {
        assert!(max_connections > 0 && max_per_peer > 0);
        Slots {
            table: Arc::default(),
            max_connections,
            max_per_peer: max_per_peer.min(max_connections),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table holds plain values, consistent after every statement.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Gives a new connection from `peer` a slot, closing the connection
    /// that has waited longest for a request head if the listener (or the
    /// peer's share) is full.
    pub fn admit(&self, peer: PeerKey) -> Admission {
        let now = Instant::now();
        let mut table = self.lock();
        let held_by_peer = table.peers.get(&peer).map_or(0, |p| p.connections);
        let victim = if held_by_peer >= self.max_per_peer {
            match table.peers.get(&peer).and_then(|p| p.waiting.first()) {
                Some(&(_, id)) => Some(id),
                None => return Admission::Refused,
            }
        } else if table.entries.len() >= self.max_connections {
            match table.waiting.first() {
                Some(&(_, id)) => Some(id),
                None => return Admission::Refused,
            }
        } else {
            None
        };
        if let Some(victim) = victim
            && let Some(entry) = table.remove(victim)
        {
            table.evicted += 1;
            entry.evict.notify_one();
        }
        let id = table.next_id;
        table.next_id += 1;
        let evict = Arc::new(Notify::new());
        table.entries.insert(
            id,
            Entry {
                peer,
                waiting_since: None,
                evict: Arc::clone(&evict),
            },
        );
        table.peers.entry(peer).or_default().connections += 1;
        table.start_waiting(id, now);
        Admission::Admitted {
            slot: Slot {
                slots: self.clone(),
                id,
                evict,
            },
            evicted: victim.is_some(),
        }
    }

    /// How many connections were closed to make room so far.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }

    /// How many connections hold a slot.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.lock().entries.len()
    }
}

/// A connection's slot; dropping it frees the slot.
pub(crate) struct Slot {
    slots: Slots,
    id: u64,
    evict: Arc<Notify>,
}

impl Slot {
    /// Completes when the slot was given to a newer connection: the
    /// connection must close.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    /// Marks the connection as serving a request, so that it is never
    /// closed for another. `None` when it was already evicted: the request
    /// must not run.
    pub fn begin_request(&self) -> Option<RequestMark> {
        let mut table = self.slots.lock();
        if !table.entries.contains_key(&self.id) {
            return None;
        }
        table.stop_waiting(self.id);
        Some(RequestMark {
            slots: self.slots.clone(),
            id: self.id,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().remove(self.id);
    }
}

/// Held while a connection serves a request; dropping it (the response has
/// been sent, or abandoned) makes the connection wait for its next request
/// head, and so able to give way again.
pub(crate) struct RequestMark {
    slots: Slots,
    id: u64,
}

impl Drop for RequestMark {
    fn drop(&mut self) {
        self.slots.lock().start_waiting(self.id, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(text: &str) -> PeerKey {
        PeerKey::of(text.parse().unwrap())
    }

    fn admitted(admission: Admission) -> (Slot, bool) {
        match admission {
            Admission::Admitted { slot, evicted } => (slot, evicted),
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn a_full_listener_closes_its_longest_waiting_connection() {
        let slots = Slots::new(3, 3);
        let (first, _) = admitted(slots.admit(peer("10.0.0.1")));
        let (second, _) = admitted(slots.admit(peer("10.0.0.2")));
        let (third, _) = admitted(slots.admit(peer("10.0.0.3")));
        // The first is serving a request: it cannot give way.
        let _serving = first.begin_request().unwrap();
        let (_fourth, evicted) = admitted(slots.admit(peer("10.0.0.4")));
        assert!(evicted);
        assert!(second.begin_request().is_none(), "the second gave way");
        assert!(third.begin_request().is_some());
        assert_eq!(slots.held(), 3);
        assert_eq!(slots.evicted(), 1);
    }

    #[test]
    fn a_full_listener_of_requests_in_flight_refuses() {
        let slots = Slots::new(2, 2);
        let (first, _) = admitted(slots.admit(peer("10.0.0.1")));
        let (second, _) = admitted(slots.admit(peer("10.0.0.2")));
        let first_request = first.begin_request().unwrap();
        let _second_request = second.begin_request().unwrap();
        assert!(matches!(slots.admit(peer("10.0.0.3")), Admission::Refused));
        // Once its response is sent, the first waits again and gives way.
        drop(first_request);
        let (_third, evicted) = admitted(slots.admit(peer("10.0.0.3")));
        assert!(evicted);
        assert!(first.begin_request().is_none());
    }

    #[test]
    fn a_peer_at_its_share_closes_its_own_connections_first() {
        let slots = Slots::new(4, 2);
        let (greedy_one, _) = admitted(slots.admit(peer("10.0.0.1")));
        let (other, _) = admitted(slots.admit(peer("10.0.0.2")));
        let (greedy_two, _) = admitted(slots.admit(peer("10.0.0.1")));
        // The listener has room, but 10.0.0.1 has its share: its own oldest
        // waiting connection gives way, not the other peer's.
        let (_greedy_three, evicted) = admitted(slots.admit(peer("10.0.0.1")));
        assert!(evicted);
        assert!(greedy_one.begin_request().is_none());
        assert!(other.begin_request().is_some());
        // With both of its connections busy, it is refused.
        let _busy = greedy_two.begin_request().unwrap();
        let _busy_too = _greedy_three.begin_request().unwrap();
        assert!(matches!(slots.admit(peer("10.0.0.1")), Admission::Refused));
        admitted(slots.admit(peer("10.0.0.3")));
    }

    #[test]
    fn ipv6_peers_are_counted_by_their_64_prefix() {
        assert_eq!(peer("2001:db8:1:2::1"), peer("2001:db8:1:2:ffff::9"));
        assert_ne!(peer("2001:db8:1:2::1"), peer("2001:db8:1:3::1"));
        assert_eq!(peer("::ffff:10.0.0.1"), peer("10.0.0.1"));
        assert_eq!(peer("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }
}
