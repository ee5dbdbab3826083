//! A small JSON client for calls from one service to another.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ErrorChain;

/// The longest one internal call may take before it is abandoned.
pub const INTERNAL_REQUEST_TIMEOUT_MS: u64 = 10_000;

/// The most idle keep-alive connections kept per peer service.
pub const MAX_IDLE_CONNECTIONS_PER_PEER: usize = 256;

/// How long an idle keep-alive connection to a peer is kept. Shorter than
/// the peer's [`crate::HEADER_READ_TIMEOUT_MS`], after which the peer closes
/// it, so that a request is never sent on a connection the peer is closing
/// at that very moment (it would fail as "no answer").
pub const POOL_IDLE_TIMEOUT_MS: u64 = 5_000;
const _: () = assert!(POOL_IDLE_TIMEOUT_MS < crate::HEADER_READ_TIMEOUT_MS);

/// After an instance refused a connection, calls skip it for this long (unless
/// every instance is down), so a dead instance costs one refused connection
/// per interval instead of one per call.
pub const DOWN_INSTANCE_SKIP_MS: u64 = 1_000;

/// Why a call to another service failed.
///
/// The transport's and the parser's errors are kept as sources (behind an
/// `Arc`, so that one failure of a coalesced batch can be handed to each of
/// its callers); the message names only what failed, and the chain says why.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The peer could not be reached: the request never left this process,
    /// so it certainly had no effect.
    #[error("{service} is unreachable")]
    Unreachable {
        service: String,
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// The request was sent but no answer came (a timeout, a connection cut
    /// midway): it may or may not have taken effect.
    #[error("{service} did not answer")]
    NoAnswer {
        service: String,
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// The peer answered with an error document: its status, and the code
    /// and message the document carried.
    #[error("{service} answered {status}: {code}: {message}")]
    Status {
        service: String,
        status: StatusCode,
        code: String,
        message: String,
    },
    /// The peer answered with something that is not the expected document.
    #[error("{service} answered with an unexpected document")]
    Protocol {
        service: String,
        #[source]
        source: Arc<serde_json::Error>,
    },
}

impl ClientError {
    /// Whether the peer refused the request itself, so that sending it again
    /// unchanged can never succeed: a 4xx answer, except those that pass
    /// (401 and 403 wait for a credential to be fixed, 408 and 429 for load
    /// to drop).
    pub fn is_refusal(&self) -> bool {
        match self {
            ClientError::Status { status, .. } => {
                status.is_client_error()
                    && ![
                        StatusCode::UNAUTHORIZED,
                        StatusCode::FORBIDDEN,
                        StatusCode::REQUEST_TIMEOUT,
                        StatusCode::TOO_MANY_REQUESTS,
                    ]
                    .contains(status)
            }
            ClientError::Unreachable { .. }
            | ClientError::NoAnswer { .. }
            | ClientError::Protocol { .. } => false,
        }
    }

    /// The answer a service gives its own caller when a call it depends on
    /// failed: the dependency's error document passes through unchanged
    /// (404, 409, 422, 503 with `Retry-After` …), an unreachable dependency
    /// is a 503, and an unreadable answer a 502. The message of the last
    /// three is the whole chain of causes, since the caller sees no log.
    pub fn relay(&self) -> axum::response::Response {
        use axum::http::StatusCode;
        let chain = || ErrorChain(self).to_string();
        match self {
            ClientError::Status {
                status,
                code,
                message,
                ..
            } => crate::error_response(
                StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
                code,
                message,
            ),
            ClientError::Unreachable { .. } => crate::error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "dependency_unavailable",
                &chain(),
            ),
            // The caller cannot tell whether its request took effect: it
            // must retry with the same Idempotency-Key, never without one.
            ClientError::NoAnswer { .. } => crate::error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "outcome_unknown",
                &format!(
                    "{}; the request may or may not have taken effect: retry it with the same Idempotency-Key",
                    chain()
                ),
            ),
            ClientError::Protocol { .. } => {
                tracing::error!(
                    error = self as &dyn std::error::Error,
                    "unexpected answer from a dependency"
                );
                crate::error_response(StatusCode::BAD_GATEWAY, "bad_gateway", &chain())
            }
        }
    }
}

/// A client builder for calls to the system's own services (and to what a
/// launcher or the dashboard watches): it never uses a proxy. reqwest
/// otherwise honours `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY`, so a proxy
/// set for the operator's web browsing would receive every internal call,
/// the bearer token included, and could answer in a peer's place. Services
/// reach each other directly, by the addresses they are configured with.
pub fn direct_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().no_proxy()
}

/// Splits a comma-separated list of base URLs.
pub fn split_urls(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(|url| url.trim().trim_end_matches('/').to_owned())
        .filter(|url| !url.is_empty())
        .collect()
}

/// The base URLs of one peer service (one or more instances) and a
/// keep-alive connection pool.
///
/// With several instances, calls are spread round-robin. A call whose
/// connection cannot even be opened (the instance is down) moves on to the
/// next instance; a call that reached an instance is never sent twice, since
/// the first may have taken effect.
#[derive(Clone)]
pub struct ServiceClient {
    name: &'static str,
    base_urls: Arc<Vec<String>>,
    /// Per instance: until when (ms since `epoch`) it is presumed down.
    down_until_ms: Arc<Vec<std::sync::atomic::AtomicU64>>,
    epoch: std::time::Instant,
    next: Arc<AtomicUsize>,
    http: reqwest::Client,
    /// The `Authorization` value sent with every call: the internal token
    /// for the peer's internal routes, or the operator's for its operator
    /// routes.
    authorization: Option<reqwest::header::HeaderValue>,
}

impl ServiceClient {
    /// `base_urls` is one URL or a comma-separated list of instances.
    pub fn new(name: &'static str, base_urls: &str) -> ServiceClient {
        let http = direct_client()
            .timeout(Duration::from_millis(INTERNAL_REQUEST_TIMEOUT_MS))
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS_PER_PEER)
            .pool_idle_timeout(Duration::from_millis(POOL_IDLE_TIMEOUT_MS))
            .tcp_nodelay(true)
            .build()
            .expect("a client with no TLS or proxy settings always builds");
        let mut urls = split_urls(base_urls);
        if urls.is_empty() {
            urls.push(base_urls.to_owned());
        }
        ServiceClient {
            name,
            down_until_ms: Arc::new(urls.iter().map(|_| Default::default()).collect()),
            epoch: std::time::Instant::now(),
            base_urls: Arc::new(urls),
            next: Arc::new(AtomicUsize::new(0)),
            http,
            authorization: None,
        }
    }

    /// The same client, sending `token` with every call so that the peer's
    /// internal routes accept it.
    pub fn with_token(mut self, token: crate::InternalToken) -> ServiceClient {
        self.authorization = Some(token.header_value());
        self
    }

    /// The same client, sending the operator's `token` with every call, for
    /// the peer's operator routes (the ledger).
    pub fn with_operator_token(mut self, token: &crate::OperatorToken) -> ServiceClient {
        self.authorization = Some(token.header_value());
        self
    }

    /// The first instance's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_urls[0]
    }

    /// Every instance's base URL.
    pub fn base_urls(&self) -> &[String] {
        &self.base_urls
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(|base| self.http.get(format!("{base}{path}")))
            .await
    }

    pub async fn get_query<T: DeserializeOwned, Q: Serialize + ?Sized>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, ClientError> {
        self.send(|base| self.http.get(format!("{base}{path}")).query(query))
            .await
    }

    pub async fn post<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(|base| self.http.post(format!("{base}{path}")).json(body))
            .await
    }

    /// Posts a JSON document that is already serialised and returns the
    /// answer's bytes unparsed, for a service that only relays a document.
    pub async fn post_raw(
        &self,
        path: &str,
        body: bytes::Bytes,
    ) -> Result<bytes::Bytes, ClientError> {
        self.exchange(|base| {
            self.http
                .post(format!("{base}{path}"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let bytes = self.exchange(build).await?;
        // An empty success body (204) reads as JSON null, which `()` accepts.
        let document: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(document).map_err(|source| ClientError::Protocol {
            service: self.name.to_owned(),
            source: Arc::new(source),
        })
    }

    /// Sends a request to one instance (see the type's documentation) and
    /// returns the body of a success, or the error document of a failure.
    async fn exchange(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<bytes::Bytes, ClientError> {
        let instances = self.base_urls.len();
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        // Instances presumed up first, in round-robin order, then the others.
        let mut order: Vec<usize> = (0..instances)
            .map(|offset| (first + offset) % instances)
            .collect();
        order.sort_by_key(|&index| self.down_until_ms[index].load(Ordering::Relaxed) > now_ms);
        let mut attempt = 0;
        let response = loop {
            let index = order[attempt];
            let base = &self.base_urls[index];
            let mut request = crate::trace::inject(build(base));
            if let Some(authorization) = &self.authorization {
                request = request.header(reqwest::header::AUTHORIZATION, authorization.clone());
            }
            match request.send().await {
                Ok(response) => {
                    self.down_until_ms[index].store(0, Ordering::Relaxed);
                    break response;
                }
                // Only a refused connection is safe to send elsewhere: the
                // request never left this process.
                Err(error) if error.is_connect() && attempt + 1 < instances => {
                    let until = now_ms + DOWN_INSTANCE_SKIP_MS;
                    if self.down_until_ms[index].swap(until, Ordering::Relaxed) <= now_ms {
                        tracing::warn!(
                            service = self.name,
                            instance = %base,
                            error = &error as &dyn std::error::Error,
                            "instance unreachable; skipping it for a while"
                        );
                    }
                    attempt += 1;
                }
                Err(source) if source.is_connect() => {
                    return Err(ClientError::Unreachable {
                        service: self.name.to_owned(),
                        source: Arc::new(source),
                    });
                }
                Err(source) => {
                    return Err(ClientError::NoAnswer {
                        service: self.name.to_owned(),
                        source: Arc::new(source),
                    });
                }
            }
        };
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ClientError::NoAnswer {
                service: self.name.to_owned(),
                source: Arc::new(source),
            })?;
        if !status.is_success() {
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(ClientError::Status {
                service: self.name.to_owned(),
                status,
                code: body["error"].as_str().unwrap_or("unknown").to_owned(),
                message: body["message"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
            });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error of a connection nothing accepts: a port just freed.
    async fn refused_connection() -> reqwest::Error {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let address = listener.local_addr().expect("a bound address");
        drop(listener);
        reqwest::get(format!("http://{address}/"))
            .await
            .expect_err("nothing listens on a freed port")
    }

    async fn answer(error: &ClientError) -> (u16, Option<String>, serde_json::Value) {
        let response = error.relay();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a whole body");
        (status, retry_after, serde_json::from_slice(&body).unwrap())
    }

    /// Each kind of failure answers the caller with the same status and
    /// code as ever; the message of an unreachable peer names its cause.
    #[tokio::test]
    async fn failures_are_relayed_with_their_status_and_code() {
        let unreachable = ClientError::Unreachable {
            service: "data-service".into(),
            source: Arc::new(refused_connection().await),
        };
        assert!(!unreachable.is_refusal());
        let (status, retry_after, body) = answer(&unreachable).await;
        assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
        assert_eq!(body["error"], "dependency_unavailable");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with("data-service is unreachable: "),
            "{message}"
        );
        assert_eq!(message, ErrorChain(&unreachable).to_string());

        let no_answer = ClientError::NoAnswer {
            service: "data-service".into(),
            source: Arc::new(refused_connection().await),
        };
        let (status, _, body) = answer(&no_answer).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("outcome_unknown"))
        );

        let unreadable = ClientError::Protocol {
            service: "data-service".into(),
            source: Arc::new(serde_json::from_str::<u32>("{").unwrap_err()),
        };
        assert!(!unreadable.is_refusal());
        let (status, _, body) = answer(&unreadable).await;
        assert_eq!((status, body["error"].as_str()), (502, Some("bad_gateway")));

        for (status, refusal) in [
            (404, true),
            (409, true),
            (401, false),
            (429, false),
            (503, false),
        ] {
            let answered = ClientError::Status {
                service: "data-service".into(),
                status: StatusCode::from_u16(status).unwrap(),
                code: "some_code".into(),
                message: "as the peer said".into(),
            };
            assert_eq!(answered.is_refusal(), refusal, "{status}");
            let (relayed, _, body) = answer(&answered).await;
            assert_eq!(relayed, status);
            assert_eq!(body["error"], "some_code");
            assert_eq!(body["message"], "as the peer said");
        }
    }

    #[test]
    fn splits_instance_lists() {
        assert_eq!(
            split_urls("http://a:1/, http://b:2"),
            ["http://a:1", "http://b:2"]
        );
        assert_eq!(split_urls("http://a:1"), ["http://a:1"]);
    }
}
