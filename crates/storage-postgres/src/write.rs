//! Every change to the database. Each function runs inside the caller's
//! transaction and keeps the SQLite backend's semantics, step for step; where
//! concurrent writers need more than SQLite's single writer, a comment says
//! what the statement relies on.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use stockroom_contract::{
    Delivery, EffectOutcome, EffectResult, Event, HistoryEntry, InventoryItem, Order, OrderLine,
    PaymentRecord, ProductRef, ReserveOutcome, ReserveRequest, ReserveResult, Settlement,
    SettlementAction, Shortage, StockLine,
};
use stockroom_domain::{
    CONSUMER_INVENTORY, CONSUMER_PAYMENT, EventKind, MAX_STOCK_PER_PRODUCT, OrderStatus,
    PaymentStatus, ProductName, ReleaseReason,
};
use stockroom_storage::{MAX_DELIVERY_ATTEMPTS, ReleaseOutcome, StorageError};

use crate::read::{self, INVENTORY_COLUMNS, inventory_row};
use crate::sql::{execute, query, query_one, query_opt};
use crate::{Failure, format_time, now_ms};

fn inconsistent(message: String) -> Failure {
    Failure::Storage(StorageError::Inconsistent(message))
}

pub(crate) async fn initialize_stock(
    tx: &Transaction<'_>,
    lines: &[StockLine],
) -> Result<bool, Failure> {
    // Claiming the marker first makes concurrent first starts safe: a second
    // instance's insert waits on the primary key until the first commits,
    // then finds the stock loaded. Reading the marker first would let both
    // load the stock.
    let claimed = execute(
        tx,
        "INSERT INTO meta (key, value) VALUES ('stock_loaded', $1) ON CONFLICT (key) DO NOTHING",
        &[&format_time(now_ms())],
    )
    .await?;
    if claimed == 0 {
        return Ok(false);
    }
    for line in lines {
        check_stock_limit(line.quantity)?;
        execute(
            tx,
            "INSERT INTO inventory (product_key, product_name, quantity, reserved, sold, received)
             VALUES ($1, $2, $3, 0, 0, $3)
             ON CONFLICT (product_key) DO UPDATE SET
                quantity = inventory.quantity + excluded.quantity,
                received = inventory.received + excluded.quantity",
            &[
                &line.product_name.key(),
                &line.product_name.as_str(),
                &(line.quantity as i64),
            ],
        )
        .await?;
    }
    Ok(true)
}

fn stock_limit_error() -> Failure {
    Failure::Storage(StorageError::Invalid(format!(
        "stock of one product may not exceed {MAX_STOCK_PER_PRODUCT} units"
    )))
}

fn check_stock_limit(quantity: u64) -> Result<(), Failure> {
    if quantity > MAX_STOCK_PER_PRODUCT {
        return Err(stock_limit_error());
    }
    Ok(())
}

pub(crate) async fn restock(
    tx: &Transaction<'_>,
    product: &ProductName,
    quantity: u64,
) -> Result<InventoryItem, Failure> {
    check_stock_limit(quantity)?;
    // The limit is part of the upsert's condition, so a concurrent restock
    // cannot slip between a check and the write.
    let row = query_opt(
        tx,
        &format!(
            "INSERT INTO inventory (product_key, product_name, quantity, reserved, sold, received)
             VALUES ($1, $2, $3, 0, 0, $3)
             ON CONFLICT (product_key) DO UPDATE SET
                quantity = inventory.quantity + excluded.quantity,
                received = inventory.received + excluded.quantity
             WHERE inventory.quantity + excluded.quantity <= $4
             RETURNING {INVENTORY_COLUMNS}"
        ),
        &[
            &product.key(),
            &product.as_str(),
            &(quantity as i64),
            &(MAX_STOCK_PER_PRODUCT as i64),
        ],
    )
    .await?;
    let Some(row) = row else {
        return Err(stock_limit_error());
    };
    let after = inventory_row(&row)?;
    tracing::info!(
        operation = "restock",
        product = %after.product_name,
        quantity,
        on_hand_before = after.quantity - quantity as i64,
        on_hand_after = after.quantity,
        "inventory restocked"
    );
    Ok(after)
}

/// Applies each request in its own savepoint, in order, inside the one
/// transaction of the call: one commit for the whole batch.
pub(crate) async fn reserve_all(
    tx: &Transaction<'_>,
    requests: &[ReserveRequest],
) -> Result<Vec<ReserveResult>, Failure> {
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        results.push(reserve_in_savepoint(tx, request).await?);
    }
    Ok(results)
}

async fn reserve_in_savepoint(
    tx: &Transaction<'_>,
    request: &ReserveRequest,
) -> Result<ReserveResult, Failure> {
    tx.batch_execute("SAVEPOINT reservation").await?;
    // An error leaves the transaction unusable; the caller abandons it whole,
    // as the SQLite backend abandons the whole job.
    let result = reserve(tx, request).await?;
    let end = if matches!(result.outcome, ReserveOutcome::UnknownProduct { .. }) {
        // Nothing of a request naming an unknown product is kept, not even
        // its claim on the idempotency key.
        "ROLLBACK TO SAVEPOINT reservation; RELEASE SAVEPOINT reservation"
    } else {
        "RELEASE SAVEPOINT reservation"
    };
    tx.batch_execute(end).await?;
    Ok(result)
}

/// What an idempotency key says about a request.
enum KeyClaim {
    /// The key is new (or the request has none): go on and fill in the result.
    Fresh,
    /// The key answered before; this is the answer. Boxed, because the
    /// answer is large and the fresh case, far more common, carries nothing.
    Answered(Box<ReserveResult>),
}

async fn claim_idempotency_key(
    tx: &Transaction<'_>,
    request: &ReserveRequest,
    now: i64,
) -> Result<KeyClaim, Failure> {
    let Some(key) = &request.idempotency_key else {
        return Ok(KeyClaim::Fresh);
    };
    // Insert first, read second: a concurrent request with the same key
    // blocks on the primary key until this transaction ends, and then finds
    // the row with its result filled in. Reading first would let both miss.
    let inserted = execute(
        tx,
        "INSERT INTO idempotency_keys (key, fingerprint, result_json, created_at_ms)
         VALUES ($1, $2, NULL, $3)
         ON CONFLICT (key) DO NOTHING",
        &[key, &request.request_fingerprint, &now],
    )
    .await?;
    if inserted == 1 {
        return Ok(KeyClaim::Fresh);
    }
    let row = query_one(
        tx,
        "SELECT fingerprint, result_json FROM idempotency_keys WHERE key = $1",
        &[key],
    )
    .await?;
    let fingerprint: Option<String> = row.try_get(0)?;
    let result_json: Option<String> = row.try_get(1)?;
    if fingerprint != request.request_fingerprint {
        return Ok(KeyClaim::Answered(Box::new(ReserveResult {
            replayed: false,
            outcome: ReserveOutcome::IdempotencyKeyReused,
        })));
    }
    let result_json = result_json
        .ok_or_else(|| inconsistent(format!("idempotency key {key} has no stored result")))?;
    let outcome: ReserveOutcome = serde_json::from_str(&result_json)
        .map_err(|error| inconsistent(format!("stored idempotent result unreadable: {error}")))?;
    Ok(KeyClaim::Answered(Box::new(ReserveResult {
        replayed: true,
        outcome,
    })))
}

/// Reserves every item of one order or none, creates the order, and writes
/// `OrderReserved` to the outbox, all inside the caller's transaction.
async fn reserve(tx: &Transaction<'_>, request: &ReserveRequest) -> Result<ReserveResult, Failure> {
    let now = now_ms();
    if let KeyClaim::Answered(result) = claim_idempotency_key(tx, request, now).await? {
        return Ok(*result);
    }

    // Check and hold in one statement per item. Items come sorted by product
    // key, the one global lock order, so two reservations never wait on each
    // other in a cycle. Under READ COMMITTED an UPDATE that waited for a row
    // lock re-checks its condition against the newest committed row.
    // RETURNING gives the figures after the hold (for the log and the order's
    // line names) without a separate read: on PostgreSQL every statement is a
    // round trip, and round trips are what a reservation costs here. A
    // savepoint of its own after the key claim, so that undoing the holds
    // keeps the claim: the rejection is stored under the key too.
    tx.batch_execute("SAVEPOINT holds").await?;
    let mut held: Vec<(String, i64, i64)> = Vec::with_capacity(request.items.len());
    let mut short_at = None;
    for (index, item) in request.items.iter().enumerate() {
        let row = query_opt(
            tx,
            "UPDATE inventory SET reserved = reserved + $1
             WHERE product_key = $2 AND quantity - reserved >= $1
             RETURNING product_name, quantity, reserved",
            &[&i64::from(item.quantity.get()), &item.product.key()],
        )
        .await?;
        match row {
            Some(row) => held.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)),
            None => {
                short_at = Some(index);
                break;
            }
        }
    }

    let outcome = if let Some(short_at) = short_at {
        // Undo the items already held: all or nothing. Then read every item,
        // to tell an unknown product from a short one and to report the
        // shortages. Other writers commit between statements here, so the
        // figures are read after the failed hold, which has waited for every
        // writer of that product: these are the figures the decision saw. The
        // item whose hold failed is always reported.
        tx.batch_execute("ROLLBACK TO SAVEPOINT holds; RELEASE SAVEPOINT holds")
            .await?;
        let keys: Vec<String> = request
            .items
            .iter()
            .map(|item| item.product.key())
            .collect();
        let current = stock_by_key(tx, &keys).await?;
        let mut names = Vec::with_capacity(request.items.len());
        for item in request.items.iter() {
            match current.get(&item.product.key()) {
                Some(stock) => names.push(stock.product_name.clone()),
                None => {
                    return Ok(ReserveResult {
                        replayed: false,
                        outcome: ReserveOutcome::UnknownProduct {
                            product_name: item.product.to_string(),
                        },
                    });
                }
            }
        }
        let reason = Some("insufficient_stock");
        insert_order_row(tx, request, OrderStatus::Rejected, reason, now).await?;
        let order =
            insert_order_details(tx, request, &names, OrderStatus::Rejected, reason, now).await?;
        let mut shortages = Vec::new();
        for (index, item) in request.items.iter().enumerate() {
            let stock = &current[&item.product.key()];
            let requested = item.quantity.get();
            if index == short_at || stock.available < i64::from(requested) {
                shortages.push(Shortage {
                    product_name: stock.product_name.clone(),
                    requested,
                    available: stock.available,
                });
            }
        }
        tracing::info!(
            operation = "reserve",
            order_id = %request.order_id,
            result = "rejected",
            "reservation rejected: insufficient stock"
        );
        ReserveOutcome::Rejected { order, shortages }
    } else {
        for (item, (name, quantity, reserved)) in request.items.iter().zip(&held) {
            tracing::info!(
                operation = "reserve",
                order_id = %request.order_id,
                product = %name,
                quantity = item.quantity.get(),
                reserved_before = reserved - i64::from(item.quantity.get()),
                reserved_after = reserved,
                available_after = quantity - reserved,
                "stock reserved"
            );
        }
        let names: Vec<String> = held.into_iter().map(|(name, _, _)| name).collect();
        // Once the order's row exists, its lines, its history, its event and
        // the savepoint's release do not depend on each other: sent together,
        // they cost one round trip (tokio-postgres pipelines concurrent
        // statements).
        insert_order_row(tx, request, OrderStatus::Reserved, None, now).await?;
        let (_, order, ()) = tokio::try_join!(
            async {
                tx.batch_execute("RELEASE SAVEPOINT holds")
                    .await
                    .map_err(Failure::from)
            },
            insert_order_details(tx, request, &names, OrderStatus::Reserved, None, now),
            write_event(
                tx,
                EventKind::OrderReserved,
                &request.order_id,
                1,
                request.items.total_units(),
                now,
            ),
        )?;
        ReserveOutcome::Reserved { order }
    };

    if let Some(key) = &request.idempotency_key {
        let json =
            serde_json::to_string(&outcome).map_err(|error| inconsistent(error.to_string()))?;
        execute(
            tx,
            "UPDATE idempotency_keys SET result_json = $2 WHERE key = $1",
            &[key, &json],
        )
        .await?;
    }
    Ok(ReserveResult {
        replayed: false,
        outcome,
    })
}

/// The stock of the named products, by product key.
async fn stock_by_key(
    tx: &Transaction<'_>,
    keys: &[String],
) -> Result<HashMap<String, InventoryItem>, Failure> {
    let rows = query(
        tx,
        &format!(
            "SELECT product_key, {INVENTORY_COLUMNS} FROM inventory WHERE product_key = ANY($1)"
        ),
        &[&keys],
    )
    .await?;
    let mut stock = HashMap::with_capacity(rows.len());
    for row in &rows {
        let key: String = row.try_get(0)?;
        let quantity: i64 = row.try_get(2)?;
        let reserved: i64 = row.try_get(3)?;
        stock.insert(
            key,
            InventoryItem {
                product_name: row.try_get(1)?,
                quantity,
                reserved_quantity: reserved,
                available: quantity - reserved,
                sold: row.try_get(4)?,
                received: row.try_get(5)?,
            },
        );
    }
    Ok(stock)
}

/// Inserts a new order's row at version 1. Alone and first, so that a taken
/// order id is found before anything else of the order is written.
async fn insert_order_row(
    tx: &Transaction<'_>,
    request: &ReserveRequest,
    status: OrderStatus,
    reason: Option<&str>,
    now: i64,
) -> Result<(), Failure> {
    let inserted = execute(
        tx,
        "INSERT INTO orders (id, customer_id, status, reason, payment_status, version,
                             created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, $4, 'none', 1, $5, $5)
         ON CONFLICT (id) DO NOTHING",
        &[
            &request.order_id,
            &request.customer_id.as_str(),
            &status.as_str(),
            &reason,
            &now,
        ],
    )
    .await?;
    if inserted == 0 {
        return Err(Failure::Storage(StorageError::Invalid(format!(
            "order id {} is already taken",
            request.order_id
        ))));
    }
    Ok(())
}

/// Inserts the lines and the first history entry of an order whose row
/// exists, and returns its document, built here rather than read back. The
/// two inserts are independent and sent together (pipelined).
async fn insert_order_details(
    tx: &Transaction<'_>,
    request: &ReserveRequest,
    product_names: &[String],
    status: OrderStatus,
    reason: Option<&str>,
    now: i64,
) -> Result<Order, Failure> {
    let keys: Vec<String> = request
        .items
        .iter()
        .map(|item| item.product.key())
        .collect();
    let quantities: Vec<i64> = request
        .items
        .iter()
        .map(|item| i64::from(item.quantity.get()))
        .collect();
    let names = product_names.to_vec();
    let item_params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&request.order_id, &keys, &names, &quantities];
    tokio::try_join!(
        execute(
            tx,
            "INSERT INTO order_items (order_id, product_key, product_name, quantity)
             SELECT $1, wanted.product_key, wanted.product_name, wanted.quantity
             FROM unnest($2::text[], $3::text[], $4::bigint[])
                  AS wanted (product_key, product_name, quantity)",
            &item_params,
        ),
        append_history(tx, &request.order_id, 1, status, reason, now),
    )?;
    let at = format_time(now);
    Ok(Order {
        id: request.order_id.clone(),
        customer_id: request.customer_id.as_str().to_owned(),
        status,
        reason: reason.map(str::to_owned),
        payment_status: PaymentStatus::None,
        version: 1,
        created_at: at.clone(),
        updated_at: at.clone(),
        items: request
            .items
            .iter()
            .zip(product_names)
            .map(|(item, name)| OrderLine {
                product: ProductRef { name: name.clone() },
                quantity: item.quantity.get(),
            })
            .collect(),
        history: vec![HistoryEntry {
            version: 1,
            status,
            reason: reason.map(str::to_owned),
            at,
        }],
    })
}

async fn append_history(
    tx: &Transaction<'_>,
    order_id: &str,
    version: i64,
    status: OrderStatus,
    reason: Option<&str>,
    now: i64,
) -> Result<(), Failure> {
    execute(
        tx,
        "INSERT INTO order_history (order_id, version, status, reason, at_ms)
         VALUES ($1, $2, $3, $4, $5)",
        &[&order_id, &version, &status.as_str(), &reason, &now],
    )
    .await?;
    Ok(())
}

/// Writes one event to the outbox and queues it for the consumer of its
/// kind. The event id has the SQLite backend's form, `kind:order:version`.
async fn write_event(
    tx: &Transaction<'_>,
    kind: EventKind,
    order_id: &str,
    order_version: i64,
    total_units: u64,
    now: i64,
) -> Result<(), Failure> {
    let event_id = format!("{}:{}:{}", kind.as_str(), order_id, order_version);
    execute(
        tx,
        "WITH event AS (
             INSERT INTO outbox (event_id, kind, order_id, order_version, total_units,
                                 occurred_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING seq
         )
         INSERT INTO deliveries (consumer, seq) SELECT $7, seq FROM event",
        &[
            &event_id,
            &kind.as_str(),
            &order_id,
            &order_version,
            &(total_units as i64),
            &now,
            &kind.consumer(),
        ],
    )
    .await?;
    Ok(())
}

async fn load_order(tx: &Transaction<'_>, order_id: &str) -> Result<Order, Failure> {
    read::order(tx, order_id)
        .await?
        .ok_or_else(|| inconsistent(format!("order {order_id} vanished")))
}

/// The fields of an order that decide what may happen to it next.
struct OrderState {
    status: OrderStatus,
    payment_status: PaymentStatus,
    version: i64,
}

/// Reads an order's state and locks its row until the transaction ends, so
/// the decision made on this state cannot be overtaken by another instance.
async fn order_state(tx: &Transaction<'_>, order_id: &str) -> Result<Option<OrderState>, Failure> {
    let Some(row) = query_opt(
        tx,
        "SELECT status, payment_status, version FROM orders WHERE id = $1 FOR UPDATE",
        &[&order_id],
    )
    .await?
    else {
        return Ok(None);
    };
    let status: String = row.try_get(0)?;
    let payment_status: String = row.try_get(1)?;
    Ok(Some(OrderState {
        status: status.parse().map_err(inconsistent)?,
        payment_status: payment_status.parse().map_err(inconsistent)?,
        version: row.try_get(2)?,
    }))
}

/// Moves an order to its next version, conditional on the version it was read
/// at (optimistic locking), and appends the change to its history.
async fn update_order(
    tx: &Transaction<'_>,
    order_id: &str,
    state: &OrderState,
    status: OrderStatus,
    payment_status: PaymentStatus,
    reason: Option<&str>,
    now: i64,
) -> Result<i64, Failure> {
    if status != state.status {
        state
            .status
            .transition_to(status)
            .map_err(|error| inconsistent(error.to_string()))?;
    }
    let changed = execute(
        tx,
        "UPDATE orders SET status = $1, payment_status = $2,
                reason = CASE WHEN $7::boolean THEN $3::text ELSE reason END,
                version = version + 1, updated_at_ms = $4
         WHERE id = $5 AND version = $6",
        &[
            &status.as_str(),
            &payment_status.as_str(),
            &reason,
            &now,
            &order_id,
            &state.version,
            // The order's own reason says why it ended; a payment note goes
            // to the history only.
            &(status != state.status),
        ],
    )
    .await?;
    if changed != 1 {
        return Err(inconsistent(format!(
            "order {order_id} changed under a version check"
        )));
    }
    let version = state.version + 1;
    append_history(tx, order_id, version, status, reason, now).await?;
    Ok(version)
}

/// Records that `consumer` handled `event_id`. Returns false when it had
/// already, in which case the caller must not apply the effect again. A
/// concurrent transaction recording the same event makes this insert wait
/// until it ends, so exactly one of them sees `true`.
async fn first_time(tx: &Transaction<'_>, consumer: &str, event_id: &str) -> Result<bool, Failure> {
    let inserted = execute(
        tx,
        "INSERT INTO processed_events (consumer, event_id, at_ms) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        &[&consumer, &event_id, &now_ms()],
    )
    .await?;
    Ok(inserted == 1)
}

fn effect(order_id: &str, outcome: EffectOutcome, status: Option<OrderStatus>) -> EffectResult {
    EffectResult {
        order_id: order_id.to_owned(),
        outcome,
        status,
    }
}

/// An order's items as (product key, product name, units), in lock order.
async fn order_units(
    tx: &Transaction<'_>,
    order_id: &str,
) -> Result<Vec<(String, String, i64)>, Failure> {
    query(
        tx,
        "SELECT product_key, product_name, quantity FROM order_items WHERE order_id = $1
         ORDER BY product_key",
        &[&order_id],
    )
    .await?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
    .collect()
}

pub(crate) async fn record_payment(
    tx: &Transaction<'_>,
    payment: &PaymentRecord,
) -> Result<EffectResult, Failure> {
    let Some(state) = order_state(tx, &payment.order_id).await? else {
        return Ok(effect(&payment.order_id, EffectOutcome::UnknownOrder, None));
    };
    if !first_time(tx, CONSUMER_PAYMENT, &payment.event_id).await? {
        return Ok(effect(
            &payment.order_id,
            EffectOutcome::Duplicate,
            Some(state.status),
        ));
    }
    if state.status != OrderStatus::Reserved || state.payment_status != PaymentStatus::None {
        // The reservation expired or was cancelled before the payment was
        // recorded: the authorisation is voided and nothing is charged.
        return Ok(effect(
            &payment.order_id,
            EffectOutcome::NotApplicable,
            Some(state.status),
        ));
    }
    let now = now_ms();
    let (payment_status, kind, reason) = if payment.approved {
        (
            PaymentStatus::Charged,
            EventKind::PaymentSucceeded,
            "payment_charged",
        )
    } else {
        (
            PaymentStatus::Declined,
            EventKind::PaymentFailed,
            "payment_declined",
        )
    };
    let version = update_order(
        tx,
        &payment.order_id,
        &state,
        OrderStatus::Reserved,
        payment_status,
        Some(reason),
        now,
    )
    .await?;
    let units: i64 = order_units(tx, &payment.order_id)
        .await?
        .iter()
        .map(|(_, _, quantity)| quantity)
        .sum();
    write_event(tx, kind, &payment.order_id, version, units as u64, now).await?;
    tracing::info!(operation = "payment", order_id = %payment.order_id, approved = payment.approved, "payment recorded");
    Ok(effect(
        &payment.order_id,
        EffectOutcome::Applied,
        Some(OrderStatus::Reserved),
    ))
}

pub(crate) async fn settle(
    tx: &Transaction<'_>,
    settlement: &Settlement,
) -> Result<EffectResult, Failure> {
    let Some(state) = order_state(tx, &settlement.order_id).await? else {
        return Ok(effect(
            &settlement.order_id,
            EffectOutcome::UnknownOrder,
            None,
        ));
    };
    if !first_time(tx, CONSUMER_INVENTORY, &settlement.event_id).await? {
        return Ok(effect(
            &settlement.order_id,
            EffectOutcome::Duplicate,
            Some(state.status),
        ));
    }
    if state.status != OrderStatus::Reserved {
        return Ok(effect(
            &settlement.order_id,
            EffectOutcome::NotApplicable,
            Some(state.status),
        ));
    }
    let now = now_ms();
    match settlement.action {
        SettlementAction::Commit => {
            if state.payment_status != PaymentStatus::Charged {
                return Ok(effect(
                    &settlement.order_id,
                    EffectOutcome::NotApplicable,
                    Some(state.status),
                ));
            }
            move_stock(tx, &settlement.order_id, StockMove::Commit).await?;
            update_order(
                tx,
                &settlement.order_id,
                &state,
                OrderStatus::Fulfilled,
                state.payment_status,
                None,
                now,
            )
            .await?;
            Ok(effect(
                &settlement.order_id,
                EffectOutcome::Applied,
                Some(OrderStatus::Fulfilled),
            ))
        }
        SettlementAction::Release => {
            if state.payment_status == PaymentStatus::Charged {
                return Ok(effect(
                    &settlement.order_id,
                    EffectOutcome::NotApplicable,
                    Some(state.status),
                ));
            }
            move_stock(
                tx,
                &settlement.order_id,
                StockMove::Release(ReleaseReason::PaymentDeclined.as_str()),
            )
            .await?;
            update_order(
                tx,
                &settlement.order_id,
                &state,
                OrderStatus::Cancelled,
                state.payment_status,
                Some(ReleaseReason::PaymentDeclined.as_str()),
                now,
            )
            .await?;
            Ok(effect(
                &settlement.order_id,
                EffectOutcome::Applied,
                Some(OrderStatus::Cancelled),
            ))
        }
    }
}

#[derive(Clone, Copy)]
enum StockMove<'a> {
    /// Sold: on hand and reserved both drop.
    Commit,
    /// Back on sale: reserved drops.
    Release(&'a str),
}

async fn move_stock(
    tx: &Transaction<'_>,
    order_id: &str,
    kind: StockMove<'_>,
) -> Result<(), Failure> {
    // RETURNING gives the figures after the change, from which the log's
    // "before" follows without a second read.
    let sql = match kind {
        StockMove::Commit => {
            "UPDATE inventory SET quantity = quantity - $1, reserved = reserved - $1,
                    sold = sold + $1
             WHERE product_key = $2 AND reserved >= $1
             RETURNING quantity, reserved"
        }
        StockMove::Release(_) => {
            "UPDATE inventory SET reserved = reserved - $1
             WHERE product_key = $2 AND reserved >= $1
             RETURNING quantity, reserved"
        }
    };
    for (key, name, quantity) in order_units(tx, order_id).await? {
        let Some(row) = query_opt(tx, sql, &[&quantity, &key]).await? else {
            return Err(inconsistent(format!(
                "order {order_id} holds {quantity} {name} but the stock does not show them reserved"
            )));
        };
        let on_hand_after: i64 = row.try_get(0)?;
        let reserved_after: i64 = row.try_get(1)?;
        match kind {
            StockMove::Commit => tracing::info!(
                operation = "commit",
                order_id,
                product = %name,
                quantity,
                on_hand_before = on_hand_after + quantity,
                on_hand_after,
                reserved_before = reserved_after + quantity,
                reserved_after,
                "reservation committed"
            ),
            StockMove::Release(reason) => tracing::info!(
                operation = "release",
                order_id,
                product = %name,
                quantity,
                reason,
                reserved_before = reserved_after + quantity,
                reserved_after,
                "reservation released"
            ),
        }
    }
    Ok(())
}

pub(crate) async fn release(
    tx: &Transaction<'_>,
    order_id: &str,
    reason: ReleaseReason,
) -> Result<ReleaseOutcome, Failure> {
    let Some(state) = order_state(tx, order_id).await? else {
        return Ok(ReleaseOutcome::UnknownOrder);
    };
    match state.status {
        OrderStatus::Cancelled => {
            return Ok(ReleaseOutcome::AlreadyCancelled(
                load_order(tx, order_id).await?,
            ));
        }
        OrderStatus::Reserved if state.payment_status != PaymentStatus::Charged => {}
        _ => {
            return Ok(ReleaseOutcome::NotCancellable(
                load_order(tx, order_id).await?,
            ));
        }
    }
    move_stock(tx, order_id, StockMove::Release(reason.as_str())).await?;
    update_order(
        tx,
        order_id,
        &state,
        OrderStatus::Cancelled,
        state.payment_status,
        Some(reason.as_str()),
        now_ms(),
    )
    .await?;
    Ok(ReleaseOutcome::Released(load_order(tx, order_id).await?))
}

pub(crate) async fn expire(
    tx: &Transaction<'_>,
    older_than_ms: u64,
    max_orders: u32,
) -> Result<Vec<String>, Failure> {
    let cutoff = now_ms() - older_than_ms.min(i64::MAX as u64) as i64;
    // SKIP LOCKED lets several instances expire at once: each takes the
    // orders no other transaction is working on, instead of queueing behind
    // them. The rows stay locked until this transaction ends.
    let ids: Vec<String> = query(
        tx,
        "SELECT id FROM orders
         WHERE status = 'reserved' AND payment_status <> 'charged' AND created_at_ms <= $1
         ORDER BY created_at_ms, id LIMIT $2
         FOR UPDATE SKIP LOCKED",
        &[&cutoff, &i64::from(max_orders)],
    )
    .await?
    .iter()
    .map(|row| row.try_get(0))
    .collect::<Result<_, _>>()?;
    let mut expired = Vec::with_capacity(ids.len());
    for id in ids {
        if let ReleaseOutcome::Released(_) =
            release(tx, &id, ReleaseReason::ReservationExpired).await?
        {
            expired.push(id);
        }
    }
    Ok(expired)
}

pub(crate) async fn lease_events(
    tx: &Transaction<'_>,
    consumer: &str,
    max_events: u32,
    lease_ms: u64,
) -> Result<Vec<Delivery>, Failure> {
    let now = now_ms();
    let max_attempts = MAX_DELIVERY_ATTEMPTS as i32;
    // Events handed out too often without an acknowledgement are poison:
    // move them aside so they stop blocking the rest. SKIP LOCKED keeps two
    // leasers from waiting on each other's rows in opposite orders.
    let dead = execute(
        tx,
        "WITH doomed AS (
             SELECT consumer, seq FROM deliveries
             WHERE consumer = $1 AND attempts >= $2 AND leased_until_ms <= $3
             FOR UPDATE SKIP LOCKED
         ), removed AS (
             DELETE FROM deliveries
             USING doomed
             WHERE deliveries.consumer = doomed.consumer AND deliveries.seq = doomed.seq
             RETURNING deliveries.consumer, deliveries.seq, deliveries.attempts
         )
         INSERT INTO dead_letters (consumer, seq, attempts, at_ms)
         SELECT consumer, seq, attempts, $3 FROM removed
         ON CONFLICT DO NOTHING",
        &[&consumer, &max_attempts, &now],
    )
    .await?;
    if dead > 0 {
        tracing::warn!(
            consumer,
            count = dead,
            "events dead-lettered after too many attempts"
        );
    }
    let leased_until = now.saturating_add(lease_ms.min(i64::MAX as u64) as i64);
    // Pick and lease in one statement. A row another leaser has locked is
    // skipped, not waited for, so concurrent leasers never receive the same
    // delivery while it is leased.
    let rows = query(
        tx,
        "WITH picked AS (
             SELECT consumer, seq FROM deliveries
             WHERE consumer = $1 AND leased_until_ms <= $2 AND attempts < $3
             ORDER BY seq LIMIT $4
             FOR UPDATE SKIP LOCKED
         ), leased AS (
             UPDATE deliveries SET attempts = deliveries.attempts + 1, leased_until_ms = $5
             FROM picked
             WHERE deliveries.consumer = picked.consumer AND deliveries.seq = picked.seq
             RETURNING deliveries.seq, deliveries.attempts
         )
         SELECT leased.seq, leased.attempts, outbox.event_id, outbox.kind, outbox.order_id,
                outbox.order_version, outbox.total_units, outbox.occurred_at_ms
         FROM leased JOIN outbox ON outbox.seq = leased.seq
         ORDER BY leased.seq",
        &[
            &consumer,
            &now,
            &max_attempts,
            &i64::from(max_events),
            &leased_until,
        ],
    )
    .await?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in &rows {
        let attempt: i32 = row.try_get(1)?;
        let kind: String = row.try_get(3)?;
        let total_units: i64 = row.try_get(6)?;
        deliveries.push(Delivery {
            delivery_id: row.try_get(0)?,
            attempt: attempt as u32,
            event: Event {
                event_id: row.try_get(2)?,
                kind: kind.parse().map_err(inconsistent)?,
                order_id: row.try_get(4)?,
                order_version: row.try_get(5)?,
                occurred_at: format_time(row.try_get(7)?),
                total_units: total_units as u64,
            },
        });
    }
    Ok(deliveries)
}

pub(crate) async fn acknowledge_events(
    tx: &Transaction<'_>,
    consumer: &str,
    delivery_ids: &[i64],
) -> Result<(), Failure> {
    execute(
        tx,
        "DELETE FROM deliveries WHERE consumer = $1 AND seq = ANY($2)",
        &[&consumer, &delivery_ids],
    )
    .await?;
    Ok(())
}
