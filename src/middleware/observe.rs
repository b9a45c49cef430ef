//! One log line and one set of metrics per request: method, route, status, latency, body
//! sizes and request id. Payloads are never logged. While the server drains, and when an
//! answer comes before its request's body was read, responses say `Connection: close`, so
//! that clients do not send again on a connection about to close.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Body as _;
use tracing::Instrument;

use crate::body;
use crate::metrics::{BodyCounter, Finished};
use crate::request_id::RequestId;
use crate::state::AppState;

/// The route template of `request` (`/similarity/matrix`), or `unmatched`: only templates the
/// router has, so the label set stays bounded.
fn route_label(request: &Request) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned()
}

/// The method as a label from a fixed set, so that made-up methods cannot grow the metrics.
fn method_label(method: &Method) -> &'static str {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ]
    .iter()
    .find(|known| *known == method)
    .map_or("other", |known| known.as_str())
}

/// Middleware: logs and counts the request once its response is ready.
pub async fn layer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
    let route = route_label(&request);
    // The id's header value (sharing its bytes), not a copy of its text.
    let id = request.extensions().get::<RequestId>().cloned();
    let counter = BodyCounter::default();
    request.extensions_mut().insert(counter.clone());

    let span = tracing::info_span!(
        "request",
        request_id = %id.as_ref().map_or("", RequestId::as_str),
        method,
        route
    );
    let _in_flight = state.metrics.start();
    let declared = body::declared_length(request.headers());
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    if declared.is_some_and(|n| n > 0) || chunked {
        // While draining, a connection closes with its answer rather than linger.
        let linger = state.is_ready().then(|| body::Linger {
            until: tokio::time::Instant::now() + state.limits.body_timeout,
            bytes: body::linger_bytes(declared, state.limits.max_body_bytes),
            pace: Arc::clone(&state.discard_pace),
        });
        let (parts, incoming) = request.into_parts();
        let lingering = body::Lingering::new(incoming, &parts.headers, linger);
        request = Request::from_parts(parts, Body::new(lingering));
    }
    let mut response = next.run(request).instrument(span.clone()).await;
    // The connection will close when the server drains, or when the answer came before the
    // body was read (404, 415, 413, ...): say so, so that clients do not send on it again.
    let unread =
        declared.is_some_and(|n| n as u64 > counter.get()) || (chunked && counter.get() == 0);
    if !state.is_ready() || unread {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }

    let done = Finished {
        method,
        route,
        status: response.status().as_u16(),
        latency: start.elapsed(),
        bytes_in: counter.get(),
        bytes_out: response.body().size_hint().exact().unwrap_or(0),
    };
    state.metrics.request_done(&done);
    span.in_scope(|| {
        let latency_ms = done.latency.as_secs_f64() * 1e3;
        if response.status().is_server_error()
            && response.status() != StatusCode::SERVICE_UNAVAILABLE
        {
            tracing::error!(
                status = done.status,
                latency_ms,
                bytes_in = done.bytes_in,
                bytes_out = done.bytes_out,
                "request failed"
            );
        } else {
            tracing::info!(
                status = done.status,
                latency_ms,
                bytes_in = done.bytes_in,
                bytes_out = done.bytes_out,
                "request"
            );
        }
    });
    response
}
