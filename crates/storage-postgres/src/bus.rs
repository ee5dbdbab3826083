//! The outbox's rows: loading and locking the rows a bus call touches,
//! unpacking them into the entries [`stockroom_domain::outbox::Outbox`]
//! decides on, writing its decisions back row by row with one `unnest`
//! statement per kind of change, and reading dead letters and counts. A row
//! holds a batch's events for one consumer ([`stockroom_storage::outbox_rows`]
//! says how), so a batch is inserted, leased and acknowledged as one row.
//!
//! Several data-service processes lease from one outbox at once. A lease
//! loads its candidate rows with `FOR UPDATE SKIP LOCKED`, so two leasers
//! never take the same row and never wait for each other. Receipts and
//! redrives load the rows they name without locking them: another call
//! rarely touches the same row meanwhile (only when a lease ran out and its
//! events were leased again), and a row lock on every acknowledged row would
//! cost a record in the write-ahead log each. Every delete and update is
//! conditional on the row's states being as loaded, and checked: a write
//! that finds a row changed since it was loaded fails the transaction as a
//! race ([`Failure::RowRace`]), and the call runs again on what is there
//! now; for a lease, whose rows are locked, a mismatch is a bug, reported
//! instead of written.

use std::collections::BTreeMap;

use stockroom_domain::Consumer;
use stockroom_domain::outbox::{DeadLetter, NewEntry, OutboxChanges};
use stockroom_storage::bus::{OutboxCommand, OutboxCounts, OutboxNeeds, OutboxReply, decide};
use stockroom_storage::outbox_rows::{self, LoadedRow, LoadedRows, NewRow, StoredRow};
use tokio_postgres::Row;

use crate::Failure;
use crate::load::inconsistent;
use crate::sql::Tx;

/// The columns [`stored_row`] reads, in its order.
const ROW_COLUMNS: &str = "seq, consumer, events, states";

/// The stored row of a row of [`ROW_COLUMNS`].
fn stored_row(row: &Row) -> Result<StoredRow, Failure> {
    Ok(StoredRow {
        seq: row.try_get(0)?,
        consumer: row.try_get(1)?,
        events: row.try_get(2)?,
        states: row.try_get(3)?,
    })
}

/// Reads rows of [`ROW_COLUMNS`] into `loaded`.
fn unpack(loaded: &mut LoadedRows, rows: &[Row]) -> Result<(), Failure> {
    let stored = rows.iter().map(stored_row).collect::<Result<Vec<_>, _>>()?;
    Ok(loaded.unpack(stored)?)
}

/// Runs one bus call: loads what it touches, decides it, writes the
/// decision, and answers, with how many rows it deleted.
pub(crate) async fn run(
    tx: Tx<'_>,
    command: OutboxCommand,
    now_ms: i64,
) -> Result<(OutboxReply, u64), Failure> {
    let commands = vec![command];
    let needs = OutboxNeeds::of(&commands);
    let LoadedRows { outbox, rows } = load(tx, &needs, now_ms).await?;
    let (mut replies, changes) = decide(outbox, commands);
    let all_locked = needs.named.is_empty();
    let deleted_rows = apply(tx, &rows, &changes)
        .await
        .map_err(|failure| match failure {
            // A lease's rows were loaded under their lock: nothing could
            // change them before the write, so a mismatch is a bug, not a
            // race.
            Failure::RowRace { .. } if all_locked => inconsistent(failure.to_string()),
            other => other,
        })?;
    let reply = replies
        .pop()
        .ok_or_else(|| inconsistent("the outbox gave no answer".into()))?;
    Ok((reply, deleted_rows))
}

/// Loads and locks each consumer's rows with due events (whole rows, as
/// many as hold the events its leases may take, oldest first, skipping
/// those another lease is taking), and loads every row the calls name,
/// unlocked.
async fn load(tx: Tx<'_>, needs: &OutboxNeeds, now_ms: i64) -> Result<LoadedRows, Failure> {
    let mut loaded = LoadedRows::new(now_ms);
    for (consumer, limit) in &needs.due {
        // The rows are chosen unlocked, oldest first, until they hold the
        // events asked for (no more rows than events are looked at), then
        // locked; a row another lease took meanwhile is skipped or, if it
        // is no longer due, left out. The chosen rows are made an array
        // first, evaluated once: as an `IN` subquery, a planner without
        // the table's statistics (a new schema, autovacuum off) ran the
        // choice again for every candidate row, a cost that grew with the
        // square of the waiting rows and made a backlog feed itself. A
        // row's consumer never changes, so the chosen rows are found by
        // their keys alone.
        let rows = tx
            .query(
                &format!(
                    "SELECT {ROW_COLUMNS} FROM outbox
                     WHERE seq = ANY(ARRAY(
                         SELECT seq FROM (
                             SELECT seq, SUM(live) OVER (ORDER BY seq) - live AS before
                             FROM (SELECT seq, live FROM outbox
                                   WHERE consumer = $1 AND dead_at_ms IS NULL
                                     AND due_at_ms <= $2
                                   ORDER BY seq LIMIT $3) AS candidate
                         ) AS counted
                         WHERE before < $3))
                       AND dead_at_ms IS NULL AND due_at_ms <= $2
                     ORDER BY seq
                     FOR UPDATE SKIP LOCKED"
                ),
                &[&consumer.as_str(), &now_ms, &i64::from(*limit)],
            )
            .await?;
        unpack(&mut loaded, &rows)?;
    }
    for (consumer, seqs) in &needs.named {
        let mut row_seqs: Vec<i64> = seqs
            .iter()
            .map(|&seq| outbox_rows::row_and_slot(seq).0)
            .collect();
        row_seqs.dedup();
        let rows = tx
            .query(
                &format!(
                    "SELECT {ROW_COLUMNS} FROM outbox
                     WHERE consumer = $1 AND seq = ANY($2)"
                ),
                &[&consumer.as_str(), &row_seqs],
            )
            .await?;
        unpack(&mut loaded, &rows)?;
    }
    Ok(loaded)
}

/// Checks that every row written was as loaded. Named rows are loaded
/// unlocked, so another call may have changed one since: the transaction is
/// then run again.
fn expect_rows(what: &'static str, changed: u64, expected: usize) -> Result<(), Failure> {
    if changed != expected as u64 {
        return Err(Failure::RowRace {
            what,
            changed,
            expected,
        });
    }
    Ok(())
}

/// Writes what the outbox decided, row by row: deletes, updates and
/// inserts, each one statement. Returns how many rows it deleted.
async fn apply(
    tx: Tx<'_>,
    rows: &BTreeMap<i64, LoadedRow>,
    changes: &OutboxChanges,
) -> Result<u64, Failure> {
    let writes = outbox_rows::writes(rows, changes)?;
    if !writes.deleted.is_empty() {
        let seqs: Vec<i64> = writes.deleted.iter().map(|row| row.seq).collect();
        let states: Vec<&str> = writes
            .deleted
            .iter()
            .map(|row| row.loaded_states.as_str())
            .collect();
        let deleted = tx
            .execute(
                "DELETE FROM outbox USING unnest($1::bigint[], $2::text[]) AS loaded (seq, states)
                 WHERE outbox.seq = loaded.seq AND outbox.states = loaded.states",
                &[&seqs, &states],
            )
            .await?;
        expect_rows("outbox delete", deleted, writes.deleted.len())?;
    }
    if !writes.updated.is_empty() {
        let updated = &writes.updated;
        let seqs: Vec<i64> = updated.iter().map(|row| row.seq).collect();
        let loaded: Vec<&str> = updated
            .iter()
            .map(|row| row.loaded_states.as_str())
            .collect();
        let states: Vec<&str> = updated.iter().map(|row| row.states.as_str()).collect();
        let live: Vec<i32> = updated.iter().map(|row| row.summary.live).collect();
        let due: Vec<i64> = updated.iter().map(|row| row.summary.due_at_ms).collect();
        let first: Vec<Option<i64>> = updated.iter().map(|row| row.summary.first_at_ms).collect();
        let dead: Vec<Option<i64>> = updated.iter().map(|row| row.summary.dead_at_ms).collect();
        let count = tx
            .execute(
                "UPDATE outbox
                 SET states = change.states, live = change.live, due_at_ms = change.due_at_ms,
                     first_at_ms = change.first_at_ms, dead_at_ms = change.dead_at_ms
                 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::bigint[],
                             $6::bigint[], $7::bigint[])
                      AS change (seq, loaded, states, live, due_at_ms, first_at_ms, dead_at_ms)
                 WHERE outbox.seq = change.seq AND outbox.states = change.loaded",
                &[&seqs, &loaded, &states, &live, &due, &first, &dead],
            )
            .await?;
        expect_rows("outbox update", count, updated.len())?;
    }
    insert_rows(tx, &writes.inserted).await?;
    Ok(writes.deleted.len() as u64)
}

/// Adds new entries, each addressed to its consumer, a batch's events for
/// one consumer in as few rows as [`outbox_rows::new_rows`] makes.
pub(crate) async fn insert(tx: Tx<'_>, entries: &[NewEntry]) -> Result<(), Failure> {
    insert_rows(tx, &outbox_rows::new_rows(entries)).await
}

async fn insert_rows(tx: Tx<'_>, rows: &[NewRow]) -> Result<(), Failure> {
    if rows.is_empty() {
        return Ok(());
    }
    let consumers: Vec<&str> = rows.iter().map(|row| row.consumer.as_str()).collect();
    let events: Vec<&str> = rows.iter().map(|row| row.events.as_str()).collect();
    let states: Vec<&str> = rows.iter().map(|row| row.states.as_str()).collect();
    let live: Vec<i32> = rows.iter().map(|row| row.summary.live).collect();
    let due: Vec<i64> = rows.iter().map(|row| row.summary.due_at_ms).collect();
    let first: Vec<Option<i64>> = rows.iter().map(|row| row.summary.first_at_ms).collect();
    let dead: Vec<Option<i64>> = rows.iter().map(|row| row.summary.dead_at_ms).collect();
    tx.execute(
        "INSERT INTO outbox (consumer, events, states, live, due_at_ms, first_at_ms, dead_at_ms)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[],
                              $6::bigint[], $7::bigint[])",
        &[&consumers, &events, &states, &live, &due, &first, &dead],
    )
    .await?;
    Ok(())
}

/// Up to `limit` dead letters of `consumer`, oldest first.
pub(crate) async fn dead_letters(
    tx: Tx<'_>,
    consumer: Consumer,
    limit: u32,
) -> Result<Vec<DeadLetter>, Failure> {
    let rows = tx
        .query(
            &format!(
                "SELECT {ROW_COLUMNS} FROM outbox
                 WHERE consumer = $1 AND dead_at_ms IS NOT NULL ORDER BY seq LIMIT $2"
            ),
            &[&consumer.as_str(), &i64::from(limit)],
        )
        .await?;
    // A dead letter's row holds that one event.
    let mut letters = Vec::with_capacity(rows.len());
    for row in &rows {
        let (_, entries) = LoadedRow::decode(stored_row(row)?)?;
        letters.extend(entries.iter().filter_map(DeadLetter::of));
    }
    Ok(letters)
}

/// Per consumer: waiting events, the oldest one's time, dead letters.
pub(crate) async fn counts(tx: Tx<'_>) -> Result<Vec<OutboxCounts>, Failure> {
    let rows = tx
        .query(
            "SELECT consumer,
                    COALESCE(SUM(live), 0)::bigint,
                    MIN(first_at_ms),
                    COUNT(*) FILTER (WHERE dead_at_ms IS NOT NULL)
             FROM outbox GROUP BY consumer",
            &[],
        )
        .await?;
    let mut counts: Vec<OutboxCounts> = Consumer::ALL
        .iter()
        .map(|&consumer| OutboxCounts {
            consumer,
            pending: 0,
            oldest_pending_at_ms: None,
            dead: 0,
        })
        .collect();
    for row in &rows {
        let consumer: String = row.try_get(0)?;
        let Some(entry) = counts
            .iter_mut()
            .find(|entry| entry.consumer.as_str() == consumer)
        else {
            continue;
        };
        let pending: i64 = row.try_get(1)?;
        let dead: i64 = row.try_get(3)?;
        entry.pending = pending as u64;
        entry.oldest_pending_at_ms = row.try_get(2)?;
        entry.dead = dead as u64;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use stockroom_domain::outbox::{Delivery, DeliveryOutcome, MIN_LEASE_MS};
    use stockroom_storage::{EventOutbox, OrderFlow};

    use super::*;
    use crate::now_ms;
    use crate::tests::TestSchema;

    #[test]
    fn the_column_list_matches_the_row_reader() {
        assert_eq!(ROW_COLUMNS.split(',').count(), 4);
    }

    /// A receipt loads its entry unlocked, the entry's lease runs out and
    /// another leaser takes it before the receipt writes: the write finds the
    /// entry changed and fails as a race (never deleting the new lease's
    /// entry), and the receipt run again acknowledges nothing.
    #[tokio::test]
    async fn a_receipt_overtaken_by_a_new_lease_is_a_race_and_changes_nothing() {
        let Some(test) = TestSchema::open("receipt_race", 2).await else {
            return;
        };
        let storage = &test.storage;
        let laptop = stockroom_domain::ProductName::new("Laptop").expect("a name");
        storage.restock(laptop, 1).await.expect("restock");
        let request = stockroom_storage_conformance::support::request("c1", &[("Laptop", 1)]);
        storage.reserve(vec![request]).await.expect("reserve");
        let first: Vec<Delivery> = storage
            .lease_events(Consumer::Payment, 1, MIN_LEASE_MS)
            .await
            .expect("lease");
        assert_eq!(first.len(), 1);
        tokio::time::sleep(Duration::from_millis(MIN_LEASE_MS + 50)).await;

        let receipt = OutboxCommand::Finish {
            consumer: Consumer::Payment,
            outcome: DeliveryOutcome::Acknowledge,
            receipts: first.iter().map(Delivery::receipt).collect(),
        };
        let mut client = storage.pool.get().await.expect("a connection");
        let transaction = client.transaction().await.expect("begin");
        let statements = std::sync::atomic::AtomicU64::new(0);
        let tx = Tx::new(&transaction, &statements);
        let commands = vec![receipt.clone()];
        let LoadedRows { outbox, rows } = load(tx, &OutboxNeeds::of(&commands), now_ms())
            .await
            .expect("load");
        let (_, changes) = decide(outbox, commands);
        assert_eq!(
            changes.deleted.len(),
            1,
            "the receipt still proves its lease"
        );

        let second = storage
            .lease_events(Consumer::Payment, 1, 60_000)
            .await
            .expect("lease again");
        assert_eq!(second.len(), 1, "the lease ran out, so the entry is due");
        let raced = apply(tx, &rows, &changes).await;
        assert!(
            matches!(raced, Err(Failure::RowRace { changed: 0, .. })),
            "{raced:?}"
        );
        drop(transaction);
        drop(client);

        let late = storage
            .finish_deliveries(
                Consumer::Payment,
                DeliveryOutcome::Acknowledge,
                first.iter().map(Delivery::receipt).collect(),
            )
            .await
            .expect("the receipt, run again");
        assert_eq!(late, 0, "a late receipt acknowledges nothing");
        let current = storage
            .finish_deliveries(
                Consumer::Payment,
                DeliveryOutcome::Acknowledge,
                second.iter().map(Delivery::receipt).collect(),
            )
            .await
            .expect("the new lease's receipt");
        assert_eq!(current, 1);
        test.remove().await;
    }
}
