//! Loading and locking the rows a batch touches, into the rules' book.
//!
//! Other data-service processes write the same rows at the same time. The
//! rows whose figures the rules check (stock, and under it holdings and
//! ledger rows) are locked (`FOR UPDATE`) before they decide, in one global
//! order, by product key. Orders are read without a lock, and every write of
//! one is conditional on the version read: a mismatch means another batch
//! changed it first, and the batch runs again ([`Failure::RowRace`]).
//!
//! What makes that safe is the order of the reads. Every change of an order
//! that moves stock (a settlement, a release, an expiry) is made by a batch
//! holding its products' locks, so an order read after those locks were
//! granted (READ COMMITTED: each statement sees what committed before it
//! began) agrees with the stock read under them. The batch therefore reads
//! its orders once to learn their products (an order's lines never change),
//! locks the products, and reads again the orders whose stock it may move.
//! A change that moves no stock (a payment's verdict, an extension) may still
//! commit in between; the conditional write finds it.
//!
//! A batch decided ahead of its locks (see `ahead`) reads its orders once
//! and its stock without a lock, and locks its products at its write: there
//! the check of every product's figures under the lock, and the conditional
//! writes of its orders, find whatever moved since it read.
//!
//! An order's row is locked only by the write that changes it, at the end
//! of the batch, after every product lock, and a batch writes its orders
//! sorted by id: two batches do not wait for each other in a cycle (should
//! a plan take the rows in another order, PostgreSQL's deadlock detector
//! breaks the cycle and the batch runs again), and no lock record is
//! written for an order beside the write itself.

use stockroom_domain::rules::{Book, OrderRecord, ProductSettings, ProductState, StoredKey};
use stockroom_domain::{OrderStatus, PaymentStatus, Reason, Stock, UnknownName};
use stockroom_storage::batch::Needs;
use stockroom_storage::{StorageError, keys, ledger, lines};
use tokio_postgres::Row;

use crate::ahead::StockRow;
use crate::sql::Tx;
use crate::{Failure, open};

/// The columns [`order_records`] reads, in its order.
pub(crate) const ORDER_COLUMNS: &str = "id, customer_id, status, reason, payment_status, version, created_at_ms, updated_at_ms, lines, extended_until_ms";

/// How many columns [`ORDER_COLUMNS`] names: a query that reads more
/// columns after them finds the first at this index.
pub(crate) const ORDER_COLUMN_COUNT: usize = 10;

/// The columns of [`stock_row`], in its order.
pub(crate) const STOCK_COLUMNS: &str = "product_key, product_name, quantity, reserved, sold, received, max_per_customer, low_stock_threshold, movements";

pub(crate) fn inconsistent(message: String) -> Failure {
    Failure::Storage(StorageError::Inconsistent(message))
}

/// The first half of a batch's load, whichever way it is decided: fills
/// `needs` in (the sweep's candidates, the products of the loaded orders)
/// and reads the idempotency keys and the orders, once, without a lock.
/// A batch decided under its locks goes on with [`lock_and_load`]; one
/// decided ahead reads its stock without a lock (see `ahead`).
pub(crate) async fn load_orders(
    tx: Tx<'_>,
    needs: &mut Needs,
    now_ms: i64,
    notify: bool,
) -> Result<FirstRead, Failure> {
    let mut book = Book::new(now_ms).notifying(notify);
    find_sweep_candidates(tx, needs, now_ms).await?;
    load_keys(tx, needs, &mut book).await?;
    let orders = read_orders(tx, needs.order_ids.iter().map(String::as_str)).await?;
    for order in &orders {
        needs.add_lines(order);
    }
    Ok(FirstRead { book, orders })
}

/// What [`load_orders`] read: the book with the idempotency keys in it, and
/// the orders, not in it yet (a batch decided under its locks reads some of
/// them again first).
pub(crate) struct FirstRead {
    pub book: Book,
    pub orders: Vec<OrderRecord>,
}

/// The second half of a batch decided under its locks: the stock locked by
/// product key, the orders
/// whose stock the batch may move read again under those locks, then what
/// the products' locks guard. The holdings of limited products are read
/// after their products' rows are locked: every batch that changes a
/// holding locks the product first, so what this batch reads is what the
/// previous holder of the lock wrote.
pub(crate) async fn lock_and_load(
    tx: Tx<'_>,
    needs: &mut Needs,
    first: FirstRead,
) -> Result<Book, Failure> {
    let FirstRead {
        mut book,
        mut orders,
    } = first;
    for (key, name, state) in stock_rows(tx, &product_keys(needs), Lock::ForUpdate).await? {
        book.load_product(key, name, state);
    }
    // The orders whose stock the batch may move, read again now that no
    // other batch can move it. An order named only by payment verdicts, or
    // already ended, is kept as first read.
    let moving: Vec<&str> = orders
        .iter()
        .filter(|order| needs.may_move_stock(order))
        .map(|order| order.id.as_str())
        .collect();
    if !moving.is_empty() {
        let again = read_orders(tx, moving.into_iter()).await?;
        orders.retain(|order| !needs.may_move_stock(order));
        orders.extend(again);
    }
    for order in orders {
        book.load_order(order);
    }
    load_holdings(tx, needs, &mut book).await?;
    load_holders(tx, needs).await?;
    load_operator_keys(tx, needs, &mut book).await?;
    Ok(book)
}

/// Whether a stock read locks the rows it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// `FOR UPDATE`, in the global order: the rules decide under the lock.
    ForUpdate,
    /// A plain read, for a batch decided ahead, which locks at its write.
    None,
}

async fn find_sweep_candidates(tx: Tx<'_>, needs: &mut Needs, now_ms: i64) -> Result<(), Failure> {
    if !needs.sweeps.is_empty() {
        open::rewrite_due(tx, now_ms).await?;
    }
    for index in 0..needs.sweeps.len() {
        let query = &needs.sweeps[index];
        // Reserved orders only, those named by open-orders rows old enough
        // to name an overdue one: the cost follows the reservations that
        // may be overdue. Read without a lock like every order: two
        // sweepers that take the same order both read it again under its
        // products' locks, and the second finds it ended.
        let found = tx
            .query(
                &format!(
                    "SELECT id FROM orders
                     WHERE {} AND status = 'reserved'
                       AND ((payment_status = 'none' AND created_at_ms <= $1
                             AND (extended_until_ms IS NULL OR extended_until_ms <= $3))
                            OR (payment_status <> 'none' AND updated_at_ms <= $1))
                     ORDER BY id LIMIT $2",
                    open::named_created_by("$1")
                ),
                &[&query.cutoff_ms, &i64::from(query.limit), &now_ms],
            )
            .await?
            .iter()
            .map(|row| row.try_get::<_, String>(0))
            .collect::<Result<Vec<_>, _>>()?;
        needs.add_swept(index, found);
    }
    Ok(())
}

async fn load_keys(tx: Tx<'_>, needs: &mut Needs, book: &mut Book) -> Result<(), Failure> {
    if !needs.keys.is_empty() {
        let (customers, names): (Vec<&str>, Vec<&str>) = needs
            .keys
            .iter()
            .map(|(customer, key)| (customer.as_str(), key.as_str()))
            .unzip();
        let mut stored = Vec::new();
        for row in tx
            .query(
                "SELECT customer_id, key, fingerprint, order_id, shortages FROM idempotency_keys
                 WHERE (customer_id, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
                &[&customers, &names],
            )
            .await?
        {
            let shortages: Option<String> = row.try_get(4)?;
            let answer =
                keys::decode(row.try_get(3)?, shortages.as_deref()).map_err(Failure::Storage)?;
            let key = StoredKey {
                fingerprint: row.try_get(2)?,
                answer,
            };
            stored.push((
                row.try_get::<_, String>(0)?,
                row.try_get::<_, String>(1)?,
                key,
            ));
        }
        needs.keys_loaded(stored.iter().map(|(_, _, key)| key));
        for (customer_id, key, stored) in stored {
            book.load_key(customer_id, key, stored);
        }
    }
    Ok(())
}

/// The stored orders among `ids`, read without a lock.
async fn read_orders<'a>(
    tx: Tx<'_>,
    ids: impl Iterator<Item = &'a str>,
) -> Result<Vec<OrderRecord>, Failure> {
    let ids: Vec<&str> = ids.collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ANY($1)"),
            &[&ids],
        )
        .await?;
    order_records(&rows)
}

/// The product keys `needs` names, sorted.
pub(crate) fn product_keys(needs: &Needs) -> Vec<&str> {
    needs.product_keys.iter().map(String::as_str).collect()
}

/// The stock rows of `keys` (those that exist); sorted by key when locked.
pub(crate) async fn stock_rows(
    tx: Tx<'_>,
    keys: &[&str],
    lock: Lock,
) -> Result<Vec<StockRow>, Failure> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    tx.query(&stock_sql(lock), &[&keys])
        .await?
        .iter()
        .map(stock_row)
        .collect()
}

/// The read of [`stock_rows`], taking the keys as `$1`.
pub(crate) fn stock_sql(lock: Lock) -> String {
    // `COLLATE "C"` sorts by bytes, as Rust sorts keys, whatever
    // collation the database was created with: one lock order for all.
    let lock = match lock {
        Lock::ForUpdate => "ORDER BY product_key COLLATE \"C\" FOR UPDATE",
        Lock::None => "",
    };
    format!("SELECT {STOCK_COLUMNS} FROM inventory WHERE product_key = ANY($1) {lock}")
}

/// A stock row, its figures checked.
pub(crate) fn stock_row(row: &Row) -> Result<StockRow, Failure> {
    let key: String = row.try_get(0)?;
    let name: String = row.try_get(1)?;
    let damaged = |what: &str| inconsistent(format!("{what} of {name}"));
    let stock = Stock::from_row(
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
    )
    .map_err(|error| inconsistent(format!("stock of {name}: {error}")))?;
    let limit: Option<i32> = row.try_get(6)?;
    let threshold: Option<i64> = row.try_get(7)?;
    let movements: i64 = row.try_get(8)?;
    let state = ProductState {
        stock,
        settings: ProductSettings {
            max_per_customer: limit
                .map(u32::try_from)
                .transpose()
                .map_err(|_| damaged("the limit"))?,
            low_stock_threshold: threshold
                .map(u64::try_from)
                .transpose()
                .map_err(|_| damaged("the threshold"))?,
        },
        movements: u64::try_from(movements).map_err(|_| damaged("the ledger length"))?,
    };
    Ok((key, name, state))
}

/// The records of order rows (of [`ORDER_COLUMNS`]), checked, in the rows'
/// order.
pub(crate) fn order_records(orders: &[Row]) -> Result<Vec<OrderRecord>, Failure> {
    orders.iter().map(order_record).collect()
}

fn order_record(row: &Row) -> Result<OrderRecord, Failure> {
    let id: String = row.try_get(0)?;
    let parse_error = |error: UnknownName| inconsistent(format!("order {id}: {error}"));
    let status: String = row.try_get(2)?;
    let reason: Option<String> = row.try_get(3)?;
    let payment: String = row.try_get(4)?;
    let lines: String = row.try_get(8)?;
    Ok(OrderRecord {
        customer_id: row.try_get(1)?,
        status: status.parse::<OrderStatus>().map_err(parse_error)?,
        reason: reason
            .as_deref()
            .map(str::parse::<Reason>)
            .transpose()
            .map_err(parse_error)?,
        payment: payment.parse::<PaymentStatus>().map_err(parse_error)?,
        version: row.try_get(5)?,
        created_at_ms: row.try_get(6)?,
        updated_at_ms: row.try_get(7)?,
        lines: lines::decode(&id, &lines)?,
        extended_until_ms: row.try_get(9)?,
        id,
    })
}

/// The holdings of limited products' pairs, zero for a pair without a row.
async fn load_holdings(tx: Tx<'_>, needs: &Needs, book: &mut Book) -> Result<(), Failure> {
    let pairs = needs.holdings_to_load(book);
    if pairs.is_empty() {
        return Ok(());
    }
    let (customers, products): (Vec<&str>, Vec<&str>) = pairs
        .iter()
        .map(|(customer, product)| (customer.as_str(), product.as_str()))
        .unzip();
    let found = tx
        .query(
            "SELECT customer_id, product_key, units FROM holdings
             WHERE (customer_id, product_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            &[&customers, &products],
        )
        .await?;
    let mut stored = Vec::with_capacity(found.len());
    for row in &found {
        let units: i64 = row.try_get(2)?;
        stored.push((
            row.try_get::<_, String>(0)?,
            row.try_get::<_, String>(1)?,
            u64::try_from(units).unwrap_or(0),
        ));
    }
    for (customer, product_key) in pairs {
        let units = stored
            .iter()
            .find(|(holder, key, _)| *holder == customer && *key == product_key)
            .map(|(_, _, units)| *units);
        book.load_holding(customer, product_key, units);
    }
    Ok(())
}

/// Every reserved and fulfilled order holding a product whose limit is set
/// or removed: a scan of the orders, an operator's rare call. The product's
/// row is locked already, so no reservation of it commits meanwhile.
async fn load_holders(tx: Tx<'_>, needs: &mut Needs) -> Result<(), Failure> {
    for product_key in needs.limit_changes.clone() {
        let rows = tx
            .query(
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM orders
                     WHERE status IN ('reserved', 'fulfilled')
                       AND EXISTS (SELECT 1 FROM jsonb_array_elements(lines::jsonb) AS line
                                   WHERE line ->> 0 = $1)"
                ),
                &[&product_key],
            )
            .await?;
        needs.holders.insert(product_key, order_records(&rows)?);
    }
    Ok(())
}

/// Operators' idempotency keys already answered.
async fn load_operator_keys(tx: Tx<'_>, needs: &Needs, book: &mut Book) -> Result<(), Failure> {
    if needs.operator_keys.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = needs.operator_keys.iter().map(String::as_str).collect();
    for row in tx
        .query(
            "SELECT key, fingerprint, product_key, answer FROM operator_keys
             WHERE key = ANY($1) ORDER BY key FOR UPDATE",
            &[&keys],
        )
        .await?
    {
        let product_key: String = row.try_get(2)?;
        let answer: String = row.try_get(3)?;
        let answer = ledger::decode_answer(&product_key, &answer).map_err(Failure::Storage)?;
        book.load_operator_key(row.try_get(0)?, row.try_get(1)?, answer);
    }
    Ok(())
}
