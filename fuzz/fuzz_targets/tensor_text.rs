//! The tensor text reader against serde on arbitrary bytes, both as a tensor and as a whole
//! matrix request body:
//! - as a tensor, the reader accepts exactly what the serde path accepts, with the same
//!   shape, and every value is the correctly rounded `f32` of its number's text (the one
//!   allowed difference: a number within half an `f64` step of the `f32` overflow bound,
//!   which serde's two roundings refuse and the reader reads as `f32::MAX`); and every
//!   reader this processor can run (the baseline's, and those narrower than the one it
//!   picks) reads the text as the picked one does, bit for bit, or refuses it too;
//! - as a body, parsing with tensors read ahead gives what serde alone gives: the same
//!   error text, or the same request.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeSeed;
use simserve::api::matrix::MatrixRequest;
use simserve::tensor::{Input, Tensor, TensorSeed, text};

fuzz_target!(|data: &[u8]| {
    tensor(data);
    body(data);
});

fn tensor(data: &[u8]) {
    let mut de = serde_json::Deserializer::from_slice(data);
    let serde = TensorSeed::new("a", &[2, 3])
        .deserialize(&mut de)
        .and_then(|input| de.end().map(|()| input));
    let serde = match serde {
        Ok(Input::Tensor(tensor)) => Some(tensor),
        _ => None,
    };
    let fast = read(data);
    match (&fast, &serde) {
        (Some(fast), Some(serde)) => {
            assert_eq!(fast.shape(), serde.shape());
            let exact = exact_values(data).expect("accepted text has numbers");
            let read: Vec<u32> = fast.values().iter().map(|v| v.to_bits()).collect();
            let want: Vec<u32> = exact.iter().map(|v| v.to_bits()).collect();
            assert_eq!(read, want);
        }
        (None, None) => {}
        _ => assert!(
            at_the_overflow_edge(data),
            "reader {:?}, serde {:?}",
            fast.is_some(),
            serde.is_some()
        ),
    }
}

fn body(data: &[u8]) {
    if !data
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
    {
        return;
    }
    let fast = simserve::body::parse::<MatrixRequest>(data).map_err(|e| e.to_string());
    let serde = serde_json::from_slice::<MatrixRequest>(data)
        .map_err(|e| simserve::error::ApiError::from_json(&e).to_string());
    match (fast, serde) {
        (Ok(fast), Ok(serde)) => {
            if !rounding_is_delicate(data) {
                assert_eq!(format!("{fast:?}"), format!("{serde:?}"));
            }
        }
        (Err(fast), Err(serde)) => assert_eq!(fast, serde),
        (fast, serde) => assert!(
            at_the_overflow_edge(data),
            "read ahead {:?}, serde {:?}",
            fast.is_ok(),
            serde.is_ok()
        ),
    }
}

/// What the reader reads: the tensor after leading whitespace, with only whitespace after,
/// of rank 2 or 3 (the seed refuses others). Read both ways (its span found first, and from
/// its bracket), which must agree on the tensor and where it ends; its span found from the
/// record of the text's brackets (made in two pieces) must be the one found in the text;
/// and every other reader must read from the bracket what the picked one reads.
fn read(data: &[u8]) -> Option<Tensor> {
    let start = data.iter().position(|b| !b" \n\r\t".contains(b))?;
    let span = text::span(data, start);
    let mut brackets = text::Brackets::default();
    let (first, second) = data.split_at(data.len() / 3);
    brackets.record(first);
    brackets.record(second);
    if let Some(recorded) = brackets.recorded(data.len()) {
        assert_eq!(text::span_recorded(data, start, recorded), span);
    }
    let spanned = span.and_then(|span| Some((text::read(data, &span)?, span.range.end)));
    let at_bracket = text::read_at(data, start);
    assert_eq!(at_bracket, spanned);
    let picked = bits(&at_bracket);
    assert_eq!(bits(&text::read_at_by_baseline(data, start)), picked, "baseline");
    for (reader, read) in text::read_at_by_narrower_readers(data, start) {
        assert_eq!(bits(&read), picked, "{reader}");
    }
    let (tensor, end) = spanned?;
    data[end..]
        .iter()
        .all(|b| b" \n\r\t".contains(b))
        .then_some(tensor)
        .filter(|tensor| tensor.rank() >= 2)
}

/// A reading as its shape, its values' bits and where it ends: readings compared this way
/// differ when one reads `-0.0` and another `0.0`.
fn bits(read: &Option<(Tensor, usize)>) -> Option<(Vec<usize>, Vec<u32>, usize)> {
    read.as_ref().map(|(tensor, end)| {
        let bits = tensor.values().iter().map(|v| v.to_bits()).collect();
        (tensor.shape().to_vec(), bits, *end)
    })
}

/// The numbers of tensor text, each rounded by the standard library.
fn exact_values(data: &[u8]) -> Option<Vec<f32>> {
    std::str::from_utf8(data)
        .ok()?
        .split(|c: char| "[], \n\r\t".contains(c))
        .filter(|token| !token.is_empty())
        .map(|token| token.parse::<f32>().ok())
        .collect()
}

/// The `f64` values of the number-like tokens of `data`, with their text.
fn numbers(data: &[u8]) -> Vec<(String, f64)> {
    String::from_utf8_lossy(data)
        .split(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .filter_map(|token| Some((token.to_owned(), token.parse::<f64>().ok()?)))
        .collect()
}

/// Whether some number of `data` lies within a few `f64` steps of the `f32` overflow bound
/// (half a step past `f32::MAX`), where serde's two roundings and the reader's one may
/// disagree on whether it is in range.
fn at_the_overflow_edge(data: &[u8]) -> bool {
    let bound = (f64::from(f32::MAX) + 2f64.powi(103)).to_bits();
    numbers(data)
        .iter()
        .any(|(_, wide)| wide.abs().to_bits().abs_diff(bound) <= 4)
}

/// Whether serde may read some number of `data` as another `f32` than the reader: rounding
/// twice (through an `f64` that serde may itself get one step off) differs from rounding
/// once only near a midpoint between two `f32` values, in the subnormal range, or at the
/// overflow bound; and serde reads the integer `-0` as `+0`.
fn rounding_is_delicate(data: &[u8]) -> bool {
    numbers(data).iter().any(|(text, wide)| {
        let bits = wide.abs().to_bits();
        let below = bits & ((1 << 29) - 1);
        text == "-0"
            || (*wide != 0.0 && wide.abs() < f64::from(f32::MIN_POSITIVE))
            || below.abs_diff(1 << 28) <= 8
    }) || at_the_overflow_edge(data)
}
