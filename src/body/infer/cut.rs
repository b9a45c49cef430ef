//! The `data` arrays of a large inference request's inputs cut out of its JSON before serde
//! reads it ([`cut`]), so that serde does not walk every digit of them only to hand their text
//! back: what is left (names, shapes, parameters, outputs) is small.
//!
//! The walk follows the JSON just far enough to find each input's `data` (in the top-level
//! object's `inputs`, an array of objects). A `data` array is spanned by its brackets alone
//! (from the record of the body's brackets made as it arrived, when there is one, else
//! [`text::span`]) and replaced by `[]` in a copy of the JSON, which serde then reads; an
//! input whose `data` serde finds at a cut's `[]` takes the original array there
//! ([`Cut::original`]). Anything else is left in the copy, for serde. The walk is linear in the
//! JSON: it gives up at the first `data` array whose span cannot be found, as a span is looked
//! for to the end of the text, and past [`MAX_CUTS`] arrays.
//!
//! Only a request this path decodes whole is answered from it (`super::decode_body`): any
//! error sends the JSON as sent to serde, whose error is then the answer. A cut array serde
//! has not yet checked is checked as it is decoded, by the tensor text reader or by serde on
//! its text, each of which takes only text that is exactly one JSON array. So a span that
//! brackets within a string made wrong is refused there: a JSON value's text is the only one
//! that starts where it does and is a whole value.

use crate::body::read_ahead::{key_at, skip_value};
use crate::tensor::text::{self, Recorded, Span, skip_whitespace as whitespace};

/// Bytes of JSON from which its `data` arrays are cut out before serde reads it: below it,
/// serde's walk over them costs less than the copy.
pub const CUT_FROM_BYTES: usize = 64 << 10;

/// The shortest `data` array cut out: serde reads shorter ones as fast as they are spanned,
/// and a cut is held (its span and place) until the request is decoded.
pub const MIN_CUT_BYTES: usize = 256;

/// The most arrays cut out of one request: more than any model's inputs, whose requests are
/// refused; the walk gives up past it, and serde finds what is wrong.
const MAX_CUTS: usize = 16;

/// A request's JSON with its inputs' `data` arrays cut out.
#[derive(Debug)]
pub struct Cut<'a> {
    /// The JSON with `[]` in place of each cut array: what serde reads.
    pub json: Vec<u8>,
    /// Each cut, in order: where its `[]` is in [`Cut::json`], and the array's span in the
    /// original.
    cuts: Vec<(usize, Span)>,
    /// The original JSON.
    original: &'a [u8],
}

impl<'a> Cut<'a> {
    /// How many arrays were cut.
    pub fn len(&self) -> usize {
        self.cuts.len()
    }

    /// The original array of the value `data` (a slice of [`Cut::json`], as serde gives a
    /// borrowed value) when it is a cut's `[]`, found by where it lies in the copy: the
    /// original JSON, and the array's span in it.
    pub fn original(&self, data: &str) -> Option<(&'a [u8], &Span)> {
        let offset = data
            .as_ptr()
            .addr()
            .checked_sub(self.json.as_ptr().addr())?;
        let at = self
            .cuts
            .binary_search_by_key(&offset, |&(at, _)| at)
            .ok()?;
        (data == "[]").then_some((self.original, &self.cuts[at].1))
    }
}

/// `json` with its inputs' `data` arrays cut out, `None` when there is none to cut or the walk
/// cannot follow the JSON (it is not an object, a key serde would refuse, it ends early);
/// `brackets`, the record of the brackets of a text `json` begins, spans the arrays.
pub fn cut<'a>(json: &'a [u8], brackets: Option<Recorded<'_>>) -> Option<Cut<'a>> {
    let mut arrays: Vec<Span> = Vec::new();
    let mut at = whitespace(json, 0);
    if json.get(at) != Some(&b'{') {
        return None;
    }
    at = whitespace(json, at + 1);
    if json.get(at) != Some(&b'}') {
        loop {
            let key;
            (key, at) = key_at(json, at)?;
            at = match (&*key, json.get(at)) {
                (b"inputs", Some(b'[')) => inputs(json, at, brackets, &mut arrays)?,
                _ => skip_value(json, at)?,
            };
            match after_value(json, at, b'}')? {
                After::Next(next) => at = next,
                After::Closed(_) => break,
            }
        }
    }
    if arrays.is_empty() {
        return None;
    }
    let kept = json.len() - arrays.iter().map(|span| span.range.len()).sum::<usize>();
    let mut copy = Vec::with_capacity(kept + 2 * arrays.len());
    let mut cuts = Vec::with_capacity(arrays.len());
    let mut from = 0;
    for span in arrays {
        copy.extend_from_slice(&json[from..span.range.start]);
        from = span.range.end;
        cuts.push((copy.len(), span));
        copy.extend_from_slice(b"[]");
    }
    copy.extend_from_slice(&json[from..]);
    Some(Cut {
        json: copy,
        cuts,
        original: json,
    })
}

/// What follows a value of an array or object.
enum After {
    /// A `,`: the position of the next element.
    Next(usize),
    /// Its closing bracket: the position after it.
    Closed(usize),
}

/// What follows the value that ends at `at` in an array or object closed by `close`: `None`
/// when it is neither a `,` nor `close`.
fn after_value(json: &[u8], at: usize, close: u8) -> Option<After> {
    let at = whitespace(json, at);
    match *json.get(at)? {
        b',' => Some(After::Next(whitespace(json, at + 1))),
        byte if byte == close => Some(After::Closed(at + 1)),
        _ => None,
    }
}

/// Walks the `inputs` array whose `[` is at `json[at]`, adding the spans of its objects'
/// `data` arrays to `arrays`; the position after it.
fn inputs(
    json: &[u8],
    at: usize,
    brackets: Option<Recorded<'_>>,
    arrays: &mut Vec<Span>,
) -> Option<usize> {
    let mut at = whitespace(json, at + 1);
    if json.get(at) == Some(&b']') {
        return Some(at + 1);
    }
    loop {
        at = match json.get(at) {
            Some(b'{') => input(json, at, brackets, arrays)?,
            _ => skip_value(json, at)?,
        };
        match after_value(json, at, b']')? {
            After::Next(next) => at = next,
            After::Closed(end) => return Some(end),
        }
    }
}

/// Walks the input object whose `{` is at `json[at]`, adding the span of its `data` array to
/// `arrays` when it is at least [`MIN_CUT_BYTES`] long; the position after it. `None` when the
/// array's span cannot be found (it does not close, or its rank is past the tensor reader's,
/// [`crate::tensor::MAX_RANK`]) or it would be the cut past [`MAX_CUTS`].
fn input(
    json: &[u8],
    at: usize,
    brackets: Option<Recorded<'_>>,
    arrays: &mut Vec<Span>,
) -> Option<usize> {
    let mut at = whitespace(json, at + 1);
    if json.get(at) == Some(&b'}') {
        return Some(at + 1);
    }
    loop {
        let key;
        (key, at) = key_at(json, at)?;
        at = match (&*key, json.get(at)) {
            (b"data", Some(b'[')) => {
                // A span that cannot be found (brackets in a string that never close, a rank
                // past the reader's) ends the walk: each is looked for to the end of the text,
                // so going on could look that far once per input.
                let span = match brackets {
                    Some(brackets) => text::span_recorded(json, at, brackets),
                    None => text::span(json, at),
                }?;
                let end = span.range.end;
                if span.range.len() >= MIN_CUT_BYTES {
                    if arrays.len() == MAX_CUTS {
                        return None;
                    }
                    arrays.push(span);
                }
                end
            }
            _ => skip_value(json, at)?,
        };
        match after_value(json, at, b'}')? {
            After::Next(next) => at = next,
            After::Closed(end) => return Some(end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of the original array at the place of `data` in the copy.
    fn original<'a>(cut: &Cut<'a>, data: &str) -> Option<&'a [u8]> {
        cut.original(data)
            .map(|(json, span)| &json[span.range.clone()])
    }

    #[test]
    fn each_inputs_long_data_array_is_cut_and_found_again_by_where_serde_sees_it() {
        let pad = " ".repeat(MIN_CUT_BYTES);
        let (a, ids, b) = (
            format!("[[1, 2], [3, 4]{pad}]"),
            format!(r#"["u1", "u2"{pad}]"#),
            format!("[ 6 ,7{pad}]"),
        );
        let json = format!(
            r#"{{"id": "x", "inputs": [
            {{"name": "a", "data": {a}, "shape": [2, 2]}},
            {{"data": {ids}, "name": "ids"}},
            {{"name": "s", "data": [1, 2]}},
            {{"name": "b", "parameters": {{"data": [5]}}, "data" : {b}}}],
            "parameters": {{"data": [8{pad}]}}}}"#
        );
        let json = json.as_bytes();
        let mut recorded = text::Brackets::default();
        recorded.record(json);
        for brackets in [None, recorded.recorded(json.len())] {
            let cut = cut(json, brackets).unwrap();
            let copy = std::str::from_utf8(&cut.json).unwrap();
            assert_eq!(
                copy,
                format!(
                    r#"{{"id": "x", "inputs": [
            {{"name": "a", "data": [], "shape": [2, 2]}},
            {{"data": [], "name": "ids"}},
            {{"name": "s", "data": [1, 2]}},
            {{"name": "b", "parameters": {{"data": [5]}}, "data" : []}}],
            "parameters": {{"data": [8{pad}]}}}}"#
                )
            );
            assert_eq!(cut.len(), 3);
            let value: serde_json::Value = serde_json::from_str(copy).unwrap();
            assert_eq!(value["inputs"][0]["data"], serde_json::json!([]));
            // What serde borrows for each `data`, looked up by where it lies.
            let places: Vec<&str> = copy
                .match_indices("[]")
                .map(|(at, _)| &copy[at..at + 2])
                .collect();
            assert_eq!(original(&cut, places[0]), Some(a.as_bytes()));
            assert_eq!(original(&cut, places[1]), Some(ids.as_bytes()));
            assert_eq!(original(&cut, places[2]), Some(b.as_bytes()));
            // The same text elsewhere is not a cut.
            let elsewhere = String::from("[]");
            assert_eq!(original(&cut, &elsewhere), None);
            assert_eq!(
                original(&cut, &copy[copy.find("[1, 2]").unwrap()..][..6]),
                None
            );
        }
    }

    #[test]
    fn keys_with_escapes_are_the_keys_serde_decodes_them_to() {
        let long = format!("[{}]", vec!["1"; MIN_CUT_BYTES].join(","));
        let json = format!(r#"{{"in\u0070uts": [{{"d\u0061ta": {long}}}]}}"#);
        let copy = cut(json.as_bytes(), None).expect("cut");
        assert_eq!(
            std::str::from_utf8(&copy.json).unwrap(),
            r#"{"in\u0070uts": [{"d\u0061ta": []}]}"#
        );
        assert_eq!(copy.len(), 1);
        // An escape serde refuses (a lone surrogate) leaves the text whole, for serde to refuse.
        let json = format!(r#"{{"\ud800": 1, "inputs": [{{"data": {long}}}]}}"#);
        assert!(cut(json.as_bytes(), None).is_none());
    }

    #[test]
    fn json_the_walk_cannot_follow_or_with_nothing_to_cut_is_left_whole() {
        let long = format!("[{}]", vec!["1"; MIN_CUT_BYTES].join(","));
        let many = vec![format!(r#"{{"data": {long}}}"#); MAX_CUTS + 1].join(",");
        for json in [
            "[1, 2]".to_owned(),
            r#"{"inputs": [{"name": "a", "shape": [1], "binary_data_size": 4}]}"#.to_owned(),
            format!(r#"{{"inputs": [{{"data": {long}"#),
            format!(r#"{{"inputs": [{{"data": [[[{long}]]]}}]}}"#),
            format!(r#"{{"inputs": 5, "data": {long}}}"#),
            format!(r#"{{"inputs": [{many}]}}"#),
            // A span that does not close ends the walk, before the long array after it (going
            // on would look for each such span to the end of the text: once per input).
            format!(r#"{{"inputs": [{{"data": ["["]}}, {{"data": {long}}}]}}"#),
        ] {
            let mut recorded = text::Brackets::default();
            recorded.record(json.as_bytes());
            for brackets in [None, recorded.recorded(json.len())] {
                assert!(cut(json.as_bytes(), brackets).is_none(), "{json}");
            }
        }
        let fewer = vec![format!(r#"{{"data": {long}}}"#); MAX_CUTS].join(",");
        assert!(cut(format!(r#"{{"inputs": [{fewer}]}}"#).as_bytes(), None).is_some());
    }
}
