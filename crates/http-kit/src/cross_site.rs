//! Requests that a page on another site makes the operator's browser send.
//!
//! A browser lets any page send a "simple" request anywhere: a form post,
//! or a `fetch` with a `text/plain` body or none at all, without asking the
//! target first. The page cannot read the answer, but the request still
//! takes effect, so a page could place or cancel orders on a system the
//! operator runs on loopback. Browsers say where such a request comes from:
//! `Sec-Fetch-Site` (every current browser) and `Origin` (on every request
//! that is not a GET or HEAD). A listener therefore refuses, with a 403 and
//! before any route runs, a request that can change something (any method
//! but GET, HEAD, OPTIONS and TRACE) when
//!
//! - `Sec-Fetch-Site` says another site sent it (`cross-site`, `same-site`,
//!   or a value this code does not know), or
//! - `Origin` names a page whose host this listener does not serve (see
//!   [`crate::hosts`]), or is `null` (a sandboxed or local-file page).
//!
//! Clients that are not browsers send neither header and pass; so do the
//! pages of the names the listener serves. JSON routes refuse other content
//! types besides (see [`crate::JsonBody`]), which a page cannot send to
//! another site without the browser asking first.

use axum::http::uri::Authority;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::hosts::HostCheck;

/// The header browsers name the requesting page's relation to the target in.
pub const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// Why a request was taken for another site's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossSiteRefusal {
    #[error("a page on another site may not send this request (Sec-Fetch-Site: {value})")]
    FetchSite { value: String },
    #[error("a page from {origin} may not send this request")]
    Origin { origin: String },
}

impl IntoResponse for CrossSiteRefusal {
    fn into_response(self) -> Response {
        crate::error_response(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            &self.to_string(),
        )
    }
}

/// Whether a request with this method cannot change anything by its
/// definition (RFC 9110's safe methods).
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The longest origin echoed back in a refusal.
const MAX_ECHOED_ORIGIN_CHARS: usize = 300;

/// Refuses a request that another site's page sent to change something.
pub(crate) fn check(
    method: &Method,
    headers: &HeaderMap,
    hosts: &HostCheck,
) -> Result<(), CrossSiteRefusal> {
    if is_safe(method) {
        return Ok(());
    }
    for value in headers.get_all(SEC_FETCH_SITE) {
        let value = value.to_str().unwrap_or("");
        if !matches!(value, "same-origin" | "none") {
            return Err(CrossSiteRefusal::FetchSite {
                value: value.chars().take(MAX_ECHOED_ORIGIN_CHARS).collect(),
            });
        }
    }
    for origin in headers.get_all(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let served = origin_authority(origin).is_some_and(|host| hosts.serves(&host).is_ok());
        if !served {
            return Err(CrossSiteRefusal::Origin {
                origin: origin.chars().take(MAX_ECHOED_ORIGIN_CHARS).collect(),
            });
        }
    }
    Ok(())
}

/// The host and port of an `Origin` value (`http://name:port`), or `None`
/// for `null` and anything that is not an HTTP origin.
pub fn origin_authority(origin: &str) -> Option<Authority> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))?;
    if rest.contains('/') {
        return None;
    }
    rest.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn hosts() -> HostCheck {
        HostCheck::new(
            "127.0.0.1".parse().unwrap(),
            crate::AllowedHosts::parse("shop.example.com").unwrap(),
        )
    }

    fn request(
        method: Method,
        pairs: &[(&'static str, &'static str)],
    ) -> Result<(), CrossSiteRefusal> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        check(&method, &headers, &hosts())
    }

    #[test]
    fn other_sites_may_not_change_anything() {
        for pairs in [
            &[(SEC_FETCH_SITE, "cross-site")][..],
            &[(SEC_FETCH_SITE, "same-site")],
            &[(SEC_FETCH_SITE, "from-the-future")],
            &[("origin", "http://evil.example")],
            &[("origin", "null")],
            &[("origin", "http://rebind.attacker.test:3001")],
            &[
                (SEC_FETCH_SITE, "same-origin"),
                ("origin", "http://evil.example"),
            ],
        ] {
            assert!(request(Method::POST, pairs).is_err(), "{pairs:?}");
            assert!(request(Method::DELETE, pairs).is_err(), "{pairs:?}");
            assert!(request(Method::GET, pairs).is_ok(), "{pairs:?}");
        }
    }

    #[test]
    fn clients_and_the_services_own_pages_pass() {
        for pairs in [
            &[][..],
            &[
                (SEC_FETCH_SITE, "same-origin"),
                ("origin", "http://127.0.0.1:3001"),
            ],
            &[(SEC_FETCH_SITE, "none")],
            &[("origin", "https://shop.example.com")],
            &[("origin", "http://localhost:3000")],
        ] {
            assert!(request(Method::POST, pairs).is_ok(), "{pairs:?}");
        }
    }
}
