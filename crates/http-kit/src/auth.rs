//! The credential that internal routes require.
//!
//! Stockroom's services call each other over HTTP, and several of those
//! routes change state in ways no client may (recording a payment, expiring
//! reservations, acknowledging events). Every route outside the public
//! contract therefore requires `Authorization: Bearer <internal token>`, one
//! secret shared by the services of a system. A missing or wrong token is a
//! 401 that changes nothing. There is no end-user authentication here: that
//! is the job of a gateway in front of order-service.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

/// The shortest token accepted: 32 characters of a random token carry at
/// least 128 bits, beyond guessing.
pub const MIN_INTERNAL_TOKEN_CHARS: usize = 32;

/// The longest token accepted, so a header can never be unreasonably large.
pub const MAX_INTERNAL_TOKEN_CHARS: usize = 256;

/// The environment variable every command reads the token from; `up` and
/// `cluster` hand a generated token to their children through it, never on
/// the command line (which any local user can read in the process list).
pub const INTERNAL_TOKEN_ENV: &str = "STOCKROOM_INTERNAL_TOKEN";

/// The name of the bearer scheme in the OpenAPI documents.
pub const INTERNAL_TOKEN_SCHEME: &str = "internalToken";

/// Random bytes in a generated token (hex-encoded, twice as many characters).
const GENERATED_TOKEN_BYTES: usize = 32;

/// The shared secret of a system's services.
#[derive(Clone, PartialEq, Eq)]
pub struct InternalToken(Arc<str>);

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the internal token must be at least {MIN_INTERNAL_TOKEN_CHARS} characters (it has {chars})"
    )]
    TooShort { chars: usize },
    #[error(
        "the internal token may be at most {MAX_INTERNAL_TOKEN_CHARS} characters (it has {chars})"
    )]
    TooLong { chars: usize },
    #[error("the internal token may hold only visible ASCII characters, without spaces")]
    NotPrintable,
}

impl InternalToken {
    /// Accepts a token given by the operator.
    pub fn parse(text: &str) -> Result<InternalToken, TokenError> {
        let chars = text.chars().count();
        if chars < MIN_INTERNAL_TOKEN_CHARS {
            return Err(TokenError::TooShort { chars });
        }
        if chars > MAX_INTERNAL_TOKEN_CHARS {
            return Err(TokenError::TooLong { chars });
        }
        if !text.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(TokenError::NotPrintable);
        }
        Ok(InternalToken(Arc::from(text)))
    }

    /// A new random token, from the operating system's random source.
    pub fn generate() -> InternalToken {
        let bytes: [u8; GENERATED_TOKEN_BYTES] = rand::random();
        let text: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        InternalToken(Arc::from(text.as_str()))
    }

    /// The token itself, to hand to a child process or to send.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time that does not depend on
    /// where the two first differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented))
    }

    /// The `Authorization` header value that carries this token.
    pub fn header_value(&self) -> HeaderValue {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .expect("a parsed or generated token is visible ASCII");
        value.set_sensitive(true);
        value
    }
}

impl std::fmt::Debug for InternalToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("InternalToken(<redacted>)")
    }
}

/// Middleware for internal routes: passes a request carrying the token,
/// answers anything else with a 401 before the handler runs.
pub async fn require_internal_token(
    State(token): State<InternalToken>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(presented) if token.matches(presented) => next.run(request).await,
        _ => {
            let mut response = crate::error_response(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this route is internal: it needs Authorization: Bearer <internal token>",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_visible_and_compared_exactly() {
        assert_eq!(
            InternalToken::parse("short"),
            Err(TokenError::TooShort { chars: 5 })
        );
        assert_eq!(
            InternalToken::parse(&"a b".repeat(20)),
            Err(TokenError::NotPrintable)
        );
        assert!(InternalToken::parse(&"x".repeat(MAX_INTERNAL_TOKEN_CHARS + 1)).is_err());
        let token = InternalToken::parse(&"k".repeat(40)).unwrap();
        assert!(token.matches("k".repeat(40).as_bytes()));
        assert!(!token.matches("k".repeat(39).as_bytes()));
        assert!(!token.matches(format!("{}j", "k".repeat(39)).as_bytes()));
        assert_eq!(format!("{token:?}"), "InternalToken(<redacted>)");
    }

    #[test]
    fn generated_tokens_are_valid_and_differ() {
        let first = InternalToken::generate();
        let second = InternalToken::generate();
        assert_ne!(first, second);
        assert_eq!(
            InternalToken::parse(first.expose()).unwrap(),
            first,
            "a generated token passes the operator's rules"
        );
    }
}
