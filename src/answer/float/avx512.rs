//! The AVX-512 steps of [`super::decimals`]: the shortest decimals of eight floats at once,
//! one in each 64-bit lane of 512-bit registers. The arithmetic is the `avx2` module's, lane
//! for lane, in twice the lanes; what differs is that the floats' fields (significand,
//! exponent, whether the lower neighbour is nearer, the index of their [`super::SCALINGS`]
//! entry) are worked out in the registers too, so only the table lookups stay scalar, and
//! that compares give masks (unsigned ones: AVX-512 has them) rather than lanes of ones.
//!
//! AVX-512 (its foundation, `avx512f`, and the byte and word instructions of `avx512bw`) is
//! not part of x86-64's baseline: [`decimals`] is compiled for it with `#[target_feature]`
//! and is `unsafe` to call, which [`super::decimals`] does only after the processor was
//! checked to have both (`is_x86_feature_detected!`). Inside, no `unsafe` is needed: nothing
//! reads memory through a pointer, registers are filled from arrays and read back into
//! arrays with `bytemuck`.

use std::arch::x86_64::{
    __m512i, __mmask8, _mm512_add_epi64, _mm512_and_si512, _mm512_cmpeq_epi64_mask,
    _mm512_cmpgt_epu64_mask, _mm512_mask_add_epi64, _mm512_mask_blend_epi64, _mm512_mask_or_epi64,
    _mm512_mul_epu32, _mm512_mullo_epi16, _mm512_mullo_epi32, _mm512_or_si512, _mm512_set1_epi16,
    _mm512_set1_epi32, _mm512_set1_epi64, _mm512_shuffle_epi8, _mm512_slli_epi16,
    _mm512_slli_epi64, _mm512_sllv_epi64, _mm512_srli_epi16, _mm512_srli_epi64, _mm512_sub_epi16,
    _mm512_sub_epi32, _mm512_sub_epi64, _mm512_test_epi64_mask,
};

use bytemuck::cast;

use super::{Decimal, SCALINGS, SIGN_BIT, SIGNIFICAND_BITS, avx2};

/// [`super::decimals`] on a processor with AVX-512 (`avx512f` and `avx512bw`): eight values
/// at a time, the last one to seven as the `avx2` module takes them (four at a time, then
/// one at a time).
#[target_feature(enable = "avx512f,avx512bw,avx2")]
pub(super) fn decimals(values: &[f32], decimals: &mut [Decimal]) {
    let count = values.len().min(decimals.len());
    let (values, decimals) = (&values[..count], &mut decimals[..count]);
    let mut values_by_eight = values.chunks_exact(8);
    let mut decimals_by_eight = decimals.chunks_exact_mut(8);
    for (eight, found) in (&mut values_by_eight).zip(&mut decimals_by_eight) {
        let mut bits = [0u64; 8];
        for (bits_of, value) in bits.iter_mut().zip(eight) {
            *bits_of = u64::from(value.to_bits() & !SIGN_BIT);
        }
        let (digits, ones, exponents) = eight_decimals(cast(bits));
        let worked_out = digits.iter().zip(ones).zip(exponents);
        for (decimal, ((&digits, ones), exponent)) in found.iter_mut().zip(worked_out) {
            *decimal = Decimal {
                digits,
                ones: ones as u32,
                exponent,
            };
        }
    }
    // Compiled for AVX2 too (every processor with AVX-512 has it), so no check is needed.
    avx2::decimals(
        values_by_eight.remainder(),
        decimals_by_eight.into_remainder(),
    );
}

/// The digits, ones and exponents of eight [`Decimal`]s, of the floats whose bits (without
/// their sign bits) are in the lanes of `bits`: what [`super::decimal`] works out for each,
/// lane by lane. Lanes of zero or non-finite floats get some decimal, which is not used.
#[target_feature(enable = "avx512f,avx512bw")]
fn eight_decimals(bits: __m512i) -> ([u64; 8], [u64; 8], [i32; 8]) {
    // [`super::binary`], lane by lane: `c × 2^q`, and the index of its scaling.
    let fraction = _mm512_and_si512(bits, splat((1 << SIGNIFICAND_BITS) - 1));
    let biased_exponent = _mm512_srli_epi64::<{ SIGNIFICAND_BITS }>(bits);
    let normal = _mm512_test_epi64_mask(biased_exponent, biased_exponent);
    let four_c = _mm512_slli_epi64::<2>(_mm512_mask_or_epi64(
        fraction,
        normal,
        fraction,
        splat(1 << SIGNIFICAND_BITS),
    ));
    let nearer_mask: __mmask8 = _mm512_cmpeq_epi64_mask(fraction, splat(0))
        & _mm512_cmpgt_epu64_mask(biased_exponent, splat(1));
    let nearer = masked(splat(1), nearer_mask);
    let index: [u64; 8] = cast(_mm512_add_epi64(
        _mm512_slli_epi64::<1>(biased_exponent),
        nearer,
    ));
    // The lookups: an index is below 512 (an exponent field of 8 bits, doubled, plus one).
    let scalings = index.map(|i| SCALINGS[i as usize % SCALINGS.len()]);
    let shift: __m512i = cast(scalings.map(|s| u64::from(s.shift)));
    let power: __m512i = cast(scalings.map(|s| s.power));
    let exponents = scalings.map(|s| s.k);

    let one = splat(1);
    let odd = _mm512_srli_epi64::<2>(_mm512_and_si512(four_c, splat(4)));
    // The interval's ends and middle times 10^-k, in quarters, rounded to odd, as in the
    // `avx2` module.
    let scaled_by = |quarters| round_to_odd(product(_mm512_sllv_epi64(quarters, shift), power));
    let lower = _mm512_add_epi64(
        scaled_by(_mm512_sub_epi64(_mm512_add_epi64(four_c, nearer), splat(2))),
        odd,
    );
    let scaled = scaled_by(four_c);
    let upper = _mm512_sub_epi64(scaled_by(_mm512_add_epi64(four_c, splat(2))), odd);

    let s = _mm512_srli_epi64::<2>(scaled);
    // s / 10 for s below 2^32: (s × ceil(2^35 / 10)) >> 35.
    let tens = _mm512_srli_epi64::<35>(_mm512_mul_epu32(s, splat(0xCCCC_CCCD)));
    // A shorter candidate, a multiple of ten, if one of the two around the value lies in the
    // interval (at most one does), and s has more than one digit.
    let forty_tens = _mm512_mul_epu32(tens, splat(40));
    let below_inside = !above(lower, forty_tens);
    let shorter_above = !above(_mm512_add_epi64(forty_tens, splat(40)), upper);
    let shorter_inside = above(s, splat(9)) & (below_inside ^ shorter_above);
    // Else the one of s and s + 1 in the interval, or if both are, the nearer (ties to even).
    let four_s = _mm512_slli_epi64::<2>(s);
    let below_inside = !above(lower, four_s);
    let above_inside = !above(_mm512_add_epi64(four_s, splat(4)), upper);
    let half = _mm512_add_epi64(four_s, splat(2));
    let s_odd = _mm512_test_epi64_mask(s, one);
    let nearer_above = above(scaled, half) | (_mm512_cmpeq_epi64_mask(scaled, half) & s_odd);
    let one_inside = below_inside ^ above_inside;
    let up = (one_inside & above_inside) | (!one_inside & nearer_above);
    // Its ones, and whether they carry into the tens.
    let ones = _mm512_sub_epi64(s, _mm512_mul_epu32(tens, splat(10)));
    let ones = _mm512_mask_add_epi64(ones, up, ones, one);
    let carry = _mm512_cmpeq_epi64_mask(ones, splat(10));
    let keep_ones = !(shorter_inside | carry);
    let rounded_up = (shorter_inside & shorter_above) | (!shorter_inside & carry);
    let ones = masked(ones, keep_ones);

    let digits = eight_digits(tens);
    let digits = _mm512_mask_blend_epi64(rounded_up, digits, plus_one(digits));
    (cast(digits), cast(ones), exponents)
}

/// `power × x` (x below 2^32 in each lane's low half), from bit 32 up: the product's bits
/// 32 to 95, exactly.
#[target_feature(enable = "avx512f")]
fn product(x: __m512i, power: __m512i) -> __m512i {
    _mm512_add_epi64(
        _mm512_mul_epu32(x, _mm512_srli_epi64::<32>(power)),
        _mm512_srli_epi64::<32>(_mm512_mul_epu32(x, power)),
    )
}

/// [`super::round_to_odd`] of a product given from bit 32 up ([`product`]): its bits from
/// 2^64, with the lowest set when the bits from 2^32 to 2^64 are above 1.
#[target_feature(enable = "avx512f")]
fn round_to_odd(product: __m512i) -> __m512i {
    let high = _mm512_srli_epi64::<32>(product);
    let middle = _mm512_and_si512(product, splat(0xFFFF_FFFF));
    _mm512_mask_or_epi64(high, above(middle, splat(1)), high, splat(1))
}

/// [`super::eight_digits`] of each lane (below 10^8).
#[target_feature(enable = "avx512f,avx512bw")]
fn eight_digits(tens: __m512i) -> __m512i {
    // n / 10^4 for n below 10^8: (n × ceil(2^45 / 10^4)) >> 45.
    let high = _mm512_srli_epi64::<45>(_mm512_mul_epu32(tens, splat(3_518_437_209)));
    let low = _mm512_sub_epi64(tens, _mm512_mul_epu32(high, splat(10_000)));
    let fours = _mm512_or_si512(high, _mm512_slli_epi64::<32>(low));
    let hundreds = _mm512_and_si512(
        _mm512_srli_epi64::<20>(_mm512_mullo_epi32(fours, _mm512_set1_epi32(10_486))),
        splat(0x0000_007F_0000_007F),
    );
    let twos = _mm512_or_si512(
        hundreds,
        _mm512_slli_epi64::<16>(_mm512_sub_epi32(
            fours,
            _mm512_mullo_epi32(hundreds, _mm512_set1_epi32(100)),
        )),
    );
    let tens = _mm512_and_si512(
        _mm512_srli_epi16::<10>(_mm512_mullo_epi16(twos, _mm512_set1_epi16(103))),
        _mm512_set1_epi16(0xF),
    );
    _mm512_or_si512(
        tens,
        _mm512_slli_epi16::<8>(_mm512_sub_epi16(
            twos,
            _mm512_mullo_epi16(tens, _mm512_set1_epi16(10)),
        )),
    )
}

/// [`super::plus_one`] of each lane.
#[target_feature(enable = "avx512f,avx512bw")]
fn plus_one(digits: __m512i) -> __m512i {
    // Each 64-bit lane's bytes in reverse order (the shuffle works within 128-bit lanes).
    let reversed: __m512i = cast([
        0x0001_0203_0405_0607u64,
        0x0809_0A0B_0C0D_0E0F,
        0x0001_0203_0405_0607,
        0x0809_0A0B_0C0D_0E0F,
        0x0001_0203_0405_0607,
        0x0809_0A0B_0C0D_0E0F,
        0x0001_0203_0405_0607,
        0x0809_0A0B_0C0D_0E0F,
    ]);
    let sum = _mm512_add_epi64(
        _mm512_shuffle_epi8(digits, reversed),
        splat(0xF6F6_F6F6_F6F6_F6F7),
    );
    let high_bits = _mm512_and_si512(sum, splat(0x8080_8080_8080_8080));
    let not_carried = _mm512_or_si512(
        high_bits,
        _mm512_sub_epi64(high_bits, _mm512_srli_epi64::<7>(high_bits)),
    );
    _mm512_shuffle_epi8(
        _mm512_sub_epi64(
            sum,
            _mm512_and_si512(not_carried, splat(0xF6F6_F6F6_F6F6_F6F6)),
        ),
        reversed,
    )
}

/// `value` in every lane.
#[target_feature(enable = "avx512f")]
fn splat(value: u64) -> __m512i {
    _mm512_set1_epi64(value as i64)
}

/// `value` in the lanes of `mask`, zero in the others.
#[target_feature(enable = "avx512f")]
fn masked(value: __m512i, mask: __mmask8) -> __m512i {
    _mm512_mask_blend_epi64(mask, splat(0), value)
}

/// The lanes where `a > b`, unsigned.
#[target_feature(enable = "avx512f")]
fn above(a: __m512i, b: __m512i) -> __mmask8 {
    _mm512_cmpgt_epu64_mask(a, b)
}
