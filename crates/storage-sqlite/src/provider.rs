//! The simulated payment provider's ledger: one row per charge key, the
//! first request's verdict standing for every later one.

use stockroom_storage::{Charge, LedgerStats, StorageError, Verdict};

use crate::records::{json_list, json_rows};
use crate::sql::Sql;

/// Records each charge by its key and returns each key's verdict.
pub(crate) fn charge(
    sql: Sql<'_>,
    charges: &[Charge],
    now_ms: i64,
) -> Result<Vec<Verdict>, StorageError> {
    let rows: Vec<_> = charges
        .iter()
        .map(|charge| {
            (
                &charge.charge_key,
                &charge.order_id,
                charge.units,
                charge.approved,
            )
        })
        .collect();
    let verdicts = sql.rows(
        &format!(
            "{} INSERT INTO provider_charges (charge_key, order_id, units, approved, requests,
                                              charged_at_ms)
             SELECT v ->> 0, v ->> 1, v ->> 2, v ->> 3, 1, ?2 FROM charge WHERE true
             ON CONFLICT (charge_key) DO UPDATE SET requests = requests + 1
             RETURNING charge_key, approved, requests",
            json_rows("charge", "?1")
        ),
        rusqlite::params![json_list(&rows), now_ms],
        |row| {
            Ok(Verdict {
                charge_key: row.get(0)?,
                approved: row.get(1)?,
                requests: row.get(2)?,
            })
        },
    )?;
    // One answer per request, in the requests' order (a key asked twice in
    // one call gets its newest count both times).
    stockroom_storage::verdicts_in_request_order(charges, &verdicts)
}

pub(crate) fn stats(sql: Sql<'_>) -> Result<LedgerStats, StorageError> {
    let stats = sql.row(
        "SELECT COALESCE(SUM(approved), 0), COALESCE(SUM(1 - approved), 0),
                COALESCE(SUM(requests - 1), 0),
                (SELECT COUNT(*) FROM (SELECT order_id FROM provider_charges
                                       WHERE approved GROUP BY order_id HAVING COUNT(*) > 1))
         FROM provider_charges",
        [],
        |row| {
            Ok(LedgerStats {
                charged: row.get::<_, i64>(0)? as u64,
                declined: row.get::<_, i64>(1)? as u64,
                repeated_requests: row.get::<_, i64>(2)? as u64,
                orders_charged_twice: row.get::<_, i64>(3)? as u64,
            })
        },
    )?;
    Ok(stats.unwrap_or_default())
}
