//! The shortest text of a float32, the same bytes as `zmij::Buffer::format_finite` writes,
//! put together from 8-byte stores at the places its pieces go: for writing many numbers
//! into a buffer with room for them ([`decimals`] and [`write_decimal`], as [`super::json`]
//! writes nested arrays), without a libc call per number.
//!
//! Why it exists: zmij only hands out its formatted `&str`. In its fixed notation (decimal
//! exponents -6 to 12, so every cosine score such as `0.12345679` or `-0.001234`) it moves its
//! digits with a variable-length `ptr::copy` and `write_bytes`, and copying its text into the
//! body is one more `memmove`: in a profile of a 1000×1000 cosine answer those libc calls
//! took about 14 ns of the 37 ns a number cost. No well-kept crate exposes the shortest
//! decimal of an f32 (`ryu` and `zmij` format only, `dragonbox` is an f64-only benchmark
//! port, `ryu_floating_decimal` an unmaintained copy of ryu's internals), so [`shortest`]
//! computes it here with Schubfach (R. Giulietti, "The Schubfach way to render doubles",
//! 2020; the f32 form needs 64-bit powers of ten only). Writing a 1000×768 answer on one
//! thread (`cargo bench --bench codec -- "answer writer"`) went from about 27.6 ms to 22.4 ms
//! with it (36 to 29 ns a number, medians of four runs each, alternated).
//!
//! Many numbers are written in two steps: [`decimals`] works out the shortest decimals of a
//! run of values, four at a time with AVX2 where the processor has it (eight with AVX-512),
//! then [`write_decimal`] places each one's text. Four at a time took the same writer's time
//! to 13-15 ms from 24-26 (`cargo bench --bench codec -- "answer writer"`, one thread, two
//! runs of each build alternated; 7.6 ms from 14-16 on two threads).
//!
//! When to use what: [`decimals`] and [`write_decimal`] on a hot path that formats many
//! numbers into a buffer of its own, as [`super::json`] does; [`write_finite`] for one number;
//! zmij (or serde_json, which uses it) anywhere else. The text is zmij's byte for byte: the
//! unit tests compare them on edge cases and arbitrary bit patterns, alone and among others,
//! and `cargo run --release --example float_text_against_zmij` compares both ways on every
//! finite f32 (all 2^32 bit patterns but the non-finite, a few minutes on two cores).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Bytes of text [`write_finite`] and [`write_decimal`] write at most, a bound: a sign, `0.00000` and nine digits
/// (the decimal exponent -6). No f32 needs nine digits there; the longest texts take 16, as
/// `-0.0000010000001` does.
pub const TEXT_BYTES: usize = 17;

/// Bytes of room [`write_finite`] and [`write_decimal`] need: they write the text's pieces in
/// stores of 8 bytes,
/// some of them past the text (and overwritten by the next piece, or left as junk).
pub const ROOM_BYTES: usize = 24;

/// `value` (finite, any sign), written at the start of `room` as zmij writes it; returns the
/// text's length (at most [`TEXT_BYTES`]). The bytes of `room` after the text are
/// overwritten with arbitrary bytes.
///
/// A non-finite `value` gets the text of some finite number.
#[inline]
pub fn write_finite(value: f32, room: &mut [u8; ROOM_BYTES]) -> usize {
    write_decimal(value, decimal(value.to_bits() & !SIGN_BIT), room)
}

/// A float's shortest decimal, worked out and not yet placed as text: what [`decimals`] finds
/// for many values at once and [`write_decimal`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decimal {
    /// The digits before the last, eight of them (leading zeros included), one a byte from
    /// 0 to 9, the first in the lowest byte.
    digits: u64,
    /// The last digit, 0 when the shorter decimal (without it) was picked.
    ones: u32,
    /// The decimal exponent of the last digit.
    exponent: i32,
}

/// `decimals[i]`, for each `values[i]`, the shortest decimal of its magnitude (what
/// [`write_decimal`] takes); `decimals` is as long as `values` (any extra is left as it is).
/// A zero or non-finite value gets some decimal that [`write_decimal`] does not use.
///
/// Where the processor has AVX2, four values are worked out at once (in the `avx2` module),
/// in about 40% of the instructions of one at a time (56 a value against 141, counted with
/// callgrind over 200,000 scores); where it has AVX-512, eight at once (the `avx512`
/// module), with the floats' fields found in the registers too. The decimals are the same
/// every way. Fewer than four values are worked out one at a time, without asking the
/// processor.
pub fn decimals(values: &[f32], decimals: &mut [Decimal]) {
    #[cfg(target_arch = "x86_64")]
    if values.len() >= 4 {
        match Lanes::widest() {
            // SAFETY: the processor has AVX-512's foundation and byte instructions, and AVX2,
            // just checked.
            #[allow(unsafe_code)]
            Lanes::Eight => unsafe { avx512::decimals(values, decimals) },
            // SAFETY: the processor has AVX2, just checked.
            #[allow(unsafe_code)]
            Lanes::Four => unsafe { avx2::decimals(values, decimals) },
            Lanes::One => one_at_a_time(values, decimals),
        }
        return;
    }
    one_at_a_time(values, decimals);
}

/// How many values [`decimals`] works out at once on this processor.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Lanes {
    One,
    Four,
    Eight,
}

#[cfg(target_arch = "x86_64")]
impl Lanes {
    /// The most this processor can: eight with AVX-512 (`avx512f` and `avx512bw`), four with
    /// AVX2 (the features are detected once and cached by the standard library).
    fn widest() -> Self {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx2") {
            Lanes::Eight
        } else if has!("avx2") {
            Lanes::Four
        } else {
            Lanes::One
        }
    }
}

/// [`decimals`] one value at a time.
fn one_at_a_time(values: &[f32], decimals: &mut [Decimal]) {
    for (value, decimal_of) in values.iter().zip(decimals) {
        *decimal_of = decimal(value.to_bits() & !SIGN_BIT);
    }
}

/// `value` (finite, any sign) written at the start of `room` from its decimal (its
/// magnitude's, from [`decimals`]), as [`write_finite`] writes it; returns the text's length
/// (at most [`TEXT_BYTES`]). The bytes of `room` after the text are overwritten with
/// arbitrary bytes.
#[inline]
pub fn write_decimal(value: f32, decimal: Decimal, room: &mut [u8; ROOM_BYTES]) -> usize {
    let bits = value.to_bits();
    let sign = (bits >> 31) as usize;
    room[0] = b'-';
    sign + write_unsigned(bits & !SIGN_BIT, decimal, room, sign)
}

/// The sign bit of an f32.
const SIGN_BIT: u32 = 1 << 31;

/// Bits of an f32's significand field.
const SIGNIFICAND_BITS: u32 = 23;

/// What the exponent field of an f32 is biased by, counted for its significand as an integer:
/// a normal `value` is `(2^23 + significand field) × 2^(exponent field - 150)`.
const EXPONENT_BIAS: i32 = 127 + SIGNIFICAND_BITS as i32;

/// Decimal exponents (of the first digit) that zmij writes in fixed notation with an integer
/// part, `1.5` to `1234567800000.0`; others, but [`FIXED_FRACTION`]'s, it writes as `1.5e-7`
/// and `1e+13`.
const FIXED_WITH_INTEGER: std::ops::RangeInclusive<i32> = 0..=12;

/// Decimal exponents (of the first digit) that zmij writes in fixed notation without an
/// integer part, `0.1` to `0.000001`.
const FIXED_FRACTION: std::ops::RangeInclusive<i32> = -6..=-1;

/// The shortest decimal of the f32 of `bits` without its sign bit: [`shortest`], its tens as
/// digits; zero and non-finite values (which [`shortest`] does not take) get the default.
#[inline]
fn decimal(bits: u32) -> Decimal {
    // Positive, finite and not zero: from the least subnormal to `f32::MAX`.
    if bits.wrapping_sub(1) >= f32::MAX.to_bits() {
        return Decimal::default();
    }
    let Shortest {
        tens,
        tens_rounded_up,
        ones,
        exponent,
    } = shortest(bits);
    // The digits of the tens, rounded up or not.
    let tens = eight_digits(tens);
    let rounded_up = u64::from(tens_rounded_up).wrapping_neg();
    Decimal {
        digits: (plus_one(tens) & rounded_up) | (tens & !rounded_up),
        ones,
        exponent,
    }
}

/// Writes the text of the f32 of `bits` without its sign bit (non-negative, finite), whose
/// shortest decimal is `decimal`, into `room` from `at` (0 or 1); returns its length (at
/// most 16).
///
/// The text's pieces are stored whole, 8 bytes at a time, each at the place it goes: later
/// stores overwrite what an earlier one wrote past its piece.
#[inline]
fn write_unsigned(bits: u32, decimal: Decimal, room: &mut [u8; ROOM_BYTES], at: usize) -> usize {
    if bits == 0 {
        store(room, at, u64::from_le_bytes(*b"0.0\0\0\0\0\0"));
        return 3;
    }
    let Decimal {
        digits: tens,
        ones,
        exponent,
    } = decimal;
    // Nine places, the tens' eight (the first in the lowest byte) and the ones; the first
    // digit is past the leading zeros (all the tens' when they are 0), `rest` the eight
    // places after it.
    let leading_zeros = tens.trailing_zeros() / 8;
    let shift = 8 * leading_zeros.min(7);
    let (first_digit, rest) = if leading_zeros < 8 {
        (
            (tens >> shift) as u8,
            tens >> shift >> 8 | u64::from(ones) << (56 - shift),
        )
    } else {
        (ones as u8, 0)
    };
    // Trailing zeros are the high zero bytes of `rest` (its last digit is its highest byte).
    let digits_written = 9 - (rest.leading_zeros() / 8) as usize;
    let first = b'0' + first_digit;
    let rest = rest | ASCII_ZEROS;
    // The decimal exponent of the first digit.
    let scientific = exponent + 8 - leading_zeros as i32;
    if FIXED_WITH_INTEGER.contains(&scientific) {
        // `12.34`, `1200.0`: the digits and zeros, the point after the integer part's
        // `point` digits, and after it the digits from there on (zeros past them).
        let point = scientific as usize + 1;
        room[at] = first;
        store(room, at + 1, rest);
        store(room, at + 9, ASCII_ZEROS);
        room[at + point] = b'.';
        let shift = 8 * (point - 1).min(7) as u32;
        let after_point = if point <= 8 {
            rest >> shift | (ASCII_ZEROS << (56 - shift)) << 8
        } else {
            ASCII_ZEROS
        };
        store(room, at + point + 1, after_point);
        digits_written.max(point + 1) + 1
    } else if FIXED_FRACTION.contains(&scientific) {
        // `0.001234`: `0.`, zeros, then the digits.
        let start = (1 - scientific) as usize;
        store(room, at, u64::from_le_bytes(*b"0.000000"));
        room[at + start] = first;
        store(room, at + start + 1, rest);
        start + digits_written
    } else {
        // `1.234e-7`, `1e+13`: the first digit, the point and the others if any, then the
        // exponent.
        room[at] = first;
        room[at + 1] = b'.';
        store(room, at + 2, rest);
        let mantissa_length = if digits_written > 1 {
            digits_written + 1
        } else {
            1
        };
        let (exponent_text, exponent_length) = exponent_text(scientific);
        room[at + mantissa_length..at + mantissa_length + 4]
            .copy_from_slice(&exponent_text.to_le_bytes());
        mantissa_length + exponent_length
    }
}

/// Stores `bytes` (from the lowest) in `room` from `at`.
#[inline]
fn store(room: &mut [u8; ROOM_BYTES], at: usize, bytes: u64) {
    room[at..at + 8].copy_from_slice(&bytes.to_le_bytes());
}

/// `0` in each byte of a `u64`.
const ASCII_ZEROS: u64 = 0x3030_3030_3030_3030;

/// `e+13`, `e-7`: the text of `exponent` (from -45 to 38) after a mantissa, as bytes from the
/// lowest of a `u32`, and its length.
#[inline]
fn exponent_text(exponent: i32) -> (u32, usize) {
    let sign = if exponent < 0 { b'-' } else { b'+' };
    let magnitude = exponent.unsigned_abs();
    let (tens, ones) = (magnitude / 10, magnitude % 10);
    let head = u32::from(b'e') | u32::from(sign) << 8;
    if tens == 0 {
        (head | (u32::from(b'0') + ones) << 16, 3)
    } else {
        (
            head | (u32::from(b'0') + tens) << 16 | (u32::from(b'0') + ones) << 24,
            4,
        )
    }
}

/// `digits` (below 10^8) as its eight decimal digits, each in a byte from 0 to 9, the first
/// digit in the lowest byte.
#[inline]
fn eight_digits(digits: u32) -> u64 {
    // Two halves of four digits, each split into two of two digits, each into two digits;
    // every division by a multiply and a shift, exact in these ranges, and in lanes that do
    // not carry into each other.
    let fours = u64::from(digits / 10_000) | u64::from(digits % 10_000) << 32;
    let hundreds = ((fours * 10_486) >> 20) & 0x0000_007F_0000_007F;
    let twos = hundreds | (fours - 100 * hundreds) << 16;
    let tens = ((twos * 103) >> 10) & 0x000F_000F_000F_000F;
    tens | (twos - 10 * tens) << 8
}

/// `digits` (eight decimal digits as [`eight_digits`] gives them, below 10^8 - 1) plus one,
/// the same way: the carry goes from the last digit (the highest byte) towards the first.
#[inline]
fn plus_one(digits: u64) -> u64 {
    // The last digit lowest, and 246 added to every digit: a digit that reaches ten carries
    // out of its byte, leaving 0; the others keep their 246, which is taken back off.
    let sum = digits.swap_bytes().wrapping_add(0xF6F6_F6F6_F6F6_F6F7);
    let high_bits = sum & 0x8080_8080_8080_8080;
    let not_carried = high_bits | (high_bits - (high_bits >> 7));
    (sum - (not_carried & 0xF6F6_F6F6_F6F6_F6F6)).swap_bytes()
}

/// A positive decimal number, `(10 × (tens + tens_rounded_up) + ones) × 10^exponent` with
/// `ones` from 0 to 9: its digits are those of `tens` or `tens + 1`, worked out before it is
/// known which, and maybe one more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shortest {
    tens: u32,
    tens_rounded_up: bool,
    ones: u32,
    exponent: i32,
}

/// The shortest decimal that reads back as the f32 of `bits` (positive, finite, not zero),
/// the closest to it among the shortest (ties to an even significand): Schubfach.
#[inline]
fn shortest(bits: u32) -> Shortest {
    let Binary {
        c,
        lower_neighbour_nearer,
        scaling: Scaling { k, shift, power },
    } = binary(bits);
    // Its rounding interval, in quarters of 2^q: from `4c - 2` (or `4c - 1` at a power of two,
    // whose lower neighbour is nearer) to `4c + 2`, ends included when c is even.
    let even = c % 2 == 0;
    // The interval's ends and middle times 10^-k, in quarters, rounded to odd; the ends'
    // products are the middle's plus or minus a power of ten by a power of two.
    let middle = u128::from(power) * u128::from((4 * c) << shift);
    let upper_step = u128::from(power) * u128::from(2u32 << shift);
    let lower_step =
        u128::from(power) * u128::from((2 - u32::from(lower_neighbour_nearer)) << shift);
    let lower = round_to_odd(middle - lower_step) + u32::from(!even);
    let scaled = round_to_odd(middle);
    let upper = round_to_odd(middle + upper_step) - u32::from(!even);
    // The candidates are worked out and one is picked without a branch: which one it is
    // depends on the value's last bits, and a mispredicted branch cost more than the work.
    let s = scaled / 4;
    let tens = s / 10;
    // A shorter candidate, a multiple of ten, if one of the two around the value lies in the
    // interval (at most one does), and s has more than one digit.
    let below_inside = lower <= 40 * tens;
    let above_inside = 40 * tens + 40 <= upper;
    let shorter_inside = (s >= 10) & (below_inside != above_inside);
    let shorter_above = above_inside;
    // Else the one of s and s + 1 in the interval, or if both are, the nearer (ties to even).
    let below_inside = lower <= 4 * s;
    let above_inside = 4 * s + 4 <= upper;
    let half = 4 * s + 2;
    let nearer_above = (scaled > half) | ((scaled == half) & (s % 2 == 1));
    let one_inside = below_inside != above_inside;
    let above = (one_inside & above_inside) | (!one_inside & nearer_above);
    // Its ones, and whether they carry into the tens.
    let ones = s - 10 * tens + u32::from(above);
    let carry = ones == 10;
    let keep_ones = !(shorter_inside | carry);
    Shortest {
        tens,
        tens_rounded_up: (shorter_inside & shorter_above) | (!shorter_inside & carry),
        ones: ones & u32::from(keep_ones).wrapping_neg(),
        exponent: k,
    }
}

/// A positive f32 as `c × 2^q`, and how [`shortest`] scales it to decimal.
#[derive(Debug, Clone, Copy)]
struct Binary {
    /// The significand as an integer (below 2^24).
    c: u32,
    /// Whether the value is a power of two above the least normal, whose lower neighbour is
    /// nearer than its upper one.
    lower_neighbour_nearer: bool,
    /// Its [`SCALINGS`] entry.
    scaling: Scaling,
}

/// The [`Binary`] form of the f32 of `bits` (positive, finite, not zero).
#[inline(always)]
fn binary(bits: u32) -> Binary {
    let fraction = bits & ((1 << SIGNIFICAND_BITS) - 1);
    let biased_exponent = (bits >> SIGNIFICAND_BITS) & 0xFF;
    // value = c × 2^q, q = max(biased_exponent, 1) - 150
    let c = if biased_exponent == 0 {
        fraction
    } else {
        fraction | 1 << SIGNIFICAND_BITS
    };
    let lower_neighbour_nearer = fraction == 0 && biased_exponent > 1;
    Binary {
        c,
        lower_neighbour_nearer,
        scaling: SCALINGS[2 * biased_exponent as usize + usize::from(lower_neighbour_nearer)],
    }
}

/// How [`shortest`] scales a value `c × 2^q` to its decimal digits: `power` is `10^-k` to 64
/// bits ([`POWERS_OF_TEN_SIGNIFICANDS`]) and `shift` such that `power × (4c << shift) / 2^64`
/// is `4c × 2^q × 10^-k`, the value times `10^-k` in quarters.
#[derive(Debug, Clone, Copy)]
struct Scaling {
    k: i32,
    shift: u32,
    power: u64,
}

/// The [`Scaling`] of each biased exponent `e` at `2e` and, when the value is a power of two
/// (whose lower neighbour is nearer), at `2e + 1`: `k = floor(log10(2^q))` or
/// `floor(log10(3/4 × 2^q))`.
const SCALINGS: [Scaling; 512] = {
    let mut scalings = [Scaling {
        k: 0,
        shift: 0,
        power: 0,
    }; 512];
    let mut i = 0;
    while i < 512 {
        let biased_exponent = (i / 2) as i32;
        let power_of_two = i % 2 == 1;
        let q = if biased_exponent == 0 {
            1
        } else {
            biased_exponent
        } - EXPONENT_BIAS;
        let k = (q * 1_262_611 - if power_of_two { 524_031 } else { 0 }) >> 22;
        scalings[i] = Scaling {
            k,
            shift: (q + floor_log2_pow10(-k) + 1) as u32,
            power: POWERS_OF_TEN_SIGNIFICANDS[(-k - MIN_POWER) as usize],
        };
        i += 1;
    }
    scalings
};

/// floor(log2(10^e)), for |e| below 1000.
const fn floor_log2_pow10(e: i32) -> i32 {
    (e * 1_741_647) >> 19
}

/// `floor(product / 2^64)` (of a power of ten by a value below 2^32), with its lowest bit set
/// when inexact (as far as the product's bits from 2^32 up tell, which Schubfach proves
/// enough).
#[inline]
fn round_to_odd(product: u128) -> u32 {
    let high = (product >> 64) as u32;
    let middle = (product >> 32) as u32;
    high | u32::from(middle > 1)
}

/// The exponent of the first of [`POWERS_OF_TEN_SIGNIFICANDS`].
const MIN_POWER: i32 = -31;

/// 10^e for e from -31 to 45 as 64 bits with the highest set, rounded up:
/// `ceil(10^e × 2^(63 - floor(log2(10^e))))` (exact from 10^0 to 10^27).
const POWERS_OF_TEN_SIGNIFICANDS: [u64; 77] = [
    0x81CE_B32C_4B43_FCF5, // 10^-31
    0xA242_5FF7_5E14_FC32, // 10^-30
    0xCAD2_F7F5_359A_3B3F, // 10^-29
    0xFD87_B5F2_8300_CA0E, // 10^-28
    0x9E74_D1B7_91E0_7E49, // 10^-27
    0xC612_0625_7658_9DDB, // 10^-26
    0xF796_87AE_D3EE_C552, // 10^-25
    0x9ABE_14CD_4475_3B53, // 10^-24
    0xC16D_9A00_9592_8A28, // 10^-23
    0xF1C9_0080_BAF7_2CB2, // 10^-22
    0x971D_A050_74DA_7BEF, // 10^-21
    0xBCE5_0864_9211_1AEB, // 10^-20
    0xEC1E_4A7D_B695_61A6, // 10^-19
    0x9392_EE8E_921D_5D08, // 10^-18
    0xB877_AA32_36A4_B44A, // 10^-17
    0xE695_94BE_C44D_E15C, // 10^-16
    0x901D_7CF7_3AB0_ACDA, // 10^-15
    0xB424_DC35_095C_D810, // 10^-14
    0xE12E_1342_4BB4_0E14, // 10^-13
    0x8CBC_CC09_6F50_88CC, // 10^-12
    0xAFEB_FF0B_CB24_AAFF, // 10^-11
    0xDBE6_FECE_BDED_D5BF, // 10^-10
    0x8970_5F41_36B4_A598, // 10^-9
    0xABCC_7711_8461_CEFD, // 10^-8
    0xD6BF_94D5_E57A_42BD, // 10^-7
    0x8637_BD05_AF6C_69B6, // 10^-6
    0xA7C5_AC47_1B47_8424, // 10^-5
    0xD1B7_1758_E219_652C, // 10^-4
    0x8312_6E97_8D4F_DF3C, // 10^-3
    0xA3D7_0A3D_70A3_D70B, // 10^-2
    0xCCCC_CCCC_CCCC_CCCD, // 10^-1
    0x8000_0000_0000_0000, // 10^0
    0xA000_0000_0000_0000, // 10^1
    0xC800_0000_0000_0000, // 10^2
    0xFA00_0000_0000_0000, // 10^3
    0x9C40_0000_0000_0000, // 10^4
    0xC350_0000_0000_0000, // 10^5
    0xF424_0000_0000_0000, // 10^6
    0x9896_8000_0000_0000, // 10^7
    0xBEBC_2000_0000_0000, // 10^8
    0xEE6B_2800_0000_0000, // 10^9
    0x9502_F900_0000_0000, // 10^10
    0xBA43_B740_0000_0000, // 10^11
    0xE8D4_A510_0000_0000, // 10^12
    0x9184_E72A_0000_0000, // 10^13
    0xB5E6_20F4_8000_0000, // 10^14
    0xE35F_A931_A000_0000, // 10^15
    0x8E1B_C9BF_0400_0000, // 10^16
    0xB1A2_BC2E_C500_0000, // 10^17
    0xDE0B_6B3A_7640_0000, // 10^18
    0x8AC7_2304_89E8_0000, // 10^19
    0xAD78_EBC5_AC62_0000, // 10^20
    0xD8D7_26B7_177A_8000, // 10^21
    0x8786_7832_6EAC_9000, // 10^22
    0xA968_163F_0A57_B400, // 10^23
    0xD3C2_1BCE_CCED_A100, // 10^24
    0x8459_5161_4014_84A0, // 10^25
    0xA56F_A5B9_9019_A5C8, // 10^26
    0xCECB_8F27_F420_0F3A, // 10^27
    0x813F_3978_F894_0985, // 10^28
    0xA18F_07D7_36B9_0BE6, // 10^29
    0xC9F2_C9CD_0467_4EDF, // 10^30
    0xFC6F_7C40_4581_2297, // 10^31
    0x9DC5_ADA8_2B70_B59E, // 10^32
    0xC537_1912_364C_E306, // 10^33
    0xF684_DF56_C3E0_1BC7, // 10^34
    0x9A13_0B96_3A6C_115D, // 10^35
    0xC097_CE7B_C907_15B4, // 10^36
    0xF0BD_C21A_BB48_DB21, // 10^37
    0x9676_9950_B50D_88F5, // 10^38
    0xBC14_3FA4_E250_EB32, // 10^39
    0xEB19_4F8E_1AE5_25FE, // 10^40
    0x92EF_D1B8_D0CF_37BF, // 10^41
    0xB7AB_C627_0503_05AE, // 10^42
    0xE596_B7B0_C643_C71A, // 10^43
    0x8F7E_32CE_7BEA_5C70, // 10^44
    0xB35D_BF82_1AE4_F38C, // 10^45
];

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Our text of `value`, the same whether written alone or among others (whose decimals
    /// [`decimals`] works out eight or four at a time where it can): among neighbours of other
    /// kinds, `value` goes in one of the eight lanes or after them, picked by its bits.
    fn ours(value: f32) -> String {
        let mut room = [0u8; ROOM_BYTES];
        let length = write_finite(value, &mut room);
        assert!(length <= TEXT_BYTES);
        let alone = String::from_utf8(room[..length].to_vec()).unwrap();
        let mut values = [
            0.1f32,
            -3e30,
            0.0,
            f32::from_bits(1),
            7.0,
            1e-7,
            -2.5,
            1e13,
            0.3,
        ];
        let lane = value.to_bits() as usize % values.len();
        values[lane] = value;
        let mut found = [Decimal::default(); 9];
        decimals(&values, &mut found);
        let length = write_decimal(value, found[lane], &mut room);
        assert_eq!(
            room[..length],
            *alone.as_bytes(),
            "{value:e} in lane {lane}"
        );
        alone
    }

    /// zmij's text of `value`.
    fn zmijs(value: f32) -> String {
        zmij::Buffer::new().format_finite(value).to_owned()
    }

    /// Asserts that `value` and its negation are written as zmij writes them.
    fn assert_zmijs(value: f32) {
        for value in [value, -value] {
            assert_eq!(
                ours(value),
                zmijs(value),
                "{value:e} (bits {:#010x})",
                value.to_bits()
            );
        }
    }

    /// `value` and the `steps` floats on either side of it.
    fn around(value: f32, steps: usize) -> impl Iterator<Item = f32> {
        let up = std::iter::successors(Some(value), |v| Some(v.next_up())).take(steps + 1);
        let down = std::iter::successors(Some(value), |v| Some(v.next_down())).take(steps + 1);
        up.chain(down.skip(1)).filter(|v| v.is_finite())
    }

    #[test]
    fn zero_subnormals_and_the_extremes_are_written_as_zmij_writes_them() {
        assert_eq!(ours(0.0), "0.0");
        assert_eq!(ours(-0.0), "-0.0");
        let smallest_subnormal = f32::from_bits(1);
        let largest_subnormal = f32::from_bits(0x007F_FFFF);
        for value in [
            smallest_subnormal,
            largest_subnormal,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::EPSILON,
            1.0,
            0.5,
            2.0,
        ] {
            around(value, 64).for_each(assert_zmijs);
        }
        // Every power of two, and the subnormals' every bit alone.
        (-149..=127).for_each(|e| assert_zmijs(2f32.powi(e)));
        (0..23).for_each(|bit| assert_zmijs(f32::from_bits(1 << bit)));
    }

    #[test]
    fn powers_of_ten_and_their_neighbours_are_written_as_zmij_writes_them() {
        for e in -45..=38 {
            let power: f32 = format!("1e{e}").parse().unwrap();
            around(power, 16).for_each(assert_zmijs);
        }
    }

    #[test]
    fn every_length_at_every_decimal_exponent_is_written_as_zmij_writes_it() {
        // Both sides of each switch between fixed and exponent notation (-6 | -7, 12 | 13),
        // with one to nine digits, and the values next to them.
        let digits = "123456789";
        for e in -46..=39 {
            for length in 1..=9 {
                let text = format!("{}.{}e{e}", &digits[..1], &digits[1..length]);
                let Ok(value) = text.parse::<f32>() else {
                    continue;
                };
                around(value, 2).for_each(assert_zmijs);
                let nines: f32 = format!("9.{}e{e}", &"99999999"[..length - 1])
                    .parse()
                    .unwrap();
                around(nines, 2).for_each(assert_zmijs);
            }
        }
    }

    #[test]
    fn every_997th_float_from_0_to_1_is_written_as_zmij_writes_it() {
        // Every 997th float from 0 to 1 (about a million of the 1.07 billion), both signs.
        let one = 1f32.to_bits();
        for bits in (0..=one).step_by(997).chain([one]) {
            assert_zmijs(f32::from_bits(bits));
        }
    }

    #[test]
    fn the_powers_of_ten_from_the_minus_19th_to_the_27th_are_rounded_up_to_64_bits() {
        // The table's other entries (10^-31 to 10^-20, 10^28 to 10^45) are checked only
        // through the texts they give, against zmij's, in the tests around this one.
        // Exact ones, shifted to their highest bit.
        for e in 0..=27u32 {
            let power = 10u128.pow(e);
            let significand = power << (127 - power.ilog2()) >> 64;
            assert_eq!(significand << 64 >> (127 - power.ilog2()), power, "10^{e}");
            assert_eq!(
                POWERS_OF_TEN_SIGNIFICANDS[(e as i32 - MIN_POWER) as usize],
                significand as u64,
                "10^{e}"
            );
        }
        // Inverse ones: g × 10^n is the least multiple of 10^n reaching 2^(63 + bits).
        for n in 1..=19u32 {
            let power = 10u128.pow(n);
            let g = u128::from(POWERS_OF_TEN_SIGNIFICANDS[(-(n as i32) - MIN_POWER) as usize]);
            let target = 1u128 << (63 + power.ilog2() + 1);
            assert!(g * power >= target && (g - 1) * power < target, "10^-{n}");
        }
    }

    /// Asserts that each finite value of `values`, written from the decimal [`decimals`] gives
    /// it among the others, is zmij's text.
    fn assert_decimals_are_zmijs(values: &[f32]) {
        let mut found = vec![Decimal::default(); values.len()];
        decimals(values, &mut found);
        let mut room = [0u8; ROOM_BYTES];
        for (lane, (&value, &decimal_of)) in values.iter().zip(&found).enumerate() {
            if value.is_finite() {
                let length = write_decimal(value, decimal_of, &mut room);
                let text = String::from_utf8_lossy(&room[..length]);
                assert_eq!(text, zmijs(value), "{value:e} at {lane} of {values:?}");
            }
        }
    }

    #[test]
    fn decimals_of_many_values_are_written_as_zmij_writes_them_at_every_length() {
        // Every length up to 17 (eight at a time, four at a time and the one to three after),
        // values of every kind in every place.
        let kinds = [
            0.0f32,
            -0.0,
            1.0,
            -0.5,
            0.123_456_79,
            -9.999_999e-7,
            3.4e38,
            1e13,
            123_456.7,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::from_bits(0x007F_FFFF),
            f32::INFINITY,
            f32::NAN,
            9.5,
            0.3,
        ];
        for length in 0..=17 {
            for offset in 0..kinds.len() {
                let values: Vec<f32> = (0..length)
                    .map(|i| kinds[(offset + i * 7) % kinds.len()])
                    .collect();
                assert_decimals_are_zmijs(&values);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_processor_running_the_tests_has_avx2_so_that_four_at_a_time_is_tested() {
        // `decimals` takes its AVX2 path only where the processor has it; the tests above
        // hold that path to zmij only when it is taken. Machines that run these tests (every
        // x86-64 server of the last decade) have it.
        assert!(std::arch::is_x86_feature_detected!("avx2"));
    }

    /// The decimals of `values` worked out every way this processor can, by lanes at a time.
    #[cfg(target_arch = "x86_64")]
    fn every_way(values: &[f32]) -> Vec<(Lanes, Vec<Decimal>)> {
        let widest = Lanes::widest();
        let mut ways = Vec::new();
        for lanes in [Lanes::One, Lanes::Four, Lanes::Eight] {
            if lanes > widest {
                break;
            }
            let mut found = vec![Decimal::default(); values.len()];
            match lanes {
                Lanes::One => one_at_a_time(values, &mut found),
                // SAFETY: the processor has what `lanes` needs: it is at most `widest`.
                #[allow(unsafe_code)]
                Lanes::Four => unsafe { avx2::decimals(values, &mut found) },
                // SAFETY: as for `Lanes::Four`.
                #[allow(unsafe_code)]
                Lanes::Eight => unsafe { avx512::decimals(values, &mut found) },
            }
            ways.push((lanes, found));
        }
        ways
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_width_works_out_the_decimals_one_at_a_time_does_around_every_exponent() {
        // Each exponent field's least and greatest significands and a middle one, its power
        // of two, subnormals, and zeros and non-finite values among them (whose decimals are
        // not used, so not compared), in runs of every length to 19: every lane of eight and
        // of four, and the runs after them.
        let mut values = Vec::new();
        for exponent in 0..=255u32 {
            for fraction in [0, 1, 0x40_0000, 0x12_3457, 0x7F_FFFF] {
                values.push(f32::from_bits(exponent << 23 | fraction));
            }
        }
        for length in 1..20 {
            for run in values.chunks(length).take(400) {
                let ways = every_way(run);
                let (_, one) = &ways[0];
                for (lanes, found) in &ways[1..] {
                    for (i, value) in run.iter().enumerate() {
                        if value.is_finite() && *value != 0.0 {
                            assert_eq!(found[i], one[i], "{value:e} at {i} of {run:?}, {lanes:?}");
                        }
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[cfg(target_arch = "x86_64")]
        #[test]
        fn every_width_works_out_the_decimals_one_at_a_time_does(
            bits in proptest::collection::vec(any::<u32>(), 0..40),
        ) {
            let values: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
            let ways = every_way(&values);
            let (_, one) = &ways[0];
            for (lanes, found) in &ways[1..] {
                for (i, value) in values.iter().enumerate() {
                    if value.is_finite() && *value != 0.0 {
                        prop_assert_eq!(found[i], one[i], "{:e} at {}, {:?}", value, i, lanes);
                    }
                }
            }
        }

        #[test]
        fn decimals_of_any_floats_are_written_as_zmij_writes_them(
            bits in proptest::collection::vec(any::<u32>(), 0..40),
        ) {
            let values: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
            assert_decimals_are_zmijs(&values);
        }

        #[test]
        fn any_finite_float_is_written_as_zmij_writes_it(bits in any::<u32>()) {
            let value = f32::from_bits(bits);
            prop_assume!(value.is_finite());
            prop_assert_eq!(ours(value), zmijs(value));
        }

        #[test]
        fn any_score_is_written_as_zmij_writes_it(value in -1f32..=1f32) {
            prop_assert_eq!(ours(value), zmijs(value));
        }
    }
}
