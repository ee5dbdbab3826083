//! Who may start a flash sale or a race-lab run.
//!
//! The dashboard usually runs on the operator's machine, where any web page
//! the operator visits can make the browser send it requests. Its listener
//! already refuses names it does not serve (a rebinding page) and other
//! sites' pages in general (see `stockroom_http_kit::hosts` and
//! `cross_site`); the controls, which start real work, ask for more:
//!
//! - a browser's `Sec-Fetch-Site`, when sent, must be `same-origin`;
//! - a browser's `Origin`, when sent, must be exactly the dashboard's own
//!   (`http://` or `https://` and the request's `Host`);
//! - a request without `Origin` (a script, `curl`) must carry the
//!   dashboard's token in [`CSRF_TOKEN_HEADER`]. The token is random per
//!   start and handed out only in the page (a `<meta>` element) and by
//!   `GET /api/csrf-token`, both same-origin reads that no other site's page
//!   can make; a wrong token is refused even beside a good `Origin`;
//! - at most [`CONTROL_BURST`] control requests pass at once, refilled one
//!   per [`CONTROL_REFILL_MS`]; beyond that, 429. Only requests that passed
//!   the checks above count, so another site's page cannot use up the
//!   operator's allowance.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use stockroom_http_kit::cross_site::SEC_FETCH_SITE;
use subtle::ConstantTimeEq;

use crate::{DashboardError, DashboardState};

/// The header a control request carries the dashboard's token in.
pub const CSRF_TOKEN_HEADER: &str = "x-stockroom-csrf-token";

/// Random bytes in a token (hex-encoded, twice as many characters): beyond
/// guessing.
const CSRF_TOKEN_BYTES: usize = 32;

/// The most control requests that may pass at once: an operator clicking,
/// or a script trying a few runs, never needs more.
pub const CONTROL_BURST: u32 = 20;

/// One more control request is allowed every this many milliseconds.
pub const CONTROL_REFILL_MS: u64 = 1_000;

const _: () = assert!(CONTROL_BURST >= 1 && CONTROL_REFILL_MS >= 1);

/// The controls' token and allowance. Cloning shares them.
#[derive(Clone)]
pub struct ControlGuard {
    token: Arc<str>,
    allowance: Arc<Mutex<Allowance>>,
}

/// A token bucket.
struct Allowance {
    available: u32,
    refilled_at: Instant,
}

impl Default for ControlGuard {
    fn default() -> Self {
        ControlGuard::new()
    }
}

impl ControlGuard {
    /// A guard with a new random token.
    pub fn new() -> ControlGuard {
        let bytes: [u8; CSRF_TOKEN_BYTES] = rand::random();
        let token: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        ControlGuard {
            token: Arc::from(token.as_str()),
            allowance: Arc::new(Mutex::new(Allowance {
                available: CONTROL_BURST,
                refilled_at: Instant::now(),
            })),
        }
    }

    /// The token the page and scripts send back.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Lets a control request through, or says why not.
    pub fn admit(&self, headers: &HeaderMap) -> Result<(), DashboardError> {
        same_site(headers)?;
        let has_origin = own_origin(headers)?;
        match headers.get(CSRF_TOKEN_HEADER) {
            Some(presented) if bool::from(self.token.as_bytes().ct_eq(presented.as_bytes())) => {}
            Some(_) => return Err(DashboardError::WrongToken),
            None if has_origin => {}
            None => return Err(DashboardError::MissingToken),
        }
        self.take()
    }

    /// Takes one request from the allowance.
    fn take(&self) -> Result<(), DashboardError> {
        let mut allowance = self
            .allowance
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let refill = Duration::from_millis(CONTROL_REFILL_MS);
        let earned = allowance.refilled_at.elapsed().as_millis() as u64 / CONTROL_REFILL_MS;
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            allowance.available = allowance
                .available
                .saturating_add(earned)
                .min(CONTROL_BURST);
            allowance.refilled_at += refill * earned;
        }
        if allowance.available == 0 {
            let wait = refill.saturating_sub(allowance.refilled_at.elapsed());
            return Err(DashboardError::TooManyControlRequests {
                retry_after_s: wait.as_secs().max(1),
            });
        }
        allowance.available -= 1;
        Ok(())
    }
}

/// Refuses a request a browser says came from anything but the dashboard's
/// own page.
fn same_site(headers: &HeaderMap) -> Result<(), DashboardError> {
    for value in headers.get_all(SEC_FETCH_SITE) {
        if value.as_bytes() != b"same-origin" {
            return Err(DashboardError::CrossSite {
                value: String::from_utf8_lossy(value.as_bytes())
                    .chars()
                    .take(40)
                    .collect(),
            });
        }
    }
    Ok(())
}

/// Whether the request names the dashboard's own page as its `Origin`;
/// refuses any other `Origin`. The listener has already checked that `Host`
/// is a name the dashboard serves, so a rebinding page's own name never
/// passes here.
fn own_origin(headers: &HeaderMap) -> Result<bool, DashboardError> {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let Some(origin) = origins.next() else {
        return Ok(false);
    };
    let origin = origin.to_str().unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    if origins.next().is_none() && !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(true)
    } else {
        Err(DashboardError::ForeignOrigin {
            origin: origin.chars().take(300).collect(),
        })
    }
}

/// Proof that a control request passed [`ControlGuard::admit`]; taken
/// before the body is read.
pub(crate) struct ControlAccess;

impl FromRequestParts<DashboardState> for ControlAccess {
    type Rejection = DashboardError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &DashboardState,
    ) -> Result<Self, Self::Rejection> {
        state.controls.admit(&parts.headers)?;
        Ok(ControlAccess)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:3000"));
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn only_the_dashboards_own_page_or_a_token_holder_may_start_a_run() {
        let guard = ControlGuard::new();
        let token = guard.token().to_owned();
        let token = token.as_str();
        let page = [
            ("origin", "http://127.0.0.1:3000"),
            (SEC_FETCH_SITE, "same-origin"),
            (CSRF_TOKEN_HEADER, token),
        ];
        assert!(guard.admit(&headers(&page)).is_ok());
        assert!(guard.admit(&headers(&page[..2])).is_ok(), "origin alone");
        assert!(guard.admit(&headers(&page[2..])).is_ok(), "token alone");
        for refused in [
            &[][..],
            &[
                ("origin", "http://evil.example"),
                (CSRF_TOKEN_HEADER, token),
            ],
            &[("origin", "http://127.0.0.1:3001")],
            &[("origin", "null")],
            &[(SEC_FETCH_SITE, "cross-site"), (CSRF_TOKEN_HEADER, token)],
            &[
                (SEC_FETCH_SITE, "same-site"),
                ("origin", "http://127.0.0.1:3000"),
            ],
            &[(SEC_FETCH_SITE, "none"), (CSRF_TOKEN_HEADER, token)],
            &[(CSRF_TOKEN_HEADER, "0123")],
            &[
                ("origin", "http://127.0.0.1:3000"),
                (CSRF_TOKEN_HEADER, "0123"),
            ],
        ] {
            assert!(guard.admit(&headers(refused)).is_err(), "{refused:?}");
        }
        assert_ne!(ControlGuard::new().token(), token, "a new token per start");
        assert_eq!(token.len(), 2 * CSRF_TOKEN_BYTES);
    }

    #[test]
    fn control_requests_are_rate_limited() {
        let guard = ControlGuard::new();
        let allowed = allowed_for(&guard);
        for _ in 0..CONTROL_BURST {
            guard.admit(&allowed).unwrap();
        }
        assert!(matches!(
            guard.admit(&allowed),
            Err(DashboardError::TooManyControlRequests { retry_after_s: 1 })
        ));
        // Refused requests never use up the allowance.
        let guard = ControlGuard::new();
        for _ in 0..CONTROL_BURST * 2 {
            assert!(guard.admit(&headers(&[])).is_err());
        }
        assert!(guard.admit(&allowed_for(&guard)).is_ok());
    }

    fn allowed_for(guard: &ControlGuard) -> HeaderMap {
        headers(&[(CSRF_TOKEN_HEADER, guard.token())])
    }
}
