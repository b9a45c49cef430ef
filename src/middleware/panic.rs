//! A panic in a handler becomes a logged 500 problem+json; the process keeps serving.

use std::any::Any;

use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The response for a caught panic; its message goes to the log only.
pub fn response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    ApiError::Internal(format!("handler panicked: {message}")).into_response()
}
