//! Optional bearer-token authentication (`--api-keys`).
//!
//! Keys are kept as SHA-256 digests and every presented token is compared with every key in
//! constant time, so neither a key's content nor its length leaks through timing.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::body;
use crate::error::ApiError;

/// Paths open without a token: what probes and scrapers call (the v2 health routes too),
/// the try-it page with its two files (`api::page`: static text; the API calls it makes
/// send the key typed into it) and the API contract the page links to (static text too).
const OPEN_PATHS: [&str; 9] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/v2/health/live",
    "/v2/health/ready",
    "/",
    "/assets/app.js",
    "/assets/app.css",
    "/openapi.yaml",
];

/// The accepted keys; empty means authentication is off.
#[derive(Debug, Default)]
pub struct ApiKeys(Vec<[u8; 32]>);

impl ApiKeys {
    /// The keys from `--api-keys`, ignoring blank entries.
    pub fn new(keys: &[String]) -> Self {
        ApiKeys(
            keys.iter()
                .map(|key| key.trim())
                .filter(|key| !key.is_empty())
                .map(digest)
                .collect(),
        )
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `token` is one of the keys, checked against all of them in constant time.
    pub fn accepts(&self, token: &str) -> bool {
        let presented = digest(token);
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |found, key| {
                found | key.ct_eq(&presented)
            })
            .into()
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Middleware: 401 problem+json unless the path is open or the token is a key. The body of
/// a request without a key, refused here or on an open path (none of which reads a body), is
/// discarded only up to `--max-body-bytes`, whatever length it declared
/// ([`body::LingerBytes`]).
pub async fn layer(State(keys): State<Arc<ApiKeys>>, request: Request, next: Next) -> Response {
    if !keys.enabled() {
        return next.run(request).await;
    }
    if bearer(&request).is_some_and(|token| keys.accepts(token)) {
        return next.run(request).await;
    }
    if let Some(linger) = request.extensions().get::<body::LingerBytes>() {
        linger.ignore_declared_length();
    }
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    ApiError::Unauthorized.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_non_blank_keys_are_accepted() {
        let keys = ApiKeys::new(&["alpha".into(), " ".into(), "beta ".into()]);
        assert!(keys.enabled());
        assert!(keys.accepts("alpha"));
        assert!(keys.accepts("beta"));
        assert!(!keys.accepts("alph"));
        assert!(!keys.accepts(""));
        assert!(!keys.accepts(" "));
        assert!(!ApiKeys::new(&["".into()]).enabled());
    }

    #[test]
    fn bearer_tokens_are_read_with_any_case_scheme() {
        let with = |value: &str| {
            Request::builder()
                .header(header::AUTHORIZATION, value)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert_eq!(bearer(&with("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&with("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&with("Basic abc")), None);
        assert_eq!(bearer(&with("Bearer ")), None);
        assert_eq!(bearer(&with("Bearer")), None);
    }
}
