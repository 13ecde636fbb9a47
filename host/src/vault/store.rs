//! Where the vault keeps its bytes: the [`VaultStore`] trait (so a shared
//! database can follow) and its implementation over the host's `storage`
//! (three sled trees). Every write is durable when it returns.

use super::VaultError;
use crate::storage::{RawEntries, Storage, Tree};

/// Which collection a key lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// The key ring: master-key fingerprints and wrapped data keys.
    Keys,
    /// Sealed token records.
    Records,
    /// Sealed operator secrets.
    Secrets,
}

/// Durable byte storage for the vault: single-key operations, each atomic
/// and durable when it returns.
pub trait VaultStore: Send + Sync + std::fmt::Debug {
    /// The value at `key`.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError>;
    /// Store `value` at `key`.
    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), VaultError>;
    /// Remove `key`; whether it was there.
    fn remove(&self, space: Space, key: &[u8]) -> Result<bool, VaultError>;
    /// Replace `old` (`None`: absent) with `new` (`None`: remove) at `key`
    /// only if the value is still `old`; whether it did.
    fn compare_and_swap(
        &self,
        space: Space,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, VaultError>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, space: Space, prefix: &[u8]) -> Result<RawEntries, VaultError>;
}

/// The vault's trees in the host's database.
#[derive(Debug, Clone)]
pub struct StorageVaultStore {
    keys: Tree,
    records: Tree,
    secrets: Tree,
}

impl StorageVaultStore {
    /// The trees `vault.keys`, `vault.records` and `vault.secrets`.
    pub fn new(storage: &Storage) -> Result<Self, VaultError> {
        Ok(StorageVaultStore {
            keys: storage.tree("vault.keys")?,
            records: storage.tree("vault.records")?,
            secrets: storage.tree("vault.secrets")?,
        })
    }

    fn tree(&self, space: Space) -> &Tree {
        match space {
            Space::Keys => &self.keys,
            Space::Records => &self.records,
            Space::Secrets => &self.secrets,
        }
    }
}

impl VaultStore for StorageVaultStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        Ok(self.tree(space).get_raw(key)?)
    }

    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), VaultError> {
        Ok(self.tree(space).put_raw(key, value)?)
    }

    fn remove(&self, space: Space, key: &[u8]) -> Result<bool, VaultError> {
        Ok(self.tree(space).remove_raw(key)?)
    }

    fn compare_and_swap(
        &self,
        space: Space,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, VaultError> {
        Ok(self.tree(space).compare_and_swap_raw(key, old, new)?)
    }

    fn scan_prefix(&self, space: Space, prefix: &[u8]) -> Result<RawEntries, VaultError> {
        Ok(self.tree(space).scan_prefix_raw(prefix)?)
    }
}
