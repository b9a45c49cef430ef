//! `x-request-id`: taken from the request when it is a sane token, generated otherwise,
//! returned on the response, and available to problem+json bodies and log lines while the
//! request is handled.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The header carrying the id.
pub const HEADER: &str = "x-request-id";

/// [`HEADER`] as a header name, made without an allocation (a name outside the standard
/// set is copied into a new buffer when made from a `&str` at each insertion).
pub const HEADER_NAME: HeaderName = HeaderName::from_static(HEADER);

/// The longest id accepted from a client; longer ones are replaced.
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of the request being handled.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

/// The id of the request this task is handling, if any.
pub fn current() -> Option<String> {
    CURRENT
        .try_with(|id| id.as_str().to_owned())
        .ok()
        .filter(|id| !id.is_empty())
}

/// Whether a client's id is kept: 1 to 128 characters from `[A-Za-z0-9._:/+=-]`.
fn acceptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/+=-".contains(b))
}

/// A fresh random id: a UUID v4 from uuid's `fast-rng`, a thread-local generator seeded from
/// the OS, so that an id costs no system call (without it, one `getrandom` a request: 1.5%
/// of the server's CPU on small requests).
fn generate() -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Middleware: sets the id for the request's handling and echoes it on the response.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&HEADER_NAME)
        .filter(|value| acceptable(value))
        .cloned()
        .unwrap_or_else(generate);
    request.headers_mut().insert(HEADER_NAME, id.clone());
    let id = RequestId(id);
    request.extensions_mut().insert(id.clone());
    let mut response = CURRENT.scope(id.clone(), next.run(request)).await;
    response.headers_mut().insert(HEADER_NAME, id.0);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_only_when_short_and_plain() {
        for (id, kept) in [
            ("abc-123", true),
            ("0f8e:trace/7+x=", true),
            ("", false),
            ("has space", false),
            ("quote\"", false),
        ] {
            assert_eq!(
                acceptable(&HeaderValue::from_str(id).unwrap()),
                kept,
                "{id:?}"
            );
        }
        assert!(!acceptable(
            &HeaderValue::from_str(&"a".repeat(129)).unwrap()
        ));
        assert!(acceptable(&generate()));
    }

    #[tokio::test]
    async fn the_current_id_is_visible_inside_the_scope_only() {
        assert_eq!(current(), None);
        let id = RequestId(HeaderValue::from_static("req-1"));
        let seen = CURRENT.scope(id, async { current() }).await;
        assert_eq!(seen.as_deref(), Some("req-1"));
    }
}
