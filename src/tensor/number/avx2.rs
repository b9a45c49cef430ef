//! The usual form of number (`-0.12345699965953827`) read with AVX2, where the processor has
//! it: [`Avx2::usual`], tried before [`super::number`]'s own paths, which read whatever it
//! leaves.
//!
//! AVX2 (with BMI1 and BMI2, which every processor with AVX2 has) is not part of x86-64's
//! baseline, so an [`Avx2`] is only made where `is_x86_feature_detected!` found them: holding
//! one is what makes the intrinsics here sound to call, and the tensor reader's loop that
//! calls them is compiled for these features ([`super::super::text`]). None of them reads
//! memory through a pointer: registers are filled from arrays with `bytemuck`.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m256i, _mm_add_epi64, _mm_cvtepi32_pd, _mm_cvtsd_f64, _mm_cvtsi128_si32, _mm_extract_epi64,
    _mm_mul_epu32, _mm_set1_epi64x, _mm_srli_epi64, _mm256_and_si256, _mm256_castsi256_si128,
    _mm256_cmpeq_epi8, _mm256_extracti128_si256, _mm256_madd_epi16, _mm256_maddubs_epi16,
    _mm256_min_epu8, _mm256_movemask_epi8, _mm256_set1_epi8, _mm256_setr_epi16, _mm256_sub_epi8,
};

use bytemuck::cast;

use super::{KEEP_FIRST_VALUES, round_surely_normal, usual_start, with_sign};

/// Proof that this processor has AVX2, BMI1 and BMI2: made only by [`Avx2::detected`].
#[derive(Debug, Clone, Copy)]
pub(in crate::tensor) struct Avx2(());

/// Digits after the point [`Avx2::usual`] reads at most: as an integer, below 10¹⁹, its
/// first eight and last eleven digits each exact in an `f64`.
const SLOTS: usize = 19;

/// Bytes of text [`Avx2::usual`] loads at once: 32 from the number's start, and 32 from the
/// first digit after its point (at most the fourth byte).
const BLOCK: usize = 35;

/// The weights of [`Avx2::nineteen_digits`]'s bytes: `10, 1` for each of the first nine
/// pairs of digits, `1, 0` for the 19th digit (and the byte after it), 0 past them.
const PAIR_WEIGHTS: [i8; 32] = {
    let mut weights = [0i8; 32];
    let mut at = 0;
    while at < 18 {
        weights[at] = 10;
        weights[at + 1] = 1;
        at += 2;
    }
    weights[18] = 1;
    weights
};

/// 10¹⁹ (exact in an `f64`: 5¹⁹ is below 2⁵³): the place of the digit before the point,
/// in the units of [`Avx2::usual`]'s integer of the 19 after it.
const TEN_TO_19: f64 = 1e19;

/// 10¹¹ (exact in an `f64`): the place of the first eight of [`Avx2::nineteen_digits`]'s
/// digits.
const TEN_TO_11: f64 = 1e11;

/// 10⁻¹⁹, the nearest `f64`: what [`Avx2::usual`]'s digits are scaled by.
const TEN_TO_MINUS_19: f64 = 1e-19;

impl Avx2 {
    /// This processor's AVX2, BMI1 and BMI2, if it has them all.
    pub(in crate::tensor) fn detected() -> Option<Self> {
        use std::arch::is_x86_feature_detected as has;
        (has!("avx2") && has!("bmi1") && has!("bmi2")).then_some(Self(()))
    }

    /// The number at `text[start]` when it has the form most clients write (a sign or not,
    /// one digit, a point, 1 to 19 digits, no exponent) and its value rounds surely, with
    /// the position after it and whether `, ` follows; `None` for every other number. What
    /// it reads, it reads to the value and end [`super::number`] does.
    ///
    /// Its digits after the point are counted from a mask of the 32 bytes at the number's
    /// start, and read from the 32 at the first of them, those past the last set to zero: as
    /// a 19-digit integer whatever their count (a digit missing is a trailing zero), so there
    /// is no table to look up and the point's leading zeros need no care.
    /// Its `f64` (half a step off at most), added to the digit before the point times 10¹⁹
    /// (exact), times 10⁻¹⁹ (half a step off), each rounded once: within four steps of the
    /// value. Rounding that to `f32` is right unless it lies within
    /// [`super::MIDPOINT_MARGIN`] steps of a midpoint, which [`round_surely_normal`] leaves to
    /// the other paths. No branch depends on the digits: the one before the point is `0` as
    /// often as not in some tensors. The value is zero or at least 10⁻¹⁹ and at most 10: a
    /// normal `f32`.
    #[inline(always)]
    pub(super) fn usual(self, text: &[u8], start: usize) -> Option<(f32, usize, bool)> {
        let block: &[u8; BLOCK] = text.get(start..)?.first_chunk()?;
        let (negative, point, first) = usual_start(block)?;
        let (head, window): (&[u8; 32], &[u8; 32]) =
            (block.first_chunk()?, block.get(point + 1..)?.first_chunk()?);
        let digits_after_point = self.digit_mask(head) >> (point + 1);
        let count = (!digits_after_point).trailing_zeros() as usize;
        if count == 0 || count > SLOTS {
            return None;
        }
        let end = point + 1 + count;
        // The two bytes after the digits: an exponent's `e` (left to the other paths), or
        // perhaps `, `.
        let after = u16::from_le_bytes(*block.get(end..)?.first_chunk()?);
        if after as u8 | 0x20 == b'e' {
            return None;
        }
        let comma = after == u16::from_le_bytes(*b", ");
        let kept: &[u8; 32] = KEEP_FIRST_VALUES.get(32 - count..)?.first_chunk()?;
        let digits = self.nineteen_digits(window, kept);
        let near = (digits + f64::from(first) * TEN_TO_19) * TEN_TO_MINUS_19;
        let value = round_surely_normal(near)?;
        Some((with_sign(value, negative), start + end, comma))
    }

    /// Bit `i` set when `bytes[i]` is an ASCII digit.
    #[inline(always)]
    fn digit_mask(self, bytes: &[u8; 32]) -> u32 {
        // SAFETY: AVX2 intrinsics on registers; `self` proves the processor has AVX2.
        unsafe {
            let values = _mm256_sub_epi8(
                cast::<[u8; 32], __m256i>(*bytes),
                _mm256_set1_epi8(b'0' as i8),
            );
            let is_digit = _mm256_cmpeq_epi8(_mm256_min_epu8(values, _mm256_set1_epi8(9)), values);
            _mm256_movemask_epi8(is_digit) as u32
        }
    }

    /// The first 19 bytes of `digits` (ASCII digits where `kept` is `0x0F`; whatever
    /// elsewhere, as those bytes are set to zero) as a 19-digit integer, the first the most
    /// significant, rounded to the nearest `f64` (once, as `as f64` rounds it): pairs, then
    /// fours, then eights, in the registers, and the last three digits alone.
    ///
    /// The integer is the first eight's `f64` times 10¹¹ (exact: below 10⁸ · 5¹¹ · 2¹¹, and
    /// 10⁸ · 5¹¹ is below 2⁵³) plus the last eleven digits' (exact: below 10¹¹), so their sum
    /// rounds once. The first eight is converted in its register, and no `u64` (which AVX2
    /// converts in five steps) is converted at all.
    #[inline(always)]
    fn nineteen_digits(self, digits: &[u8; 32], kept: &[u8; 32]) -> f64 {
        // SAFETY: as in `digit_mask`.
        unsafe {
            // An ASCII digit's low four bits are its value.
            let values = _mm256_and_si256(
                cast::<[u8; 32], __m256i>(*digits),
                cast::<[u8; 32], __m256i>(*kept),
            );
            // Pairs `10a + b` of the first 18 digits (each from 0 to 99), the 19th alone,
            // nothing of the rest: weights by byte.
            let pairs = _mm256_maddubs_epi16(values, cast::<[i8; 32], __m256i>(PAIR_WEIGHTS));
            // Fours `100p + q` of the first 16 digits' pairs, then `10p + q` of the ninth pair
            // and the 19th digit (three digits), nothing of the rest.
            let fours = _mm256_madd_epi16(
                pairs,
                _mm256_setr_epi16(100, 1, 100, 1, 100, 1, 100, 1, 10, 1, 0, 0, 0, 0, 0, 0),
            );
            let low = _mm256_castsi256_si128(fours);
            // Eights `10⁴f + g` in the two 64-bit lanes of the low half.
            let eights = _mm_add_epi64(
                _mm_mul_epu32(low, _mm_set1_epi64x(10_000)),
                _mm_srli_epi64(low, 32),
            );
            // The first eight (below 10⁸, so in its lane's low 32 bits) as an `f64`.
            let first_eight = _mm_cvtsd_f64(_mm_cvtepi32_pd(eights));
            let second_eight = _mm_extract_epi64(eights, 1);
            let last_three = i64::from(_mm_cvtsi128_si32(_mm256_extracti128_si256(fours, 1)));
            first_eight * TEN_TO_11 + (second_eight * 1000 + last_three) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 19-digit integers at the edges of `f64`'s steps: around `2^k` and `1.5 · 2^k` from
    /// 2⁵³ (where steps start to exceed 1) up, where rounding ties and carries happen, and
    /// the largest.
    fn integers_at_the_edges_of_f64_steps() -> Vec<u64> {
        let mut integers = vec![1, 9_999_999_999_999_999_999, (1 << 63) - 1, 1 << 63];
        for k in 53..=63u32 {
            for base in [1u64 << k, (1u64 << k) + (1u64 << (k - 1))] {
                for offset in [
                    0u64, 1, 2, 3, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4097,
                ] {
                    integers.extend([base.wrapping_sub(offset), base.wrapping_add(offset)]);
                }
            }
        }
        // And some spread over the whole range (xorshift, fixed seed).
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..10_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            integers.push(state % 10_000_000_000_000_000_000);
        }
        integers.retain(|&n| n < 10_000_000_000_000_000_000);
        integers
    }

    #[test]
    fn nineteen_digits_round_their_integer_to_f64_as_its_u64_conversion_does() {
        let Some(avx2) = Avx2::detected() else {
            panic!("this processor has no AVX2: the path cannot be tested here");
        };
        for integer in integers_at_the_edges_of_f64_steps() {
            let text = format!("{integer:019}, -1.5, 0.25, 7.");
            let Some(window) = text.as_bytes().first_chunk::<32>() else {
                panic!("{text} is shorter than 32 bytes");
            };
            // Each count of digits: the integer's first `count` digits, zeros after them.
            for count in [1, 8, 9, 11, 16, 18, 19] {
                let kept: &[u8; 32] = KEEP_FIRST_VALUES[32 - count..]
                    .first_chunk()
                    .unwrap_or_else(|| panic!("no mask for {count}"));
                let place = 10u64.pow(19 - count as u32);
                let kept_integer = integer / place * place;
                let read = avx2.nineteen_digits(window, kept);
                assert_eq!(
                    read.to_bits(),
                    (kept_integer as f64).to_bits(),
                    "{integer}, first {count} digits: {read} against {}",
                    kept_integer as f64
                );
            }
        }
    }
}
