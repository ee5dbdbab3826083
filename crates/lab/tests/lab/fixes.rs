//! The fix lab's verdicts, pinned: every proposed fix against every scenario,
//! each cell decided by a run and judged by every invariant the checker and
//! the lab's probes know. A cell expected to break gets bounded retries
//! ([`BREAK_ATTEMPTS`]; a race is a matter of chance) and passes when any
//! invariant breaks (the scenario's own race, or a finding); a cell expected
//! to hold runs once, and fails the test if anything breaks or more than a
//! tenth of its orders fail. The Redis rows run against the real Redis in
//! `STOCKROOM_TEST_REDIS_URL` (under CI a missing one fails the test instead
//! of skipping it).

use stockroom_lab::lab::MAX_NAIVE_ATTEMPTS;
use stockroom_lab::{FixLabConfig, FixSubject, Scenario, Verdict, run_cell};
use stockroom_launcher::InProcessLauncher;
use stockroom_naive::Fix;

/// Runs a cell expected to break gets before the test calls it held. Twice
/// the lab's own bound: on a loaded CI machine one bug can mask another (lost
/// updates can hide an oversell by overwriting the stock it would show in), so
/// the test gives chance more room than the interactive lab does.
const BREAK_ATTEMPTS: u32 = 2 * MAX_NAIVE_ATTEMPTS;

/// What a cell is expected to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Nothing breaks and at most a tenth of the orders fail.
    Holds,
    /// The scenario's race, or another invariant (a finding).
    Broken,
}

const H: Expect = Expect::Holds;
const B: Expect = Expect::Broken;

impl Expect {
    fn accepts(self, verdict: Verdict) -> bool {
        match self {
            Expect::Holds => verdict == Verdict::Holds,
            Expect::Broken => matches!(verdict, Verdict::Breaks | Verdict::Finding),
        }
    }
}

/// The Redis for the Redis rows, or `None` (test skipped) outside CI.
fn redis_url() -> Option<String> {
    match std::env::var("STOCKROOM_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("STOCKROOM_TEST_REDIS_URL is not set, and CI must run the Redis rows")
        }
        _ => {
            eprintln!("skipped: STOCKROOM_TEST_REDIS_URL is not set");
            None
        }
    }
}

/// Runs every scenario against `subject` and checks each verdict against
/// `expected` (in [`Scenario::FIX_MATRIX`]'s order).
async fn pin(subject: FixSubject, expected: [Expect; Scenario::FIX_MATRIX.len()]) {
    let redis = match subject {
        FixSubject::Naive(fix) if fix.needs_redis() => match redis_url() {
            Some(url) => Some(url),
            None => return,
        },
        _ => None,
    };
    let mut wrong = Vec::new();
    for (scenario, expect) in Scenario::FIX_MATRIX.iter().copied().zip(expected) {
        let mut config = FixLabConfig::new(stockroom_naive::DEFAULT_RACE_WINDOW_MS, redis.clone());
        config.attempts = if expect == B { BREAK_ATTEMPTS } else { 1 };
        let cell = run_cell(subject, scenario, &config, &InProcessLauncher).await;
        assert_ne!(
            cell.verdict,
            Verdict::NotRun,
            "{} on {}: {}",
            subject.name(),
            scenario.name(),
            cell.evidence
        );
        if !expect.accepts(cell.verdict) {
            wrong.push(format!(
                "{}: expected {expect:?}, got {:?} ({})",
                scenario.name(),
                cell.verdict,
                cell.evidence
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}:\n{}",
        subject.name(),
        wrong.join("\n")
    );
}

// Columns: lost-update, toctou, torn-writes, stale-order, two-calls,
// pay-before-reserve, duplicate-delivery, lock-expiry, crash-after-publish,
// two-hosts.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fix_breaks_everywhere() {
    pin(FixSubject::Naive(Fix::None), [B, B, B, B, B, B, B, B, B, B]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_lock_on_write_as_written() {
    pin(
        FixSubject::Naive(Fix::FileLockOnWrite),
        [B, B, B, B, B, B, B, B, B, B],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_read_modify_write_with_atomic_replace() {
    pin(
        FixSubject::Naive(Fix::LockedAtomicReplace),
        [H, H, H, B, B, B, B, B, B, B],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_check_in_memory_as_written() {
    pin(
        FixSubject::Naive(Fix::VersionInMemory),
        [B, B, B, B, B, B, B, B, B, B],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_compare_and_swap() {
    pin(
        FixSubject::Naive(Fix::VersionCompareAndSwap),
        [H, H, B, H, B, B, B, B, B, B],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_reserve_under_one_lock_as_written() {
    pin(
        FixSubject::Naive(Fix::CheckAndReserveUnderLock),
        [B, B, B, B, B, B, B, B, B, B],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_transaction_as_written() {
    pin(
        FixSubject::Naive(Fix::SqliteTransaction),
        [H, H, H, B, H, B, B, B, B, B],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_publisher_dedupe_as_written() {
    pin(
        FixSubject::Naive(Fix::RedisPublisherDedupe),
        [B, B, B, B, B, B, B, B, B, B],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_events_record_with_the_effect() {
    pin(
        FixSubject::Naive(Fix::ProcessedEventsRecord),
        [B, B, B, B, B, B, B, B, B, B],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lock_alone() {
    pin(
        FixSubject::Naive(Fix::RedisLock),
        [B, B, B, B, B, B, B, B, B, B],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lock_with_fencing_tokens() {
    pin(
        FixSubject::Naive(Fix::RedisLockFencing),
        [B, B, B, B, B, B, B, B, B, B],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lock_around_a_conditional_update_as_deployed() {
    pin(
        FixSubject::Naive(Fix::RedisLockConditionalUpdate),
        [B, B, B, B, B, B, B, B, B, B],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stockroom_as_shipped_holds_everywhere() {
    pin(FixSubject::Stockroom, [H, H, H, H, H, H, H, H, H, H]).await;
}
