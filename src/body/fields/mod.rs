//! Request field decoders shared by the endpoints: tensors, index lists and options.
//!
//! Every field is read by its own `deserialize_with` function, so a bad value is reported as
//! `field: expected …, found …` (with the index inside lists) and is never echoed back. What
//! comes out is already checked: `top_k` is at least 1, `threshold` a finite `f32`.
//!
//! [`options`] holds the scalar options (`metric`, `top_k`, …), [`lists`] the index lists and
//! ids; tensors are [`crate::tensor`]'s, named here per field. Embedding fields take a table
//! reference as well ([`Input`]); `pairs` takes tensors only.

mod lists;
mod options;

use std::num::NonZeroUsize;

use serde::de::{DeserializeSeed, Deserializer};

pub use lists::{Exclude, exclude_lists, item_ids, pair_indices};
pub use options::{count, encoding, exclude_self, flag, metric, threshold, top_k};

use crate::compute::Ragged;
use crate::tensor::Strings;
use crate::tensor::{Input, Tensor, TensorSeed};

/// Declares `deserialize_with` functions that decode one named embedding field.
macro_rules! tensor_fields {
    ($($name:ident => $field:literal, ranks $ranks:expr;)*) => {$(
        #[doc = concat!("Decodes the `", $field, "` embedding field: a tensor or a table reference.")]
        pub fn $name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Input, D::Error> {
            TensorSeed::new($field, $ranks).deserialize(deserializer)
        }
    )*};
}

tensor_fields! {
    a_matrix => "a", ranks &[2];
    b_matrix => "b", ranks &[2];
    a_matrix_or_sets => "a", ranks &[2, 3];
    b_matrix_or_sets => "b", ranks &[2, 3];
    users_matrix => "users", ranks &[2];
    items_matrix => "items", ranks &[2];
}

/// Decodes the `pairs` tensor field (`n × 2 × dim`); a table reference is refused.
pub fn pairs_tensor<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Tensor, D::Error> {
    match TensorSeed::new("pairs", &[3]).deserialize(deserializer)? {
        Input::Tensor(tensor) => Ok(tensor),
        Input::Table(_) => Err(serde::de::Error::custom(
            "pairs: takes nested arrays or a base64 tensor; to score table rows, reference \
             the table in a and b",
        )),
    }
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
    some_a_matrix => a_matrix -> Input;
    some_b_matrix => b_matrix -> Input;
    some_b_matrix_or_sets => b_matrix_or_sets -> Input;
    some_pairs_tensor => pairs_tensor -> Tensor;
    some_top_k => top_k -> NonZeroUsize;
    some_threshold => threshold -> f32;
    some_pair_indices => pair_indices -> Ragged<usize>;
    some_exclude_lists => exclude_lists -> Exclude;
    some_item_ids => item_ids -> Strings;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "some_exclude_lists")]
        exclude: Option<Exclude>,
        #[serde(default, deserialize_with = "some_top_k")]
        top_k: Option<NonZeroUsize>,
        #[serde(default, deserialize_with = "some_threshold")]
        threshold: Option<f32>,
        #[serde(default, deserialize_with = "some_item_ids")]
        item_ids: Option<Strings>,
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
        assert_eq!(got.lists.to_vecs(), vec![vec![3, 1], vec![], vec![0]]);
        let named = probe(r#"{"exclude": [[3, "sku-1"], ["x"]]}"#)
            .unwrap()
            .exclude
            .unwrap();
        let entries: Vec<(usize, &str)> = named.ids.entries().collect();
        assert_eq!(
            entries,
            [(1, "sku-1"), (2, "x")],
            "entries among all the lists'"
        );
        // Ids past the first 64 entries, in lists of their own and mixed with indices.
        let mut list: Vec<String> = (0..130).map(|n| n.to_string()).collect();
        for at in [63, 64, 129] {
            list[at] = format!("\"id-{at}\"");
        }
        let body = format!(
            r#"{{"exclude": [["first"], [{}], [], ["last"]]}}"#,
            list.join(",")
        );
        let named = probe(&body).unwrap().exclude.unwrap();
        let entries: Vec<(usize, &str)> = named.ids.entries().collect();
        assert_eq!(
            entries,
            [
                (0, "first"),
                (64, "id-63"),
                (65, "id-64"),
                (130, "id-129"),
                (131, "last")
            ]
        );
        assert!(probe("{}").unwrap().exclude.is_none());
    }

    #[test]
    fn a_bad_index_is_named_by_position() {
        let err = probe(r#"{"exclude": [[3, 1], [-1]]}"#).unwrap_err();
        assert!(
            err.starts_with(
                "exclude[1][0]: expected a non-negative integer index or an id, found -1"
            ),
            "{err}"
        );
        let err = probe(r#"{"exclude": [[3, 1], 2]}"#).unwrap_err();
        assert!(
            err.starts_with("exclude[1]: expected an array of indices, found a number"),
            "{err}"
        );
        let err = probe(r#"{"exclude": [[0.5]]}"#).unwrap_err();
        assert!(
            err.starts_with(
                "exclude[0][0]: expected a non-negative integer index or an id, found 0.5"
            ),
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
        assert_eq!(ok.item_ids, Some(Strings::try_from(&["x"][..]).unwrap()));
    }
}
