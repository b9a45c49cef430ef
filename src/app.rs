//! Building the router and serving it, with graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::api::{matrix, meta, pairwise, user_item};
use crate::config::Config;
use crate::error::ApiError;

/// Limits every request is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest time from arrival to answer.
    pub request_timeout: Duration,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest result, in numbers.
    pub max_output_elements: usize,
}

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Request limits.
    pub limits: Arc<Limits>,
}

impl AppState {
    /// The state for `config`.
    pub fn new(config: &Config) -> Self {
        AppState {
            limits: Arc::new(Limits {
                request_timeout: config.request_timeout,
                max_body_bytes: config.max_body_bytes,
                max_output_elements: config.max_output_elements,
            }),
        }
    }
}

/// The whole HTTP API; tests drive it without a socket.
pub fn router(config: &Config) -> Router {
    let state = AppState::new(config);
    Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/openapi.yaml", get(meta::openapi))
        .route("/similarity/pairwise", post(pairwise::handler))
        .route("/similarity/matrix", post(matrix::handler))
        .route("/similarity/user-item", post(user_item::handler))
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), deadline))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Answers 503 when a request takes longer than `--request-timeout`; dropping the request's
/// future cancels the computation it started.
async fn deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.limits.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(limit).into_response(),
    }
}

/// A bound listener and the router it serves.
pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    /// Binds `config.addr` (port 0 picks a free port).
    pub async fn build(config: &Config) -> io::Result<Self> {
        let listener = TcpListener::bind(config.addr).await?;
        Ok(Application {
            listener,
            router: router(config),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGINT or SIGTERM, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        tracing::info!(addr = %self.local_addr()?, "simserve listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown_signal())
            .await
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
