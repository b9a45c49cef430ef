//! Admission control: compute permits, a bounded wait queue and a memory budget.
//!
//! A request first reserves memory for its body as the body arrives, then takes a compute
//! permit (waiting in the queue if all are taken), then replaces its reservation with the
//! estimate of what its computation holds (inputs, scratch and output). Anything past the
//! queue or the budget is refused at once rather than after waiting, so the service answers
//! overload in milliseconds and its memory stays bounded. Everything is released on drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every permit is taken and the queue is full.
    QueueFull,
    /// The memory budget would be passed; retrying later may succeed.
    MemoryBusy {
        /// Bytes the request asked for.
        wanted: usize,
    },
    /// The request alone needs more than the whole budget; retrying cannot succeed.
    MemoryTooLarge {
        /// Bytes the request asked for.
        wanted: usize,
        /// The whole budget.
        budget: usize,
    },
}

impl Refusal {
    /// The `reason` label of the rejection metric.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::MemoryBusy { .. } => "memory_busy",
            Refusal::MemoryTooLarge { .. } => "memory_too_large",
        }
    }
}

/// The shared admission state of one server.
#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    total_permits: usize,
    max_queue: usize,
    waiting: AtomicUsize,
    budget: usize,
    reserved: AtomicUsize,
}

impl Admission {
    /// `permits` concurrent computations, `max_queue` waiting, `budget` bytes reserved at most.
    pub fn new(permits: usize, max_queue: usize, budget: usize) -> Arc<Self> {
        Arc::new(Admission {
            permits: Arc::new(Semaphore::new(permits)),
            total_permits: permits,
            max_queue,
            waiting: AtomicUsize::new(0),
            budget,
            reserved: AtomicUsize::new(0),
        })
    }

    /// Requests waiting for a permit.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Permits in use.
    pub fn computing(&self) -> usize {
        self.total_permits - self.permits.available_permits()
    }

    /// Bytes reserved.
    pub fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }

    /// An empty reservation, to grow as the request's needs become known.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            admission: Arc::clone(self),
            bytes: 0,
        }
    }

    /// A compute permit: at once if one is free, after waiting if the queue has room,
    /// else [`Refusal::QueueFull`].
    pub async fn permit(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Ok(permit);
        }
        let joined = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_queue).then_some(n + 1)
            });
        if joined.is_err() {
            return Err(Refusal::QueueFull);
        }
        // Leaves the queue however the wait ends (granted, or the request dropped).
        let _place = QueuePlace(&self.waiting);
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_closed| Refusal::QueueFull)
    }

    /// Moves the reservation from `from` to `to` bytes if the budget allows it.
    fn resize(&self, from: usize, to: usize) -> Result<(), Refusal> {
        if to <= from {
            self.reserved.fetch_sub(from - to, Ordering::AcqRel);
            return Ok(());
        }
        if to > self.budget {
            return Err(Refusal::MemoryTooLarge {
                wanted: to,
                budget: self.budget,
            });
        }
        let extra = to - from;
        self.reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(extra)
                    .filter(|&total| total <= self.budget)
            })
            .map(drop)
            .map_err(|_| Refusal::MemoryBusy { wanted: to })
    }
}

/// A place in the wait queue, left on drop.
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bytes held against the memory budget, released on drop.
#[derive(Debug)]
pub struct Reservation {
    admission: Arc<Admission>,
    bytes: usize,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `more` bytes in addition.
    pub fn grow(&mut self, more: usize) -> Result<(), Refusal> {
        self.set(self.bytes.saturating_add(more))
    }

    /// Holds exactly `bytes` (growing or shrinking).
    pub fn set(&mut self, bytes: usize) -> Result<(), Refusal> {
        self.admission.resize(self.bytes, bytes)?;
        self.bytes = bytes;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.admission
            .reserved
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn permits_are_granted_then_queued_then_refused() {
        let admission = Admission::new(1, 1, 1024);
        let first = admission.permit().await.unwrap();
        assert_eq!(admission.computing(), 1);

        let queued = {
            let admission = Arc::clone(&admission);
            tokio::spawn(async move { admission.permit().await.map(drop) })
        };
        while admission.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(admission.permit().await.err(), Some(Refusal::QueueFull));

        drop(first);
        queued.await.unwrap().unwrap();
        assert_eq!(admission.waiting(), 0);
        assert_eq!(admission.computing(), 0);
    }

    #[tokio::test]
    async fn a_request_dropped_while_queued_leaves_the_queue() {
        let admission = Admission::new(1, 1, 1024);
        let _held = admission.permit().await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(10), admission.permit()).await;
        assert!(waited.is_err());
        assert_eq!(admission.waiting(), 0);
    }

    #[test]
    fn reservations_stay_within_the_budget_and_are_released_on_drop() {
        let admission = Admission::new(1, 0, 100);
        let mut a = admission.reservation();
        a.grow(60).unwrap();
        let mut b = admission.reservation();
        assert_eq!(b.grow(50), Err(Refusal::MemoryBusy { wanted: 50 }));
        assert_eq!(b.bytes(), 0);
        b.grow(40).unwrap();
        assert_eq!(admission.reserved(), 100);
        assert_eq!(
            b.set(101),
            Err(Refusal::MemoryTooLarge {
                wanted: 101,
                budget: 100
            })
        );
        a.set(10).unwrap();
        assert_eq!(admission.reserved(), 50);
        drop(a);
        drop(b);
        assert_eq!(admission.reserved(), 0);
    }
}
