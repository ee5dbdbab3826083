//! The writer thread: every change to the database happens here, in batches.

use rusqlite::{Connection, OptionalExtension, params};
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
use tokio::sync::{mpsc, oneshot};

use crate::{WriterConfig, format_time, now_ms, read, unavailable};

pub struct WriteJob {
    pub command: WriteCommand,
    pub reply: oneshot::Sender<Result<WriteReply, StorageError>>,
}

#[derive(Debug)]
pub enum WriteCommand {
    InitializeStock(Vec<StockLine>),
    Restock(ProductName, u64),
    Reserve(Vec<ReserveRequest>),
    RecordPayments(Vec<PaymentRecord>),
    Settle(Vec<Settlement>),
    Release(String, ReleaseReason),
    Expire {
        older_than_ms: u64,
        max_orders: u32,
    },
    LeaseEvents {
        consumer: String,
        max_events: u32,
        lease_ms: u64,
    },
    AcknowledgeEvents {
        consumer: String,
        delivery_ids: Vec<i64>,
    },
    /// Finish the queued jobs, then stop.
    Shutdown,
}

#[derive(Debug)]
pub enum WriteReply {
    Loaded(bool),
    Item(InventoryItem),
    Reserved(Vec<ReserveResult>),
    Effects(Vec<EffectResult>),
    Release(ReleaseOutcome),
    Expired(Vec<String>),
    Deliveries(Vec<Delivery>),
    Done,
}

/// Runs until every sender is gone or a shutdown job arrives.
pub fn run_writer(
    mut connection: Connection,
    mut receiver: mpsc::Receiver<WriteJob>,
    config: WriterConfig,
) {
    let mut batch: Vec<WriteJob> = Vec::with_capacity(config.max_batch);
    loop {
        let Some(first) = receiver.blocking_recv() else {
            break;
        };
        batch.push(first);
        while batch.len() < config.max_batch {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let stop = batch
            .iter()
            .any(|job| matches!(job.command, WriteCommand::Shutdown));
        apply_batch(&mut connection, &mut batch);
        if stop {
            break;
        }
    }
    // Dropping the connection closes the database; SQLite checkpoints the WAL
    // into the main file when its last connection closes.
    drop(connection);
}

/// Applies every job of the batch in one transaction, then answers each
/// caller. A caller hears success only after the commit is on disk.
fn apply_batch(connection: &mut Connection, batch: &mut Vec<WriteJob>) {
    let transaction =
        match connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(transaction) => transaction,
            Err(error) => {
                let message = error.to_string();
                for job in batch.drain(..) {
                    let _ = job
                        .reply
                        .send(Err(StorageError::Unavailable(message.clone())));
                }
                return;
            }
        };
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch.iter() {
        answers.push(apply_in_savepoint(&transaction, &job.command));
    }
    let commit = transaction.commit();
    for (job, answer) in batch.drain(..).zip(answers) {
        let answer = match &commit {
            Ok(()) => answer,
            Err(error) => Err(StorageError::Unavailable(format!("commit failed: {error}"))),
        };
        let _ = job.reply.send(answer);
    }
}

fn apply_in_savepoint(
    connection: &Connection,
    command: &WriteCommand,
) -> Result<WriteReply, StorageError> {
    connection
        .execute_batch("SAVEPOINT job")
        .map_err(unavailable)?;
    let result = apply(connection, command);
    let end = if result.is_ok() {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    connection.execute_batch(end).map_err(unavailable)?;
    result
}

fn apply(connection: &Connection, command: &WriteCommand) -> Result<WriteReply, StorageError> {
    match command {
        WriteCommand::InitializeStock(lines) => initialize_stock(connection, lines),
        WriteCommand::Restock(product, quantity) => restock(connection, product, *quantity),
        WriteCommand::Reserve(requests) => {
            let mut results = Vec::with_capacity(requests.len());
            for request in requests {
                results.push(reserve_in_savepoint(connection, request)?);
            }
            Ok(WriteReply::Reserved(results))
        }
        WriteCommand::RecordPayments(payments) => {
            let mut results = Vec::with_capacity(payments.len());
            for payment in payments {
                results.push(record_payment(connection, payment)?);
            }
            Ok(WriteReply::Effects(results))
        }
        WriteCommand::Settle(settlements) => {
            let mut results = Vec::with_capacity(settlements.len());
            for settlement in settlements {
                results.push(settle(connection, settlement)?);
            }
            Ok(WriteReply::Effects(results))
        }
        WriteCommand::Release(order_id, reason) => {
            release(connection, order_id, *reason).map(WriteReply::Release)
        }
        WriteCommand::Expire {
            older_than_ms,
            max_orders,
        } => expire(connection, *older_than_ms, *max_orders),
        WriteCommand::LeaseEvents {
            consumer,
            max_events,
            lease_ms,
        } => lease_events(connection, consumer, *max_events, *lease_ms),
        WriteCommand::AcknowledgeEvents {
            consumer,
            delivery_ids,
        } => {
            // One statement for the whole batch: the ids travel as a JSON
            // array, unpacked by SQLite's json_each.
            let ids = serde_json::to_string(delivery_ids)
                .map_err(|error| StorageError::Inconsistent(error.to_string()))?;
            connection
                .prepare_cached(
                    "DELETE FROM deliveries
                     WHERE consumer = ?1 AND seq IN (SELECT value FROM json_each(?2))",
                )
                .map_err(unavailable)?
                .execute(params![consumer, ids])
                .map_err(unavailable)?;
            Ok(WriteReply::Done)
        }
        WriteCommand::Shutdown => Ok(WriteReply::Done),
    }
}

fn initialize_stock(
    connection: &Connection,
    lines: &[StockLine],
) -> Result<WriteReply, StorageError> {
    let loaded: Option<String> = connection
        .query_row(
            "SELECT value FROM meta WHERE key = 'stock_loaded'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(unavailable)?;
    if loaded.is_some() {
        return Ok(WriteReply::Loaded(false));
    }
    for line in lines {
        check_stock_limit(line.quantity)?;
        connection
            .execute(
                "INSERT INTO inventory (product_key, product_name, quantity, reserved, sold, received)
                 VALUES (?1, ?2, ?3, 0, 0, ?3)
                 ON CONFLICT (product_key) DO UPDATE SET
                    quantity = quantity + excluded.quantity,
                    received = received + excluded.quantity",
                params![line.product_name.key(), line.product_name.as_str(), line.quantity as i64],
            )
            .map_err(unavailable)?;
    }
    connection
        .execute(
            "INSERT INTO meta (key, value) VALUES ('stock_loaded', ?1)",
            [format_time(now_ms())],
        )
        .map_err(unavailable)?;
    Ok(WriteReply::Loaded(true))
}

fn check_stock_limit(quantity: u64) -> Result<(), StorageError> {
    if quantity > MAX_STOCK_PER_PRODUCT {
        return Err(StorageError::Invalid(format!(
            "stock of one product may not exceed {MAX_STOCK_PER_PRODUCT} units"
        )));
    }
    Ok(())
}

fn restock(
    connection: &Connection,
    product: &ProductName,
    quantity: u64,
) -> Result<WriteReply, StorageError> {
    check_stock_limit(quantity)?;
    let before = read::inventory_item(connection, &product.key())?;
    if let Some(before) = &before
        && before.quantity as u64 + quantity > MAX_STOCK_PER_PRODUCT
    {
        return Err(StorageError::Invalid(format!(
            "stock of one product may not exceed {MAX_STOCK_PER_PRODUCT} units"
        )));
    }
    connection
        .execute(
            "INSERT INTO inventory (product_key, product_name, quantity, reserved, sold, received)
             VALUES (?1, ?2, ?3, 0, 0, ?3)
             ON CONFLICT (product_key) DO UPDATE SET
                quantity = quantity + excluded.quantity,
                received = received + excluded.quantity",
            params![product.key(), product.as_str(), quantity as i64],
        )
        .map_err(unavailable)?;
    let after = read::inventory_item(connection, &product.key())?
        .ok_or_else(|| StorageError::Inconsistent("restocked product vanished".into()))?;
    tracing::info!(
        operation = "restock",
        product = %after.product_name,
        quantity,
        on_hand_before = before.as_ref().map_or(0, |item| item.quantity),
        on_hand_after = after.quantity,
        "inventory restocked"
    );
    Ok(WriteReply::Item(after))
}

fn reserve_in_savepoint(
    connection: &Connection,
    request: &ReserveRequest,
) -> Result<ReserveResult, StorageError> {
    connection
        .execute_batch("SAVEPOINT reservation")
        .map_err(unavailable)?;
    let result = reserve(connection, request);
    let end = match &result {
        Ok(result) if !matches!(result.outcome, ReserveOutcome::UnknownProduct { .. }) => {
            "RELEASE reservation"
        }
        _ => "ROLLBACK TO reservation; RELEASE reservation",
    };
    connection.execute_batch(end).map_err(unavailable)?;
    result
}

/// Reserves every item of one order or none, creates the order, and writes
/// `OrderReserved` to the outbox, all inside the caller's transaction.
fn reserve(
    connection: &Connection,
    request: &ReserveRequest,
) -> Result<ReserveResult, StorageError> {
    if let Some(key) = &request.idempotency_key {
        let stored: Option<(Option<String>, String)> = connection
            .prepare_cached("SELECT fingerprint, result_json FROM idempotency_keys WHERE key = ?1")
            .map_err(unavailable)?
            .query_row([key], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
            .map_err(unavailable)?;
        if let Some((fingerprint, result_json)) = stored {
            if fingerprint != request.request_fingerprint {
                return Ok(ReserveResult {
                    replayed: false,
                    outcome: ReserveOutcome::IdempotencyKeyReused,
                });
            }
            let outcome: ReserveOutcome = serde_json::from_str(&result_json).map_err(|error| {
                StorageError::Inconsistent(format!("stored idempotent result unreadable: {error}"))
            })?;
            return Ok(ReserveResult {
                replayed: true,
                outcome,
            });
        }
    }

    // The decision is the conditional UPDATE: check and hold in one
    // statement. RETURNING gives the figures after the hold, for the log and
    // the order's line names, without a separate read.
    let mut held = Vec::with_capacity(request.items.len());
    {
        let mut hold = connection
            .prepare_cached(
                "UPDATE inventory SET reserved = reserved + ?1
                 WHERE product_key = ?2 AND quantity - reserved >= ?1
                 RETURNING product_name, quantity, reserved",
            )
            .map_err(unavailable)?;
        for item in request.items.iter() {
            let after = hold
                .query_row(params![item.quantity.get(), item.product.key()], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })
                .optional()
                .map_err(unavailable)?;
            match after {
                Some(after) => held.push(after),
                None => break,
            }
        }
    }
    let short = held.len() < request.items.len();
    let now = now_ms();

    let outcome = if short {
        // Undo the items already held: all or nothing. Then read every item,
        // to tell an unknown product from a short one and to report shortages.
        connection
            .execute_batch("ROLLBACK TO reservation")
            .map_err(unavailable)?;
        let mut stocks = Vec::with_capacity(request.items.len());
        for item in request.items.iter() {
            match read::inventory_item(connection, &item.product.key())? {
                Some(stock) => stocks.push(stock),
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
        let names: Vec<&str> = stocks
            .iter()
            .map(|stock| stock.product_name.as_str())
            .collect();
        let order = insert_order(
            connection,
            request,
            &names,
            OrderStatus::Rejected,
            Some("insufficient_stock"),
            now,
        )?;
        let shortages = request
            .items
            .iter()
            .zip(&stocks)
            .filter(|(item, stock)| stock.available < i64::from(item.quantity.get()))
            .map(|(item, stock)| Shortage {
                product_name: stock.product_name.clone(),
                requested: item.quantity.get(),
                available: stock.available,
            })
            .collect();
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
        let names: Vec<&str> = held.iter().map(|(name, _, _)| name.as_str()).collect();
        let order = insert_order(
            connection,
            request,
            &names,
            OrderStatus::Reserved,
            None,
            now,
        )?;
        write_event(
            connection,
            EventKind::OrderReserved,
            &request.order_id,
            1,
            request.items.total_units(),
            now,
        )?;
        ReserveOutcome::Reserved { order }
    };

    if let Some(key) = &request.idempotency_key {
        let json = serde_json::to_string(&outcome)
            .map_err(|error| StorageError::Inconsistent(error.to_string()))?;
        connection
            .prepare_cached(
                "INSERT INTO idempotency_keys (key, fingerprint, result_json, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(unavailable)?
            .execute(params![key, request.request_fingerprint, json, now])
            .map_err(unavailable)?;
    }
    Ok(ReserveResult {
        replayed: false,
        outcome,
    })
}

/// Inserts a new order at version 1 with its lines and first history entry,
/// and returns its document (built here rather than read back: the writer's
/// time is the flash sale's bottleneck).
fn insert_order(
    connection: &Connection,
    request: &ReserveRequest,
    product_names: &[&str],
    status: OrderStatus,
    reason: Option<&str>,
    now: i64,
) -> Result<Order, StorageError> {
    let inserted = connection
        .prepare_cached(
            "INSERT INTO orders (id, customer_id, status, reason, payment_status, version,
                                 created_at_ms, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, 'none', 1, ?5, ?5)
             ON CONFLICT (id) DO NOTHING",
        )
        .map_err(unavailable)?
        .execute(params![
            request.order_id,
            request.customer_id.as_str(),
            status.as_str(),
            reason,
            now
        ])
        .map_err(unavailable)?;
    if inserted == 0 {
        return Err(StorageError::Invalid(format!(
            "order id {} is already taken",
            request.order_id
        )));
    }
    let mut item_statement = connection
        .prepare_cached(
            "INSERT INTO order_items (order_id, product_key, product_name, quantity)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(unavailable)?;
    let mut lines = Vec::with_capacity(request.items.len());
    for (item, name) in request.items.iter().zip(product_names) {
        item_statement
            .execute(params![
                request.order_id,
                item.product.key(),
                name,
                item.quantity.get()
            ])
            .map_err(unavailable)?;
        lines.push(OrderLine {
            product: ProductRef {
                name: (*name).to_owned(),
            },
            quantity: item.quantity.get(),
        });
    }
    append_history(connection, &request.order_id, 1, status, reason, now)?;
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
        items: lines,
        history: vec![HistoryEntry {
            version: 1,
            status,
            reason: reason.map(str::to_owned),
            at,
        }],
    })
}

fn append_history(
    connection: &Connection,
    order_id: &str,
    version: i64,
    status: OrderStatus,
    reason: Option<&str>,
    now: i64,
) -> Result<(), StorageError> {
    connection
        .prepare_cached(
            "INSERT INTO order_history (order_id, version, status, reason, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(unavailable)?
        .execute(params![order_id, version, status.as_str(), reason, now])
        .map_err(unavailable)?;
    Ok(())
}

fn write_event(
    connection: &Connection,
    kind: EventKind,
    order_id: &str,
    order_version: i64,
    total_units: u64,
    now: i64,
) -> Result<(), StorageError> {
    let event_id = format!("{}:{}:{}", kind.as_str(), order_id, order_version);
    connection
        .prepare_cached(
            "INSERT INTO outbox (event_id, kind, order_id, order_version, total_units,
                                 occurred_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(unavailable)?
        .execute(params![
            event_id,
            kind.as_str(),
            order_id,
            order_version,
            total_units as i64,
            now
        ])
        .map_err(unavailable)?;
    let seq = connection.last_insert_rowid();
    connection
        .prepare_cached("INSERT INTO deliveries (consumer, seq) VALUES (?1, ?2)")
        .map_err(unavailable)?
        .execute(params![kind.consumer(), seq])
        .map_err(unavailable)?;
    Ok(())
}

fn load_order(connection: &Connection, order_id: &str) -> Result<Order, StorageError> {
    read::order(connection, order_id)?
        .ok_or_else(|| StorageError::Inconsistent(format!("order {order_id} vanished")))
}

/// The fields of an order that decide what may happen to it next.
struct OrderState {
    status: OrderStatus,
    payment_status: PaymentStatus,
    version: i64,
}

fn order_state(
    connection: &Connection,
    order_id: &str,
) -> Result<Option<OrderState>, StorageError> {
    let row: Option<(String, String, i64)> = connection
        .prepare_cached("SELECT status, payment_status, version FROM orders WHERE id = ?1")
        .map_err(unavailable)?
        .query_row([order_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()
        .map_err(unavailable)?;
    let Some((status, payment_status, version)) = row else {
        return Ok(None);
    };
    Ok(Some(OrderState {
        status: status.parse().map_err(StorageError::Inconsistent)?,
        payment_status: payment_status.parse().map_err(StorageError::Inconsistent)?,
        version,
    }))
}

/// Moves an order to its next version, conditional on the version it was read
/// at (optimistic locking), and appends the change to its history.
fn update_order(
    connection: &Connection,
    order_id: &str,
    state: &OrderState,
    status: OrderStatus,
    payment_status: PaymentStatus,
    reason: Option<&str>,
    now: i64,
) -> Result<i64, StorageError> {
    if status != state.status {
        state
            .status
            .transition_to(status)
            .map_err(|error| StorageError::Inconsistent(error.to_string()))?;
    }
    let changed = connection
        .prepare_cached(
            "UPDATE orders SET status = ?1, payment_status = ?2,
                    reason = CASE WHEN ?7 THEN ?3 ELSE reason END,
                    version = version + 1, updated_at_ms = ?4
             WHERE id = ?5 AND version = ?6",
        )
        .map_err(unavailable)?
        .execute(params![
            status.as_str(),
            payment_status.as_str(),
            reason,
            now,
            order_id,
            state.version,
            // The order's own reason says why it ended; a payment note goes
            // to the history only.
            status != state.status
        ])
        .map_err(unavailable)?;
    if changed != 1 {
        return Err(StorageError::Inconsistent(format!(
            "order {order_id} changed under a version check"
        )));
    }
    let version = state.version + 1;
    append_history(connection, order_id, version, status, reason, now)?;
    Ok(version)
}

/// Records that `consumer` handled `event_id`. Returns false when it had
/// already, in which case the caller must not apply the effect again.
fn first_time(
    connection: &Connection,
    consumer: &str,
    event_id: &str,
) -> Result<bool, StorageError> {
    let inserted = connection
        .prepare_cached(
            "INSERT INTO processed_events (consumer, event_id, at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )
        .map_err(unavailable)?
        .execute(params![consumer, event_id, now_ms()])
        .map_err(unavailable)?;
    Ok(inserted == 1)
}

fn effect(order_id: &str, outcome: EffectOutcome, status: Option<OrderStatus>) -> EffectResult {
    EffectResult {
        order_id: order_id.to_owned(),
        outcome,
        status,
    }
}

fn order_units(
    connection: &Connection,
    order_id: &str,
) -> Result<Vec<(String, String, i64)>, StorageError> {
    connection
        .prepare_cached(
            "SELECT product_key, product_name, quantity FROM order_items WHERE order_id = ?1
             ORDER BY product_key",
        )
        .map_err(unavailable)?
        .query_map([order_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .map_err(unavailable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)
}

fn record_payment(
    connection: &Connection,
    payment: &PaymentRecord,
) -> Result<EffectResult, StorageError> {
    let Some(state) = order_state(connection, &payment.order_id)? else {
        return Ok(effect(&payment.order_id, EffectOutcome::UnknownOrder, None));
    };
    if !first_time(connection, CONSUMER_PAYMENT, &payment.event_id)? {
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
        connection,
        &payment.order_id,
        &state,
        OrderStatus::Reserved,
        payment_status,
        Some(reason),
        now,
    )?;
    let units: i64 = order_units(connection, &payment.order_id)?
        .iter()
        .map(|(_, _, quantity)| quantity)
        .sum();
    write_event(
        connection,
        kind,
        &payment.order_id,
        version,
        units as u64,
        now,
    )?;
    tracing::info!(operation = "payment", order_id = %payment.order_id, approved = payment.approved, "payment recorded");
    Ok(effect(
        &payment.order_id,
        EffectOutcome::Applied,
        Some(OrderStatus::Reserved),
    ))
}

fn settle(connection: &Connection, settlement: &Settlement) -> Result<EffectResult, StorageError> {
    let Some(state) = order_state(connection, &settlement.order_id)? else {
        return Ok(effect(
            &settlement.order_id,
            EffectOutcome::UnknownOrder,
            None,
        ));
    };
    if !first_time(connection, CONSUMER_INVENTORY, &settlement.event_id)? {
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
            move_stock(connection, &settlement.order_id, StockMove::Commit)?;
            update_order(
                connection,
                &settlement.order_id,
                &state,
                OrderStatus::Fulfilled,
                state.payment_status,
                None,
                now,
            )?;
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
                connection,
                &settlement.order_id,
                StockMove::Release("payment_declined"),
            )?;
            update_order(
                connection,
                &settlement.order_id,
                &state,
                OrderStatus::Cancelled,
                state.payment_status,
                Some(ReleaseReason::PaymentDeclined.as_str()),
                now,
            )?;
            Ok(effect(
                &settlement.order_id,
                EffectOutcome::Applied,
                Some(OrderStatus::Cancelled),
            ))
        }
    }
}

enum StockMove<'a> {
    /// Sold: on hand and reserved both drop.
    Commit,
    /// Back on sale: reserved drops.
    Release(&'a str),
}

fn move_stock(
    connection: &Connection,
    order_id: &str,
    kind: StockMove<'_>,
) -> Result<(), StorageError> {
    // RETURNING gives the figures after the move, for the log, without a
    // separate read.
    let sql = match kind {
        StockMove::Commit => {
            "UPDATE inventory SET quantity = quantity - ?1, reserved = reserved - ?1,
                    sold = sold + ?1
             WHERE product_key = ?2 AND reserved >= ?1
             RETURNING quantity, reserved"
        }
        StockMove::Release(_) => {
            "UPDATE inventory SET reserved = reserved - ?1
             WHERE product_key = ?2 AND reserved >= ?1
             RETURNING quantity, reserved"
        }
    };
    for (key, name, quantity) in order_units(connection, order_id)? {
        let after = connection
            .prepare_cached(sql)
            .map_err(unavailable)?
            .query_row(params![quantity, key], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
            })
            .optional()
            .map_err(unavailable)?;
        let Some((on_hand_after, reserved_after)) = after else {
            return Err(StorageError::Inconsistent(format!(
                "order {order_id} holds {quantity} {name} but the stock does not show them reserved"
            )));
        };
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

fn release(
    connection: &Connection,
    order_id: &str,
    reason: ReleaseReason,
) -> Result<ReleaseOutcome, StorageError> {
    let Some(state) = order_state(connection, order_id)? else {
        return Ok(ReleaseOutcome::UnknownOrder);
    };
    match state.status {
        OrderStatus::Cancelled => {
            return Ok(ReleaseOutcome::AlreadyCancelled(load_order(
                connection, order_id,
            )?));
        }
        OrderStatus::Reserved if state.payment_status != PaymentStatus::Charged => {}
        _ => {
            return Ok(ReleaseOutcome::NotCancellable(load_order(
                connection, order_id,
            )?));
        }
    }
    move_stock(connection, order_id, StockMove::Release(reason.as_str()))?;
    update_order(
        connection,
        order_id,
        &state,
        OrderStatus::Cancelled,
        state.payment_status,
        Some(reason.as_str()),
        now_ms(),
    )?;
    Ok(ReleaseOutcome::Released(load_order(connection, order_id)?))
}

fn expire(
    connection: &Connection,
    older_than_ms: u64,
    max_orders: u32,
) -> Result<WriteReply, StorageError> {
    let cutoff = now_ms() - older_than_ms.min(i64::MAX as u64) as i64;
    let ids = connection
        .prepare_cached(
            "SELECT id FROM orders
             WHERE status = 'reserved' AND payment_status != 'charged' AND created_at_ms <= ?1
             ORDER BY created_at_ms LIMIT ?2",
        )
        .map_err(unavailable)?
        .query_map(params![cutoff, max_orders], |row| row.get::<_, String>(0))
        .map_err(unavailable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)?;
    let mut expired = Vec::with_capacity(ids.len());
    for id in ids {
        if let ReleaseOutcome::Released(_) =
            release(connection, &id, ReleaseReason::ReservationExpired)?
        {
            expired.push(id);
        }
    }
    Ok(WriteReply::Expired(expired))
}

fn lease_events(
    connection: &Connection,
    consumer: &str,
    max_events: u32,
    lease_ms: u64,
) -> Result<WriteReply, StorageError> {
    let now = now_ms();
    // Events handed out too often without an acknowledgement are poison:
    // move them aside so they stop blocking the rest.
    // The limit is written into the SQL as a literal so that the partial
    // index `deliveries_poison` (schema.sql) serves these statements, which
    // run on every lease: without it each lease would scan every pending
    // delivery of the consumer.
    const _: () = assert!(
        MAX_DELIVERY_ATTEMPTS == 10,
        "update the literal 10 below and in schema.sql"
    );
    connection
        .prepare_cached(
            "INSERT OR IGNORE INTO dead_letters (consumer, seq, attempts, at_ms)
             SELECT consumer, seq, attempts, ?2 FROM deliveries
             WHERE consumer = ?1 AND attempts >= 10 AND leased_until_ms <= ?2",
        )
        .map_err(unavailable)?
        .execute(params![consumer, now])
        .map_err(unavailable)?;
    let dead = connection
        .prepare_cached(
            "DELETE FROM deliveries WHERE consumer = ?1 AND attempts >= 10 AND leased_until_ms <= ?2",
        )
        .map_err(unavailable)?
        .execute(params![consumer, now])
        .map_err(unavailable)?;
    if dead > 0 {
        tracing::warn!(
            consumer,
            count = dead,
            "events dead-lettered after too many attempts"
        );
    }
    let rows = connection
        .prepare_cached(
            "SELECT d.seq, d.attempts, o.event_id, o.kind, o.order_id, o.order_version,
                    o.total_units, o.occurred_at_ms
             FROM deliveries d JOIN outbox o ON o.seq = d.seq
             WHERE d.consumer = ?1 AND d.leased_until_ms <= ?2
             ORDER BY d.seq LIMIT ?3",
        )
        .map_err(unavailable)?
        .query_map(params![consumer, now, max_events], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, u32>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, i64>(6)?,
                row.get::<_, i64>(7)?,
            ))
        })
        .map_err(unavailable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)?;
    let leased_until = now.saturating_add(lease_ms.min(i64::MAX as u64) as i64);
    let mut lease = connection
        .prepare_cached(
            "UPDATE deliveries SET attempts = attempts + 1, leased_until_ms = ?1
             WHERE consumer = ?2 AND seq = ?3",
        )
        .map_err(unavailable)?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for (seq, attempts, event_id, kind, order_id, order_version, total_units, occurred) in rows {
        lease
            .execute(params![leased_until, consumer, seq])
            .map_err(unavailable)?;
        deliveries.push(Delivery {
            delivery_id: seq,
            attempt: attempts + 1,
            event: Event {
                event_id,
                kind: kind.parse().map_err(StorageError::Inconsistent)?,
                order_id,
                order_version,
                occurred_at: format_time(occurred),
                total_units: total_units as u64,
            },
        });
    }
    Ok(WriteReply::Deliveries(deliveries))
}
