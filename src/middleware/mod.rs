//! The layers every request passes through, outermost first: request id, CORS, response
//! compression, request log and metrics ([`observe`]), panic catching, authentication and the
//! deadline. [`crate::app::router`] stacks them.

pub mod auth;
pub mod deadline;
pub mod observe;
pub mod panic;
pub mod request_id;
