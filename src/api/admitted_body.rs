//! [`AdmittedBody`]: the extractor of every similarity operation. It admits the request from
//! its headers, reads its body, waits for a compute permit ([`receive`], which the Open
//! Inference Protocol route shares) and decodes the body, in the order [`crate::admission`]
//! tells; each step's refusal is the request's answer.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::request::Parts;

use crate::admission::{Admitted, estimate};
use crate::body::{self, BodyHead, Buffer, Sink, TensorFields};
use crate::coding;
use crate::cpu;
use crate::error::ApiError;
use crate::metrics::{BodyCounter, Rejection};
use crate::state::AppState;

/// A request admitted to compute, with its body decoded into `T`.
pub struct AdmittedBody<T> {
    /// The decoded body.
    pub request: T,
    /// The permit and reservation it holds until it has answered.
    pub admitted: Admitted,
}

impl<T> FromRequest<AppState> for AdmittedBody<T>
where
    T: TensorFields + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.limits.max_body_bytes;
        let (parts, incoming) = request.into_parts();
        let head = body::check_headers(&parts.headers, limit)?;
        let Received {
            body,
            admitted,
            inflated,
        } = receive(
            &parts,
            incoming,
            head,
            state,
            Buffer::recording_brackets(head, limit, &state.kept_bodies),
        )
        .await?;
        let (bytes, brackets) = body.into_bytes_and_brackets();
        // The admission goes with the work, so that a request dropped while it parses keeps
        // its permit and reservation until the parse actually ends.
        let (request, admitted) = cpu::run(inflated, move || {
            (
                body::decode(head.coding, &bytes, &brackets, limit),
                admitted,
            )
        })
        .await?;
        Ok(AdmittedBody {
            request: request?,
            admitted,
        })
    }
}

/// A request's body, received by an admitted request.
pub(super) struct Received<S> {
    /// What the body went into.
    pub body: S,
    /// The permit and reservation, grown by what decoding the body may take.
    pub admitted: Admitted,
    /// The most bytes the body inflates to.
    pub inflated: usize,
}

/// Admits a request from its headers (`head`, already checked), receives its body into
/// `sink`, waits for a compute permit and reserves what decoding the body may take: the
/// steps every body goes through before it is decoded, in the order [`crate::admission`]
/// tells.
pub(super) async fn receive<S: Sink>(
    parts: &Parts,
    incoming: Body,
    head: BodyHead,
    state: &AppState,
    mut sink: S,
) -> Result<Received<S>, ApiError> {
    let limit = state.limits.max_body_bytes;
    let mut place = match state.admission.enter(head.declared) {
        Ok(place) => place,
        // The body, unread, is discarded as it arrives (`body::Lingering`).
        Err(refusal) => return Err(state.metrics.refused(refusal)),
    };

    let counter = parts.extensions.get::<BodyCounter>();
    let read = body::read(
        incoming,
        limit,
        &mut sink,
        place.reservation(),
        &state.metrics,
        counter,
    );
    let timeout = state.limits.body_timeout;
    let length = tokio::time::timeout(timeout, read).await.map_err(|_| {
        state.metrics.rejected(Rejection::BodyTimeout);
        ApiError::BodyTimeout(timeout)
    })??;

    let mut admitted = place
        .admit(coding::negotiate(&parts.headers))
        .await
        .map_err(|refusal| state.metrics.refused(refusal))?;
    let inflated = body::inflated_size(head.coding, length, limit);
    admitted
        .reservation()
        .grow(estimate::parse(inflated))
        .map_err(|refusal| state.metrics.refused(refusal))?;
    Ok(Received {
        body: sink,
        admitted,
        inflated,
    })
}
