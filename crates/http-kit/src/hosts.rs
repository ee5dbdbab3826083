//! Which host names a listener serves.
//!
//! A web page can make the operator's browser send requests to a service on
//! the operator's machine. With DNS rebinding it can even read the answers:
//! the page's own name (`rebind.attacker.test`) is made to resolve to
//! `127.0.0.1`, so the browser treats the service as the page's own origin.
//! What such a request cannot hide is the name it was sent to: the browser
//! puts the page's name in `Host`. Every listener therefore answers only
//! requests addressed to a name it serves, and refuses the rest with
//! `421 Misdirected Request` before any route runs:
//!
//! - the loopback names (`localhost`, `127.0.0.0/8`, `::1`), which no page on
//!   another site can take over;
//! - the address the listener is bound to (and, when it is bound to every
//!   address, any IP address: a page cannot make a browser send a name-less
//!   request, so an address in `Host` is never a rebound name);
//! - the names the operator adds with `--allowed-hosts` or
//!   [`ALLOWED_HOSTS_ENV`], for a deployment behind a load balancer or a
//!   gateway that keeps the public name in `Host`.
//!
//! The port is not compared: a port forward (`ssh -L`, a container's
//! published port) changes it legitimately, and a rebinding page can use
//! whatever port the service has anyway.

use std::net::IpAddr;
use std::sync::OnceLock;

use axum::http::uri::Authority;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The environment variable that lists the extra host names every service
/// of this process serves, comma-separated (`--allowed-hosts` sets the
/// same).
pub const ALLOWED_HOSTS_ENV: &str = "STOCKROOM_ALLOWED_HOSTS";

/// The most names an operator may list: a deployment has a handful of
/// public names; a longer list is a mistake, and every request is checked
/// against it.
pub const MAX_ALLOWED_HOSTS: usize = 64;

/// The longest host name (RFC 1035's limit for a whole name); anything
/// longer is not a name and is not echoed back.
pub const MAX_HOST_NAME_CHARS: usize = 253;

/// One name the operator allows: exactly this name, or (written with a
/// leading dot, `.example.com`) the name and every name under it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    WithSubdomains(String),
}

impl HostPattern {
    fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => name == exact,
            HostPattern::WithSubdomains(domain) => {
                name == domain
                    || name
                        .strip_suffix(domain.as_str())
                        .is_some_and(|prefix| prefix.ends_with('.'))
            }
        }
    }
}

/// The names the operator added to those every listener serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    patterns: Vec<HostPattern>,
}

/// Why a list of allowed host names was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostListError {
    #[error("at most {MAX_ALLOWED_HOSTS} allowed host names may be given (got {count})")]
    TooMany { count: usize },
    #[error(
        "{name:?} is not a host name: use letters, digits, '-' and '.', or an IP address, without a port or a scheme (a leading '.' also allows every name under it)"
    )]
    NotAName { name: String },
    #[error("the allowed host names were already set to another list in this process")]
    AlreadyInstalled,
}

static INSTALLED: OnceLock<AllowedHosts> = OnceLock::new();

impl AllowedHosts {
    /// Reads a comma-separated list (`shop.example.com, .example.org`).
    pub fn parse(list: &str) -> Result<AllowedHosts, HostListError> {
        let mut patterns = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let lower = entry.to_ascii_lowercase();
            let (domain, pattern): (&str, fn(String) -> HostPattern) = match lower.strip_prefix('.')
            {
                Some(domain) => (domain, HostPattern::WithSubdomains),
                None => (lower.as_str(), HostPattern::Exact),
            };
            let domain = domain.strip_suffix('.').unwrap_or(domain);
            if !is_host_name(domain) && domain.parse::<IpAddr>().is_err() {
                return Err(HostListError::NotAName {
                    name: entry.to_owned(),
                });
            }
            patterns.push(pattern(domain.to_owned()));
        }
        if patterns.len() > MAX_ALLOWED_HOSTS {
            return Err(HostListError::TooMany {
                count: patterns.len(),
            });
        }
        Ok(AllowedHosts { patterns })
    }

    /// Makes these names the ones every listener of this process serves
    /// besides its own (see the module's documentation). Set once, at
    /// start; setting the same list again is harmless.
    pub fn install(self) -> Result<(), HostListError> {
        let installed = INSTALLED.get_or_init(|| self.clone());
        if *installed == self {
            Ok(())
        } else {
            Err(HostListError::AlreadyInstalled)
        }
    }

    /// The names installed for this process (none unless
    /// [`AllowedHosts::install`] was called).
    pub fn installed() -> AllowedHosts {
        INSTALLED.get().cloned().unwrap_or_default()
    }

    fn allows(&self, name: &str) -> bool {
        self.patterns.iter().any(|pattern| pattern.matches(name))
    }
}

/// Whether `name` is a DNS name: labels of letters, digits and `-`.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HOST_NAME_CHARS
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        })
}

/// Why a request's host was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostRefusal {
    #[error("the request names no host: send a Host header")]
    Missing,
    #[error("the request's Host header is not a host name")]
    Malformed,
    #[error(
        "this service does not serve the host name {name}; an operator can add it with --allowed-hosts or {ALLOWED_HOSTS_ENV}"
    )]
    Misdirected { name: String },
}

/// The answer in the services' error shape: 421 for a name this listener
/// does not serve, 400 for a missing or unreadable one.
impl IntoResponse for HostRefusal {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            HostRefusal::Missing => (StatusCode::BAD_REQUEST, "missing_host"),
            HostRefusal::Malformed => (StatusCode::BAD_REQUEST, "malformed_host"),
            HostRefusal::Misdirected { .. } => {
                (StatusCode::MISDIRECTED_REQUEST, "misdirected_request")
            }
        };
        crate::error_response(status, code, &self.to_string())
    }
}

/// The names one listener serves: the loopback names, its own address, and
/// the operator's additions.
#[derive(Debug, Clone)]
pub(crate) struct HostCheck {
    bound: IpAddr,
    allowed: AllowedHosts,
}

impl HostCheck {
    pub fn new(bound: IpAddr, allowed: AllowedHosts) -> HostCheck {
        HostCheck { bound, allowed }
    }

    /// Checks the host a request names: its `Host` header, and the target's
    /// authority when it is sent in absolute form (`POST http://name/…`).
    pub fn check(
        &self,
        headers: &HeaderMap,
        target: Option<&Authority>,
    ) -> Result<(), HostRefusal> {
        let mut values = headers.get_all(header::HOST).iter();
        let host = match (values.next(), values.next()) {
            (Some(host), None) => host,
            (None, _) => return Err(HostRefusal::Missing),
            // Two Host headers: which one a proxy in front believed is
            // anyone's guess, so neither is.
            (Some(_), Some(_)) => return Err(HostRefusal::Malformed),
        };
        let host: Authority = host
            .to_str()
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or(HostRefusal::Malformed)?;
        self.serves(&host)?;
        if let Some(target) = target {
            self.serves(target)?;
        }
        Ok(())
    }

    /// Whether the host of `authority` (port aside) is one this listener
    /// serves.
    pub fn serves(&self, authority: &Authority) -> Result<(), HostRefusal> {
        // `host[:port]` and nothing else: no credentials, a port of digits.
        let port = authority
            .as_str()
            .strip_prefix(authority.host())
            .ok_or(HostRefusal::Malformed)?;
        let port_is_digits = port
            .strip_prefix(':')
            .is_some_and(|digits| digits.bytes().all(|byte| byte.is_ascii_digit()));
        if !port.is_empty() && !port_is_digits {
            return Err(HostRefusal::Malformed);
        }
        let host = authority.host().to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host);
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let served = match literal.parse::<IpAddr>() {
            Ok(address) => {
                address.is_loopback()
                    || address == self.bound
                    || self.bound.is_unspecified()
                    || self.allowed.allows(&address.to_string())
            }
            Err(_) => host == "localhost" || self.allowed.allows(host),
        };
        if served {
            Ok(())
        } else {
            Err(HostRefusal::Misdirected {
                name: host.chars().take(MAX_HOST_NAME_CHARS).collect(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(hosts: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(header::HOST, HeaderValue::from_static(host));
        }
        headers
    }

    fn check(bound: &str, allowed: &str, hosts: &[&'static str]) -> Result<(), HostRefusal> {
        HostCheck::new(
            bound.parse().unwrap(),
            AllowedHosts::parse(allowed).unwrap(),
        )
        .check(&headers(hosts), None)
    }

    #[test]
    fn loopback_names_and_the_bound_address_are_served() {
        for host in [
            "127.0.0.1:3001",
            "127.0.0.1",
            "localhost:3000",
            "LOCALHOST.",
            "[::1]:3001",
            "127.9.9.9:80",
        ] {
            assert_eq!(check("127.0.0.1", "", &[host]), Ok(()), "{host}");
        }
        assert_eq!(check("10.0.0.5", "", &["10.0.0.5:3001"]), Ok(()));
        assert_eq!(check("0.0.0.0", "", &["192.168.1.20:3001"]), Ok(()));
    }

    #[test]
    fn a_rebound_name_is_misdirected() {
        for host in [
            "rebind.attacker.test:3000",
            "rebind.attacker.test",
            "localhost.attacker.test",
            "127.0.0.1.attacker.test",
        ] {
            assert!(
                matches!(
                    check("127.0.0.1", "", &[host]),
                    Err(HostRefusal::Misdirected { .. })
                ),
                "{host}"
            );
        }
        // Another machine's address is not this listener's.
        assert!(check("10.0.0.5", "", &["10.0.0.6"]).is_err());
    }

    #[test]
    fn missing_doubled_and_malformed_hosts_are_bad_requests() {
        assert_eq!(check("127.0.0.1", "", &[]), Err(HostRefusal::Missing));
        assert_eq!(
            check("127.0.0.1", "", &["127.0.0.1", "127.0.0.1"]),
            Err(HostRefusal::Malformed)
        );
        for host in ["user@127.0.0.1", "127.0.0.1:port", "a b", ""] {
            assert_eq!(
                check("127.0.0.1", "", &[host]),
                Err(HostRefusal::Malformed),
                "{host}"
            );
        }
    }

    #[test]
    fn operators_add_names_and_domains() {
        let allowed = "shop.example.com, .example.org";
        for host in [
            "shop.example.com",
            "SHOP.example.com:443",
            "example.org",
            "api.example.org",
        ] {
            assert_eq!(check("127.0.0.1", allowed, &[host]), Ok(()), "{host}");
        }
        for host in ["example.com", "evilexample.org", "shop.example.com.evil"] {
            assert!(check("127.0.0.1", allowed, &[host]).is_err(), "{host}");
        }
    }

    #[test]
    fn the_absolute_target_must_be_served_too() {
        let hosts = HostCheck::new("127.0.0.1".parse().unwrap(), AllowedHosts::default());
        let target: Authority = "rebind.attacker.test".parse().unwrap();
        assert!(matches!(
            hosts.check(&headers(&["127.0.0.1"]), Some(&target)),
            Err(HostRefusal::Misdirected { .. })
        ));
    }

    #[test]
    fn lists_are_checked() {
        assert!(AllowedHosts::parse("").unwrap().patterns.is_empty());
        for bad in [
            "http://shop.example.com",
            "shop.example.com:443",
            "a b",
            "*",
        ] {
            assert!(
                matches!(
                    AllowedHosts::parse(bad),
                    Err(HostListError::NotAName { .. })
                ),
                "{bad}"
            );
        }
        let many = vec!["a.example"; MAX_ALLOWED_HOSTS + 1].join(",");
        assert!(matches!(
            AllowedHosts::parse(&many),
            Err(HostListError::TooMany { .. })
        ));
    }
}
