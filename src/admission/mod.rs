//! Admission control: what a request must hold before it may take memory or CPU, in one place.
//!
//! The lifecycle of a similarity request, told once:
//!
//! 1. **Headers.** [`Admission::enter`] decides from the headers alone, before a byte of the
//!    body is read: the request takes a [`Place`] in line (refused with
//!    [`Refusal::QueueFull`] when the requests in line fill `--max-queue` and the free
//!    permits) and reserves its declared `Content-Length` against `--memory-budget-bytes`
//!    ([`Refusal::MemoryBusy`] when others hold the budget, [`Refusal::MemoryTooLarge`] when
//!    it is larger than the whole budget). A refused request is answered at once (503, or 422
//!    for too large), and its body is never buffered.
//! 2. **Body.** The body is read into its reservation (a body without a declared length is
//!    charged as it grows) under `--body-timeout` and `--max-body-bytes`.
//! 3. **Permit.** The request waits in line for one of `--compute-permits`
//!    ([`Place::admit`]), then reserves what inflating and parsing may take
//!    ([`estimate::PARSE_BYTES_PER_BODY_BYTE`]) and parses off the runtime.
//! 4. **Job.** The parsed request is checked into a job (off the runtime too when it looks
//!    up many table rows or ids); its reservation is set to the job's
//!    [`estimate`] (inputs, working copies, output, scratch) and the job runs off the runtime
//!    through [`Admitted::run`].
//! 5. **Answer.** The permit is released when the computation has actually stopped (even when
//!    its request was dropped at the deadline); the reservation moves into the answer's bytes
//!    and is released once they have been written or dropped.
//!
//! Nothing waits past the queue or the budget: the service answers overload in milliseconds
//! and its memory stays bounded. Everything is released on drop.

mod admitted;
mod budget;
pub mod estimate;
mod queue;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use tokio::sync::Semaphore;

pub use admitted::Admitted;
pub use budget::Reservation;
pub use queue::Place;

use crate::error::ApiError;

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

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::QueueFull => ApiError::Overloaded(
                "every compute slot is busy and the wait queue is full; retry later".to_owned(),
            ),
            Refusal::MemoryBusy { wanted } => ApiError::Overloaded(format!(
                "this request needs about {wanted} bytes and the memory budget is taken by \
                 other requests; retry later"
            )),
            Refusal::MemoryTooLarge { wanted, budget } => ApiError::Invalid(format!(
                "this request needs about {wanted} bytes, more than the server's whole memory \
                 budget of {budget}; send a smaller request"
            )),
        }
    }
}

/// The shared admission state of one server: permits, the line for them, and the budget.
#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    total_permits: usize,
    max_queue: usize,
    /// Requests admitted from their headers that do not hold a permit yet.
    in_line: AtomicUsize,
    budget: usize,
    reserved: AtomicUsize,
}

impl Admission {
    /// `permits` concurrent computations, `max_queue` in line, `budget` bytes reserved at most.
    pub fn new(permits: usize, max_queue: usize, budget: usize) -> Arc<Self> {
        Arc::new(Admission {
            permits: Arc::new(Semaphore::new(permits)),
            total_permits: permits,
            max_queue,
            in_line: AtomicUsize::new(0),
            budget,
            reserved: AtomicUsize::new(0),
        })
    }

    /// Admits a request from its headers: a place in line and a reservation of its
    /// `declared` body length (none: charged as the body grows). Refused at once when the
    /// line is full or the budget cannot hold the body.
    pub fn enter(self: &Arc<Self>, declared: Option<usize>) -> Result<Place, Refusal> {
        let mut place = self.place()?;
        if let Some(length) = declared {
            place.reservation().set(length)?;
        }
        Ok(place)
    }

    /// Requests admitted but not computing yet (receiving their body or waiting for a
    /// permit).
    pub fn waiting(&self) -> usize {
        self.in_line.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Permits in use.
    pub fn computing(&self) -> usize {
        self.total_permits - self.permits.available_permits()
    }

    /// Bytes reserved.
    pub fn reserved(&self) -> usize {
        self.reserved.load(std::sync::atomic::Ordering::Relaxed)
    }
}
