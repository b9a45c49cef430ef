//! Counts the request body's bytes as they arrive on the wire, before any decompression, so
//! that the body reader can refuse bodies that inflate suspiciously far (decompression bombs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;

/// Body bytes received so far, before decompression.
#[derive(Debug, Clone, Default)]
pub struct WireBytes(Arc<AtomicU64>);

impl WireBytes {
    /// Bytes received so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Middleware: wraps the body so that every data frame adds to the request's [`WireBytes`].
pub async fn layer(request: Request, next: Next) -> Response {
    let counter = WireBytes::default();
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(counter.clone());
    let counted = body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            let n = u64::try_from(data.len()).unwrap_or(u64::MAX);
            counter.0.fetch_add(n, Ordering::Relaxed);
        }
        frame
    });
    next.run(Request::from_parts(parts, Body::new(counted)))
        .await
}
