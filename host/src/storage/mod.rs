//! Durable state on disk: the only module that names sled. Values are JSON
//! documents in named trees (sled, in `{data}/db`); append-only logs such as
//! the audit trail are plain files beside it (`{data}/db.logs`, one line per
//! entry; see [`SeqTree`]). Every error names the directory.

mod seqlog;

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
    logs: std::sync::Arc<seqlog::Logs>,
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
            // Append-only logs live beside the database, guarded by its lock.
            logs: std::sync::Arc::new(seqlog::Logs::new(dir.with_extension("logs"))),
        })
    }

    /// Whether the database answers a read (for `/readyz`): cheap, in memory.
    pub fn is_usable(&self) -> bool {
        self.db.get(b"").is_ok()
    }

    /// [`Storage::open`], waiting up to `wait` while the database is locked
    /// (a process that just stopped, or a handle this process just dropped,
    /// can hold the lock for a moment).
    pub fn open_waiting(dir: &Path, wait: std::time::Duration) -> Result<Self, StorageError> {
        let until = std::time::Instant::now() + wait;
        loop {
            match Self::open(dir) {
                Err(e) if e.is_locked() && std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
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

/// `(key, value)` pairs of raw bytes, in key order.
pub type RawEntries = Vec<(Vec<u8>, Vec<u8>)>;

impl Tree {
    /// The raw bytes at `key`.
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let value = self.tree.get(key).map_err(|e| self.io(e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    /// Store raw `value` at `key` and flush it to disk.
    pub fn put_raw(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.tree.insert(key, value).map_err(|e| self.io(e))?;
        self.flush()
    }

    /// Remove the value at `key`, flushing; whether there was one.
    pub fn remove_raw(&self, key: &[u8]) -> Result<bool, StorageError> {
        let removed = self.tree.remove(key).map_err(|e| self.io(e))?;
        if removed.is_some() {
            self.flush()?;
        }
        Ok(removed.is_some())
    }

    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    pub fn scan_prefix_raw(&self, prefix: &[u8]) -> Result<RawEntries, StorageError> {
        self.tree
            .scan_prefix(prefix)
            .map(|entry| {
                entry
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| self.io(e))
            })
            .collect()
    }

    /// Replace the value at `key` with `new` (`None`: remove it) only if it
    /// is still `old` (`None`: absent), atomically; flushes when it swapped.
    /// Whether it swapped.
    pub fn compare_and_swap_raw(
        &self,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StorageError> {
        let swapped = self
            .tree
            .compare_and_swap(key, old, new)
            .map_err(|e| self.io(e))?
            .is_ok();
        if swapped {
            self.flush()?;
        }
        Ok(swapped)
    }

    /// Insert `value` at `key` only if nothing is there, atomically, without
    /// waiting for the disk (the database's own flush, every half second,
    /// makes it durable); whether it was inserted.
    pub fn insert_new_raw(&self, key: &[u8], value: &[u8]) -> Result<bool, StorageError> {
        Ok(self
            .tree
            .compare_and_swap(key, None::<&[u8]>, Some(value))
            .map_err(|e| self.io(e))?
            .is_ok())
    }

    /// Remove the value at `key` without waiting for the disk; whether
    /// there was one.
    pub fn remove_unflushed_raw(&self, key: &[u8]) -> Result<bool, StorageError> {
        let removed = self.tree.remove(key).map_err(|e| self.io(e))?;
        Ok(removed.is_some())
    }

    /// Remove up to `limit` entries whose keys sort before `end`, without
    /// flushing (removals that a crash undoes are redone by the next call);
    /// the entries this call removed.
    pub fn remove_below_raw(&self, end: &[u8], limit: usize) -> Result<RawEntries, StorageError> {
        let keys = self
            .tree
            .range(..end)
            .keys()
            .take(limit)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.io(e))?;
        let mut removed = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(value) = self.tree.remove(&key).map_err(|e| self.io(e))? {
                removed.push((key.to_vec(), value.to_vec()));
            }
        }
        Ok(removed)
    }

    /// Write this tree's changes to disk.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.tree.flush().map(|_| ()).map_err(|e| self.io(e))
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
    /// The append-only log `name` (a file beside the database, created on
    /// first append).
    pub fn seq_tree(&self, name: &str) -> Result<SeqTree, StorageError> {
        Ok(SeqTree {
            log: self.logs.log(name)?,
        })
    }

    /// The names of the existing logs that start with `prefix`, sorted.
    /// Creates nothing.
    pub fn tree_names(&self, prefix: &str) -> Vec<String> {
        self.logs.names(prefix)
    }

    /// Append `first_entries` to `first`, then `second_entries` to `second`,
    /// each with one write. After a crash each log holds a prefix of what was
    /// appended (a partial last line is ignored and later cut off), and the
    /// first log is written before the second: appending records before the
    /// checkpoints that cover them keeps a checkpoint from ever outrunning its
    /// chain. Refuses, changing nothing in that log, any sequence number not
    /// above the log's last. Not durable until [`Storage::flush`].
    pub fn append_atomically(
        &self,
        (first, first_entries): (&SeqTree, &[(u64, Vec<u8>)]),
        (second, second_entries): (&SeqTree, &[(u64, Vec<u8>)]),
    ) -> Result<(), StorageError> {
        first.log.append(first_entries)?;
        second.log.append(second_entries)
    }

    /// Write everything written so far to disk: the logs, then the database.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.logs.sync()?;
        self.db.flush().map(|_| ()).map_err(|e| self.io(e))
    }
}

/// An append-only log of `(sequence number, bytes)` entries in sequence
/// order. Written only through [`Storage::append_atomically`], which never
/// replaces a value.
#[derive(Debug, Clone)]
pub struct SeqTree {
    log: std::sync::Arc<seqlog::SeqLog>,
}

impl SeqTree {
    /// The log's name.
    pub fn name(&self) -> &str {
        &self.log.name
    }

    /// The entry with the highest sequence number.
    pub fn last(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        self.log.last()
    }

    /// Every entry from sequence number `from` on, in order.
    pub fn iter_from(&self, from: u64) -> SeqIter {
        let entries = match self.log.entries() {
            Ok(entries) => entries
                .into_iter()
                .filter(|(seq, _)| *seq >= from)
                .map(Ok)
                .collect(),
            Err(e) => vec![Err(e)],
        };
        SeqIter {
            iter: entries.into_iter(),
        }
    }
}

/// The entries of a [`SeqTree`] in sequence order.
#[derive(Debug)]
pub struct SeqIter {
    iter: std::vec::IntoIter<Result<(u64, Vec<u8>), StorageError>>,
}

impl Iterator for SeqIter {
    type Item = Result<(u64, Vec<u8>), StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.iter.next()
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
