//! The dashboard's errors and their one mapping to HTTP answers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stockroom_http_kit::error_response;

/// Why the dashboard refused a request.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A control's input is out of its bounds or names something unknown.
    #[error("{0}")]
    Invalid(String),
    /// A flash sale or a lab run is already under way; one at a time.
    #[error("{0}")]
    Busy(String),
    /// The race lab was not given a way to start a fixed system.
    #[error("this dashboard was started without the race lab")]
    LabUnavailable,
    /// A control was posted from another site's page.
    #[error("requests from {origin} are refused: only the dashboard's own page may start a run")]
    ForeignOrigin { origin: String },
    /// The browser says another site's page sent a control request.
    #[error(
        "a request sent with Sec-Fetch-Site: {value} is refused: only the dashboard's own page may start a run"
    )]
    CrossSite { value: String },
    /// A control request came without `Origin` and without the token.
    #[error(
        "a control request needs the dashboard's token in {header} (the page has it; scripts read it from GET /api/csrf-token)",
        header = crate::guard::CSRF_TOKEN_HEADER
    )]
    MissingToken,
    /// A control request carried a token that is not this dashboard's.
    #[error(
        "the dashboard's token is wrong (it changes when the dashboard restarts: reload the page)"
    )]
    WrongToken,
    /// More control requests than the allowance.
    #[error("too many control requests; retry in {retry_after_s} s")]
    TooManyControlRequests { retry_after_s: u64 },
    /// Every stream slot is taken.
    #[error("too many pages are watching; close one and reload")]
    TooManyStreams,
    /// This client already watches with its share of the streams.
    #[error(
        "this address already has {MAX_STREAMS_PER_CLIENT} live streams open; close one and reload",
        MAX_STREAMS_PER_CLIENT = crate::stream::MAX_STREAMS_PER_CLIENT
    )]
    TooManyStreamsFromClient,
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            DashboardError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            DashboardError::Busy(_) => (StatusCode::CONFLICT, "already_running"),
            DashboardError::LabUnavailable => (StatusCode::CONFLICT, "lab_unavailable"),
            DashboardError::ForeignOrigin { .. } => (StatusCode::FORBIDDEN, "foreign_origin"),
            DashboardError::CrossSite { .. } => (StatusCode::FORBIDDEN, "cross_site_request"),
            DashboardError::MissingToken => (StatusCode::FORBIDDEN, "csrf_token_required"),
            DashboardError::WrongToken => (StatusCode::FORBIDDEN, "csrf_token_invalid"),
            DashboardError::TooManyControlRequests { .. }
            | DashboardError::TooManyStreamsFromClient => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
            }
            DashboardError::TooManyStreams => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        };
        let mut response = error_response(status, code, &self.to_string());
        let retry_after_s = match &self {
            DashboardError::TooManyControlRequests { retry_after_s } => Some(*retry_after_s),
            DashboardError::TooManyStreamsFromClient => Some(crate::stream::STREAM_RETRY_AFTER_S),
            _ => None,
        };
        if let Some(seconds) = retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
