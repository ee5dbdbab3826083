//! The bounded label values of request metrics: a client can choose its
//! method and path freely, so neither is ever used as sent.

use axum::http::Method;

/// The route label of requests no route matched, so unknown paths share one
/// series instead of creating one each.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The method label of any method outside the standard ones (`curl -X
/// ANYTHING`), so invented methods share one series.
pub const OTHER_METHOD: &str = "other";

/// The method label of a request: the standard methods by name, any other
/// as [`OTHER_METHOD`].
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => OTHER_METHOD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let invented = Method::from_bytes(b"ANYTHING").unwrap();
        assert_eq!(method_label(&invented), OTHER_METHOD);
        let other = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(method_label(&other), OTHER_METHOD);
    }
}
