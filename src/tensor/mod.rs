//! Decoding of request tensors into one contiguous `f32` buffer each.
//!
//! A tensor field accepts either
//! - nested JSON arrays of numbers, row-major ([`nested`]), streamed straight into the buffer
//!   with row lengths checked as rows arrive, or
//! - a base64 tensor object `{"dtype", "shape", "data"}` ([`packed`]) holding little-endian
//!   `float32` or `float64` values.
//!
//! Either way the result is a [`Tensor`]: an allowed rank, no zero-length axis, every value a
//! finite `f32`. Errors name the field and the index, e.g. `a[2][1]: …`, and never echo input.

pub(crate) mod json_kind;
mod nested;
mod packed;

use std::fmt;

use ndarray::{Array2, Array3, ArrayView2, ArrayView3};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use json_kind::{kind, reject_kinds};

/// A decoded tensor: row-major finite `f32` values with at least one element on every axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// The length of every axis.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of axes.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The last axis: the dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.shape.last().copied().unwrap_or(0)
    }

    /// A rank-2 tensor as an owned `rows × dim` array (no copy), `None` for another rank.
    pub fn into_matrix(self) -> Option<Array2<f32>> {
        match self.shape[..] {
            [rows, dim] => Array2::from_shape_vec((rows, dim), self.data).ok(),
            _ => None,
        }
    }

    /// A rank-3 tensor as an owned `sets × rows × dim` array (no copy), `None` for another rank.
    pub fn into_sets(self) -> Option<Array3<f32>> {
        match self.shape[..] {
            [sets, rows, dim] => Array3::from_shape_vec((sets, rows, dim), self.data).ok(),
            _ => None,
        }
    }

    /// A rank-2 tensor as a `rows × dim` view, `None` for another rank.
    pub fn matrix(&self) -> Option<ArrayView2<'_, f32>> {
        match self.shape[..] {
            [rows, dim] => ArrayView2::from_shape((rows, dim), &self.data).ok(),
            _ => None,
        }
    }

    /// A rank-3 tensor as a `sets × rows × dim` view, `None` for another rank.
    pub fn sets(&self) -> Option<ArrayView3<'_, f32>> {
        match self.shape[..] {
            [sets, rows, dim] => ArrayView3::from_shape((sets, rows, dim), &self.data).ok(),
            _ => None,
        }
    }
}

/// Decodes one tensor field: `field` names it in errors, `ranks` lists the ranks it takes.
#[derive(Debug, Clone, Copy)]
pub struct TensorSeed {
    field: &'static str,
    ranks: &'static [usize],
}

impl TensorSeed {
    /// A seed for the field `field` taking tensors of the given ranks.
    pub const fn new(field: &'static str, ranks: &'static [usize]) -> Self {
        TensorSeed { field, ranks }
    }

    fn expected_ranks(&self) -> String {
        let listed: Vec<String> = self.ranks.iter().map(usize::to_string).collect();
        listed.join(" or ")
    }

    fn wrong_kind<E: de::Error>(&self, found: de::Unexpected) -> E {
        E::custom(format_args!(
            "{}: expected nested arrays of numbers or a base64 tensor object, found {}",
            self.field,
            kind(found)
        ))
    }

    fn wrong_rank<E: de::Error>(&self, found: usize) -> E {
        E::custom(format_args!(
            "{}: expected a tensor of rank {}, found rank {found}",
            self.field,
            self.expected_ranks()
        ))
    }
}

impl<'de> DeserializeSeed<'de> for TensorSeed {
    type Value = Tensor;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Tensor, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TensorSeed {
    type Value = Tensor;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}: nested arrays of numbers or a base64 tensor object",
            self.field
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Tensor, A::Error> {
        nested::decode(self, seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Tensor, A::Error> {
        packed::decode(self, map)
    }

    reject_kinds!(bool, i64, u64, f64, str, unit);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str, ranks: &'static [usize]) -> Result<Tensor, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        TensorSeed::new("a", ranks)
            .deserialize(&mut de)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn nested_arrays_decode_row_major() {
        let t = decode("[[1, 2.5], [-3, 4e-3]]", &[2]).unwrap();
        assert_eq!(t.shape(), &[2, 2]);
        assert_eq!(t.data, vec![1.0, 2.5, -3.0, 4e-3]);
    }

    #[test]
    fn a_rank_three_tensor_decodes_where_allowed() {
        let t = decode("[[[1], [2]], [[3], [4]], [[5], [6]]]", &[2, 3]).unwrap();
        assert_eq!(t.shape(), &[3, 2, 1]);
        assert!(t.sets().is_some());
    }

    #[test]
    fn ragged_rows_name_the_offending_row() {
        let err = decode("[[1, 2], [3, 4], [5]]", &[2]).unwrap_err();
        assert!(
            err.starts_with("a[2]: row has 1 values, expected 2"),
            "{err}"
        );
        let err = decode("[[1, 2], [3, 4, 5]]", &[2]).unwrap_err();
        assert!(err.starts_with("a[1]: row has more than 2 values"), "{err}");
    }

    #[test]
    fn mixed_nesting_depths_are_a_rank_error() {
        let err = decode("[[1, 2], 3]", &[2]).unwrap_err();
        assert!(err.starts_with("a[1]: expected an array"), "{err}");
        let err = decode("[[1, [2]]]", &[2]).unwrap_err();
        assert!(err.starts_with("a[0][1]: expected a number"), "{err}");
    }

    #[test]
    fn wrong_rank_is_named() {
        let err = decode("[1, 2]", &[2]).unwrap_err();
        assert!(
            err.starts_with("a: expected a tensor of rank 2, found rank 1"),
            "{err}"
        );
    }

    #[test]
    fn empty_tensors_and_rows_are_refused() {
        assert!(
            decode("[]", &[2])
                .unwrap_err()
                .starts_with("a: empty array")
        );
        assert!(
            decode("[[1], []]", &[2])
                .unwrap_err()
                .starts_with("a[1]: empty array")
        );
    }

    #[test]
    fn numbers_beyond_float32_are_refused() {
        let err = decode("[[1, 1e39]]", &[2]).unwrap_err();
        assert!(
            err.starts_with("a[0][1]: value is outside the float32 range"),
            "{err}"
        );
    }

    fn packed(dtype: &str, shape: &str, bytes: &[u8]) -> String {
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        format!(r#"{{"dtype": "{dtype}", "shape": {shape}, "data": "{data}"}}"#)
    }

    fn le_f32(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn base64_float32_and_float64_decode_to_the_same_tensor() {
        let want = [1.5f32, -2.0, 0.25, 8.0, 1e-3, 3.0];
        let f32_json = packed("float32", "[2, 3]", &le_f32(&want));
        let f64_bytes: Vec<u8> = want
            .iter()
            .flat_map(|&v| f64::from(v).to_le_bytes())
            .collect();
        let f64_json = packed("float64", "[2, 3]", &f64_bytes);
        let a = decode(&f32_json, &[2]).unwrap();
        let b = decode(&f64_json, &[2]).unwrap();
        assert_eq!(a.shape(), &[2, 3]);
        assert_eq!(a.data, want);
        assert_eq!(a, b);
    }

    #[test]
    fn base64_spanning_many_chunks_and_data_before_dtype_decode_the_same() {
        let values: Vec<f32> = (0..5000).map(|i| i as f32 * 0.25 - 100.0).collect();
        let streamed = decode(&packed("float32", "[1000, 5]", &le_f32(&values)), &[2]).unwrap();
        assert_eq!(streamed.data, values);
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD.encode(le_f32(&values));
        let late = format!(r#"{{"data": "{data}", "shape": [1000, 5], "dtype": "float32"}}"#);
        assert_eq!(decode(&late, &[2]).unwrap(), streamed);
        let mut broken = data.clone();
        broken.replace_range(5000..5001, "*");
        let json = format!(r#"{{"dtype": "float32", "shape": [1000, 5], "data": "{broken}"}}"#);
        let err = decode(&json, &[2]).unwrap_err();
        assert!(err.contains("invalid character at offset 5000"), "{err}");
    }

    #[test]
    fn base64_errors_name_the_part_at_fault() {
        let ok = le_f32(&[1.0, 2.0]);
        let cases = [
            (packed("float16", "[1, 2]", &ok), "a.dtype: unknown dtype"),
            (
                packed("float32", "[1, 3]", &ok),
                "a.data: decodes to 8 bytes, shape [1, 3] of float32 needs 12",
            ),
            (
                packed("float32", "[2]", &ok),
                "a: expected a tensor of rank 2, found rank 1",
            ),
            (
                packed("float32", "[1, 0]", &ok),
                "a.shape[1]: axis has length 0",
            ),
            (
                packed("float32", "[1, -2]", &ok),
                "a.shape[1]: expected a non-negative integer",
            ),
            (
                packed("float32", "[4294967296, 4294967296]", &ok),
                "a.shape: element count overflows",
            ),
            (
                packed("float32", "[1, 2]", &le_f32(&[1.0, f32::NAN])),
                "a[0][1]: value is NaN",
            ),
            (
                r#"{"dtype": "float32", "shape": [1, 1], "data": "AAA*"}"#.into(),
                "a.data: not valid standard base64",
            ),
            (
                r#"{"dtype": "float32", "shape": [1, 1]}"#.into(),
                "a: tensor object has no \"data\"",
            ),
            (
                r#"{"dtype": "float32", "dtype": "float32"}"#.into(),
                "a: duplicate key",
            ),
            (r#"{"bytes": "AAAA"}"#.into(), "a: tensor object keys are"),
        ];
        for (json, want) in cases {
            let err = decode(&json, &[2]).unwrap_err();
            assert!(err.starts_with(want), "{json}: {err}");
        }
    }

    #[test]
    fn a_top_level_string_is_refused_without_echoing_it() {
        let err = decode(r#""secret""#, &[2]).unwrap_err();
        assert!(err.starts_with(
            "a: expected nested arrays of numbers or a base64 tensor object, found a string"
        ));
        assert!(!err.contains("secret"));
    }

    #[test]
    fn strings_and_nulls_are_named_without_echoing_them() {
        let err = decode(r#"[[1, "secret"]]"#, &[2]).unwrap_err();
        assert!(
            err.starts_with("a[0][1]: expected a number, found a string"),
            "{err}"
        );
        assert!(!err.contains("secret"));
        let err = decode("[[null]]", &[2]).unwrap_err();
        assert!(
            err.starts_with("a[0][0]: expected a number, found null"),
            "{err}"
        );
    }
}
