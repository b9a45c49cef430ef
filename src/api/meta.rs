//! Service routes: liveness, the OpenAPI document, and problem+json for unknown routes.

use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::error::ApiError;

/// The contract, embedded at build time.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// Serves `GET /healthz`: the process is up and answering.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Serves `GET /openapi.yaml`.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}

/// Answers paths no route has.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Answers known paths with a method they do not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
