//! One JSON number read from its text and rounded once, straight from its digits, to the
//! nearest `f32`: what the tensor text reader ([`super::text`]) reads every value with, one
//! at a time or, where the processor can, several of the usual form at once.
//!
//! The whole JSON number grammar is held to (`01`, `+1`, `.5`, `1.`, `-`, `1e`, `NaN`,
//! `Infinity` refused). Rounding is exact: a fast path for the usual numbers, and the
//! standard library's correctly rounded parser for the rest (see [`number`]).
//!
//! The reader reads each number through a [`Reader`]: where the processor has AVX2, [`Avx2`]
//! reads the usual form (`-0.12345699965953827`, up to 19 digits after the point) with it
//! and leaves the rest to [`number`]; where it also has AVX-512 with VBMI2, [`Avx512`] first
//! reads runs of up to four numbers of the usual form that each end at a `,` at once, and the
//! rest as [`Avx2`] does; elsewhere [`Baseline`] is [`number`] alone.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2;

#[cfg(target_arch = "x86_64")]
pub(super) use avx2::Avx2;
#[cfg(target_arch = "x86_64")]
pub(super) use avx512::Avx512;

/// Values a run ([`Reader::run`]) may write to a buffer past those it reads: it pushes a
/// value for each of its lanes and cuts off those it did not read. A buffer sized for all of
/// a tensor's values with this many to spare is never regrown by a run.
pub(super) const RUN_SPARE_VALUES: usize = 3;

/// How the tensor reader reads each number: with [`number`] alone ([`Baseline`]), or, where
/// the processor has AVX2, its usual form first with AVX2 ([`Avx2`]; the reader's loop is then
/// compiled for AVX2 too), and where it has AVX-512 with VBMI2 runs of them at once
/// ([`Avx512`], [`Reader::run`]). Each gives every number the same value and end; whether `, `
/// follows is a hint, as [`number`]'s is: `true` only where it does, but not always there.
pub(super) trait Reader: Copy {
    /// [`number`]'s value and end for the number at `text[start]`, and the hint of a `, `.
    fn number(self, text: &[u8], start: usize) -> Option<(f32, usize, bool)>;

    /// A run of numbers at `text[start]`, each followed by a `,` (and a space or not), read
    /// at once where the reader can ([`Avx512::run`]): their values pushed to `data`, and
    /// the position after the last one's separator. `None`, pushing nothing, where it cannot
    /// (every reader but [`Avx512`]); the numbers are then read one at a time.
    #[inline(always)]
    fn run(self, _text: &[u8], _start: usize, _data: &mut Vec<f32>) -> Option<usize> {
        None
    }
}

/// [`number`], on any processor.
#[derive(Debug, Clone, Copy)]
pub(super) struct Baseline;

impl Reader for Baseline {
    #[inline(always)]
    fn number(self, text: &[u8], start: usize) -> Option<(f32, usize, bool)> {
        number(text, start)
    }
}

#[cfg(target_arch = "x86_64")]
impl Reader for Avx2 {
    #[inline(always)]
    fn number(self, text: &[u8], start: usize) -> Option<(f32, usize, bool)> {
        match self.usual(text, start) {
            Some(read) => Some(read),
            None => number_apart(text, start),
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Reader for Avx512 {
    #[inline(always)]
    fn number(self, text: &[u8], start: usize) -> Option<(f32, usize, bool)> {
        self.avx2().number(text, start)
    }

    #[inline(always)]
    fn run(self, text: &[u8], start: usize, data: &mut Vec<f32>) -> Option<usize> {
        Avx512::run(self, text, start, data)
    }
}

/// `[0, 32)` all ones and `[32, 64)` zero: from offset `32 - n`, the mask that keeps the
/// first `n` bytes (`n` at most 32) of those loaded from it (16 by the SSE2 path).
#[cfg(target_arch = "x86_64")]
const KEEP_FIRST: [u8; 64] = keep_first(0xFF);

/// [`KEEP_FIRST`] keeping only the low four bits of the first `n` bytes: an ASCII digit's
/// value.
#[cfg(target_arch = "x86_64")]
const KEEP_FIRST_VALUES: [u8; 64] = keep_first(0x0F);

/// `kept` in `[0, 32)` and zero in `[32, 64)`.
#[cfg(target_arch = "x86_64")]
const fn keep_first(kept: u8) -> [u8; 64] {
    let mut bytes = [0u8; 64];
    let mut at = 0;
    while at < 32 {
        bytes[at] = kept;
        at += 1;
    }
    bytes
}

/// Powers of ten `10^0 ..= 10^22` in `f64`: exact.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Powers of ten `10^0 ..= 10^-32` in `f64`: each the nearest `f64`, within half a step.
/// [`fast_f32`] takes them to `10^-22`; [`usual`] takes the halves of those from `10^-16` to
/// `10^-32` ([`HALF_POWERS_PAST_16`]).
const INVERSE_POWERS_OF_TEN: [f64; 33] = [
    1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14,
    1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22, 1e-23, 1e-24, 1e-25, 1e-26, 1e-27,
    1e-28, 1e-29, 1e-30, 1e-31, 1e-32,
];

/// `10^-(16 + zeros) / 2` for [`usual`]'s `zeros` (0 to 16: the point's leading zeros it
/// skips), the halves of [`INVERSE_POWERS_OF_TEN`]'s (exact).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
const HALF_POWERS_PAST_16: [f64; 17] = {
    let mut halves = [0.0; 17];
    let mut zeros = 0;
    while zeros <= 16 {
        halves[zeros] = INVERSE_POWERS_OF_TEN[16 + zeros] * 0.5;
        zeros += 1;
    }
    halves
};

/// Significant digits a `u64` always holds.
const MAX_DIGITS: usize = 19;

/// The JSON number at `text[at]`, rounded to the nearest `f32`, the position after it, and
/// whether a `,` and a space follow it (as most writers separate numbers; seen only where
/// [`usual`] read the number, from the bytes it loaded anyway, and `false` elsewhere, so a
/// reader that steps to the next number on it must still handle the other separators);
/// `None` if there is no valid JSON number there or it rounds past the `f32` range.
///
/// A number of the form most clients write (`-0.12345699965953827`: one digit, a point, up
/// to 31 more) is read by [`usual`], 16 digits at a time; any other, or one too near the
/// text's end for its loads, digit by digit ([`digit_by_digit`]), where, when there are at
/// most 19 significant digits and the decimal exponent is within ±22, [`fast_f32`] rounds
/// them. Either way the rounding is left to the standard library's correctly rounded `f32`
/// parser when the value lies too near the midpoint between two `f32` values (or outside
/// the normal `f32` range), as it is for all other numbers.
#[inline(always)]
pub(super) fn number(text: &[u8], start: usize) -> Option<(f32, usize, bool)> {
    match usual(text, start) {
        Some(read) => Some(read),
        None => {
            let (value, end) = digit_by_digit(text, start)?;
            Some((value, end, false))
        }
    }
}

/// [`number`], not inlined: for the few numbers [`Avx2::usual`] leaves, so that the loop it is
/// inlined into does not hold the other paths' code too.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn number_apart(text: &[u8], start: usize) -> Option<(f32, usize, bool)> {
    number(text, start)
}

/// [`number`] for every form of JSON number: its parts read in turn, eight digits at a time
/// into a `u64` where there are eight.
#[inline]
fn digit_by_digit(text: &[u8], start: usize) -> Option<(f32, usize)> {
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
    let value = with_sign(value, negative);
    value.is_finite().then_some((value, at))
}

/// Bytes of text [`usual`] loads at once: from the number's start a sign, a digit, the point,
/// two 16-byte runs of what follows and one more byte (the two after 31 digits).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
const BLOCK: usize = 36;

/// Digits after the point that [`usual`] sees: two 16-byte runs. A number with as many may go
/// on past them, so it is left to [`digit_by_digit`].
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
const SEEN_DIGITS: usize = 32;

/// The number at `text[start]` when it has the form most clients write (`-0.12345699965953827`,
/// `1.5`, `0.0012345679569989443`: a sign or not, one digit, a point, 1 to 31 digits, no
/// exponent) and its value rounds surely (see below), with the position after it and whether
/// `, ` follows; `None` for every other number, which [`number`] reads digit by digit.
///
/// The digits are counted and converted without a branch on any of them, 16 at a time in
/// SSE2 registers (every x86-64 processor has them): they are counted from a mask of the 32
/// bytes after the point, and the first 16 significant ones (those after the point's leading
/// zeros, when the digit before the point is `0`) read as one integer, the bytes past the
/// number masked to zero. What branches is the form (sign and point, how many digits against
/// the limit, an exponent after them) and the check below, which numbers written alike pass
/// alike; how many leading zeros there are only moves where the digits are read from.
///
/// With the digit before the point, that is 17 significant digits at most when it is not `0`
/// and 16 otherwise; more (Python writes 17 after the point for most `f32` values) are
/// dropped and half a unit of the last digit kept stands for them, so the integer is within
/// half a unit of the number's exact value. When digits were dropped the integer is at least
/// 10¹⁵, so that half unit is at most 5·10⁻¹⁶ of the value: about 4.5 `f64` steps. With
/// the three steps of the product itself, the `f64` is within [`MIDPOINT_MARGIN`] steps of
/// the value, and rounding it to `f32` is right unless it lies that near a midpoint between
/// two `f32` values; those rare numbers are read digit by digit. (With at most 31 digits
/// seen, dropping one always leaves a kept integer of at least 10¹⁵; the check on it keeps
/// the bound should that limit change.)
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn usual(text: &[u8], start: usize) -> Option<(f32, usize, bool)> {
    use sse2::Sixteen;
    let block: &[u8; BLOCK] = text.get(start..)?.first_chunk()?;
    let (negative, point, first) = usual_start(block)?;
    // Digits after the point: the first byte that is not one ends them.
    let (near_values, near) = Sixteen::load(block, point + 1)?.digits();
    let (_, far) = Sixteen::load(block, point + 17)?.digits();
    let count = (!(near | far << 16)).trailing_zeros() as usize;
    if count == 0 || count >= SEEN_DIGITS {
        return None;
    }
    let end = point + 1 + count;
    let comma = u16::from_le_bytes([block[end], block[end + 1]]) == u16::from_le_bytes(*b", ");
    if matches!(block[end], b'e' | b'E') {
        return None;
    }
    // The first 16 significant digits after the point: those after its leading zeros when
    // there is no other digit before them, read from a window starting at the first.
    // (Counted either way and kept or not by a mask: a branch on the digit before the point
    // would be mispredicted often.)
    let leading = (!near_values.zeros() | 1 << 16).trailing_zeros() as usize;
    // At most 16 (`leading` counts within the first 16 bytes; the bound is written out so
    // that the load and the table below need no other check).
    let zeros = (leading & usize::from(first == 0).wrapping_neg())
        .min(count)
        .min(16);
    let significant = count - zeros;
    // Loaded again whether or not there are zeros to skip (at most 16, so within the block):
    // a branch on it would be mispredicted where values of both kinds are mixed.
    let window = Sixteen::load(block, point + 1 + zeros)?.digits().0;
    let mantissa = u64::from(first) * TEN_TO_16 + window.first(significant.min(16))?.value();
    let dropped = significant > 16;
    if dropped && mantissa < TEN_TO_16 / 10 {
        return None;
    }
    // Twice the integer, and one for the half of a dropped digit: an exact `i64`.
    let twice = (2 * mantissa + u64::from(dropped)) as i64;
    // Halving is exact, so halving the power first (in the table) is the same.
    let half_power = HALF_POWERS_PAST_16[zeros];
    // Zero, exactly (no branch for it: no bit of it lies near a midpoint), or at least 10⁻³¹
    // (a non-zero digit within 31 places) and below 10: a normal `f32`.
    let value = round_surely_normal(twice as f64 * half_power)?;
    Some((with_sign(value, negative), start + end, comma))
}

/// How a number of the usual form starts at `block[0]` (a sign or not, a digit, the point):
/// whether it is negative, where its point is, and the digit before the point's value;
/// `None` if it does not start so. For [`usual`] and [`Avx2::usual`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn usual_start(block: &[u8]) -> Option<(bool, usize, u8)> {
    let negative = *block.first()? == b'-';
    let point = 1 + usize::from(negative);
    let first = block.get(point - 1)?.wrapping_sub(b'0');
    (first < 10 && *block.get(point)? == b'.').then_some((negative, point, first))
}

/// `value` (not negative), negative if `negative`: its sign bit set without a branch, which
/// random signs would mispredict half the time.
#[inline(always)]
fn with_sign(value: f32, negative: bool) -> f32 {
    f32::from_bits(value.to_bits() | u32::from(negative) << 31)
}

/// Every x86-64 processor has SSE2; elsewhere every number is read digit by digit.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn usual(_text: &[u8], _start: usize) -> Option<(f32, usize, bool)> {
    None
}

/// 10¹⁶: the place of the digit before the point among [`usual`]'s 17.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
const TEN_TO_16: u64 = 10_000_000_000_000_000;

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
/// within three steps of the true value (a multiplication, not a division: its result is
/// waited for at once). Rounding it to `f32` is then right unless it lies within
/// [`MIDPOINT_MARGIN`] steps of a midpoint between two `f32` values.
#[inline(always)]
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
    round_surely(mantissa * power)
}

/// `near`, an `f64` within eight steps of a number's value (three for [`fast_f32`]'s, 7.5
/// for [`usual`]'s, four for [`Avx2::usual`]'s, which calls [`round_surely_normal`]), rounded to `f32` when that is certain: `None` outside the normal `f32`
/// range, or within [`MIDPOINT_MARGIN`] steps of a midpoint between two `f32` values.
#[inline(always)]
fn round_surely(near: f64) -> Option<f32> {
    let biased = (near.to_bits() >> 52) & 0x7FF;
    if !(1023 - 126..=1023 + 127).contains(&biased) {
        return None;
    }
    round_surely_normal(near)
}

/// [`round_surely`] for an `f64` known to lie in the normal `f32` range, or zero.
#[inline(always)]
fn round_surely_normal(near: f64) -> Option<f32> {
    // The 29 bits f64 holds below f32's precision, against their half.
    let below = near.to_bits() & ((1 << 29) - 1);
    if ((1 << 28) - MIDPOINT_MARGIN..=(1 << 28) + MIDPOINT_MARGIN).contains(&below) {
        return None;
    }
    Some(near as f32)
}

/// `f64` steps from a midpoint between two `f32` values within which [`round_surely`] leaves
/// a number to the full algorithm: twice the largest error it is given, eight steps.
const MIDPOINT_MARGIN: u64 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Option<f32> {
        let (value, end, _) = number(text.as_bytes(), 0)?;
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

    /// A number written after 17 bytes that are digits and separators, followed by
    /// `follows` and enough room for [`usual`]'s loads (which reach past its end).
    fn placed(number: &str, follows: &str) -> (String, usize) {
        let before = "[9.87654321, 98, ";
        let text = format!("{before}{number}{follows}, 0.5, 0.25, 0.125, 0.0625, 1.5]]");
        (text, before.len())
    }

    /// [`number`] and [`digit_by_digit`] read `text` at `start` to the same bits and end, and
    /// so does every [`Reader`] this processor has; where any says `, ` follows, it does.
    fn same_as_digit_by_digit(text: &str, start: usize) -> Option<(f32, usize)> {
        let usual = number(text.as_bytes(), start).map(|(value, end, _)| (value, end));
        let by_digits = digit_by_digit(text.as_bytes(), start);
        let bits = |read: Option<(f32, usize)>| read.map(|(value, end)| (value.to_bits(), end));
        assert_eq!(bits(usual), bits(by_digits), "{text}");
        let mut reads = vec![
            number(text.as_bytes(), start),
            Baseline.number(text.as_bytes(), start),
        ];
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = Avx2::detected() {
            reads.push(avx2.number(text.as_bytes(), start));
            reads.extend(avx2.usual(text.as_bytes(), start).map(Some));
        }
        for read in reads {
            assert_eq!(
                bits(read.map(|(value, end, _)| (value, end))),
                bits(usual),
                "{text}"
            );
            if let Some((_, end, true)) = read {
                assert_eq!(text.get(end..end + 2), Some(", "), "{text}");
            }
        }
        usual
    }

    /// How many of `numbers`, each [`placed`] and followed by `, `, [`Avx2::usual`] reads
    /// itself (checking that it reads them as [`number`] does).
    #[cfg(target_arch = "x86_64")]
    fn read_by_avx2(numbers: &[String]) -> usize {
        let Some(avx2) = Avx2::detected() else {
            return 0;
        };
        numbers
            .iter()
            .filter(|number| {
                let (text, start) = placed(number, ", ");
                same_as_digit_by_digit(&text, start);
                avx2.usual(text.as_bytes(), start).is_some()
            })
            .count()
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_processor_running_the_tests_has_avx2_so_that_its_path_is_tested() {
        // `Avx2::usual` is taken only where the processor has AVX2, BMI1 and BMI2; the tests
        // here hold it to the other paths only when it is. Machines that run these tests
        // (every x86-64 server of the last decade) have them.
        assert!(Avx2::detected().is_some());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_path_reads_the_usual_form_up_to_19_digits_after_the_point_itself() {
        let mut seed = 0x51_7CC1_B727_220Au64;
        let mut numbers = Vec::new();
        for first in ['0', '1', '9'] {
            for count in 1..=19 {
                for sign in ["", "-"] {
                    // Random digits, after none, some or all but one of them zeros (each
                    // digit then weighs most in its place).
                    for zeros in [0, count / 2, count - 1] {
                        let fraction: String = (0..count)
                            .map(|at| {
                                seed ^= seed << 13;
                                seed ^= seed >> 7;
                                seed ^= seed << 17;
                                if at < zeros {
                                    '0'
                                } else {
                                    char::from(b'1' + (seed % 9) as u8)
                                }
                            })
                            .collect();
                        numbers.push(format!("{sign}{first}.{fraction}"));
                    }
                }
            }
        }
        // All (a number within the margin of a midpoint would be left to the others, but
        // none of these is); zeros, nines and a last 3 at every count.
        assert_eq!(read_by_avx2(&numbers), numbers.len());
        let extremes: Vec<String> = (1..=19)
            .flat_map(|count| {
                [
                    format!("0.{}", "0".repeat(count)),
                    format!("0.{}3", "0".repeat(count - 1)),
                    format!("-0.{}", "9".repeat(count)),
                    format!("-9.{}", "9".repeat(count)),
                ]
            })
            .collect();
        assert_eq!(read_by_avx2(&extremes), extremes.len());
        // More digits, an exponent, no point, no digit before it: left to the others.
        let others = [
            "0.12345678901234567890",
            "1.12345678901234567890",
            "0.00012345678901234567",
            "1.5e3",
            "15",
            "-.5",
            "12.5",
        ]
        .map(String::from);
        assert_eq!(read_by_avx2(&others), 0);
        // With exactly its 35 bytes left, and with fewer.
        let Some(avx2) = Avx2::detected() else {
            return;
        };
        let text = "0.5, 0.25, 0.125, 0.0625, 0.03125]]";
        assert_eq!(text.len(), 35);
        same_as_digit_by_digit(text, 0).expect(text);
        assert!(avx2.usual(text.as_bytes(), 0).is_some());
        assert!(avx2.usual(text.as_bytes(), 5).is_none());
        same_as_digit_by_digit(text, 5).expect(text);
    }

    #[test]
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn the_usual_form_reads_as_digit_by_digit_does_for_every_count_of_digits() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut usual_read = 0;
        for count in 0..=24 {
            for first in 0..=9 {
                for sign in ["", "-"] {
                    for follows in [",", "]", " ", "\n", "e5", "E-3", ".5", "0"] {
                        // Digits from a generator, and the two extremes.
                        for kind in 0..3 {
                            let fraction: String = (0..count)
                                .map(|_| {
                                    seed ^= seed << 13;
                                    seed ^= seed >> 7;
                                    seed ^= seed << 17;
                                    match kind {
                                        0 => char::from(b'0' + (seed % 10) as u8),
                                        1 => '0',
                                        _ => '9',
                                    }
                                })
                                .collect();
                            let number = format!("{sign}{first}.{fraction}");
                            let (text, start) = placed(&number, follows);
                            let read = same_as_digit_by_digit(&text, start);
                            if count > 0 && !follows.starts_with(['e', 'E', '0']) {
                                let expected: f32 = number.parse().unwrap();
                                let (value, end) = read.expect(&text);
                                assert_eq!(value.to_bits(), expected.to_bits(), "{text}");
                                assert_eq!(end, start + number.len(), "{text}");
                                if count <= 24 {
                                    usual_read +=
                                        usize::from(usual(text.as_bytes(), start).is_some());
                                }
                            }
                        }
                    }
                }
            }
        }
        // The fast path itself read them (all but the few near a midpoint), not the fallback.
        assert!(usual_read > 24 * 10 * 2 * 5 * 3 * 9 / 10, "{usual_read}");
    }

    #[test]
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn shortest_f64_texts_of_small_values_are_read_by_the_usual_path_up_to_31_digits() {
        // Shortest f64 texts of small float32 values, as Python writes normalised embeddings,
        // and zeros after the point up to the most the path sees.
        for number in [
            "0.0012345679569989443",
            "-0.00012345678987912834",
            "0.0009876539697870612",
            "0.0000000000000001234567890123456",
            "0.0000000000000000012345678901234",
            "-0.0000000000000000000000000000001",
            "0.0000000000000000000000000000000",
        ] {
            let (text, start) = placed(number, ", ");
            let (value, end) = same_as_digit_by_digit(&text, start).expect(number);
            assert_eq!(
                value.to_bits(),
                number.parse::<f32>().unwrap().to_bits(),
                "{number}"
            );
            assert_eq!(end, start + number.len());
            let after_point = number.len() - number.find('.').unwrap() - 1;
            if after_point <= 31 {
                assert!(usual(text.as_bytes(), start).is_some(), "{number}");
            }
        }
        // 32 digits after the point may go on past what the path sees.
        let (text, start) = placed("0.12345678901234567890123456789012", ", ");
        assert!(usual(text.as_bytes(), start).is_none());
        same_as_digit_by_digit(&text, start).expect("32 digits");
    }

    #[test]
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn zeros_read_by_the_usual_path_are_zeros_with_their_sign() {
        for number in [
            "0.0",
            "-0.0",
            "0.0000000000000000",
            "-0.00000000000000000000",
            "-0.0000000000000000000000000000000",
        ] {
            let (text, start) = placed(number, ", ");
            let (value, end, comma) = usual(text.as_bytes(), start).expect(number);
            assert_eq!(value, 0.0, "{number}");
            assert_eq!(
                value.is_sign_negative(),
                number.starts_with('-'),
                "{number}"
            );
            assert_eq!((end, comma), (start + number.len(), true), "{number}");
        }
    }

    #[test]
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn a_comma_and_a_space_are_told_to_follow_only_when_both_do() {
        // `placed` follows each with `, 0.5`.
        for number in [
            "-0.12345699965953827",
            "1.5",
            "0.1234567890123456789012345678901",
        ] {
            for (follows, told) in [("", true), (",", false), (" ", false), ("\n", false)] {
                let (text, start) = placed(number, follows);
                let (value, end, comma) = number_at(&text, start);
                assert_eq!(comma, told, "{text}");
                assert_eq!(end, start + number.len(), "{text}");
                assert_eq!(value, number.parse::<f32>().unwrap(), "{text}");
            }
        }
        // Read digit by digit, a number tells nothing of what follows.
        let (text, start) = placed("1e-3", "");
        assert_eq!(number_at(&text, start), (1e-3, start + 4, false));
    }

    fn number_at(text: &str, start: usize) -> (f32, usize, bool) {
        number(text.as_bytes(), start).unwrap_or_else(|| panic!("{text} at {start}"))
    }

    #[test]
    fn numbers_too_near_the_texts_ends_for_the_usual_loads_are_read_digit_by_digit() {
        for text in ["0.5", "-0.25, 1.5]", "[0.125, 0.5, 0.75, 0.25, 0.5]"] {
            for start in 0..text.len() {
                if text[start..].starts_with(['-', '0', '1']) {
                    assert!(usual(text.as_bytes(), start).is_none(), "{text} at {start}");
                    same_as_digit_by_digit(text, start);
                }
            }
        }
        assert_eq!(one("0.5"), Some(0.5));
    }

    #[test]
    fn every_9973rd_float_printed_as_rust_debug_prints_it_as_f32_and_as_f64_reads_exactly() {
        for bits in (0..=u32::MAX).step_by(9973) {
            let value = f32::from_bits(bits);
            if !value.is_finite() {
                continue;
            }
            for printed in [format!("{value:?}"), format!("{:?}", f64::from(value))] {
                let (text, start) = placed(&printed, ", ");
                let (read, end) = same_as_digit_by_digit(&text, start).expect(&text);
                let expected: f32 = printed.parse().unwrap();
                assert_eq!(read.to_bits(), expected.to_bits(), "{printed}");
                assert_eq!(end, start + printed.len(), "{printed}");
            }
        }
    }

    #[test]
    fn numbers_a_few_f64_steps_from_a_midpoint_between_two_f32_values_round_to_the_nearest() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let (low, high) = (0.001f32.to_bits(), 10.0f32.to_bits());
        for _ in 0..4000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // A value in [0.001, 10), its upper neighbour and their midpoint (exact in f64).
            let value = f32::from_bits(low + (seed % u64::from(high - low)) as u32);
            let next = f32::from_bits(value.to_bits() + 1);
            let midpoint = (f64::from(value) + f64::from(next)) / 2.0;
            for steps in [-6.0, -3.0, -1.0, 0.0, 1.0, 3.0, 6.0] {
                let near = midpoint * (1.0 + steps * f64::EPSILON);
                for places in [17, 20, 24, 30] {
                    let printed = format!("{near:.places$}");
                    let (text, start) = placed(&printed, ", ");
                    // Every reader of this processor: the AVX2 path reads 17 places.
                    let (read, end) = same_as_digit_by_digit(&text, start).expect(&printed);
                    let exact: f32 = printed.parse().unwrap();
                    assert_eq!(read.to_bits(), exact.to_bits(), "{printed}");
                    assert_eq!(end, start + printed.len(), "{printed}");
                }
            }
        }
    }

    #[test]
    fn what_json_does_not_allow_is_refused() {
        for text in [
            "01", "+1", ".5", "1.", "-", "1e", "1e+", "NaN", "Infinity", "-.5", "0x1", "1e39", "",
        ] {
            assert_eq!(one(text), None, "{text}");
        }
    }
}
