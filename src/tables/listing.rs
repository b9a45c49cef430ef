//! What the tables directory lists: its data files (`NAME.npy`, `FILE.safetensors`) and ids
//! files (`NAME.ids.txt`), by name only. Whether each is a file that can be read is found
//! when it is read, so that one that cannot be fails its table rather than going unseen; an
//! entry that cannot be listed fails the whole listing, since it may be any table's file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::load;

/// A data file found in the directory: its name (lossy, should it not be UTF-8) and its
/// path (the real one, opened).
pub(super) enum DataFile {
    Npy {
        file: String,
        path: PathBuf,
        name: String,
    },
    Safetensors {
        file: String,
        path: PathBuf,
        stem: String,
    },
}

impl DataFile {
    pub(super) fn file(&self) -> &str {
        match self {
            DataFile::Npy { file, .. } | DataFile::Safetensors { file, .. } => file,
        }
    }

    pub(super) fn path(&self) -> &Path {
        match self {
            DataFile::Npy { path, .. } | DataFile::Safetensors { path, .. } => path,
        }
    }
}

/// The ids files of the directory, by the table they give ids to.
#[derive(Default)]
pub(super) struct IdsFiles(BTreeMap<String, Vec<(String, PathBuf)>>);

impl IdsFiles {
    /// The tables that have ids files.
    pub(super) fn tables(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }

    /// The ids file of table `name`, if it has one; why not, if several files name it
    /// (`a b.ids.txt` and `a_b.ids.txt` both name `a_b`): which one is meant cannot be told.
    pub(super) fn of(&self, name: &str) -> Result<Option<&Path>, String> {
        match self.0.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([(_, path)]) => Ok(Some(path)),
            Some(several) => {
                let mut files: Vec<&str> = several.iter().map(|(file, _)| file.as_str()).collect();
                files.sort_unstable();
                let shown: Vec<String> = files.iter().take(3).map(|f| format!("{f:?}")).collect();
                let more = match files.len() {
                    ..=3 => String::new(),
                    n => format!(" and {} more", n - 3),
                };
                Err(format!(
                    "{} ids files give the ids of the table {name:?}: {}{more}; rename all \
                     but one",
                    files.len(),
                    shown.join(", ")
                ))
            }
        }
    }
}

/// What the directory lists: its data files, by name, and its ids files.
pub(super) fn list(dir: &Path) -> Result<(Vec<DataFile>, IdsFiles), String> {
    let entries = std::fs::read_dir(dir).map_err(|err| err.to_string())?;
    let mut files: Vec<DataFile> = Vec::new();
    let mut ids_files = IdsFiles::default();
    for entry in entries {
        // An entry that cannot be read may be any table's file: no table can be said to be
        // gone.
        let entry = entry.map_err(|err| format!("listing it failed: {err}"))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with('.') {
            continue;
        }
        // Whether it is a file is checked when it is read: one that cannot be is a failure
        // of its table, not a table quietly gone.
        let path = entry.path();
        if let Some(name) = file.strip_suffix(".ids.txt") {
            let name = load::table_name(name);
            ids_files.0.entry(name).or_default().push((file, path));
        } else if let Some(name) = file.strip_suffix(".npy") {
            let name = load::table_name(name);
            files.push(DataFile::Npy { file, path, name });
        } else if let Some(stem) = file.strip_suffix(".safetensors") {
            let stem = stem.to_owned();
            files.push(DataFile::Safetensors { file, path, stem });
        }
    }
    files.sort_by(|x, y| x.file().cmp(y.file()));
    Ok((files, ids_files))
}
