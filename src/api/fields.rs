//! Request field types shared by the endpoints: tensors, index lists, metric, encoding.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

use crate::compute::Metric;
use crate::tensor::{Tensor, TensorSeed};

/// The `metric` field.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricName {
    /// See [`Metric::Cosine`].
    #[default]
    Cosine,
    /// See [`Metric::Dot`].
    Dot,
    /// See [`Metric::Euclidean`].
    Euclidean,
    /// See [`Metric::Manhattan`].
    Manhattan,
}

impl From<MetricName> for Metric {
    fn from(name: MetricName) -> Metric {
        match name {
            MetricName::Cosine => Metric::Cosine,
            MetricName::Dot => Metric::Dot,
            MetricName::Euclidean => Metric::Euclidean,
            MetricName::Manhattan => Metric::Manhattan,
        }
    }
}

/// The `response_encoding` field: how float tensors are written back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Nested JSON arrays.
    #[default]
    Json,
    /// Base64 tensor objects of little-endian `float32`.
    Base64,
}

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

/// Wraps a tensor field function for an optional field (`#[serde(default)]`).
macro_rules! optional {
    ($($name:ident => $inner:ident;)*) => {$(
        #[doc = concat!("[`", stringify!($inner), "`] for an optional field.")]
        pub fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Tensor>, D::Error> {
            $inner(d).map(Some)
        }
    )*};
}

optional! {
    some_a_matrix => a_matrix;
    some_b_matrix => b_matrix;
    some_b_matrix_or_sets => b_matrix_or_sets;
    some_pairs_tensor => pairs_tensor;
}

/// Declares `deserialize_with` functions for optional lists of index lists.
macro_rules! index_fields {
    ($($name:ident => $field:literal;)*) => {$(
        #[doc = concat!("Decodes the `", $field, "` lists of indices.")]
        pub fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Vec<usize>>>, D::Error> {
            IndexLists { field: $field, row: None }.deserialize(d).map(|rows| Some(rows.0))
        }
    )*};
}

index_fields! {
    pair_indices => "pairs";
    exclude_indices => "exclude";
}

/// Lists of non-negative integer indices; errors name the field and position.
/// `row: None` reads the outer list, `Some(i)` reads list `i`.
struct IndexLists {
    field: &'static str,
    row: Option<usize>,
}

/// What [`IndexLists`] read: the lists, or (for one list) a single entry.
struct Rows(Vec<Vec<usize>>);

impl IndexLists {
    fn error<E: de::Error>(&self, col: Option<usize>, what: &str) -> E {
        let mut at = self.field.to_owned();
        for i in self.row.into_iter().chain(col) {
            at.push_str(&format!("[{i}]"));
        }
        E::custom(format_args!("{at}: expected {what}"))
    }

    fn expected(&self) -> &'static str {
        match self.row {
            None => "an array of arrays of indices",
            Some(_) => "an array of non-negative integer indices",
        }
    }
}

impl<'de> DeserializeSeed<'de> for IndexLists {
    type Value = Rows;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Rows, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IndexLists {
    type Value = Rows;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expected())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rows, A::Error> {
        let mut rows = Vec::new();
        match self.row {
            None => {
                while let Some(list) = seq.next_element_seed(IndexLists {
                    field: self.field,
                    row: Some(rows.len()),
                })? {
                    rows.extend(list.0);
                }
            }
            Some(_) => {
                let mut list = Vec::new();
                while let Some(index) = seq.next_element_seed(Index {
                    lists: &self,
                    col: list.len(),
                })? {
                    list.push(index);
                }
                rows.push(list);
            }
        }
        Ok(Rows(rows))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Rows, E> {
        Err(self.error(None, self.expected()))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Rows, E> {
        Err(self.error(None, self.expected()))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Rows, E> {
        Err(self.error(None, self.expected()))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Rows, E> {
        Err(self.error(None, self.expected()))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Rows, E> {
        Err(self.error(None, self.expected()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Rows, E> {
        Err(self.error(None, self.expected()))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Rows, A::Error> {
        Err(self.error(None, self.expected()))
    }
}

/// One index inside list `lists.row`.
struct Index<'a> {
    lists: &'a IndexLists,
    col: usize,
}

impl Index<'_> {
    fn error<E: de::Error>(&self) -> E {
        self.lists
            .error(Some(self.col), "a non-negative integer index")
    }
}

impl<'de> DeserializeSeed<'de> for Index<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Index<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative integer index")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
        usize::try_from(v).map_err(|_| self.error())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<usize, E> {
        Err(self.error())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<usize, E> {
        Err(self.error())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<usize, E> {
        Err(self.error())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<usize, E> {
        Err(self.error())
    }

    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        Err(self.error())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<usize, A::Error> {
        Err(self.error())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<usize, A::Error> {
        Err(self.error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "exclude_indices")]
        exclude: Option<Vec<Vec<usize>>>,
    }

    fn probe(json: &str) -> Result<Option<Vec<Vec<usize>>>, String> {
        serde_json::from_str::<Probe>(json)
            .map(|p| p.exclude)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn index_lists_may_be_ragged_and_empty() {
        assert_eq!(
            probe(r#"{"exclude": [[3, 1], [], [0]]}"#).unwrap(),
            Some(vec![vec![3, 1], vec![], vec![0]])
        );
        assert_eq!(probe("{}").unwrap(), None);
    }

    #[test]
    fn a_bad_index_is_named_by_position() {
        let err = probe(r#"{"exclude": [[3, 1], [-1]]}"#).unwrap_err();
        assert!(
            err.starts_with("exclude[1][0]: expected a non-negative integer index"),
            "{err}"
        );
        let err = probe(r#"{"exclude": [[3, 1], 2]}"#).unwrap_err();
        assert!(
            err.starts_with("exclude[1]: expected an array of non-negative"),
            "{err}"
        );
        let err = probe(r#"{"exclude": [[0.5]]}"#).unwrap_err();
        assert!(err.starts_with("exclude[0][0]: expected"), "{err}");
    }
}
