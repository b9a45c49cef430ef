//! Request field decoders shared by the endpoints: tensors, index lists and options.
//!
//! Every field is read by its own `deserialize_with` function, so a bad value is reported as
//! `field: expected …, found …` (with the index inside lists) and is never echoed back. What
//! comes out is already checked: `top_k` is at least 1, `threshold` a finite `f32`.

use std::fmt;
use std::num::NonZeroUsize;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Unexpected, Visitor};

use crate::answer::Encoding;
use crate::compute::{Metric, Ragged};
use crate::tensor::json_kind::{kind, reject_kinds};
use crate::tensor::{Tensor, TensorSeed};

/// Declares `deserialize_with` functions that decode one named tensor field.
macro_rules! tensor_fields {
    ($($name:ident => $field:literal, ranks $ranks:expr;)*) => {$(
        #[doc = concat!("Decodes the `", $field, "` tensor field.")]
        pub fn $name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Tensor, D::Error> {
            TensorSeed::new($field, $ranks).deserialize(deserializer)
        }
    )*};
}

tensor_fields! {
    a_matrix => "a", ranks &[2];
    b_matrix => "b", ranks &[2];
    a_matrix_or_sets => "a", ranks &[2, 3];
    b_matrix_or_sets => "b", ranks &[2, 3];
    pairs_tensor => "pairs", ranks &[3];
    users_matrix => "users", ranks &[2];
    items_matrix => "items", ranks &[2];
}

/// Wraps a field function for an optional field (`#[serde(default)]`).
macro_rules! optional {
    ($($name:ident => $inner:ident -> $t:ty;)*) => {$(
        #[doc = concat!("[`", stringify!($inner), "`] for an optional field.")]
        pub fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$t>, D::Error> {
            $inner(d).map(Some)
        }
    )*};
}

optional! {
    some_a_matrix => a_matrix -> Tensor;
    some_b_matrix => b_matrix -> Tensor;
    some_b_matrix_or_sets => b_matrix_or_sets -> Tensor;
    some_pairs_tensor => pairs_tensor -> Tensor;
    some_top_k => top_k -> NonZeroUsize;
    some_threshold => threshold -> f32;
    some_pair_indices => pair_indices -> Ragged<usize>;
    some_exclude_indices => exclude_indices -> Ragged<usize>;
    some_item_ids => item_ids -> Vec<String>;
}

/// A JSON scalar, or the kind of value found instead.
enum Scalar<'de> {
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(std::borrow::Cow<'de, str>),
    Other(&'static str),
}

impl Scalar<'_> {
    /// What was found, for an error message: numbers are short, so they are shown.
    fn found(&self) -> String {
        match self {
            Scalar::Bool(v) => v.to_string(),
            Scalar::Unsigned(v) => v.to_string(),
            Scalar::Signed(v) => v.to_string(),
            Scalar::Float(v) => format!("{v:?}"),
            Scalar::Str(_) => "a string".to_owned(),
            Scalar::Other(kind) => (*kind).to_owned(),
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Unsigned(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Signed(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Float(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(v.into()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(v.to_owned().into()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an array"))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an object"))
    }
}

/// Reads one scalar field and converts it, or fails with `field: expected …, found …`.
fn scalar<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    field: &str,
    expected: &str,
    convert: impl FnOnce(&Scalar<'de>) -> Option<T>,
) -> Result<T, D::Error> {
    let value = deserializer.deserialize_any(ScalarVisitor)?;
    convert(&value).ok_or_else(|| {
        de::Error::custom(format_args!(
            "{field}: expected {expected}, found {}",
            value.found()
        ))
    })
}

/// Decodes `metric`.
pub fn metric<'de, D: Deserializer<'de>>(d: D) -> Result<Metric, D::Error> {
    let expected = "one of \"cosine\", \"dot\", \"euclidean\", \"manhattan\"";
    scalar(d, "metric", expected, |value| match value {
        Scalar::Str(name) => [
            Metric::Cosine,
            Metric::Dot,
            Metric::Euclidean,
            Metric::Manhattan,
        ]
        .into_iter()
        .find(|m| m.name() == name),
        _ => None,
    })
}

/// Decodes `response_encoding`.
pub fn encoding<'de, D: Deserializer<'de>>(d: D) -> Result<Encoding, D::Error> {
    scalar(
        d,
        "response_encoding",
        "\"json\" or \"base64\"",
        |value| match value {
            Scalar::Str(name) if name == "json" => Some(Encoding::Json),
            Scalar::Str(name) if name == "base64" => Some(Encoding::Base64),
            _ => None,
        },
    )
}

/// Decodes `top_k`: an integer of at least 1.
pub fn top_k<'de, D: Deserializer<'de>>(d: D) -> Result<NonZeroUsize, D::Error> {
    scalar(
        d,
        "top_k",
        "an integer of at least 1",
        |value| match *value {
            Scalar::Unsigned(k) => NonZeroUsize::new(usize::try_from(k).unwrap_or(usize::MAX)),
            _ => None,
        },
    )
}

/// Decodes `threshold`: a number within the `float32` range.
pub fn threshold<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    let expected = "a number within the float32 range";
    scalar(d, "threshold", expected, |value| {
        let t = match *value {
            Scalar::Unsigned(v) => v as f32,
            Scalar::Signed(v) => v as f32,
            Scalar::Float(v) => v as f32,
            _ => return None,
        };
        t.is_finite().then_some(t)
    })
}

/// Decodes `exclude_self`.
pub fn exclude_self<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    scalar(d, "exclude_self", "true or false", |value| match *value {
        Scalar::Bool(v) => Some(v),
        _ => None,
    })
}

/// Decodes `item_ids`: an array of strings.
pub fn item_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(Ids)
}

struct Ids;

impl Ids {
    fn wrong_kind<E: de::Error>(&self, found: Unexpected) -> E {
        E::custom(format_args!(
            "item_ids: expected an array of strings, found {}",
            kind(found)
        ))
    }
}

impl<'de> Visitor<'de> for Ids {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut ids = Vec::new();
        while let Some(value) = seq.next_element_seed(Element)? {
            match value {
                Scalar::Str(id) => ids.push(id.into_owned()),
                other => {
                    return Err(de::Error::custom(format_args!(
                        "item_ids[{}]: expected a string, found {}",
                        ids.len(),
                        other.found()
                    )));
                }
            }
        }
        Ok(ids)
    }

    reject_kinds!(bool, i64, u64, f64, str, unit, map);
}

/// One element of a list, read as a [`Scalar`].
struct Element;

impl<'de> DeserializeSeed<'de> for Element {
    type Value = Scalar<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Scalar<'de>, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Decodes `pairs` (user-item): lists of indices.
pub fn pair_indices<'de, D: Deserializer<'de>>(d: D) -> Result<Ragged<usize>, D::Error> {
    d.deserialize_any(IndexLists { field: "pairs" })
}

/// Decodes `exclude`: lists of indices.
pub fn exclude_indices<'de, D: Deserializer<'de>>(d: D) -> Result<Ragged<usize>, D::Error> {
    d.deserialize_any(IndexLists { field: "exclude" })
}

/// Lists of non-negative integer indices, read into one flat [`Ragged`].
struct IndexLists {
    field: &'static str,
}

impl IndexLists {
    fn wrong_kind<E: de::Error>(&self, found: Unexpected) -> E {
        E::custom(format_args!(
            "{}: expected an array of arrays of indices, found {}",
            self.field,
            kind(found)
        ))
    }
}

impl<'de> Visitor<'de> for IndexLists {
    type Value = Ragged<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of arrays of indices")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ragged<usize>, A::Error> {
        let mut lists = Ragged::new();
        loop {
            let list = IndexList {
                field: self.field,
                row: lists.len(),
                into: &mut lists,
            };
            if seq.next_element_seed(list)?.is_none() {
                return Ok(lists);
            }
            lists.end_row();
        }
    }

    reject_kinds!(bool, i64, u64, f64, str, unit, map);
}

/// List `row`, appended to `into` (the caller ends the row).
struct IndexList<'a> {
    field: &'static str,
    row: usize,
    into: &'a mut Ragged<usize>,
}

impl IndexList<'_> {
    fn wrong_kind<E: de::Error>(&self, found: Unexpected) -> E {
        E::custom(format_args!(
            "{}[{}]: expected an array of indices, found {}",
            self.field,
            self.row,
            kind(found)
        ))
    }
}

impl<'de> DeserializeSeed<'de> for IndexList<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IndexList<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of indices")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut col = 0;
        while let Some(value) = seq.next_element_seed(Element)? {
            let index = match value {
                Scalar::Unsigned(i) => usize::try_from(i).ok(),
                _ => None,
            };
            let Some(index) = index else {
                return Err(de::Error::custom(format_args!(
                    "{}[{}][{col}]: expected a non-negative integer index, found {}",
                    self.field,
                    self.row,
                    value.found()
                )));
            };
            self.into.push(index);
            col += 1;
        }
        Ok(())
    }

    reject_kinds!(bool, i64, u64, f64, str, unit, map);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "some_exclude_indices")]
        exclude: Option<Ragged<usize>>,
        #[serde(default, deserialize_with = "some_top_k")]
        top_k: Option<NonZeroUsize>,
        #[serde(default, deserialize_with = "some_threshold")]
        threshold: Option<f32>,
        #[serde(default, deserialize_with = "some_item_ids")]
        item_ids: Option<Vec<String>>,
    }

    fn probe(json: &str) -> Result<Probe, String> {
        serde_json::from_str::<Probe>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn index_lists_may_be_ragged_and_empty() {
        let got = probe(r#"{"exclude": [[3, 1], [], [0]]}"#)
            .unwrap()
            .exclude
            .unwrap();
        assert_eq!(got.to_vecs(), vec![vec![3, 1], vec![], vec![0]]);
        assert!(probe("{}").unwrap().exclude.is_none());
    }

    #[test]
    fn a_bad_index_is_named_by_position() {
        let err = probe(r#"{"exclude": [[3, 1], [-1]]}"#).unwrap_err();
        assert!(
            err.starts_with("exclude[1][0]: expected a non-negative integer index, found -1"),
            "{err}"
        );
        let err = probe(r#"{"exclude": [[3, 1], 2]}"#).unwrap_err();
        assert!(
            err.starts_with("exclude[1]: expected an array of indices, found a number"),
            "{err}"
        );
        let err = probe(r#"{"exclude": [[0.5]]}"#).unwrap_err();
        assert!(
            err.starts_with("exclude[0][0]: expected a non-negative integer index, found 0.5"),
            "{err}"
        );
    }

    #[test]
    fn options_are_named_in_errors_without_echoing_strings() {
        for (json, want) in [
            (
                r#"{"top_k": 0}"#,
                "top_k: expected an integer of at least 1, found 0",
            ),
            (
                r#"{"top_k": -2}"#,
                "top_k: expected an integer of at least 1, found -2",
            ),
            (
                r#"{"top_k": "secret"}"#,
                "top_k: expected an integer of at least 1, found a string",
            ),
            (
                r#"{"threshold": 1e39}"#,
                "threshold: expected a number within the float32 range",
            ),
            (
                r#"{"threshold": [1]}"#,
                "threshold: expected a number within the float32 range, found an array",
            ),
            (
                r#"{"item_ids": ["a", 5]}"#,
                "item_ids[1]: expected a string, found 5",
            ),
        ] {
            let err = probe(json).unwrap_err();
            assert!(err.starts_with(want), "{json}: {err}");
            assert!(!err.contains("secret"));
        }
        let ok = probe(r#"{"top_k": 3, "threshold": -0.5, "item_ids": ["x"]}"#).unwrap();
        assert_eq!(ok.top_k.map(NonZeroUsize::get), Some(3));
        assert_eq!(ok.threshold, Some(-0.5));
        assert_eq!(ok.item_ids, Some(vec!["x".to_owned()]));
    }
}
