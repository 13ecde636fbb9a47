//! The states already answered, so that each `requestState` opens once.
//!
//! An entry is the state's expiry (big-endian seconds) followed by its
//! nonce, holding a digest of the user it was issued to: entries sort by
//! expiry, so the expired ones are always at the front and are dropped a
//! few at a time as new ones arrive. The ledger lives in the host's database
//! (a restart does not reopen answered states) or, for a host without one,
//! in memory. Live entries are counted per user and in total, and both
//! counts are capped, so one user cannot fill it for everyone.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::storage::Tree;

/// Bytes of an entry's key: expiry, then the state's nonce.
pub(super) const ENTRY_LEN: usize = 8 + super::NONCE_LEN;
/// Bytes of the digest naming the user a state was issued to.
pub(super) const OWNER_LEN: usize = 16;
/// The most answered states the host remembers; past it, further rounds are
/// refused until older states expire.
pub const MAX_SPENT: usize = 1_000_000;
/// The most answered states remembered for one user (tenant, issuer and
/// subject): a person answers a few; only a script answers thousands.
pub const MAX_SPENT_PER_USER: usize = 10_000;
/// Expired entries dropped per claim (amortised clean-up).
const PURGE_PER_CLAIM: usize = 16;
/// Entries are kept this long past their state's expiry, so that a clock
/// stepped back by less than this cannot reopen an answered state.
const PURGE_GRACE_SECS: u64 = super::ROUND_TTL.as_secs();

type Owner = [u8; OWNER_LEN];

/// An answered state, as the ledger keys it, and whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    entry: [u8; ENTRY_LEN],
    owner: Owner,
}

impl Ticket {
    pub(super) fn new(exp: u64, nonce: &[u8], owner: Owner) -> Option<Self> {
        let mut entry = [0u8; ENTRY_LEN];
        let (head, tail) = entry.split_at_mut(8);
        head.copy_from_slice(&exp.to_be_bytes());
        if tail.len() != nonce.len() {
            return None;
        }
        tail.copy_from_slice(nonce);
        Some(Ticket { entry, owner })
    }
}

/// Why a state could not be marked answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClaimError {
    /// It was answered before.
    Spent,
    /// The ledger holds its most live entries, in total or for this user.
    Full,
    /// The database failed (logged).
    Unavailable,
}

enum Store {
    Memory(BTreeMap<[u8; ENTRY_LEN], Owner>),
    Stored(Tree),
}

/// Live entries, in total and per user.
#[derive(Default)]
struct Counts {
    total: usize,
    per_owner: HashMap<Owner, usize>,
}

impl Counts {
    fn add(&mut self, owner: Owner) {
        self.total = self.total.saturating_add(1);
        let n = self.per_owner.entry(owner).or_default();
        *n = n.saturating_add(1);
    }

    fn remove(&mut self, owner: &[u8]) {
        self.total = self.total.saturating_sub(1);
        let Ok(owner) = Owner::try_from(owner) else {
            return;
        };
        if let Some(n) = self.per_owner.get_mut(&owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_owner.remove(&owner);
            }
        }
    }

    fn of(&self, owner: &Owner) -> usize {
        self.per_owner.get(owner).copied().unwrap_or(0)
    }
}

struct Inner {
    store: Store,
    counts: Counts,
}

/// The ledger of answered states. Cheap to share. Claims take one lock
/// (rounds are rare next to calls; nothing in it waits for the disk).
#[derive(Clone)]
pub(super) struct Ledger {
    inner: Arc<Mutex<Inner>>,
    cap: usize,
    per_user_cap: usize,
}

fn unavailable(e: crate::storage::StorageError) -> ClaimError {
    tracing::error!(error = %e, "answered input rounds cannot be recorded");
    ClaimError::Unavailable
}

impl Ledger {
    fn with(store: Store, counts: Counts) -> Self {
        Ledger {
            inner: Arc::new(Mutex::new(Inner { store, counts })),
            cap: MAX_SPENT,
            per_user_cap: MAX_SPENT_PER_USER,
        }
    }

    pub(super) fn memory() -> Self {
        Self::with(Store::Memory(BTreeMap::new()), Counts::default())
    }

    /// The ledger in `tree`, counting what it already holds (read once, at
    /// start). An unreadable tree starts the count at zero (logged).
    pub(super) fn stored(tree: Tree) -> Self {
        let mut counts = Counts::default();
        match tree.scan_prefix_raw(&[]) {
            Ok(entries) => {
                for (_, owner) in entries {
                    match Owner::try_from(owner.as_slice()) {
                        Ok(owner) => counts.add(owner),
                        Err(_) => counts.total = counts.total.saturating_add(1),
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "answered input rounds could not be counted"),
        }
        Self::with(Store::Stored(tree), counts)
    }

    #[cfg(test)]
    pub(super) fn with_caps(mut self, cap: usize, per_user_cap: usize) -> Self {
        self.cap = cap;
        self.per_user_cap = per_user_cap;
        self
    }

    /// Mark `ticket` answered, unless it was before; `now` in seconds.
    pub(super) fn claim(&self, ticket: Ticket, now: u64) -> Result<(), ClaimError> {
        let mut inner = self.inner.lock().map_err(|_| ClaimError::Unavailable)?;
        let Inner { store, counts } = &mut *inner;
        // Entries that expired over the grace period ago sort before this.
        let bound = now.saturating_sub(PURGE_GRACE_SECS).to_be_bytes();
        match store {
            Store::Memory(map) => {
                for _ in 0..PURGE_PER_CLAIM {
                    match map.first_key_value() {
                        Some((first, _)) if first.as_slice() < bound.as_slice() => {
                            if let Some((_, owner)) = map.pop_first() {
                                counts.remove(&owner);
                            }
                        }
                        _ => break,
                    }
                }
                if map.contains_key(&ticket.entry) {
                    return Err(ClaimError::Spent);
                }
            }
            Store::Stored(tree) => {
                for (_, owner) in tree
                    .remove_below_raw(&bound, PURGE_PER_CLAIM)
                    .map_err(unavailable)?
                {
                    counts.remove(&owner);
                }
                if tree.get_raw(&ticket.entry).map_err(unavailable)?.is_some() {
                    return Err(ClaimError::Spent);
                }
            }
        }
        if counts.total >= self.cap || counts.of(&ticket.owner) >= self.per_user_cap {
            return Err(ClaimError::Full);
        }
        match store {
            Store::Memory(map) => {
                map.insert(ticket.entry, ticket.owner);
            }
            // Not flushed here (the edge's threads must not wait for the
            // disk): a crash within sled's flush interval may forget it.
            Store::Stored(tree) => {
                if !tree
                    .insert_new_raw(&ticket.entry, &ticket.owner)
                    .map_err(unavailable)?
                {
                    return Err(ClaimError::Spent);
                }
            }
        }
        counts.add(ticket.owner);
        Ok(())
    }

    /// Forget `ticket`: the round it opened did no work (the host was busy),
    /// so the client may send the state again.
    pub(super) fn release(&self, ticket: Ticket) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Inner { store, counts } = &mut *inner;
        let removed = match store {
            Store::Memory(map) => map.remove(&ticket.entry).is_some(),
            Store::Stored(tree) => match tree.remove_unflushed_raw(&ticket.entry) {
                Ok(removed) => removed,
                Err(e) => {
                    tracing::error!(error = %e, "an input round could not be released");
                    false
                }
            },
        };
        if removed {
            counts.remove(&ticket.owner);
        }
    }
}
