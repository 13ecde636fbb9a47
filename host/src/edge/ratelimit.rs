//! Request rate limits per tenant and per user (`[tenants.T.rate_limit]`),
//! checked by the guard once the principal is known and before anything
//! reaches the protocol layer or a guest.
//!
//! Each limit is a token bucket kept as GCRA state: one "theoretical arrival
//! time" (`tat`) per bucket. A request at `now` is allowed when
//! `tat - now <= (burst - 1) × interval`, and then moves `tat` to
//! `max(tat, now) + interval`. A bucket whose `tat` has passed is exactly a
//! full bucket, so forgetting it changes nothing: idle users' buckets are
//! dropped by a sweep at most once a minute, and the per-tenant table is
//! bounded (at the bound, idle buckets go first, then the quarter closest to
//! idle). Users are keyed by a keyed hash of (issuer, subject) — the tenant
//! has its own table — so the table holds no identities.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::{Rate, RateLimit};

/// Most users with a bucket per tenant.
const MAX_USERS: usize = 100_000;
/// How often idle users' buckets are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The user's own limit.
    User,
    /// The tenant's limit for all its users together.
    Tenant,
}

impl Scope {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Tenant => "tenant",
        }
    }
}

/// A refusal: which limit, and when a request would be allowed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limited {
    pub scope: Scope,
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds, rounded up, at least 1 (for `Retry-After`).
    pub(crate) fn retry_after_s(&self) -> u64 {
        self.retry_after
            .as_secs()
            .saturating_add(u64::from(self.retry_after.subsec_nanos() > 0))
            .max(1)
    }
}

/// GCRA: whether a request at `now` conforms to `rate` given `tat`; the new
/// `tat` if so, the wait if not.
fn conform(tat: Option<Instant>, rate: Rate, now: Instant) -> Result<Instant, Duration> {
    let tat = tat.map_or(now, |t| t.max(now));
    let tolerance = rate.interval.saturating_mul(rate.burst.saturating_sub(1));
    let ahead = tat.saturating_duration_since(now);
    if ahead > tolerance {
        return Err(ahead.saturating_sub(tolerance));
    }
    Ok(tat.checked_add(rate.interval).unwrap_or(tat))
}

struct State {
    tenant: Option<Instant>,
    users: HashMap<u64, Instant>,
    last_sweep: Instant,
}

/// One tenant's limits and buckets.
pub(crate) struct TenantLimiter {
    limits: RateLimit,
    hasher: RandomState,
    state: Mutex<State>,
}

impl TenantLimiter {
    /// `None` when `limits` limits nothing.
    pub(crate) fn new(limits: RateLimit) -> Option<Self> {
        if limits.tenant.is_none() && limits.per_user.is_none() {
            return None;
        }
        Some(TenantLimiter {
            limits,
            hasher: RandomState::new(),
            state: Mutex::new(State {
                tenant: None,
                users: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        })
    }

    /// Count one request of the user (`issuer`, `subject`) now, or refuse
    /// it. A refused request takes nothing from either bucket.
    pub(crate) fn check(&self, issuer: &str, subject: &str) -> Result<(), Limited> {
        self.check_at(issuer, subject, Instant::now())
    }

    fn check_at(&self, issuer: &str, subject: &str, now: Instant) -> Result<(), Limited> {
        let user = self.hasher.hash_one((issuer, subject));
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let user_tat = match self.limits.per_user {
            None => None,
            Some(rate) => Some(conform(state.users.get(&user).copied(), rate, now).map_err(
                |wait| Limited {
                    scope: Scope::User,
                    retry_after: wait,
                },
            )?),
        };
        if let Some(rate) = self.limits.tenant {
            state.tenant = Some(conform(state.tenant, rate, now).map_err(|wait| Limited {
                scope: Scope::Tenant,
                retry_after: wait,
            })?);
        }
        if let Some(tat) = user_tat {
            if !state.users.contains_key(&user) {
                make_room(&mut state, now);
            }
            state.users.insert(user, tat);
        }
        Ok(())
    }

    #[cfg(test)]
    fn users(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .users
            .len()
    }
}

/// Drop idle buckets (those whose `tat` has passed: full, as if new) once a
/// minute, and make room for one more at the bound.
fn make_room(state: &mut State, now: Instant) {
    if now.saturating_duration_since(state.last_sweep) >= SWEEP_EVERY
        || state.users.len() >= MAX_USERS
    {
        state.users.retain(|_, tat| *tat > now);
        state.last_sweep = now;
    }
    if state.users.len() >= MAX_USERS {
        // All busy: forget the quarter closest to full (the least lenient
        // loss), so this runs once per MAX_USERS / 4 new users at most.
        let mut tats: Vec<Instant> = state.users.values().copied().collect();
        let cut = tats.len() / 4;
        let (_, threshold, _) = tats.select_nth_unstable(cut);
        let threshold = *threshold;
        state.users.retain(|_, tat| *tat > threshold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: u64, burst: u32) -> Rate {
        Rate {
            interval: Duration::from_secs(1) / u32::try_from(per_second).unwrap(),
            burst,
        }
    }

    #[test]
    fn a_user_gets_the_burst_then_waits_for_tokens() {
        let limiter = TenantLimiter::new(RateLimit {
            tenant: None,
            per_user: Some(rate(1, 3)),
        })
        .unwrap();
        let now = Instant::now();
        for _ in 0..3 {
            limiter.check_at("iss", "alice", now).unwrap();
        }
        let refused = limiter.check_at("iss", "alice", now).unwrap_err();
        assert_eq!(refused.scope, Scope::User);
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        assert_eq!(refused.retry_after_s(), 1);
        // Another user, and the same subject at another issuer, are others.
        limiter.check_at("iss", "bob", now).unwrap();
        limiter.check_at("other", "alice", now).unwrap();
        // One token back after one interval.
        let later = now + Duration::from_secs(1);
        limiter.check_at("iss", "alice", later).unwrap();
        assert!(limiter.check_at("iss", "alice", later).is_err());
    }

    #[test]
    fn the_tenant_limit_counts_everyone_and_a_refusal_takes_nothing() {
        let limiter = TenantLimiter::new(RateLimit {
            tenant: Some(rate(2, 2)),
            per_user: Some(rate(1, 1)),
        })
        .unwrap();
        let now = Instant::now();
        limiter.check_at("iss", "a", now).unwrap();
        // Refused by its own limit: the tenant's bucket is untouched.
        assert_eq!(
            limiter.check_at("iss", "a", now).unwrap_err().scope,
            Scope::User
        );
        limiter.check_at("iss", "b", now).unwrap();
        let refused = limiter.check_at("iss", "c", now).unwrap_err();
        assert_eq!(refused.scope, Scope::Tenant);
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert_eq!(refused.retry_after_s(), 1);
        // `c` was refused by the tenant: its own bucket is still full.
        limiter
            .check_at("iss", "c", now + Duration::from_millis(500))
            .unwrap();
    }

    #[test]
    fn idle_buckets_are_forgotten_and_the_table_is_bounded() {
        let limiter = TenantLimiter::new(RateLimit {
            tenant: None,
            per_user: Some(rate(1, 1)),
        })
        .unwrap();
        let now = Instant::now();
        for i in 0..10 {
            limiter.check_at("iss", &i.to_string(), now).unwrap();
        }
        assert_eq!(limiter.users(), 10);
        limiter
            .check_at("iss", "late", now + SWEEP_EVERY + Duration::from_secs(1))
            .unwrap();
        assert_eq!(limiter.users(), 1);
        for i in 0..(MAX_USERS + 10) {
            limiter
                .check_at("iss", &format!("u{i}"), now + SWEEP_EVERY * 2)
                .unwrap();
        }
        assert!(limiter.users() <= MAX_USERS);
    }

    #[test]
    fn nothing_configured_is_no_limiter() {
        assert!(TenantLimiter::new(RateLimit::default()).is_none());
    }
}
