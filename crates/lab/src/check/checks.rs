//! The individual checks: each turns what was read into one outcome
//! (expected, actual, verdict and evidence).

use super::*;

pub(super) fn outcome(
    name: &str,
    expected: String,
    good: String,
    details: Vec<String>,
) -> CheckOutcome {
    let passed = details.is_empty();
    let actual = if passed {
        good
    } else {
        let mut shown = details
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if details.len() > 3 {
            shown.push_str(&format!("; and {} more", details.len() - 3));
        }
        shown
    };
    CheckOutcome {
        name: name.to_owned(),
        passed,
        verdict: if passed {
            CheckVerdict::Holds
        } else {
            CheckVerdict::Violated
        },
        expected,
        evidence: actual.clone(),
        actual,
        count: details.len(),
        details: details.into_iter().take(MAX_DETAILS).collect(),
    }
}

impl Order {
    fn figures(&self) -> OrderFigures {
        OrderFigures {
            id: self.id.clone(),
            status: self.status.clone(),
            lines: self
                .items
                .iter()
                .map(|line| (line.product.name.clone(), line.quantity))
                .collect(),
            history: self
                .history
                .iter()
                .map(|entry| (entry.status.clone(), entry.reason.clone()))
                .collect(),
        }
    }
}

/// The verdict of one invariant from the violations found of it.
pub(super) fn verdict(
    invariant: Invariant,
    violations: &[Violation],
    good: String,
) -> CheckOutcome {
    outcome(
        invariant.name(),
        invariant.expectation().to_owned(),
        good,
        violations
            .iter()
            .filter(|violation| violation.invariant == invariant)
            .map(ToString::to_string)
            .collect(),
    )
}

/// The stock invariants ([`stockroom_domain::invariants`]): each product on
/// its own, and, with the orders, against what the orders hold and took.
pub(super) fn stock_checks(
    stock: &[StockFigures],
    orders: Option<&[Order]>,
    config: &CheckConfig,
) -> Vec<CheckOutcome> {
    let mut violations: Vec<Violation> = stock.iter().flat_map(invariants::check_stock).collect();
    let lowest = stock.iter().map(StockFigures::available).min().unwrap_or(0);
    let mut checks = vec![
        verdict(
            Invariant::AvailableNonNegative,
            &violations,
            format!("lowest available {lowest}"),
        ),
        verdict(
            Invariant::ReservedWithinOnHand,
            &violations,
            "every reservation is covered by stock on hand".into(),
        ),
    ];
    let Some(orders) = orders else {
        return checks;
    };
    let figures: Vec<OrderFigures> = orders.iter().map(Order::figures).collect();
    let reserved = invariants::units_by_status(&figures, OrderStatus::Reserved);
    let fulfilled = invariants::units_by_status(&figures, OrderStatus::Fulfilled);
    violations.extend(invariants::check_reserved_sums(stock, &reserved));
    violations.extend(invariants::check_sold_sums(stock, &fulfilled));
    if let Some(initial) = &config.initial_stock {
        violations.extend(invariants::check_against_initial(
            stock, initial, &fulfilled,
        ));
    }
    checks.push(verdict(
        Invariant::ReservedMatchesOrders,
        &violations,
        format!(
            "{} units reserved, all held by reserved orders",
            stock.iter().map(|item| item.reserved).sum::<i64>()
        ),
    ));
    checks.push(verdict(
        Invariant::Conservation,
        &violations,
        "every unit is on hand or sold".into(),
    ));
    checks.push(verdict(
        Invariant::SoldMatchesFulfilled,
        &violations,
        format!(
            "{} units sold, all by fulfilled orders",
            fulfilled.values().sum::<i64>()
        ),
    ));
    checks
}

/// The order invariants ([`stockroom_domain::invariants::check_order`]).
pub(super) fn order_checks(orders: &[Order]) -> Vec<CheckOutcome> {
    let violations: Vec<Violation> = orders
        .iter()
        .flat_map(|order| invariants::check_order(&order.figures()))
        .collect();
    vec![
        verdict(
            Invariant::NoDoubleEffects,
            &violations,
            "every effect happened at most once".into(),
        ),
        verdict(
            Invariant::StatusesMoveForward,
            &violations,
            "no status went backwards".into(),
        ),
        verdict(
            Invariant::ChargedOrdersNotCancelled,
            &violations,
            "every charged order was fulfilled or is still reserved".into(),
        ),
    ]
}

pub(super) fn unique_orders(orders: &[Order]) -> CheckOutcome {
    let mut seen = BTreeSet::new();
    let duplicated: BTreeSet<&str> = orders
        .iter()
        .filter(|order| !seen.insert(order.id.as_str()))
        .map(|order| order.id.as_str())
        .collect();
    outcome(
        "orders_unique",
        "every order id listed once".into(),
        format!("{} distinct orders", seen.len()),
        duplicated
            .into_iter()
            .map(|id| format!("order {id} is listed more than once"))
            .collect(),
    )
}

pub(super) fn parse_time(text: Option<&str>) -> Option<SystemTime> {
    text.and_then(|text| humantime::parse_rfc3339_weak(text).ok())
}

pub(super) fn stuck_orders(orders: &[Order], stuck_after_ms: u64) -> CheckOutcome {
    let now = SystemTime::now();
    let limit = Duration::from_millis(stuck_after_ms);
    let mut details = Vec::new();
    for order in orders {
        let Ok(status) = order.status.parse::<OrderStatus>() else {
            continue;
        };
        if status.is_final() {
            continue;
        }
        let changed = parse_time(order.updated_at.as_deref())
            .or_else(|| parse_time(order.created_at.as_deref()));
        let age = changed.and_then(|changed| now.duration_since(changed).ok());
        if age.is_none_or(|age| age >= limit) {
            details.push(format!(
                "order {} still {} after {}",
                order.id,
                order.status,
                age.map_or("an unknown time".to_owned(), |age| format!(
                    "{} ms",
                    age.as_millis()
                ))
            ));
        }
    }
    outcome(
        "no_stuck_orders",
        format!("no order in a non-final status for {stuck_after_ms} ms or more"),
        "every order reached a final status or is recent".into(),
        details,
    )
}

pub(super) fn history_checks(
    orders: &[Order],
    history: &[HistoryEvent],
) -> (CheckOutcome, CheckOutcome) {
    let mut listed: HashMap<&str, usize> = HashMap::new();
    for order in orders {
        *listed.entry(order.id.as_str()).or_insert(0) += 1;
    }
    let mut acknowledged = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut unexplained = 0usize;
    let mut details = Vec::new();
    for event in history {
        match event.kind {
            EventType::Invoke => {}
            EventType::Ok => match &event.value.order_id {
                Some(id) => {
                    acknowledged.insert(id.as_str());
                    seen.insert(id.as_str());
                }
                None => details.push(format!(
                    "process {} at {} ns was acknowledged without an order id",
                    event.process, event.time
                )),
            },
            EventType::Fail | EventType::Info => match &event.value.order_id {
                Some(id) => {
                    seen.insert(id.as_str());
                }
                // An operation whose outcome is unknown may have created an
                // order the client never heard of.
                None if event.kind == EventType::Info => unexplained += 1,
                None => {}
            },
        }
    }
    for id in &acknowledged {
        match listed.get(id).copied().unwrap_or(0) {
            1 => {}
            0 => details.push(format!("acknowledged order {id} is missing (lost)")),
            count => details.push(format!("acknowledged order {id} is listed {count} times")),
        }
    }
    let exist = outcome(
        "acknowledged_orders_exist",
        "every order acknowledged with a 2xx exists exactly once".into(),
        format!("all {} acknowledged orders exist once", acknowledged.len()),
        details,
    );
    let unknown: Vec<&str> = listed
        .keys()
        .copied()
        .filter(|id| !seen.contains(id))
        .collect();
    let unknown_details = if unknown.len() > unexplained {
        unknown
            .iter()
            .map(|id| format!("order {id} was never returned to the client"))
            .collect()
    } else {
        Vec::new()
    };
    let known = outcome(
        "no_unknown_orders",
        format!(
            "every order was returned to the client (up to {unexplained} from requests with unknown outcome)"
        ),
        format!(
            "{} orders, {} not seen by the client",
            listed.len(),
            unknown.len()
        ),
        unknown_details,
    );
    (exist, known)
}

pub(super) fn data_files(directory: &Path) -> CheckOutcome {
    let mut details = Vec::new();
    let mut found = Vec::new();
    for name in ["orders.json", "inventory.json"] {
        let path = directory.join(name);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        found.push(name);
        if let Err(error) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            let kind = if error.is_eof() {
                "truncated"
            } else {
                "corrupted"
            };
            details.push(format!("{name} is {kind} ({} bytes): {error}", bytes.len()));
        }
    }
    outcome(
        "data_files_parse",
        format!("every JSON data file in {} parses", directory.display()),
        if found.is_empty() {
            "no JSON data files there".into()
        } else {
            format!("{} parse", found.join(" and "))
        },
        details,
    )
}
