//! JSON body extractors that report every failure as a JSON client error.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::serve::error_response;

/// Like `axum::Json`, and strict about everything: a body that is not
/// declared `application/json` (415), an empty body, bad JSON, a wrong type,
/// a missing field, a body over the route's size limit or one that arrives
/// too slowly each give a JSON error with a fitting 4xx status.
///
/// The content type matters for more than tidiness: a page on another site
/// can make a browser post a form or `text/plain` anywhere without asking
/// first, but not `application/json`, so a JSON route that refuses every
/// other type cannot be driven by such a page.
pub struct JsonBody<T>(pub T);

/// A JSON document's bytes, unparsed, with [`JsonBody`]'s checks of the
/// content type, size and arrival time: for a route that relays a document
/// it does not need to read.
pub struct JsonBytes(pub Bytes);

/// Why a body was refused.
#[derive(Debug)]
pub enum BodyError {
    /// The body is not declared as JSON; the declared type, if any.
    UnsupportedMediaType(Option<String>),
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
            BodyError::UnsupportedMediaType(declared) => error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                &match declared {
                    Some(declared) => format!(
                        "the body is declared as {declared}; send it as Content-Type: application/json"
                    ),
                    None => {
                        "the body has no Content-Type; send it as Content-Type: application/json"
                            .to_owned()
                    }
                },
            ),
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
        let JsonBytes(bytes) = JsonBytes::from_request(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

impl<S> FromRequest<S> for JsonBytes
where
    S: Send + Sync,
{
    type Rejection = BodyError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json(request.headers())?;
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
        Ok(JsonBytes(bytes))
    }
}

/// Refuses a body not declared as JSON: `application/json`, or a JSON-based
/// type (`application/problem+json`), with any parameters.
pub fn require_json(headers: &HeaderMap) -> Result<(), BodyError> {
    let Some(declared) = headers.get(header::CONTENT_TYPE) else {
        return Err(BodyError::UnsupportedMediaType(None));
    };
    let text = declared.to_str().unwrap_or("");
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json = essence
        .strip_prefix("application/")
        .is_some_and(|subtype| subtype == "json" || subtype.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(BodyError::UnsupportedMediaType(Some(
            text.chars().take(MAX_ECHOED_TYPE_CHARS).collect(),
        )))
    }
}

/// The longest declared content type echoed back in a refusal.
const MAX_ECHOED_TYPE_CHARS: usize = 100;

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
/// wrong shape (422). Every request document is a JSON object: serde would
/// also fill a struct from an array of its fields in order (`[1, 2]`), which
/// no client means, so an array is refused as the wrong shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let Some(first) = bytes.iter().find(|byte| !byte.is_ascii_whitespace()) else {
        return Err(BodyError::Empty);
    };
    if *first == b'[' {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => BodyError::Invalid("the body must be a JSON object, not an array".into()),
                Err(error) => classify(error),
            },
        );
    }
    serde_json::from_slice(bytes).map_err(classify)
}

fn classify(error: serde_json::Error) -> BodyError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            BodyError::Malformed(format!("the body is not valid JSON: {error}"))
        }
        Category::Data => BodyError::Invalid(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Sample {
        #[allow(dead_code)]
        quantity: u32,
    }

    fn with_type(content_type: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static(content_type),
        );
        headers
    }

    #[test]
    fn only_json_bodies_are_accepted() {
        for accepted in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(require_json(&with_type(accepted)).is_ok(), "{accepted}");
        }
        for refused in [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "text/json",
            "",
        ] {
            assert!(
                matches!(
                    require_json(&with_type(refused)),
                    Err(BodyError::UnsupportedMediaType(Some(_)))
                ),
                "{refused}"
            );
        }
        assert!(matches!(
            require_json(&HeaderMap::new()),
            Err(BodyError::UnsupportedMediaType(None))
        ));
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
        assert!(
            matches!(parse_json::<Sample>(b" [2]"), Err(BodyError::Invalid(_))),
            "a struct is never filled from an array"
        );
        assert!(matches!(
            parse_json::<Sample>(b"[2"),
            Err(BodyError::Malformed(_))
        ));
    }
}
