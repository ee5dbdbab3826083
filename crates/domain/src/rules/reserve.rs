//! Reservation: check and hold every item of an order, or none.

use crate::order::{EventKind, OrderStatus, PaymentStatus, Reason};
use crate::rules::{
    Book, HistoryRecord, KeptAnswer, KeyClaim, KeySlot, LimitExceeded, MovementKind, MovementOf,
    OrderLine, OrderRecord, OrderSlot, StoredKey,
};
use crate::stock::Stock;
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

/// What a reservation request that created an order was answered: the
/// order as it was created, and what was short if it was rejected. A replay
/// of its idempotency key answers the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveAnswer {
    /// Every item is held; the order was created `reserved`.
    Reserved(OrderRecord),
    /// Some item was short, so nothing is held; the order was created
    /// `rejected` and says what was short.
    Rejected {
        order: OrderRecord,
        shortages: Vec<Shortage>,
    },
}

impl ReserveAnswer {
    /// The answer kept in `kept`, rebuilt from its order as the order is
    /// now: an order's creation (id, customer, lines, time) never changes,
    /// and its first status, reason and version follow from the answer.
    pub fn first(kept: &KeptAnswer, order: &OrderRecord) -> ReserveAnswer {
        let (status, reason) = match kept {
            KeptAnswer::Reserved { .. } => (OrderStatus::Reserved, None),
            KeptAnswer::Rejected { .. } => (OrderStatus::Rejected, Some(Reason::InsufficientStock)),
        };
        let created = OrderRecord {
            status,
            reason,
            payment: PaymentStatus::None,
            version: 1,
            updated_at_ms: order.created_at_ms,
            ..order.clone()
        };
        match kept {
            KeptAnswer::Reserved { .. } => ReserveAnswer::Reserved(created),
            KeptAnswer::Rejected { shortages, .. } => ReserveAnswer::Rejected {
                order: created,
                shortages: shortages.clone(),
            },
        }
    }

    /// What storage keeps of this answer for its idempotency key.
    pub fn kept(&self) -> KeptAnswer {
        match self {
            ReserveAnswer::Reserved(order) => KeptAnswer::Reserved {
                order_id: order.id.clone(),
            },
            ReserveAnswer::Rejected { order, shortages } => KeptAnswer::Rejected {
                order_id: order.id.clone(),
                shortages: shortages.clone(),
            },
        }
    }

    pub fn order(&self) -> &OrderRecord {
        match self {
            ReserveAnswer::Reserved(order) | ReserveAnswer::Rejected { order, .. } => order,
        }
    }
}

/// What became of one reservation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveDecision {
    /// The request created an order, reserved or rejected.
    Created(ReserveAnswer),
    /// The key was answered before, by an earlier batch or an earlier
    /// request of this one: this is that answer, and nothing was created.
    Replay(ReserveAnswer),
    /// An item names a product the stock does not have; nothing was created.
    UnknownProduct(String),
    /// An item would take the customer past the product's purchase limit;
    /// nothing was created.
    LimitExceeded(LimitExceeded),
    /// Another order already has this id; nothing was created.
    OrderIdTaken,
    /// The customer used this idempotency key before for a different request.
    KeyReused,
    /// The key was answered before, but the order its answer created is no
    /// longer stored (retention removed it), so the answer cannot be given
    /// again; nothing was created. Retention keeps orders longer than keys,
    /// so this means damaged or hand-edited data.
    AnswerGone { order_id: String },
}

/// A request's items checked against the stock: its lines, the figures of
/// each product that can hold its units, and what is short.
struct Checked {
    lines: Vec<OrderLine>,
    held: Vec<(String, Stock)>,
    shortages: Vec<Shortage>,
}

impl Book {
    /// Decides one reservation request of the batch.
    pub fn reserve(&mut self, request: ReserveInput<'_>) -> ReserveDecision {
        let key = request
            .idempotency_key
            .map(|key| (request.customer_id.as_str().to_owned(), key.to_owned()));
        if let Some(key) = &key
            && let Some(answered) = self.keys.get(key)
        {
            let (KeySlot::Stored(stored) | KeySlot::Claimed(stored)) = answered;
            if stored.fingerprint.as_deref() != request.fingerprint {
                return ReserveDecision::KeyReused;
            }
            let order_id = stored.answer.order_id();
            return match self.order(order_id) {
                Some(order) => ReserveDecision::Replay(ReserveAnswer::first(&stored.answer, order)),
                None => ReserveDecision::AnswerGone {
                    order_id: order_id.to_owned(),
                },
            };
        }
        if self.orders.contains_key(request.order_id) {
            return ReserveDecision::OrderIdTaken;
        }

        let Checked {
            lines,
            held,
            shortages,
        } = match self.check_items(request.items) {
            Ok(checked) => checked,
            Err(unknown) => return ReserveDecision::UnknownProduct(unknown),
        };
        let units: Vec<(String, u64)> = lines
            .iter()
            .map(|line| (line.product_key.clone(), u64::from(line.quantity.get())))
            .collect();
        let customer_id = request.customer_id.as_str();
        if let Some(exceeded) = self.limit_exceeded(customer_id, &units) {
            return ReserveDecision::LimitExceeded(exceeded);
        }

        let answer = if shortages.is_empty() {
            let order = self.create_order(request, OrderStatus::Reserved, None, lines);
            for (product_key, after) in held {
                let movement = MovementOf::order(MovementKind::Reserved, &order.id, None);
                self.change_stock(&product_key, after, movement);
            }
            self.hold_for(customer_id, &units, 1);
            self.emit(EventKind::OrderReserved, &order);
            ReserveAnswer::Reserved(order)
        } else {
            let order = self.create_order(
                request,
                OrderStatus::Rejected,
                Some(Reason::InsufficientStock),
                lines,
            );
            ReserveAnswer::Rejected { order, shortages }
        };
        if let Some((customer_id, key)) = key {
            let stored = StoredKey {
                fingerprint: request.fingerprint.map(str::to_owned),
                answer: answer.kept(),
            };
            self.new_keys.push(KeyClaim {
                customer_id: customer_id.clone(),
                key: key.clone(),
                fingerprint: stored.fingerprint.clone(),
                answer: stored.answer.clone(),
            });
            self.keys
                .insert((customer_id, key), KeySlot::Claimed(stored));
        }
        ReserveDecision::Created(answer)
    }

    /// Each item's line and, if the stock holds it, the product's figures
    /// after holding it; or the first product the stock does not have.
    /// Items come sorted by product key; so do the lines and the stock
    /// changes built from them. The error is not a message but the unknown
    /// product's name, which `ReserveDecision::UnknownProduct` carries as is.
    fn check_items(&self, items: &OrderItems) -> Result<Checked, String> {
        let mut checked = Checked {
            lines: Vec::with_capacity(items.len()),
            held: Vec::with_capacity(items.len()),
            shortages: Vec::new(),
        };
        for item in items.iter() {
            let product_key = item.product.key();
            let Some((name, stock)) = self.stock(&product_key) else {
                return Err(item.product.to_string());
            };
            let units = item.quantity.get();
            match stock.hold(u64::from(units)) {
                Some(after) => checked.held.push((product_key.clone(), after)),
                None => checked.shortages.push(Shortage {
                    product_name: name.to_owned(),
                    requested: units,
                    available: stock.available(),
                }),
            }
            checked.lines.push(OrderLine {
                product_key,
                product_name: name.to_owned(),
                quantity: item.quantity,
            });
        }
        Ok(checked)
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
            extended_until_ms: None,
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
                loaded: None,
                record: order.clone(),
            },
        );
        order
    }
}
