//! The simulated payment provider's ledger: one row per charge key, the
//! first request's verdict standing for every later one.

use stockroom_storage::{Charge, LedgerStats, Verdict};

use tokio_postgres::error::SqlState;

use crate::Failure;
use crate::sql::Tx;

/// Records each charge by its key and returns each key's verdict. Keys are
/// written in sorted order, so two instances charging overlapping keys take
/// the unique index's locks in one order.
pub(crate) async fn charge(
    tx: Tx<'_>,
    charges: &[Charge],
    now: i64,
) -> Result<Vec<Verdict>, Failure> {
    let mut sorted: Vec<&Charge> = charges.iter().collect();
    sorted.sort_by(|a, b| a.charge_key.cmp(&b.charge_key));
    sorted.dedup_by(|a, b| a.charge_key == b.charge_key);
    let keys: Vec<&str> = sorted
        .iter()
        .map(|charge| charge.charge_key.as_str())
        .collect();
    let orders: Vec<&str> = sorted
        .iter()
        .map(|charge| charge.order_id.as_str())
        .collect();
    let units: Vec<i64> = sorted.iter().map(|charge| charge.units as i64).collect();
    let approved: Vec<bool> = sorted.iter().map(|charge| charge.approved).collect();
    // The keys already charged count one more request; the others are
    // inserted. A plain insert, not `ON CONFLICT`: a speculative insert logs
    // a confirmation record for every row, and a key charged by another
    // process since this statement's snapshot is rare (a payment retried
    // across instances at the same moment). That insert waits for the other
    // and fails on the key, and the transaction runs again, finding it.
    let rows = tx
        .query(
            "WITH charge AS (
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::boolean[])
                      AS charge (charge_key, order_id, units, approved)
             ), repeated AS (
                 UPDATE provider_charges SET requests = provider_charges.requests + 1
                 FROM charge WHERE provider_charges.charge_key = charge.charge_key
                 RETURNING provider_charges.charge_key, provider_charges.approved,
                           provider_charges.requests
             ), first AS (
                 INSERT INTO provider_charges (charge_key, order_id, units, approved, requests,
                                               charged_at_ms)
                 SELECT charge_key, order_id, units, approved, 1, $5 FROM charge
                 WHERE charge_key NOT IN (SELECT charge_key FROM repeated)
                 ORDER BY charge_key
                 RETURNING charge_key, approved, requests
             )
             SELECT * FROM repeated UNION ALL SELECT * FROM first",
            &[&keys, &orders, &units, &approved, &now],
        )
        .await
        .map_err(|failure| match failure {
            Failure::Database(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                Failure::KeyRace
            }
            failure => failure,
        })?;
    let mut verdicts = Vec::with_capacity(rows.len());
    for row in &rows {
        let requests: i32 = row.try_get(2)?;
        verdicts.push(Verdict {
            charge_key: row.try_get(0)?,
            approved: row.try_get(1)?,
            requests: requests.max(0) as u32,
        });
    }
    Ok(stockroom_storage::verdicts_in_request_order(
        charges, &verdicts,
    )?)
}

pub(crate) async fn stats(tx: Tx<'_>) -> Result<LedgerStats, Failure> {
    let Some(row) = tx
        .query_opt(
            "SELECT COUNT(*) FILTER (WHERE approved), COUNT(*) FILTER (WHERE NOT approved),
                    COALESCE(SUM(requests - 1), 0)::bigint,
                    (SELECT COUNT(*) FROM (SELECT order_id FROM provider_charges
                                           WHERE approved GROUP BY order_id
                                           HAVING COUNT(*) > 1) AS twice)
             FROM provider_charges",
            &[],
        )
        .await?
    else {
        return Ok(LedgerStats::default());
    };
    let figure = |index: usize| -> Result<u64, Failure> {
        let value: i64 = row.try_get(index)?;
        Ok(value.max(0) as u64)
    };
    Ok(LedgerStats {
        charged: figure(0)?,
        declined: figure(1)?,
        repeated_requests: figure(2)?,
        orders_charged_twice: figure(3)?,
    })
}
