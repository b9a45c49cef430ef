//! `POST /similarity/pairwise`: row i of `a` with row i of `b`, or the two vectors of each
//! entry of `pairs` (the `(batch, 2, dim)` layout of a Keras `Lambda` layer).

use ndarray::{Array3, ArrayView2, Axis};
use serde::Deserialize;

use super::validate::{self, invalid, same_dim, unready};
use super::{Context, Operation};
use crate::admission::estimate;
use crate::answer::Encoding;
use crate::answer::json::DenseField;
use crate::answer::outcome::Outcome;
use crate::body::{TensorFields, fields};
use crate::compute::{self, Cancel, Metric};
use crate::error::ApiError;
use crate::tables::Embeddings;
use crate::tensor::{Input, Tensor};

/// The request body; the Open Inference Protocol route builds it from its inputs and
/// parameters ([`super::v2`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairwiseRequest {
    #[serde(default, deserialize_with = "fields::some_a_matrix")]
    pub(in crate::api) a: Option<Input>,
    #[serde(default, deserialize_with = "fields::some_b_matrix")]
    pub(in crate::api) b: Option<Input>,
    #[serde(default, deserialize_with = "fields::some_pairs_tensor")]
    pub(in crate::api) pairs: Option<Tensor>,
    #[serde(default, deserialize_with = "fields::metric")]
    pub(in crate::api) metric: Metric,
    #[serde(default, deserialize_with = "fields::encoding")]
    pub(in crate::api) response_encoding: Encoding,
}

impl TensorFields for PairwiseRequest {
    const TENSORS: &'static [&'static str] = &["a", "b", "pairs"];
}

/// A validated pairwise job.
#[derive(Debug)]
pub struct PairwiseJob {
    operands: Operands,
    metric: Metric,
    encoding: Encoding,
}

/// What to compare: `a` and `b` have equal dimension, and equal row counts unless one of
/// them has a single row; `Pairs` is `n × 2 × d`.
#[derive(Debug)]
enum Operands {
    Rows(Embeddings, Embeddings),
    Pairs(Array3<f32>),
}

/// `pairs` as an `n × 2 × d` array.
fn pairs_of_two(pairs: Tensor) -> Result<Array3<f32>, ApiError> {
    let per_entry = pairs.shape()[1];
    if per_entry != 2 {
        return Err(invalid(format!(
            "pairs: each entry must hold exactly 2 vectors, found {per_entry} (shape [n][2][dim])"
        )));
    }
    pairs
        .into_sets()
        .ok_or_else(|| invalid("pairs: expected a tensor of rank 3"))
}

impl PairwiseJob {
    /// The two sides as `n × d` views (the second strided for `Pairs`); `None` until chosen
    /// table rows are gathered.
    fn sides(&self) -> Option<(ArrayView2<'_, f32>, ArrayView2<'_, f32>)> {
        match &self.operands {
            Operands::Rows(a, b) => Some((a.view(0)?, b.view(0)?)),
            Operands::Pairs(pairs) => {
                Some((pairs.index_axis(Axis(1), 0), pairs.index_axis(Axis(1), 1)))
            }
        }
    }

    /// Rows and dimension of the result's inputs.
    fn size(&self) -> (usize, usize) {
        match &self.operands {
            Operands::Rows(a, b) => (a.rows().max(b.rows()), a.dim()),
            Operands::Pairs(pairs) => (pairs.len_of(Axis(0)), pairs.len_of(Axis(2))),
        }
    }

    /// Values the job's inputs hold (a whole table counts nothing).
    fn held_values(&self) -> usize {
        match &self.operands {
            Operands::Rows(a, b) => a.held_values().saturating_add(b.held_values()),
            Operands::Pairs(pairs) => pairs.len(),
        }
    }
}

/// `POST /similarity/pairwise`.
impl Operation for PairwiseJob {
    const PATH: &'static str = "/similarity/pairwise";
    type Request = PairwiseRequest;

    fn parse(req: PairwiseRequest, context: &Context) -> Result<Self, ApiError> {
        let operands = match (req.a, req.b, req.pairs) {
            (Some(a), Some(b), None) => {
                let a = validate::embeddings(context, "a", a)?;
                let b = validate::embeddings(context, "b", b)?;
                same_dim(("a", &a), ("b", &b))?;
                let (n, m) = (a.rows(), b.rows());
                if n != m && n != 1 && m != 1 {
                    return Err(invalid(format!(
                        "b: has {m} rows but a has {n}; give equal counts, or one row on either side"
                    )));
                }
                Operands::Rows(a, b)
            }
            (None, None, Some(pairs)) => Operands::Pairs(pairs_of_two(pairs)?),
            (_, _, Some(_)) => {
                return Err(invalid("pairs: give either pairs, or a and b, not both"));
            }
            (None, _, None) => return Err(invalid("a: missing; give a and b, or pairs")),
            (_, None, None) => return Err(invalid("b: missing; give a and b, or pairs")),
        };
        let job = PairwiseJob {
            operands,
            metric: req.metric,
            encoding: req.response_encoding,
        };
        let max_output = context.limits.max_output_elements;
        validate::output_size(&[job.size().0], max_output, "send fewer rows")?;
        Ok(job)
    }

    fn lookups(request: &PairwiseRequest) -> usize {
        [&request.a, &request.b]
            .into_iter()
            .flatten()
            .map(Input::rows_picked)
            .sum()
    }

    fn record_size(&self, span: &tracing::Span) {
        let (rows, dim) = self.size();
        span.record("rows", rows).record("dim", dim);
    }

    fn work(&self) -> usize {
        let (rows, dim) = self.size();
        rows.saturating_mul(dim)
    }

    fn estimate(&self) -> usize {
        let (rows, _) = self.size();
        estimate::job(self.held_values(), self.work(), rows, self.encoding)
    }

    fn run(mut self, cancel: &Cancel) -> Result<Outcome, ApiError> {
        let versions = match &mut self.operands {
            Operands::Rows(a, b) => {
                validate::gather(&mut [Some(&mut *a), Some(&mut *b)])?;
                validate::versions(&[Some(a), Some(b)])
            }
            Operands::Pairs(_) => Vec::new(),
        };
        let (a, b) = self.sides().ok_or_else(unready)?;
        let scores = compute::pairwise(a, b, self.metric, cancel)?;
        Ok(Outcome::dense(
            self.metric,
            self.encoding,
            DenseField::Scores,
            scores.into_dyn(),
            versions,
        ))
    }
}
