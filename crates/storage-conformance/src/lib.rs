//! The contract tests every Stockroom storage backend must pass.
//!
//! Each public async function is one test. It receives a
//! [`support::Store`] holding a fresh, empty database, drives it with real
//! concurrency (many tokio tasks at once, which on a pooled backend means
//! many connections at once), asserts the contract of
//! [`stockroom_storage::Storage`], and ends by checking the invariants that
//! must hold after any sequence of calls (see [`support::assert_invariants`]).
//!
//! A backend runs the whole suite from one integration-test file with
//! [`conformance_tests!`], giving it a runner that builds a fresh database,
//! calls the test, and cleans up:
//!
//! ```text
//! async fn run<F, Fut>(name: &'static str, test: F)
//! where
//!     F: FnOnce(Arc<dyn TestStorage>) -> Fut,
//!     Fut: Future<Output = ()> + Send + 'static,
//! { /* make a fresh database, then test(storage).await */ }
//!
//! stockroom_storage_conformance::conformance_tests!(run);
//! ```

mod idempotency;
mod orders;
mod outbox;
mod reservation;
mod shop;
mod stock;
pub mod support;

pub use idempotency::{
    concurrent_same_key_requests_create_one_order, idempotent_replay_and_key_reuse,
    retention_prunes_only_what_is_old,
};
pub use orders::{
    cancel_is_idempotent_and_refused_after_charge, concurrent_cancel_and_payment_pick_one_winner,
    duplicate_events_have_no_second_effect, payment_and_settlement_move_forward_only,
    sweep_ends_every_overdue_reservation_once,
};
pub use outbox::{
    a_batchs_events_are_settled_one_by_one, concurrent_leasers_never_share_a_delivery,
    events_carry_their_calls_trace_context,
    late_receipts_racing_new_leases_acknowledge_each_event_once,
    only_poison_is_dead_lettered_and_redrive_restores_it, provider_charges_are_kept_by_key,
    reserved_orders_are_leased_until_acknowledged,
};
pub use reservation::{
    batched_requests_each_get_their_own_result, concurrent_batches_never_oversell,
    concurrent_single_unit_orders_never_oversell, multi_item_reservation_is_all_or_nothing,
    opposite_lock_orders_never_deadlock,
};
pub use shop::{
    an_extension_never_races_the_sweep, concurrent_adjustments_lose_no_update,
    concurrent_orders_of_one_customer_never_pass_a_limit,
    the_ledger_records_every_change_in_commit_order,
};
pub use stock::{
    constraint_violations_are_one_error_kind, order_listing_filters_and_pages,
    stock_loading_restock_and_lookup,
};

/// Defines one `#[tokio::test]` per conformance test, each calling
/// `$run(name, test)`. `$run` is an async function of the calling test file
/// that makes a fresh database, hands it to `test` as an `Arc<dyn TestStorage>`,
/// and cleans up afterwards. The calling crate needs `tokio` with the
/// `macros` and `rt-multi-thread` features.
///
/// This list is the one place naming every test: a test added to the suite
/// runs on every backend at once.
#[macro_export]
macro_rules! conformance_tests {
    ($run:path) => {
        $crate::conformance_tests!(@each $run;
            concurrent_single_unit_orders_never_oversell,
            concurrent_batches_never_oversell,
            batched_requests_each_get_their_own_result,
            multi_item_reservation_is_all_or_nothing,
            opposite_lock_orders_never_deadlock,
            payment_and_settlement_move_forward_only,
            duplicate_events_have_no_second_effect,
            concurrent_cancel_and_payment_pick_one_winner,
            cancel_is_idempotent_and_refused_after_charge,
            sweep_ends_every_overdue_reservation_once,
            reserved_orders_are_leased_until_acknowledged,
            a_batchs_events_are_settled_one_by_one,
            only_poison_is_dead_lettered_and_redrive_restores_it,
            concurrent_leasers_never_share_a_delivery,
            late_receipts_racing_new_leases_acknowledge_each_event_once,
            events_carry_their_calls_trace_context,
            idempotent_replay_and_key_reuse,
            concurrent_same_key_requests_create_one_order,
            stock_loading_restock_and_lookup,
            order_listing_filters_and_pages,
            constraint_violations_are_one_error_kind,
            provider_charges_are_kept_by_key,
            retention_prunes_only_what_is_old,
            concurrent_orders_of_one_customer_never_pass_a_limit,
            the_ledger_records_every_change_in_commit_order,
            concurrent_adjustments_lose_no_update,
            an_extension_never_races_the_sweep,
        );
    };
    (@each $run:path; $($test:ident),+ $(,)?) => {
        $(
            // Several worker threads, so that the tasks of one test really
            // run at the same time, not just interleave on one thread.
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() {
                $run(stringify!($test), $crate::$test).await;
            }
        )+
    };
}
