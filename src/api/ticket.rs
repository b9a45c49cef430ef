//! What an admitted request holds until it has answered: a compute permit and a memory
//! reservation, and where to record how long its computation took.

use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use crate::admission::Reservation;
use crate::app::AppState;
use crate::compute::Cancel;
use crate::error::ApiError;
use crate::offload::run_job;

/// The admission of one request; dropping it releases the permit and the memory.
#[derive(Debug)]
pub struct Ticket {
    state: AppState,
    route: &'static str,
    _permit: OwnedSemaphorePermit,
    reservation: Reservation,
}

impl Ticket {
    /// A ticket holding `permit` and `reservation`.
    pub(super) fn new(
        state: &AppState,
        route: &'static str,
        permit: OwnedSemaphorePermit,
        reservation: Reservation,
    ) -> Self {
        Ticket {
            state: state.clone(),
            route,
            _permit: permit,
            reservation,
        }
    }

    /// Reserves `bytes` for the job (in place of what parsing held), then runs it through
    /// [`run_job`]: `work` multiply-adds, cancelled if the request is dropped.
    pub async fn run<F, R>(mut self, work: usize, bytes: usize, job: F) -> Result<R, ApiError>
    where
        F: FnOnce(&Cancel) -> R + Send + 'static,
        R: Send + 'static,
    {
        let state = &self.state;
        self.reservation
            .set(bytes)
            .map_err(|refusal| state.refused(refusal))?;
        let start = Instant::now();
        let result = run_job(work, job).await;
        state.metrics.computed(self.route, start.elapsed());
        result
    }
}
