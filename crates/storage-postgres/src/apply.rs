//! Writing what a batch decided: one statement per table whatever the
//! batch's size, each taking its rows as parallel arrays that `unnest`
//! turns back into rows. The statements do not depend on each other, so they
//! are sent together and cost one round trip. Every write of an existing row
//! is conditional on the row being as the batch loaded it, and checked: a
//! locked row (stock, holdings) that does not match is a bug, reported
//! instead of written; an order, read without a lock (see `load`), that does
//! not match was changed by another batch, which runs this one again.

use std::collections::HashMap;

use stockroom_domain::OrderStatus;
use stockroom_domain::outbox::NewEntry;
use stockroom_domain::rules::{Changes, OrderRecord, ProductState};
use stockroom_storage::batch::Writes;
use stockroom_storage::{history, keys, lines};

use crate::ahead::Turn;
use crate::load::{Lock, inconsistent, stock_row, stock_sql};
use crate::sql::Tx;
use crate::{Failure, bus, ledger, open};

/// What a batch's statements take besides its changes: each order's new
/// history entries, the events as outbox entries, the counters' deltas.
struct Rows<'a> {
    histories: HashMap<&'a str, String>,
    entries: Vec<NewEntry>,
    status_deltas: Vec<(OrderStatus, i64)>,
}

impl<'a> Rows<'a> {
    fn of(changes: &'a Changes) -> Rows<'a> {
        Rows {
            histories: history::encode_by_order(&changes.history),
            entries: changes
                .events
                .iter()
                .cloned()
                .map(NewEntry::routed)
                .collect(),
            status_deltas: changes.status_deltas(),
        }
    }
}

pub(crate) async fn apply(tx: Tx<'_>, writes: &Writes) -> Result<(), Failure> {
    let changes = &writes.changes;
    let rows = Rows::of(changes);
    tokio::try_join!(
        apply_stock(tx, changes),
        insert_orders(tx, writes, &rows.histories),
        update_orders(tx, changes, &rows.histories),
        bus::insert(tx, &rows.entries),
        insert_keys(tx, writes),
        count_statuses(tx, &rows.status_deltas),
        ledger::apply(tx, changes, writes.created_at_ms),
    )?;
    Ok(())
}

/// Writes a batch decided ahead of its stock locks (see `ahead`): its new
/// rows (orders, events) at once, then, in its turn, its products locked in
/// the global order and checked against what the rules decided on, and the
/// rest: the rows those locks guard (stock, ledger, holdings), the orders
/// changed, the keys claimed and the counters, as a batch decided under its
/// locks writes them. The check is sent before the rest and the database
/// runs a connection's statements in order, so the rest waits for the
/// locks without a round trip of its own. Something that moved fails the
/// batch with [`Failure::StockMoved`], whatever else failed after it, and
/// the transaction is rolled back whole.
pub(crate) async fn apply_ahead(
    tx: Tx<'_>,
    writes: &Writes,
    unmoved: Unmoved<'_>,
    turn: &mut Turn,
) -> Result<(), Failure> {
    let changes = &writes.changes;
    let rows = Rows::of(changes);
    let new_rows = async {
        tokio::try_join!(
            insert_orders(tx, writes, &rows.histories),
            bus::insert(tx, &rows.entries)
        )
    };
    let locked = async {
        let check = Check::prepare(tx).await?;
        turn.wait_for_previous().await;
        let check = async {
            let checked = check.run(tx, unmoved).await;
            turn.locked();
            checked
        };
        let rest = async {
            tokio::try_join!(
                apply_stock(tx, changes),
                update_orders(tx, changes, &rows.histories),
                insert_keys(tx, writes),
                count_statuses(tx, &rows.status_deltas),
                ledger::apply(tx, changes, writes.created_at_ms),
            )
        };
        let (checked, rest) = tokio::join!(check, rest);
        checked?;
        rest.map(|_| ())
    };
    match tokio::join!(new_rows, locked) {
        (_, Err(Failure::StockMoved)) => Err(Failure::StockMoved),
        (Err(failure), _) | (Ok(_), Err(failure)) => Err(failure),
        (Ok(_), Ok(())) => Ok(()),
    }
}

/// What a batch decided ahead on and must find unmoved under its locks.
#[derive(Clone, Copy)]
pub(crate) struct Unmoved<'a> {
    /// Every product it loaded, with the figures it decided on, sorted by
    /// key.
    pub stock: &'a [(String, ProductState)],
    /// The orders whose stock it may move, with the versions it read.
    pub orders: &'a [(String, i64)],
}

/// The two statements of a batch's check, prepared before they are sent so
/// that they are sent first, in this order: the products' lock, then the
/// orders' versions, read once the lock is held.
struct Check {
    lock: tokio_postgres::Statement,
    versions: tokio_postgres::Statement,
}

impl Check {
    async fn prepare(tx: Tx<'_>) -> Result<Check, Failure> {
        let lock_sql = stock_sql(Lock::ForUpdate);
        let (lock, versions) = tokio::try_join!(
            tx.prepare(&lock_sql),
            tx.prepare("SELECT id, version FROM orders WHERE id = ANY($1)")
        )?;
        Ok(Check { lock, versions })
    }

    /// Locks the products, then checks that each holds the figures the
    /// batch decided on, and that the orders whose stock it may move are as
    /// it read them: an order changed in between by a batch that held those
    /// locks (a settlement, an expiry) would not agree with the figures.
    async fn run(&self, tx: Tx<'_>, unmoved: Unmoved<'_>) -> Result<(), Failure> {
        let keys: Vec<&str> = unmoved.stock.iter().map(|(key, _)| key.as_str()).collect();
        let ids: Vec<&str> = unmoved.orders.iter().map(|(id, _)| id.as_str()).collect();
        let locked = async {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            tx.query_prepared(&self.lock, &[&keys]).await
        };
        let versions = async {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            tx.query_prepared(&self.versions, &[&ids]).await
        };
        let (locked, versions) = tokio::try_join!(locked, versions)?;
        let stock_unmoved = locked.len() == unmoved.stock.len()
            && locked
                .iter()
                .zip(unmoved.stock)
                .all(|(row, (decided_key, decided))| {
                    stock_row(row)
                        .is_ok_and(|(key, _, state)| key == *decided_key && state == *decided)
                });
        let read: HashMap<&str, i64> = unmoved
            .orders
            .iter()
            .map(|(id, version)| (id.as_str(), *version))
            .collect();
        let orders_unmoved = versions.len() == read.len()
            && versions.iter().all(|row| {
                match (row.try_get::<_, &str>(0), row.try_get::<_, i64>(1)) {
                    (Ok(id), Ok(version)) => read.get(id) == Some(&version),
                    _ => false,
                }
            });
        if stock_unmoved && orders_unmoved {
            Ok(())
        } else {
            Err(Failure::StockMoved)
        }
    }
}

fn expect_rows(what: &str, changed: u64, expected: usize) -> Result<(), Failure> {
    if changed != expected as u64 {
        return Err(inconsistent(format!(
            "{what}: {changed} rows matched the loaded state, {expected} expected"
        )));
    }
    Ok(())
}

/// A product's state as the inventory row's columns store it.
struct Columns {
    figures: [i64; 4],
    max_per_customer: Option<i32>,
    low_stock_threshold: Option<i64>,
    movements: i64,
}

fn columns(state: &ProductState) -> Columns {
    let stock = &state.stock;
    // Stock never exceeds MAX_STOCK_PER_PRODUCT, a limit never exceeds
    // MAX_PER_CUSTOMER_LIMIT, and a threshold never exceeds the stock
    // limit either: all far inside the columns' types.
    Columns {
        figures: [
            stock.on_hand() as i64,
            stock.reserved() as i64,
            stock.sold() as i64,
            stock.received_total() as i64,
        ],
        max_per_customer: state.settings.max_per_customer.map(|limit| limit as i32),
        low_stock_threshold: state
            .settings
            .low_stock_threshold
            .map(|threshold| threshold as i64),
        movements: state.movements as i64,
    }
}

/// Parallel arrays of the inventory columns, one entry per product.
#[derive(Default)]
struct ColumnArrays {
    figures: [Vec<i64>; 4],
    max_per_customer: Vec<Option<i32>>,
    low_stock_threshold: Vec<Option<i64>>,
    movements: Vec<i64>,
}

impl ColumnArrays {
    fn push(&mut self, state: &ProductState) {
        let columns = columns(state);
        for (column, value) in self.figures.iter_mut().zip(columns.figures) {
            column.push(value);
        }
        self.max_per_customer.push(columns.max_per_customer);
        self.low_stock_threshold.push(columns.low_stock_threshold);
        self.movements.push(columns.movements);
    }
}

async fn apply_stock(tx: Tx<'_>, changes: &Changes) -> Result<(), Failure> {
    let mut keys = Vec::new();
    let mut after = ColumnArrays::default();
    let mut before = ColumnArrays::default();
    let mut new_keys = Vec::new();
    let mut new_names = Vec::new();
    let mut new_rows = ColumnArrays::default();
    for change in &changes.stock {
        match &change.before {
            Some(loaded) => {
                keys.push(change.product_key.as_str());
                after.push(&change.after);
                before.push(loaded);
            }
            None => {
                new_keys.push(change.product_key.as_str());
                new_names.push(change.product_name.as_str());
                new_rows.push(&change.after);
            }
        }
    }
    if !keys.is_empty() {
        update_stock(tx, &keys, &after, &before).await?;
    }
    if !new_keys.is_empty() {
        insert_stock(tx, &new_keys, &new_names, &new_rows).await?;
    }
    Ok(())
}

/// Writes the products' new figures, each conditional on the figures it
/// was loaded with.
async fn update_stock(
    tx: Tx<'_>,
    keys: &[&str],
    after: &ColumnArrays,
    before: &ColumnArrays,
) -> Result<(), Failure> {
    let changed = tx
        .execute(
            "UPDATE inventory AS stock
                 SET quantity = change.quantity, reserved = change.reserved,
                     sold = change.sold, received = change.received,
                     max_per_customer = change.max_per_customer,
                     low_stock_threshold = change.low_stock_threshold,
                     movements = change.movements
                 FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
                             $6::integer[], $7::bigint[], $8::bigint[],
                             $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],
                             $13::integer[], $14::bigint[], $15::bigint[])
                      AS change (product_key, quantity, reserved, sold, received,
                                 max_per_customer, low_stock_threshold, movements,
                                 quantity_before, reserved_before, sold_before, received_before,
                                 max_per_customer_before, low_stock_threshold_before,
                                 movements_before)
                 WHERE stock.product_key = change.product_key
                   AND stock.quantity = change.quantity_before
                   AND stock.reserved = change.reserved_before
                   AND stock.sold = change.sold_before
                   AND stock.received = change.received_before
                   AND stock.max_per_customer IS NOT DISTINCT FROM change.max_per_customer_before
                   AND stock.low_stock_threshold
                       IS NOT DISTINCT FROM change.low_stock_threshold_before
                   AND stock.movements = change.movements_before",
            &[
                &keys,
                &after.figures[0],
                &after.figures[1],
                &after.figures[2],
                &after.figures[3],
                &after.max_per_customer,
                &after.low_stock_threshold,
                &after.movements,
                &before.figures[0],
                &before.figures[1],
                &before.figures[2],
                &before.figures[3],
                &before.max_per_customer,
                &before.low_stock_threshold,
                &before.movements,
            ],
        )
        .await?;
    expect_rows("stock update", changed, keys.len())
}

/// Inserts the products a batch created.
async fn insert_stock(
    tx: Tx<'_>,
    new_keys: &[&str],
    new_names: &[&str],
    new_rows: &ColumnArrays,
) -> Result<(), Failure> {
    tx.execute(
        "INSERT INTO inventory (product_key, product_name, quantity, reserved, sold, received,
                                   max_per_customer, low_stock_threshold, movements)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                                  $5::bigint[], $6::bigint[], $7::integer[], $8::bigint[],
                                  $9::bigint[])",
        &[
            &new_keys,
            &new_names,
            &new_rows.figures[0],
            &new_rows.figures[1],
            &new_rows.figures[2],
            &new_rows.figures[3],
            &new_rows.max_per_customer,
            &new_rows.low_stock_threshold,
            &new_rows.movements,
        ],
    )
    .await?;
    Ok(())
}

async fn insert_orders(
    tx: Tx<'_>,
    writes: &Writes,
    histories: &HashMap<&str, String>,
) -> Result<(), Failure> {
    let orders = &writes.changes.new_orders;
    if orders.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = orders.iter().map(|order| order.id.as_str()).collect();
    let customers: Vec<&str> = orders
        .iter()
        .map(|order| order.customer_id.as_str())
        .collect();
    let statuses: Vec<&str> = orders.iter().map(|order| order.status.as_str()).collect();
    let reasons: Vec<Option<&str>> = orders
        .iter()
        .map(|order| order.reason.map(|reason| reason.as_str()))
        .collect();
    let payments: Vec<&str> = orders.iter().map(|order| order.payment.as_str()).collect();
    let versions: Vec<i64> = orders.iter().map(|order| order.version).collect();
    let created: Vec<i64> = orders.iter().map(|order| order.created_at_ms).collect();
    let updated: Vec<i64> = orders.iter().map(|order| order.updated_at_ms).collect();
    let order_lines: Vec<String> = orders
        .iter()
        .map(|order| lines::encode(&order.lines))
        .collect();
    let histories: Vec<&str> = orders
        .iter()
        .map(|order| history::of(histories, &order.id))
        .collect();
    let extended: Vec<Option<i64>> = orders.iter().map(|order| order.extended_until_ms).collect();
    let other: Vec<Option<&str>> = orders.iter().map(|order| other_status(order)).collect();
    let reserved: Vec<&str> = orders
        .iter()
        .filter(|order| order.status == OrderStatus::Reserved)
        .map(|order| order.id.as_str())
        .collect();
    let columns: [&(dyn tokio_postgres::types::ToSql + Sync); 12] = [
        &ids,
        &customers,
        &created,
        &order_lines,
        &other,
        &extended,
        &reasons,
        &versions,
        &updated,
        &payments,
        &statuses,
        &histories,
    ];
    let inserted = tx.execute(
        "INSERT INTO orders (id, customer_id, created_at_ms, lines, other_status,
                             extended_until_ms, reason, version, updated_at_ms, payment_status,
                             status, history)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                              $6::bigint[], $7::text[], $8::bigint[], $9::bigint[], $10::text[],
                              $11::text[], $12::text[])",
        &columns,
    );
    let oldest_created_at_ms = orders
        .iter()
        .filter(|order| order.status == OrderStatus::Reserved)
        .map(|order| order.created_at_ms)
        .min()
        .unwrap_or(writes.created_at_ms);
    let due_at_ms = writes.created_at_ms + open::FIRST_LOOK_AFTER_MS;
    tokio::try_join!(
        inserted,
        open::add(tx, &reserved, due_at_ms, oldest_created_at_ms)
    )?;
    Ok(())
}

/// The `other_status` column of an order: its status unless that is
/// reserved or fulfilled, the two a settlement moves between (see
/// migration 11).
fn other_status(order: &OrderRecord) -> Option<&'static str> {
    match order.status {
        OrderStatus::Reserved | OrderStatus::Fulfilled => None,
        status => Some(status.as_str()),
    }
}

async fn update_orders(
    tx: Tx<'_>,
    changes: &Changes,
    histories: &HashMap<&str, String>,
) -> Result<(), Failure> {
    if changes.changed_orders.is_empty() {
        return Ok(());
    }
    let orders = &changes.changed_orders;
    let ids: Vec<&str> = orders
        .iter()
        .map(|change| change.order.id.as_str())
        .collect();
    let statuses: Vec<&str> = orders
        .iter()
        .map(|change| change.order.status.as_str())
        .collect();
    let reasons: Vec<Option<&str>> = orders
        .iter()
        .map(|change| change.order.reason.map(|reason| reason.as_str()))
        .collect();
    let payments: Vec<&str> = orders
        .iter()
        .map(|change| change.order.payment.as_str())
        .collect();
    let versions: Vec<i64> = orders.iter().map(|change| change.order.version).collect();
    let updated: Vec<i64> = orders
        .iter()
        .map(|change| change.order.updated_at_ms)
        .collect();
    let loaded: Vec<i64> = orders.iter().map(|change| change.loaded_version).collect();
    let added: Vec<&str> = ids.iter().map(|id| history::of(histories, id)).collect();
    let extended: Vec<Option<i64>> = orders
        .iter()
        .map(|change| change.order.extended_until_ms)
        .collect();
    let other: Vec<Option<&str>> = orders
        .iter()
        .map(|change| other_status(&change.order))
        .collect();
    // Every column is set, changed or not: PostgreSQL compares each new
    // value with the stored one, so an unchanged `other_status` (the only
    // indexed column set) keeps a settlement heap-only, and the history's
    // new entries go in front of the stored ones (see migration 11).
    let changed = tx
        .execute(
            &format!(
                "UPDATE orders
                 SET other_status = change.other_status,
                     extended_until_ms = change.extended_until_ms, reason = change.reason,
                     version = change.version, updated_at_ms = change.updated_at_ms,
                     payment_status = change.payment_status, status = change.status,
                     history = {}
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                             $6::bigint[], $7::bigint[], $8::text[], $9::bigint[], $10::text[])
                      AS change (id, status, reason, payment_status, version, updated_at_ms,
                                 loaded_version, added, extended_until_ms, other_status)
                 WHERE orders.id = change.id AND orders.version = change.loaded_version",
                history::prepend_sql("orders.history", "change.added")
            ),
            &[
                &ids, &statuses, &reasons, &payments, &versions, &updated, &loaded, &added,
                &extended, &other,
            ],
        )
        .await?;
    // Orders are read without a lock (see `load`): one changed since by
    // another batch is a race, and the batch runs again on what is there.
    if changed != ids.len() as u64 {
        return Err(Failure::RowRace {
            what: "order update",
            changed,
            expected: ids.len(),
        });
    }
    Ok(())
}

/// Stores the idempotency keys of the batch's new answers. A concurrent
/// batch of another process may have claimed one of the same keys since
/// this one looked (both saw it free): the insert then waits for that batch
/// and skips the key, and this batch is run again, finding the stored answer.
async fn insert_keys(tx: Tx<'_>, writes: &Writes) -> Result<(), Failure> {
    let claims = &writes.changes.keys;
    if claims.is_empty() {
        return Ok(());
    }
    // Sorted, so that two batches claiming overlapping keys take the unique
    // index's locks in one order and never wait for each other in a cycle.
    let mut claims: Vec<_> = claims.iter().collect();
    claims.sort_by(|a, b| (&a.customer_id, &a.key).cmp(&(&b.customer_id, &b.key)));
    let customers: Vec<&str> = claims
        .iter()
        .map(|claim| claim.customer_id.as_str())
        .collect();
    let names: Vec<&str> = claims.iter().map(|claim| claim.key.as_str()).collect();
    let fingerprints: Vec<Option<&str>> = claims
        .iter()
        .map(|claim| claim.fingerprint.as_deref())
        .collect();
    let orders: Vec<&str> = claims.iter().map(|claim| claim.answer.order_id()).collect();
    let shortages: Vec<Option<String>> = claims
        .iter()
        .map(|claim| keys::encode_shortages(&claim.answer))
        .collect();
    let claimed = tx
        .execute(
            "INSERT INTO idempotency_keys (customer_id, key, fingerprint, order_id, shortages,
                                           created_at_ms)
             SELECT customer_id, key, fingerprint, order_id, shortages, $6
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                  AS claim (customer_id, key, fingerprint, order_id, shortages)
             ON CONFLICT (customer_id, key) DO NOTHING",
            &[
                &customers,
                &names,
                &fingerprints,
                &orders,
                &shortages,
                &writes.created_at_ms,
            ],
        )
        .await?;
    if claimed != claims.len() as u64 {
        return Err(Failure::KeyRace);
    }
    Ok(())
}

/// How many rows each status's counter is spread over. A transaction adds
/// to one shard drawn at random, so two concurrent batches (of any instance)
/// wait for each other's counter rows one time in this many; a count sums at
/// most this many rows per status.
pub const ORDER_COUNT_SHARDS: u8 = 16;

/// Moves the orders-per-status counters by a batch's deltas, on one shard.
pub(crate) async fn count_statuses(
    tx: Tx<'_>,
    deltas: &[(stockroom_domain::OrderStatus, i64)],
) -> Result<(), Failure> {
    if deltas.is_empty() {
        return Ok(());
    }
    let shard = i32::from(uuid::Uuid::new_v4().as_bytes()[0] % ORDER_COUNT_SHARDS);
    let statuses: Vec<&str> = deltas.iter().map(|(status, _)| status.as_str()).collect();
    let counts: Vec<i64> = deltas.iter().map(|(_, delta)| *delta).collect();
    tx.execute(
        "INSERT INTO order_counts (status, shard, count)
         SELECT status, $3, delta FROM unnest($1::text[], $2::bigint[]) AS moved (status, delta)
         ON CONFLICT (status, shard) DO UPDATE SET count = order_counts.count + excluded.count",
        &[&statuses, &counts, &shard],
    )
    .await?;
    Ok(())
}
