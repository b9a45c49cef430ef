//! [`Admitted`]: what an admitted request holds until it has answered (a compute permit, its
//! memory reservation and the coding its answer will be sent in), and how its job runs.

use axum::response::Response;
use tokio::sync::OwnedSemaphorePermit;

use super::budget::Reservation;
use crate::answer::{self, Answer};
use crate::coding::{self, Coding};
use crate::compute::Cancel;
use crate::cpu;
use crate::error::ApiError;

/// An admitted request: it holds a compute permit and its reservation.
///
/// Both move into the computation, so a request dropped at its deadline (or by its client)
/// keeps them until the work has actually stopped; the reservation then shrinks to what the
/// answer's bytes hold and moves into them, released once they have been sent or dropped (a
/// client that stops reading is cut off by the server's write timeout).
#[derive(Debug)]
pub struct Admitted {
    permit: OwnedSemaphorePermit,
    reservation: Reservation,
    coding: Option<Coding>,
}

impl Admitted {
    /// Holds `permit` and `reservation`, answering in `coding`.
    pub(super) fn new(
        permit: OwnedSemaphorePermit,
        reservation: Reservation,
        coding: Option<Coding>,
    ) -> Self {
        Admitted {
            permit,
            reservation,
            coding,
        }
    }

    /// The memory held for the request: grown for parsing, then set to its job's estimate.
    pub fn reservation(&mut self) -> &mut Reservation {
        &mut self.reservation
    }

    /// Runs `job` off the runtime through [`cpu::run_cancellable`] (`work` multiply-adds,
    /// cancelled if the request is dropped): the job computes and encodes its answer,
    /// compressed there too when the client asked for it, and the answer holds the
    /// reservation until sent.
    pub async fn run<F>(self, work: usize, job: F) -> Result<Response, ApiError>
    where
        F: FnOnce(&Cancel) -> Result<Answer, ApiError> + Send + 'static,
    {
        let Admitted {
            permit,
            reservation,
            coding,
        } = self;
        let (coding, body, json_length, reservation) = cpu::run_cancellable(work, move |cancel| {
            let body = job(cancel).and_then(|answer| {
                cancel.check()?;
                coding::compress_answer(coding, answer.pieces)
                    .map(|(coding, body)| (coding, body, answer.json_length))
            });
            drop(permit);
            body.map(|(coding, body, json_length)| {
                // The job's inputs and scratch are gone: what is left to hold is the answer.
                let mut reservation = reservation;
                reservation.shrink_to(body.iter().map(answer::Piece::held_bytes).sum());
                (coding, body, json_length, reservation)
            })
        })
        .await??;
        Ok(answer::respond(coding, body, json_length, reservation))
    }
}
