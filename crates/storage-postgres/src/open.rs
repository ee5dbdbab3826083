//! The open orders: which orders may still be reserved, for the expiry sweep
//! and the listing of reserved orders.
//!
//! The status is indexed nowhere, so that a settlement (reserved to
//! fulfilled) changes no indexed column and rewrites its order in place
//! (migration 11). These readers find the reserved orders through
//! `open_orders` instead: each batch that reserves orders adds one row
//! holding their ids, and the sweep rewrites the rows it is due to look at
//! without the orders that are no longer reserved.
//!
//! An order named here may have left the reserved status (readers check
//! it), but every reserved order is named: by the batch that reserved it, in
//! the same transaction, and by every rewrite after, which keeps each order
//! it saw reserved. An order that left that status never returns to it, so a
//! rewrite that saw it gone may drop it whatever commits meanwhile.

use crate::Failure;
use crate::sql::Tx;

/// How long after its batch a row is first looked at. By then most of its
/// orders are paid and settled, so the rewrite drops most of them instead of
/// copying them into a new row.
pub const FIRST_LOOK_AFTER_MS: i64 = 2_000;

/// How long a rewritten row (orders still reserved a while after their
/// batch: unpaid, or waiting for their payment or their expiry) waits for
/// its next look. The longer, the fewer rewrites of the same ids; the
/// shorter, the fewer settled ids a reader of reserved orders skips.
pub const LOOK_AGAIN_AFTER_MS: i64 = 10_000;

/// The most rows one sweep looks at: about as many batches as the sweep's
/// interval (a second) holds under a sale's load, so that the rows waiting
/// for a look do not pile up, and few enough ids (at most this many times a
/// batch's orders) for one query.
pub const ROWS_PER_SWEEP: i64 = 256;

/// The condition that an order's `id` is named by an open-orders row: a
/// semi-join, which reads the order rows through their primary key.
pub(crate) const NAMED: &str = "id IN (SELECT unnest(ids) FROM open_orders)";

/// Names the orders `ids`, just reserved, in a row first looked at `due_at_ms`.
pub(crate) async fn add(tx: Tx<'_>, ids: &[&str], due_at_ms: i64) -> Result<(), Failure> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO open_orders (due_at_ms, ids) VALUES ($1, $2)",
        &[&due_at_ms, &ids],
    )
    .await?;
    Ok(())
}

/// Rewrites the rows due by `now_ms` (the oldest first, at most
/// [`ROWS_PER_SWEEP`], skipping those another sweep holds) into one row of
/// the orders among them still reserved, or none if there are none left. A
/// single row whose orders are all still reserved only has its next look
/// put off, so that long reservations are not copied again at every look.
pub(crate) async fn rewrite_due(tx: Tx<'_>, now_ms: i64) -> Result<(), Failure> {
    let due = tx
        .query(
            "SELECT seq, ids FROM open_orders WHERE due_at_ms <= $1
             ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[&now_ms, &ROWS_PER_SWEEP],
        )
        .await?;
    if due.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(due.len());
    let mut named: Vec<String> = Vec::new();
    for row in &due {
        rows.push(row.try_get::<_, i64>(0)?);
        named.extend(row.try_get::<_, Vec<String>>(1)?);
    }
    let reserved: Vec<String> = tx
        .query(
            "SELECT id FROM orders WHERE id = ANY($1) AND status = 'reserved' ORDER BY id",
            &[&named],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let next_look_ms = now_ms.saturating_add(LOOK_AGAIN_AFTER_MS);
    if rows.len() == 1 && reserved.len() == named.len() {
        tx.execute(
            "UPDATE open_orders SET due_at_ms = $2 WHERE seq = $1",
            &[&rows[0], &next_look_ms],
        )
        .await?;
        return Ok(());
    }
    tx.execute("DELETE FROM open_orders WHERE seq = ANY($1)", &[&rows])
        .await?;
    let kept: Vec<&str> = reserved.iter().map(String::as_str).collect();
    add(tx, &kept, next_look_ms).await
}
