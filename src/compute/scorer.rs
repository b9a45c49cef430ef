//! [`Scorer`]: the operands of one `a`-against-`b` comparison, prepared once, scored tile by
//! tile.
//!
//! - cosine: one `f32` GEMM of the raw rows, its products scaled by the inverse norms (the
//!   norms a side brings, a table's, or computed now in `f64`) and clamped to `[-1, 1]`: no
//!   side is copied. A request's rows of norms so large that products could overflow `f32`
//!   ([`MAX_RAW_SQUARED`]) are normalised once (in `f64`) and enter the GEMM so;
//! - dot: one `f32` GEMM; entries whose `f32` sums overflowed are settled in `f64`;
//! - euclidean: `‖x‖² + ‖y‖² − 2x·y` with the product in `f64` GEMM (as scikit-learn upcasts),
//!   and pairs so close that the expansion cancels recomputed from their differences, so
//!   identical rows are exactly 0 apart;
//! - manhattan (and euclidean on vectors of a few dimensions): a direct vectorisable kernel.
//!
//! When `a` is compared with itself, each row's score against itself is computed exactly, so
//! a row of norm 1e-6 or more (the floor) has a self-cosine of exactly 1.

use std::borrow::Cow;
use std::ops::Range;

use faer::Par;
use rayon::prelude::*;

use super::gemm::a_bt;
use super::metric::{NORM_FLOOR, narrow};
use super::operand::{Norms, Operand};
use super::reduce::{self, l1, sq_dist};
use super::rows::Rows;
use super::{ComputeError, Metric};

/// How [`Scorer::wide_products`] cuts a product taken in `f64` into sub-blocks.
#[derive(Debug, Clone, Copy)]
struct WideCut {
    /// Values each side of a sub-block may hold once widened.
    values: usize,
    /// Columns of `b` a sub-block takes at most.
    cols: usize,
    /// Dimensions of longer vectors widened at a time, so that their sub-blocks stay wide
    /// enough for the GEMM to run at its rate.
    dims: usize,
}

/// The cut of every product taken in `f64`: 4 MiB a side, sub-blocks of about 256 rows
/// against 256 columns for vectors of over 2,048 dimensions, cut into equal pieces.
const WIDE: WideCut = WideCut {
    values: 1 << 19,
    cols: 1024,
    dims: 2048,
};
const _: () = assert!(WIDE.dims <= WIDE.values && WIDE.cols <= WIDE.values);

/// The steps of a [`WideCut`] for vectors of some dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Steps {
    /// Dimensions widened at a time.
    piece: usize,
    /// Rows of `a` a sub-block takes.
    rows: usize,
    /// Columns of `b` a sub-block takes.
    cols: usize,
}

impl WideCut {
    /// How vectors of `dim` dimensions are cut: into the fewest pieces of at most `dims`
    /// dimensions, of equal lengths (so that none is a sliver), and sub-blocks whose sides
    /// hold at most `values` values of a piece each.
    fn steps(self, dim: usize) -> Steps {
        let pieces = dim.div_ceil(self.dims.max(1)).max(1);
        let piece = dim.div_ceil(pieces).max(1);
        let cols = (self.values / piece).clamp(1, self.cols.max(1));
        let rows = (self.values / piece.max(cols)).max(1);
        Steps { piece, rows, cols }
    }
}

/// `d²` below this share of `‖x‖² + ‖y‖²` is recomputed from the differences: there the
/// expansion's cancellation error would exceed the accuracy contract.
const CANCELLATION: f64 = 1e-9;

/// Dimensions up to which euclidean distances are computed directly: a product this thin
/// gains nothing from GEMM.
const SHORT_VECTORS: usize = 8;

/// Dimensions above which cosine and dot products are computed in `f64`: measured `f32`
/// GEMM error stays under 1e-5 relative up to about 500,000 dimensions.
const F32_PRODUCT_MAX_DIM: usize = 65_536;

fn upcast(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| f64::from(v)).collect()
}

/// Prepared operands.
pub(crate) struct Scorer<'a> {
    metric: Metric,
    /// Raw rows of `a`, for exact fallbacks.
    raw_a: Rows<'a>,
    /// Raw rows of `b`; `None`: `a` against itself.
    raw_b: Option<Rows<'a>>,
    /// What the GEMM consumes: the raw rows, or for cosine a request's rows normalised when
    /// their norms are too large to scale ([`MAX_RAW_SQUARED`]).
    a: Rows<'a>,
    b: Option<Rows<'a>>,
    /// For cosine, the inverse norms of a side that entered the GEMM raw.
    scale_a: Option<Cow<'a, [f32]>>,
    scale_b: Option<Cow<'a, [f32]>>,
    /// `‖row‖²` for euclidean.
    sq_a: Cow<'a, [f64]>,
    sq_b: Option<Cow<'a, [f64]>>,
}

fn normalized(rows: &Rows) -> Rows<'static> {
    let mut data = Vec::with_capacity(rows.len() * rows.dim());
    for row in rows.iter() {
        let scale = 1.0 / reduce::sq_norm(row).sqrt().max(NORM_FLOOR);
        data.extend(row.iter().map(|&v| (f64::from(v) * scale) as f32));
    }
    Rows::owned(data, rows.dim())
}

fn sq_norms(rows: &Rows) -> Vec<f64> {
    rows.iter().map(reduce::sq_norm).collect()
}

/// `‖row‖²` up to which a request's raw rows enter the cosine's GEMM: no product of two such
/// rows, nor a partial sum of one, can overflow `f32` (`|x·y| ≤ ‖x‖‖y‖ ≤ 2¹²⁰`). Larger rows
/// would leave their scores to be settled exactly, so they are normalised first. (A table's
/// rows enter raw whatever their norms; products they overflow are settled exactly.)
/// Small rows need no bound: products that underflow `f32` lose at most `d·2⁻¹⁴⁹`, nothing
/// next to the cosine's floor of `1e-6` on each norm.
const MAX_RAW_SQUARED: f64 = (1u128 << 120) as f64;

/// What the GEMM consumes of one side for cosine: its raw rows, and the inverse norms that
/// scale their scores (`norms` brought along, or computed now); or, for a request's rows with
/// a squared norm over [`MAX_RAW_SQUARED`], its normalised rows.
fn cosine_side<'a>(raw: &Rows<'a>, norms: Option<&'a Norms>) -> (Rows<'a>, Option<Cow<'a, [f32]>>) {
    if let Some(norms) = norms {
        return (raw.clone(), Some(Cow::Borrowed(norms.inverse())));
    }
    let squared = sq_norms(raw);
    if squared.iter().all(|&sq| sq <= MAX_RAW_SQUARED) {
        let inverse = Norms::from_squared(squared).into_inverse();
        (raw.clone(), Some(Cow::Owned(inverse)))
    } else {
        (normalized(raw), None)
    }
}

/// `‖row‖²` of one side: brought along, or computed now.
fn squares<'a>(raw: &Rows, norms: Option<&'a Norms>) -> Cow<'a, [f64]> {
    match norms {
        Some(norms) => Cow::Borrowed(norms.squared()),
        None => Cow::Owned(sq_norms(raw)),
    }
}

impl<'a> Scorer<'a> {
    /// Prepares `a` against `b` (`None`: against itself); rows have equal dimension.
    pub(crate) fn new(metric: Metric, a: Operand<'a>, b: Option<Operand<'a>>) -> Self {
        let raw_a = Rows::new(a.rows);
        let raw_b = b.map(|b| Rows::new(b.rows));
        let b_norms = b.and_then(|b| b.norms);
        let (gemm_a, gemm_b, scale_a, scale_b) = match metric {
            Metric::Cosine => {
                let (gemm_a, scale_a) = cosine_side(&raw_a, a.norms);
                match &raw_b {
                    Some(raw_b) => {
                        let (gemm_b, scale_b) = cosine_side(raw_b, b_norms);
                        (gemm_a, Some(gemm_b), scale_a, scale_b)
                    }
                    None => (gemm_a, None, scale_a.clone(), scale_a),
                }
            }
            _ => (raw_a.clone(), raw_b.clone(), None, None),
        };
        let (sq_a, sq_b) = match metric {
            Metric::Euclidean => (
                squares(&raw_a, a.norms),
                raw_b.as_ref().map(|raw_b| squares(raw_b, b_norms)),
            ),
            _ => (Cow::Borrowed(&[][..]), None),
        };
        Scorer {
            metric,
            raw_a,
            raw_b,
            a: gemm_a,
            b: gemm_b,
            scale_a,
            scale_b,
            sq_a,
            sq_b,
        }
    }

    /// Rows of `a`.
    pub(crate) fn rows(&self) -> usize {
        self.raw_a.len()
    }

    /// Rows of `b`.
    pub(crate) fn cols(&self) -> usize {
        self.raw_b.as_ref().unwrap_or(&self.raw_a).len()
    }

    /// The vectors' dimension.
    pub(crate) fn dim(&self) -> usize {
        self.raw_a.dim()
    }

    /// Whether scores come from the matrix product (else pair by pair).
    pub(crate) fn multiplies(&self) -> bool {
        match self.metric {
            Metric::Cosine | Metric::Dot => true,
            Metric::Euclidean => self.dim() > SHORT_VECTORS,
            Metric::Manhattan => false,
        }
    }

    fn raw_b(&self) -> &Rows<'a> {
        self.raw_b.as_ref().unwrap_or(&self.raw_a)
    }

    fn gemm_b(&self) -> &Rows<'a> {
        self.b.as_ref().unwrap_or(&self.a)
    }

    /// Scores rows `rows` of `a` against rows `cols` of `b` into `out`, which holds
    /// `rows.len() × cols.len()` values, row-major.
    pub(crate) fn tile_into(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        par: Par,
        out: &mut [f32],
    ) -> Result<(), ComputeError> {
        let (r0, c0) = (rows.start, cols.start);
        let width = cols.len();
        if out.len() != rows.len() * width {
            return Err(ComputeError::Internal("a tile buffer of the wrong size"));
        }
        match self.metric {
            Metric::Cosine => {
                self.product(rows.clone(), cols.clone(), out, par)?;
                self.scale_and_clamp(rows.clone(), cols.clone(), out);
            }
            Metric::Dot => {
                self.product(rows.clone(), cols.clone(), out, par)?;
                for (at, v) in out.iter_mut().enumerate() {
                    if !v.is_finite() {
                        let (i, j) = (r0 + at / width, c0 + at % width);
                        *v = narrow(reduce::dot(self.raw_a.row(i), self.raw_b().row(j)), &[i, j])?;
                    }
                }
            }
            Metric::Euclidean if self.dim() > SHORT_VECTORS => {
                self.euclidean(rows.clone(), cols.clone(), out, par)?
            }
            Metric::Euclidean | Metric::Manhattan => {
                let (a, b) = (&self.raw_a, self.raw_b());
                let direct = |x: &[f32], y: &[f32]| match self.metric {
                    Metric::Euclidean => sq_dist(x, y).sqrt(),
                    _ => l1(x, y),
                };
                let fill = |(offset, out_row): (usize, &mut [f32])| {
                    let i = r0 + offset;
                    for (j, v) in cols.clone().zip(out_row.iter_mut()) {
                        *v = narrow(direct(a.row(i), b.row(j)), &[i, j])?;
                    }
                    Ok(())
                };
                match par {
                    Par::Seq => out
                        .chunks_mut(width.max(1))
                        .enumerate()
                        .try_for_each(fill)?,
                    _ => out
                        .par_chunks_mut(width.max(1))
                        .enumerate()
                        .try_for_each(fill)?,
                }
            }
        }
        if self.b.is_none() {
            // Each row against itself, exactly.
            for i in rows.start.max(cols.start)..rows.end.min(cols.end) {
                let x = self.raw_a.row(i);
                out[(i - r0) * width + (i - c0)] =
                    narrow(reduce::score(self.metric, x, x), &[i, i])?;
            }
        }
        Ok(())
    }

    /// Scales products of raw rows into cosines by the sides' inverse norms (in `f32`: two
    /// roundings, far inside the accuracy contract) and clamps them to `[-1, 1]`, in one pass.
    /// A product too large for `f32` (a table's raw rows of huge values, against any rows,
    /// make one) is marked NaN there and settled exactly after.
    fn scale_and_clamp(&self, rows: Range<usize>, cols: Range<usize>, out: &mut [f32]) {
        let width = cols.len().max(1);
        let col_scales = self.scale_b.as_ref().and_then(|s| s.get(cols.clone()));
        for (offset, out_row) in out.chunks_mut(width).enumerate() {
            let i = rows.start + offset;
            let row_scale = self.scale_a.as_ref().map_or(1.0, |s| s[i]);
            if !scale_row(out_row, col_scales, row_scale) {
                let x = self.raw_a.row(i);
                for (j, v) in cols.clone().zip(out_row.iter_mut()) {
                    if v.is_nan() {
                        *v = reduce::score(Metric::Cosine, x, self.raw_b().row(j)) as f32;
                    }
                }
            }
        }
    }

    /// `out = a[rows] · b[cols]ᵀ` on the prepared rows: in `f32`, or for very long vectors
    /// (where `f32` sums drift past the accuracy contract) in `f64`, a sub-block at a time.
    fn product(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        out: &mut [f32],
        par: Par,
    ) -> Result<(), ComputeError> {
        let dim = self.dim();
        if dim <= F32_PRODUCT_MAX_DIM {
            let (a, b) = (self.a.block(rows), self.gemm_b().block(cols));
            a_bt(a, b, dim, out, par);
            return Ok(());
        }
        let (a, b) = (&self.a, self.gemm_b());
        Self::wide_products(a, b, rows, cols, par, WIDE, out, |_, _, dots, out_row| {
            out_row
                .iter_mut()
                .zip(dots)
                .for_each(|(v, &w)| *v = w as f32);
            Ok(())
        })
    }

    /// Euclidean distances of `rows` against `cols` into `out`, from products taken in `f64`
    /// ([`Self::wide_products`]).
    fn euclidean(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        out: &mut [f32],
        par: Par,
    ) -> Result<(), ComputeError> {
        let sq_b = self.sq_b.as_ref().unwrap_or(&self.sq_a);
        let (sq_a, sq_b): (&[f64], &[f64]) = (&self.sq_a, sq_b);
        let (raw_a, raw_b) = (&self.raw_a, self.raw_b());
        Self::wide_products(
            raw_a,
            raw_b,
            rows,
            cols,
            par,
            WIDE,
            out,
            |i, sub_cols, dots, out_row| {
                for ((j, v), &dot) in sub_cols.zip(out_row).zip(dots) {
                    let scale = sq_a[i] + sq_b[j];
                    let mut d2 = scale - 2.0 * dot;
                    if d2 <= CANCELLATION * scale {
                        d2 = sq_dist(raw_a.row(i), raw_b.row(j));
                    }
                    *v = narrow(d2.max(0.0).sqrt(), &[i, j])?;
                }
                Ok(())
            },
        )
    }

    /// `a[rows] · b[cols]ᵀ` in `f64`, a sub-block at a time as `cut` says: both sides of a
    /// sub-block are widened to `f64` there, at most `cut.dims` dimensions at a time (longer
    /// vectors' products are summed over their pieces), so each side's scratch holds at most
    /// `cut.values` values however many rows and dimensions there are: a table's rows, which
    /// the job's memory estimate does not count as the request's, are never widened whole.
    /// `each` takes every row of a sub-block's products: the row, the sub-block's columns,
    /// the products, and their place in `out` (which holds `rows.len() × cols.len()` values,
    /// row-major).
    #[allow(clippy::too_many_arguments)]
    fn wide_products(
        a: &Rows,
        b: &Rows,
        rows: Range<usize>,
        cols: Range<usize>,
        par: Par,
        cut: WideCut,
        out: &mut [f32],
        mut each: impl FnMut(usize, Range<usize>, &[f64], &mut [f32]) -> Result<(), ComputeError>,
    ) -> Result<(), ComputeError> {
        let width = cols.len();
        let dim = a.dim();
        let Steps {
            piece,
            rows: row_step,
            cols: col_step,
        } = cut.steps(dim);
        let (mut dots, mut part) = (Vec::new(), Vec::new());
        for c0 in cols.clone().step_by(col_step) {
            let sub_cols = c0..(c0 + col_step).min(cols.end);
            // Vectors in one piece: `b`'s sub-block is widened once for all the rows.
            let whole_b = (piece >= dim).then(|| upcast(b.block(sub_cols.clone())));
            for r0 in rows.clone().step_by(row_step) {
                let sub_rows = r0..(r0 + row_step).min(rows.end);
                dots.clear();
                dots.resize(sub_rows.len() * sub_cols.len(), 0.0f64);
                for d0 in (0..dim).step_by(piece) {
                    let dims = d0..(d0 + piece).min(dim);
                    let wide_a = widen(a, sub_rows.clone(), dims.clone());
                    let wide_b = match &whole_b {
                        Some(wide_b) => Cow::Borrowed(&wide_b[..]),
                        None => Cow::Owned(widen(b, sub_cols.clone(), dims.clone())),
                    };
                    if d0 == 0 {
                        a_bt(&wide_a, &wide_b, dims.len(), &mut dots, par);
                    } else {
                        part.clear();
                        part.resize(dots.len(), 0.0f64);
                        a_bt(&wide_a, &wide_b, dims.len(), &mut part, par);
                        dots.iter_mut().zip(&part).for_each(|(sum, p)| *sum += p);
                    }
                }
                for (i, dot_row) in sub_rows.zip(dots.chunks_exact(sub_cols.len())) {
                    let at = (i - rows.start) * width + (sub_cols.start - cols.start);
                    let out_row = &mut out[at..at + sub_cols.len()];
                    each(i, sub_cols.clone(), dot_row, out_row)?;
                }
            }
        }
        Ok(())
    }
}

/// Dimensions `dims` of the rows `rows` of `side`, widened to `f64`, row after row.
fn widen(side: &Rows, rows: Range<usize>, dims: Range<usize>) -> Vec<f64> {
    if dims.len() == side.dim() {
        return upcast(side.block(rows));
    }
    let mut wide = Vec::with_capacity(rows.len() * dims.len());
    for i in rows {
        wide.extend(side.row(i)[dims.clone()].iter().map(|&v| f64::from(v)));
    }
    wide
}

/// One row of [`Scorer::scale_and_clamp`]: each score times `row_scale` and its column's
/// scale (if any), clamped to `[-1, 1]`, or NaN where that is not finite; `false` if any
/// score came out NaN.
///
/// Compiled again for the processor's widest vectors where it has them (AVX-512, else AVX2;
/// x86-64's baseline is SSE2's four lanes): every score of a top-k or threshold selection's
/// tiles passes here, and on an AMD EPYC with AVX-512 the baseline loop was 20% of the CPU
/// of the user-item request of `bench/run.py` (BENCHMARKS.md).
fn scale_row(out_row: &mut [f32], col_scales: Option<&[f32]>, row_scale: f32) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the processor has AVX-512F, just checked.
            #[allow(unsafe_code)]
            return unsafe { scale_row_avx512(out_row, col_scales, row_scale) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2, just checked.
            #[allow(unsafe_code)]
            return unsafe { scale_row_avx2(out_row, col_scales, row_scale) };
        }
    }
    scale_row_here(out_row, col_scales, row_scale)
}

/// [`scale_row`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn scale_row_avx512(out_row: &mut [f32], col_scales: Option<&[f32]>, row_scale: f32) -> bool {
    scale_row_here(out_row, col_scales, row_scale)
}

/// [`scale_row`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn scale_row_avx2(out_row: &mut [f32], col_scales: Option<&[f32]>, row_scale: f32) -> bool {
    scale_row_here(out_row, col_scales, row_scale)
}

/// [`scale_row`]'s loop, compiled for whatever the function it is inlined into targets.
#[inline(always)]
fn scale_row_here(out_row: &mut [f32], col_scales: Option<&[f32]>, row_scale: f32) -> bool {
    let settle = |scaled: f32| {
        if scaled.is_finite() {
            scaled.clamp(-1.0, 1.0)
        } else {
            f32::NAN
        }
    };
    // Without an early exit, so that the loop vectorises.
    match col_scales {
        Some(col_scales) => out_row
            .iter_mut()
            .zip(col_scales)
            .fold(true, |ok, (v, &s)| {
                *v = settle(*v * (row_scale * s));
                ok & !v.is_nan()
            }),
        None => out_row.iter_mut().fold(true, |ok, v| {
            *v = settle(*v * row_scale);
            ok & !v.is_nan()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn request_rows_enter_the_cosine_raw_unless_their_norms_are_huge() {
        let fine = array![[3.0f32, 4.0], [0.0, 0.0], [1e-30, 0.0], [1e17, 1e17]];
        for huge in [1e19f32, 1e30] {
            let odd = array![[3.0f32, 4.0], [huge, 0.0]];
            let scorer = Scorer::new(Metric::Cosine, fine.view().into(), Some(odd.view().into()));
            let inverse = Norms::of(fine.view()).into_inverse();
            assert_eq!(scorer.scale_a.as_deref(), Some(&inverse[..]));
            assert!(scorer.scale_b.is_none(), "{huge}: normalised");
            assert_eq!(scorer.gemm_b().row(0), &[0.6, 0.8]);
        }
    }

    /// `f64` products of `a`'s rows with `b`'s, summed in order.
    fn exact_dots(a: ndarray::ArrayView1<f32>, b: ndarray::ArrayView1<f32>) -> [f64; 4] {
        let (mut xy, mut xx, mut yy, mut d2) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for (&p, &q) in a.iter().zip(b) {
            let (p, q) = (f64::from(p), f64::from(q));
            (xy, xx, yy, d2) = (xy + p * q, xx + p * p, yy + q * q, d2 + (p - q) * (p - q));
        }
        [xy, xx, yy, d2]
    }

    fn spread_values(rows: usize, dim: usize, seed: usize) -> ndarray::Array2<f32> {
        ndarray::Array2::from_shape_fn((rows, dim), |(i, k)| {
            ((i * 7_919 + k * 104_729 + seed) % 1_009) as f32 / 1_009.0 - 0.5
        })
    }

    #[test]
    fn products_of_very_long_vectors_are_taken_in_f64_summed_over_pieces_of_their_dimensions() {
        // 70,000 dimensions: 35 pieces of 2,000.
        let dim = F32_PRODUCT_MAX_DIM + 4_464;
        assert_eq!(WIDE.steps(dim).piece, 2_000);
        let (a, b) = (spread_values(12, dim, 1), spread_values(20, dim, 2));
        let (rows, cols) = (2..11, 5..18);
        for metric in [Metric::Cosine, Metric::Dot, Metric::Euclidean] {
            let scorer = Scorer::new(metric, a.view().into(), Some(b.view().into()));
            let mut out = vec![f32::NAN; rows.len() * cols.len()];
            scorer
                .tile_into(rows.clone(), cols.clone(), Par::Seq, &mut out)
                .unwrap();
            for (at, &got) in out.iter().enumerate() {
                let (i, j) = (rows.start + at / cols.len(), cols.start + at % cols.len());
                let [xy, xx, yy, d2] = exact_dots(a.row(i), b.row(j));
                let want = match metric {
                    Metric::Cosine => xy / (xx.sqrt() * yy.sqrt()),
                    Metric::Dot => xy,
                    _ => d2.sqrt(),
                };
                let error = (f64::from(got) - want).abs() / want.abs().max(1.0);
                assert!(error < 1e-6, "{metric:?} [{i}][{j}]: {got} against {want}");
            }
        }
    }

    #[test]
    fn wide_products_cut_into_sub_blocks_and_pieces_give_every_product_once() {
        // 30 values a side and pieces of at most 4 dimensions: sub-blocks of 7 rows against
        // 3 columns, so the ranges cross row and column borders; 3 dimensions make one piece
        // (`b` widened once a column block), 8 two whole pieces, 10 three pieces (4, 4, 2).
        let cut = WideCut {
            values: 30,
            cols: 3,
            dims: 4,
        };
        for dim in [3, 8, 10] {
            let (a, b) = (spread_values(20, dim, 3), spread_values(16, dim, 4));
            let (rows, cols) = (1..19, 2..15);
            let mut out = vec![0.0f32; rows.len() * cols.len()];
            Scorer::wide_products(
                &Rows::new(a.view()),
                &Rows::new(b.view()),
                rows.clone(),
                cols.clone(),
                Par::Seq,
                cut,
                &mut out,
                |i, sub_cols, dots, out_row| {
                    assert!(sub_cols.len() <= 3, "{sub_cols:?}");
                    for ((j, &dot), seen) in sub_cols.zip(dots).zip(out_row) {
                        let want = exact_dots(a.row(i), b.row(j))[0];
                        assert!(
                            (dot - want).abs() < 1e-12,
                            "{dim}: [{i}][{j}]: {dot} against {want}"
                        );
                        // Each place is given once, to the product of its own row and column.
                        *seen += (1 + i * 100 + j) as f32;
                    }
                    Ok(())
                },
            )
            .unwrap();
            for (at, &seen) in out.iter().enumerate() {
                let (i, j) = (rows.start + at / cols.len(), cols.start + at % cols.len());
                assert_eq!(seen, (1 + i * 100 + j) as f32, "{dim}: [{i}][{j}]");
            }
        }
    }

    #[test]
    fn wide_sub_blocks_hold_at_most_their_budget_and_short_vectors_are_cut_as_before() {
        for dim in [
            0, 1, 8, 9, 511, 512, 768, 2_048, 2_049, 4_096, 70_000, 600_000,
        ] {
            let Steps { piece, rows, cols } = WIDE.steps(dim);
            assert!(
                piece <= WIDE.dims && rows * piece <= WIDE.values && cols * piece <= WIDE.values,
                "{dim}"
            );
            assert!(cols <= WIDE.cols && rows >= 1 && cols >= 1, "{dim}");
            // Pieces are equal but for rounding, so the last is no sliver.
            assert!(
                dim == 0 || piece * dim.div_ceil(piece) - dim < dim.div_ceil(piece),
                "{dim}"
            );
            if (1..=WIDE.dims).contains(&dim) {
                // One piece: the steps euclidean took before vectors were cut into pieces.
                let old_cols = (WIDE.values / dim).clamp(1, WIDE.cols);
                let old_rows = (WIDE.values / dim.max(old_cols)).max(1);
                assert_eq!((piece, rows, cols), (dim, old_rows, old_cols), "{dim}");
            } else if dim > WIDE.dims {
                assert!(rows >= 256 && cols >= 256, "{dim}: {rows} x {cols}");
            }
        }
        assert_eq!(WIDE.steps(2_049).piece, 1_025);
    }

    #[test]
    fn raw_products_too_large_for_f32_are_settled_exactly() {
        // A table brings its norms, so its raw rows enter the GEMM whatever their size.
        let rows = array![[1e30f32, 1e30], [1e30, -1e30]];
        let norms = Norms::of(rows.view());
        let side = Operand::with_norms(rows.view(), &norms).unwrap();
        let scorer = Scorer::new(Metric::Cosine, side, Some(side));
        let mut out = [0.0f32; 4];
        scorer.tile_into(0..2, 0..2, Par::Seq, &mut out).unwrap();
        assert_eq!(out, [1.0, 0.0, 0.0, 1.0]);
        // Against a request's rows only the products that overflowed are settled exactly.
        let request = array![[1e10f32, 1e10], [3.0, 4.0]];
        let scorer = Scorer::new(Metric::Cosine, side, Some(request.view().into()));
        let mut out = [0.0f32; 4];
        scorer.tile_into(0..2, 0..2, Par::Seq, &mut out).unwrap();
        let want = [
            1.0,
            7.0 / (2f32.sqrt() * 5.0),
            0.0,
            -1.0 / (2f32.sqrt() * 5.0),
        ];
        for (got, want) in out.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn scores_scale_and_clamp_alike_whatever_vectors_the_processor_has() {
        // Every length to 300, so that each variant's vector loops (unrolled, 4 to 16 lanes
        // a step) run whole steps and remainders; rows of finite scores in and outside
        // [-1, 1] and ±0, and rows that also hold scores that come out NaN (huge ones whose
        // scaled value overflows, NaN, infinities).
        /// A variant of [`scale_row`], callable where the processor has its features.
        #[cfg(target_arch = "x86_64")]
        type Variant = unsafe fn(&mut [f32], Option<&[f32]>, f32) -> bool;
        #[cfg(target_arch = "x86_64")]
        let variants: [(&str, bool, Variant); 2] = [
            (
                "avx2",
                std::arch::is_x86_feature_detected!("avx2"),
                scale_row_avx2,
            ),
            (
                "avx512",
                std::arch::is_x86_feature_detected!("avx512f"),
                scale_row_avx512,
            ),
        ];
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for len in 0..=300 {
            for with_odd in [false, true] {
                let row: Vec<f32> = (0..len)
                    .map(|j| match j % 9 {
                        0 if with_odd && j % 2 == 0 => 3.0e38,
                        1 if with_odd => f32::NAN,
                        2 if with_odd => f32::NEG_INFINITY,
                        3 => -0.0,
                        _ => (j as f32 % 37.0 - 18.0) * 0.37,
                    })
                    .collect();
                let col_scales: Vec<f32> =
                    (0..len).map(|j| 0.05 + (j % 41) as f32 * 0.11).collect();
                for (row_scale, cols) in [(0.7, Some(&col_scales[..])), (12.5, None)] {
                    let mut want = row.clone();
                    let want_finite = scale_row_here(&mut want, cols, row_scale);
                    // A NaN score from the second on; none without the odd ones.
                    if !with_odd || len >= 2 {
                        assert_eq!(want_finite, !with_odd, "len {len}");
                    }
                    let mut got = row.clone();
                    assert_eq!(scale_row(&mut got, cols, row_scale), want_finite);
                    assert_eq!(bits(&got), bits(&want), "dispatched, len {len}");
                    #[cfg(target_arch = "x86_64")]
                    for (name, has, variant) in variants {
                        if has {
                            let mut got = row.clone();
                            // SAFETY: the processor has the variant's features, just checked.
                            #[allow(unsafe_code)]
                            let finite = unsafe { variant(&mut got, cols, row_scale) };
                            assert_eq!(finite, want_finite, "{name}, len {len}");
                            assert_eq!(bits(&got), bits(&want), "{name}, len {len}");
                        }
                    }
                }
            }
        }
    }
}
