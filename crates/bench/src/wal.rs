//! The write-ahead log a phase makes PostgreSQL write: its insert position
//! (`pg_current_wal_lsn()`) read before the load and again once every order
//! has settled. The position is the server's, so anything else writing to
//! the same server meanwhile (another database, autovacuum) is counted too:
//! the figure is an upper bound on the system's own log.

use anyhow::Context;
use tokio_postgres::NoTls;

/// The server's current WAL insert position, in bytes from its origin.
pub async fn position_bytes(url: &str) -> anyhow::Result<i64> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .context("cannot connect to read the WAL position")?;
    let driver = tokio::spawn(connection);
    let row = client
        .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::BIGINT", &[])
        .await
        .context("cannot read the WAL position");
    drop(client);
    let _ = driver.await;
    Ok(row?.get(0))
}
