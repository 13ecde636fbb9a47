//! Durable state on disk: the only module that names sled. Values are JSON
//! documents in named trees; every error names the database directory.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why stored data could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database could not be opened (often: another airlock uses it).
    #[error("cannot open the database in {path}: {reason}")]
    Open {
        /// The database directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("database in {path}: {reason}")]
    Io {
        /// The database directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A stored value is not what this version of airlock expects.
    #[error("database in {path}: the value at `{tree}/{key}` is unreadable: {reason}")]
    Corrupt {
        /// The database directory.
        path: PathBuf,
        /// The tree.
        tree: String,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// An open database.
#[derive(Debug, Clone)]
pub struct Storage {
    db: sled::Db,
    path: PathBuf,
}

impl Storage {
    /// Open (or create) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(|e| StorageError::Open {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Storage {
            db,
            path: dir.to_path_buf(),
        })
    }

    /// The tree `name`, created when missing.
    pub fn tree(&self, name: &str) -> Result<Tree, StorageError> {
        let tree = self.db.open_tree(name).map_err(|e| self.io(e))?;
        Ok(Tree {
            tree,
            name: name.to_string(),
            path: self.path.clone(),
        })
    }

    fn io(&self, e: sled::Error) -> StorageError {
        StorageError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}

/// A named collection of JSON values.
#[derive(Debug, Clone)]
pub struct Tree {
    tree: sled::Tree,
    name: String,
    path: PathBuf,
}

impl Tree {
    fn io(&self, e: impl std::fmt::Display) -> StorageError {
        StorageError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    fn decode<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<T, StorageError> {
        serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt {
            path: self.path.clone(),
            tree: self.name.clone(),
            key: key.to_string(),
            reason: e.to_string(),
        })
    }

    /// The value at `key`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        match self.tree.get(key).map_err(|e| self.io(e))? {
            Some(bytes) => self.decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Store `value` at `key` and flush it to disk.
    pub fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| self.io(e))?;
        self.tree.insert(key, bytes).map_err(|e| self.io(e))?;
        self.tree.flush().map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Remove the value at `key` and return it: exactly one caller gets it,
    /// however many race.
    pub fn take<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let removed = self.tree.remove(key).map_err(|e| self.io(e))?;
        self.tree.flush().map_err(|e| self.io(e))?;
        match removed {
            Some(bytes) => self.decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_reopening_and_take_is_single_use() {
        let dir = std::env::temp_dir().join(format!("airlock-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let storage = Storage::open(&dir).unwrap();
            let tree = storage.tree("t").unwrap();
            tree.put("k", &vec![1, 2, 3]).unwrap();
        }
        let storage = Storage::open(&dir).unwrap();
        let tree = storage.tree("t").unwrap();
        assert_eq!(tree.get::<Vec<u8>>("k").unwrap(), Some(vec![1, 2, 3]));
        assert!(
            tree.get::<String>("k").is_err(),
            "a mistyped value is an error"
        );
        assert_eq!(tree.take::<Vec<u8>>("k").unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(tree.take::<Vec<u8>>("k").unwrap(), None);
        drop(storage);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
