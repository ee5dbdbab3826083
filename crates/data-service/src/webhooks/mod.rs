//! Webhooks: the notices the rules raise for a shop's other systems (an
//! order fulfilled or cancelled, a product low, sold out or back in stock),
//! sent from the outbox to every configured URL, signed, at least once.
//!
//! A notice is written to the outbox in the same transaction as the change
//! it reports, addressed to the `webhooks` consumer, so none is lost and
//! none is sent for a change that did not commit. The dispatcher
//! ([`dispatch`]) leases them like any consumer: an event every URL took
//! (2xx) is acknowledged; one a URL refused or did not answer in time is
//! postponed by a backoff that doubles with each attempt, and after
//! [`MAX_WEBHOOK_ATTEMPTS`] it is dead-lettered, for `stockroom dead-letters`
//! to show and redrive. The dispatcher runs apart from the order flow: a
//! slow or failing receiver holds only its own requests, never a storage
//! lock or an order.

mod client;
mod dispatch;
mod payload;
mod sign;

use std::sync::Arc;

pub use dispatch::{WebhookDispatcher, backoff_ms};
pub use payload::webhook_event;
pub use sign::{SIGNATURE_HEADER, SignatureError, sign, verify};

/// The events one round leases at most.
pub const WEBHOOK_BATCH_SIZE: u32 = 50;

/// The most requests in flight to receivers at once.
pub const MAX_CONCURRENT_WEBHOOKS: usize = 16;

/// How long a receiver has to answer one request.
pub const WEBHOOK_TIMEOUT_MS: u64 = 10_000;

/// How long a round holds its events: more than a round can take (every
/// request of a batch times out, [`MAX_CONCURRENT_WEBHOOKS`] at a time, for
/// each URL), so another instance never sends them meanwhile.
pub const WEBHOOK_LEASE_MS: u64 = 120_000;

/// The pause before the second attempt; each later one waits twice as long
/// as the one before, up to [`MAX_WEBHOOK_BACKOFF_MS`].
pub const WEBHOOK_BACKOFF_MS: u64 = 1_000;

/// The longest pause between two attempts.
pub const MAX_WEBHOOK_BACKOFF_MS: u64 = 300_000;

/// Attempts before an event is dead-lettered: with the backoff above, a
/// receiver may be down for about 20 minutes and still get every event.
pub const MAX_WEBHOOK_ATTEMPTS: u32 = 12;

/// How long the dispatcher waits for new events when none are due.
pub const WEBHOOK_POLL_INTERVAL_MS: u64 = 500;

/// The most URLs events are sent to.
pub const MAX_WEBHOOK_URLS: usize = 8;

/// The shortest and longest secret accepted.
pub const MIN_WEBHOOK_SECRET_CHARS: usize = 16;
pub const MAX_WEBHOOK_SECRET_CHARS: usize = 256;

// The lease covers a round whose requests all time out.
const _: () = assert!(
    WEBHOOK_TIMEOUT_MS * (WEBHOOK_BATCH_SIZE as u64).div_ceil(MAX_CONCURRENT_WEBHOOKS as u64) * 2
        <= WEBHOOK_LEASE_MS
);
const _: () = assert!(WEBHOOK_BACKOFF_MS <= MAX_WEBHOOK_BACKOFF_MS);
const _: () = assert!(MAX_WEBHOOK_BACKOFF_MS <= stockroom_domain::outbox::MAX_LEASE_MS);

/// The secret webhooks are signed with, shared with their receivers.
#[derive(Clone)]
pub struct WebhookSecret(Arc<str>);

impl WebhookSecret {
    /// Accepts a secret: 16 to 256 visible ASCII characters.
    pub fn parse(text: &str) -> Result<WebhookSecret, WebhookConfigError> {
        let chars = text.chars().count();
        if !(MIN_WEBHOOK_SECRET_CHARS..=MAX_WEBHOOK_SECRET_CHARS).contains(&chars)
            || !text.bytes().all(|byte| byte.is_ascii_graphic())
        {
            return Err(WebhookConfigError::Secret);
        }
        Ok(WebhookSecret(Arc::from(text)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("WebhookSecret(<redacted>)")
    }
}

/// Where webhooks go, how they are signed, and how patiently they are
/// retried.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub urls: Vec<url::Url>,
    pub secret: WebhookSecret,
    /// How long a receiver has to answer; at most [`WEBHOOK_TIMEOUT_MS`]
    /// (the lease is sized for it).
    pub timeout_ms: u64,
    /// Attempts before an event is dead-lettered; at least 1.
    pub max_attempts: u32,
    /// The pause before the second attempt (then doubling).
    pub backoff_ms: u64,
}

/// Why the webhooks' settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    #[error("webhook URL {url:?} is not an http or https URL")]
    Url { url: String },
    #[error("at most {MAX_WEBHOOK_URLS} webhook URLs may be given")]
    TooManyUrls,
    #[error(
        "a webhook secret (--webhook-secret or STOCKROOM_WEBHOOK_SECRET) is required with --webhook-url: receivers check each event's signature with it"
    )]
    MissingSecret,
    #[error(
        "the webhook secret must be {MIN_WEBHOOK_SECRET_CHARS} to {MAX_WEBHOOK_SECRET_CHARS} visible ASCII characters"
    )]
    Secret,
    #[error("cannot set up TLS for https webhook URLs")]
    Tls {
        #[source]
        source: std::io::Error,
    },
}

impl WebhookConfig {
    /// The settings of `urls` signed with `secret`; `None` when no URL is
    /// given (no webhooks, so the rules raise no notices).
    pub fn parse(
        urls: &[String],
        secret: Option<&str>,
    ) -> Result<Option<WebhookConfig>, WebhookConfigError> {
        if urls.is_empty() {
            return Ok(None);
        }
        if urls.len() > MAX_WEBHOOK_URLS {
            return Err(WebhookConfigError::TooManyUrls);
        }
        let urls = urls
            .iter()
            .map(|text| {
                url::Url::parse(text)
                    .ok()
                    .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
                    .ok_or_else(|| WebhookConfigError::Url { url: text.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let secret = WebhookSecret::parse(secret.ok_or(WebhookConfigError::MissingSecret)?)?;
        Ok(Some(WebhookConfig {
            urls,
            secret,
            timeout_ms: WEBHOOK_TIMEOUT_MS,
            max_attempts: MAX_WEBHOOK_ATTEMPTS,
            backoff_ms: WEBHOOK_BACKOFF_MS,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_need_http_urls_and_a_secret() {
        assert!(WebhookConfig::parse(&[], None).unwrap().is_none());
        let url = vec!["http://127.0.0.1:9/hooks".to_owned()];
        assert!(matches!(
            WebhookConfig::parse(&url, None),
            Err(WebhookConfigError::MissingSecret)
        ));
        assert!(matches!(
            WebhookConfig::parse(&url, Some("short")),
            Err(WebhookConfigError::Secret)
        ));
        assert!(matches!(
            WebhookConfig::parse(&["ftp://x/y".into()], Some("a-secret-of-16-chars")),
            Err(WebhookConfigError::Url { .. })
        ));
        let config = WebhookConfig::parse(&url, Some("a-secret-of-16-chars"))
            .unwrap()
            .unwrap();
        assert_eq!(config.urls[0].as_str(), "http://127.0.0.1:9/hooks");
        assert_eq!(format!("{:?}", config.secret), "WebhookSecret(<redacted>)");
    }
}
