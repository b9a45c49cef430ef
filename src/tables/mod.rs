//! Embedding tables kept on the server, so requests name rows (`{"table": "items"}`,
//! `{"table": "users", "ids": ["u3"]}`) instead of sending them.
//!
//! - [`Tables`] is the one handle the server shares: the directory (`--tables`), the
//!   [`Catalog`] now served, and [`Tables::load`] (at start: all or nothing) and
//!   [`Tables::reload`] (on SIGHUP or `POST /tables/reload`: a file that fails keeps its last
//!   good version serving).
//! - A [`Catalog`] is immutable. A reload builds a new one and swaps it in; a request takes
//!   the catalog (and so the `Arc`s of its tables) when it is parsed and keeps them until
//!   its answer is written, so it never sees two versions, and a replaced table's mapping
//!   is dropped only after its last reader is done.
//! - [`Embeddings`] is what an embedding field resolves to: rows sent inline, a whole table
//!   read in place, or chosen rows of a table, gathered when the job runs.
//!
//! Files in the directory: `NAME.npy` is the table `NAME`; every 2-D float tensor `T` of
//! `FILE.safetensors` is the table `FILE.T`; `NAME.ids.txt` holds the ids of table `NAME`.
//! In names, characters other than `A–Z a–z 0–9 . _ -` become `_`. Files whose name starts
//! with `.` are ignored, so a new version can be written under a hidden name and renamed
//! into place.

mod embeddings;
mod ids;
mod load;
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
            if let Some(other) = catalog.tables.get(&name) {
                catalog.failures.push(Failure {
                    file: file.to_owned(),
                    table: Some(name.clone()),
                    reason: format!("the table name {name:?} is also {}'s", other.source),
                });
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
            catalog.failures.push(Failure {
                file: file.to_owned(),
                table: Some(name.clone()),
                reason,
            });
            if let Some(old) = previous.get(&name) {
                catalog.tables.insert(name, Arc::clone(old));
            }
        }
    };

    for data in &files {
        match data {
            DataFile::Npy { file, name } => {
                let path = dir.join(file);
                let ids = ids_files.get(name);
                if let Some(old) = unchanged(previous, name, &path, ids) {
                    catalog.tables.insert(name.clone(), old);
                    continue;
                }
                add(
                    &mut catalog,
                    file,
                    load::npy(&path, file, name, ids.map(PathBuf::as_path)),
                );
            }
            DataFile::Safetensors { file, stem } => {
                let path = dir.join(file);
                if let Some(kept) = unchanged_file(previous, file, &path, &ids_files) {
                    for old in kept {
                        catalog.tables.insert(old.name.clone(), old);
                    }
                    let failed = previous.failures.iter().filter(|f| f.file == *file);
                    catalog.failures.extend(failed.cloned());
                    continue;
                }
                let ids_for = |name: &str| ids_files.get(name).cloned();
                match load::safetensors(&path, file, stem, ids_for) {
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
                        let source = format!("{file}:");
                        for old in previous.tables() {
                            if old.source.starts_with(&source) {
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

fn data_file_name(file: &DataFile) -> &str {
    match file {
        DataFile::Npy { file, .. } | DataFile::Safetensors { file, .. } => file,
    }
}

/// The previous tables of the `.safetensors` file `file` when neither it nor any of their
/// ids files changed.
fn unchanged_file(
    previous: &Catalog,
    file: &str,
    path: &Path,
    ids_files: &BTreeMap<String, PathBuf>,
) -> Option<Vec<Arc<Table>>> {
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
        assert_eq!(seen, 14);
    }
}
