//! The JSON body extractor shared by every POST route.
//!
//! It checks the content type, buffers the body under `--max-body-bytes`, and parses it
//! (off the runtime when large) so that every failure has the problem+json shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::ApiError;
use crate::offload::run_cpu;

/// A request body parsed from JSON into `T`.
pub struct JsonBody<T>(pub T);

impl<T> FromRequest<AppState> for JsonBody<T>
where
    T: DeserializeOwned + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: state.limits.max_body_bytes,
                }
            } else {
                ApiError::MalformedJson(format!(
                    "could not read the body: {}",
                    rejection.body_text()
                ))
            }
        })?;
        run_cpu(bytes.len(), move || parse(&bytes))
            .await?
            .map(JsonBody)
    }
}

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Parses a body that must be one JSON object.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::MalformedJson(
            "the body must be a JSON object".to_owned(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|err| ApiError::from_json(&err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised_with_parameters_and_any_case() {
        let mut headers = HeaderMap::new();
        for (value, want) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/jsonx", false),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(is_json(&headers), want, "{value}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn bodies_that_are_not_objects_are_malformed() {
        for body in ["[1]", "", "  ", "\u{feff}{}", "null"] {
            let got = parse::<serde_json::Map<String, serde_json::Value>>(body.as_bytes());
            assert!(matches!(got, Err(ApiError::MalformedJson(_))), "{body:?}");
        }
    }
}
