//! Decode and encode throughput: `cargo bench --bench codec`.
//!
//! - `decode`: one 1000×768 tensor as nested JSON (serde's visitor) and base64, in floats/s;
//! - `read`: the same tensor as Python writes float32 values (`json.dumps(x.tolist())`,
//!   about 20 bytes a number), by the tensor text reader on one thread and cut into pieces
//!   on two, against serde's visitor, in bytes/s; and rows of unit length (an embedding
//!   model's, whose values below 0.01 Python writes with 19 or 20 digits after the point) by
//!   the reader on one thread. Every reader case times finding the tensor's span
//!   (`text::span`) with the reading, as the service does for each request;
//! - `body`: a whole matrix request of two such tensors, parsed with its tensors read ahead
//!   against serde alone; and `bench/run.py`'s small request (pairwise, two 8×128 tensors,
//!   about 42 KB), parsed as the service parses it;
//! - `encode`: the 1000×768 answer as nested JSON and base64 through serde, and as nested JSON
//!   by the answer's own writer on one thread and on two.

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
use simserve::answer::json::{self, Dense, DenseField, Versions};
use simserve::api::matrix::MatrixRequest;
use simserve::api::pairwise::PairwiseRequest;
use simserve::body;
use simserve::compute::Metric;
use simserve::tensor::{TensorSeed, text};

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

/// `rows × DIM` values of a unit-variance-like spread, written as Python writes float32
/// values converted to its floats (the shortest text that gives back the `f64`).
fn python_text(rows: usize, seed: usize) -> String {
    python_text_of(rows, DIM, seed, 3.0)
}

/// [`python_text`] with the values spread over `±scale / 2`.
fn python_text_scaled(rows: usize, seed: usize, scale: f32) -> String {
    python_text_of(rows, DIM, seed, scale)
}

/// `rows × dim` values spread over `±scale / 2`, as [`python_text`] writes them.
fn python_text_of(rows: usize, dim: usize, seed: usize, scale: f32) -> String {
    let row = |i: usize| {
        let numbers: Vec<String> = (0..dim)
            .map(|j| {
                let k = (i * dim + j) * 7919 + seed;
                let v = ((k % 10007) as f32 / 10007.0 - 0.5) * scale;
                format!("{:?}", v as f64)
            })
            .collect();
        format!("[{}]", numbers.join(", "))
    };
    format!("[{}]", (0..rows).map(row).collect::<Vec<_>>().join(", "))
}

fn read(c: &mut Criterion) {
    let tensor = python_text(ROWS, 0);
    let bytes = tensor.as_bytes();
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("read");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("python floats 1000x768, serde visitor", |bench| {
        bench.iter(|| {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            black_box(TensorSeed::new("a", &[2]).deserialize(&mut de).unwrap())
        })
    });
    // Both reader cases find the span in the timed work, on the calling thread, as the
    // service does before it reads a tensor (on one thread, or cut into pieces on the pool).
    group.bench_function("python floats 1000x768, reader, one thread", |bench| {
        bench.iter(|| black_box(text::read(bytes, &text::span(bytes, 0).unwrap()).unwrap()))
    });
    group.bench_function("python floats 1000x768, reader, two threads", |bench| {
        bench.iter(|| {
            let span = text::span(bytes, 0).unwrap();
            two.install(|| black_box(text::read_parallel(bytes, &span).unwrap()))
        })
    });
    group.finish();

    // Uniform over ±√3/√768 (unit variance over a row): rows of length about 1.
    let unit = python_text_scaled(ROWS, 0, 2.0 * (3.0f32 / DIM as f32).sqrt());
    let unit = unit.as_bytes();
    let mut group = c.benchmark_group("read");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(unit.len() as u64));
    group.bench_function(
        "python floats of unit rows 1000x768, reader, one thread",
        |bench| bench.iter(|| black_box(text::read(unit, &text::span(unit, 0).unwrap()).unwrap())),
    );
    group.finish();
}

fn body(c: &mut Criterion) {
    let request = format!(
        r#"{{"a": {}, "b": {}, "metric": "cosine"}}"#,
        python_text(ROWS, 0),
        python_text(ROWS, 1)
    );
    let bytes = request.as_bytes();
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("body");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("matrix 2x1000x768 python floats, serde alone", |bench| {
        bench.iter(|| black_box(serde_json::from_slice::<MatrixRequest>(bytes).unwrap()))
    });
    group.bench_function(
        "matrix 2x1000x768 python floats, read ahead, one thread",
        |bench| {
            let one = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            bench.iter(|| one.install(|| black_box(body::parse::<MatrixRequest>(bytes).unwrap())))
        },
    );
    group.bench_function(
        "matrix 2x1000x768 python floats, read ahead, two threads",
        |bench| {
            bench.iter(|| two.install(|| black_box(body::parse::<MatrixRequest>(bytes).unwrap())))
        },
    );
    group.finish();

    // bench/run.py's small request (pairwise 8x128, about 42 KB), parsed on the calling
    // thread as the service parses it.
    let small = format!(
        r#"{{"a": {}, "b": {}}}"#,
        python_text_of(8, 128, 0, 3.0),
        python_text_of(8, 128, 1, 3.0)
    );
    let small = small.as_bytes();
    let mut group = c.benchmark_group("body");
    group.throughput(Throughput::Bytes(small.len() as u64));
    group.bench_function("pairwise 2x8x128 python floats", |bench| {
        bench.iter(|| black_box(body::parse::<PairwiseRequest>(small).unwrap()))
    });
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
    // The answer's own writer (`json::dense`): the text of a 1000×768 matrix answer, in the
    // pieces it is sent as, formatted on one thread and on two.
    let matrix = ndarray::ArrayView2::from_shape((ROWS, DIM), &values).unwrap();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let name = format!("nested JSON 1000x768, answer writer, threads {threads}");
        group.bench_function(name, |bench| {
            bench.iter(|| {
                pool.install(|| {
                    black_box(
                        json::dense(
                            Metric::Cosine,
                            Encoding::Json,
                            DenseField::Matrix,
                            &[ROWS, DIM],
                            matrix,
                            Versions::default(),
                        )
                        .unwrap(),
                    )
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, read, body, encode);
criterion_main!(benches);
