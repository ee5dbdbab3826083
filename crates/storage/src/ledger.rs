//! How both backends store a product's ledger: one row per product and batch
//! (`stock_ledger`: product key, the first and last movement's numbers, and
//! the movements as one JSON array of `[kind, reason, reference, order id,
//! on-hand delta, reserved delta, sold delta, at_ms, settings]`, the
//! settings `[limit, threshold]` or null). A flash sale's batch
//! of a hundred orders adds one row to the hot product's ledger, not a
//! hundred; a reader expands the rows into movements again.
//!
//! SQLite keeps a row's movements oldest first. PostgreSQL keeps them newest
//! first ([`EntryOrder`]), because it adds a batch's few movements of a
//! product to the product's last row while that row is small: the new
//! entries go in front, so the row's rewrite on its page logs only them.
//! A row so grown holds one array per batch, joined by commas, as an
//! order's history does ([`crate::history`]).
//!
//! An operator's idempotency key keeps its answer the same way: the movement
//! and the product's figures and settings right after it.

use std::collections::BTreeMap;

use stockroom_domain::Stock;
use stockroom_domain::rules::{
    AdjustAnswer, FiguresDelta, Movement, MovementKind, MovementReason, ProductSettings,
};

use serde::{Deserialize, Serialize};

use crate::{MovementPage, StorageError};

/// One stored row of a product's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub product_key: String,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The JSON array of the movements `first_seq..=last_seq`.
    pub entries: String,
}

/// A product's settings as a ledger entry keeps them: limit, threshold.
type StoredSettings = (Option<u32>, Option<u64>);

/// A movement as one JSON array entry. A movement with no reason, reference
/// or settings (every movement an order makes) is stored in six elements,
/// `[kind, order id or null, on-hand delta, reserved delta, sold delta,
/// at_ms]`; any other in nine, `[kind, reason, reference, order id, on-hand
/// delta, reserved delta, sold delta, at_ms, settings]`, the one form
/// before the short one existed (both are read).
#[derive(Serialize)]
#[serde(untagged)]
enum Entry<'a> {
    Short(&'a str, Option<&'a str>, i64, i64, i64, i64),
    Full(
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        i64,
        i64,
        i64,
        i64,
        Option<StoredSettings>,
    ),
}

/// A movement read back, in either form.
#[derive(Deserialize)]
#[serde(untagged)]
enum OwnedEntry {
    Short(String, Option<String>, i64, i64, i64, i64),
    Full(
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
        i64,
        i64,
        i64,
        Option<StoredSettings>,
    ),
}

fn entry(movement: &Movement) -> Entry<'_> {
    let settings = movement
        .settings
        .map(|settings| (settings.max_per_customer, settings.low_stock_threshold));
    if movement.reason.is_none() && movement.reference.is_none() && settings.is_none() {
        return Entry::Short(
            movement.kind.as_str(),
            movement.order_id.as_deref(),
            movement.delta.on_hand,
            movement.delta.reserved,
            movement.delta.sold,
            movement.at_ms,
        );
    }
    Entry::Full(
        movement.kind.as_str(),
        movement.reason.map(MovementReason::as_str),
        movement.reference.as_deref(),
        movement.order_id.as_deref(),
        movement.delta.on_hand,
        movement.delta.reserved,
        movement.delta.sold,
        movement.at_ms,
        settings,
    )
}

/// The order of the movements in a row's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOrder {
    OldestFirst,
    NewestFirst,
}

/// The rows a batch's movements make: one per product, its movements in
/// `order`. The rules number a product's movements consecutively, one batch
/// at a time, so each row covers a run without gaps.
pub fn rows(movements: &[Movement], order: EntryOrder) -> Vec<LedgerRow> {
    let mut by_product: BTreeMap<&str, Vec<&Movement>> = BTreeMap::new();
    for movement in movements {
        by_product
            .entry(movement.product_key.as_str())
            .or_default()
            .push(movement);
    }
    by_product
        .into_iter()
        .map(|(product_key, mut movements)| {
            movements.sort_by_key(|movement| movement.seq);
            let (first_seq, last_seq) = (movements[0].seq, movements[movements.len() - 1].seq);
            if order == EntryOrder::NewestFirst {
                movements.reverse();
            }
            let entries: Vec<Entry<'_>> =
                movements.iter().map(|movement| entry(movement)).collect();
            LedgerRow {
                product_key: product_key.to_owned(),
                first_seq,
                last_seq,
                entries: serde_json::to_string(&entries).expect("plain values always serialise"),
            }
        })
        .collect()
}

fn damaged(product_key: &str, why: impl std::fmt::Display) -> StorageError {
    StorageError::Inconsistent(format!("the ledger of {product_key}: {why}"))
}

fn movement(product_key: &str, seq: u64, entry: OwnedEntry) -> Result<Movement, StorageError> {
    let (kind, reason, reference, order_id, on_hand, reserved, sold, at_ms, settings) = match entry
    {
        OwnedEntry::Short(kind, order_id, on_hand, reserved, sold, at_ms) => (
            kind, None, None, order_id, on_hand, reserved, sold, at_ms, None,
        ),
        OwnedEntry::Full(
            kind,
            reason,
            reference,
            order_id,
            on_hand,
            reserved,
            sold,
            at_ms,
            settings,
        ) => (
            kind, reason, reference, order_id, on_hand, reserved, sold, at_ms, settings,
        ),
    };
    Ok(Movement {
        product_key: product_key.to_owned(),
        seq,
        kind: kind
            .parse::<MovementKind>()
            .map_err(|error| damaged(product_key, error))?,
        reason: reason
            .as_deref()
            .map(str::parse::<MovementReason>)
            .transpose()
            .map_err(|error| damaged(product_key, error))?,
        reference,
        order_id,
        delta: FiguresDelta {
            on_hand,
            reserved,
            sold,
        },
        settings: settings.map(|(max_per_customer, low_stock_threshold)| ProductSettings {
            max_per_customer,
            low_stock_threshold,
        }),
        at_ms,
    })
}

/// The movements of one stored row, numbered from `first_seq`, oldest
/// first whatever `order` they are stored in.
pub fn decode(
    product_key: &str,
    first_seq: u64,
    entries: &str,
    order: EntryOrder,
) -> Result<Vec<Movement>, StorageError> {
    // A row PostgreSQL grew holds one array per batch, joined by commas
    // (see `crate::history`).
    let batches: Vec<Vec<OwnedEntry>> = serde_json::from_str(&crate::history::joined(entries))
        .map_err(|error| damaged(product_key, error))?;
    let mut entries: Vec<OwnedEntry> = batches.into_iter().flatten().collect();
    if order == EntryOrder::NewestFirst {
        entries.reverse();
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| movement(product_key, first_seq + index as u64, entry))
        .collect()
}

/// The number of the last movement a page after `after` of `limit`
/// movements needs read: the page's movements and the one after them, which
/// tells whether a next page exists. A product's movements are numbered
/// without gaps, so the rows holding them are those with a `last_seq` after
/// `after` and a `first_seq` at or before this.
pub fn last_wanted(after: u64, limit: u32) -> i64 {
    i64::try_from(after)
        .unwrap_or(i64::MAX)
        .saturating_add(i64::from(limit) + 1)
}

/// A page of movements after `after` of at most `limit`, from the stored
/// rows (first seq, entries in `order`) that [`last_wanted`] selected, in
/// order.
pub fn page(
    product_key: &str,
    after: u64,
    limit: u32,
    rows: impl IntoIterator<Item = (i64, String)>,
    order: EntryOrder,
) -> Result<MovementPage, StorageError> {
    let mut movements = Vec::new();
    for (first_seq, entries) in rows {
        let first_seq = u64::try_from(first_seq).map_err(|error| damaged(product_key, error))?;
        movements.extend(
            decode(product_key, first_seq, &entries, order)?
                .into_iter()
                .filter(|movement| movement.seq > after),
        );
    }
    let more = movements.len() > limit as usize;
    movements.truncate(limit as usize);
    let next_cursor = more
        .then(|| movements.last().map(|movement| movement.seq))
        .flatten();
    Ok(MovementPage {
        movements,
        next_cursor,
    })
}

/// An adjustment's answer as its key keeps it: the movement's seq and entry,
/// the figures (on hand, reserved, sold, received) and the settings after
/// it.
type StoredAnswer = (u64, OwnedEntry, [u64; 4], StoredSettings);

/// The stored form of an adjustment's answer.
pub fn encode_answer(answer: &AdjustAnswer) -> String {
    let stock = &answer.stock;
    let kept = (
        answer.movement.seq,
        entry(&answer.movement),
        [
            stock.on_hand(),
            stock.reserved(),
            stock.sold(),
            stock.received_total(),
        ],
        (
            answer.settings.max_per_customer,
            answer.settings.low_stock_threshold,
        ),
    );
    serde_json::to_string(&kept).expect("plain values always serialise")
}

/// An adjustment's answer as its key kept it.
pub fn decode_answer(product_key: &str, text: &str) -> Result<AdjustAnswer, StorageError> {
    let (seq, entry, figures, settings): StoredAnswer =
        serde_json::from_str(text).map_err(|error| damaged(product_key, error))?;
    let signed = |value: u64| i64::try_from(value).map_err(|error| damaged(product_key, error));
    let stock = Stock::from_row(
        signed(figures[0])?,
        signed(figures[1])?,
        signed(figures[2])?,
        signed(figures[3])?,
    )
    .map_err(|error| damaged(product_key, error))?;
    Ok(AdjustAnswer {
        movement: movement(product_key, seq, entry)?,
        stock,
        settings: ProductSettings {
            max_per_customer: settings.0,
            low_stock_threshold: settings.1,
        },
    })
}

#[cfg(test)]
mod tests {
    use stockroom_domain::rules::AdjustReason;

    use super::*;

    fn moved(seq: u64, kind: MovementKind, reserved: i64) -> Movement {
        Movement {
            product_key: "laptop".into(),
            seq,
            kind,
            reason: (kind == MovementKind::Adjusted)
                .then_some(MovementReason::Adjustment(AdjustReason::Damaged)),
            reference: (kind == MovementKind::Adjusted).then(|| "note \"7\"".into()),
            order_id: (kind == MovementKind::Reserved).then(|| "o1".into()),
            delta: FiguresDelta {
                on_hand: if kind == MovementKind::Adjusted {
                    -1
                } else {
                    0
                },
                reserved,
                sold: 0,
            },
            settings: None,
            at_ms: 5,
        }
    }

    #[test]
    fn a_batchs_movements_are_one_row_per_product_and_read_back_whole() {
        let batch = [
            moved(4, MovementKind::Reserved, 2),
            moved(5, MovementKind::Adjusted, 0),
        ];
        for order in [EntryOrder::OldestFirst, EntryOrder::NewestFirst] {
            let rows = rows(&batch, order);
            assert_eq!(rows.len(), 1);
            assert_eq!((rows[0].first_seq, rows[0].last_seq), (4, 5));
            assert_eq!(decode("laptop", 4, &rows[0].entries, order).unwrap(), batch);
        }
        let newest_first = &rows(&batch, EntryOrder::NewestFirst)[0].entries;
        assert!(newest_first.starts_with("[[\"adjusted\""), "{newest_first}");
        assert!(
            decode(
                "laptop",
                1,
                "[[\"stolen\",null,null,null,0,0,0,0,null]]",
                EntryOrder::OldestFirst
            )
            .is_err()
        );
    }

    #[test]
    fn a_row_grown_by_later_batches_reads_back_oldest_first() {
        let first = [
            moved(4, MovementKind::Reserved, 2),
            moved(5, MovementKind::Adjusted, 0),
        ];
        let later = [moved(6, MovementKind::Reserved, 1)];
        let stored = &rows(&first, EntryOrder::NewestFirst)[0].entries;
        let added = &rows(&later, EntryOrder::NewestFirst)[0].entries;
        // What `history::PREPEND_SQL` makes of the two.
        let grown = format!("{added},{stored}");
        let read = decode("laptop", 4, &grown, EntryOrder::NewestFirst).unwrap();
        assert_eq!(read, [first.as_slice(), later.as_slice()].concat());
    }

    #[test]
    fn an_orders_movement_is_stored_short_and_the_long_form_still_reads() {
        let reserved = moved(4, MovementKind::Reserved, 2);
        let stored = rows(std::slice::from_ref(&reserved), EntryOrder::OldestFirst);
        assert_eq!(stored[0].entries, r#"[["reserved","o1",0,2,0,5]]"#);
        let long_form = r#"[["reserved",null,null,"o1",0,2,0,5,null]]"#;
        assert_eq!(
            decode("laptop", 4, long_form, EntryOrder::OldestFirst).unwrap(),
            [reserved]
        );
    }

    #[test]
    fn an_adjustments_answer_round_trips() {
        let answer = AdjustAnswer {
            movement: moved(9, MovementKind::Adjusted, 0),
            stock: Stock::received(10).unwrap(),
            settings: ProductSettings {
                max_per_customer: Some(2),
                low_stock_threshold: None,
            },
        };
        assert_eq!(
            decode_answer("laptop", &encode_answer(&answer)).unwrap(),
            answer
        );
    }
}
