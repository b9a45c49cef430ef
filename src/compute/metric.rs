//! The four metrics and what their scores mean; the rules every kernel shares (the cosine's
//! norm floor, narrowing a score to `f32`).

use std::cmp::Ordering;

use super::ComputeError;

/// Keras' `l2_normalize` divides by `sqrt(max(Σx², 1e-12))`, i.e. by `max(‖x‖, 1e-6)`.
pub(crate) const NORM_FLOOR: f64 = 1e-6;

/// Narrows an `f64` score to `f32`, reporting overflow at index `at` of the result.
pub(crate) fn narrow(score: f64, at: &[usize]) -> Result<f32, ComputeError> {
    let narrowed = score as f32;
    if narrowed.is_finite() {
        Ok(narrowed)
    } else {
        Err(ComputeError::Overflow { at: at.to_vec() })
    }
}

/// How two vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metric {
    /// Cosine of the angle, `x̂·ŷ` with `x̂ = x / max(‖x‖₂, 1e-6)` (Keras' `l2_normalize`
    /// rule), clamped to `[-1, 1]`; a zero vector scores 0. Greater — closer.
    #[default]
    Cosine,
    /// Inner product `x·y`. Greater — closer.
    Dot,
    /// `‖x − y‖₂`. Smaller — closer.
    Euclidean,
    /// `Σ|x − y|`. Smaller — closer.
    Manhattan,
}

impl Metric {
    /// The metric's name as clients spell it.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
            Metric::Euclidean => "euclidean",
            Metric::Manhattan => "manhattan",
        }
    }

    /// True for similarities (greater is closer), false for distances.
    pub fn is_similarity(self) -> bool {
        matches!(self, Metric::Cosine | Metric::Dot)
    }

    /// Orders two scores nearest first: `Less` when `x` is nearer than `y`. `0` and `-0`
    /// are equal (so equal scores are listed by lower index, whatever their zeros' signs);
    /// NaN, which no score is, is ordered as `f32::total_cmp` orders it.
    pub fn nearest_first(self, x: f32, y: f32) -> Ordering {
        if self.is_similarity() {
            score_order(y, x)
        } else {
            score_order(x, y)
        }
    }

    /// Whether `score` passes `threshold`: similarity ≥ t, or distance ≤ t.
    pub fn passes(self, score: f32, threshold: f32) -> bool {
        if self.is_similarity() {
            score >= threshold
        } else {
            score <= threshold
        }
    }
}

/// Scores in ascending order, `0` and `-0` equal: [`f32::total_cmp`] but for that, and as
/// branch-free (adding `0.0` makes `-0` `+0` and leaves every other value as it is).
#[inline]
pub fn score_order(x: f32, y: f32) -> Ordering {
    (x + 0.0).total_cmp(&(y + 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_scores_are_reported_not_returned() {
        assert_eq!(
            narrow(1e39, &[2, 3]),
            Err(ComputeError::Overflow { at: vec![2, 3] })
        );
        assert_eq!(narrow(-1.5, &[0]), Ok(-1.5));
    }

    #[test]
    fn similarities_sort_descending_and_distances_ascending() {
        assert_eq!(Metric::Cosine.nearest_first(0.9, 0.1), Ordering::Less);
        assert_eq!(Metric::Dot.nearest_first(-1.0, 2.0), Ordering::Greater);
        assert_eq!(Metric::Euclidean.nearest_first(0.1, 0.9), Ordering::Less);
        assert_eq!(Metric::Manhattan.nearest_first(3.0, 2.0), Ordering::Greater);
        assert_eq!(Metric::Dot.nearest_first(0.0, -0.0), Ordering::Equal);
        assert_eq!(Metric::Euclidean.nearest_first(-0.0, 0.0), Ordering::Equal);
    }

    #[test]
    fn thresholds_include_the_boundary() {
        assert!(Metric::Cosine.passes(0.5, 0.5));
        assert!(!Metric::Cosine.passes(0.49, 0.5));
        assert!(Metric::Euclidean.passes(0.5, 0.5));
        assert!(!Metric::Euclidean.passes(0.51, 0.5));
    }
}
