//! The HTTP client webhooks are sent with: HTTP/1.1 over TCP, or over TLS
//! (rustls, the system's certificate authorities) for `https` URLs. It is
//! the webhooks' own, apart from the services' clients: it follows no
//! redirect (the signature was made for the URL configured) and reads no
//! proxy from the environment (the receivers are the operator's systems,
//! named by URL).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{WEBHOOK_TIMEOUT_MS, WebhookConfig, WebhookConfigError};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A pool of connections to the receivers.
#[derive(Clone)]
pub(super) struct WebhookClient {
    inner: Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

/// Why a receiver did not take an event.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    #[error("answered {0}")]
    Status(hyper::StatusCode),
    #[error("no answer in time")]
    Timeout,
    #[error(transparent)]
    Connection(#[from] hyper_util::client::legacy::Error),
    #[error(transparent)]
    Request(#[from] hyper::http::Error),
}

/// rustls' *ring* provider. rustls now prefers aws-lc-rs, for its
/// post-quantum key exchange; building it needs cmake on every machine, and a
/// webhook carries a notice, not a secret that must outlive its transport,
/// so *ring*'s classical key exchange is kept.
#[allow(deprecated)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

impl WebhookClient {
    /// A client for `config`'s URLs. TLS is set up only when one of them is
    /// `https`, and fails then if the system has no certificate
    /// authorities to trust.
    pub(super) fn new(config: &WebhookConfig) -> Result<WebhookClient, WebhookConfigError> {
        let timeout = Duration::from_millis(config.timeout_ms.clamp(1, WEBHOOK_TIMEOUT_MS));
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let needs_tls = config.urls.iter().any(|url| url.scheme() == "https");
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = if needs_tls {
            builder
                .with_provider_and_native_roots(provider())
                .map_err(|source| WebhookConfigError::Tls { source })?
        } else {
            // Never used for a connection: every URL is plain http.
            builder.with_tls_config(
                rustls::ClientConfig::builder_with_provider(provider().into())
                    .with_safe_default_protocol_versions()
                    .map_err(|error| WebhookConfigError::Tls {
                        source: std::io::Error::other(error),
                    })?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        };
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        Ok(WebhookClient {
            inner: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }

    /// Posts `body` to `url` with `headers`; `Ok` only for a 2xx answer in
    /// time. The answer's body is not read.
    pub(super) async fn post(
        &self,
        url: &url::Url,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(), SendError> {
        let mut request = hyper::Request::post(url.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "stockroom-webhooks");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body))?;
        let sent = tokio::time::timeout(self.timeout, self.inner.request(request))
            .await
            .map_err(|_| SendError::Timeout)??;
        if sent.status().is_success() {
            Ok(())
        } else {
            Err(SendError::Status(sent.status()))
        }
    }
}
