//! `GET /tables`, `GET /tables/{name}`: the server-side tables and their versions;
//! `POST /tables/reload`: read the tables directory again (as SIGHUP does); one at a time,
//! a request that finds one running gets 503 with `Retry-After`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::coding::{self, Coding};
use crate::cpu;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tables::{Catalog, Failure, MAX_TABLE_NAME, Reloaded, Table};

/// What `GET /tables` says about one table.
#[derive(Debug, Serialize)]
pub struct TableInfo {
    name: String,
    rows: usize,
    dim: usize,
    /// Always `float32`: what requests are scored in.
    dtype: &'static str,
    /// The dtype of the file (`float64`, `float16` and `bfloat16` are converted at load).
    stored_dtype: &'static str,
    /// Values used as the file stores them, rather than converted.
    in_place: bool,
    ids: bool,
    version: String,
    source: String,
    loaded_at: String,
    bytes: usize,
    /// Why the last reload of its file failed (it serves this, its last good version).
    last_error: Option<String>,
}

impl TableInfo {
    fn of(table: &Table, catalog: &Catalog) -> Self {
        TableInfo {
            name: table.name().to_owned(),
            rows: table.rows(),
            dim: table.dim(),
            dtype: "float32",
            stored_dtype: table.stored_dtype(),
            in_place: table.in_place(),
            ids: table.ids().is_some(),
            version: table.version().to_owned(),
            source: table.source().to_owned(),
            loaded_at: humantime::format_rfc3339_millis(table.loaded_at()).to_string(),
            bytes: table.bytes(),
            last_error: catalog.last_error(table.name()).map(|f| f.reason.clone()),
        }
    }
}

/// A file or table that failed to load.
#[derive(Debug, Serialize)]
struct FailureInfo {
    file: String,
    table: Option<String>,
    error: String,
}

impl From<&Failure> for FailureInfo {
    fn from(failure: &Failure) -> Self {
        FailureInfo {
            file: failure.file.clone(),
            table: failure.table.clone(),
            error: failure.reason.clone(),
        }
    }
}

/// The body of `GET /tables`.
#[derive(Debug, Serialize)]
pub struct Listing {
    tables: Vec<TableInfo>,
    /// Failures of the last load or reload.
    errors: Vec<FailureInfo>,
}

/// Serves `GET /tables`. The listing is built and written on the blocking pool: a
/// `.safetensors` file of 40,000 tensors makes a 9.5 MB listing, which took 56-59 ms to
/// fetch from a release build on the loopback, most of it building and writing that would
/// otherwise hold a runtime thread (and the requests it serves).
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if !state.tables_loaded() {
        return Err(ApiError::TablesLoading);
    }
    let catalog = state.tables.catalog();
    let coding = coding::negotiate(&headers);
    cpu::spawn_blocking(move || {
        let listing = Listing {
            tables: catalog
                .tables()
                .map(|table| TableInfo::of(table, &catalog))
                .collect(),
            errors: catalog.failures().iter().map(FailureInfo::from).collect(),
        };
        json_response(&listing, coding)
    })
    .await?
}

/// `value` as an `application/json` response, written and compressed as `coding` says
/// (when worth it) where the caller runs: unlike [`Json`] and the compression layer, which
/// would write and compress it on the runtime.
fn json_response(value: &impl Serialize, coding: Option<Coding>) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value)
        .map_err(|err| ApiError::Internal(format!("writing JSON: {err}")))?;
    let (coding, mut pieces) = coding::compress_answer(coding, vec![body])?;
    let body = pieces.pop().unwrap_or_default();
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
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

/// Serves `GET /tables/{name}`. A name that is not UTF-8 once decoded names no table.
pub async fn one(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TableInfo>, ApiError> {
    let Path(name) = path.map_err(|_| ApiError::NotFound)?;
    if !state.tables_loaded() {
        return Err(ApiError::TablesLoading);
    }
    let catalog = state.tables.catalog();
    match catalog.get(&name) {
        Some(table) => Ok(Json(TableInfo::of(table, &catalog))),
        None => Err(ApiError::NoSuchTable(crate::echo::shown(
            &name,
            MAX_TABLE_NAME,
        ))),
    }
}

/// The body of `POST /tables/reload`.
#[derive(Debug, Serialize)]
pub struct ReloadAnswer {
    /// Tables with a new version (new ones included).
    changed: Vec<String>,
    /// Tables gone with their files.
    removed: Vec<String>,
    /// Files or tables that failed; those that had a version keep serving it.
    errors: Vec<FailureInfo>,
}

/// Serves `POST /tables/reload`; its answer, which may name every table, is written on the
/// blocking pool too.
pub async fn reload(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !state.tables_loaded() {
        return Err(ApiError::TablesLoading);
    }
    let coding = coding::negotiate(&headers);
    cpu::spawn_blocking(move || {
        let Some(Reloaded {
            changed,
            removed,
            failures,
        }) = state.try_reload_tables()
        else {
            return Err(ApiError::Overloaded(
                "a table reload is already running; retry when it has finished".into(),
            ));
        };
        let answer = ReloadAnswer {
            changed,
            removed,
            errors: failures.iter().map(FailureInfo::from).collect(),
        };
        json_response(&answer, coding)
    })
    .await?
}
