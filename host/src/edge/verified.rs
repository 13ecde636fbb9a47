//! A bounded cache of tokens already verified for a tenant, so a client that
//! sends the same bearer token on every request pays for the signature check
//! once. Keyed by a digest of (tenant, token) — never the token itself —, an
//! entry lives at most [`MAX_AGE`] and never past the token's `exp`.
//!
//! A hit still asks the issuer's key cache for the token's `kid` (answered
//! from memory, starting a refresh when the keys are old), so a key the
//! issuer withdrew stops its tokens as soon as the key cache drops it. What
//! a hit skips is the signature check and claim parsing; the trade-off is
//! that a token's claims are not re-read for up to `MAX_AGE` (they cannot
//! change: the token is the same bytes).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::Principal;

/// Longest an entry is trusted.
pub(super) const MAX_AGE: Duration = Duration::from_secs(60);
/// Most entries; past it expired ones go, then all.
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub(super) struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

struct Entry {
    principal: Principal,
    kid: Option<String>,
    until: Instant,
}

fn key(tenant: &str, token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(token.as_bytes());
    h.finalize().into()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl VerifiedTokens {
    /// The principal `token` was verified as for `tenant` and the `kid` that
    /// signed it, if still fresh.
    pub(super) fn get(&self, tenant: &str, token: &str) -> Option<(Principal, Option<String>)> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(&key(tenant, token))
            .filter(|e| Instant::now() < e.until)
            .map(|e| (e.principal.clone(), e.kid.clone()))
    }

    /// Remember that `token` (expiring at `exp`, Unix seconds) was verified
    /// for `tenant` as `principal`.
    pub(super) fn insert(
        &self,
        tenant: &str,
        token: &str,
        exp: u64,
        kid: Option<String>,
        principal: &Principal,
    ) {
        let left = Duration::from_secs(exp.saturating_sub(unix_now()));
        let life = left.min(MAX_AGE);
        if life.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| now < e.until);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            key(tenant, token),
            Entry {
                principal: principal.clone(),
                kid,
                until: now + life,
            },
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::envelope::ActorKind;

    fn principal(token: &str) -> Principal {
        Principal::new(
            "acme".into(),
            "https://issuer.example".into(),
            "alice".into(),
            ActorKind::User,
            None,
            None,
            Default::default(),
            token.into(),
        )
    }

    #[test]
    fn entries_are_per_tenant_bounded_by_exp_and_age() {
        let cache = VerifiedTokens::default();
        let exp = unix_now() + 3600;
        cache.insert("acme", "t1", exp, None, &principal("t1"));
        assert!(cache.get("acme", "t1").is_some());
        assert!(cache.get("globex", "t1").is_none(), "another tenant");
        assert!(cache.get("acme", "t2").is_none());
        // An expired token is never cached.
        cache.insert(
            "acme",
            "old",
            unix_now().saturating_sub(1),
            None,
            &principal("old"),
        );
        assert!(cache.get("acme", "old").is_none());
        // An entry never outlives MAX_AGE.
        let until = cache
            .entries
            .lock()
            .unwrap()
            .values()
            .map(|e| e.until)
            .max()
            .unwrap();
        assert!(until <= Instant::now() + MAX_AGE);
        // The table stays bounded.
        for i in 0..(MAX_ENTRIES + 10) {
            cache.insert("acme", &format!("x{i}"), exp, None, &principal("x"));
        }
        assert!(cache.entries.lock().unwrap().len() <= MAX_ENTRIES);
    }
}
