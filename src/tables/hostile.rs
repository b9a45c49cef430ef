//! Tests: what the tables directory may hold besides good tables (a FIFO, a looping or
//! dangling link, a device, several ids files for one table, a name that is not UTF-8, a
//! file whose failure quotes much of it, a tensor rewritten as no table, a directory that
//! cannot be listed for a while): each fails no more than its own table, whose last good
//! version keeps serving, and says why briefly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::load::tests::make_fifo;
use super::{MAX_REASON_BYTES, Reloaded, Tables, cut};

/// A fresh directory for one test, holding `files` copied from the good fixtures.
fn directory(test: &str, files: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("simserve-hostile-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tables/good");
    for file in files {
        std::fs::copy(good.join(file), dir.join(file)).unwrap();
    }
    dir
}

/// Reloads on a thread, so that a reload that hangs fails the test instead of the suite.
fn reload(tables: &Arc<Tables>) -> Reloaded {
    let (sent, done) = std::sync::mpsc::channel();
    let tables = Arc::clone(tables);
    std::thread::spawn(move || sent.send(tables.reload()));
    done.recv_timeout(Duration::from_secs(120))
        .expect("the reload hung")
}

/// The reasons of a reload's failures, as `file: reason`.
fn reasons(reloaded: &Reloaded) -> Vec<String> {
    reloaded
        .failures
        .iter()
        .map(|f| format!("{}: {}", f.file, f.reason))
        .collect()
}

#[test]
fn a_fifo_in_place_of_a_table_file_fails_its_reload_and_the_last_version_serves() {
    let dir = directory("fifo", &["users.npy", "items.npy"]);
    let tables = Arc::new(Tables::new(Some(dir.clone())));
    tables.load().unwrap();
    let before = Arc::clone(tables.catalog().get("items").unwrap());
    std::fs::remove_file(dir.join("items.npy")).unwrap();
    make_fifo(&dir.join("items.npy"));
    let reloaded = reload(&tables);
    assert_eq!(
        reasons(&reloaded),
        ["items.npy: not a regular file (a FIFO)"],
        "{reloaded:?}"
    );
    assert!(reloaded.removed.is_empty(), "{reloaded:?}");
    let catalog = tables.catalog();
    assert!(Arc::ptr_eq(catalog.get("items").unwrap(), &before));
    assert!(catalog.last_error("items").is_some());
    // At start, the same file stops the load, at once.
    let (sent, done) = std::sync::mpsc::channel();
    let start = dir.clone();
    std::thread::spawn(move || sent.send(Tables::new(Some(start)).load().is_err()));
    assert_eq!(done.recv_timeout(Duration::from_secs(120)), Ok(true));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_table_file_that_cannot_be_opened_fails_its_reload_rather_than_vanishing() {
    let dir = directory("loop", &["users.npy", "items.npy"]);
    let tables = Arc::new(Tables::new(Some(dir.clone())));
    tables.load().unwrap();
    // A link to itself: whether it is a file cannot be told, and it cannot be opened.
    std::fs::remove_file(dir.join("users.npy")).unwrap();
    std::os::unix::fs::symlink("users.npy", dir.join("users.npy")).unwrap();
    // A directory named as a table.
    std::fs::create_dir(dir.join("d.npy")).unwrap();
    let reloaded = reload(&tables);
    assert_eq!(reloaded.removed, Vec::<String>::new());
    let reasons = reasons(&reloaded);
    assert_eq!(reasons[0], "d.npy: not a regular file (a directory)");
    assert!(
        reasons[1].starts_with("users.npy: Too many levels of symbolic links"),
        "{reasons:?}"
    );
    let catalog = tables.catalog();
    assert_eq!(catalog.tables().count(), 2);
    assert!(catalog.last_error("users").is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unusable_ids_file_fails_its_table_which_keeps_its_last_ids() {
    let dir = directory("ids", &["items.npy", "items.ids.txt"]);
    let tables = Arc::new(Tables::new(Some(dir.clone())));
    tables.load().unwrap();
    let before = Arc::clone(tables.catalog().get("items").unwrap());
    let ids = dir.join("items.ids.txt");
    let cases: [(&dyn Fn(), &str); 3] = [
        (
            &|| std::os::unix::fs::symlink("gone.txt", &ids).unwrap(),
            "No such file or directory",
        ),
        (
            &|| std::fs::create_dir(&ids).unwrap(),
            "not a regular file (a directory)",
        ),
        (
            &|| std::os::unix::fs::symlink("/dev/zero", &ids).unwrap(),
            "not a regular file (a device)",
        ),
    ];
    for (make, why) in cases {
        let _ = std::fs::remove_file(&ids).or_else(|_| std::fs::remove_dir(&ids));
        make();
        let reloaded = reload(&tables);
        assert!(reloaded.changed.is_empty(), "{reloaded:?}");
        let failure = &reloaded.failures[0];
        assert_eq!(failure.table.as_deref(), Some("items"));
        assert!(
            failure.reason.starts_with(&format!("items.ids.txt: {why}")),
            "{failure}"
        );
        let catalog = tables.catalog();
        let items = catalog.get("items").unwrap();
        assert!(Arc::ptr_eq(items, &before));
        assert_eq!(items.ids().unwrap().row("sku-007"), Some(7));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn several_ids_files_for_one_table_are_a_failure_not_a_pick_by_directory_order() {
    let dir = directory("ids-clash", &["users.npy"]);
    std::fs::rename(dir.join("users.npy"), dir.join("a_b.npy")).unwrap();
    let ids: String = (0..6).map(|i| format!("u{i}\n")).collect();
    for file in ["a b.ids.txt", "a_b.ids.txt", "a+b.ids.txt", "a=b.ids.txt"] {
        std::fs::write(dir.join(file), &ids).unwrap();
    }
    let tensor = ("x_y", "F32", &[3usize, 1][..], [0, 0, 128, 63].repeat(3));
    std::fs::write(dir.join("m.safetensors"), safetensors_bytes(&[tensor])).unwrap();
    for file in ["m.x_y.ids.txt", "m.x y.ids.txt"] {
        std::fs::write(dir.join(file), "a\nb\nc\n").unwrap();
    }
    let failures = Tables::new(Some(dir.clone())).load().unwrap_err();
    let found: Vec<String> = failures.iter().map(ToString::to_string).collect();
    assert_eq!(
        found,
        [
            "a_b.npy (table \"a_b\"): 4 ids files give the ids of the table \"a_b\": \
             \"a b.ids.txt\", \"a+b.ids.txt\", \"a=b.ids.txt\" and 1 more; rename all but one",
            "m.safetensors (table \"m.x_y\"): 2 ids files give the ids of the table \"m.x_y\": \
             \"m.x y.ids.txt\", \"m.x_y.ids.txt\"; rename all but one",
        ]
    );
    // With one left each, they load; a second one again on a reload fails the table, whose
    // last good version (and ids) keeps serving.
    for file in ["a b.ids.txt", "a+b.ids.txt", "a=b.ids.txt", "m.x y.ids.txt"] {
        std::fs::remove_file(dir.join(file)).unwrap();
    }
    let tables = Arc::new(Tables::new(Some(dir.clone())));
    tables.load().unwrap();
    let before = Arc::clone(tables.catalog().get("a_b").unwrap());
    std::fs::write(
        dir.join("a b.ids.txt"),
        (0..6).map(|i| format!("v{i}\n")).collect::<String>(),
    )
    .unwrap();
    let reloaded = reload(&tables);
    assert_eq!(reloaded.failures.len(), 1, "{reloaded:?}");
    let catalog = tables.catalog();
    assert!(Arc::ptr_eq(catalog.get("a_b").unwrap(), &before));
    assert!(
        catalog
            .last_error("a_b")
            .unwrap()
            .reason
            .starts_with("2 ids files give"),
        "{:?}",
        catalog.failures()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_whose_name_is_not_utf8_is_read_by_its_own_name() {
    use std::os::unix::ffi::OsStrExt;
    let dir = directory("not-utf8", &["users.npy"]);
    let name = std::ffi::OsStr::from_bytes(b"u\xff.npy");
    std::fs::rename(dir.join("users.npy"), dir.join(name)).unwrap();
    let tables = Tables::new(Some(dir.clone()));
    assert_eq!(tables.load(), Ok(1));
    assert_eq!(tables.catalog().get("u_").unwrap().rows(), 6);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failure_reason_is_cut_however_much_of_the_file_it_quotes() {
    let dir = directory("long-reason", &[]);
    // A header (within numpy's limit) that is a list, not a dict: the parser's error quotes
    // it whole.
    let list = format!("[{}1]", "1, ".repeat(3000));
    let header = format!("{list}\n");
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    std::fs::write(dir.join("t.npy"), npy).unwrap();
    let failures = Tables::new(Some(dir.clone())).load().unwrap_err();
    let reason = &failures[0].reason;
    assert!(reason.len() <= MAX_REASON_BYTES, "{} bytes", reason.len());
    assert!(
        reason.starts_with(
            "not a readable .npy file: error parsing header: metadata is not a dict: [1, 1,"
        ),
        "{reason}"
    );
    assert!(reason.ends_with(" bytes in all)"), "{reason}");
    // Cut at a character's boundary.
    let cut = cut("é".repeat(MAX_REASON_BYTES));
    assert!(
        cut.len() <= MAX_REASON_BYTES && cut.starts_with("éé"),
        "{cut}"
    );
    assert_eq!(cut.matches("(cut: 2048 bytes in all)").count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A `.safetensors` file's bytes: each tensor's name, dtype, shape and data.
fn safetensors_bytes(tensors: &[(&str, &str, &[usize], Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let offsets = [data.len(), data.len() + bytes.len()];
        let entry = serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": offsets});
        header.insert((*name).to_owned(), entry);
        data.extend_from_slice(bytes);
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&header);
    file.extend_from_slice(&data);
    file
}

#[test]
fn a_tensor_that_was_a_table_and_is_rewritten_as_no_table_keeps_its_last_version() {
    let dir = directory("no-longer", &[]);
    let floats =
        |values: &[f32]| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
    let path = dir.join("m.safetensors");
    let bias = ("bias", "F32", &[2usize][..], floats(&[0.5, 0.5]));
    let emb = (
        "emb",
        "F32",
        &[2usize, 2][..],
        floats(&[1.0, 0.0, 0.0, 1.0]),
    );
    std::fs::write(&path, safetensors_bytes(&[emb.clone(), bias.clone()])).unwrap();
    let tables = Arc::new(Tables::new(Some(dir.clone())));
    // The bias never was a table: no failure.
    assert_eq!(tables.load(), Ok(1));
    let before = Arc::clone(tables.catalog().get("m.emb").unwrap());
    let ints = ("emb", "I32", &[2usize, 2][..], vec![0u8; 16]);
    std::fs::write(&path, safetensors_bytes(&[ints, bias.clone()])).unwrap();
    let reloaded = reload(&tables);
    assert!(reloaded.removed.is_empty(), "{reloaded:?}");
    assert_eq!(
        reasons(&reloaded),
        [
            "m.safetensors: the tensor \"emb\" is no longer a table (dtype I32, not a float); \
          serving the last good version"
        ]
    );
    assert!(Arc::ptr_eq(tables.catalog().get("m.emb").unwrap(), &before));
    let flat = ("emb", "F32", &[4usize][..], floats(&[1.0, 0.0, 0.0, 1.0]));
    std::fs::write(&path, safetensors_bytes(&[flat, bias.clone()])).unwrap();
    let reloaded = reload(&tables);
    assert!(
        reasons(&reloaded)[0].contains("(rank 1, not 2)"),
        "{reloaded:?}"
    );
    // A tensor taken out of the file is a table removed.
    std::fs::write(&path, safetensors_bytes(&[bias])).unwrap();
    let reloaded = reload(&tables);
    assert_eq!(reloaded.removed, ["m.emb"]);
    assert!(reloaded.failures.is_empty(), "{reloaded:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_tensors_that_make_one_table_name_fail_alike_at_every_load() {
    let dir = directory("clash", &[]);
    let floats =
        |values: &[f32]| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
    // "x y" and "x_y" both make the table m.x_y.
    let spaced = ("x y", "F32", &[1usize, 2][..], floats(&[1.0, 2.0]));
    let underscored = ("x_y", "F32", &[1usize, 2][..], floats(&[3.0, 4.0]));
    std::fs::write(
        dir.join("m.safetensors"),
        safetensors_bytes(&[underscored, spaced]),
    )
    .unwrap();
    // The file's index is a hash map, in another order at each parse; its tensors are taken
    // in name order, so every load says the same: load it many times.
    for _ in 0..16 {
        let tables = Tables::new(Some(dir.clone()));
        let failures = tables.load().unwrap_err();
        let reasons: Vec<&str> = failures.iter().map(|f| f.reason.as_str()).collect();
        assert_eq!(
            reasons,
            ["tensors \"x y\" and \"x_y\" both make the table name \"m.x_y\""]
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_directory_that_cannot_be_listed_keeps_what_had_failed_failed_for_the_next_reload() {
    let dir = directory("unlisted", &[]);
    let floats =
        |values: &[f32]| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
    let path = dir.join("m.safetensors");
    let good = ("good", "F32", &[1usize, 2][..], floats(&[1.0, 0.0]));
    std::fs::write(&path, safetensors_bytes(std::slice::from_ref(&good))).unwrap();
    let tables = Arc::new(Tables::new(Some(dir.clone())));
    assert_eq!(tables.load(), Ok(1));
    // A tensor that fails beside one that loads: the file is a failed one.
    let bad = ("bad", "F32", &[1usize, 2][..], floats(&[f32::NAN, 0.0]));
    std::fs::write(&path, safetensors_bytes(&[good, bad])).unwrap();
    let failed = reload(&tables);
    assert_eq!(failed.failures.len(), 1, "{failed:?}");
    // The directory gone for a reload, then back with the same file.
    let away = dir.with_extension("away");
    std::fs::rename(&dir, &away).unwrap();
    let unlisted = reload(&tables);
    assert_eq!(unlisted.failures.len(), 2, "{unlisted:?}");
    assert_eq!(unlisted.failures[0], failed.failures[0]);
    std::fs::rename(&away, &dir).unwrap();
    let back = reload(&tables);
    assert_eq!(back.failures, failed.failures, "{back:?}");
    assert!(tables.catalog().get("m.good").is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}
