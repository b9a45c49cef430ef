//! The router: every route, and the middleware stack around them. A new similarity
//! operation is one line in [`routes`]: `.route(O::PATH, post(operate::<O>))`; the Open
//! Inference Protocol routes (`/v2…`) serve the operations as models ([`crate::api::v2`]).
//! [`admin`] is what `--admin-addr` serves: the probes and metrics, behind the same stack
//! but for authentication, which none of them needs.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::answer::INFERENCE_HEADER_CONTENT_LENGTH;
use crate::api::matrix::MatrixJob;
use crate::api::pairwise::PairwiseJob;
use crate::api::user_item::UserItemJob;
use crate::api::{Operation, operate, page, service, tables, v2};
use crate::coding;
use crate::config::Config;
use crate::middleware::auth::ApiKeys;
use crate::middleware::{auth, cross_origin, deadline, host, observe, oip, panic};
use crate::request_id;
use crate::state::AppState;

/// The routes, without middleware.
pub fn routes() -> Router<AppState> {
    probes()
        .route(page::INDEX_PATH, get(page::index))
        .route(page::SCRIPT_PATH, get(page::script))
        .route(page::STYLE_PATH, get(page::style))
        .route("/openapi.yaml", get(service::openapi))
        .route("/tables", get(tables::list))
        .route(deadline::RELOAD_PATH, post(tables::reload))
        .route("/tables/{name}", get(tables::one))
        .route(PairwiseJob::PATH, post(operate::<PairwiseJob>))
        .route(MatrixJob::PATH, post(operate::<MatrixJob>))
        .route(UserItemJob::PATH, post(operate::<UserItemJob>))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/models/{model}", get(v2::model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(v2::model_metadata),
        )
        .route("/v2/models/{model}/ready", get(v2::model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(v2::model_ready),
        )
        .route("/v2/models/{model}/infer", post(v2::infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(v2::infer),
        )
        .fallback(service::not_found)
        .method_not_allowed_fallback(service::method_not_allowed)
}

/// What `--admin-addr` serves, without middleware: the probes and metrics only.
fn admin_routes() -> Router<AppState> {
    probes()
        .fallback(service::not_found)
        .method_not_allowed_fallback(service::method_not_allowed)
}

/// The probes and metrics, which both addresses serve.
fn probes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/metrics", get(service::metrics))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
}

/// `routes` behind the middleware stack, sharing `state`.
///
/// The stack is one layer, given to the router once: each route is then wrapped in one boxed
/// service rather than one per layer, and a request clones one stack, not a chain of boxes.
pub fn with_layers(routes: Router<AppState>, state: AppState, config: &Config) -> Router {
    let keys = Arc::new(ApiKeys::new(&config.api_keys));
    stack(routes, state, config, Some(keys))
}

/// What `--admin-addr` serves: the probes and metrics behind the stack, without
/// authentication (they are open on the main address too), so that any other path is 404
/// whatever the token.
pub fn admin(state: AppState, config: &Config) -> Router {
    stack(admin_routes(), state, config, None)
}

/// `routes` behind the middleware stack, checking tokens against `keys` if given.
fn stack(
    routes: Router<AppState>,
    state: AppState,
    config: &Config,
    keys: Option<Arc<ApiKeys>>,
) -> Router {
    let auth = keys.map(|keys| from_fn_with_state(keys, auth::layer));
    let stack = ServiceBuilder::new()
        // Outermost first: the request id is set before anything answers; the deadline,
        // innermost, covers the handler, and auth answers before it.
        .layer(from_fn(request_id::layer))
        // Every answer: never sniffed as another type, and never stored by a cache unless
        // it says otherwise (the try-it page's files: `no-cache`).
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(from_fn(coding::ignore_unmet_accept_encoding))
        .layer(coding::layer())
        // Bodies are read, inflated and limited by the operations' extractor (`body`).
        .layer(DefaultBodyLimit::disable())
        .layer(from_fn_with_state(state.clone(), observe::layer))
        // Inside `observe`, so that preflights are logged and counted as every request is.
        .option_layer(cors(&config.cors_origins))
        .layer(from_fn(oip::layer))
        // Before anything reads `Host` (the cross-origin check).
        .layer(from_fn(host::layer))
        .layer(CatchPanicLayer::custom(panic::response))
        .layer(from_fn(cross_origin::cap_refused_bodies))
        .option_layer(cross_origin::layer(
            config.cors_origins.iter().chain(&config.trusted_origins),
        ))
        .option_layer(auth)
        .layer(from_fn_with_state(state.clone(), deadline::layer));
    routes.layer(stack).with_state(state)
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
    let request_id = request_id::HEADER_NAME;
    let json_length = HeaderName::from_static(INFERENCE_HEADER_CONTENT_LENGTH);
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
                header::AUTHORIZATION,
                request_id.clone(),
                json_length.clone(),
            ])
            .expose_headers([request_id, header::RETRY_AFTER, json_length])
            .max_age(Duration::from_secs(600)),
    )
}
