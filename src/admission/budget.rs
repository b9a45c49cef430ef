//! The memory budget (`--memory-budget-bytes`): bytes held by [`Reservation`]s, which grow
//! as a request's needs become known and are released on drop.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Admission, Refusal};

impl Admission {
    /// An empty reservation, to grow as the request's needs become known.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            admission: Arc::clone(self),
            bytes: 0,
        }
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

    /// Holds no more than `bytes`: shrinking never waits for the budget, so never fails.
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            self.admission.resize(self.bytes, bytes).ok();
            self.bytes = bytes;
        }
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
    use super::*;

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
        b.shrink_to(60);
        assert_eq!(admission.reserved(), 50, "shrinking never grows");
        b.shrink_to(15);
        assert_eq!((b.bytes(), admission.reserved()), (15, 25));
        drop(a);
        drop(b);
        assert_eq!(admission.reserved(), 0);
    }
}
