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

const _: () = assert!(HEALTH_POLL_ATTEMPTS >= 1);

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
    #[error("cannot listen on {address}")]
    Other {
        address: SocketAddr,
        #[source]
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

/// A dependency that never became healthy; the source is what its last
/// poll got.
#[derive(Debug, thiserror::Error)]
#[error("{name} at {url} did not become healthy after {attempts} attempts")]
pub struct HealthWait {
    pub name: String,
    pub url: String,
    pub attempts: u32,
    #[source]
    pub last: HealthAnswer,
}

/// What one poll of a dependency's `/health` got, when it was not a success.
#[derive(Debug, thiserror::Error)]
pub enum HealthAnswer {
    /// It answered, with a status that is not a success.
    #[error("its health answered {0}")]
    Status(StatusCode),
    /// No answer came: refused, timed out, cut.
    #[error("its health did not answer")]
    NoAnswer(#[source] reqwest::Error),
}

impl HealthAnswer {
    /// What one poll of `health_url` got: `Ok` for a success.
    pub(crate) async fn poll(
        client: &reqwest::Client,
        health_url: &str,
    ) -> Result<(), HealthAnswer> {
        let response = client
            .get(health_url)
            .timeout(Duration::from_millis(HEALTH_POLL_TIMEOUT_MS))
            .send()
            .await
            .map_err(HealthAnswer::NoAnswer)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(HealthAnswer::Status(status))
    }
}

/// The longest one poll of a dependency's `/health` may take: a healthy
/// service answers at once, so a slow answer counts as none.
pub const HEALTH_POLL_TIMEOUT_MS: u64 = 2_000;

/// Polls `url/health` until it answers 200, at most [`HEALTH_POLL_ATTEMPTS`]
/// times, logging which dependency it waits for.
pub async fn wait_for_health(
    client: &reqwest::Client,
    name: &str,
    url: &str,
) -> Result<(), HealthWait> {
    let health_url = format!("{}/health", url.trim_end_matches('/'));
    let mut attempt = 1;
    loop {
        let last = match HealthAnswer::poll(client, &health_url).await {
            Ok(()) => {
                tracing::info!(dependency = name, url, "dependency is healthy");
                return Ok(());
            }
            Err(last) => last,
        };
        if attempt == HEALTH_POLL_ATTEMPTS {
            return Err(HealthWait {
                name: name.to_owned(),
                url: url.to_owned(),
                attempts: HEALTH_POLL_ATTEMPTS,
                last,
            });
        }
        if attempt == 1 || attempt % 20 == 0 {
            tracing::info!(dependency = name, url, attempt, "waiting for dependency");
        }
        tokio::time::sleep(Duration::from_millis(HEALTH_POLL_INTERVAL_MS)).await;
        attempt += 1;
    }
}

/// Adds `/openapi.json` (the document generated from the routes, with the
/// answers the shared plumbing gives on every route of a kind: 408, 413 and
/// 415 for a body, …) and the JSON 404 and 405 fallbacks to a service's
/// router.
pub fn with_openapi_and_fallbacks<S>(
    router: Router<S>,
    mut api: utoipa::openapi::OpenApi,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    crate::routes::document_shared_answers(&mut api);
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
