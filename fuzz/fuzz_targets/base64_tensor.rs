//! The base64 tensor path: a well-formed matrix request whose `a` is a base64 tensor object
//! with fuzzed dtype, shape and data (and whose options vary), so the fuzzer spends its time
//! past the JSON syntax, in the tensor decoder and the kernels. The body is also parsed with
//! base64 objects read from its bytes (`simserve::body::parse`) and by serde alone, which
//! must give the same request or the same error.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use simserve::api::matrix::MatrixRequest;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let dtype = ["float32", "float64", "int8", ""][usize::from(head & 3)];
    let rank = usize::from((head >> 2) & 3);
    let (dims, payload) = rest.split_at(rest.len().min(rank * 2));
    let shape: Vec<u64> = dims
        .chunks(2)
        .map(|d| u64::from(d[0]) | u64::from(*d.get(1).unwrap_or(&0)) << 8)
        .collect();
    // Either the raw bytes encoded, or the bytes taken as (possibly invalid) base64 text.
    let text = if head & 16 == 0 {
        STANDARD.encode(payload)
    } else {
        String::from_utf8_lossy(payload).into_owned()
    };
    let mut body = json!({"a": {"dtype": dtype, "shape": shape, "data": text}});
    match head >> 5 {
        1 => body["top_k"] = json!(3),
        2 => body["metric"] = json!("euclidean"),
        3 => body["threshold"] = json!(0.5),
        4 => body["response_encoding"] = json!("base64"),
        5 => body["metric"] = json!("dot"),
        6 => body["metric"] = json!("manhattan"),
        _ => {}
    }
    let body = body.to_string().into_bytes();
    let fast = simserve::body::parse::<MatrixRequest>(&body).map_err(|e| e.to_string());
    let serde = serde_json::from_slice::<MatrixRequest>(&body)
        .map_err(|e| simserve::error::ApiError::from_json(&e).to_string());
    assert_eq!(format!("{fast:?}"), format!("{serde:?}"));
    common::post("/similarity/matrix", body);
});
