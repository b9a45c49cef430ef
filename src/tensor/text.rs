//! JSON tensor text read straight into one contiguous `f32` buffer: the fast path for nested
//! arrays of numbers, the form most clients send (`json.dumps(x.tolist())`).
//!
//! Which to use:
//! - [`read_at`] for a tensor in a small text (a body under [`PARALLEL_BYTES`]): read on this
//!   thread from its `[`, where it ends found on the way, the buffer sized from its first row;
//! - for a large one, [`span`] to find where it ends (and how many innermost rows it has, to
//!   size the buffer once), or [`span_recorded`] when the text's brackets were recorded as it
//!   arrived ([`Brackets`]), then [`read`] for the whole tensor on one thread, or
//!   [`read_parallel`] to cut it at row boundaries and read the pieces on the compute threads.
//!
//! The reader knows only the tensor grammar (`[`, `]`, `,`, JSON whitespace and JSON numbers,
//! read by [`super::number`]: `01`, `+1`, `.5`, `1.` and `NaN` refused, every number rounded
//! straight from its digits to the nearest `f32`). It says only *whether* the text is a valid, rectangular tensor of
//! finite `f32` values: anything else is `None`, and the caller reads the body again with
//! serde ([`super::nested`]), whose error (field, index, line and column) is then the answer.
//! So the two paths agree on what they accept, except at one edge where this one is right:
//! serde's `f64`-then-`f32` rounds twice, and a number within half an `f64` step of the
//! `f32` overflow bound is refused there and read here as `f32::MAX`.

use std::ops::Range;

use rayon::prelude::*;

use super::Tensor;
use super::number::{Baseline, RUN_SPARE_VALUES, Reader};

mod brackets;

pub use brackets::{Brackets, Recorded};

/// Ranks the reader takes at most: those of any tensor ([`super::MAX_RANK`]).
const MAX_RANK: usize = super::MAX_RANK;

/// Bytes of tensor text from which [`read_parallel`] cuts it into pieces: below it, handing
/// pieces to the pool costs more than it saves.
pub const PARALLEL_BYTES: usize = 1 << 20;

/// Values a tensor's buffer is first sized for at most, before its first row tells its
/// length: rows of embeddings fit, and one long row (a rank-1 tensor, whose share is the
/// whole text) is not given room for every two bytes of its text.
const FIRST_ROW_VALUES: usize = 4096;

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
    let (rank, at) = opening(text, start)?;
    let brackets = memchr::memchr2_iter(b'[', b']', &text[at..]).map(|found| at + found);
    span_from_brackets(text, start, rank, brackets)
}

/// [`span`], the brackets after the tensor's opening looked up in `brackets` (the record of
/// all of this `text`'s) rather than looked for in the text: the same span, without a pass
/// over the text. For large bodies, whose brackets were recorded as their bytes arrived.
pub fn span_recorded(text: &[u8], start: usize, brackets: Recorded<'_>) -> Option<Span> {
    let (rank, at) = opening(text, start)?;
    span_from_brackets(text, start, rank, brackets.after(at))
}

/// The span of the tensor whose `[` is at `text[start]`, of rank `rank`, from the positions
/// of the brackets after its opening (in order): where its outermost array closes, with the
/// innermost rows counted on the way. `None` if it never closes, or a position holds no
/// bracket (positions not recorded from this text).
fn span_from_brackets(
    text: &[u8],
    start: usize,
    rank: usize,
    brackets: impl Iterator<Item = usize>,
) -> Option<Span> {
    // The first innermost row is open; count the others as their `[` are met at depth `rank`.
    let mut depth = rank;
    let mut rows = 1;
    for at in brackets {
        match text.get(at)? {
            b'[' => {
                depth += 1;
                if depth == rank {
                    rows += 1;
                }
            }
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(Span {
                        range: start..at + 1,
                        rank,
                        rows,
                    });
                }
            }
            _ => return None,
        }
    }
    None
}

/// The rank of the tensor whose `[` is at `text[start]` (how many `[` open before its first
/// number) and the position after them: `None` if it is over [`MAX_RANK`] or there is no `[`.
fn opening(text: &[u8], start: usize) -> Option<(usize, usize)> {
    let mut at = start;
    let mut rank = 0;
    while text.get(at) == Some(&b'[') {
        rank += 1;
        if rank > MAX_RANK {
            return None;
        }
        at = skip_whitespace(text, at + 1);
    }
    (rank > 0).then_some((rank, at))
}

/// Reads the tensor of `span` (from [`span`] on the same `text`) on this thread: `None`
/// unless its text is exactly a rectangular tensor of finite `f32` values.
pub fn read(text: &[u8], span: &Span) -> Option<Tensor> {
    let text = &text[span.range.clone()];
    let mut shape = vec![0; span.rank];
    let mut data = Vec::new();
    let end = array(text, 0, &mut shape, &mut data, Rows::Counted(span.rows))?;
    (end == text.len()).then_some(Tensor { shape, data })
}

/// Reads the tensor whose `[` is at `text[start]` on this thread, with the position just past
/// its `]`; `None` as [`read`]. No [`span`] is found first, so its rows are not counted: the
/// buffer is sized for the first row (at most [`FIRST_ROW_VALUES`]) and then grows as it
/// must, copied as it does. For small texts, where a pass to count the rows costs more than
/// those copies.
pub fn read_at(text: &[u8], start: usize) -> Option<(Tensor, usize)> {
    let (rank, _) = opening(text, start)?;
    let mut shape = vec![0; rank];
    let mut data = Vec::new();
    let end = array(text, start, &mut shape, &mut data, Rows::Uncounted)?;
    Some((Tensor { shape, data }, end))
}

/// Reads `text` when it is exactly one tensor, its `[` first and its `]` last: from its
/// start on this thread ([`read_at`]) when it is under [`PARALLEL_BYTES`], else its span
/// found first and the tensor read by [`read_parallel`]. `None` as [`read`], or when
/// anything follows the tensor.
pub fn read_whole(text: &[u8]) -> Option<Tensor> {
    if text.len() < PARALLEL_BYTES {
        let (tensor, end) = read_at(text, 0)?;
        return (end == text.len()).then_some(tensor);
    }
    let span = span(text, 0)?;
    if span.range.end != text.len() {
        return None;
    }
    read_parallel(text, &span)
}

/// [`read_at`] with the baseline's reader whatever the processor has: for tests and the
/// fuzz targets that hold the reader of this processor to it (hidden, not for other use;
/// not behind a `cfg(fuzzing)`, which plain builds would warn of as unknown).
#[doc(hidden)]
pub fn read_at_by_baseline(text: &[u8], start: usize) -> Option<(Tensor, usize)> {
    let (rank, _) = opening(text, start)?;
    let mut shape = vec![0; rank];
    let mut data = Vec::new();
    let end = array_with(
        Baseline,
        text,
        start,
        &mut shape,
        &mut data,
        Rows::Uncounted,
    )?;
    Some((Tensor { shape, data }, end))
}

/// [`read_at`] by each reader's loop this processor can run but the one [`array`] picks
/// (AVX2's where it also has AVX-512's runs), named: for tests and the fuzz targets that hold
/// them all to the baseline's, not only the widest (hidden, as [`read_at_by_baseline`]).
#[doc(hidden)]
pub fn read_at_by_narrower_readers(
    text: &[u8],
    start: usize,
) -> Vec<(&'static str, Option<(Tensor, usize)>)> {
    let mut read = Vec::new();
    #[cfg(target_arch = "x86_64")]
    if let (Some(_), Some(avx2)) = (
        super::number::Avx512::detected(),
        super::number::Avx2::detected(),
    ) {
        let by_avx2 = opening(text, start).and_then(|(rank, _)| {
            let mut shape = vec![0; rank];
            let mut data = Vec::new();
            #[allow(unsafe_code)]
            // SAFETY: `avx2` was made only after the processor was found to have the features
            // `array_avx2` is compiled for.
            let end =
                unsafe { array_avx2(avx2, text, start, &mut shape, &mut data, Rows::Uncounted) }?;
            Some((Tensor { shape, data }, end))
        });
        read.push(("AVX2", by_avx2));
    }
    read
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
    let first_end = array(text, first_start, &mut row_shape, &mut first, Rows::Unsized)?;
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
        // What precedes it, looking back no further than `from` (so that a long run of
        // whitespace is not scanned once per cut).
        let before = text[from..open]
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
            .map(|back| from + back);
        let mut next = open;
        let mut opened = 0;
        while text.get(next) == Some(&b'[') {
            opened += 1;
            next = skip_whitespace(text, next + 1);
        }
        if let Some(comma) = before.filter(|&back| text[back] == b',')
            && opened == rank - 1
        {
            return Some(comma);
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
    let mut data = Vec::with_capacity(values.min(piece.len() / 2 + 1) + RUN_SPARE_VALUES);
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
            Rows::Unsized,
        )?;
        at = skip_whitespace(text, at);
        rows += 1;
    }
    (at == piece.end).then_some((rows, data))
}

/// How [`array`] sizes its buffer, from what it knows of the innermost rows its text holds.
#[derive(Debug, Clone, Copy)]
enum Rows {
    /// Not at all: the buffer is left as the caller made it, and grows as it must.
    Unsized,
    /// For this many, counted by [`span`]: sized for the first row, then once for all.
    Counted(usize),
    /// Not counted: sized for the first row, then grown as it must, so that its room follows
    /// the values it holds, never the text after them.
    Uncounted,
}

/// Reads the array whose `[` is at `text[start]` into `data`, checking (or, where 0, setting)
/// the length of each of its axes in `shape`. Unless `rows` is [`Rows::Unsized`], an empty
/// `data` is first sized for one row as long as the text's share per row could hold (two
/// bytes a number at least, at most [`FIRST_ROW_VALUES`]), so the first row is not grown a
/// push at a time; with [`Rows::Counted`], that row then sizes it for all the rows (within
/// what the text could hold).
/// Returns the position past its `]`.
///
/// Its numbers are read in runs with AVX-512 where the processor has it with VBMI2
/// ([`array_avx512`]), else with AVX2 where it has that ([`array_avx2`]), else with the
/// baseline's instructions: the same values every way.
fn array(
    text: &[u8],
    start: usize,
    shape: &mut [usize],
    data: &mut Vec<f32>,
    rows: Rows,
) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx512) = super::number::Avx512::detected() {
        #[allow(unsafe_code)]
        // SAFETY: `avx512` was made only after the processor was found to have the features
        // `array_avx512` is compiled for.
        return unsafe { array_avx512(avx512, text, start, shape, data, rows) };
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(avx2) = super::number::Avx2::detected() {
        #[allow(unsafe_code)]
        // SAFETY: `avx2` was made only after the processor was found to have the features
        // `array_avx2` is compiled for.
        return unsafe { array_avx2(avx2, text, start, shape, data, rows) };
    }
    array_with(Baseline, text, start, shape, data, rows)
}

/// [`array`]'s loop compiled for AVX2 (and BMI1, BMI2), its numbers read by `avx2`.
///
/// # Safety
/// The processor must have AVX2, BMI1 and BMI2, as holding an [`super::number::Avx2`] proves.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,bmi1,bmi2")]
unsafe fn array_avx2(
    avx2: super::number::Avx2,
    text: &[u8],
    start: usize,
    shape: &mut [usize],
    data: &mut Vec<f32>,
    rows: Rows,
) -> Option<usize> {
    array_with(avx2, text, start, shape, data, rows)
}

/// [`array`]'s loop compiled for AVX-512 (with VBMI and VBMI2), AVX2, BMI1 and BMI2, its
/// numbers read by `avx512`: runs of them at once, the others one at a time.
///
/// # Safety
/// The processor must have those features, as holding an [`super::number::Avx512`] proves.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(
    enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx512vbmi2,avx2,bmi1,bmi2"
)]
unsafe fn array_avx512(
    avx512: super::number::Avx512,
    text: &[u8],
    start: usize,
    shape: &mut [usize],
    data: &mut Vec<f32>,
    rows: Rows,
) -> Option<usize> {
    array_with(avx512, text, start, shape, data, rows)
}

/// Numbers read one at a time where a run could not be read ([`Reader::run`]), that one
/// included, before the next run is tried, so that text whose numbers are seldom of the
/// usual form does not pay for a failed run at each of them. A row's start (a run always
/// stops at the row's last number) tries again at once.
const NUMBERS_BETWEEN_RUNS: usize = 8;

/// [`array`], each number read by `reader`: in runs where it can ([`Reader::run`]), else one
/// at a time.
#[inline(always)]
fn array_with(
    reader: impl Reader,
    text: &[u8],
    start: usize,
    shape: &mut [usize],
    data: &mut Vec<f32>,
    rows: Rows,
) -> Option<usize> {
    let rank = shape.len();
    if rank == 0 || rank > MAX_RANK || text.get(start) != Some(&b'[') {
        return None;
    }
    let share = match rows {
        Rows::Unsized => None,
        Rows::Counted(rows) => Some((text.len() - start) / rows.max(1)),
        Rows::Uncounted => Some(text.len() - start),
    };
    if let Some(share) = share.filter(|_| data.is_empty()) {
        data.reserve((share / 2 + 1).min(FIRST_ROW_VALUES));
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
        let mut before_run = 0;
        loop {
            if before_run == 0 {
                if let Some(next) = reader.run(text, at, data) {
                    at = next;
                    continue;
                }
                before_run = NUMBERS_BETWEEN_RUNS - 1;
            } else {
                before_run -= 1;
            }
            // Whitespace after a separator is looked for only where no number starts: most
            // writers put one space (`, `, taken with the comma) or none.
            let (value, next, comma) = match reader.number(text, at) {
                Some(read) => read,
                None => number_after_whitespace(text, at)?,
            };
            data.push(value);
            // `, `, as Python and most writers separate numbers, seen as the number was read.
            if comma {
                at = next + 2;
                continue;
            }
            at = skip_whitespace(text, next);
            match text.get(at) {
                Some(b',') => at += 1,
                Some(b']') => break,
                _ => return None,
            }
        }
        at += 1;
        if row_start == 0
            && let Rows::Counted(rows) = rows
        {
            // The first row tells the length of every other: size the buffer once, within
            // what the text could hold (two bytes per number at least), with the room a run
            // of numbers may write past the last.
            let len = data.len();
            let wanted = rows.saturating_mul(len).min(text.len() / 2 + 1);
            data.reserve(wanted.saturating_sub(len) + RUN_SPARE_VALUES);
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

/// The number after the whitespace at `at`, where a number was looked for and none started:
/// apart from the usual path's, so that its code is not inlined twice into [`array`]'s loop.
/// Read by [`Baseline`] whatever the processor has: this function is not compiled for AVX2,
/// so [`super::number::Avx2`]'s steps could not be inlined into it, and calls to each would
/// cost more than they save.
#[cold]
#[inline(never)]
fn number_after_whitespace(text: &[u8], at: usize) -> Option<(f32, usize, bool)> {
    Baseline.number(text, skip_whitespace(text, at))
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
pub fn skip_whitespace(text: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = text.get(at) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tensor at the start of `text`, read after its span is found, and the same read
    /// from its bracket with the same end.
    fn parse(text: &str) -> Option<Tensor> {
        let bytes = text.as_bytes();
        let spanned = span(bytes, 0).and_then(|s| Some((read(bytes, &s)?, s.range.end)));
        assert_eq!(read_at(bytes, 0), spanned, "{text:?}");
        spanned.map(|(tensor, _)| tensor)
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
            "[[1, , 2]]",
            "[[1, ]]",
            "[[1, 2], ]",
            "[[\"1\"]]",
            "[[[[1]]]]",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn a_comma_and_a_space_separate_numbers_as_any_comma_and_whitespace_do() {
        let expected = parse("[[1.5,2.25],[-3,0.125]]").unwrap();
        // Written long, so that each number but the last has the bytes after it that the
        // usual form's loads need, and is read by it.
        let long = |text: &str| {
            text.replace("1.5", "1.5000000000000000000")
                .replace("2.25", "2.2500000000000000000")
                .replace("-3", "-3.0000000000000000000")
                .replace("0.125", "0.12500000000000000000")
        };
        for text in [
            "[[1.5, 2.25], [-3, 0.125]]",
            "[[1.5,  2.25], [-3, \n0.125]]",
            "[[1.5 , 2.25], [-3,\t 0.125]]",
            "[[1.5, \r\n 2.25], [-3 ,0.125 ]]",
        ] {
            assert_eq!(parse(text).as_ref(), Some(&expected), "{text:?}");
            let text = long(text);
            assert_eq!(parse(&text).as_ref(), Some(&expected), "{text:?}");
        }
        // A `, ` with no number after it, taken by the usual form's step, is refused too.
        for text in ["[[1.5, ], [2.25, -3]]", "[[1.5, , 2.25], [-3, 0.125]]"] {
            let text = long(text);
            assert_eq!(parse(&text), None, "{text:?}");
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
    fn a_tensor_read_from_its_bracket_ends_at_its_own_closing_bracket() {
        let text = b"[[1, 2], [3, 4], [5, 6]], \"b\": [[7]]";
        let (first, end) = read_at(text, 0).unwrap();
        assert_eq!((first.shape.as_slice(), end), ([3, 2].as_slice(), 24));
        assert_eq!(first.data, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let (second, end) = read_at(text, 31).unwrap();
        assert_eq!(
            (second.shape.as_slice(), end),
            ([1, 1].as_slice(), text.len())
        );
        assert_eq!(read_at(text, 1).map(|(t, _)| t.shape), Some(vec![2]));
        assert_eq!(read_at(text, 2), None);
        assert_eq!(read_at(b"[[1, 2], [3, 4]", 0), None);
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

    /// The record of `text`'s brackets, made from pieces cut at `cuts` (positions, in any
    /// order, taken modulo its length).
    fn recorded_in_pieces(text: &[u8], cuts: &[usize]) -> Brackets {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
        cuts.sort_unstable();
        let mut brackets = Brackets::default();
        let mut from = 0;
        for cut in cuts.into_iter().chain([text.len()]) {
            brackets.record(&text[from..cut]);
            from = cut;
        }
        brackets
    }

    #[test]
    fn spans_found_from_recorded_brackets_are_those_found_in_the_text() {
        let text = b"{\"a\": [[1, 2], [3, 4]], \"b\": [ [[5]] , [[6]]], \"c\": [[1], [2], \"x]\"";
        let record = recorded_in_pieces(text, &[3, 9, 10, 40]);
        let brackets = record.recorded(text.len()).unwrap();
        for start in 0..text.len() {
            assert_eq!(
                span_recorded(text, start, brackets),
                span(text, start),
                "from {start}"
            );
        }
        assert!(span(text, 7).is_some());
        // A record that is not of the whole text is not used.
        let mut part = Brackets::default();
        part.record(&text[..20]);
        assert!(part.recorded(text.len()).is_none());
        // Positions that hold no bracket (recorded from another text) find no span.
        let other = recorded_in_pieces(b"  [[1]]", &[]);
        let other = other.recorded(7).unwrap();
        assert_eq!(span_recorded(b"[[1]]  ", 0, other), None);
    }

    /// Run with more cases by `PROPTEST_CASES=3000 cargo test properties` (CI does).
    mod properties {
        use super::*;

        proptest::proptest! {
            #[test]
            fn any_text_cut_anywhere_gives_the_spans_found_in_it(
                text in proptest::collection::vec(
                    proptest::sample::select(b"[[]],1 \"".to_vec()), 0..200),
                cuts in proptest::collection::vec(0usize..1000, 0..6),
            ) {
                let record = recorded_in_pieces(&text, &cuts);
                let brackets = record.recorded(text.len());
                proptest::prop_assert!(brackets.is_some());
                let brackets = brackets.unwrap();
                for start in 0..text.len() {
                    let recorded = span_recorded(&text, start, brackets);
                    proptest::prop_assert_eq!(recorded, span(&text, start));
                }
            }
        }

        /// A tensor text of `rows` outer rows (rank 2: `columns` numbers; rank 3: two such
        /// rows), padded with spaces after each outer comma to [`PARALLEL_BYTES`] in all, so
        /// that [`read_parallel`] cuts it into pieces; and where each row's text starts.
        fn large(rank: usize, rows: usize, columns: usize, seed: u32) -> (Vec<u8>, Vec<usize>) {
            let number = |k: usize| {
                let bits = (seed as usize ^ k.wrapping_mul(0x9e37_79b9)) as u32;
                let value = f32::from_bits(bits & 0xbfff_ffff);
                if value.is_finite() {
                    format!("{value:?}")
                } else {
                    format!("{k}")
                }
            };
            let inner = |row: usize| {
                let numbers: Vec<String> = (0..columns).map(|j| number(row * 31 + j)).collect();
                format!("[{}]", numbers.join(","))
            };
            let pad = " ".repeat(PARALLEL_BYTES / (rows - 1) + 1);
            let (mut text, mut starts) = (b"[".to_vec(), Vec::new());
            for row in 0..rows {
                if row > 0 {
                    text.push(b',');
                    text.extend_from_slice(pad.as_bytes());
                }
                starts.push(text.len());
                let written = match rank {
                    2 => inner(row),
                    _ => format!("[{},{}]", inner(2 * row), inner(2 * row + 1)),
                };
                text.extend_from_slice(written.as_bytes());
            }
            text.push(b']');
            (text, starts)
        }

        proptest::proptest! {
            // Each case reads a megabyte three times: fewer cases than the others.
            #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]
            #[test]
            fn a_large_tensor_read_in_pieces_is_its_one_read_edited_anywhere_near_a_row(
                rank in 2usize..=3,
                rows in 2usize..120,
                columns in 1usize..6,
                seed in proptest::prelude::any::<u32>(),
                edits in proptest::collection::vec(
                    (proptest::prelude::any::<proptest::sample::Index>(), 0usize..24, 0u8..3,
                     proptest::sample::select(b"[],-.e1 x".to_vec())),
                    0..3),
            ) {
                let (mut text, starts) = large(rank, rows, columns, seed);
                proptest::prop_assert!(text.len() >= PARALLEL_BYTES);
                for (row, offset, kind, byte) in edits {
                    // Around the start of a row: its brackets, the comma and padding before.
                    let at = (starts[row.index(starts.len())] + offset)
                        .saturating_sub(4)
                        .min(text.len() - 1);
                    match kind {
                        0 => {
                            text.remove(at);
                        }
                        1 => text[at] = byte,
                        _ => text.insert(at, byte),
                    }
                }
                let Some(found) = span(&text, 0) else {
                    return Ok(());
                };
                let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
                let pieces = pool.install(|| read_parallel(&text, &found));
                proptest::prop_assert_eq!(pieces, read(&text, &found));
            }
        }
    }
}
