//! A large body's bytes appended to its buffer with streaming (non-temporal) stores, which
//! write whole lines of memory without first reading them into the cache.
//!
//! A large body is copied once, frame by frame, from hyper's read buffer into its own, and
//! read again only after all of it has arrived, when its first megabytes have long left the
//! cache. An ordinary copy reads every line of the destination into the cache before writing
//! it, and evicts what was there; streaming stores skip that read. On the 31.7 MB JSON matrix
//! request the copy's share of the server's samples in `perf` went from 6.9% (`memcpy`) to
//! 4.3%, and `bench/ab.py` served 1.09x the requests (BENCHMARKS.md, "Large bodies copied
//! with streaming stores").
//!
//! Use [`append`] for a buffer sized for a body of at least [`STREAMED_BYTES`]; a smaller
//! body is parsed while it is still in the cache, and is appended with `extend_from_slice`.
//! Streaming stores are part of x86-64's baseline (SSE2), so there is nothing to detect; on
//! other processors [`append`] is `extend_from_slice`.
#![allow(unsafe_code)]

/// Bodies from which [`append`] is worth it: larger than a core's cache (1-2 MiB on the
/// processors measured), so they are out of it by the time they are read.
pub const STREAMED_BYTES: usize = 2 << 20;

/// Appends `data` to `buffer` (which grows if it must, as `extend_from_slice` would), all
/// but the few bytes before the first 16-byte boundary and after the last with streaming
/// stores, and orders them before any later store (so another thread that is handed the
/// buffer sees them).
pub fn append(buffer: &mut Vec<u8>, data: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};

        buffer.reserve(data.len());
        let len = buffer.len();
        let source = data.as_ptr();
        // SAFETY: `buffer` holds at least `len + data.len()` bytes (just reserved), so every
        // pointer below stays within its allocation, and the bytes from `len` are spare
        // capacity, which `data` (borrowed apart from `buffer`) cannot overlap. The streamed
        // stores go to 16-byte aligned addresses (`head` aligns the first one). Every byte
        // from `len` to `len + data.len()` is written before the length covers it. SSE2's
        // loads, streaming stores and fence are in x86-64's baseline.
        unsafe {
            let target = buffer.as_mut_ptr().add(len);
            let head = target.align_offset(16).min(data.len());
            std::ptr::copy_nonoverlapping(source, target, head);
            let lines = (data.len() - head) / 16;
            for line in 0..lines {
                let at = head + 16 * line;
                let bytes = _mm_loadu_si128(source.add(at).cast::<__m128i>());
                _mm_stream_si128(target.add(at).cast::<__m128i>(), bytes);
            }
            let streamed = head + 16 * lines;
            std::ptr::copy_nonoverlapping(
                source.add(streamed),
                target.add(streamed),
                data.len() - streamed,
            );
            // Streaming stores are not ordered with later ones without it.
            _mm_sfence();
            buffer.set_len(len + data.len());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    buffer.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_bytes_are_the_data_at_every_alignment_and_length() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for already in 0..40 {
            for length in (0..70).chain([127, 128, 129, 255, 256, 257, 300]) {
                let mut buffer: Vec<u8> = (0..already).map(|i| i as u8 ^ 0xA5).collect();
                let mut want = buffer.clone();
                let piece = &data[already % 5..already % 5 + length.min(300 - already % 5)];
                append(&mut buffer, piece);
                want.extend_from_slice(piece);
                assert_eq!(
                    buffer,
                    want,
                    "{already} bytes held, {} appended",
                    piece.len()
                );
            }
        }
    }

    #[test]
    fn a_buffer_without_room_grows_to_take_the_data() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut buffer = Vec::new();
        for chunk in data.chunks(333) {
            append(&mut buffer, chunk);
        }
        assert_eq!(buffer, data);
    }
}
