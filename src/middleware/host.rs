//! The `Host` header's rules (RFC 9112, section 3.2): an HTTP/1.1 request names the host it
//! is sent to in exactly one `Host` header, a host with an optional port (empty only when
//! the target has no authority); HTTP/1.0 requests may leave it out. A request that breaks
//! them gets 400 `bad-host` before anything reads `Host` (the cross-origin check compares
//! `Origin` with it): two `Host` headers could name two hosts, and a gateway in front and
//! simserve could each take a different one. Its body is discarded only up to
//! `--max-body-bytes`, as an unauthorised request's.

use axum::extract::Request;
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderValue, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::body;
use crate::error::ApiError;

/// Middleware: 400 `bad-host` unless the request's `Host` follows the rules.
pub async fn layer(request: Request, next: Next) -> Response {
    let Err(refusal) = check(request.version(), request.headers()) else {
        return next.run(request).await;
    };
    if let Some(linger) = request.extensions().get::<body::LingerBytes>() {
        linger.ignore_declared_length();
    }
    refusal.into_response()
}

/// What is wrong with the `Host` of a request of `version` with `headers`, if anything.
fn check(version: Version, headers: &HeaderMap) -> Result<(), ApiError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version >= Version::HTTP_11 => Err(ApiError::BadHost(
            "Host: missing; an HTTP/1.1 request names the host it is sent to",
        )),
        (Some(_), Some(_)) => Err(ApiError::BadHost(
            "Host: given more than once; give it once",
        )),
        (Some(host), None) if !is_host_and_port(host) => Err(ApiError::BadHost(
            "Host: not a host with an optional port (such as example.com:8080)",
        )),
        _ => Ok(()),
    }
}

/// Whether `value` is a host with an optional port (`uri-host [ ":" port ]`), or empty.
fn is_host_and_port(value: &HeaderValue) -> bool {
    if value.is_empty() {
        return true;
    }
    let Ok(text) = value.to_str() else {
        return false;
    };
    // An authority may also hold user information, which a `Host` may not; `http` takes any
    // text after the last colon as its port.
    !text.contains('@') && text.parse::<Authority>().is_ok() && port_is_a_number(text)
}

/// Whether the port of `host` (what follows its last colon past any `[…]`), if it has one, is
/// digits that fit a port number, or nothing (`example.com:` is allowed).
fn port_is_a_number(host: &str) -> bool {
    let after_brackets = host.rfind(']').map_or(0, |at| at + 1);
    match host[after_brackets..].rfind(':') {
        None => true,
        Some(colon) => {
            let port = &host[after_brackets + colon + 1..];
            port.is_empty()
                || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(hosts: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(header::HOST, HeaderValue::from_static(host));
        }
        headers
    }

    fn detail(version: Version, hosts: &[&'static str]) -> Option<String> {
        check(version, &headers(hosts))
            .err()
            .map(|err| err.to_string())
    }

    #[test]
    fn one_host_with_or_without_a_port_passes() {
        for host in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:8000",
            "[::1]:8000",
            "[::1]",
            "example.com:",
            "simserve",
            "",
        ] {
            assert_eq!(detail(Version::HTTP_11, &[host]), None, "{host:?}");
        }
    }

    #[test]
    fn an_http_1_1_request_without_a_host_is_refused_and_an_http_1_0_one_is_not() {
        let missing = detail(Version::HTTP_11, &[]).unwrap_or_default();
        assert!(missing.starts_with("Host: missing"), "{missing}");
        assert_eq!(detail(Version::HTTP_10, &[]), None);
    }

    #[test]
    fn two_hosts_are_refused_even_when_they_agree() {
        for hosts in [["a.example", "b.example"], ["a.example", "a.example"]] {
            let twice = detail(Version::HTTP_11, &hosts).unwrap_or_default();
            assert!(twice.starts_with("Host: given more than once"), "{twice}");
        }
        assert!(detail(Version::HTTP_10, &["a.example", "b.example"]).is_some());
    }

    #[test]
    fn a_host_that_is_not_a_host_and_port_is_refused() {
        for host in [
            "user@example.com",
            "example.com/path",
            "example.com:port",
            "example.com:99999",
            "example.com:+80",
            "a:b:80",
            "exa mple.com",
            "example.com?x",
        ] {
            let bad = detail(Version::HTTP_11, &[host]).unwrap_or_default();
            assert!(bad.starts_with("Host: not a host"), "{host:?}: {bad}");
        }
    }
}
