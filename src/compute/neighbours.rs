//! Nearest rows of `b` for each row of `a`: top-k and/or threshold selection.
//!
//! Scores are computed one tile (a block of rows × a block of columns) at a time and folded
//! into a bounded selection per row, so memory stays at `O(n·k + tile)` instead of the full
//! `n × m` matrix. How rows are cut into blocks, and whether blocks or each tile's product
//! are spread over the threads, is [`threads::neighbour_blocks`]'s decision.

use std::cmp::Ordering;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use rayon::prelude::*;

use super::operand::Operand;
use super::scorer::Scorer;
use super::threads;
use super::{Cancel, ComputeError, Metric, Ragged};

/// Scores one tile holds (4 MiB of `f32`) when blocks go one after another, each tile's
/// product on all the threads.
const TILE: usize = 1 << 20;

/// Scores one tile holds when blocks are spread over the threads (1 MiB of `f32`). Tiles
/// are wide because each tile's product packs the block's rows again: the wider the tile,
/// the fewer times they are packed.
const SPREAD_TILE: usize = 1 << 18;

/// Scores one tile holds when the columns are cut into shares (256 KiB of `f32`, so it
/// stays in a core's own cache between its product and its selection).
const COLUMN_TILE: usize = 1 << 16;

/// Candidates a row collects before the worst are pruned away, at least: pruning costs a
/// pass over the list, so it waits for `2k` candidates (half are dropped each time, which
/// keeps the cost per candidate constant) and, for small `k`, for this many.
const MIN_PRUNE_LEN: usize = 32;

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
    pub exclude: Option<&'a Ragged<usize>>,
    /// The most entries all rows may hold together.
    pub max_entries: usize,
}

/// The selected rows of `b` per row of `a`, nearest first, ties broken by lower index.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Neighbours {
    /// Indices into `b`, one row per row of `a`.
    pub indices: Ragged<usize>,
    /// The matching scores, row for row.
    pub scores: Ragged<f32>,
}

impl Neighbours {
    fn append(&mut self, other: Neighbours) {
        self.indices.append(other.indices);
        self.scores.append(other.scores);
    }
}

/// A candidate: score and column.
type Hit = (f32, usize);

/// One row's candidates while its tiles are scanned.
#[derive(Debug, Clone, Default)]
struct Candidates {
    /// Candidates kept so far (unsorted; pruned to the `k` nearest now and then).
    hits: Vec<Hit>,
    /// Once `k` are held after a prune, the farthest kept score: a candidate must be nearer.
    bar: Option<f32>,
}

struct Run<'s, 'a> {
    scorer: &'s Scorer<'a>,
    metric: Metric,
    selection: &'s Selection<'s>,
    /// Sorted exclusion lists without repeats, one per row of `a`.
    exclude: Option<Ragged<usize>>,
    /// Columns per tile.
    width: usize,
    entries: AtomicUsize,
    cancel: &'s Cancel,
}

impl Run<'_, '_> {
    fn order(&self) -> impl Fn(&Hit, &Hit) -> Ordering + Copy + '_ {
        move |x: &Hit, y: &Hit| self.metric.nearest_first(x.0, y.0).then(x.1.cmp(&y.1))
    }

    /// Keeps the `k` nearest of `hits`, unsorted, and returns the farthest kept score: from
    /// then on only nearer candidates can enter (an equal one has a higher index, so loses).
    fn prune(&self, hits: &mut Vec<Hit>) -> Option<f32> {
        let k = self.selection.k?;
        if hits.len() < k {
            return None;
        }
        hits.select_nth_unstable_by(k - 1, self.order());
        hits.truncate(k);
        Some(hits[k - 1].0)
    }

    /// Selects for rows `rows`, computing tiles with `par`.
    fn block(&self, rows: Range<usize>, par: faer::Par) -> Result<Neighbours, ComputeError> {
        let all = 0..self.scorer.cols();
        let per_row = self.candidates(rows, all, self.width, par)?;
        Ok(self.finish(per_row))
    }

    /// Selects for rows `rows`, their columns cut into `shares` scored side by side (each
    /// tile of about [`COLUMN_TILE`] scores, multiplied sequentially), then merged: a few
    /// rows against many columns keep every thread busy, and each tile is selected from
    /// while it is still in cache.
    fn block_by_columns(
        &self,
        rows: Range<usize>,
        shares: usize,
    ) -> Result<Neighbours, ComputeError> {
        let m = self.scorer.cols();
        let share = m.div_ceil(shares.max(1)).max(1);
        let width = (COLUMN_TILE / rows.len().max(1)).clamp(1, share);
        let parts: Vec<Vec<Candidates>> = (0..m)
            .step_by(share)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|c0| self.candidates(rows.clone(), c0..(c0 + share).min(m), width, faer::Par::Seq))
            .collect::<Result<_, _>>()?;
        let mut merged = vec![Candidates::default(); rows.len()];
        for part in parts {
            for (row, found) in merged.iter_mut().zip(part) {
                row.hits.extend(found.hits);
            }
        }
        Ok(self.finish(merged))
    }

    /// Each row's candidates among columns `cols`, scored `width` columns at a time.
    fn candidates(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        width: usize,
        par: faer::Par,
    ) -> Result<Vec<Candidates>, ComputeError> {
        let k = self.selection.k.unwrap_or(usize::MAX);
        let prune_at = k.saturating_mul(2).max(MIN_PRUNE_LEN);
        let mut per_row: Vec<Candidates> = vec![Candidates::default(); rows.len()];
        let mut tile = vec![0.0f32; rows.len() * width.min(cols.len())];
        for c0 in cols.clone().step_by(width.max(1)) {
            self.cancel.check()?;
            let tile_cols = c0..(c0 + width).min(cols.end);
            let tile = &mut tile[..rows.len() * tile_cols.len()];
            self.scorer
                .tile_into(rows.clone(), tile_cols.clone(), par, tile)?;
            let mut added = 0;
            for (offset, scores) in tile.chunks_exact(tile_cols.len()).enumerate() {
                let i = rows.start + offset;
                let row = &mut per_row[offset];
                let before = row.hits.len();
                let skip = self.exclude.as_ref().map_or(&[][..], |e| e.row(i));
                let first = skip.partition_point(|&j| j < tile_cols.start);
                let skip = &skip[first..];
                if self.selection.threshold.is_none() {
                    // Top-k alone: one comparison per score against the bar, over the runs
                    // of columns between those left out (exclusions, and the row itself
                    // with `exclude_self`).
                    let similarity = self.metric.is_similarity();
                    let nearer = |x: f32, y: f32| {
                        let order = super::metric::score_order(x, y);
                        if similarity {
                            order.is_gt()
                        } else {
                            order.is_lt()
                        }
                    };
                    let mut bar = row.bar;
                    let mut from = tile_cols.start;
                    let mut plain_run = |from: usize, to: usize, bar: &mut Option<f32>| {
                        let run = &scores[from - tile_cols.start..to - tile_cols.start];
                        let mut next = 0;
                        loop {
                            let rest = run.get(next * BAR_CHUNK..).unwrap_or_default();
                            let found = match *bar {
                                None => (!rest.is_empty()).then_some(0),
                                Some(b) => chunk_that_may_beat(rest, b, similarity),
                            };
                            let Some(found) = found else { break };
                            let c = next + found;
                            let chunk = &run[c * BAR_CHUNK..((c + 1) * BAR_CHUNK).min(run.len())];
                            for (j, &score) in (from + c * BAR_CHUNK..).zip(chunk) {
                                if bar.is_none_or(|b| nearer(score, b)) {
                                    row.hits.push((score, j));
                                    if row.hits.len() >= prune_at {
                                        *bar = self.prune(&mut row.hits);
                                    }
                                }
                            }
                            next = c + 1;
                        }
                    };
                    let own = (self.selection.exclude_self && tile_cols.contains(&i)).then_some(i);
                    let left_out = skip.iter().copied().take_while(|&j| j < tile_cols.end);
                    for j in merged(left_out, own) {
                        if j >= from {
                            plain_run(from, j, &mut bar);
                            from = j + 1;
                        }
                    }
                    plain_run(from, tile_cols.end, &mut bar);
                    row.bar = bar;
                    added += row.hits.len().saturating_sub(before);
                    continue;
                }
                let mut skip = skip.iter().copied().peekable();
                for (j, &score) in tile_cols.clone().zip(scores) {
                    if skip.next_if_eq(&j).is_some() || (self.selection.exclude_self && j == i) {
                        continue;
                    }
                    let passes = self
                        .selection
                        .threshold
                        .is_none_or(|t| self.metric.passes(score, t));
                    let beats = row
                        .bar
                        .is_none_or(|b| self.metric.nearest_first(score, b).is_lt());
                    if passes && beats {
                        row.hits.push((score, j));
                        if row.hits.len() >= prune_at {
                            row.bar = self.prune(&mut row.hits);
                        }
                    }
                }
                added += row.hits.len().saturating_sub(before);
            }
            let total = self.entries.fetch_add(added, AtomicOrdering::Relaxed) + added;
            if self.selection.k.is_none() && total > self.selection.max_entries {
                return Err(ComputeError::TooManyResults {
                    limit: self.selection.max_entries,
                });
            }
        }
        Ok(per_row)
    }

    /// Each row's `k` nearest candidates, nearest first.
    fn finish(&self, per_row: Vec<Candidates>) -> Neighbours {
        let mut out = Neighbours::default();
        for row in per_row {
            let mut row_hits = row.hits;
            let _ = self.prune(&mut row_hits);
            row_hits.sort_unstable_by(self.order());
            out.indices.push_row(row_hits.iter().map(|hit| hit.1));
            out.scores.push_row(row_hits.iter().map(|hit| hit.0));
        }
        out
    }
}

/// Scores compared with a row's bar at once, before any is looked at alone: a run of this
/// many that cannot beat it (most, once `k` are held) costs a few vector comparisons.
const BAR_CHUNK: usize = 16;

/// The first chunk of [`BAR_CHUNK`] scores of `scores` that may hold a score nearer than
/// `bar` (larger for a similarity, else smaller; NaN, in a score or the bar, counts as maybe).
///
/// Most scores of a top-k selection end here once `k` are held, so this scan is compiled
/// again for AVX-512 and AVX2 (a chunk in one or two comparisons; x86-64's baseline takes
/// four), chosen at run time as [`super::scorer`]'s scaling is.
fn chunk_that_may_beat(scores: &[f32], bar: f32, similarity: bool) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the processor has AVX-512F, just checked.
            #[allow(unsafe_code)]
            return unsafe { chunk_that_may_beat_avx512(scores, bar, similarity) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2, just checked.
            #[allow(unsafe_code)]
            return unsafe { chunk_that_may_beat_avx2(scores, bar, similarity) };
        }
    }
    chunk_that_may_beat_here(scores, bar, similarity)
}

/// [`chunk_that_may_beat`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn chunk_that_may_beat_avx512(scores: &[f32], bar: f32, similarity: bool) -> Option<usize> {
    chunk_that_may_beat_here(scores, bar, similarity)
}

/// [`chunk_that_may_beat`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn chunk_that_may_beat_avx2(scores: &[f32], bar: f32, similarity: bool) -> Option<usize> {
    chunk_that_may_beat_here(scores, bar, similarity)
}

/// [`chunk_that_may_beat`]'s loop, compiled for whatever the function it is inlined into
/// targets: each chunk's comparisons folded without an early exit, so that they vectorise.
#[inline(always)]
fn chunk_that_may_beat_here(scores: &[f32], bar: f32, similarity: bool) -> Option<usize> {
    if bar.is_nan() {
        return (!scores.is_empty()).then_some(0);
    }
    let mut chunks = scores.chunks(BAR_CHUNK);
    if similarity {
        chunks.position(|chunk| {
            chunk
                .iter()
                .fold(false, |may, &x| may | (x >= bar) | x.is_nan())
        })
    } else {
        chunks.position(|chunk| {
            chunk
                .iter()
                .fold(false, |may, &x| may | (x <= bar) | x.is_nan())
        })
    }
}

/// The ascending `sorted` with `extra` (when given) in its place.
fn merged(
    sorted: impl Iterator<Item = usize>,
    mut extra: Option<usize>,
) -> impl Iterator<Item = usize> {
    let mut sorted = sorted.peekable();
    std::iter::from_fn(move || match (sorted.peek(), extra) {
        (Some(&next), Some(own)) if own < next => extra.take(),
        (Some(_), _) => sorted.next(),
        (None, _) => extra.take(),
    })
}

/// Selects, for every row of `a`, the nearest rows of `b` (`None`: of `a` itself). Sides are
/// views or [`Operand`]s (rows with their norms).
pub fn nearest<'a, O: Into<Operand<'a>>>(
    a: O,
    b: Option<O>,
    metric: Metric,
    selection: &Selection,
    cancel: &Cancel,
) -> Result<Neighbours, ComputeError> {
    nearest_in_tiles(a, b, metric, selection, cancel, TILE)
}

/// [`nearest`] with tiles of at most `tile` scores.
fn nearest_in_tiles<'a, O: Into<Operand<'a>>>(
    a: O,
    b: Option<O>,
    metric: Metric,
    selection: &Selection,
    cancel: &Cancel,
    tile: usize,
) -> Result<Neighbours, ComputeError> {
    let scorer = Scorer::new(metric, a.into(), b.map(Into::into));
    let (n, m, dim) = (scorer.rows(), scorer.cols(), scorer.dim());
    let work = n.saturating_mul(m).saturating_mul(dim);
    let cut = threads::neighbour_blocks(n, m, work);
    let row_block = cut.rows;
    let run = Run {
        scorer: &scorer,
        metric,
        selection,
        exclude: selection.exclude.map(|lists| {
            lists
                .rows()
                .map(|list| {
                    let mut list = list.to_vec();
                    list.sort_unstable();
                    list.dedup();
                    list
                })
                .collect()
        }),
        // Blocks spread over the threads score smaller tiles ([`SPREAD_TILE`]) than blocks
        // one after another ([`TILE`]).
        width: (if cut.spread {
            tile.min(SPREAD_TILE)
        } else {
            tile
        } / row_block)
            .clamp(1, m.max(1)),
        entries: AtomicUsize::new(0),
        cancel,
    };
    let blocks: Vec<Range<usize>> = (0..n)
        .step_by(row_block)
        .map(|start| start..(start + row_block).min(n))
        .collect();
    let per_block: Vec<Neighbours> = if cut.spread {
        blocks
            .into_par_iter()
            .map(|rows| run.block(rows, faer::Par::Seq))
            .collect::<Result<_, _>>()?
    } else if cut.column_shares > 1 {
        blocks
            .into_iter()
            .map(|rows| run.block_by_columns(rows, cut.column_shares))
            .collect::<Result<_, _>>()?
    } else {
        blocks
            .into_iter()
            .map(|rows| run.block(rows.clone(), threads::gemm_par(rows.len() * m * dim)))
            .collect::<Result<_, _>>()?
    };

    let mut out = Neighbours::default();
    for block in per_block {
        out.append(block);
        if out.indices.total() > selection.max_entries {
            return Err(ComputeError::TooManyResults {
                limit: selection.max_entries,
            });
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
        let got = nearest(
            a.view(),
            Some(b.view()),
            Metric::Cosine,
            &sel,
            &Cancel::new(),
        )
        .unwrap();
        assert_eq!(got.indices.to_vecs(), vec![vec![1, 2, 4]]);
        assert_eq!(got.scores.to_vecs(), vec![vec![1.0, 1.0, 1.0]]);
    }

    #[test]
    fn zero_and_negative_zero_scores_tie_and_are_listed_by_lower_index() {
        // Dot products of a zero vector (a cold-start user): zeros, some of them -0.
        let a = array![[0.0f32, 0.0], [1.0, 0.0]];
        let b = array![[1.0f32, 1.0], [-1.0, -1.0], [2.0, 0.5], [-3.0, -0.1]];
        let sel = Selection {
            k: Some(4),
            ..all()
        };
        let got = nearest(a.view(), Some(b.view()), Metric::Dot, &sel, &Cancel::new()).unwrap();
        let scores = got.scores.to_vecs()[0].clone();
        assert!(scores.iter().all(|s| *s == 0.0), "{scores:?}");
        assert!(
            scores.iter().any(|s| s.is_sign_negative()),
            "some scores are -0, as the test needs: {scores:?}"
        );
        for k in [1, 2, 4] {
            let sel = Selection {
                k: Some(k),
                ..all()
            };
            let got = nearest(a.view(), Some(b.view()), Metric::Dot, &sel, &Cancel::new());
            let want: Vec<usize> = (0..k).collect();
            assert_eq!(got.unwrap().indices.to_vecs()[0], want, "top {k}");
        }
        // With a threshold (every score passes 0), the same order.
        let sel = Selection {
            threshold: Some(-0.0),
            ..all()
        };
        let got = nearest(a.view(), Some(b.view()), Metric::Dot, &sel, &Cancel::new());
        assert_eq!(got.unwrap().indices.to_vecs()[0], vec![0, 1, 2, 3]);
    }

    #[test]
    fn distances_list_the_smallest_first() {
        let a = array![[0.0f32]];
        let b = array![[3.0f32], [-1.0], [2.0]];
        let sel = Selection {
            k: Some(2),
            ..all()
        };
        let got = nearest(
            a.view(),
            Some(b.view()),
            Metric::Manhattan,
            &sel,
            &Cancel::new(),
        )
        .unwrap();
        assert_eq!(got.indices.to_vecs(), vec![vec![1, 2]]);
        assert_eq!(got.scores.to_vecs(), vec![vec![1.0, 2.0]]);
    }

    #[test]
    fn threshold_equals_filtering_the_dense_matrix() {
        let a = array![[1.0f32, 0.2], [0.3, -1.0], [0.5, 0.5]];
        let sel = Selection {
            threshold: Some(0.3),
            ..all()
        };
        let got = nearest(a.view(), None, Metric::Cosine, &sel, &Cancel::new()).unwrap();
        let dense = matrix(a.view(), None, Metric::Cosine, &Cancel::new()).unwrap();
        for (i, row) in dense.rows().into_iter().enumerate() {
            let mut want: Vec<usize> = (0..3).filter(|&j| row[j] >= 0.3).collect();
            want.sort_by(|&x, &y| row[y].partial_cmp(&row[x]).unwrap().then(x.cmp(&y)));
            assert_eq!(got.indices.row(i), want);
        }
    }

    #[test]
    fn excluded_rows_and_self_are_never_listed() {
        let a = array![[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]];
        let lists: Ragged<usize> = [vec![2], vec![], vec![1, 0]].into_iter().collect();
        let sel = Selection {
            exclude_self: true,
            exclude: Some(&lists),
            ..all()
        };
        let got = nearest(a.view(), None, Metric::Dot, &sel, &Cancel::new()).unwrap();
        assert_eq!(got.indices.to_vecs(), vec![vec![1], vec![2, 0], vec![]]);
    }

    #[test]
    fn a_selection_over_the_entry_budget_is_refused() {
        let a = array![[1.0f32], [2.0]];
        let sel = Selection {
            max_entries: 3,
            ..Selection::default()
        };
        let got = nearest(a.view(), None, Metric::Dot, &sel, &Cancel::new());
        assert_eq!(got, Err(ComputeError::TooManyResults { limit: 3 }));
    }

    #[test]
    fn a_cancelled_selection_stops_with_cancelled() {
        let a = array![[1.0f32], [2.0]];
        let cancel = Cancel::new();
        cancel.cancel();
        let got = nearest(a.view(), None, Metric::Dot, &all(), &cancel);
        assert_eq!(got, Err(ComputeError::Cancelled));
        assert_eq!(
            matrix(a.view(), None, Metric::Dot, &cancel),
            Err(ComputeError::Cancelled)
        );
    }

    #[test]
    fn the_chunk_that_may_beat_the_bar_is_found_alike_whatever_vectors_the_processor_has() {
        /// A variant of [`chunk_that_may_beat`], callable where the processor has its features.
        #[cfg(target_arch = "x86_64")]
        type Variant = unsafe fn(&[f32], f32, bool) -> Option<usize>;
        #[cfg(target_arch = "x86_64")]
        let variants: [(&str, bool, Variant); 2] = [
            (
                "avx2",
                std::arch::is_x86_feature_detected!("avx2"),
                chunk_that_may_beat_avx2,
            ),
            (
                "avx512",
                std::arch::is_x86_feature_detected!("avx512f"),
                chunk_that_may_beat_avx512,
            ),
        ];
        // The definition, score by score.
        let reference = |scores: &[f32], bar: f32, similarity: bool| {
            scores.chunks(BAR_CHUNK).position(|chunk| {
                chunk.iter().any(|&x| {
                    bar.is_nan() || x.is_nan() || if similarity { x >= bar } else { x <= bar }
                })
            })
        };
        // Every length to 100 (whole chunks and remainders); one score that beats the bar,
        // ties it or is NaN at each place, or none; bars of both signs and NaN, in both
        // directions.
        for len in 0..=100 {
            for odd_at in (0..len).step_by(7).map(Some).chain([None]) {
                for odd in [0.9f32, 0.5, -0.5, f32::NAN, -0.9] {
                    let scores: Vec<f32> = (0..len)
                        .map(|j| {
                            if Some(j) == odd_at {
                                odd
                            } else {
                                (j % 13) as f32 * 0.01
                            }
                        })
                        .collect();
                    // Bars only the odd score may beat (or tie), and bars many beat.
                    for (bar, similarity) in [
                        (0.5, true),
                        (-0.5, false),
                        (f32::NAN, true),
                        (f32::NAN, false),
                        (0.2, true),
                        (0.05, true),
                        (0.05, false),
                    ] {
                        let want = reference(&scores, bar, similarity);
                        let case = format!("len {len}, {odd} at {odd_at:?}, bar {bar}");
                        assert_eq!(
                            chunk_that_may_beat(&scores, bar, similarity),
                            want,
                            "{case}"
                        );
                        assert_eq!(
                            chunk_that_may_beat_here(&scores, bar, similarity),
                            want,
                            "{case}"
                        );
                        #[cfg(target_arch = "x86_64")]
                        for (name, has, variant) in variants {
                            if has {
                                // SAFETY: the processor has the variant's features, checked.
                                #[allow(unsafe_code)]
                                let got = unsafe { variant(&scores, bar, similarity) };
                                assert_eq!(got, want, "{name}: {case}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// Runs `f` on a pool of two threads, as the compute pool on two cores.
    fn on_two_threads<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
            .install(f)
    }

    #[test]
    fn many_small_tiles_give_the_same_selection_as_the_dense_matrix() {
        // Values repeat, so there are many ties to break by index across tile borders.
        let a =
            ndarray::Array2::from_shape_fn((300, 2), |(i, j)| (i * 7 + j * 3) as f32 % 11.0 - 5.0);
        let b = ndarray::Array2::from_shape_fn((3000, 2), |(i, j)| (i * 5 + j) as f32 % 13.0 - 6.0);
        let sel = Selection {
            k: Some(7),
            ..all()
        };
        let got = nearest_in_tiles(
            a.view(),
            Some(b.view()),
            Metric::Euclidean,
            &sel,
            &Cancel::new(),
            1000,
        )
        .unwrap();
        let dense = matrix(a.view(), Some(b.view()), Metric::Euclidean, &Cancel::new()).unwrap();
        for (i, row) in dense.rows().into_iter().enumerate() {
            let mut want: Vec<usize> = (0..3000).collect();
            want.sort_by(|&x, &y| row[x].partial_cmp(&row[y]).unwrap().then(x.cmp(&y)));
            want.truncate(7);
            assert_eq!(got.indices.row(i), want, "row {i}");
        }
    }

    #[test]
    fn blocks_spread_over_two_threads_select_across_tile_borders_like_the_dense_matrix() {
        // Enough work and rows to spread: four blocks of 75 rows, each scored 13 columns a
        // tile (of 1000 scores). Values repeat, so ties are broken by index across borders.
        let (n, m, dim) = (300, 3000, 3);
        let a = ndarray::Array2::from_shape_fn((n, dim), |(i, j)| ((i * 7 + j * 3) % 11) as f32);
        let b = ndarray::Array2::from_shape_fn((m, dim), |(i, j)| ((i * 5 + j) % 13) as f32);
        on_two_threads(|| {
            let cut = threads::neighbour_blocks(n, m, n * m * dim);
            assert!(cut.spread && cut.rows == 75, "{cut:?}");
            for metric in [Metric::Cosine, Metric::Euclidean] {
                let dense = matrix(a.view(), Some(b.view()), metric, &Cancel::new()).unwrap();
                let sel = Selection {
                    k: Some(7),
                    ..all()
                };
                let got =
                    nearest_in_tiles(a.view(), Some(b.view()), metric, &sel, &Cancel::new(), 1000)
                        .unwrap();
                for (i, row) in dense.rows().into_iter().enumerate() {
                    let mut want: Vec<usize> = (0..m).collect();
                    want.sort_by(|&x, &y| metric.nearest_first(row[x], row[y]).then(x.cmp(&y)));
                    want.truncate(7);
                    assert_eq!(got.indices.row(i), want, "{metric:?} row {i}");
                }
            }
        });
    }

    #[test]
    fn top_k_with_exclusions_skips_them_across_tiles_and_chunks_like_the_dense_matrix() {
        // Ties everywhere; exclusions at tile borders, chunk borders and the row itself,
        // unsorted and repeated; with and without a threshold (which every score passes).
        let a = ndarray::Array2::from_shape_fn((40, 3), |(i, j)| ((i * 7 + j * 3) % 5) as f32);
        let b = ndarray::Array2::from_shape_fn((3000, 3), |(i, j)| ((i * 5 + j) % 7) as f32);
        let mut exclude = Ragged::new();
        for i in 0..40 {
            let mut row: Vec<usize> = [0, 15, 16, 999, 1000, 1001, 2999, i * 61, i * 61 + 1]
                .into_iter()
                .filter(|&j| j < 3000 && j % (i % 3 + 1) == 0)
                .collect();
            // Unsorted, with repeats: as clients may send them.
            row.reverse();
            row.extend_from_slice(&row.clone());
            exclude.push_row(row);
        }
        for (metric, exclude_self, threshold) in [
            (Metric::Dot, true, None),
            (Metric::Euclidean, false, None),
            (Metric::Dot, false, Some(-1.0)),
        ] {
            let sel = Selection {
                k: Some(7),
                threshold,
                exclude_self,
                exclude: Some(&exclude),
                ..all()
            };
            let got =
                nearest_in_tiles(a.view(), Some(b.view()), metric, &sel, &Cancel::new(), 1000)
                    .unwrap();
            let dense = matrix(a.view(), Some(b.view()), metric, &Cancel::new()).unwrap();
            for (i, row) in dense.rows().into_iter().enumerate() {
                let mut want: Vec<usize> = (0..3000)
                    .filter(|&j| !exclude.row(i).contains(&j) && (!exclude_self || j != i))
                    .collect();
                want.sort_by(|&x, &y| metric.nearest_first(row[x], row[y]).then(x.cmp(&y)));
                want.truncate(7);
                assert_eq!(got.indices.row(i), want, "{metric:?} row {i}");
            }
        }
    }

    #[test]
    fn a_few_rows_against_many_columns_cut_into_shares_select_like_the_dense_matrix() {
        // Enough work to spread, too few rows to spread: the columns are cut into shares.
        // Values repeat, so ties are broken by index across share borders.
        let (n, m, dim) = (3, 20_000, 40);
        let a =
            ndarray::Array2::from_shape_fn((n, dim), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        let b = ndarray::Array2::from_shape_fn((m, dim), |(i, j)| ((i * 5 + j) % 13) as f32 - 6.0);
        on_two_threads(|| {
            let cut = threads::neighbour_blocks(n, m, n * m * dim);
            assert!(cut.column_shares > 1, "{cut:?}");
            let mut exclude = Ragged::new();
            for row in [vec![19_999, 4], vec![], vec![0, 1, 2]] {
                exclude.push_row(row);
            }
            for metric in [Metric::Cosine, Metric::Euclidean] {
                let dense = matrix(a.view(), Some(b.view()), metric, &Cancel::new()).unwrap();
                for (k, threshold, skip) in [
                    (Some(9), None, None),
                    (Some(5), None, Some(&exclude)),
                    (
                        None,
                        Some(if metric == Metric::Cosine { 0.9 } else { 20.0 }),
                        None,
                    ),
                ] {
                    let sel = Selection {
                        k,
                        threshold,
                        exclude: skip,
                        ..all()
                    };
                    let got =
                        nearest(a.view(), Some(b.view()), metric, &sel, &Cancel::new()).unwrap();
                    for (i, row) in dense.rows().into_iter().enumerate() {
                        let skipped = skip.map_or(&[][..], |e| e.row(i));
                        let mut want: Vec<usize> = (0..m)
                            .filter(|j| !skipped.contains(j))
                            .filter(|&j| threshold.is_none_or(|t| metric.passes(row[j], t)))
                            .collect();
                        want.sort_by(|&x, &y| metric.nearest_first(row[x], row[y]).then(x.cmp(&y)));
                        want.truncate(k.unwrap_or(m));
                        assert_eq!(
                            got.indices.row(i),
                            want,
                            "{metric:?} {k:?} {threshold:?} row {i}"
                        );
                        let scores: Vec<f32> = want.iter().map(|&j| row[j]).collect();
                        assert_eq!(got.scores.row(i), scores);
                    }
                }
            }
        });
    }
}
