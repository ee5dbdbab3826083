//! Calls between services of one process, without sockets.
//!
//! `stockroom up` runs all four services in one process, each on its own
//! port. A call from one to another over loopback would pay for the
//! kernel's TCP path, HTTP encoding and parsing on both sides, and two
//! connection tasks, for a request that never leaves the process. So every
//! listener registers its router under the address it is bound to for as
//! long as it serves, and [`crate::ServiceClient`] hands a call whose base
//! URL names a registered address to that router directly, through tower:
//! the same handlers, middleware (metrics, tracing), token check and error
//! mapping run as over HTTP. What stays at the socket are the listener's
//! protections against network clients (connection slots, head and body
//! deadlines, host names, other sites' pages), which a caller inside the
//! process cannot need. A peer in another process, or one that stopped
//! serving, is not registered, and the call goes over HTTP as before.
//!
//! The peer's answer is produced in a task of its own, as a server's
//! connection task would: a caller that gives up (its timeout) leaves the
//! peer to finish, and a handler that panics cuts the exchange; either way
//! the caller hears `NoAnswer`, exactly as when a connection is cut.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, RwLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use bytes::Bytes;
use tower::ServiceExt;

/// The routers of the listeners serving in this process, by the base URL a
/// client names them with (`http://IP:PORT`), with the registration that
/// put each there.
static PEERS: LazyLock<RwLock<HashMap<String, (u64, Router)>>> = LazyLock::new(Default::default);

/// Numbers registrations, so that a listener that stopped removes only its
/// own entry, never that of a newer listener on the same port.
static NEXT_REGISTRATION: AtomicU64 = AtomicU64::new(0);

/// Why an exchange in this process produced no answer. Each means what a
/// cut connection means over HTTP: the request may or may not have taken
/// effect.
#[derive(Debug, thiserror::Error)]
pub enum InProcessError {
    /// The request could not be handed over as it was built.
    #[error("the request could not be handed to the peer")]
    Request(#[source] reqwest::Error),
    /// The answer did not come within the caller's timeout (the peer goes
    /// on with the request).
    #[error("no answer within {timeout_ms} ms")]
    TimedOut { timeout_ms: u64 },
    /// The peer's handler stopped before answering (it panicked).
    #[error("the peer's handler stopped before answering")]
    Cut(#[source] tokio::task::JoinError),
    /// The answer's body could not be read.
    #[error("the peer's answer could not be read")]
    Body(#[source] axum::Error),
}

/// A listener's entry among the in-process peers; dropping it removes the
/// entry, so calls go over the socket (and find it closed) once the
/// listener stops.
pub(crate) struct Registration {
    id: u64,
    urls: Vec<String>,
}

/// Registers `router` as the peer serving at `address`. A listener bound
/// to every interface is also the one clients reach at the loopback
/// address with that port.
pub(crate) fn register(address: SocketAddr, router: Router) -> Registration {
    let mut urls = vec![format!("http://{address}")];
    if address.ip().is_unspecified() {
        urls.push(format!(
            "http://{}",
            SocketAddr::from((Ipv4Addr::LOCALHOST, address.port()))
        ));
    }
    let id = NEXT_REGISTRATION.fetch_add(1, Ordering::Relaxed);
    let mut peers = PEERS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for url in &urls {
        peers.insert(url.clone(), (id, router.clone()));
    }
    Registration { id, urls }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut peers = PEERS
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for url in &self.urls {
            if peers.get(url).is_some_and(|(id, _)| *id == self.id) {
                peers.remove(url);
            }
        }
    }
}

/// The router serving `base_url` in this process, if one does.
pub(crate) fn peer(base_url: &str) -> Option<Router> {
    let peers = PEERS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    peers.get(base_url).map(|(_, router)| router.clone())
}

/// Whether `request` can be handed to a router as it is: its body, if
/// any, is in memory (every body [`crate::ServiceClient`] sends is).
pub(crate) fn transferable(request: &reqwest::Request) -> bool {
    request.body().is_none_or(|body| body.as_bytes().is_some())
}

/// Hands `request` to `router` and returns the answer's status and body,
/// waiting at most `timeout_ms` for it.
pub(crate) async fn exchange(
    router: Router,
    request: reqwest::Request,
    timeout_ms: u64,
) -> Result<(StatusCode, Bytes), InProcessError> {
    let request = into_axum(request)?;
    let answer = tokio::spawn(async move {
        let response = match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        // No bound beyond what the peer chose to send: it is this process's
        // own code, and over HTTP the answer is not bounded either.
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map(|body| (status, body))
    });
    let answer = tokio::time::timeout(std::time::Duration::from_millis(timeout_ms), answer)
        .await
        .map_err(|_| InProcessError::TimedOut { timeout_ms })?
        .map_err(InProcessError::Cut)?;
    answer.map_err(InProcessError::Body)
}

/// The request as a router takes it, with the `Host` header a socket
/// would have carried.
fn into_axum(request: reqwest::Request) -> Result<axum::http::Request<Body>, InProcessError> {
    let host = request
        .url()
        .host_str()
        .zip(request.url().port())
        .and_then(|(host, port)| HeaderValue::from_str(&format!("{host}:{port}")).ok());
    let request =
        axum::http::Request::<reqwest::Body>::try_from(request).map_err(InProcessError::Request)?;
    let (mut parts, body) = request.into_parts();
    // `transferable` was checked: the body is in memory.
    let body = Body::from(Bytes::copy_from_slice(body.as_bytes().unwrap_or_default()));
    if let Some(host) = host {
        parts.headers.insert(header::HOST, host);
    }
    Ok(axum::http::Request::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::extract::{ConnectInfo, Request};
    use axum::routing::{get, post};
    use serde_json::{Value, json};
    use tokio::net::TcpListener;

    use super::*;
    use crate::{ClientError, InternalToken, ServiceClient};

    /// A public route that says how the request came (the listener gives
    /// every request it accepted the peer's address), and internal routes
    /// behind the token: one that echoes, one whose handler fails midway.
    fn router(token: InternalToken) -> Router {
        let internal = Router::new()
            .route("/internal/echo", post(|body: Bytes| async move { body }))
            .route("/internal/panic", post(fails_midway))
            .route_layer(axum::middleware::from_fn_with_state(
                token,
                crate::require_internal_token,
            ));
        Router::new()
            .route(
                "/via",
                get(|request: Request| async move {
                    let socket = request
                        .extensions()
                        .get::<ConnectInfo<SocketAddr>>()
                        .is_some();
                    axum::Json(if socket { "socket" } else { "in-process" })
                }),
            )
            .merge(internal)
    }

    async fn fails_midway() -> &'static str {
        panic!("a handler that fails midway, as a bug would")
    }

    /// Calls to a listener of this process take its router, with its token
    /// check and its answers; a handler that stops midway is an unknown
    /// outcome, as a cut connection is; once the listener stops, calls go
    /// to the socket and find it closed.
    #[tokio::test]
    async fn a_peer_in_this_process_is_called_through_its_router() {
        let token = InternalToken::generate();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve(listener, router(token.clone()), async move {
            let _ = stopped.await;
        }));
        while peer(&url).is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let client = ServiceClient::new("peer", &url).with_token(token);
        let via: String = client.get("/via").await.unwrap();
        assert_eq!(via, "in-process");

        let echoed: Value = client
            .post("/internal/echo", &json!({"a": 1}))
            .await
            .unwrap();
        assert_eq!(echoed, json!({"a": 1}));
        let anonymous = ServiceClient::new("peer", &url);
        let refused = anonymous
            .post::<Value, _>("/internal/echo", &json!({"a": 1}))
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, ClientError::Status { status, code, .. }
                if status.as_u16() == 401 && code == "unauthorized"),
            "{refused:?}"
        );

        let cut = client
            .post::<Value, _>("/internal/panic", &json!({}))
            .await
            .unwrap_err();
        assert!(matches!(cut, ClientError::NoAnswer { .. }), "{cut:?}");
        let relayed = cut.relay();
        assert_eq!(relayed.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(relayed.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "outcome_unknown");

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        assert!(peer(&url).is_none());
        let gone = client.get::<String>("/via").await.unwrap_err();
        assert!(matches!(gone, ClientError::Unreachable { .. }), "{gone:?}");
    }
}
