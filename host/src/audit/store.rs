//! Where records live: the [`AuditStore`] trait, so another backend can
//! follow, and [`EmbeddedStore`], its implementation over [`Storage`].
//!
//! Layout: per tenant, the append-only log `audit.records.{tenant}` (one line
//! per record: its seq and the stored record) and `audit.checkpoints.{tenant}`
//! (the seq covered and the checkpoint as JSON), as files beside the database
//! (`{data}/db.logs`); each tenant's salt is in the database's `audit.salts`
//! tree.

use crate::storage::{SeqTree, Storage, StorageError};

use super::record::Salt;

/// Why the store could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(String);

impl StoreError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        StoreError(message.into())
    }
}

impl From<StorageError> for StoreError {
    fn from(e: StorageError) -> Self {
        StoreError(e.to_string())
    }
}

/// Stored entries, `(seq, bytes)`, in sequence order.
pub type StoredEntries<'a> = Box<dyn Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + 'a>;

/// Append-only storage of per-tenant record chains and their checkpoints.
/// One writer at a time (the [`AuditLog`](super::AuditLog) of one host).
pub trait AuditStore: Send + Sync {
    /// The tenants that have records, sorted.
    fn tenants(&self) -> Result<Vec<String>, StoreError>;
    /// The tenant's argument salt, created (durably) on first use.
    fn salt(&self, tenant: &str) -> Result<Salt, StoreError>;
    /// The tenant's record with the highest seq.
    fn last_record(&self, tenant: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError>;
    /// The tenant's checkpoint with the highest seq.
    fn last_checkpoint(&self, tenant: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError>;
    /// Append records and checkpoints of one tenant atomically: after a crash
    /// either all are stored or none. Refuses to replace any stored value.
    /// Durable only after [`AuditStore::flush`].
    fn append(
        &self,
        tenant: &str,
        records: &[(u64, Vec<u8>)],
        checkpoints: &[(u64, Vec<u8>)],
    ) -> Result<(), StoreError>;
    /// Make everything appended so far durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// The tenant's records from `from` on, in order.
    fn records(&self, tenant: &str, from: u64) -> Result<StoredEntries<'_>, StoreError>;
    /// The tenant's checkpoints, in order.
    fn checkpoints(&self, tenant: &str) -> Result<StoredEntries<'_>, StoreError>;
}

const RECORDS: &str = "audit.records.";
const CHECKPOINTS: &str = "audit.checkpoints.";
const SALTS: &str = "audit.salts";

/// The audit store inside the host's embedded database.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    storage: Storage,
}

impl EmbeddedStore {
    /// The audit trees of `storage`.
    pub fn new(storage: Storage) -> Self {
        EmbeddedStore { storage }
    }

    fn records_tree(&self, tenant: &str) -> Result<SeqTree, StoreError> {
        Ok(self.storage.seq_tree(&format!("{RECORDS}{tenant}"))?)
    }

    fn checkpoints_tree(&self, tenant: &str) -> Result<SeqTree, StoreError> {
        Ok(self.storage.seq_tree(&format!("{CHECKPOINTS}{tenant}"))?)
    }
}

fn entries<'a>(log: &SeqTree, from: u64) -> StoredEntries<'a> {
    Box::new(
        log.iter_from(from)
            .map(|entry| entry.map_err(StoreError::from)),
    )
}

impl AuditStore for EmbeddedStore {
    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .storage
            .tree_names(RECORDS)
            .iter()
            .filter_map(|name| name.strip_prefix(RECORDS))
            .map(str::to_string)
            .collect())
    }

    fn salt(&self, tenant: &str) -> Result<Salt, StoreError> {
        let salts = self.storage.tree(SALTS)?;
        if let Some(hex_salt) = salts.get::<String>(tenant)? {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(&hex_salt, &mut bytes).map_err(|_| {
                StoreError::new(format!(
                    "the audit salt of tenant {tenant} is not 64 hex digits"
                ))
            })?;
            return Ok(Salt::from_bytes(bytes));
        }
        let salt = Salt::generate().map_err(StoreError::new)?;
        salts.put(tenant, &hex::encode(salt.expose_bytes()))?;
        Ok(salt)
    }

    fn last_record(&self, tenant: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self.records_tree(tenant)?.last()?)
    }

    fn last_checkpoint(&self, tenant: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self.checkpoints_tree(tenant)?.last()?)
    }

    fn append(
        &self,
        tenant: &str,
        records: &[(u64, Vec<u8>)],
        checkpoints: &[(u64, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let records_tree = self.records_tree(tenant)?;
        let checkpoints_tree = self.checkpoints_tree(tenant)?;
        self.storage
            .append_atomically((&records_tree, records), (&checkpoints_tree, checkpoints))?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(self.storage.flush()?)
    }

    fn records(&self, tenant: &str, from: u64) -> Result<StoredEntries<'_>, StoreError> {
        Ok(entries(&self.records_tree(tenant)?, from))
    }

    fn checkpoints(&self, tenant: &str) -> Result<StoredEntries<'_>, StoreError> {
        Ok(entries(&self.checkpoints_tree(tenant)?, 0))
    }
}
