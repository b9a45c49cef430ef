//! The one error type every handler returns, rendered as RFC 9457 `application/problem+json`.
//!
//! Use [`ApiError::Invalid`] for anything the client can fix by changing the request body's
//! content (422), [`ApiError::MalformedJson`] when the body is not a JSON object at all (400),
//! and [`ApiError::Internal`] only for our own faults: its message is logged, never sent.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::compute::ComputeError;
use crate::request_id;

/// The longest `detail` sent to a client; longer texts are cut so input is never echoed in bulk.
const MAX_DETAIL_CHARS: usize = 300;

/// 499 Client Closed Request: not a standard status, but the one proxies and dashboards
/// know for a request whose client left before it could be answered.
const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not well-formed JSON, or not a JSON object; or, on the Open Inference
    /// Protocol route, its binary framing does not add up (400).
    #[error("{0}")]
    MalformedJson(String),
    /// The body is valid JSON that breaks the request's rules (422).
    #[error("{0}")]
    Invalid(String),
    /// The `Content-Type` is not `application/json` (415).
    #[error("the request body must be sent with Content-Type: application/json")]
    UnsupportedMediaType,
    /// An inference request's `Content-Type` is neither `application/json` nor
    /// `application/octet-stream` (415).
    #[error(
        "an inference request is sent with Content-Type: application/json or application/octet-stream, or none"
    )]
    UnsupportedInferMediaType,
    /// The body is larger than the configured limit (413).
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// `--max-body-bytes`.
        limit: usize,
    },
    /// A compressed body inflates more than `ratio` times its size (413).
    #[error(
        "the request body inflates more than {ratio} times its compressed size; send it uncompressed or less compressible"
    )]
    InflatesTooFar {
        /// The largest ratio accepted.
        ratio: usize,
    },
    /// No route has this path (404).
    #[error("no resource at this path")]
    NotFound,
    /// The route exists but not for this method (405).
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    /// No valid bearer token was given while `--api-keys` is set (401).
    #[error("this route needs an Authorization: Bearer token listed in the server's API keys")]
    Unauthorized,
    /// A browser page of another origin sent a request that changes or computes (403;
    /// `middleware::cross_origin`).
    #[error(
        "a browser page of another origin may not send this request (Sec-Fetch-Site, Origin); \
         the server trusts its own origin and those of --cors-origins and --trusted-origins"
    )]
    CrossOrigin,
    /// The request's `Host` header is missing (HTTP/1.1), given more than once or not a host and port
    /// (400; `middleware::host`); the detail says which.
    #[error("{0}")]
    BadHost(&'static str),
    /// The client closed the connection before its body had arrived (499, as nginx counts
    /// it: no one reads the answer, and the metrics and log tell it from a malformed body).
    #[error("the client closed the connection before the request body had arrived")]
    ClientClosed,
    /// The body did not arrive within `--body-timeout` (408).
    #[error("the request body did not arrive within {}", humantime::format_duration(*.0))]
    BodyTimeout(std::time::Duration),
    /// The body uses a `Content-Encoding` other than gzip or zstd (415).
    #[error("the request body's Content-Encoding must be gzip, zstd or identity")]
    UnsupportedEncoding,
    /// Admission control refused the request; retrying later may succeed (503).
    #[error("{0}")]
    Overloaded(String),
    /// The server is shutting down (503 from `/readyz`).
    #[error("the server is shutting down")]
    Draining,
    /// The request references a table while the tables are still being loaded (503).
    #[error("the server's tables are still loading; retry shortly")]
    TablesLoading,
    /// `GET /tables/{name}` names no table (404).
    #[error("there is no table {0} (GET /tables lists them)")]
    NoSuchTable(String),
    /// An Open Inference Protocol path names no model, or no version of it (404).
    #[error("{0}")]
    NoSuchModel(String),
    /// The request did not finish within `--request-timeout` (503).
    #[error("the request did not finish within {}; its computation was stopped", humantime::format_duration(*.0))]
    Timeout(std::time::Duration),
    /// Our fault (500); the message goes to the log only.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// Maps a `serde_json` error: syntax errors are 400, well-formed JSON with wrong
    /// content is 422 (without the line/column suffix, which names nothing useful there).
    pub fn from_json(err: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        match err.classify() {
            Category::Data => ApiError::Invalid(without_position(err)),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::MalformedJson(format!("malformed JSON: {err}"))
            }
        }
    }

    /// [`ApiError::from_json`] for an error in the JSON of one `field`, read apart from the
    /// rest of the body: a syntax error names the field, not a line and column, which would
    /// count from the field's start. JSON nested more than serde_json's 128 levels is
    /// well-formed, so it is a 422 naming the field.
    pub fn from_json_in(field: impl std::fmt::Display, err: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        if nested_too_deep(err) {
            return ApiError::Invalid(format!("{field}: {NESTED_TOO_DEEP_DETAIL}"));
        }
        match err.classify() {
            Category::Syntax | Category::Eof => ApiError::MalformedJson(format!(
                "{field}: malformed JSON: {}",
                without_position(err)
            )),
            Category::Data | Category::Io => ApiError::from_json(err),
        }
    }

    /// [`ApiError::from_json`] for an error found at a path of the JSON (as
    /// `serde_path_to_error` tracks it), which a 422's message then starts with
    /// (`inputs[0]: missing field `shape``); an unknown field's message names the object it is
    /// in. JSON nested more than serde_json's 128 levels is well-formed, so it is a 422 too,
    /// naming the field it is in.
    pub fn from_json_at(err: &serde_path_to_error::Error<serde_json::Error>) -> Self {
        use serde_path_to_error::Segment;
        let inner = err.inner();
        let too_deep = nested_too_deep(inner);
        let message = match ApiError::from_json(inner) {
            _ if too_deep => NESTED_TOO_DEEP_DETAIL.to_owned(),
            ApiError::Invalid(message) => message,
            other => return other,
        };
        let mut segments: Vec<&Segment> = err.path().iter().collect();
        if too_deep {
            // Where the nesting starts: the field, not each level of it.
            let field = segments
                .iter()
                .rposition(|segment| matches!(segment, Segment::Map { .. }));
            segments.truncate(field.map_or(0, |at| at + 1));
        } else if message.starts_with("unknown field") {
            segments.pop();
        }
        let mut path = String::new();
        for segment in segments {
            match segment {
                Segment::Seq { index } => path.push_str(&format!("[{index}]")),
                Segment::Map { key } | Segment::Enum { variant: key } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    // A field's name, or `?` for a key a client made up that is not plain.
                    let plain = crate::echo::shown(key, 64).starts_with('"');
                    path.push_str(if plain { key } else { "?" });
                }
                Segment::Unknown => path.push_str(if path.is_empty() { "?" } else { ".?" }),
            }
        }
        ApiError::Invalid(match path.as_str() {
            "" => message,
            path => format!("{path}: {message}"),
        })
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::BadHost(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType | ApiError::UnsupportedInferMediaType => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::PayloadTooLarge { .. } | ApiError::InflatesTooFar { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::NotFound | ApiError::NoSuchTable(_) | ApiError::NoSuchModel(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::CrossOrigin => StatusCode::FORBIDDEN,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::ClientClosed => CLIENT_CLOSED_REQUEST,
            ApiError::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Overloaded(_)
            | ApiError::Draining
            | ApiError::TablesLoading
            | ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type: a stable identifier clients can match on.
    fn kind(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "urn:simserve:problem:malformed-json",
            ApiError::Invalid(_) => "urn:simserve:problem:invalid-request",
            ApiError::UnsupportedMediaType | ApiError::UnsupportedInferMediaType => {
                "urn:simserve:problem:unsupported-media-type"
            }
            ApiError::PayloadTooLarge { .. } | ApiError::InflatesTooFar { .. } => {
                "urn:simserve:problem:payload-too-large"
            }
            ApiError::NotFound | ApiError::NoSuchTable(_) | ApiError::NoSuchModel(_) => {
                "urn:simserve:problem:not-found"
            }
            ApiError::MethodNotAllowed => "urn:simserve:problem:method-not-allowed",
            ApiError::Unauthorized => "urn:simserve:problem:unauthorized",
            ApiError::CrossOrigin => "urn:simserve:problem:cross-origin",
            ApiError::BadHost(_) => "urn:simserve:problem:bad-host",
            ApiError::BodyTimeout(_) => "urn:simserve:problem:body-timeout",
            ApiError::ClientClosed => "urn:simserve:problem:client-closed-request",
            ApiError::UnsupportedEncoding => "urn:simserve:problem:unsupported-encoding",
            ApiError::Overloaded(_) => "urn:simserve:problem:overloaded",
            ApiError::Draining => "urn:simserve:problem:draining",
            ApiError::TablesLoading => "urn:simserve:problem:tables-loading",
            ApiError::Timeout(_) => "urn:simserve:problem:timeout",
            ApiError::Internal(_) => "urn:simserve:problem:internal",
        }
    }

    fn detail(&self) -> String {
        if let ApiError::Internal(cause) = self {
            tracing::error!(%cause, "request failed");
            return "the server failed to handle this request; it has been logged".to_owned();
        }
        let detail = self.to_string();
        match detail.char_indices().nth(MAX_DETAIL_CHARS) {
            Some((cut, _)) => format!("{}…", &detail[..cut]),
            None => detail,
        }
    }
}

impl From<ComputeError> for ApiError {
    fn from(err: ComputeError) -> Self {
        match err {
            ComputeError::Overflow { .. } => {
                ApiError::Invalid(format!("{err}; scale the vectors down or use cosine"))
            }
            ComputeError::TooManyResults { limit } => ApiError::Invalid(format!(
                "the selection holds more than {limit} entries, the output limit; \
                 add top_k or make threshold stricter"
            )),
            // The caller stopped waiting; this answer is only seen if it is still there.
            ComputeError::Cancelled => ApiError::Timeout(std::time::Duration::ZERO),
            ComputeError::Internal(_) => ApiError::Internal(err.to_string()),
        }
    }
}

/// `err`'s message without the ` at line L column C` serde_json ends it with.
fn without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

/// Whether serde_json refused `err`'s JSON for being nested deeper than it reads (a syntax
/// error to serde_json, which its message alone tells).
fn nested_too_deep(err: &serde_json::Error) -> bool {
    err.classify() == serde_json::error::Category::Syntax
        && err.to_string().starts_with("recursion limit exceeded")
}

/// What a 422 says of JSON nested deeper than serde_json reads.
const NESTED_TOO_DEEP_DETAIL: &str = "nested more than 128 levels deep";

/// Seconds a refused client should wait before retrying.
const RETRY_AFTER_SECONDS: &str = "1";

/// The problem+json body.
#[derive(Debug, Serialize)]
struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let problem = Problem {
            kind: self.kind(),
            title: status.canonical_reason().unwrap_or(match status.as_u16() {
                499 => "Client Closed Request",
                _ => "Error",
            }),
            status: status.as_u16(),
            detail: self.detail(),
            request_id: request_id::current(),
        };
        let mut response = (status, Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        let headers = response.headers_mut();
        match self {
            ApiError::Overloaded(_) | ApiError::TablesLoading => {
                headers.insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            ApiError::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_details_are_cut() {
        let err = ApiError::Invalid("x".repeat(10_000));
        assert_eq!(err.detail().chars().count(), MAX_DETAIL_CHARS + 1);
    }

    #[test]
    fn internal_causes_stay_out_of_the_detail() {
        let err = ApiError::Internal("secret path /etc".into());
        assert!(!err.detail().contains("secret"));
    }

    /// `T` read from `json` with its path tracked, as [`ApiError::from_json_at`] takes it.
    fn error_at<T: serde::de::DeserializeOwned + std::fmt::Debug>(json: &str) -> ApiError {
        let mut de = serde_json::Deserializer::from_str(json);
        let err = serde_path_to_error::deserialize::<_, T>(&mut de).unwrap_err();
        ApiError::from_json_at(&err)
    }

    #[test]
    fn data_errors_found_at_a_path_name_it_and_those_at_the_top_do_not() {
        let ApiError::Invalid(message) =
            error_at::<std::collections::BTreeMap<String, Vec<u8>>>(r#"{"inputs": [1, "x"]}"#)
        else {
            panic!("a data error is Invalid");
        };
        assert_eq!(
            message,
            "inputs[1]: invalid type: string \"x\", expected u8"
        );
        let ApiError::Invalid(message) = error_at::<Vec<u8>>(r#"{"a": 1}"#) else {
            panic!("a data error is Invalid");
        };
        assert_eq!(message, "invalid type: map, expected a sequence");
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Input {
        name: String,
    }

    #[test]
    fn an_unknown_fields_message_names_the_object_it_is_in() {
        let ApiError::Invalid(message) =
            error_at::<Vec<Input>>(r#"[{"name": "a"}, {"name": "b", "bogus": 1}]"#)
        else {
            panic!("a data error is Invalid");
        };
        assert_eq!(message, "[1]: unknown field `bogus`, expected `name`");
    }

    #[test]
    fn json_nested_too_deep_is_422_naming_where_and_broken_json_stays_400() {
        let deep = format!(
            r#"{{"parameters": {}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let ApiError::Invalid(message) =
            error_at::<std::collections::BTreeMap<String, serde_json::Value>>(&deep)
        else {
            panic!("JSON nested too deep is Invalid");
        };
        assert_eq!(message, "parameters: nested more than 128 levels deep");
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let err = serde_json::from_str::<serde_json::Value>(&deep).unwrap_err();
        let ApiError::Invalid(message) = ApiError::from_json_in("a.data", &err) else {
            panic!("JSON nested too deep is Invalid");
        };
        assert_eq!(message, "a.data: nested more than 128 levels deep");
        let err = serde_json::from_str::<serde_json::Value>("[1, 1e999]").unwrap_err();
        let ApiError::MalformedJson(message) = ApiError::from_json_in("a.data", &err) else {
            panic!("a number out of range is malformed JSON");
        };
        assert_eq!(message, "a.data: malformed JSON: number out of range");
        assert!(matches!(
            error_at::<Vec<u8>>("[1,"),
            ApiError::MalformedJson(_)
        ));
    }

    #[test]
    fn data_errors_are_422_without_position_and_syntax_errors_are_400() {
        let data = serde_json::from_str::<u8>("\"x\"").unwrap_err();
        let ApiError::Invalid(message) = ApiError::from_json(&data) else {
            panic!("a data error is Invalid");
        };
        assert!(!message.contains("line"), "{message}");
        let syntax = serde_json::from_str::<Vec<u8>>("[1,").unwrap_err();
        assert!(matches!(
            ApiError::from_json(&syntax),
            ApiError::MalformedJson(_)
        ));
    }
}
