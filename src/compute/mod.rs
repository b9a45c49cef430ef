//! Pure similarity math: ndarray views in, arrays out.
//!
//! Nothing in here knows about HTTP, JSON or async runtimes. Callers hand over validated,
//! finite `f32` matrices (rows are vectors) and get scores back.
//!
//! - [`Metric`] says what a score means: cosine and dot are similarities (greater — closer),
//!   euclidean and manhattan are distances (smaller — closer).
//! - [`pairwise`] scores row *i* of `a` with row *i* of `b`, [`pairs`] scores chosen
//!   `(row of a, row of b)` index pairs, [`matrix`] scores every row of `a` with every row of `b`.
//! - [`nearest`] keeps, per row of `a`, the top-k and/or above-threshold rows of `b` without
//!   materialising the whole matrix.
//!
//! Results that do not fit in `f32` (a dot product of huge vectors, say) are reported as
//! [`ComputeError::Overflow`] rather than returned as infinities.
//!
//! Files: `metric.rs` (what a score means, the norm floor), `operand.rs` (sides and their
//! norms), `scorer.rs` (operands prepared once, scored a tile at a time), `dense.rs` (whole
//! results), `neighbours.rs` (top-k and threshold selection), `threads.rs` (the one thread
//! policy), `gemm.rs` (the matrix product), `blas.rs` (OpenBLAS for it, when the host has
//! it), `reduce.rs` (direct per-pair kernels), `rows.rs`, `ragged.rs`, `cancel.rs` (their
//! types); `reference.rs` (the `f64` test reference) and `properties.rs` (kernels against
//! it) are tests only.

pub mod blas;
mod cancel;
mod dense;
mod gemm;
mod metric;
mod neighbours;
mod operand;
mod ragged;
mod reduce;
mod rows;
mod scorer;
mod threads;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod reference;

pub use cancel::Cancel;
pub use dense::{matrices, matrix, pairs, pairwise};
pub use metric::Metric;
pub use neighbours::{Neighbours, Selection, nearest};
pub use operand::{Norms, Operand};
pub use ragged::Ragged;

impl ComputeError {
    /// The error with its position placed in set `set` (`[row][col]` becomes
    /// `[set][row][col]`).
    pub fn in_set(self, set: usize) -> Self {
        match self {
            ComputeError::Overflow { mut at } => {
                at.insert(0, set);
                ComputeError::Overflow { at }
            }
            other => other,
        }
    }

    /// The error with the set dropped from its position, for input that had no set axis.
    pub fn without_set(self) -> Self {
        match self {
            ComputeError::Overflow { at } if at.len() == 3 => ComputeError::Overflow {
                at: at[1..].to_vec(),
            },
            other => other,
        }
    }
}

/// Formats an index path as `[1][2]`.
struct Index<'a>(&'a [usize]);

impl std::fmt::Display for Index<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|i| write!(f, "[{i}]"))
    }
}

/// Why a computation produced no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComputeError {
    /// A score is too large in magnitude for `f32`.
    #[error("the score at {} overflows float32", Index(.at))]
    Overflow {
        /// Where in the result: `[pair]`, `[row, col]` or `[set, row, col]`.
        at: Vec<usize>,
    },
    /// The computation was cancelled (deadline passed, or the client went away).
    #[error("the computation was cancelled")]
    Cancelled,
    /// A result buffer did not have the expected shape: a bug, not the caller's fault.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// Threshold selection would return more than the allowed number of entries.
    #[error("the selection holds more than {limit} entries")]
    TooManyResults {
        /// The most entries allowed.
        limit: usize,
    },
}
