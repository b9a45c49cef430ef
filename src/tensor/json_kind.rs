//! The kinds of JSON value a decoder turns away, named without echoing the value.
//!
//! Use [`reject_kinds!`] inside a serde `Visitor` to answer every JSON type it does not take
//! through the visitor's own `wrong_kind`, and [`kind`] to describe what was found
//! (`a string`, `null`, …) in that error. Tensor decoding and the request field decoders
//! share both, so every field reports a wrong type the same way.

/// Implements the listed `visit_*` methods (`bool`, `i64`, `u64`, `f64`, `str`, `unit`, `seq`,
/// `map`) as errors through the visitor's own `fn wrong_kind<E: de::Error>(&self,
/// serde::de::Unexpected) -> E`.
macro_rules! reject_kinds {
    ($($kind:ident),* $(,)?) => { $( reject_kinds!(@one $kind); )* };
    (@one bool) => {
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Err(self.wrong_kind(serde::de::Unexpected::Bool(v)))
        }
    };
    (@one i64) => {
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Err(self.wrong_kind(serde::de::Unexpected::Signed(v)))
        }
    };
    (@one u64) => {
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Err(self.wrong_kind(serde::de::Unexpected::Unsigned(v)))
        }
    };
    (@one f64) => {
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(self.wrong_kind(serde::de::Unexpected::Float(v)))
        }
    };
    (@one str) => {
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(self.wrong_kind(serde::de::Unexpected::Str("")))
        }
    };
    (@one unit) => {
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Err(self.wrong_kind(serde::de::Unexpected::Unit))
        }
    };
    (@one seq) => {
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong_kind(serde::de::Unexpected::Seq))
        }
    };
    (@one map) => {
        fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong_kind(serde::de::Unexpected::Map))
        }
    };
}
pub(crate) use reject_kinds;

/// A short, input-free description of a JSON value's kind, for error messages.
pub(crate) fn kind(unexpected: serde::de::Unexpected) -> &'static str {
    use serde::de::Unexpected;
    match unexpected {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Str(_) => "a string",
        Unexpected::Unit | Unexpected::Option => "null",
        Unexpected::Map => "an object",
        Unexpected::Seq => "an array",
        Unexpected::Float(_) | Unexpected::Signed(_) | Unexpected::Unsigned(_) => "a number",
        _ => "a value of another type",
    }
}
