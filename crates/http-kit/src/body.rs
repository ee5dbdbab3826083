//! A JSON body extractor that reports every failure as a JSON client error.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::serve::error_response;

/// Like `axum::Json`, but lenient about the `Content-Type` header (a bare
/// `curl -d` works) and strict about everything else: an empty body, bad JSON,
/// a wrong type, a missing field or a body over the route's size limit each
/// give a JSON error with a fitting 4xx status.
pub struct JsonBody<T>(pub T);

/// Why a body was refused.
#[derive(Debug)]
pub enum BodyError {
    TooLarge(String),
    /// The body did not arrive whole within the listener's deadline, or
    /// arrived too slowly (see [`crate::BodyLimits`]).
    TimedOut(String),
    Unreadable(String),
    Empty,
    Malformed(String),
    Invalid(String),
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        match self {
            BodyError::TooLarge(message) => {
                error_response(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", &message)
            }
            BodyError::TimedOut(message) => {
                error_response(StatusCode::REQUEST_TIMEOUT, "body_timeout", &message)
            }
            BodyError::Unreadable(message) => {
                error_response(StatusCode::BAD_REQUEST, "unreadable_body", &message)
            }
            BodyError::Empty => error_response(
                StatusCode::BAD_REQUEST,
                "empty_body",
                "the request body is empty; a JSON document is required",
            ),
            BodyError::Malformed(message) => {
                error_response(StatusCode::BAD_REQUEST, "malformed_json", &message)
            }
            BodyError::Invalid(message) => error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                &message,
            ),
        }
    }
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = BodyError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    BodyError::TooLarge(format!(
                        "the request body is too large: {}",
                        rejection.body_text()
                    ))
                } else if let Some(timeout) = timed_out(&rejection) {
                    BodyError::TimedOut(timeout.to_string())
                } else {
                    BodyError::Unreadable(rejection.body_text())
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The listener's reason, when a body failed because it arrived too slowly.
fn timed_out(
    rejection: &axum::extract::rejection::BytesRejection,
) -> Option<&crate::BodyReadError> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if let Some(failure) = error.downcast_ref::<crate::BodyReadError>() {
            return failure.is_timeout().then_some(failure);
        }
        cause = error.source();
    }
    None
}

/// Parses a JSON document, telling syntax errors (400) from documents of the
/// wrong shape (422).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    serde_json::from_slice(bytes).map_err(|error| {
        use serde_json::error::Category;
        match error.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                BodyError::Malformed(format!("the body is not valid JSON: {error}"))
            }
            Category::Data => BodyError::Invalid(error.to_string()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Sample {
        #[allow(dead_code)]
        quantity: u32,
    }

    #[test]
    fn classifies_body_errors() {
        assert!(matches!(parse_json::<Sample>(b"  "), Err(BodyError::Empty)));
        assert!(matches!(
            parse_json::<Sample>(b"{\"quantity\":"),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            parse_json::<Sample>(b"{\"quantity\":\"2\"}"),
            Err(BodyError::Invalid(_))
        ));
        assert!(matches!(
            parse_json::<Sample>(b"{}"),
            Err(BodyError::Invalid(_))
        ));
        assert!(parse_json::<Sample>(b"{\"quantity\":2}").is_ok());
    }
}
