//! Nearest rows of `b` for each row of `a`: top-k and/or threshold selection.
//!
//! Scores are computed one block of rows at a time, so memory stays at
//! `O(block + selected)` instead of the full `n × m` matrix.

use ndarray::ArrayView2;

use super::kernels::Prepared;
use super::{ComputeError, Metric};

/// Scores held at once while selecting (4 MiB of `f32`).
const BLOCK_ELEMENTS: usize = 1 << 20;

/// What to keep for each row of `a`.
#[derive(Debug, Clone, Default)]
pub struct Selection<'a> {
    /// Keep at most this many rows of `b` (k ≥ 1); `None` keeps all that pass.
    pub k: Option<usize>,
    /// Keep only scores with similarity ≥ t (distance ≤ t).
    pub threshold: Option<f32>,
    /// Never list row `i` of `b` for row `i` of `a` (for `a` against itself).
    pub exclude_self: bool,
    /// Per row of `a`, rows of `b` never to list (all indices < `b.nrows()`).
    pub exclude: Option<&'a [Vec<usize>]>,
    /// The most entries all rows may hold together.
    pub max_entries: usize,
}

/// The selected rows of `b` per row of `a`, nearest first, ties broken by lower index.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Neighbours {
    /// Indices into `b`, one list per row of `a`.
    pub indices: Vec<Vec<usize>>,
    /// The matching scores.
    pub scores: Vec<Vec<f32>>,
}

/// Selects, for every row of `a`, the nearest rows of `b` (`None`: of `a` itself).
pub fn nearest(
    a: ArrayView2<f32>,
    b: Option<ArrayView2<f32>>,
    metric: Metric,
    selection: &Selection,
) -> Result<Neighbours, ComputeError> {
    let prepared = Prepared::new(metric, a, b);
    let (n, m) = (prepared.rows(), prepared.cols());
    let block_rows = (BLOCK_ELEMENTS / m.max(1)).max(1);
    let order =
        |x: &(f32, usize), y: &(f32, usize)| metric.nearest_first(x.0, y.0).then(x.1.cmp(&y.1));

    let mut out = Neighbours {
        indices: Vec::with_capacity(n),
        scores: Vec::with_capacity(n),
    };
    let mut excluded = vec![false; m];
    let mut candidates: Vec<(f32, usize)> = Vec::with_capacity(m);
    let mut total = 0usize;

    for start in (0..n).step_by(block_rows) {
        let end = (start + block_rows).min(n);
        let block = prepared.block(start..end)?;
        for (offset, row) in block.rows().into_iter().enumerate() {
            let i = start + offset;
            let skip = selection
                .exclude
                .map_or(&[][..], |lists| lists[i].as_slice());
            skip.iter().for_each(|&j| excluded[j] = true);
            if selection.exclude_self && i < m {
                excluded[i] = true;
            }

            candidates.clear();
            candidates.extend(
                row.iter()
                    .copied()
                    .enumerate()
                    .filter(|&(j, score)| {
                        !excluded[j] && selection.threshold.is_none_or(|t| metric.passes(score, t))
                    })
                    .map(|(j, score)| (score, j)),
            );
            if let Some(k) = selection.k
                && k < candidates.len()
            {
                candidates.select_nth_unstable_by(k, order);
                candidates.truncate(k);
            }
            candidates.sort_unstable_by(order);

            total += candidates.len();
            if total > selection.max_entries {
                return Err(ComputeError::TooManyResults {
                    limit: selection.max_entries,
                });
            }
            out.indices.push(candidates.iter().map(|c| c.1).collect());
            out.scores.push(candidates.iter().map(|c| c.0).collect());

            skip.iter().for_each(|&j| excluded[j] = false);
            if i < m {
                excluded[i] = false;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::matrix;
    use ndarray::array;

    fn all() -> Selection<'static> {
        Selection {
            max_entries: usize::MAX,
            ..Selection::default()
        }
    }

    #[test]
    fn top_k_is_the_prefix_of_the_full_sort_with_ties_to_the_lower_index() {
        let a = array![[1.0f32, 0.0]];
        let b = array![
            [0.0f32, 1.0],
            [1.0, 0.0],
            [2.0, 0.0],
            [1.0, 1.0],
            [5.0, 0.0]
        ];
        let sel = Selection {
            k: Some(3),
            ..all()
        };
        let got = nearest(a.view(), Some(b.view()), Metric::Cosine, &sel).unwrap();
        assert_eq!(got.indices, vec![vec![1, 2, 4]]);
        assert_eq!(got.scores, vec![vec![1.0, 1.0, 1.0]]);
    }

    #[test]
    fn distances_list_the_smallest_first() {
        let a = array![[0.0f32]];
        let b = array![[3.0f32], [-1.0], [2.0]];
        let sel = Selection {
            k: Some(2),
            ..all()
        };
        let got = nearest(a.view(), Some(b.view()), Metric::Manhattan, &sel).unwrap();
        assert_eq!(got.indices, vec![vec![1, 2]]);
        assert_eq!(got.scores, vec![vec![1.0, 2.0]]);
    }

    #[test]
    fn threshold_equals_filtering_the_dense_matrix() {
        let a = array![[1.0f32, 0.2], [0.3, -1.0], [0.5, 0.5]];
        let sel = Selection {
            threshold: Some(0.3),
            ..all()
        };
        let got = nearest(a.view(), None, Metric::Cosine, &sel).unwrap();
        let dense = matrix(a.view(), None, Metric::Cosine).unwrap();
        for (i, row) in dense.rows().into_iter().enumerate() {
            let mut want: Vec<usize> = (0..3).filter(|&j| row[j] >= 0.3).collect();
            want.sort_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
            assert_eq!(got.indices[i], want);
        }
    }

    #[test]
    fn excluded_rows_and_self_are_never_listed() {
        let a = array![[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]];
        let lists = vec![vec![2], vec![], vec![0, 1]];
        let sel = Selection {
            exclude_self: true,
            exclude: Some(&lists),
            ..all()
        };
        let got = nearest(a.view(), None, Metric::Dot, &sel).unwrap();
        assert_eq!(got.indices, vec![vec![1], vec![2, 0], vec![]]);
    }

    #[test]
    fn a_selection_over_the_entry_budget_is_refused() {
        let a = array![[1.0f32], [2.0]];
        let sel = Selection {
            max_entries: 3,
            ..Selection::default()
        };
        let got = nearest(a.view(), None, Metric::Dot, &sel);
        assert_eq!(got, Err(ComputeError::TooManyResults { limit: 3 }));
    }
}
