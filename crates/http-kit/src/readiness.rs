//! A service's readiness: healthy only once its dependencies are.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What a service's `GET /health` reports. A service starts serving at once
/// (so its port is taken and its health can be asked) but reports 503 with
/// the dependency it waits for until every dependency answered healthy.
#[derive(Clone)]
pub struct Readiness {
    service: &'static str,
    waiting_for: Arc<Mutex<Option<String>>>,
}

impl Readiness {
    pub fn new(service: &'static str) -> Readiness {
        Readiness {
            service,
            waiting_for: Arc::new(Mutex::new(Some("start-up".into()))),
        }
    }

    /// A service with no dependencies: ready from the start.
    pub fn ready(service: &'static str) -> Readiness {
        let readiness = Readiness::new(service);
        readiness.set_ready();
        readiness
    }

    pub fn set_waiting_for(&self, dependency: &str) {
        *self.waiting_for.lock().expect("readiness lock") = Some(dependency.to_owned());
    }

    pub fn set_ready(&self) {
        *self.waiting_for.lock().expect("readiness lock") = None;
    }

    pub fn is_ready(&self) -> bool {
        self.waiting_for.lock().expect("readiness lock").is_none()
    }

    /// The `/health` answer.
    pub fn health_response(&self) -> Response {
        match self.waiting_for.lock().expect("readiness lock").clone() {
            None => Json(json!({"status": "ok", "service": self.service})).into_response(),
            Some(dependency) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "starting",
                    "service": self.service,
                    "waitingFor": dependency,
                })),
            )
                .into_response(),
        }
    }

    /// Waits for each `(name, url)` dependency in turn, reporting which one it
    /// waits for, then marks the service ready.
    pub async fn wait_for(
        &self,
        client: &reqwest::Client,
        dependencies: &[(&str, &str)],
    ) -> Result<(), crate::HealthWait> {
        for (name, urls) in dependencies {
            for url in crate::client::split_urls(urls) {
                self.set_waiting_for(&format!("{name} at {url}"));
                crate::wait_for_health(client, name, &url).await?;
            }
        }
        self.set_ready();
        Ok(())
    }
}
