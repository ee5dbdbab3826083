//! How both backends store the outbox: one row per batch of events for one
//! consumer, not one row per event.
//!
//! A batch of a few hundred orders raises a few hundred events for the
//! payment consumer at once, which lease them together and acknowledge them
//! together. Stored one row per event, each was inserted with two index
//! entries, rewritten by its lease and deleted: about 30 % of an order's
//! write-ahead log and a third of PostgreSQL's row operations for it
//! (docs/benchmarks.md, seventh pass). Stored one row per batch, the batch
//! is inserted, leased and deleted as one row, and the outbox's state
//! machine ([`stockroom_domain::outbox::Outbox`]) still decides per event:
//! this module only unpacks a row into its entries and packs the decisions
//! back.
//!
//! A row (`outbox`) keeps:
//! - `events`: the batch's events as one JSON array of `[kind, order id,
//!   order version, units, occurred_at_ms, trace parent, notice, event id]`
//!   (the id null when its kind, order and version make it again, as in
//!   [`crate::event_ids`]), written once and never rewritten, so a lease or
//!   an acknowledgement rewrites only the small state beside it;
//! - `states`: each event's delivery state, as runs of equal states: a
//!   number `n` is `n` events acknowledged (gone), an array `[n, deliveries,
//!   rejections, lease token, lease end, dead_at_ms]` is `n` events in that
//!   state. A batch leased and acknowledged together is one run throughout;
//! - what the queries filter on, made from the states: how many events are
//!   live (neither acknowledged nor dead), when the first of them is due
//!   again (0 when one has no lease), when the oldest happened, and
//!   `dead_at_ms`, set only on a dead letter's row.
//!
//! An event's delivery id is its row's number times [`SLOTS_PER_ROW`] plus
//! its place in the row, so ids still grow in the order events were written.
//! A dead letter always has a row of its own: an event dead-lettered from a
//! row of several moves to a new row (with a new delivery id), so a poison
//! event never holds back the others, and the dead letters are found,
//! counted, listed and pruned by their rows. Every write of a row is
//! conditional on its `states` being the text it was loaded with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stockroom_domain::outbox::{Entry, Lease, NewEntry, Outbox, OutboxChanges};
use stockroom_domain::rules::EventRecord;
use stockroom_domain::{Consumer, EventKind};

use crate::{StorageError, event_ids, notices};

/// The most events one row holds. A batch's events for one consumer fill
/// as many rows as they need. A consumer leases whole rows up to its
/// limit (data-service's consumers ask for 512 events, its relay 500), so
/// a row of this size is leased whole and acknowledged with one write; a
/// row much larger would be leased in parts, each part a rewrite of its
/// states.
pub const EVENTS_PER_ROW_MAX: usize = 128;

/// How many delivery ids each row has: an event's id is its row's number
/// times this plus its place in the row.
pub const SLOTS_PER_ROW: i64 = 1_024;

const _: () = assert!(EVENTS_PER_ROW_MAX as i64 <= SLOTS_PER_ROW);

/// The delivery id of the event at `slot` of row `row_seq`.
pub fn delivery_id(row_seq: i64, slot: usize) -> i64 {
    row_seq
        .saturating_mul(SLOTS_PER_ROW)
        .saturating_add(slot as i64)
}

/// The row that holds the event of `delivery_id`, and its place in it.
pub fn row_and_slot(delivery_id: i64) -> (i64, usize) {
    (
        delivery_id.div_euclid(SLOTS_PER_ROW),
        delivery_id.rem_euclid(SLOTS_PER_ROW) as usize,
    )
}

/// An event as one element of a row's `events`.
type StoredEvent = (
    String,
    String,
    i64,
    u64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A run of events in one state, as one element of a row's `states`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum Run {
    /// This many events acknowledged.
    Gone(u32),
    /// This many events with these deliveries, rejections, lease token,
    /// lease end and death.
    Held(u32, u32, u32, Option<String>, i64, Option<i64>),
}

/// One event's delivery state; the event itself is in the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    deliveries: u32,
    rejections: u32,
    lease: Option<Lease>,
    dead_at_ms: Option<i64>,
}

impl State {
    fn of(entry: &Entry) -> State {
        State {
            deliveries: entry.deliveries,
            rejections: entry.rejections,
            lease: entry.lease.clone(),
            dead_at_ms: entry.dead_at_ms,
        }
    }

    fn is_live(&self) -> bool {
        self.dead_at_ms.is_none()
    }
}

/// A row as read from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    pub seq: i64,
    pub consumer: String,
    pub events: String,
    pub states: String,
}

/// A row loaded for a batch of bus calls: its entries for the outbox, and
/// what rewriting it needs (each place's state and time, and the states as
/// loaded, which every write of the row is conditional on).
#[derive(Debug, Clone)]
pub struct LoadedRow {
    /// Each place's state; `None` once acknowledged.
    states: Vec<Option<State>>,
    occurred_at_ms: Vec<i64>,
    loaded_states: String,
}

impl LoadedRow {
    /// Unpacks a stored row into its entries (acknowledged places have
    /// none) and the row they were loaded from, to keep by the row's
    /// number for [`writes`].
    pub fn decode(row: StoredRow) -> Result<(LoadedRow, Vec<Entry>), StorageError> {
        let damaged =
            |why: String| StorageError::Inconsistent(format!("outbox row {}: {why}", row.seq));
        let consumer: Consumer = row
            .consumer
            .parse()
            .map_err(|error: stockroom_domain::UnknownName| damaged(error.to_string()))?;
        let events: Vec<StoredEvent> =
            serde_json::from_str(&row.events).map_err(|error| damaged(error.to_string()))?;
        let runs: Vec<Run> =
            serde_json::from_str(&row.states).map_err(|error| damaged(error.to_string()))?;
        let states = expand(runs);
        if states.len() != events.len() || events.len() as i64 > SLOTS_PER_ROW {
            return Err(damaged(format!(
                "{} events and {} states",
                events.len(),
                states.len()
            )));
        }
        let mut entries = Vec::with_capacity(events.len());
        let mut occurred_at_ms = Vec::with_capacity(events.len());
        for (slot, (stored, state)) in events.into_iter().zip(&states).enumerate() {
            let event = event(stored).map_err(damaged)?;
            occurred_at_ms.push(event.occurred_at_ms);
            if let Some(state) = state {
                entries.push(Entry {
                    seq: delivery_id(row.seq, slot),
                    consumer,
                    event,
                    deliveries: state.deliveries,
                    rejections: state.rejections,
                    lease: state.lease.clone(),
                    dead_at_ms: state.dead_at_ms,
                });
            }
        }
        let loaded = LoadedRow {
            states,
            occurred_at_ms,
            loaded_states: row.states,
        };
        Ok((loaded, entries))
    }
}

/// The outbox a batch of bus calls decides on, and the rows its entries
/// came from, kept for [`writes`].
pub struct LoadedRows {
    pub outbox: Outbox,
    pub rows: BTreeMap<i64, LoadedRow>,
}

impl LoadedRows {
    /// Nothing loaded yet; `now_ms` is the time of the batch's decisions.
    pub fn new(now_ms: i64) -> LoadedRows {
        LoadedRows {
            outbox: Outbox::new(now_ms),
            rows: BTreeMap::new(),
        }
    }

    /// Unpacks stored rows: each row's entries into the outbox, the row
    /// kept for the writes. A row loaded twice keeps its first copy.
    pub fn unpack(
        &mut self,
        rows: impl IntoIterator<Item = StoredRow>,
    ) -> Result<(), StorageError> {
        for stored in rows {
            let seq = stored.seq;
            if self.rows.contains_key(&seq) {
                continue;
            }
            let (row, entries) = LoadedRow::decode(stored)?;
            entries
                .into_iter()
                .for_each(|entry| self.outbox.load(entry));
            self.rows.insert(seq, row);
        }
        Ok(())
    }
}

/// What the queries filter a row on, made from its states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Events neither acknowledged nor dead.
    pub live: i32,
    /// When the first live event is due for a lease: 0 when one has no
    /// lease, the earliest lease end otherwise.
    pub due_at_ms: i64,
    /// When the oldest live event happened.
    pub first_at_ms: Option<i64>,
    /// When the row's event was dead-lettered; only a dead letter's row,
    /// which holds that one event, has it.
    pub dead_at_ms: Option<i64>,
}

fn summary(states: &[Option<State>], occurred_at_ms: &[i64]) -> Summary {
    let mut summary = Summary {
        live: 0,
        due_at_ms: i64::MAX,
        first_at_ms: None,
        dead_at_ms: None,
    };
    for (state, &at_ms) in states.iter().zip(occurred_at_ms) {
        let Some(state) = state else {
            continue;
        };
        if !state.is_live() {
            summary.dead_at_ms = state.dead_at_ms;
            continue;
        }
        summary.live += 1;
        let due_at_ms = state.lease.as_ref().map_or(0, |lease| lease.until_ms);
        summary.due_at_ms = summary.due_at_ms.min(due_at_ms);
        summary.first_at_ms = Some(summary.first_at_ms.map_or(at_ms, |first| first.min(at_ms)));
    }
    if summary.live == 0 {
        summary.due_at_ms = 0;
    }
    summary
}

/// A row to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRow {
    pub consumer: Consumer,
    pub events: String,
    pub states: String,
    pub summary: Summary,
}

/// A row to rewrite, if its states are still `loaded_states`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowUpdate {
    pub seq: i64,
    pub loaded_states: String,
    pub states: String,
    pub summary: Summary,
}

/// A row to delete, if its states are still `loaded_states`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDelete {
    pub seq: i64,
    pub loaded_states: String,
}

/// Everything a batch of bus calls writes, by row, each list in row order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowWrites {
    pub deleted: Vec<RowDelete>,
    pub updated: Vec<RowUpdate>,
    pub inserted: Vec<NewRow>,
}

/// The rows new entries make: each consumer's entries in order, at most
/// [`EVENTS_PER_ROW_MAX`] to a row, and each dead one in a row of its own.
pub fn new_rows(entries: &[NewEntry]) -> Vec<NewRow> {
    let mut by_consumer: BTreeMap<Consumer, Vec<(&EventRecord, State)>> = BTreeMap::new();
    let mut rows = Vec::new();
    for entry in entries {
        let state = State {
            deliveries: 0,
            rejections: entry.rejections,
            lease: None,
            dead_at_ms: entry.dead_at_ms,
        };
        if state.is_live() {
            by_consumer
                .entry(entry.consumer)
                .or_default()
                .push((&entry.event, state));
        } else {
            rows.push(new_row(entry.consumer, &[(&entry.event, state)]));
        }
    }
    for (consumer, events) in by_consumer {
        rows.extend(
            events
                .chunks(EVENTS_PER_ROW_MAX)
                .map(|chunk| new_row(consumer, chunk)),
        );
    }
    rows
}

fn new_row(consumer: Consumer, events: &[(&EventRecord, State)]) -> NewRow {
    let stored: Vec<StoredEvent> = events.iter().map(|(event, _)| stored(event)).collect();
    let states: Vec<Option<State>> = events
        .iter()
        .map(|(_, state)| Some(state.clone()))
        .collect();
    let occurred_at_ms: Vec<i64> = events
        .iter()
        .map(|(event, _)| event.occurred_at_ms)
        .collect();
    NewRow {
        consumer,
        events: serde_json::to_string(&stored).expect("plain values always serialise"),
        states: encode_states(&states),
        summary: summary(&states, &occurred_at_ms),
    }
}

/// What the outbox's decisions write, row by row: every acknowledged place
/// emptied, every changed entry's state put in its place, a row left with
/// no event deleted, and an event dead-lettered out of a row of several
/// moved to a row of its own.
pub fn writes(
    rows: &BTreeMap<i64, LoadedRow>,
    changes: &OutboxChanges,
) -> Result<RowWrites, StorageError> {
    let mut touched: BTreeMap<i64, Vec<Option<State>>> = BTreeMap::new();
    let mut moved: Vec<(Consumer, EventRecord, State)> = Vec::new();
    let mut place = |seq: i64, state: Option<State>| -> Result<(), StorageError> {
        let (row_seq, slot) = row_and_slot(seq);
        let row = rows.get(&row_seq).ok_or_else(|| {
            StorageError::Inconsistent(format!("outbox entry {seq} has no loaded row"))
        })?;
        let states = touched.entry(row_seq).or_insert_with(|| row.states.clone());
        let current = states.get_mut(slot).ok_or_else(|| {
            StorageError::Inconsistent(format!("outbox entry {seq} is past its row's end"))
        })?;
        *current = state;
        Ok(())
    };
    for entry in &changes.deleted {
        place(entry.seq, None)?;
    }
    for change in &changes.updated {
        if change.after.seq != change.loaded.seq {
            return Err(StorageError::Inconsistent(format!(
                "outbox entry {} changed into entry {}",
                change.loaded.seq, change.after.seq
            )));
        }
        place(change.after.seq, Some(State::of(&change.after)))?;
        let (row_seq, _) = row_and_slot(change.after.seq);
        let shared = rows.get(&row_seq).is_some_and(|row| row.states.len() > 1);
        if change.after.dead_at_ms.is_some() && shared {
            place(change.after.seq, None)?;
            moved.push((
                change.after.consumer,
                change.after.event.clone(),
                State::of(&change.after),
            ));
        }
    }
    let mut writes = RowWrites::default();
    for (row_seq, states) in touched {
        let row = &rows[&row_seq];
        if states.iter().all(Option::is_none) {
            writes.deleted.push(RowDelete {
                seq: row_seq,
                loaded_states: row.loaded_states.clone(),
            });
        } else {
            writes.updated.push(RowUpdate {
                seq: row_seq,
                loaded_states: row.loaded_states.clone(),
                states: encode_states(&states),
                summary: summary(&states, &row.occurred_at_ms),
            });
        }
    }
    for (consumer, event, state) in &moved {
        writes
            .inserted
            .push(new_row(*consumer, &[(event, state.clone())]));
    }
    writes.inserted.extend(new_rows(&changes.inserted));
    Ok(writes)
}

fn stored(event: &EventRecord) -> StoredEvent {
    let id = event_ids::stored(event);
    (
        event.kind.as_str().to_owned(),
        event.order_id.clone(),
        event.order_version,
        event.total_units,
        event.occurred_at_ms,
        event.trace_parent.clone(),
        event.notice.as_ref().map(notices::encode),
        (!id.is_empty()).then(|| id.to_owned()),
    )
}

fn event(stored: StoredEvent) -> Result<EventRecord, String> {
    let (kind, order_id, order_version, total_units, occurred_at_ms, trace_parent, notice, id) =
        stored;
    let kind: EventKind = kind
        .parse()
        .map_err(|error: stockroom_domain::UnknownName| error.to_string())?;
    let event_id = event_ids::restored(id.unwrap_or_default(), kind, &order_id, order_version);
    let notice = notice
        .as_deref()
        .map(|text| notices::decode(&event_id, text))
        .transpose()
        .map_err(|error| error.to_string())?;
    Ok(EventRecord {
        event_id,
        kind,
        order_id,
        order_version,
        total_units,
        occurred_at_ms,
        trace_parent,
        notice,
    })
}

fn expand(runs: Vec<Run>) -> Vec<Option<State>> {
    let mut states = Vec::new();
    for run in runs {
        match run {
            Run::Gone(count) => states.extend((0..count).map(|_| None)),
            Run::Held(count, deliveries, rejections, token, until_ms, dead_at_ms) => {
                let state = State {
                    deliveries,
                    rejections,
                    // A lease given back keeps no token, and its end means
                    // nothing then.
                    lease: token.map(|token| Lease { token, until_ms }),
                    dead_at_ms,
                };
                states.extend((0..count).map(|_| Some(state.clone())));
            }
        }
    }
    states
}

fn encode_states(states: &[Option<State>]) -> String {
    let mut runs: Vec<(u32, &Option<State>)> = Vec::new();
    for state in states {
        match runs.last_mut() {
            Some((count, last)) if *last == state => *count += 1,
            _ => runs.push((1, state)),
        }
    }
    let runs: Vec<Run> = runs
        .into_iter()
        .map(|(count, state)| match state {
            None => Run::Gone(count),
            Some(state) => {
                let (token, until_ms) = match &state.lease {
                    Some(lease) => (Some(lease.token.clone()), lease.until_ms),
                    None => (None, 0),
                };
                Run::Held(
                    count,
                    state.deliveries,
                    state.rejections,
                    token,
                    until_ms,
                    state.dead_at_ms,
                )
            }
        })
        .collect();
    serde_json::to_string(&runs).expect("plain values always serialise")
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
