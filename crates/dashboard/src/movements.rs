//! The movement feed: the stock ledger's latest movements across every
//! product, newest first, as the page's live feed shows them.
//!
//! data-service keeps one ledger per product, numbered without gaps, and
//! every item of `GET /inventory` carries the number of its product's last
//! movement (`movementSeq`). So a poll knows, from the stock it reads
//! anyway, which products moved since the last one and by how many
//! movements, and reads only those: at most [`MOVEMENT_FEED_LENGTH`]
//! movements of at most [`MAX_LEDGER_READS_PER_POLL`] products. The cost
//! follows the products that moved, never the length of the ledger.
//!
//! The planning and merging here are pure; the collector does the reads.

use std::collections::BTreeMap;

use serde::Serialize;
use stockroom_contract::stock_operations::{MovementDocument, MovementSettings};

/// The most movements the feed shows: a screenful, enough to follow an
/// operator's adjustment or a burst of orders. It also bounds what a poll
/// reads of one product and what each snapshot carries.
pub const MOVEMENT_FEED_LENGTH: usize = 25;

/// The most products whose ledger one poll reads. Each read is one request
/// to data-service; when more products moved (a sale across the whole
/// catalogue), the others are read at the next polls, in turn.
pub const MAX_LEDGER_READS_PER_POLL: usize = 8;

// A read asks for at most the feed's length, which data-service serves in
// one page.
const _: () = assert!(
    MOVEMENT_FEED_LENGTH
        <= stockroom_contract::stock_operations::DEFAULT_MOVEMENTS_PER_PAGE as usize
);
const _: () = assert!(MAX_LEDGER_READS_PER_POLL > 0);

/// One movement as the feed shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedEntry {
    pub product: String,
    /// The movement's number in its product's ledger.
    pub seq: u64,
    /// opening, created, received, adjusted, reserved, released, sold or
    /// settings.
    pub kind: String,
    /// An adjustment's reason (received, damaged, …); none for an order's.
    pub reason: Option<String>,
    /// The order that caused it, the operator's reference, or the settings
    /// a settings change put in force.
    pub cause: Option<String>,
    pub on_hand_delta: i64,
    pub reserved_delta: i64,
    pub sold_delta: i64,
    /// When it was committed (Unix milliseconds).
    pub at_ms: i64,
}

impl FeedEntry {
    /// A movement of `product`'s ledger as data-service answers it.
    pub fn from_document(product: &str, movement: &MovementDocument) -> FeedEntry {
        FeedEntry {
            product: product.to_owned(),
            seq: movement.seq,
            kind: movement.kind.clone(),
            reason: movement.reason.clone(),
            cause: movement
                .order_id
                .as_ref()
                .map(|order| format!("order {order}"))
                .or_else(|| movement.reference.clone())
                .or_else(|| movement.settings.as_ref().map(settings_in_force)),
            on_hand_delta: movement.delta.on_hand,
            reserved_delta: movement.delta.reserved,
            sold_delta: movement.delta.sold,
            at_ms: movement.at_ms,
        }
    }
}

/// `limit 3 per customer, low at 10`, with `none` for a setting unset.
fn settings_in_force(settings: &MovementSettings) -> String {
    let limit = settings
        .max_per_customer
        .map_or("none".to_owned(), |limit| limit.to_string());
    let threshold = settings
        .low_stock_threshold
        .map_or("none".to_owned(), |threshold| threshold.to_string());
    format!("limit {limit} per customer, low at {threshold}")
}

/// The feed as the snapshot carries it.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MovementPanel {
    /// The latest movements, newest first, at most [`MOVEMENT_FEED_LENGTH`].
    pub entries: Vec<FeedEntry>,
    /// Why there is no feed at all (no operator token, no ledger).
    pub unavailable: Option<String>,
    /// The last read that failed, if any.
    pub error: Option<String>,
}

/// One read of a product's ledger: the movements after `after`, at most
/// `limit` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRead {
    pub product: String,
    pub after: u64,
    pub limit: u32,
}

/// What the feed knows between polls.
#[derive(Debug, Default)]
pub struct Feed {
    /// The number of the last movement read, per product.
    seen: BTreeMap<String, u64>,
    /// Newest first, at most [`MOVEMENT_FEED_LENGTH`].
    entries: Vec<FeedEntry>,
    /// Where the next poll starts among the products that moved, so that
    /// each gets read when more moved than a poll reads.
    turn: usize,
}

impl Feed {
    /// The reads this poll makes, given each listed product's last movement
    /// number (`None` where the system keeps no ledger). Forgets products no
    /// longer listed, and a product whose ledger went back (a fresh
    /// database behind the same URL): its movements are read again.
    pub fn plan(&mut self, products: &[(String, Option<u64>)]) -> Vec<LedgerRead> {
        self.seen
            .retain(|product, _| products.iter().any(|(listed, _)| listed == product));
        let mut moved = Vec::new();
        for (product, last) in products {
            let Some(last) = *last else { continue };
            let seen = self.seen.get(product).copied().unwrap_or(0);
            if last < seen {
                self.forget(product);
            }
            let seen = self.seen.get(product).copied().unwrap_or(0);
            if last > seen {
                // Only the latest movements can make the feed: older ones
                // would be pushed out by these at once.
                let after = seen.max(last.saturating_sub(MOVEMENT_FEED_LENGTH as u64));
                let limit = u32::try_from(last - after).unwrap_or(u32::MAX);
                moved.push(LedgerRead {
                    product: product.clone(),
                    after,
                    limit,
                });
            }
        }
        if moved.len() <= MAX_LEDGER_READS_PER_POLL {
            return moved;
        }
        let start = self.turn % moved.len();
        self.turn = start + MAX_LEDGER_READS_PER_POLL;
        moved.rotate_left(start);
        moved.truncate(MAX_LEDGER_READS_PER_POLL);
        moved
    }

    /// Takes the movements read of `product`, keeping the latest
    /// [`MOVEMENT_FEED_LENGTH`] of all products, newest first.
    pub fn take(&mut self, product: &str, movements: &[MovementDocument]) {
        let Some(last) = movements.iter().map(|movement| movement.seq).max() else {
            return;
        };
        let seen = self.seen.entry(product.to_owned()).or_default();
        let already = *seen;
        *seen = already.max(last);
        self.entries.extend(
            movements
                .iter()
                .filter(|movement| movement.seq > already)
                .map(|movement| FeedEntry::from_document(product, movement)),
        );
        // Commit time orders movements across products; a product's own
        // numbers order those committed in the same millisecond.
        self.entries
            .sort_by(|a, b| (b.at_ms, &b.product, b.seq).cmp(&(a.at_ms, &a.product, a.seq)));
        self.entries.truncate(MOVEMENT_FEED_LENGTH);
    }

    /// The latest movements, newest first.
    pub fn entries(&self) -> Vec<FeedEntry> {
        self.entries.clone()
    }

    fn forget(&mut self, product: &str) {
        self.seen.remove(product);
        self.entries.retain(|entry| entry.product != product);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn movement(seq: u64, at_ms: i64, order: Option<&str>) -> MovementDocument {
        serde_json::from_value(json!({
            "seq": seq, "kind": if order.is_some() { "reserved" } else { "adjusted" },
            "reason": if order.is_some() { None } else { Some("received") },
            "reference": if order.is_some() { None } else { Some("PO-7") },
            "orderId": order,
            "delta": {"onHand": 0, "reserved": 1, "sold": 0}, "atMs": at_ms
        }))
        .unwrap()
    }

    fn listed(products: &[(&str, Option<u64>)]) -> Vec<(String, Option<u64>)> {
        products
            .iter()
            .map(|(name, seq)| ((*name).to_owned(), *seq))
            .collect()
    }

    #[test]
    fn a_poll_reads_only_the_latest_movements_of_products_that_moved() {
        let mut feed = Feed::default();
        let reads = feed.plan(&listed(&[
            ("Laptop", Some(1_000)),
            ("Phone", Some(3)),
            ("Naive", None),
        ]));
        assert_eq!(
            reads,
            [
                LedgerRead {
                    product: "Laptop".into(),
                    after: 1_000 - MOVEMENT_FEED_LENGTH as u64,
                    limit: MOVEMENT_FEED_LENGTH as u32
                },
                LedgerRead {
                    product: "Phone".into(),
                    after: 0,
                    limit: 3
                },
            ]
        );
        feed.take(
            "Phone",
            &[
                movement(1, 10, None),
                movement(2, 11, None),
                movement(3, 12, None),
            ],
        );
        let reads = feed.plan(&listed(&[("Phone", Some(5))]));
        assert_eq!(
            reads,
            [LedgerRead {
                product: "Phone".into(),
                after: 3,
                limit: 2
            }]
        );
        feed.take("Phone", &[movement(4, 13, None), movement(5, 14, None)]);
        assert!(feed.plan(&listed(&[("Phone", Some(5))])).is_empty());
    }

    #[test]
    fn the_feed_is_newest_first_across_products_and_bounded() {
        let mut feed = Feed::default();
        feed.take(
            "Laptop",
            &[movement(1, 100, Some("o-1")), movement(2, 300, Some("o-2"))],
        );
        feed.take("Phone", &[movement(1, 200, None)]);
        let entries = feed.entries();
        let order: Vec<(&str, u64)> = entries
            .iter()
            .map(|entry| (entry.product.as_str(), entry.seq))
            .collect();
        assert_eq!(order, [("Laptop", 2), ("Phone", 1), ("Laptop", 1)]);
        assert_eq!(entries[0].cause.as_deref(), Some("order o-2"));
        assert_eq!(entries[1].cause.as_deref(), Some("PO-7"));
        assert_eq!(entries[1].reason.as_deref(), Some("received"));
        let many: Vec<MovementDocument> = (3..200)
            .map(|seq| movement(seq, 1_000 + seq as i64, None))
            .collect();
        feed.take("Laptop", &many);
        assert_eq!(feed.entries().len(), MOVEMENT_FEED_LENGTH);
        assert_eq!(feed.entries()[0].seq, 199);
        // A movement read twice is listed once.
        feed.take("Laptop", &many[many.len() - 2..]);
        assert_eq!(feed.entries()[1].seq, 198);
    }

    #[test]
    fn a_settings_change_names_the_settings_in_force() {
        let change: MovementDocument = serde_json::from_value(json!({
            "seq": 4, "kind": "settings", "reason": null, "reference": null,
            "delta": {"onHand": 0, "reserved": 0, "sold": 0},
            "settings": {"maxPerCustomer": 3, "lowStockThreshold": null}, "atMs": 5
        }))
        .unwrap();
        let entry = FeedEntry::from_document("Phone", &change);
        assert_eq!(
            entry.cause.as_deref(),
            Some("limit 3 per customer, low at none")
        );
    }

    #[test]
    fn many_moving_products_are_read_in_turn() {
        let mut feed = Feed::default();
        let products: Vec<(String, Option<u64>)> = (0..MAX_LEDGER_READS_PER_POLL * 2 + 1)
            .map(|index| (format!("P{index:02}"), Some(1)))
            .collect();
        let mut read = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let reads = feed.plan(&products);
            assert!(reads.len() <= MAX_LEDGER_READS_PER_POLL);
            for planned in reads {
                feed.take(&planned.product, &[movement(1, 5, None)]);
                read.insert(planned.product);
            }
        }
        assert_eq!(read.len(), products.len(), "every product was read");
    }

    #[test]
    fn a_ledger_that_went_back_is_read_again() {
        let mut feed = Feed::default();
        feed.take("Laptop", &[movement(7, 100, None)]);
        let reads = feed.plan(&listed(&[("Laptop", Some(2))]));
        assert_eq!(reads[0].after, 0);
        assert!(
            feed.entries().is_empty(),
            "the old database's movements are dropped"
        );
        feed.plan(&listed(&[]));
        assert!(
            feed.seen.is_empty(),
            "a product no longer listed is forgotten"
        );
    }
}
