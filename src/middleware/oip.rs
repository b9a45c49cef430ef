//! Errors on the Open Inference Protocol routes (`/v2`, `/v2/…`) in the protocol's own shape:
//! `{"error": "..."}` as `application/json`, with the status, headers and detail text the
//! problem+json answer had. It wraps authentication, the deadline and panics too, so every
//! error under `/v2` has this shape, whichever layer answered.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

/// Problem documents are small; a larger body is not one of ours.
const MAX_PROBLEM_BYTES: usize = 64 << 10;

/// Whether `path` is one of the protocol's.
pub fn is_v2(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// Middleware: rewrites problem+json answers to `/v2` paths as `{"error": detail}`.
pub async fn layer(request: Request, next: Next) -> Response {
    let v2 = is_v2(request.uri().path());
    let response = next.run(request).await;
    let problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == b"application/problem+json");
    if !v2 || !problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let detail = match axum::body::to_bytes(body, MAX_PROBLEM_BYTES).await {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|problem| problem.get("detail")?.as_str().map(str::to_owned)),
        Err(_) => None,
    };
    let error = detail.unwrap_or_else(|| "the request failed".to_owned());
    let body = json!({ "error": error }).to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_protocols_paths_are_rewritten() {
        assert!(is_v2("/v2"));
        assert!(is_v2("/v2/models/matrix/infer"));
        assert!(!is_v2("/v2x"));
        assert!(!is_v2("/similarity/matrix"));
    }
}
