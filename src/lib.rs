//! simserve: similarity between embeddings over HTTP.
//!
//! - [`compute`]: the math, free of HTTP (ndarray views in, arrays out);
//! - [`tensor`]: request tensors (nested arrays or base64) decoded into contiguous buffers;
//! - [`api`]: one module per route, from body to job to response;
//! - [`app`]: the router and shared state; [`middleware`]: what wraps every request;
//!   [`admission`]: permits, queue and memory budget; [`metrics`]: Prometheus;
//! - [`server`]: serving over TCP with timeouts and a graceful drain; [`config`]: flags and
//!   `SIMSERVE_*` variables.

#[macro_use]
mod refuse;

pub mod admission;
pub mod api;
pub mod app;
pub mod compute;
pub mod config;
pub mod error;
pub mod healthcheck;
pub mod metrics;
pub mod middleware;
pub mod offload;
pub mod server;
pub mod telemetry;
pub mod tensor;

pub use app::router;
pub use config::Config;
pub use server::Application;
