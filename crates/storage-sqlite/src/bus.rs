//! The outbox's rows: loading the entries a batch of bus calls touches,
//! writing what [`stockroom_domain::outbox::Outbox`] decided with one
//! statement per kind of change, and reading dead letters and counts.

use stockroom_domain::outbox::{DeadLetter, Entry, Lease, NewEntry, Outbox, OutboxChanges};
use stockroom_domain::rules::EventRecord;
use stockroom_domain::{Consumer, EventKind};
use stockroom_storage::bus::{OutboxCommand, OutboxCounts, OutboxNeeds, OutboxReply, decide};
use stockroom_storage::{StorageError, event_ids, notices};

use crate::records::{json_list, json_rows};
use crate::sql::Sql;

/// The columns [`entry_row`] reads, in its order.
const ENTRY_COLUMNS: &str = "seq, consumer, deliveries, rejections, leased_until_ms, lease_token, dead_at_ms, event_id, kind, order_id, order_version, total_units, occurred_at_ms, trace_parent, notice";

/// An outbox row as [`ENTRY_COLUMNS`] reads it.
struct EntryRow {
    seq: i64,
    consumer: String,
    deliveries: u32,
    rejections: u32,
    leased_until_ms: i64,
    lease_token: Option<String>,
    dead_at_ms: Option<i64>,
    event_id: String,
    kind: String,
    order_id: String,
    order_version: i64,
    total_units: i64,
    occurred_at_ms: i64,
    trace_parent: Option<String>,
    notice: Option<String>,
}

fn entry_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EntryRow> {
    Ok(EntryRow {
        seq: row.get(0)?,
        consumer: row.get(1)?,
        deliveries: row.get(2)?,
        rejections: row.get(3)?,
        leased_until_ms: row.get(4)?,
        lease_token: row.get(5)?,
        dead_at_ms: row.get(6)?,
        event_id: row.get(7)?,
        kind: row.get(8)?,
        order_id: row.get(9)?,
        order_version: row.get(10)?,
        total_units: row.get(11)?,
        occurred_at_ms: row.get(12)?,
        trace_parent: row.get(13)?,
        notice: row.get(14)?,
    })
}

impl EntryRow {
    fn entry(self) -> Result<Entry, StorageError> {
        let damaged =
            |why: String| StorageError::Inconsistent(format!("outbox entry {}: {why}", self.seq));
        let kind: EventKind = self
            .kind
            .parse()
            .map_err(|error: stockroom_domain::UnknownName| damaged(error.to_string()))?;
        let event_id = event_ids::restored(self.event_id, kind, &self.order_id, self.order_version);
        let notice = self
            .notice
            .as_deref()
            .map(|text| notices::decode(&event_id, text))
            .transpose()?;
        Ok(Entry {
            seq: self.seq,
            consumer: self
                .consumer
                .parse()
                .map_err(|error: stockroom_domain::UnknownName| damaged(error.to_string()))?,
            deliveries: self.deliveries,
            rejections: self.rejections,
            // A lease given back keeps no token; an entry never leased has
            // none either.
            lease: self.lease_token.map(|token| Lease {
                token,
                until_ms: self.leased_until_ms,
            }),
            dead_at_ms: self.dead_at_ms,
            event: EventRecord {
                event_id,
                kind,
                order_id: self.order_id,
                order_version: self.order_version,
                total_units: u64::try_from(self.total_units)
                    .map_err(|_| damaged(format!("{} units", self.total_units)))?,
                occurred_at_ms: self.occurred_at_ms,
                notice,
                trace_parent: self.trace_parent,
            },
        })
    }
}

/// Runs a batch of bus calls: loads what they touch, decides them, writes
/// the decisions, and answers each.
pub(crate) fn run(
    sql: Sql<'_>,
    commands: Vec<OutboxCommand>,
    now_ms: i64,
) -> Result<Vec<OutboxReply>, StorageError> {
    let needs = OutboxNeeds::of(&commands);
    let outbox = load(sql, &needs, now_ms)?;
    let (replies, changes) = decide(outbox, commands);
    apply(sql, &changes)?;
    Ok(replies)
}

/// Loads each consumer's due entries (as many as its leases may take, oldest
/// first) and every entry the calls name.
fn load(sql: Sql<'_>, needs: &OutboxNeeds, now_ms: i64) -> Result<Outbox, StorageError> {
    let mut outbox = Outbox::new(now_ms);
    for (consumer, limit) in &needs.due {
        let rows = sql.rows(
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM outbox
                 WHERE consumer = ?1 AND dead_at_ms IS NULL AND leased_until_ms <= ?2
                 ORDER BY seq LIMIT ?3"
            ),
            rusqlite::params![consumer.as_str(), now_ms, limit],
            entry_row,
        )?;
        for row in rows {
            outbox.load(row.entry()?);
        }
    }
    for (consumer, seqs) in &needs.named {
        let rows = sql.rows(
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM outbox
                 WHERE consumer = ?1 AND seq IN (SELECT value FROM json_each(?2))"
            ),
            rusqlite::params![
                consumer.as_str(),
                json_list(&seqs.iter().collect::<Vec<_>>())
            ],
            entry_row,
        )?;
        for row in rows {
            outbox.load(row.entry()?);
        }
    }
    Ok(outbox)
}

/// The columns of an entry's state that a write is conditional on, and
/// writes: (seq, deliveries, rejections, leased_until_ms, lease_token,
/// dead_at_ms).
fn state(entry: &Entry) -> (i64, u32, u32, i64, Option<&str>, Option<i64>) {
    let (until_ms, token) = match &entry.lease {
        Some(lease) => (lease.until_ms, Some(lease.token.as_str())),
        None => (0, None),
    };
    (
        entry.seq,
        entry.deliveries,
        entry.rejections,
        until_ms,
        token,
        entry.dead_at_ms,
    )
}

/// The condition that a row of `outbox` is in the state of the JSON value
/// `value` at path `at`, as [`state`] lays it out.
fn as_loaded(value: &str, at: &str) -> String {
    format!(
        "outbox.seq = {value} ->> '{at}[0]'
         AND outbox.deliveries = {value} ->> '{at}[1]'
         AND outbox.rejections = {value} ->> '{at}[2]'
         AND outbox.lease_token IS {value} ->> '{at}[4]'
         AND (outbox.lease_token IS NULL OR outbox.leased_until_ms = {value} ->> '{at}[3]')
         AND outbox.dead_at_ms IS {value} ->> '{at}[5]'"
    )
}

/// Writes what the outbox decided: every delete and update conditional on
/// the entry being as loaded, and checked. The single writer makes a
/// mismatch impossible, so one is reported as a bug rather than written.
pub(crate) fn apply(sql: Sql<'_>, changes: &OutboxChanges) -> Result<(), StorageError> {
    if !changes.deleted.is_empty() {
        let rows: Vec<_> = changes.deleted.iter().map(state).collect();
        let deleted = sql.execute(
            &format!(
                "{} DELETE FROM outbox WHERE rowid IN (
                     SELECT outbox.rowid FROM outbox, loaded WHERE {})",
                json_rows("loaded", "?1"),
                as_loaded("loaded.v", "$")
            ),
            [json_list(&rows)],
        )?;
        expect_rows("outbox delete", deleted, rows.len())?;
    }
    if !changes.updated.is_empty() {
        let rows: Vec<_> = changes
            .updated
            .iter()
            .map(|change| (state(&change.after), state(&change.loaded)))
            .collect();
        let updated = sql.execute(
            &format!(
                "{} UPDATE outbox
                 SET deliveries = change.v ->> '$[0][1]',
                     rejections = change.v ->> '$[0][2]',
                     leased_until_ms = change.v ->> '$[0][3]',
                     lease_token = change.v ->> '$[0][4]',
                     dead_at_ms = change.v ->> '$[0][5]'
                 FROM change
                 WHERE {}",
                json_rows("change", "?1"),
                as_loaded("change.v", "$[1]")
            ),
            [json_list(&rows)],
        )?;
        expect_rows("outbox update", updated, rows.len())?;
    }
    insert(sql, &changes.inserted)
}

/// Adds new entries, each addressed to its consumer.
pub(crate) fn insert(sql: Sql<'_>, entries: &[NewEntry]) -> Result<(), StorageError> {
    if entries.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = entries
        .iter()
        .map(|entry| {
            let event = &entry.event;
            (
                event_ids::stored(event),
                event.kind.as_str(),
                &event.order_id,
                event.order_version,
                event.total_units,
                event.occurred_at_ms,
                entry.consumer.as_str(),
                &event.trace_parent,
                entry.rejections,
                entry.dead_at_ms,
                event.notice.as_ref().map(notices::encode),
            )
        })
        .collect();
    sql.execute(
        &format!(
            "{} INSERT INTO outbox (event_id, kind, order_id, order_version, total_units,
                                    occurred_at_ms, consumer, trace_parent, rejections,
                                    dead_at_ms, notice)
             SELECT v ->> 0, v ->> 1, v ->> 2, v ->> 3, v ->> 4, v ->> 5, v ->> 6, v ->> 7,
                    v ->> 8, v ->> 9, v ->> 10
             FROM entry",
            json_rows("entry", "?1")
        ),
        [json_list(&rows)],
    )?;
    Ok(())
}

fn expect_rows(what: &str, changed: usize, expected: usize) -> Result<(), StorageError> {
    if changed != expected {
        return Err(StorageError::Inconsistent(format!(
            "{what}: {changed} rows matched the loaded state, {expected} expected"
        )));
    }
    Ok(())
}

/// Up to `limit` dead letters of `consumer`, oldest first.
pub(crate) fn dead_letters(
    sql: Sql<'_>,
    consumer: Consumer,
    limit: u32,
) -> Result<Vec<DeadLetter>, StorageError> {
    let rows = sql.rows(
        &format!(
            "SELECT {ENTRY_COLUMNS} FROM outbox
             WHERE consumer = ?1 AND dead_at_ms IS NOT NULL ORDER BY seq LIMIT ?2"
        ),
        rusqlite::params![consumer.as_str(), limit],
        entry_row,
    )?;
    let mut letters = Vec::with_capacity(rows.len());
    for row in rows {
        let entry = row.entry()?;
        letters.extend(DeadLetter::of(&entry));
    }
    Ok(letters)
}

/// Per consumer: waiting events, the oldest one's time, dead letters.
pub(crate) fn counts(sql: Sql<'_>) -> Result<Vec<OutboxCounts>, StorageError> {
    let mut counts = Vec::with_capacity(Consumer::ALL.len());
    for consumer in Consumer::ALL {
        let (pending, oldest) = sql
            .row(
                "SELECT COUNT(*), MIN(occurred_at_ms) FROM outbox
                 WHERE consumer = ?1 AND dead_at_ms IS NULL",
                [consumer.as_str()],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?)),
            )?
            .unwrap_or((0, None));
        let dead = sql
            .row(
                "SELECT COUNT(*) FROM outbox WHERE consumer = ?1 AND dead_at_ms IS NOT NULL",
                [consumer.as_str()],
                |row| row.get::<_, i64>(0),
            )?
            .unwrap_or(0);
        counts.push(OutboxCounts {
            consumer,
            pending: pending as u64,
            oldest_pending_at_ms: oldest,
            dead: dead as u64,
        });
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_list_matches_the_row_reader() {
        assert_eq!(ENTRY_COLUMNS.split(',').count(), 15);
    }
}
