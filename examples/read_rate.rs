//! Prints the tensor text reader's time per number, one thread, on the first tensor of a
//! JSON file (a request body as `bench/run.py --write-requests` writes them, say): the
//! fastest and the median of its repeats.
//!
//! Usage: `read_rate FILE [REPEATS]`, e.g. `read_rate requests/2.json 40`. Under
//! `valgrind --tool=cachegrind` with 1 or 2 repeats it gives the reader's instructions.

#![allow(clippy::print_stdout, missing_docs)]

use std::error::Error;
use std::time::Instant;

use simserve::tensor::text;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let file = std::fs::read(args.get(1).ok_or("usage: read_rate FILE [REPEATS]")?)?;
    let repeats: usize = args.get(2).map_or(Ok(20), |n| n.parse())?.max(1);
    let start = file.iter().position(|&b| b == b'[').ok_or("no tensor")?;
    let mut per_number = Vec::with_capacity(repeats);
    let mut numbers = 0;
    for _ in 0..repeats {
        let began = Instant::now();
        let span = text::span(&file, start).ok_or("no tensor's brackets")?;
        let tensor = text::read(&file, &span).ok_or("not a tensor the reader takes")?;
        per_number.push(began.elapsed().as_secs_f64() * 1e9 / tensor.values().len() as f64);
        numbers = tensor.values().len();
    }
    per_number.sort_by(f64::total_cmp);
    println!(
        "{numbers} numbers: fastest {:.2} ns a number, median {:.2}",
        per_number[0],
        per_number[repeats / 2]
    );
    Ok(())
}
