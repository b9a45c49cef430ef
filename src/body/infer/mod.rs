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

    /// Requests as clients build them from numpy arrays, decoded whole and as they arrive.
    /// Run with more cases by `PROPTEST_CASES=3000 cargo test properties` (CI does).
    mod properties {
        use std::ops::Range;

        use proptest::prelude::*;
        use proptest::sample::Index;
        use serde::Serialize;

        use super::*;
        use crate::admission::Admission;
        use crate::body::{BodyHead, Sink};
        use crate::tensor::Strings;

        /// A model of four inputs, so that a request may send several, in any order.
        const FOUR: Signature = Signature {
            inputs: &[spec("a"), spec("b"), spec("c"), spec("d")],
            outputs: &[spec("scores")],
        };

        /// An input's elements as a client holds them, in numpy's dtypes: `float16` and
        /// `bfloat16` (ml_dtypes') as their bits, `float32`, `float64`, `int64`, and an
        /// object array of `str`.
        #[derive(Debug, Clone)]
        enum Elements {
            Fp16(Vec<u16>),
            Bf16(Vec<u16>),
            Fp32(Vec<f32>),
            Fp64(Vec<f64>),
            Int64(Vec<i64>),
            Bytes(Vec<String>),
        }

        /// One input as sent: as binary data, or as JSON `data` nested as its shape or flat,
        /// floats written as `float64`s (`tolist()` gives Python floats) or as the shortest
        /// text of their own datatype's value (`wide` or not).
        #[derive(Debug, Clone)]
        struct Sent {
            shape: Vec<usize>,
            elements: Elements,
            binary: bool,
            nested: bool,
            wide: bool,
        }

        /// The `float16` of `bits`, worked out from its fields (not by the decoder's crate).
        fn f16_value(bits: u16) -> f32 {
            let exponent = i32::from(bits >> 10 & 0x1F);
            let fraction = f32::from(bits & 0x3FF);
            let two_to = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
            let magnitude = match exponent {
                0 => fraction * two_to(-24),
                31 if fraction == 0.0 => f32::INFINITY,
                31 => f32::NAN,
                _ => (1024.0 + fraction) * two_to(exponent - 25),
            };
            if bits >> 15 == 1 {
                -magnitude
            } else {
                magnitude
            }
        }

        /// The `bfloat16` of `bits`: the high half of a `float32`.
        fn bf16_value(bits: u16) -> f32 {
            f32::from_bits(u32::from(bits) << 16)
        }

        /// `value`'s JSON, as serde writes it (for a float, its shortest text).
        fn json<T: Serialize + ?Sized>(value: &T) -> String {
            serde_json::to_string(value).unwrap()
        }

        /// A `BYTES` element as tritonclient's `serialize_byte_tensor` writes it: a 4-byte
        /// little-endian length, then the UTF-8.
        fn serialized(text: &str) -> Vec<u8> {
            let mut bytes = (text.len() as u32).to_le_bytes().to_vec();
            bytes.extend_from_slice(text.as_bytes());
            bytes
        }

        impl Elements {
            fn datatype(&self) -> Datatype {
                match self {
                    Elements::Fp16(_) => Datatype::Fp16,
                    Elements::Bf16(_) => Datatype::Bf16,
                    Elements::Fp32(_) => Datatype::Fp32,
                    Elements::Fp64(_) => Datatype::Fp64,
                    Elements::Int64(_) => Datatype::Int64,
                    Elements::Bytes(_) => Datatype::Bytes,
                }
            }

            /// The binary data: numpy's `tobytes()` (little-endian, C order), or the
            /// strings serialised one after another.
            fn le_bytes(&self) -> Vec<u8> {
                match self {
                    Elements::Fp16(bits) | Elements::Bf16(bits) => {
                        bits.iter().flat_map(|b| b.to_le_bytes()).collect()
                    }
                    Elements::Fp32(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    Elements::Fp64(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    Elements::Int64(values) => {
                        values.iter().flat_map(|v| v.to_le_bytes()).collect()
                    }
                    Elements::Bytes(texts) => texts.iter().flat_map(|t| serialized(t)).collect(),
                }
            }

            /// Each element's JSON: a float as the `float64` of its value when `wide`, else as
            /// its `float32`'s text (the same value for half floats).
            fn json_items(&self, wide: bool) -> Vec<String> {
                let float = |value: f32| {
                    if wide {
                        json(&f64::from(value))
                    } else {
                        json(&value)
                    }
                };
                match self {
                    Elements::Fp16(bits) => bits.iter().map(|&b| float(f16_value(b))).collect(),
                    Elements::Bf16(bits) => bits.iter().map(|&b| float(bf16_value(b))).collect(),
                    Elements::Fp32(values) => values.iter().map(|&v| float(v)).collect(),
                    Elements::Fp64(values) => values.iter().map(json).collect(),
                    Elements::Int64(values) => values.iter().map(json).collect(),
                    Elements::Bytes(texts) => texts.iter().map(json).collect(),
                }
            }

            /// The values the decoder must give: floats as `f32` (a `float64` rounded to the
            /// nearest), integers and strings as they are.
            fn values(&self) -> Values {
                match self {
                    Elements::Fp16(bits) => {
                        Values::Floats(bits.iter().map(|&b| f16_value(b)).collect())
                    }
                    Elements::Bf16(bits) => {
                        Values::Floats(bits.iter().map(|&b| bf16_value(b)).collect())
                    }
                    Elements::Fp32(values) => Values::Floats(values.clone()),
                    Elements::Fp64(values) => {
                        Values::Floats(values.iter().map(|&v| v as f32).collect())
                    }
                    Elements::Int64(values) => Values::Ints(values.clone()),
                    Elements::Bytes(texts) => {
                        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                        Values::Strings(Strings::try_from(&texts[..]).unwrap())
                    }
                }
            }
        }

        /// The bits of a `float32` of every kind: any, zeros, subnormals, the extremes,
        /// infinities and NaNs, scores; with `finite` (JSON data) a finite one.
        fn f32_bits(finite: bool) -> impl Strategy<Value = u32> {
            prop_oneof![
                4 => any::<u32>(),
                2 => prop::sample::select(vec![
                    0, 1 << 31, 1, 0x8000_0001, 0x007F_FFFF, 0x0080_0000, 0x7F7F_FFFF,
                    0xFF7F_FFFF, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0xFF80_0001,
                ]),
                1 => (1u32..0x0080_0000, any::<bool>())
                    .prop_map(|(bits, negative)| bits | u32::from(negative) << 31),
                2 => (-1f32..=1f32).prop_map(f32::to_bits),
            ]
            .prop_map(move |bits| finite_if(finite, bits, f32::from_bits(bits).is_finite(), 30))
        }

        /// The bits of a 16-bit float whose exponent field is `exponent` (`0x7C00` for
        /// `float16`, `0x7F80` for `bfloat16`), of every kind as [`f32_bits`].
        fn half_bits(exponent: u16, finite: bool) -> impl Strategy<Value = u16> {
            let largest = exponent - 1;
            let least_normal = exponent & exponent.wrapping_neg();
            prop_oneof![
                4 => any::<u16>(),
                2 => prop::sample::select(vec![
                    0, 0x8000, 1, 0x8001, least_normal - 1, least_normal, largest,
                    largest | 0x8000, exponent, exponent | 0x8000, exponent | 1,
                ]),
            ]
            .prop_map(move |bits| {
                let is_finite = bits & exponent != exponent;
                finite_if(finite, u32::from(bits), is_finite, 14) as u16
            })
        }

        /// `bits`, with its exponent's highest bit (`top`) cleared when it must be finite and
        /// is not.
        fn finite_if(finite: bool, bits: u32, is_finite: bool, top: u32) -> u32 {
            if finite && !is_finite {
                bits & !(1 << top)
            } else {
                bits
            }
        }

        /// A `float64`: any, or a `float32`'s, or halfway between two `float32`s (each
        /// rounded to even); with `finite` (JSON data) a `float32`'s, so that serde's reading
        /// of its text, which may be a step off, rounds to it.
        fn f64_value(finite: bool) -> BoxedStrategy<f64> {
            let float32 = f32_bits(true).prop_map(|bits| f64::from(f32::from_bits(bits)));
            if finite {
                return float32.boxed();
            }
            let halfway = f32_bits(true).prop_map(|bits| {
                let below = f32::from_bits(bits);
                (f64::from(below) + f64::from(below.next_up())) / 2.0
            });
            prop_oneof![float32, halfway, any::<u64>().prop_map(f64::from_bits)].boxed()
        }

        /// Elements of every datatype, `count` of them, finite where sent as JSON.
        fn elements(count: usize, binary: bool) -> BoxedStrategy<Elements> {
            let finite = !binary;
            prop_oneof![
                prop::collection::vec(half_bits(0x7C00, finite), count).prop_map(Elements::Fp16),
                prop::collection::vec(half_bits(0x7F80, finite), count).prop_map(Elements::Bf16),
                prop::collection::vec(f32_bits(finite).prop_map(f32::from_bits), count)
                    .prop_map(Elements::Fp32),
                prop::collection::vec(f64_value(finite), count).prop_map(Elements::Fp64),
                prop::collection::vec(any::<i64>(), count).prop_map(Elements::Int64),
                prop::collection::vec(".{0,5}", count).prop_map(Elements::Bytes),
            ]
            .boxed()
        }

        /// An input of rank 0 to 3, each axis's length in `lengths`, sent as binary data when
        /// `binary` says so (at random when it does not).
        fn sent(lengths: Range<usize>, binary: Option<bool>) -> impl Strategy<Value = Sent> {
            let binary = binary.map_or_else(|| any::<bool>().boxed(), |b| Just(b).boxed());
            let forms = (any::<bool>(), any::<bool>());
            (prop::collection::vec(lengths, 0..=3), binary, forms)
                .prop_flat_map(|(shape, binary, forms)| {
                    let count = shape.iter().product::<usize>();
                    (
                        Just(shape),
                        elements(count, binary),
                        Just(binary),
                        Just(forms),
                    )
                })
                .prop_map(|(shape, elements, binary, (nested, wide))| Sent {
                    shape,
                    elements,
                    binary,
                    nested,
                    wide,
                })
        }

        /// `items` nested as `shape`.
        fn nested(items: &[String], shape: &[usize]) -> String {
            match shape {
                [] | [_] => format!("[{}]", items.join(",")),
                [outer, inner @ ..] => {
                    let stride: usize = inner.iter().product();
                    let rows: Vec<String> = (0..*outer)
                        .map(|i| nested(&items[i * stride..(i + 1) * stride], inner))
                        .collect();
                    format!("[{}]", rows.join(","))
                }
            }
        }

        /// Each input's binary data (`None` for JSON `data`).
        fn binary_data(inputs: &[(&str, Sent)]) -> Vec<Option<Vec<u8>>> {
            inputs
                .iter()
                .map(|(_, sent)| sent.binary.then(|| sent.elements.le_bytes()))
                .collect()
        }

        /// The body sending `inputs`, each binary one with the bytes `binary` gives it (its
        /// `binary_data_size` their length), and the length of its JSON.
        fn request_body(inputs: &[(&str, Sent)], binary: &[Option<Vec<u8>>]) -> (Vec<u8>, usize) {
            let listed: Vec<String> = inputs
                .iter()
                .zip(binary)
                .map(|((name, sent), bytes)| {
                    let datatype = sent.elements.datatype().name();
                    let head = format!(
                        r#"{{"name": "{name}", "datatype": "{datatype}", "shape": {:?}"#,
                        sent.shape
                    );
                    match bytes {
                        Some(bytes) => format!(
                            r#"{head}, "parameters": {{"binary_data_size": {}}}}}"#,
                            bytes.len()
                        ),
                        None => {
                            let items = sent.elements.json_items(sent.wide);
                            let data = if sent.nested {
                                nested(&items, &sent.shape)
                            } else {
                                format!("[{}]", items.join(", "))
                            };
                            format!(r#"{head}, "data": {data}}}"#)
                        }
                    }
                })
                .collect();
            let json = format!(r#"{{"inputs": [{}]}}"#, listed.join(", "));
            let mut body = json.clone().into_bytes();
            body.extend(binary.iter().flatten().flatten());
            (body, json.len())
        }

        /// `body` decoded whole, and as it arrives in frames cut at `cuts`.
        fn both_ways(
            body: &[u8],
            json_length: usize,
            cuts: &[Index],
        ) -> [Result<InferRequest, ApiError>; 2] {
            let brackets = text::Brackets::default();
            let whole = decode(None, body, &brackets, usize::MAX, Some(json_length), FOUR);
            let admission = Admission::new(1, 0, usize::MAX);
            let mut reservation = admission.reservation();
            let head = BodyHead {
                coding: None,
                declared: Some(body.len()),
            };
            let mut sink = Arriving::for_body(head, Some(json_length), FOUR).unwrap();
            let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(body.len() + 1)).collect();
            cuts.sort_unstable();
            let mut at = 0;
            for cut in cuts.into_iter().chain([body.len()]) {
                sink.take(&body[at..cut], &mut reservation).unwrap();
                at = cut;
            }
            [whole, sink.finish()]
        }

        /// Whether `got` holds exactly `want`: floats bit for bit (a NaN of another
        /// datatype than `FP32` only as a NaN, its payload being the conversion's).
        fn same_values(got: &Values, want: &Values, datatype: Datatype) -> bool {
            match (got, want) {
                (Values::Floats(got), Values::Floats(want)) => {
                    got.len() == want.len()
                        && got.iter().zip(want).all(|(g, w)| {
                            g.to_bits() == w.to_bits()
                                || (datatype != Datatype::Fp32 && g.is_nan() && w.is_nan())
                        })
                }
                (got, want) => got == want,
            }
        }

        /// The status and detail of a decoding error.
        fn refusal(got: Result<InferRequest, ApiError>) -> Result<(u16, String), TestCaseError> {
            match got {
                Err(ApiError::MalformedJson(detail)) => Ok((400, detail)),
                Err(ApiError::Invalid(detail)) => Ok((422, detail)),
                other => Err(TestCaseError::fail(format!("not refused: {other:?}"))),
            }
        }

        /// How binary data can fail to be what its JSON says.
        #[derive(Debug, Clone)]
        enum Misframing {
            /// An input's bytes not a whole number of elements: `by` bytes (less than an
            /// element) more, or fewer.
            NotWholeElements { by: usize, more: bool },
            /// An input's bytes whole elements, but `by` elements more or fewer than its shape
            /// holds (for `BYTES`, one string more or fewer).
            NotTheShape { by: usize, more: bool },
            /// The body cut short, inside the binary data.
            PastTheEnd(Index),
            /// Bytes after all the inputs' binary data.
            Trailing(usize),
        }

        fn misframing() -> impl Strategy<Value = Misframing> {
            prop_oneof![
                (1usize..8, any::<bool>())
                    .prop_map(|(by, more)| Misframing::NotWholeElements { by, more }),
                (1usize..4, any::<bool>())
                    .prop_map(|(by, more)| Misframing::NotTheShape { by, more }),
                any::<Index>().prop_map(Misframing::PastTheEnd),
                (1usize..20).prop_map(Misframing::Trailing),
            ]
        }

        proptest! {
            #[test]
            fn every_input_decodes_to_its_values_bit_for_bit_whether_binary_or_json(
                inputs in prop::collection::vec(sent(0..5, None), 0..=4),
                names in Just(vec!["a", "b", "c", "d"]).prop_shuffle(),
                cuts in prop::collection::vec(any::<Index>(), 0..8),
            ) {
                let inputs: Vec<(&str, Sent)> = names.into_iter().zip(inputs).collect();
                let (body, json_length) = request_body(&inputs, &binary_data(&inputs));
                for got in both_ways(&body, json_length, &cuts) {
                    let got = got.map_err(|err| TestCaseError::fail(format!("{err:?}")))?;
                    prop_assert_eq!(got.inputs.len(), inputs.len());
                    for (got, (name, sent)) in got.inputs.iter().zip(&inputs) {
                        let datatype = sent.elements.datatype();
                        prop_assert_eq!(got.name, *name);
                        prop_assert_eq!(got.datatype, datatype);
                        prop_assert_eq!(&got.shape, &sent.shape);
                        let want = sent.elements.values();
                        prop_assert!(
                            same_values(&got.values, &want, datatype),
                            "{}: {:?}, not {:?}", name, got.values, want
                        );
                    }
                }
            }

            #[test]
            fn every_misframed_binary_input_is_refused_by_name(
                others in prop::collection::vec(sent(0..5, None), 0..=3),
                target in sent(1..5, Some(true)),
                place in any::<Index>(),
                names in Just(vec!["a", "b", "c", "d"]).prop_shuffle(),
                misframing in misframing(),
                cuts in prop::collection::vec(any::<Index>(), 0..8),
            ) {
                let mut sent = others;
                let target_at = place.index(sent.len() + 1);
                sent.insert(target_at, target);
                let inputs: Vec<(&str, Sent)> = names.into_iter().zip(sent).collect();
                let mut binary = binary_data(&inputs);
                let (name, target) = &inputs[target_at];
                let datatype = target.elements.datatype();
                let count: usize = target.shape.iter().product();
                let mut data = binary[target_at].take().unwrap();
                // The body, and the status and detail of its refusal.
                let (body, json_length, want) = match misframing {
                    Misframing::NotWholeElements { by, more } => {
                        let want = match datatype.size() {
                            Some(size) => {
                                let by = 1 + by % (size - 1);
                                if more {
                                    data.resize(data.len() + by, 7);
                                } else {
                                    data.truncate(data.len() - by);
                                }
                                format!(
                                    "{name}: binary_data_size is {} bytes, shape {:?} of {} needs {}",
                                    data.len(), target.shape, datatype.name(), count * size
                                )
                            }
                            // Strings followed by part of a length.
                            None => {
                                data.resize(data.len() + 1 + by % 3, 7);
                                format!("{name}[{count}]: the binary data ends inside a length")
                            }
                        };
                        binary[target_at] = Some(data);
                        let (body, json_length) = request_body(&inputs, &binary);
                        (body, json_length, (422, want))
                    }
                    Misframing::NotTheShape { by, more } => {
                        let want = match datatype.size() {
                            Some(size) => {
                                if more || data.len() < by * size {
                                    data.resize(data.len() + by * size, 7);
                                } else {
                                    data.truncate(data.len() - by * size);
                                }
                                format!(
                                    "{name}: binary_data_size is {} bytes, shape {:?} of {} needs {}",
                                    data.len(), target.shape, datatype.name(), count * size
                                )
                            }
                            None => {
                                let Elements::Bytes(texts) = &target.elements else {
                                    unreachable!("BYTES holds strings");
                                };
                                let held = if more {
                                    data.extend(serialized("more"));
                                    count + 1
                                } else {
                                    data = texts[..count - 1].iter().flat_map(|t| serialized(t)).collect();
                                    count - 1
                                };
                                format!(
                                    "{name}: the binary data holds {held} strings, shape {:?} needs {count}",
                                    target.shape
                                )
                            }
                        };
                        binary[target_at] = Some(data);
                        let (body, json_length) = request_body(&inputs, &binary);
                        (body, json_length, (422, want))
                    }
                    Misframing::PastTheEnd(cut) => {
                        binary[target_at] = Some(data);
                        let (mut body, json_length) = request_body(&inputs, &binary);
                        let total = body.len() - json_length;
                        let left = total - 1 - cut.index(total);
                        body.truncate(json_length + left);
                        // The first binary input whose bytes end past what is left.
                        let mut start = 0;
                        let mut want = None;
                        for ((name, _), data) in inputs.iter().zip(&binary) {
                            let Some(data) = data else { continue };
                            if start + data.len() > left {
                                want = Some(format!(
                                    "{name}: binary_data_size of {} bytes runs past the end of \
                                     the body ({} bytes of binary data left)",
                                    data.len(), left - start
                                ));
                                break;
                            }
                            start += data.len();
                        }
                        (body, json_length, (400, want.unwrap()))
                    }
                    Misframing::Trailing(extra) => {
                        binary[target_at] = Some(data);
                        let (mut body, json_length) = request_body(&inputs, &binary);
                        body.resize(body.len() + extra, 0);
                        let want = format!(
                            "the body holds {extra} bytes after the JSON and the inputs' binary \
                             data; give each binary input its binary_data_size"
                        );
                        (body, json_length, (400, want))
                    }
                };
                for got in both_ways(&body, json_length, &cuts) {
                    prop_assert_eq!(refusal(got)?, want.clone());
                }
            }
        }
    }
}
