//! Runs of numbers of the usual form (`-0.12345699965953827, `) read with AVX-512, up to four
//! at once, where the processor has it: [`Avx512::run`], which the tensor reader's loop tries
//! at the start of each row and after each run, and after a number it read alone otherwise
//! only every few numbers ([`super::super::text`]).
//!
//! One 64-byte block is classified at once (digits, `,`, ` `, `-`, `.`), and every number in
//! it that ends at a `,` is checked against the usual form with a few operations on those
//! masks (two numbers as Python writes float32 values fit a block, four of the shortest
//! ones). Their digits are then gathered into a 128-bit lane each (AVX-512 VBMI's byte
//! permutes, their positions listed by VBMI2's byte compress) and read side by side. Where
//! the next run starts is known from the commas alone, so no block waits for the one before
//! it to be read: that wait is what bounds reading one number at a time.
//!
//! AVX-512 (its foundation, byte, vector-length, doubleword and VBMI/VBMI2 instructions) and
//! BMI2 are not part of x86-64's baseline, so an [`Avx512`] is only made where
//! `is_x86_feature_detected!` found them all: holding one is what makes the intrinsics here
//! sound to call, and the tensor reader's loop that calls them is compiled for these features
//! ([`super::super::text`]). None of them reads memory through a pointer: registers are filled
//! from arrays with `bytemuck`.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m128i, __m256i, __m512i, _mm_cmpeq_epi32_mask, _mm_mask_xor_epi32, _mm_set1_epi32,
    _mm256_add_pd, _mm256_cvtepu64_pd, _mm256_cvtpd_ps, _mm256_maskz_mov_pd, _mm256_mul_pd,
    _mm256_set1_pd, _mm256_sub_pd, _mm512_add_epi8, _mm512_add_epi64, _mm512_and_si512,
    _mm512_bsrli_epi128, _mm512_castsi512_si256, _mm512_cmpeq_epi8_mask, _mm512_cmpgt_epu8_mask,
    _mm512_cmplt_epu8_mask, _mm512_madd_epi16, _mm512_maddubs_epi16, _mm512_maskz_compress_epi8,
    _mm512_maskz_compress_epi64, _mm512_maskz_permutexvar_epi8, _mm512_mul_epu32,
    _mm512_permutexvar_epi8, _mm512_set1_epi8, _mm512_set1_epi64, _mm512_srli_epi64,
    _mm512_sub_epi8, _pext_u64,
};

use bytemuck::cast;

use super::Avx2;

/// Proof that this processor has what [`Avx512::run`] uses (and [`Avx2`]'s features): made
/// only by [`Avx512::detected`].
#[derive(Debug, Clone, Copy)]
pub(in crate::tensor) struct Avx512(Avx2);

/// Numbers [`Avx512::run`] reads at most at once: one a 128-bit lane.
const LANES: usize = 4;

const _: () = assert!(LANES - 1 == super::RUN_SPARE_VALUES);

/// Bytes a block holds: one 512-bit register.
const BLOCK: usize = 64;

/// A block's worth of bytes, each lane's `lane` plus `step` times the lane's index: the
/// tables below.
const fn by_lane(lane: [u8; 16], step: u8) -> [u8; BLOCK] {
    let mut bytes = [0u8; BLOCK];
    let mut at = 0;
    while at < BLOCK {
        bytes[at] = lane[at % 16] + step * (at / 16) as u8;
        at += 1;
    }
    bytes
}

/// `0, 1, …, 15`.
const PLACES: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// `i` in byte `i`: what the positions of a mask's bits are compressed from.
const POSITIONS: [u8; BLOCK] = by_lane(PLACES, 16);

/// The lane of byte `i` (`i / 16`): the permute that copies byte `j` of a register into every
/// byte of lane `j`.
const LANE_OF_BYTE: [u8; BLOCK] = by_lane([0; 16], 1);

/// Byte `i`'s place in its lane (`i % 16`).
const PLACE_IN_LANE: [u8; BLOCK] = by_lane(PLACES, 0);

/// Where the digit a lane's byte holds is, from the number's first digit: the first digit
/// itself, then those after the point (`0, 2, 3, …, 16`).
const DIGIT_OFFSETS: [u8; BLOCK] =
    by_lane([0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], 0);

/// Weights `10, 1` of each pair of digits: `10a + b` in each 16-bit part.
const PAIR_WEIGHTS: [u8; BLOCK] =
    by_lane([10, 1, 10, 1, 10, 1, 10, 1, 10, 1, 10, 1, 10, 1, 10, 1], 0);

/// Weights `100, 1` of each pair of pairs: `100p + q` in each 32-bit part, as bytes (little
/// endian).
const FOUR_WEIGHTS: [u8; BLOCK] =
    by_lane([100, 0, 1, 0, 100, 0, 1, 0, 100, 0, 1, 0, 100, 0, 1, 0], 0);

/// Digits a lane holds: the one before the point and fifteen after it, read as one integer.
const LANE_DIGITS: u8 = 16;

/// 10⁻¹⁵, the nearest `f64`: what a lane's integer is scaled by.
const TEN_TO_MINUS_15: f64 = 1e-15;

/// 2⁻⁴⁹: a bound on the relative error of a lane's `f64`, which is rounded three times (the
/// integer to `f64`, 10⁻¹⁵, their product), each by at most 2⁻⁵³: eight steps of the `f64`
/// at least, so the interval it spans holds the value even after its ends are rounded.
const RELATIVE_ERROR: f64 = 1.0 / (1u64 << 49) as f64;

impl Avx512 {
    /// This processor's AVX-512 (`avx512f`, `avx512bw`, `avx512vl`, `avx512dq`,
    /// `avx512vbmi`, `avx512vbmi2`) and [`Avx2`]'s features, if it has them all.
    pub(in crate::tensor) fn detected() -> Option<Self> {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = Avx2::detected()?;
        (has!("avx512f")
            && has!("avx512bw")
            && has!("avx512vl")
            && has!("avx512dq")
            && has!("avx512vbmi")
            && has!("avx512vbmi2"))
        .then_some(Self(avx2))
    }

    /// [`Avx2`], which this processor has too: what reads the numbers [`Avx512::run`] leaves.
    #[inline(always)]
    pub(super) fn avx2(self) -> Avx2 {
        self.0
    }

    /// Reads the numbers of the usual form (a sign or not, one digit, a point, digits) at
    /// `text[start]` and after it that each end at a `,` followed by a space or not, up to
    /// [`LANES`] of them whose `,` is among the first 63 bytes from `start`: pushes their
    /// values to `data` and returns the position after the last one's `,` (and its space).
    /// `None`, pushing nothing, when the first number is not of that form or its `,` is not
    /// there, when the text is too near its end for the block to be loaded, or (never for
    /// valid text) when a number that did not round surely cannot be read again.
    ///
    /// What it reads, it reads to the values [`super::number`] does, rounded once to the
    /// nearest `f32`: the digit before the point and the first fifteen after it (more are left
    /// off, less than 10⁻¹⁵ of the value), as one integer, in an `f64` within
    /// [`RELATIVE_ERROR`] of it. A number whose interval of possible values (widened by
    /// 10⁻¹⁵ where digits were left off) does not round to one `f32` at both ends is read
    /// again alone ([`read_unsure`]).
    #[inline(always)]
    pub(super) fn run(self, text: &[u8], start: usize, data: &mut Vec<f32>) -> Option<usize> {
        let block: &[u8; BLOCK] = text.get(start..)?.first_chunk()?;
        let Run {
            values,
            count,
            unsure,
            starts,
            next,
        } = self.block(block)?;
        let len = data.len();
        // All four lanes' values in one store, those not read cut off (a buffer needs room
        // for `RUN_SPARE_VALUES` more): a copy of a variable length would cost more than the
        // run.
        data.extend_from_slice(&values);
        data.truncate(len + count);
        if unsure != 0 && read_unsure(text, start, starts, unsure, &mut data[len..]).is_none() {
            data.truncate(len);
            return None;
        }
        Some(start + next)
    }

    /// [`Avx512::run`] on one block.
    ///
    /// Where the block's next run starts is worked out from its masks alone, not from the
    /// values read: so the next block is classified while this one's digits are still being
    /// read, and a value that does not round surely is read again after ([`read_unsure`]).
    #[inline(always)]
    fn block(self, block: &[u8; BLOCK]) -> Option<Run> {
        // SAFETY: AVX-512 (F, BW, VL, DQ, VBMI, VBMI2) and BMI2 intrinsics on registers and
        // integers; `self` proves the processor has them.
        unsafe {
            let bytes: __m512i = cast(*block);
            let is = |byte: u8| _mm512_cmpeq_epi8_mask(bytes, _mm512_set1_epi8(byte as i8));
            let digit_bytes = _mm512_cmplt_epu8_mask(
                _mm512_sub_epi8(bytes, _mm512_set1_epi8(b'0' as i8)),
                _mm512_set1_epi8(10),
            );
            // A `,` in the last byte is left: whether a space follows is not known.
            let all_commas = is(b',') & !(1 << (BLOCK - 1));
            let spaces = is(b' ');
            let minuses = is(b'-');
            let points = is(b'.');

            // The first four commas: the ends of the numbers tried.
            let past_one = all_commas & all_commas.wrapping_sub(1);
            let past_two = past_one & past_one.wrapping_sub(1);
            let past_three = past_two & past_two.wrapping_sub(1);
            let commas = all_commas ^ (past_three & past_three.wrapping_sub(1));
            if commas == 0 {
                return None;
            }
            let last_comma = BLOCK as u32 - 1 - commas.leading_zeros();
            // Bits up to the last comma, and the space after each comma.
            let through_last = u64::MAX >> (BLOCK as u32 - 1 - last_comma);
            let after_commas = commas << 1;
            let spaced = after_commas & spaces;
            // Where each number starts: the block's start, and after each comma and its space.
            let starts = (1 | (after_commas & !spaces) | (spaced << 1)) & through_last;
            let negative = minuses & starts;
            let first_digits = (starts & !minuses) | (negative << 1);
            let expected_points = first_digits << 1;
            let allowed = digit_bytes | negative | expected_points | commas | spaced;
            // Anything else, a missing digit or point, or a point with no digit after it.
            let broken = (through_last & !allowed)
                | (first_digits & !digit_bytes)
                | (expected_points & !points)
                | ((expected_points << 1) & !digit_bytes);
            // Most blocks have nothing broken: then every number ends at one of `commas`, and
            // the next run starts after the last of them, worked out from `commas` alone so
            // that it does not wait for `broken` (the branch on it is predicted).
            let whole = if broken == 0 {
                commas
            } else {
                ending_before(commas, broken)?
            };
            let count = whole.count_ones() as usize;
            let last_read = (BLOCK as u32 - 1 - whole.leading_zeros()) as usize;
            let next = last_read + 1 + ((spaces >> (last_read + 1)) & 1) as usize;

            // Byte `j` of each: the position of number `j`'s digit before the point, and of
            // its comma; then how many digits it has, that one and those after the point.
            let positions: __m512i = cast(POSITIONS);
            let first_at = _mm512_maskz_compress_epi8(first_digits, positions);
            let comma_at = _mm512_maskz_compress_epi8(whole, positions);
            let digit_count =
                _mm512_sub_epi8(comma_at, _mm512_add_epi8(first_at, _mm512_set1_epi8(1)));
            let truncated =
                (_mm512_cmpgt_epu8_mask(digit_count, _mm512_set1_epi8(LANE_DIGITS as i8)) & 0xF)
                    as u8;

            // Lane `j`: number `j`'s digit before the point and those after it (the point
            // skipped), zero past its last.
            let lane_of_byte: __m512i = cast(LANE_OF_BYTE);
            let place: __m512i = cast(PLACE_IN_LANE);
            let lane_first = _mm512_permutexvar_epi8(lane_of_byte, first_at);
            let lane_count = _mm512_permutexvar_epi8(lane_of_byte, digit_count);
            let kept = _mm512_cmplt_epu8_mask(place, lane_count);
            let digit_at = _mm512_add_epi8(lane_first, cast(DIGIT_OFFSETS));
            let digits = _mm512_and_si512(
                _mm512_maskz_permutexvar_epi8(kept, digit_at, bytes),
                _mm512_set1_epi8(0x0F),
            );

            // A lane's sixteen digits as one integer: pairs, fours, eights, then the two
            // eights.
            let pairs = _mm512_maddubs_epi16(digits, cast(PAIR_WEIGHTS));
            let fours = _mm512_madd_epi16(pairs, cast(FOUR_WEIGHTS));
            let eights = _mm512_add_epi64(
                _mm512_mul_epu32(fours, _mm512_set1_epi64(10_000)),
                _mm512_srli_epi64::<32>(fours),
            );
            let sixteen = _mm512_add_epi64(
                _mm512_mul_epu32(eights, _mm512_set1_epi64(100_000_000)),
                _mm512_bsrli_epi128::<8>(eights),
            );
            // The lanes' integers (in each lane's low 64 bits) side by side.
            let integer: __m256i =
                _mm512_castsi512_si256(_mm512_maskz_compress_epi64(0x55, sixteen));
            let value = _mm256_mul_pd(_mm256_cvtepu64_pd(integer), _mm256_set1_pd(TEN_TO_MINUS_15));
            let error = _mm256_mul_pd(value, _mm256_set1_pd(RELATIVE_ERROR));
            let left_off = _mm256_maskz_mov_pd(truncated, _mm256_set1_pd(TEN_TO_MINUS_15));
            let low = _mm256_cvtpd_ps(_mm256_sub_pd(value, error));
            let high = _mm256_cvtpd_ps(_mm256_add_pd(_mm256_add_pd(value, error), left_off));
            let (low, high): (__m128i, __m128i) = (cast(low), cast(high));
            let unsure = !_mm_cmpeq_epi32_mask(low, high) & ((1 << count) - 1);
            let signs = _pext_u64(negative, starts) as u8;
            let signed = _mm_mask_xor_epi32(low, signs, low, _mm_set1_epi32(i32::MIN));
            Some(Run {
                values: cast(signed),
                count,
                unsure,
                starts,
                next,
            })
        }
    }
}

/// The `commas` that end numbers before the first bit of `broken` (not zero), or `None` if
/// none do: apart, and not inlined, so that the usual block (nothing broken) branches past it
/// rather than waiting for `broken` to be known.
#[cold]
#[inline(never)]
fn ending_before(commas: u64, broken: u64) -> Option<u64> {
    let whole = commas & ((1 << broken.trailing_zeros()) - 1);
    (whole != 0).then_some(whole)
}

/// What [`Avx512::block`] read.
struct Run {
    /// The numbers' values, the first `count` of them; those of `unsure` still to be read.
    values: [f32; LANES],
    count: usize,
    /// Bit `j` set where value `j` did not round surely.
    unsure: u8,
    /// Where each number starts in the block: the position of its `j`-th set bit is number
    /// `j`'s.
    starts: u64,
    /// The position in the block after the last number's separator.
    next: usize,
}

/// Reads again, one at a time ([`super::number`], which rounds them exactly), the numbers of a
/// run whose values were not sure: the `unsure` of those whose `starts` are in the block at
/// `text[start]`, into `values` (the run's).
#[cold]
#[inline(never)]
fn read_unsure(
    text: &[u8],
    start: usize,
    starts: u64,
    unsure: u8,
    values: &mut [f32],
) -> Option<()> {
    let mut left = unsure;
    while left != 0 {
        let lane = left.trailing_zeros();
        left &= left - 1;
        // The `lane`-th set bit of `starts`.
        let mut bits = starts;
        for _ in 0..lane {
            bits &= bits - 1;
        }
        let at = start + bits.trailing_zeros() as usize;
        let (value, _, _) = super::number(text, at)?;
        *values.get_mut(lane as usize)? = value;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the text of a case starts in the text read: past some other bytes, so that a
    /// run's positions are held to `start`.
    const OFFSET: usize = 3;

    /// This processor's [`Avx512`], where it has one. The tests below hold the run path to
    /// the one-at-a-time paths where the processor takes it; elsewhere there is no such path
    /// to test, and the reader's other tests cover those it takes.
    fn available() -> Option<Avx512> {
        Avx512::detected()
    }

    /// `text` after [`OFFSET`] other bytes and before a block of spaces, as read.
    fn placed(text: &str) -> String {
        format!("[, {text}{}", " ".repeat(BLOCK))
    }

    /// What [`Avx512::run`] reads from `text` at [`OFFSET`]: the values and where it stops,
    /// counted from [`OFFSET`].
    fn run(avx512: Avx512, text: &str) -> Option<(Vec<f32>, usize)> {
        let mut data = vec![7.0];
        let next = avx512.run(text.as_bytes(), OFFSET, &mut data)?;
        assert_eq!(
            data.first(),
            Some(&7.0),
            "{text:?}: the values before were changed"
        );
        Some((data[1..].to_vec(), next - OFFSET))
    }

    /// The same text read one number at a time by the other paths from [`OFFSET`]: the values
    /// of its first `count` numbers, and where the last one's `,` and space end.
    fn one_at_a_time(text: &str, count: usize) -> (Vec<f32>, usize) {
        let bytes = text.as_bytes();
        let mut values = Vec::new();
        let mut at = OFFSET;
        for _ in 0..count {
            let Some((value, end, _)) = super::super::number(bytes, at) else {
                panic!("{text:?} at {at} is not a number");
            };
            values.push(value);
            assert_eq!(bytes.get(end), Some(&b','), "{text:?} at {end}");
            at = end + 1;
            if bytes.get(at) == Some(&b' ') {
                at += 1;
            }
        }
        (values, at - OFFSET)
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn a_run_reads_up_to_four_numbers_that_end_at_a_comma_as_one_at_a_time_does() {
        let Some(avx512) = available() else { return };
        // The text of each case, and how many of its numbers a run reads.
        let long = "-0.12345699965953827";
        // A first number whose comma is the block's last byte (61 digits after the point).
        let comma_at_63 = format!("1.{}, 0.5, ", "2".repeat(61));
        let cases: Vec<(String, usize)> = vec![
            ("0.5, -0.25, 1.0, 9.75, 3.5, 2.5]".into(), 4),
            (
                format!("{long}, 0.7949579954147339, 1.2144819498062134]"),
                2,
            ),
            ("0.1,0.2,-0.3,0.4,0.5]".into(), 4),
            ("0.1, 0.2], [0.3, 0.4]".into(), 1),
            ("-0.0, 0.0, -0.0, 1.5]".into(), 3),
            ("1.5, 12.5, 3.5]".into(), 1),
            ("0.000001, 9.99999999999999999999, 0.5]".into(), 2),
            ("5.0, 1e5, 2.0]".into(), 1),
            ("0.5, 1., 0.5, 0.5]".into(), 1),
            ("0.5,  0.5, 0.5]".into(), 1),
            ("0.5,\n0.5, 0.5]".into(), 1),
            ("0.5,\t0.5, 0.5]".into(), 1),
            ("0.5, 0.25, 0.125, 0.0625, 01.5, 0.5]".into(), 4),
            ("0.5, 0.25, 0.125, 0.0625, 0.03125, 0.5]".into(), 4),
            // The first number's comma at the block's last byte: not read, as a space may
            // follow it past the block.
            (comma_at_63.clone(), 0),
        ];
        for (text, count) in cases {
            let text = placed(&text);
            let read = run(avx512, &text);
            if count == 0 {
                assert_eq!(read, None, "{text:?}");
                continue;
            }
            let Some((values, next)) = read else {
                panic!("{text:?}: no run read");
            };
            let (expected, expected_next) = one_at_a_time(&text, count);
            assert_eq!(bits(&values), bits(&expected), "{text:?}");
            assert_eq!(next, expected_next, "{text:?}");
        }
        // The case with its comma at the block's last byte: one byte earlier, it is read.
        let shorter = placed(&format!("1.{}, 0.5, ", "2".repeat(60)));
        assert_eq!(
            run(avx512, &shorter).map(|(values, _)| values.len()),
            Some(1)
        );
    }

    #[test]
    fn values_near_a_midpoint_between_two_f32_values_in_a_run_are_read_again_and_round_to_the_nearest()
     {
        let Some(avx512) = available() else { return };
        // Midpoints between neighbouring f32 values in [0.1, 10) written with 20 digits after
        // the point, exactly and a unit of the last digit either side, each third in a run
        // after two numbers that round surely: its lane cannot round surely and is read
        // again one at a time.
        let mut read_again = 0;
        for bits_of_low in (0x3DCC_CCCD_u32..0x4120_0000).step_by(99_991) {
            let low = f64::from(f32::from_bits(bits_of_low));
            let high = f64::from(f32::from_bits(bits_of_low + 1));
            let middle = format!("{:.20}", (low + high) / 2.0);
            for last_digit in ['4', '5', '6'] {
                let mut number = middle.clone();
                number.pop();
                number.push(last_digit);
                let exact: f32 = number.parse().unwrap_or_else(|_| panic!("{number}"));
                let text = placed(&format!("0.5, -0.25, {number}, 0.75]"));
                let Some(block) = text.as_bytes()[OFFSET..].first_chunk::<BLOCK>() else {
                    panic!("{text:?} is shorter than a block");
                };
                let Some(read) = avx512.block(block) else {
                    panic!("{text:?}: no run read");
                };
                read_again += usize::from(read.unsure == 0b100);
                let Some((values, next)) = run(avx512, &text) else {
                    panic!("{text:?}: no run read");
                };
                let (expected, expected_next) = one_at_a_time(&text, 3);
                assert_eq!(values[2].to_bits(), exact.to_bits(), "{number}");
                assert_eq!(bits(&values), bits(&expected), "{text:?}");
                assert_eq!(next, expected_next, "{text:?}");
            }
        }
        // Those a unit either side are as near: all are read again.
        assert!(read_again > 300, "{read_again} read again");
    }

    #[test]
    fn a_run_reads_nothing_where_the_first_number_is_not_of_the_usual_form_or_not_followed_by_a_comma()
     {
        let Some(avx512) = available() else { return };
        for text in [
            "12.5, 0.5",
            "1e5, 0.5",
            "1, 0.5",
            ".5, 0.5",
            "-.5, 0.5",
            "1., 0.5",
            "+1.5, 0.5",
            "--1.5, 0.5",
            "1.5.5, 0.5",
            "1.5 , 0.5",
            " 1.5, 0.5",
            "1.5]",
            "NaN, 0.5",
            "0.5e1, 0.5",
            "01.5, 0.5",
            "1.5-1, 0.5",
            "-, 0.5",
            "5, 0.5",
        ] {
            assert_eq!(run(avx512, &placed(text)), None, "{text:?}");
        }
        // Too near the end for a block.
        assert_eq!(run(avx512, "[, 0.5, 0.5, 0.5]"), None);
    }
}
