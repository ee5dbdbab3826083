//! A shop's rows: the stock ledger (written with the batch that moved the
//! figures, read a page at a time), customers' holdings of limited products,
//! and operators' idempotency keys. One statement per kind per batch.
//!
//! Every batch that changes a holding or a ledger has locked the product's
//! row first, so two batches never write the same product's rows at once;
//! an operator's key is the one row another process may claim meanwhile
//! (for another product), which `ON CONFLICT DO NOTHING` detects.

use stockroom_domain::rules::Changes;
use stockroom_storage::ledger::{EntryOrder, LedgerRow};
use stockroom_storage::{MovementPage, history, ledger};

use crate::load::inconsistent;
use crate::sql::Tx;
use crate::{Failure, Failure::KeyRace};

/// How long a ledger row's entries may grow by later batches' movements of
/// its product, in bytes. A batch's movements of a product join the
/// product's last row while the two fit in this, and start a new row
/// otherwise. Under it the row stays far below the size at which
/// PostgreSQL compresses a row (about 2 kB, when every rewrite would log the
/// whole compressed value), and a page of the table (see its fillfactor,
/// migration 12) keeps room for its rows to grow without moving.
pub const LEDGER_ROW_GROWTH_LIMIT_BYTES: i32 = 600;

/// The most movements a row short enough to grow can hold: every entry is
/// at least 16 bytes, so a row under [`LEDGER_ROW_GROWTH_LIMIT_BYTES`]
/// began at most this many movements before its product's last one. The
/// statement looks for the last row among the keys of that span only (one
/// short range of the key's index), not among all of a product's rows.
const GROWING_ROW_MOST_MOVEMENTS: i64 = LEDGER_ROW_GROWTH_LIMIT_BYTES as i64 / 16;

/// Writes the ledger rows, the holdings and the operators' keys a batch
/// decided.
pub(crate) async fn apply(tx: Tx<'_>, changes: &Changes, now_ms: i64) -> Result<(), Failure> {
    let rows = ledger::rows(&changes.movements, EntryOrder::NewestFirst);
    if !rows.is_empty() {
        add_movements(tx, &rows).await?;
    }
    apply_holdings(tx, changes).await?;
    insert_operator_keys(tx, changes, now_ms).await
}

/// Adds a batch's rows (one per product, newest movement first): a row joins
/// its product's last row when that row ends just before it and both fit in
/// [`LEDGER_ROW_GROWTH_LIMIT_BYTES`], and is inserted otherwise. One
/// statement, with one probe of the key's index per product. Joining
/// changes two columns that no index holds, the last number and the
/// entries, with the new entries in front: the rewrite stays on its page and
/// logs only the new entries, where a row of its own would log its columns
/// and a new entry in the key's index. The batch holds every product's lock,
/// so no other batch writes the same product's rows meanwhile.
///
/// Each product's last row is found first, by a lateral probe that can only
/// run as one backward step of the key's index per product; the rewrite
/// then names that row by its whole key. Joined on the span of keys
/// directly, a planner without the ledger's statistics (a new schema,
/// autovacuum off) hashed the batch and read the whole ledger for every
/// batch, a cost that grew with the ledger through a sale.
async fn add_movements(tx: Tx<'_>, rows: &[LedgerRow]) -> Result<(), Failure> {
    let products: Vec<&str> = rows.iter().map(|row| row.product_key.as_str()).collect();
    let firsts: Vec<i64> = rows.iter().map(|row| row.first_seq as i64).collect();
    let lasts: Vec<i64> = rows.iter().map(|row| row.last_seq as i64).collect();
    let entries: Vec<&str> = rows.iter().map(|row| row.entries.as_str()).collect();
    tx.execute(
        &format!(
            "WITH batch AS (
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[])
                      AS batch (product_key, first_seq, last_seq, entries)
             ), growing AS (
                 SELECT batch.*, last_row.first_seq AS row_first_seq
                 FROM batch CROSS JOIN LATERAL (
                     SELECT first_seq FROM stock_ledger
                     WHERE stock_ledger.product_key = batch.product_key
                       AND stock_ledger.first_seq BETWEEN batch.first_seq - $6
                                                      AND batch.first_seq - 1
                     ORDER BY first_seq DESC LIMIT 1
                 ) AS last_row
             ), grown AS (
                 UPDATE stock_ledger
                 SET last_seq = growing.last_seq, entries = {}
                 FROM growing
                 WHERE stock_ledger.product_key = growing.product_key
                   AND stock_ledger.first_seq = growing.row_first_seq
                   AND stock_ledger.last_seq = growing.first_seq - 1
                   AND octet_length(stock_ledger.entries) + octet_length(growing.entries) <= $5
                 RETURNING stock_ledger.product_key
             )
             INSERT INTO stock_ledger (product_key, first_seq, last_seq, entries)
             SELECT product_key, first_seq, last_seq, entries FROM batch
             WHERE product_key NOT IN (SELECT product_key FROM grown)",
            history::prepend_sql("stock_ledger.entries", "growing.entries")
        ),
        &[
            &products,
            &firsts,
            &lasts,
            &entries,
            &LEDGER_ROW_GROWTH_LIMIT_BYTES,
            &GROWING_ROW_MOST_MOVEMENTS,
        ],
    )
    .await?;
    Ok(())
}

/// Replaces the holdings of products whose limit changed, then writes the
/// batch's changes of single holdings: new ones inserted, others updated
/// only if still as loaded (the product's lock makes a mismatch a bug).
async fn apply_holdings(tx: Tx<'_>, changes: &Changes) -> Result<(), Failure> {
    for reset in &changes.holdings_resets {
        tx.execute(
            "DELETE FROM holdings WHERE product_key = $1",
            &[&reset.product_key],
        )
        .await?;
        if !reset.holdings.is_empty() {
            let customers: Vec<&str> = reset
                .holdings
                .iter()
                .map(|(customer, _)| customer.as_str())
                .collect();
            let units: Vec<i64> = reset
                .holdings
                .iter()
                .map(|(_, units)| *units as i64)
                .collect();
            tx.execute(
                "INSERT INTO holdings (customer_id, product_key, units)
                 SELECT customer_id, $2, units FROM unnest($1::text[], $3::bigint[])
                      AS held (customer_id, units)",
                &[&customers, &reset.product_key, &units],
            )
            .await?;
        }
    }
    let (updates, inserts): (Vec<_>, Vec<_>) = changes
        .holdings
        .iter()
        .partition(|change| change.before.is_some());
    if !updates.is_empty() {
        let customers: Vec<&str> = updates.iter().map(|c| c.customer_id.as_str()).collect();
        let products: Vec<&str> = updates.iter().map(|c| c.product_key.as_str()).collect();
        let after: Vec<i64> = updates.iter().map(|c| c.after as i64).collect();
        let before: Vec<i64> = updates
            .iter()
            .map(|c| c.before.unwrap_or_default() as i64)
            .collect();
        let changed = tx
            .execute(
                "UPDATE holdings SET units = change.units
                 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
                      AS change (customer_id, product_key, units, units_before)
                 WHERE holdings.customer_id = change.customer_id
                   AND holdings.product_key = change.product_key
                   AND holdings.units = change.units_before",
                &[&customers, &products, &after, &before],
            )
            .await?;
        if changed != updates.len() as u64 {
            return Err(inconsistent(format!(
                "holdings: {changed} rows matched the loaded state, {} expected",
                updates.len()
            )));
        }
    }
    if !inserts.is_empty() {
        let customers: Vec<&str> = inserts.iter().map(|c| c.customer_id.as_str()).collect();
        let products: Vec<&str> = inserts.iter().map(|c| c.product_key.as_str()).collect();
        let after: Vec<i64> = inserts.iter().map(|c| c.after as i64).collect();
        tx.execute(
            "INSERT INTO holdings (customer_id, product_key, units)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])",
            &[&customers, &products, &after],
        )
        .await?;
    }
    Ok(())
}

/// Stores the operators' keys the batch answered. Another process may have
/// claimed one since this batch looked; then the batch runs again and finds
/// the stored answer.
async fn insert_operator_keys(tx: Tx<'_>, changes: &Changes, now_ms: i64) -> Result<(), Failure> {
    let claims = &changes.operator_keys;
    if claims.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = claims.iter().map(|claim| claim.key.as_str()).collect();
    let fingerprints: Vec<Option<&str>> = claims
        .iter()
        .map(|claim| claim.fingerprint.as_deref())
        .collect();
    let products: Vec<&str> = claims
        .iter()
        .map(|claim| claim.answer.movement.product_key.as_str())
        .collect();
    let answers: Vec<String> = claims
        .iter()
        .map(|claim| ledger::encode_answer(&claim.answer))
        .collect();
    let claimed = tx
        .execute(
            "INSERT INTO operator_keys (key, fingerprint, product_key, answer, created_at_ms)
             SELECT key, fingerprint, product_key, answer, $5
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                  AS claim (key, fingerprint, product_key, answer)
             ON CONFLICT (key) DO NOTHING",
            &[&keys, &fingerprints, &products, &answers, &now_ms],
        )
        .await?;
    if claimed != claims.len() as u64 {
        return Err(KeyRace);
    }
    Ok(())
}

/// A page of a product's movements after `after`: the ledger rows that hold
/// any, expanded. `None` when no such product exists.
pub(crate) async fn movements(
    tx: Tx<'_>,
    product_key: &str,
    after: u64,
    limit: u32,
) -> Result<Option<MovementPage>, Failure> {
    let exists = tx
        .query_opt(
            "SELECT 1 FROM inventory WHERE product_key = $1",
            &[&product_key],
        )
        .await?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let rows = tx
        .query(
            "SELECT first_seq, entries FROM stock_ledger
             WHERE product_key = $1 AND last_seq > $2 AND first_seq <= $3 ORDER BY first_seq",
            &[
                &product_key,
                &i64::try_from(after).unwrap_or(i64::MAX),
                &ledger::last_wanted(after, limit),
            ],
        )
        .await?;
    let mut stored = Vec::with_capacity(rows.len());
    for row in &rows {
        stored.push((row.try_get::<_, i64>(0)?, row.try_get::<_, String>(1)?));
    }
    Ok(Some(ledger::page(
        product_key,
        after,
        limit,
        stored,
        EntryOrder::NewestFirst,
    )?))
}
