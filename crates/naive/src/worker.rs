//! The naive inventory worker: decides each `pending` order later, in one of
//! the original system's flows.
//!
//! WRONG ON PURPOSE. It checks stock and reserves it in two separate remote
//! calls (or pays before it decrements the stock), and it processes a
//! redelivered event again: there is no record of events already handled.
//! The fixes add what their write-ups add: a Redis lock around the whole flow
//! (with or without a fencing token), the deployed fix's conditional update
//! before the payment, or a processed-event record with the reservation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use stockroom_contract::{Order, OrderDocument};
use stockroom_domain::{OrderStatus, PaymentStatus};
use stockroom_http_kit::{ClientError, ServiceClient};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::data::{StatusUpdate, StockCheck, Units};
use crate::fix::{Fix, WorkerLock};
use crate::inventory::{InventoryConfig, OrderEvent};
use crate::payment::{Charge, ChargeRequest};
use crate::redis_lock::{HeldLock, RedisLocks};
use crate::{NaiveError, NaiveFlow, RaceWindows};

/// The most events the worker handles at once.
pub const MAX_EVENTS_IN_FLIGHT: usize = 256;

#[derive(Clone)]
pub(crate) struct Worker {
    data: ServiceClient,
    payment: ServiceClient,
    flow: NaiveFlow,
    windows: RaceWindows,
    fix: Fix,
    locks: Option<RedisLocks>,
}

pub(crate) async fn work(
    worker: Worker,
    mut events: mpsc::Receiver<OrderEvent>,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_EVENTS_IN_FLIGHT));
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let worker = worker.clone();
        tokio::spawn(async move {
            if let Err(error) = worker.handle(&event).await {
                tracing::warn!(order_id = %event.order_id, error = &error as &dyn std::error::Error, "naive worker gave up on an order");
            }
            drop(permit);
        });
    }
}

/// One order being decided: the event it came with, the fencing token of
/// each product whose lock is held, and the order's version as last written.
struct Run<'a> {
    order: &'a Order,
    event: &'a OrderEvent,
    tokens: BTreeMap<String, u64>,
    version: i64,
}

/// The error code of a 409 answer, if `error` is one.
fn conflict_code(error: &NaiveError) -> Option<&str> {
    match error {
        NaiveError::Dependency(ClientError::Status { status, code, .. })
            if *status == reqwest::StatusCode::CONFLICT =>
        {
            Some(code.as_str())
        }
        _ => None,
    }
}

const INSUFFICIENT_STOCK: &str = "insufficient_stock";
const DUPLICATE_EVENT: &str = "duplicate_event";

impl Worker {
    pub(crate) fn new(config: &InventoryConfig) -> Worker {
        Worker {
            data: ServiceClient::new("data-service", &config.data_url),
            payment: ServiceClient::new("payment-service", &config.payment_url),
            flow: config.flow,
            windows: config.windows,
            fix: config.fix,
            locks: config.locks.clone(),
        }
    }

    async fn set_status(
        &self,
        run: &mut Run<'_>,
        status: OrderStatus,
        payment_status: Option<PaymentStatus>,
        reason: Option<&str>,
    ) -> Result<(), NaiveError> {
        let OrderDocument { order } = self
            .data
            .post(
                &format!("/orders/{}/status", run.order.id),
                &StatusUpdate {
                    status,
                    payment_status,
                    reason: reason.map(str::to_owned),
                    expected_version: Some(run.version),
                },
            )
            .await?;
        run.version = order.version;
        Ok(())
    }

    async fn reject(&self, run: &mut Run<'_>, reason: &str) -> Result<(), NaiveError> {
        self.set_status(run, OrderStatus::Rejected, None, Some(reason))
            .await
    }

    async fn stock_call(
        &self,
        run: &Run<'_>,
        product: &str,
        action: &str,
        quantity: u32,
    ) -> Result<(), NaiveError> {
        let event_id = (self.fix.processed_events() && action == "hold")
            .then(|| format!("{}:{}", run.event.event_id, product.to_ascii_lowercase()));
        let _: serde_json::Value = self
            .data
            .post(
                &format!("/inventory/{product}/{action}"),
                &Units {
                    fencing_token: run.tokens.get(product).copied(),
                    event_id,
                    ..Units::of(quantity)
                },
            )
            .await?;
        Ok(())
    }

    /// "Is there stock?" for every item, in remote calls (with the fencing
    /// token, when the fix fences).
    async fn enough_stock(&self, run: &Run<'_>) -> Result<bool, NaiveError> {
        for line in &run.order.items {
            let fence = run
                .tokens
                .get(&line.product.name)
                .map(|token| format!("&fencingToken={token}"))
                .unwrap_or_default();
            let check: StockCheck = self
                .data
                .get(&format!(
                    "/inventory/{}/check?quantity={}{fence}",
                    line.product.name, line.quantity
                ))
                .await?;
            if !check.enough {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn charge(&self, run: &Run<'_>) -> Result<(), NaiveError> {
        let units = run
            .order
            .items
            .iter()
            .map(|line| u64::from(line.quantity))
            .sum();
        let _: Charge = self
            .payment
            .post(
                "/charge",
                &ChargeRequest {
                    order_id: run.order.id.clone(),
                    event_id: run.event.event_id.clone(),
                    units,
                },
            )
            .await?;
        Ok(())
    }

    /// Decides one order, whatever its status (a redelivered event runs the
    /// whole flow again), inside the Redis lock when the fix takes one.
    pub(crate) async fn handle(&self, event: &OrderEvent) -> Result<(), NaiveError> {
        let OrderDocument { order } = self
            .data
            .get(&format!("/orders/{}", event.order_id))
            .await?;
        let mut run = Run {
            order: &order,
            event,
            tokens: BTreeMap::new(),
            version: order.version,
        };
        let Some(lock) = self.fix.worker_lock() else {
            return self.decide(&mut run).await;
        };
        let locks = self.locks.as_ref().ok_or(NaiveError::RedisNotGiven {
            fix: self.fix.name(),
        })?;
        let mut products: Vec<&str> = order
            .items
            .iter()
            .map(|line| line.product.name.as_str())
            .collect();
        products.sort_unstable();
        products.dedup();
        let mut held: Vec<HeldLock> = Vec::new();
        let mut acquired = Ok(());
        for product in products {
            match locks.acquire(product).await {
                Ok(lock) => held.push(lock),
                Err(error) => {
                    acquired = Err(error);
                    break;
                }
            }
        }
        let decided = match acquired {
            Err(error) => Err(error),
            Ok(()) => {
                if lock == WorkerLock::Fenced {
                    run.tokens = held
                        .iter()
                        .map(|lock| (lock.resource.clone(), lock.token))
                        .collect();
                }
                if lock == WorkerLock::ConditionalUpdate {
                    self.reserve_then_pay(&mut run).await
                } else {
                    self.decide(&mut run).await
                }
            }
        };
        for lock in &held {
            if let Err(error) = locks.release(lock).await {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "could not release a lock; it runs out by itself"
                );
            }
        }
        decided
    }

    /// The scenario's flow of the original system.
    async fn decide(&self, run: &mut Run<'_>) -> Result<(), NaiveError> {
        match self.flow {
            NaiveFlow::TwoCalls => {
                if !self.enough_stock(run).await? {
                    return self.reject(run, INSUFFICIENT_STOCK).await;
                }
                tokio::time::sleep(Duration::from_millis(self.windows.two_call_ms)).await;
                self.reserve_then_pay_with(run, "hold").await
            }
            NaiveFlow::StorageCheck => self.reserve_then_pay_with(run, "reserve").await,
            NaiveFlow::PayFirst => {
                if !self.enough_stock(run).await? {
                    return self.reject(run, INSUFFICIENT_STOCK).await;
                }
                self.pay_and_commit(run, "sell").await
            }
        }
    }

    /// The deployed fix: the conditional update reserves (or refuses) first,
    /// then the payment, all inside the lock.
    async fn reserve_then_pay(&self, run: &mut Run<'_>) -> Result<(), NaiveError> {
        self.reserve_then_pay_with(run, "hold").await
    }

    /// Reserves every line with `action` (`hold` or `reserve`), then pays and
    /// commits. A refusal for want of stock rejects the order (releasing the
    /// lines already reserved); a refusal as a duplicate ends the event's
    /// processing; a version conflict releases what this run reserved.
    async fn reserve_then_pay_with(
        &self,
        run: &mut Run<'_>,
        action: &str,
    ) -> Result<(), NaiveError> {
        let order: &Order = run.order;
        let lines = &order.items;
        for (index, line) in lines.iter().enumerate() {
            match self
                .stock_call(run, &line.product.name, action, line.quantity)
                .await
            {
                Ok(()) => {}
                Err(error) => match conflict_code(&error) {
                    Some(INSUFFICIENT_STOCK) => {
                        self.release_lines(run, index).await?;
                        return self.reject(run, INSUFFICIENT_STOCK).await;
                    }
                    Some(DUPLICATE_EVENT) => {
                        tracing::info!(order_id = %run.order.id, "event already processed");
                        return Ok(());
                    }
                    _ => return Err(error),
                },
            }
        }
        if let Err(error) = self
            .set_status(run, OrderStatus::Reserved, None, None)
            .await
        {
            if conflict_code(&error).is_some() {
                self.release_lines(run, lines.len()).await?;
            }
            return Err(error);
        }
        self.pay_and_commit(run, "commit").await
    }

    /// Releases the first `count` lines of the order.
    async fn release_lines(&self, run: &Run<'_>, count: usize) -> Result<(), NaiveError> {
        for line in run.order.items.iter().take(count) {
            self.stock_call(run, &line.product.name, "release", line.quantity)
                .await?;
        }
        Ok(())
    }

    /// Charges, then takes the units off the shelf with `action` (`commit`
    /// for reserved units, `sell` for units never reserved), then fulfils.
    /// Storage refusing a stale fencing token means this worker's lock ran
    /// out while it was paying: the order is rejected instead.
    async fn pay_and_commit(&self, run: &mut Run<'_>, action: &str) -> Result<(), NaiveError> {
        self.charge(run).await?;
        self.set_status(
            run,
            OrderStatus::Reserved,
            Some(PaymentStatus::Charged),
            Some("payment_charged"),
        )
        .await?;
        let order: &Order = run.order;
        for line in &order.items {
            if let Err(error) = self
                .stock_call(run, &line.product.name, action, line.quantity)
                .await
            {
                if !run.tokens.is_empty() && conflict_code(&error) == Some("conflict") {
                    tracing::warn!(order_id = %run.order.id, error = &error as &dyn std::error::Error, "the lock ran out during the payment");
                    return self.reject(run, "lock_expired").await;
                }
                return Err(error);
            }
        }
        self.set_status(run, OrderStatus::Fulfilled, None, None)
            .await
    }
}
