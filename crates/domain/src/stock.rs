//! One product's stock figures and the only ways they may change.
//!
//! A [`Stock`] is checked when it is built and every change returns a new,
//! checked value, so code holding one never sees an oversold or unbalanced
//! state: `reserved <= on_hand` (nothing is promised twice) and
//! `received == on_hand + sold` (no unit appears or vanishes).

use crate::values::MAX_STOCK_PER_PRODUCT;

/// A product's units: on hand (reserved ones included), reserved by orders
/// awaiting payment, sold, and ever received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stock {
    on_hand: u64,
    reserved: u64,
    sold: u64,
    received: u64,
}

/// Figures that break a stock invariant, or a change the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    #[error(
        "stock figures break an invariant: on hand {on_hand}, reserved {reserved}, sold {sold}, received {received}"
    )]
    Broken {
        on_hand: i128,
        reserved: i128,
        sold: i128,
        received: i128,
    },
    #[error("stock of one product may not exceed {MAX_STOCK_PER_PRODUCT} units")]
    AboveLimit,
    #[error("{units} units cannot leave a reservation of {reserved}")]
    NotReserved { units: u64, reserved: u64 },
    #[error("{units} units cannot be written off with {available} available")]
    NotAvailable { units: u64, available: u64 },
}

impl Stock {
    /// A new product with `quantity` units received and on hand.
    pub fn received(quantity: u64) -> Result<Stock, StockError> {
        Stock::new(quantity, 0, 0, quantity)
    }

    /// Checks figures read from storage, which stores them as signed numbers.
    pub fn from_row(
        on_hand: i64,
        reserved: i64,
        sold: i64,
        received: i64,
    ) -> Result<Stock, StockError> {
        let broken = || StockError::Broken {
            on_hand: on_hand.into(),
            reserved: reserved.into(),
            sold: sold.into(),
            received: received.into(),
        };
        let unsigned = |value: i64| u64::try_from(value).map_err(|_| broken());
        Stock::new(
            unsigned(on_hand)?,
            unsigned(reserved)?,
            unsigned(sold)?,
            unsigned(received)?,
        )
    }

    fn new(on_hand: u64, reserved: u64, sold: u64, received: u64) -> Result<Stock, StockError> {
        let balanced = on_hand.checked_add(sold) == Some(received);
        if reserved > on_hand || !balanced {
            return Err(StockError::Broken {
                on_hand: on_hand.into(),
                reserved: reserved.into(),
                sold: sold.into(),
                received: received.into(),
            });
        }
        if on_hand > MAX_STOCK_PER_PRODUCT {
            return Err(StockError::AboveLimit);
        }
        Ok(Stock {
            on_hand,
            reserved,
            sold,
            received,
        })
    }

    pub fn on_hand(&self) -> u64 {
        self.on_hand
    }

    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    pub fn sold(&self) -> u64 {
        self.sold
    }

    pub fn received_total(&self) -> u64 {
        self.received
    }

    /// What a new order can still reserve.
    pub fn available(&self) -> u64 {
        self.on_hand - self.reserved
    }

    /// Holds `units` for an order, if that many are available.
    pub fn hold(&self, units: u64) -> Option<Stock> {
        (units <= self.available()).then(|| Stock {
            reserved: self.reserved + units,
            ..*self
        })
    }

    /// Puts `units` of a reservation back on sale.
    pub fn release(&self, units: u64) -> Result<Stock, StockError> {
        let reserved = self
            .reserved
            .checked_sub(units)
            .ok_or(StockError::NotReserved {
                units,
                reserved: self.reserved,
            })?;
        Ok(Stock { reserved, ..*self })
    }

    /// Sells `units` of a reservation: they leave the shelf and the
    /// reservation together.
    pub fn sell(&self, units: u64) -> Result<Stock, StockError> {
        let reserved = self
            .reserved
            .checked_sub(units)
            .ok_or(StockError::NotReserved {
                units,
                reserved: self.reserved,
            })?;
        Stock::new(
            self.on_hand - units,
            reserved,
            self.sold + units,
            self.received,
        )
    }

    /// Moves the units on hand by an operator's `delta`: units received or
    /// returned (positive), or written off (negative; only units that are
    /// available, since reserved ones are promised to orders). What was
    /// received counts the write-off too, so that received stays on hand
    /// plus sold.
    pub fn adjust(&self, delta: i64) -> Result<Stock, StockError> {
        let units = delta.unsigned_abs();
        if delta >= 0 {
            return self.restock(units);
        }
        if units > self.available() {
            return Err(StockError::NotAvailable {
                units,
                available: self.available(),
            });
        }
        Stock::new(
            self.on_hand - units,
            self.reserved,
            self.sold,
            self.received - units,
        )
    }

    /// Adds `units` received from a supplier.
    pub fn restock(&self, units: u64) -> Result<Stock, StockError> {
        let on_hand = self
            .on_hand
            .checked_add(units)
            .ok_or(StockError::AboveLimit)?;
        let received = self
            .received
            .checked_add(units)
            .ok_or(StockError::AboveLimit)?;
        Stock::new(on_hand, self.reserved, self.sold, received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_checked_when_read() {
        assert!(Stock::from_row(10, 3, 5, 15).is_ok());
        assert!(
            Stock::from_row(10, 11, 0, 10).is_err(),
            "reserved above on hand"
        );
        assert!(Stock::from_row(10, 0, 5, 14).is_err(), "unbalanced");
        assert!(Stock::from_row(-1, 0, 0, -1).is_err(), "negative");
    }

    #[test]
    fn changes_keep_the_invariants() {
        let stock = Stock::received(5).unwrap();
        let held = stock.hold(5).unwrap();
        assert_eq!(held.available(), 0);
        assert!(held.hold(1).is_none(), "nothing left to hold");
        let sold = held.sell(2).unwrap();
        assert_eq!((sold.on_hand(), sold.reserved(), sold.sold()), (3, 3, 2));
        assert_eq!(sold.release(3).unwrap().available(), 3);
        assert!(sold.release(4).is_err(), "more than reserved");
        assert!(sold.restock(MAX_STOCK_PER_PRODUCT).is_err());
        assert_eq!(sold.restock(7).unwrap().received_total(), 12);
        let freed = sold.release(2).unwrap();
        let written_off = freed.adjust(-2).unwrap();
        assert_eq!(
            (
                written_off.on_hand(),
                written_off.reserved(),
                written_off.received_total()
            ),
            (1, 1, 3)
        );
        assert!(freed.adjust(-3).is_err(), "reserved units are promised");
        assert_eq!(freed.adjust(4).unwrap().on_hand(), 7);
    }
}
