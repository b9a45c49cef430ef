//! faer's GEMM against OpenBLAS's on one thread, `a · bᵀ` at the shapes the service
//! multiplies: whole dense results (1000 × 768 × 1000) and the tiles of top-k selection (64
//! rows against 4096 columns, and the spread blocks' tiles of 1 MiB: 125 rows against 2097
//! columns, 250 against 1048) at several dimensions. Each shape alternates the two libraries
//! three times; the middle round by their ratio is printed, with the range of the ratio.
//! Says where `compute::gemm` should use OpenBLAS (`BLAS_MIN_DIM`).
//!
//! Usage: `gemm_libraries` (needs OpenBLAS: Debian's `libopenblas0`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::time::Instant;

use faer::{Accum, MatMut, MatRef, Par};
use simserve::compute::blas::{AUTO_NAMES, Blas};

const SHAPES: [(usize, usize, usize); 16] = [
    (64, 64, 4096),
    (256, 64, 4096),
    (500, 64, 50_000),
    (125, 64, 2097),
    (250, 64, 1048),
    (125, 96, 2097),
    (125, 128, 2097),
    (125, 192, 2097),
    (125, 256, 2097),
    (125, 768, 2097),
    (64, 128, 4096),
    (64, 384, 4096),
    (64, 768, 4096),
    (8, 128, 8),
    (256, 768, 1000),
    (1000, 768, 1000),
];

fn faer_a_bt(a: &[f32], b: &[f32], dim: usize, out: &mut [f32]) {
    let (n, m) = (a.len() / dim, b.len() / dim);
    faer::linalg::matmul::matmul(
        MatMut::from_row_major_slice_mut(out, n, m),
        Accum::Replace,
        MatRef::from_row_major_slice(a, n, dim),
        MatRef::from_row_major_slice(b, m, dim).transpose(),
        1.0f32,
        Par::Seq,
    );
}

/// Median seconds per call over 9 measurements of `calls` calls each.
fn seconds(calls: usize, mut product: impl FnMut()) -> f64 {
    product();
    let mut times: Vec<f64> = (0..9)
        .map(|_| {
            let start = Instant::now();
            (0..calls).for_each(|_| product());
            start.elapsed().as_secs_f64() / calls as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let blas = Blas::open(AUTO_NAMES[0]).expect("OpenBLAS (Debian's libopenblas0)");
    println!("{}", blas.description());
    for (n, dim, m) in SHAPES {
        let fill = |rows: usize, seed: usize| -> Vec<f32> {
            (0..rows * dim)
                .map(|i| ((i * 31 + seed) % 1009) as f32 / 1009.0 - 0.5)
                .collect()
        };
        let (a, b, mut out) = (fill(n, 1), fill(m, 2), vec![0.0f32; n * m]);
        let gflop = 2.0 * (n * dim * m) as f64 / 1e9;
        let calls = ((0.02 / (gflop / 100.0)) as usize).max(1);
        let mut rounds: Vec<(f64, f64)> = (0..3)
            .map(|_| {
                let faer = gflop / seconds(calls, || faer_a_bt(&a, &b, dim, &mut out));
                let open = gflop / seconds(calls, || assert!(blas.a_bt(&a, &b, dim, &mut out)));
                (faer, open)
            })
            .collect();
        rounds.sort_by(|x, y| (x.1 / x.0).total_cmp(&(y.1 / y.0)));
        let (faer, open) = rounds[1];
        println!(
            "{n}x{dim}x{m}: faer {faer:.1} GFLOP/s, OpenBLAS {open:.1}, OpenBLAS / faer {:.2} \
             (rounds {:.2}-{:.2})",
            open / faer,
            rounds[0].1 / rounds[0].0,
            rounds[2].1 / rounds[2].0
        );
    }
}
