//! What every handler and middleware shares: [`AppState`] (limits, admission, metrics, the
//! tables and readiness), built once per server from the configuration.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::admission::Admission;
use crate::body::{DiscardPace, KeptBuffers};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::tables::{Reloaded, Tables};

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

/// What handlers and middleware share: one reference to [`Shared`], so that the copies
/// the router and its middleware take for every request cost one reference count.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] refers to; its fields are read through it.
#[derive(Debug)]
pub struct Shared {
    /// Request limits.
    pub limits: Arc<Limits>,
    /// Compute permits, wait queue and memory budget.
    pub admission: Arc<Admission>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The pace bodies refused before they were read are discarded at.
    pub discard_pace: Arc<DiscardPace>,
    /// The server-side tables (`--tables`).
    pub tables: Arc<Tables>,
    /// Large body buffers kept for the next large body (`--kept-body-bytes`).
    pub kept_bodies: Arc<KeptBuffers>,
    /// Cleared when shutdown starts; `/readyz` reports it.
    ready: AtomicBool,
    /// Set when the shutdown timeout has passed and the connections left are being closed.
    cutting: AtomicBool,
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The state for `config`.
    pub fn new(config: &Config) -> Self {
        let permits = usize::try_from(config.compute_permits).unwrap_or(1);
        let admission = Admission::new(permits, config.max_queue, config.memory_budget_bytes);
        let tables = Arc::new(Tables::new(config.tables.clone()));
        let metrics = Arc::new(Metrics::new(Arc::clone(&admission), Arc::clone(&tables)));
        AppState(Arc::new(Shared {
            limits: Arc::new(Limits {
                request_timeout: config.request_timeout,
                body_timeout: config.body_timeout,
                max_body_bytes: config.max_body_bytes,
                max_output_elements: config.max_output_elements,
            }),
            kept_bodies: Arc::new(KeptBuffers::new(
                config.kept_body_bytes,
                Arc::clone(&metrics),
            )),
            metrics,
            admission,
            tables,
            discard_pace: Arc::default(),
            ready: AtomicBool::new(true),
            cutting: AtomicBool::new(false),
        }))
    }

    /// Whether the server takes new work (false once shutdown has started).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Reads the tables directory again (blocking: run it off the runtime), logging and
    /// counting the outcome.
    pub fn reload_tables(&self) -> Reloaded {
        let reloaded = self.tables.reload();
        self.reloaded(reloaded)
    }

    /// [`AppState::reload_tables`], unless a reload is already running (`None`).
    pub fn try_reload_tables(&self) -> Option<Reloaded> {
        self.tables
            .try_reload()
            .map(|reloaded| self.reloaded(reloaded))
    }

    /// Logs and counts a reload's outcome.
    fn reloaded(&self, reloaded: Reloaded) -> Reloaded {
        for failure in &reloaded.failures {
            tracing::error!(%failure, "a table failed to reload; its last good version serves");
        }
        if !reloaded.changed.is_empty() || !reloaded.removed.is_empty() {
            tracing::info!(
                changed = ?reloaded.changed,
                removed = ?reloaded.removed,
                "tables reloaded"
            );
        }
        self.metrics.table_reload(reloaded.failures.is_empty());
        reloaded
    }

    /// Whether the server's tables have been loaded.
    pub fn tables_loaded(&self) -> bool {
        self.tables.is_loaded()
    }

    /// Marks the server as shutting down: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// Marks that the shutdown timeout has passed: requests dropped from now on were cut by
    /// the server, not left by their clients.
    pub fn start_cutting(&self) {
        self.cutting.store(true, Ordering::Release);
    }

    /// Whether the shutdown timeout has passed ([`AppState::start_cutting`]).
    pub fn is_cutting(&self) -> bool {
        self.cutting.load(Ordering::Acquire)
    }
}
