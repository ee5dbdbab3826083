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
//!
//! A row also keeps the creation time of the oldest order it names
//! (migration 13), so that the sweep reads only the rows that may name an
//! order old enough to expire: under a sale nearly every row names orders
//! of the last few seconds, far younger than a reservation's time to live.

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
const NAMED: &str = "id IN (SELECT unnest(ids) FROM open_orders)";

/// The condition that an order's `id` is named by an open-orders row that
/// may name an order created by `cutoff` (a parameter): a row written
/// before migration 13 does not know its oldest order, and is read always.
/// An order the sweep ends was created by its cutoff: unpaid, by the
/// cutoff itself; paid, by its last change, which came after its creation
/// (with clocks that disagree between processes, an expiry waits for the
/// disagreement at most).
pub(crate) fn named_created_by(cutoff: &str) -> String {
    format!(
        "id IN (SELECT unnest(ids) FROM open_orders
                WHERE oldest_created_at_ms IS NULL OR oldest_created_at_ms <= {cutoff})"
    )
}

/// [`NAMED`], for ids after the cursor `after` (a parameter) when there is
/// one. PostgreSQL does not carry an order's `id > cursor` over to the ids
/// it is joined with, so without this each page of a listing read the
/// order of every id named, those of the pages before included.
pub(crate) fn named(after: Option<&str>) -> String {
    match after {
        None => NAMED.to_owned(),
        Some(after) => format!(
            "id IN (SELECT named FROM open_orders, unnest(ids) AS named WHERE named > {after})"
        ),
    }
}

/// Names the reserved orders `ids`, the oldest created at
/// `oldest_created_at_ms`, in a row first looked at `due_at_ms`.
pub(crate) async fn add(
    tx: Tx<'_>,
    ids: &[&str],
    due_at_ms: i64,
    oldest_created_at_ms: i64,
) -> Result<(), Failure> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO open_orders (due_at_ms, ids, oldest_created_at_ms) VALUES ($1, $2, $3)",
        &[&due_at_ms, &ids, &oldest_created_at_ms],
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
    let mut reserved: Vec<String> = Vec::new();
    let mut oldest_created_at_ms = i64::MAX;
    for row in tx
        .query(
            "SELECT id, created_at_ms FROM orders
             WHERE id = ANY($1) AND status = 'reserved' ORDER BY id",
            &[&named],
        )
        .await?
    {
        reserved.push(row.try_get(0)?);
        oldest_created_at_ms = oldest_created_at_ms.min(row.try_get(1)?);
    }
    let next_look_ms = now_ms.saturating_add(LOOK_AGAIN_AFTER_MS);
    if rows.len() == 1 && reserved.len() == named.len() {
        tx.execute(
            "UPDATE open_orders SET due_at_ms = $2, oldest_created_at_ms = $3 WHERE seq = $1",
            &[&rows[0], &next_look_ms, &oldest_created_at_ms],
        )
        .await?;
        return Ok(());
    }
    tx.execute("DELETE FROM open_orders WHERE seq = ANY($1)", &[&rows])
        .await?;
    let kept: Vec<&str> = reserved.iter().map(String::as_str).collect();
    add(tx, &kept, next_look_ms, oldest_created_at_ms).await
}
