//! Any bytes as the body of `POST /similarity/user-item`: decoding, validation, compute and
//! encoding must answer 2xx or a 4xx problem, never panic or 5xx.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::post("/similarity/user-item", data.to_vec());
});
