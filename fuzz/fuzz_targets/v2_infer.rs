//! The Open Inference Protocol's body framing: `POST /v2/models/{model}/infer` with a JSON
//! header and binary tensor data. Half the inputs are raw (two bytes of
//! `Inference-Header-Content-Length`, the rest as the body); half are well-formed headers
//! whose inputs, datatypes, shapes, binary sizes, parameters and outputs are fuzzed, with
//! the rest as the binary data, so the fuzzer spends its time in the framing, the typed
//! decoders and the models. Bodies come whole, or declared and in frames of a fuzzed size
//! (decoded as they arrive). The oracle: no panic, no 5xx, and an answer whose binary data
//! is what its JSON says.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

#[path = "common.rs"]
mod common;

const DATATYPES: [&str; 7] = ["FP32", "FP64", "FP16", "BF16", "INT64", "BYTES", "INT8"];

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let model = ["pairwise", "matrix", "user-item"][usize::from(head % 3)];
    let path = format!("/v2/models/{model}/infer");
    if head & 0x80 != 0 {
        let (length, body) = rest.split_at(rest.len().min(2));
        let length = length
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        let length = (head & 0x40 != 0).then_some(length);
        let frame = (head & 0x20 != 0).then_some(usize::from(head & 0x1f) + 1);
        common::post_v2(&path, length, body.to_vec(), frame);
        return;
    }
    let names: [&str; 4] = match model {
        "pairwise" => ["a", "b", "pairs", "c"],
        "matrix" => ["a", "b", "a", "pairs"],
        _ => ["users", "items", "pairs", "exclude"],
    };
    let (spec, payload) = rest.split_at(rest.len().min(10));
    let byte = |i: usize| spec.get(i).copied().unwrap_or(0);
    let count = 1 + usize::from(byte(0) % 3);
    let mut inputs = Vec::new();
    let mut left = payload.len();
    for i in 0..count {
        let code = byte(1 + 2 * i);
        let dims = byte(2 + 2 * i);
        let datatype = DATATYPES[usize::from(code % 7)];
        let name = names[usize::from((code >> 3) % 4)];
        let (rows, cols) = (usize::from(dims % 6), usize::from((dims >> 3) % 6));
        let shape = if name == "pairs" && model == "pairwise" {
            json!([rows, 2, cols])
        } else if dims & 0x80 != 0 {
            json!([rows])
        } else {
            json!([rows, cols])
        };
        // The last input takes what is left; the others a share set by the spec.
        let size = if i + 1 == count {
            left
        } else {
            left.min(usize::from(code >> 5) * 8)
        };
        left -= size;
        inputs.push(json!({"name": name, "datatype": datatype, "shape": shape,
                           "parameters": {"binary_data_size": size}}));
    }
    let options = byte(7);
    let mut parameters = serde_json::Map::new();
    if options & 1 != 0 {
        parameters.insert("top_k".into(), json!(1 + options % 4));
    }
    if options & 2 != 0 {
        parameters.insert("threshold".into(), json!(0.5));
    }
    if options & 4 != 0 {
        parameters.insert("binary_data_output".into(), json!(true));
    }
    if options & 8 != 0 {
        parameters.insert("exclude_self".into(), json!(true));
    }
    if options & 16 != 0 {
        let metric = ["cosine", "dot", "euclidean", "manhattan"][usize::from(options >> 6)];
        parameters.insert("metric".into(), json!(metric));
    }
    let mut request = json!({"inputs": inputs, "parameters": Value::Object(parameters)});
    if options & 32 != 0 {
        let output = ["scores", "matrix", "indices", "offsets"][usize::from(byte(8) % 4)];
        request["outputs"] =
            json!([{"name": output, "parameters": {"binary_data": byte(8) & 4 != 0}}]);
    }
    let mut body = request.to_string().into_bytes();
    let length = body.len();
    body.extend_from_slice(payload);
    let frame = (byte(9) != 0).then_some(usize::from(byte(9)));
    common::post_v2(&path, Some(length), body, frame);
});
