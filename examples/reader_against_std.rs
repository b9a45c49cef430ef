//! The tensor text reader against the standard library's correctly rounded `f32` parser, on
//! every `STEP`-th `f32` bit pattern that is finite, each printed two ways: as Python prints
//! a float32 value converted to its float (the shortest text of the `f64`, 17 digits or so,
//! 19 to 20 after the point below 0.01) and as the shortest text of the `f32`. Prints how
//! many numbers were compared and how many differ (the first few are shown).
//!
//! Usage: `reader_against_std [STEP]` (97 by default: about 88 million numbers).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use simserve::tensor::text;

/// Numbers read as one tensor at a time.
const BATCH: usize = 4096;

fn main() {
    let step: usize = std::env::args().nth(1).map_or(97, |s| s.parse().unwrap());
    let mut printed: Vec<String> = Vec::with_capacity(BATCH);
    let (mut compared, mut differ) = (0u64, 0u64);
    let mut check = |printed: &mut Vec<String>| {
        if printed.is_empty() {
            return;
        }
        let tensor = format!("[{}]", printed.join(", "));
        let span = text::span(tensor.as_bytes(), 0).unwrap();
        let read = text::read(tensor.as_bytes(), &span).expect("every number read");
        for (value, number) in read.values().iter().zip(printed.iter()) {
            let exact: f32 = number.parse().unwrap();
            compared += 1;
            if value.to_bits() != exact.to_bits() {
                differ += 1;
                if differ <= 10 {
                    println!("{number}: read {value:?}, nearest {exact:?}");
                }
            }
        }
        printed.clear();
    };
    for bits in (0..=u32::MAX).step_by(step) {
        let value = f32::from_bits(bits);
        if !value.is_finite() {
            continue;
        }
        printed.push(format!("{:?}", f64::from(value)));
        printed.push(format!("{value:?}"));
        if printed.len() >= BATCH {
            check(&mut printed);
        }
    }
    check(&mut printed);
    println!("{compared} compared, {differ} differ");
}
