//! The SSE2 steps of [`super::usual`]: 16 bytes of text as one register, which of them are
//! digits, and the value of 16 digits at once.
//!
//! SSE2 is part of x86-64 itself: every x86-64 processor has it and the compiler assumes it
//! for the target, so the intrinsics are sound wherever this module is compiled (only where
//! `target_arch = "x86_64"` and `target_feature = "sse2"` both hold, so the assumption is
//! checked). They are `unsafe` to call only because they are declared with
//! `#[target_feature]`; each call here is of that kind, none reads memory through a pointer.
//! [`Sixteen::value`] expects digits' values only (0 to 9 a byte, as [`Sixteen::first`]
//! leaves them, the bytes past the digits set to zero): other bytes would saturate its sums.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_cvtsi128_si64, _mm_madd_epi16, _mm_min_epu8,
    _mm_movemask_epi8, _mm_packs_epi32, _mm_set_epi16, _mm_set1_epi8, _mm_setzero_si128,
    _mm_sub_epi8, _mm_unpackhi_epi8, _mm_unpacklo_epi8,
};

/// 16 bytes of text, or of digits' values, in one register.
#[derive(Clone, Copy)]
pub(super) struct Sixteen(__m128i);

impl Sixteen {
    /// The 16 bytes of `bytes` from `at`; `None` past its end.
    #[inline(always)]
    pub(super) fn load(bytes: &[u8], at: usize) -> Option<Self> {
        let chunk: [u8; 16] = bytes.get(at..at + 16)?.try_into().ok()?;
        Some(Self(bytemuck::cast(chunk)))
    }

    /// Each byte's value as a digit (`'0'` is 0; other bytes give other values), and a mask
    /// with bit `i` set when byte `i` is an ASCII digit.
    #[inline(always)]
    pub(super) fn digits(self) -> (Self, u32) {
        // SAFETY: SSE2 intrinsics on registers, on a target that always has SSE2 (module doc).
        unsafe {
            let values = _mm_sub_epi8(self.0, _mm_set1_epi8(b'0' as i8));
            let is_digit = _mm_cmpeq_epi8(_mm_min_epu8(values, _mm_set1_epi8(9)), values);
            (Self(values), _mm_movemask_epi8(is_digit) as u32)
        }
    }

    /// A mask with bit `i` set when byte `i` is zero (for digits' values: a `'0'`).
    #[inline(always)]
    pub(super) fn zeros(self) -> u32 {
        // SAFETY: as in `digits`.
        unsafe { _mm_movemask_epi8(_mm_cmpeq_epi8(self.0, _mm_setzero_si128())) as u32 }
    }

    /// These bytes with all but the first `kept` (at most 16; `None` past it) set to zero.
    #[inline(always)]
    pub(super) fn first(self, kept: usize) -> Option<Self> {
        if kept > 16 {
            return None;
        }
        let mask = Self::load(&super::KEEP_FIRST, 32 - kept)?;
        // SAFETY: as in `digits`.
        Some(Self(unsafe { _mm_and_si128(self.0, mask.0) }))
    }

    /// The value of these 16 digits, one a byte (0 ..= 9, the first the most significant):
    /// pairs, then fours, then eights, each by multiply-adds of 16-bit lanes.
    #[inline(always)]
    pub(super) fn value(self) -> u64 {
        // SAFETY: as in `digits`.
        let eights = unsafe {
            let zero = _mm_setzero_si128();
            let tens = _mm_set_epi16(1, 10, 1, 10, 1, 10, 1, 10);
            let pairs = _mm_packs_epi32(
                _mm_madd_epi16(_mm_unpacklo_epi8(self.0, zero), tens),
                _mm_madd_epi16(_mm_unpackhi_epi8(self.0, zero), tens),
            );
            let fours = _mm_madd_epi16(pairs, _mm_set_epi16(1, 100, 1, 100, 1, 100, 1, 100));
            let fours = _mm_packs_epi32(fours, fours);
            let ten_thousands = _mm_set_epi16(1, 10_000, 1, 10_000, 1, 10_000, 1, 10_000);
            _mm_cvtsi128_si64(_mm_madd_epi16(fours, ten_thousands)) as u64
        };
        (eights & 0xFFFF_FFFF) * 100_000_000 + (eights >> 32)
    }
}
