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
//!
//! A file is opened only if it is a regular file, and without waiting ([`open`]): a FIFO or
//! device put in a table's place fails that table rather than hanging the reload. A `.npy`
//! header's length is checked before the header is read ([`npy_header`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use half::{bf16, f16};
use ndarray::ArrayView2;
use ndarray_npy::npy::header::{Header, Layout};
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};

use super::ids::Ids;
use super::memory::Room;
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

/// The longest table name, in bytes: a file name's longest on most file systems, so only a
/// `.safetensors` tensor's name can make a longer one (a header may hold a name of many
/// megabytes, which would then be in every `GET /tables`, log line and reload answer).
pub const MAX_TABLE_NAME: usize = 255;

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
/// should `path` be renamed over meanwhile). A file that shrinks while it is read fails; so
/// does anything but a regular file (followed through symbolic links), checked before it is
/// opened and again on what was opened, should it have been swapped meanwhile: a FIFO, a
/// device such as `/dev/zero` or a directory gives no bytes to read, or endless ones.
fn read(path: &Path, room: &mut Room) -> Result<(Arc<FileBytes>, FileStamp), String> {
    regular(&std::fs::metadata(path).map_err(|err| err.to_string())?)?;
    let file = open(path)?;
    let meta = file.metadata().map_err(|err| err.to_string())?;
    regular(&meta)?;
    let len = usize::try_from(meta.len()).map_err(|_| "the file is too large".to_owned())?;
    room.take(len, "reading it whole")?;
    // One byte more than the file had, should it have grown meanwhile.
    let bytes = FileBytes::read(len, |bytes| file.take(len as u64 + 1).read_to_end(bytes))
        .inspect_err(|_| room.give_back(len))?;
    Ok((Arc::new(bytes), stamp_of(&meta)))
}

/// Opens `path` for reading without waiting: opening a FIFO that has no writer (or some
/// devices) would otherwise block until one comes, hanging the reload and so every reload
/// after it, refused while one runs. With `O_NONBLOCK` such an open returns at once, and
/// [`regular`] then refuses the file; reads of a regular file do not heed the flag.
fn open(path: &Path) -> Result<File, String> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Nor may a terminal put in a table's place become the process's.
        let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
        options.custom_flags(flags.bits().cast_signed());
    }
    options.open(path).map_err(|err| err.to_string())
}

/// Refuses anything but a regular file, saying what it is.
fn regular(meta: &std::fs::Metadata) -> Result<(), String> {
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(());
    }
    let what = if kind.is_dir() {
        "a directory"
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_char_device() || kind.is_block_device() {
                "a device"
            } else if kind.is_socket() {
                "a socket"
            } else {
                "not a file"
            }
        }
        #[cfg(not(unix))]
        "not a file"
    };
    Err(format!("not a regular file ({what})"))
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
    /// The file's name in the directory.
    file: String,
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
    let mut room = Room::now();
    let (file, data_stamp) = read(path, &mut room).map_err(fail)?;
    let raw = npy_values(&file, file_name, name, &mut room).map_err(fail)?;
    finish(raw, file.bytes(), data_stamp, ids, &mut room)
}

/// The longest `.npy` header read, in bytes. numpy's own `np.load` refuses longer ones by
/// default (`max_header_size`, 10,000 since numpy 1.24, for the same reason: a header is
/// parsed whole, and a long one costs memory and time out of proportion to the file), and
/// the header of a 2-D float array takes about 128 (numpy pads it to a multiple of 64).
pub(super) const MAX_NPY_HEADER: usize = 10_000;

/// Where the header of the `.npy` file `map` starts and ends (its data begins), from the
/// magic string, the version and the header length, checked before the header itself is
/// read: a length field may claim up to 4 GiB, and a reader would allocate that much.
fn npy_header(map: &[u8]) -> Result<std::ops::Range<usize>, String> {
    let unreadable = |why: String| format!("not a readable .npy file: {why}");
    let rest = map
        .strip_prefix(b"\x93NUMPY")
        .ok_or_else(|| unreadable("it does not start with the .npy magic string".into()))?;
    let (preamble, len) = match *rest {
        [1, _, a, b, ..] => (10, usize::from(u16::from_le_bytes([a, b]))),
        [2 | 3, _, a, b, c, d, ..] => {
            let len = u32::from_le_bytes([a, b, c, d]);
            (12, usize::try_from(len).unwrap_or(usize::MAX))
        }
        [major, minor, ..] if !matches!(major, 1..=3) => {
            return Err(unreadable(format!(
                "format version {major}.{minor}, not 1, 2 or 3"
            )));
        }
        _ => return Err(unreadable("it ends within its preamble".into())),
    };
    if len > MAX_NPY_HEADER {
        return Err(unreadable(format!(
            "its header is {len} bytes, more than the {MAX_NPY_HEADER} read (numpy's own limit)"
        )));
    }
    let end = preamble + len;
    if end > map.len() {
        return Err(unreadable(format!(
            "its header is {len} bytes, and the file ends {} bytes after its preamble",
            map.len() - preamble.min(map.len())
        )));
    }
    Ok(preamble..end)
}

/// The deepest a `.npy` header's brackets may nest. numpy writes a dict holding a tuple (2);
/// structured dtypes, refused anyway, take a level or two more. The header's parser takes
/// twice as long for each level of nested lists or dicts (a 208-byte header nesting 40 lists
/// would take days), so deeper headers are refused before it runs.
const MAX_NPY_HEADER_DEPTH: usize = 4;

/// How deep the brackets (`[`, `(`, `{`) of the `.npy` header `header` nest, counting those
/// in its strings too: never less than the parser's depth, however strings are escaped
/// (`\N{…}` runs to its `}`), and numpy writes no brackets in the strings of the dtypes
/// simserve reads.
fn npy_header_depth(header: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for &byte in header {
        match byte {
            b'[' | b'(' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b')' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn npy_values(
    file: &Arc<FileBytes>,
    file_name: &str,
    name: &str,
    room: &mut Room,
) -> Result<Raw, String> {
    let map = file.bytes();
    if map.is_empty() {
        return Err("the file is empty".into());
    }
    let header = npy_header(map)?;
    let offset = header.end;
    // The header's text only: the preamble's length bytes may be a quote (0x22, 0x27).
    let depth = npy_header_depth(&map[header]);
    if depth > MAX_NPY_HEADER_DEPTH {
        return Err(format!(
            "not a readable .npy file: its header nests brackets {depth} deep, more than \
             {MAX_NPY_HEADER_DEPTH} (numpy writes 2)"
        ));
    }
    let header = Header::from_reader(&mut &map[..offset])
        .map_err(|err| format!("not a readable .npy file: {err}"))?;
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
        ref shape if shape.len() <= 8 => {
            return Err(format!(
                "expected a 2-D array (rows × dim), found shape {shape:?}"
            ));
        }
        ref shape => {
            return Err(format!(
                "expected a 2-D array (rows × dim), found {} dimensions",
                shape.len()
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
        room.take(rows * dim * 4 * copies, "its values as float32")?;
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
        file: file_name.to_owned(),
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

/// Bytes held per byte of a `.safetensors` header while its tensors are read: the crate's
/// index of them (each one's name, dtype, shape and offsets) and, for each, a table or a
/// skipped entry; erring high, since a header may list millions of tensors.
const SAFETENSORS_HEADER_BYTES_HELD: usize = 8;

/// Reads every 2-D float tensor of the `.safetensors` file at `path` as a table named
/// `FILE.TENSOR` (ids from `ids_for(name)`, which may say why the table cannot have them).
/// Tensors of another rank or dtype are not tables; they are returned as skipped, with the
/// reason.
pub(super) fn safetensors(
    path: &Path,
    file_name: &str,
    file_stem: &str,
    ids_for: impl Fn(&str) -> Result<Option<PathBuf>, String>,
) -> Result<FileTables, String> {
    let mut room = Room::now();
    let (file, data_stamp) = read(path, &mut room)?;
    let map = file.bytes();
    // The header's JSON (up to 100 MB, as the crate reads it) becomes the crate's index of
    // tensors, then a table or a skipped entry each: checked before it is parsed.
    let header = map
        .first_chunk::<8>()
        .map_or(0, |len| u64::from_le_bytes(*len));
    let header = usize::try_from(header).unwrap_or(usize::MAX).min(map.len());
    room.take(
        header.saturating_mul(SAFETENSORS_HEADER_BYTES_HELD),
        "its header's tensors",
    )?;
    let tensors = SafeTensors::deserialize(map)
        .map_err(|err| format!("not a readable .safetensors file: {err}"))?;
    let base = map.as_ptr() as usize;
    let (mut loaded, mut skipped) = (Vec::new(), Vec::new());
    // The tensor that made each table name.
    let mut named: HashMap<String, &str> = HashMap::new();
    // In name order: the crate's index is a hash map, whose order changes from one parse to
    // the next, and of two tensors that make the same table name the first is served.
    let mut views: Vec<_> = tensors.iter().collect();
    views.sort_unstable_by_key(|(name, _)| *name);
    for (tensor, view) in views {
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
        if name.len() > MAX_TABLE_NAME {
            let reason = format!(
                "the tensor's table name takes {} bytes, more than the {MAX_TABLE_NAME} a name may",
                name.len()
            );
            // Named by its start (the name is ASCII by now) and `…`, which no table name
            // holds, so that the failure is no other table's: 255 bytes in all.
            let start = &name[..MAX_TABLE_NAME - '…'.len_utf8()];
            loaded.push(Err((format!("{start}…"), reason)));
            continue;
        }
        if let Some(earlier) = named.get(&name) {
            loaded.push(Err((
                name.clone(),
                format!("tensors {earlier:?} and {tensor:?} both make the table name {name:?}"),
            )));
            continue;
        }
        named.insert(name.clone(), tensor);
        let ids = match ids_for(&name) {
            Ok(ids) => ids,
            Err(reason) => {
                loaded.push(Err((name, reason)));
                continue;
            }
        };
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
        if let Err(reason) = room.take(rows * dim * 4, "its values as float32") {
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
                        // The values were not kept.
                        room.give_back(rows * dim * 4);
                        loaded.push(Err((name, reason)));
                        continue;
                    }
                },
            };
            Values::Owned(converted)
        };
        let raw = Raw {
            name: name.clone(),
            file: file_name.to_owned(),
            source: format!("{file_name}:{tensor}"),
            stored_dtype,
            rows,
            dim,
            values,
            as_stored: stored_dtype == "float32",
            stored,
        };
        let finished = finish(raw, map, data_stamp.clone(), ids.as_deref(), &mut room);
        if finished.is_err() {
            // Nor were its values, norms or ids kept: what they took is free for the next.
            room.give_back(rows * dim * 4);
        }
        loaded.push(finished);
    }
    Ok((loaded, skipped))
}

/// Checks the values, computes norms, reads the ids and hashes the content (`map`: the
/// file's bytes).
fn finish(
    raw: Raw,
    map: &[u8],
    data_stamp: FileStamp,
    ids_path: Option<&Path>,
    room: &mut Room,
) -> Loaded {
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
    let taken = raw.rows.saturating_mul(12).saturating_add(ids_bytes);
    room.take(taken, "its norms and ids").map_err(fail)?;
    // Should the table fail from here, none of it is kept: what it took is free again.
    let Ok(view) = ArrayView2::from_shape((raw.rows, raw.dim), values) else {
        room.give_back(taken);
        return Err(fail("its values do not fill its shape".into()));
    };
    let norms = Norms::of(view);

    let mut hash = Sha256::new();
    hash.update(raw.stored_dtype.as_bytes());
    hash.update(format!("({},{})", raw.rows, raw.dim).as_bytes());
    hash.update(map.get(raw.stored.clone()).unwrap_or_default());
    let (ids, ids_stamp) = match ids_path {
        Some(path) => {
            // The read counts the file's text itself (it may have grown since).
            room.give_back(ids_len);
            match read_ids(path, raw.rows, room, &mut hash) {
                Ok((ids, stamp)) => (Some(ids), Some(stamp)),
                Err(reason) => {
                    room.give_back(taken.saturating_sub(ids_len));
                    let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
                    return Err(fail(format!("{}: {reason}", file.unwrap_or_default())));
                }
            }
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
        file: raw.file,
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

/// Reads the ids file at `path` for a table of `rows`, adding its text to `hash`. Its text is
/// counted in `room` while it is read and parsed, and given back after (the ids keep their
/// own copy of it, which the caller counted).
fn read_ids(
    path: &Path,
    rows: usize,
    room: &mut Room,
    hash: &mut Sha256,
) -> Result<(Ids, FileStamp), String> {
    let (file, stamp) = read(path, room)?;
    let parsed = Ids::parse(file.bytes(), rows);
    room.give_back(file.bytes().len());
    let ids = parsed?;
    hash.update(b"ids");
    hash.update(file.bytes());
    Ok((ids, stamp))
}

#[cfg(test)]
pub(super) mod tests {
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
            let refused = with_left(HEADROOM + needed - 1, || {
                npy_values(file, "t.npy", "t", &mut Room::now())
            });
            let reason = refused.err().unwrap();
            assert!(
                reason.starts_with(&format!(
                    "its values as float32: {needed} bytes of memory needed"
                )),
                "{reason}"
            );
            let raw = with_left(HEADROOM + needed, || {
                npy_values(file, "t.npy", "t", &mut Room::now())
            })
            .unwrap();
            assert_eq!(owned(&raw), [1., 2., 3., 4., 5., 6.]);
        }
    }

    #[test]
    fn a_safetensors_header_is_counted_before_its_tensors_are_read() {
        let dir = std::env::temp_dir().join(format!("simserve-header-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Many tensors of no rows: each a table, and nothing else to count.
        let entries: Vec<String> = (0..1000)
            .map(|i| format!(r#""t{i}":{{"dtype":"F32","shape":[0,2],"data_offsets":[0,0]}}"#))
            .collect();
        let header = format!("{{{}}}", entries.join(","));
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        let path = dir.join("m.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let needed = (bytes.len() + header.len() * SAFETENSORS_HEADER_BYTES_HELD) as u64;
        let read = |left| {
            with_left(left, || {
                safetensors(&path, "m.safetensors", "m", |_| Ok(None))
            })
        };
        let reason = read(HEADROOM + needed - 1).err().unwrap();
        assert!(reason.starts_with("its header's tensors: "), "{reason}");
        let (loaded, skipped) = read(HEADROOM + needed).unwrap();
        assert_eq!((loaded.len(), skipped.len()), (1000, 0));
        std::fs::remove_dir_all(&dir).unwrap();
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
        // 800 bytes) do not in what the file leaves.
        let loaded = with_left(HEADROOM + 1000, || npy(&path, "t.npy", "t", Some(&ids)));
        let (_, reason) = loaded.err().unwrap();
        let needed = 1200 + 2 * text.len() + 800;
        assert!(
            reason.starts_with(&format!("its norms and ids: {needed} bytes (")),
            "{reason}"
        );
        let loaded = with_left(HEADROOM + 528 + needed as u64, || {
            npy(&path, "t.npy", "t", Some(&ids))
        });
        assert_eq!(loaded.unwrap().rows, 100);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_tensor_whose_table_name_would_be_longer_than_255_bytes_fails_by_its_names_start_and_an_ellipsis()
     {
        let dir = std::env::temp_dir().join(format!("simserve-long-name-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // "m." and the tensor's name: 255 bytes is a table, 256 is not.
        let (fits, long) = ("x".repeat(253), "y".repeat(254));
        let header = format!(
            r#"{{"{fits}":{{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]}},"{long}":{{"dtype":"F32","shape":[1,1],"data_offsets":[4,8]}}}}"#
        );
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0, 0, 128, 63, 0, 0, 128, 63]);
        let path = dir.join("m.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let (loaded, _) = safetensors(&path, "m.safetensors", "m", |_| Ok(None)).unwrap();
        let mut names: Vec<(String, Option<String>)> = loaded
            .into_iter()
            .map(|table| match table {
                Ok(table) => (table.name, None),
                Err((name, reason)) => (name, Some(reason)),
            })
            .collect();
        names.sort();
        assert_eq!(names[0], (format!("m.{fits}"), None));
        assert_eq!(
            names[1],
            (
                format!("m.{}…", &long[..250]),
                Some(
                    "the tensor's table name takes 256 bytes, more than the 255 a name may"
                        .to_owned()
                )
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_a_failed_tables_norms_and_ids_took_is_free_for_the_next_table_of_the_file() {
        let dir = std::env::temp_dir().join(format!("simserve-give-back-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Three tensors of 100 rows, whose ids file (shared) holds one id too few.
        let values: Vec<u8> = (0..100)
            .flat_map(|i| (i as f32 + 1.0).to_le_bytes())
            .collect();
        let entries: Vec<String> = (0..3)
            .map(|i| {
                let (from, to) = (i * 400, i * 400 + 400);
                format!(r#""t{i}":{{"dtype":"F32","shape":[100,1],"data_offsets":[{from},{to}]}}"#)
            })
            .collect();
        let header = format!("{{{}}}", entries.join(","));
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(values.repeat(3));
        let (path, ids) = (dir.join("m.safetensors"), dir.join("t.ids.txt"));
        std::fs::write(&path, &bytes).unwrap();
        let text: String = (0..99).map(|i| format!("id-{i}\n")).collect();
        std::fs::write(&ids, &text).unwrap();
        // Room for the file, its header, and one table's values, norms and ids at a time.
        let one_table = 400 + 1200 + 2 * text.len() + 800;
        let left = HEADROOM
            + (bytes.len() + header.len() * SAFETENSORS_HEADER_BYTES_HELD + one_table) as u64;
        let (loaded, _) = with_left(left, || {
            safetensors(&path, "m.safetensors", "m", |_| Ok(Some(ids.clone())))
        })
        .unwrap();
        assert_eq!(loaded.len(), 3);
        for table in loaded {
            let (_, reason) = table.err().unwrap();
            assert!(reason.starts_with("t.ids.txt: "), "{reason}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
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

    /// Makes a FIFO at `path` (no writer opens it).
    pub(in crate::tables) fn make_fifo(path: &Path) {
        use rustix::fs::{CWD, Mode};
        rustix::fs::mkfifoat(CWD, path, Mode::RUSR | Mode::WUSR).unwrap();
    }

    /// A `.npy` preamble of format `major`.0 claiming a header of `len` bytes.
    fn preamble(major: u8, len: u32) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY".to_vec();
        bytes.extend_from_slice(&[major, 0]);
        match major {
            1 => bytes.extend_from_slice(&u16::try_from(len).unwrap().to_le_bytes()),
            _ => bytes.extend_from_slice(&len.to_le_bytes()),
        }
        bytes
    }

    #[test]
    fn an_npy_header_nesting_deeper_than_numpy_writes_is_refused_before_it_is_parsed() {
        // 40 nested lists in an extra key, a 146-byte header: its parser would take days.
        let deep = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': {}{} }}",
            "[".repeat(40),
            "]".repeat(40)
        );
        let mut bytes = preamble(1, 0);
        let padded = format!("{deep}\n");
        bytes[8..10].copy_from_slice(&u16::try_from(padded.len()).unwrap().to_le_bytes());
        bytes.extend_from_slice(padded.as_bytes());
        bytes.extend_from_slice(&[0; 16]);
        let reason = npy_values(&file(&bytes), "t.npy", "t", &mut Room::now()).err();
        assert_eq!(
            reason.unwrap(),
            "not a readable .npy file: its header nests brackets 41 deep, more than 4 \
             (numpy writes 2)"
        );
        // Brackets in strings count too, whatever hides them from a scan for quotes (an
        // escape the parser reads as running on, `\N{'}`); numpy's own header is 2 deep.
        let escaped = format!(
            "{{'s': '\\N{{'}}', 'x': {}{}}}",
            "[".repeat(40),
            "]".repeat(40)
        );
        assert_eq!(npy_header_depth(escaped.as_bytes()), 41);
        assert_eq!(npy_header_depth(b"{'descr': '<f4', 'shape': (1, 2), }"), 2);
        // Padded to 290 bytes, whose length's low byte is a quote (0x22): it is not read as
        // one.
        let quoted = format!("{deep:<289}\n");
        let mut bytes = preamble(1, u32::try_from(quoted.len()).unwrap());
        bytes.extend_from_slice(quoted.as_bytes());
        bytes.extend_from_slice(&[0; 16]);
        assert_eq!(bytes[8], b'"');
        let reason = npy_values(&file(&bytes), "t.npy", "t", &mut Room::now()).err();
        assert!(reason.unwrap().contains("nests brackets 41 deep"));
        let numpy = npy_bytes("<f4", false, (1, 1), &1f32.to_le_bytes());
        assert!(npy_values(&file(&numpy), "t.npy", "t", &mut Room::now()).is_ok());
    }

    #[test]
    fn an_npy_header_longer_than_the_file_or_the_cap_is_refused_before_it_is_read() {
        // 132 bytes that claim a header of almost 4 GiB: a reader would allocate it all.
        let mut huge = preamble(2, 0xffff_fff0);
        huge.resize(132, b' ');
        let reason = npy_values(&file(&huge), "t.npy", "t", &mut Room::now()).err();
        assert_eq!(
            reason.unwrap(),
            "not a readable .npy file: its header is 4294967280 bytes, more than the 10000 \
             read (numpy's own limit)"
        );
        // Within the cap, but past the end of the file.
        let mut short = preamble(1, 5000);
        short.resize(1000, b' ');
        let reason = npy_values(&file(&short), "t.npy", "t", &mut Room::now()).err();
        assert_eq!(
            reason.unwrap(),
            "not a readable .npy file: its header is 5000 bytes, and the file ends 990 bytes \
             after its preamble"
        );
        // A well-formed header one byte longer than the cap (numpy's `np.load` refuses it
        // too), and one at the cap, which is read.
        for (len, refused) in [(MAX_NPY_HEADER + 1, true), (MAX_NPY_HEADER, false)] {
            let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }";
            let header = format!("{dict:<width$}\n", width = len - 1);
            let mut bytes = preamble(3, u32::try_from(len).unwrap());
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(&1f32.to_le_bytes());
            let got = npy_values(&file(&bytes), "t.npy", "t", &mut Room::now());
            assert_eq!(got.is_err(), refused, "{len}");
        }
        let reason = npy_values(&file(b"\x93NUMPY\x04\x00"), "t.npy", "t", &mut Room::now());
        assert_eq!(
            reason.err().unwrap(),
            "not a readable .npy file: format version 4.0, not 1, 2 or 3"
        );
    }

    #[test]
    fn a_shape_of_many_dimensions_is_counted_not_quoted() {
        let shape = vec!["1"; 2000].join(", ");
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}");
        let header = format!("{dict}\n");
        let mut bytes = preamble(1, u32::try_from(header.len()).unwrap());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&1f32.to_le_bytes());
        let reason = npy_values(&file(&bytes), "t.npy", "t", &mut Room::now()).err();
        assert_eq!(
            reason.unwrap(),
            "expected a 2-D array (rows × dim), found 2000 dimensions"
        );
    }

    #[test]
    fn a_fifo_is_opened_without_waiting_for_a_writer_and_refused_as_no_regular_file() {
        let dir = std::env::temp_dir().join(format!("simserve-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("t.npy");
        make_fifo(&fifo);
        // Opened on a thread, so that a blocking open fails this test instead of hanging the
        // suite (no writer will ever come).
        let (sent, opened) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || sent.send(open(&path).map(|_| ())));
        let opened = opened.recv_timeout(std::time::Duration::from_secs(60));
        assert_eq!(opened, Ok(Ok(())), "the open waited for a writer");
        for (path, what) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a device"),
            (dir.as_path(), "a directory"),
        ] {
            let refused = read(path, &mut Room::now()).err();
            assert_eq!(refused, Some(format!("not a regular file ({what})")));
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
