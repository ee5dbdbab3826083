//! A small JSON client for calls from one service to another.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest one internal call may take before it is abandoned.
pub const INTERNAL_REQUEST_TIMEOUT_MS: u64 = 10_000;

/// The most idle keep-alive connections kept per peer service.
pub const MAX_IDLE_CONNECTIONS_PER_PEER: usize = 256;

/// Why a call to another service failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The peer could not be reached or did not answer in time.
    #[error("{service} is unreachable: {message}")]
    Unreachable { service: String, message: String },
    /// The peer answered with an error document.
    #[error("{service} answered {status}: {code}: {message}")]
    Status {
        service: String,
        status: StatusCode,
        code: String,
        message: String,
    },
    /// The peer answered with something that is not the expected document.
    #[error("{service} answered with an unexpected document: {message}")]
    Protocol { service: String, message: String },
}

/// A base URL and a keep-alive connection pool for one peer service.
#[derive(Clone)]
pub struct ServiceClient {
    name: &'static str,
    base_url: String,
    http: reqwest::Client,
}

impl ServiceClient {
    pub fn new(name: &'static str, base_url: &str) -> ServiceClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(INTERNAL_REQUEST_TIMEOUT_MS))
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS_PER_PEER)
            .tcp_nodelay(true)
            .build()
            .expect("a client with no TLS or proxy settings always builds");
        ServiceClient {
            name,
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let request = self.http.get(format!("{}{path}", self.base_url));
        self.send(request).await
    }

    pub async fn get_query<T: DeserializeOwned, Q: Serialize + ?Sized>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, ClientError> {
        let request = self
            .http
            .get(format!("{}{path}", self.base_url))
            .query(query);
        self.send(request).await
    }

    pub async fn post<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .json(body);
        self.send(request).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|error| ClientError::Unreachable {
                service: self.name.to_owned(),
                message: error.to_string(),
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| ClientError::Unreachable {
                service: self.name.to_owned(),
                message: error.to_string(),
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
        // An empty success body (204) reads as JSON null, which `()` accepts.
        let document: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(document).map_err(|error| ClientError::Protocol {
            service: self.name.to_owned(),
            message: error.to_string(),
        })
    }
}
