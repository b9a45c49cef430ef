//! HTTP endpoints: one file per route holds its request/response types and handler.
//!
//! Data flows one way: body → [`body::JsonBody`] (admission and decode) → the endpoint's job
//! type (validation) → [`ticket::Ticket::run`] (memory reserved, computed off the runtime) →
//! [`encode`].

pub mod body;
pub mod compress;
pub mod encode;
pub mod fields;
mod footprint;
pub mod matrix;
pub mod meta;
pub mod pairwise;
pub mod ticket;
pub mod user_item;
mod validate;
