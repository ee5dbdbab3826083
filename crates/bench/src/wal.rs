//! The write-ahead log a phase makes PostgreSQL write: its insert position
//! (`pg_current_wal_lsn()`) read before the load and again once every order
//! has settled. The position is the server's, so anything else writing to
//! the same server meanwhile (another database, autovacuum) is counted too:
//! the figure is an upper bound on the system's own log.
//!
//! With `--wal-by-relation` the log between the two positions is also read
//! back, record by record, through PostgreSQL's `pg_walinspect` extension,
//! and summed by the table or index each record changed: what each of them
//! costs an order, and how many index entries an order adds (B-tree leaf
//! insertions). That is what to read before choosing what to take out of an
//! order's path.

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio_postgres::{Client, NoTls};

/// Relations [`by_relation`] names one by one, the largest first; the rest
/// are summed into one line, so the report stays readable.
pub const RELATIONS_NAMED: usize = 16;

/// Runs `work` on a connection of its own to `url`, closed afterwards.
async fn on_connection<T>(
    url: &str,
    work: impl AsyncFnOnce(&Client) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .context("cannot connect to read the WAL")?;
    let driver = tokio::spawn(connection);
    let result = work(&client).await;
    drop(client);
    let _ = driver.await;
    result
}

/// The server's current WAL insert position, in bytes from its origin.
pub async fn position_bytes(url: &str) -> anyhow::Result<i64> {
    on_connection(url, async |client| {
        let row = client
            .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::BIGINT", &[])
            .await
            .context("cannot read the WAL position")?;
        Ok(row.get(0))
    })
    .await
}

/// What one relation wrote to the log over a phase, per order answered.
#[derive(Debug, Clone, Serialize)]
pub struct RelationLog {
    /// The table's or index's name; records that change no relation are
    /// named after their kind in parentheses (`(Transaction)`), and so are
    /// relations no longer there (`(dropped)`) or of another database.
    pub relation: String,
    pub bytes_per_order: f64,
    pub records_per_order: f64,
}

/// The log a phase wrote, by relation.
#[derive(Debug, Clone, Serialize)]
pub struct LogBreakdown {
    /// B-tree leaf insertions per order answered: the index entries an
    /// order adds, page splits apart.
    pub index_insertions_per_order: f64,
    /// The largest [`RELATIONS_NAMED`] first, then `(the rest)` if any.
    pub relations: Vec<RelationLog>,
}

/// Every record between two positions, by the relation of its first block:
/// a record names its relation as `rel <tablespace>/<database>/<file node>`,
/// and a file node is a relation of this database when `pg_class` has it.
const BY_RELATION_SQL: &str = "
WITH records AS (
    SELECT resource_manager, record_type, record_length,
           substring(block_ref FROM 'rel [0-9]+/([0-9]+)/[0-9]+') AS database_oid,
           substring(block_ref FROM 'rel [0-9]+/[0-9]+/([0-9]+)') AS file_node
    FROM pg_get_wal_records_info('0/0'::pg_lsn + $1::BIGINT::NUMERIC,
                                 '0/0'::pg_lsn + $2::BIGINT::NUMERIC)
)
SELECT CASE
           WHEN records.file_node IS NULL THEN '(' || records.resource_manager || ')'
           WHEN records.database_oid <> (SELECT oid::TEXT FROM pg_database
                                         WHERE datname = current_database())
               THEN '(another database)'
           ELSE coalesce(class.relname::TEXT, '(dropped)')
       END AS relation,
       sum(records.record_length)::BIGINT AS bytes,
       count(*)::BIGINT AS records,
       count(*) FILTER (WHERE records.resource_manager = 'Btree'
                          AND records.record_type = 'INSERT_LEAF')::BIGINT AS index_insertions
FROM records
LEFT JOIN pg_class AS class ON class.relfilenode::TEXT = records.file_node
GROUP BY 1
ORDER BY 2 DESC";

/// Reads back the log between `from_bytes` and `to_bytes` (positions from
/// [`position_bytes`]) and sums it by relation, per order of `orders`.
/// Installs `pg_walinspect` in the database if it is not there; reading the
/// log needs a superuser or a member of `pg_read_server_files`.
pub async fn by_relation(
    url: &str,
    from_bytes: i64,
    to_bytes: i64,
    orders: u64,
) -> anyhow::Result<LogBreakdown> {
    let rows = on_connection(url, async |client| {
        read_by_relation(client, from_bytes, to_bytes).await
    })
    .await?;
    Ok(breakdown(rows, orders))
}

/// How long to wait for the server to flush a phase's last records before
/// reading them back. PostgreSQL 15's `pg_walinspect` refuses to read past
/// the flushed position, and the position a phase ends at was written but
/// may not be flushed yet while other sessions write (the WAL writer
/// flushes at least every `wal_writer_delay`, 200 ms by default).
const FLUSH_WAIT_MS: u64 = 2_000;

/// The pause between two looks at the flushed position.
const FLUSH_POLL_MS: u64 = 20;

/// `to_bytes` once the server has flushed that far, or the flushed position
/// if it has not within [`FLUSH_WAIT_MS`] (the span then ends a few records
/// early, which the report's total shows).
async fn flushed_up_to(client: &Client, to_bytes: i64) -> anyhow::Result<i64> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(FLUSH_WAIT_MS);
    loop {
        let flushed: i64 = client
            .query_one(
                "SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::BIGINT",
                &[],
            )
            .await
            .context("cannot read the WAL's flushed position")?
            .get(0);
        if flushed >= to_bytes || tokio::time::Instant::now() >= deadline {
            return Ok(flushed.min(to_bytes));
        }
        tokio::time::sleep(Duration::from_millis(FLUSH_POLL_MS)).await;
    }
}

/// One relation's totals over the span: its name, bytes, records and
/// B-tree leaf insertions.
type RelationTotals = (String, i64, i64, i64);

async fn read_by_relation(
    client: &Client,
    from_bytes: i64,
    to_bytes: i64,
) -> anyhow::Result<Vec<RelationTotals>> {
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .await
        .context(
            "cannot install pg_walinspect (it needs PostgreSQL's contrib modules and a superuser)",
        )?;
    let to_bytes = flushed_up_to(client, to_bytes).await?;
    let rows = client
        .query(BY_RELATION_SQL, &[&from_bytes, &to_bytes])
        .await
        .context("cannot read the WAL back through pg_walinspect (it needs a superuser or pg_read_server_files, and the phase's WAL still on disk)")?;
    rows.iter()
        .map(|row| -> anyhow::Result<RelationTotals> {
            Ok((
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            ))
        })
        .collect()
}

/// The totals per order, the largest [`RELATIONS_NAMED`] relations by name
/// and the rest summed. `rows` come largest first.
fn breakdown(rows: Vec<RelationTotals>, orders: u64) -> LogBreakdown {
    let orders = orders.max(1) as f64;
    let per_order = |count: i64| count as f64 / orders;
    let index_insertions: i64 = rows.iter().map(|row| row.3).sum();
    let mut relations: Vec<RelationLog> = rows
        .iter()
        .take(RELATIONS_NAMED)
        .map(|(relation, bytes, records, _)| RelationLog {
            relation: relation.clone(),
            bytes_per_order: per_order(*bytes),
            records_per_order: per_order(*records),
        })
        .collect();
    let rest = &rows[rows.len().min(RELATIONS_NAMED)..];
    if !rest.is_empty() {
        relations.push(RelationLog {
            relation: "(the rest)".to_owned(),
            bytes_per_order: per_order(rest.iter().map(|row| row.1).sum()),
            records_per_order: per_order(rest.iter().map(|row| row.2).sum()),
        });
    }
    LogBreakdown {
        index_insertions_per_order: per_order(index_insertions),
        relations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_relations_are_named_and_the_rest_summed() {
        let rows: Vec<RelationTotals> = (0..RELATIONS_NAMED + 2)
            .map(|index| {
                let size = (100 - index) as i64;
                (format!("relation{index}"), size * 10, size, 2)
            })
            .collect();
        let breakdown = breakdown(rows, 10);
        assert_eq!(breakdown.relations.len(), RELATIONS_NAMED + 1);
        assert_eq!(breakdown.relations[0].relation, "relation0");
        assert_eq!(breakdown.relations[0].bytes_per_order, 100.0);
        assert_eq!(breakdown.relations[0].records_per_order, 10.0);
        let rest = breakdown.relations.last().unwrap();
        assert_eq!(rest.relation, "(the rest)");
        // The two smallest: sizes 100 - 16 and 100 - 17.
        assert_eq!(rest.bytes_per_order, (840.0 + 830.0) / 10.0);
        // Every relation's insertions count, named or not.
        assert_eq!(
            breakdown.index_insertions_per_order,
            2.0 * (RELATIONS_NAMED + 2) as f64 / 10.0
        );
    }

    #[test]
    fn a_short_list_has_no_rest() {
        let breakdown = breakdown(vec![("orders".into(), 500, 5, 0)], 0);
        assert_eq!(breakdown.relations.len(), 1);
        // No order answered divides by one, not by zero.
        assert_eq!(breakdown.relations[0].bytes_per_order, 500.0);
    }
}
