//! [`Rows`]: a row-major matrix borrowed where the input already is one, copied otherwise.

use std::borrow::Cow;
use std::ops::Range;

use ndarray::ArrayView2;

/// `len` rows of `dim` values, contiguous and row-major.
#[derive(Debug, Clone)]
pub(crate) struct Rows<'a> {
    data: Cow<'a, [f32]>,
    dim: usize,
}

impl<'a> Rows<'a> {
    /// Borrows a standard-layout view; copies any other.
    pub(crate) fn new(view: ArrayView2<'a, f32>) -> Self {
        let dim = view.ncols();
        let data = match view.to_slice() {
            Some(slice) => Cow::Borrowed(slice),
            None => Cow::Owned(view.iter().copied().collect()),
        };
        Rows { data, dim }
    }

    /// Owned rows from row-major `data`.
    pub(crate) fn owned(data: Vec<f32>, dim: usize) -> Rows<'static> {
        Rows {
            data: Cow::Owned(data),
            dim,
        }
    }

    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Values per row.
    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`.
    pub(crate) fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Rows `range`, contiguous.
    pub(crate) fn block(&self, range: Range<usize>) -> &[f32] {
        &self.data[range.start * self.dim..range.end * self.dim]
    }

    /// Every row, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1))
    }
}
