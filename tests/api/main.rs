//! The API test binary: every response these tests receive is also checked against
//! `openapi.yaml` by the helpers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod admission;
mod catalogue;
mod errors;
mod helpers;
mod live;
mod matrix;
mod new_operation;
mod openapi;
mod operations;
mod page;
mod pairwise;
mod properties;
mod reference;
mod server;
mod tables;
mod user_item;
mod v2;
