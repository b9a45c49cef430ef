//! Typed tensors of the Open Inference Protocol: a `datatype`, a `shape`, and data given
//! either as JSON (flat or nested arrays, row-major) or as little-endian bytes (Triton's
//! binary tensor data: no stride, no padding; a `BYTES` element is a 4-byte length and the
//! bytes).
//!
//! Bytes become values through `from_le_bytes` on each element, straight into the tensor's
//! one buffer, so alignment never matters and nothing else is copied. Float values are
//! checked for finiteness where they become a [`super::Tensor`] ([`super::Tensor::from_parts`]),
//! or, for binary inputs decoded as the body arrives, frame by frame
//! ([`super::Tensor::from_finite_parts`] then takes them).

use std::fmt;

use half::{bf16, f16};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::json_kind::{kind, reject_kinds};
use crate::tensor::Strings;

/// The datatypes simserve takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    /// IEEE half precision.
    Fp16,
    /// bfloat16.
    Bf16,
    /// float32.
    Fp32,
    /// float64 (rounded to float32).
    Fp64,
    /// Signed 64-bit integers (indices).
    Int64,
    /// Strings (ids): UTF-8.
    Bytes,
}

impl Datatype {
    /// The datatype named `name` (`"FP32"`), if simserve takes it.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "FP16" => Datatype::Fp16,
            "BF16" => Datatype::Bf16,
            "FP32" => Datatype::Fp32,
            "FP64" => Datatype::Fp64,
            "INT64" => Datatype::Int64,
            "BYTES" => Datatype::Bytes,
            _ => return None,
        })
    }

    /// The protocol's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Datatype::Fp16 => "FP16",
            Datatype::Bf16 => "BF16",
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
            Datatype::Int64 => "INT64",
            Datatype::Bytes => "BYTES",
        }
    }

    /// Bytes per element, `None` for `BYTES` (each element has its own length).
    pub fn size(self) -> Option<usize> {
        match self {
            Datatype::Fp16 | Datatype::Bf16 => Some(2),
            Datatype::Fp32 => Some(4),
            Datatype::Fp64 | Datatype::Int64 => Some(8),
            Datatype::Bytes => None,
        }
    }

    /// Whether its values are floats.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            Datatype::Fp16 | Datatype::Bf16 | Datatype::Fp32 | Datatype::Fp64
        )
    }
}

/// The values of a typed tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Any float datatype, as `f32` (not yet checked for finiteness).
    Floats(Vec<f32>),
    /// `INT64`.
    Ints(Vec<i64>),
    /// `BYTES`.
    Strings(Strings),
}

/// The number of elements of `shape`, `None` when it overflows.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &len| acc.checked_mul(len))
}

/// Checks that `len` bytes of binary data can be the field `field`, a tensor of `datatype`
/// and `shape`: its element count does not overflow and, for a fixed-size datatype, `len`
/// is exactly what the shape needs. Gives the element count.
pub fn check_size(
    field: &str,
    datatype: Datatype,
    shape: &[usize],
    len: usize,
) -> Result<usize, String> {
    let count =
        element_count(shape).ok_or_else(|| format!("{field}.shape: element count overflows"))?;
    let Some(size) = datatype.size() else {
        return Ok(count);
    };
    let needed = count.checked_mul(size);
    if needed != Some(len) {
        let needed = needed.map_or_else(|| "more".to_owned(), |n| n.to_string());
        return Err(format!(
            "{field}: binary_data_size is {len} bytes, shape {shape:?} of {} needs {needed}",
            datatype.name()
        ));
    }
    Ok(count)
}

/// Decodes the little-endian `bytes` of the field `field`, a tensor of `datatype` and
/// `shape`: their length must be exactly what the shape needs ([`check_size`]).
pub fn from_le_bytes(
    field: &str,
    datatype: Datatype,
    shape: &[usize],
    bytes: &[u8],
) -> Result<Values, String> {
    let count = check_size(field, datatype, shape, bytes.len())?;
    Ok(match datatype {
        Datatype::Fp32 => Values::Floats(each(bytes, f32::from_le_bytes)),
        Datatype::Fp64 => Values::Floats(each(bytes, fp64_value)),
        Datatype::Fp16 => Values::Floats(each(bytes, |b| f16::from_le_bytes(b).to_f32())),
        Datatype::Bf16 => Values::Floats(each(bytes, |b| bf16::from_le_bytes(b).to_f32())),
        Datatype::Int64 => Values::Ints(each(bytes, i64::from_le_bytes)),
        Datatype::Bytes => Values::Strings(strings(field, shape, count, bytes)?),
    })
}

/// The value of one little-endian `FP64` element, as simserve takes it: rounded to `f32`.
pub fn fp64_value(bytes: [u8; 8]) -> f32 {
    f64::from_le_bytes(bytes) as f32
}

/// Each whole `N`-byte element of `bytes`, converted. Generic rather than a function pointer,
/// so that the conversion is inlined and the loop vectorised.
fn each<const N: usize, T>(bytes: &[u8], convert: impl Fn([u8; N]) -> T) -> Vec<T> {
    let (elements, _) = bytes.as_chunks::<N>();
    elements.iter().map(|&element| convert(element)).collect()
}

/// `BYTES` elements: each a little-endian `u32` length and that many UTF-8 bytes.
fn strings(
    field: &str,
    shape: &[usize],
    count: usize,
    mut bytes: &[u8],
) -> Result<Strings, String> {
    let mut out = Strings::with_capacity(count.min(bytes.len() / 4), bytes.len());
    while !bytes.is_empty() {
        let at = out.len();
        let (length, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| format!("{field}[{at}]: the binary data ends inside a length"))?;
        let length = usize::try_from(u32::from_le_bytes(*length)).unwrap_or(usize::MAX);
        if length > rest.len() {
            return Err(format!(
                "{field}[{at}]: a string of {length} bytes runs past the end of the binary data"
            ));
        }
        let (text, rest) = rest.split_at(length);
        let text = std::str::from_utf8(text).map_err(|_| format!("{field}[{at}]: is not UTF-8"))?;
        out.push(text).map_err(|err| format!("{field}: {err}"))?;
        bytes = rest;
    }
    if out.len() != count {
        return Err(format!(
            "{field}: the binary data holds {} strings, shape {shape:?} needs {count}",
            out.len()
        ));
    }
    Ok(out)
}

/// An `FP32` tensor's JSON `data` read by the tensor text reader ([`super::text`]), when
/// `text` is exactly an array of JSON numbers, flat or nested rectangularly (its nesting not
/// checked against the shape, as [`JsonData`] does not check it), holding `count` finite
/// values: each rounded once, straight from its digits, to the nearest `f32`, where
/// [`JsonData`] reads it as an `f64` first. `None` for anything else (ragged nesting, another
/// count, a value that is not a number or not a finite `f32`), which [`JsonData`] then
/// reads, naming what is wrong.
pub fn read_fp32_text(text: &[u8], count: usize) -> Option<Vec<f32>> {
    let tensor = super::text::read_whole(text)?;
    (tensor.values().len() == count).then(|| tensor.into_values())
}

/// [`read_fp32_text`] for the array of `span` in `text` (found by [`super::text::span`] or
/// [`super::text::span_recorded`]), read on the compute threads when it is large.
pub fn read_fp32_spanned(text: &[u8], span: &super::text::Span, count: usize) -> Option<Vec<f32>> {
    let tensor = super::text::read_parallel(text, span)?;
    (tensor.values().len() == count).then(|| tensor.into_values())
}

/// Decodes a tensor's JSON `data`: an array, flat or nested (nesting is not checked
/// against the shape, only the number of elements), of exactly as many elements as `shape`
/// holds, each of `datatype`'s kind (a number, an integer, a string). A number is read as
/// an `f64`, then rounded to `datatype` (to `f16` or `bf16` for those, as their binary form
/// holds it) and held as an `f32`; for `FP32` data, [`read_fp32_text`] rounds once and is
/// faster.
#[derive(Debug, Clone, Copy)]
pub struct JsonData<'a> {
    field: &'a str,
    datatype: Datatype,
    shape: &'a [usize],
    text_len: usize,
}

impl<'a> JsonData<'a> {
    /// A decoder for the `data` of the field `field`.
    ///
    /// `text_len` is the length of the data's JSON: room for as many values as the shape
    /// holds, but no more than fit in that text (two bytes each, `0,`), is made at once, so
    /// the values' buffer is never regrown.
    pub fn new(field: &'a str, datatype: Datatype, shape: &'a [usize], text_len: usize) -> Self {
        JsonData {
            field,
            datatype,
            shape,
            text_len,
        }
    }
}

impl<'de> DeserializeSeed<'de> for JsonData<'_> {
    type Value = Values;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Values, D::Error> {
        let count = element_count(self.shape).ok_or_else(|| {
            de::Error::custom(format_args!(
                "{}.shape: element count overflows",
                self.field
            ))
        })?;
        let room = count.min(self.text_len.div_ceil(2));
        let mut values = match self.datatype {
            Datatype::Int64 => Values::Ints(Vec::with_capacity(room)),
            Datatype::Bytes => Values::Strings(Strings::with_capacity(
                count.min(self.text_len.div_ceil(3)),
                0,
            )),
            _ => Values::Floats(Vec::with_capacity(room)),
        };
        let mut sink = Sink {
            field: self.field,
            datatype: self.datatype,
            count,
            seen: 0,
            values: &mut values,
        };
        deserializer.deserialize_any(Level { sink: &mut sink })?;
        if sink.seen != count {
            return Err(de::Error::custom(format_args!(
                "{}.data: holds {} values, shape {:?} needs {count}",
                self.field, sink.seen, self.shape
            )));
        }
        Ok(values)
    }
}

/// Where decoded elements go, at most `count` of them.
struct Sink<'s> {
    field: &'s str,
    /// The data's datatype: a number is rounded to it ([`narrowed`]).
    datatype: Datatype,
    count: usize,
    seen: usize,
    values: &'s mut Values,
}

impl Sink<'_> {
    /// Takes one element, or names it as the wrong kind.
    fn take<E: de::Error>(&mut self, element: Element) -> Result<(), E> {
        let at = self.seen;
        if at >= self.count {
            return Err(E::custom(format_args!(
                "{}.data: holds more than the {} values its shape needs",
                self.field, self.count
            )));
        }
        let expected = match (&mut *self.values, element) {
            (Values::Floats(out), Element::Number(v)) => {
                out.push(narrowed(self.field, self.datatype, at, v)?.unwrap_or(v as f32));
                None
            }
            (Values::Floats(out), Element::Integer(v)) => {
                out.push(narrowed(self.field, self.datatype, at, v as f64)?.unwrap_or(v as f32));
                None
            }
            (Values::Ints(out), Element::Integer(v)) => {
                out.push(v);
                None
            }
            (Values::Strings(out), Element::Text(v)) => {
                out.push(&v)
                    .map_err(|err| E::custom(format_args!("{}.data: {err}", self.field)))?;
                None
            }
            (Values::Floats(_), _) => Some("a number"),
            (Values::Ints(_), _) => Some("an integer"),
            (Values::Strings(_), _) => Some("a string"),
        };
        if let Some(expected) = expected {
            return Err(E::custom(format_args!(
                "{}.data[{at}]: expected {expected}",
                self.field
            )));
        }
        self.seen += 1;
        Ok(())
    }
}

/// The number `v` at `at` in the data of `field`, read as an `f64`, rounded to `datatype` when
/// it is narrower than `f32` (`FP16`, `BF16`), as its binary form would hold it; `None` for
/// other datatypes. Refused, naming the datatype, when rounding takes it past its range.
fn narrowed<E: de::Error>(
    field: &str,
    datatype: Datatype,
    at: usize,
    v: f64,
) -> Result<Option<f32>, E> {
    let held = match datatype {
        Datatype::Fp16 => f16::from_f64(v).to_f32(),
        Datatype::Bf16 => bf16::from_f64(v).to_f32(),
        _ => return Ok(None),
    };
    if held.is_infinite() && v.is_finite() {
        return Err(E::custom(format_args!(
            "{field}.data[{at}]: {v} is outside the {} range",
            datatype.name()
        )));
    }
    Ok(Some(held))
}

/// One JSON element of tensor data.
enum Element {
    Number(f64),
    Integer(i64),
    Text(String),
    Other,
}

/// One level of (possibly nested) arrays.
struct Level<'a, 's> {
    sink: &'a mut Sink<'s>,
}

impl Level<'_, '_> {
    fn wrong_kind<E: de::Error>(&self, found: de::Unexpected) -> E {
        E::custom(format_args!(
            "{}.data: expected an array of values, found {}",
            self.sink.field,
            kind(found)
        ))
    }
}

impl<'de> Visitor<'de> for Level<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Item {
                sink: &mut *self.sink,
            })?
            .is_some()
        {}
        Ok(())
    }

    reject_kinds!(bool, i64, u64, f64, str, unit, map);
}

/// One element of an array: a value, or a nested array.
struct Item<'a, 's> {
    sink: &'a mut Sink<'s>,
}

impl<'de> DeserializeSeed<'de> for Item<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Item<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tensor element")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Level { sink: self.sink }.visit_seq(seq)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(v) => self.sink.take(Element::Integer(v)),
            Err(_) => self.sink.take(Element::Number(v as f64)),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.sink.take(Element::Integer(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.sink.take(Element::Number(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.sink.take(Element::Text(v.to_owned()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.sink.take(Element::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.sink.take(Element::Other)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.sink.take(Element::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(datatype: Datatype, shape: &[usize], text: &str) -> Result<Values, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        JsonData::new("a", datatype, shape, text.len())
            .deserialize(&mut de)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn json_data_may_be_flat_or_nested_and_must_fill_the_shape() {
        let want = Values::Floats(vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            json(Datatype::Fp32, &[2, 2], "[1, 2, 3.0, 4]"),
            Ok(want.clone())
        );
        assert_eq!(json(Datatype::Fp64, &[2, 2], "[[1, 2], [3, 4]]"), Ok(want));
        assert_eq!(
            json(Datatype::Int64, &[2], "[-1, 7]"),
            Ok(Values::Ints(vec![-1, 7]))
        );
        assert_eq!(
            json(Datatype::Bytes, &[1], r#"["u1"]"#),
            Ok(Values::Strings(Strings::try_from(&["u1"][..]).unwrap()))
        );
        for (datatype, shape, text, want) in [
            (
                Datatype::Fp32,
                &[3][..],
                "[1, 2]",
                "a.data: holds 2 values, shape [3] needs 3",
            ),
            (
                Datatype::Fp32,
                &[1],
                "[1, 2]",
                "a.data: holds more than the 1 values",
            ),
            (
                Datatype::Fp32,
                &[2],
                r#"[1, "x"]"#,
                "a.data[1]: expected a number",
            ),
            (
                Datatype::Int64,
                &[1],
                "[1.5]",
                "a.data[0]: expected an integer",
            ),
            (
                Datatype::Fp32,
                &[1],
                "5",
                "a.data: expected an array of values, found a number",
            ),
        ] {
            let err = json(datatype, shape, text).unwrap_err();
            assert!(err.starts_with(want), "{text}: {err}");
        }
    }

    #[test]
    fn little_endian_bytes_decode_every_datatype_and_must_match_the_shape() {
        let fp32: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            from_le_bytes("a", Datatype::Fp32, &[2], &fp32),
            Ok(Values::Floats(vec![1.5, -2.0]))
        );
        let fp64: Vec<u8> = [0.25f64].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            from_le_bytes("a", Datatype::Fp64, &[1, 1], &fp64),
            Ok(Values::Floats(vec![0.25]))
        );
        let fp16 = f16::from_f32(0.5).to_le_bytes();
        assert_eq!(
            from_le_bytes("a", Datatype::Fp16, &[1], &fp16),
            Ok(Values::Floats(vec![0.5]))
        );
        let bf = bf16::from_f32(3.0).to_le_bytes();
        assert_eq!(
            from_le_bytes("a", Datatype::Bf16, &[1], &bf),
            Ok(Values::Floats(vec![3.0]))
        );
        let ints: Vec<u8> = [3i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            from_le_bytes("p", Datatype::Int64, &[2], &ints),
            Ok(Values::Ints(vec![3, -1]))
        );
        let mut text = 2u32.to_le_bytes().to_vec();
        text.extend_from_slice(b"u7");
        assert_eq!(
            from_le_bytes("ids", Datatype::Bytes, &[1], &text),
            Ok(Values::Strings(Strings::try_from(&["u7"][..]).unwrap()))
        );
        let err = from_le_bytes("a", Datatype::Fp32, &[2, 2], &fp32).unwrap_err();
        assert_eq!(
            err,
            "a: binary_data_size is 8 bytes, shape [2, 2] of FP32 needs 16"
        );
        let err = from_le_bytes("ids", Datatype::Bytes, &[2], &text).unwrap_err();
        assert_eq!(
            err,
            "ids: the binary data holds 1 strings, shape [2] needs 2"
        );
        let err = from_le_bytes("ids", Datatype::Bytes, &[1], &text[..5]).unwrap_err();
        assert!(err.contains("runs past the end"), "{err}");
    }
}
