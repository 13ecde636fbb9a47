//! Legacy MCP sessions are bound to the principal that created them, so a
//! session id presented with another user's token is refused; and they are
//! capped per user (the least recently used ends first) and in total, and
//! end when idle, so one token cannot fill the host with sessions.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::Principal;
pub use crate::config::SessionLimits;

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

    fn same_user(&self, other: &Owner) -> bool {
        self.tenant == other.tenant && self.issuer == other.issuer && self.subject == other.subject
    }
}

struct Binding {
    owner: Owner,
    last_used: Instant,
}

pub(super) struct SessionBindings {
    limits: SessionLimits,
    owners: Mutex<HashMap<String, Binding>>,
}

impl Default for SessionBindings {
    fn default() -> Self {
        Self::new(SessionLimits::default())
    }
}

impl SessionBindings {
    pub(super) fn new(limits: SessionLimits) -> Self {
        SessionBindings {
            limits,
            owners: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Binding>> {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bind a session the host just created to its creator. Returns the
    /// sessions that must end now: idle ones, and the creator's least
    /// recently used ones beyond the per-user cap.
    pub(super) fn bind(&self, session: &str, principal: &Principal) -> Vec<String> {
        let now = Instant::now();
        let owner = Owner::of(principal);
        let mut owners = self.lock();
        let mut ended: Vec<String> = owners
            .iter()
            .filter(|(_, b)| now.duration_since(b.last_used) >= self.limits.idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ended {
            owners.remove(id);
        }
        let mut mine: Vec<(String, Instant)> = owners
            .iter()
            .filter(|(_, b)| b.owner.same_user(&owner))
            .map(|(id, b)| (id.clone(), b.last_used))
            .collect();
        if mine.len() >= self.limits.per_user {
            mine.sort_by_key(|(_, used)| *used);
            let excess = mine.len() + 1 - self.limits.per_user;
            for (id, _) in mine.into_iter().take(excess) {
                owners.remove(&id);
                ended.push(id);
            }
        }
        owners.insert(
            session.to_string(),
            Binding {
                owner,
                last_used: now,
            },
        );
        ended
    }

    /// Whether a new session may be created: fewer than the total cap are
    /// live (idle ones do not count).
    pub(super) fn has_room(&self) -> bool {
        let now = Instant::now();
        let owners = self.lock();
        owners.len() < self.limits.total
            || owners
                .values()
                .filter(|b| now.duration_since(b.last_used) < self.limits.idle)
                .count()
                < self.limits.total
    }

    /// Whether `principal` may use `session`: only its creator may, and only
    /// while it lives. A session id with no live binding is refused like an
    /// unknown one (fail closed). Using a session makes it recently used.
    pub(super) fn allows(&self, session: &str, principal: &Principal) -> bool {
        let now = Instant::now();
        let mut owners = self.lock();
        match owners.get_mut(session) {
            Some(b) if now.duration_since(b.last_used) >= self.limits.idle => {
                owners.remove(session);
                false
            }
            Some(b) if b.owner == Owner::of(principal) => {
                b.last_used = now;
                true
            }
            _ => false,
        }
    }

    /// Whether the host issued `session` (and it lives).
    pub(super) fn is_bound(&self, session: &str) -> bool {
        self.lock().contains_key(session)
    }

    pub(super) fn forget(&self, session: &str) {
        self.lock().remove(session);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::envelope::ActorKind;
    use std::time::Duration;

    fn principal(subject: &str) -> Principal {
        Principal::new(
            "acme".into(),
            "https://issuer.example".into(),
            subject.into(),
            ActorKind::User,
            Some("client".into()),
            None,
            Default::default(),
            "token".into(),
        )
    }

    #[test]
    fn the_least_recently_used_session_of_a_user_ends_past_the_cap() {
        let b = SessionBindings::new(SessionLimits {
            per_user: 3,
            ..SessionLimits::default()
        });
        let alice = principal("alice");
        for id in ["s1", "s2", "s3"] {
            assert!(b.bind(id, &alice).is_empty());
        }
        // s1 was used last, so s2 is the least recently used.
        assert!(b.allows("s1", &alice));
        assert_eq!(b.bind("s4", &alice), vec!["s2".to_string()]);
        assert!(!b.allows("s2", &alice), "an ended session answers 404");
        assert!(b.allows("s1", &alice) && b.allows("s3", &alice) && b.allows("s4", &alice));
        // Another user's sessions do not count against alice's.
        assert!(b.bind("b1", &principal("bob")).is_empty());
        assert!(!b.allows("b1", &alice));
    }

    #[test]
    fn idle_sessions_end_and_free_room() {
        let b = SessionBindings::new(SessionLimits {
            per_user: 32,
            total: 2,
            idle: Duration::from_millis(50),
        });
        let alice = principal("alice");
        b.bind("s1", &alice);
        b.bind("s2", &principal("bob"));
        assert!(!b.has_room());
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.has_room(), "idle sessions do not count");
        assert!(!b.allows("s1", &alice), "an idle session has ended");
        let ended = b.bind("s3", &alice);
        assert_eq!(ended, vec!["s2".to_string()]);
    }

    #[test]
    fn unknown_or_forgotten_ids_are_refused() {
        let b = SessionBindings::default();
        let alice = principal("alice");
        assert!(!b.allows("never-issued", &alice));
        b.bind("s1", &alice);
        b.forget("s1");
        assert!(!b.allows("s1", &alice));
    }
}
