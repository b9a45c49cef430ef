//! JSON tensor text read straight into one contiguous `f32` buffer: the fast path for nested
//! arrays of numbers, the form most clients send (`json.dumps(x.tolist())`).
//!
//! Use [`span`] to find where the tensor starting at a `[` ends (and how many innermost rows
//! it has, to size the buffer once), then [`read`] for the whole tensor on one thread, or
//! [`read_parallel`] to cut a large one at row boundaries and read the pieces on the compute
//! threads.
//!
//! The reader knows only the tensor grammar (`[`, `]`, `,`, JSON whitespace and JSON numbers,
//! `01`, `+1`, `.5`, `1.` and `NaN` refused) and rounds every number straight from its digits
//! to the nearest `f32`. It says only *whether* the text is a valid, rectangular tensor of
//! finite `f32` values: anything else is `None`, and the caller reads the body again with
//! serde ([`super::nested`]), whose error (field, index, line and column) is then the answer.
//! So the two paths agree on what they accept, except at one edge where this one is right:
//! serde's `f64`-then-`f32` rounds twice, and a number within half an `f64` step of the
//! `f32` overflow bound is refused there and read here as `f32::MAX`.

use std::ops::Range;

use rayon::prelude::*;

use super::Tensor;

/// Ranks the reader takes at most (the request fields take 2 or 3).
pub const MAX_RANK: usize = 3;

/// Bytes of tensor text from which [`read_parallel`] cuts it into pieces: below it, handing
/// pieces to the pool costs more than it saves.
pub const PARALLEL_BYTES: usize = 1 << 20;

/// Pieces per thread a large tensor is cut into, so that a thread that finishes early finds
/// another piece.
const PIECES_PER_THREAD: usize = 2;

/// Where a tensor's text is and what it holds, found without reading its numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The text, from its `[` to just past its `]`.
    pub range: Range<usize>,
    /// Its rank: how many `[` open before the first number.
    pub rank: usize,
    /// How many innermost rows (arrays of numbers) it holds.
    pub rows: usize,
}

/// The span of the tensor whose `[` is at `text[start]`, found by matching brackets: `None`
/// if its rank is over [`MAX_RANK`], if it starts with something else, or if its brackets do
/// not close. Only bracket bytes are looked at, so the text inside is not checked (that is
/// [`read`]'s).
pub fn span(text: &[u8], start: usize) -> Option<Span> {
    let mut at = start;
    let mut rank = 0;
    while text.get(at) == Some(&b'[') {
        rank += 1;
        if rank > MAX_RANK {
            return None;
        }
        at = skip_whitespace(text, at + 1);
    }
    if rank == 0 {
        return None;
    }
    // The first innermost row is open; count the others as their `[` are met at depth `rank`.
    let mut depth = rank;
    let mut rows = 1;
    for found in memchr::memchr2_iter(b'[', b']', &text[at..]) {
        if text[at + found] == b'[' {
            depth += 1;
            if depth == rank {
                rows += 1;
            }
        } else {
            depth -= 1;
            if depth == 0 {
                return Some(Span {
                    range: start..at + found + 1,
                    rank,
                    rows,
                });
            }
        }
    }
    None
}

/// Reads the tensor of `span` (from [`span`] on the same `text`) on this thread: `None`
/// unless its text is exactly a rectangular tensor of finite `f32` values.
pub fn read(text: &[u8], span: &Span) -> Option<Tensor> {
    let text = &text[span.range.clone()];
    let mut shape = vec![0; span.rank];
    let mut data = Vec::new();
    let end = array(text, 0, &mut shape, &mut data, span.rows)?;
    (end == text.len()).then_some(Tensor { shape, data })
}

/// Reads the tensor of `span` as [`read`] does, cutting it at its outermost row boundaries
/// into pieces read on the compute threads when it is at least [`PARALLEL_BYTES`] long. The
/// first row is read alone first, to learn the rows' shape.
pub fn read_parallel(text: &[u8], span: &Span) -> Option<Tensor> {
    let threads = rayon::current_num_threads();
    if span.range.len() < PARALLEL_BYTES || threads < 2 || span.rank < 2 {
        return read(text, span);
    }
    let text = &text[span.range.clone()];
    // The first row: its shape is every other row's.
    let mut row_shape = vec![0; span.rank - 1];
    let mut first = Vec::new();
    let first_start = skip_whitespace(text, 1);
    let first_end = array(text, first_start, &mut row_shape, &mut first, 1)?;
    let row_bytes = first_end - first_start;

    // Pieces of the rest, each but the first starting at the `,` before an outermost row.
    let pieces = threads * PIECES_PER_THREAD;
    let rest = first_end..text.len() - 1;
    let mut cuts = vec![rest.start];
    for piece in 1..pieces {
        let target = rest.start + rest.len() * piece / pieces;
        match row_boundary(text, target.max(*cuts.last()? + 1), span.rank) {
            Some(cut) if cut < rest.end => cuts.push(cut),
            _ => break,
        }
    }
    cuts.push(rest.end);
    let read: Vec<(usize, Vec<f32>)> = cuts
        .par_windows(2)
        .map(|cut| rows_after(text, cut[0]..cut[1], &row_shape, row_bytes))
        .collect::<Option<_>>()?;

    let rows = 1 + read.iter().map(|(rows, _)| rows).sum::<usize>();
    let mut data = Vec::with_capacity(rows.checked_mul(first.len())?);
    data.extend_from_slice(&first);
    for (_, values) in &read {
        data.extend_from_slice(values);
    }
    let mut shape = vec![rows];
    shape.extend_from_slice(&row_shape);
    Some(Tensor { shape, data })
}

/// The next outermost row boundary at or after `from` in a rank-`rank` tensor's text: the
/// position of a `,` followed by exactly `rank - 1` `[` (a `,` between inner rows is followed
/// by fewer). Meaningful only in valid tensor text; the pieces cut there are checked anyway.
fn row_boundary(text: &[u8], from: usize, rank: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let open = at + memchr::memchr(b'[', text.get(at..)?)?;
        let before = text[..open]
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'))?;
        let mut next = open;
        let mut opened = 0;
        while text.get(next) == Some(&b'[') {
            opened += 1;
            next = skip_whitespace(text, next + 1);
        }
        if text[before] == b',' && opened == rank - 1 {
            return Some(before);
        }
        at = next;
    }
}

/// Reads the outermost rows in `text[piece]`, each after a `,` and each of `row_shape`:
/// how many rows, and their values. The buffer is sized from `row_bytes`, the first row's
/// length, with a margin for rows written longer.
fn rows_after(
    text: &[u8],
    piece: Range<usize>,
    row_shape: &[usize],
    row_bytes: usize,
) -> Option<(usize, Vec<f32>)> {
    let row_len: usize = row_shape.iter().product();
    let rows = piece.len() / row_bytes.max(1) + 1;
    let values = rows.saturating_add(rows / 4).saturating_mul(row_len);
    let mut data = Vec::with_capacity(values.min(piece.len() / 2 + 1));
    let mut shape = row_shape.to_vec();
    let mut rows = 0;
    let mut at = skip_whitespace(text, piece.start);
    while at < piece.end {
        if text[at] != b',' {
            return None;
        }
        at = array(
            text,
            skip_whitespace(text, at + 1),
            &mut shape,
            &mut data,
            0,
        )?;
        at = skip_whitespace(text, at);
        rows += 1;
    }
    (at == piece.end).then_some((rows, data))
}

/// Reads the array whose `[` is at `text[start]` into `data`, checking (or, where 0, setting)
/// the length of each of its axes in `shape`. When `data` starts empty, its first innermost
/// row sizes it for `rows` such rows (a hint, bounded by the text's length; 0 for none).
/// Returns the position past its `]`.
fn array(
    text: &[u8],
    start: usize,
    shape: &mut [usize],
    data: &mut Vec<f32>,
    rows: usize,
) -> Option<usize> {
    let rank = shape.len();
    if rank == 0 || rank > MAX_RANK || text.get(start) != Some(&b'[') {
        return None;
    }
    // counts[level]: elements closed so far in the array open at `level` (0 = outermost).
    let mut counts = [0usize; MAX_RANK];
    let mut at = start;
    // Open every level down to the innermost.
    let mut level = 0;
    loop {
        if text.get(at) != Some(&b'[') {
            return None;
        }
        at = skip_whitespace(text, at + 1);
        counts[level] = 0;
        if level + 1 == rank {
            break;
        }
        level += 1;
    }
    loop {
        // An innermost row: numbers separated by `,` up to `]`.
        let row_start = data.len();
        loop {
            let (value, next) = number(text, at)?;
            data.push(value);
            at = skip_whitespace(text, next);
            match text.get(at) {
                Some(b',') => at = skip_whitespace(text, at + 1),
                Some(b']') => break,
                _ => return None,
            }
        }
        at += 1;
        if row_start == 0 {
            // The first row tells the length of every other: size the buffer once, within
            // what the text could hold (two bytes per number at least).
            let len = data.len();
            let wanted = rows.saturating_mul(len).min(text.len() / 2 + 1);
            data.reserve(wanted.saturating_sub(len));
        }
        let mut closed = data.len() - row_start;
        // Close levels while their arrays end; `level` is the innermost open one.
        let mut level = rank - 1;
        loop {
            if !fits(&mut shape[level], closed) {
                return None;
            }
            if level == 0 {
                return Some(at);
            }
            level -= 1;
            counts[level] += 1;
            at = skip_whitespace(text, at);
            match text.get(at) {
                Some(b',') => break,
                Some(b']') => {
                    at += 1;
                    closed = counts[level];
                }
                _ => return None,
            }
        }
        // A `,` at `level`: its next element opens every level below it.
        at = skip_whitespace(text, at + 1);
        for count in &mut counts[level + 1..rank] {
            if text.get(at) != Some(&b'[') {
                return None;
            }
            at = skip_whitespace(text, at + 1);
            *count = 0;
        }
    }
}

/// Checks that an axis of known length `axis` (0 = not yet known) closes with `count`
/// elements, learning it on the first close.
fn fits(axis: &mut usize, count: usize) -> bool {
    if *axis == 0 {
        *axis = count;
        count > 0
    } else {
        *axis == count
    }
}

/// The first position at or after `at` that is not JSON whitespace.
#[inline]
fn skip_whitespace(text: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = text.get(at) {
        at += 1;
    }
    at
}

/// Powers of ten `10^0 ..= 10^22` in `f64`: exact.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Powers of ten `10^0 ..= 10^-22` in `f64`: each the nearest `f64`, within half a step.
const INVERSE_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14,
    1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22,
];

/// Significant digits a `u64` always holds.
const MAX_DIGITS: usize = 19;

/// The JSON number at `text[at]`, rounded to the nearest `f32`, and the position after it;
/// `None` if there is no valid JSON number there or it rounds past the `f32` range.
///
/// Digits are read eight at a time into a `u64`. When there are at most 19 significant
/// digits and the decimal exponent is within ±22, [`fast_f32`] rounds them unless they lie
/// too near the midpoint between two `f32` values (or outside the normal `f32` range);
/// those rare numbers, and all others, go to the standard library's correctly rounded `f32`
/// parser.
#[inline]
fn number(text: &[u8], start: usize) -> Option<(f32, usize)> {
    let mut at = start;
    let negative = text.get(at) == Some(&b'-');
    at += usize::from(negative);
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut exponent: i64 = 0;
    // Integer part: `0` alone, or a non-zero digit and more.
    match text.get(at) {
        Some(b'0') => {
            at += 1;
            if text.get(at).is_some_and(u8::is_ascii_digit) {
                return None;
            }
        }
        Some(b'1'..=b'9') => {
            let read = read_digits(text, &mut at, &mut mantissa, &mut digits);
            if digits > MAX_DIGITS {
                exponent += (digits - MAX_DIGITS) as i64;
            }
            debug_assert!(read > 0);
        }
        _ => return None,
    }
    // Fraction: at least one digit after the point. Its leading zeros (with no digit before
    // them) only move the exponent.
    if text.get(at) == Some(&b'.') {
        at += 1;
        let first = at;
        if mantissa == 0 {
            while text.get(at) == Some(&b'0') {
                at += 1;
            }
        }
        let before = digits;
        read_digits(text, &mut at, &mut mantissa, &mut digits);
        if at == first {
            return None;
        }
        let zeros = at - first - (digits - before);
        let kept = (digits.min(MAX_DIGITS)).saturating_sub(before.min(MAX_DIGITS));
        exponent -= (zeros + kept) as i64;
    }
    // Exponent: `e` or `E`, a sign, at least one digit.
    if let Some(b'e' | b'E') = text.get(at) {
        at += 1;
        let negative_exponent = match text.get(at) {
            Some(b'-') => {
                at += 1;
                true
            }
            Some(b'+') => {
                at += 1;
                false
            }
            _ => false,
        };
        let first = at;
        let mut written: i64 = 0;
        while let Some(&digit @ b'0'..=b'9') = text.get(at) {
            written = written
                .saturating_mul(10)
                .saturating_add(i64::from(digit - b'0'));
            at += 1;
        }
        if at == first {
            return None;
        }
        exponent = if negative_exponent {
            exponent.saturating_sub(written)
        } else {
            exponent.saturating_add(written)
        };
    }
    let value = if mantissa == 0 {
        0.0
    } else {
        match fast_f32(mantissa, digits, exponent) {
            Some(value) => value,
            None => std::str::from_utf8(&text[start + usize::from(negative)..at])
                .ok()?
                .parse::<f32>()
                .ok()?,
        }
    };
    let value = if negative { -value } else { value };
    value.is_finite().then_some((value, at))
}

/// Reads a run of digits at `text[*at]` into `mantissa`, counting them in `digits`; past
/// [`MAX_DIGITS`] they are counted but not added. Returns how many were read.
#[inline]
fn read_digits(text: &[u8], at: &mut usize, mantissa: &mut u64, digits: &mut usize) -> usize {
    let first = *at;
    while *digits + 8 <= MAX_DIGITS {
        let Some(chunk) = text.get(*at..*at + 8) else {
            break;
        };
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        if !eight_digits(word) {
            break;
        }
        *mantissa = *mantissa * 100_000_000 + u64::from(eight_digits_value(word));
        *digits += 8;
        *at += 8;
    }
    while let Some(&digit @ b'0'..=b'9') = text.get(*at) {
        if *digits < MAX_DIGITS {
            *mantissa = *mantissa * 10 + u64::from(digit - b'0');
        }
        *digits += 1;
        *at += 1;
    }
    *at - first
}

/// Whether all eight bytes of `word` (little-endian) are ASCII digits.
#[inline]
fn eight_digits(word: u64) -> bool {
    let high = word & 0xF0F0_F0F0_F0F0_F0F0;
    let carried = (word.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) >> 4;
    (high | carried) == 0x3333_3333_3333_3333
}

/// The value of eight ASCII digits read little-endian (the first digit in the lowest byte).
#[inline]
fn eight_digits_value(word: u64) -> u32 {
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 0x000F_4240_0000_0064; // 100 + (1_000_000 << 32)
    const MUL2: u64 = 0x0000_2710_0000_0001; // 1 + (10_000 << 32)
    let word = word.wrapping_sub(0x3030_3030_3030_3030);
    let word = word.wrapping_mul(10).wrapping_add(word >> 8);
    let word = (word & MASK)
        .wrapping_mul(MUL1)
        .wrapping_add(((word >> 16) & MASK).wrapping_mul(MUL2))
        >> 32;
    word as u32
}

/// `mantissa × 10^exponent` rounded to `f32` when that is certain without the full
/// algorithm (see [`number`]), else `None`. `digits` counts the significant digits read
/// (those past 19 were dropped and need the full algorithm).
///
/// The product of the mantissa and the power of ten, each within half an `f64` step, is
/// within two steps of the true value (a multiplication, not a division: its result is
/// waited for at once). Rounding it to `f32` is then right unless it lies within
/// [`MIDPOINT_MARGIN`] steps of a midpoint between two `f32` values.
#[inline]
fn fast_f32(mantissa: u64, digits: usize, exponent: i64) -> Option<f32> {
    if digits > MAX_DIGITS || !(-22..=22).contains(&exponent) {
        return None;
    }
    let power = if exponent < 0 {
        INVERSE_POWERS_OF_TEN[exponent.unsigned_abs() as usize]
    } else {
        POWERS_OF_TEN[exponent as usize]
    };
    // The signed conversion is one instruction; 19 digits may pass i64::MAX, though.
    let mantissa = match i64::try_from(mantissa) {
        Ok(signed) => signed as f64,
        Err(_) => mantissa as f64,
    };
    let near = mantissa * power;
    // Within the normal f32 range, and away from the midpoints: the 29 bits f64 holds below
    // f32's precision, against their half.
    let bits = near.to_bits();
    let biased = (bits >> 52) & 0x7FF;
    let below = bits & ((1 << 29) - 1);
    if !(1023 - 126..=1023 + 127).contains(&biased) || below.abs_diff(1 << 28) <= MIDPOINT_MARGIN {
        return None;
    }
    Some(near as f32)
}

/// `f64` steps from a midpoint between two `f32` values within which [`fast_f32`] leaves a
/// number to the full algorithm: several times its error of two steps at most.
const MIDPOINT_MARGIN: u64 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<Tensor> {
        let s = span(text.as_bytes(), 0)?;
        read(text.as_bytes(), &s)
    }

    fn one(text: &str) -> Option<f32> {
        let (value, end) = number(text.as_bytes(), 0)?;
        (end == text.len()).then_some(value)
    }

    #[test]
    fn numbers_round_straight_to_the_nearest_f32() {
        for text in [
            "0",
            "-0",
            "1",
            "-1.5",
            "0.1",
            "0.12345699965953827",
            "-0.0012345679104328156",
            "1e-3",
            "1E+3",
            "123456789012345678901234567890",
            "0.000000000000000000000000000000000000001",
            "1e-45",
            "3.4028235e38",
            "7.038531e-26",
            "1.00000005960464477539062500001",
            "9.225182736547839999e14",
        ] {
            assert_eq!(one(text), Some(text.parse::<f32>().unwrap()), "{text}");
        }
        assert!(one("-0").unwrap().is_sign_negative());
    }

    #[test]
    fn what_json_does_not_allow_is_refused() {
        for text in [
            "01", "+1", ".5", "1.", "-", "1e", "1e+", "NaN", "Infinity", "-.5", "0x1", "1e39", "",
        ] {
            assert_eq!(one(text), None, "{text}");
        }
    }

    #[test]
    fn tensors_read_with_their_shape() {
        let got = parse("[[1, 2.5], [-3, 4e-3]]").unwrap();
        assert_eq!(got.shape, [2, 2]);
        assert_eq!(got.data, [1.0, 2.5, -3.0, 4e-3]);
        let got = parse(" [ [ [1] , [2] ] ,[[3],[4]]]".trim_start()).unwrap();
        assert_eq!(got.shape, [2, 2, 1]);
        assert_eq!(got.data, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn ragged_empty_and_mixed_tensors_are_refused() {
        for text in [
            "[[1, 2], [3]]",
            "[[1], [2, 3]]",
            "[[1], []]",
            "[[]]",
            "[]",
            "[[1], 2]",
            "[[1, [2]]]",
            "[[[1]], [2]]",
            "[[1],]",
            "[[1] [2]]",
            "[[1,,2]]",
            "[[\"1\"]]",
            "[[[[1]]]]",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn a_span_ends_at_the_matching_bracket_and_counts_innermost_rows() {
        let text = b"[[1, 2], [3, 4], [5, 6]], \"b\": [[7]]";
        let found = span(text, 0).unwrap();
        assert_eq!(found.range, 0..24);
        assert_eq!((found.rank, found.rows), (2, 3));
        let found = span(b"[[[1], [2]], [[3], [4]]]", 0).unwrap();
        assert_eq!((found.rank, found.rows), (3, 4));
        assert_eq!(span(b"[[1, 2]", 0), None);
        assert_eq!(span(b"[[[[1]]]]", 0), None);
    }

    #[test]
    fn pieces_read_in_parallel_equal_one_read() {
        for rank in [2, 3] {
            let rows = 3000;
            let row = |i: usize| {
                let numbers: Vec<String> = (0..7).map(|j| format!("{}.{j}5", i % 97)).collect();
                format!("[{}]", numbers.join(", "))
            };
            let text = if rank == 2 {
                format!("[{}]", (0..rows).map(row).collect::<Vec<_>>().join(", "))
            } else {
                let sets: Vec<String> = (0..rows)
                    .map(|i| format!("[{}, {}]", row(i), row(i + 1)))
                    .collect();
                format!("[{}]", sets.join(",\n"))
            };
            assert!(text.len() >= PARALLEL_BYTES / 8);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(3)
                .build()
                .unwrap();
            let found = span(text.as_bytes(), 0).unwrap();
            let one = read(text.as_bytes(), &found).unwrap();
            // Cut below the threshold by reading through the pieces directly.
            let many = pool
                .install(|| read_pieces(text.as_bytes(), &found))
                .unwrap();
            assert_eq!(one, many, "rank {rank}");
        }
    }

    /// [`read_parallel`] without its size threshold.
    fn read_pieces(text: &[u8], span: &Span) -> Option<Tensor> {
        let mut long = text[span.range.clone()].to_vec();
        // Pad with whitespace inside the outer brackets until it is long enough.
        let close = long.pop()?;
        long.resize(PARALLEL_BYTES, b' ');
        long.push(close);
        let found = super::span(&long, 0)?;
        read_parallel(&long, &found)
    }
}
