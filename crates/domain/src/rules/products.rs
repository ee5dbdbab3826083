//! A shop's own changes to its products: creating one, receiving stock,
//! setting a limit or a threshold, and adjusting the figures with a reason,
//! with a compare-and-swap on the figure and an idempotency key.

use crate::rules::{
    AdjustAnswer, AdjustReason, Book, MovementKind, MovementOf, MovementReason, OperatorKeyClaim,
    OperatorKeySlot, ProductSettings, ProductState, RuleError, StockRecord, StockSlot, holdings_of,
};
use std::collections::BTreeMap;

use crate::rules::{Movement, OrderRecord};
use crate::stock::{Stock, StockError};
use crate::values::{MAX_STOCK_PER_PRODUCT, ProductName};

/// The largest purchase limit: more than any one customer could buy.
pub const MAX_PER_CUSTOMER_LIMIT: u32 = 1_000_000;

/// The most units one adjustment moves, up or down.
pub const MAX_ADJUSTMENT_UNITS: u64 = MAX_STOCK_PER_PRODUCT;

/// The longest reference an operator may give an adjustment.
pub const MAX_REFERENCE_LENGTH: usize = 200;

/// What a request to create a product did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateDecision {
    Created(StockRecord),
    /// A product of that name (in any case) exists; nothing changed.
    Exists(StockRecord),
}

/// A change of a product's settings: each field absent (`None`, left as it
/// is) or given (a value, or `Some(None)` to remove it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub max_per_customer: Option<Option<u32>>,
    pub low_stock_threshold: Option<Option<u64>>,
}

impl SettingsChange {
    /// Whether the change sets or removes a limit, so that the holdings of
    /// the product must be recomputed from its orders.
    pub fn touches_limit(&self) -> bool {
        self.max_per_customer.is_some()
    }
}

/// What a settings change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsDecision {
    Changed(StockRecord),
    UnknownProduct,
}

/// One adjustment of a product's units by an operator.
#[derive(Debug, Clone, Copy)]
pub struct AdjustInput<'a> {
    pub product_key: &'a str,
    /// Units added (positive) or written off (negative), never zero.
    pub delta: std::num::NonZeroI64,
    pub reason: AdjustReason,
    pub reference: Option<&'a str>,
    /// The on-hand figure the operator saw; the adjustment applies only if
    /// it still is (compare-and-swap).
    pub expected_on_hand: Option<u64>,
    pub idempotency_key: Option<&'a str>,
    /// A hash of the normalised request, to tell a retry from another
    /// request that reuses the key.
    pub fingerprint: Option<&'a str>,
}

/// What an adjustment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdjustDecision {
    Adjusted(AdjustAnswer),
    /// The key was answered before: this is that answer, nothing changed.
    Replay(AdjustAnswer),
    UnknownProduct,
    /// The on-hand figure is not what the operator saw; nothing changed.
    StaleQuantity {
        on_hand: u64,
    },
    /// Writing off that many would take availability below zero: reserved
    /// units are promised to orders.
    InsufficientStock {
        available: u64,
    },
    /// Adding that many would take the product past the stock limit.
    AboveLimit,
    /// The key was used before for another request.
    KeyReused,
}

impl Book {
    /// Adds `units` to a product's stock (a movement `received`), creating
    /// the product if it is new (a movement `created`).
    pub fn restock(&mut self, product: &ProductName, units: u64) -> Result<Stock, RuleError> {
        let key = product.key();
        match self.stock(&key) {
            Some((_, stock)) => {
                let after = stock.restock(units).map_err(RuleError::Restock)?;
                self.change_stock(&key, after, MovementOf::operator(MovementKind::Received));
                Ok(after)
            }
            None => {
                let stock = Stock::received(units).map_err(RuleError::Restock)?;
                self.insert_product(product, stock, ProductSettings::default());
                Ok(stock)
            }
        }
    }

    /// Creates a product with `quantity` units on hand, unless one of that
    /// name exists.
    pub fn create_product(
        &mut self,
        product: &ProductName,
        quantity: u64,
        settings: ProductSettings,
    ) -> Result<CreateDecision, RuleError> {
        let key = product.key();
        if let Some(existing) = self.product(&key) {
            return Ok(CreateDecision::Exists(existing));
        }
        let stock = Stock::received(quantity).map_err(RuleError::Restock)?;
        self.insert_product(product, stock, settings);
        let created = self.product(&key).expect("the product was just created");
        Ok(CreateDecision::Created(created))
    }

    /// A new product's row and its first movement.
    fn insert_product(&mut self, product: &ProductName, stock: Stock, settings: ProductSettings) {
        let key = product.key();
        let empty = Stock::received(0).expect("an empty stock is valid");
        self.stock.insert(
            key.clone(),
            StockSlot {
                name: product.as_str().to_owned(),
                loaded: None,
                current: Some(ProductState {
                    stock: empty,
                    settings,
                    movements: 0,
                }),
            },
        );
        self.change_stock(&key, stock, MovementOf::operator(MovementKind::Created));
    }

    /// Changes a product's limit and threshold. Setting or removing a limit
    /// replaces the product's holdings with those of the reserved and
    /// fulfilled orders: `stored` must be every such order holding the
    /// product, as storage has them; the book's own (created or changed by
    /// this batch) take their place.
    pub fn change_settings<'a>(
        &mut self,
        product_key: &str,
        change: SettingsChange,
        stored: impl IntoIterator<Item = &'a OrderRecord>,
    ) -> SettingsDecision {
        let Some(mut settings) = self
            .stock
            .get(product_key)
            .and_then(|slot| slot.current)
            .map(|state| state.settings)
        else {
            return SettingsDecision::UnknownProduct;
        };
        if let Some(limit) = change.max_per_customer {
            settings.max_per_customer = limit;
        }
        if let Some(threshold) = change.low_stock_threshold {
            settings.low_stock_threshold = threshold;
        }
        let holdings = (change.touches_limit() && settings.max_per_customer.is_some()).then(|| {
            let mut orders: BTreeMap<&str, &OrderRecord> = stored
                .into_iter()
                .map(|order| (order.id.as_str(), order))
                .collect();
            for slot in self.orders.values() {
                orders.insert(slot.record.id.as_str(), &slot.record);
            }
            holdings_of(product_key, orders.into_values())
        });
        let Some(state) = self
            .stock
            .get_mut(product_key)
            .and_then(|slot| slot.current.as_mut())
        else {
            return SettingsDecision::UnknownProduct;
        };
        if state.settings != settings {
            state.settings = settings;
            let stock = state.stock;
            self.change_stock(
                product_key,
                stock,
                MovementOf::operator(MovementKind::Settings),
            );
        }
        if change.touches_limit() {
            self.reset_holdings(product_key, holdings.unwrap_or_default());
        }
        SettingsDecision::Changed(self.product(product_key).expect("the product exists"))
    }

    /// Adjusts a product's on-hand units by an operator's `delta`, all or
    /// nothing.
    pub fn adjust(&mut self, input: AdjustInput<'_>) -> AdjustDecision {
        if let Some(key) = input.idempotency_key
            && let Some(answered) = self.operator_keys.get(key)
        {
            return if answered.fingerprint.as_deref() == input.fingerprint {
                AdjustDecision::Replay(answered.answer.clone())
            } else {
                AdjustDecision::KeyReused
            };
        }
        let Some(record) = self.product(input.product_key) else {
            return AdjustDecision::UnknownProduct;
        };
        let stock = record.stock;
        if let Some(expected) = input.expected_on_hand
            && expected != stock.on_hand()
        {
            return AdjustDecision::StaleQuantity {
                on_hand: stock.on_hand(),
            };
        }
        let after = match stock.adjust(input.delta.get()) {
            Ok(after) => after,
            Err(StockError::AboveLimit) => return AdjustDecision::AboveLimit,
            Err(_) => {
                return AdjustDecision::InsufficientStock {
                    available: stock.available(),
                };
            }
        };
        let movement = MovementOf {
            kind: MovementKind::Adjusted,
            reason: Some(MovementReason::Adjustment(input.reason)),
            reference: input.reference.map(str::to_owned),
            order_id: None,
        };
        self.change_stock(input.product_key, after, movement);
        let answer = AdjustAnswer {
            movement: self.last_movement(input.product_key),
            stock: after,
            settings: record.settings,
        };
        if let Some(key) = input.idempotency_key {
            let fingerprint = input.fingerprint.map(str::to_owned);
            self.operator_keys.insert(
                key.to_owned(),
                OperatorKeySlot {
                    fingerprint: fingerprint.clone(),
                    answer: answer.clone(),
                },
            );
            self.new_operator_keys.push(OperatorKeyClaim {
                key: key.to_owned(),
                fingerprint,
                answer: answer.clone(),
            });
        }
        AdjustDecision::Adjusted(answer)
    }

    /// The product's latest movement of this batch.
    fn last_movement(&self, product_key: &str) -> Movement {
        self.movements
            .iter()
            .rev()
            .find(|movement| movement.product_key == product_key)
            .cloned()
            .expect("a change of figures records a movement")
    }
}

impl MovementOf {
    /// A movement an operator (or the initial stock) made.
    pub(crate) fn operator(kind: MovementKind) -> MovementOf {
        MovementOf {
            kind,
            reason: None,
            reference: None,
            order_id: None,
        }
    }
}
