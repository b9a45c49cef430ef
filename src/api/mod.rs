//! HTTP endpoints: one file per route holds its request/response types and handler.
//!
//! Data flows one way: body → [`body::JsonBody`] (decode) → the endpoint's job type
//! (validation, via `TryFrom`) → [`crate::compute`] (off the runtime) → [`encode`].

pub mod body;
pub mod encode;
pub mod fields;
pub mod matrix;
pub mod meta;
pub mod pairwise;
pub mod user_item;
mod validate;
