//! The Open Inference Protocol (KServe v2 REST), with Triton's binary tensor data
//! extension, so that Triton and KServe clients (`tritonclient.http`) and gateways use
//! simserve as they are.
//!
//! - `GET /v2`: server metadata; `GET /v2/health/live` and `/v2/health/ready`: what
//!   `/healthz` and `/readyz` say;
//! - `GET /v2/models/{model}` (metadata) and `/v2/models/{model}/ready`;
//! - `POST /v2/models/{model}/infer`: the request decoded ([`crate::body::infer`]), turned
//!   into the operation's own request by its [`models::Model`], checked and run as on the
//!   native route ([`super::compute`]), and its outcome encoded as an inference response
//!   ([`crate::answer::infer`]).
//!
//! Every path also has its `/versions/1` form; models have that one version. Errors are
//! the protocol's `{"error": "..."}`, with the detail the native problem+json would carry
//! ([`crate::middleware::oip`] rewrites them).

pub mod models;

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::admitted_body::{Received, receive};
use super::compute;
use super::service::readiness;
use crate::admission::{Admitted, estimate};
use crate::answer::Encoding;
use crate::answer::infer::{self, MODEL_VERSION, Wanted};
use crate::api::matrix::MatrixJob;
use crate::api::pairwise::PairwiseJob;
use crate::api::user_item::UserItemJob;
use crate::body::Buffer;
use crate::body::fields;
use crate::body::infer::{self as body_infer, Arriving, InferRequest, Spec};
use crate::cpu;
use crate::error::ApiError;
use crate::metrics::Rejection;
use crate::state::AppState;
use models::{Model, Parts};

/// The models, by name.
pub const MODELS: [&str; 3] = [PairwiseJob::NAME, MatrixJob::NAME, UserItemJob::NAME];

/// The extensions `GET /v2` lists.
pub const EXTENSIONS: [&str; 2] = ["binary_tensor_data", "parameters"];

/// A model's path: its name, and the version asked for, if any.
#[derive(Debug, Deserialize)]
pub struct ModelPath {
    model: String,
    #[serde(default)]
    version: Option<String>,
}

/// Which model a path names.
#[derive(Debug, Clone, Copy)]
enum Named {
    Pairwise,
    Matrix,
    UserItem,
}

/// The model `path` names, or 404.
fn named(path: Result<Path<ModelPath>, PathRejection>) -> Result<Named, ApiError> {
    let Path(path) = path.map_err(|_| ApiError::NotFound)?;
    let model = match path.model.as_str() {
        PairwiseJob::NAME => Named::Pairwise,
        MatrixJob::NAME => Named::Matrix,
        UserItemJob::NAME => Named::UserItem,
        _ => {
            return Err(ApiError::NoSuchModel(format!(
                "there is no model of that name; the models are {}",
                MODELS.join(", ")
            )));
        }
    };
    match path.version.as_deref() {
        None | Some(MODEL_VERSION) => Ok(model),
        Some(_) => Err(ApiError::NoSuchModel(format!(
            "the model {} has no version of that name; its one version is {MODEL_VERSION}",
            path.model
        ))),
    }
}

/// Serves `GET /v2`: the server's name, version and extensions.
pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "simserve",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}

/// Serves `GET /v2/health/live`: what `/healthz` says.
pub async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

/// Serves `GET /v2/health/ready`: what `/readyz` says (503 while the tables load and once
/// shutdown has started).
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    readiness(&state)?;
    Ok(Json(json!({"ready": true})))
}

/// Serves `GET /v2/models/{model}/ready` (and its `/versions/{version}` form): the server's
/// readiness, for a model it has.
pub async fn model_ready(
    State(state): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let name = model_name(named(path)?);
    readiness(&state)?;
    Ok(Json(json!({"name": name, "ready": true})))
}

fn model_name(model: Named) -> &'static str {
    match model {
        Named::Pairwise => PairwiseJob::NAME,
        Named::Matrix => MatrixJob::NAME,
        Named::UserItem => UserItemJob::NAME,
    }
}

/// Serves `GET /v2/models/{model}` (and its `/versions/{version}` form): the model's inputs
/// and outputs.
pub async fn model_metadata(
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let model = named(path)?;
    let signature = match model {
        Named::Pairwise => PairwiseJob::SIGNATURE,
        Named::Matrix => MatrixJob::SIGNATURE,
        Named::UserItem => UserItemJob::SIGNATURE,
    };
    let specs = |specs: &[Spec]| -> Vec<Value> {
        specs
            .iter()
            .map(|spec| json!({"name": spec.name, "datatype": spec.datatype, "shape": spec.shape}))
            .collect()
    };
    Ok(Json(json!({
        "name": model_name(model),
        "versions": [MODEL_VERSION],
        "platform": "simserve",
        "inputs": specs(signature.inputs),
        "outputs": specs(signature.outputs),
    })))
}

/// Serves `POST /v2/models/{model}/infer` (and its `/versions/{version}` form).
#[tracing::instrument(skip_all)]
pub async fn infer(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    path: Result<Path<ModelPath>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let model = named(path)?;
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    match model {
        Named::Pairwise => serve::<PairwiseJob>(&state, route, request).await,
        Named::Matrix => serve::<MatrixJob>(&state, route, request).await,
        Named::UserItem => serve::<UserItemJob>(&state, route, request).await,
    }
}

/// Admits, reads and decodes an inference request for the model `M`, and answers it with
/// `M`'s job, as its native route would, encoded as an inference response.
async fn serve<M: Model>(
    state: &AppState,
    route: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let limit = state.limits.max_body_bytes;
    let (parts, incoming) = request.into_parts();
    let (head, json_length) = body_infer::check_headers(&parts.headers, limit)?;
    // A body decoded as it arrives is copied into its values on the runtime, as reading it
    // whole would copy it; the rest of decoding and building the operation's request walk
    // every value: off the runtime.
    let (prepared, admitted) = match Arriving::for_body(head, json_length, M::SIGNATURE) {
        Some(arriving) => {
            let received = receive(&parts, incoming, head, state, arriving).await?;
            let Received {
                body,
                mut admitted,
                inflated,
            } = received;
            reserve_fields(&mut admitted, state)?;
            cpu::run(inflated, move || {
                (body.finish().and_then(prepare::<M>), admitted)
            })
            .await?
        }
        None => {
            let buffer = Buffer::recording_brackets(head, limit, &state.kept_bodies);
            let received = receive(&parts, incoming, head, state, buffer).await?;
            let Received {
                body,
                mut admitted,
                inflated,
            } = received;
            reserve_fields(&mut admitted, state)?;
            let (bytes, brackets) = body.into_bytes_and_brackets();
            cpu::run(inflated, move || {
                let decoded = body_infer::decode(
                    head.coding,
                    &bytes,
                    &brackets,
                    limit,
                    json_length,
                    M::SIGNATURE,
                );
                (decoded.and_then(prepare::<M>), admitted)
            })
            .await?
        }
    };
    let Prepared {
        request,
        wanted,
        binary,
        id,
        timeout,
    } = prepared?;
    let encode =
        move |outcome| infer::encode(M::NAME, id.as_deref(), outcome, wanted.as_deref(), binary);
    let computed = compute::<M>(state, route, request, admitted, encode);
    match timeout {
        // Dropped when it runs out: the job is cancelled and its permit and memory freed,
        // as when `--request-timeout` runs out.
        Some(timeout) => tokio::time::timeout(timeout, computed).await.map_err(|_| {
            state.metrics.rejected(Rejection::Deadline);
            ApiError::Timeout(timeout)
        })?,
        None => computed.await,
    }
}

/// Reads the request parameters Triton reserves that `tritonclient` sends from its own
/// arguments: `timeout` (microseconds, 0 for none), which bounds what follows the body's
/// decoding (waiting for a permit, computing, encoding) as `--request-timeout` bounds the
/// whole request, counted as its deadline is, and `priority`, taken and ignored (requests
/// are admitted in the order they come).
fn triton_options(parameters: &mut Map<String, Value>) -> Result<Option<Duration>, ApiError> {
    if let Some(priority) = parameters.remove("priority") {
        fields::count(&priority, "priority").map_err(|err| ApiError::from_json(&err))?;
    }
    let Some(timeout) = parameters.remove("timeout") else {
        return Ok(None);
    };
    let micros = fields::count(&timeout, "timeout").map_err(|err| ApiError::from_json(&err))?;
    Ok((micros > 0).then(|| Duration::from_micros(micros)))
}

/// Reserves what reading the request's JSON fields may hold besides its data
/// ([`estimate::INFER_FIELDS`]), which does not grow with the body.
fn reserve_fields(admitted: &mut Admitted, state: &AppState) -> Result<(), ApiError> {
    admitted
        .reservation()
        .grow(estimate::INFER_FIELDS)
        .map_err(|refusal| state.metrics.refused(refusal))
}

/// An inference request made into the operation's own, with what its answer should hold.
struct Prepared<M: Model> {
    request: M::Request,
    /// The outputs asked for, and whether each is sent as binary data.
    wanted: Option<Vec<Wanted<'static>>>,
    /// `binary_data_output`: the default for outputs not asked for by name.
    binary: bool,
    id: Option<String>,
    /// The request's `timeout` parameter, when given and not 0.
    timeout: Option<Duration>,
}

/// Makes `decoded` into `M`'s request: its parameters read, its inputs taken and checked,
/// the outputs it asks for checked against those the request gives.
fn prepare<M: Model>(decoded: InferRequest) -> Result<Prepared<M>, ApiError> {
    let mut parameters = decoded.parameters;
    let timeout = triton_options(&mut parameters)?;
    let binary = match parameters.remove("binary_data_output") {
        None => false,
        Some(value) => {
            fields::flag(&value, "binary_data_output").map_err(|err| ApiError::from_json(&err))?
        }
    };
    let wanted: Option<Vec<Wanted<'static>>> = decoded.outputs.map(|outputs| {
        outputs
            .iter()
            .map(|output| Wanted {
                name: output.name,
                binary: output.binary.unwrap_or(binary),
            })
            .collect()
    });
    let any_binary = wanted
        .as_ref()
        .map_or(binary, |wanted| wanted.iter().any(|w| w.binary));
    // Binary outputs hold fewer bytes per number than JSON; base64's count is near enough.
    let encoding = if any_binary {
        Encoding::Base64
    } else {
        Encoding::Json
    };
    let mut taken = Parts::new(decoded.inputs, parameters);
    let (request, gives) = M::request(&mut taken, encoding)?;
    taken.finish(M::NAME)?;
    if let Some(wanted) = &wanted
        && let Some((at, missing)) = wanted
            .iter()
            .enumerate()
            .find(|(_, want)| !gives.contains(&want.name))
    {
        return Err(ApiError::Invalid(format!(
            "outputs[{at}]: this request gives {}, not {}",
            gives.join(", "),
            missing.name
        )));
    }
    Ok(Prepared {
        request,
        wanted,
        binary,
        id: decoded.id,
        timeout,
    })
}
