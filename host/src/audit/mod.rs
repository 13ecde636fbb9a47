//! The audit trail: append-only, hash-chained, periodically signed records of
//! every tool call and every delegated request, one chain per tenant.
//!
//! - [`record`]: what a record says ([`Entry`] in, [`Record`] stored) and the
//!   stored form: `{"hash":"<hex>","body":<record JSON>}`, where `hash` is
//!   SHA-256 over the previous record's hash and exactly the body bytes stored.
//!   Arguments are kept only as an HMAC-SHA256 under a per-tenant salt that
//!   never leaves the store.
//! - [`store`]: the [`AuditStore`] trait (append a batch atomically, read in
//!   order) and its embedded implementation over [`crate::storage`].
//! - [`writer`]: [`AuditLog`], which batches appends off the request path on
//!   the caller's own task under a lock, acknowledges each once the database
//!   holds it, and flushes to disk from a thread of its own.
//! - [`verify`](mod@verify): [`verify()`] walks each chain and names the first bad record;
//!   [`export()`] prints records as JSON lines.
//!
//! Audit is data, not logs: nothing here goes through `tracing` except the
//! writer's own failures, and records hold identity claims and digests only,
//! never a secret.

pub mod record;
pub mod store;
pub mod verify;
pub mod writer;

#[cfg(test)]
mod tests;

pub use record::{
    ActorKind, CallEnd, CallIdentity, Checkpoint, DelegatedRequest, DelegationMode, Entry, Event,
    Outcome, Record, Salt,
};
pub use store::{AuditStore, EmbeddedStore, StoreError, StoredEntries};
pub use verify::{
    ChainCounts, ExportError, ExportFilter, Finding, Problem, TenantReport, Verdict, VerifyError,
    VerifyReport, export, export_store, parse_rfc3339_ms, verify, verify_store,
};
pub use writer::{AppendReceipt, AuditLog, AuditSettings};

/// Signs checkpoints. Implemented by the host's Ed25519 key ring.
pub trait CheckpointSigner: Send + Sync {
    /// Sign `msg`: the id of the key used and the signature.
    fn sign(&self, msg: &[u8]) -> Result<(String, Vec<u8>), String>;
}

/// Checks checkpoint signatures: any key the signer ever used, by its id.
pub trait CheckpointVerifier {
    /// Whether `sig` is the signature of `msg` by the key `kid`.
    fn verify(&self, kid: &str, msg: &[u8], sig: &[u8]) -> bool;
}

/// Why a record could not be appended. The tool call it belongs to must fail
/// closed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// The tenant id is not one a configuration could hold.
    #[error("`{0}` is not a tenant id")]
    InvalidTenant(String),
    /// [`AuditLog::shutdown`] ran; nothing more is accepted.
    #[error("the audit log is shut down")]
    Closed,
    /// Reading or writing the store failed.
    #[error("cannot write the audit trail: {0}")]
    Store(#[from] StoreError),
    /// The stored chain does not end the way a chain this writer wrote ends.
    #[error(
        "the audit chain of tenant {tenant} cannot be continued: {reason}; run `airlock audit verify`"
    )]
    Broken {
        /// The tenant.
        tenant: String,
        /// What is wrong with its last record or checkpoint.
        reason: String,
    },
    /// A checkpoint could not be signed.
    #[error("cannot sign an audit checkpoint: {0}")]
    Sign(String),
    /// A record could not be serialized.
    #[error("cannot encode an audit record: {0}")]
    Encode(String),
}
