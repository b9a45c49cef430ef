//! The layers every request passes through, outermost first: request id
//! ([`crate::request_id`]), CORS, response compression ([`crate::coding::layer`]), request log
//! and metrics ([`observe`]), errors in the Open Inference Protocol's shape under `/v2`
//! ([`oip`]), the `Host` header's rules ([`host`]), panic catching ([`panic`]), cross-origin
//! protection ([`cross_origin`]),
//! authentication ([`auth`]) and the deadline
//! ([`deadline`]). [`crate::app::with_layers`] stacks them. Each takes only what it
//! needs: auth its keys, the others the shared state.

pub mod auth;
pub mod cross_origin;
pub mod deadline;
pub mod host;
pub mod observe;
pub mod oip;
pub mod panic;
