//! `a · bᵀ` for row-major operands held as slices: through OpenBLAS when the process chose
//! it ([`super::blas`]) and the vectors have at least [`BLAS_MIN_DIM`] dimensions, else
//! through faer's GEMM.
//!
//! Rows of `a` and `b` are vectors, so `a · bᵀ` scores every row of `a` against every row of
//! `b`. How many threads a product uses is the caller's `par`, from [`super::threads`]: with
//! OpenBLAS, a parallel product is cut into one share of rows per thread of the pool, each
//! multiplied on its thread.

use faer::traits::ComplexField;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::blas::{self, Blas, Element};

/// Dimensions from which OpenBLAS multiplies, when chosen. On one thread
/// (`examples/gemm_libraries.rs`) it ran 1.5–1.6× faer's rate on whole 768-dimension results
/// and 1.07–1.20× on 64-row tiles of 128–768 dimensions, but 0.87–0.91× at 64 dimensions
/// (and `bench/ab.py` measured the 64-dimension user-item request 0.87× end to end).
pub(crate) const BLAS_MIN_DIM: usize = 128;

/// `out = a · bᵀ`: `a` holds `n` rows and `b` holds `m` rows of `dim` values, `out` is
/// `n × m`; all row-major.
pub(crate) fn a_bt<T: ComplexField + Element + Send + Sync>(
    a: &[T],
    b: &[T],
    dim: usize,
    out: &mut [T],
    par: Par,
) {
    if dim >= BLAS_MIN_DIM
        && let Some(blas) = blas::chosen()
        && blas_a_bt(blas, a, b, dim, out, par)
    {
        return;
    }
    faer_a_bt(a, b, dim, out, par);
}

/// [`a_bt`] through OpenBLAS; `false` when it cannot take these sizes, or fewer rows than
/// threads (then faer computes the whole product, overwriting any share written here).
fn blas_a_bt<T: Element + Send + Sync>(
    blas: &Blas,
    a: &[T],
    b: &[T],
    dim: usize,
    out: &mut [T],
    par: Par,
) -> bool {
    let (n, m) = (a.len() / dim.max(1), b.len() / dim.max(1));
    let threads = match par {
        Par::Seq => 1,
        Par::Rayon(_) => rayon::current_num_threads(),
    };
    if threads <= 1 || dim == 0 || m == 0 || a.len() != n * dim {
        return blas.a_bt(a, b, dim, out);
    }
    if n < threads {
        // Shares of rows would leave threads idle; faer's threading splits columns too.
        return false;
    }
    let share = n.div_ceil(threads);
    if out.len() != n * m {
        return false;
    }
    // A share that cannot be taken leaves the whole product to faer, which overwrites it.
    out.par_chunks_mut(share * m)
        .zip(a.par_chunks(share * dim))
        .all(|(out, a)| blas.a_bt(a, b, dim, out))
}

/// [`a_bt`] through faer.
fn faer_a_bt<T: ComplexField + Copy>(a: &[T], b: &[T], dim: usize, out: &mut [T], par: Par) {
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

    /// Values in `[-0.5, 0.5)` from a seed, as a product's operand.
    fn operand(len: usize, seed: usize) -> Vec<f64> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104_729) % 1009) as f64 / 1009.0 - 0.5)
            .collect()
    }

    #[test]
    fn openblas_and_faer_give_the_same_products_sequential_and_in_shares_of_rows() {
        let blas = Blas::open(blas::AUTO_NAMES[0])
            .unwrap_or_else(|err| panic!("this test needs Debian's libopenblas0: {err}"));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        // Shapes at the kernels' edges, rows not a multiple of the shares, and one large
        // enough for blocked paths.
        for &(n, dim, m) in &[
            (1, 1, 1),
            (2, 3, 1),
            (7, 5, 9),
            (17, 33, 16),
            (130, 300, 257),
        ] {
            let (a, b) = (operand(n * dim, n), operand(m * dim, m));
            let want: Vec<f64> = (0..n * m)
                .map(|at| {
                    let (i, j) = (at / m, at % m);
                    (0..dim).map(|k| a[i * dim + k] * b[j * dim + k]).sum()
                })
                .collect();
            let (a32, b32): (Vec<f32>, Vec<f32>) = (
                a.iter().map(|&v| v as f32).collect(),
                b.iter().map(|&v| v as f32).collect(),
            );
            for par in [Par::Seq, Par::rayon(0)] {
                let (mut faer, mut open) = (vec![0.0f32; n * m], vec![f32::NAN; n * m]);
                faer_a_bt(&a32, &b32, dim, &mut faer, par);
                let done = pool.install(|| blas_a_bt(&blas, &a32, &b32, dim, &mut open, par));
                // Fewer rows than the pool's 3 threads are left to faer's threading.
                let left_to_faer = matches!(par, Par::Rayon(_)) && n < 3;
                assert_eq!(done, !left_to_faer, "{n}x{dim}x{m} {par:?}");
                if left_to_faer {
                    assert!(open.iter().all(|v| v.is_nan()), "left untouched");
                    continue;
                }
                for ((&f, &o), &w) in faer.iter().zip(&open).zip(&want) {
                    let tolerance = 1e-5 * (1.0 + w.abs()) * (dim as f64).sqrt();
                    assert!((f64::from(f) - w).abs() <= tolerance, "faer {f} vs {w}");
                    assert!((f64::from(o) - w).abs() <= tolerance, "OpenBLAS {o} vs {w}");
                }
                let mut wide = vec![f64::NAN; n * m];
                assert!(pool.install(|| blas_a_bt(&blas, &a, &b, dim, &mut wide, par)));
                for (&got, &w) in wide.iter().zip(&want) {
                    assert!((got - w).abs() <= 1e-12 * (1.0 + w.abs()), "{got} vs {w}");
                }
            }
        }
    }
}
