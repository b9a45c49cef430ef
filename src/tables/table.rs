//! [`Table`]: one loaded table: its `f32` values (where they lie in the file's bytes, or
//! converted once), the norms cosine and euclidean need, its ids, and what `GET /tables`
//! says about it.

use std::sync::Arc;
use std::time::SystemTime;

use ndarray::ArrayView2;

use super::ids::Ids;
use crate::compute::{Norms, Operand};

/// A data file's bytes, read whole into memory at load. Little-endian float32 values stored
/// at an offset that is 4-aligned in memory (numpy's 64-byte aligned data, in the
/// allocator's 16-byte aligned buffer) are used where they lie.
///
/// Read, not memory-mapped: a mapped file rewritten or truncated in place would change a
/// table under the requests reading it, or fault (`SIGBUS`) the whole process.
#[derive(Debug)]
pub(super) struct FileBytes(Vec<u8>);

impl FileBytes {
    /// The `len` bytes `read` appends to an empty buffer with room for them (a reader that
    /// gives more or fewer, a file whose length changed while read, fails).
    pub(super) fn read(
        len: usize,
        read: impl FnOnce(&mut Vec<u8>) -> std::io::Result<usize>,
    ) -> Result<Self, String> {
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(len)
            .map_err(|_| format!("{len} bytes could not be allocated to read it"))?;
        read(&mut bytes).map_err(|err| err.to_string())?;
        if bytes.len() != len {
            return Err(format!(
                "it changed while read: {} bytes where it had {len}",
                bytes.len()
            ));
        }
        Ok(FileBytes(bytes))
    }

    /// The file's bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The `count` floats stored from byte `offset`, if they are in the file and aligned
    /// for `f32` in memory.
    pub(super) fn floats(&self, offset: usize, count: usize) -> Option<&[f32]> {
        let end = offset.checked_add(count.checked_mul(4)?)?;
        bytemuck::try_cast_slice(self.0.get(offset..end)?).ok()
    }
}

/// Where a table's values live.
#[derive(Debug)]
pub(super) enum Values {
    /// Little-endian `float32` where they lie in a `.npy` file's bytes, from byte `offset`
    /// (aligned for `f32` in memory).
    InFile { file: Arc<FileBytes>, offset: usize },
    /// Read into a buffer of their own at load: converted (another dtype, byte order, layout
    /// or alignment), or a `.safetensors` tensor's, copied out of its file (which may hold
    /// much else) so that only the tables stay in memory.
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
    /// The name of the file it came from, in the directory.
    pub(super) file: String,
    /// The file (and for safetensors the tensor) it came from.
    pub(super) source: String,
    /// The dtype stored in the file (`float32`, `float64`, `float16`, `bfloat16`).
    pub(super) stored_dtype: &'static str,
    pub(super) rows: usize,
    pub(super) dim: usize,
    pub(super) values: Values,
    /// Whether the values are as the file stores them (little-endian C-order float32),
    /// rather than converted.
    pub(super) as_stored: bool,
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

    /// Whether the values are used as the file stores them (`float32`, little-endian, C
    /// order), rather than converted at load.
    pub fn in_place(&self) -> bool {
        self.as_stored
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

    /// Bytes the table holds: its values, norms and ids.
    pub fn bytes(&self) -> usize {
        self.rows * self.dim * 4 + self.norms.bytes() + self.ids.as_ref().map_or(0, Ids::bytes)
    }

    /// The values, row-major (`None` only if the file's bytes do not hold them, which the
    /// load rules out).
    fn values(&self) -> Option<&[f32]> {
        let len = self.rows * self.dim;
        match &self.values {
            Values::Owned(values) => values.get(..len),
            Values::InFile { file, offset } => file.floats(*offset, len),
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
