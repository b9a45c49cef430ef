//! `a · bᵀ` through faer's GEMM, for row-major operands held as slices.
//!
//! Rows of `a` and `b` are vectors, so `a · bᵀ` scores every row of `a` against every row of
//! `b`. Products smaller than [`PARALLEL_WORK`] run on the calling thread: handing a tiny
//! product to the thread pool costs more than it saves. Dense results of at least
//! [`SPLIT_WORK`] give each thread its own share of rows and sequential GEMMs instead of one
//! threaded GEMM (see `dense`).

use faer::traits::ComplexField;
use faer::{Accum, MatMut, MatRef, Par};

/// Multiply-adds below which work is not split across threads.
pub(crate) const PARALLEL_WORK: usize = 1 << 21;

/// Multiply-adds from which a dense result is cut into one share of rows per thread, each
/// multiplied sequentially, rather than handed a block at a time to faer's threading. On two
/// cores the shares measured faster at 4096×1024×4096 and no faster at 1000×768×1000
/// (`examples/gemm_threads.rs`; BENCHMARKS.md, "Kernels against numpy").
pub(crate) const SPLIT_WORK: usize = 1 << 32;

/// The thread policy for work of this many multiply-adds.
pub(crate) fn policy(work: usize) -> Par {
    if work >= PARALLEL_WORK && rayon::current_num_threads() > 1 {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

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
