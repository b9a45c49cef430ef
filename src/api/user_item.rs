//! `POST /similarity/user-item`: user embeddings against item embeddings, as scores for
//! chosen `(user, item)` pairs, top-k / above-threshold items per user (leaving out items
//! already seen), or the full users × items matrix.

use std::num::NonZeroUsize;

use ndarray::Array2;
use serde::Deserialize;

use super::Operation;
use super::validate::{self, invalid, same_dim};
use crate::admission::estimate;
use crate::answer::Encoding;
use crate::answer::json::{self, DenseField};
use crate::body::fields;
use crate::compute::{self, Cancel, Metric, Ragged, Selection};
use crate::error::ApiError;
use crate::state::Limits;
use crate::tensor::Tensor;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserItemRequest {
    #[serde(deserialize_with = "fields::users_matrix")]
    users: Tensor,
    #[serde(deserialize_with = "fields::items_matrix")]
    items: Tensor,
    #[serde(default, deserialize_with = "fields::metric")]
    metric: Metric,
    #[serde(default, deserialize_with = "fields::some_pair_indices")]
    pairs: Option<Ragged<usize>>,
    #[serde(default, deserialize_with = "fields::some_top_k")]
    top_k: Option<NonZeroUsize>,
    #[serde(default, deserialize_with = "fields::some_threshold")]
    threshold: Option<f32>,
    #[serde(default, deserialize_with = "fields::some_exclude_indices")]
    exclude: Option<Ragged<usize>>,
    #[serde(default, deserialize_with = "fields::some_item_ids")]
    item_ids: Option<Vec<String>>,
    #[serde(default, deserialize_with = "fields::encoding")]
    response_encoding: Encoding,
}

/// A validated user–item job: equal dimensions, every index in range.
#[derive(Debug)]
pub struct UserItemJob {
    users: Array2<f32>,
    items: Array2<f32>,
    metric: Metric,
    output: Output,
    encoding: Encoding,
}

#[derive(Debug)]
enum Output {
    Dense,
    Pairs(Vec<(usize, usize)>),
    /// What to keep per user (its `exclude` is filled from `exclude` when run).
    Neighbours {
        keep: Selection<'static>,
        exclude: Option<Ragged<usize>>,
        item_ids: Option<Vec<String>>,
    },
}

/// Checks `pairs` against `u` users and `i` items.
fn pairs(lists: &Ragged<usize>, u: usize, i: usize) -> Result<Vec<(usize, usize)>, ApiError> {
    lists
        .rows()
        .enumerate()
        .map(|(p, pair)| match *pair {
            [user, _] if user >= u => Err(invalid(format!(
                "pairs[{p}][0]: user index {user} is out of range for {u} users"
            ))),
            [_, item] if item >= i => Err(invalid(format!(
                "pairs[{p}][1]: item index {item} is out of range for {i} items"
            ))),
            [user, item] => Ok((user, item)),
            _ => Err(invalid(format!(
                "pairs[{p}]: expected [user_index, item_index], found {} values",
                pair.len()
            ))),
        })
        .collect()
}

/// Checks `exclude`: one list per user, every index an item.
fn exclude(lists: &Ragged<usize>, u: usize, i: usize) -> Result<(), ApiError> {
    if lists.len() != u {
        return Err(invalid(format!(
            "exclude: has {} lists, expected one per user ({u})",
            lists.len()
        )));
    }
    for (user, list) in lists.rows().enumerate() {
        if let Some((at, item)) = list.iter().enumerate().find(|&(_, &item)| item >= i) {
            return Err(invalid(format!(
                "exclude[{user}][{at}]: item index {item} is out of range for {i} items"
            )));
        }
    }
    Ok(())
}

/// Refuses `item_ids` whose repetition in `items` (up to `width` ids for each of `users`)
/// could exceed the output limit, counting 8 bytes of id as one number.
fn id_budget(ids: &[String], users: usize, width: usize, limit: usize) -> Result<(), ApiError> {
    let longest = ids.iter().map(String::len).max().unwrap_or(0);
    let units = longest.div_ceil(8).max(1);
    let size = users.checked_mul(width).and_then(|n| n.checked_mul(units));
    match size {
        Some(size) if size <= limit => Ok(()),
        _ => Err(invalid(format!(
            "item_ids: listing up to {width} ids of up to {longest} bytes for each of {users} \
             users exceeds the output limit of {limit} numbers (8 bytes each); \
             lower top_k or use shorter ids"
        ))),
    }
}

/// `POST /similarity/user-item`.
impl Operation for UserItemJob {
    const PATH: &'static str = "/similarity/user-item";
    type Request = UserItemRequest;

    fn parse(req: UserItemRequest, limits: &Limits) -> Result<Self, ApiError> {
        let max_output = limits.max_output_elements;
        same_dim(("users", &req.users), ("items", &req.items))?;
        let (u, i) = (req.users.shape()[0], req.items.shape()[0]);
        let (k, threshold) = (req.top_k.map(NonZeroUsize::get), req.threshold);
        let neighbours = k.is_some() || threshold.is_some();

        let output = if let Some(lists) = req.pairs {
            if neighbours || req.exclude.is_some() || req.item_ids.is_some() {
                return Err(invalid(
                    "pairs: cannot be combined with top_k, threshold, exclude or item_ids",
                ));
            }
            validate::output_size(&[lists.len()], max_output, "send fewer pairs")?;
            Output::Pairs(pairs(&lists, u, i)?)
        } else if neighbours {
            if let Some(lists) = &req.exclude {
                exclude(lists, u, i)?;
            }
            if let Some(ids) = &req.item_ids
                && ids.len() != i
            {
                return Err(invalid(format!(
                    "item_ids: has {} ids, expected one per item ({i})",
                    ids.len()
                )));
            }
            if let Some(k) = k {
                validate::output_size(&[u, k.min(i)], max_output, "lower top_k")?;
            }
            if let Some(ids) = &req.item_ids {
                id_budget(ids, u, k.map_or(i, |k| k.min(i)), max_output)?;
            }
            Output::Neighbours {
                keep: Selection {
                    k,
                    threshold,
                    max_entries: max_output,
                    ..Selection::default()
                },
                exclude: req.exclude,
                item_ids: req.item_ids,
            }
        } else {
            if req.exclude.is_some() || req.item_ids.is_some() {
                return Err(invalid(
                    "exclude and item_ids: apply only with top_k or threshold",
                ));
            }
            validate::output_size(&[u, i], max_output, "ask for top_k or threshold instead")?;
            Output::Dense
        };
        Ok(UserItemJob {
            users: validate::matrix("users", req.users)?,
            items: validate::matrix("items", req.items)?,
            metric: req.metric,
            output,
            encoding: req.response_encoding,
        })
    }

    fn record_size(&self, span: &tracing::Span) {
        span.record("users", self.users.nrows())
            .record("items", self.items.nrows())
            .record("dim", self.users.ncols());
    }

    /// Multiply-adds the job takes.
    fn work(&self) -> usize {
        let dim = self.users.ncols();
        match &self.output {
            Output::Pairs(pairs) => pairs.len().saturating_mul(dim),
            _ => self.users.len().saturating_mul(self.items.nrows()),
        }
    }

    /// Bytes the job holds while it runs.
    fn estimate(&self) -> usize {
        let inputs = self.users.len() + self.items.len();
        let (u, i) = (self.users.nrows(), self.items.nrows());
        let numbers = match &self.output {
            Output::Dense => u.saturating_mul(i),
            Output::Pairs(pairs) => pairs.len(),
            Output::Neighbours { keep, item_ids, .. } => {
                let entries = keep.k.map_or(u.saturating_mul(i), |k| u * k.min(i));
                // An id is held once per listing, counted in numbers of 8 bytes.
                let id_units = item_ids
                    .as_ref()
                    .and_then(|ids| ids.iter().map(String::len).max())
                    .map_or(0, |longest| longest.div_ceil(8));
                (2 + id_units).saturating_mul(entries.min(keep.max_entries))
            }
        };
        // What the request holds besides its tensors: pairs, exclude lists and item ids.
        let extra = match &self.output {
            Output::Dense => 0,
            Output::Pairs(pairs) => pairs.len().saturating_mul(16),
            Output::Neighbours {
                exclude, item_ids, ..
            } => {
                let lists = exclude
                    .as_ref()
                    .map_or(0, |e| (e.total() + e.len() + 1).saturating_mul(8));
                let ids = item_ids.as_ref().map_or(0, |ids| {
                    ids.iter()
                        .map(|id| 24 + id.len())
                        .fold(0, usize::saturating_add)
                });
                lists.saturating_add(ids)
            }
        };
        estimate::job(inputs, self.work(), numbers, self.encoding).saturating_add(extra)
    }

    fn run(self, cancel: &Cancel) -> Result<Vec<u8>, ApiError> {
        let (users, items, metric) = (self.users.view(), self.items.view(), self.metric);
        match self.output {
            Output::Dense => {
                let result = compute::matrix(users, Some(items), metric, cancel)?;
                let shape = result.shape().to_vec();
                cancel.check()?;
                json::dense(
                    metric,
                    self.encoding,
                    DenseField::Matrix,
                    &shape,
                    result.view(),
                )
            }
            Output::Pairs(pairs) => {
                let scores = compute::pairs(users, items, &pairs, metric, cancel)?;
                let shape = [scores.len()];
                cancel.check()?;
                json::dense(
                    metric,
                    self.encoding,
                    DenseField::Scores,
                    &shape,
                    scores.view(),
                )
            }
            Output::Neighbours {
                keep,
                exclude,
                item_ids,
            } => {
                let selection = Selection {
                    exclude: exclude.as_ref(),
                    ..keep
                };
                let found = compute::nearest(users, Some(items), metric, &selection, cancel)?;
                let sets = [found];
                cancel.check()?;
                json::neighbours(metric, self.encoding, &sets, false, item_ids.as_deref())
            }
        }
    }
}
