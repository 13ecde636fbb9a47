//! The states already answered, so that each `requestState` opens once.
//!
//! An entry is the state's expiry (big-endian seconds) followed by its
//! nonce: entries sort by expiry, so the expired ones are always at the
//! front and are dropped a few at a time as new ones arrive. The ledger
//! lives in the host's database (a restart does not reopen answered states)
//! or, for a host without one, in memory.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::storage::Tree;

/// Bytes of an entry: expiry, then the state's nonce.
pub(super) const ENTRY_LEN: usize = 8 + super::NONCE_LEN;
/// The most states answered within their lifetime the host remembers; past
/// it, further rounds are refused until older states expire.
pub const MAX_SPENT: usize = 1_000_000;
/// Expired entries dropped per claim (amortised clean-up).
const PURGE_PER_CLAIM: usize = 16;

/// An answered state, as the ledger keys it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket([u8; ENTRY_LEN]);

impl Ticket {
    pub(super) fn new(exp: u64, nonce: &[u8]) -> Option<Self> {
        let mut entry = [0u8; ENTRY_LEN];
        let (head, tail) = entry.split_at_mut(8);
        head.copy_from_slice(&exp.to_be_bytes());
        if tail.len() != nonce.len() {
            return None;
        }
        tail.copy_from_slice(nonce);
        Some(Ticket(entry))
    }
}

/// Why a state could not be marked answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClaimError {
    /// It was answered before.
    Spent,
    /// The ledger holds [`MAX_SPENT`] live entries.
    Full,
    /// The database failed (logged).
    Unavailable,
}

#[derive(Clone)]
enum Store {
    Memory(Arc<std::sync::Mutex<BTreeSet<[u8; ENTRY_LEN]>>>),
    Stored { tree: Tree, count: Arc<AtomicUsize> },
}

/// The ledger of answered states. Cheap to share.
#[derive(Clone)]
pub(super) struct Ledger {
    store: Store,
    cap: usize,
}

impl Ledger {
    pub(super) fn memory() -> Self {
        Ledger {
            store: Store::Memory(Arc::default()),
            cap: MAX_SPENT,
        }
    }

    pub(super) fn stored(tree: Tree) -> Self {
        let count = Arc::new(AtomicUsize::new(tree.count()));
        Ledger {
            store: Store::Stored { tree, count },
            cap: MAX_SPENT,
        }
    }

    #[cfg(test)]
    pub(super) fn with_cap(mut self, cap: usize) -> Self {
        self.cap = cap;
        self
    }

    /// Mark `ticket` answered, unless it was before; `now` in seconds.
    pub(super) fn claim(&self, ticket: Ticket, now: u64) -> Result<(), ClaimError> {
        // Entries expiring before `now` sort before this bound.
        let expired = now.to_be_bytes();
        match &self.store {
            Store::Memory(set) => {
                let mut set = set.lock().map_err(|_| ClaimError::Unavailable)?;
                for _ in 0..PURGE_PER_CLAIM {
                    match set.first() {
                        Some(first) if first.as_slice() < expired.as_slice() => {
                            set.pop_first();
                        }
                        _ => break,
                    }
                }
                if set.contains(&ticket.0) {
                    return Err(ClaimError::Spent);
                }
                if set.len() >= self.cap {
                    return Err(ClaimError::Full);
                }
                set.insert(ticket.0);
                Ok(())
            }
            Store::Stored { tree, count } => {
                let unavailable = |e: crate::storage::StorageError| {
                    tracing::error!(error = %e, "answered input rounds cannot be recorded");
                    ClaimError::Unavailable
                };
                let purged = tree
                    .remove_below_raw(&expired, PURGE_PER_CLAIM)
                    .map_err(unavailable)?;
                let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                    Some(c.saturating_sub(purged))
                });
                if tree.get_raw(&ticket.0).map_err(unavailable)?.is_some() {
                    return Err(ClaimError::Spent);
                }
                if count.load(Ordering::Relaxed) >= self.cap {
                    return Err(ClaimError::Full);
                }
                // Atomic: of two retries racing with one state, one wins.
                // Not flushed here (the edge's threads must not wait for the
                // disk): a crash within sled's flush interval may forget it.
                if !tree.insert_new_raw(&ticket.0, &[]).map_err(unavailable)? {
                    return Err(ClaimError::Spent);
                }
                count.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Forget `ticket`: the round it opened did no work (the host was busy),
    /// so the client may send the state again.
    pub(super) fn release(&self, ticket: Ticket) {
        match &self.store {
            Store::Memory(set) => {
                if let Ok(mut set) = set.lock() {
                    set.remove(&ticket.0);
                }
            }
            Store::Stored { tree, count } => match tree.remove_unflushed_raw(&ticket.0) {
                Ok(true) => {
                    let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                        Some(c.saturating_sub(1))
                    });
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "an input round could not be released"),
            },
        }
    }
}
