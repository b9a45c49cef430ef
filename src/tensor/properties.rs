//! Properties of the tensor text reader ([`super::text`]) against independent references:
//! serde_json (through the serde path, [`super::nested`]) for what is a tensor and its shape,
//! and the standard library's correctly rounded `f32` parser for every value. And of the
//! base64 object reader ([`super::read_packed_at`]) against the serde path ([`super::packed`]),
//! and of `/v2` FP32 `data` read by the text reader against its serde path
//! ([`super::typed::JsonData`]).
//!
//! `PROPTEST_CASES=3000 cargo test properties` runs more cases (CI does).

use proptest::prelude::*;
use serde::de::DeserializeSeed;

use super::text;
use super::{Input, Tensor, TensorSeed};

/// Finite `f32` values of every kind: zeros of both signs, ordinary, tiny, huge, subnormal,
/// the extremes, and any bit pattern.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(0.0f32),
        Just(-0.0f32),
        -1e3f32..1e3f32,
        (-1.0f32..1.0f32).prop_map(|x| x * 1e-30),
        (-1.0f32..1.0f32).prop_map(|x| x * 3e38),
        (1u32..0x0080_0000).prop_map(f32::from_bits),
        Just(f32::MAX),
        Just(f32::MIN_POSITIVE),
        any::<u32>()
            .prop_map(f32::from_bits)
            .prop_filter("finite", |v| v.is_finite()),
    ]
}

/// `value` written one of the ways clients write numbers: the shortest `f32` text, Python's
/// `repr` of it as a float (the shortest `f64` text), `%.17g`, an upper-case exponent with
/// a `+`, all its decimals, or a string of many digits within a hair of the midpoint
/// between it and the next `f32` (either side, or on it), where rounding twice goes wrong.
/// Or a text near it that tests the edges: an integer (on or beside the midpoint above 2^24,
/// `-0`), a number that rounds to zero or past the largest `f32`, or an exponent with many
/// digits.
fn printed(value: f32, form: u8, nudge: u8) -> String {
    let wide = f64::from(value);
    match form % 8 {
        6 => integer(wide, nudge),
        7 => beyond(value, nudge),
        0 => format!("{value:?}"),
        1 => format!("{wide:?}"),
        2 => format!("{wide:.16e}"),
        3 => {
            let text = format!("{value:E}");
            match text.split_once('E') {
                Some((digits, exponent)) if !exponent.starts_with('-') => {
                    format!("{digits}E+{exponent}")
                }
                _ => text,
            }
        }
        4 => format!("{wide:.80}"),
        _ => {
            let next = f64::from(value.abs().next_up()).copysign(wide);
            let midpoint = (wide + next) / 2.0;
            if !midpoint.is_finite() {
                return format!("{value:?}");
            }
            // Exact to 60 digits; then a last digit past them nudges it either way.
            let digits = format!("{midpoint:.60e}");
            let (mantissa, exponent) = digits.split_once('e').unwrap_or((&digits, "0"));
            match nudge % 3 {
                0 => digits.clone(),
                1 => format!("{mantissa}1e{exponent}"),
                _ => {
                    let trimmed = mantissa.trim_end_matches('0');
                    let lowered = lower_last_digit(trimmed);
                    format!("{lowered}9999e{exponent}")
                }
            }
        }
    }
}

/// `wide` as an integer: the midpoint between it and the next `f32` when that is an integer
/// (from 2^24), on it or one either side, such as `16777217`; else `wide` truncated (`-0`
/// for the zeros and small negative values).
fn integer(wide: f64, nudge: u8) -> String {
    let next = f64::from((wide as f32).abs().next_up()).copysign(wide);
    let midpoint = (wide + next) / 2.0;
    if (16_777_216.0..1e38).contains(&wide.abs()) && midpoint.fract() == 0.0 {
        let beside = [0.0, 1.0, -1.0][usize::from(nudge % 3)];
        format!("{:.0}", midpoint + beside)
    } else {
        format!("{:.0}", wide.trunc())
    }
}

/// A number near the edges of `f32`, signed as `value`: one that rounds to zero (`1e-46`,
/// or 2^-150 exactly, the midpoint below the least subnormal, which ties to even: zero),
/// one past the largest `f32` (`3.4028236e38`, infinite: not a value), or `value` with an
/// exponent of many digits.
fn beyond(value: f32, nudge: u8) -> String {
    let sign = if value.is_sign_negative() { "-" } else { "" };
    match nudge % 4 {
        0 => format!("{sign}{}e-{}", 1 + nudge % 9, 46 + u32::from(nudge)),
        1 => format!("{sign}{:.120e}", 2f64.powi(-150)),
        2 => format!("{sign}3.4028236e38"),
        _ => {
            let text = format!("{value:e}");
            let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
            match exponent.strip_prefix('-') {
                Some(magnitude) => format!("{mantissa}e-0000000000000000000000{magnitude}"),
                None => format!("{mantissa}E00000000000000000000000{exponent}"),
            }
        }
    }
}

/// `digits` (a decimal with a point) minus one in its last place, when that is a digit
/// above 0; else as it is.
fn lower_last_digit(digits: &str) -> String {
    let mut bytes = digits.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut()
        && (b'1'..=b'9').contains(last)
    {
        *last -= 1;
    }
    String::from_utf8(bytes).unwrap_or_default()
}

/// JSON whitespace, often none.
fn gap(seed: u64) -> &'static str {
    ["", "", "", " ", "\n", "\t ", "\r\n  "][(seed % 7) as usize]
}

/// A tensor of `shape` holding `values`, written with `forms` and whitespace from `seed`.
fn write(shape: &[usize], tokens: &[String], seed: u64) -> String {
    let mut state = seed | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        gap(state)
    };
    fn level(
        shape: &[usize],
        tokens: &mut std::slice::Iter<'_, String>,
        out: &mut String,
        next: &mut dyn FnMut() -> &'static str,
    ) {
        out.push('[');
        for i in 0..shape[0] {
            out.push_str(next());
            if i > 0 {
                out.push(',');
                out.push_str(next());
            }
            if shape.len() == 1 {
                out.push_str(tokens.next().map_or("0", String::as_str));
            } else {
                level(&shape[1..], tokens, out, next);
            }
            out.push_str(next());
        }
        out.push(']');
    }
    let mut out = String::new();
    level(shape, &mut tokens.iter(), &mut out, &mut next);
    out
}

/// What the serde path reads from `text` as a field taking ranks 2 and 3.
fn serde_read(text: &str) -> Result<Tensor, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let read = TensorSeed::new("a", &[2, 3])
        .deserialize(&mut de)
        .and_then(|input| de.end().map(|()| input))
        .map_err(|err| err.to_string())?;
    match read {
        Input::Tensor(tensor) => Ok(tensor),
        Input::Table(_) => Err("a table reference".into()),
    }
}

/// What the reader reads from `text`: the tensor after any leading whitespace, with only
/// whitespace after it, of rank 2 or 3 (the seed refuses others). Read both ways (its span
/// found first, and from its bracket, also with more of a body after the text, which the
/// number reader's loads then see), which must agree on the tensor and where it ends; and
/// read from its bracket by the baseline's reader too (the others read it with the one this
/// processor takes), which must agree to the bit.
fn fast_read(text: &str) -> Option<Tensor> {
    let bytes = text.as_bytes();
    let start = bytes.iter().position(|b| !b" \n\r\t".contains(b))?;
    let spanned =
        text::span(bytes, start).and_then(|span| Some((text::read(bytes, &span)?, span.range.end)));
    assert_eq!(text::read_at(bytes, start), spanned, "{text:?}");
    let followed = format!("{text}, \"b\": [[0.5, 0.25]], \"metric\": \"cosine\"}}");
    let at_bracket = text::read_at(followed.as_bytes(), start);
    assert_eq!(at_bracket, spanned, "{followed:?}");
    let bits = |read: Option<(Tensor, usize)>| {
        read.map(|(tensor, end)| {
            let bits: Vec<u32> = tensor.data.iter().map(|v| v.to_bits()).collect();
            (tensor.shape, bits, end)
        })
    };
    assert_eq!(
        bits(text::read_at_by_baseline(followed.as_bytes(), start)),
        bits(at_bracket.clone()),
        "{followed:?}"
    );
    for (reader, read) in text::read_at_by_narrower_readers(followed.as_bytes(), start) {
        assert_eq!(
            bits(read),
            bits(at_bracket.clone()),
            "{reader}: {followed:?}"
        );
    }
    let (tensor, end) = spanned?;
    bytes[end..]
        .iter()
        .all(|b| b" \n\r\t".contains(b))
        .then_some(tensor)
        .filter(|tensor| tensor.rank() >= 2)
}

/// The numbers of tensor text, each rounded by the standard library: the reference values.
fn exact_values(text: &str) -> Option<Vec<f32>> {
    text.split(|c: char| "[], \n\r\t".contains(c))
        .filter(|token| !token.is_empty())
        .map(|token| token.parse::<f32>().ok())
        .collect()
}

/// One edit of a text: where, what (0 removes a byte, 1 replaces it, else one is inserted)
/// and the byte, from those that change a tensor's meaning.
type Edit = (prop::sample::Index, u8, prop::sample::Index);

/// `text` with `edits` made, in order.
fn edit(text: &mut Vec<u8>, edits: &[Edit]) {
    const BYTES: &[u8] = b"[],-+.eE019 x\"\n";
    for (at, kind, byte) in edits {
        let at = at.index(text.len() + 1);
        let byte = *byte.get(BYTES);
        match kind {
            0 if at < text.len() => {
                text.remove(at);
            }
            1 if at < text.len() => text[at] = byte,
            _ => text.insert(at, byte),
        }
    }
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// A shape of rank 2 or 3, axes 1 to 5 long, with a value, form and nudge per element.
fn case() -> impl Strategy<Value = (Vec<usize>, Vec<(f32, u8, u8)>, u64)> {
    shaped(2..=3)
}

/// A shape of a rank in `ranks`, axes 1 to 5 long, with a value, form and nudge per element,
/// and a seed for the whitespace.
fn shaped(
    ranks: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = (Vec<usize>, Vec<(f32, u8, u8)>, u64)> {
    prop::collection::vec(1usize..=5, ranks).prop_flat_map(|shape| {
        let len: usize = shape.iter().product();
        (
            Just(shape),
            prop::collection::vec((value(), any::<u8>(), any::<u8>()), len),
            any::<u64>(),
        )
    })
}

proptest! {
    #[test]
    fn the_reader_reads_every_printed_form_as_the_correctly_rounded_f32(
        (shape, elements, seed) in case()
    ) {
        let tokens: Vec<String> = elements
            .iter()
            .map(|&(value, form, nudge)| printed(value, form, nudge))
            .collect();
        let text = write(&shape, &tokens, seed);
        let exact: Vec<f32> = tokens.iter().map(|t| t.parse::<f32>().unwrap()).collect();
        let fast = fast_read(&text);
        if exact.iter().all(|v| v.is_finite()) {
            let fast = fast.ok_or_else(|| TestCaseError::fail(format!("refused {text}")))?;
            prop_assert_eq!(fast.shape(), &shape[..]);
            prop_assert!(same_bits(&fast.data, &exact), "{text}");
            // serde agrees on the shape; its values are within one step (it rounds twice).
            let serde = serde_read(&text).map_err(TestCaseError::fail)?;
            prop_assert_eq!(serde.shape(), fast.shape());
            for (s, f) in serde.data.iter().zip(&fast.data) {
                prop_assert!(s == f || s.to_bits().abs_diff(f.to_bits()) <= 1, "{s} {f}");
            }
        } else {
            prop_assert!(fast.is_none(), "{text}");
        }
    }

    #[test]
    fn the_reader_accepts_a_changed_text_exactly_when_serde_does(
        (shape, elements, seed) in case(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<prop::sample::Index>()), 1..4),
    ) {
        let tokens: Vec<String> = elements
            .iter()
            .map(|&(value, form, _)| printed(value, form % 4, 0))
            .collect();
        let mut text = write(&shape, &tokens, seed).into_bytes();
        edit(&mut text, &edits);
        let text = String::from_utf8(text).unwrap();
        let fast = fast_read(&text);
        let serde = serde_read(&text);
        prop_assert_eq!(fast.is_some(), serde.is_ok(), "{} {:?}", text, serde);
        if let (Some(fast), Ok(serde)) = (fast, serde) {
            prop_assert_eq!(fast.shape(), serde.shape());
            let exact = exact_values(&text).ok_or_else(|| TestCaseError::fail("tokens"))?;
            prop_assert!(same_bits(&fast.data, &exact), "{text}");
        }
    }
}

/// A valid number of a long row in [`long_rows_read_as_serde_and_exact_rounding_say`]:
/// mostly the usual form as Python writes float32 values (`-1.2345677614212036`, one digit
/// before the point), at times another of [`printed`]'s forms, or, for a value from 10⁻⁴ to
/// 10 in size, the midpoint between it and the next `f32` in the usual form with 18 decimals,
/// which the usual path leaves to the full algorithm.
fn row_number(value: f32, form: u8) -> String {
    let wide = f64::from(value);
    match form % 8 {
        0 => printed(value, form / 8 % 4, 0),
        1 if (1e-4..10.0).contains(&wide.abs()) => {
            let next = f64::from(value.abs().next_up()).copysign(wide);
            format!("{:.18}", (wide + next) / 2.0)
        }
        _ => format!("{wide:?}"),
    }
}

/// What separates two numbers of a long row: mostly `, `, at times other whitespace.
fn row_separator(choice: u8) -> &'static str {
    match choice % 16 {
        0 => ",",
        1 => " , ",
        2 => ",\n",
        3 => ",  ",
        _ => ", ",
    }
}

/// Texts that are no JSON number, and a separator that is none, one of which
/// [`long_rows_read_as_serde_and_exact_rounding_say`] puts in some of its rows.
const BROKEN: [&str; 8] = ["01", "1.", ".5", "+1", "1e", "-", "1.5e+", ", ,"];

proptest! {
    #[test]
    fn long_rows_read_as_serde_and_exact_rounding_say(
        (rows, elements) in (1usize..=3, 1usize..=48).prop_flat_map(|(rows, columns)| (
            Just(rows),
            prop::collection::vec(
                (
                    prop_oneof![4 => -10f32..10f32, 1 => (-1f32..1f32).prop_map(|x| x * 1e-3), 1 => value()],
                    any::<u8>(),
                    any::<u8>(),
                ),
                rows * columns,
            ),
        )),
        broken in prop::option::weighted(0.25, (any::<prop::sample::Index>(), 0..BROKEN.len())),
    ) {
        let columns = elements.len() / rows;
        // At most one number, or the separator before it, made no JSON.
        let broken = broken.map(|(at, kind)| (at.index(elements.len()), BROKEN[kind]));
        let mut text = String::from("[");
        for (at, &(value, form, separator)) in elements.iter().enumerate() {
            let column = at % columns;
            if column == 0 {
                text.push_str(if at == 0 { "[" } else { "], [" });
            }
            let (separator, number) = match broken {
                Some((broken_at, bad)) if broken_at == at && bad.starts_with(',') => {
                    (bad, row_number(value, form))
                }
                Some((broken_at, bad)) if broken_at == at => (row_separator(separator), bad.into()),
                _ => (row_separator(separator), row_number(value, form)),
            };
            if column > 0 {
                text.push_str(separator);
            }
            text.push_str(&number);
        }
        text.push_str("]]");
        // Rows of numbers most of which AVX2's usual path reads, each `, ` seen with its
        // number, broken by the other forms and separators written here: read by this
        // processor's reader and by the baseline's, which must agree to the bit, as
        // [`fast_read`] checks.
        let fast = fast_read(&text);
        let serde = serde_read(&text);
        prop_assert_eq!(fast.is_some(), serde.is_ok(), "{} {:?}", text, serde);
        if let Some(fast) = fast {
            prop_assert_eq!(fast.shape(), &[rows, columns][..]);
            let exact = exact_values(&text).ok_or_else(|| TestCaseError::fail("tokens"))?;
            prop_assert!(same_bits(&fast.data, &exact), "{text}");
        } else {
            prop_assert!(broken.is_some(), "refused {text}");
        }
    }
}

#[test]
fn the_float32_limit_rounds_as_ieee_says() {
    // Half a step above f32::MAX rounds to even, which is infinity: refused.
    assert!(fast_read("[[340282356779733661637539395458142568448]]").is_none());
    // A hair below it is f32::MAX, though through f64 (whose nearest value is the bound
    // itself) it would round to infinity.
    let below = fast_read("[[3.4028235677973366e38]]").unwrap();
    assert_eq!(below.data, [f32::MAX]);
    assert!(("3.4028235677973366e38".parse::<f64>().unwrap() as f32).is_infinite());
    // The one shortest f32 text that f64-then-f32 rounding gets wrong.
    let tricky = fast_read("[[7.038531e-26]]").unwrap();
    assert_eq!(tricky.data, ["7.038531e-26".parse::<f32>().unwrap()]);
    assert_ne!(
        tricky.data[0],
        "7.038531e-26".parse::<f64>().unwrap() as f32
    );
}

/// Replacements for a character of base64 `data` in
/// [`the_base64_reader_takes_and_refuses_what_serde_does`]: padding, characters of other
/// alphabets or none, escapes serde undoes, JSON's delimiters.
const EDITS: [&str; 12] = [
    "=", "==", "-", "_", "*", " ", "\\n", "\\u0041", "\"", "é", "A", "",
];

/// `data` with the character at `at` (or the last) replaced by `edit`.
fn edited(data: &str, at: usize, edit: &str) -> String {
    let mut at = at.min(data.len().saturating_sub(1));
    while !data.is_char_boundary(at) {
        at -= 1;
    }
    let mut end = (at + 1).min(data.len());
    while !data.is_char_boundary(end) {
        end += 1;
    }
    format!("{}{edit}{}", &data[..at], &data[end..])
}

proptest! {
    #[test]
    fn the_base64_reader_takes_and_refuses_what_serde_does(
        shape in prop::collection::vec(1usize..40, 1..4),
        wide in any::<bool>(),
        order in 0usize..6,
        gaps in prop::collection::vec(0u64..8, 7),
        edits in prop::collection::vec(
            (prop::sample::select(&EDITS[..]), 0usize..20_000, any::<bool>()),
            0..3,
        ),
        extra in 0usize..5,
    ) {
        use base64::Engine;
        let len: usize = shape.iter().product();
        let values: Vec<f32> = (0..len).map(|i| i as f32 * 0.25 - 99.0).collect();
        let bytes: Vec<u8> = if wide {
            values.iter().flat_map(|&v| f64::from(v).to_le_bytes()).collect()
        } else {
            values.iter().flat_map(|&v| v.to_le_bytes()).collect()
        };
        let mut data = base64::engine::general_purpose::STANDARD.encode(&bytes);
        data.push_str(&"AAAA"[..extra]);
        for (edit, at, at_a_chunk_border) in edits {
            // Chunk borders are where padding stops being allowed.
            let at = if at_a_chunk_border {
                (at / 4096 * 4096).saturating_sub(1 + at % 4)
            } else {
                at
            };
            data = edited(&data, at, edit);
        }
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        let dtype = if wide { "float64" } else { "float32" };
        let mut parts = [
            format!(r#""dtype":{}"{dtype}""#, gap(gaps[0])),
            format!(r#""shape":{}[{}]"#, gap(gaps[1]), dims.join(gap(gaps[2]))),
            format!(r#""data":{}"{data}""#, gap(gaps[3])),
        ];
        // Every order of the keys: serde decodes `data` before `dtype` in another way.
        parts.rotate_left(order % 3);
        if order >= 3 {
            parts.swap(0, 1);
        }
        let json = format!(
            "{{{}{}{}}}",
            gap(gaps[4]),
            parts.join(&format!(",{}", gap(gaps[5]))),
            gap(gaps[6]),
        );
        let mut de = serde_json::Deserializer::from_str(&json);
        let serde = TensorSeed::new("a", &[1, 2, 3])
            .deserialize(&mut de)
            .map_err(|err| err.to_string());
        match super::read_packed_at(json.as_bytes(), 0) {
            Some((read, end)) => {
                prop_assert_eq!(end, json.len());
                prop_assert!(
                    matches!(&serde, Ok(Input::Tensor(tensor)) if *tensor == read),
                    "{json}: {serde:?}"
                );
            }
            // An escape serde undoes may make valid base64: that is left to serde.
            None => prop_assert!(
                serde.is_err() || data.contains('\\'),
                "refused what serde reads: {json}"
            ),
        }
    }
}

/// What `/v2`'s serde path ([`super::typed::JsonData`]) reads from `text` as an `FP32`
/// tensor's `data` of `shape`: its values, or its error.
fn v2_serde_read(text: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
    use super::typed::{Datatype, JsonData, Values};
    let mut de = serde_json::Deserializer::from_str(text);
    let read = JsonData::new("a", Datatype::Fp32, shape, text.len())
        .deserialize(&mut de)
        .and_then(|values| de.end().map(|()| values))
        .map_err(|err| err.to_string())?;
    match read {
        Values::Floats(values) => Ok(values),
        other => Err(format!("not floats: {other:?}")),
    }
}

/// A shape of rank 1 to 3, axes 1 to 5 long, with a value, form and nudge per element.
fn data_case() -> impl Strategy<Value = (Vec<usize>, Vec<(f32, u8, u8)>, u64)> {
    shaped(1..=3)
}

proptest! {
    #[test]
    fn v2_fp32_data_read_by_the_text_reader_is_what_serde_takes_rounded_once(
        (shape, elements, seed) in data_case(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<prop::sample::Index>()), 0..3),
        flat in any::<bool>(),
    ) {
        let tokens: Vec<String> = elements
            .iter()
            .map(|&(value, form, nudge)| printed(value, form, nudge))
            .collect();
        // `/v2` data may be flat whatever the shape, or nested as it.
        let written = if flat { vec![tokens.len()] } else { shape.clone() };
        let mut text = write(&written, &tokens, seed).into_bytes();
        edit(&mut text, &edits);
        let text = String::from_utf8(text).unwrap();
        let count: usize = shape.iter().product();
        let fast = super::typed::read_fp32_text(text.trim().as_bytes(), count);
        let serde = v2_serde_read(&text, &shape);
        match fast {
            // What the reader takes, serde takes too, with as many values, each the token's
            // correctly rounded f32 (serde's within one step: it rounds twice).
            Some(fast) => {
                let serde = serde.map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
                prop_assert_eq!(fast.len(), serde.len());
                let exact = exact_values(&text).ok_or_else(|| TestCaseError::fail("tokens"))?;
                prop_assert!(same_bits(&fast, &exact), "{text}");
                for (s, f) in serde.iter().zip(&fast) {
                    prop_assert!(s == f || s.to_bits().abs_diff(f.to_bits()) <= 1, "{s} {f}");
                }
            }
            // Unedited, rectangular data of finite numbers is always the reader's.
            None => prop_assert!(
                edits_made(&text, &written, &tokens, seed)
                    || tokens.iter().any(|t| !t.parse::<f32>().is_ok_and(f32::is_finite)),
                "refused {text}"
            ),
        }
    }
}

/// Whether `text` is other than the unedited writing of `tokens` in `shape`.
fn edits_made(text: &str, shape: &[usize], tokens: &[String], seed: u64) -> bool {
    text != write(shape, tokens, seed)
}
