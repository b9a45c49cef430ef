//! [`Operand`]: one side of a comparison, as rows and, for rows kept on the server, the
//! [`Norms`] computed once when they were loaded.
//!
//! Cosine scores are products of raw rows scaled by their inverse norms, so that no
//! normalised copy of a side is made. A request's own rows get their norms as the scorer
//! prepares them; a table of a million rows brings the norms computed when it was loaded,
//! as a pass over it per request would cost as much as the product.

use ndarray::ArrayView2;

use super::metric::NORM_FLOOR;
use super::reduce;

/// Per-row norms of a matrix, computed once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Norms {
    /// `‖row‖²`, summed in `f64` (euclidean distances).
    squared: Vec<f64>,
    /// `1 / max(‖row‖, 1e-6)`: the cosine's scale.
    inverse: Vec<f32>,
}

impl Norms {
    /// The norms of every row of `rows`.
    pub fn of(rows: ArrayView2<f32>) -> Self {
        Norms::from_squared(
            rows.rows()
                .into_iter()
                .map(|row| match row.as_slice() {
                    Some(slice) => reduce::sq_norm(slice),
                    None => reduce::sq_norm(&row.to_vec()),
                })
                .collect(),
        )
    }

    /// The norms whose squares are `squared`.
    pub(crate) fn from_squared(squared: Vec<f64>) -> Self {
        let inverse = squared
            .iter()
            .map(|&sq| (1.0 / sq.sqrt().max(NORM_FLOOR)) as f32)
            .collect();
        Norms { squared, inverse }
    }

    /// `‖row‖²` of every row.
    pub fn squared(&self) -> &[f64] {
        &self.squared
    }

    /// `1 / max(‖row‖, 1e-6)` of every row.
    pub fn inverse(&self) -> &[f32] {
        &self.inverse
    }

    /// The inverse norms, owned.
    pub(crate) fn into_inverse(self) -> Vec<f32> {
        self.inverse
    }

    /// Bytes the norms take.
    pub fn bytes(&self) -> usize {
        self.squared.len() * 8 + self.inverse.len() * 4
    }
}

/// One side of a comparison: `rows` (one vector per row), with their [`Norms`] when they
/// were computed beforehand (for exactly these rows).
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    /// The vectors.
    pub rows: ArrayView2<'a, f32>,
    /// Their norms, row for row, if known.
    pub norms: Option<&'a Norms>,
}

impl<'a> Operand<'a> {
    /// Rows with norms computed beforehand; `None` if `norms` do not have one per row.
    pub fn with_norms(rows: ArrayView2<'a, f32>, norms: &'a Norms) -> Option<Self> {
        (norms.squared.len() == rows.nrows()).then_some(Operand {
            rows,
            norms: Some(norms),
        })
    }
}

impl<'a> From<ArrayView2<'a, f32>> for Operand<'a> {
    fn from(rows: ArrayView2<'a, f32>) -> Self {
        Operand { rows, norms: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn norms_hold_squares_and_the_floored_inverse() {
        let rows = array![[3.0f32, 4.0], [0.0, 0.0]];
        let norms = Norms::of(rows.view());
        assert_eq!(norms.squared(), &[25.0, 0.0]);
        assert_eq!(norms.inverse(), &[0.2, 1e6]);
        assert!(Operand::with_norms(rows.view(), &norms).is_some());
        assert!(Operand::with_norms(rows.slice(ndarray::s![..1, ..]), &norms).is_none());
    }
}
