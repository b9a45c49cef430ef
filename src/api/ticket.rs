//! What an admitted request holds until it has answered: a compute permit, a memory
//! reservation, the response coding it accepts, and where to record how long its
//! computation took.
//!
//! The permit and the reservation move into the computation, so a request dropped at its
//! deadline (or by its client) keeps both until the work has actually stopped; the
//! reservation then moves into the response bytes and is released once they have been sent
//! or dropped (a client that stops reading is cut off by the server's write timeout).

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;

use super::compress::{self, Coding};
use crate::admission::Reservation;
use crate::app::AppState;
use crate::compute::Cancel;
use crate::error::ApiError;
use crate::offload::run_job;

/// The admission of one request.
#[derive(Debug)]
pub struct Ticket {
    state: AppState,
    route: &'static str,
    coding: Option<Coding>,
    permit: OwnedSemaphorePermit,
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
            permit,
            reservation,
        }
    }

    /// Reserves `bytes` for the job (in place of what parsing held), then runs it through
    /// [`run_job`] (`work` multiply-adds, cancelled if the request is dropped): the job
    /// writes a JSON body, compressed there too when the client asked for it.
    pub async fn run<F>(self, work: usize, bytes: usize, job: F) -> Result<Response, ApiError>
    where
        F: FnOnce(&Cancel) -> Result<Vec<u8>, ApiError> + Send + 'static,
    {
        let Ticket {
            state,
            route,
            coding,
            permit,
            mut reservation,
        } = self;
        reservation
            .set(bytes)
            .map_err(|refusal| state.refused(refusal))?;
        let start = Instant::now();
        let result = run_job(work, move |cancel| {
            let body = job(cancel).and_then(|body| {
                cancel.check()?;
                compressed(coding, body)
            });
            drop(permit);
            body.map(|(coding, body)| (coding, body, reservation))
        })
        .await;
        state.metrics.computed(route, start.elapsed());
        let (coding, body, reservation) = result??;
        let body = Body::from(Bytes::from_owner(Held {
            body,
            _reservation: reservation,
        }));
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

/// `body` in `coding` when it is worth compressing.
fn compressed(
    coding: Option<Coding>,
    body: Vec<u8>,
) -> Result<(Option<Coding>, Vec<u8>), ApiError> {
    match coding {
        Some(coding) if body.len() >= compress::MIN_BYTES => coding
            .compress(&body)
            .map(|packed| (Some(coding), packed))
            .map_err(|err| ApiError::Internal(format!("could not compress: {err}"))),
        _ => Ok((None, body)),
    }
}

/// Response bytes that hold their memory reservation: released when the last `Bytes` handle
/// is dropped, which is after hyper has written them (or given up on the connection).
struct Held {
    body: Vec<u8>,
    _reservation: Reservation,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}
