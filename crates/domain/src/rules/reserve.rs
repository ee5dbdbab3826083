//! Reservation: check and hold every item of an order, or none.

use crate::order::{EventKind, OrderStatus, PaymentStatus, Reason};
use crate::rules::{Book, HistoryRecord, KeyClaim, KeySlot, OrderLine, OrderRecord, OrderSlot};
use crate::values::{CustomerId, OrderItems};

/// One order to reserve, as order-service checked it.
#[derive(Debug, Clone, Copy)]
pub struct ReserveInput<'a> {
    pub order_id: &'a str,
    pub customer_id: &'a CustomerId,
    pub items: &'a OrderItems,
    /// The client's `Idempotency-Key`, scoped to the customer.
    pub idempotency_key: Option<&'a str>,
    /// A hash of the normalised request, to tell a retry from a different
    /// request that reuses the key.
    pub fingerprint: Option<&'a str>,
}

/// A product that could not be reserved in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub product_name: String,
    pub requested: u32,
    /// What was available when the order was decided.
    pub available: u64,
}

/// What became of one reservation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveDecision {
    /// Every item is held; the order was created `reserved`.
    Reserved(OrderRecord),
    /// Some item was short, so nothing is held; the order was created
    /// `rejected` and says what was short.
    Rejected {
        order: OrderRecord,
        shortages: Vec<Shortage>,
    },
    /// An item names a product the stock does not have; nothing was created.
    UnknownProduct(String),
    /// Another order already has this id; nothing was created.
    OrderIdTaken,
    /// The customer used this idempotency key before for a different request.
    KeyReused,
    /// The key was answered before: this is the stored answer.
    Replay(String),
    /// The key was answered earlier in this batch, by the request at this
    /// position: give the same answer.
    SameAs(usize),
}

impl Book {
    /// Decides the request at `position` of the batch.
    pub fn reserve(&mut self, position: usize, request: ReserveInput<'_>) -> ReserveDecision {
        let key = request
            .idempotency_key
            .map(|key| (request.customer_id.as_str().to_owned(), key.to_owned()));
        if let Some(key) = &key
            && let Some(answered) = self.keys.get(key)
        {
            return match answered {
                KeySlot::Stored(stored) if stored.fingerprint.as_deref() == request.fingerprint => {
                    ReserveDecision::Replay(stored.answer.clone())
                }
                KeySlot::Claimed {
                    fingerprint,
                    position,
                } if fingerprint.as_deref() == request.fingerprint => {
                    ReserveDecision::SameAs(*position)
                }
                _ => ReserveDecision::KeyReused,
            };
        }
        if self.orders.contains_key(request.order_id) {
            return ReserveDecision::OrderIdTaken;
        }

        // Items come sorted by product key; so do the lines and the stock
        // changes built from them.
        let mut lines = Vec::with_capacity(request.items.len());
        let mut held = Vec::with_capacity(request.items.len());
        let mut shortages = Vec::new();
        for item in request.items.iter() {
            let product_key = item.product.key();
            let Some((name, stock)) = self.stock(&product_key) else {
                return ReserveDecision::UnknownProduct(item.product.to_string());
            };
            let units = item.quantity.get();
            match stock.hold(u64::from(units)) {
                Some(after) => held.push((product_key.clone(), after)),
                None => shortages.push(Shortage {
                    product_name: name.to_owned(),
                    requested: units,
                    available: stock.available(),
                }),
            }
            lines.push(OrderLine {
                product_key,
                product_name: name.to_owned(),
                quantity: item.quantity,
            });
        }

        let (status, reason) = if shortages.is_empty() {
            (OrderStatus::Reserved, None)
        } else {
            (OrderStatus::Rejected, Some(Reason::InsufficientStock))
        };
        let order = self.create_order(request, status, reason, lines);
        if shortages.is_empty() {
            self.set_stock(held);
            self.emit(EventKind::OrderReserved, &order);
        }
        if let Some((customer_id, key)) = key {
            let fingerprint = request.fingerprint.map(str::to_owned);
            self.keys.insert(
                (customer_id.clone(), key.clone()),
                KeySlot::Claimed {
                    fingerprint: fingerprint.clone(),
                    position,
                },
            );
            self.new_keys.push(KeyClaim {
                customer_id,
                key,
                fingerprint,
                position,
            });
        }
        if shortages.is_empty() {
            ReserveDecision::Reserved(order)
        } else {
            ReserveDecision::Rejected { order, shortages }
        }
    }

    fn create_order(
        &mut self,
        request: ReserveInput<'_>,
        status: OrderStatus,
        reason: Option<Reason>,
        lines: Vec<OrderLine>,
    ) -> OrderRecord {
        let order = OrderRecord {
            id: request.order_id.to_owned(),
            customer_id: request.customer_id.as_str().to_owned(),
            status,
            reason,
            payment: PaymentStatus::None,
            version: 1,
            created_at_ms: self.now_ms,
            updated_at_ms: self.now_ms,
            lines,
        };
        self.history.push(HistoryRecord {
            order_id: order.id.clone(),
            version: 1,
            status,
            reason,
            at_ms: self.now_ms,
        });
        self.new_order_ids.push(order.id.clone());
        self.orders.insert(
            order.id.clone(),
            OrderSlot {
                loaded_version: None,
                record: order.clone(),
            },
        );
        order
    }
}
