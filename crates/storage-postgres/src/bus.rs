//! The outbox's rows: loading and locking the entries a bus call touches,
//! writing what [`stockroom_domain::outbox::Outbox`] decided with one
//! `unnest` statement per kind of change, and reading dead letters and
//! counts.
//!
//! Several data-service processes lease from one outbox at once. A lease
//! loads its candidates with `FOR UPDATE SKIP LOCKED`, so two leasers never
//! take the same entry and never wait for each other. Receipts and redrives
//! load the entries they name without locking them: another call rarely
//! touches the same entry meanwhile (only when its lease ran out and it was
//! leased again), and a row lock on every acknowledged entry would cost a
//! record in the write-ahead log each. Every delete and update is
//! conditional on the entry being as loaded, and checked: a write that finds
//! an entry changed since it was loaded fails the transaction as a race
//! ([`Failure::OutboxRace`]), and the call runs again on what is there now;
//! for a lease, whose entries are locked, a mismatch is a bug, reported
//! instead of written.

use stockroom_domain::outbox::{DeadLetter, Entry, Lease, NewEntry, Outbox, OutboxChanges};
use stockroom_domain::rules::EventRecord;
use stockroom_domain::{Consumer, EventKind};
use stockroom_storage::bus::{OutboxCommand, OutboxCounts, OutboxNeeds, OutboxReply, decide};
use stockroom_storage::{event_ids, notices};
use tokio_postgres::Row;

use crate::Failure;
use crate::load::inconsistent;
use crate::sql::Tx;

/// The columns [`entry`] reads, in its order.
const ENTRY_COLUMNS: &str = "seq, consumer, deliveries, rejections, leased_until_ms, lease_token, dead_at_ms, event_id, kind, order_id, order_version, total_units, occurred_at_ms, trace_parent, notice";

/// The entry of a row of [`ENTRY_COLUMNS`].
fn entry(row: &Row) -> Result<Entry, Failure> {
    let seq: i64 = row.try_get(0)?;
    let damaged = |why: String| inconsistent(format!("outbox entry {seq}: {why}"));
    let consumer: String = row.try_get(1)?;
    let kind: EventKind = row
        .try_get::<_, &str>(8)?
        .parse()
        .map_err(|error: stockroom_domain::UnknownName| damaged(error.to_string()))?;
    let total_units: i64 = row.try_get(11)?;
    let token: Option<String> = row.try_get(5)?;
    let order_id: String = row.try_get(9)?;
    let order_version: i64 = row.try_get(10)?;
    let event_id = event_ids::restored(row.try_get(7)?, kind, &order_id, order_version);
    let notice: Option<String> = row.try_get(14)?;
    let notice = notice
        .as_deref()
        .map(|text| notices::decode(&event_id, text))
        .transpose()?;
    Ok(Entry {
        seq,
        consumer: consumer
            .parse()
            .map_err(|error: stockroom_domain::UnknownName| damaged(error.to_string()))?,
        deliveries: count(row, 2)?,
        rejections: count(row, 3)?,
        // A lease given back keeps no token; an entry never leased has none
        // either.
        lease: token
            .map(|token| -> Result<Lease, Failure> {
                Ok(Lease {
                    token,
                    until_ms: row.try_get(4)?,
                })
            })
            .transpose()?,
        dead_at_ms: row.try_get(6)?,
        event: EventRecord {
            event_id,
            kind,
            order_id,
            order_version,
            total_units: u64::try_from(total_units)
                .map_err(|_| damaged(format!("{total_units} units")))?,
            occurred_at_ms: row.try_get(12)?,
            trace_parent: row.try_get(13)?,
            notice,
        },
    })
}

fn count(row: &Row, index: usize) -> Result<u32, Failure> {
    let value: i32 = row.try_get(index)?;
    Ok(value.max(0) as u32)
}

/// Runs one bus call: loads what it touches, decides it, writes the
/// decision, and answers.
pub(crate) async fn run(
    tx: Tx<'_>,
    command: OutboxCommand,
    now_ms: i64,
) -> Result<OutboxReply, Failure> {
    let commands = vec![command];
    let needs = OutboxNeeds::of(&commands);
    let outbox = load(tx, &needs, now_ms).await?;
    let (mut replies, changes) = decide(outbox, commands);
    let all_locked = needs.named.is_empty();
    apply(tx, &changes).await.map_err(|failure| match failure {
        // A lease's entries were loaded under their lock: nothing could
        // change them before the write, so a mismatch is a bug, not a race.
        Failure::OutboxRace { .. } if all_locked => inconsistent(failure.to_string()),
        other => other,
    })?;
    replies
        .pop()
        .ok_or_else(|| inconsistent("the outbox gave no answer".into()))
}

/// Loads and locks each consumer's due entries (as many as its leases may
/// take, oldest first, skipping those another lease is taking), and loads
/// every entry the calls name, unlocked.
async fn load(tx: Tx<'_>, needs: &OutboxNeeds, now_ms: i64) -> Result<Outbox, Failure> {
    let mut outbox = Outbox::new(now_ms);
    for (consumer, limit) in &needs.due {
        let rows = tx
            .query(
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM outbox
                     WHERE consumer = $1 AND dead_at_ms IS NULL AND leased_until_ms <= $2
                     ORDER BY seq LIMIT $3
                     FOR UPDATE SKIP LOCKED"
                ),
                &[&consumer.as_str(), &now_ms, &i64::from(*limit)],
            )
            .await?;
        for row in &rows {
            outbox.load(entry(row)?);
        }
    }
    for (consumer, seqs) in &needs.named {
        let seqs: Vec<i64> = seqs.iter().copied().collect();
        let rows = tx
            .query(
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM outbox
                     WHERE consumer = $1 AND seq = ANY($2)"
                ),
                &[&consumer.as_str(), &seqs],
            )
            .await?;
        for row in &rows {
            outbox.load(entry(row)?);
        }
    }
    Ok(outbox)
}

/// An entry's state as parallel columns, for `unnest`.
#[derive(Default)]
struct States {
    seqs: Vec<i64>,
    deliveries: Vec<i32>,
    rejections: Vec<i32>,
    leased_until_ms: Vec<i64>,
    lease_tokens: Vec<Option<String>>,
    dead_at_ms: Vec<Option<i64>>,
}

impl States {
    fn push(&mut self, entry: &Entry) {
        let (until_ms, token) = match &entry.lease {
            Some(lease) => (lease.until_ms, Some(lease.token.clone())),
            None => (0, None),
        };
        self.seqs.push(entry.seq);
        self.deliveries
            .push(i32::try_from(entry.deliveries).unwrap_or(i32::MAX));
        self.rejections
            .push(i32::try_from(entry.rejections).unwrap_or(i32::MAX));
        self.leased_until_ms.push(until_ms);
        self.lease_tokens.push(token);
        self.dead_at_ms.push(entry.dead_at_ms);
    }
}

/// The `unnest` of six parameters from `$first` as `alias`, with the
/// condition that the outbox row is in that state.
fn loaded_state(first: usize, alias: &str) -> (String, String) {
    let p = |offset: usize| first + offset;
    let from = format!(
        "unnest(${}::bigint[], ${}::int[], ${}::int[], ${}::bigint[], ${}::text[], ${}::bigint[])
         AS {alias} (seq, deliveries, rejections, leased_until_ms, lease_token, dead_at_ms)",
        p(0),
        p(1),
        p(2),
        p(3),
        p(4),
        p(5)
    );
    (from, in_state(alias))
}

/// The condition that the outbox row is in the state `alias` holds.
fn in_state(alias: &str) -> String {
    format!(
        "outbox.seq = {alias}.seq
         AND outbox.deliveries = {alias}.deliveries
         AND outbox.rejections = {alias}.rejections
         AND outbox.lease_token IS NOT DISTINCT FROM {alias}.lease_token
         AND (outbox.lease_token IS NULL OR outbox.leased_until_ms = {alias}.leased_until_ms)
         AND outbox.dead_at_ms IS NOT DISTINCT FROM {alias}.dead_at_ms"
    )
}

/// Checks that every entry written was as loaded. Named entries are loaded
/// unlocked, so another call may have changed one since: the transaction is
/// then run again.
fn expect_rows(what: &'static str, changed: u64, expected: usize) -> Result<(), Failure> {
    if changed != expected as u64 {
        return Err(Failure::OutboxRace {
            what,
            changed,
            expected,
        });
    }
    Ok(())
}

/// Writes what the outbox decided: deletes, updates and inserts, each one
/// statement.
async fn apply(tx: Tx<'_>, changes: &OutboxChanges) -> Result<(), Failure> {
    if !changes.deleted.is_empty() {
        let mut loaded = States::default();
        changes.deleted.iter().for_each(|entry| loaded.push(entry));
        let (from, condition) = loaded_state(1, "loaded");
        let deleted = tx
            .execute(
                &format!("DELETE FROM outbox USING {from} WHERE {condition}"),
                &[
                    &loaded.seqs,
                    &loaded.deliveries,
                    &loaded.rejections,
                    &loaded.leased_until_ms,
                    &loaded.lease_tokens,
                    &loaded.dead_at_ms,
                ],
            )
            .await?;
        expect_rows("outbox delete", deleted, changes.deleted.len())?;
    }
    if !changes.updated.is_empty() {
        let (mut loaded, mut after) = (States::default(), States::default());
        for change in &changes.updated {
            if change.after.seq != change.loaded.seq {
                return Err(inconsistent(format!(
                    "outbox entry {} changed into entry {}",
                    change.loaded.seq, change.after.seq
                )));
            }
            loaded.push(&change.loaded);
            after.push(&change.after);
        }
        // One `unnest` carries each entry's loaded state and its new one side
        // by side: two unnests joined on the sequence number would leave the
        // planner free to pair them by a nested loop, quadratic in the batch.
        let condition = in_state("change");
        let updated = tx
            .execute(
                &format!(
                    "UPDATE outbox
                     SET deliveries = change.new_deliveries,
                         rejections = change.new_rejections,
                         leased_until_ms = change.new_leased_until_ms,
                         lease_token = change.new_lease_token,
                         dead_at_ms = change.new_dead_at_ms
                     FROM unnest($1::bigint[], $2::int[], $3::int[], $4::bigint[], $5::text[],
                                 $6::bigint[], $7::int[], $8::int[], $9::bigint[], $10::text[],
                                 $11::bigint[])
                          AS change (seq, deliveries, rejections, leased_until_ms, lease_token,
                                     dead_at_ms, new_deliveries, new_rejections,
                                     new_leased_until_ms, new_lease_token, new_dead_at_ms)
                     WHERE {condition}"
                ),
                &[
                    &loaded.seqs,
                    &loaded.deliveries,
                    &loaded.rejections,
                    &loaded.leased_until_ms,
                    &loaded.lease_tokens,
                    &loaded.dead_at_ms,
                    &after.deliveries,
                    &after.rejections,
                    &after.leased_until_ms,
                    &after.lease_tokens,
                    &after.dead_at_ms,
                ],
            )
            .await?;
        expect_rows("outbox update", updated, changes.updated.len())?;
    }
    insert(tx, &changes.inserted).await
}

/// Adds new entries, each addressed to its consumer.
pub(crate) async fn insert(tx: Tx<'_>, entries: &[NewEntry]) -> Result<(), Failure> {
    if entries.is_empty() {
        return Ok(());
    }
    let events: Vec<&EventRecord> = entries.iter().map(|entry| &entry.event).collect();
    let ids: Vec<&str> = events
        .iter()
        .map(|event| event_ids::stored(event))
        .collect();
    let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
    let orders: Vec<&str> = events.iter().map(|event| event.order_id.as_str()).collect();
    let versions: Vec<i64> = events.iter().map(|event| event.order_version).collect();
    let units: Vec<i64> = events
        .iter()
        .map(|event| i64::try_from(event.total_units).unwrap_or(i64::MAX))
        .collect();
    let at: Vec<i64> = events.iter().map(|event| event.occurred_at_ms).collect();
    let traces: Vec<Option<&str>> = events
        .iter()
        .map(|event| event.trace_parent.as_deref())
        .collect();
    let consumers: Vec<&str> = entries
        .iter()
        .map(|entry| entry.consumer.as_str())
        .collect();
    let rejections: Vec<i32> = entries
        .iter()
        .map(|entry| i32::try_from(entry.rejections).unwrap_or(i32::MAX))
        .collect();
    let dead: Vec<Option<i64>> = entries.iter().map(|entry| entry.dead_at_ms).collect();
    let notices: Vec<Option<String>> = events
        .iter()
        .map(|event| event.notice.as_ref().map(notices::encode))
        .collect();
    tx.execute(
        "INSERT INTO outbox (event_id, kind, order_id, order_version, total_units,
                             occurred_at_ms, consumer, trace_parent, rejections, dead_at_ms,
                             notice)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                              $6::bigint[], $7::text[], $8::text[], $9::int[], $10::bigint[],
                              $11::text[])",
        &[
            &ids,
            &kinds,
            &orders,
            &versions,
            &units,
            &at,
            &consumers,
            &traces,
            &rejections,
            &dead,
            &notices,
        ],
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
                "SELECT {ENTRY_COLUMNS} FROM outbox
                 WHERE consumer = $1 AND dead_at_ms IS NOT NULL ORDER BY seq LIMIT $2"
            ),
            &[&consumer.as_str(), &i64::from(limit)],
        )
        .await?;
    let mut letters = Vec::with_capacity(rows.len());
    for row in &rows {
        letters.extend(DeadLetter::of(&entry(row)?));
    }
    Ok(letters)
}

/// Per consumer: waiting events, the oldest one's time, dead letters.
pub(crate) async fn counts(tx: Tx<'_>) -> Result<Vec<OutboxCounts>, Failure> {
    let rows = tx
        .query(
            "SELECT consumer,
                    COUNT(*) FILTER (WHERE dead_at_ms IS NULL),
                    MIN(occurred_at_ms) FILTER (WHERE dead_at_ms IS NULL),
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
        assert_eq!(ENTRY_COLUMNS.split(',').count(), 15);
    }

    #[test]
    fn the_loaded_state_names_six_parameters_from_the_first() {
        let (from, condition) = loaded_state(7, "loaded");
        assert!(from.contains("$7::bigint[]") && from.contains("$12::bigint[]"));
        assert!(!from.contains("$13"));
        assert_eq!(condition.matches("loaded.").count(), 6);
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
        let outbox = load(tx, &OutboxNeeds::of(&commands), now_ms())
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
        let raced = apply(tx, &changes).await;
        assert!(
            matches!(raced, Err(Failure::OutboxRace { changed: 0, .. })),
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
