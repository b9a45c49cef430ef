//! Prints the median time and GFLOP/s of one dense similarity kernel, for comparing with
//! numpy in the same run (`bench/kernels_vs_numpy.py`), or with `TOP_K` of one neighbour
//! selection (the `k` nearest of the `M` rows for each of the `N`).
//!
//! Usage: `kernel_rate METRIC N DIM M [REPEATS] [TOP_K]`, e.g. `kernel_rate cosine 1000 768
//! 1000 7`, or `kernel_rate cosine 500 64 50000 15 20` for user-item's top-k.
//! `SIMSERVE_BLAS` chooses the matrix product's library as for the server (`off`: faer).
//! The timed repeats follow half a second of untimed ones ([`WARM_UP`]).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::time::{Duration, Instant};

use ndarray::Array2;
use simserve::compute::blas::{self, BlasChoice};
use simserve::compute::{Cancel, Metric, Selection, matrix, nearest};

/// How long the kernel runs untimed before it is measured.
const WARM_UP: Duration = Duration::from_millis(500);

fn main() {
    let choice: BlasChoice = std::env::var("SIMSERVE_BLAS")
        .unwrap_or_else(|_| "auto".into())
        .parse()
        .unwrap();
    eprintln!("{:?}", blas::start(&choice).unwrap());
    let args: Vec<String> = std::env::args().collect();
    let metric = match args.get(1).map(String::as_str) {
        Some("dot") => Metric::Dot,
        Some("euclidean") => Metric::Euclidean,
        Some("manhattan") => Metric::Manhattan,
        _ => Metric::Cosine,
    };
    let number =
        |i: usize, default: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (n, dim, m, repeats) = (
        number(2, 1000),
        number(3, 768),
        number(4, 1000),
        number(5, 7),
    );
    let fill = |rows: usize, seed: usize| {
        Array2::from_shape_fn((rows, dim), |(i, j)| {
            (((i * 31 + j * 17 + seed) % 1009) as f32) / 1009.0 - 0.5
        })
    };
    let (a, b) = (fill(n, 1), fill(m, 2));
    let cancel = Cancel::new();
    let top_k = args.get(6).and_then(|v| v.parse().ok());
    let selection = Selection {
        k: top_k,
        max_entries: usize::MAX,
        ..Selection::default()
    };
    let run = || {
        let start = Instant::now();
        match top_k {
            Some(_) => {
                let found = nearest(a.view(), Some(b.view()), metric, &selection, &cancel);
                std::hint::black_box(found).ok();
            }
            None => {
                let out = matrix(a.view(), Some(b.view()), metric, &cancel);
                std::hint::black_box(out).ok();
            }
        }
        start.elapsed().as_secs_f64()
    };
    // Untimed runs first, for at least WARM_UP: a new pool's two threads can take turns on
    // one core for the first hundred milliseconds or so, until the kernel spreads them
    // (BENCHMARKS.md, "A run on an AMD EPYC whose OpenBLAS runs its 512-bit kernels").
    let warm = Instant::now();
    run();
    while warm.elapsed() < WARM_UP {
        run();
    }
    let mut seconds: Vec<f64> = (0..repeats).map(|_| run()).collect();
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    let flops = 2.0 * (n * dim * m) as f64;
    let top = top_k.map_or(String::new(), |k| format!(" top_k={k}"));
    println!(
        "{} {n}x{dim}x{m}{top} median_ms={:.2} gflops={:.1}",
        metric.name(),
        median * 1e3,
        flops / median / 1e9
    );
}
