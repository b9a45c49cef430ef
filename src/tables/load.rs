//! Reading tables from files: `.npy` (its header through `ndarray-npy`) and `.safetensors`
//! (through `safetensors`), each read whole into memory ([`FileBytes`]: never mapped, so
//! that a file changed in place cannot change or fault a table being read). A `.npy` file's
//! little-endian C-order `float32` values are used where they lie; a `.safetensors`
//! tensor's are copied out of the file (which may hold much besides its tables); `float64`,
//! `float16`, `bfloat16`, big-endian and Fortran-order values are converted once to
//! `float32`, straight from the file's bytes.
//!
//! Every value must be a finite `float32` (after conversion); the norms are computed in the
//! same pass, and the version is a SHA-256 of what the file holds for the table.
//!
//! Before a file is read, before its values are converted, and before the norms and ids are
//! made, the bytes they take are checked against the memory left ([`super::memory`]): too
//! large a file fails with the reason instead of getting the process killed.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use half::{bf16, f16};
use ndarray::ArrayView2;
use ndarray_npy::npy::header::{Header, Layout};
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};

use super::ids::Ids;
use super::memory::room_for;
use super::table::{FileBytes, FileStamp, Table, Values};
use crate::compute::Norms;

/// Hex digits of the SHA-256 kept as a version (64 bits).
const VERSION_DIGITS: usize = 16;

/// Characters a table name keeps; any other becomes `_`, so that `/tables/{name}` needs no
/// escaping.
pub(super) fn table_name(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The identity of the file at `path` (following symbolic links).
pub(super) fn stamp(path: &Path) -> Result<FileStamp, String> {
    let meta = std::fs::metadata(path).map_err(|err| err.to_string())?;
    Ok(stamp_of(&meta))
}

fn stamp_of(meta: &std::fs::Metadata) -> FileStamp {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0;
    FileStamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    }
}

/// Reads the file at `path` whole, with the identity of the file read (the one opened,
/// should `path` be renamed over meanwhile). A file that shrinks while it is read fails.
fn read(path: &Path) -> Result<(Arc<FileBytes>, FileStamp), String> {
    let file = File::open(path).map_err(|err| err.to_string())?;
    let meta = file.metadata().map_err(|err| err.to_string())?;
    let len = usize::try_from(meta.len()).map_err(|_| "the file is too large".to_owned())?;
    room_for(len, "reading it whole")?;
    // One byte more than the file had, should it have grown meanwhile.
    let bytes = FileBytes::read(len, |bytes| file.take(len as u64 + 1).read_to_end(bytes))?;
    Ok((Arc::new(bytes), stamp_of(&meta)))
}

/// Refuses a shape whose values, `size` bytes each, could not be held in memory (more than
/// `isize::MAX` bytes, with an axis of 0 counted as 1, as `ndarray` counts them): checked
/// before any reader sizes a buffer or an array from the header.
fn holdable(rows: usize, dim: usize, size: usize) -> Result<usize, String> {
    let bytes = rows
        .max(1)
        .checked_mul(dim.max(1))
        .and_then(|n| n.checked_mul(size));
    match bytes {
        Some(bytes) if bytes <= isize::MAX as usize => Ok(rows * dim * size),
        _ => Err(format!("the shape ({rows}, {dim}) is too large to hold")),
    }
}

/// What one file yields for one table before norms, ids and version.
struct Raw {
    name: String,
    source: String,
    stored_dtype: &'static str,
    rows: usize,
    dim: usize,
    values: Values,
    /// Whether `values` are as the file stores them, rather than converted.
    as_stored: bool,
    /// The bytes the version is computed from (the stored values).
    stored: std::ops::Range<usize>,
}

/// A table read from a file, or why it could not be.
pub(super) type Loaded = Result<Table, (String, String)>;

/// Reads the `.npy` file at `path` as the table `name` (ids from `ids`, if given).
pub(super) fn npy(path: &Path, file_name: &str, name: &str, ids: Option<&Path>) -> Loaded {
    let fail = |reason: String| (name.to_owned(), reason);
    let (file, data_stamp) = read(path).map_err(fail)?;
    let raw = npy_values(&file, file_name, name).map_err(fail)?;
    finish(raw, file.bytes(), data_stamp, ids)
}

fn npy_values(file: &Arc<FileBytes>, file_name: &str, name: &str) -> Result<Raw, String> {
    let map = file.bytes();
    if map.is_empty() {
        return Err("the file is empty".into());
    }
    let mut rest: &[u8] = map;
    let header =
        Header::from_reader(&mut rest).map_err(|err| format!("not a readable .npy file: {err}"))?;
    let offset = map.len() - rest.len();
    let descr = header
        .type_descriptor
        .as_string()
        .map(String::as_str)
        .unwrap_or("a structured dtype");
    let (stored_dtype, size) = match descr {
        "<f4" | ">f4" => ("float32", 4),
        "<f8" | ">f8" => ("float64", 8),
        "<f2" | ">f2" => ("float16", 2),
        other => {
            return Err(format!(
                "dtype {other:?} is not float32, float64 or float16"
            ));
        }
    };
    let fortran = header.layout == Layout::Fortran;
    let (rows, dim) = match header.shape[..] {
        [rows, dim] => (rows, dim),
        _ => {
            return Err(format!(
                "expected a 2-D array (rows × dim), found shape {:?}",
                header.shape
            ));
        }
    };
    // Before anything is read or allocated from the header's shape: a header may claim any
    // shape, and a reader would size its buffer from it.
    let needed = holdable(rows, dim, size)?;
    let held = map.len() - offset;
    if held != needed {
        return Err(format!(
            "holds {held} bytes of data, shape ({rows}, {dim}) of {stored_dtype} needs {needed}"
        ));
    }
    let stored = offset..map.len();
    let little_c_order = descr == "<f4" && !fortran && cfg!(target_endian = "little");
    // Data that does not start at a multiple of 4 bytes (numpy aligns it to 16 or 64; other
    // writers may not) is copied.
    let in_place = little_c_order && file.floats(offset, rows * dim).is_some();
    if !in_place {
        // A Fortran-order array is converted, then copied into row order.
        let copies = if fortran { 2 } else { 1 };
        room_for(rows * dim * 4 * copies, "its values as float32")?;
    }
    let values = if in_place {
        Values::InFile {
            file: Arc::clone(file),
            offset,
        }
    } else if little_c_order {
        Values::Owned(little_endian_f32(&map[stored.clone()]))
    } else {
        // Converted straight from the bytes: the file and the float32 values at once.
        let bytes = &map[stored.clone()];
        let big = descr.starts_with('>');
        let values: Vec<f32> = match size {
            4 => bytes
                .chunks_exact(4)
                .map(|c| {
                    let four = [c[0], c[1], c[2], c[3]];
                    if big {
                        f32::from_be_bytes(four)
                    } else {
                        f32::from_le_bytes(four)
                    }
                })
                .collect(),
            8 => narrow(
                bytes.chunks_exact(8).map(|c| {
                    let eight = [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
                    if big {
                        f64::from_be_bytes(eight)
                    } else {
                        f64::from_le_bytes(eight)
                    }
                }),
                dim,
                fortran.then_some(rows),
            )?,
            _ => bytes
                .chunks_exact(2)
                .map(|c| {
                    let pair = [c[0], c[1]];
                    if big {
                        f16::from_be_bytes(pair)
                    } else {
                        f16::from_le_bytes(pair)
                    }
                    .to_f32()
                })
                .collect(),
        };
        Values::Owned(if fortran {
            row_order(&values, rows, dim)
        } else {
            values
        })
    };
    let as_stored = descr == "<f4" && !fortran;
    Ok(Raw {
        name: name.to_owned(),
        source: file_name.to_owned(),
        stored_dtype,
        rows,
        dim,
        values,
        as_stored,
        stored,
    })
}

/// Little-endian `float32` bytes as values.
fn little_endian_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The `rows` × `dim` values stored column by column (`fortran`), row by row.
fn row_order(by_column: &[f32], rows: usize, dim: usize) -> Vec<f32> {
    let mut by_row = Vec::with_capacity(by_column.len());
    for row in 0..rows {
        by_row.extend((0..dim).map(|column| by_column[column * rows + row]));
    }
    by_row
}

/// `f64` values narrowed to `f32`, refusing one outside its range (`dim` values per row;
/// stored column by column when `fortran_rows` gives the rows, so that the refusal names
/// the row and column the value has in the table).
fn narrow(
    values: impl Iterator<Item = f64>,
    dim: usize,
    fortran_rows: Option<usize>,
) -> Result<Vec<f32>, String> {
    values
        .enumerate()
        .map(|(at, v)| {
            let narrowed = v as f32;
            if narrowed.is_finite() {
                return Ok(narrowed);
            }
            let at = match fortran_rows {
                Some(rows) => (at % rows.max(1)) * dim + at / rows.max(1),
                None => at,
            };
            Err(not_finite(at, dim))
        })
        .collect()
}

fn not_finite(at: usize, dim: usize) -> String {
    format!(
        "row {}, column {}: the value is NaN, infinite or outside the float32 range",
        at / dim.max(1),
        at % dim.max(1)
    )
}

/// What one `.safetensors` file yields: its tables (or why each failed), and the tensors
/// that are not tables, with the reason.
pub(super) type FileTables = (Vec<Loaded>, Vec<(String, String)>);

/// Reads every 2-D float tensor of the `.safetensors` file at `path` as a table named
/// `FILE.TENSOR` (ids from `ids_for(name)`). Tensors of another rank or dtype are not
/// tables; they are returned as skipped, with the reason.
pub(super) fn safetensors(
    path: &Path,
    file_name: &str,
    file_stem: &str,
    ids_for: impl Fn(&str) -> Option<std::path::PathBuf>,
) -> Result<FileTables, String> {
    let (file, data_stamp) = read(path)?;
    let map = file.bytes();
    let tensors = SafeTensors::deserialize(map)
        .map_err(|err| format!("not a readable .safetensors file: {err}"))?;
    let base = map.as_ptr() as usize;
    let (mut loaded, mut skipped) = (Vec::new(), Vec::new());
    let mut named: Vec<(String, String)> = Vec::new();
    for (tensor, view) in tensors.iter() {
        let name = table_name(&format!("{file_stem}.{tensor}"));
        let (rows, dim) = match view.shape() {
            &[rows, dim] => (rows, dim),
            shape => {
                skipped.push((tensor.to_owned(), format!("rank {}, not 2", shape.len())));
                continue;
            }
        };
        use safetensors::Dtype;
        let (stored_dtype, size) = match view.dtype() {
            Dtype::F32 => ("float32", 4),
            Dtype::F64 => ("float64", 8),
            Dtype::F16 => ("float16", 2),
            Dtype::BF16 => ("bfloat16", 2),
            other => {
                skipped.push((tensor.to_owned(), format!("dtype {other}, not a float")));
                continue;
            }
        };
        if let Some((_, earlier)) = named.iter().find(|(n, _)| *n == name) {
            loaded.push(Err((
                name.clone(),
                format!("tensors {earlier:?} and {tensor:?} both make the table name {name:?}"),
            )));
            continue;
        }
        named.push((name.clone(), tensor.to_owned()));
        let bytes = view.data();
        let offset = bytes.as_ptr() as usize - base;
        let stored = offset..offset + bytes.len();
        match holdable(rows, dim, size) {
            Ok(needed) if needed == bytes.len() => {}
            Ok(_) => {
                let reason = "the tensor's data does not match its shape".to_owned();
                loaded.push(Err((name, reason)));
                continue;
            }
            Err(reason) => {
                loaded.push(Err((name, reason)));
                continue;
            }
        }
        if let Err(reason) = room_for(rows * dim * 4, "its values as float32") {
            loaded.push(Err((name, reason)));
            continue;
        }
        let values = {
            let converted: Vec<f32> = match stored_dtype {
                "float32" => little_endian_f32(bytes),
                "float16" => bytes
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                "bfloat16" => bytes
                    .chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                _ => match narrow(
                    bytes.chunks_exact(8).map(|c| {
                        f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
                    }),
                    dim,
                    None,
                ) {
                    Ok(values) => values,
                    Err(reason) => {
                        loaded.push(Err((name, reason)));
                        continue;
                    }
                },
            };
            Values::Owned(converted)
        };
        let raw = Raw {
            name: name.clone(),
            source: format!("{file_name}:{tensor}"),
            stored_dtype,
            rows,
            dim,
            values,
            as_stored: stored_dtype == "float32",
            stored,
        };
        let ids = ids_for(&name);
        loaded.push(finish(raw, map, data_stamp.clone(), ids.as_deref()));
    }
    Ok((loaded, skipped))
}

/// Checks the values, computes norms, reads the ids and hashes the content (`map`: the
/// file's bytes).
fn finish(raw: Raw, map: &[u8], data_stamp: FileStamp, ids_path: Option<&Path>) -> Loaded {
    let name = raw.name.clone();
    let fail = |reason: String| (name.clone(), reason);
    if raw.dim == 0 {
        return Err(fail("rows have dimension 0".into()));
    }
    let values: &[f32] = match &raw.values {
        Values::Owned(values) => values,
        Values::InFile { file, offset } => file
            .floats(*offset, raw.rows * raw.dim)
            .ok_or_else(|| fail("the values are not aligned for float32".into()))?,
    };
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        return Err(fail(not_finite(at, raw.dim)));
    }
    // The norms, 12 bytes a row; the ids, their file read whole, a copy of its text and 8
    // bytes a row.
    let ids_len = match ids_path.map(std::fs::metadata) {
        Some(Ok(meta)) => usize::try_from(meta.len()).unwrap_or(usize::MAX),
        _ => 0,
    };
    let ids_bytes = match ids_path {
        Some(_) => ids_len
            .saturating_mul(2)
            .saturating_add(raw.rows.saturating_mul(8)),
        None => 0,
    };
    room_for(
        raw.rows.saturating_mul(12).saturating_add(ids_bytes),
        "its norms and ids",
    )
    .map_err(fail)?;
    let view =
        ArrayView2::from_shape((raw.rows, raw.dim), values).map_err(|err| fail(err.to_string()))?;
    let norms = Norms::of(view);

    let mut hash = Sha256::new();
    hash.update(raw.stored_dtype.as_bytes());
    hash.update(format!("({},{})", raw.rows, raw.dim).as_bytes());
    hash.update(map.get(raw.stored.clone()).unwrap_or_default());
    let (ids, ids_stamp) = match ids_path {
        Some(path) => {
            let ids_fail = |reason: String| {
                let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
                fail(format!("{}: {reason}", file.unwrap_or_default()))
            };
            let (file, ids_stamp) = read(path).map_err(ids_fail)?;
            let ids = Ids::parse(file.bytes(), raw.rows).map_err(ids_fail)?;
            hash.update(b"ids");
            hash.update(file.bytes());
            (Some(ids), Some(ids_stamp))
        }
        None => (None, None),
    };
    let digest = hash.finalize();
    let version: String = digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .take(VERSION_DIGITS)
        .collect();
    Ok(Table {
        name: raw.name,
        source: raw.source,
        stored_dtype: raw.stored_dtype,
        rows: raw.rows,
        dim: raw.dim,
        values: raw.values,
        as_stored: raw.as_stored,
        norms,
        ids,
        version,
        loaded_at: SystemTime::now(),
        stamps: (data_stamp, ids_stamp),
    })
}

#[cfg(test)]
mod tests {
    use super::super::memory::HEADROOM;
    use super::super::memory::tests::with_left;
    use super::*;

    /// A `.npy` file's bytes: `descr` values of `shape`, stored as `data`.
    fn npy_bytes(descr: &str, fortran: bool, shape: (usize, usize), data: &[u8]) -> Vec<u8> {
        let order = if fortran { "True" } else { "False" };
        let dict = format!(
            "{{'descr': '{descr}', 'fortran_order': {order}, 'shape': ({}, {}), }}",
            shape.0, shape.1
        );
        let padded = format!("{dict:<117}\n");
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&u16::try_from(padded.len()).unwrap().to_le_bytes());
        bytes.extend_from_slice(padded.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    fn file(bytes: &[u8]) -> Arc<FileBytes> {
        let len = bytes.len();
        Arc::new(
            FileBytes::read(len, |buffer| {
                std::io::Read::read_to_end(&mut &bytes[..], buffer)
            })
            .unwrap(),
        )
    }

    fn owned(raw: &Raw) -> &[f32] {
        match &raw.values {
            Values::Owned(values) => values,
            Values::InFile { .. } => panic!("not converted"),
        }
    }

    #[test]
    fn values_are_converted_only_into_the_memory_left_and_fortran_order_comes_out_by_row() {
        // (2, 3): rows [1, 2, 3] and [4, 5, 6], stored column by column as float32 and as
        // float64 row by row.
        let by_column: Vec<u8> = [1f32, 4., 2., 5., 3., 6.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let fortran = file(&npy_bytes("<f4", true, (2, 3), &by_column));
        let wide: Vec<u8> = [1f64, 2., 3., 4., 5., 6.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let float64 = file(&npy_bytes("<f8", false, (2, 3), &wide));
        // Six float32 values: 24 bytes, twice that for the copy into row order.
        for (file, needed) in [(&fortran, 48), (&float64, 24)] {
            let refused = with_left(HEADROOM + needed - 1, || npy_values(file, "t.npy", "t"));
            let reason = refused.err().unwrap();
            assert!(
                reason.starts_with(&format!(
                    "its values as float32: {needed} bytes of memory needed"
                )),
                "{reason}"
            );
            let raw = with_left(HEADROOM + needed, || npy_values(file, "t.npy", "t")).unwrap();
            assert_eq!(owned(&raw), [1., 2., 3., 4., 5., 6.]);
        }
    }

    #[test]
    fn norms_and_ids_are_counted_before_they_are_made() {
        let dir = std::env::temp_dir().join(format!("simserve-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let values: Vec<u8> = (0..100)
            .flat_map(|i| (i as f32 + 1.0).to_le_bytes())
            .collect();
        let (path, ids) = (dir.join("t.npy"), dir.join("t.ids.txt"));
        std::fs::write(&path, npy_bytes("<f4", false, (100, 1), &values)).unwrap();
        let text: String = (0..100).map(|i| format!("id-{i}\n")).collect();
        std::fs::write(&ids, &text).unwrap();
        // The file (528 bytes) fits; 100 norms (1,200 bytes) and ids (twice the text, and
        // 800 bytes) do not.
        let loaded = with_left(HEADROOM + 1000, || npy(&path, "t.npy", "t", Some(&ids)));
        let (_, reason) = loaded.err().unwrap();
        let needed = 1200 + 2 * text.len() + 800;
        assert!(
            reason.starts_with(&format!("its norms and ids: {needed} bytes (")),
            "{reason}"
        );
        let loaded = with_left(HEADROOM + needed as u64, || {
            npy(&path, "t.npy", "t", Some(&ids))
        });
        assert_eq!(loaded.unwrap().rows, 100);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_float64_out_of_range_is_named_by_its_row_and_column_in_either_order() {
        // 2 rows of 3: the value at row 1, column 0 is stored 4th in C order, 2nd column by
        // column.
        let c_order = [0.5, 1.0, 2.0, 1e300, 3.0, 4.0];
        let fortran = [0.5, 1e300, 1.0, 3.0, 2.0, 4.0];
        let named = "row 1, column 0: the value is NaN, infinite or outside the float32 range";
        assert_eq!(narrow(c_order.into_iter(), 3, None), Err(named.into()));
        assert_eq!(narrow(fortran.into_iter(), 3, Some(2)), Err(named.into()));
        assert_eq!(
            narrow([0.5, -2.0].into_iter(), 2, Some(1)),
            Ok(vec![0.5, -2.0])
        );
    }
}
