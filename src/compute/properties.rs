//! Property tests: the fast kernels against the `f64` test reference, and the invariants
//! the API promises. `PROPTEST_CASES` raises the number of cases.

use ndarray::{Array2, Axis};
use proptest::prelude::*;

use super::reference::{norm, score_pair};
use super::{Cancel, Metric, Norms, Operand, Selection, matrices, matrix, nearest, pairwise};

const METRICS: [Metric; 4] = [
    Metric::Cosine,
    Metric::Dot,
    Metric::Euclidean,
    Metric::Manhattan,
];

/// The accuracy contract for one pair.
fn tolerance(metric: Metric, x: ndarray::ArrayView1<f32>, y: ndarray::ArrayView1<f32>) -> f64 {
    let (nx, ny) = (norm(x), norm(y));
    match metric {
        Metric::Cosine => 2e-5,
        Metric::Dot => 2e-5 * nx * ny,
        Metric::Euclidean | Metric::Manhattan => 2e-5 * (nx + ny),
    }
}

/// Rows scaled by 1e-15 to 1e15, with zero rows, exact duplicates and near-duplicates mixed in.
fn rows(max_rows: usize, dim: usize) -> impl Strategy<Value = Array2<f32>> {
    (1..=max_rows, -15i32..=15).prop_flat_map(move |(n, exponent)| {
        let scale = 10f32.powi(exponent);
        (
            prop::collection::vec(-1.0f32..1.0, n * dim),
            prop::collection::vec(0u8..8, n),
        )
            .prop_map(move |(values, kinds)| {
                let mut a = Array2::from_shape_vec((n, dim), values).unwrap() * scale;
                for (i, kind) in kinds.iter().enumerate() {
                    match kind {
                        0 => a.row_mut(i).fill(0.0),
                        1 if i > 0 => {
                            let previous = a.row(i - 1).to_owned();
                            a.row_mut(i).assign(&previous);
                        }
                        2 if i > 0 => {
                            let near = a.row(i - 1).mapv(|v| v * (1.0 + 1e-4));
                            a.row_mut(i).assign(&near);
                        }
                        _ => {}
                    }
                }
                a
            })
    })
}

fn pair_of(max_rows: usize) -> impl Strategy<Value = (Array2<f32>, Array2<f32>)> {
    (1usize..40).prop_flat_map(move |dim| (rows(max_rows, dim), rows(max_rows, dim)))
}

proptest! {
    #[test]
    fn every_metric_matches_the_f64_reference_within_the_contract((a, b) in pair_of(12)) {
        for metric in METRICS {
            let got = matrix(a.view(), Some(b.view()), metric, &Cancel::new()).unwrap();
            for (i, x) in a.rows().into_iter().enumerate() {
                for (j, y) in b.rows().into_iter().enumerate() {
                    let want = score_pair(metric, x, y);
                    let error = (f64::from(got[[i, j]]) - want).abs();
                    prop_assert!(error <= tolerance(metric, x, y), "{metric:?} [{i}][{j}]: {} vs {want}", got[[i, j]]);
                }
            }
        }
    }

    #[test]
    fn cosine_matches_the_f64_reference_at_any_norm(
        (dim, a, b) in (1usize..40).prop_flat_map(|dim| (
            Just(dim),
            prop::collection::vec(-1.0f32..1.0, dim..=6 * dim),
            prop::collection::vec(-1.0f32..1.0, dim..=6 * dim),
        )),
        (scale_a, scale_b) in (-30i32..=30, -30i32..=30),
    ) {
        // Rows of norms from 1e-30 to 1e30: up to 2^60 they enter the GEMM raw and their
        // products are scaled; beyond it they are normalised first.
        let side = |values: Vec<f32>, scale: i32| {
            let rows = values.len() / dim;
            let values = values[..rows * dim].iter().map(|v| v * 10f32.powi(scale)).collect();
            Array2::from_shape_vec((rows, dim), values).unwrap()
        };
        let (a, b) = (side(a, scale_a), side(b, scale_b));
        let got = matrix(a.view(), Some(b.view()), Metric::Cosine, &Cancel::new()).unwrap();
        let own = matrix(a.view(), None, Metric::Cosine, &Cancel::new()).unwrap();
        for (i, x) in a.rows().into_iter().enumerate() {
            for (j, y) in b.rows().into_iter().enumerate() {
                let want = score_pair(Metric::Cosine, x, y);
                prop_assert!((f64::from(got[[i, j]]) - want).abs() <= 2e-5, "[{i}][{j}]: {} vs {want}", got[[i, j]]);
            }
            for (j, y) in a.rows().into_iter().enumerate() {
                let want = score_pair(Metric::Cosine, x, y);
                prop_assert!((f64::from(own[[i, j]]) - want).abs() <= 2e-5, "own [{i}][{j}]: {} vs {want}", own[[i, j]]);
            }
        }
    }

    #[test]
    fn rows_with_norms_from_load_match_the_f64_reference_like_any_rows((a, b) in pair_of(12)) {
        // Tables bring their norms: cosine is then the product of raw rows, scaled.
        let (norms_a, norms_b) = (Norms::of(a.view()), Norms::of(b.view()));
        let side_a = Operand::with_norms(a.view(), &norms_a).unwrap();
        let side_b = Operand::with_norms(b.view(), &norms_b).unwrap();
        for metric in METRICS {
            for (x_side, y_side, inline_b) in [
                (side_a, side_b, false),
                (Operand::from(a.view()), side_b, false),
                (side_a, Operand::from(b.view()), true),
            ] {
                let got = matrix(x_side, Some(y_side), metric, &Cancel::new()).unwrap();
                for (i, x) in a.rows().into_iter().enumerate() {
                    for (j, y) in b.rows().into_iter().enumerate() {
                        let want = score_pair(metric, x, y);
                        let error = (f64::from(got[[i, j]]) - want).abs();
                        prop_assert!(error <= tolerance(metric, x, y), "{metric:?} (b inline: {inline_b}) [{i}][{j}]: {} vs {want}", got[[i, j]]);
                    }
                }
            }
            let own = matrix(side_a, None, metric, &Cancel::new()).unwrap();
            for (i, x) in a.rows().into_iter().enumerate() {
                let exact = match metric {
                    Metric::Cosine if norm(x) >= 1e-6 => Some(1.0),
                    Metric::Euclidean | Metric::Manhattan => Some(0.0),
                    _ => None,
                };
                if let Some(exact) = exact {
                    prop_assert_eq!(own[[i, i]], exact, "{:?} row {} against itself", metric, i);
                }
            }
            let keep = Selection { k: Some(3), max_entries: usize::MAX, ..Selection::default() };
            let scaled = nearest(side_a, Some(side_b), metric, &keep, &Cancel::new()).unwrap();
            let full = matrix(side_a, Some(side_b), metric, &Cancel::new()).unwrap();
            for (i, row) in scaled.indices.rows().enumerate() {
                for (&j, &score) in row.iter().zip(scaled.scores.row(i)) {
                    prop_assert_eq!(score, full[[i, j]]);
                }
            }
        }
    }

    #[test]
    fn pairwise_matches_the_f64_reference((a, b) in pair_of(12)) {
        let n = a.nrows().min(b.nrows());
        let (a, b) = (a.slice(ndarray::s![..n, ..]), b.slice(ndarray::s![..n, ..]));
        for metric in METRICS {
            let got = pairwise(a, b, metric, &Cancel::new()).unwrap();
            for i in 0..n {
                let want = score_pair(metric, a.row(i), b.row(i));
                prop_assert!((f64::from(got[i]) - want).abs() <= tolerance(metric, a.row(i), b.row(i)));
            }
        }
    }

    #[test]
    fn self_similarity_is_symmetric_bounded_and_exact_on_the_diagonal(a in (1usize..40).prop_flat_map(|d| rows(16, d))) {
        for metric in METRICS {
            let got = matrix(a.view(), None, metric, &Cancel::new()).unwrap();
            for i in 0..a.nrows() {
                let x = a.row(i);
                match metric {
                    Metric::Cosine if norm(x) >= 1e-6 => prop_assert_eq!(got[[i, i]], 1.0),
                    Metric::Euclidean | Metric::Manhattan => prop_assert_eq!(got[[i, i]], 0.0),
                    _ => {}
                }
                for j in 0..a.nrows() {
                    let tol = tolerance(metric, x, a.row(j));
                    prop_assert!((f64::from(got[[i, j]]) - f64::from(got[[j, i]])).abs() <= 2.0 * tol);
                    if metric == Metric::Cosine {
                        prop_assert!((-1.0..=1.0).contains(&got[[i, j]]));
                    }
                    if metric == Metric::Euclidean && a.row(i) == a.row(j) {
                        prop_assert_eq!(got[[i, j]], 0.0);
                    }
                }
            }
        }
    }

    #[test]
    fn top_k_and_threshold_equal_sorting_and_filtering_the_dense_matrix(
        (a, b) in pair_of(20),
        k in 1usize..25,
        cut in 0.0f64..1.0,
        use_k in any::<bool>(),
        use_threshold in any::<bool>(),
    ) {
        for metric in METRICS {
            let dense = matrix(a.view(), Some(b.view()), metric, &Cancel::new()).unwrap();
            let mut values: Vec<f32> = dense.iter().copied().collect();
            values.sort_by(f32::total_cmp);
            let threshold = (use_threshold || !use_k).then(|| values[((values.len() - 1) as f64 * cut) as usize]);
            let selection = Selection {
                k: use_k.then_some(k),
                threshold,
                max_entries: usize::MAX,
                ..Selection::default()
            };
            let got = nearest(a.view(), Some(b.view()), metric, &selection, &Cancel::new()).unwrap();
            for (i, row) in dense.rows().into_iter().enumerate() {
                let mut want: Vec<usize> = (0..b.nrows())
                    .filter(|&j| threshold.is_none_or(|t| metric.passes(row[j], t)))
                    .collect();
                want.sort_by(|&x, &y| metric.nearest_first(row[x], row[y]).then(x.cmp(&y)));
                if use_k {
                    want.truncate(k);
                }
                prop_assert_eq!(got.indices.row(i), &want[..], "{:?} row {}", metric, i);
                let scores: Vec<f32> = want.iter().map(|&j| row[j]).collect();
                prop_assert_eq!(got.scores.row(i), &scores[..]);
            }
        }
    }

    #[test]
    fn batched_sets_equal_each_set_alone(a in (1usize..10).prop_flat_map(|d| rows(6, d)), sets in 1usize..4) {
        let batch = ndarray::stack(Axis(0), &vec![a.view(); sets]).unwrap();
        for metric in METRICS {
            let got = matrices(batch.view(), None, metric, &Cancel::new()).unwrap();
            let one = matrix(a.view(), None, metric, &Cancel::new()).unwrap();
            for s in 0..sets {
                prop_assert_eq!(got.index_axis(Axis(0), s), one.view());
            }
        }
    }

    #[test]
    fn finite_input_gives_finite_output((a, b) in pair_of(8)) {
        for metric in METRICS {
            let got = matrix(a.view(), Some(b.view()), metric, &Cancel::new()).unwrap();
            prop_assert!(got.iter().all(|v| v.is_finite()));
        }
    }
}

/// Rows of `dim` values from a seed, every ninth row from a short repeating pattern (so rows
/// 4, 13, 22, … are near-duplicates of each other).
fn wave(rows: usize, dim: usize, seed: f32) -> Array2<f32> {
    Array2::from_shape_fn((rows, dim), |(i, j)| {
        let v = ((i * 37 + j * 11) as f32 * 0.013 + seed).sin();
        if i % 9 == 4 {
            ((j % 7) as f32).cos()
        } else {
            v
        }
    })
}

/// Asserts that the products of this test process go to OpenBLAS, so that the tests of its
/// path cannot pass on faer's (CI installs Debian's libopenblas0).
fn products_go_to_openblas() {
    assert!(
        super::blas::chosen().is_some(),
        "OpenBLAS did not open (Debian: libopenblas0)"
    );
}

/// Large enough for threads, and for euclidean for several sub-blocks of columns, scored
/// both as shares of rows per thread and through the library's threading; near-duplicate
/// rows exercise the cancellation fallback. 300 dimensions: OpenBLAS multiplies.
#[test]
fn a_product_scored_by_threads_and_sub_blocks_matches_the_reference() {
    use super::dense::matrix_splitting_from;
    use super::threads::PARALLEL_WORK;

    products_go_to_openblas();
    let dim = 300;
    let wave = |rows: usize, seed: f32| wave(rows, dim, seed);
    // Two threads whatever the machine has, so both paths are taken.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        let (a, b, c) = (wave(40, 0.5), wave(1100, 1.5), wave(120, 2.5));
        assert!(40 * 1100 * dim >= PARALLEL_WORK && rayon::current_num_threads() > 1);
        for (metric, split_work) in METRICS
            .into_iter()
            .flat_map(|m| [(m, PARALLEL_WORK), (m, usize::MAX)])
        {
            let cancel = Cancel::new();
            let got = matrix_splitting_from(a.view(), Some(b.view()), metric, &cancel, split_work)
                .unwrap();
            let own = matrix_splitting_from(c.view(), None, metric, &cancel, split_work).unwrap();
            for (left, right, got) in [(&a, &b, &got), (&c, &c, &own)] {
                for (i, x) in left.rows().into_iter().enumerate() {
                    for (j, y) in right.rows().into_iter().enumerate() {
                        let want = score_pair(metric, x, y);
                        let error = (f64::from(got[[i, j]]) - want).abs();
                        assert!(error <= tolerance(metric, x, y), "{metric:?} [{i}][{j}]");
                    }
                }
            }
            let exact = match metric {
                Metric::Cosine => 1.0,
                _ => 0.0,
            };
            if metric != Metric::Dot {
                assert!((0..c.nrows()).all(|i| own[[i, i]] == exact), "{metric:?}");
            }
        }
    });
}

/// Top-k and threshold selection score tiles of rows one product at a time; the dense
/// matrix multiplies shares of rows. Through OpenBLAS (300 dimensions) both give the same
/// scores to float32 rounding, and the same nearest items up to scores that close. They are
/// not always equal bit for bit, as they are through faer: OpenBLAS's kernels for some
/// processors (AMD EPYC, for one) round an element differently with where it falls in a
/// block of the product, and the two cut the product into different blocks.
#[test]
fn selections_through_openblas_agree_with_the_dense_matrix() {
    products_go_to_openblas();
    let (a, b) = (wave(70, 300, 0.5), wave(5000, 300, 1.5));
    let k = 7;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        for metric in METRICS {
            let cancel = Cancel::new();
            let dense = matrix(a.view(), Some(b.view()), metric, &cancel).unwrap();
            let selection = Selection {
                k: Some(k),
                max_entries: usize::MAX,
                ..Selection::default()
            };
            let got = nearest(a.view(), Some(b.view()), metric, &selection, &cancel).unwrap();
            for (i, x) in a.rows().into_iter().enumerate() {
                let chosen = got.indices.row(i);
                assert_eq!(chosen.len(), k, "{metric:?} [{i}]");
                for (&j, &score) in chosen.iter().zip(got.scores.row(i)) {
                    let error = (f64::from(score) - f64::from(dense[[i, j]])).abs();
                    let tolerance = tolerance(metric, x, b.row(j));
                    assert!(
                        error <= tolerance,
                        "{metric:?} [{i}][{j}]: {score} against {}",
                        dense[[i, j]]
                    );
                }
                // No item left out is nearer than the last chosen by more than rounding.
                let last = *chosen.last().unwrap();
                let bound = tolerance(metric, x, b.row(last));
                let left_out = (0..b.nrows()).filter(|j| !chosen.contains(j));
                for j in left_out {
                    let (theirs, ours) = (f64::from(dense[[i, j]]), f64::from(dense[[i, last]]));
                    let nearer = match metric.nearest_first(dense[[i, j]], dense[[i, last]]) {
                        std::cmp::Ordering::Less => (theirs - ours).abs() > 2.0 * bound,
                        _ => false,
                    };
                    assert!(
                        !nearer,
                        "{metric:?} [{i}]: item {j} ({theirs}) is nearer than {last} ({ours})"
                    );
                }
            }
        }
    });
}
