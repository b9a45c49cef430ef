//! What every handler and middleware shares: [`AppState`] (limits, admission, metrics and
//! readiness), built once per server from the configuration.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::admission::Admission;
use crate::body::DiscardPace;
use crate::config::Config;
use crate::metrics::Metrics;

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
    /// The pace bodies refused before they were read are discarded at.
    pub discard_pace: Arc<DiscardPace>,
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
            discard_pace: Arc::default(),
            ready: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether the server takes new work (false once shutdown has started).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the server as shutting down: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.ready.store(false, Ordering::Release);
    }
}
