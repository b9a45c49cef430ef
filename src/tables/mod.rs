//! Embedding tables kept on the server, so requests name rows (`{"table": "items"}`,
//! `{"table": "users", "ids": ["u3"]}`) instead of sending them.
//!
//! - [`Tables`] is the one handle the server shares: the directory (`--tables`), the
//!   [`Catalog`] now served, and [`Tables::load`] (at start: all or nothing) and
//!   [`Tables::reload`] (on SIGHUP or `POST /tables/reload`: a file that fails keeps its last
//!   good version serving).
//! - A [`Catalog`] is immutable. A reload builds a new one and swaps it in; a request takes
//!   the catalog (and so the `Arc`s of its tables) when it is parsed and keeps them until
//!   its answer is written, so it never sees two versions, and a replaced table's values
//!   are freed only after its last reader is done.
//! - [`Embeddings`] is what an embedding field resolves to: rows sent inline, a whole table
//!   read in place, or chosen rows of a table, gathered when the job runs.
//!
//! Files in the directory: `NAME.npy` is the table `NAME`; every 2-D float tensor `T` of
//! `FILE.safetensors` is the table `FILE.T`; `NAME.ids.txt` holds the ids of table `NAME`.
//! In names, characters other than `A–Z a–z 0–9 . _ -` become `_`. Files whose name starts
//! with `.` are ignored, so a new version can be written under a hidden name and renamed
//! into place. A file too large for the memory left (`memory.rs`) is refused before it is
//! read.

mod embeddings;
mod ids;
mod load;
mod memory;
mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

pub use embeddings::{Embeddings, Resolve, Unresolved};
pub use ids::Ids;
pub use table::Table;

/// Why a file, or a table in it, could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The file.
    pub file: String,
    /// The table, when the failure concerns one table.
    pub table: Option<String>,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.table {
            Some(table) => write!(f, "{} (table {table:?}): {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

/// The tables served at one moment, and the failures of the load that made them.
#[derive(Debug, Default)]
pub struct Catalog {
    tables: BTreeMap<String, Arc<Table>>,
    failures: Vec<Failure>,
    /// False until the first load has finished.
    loaded: bool,
}

impl Catalog {
    /// The table named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Table>> {
        self.tables.get(name)
    }

    /// Every table, by name.
    pub fn tables(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.tables.values()
    }

    /// Failures of the last load: files that gave no table, and tables that serve their
    /// last good version because their new one failed.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// Why the last reload of table `name` failed, if it did.
    pub fn last_error(&self, name: &str) -> Option<&Failure> {
        self.failures
            .iter()
            .find(|f| f.table.as_deref() == Some(name))
    }

    /// Whether the first load has finished.
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }
}

/// What a reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Tables with a new version (new tables included).
    pub changed: Vec<String>,
    /// Tables gone with their files.
    pub removed: Vec<String>,
    /// Files or tables that failed (those that had a version keep serving it).
    pub failures: Vec<Failure>,
}

/// The tables of one server.
#[derive(Debug)]
pub struct Tables {
    dir: Option<PathBuf>,
    current: RwLock<Arc<Catalog>>,
    loaded: AtomicBool,
    /// Held while a load or reload runs: they never overlap.
    loading: Mutex<()>,
}

impl Tables {
    /// Tables from `dir` (none: no tables, loaded at once). Nothing is read until
    /// [`Tables::load`].
    pub fn new(dir: Option<PathBuf>) -> Self {
        let loaded = dir.is_none();
        Tables {
            dir,
            current: RwLock::new(Arc::new(Catalog {
                loaded,
                ..Catalog::default()
            })),
            loaded: AtomicBool::new(loaded),
            loading: Mutex::new(()),
        }
    }

    /// The directory tables are read from.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The catalog now served.
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether the first load has finished.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The first load: every file must load, else nothing is served and the failures are
    /// returned (the process should stop).
    pub fn load(&self) -> Result<usize, Vec<Failure>> {
        let Some(dir) = &self.dir else {
            return Ok(0);
        };
        let _one_at_a_time = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        let (catalog, _) = read_dir(dir, &Catalog::default());
        if !catalog.failures.is_empty() {
            return Err(catalog.failures);
        }
        let count = catalog.tables.len();
        self.swap(catalog);
        self.loaded.store(true, Ordering::Release);
        Ok(count)
    }

    /// Reads the directory again: changed files get new versions, swapped in at once; a
    /// file that fails keeps its last good version serving.
    pub fn reload(&self) -> Reloaded {
        let one_at_a_time = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        self.reload_holding(one_at_a_time)
    }

    /// [`Tables::reload`], unless a load or reload is running (`None`): callers that must
    /// not queue up behind one another.
    pub fn try_reload(&self) -> Option<Reloaded> {
        let one_at_a_time = match self.loading.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(self.reload_holding(one_at_a_time))
    }

    fn reload_holding(&self, _one_at_a_time: std::sync::MutexGuard<'_, ()>) -> Reloaded {
        let Some(dir) = &self.dir else {
            return Reloaded::default();
        };
        let previous = self.catalog();
        let (catalog, mut reloaded) = read_dir(dir, &previous);
        reloaded.failures = catalog.failures.clone();
        self.swap(catalog);
        self.loaded.store(true, Ordering::Release);
        reloaded
    }

    fn swap(&self, mut catalog: Catalog) {
        catalog.loaded = true;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(catalog);
    }
}

/// A data file found in the directory.
enum DataFile {
    Npy { file: String, name: String },
    Safetensors { file: String, stem: String },
}

/// Reads `dir` into a new catalog, keeping from `previous` the tables whose files did not
/// change, and those whose new version failed to load.
fn read_dir(dir: &Path, previous: &Catalog) -> (Catalog, Reloaded) {
    let mut catalog = Catalog::default();
    let mut reloaded = Reloaded::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            catalog.failures.push(Failure {
                file: dir.display().to_string(),
                table: None,
                reason: err.to_string(),
            });
            catalog.tables = previous.tables.clone();
            return (catalog, reloaded);
        }
    };
    let mut files: Vec<DataFile> = Vec::new();
    let mut ids_files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        if let Some(name) = file.strip_suffix(".ids.txt") {
            ids_files.insert(load::table_name(name), entry.path());
        } else if let Some(name) = file.strip_suffix(".npy") {
            let name = load::table_name(name);
            files.push(DataFile::Npy { file, name });
        } else if let Some(stem) = file.strip_suffix(".safetensors") {
            let stem = stem.to_owned();
            files.push(DataFile::Safetensors { file, stem });
        }
    }
    files.sort_by(|x, y| data_file_name(x).cmp(data_file_name(y)));

    let mut add = |catalog: &mut Catalog, file: &str, loaded: load::Loaded| match loaded {
        Ok(table) => {
            let name = table.name.clone();
            if name_taken(catalog, file, &name) {
                return;
            }
            let unchanged = previous
                .get(&name)
                .filter(|old| old.version == table.version);
            match unchanged {
                Some(old) => catalog.tables.insert(name, Arc::clone(old)),
                None => {
                    reloaded.changed.push(name.clone());
                    catalog.tables.insert(name, Arc::new(table))
                }
            };
        }
        Err((name, reason)) => {
            // Only this file's last good version of the table keeps serving, and the failure
            // is the table's only when no other file's table has its name.
            let others = |table: &Arc<Table>| !from_file(table, file);
            let clash = previous.get(&name).is_some_and(others)
                || catalog.tables.get(&name).is_some_and(others);
            catalog.failures.push(Failure {
                file: file.to_owned(),
                table: (!clash).then(|| name.clone()),
                reason,
            });
            if let Some(old) = previous.get(&name).filter(|old| from_file(old, file))
                && !name_taken(catalog, file, &name)
            {
                catalog.tables.insert(name, Arc::clone(old));
            }
        }
    };

    // The tables of files that did not change go in first, so that a new or changed file
    // whose table would take one of their names is the one that fails.
    let mut to_read: Vec<&DataFile> = Vec::new();
    for data in &files {
        let file = data_file_name(data);
        let path = dir.join(file);
        let kept = match data {
            DataFile::Npy { name, .. } => {
                unchanged(previous, name, &path, ids_files.get(name)).map(|old| vec![old])
            }
            DataFile::Safetensors { .. } => unchanged_file(previous, file, &path, &ids_files),
        };
        let Some(kept) = kept else {
            to_read.push(data);
            continue;
        };
        for old in kept {
            if !name_taken(&mut catalog, file, &old.name) {
                catalog.tables.insert(old.name.clone(), old);
            }
        }
    }
    for data in to_read {
        match data {
            DataFile::Npy { file, name } => {
                let path = dir.join(file);
                let ids = ids_files.get(name).map(PathBuf::as_path);
                let loaded = unpanicked(file, || load::npy(&path, file, name, ids))
                    .map_err(|reason| (name.clone(), reason))
                    .and_then(|loaded| loaded);
                add(&mut catalog, file, loaded);
            }
            DataFile::Safetensors { file, stem } => {
                let path = dir.join(file);
                let ids_for = |name: &str| ids_files.get(name).cloned();
                let loaded = unpanicked(file, || load::safetensors(&path, file, stem, ids_for))
                    .and_then(|loaded| loaded);
                match loaded {
                    Ok((loaded, skipped)) => {
                        for (tensor, why) in skipped {
                            tracing::debug!(file, tensor, why, "tensor is not a table");
                        }
                        for one in loaded {
                            add(&mut catalog, file, one);
                        }
                    }
                    Err(reason) => {
                        catalog.failures.push(Failure {
                            file: file.clone(),
                            table: None,
                            reason,
                        });
                        // Its tables keep their last good versions.
                        for old in previous.tables() {
                            if from_file(old, file) && !name_taken(&mut catalog, file, &old.name) {
                                catalog.tables.insert(old.name.clone(), Arc::clone(old));
                                catalog.failures.push(Failure {
                                    file: file.clone(),
                                    table: Some(old.name.clone()),
                                    reason: "its file failed to load; serving the last good \
                                             version"
                                        .into(),
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    for name in ids_files.keys() {
        if !catalog.tables.contains_key(name)
            && !catalog
                .failures
                .iter()
                .any(|f| f.table.as_deref() == Some(name))
        {
            tracing::warn!(table = name, "an ids file has no table");
        }
    }
    reloaded.removed = previous
        .tables
        .keys()
        .filter(|name| !catalog.tables.contains_key(*name))
        .cloned()
        .collect();
    (catalog, reloaded)
}

/// Whether `table` was read from `file` (a `.npy` file, or a tensor of a `.safetensors`
/// one).
fn from_file(table: &Table, file: &str) -> bool {
    table
        .source
        .strip_prefix(file)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
}

/// Whether another file's table already has the name `name` in `catalog` (recorded as a
/// failure of `file`, whose table is then left out; not of the table, whose own file is
/// fine).
fn name_taken(catalog: &mut Catalog, file: &str, name: &str) -> bool {
    let Some(other) = catalog.tables.get(name) else {
        return false;
    };
    let reason = format!("the table name {name:?} is also {}'s", other.source);
    catalog.failures.push(Failure {
        file: file.to_owned(),
        table: None,
        reason,
    });
    true
}

/// What `read` gives, or, should a reader of the file panic (a defect of simserve or a
/// library it reads with, never the file's fault), the failure of `file` rather than of the
/// whole reload.
fn unpanicked<T>(file: &str, read: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        tracing::error!(file, panic = what, "reading a table file panicked");
        format!("reading it failed unexpectedly: {what}")
    })
}

fn data_file_name(file: &DataFile) -> &str {
    match file {
        DataFile::Npy { file, .. } | DataFile::Safetensors { file, .. } => file,
    }
}

/// The previous tables of the `.safetensors` file `file` when neither it nor any of their
/// ids files changed, and nothing of it failed (what failed is read again at every reload,
/// since what made it fail, an ids file, a passing read error, may have been mended).
fn unchanged_file(
    previous: &Catalog,
    file: &str,
    path: &Path,
    ids_files: &BTreeMap<String, PathBuf>,
) -> Option<Vec<Arc<Table>>> {
    if previous.failures.iter().any(|f| f.file == file) {
        return None;
    }
    let source = format!("{file}:");
    let old: Vec<&Arc<Table>> = previous
        .tables()
        .filter(|t| t.source.starts_with(&source))
        .collect();
    if old.is_empty() {
        return None;
    }
    let data = load::stamp(path).ok()?;
    for table in &old {
        let ids = match ids_files.get(&table.name) {
            Some(path) => Some(load::stamp(path).ok()?),
            None => None,
        };
        if table.stamps != (data.clone(), ids) {
            return None;
        }
    }
    Some(old.into_iter().cloned().collect())
}

/// The previous version of table `name` when neither its data file nor its ids file
/// changed (same size, modification time and inode).
fn unchanged(
    previous: &Catalog,
    name: &str,
    path: &Path,
    ids: Option<&PathBuf>,
) -> Option<Arc<Table>> {
    let old = previous.get(name)?;
    let data = load::stamp(path).ok()?;
    let ids = match ids {
        Some(path) => Some(load::stamp(path).ok()?),
        None => None,
    };
    (old.stamps == (data, ids)).then(|| Arc::clone(old))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures(part: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tables")
            .join(part)
    }

    #[test]
    fn every_table_of_the_good_directory_loads_with_its_dtype_and_layout() {
        let tables = Tables::new(Some(fixtures("good")));
        assert!(!tables.is_loaded());
        assert_eq!(tables.load(), Ok(10));
        assert!(tables.is_loaded());
        let catalog = tables.catalog();
        let kinds: Vec<(&str, &str, bool, usize)> = catalog
            .tables()
            .map(|t| (t.name(), t.stored_dtype(), t.in_place(), t.rows()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("big", "float32", false, 4),
                ("empty", "float32", true, 0),
                ("f16", "float16", false, 4),
                ("f64", "float64", false, 4),
                ("fortran", "float32", false, 4),
                ("items", "float32", true, 10),
                ("model.brain", "bfloat16", false, 3),
                ("model.emb.weight", "float32", true, 5),
                ("model.half", "float16", false, 3),
                ("users", "float32", true, 6),
            ]
        );
        let items = catalog.get("items").unwrap();
        assert_eq!(items.ids().unwrap().row("sku-007"), Some(7));
        assert!(catalog.failures().is_empty());
    }

    #[test]
    fn a_reload_with_no_file_changed_keeps_every_table_as_it_is() {
        let dir = std::env::temp_dir().join(format!("simserve-unchanged-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(fixtures("good")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
        let tables = Tables::new(Some(dir.clone()));
        tables.load().unwrap();
        let before = tables.catalog();
        let reloaded = tables.reload();
        assert_eq!(reloaded, Reloaded::default());
        let after = tables.catalog();
        assert!(!Arc::ptr_eq(&before, &after), "a reload swaps the catalog");
        for table in before.tables() {
            assert!(
                Arc::ptr_eq(table, after.get(table.name()).unwrap()),
                "{}",
                table.name()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reload_asked_for_while_one_runs_is_refused_rather_than_queued() {
        let tables = Tables::new(Some(fixtures("good")));
        tables.load().unwrap();
        let running = tables.loading.lock().unwrap();
        assert_eq!(tables.try_reload(), None);
        drop(running);
        assert_eq!(tables.try_reload(), Some(Reloaded::default()));
    }

    #[test]
    fn every_bad_file_stops_the_first_load_naming_the_file_and_the_reason() {
        let cases = std::fs::read_dir(fixtures("bad")).unwrap();
        let mut seen = 0;
        for case in cases {
            let dir = case.unwrap().path();
            let expected = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
            let failures = Tables::new(Some(dir.clone())).load().unwrap_err();
            let text = failures[0].to_string();
            assert!(
                text.starts_with("t.npy") || text.starts_with("m.safetensors"),
                "{dir:?}: {text}"
            );
            assert!(
                failures[0].reason.starts_with(expected.trim_end()),
                "{dir:?}: {:?} does not start with {expected:?}",
                failures[0].reason
            );
            seen += 1;
        }
        assert_eq!(seen, 15);
    }

    /// A fresh directory for one test, holding `files` copied from the good fixtures.
    fn directory(test: &str, files: &[&str]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("simserve-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for file in files {
            std::fs::copy(fixtures("good").join(file), dir.join(file)).unwrap();
        }
        dir
    }

    #[test]
    fn a_file_rewritten_in_place_changes_nothing_served_until_a_reload() {
        let dir = directory("in-place", &["items.npy", "model.safetensors"]);
        let tables = Tables::new(Some(dir.clone()));
        tables.load().unwrap();
        let catalog = tables.catalog();
        let items = catalog.get("items").unwrap();
        let emb = catalog.get("model.emb.weight").unwrap();
        assert!(items.in_place() && emb.in_place());
        // The .npy table's values are where they lie in the file's bytes; the tensor's are
        // copied out of its file.
        assert!(matches!(items.values, table::Values::InFile { .. }));
        assert!(matches!(emb.values, table::Values::Owned(_)));
        let before = (
            items.view().unwrap().to_owned(),
            emb.view().unwrap().to_owned(),
        );
        // Truncated, then rewritten with other values: a mapped file would fault here.
        for file in ["items.npy", "model.safetensors"] {
            std::fs::write(dir.join(file), b"").unwrap();
        }
        assert_eq!(items.view().unwrap(), before.0);
        assert_eq!(emb.view().unwrap(), before.1);
        std::fs::write(dir.join("items.npy"), vec![7u8; 4096]).unwrap();
        assert_eq!(items.view().unwrap(), before.0);
        // The reload fails on both files and keeps serving what was loaded.
        let reloaded = tables.reload();
        assert!(reloaded.changed.is_empty(), "{reloaded:?}");
        let after = tables.catalog();
        assert!(Arc::ptr_eq(after.get("items").unwrap(), items));
        assert!(after.last_error("items").is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_mended_ids_file_of_a_failed_safetensors_tensor_is_read_again() {
        let dir = directory("mended-ids", &["model.safetensors"]);
        std::fs::write(dir.join("model.half.ids.txt"), "a\nb\n").unwrap();
        let tables = Tables::new(Some(dir.clone()));
        assert!(tables.load().is_err(), "3 rows, 2 ids");
        let reloaded = tables.reload();
        assert!(tables.catalog().get("model.half").is_none(), "{reloaded:?}");
        std::fs::write(dir.join("model.half.ids.txt"), "a\nb\nc\n").unwrap();
        let reloaded = tables.reload();
        assert_eq!(reloaded.changed, ["model.half"]);
        let catalog = tables.catalog();
        assert_eq!(
            catalog.get("model.half").unwrap().ids().unwrap().row("c"),
            Some(2)
        );
        assert!(catalog.failures().is_empty(), "{:?}", catalog.failures());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_new_file_whose_table_name_is_taken_on_reload_is_a_failure_not_a_silent_swap() {
        let dir = directory("taken", &["users.npy"]);
        std::fs::rename(dir.join("users.npy"), dir.join("a_b.npy")).unwrap();
        let tables = Tables::new(Some(dir.clone()));
        tables.load().unwrap();
        let before = Arc::clone(tables.catalog().get("a_b").unwrap());
        std::fs::copy(fixtures("good").join("items.npy"), dir.join("a b.npy")).unwrap();
        tables.reload();
        let catalog = tables.catalog();
        assert_eq!(catalog.tables().count(), 1);
        assert!(Arc::ptr_eq(catalog.get("a_b").unwrap(), &before));
        assert!(catalog.last_error("a_b").is_none(), "its own file is fine");
        let failure = &catalog.failures()[0];
        assert_eq!(failure.file, "a b.npy");
        assert!(
            failure.reason.starts_with("the table name \"a_b\" is also"),
            "{failure}"
        );
        // A broken file of that name does not take the table's last good version for its
        // own, nor blame the table; the table's own new version still comes in.
        std::fs::write(dir.join("a b.npy"), b"not a table").unwrap();
        std::fs::copy(fixtures("good").join("items.npy"), dir.join("a_b.npy")).unwrap();
        let reloaded = tables.reload();
        assert_eq!(reloaded.changed, ["a_b"]);
        let catalog = tables.catalog();
        assert_eq!(catalog.get("a_b").unwrap().rows(), 10);
        assert!(
            catalog.last_error("a_b").is_none(),
            "{:?}",
            catalog.failures()
        );
        assert_eq!(catalog.failures()[0].file, "a b.npy");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn float32_data_that_does_not_start_at_a_multiple_of_4_bytes_is_read() {
        let dir = directory("unaligned", &[]);
        // numpy pads the header to 64 bytes; another writer may not: data from byte 81.
        let mut header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".to_owned();
        while (10 + header.len() + 1) != 81 {
            header.push(' ');
        }
        header.push('\n');
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
        npy.extend_from_slice(header.as_bytes());
        let values = [1.5f32, -2.0, 0.25, 3.0, 0.0, -0.5];
        npy.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        std::fs::write(dir.join("t.npy"), npy).unwrap();
        let tables = Tables::new(Some(dir.clone()));
        tables.load().unwrap();
        let catalog = tables.catalog();
        let table = catalog.get("t").unwrap();
        assert_eq!(table.view().unwrap().as_slice().unwrap(), values);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reader_that_panics_gives_a_failure_with_its_message_rather_than_unwinding() {
        let got: Result<(), String> = unpanicked("t.npy", || panic!("a defect"));
        assert_eq!(got, Err("reading it failed unexpectedly: a defect".into()));
        let got: Result<(), String> = unpanicked("t.npy", || std::panic::panic_any(7));
        assert_eq!(
            got,
            Err("reading it failed unexpectedly: (no message)".into())
        );
        assert_eq!(unpanicked("t.npy", || 3), Ok(3));
    }
}
