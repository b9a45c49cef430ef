//! `--request-timeout`: a request still unanswered when it passes gets 503, and dropping its
//! future cancels the computation it started.
//!
//! A table reload ([`RELOAD_PATH`]) is the exception: once begun it runs to
//! its end on its own thread whatever happens to the request, so it answers when done rather
//! than with a 503 that would say it was stopped.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::metrics::Rejection;
use crate::state::AppState;

/// The route that reloads the tables (`POST`, `crate::api::tables::reload`): it answers
/// when the reload is done, however long that takes.
pub const RELOAD_PATH: &str = "/tables/reload";

/// Middleware: answers 503 problem+json once the request's time is up.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.limits.request_timeout;
    if request.uri().path() == RELOAD_PATH {
        return next.run(request).await;
    }
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            state.metrics.rejected(Rejection::Deadline);
            ApiError::Timeout(limit).into_response()
        }
    }
}
