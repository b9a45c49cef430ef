//! simserve: similarity between embeddings over HTTP.
//!
//! - [`compute`]: the math, free of HTTP (ndarray views in, arrays out);
//! - [`tensor`]: request tensors (nested arrays or base64) decoded into contiguous buffers;
//! - [`api`]: one module per route, from body to job to response;
//! - [`app`]: the router, limits and serving; [`config`]: flags and `SIMSERVE_*` variables.

#[macro_use]
mod refuse;

pub mod api;
pub mod app;
pub mod compute;
pub mod config;
pub mod error;
pub mod offload;
pub mod telemetry;
pub mod tensor;

pub use app::{Application, router};
pub use config::Config;
