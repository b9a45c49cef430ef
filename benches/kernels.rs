//! Kernel throughput: `cargo bench --bench kernels`.
//!
//! Throughput is reported in "elements", one element being one floating-point operation
//! (2 per multiply-add), so criterion's `Gelem/s` reads as GFLOP/s.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use simserve::compute::{Cancel, Metric, Selection, matrix, nearest, pairwise};

/// Deterministic pseudo-random rows in [-1, 1).
fn rows(n: usize, dim: usize, seed: u64) -> Array2<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    Array2::from_shape_simple_fn((n, dim), || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    })
}

fn dense(c: &mut Criterion) {
    let mut group = c.benchmark_group("matrix");
    group.sample_size(10);
    let cancel = Cancel::new();
    for &(n, d, m) in &[(1000, 768, 1000), (4096, 1024, 4096)] {
        let (a, b) = (rows(n, d, 1), rows(m, d, 2));
        group.throughput(Throughput::Elements((2 * n * m * d) as u64));
        for metric in [Metric::Cosine, Metric::Dot, Metric::Euclidean] {
            let id = BenchmarkId::new(metric.name(), format!("{n}x{d}x{m}"));
            group.bench_with_input(id, &(), |bench, _| {
                bench.iter(|| black_box(matrix(a.view(), Some(b.view()), metric, &cancel)))
            });
        }
    }
    let (a, b) = (rows(256, 768, 3), rows(256, 768, 4));
    group.throughput(Throughput::Elements((2 * 256 * 256 * 768) as u64));
    group.bench_function("manhattan/256x768x256", |bench| {
        bench.iter(|| black_box(matrix(a.view(), Some(b.view()), Metric::Manhattan, &cancel)))
    });
    group.finish();
}

fn neighbours(c: &mut Criterion) {
    let mut group = c.benchmark_group("top_k");
    group.sample_size(10);
    let cancel = Cancel::new();
    let (a, b) = (rows(1000, 64, 5), rows(100_000, 64, 6));
    group.throughput(Throughput::Elements(2 * 1000 * 100_000 * 64));
    let selection = Selection {
        k: Some(10),
        max_entries: usize::MAX,
        ..Selection::default()
    };
    group.bench_function("cosine/1000x64 vs 100000x64, k=10", |bench| {
        bench.iter(|| {
            black_box(nearest(
                a.view(),
                Some(b.view()),
                Metric::Cosine,
                &selection,
                &cancel,
            ))
        })
    });
    group.finish();
}

fn pairs(c: &mut Criterion) {
    let mut group = c.benchmark_group("pairwise");
    let cancel = Cancel::new();
    for &(n, d) in &[(8, 128), (256, 384), (4096, 768)] {
        let (a, b) = (rows(n, d, 7), rows(n, d, 8));
        group.throughput(Throughput::Elements((2 * n * d) as u64));
        group.bench_function(format!("cosine/{n}x{d}"), |bench| {
            bench.iter(|| black_box(pairwise(a.view(), b.view(), Metric::Cosine, &cancel)))
        });
    }
    group.finish();
}

criterion_group!(benches, dense, neighbours, pairs);
criterion_main!(benches);
