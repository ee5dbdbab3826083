//! Deciding a batch ahead of its stock locks.
//!
//! On a catalogue of many products, two batches in flight almost always
//! share a few products, and with every stock row locked before the rules
//! decide, the second batch waited for the first one's whole write and
//! commit before it could decide anything: one collector idled while the
//! other committed. Deciding ahead takes the lock at the write instead.
//!
//! A batch decided ahead takes each product's figures from what the latest
//! batch of this process decided for it ([`StockView`]), which is what the
//! row will hold once that batch commits, and reads without a lock only the
//! products the view has no figures for. The rules decide on those figures;
//! the batch writes its new rows (orders, events), then locks its products
//! in the global order, checks that every row holds the figures it decided
//! on and that every order whose units it moves has the version it read,
//! and writes the rest. Anything that moved (a batch of this process that
//! failed, another process's batch) undoes the whole transaction, and the
//! batch runs again with its products locked before it decides, as every
//! batch did before. So no decision ever rests on figures other than those
//! its products hold under its lock: the check is what makes it safe, the
//! view only what makes it usually pass.
//!
//! Only the calls of a sale are decided ahead (reservations, payments,
//! settlements, releases, sweeps, extensions) on products without a
//! purchase limit: a limited product's holdings, and an operator's changes,
//! are decided under the lock as before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use stockroom_domain::rules::{Book, ProductState};
use stockroom_storage::StorageError;
use stockroom_storage::batch::{Answer, Command, Needs, Writes, decide};
use tokio::sync::watch;

/// The most products the view remembers. Past it the view forgets the
/// products of batches that have finished, which then cost the next batch
/// that touches them nothing but an unlocked read. A sale's catalogue fits.
pub const MAX_VIEW_PRODUCTS: usize = 100_000;

/// How long every batch locks its stock before deciding after a batch
/// decided ahead found its stock changed by someone else: another process
/// sells the same products, and deciding ahead would fail again.
pub const LOCK_FIRST_AFTER_MISMATCH_MS: u64 = 1_000;

/// A product's figures as the latest batch of this process decided them.
#[derive(Debug, Clone)]
struct Decided {
    name: String,
    state: ProductState,
    /// That batch's number; it is in flight while it is in
    /// [`StockView::open`].
    batch: u64,
}

/// The figures this process's batches decided, per product, and the order
/// in which batches decided ahead take their locks.
#[derive(Debug, Default)]
pub(crate) struct StockView {
    products: HashMap<String, Decided>,
    /// The products each batch in flight decided, by its number.
    open: HashMap<u64, Vec<String>>,
    next_batch: u64,
    /// The lock turn of the latest batch decided ahead: the next one sends
    /// its lock after this one holds its own, so that of two batches that
    /// share a product the one that decided first locks it first.
    last_turn: Option<watch::Receiver<bool>>,
    /// Until when batches lock before deciding.
    lock_first_until: Option<Instant>,
}

/// What a batch decided ahead carries to its write.
pub(crate) struct Plan {
    pub answers: Vec<Result<Answer, StorageError>>,
    pub writes: Writes,
    /// Every product the batch loaded, with the figures it decided on, sorted
    /// by key (the lock order).
    pub expected: Vec<(String, ProductState)>,
    pub turn: Turn,
    pub batch: u64,
}

/// A batch's place in the lock order.
pub(crate) struct Turn {
    previous: Option<watch::Receiver<bool>>,
    own: watch::Sender<bool>,
}

impl Turn {
    /// Waits until the batch decided before this one holds its locks (or
    /// has failed).
    pub(crate) async fn wait_for_previous(&mut self) {
        if let Some(previous) = &mut self.previous {
            // An error means that batch is gone: nothing to wait for.
            let _ = previous.wait_for(|locked| *locked).await;
        }
    }

    /// Lets the next batch lock.
    pub(crate) fn locked(&self) {
        self.own.send_replace(true);
    }
}

/// A stock row read without a lock: its key, name and state.
pub(crate) type StockRow = (String, String, ProductState);

/// What a batch decided ahead read of its stock.
pub(crate) struct Read<'a> {
    /// Every product the batch touches, sorted.
    pub keys: &'a [&'a str],
    /// Those the view had no figures for, which were read.
    pub unknown: &'a [&'a str],
    /// The rows found of those.
    pub rows: Vec<StockRow>,
}

impl StockView {
    /// Whether a batch that touches `product_keys` may decide ahead: not
    /// for a while after a batch decided ahead found its stock moved, and not
    /// on a product the view knows to be limited.
    pub(crate) fn allows_ahead(&self, product_keys: &[&str], now: Instant) -> bool {
        self.lock_first_until.is_none_or(|until| now >= until)
            && product_keys.iter().all(|key| {
                self.products
                    .get(*key)
                    .is_none_or(|decided| decided.state.settings.max_per_customer.is_none())
            })
    }

    /// The keys among `keys` the view has no figures for: the only stock
    /// rows a batch decided ahead reads.
    pub(crate) fn unknown<'a>(&self, keys: &[&'a str]) -> Vec<&'a str> {
        keys.iter()
            .copied()
            .filter(|key| !self.products.contains_key(*key))
            .collect()
    }

    /// The batch's products as this process's latest batches left them
    /// (each product's figures the latest batch decided, where one did, or
    /// else as `read`), sorted by key. `None` when a product has a purchase
    /// limit, or when the view forgot a product between the read and now (a
    /// batch failed): the batch must then lock first.
    pub(crate) fn overlay(&self, read: Read<'_>) -> Option<Vec<StockRow>> {
        let mut rows = Vec::with_capacity(read.keys.len());
        let mut read_rows = read.rows;
        read_rows.sort_by(|(a, _, _), (b, _, _)| a.cmp(b));
        let mut read_rows = read_rows.into_iter().peekable();
        // Both in key order: each read row is met at its key.
        for key in read.keys {
            let from_read = read_rows.next_if(|(read_key, _, _)| read_key == key);
            let row = match (self.products.get(*key), from_read) {
                (Some(decided), _) => (key.to_string(), decided.name.clone(), decided.state),
                (None, Some(row)) => row,
                // Read and not found: no such product.
                (None, None) if read.unknown.contains(key) => continue,
                (None, None) => return None,
            };
            if row.2.settings.max_per_customer.is_some() {
                return None;
            }
            rows.push(row);
        }
        Some(rows)
    }

    /// Decides `commands` on `rows` (from [`StockView::overlay`]), and
    /// remembers what it decided.
    pub(crate) fn decide(
        &mut self,
        mut book: Book,
        rows: Vec<StockRow>,
        commands: &[Command],
        needs: &Needs,
    ) -> Plan {
        let mut expected = Vec::with_capacity(rows.len());
        for (key, name, state) in rows {
            expected.push((key.clone(), state));
            book.load_product(key, name, state);
        }
        let (answers, writes) = decide(book, commands, needs);
        let batch = self.next_batch;
        self.next_batch += 1;
        self.remember(&writes, batch);
        let (own, receiver) = watch::channel(false);
        // A batch that locks no product waits for no other's turn.
        let previous = if expected.is_empty() {
            None
        } else {
            self.last_turn.replace(receiver)
        };
        Plan {
            answers,
            writes,
            expected,
            turn: Turn { previous, own },
            batch,
        }
    }

    /// Remembers the figures a batch decided under its locks, so that the
    /// batches decided ahead after it start from them. Returns its number.
    pub(crate) fn decided_locked(&mut self, writes: &Writes) -> u64 {
        let batch = self.next_batch;
        self.next_batch += 1;
        self.remember(writes, batch);
        batch
    }

    fn remember(&mut self, writes: &Writes, batch: u64) {
        if self.products.len() >= MAX_VIEW_PRODUCTS {
            self.forget_finished();
        }
        let mut keys = Vec::with_capacity(writes.changes.stock.len());
        for change in &writes.changes.stock {
            keys.push(change.product_key.clone());
            self.products.insert(
                change.product_key.clone(),
                Decided {
                    name: change.product_name.clone(),
                    state: change.after,
                    batch,
                },
            );
        }
        self.open.insert(batch, keys);
    }

    /// A batch committed: its figures are now the rows'.
    pub(crate) fn committed(&mut self, batch: u64) {
        self.open.remove(&batch);
    }

    /// Forgets the figures of every batch no longer in flight.
    fn forget_finished(&mut self) {
        let open = &self.open;
        self.products
            .retain(|_, decided| open.contains_key(&decided.batch));
    }

    /// A batch did not commit (or nobody knows whether it did): its figures
    /// are forgotten, and the next batch reads the rows. A batch decided
    /// ahead on them finds other figures under its lock and runs again.
    pub(crate) fn failed(&mut self, batch: u64) {
        for key in self.open.remove(&batch).unwrap_or_default() {
            if self
                .products
                .get(&key)
                .is_some_and(|decided| decided.batch == batch)
            {
                self.products.remove(&key);
            }
        }
    }

    /// A batch decided ahead found other figures under its lock: for a
    /// while every batch locks first, and whatever the view says of the
    /// products is forgotten.
    pub(crate) fn mismatched(&mut self, batch: u64, now: Instant) {
        self.failed(batch);
        self.forget_finished();
        self.lock_first_until = Some(now + Duration::from_millis(LOCK_FIRST_AFTER_MISMATCH_MS));
    }
}

/// Whether every call of a batch may be decided ahead: the calls of a sale.
/// An operator's calls change settings or create products, which the lock
/// must guard from the start.
pub(crate) fn may_decide_ahead(commands: &[Command]) -> bool {
    commands.iter().all(|command| {
        matches!(
            command,
            Command::Reserve(_)
                | Command::RecordPayments(_)
                | Command::Settle(_)
                | Command::Release { .. }
                | Command::Sweep { .. }
                | Command::Extend { .. }
        )
    })
}

/// A batch's figures in the view while the batch is in flight. Dropped
/// before it is settled (its future dropped mid-batch, as a collector
/// stopped at shutdown leaves it), the batch counts as failed, so that no
/// later batch decides on figures no transaction will commit.
pub(crate) struct InFlight<'a> {
    view: &'a Mutex<StockView>,
    batch: u64,
    settled: bool,
}

impl<'a> InFlight<'a> {
    pub(crate) fn new(view: &'a Mutex<StockView>, batch: u64) -> InFlight<'a> {
        InFlight {
            view,
            batch,
            settled: false,
        }
    }

    /// The batch committed: its figures are the rows'.
    pub(crate) fn committed(mut self) {
        self.settled = true;
        lock(self.view).committed(self.batch);
    }

    /// The batch found its stock moved under its lock (see
    /// [`StockView::mismatched`]).
    pub(crate) fn mismatched(mut self, now: Instant) {
        self.settled = true;
        lock(self.view).mismatched(self.batch, now);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.settled {
            lock(self.view).failed(self.batch);
        }
    }
}

/// Locks the view; a collector that panicked while holding it left nothing
/// half-written that matters (the figures are only hints), so a poisoned
/// lock is taken as it is.
pub(crate) fn lock(view: &Mutex<StockView>) -> std::sync::MutexGuard<'_, StockView> {
    view.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use stockroom_domain::Stock;
    use stockroom_domain::rules::{Book, Changes, ProductSettings, ProductState, StockChange};
    use stockroom_storage::batch::{Needs, Writes};

    use super::{InFlight, LOCK_FIRST_AFTER_MISMATCH_MS, Read, StockRow, StockView, lock};

    /// Ten units received, `reserved` of them held.
    fn state(reserved: i64, limit: Option<u32>) -> ProductState {
        ProductState {
            stock: Stock::from_row(10, reserved, 0, 10).expect("figures"),
            settings: ProductSettings {
                max_per_customer: limit,
                low_stock_threshold: None,
            },
            movements: 0,
        }
    }

    fn writes(key: &str, after: ProductState) -> Writes {
        Writes {
            changes: Changes {
                stock: vec![StockChange {
                    product_key: key.to_owned(),
                    product_name: key.to_owned(),
                    before: Some(after),
                    after,
                }],
                ..Changes::default()
            },
            created_at_ms: 0,
        }
    }

    fn row(key: &str, state: ProductState) -> StockRow {
        (key.to_owned(), key.to_owned(), state)
    }

    /// What `overlay` gives for a batch of `rows`' products, each read
    /// only when the view has no figures for it.
    fn overlaid(view: &StockView, rows: &[StockRow]) -> Option<Vec<StockRow>> {
        let mut keys: Vec<&str> = rows.iter().map(|(key, _, _)| key.as_str()).collect();
        keys.sort();
        let unknown = view.unknown(&keys);
        let read = rows
            .iter()
            .filter(|(key, _, _)| unknown.contains(&key.as_str()))
            .cloned()
            .collect();
        view.overlay(Read {
            keys: &keys,
            unknown: &unknown,
            rows: read,
        })
    }

    fn figures(view: &StockView, rows: Vec<StockRow>) -> Vec<(String, i64)> {
        overlaid(view, &rows)
            .expect("no product is limited")
            .into_iter()
            .map(|(key, _, state)| (key, state.stock.reserved() as i64))
            .collect()
    }

    #[test]
    fn a_batch_starts_from_the_figures_the_latest_batch_decided() {
        let mut view = StockView::default();
        view.decided_locked(&writes("b", state(2, None)));
        let read = vec![row("b", state(0, None)), row("a", state(0, None))];
        assert_eq!(
            figures(&view, read),
            vec![("a".to_owned(), 0), ("b".to_owned(), 2)],
            "b as decided, a as read, sorted by key"
        );
    }

    #[test]
    fn a_failed_batch_is_forgotten_and_a_committed_one_kept() {
        let read = || vec![row("a", state(0, None))];
        let mut view = StockView::default();
        let first = view.decided_locked(&writes("a", state(1, None)));
        let second = view.decided_locked(&writes("a", state(2, None)));
        view.failed(first);
        assert_eq!(
            figures(&view, read()),
            vec![("a".to_owned(), 2)],
            "the later batch's figures stay"
        );
        view.failed(second);
        assert_eq!(
            figures(&view, read()),
            vec![("a".to_owned(), 0)],
            "the rows are read again"
        );
        let third = view.decided_locked(&writes("a", state(3, None)));
        view.committed(third);
        assert_eq!(figures(&view, read()), vec![("a".to_owned(), 3)]);
    }

    #[test]
    fn a_batch_dropped_in_flight_is_forgotten_as_a_failed_one() {
        let view = std::sync::Mutex::new(StockView::default());
        let batch = lock(&view).decided_locked(&writes("a", state(2, None)));
        drop(InFlight::new(&view, batch));
        assert!(lock(&view).unknown(&["a"]) == ["a"]);
        assert!(lock(&view).open.is_empty());
        let batch = lock(&view).decided_locked(&writes("a", state(3, None)));
        InFlight::new(&view, batch).committed();
        assert!(lock(&view).unknown(&["a"]).is_empty());
        assert!(lock(&view).open.is_empty());
    }

    #[test]
    fn a_limited_product_is_decided_under_its_lock() {
        let mut view = StockView::default();
        assert!(overlaid(&view, &[row("a", state(0, Some(2)))]).is_none());
        view.decided_locked(&writes("a", state(0, Some(2))));
        assert!(!view.allows_ahead(&["a"], Instant::now()));
        assert!(view.allows_ahead(&["b"], Instant::now()));
    }

    #[test]
    fn after_a_moved_stock_every_batch_locks_first_for_a_while() {
        let mut view = StockView::default();
        let batch = view.decided_locked(&writes("a", state(1, None)));
        let other = view.decided_locked(&writes("b", state(1, None)));
        view.committed(other);
        let now = Instant::now();
        view.mismatched(batch, now);
        assert!(!view.allows_ahead(&[], now));
        assert!(view.allows_ahead(
            &[],
            now + Duration::from_millis(LOCK_FIRST_AFTER_MISMATCH_MS)
        ));
        let read = vec![row("a", state(0, None)), row("b", state(0, None))];
        assert_eq!(
            figures(&view, read),
            vec![("a".to_owned(), 0), ("b".to_owned(), 0)],
            "what the view knew is forgotten"
        );
    }

    #[test]
    fn a_product_forgotten_after_the_read_sends_the_batch_to_lock_first() {
        let mut view = StockView::default();
        let batch = view.decided_locked(&writes("a", state(1, None)));
        let keys = ["a", "b"];
        let unknown = view.unknown(&keys);
        assert_eq!(unknown, vec!["b"], "only what the view lacks is read");
        view.failed(batch);
        let read = Read {
            keys: &keys,
            unknown: &unknown,
            rows: vec![row("b", state(0, None))],
        };
        assert!(view.overlay(read).is_none(), "a was neither known nor read");
        let read = Read {
            keys: &keys,
            unknown: &keys,
            rows: vec![row("b", state(0, None))],
        };
        let rows = view.overlay(read).expect("a read and not found");
        assert_eq!(rows.len(), 1, "a product not found is left out: {rows:?}");
    }

    #[tokio::test]
    async fn batches_that_lock_products_take_their_turns_in_order() {
        let mut view = StockView::default();
        let needs = Needs::default();
        let rows = || vec![row("a", state(0, None))];
        let first = view.decide(Book::new(0), rows(), &[], &needs);
        let mut lockless = view.decide(Book::new(0), Vec::new(), &[], &needs);
        let mut second = view.decide(Book::new(0), rows(), &[], &needs);
        tokio::time::timeout(Duration::from_secs(1), lockless.turn.wait_for_previous())
            .await
            .expect("a batch that locks nothing waits for no one");
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), second.turn.wait_for_previous()).await;
        assert!(waiting.is_err(), "the second waits for the first's locks");
        first.turn.locked();
        tokio::time::timeout(Duration::from_secs(1), second.turn.wait_for_previous())
            .await
            .expect("the first holds its locks");
        drop(second);
        let mut third = view.decide(Book::new(0), rows(), &[], &needs);
        tokio::time::timeout(Duration::from_secs(1), third.turn.wait_for_previous())
            .await
            .expect("a batch gone waits for no one");
    }
}
