//! Large body buffers kept after their request for the next large body
//! (`--kept-body-bytes`).
//!
//! A buffer of 8 MiB or more comes from the allocator as fresh pages and goes back to the
//! system when freed, so every large body paid for faulting its buffer in anew: 14 ms of
//! the 97 ms a 31.7 MB JSON matrix request took (BENCHMARKS.md, "Kept body buffers").
//! [`KeptBuffers`] keeps buffers of [`MIN_KEPT`] or more, up to a bound of bytes, for a
//! short while after their request, and hands one to the next body it fits.
//!
//! Use [`KeptBuffers::take`] for a buffer of a declared length, [`KeptBuffers::wrap`] to
//! send the filled buffer on as [`Bytes`] that come back here when the last reference
//! drops, [`KeptBuffers::keep`] to give back a buffer whose body was never finished (its
//! request refused or cancelled), and [`KeptBuffers::trim`] every second or so to let
//! buffers unused for [`KEPT_FOR`] go. Only a buffer at most an eighth larger than the bytes
//! it holds is kept ([`KeptBuffers::would_keep`]), and [`Buffer`](super::Buffer) takes one
//! at most an eighth larger than its body's declared length ([`largest_for`]): bodies of one
//! kind differ a little in length, while a buffer grown by doubling or one whose body
//! stopped short would rarely fit the next. Kept buffers are outside the memory budget, like
//! the tables: the README's "Memory" says so.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;

use crate::metrics::Metrics;

/// Buffers smaller than this are the allocator's to reuse (it keeps them mapped itself).
pub const MIN_KEPT: usize = 1 << 20;

/// How long a kept buffer may go unused before it is freed.
pub const KEPT_FOR: Duration = Duration::from_secs(2);

/// The largest buffer worth keeping for a body of `len` bytes, or handing to one: an eighth
/// larger (bodies of one kind differ a little in length).
pub fn largest_for(len: usize) -> usize {
    len.saturating_add(len / 8)
}

/// Body buffers kept for reuse, at most `max_bytes` of them together.
#[derive(Debug)]
pub struct KeptBuffers {
    kept: Mutex<Kept>,
    max_bytes: usize,
    metrics: Arc<Metrics>,
}

/// The buffers kept, each with when it was put back, oldest first.
#[derive(Debug, Default)]
struct Kept {
    buffers: Vec<(Vec<u8>, Instant)>,
    bytes: usize,
}

impl Kept {
    /// Removes the buffer at `index`.
    fn remove(&mut self, index: usize) -> Vec<u8> {
        let (buffer, _) = self.buffers.remove(index);
        self.bytes -= buffer.capacity();
        buffer
    }
}

impl KeptBuffers {
    /// Keeps at most `max_bytes` of buffers (0: none), reporting them to `metrics`.
    pub fn new(max_bytes: usize, metrics: Arc<Metrics>) -> Self {
        KeptBuffers {
            kept: Mutex::new(Kept::default()),
            max_bytes,
            metrics,
        }
    }

    /// An empty buffer for a body of `len` bytes: the smallest kept one that holds `len`
    /// and no more than `at_most` bytes, if `charge` takes its capacity, or a new empty
    /// `Vec` when none does or `len` is below [`MIN_KEPT`].
    ///
    /// `charge` is given the capacity of the buffer chosen and says whether the caller holds
    /// it now (in its memory reservation); when not, the buffer stays kept, its time and
    /// place unchanged. It is called under the lock every take and keep wait on: it must be
    /// quick (an atomic update, as growing a reservation is). A new `Vec`'s capacity is the
    /// caller's to reserve.
    pub fn take(&self, len: usize, at_most: usize, charge: impl FnOnce(usize) -> bool) -> Vec<u8> {
        if len < MIN_KEPT {
            return Vec::new();
        }
        let mut kept = self.lock();
        let best = kept
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, (buffer, _))| (len..=at_most).contains(&buffer.capacity()))
            .min_by_key(|(_, (buffer, _))| buffer.capacity())
            .map(|(index, (buffer, _))| (index, buffer.capacity()));
        // A larger one would not be charged either.
        let Some((index, _)) = best.filter(|&(_, capacity)| charge(capacity)) else {
            return Vec::new();
        };
        let mut buffer = kept.remove(index);
        self.metrics.kept_body_bytes(kept.bytes);
        drop(kept);
        buffer.clear();
        buffer
    }

    /// `buffer`, filled, as [`Bytes`]; when the last of them drops, the buffer comes back to
    /// be kept if [`KeptBuffers::would_keep`] says so (else it is freed then, as any).
    pub fn wrap(self: &Arc<Self>, buffer: Vec<u8>) -> Bytes {
        if !self.would_keep(&buffer) {
            return Bytes::from(buffer);
        }
        Bytes::from_owner(Returning {
            buffer,
            bodies: Arc::clone(self),
        })
    }

    /// Keeps `buffer` for the next body, making room by freeing the oldest kept ones; one
    /// this does not keep ([`KeptBuffers::would_keep`]) is freed at once.
    pub fn keep(&self, buffer: Vec<u8>) {
        if !self.would_keep(&buffer) {
            return;
        }
        let size = buffer.capacity();
        let mut freed = Vec::new();
        {
            let mut kept = self.lock();
            while kept.bytes + size > self.max_bytes {
                freed.push(kept.remove(0));
            }
            kept.bytes += size;
            kept.buffers.push((buffer, Instant::now()));
            self.metrics.kept_body_bytes(kept.bytes);
        }
        // Freed outside the lock: unmapping tens of megabytes takes a while.
        drop(freed);
    }

    /// Whether `buffer` would be kept: of [`MIN_KEPT`] or more, within the bound, and at
    /// most an eighth larger than the bytes it holds ([`largest_for`]). A buffer grown by
    /// doubling (a body without a declared length), or one whose body stopped short (a
    /// client that declared more than it sent), would rarely fit the next body, and would
    /// push out buffers that do.
    pub fn would_keep(&self, buffer: &Vec<u8>) -> bool {
        let size = buffer.capacity();
        (MIN_KEPT..=self.max_bytes).contains(&size) && size <= largest_for(buffer.len())
    }

    /// Frees the buffers unused for [`KEPT_FOR`] or longer at `now`.
    pub fn trim(&self, now: Instant) {
        let mut freed = Vec::new();
        {
            let mut kept = self.lock();
            while kept
                .buffers
                .first()
                .is_some_and(|(_, since)| now.saturating_duration_since(*since) >= KEPT_FOR)
            {
                freed.push(kept.remove(0));
            }
            self.metrics.kept_body_bytes(kept.bytes);
        }
        drop(freed);
    }

    /// Bytes of the buffers kept now.
    pub fn kept_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // The lock guards plain bookkeeping that a panic cannot leave half-done.
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A body's buffer on its way back to [`KeptBuffers`] when dropped.
struct Returning {
    buffer: Vec<u8>,
    bodies: Arc<KeptBuffers>,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        self.bodies.keep(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Admission;
    use crate::tables::Tables;

    fn kept(max_bytes: usize) -> Arc<KeptBuffers> {
        let admission = Admission::new(1, 1, 1 << 30);
        let metrics = Arc::new(Metrics::new(admission, Arc::new(Tables::new(None))));
        Arc::new(KeptBuffers::new(max_bytes, metrics))
    }

    /// A filled buffer of `len` bytes, sent on and dropped; gives where its bytes were.
    fn used(bodies: &Arc<KeptBuffers>, len: usize) -> *const u8 {
        let mut buffer = bodies.take(len, len, |_| true);
        buffer.reserve_exact(len);
        buffer.resize(len, 7);
        let bytes = bodies.wrap(buffer);
        assert_eq!(bytes.len(), len);
        assert!(bytes.iter().all(|&b| b == 7));
        bytes.as_ptr()
    }

    /// Bodies of `lens` bytes, all in use at once, then dropped in that order.
    fn in_use_then_dropped(bodies: &Arc<KeptBuffers>, lens: &[usize]) {
        let held: Vec<Bytes> = lens
            .iter()
            .map(|&len| {
                let mut buffer = bodies.take(len, len, |_| true);
                buffer.resize(len, 0);
                bodies.wrap(buffer)
            })
            .collect();
        drop(held);
    }

    #[test]
    fn a_large_buffer_is_handed_to_the_next_body_it_fits() {
        let bodies = kept(64 << 20);
        let first = used(&bodies, 3 << 20);
        assert_eq!(bodies.kept_bytes(), 3 << 20);
        let again = bodies.take(3 << 20, 3 << 20, |_| true);
        assert_eq!(again.as_ptr(), first);
        assert!(again.is_empty() && again.capacity() == 3 << 20);
        assert_eq!(bodies.kept_bytes(), 0);
    }

    #[test]
    fn a_kept_buffer_is_not_handed_out_past_the_bound_asked_or_smaller_than_the_body() {
        let bodies = kept(64 << 20);
        used(&bodies, 4 << 20);
        assert_eq!(
            bodies.take(5 << 20, 8 << 20, |_| true).capacity(),
            0,
            "too small"
        );
        assert_eq!(
            bodies.take(2 << 20, 3 << 20, |_| true).capacity(),
            0,
            "past the bound asked"
        );
        assert_eq!(bodies.take(2 << 20, 4 << 20, |_| true).capacity(), 4 << 20);
    }

    #[test]
    fn the_smallest_buffer_that_fits_is_taken() {
        let bodies = kept(64 << 20);
        in_use_then_dropped(&bodies, &[8 << 20, 2 << 20, 4 << 20]);
        assert_eq!(bodies.take(3 << 20, 16 << 20, |_| true).capacity(), 4 << 20);
        assert_eq!(bodies.take(1 << 20, 16 << 20, |_| true).capacity(), 2 << 20);
    }

    #[test]
    fn small_buffers_and_a_zero_bound_keep_nothing() {
        let bodies = kept(64 << 20);
        used(&bodies, MIN_KEPT - 1);
        assert_eq!(bodies.kept_bytes(), 0);
        let none = self::kept(0);
        used(&none, 4 << 20);
        assert_eq!(none.kept_bytes(), 0);
    }

    #[test]
    fn the_bound_frees_the_oldest_buffers_first() {
        let bodies = kept(10 << 20);
        in_use_then_dropped(&bodies, &[4 << 20, 5 << 20, 3 << 20]);
        // 4 + 5 fit; 3 more pushes out the oldest (4).
        assert_eq!(bodies.kept_bytes(), 8 << 20);
        assert_eq!(bodies.take(4 << 20, 4 << 20, |_| true).capacity(), 0);
        used(&bodies, 11 << 20);
        assert_eq!(
            bodies.kept_bytes(),
            8 << 20,
            "a buffer past the bound is not kept"
        );
    }

    #[test]
    fn buffers_unused_for_a_while_are_freed() {
        let bodies = kept(64 << 20);
        used(&bodies, 2 << 20);
        bodies.trim(Instant::now());
        assert_eq!(bodies.kept_bytes(), 2 << 20);
        bodies.trim(Instant::now() + KEPT_FOR);
        assert_eq!(bodies.kept_bytes(), 0);
    }

    #[test]
    fn a_buffer_comes_back_only_when_its_last_reference_drops() {
        let bodies = kept(64 << 20);
        let mut buffer = bodies.take(2 << 20, 2 << 20, |_| true);
        buffer.resize(2 << 20, 1);
        let bytes = bodies.wrap(buffer);
        let part = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(bodies.kept_bytes(), 0);
        assert_eq!(&part[..], &[1; 10]);
        drop(part);
        assert_eq!(bodies.kept_bytes(), 2 << 20);
    }
}
