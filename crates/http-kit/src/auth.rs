//! The credentials that internal and operator routes require.
//!
//! Stockroom's services call each other over HTTP, and several of those
//! routes change state in ways no client may (recording a payment, expiring
//! reservations, acknowledging events). Every such route requires
//! `Authorization: Bearer <internal token>`, one secret shared by the
//! services of a system. A shop's operator has a credential of its own, the
//! operator token, for the routes that run the stock (creating products,
//! limits, adjustments, the ledger): the two never stand in for each other,
//! so a leaked service secret does not let anyone rewrite the stock, and an
//! operator's token does not let anyone forge a payment. A missing or wrong
//! token is a 401 that changes nothing. There is no end-user authentication
//! here: that is the job of a gateway in front of order-service.

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

/// The environment variable every command reads the internal token from;
/// `up` and `cluster` hand a generated token to their children through it,
/// never on the command line (which any local user can read in the process
/// list).
pub const INTERNAL_TOKEN_ENV: &str = "STOCKROOM_INTERNAL_TOKEN";

/// The environment variable the operator token is read from, by the
/// services and by the `stockroom stock` commands.
pub const OPERATOR_TOKEN_ENV: &str = "STOCKROOM_OPERATOR_TOKEN";

/// The name of the internal bearer scheme in the OpenAPI documents.
pub const INTERNAL_TOKEN_SCHEME: &str = "internalToken";

/// The name of the operator's bearer scheme in the OpenAPI documents.
pub const OPERATOR_TOKEN_SCHEME: &str = "operatorToken";

/// Random bytes in a generated token (hex-encoded, twice as many characters).
const GENERATED_TOKEN_BYTES: usize = 32;

/// Which credential a token is, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRole {
    Internal,
    Operator,
}

impl std::fmt::Display for TokenRole {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            TokenRole::Internal => "internal",
            TokenRole::Operator => "operator",
        })
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the {role} token must be at least {MIN_INTERNAL_TOKEN_CHARS} characters (it has {chars})"
    )]
    TooShort { role: TokenRole, chars: usize },
    #[error(
        "the {role} token may be at most {MAX_INTERNAL_TOKEN_CHARS} characters (it has {chars})"
    )]
    TooLong { role: TokenRole, chars: usize },
    #[error("the {role} token may hold only visible ASCII characters, without spaces")]
    NotPrintable { role: TokenRole },
}

/// A bearer secret: 32 to 256 visible ASCII characters, compared in
/// constant time, never printed.
#[derive(Clone, PartialEq, Eq)]
struct Secret(Arc<str>);

impl Secret {
    fn parse(role: TokenRole, text: &str) -> Result<Secret, TokenError> {
        let chars = text.chars().count();
        if chars < MIN_INTERNAL_TOKEN_CHARS {
            return Err(TokenError::TooShort { role, chars });
        }
        if chars > MAX_INTERNAL_TOKEN_CHARS {
            return Err(TokenError::TooLong { role, chars });
        }
        if !text.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(TokenError::NotPrintable { role });
        }
        Ok(Secret(Arc::from(text)))
    }

    fn generate() -> Secret {
        let bytes: [u8; GENERATED_TOKEN_BYTES] = rand::random();
        let text: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        Secret(Arc::from(text.as_str()))
    }

    fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented))
    }

    fn header_value(&self) -> HeaderValue {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .expect("a parsed or generated token is visible ASCII");
        value.set_sensitive(true);
        value
    }
}

/// Defines a token type of one role over [`Secret`].
macro_rules! token_type {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Secret);

        impl $name {
            /// Accepts a token given by the operator.
            pub fn parse(text: &str) -> Result<$name, TokenError> {
                Secret::parse($role, text).map($name)
            }

            /// A new random token, from the operating system's random source.
            pub fn generate() -> $name {
                $name(Secret::generate())
            }

            /// The token itself, to hand to a child process or to send.
            pub fn expose(&self) -> &str {
                &(self.0).0
            }

            /// Whether `presented` is this token, in time that does not
            /// depend on where the two first differ.
            pub fn matches(&self, presented: &[u8]) -> bool {
                self.0.matches(presented)
            }

            /// The `Authorization` header value that carries this token.
            pub fn header_value(&self) -> HeaderValue {
                self.0.header_value()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

token_type!(
    /// The shared secret of a system's services.
    InternalToken,
    TokenRole::Internal
);

token_type!(
    /// The shop operator's secret, for the routes that run the stock.
    OperatorToken,
    TokenRole::Operator
);

/// The token a request presents as `Authorization: Bearer …`.
fn presented(request: &Request) -> Option<&[u8]> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
}

fn unauthorized(message: &str) -> Response {
    let mut response = crate::error_response(StatusCode::UNAUTHORIZED, "unauthorized", message);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Middleware for internal routes: passes a request carrying the token,
/// answers anything else with a 401 before the handler runs.
pub async fn require_internal_token(
    State(token): State<InternalToken>,
    request: Request,
    next: Next,
) -> Response {
    match presented(&request) {
        Some(presented) if token.matches(presented) => next.run(request).await,
        _ => {
            unauthorized("this route is internal: it needs Authorization: Bearer <internal token>")
        }
    }
}

/// Middleware for operator routes: passes a request carrying the operator
/// token, answers anything else with a 401 before the handler runs. Without
/// a configured token (`None`) every request is refused: the routes are off.
pub async fn require_operator_token(
    State(token): State<Option<OperatorToken>>,
    request: Request,
    next: Next,
) -> Response {
    match (&token, presented(&request)) {
        (Some(token), Some(presented)) if token.matches(presented) => next.run(request).await,
        (None, _) => unauthorized(
            "this route is the operator's and no operator token is configured: start the service with --operator-token or STOCKROOM_OPERATOR_TOKEN",
        ),
        _ => unauthorized(
            "this route is the operator's: it needs Authorization: Bearer <operator token>",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_visible_and_compared_exactly() {
        assert_eq!(
            InternalToken::parse("short"),
            Err(TokenError::TooShort {
                role: TokenRole::Internal,
                chars: 5
            })
        );
        assert_eq!(
            OperatorToken::parse(&"a b".repeat(20)),
            Err(TokenError::NotPrintable {
                role: TokenRole::Operator
            })
        );
        assert!(
            OperatorToken::parse("short")
                .unwrap_err()
                .to_string()
                .starts_with("the operator token")
        );
        assert!(InternalToken::parse(&"x".repeat(MAX_INTERNAL_TOKEN_CHARS + 1)).is_err());
        let token = InternalToken::parse(&"k".repeat(40)).unwrap();
        assert!(token.matches("k".repeat(40).as_bytes()));
        assert!(!token.matches("k".repeat(39).as_bytes()));
        assert!(!token.matches(format!("{}j", "k".repeat(39)).as_bytes()));
        assert_eq!(format!("{token:?}"), "InternalToken(<redacted>)");
        let operator = OperatorToken::parse(&"k".repeat(40)).unwrap();
        assert_eq!(format!("{operator:?}"), "OperatorToken(<redacted>)");
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
        let operator = OperatorToken::generate();
        assert_eq!(OperatorToken::parse(operator.expose()).unwrap(), operator);
    }
}
