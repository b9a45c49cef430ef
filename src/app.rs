//! The shared state and the router: routes plus the middleware stack.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::admission::{Admission, Refusal};
use crate::api::{matrix, meta, pairwise, user_item};
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::middleware::auth::ApiKeys;
use crate::middleware::{auth, deadline, observe, panic, request_id};

/// Every route template, as metrics label them.
pub const ROUTES: [&str; 7] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.yaml",
    "/similarity/pairwise",
    "/similarity/matrix",
    "/similarity/user-item",
];

/// Limits every request is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest time from arrival to answer.
    pub request_timeout: Duration,
    /// Longest time to receive a body.
    pub body_timeout: Duration,
    /// Largest request body, in bytes (after decompression).
    pub max_body_bytes: usize,
    /// Largest result, in numbers.
    pub max_output_elements: usize,
}

/// What handlers and middleware share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Request limits.
    pub limits: Arc<Limits>,
    /// Compute permits, wait queue and memory budget.
    pub admission: Arc<Admission>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Bearer tokens accepted (none: authentication off).
    pub api_keys: Arc<ApiKeys>,
    /// Cleared when shutdown starts; `/readyz` reports it.
    ready: Arc<AtomicBool>,
}

impl AppState {
    /// The state for `config`.
    pub fn new(config: &Config) -> Self {
        let permits = usize::try_from(config.compute_permits).unwrap_or(1);
        let admission = Admission::new(permits, config.max_queue, config.memory_budget_bytes);
        AppState {
            limits: Arc::new(Limits {
                request_timeout: config.request_timeout,
                body_timeout: config.body_timeout,
                max_body_bytes: config.max_body_bytes,
                max_output_elements: config.max_output_elements,
            }),
            metrics: Arc::new(Metrics::new(Arc::clone(&admission))),
            admission,
            api_keys: Arc::new(ApiKeys::new(&config.api_keys)),
            ready: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether the server takes new work (false once shutdown has started).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Counts `refusal` and turns it into the client's answer.
    pub fn refused(&self, refusal: Refusal) -> ApiError {
        self.metrics.rejected(refusal.reason());
        ApiError::from(refusal)
    }

    /// Marks the server as shutting down: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.ready.store(false, Ordering::Release);
    }
}

/// The routes, without middleware.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/metrics", get(meta::metrics))
        .route("/openapi.yaml", get(meta::openapi))
        .route("/similarity/pairwise", post(pairwise::handler))
        .route("/similarity/matrix", post(matrix::handler))
        .route("/similarity/user-item", post(user_item::handler))
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
}

/// `routes` behind the middleware stack, sharing `state`.
pub fn with_layers(routes: Router<AppState>, state: AppState, config: &Config) -> Router {
    let mut router = routes
        // Innermost first: the deadline covers the handler; auth answers before it.
        .layer(from_fn_with_state(state.clone(), deadline::layer))
        .layer(from_fn_with_state(state.clone(), auth::layer))
        .layer(CatchPanicLayer::custom(panic::response))
        .layer(from_fn_with_state(state.clone(), observe::layer))
        // Bodies are read, inflated and limited by the handlers' extractor (api::body).
        .layer(DefaultBodyLimit::disable())
        .layer(CompressionLayer::new().quality(CompressionLevel::Fastest));
    if let Some(cors) = cors(&config.cors_origins) {
        router = router.layer(cors);
    }
    router.layer(from_fn(request_id::layer)).with_state(state)
}

/// The whole HTTP API; tests drive it without a socket.
pub fn router(config: &Config) -> Router {
    with_layers(routes(), AppState::new(config), config)
}

/// CORS for `origins` (`*` for any), or none when the list is empty.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let request_id = HeaderName::from_static(request_id::HEADER);
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
                header::AUTHORIZATION,
                request_id.clone(),
            ])
            .expose_headers([request_id, header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}
