//! Legacy MCP sessions are bound to the principal that created them, so a
//! session id presented with another user's token is refused.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Principal;

/// Bindings older than this are forgotten (the session manager expires
/// sessions long before).
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Most bindings kept; the oldest are pruned first.
const MAX_BINDINGS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    tenant: String,
    issuer: String,
    subject: String,
    client_id: Option<String>,
}

impl Owner {
    fn of(p: &Principal) -> Self {
        Owner {
            tenant: p.tenant().to_string(),
            issuer: p.issuer().to_string(),
            subject: p.subject().to_string(),
            client_id: p.client_id().map(str::to_string),
        }
    }
}

#[derive(Default)]
pub(super) struct SessionBindings {
    owners: Mutex<HashMap<String, (Owner, Instant)>>,
}

impl SessionBindings {
    pub(super) fn bind(&self, session: &str, principal: &Principal) {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        if owners.len() >= MAX_BINDINGS {
            owners.retain(|_, (_, at)| at.elapsed() < MAX_AGE);
            if owners.len() >= MAX_BINDINGS
                && let Some(oldest) = owners
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
            {
                owners.remove(&oldest);
            }
        }
        owners.insert(session.to_string(), (Owner::of(principal), Instant::now()));
    }

    /// Whether `principal` may use `session`: only its creator may. A session
    /// id with no binding is refused like an unknown one (fail closed): the
    /// host binds every session it issues, so an unbound id was never issued
    /// to this caller, or its binding is gone.
    pub(super) fn allows(&self, session: &str, principal: &Principal) -> bool {
        let owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        match owners.get(session) {
            Some((owner, _)) => *owner == Owner::of(principal),
            None => false,
        }
    }

    /// Whether the host issued `session` (and has not forgotten it).
    pub(super) fn is_bound(&self, session: &str) -> bool {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(session)
    }

    pub(super) fn forget(&self, session: &str) {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(session);
    }
}
