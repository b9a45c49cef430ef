//! Open Inference Protocol answers: an [`Outcome`] as an inference response, each output as
//! JSON `data` or, with Triton's binary tensor data extension, as little-endian bytes after
//! the JSON (`binary_data_size` in the output's parameters; the JSON's length goes in the
//! `Inference-Header-Content-Length` response header).
//!
//! Outputs: a dense result is one output, `scores` or `matrix` (FP32, in its shape).
//! Neighbours are `indices` (INT64), `scores` (FP32) and `offsets` (INT64): when every row
//! holds the same number of entries, `indices` and `scores` have the shape `[rows, k]`
//! (`[sets, rows, k]` for rank-3 input); otherwise they are flat, row after row. Either way
//! row `r`'s entries are `offsets[r]..offsets[r + 1]` of the flat values, rows counted across
//! sets (`offsets` has one entry per row and one more). When the listed rows have ids (a
//! table with an ids file), `ids` (BYTES) lists them as `indices` does their indices.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use ndarray::ArrayD;

use super::json::{self, Written};
use super::outcome::{Computed, Outcome};
use super::{Answer, Piece};
use crate::error::ApiError;

/// The version every model has.
pub const MODEL_VERSION: &str = "1";

/// An output to write, and whether in binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// Its name.
    pub name: &'a str,
    /// Whether its values follow the JSON as bytes.
    pub binary: bool,
}

/// The values of one output.
enum Data<'a> {
    Floats(&'a [f32]),
    OwnedFloats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<&'a str>),
}

impl Data<'_> {
    fn datatype(&self) -> &'static str {
        match self {
            Data::Floats(_) | Data::OwnedFloats(_) => "FP32",
            Data::Ints(_) => "INT64",
            Data::Strings(_) => "BYTES",
        }
    }

    fn byte_size(&self) -> usize {
        match self {
            Data::Floats(v) => v.len() * 4,
            Data::OwnedFloats(v) => v.len() * 4,
            Data::Ints(v) => v.len() * 8,
            Data::Strings(v) => v.iter().map(|s| 4 + s.len()).sum(),
        }
    }

    fn append_le(&self, out: &mut Vec<u8>) {
        match self {
            Data::Floats(values) => append_each(out, values, f32::to_le_bytes),
            Data::OwnedFloats(values) => append_each(out, values, f32::to_le_bytes),
            Data::Ints(values) => append_each(out, values, i64::to_le_bytes),
            Data::Strings(values) => values.iter().for_each(|v| {
                // Ids are lines of a file loaded into memory: far below 4 GiB each.
                let length = u32::try_from(v.len()).unwrap_or(u32::MAX);
                out.extend(length.to_le_bytes());
                out.extend(v.as_bytes());
            }),
        }
    }
}

/// Appends each of `values` as its `N` little-endian bytes: on a little-endian host, their
/// memory as it is, in one copy; otherwise into bytes sized once, a loop that vectorises (a
/// byte `extend` per value does not).
fn append_each<const N: usize, T: bytemuck::Pod>(
    out: &mut Vec<u8>,
    values: &[T],
    bytes: impl Fn(T) -> [u8; N],
) {
    const { assert!(N == size_of::<T>(), "N is the size of T") };
    if cfg!(target_endian = "little") {
        out.extend_from_slice(bytemuck::cast_slice(values));
        return;
    }
    let start = out.len();
    out.resize(start + values.len() * N, 0);
    let (slots, _) = out[start..].as_chunks_mut::<N>();
    for (slot, &value) in slots.iter_mut().zip(values) {
        *slot = bytes(value);
    }
}

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Data::Floats(values) => serializer.collect_seq(values.iter()),
            Data::OwnedFloats(values) => serializer.collect_seq(values.iter()),
            Data::Ints(values) => serializer.collect_seq(values.iter()),
            Data::Strings(values) => serializer.collect_seq(values.iter()),
        }
    }
}

/// One output the outcome gives.
struct Given<'a> {
    name: &'static str,
    shape: Vec<usize>,
    data: Data<'a>,
}

/// The outputs `outcome` gives, in their canonical order.
fn given(outcome: &Outcome) -> Result<Vec<Given<'_>>, ApiError> {
    match &outcome.result {
        Computed::Dense { field, values } => {
            let data = values.as_slice().ok_or_else(|| {
                ApiError::Internal("a result array is not in standard layout".into())
            })?;
            let name = match field {
                super::json::DenseField::Scores => "scores",
                super::json::DenseField::Matrix => "matrix",
            };
            Ok(vec![Given {
                name,
                shape: values.shape().to_vec(),
                data: Data::Floats(data),
            }])
        }
        Computed::Neighbours { sets, batched, ids } => {
            let rows = || sets.iter().flat_map(|s| s.indices.rows());
            let width = rows().next().map_or(0, <[usize]>::len);
            let total: usize = sets.iter().map(|s| s.indices.total()).sum();
            let shape = if rows().all(|row| row.len() == width) {
                let n = sets.first().map_or(0, |s| s.indices.len());
                let mut shape = vec![n, width];
                if *batched {
                    shape.insert(0, sets.len());
                }
                shape
            } else {
                vec![total]
            };
            let mut indices = Vec::with_capacity(total);
            let mut scores = Vec::with_capacity(total);
            let mut offsets = vec![0i64];
            for set in sets {
                let base = offsets.last().copied().unwrap_or(0);
                indices.extend(set.indices.values().iter().map(|&i| i as i64));
                scores.extend_from_slice(set.scores.values());
                offsets.extend(set.indices.offsets()[1..].iter().map(|&o| base + o as i64));
            }
            let ids = ids.as_ref().map(|(_, lookup)| Given {
                name: "ids",
                shape: shape.clone(),
                data: Data::Strings(indices.iter().map(|&i| lookup.id_of(i as usize)).collect()),
            });
            let mut given = vec![
                Given {
                    name: "indices",
                    shape: shape.clone(),
                    data: Data::Ints(indices),
                },
                Given {
                    name: "scores",
                    shape,
                    data: Data::OwnedFloats(scores),
                },
                Given {
                    name: "offsets",
                    shape: vec![offsets.len()],
                    data: Data::Ints(offsets),
                },
            ];
            given.extend(ids);
            Ok(given)
        }
    }
}

/// The names of the outputs an outcome of this kind gives.
pub fn names(outcome: &Outcome) -> &'static [&'static str] {
    match &outcome.result {
        Computed::Dense { field, .. } => match field {
            super::json::DenseField::Scores => &["scores"],
            super::json::DenseField::Matrix => &["matrix"],
        },
        Computed::Neighbours { ids: None, .. } => &["indices", "scores", "offsets"],
        Computed::Neighbours { ids: Some(_), .. } => &["indices", "scores", "offsets", "ids"],
    }
}

/// The inference response of `model` to the request `id` (if it had one): `wanted` lists
/// the outputs to write, in order (`None`: every output the outcome gives, in binary when
/// `binary` is set). A dense result sent in binary is sent from its own buffer.
pub fn encode(
    model: &str,
    id: Option<&str>,
    outcome: Outcome,
    wanted: Option<&[Wanted]>,
    binary: bool,
) -> Result<Answer, ApiError> {
    let (json, parts) = encode_parts(model, id, &outcome, wanted, binary)?;
    if parts.is_empty() {
        return Ok(Answer::json(json));
    }
    let json_length = json.iter().map(Vec::len).sum();
    let mut dense = match outcome.result {
        Computed::Dense { values, .. } => Some(values),
        Computed::Neighbours { .. } => None,
    };
    let mut pieces: Vec<Piece> = json.into_iter().map(Piece::Bytes).collect();
    for part in parts {
        match part {
            Part::Bytes(bytes) => pieces.push(Piece::Bytes(bytes)),
            Part::Dense => {
                let values = dense.take().ok_or_else(|| {
                    ApiError::Internal("a dense output is asked for twice".into())
                })?;
                pieces.push(Piece::floats(into_vec(values)));
            }
        }
    }
    Ok(Answer {
        pieces,
        json_length: Some(json_length),
    })
}

/// The binary data of an answer, after its JSON: bytes, or the dense result's values.
enum Part {
    Bytes(Vec<u8>),
    Dense,
}

/// The JSON of the answer, in the pieces to send one after another, and the parts of its
/// binary data, in order (none when every output is JSON).
///
/// The JSON is written a part at a time (the fields before `outputs` by serde, each output's
/// fields before its `data` by serde, then the `data`), so that a float output's `data` is
/// written by the native answers' writer ([`json::write_nested`]: the text serde writes,
/// formatted in pieces on the compute threads when it is large, and sent as those pieces).
fn encode_parts(
    model: &str,
    id: Option<&str>,
    outcome: &Outcome,
    wanted: Option<&[Wanted]>,
    binary: bool,
) -> Result<(Vec<Vec<u8>>, Vec<Part>), ApiError> {
    let mut given = given(outcome)?;
    let chosen: Vec<(Given, bool)> = match wanted {
        None => given.into_iter().map(|g| (g, binary)).collect(),
        Some(wanted) => {
            let mut chosen = Vec::with_capacity(wanted.len());
            for want in wanted {
                let at = given
                    .iter()
                    .position(|g| g.name == want.name)
                    .ok_or_else(|| {
                        ApiError::Invalid(format!(
                            "outputs: this request gives {}, not {}",
                            names(outcome).join(", "),
                            want.name
                        ))
                    })?;
                chosen.push((given.swap_remove(at), want.binary));
            }
            chosen
        }
    };
    let mut out = Written::default();
    let head = Head {
        model_name: model,
        model_version: MODEL_VERSION,
        id,
        parameters: Parameters(outcome),
    };
    json::write(&mut out.text, &head)?;
    // `{…}` becomes `{…,"outputs":[`.
    out.text.pop();
    out.text.extend_from_slice(b",\"outputs\":[");
    for (at, (given, binary)) in chosen.iter().enumerate() {
        if at > 0 {
            out.text.push(b',');
        }
        let output = Output {
            name: given.name,
            datatype: given.data.datatype(),
            shape: &given.shape,
            parameters: binary.then(|| BinarySize {
                binary_data_size: given.data.byte_size(),
            }),
        };
        json::write(&mut out.text, &output)?;
        if *binary {
            continue;
        }
        // `{…}` becomes `{…,"data":[…]}`.
        out.text.pop();
        out.text.extend_from_slice(b",\"data\":");
        match &given.data {
            Data::Floats(values) => json::write_nested(&mut out, &[values.len()], values),
            Data::OwnedFloats(values) => json::write_nested(&mut out, &[values.len()], values),
            data => json::write(&mut out.text, data)?,
        }
        out.text.push(b'}');
    }
    out.text.extend_from_slice(b"]}");
    let is_bytes =
        |(given, binary): &&(Given, bool)| *binary && !matches!(given.data, Data::Floats(_));
    let in_bytes = chosen
        .iter()
        .filter(is_bytes)
        .map(|(given, _)| given.data.byte_size());
    let mut bytes: Vec<u8> = Vec::with_capacity(in_bytes.sum());
    let mut parts = Vec::new();
    for (given, binary) in &chosen {
        match &given.data {
            _ if !binary => {}
            Data::Floats(_) => {
                if !bytes.is_empty() {
                    parts.push(Part::Bytes(std::mem::take(&mut bytes)));
                }
                parts.push(Part::Dense);
            }
            data => data.append_le(&mut bytes),
        }
    }
    if !bytes.is_empty() {
        parts.push(Part::Bytes(bytes));
    }
    Ok((out.pieces(), parts))
}

/// The values of `array`, row-major: its own buffer when it holds exactly them in that
/// order, else a copy.
fn into_vec(array: ArrayD<f32>) -> Vec<f32> {
    if !array.is_standard_layout() {
        return array.iter().copied().collect();
    }
    let len = array.len();
    let (mut values, offset) = array.into_raw_vec_and_offset();
    let start = offset.unwrap_or(0);
    if start == 0 && values.len() == len {
        return values;
    }
    values.truncate(start + len);
    values.split_off(start)
}

/// The response's fields before its `outputs`.
#[derive(Serialize)]
struct Head<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    parameters: Parameters<'a>,
}

/// The response's parameters: `metric`, and `table.NAME` with the version of each table
/// read.
struct Parameters<'a>(&'a Outcome);

impl Serialize for Parameters<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let outcome = self.0;
        let mut map = serializer.serialize_map(Some(1 + outcome.tables.len()))?;
        map.serialize_entry("metric", outcome.metric.name())?;
        for (name, version) in &outcome.tables {
            map.serialize_entry(&format!("table.{name}"), version)?;
        }
        map.end()
    }
}

/// An output's fields before its `data` (which a binary output does not have).
#[derive(Serialize)]
struct Output<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Encoding;
    use crate::answer::json::DenseField;
    use crate::compute::{Metric, Neighbours, Ragged};

    /// The bytes of `answer`'s pieces, one after another.
    fn joined(answer: &Answer) -> Vec<u8> {
        answer
            .pieces
            .iter()
            .flat_map(|piece| piece.as_ref())
            .copied()
            .collect()
    }

    fn dense(values: ArrayD<f32>) -> Outcome {
        Outcome::dense(
            Metric::Cosine,
            Encoding::Json,
            DenseField::Scores,
            values,
            vec![("items".into(), "v1".into())],
        )
    }

    #[test]
    fn dense_results_are_one_output_in_json_or_binary() {
        let outcome = || dense(ndarray::arr1(&[0.5f32, -1.0]).into_dyn());
        let json = encode("pairwise", Some("7"), outcome(), None, false).unwrap();
        assert_eq!(json.json_length, None);
        let body: serde_json::Value = serde_json::from_slice(&joined(&json)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model_name": "pairwise", "model_version": "1", "id": "7",
                "parameters": {"metric": "cosine", "table.items": "v1"},
                "outputs": [{"name": "scores", "datatype": "FP32", "shape": [2], "data": [0.5, -1.0]}]})
        );
        let binary = encode("pairwise", None, outcome(), None, true).unwrap();
        let length = binary.json_length.unwrap();
        let bytes = joined(&binary);
        let head: serde_json::Value = serde_json::from_slice(&bytes[..length]).unwrap();
        assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(&bytes[length..length + 4], &0.5f32.to_le_bytes());
        let wrong = [Wanted {
            name: "matrix",
            binary: false,
        }];
        let err = encode("pairwise", None, outcome(), Some(&wrong), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "outputs: this request gives scores, not matrix"
        );
    }

    #[test]
    fn ragged_neighbours_are_flat_with_offsets() {
        let sets = vec![Neighbours {
            indices: [vec![2usize, 0], vec![1]]
                .into_iter()
                .collect::<Ragged<usize>>(),
            scores: [vec![0.9f32, 0.5], vec![0.7]].into_iter().collect(),
        }];
        let outcome = Outcome {
            metric: Metric::Dot,
            encoding: Encoding::Json,
            tables: Vec::new(),
            result: Computed::Neighbours {
                sets,
                batched: false,
                ids: None,
            },
        };
        let answer = encode("matrix", None, outcome, None, false).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&joined(&answer)).unwrap();
        let outputs = &body["outputs"];
        assert_eq!(outputs[0]["shape"], serde_json::json!([3]));
        assert_eq!(outputs[0]["data"], serde_json::json!([2, 0, 1]));
        assert_eq!(outputs[2]["name"], "offsets");
        assert_eq!(outputs[2]["data"], serde_json::json!([0, 2, 3]));
    }

    #[test]
    fn a_dense_result_in_binary_is_sent_from_its_own_buffer() {
        let values = ndarray::Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32 * 0.5);
        let want: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let values = values.into_dyn();
        let address = values.as_ptr();
        let answer = encode("matrix", None, dense(values), None, true).unwrap();
        assert_eq!(answer.pieces.len(), 2, "the JSON, then the values");
        let Piece::Floats(sent) = &answer.pieces[1] else {
            panic!("{:?}", answer.pieces[1]);
        };
        if cfg!(target_endian = "little") {
            assert_eq!(sent.as_ptr(), address, "not copied");
        }
        assert_eq!(&joined(&answer)[answer.json_length.unwrap()..], &want[..]);
    }

    #[test]
    fn arrays_that_are_not_their_whole_buffer_in_order_are_copied_in_order() {
        let values = ndarray::Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32);
        let want = |array: &ArrayD<f32>| array.iter().copied().collect::<Vec<f32>>();
        let transposed = values.clone().reversed_axes().into_dyn();
        let rows = values.clone().slice_move(ndarray::s![1.., ..]).into_dyn();
        let columns = values.slice_move(ndarray::s![.., 1..3]).into_dyn();
        for array in [transposed, rows, columns] {
            assert_eq!(into_vec(array.clone()), want(&array), "{array:?}");
        }
    }
}
