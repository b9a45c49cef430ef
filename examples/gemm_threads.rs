//! How to spread one `a · bᵀ` over the thread pool: faer's own threading against one
//! sequential GEMM per thread on a share of the rows (what `compute` does from `SPLIT_WORK`
//! multiply-adds on), with a fresh output per product as the service makes. The strategies
//! alternate, so machine noise hits them alike; medians in GFLOP/s.
//!
//! Usage: `gemm_threads N DIM M [REPEATS]`, e.g. `gemm_threads 4096 1024 4096 9`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::time::Instant;

use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// One way to compute `dst = lhs · rhsᵀ`.
type Strategy<'a> = &'a dyn Fn(MatRef<f32>, MatRef<f32>, MatMut<f32>);

fn product(lhs: MatRef<f32>, rhs: MatRef<f32>, dst: MatMut<f32>, par: Par) {
    faer::linalg::matmul::matmul(dst, Accum::Replace, lhs, rhs.transpose(), 1.0, par);
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|v| v.parse().expect("a number"))
        .collect();
    let (n, dim, m) = (args[0], args[1], args[2]);
    let repeats = args.get(3).copied().unwrap_or(9);
    let fill = |rows: usize, seed: usize| -> Vec<f32> {
        (0..rows * dim)
            .map(|i| ((i * 31 + seed) % 1009) as f32 / 1009.0 - 0.5)
            .collect()
    };
    let (a, b) = (fill(n, 1), fill(m, 2));
    let threads = rayon::current_num_threads();
    let strategies: [(&str, Strategy); 3] = [
        ("faer threading", &|lhs, rhs, dst| {
            product(lhs, rhs, dst, Par::rayon(0))
        }),
        ("a share of rows per thread", &|lhs, rhs, dst| {
            dst.par_row_partition_mut(threads)
                .zip(lhs.par_row_partition(threads))
                .for_each(|(dst, lhs)| product(lhs, rhs, dst, Par::Seq))
        }),
        ("one thread", &|lhs, rhs, dst| {
            product(lhs, rhs, dst, Par::Seq)
        }),
    ];
    let mut seconds = vec![Vec::new(); strategies.len()];
    for _ in 0..=repeats {
        for ((_, run), times) in strategies.iter().zip(&mut seconds) {
            let start = Instant::now();
            let mut out = vec![0.0f32; n * m];
            run(
                MatRef::from_row_major_slice(&a, n, dim),
                MatRef::from_row_major_slice(&b, m, dim),
                MatMut::from_row_major_slice_mut(&mut out, n, m),
            );
            std::hint::black_box(&out);
            times.push(start.elapsed().as_secs_f64());
        }
    }
    println!("{n}x{dim}x{m}, {threads} threads, medians of {repeats} (after one warm-up):");
    for ((name, _), mut times) in strategies.iter().zip(seconds) {
        times.remove(0);
        times.sort_by(f64::total_cmp);
        let gflops = 2.0 * (n * dim * m) as f64 / times[times.len() / 2] / 1e9;
        println!("  {name:<28} {gflops:>7.1} GFLOP/s");
    }
}
