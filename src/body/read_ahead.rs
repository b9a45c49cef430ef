//! The fast path of [`super::parse`]: a body's tensors are read straight from its bytes,
//! nested arrays by [`crate::tensor::text`] (in parallel when large), base64 tensor objects
//! in the plain form clients send by [`crate::tensor::read_packed_at`] (no string scanned
//! twice, no UTF-8 check, SIMD base64), and serde parses only the rest.
//!
//! The body's top level is walked just far enough to find each tensor field's value (a
//! field of [`TensorFields::TENSORS`] whose value starts with `[`, or with `{` when it is
//! such an object, valid: any other object is left to serde, which reads table references
//! and names what is wrong). Base64 objects are decoded as the walk meets them. Nested
//! arrays are read ahead: in a small body (under [`text::PARALLEL_BYTES`]) each as the walk
//! meets it, where it ends found by reading it; in a large one each one's span first (from
//! the record of the body's brackets made as it arrived, when there is one), then all of
//! them (on the compute threads when they are large together). A copy of the body
//! with `{}` in their place (the rest is small: options, ids, index lists) is parsed by
//! serde, and each field's seed takes its tensor ([`crate::tensor::read_ahead`]).
//!
//! This path answers only when everything succeeds. Any doubt (a tensor it cannot read, a
//! key serde would refuse, a body serde refuses) gives `None`, and the caller parses the body as
//! sent with serde alone, so errors are always serde's and the same as without this path.
//! serde accepts the copy exactly when it accepts the body: the two are equal up to the
//! first cut, serde reads front to back, on valid JSON this walk places every cut where a
//! value starts and ends, and a cut is made only where a reader accepted the whole value.

use std::borrow::Cow;
use std::ops::Range;

use rayon::prelude::*;
use serde::de::DeserializeOwned;

use crate::tensor::text::{self, skip_whitespace as whitespace};
use crate::tensor::{self, Tensor};

/// A request body type whose tensor fields the fast path may read ahead.
pub trait TensorFields: DeserializeOwned {
    /// The fields decoded by [`super::fields`]' tensor functions. Only speed depends on this
    /// list: a field wrongly in it gets `{}`, which every other decoder refuses (so the body
    /// goes to serde alone), and a field missing from it is read by serde.
    const TENSORS: &'static [&'static str];
}

/// The body parsed with its tensors read ahead, or `None` when the caller must parse it
/// with serde alone (no tensor to read ahead, or anything amiss). `brackets`, the record of
/// all the body's brackets when there is one, finds large tensors' spans without a pass over
/// them.
pub(super) fn parse<T: TensorFields>(
    body: &[u8],
    brackets: Option<text::Recorded<'_>>,
) -> Option<T> {
    let read_on_the_way = body.len() < text::PARALLEL_BYTES;
    parse_reading(body, read_on_the_way, brackets)
}

/// [`parse`], each tensor read as the walk meets it when `read_on_the_way`, else after it.
fn parse_reading<T: TensorFields>(
    body: &[u8],
    read_on_the_way: bool,
    brackets: Option<text::Recorded<'_>>,
) -> Option<T> {
    let found = find::<T>(body, read_on_the_way, brackets)?;
    if found.is_empty() {
        return None;
    }
    let kept: usize = body.len() - found.iter().map(|f| f.range().len()).sum::<usize>();
    let mut rest = Vec::with_capacity(kept + 2 * found.len());
    let mut from = 0;
    for value in &found {
        rest.extend_from_slice(&body[from..value.range().start]);
        rest.extend_from_slice(b"{}");
        from = value.range().end;
    }
    rest.extend_from_slice(&body[from..]);
    let tensors = read_all(body, found)?;
    let (parsed, all_taken) = tensor::read_ahead(tensors, || serde_json::from_slice::<T>(&rest));
    parsed.ok().filter(|_| all_taken)
}

/// A tensor field's value as the walk over the body left it.
enum Found {
    /// Read as the walk met it: the field, where its text is, the tensor.
    Read(&'static str, Range<usize>, Tensor),
    /// Where its text is, to be read after the walk.
    Spanned(&'static str, text::Span),
}

impl Found {
    /// The field whose value it is.
    fn field(&self) -> &'static str {
        match self {
            Found::Read(field, ..) | Found::Spanned(field, _) => field,
        }
    }

    /// Where the value's text is in the body.
    fn range(&self) -> &Range<usize> {
        match self {
            Found::Read(_, range, _) => range,
            Found::Spanned(_, span) => &span.range,
        }
    }
}

/// Every found tensor, read: those not yet read on this thread when they are small together,
/// else each on the compute threads (large ones cut into pieces too).
fn read_all(body: &[u8], found: Vec<Found>) -> Option<Vec<(&'static str, Tensor)>> {
    let bytes: usize = found.iter().map(|f| f.range().len()).sum();
    let in_parallel = bytes >= text::PARALLEL_BYTES && rayon::current_num_threads() >= 2;
    let read = |found: Found| match found {
        Found::Read(field, _, tensor) => Some((field, tensor)),
        Found::Spanned(field, span) if in_parallel => {
            Some((field, text::read_parallel(body, &span)?))
        }
        Found::Spanned(field, span) => Some((field, text::read(body, &span)?)),
    };
    if in_parallel {
        found.into_par_iter().map(read).collect()
    } else {
        found.into_iter().map(read).collect()
    }
}

/// The top-level tensor fields of `T` whose values start with `[`, in body order, each read
/// as it is met when `read_on_the_way`, else only spanned, and those whose values are plain
/// valid base64 tensor objects, decoded; `None` if the top level is not an
/// object this walk can follow, a tensor met is not one the reader takes, or a field comes
/// twice (serde refuses that; reading each would hold a buffer per copy).
fn find<T: TensorFields>(
    body: &[u8],
    read_on_the_way: bool,
    brackets: Option<text::Recorded<'_>>,
) -> Option<Vec<Found>> {
    let mut found = Vec::new();
    let mut at = whitespace(body, 0);
    if body.get(at) != Some(&b'{') {
        return None;
    }
    at = whitespace(body, at + 1);
    if body.get(at) == Some(&b'}') {
        return Some(found);
    }
    loop {
        let key;
        (key, at) = key_at(body, at)?;
        let field = T::TENSORS.iter().find(|field| field.as_bytes() == &*key);
        if field.is_some_and(|field| found.iter().any(|f: &Found| f.field() == *field)) {
            return None;
        }
        match (field, body.get(at)) {
            (Some(field), Some(b'[')) if read_on_the_way => {
                let (tensor, end) = text::read_at(body, at)?;
                found.push(Found::Read(field, at..end, tensor));
                at = end;
            }
            (Some(field), Some(b'[')) => {
                let span = match brackets {
                    Some(brackets) => text::span_recorded(body, at, brackets)?,
                    None => text::span(body, at)?,
                };
                at = span.range.end;
                found.push(Found::Spanned(field, span));
            }
            (Some(field), Some(b'{')) => match tensor::read_packed_at(body, at) {
                Some((tensor, end)) => {
                    found.push(Found::Read(field, at..end, tensor));
                    at = end;
                }
                None => at = skip_value(body, at)?,
            },
            _ => at = skip_value(body, at)?,
        }
        at = whitespace(body, at);
        match body.get(at) {
            Some(b',') => at = whitespace(body, at + 1),
            Some(b'}') => return Some(found),
            _ => return None,
        }
    }
}

/// The key whose `"` is at `json[at]`, and the position of its value: `None` unless it is a
/// key followed by `:`. A key with escapes is decoded as serde decodes it (`None` when serde
/// would refuse it), so that `"\u0061"` is the field `a` here as there.
pub(in crate::body) fn key_at(json: &[u8], at: usize) -> Option<(Cow<'_, [u8]>, usize)> {
    if json.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    let end = start + memchr::memchr2(b'"', b'\\', json.get(start..)?)?;
    let (key, after) = if json[end] == b'\\' {
        let after = skip_string(json, at)?;
        let key: String = serde_json::from_slice(&json[at..after]).ok()?;
        (Cow::Owned(key.into_bytes()), after)
    } else {
        (Cow::Borrowed(&json[start..end]), end + 1)
    };
    let colon = whitespace(json, after);
    if json.get(colon) != Some(&b':') {
        return None;
    }
    Some((key, whitespace(json, colon + 1)))
}

/// The position after the JSON value at `body[at]`, found by its delimiters alone (what is
/// inside is serde's to check): strings to their unescaped `"`, arrays and objects to their
/// closing bracket, anything else to the next delimiter.
pub(in crate::body) fn skip_value(body: &[u8], mut at: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *body.get(at)? {
            b'"' => at = skip_string(body, at)?,
            b'[' | b'{' => {
                depth += 1;
                at += 1;
            }
            b']' | b'}' if depth > 0 => {
                depth -= 1;
                at += 1;
            }
            b',' | b']' | b'}' | b' ' | b'\n' | b'\r' | b'\t' if depth == 0 => return Some(at),
            _ => at += 1,
        }
        if depth == 0 && matches!(body.get(at.wrapping_sub(1)), Some(b'"' | b']' | b'}')) {
            return Some(at);
        }
    }
}

/// The position after the string whose `"` is at `body[at]`.
fn skip_string(body: &[u8], mut at: usize) -> Option<usize> {
    at += 1;
    loop {
        at += memchr::memchr2(b'"', b'\\', body.get(at..)?)?;
        if body[at] == b'"' {
            return Some(at + 1);
        }
        at += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// A body with two tensor fields and every other kind of value around them.
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        #[serde(deserialize_with = "crate::body::fields::a_matrix")]
        a: tensor::Input,
        #[serde(default, deserialize_with = "crate::body::fields::some_b_matrix")]
        b: Option<tensor::Input>,
        #[serde(default)]
        note: Option<String>,
        #[serde(default)]
        lists: Option<Vec<Vec<u32>>>,
        #[serde(default)]
        k: Option<u32>,
    }

    impl TensorFields for Probe {
        const TENSORS: &'static [&'static str] = &["a", "b"];
    }

    /// [`Probe`] with a field listed that is not a tensor field.
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(transparent)]
    struct WronglyListed(Probe);

    impl TensorFields for WronglyListed {
        const TENSORS: &'static [&'static str] = &["a", "b", "lists"];
    }

    /// The fast path's answer, the same whether tensors are read on the way or after it
    /// (their spans found in the text, or from the record of its brackets), and serde's.
    fn both(body: &str) -> (Option<Probe>, Result<Probe, String>) {
        let fast = parse::<Probe>(body.as_bytes(), None);
        let mut brackets = text::Brackets::default();
        brackets.record(body.as_bytes());
        let recorded = brackets.recorded(body.len());
        assert!(recorded.is_some(), "{body}");
        for (read_on_the_way, brackets) in [(true, None), (false, None), (false, recorded)] {
            let other = parse_reading::<Probe>(body.as_bytes(), read_on_the_way, brackets);
            assert_eq!(other, fast, "{body}, read on the way: {read_on_the_way}");
        }
        let serde = serde_json::from_str::<Probe>(body).map_err(|e| e.to_string());
        (fast, serde)
    }

    #[test]
    fn tensors_are_read_ahead_and_the_rest_parsed_by_serde() {
        let body = r#" { "note": "a \"[[9]]\", \\", "a": [[1, 2], [3, 4]],
            "k": 7, "lists": [[1], []], "b": [[5.5, -0.0]] } "#;
        let (fast, serde) = both(body);
        assert_eq!(fast.unwrap(), serde.unwrap());
    }

    #[test]
    fn base64_tensors_are_read_ahead_and_other_objects_left_to_serde() {
        let one_two = r#"{"dtype": "float32", "shape": [1, 2], "data": "AACAPwAAAEA="}"#;
        // Both tensors base64; one base64 beside a table reference, which serde reads.
        for b in [one_two, r#"{"table": "items", "rows": [3]}"#] {
            let body = format!(r#"{{"a": {one_two}, "k": 7, "b": {b}}}"#);
            let (fast, serde) = both(&body);
            assert_eq!(fast.unwrap(), serde.unwrap(), "{body}");
        }
        // Not the plain form (an escaped key): serde reads that one. Not valid: serde refuses
        // the body.
        for (a, valid) in [
            (
                r#"{"dtype": "float32", "sh\u0061pe": [1, 2], "data": "AACAPwAAAEA="}"#,
                true,
            ),
            (
                r#"{"dtype": "float32", "shape": [1, 3], "data": "AACAPwAAAEA="}"#,
                false,
            ),
        ] {
            let body = format!(r#"{{"a": {a}, "b": {one_two}}}"#);
            let (fast, serde) = both(&body);
            assert_eq!(serde.is_ok(), valid, "{body}: {serde:?}");
            assert_eq!(fast, serde.ok(), "{body}");
        }
    }

    #[test]
    fn a_field_wrongly_listed_sends_the_body_to_serde() {
        // `lists` is not a tensor field: its `{}` is refused, so the fast path gives up.
        let body = r#"{"a": [[1]], "lists": [[1, 2], [3, 4]]}"#;
        for read_on_the_way in [true, false] {
            let read = parse_reading::<WronglyListed>(body.as_bytes(), read_on_the_way, None);
            assert!(read.is_none());
        }
        let (fast, serde) = both(body);
        assert_eq!(fast.unwrap(), serde.unwrap());
    }

    #[test]
    fn bodies_serde_refuses_are_refused_here_too() {
        for body in [
            r#"{"a": [[1]], "a": [[2]]}"#,
            r#"{"a": [[1]], "c": 1}"#,
            r#"{"a": [[1]], "k": "x"}"#,
            r#"{"a": [[1]] "k": 1}"#,
            r#"{"a": [[1], [2, 3]]}"#,
            r#"{"a": [1, 2]}"#,
            r#"{"a": [[1]], "note": "unterminated}"#,
            r#"{"a": [[1]],}"#,
            r#"{"a": [[1]]"#,
            r#"{"a": [[1], [2]"#,
            r#"{"a": [[1]]], "k": 1}"#,
            r#"{"a": [[1]], "b": [[2], [3]}"#,
            r#"{"\ud800": [[1]], "a": [[1]]}"#,
            r#"{"\u0061": [[1]], "a": [[2]]}"#,
        ] {
            let (fast, serde) = both(body);
            assert!(fast.is_none(), "{body}");
            assert!(serde.is_err(), "{body}");
        }
    }

    #[test]
    fn a_key_with_escapes_is_read_ahead_as_the_field_serde_decodes_it_to() {
        // 1 + 2^-24 + 2^-77: above the midpoint between 1 and the next float32, so it rounds
        // up; rounded first to the nearest float64 (1 + 2^-24, the midpoint) it would then
        // round to even, down to 1.
        let above_midpoint = "1.00000005960464477539063";
        let body = format!(r#"{{"\u0061": [[{above_midpoint}]], "n\u006fte": "x", "b": [[0]]}}"#);
        let (fast, serde) = both(&body);
        let fast = fast.expect("read ahead");
        let tensor::Input::Tensor(a) = &fast.a else {
            panic!("a is a tensor: {fast:?}");
        };
        assert_eq!(a.values(), [1.0 + f32::EPSILON], "{body}");
        assert_eq!(fast.note.as_deref(), Some("x"));
        assert!(serde.is_ok(), "{body}");
    }

    #[test]
    fn values_are_skipped_by_their_delimiters() {
        for (value, len) in [
            (r#""a,\"}", "#, 7),
            (r#"[1, {"z": "]"}], "#, 15),
            (r#"{"z": ["}"]}}"#, 12),
            ("-1.5e3, ", 6),
            ("true}", 4),
            ("null ", 4),
        ] {
            assert_eq!(skip_value(value.as_bytes(), 0), Some(len), "{value}");
        }
        assert_eq!(skip_value(br#""open"#, 0), None);
        assert_eq!(skip_value(b"[[1]", 0), None);
    }
}
