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
//!
//! A field may instead name rows of a server-side table ([`reference`]); [`Input`] is either.
//!
//! Tensors are read fastest straight from the body's bytes, nested arrays by [`text`] and
//! base64 objects in their plain form by [`read_packed_at`]: the body's parser
//! ([`crate::body`]) reads them ahead of serde and hands them over with [`read_ahead`],
//! leaving `{}` in their place; [`TensorSeed`] then takes each for its field. What the fast
//! path leaves (a body it refuses, an object not in the plain form) serde reads through
//! [`nested`] and [`packed`], whose errors are the answer.
//!
//! The Open Inference Protocol's typed tensors (JSON data or little-endian bytes, by
//! datatype) are [`typed`]'s; their float values become a [`Tensor`] through
//! [`Tensor::from_parts`], held to the same rules.

pub(crate) mod json_kind;
mod nested;
mod number;
mod packed;
#[cfg(test)]
mod properties;
mod reference;
mod strings;
pub mod text;
pub mod typed;

use std::cell::RefCell;
use std::fmt;

use ndarray::{Array2, Array3};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use json_kind::{kind, reject_kinds};

pub use reference::{Pick, Spelling, TableRef};
pub use strings::{Strings, TooLong, json_text_bytes};

pub use packed::BASE64;
pub(crate) use packed::read_at as read_packed_at;

/// Axes a tensor may have at most (the request fields take 2 or 3); longer shapes are
/// refused while they are read.
pub const MAX_RANK: usize = 3;

/// What a tensor field holds: a tensor sent in the request, or a reference to table rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Nested arrays or a base64 tensor.
    Tensor(Tensor),
    /// Rows of a server-side table.
    Table(TableRef),
}

impl Input {
    /// Rows it picks from a table by index or id (0 for a tensor or a whole table): what
    /// resolving it looks up.
    pub fn rows_picked(&self) -> usize {
        match self {
            Input::Table(TableRef {
                pick: Pick::Rows(rows),
                ..
            }) => rows.len(),
            Input::Table(TableRef {
                pick: Pick::Ids(ids),
                ..
            }) => ids.len(),
            _ => 0,
        }
    }
}

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

    /// The values, row-major.
    pub fn values(&self) -> &[f32] {
        &self.data
    }

    /// The values, row-major, as their own buffer.
    pub fn into_values(self) -> Vec<f32> {
        self.data
    }

    /// The number of axes.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The last axis: the dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.shape.last().copied().unwrap_or(0)
    }

    /// The tensor of `shape` holding `data` (row-major) as the field `field`, which takes
    /// tensors of `ranks`: refused, with the message naming the field, for another rank, an
    /// axis of length 0, a length that is not the shape's, or a value that is not a finite
    /// `f32`.
    pub fn from_parts(
        field: &str,
        ranks: &[usize],
        shape: Vec<usize>,
        data: Vec<f32>,
    ) -> Result<Tensor, String> {
        let tensor = Tensor::unchecked_values(field, ranks, shape, data)?;
        finite(field, &tensor.shape, &tensor.data)?;
        Ok(tensor)
    }

    /// [`Tensor::from_parts`] for `data` known to be finite: checked with [`all_finite`]
    /// as it was decoded, while it was in cache, so it is not read again.
    pub fn from_finite_parts(
        field: &str,
        ranks: &[usize],
        shape: Vec<usize>,
        data: Vec<f32>,
    ) -> Result<Tensor, String> {
        debug_assert!(all_finite(&data));
        Tensor::unchecked_values(field, ranks, shape, data)
    }

    /// [`Tensor::from_parts`] but for the values' finiteness.
    fn unchecked_values(
        field: &str,
        ranks: &[usize],
        shape: Vec<usize>,
        data: Vec<f32>,
    ) -> Result<Tensor, String> {
        if !ranks.contains(&shape.len()) {
            let listed: Vec<String> = ranks.iter().map(usize::to_string).collect();
            return Err(format!(
                "{field}: expected a tensor of rank {}, found rank {}",
                listed.join(" or "),
                shape.len()
            ));
        }
        if let Some(axis) = shape.iter().position(|&len| len == 0) {
            return Err(zero_axis(field, axis));
        }
        if typed::element_count(&shape) != Some(data.len()) {
            return Err(format!(
                "{field}: holds {} values, shape {shape:?} needs another number",
                data.len()
            ));
        }
        Ok(Tensor { shape, data })
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
}

/// The error for an axis of length 0.
fn zero_axis(field: &str, axis: usize) -> String {
    format!("{field}.shape[{axis}]: axis has length 0, every axis needs at least one element")
}

/// Values checked at a time by [`finite`].
const FINITE_BLOCK: usize = 1024;

/// Whether every value of `values` is a finite `f32`: whole blocks without an early exit,
/// which vectorise.
pub fn all_finite(values: &[f32]) -> bool {
    let block_finite = |block: &[f32]| block.iter().fold(true, |ok, v| ok & v.is_finite());
    values.chunks(FINITE_BLOCK).all(block_finite)
}

/// Refuses the first value of `data` (row-major, of `shape`) that is not a finite `f32`,
/// naming it by its index: `a[1][0]: …`.
fn finite(field: &str, shape: &[usize], data: &[f32]) -> Result<(), String> {
    // The value is looked for only on failure.
    if all_finite(data) {
        return Ok(());
    }
    let Some(flat) = data.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    Err(format!(
        "{field}{}: value is NaN, infinite or outside the float32 range",
        position(flat, shape)
    ))
}

/// The element at the row-major index `flat` of `shape`, as `[i][j]…` for error messages.
pub fn position(flat: usize, shape: &[usize]) -> String {
    let mut index = vec![0; shape.len()];
    let mut rest = flat;
    for (axis, &len) in shape.iter().enumerate().rev() {
        index[axis] = rest % len.max(1);
        rest /= len.max(1);
    }
    index.iter().map(|i| format!("[{i}]")).collect()
}

thread_local! {
    /// Tensors read ahead of serde on this thread, by field, waiting for their seeds.
    static READ_AHEAD: RefCell<Vec<(&'static str, Tensor)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `parse` (a serde parse of a body whose tensor fields were read ahead) with
/// `tensors` waiting for the [`TensorSeed`]s of their fields, which take them where the
/// body's text holds `{}`; returns its result and whether every tensor was taken. Nothing
/// waits once it returns, whatever `parse` did.
///
/// `parse` must not wait on the compute pool's work (rayon's parallel iterators, `join`):
/// a thread waiting there may run another request's job meanwhile, whose own `read_ahead`
/// on this thread would take this one's tensors.
pub fn read_ahead<R>(tensors: Vec<(&'static str, Tensor)>, parse: impl FnOnce() -> R) -> (R, bool) {
    /// Clears what is left, even when `parse` unwinds.
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            READ_AHEAD.with_borrow_mut(Vec::clear);
        }
    }
    READ_AHEAD.with_borrow_mut(|waiting| {
        debug_assert!(waiting.is_empty(), "read_ahead is not re-entrant");
        *waiting = tensors;
    });
    let _clear = Clear;
    let result = parse();
    (result, READ_AHEAD.with_borrow(Vec::is_empty))
}

/// The tensor read ahead for `field`, if one waits.
fn take_read_ahead(field: &str) -> Option<Tensor> {
    READ_AHEAD.with_borrow_mut(|waiting| {
        let at = waiting.iter().position(|(name, _)| *name == field)?;
        Some(waiting.swap_remove(at).1)
    })
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
    type Value = Input;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Input, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TensorSeed {
    type Value = Input;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}: nested arrays of numbers or a base64 tensor object",
            self.field
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Input, A::Error> {
        nested::decode(self, seq).map(Input::Tensor)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Input, A::Error> {
        let Some(tensor) = take_read_ahead(self.field) else {
            return packed::decode(self, map);
        };
        // The `{}` left in the tensor's place. Any error here sends the body back to serde.
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("a tensor read ahead left more than {}"));
        }
        if !self.ranks.contains(&tensor.rank()) {
            return Err(self.wrong_rank(tensor.rank()));
        }
        Ok(Input::Tensor(tensor))
    }

    reject_kinds!(bool, i64, u64, f64, str, unit);
}

/// What the tests of this module and of [`nested`] and [`packed`] share.
#[cfg(test)]
mod test_support {
    use serde::de::DeserializeSeed;

    use super::{Input, Tensor, TensorSeed};

    /// Decodes `json` as the field `a` taking tensors of `ranks`; an error as its message.
    pub(super) fn decode(json: &str, ranks: &'static [usize]) -> Result<Tensor, String> {
        match read(json, ranks)? {
            Input::Tensor(tensor) => Ok(tensor),
            Input::Table(reference) => Err(format!("a table reference: {reference:?}")),
        }
    }

    /// Decodes `json` as the field `a`, tensor or table reference.
    pub(super) fn read(json: &str, ranks: &'static [usize]) -> Result<Input, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        TensorSeed::new("a", ranks)
            .deserialize(&mut de)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{decode, read};
    use super::{Input, Pick, Spelling, TableRef};

    #[test]
    fn a_value_that_is_not_finite_is_named_by_its_index_in_any_block() {
        let (rows, dim) = (40, 100); // 4,000 values: blocks of 1,024 and a short last one
        for (at, bad) in [
            (0, f32::NAN),
            (1023, f32::INFINITY),
            (1024, f32::NAN),
            (3999, -f32::INFINITY),
        ] {
            let mut data = vec![0.5f32; rows * dim];
            data[at] = bad;
            let got = super::Tensor::from_parts("a", &[2], vec![rows, dim], data);
            let want = format!(
                "a[{}][{}]: value is NaN, infinite or outside the float32 range",
                at / dim,
                at % dim
            );
            assert_eq!(got, Err(want), "{bad} at {at}");
        }
        let fine = super::Tensor::from_parts("a", &[2], vec![rows, dim], vec![0.5; rows * dim]);
        assert!(fine.is_ok());
    }

    #[test]
    fn a_table_reference_reads_its_name_and_rows_or_ids() {
        let table = |table: &str, pick| {
            Ok(Input::Table(TableRef {
                table: table.into(),
                pick,
                spelled: Spelling::Object,
            }))
        };
        assert_eq!(
            read(r#"{"table": "items"}"#, &[2]),
            table("items", Pick::All)
        );
        assert_eq!(
            read(r#"{"rows": [3, 0, 3], "table": "users"}"#, &[2]),
            table("users", Pick::Rows(vec![3, 0, 3]))
        );
        assert_eq!(
            read(r#"{"table": "users", "ids": ["u3", "u7"]}"#, &[2, 3]),
            table(
                "users",
                Pick::Ids(crate::tensor::Strings::try_from(&["u3", "u7"][..]).unwrap())
            )
        );
    }

    #[test]
    fn a_bad_table_reference_is_named_by_its_part() {
        for (json, want) in [
            (r#"{"rows": [1]}"#, "a: table reference has no \"table\""),
            (
                r#"{"table": 5}"#,
                "a.table: expected a table name, found a number",
            ),
            (
                r#"{"table": "t", "rows": [1, -2]}"#,
                "a.rows[1]: expected a non-negative integer row index, found a number",
            ),
            (
                r#"{"table": "t", "rows": ["x"]}"#,
                "a.rows[0]: expected a non-negative integer row index, found a string",
            ),
            (
                r#"{"table": "t", "ids": ["x", 5]}"#,
                "a.ids[1]: expected a string, found a number",
            ),
            (r#"{"table": "t", "ids": []}"#, "a.ids: is empty"),
            (
                r#"{"table": "t", "rows": [1], "ids": ["x"]}"#,
                "a: a table reference takes \"rows\" or \"ids\", not both",
            ),
            (
                r#"{"table": "t", "dtype": "float32"}"#,
                "a: an object is either a base64 tensor",
            ),
        ] {
            let err = read(json, &[2]).unwrap_err();
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
}
