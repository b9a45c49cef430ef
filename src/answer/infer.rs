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

    /// Inference answers of every result, choice of outputs and value, read back: each
    /// value is the result's bit for bit, in its output's JSON `data` or in the binary data
    /// at its place, and the JSON is the text serde writes for the same vectors. Run with
    /// more cases by `PROPTEST_CASES=3000 cargo test properties` (CI does).
    mod properties {
        use std::collections::BTreeMap;

        use proptest::prelude::*;
        use proptest::sample::Index;
        use serde::Deserialize;
        use serde_json::value::RawValue;

        use super::*;
        use crate::answer::json::tests::properties::{
            POOLS, Set, assert_bits, difference, filled, large_shape, metric, neighbour_sets,
            numbers, run_large, tables, value,
        };
        use crate::answer::json::{IdLookup, IdsField};
        use crate::tensor::Strings;

        /// An output's values as the answer must give them.
        #[derive(Debug, Clone, Serialize)]
        #[serde(untagged)]
        enum Want {
            Floats(Vec<f32>),
            Ints(Vec<i64>),
            Strings(Vec<String>),
        }

        /// An output as the answer must give it (the module's doc).
        #[derive(Debug, Clone)]
        struct Expected {
            name: &'static str,
            datatype: &'static str,
            shape: Vec<usize>,
            values: Want,
        }

        /// The one output of a dense result.
        fn dense_output(field: DenseField, shape: &[usize], data: &[f32]) -> Expected {
            Expected {
                name: match field {
                    DenseField::Scores => "scores",
                    DenseField::Matrix => "matrix",
                },
                datatype: "FP32",
                shape: shape.to_vec(),
                values: Want::Floats(data.to_vec()),
            }
        }

        /// The outputs of neighbours: `indices`, `scores`, `offsets` and, with `ids`, `ids`.
        fn neighbours_outputs(
            batched: bool,
            sets: &[Set],
            ids: Option<&[String]>,
        ) -> Vec<Expected> {
            let rows: Vec<&Vec<(usize, f32)>> = sets.iter().flatten().collect();
            let width = rows.first().map_or(0, |row| row.len());
            let entries: Vec<(usize, f32)> =
                rows.iter().flat_map(|row| row.iter().copied()).collect();
            let shape = if rows.iter().all(|row| row.len() == width) {
                let n = sets.first().map_or(0, Vec::len);
                if batched {
                    vec![sets.len(), n, width]
                } else {
                    vec![n, width]
                }
            } else {
                vec![entries.len()]
            };
            let mut offsets = vec![0i64];
            for row in &rows {
                offsets.push(offsets[offsets.len() - 1] + row.len() as i64);
            }
            let output = |name, datatype, shape: &[usize], values| Expected {
                name,
                datatype,
                shape: shape.to_vec(),
                values,
            };
            let mut outputs = vec![
                output(
                    "indices",
                    "INT64",
                    &shape,
                    Want::Ints(entries.iter().map(|&(i, _)| i as i64).collect()),
                ),
                output(
                    "scores",
                    "FP32",
                    &shape,
                    Want::Floats(entries.iter().map(|&(_, s)| s).collect()),
                ),
                output("offsets", "INT64", &[offsets.len()], Want::Ints(offsets)),
            ];
            if let Some(ids) = ids {
                let listed = entries.iter().map(|&(i, _)| ids[i].clone()).collect();
                outputs.push(output("ids", "BYTES", &shape, Want::Strings(listed)));
            }
            outputs
        }

        /// Checks that `bytes`, an output's binary data, are `want`'s little-endian values
        /// (strings each after its 4-byte length).
        fn assert_binary(bytes: &[u8], want: &Want) -> Result<(), TestCaseError> {
            match want {
                Want::Floats(want) => {
                    let (floats, rest) = bytes.as_chunks::<4>();
                    prop_assert!(rest.is_empty());
                    let bits: Vec<u32> = floats.iter().map(|&b| u32::from_le_bytes(b)).collect();
                    assert_bits(&bits, want)?;
                }
                Want::Ints(want) => {
                    let (ints, rest) = bytes.as_chunks::<8>();
                    prop_assert!(rest.is_empty());
                    let ints: Vec<i64> = ints.iter().map(|&b| i64::from_le_bytes(b)).collect();
                    prop_assert_eq!(&ints, want);
                }
                Want::Strings(want) => {
                    let mut rest = bytes;
                    let mut read = Vec::new();
                    while let Some((length, after)) = rest.split_first_chunk::<4>() {
                        let (text, after) = after.split_at(u32::from_le_bytes(*length) as usize);
                        read.push(String::from_utf8(text.to_vec())?);
                        rest = after;
                    }
                    prop_assert!(rest.is_empty());
                    prop_assert_eq!(&read, want);
                }
            }
            Ok(())
        }

        /// Checks that `data`, an output's JSON `data`, holds `want`'s values, floats bit
        /// for bit.
        fn assert_json(data: &str, want: &Want) -> Result<(), TestCaseError> {
            match want {
                Want::Floats(want) => {
                    let _: Vec<serde_json::Number> = serde_json::from_str(data)?;
                    assert_bits(&numbers(data)?, want)?;
                }
                Want::Ints(want) => prop_assert_eq!(&serde_json::from_str::<Vec<i64>>(data)?, want),
                Want::Strings(want) => {
                    prop_assert_eq!(&serde_json::from_str::<Vec<String>>(data)?, want)
                }
            }
            Ok(())
        }

        /// An answer's JSON as it reads back: each output's `data` left as it is.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct AnswerRead<'a> {
            model_name: String,
            model_version: String,
            #[serde(default)]
            id: Option<String>,
            parameters: BTreeMap<String, String>,
            #[serde(borrow)]
            outputs: Vec<OutputRead<'a>>,
        }

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct OutputRead<'a> {
            name: String,
            datatype: String,
            shape: Vec<usize>,
            #[serde(default)]
            parameters: Option<BinaryData>,
            #[serde(borrow, default)]
            data: Option<&'a RawValue>,
        }

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct BinaryData {
            binary_data_size: usize,
        }

        /// An answer's JSON as serde writes it.
        #[derive(Serialize)]
        struct AnswerWant<'a> {
            model_name: &'a str,
            model_version: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a str>,
            parameters: &'a BTreeMap<String, String>,
            outputs: Vec<OutputWant<'a>>,
        }

        #[derive(Serialize)]
        struct OutputWant<'a> {
            name: &'a str,
            datatype: &'a str,
            shape: &'a [usize],
            #[serde(skip_serializing_if = "Option::is_none")]
            parameters: Option<BinaryData>,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: Option<&'a Want>,
        }

        /// The bytes a binary output of `want` takes.
        fn binary_size(want: &Want) -> usize {
            match want {
                Want::Floats(values) => 4 * values.len(),
                Want::Ints(values) => 8 * values.len(),
                Want::Strings(values) => values.iter().map(|s| 4 + s.len()).sum(),
            }
        }

        /// The answer of `outcome` (whose outputs are `outputs`) encoded on a pool of
        /// `threads` threads, checked: its JSON parses and is the text serde writes, and
        /// each output chosen is there, in order, with its values bit for bit in its JSON or
        /// its binary data. `chosen` picks the outputs asked for (`None`: all, in `binary`
        /// or not). Gives the answer.
        fn assert_answer(
            outcome: Outcome,
            outputs: &[Expected],
            chosen: Option<&[(Index, bool)]>,
            binary: bool,
            id: Option<&str>,
            threads: usize,
        ) -> Result<Answer, TestCaseError> {
            // The outputs asked for, each once, and whether in binary.
            let asked: Vec<(Expected, bool)> = match chosen {
                None => outputs.iter().map(|o| (o.clone(), binary)).collect(),
                Some(chosen) => {
                    let mut left = outputs.to_vec();
                    chosen
                        .iter()
                        .map_while(|(at, binary)| {
                            (!left.is_empty()).then(|| (left.remove(at.index(left.len())), *binary))
                        })
                        .collect()
                }
            };
            let wanted: Option<Vec<Wanted>> = chosen.map(|_| {
                asked
                    .iter()
                    .map(|(o, binary)| Wanted {
                        name: o.name,
                        binary: *binary,
                    })
                    .collect()
            });
            let parameters: BTreeMap<String, String> =
                [("metric".to_owned(), outcome.metric.name().to_owned())]
                    .into_iter()
                    .chain(
                        outcome
                            .tables
                            .iter()
                            .map(|(n, v)| (format!("table.{n}"), v.clone())),
                    )
                    .collect();
            let answer = POOLS[threads - 1]
                .install(|| encode("m", id, outcome, wanted.as_deref(), binary))?;
            let bytes = joined(&answer);
            let (json, mut binary_data) = bytes.split_at(answer.json_length.unwrap_or(bytes.len()));
            let read: AnswerRead = serde_json::from_slice(json)?;
            prop_assert_eq!(read.model_name, "m");
            prop_assert_eq!(read.model_version, MODEL_VERSION);
            prop_assert_eq!(read.id.as_deref(), id);
            prop_assert_eq!(&read.parameters, &parameters);
            prop_assert_eq!(read.outputs.len(), asked.len());
            for (output, (want, binary)) in read.outputs.iter().zip(&asked) {
                prop_assert_eq!(&output.name, want.name);
                prop_assert_eq!(&output.datatype, want.datatype);
                prop_assert_eq!(&output.shape, &want.shape);
                if *binary {
                    prop_assert!(output.data.is_none());
                    let size = output
                        .parameters
                        .as_ref()
                        .map_or(usize::MAX, |p| p.binary_data_size);
                    prop_assert!(
                        size <= binary_data.len(),
                        "{} of {} bytes",
                        size,
                        binary_data.len()
                    );
                    let (own, rest) = binary_data.split_at(size);
                    assert_binary(own, &want.values)?;
                    binary_data = rest;
                } else {
                    prop_assert!(output.parameters.is_none());
                    let data = output.data.ok_or_else(|| TestCaseError::fail("no data"))?;
                    assert_json(data.get(), &want.values)?;
                }
            }
            prop_assert!(binary_data.is_empty(), "{} bytes left", binary_data.len());
            let want = serde_json::to_vec(&AnswerWant {
                model_name: "m",
                model_version: MODEL_VERSION,
                id,
                parameters: &parameters,
                outputs: asked
                    .iter()
                    .map(|(o, binary)| OutputWant {
                        name: o.name,
                        datatype: o.datatype,
                        shape: &o.shape,
                        parameters: binary.then(|| BinaryData {
                            binary_data_size: binary_size(&o.values),
                        }),
                        data: (!binary).then_some(&o.values),
                    })
                    .collect(),
            })?;
            prop_assert!(json == want, "{}", difference(json, &want));
            Ok(answer)
        }

        /// A dense result of rank 1 to 3 and its values.
        fn dense_result() -> impl Strategy<Value = (Vec<usize>, Vec<f32>)> {
            prop::collection::vec(0usize..8, 1..=3).prop_flat_map(|shape| {
                let len = shape.iter().product::<usize>();
                (Just(shape), prop::collection::vec(value(), len))
            })
        }

        fn field() -> impl Strategy<Value = DenseField> {
            prop::sample::select(vec![DenseField::Scores, DenseField::Matrix])
        }

        /// Outputs asked for by place among those left, each in binary or not (`None`: all).
        fn chosen() -> impl Strategy<Value = Option<Vec<(Index, bool)>>> {
            prop::option::of(prop::collection::vec((any::<Index>(), any::<bool>()), 0..5))
        }

        proptest! {
            #[test]
            fn every_dense_inference_answer_reads_back_bit_for_bit_as_the_text_serde_writes(
                (shape, data) in dense_result(),
                field in field(),
                metric in metric(),
                tables in tables(),
                chosen in chosen(),
                binary in any::<bool>(),
                id in prop::option::of(".{0,4}"),
            ) {
                let outputs = [dense_output(field, &shape, &data)];
                let values = ndarray::ArrayD::from_shape_vec(shape, data)?;
                let tables = tables.into_iter().collect();
                let outcome = Outcome::dense(metric, Encoding::Json, field, values, tables);
                assert_answer(outcome, &outputs, chosen.as_deref(), binary, id.as_deref(), 1)?;
            }

            #[test]
            fn every_neighbours_inference_answer_reads_back_bit_for_bit_as_the_text_serde_writes(
                (batched, sets) in neighbour_sets(),
                metric in metric(),
                ids in prop::option::of(prop::collection::vec(".{0,6}", 20)),
                chosen in chosen(),
                binary in any::<bool>(),
            ) {
                let outputs = neighbours_outputs(batched, &sets, ids.as_deref());
                let lookup = ids.map(|ids| {
                    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                    let ids: Box<dyn IdLookup + Send> = Box::new(Strings::try_from(&ids[..]).unwrap());
                    (IdsField::Items, ids)
                });
                let sets = sets
                    .iter()
                    .map(|set| Neighbours {
                        indices: set.iter().map(|row| row.iter().map(|&(i, _)| i)).collect(),
                        scores: set.iter().map(|row| row.iter().map(|&(_, s)| s)).collect(),
                    })
                    .collect();
                let outcome = Outcome {
                    metric,
                    encoding: Encoding::Json,
                    tables: Vec::new(),
                    result: Computed::Neighbours { sets, batched, ids: lookup },
                };
                assert_answer(outcome, &outputs, chosen.as_deref(), binary, None, 1)?;
            }
        }

        #[test]
        fn every_large_inference_answer_written_in_pieces_reads_back_bit_for_bit() {
            let cases = (
                large_shape(),
                any::<u64>(),
                prop::collection::vec(value(), 1..32),
                2usize..=4,
            );
            run_large(cases, |(shape, seed, palette, threads)| {
                let data = filled(shape.iter().product(), seed, &palette);
                let outputs = [dense_output(DenseField::Matrix, &shape, &data)];
                let values = ndarray::ArrayD::from_shape_vec(shape, data)?;
                let outcome = Outcome::dense(
                    Metric::Dot,
                    Encoding::Json,
                    DenseField::Matrix,
                    values,
                    Vec::new(),
                );
                let answer = assert_answer(outcome, &outputs, None, false, None, threads)?;
                // The JSON before the data, two pieces of the data or more, and the end.
                prop_assert!(answer.pieces.len() >= 4, "{} pieces", answer.pieces.len());
                Ok(())
            });
        }
    }
}
