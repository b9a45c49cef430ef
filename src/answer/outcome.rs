//! [`Outcome`]: what a job computed, before any encoding. The native JSON answer
//! ([`super::json::encode`]) and the Open Inference Protocol answer ([`super::infer`]) are
//! two encoders of this one result.

use ndarray::ArrayD;

use super::Encoding;
use super::json::{DenseField, IdLookup, IdsField};
use crate::compute::{Metric, Neighbours};

/// A job's result, with what its answers say about it.
pub struct Outcome {
    /// The metric the scores are in.
    pub metric: Metric,
    /// How the native answer writes float tensors (`response_encoding`).
    pub encoding: Encoding,
    /// The tables read and their versions, each once, in the order first read.
    pub tables: Vec<(String, String)>,
    /// The numbers.
    pub result: Computed,
}

/// The numbers of an [`Outcome`].
pub enum Computed {
    /// Scores or a matrix, row-major.
    Dense {
        /// Which field holds them in the native answer.
        field: DenseField,
        /// The values, in the shape the client sees.
        values: ArrayD<f32>,
    },
    /// Top-k / threshold neighbours of every row of every set.
    Neighbours {
        /// One entry per set (one unless the input was rank 3).
        sets: Vec<Neighbours>,
        /// Whether the input was rank 3, so answers keep the set axis.
        batched: bool,
        /// The ids of the listed rows, and where the native answer puts them.
        ids: Option<(IdsField, Box<dyn IdLookup + Send>)>,
    },
}

impl std::fmt::Debug for Computed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Computed::Dense { field, values } => f
                .debug_struct("Dense")
                .field("field", field)
                .field("shape", &values.shape())
                .finish(),
            Computed::Neighbours { sets, batched, ids } => f
                .debug_struct("Neighbours")
                .field("sets", &sets.len())
                .field("batched", batched)
                .field("ids", &ids.as_ref().map(|(field, _)| *field))
                .finish(),
        }
    }
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("metric", &self.metric)
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

impl Outcome {
    /// A dense result: `values` under `field`.
    pub fn dense(
        metric: Metric,
        encoding: Encoding,
        field: DenseField,
        values: ArrayD<f32>,
        tables: Vec<(String, String)>,
    ) -> Self {
        Outcome {
            metric,
            encoding,
            tables,
            result: Computed::Dense { field, values },
        }
    }
}
