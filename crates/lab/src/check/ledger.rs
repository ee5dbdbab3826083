//! The ledger's checks: for a service that keeps one (its items report a
//! `movementSeq`), every product's movements are read from the operator's
//! route and replayed against its figures, and every reservation in them is
//! checked against the purchase limit then in force
//! ([`stockroom_domain::invariants::check_ledger`]).
//!
//! The figures say which movement they stand at, so the movements read
//! after them are cut there: exact however busy the service is.

use stockroom_domain::invariants::MovementFigures;

use super::*;

/// The most movements read per request (the service's own limit).
const MOVEMENT_PAGE_SIZE: u32 = 1_000;

/// The most pages read per product.
const MAX_MOVEMENT_PAGES: u32 = 100_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MovementPage {
    movements: Vec<MovementFigures>,
    #[serde(default)]
    next_cursor: Option<u64>,
}

/// Why the ledger was not checked, if it was not: no ledger kept, or no
/// token to read it.
pub(super) fn why_not_checked(
    stock: &[StockFigures],
    config: &CheckConfig,
) -> Option<&'static str> {
    if stock.iter().any(|item| item.movement_seq.is_none()) {
        return Some("the service keeps no ledger (its items report no movementSeq)");
    }
    if config.operator_token.is_none() {
        return Some("the ledger is the operator's: give the operator token to check it");
    }
    None
}

/// Reads each product's movements up to the figures' `movementSeq`.
pub(super) async fn read_ledgers(
    reader: &Reader,
    config: &CheckConfig,
    token: &stockroom_http_kit::OperatorToken,
    stock: &[StockFigures],
) -> Result<Vec<Vec<MovementFigures>>, CheckError> {
    let mut ledgers = Vec::with_capacity(stock.len());
    for item in stock {
        let upto = item.movement_seq.unwrap_or(0);
        let path = format!("/inventory/{}/movements", encode(&item.product));
        let mut movements: Vec<MovementFigures> = Vec::new();
        let mut after = 0_u64;
        for _ in 0..MAX_MOVEMENT_PAGES {
            let query = [
                ("after", after.to_string()),
                ("limit", MOVEMENT_PAGE_SIZE.to_string()),
            ];
            let page: MovementPage = reader
                .get_with_token("data-service", &config.data_url, &path, &query, token)
                .await?;
            movements.extend(page.movements);
            match page.next_cursor {
                Some(cursor) if (cursor as i64) < upto && cursor > after => after = cursor,
                _ => break,
            }
        }
        ledgers.push(movements);
    }
    Ok(ledgers)
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

/// The two ledger invariants, over every product.
pub(super) fn ledger_checks(
    stock: &[StockFigures],
    ledgers: &[Vec<MovementFigures>],
    orders: &[Order],
) -> Vec<CheckOutcome> {
    let customer_of: BTreeMap<String, String> = orders
        .iter()
        .filter_map(|order| Some((order.id.clone(), order.customer_id.clone()?)))
        .collect();
    let violations: Vec<Violation> = stock
        .iter()
        .zip(ledgers)
        .flat_map(|(item, movements)| invariants::check_ledger(item, movements, &customer_of))
        .collect();
    let movements: usize = ledgers.iter().map(Vec::len).sum();
    let limited = ledgers
        .iter()
        .filter(|movements| {
            movements.iter().any(|movement| {
                movement
                    .settings
                    .is_some_and(|settings| settings.max_per_customer.is_some())
            })
        })
        .count();
    vec![
        verdict(
            Invariant::LedgerMatchesStock,
            &violations,
            format!("{movements} movements replay to every product's figures"),
        ),
        verdict(
            Invariant::WithinPurchaseLimit,
            &violations,
            format!("no reservation passed a limit ({limited} products were limited)"),
        ),
    ]
}
