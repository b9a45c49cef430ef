//! `POST /similarity/user-item`: user embeddings against item embeddings, as scores for
//! chosen `(user, item)` pairs, top-k / above-threshold items per user (leaving out items
//! already seen), or the full users × items matrix.

use std::num::NonZeroUsize;

use serde::Deserialize;

use super::validate::{self, invalid, same_dim, unready};
use super::{Context, Operation};
use crate::admission::estimate;
use crate::answer::Encoding;
use crate::answer::json::{DenseField, IdLookup, IdsField};
use crate::answer::outcome::{Computed, Outcome};
use crate::body::TensorFields;
use crate::body::fields::{self, Exclude};
use crate::compute::{self, Cancel, Metric, Ragged, Selection};
use crate::error::ApiError;
use crate::tables::{Embeddings, Ids};
use crate::tensor::{Input, Spelling, Strings};

/// The request body; the Open Inference Protocol route builds it from its inputs and
/// parameters ([`super::v2`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserItemRequest {
    #[serde(deserialize_with = "fields::users_matrix")]
    pub(in crate::api) users: Input,
    #[serde(deserialize_with = "fields::items_matrix")]
    pub(in crate::api) items: Input,
    #[serde(default, deserialize_with = "fields::metric")]
    pub(in crate::api) metric: Metric,
    #[serde(default, deserialize_with = "fields::some_pair_indices")]
    pub(in crate::api) pairs: Option<Ragged<usize>>,
    #[serde(default, deserialize_with = "fields::some_top_k")]
    pub(in crate::api) top_k: Option<NonZeroUsize>,
    #[serde(default, deserialize_with = "fields::some_threshold")]
    pub(in crate::api) threshold: Option<f32>,
    #[serde(default, deserialize_with = "fields::some_exclude_lists")]
    pub(in crate::api) exclude: Option<Exclude>,
    #[serde(default, deserialize_with = "fields::some_item_ids")]
    pub(in crate::api) item_ids: Option<Strings>,
    #[serde(default, deserialize_with = "fields::encoding")]
    pub(in crate::api) response_encoding: Encoding,
}

impl TensorFields for UserItemRequest {
    const TENSORS: &'static [&'static str] = &["users", "items"];
}

/// A validated user–item job: equal dimensions, every index in range.
#[derive(Debug)]
pub struct UserItemJob {
    users: Embeddings,
    items: Embeddings,
    metric: Metric,
    output: Output,
    encoding: Encoding,
}

#[derive(Debug)]
enum Output {
    Dense,
    /// Pairs checked by [`pairs`]: a user and an item index each.
    Pairs(Ragged<usize>),
    /// What to keep per user (its `exclude` is filled from `exclude` when run).
    Neighbours {
        keep: Selection<'static>,
        exclude: Option<Ragged<usize>>,
        item_ids: Option<Strings>,
    },
}

/// Checks `pairs` against `u` users and `i` items: two values each, a user and an item.
fn pairs(lists: &Ragged<usize>, u: usize, i: usize) -> Result<(), ApiError> {
    for (p, pair) in lists.rows().enumerate() {
        match *pair {
            [user, _] if user >= u => Err(invalid(format!(
                "pairs[{p}][0]: user index {user} is out of range for {u} users"
            ))),
            [_, item] if item >= i => Err(invalid(format!(
                "pairs[{p}][1]: item index {item} is out of range for {i} items"
            ))),
            [_, _] => Ok(()),
            _ => Err(invalid(format!(
                "pairs[{p}]: expected [user_index, item_index], found {} values",
                pair.len()
            ))),
        }?;
    }
    Ok(())
}

/// `exclude` as indices: entries given as ids are looked up in the items' ids (those of
/// their table, or `item_ids`) and replaced in place.
fn exclude_indices(
    exclude: Exclude,
    items: &Embeddings,
    item_ids: Option<&Strings>,
) -> Result<Ragged<usize>, ApiError> {
    let Exclude { mut lists, ids, .. } = exclude;
    if ids.is_empty() {
        return Ok(lists);
    }
    // The listed items ordered by id, then by position: of equal ids the first listed comes
    // first. Sorted in place (a stable sort would take as much again).
    let listed: Option<(&Strings, Vec<usize>)> = item_ids.map(|ids| {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_unstable_by(|&x, &y| ids.get(x).cmp(ids.get(y)).then(x.cmp(&y)));
        (ids, order)
    });
    let finder = match &listed {
        Some(_) => None,
        None => items.finder(),
    };
    for (entry, id) in ids.entries() {
        // The entry's list and place in it, for an error.
        let place = || {
            let offsets = lists.offsets();
            let user = offsets
                .partition_point(|&start| start <= entry)
                .saturating_sub(1);
            (user, entry - offsets[user])
        };
        let positions = match &listed {
            Some((ids, order)) => {
                let first = order.partition_point(|&item| ids.get(item) < id);
                let holds = |item: &usize| ids.get(*item) == id;
                order.get(first).copied().filter(holds).map(|item| {
                    let second = order.get(first + 1).copied().filter(holds);
                    (item, second)
                })
            }
            None => match &finder {
                Some(finder) => finder.positions_of(id),
                None => {
                    let (user, at) = place();
                    return Err(invalid(format!(
                        "exclude[{user}][{at}]: names an item by id, but the items have no \
                         ids (send item_ids, or reference a table with ids)"
                    )));
                }
            },
        };
        let shown = || {
            let mut shown: String = id.chars().take(64).collect();
            if shown.len() < id.len() {
                shown.push('…');
            }
            shown
        };
        let row = match positions {
            Some((row, None)) => row,
            Some((first, Some(second))) => {
                // Excluding one of them would leave the other to be recommended.
                let (user, at) = place();
                return Err(invalid(format!(
                    "exclude[{user}][{at}]: the id {:?} is held by more than one item \
                     (positions {first} and {second}); list each item once, or exclude each of its positions by index",
                    shown()
                )));
            }
            None => {
                let (user, at) = place();
                return Err(invalid(format!(
                    "exclude[{user}][{at}]: no item has the id {:?}",
                    shown()
                )));
            }
        };
        if let Some(value) = lists.values_mut().get_mut(entry) {
            *value = row;
        }
    }
    Ok(lists)
}

/// Checks `exclude`, given as `spelled`: one list per user, every index an item.
fn exclude(lists: &Ragged<usize>, spelled: Spelling, u: usize, i: usize) -> Result<(), ApiError> {
    if lists.len() != u {
        return Err(invalid(match spelled {
            Spelling::Object => format!(
                "exclude: has {} lists, expected one per user ({u})",
                lists.len()
            ),
            Spelling::Parameter => format!(
                "exclude_offsets: has {} entries, expected one per user and one more ({})",
                lists.len() + 1,
                u + 1
            ),
        }));
    }
    for (user, list) in lists.rows().enumerate() {
        if let Some((at, item)) = list.iter().enumerate().find(|&(_, &item)| item >= i) {
            let entry = match spelled {
                Spelling::Object => format!("exclude[{user}][{at}]"),
                Spelling::Parameter => {
                    let start = lists.offsets().get(user).copied().unwrap_or(0);
                    format!("exclude[{}]", start + at)
                }
            };
            return Err(invalid(format!(
                "{entry}: item index {item} is out of range for {i} items"
            )));
        }
    }
    Ok(())
}

/// The options of `given` (name, whether given) that were given, for an error: `exclude`,
/// `exclude and item_ids`, `top_k, threshold and exclude`.
fn named(given: &[(&str, bool)]) -> String {
    let names: Vec<&str> = given
        .iter()
        .filter(|(_, given)| *given)
        .map(|(name, _)| *name)
        .collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// `POST /similarity/user-item`.
impl Operation for UserItemJob {
    const PATH: &'static str = "/similarity/user-item";
    type Request = UserItemRequest;

    fn parse(req: UserItemRequest, context: &Context) -> Result<Self, ApiError> {
        let max_output = context.limits.max_output_elements;
        let users = validate::embeddings(context, "users", req.users)?;
        let items = validate::embeddings(context, "items", req.items)?;
        same_dim(("users", &users), ("items", &items))?;
        let (u, i) = (users.rows(), items.rows());
        let (k, threshold) = (req.top_k.map(NonZeroUsize::get), req.threshold);
        let neighbours = k.is_some() || threshold.is_some();

        let output = if let Some(lists) = req.pairs {
            let others = named(&[
                ("top_k", k.is_some()),
                ("threshold", threshold.is_some()),
                ("exclude", req.exclude.is_some()),
                ("item_ids", req.item_ids.is_some()),
            ]);
            if !others.is_empty() {
                return Err(invalid(format!(
                    "pairs: cannot be combined with {others}; pairs are scored, not ranked"
                )));
            }
            validate::output_size(&[lists.len()], max_output, "send fewer pairs")?;
            pairs(&lists, u, i)?;
            Output::Pairs(lists)
        } else if neighbours {
            if req.item_ids.is_some()
                && let Some(table) = items.table().filter(|_| items.has_ids())
            {
                return Err(invalid(format!(
                    "item_ids: the items come with the ids of table {:?}; leave item_ids out",
                    table.name()
                )));
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
            let spelled = req.exclude.as_ref().map(|e| e.spelled);
            let exclude_lists = req
                .exclude
                .map(|lists| exclude_indices(lists, &items, req.item_ids.as_ref()))
                .transpose()?;
            if let (Some(lists), Some(spelled)) = (&exclude_lists, spelled) {
                exclude(lists, spelled, u, i)?;
            }
            let listed_ids = [
                ("item_ids", req.item_ids.as_ref().map(Strings::longest)),
                (
                    "items",
                    items.table().and_then(|t| t.ids()).map(|ids| ids.longest()),
                ),
            ];
            let mut max_entries = max_output;
            for (field, longest) in listed_ids {
                let Some(longest) = longest else { continue };
                match k {
                    Some(k) => validate::id_budget(field, longest, u, k.min(i), max_output)?,
                    None => {
                        let most = validate::entries_listing_ids(longest, max_output);
                        max_entries = max_entries.min(most);
                    }
                }
            }
            Output::Neighbours {
                keep: Selection {
                    k,
                    threshold,
                    max_entries,
                    ..Selection::default()
                },
                exclude: exclude_lists,
                item_ids: req.item_ids,
            }
        } else {
            let given = [
                ("exclude", req.exclude.is_some()),
                ("item_ids", req.item_ids.is_some()),
            ];
            if given.iter().any(|(_, given)| *given) {
                let verb = if given.iter().all(|(_, given)| *given) {
                    "apply"
                } else {
                    "applies"
                };
                return Err(invalid(format!(
                    "{}: {verb} only with top_k or threshold",
                    named(&given)
                )));
            }
            validate::output_size(&[u, i], max_output, "ask for top_k or threshold instead")?;
            Output::Dense
        };
        Ok(UserItemJob {
            users,
            items,
            metric: req.metric,
            output,
            encoding: req.response_encoding,
        })
    }

    fn lookups(request: &UserItemRequest) -> usize {
        // Exclude ids are found among the item ids or the chosen rows, ordered first.
        let ids = request.exclude.as_ref().map_or(0, |e| e.ids.len());
        let among = match ids {
            0 => 0,
            _ => request.item_ids.as_ref().map_or(0, Strings::len) + request.items.rows_picked(),
        };
        // Index entries are checked against the users' and items' counts.
        let entries = request.exclude.as_ref().map_or(0, |e| e.lists.total())
            + request.pairs.as_ref().map_or(0, Ragged::total);
        request.users.rows_picked() + request.items.rows_picked() + ids + among + entries
    }

    fn record_size(&self, span: &tracing::Span) {
        span.record("users", self.users.rows())
            .record("items", self.items.rows())
            .record("dim", self.users.dim());
    }

    /// Multiply-adds the job takes.
    fn work(&self) -> usize {
        let dim = self.users.dim();
        match &self.output {
            Output::Pairs(pairs) => pairs.len().saturating_mul(dim),
            _ => self
                .users
                .rows()
                .saturating_mul(dim)
                .saturating_mul(self.items.rows()),
        }
    }

    /// Bytes the job holds while it runs.
    fn estimate(&self) -> usize {
        let inputs = self
            .users
            .held_values()
            .saturating_add(self.items.held_values());
        let (u, i) = (self.users.rows(), self.items.rows());
        let (numbers, ids) = match &self.output {
            Output::Dense => (u.saturating_mul(i), 0),
            Output::Pairs(pairs) => (pairs.len(), 0),
            Output::Neighbours { keep, item_ids, .. } => {
                let entries = keep
                    .k
                    .map_or(u.saturating_mul(i), |k| u.saturating_mul(k.min(i)))
                    .min(keep.max_entries);
                // With the items' ids listed beside them: `item_ids`, or the table's.
                let longest_text = match item_ids {
                    Some(ids) => Some(ids.longest_text()),
                    None => self
                        .items
                        .table()
                        .and_then(|t| t.ids())
                        .map(Ids::longest_text),
                };
                let ids = longest_text.map_or(0, |text| estimate::listed_ids(entries, text));
                let lists = estimate::neighbour_lists(1, u);
                (entries.saturating_mul(2), ids.saturating_add(lists))
            }
        };
        // What the request holds besides its tensors: pairs, exclude lists and item ids.
        let extra = match &self.output {
            Output::Dense => 0,
            Output::Pairs(pairs) => pairs.bytes(),
            Output::Neighbours {
                exclude, item_ids, ..
            } => {
                // The lists as parsed, and the selection's sorted copy of each
                // (`compute::neighbours`: a `Vec` per list).
                let lists = exclude.as_ref().map_or(0, |e| {
                    e.bytes()
                        .saturating_add(e.total().saturating_mul(size_of::<usize>()))
                        .saturating_add(e.len().saturating_mul(size_of::<Vec<usize>>()))
                });
                let ids = item_ids.as_ref().map_or(0, Strings::bytes);
                lists.saturating_add(ids)
            }
        };
        estimate::job(inputs, self.work(), numbers, self.encoding)
            .saturating_add(ids)
            .saturating_add(extra)
    }

    fn run(mut self, cancel: &Cancel) -> Result<Outcome, ApiError> {
        validate::gather(&mut [Some(&mut self.users), Some(&mut self.items)])?;
        let versions = validate::versions(&[Some(&self.users), Some(&self.items)]);
        let (users, items, metric) = (&self.users, &self.items, self.metric);
        let (keep, exclude, item_ids) = match self.output {
            Output::Dense => {
                let (u, i) = (users.operand(0), items.operand(0));
                let result = compute::matrix(
                    u.ok_or_else(unready)?,
                    Some(i.ok_or_else(unready)?),
                    metric,
                    cancel,
                )?;
                return Ok(Outcome::dense(
                    metric,
                    self.encoding,
                    DenseField::Matrix,
                    result.into_dyn(),
                    versions,
                ));
            }
            Output::Pairs(pairs) => {
                let (u, i) = (users.view(0), items.view(0));
                let (u, i) = (u.ok_or_else(unready)?, i.ok_or_else(unready)?);
                // Every row of `pairs` holds two values: the values, two by two, are the pairs.
                let (pairs, _) = pairs.values().as_chunks::<2>();
                let scores = compute::pairs(u, i, pairs, metric, cancel)?;
                return Ok(Outcome::dense(
                    metric,
                    self.encoding,
                    DenseField::Scores,
                    scores.into_dyn(),
                    versions,
                ));
            }
            Output::Neighbours {
                keep,
                exclude,
                item_ids,
            } => (keep, exclude, item_ids),
        };
        let selection = Selection {
            exclude: exclude.as_ref(),
            ..keep
        };
        let (u, i) = (users.operand(0), items.operand(0));
        let ids_listed = item_ids.is_some() || self.items.has_ids();
        let found = compute::nearest(
            u.ok_or_else(unready)?,
            Some(i.ok_or_else(unready)?),
            metric,
            &selection,
            cancel,
        )
        .map_err(|err| validate::too_many_entries(err, selection.max_entries, ids_listed))?;
        // The items' ids go with the answer: `item_ids`, or those of their table.
        let ids: Option<Box<dyn IdLookup + Send>> = match item_ids {
            Some(ids) => Some(Box::new(ids)),
            None if self.items.has_ids() => Some(Box::new(self.items)),
            None => None,
        };
        Ok(Outcome {
            metric,
            encoding: self.encoding,
            tables: versions,
            result: Computed::Neighbours {
                sets: vec![found],
                batched: false,
                ids: ids.map(|ids| (IdsField::Items, ids)),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LOOKUP_WORK;
    use crate::cpu::INLINE_WORK;

    /// The work `compute` gives [`crate::cpu::run`] for checking `body` into a job.
    fn check_work(body: &str) -> usize {
        let request: UserItemRequest = serde_json::from_str(body).unwrap();
        UserItemJob::lookups(&request) * LOOKUP_WORK
    }

    #[test]
    fn long_index_lists_are_checked_off_the_runtime_and_short_ones_in_place() {
        let indices = |n: usize| vec!["0"; n].join(",");
        let long = 1 << 12;
        let exclude = format!(
            r#"{{"users": [[1]], "items": [[1]], "top_k": 1, "exclude": [[{}]]}}"#,
            indices(long)
        );
        let pairs = format!(
            r#"{{"users": [[1]], "items": [[1]], "pairs": [{}]}}"#,
            vec!["[0, 0]"; long / 2].join(",")
        );
        for body in [exclude, pairs] {
            assert!(check_work(&body) >= INLINE_WORK, "{}", &body[..80]);
        }
        let short = r#"{"users": [[1]], "items": [[1]], "top_k": 1, "exclude": [[0, 0]]}"#;
        assert!(check_work(short) < INLINE_WORK);
    }
}
