//! A large body's bytes appended to its buffer with streaming (non-temporal) stores, which
//! write whole lines of memory without first reading them into the cache.
//!
//! A large body is copied once, frame by frame, from hyper's read buffer into its own, and
//! read again only after all of it has arrived, on the compute threads. Written with `memcpy`
//! (glibc's, into a buffer not in the cache), that copy was 6.9% of the server's samples on
//! the 31.7 MB JSON matrix request in `perf`; with streaming stores it was 4.3%, and the
//! request took 0.96x the server's CPU in alternated runs, while 4 MB and 8 MB bodies neither
//! gained nor lost beyond the machine's noise (BENCHMARKS.md, "Large bodies copied with
//! streaming stores").
//!
//! Use [`append`] for a buffer of at least [`STREAMED_BYTES`]; a smaller body's buffer is
//! filled with `extend_from_slice`. Streaming stores are part of x86-64's baseline (SSE2), so
//! there is nothing to detect; on other processors [`append`] is `extend_from_slice`.
#![allow(unsafe_code)]

/// The capacity of a body's buffer from which [`append`] fills it: a body this large is
/// mostly out of a core's own cache (2 MiB on the Intel machine measured) by the time it is
/// read. It is the buffer's capacity that is compared, not the body's length: a buffer sized
/// for a declared length may be an eighth larger than the body (a kept one), and a buffer
/// that grows by doubling reaches 2 MiB when its body passes 1 MiB.
pub const STREAMED_BYTES: usize = 2 << 20;

/// Bytes of a line of memory: what streaming stores fill whole when they are this aligned.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
const LINE_BYTES: usize = 64;

/// Appends `data` to `buffer` (which grows if it must, as with `extend_from_slice`; callers
/// that account for the buffer's capacity reserve it first), all but the bytes before the
/// first 64-byte boundary and after the last with streaming stores, and orders those before
/// any later store, so that another thread handed the buffer sees them.
pub fn append(buffer: &mut Vec<u8>, data: &[u8]) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};

        buffer.reserve(data.len());
        let len = buffer.len();
        let source = data.as_ptr();
        // SAFETY: `buffer` holds at least `len + data.len()` bytes (just reserved), so every
        // pointer below stays within its allocation: the lines end at or before
        // `data.len()`, and the last copy takes what is left. The bytes from `len` are spare
        // capacity, which `data` (borrowed apart from `buffer`) cannot overlap. The streaming
        // stores go to 16-byte aligned addresses (`head` aligns the first line to 64). Every
        // byte from `len` to `len + data.len()` is written before the length covers it.
        // SSE2's loads and streaming stores and SSE's fence are in x86-64's baseline.
        unsafe {
            let target = buffer.as_mut_ptr().add(len);
            let head = target.align_offset(LINE_BYTES).min(data.len());
            std::ptr::copy_nonoverlapping(source, target, head);
            let lines = (data.len() - head) / LINE_BYTES;
            for line in 0..lines {
                let at = head + LINE_BYTES * line;
                for quarter in [0, 16, 32, 48] {
                    let bytes = _mm_loadu_si128(source.add(at + quarter).cast::<__m128i>());
                    _mm_stream_si128(target.add(at + quarter).cast::<__m128i>(), bytes);
                }
            }
            let streamed = head + LINE_BYTES * lines;
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
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    buffer.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the spare capacity is filled with before an append, to see any byte written past
    /// the data.
    const UNTOUCHED: u8 = 0xEE;

    #[test]
    fn appended_bytes_are_the_data_at_every_alignment_and_length_and_nothing_past_them() {
        let data: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
        for already in 0..80 {
            for length in (0..140).chain([191, 192, 193, 255, 256, 257, 300]) {
                let mut buffer = vec![UNTOUCHED; already + length + 200];
                buffer.truncate(0);
                buffer.extend((0..already).map(|i| i as u8 ^ 0xA5));
                let mut want = buffer.clone();
                let from = already % 5;
                let piece = &data[from..from + length];
                append(&mut buffer, piece);
                want.extend_from_slice(piece);
                assert_eq!(buffer, want, "{already} bytes held, {length} appended");
                let past = buffer.spare_capacity_mut();
                // SAFETY: the whole capacity was initialised to `UNTOUCHED` above.
                let past: Vec<u8> = past
                    .iter()
                    .map(|byte| unsafe { byte.assume_init() })
                    .collect();
                assert!(
                    past.iter().all(|&byte| byte == UNTOUCHED),
                    "{already} bytes held, {length} appended: a byte written past them"
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
