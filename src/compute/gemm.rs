//! `a · bᵀ` through faer's GEMM, for row-major operands held as slices.
//!
//! Rows of `a` and `b` are vectors, so `a · bᵀ` scores every row of `a` against every row of
//! `b`. How many threads a product uses is the caller's `par`, from [`super::threads`].

use faer::traits::ComplexField;
use faer::{Accum, MatMut, MatRef, Par};

/// `out = a · bᵀ`: `a` holds `n` rows and `b` holds `m` rows of `dim` values, `out` is
/// `n × m`; all row-major.
pub(crate) fn a_bt<T: ComplexField + Copy>(a: &[T], b: &[T], dim: usize, out: &mut [T], par: Par) {
    let (n, m) = (a.len() / dim.max(1), b.len() / dim.max(1));
    debug_assert_eq!(out.len(), n * m);
    let lhs = MatRef::from_row_major_slice(a, n, dim);
    let rhs = MatRef::from_row_major_slice(b, m, dim);
    let dst = MatMut::from_row_major_slice_mut(out, n, m);
    faer::linalg::matmul::matmul(
        dst,
        Accum::Replace,
        lhs,
        rhs.transpose(),
        T::one_impl(),
        par,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_times_b_transposed_scores_rows_against_rows() {
        let a = [1.0f32, 2.0, 3.0, 4.0]; // rows (1, 2), (3, 4)
        let b = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]; // rows (1, 0), (0, 1), (1, 1)
        let mut out = [0.0f32; 6];
        a_bt(&a, &b, 2, &mut out, Par::Seq);
        assert_eq!(out, [1.0, 2.0, 3.0, 3.0, 4.0, 7.0]);
        let mut par = [0.0f32; 6];
        a_bt(&a, &b, 2, &mut par, Par::rayon(2));
        assert_eq!(par, out);
    }
}
