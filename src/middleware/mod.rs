//! The layers every request passes through, outermost first: request id, CORS, compression,
//! the wire byte count, decompression, request log and metrics ([`observe`]), panic catching,
//! authentication and the deadline. [`crate::app::router`] stacks them.

pub mod auth;
pub mod deadline;
pub mod observe;
pub mod panic;
pub mod request_id;
pub mod wire;
