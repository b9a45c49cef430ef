//! Decode and encode throughput in floats per second: `cargo bench --bench codec`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::hint::black_box;

use base64::Engine;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::de::DeserializeSeed;
use simserve::answer::Encoding;
use simserve::answer::json::Dense;
use simserve::tensor::TensorSeed;

const ROWS: usize = 1000;
const DIM: usize = 768;

fn values() -> Vec<f32> {
    (0..ROWS * DIM)
        .map(|i| ((i * 7919) % 10007) as f32 / 10007.0 - 0.5)
        .collect()
}

fn decode(c: &mut Criterion) {
    let values = values();
    let nested = serde_json::to_string(&Dense::new(Encoding::Json, &[ROWS, DIM], &values)).unwrap();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let packed = format!(
        r#"{{"dtype": "float32", "shape": [{ROWS}, {DIM}], "data": "{}"}}"#,
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    let mut group = c.benchmark_group("decode");
    group.sample_size(20);
    group.throughput(Throughput::Elements((ROWS * DIM) as u64));
    for (name, text) in [
        ("nested JSON 1000x768", &nested),
        ("base64 1000x768", &packed),
    ] {
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let mut de = serde_json::Deserializer::from_str(text);
                black_box(TensorSeed::new("a", &[2]).deserialize(&mut de).unwrap())
            })
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let values = values();
    let mut group = c.benchmark_group("encode");
    group.sample_size(20);
    group.throughput(Throughput::Elements((ROWS * DIM) as u64));
    for (name, encoding) in [
        ("nested JSON 1000x768", Encoding::Json),
        ("base64 1000x768", Encoding::Base64),
    ] {
        group.bench_function(name, |bench| {
            bench.iter(|| {
                black_box(serde_json::to_vec(&Dense::new(encoding, &[ROWS, DIM], &values)).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
