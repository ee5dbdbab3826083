//! Driving one scenario's load against one system: the operator's settings
//! some scenarios start with (a purchase limit), the storm, the extra
//! traffic some scenarios need (cancels, redeliveries, stock adjustments),
//! waiting for the system to go quiet, and collecting the probes' and the
//! checker's findings.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::operator::{
    adjust_concurrently, customers_over_limit, limit_answers, lost_adjustments, operator_client,
    set_limit,
};
use super::probes::{
    Watched, Watcher, double_charges, monitor_anomalies, redeliver_fixed, redeliver_naive,
};
use super::report::{check_anomalies, fixed_summary, torn_headline};
use super::{
    Anomaly, LAB_REQUEST_TIMEOUT_MS, LIMIT_CUSTOMER, LOCK_EXPIRY_ORDERS, LOCK_PAUSE_MS, LabError,
    PURCHASE_LIMIT, QUIESCE_POLL_MS, QUIESCE_QUIET_POLLS, QUIESCE_TIMEOUT_MS, STORM_ORDERS,
    Scenario, SideOutcome, SystemUrls,
};
use crate::check::{CheckConfig, HistorySource, run_check};
use crate::storm::{StormConfig, run_storm};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Naive,
    Fixed,
}

/// The lab's client, carrying the system's internal token when it has one
/// (public routes ignore it).
fn client(urls: &SystemUrls) -> reqwest::Client {
    bearer_client(urls.internal_token.as_deref())
}

/// A client for the lab's calls, bounded by [`LAB_REQUEST_TIMEOUT_MS`], that
/// sends `token` (when there is one) as a bearer credential.
pub(super) fn bearer_client(token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token
        && let Ok(mut value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
    {
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .timeout(Duration::from_millis(LAB_REQUEST_TIMEOUT_MS))
        .default_headers(headers)
        .build()
        .expect("a client with no TLS or proxy settings always builds")
}

/// Drives one scenario's load against one system and collects what went wrong.
pub(super) async fn drive(
    scenario: Scenario,
    urls: &SystemUrls,
    side: Side,
    sync: bool,
    data_dir: Option<PathBuf>,
) -> Result<SideOutcome, LabError> {
    let http = client(urls);
    let operator = operator_client(urls);
    let operator_failed = |source| LabError::Operator {
        scenario: scenario.name(),
        source,
    };
    if scenario == Scenario::LimitBypass {
        set_limit(&operator, urls, PURCHASE_LIMIT)
            .await
            .map_err(operator_failed)?;
    }
    let watcher = Watcher::start(http.clone(), urls.data.clone());
    let report = run_storm(storm_config(scenario, urls, sync))
        .await
        .map_err(|source| LabError::Storm {
            scenario: scenario.name(),
            source,
        })?;
    let placed: Vec<String> = report
        .history
        .iter()
        .filter(|event| event.kind == crate::history::EventType::Ok)
        .filter_map(|event| event.value.order_id.clone())
        .collect();
    let calls = Calls {
        http: &http,
        operator: &operator,
        urls,
    };
    let (mut anomalies, notes) = follow_up(scenario, side, &calls, &placed).await?;
    quiesce(&http, urls, quiet_polls(scenario)).await;
    anomalies.extend(watched_anomalies(watcher.stop().await));
    if side == Side::Naive {
        anomalies.extend(double_charges(&http, urls).await);
    }
    if scenario == Scenario::LimitBypass {
        let over = customers_over_limit(&http, urls, PURCHASE_LIMIT).await;
        anomalies.extend(over.map_err(operator_failed)?);
        // Stockroom must also refuse exactly the orders past the limit.
        if side == Side::Fixed {
            anomalies.extend(limit_answers(&report.history, PURCHASE_LIMIT));
        }
    }
    let mut check = CheckConfig::new(&urls.order, &urls.data);
    check.history = HistorySource::Events(report.history.clone());
    // The system is quiet now, so any order not in a final status is stuck.
    check.stuck_after_ms = 0;
    check.data_dir = data_dir;
    // With the operator's token the checker also replays the ledger and
    // checks every reservation against the limit then in force.
    check.operator_token = urls
        .operator_token
        .as_deref()
        .and_then(|token| stockroom_http_kit::OperatorToken::parse(token).ok());
    let checked = run_check(&check).await.map_err(|source| LabError::Check {
        scenario: scenario.name(),
        source,
    })?;
    anomalies.extend(check_anomalies(&checked));
    anomalies.extend(monitor_anomalies(&http, urls, side == Side::Naive).await);
    let summary = fixed_summary(&checked, &report.summary, &notes);
    Ok(SideOutcome {
        anomalies,
        summary,
        orders: report.summary.orders,
        failed: report.summary.errors,
    })
}

/// The storm that exposes `scenario`'s race: as many orders as workers, or
/// fewer where the scenario's follow-up needs each order to count.
fn storm_config(scenario: Scenario, urls: &SystemUrls, sync: bool) -> StormConfig {
    let mut storm = StormConfig::new(&urls.order, STORM_ORDERS);
    // A synchronised storm has one target: its waves go to the first host.
    if !sync {
        storm
            .order_urls
            .extend(urls.other_hosts_orders.iter().cloned());
    }
    storm.concurrency = STORM_ORDERS as usize;
    storm.keep_history = true;
    storm.sync = sync;
    match scenario {
        Scenario::DuplicateDelivery | Scenario::StaleOrder | Scenario::CrashAfterPublish => {
            storm.orders = Some(STORM_ORDERS / 2);
        }
        Scenario::LockExpiry => storm.orders = Some(LOCK_EXPIRY_ORDERS),
        Scenario::LimitBypass => storm.customer = Some(LIMIT_CUSTOMER.to_owned()),
        // The operators' adjustments are the load; no order runs with them.
        Scenario::StaleAdjustment => storm.orders = Some(0),
        _ => {}
    }
    storm
}

/// The traffic some scenarios need after their storm (cancels, a
/// publisher's restart, redeliveries); answers the anomalies it saw and the
/// notes for the scenario's summary.
async fn follow_up(
    scenario: Scenario,
    side: Side,
    calls: &Calls<'_>,
    placed: &[String],
) -> Result<(Vec<Anomaly>, Vec<String>), LabError> {
    let Calls { http, urls, .. } = *calls;
    match scenario {
        Scenario::StaleOrder => Ok((Vec::new(), vec![cancel_all(http, urls, placed).await])),
        Scenario::CrashAfterPublish if side == Side::Naive => {
            // The crashed publisher comes back and publishes again.
            tokio::time::sleep(Duration::from_millis(
                stockroom_naive::order::RESTART_DELAY_MS,
            ))
            .await;
            Ok((Vec::new(), Vec::new()))
        }
        // Stockroom has no publisher to crash: its relay publishes from the
        // outbox and marks a row sent only after the broker confirmed it, so
        // a crash in between is a redelivery, which its consumers ignore.
        Scenario::DuplicateDelivery | Scenario::CrashAfterPublish => {
            quiesce(http, urls, quiet_polls(scenario)).await;
            let redelivered = match side {
                Side::Naive => redeliver_naive(http, urls).await,
                Side::Fixed => redeliver_fixed(http, urls, placed).await,
            }
            .map_err(|source| LabError::Redelivery {
                scenario: scenario.name(),
                source,
            })?;
            let mut anomalies = Vec::new();
            if side == Side::Fixed && redelivered.applied > 0 {
                anomalies.push(Anomaly {
                    kind: "redelivery_applied".into(),
                    text: format!("{} redelivered events had an effect", redelivered.applied),
                });
            }
            let note = format!(
                "{} events redelivered, {} ignored as duplicates",
                redelivered.sent, redelivered.ignored
            );
            Ok((anomalies, vec![note]))
        }
        Scenario::LimitBypass => Ok((
            Vec::new(),
            vec![format!("limit {PURCHASE_LIMIT} per customer")],
        )),
        Scenario::StaleAdjustment => {
            stale_adjustments(calls)
                .await
                .map_err(|source| LabError::Operator {
                    scenario: scenario.name(),
                    source,
                })
        }
        _ => Ok((Vec::new(), Vec::new())),
    }
}

/// The clients a scenario's traffic goes through, and where.
#[derive(Clone, Copy)]
struct Calls<'a> {
    http: &'a reqwest::Client,
    /// With the operator's token, for the operator's routes.
    operator: &'a reqwest::Client,
    urls: &'a SystemUrls,
}

/// The operators' concurrent adjustments; once the system is quiet, an
/// anomaly if the figure lost any of them.
async fn stale_adjustments(
    calls: &Calls<'_>,
) -> Result<(Vec<Anomaly>, Vec<String>), reqwest::Error> {
    let adjusted = adjust_concurrently(calls.operator, calls.urls).await?;
    quiesce(calls.http, calls.urls, QUIESCE_QUIET_POLLS).await;
    let lost = lost_adjustments(calls.http, calls.urls, &adjusted).await?;
    Ok((lost, vec![adjusted.note()]))
}

/// Cancels every placed order at once; answers how many were cancelled and
/// how many were already too far along.
async fn cancel_all(http: &reqwest::Client, urls: &SystemUrls, placed: &[String]) -> String {
    let cancels = placed.iter().map(|id| {
        let http = http.clone();
        let url = format!("{}/api/orders/{id}/cancel", urls.order);
        async move {
            http.post(url)
                .send()
                .await
                .map(|response| response.status().as_u16())
                .unwrap_or(0)
        }
    });
    let statuses = futures_join_all(cancels).await;
    let cancelled = statuses.iter().filter(|status| **status == 200).count();
    let refused = statuses.iter().filter(|status| **status == 409).count();
    format!("{cancelled} cancelled, {refused} too late to cancel")
}

/// What the status watcher saw, as anomalies: statuses that moved
/// backwards, and reads that failed (torn files).
fn watched_anomalies(watched: Watched) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    if watched.reverted > 0 {
        anomalies.push(Anomaly {
            kind: "status_reverted".into(),
            text: format!(
                "status reverted {} ({} orders)",
                watched.first_reversion.clone().unwrap_or_default(),
                watched.reverted
            ),
        });
    }
    if watched.unreadable > 0 {
        anomalies.push(Anomaly {
            kind: "torn_reads".into(),
            text: torn_headline(watched.unreadable, watched.first_unreadable.as_deref()),
        });
    }
    anomalies
}

/// How many identical reads in a row count as quiet for `scenario`: in the
/// lock-expiry scenario nothing changes while a payment pauses its worker, so
/// quiet must last longer than that pause.
fn quiet_polls(scenario: Scenario) -> u32 {
    if scenario == Scenario::LockExpiry {
        let pause_polls = LOCK_PAUSE_MS.div_ceil(QUIESCE_POLL_MS) as u32;
        QUIESCE_QUIET_POLLS.max(pause_polls + 2)
    } else {
        QUIESCE_QUIET_POLLS
    }
}

/// Waits until the reads of the stock and orders stay the same for
/// `quiet_polls` polls in a row (or the timeout passes).
async fn quiesce(http: &reqwest::Client, urls: &SystemUrls, quiet_polls: u32) {
    let deadline = Instant::now() + Duration::from_millis(QUIESCE_TIMEOUT_MS);
    let mut previous = String::new();
    let mut quiet = 0;
    while Instant::now() < deadline && quiet < quiet_polls {
        tokio::time::sleep(Duration::from_millis(QUIESCE_POLL_MS)).await;
        let mut snapshot = String::new();
        for path in ["/inventory", "/orders?limit=500"] {
            match http.get(format!("{}{path}", urls.data)).send().await {
                Ok(response) => snapshot.push_str(&response.text().await.unwrap_or_default()),
                Err(error) => snapshot.push_str(&error.to_string()),
            }
        }
        if snapshot == previous {
            quiet += 1;
        } else {
            quiet = 0;
            previous = snapshot;
        }
    }
}

/// Runs futures concurrently and collects their outputs in order.
pub(super) async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        if let Ok(output) = handle.await {
            outputs.push(output);
        }
    }
    outputs
}
