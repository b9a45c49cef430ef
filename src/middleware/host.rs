//! The `Host` header's rules (RFC 9112, section 3.2): an HTTP/1.1 request names the host it
//! is sent to in exactly one `Host` header, a host with an optional port (or empty, which a
//! client sends for a target without an authority); HTTP/1.0 requests may leave it out. A request that breaks
//! them gets 400 `bad-host` before anything reads `Host` (the cross-origin check compares
//! `Origin` with it): two `Host` headers could name two hosts, and a gateway in front and
//! simserve could each take a different one. Its body is discarded only up to
//! `--max-body-bytes`, as an unauthorised request's.

use axum::extract::Request;
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
        (None, _) if version == Version::HTTP_11 => Err(ApiError::BadHost(
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

/// Whether `value` is `uri-host [ ":" port ]` (RFC 3986), or empty: an IP literal in brackets
/// (IPv6, or IPvFuture) or a name (IPv4 addresses among them) of unreserved characters,
/// percent-encodings and sub-delimiters, then optionally `:` and a port number (which may be
/// empty). Checked byte by byte, without building a URI.
fn is_host_and_port(value: &HeaderValue) -> bool {
    let value = value.as_bytes();
    let (name, port) = match value.strip_prefix(b"[") {
        Some(literal) => {
            let Some(close) = literal.iter().position(|&b| b == b']') else {
                return false;
            };
            let port = match &literal[close + 1..] {
                [] => None,
                [b':', port @ ..] => Some(port),
                _ => return false,
            };
            if !is_ip_literal(&literal[..close]) {
                return false;
            }
            (None, port)
        }
        None => match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (Some(&value[..colon]), Some(&value[colon + 1..])),
            None => (Some(value), None),
        },
    };
    name.is_none_or(is_name) && port.is_none_or(is_port)
}

/// RFC 3986's sub-delimiters, which a name may hold besides unreserved characters.
const SUB_DELIMITERS: &[u8] = b"!$&'()*+,;=";

/// Whether `b` is unreserved (RFC 3986) or a sub-delimiter.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b) || SUB_DELIMITERS.contains(&b)
}

/// Whether `name` is a `reg-name` (an IPv4 address is one too): unreserved characters,
/// percent-encodings and sub-delimiters.
fn is_name(name: &[u8]) -> bool {
    let mut at = 0;
    while let Some(&b) = name.get(at) {
        if b == b'%' {
            let encoded = name.get(at + 1..at + 3);
            if !encoded.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            at += 3;
        } else if is_name_byte(b) {
            at += 1;
        } else {
            return false;
        }
    }
    true
}

/// Whether what is inside `[…]` is an IPv6 address, or an IPvFuture (`v` hex digits `.` then
/// unreserved characters, sub-delimiters and colons).
fn is_ip_literal(inside: &[u8]) -> bool {
    if let [b'v' | b'V', future @ ..] = inside {
        let Some(dot) = future.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (version, address) = (&future[..dot], &future[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !address.is_empty()
            && address.iter().all(|&b| is_name_byte(b) || b == b':');
    }
    std::str::from_utf8(inside).is_ok_and(|text| text.parse::<std::net::Ipv6Addr>().is_ok())
}

/// Whether `port` is empty (`example.com:` is allowed) or digits that fit a port number.
fn is_port(port: &[u8]) -> bool {
    port.is_empty()
        || (port.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(port).is_ok_and(|digits| digits.parse::<u16>().is_ok()))
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
            "[::1]:",
            "[v1.fe80::a+en1]:80",
            "example.com:",
            "EXAMPLE.com.",
            "ex%41mple.com",
            ":8080",
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
            "::1",
            "[::1",
            "[::1]80",
            "[::1]x",
            "x[::1]",
            "a[b]c",
            "[]",
            "[]:80",
            "[example.com]",
            "[fe80::1%eth0]",
            "[v1.]",
            "ex%4mple.com",
            "ex%zzmple.com",
            "exa mple.com",
            "example.com?x",
        ] {
            let bad = detail(Version::HTTP_11, &[host]).unwrap_or_default();
            assert!(bad.starts_with("Host: not a host"), "{host:?}: {bad}");
        }
    }
}
