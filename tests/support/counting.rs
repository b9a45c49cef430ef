//! A global allocator that counts: the bytes the system allocator holds for the process now,
//! and the most at once while some work runs. For test binaries that measure memory against
//! admission's estimates (`tests/parse_memory.rs`, `tests/job_memory.rs`); each declares it:
//!
//! ```ignore
//! #[path = "support/counting.rs"]
//! mod counting;
//! #[global_allocator]
//! static ALLOCATOR: counting::Counting = counting::Counting;
//! ```
//!
//! Buffers count at the sizes asked for, which they may not have touched yet (not what the
//! allocator rounds them up to: jemalloc, in the release binary, holds each in a size
//! class, up to twice a tiny size and at most a quarter more past 64 bytes); a buffer
//! regrown counts at its new size from then on. The counters are the process's: a binary
//! using it runs one test, so that no other thread allocates meanwhile.

// A global allocator is unsafe to implement; this one only counts what `System` does.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes allocated now and the most since [`peak_of`]
/// began.
pub struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn held(more: usize) {
    let now = HELD.fetch_add(more, Ordering::Relaxed) + more;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call goes to `System` with its arguments unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        held(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        held(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if new_size >= layout.size() {
            held(new_size - layout.size());
        } else {
            HELD.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        moved
    }
}

/// The bytes allocated now.
#[allow(dead_code)]
pub fn held_now() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// The most bytes allocated at once while `work` runs, beyond those allocated before.
pub fn peak_of(work: impl FnOnce()) -> usize {
    let before = HELD.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    work();
    PEAK.load(Ordering::Relaxed).saturating_sub(before)
}
