//! Open Inference Protocol request bodies (`POST /v2/models/{model}/infer`): a JSON
//! inference request, followed, with Triton's binary tensor data extension, by the bytes of
//! the inputs that give a `binary_data_size` (in the order of the inputs), the JSON's length
//! in the `Inference-Header-Content-Length` header.
//!
//! A body that declares its length, is not compressed and gives a short JSON's length is
//! decoded as it arrives ([`Arriving::for_body`]): each binary input goes
//! from the frame it arrives in straight into the one buffer of its values. Any other body
//! is read into one buffer ([`super::Buffer`]); [`decode`] inflates it if it was
//! compressed, then decodes each input from its slice of that buffer (or from its JSON
//! `data`) into the one buffer of its values ([`crate::tensor::typed`]). Both give the same
//! answers and errors. An `FP32` input's JSON `data` is read by the tensor text reader (on
//! the compute threads when it is large), each number rounded once to `f32`
//! ([`typed::read_fp32_text`]); other JSON `data`, and any the reader refuses, by serde,
//! whose errors name what is wrong. A large request's `data` arrays are cut out of its JSON
//! before serde reads the rest ([`cut`]), with the same answers and errors.
//!
//! Errors: broken framing (the header length past the body, binary data that does not add
//! up) is 400, like malformed JSON; well-formed requests that break the rules (an unknown
//! input or datatype, a size that is not its shape's) are 422. Messages name the input.

use axum::http::{HeaderMap, header};
mod arriving;
mod cut;

pub use arriving::{Arriving, MAX_JSON};

use std::borrow::Cow;
use std::fmt;

use rayon::prelude::*;
use serde::Deserialize;
use serde::de::DeserializeSeed;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::BodyHead;
use crate::admission::estimate;
use crate::answer::INFERENCE_HEADER_CONTENT_LENGTH;
use crate::coding::{self, Coding};
use crate::error::ApiError;
use crate::tensor::text::{self, Recorded, Span};
use crate::tensor::typed::{self, Datatype, JsonData, Values};

/// The most axes an input may have.
const MAX_RANK: usize = 8;

/// A tensor of a model's signature, as its metadata tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Its name.
    pub name: &'static str,
    /// Its datatype (the usual one, where several are taken).
    pub datatype: &'static str,
    /// Its shape, -1 for a dimension of any length.
    pub shape: &'static [i64],
}

/// The inputs and outputs a model has: what a request may name.
#[derive(Debug, Clone, Copy)]
pub struct Signature {
    /// Its inputs.
    pub inputs: &'static [Spec],
    /// Its outputs.
    pub outputs: &'static [Spec],
}

/// The names of `specs`, for an error.
fn listed(specs: &[Spec]) -> String {
    specs
        .iter()
        .map(|spec| spec.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The spec named `name`, if any.
fn named(specs: &'static [Spec], name: &str) -> Option<&'static str> {
    specs
        .iter()
        .find(|spec| spec.name == name)
        .map(|spec| spec.name)
}

/// A decoded inference request.
#[derive(Debug)]
pub struct InferRequest {
    /// The request's `id`, returned in the answer.
    pub id: Option<String>,
    /// Its `parameters`.
    pub parameters: Map<String, Value>,
    /// Its inputs, in the order given.
    pub inputs: Vec<InferInput>,
    /// The outputs asked for, if listed.
    pub outputs: Option<Vec<RequestedOutput>>,
}

/// One decoded input.
#[derive(Debug)]
pub struct InferInput {
    /// Its name: one of the model's.
    pub name: &'static str,
    /// Its datatype.
    pub datatype: Datatype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values (as many as the shape holds).
    pub values: Values,
    /// Whether its float values are known to be finite (checked as they arrived); `false`
    /// when not checked yet.
    pub finite: bool,
}

/// One output asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestedOutput {
    /// Its name: one of the model's.
    pub name: &'static str,
    /// Its `binary_data` parameter, if given.
    pub binary: Option<bool>,
}

/// Checks the headers of an inference request: no content type, `application/json` or
/// `application/octet-stream` (415 otherwise); the coding and declared length as any body
/// ([`super::head`]); and `Inference-Header-Content-Length`, when given (400 unless a
/// non-negative integer).
pub fn check_headers(
    headers: &HeaderMap,
    limit: usize,
) -> Result<(BodyHead, Option<usize>), ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or_default())
        .map(|value| value.split(';').next().unwrap_or_default().trim());
    let known = |media: &str| {
        media.eq_ignore_ascii_case("application/json")
            || media.eq_ignore_ascii_case("application/octet-stream")
    };
    if media.is_some_and(|media| !known(media)) {
        return Err(ApiError::UnsupportedInferMediaType);
    }
    let head = super::head(headers, limit)?;
    let json_length = match headers.get(INFERENCE_HEADER_CONTENT_LENGTH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ApiError::MalformedJson(
                        "Inference-Header-Content-Length: expected the length of the JSON \
                         in bytes, a non-negative integer"
                            .to_owned(),
                    )
                })?,
        ),
    };
    Ok((head, json_length))
}

/// Inflates `bytes` (when `coding` says so, up to `limit`) and decodes the inference request
/// they hold for a model with `names`; `json_length` is `Inference-Header-Content-Length`.
/// `brackets`, recorded as the body arrived ([`super::Buffer::recording_brackets`]), serve
/// only when the record holds all of `bytes`. CPU work, to run off the runtime when large.
pub fn decode(
    coding: Option<Coding>,
    bytes: &[u8],
    brackets: &text::Brackets,
    limit: usize,
    json_length: Option<usize>,
    names: Signature,
) -> Result<InferRequest, ApiError> {
    match coding {
        Some(coding) => coding::inflate(coding, bytes, limit)
            .and_then(|body| decode_body(&body, None, json_length, names)),
        None => decode_body(bytes, brackets.recorded(bytes.len()), json_length, names),
    }
}

/// Bytes of JSON a field of the request's JSON other than an input's `data` may take: what
/// is read into a [`Value`], which may take 100 bytes per byte of JSON (a map of one entry,
/// `{"":0}`, is a tree node of some 600 bytes). Two are held at once at most (`parameters`,
/// and `outputs` or a field of an input), reserved as [`estimate::INFER_FIELDS`].
pub const MAX_FIELD_JSON: usize = 4 << 10;

const _: () = assert!(2 * 2 * 128 * MAX_FIELD_JSON <= estimate::INFER_FIELDS);

/// The request's JSON, as read before its inputs are decoded: its fields' JSON borrowed,
/// then read one by one ([`field_value`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an inference request object")]
struct Head<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    /// Taken and ignored, as the path names the model and version.
    #[serde(default, rename = "model_name")]
    _model_name: Option<String>,
    #[serde(default, rename = "model_version")]
    _model_version: Option<String>,
    #[serde(default, borrow)]
    parameters: Option<&'a RawValue>,
    #[serde(borrow)]
    inputs: Vec<InputHead<'a>>,
    #[serde(default, borrow)]
    outputs: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an input: an object with name, shape, datatype and data or parameters"
)]
struct InputHead<'a> {
    #[serde(borrow)]
    name: &'a RawValue,
    #[serde(borrow)]
    shape: &'a RawValue,
    #[serde(borrow)]
    datatype: &'a RawValue,
    #[serde(default, borrow)]
    parameters: Option<&'a RawValue>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::Invalid(detail.into())
}

/// A name from a request (input, output, parameter) as it may be repeated in an error:
/// short and plain, or not at all.
pub fn shown(name: &str) -> String {
    crate::echo::shown(name, 64)
}

/// Decodes the inference request `body` holds; `brackets`, the record of all its brackets
/// when there is one, finds its JSON `data` arrays without a pass over them.
fn decode_body(
    body: &[u8],
    brackets: Option<Recorded<'_>>,
    json_length: Option<usize>,
    names: Signature,
) -> Result<InferRequest, ApiError> {
    decode_cutting_from(body, brackets, json_length, names, cut::CUT_FROM_BYTES)
}

/// [`decode_body`], the JSON's `data` arrays cut out first ([`cut`]) when it holds at least
/// `cut_from` bytes. The answer and errors are the same whether they are cut or not.
fn decode_cutting_from(
    body: &[u8],
    brackets: Option<Recorded<'_>>,
    json_length: Option<usize>,
    names: Signature,
    cut_from: usize,
) -> Result<InferRequest, ApiError> {
    let had_length = json_length.is_some();
    let json_length = json_length.unwrap_or(body.len());
    let (json, binary) = split(body, json_length)?;
    let take = |offset, size| Taken::Bytes(Cow::Borrowed(&binary[offset..offset + size]));
    if json.len() >= cut_from
        && let Some(cut) = cut::cut(json, brackets)
    {
        // Kept only when every cut array is an input's data and the request decodes; else
        // serde reads the JSON as sent, and its answer or error is the request's.
        let decoded = plan(&cut.json, names, Some(&cut))
            .ok()
            .filter(|plan| plan.cuts_taken == cut.len())
            .and_then(|plan| walk(plan, binary.len(), had_length, take).ok());
        if let Some(request) = decoded {
            return Ok(request);
        }
    }
    let plan = plan(json, names, None).map_err(|err| match err {
        ApiError::MalformedJson(_) if !had_length => bytes_after_json(json).unwrap_or(err),
        err => err,
    })?;
    walk(plan, binary.len(), had_length, take)
}

/// The error of a body sent without `Inference-Header-Content-Length` that holds bytes after
/// one whole JSON value (binary data, most likely), if it does.
fn bytes_after_json(body: &[u8]) -> Option<ApiError> {
    let mut values =
        serde_json::Deserializer::from_slice(body).into_iter::<serde::de::IgnoredAny>();
    values.next()?.ok()?;
    let after = body.len() - values.byte_offset();
    let trailing = body[values.byte_offset()..]
        .iter()
        .any(|b| !b.is_ascii_whitespace());
    trailing.then(|| {
        ApiError::MalformedJson(format!(
            "the body holds {after} bytes after its JSON; send Inference-Header-Content-Length \
             with binary data"
        ))
    })
}

/// The JSON of a body and its binary data, `json_length` bytes of JSON first: 400 when the
/// body is shorter.
fn split(body: &[u8], json_length: usize) -> Result<(&[u8], &[u8]), ApiError> {
    if json_length > body.len() {
        return Err(past_the_end(json_length, body.len()));
    }
    Ok(body.split_at(json_length))
}

/// The error of a body of `len` bytes that is shorter than its JSON's `json_length`.
fn past_the_end(json_length: usize, len: usize) -> ApiError {
    ApiError::MalformedJson(format!(
        "Inference-Header-Content-Length: {json_length} is past the end of the body of {len} \
         bytes"
    ))
}

/// An inference request's JSON, checked as far as it can be without its binary data.
struct Plan<'a> {
    id: Option<String>,
    parameters: Map<String, Value>,
    /// The inputs, in order, up to the first whose JSON is wrong.
    inputs: Vec<Planned<'a>>,
    /// That input's error: the request's, unless the binary data of an input before it is
    /// wrong first.
    wrong: Option<ApiError>,
    outputs: Option<&'a RawValue>,
    /// The model's outputs, which `outputs` may name.
    model_outputs: &'static [Spec],
    /// How many inputs' data was taken from the arrays cut out of the JSON.
    cuts_taken: usize,
}

/// An input, as the JSON gives it.
struct Planned<'a> {
    name: &'static str,
    datatype: Datatype,
    shape: Vec<usize>,
    source: Source<'a>,
}

/// Where an input's values are.
enum Source<'a> {
    /// In the binary data, this many bytes: the next after the binary inputs before it.
    Binary(usize),
    /// In the JSON, as `data`.
    Json(DataText<'a>),
}

/// The text of an input's JSON `data`.
enum DataText<'a> {
    /// Its own text, as serde borrowed it.
    Alone(&'a [u8]),
    /// An array cut out of the JSON ([`cut`]): the JSON, and the array's span in it.
    Cut(&'a [u8], Span),
}

impl<'a> DataText<'a> {
    /// The data's text.
    fn text(&self) -> &'a [u8] {
        match self {
            DataText::Alone(text) => text,
            DataText::Cut(json, span) => &json[span.range.clone()],
        }
    }

    /// Its values read by the tensor text reader when it is `FP32` data the reader takes, of
    /// `count` values ([`typed::read_fp32_text`]); `None` otherwise.
    fn read_fp32(&self, count: usize) -> Option<Vec<f32>> {
        match self {
            DataText::Alone(text) => typed::read_fp32_text(text, count),
            DataText::Cut(json, span) => typed::read_fp32_spanned(json, span, count),
        }
    }
}

/// A binary input's bytes, or its values decoded as they arrived.
enum Taken<'b> {
    Bytes(Cow<'b, [u8]>),
    Values {
        values: Values,
        /// Whether its floats are known to be finite.
        finite: bool,
    },
    /// Not kept, as its binary data cannot be what its JSON says.
    Missing,
}

/// Reads the request's JSON, `json`, and checks its inputs against the model's `names`, up
/// to the first that is wrong. With `cut`, `json` is [`cut::Cut::json`], and an input whose
/// data is a cut's place takes the array cut out there.
fn plan<'a>(
    json: &'a [u8],
    names: Signature,
    cut: Option<&cut::Cut<'a>>,
) -> Result<Plan<'a>, ApiError> {
    let first = json.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::MalformedJson(
            "the inference request must be a JSON object".to_owned(),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let head: Head =
        serde_path_to_error::deserialize(&mut de).map_err(|err| ApiError::from_json_at(&err))?;
    de.end().map_err(|err| ApiError::from_json(&err))?;
    let id = match head.id.map(|id| field_value("id", id)).transpose()? {
        None => None,
        Some(Value::String(id)) => Some(id),
        Some(_) => return Err(invalid("id: expected a string")),
    };
    let parameters = match head
        .parameters
        .map(|parameters| field_value("parameters", parameters))
        .transpose()?
    {
        None => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(invalid("parameters: expected an object")),
    };
    let mut inputs: Vec<Planned> = Vec::with_capacity(head.inputs.len());
    let mut wrong = None;
    let mut cuts_taken = 0;
    for (at, input) in head.inputs.into_iter().enumerate() {
        let data = input
            .data
            .map(|data| match cut.and_then(|cut| cut.original(data.get())) {
                Some((json, span)) => {
                    cuts_taken += 1;
                    DataText::Cut(json, span.clone())
                }
                None => DataText::Alone(data.get().as_bytes()),
            });
        match planned(at, input, data, &inputs, names) {
            Ok(input) => inputs.push(input),
            Err(err) => {
                wrong = Some(err);
                break;
            }
        }
    }
    Ok(Plan {
        id,
        parameters,
        inputs,
        wrong,
        outputs: head.outputs,
        model_outputs: names.outputs,
        cuts_taken,
    })
}

/// The input at `at`, after those `seen`, checked as far as its JSON goes; `data` is the
/// text of its `data`.
fn planned<'a>(
    at: usize,
    input: InputHead<'a>,
    data: Option<DataText<'a>>,
    seen: &[Planned],
    names: Signature,
) -> Result<Planned<'a>, ApiError> {
    let given = field_value(format_args!("inputs[{at}].name"), input.name)?;
    let name = match &given {
        Value::String(name) => named(names.inputs, name),
        _ => return Err(invalid(format!("inputs[{at}].name: expected a string"))),
    };
    let Some(name) = name else {
        let given = given.as_str().map(shown).unwrap_or_default();
        return Err(invalid(format!(
            "inputs[{at}].name: the model has no input {given}; its inputs are {}",
            listed(names.inputs)
        )));
    };
    if seen.iter().any(|seen| seen.name == name) {
        return Err(invalid(format!(
            "inputs[{at}]: a second input named {name:?}"
        )));
    }
    let datatype = match &field_value(format_args!("{name}.datatype"), input.datatype)? {
        Value::String(text) => Datatype::parse(text).ok_or_else(|| {
            invalid(format!(
                "{name}.datatype: {} is not taken; use FP32, FP64, FP16 or BF16 for \
                 vectors, INT64 for indices, BYTES for ids",
                shown(text)
            ))
        })?,
        _ => return Err(invalid(format!("{name}.datatype: expected a string"))),
    };
    let shape = shape_of(
        name,
        &field_value(format_args!("{name}.shape"), input.shape)?,
    )?;
    let parameters = input
        .parameters
        .map(|parameters| field_value(format_args!("{name}.parameters"), parameters))
        .transpose()?;
    let size = binary_size(name, parameters.as_ref())?;
    let source = match (size, data) {
        (Some(_), Some(_)) => {
            return Err(invalid(format!(
                "{name}: give data or binary_data_size, not both"
            )));
        }
        (None, None) => {
            return Err(invalid(format!(
                "{name}: has neither data nor binary_data_size"
            )));
        }
        (Some(size), None) => Source::Binary(size),
        (None, Some(data)) => Source::Json(data),
    };
    Ok(Planned {
        name,
        datatype,
        shape,
        source,
    })
}

/// The values of an input's JSON `data` when it is `FP32` data of its shape that the tensor
/// text reader takes ([`DataText::read_fp32`]); `None` otherwise.
fn read_fp32(datatype: Datatype, shape: &[usize], data: &DataText) -> Option<Vec<f32>> {
    if datatype != Datatype::Fp32 {
        return None;
    }
    data.read_fp32(typed::element_count(shape)?)
}

/// When two or more of `inputs` are `FP32` JSON `data` of at least [`text::PARALLEL_BYTES`],
/// those read together on the compute threads, by input: so that inputs given flat (which
/// are not cut into pieces) are read at once rather than one after the other. `None` for
/// each input not read here (and one the reader refused), left to the walk.
fn read_large_fp32_together(inputs: &[Planned]) -> Vec<Option<Vec<f32>>> {
    let large = |input: &Planned| match &input.source {
        Source::Json(data) => {
            input.datatype == Datatype::Fp32 && data.text().len() >= text::PARALLEL_BYTES
        }
        Source::Binary(_) => false,
    };
    let together = inputs.iter().filter(|input| large(input)).count() >= 2
        && rayon::current_num_threads() >= 2;
    if !together {
        return inputs.iter().map(|_| None).collect();
    }
    inputs
        .par_iter()
        .map(|input| match &input.source {
            Source::Json(data) if large(input) => read_fp32(input.datatype, &input.shape, data),
            _ => None,
        })
        .collect()
}

/// Decodes the inputs of `plan`, in order, from their JSON or their binary data
/// (`binary_len` bytes, `take(offset, size)` giving an input's); `had_length`: whether the
/// request gave `Inference-Header-Content-Length`.
fn walk<'b>(
    plan: Plan,
    binary_len: usize,
    had_length: bool,
    mut take: impl FnMut(usize, usize) -> Taken<'b>,
) -> Result<InferRequest, ApiError> {
    let mut inputs: Vec<InferInput> = Vec::with_capacity(plan.inputs.len());
    let mut offset = 0;
    let read_ahead = read_large_fp32_together(&plan.inputs);
    for (
        Planned {
            name,
            datatype,
            shape,
            source,
        },
        read_ahead,
    ) in plan.inputs.into_iter().zip(read_ahead)
    {
        let mut finite = false;
        let values = match source {
            Source::Binary(size) => {
                let left = binary_len - offset;
                if size > left {
                    let hint = if had_length {
                        ""
                    } else {
                        "; send Inference-Header-Content-Length with binary data"
                    };
                    return Err(ApiError::MalformedJson(format!(
                        "{name}: binary_data_size of {size} bytes runs past the end of the \
                         body ({left} bytes of binary data left){hint}"
                    )));
                }
                let taken = take(offset, size);
                offset += size;
                match taken {
                    Taken::Bytes(bytes) => {
                        typed::from_le_bytes(name, datatype, &shape, &bytes).map_err(invalid)?
                    }
                    Taken::Values {
                        values,
                        finite: checked,
                    } => {
                        finite = checked;
                        values
                    }
                    Taken::Missing => {
                        let misfit = typed::check_size(name, datatype, &shape, size).err();
                        return Err(invalid(misfit.unwrap_or_else(|| {
                            format!("{name}: its binary data was not kept")
                        })));
                    }
                }
            }
            Source::Json(data) => {
                let read = read_ahead.or_else(|| read_fp32(datatype, &shape, &data));
                match read {
                    Some(values) => {
                        finite = true;
                        Values::Floats(values)
                    }
                    None => {
                        // Exactly one value: a cut array's span is checked here.
                        let text = data.text();
                        let mut de = serde_json::Deserializer::from_slice(text);
                        JsonData::new(name, datatype, &shape, text.len())
                            .deserialize(&mut de)
                            .and_then(|values| de.end().map(|()| values))
                            .map_err(|err| ApiError::from_json_in(format!("{name}.data"), &err))?
                    }
                }
            }
        };
        inputs.push(InferInput {
            name,
            datatype,
            shape,
            values,
            finite,
        });
    }
    if let Some(wrong) = plan.wrong {
        return Err(wrong);
    }
    if offset != binary_len {
        return Err(ApiError::MalformedJson(format!(
            "the body holds {} bytes after the JSON and the inputs' binary data; give each \
             binary input its binary_data_size",
            binary_len - offset
        )));
    }
    let outputs = plan
        .outputs
        .map(|outputs| requested(&field_value("outputs", outputs)?, plan.model_outputs))
        .transpose()?;
    Ok(InferRequest {
        id: plan.id,
        parameters: plan.parameters,
        inputs,
        outputs,
    })
}

/// The JSON of `field` (a field of the request's JSON, other than an input's `data`), read:
/// refused when it is longer than [`MAX_FIELD_JSON`].
fn field_value(field: impl fmt::Display, json: &RawValue) -> Result<Value, ApiError> {
    let text = json.get();
    if text.len() > MAX_FIELD_JSON {
        return Err(invalid(format!(
            "{field}: takes {} bytes of JSON, at most {MAX_FIELD_JSON} are read",
            text.len()
        )));
    }
    serde_json::from_str(text).map_err(|err| ApiError::from_json_in(field, &err))
}

/// An input's `shape`: at most [`MAX_RANK`] non-negative integers.
fn shape_of(name: &str, shape: &Value) -> Result<Vec<usize>, ApiError> {
    let wrong = || {
        invalid(format!(
            "{name}.shape: expected an array of at most {MAX_RANK} non-negative integers"
        ))
    };
    let axes = shape.as_array().ok_or_else(wrong)?;
    if axes.len() > MAX_RANK {
        return Err(wrong());
    }
    axes.iter()
        .map(|axis| {
            axis.as_u64()
                .and_then(|len| usize::try_from(len).ok())
                .ok_or_else(wrong)
        })
        .collect()
}

/// An input's `binary_data_size` parameter, its only one.
fn binary_size(name: &str, parameters: Option<&Value>) -> Result<Option<usize>, ApiError> {
    let Some(parameters) = parameters else {
        return Ok(None);
    };
    let map = parameters
        .as_object()
        .ok_or_else(|| invalid(format!("{name}.parameters: expected an object")))?;
    let mut size = None;
    for (key, value) in map {
        if key != "binary_data_size" {
            return Err(invalid(format!(
                "{name}.parameters: {} is not taken; an input takes binary_data_size only",
                shown(key)
            )));
        }
        let bytes = value.as_u64().and_then(|n| usize::try_from(n).ok());
        size = Some(bytes.ok_or_else(|| {
            invalid(format!(
                "{name}.parameters.binary_data_size: expected a non-negative integer"
            ))
        })?);
    }
    Ok(size)
}

/// The `outputs` asked for: names of the model's outputs, each once, with an optional
/// `binary_data`.
fn requested(outputs: &Value, known: &'static [Spec]) -> Result<Vec<RequestedOutput>, ApiError> {
    let list = outputs
        .as_array()
        .ok_or_else(|| invalid("outputs: expected an array"))?;
    let mut out: Vec<RequestedOutput> = Vec::with_capacity(list.len());
    for (at, output) in list.iter().enumerate() {
        let object = output
            .as_object()
            .ok_or_else(|| invalid(format!("outputs[{at}]: expected an object")))?;
        let mut name = None;
        let mut binary = None;
        for (key, value) in object {
            match key.as_str() {
                "name" => {
                    let text = value
                        .as_str()
                        .ok_or_else(|| invalid(format!("outputs[{at}].name: expected a string")))?;
                    name = Some(named(known, text).ok_or_else(|| {
                        invalid(format!(
                            "outputs[{at}].name: the model has no output {}; its outputs are {}",
                            shown(text),
                            listed(known)
                        ))
                    })?);
                }
                "parameters" => binary = binary_data(at, value)?,
                other => {
                    return Err(invalid(format!(
                        "outputs[{at}]: {} is not taken; an output takes name and parameters",
                        shown(other)
                    )));
                }
            }
        }
        let name = name.ok_or_else(|| invalid(format!("outputs[{at}]: has no name")))?;
        if out.iter().any(|seen| seen.name == name) {
            return Err(invalid(format!(
                "outputs[{at}]: {name:?} is asked for twice"
            )));
        }
        out.push(RequestedOutput { name, binary });
    }
    Ok(out)
}

/// An output's `parameters`: `binary_data` only.
fn binary_data(at: usize, parameters: &Value) -> Result<Option<bool>, ApiError> {
    let map = parameters
        .as_object()
        .ok_or_else(|| invalid(format!("outputs[{at}].parameters: expected an object")))?;
    let mut binary = None;
    for (key, value) in map {
        if key != "binary_data" {
            return Err(invalid(format!(
                "outputs[{at}].parameters: {} is not taken; an output takes binary_data only",
                shown(key)
            )));
        }
        binary = Some(value.as_bool().ok_or_else(|| {
            invalid(format!(
                "outputs[{at}].parameters.binary_data: expected true or false"
            ))
        })?);
    }
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An FP32 input or output of any length named `name`.
    pub(super) const fn spec(name: &'static str) -> Spec {
        Spec {
            name,
            datatype: "FP32",
            shape: &[-1],
        }
    }

    const NAMES: Signature = Signature {
        inputs: &[spec("a"), spec("b")],
        outputs: &[spec("scores")],
    };

    fn body(json: &str, binary: &[&[u8]]) -> (Vec<u8>, usize) {
        let mut bytes = json.as_bytes().to_vec();
        for part in binary {
            bytes.extend_from_slice(part);
        }
        (bytes, json.len())
    }

    fn f32s(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// `json` decoded as a whole body without binary data.
    fn decoded(json: &str) -> Result<InferRequest, ApiError> {
        let brackets = text::Brackets::default();
        decode(None, json.as_bytes(), &brackets, usize::MAX, None, NAMES)
    }

    /// Decimals that read as an `f64` first and then rounded to `f32` come out one unit in
    /// the last place off: just past the midpoint between two `f32`s by less than half an
    /// `f64` step (so the `f64` is the midpoint, which then rounds to even, the wrong way half
    /// the time), and one such shortest `f32` text.
    fn rounded_twice_wrong() -> Vec<String> {
        let mut texts = vec!["7.038531e-26".to_owned()];
        for step in 0..64u32 {
            let below = f32::from_bits(1.0f32.to_bits() + step * 40_503);
            let above = f32::from_bits(below.to_bits() + 1);
            let midpoint = (f64::from(below) + f64::from(above)) / 2.0;
            // Exact: a value in [1, 2) with 25 bits of fraction has 25 decimal places.
            texts.push(format!("{midpoint:.30}1"));
            texts.push(format!("-{midpoint:.30}1"));
        }
        texts
    }

    #[test]
    fn fp32_json_data_is_rounded_once_to_the_nearest_float32_in_small_and_large_bodies() {
        let texts = rounded_twice_wrong();
        let want: Vec<f32> = texts.iter().map(|t| t.parse::<f32>().unwrap()).collect();
        let twice: Vec<f32> = texts
            .iter()
            .map(|t| t.parse::<f64>().unwrap() as f32)
            .collect();
        let wrong = want.iter().zip(&twice).filter(|(w, t)| w != t).count();
        assert!(
            wrong > 32,
            "only {wrong} of the texts round wrong through f64"
        );
        // One row of them; then enough rows for the JSON to be cut and read in parallel.
        let dim = texts.len();
        let row = format!("[{}]", texts.join(", "));
        for rows in [1, 2 << 10] {
            let data = vec![row.as_str(); rows].join(",\n");
            let json = format!(
                r#"{{"inputs": [{{"name": "a", "shape": [{rows}, {dim}], "datatype": "FP32", "data": [{data}]}}]}}"#
            );
            assert_eq!(json.len() >= text::PARALLEL_BYTES, rows > 1);
            let got = decoded(&json).unwrap();
            let want = Values::Floats(want.repeat(rows));
            assert!(got.inputs[0].values == want, "{rows} rows");
            assert!(got.inputs[0].finite);
        }
    }

    #[test]
    fn half_precision_json_data_is_rounded_to_its_datatype() {
        // numpy: np.float16(0.1) == 0.0999755859375 == 1638 / 2^14; ml_dtypes' bfloat16(0.1)
        // == 0.10009765625 == 205 / 2^11.
        for (datatype, want) in [("FP16", 1638.0 / 16384.0), ("BF16", 205.0 / 2048.0)] {
            let json = format!(
                r#"{{"inputs": [{{"name": "a", "shape": [2], "datatype": "{datatype}", "data": [0.1, 1]}}]}}"#
            );
            let got = decoded(&json).unwrap();
            assert_eq!(
                got.inputs[0].values,
                Values::Floats(vec![want, 1.0]),
                "{datatype}"
            );
        }
        // 65520 rounds past float16's largest value, 65504; bfloat16 reaches float32's.
        let past =
            r#"{"inputs": [{"name": "a", "shape": [2], "datatype": "FP16", "data": [1, 65520]}]}"#;
        assert_eq!(
            decoded(past).unwrap_err().to_string(),
            "a.data[1]: 65520 is outside the FP16 range"
        );
        let within = decoded(&past.replace("FP16", "BF16")).unwrap();
        assert_eq!(within.inputs[0].values, Values::Floats(vec![1.0, 65536.0]));
    }

    #[test]
    fn bodies_decode_the_same_with_their_data_cut_out_or_not() {
        // Each `data` array long enough to be cut out.
        let pad = " ".repeat(cut::MIN_CUT_BYTES);
        let json = format!(
            r#"{{"id": "7", "inputs": [
            {{"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [[1.5, -2], [3e-1, 4]{pad}]}},
            {{"name": "b", "data": [0.25, 1{pad}], "shape": [2], "datatype": "FP16"}}],
            "parameters": {{"metric": "dot", "data": [1]}}}}"#
        );
        let with_binary = format!(
            r#"{{"inputs": [
            {{"name": "a", "shape": [2], "datatype": "FP32", "parameters": {{"binary_data_size": 8}}}},
            {{"name": "b", "shape": [1, 2], "datatype": "FP32", "data": [[3, 4]{pad}]}}]}}"#
        );
        // Brackets in strings, which the cut's spans do not tell from the others: the walk
        // takes `["x…]` for the first `data` and goes on to `}]}` as the end of the JSON.
        let strings = format!(
            r#"{{"inputs": [{{"name": "a", "shape": [2], "datatype": "BYTES", "data": ["x{pad}]}}]}}", "["]}},
            {{"name": "b", "shape": [1], "datatype": "FP32", "data": [1]}}], "id": "]"}}"#
        );
        // The request decoded: its data not cut, cut (its spans found by a pass over the
        // text), and cut with the spans found from the record of its brackets.
        let decoded = |body: &[u8], length: Option<usize>| {
            let mut brackets = text::Brackets::default();
            brackets.record(body);
            let recorded = brackets.recorded(body.len());
            assert!(recorded.is_some());
            let whole = format!(
                "{:?}",
                decode_cutting_from(body, None, length, NAMES, usize::MAX)
            );
            for brackets in [None, recorded] {
                let cut = decode_cutting_from(body, brackets, length, NAMES, 0);
                let cut = format!("{cut:?}");
                assert_eq!(cut, whole, "{}", String::from_utf8_lossy(body));
            }
            whole
        };
        let two = f32s(&[1.0, 2.0]);
        let mut compared = 0;
        for (json, binary) in [(&json, &[][..]), (&with_binary, &two), (&strings, &[])] {
            let json = json.as_bytes();
            assert!(cut::cut(json, None).is_some());
            // The JSON followed by the binary data, with its length when there is any.
            let sent = |json: &[u8]| {
                let length = (!binary.is_empty()).then_some(json.len());
                decoded(&[json, binary].concat(), length)
            };
            let whole = sent(json);
            assert!(whole.starts_with("Ok("), "{whole}");
            // Each with one byte of the JSON taken out or made a `]`, `"`, `,` or `[`.
            for at in 0..json.len() {
                let mut shorter = json.to_vec();
                shorter.remove(at);
                compared += usize::from(sent(&shorter).starts_with("Ok("));
                for byte in *b"]\",[" {
                    let mut changed = json.to_vec();
                    changed[at] = byte;
                    compared += usize::from(sent(&changed).starts_with("Ok("));
                }
            }
        }
        assert!(compared > 10, "only {compared} changed bodies decoded");
    }

    #[test]
    fn binary_inputs_are_cut_from_the_body_in_order() {
        let json = r#"{"inputs": [
            {"name": "a", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
            {"name": "b", "shape": [1, 2], "datatype": "FP32", "data": [[3, 4]]}],
            "outputs": [{"name": "scores", "parameters": {"binary_data": true}}], "id": "7"}"#;
        let (bytes, length) = body(json, &[&f32s(&[1.0, 2.0])]);
        let got = decode(
            None,
            &bytes,
            &text::Brackets::default(),
            1 << 20,
            Some(length),
            NAMES,
        )
        .unwrap();
        assert_eq!(got.id.as_deref(), Some("7"));
        assert_eq!(got.inputs[0].values, Values::Floats(vec![1.0, 2.0]));
        assert_eq!(got.inputs[1].values, Values::Floats(vec![3.0, 4.0]));
        assert_eq!(
            got.outputs,
            Some(vec![RequestedOutput {
                name: "scores",
                binary: Some(true)
            }])
        );
    }

    #[test]
    fn broken_framing_is_400_and_broken_inputs_are_422() {
        let one = r#"{"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}"#;
        let eight = f32s(&[1.0, 2.0]);
        let (bytes, length) = body(one, &[&eight]);
        let status = |result: Result<InferRequest, ApiError>| match result {
            Err(ApiError::MalformedJson(detail)) => (400, detail),
            Err(ApiError::Invalid(detail)) => (422, detail),
            other => panic!("{other:?}"),
        };
        let (code, detail) = status(decode(
            None,
            &bytes,
            &text::Brackets::default(),
            1 << 20,
            Some(bytes.len() + 1),
            NAMES,
        ));
        assert_eq!(code, 400);
        assert!(detail.contains("past the end of the body"), "{detail}");
        let (code, detail) = status(decode(
            None,
            &bytes,
            &text::Brackets::default(),
            1 << 20,
            None,
            NAMES,
        ));
        assert_eq!(code, 400, "{detail}");
        let (code, detail) = status(decode(
            None,
            &bytes[..bytes.len() - 1],
            &text::Brackets::default(),
            1 << 20,
            Some(length),
            NAMES,
        ));
        assert_eq!(code, 400);
        assert!(
            detail.starts_with("a: binary_data_size of 8 bytes runs past"),
            "{detail}"
        );
        let mut long = bytes.clone();
        long.push(0);
        let (code, detail) = status(decode(
            None,
            &long,
            &text::Brackets::default(),
            1 << 20,
            Some(length),
            NAMES,
        ));
        assert_eq!(code, 400);
        assert!(detail.contains("1 bytes after the JSON"), "{detail}");
        for (json, want) in [
            (
                r#"{"inputs": [{"name": "c", "shape": [1], "datatype": "FP32", "data": [1]}]}"#,
                "inputs[0].name: the model has no input \"c\"",
            ),
            (
                r#"{"inputs": [{"name": "a", "shape": [1], "datatype": "INT8", "data": [1]}]}"#,
                "a.datatype: \"INT8\" is not taken",
            ),
            (
                r#"{"inputs": [{"name": "a", "shape": [-1], "datatype": "FP32", "data": [1]}]}"#,
                "a.shape: expected an array",
            ),
            (
                r#"{"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": [1]}]}"#,
                "a.data: holds 1 values, shape [2] needs 2",
            ),
            (
                r#"{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}]}"#,
                "a: has neither data nor binary_data_size",
            ),
            (
                r#"{"inputs": [], "outputs": [{"name": "matrix"}]}"#,
                "outputs[0].name: the model has no output \"matrix\"",
            ),
            (r#"{"inputs": [], "extra": 1}"#, "unknown field `extra`"),
        ] {
            let (code, detail) = status(decoded(json));
            assert_eq!(code, 422, "{json}: {detail}");
            assert!(detail.starts_with(want), "{json}: {detail}");
        }
    }

    #[test]
    fn fields_past_their_json_limit_are_refused_by_name_and_data_is_not_limited() {
        let zeros = vec!["0"; MAX_FIELD_JSON / 2].join(",");
        let long = "x".repeat(MAX_FIELD_JSON);
        for (json, want) in [
            (
                format!(r#"{{"id": "{long}", "inputs": []}}"#),
                format!("id: takes {} bytes of JSON, at most 4096", long.len() + 2),
            ),
            (
                format!(r#"{{"parameters": {{"top_k": [{zeros}, 0]}}, "inputs": []}}"#),
                "parameters: takes".to_owned(),
            ),
            (
                format!(r#"{{"inputs": [], "outputs": [{{"name": "{long}"}}]}}"#),
                "outputs: takes".to_owned(),
            ),
            (
                format!(
                    r#"{{"inputs": [{{"name": "a", "shape": [{zeros}], "datatype": "FP32", "data": []}}]}}"#
                ),
                "a.shape: takes".to_owned(),
            ),
            (
                format!(
                    r#"{{"inputs": [{{"name": "a", "shape": [1], "datatype": "FP32", "data": [1], "parameters": {{"{long}": 1}}}}]}}"#
                ),
                "a.parameters: takes".to_owned(),
            ),
        ] {
            match decoded(&json) {
                Err(ApiError::Invalid(detail)) => assert!(detail.starts_with(&want), "{detail}"),
                other => panic!("{want}: {other:?}"),
            }
        }
        // Data is read straight into its values, however long its JSON.
        let count = MAX_FIELD_JSON;
        let data = vec!["0.5"; count].join(",");
        let json = format!(
            r#"{{"inputs": [{{"name": "a", "shape": [{count}], "datatype": "FP32", "data": [{data}]}}]}}"#
        );
        let got = decoded(&json).unwrap();
        assert_eq!(got.inputs[0].values, Values::Floats(vec![0.5; count]));
    }

    #[test]
    fn requests_whose_parts_have_the_wrong_json_type_get_422s_that_name_where() {
        let input = r#"{"name": "a", "shape": [2], "datatype": "FP32", "data": [1, 2]}"#;
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for (json, want) in [
            (
                r#"{"inputs": {"a": 1}}"#.to_owned(),
                "inputs: invalid type: map, expected a sequence",
            ),
            (
                r#"{"inputs": [[1]]}"#.to_owned(),
                "inputs[0]: invalid length 1, expected an input",
            ),
            (
                format!(r#"{{"inputs": [{input}, 1]}}"#),
                "inputs[1]: invalid type: integer `1`, expected an input",
            ),
            (
                r#"{"inputs": [{"name": "a"}]}"#.to_owned(),
                "inputs[0]: missing field `shape`",
            ),
            (
                format!(r#"{{"inputs": [{input}], "model_name": 5}}"#),
                "model_name: invalid type: integer `5`, expected a string",
            ),
            (
                format!(r#"{{"inputs": [{input}, {{"bogus": 1}}]}}"#),
                "inputs[1]: unknown field `bogus`",
            ),
            (
                format!(r#"{{"inputs": [{input}], "bogus": 1}}"#),
                "unknown field `bogus`",
            ),
            (r#"{}"#.to_owned(), "missing field `inputs`"),
            (
                format!(r#"{{"inputs": [{input}], "parameters": {{"x": {deep}}}}}"#),
                "parameters: nested more than 128 levels deep",
            ),
            (
                format!(
                    r#"{{"inputs": [{{"name": "a", "shape": [1], "datatype": "FP32", "data": {deep}}}]}}"#
                ),
                "a.data: nested more than 128 levels deep",
            ),
        ] {
            match decoded(&json) {
                Err(ApiError::Invalid(detail)) => assert!(detail.starts_with(want), "{detail}"),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn binary_data_sent_without_its_json_length_is_named_in_the_error() {
        let json = r#"{"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}"#;
        let (bytes, _) = body(json, &[&f32s(&[1.0, 2.0])]);
        let brackets = text::Brackets::default();
        match decode(None, &bytes, &brackets, usize::MAX, None, NAMES) {
            Err(ApiError::MalformedJson(detail)) => assert_eq!(
                detail,
                "the body holds 8 bytes after its JSON; send Inference-Header-Content-Length \
                 with binary data"
            ),
            other => panic!("{other:?}"),
        }
        // JSON that is broken itself keeps serde's error.
        match decoded(r#"{"inputs": ["#) {
            Err(ApiError::MalformedJson(detail)) => {
                assert!(detail.starts_with("malformed JSON: "), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_syntax_error_in_data_names_the_input_and_no_position() {
        let json = r#"{"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [[1, 1e999]]}]}"#;
        match decoded(json) {
            Err(ApiError::MalformedJson(detail)) => {
                assert_eq!(detail, "a.data: malformed JSON: number out of range")
            }
            other => panic!("{other:?}"),
        }
    }
}
