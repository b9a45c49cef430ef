//! Compares the answer's float32 text ([`simserve::answer::float::write_finite`]) with
//! `zmij::Buffer::format_finite` on every finite f32, on all cores; prints how many were
//! compared and how many differ (the first few to stderr), and fails when any does.
//!
//! Usage: `cargo run --release --example float_text_against_zmij` (a few minutes on two
//! cores; the unit tests in `src/answer/float.rs` check a sample).

#![allow(clippy::print_stdout, missing_docs)]

use std::process::ExitCode;
use std::time::Instant;

use rayon::prelude::*;
use simserve::answer::float::{ROOM_BYTES, write_finite};

/// Bit patterns `high << 16 | low` for every `low`: how many differ of how many finite.
fn compare_block(high: u32) -> (u64, u64) {
    let mut zmij_text = zmij::Buffer::new();
    let mut slot = [0u8; ROOM_BYTES];
    let (mut compared, mut differing) = (0, 0);
    for low in 0..=0xFFFF {
        let value = f32::from_bits(high << 16 | low);
        if !value.is_finite() {
            continue;
        }
        let length = write_finite(value, &mut slot);
        let want = zmij_text.format_finite(value);
        compared += 1;
        if slot.get(..length) != Some(want.as_bytes()) {
            differing += 1;
            if differing <= 4 {
                let ours = String::from_utf8_lossy(slot.get(..length).unwrap_or_default());
                eprintln!("{:#010x}: {ours:?}, zmij {want:?}", value.to_bits());
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
