//! Reference scoring: one pair of rows at a time, `f64` accumulation, no tricks, written
//! independently of the fast kernels so tests can hold them against it; plus the helpers
//! both share (the norm floor, narrowing to `f32`).

#[cfg(test)]
use ndarray::{ArrayView1, Zip};

use super::ComputeError;
#[cfg(test)]
use super::Metric;

/// Keras' `l2_normalize` divides by `sqrt(max(Σx², 1e-12))`, i.e. by `max(‖x‖, 1e-6)`.
pub(crate) const NORM_FLOOR: f64 = 1e-6;

#[cfg(test)]
/// `‖x‖₂` with `f64` accumulation, so neither huge nor tiny values over- or underflow.
pub(crate) fn norm(x: ArrayView1<f32>) -> f64 {
    x.iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
fn dot(x: ArrayView1<f32>, y: ArrayView1<f32>) -> f64 {
    Zip::from(x)
        .and(y)
        .fold(0.0, |acc, &p, &q| acc + f64::from(p) * f64::from(q))
}

#[cfg(test)]
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

/// Narrows an `f64` score to `f32`, reporting overflow at index `at` of the result.
pub(crate) fn narrow(score: f64, at: &[usize]) -> Result<f32, ComputeError> {
    let narrowed = score as f32;
    if narrowed.is_finite() {
        Ok(narrowed)
    } else {
        Err(ComputeError::Overflow { at: at.to_vec() })
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
            narrow(1e39, &[2, 3]),
            Err(ComputeError::Overflow { at: vec![2, 3] })
        );
        assert_eq!(narrow(-1.5, &[0]), Ok(-1.5));
    }
}
