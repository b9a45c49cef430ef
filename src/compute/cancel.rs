//! [`Cancel`]: cooperative cancellation, checked between tiles of work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::ComputeError;

/// A flag shared between whoever may give up on a computation (a deadline, a client that
/// went away) and the computation, which checks it between tiles and stops early.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag that is not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the flag: computations holding it stop at their next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the flag is raised.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once the flag is raised.
    pub fn check(&self) -> Result<(), ComputeError> {
        if self.is_cancelled() {
            Err(ComputeError::Cancelled)
        } else {
            Ok(())
        }
    }
}
