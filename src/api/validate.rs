//! Checks shared by the endpoints' conversions from request to job.

use super::Context;
use crate::compute::ComputeError;
use crate::error::ApiError;
use crate::tables::{Embeddings, Unresolved};
use crate::tensor::Input;

/// Shorthand for a 422 with `detail`.
pub(super) fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::Invalid(detail.into())
}

/// The embeddings the field `field` stands for: its tensor, or the table rows it names.
pub(super) fn embeddings(
    context: &Context,
    field: &str,
    input: Input,
) -> Result<Embeddings, ApiError> {
    context
        .tables
        .field(field, input)
        .map_err(|unresolved| match unresolved {
            Unresolved::Loading => ApiError::TablesLoading,
            Unresolved::Invalid(detail) => ApiError::Invalid(detail),
        })
}

/// The tables `fields` read and their versions, each once, in the order first read.
pub(super) fn versions(fields: &[Option<&Embeddings>]) -> Vec<(String, String)> {
    let mut read: Vec<(String, String)> = Vec::new();
    for table in fields.iter().flatten().filter_map(|e| e.table()) {
        if !read.iter().any(|(name, _)| name == table.name()) {
            read.push((table.name().to_owned(), table.version().to_owned()));
        }
    }
    read
}

/// Gathers chosen table rows into the job's own buffers, once its memory is reserved.
pub(super) fn gather(fields: &mut [Option<&mut Embeddings>]) -> Result<(), ApiError> {
    for field in fields.iter_mut().flatten() {
        field
            .gather()
            .map_err(|why| ApiError::Internal(why.into()))?;
    }
    Ok(())
}

/// What a job finds missing when a side is not ready: a bug, never the client's fault.
pub(super) fn unready() -> ApiError {
    ApiError::Internal("an operand was used before its rows were gathered".into())
}

/// `other` holds vectors of the same dimension as `first`.
pub(super) fn same_dim(
    first: (&str, &Embeddings),
    other: (&str, &Embeddings),
) -> Result<(), ApiError> {
    let ((name, a), (other_name, b)) = (first, other);
    if a.dim() == b.dim() {
        Ok(())
    } else {
        Err(invalid(format!(
            "{other_name}: vectors have dimension {}, but those of {name} have dimension {}",
            b.dim(),
            a.dim()
        )))
    }
}

/// The number of result elements, refused when over `limit`.
pub(super) fn output_size(dims: &[usize], limit: usize, hint: &str) -> Result<usize, ApiError> {
    let size = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match size {
        Some(size) if size <= limit => Ok(size),
        _ => Err(invalid(format!(
            "the result would hold {} numbers, more than the limit of {limit}; {hint}",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" × ")
        ))),
    }
}

/// The most entries a selection without `top_k` may hold when it lists ids of up to
/// `longest` bytes: each entry's id counts one number for every 8 bytes, as [`id_budget`]
/// counts them, so the listing stays within `limit`. Such a selection is not refused up front:
/// it fails only if it holds more.
pub(super) fn entries_listing_ids(longest: usize, limit: usize) -> usize {
    limit / longest.div_ceil(8).max(1)
}

/// What a selection gets that held more entries than it may: `max_entries`, all its sets
/// together, and whether ids listed with them counted against the output limit too
/// ([`entries_listing_ids`]).
pub(super) fn too_many_entries(err: ComputeError, max_entries: usize, ids: bool) -> ApiError {
    let ComputeError::TooManyResults { .. } = err else {
        return err.into();
    };
    let limit = if ids {
        "as many as the output limit allows with their ids (a number for every 8 bytes of the \
         longest)"
    } else {
        "the output limit"
    };
    invalid(format!(
        "the selection holds more than {max_entries} entries, {limit}; add top_k or make \
         threshold stricter"
    ))
}

/// Refuses ids (of `field`, the longest `longest` bytes) whose listing, up to `width` for
/// each of `rows` rows, could exceed the output limit, counting 8 bytes of id as one number.
pub(super) fn id_budget(
    field: &str,
    longest: usize,
    rows: usize,
    width: usize,
    limit: usize,
) -> Result<(), ApiError> {
    let units = longest.div_ceil(8).max(1);
    let size = rows.checked_mul(width).and_then(|n| n.checked_mul(units));
    match size {
        Some(size) if size <= limit => Ok(()),
        _ => Err(invalid(format!(
            "{field}: listing up to {width} ids of up to {longest} bytes for each of {rows} \
             rows exceeds the output limit of {limit} numbers (8 bytes each); \
             lower top_k or use shorter ids"
        ))),
    }
}
