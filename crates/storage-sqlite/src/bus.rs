//! The outbox's rows: loading the rows a batch of bus calls touches,
//! unpacking them into the entries [`stockroom_domain::outbox::Outbox`]
//! decides on, writing its decisions back row by row with one statement per
//! kind of change, and reading dead letters and counts. A row holds a
//! batch's events for one consumer ([`stockroom_storage::outbox_rows`] says
//! how), so a batch is inserted, leased and acknowledged as one row.

use std::collections::BTreeMap;

use stockroom_domain::Consumer;
use stockroom_domain::outbox::{DeadLetter, NewEntry, OutboxChanges};
use stockroom_storage::StorageError;
use stockroom_storage::bus::{OutboxCommand, OutboxCounts, OutboxNeeds, OutboxReply, decide};
use stockroom_storage::outbox_rows::{self, LoadedRow, LoadedRows, NewRow, StoredRow, Summary};

use crate::records::{json_list, json_rows};
use crate::sql::Sql;

/// The columns [`stored_row`] reads, in its order.
const ROW_COLUMNS: &str = "seq, consumer, events, states";

fn stored_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRow> {
    Ok(StoredRow {
        seq: row.get(0)?,
        consumer: row.get(1)?,
        events: row.get(2)?,
        states: row.get(3)?,
    })
}

/// Runs a batch of bus calls: loads what they touch, decides them, writes
/// the decisions, and answers each.
pub(crate) fn run(
    sql: Sql<'_>,
    commands: Vec<OutboxCommand>,
    now_ms: i64,
) -> Result<Vec<OutboxReply>, StorageError> {
    let needs = OutboxNeeds::of(&commands);
    let LoadedRows { outbox, rows } = load(sql, &needs, now_ms)?;
    let (replies, changes) = decide(outbox, commands);
    apply(sql, &rows, &changes)?;
    Ok(replies)
}

/// Loads each consumer's rows with due events (whole rows, as many as hold
/// the events its leases may take, oldest first; no more rows than events
/// are looked at) and every row the calls name.
fn load(sql: Sql<'_>, needs: &OutboxNeeds, now_ms: i64) -> Result<LoadedRows, StorageError> {
    let mut loaded = LoadedRows::new(now_ms);
    for (consumer, limit) in &needs.due {
        let rows = sql.rows(
            &format!(
                "SELECT {ROW_COLUMNS} FROM outbox
                 WHERE seq IN (
                     SELECT seq FROM (
                         SELECT seq, SUM(live) OVER (ORDER BY seq) - live AS before
                         FROM (SELECT seq, live FROM outbox
                               WHERE consumer = ?1 AND dead_at_ms IS NULL AND due_at_ms <= ?2
                               ORDER BY seq LIMIT ?3))
                     WHERE before < ?3)
                 ORDER BY seq"
            ),
            rusqlite::params![consumer.as_str(), now_ms, limit],
            stored_row,
        )?;
        loaded.unpack(rows)?;
    }
    for (consumer, seqs) in &needs.named {
        let mut row_seqs: Vec<i64> = seqs
            .iter()
            .map(|&seq| outbox_rows::row_and_slot(seq).0)
            .collect();
        row_seqs.dedup();
        let rows = sql.rows(
            &format!(
                "SELECT {ROW_COLUMNS} FROM outbox
                 WHERE consumer = ?1 AND seq IN (SELECT value FROM json_each(?2))"
            ),
            rusqlite::params![consumer.as_str(), json_list(&row_seqs)],
            stored_row,
        )?;
        loaded.unpack(rows)?;
    }
    Ok(loaded)
}

/// A row's summary columns, as one JSON array's elements: live, due_at_ms,
/// first_at_ms, dead_at_ms.
fn summary(summary: &Summary) -> (i32, i64, Option<i64>, Option<i64>) {
    (
        summary.live,
        summary.due_at_ms,
        summary.first_at_ms,
        summary.dead_at_ms,
    )
}

/// Writes what the outbox decided, row by row: every delete and update
/// conditional on the row's states being as loaded, and checked. The single
/// writer makes a mismatch impossible, so one is reported as a bug rather
/// than written.
fn apply(
    sql: Sql<'_>,
    rows: &BTreeMap<i64, LoadedRow>,
    changes: &OutboxChanges,
) -> Result<(), StorageError> {
    let writes = outbox_rows::writes(rows, changes)?;
    if !writes.deleted.is_empty() {
        let rows: Vec<_> = writes
            .deleted
            .iter()
            .map(|row| (row.seq, &row.loaded_states))
            .collect();
        let deleted = sql.execute(
            &format!(
                "{} DELETE FROM outbox WHERE rowid IN (
                     SELECT outbox.rowid FROM outbox, loaded
                     WHERE outbox.seq = loaded.v ->> 0 AND outbox.states = loaded.v ->> 1)",
                json_rows("loaded", "?1"),
            ),
            [json_list(&rows)],
        )?;
        expect_rows("outbox delete", deleted, rows.len())?;
    }
    if !writes.updated.is_empty() {
        let rows: Vec<_> = writes
            .updated
            .iter()
            .map(|row| {
                (
                    row.seq,
                    &row.loaded_states,
                    &row.states,
                    summary(&row.summary),
                )
            })
            .collect();
        let updated = sql.execute(
            &format!(
                "{} UPDATE outbox
                 SET states = change.v ->> 2,
                     live = change.v ->> '$[3][0]',
                     due_at_ms = change.v ->> '$[3][1]',
                     first_at_ms = change.v ->> '$[3][2]',
                     dead_at_ms = change.v ->> '$[3][3]'
                 FROM change
                 WHERE outbox.seq = change.v ->> 0 AND outbox.states = change.v ->> 1",
                json_rows("change", "?1"),
            ),
            [json_list(&rows)],
        )?;
        expect_rows("outbox update", updated, rows.len())?;
    }
    insert_rows(sql, &writes.inserted)
}

/// Adds new entries, each addressed to its consumer, a batch's events for
/// one consumer in as few rows as [`outbox_rows::new_rows`] makes.
pub(crate) fn insert(sql: Sql<'_>, entries: &[NewEntry]) -> Result<(), StorageError> {
    insert_rows(sql, &outbox_rows::new_rows(entries))
}

fn insert_rows(sql: Sql<'_>, rows: &[NewRow]) -> Result<(), StorageError> {
    if rows.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = rows
        .iter()
        .map(|row| {
            (
                row.consumer.as_str(),
                &row.events,
                &row.states,
                summary(&row.summary),
            )
        })
        .collect();
    sql.execute(
        &format!(
            "{} INSERT INTO outbox (consumer, events, states, live, due_at_ms, first_at_ms,
                                    dead_at_ms)
             SELECT v ->> 0, v ->> 1, v ->> 2, v ->> '$[3][0]', v ->> '$[3][1]',
                    v ->> '$[3][2]', v ->> '$[3][3]'
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

/// Up to `limit` dead letters of `consumer`, oldest first; a dead letter's
/// row holds that one event.
pub(crate) fn dead_letters(
    sql: Sql<'_>,
    consumer: Consumer,
    limit: u32,
) -> Result<Vec<DeadLetter>, StorageError> {
    let rows = sql.rows(
        &format!(
            "SELECT {ROW_COLUMNS} FROM outbox
             WHERE consumer = ?1 AND dead_at_ms IS NOT NULL ORDER BY seq LIMIT ?2"
        ),
        rusqlite::params![consumer.as_str(), limit],
        stored_row,
    )?;
    let mut letters = Vec::with_capacity(rows.len());
    for row in rows {
        let (_, entries) = LoadedRow::decode(row)?;
        letters.extend(entries.iter().filter_map(DeadLetter::of));
    }
    Ok(letters)
}

/// Per consumer: waiting events, the oldest one's time, dead letters.
pub(crate) fn counts(sql: Sql<'_>) -> Result<Vec<OutboxCounts>, StorageError> {
    let mut counts = Vec::with_capacity(Consumer::ALL.len());
    for consumer in Consumer::ALL {
        let (pending, oldest) = sql
            .row(
                "SELECT COALESCE(SUM(live), 0), MIN(first_at_ms) FROM outbox
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
        assert_eq!(ROW_COLUMNS.split(',').count(), 4);
    }
}
