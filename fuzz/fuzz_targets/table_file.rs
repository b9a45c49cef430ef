//! Table files on disk: each input becomes a small tables directory (one per process, its
//! files rewritten at each run) holding any of `t.npy` (or `t.emb.npy`, whose name clashes
//! with the tensor `emb` of `t.safetensors`), `t.safetensors` and an ids file (`t.ids.txt`
//! or `t.emb.ids.txt`), loaded through the public API: [`Tables::load`], then
//! [`Tables::reload`]. Each data file is either the fuzz bytes as they are, or the fuzz
//! bytes wrapped so that the fuzzer works past the format's framing (a `.npy` preamble and
//! exact header length around a fuzzed header and data; a `.safetensors` exact 8-byte header
//! length around a fuzzed JSON header and data), or a well-formed file built from the bytes
//! (dtype, order, shape, alignment, tensor names, offsets and values chosen by them).
//!
//! Oracle: no panic (a reader's panic, which the loader turns into a failure, counts too)
//! and no hang (libFuzzer's `-timeout`); memory stays bounded (`-rss_limit_mb`); every
//! failure names its file and gives a non-empty reason no longer than
//! [`MAX_REASON_BYTES`] (and its cut); every table served has `rows × dim` finite values,
//! a norm per row, values equal to the stored little-endian `float32` when used as stored,
//! and ids (exactly when its ids file was written) one per row, each naming its row; the
//! first load fails exactly when a file or table failed, and a reload of the unchanged
//! directory gives the same tables and failures (after a successful load, the very same
//! tables, nothing changed).

#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use simserve::tables::{Catalog, Failure, MAX_REASON_BYTES, Reloaded, Table, Tables};

/// The directory of this process, made once.
static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("simserve-fuzz-tables-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
});

/// Every name a run may write: all removed before each run.
const NAMES: [&str; 5] = [
    "t.npy",
    "t.emb.npy",
    "t.safetensors",
    "t.ids.txt",
    "t.emb.ids.txt",
];

/// The bytes of the largest file built from the input: enough for every shape the builders
/// make small, and far below the memory limit.
const MAX_BUILT: usize = 1 << 16;

/// Selector bits of the first input byte.
const NPY_MODE: u8 = 0b0000_0011; // none, raw, wrapped header, built
const ST_MODE: u8 = 0b0000_1100; // none, raw, wrapped header, built
const IDS: u8 = 0b0001_0000; // an ids file is written
const IDS_OF_TENSOR: u8 = 0b0010_0000; // ... as `t.emb.ids.txt`, not `t.ids.txt`
const NPY_CLASH: u8 = 0b0100_0000; // the .npy file is `t.emb.npy`, not `t.npy`
const NPY_WIDE: u8 = 0b1000_0000; // a wrapped .npy header is of format 2.0 or 3.0

fuzz_target!(|data: &[u8]| {
    let Some((&select, rest)) = data.split_first() else {
        return;
    };
    // Two length-prefixed pieces, for the .npy and the .safetensors file; the rest is the
    // ids file.
    let (npy_piece, rest) = piece(rest);
    let (st_piece, ids_piece) = piece(rest);

    let dir = &*DIR;
    for name in NAMES {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let npy_name = if select & NPY_CLASH == 0 {
        "t.npy"
    } else {
        "t.emb.npy"
    };
    let npy = match select & NPY_MODE {
        0 => None,
        1 => Some(npy_piece.to_vec()),
        2 => Some(npy_wrapped(npy_piece, select & NPY_WIDE != 0)),
        _ => Some(npy_built(npy_piece)),
    };
    let st = match (select & ST_MODE) >> 2 {
        0 => None,
        1 => Some(st_piece.to_vec()),
        2 => Some(st_wrapped(st_piece)),
        _ => Some(st_built(st_piece)),
    };
    if let Some(bytes) = &npy {
        std::fs::write(dir.join(npy_name), bytes).expect("written");
    }
    if let Some(bytes) = &st {
        std::fs::write(dir.join("t.safetensors"), bytes).expect("written");
    }
    let ids_table = if select & IDS_OF_TENSOR == 0 {
        "t"
    } else {
        "t.emb"
    };
    let ids_table = (select & IDS != 0).then(|| {
        let file = format!("{ids_table}.ids.txt");
        std::fs::write(dir.join(file), ids_piece).expect("written");
        ids_table
    });
    let written = Written {
        npy: npy.as_deref().map(|bytes| (npy_name, bytes)),
        st: st.as_deref(),
        ids_table,
    };

    let tables = Tables::new(Some(dir.clone()));
    let loaded = tables.load();
    match loaded {
        Ok(count) => {
            let catalog = tables.catalog();
            assert!(catalog.is_loaded());
            assert!(catalog.failures().is_empty(), "{:?}", catalog.failures());
            assert_eq!(catalog.tables().count(), count);
            check_catalog(&catalog, &written);
            // Nothing changed on disk: the very same tables serve on.
            let reloaded = tables.reload();
            assert_eq!(reloaded, Reloaded::default());
            let after = tables.catalog();
            assert_eq!(after.tables().count(), count);
            for table in catalog.tables() {
                assert!(Arc::ptr_eq(table, after.get(table.name()).expect("kept")));
            }
        }
        Err(failures) => {
            assert!(!failures.is_empty(), "a failed load says why");
            check_failures(&failures);
            assert!(tables.catalog().tables().next().is_none(), "all or nothing");
            // The reload serves what loads, and fails as the load did.
            let reloaded = tables.reload();
            let catalog = tables.catalog();
            assert_eq!(reloaded.failures, catalog.failures());
            assert!(!reloaded.failures.is_empty(), "the load failed, the reload did not");
            if !clash(&failures) && !clash(&reloaded.failures) {
                // The same files and tables fail. Not always for the same reason, nor in the
                // same order: the `safetensors` crate lists (and validates) a file's tensors
                // in a `HashMap`'s order, which changes from one load to the next.
                assert_eq!(sorted(&reloaded.failures), sorted(&failures));
            }
            assert!(reloaded.removed.is_empty());
            let mut changed = reloaded.changed.clone();
            changed.sort();
            let served: Vec<&str> = catalog.tables().map(|t| t.name()).collect();
            assert_eq!(changed, served);
            check_catalog(&catalog, &written);
        }
    }
});

/// What the run wrote.
struct Written<'a> {
    npy: Option<(&'static str, &'a [u8])>,
    st: Option<&'a [u8]>,
    ids_table: Option<&'static str>,
}

/// A piece of `data` whose length is its first two bytes (little-endian, cut to what is
/// there), and what follows it.
fn piece(data: &[u8]) -> (&[u8], &[u8]) {
    let (len, rest) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => (0, &[][..]),
    };
    rest.split_at(len.min(rest.len()))
}

/// Whether two tensors of a file make one table name: which of them is the table depends
/// on the order the crate lists them in, which changes from one load to the next (known, and
/// reported: it makes the served table and the failures of a reload vary).
fn clash(failures: &[Failure]) -> bool {
    failures
        .iter()
        .any(|f| f.reason.contains(" both make the table name "))
}

fn sorted(failures: &[Failure]) -> Vec<String> {
    let mut all: Vec<String> = failures
        .iter()
        .map(|f| format!("{:?} {:?}", f.file, f.table))
        .collect();
    all.sort();
    all
}

fn check_failures(failures: &[Failure]) {
    for failure in failures {
        assert!(!failure.file.is_empty(), "{failure:?}");
        assert!(
            NAMES.contains(&failure.file.as_str()),
            "a failure of a file not written: {failure:?}"
        );
        assert!(!failure.reason.trim().is_empty(), "{failure:?}");
        // Cut to MAX_REASON_BYTES less 64, then `… (cut: N bytes in all)` added.
        assert!(
            failure.reason.len() <= MAX_REASON_BYTES,
            "a reason of {} bytes",
            failure.reason.len()
        );
        assert!(
            !failure.reason.starts_with("reading it failed unexpectedly"),
            "a reader panicked: {failure}"
        );
        if let Some(table) = &failure.table {
            assert!(!table.is_empty(), "{failure:?}");
        }
    }
}

fn check_catalog(catalog: &Catalog, written: &Written) {
    check_failures(catalog.failures());
    // A .npy file gives its table, or fails.
    if let Some((file, _)) = written.npy {
        let name = file.strip_suffix(".npy").expect("a .npy name");
        let table = catalog.get(name).filter(|t| t.source() == file);
        let failed = catalog.failures().iter().any(|f| f.file == file);
        assert!(
            table.is_some() != failed,
            "{file}: table {:?}, failures {:?}",
            table.map(|t| t.source()),
            catalog.failures()
        );
    }
    for table in catalog.tables() {
        check_table(table, written);
    }
}

fn check_table(table: &Table, written: &Written) {
    let (rows, dim) = (table.rows(), table.dim());
    assert!(dim > 0, "{}: dimension 0", table.name());
    assert!(!table.version().is_empty());
    let view = table.view().expect("a table's values are there");
    assert_eq!(view.dim(), (rows, dim));
    let values: Vec<f32> = view.iter().copied().collect();
    assert_eq!(values.len(), rows * dim);
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        panic!("{}: value {at} is {}", table.name(), values[at]);
    }
    assert!(table.operand().is_some(), "{}: a norm per row", table.name());
    assert!(table.bytes() >= rows * dim * 4);
    // Values used as stored are the file's little-endian float32 bytes.
    if table.in_place() {
        assert_eq!(table.stored_dtype(), "float32");
        if let Some(stored) = stored_f32(table, written) {
            let got: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
            let want: Vec<u32> = stored.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "{}: values not as stored", table.name());
        }
    }
    // Ids exactly when an ids file names the table, one per row, each naming its row.
    let ids_written = written.ids_table == Some(table.name());
    match table.ids() {
        None => assert!(!ids_written, "{}: its ids file was not used", table.name()),
        Some(ids) => {
            assert!(ids_written, "{}: ids from no file", table.name());
            assert_eq!(ids.len(), rows, "{}: ids count", table.name());
            for row in 0..rows {
                let id = ids.id(row);
                assert!(!id.is_empty());
                assert_eq!(ids.row(id), Some(row), "{}: id {id:?}", table.name());
            }
        }
    }
}

/// The little-endian float32 values `written` stores for `table`, where they can be found
/// without the loader: a `.npy` table's are the file's last `rows × dim × 4` bytes; a
/// tensor's are where its header says.
fn stored_f32(table: &Table, written: &Written) -> Option<Vec<f32>> {
    let len = table.rows() * table.dim() * 4;
    let bytes = match (written.npy, written.st) {
        (Some((file, bytes)), _) if table.source() == file => {
            bytes.get(bytes.len().checked_sub(len)?..)?
        }
        (_, Some(bytes)) => {
            let tensor = table.source().strip_prefix("t.safetensors:")?;
            let header_len = usize::try_from(u64::from_le_bytes(*bytes.first_chunk::<8>()?)).ok()?;
            let header: serde_json::Value =
                serde_json::from_slice(bytes.get(8..header_len.checked_add(8)?)?).ok()?;
            let offsets = header.get(tensor)?.get("data_offsets")?.as_array()?;
            let from = usize::try_from(offsets.first()?.as_u64()?).ok()?;
            let to = usize::try_from(offsets.get(1)?.as_u64()?).ok()?;
            let data = bytes.get(header_len.checked_add(8)?..)?;
            let stored = data.get(from..to)?;
            assert_eq!(stored.len(), len, "{}: stored bytes", table.name());
            stored
        }
        _ => return None,
    };
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// A `.npy` file whose preamble (magic, version, exact header length) frames the fuzz
/// bytes: the header is the bytes up to their first `\n` (the whole piece if none), the
/// data what follows. `wide`: format 2.0 (or 3.0, UTF-8, when the header is not ASCII).
fn npy_wrapped(piece: &[u8], wide: bool) -> Vec<u8> {
    let end = piece.iter().position(|&b| b == b'\n').map_or(piece.len(), |at| at + 1);
    let (header, data) = piece.split_at(end);
    let mut bytes = b"\x93NUMPY".to_vec();
    if wide {
        let major = if header.is_ascii() { 2 } else { 3 };
        bytes.extend_from_slice(&[major, 0]);
        bytes.extend_from_slice(&u32::try_from(header.len()).unwrap_or(u32::MAX).to_le_bytes());
    } else {
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&u16::try_from(header.len()).unwrap_or(u16::MAX).to_le_bytes());
    }
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(data);
    bytes
}

/// Descriptors a built `.npy` header may have: the floats simserve reads and some it does
/// not.
const DESCRS: [&str; 12] = [
    "<f4", "<f4", "<f8", ">f4", ">f8", "<f2", ">f2", "|O", "<i4", "|u1", "<c8", "f4",
];

/// An axis length from a byte: mostly small, at times huge (to reach the size checks).
fn axis(byte: u8) -> usize {
    match byte {
        0..=0xef => usize::from(byte % 9),
        _ => 1usize.checked_shl(u32::from(byte & 0x3f)).unwrap_or(usize::MAX),
    }
}

/// A well-formed `.npy` file from the fuzz bytes: `[descr, flags, rows, dim, pad, data..]`.
/// Flags: bit 0 Fortran order; bits 1–2 the shape's rank (2, 1, 3, or 2 written with a
/// trailing comma); bit 3 the data cut or repeated to exactly what the shape needs; bits
/// 4–5 the header padded as numpy pads it (to 64 bytes) or by `pad` spaces (data at any
/// alignment); bit 6 an extra key.
fn npy_built(piece: &[u8]) -> Vec<u8> {
    let at = |i: usize| piece.get(i).copied().unwrap_or(0);
    let (descr_byte, flags, rows, dim, pad) = (at(0), at(1), axis(at(2)), axis(at(3)), at(4));
    let data = piece.get(5..).unwrap_or_default();
    let descr = DESCRS[usize::from(descr_byte) % DESCRS.len()];
    let fortran = if flags & 1 == 0 { "False" } else { "True" };
    let shape = match (flags >> 1) & 3 {
        0 => format!("({rows}, {dim})"),
        1 => format!("({rows},)"),
        2 => format!("({rows}, {dim}, 1)"),
        _ => format!("({rows}, {dim},)"),
    };
    let extra = if flags & 64 == 0 { "" } else { "'extra': [1, (2,)], " };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, {extra}}}");
    let mut header = dict.into_bytes();
    if flags & 0x30 == 0 {
        // numpy: preamble and header together a multiple of 64 bytes.
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(b' ');
        }
    } else {
        header.extend(std::iter::repeat_n(b' ', usize::from(pad % 67)));
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&u16::try_from(header.len()).unwrap_or(u16::MAX).to_le_bytes());
    bytes.extend_from_slice(&header);
    let size = match descr {
        "<f8" | ">f8" | "<c8" => 8,
        "<f2" | ">f2" => 2,
        "|u1" => 1,
        _ => 4,
    };
    let needed = rows.checked_mul(dim).and_then(|n| n.checked_mul(size));
    match needed {
        Some(needed) if flags & 8 != 0 && needed <= MAX_BUILT => extend_to(&mut bytes, data, needed),
        _ => bytes.extend_from_slice(data),
    }
    bytes
}

/// `data` cut, or repeated, to `len` bytes, onto `bytes` (zeros if `data` is empty).
fn extend_to(bytes: &mut Vec<u8>, data: &[u8], len: usize) {
    if data.is_empty() {
        bytes.resize(bytes.len() + len, 0);
    } else {
        bytes.extend(data.iter().copied().cycle().take(len));
    }
}

/// A `.safetensors` file whose exact 8-byte header length frames the fuzz bytes: the piece's
/// first two bytes give the JSON header's length, the rest after the header is the data.
fn st_wrapped(piece: &[u8]) -> Vec<u8> {
    let (header, data) = self::piece(piece);
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(data);
    bytes
}

/// Tensor names a built `.safetensors` file may use: `emb` (the table `t.emb`, which an ids
/// file or `t.emb.npy` may name), names that become the same table name, and one too long
/// for a table name.
const TENSORS: [&str; 8] = ["emb", "weight", "x y", "x_y", "a.b", "", "é", "__metadata__"];

const DTYPES: [(&str, usize); 9] = [
    ("F32", 4),
    ("F32", 4),
    ("F64", 8),
    ("F16", 2),
    ("BF16", 2),
    ("I32", 4),
    ("U8", 1),
    ("BOOL", 1),
    ("F8_E4M3", 1),
];

/// A `.safetensors` file from the fuzz bytes: `[count, flags, (name, dtype, rank, axes ×
/// 2) per tensor, data..]`. Each tensor's data follows the last one's; flags: bit 0 the data
/// cut or repeated to exactly what the tensors need, bit 1 a `__metadata__` entry, bit 2 the
/// first tensor's end offset one short, bit 3 a tensor named 300 bytes long.
fn st_built(piece: &[u8]) -> Vec<u8> {
    let at = |i: usize| piece.get(i).copied().unwrap_or(0);
    let (count, flags) = (usize::from(at(0) % 5), at(1));
    let mut entries = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut offset = 0usize;
    for i in 0..count {
        let spec = |k: usize| at(2 + i * 5 + k);
        let mut name = TENSORS[usize::from(spec(0)) % TENSORS.len()].to_owned();
        if flags & 8 != 0 && i == 0 {
            name = "n".repeat(300);
        }
        if name == "__metadata__" || !names.insert(name.clone()) {
            continue;
        }
        let (dtype, size) = DTYPES[usize::from(spec(1)) % DTYPES.len()];
        let shape: Vec<usize> = match spec(2) % 4 {
            0 => vec![axis(spec(3)), axis(spec(4))],
            1 => vec![axis(spec(3))],
            2 => vec![axis(spec(3)), axis(spec(4)), 1],
            _ => vec![axis(spec(3)), axis(spec(4))],
        };
        let bytes = shape
            .iter()
            .try_fold(size, |n, &axis| n.checked_mul(axis))
            .filter(|&n| n <= MAX_BUILT)
            .unwrap_or(0);
        let mut end = offset + bytes;
        if flags & 4 != 0 && i == 0 && end > offset {
            end -= 1;
        }
        entries.push(serde_json::json!([
            name,
            {"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}
        ]));
        offset = end;
    }
    let mut header = serde_json::Map::new();
    if flags & 2 != 0 {
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    }
    for entry in entries {
        header.insert(entry[0].as_str().expect("a name").to_owned(), entry[1].clone());
    }
    let header = serde_json::to_vec(&header).expect("JSON");
    let data = piece.get((2 + count * 5).min(piece.len())..).unwrap_or_default();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    if flags & 1 != 0 {
        extend_to(&mut bytes, data, offset);
    } else {
        bytes.extend_from_slice(data);
    }
    bytes
}
