//! A service's health, part by part, and the unbounded wait for its
//! dependencies.
//!
//! Each part of a service (its dependencies, its storage, a consumer, a
//! relay) reports its own state; `/health` answers them all as JSON:
//!
//! ```json
//! {"status":"degraded","service":"data-service",
//!  "parts":{"storage":{"status":"ok","detail":{"writable":true}},
//!           "deadLetters":{"status":"degraded","detail":{"payment":2,"inventory":0}}}}
//! ```
//!
//! The service is `down` (503) when a part is down, `starting` (503) while a
//! part has not reported yet, `degraded` (200: it serves, but something needs
//! an operator) when a part is degraded, and `ok` otherwise.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

/// The first pause between two looks at a dependency that is not healthy;
/// it doubles up to [`MAX_DEPENDENCY_BACKOFF_MS`].
pub const MIN_DEPENDENCY_BACKOFF_MS: u64 = 100;

/// The longest pause between two looks at a dependency: a dependency that
/// comes back is noticed within this long.
pub const MAX_DEPENDENCY_BACKOFF_MS: u64 = 2_000;

/// How often a service still waiting for a dependency says so in the log.
pub const DEPENDENCY_LOG_INTERVAL_MS: u64 = 10_000;

/// One part's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartStatus {
    Ok,
    /// Works, but needs an operator's attention (dead letters, say).
    Degraded,
    /// Has not reported yet.
    Starting,
    /// Cannot do its work.
    Down,
}

#[derive(Debug, Clone, Serialize)]
struct Part {
    status: PartStatus,
    #[serde(skip_serializing_if = "Value::is_null")]
    detail: Value,
}

#[derive(Debug, Serialize)]
struct HealthDocument<'a> {
    status: PartStatus,
    service: &'static str,
    parts: &'a BTreeMap<String, Part>,
}

/// A service's parts and their states. Cloning shares them.
#[derive(Clone)]
pub struct Readiness {
    service: &'static str,
    parts: Arc<Mutex<BTreeMap<String, Part>>>,
}

impl Readiness {
    /// A service whose dependencies are still to be waited for.
    pub fn new(service: &'static str) -> Readiness {
        let readiness = Readiness {
            service,
            parts: Arc::new(Mutex::new(BTreeMap::new())),
        };
        readiness.set("dependencies", PartStatus::Starting, Value::Null);
        readiness
    }

    /// A service with no dependencies: ready from the start.
    pub fn ready(service: &'static str) -> Readiness {
        let readiness = Readiness::new(service);
        readiness.set("dependencies", PartStatus::Ok, Value::Null);
        readiness
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Part>> {
        // A panic while holding the lock leaves a map of plain values, still
        // worth answering with.
        self.parts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reports one part's state, with what shows it (`Value::Null` for
    /// nothing).
    pub fn set(&self, part: &str, status: PartStatus, detail: Value) {
        self.lock().insert(part.to_owned(), Part { status, detail });
    }

    /// The worst state of any part.
    pub fn status(&self) -> PartStatus {
        self.lock()
            .values()
            .map(|part| part.status)
            .max()
            .unwrap_or(PartStatus::Ok)
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.status(), PartStatus::Ok | PartStatus::Degraded)
    }

    /// The `/health` answer.
    pub fn health_response(&self) -> Response {
        let parts = self.lock();
        let status = parts
            .values()
            .map(|part| part.status)
            .max()
            .unwrap_or(PartStatus::Ok);
        let code = match status {
            PartStatus::Ok | PartStatus::Degraded => StatusCode::OK,
            PartStatus::Starting | PartStatus::Down => StatusCode::SERVICE_UNAVAILABLE,
        };
        let document = HealthDocument {
            status,
            service: self.service,
            parts: &parts,
        };
        let mut response = (code, Json(document)).into_response();
        if code == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(crate::RETRY_AFTER_SECONDS),
            );
        }
        response
    }

    /// Waits for each `(name, urls)` dependency in turn until it answers
    /// healthy, however long that takes, backing off up to
    /// [`MAX_DEPENDENCY_BACKOFF_MS`] and saying so in the log every
    /// [`DEPENDENCY_LOG_INTERVAL_MS`]; then marks the dependencies ready. A
    /// service never gives up on a dependency: it waits, visibly.
    pub async fn wait_for(&self, client: &reqwest::Client, dependencies: &[(&str, &str)]) {
        for (name, urls) in dependencies {
            for url in crate::client::split_urls(urls) {
                self.set(
                    "dependencies",
                    PartStatus::Starting,
                    serde_json::json!({ "waitingFor": format!("{name} at {url}") }),
                );
                wait_until_healthy(client, name, &url).await;
            }
        }
        self.set("dependencies", PartStatus::Ok, Value::Null);
    }
}

/// Polls `url/health` until it answers 200, forever.
async fn wait_until_healthy(client: &reqwest::Client, name: &str, url: &str) {
    let health_url = format!("{}/health", url.trim_end_matches('/'));
    let started = std::time::Instant::now();
    let mut next_log = Duration::ZERO;
    let mut backoff_ms = MIN_DEPENDENCY_BACKOFF_MS;
    loop {
        let last = match crate::serve::HealthAnswer::poll(client, &health_url).await {
            Ok(()) => {
                tracing::info!(dependency = name, url, "dependency is healthy");
                return;
            }
            Err(last) => last,
        };
        if started.elapsed() >= next_log {
            tracing::warn!(
                dependency = name,
                url,
                waited_s = started.elapsed().as_secs(),
                last = &last as &dyn std::error::Error,
                "waiting for a dependency; not giving up"
            );
            next_log = started.elapsed() + Duration::from_millis(DEPENDENCY_LOG_INTERVAL_MS);
        }
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        backoff_ms = (backoff_ms * 2).min(MAX_DEPENDENCY_BACKOFF_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_part_decides() {
        let readiness = Readiness::ready("test");
        assert_eq!(readiness.status(), PartStatus::Ok);
        readiness.set("deadLetters", PartStatus::Degraded, serde_json::json!(2));
        assert_eq!(readiness.status(), PartStatus::Degraded);
        assert!(readiness.is_ready(), "degraded still serves");
        readiness.set("storage", PartStatus::Down, serde_json::json!("disk full"));
        assert_eq!(readiness.status(), PartStatus::Down);
        assert_eq!(
            readiness.health_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        readiness.set("storage", PartStatus::Ok, Value::Null);
        assert_eq!(readiness.health_response().status(), StatusCode::OK);
    }
}
