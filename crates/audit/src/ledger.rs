//! The auditor's replay of every product's ledger, kept between audits: each
//! audit reads only the movements committed since the last, up to the
//! `movementSeq` the stock it just read stands at, and compares the sums
//! with those figures. The cost follows the movements made, not the
//! ledger's length, and the comparison is exact however busy the system is:
//! the figures say which movement they stand at.
//!
//! The ledger is the operator's: the auditor reads it only when given the
//! operator token. The purchase limit, which needs each reservation's
//! customer, is checked by `stockroom check` and the storage tests over the
//! whole ledger, not here on every interval.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Deserialize;
use stockroom_domain::invariants::{Invariant, MovementFigures, StockFigures};
use stockroom_http_kit::{OperatorToken, ServiceClient};

use crate::{ReadError, Violation};

/// The most movements read per request (the service's own limit).
pub const LEDGER_PAGE_SIZE: u32 = 1_000;

/// The most pages of movements one audit reads across every product; a
/// product not caught up by then is compared at a later audit.
pub const MAX_LEDGER_PAGES_PER_AUDIT: u32 = 50;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MovementPage {
    movements: Vec<MovementFigures>,
    #[serde(default)]
    next_cursor: Option<u64>,
}

/// How far one product's ledger was replayed, and its sums there.
#[derive(Debug, Clone, Copy, Default)]
struct Replay {
    seq: i64,
    on_hand: i64,
    reserved: i64,
    sold: i64,
}

/// The replays of every product, and the client that reads the ledger.
pub(crate) struct LedgerAudit {
    data: ServiceClient,
    replays: Mutex<BTreeMap<String, Replay>>,
}

/// What one audit found of the ledger.
pub(crate) struct LedgerFindings {
    pub violations: Vec<Violation>,
    /// Whether every product's replay reached its figures.
    pub caught_up: bool,
}

impl LedgerAudit {
    pub(crate) fn new(data_url: &str, token: &OperatorToken) -> LedgerAudit {
        LedgerAudit {
            data: ServiceClient::new("data-service", data_url).with_operator_token(token),
            replays: Mutex::new(BTreeMap::new()),
        }
    }

    /// Replays what each product moved since the last audit and compares.
    pub(crate) async fn audit(&self, stock: &[StockFigures]) -> Result<LedgerFindings, ReadError> {
        let mut violations = Vec::new();
        let mut caught_up = true;
        let mut pages = 0;
        for item in stock {
            let Some(target) = item.movement_seq else {
                continue;
            };
            let key = item.key();
            let mut replay = self.replay_of(&key);
            if replay.seq > target {
                // The stock stands before what was replayed: only a restored
                // or rewritten database does that. Start over.
                replay = Replay::default();
            }
            while replay.seq < target && pages < MAX_LEDGER_PAGES_PER_AUDIT {
                pages += 1;
                let page: MovementPage = self
                    .data
                    .get_query(
                        &format!("/inventory/{}/movements", encode(&item.product)),
                        &[
                            ("after", replay.seq.to_string()),
                            ("limit", LEDGER_PAGE_SIZE.to_string()),
                        ],
                    )
                    .await
                    .map_err(ReadError::of("the ledger"))?;
                let before = replay.seq;
                for movement in page.movements.iter().take_while(|m| m.seq <= target) {
                    if movement.seq != replay.seq + 1 {
                        violations.push(gap(&item.product, replay.seq + 1, movement.seq));
                        break;
                    }
                    replay.seq = movement.seq;
                    replay.on_hand += movement.delta.on_hand;
                    replay.reserved += movement.delta.reserved;
                    replay.sold += movement.delta.sold;
                }
                if replay.seq == before || page.next_cursor.is_none() {
                    break;
                }
            }
            self.keep(&key, replay);
            if replay.seq != target {
                caught_up = false;
                continue;
            }
            let sold_matches = item.sold.is_none_or(|sold| sold == replay.sold);
            if replay.on_hand != item.on_hand || replay.reserved != item.reserved || !sold_matches {
                violations.push(Violation {
                    invariant: Invariant::LedgerMatchesStock.name().to_owned(),
                    product: item.product.clone(),
                    expected: format!(
                        "quantity {}, reservedQuantity {} at movement {target}",
                        item.on_hand, item.reserved
                    ),
                    actual: format!(
                        "the ledger replays to quantity {}, reservedQuantity {}, sold {}",
                        replay.on_hand, replay.reserved, replay.sold
                    ),
                });
            }
        }
        Ok(LedgerFindings {
            violations,
            caught_up,
        })
    }

    fn replay_of(&self, key: &str) -> Replay {
        self.replays
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(key)
            .copied()
            .unwrap_or_default()
    }

    fn keep(&self, key: &str, replay: Replay) {
        self.replays
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key.to_owned(), replay);
    }
}

fn gap(product: &str, expected: i64, found: i64) -> Violation {
    Violation {
        invariant: Invariant::LedgerMatchesStock.name().to_owned(),
        product: product.to_owned(),
        expected: format!("movement {expected} next"),
        actual: format!("movement {found}"),
    }
}

/// A product name as one path segment.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
