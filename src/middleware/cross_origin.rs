//! Cross-origin protection: a browser page of another origin cannot have its visitor's
//! browser POST to simserve (cross-site request forgery: compute, or reload a table, on a
//! simserve that browser reaches and the page's author does not).
//!
//! tower-http's [`CsrfLayer`] decides, from `Sec-Fetch-Site` and `Origin`, as Go's
//! `net/http` does since 1.25: `GET`, `HEAD` and `OPTIONS` pass; so does a request whose
//! `Origin` is trusted (`--cors-origins` and `--trusted-origins`), one that `Sec-Fetch-Site`
//! says is `same-origin` (the try-it page) or `none` (typed in by the user), one with
//! neither header (not a browser: curl, the Python client, tritonclient), and one from a
//! browser without `Sec-Fetch-Site` whose `Origin` names the `Host` it was sent to. The rest,
//! any method on any path, get 403 `cross-origin` (before 401, 404 or 405), their bodies
//! discarded only up to `--max-body-bytes` as a request without a key's. `*` among the
//! trusted origins turns the check off.
//!
//! Browsers send `Sec-Fetch-Site` only to trustworthy origins (HTTPS, localhost): on plain
//! HTTP to an internal address, `Origin` against `Host` decides. So a gateway in front must
//! forward `Host` as the browser sent it, port included (`deploy/nginx` does), or have the
//! public origin in `--trusted-origins`, as one that answers CORS itself must.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::csrf::{CsrfLayer, ProtectionError};

use crate::body;
use crate::error::ApiError;

/// The check, answering a refused request with [`refusal`].
pub type CrossOriginLayer = CsrfLayer<fn(ProtectionError) -> Response>;

/// The check's layer, trusting `origins` (`--cors-origins` and `--trusted-origins`
/// together), or none when they hold `*`. Origins are checked as the flags are read
/// (`config`); one tower-http would not take is left out, with a warning.
pub fn layer<'a>(origins: impl IntoIterator<Item = &'a String>) -> Option<CrossOriginLayer> {
    let mut layer = CsrfLayer::new().with_rejection_response(refusal as fn(_) -> _);
    for origin in origins {
        let origin = origin.trim();
        if origin == "*" {
            return None;
        }
        layer = match layer.clone().add_trusted_origin(origin) {
            Ok(trusted) => trusted,
            Err(error) => {
                tracing::warn!(%error, "origin left out of the trusted origins");
                layer
            }
        };
    }
    Some(layer)
}

/// The answer to a refused request.
fn refusal(_: ProtectionError) -> Response {
    ApiError::CrossOrigin.into_response()
}

/// Middleware around [`layer`]'s: the body of a request it refused is discarded only up to
/// `--max-body-bytes` ([`body::LingerBytes`]), whatever length it declared.
pub async fn cap_refused_bodies(request: Request, next: Next) -> Response {
    let linger = request.extensions().get::<body::LingerBytes>().cloned();
    let response = next.run(request).await;
    if response.extensions().get::<ProtectionError>().is_some()
        && let Some(linger) = linger
    {
        linger.ignore_declared_length();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_among_the_origins_turns_the_check_off() {
        let origins = ["https://a.example".to_owned(), "*".to_owned()];
        assert!(layer(&origins).is_none());
        assert!(layer(&origins[..1]).is_some());
        assert!(layer(&[]).is_some());
    }
}
