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

    /// Store `value` at `key` without waiting for the disk (a later flush, or
    /// the database's own, makes it durable).
    pub fn put_unflushed<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| self.io(e))?;
        self.tree.insert(key, bytes).map_err(|e| self.io(e))?;
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

impl StorageError {
    /// Whether opening failed because another process holds the database
    /// (a running `airlock serve` or `airlock dev`).
    pub fn is_locked(&self) -> bool {
        matches!(self, StorageError::Open { reason, .. } if reason.contains("could not acquire lock"))
    }
}

impl Storage {
    /// The append-only log `name`, created when missing.
    pub fn seq_tree(&self, name: &str) -> Result<SeqTree, StorageError> {
        let tree = self.db.open_tree(name).map_err(|e| self.io(e))?;
        Ok(SeqTree {
            tree,
            name: name.to_string(),
            path: self.path.clone(),
        })
    }

    /// The names of the existing trees that start with `prefix`, sorted.
    /// Creates nothing.
    pub fn tree_names(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .db
            .tree_names()
            .iter()
            .filter_map(|name| std::str::from_utf8(name).ok())
            .filter(|name| name.starts_with(prefix))
            .map(str::to_string)
            .collect();
        names.sort();
        names
    }

    /// Append `first_entries` to `first` and `second_entries` to `second` in
    /// one transaction: after a crash at any moment either all of them are
    /// stored or none is. Refuses, changing nothing, when any sequence number
    /// is already present: stored values are never overwritten. Not durable
    /// until [`Storage::flush`].
    pub fn append_atomically(
        &self,
        (first, first_entries): (&SeqTree, &[(u64, Vec<u8>)]),
        (second, second_entries): (&SeqTree, &[(u64, Vec<u8>)]),
    ) -> Result<(), StorageError> {
        use sled::Transactional;
        if let ([(seq, value)], []) = (first_entries, second_entries) {
            // One value: a single compare-and-swap is atomic by itself, and
            // unlike a batch or a transaction it does not make sled seal and
            // write its log buffer (an fsync-like write per record).
            let key = seq.to_be_bytes();
            return match first
                .tree
                .compare_and_swap(key, None as Option<&[u8]>, Some(value.as_slice()))
                .map_err(|e| self.io(e))?
            {
                Ok(()) => Ok(()),
                Err(_) => Err(StorageError::Io {
                    path: self.path.clone(),
                    reason: format!(
                        "`{}` already holds {seq}; stored values are never replaced",
                        first.name
                    ),
                }),
            };
        }
        if second_entries.is_empty() {
            // One tree: an atomic batch, cheaper than a transaction.
            let mut batch = sled::Batch::default();
            for (seq, value) in first_entries {
                let key = seq.to_be_bytes();
                if first.tree.contains_key(key).map_err(|e| self.io(e))? {
                    return Err(StorageError::Io {
                        path: self.path.clone(),
                        reason: format!(
                            "`{}` already holds {seq}; stored values are never replaced",
                            first.name
                        ),
                    });
                }
                batch.insert(key.as_slice(), value.as_slice());
            }
            return first.tree.apply_batch(batch).map_err(|e| self.io(e));
        }
        let result = (&first.tree, &second.tree).transaction(|(a, b)| {
            for (tx, name, entries) in [
                (a, first.name.as_str(), first_entries),
                (b, second.name.as_str(), second_entries),
            ] {
                for (seq, value) in entries {
                    let key = seq.to_be_bytes();
                    if tx.insert(key.as_slice(), value.as_slice())?.is_some() {
                        return sled::transaction::abort((name.to_string(), *seq));
                    }
                }
            }
            Ok(())
        });
        result.map_err(|e| match e {
            sled::transaction::TransactionError::Abort((tree, seq)) => StorageError::Io {
                path: self.path.clone(),
                reason: format!("`{tree}` already holds {seq}; stored values are never replaced"),
            },
            sled::transaction::TransactionError::Storage(e) => self.io(e),
        })
    }

    /// Write everything written so far to disk.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.db.flush().map(|_| ()).map_err(|e| self.io(e))
    }
}

/// An append-only log: byte values under big-endian `u64` keys, so a scan
/// returns them in sequence order. Written only through
/// [`Storage::append_atomically`], which never replaces a value.
#[derive(Debug, Clone)]
pub struct SeqTree {
    tree: sled::Tree,
    name: String,
    path: PathBuf,
}

impl SeqTree {
    /// The tree's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The entry with the highest sequence number.
    pub fn last(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        match self.tree.last() {
            Ok(Some((key, value))) => self.entry(&key, &value).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Every entry from sequence number `from` on, in order.
    pub fn iter_from(&self, from: u64) -> SeqIter {
        SeqIter {
            iter: self.tree.range(from.to_be_bytes()..),
            log: self.clone(),
        }
    }

    fn entry(&self, key: &[u8], value: &[u8]) -> Result<(u64, Vec<u8>), StorageError> {
        let seq = <[u8; 8]>::try_from(key).map_err(|_| StorageError::Corrupt {
            path: self.path.clone(),
            tree: self.name.clone(),
            key: hex::encode(key),
            reason: "the key is not a sequence number (8 bytes)".into(),
        })?;
        Ok((u64::from_be_bytes(seq), value.to_vec()))
    }

    fn io(&self, e: sled::Error) -> StorageError {
        StorageError::Io {
            path: self.path.clone(),
            reason: format!("`{}`: {e}", self.name),
        }
    }
}

/// The entries of a [`SeqTree`] in sequence order.
pub struct SeqIter {
    iter: sled::Iter,
    log: SeqTree,
}

impl std::fmt::Debug for SeqIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeqIter")
            .field("tree", &self.log.name)
            .finish_non_exhaustive()
    }
}

impl Iterator for SeqIter {
    type Item = Result<(u64, Vec<u8>), StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.iter.next()? {
            Ok((key, value)) => self.log.entry(&key, &value),
            Err(e) => Err(self.log.io(e)),
        })
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
