//! A shop's rows: the stock ledger (written with the batch that moved the
//! figures, read a page at a time), customers' holdings of limited products,
//! and operators' idempotency keys. One statement per kind per batch.

use stockroom_domain::rules::Changes;
use stockroom_storage::ledger::EntryOrder;
use stockroom_storage::{MovementPage, StorageError, ledger};

use crate::records::{json_list, json_rows};
use crate::sql::Sql;

/// Writes the ledger rows, the holdings and the operators' keys a batch
/// decided.
pub(crate) fn apply(sql: Sql<'_>, changes: &Changes, now_ms: i64) -> Result<(), StorageError> {
    let rows = ledger::rows(&changes.movements, EntryOrder::OldestFirst);
    if !rows.is_empty() {
        let values: Vec<_> = rows
            .iter()
            .map(|row| (&row.product_key, row.first_seq, row.last_seq, &row.entries))
            .collect();
        sql.execute(
            &format!(
                "{} INSERT INTO stock_ledger (product_key, first_seq, last_seq, entries)
                 SELECT v ->> 0, v ->> 1, v ->> 2, v ->> 3 FROM ledger_row",
                json_rows("ledger_row", "?1")
            ),
            [json_list(&values)],
        )?;
    }
    apply_holdings(sql, changes)?;
    if !changes.operator_keys.is_empty() {
        let values: Vec<_> = changes
            .operator_keys
            .iter()
            .map(|claim| {
                (
                    &claim.key,
                    &claim.fingerprint,
                    &claim.answer.movement.product_key,
                    ledger::encode_answer(&claim.answer),
                )
            })
            .collect();
        sql.execute(
            &format!(
                "{} INSERT INTO operator_keys (key, fingerprint, product_key, answer,
                                               created_at_ms)
                 SELECT v ->> 0, v ->> 1, v ->> 2, v ->> 3, ?2 FROM claim",
                json_rows("claim", "?1")
            ),
            rusqlite::params![json_list(&values), now_ms],
        )?;
    }
    Ok(())
}

/// Replaces the holdings of products whose limit changed, then writes the
/// batch's changes of single holdings: new ones inserted, others updated
/// only if still as loaded (the single writer makes a mismatch a bug).
fn apply_holdings(sql: Sql<'_>, changes: &Changes) -> Result<(), StorageError> {
    for reset in &changes.holdings_resets {
        sql.execute(
            "DELETE FROM holdings WHERE product_key = ?1",
            [&reset.product_key],
        )?;
        if !reset.holdings.is_empty() {
            let values: Vec<_> = reset
                .holdings
                .iter()
                .map(|(customer, units)| (customer, &reset.product_key, units))
                .collect();
            sql.execute(
                &format!(
                    "{} INSERT INTO holdings (customer_id, product_key, units)
                     SELECT v ->> 0, v ->> 1, v ->> 2 FROM holding",
                    json_rows("holding", "?1")
                ),
                [json_list(&values)],
            )?;
        }
    }
    if changes.holdings.is_empty() {
        return Ok(());
    }
    let values: Vec<_> = changes
        .holdings
        .iter()
        .map(|change| {
            (
                &change.customer_id,
                &change.product_key,
                change.after,
                change.before,
            )
        })
        .collect();
    let changed = sql.execute(
        &format!(
            "{} INSERT INTO holdings (customer_id, product_key, units)
             SELECT v ->> 0, v ->> 1, v ->> 2 FROM holding WHERE true
             ON CONFLICT (customer_id, product_key) DO UPDATE SET units = excluded.units
             WHERE holdings.units = (SELECT v ->> 3 FROM holding
                                     WHERE v ->> 0 = excluded.customer_id
                                       AND v ->> 1 = excluded.product_key)",
            json_rows("holding", "?1")
        ),
        [json_list(&values)],
    )?;
    if changed != values.len() {
        return Err(StorageError::Inconsistent(format!(
            "holdings: {changed} rows matched the loaded state, {} expected",
            values.len()
        )));
    }
    Ok(())
}

/// A page of a product's movements after `after`: the ledger rows that hold
/// any, expanded.
pub(crate) fn movements(
    sql: Sql<'_>,
    product_key: &str,
    after: u64,
    limit: u32,
) -> Result<Option<MovementPage>, StorageError> {
    let exists = sql
        .row(
            "SELECT 1 FROM inventory WHERE product_key = ?1",
            [product_key],
            |row| row.get::<_, i64>(0),
        )?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let rows = sql.rows(
        "SELECT first_seq, entries FROM stock_ledger
         WHERE product_key = ?1 AND last_seq > ?2 AND first_seq <= ?3 ORDER BY first_seq",
        rusqlite::params![
            product_key,
            i64::try_from(after).unwrap_or(i64::MAX),
            ledger::last_wanted(after, limit)
        ],
        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
    )?;
    ledger::page(product_key, after, limit, rows, EntryOrder::OldestFirst).map(Some)
}
