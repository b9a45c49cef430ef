//! The models of the Open Inference Protocol route: one per similarity operation. A
//! [`Model`] turns a decoded inference request (inputs and parameters) into the operation's
//! own request type, which the operation checks into the same job as on its native route
//! ([`crate::api::Operation::parse`]): same semantics, limits and error texts.
//!
//! Inputs are named as the native fields (`a`, `b`, `pairs`, `users`, `items`), parameters as
//! the native options (`metric`, `top_k`, `threshold`, `exclude_self`). Ragged lists are flat
//! values plus offsets: `exclude` (INT64 item indices) with `exclude_offsets` (INT64, one
//! entry per user and one more). The request parameter `NAME_table` (`items_table`) makes
//! the input `NAME` rows of a server-side table: every row when the input is left out, else
//! the rows it lists (INT64 row indices, or BYTES ids).

use std::num::NonZeroUsize;

use serde_json::{Map, Value};

use crate::answer::Encoding;
use crate::api::Operation;
use crate::api::matrix::{MatrixJob, MatrixRequest};
use crate::api::pairwise::{PairwiseJob, PairwiseRequest};
use crate::api::user_item::{UserItemJob, UserItemRequest};
use crate::body::fields::{self, Exclude};
use crate::body::infer::{InferInput, Signature, Spec, shown};
use crate::compute::{Metric, Ragged};
use crate::error::ApiError;
use crate::tensor::typed::Values;
use crate::tensor::{Input, Pick, Spelling, TableRef, Tensor, position};

/// An operation served as a model.
pub trait Model: Operation {
    /// Its name in `/v2/models/{model}`.
    const NAME: &'static str;
    /// Its inputs and outputs.
    const SIGNATURE: Signature;

    /// The operation's request standing for `parts`, and the outputs it gives; `encoding`
    /// is the native encoding closest to the answer's (for the job's memory estimate).
    fn request(
        parts: &mut Parts,
        encoding: Encoding,
    ) -> Result<(Self::Request, &'static [&'static str]), ApiError>;
}

/// A float input.
const fn floats(name: &'static str, shape: &'static [i64]) -> Spec {
    Spec {
        name,
        datatype: "FP32",
        shape,
    }
}

/// An index input or output.
const fn ints(name: &'static str, shape: &'static [i64]) -> Spec {
    Spec {
        name,
        datatype: "INT64",
        shape,
    }
}

/// The outputs of a top-k / threshold result (`ids` when the listed rows have ids).
const NEIGHBOURS: &[&str] = &["indices", "scores", "offsets", "ids"];

/// The outputs of a top-k / threshold result whose listed rows are `listed`: `ids` only
/// where they come from a table (which may have ids; whether it has is known once the
/// tables are read), so that asking for `ids` of rows sent as tensors is refused before
/// the scores are computed.
fn neighbours(listed: &Input) -> &'static [&'static str] {
    match listed {
        Input::Table(_) => NEIGHBOURS,
        Input::Tensor(_) => &NEIGHBOURS[..3],
    }
}

/// The outputs of neighbours, in metadata.
const NEIGHBOUR_SPECS: [Spec; 4] = [
    ints("indices", &[-1, -1]),
    floats("scores", &[-1, -1]),
    ints("offsets", &[-1]),
    Spec {
        name: "ids",
        datatype: "BYTES",
        shape: &[-1, -1],
    },
];

/// An index input: its shape and its values.
type Indices = (Vec<usize>, Vec<usize>);

/// A decoded inference request, taken apart by a [`Model`]: what it does not take is left,
/// and refused by [`Parts::finish`].
#[derive(Debug)]
pub struct Parts {
    inputs: Vec<InferInput>,
    parameters: Map<String, Value>,
}

/// Shorthand for a 422 with `detail`.
fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::Invalid(detail.into())
}

impl Parts {
    /// The inputs and the request's parameters.
    pub fn new(inputs: Vec<InferInput>, parameters: Map<String, Value>) -> Self {
        Parts { inputs, parameters }
    }

    /// Takes the input `name`, if given.
    fn input(&mut self, name: &str) -> Option<InferInput> {
        let at = self.inputs.iter().position(|input| input.name == name)?;
        Some(self.inputs.swap_remove(at))
    }

    /// Takes the float input `name` as a tensor of one of `ranks`.
    fn floats(&mut self, name: &str, ranks: &[usize]) -> Result<Option<Tensor>, ApiError> {
        let Some(input) = self.input(name) else {
            return Ok(None);
        };
        match input.values {
            Values::Floats(data) if input.finite => {
                Tensor::from_finite_parts(name, ranks, input.shape, data)
                    .map(Some)
                    .map_err(invalid)
            }
            Values::Floats(data) => Tensor::from_parts(name, ranks, input.shape, data)
                .map(Some)
                .map_err(invalid),
            _ => Err(invalid(format!(
                "{name}: datatype {} is not taken; send FP32, FP64, FP16 or BF16",
                input.datatype.name()
            ))),
        }
    }

    /// Takes the embedding input `name` (one of `ranks`), or the table rows it names with
    /// the parameter `NAME_table`.
    fn embeddings(&mut self, name: &str, ranks: &[usize]) -> Result<Option<Input>, ApiError> {
        let key = format!("{name}_table");
        let Some(table) = self.parameters.remove(&key) else {
            return Ok(self.floats(name, ranks)?.map(Input::Tensor));
        };
        let Value::String(table) = table else {
            return Err(invalid(format!("{key}: expected a table name")));
        };
        let Some(input) = self.input(name) else {
            return Ok(Some(Input::Table(TableRef {
                table,
                pick: Pick::All,
                spelled: Spelling::Parameter,
            })));
        };
        if input.shape.len() != 1 {
            return Err(invalid(format!(
                "{name}: with {key}, the input lists rows: a tensor of rank 1, found rank {}",
                input.shape.len()
            )));
        }
        let pick = match input.values {
            Values::Ints(rows) => Pick::Rows(indices(name, &input.shape, rows)?),
            Values::Strings(ids) => Pick::Ids(ids),
            Values::Floats(_) => {
                return Err(invalid(format!(
                    "{name}: with {key}, the input lists rows: INT64 row indices or BYTES ids"
                )));
            }
        };
        let empty = match &pick {
            Pick::Rows(rows) => rows.is_empty(),
            Pick::Ids(ids) => ids.is_empty(),
            Pick::All => false,
        };
        if empty {
            return Err(invalid(format!(
                "{name}: lists no rows; leave the input out for every row of {key}"
            )));
        }
        Ok(Some(Input::Table(TableRef {
            table,
            pick,
            spelled: Spelling::Parameter,
        })))
    }

    /// Takes the INT64 input `name`: its shape and its values as indices.
    fn indices(&mut self, name: &str) -> Result<Option<Indices>, ApiError> {
        let Some(input) = self.input(name) else {
            return Ok(None);
        };
        match input.values {
            Values::Ints(values) => {
                let indices = indices(name, &input.shape, values)?;
                Ok(Some((input.shape, indices)))
            }
            _ => Err(invalid(format!(
                "{name}: datatype {} is not taken; send INT64 indices",
                input.datatype.name()
            ))),
        }
    }

    /// Refuses whatever no model took: parameters it does not know.
    pub fn finish(self, model: &str) -> Result<(), ApiError> {
        match self.parameters.keys().next() {
            None => Ok(()),
            Some(key) => Err(invalid(format!(
                "parameters: the model {model} takes no parameter {}",
                shown(key)
            ))),
        }
    }
}

/// `values` as non-negative indices (in their own buffer), or 422 naming the first
/// negative one.
fn indices(name: &str, shape: &[usize], values: Vec<i64>) -> Result<Vec<usize>, ApiError> {
    if let Some((at, value)) = values.iter().enumerate().find(|&(_, &value)| value < 0) {
        return Err(invalid(format!(
            "{name}{}: expected a non-negative integer index, found {value}",
            position(at, shape)
        )));
    }
    // Same size and alignment: the collect reuses the buffer.
    Ok(values.into_iter().map(|value| value as usize).collect())
}

/// Takes the option `key` from `parameters`, decoded by `decode` (a native field decoder).
fn option<T>(
    parameters: &mut Map<String, Value>,
    key: &str,
    decode: impl FnOnce(&Value) -> Result<T, serde_json::Error>,
) -> Result<Option<T>, ApiError> {
    match parameters.remove(key) {
        None => Ok(None),
        Some(value) => decode(&value)
            .map(Some)
            .map_err(|err| ApiError::from_json(&err)),
    }
}

impl Parts {
    fn metric(&mut self) -> Result<Metric, ApiError> {
        Ok(option(&mut self.parameters, "metric", |v| fields::metric(v))?.unwrap_or_default())
    }

    fn top_k(&mut self) -> Result<Option<NonZeroUsize>, ApiError> {
        option(&mut self.parameters, "top_k", |v| fields::top_k(v))
    }

    fn threshold(&mut self) -> Result<Option<f32>, ApiError> {
        option(&mut self.parameters, "threshold", |v| fields::threshold(v))
    }
}

impl Model for PairwiseJob {
    const NAME: &'static str = "pairwise";
    const SIGNATURE: Signature = Signature {
        inputs: &[
            floats("a", &[-1, -1]),
            floats("b", &[-1, -1]),
            floats("pairs", &[-1, 2, -1]),
        ],
        outputs: &[floats("scores", &[-1])],
    };

    fn request(
        parts: &mut Parts,
        encoding: Encoding,
    ) -> Result<(PairwiseRequest, &'static [&'static str]), ApiError> {
        let request = PairwiseRequest {
            a: parts.embeddings("a", &[2])?,
            b: parts.embeddings("b", &[2])?,
            pairs: parts.floats("pairs", &[3])?,
            metric: parts.metric()?,
            response_encoding: encoding,
        };
        Ok((request, &["scores"]))
    }
}

impl Model for MatrixJob {
    const NAME: &'static str = "matrix";
    const SIGNATURE: Signature = Signature {
        inputs: &[floats("a", &[-1, -1]), floats("b", &[-1, -1])],
        outputs: &[
            floats("matrix", &[-1, -1]),
            NEIGHBOUR_SPECS[0],
            NEIGHBOUR_SPECS[1],
            NEIGHBOUR_SPECS[2],
            NEIGHBOUR_SPECS[3],
        ],
    };

    fn request(
        parts: &mut Parts,
        encoding: Encoding,
    ) -> Result<(MatrixRequest, &'static [&'static str]), ApiError> {
        let a = parts
            .embeddings("a", &[2, 3])?
            .ok_or_else(|| invalid("a: missing; the model matrix needs the input a"))?;
        let request = MatrixRequest {
            a,
            b: parts.embeddings("b", &[2, 3])?,
            metric: parts.metric()?,
            top_k: parts.top_k()?,
            threshold: parts.threshold()?,
            exclude_self: option(&mut parts.parameters, "exclude_self", |v| {
                fields::exclude_self(v)
            })?
            .unwrap_or(false),
            response_encoding: encoding,
        };
        let gives: &'static [&'static str] =
            if request.top_k.is_some() || request.threshold.is_some() {
                neighbours(request.b.as_ref().unwrap_or(&request.a))
            } else {
                &["matrix"]
            };
        Ok((request, gives))
    }
}

impl Model for UserItemJob {
    const NAME: &'static str = "user-item";
    const SIGNATURE: Signature = Signature {
        inputs: &[
            floats("users", &[-1, -1]),
            floats("items", &[-1, -1]),
            ints("pairs", &[-1, 2]),
            ints("exclude", &[-1]),
            ints("exclude_offsets", &[-1]),
        ],
        outputs: &[
            floats("scores", &[-1]),
            floats("matrix", &[-1, -1]),
            NEIGHBOUR_SPECS[0],
            NEIGHBOUR_SPECS[2],
            NEIGHBOUR_SPECS[3],
        ],
    };

    fn request(
        parts: &mut Parts,
        encoding: Encoding,
    ) -> Result<(UserItemRequest, &'static [&'static str]), ApiError> {
        let missing = |name: &str| {
            invalid(format!(
                "{name}: missing; the model user-item needs the input {name}"
            ))
        };
        let users = parts
            .embeddings("users", &[2])?
            .ok_or_else(|| missing("users"))?;
        let items = parts
            .embeddings("items", &[2])?
            .ok_or_else(|| missing("items"))?;
        let pairs = match parts.indices("pairs")? {
            None => None,
            Some((shape, values)) => {
                if shape.len() != 2 || shape[1] != 2 {
                    return Err(invalid(format!(
                        "pairs: expected the shape [n, 2] (a user and an item index per pair), \
                         found {shape:?}"
                    )));
                }
                Some(Ragged::of_width(values, 2))
            }
        };
        let exclude = exclude(parts.indices("exclude")?, parts.indices("exclude_offsets")?)?;
        let request = UserItemRequest {
            users,
            items,
            metric: parts.metric()?,
            pairs,
            top_k: parts.top_k()?,
            threshold: parts.threshold()?,
            exclude,
            item_ids: None,
            response_encoding: encoding,
        };
        let gives: &'static [&'static str] = if request.pairs.is_some() {
            &["scores"]
        } else if request.top_k.is_some() || request.threshold.is_some() {
            neighbours(&request.items)
        } else {
            &["matrix"]
        };
        Ok((request, gives))
    }
}

/// `exclude` (flat item indices) cut into one list per user by `exclude_offsets`.
fn exclude(values: Option<Indices>, offsets: Option<Indices>) -> Result<Option<Exclude>, ApiError> {
    let (values, offsets) = match (values, offsets) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(invalid(
                "exclude_offsets: missing; exclude goes with exclude_offsets, where user u's \
                 items are exclude[exclude_offsets[u]..exclude_offsets[u + 1]]",
            ));
        }
        (None, Some(_)) => return Err(invalid("exclude: missing; exclude_offsets goes with it")),
        (Some((values_shape, values)), Some((offsets_shape, offsets))) => {
            for (name, shape) in [
                ("exclude", values_shape),
                ("exclude_offsets", offsets_shape),
            ] {
                if shape.len() != 1 {
                    return Err(invalid(format!(
                        "{name}: expected a tensor of rank 1, found rank {}",
                        shape.len()
                    )));
                }
            }
            (values, offsets)
        }
    };
    if offsets.first() != Some(&0) {
        return Err(invalid("exclude_offsets[0]: expected 0"));
    }
    if let Some(at) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return Err(invalid(format!(
            "exclude_offsets[{}]: is less than the offset before it",
            at + 1
        )));
    }
    let last = offsets.last().copied().unwrap_or(0);
    if last != values.len() {
        return Err(invalid(format!(
            "exclude_offsets[{}]: is {last}, expected the length of exclude ({})",
            offsets.len() - 1,
            values.len()
        )));
    }
    let lists = Ragged::from_parts(offsets, values)
        .ok_or_else(|| invalid("exclude_offsets: do not cut exclude into lists"))?;
    Ok(Some(Exclude {
        lists,
        ids: Default::default(),
        spelled: Spelling::Parameter,
    }))
}
