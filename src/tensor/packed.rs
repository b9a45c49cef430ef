//! Base64 tensor objects: `{"dtype": "float32"|"float64", "shape": [..], "data": "<base64>"}`,
//! and the other object a tensor field takes, a table reference: `{"table": NAME}` with
//! `"rows": [indices]` or `"ids": [strings]` ([`super::reference`]).
//!
//! `data` is standard (padded) base64 of the little-endian row-major values, which is what
//! `base64.b64encode(x.astype('<f4').tobytes())` produces. Bytes become floats through
//! `chunks_exact` + `from_le_bytes`, so alignment never matters.
//!
//! Which reads a base64 tensor:
//! - [`read_at`], straight from the body's bytes, for [`crate::body`]'s fast path: the plain
//!   form clients send, and only when it is valid, else `None`;
//! - [`decode`], through serde, for everything else and for every error.
//!
//! Both decode `data` with [`decode_data`], through the `base64` crate's engine on the
//! processor's SIMD ([`BASE64`]): when `dtype` came first (always on the fast path), in
//! chunks of 4,096 characters straight into floats, padding allowed in the last chunk only;
//! else all at once into bytes.

use std::fmt;
use std::sync::LazyLock;

use base64::engine::general_purpose::PAD;
use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};
use base64::{DecodeError, DecodeSliceError, Engine};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::MAX_RANK;
use super::json_kind::{kind, reject_kinds};
use super::reference::{Pick, Spelling, TableRef};
use super::text::skip_whitespace;
use super::{Input, Tensor, TensorSeed};
use crate::tensor::Strings;

/// The engine every base64 tensor is decoded with, and every base64 answer encoded: the
/// `base64` crate's standard alphabet, padded and canonical (its `STANDARD`'s rules, output
/// and errors), on the processor's SIMD where it has it (AVX2, NEON; else the scalar loop).
pub static BASE64: LazyLock<Fast> = LazyLock::new(|| simd_engine(PAD));

/// [`BASE64`] without padding, for the chunks of `data` before its last.
static UNPADDED: LazyLock<Fast> =
    LazyLock::new(|| simd_engine(PAD.with_decode_padding_mode(DecodePaddingMode::RequireNone)));

/// The `base64` crate's fastest engine for the standard alphabet here.
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon")
))]
pub type Fast = base64::engine::Simd;

/// The `base64` crate's fastest engine for the standard alphabet here.
#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon")
)))]
pub type Fast = base64::engine::GeneralPurpose;

#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon")
))]
fn simd_engine(config: GeneralPurposeConfig) -> Fast {
    Fast::standard(config)
}

#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon")
)))]
fn simd_engine(config: GeneralPurposeConfig) -> Fast {
    Fast::new(&base64::alphabet::STANDARD, config)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    Float32,
    Float64,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::Float32 => 4,
            Dtype::Float64 => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Dtype::Float32 => "float32",
            Dtype::Float64 => "float64",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Key {
    Dtype,
    Shape,
    Data,
    Table,
    Rows,
    Ids,
}

/// Reads a base64 tensor object or a table reference whose `{` has been seen.
pub(super) fn decode<'de, A: MapAccess<'de>>(
    seed: TensorSeed,
    mut map: A,
) -> Result<Input, A::Error> {
    let field = seed.field;
    let (mut dtype, mut shape, mut payload) = (None, None, None);
    let (mut table, mut rows, mut ids) = (None, None, None);
    while let Some(key) = map.next_key_seed(KeySeed { field })? {
        let part = Part { field, key, dtype };
        let duplicate = match map.next_value_seed(part)? {
            Value::Dtype(v) => dtype.replace(v).is_some(),
            Value::Shape(v) => shape.replace(v).is_some(),
            Value::Data(v) => payload.replace(v).is_some(),
            Value::Table(v) => table.replace(v).is_some(),
            Value::Rows(v) => rows.replace(v).is_some(),
            Value::Ids(v) => ids.replace(v).is_some(),
        };
        if duplicate {
            return Err(de::Error::custom(format_args!(
                "{field}: duplicate key in tensor object"
            )));
        }
    }
    let referenced = table.is_some() || rows.is_some() || ids.is_some();
    if referenced {
        if dtype.is_some() || shape.is_some() || payload.is_some() {
            return Err(de::Error::custom(format_args!(
                "{field}: an object is either a base64 tensor (\"dtype\", \"shape\", \"data\") \
                 or a table reference (\"table\", \"rows\" or \"ids\"), not both"
            )));
        }
        let Some(table) = table else {
            return Err(de::Error::custom(format_args!(
                "{field}: table reference has no \"table\""
            )));
        };
        let pick = match (rows, ids) {
            (Some(_), Some(_)) => {
                return Err(de::Error::custom(format_args!(
                    "{field}: a table reference takes \"rows\" or \"ids\", not both"
                )));
            }
            (Some(rows), None) => Pick::Rows(rows),
            (None, Some(ids)) => Pick::Ids(ids),
            (None, None) => Pick::All,
        };
        return Ok(Input::Table(TableRef {
            table,
            pick,
            spelled: Spelling::Object,
        }));
    }
    let missing =
        |name| de::Error::custom(format_args!("{field}: tensor object has no \"{name}\""));
    let dtype = dtype.ok_or_else(|| missing("dtype"))?;
    let shape: Vec<usize> = shape.ok_or_else(|| missing("shape"))?;
    let payload: Payload = payload.ok_or_else(|| missing("data"))?;

    if !seed.ranks.contains(&shape.len()) {
        return Err(seed.wrong_rank(shape.len()));
    }
    if let Some(axis) = shape.iter().position(|&len| len == 0) {
        return Err(de::Error::custom(super::zero_axis(field, axis)));
    }
    let needed = shape
        .iter()
        .try_fold(dtype.size(), |acc, &len| acc.checked_mul(len))
        .ok_or_else(|| de::Error::custom(format_args!("{field}.shape: element count overflows")))?;
    let (data, decoded) = match payload {
        Payload::Floats { values, bytes } => (values, bytes),
        Payload::Bytes(bytes) => {
            let mut values = Vec::with_capacity(bytes.len() / dtype.size());
            push_floats(&bytes, dtype, &mut values);
            (values, bytes.len())
        }
    };
    if decoded != needed {
        return Err(de::Error::custom(format_args!(
            "{field}.data: decodes to {decoded} bytes, shape {shape:?} of {} needs {needed}",
            dtype.name()
        )));
    }

    super::finite(field, &shape, &data).map_err(de::Error::custom)?;
    Ok(Input::Tensor(Tensor { shape, data }))
}

enum Value {
    Dtype(Dtype),
    Shape(Vec<usize>),
    Data(Payload),
    Table(String),
    Rows(Vec<usize>),
    Ids(Strings),
}

/// Decoded `data`: floats when `dtype` came first (the usual order), else raw bytes.
enum Payload {
    Floats { values: Vec<f32>, bytes: usize },
    Bytes(Vec<u8>),
}

/// Base64 characters decoded per step: 3,072 bytes, a whole number of float32 and float64.
const CHUNK: usize = 4096;

/// Appends the little-endian values in `bytes` (whole values only) as `f32`.
fn push_floats(bytes: &[u8], dtype: Dtype, out: &mut Vec<f32>) {
    match dtype {
        Dtype::Float32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Dtype::Float64 => {
            out.extend(bytes.chunks_exact(8).map(|c| {
                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }))
        }
    }
}

/// Decodes standard base64 `text`, a chunk at a time, straight into floats when `dtype` is
/// known, so no full-size byte buffer is ever held. Chunks before the last may not hold
/// padding: it can only end `data`.
fn decode_data(text: &[u8], dtype: Option<Dtype>) -> Result<Payload, String> {
    let Some(dtype) = dtype else {
        return BASE64
            .decode(text)
            .map(Payload::Bytes)
            .map_err(|e| e.to_string());
    };
    let mut values = Vec::with_capacity(text.len() / 4 * 3 / dtype.size());
    let mut buffer = [0u8; CHUNK / 4 * 3];
    let mut bytes = 0;
    let last = text.len().saturating_sub(1) / CHUNK;
    for (index, chunk) in text.chunks(CHUNK).enumerate() {
        let engine: &Fast = if index < last { &UNPADDED } else { &BASE64 };
        let written = engine
            .decode_slice(chunk, &mut buffer)
            .map_err(|err| chunk_error(err, chunk, index, index < last))?;
        push_floats(&buffer[..written], dtype, &mut values);
        bytes += written;
    }
    Ok(Payload::Floats { values, bytes })
}

/// The error on the chunk `index` of `data`, with its offset in `data`: in a chunk before the
/// last (`inner`), whose padding is refused, the first character outside the alphabet;
/// else the `base64` crate's error.
fn chunk_error(err: DecodeSliceError, chunk: &[u8], index: usize, inner: bool) -> String {
    let outside = |c: &u8| !(c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/');
    match err {
        DecodeSliceError::DecodeError(DecodeError::InvalidByte(offset, _)) => {
            format!("invalid character at offset {}", index * CHUNK + offset)
        }
        DecodeSliceError::DecodeError(DecodeError::InvalidPadding) if inner => {
            match chunk.iter().position(outside) {
                Some(offset) => format!("invalid character at offset {}", index * CHUNK + offset),
                None => DecodeError::InvalidPadding.to_string(),
            }
        }
        other => other.to_string(),
    }
}

/// Reads the base64 tensor object whose `{` is at `body[at]` straight from the bytes, when it
/// is in the plain form clients send and valid: keys `dtype`, `shape` and `data` once each,
/// in any order, without escapes; axis lengths as plain digits; `data` base64 of finite values
/// as many as the shape holds. Returns the tensor and the position after the object, or
/// `None` for anything else, which serde then reads through [`decode`] (and refuses there,
/// with its errors, when it is not valid). Reads the tensor [`decode`] would.
pub(crate) fn read_at(body: &[u8], at: usize) -> Option<(Tensor, usize)> {
    if body.get(at) != Some(&b'{') {
        return None;
    }
    let (mut dtype, mut shape, mut data) = (None, None, None);
    let mut at = skip_whitespace(body, at + 1);
    loop {
        let (key, after) = plain_string(body, at)?;
        at = skip_whitespace(body, after);
        if body.get(at) != Some(&b':') {
            return None;
        }
        at = skip_whitespace(body, at + 1);
        let duplicate = match key {
            b"dtype" => {
                let (name, after) = plain_string(body, at)?;
                at = after;
                let read = match name {
                    b"float32" => Dtype::Float32,
                    b"float64" => Dtype::Float64,
                    _ => return None,
                };
                dtype.replace(read).is_some()
            }
            b"shape" => {
                let (read, after) = plain_shape(body, at)?;
                at = after;
                shape.replace(read).is_some()
            }
            b"data" => {
                let (text, after) = plain_string(body, at)?;
                at = after;
                data.replace(text).is_some()
            }
            _ => return None,
        };
        if duplicate {
            return None;
        }
        at = skip_whitespace(body, at);
        match body.get(at) {
            Some(b',') => at = skip_whitespace(body, at + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    let (dtype, shape, data) = (dtype?, shape?, data?);
    if shape.is_empty() || shape.len() > MAX_RANK || shape.contains(&0) {
        return None;
    }
    let needed = shape
        .iter()
        .try_fold(dtype.size(), |acc, &len| acc.checked_mul(len))?;
    if needed.div_ceil(3).checked_mul(4) != Some(data.len()) {
        return None;
    }
    let Ok(Payload::Floats { values, bytes }) = decode_data(data, Some(dtype)) else {
        return None;
    };
    if bytes != needed || !super::all_finite(&values) {
        return None;
    }
    Some((
        Tensor {
            shape,
            data: values,
        },
        at + 1,
    ))
}

/// The content of the string whose `"` is at `body[at]` and the position after it, when it
/// holds no escape.
fn plain_string(body: &[u8], at: usize) -> Option<(&[u8], usize)> {
    if body.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    let end = start + memchr::memchr2(b'"', b'\\', body.get(start..)?)?;
    (body[end] == b'"').then(|| (&body[start..end], end + 1))
}

/// The axis lengths of the array at `body[at]` and the position after it, when each is plain
/// digits (no sign, fraction, exponent or leading zero) that fit a `usize`.
fn plain_shape(body: &[u8], at: usize) -> Option<(Vec<usize>, usize)> {
    if body.get(at) != Some(&b'[') {
        return None;
    }
    let mut shape = Vec::new();
    let mut at = skip_whitespace(body, at + 1);
    if body.get(at) == Some(&b']') {
        return Some((shape, at + 1));
    }
    loop {
        let digits = body
            .get(at..)?
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 || (digits > 1 && body[at] == b'0') || shape.len() == MAX_RANK {
            return None;
        }
        let len = body[at..at + digits].iter().try_fold(0usize, |len, &c| {
            len.checked_mul(10)?.checked_add(usize::from(c - b'0'))
        })?;
        shape.push(len);
        at = skip_whitespace(body, at + digits);
        match body.get(at) {
            Some(b',') => at = skip_whitespace(body, at + 1),
            Some(b']') => return Some((shape, at + 1)),
            _ => return None,
        }
    }
}

/// Reads a key of the tensor object.
struct KeySeed {
    field: &'static str,
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: a tensor object key", self.field)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        match v {
            "dtype" => Ok(Key::Dtype),
            "shape" => Ok(Key::Shape),
            "data" => Ok(Key::Data),
            "table" => Ok(Key::Table),
            "rows" => Ok(Key::Rows),
            "ids" => Ok(Key::Ids),
            _ => Err(E::custom(format_args!(
                "{}: tensor object keys are \"dtype\", \"shape\" and \"data\" (a base64 \
                 tensor), or \"table\" with \"rows\" or \"ids\" (a table reference)",
                self.field
            ))),
        }
    }
}

/// Reads the value of `key` in the tensor object.
#[derive(Clone, Copy)]
struct Part {
    field: &'static str,
    key: Key,
    /// The `dtype` read so far, if any.
    dtype: Option<Dtype>,
}

impl Part {
    fn wrong_kind<E: de::Error>(&self, found: de::Unexpected) -> E {
        let field = self.field;
        match self.key {
            Key::Dtype => E::custom(format_args!(
                "{field}.dtype: expected \"float32\" or \"float64\", found {}",
                kind(found)
            )),
            Key::Shape => E::custom(format_args!(
                "{field}.shape: expected an array of non-negative integers, found {}",
                kind(found)
            )),
            Key::Data => E::custom(format_args!(
                "{field}.data: expected a base64 string, found {}",
                kind(found)
            )),
            Key::Table => E::custom(format_args!(
                "{field}.table: expected a table name, found {}",
                kind(found)
            )),
            Key::Rows => E::custom(format_args!(
                "{field}.rows: expected an array of row indices, found {}",
                kind(found)
            )),
            Key::Ids => E::custom(format_args!(
                "{field}.ids: expected an array of ids, found {}",
                kind(found)
            )),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Part {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Part {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: a base64 tensor object", self.field)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        let field = self.field;
        match self.key {
            Key::Dtype => match v {
                "float32" => Ok(Value::Dtype(Dtype::Float32)),
                "float64" => Ok(Value::Dtype(Dtype::Float64)),
                _ => Err(E::custom(format_args!(
                    "{field}.dtype: unknown dtype, expected \"float32\" or \"float64\""
                ))),
            },
            Key::Data => decode_data(v.as_bytes(), self.dtype)
                .map(Value::Data)
                .map_err(|e| {
                    E::custom(format_args!(
                        "{field}.data: not valid standard base64 ({e})"
                    ))
                }),
            Key::Table => Ok(Value::Table(v.to_owned())),
            Key::Shape | Key::Rows | Key::Ids => Err(self.wrong_kind(de::Unexpected::Str(""))),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let field = self.field;
        match self.key {
            Key::Shape => {}
            Key::Rows | Key::Ids => {
                let rows = matches!(self.key, Key::Rows);
                let (mut indices, mut ids) = (Vec::new(), Strings::new());
                loop {
                    let at = indices.len() + ids.len();
                    let entry = ListEntry { field, rows, at };
                    match seq.next_element_seed(entry)? {
                        Some(Entry::Row(row)) => indices.push(row),
                        Some(Entry::Id(id)) => ids
                            .push(&id)
                            .map_err(|err| de::Error::custom(format_args!("{field}.ids: {err}")))?,
                        None => break,
                    }
                }
                indices.shrink_to_fit();
                ids.shrink_to_fit();
                let key = if rows { "rows" } else { "ids" };
                if indices.is_empty() && ids.is_empty() {
                    return Err(de::Error::custom(format_args!(
                        "{field}.{key}: is empty, choose at least one row (or leave \"{key}\" \
                         out for every row)"
                    )));
                }
                return Ok(if rows {
                    Value::Rows(indices)
                } else {
                    Value::Ids(ids)
                });
            }
            _ => return Err(self.wrong_kind(de::Unexpected::Seq)),
        }
        let mut shape = Vec::new();
        while let Some(len) = seq.next_element_seed(AxisLen {
            field: self.field,
            axis: shape.len(),
        })? {
            if shape.len() == MAX_RANK {
                return Err(de::Error::custom(format_args!(
                    "{}.shape: more than {MAX_RANK} axes",
                    self.field
                )));
            }
            shape.push(len);
        }
        Ok(Value::Shape(shape))
    }

    reject_kinds!(map, bool, f64, i64, u64, unit);
}

/// One entry of `rows` (a row index) or of `ids` (a string).
struct ListEntry {
    field: &'static str,
    rows: bool,
    at: usize,
}

enum Entry {
    Row(usize),
    Id(String),
}

impl ListEntry {
    fn wrong_kind<E: de::Error>(&self, found: de::Unexpected) -> E {
        let (field, at) = (self.field, self.at);
        if self.rows {
            E::custom(format_args!(
                "{field}.rows[{at}]: expected a non-negative integer row index, found {}",
                kind(found)
            ))
        } else {
            E::custom(format_args!(
                "{field}.ids[{at}]: expected a string, found {}",
                kind(found)
            ))
        }
    }
}

impl<'de> DeserializeSeed<'de> for ListEntry {
    type Value = Entry;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Entry, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListEntry {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.rows { "a row index" } else { "an id" })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Entry, E> {
        match usize::try_from(v) {
            Ok(row) if self.rows => Ok(Entry::Row(row)),
            _ => Err(self.wrong_kind(de::Unexpected::Unsigned(v))),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Entry, E> {
        if self.rows {
            Err(self.wrong_kind(de::Unexpected::Str("")))
        } else {
            Ok(Entry::Id(v.to_owned()))
        }
    }

    reject_kinds!(i64, f64, bool, unit, seq, map);
}

/// One entry of `shape`: a non-negative integer.
struct AxisLen {
    field: &'static str,
    axis: usize,
}

impl AxisLen {
    fn wrong_kind<E: de::Error>(&self, _: de::Unexpected) -> E {
        E::custom(format_args!(
            "{}.shape[{}]: expected a non-negative integer",
            self.field, self.axis
        ))
    }
}

impl<'de> DeserializeSeed<'de> for AxisLen {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AxisLen {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative integer")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
        usize::try_from(v).map_err(|_| self.wrong_kind(de::Unexpected::Unsigned(v)))
    }

    reject_kinds!(i64, f64, str, bool, unit, seq, map);
}

#[cfg(test)]
mod tests {
    use crate::tensor::Input;
    use crate::tensor::test_support::{decode, read};

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

    /// [`super::read_at`] on the whole object `json`: the tensor, having read to its end.
    fn fast(json: &str) -> Option<super::Tensor> {
        let (tensor, end) = super::read_at(json.as_bytes(), 0)?;
        assert_eq!(end, json.len(), "{json}");
        Some(tensor)
    }

    #[test]
    fn plain_objects_are_read_from_the_bytes_as_serde_reads_them() {
        use base64::Engine;
        let values: Vec<f32> = (0..3000).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
        let bytes = le_f32(&values);
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let wide: Vec<u8> = values
            .iter()
            .flat_map(|&v| f64::from(v).to_le_bytes())
            .collect();
        for json in [
            packed("float32", "[1000, 3]", &bytes),
            format!(r#"{{ "data" : "{text}" ,"shape":[ 3,1000 ],"dtype":"float32"}}"#),
            format!(
                "{{\n\t\"shape\": [10, 20, 15],\r\n\"data\": \"{text}\", \"dtype\": \"float32\"}}"
            ),
            packed("float64", "[3000]", &wide),
            packed("float32", "[1, 1]", &le_f32(&[-0.0])),
        ] {
            let read = fast(&json).unwrap_or_else(|| panic!("not read: {}", &json[..60]));
            assert_eq!(Ok(read), decode(&json, &[1, 2, 3]));
        }
    }

    #[test]
    fn anything_but_a_plain_valid_object_is_left_to_serde() {
        let cases = [
            // Valid, but not the plain form: escapes.
            (
                r#"{"dt\u0079pe": "float32", "shape": [1, 2], "data": "AACAPwAAAEA="}"#,
                true,
            ),
            (
                r#"{"dtype": "float\u0033\u0032", "shape": [1, 2], "data": "AACAPwAAAEA="}"#,
                true,
            ),
            // Refused by serde, which names why.
            (
                r#"{"dtype": "float32", "shape": [1, 2], "data": "AACAPwAAAEA=", "x": 1}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "dtype": "float32", "shape": [2], "data": "AACAPwAAAEA="}"#,
                false,
            ),
            (
                r#"{"dtype": "float16", "shape": [1, 2], "data": "AACAPwAAAEA="}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [01, 2], "data": "AACAPwAAAEA="}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [1.0, 2], "data": "AACAPwAAAEA="}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [-1, 2], "data": "AACAPwAAAEA="}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [1, 2e0], "data": "AACAPwAAAEA="}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [], "data": "AACAPwAAAEA="}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [1, 1, 1, 2], "data": "AACAPwAAAEA="}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [0, 2], "data": "AACAPwAAAEA="}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [18446744073709551616, 1], "data": "AAAAAA=="}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [4294967296, 4294967296], "data": "AAAAAA=="}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [1, 3], "data": "AACAPwAAAEA="}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [1, 2], "data": "AACAPwAAwH8="}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [1, 2], "data": "AACAPwAAAEB="}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [1, 2], "data": "AACAPwAAAEA"}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [1, 2], "data": "AACA\nPwAAAEA="}"#,
                false,
            ),
            (
                "{\"dtype\": \"float32\", \"shape\": [1, 2], \"data\": \"AACA\nPwAAAEA=\"}",
                false,
            ),
            (
                "{\"dtype\": \"float32\", \"shape\": [1, 2], \"data\": \"AACAPwAAAEé\"}",
                false,
            ),
            (r#"{"dtype": "float32", "shape": [1, 2]}"#, false),
            (
                r#"{"dtype": "float32", "shape": [1, 2], "data": "AACAPwAAAEA=",}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [1, 2] "data": "AACAPwAAAEA="}"#,
                false,
            ),
            (
                r#"{"dtype": "float32", "shape": [1, 2], "data": "AACAPwAAAEA=""#,
                false,
            ),
            (r#"{}"#, false),
        ];
        for (json, valid) in cases {
            assert!(fast(json).is_none(), "{json}");
            assert_eq!(decode(json, &[1, 2, 3]).is_ok(), valid, "{json}");
        }
        let table = r#"{"table": "items", "rows": [1, 2]}"#;
        assert!(fast(table).is_none());
        assert!(matches!(read(table, &[2]), Ok(Input::Table(_))));
        // The control: the same object in its plain form is read.
        let plain = r#"{"dtype": "float32", "shape": [1, 2], "data": "AACAPwAAAEA="}"#;
        assert_eq!(
            fast(plain).map(|t| t.values().to_vec()),
            Some(vec![1.0, 2.0])
        );
    }

    #[test]
    fn a_bad_character_or_padding_before_the_last_chunk_is_named_by_its_offset() {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(le_f32(&[1.5; 3000]));
        // Padding that would end a chunk read alone, canonical or not, in the first chunk and
        // a later one; characters outside the alphabet.
        for (at, bad, offset) in [
            (4092, "AA==", 4094),
            (4092, "AB==", 4094),
            (8188, "AAA=", 8191),
            (5000, "*", 5000),
            (100, "\\n", 100),
        ] {
            let mut data = text.clone();
            data.replace_range(at..at + bad.len().min(4), bad);
            let json = format!(r#"{{"dtype": "float32", "shape": [3000], "data": "{data}"}}"#);
            assert!(fast(&json).is_none());
            let err = decode(&json, &[1]).unwrap_err();
            assert!(
                err.starts_with(&format!(
                    "a.data: not valid standard base64 (invalid character at offset {offset})"
                )),
                "{bad}: {err}"
            );
        }
        // Padding wrong at the end, where padding belongs: the `base64` crate's error, with
        // `dtype` before `data` (decoded in chunks) or after it (at once).
        for json in [
            r#"{"dtype": "float32", "shape": [1, 1], "data": "AAAAAA="}"#,
            r#"{"data": "AAAAAA=", "dtype": "float32", "shape": [1, 1]}"#,
        ] {
            let err = decode(json, &[2]).unwrap_err();
            assert!(
                err.starts_with("a.data: not valid standard base64 (")
                    && err.contains("Invalid padding"),
                "{json}: {err}"
            );
        }
    }
}
