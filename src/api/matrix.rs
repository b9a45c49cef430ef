//! `POST /similarity/matrix`: every row of `a` with every row of `b` (or of `a` itself), for
//! one set or for `B` sets at once, as a dense matrix or as top-k / above-threshold neighbours.

use std::num::NonZeroUsize;

use serde::Deserialize;

use super::validate::{self, invalid, same_dim, unready};
use super::{Context, Operation};
use crate::admission::estimate;
use crate::answer::Encoding;
use crate::answer::json::{DenseField, IdLookup, IdsField};
use crate::answer::outcome::{Computed, Outcome};
use crate::body::{TensorFields, fields};
use crate::compute::{self, Cancel, Metric, Neighbours, Selection};
use crate::error::ApiError;
use crate::tables::{Embeddings, Ids};
use crate::tensor::Input;

/// The request body; the Open Inference Protocol route builds it from its inputs and
/// parameters ([`super::v2`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixRequest {
    #[serde(deserialize_with = "fields::a_matrix_or_sets")]
    pub(in crate::api) a: Input,
    #[serde(default, deserialize_with = "fields::some_b_matrix_or_sets")]
    pub(in crate::api) b: Option<Input>,
    #[serde(default, deserialize_with = "fields::metric")]
    pub(in crate::api) metric: Metric,
    #[serde(default, deserialize_with = "fields::some_top_k")]
    pub(in crate::api) top_k: Option<NonZeroUsize>,
    #[serde(default, deserialize_with = "fields::some_threshold")]
    pub(in crate::api) threshold: Option<f32>,
    #[serde(default, deserialize_with = "fields::exclude_self")]
    pub(in crate::api) exclude_self: bool,
    #[serde(default, deserialize_with = "fields::encoding")]
    pub(in crate::api) response_encoding: Encoding,
}

impl TensorFields for MatrixRequest {
    const TENSORS: &'static [&'static str] = &["a", "b"];
}

/// A validated matrix job over `B` sets (`B = 1` for rank-2 input and tables).
#[derive(Debug)]
pub struct MatrixJob {
    a: Embeddings,
    /// `None`: `a` against itself.
    b: Option<Embeddings>,
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

    fn parse(req: MatrixRequest, context: &Context) -> Result<Self, ApiError> {
        let max_output = context.limits.max_output_elements;
        // A table reference is one matrix: rank 2.
        let rank = |input: &Input| match input {
            Input::Tensor(tensor) => tensor.rank(),
            Input::Table(_) => 2,
        };
        let (a_rank, b_rank) = (rank(&req.a), req.b.as_ref().map(rank));
        let batched = a_rank == 3;
        let a = validate::embeddings(context, "a", req.a)?;
        let b = req
            .b
            .map(|b| validate::embeddings(context, "b", b))
            .transpose()?;
        if let (Some(b), Some(b_rank)) = (&b, b_rank) {
            if b_rank != a_rank {
                return Err(invalid(format!(
                    "b: has rank {b_rank}, but a has rank {a_rank}"
                )));
            }
            if batched && b.sets() != a.sets() {
                return Err(invalid(format!(
                    "b: has {} sets, but a has {}",
                    b.sets(),
                    a.sets()
                )));
            }
            same_dim(("a", &a), ("b", b))?;
        }
        let (k, threshold) = (req.top_k.map(NonZeroUsize::get), req.threshold);
        if req.exclude_self && b.is_some() {
            return Err(invalid(
                "exclude_self: applies only when b is omitted (a against itself)",
            ));
        }
        if req.exclude_self && k.is_none() && threshold.is_none() {
            return Err(invalid(
                "exclude_self: applies only with top_k or threshold",
            ));
        }

        let (sets, n) = (a.sets(), a.rows());
        let m = b.as_ref().map_or(n, Embeddings::rows);
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
                let listed = b.as_ref().unwrap_or(&a);
                let mut max_entries = max_output;
                if let Some(ids) = listed.table().and_then(|t| t.ids()) {
                    let field = if b.is_some() { "b" } else { "a" };
                    match k {
                        Some(k) => {
                            let width = k.min(m);
                            validate::id_budget(field, ids.longest(), sets * n, width, max_output)?
                        }
                        None => {
                            max_entries = validate::entries_listing_ids(ids.longest(), max_output)
                        }
                    }
                }
                Output::Neighbours(Selection {
                    k,
                    threshold,
                    exclude_self: req.exclude_self,
                    exclude: None,
                    max_entries,
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

    fn lookups(request: &MatrixRequest) -> usize {
        request.a.rows_picked() + request.b.as_ref().map_or(0, Input::rows_picked)
    }

    fn record_size(&self, span: &tracing::Span) {
        span.record("sets", self.a.sets())
            .record("rows", self.a.rows())
            .record("dim", self.a.dim());
    }

    /// Multiply-adds the job takes.
    fn work(&self) -> usize {
        let m = self.b.as_ref().unwrap_or(&self.a).rows();
        let a = &self.a;
        a.sets()
            .saturating_mul(a.rows())
            .saturating_mul(a.dim())
            .saturating_mul(m)
    }

    /// Bytes the job holds while it runs.
    fn estimate(&self) -> usize {
        let inputs = self
            .a
            .held_values()
            .saturating_add(self.b.as_ref().map_or(0, Embeddings::held_values));
        let (sets, n) = (self.a.sets(), self.a.rows());
        let m = self.b.as_ref().unwrap_or(&self.a).rows();
        let pairs = sets.saturating_mul(n).saturating_mul(m);
        let (numbers, ids) = match &self.output {
            Output::Dense => (pairs, 0),
            Output::Neighbours(keep) => {
                let entries = keep
                    .k
                    .map_or(pairs, |k| {
                        pairs.min(sets.saturating_mul(n).saturating_mul(k))
                    })
                    .min(keep.max_entries);
                // With the ids of a table's rows listed beside them.
                let listed = self.b.as_ref().unwrap_or(&self.a);
                let longest_text = listed.table().and_then(|t| t.ids()).map(Ids::longest_text);
                let ids = longest_text.map_or(0, |text| estimate::listed_ids(entries, text));
                let lists = estimate::neighbour_lists(sets, n);
                (entries.saturating_mul(2), ids.saturating_add(lists))
            }
        };
        estimate::job(inputs, self.work(), numbers, self.encoding).saturating_add(ids)
    }

    fn run(mut self, cancel: &Cancel) -> Result<Outcome, ApiError> {
        validate::gather(&mut [Some(&mut self.a), self.b.as_mut()])?;
        let versions = validate::versions(&[Some(&self.a), self.b.as_ref()]);
        let (a, b) = (&self.a, self.b.as_ref());
        let keep = match self.output {
            Output::Dense => {
                let result = if self.batched {
                    let b = b.map(|b| b.inline_sets().ok_or_else(unready)).transpose()?;
                    let a = a.inline_sets().ok_or_else(unready)?;
                    compute::matrices(a, b, self.metric, cancel)?.into_dyn()
                } else {
                    let a = a.operand(0).ok_or_else(unready)?;
                    let b = b.map(|b| b.operand(0).ok_or_else(unready)).transpose()?;
                    compute::matrix(a, b, self.metric, cancel)?.into_dyn()
                };
                return Ok(Outcome::dense(
                    self.metric,
                    self.encoding,
                    DenseField::Matrix,
                    result,
                    versions,
                ));
            }
            Output::Neighbours(keep) => keep,
        };
        let mut sets: Vec<Neighbours> = Vec::with_capacity(a.sets());
        let ids_listed = b.unwrap_or(a).has_ids();
        let mut left = keep.max_entries;
        for s in 0..a.sets() {
            let set_a = a.operand(s).ok_or_else(unready)?;
            let set_b = b.map(|b| b.operand(s).ok_or_else(unready)).transpose()?;
            let selection = Selection {
                max_entries: left,
                ..keep.clone()
            };
            let found =
                compute::nearest(set_a, set_b, self.metric, &selection, cancel).map_err(|err| {
                    let err = if self.batched { err.in_set(s) } else { err };
                    validate::too_many_entries(err, keep.max_entries, ids_listed)
                })?;
            left -= found.indices.total();
            sets.push(found);
        }
        // The listed side goes with the answer when its rows have ids to list.
        let listed = self.b.unwrap_or(self.a);
        let ids = listed.has_ids().then(|| {
            let ids: Box<dyn IdLookup + Send> = Box::new(listed);
            (IdsField::Ids, ids)
        });
        Ok(Outcome {
            metric: self.metric,
            encoding: self.encoding,
            tables: versions,
            result: Computed::Neighbours {
                sets,
                batched: self.batched,
                ids,
            },
        })
    }
}
