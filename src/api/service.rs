//! Service routes: liveness, readiness, metrics, the OpenAPI document, and problem+json for
//! unknown routes.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// The contract, embedded at build time.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// The OpenMetrics content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /healthz`: the process is up and answering (never waits for compute).
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Serves `GET /readyz`: 200 while taking work; 503 until the tables are loaded, and once
/// shutdown has started.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    readiness(&state)?;
    Ok(Json(json!({"status": "ready"})))
}

/// Whether the server takes work: 503 once shutdown has started, and until the tables are
/// loaded. What `/readyz` and the Open Inference Protocol's readiness routes say.
pub fn readiness(state: &AppState) -> Result<(), ApiError> {
    if !state.is_ready() {
        Err(ApiError::Draining)
    } else if !state.tables_loaded() {
        Err(ApiError::TablesLoading)
    } else {
        Ok(())
    }
}

/// Serves `GET /metrics` in the OpenMetrics text format.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .render()
        .map_err(|err| ApiError::Internal(format!("cannot render metrics: {err}")))?;
    Ok(([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response())
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
