//! The page and its assets, compiled into the binary: the dashboard needs no
//! CDN and no network at run time. The page's policy (`Content-Security-Policy`)
//! lets it load and connect to nothing but the dashboard itself. The page
//! carries the controls' token (see [`crate::guard`]) in a `<meta>` element.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::DashboardState;
use crate::guard::CSRF_TOKEN_HEADER;

/// The page may load scripts, styles and data from the dashboard only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

const INDEX_HTML: &str = include_str!("../assets/index.html");

/// Where the page's `<meta name="stockroom-csrf-token">` takes the token.
const TOKEN_PLACEHOLDER: &str = "{{csrf-token}}";

/// The page with `token` in it.
pub(crate) fn page(token: &str) -> Arc<str> {
    debug_assert!(INDEX_HTML.contains(TOKEN_PLACEHOLDER));
    Arc::from(INDEX_HTML.replace(TOKEN_PLACEHOLDER, token))
}

/// Every asset by its file name, with its content type.
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../assets/dashboard.css"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/dashboard.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/chart.js"),
    ),
];

fn with_headers(content_type: &'static str, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The assets change with the binary; a reload must never show a stale
    // page against a newer server.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /`: the page.
pub(crate) async fn index(State(state): State<DashboardState>) -> Response {
    let mut response = with_headers("text/html; charset=utf-8", state.page.to_string());
    // It carries the token: never kept by a cache between two visitors.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /api/csrf-token`: the controls' token and the header to send it in,
/// for scripts (the page has it already). Only a same-origin read can see
/// the answer, which no other site's page can make.
pub(crate) async fn csrf_token(State(state): State<DashboardState>) -> Response {
    let document = serde_json::json!({
        "token": state.controls.token(),
        "header": CSRF_TOKEN_HEADER,
    });
    let mut response = axum::Json(document).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /assets/{file}`.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => with_headers(content_type, *body),
        None => stockroom_http_kit::fallback_not_found().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing on the page points outside the dashboard (the SVG namespace
    /// is a name, not an address anything loads).
    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for (name, _, body) in ASSETS.iter().chain([&("index.html", "", INDEX_HTML)]) {
            let body = body.replace("\"http://www.w3.org/2000/svg\"", "");
            for needle in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(!body.contains(needle), "{name} mentions {needle}");
            }
        }
        for (name, _, _) in ASSETS {
            assert!(
                INDEX_HTML.contains(&format!("/assets/{name}")),
                "the page does not load {name}"
            );
        }
    }

    #[test]
    fn the_page_carries_the_token() {
        let page = page("0123abcd");
        assert!(
            page.contains(r#"<meta name="stockroom-csrf-token" content="0123abcd">"#),
            "{page}"
        );
        assert!(!page.contains(TOKEN_PLACEHOLDER));
    }
}
