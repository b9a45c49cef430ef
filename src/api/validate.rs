//! Checks shared by the endpoints' conversions from request to job.

use crate::error::ApiError;
use crate::tensor::Tensor;

/// Shorthand for a 422 with `detail`.
pub(super) fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::Invalid(detail.into())
}

/// `other` holds vectors of the same dimension as `first`.
pub(super) fn same_dim(first: (&str, &Tensor), other: (&str, &Tensor)) -> Result<(), ApiError> {
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

/// The rank-2 tensor of `field` as an owned matrix.
pub(super) fn matrix(field: &str, tensor: Tensor) -> Result<ndarray::Array2<f32>, ApiError> {
    let rank = tensor.rank();
    tensor.into_matrix().ok_or_else(|| {
        invalid(format!(
            "{field}: expected a tensor of rank 2, found rank {rank}"
        ))
    })
}

/// A rank-2 (one set) or rank-3 tensor of `field` as an owned `sets × rows × dim` array.
pub(super) fn sets(field: &str, tensor: Tensor) -> Result<ndarray::Array3<f32>, ApiError> {
    match tensor.rank() {
        2 => matrix(field, tensor).map(|m| m.insert_axis(ndarray::Axis(0))),
        rank => tensor.into_sets().ok_or_else(|| {
            invalid(format!(
                "{field}: expected a tensor of rank 2 or 3, found rank {rank}"
            ))
        }),
    }
}
