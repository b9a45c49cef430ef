//! How computations use the thread pool, decided in one place from the work they do
//! (multiply-adds: rows × columns × dimension).
//!
//! - Below [`PARALLEL_WORK`] everything stays on the calling thread: handing a small job to
//!   the pool costs more than it saves.
//! - Dense results ([`dense_shares`]): from [`SPLIT_WORK`] each thread takes one share of rows
//!   and runs sequential GEMMs on it; below it, blocks of rows go to the product's own
//!   threading ([`gemm_par`]: faer's, or OpenBLAS in shares of rows, `super::gemm`).
//! - Neighbour selection ([`neighbour_blocks`]): rows are cut into blocks; with enough rows,
//!   blocks are spread over the threads (each block scored on one thread); with too few rows
//!   but many columns (a few users against a large table), the columns are cut into shares
//!   spread over the threads instead; otherwise one block at a time goes through
//!   [`gemm_par`].
//! - Per-pair scores ([`pairs_in_parallel`]): chunks of pairs spread over the threads.

use faer::Par;

/// Multiply-adds below which work is not split across threads.
pub(crate) const PARALLEL_WORK: usize = 1 << 21;

/// Multiply-adds from which a dense result is cut into one share of rows per thread, each
/// multiplied sequentially, rather than handed a block at a time to faer's threading. On two
/// cores the shares measured faster at 4096×1024×4096 and no faster at 1000×768×1000
/// (`examples/gemm_threads.rs`; BENCHMARKS.md, "Kernels against numpy").
pub(crate) const SPLIT_WORK: usize = 1 << 32;

/// Rows of a neighbour block at most when blocks are spread over threads. Blocks are tall
/// because each tile's product packs both its sides again: every block packs all the
/// columns it scores, so the fewer the blocks, the fewer times `b` is packed (with the
/// spread tile, [`super::neighbours`]'s 1 MiB, a block of 256 rows has 1024 columns a tile).
/// The earlier settings (blocks of at most 64 rows, four per thread, 256 KiB tiles) took
/// 1.09–1.48× the CPU time of blocks two a thread of up to 256 rows in 1 MiB tiles at four
/// shapes, from 500 × 64 against 50,000 (user-item) to 64 × 768 against 100,000
/// (`examples/kernel_rate.rs`; BENCHMARKS.md, "Taller neighbour blocks").
const SPREAD_BLOCK_ROWS: usize = 256;

/// Blocks are spread only when the rows would fill two blocks of this many per thread:
/// fewer rows would make thin GEMMs that waste the kernel's register tile (8 rows at a
/// time). With [`SPREAD_BLOCKS_PER_THREAD`] at two, spread blocks are never thinner.
const MIN_SPREAD_BLOCK_ROWS: usize = 8;

/// Blocks per thread aimed at when spreading, at least: two, so that a block that finishes
/// early (rows with many exclusions or few candidates over the threshold) leaves another
/// thread a block to take, while blocks stay tall ([`SPREAD_BLOCK_ROWS`]). More rows aim at
/// more blocks, a multiple of the threads; a block's height is the rows over that aim,
/// rounded up, so the last block may be shorter and the blocks a few fewer than aimed at
/// (never fewer than the threads).
const SPREAD_BLOCKS_PER_THREAD: usize = 2;

/// Shares per thread the columns are cut into when the rows are too few to spread, so that
/// shares that finish early leave no thread idle for long.
const COLUMN_SHARES_PER_THREAD: usize = 4;

/// Rows of a neighbour block at most when blocks are not spread: the tile is then at least
/// 4096 columns wide, and the selection's per-row state stays small.
const SINGLE_BLOCK_ROWS: usize = 256;

/// Columns a share holds at least when the columns are cut into shares: enough for the
/// per-share cost (its own candidates, merged at the end) to vanish against its scoring.
const MIN_SHARE_COLUMNS: usize = 4096;

/// Threads in the pool the computation runs on.
fn threads() -> usize {
    rayon::current_num_threads()
}

/// How one GEMM of `work` multiply-adds uses threads: the product's threading (faer's, or
/// OpenBLAS in shares of rows) from [`PARALLEL_WORK`] (when there is more than one thread),
/// else sequential.
pub(crate) fn gemm_par(work: usize) -> Par {
    if work >= PARALLEL_WORK && threads() > 1 {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

/// Whether per-pair scores of `work` multiply-adds are spread over the threads.
pub(crate) fn pairs_in_parallel(work: usize) -> bool {
    work >= PARALLEL_WORK
}

/// For a dense result of `rows` rows and `work` multiply-adds: the rows of each thread's
/// share when the result is split (from `split_work`, [`SPLIT_WORK`] in service, with more
/// than one thread and at least a row per thread), or `None` to go a block at a time
/// through [`gemm_par`].
pub(crate) fn dense_shares(rows: usize, work: usize, split_work: usize) -> Option<usize> {
    let threads = threads();
    (work >= split_work && threads > 1 && rows >= threads).then(|| rows.div_ceil(threads))
}

/// How a neighbour selection over `rows` rows of `a` and `work` multiply-adds is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NeighbourBlocks {
    /// Rows of `a` per block.
    pub rows: usize,
    /// Whether blocks run side by side, one per thread at a time (each block's GEMM
    /// sequential), rather than one after another (each block's GEMM through [`gemm_par`]).
    pub spread: bool,
    /// When blocks are not spread: the shares the columns are cut into, scored side by side
    /// (each GEMM sequential) and merged; 1 for no cut.
    pub column_shares: usize,
}

/// Cuts a neighbour selection: blocks are spread over the threads when the work is worth it
/// and the rows are enough for two blocks of [`MIN_SPREAD_BLOCK_ROWS`] per thread (their
/// height is then the rows over a multiple of the threads, at least
/// [`SPREAD_BLOCKS_PER_THREAD`] per thread, rounded up, at most [`SPREAD_BLOCK_ROWS`]);
/// otherwise the rows go in blocks of up to [`SINGLE_BLOCK_ROWS`], one after another, each
/// with its `cols` columns cut into [`COLUMN_SHARES_PER_THREAD`] shares per thread of at
/// least [`MIN_SHARE_COLUMNS`] when the work is worth spreading.
pub(crate) fn neighbour_blocks(rows: usize, cols: usize, work: usize) -> NeighbourBlocks {
    let threads = threads();
    let worth_spreading = work >= PARALLEL_WORK && threads > 1;
    let block = if worth_spreading && rows >= 2 * threads * MIN_SPREAD_BLOCK_ROWS {
        let aimed_blocks = rows
            .div_ceil(SPREAD_BLOCK_ROWS)
            .next_multiple_of(threads)
            .max(threads * SPREAD_BLOCKS_PER_THREAD);
        rows.div_ceil(aimed_blocks)
    } else {
        rows.clamp(1, SINGLE_BLOCK_ROWS)
    };
    let spread = worth_spreading && rows.div_ceil(block) >= threads;
    let column_shares = if worth_spreading && !spread {
        (threads * COLUMN_SHARES_PER_THREAD)
            .min(cols / MIN_SHARE_COLUMNS)
            .max(1)
    } else {
        1
    };
    NeighbourBlocks {
        rows: block,
        spread,
        column_shares,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_threads<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap();
        pool.install(f)
    }

    #[test]
    fn small_work_stays_on_one_thread() {
        with_threads(2, || {
            assert!(matches!(gemm_par(PARALLEL_WORK - 1), Par::Seq));
            assert!(matches!(gemm_par(PARALLEL_WORK), Par::Rayon(_)));
            assert!(!pairs_in_parallel(PARALLEL_WORK - 1));
            assert_eq!(
                neighbour_blocks(10_000, 10_000, PARALLEL_WORK - 1),
                NeighbourBlocks {
                    rows: SINGLE_BLOCK_ROWS,
                    spread: false,
                    column_shares: 1,
                }
            );
        });
        with_threads(1, || assert!(matches!(gemm_par(usize::MAX), Par::Seq)));
    }

    #[test]
    fn dense_results_are_split_into_one_share_per_thread_from_the_split_work() {
        with_threads(2, || {
            assert_eq!(dense_shares(101, SPLIT_WORK, SPLIT_WORK), Some(51));
            assert_eq!(dense_shares(101, SPLIT_WORK - 1, SPLIT_WORK), None);
            assert_eq!(dense_shares(1, SPLIT_WORK, SPLIT_WORK), None);
        });
        with_threads(1, || assert_eq!(dense_shares(101, usize::MAX, 0), None));
    }

    #[test]
    fn neighbour_rows_are_spread_in_blocks_of_about_equal_height_up_to_256_rows() {
        with_threads(2, || {
            let work = PARALLEL_WORK;
            let spread = |rows| NeighbourBlocks {
                rows,
                spread: true,
                column_shares: 1,
            };
            // Two blocks per thread while they fit in 256 rows.
            assert_eq!(neighbour_blocks(200, 100_000, work), spread(50));
            assert_eq!(neighbour_blocks(1024, 100_000, work), spread(256));
            // Then more blocks, a multiple of the threads, as tall as the rows allow: 1100
            // rows go in six blocks of at most 184, not four of 256 and one of 76.
            assert_eq!(neighbour_blocks(1100, 100_000, work), spread(184));
            // Never taller than 256 rows: 100,000 rows aim at 392 blocks and fill 391.
            assert_eq!(neighbour_blocks(100_000, 10, work), spread(256));
            // Fewer than two blocks of 8 rows per thread: one block, its columns in shares.
            assert_eq!(
                neighbour_blocks(31, 10 * MIN_SHARE_COLUMNS, work),
                NeighbourBlocks {
                    rows: 31,
                    spread: false,
                    column_shares: 2 * COLUMN_SHARES_PER_THREAD,
                }
            );
            assert_eq!(
                neighbour_blocks(1, MIN_SHARE_COLUMNS, work).column_shares,
                1,
                "too few columns to cut"
            );
        });
        with_threads(3, || {
            // 1700 rows on three threads: nine blocks of at most 189 (on two, eight of 213).
            assert_eq!(neighbour_blocks(1700, 100_000, PARALLEL_WORK).rows, 189);
        });
        with_threads(1, || {
            assert_eq!(neighbour_blocks(1, 1 << 20, usize::MAX).column_shares, 1);
        });
    }
}
