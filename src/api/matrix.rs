//! `POST /similarity/matrix`: every row of `a` with every row of `b` (or of `a` itself), for
//! one set or for `B` sets at once, as a dense matrix or as top-k / above-threshold neighbours.

use std::num::NonZeroUsize;

use ndarray::{Array3, Axis};
use serde::Deserialize;

use super::Operation;
use super::validate::{self, invalid, same_dim};
use crate::admission::estimate;
use crate::answer::Encoding;
use crate::answer::json::{self, DenseField};
use crate::body::fields;
use crate::compute::{self, Cancel, Metric, Neighbours, Selection};
use crate::error::ApiError;
use crate::state::Limits;
use crate::tensor::Tensor;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixRequest {
    #[serde(deserialize_with = "fields::a_matrix_or_sets")]
    a: Tensor,
    #[serde(default, deserialize_with = "fields::some_b_matrix_or_sets")]
    b: Option<Tensor>,
    #[serde(default, deserialize_with = "fields::metric")]
    metric: Metric,
    #[serde(default, deserialize_with = "fields::some_top_k")]
    top_k: Option<NonZeroUsize>,
    #[serde(default, deserialize_with = "fields::some_threshold")]
    threshold: Option<f32>,
    #[serde(default, deserialize_with = "fields::exclude_self")]
    exclude_self: bool,
    #[serde(default, deserialize_with = "fields::encoding")]
    response_encoding: Encoding,
}

/// A validated matrix job over `B` sets (`B = 1` for rank-2 input).
#[derive(Debug)]
pub struct MatrixJob {
    a: Array3<f32>,
    /// `None`: `a` against itself.
    b: Option<Array3<f32>>,
    /// Whether the input was rank 3, so the output keeps the set axis.
    batched: bool,
    metric: Metric,
    output: Output,
    encoding: Encoding,
}

#[derive(Debug)]
enum Output {
    Dense,
    /// What to keep per row; `max_entries` is shared by all sets.
    Neighbours(Selection<'static>),
}

/// `POST /similarity/matrix`.
impl Operation for MatrixJob {
    const PATH: &'static str = "/similarity/matrix";
    type Request = MatrixRequest;

    fn parse(req: MatrixRequest, limits: &Limits) -> Result<Self, ApiError> {
        let max_output = limits.max_output_elements;
        let batched = req.a.rank() == 3;
        if let Some(b) = &req.b {
            if b.rank() != req.a.rank() {
                return Err(invalid(format!(
                    "b: has rank {}, but a has rank {}",
                    b.rank(),
                    req.a.rank()
                )));
            }
            if batched && b.shape()[0] != req.a.shape()[0] {
                return Err(invalid(format!(
                    "b: has {} sets, but a has {}",
                    b.shape()[0],
                    req.a.shape()[0]
                )));
            }
            same_dim(("a", &req.a), ("b", b))?;
        }
        let (k, threshold) = (req.top_k.map(NonZeroUsize::get), req.threshold);
        if req.exclude_self && req.b.is_some() {
            return Err(invalid(
                "exclude_self: applies only when b is omitted (a against itself)",
            ));
        }
        if req.exclude_self && k.is_none() && threshold.is_none() {
            return Err(invalid(
                "exclude_self: applies only with top_k or threshold",
            ));
        }

        let a = validate::sets("a", req.a)?;
        let b = req.b.map(|b| validate::sets("b", b)).transpose()?;
        let (sets, n) = (a.len_of(Axis(0)), a.len_of(Axis(1)));
        let m = b.as_ref().map_or(n, |b| b.len_of(Axis(1)));
        // The result's dimensions as the client will see them.
        let dims = |width| {
            if batched {
                vec![sets, n, width]
            } else {
                vec![n, width]
            }
        };
        let output = match (k, threshold) {
            (None, None) => {
                validate::output_size(&dims(m), max_output, "ask for top_k or threshold instead")?;
                Output::Dense
            }
            (k, threshold) => {
                if let Some(k) = k {
                    let width = k.min(m);
                    validate::output_size(&dims(width), max_output, "lower top_k")?;
                }
                Output::Neighbours(Selection {
                    k,
                    threshold,
                    exclude_self: req.exclude_self,
                    exclude: None,
                    max_entries: max_output,
                })
            }
        };
        Ok(MatrixJob {
            a,
            b,
            batched,
            metric: req.metric,
            output,
            encoding: req.response_encoding,
        })
    }

    fn record_size(&self, span: &tracing::Span) {
        let (sets, rows, dim) = self.a.dim();
        span.record("sets", sets)
            .record("rows", rows)
            .record("dim", dim);
    }

    /// Multiply-adds the job takes.
    fn work(&self) -> usize {
        let m = self.b.as_ref().unwrap_or(&self.a).len_of(Axis(1));
        self.a.len().saturating_mul(m)
    }

    /// Bytes the job holds while it runs.
    fn estimate(&self) -> usize {
        let inputs = self.a.len() + self.b.as_ref().map_or(0, |b| b.len());
        let (sets, n) = (self.a.len_of(Axis(0)), self.a.len_of(Axis(1)));
        let m = self.b.as_ref().unwrap_or(&self.a).len_of(Axis(1));
        let pairs = sets.saturating_mul(n).saturating_mul(m);
        let numbers = match &self.output {
            Output::Dense => pairs,
            Output::Neighbours(keep) => {
                let entries = keep.k.map_or(pairs, |k| sets * n * k.min(m));
                2 * entries.min(keep.max_entries)
            }
        };
        estimate::job(inputs, self.work(), numbers, self.encoding)
    }

    fn run(self, cancel: &Cancel) -> Result<Vec<u8>, ApiError> {
        let (a, b) = (self.a.view(), self.b.as_ref().map(|b| b.view()));
        match self.output {
            Output::Dense => {
                let batched = self.batched;
                let result = compute::matrices(a, b, self.metric, cancel)
                    .map_err(|err| if batched { err } else { err.without_set() })?;
                let mut shape = result.shape().to_vec();
                if !self.batched {
                    shape.remove(0);
                }
                cancel.check()?;
                json::dense(
                    self.metric,
                    self.encoding,
                    DenseField::Matrix,
                    &shape,
                    result.view(),
                )
            }
            Output::Neighbours(ref keep) => {
                let mut sets: Vec<Neighbours> = Vec::with_capacity(a.len_of(Axis(0)));
                let mut left = keep.max_entries;
                for (s, set_a) in a.outer_iter().enumerate() {
                    let set_b = self.b.as_ref().map(|b| b.index_axis(Axis(0), s));
                    let selection = Selection {
                        max_entries: left,
                        ..keep.clone()
                    };
                    let found = compute::nearest(set_a, set_b, self.metric, &selection, cancel)
                        .map_err(|err| if self.batched { err.in_set(s) } else { err })?;
                    left -= found.indices.total();
                    sets.push(found);
                }
                cancel.check()?;
                json::neighbours(self.metric, self.encoding, &sets, self.batched, None)
            }
        }
    }
}
