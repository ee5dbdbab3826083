//! Binding, serving, JSON error bodies, and waiting for dependencies.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;

/// How many times a service polls a dependency's `/health` before giving up.
pub const HEALTH_POLL_ATTEMPTS: u32 = 100;

/// The pause between two polls of a dependency's `/health`.
pub const HEALTH_POLL_INTERVAL_MS: u64 = 100;

#[derive(Serialize)]
struct ErrorDocument<'a> {
    error: &'a str,
    message: &'a str,
}

/// The pause a client is told to take (`Retry-After`) with every 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// The one error body of every service: `{"error":"<code>","message":"…"}`.
/// A 503 also carries `Retry-After`, since every 503 Stockroom sends is
/// temporary (overload or a dependency starting or restarting).
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = (
        status,
        Json(ErrorDocument {
            error: code,
            message,
        }),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(RETRY_AFTER_SECONDS),
        );
    }
    response
}

/// The fallback for paths no route matches.
pub async fn fallback_not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The fallback for a known path called with the wrong method.
pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("port {port} is already in use")]
    InUse { port: u16 },
    #[error("cannot listen on {address}: {source}")]
    Other {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds a listener, turning "address in use" into an error naming the port.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(address).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            BindError::InUse {
                port: address.port(),
            }
        } else {
            BindError::Other { address, source }
        }
    })
}

/// A dependency that never became healthy.
#[derive(Debug, thiserror::Error)]
#[error("{name} at {url} did not become healthy after {attempts} attempts: {last_error}")]
pub struct HealthWait {
    pub name: String,
    pub url: String,
    pub attempts: u32,
    pub last_error: String,
}

/// Polls `url/health` until it answers 200, at most [`HEALTH_POLL_ATTEMPTS`]
/// times, logging which dependency it waits for.
pub async fn wait_for_health(
    client: &reqwest::Client,
    name: &str,
    url: &str,
) -> Result<(), HealthWait> {
    let health_url = format!("{}/health", url.trim_end_matches('/'));
    let mut last_error = String::from("never answered");
    for attempt in 1..=HEALTH_POLL_ATTEMPTS {
        match client
            .get(&health_url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => {
                tracing::info!(dependency = name, url, "dependency is healthy");
                return Ok(());
            }
            Ok(response) => last_error = format!("status {}", response.status()),
            Err(error) => last_error = error.to_string(),
        }
        if attempt == 1 || attempt % 20 == 0 {
            tracing::info!(dependency = name, url, attempt, "waiting for dependency");
        }
        tokio::time::sleep(Duration::from_millis(HEALTH_POLL_INTERVAL_MS)).await;
    }
    Err(HealthWait {
        name: name.to_owned(),
        url: url.to_owned(),
        attempts: HEALTH_POLL_ATTEMPTS,
        last_error,
    })
}

/// Adds `/openapi.json` (the document generated from the routes), the JSON
/// 404 and 405 fallbacks, and the default body limit to a service's router.
pub fn with_openapi_and_fallbacks<S>(router: Router<S>, api: utoipa::openapi::OpenApi) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let api = std::sync::Arc::new(api);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let api = std::sync::Arc::clone(&api);
                async move { Json(api.as_ref().clone()) }
            }),
        )
        .fallback(fallback_not_found)
        .method_not_allowed_fallback(method_not_allowed)
}
