//! `--request-timeout`: a request still unanswered when it passes gets 503, and dropping its
//! future cancels the computation it started.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Middleware: answers 503 problem+json once the request's time is up.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.limits.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            state.metrics.rejected("deadline");
            ApiError::Timeout(limit).into_response()
        }
    }
}
