//! The rows a batch touches, worked out from its calls before anything is
//! loaded, and completed as each step of the load tells more.

use std::collections::{BTreeMap, BTreeSet};

use stockroom_domain::OrderStatus;
use stockroom_domain::rules::{Book, OrderRecord, StoredKey};

use crate::batch::Command;

/// The sweep's candidates, found by the backend before the orders are loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepQuery {
    /// Reservations not advanced since this time are due.
    pub cutoff_ms: i64,
    pub limit: u32,
    /// The due reservations' ids, filled in by the backend.
    pub found: Vec<String>,
}

/// The rows a batch touches. Sorted sets, so that backends lock rows in one
/// global order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Orders to load: those the calls name, and the ids new orders would
    /// take (a taken id is found by loading it).
    pub order_ids: BTreeSet<String>,
    /// Stock rows to load: the products requests name, and (after
    /// [`Needs::add_lines`]) those of the loaded orders.
    pub product_keys: BTreeSet<String>,
    /// Idempotency keys to look up, as (customer id, key).
    pub keys: BTreeSet<(String, String)>,
    /// Operators' idempotency keys to look up.
    pub operator_keys: BTreeSet<String>,
    /// Holdings to load, as (customer id, product key): every customer the
    /// batch reserves or releases for, with each product of theirs it
    /// touches. Loaded after the products' rows, which guard them.
    pub holdings: BTreeSet<(String, String)>,
    /// Products whose limit is set or removed: the backend loads every
    /// reserved and fulfilled order holding one into [`Needs::holders`].
    pub limit_changes: BTreeSet<String>,
    /// The orders of [`Needs::limit_changes`], filled in by the backend.
    pub holders: BTreeMap<String, Vec<OrderRecord>>,
    /// Products the batch creates: a new one may come with a limit.
    created: BTreeSet<String>,
    /// One query per sweep call.
    pub sweeps: Vec<SweepQuery>,
    /// Orders named by payment verdicts, and orders named by any other call
    /// (or found by a sweep, or answering a key). A verdict changes its
    /// order alone, so an order named only by verdicts has its products
    /// neither loaded nor locked ([`Needs::add_lines`]): a payment waits for
    /// no batch that holds them, and writes no row lock of theirs.
    paid: BTreeSet<String>,
    named_otherwise: BTreeSet<String>,
}

impl Needs {
    /// What `commands` touch, before anything is loaded.
    pub fn of(commands: &[Command], now_ms: i64) -> Needs {
        let mut needs = Needs::default();
        for command in commands {
            needs.add(command, now_ms);
        }
        needs
    }

    fn add(&mut self, command: &Command, now_ms: i64) {
        match command {
            Command::Reserve(requests) => {
                for request in requests {
                    self.order_ids.insert(request.order_id.clone());
                    self.named_otherwise.insert(request.order_id.clone());
                    let customer = request.customer_id.as_str();
                    for item in request.items.iter() {
                        let key = item.product.key();
                        self.holdings.insert((customer.to_owned(), key.clone()));
                        self.product_keys.insert(key);
                    }
                    if let Some(key) = &request.idempotency_key {
                        self.keys.insert((customer.to_owned(), key.clone()));
                    }
                }
            }
            Command::RecordPayments(payments) => {
                // The orders' states say which verdicts apply and which were
                // recorded before: no other row is read.
                for payment in payments {
                    self.order_ids.insert(payment.order_id.clone());
                    self.paid.insert(payment.order_id.clone());
                }
            }
            Command::Settle(settlements) => {
                for settlement in settlements {
                    self.order_ids.insert(settlement.order_id.clone());
                    self.named_otherwise.insert(settlement.order_id.clone());
                }
            }
            Command::Release { order_id, .. } | Command::Extend { order_id, .. } => {
                self.order_ids.insert(order_id.clone());
                self.named_otherwise.insert(order_id.clone());
            }
            Command::Sweep {
                older_than_ms,
                max_orders,
            } => self.sweeps.push(SweepQuery {
                cutoff_ms: now_ms.saturating_sub(i64::try_from(*older_than_ms).unwrap_or(i64::MAX)),
                limit: *max_orders,
                found: Vec::new(),
            }),
            Command::Restock { product, .. } => {
                self.product_keys.insert(product.key());
            }
            Command::CreateProduct { product, .. } => {
                self.product_keys.insert(product.key());
                self.created.insert(product.key());
            }
            Command::ChangeSettings {
                product_key,
                change,
            } => {
                self.product_keys.insert(product_key.clone());
                if change.touches_limit() {
                    self.limit_changes.insert(product_key.clone());
                }
            }
            Command::Adjust(adjustment) => {
                self.product_keys.insert(adjustment.product_key.clone());
                if let Some(key) = &adjustment.idempotency_key {
                    self.operator_keys.insert(key.clone());
                }
            }
        }
    }

    /// Adds the orders that stored idempotency keys answered with, so that a
    /// replay can rebuild its answer; call it with the keys before loading
    /// the orders.
    pub fn keys_loaded<'a>(&mut self, keys: impl IntoIterator<Item = &'a StoredKey>) {
        for key in keys {
            let order_id = key.answer.order_id();
            self.order_ids.insert(order_id.to_owned());
            self.named_otherwise.insert(order_id.to_owned());
        }
    }

    /// Adds the sweep candidates the backend found for sweep `index`.
    pub fn add_swept(&mut self, index: usize, ids: Vec<String>) {
        self.order_ids.extend(ids.iter().cloned());
        self.named_otherwise.extend(ids.iter().cloned());
        self.sweeps[index].found = ids;
    }

    /// The holdings to load once the products are in the book: the pairs of
    /// products that are limited, or may become so in this batch (a limit
    /// set, a product created). Unlimited products keep no holdings, so in a
    /// sale without limits nothing is read.
    pub fn holdings_to_load(&self, book: &Book) -> Vec<(String, String)> {
        self.holdings
            .iter()
            .filter(|(_, product_key)| {
                self.limit_changes.contains(product_key)
                    || self.created.contains(product_key)
                    || book
                        .product(product_key)
                        .is_some_and(|product| product.settings.max_per_customer.is_some())
            })
            .cloned()
            .collect()
    }

    /// Whether only payment verdicts name `order_id`: the batch changes that
    /// order alone, its payment and nothing else, on what the order says, so
    /// it needs no product's lock, and the order needs no second read under
    /// one (see the PostgreSQL backend's `load`).
    pub fn only_paid(&self, order_id: &str) -> bool {
        self.paid.contains(order_id) && !self.named_otherwise.contains(order_id)
    }

    /// Whether the batch may move stock through `order`: a call other than a
    /// payment verdict names it, and it is still reserved. An order that
    /// ended never changes again (a status only moves forward), so what the
    /// calls naming it ask (a duplicate settlement, a late release or
    /// expiry) changes nothing: its products need no lock, and the order no
    /// second read under one.
    pub fn may_move_stock(&self, order: &OrderRecord) -> bool {
        !self.only_paid(&order.id) && order.status == OrderStatus::Reserved
    }

    /// Adds the products of a loaded order's lines, and its customer's
    /// holdings of them (a release or an expiry frees them), if the batch may
    /// move stock through it ([`Needs::may_move_stock`]).
    pub fn add_lines(&mut self, order: &OrderRecord) {
        if !self.may_move_stock(order) {
            return;
        }
        for line in &order.lines {
            self.product_keys.insert(line.product_key.clone());
            self.holdings
                .insert((order.customer_id.clone(), line.product_key.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use stockroom_domain::rules::{OrderLine, Settle};
    use stockroom_domain::{OrderStatus, PaymentStatus, Quantity};

    use super::*;
    use crate::batch::{PaymentVerdict, SettlementCall};

    fn reserved(order_id: &str) -> OrderRecord {
        OrderRecord {
            id: order_id.to_owned(),
            customer_id: "c1".to_owned(),
            status: OrderStatus::Reserved,
            reason: None,
            payment: PaymentStatus::None,
            version: 1,
            created_at_ms: 0,
            updated_at_ms: 0,
            lines: vec![OrderLine {
                product_key: format!("product-of-{order_id}"),
                product_name: "Product".to_owned(),
                quantity: Quantity::new(1).unwrap(),
            }],
            extended_until_ms: None,
        }
    }

    fn payment(order_id: &str) -> PaymentVerdict {
        PaymentVerdict {
            order_id: order_id.to_owned(),
            event_id: format!("OrderReserved:{order_id}:1"),
            approved: true,
            trace_parent: None,
        }
    }

    #[test]
    fn an_order_only_a_verdict_names_leaves_its_products_unloaded() {
        let commands = [
            Command::RecordPayments(vec![payment("paid"), payment("settled")]),
            Command::Settle(vec![SettlementCall {
                order_id: "settled".to_owned(),
                event_id: "PaymentSucceeded:settled:2".to_owned(),
                action: Settle::Commit,
            }]),
        ];
        let mut needs = Needs::of(&commands, 0);
        for order_id in ["paid", "settled"] {
            needs.add_lines(&reserved(order_id));
        }
        assert_eq!(
            needs.product_keys.iter().collect::<Vec<_>>(),
            ["product-of-settled"]
        );
        // A sweep that finds the order may release its units.
        needs.sweeps.push(SweepQuery {
            cutoff_ms: 0,
            limit: 1,
            found: Vec::new(),
        });
        needs.add_swept(0, vec!["paid".to_owned()]);
        needs.add_lines(&reserved("paid"));
        assert!(needs.product_keys.contains("product-of-paid"));
    }

    /// A settlement delivered again after its order ended changes nothing,
    /// so it locks none of the order's products.
    #[test]
    fn an_ended_order_leaves_its_products_unloaded() {
        let commands = [Command::Settle(vec![
            SettlementCall {
                order_id: "fulfilled".to_owned(),
                event_id: "PaymentSucceeded:fulfilled:2".to_owned(),
                action: Settle::Commit,
            },
            SettlementCall {
                order_id: "open".to_owned(),
                event_id: "PaymentSucceeded:open:2".to_owned(),
                action: Settle::Commit,
            },
        ])];
        let mut needs = Needs::of(&commands, 0);
        let ended = OrderRecord {
            status: OrderStatus::Fulfilled,
            ..reserved("fulfilled")
        };
        assert!(!needs.may_move_stock(&ended));
        needs.add_lines(&ended);
        needs.add_lines(&reserved("open"));
        assert_eq!(
            needs.product_keys.iter().collect::<Vec<_>>(),
            ["product-of-open"]
        );
    }
}
