//! Checking chains ([`verify`]) and reading them out ([`export`]).
//!
//! Verification walks each tenant's records in order and stops at the first
//! one that is not what the writer wrote: its hash must match its stored body
//! (else it was edited), its seq must follow the one before (else one was
//! removed), and it must link to the hash before it (else records were
//! reordered). Each checkpoint must carry a valid signature over the hash of
//! the record at its seq; a checkpoint past the last record means the tail was
//! removed. Records after the last checkpoint are vouched for by the chain
//! alone (the "unsigned tail").

use std::fmt;
use std::io::Write;

use crate::storage::Storage;

use super::CheckpointVerifier;
use super::record::{Checkpoint, ZERO_HASH, chain_hash, decode_hash, unframe};
use super::store::{AuditStore, EmbeddedStore, StoreError};

/// Why verification could not run (not: what it found).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The store could not be read.
    #[error("cannot read the audit trail: {0}")]
    Store(#[from] StoreError),
    /// No chain exists for the tenant asked for.
    #[error("there is no audit trail for tenant {0}")]
    UnknownTenant(String),
}

/// What is wrong with the first bad record of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Its body does not hash to its stored hash.
    Edited,
    /// It is missing: the next stored record has a later seq.
    Removed {
        /// The seq stored where this one should be.
        next_stored: u64,
    },
    /// It does not link to the record before it, or sits at another record's place.
    Reordered {
        /// What does not fit.
        detail: String,
    },
    /// It cannot be read as a record.
    Unparseable {
        /// Why.
        reason: String,
    },
    /// It belongs to another tenant's chain.
    WrongTenant {
        /// The tenant it names.
        tenant: String,
    },
    /// The checkpoint at this seq cannot be read or does not describe it.
    BadCheckpoint {
        /// Why.
        reason: String,
    },
    /// The checkpoint at this seq is not signed by a known key.
    BadCheckpointSignature {
        /// The key it names.
        kid: String,
    },
    /// A validly signed checkpoint at this seq names another hash: the chain
    /// up to here was rewritten.
    CheckpointMismatch,
    /// Records up to a checkpoint's seq were signed, but the chain ends
    /// before it: the tail was removed.
    CheckpointBeyondChain {
        /// The checkpoint's seq.
        checkpoint: u64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Edited => write!(f, "edited (hash mismatch)"),
            Problem::Removed { next_stored } => {
                write!(
                    f,
                    "removed (seq gap: the next stored record is {next_stored})"
                )
            }
            Problem::Reordered { detail } => write!(f, "reordered ({detail})"),
            Problem::Unparseable { reason } => write!(f, "truncated or unparseable ({reason})"),
            Problem::WrongTenant { tenant } => {
                write!(f, "copied from another chain (it names tenant {tenant})")
            }
            Problem::BadCheckpoint { reason } => write!(f, "bad checkpoint ({reason})"),
            Problem::BadCheckpointSignature { kid } => {
                write!(f, "bad checkpoint signature (key {kid:?})")
            }
            Problem::CheckpointMismatch => write!(
                f,
                "edited (the signed checkpoint names another hash: the chain was rewritten)"
            ),
            Problem::CheckpointBeyondChain { checkpoint } => write!(
                f,
                "removed (the chain ends before it, but a checkpoint covers records up to {checkpoint})"
            ),
        }
    }
}

/// The first bad record of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Its seq.
    pub seq: u64,
    /// What is wrong.
    pub problem: Problem,
}

/// What a sound chain holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainCounts {
    /// Records.
    pub records: u64,
    /// Valid checkpoints.
    pub checkpoints: u64,
    /// Records after the last checkpoint, vouched for by the chain alone.
    pub unsigned_tail: u64,
}

/// The result for one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every record and checkpoint checked out.
    Ok(ChainCounts),
    /// The first problem found.
    Failed(Finding),
}

/// One tenant's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantReport {
    /// The tenant.
    pub tenant: String,
    /// Its verdict.
    pub verdict: Verdict,
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for TenantReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Ok(c) => write!(
                f,
                "OK: tenant {}: {}, {}, unsigned tail {}",
                self.tenant,
                plural(c.records, "record", "records"),
                plural(c.checkpoints, "checkpoint", "checkpoints"),
                c.unsigned_tail
            ),
            Verdict::Failed(finding) => write!(
                f,
                "FAILED: tenant {} record {}: {}",
                self.tenant, finding.seq, finding.problem
            ),
        }
    }
}

/// Every chain's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Per tenant, sorted by tenant.
    pub tenants: Vec<TenantReport>,
}

impl VerifyReport {
    /// Whether every chain checked out.
    pub fn is_ok(&self) -> bool {
        self.tenants
            .iter()
            .all(|t| matches!(t.verdict, Verdict::Ok(_)))
    }
}

/// Verify the chains in `storage`: `tenant`'s, or every tenant's.
pub fn verify(
    storage: &Storage,
    verifier: &dyn CheckpointVerifier,
    tenant: Option<&str>,
) -> Result<VerifyReport, VerifyError> {
    verify_store(&EmbeddedStore::new(storage.clone()), verifier, tenant)
}

/// [`verify`] over any [`AuditStore`].
pub fn verify_store(
    store: &dyn AuditStore,
    verifier: &dyn CheckpointVerifier,
    tenant: Option<&str>,
) -> Result<VerifyReport, VerifyError> {
    let tenants = selected_tenants(store, tenant)?;
    let mut reports = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        let verdict = verify_chain(store, verifier, &tenant)?;
        reports.push(TenantReport { tenant, verdict });
    }
    Ok(VerifyReport { tenants: reports })
}

fn selected_tenants(
    store: &dyn AuditStore,
    tenant: Option<&str>,
) -> Result<Vec<String>, VerifyError> {
    let all = store.tenants()?;
    match tenant {
        None => Ok(all),
        Some(t) if all.iter().any(|known| known == t) => Ok(vec![t.to_string()]),
        Some(t) => Err(VerifyError::UnknownTenant(t.to_string())),
    }
}

fn failed(seq: u64, problem: Problem) -> Result<Verdict, VerifyError> {
    Ok(Verdict::Failed(Finding { seq, problem }))
}

fn verify_chain(
    store: &dyn AuditStore,
    verifier: &dyn CheckpointVerifier,
    tenant: &str,
) -> Result<Verdict, VerifyError> {
    // A checkpoint per `checkpoint_every` records: few enough to hold.
    let checkpoints = store.checkpoints(tenant)?.collect::<Result<Vec<_>, _>>()?;
    let mut checkpoints = checkpoints.into_iter().peekable();
    let mut prev = ZERO_HASH;
    let mut last = 0u64;
    let mut signed = 0u64;
    let mut last_signed = 0u64;
    for entry in store.records(tenant, 0)? {
        let (seq, value) = entry?;
        let expected = last.saturating_add(1);
        if seq != expected {
            return failed(expected, Problem::Removed { next_stored: seq });
        }
        let framed = match unframe(&value) {
            Ok(framed) => framed,
            Err(reason) => return failed(seq, Problem::Unparseable { reason }),
        };
        let Some(stated_prev) = decode_hash(&framed.header.prev) else {
            return failed(
                seq,
                Problem::Unparseable {
                    reason: "its prev is not 64 hex digits".into(),
                },
            );
        };
        if chain_hash(&stated_prev, framed.body) != framed.hash {
            return failed(seq, Problem::Edited);
        }
        if framed.header.seq != seq {
            return failed(
                seq,
                Problem::Reordered {
                    detail: format!("record {} is stored here", framed.header.seq),
                },
            );
        }
        if stated_prev != prev {
            return failed(
                seq,
                Problem::Reordered {
                    detail: "prev mismatch".into(),
                },
            );
        }
        if framed.header.tenant != tenant {
            return failed(
                seq,
                Problem::WrongTenant {
                    tenant: framed.header.tenant,
                },
            );
        }
        prev = framed.hash;
        last = seq;
        while let Some((at, value)) = checkpoints.next_if(|(at, _)| *at <= seq) {
            if at != seq {
                // Every seq below this one was checked already, so this
                // checkpoint's key names no record (only 0 can get here).
                return failed(
                    at,
                    Problem::BadCheckpoint {
                        reason: "it names no record".into(),
                    },
                );
            }
            if let Some(problem) = check_checkpoint(verifier, tenant, seq, &prev, &value) {
                return failed(seq, problem);
            }
            signed = signed.saturating_add(1);
            last_signed = seq;
        }
    }
    if let Some((at, _)) = checkpoints.next() {
        return failed(
            last.saturating_add(1),
            Problem::CheckpointBeyondChain { checkpoint: at },
        );
    }
    Ok(Verdict::Ok(ChainCounts {
        records: last,
        checkpoints: signed,
        unsigned_tail: last.saturating_sub(last_signed),
    }))
}

/// What is wrong with the checkpoint stored at `seq`, if anything.
fn check_checkpoint(
    verifier: &dyn CheckpointVerifier,
    tenant: &str,
    seq: u64,
    hash: &[u8; 32],
    value: &[u8],
) -> Option<Problem> {
    let bad = |reason: String| Some(Problem::BadCheckpoint { reason });
    let checkpoint: Checkpoint = match serde_json::from_slice(value) {
        Ok(checkpoint) => checkpoint,
        Err(e) => return bad(format!("unreadable: {e}")),
    };
    if checkpoint.seq != seq {
        return bad(format!("it names record {}", checkpoint.seq));
    }
    if checkpoint.tenant != tenant {
        return bad(format!("it names tenant {}", checkpoint.tenant));
    }
    if !checkpoint.signature_valid(verifier) {
        return Some(Problem::BadCheckpointSignature {
            kid: checkpoint.kid,
        });
    }
    if decode_hash(&checkpoint.hash) != Some(*hash) {
        return Some(Problem::CheckpointMismatch);
    }
    None
}

/// Which records [`export`] prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFilter {
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only records stored at or after this time (ms since the Unix epoch).
    pub since_ms: Option<u64>,
    /// Only records of this trace.
    pub trace_id: Option<String>,
}

/// Why export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store could not be read.
    #[error("cannot read the audit trail: {0}")]
    Store(#[from] StoreError),
    /// No chain exists for the tenant asked for.
    #[error("there is no audit trail for tenant {0}")]
    UnknownTenant(String),
    /// A stored record cannot be read.
    #[error("record {seq} of tenant {tenant} is unreadable ({reason}); run `airlock audit verify`")]
    Unreadable {
        /// The tenant.
        tenant: String,
        /// The record.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// The output could not be written.
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
}

/// Print the records `filter` selects to `out` as JSON lines, each exactly as
/// stored (`{"hash":..,"body":{..}}`, so it can be checked again), tenant by
/// tenant in chain order. Returns how many were printed.
pub fn export(
    storage: &Storage,
    filter: &ExportFilter,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    export_store(&EmbeddedStore::new(storage.clone()), filter, out)
}

/// [`export`] over any [`AuditStore`].
pub fn export_store(
    store: &dyn AuditStore,
    filter: &ExportFilter,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let tenants = match selected_tenants(store, filter.tenant.as_deref()) {
        Ok(tenants) => tenants,
        Err(VerifyError::Store(e)) => return Err(ExportError::Store(e)),
        Err(VerifyError::UnknownTenant(t)) => return Err(ExportError::UnknownTenant(t)),
    };
    let mut printed = 0u64;
    for tenant in tenants {
        for entry in store.records(&tenant, 0)? {
            let (seq, value) = entry?;
            let framed = unframe(&value).map_err(|reason| ExportError::Unreadable {
                tenant: tenant.clone(),
                seq,
                reason,
            })?;
            let header = &framed.header;
            if filter.since_ms.is_some_and(|since| header.time_ms < since)
                || filter
                    .trace_id
                    .as_deref()
                    .is_some_and(|trace| header.trace_id != trace)
            {
                continue;
            }
            out.write_all(&value)?;
            out.write_all(b"\n")?;
            printed = printed.saturating_add(1);
        }
    }
    out.flush()?;
    Ok(printed)
}

/// An RFC 3339 date-time (`2025-06-01T12:00:00Z`, any offset) as milliseconds
/// since the Unix epoch.
pub fn parse_rfc3339_ms(text: &str) -> Result<u64, String> {
    let time = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("`{text}` is not an RFC 3339 date-time ({e})"))?;
    u64::try_from(time.timestamp_millis())
        .map_err(|_| format!("`{text}` is before 1970-01-01T00:00:00Z"))
}
