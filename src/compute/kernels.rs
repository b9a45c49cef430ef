//! Scoring kernels shared by the dense, pairwise and neighbour paths.
//!
//! Two families:
//! - [`score_pair`] scores one pair of rows with `f64` accumulation; it is exact enough to be
//!   the reference the other paths fall back to.
//! - [`Prepared`] scores a block of rows of `a` against all rows of `b`, through a matrix
//!   product for cosine (on rows normalised once) and dot, and direct differences for the
//!   distances, so identical rows are exactly 0 apart.

use std::ops::Range;

use ndarray::{Array2, ArrayView1, ArrayView2, CowArray, Ix2, Zip};

use super::{ComputeError, Metric};

/// Keras' `l2_normalize` divides by `sqrt(max(Σx², 1e-12))`, i.e. by `max(‖x‖, 1e-6)`.
const NORM_FLOOR: f64 = 1e-6;

/// `‖x‖₂` with `f64` accumulation, so neither huge nor tiny values over- or underflow.
fn norm(x: ArrayView1<f32>) -> f64 {
    x.iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

fn dot(x: ArrayView1<f32>, y: ArrayView1<f32>) -> f64 {
    Zip::from(x)
        .and(y)
        .fold(0.0, |acc, &p, &q| acc + f64::from(p) * f64::from(q))
}

/// Scores one pair of rows with `f64` accumulation.
pub(crate) fn score_pair(metric: Metric, x: ArrayView1<f32>, y: ArrayView1<f32>) -> f64 {
    match metric {
        Metric::Cosine => {
            let scale = norm(x).max(NORM_FLOOR) * norm(y).max(NORM_FLOOR);
            (dot(x, y) / scale).clamp(-1.0, 1.0)
        }
        Metric::Dot => dot(x, y),
        Metric::Euclidean => Zip::from(x)
            .and(y)
            .fold(0.0, |acc, &p, &q| {
                let d = f64::from(p) - f64::from(q);
                acc + d * d
            })
            .sqrt(),
        Metric::Manhattan => Zip::from(x)
            .and(y)
            .fold(0.0, |acc, &p, &q| acc + (f64::from(p) - f64::from(q)).abs()),
    }
}

/// Narrows an `f64` score to `f32`, reporting overflow at `(row, col)`.
pub(crate) fn narrow(score: f64, row: usize, col: usize) -> Result<f32, ComputeError> {
    let narrowed = score as f32;
    if narrowed.is_finite() {
        Ok(narrowed)
    } else {
        Err(ComputeError::Overflow { row, col })
    }
}

/// Rows scaled by `1 / max(‖x‖, 1e-6)`, computed in `f64`.
fn normalized(x: ArrayView2<f32>) -> Array2<f32> {
    let mut out = x.to_owned();
    for mut row in out.rows_mut() {
        let scale = 1.0 / norm(row.view()).max(NORM_FLOOR);
        row.mapv_inplace(|v| (f64::from(v) * scale) as f32);
    }
    out
}

/// The operands of one `a`-against-`b` comparison, prepared once for the metric.
pub(crate) struct Prepared<'a> {
    metric: Metric,
    a: CowArray<'a, f32, Ix2>,
    /// `None`: `a` against itself.
    b: Option<CowArray<'a, f32, Ix2>>,
    /// The raw rows of `a`, for scoring a row against itself exactly.
    raw: ArrayView2<'a, f32>,
}

impl<'a> Prepared<'a> {
    /// Prepares `a` and `b` (rows are vectors of equal dimension; `None`: `a` against
    /// itself) for `metric`.
    pub(crate) fn new(
        metric: Metric,
        a: ArrayView2<'a, f32>,
        b: Option<ArrayView2<'a, f32>>,
    ) -> Self {
        let prepare = |x: ArrayView2<'a, f32>| -> CowArray<'a, f32, Ix2> {
            match metric {
                Metric::Cosine => normalized(x).into(),
                _ => x.into(),
            }
        };
        Prepared {
            metric,
            a: prepare(a),
            b: b.map(prepare),
            raw: a,
        }
    }

    /// Number of rows of `a`.
    pub(crate) fn rows(&self) -> usize {
        self.a.nrows()
    }

    /// Number of rows of `b`.
    pub(crate) fn cols(&self) -> usize {
        self.b.as_ref().unwrap_or(&self.a).nrows()
    }

    /// Scores rows `rows` of `a` against every row of `b`: a `rows.len() × cols` block.
    ///
    /// When `a` is compared with itself, each row's score against itself is computed in
    /// `f64`, so a non-zero row's self-cosine is exactly 1 and its self-distance exactly 0.
    pub(crate) fn block(&self, rows: Range<usize>) -> Result<Array2<f32>, ComputeError> {
        let first = rows.start;
        let mut out = self.cross(rows.clone())?;
        if self.b.is_none() {
            for i in rows {
                let x = self.raw.row(i);
                out[[i - first, i]] = narrow(score_pair(self.metric, x, x), i, i)?;
            }
        }
        Ok(out)
    }

    fn cross(&self, rows: Range<usize>) -> Result<Array2<f32>, ComputeError> {
        let first = rows.start;
        let a = self.a.slice(ndarray::s![rows, ..]);
        let b = self.b.as_ref().unwrap_or(&self.a).view();
        match self.metric {
            Metric::Cosine => {
                let mut out = a.dot(&b.t());
                out.mapv_inplace(|v| v.clamp(-1.0, 1.0));
                Ok(out)
            }
            Metric::Dot => {
                let mut out = a.dot(&b.t());
                // f32 accumulation can overflow where the true value still fits, or where
                // it does not: settle every non-finite entry in f64.
                for ((i, j), v) in out.indexed_iter_mut() {
                    if !v.is_finite() {
                        *v = narrow(dot(a.row(i), b.row(j)), first + i, j)?;
                    }
                }
                Ok(out)
            }
            Metric::Euclidean | Metric::Manhattan => {
                let mut out = Array2::zeros((a.nrows(), b.nrows()));
                for (i, x) in a.rows().into_iter().enumerate() {
                    for (j, y) in b.rows().into_iter().enumerate() {
                        out[[i, j]] = narrow(score_pair(self.metric, x, y), first + i, j)?;
                    }
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn a_zero_vector_has_cosine_zero_with_everything() {
        let x = array![0.0f32, 0.0, 0.0];
        let y = array![1.0f32, 2.0, 3.0];
        assert_eq!(score_pair(Metric::Cosine, x.view(), y.view()), 0.0);
        assert_eq!(score_pair(Metric::Cosine, x.view(), x.view()), 0.0);
    }

    #[test]
    fn norms_of_huge_and_tiny_values_neither_overflow_nor_underflow() {
        let huge = array![3e38f32, 3e38];
        assert!((norm(huge.view()) - 3e38 * 2f64.sqrt()).abs() < 1e32);
        let tiny = array![1e-30f32, 1e-30];
        assert!(norm(tiny.view()) > 0.0);
    }

    #[test]
    fn overflowing_scores_are_reported_not_returned() {
        assert_eq!(
            narrow(1e39, 2, 3),
            Err(ComputeError::Overflow { row: 2, col: 3 })
        );
        assert_eq!(narrow(-1.5, 0, 0), Ok(-1.5));
    }
}
