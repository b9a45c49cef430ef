//! [`Table`]: one loaded table: its `f32` values (memory-mapped in place, or converted once),
//! the norms cosine and euclidean need, its ids, and what `GET /tables` says about it.

use std::sync::Arc;
use std::time::SystemTime;

use memmap2::Mmap;
use ndarray::ArrayView2;

use super::ids::Ids;
use crate::compute::{Norms, Operand};

/// Where a table's values live.
#[derive(Debug)]
pub(super) enum Values {
    /// Little-endian `float32` in a memory-mapped file, from byte `offset` (4-aligned):
    /// read in place through the page cache, shared with every process mapping the file.
    Mapped { map: Arc<Mmap>, offset: usize },
    /// Converted once at load (another dtype, byte order or layout).
    Owned(Vec<f32>),
}

/// The identity of a file a table was read from: when none of its files changed, a reload
/// keeps the table as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileStamp {
    pub(super) len: u64,
    pub(super) modified: Option<SystemTime>,
    pub(super) inode: u64,
}

/// A table of `rows` vectors of `dim` values.
#[derive(Debug)]
pub struct Table {
    pub(super) name: String,
    /// The file (and for safetensors the tensor) it came from.
    pub(super) source: String,
    /// The dtype stored in the file (`float32`, `float64`, `float16`, `bfloat16`).
    pub(super) stored_dtype: &'static str,
    pub(super) rows: usize,
    pub(super) dim: usize,
    pub(super) values: Values,
    pub(super) norms: Norms,
    pub(super) ids: Option<Ids>,
    pub(super) version: String,
    pub(super) loaded_at: SystemTime,
    /// The data file's and the ids file's identities.
    pub(super) stamps: (FileStamp, Option<FileStamp>),
}

impl Table {
    /// The table's name, as requests reference it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file (and tensor) it was read from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Rows (vectors).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The dtype the file stores; tables always serve `float32`.
    pub fn stored_dtype(&self) -> &'static str {
        self.stored_dtype
    }

    /// Whether the values are read in place from the mapped file (`float32`, little-endian,
    /// C order), rather than converted at load.
    pub fn in_place(&self) -> bool {
        matches!(self.values, Values::Mapped { .. })
    }

    /// The content hash: equal content (values, shape, stored dtype and ids) gives an equal
    /// version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// When this version was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// The rows' ids, if the table has an ids file.
    pub fn ids(&self) -> Option<&Ids> {
        self.ids.as_ref()
    }

    /// Bytes the table holds: its values (mapped or owned), norms and ids.
    pub fn bytes(&self) -> usize {
        self.rows * self.dim * 4 + self.norms.bytes() + self.ids.as_ref().map_or(0, Ids::bytes)
    }

    /// The values, row-major (`None` only if the mapping no longer holds them, which the
    /// load rules out).
    fn values(&self) -> Option<&[f32]> {
        let len = self.rows * self.dim;
        match &self.values {
            Values::Owned(values) => values.get(..len),
            Values::Mapped { map, offset } => {
                let bytes = map.get(*offset..offset + len * 4)?;
                bytemuck::try_cast_slice(bytes).ok()
            }
        }
    }

    /// Every row, in place.
    pub fn view(&self) -> Option<ArrayView2<'_, f32>> {
        ArrayView2::from_shape((self.rows, self.dim), self.values()?).ok()
    }

    /// Every row with its norms: one side of a comparison, scored in place.
    pub fn operand(&self) -> Option<Operand<'_>> {
        Operand::with_norms(self.view()?, &self.norms)
    }
}
