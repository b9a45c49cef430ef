//! The AVX2 steps of [`super::decimals`]: the shortest decimals of four floats at once, one
//! in each 64-bit lane of 256-bit registers, by the arithmetic [`super::shortest`],
//! [`super::eight_digits`] and [`super::plus_one`] do for one float.
//!
//! Only the lookups stay scalar ([`super::binary`]: the significand and the scaling of each
//! float); the three products by a power of ten, their rounding to odd, the choice among the
//! candidates and the digits of the tens are done once for four floats. With the lookups, a
//! float takes about 40% of the instructions it takes alone (56 against 141, counted with
//! callgrind over 200,000 scores). The products are 64 × 32 bits: a power's two halves
//! multiplied apart (`_mm256_mul_epu32`), which gives the product's bits from 2^32 up, all
//! that rounding to odd looks at. Every value compared stays below 2^32 (the largest multiplier,
//! `(4c + 2) << shift`, is below 2^30), so the signed 64-bit compares of AVX2 order them as
//! unsigned.
//!
//! AVX2 is not part of x86-64's baseline: [`decimals`] is compiled for it with
//! `#[target_feature]` and is `unsafe` to call, which [`super::decimals`] does only after the
//! processor was checked to have it (`is_x86_feature_detected!`). Inside, the intrinsics are
//! safe to call and no `unsafe` is needed: nothing reads memory through a pointer, registers
//! are filled from arrays and read back into arrays with `bytemuck`.

use std::arch::x86_64::{
    __m256i, _mm256_add_epi64, _mm256_and_si256, _mm256_andnot_si256, _mm256_blendv_epi8,
    _mm256_cmpeq_epi64, _mm256_cmpgt_epi64, _mm256_mul_epu32, _mm256_mullo_epi16,
    _mm256_mullo_epi32, _mm256_or_si256, _mm256_set1_epi16, _mm256_set1_epi32, _mm256_set1_epi64x,
    _mm256_shuffle_epi8, _mm256_slli_epi16, _mm256_slli_epi64, _mm256_sllv_epi64,
    _mm256_srli_epi16, _mm256_srli_epi64, _mm256_sub_epi16, _mm256_sub_epi32, _mm256_sub_epi64,
    _mm256_xor_si256,
};

use bytemuck::cast;

use super::{Binary, Decimal, SIGN_BIT, binary, one_at_a_time};

/// [`super::decimals`] on a processor with AVX2: four values at a time, the last one to three
/// one at a time.
#[target_feature(enable = "avx2")]
pub(super) fn decimals(values: &[f32], decimals: &mut [Decimal]) {
    let count = values.len().min(decimals.len());
    let (values, decimals) = (&values[..count], &mut decimals[..count]);
    let mut values_by_four = values.chunks_exact(4);
    let mut decimals_by_four = decimals.chunks_exact_mut(4);
    for (four, found) in (&mut values_by_four).zip(&mut decimals_by_four) {
        let mut binaries = [binary(0); 4];
        for (binary_of, value) in binaries.iter_mut().zip(four) {
            *binary_of = binary(value.to_bits() & !SIGN_BIT);
        }
        let (digits, ones) = four_decimals(&binaries);
        let worked_out = digits.iter().zip(ones).zip(&binaries);
        for (decimal, ((&digits, ones), binary)) in found.iter_mut().zip(worked_out) {
            *decimal = Decimal {
                digits,
                ones: ones as u32,
                exponent: binary.scaling.k,
            };
        }
    }
    one_at_a_time(
        values_by_four.remainder(),
        decimals_by_four.into_remainder(),
    );
}

/// The digits and ones of four [`Decimal`]s (whose exponents are their scalings' `k`): what
/// [`super::decimal`] works out for each, lane by lane.
#[target_feature(enable = "avx2")]
fn four_decimals(binaries: &[Binary; 4]) -> ([u64; 4], [u64; 4]) {
    let four_c: __m256i = cast(binaries.map(|b| u64::from(b.c) << 2));
    let shift: __m256i = cast(binaries.map(|b| u64::from(b.scaling.shift)));
    let nearer: __m256i = cast(binaries.map(|b| u64::from(b.lower_neighbour_nearer)));
    let power: __m256i = cast(binaries.map(|b| b.scaling.power));
    let one = splat(1);
    let odd = _mm256_srli_epi64::<2>(_mm256_and_si256(four_c, splat(4)));

    // The interval's ends and middle times 10^-k, in quarters, rounded to odd; each end
    // is its own product (`4c - 2 + nearer` and `4c + 2` quarters), which equals the middle's
    // product minus or plus the step's, as [`super::shortest`] takes them.
    let scaled_by = |quarters| round_to_odd(product(_mm256_sllv_epi64(quarters, shift), power));
    let lower = _mm256_add_epi64(
        scaled_by(_mm256_sub_epi64(_mm256_add_epi64(four_c, nearer), splat(2))),
        odd,
    );
    let scaled = scaled_by(four_c);
    let upper = _mm256_sub_epi64(scaled_by(_mm256_add_epi64(four_c, splat(2))), odd);

    let s = _mm256_srli_epi64::<2>(scaled);
    // s / 10 for s below 2^32: (s × ceil(2^35 / 10)) >> 35.
    let tens = _mm256_srli_epi64::<35>(_mm256_mul_epu32(s, splat(0xCCCC_CCCD)));
    // A shorter candidate, a multiple of ten, if one of the two around the value lies in the
    // interval (at most one does), and s has more than one digit.
    let forty_tens = _mm256_mul_epu32(tens, splat(40));
    let below_inside = not(above(lower, forty_tens));
    let shorter_above = not(above(_mm256_add_epi64(forty_tens, splat(40)), upper));
    let shorter_inside = _mm256_and_si256(
        above(s, splat(9)),
        _mm256_xor_si256(below_inside, shorter_above),
    );
    // Else the one of s and s + 1 in the interval, or if both are, the nearer (ties to even).
    let four_s = _mm256_slli_epi64::<2>(s);
    let below_inside = not(above(lower, four_s));
    let above_inside = not(above(_mm256_add_epi64(four_s, splat(4)), upper));
    let half = _mm256_add_epi64(four_s, splat(2));
    let s_odd = _mm256_cmpeq_epi64(_mm256_and_si256(s, one), one);
    let nearer_above = _mm256_or_si256(
        above(scaled, half),
        _mm256_and_si256(_mm256_cmpeq_epi64(scaled, half), s_odd),
    );
    let one_inside = _mm256_xor_si256(below_inside, above_inside);
    let up = _mm256_or_si256(
        _mm256_and_si256(one_inside, above_inside),
        _mm256_andnot_si256(one_inside, nearer_above),
    );
    // Its ones, and whether they carry into the tens.
    let ones = _mm256_add_epi64(
        _mm256_sub_epi64(s, _mm256_mul_epu32(tens, splat(10))),
        _mm256_and_si256(up, one),
    );
    let carry = _mm256_cmpeq_epi64(ones, splat(10));
    let keep_ones = not(_mm256_or_si256(shorter_inside, carry));
    let rounded_up = _mm256_or_si256(
        _mm256_and_si256(shorter_inside, shorter_above),
        _mm256_andnot_si256(shorter_inside, carry),
    );
    let ones = _mm256_and_si256(ones, keep_ones);

    let digits = eight_digits(tens);
    let digits = _mm256_blendv_epi8(digits, plus_one(digits), rounded_up);
    (cast(digits), cast(ones))
}

/// `power × x` (x below 2^32 in each lane's low half), from bit 32 up: the product's bits
/// 32 to 95, exactly.
#[target_feature(enable = "avx2")]
fn product(x: __m256i, power: __m256i) -> __m256i {
    _mm256_add_epi64(
        _mm256_mul_epu32(x, _mm256_srli_epi64::<32>(power)),
        _mm256_srli_epi64::<32>(_mm256_mul_epu32(x, power)),
    )
}

/// [`super::round_to_odd`] of a product given from bit 32 up ([`product`]): its bits from
/// 2^64, with the lowest set when the bits from 2^32 to 2^64 are above 1.
#[target_feature(enable = "avx2")]
fn round_to_odd(product: __m256i) -> __m256i {
    let high = _mm256_srli_epi64::<32>(product);
    let middle = _mm256_and_si256(product, splat(0xFFFF_FFFF));
    let inexact = above(middle, splat(1));
    _mm256_or_si256(high, _mm256_srli_epi64::<63>(inexact))
}

/// [`super::eight_digits`] of each lane (below 10^8).
#[target_feature(enable = "avx2")]
fn eight_digits(tens: __m256i) -> __m256i {
    // n / 10^4 for n below 10^8: (n × ceil(2^45 / 10^4)) >> 45.
    let high = _mm256_srli_epi64::<45>(_mm256_mul_epu32(tens, splat(3_518_437_209)));
    let low = _mm256_sub_epi64(tens, _mm256_mul_epu32(high, splat(10_000)));
    let fours = _mm256_or_si256(high, _mm256_slli_epi64::<32>(low));
    let hundreds = _mm256_and_si256(
        _mm256_srli_epi64::<20>(_mm256_mullo_epi32(fours, _mm256_set1_epi32(10_486))),
        splat(0x0000_007F_0000_007F),
    );
    let twos = _mm256_or_si256(
        hundreds,
        _mm256_slli_epi64::<16>(_mm256_sub_epi32(
            fours,
            _mm256_mullo_epi32(hundreds, _mm256_set1_epi32(100)),
        )),
    );
    let tens = _mm256_and_si256(
        _mm256_srli_epi16::<10>(_mm256_mullo_epi16(twos, _mm256_set1_epi16(103))),
        _mm256_set1_epi16(0xF),
    );
    _mm256_or_si256(
        tens,
        _mm256_slli_epi16::<8>(_mm256_sub_epi16(
            twos,
            _mm256_mullo_epi16(tens, _mm256_set1_epi16(10)),
        )),
    )
}

/// [`super::plus_one`] of each lane.
#[target_feature(enable = "avx2")]
fn plus_one(digits: __m256i) -> __m256i {
    // Each 64-bit lane's bytes in reverse order.
    let reversed: __m256i = cast([
        0x0001_0203_0405_0607u64,
        0x0809_0A0B_0C0D_0E0F,
        0x0001_0203_0405_0607,
        0x0809_0A0B_0C0D_0E0F,
    ]);
    let sum = _mm256_add_epi64(
        _mm256_shuffle_epi8(digits, reversed),
        splat(0xF6F6_F6F6_F6F6_F6F7),
    );
    let high_bits = _mm256_and_si256(sum, splat(0x8080_8080_8080_8080));
    let not_carried = _mm256_or_si256(
        high_bits,
        _mm256_sub_epi64(high_bits, _mm256_srli_epi64::<7>(high_bits)),
    );
    _mm256_shuffle_epi8(
        _mm256_sub_epi64(
            sum,
            _mm256_and_si256(not_carried, splat(0xF6F6_F6F6_F6F6_F6F6)),
        ),
        reversed,
    )
}

/// `value` in every lane.
#[target_feature(enable = "avx2")]
fn splat(value: u64) -> __m256i {
    _mm256_set1_epi64x(value as i64)
}

/// All ones in the lanes where `a > b` (both below 2^63).
#[target_feature(enable = "avx2")]
fn above(a: __m256i, b: __m256i) -> __m256i {
    _mm256_cmpgt_epi64(a, b)
}

/// Each bit of `mask` flipped.
#[target_feature(enable = "avx2")]
fn not(mask: __m256i) -> __m256i {
    _mm256_xor_si256(mask, splat(u64::MAX))
}
