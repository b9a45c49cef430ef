//! Compares the answer's float32 text with `zmij::Buffer::format_finite` on every finite f32,
//! on all cores, both as [`simserve::answer::float::write_finite`] writes one value and as
//! the answer writer writes many (their decimals from `float::decimals`, which takes eight at
//! once where the processor has AVX-512, four where it has AVX2, then
//! `float::write_decimal`); prints how many were
//! compared and how many differ (the first few to stderr), and fails when any does.
//!
//! Usage: `cargo run --release --example float_text_against_zmij` (a few minutes on two
//! cores; the unit tests in `src/answer/float.rs` check a sample).

#![allow(clippy::print_stdout, missing_docs)]

use std::process::ExitCode;
use std::time::Instant;

use rayon::prelude::*;
use simserve::answer::float::{Decimal, ROOM_BYTES, decimals, write_decimal, write_finite};

/// Bit patterns `high << 16 | low` for every `low`: how many differ of how many finite.
fn compare_block(high: u32) -> (u64, u64) {
    let mut zmij_text = zmij::Buffer::new();
    let mut slot = [0u8; ROOM_BYTES];
    let (mut compared, mut differing) = (0, 0);
    let values: Vec<f32> = (0..=0xFFFF)
        .map(|low| f32::from_bits(high << 16 | low))
        .collect();
    let mut found = vec![Decimal::default(); values.len()];
    decimals(&values, &mut found);
    for (&value, &decimal) in values.iter().zip(&found) {
        if !value.is_finite() {
            continue;
        }
        let want = zmij_text.format_finite(value);
        let one = write_finite(value, &mut slot);
        let one = slot.get(..one).unwrap_or_default().to_vec();
        let many = write_decimal(value, decimal, &mut slot);
        let many = slot.get(..many).unwrap_or_default();
        compared += 1;
        if one != want.as_bytes() || many != want.as_bytes() {
            differing += 1;
            if differing <= 4 {
                let (one, many) = (String::from_utf8_lossy(&one), String::from_utf8_lossy(many));
                eprintln!(
                    "{:#010x}: {one:?} and {many:?}, zmij {want:?}",
                    value.to_bits()
                );
            }
        }
    }
    (compared, differing)
}

fn main() -> ExitCode {
    let started = Instant::now();
    let (compared, differing) = (0..=u32::MAX >> 16)
        .into_par_iter()
        .map(compare_block)
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    println!(
        "{compared} finite f32 compared, {differing} differ from zmij ({:.0?})",
        started.elapsed()
    );
    if differing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
