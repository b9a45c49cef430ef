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
//!
//! Whatever the directory holds fails no more than its own table: a file named as a table's
//! or ids file that cannot be read (not a regular file, a dangling or looping link, no
//! permission), two ids files for one table, or a tensor that no longer is a table, is a
//! failure of that file or table, whose last good version keeps serving; a directory that
//! cannot be listed to its end fails the whole reload, and every table keeps serving. Each
//! failure's reason is cut to [`MAX_REASON_BYTES`].

mod embeddings;
#[cfg(test)]
mod hostile;
mod ids;
mod listing;
mod load;
mod memory;
mod table;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

pub use embeddings::{Embeddings, Resolve, Unresolved};
pub use ids::Ids;
pub use load::MAX_TABLE_NAME;
pub use table::Table;

use listing::{DataFile, IdsFiles, list};

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

/// The longest reason a failure keeps, in bytes: far more than any reason simserve writes
/// itself needs (a memory refusal, among the longest, takes about 250), and little enough
/// that a failure quoting what a hostile file holds (a library's parse error may quote its
/// whole header) cannot make every `GET /tables` answer and log line as large as the file.
pub const MAX_REASON_BYTES: usize = 1024;

/// `reason`, cut to [`MAX_REASON_BYTES`] (at a character boundary, saying how long it was).
fn cut(mut reason: String) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let whole = reason.len();
    let mut end = MAX_REASON_BYTES - 64;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.truncate(end);
    reason.push_str(&format!("… (cut: {whole} bytes in all)"));
    reason
}

/// The tables served at one moment, and the failures of the load that made them.
#[derive(Debug, Default)]
pub struct Catalog {
    tables: BTreeMap<String, Arc<Table>>,
    failures: Vec<Failure>,
    /// Where in `failures` each table's first failure is, so that listing every table with
    /// its last error takes one look-up per table, not a search of every failure.
    table_failures: HashMap<String, usize>,
    /// The files with a failure.
    failed_files: HashSet<String>,
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
        self.failures.get(*self.table_failures.get(name)?)
    }

    /// Records that `file`, or its table `table`, failed, for `reason` (cut to
    /// [`MAX_REASON_BYTES`]): the one way failures are stored.
    fn fail(&mut self, file: &str, table: Option<String>, reason: String) {
        if let Some(table) = &table {
            let at = self.failures.len();
            self.table_failures.entry(table.clone()).or_insert(at);
        }
        if !self.failed_files.contains(file) {
            self.failed_files.insert(file.to_owned());
        }
        self.failures.push(Failure {
            file: file.to_owned(),
            table,
            reason: cut(reason),
        });
    }

    /// Whether `file`, or one of its tables, failed.
    fn failed(&self, file: &str) -> bool {
        self.failed_files.contains(file)
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

/// Reads `dir` into a new catalog, keeping from `previous` the tables whose files did not
/// change, and those whose new version failed to load.
fn read_dir(dir: &Path, previous: &Catalog) -> (Catalog, Reloaded) {
    let mut catalog = Catalog::default();
    let mut reloaded = Reloaded::default();
    let (files, ids_files) = match list(dir) {
        Ok(listed) => listed,
        Err(reason) => {
            // Nothing is known of the files: every table serves on, and what had failed
            // stays failed, so that the next reload does not keep a failed file's tables as
            // unchanged.
            for failure in previous.failures() {
                catalog.fail(&failure.file, failure.table.clone(), failure.reason.clone());
            }
            catalog.fail(&dir.display().to_string(), None, reason);
            catalog.tables = previous.tables.clone();
            return (catalog, reloaded);
        }
    };
    // The previous tables, by their file.
    let mut previous_of: HashMap<&str, Vec<&Arc<Table>>> = HashMap::new();
    for table in previous.tables() {
        previous_of.entry(&table.file).or_default().push(table);
    }

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
            let others = |table: &Arc<Table>| table.file != file;
            let clash = previous.get(&name).is_some_and(others)
                || catalog.tables.get(&name).is_some_and(others);
            catalog.fail(file, (!clash).then(|| name.clone()), reason);
            if let Some(old) = previous.get(&name).filter(|old| old.file == file)
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
        let file = data.file();
        let old = previous_of.get(file).map(Vec::as_slice).unwrap_or_default();
        let kept = match data {
            DataFile::Npy { name, path, .. } => {
                unchanged(previous, name, path, ids_files.of(name)).map(|old| vec![old])
            }
            DataFile::Safetensors { path, .. } => {
                unchanged_file(previous, file, old, path, &ids_files)
            }
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
        let path = data.path();
        match data {
            DataFile::Npy { file, name, .. } => {
                let loaded = match ids_files.of(name) {
                    Err(reason) => Err((name.clone(), reason)),
                    Ok(ids) => unpanicked(file, || load::npy(path, file, name, ids))
                        .map_err(|reason| (name.clone(), reason))
                        .and_then(|loaded| loaded),
                };
                add(&mut catalog, file, loaded);
            }
            DataFile::Safetensors { file, stem, .. } => {
                let ids_for = |name: &str| ids_files.of(name).map(|ids| ids.map(Path::to_owned));
                let loaded = unpanicked(file, || load::safetensors(path, file, stem, ids_for))
                    .and_then(|loaded| loaded);
                let old = previous_of.get(file.as_str()).map(Vec::as_slice);
                match loaded {
                    Ok((loaded, skipped)) => {
                        for one in loaded {
                            add(&mut catalog, file, one);
                        }
                        for (tensor, why) in skipped {
                            // A tensor that was a table and is rewritten as something else
                            // (another dtype or rank) is more likely a bad export than a
                            // table meant to go: its last good version keeps serving, as a
                            // `.npy` file's would. Tensors that never were tables (biases,
                            // say) are no one's concern.
                            let source = format!("{file}:{tensor}");
                            let name = load::table_name(&format!("{stem}.{tensor}"));
                            let was = previous.get(&name).filter(|table| table.source == source);
                            match was {
                                Some(table) => {
                                    tracing::warn!(
                                        file,
                                        tensor,
                                        why,
                                        "a tensor that was a table no longer is one; its last \
                                         good version serves"
                                    );
                                    let reason = format!(
                                        "the tensor {tensor:?} is no longer a table ({why}); \
                                         serving the last good version"
                                    );
                                    add(&mut catalog, file, Err((table.name.clone(), reason)));
                                }
                                None => tracing::debug!(file, tensor, why, "tensor is not a table"),
                            }
                        }
                    }
                    Err(reason) => {
                        catalog.fail(file, None, reason);
                        // Its tables keep their last good versions.
                        for old in old.unwrap_or_default() {
                            if !name_taken(&mut catalog, file, &old.name) {
                                catalog.tables.insert(old.name.clone(), Arc::clone(old));
                                catalog.fail(
                                    file,
                                    Some(old.name.clone()),
                                    "its file failed to load; serving the last good version".into(),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    for name in ids_files.tables() {
        if !catalog.tables.contains_key(name) && catalog.last_error(name).is_none() {
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

/// Whether another file's table already has the name `name` in `catalog` (recorded as a
/// failure of `file`, whose table is then left out; not of the table, whose own file is
/// fine).
fn name_taken(catalog: &mut Catalog, file: &str, name: &str) -> bool {
    let Some(other) = catalog.tables.get(name) else {
        return false;
    };
    let reason = format!("the table name {name:?} is also {}'s", other.source);
    catalog.fail(file, None, reason);
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

/// The previous tables `old` of the `.safetensors` file `file` when neither it nor any of
/// their ids files changed, and nothing of it failed (what failed is read again at every
/// reload, since what made it fail, an ids file, a passing read error, may have been mended).
fn unchanged_file(
    previous: &Catalog,
    file: &str,
    old: &[&Arc<Table>],
    path: &Path,
    ids_files: &IdsFiles,
) -> Option<Vec<Arc<Table>>> {
    if previous.failed(file) || old.is_empty() {
        return None;
    }
    let data = load::stamp(path).ok()?;
    for table in old {
        let ids = match ids_files.of(&table.name).ok()? {
            Some(path) => Some(load::stamp(path).ok()?),
            None => None,
        };
        if table.stamps != (data.clone(), ids) {
            return None;
        }
    }
    Some(old.iter().copied().cloned().collect())
}

/// The previous version of table `name` when neither its data file nor its ids file
/// changed (same size, modification time and inode), and it has one ids file at most.
fn unchanged(
    previous: &Catalog,
    name: &str,
    path: &Path,
    ids: Result<Option<&Path>, String>,
) -> Option<Arc<Table>> {
    let old = previous.get(name)?;
    let data = load::stamp(path).ok()?;
    let ids = match ids.ok()? {
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
