//! How both backends store an order's history: in the order's own row, as
//! one or more JSON arrays of `[version, status, reason or null, at_ms]`
//! joined by commas, one array per batch that added entries. SQLite puts a
//! batch's array after the stored ones ([`APPEND_SQL`]); PostgreSQL puts it
//! in front ([`PREPEND_SQL`]), so that the older entries end the row
//! unchanged and a rewrite on the same page logs only the bytes before them.
//! Readers put the arrays in one and sort the entries by version
//! ([`decode`]), whatever their order. A history written as a single array,
//! as every history was before, is the same text with one batch.
//!
//! Every change of an order adds to its history, and the history is read
//! only with its order. Kept in a table of its own it cost three more rows
//! and three more index entries per order over the flow of a sale, written
//! while the batch held the hot product's lock; in the order's row it rides
//! along with the insert and the updates that happen anyway.
//!
//! A batch adds its new entries without reading the stored ones, and
//! without cutting either text: `substr` and `length` count characters, so
//! on a UTF-8 database they walk every byte of the stored text (about 1 %
//! of the machine's CPU on PostgreSQL's cold catalogue, where the ledger's
//! rows grow the same way; docs/benchmarks.md, fifteenth pass). Joining the
//! two texts with a comma is a copy.

use std::collections::HashMap;

use stockroom_domain::rules::HistoryRecord;
use stockroom_domain::{OrderStatus, Reason};

use crate::StorageError;

/// The SQL expression, the same on both backends, of `stored` with the JSON
/// array `added` appended. Either may be the empty array `[]`.
pub const APPEND_SQL: &str = "CASE WHEN {added} = '[]' THEN {stored} \
     WHEN {stored} = '[]' THEN {added} \
     ELSE {stored} || ',' || {added} END";

/// The SQL expression of `stored` with the JSON array `added` put in
/// front. Either may be the empty array `[]`.
pub const PREPEND_SQL: &str = "CASE WHEN {added} = '[]' THEN {stored} \
     WHEN {stored} = '[]' THEN {added} \
     ELSE {added} || ',' || {stored} END";

/// [`APPEND_SQL`] for these two column expressions.
pub fn append_sql(stored: &str, added: &str) -> String {
    fill(APPEND_SQL, stored, added)
}

/// [`PREPEND_SQL`] for these two column expressions.
pub fn prepend_sql(stored: &str, added: &str) -> String {
    fill(PREPEND_SQL, stored, added)
}

fn fill(template: &str, stored: &str, added: &str) -> String {
    template
        .replace("{stored}", stored)
        .replace("{added}", added)
}

/// The entries of a batch, encoded per order: the value to store for a new
/// order, or to append for an existing one. An order the batch did not add
/// to has no entry.
pub fn encode_by_order(history: &[HistoryRecord]) -> HashMap<&str, String> {
    let mut grouped: HashMap<&str, Vec<&HistoryRecord>> = HashMap::new();
    for record in history {
        grouped
            .entry(record.order_id.as_str())
            .or_default()
            .push(record);
    }
    grouped
        .into_iter()
        .map(|(order_id, records)| (order_id, encode(&records)))
        .collect()
}

/// What [`encode_by_order`] holds for `order_id`, or the empty array.
pub fn of<'a>(histories: &'a HashMap<&str, String>, order_id: &str) -> &'a str {
    histories.get(order_id).map_or("[]", String::as_str)
}

/// The JSON array of these entries, in the order given.
pub fn encode(records: &[&HistoryRecord]) -> String {
    let rows: Vec<(i64, &str, Option<&str>, i64)> = records
        .iter()
        .map(|record| {
            (
                record.version,
                record.status.as_str(),
                record.reason.map(|reason| reason.as_str()),
                record.at_ms,
            )
        })
        .collect();
    serde_json::to_string(&rows).expect("plain values always serialise")
}

/// An entry as stored: version, status, reason or null, at_ms.
type StoredEntry = (i64, String, Option<String>, i64);

/// The history of a stored column value, checked, oldest first.
pub fn decode(order_id: &str, text: &str) -> Result<Vec<HistoryRecord>, StorageError> {
    let damaged = |why: String| StorageError::Inconsistent(format!("order {order_id}: {why}"));
    let batches: Vec<Vec<StoredEntry>> = serde_json::from_str(&joined(text))
        .map_err(|error| damaged(format!("unreadable history: {error}")))?;
    let mut rows: Vec<_> = batches.into_iter().flatten().collect();
    // Entries are stored in version order on SQLite and newest batch first
    // on PostgreSQL; sorting keeps either (and a migrated history, whatever
    // order the database aggregated it in) oldest first.
    rows.sort_by_key(|row| row.0);
    rows.into_iter()
        .map(|(version, status, reason, at_ms)| {
            Ok(HistoryRecord {
                order_id: order_id.to_owned(),
                version,
                status: status
                    .parse::<OrderStatus>()
                    .map_err(|error| damaged(error.to_string()))?,
                reason: reason
                    .as_deref()
                    .map(str::parse::<Reason>)
                    .transpose()
                    .map_err(|error| damaged(error.to_string()))?,
                at_ms,
            })
        })
        .collect()
}

/// Stored arrays joined by commas, as one JSON array of arrays.
pub fn joined(text: &str) -> String {
    let mut joined = String::with_capacity(text.len() + 2);
    joined.push('[');
    joined.push_str(text);
    joined.push(']');
    joined
}

#[cfg(test)]
mod tests {
    use stockroom_domain::{OrderStatus, Reason};

    use super::*;

    fn record(order_id: &str, version: i64, status: OrderStatus) -> HistoryRecord {
        HistoryRecord {
            order_id: order_id.into(),
            version,
            status,
            reason: (status == OrderStatus::Cancelled).then_some(Reason::PaymentDeclined),
            at_ms: 1_000 * version,
        }
    }

    #[test]
    fn history_round_trips_grouped_by_order_and_damage_is_reported() {
        let batch = [
            record("a", 1, OrderStatus::Reserved),
            record("b", 2, OrderStatus::Cancelled),
            record("a", 2, OrderStatus::Fulfilled),
        ];
        let encoded = encode_by_order(&batch);
        assert_eq!(encoded.len(), 2);
        let a = decode("a", &encoded["a"]).unwrap();
        assert_eq!(
            a.iter()
                .map(|entry| (entry.version, entry.status))
                .collect::<Vec<_>>(),
            [(1, OrderStatus::Reserved), (2, OrderStatus::Fulfilled)]
        );
        let b = decode("b", &encoded["b"]).unwrap();
        assert_eq!(b[0].reason, Some(Reason::PaymentDeclined));
        assert!(decode("a", "not json").is_err());
        assert!(decode("a", "[[1,\"no such status\",null,0]]").is_err());
        assert!(decode("a", "[]").unwrap().is_empty());
        // A history PostgreSQL put a batch's entries in front of.
        let newest_first =
            "[[2,\"reserved\",null,2],[3,\"fulfilled\",null,3],[1,\"reserved\",null,1]]";
        let versions: Vec<i64> = decode("a", newest_first)
            .unwrap()
            .iter()
            .map(|entry| entry.version)
            .collect();
        assert_eq!(versions, [1, 2, 3]);
        // Batches joined by commas, in front of a history stored as one
        // array by an earlier build.
        let joined = "[[4,\"cancelled\",\"payment_declined\",4]],[[3,\"reserved\",null,3]],\
                      [[1,\"reserved\",null,1],[2,\"reserved\",null,2]]";
        let entries = decode("a", joined).unwrap();
        let versions: Vec<i64> = entries.iter().map(|entry| entry.version).collect();
        assert_eq!(versions, [1, 2, 3, 4]);
        assert_eq!(entries[3].reason, Some(Reason::PaymentDeclined));
        assert!(decode("a", "[[1,\"reserved\",null,1]],").is_err());
    }

    #[test]
    fn the_append_expression_names_both_operands_everywhere() {
        let sql = append_sql("orders.history", "change.added");
        assert!(!sql.contains('{'));
        assert_eq!(sql.matches("orders.history").count(), 3);
        assert_eq!(sql.matches("change.added").count(), 3);
        assert!(!sql.contains("substr") && !sql.contains("length"));
        let sql = prepend_sql("orders.history", "change.added");
        assert!(!sql.contains('{'));
        assert_eq!(sql.matches("orders.history").count(), 3);
        assert_eq!(sql.matches("change.added").count(), 3);
        assert!(!sql.contains("substr") && !sql.contains("length"));
    }
}
