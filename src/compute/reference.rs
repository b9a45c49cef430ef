//! The test reference: one pair of rows at a time, `f64` accumulation, no tricks, written
//! independently of the fast kernels so that tests can hold them against it. Only tests use
//! it (`mod reference` is `cfg(test)`).

use ndarray::{ArrayView1, Zip};

use super::Metric;
use super::metric::NORM_FLOOR;

/// `‖x‖₂` with `f64` accumulation, so neither huge nor tiny values over- or underflow.
pub(crate) fn norm(x: ArrayView1<f32>) -> f64 {
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
}
