//! The dashboard's errors and their one mapping to HTTP answers.

use axum::http::StatusCode;
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
    /// Every stream slot is taken.
    #[error("too many pages are watching; close one and reload")]
    TooManyStreams,
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            DashboardError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            DashboardError::Busy(_) => (StatusCode::CONFLICT, "already_running"),
            DashboardError::LabUnavailable => (StatusCode::CONFLICT, "lab_unavailable"),
            DashboardError::ForeignOrigin { .. } => (StatusCode::FORBIDDEN, "foreign_origin"),
            DashboardError::TooManyStreams => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        };
        error_response(status, code, &self.to_string())
    }
}

/// Refuses a control request that a browser sent from another site's page:
/// the controls take a plain JSON body, which any page could post to a
/// dashboard on the operator's machine. Browsers name the page's origin in
/// `Origin`; it must be the dashboard's own (`Host`). Requests without an
/// `Origin` (curl, scripts) are not a browser's and pass.
pub(crate) fn same_origin(headers: &axum::http::HeaderMap) -> Result<(), DashboardError> {
    let Some(origin) = headers.get(axum::http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    if !host.is_empty() && origin_host == host {
        Ok(())
    } else {
        Err(DashboardError::ForeignOrigin {
            origin: origin.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, header};

    fn headers(origin: Option<&'static str>, host: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static(host));
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
        }
        headers
    }

    #[test]
    fn only_the_dashboards_own_page_may_post() {
        assert!(same_origin(&headers(None, "127.0.0.1:3000")).is_ok());
        assert!(same_origin(&headers(Some("http://127.0.0.1:3000"), "127.0.0.1:3000")).is_ok());
        assert!(same_origin(&headers(Some("http://evil.example"), "127.0.0.1:3000")).is_err());
        assert!(same_origin(&headers(Some("http://127.0.0.1:3001"), "127.0.0.1:3000")).is_err());
        assert!(same_origin(&headers(Some("null"), "127.0.0.1:3000")).is_err());
    }
}
