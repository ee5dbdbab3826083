//! One test per scenario, asserting both halves: the naive system shows the
//! race and the fixed system shows no violation under the same load.

use stockroom_lab::{Scenario, run_scenario};
use stockroom_launcher::InProcessLauncher;

async fn both_halves(scenario: Scenario) {
    let result = run_scenario(
        scenario,
        stockroom_naive::DEFAULT_RACE_WINDOW_MS,
        &InProcessLauncher,
    )
    .await
    .expect("the scenario runs");
    assert!(
        result.naive_reproduced,
        "{}: the naive system did not show its race: {:?}",
        scenario.name(),
        result.naive_anomalies
    );
    assert_eq!(
        result.fixed_violations,
        0,
        "{}: the fixed system broke an invariant: {:?}",
        scenario.name(),
        result.fixed_details
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_status_update() {
    both_halves(Scenario::LostUpdate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_then_reserve_in_storage() {
    both_halves(Scenario::Toctou).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_file_writes() {
    both_halves(Scenario::TornWrites).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_order_object() {
    both_halves(Scenario::StaleOrder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_reserve_as_two_calls() {
    both_halves(Scenario::TwoCalls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_before_reserve() {
    both_halves(Scenario::PayBeforeReserve).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_delivery() {
    both_halves(Scenario::DuplicateDelivery).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_holder_paused_past_its_timeout() {
    both_halves(Scenario::LockExpiry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_publish_and_mark_sent() {
    both_halves(Scenario::CrashAfterPublish).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_then_reserve_on_two_hosts() {
    both_halves(Scenario::TwoHosts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchase_limit_checked_then_ordered() {
    both_halves(Scenario::LimitBypass).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_adjusted_from_a_stale_read() {
    both_halves(Scenario::StaleAdjustment).await;
}
