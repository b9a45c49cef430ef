//! What an admitted request holds until it has answered: a compute permit, a memory
//! reservation, the response coding it accepts, and where to record how long its
//! computation took.

use std::time::Instant;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;

use super::compress::{self, Coding};
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
    coding: Option<Coding>,
    _permit: OwnedSemaphorePermit,
    reservation: Reservation,
}

impl Ticket {
    /// A ticket holding `permit` and `reservation`, answering in `coding`.
    pub(super) fn new(
        state: &AppState,
        route: &'static str,
        coding: Option<Coding>,
        permit: OwnedSemaphorePermit,
        reservation: Reservation,
    ) -> Self {
        Ticket {
            state: state.clone(),
            route,
            coding,
            _permit: permit,
            reservation,
        }
    }

    /// Reserves `bytes` for the job (in place of what parsing held), then runs it through
    /// [`run_job`] (`work` multiply-adds, cancelled if the request is dropped): the job
    /// writes a JSON body, compressed there too when the client asked for it.
    pub async fn run<F>(mut self, work: usize, bytes: usize, job: F) -> Result<Response, ApiError>
    where
        F: FnOnce(&Cancel) -> Result<Vec<u8>, ApiError> + Send + 'static,
    {
        let state = &self.state;
        self.reservation
            .set(bytes)
            .map_err(|refusal| state.refused(refusal))?;
        let start = Instant::now();
        let coding = self.coding;
        let result = run_job(work, move |cancel| {
            let body = job(cancel)?;
            match coding {
                Some(coding) if body.len() >= compress::MIN_BYTES => coding
                    .compress(&body)
                    .map(|packed| (Some(coding), packed))
                    .map_err(|err| ApiError::Internal(format!("could not compress: {err}"))),
                _ => Ok((None, body)),
            }
        })
        .await;
        state.metrics.computed(self.route, start.elapsed());
        let (coding, body) = result??;
        let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        if let Some(coding) = coding {
            headers.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(coding.token()),
            );
        }
        Ok(response)
    }
}
