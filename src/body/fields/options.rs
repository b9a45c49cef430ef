//! Scalar options: `metric`, `response_encoding`, `top_k`, `threshold`, `exclude_self` (any
//! boolean through [`flag`]); and
//! [`Scalar`], how any JSON scalar is read so that a wrong one is named without echoing it.

use std::fmt;
use std::num::NonZeroUsize;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};

use crate::answer::Encoding;
use crate::compute::Metric;

/// A JSON scalar, or the kind of value found instead.
pub(super) enum Scalar<'de> {
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(std::borrow::Cow<'de, str>),
    Other(&'static str),
}

impl Scalar<'_> {
    /// What was found, for an error message: numbers are short, so they are shown.
    pub(super) fn found(&self) -> String {
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

pub(super) struct ScalarVisitor;

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
    flag(d, "exclude_self")
}

/// Decodes a non-negative integer option named `field` (an Open Inference Protocol
/// request's `timeout` or `priority`).
pub fn count<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<u64, D::Error> {
    scalar(d, field, "a non-negative integer", |value| match *value {
        Scalar::Unsigned(v) => Some(v),
        _ => None,
    })
}

/// Decodes the boolean option `field`.
pub fn flag<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<bool, D::Error> {
    scalar(d, field, "true or false", |value| match *value {
        Scalar::Bool(v) => Some(v),
        _ => None,
    })
}
