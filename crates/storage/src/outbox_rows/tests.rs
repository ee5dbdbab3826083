//! The outbox's rows, packed and unpacked around the real state machine.

use stockroom_domain::outbox::{DeliveryOutcome, Outbox, Receipt};
use stockroom_domain::rules::{Notice, event_id};

use super::*;

fn event(order_id: &str, units: u64) -> EventRecord {
    EventRecord {
        event_id: event_id(EventKind::OrderReserved, order_id, 1),
        kind: EventKind::OrderReserved,
        order_id: order_id.into(),
        order_version: 1,
        total_units: units,
        occurred_at_ms: 1_000 + units as i64,
        trace_parent: None,
        notice: None,
    }
}

/// The rows `entries` make, as the table would give them back, numbered
/// from `first_seq`.
fn stored(entries: &[NewEntry], first_seq: i64) -> Vec<StoredRow> {
    new_rows(entries)
        .into_iter()
        .zip(first_seq..)
        .map(|(row, seq)| StoredRow {
            seq,
            consumer: row.consumer.as_str().to_owned(),
            events: row.events,
            states: row.states,
        })
        .collect()
}

/// Loads stored rows into an outbox, keeping each row for the writes.
fn load(rows: Vec<StoredRow>, now_ms: i64) -> (Outbox, BTreeMap<i64, LoadedRow>) {
    let mut loaded = LoadedRows::new(now_ms);
    loaded.unpack(rows).expect("a row written here decodes");
    (loaded.outbox, loaded.rows)
}

/// Row `seq` of `payments(count)` as a later batch finds it, in `states`.
fn row_in(seq: i64, count: u64, states: &str) -> StoredRow {
    StoredRow {
        seq,
        consumer: "payment".into(),
        events: new_rows(&payments(count)).remove(0).events,
        states: states.into(),
    }
}

fn payments(count: u64) -> Vec<NewEntry> {
    (1..=count)
        .map(|index| NewEntry::routed(event(&format!("o{index}"), index)))
        .collect()
}

#[test]
fn delivery_ids_grow_with_the_row_and_the_place_and_give_both_back() {
    assert_eq!(row_and_slot(delivery_id(7, 0)), (7, 0));
    assert_eq!(row_and_slot(delivery_id(7, 127)), (7, 127));
    assert!(delivery_id(7, 127) < delivery_id(8, 0));
    assert_eq!(row_and_slot(-1).1, (SLOTS_PER_ROW - 1) as usize);
}

#[test]
fn a_batch_fills_one_row_per_consumer_up_to_the_row_limit_and_dead_ones_alone() {
    let mut entries = payments(EVENTS_PER_ROW_MAX as u64 + 2);
    let mut settled = event("o1", 1);
    settled.kind = EventKind::PaymentSucceeded;
    settled.event_id = event_id(settled.kind, "o1", 1);
    entries.push(NewEntry::routed(settled));
    entries.push(NewEntry {
        consumer: Consumer::Payment,
        event: event("poison", 9),
        rejections: 1,
        dead_at_ms: Some(5_000),
    });
    let rows = new_rows(&entries);
    let sizes: Vec<(Consumer, i32, Option<i64>)> = rows
        .iter()
        .map(|row| (row.consumer, row.summary.live, row.summary.dead_at_ms))
        .collect();
    assert_eq!(
        sizes,
        [
            (Consumer::Payment, 0, Some(5_000)),
            (Consumer::Payment, EVENTS_PER_ROW_MAX as i32, None),
            (Consumer::Payment, 2, None),
            (Consumer::Inventory, 1, None),
        ]
    );
    assert_eq!(
        rows[1].states, "[[128,0,0,null,0,null]]",
        "a new batch is one run"
    );
    assert_eq!(rows[1].summary.due_at_ms, 0, "unleased events are due now");
    assert_eq!(rows[1].summary.first_at_ms, Some(1_001));
}

#[test]
fn events_come_back_as_they_were_written() {
    let mut noticed = event("o2", 2);
    noticed.kind = EventKind::StockLow;
    noticed.event_id = "written:by:an-earlier-schema".into();
    noticed.trace_parent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    noticed.notice = Some(Notice::Stock {
        product_name: "Laptop".into(),
        available: 3,
        low_stock_threshold: Some(5),
    });
    let entries = vec![
        NewEntry::routed(event("o1", 1)),
        NewEntry {
            consumer: Consumer::Payment,
            ..NewEntry::routed(noticed.clone())
        },
    ];
    let (outbox, _) = load(stored(&entries, 3), 0);
    let first = outbox.entry(delivery_id(3, 0)).expect("the first event");
    let second = outbox.entry(delivery_id(3, 1)).expect("the second event");
    assert_eq!(first.event, event("o1", 1));
    assert_eq!(second.event, noticed);
    assert_eq!((second.deliveries, second.rejections), (0, 0));
}

#[test]
fn a_row_leased_whole_is_one_run_and_acknowledged_whole_is_deleted() {
    let (mut outbox, rows) = load(stored(&payments(3), 1), 10_000);
    let leased = outbox.lease(Consumer::Payment, 512, 1_000, "token");
    assert_eq!(leased.len(), 3);
    let writes = super::writes(&rows, &outbox.into_changes()).expect("writes");
    assert_eq!(writes.updated.len(), 1);
    let update = &writes.updated[0];
    assert_eq!(update.states, r#"[[3,1,0,"token",11000,null]]"#);
    assert_eq!(update.loaded_states, "[[3,0,0,null,0,null]]");
    assert_eq!(update.summary.due_at_ms, 11_000);
    assert_eq!(update.summary.live, 3);

    let (mut outbox, rows) = load(vec![row_in(1, 3, &update.states)], 10_500);
    let receipts: Vec<Receipt> = leased.iter().map(|delivery| delivery.receipt()).collect();
    assert_eq!(
        outbox.finish(Consumer::Payment, DeliveryOutcome::Acknowledge, &receipts),
        3
    );
    let writes = super::writes(&rows, &outbox.into_changes()).expect("writes");
    assert_eq!(
        writes.deleted,
        [RowDelete {
            seq: 1,
            loaded_states: update.states.clone()
        }]
    );
    assert!(writes.updated.is_empty() && writes.inserted.is_empty());
}

#[test]
fn a_row_partly_acknowledged_keeps_the_rest_and_counts_them() {
    let (mut outbox, rows) = load(stored(&payments(3), 1), 10_000);
    let leased = outbox.lease(Consumer::Payment, 512, 1_000, "token");
    outbox.finish(
        Consumer::Payment,
        DeliveryOutcome::Acknowledge,
        &[leased[0].receipt(), leased[2].receipt()],
    );
    outbox.finish(
        Consumer::Payment,
        DeliveryOutcome::Release,
        &[leased[1].receipt()],
    );
    let writes = super::writes(&rows, &outbox.into_changes()).expect("writes");
    let update = &writes.updated[0];
    assert_eq!(update.states, "[1,[1,1,0,null,0,null],1]");
    assert_eq!(update.summary.live, 1);
    assert_eq!(
        update.summary.due_at_ms, 0,
        "a released event is due at once"
    );
    assert_eq!(update.summary.first_at_ms, Some(1_002));

    let (outbox, _) = load(vec![row_in(1, 3, &update.states)], 10_000);
    assert!(outbox.entry(delivery_id(1, 0)).is_none());
    assert_eq!(
        outbox
            .entry(delivery_id(1, 1))
            .expect("the released event")
            .event
            .order_id,
        "o2"
    );
    assert!(outbox.entry(delivery_id(1, 2)).is_none());
}

/// What rejecting the event at `slot` writes, when row `seq` holds
/// `payments(count)`, all leased at 10 s.
fn reject(seq: i64, count: u64, slot: usize) -> RowWrites {
    let (mut outbox, rows) = load(stored(&payments(count), seq), 10_000);
    let leased = outbox.lease(Consumer::Payment, 512, 1_000, "token");
    outbox.finish(
        Consumer::Payment,
        DeliveryOutcome::Reject,
        &[leased[slot].receipt()],
    );
    super::writes(&rows, &outbox.into_changes()).expect("writes")
}

#[test]
fn an_event_dead_lettered_from_a_shared_row_moves_to_a_row_of_its_own() {
    let writes = reject(1, 2, 1);
    assert_eq!(writes.updated.len(), 1);
    assert_eq!(writes.updated[0].summary.live, 1);
    assert_eq!(writes.updated[0].summary.dead_at_ms, None);
    assert_eq!(writes.inserted.len(), 1);
    let dead = &writes.inserted[0];
    assert_eq!(dead.summary.dead_at_ms, Some(10_000));
    assert_eq!(dead.summary.live, 0);
    assert_eq!(dead.states, "[[1,1,1,null,0,10000]]");
}

#[test]
fn a_lone_event_dead_lettered_stays_in_its_row_and_is_redriven_there() {
    let writes = reject(4, 1, 0);
    assert!(writes.inserted.is_empty());
    assert_eq!(writes.updated[0].summary.dead_at_ms, Some(10_000));

    let (mut outbox, rows) = load(vec![row_in(4, 1, &writes.updated[0].states)], 20_000);
    assert_eq!(outbox.redrive(Consumer::Payment, &[delivery_id(4, 0)]), 1);
    let writes = super::writes(&rows, &outbox.into_changes()).expect("writes");
    assert_eq!(writes.updated[0].summary.dead_at_ms, None);
    assert_eq!(writes.updated[0].summary.live, 1);
}

#[test]
fn a_damaged_row_is_reported_not_guessed() {
    let mut row = stored(&payments(2), 1).remove(0);
    row.states = "[[1,0,0,null,0,null]]".into();
    assert!(matches!(
        LoadedRow::decode(row),
        Err(StorageError::Inconsistent(_))
    ));
}
