//! Whole results: per-pair scores and full similarity matrices.

use std::borrow::Cow;

use ndarray::{Array1, Array2, Array3, ArrayView1, ArrayView2, ArrayView3, Axis};
use rayon::prelude::*;

use faer::Par;

use super::metric::narrow;
use super::operand::Operand;
use super::reduce::score;
use super::scorer::Scorer;
use super::threads::{self, SPLIT_WORK};
use super::{Cancel, ComputeError, Metric};

/// A row as a contiguous slice, copied only when the view is strided.
fn contiguous(row: ArrayView1<'_, f32>) -> Cow<'_, [f32]> {
    match row.to_slice() {
        Some(slice) => Cow::Borrowed(slice),
        None => Cow::Owned(row.to_vec()),
    }
}

/// Pairs scored between checks for cancellation, at most.
const PAIR_CHUNK: usize = 1 << 14;

/// Multiply-adds (or, for manhattan, subtract-adds) done between checks for cancellation
/// when scores are worked out pair by pair: tens of milliseconds at most (manhattan, the
/// slowest, scored 2.3e9 a second in `cargo run --release --example kernel_rate manhattan
/// 256 3000 256`), so a computation whose deadline passed or whose client left stops about
/// that soon, however long its vectors. Scores from the matrix product are checked every
/// [`DENSE_BLOCK`] scores, as a product cut thinner would read `b` once more for each cut:
/// it runs several times as fast (euclidean's product 28.6 GFLOP/s against manhattan's 4.6
/// in the same `kernel_rate` run, 256 3000 256), and the 1000×768 by 1000×768 product stays
/// one block.
const DIRECT_CHECK_WORK: usize = 1 << 26;

/// Pairs of `dim`-dimensional vectors scored between checks for cancellation: at least one
/// a thread, so that the threads share even the longest vectors' pairs.
fn pairs_per_check(dim: usize) -> usize {
    (DIRECT_CHECK_WORK / dim.max(1)).clamp(rayon::current_num_threads(), PAIR_CHUNK)
}

/// Rows of a dense result of `cols` columns of `dim`-dimensional vectors scored between
/// checks for cancellation, through the product (`multiplied`) or pair by pair.
fn rows_per_check(cols: usize, dim: usize, multiplied: bool) -> usize {
    let rows = DENSE_BLOCK / cols.max(1);
    let rows = match multiplied {
        true => rows,
        false => rows.min(DIRECT_CHECK_WORK / cols.max(1).saturating_mul(dim.max(1))),
    };
    rows.max(1)
}

/// Scores `count` pairs given by `pair(p) -> (row of a, row of b)`, in parallel when large.
fn scores_of(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    count: usize,
    metric: Metric,
    cancel: &Cancel,
    pair: impl Fn(usize) -> (usize, usize) + Sync,
) -> Result<Array1<f32>, ComputeError> {
    let one = |p: usize| {
        let (i, j) = pair(p);
        let (x, y) = (contiguous(a.row(i)), contiguous(b.row(j)));
        narrow(score(metric, &x, &y), &[p])
    };
    let parallel = threads::pairs_in_parallel(count.saturating_mul(a.ncols()));
    let mut scores = vec![0.0f32; count];
    let per_check = pairs_per_check(a.ncols());
    for (c, chunk) in scores.chunks_mut(per_check).enumerate() {
        cancel.check()?;
        let first = c * per_check;
        let fill = |(offset, slot): (usize, &mut f32)| {
            *slot = one(first + offset)?;
            Ok::<_, ComputeError>(())
        };
        if parallel {
            chunk.par_iter_mut().enumerate().try_for_each(fill)?;
        } else {
            chunk.iter_mut().enumerate().try_for_each(fill)?;
        }
    }
    Ok(Array1::from(scores))
}

/// Scores row `i` of `a` with row `i` of `b`.
///
/// Either side may hold a single row, which is then compared with every row of the other;
/// otherwise both have the same number of rows. Rows have equal dimension.
pub fn pairwise(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    metric: Metric,
    cancel: &Cancel,
) -> Result<Array1<f32>, ComputeError> {
    let n = a.nrows().max(b.nrows());
    let (single_a, single_b) = (a.nrows() == 1, b.nrows() == 1);
    scores_of(a, b, n, metric, cancel, |i| {
        (if single_a { 0 } else { i }, if single_b { 0 } else { i })
    })
}

/// Scores the given `(row of a, row of b)` index pairs; indices are in range.
pub fn pairs(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    index_pairs: &[[usize; 2]],
    metric: Metric,
    cancel: &Cancel,
) -> Result<Array1<f32>, ComputeError> {
    scores_of(a, b, index_pairs.len(), metric, cancel, |p| {
        let [i, j] = index_pairs[p];
        (i, j)
    })
}

/// Scores every row of `a` with every row of `b` (`None`: of `a` itself): an
/// `a.nrows() × b.nrows()` matrix. Sides are views or [`Operand`]s (rows with their norms).
pub fn matrix<'a, O: Into<Operand<'a>>>(
    a: O,
    b: Option<O>,
    metric: Metric,
    cancel: &Cancel,
) -> Result<Array2<f32>, ComputeError> {
    matrix_splitting_from(a, b, metric, cancel, SPLIT_WORK)
}

/// [`matrix`], cutting work of at least `split_work` multiply-adds into shares per thread.
pub(crate) fn matrix_splitting_from<'a, O: Into<Operand<'a>>>(
    a: O,
    b: Option<O>,
    metric: Metric,
    cancel: &Cancel,
    split_work: usize,
) -> Result<Array2<f32>, ComputeError> {
    let scorer = Scorer::new(metric, a.into(), b.map(Into::into));
    let mut out = Array2::zeros((scorer.rows(), scorer.cols()));
    fill(&scorer, out.as_slice_mut(), cancel, split_work)?;
    Ok(out)
}

/// Scores a dense result holds per block of rows between checks for cancellation, at most.
const DENSE_BLOCK: usize = 1 << 22;

/// Writes every score of `scorer` into `out` (row-major; `None` if the buffer is not).
///
/// [`threads::dense_shares`] decides: one share of rows per thread, each scored by
/// sequential GEMMs, or a block of rows at a time through the product's threading
/// ([`super::gemm`]).
fn fill(
    scorer: &Scorer,
    out: Option<&mut [f32]>,
    cancel: &Cancel,
    split_work: usize,
) -> Result<(), ComputeError> {
    let out = out.ok_or(ComputeError::Internal("a result buffer is not contiguous"))?;
    let (n, m, dim) = (scorer.rows(), scorer.cols(), scorer.dim());
    let work = n.saturating_mul(m).saturating_mul(dim);
    match threads::dense_shares(n, work, split_work) {
        Some(share) => out
            .par_chunks_mut((share * m).max(1))
            .enumerate()
            .try_for_each(|(part, rows)| fill_rows(scorer, part * share, rows, Par::Seq, cancel)),
        None => fill_rows(scorer, 0, out, threads::gemm_par(work), cancel),
    }
}

/// Writes the scores of rows `first..` of `a` into `out`, which holds whole rows, a block
/// of rows at a time.
fn fill_rows(
    scorer: &Scorer,
    first: usize,
    out: &mut [f32],
    par: Par,
    cancel: &Cancel,
) -> Result<(), ComputeError> {
    let m = scorer.cols().max(1);
    let rows_per_block = rows_per_check(m, scorer.dim(), scorer.multiplies());
    let mut start = first;
    for chunk in out.chunks_mut(rows_per_block * m) {
        cancel.check()?;
        let rows = start..start + chunk.len() / m;
        start = rows.end;
        scorer.tile_into(rows, 0..scorer.cols(), par, chunk)?;
    }
    Ok(())
}

/// [`matrix`] for each of the `B` sets of a `B × n × d` and a `B × m × d` tensor
/// (`None`: each set of `a` against itself).
pub fn matrices(
    a: ArrayView3<f32>,
    b: Option<ArrayView3<f32>>,
    metric: Metric,
    cancel: &Cancel,
) -> Result<Array3<f32>, ComputeError> {
    let m = b.as_ref().unwrap_or(&a).len_of(Axis(1));
    let mut out = Array3::zeros((a.len_of(Axis(0)), a.len_of(Axis(1)), m));
    for (s, mut dst) in out.outer_iter_mut().enumerate() {
        let set_b = b.as_ref().map(|b| b.index_axis(Axis(0), s));
        let scorer = Scorer::new(
            metric,
            a.index_axis(Axis(0), s).into(),
            set_b.map(Operand::from),
        );
        fill(&scorer, dst.as_slice_mut(), cancel, SPLIT_WORK).map_err(|err| err.in_set(s))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn the_work_between_checks_for_cancellation_is_bounded_however_long_the_vectors() {
        let threads = rayon::current_num_threads();
        for dim in [1, 7, 768, 3000, 70_000, 2_000_000, 1 << 30] {
            let pairs = pairs_per_check(dim);
            assert!(
                pairs == threads || pairs * dim <= DIRECT_CHECK_WORK,
                "{dim}"
            );
            assert!((threads..=PAIR_CHUNK).contains(&pairs), "{dim}");
            for cols in [1, 1000, 4096, 1 << 20] {
                let rows = rows_per_check(cols, dim, false);
                assert!(
                    rows == 1 || rows * cols * dim <= DIRECT_CHECK_WORK,
                    "{cols} x {dim}"
                );
                // The product is cut by scores alone, never thinner.
                let product = rows_per_check(cols, dim, true);
                assert_eq!(product, (DENSE_BLOCK / cols).max(1), "{cols} x {dim}");
                assert!(rows <= product);
            }
        }
        // The 1000x768 by 1000x768 product is one block.
        assert!(rows_per_check(1000, 768, true) >= 1000);
    }

    #[test]
    fn a_single_row_is_compared_with_every_row_of_the_other_side() {
        let a = array![[1.0f32, 0.0]];
        let b = array![[1.0f32, 0.0], [0.0, 1.0], [-2.0, 0.0]];
        let got = pairwise(a.view(), b.view(), Metric::Cosine, &Cancel::new()).unwrap();
        assert_eq!(got, array![1.0, 0.0, -1.0]);
    }

    #[test]
    fn identical_rows_have_euclidean_distance_exactly_zero() {
        let a = array![[1.0001f32, 2.0, 3.0], [0.1, 0.2, 0.3], [1.0001, 2.0, 3.0]];
        let got = matrix(a.view(), None, Metric::Euclidean, &Cancel::new()).unwrap();
        assert_eq!(got[[0, 0]], 0.0);
        assert_eq!(got[[1, 1]], 0.0);
        assert_eq!(got[[0, 2]], 0.0);
        let other = matrix(a.view(), Some(a.view()), Metric::Euclidean, &Cancel::new()).unwrap();
        assert_eq!(other[[2, 0]], 0.0);
    }

    #[test]
    fn cosine_of_identical_rows_never_exceeds_one() {
        let a = array![[0.1f32, 0.7, 0.3], [3.0, 1e-3, 7.0]];
        let got = matrix(a.view(), Some(a.view()), Metric::Cosine, &Cancel::new()).unwrap();
        assert!(got.iter().all(|v| (-1.0..=1.0).contains(v)));
        assert!((got[[0, 0]] - 1.0).abs() < 1e-6);
        let own = matrix(a.view(), None, Metric::Cosine, &Cancel::new()).unwrap();
        assert_eq!((own[[0, 0]], own[[1, 1]]), (1.0, 1.0));
    }

    #[test]
    fn a_dot_product_that_overflows_f32_is_an_error() {
        let a = array![[1e20f32, 1e20]];
        let got = matrix(a.view(), None, Metric::Dot, &Cancel::new());
        assert_eq!(got, Err(ComputeError::Overflow { at: vec![0, 0] }));
    }

    #[test]
    fn a_dot_product_whose_f32_partial_sums_overflow_is_settled_in_f64() {
        let a = array![[3e38f32, 3e38, 1.0]];
        let b = array![[1e1f32, -1e1, 2.0]];
        let got = matrix(a.view(), Some(b.view()), Metric::Dot, &Cancel::new()).unwrap();
        assert_eq!(got[[0, 0]], 2.0);
    }

    #[test]
    fn an_overflow_in_a_batch_names_its_set() {
        let a = array![[[1.0f32, 1.0]], [[1e20, 1e20]]];
        let got = matrices(a.view(), None, Metric::Dot, &Cancel::new());
        assert_eq!(got, Err(ComputeError::Overflow { at: vec![1, 0, 0] }));
    }

    #[test]
    fn batched_matrices_equal_the_matrix_of_each_set() {
        let a = array![[[1.0f32, 2.0], [3.0, 4.0]], [[-1.0, 0.5], [0.0, 2.0]]];
        let got = matrices(a.view(), None, Metric::Manhattan, &Cancel::new()).unwrap();
        for s in 0..2 {
            let one = matrix(
                a.index_axis(Axis(0), s),
                None,
                Metric::Manhattan,
                &Cancel::new(),
            );
            assert_eq!(got.index_axis(Axis(0), s), one.unwrap());
        }
    }

    #[test]
    fn strided_pairs_score_like_contiguous_rows() {
        let pairs = array![[[1.0f32, 0.0], [0.0, 1.0]], [[1.0, 1.0], [2.0, 2.0]]];
        let got = pairwise(
            pairs.index_axis(Axis(1), 0),
            pairs.index_axis(Axis(1), 1),
            Metric::Cosine,
            &Cancel::new(),
        )
        .unwrap();
        assert_eq!(got, array![0.0, 1.0]);
    }
}
