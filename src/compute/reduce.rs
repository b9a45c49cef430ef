//! Vectorisable row reductions with `f64` accumulation.
//!
//! Eight independent accumulators let the compiler keep several SIMD lanes busy without
//! reassociating floating-point sums itself; accumulating in `f64` keeps long sums of `f32`
//! products within the accuracy contract whatever the dimension.

use super::Metric;
use super::metric::NORM_FLOOR;

const LANES: usize = 8;

#[inline]
fn fold(x: &[f32], y: &[f32], term: impl Fn(f64, f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (p, q) in xc.zip(yc) {
        for l in 0..LANES {
            acc[l] += term(f64::from(p[l]), f64::from(q[l]));
        }
    }
    let mut tail = 0.0;
    for (&p, &q) in xr.iter().zip(yr) {
        tail += term(f64::from(p), f64::from(q));
    }
    let [a, b, c, d, e, f, g, h] = acc;
    ((a + b) + (c + d)) + ((e + f) + (g + h)) + tail
}

/// `x·y`.
#[inline]
pub(crate) fn dot(x: &[f32], y: &[f32]) -> f64 {
    fold(x, y, |p, q| p * q)
}

/// `‖x − y‖²`.
#[inline]
pub(crate) fn sq_dist(x: &[f32], y: &[f32]) -> f64 {
    fold(x, y, |p, q| (p - q) * (p - q))
}

/// `Σ|x − y|`.
#[inline]
pub(crate) fn l1(x: &[f32], y: &[f32]) -> f64 {
    fold(x, y, |p, q| (p - q).abs())
}

/// `‖x‖²`.
#[inline]
pub(crate) fn sq_norm(x: &[f32]) -> f64 {
    fold(x, x, |p, _| p * p)
}

/// One pair's score under `metric`, accumulated in `f64` (cosine clamped to `[-1, 1]`).
pub(crate) fn score(metric: Metric, x: &[f32], y: &[f32]) -> f64 {
    match metric {
        Metric::Cosine => {
            let scale = sq_norm(x).sqrt().max(NORM_FLOOR) * sq_norm(y).sqrt().max(NORM_FLOOR);
            (dot(x, y) / scale).clamp(-1.0, 1.0)
        }
        Metric::Dot => dot(x, y),
        Metric::Euclidean => sq_dist(x, y).sqrt(),
        Metric::Manhattan => l1(x, y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_cover_the_lanes_and_the_tail() {
        let x: Vec<f32> = (0..19).map(|i| i as f32 * 0.5 - 3.0).collect();
        let y: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.25).collect();
        let naive_dot: f64 = x
            .iter()
            .zip(&y)
            .map(|(&p, &q)| f64::from(p) * f64::from(q))
            .sum();
        let naive_l1: f64 = x
            .iter()
            .zip(&y)
            .map(|(&p, &q)| f64::from(p - q).abs())
            .sum();
        let naive_sq_dist: f64 = x
            .iter()
            .zip(&y)
            .map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2))
            .sum();
        let naive_sq_norm: f64 = x.iter().map(|&p| f64::from(p).powi(2)).sum();
        assert!((dot(&x, &y) - naive_dot).abs() < 1e-12);
        assert!((l1(&x, &y) - naive_l1).abs() < 1e-12);
        assert!((sq_dist(&x, &y) - naive_sq_dist).abs() < 1e-12);
        assert!((sq_norm(&x) - naive_sq_norm).abs() < 1e-12);
        // A row is exactly 0 from itself.
        assert_eq!(sq_dist(&x, &x), 0.0);
    }
}
