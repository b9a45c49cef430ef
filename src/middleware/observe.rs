//! One log line and one set of metrics per request: method, route, status, latency, body
//! sizes, request id and the client's address. Payloads are never logged. A request dropped
//! before its answer was ready is logged and counted too: under 499 when its client closed
//! the connection while it waited or computed (as nginx counts a client that left), under 503
//! with a warning when the shutdown timeout passed and the server closed it. While the server
//! drains, and when an answer comes before its request's body was read, responses say
//! `Connection: close`, so that clients do not send again on a connection about to close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
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

/// The status a request whose client left before its answer is counted and logged with:
/// 499, Client Closed Request, as for a client that left before its body had arrived.
const CLIENT_LEFT_STATUS: u16 = 499;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Its response is ready.
    Answered,
    /// Dropped unanswered: its client closed the connection.
    ClientLeft,
    /// Dropped unanswered: the shutdown timeout passed and the server closed the connection.
    Cut,
}

/// A request's log line and metrics, written once: when its response is ready
/// ([`Outcome::answered`]), or, if its future is dropped before that, on drop, so that
/// requests abandoned while waiting or computing (the slow ones) still reach the latency
/// histogram, the counters and the log.
struct Outcome {
    state: AppState,
    method: &'static str,
    route: String,
    start: Instant,
    counter: BodyCounter,
    span: tracing::Span,
    written: bool,
}

impl Outcome {
    /// Writes the log line and metrics for a response with `status` and `bytes_out`.
    fn answered(&mut self, status: StatusCode, bytes_out: u64) {
        self.write(status, bytes_out, Ending::Answered);
    }

    /// Writes the log line and metrics.
    fn write(&mut self, status: StatusCode, bytes_out: u64, ending: Ending) {
        self.written = true;
        let done = Finished {
            method: self.method,
            route: std::mem::take(&mut self.route),
            status: status.as_u16(),
            latency: self.start.elapsed(),
            bytes_in: self.counter.get(),
            bytes_out,
        };
        self.state.metrics.request_done(&done);
        let latency_ms = done.latency.as_secs_f64() * 1e3;
        let (bytes_in, bytes_out) = (done.bytes_in, done.bytes_out);
        self.span.in_scope(|| {
            if ending == Ending::ClientLeft {
                tracing::info!(
                    status = done.status,
                    latency_ms,
                    bytes_in,
                    bytes_out,
                    "request dropped: the client closed the connection before its answer was ready"
                );
            } else if ending == Ending::Cut {
                tracing::warn!(
                    status = done.status,
                    latency_ms,
                    bytes_in,
                    bytes_out,
                    "request cut: the shutdown timeout passed before its answer was ready"
                );
            } else if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
                tracing::error!(
                    status = done.status,
                    latency_ms,
                    bytes_in,
                    bytes_out,
                    "request failed"
                );
            } else {
                tracing::info!(
                    status = done.status,
                    latency_ms,
                    bytes_in,
                    bytes_out,
                    "request"
                );
            }
        });
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if !self.written {
            let (status, ending) = if self.state.is_cutting() {
                (StatusCode::SERVICE_UNAVAILABLE, Ending::Cut)
            } else {
                let left = StatusCode::from_u16(CLIENT_LEFT_STATUS);
                (left.unwrap_or(StatusCode::BAD_REQUEST), Ending::ClientLeft)
            };
            self.write(status, 0, ending);
        }
    }
}

/// Middleware: logs and counts the request once its response is ready, or once it is dropped
/// unanswered.
pub async fn layer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
    let route = route_label(&request);
    // The id's header value (sharing its bytes), not a copy of its text.
    let id = request.extensions().get::<RequestId>().cloned();
    let counter = BodyCounter::default();
    request.extensions_mut().insert(counter.clone());

    // The client's address, where the request came over a socket (`server`): behind a
    // gateway, the gateway's.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    let span = tracing::info_span!(
        "request",
        request_id = %id.as_ref().map_or("", RequestId::as_str),
        method,
        route,
        peer = peer.map(tracing::field::display),
    );
    let _in_flight = state.metrics.start();
    let mut outcome = Outcome {
        state: state.clone(),
        method,
        route,
        start,
        counter: counter.clone(),
        span: span.clone(),
        written: false,
    };
    let declared = body::declared_length(request.headers());
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    if declared.is_some_and(|n| n > 0) || chunked {
        // While draining, a connection closes with its answer rather than linger.
        let linger = state.is_ready().then(|| {
            let bytes = body::LingerBytes::new(declared, state.limits.max_body_bytes);
            // No route reads the body of an `OPTIONS` request (CORS answers preflights
            // before authentication): its declared length does not count.
            if request.method() == Method::OPTIONS {
                bytes.ignore_declared_length();
            }
            request.extensions_mut().insert(bytes.clone());
            body::Linger {
                until: tokio::time::Instant::now() + state.limits.body_timeout,
                bytes,
                pace: Arc::clone(&state.discard_pace),
            }
        });
        let (parts, incoming) = request.into_parts();
        let lingering = body::Lingering::new(incoming, &parts.headers, linger);
        request = Request::from_parts(parts, Body::new(lingering));
    }
    let mut response = next.run(request).instrument(span).await;
    // The connection will close when the server drains, or when the answer came before the
    // body was read (404, 415, 413, ...): say so, so that clients do not send on it again.
    let unread =
        declared.is_some_and(|n| n as u64 > counter.get()) || (chunked && counter.get() == 0);
    if !state.is_ready() || unread {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let bytes_out = response.body().size_hint().exact().unwrap_or(0);
    outcome.answered(response.status(), bytes_out);
    response
}
