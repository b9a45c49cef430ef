//! simserve: similarity between embeddings over HTTP.
//!
//! Modules in layers; a module uses only those below it (`tests/architecture.rs` checks):
//!
//! - [`server`]: serving over TCP with timeouts and a graceful drain;
//! - [`app`]: the router: every route and the middleware stack around them;
//! - [`api`]: the routes; one file per similarity operation (request type → job → answer), plus
//!   [`api::service`] for probes, metrics and the contract; [`middleware`]: what wraps every
//!   request (log and metrics, authentication, deadline, panics);
//! - [`state`]: what handlers share (limits, admission, metrics, readiness);
//! - [`body`]: request bodies read, inflated and parsed; [`metrics`]: Prometheus;
//!   [`admission`]: permits, queue, memory budget and the guard an admitted request holds;
//!   [`answer`]: results encoded as response bodies;
//! - [`coding`] (gzip and zstd), [`cpu`] (work off the async runtime), [`error`],
//!   [`request_id`], [`config`], [`telemetry`], [`healthcheck`]: used by the layers above;
//!   [`tables`]: embedding tables kept on the server, loaded, versioned and reloaded;
//! - [`tensor`]: request tensors decoded into contiguous buffers; [`compute`]: the math;
//!   [`echo`]: what of a request an error may repeat. All pure: no HTTP, no async runtime.

pub mod admission;
pub mod answer;
pub mod api;
pub mod app;
pub mod body;
pub mod coding;
pub mod compute;
pub mod config;
pub mod cpu;
pub mod echo;
pub mod error;
pub mod healthcheck;
pub mod metrics;
pub mod middleware;
pub mod request_id;
pub mod server;
pub mod state;
pub mod tables;
pub mod telemetry;
pub mod tensor;

pub use app::router;
pub use config::Config;
pub use server::Application;
