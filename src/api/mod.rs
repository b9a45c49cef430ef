//! The routes. Each similarity operation is one file holding its request type, its job and
//! its [`Operation`] impl; [`operate`] serves any of them, so a new operation is one file
//! here and one line in [`crate::app::routes`]. [`service`] holds the routes that are not
//! operations (probes, metrics, the contract, fallbacks); [`tables`] those that list and
//! reload the server's tables; [`page`] the try-it page at `/` and its two files; [`v2`] the
//! Open Inference Protocol (KServe v2 REST with Triton's binary tensors), whose models are
//! these same operations.
//!
//! Data flows one way: request → [`AdmittedBody`] (admitted, read and decoded into
//! `O::Request`) → [`Operation::parse`] (a checked job) → the job's estimate reserved →
//! [`Operation::run`] off the runtime (compute, then encode) → answer.

mod admitted_body;
pub mod matrix;
pub mod page;
pub mod pairwise;
pub mod service;
pub mod tables;
pub mod user_item;
pub mod v2;
mod validate;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::Response;
use tracing::Instrument;
use tracing::field::Empty;

pub use admitted_body::AdmittedBody;

use crate::admission::Admitted;
use crate::answer::Answer;
use crate::answer::json;
use crate::answer::outcome::Outcome;
use crate::body::TensorFields;
use crate::compute::Cancel;
use crate::cpu;
use crate::error::ApiError;
use crate::state::{AppState, Limits};
use crate::tables::Resolve;

/// Multiply-adds a lookup of [`Operation::lookups`] counts as, for [`cpu::run`]: a step of a
/// sort or of a binary search over strings.
pub(crate) const LOOKUP_WORK: usize = 64;

/// What checking a request into a job may consult: the limits, and the tables served when
/// the request arrived (table references are resolved against them).
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Request limits.
    pub limits: &'a Limits,
    /// Resolves embedding fields, table references included.
    pub tables: Resolve<'a>,
}

/// One similarity operation: its job, built from the request body by [`Operation::parse`].
pub trait Operation: Sized + Send + 'static {
    /// The route template; also the route label of its metrics.
    const PATH: &'static str;

    /// The request body, as its fields decode it ([`crate::body::fields`]).
    type Request: TensorFields + Send + 'static;

    /// Checks the request into a job, or 422 naming the field at fault.
    fn parse(request: Self::Request, context: &Context) -> Result<Self, ApiError>;

    /// Ids and rows [`Operation::parse`] looks up or orders (rows picked from tables,
    /// exclude ids and the ids they are found among), and index entries it checks one by one
    /// (counted as lookups, erring high): past a few thousand, the check runs off the runtime.
    fn lookups(_request: &Self::Request) -> usize {
        0
    }

    /// Records the job's size (`rows`, `dim`, …) on the current span.
    fn record_size(&self, span: &tracing::Span);

    /// Multiply-adds the job takes (tiny jobs run in place, larger ones off the runtime).
    fn work(&self) -> usize;

    /// Bytes the job holds while it runs and answers ([`crate::admission::estimate::job`]).
    fn estimate(&self) -> usize;

    /// Computes the result, stopping early when `cancel` is raised; the native route writes
    /// it as JSON ([`json::encode`]), the Open Inference Protocol route as its own ([`v2`]).
    fn run(self, cancel: &Cancel) -> Result<Outcome, ApiError>;
}

/// Serves the operation `O` at `O::PATH`.
pub async fn operate<O: Operation>(
    State(state): State<AppState>,
    AdmittedBody { request, admitted }: AdmittedBody<O::Request>,
) -> Result<Response, ApiError> {
    let encode = |outcome: Outcome| json::encode(&outcome).map(Answer::json);
    compute::<O>(&state, O::PATH, request, admitted, encode).await
}

/// Checks `request` into a job of `O`, reserves its estimate, runs it off the runtime and
/// answers with `encode` of its outcome: what every route of an operation shares, whatever
/// its protocol. `route` labels the compute metric.
pub(crate) async fn compute<O: Operation>(
    state: &AppState,
    route: &str,
    request: O::Request,
    mut admitted: Admitted,
    encode: impl FnOnce(Outcome) -> Result<Answer, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let span = tracing::info_span!(
        "operation",
        route,
        sets = Empty,
        rows = Empty,
        users = Empty,
        items = Empty,
        dim = Empty
    );
    async move {
        let catalog = state.tables.catalog();
        let limits = Arc::clone(&state.limits);
        let work = O::lookups(&request).saturating_mul(LOOKUP_WORK);
        let job = cpu::run(work, move || {
            let context = Context {
                limits: &limits,
                tables: Resolve::new(&catalog, limits.max_body_bytes / 4),
            };
            O::parse(request, &context)
        })
        .await??;
        job.record_size(&tracing::Span::current());
        admitted
            .reservation()
            .set(job.estimate())
            .map_err(|refusal| state.metrics.refused(refusal))?;
        let start = Instant::now();
        let answer = admitted
            .run(job.work(), move |cancel| {
                let outcome = job.run(cancel)?;
                cancel.check()?;
                encode(outcome)
            })
            .await;
        state.metrics.computed(route, start.elapsed());
        answer
    }
    .instrument(span)
    .await
}
