//! Where the time of one matrix request goes: parse, compute, encode (medians of 5).
//!
//! Usage: `request_phases BODY.json`, with a `/similarity/matrix` body holding `a` and `b`
//! (`bench/run.py` writes such bodies). Used to explain the numbers in BENCHMARKS.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::time::Instant;

use ndarray::Array2;
use simserve::answer::Encoding;
use simserve::answer::json::Dense;
use simserve::api::matrix::MatrixRequest;
use simserve::body::parse;
use simserve::compute::{Cancel, Metric, matrix};

fn median_ms(mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[2]
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: request_phases BODY.json");
    let body = std::fs::read(path).expect("readable body");
    let parse_ms = median_ms(|| {
        std::hint::black_box(parse::<MatrixRequest>(&body).expect("a valid matrix request"));
    });
    let (n, d) = (1000, 768);
    let a = Array2::from_shape_fn((n, d), |(i, j)| ((i * 7 + j) % 13) as f32 - 6.0);
    let cancel = Cancel::new();
    let mut result = Array2::zeros((0, 0));
    let compute_ms =
        median_ms(|| result = matrix(a.view(), Some(a.view()), Metric::Cosine, &cancel).unwrap());
    let values = result.as_slice().unwrap();
    let mut size = 0;
    let encode_ms = median_ms(|| {
        size = serde_json::to_vec(&Dense::new(Encoding::Json, &[n, n], values))
            .unwrap()
            .len();
    });
    println!(
        "body {:.1} MB: parse {parse_ms:.1} ms, compute (cosine {n}x{d}x{n}) {compute_ms:.1} ms, \
         encode JSON ({:.1} MB) {encode_ms:.1} ms",
        body.len() as f64 / 1e6,
        size as f64 / 1e6
    );
}
