//! Execution slots shared fairly between tenants, then between the users of
//! a tenant.
//!
//! The host has `N` slots (`max_concurrent_calls`). A tenant may hold at most
//! its *share*: `N × its weight / the sum of the weights of the tenants the
//! host knows` (configured ones, plus any seen since), at least 1 and at most
//! `max_concurrent_calls_per_tenant`. A user may hold all of its tenant's
//! share but one (so another user of the tenant always has a slot to wait
//! for), and while other users of the tenant wait, a user already holding
//! `tenant share / active users` of it is passed over if anyone else can go.
//! Waiting calls are served round-robin across tenants, then across users
//! within a tenant, first in first out for one user. A call that cannot get a
//! slot within the queue timeout fails as busy: `Tenant` when its tenant (or
//! user) was at its share, `Host` when every slot was taken.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use super::error::BusyScope;

/// Who a slot is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Owner {
    pub(crate) tenant: String,
    pub(crate) user: String,
}

pub(crate) struct Slots {
    total: usize,
    tenant_cap: usize,
    state: Mutex<State>,
}

struct State {
    free: usize,
    /// Weights of every tenant known to the host; an unknown tenant joins
    /// with weight 1 when first seen.
    weights: HashMap<String, u32>,
    weight_sum: u64,
    tenants: HashMap<String, Tenant>,
    /// Tenants with waiting calls, in serving order.
    ring: VecDeque<String>,
    next_id: u64,
}

#[derive(Default)]
struct Tenant {
    running: usize,
    waiting: usize,
    users: HashMap<String, User>,
    /// Users with waiting calls, in serving order.
    ring: VecDeque<String>,
}

#[derive(Default)]
struct User {
    running: usize,
    queue: VecDeque<Waiter>,
}

struct Waiter {
    id: u64,
    send: oneshot::Sender<SlotPermit>,
}

/// One slot, held for the duration of a call; dropping it frees the slot and
/// hands it to the next waiting call.
pub(crate) struct SlotPermit {
    slots: Arc<Slots>,
    owner: Owner,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let grants = {
            let mut st = self.slots.lock();
            st.free = st.free.saturating_add(1);
            if let Some(t) = st.tenants.get_mut(&self.owner.tenant) {
                t.running = t.running.saturating_sub(1);
                if let Some(u) = t.users.get_mut(&self.owner.user) {
                    u.running = u.running.saturating_sub(1);
                }
            }
            st.tidy(&self.owner);
            self.slots.dispatch(&mut st)
        };
        send(grants);
    }
}

/// Hand out grants outside the lock: a grant whose receiver is gone drops
/// its permit, which frees the slot again.
fn send(grants: Vec<(oneshot::Sender<SlotPermit>, SlotPermit)>) {
    for (to, permit) in grants {
        let _ = to.send(permit);
    }
}

impl State {
    /// Forget a user or tenant that has nothing running or waiting.
    fn tidy(&mut self, owner: &Owner) {
        let Some(t) = self.tenants.get_mut(&owner.tenant) else {
            return;
        };
        if t.users
            .get(&owner.user)
            .is_some_and(|u| u.running == 0 && u.queue.is_empty())
        {
            t.users.remove(&owner.user);
        }
        if t.users.get(&owner.user).is_none_or(|u| u.queue.is_empty()) {
            t.ring.retain(|u| u != &owner.user);
        }
        if t.waiting == 0 {
            self.ring.retain(|x| x != &owner.tenant);
        }
        if t.running == 0 && t.waiting == 0 {
            self.tenants.remove(&owner.tenant);
        }
    }
}

impl Slots {
    pub(crate) fn new(total: usize, tenant_cap: usize, weights: &BTreeMap<String, u32>) -> Self {
        let weights: HashMap<String, u32> = weights
            .iter()
            .map(|(t, w)| (t.clone(), (*w).max(1)))
            .collect();
        let weight_sum = weights.values().map(|w| u64::from(*w)).sum();
        Slots {
            total,
            tenant_cap,
            state: Mutex::new(State {
                free: total,
                weights,
                weight_sum,
                tenants: HashMap::new(),
                ring: VecDeque::new(),
                next_id: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most slots `tenant` may hold.
    fn tenant_share(&self, st: &State, tenant: &str) -> usize {
        let weight = u64::from(st.weights.get(tenant).copied().unwrap_or(1));
        let sum = st.weight_sum.max(weight).max(1);
        let share = (self.total as u64).saturating_mul(weight) / sum;
        usize::try_from(share)
            .unwrap_or(usize::MAX)
            .clamp(1, self.tenant_cap.max(1))
    }

    /// The most slots one user may hold when the tenant's share is `share`.
    fn user_cap(share: usize) -> usize {
        share.saturating_sub(1).max(1)
    }

    /// Wait up to `wait` for a slot for `owner`.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        owner: Owner,
        wait: Duration,
    ) -> Result<SlotPermit, BusyScope> {
        let (id, mut receive, grants) = {
            let mut st = self.lock();
            // The host's own work (describing at load) joins no share.
            if !owner.tenant.is_empty() && !st.weights.contains_key(&owner.tenant) {
                st.weights.insert(owner.tenant.clone(), 1);
                st.weight_sum = st.weight_sum.saturating_add(1);
            }
            let id = st.next_id;
            st.next_id = st.next_id.wrapping_add(1);
            let (send, receive) = oneshot::channel();
            let t = st.tenants.entry(owner.tenant.clone()).or_default();
            t.waiting = t.waiting.saturating_add(1);
            let u = t.users.entry(owner.user.clone()).or_default();
            u.queue.push_back(Waiter { id, send });
            if u.queue.len() == 1 {
                t.ring.push_back(owner.user.clone());
            }
            if t.waiting == 1 {
                st.ring.push_back(owner.tenant.clone());
            }
            let grants = self.dispatch(&mut st);
            (id, receive, grants)
        };
        send(grants);
        let mut waiting = Waiting {
            slots: self,
            owner: &owner,
            id,
            done: false,
        };
        if let Ok(Ok(permit)) = tokio::time::timeout(wait, &mut receive).await {
            waiting.done = true;
            return Ok(permit);
        }
        // Timed out: leave the queue, unless the slot was granted meanwhile.
        let scope = {
            let mut st = self.lock();
            waiting.done = true;
            if waiting.cancel(&mut st) {
                let share = self.tenant_share(&st, &owner.tenant);
                let (tenant_running, user_running) =
                    st.tenants.get(&owner.tenant).map_or((0, 0), |t| {
                        (t.running, t.users.get(&owner.user).map_or(0, |u| u.running))
                    });
                st.tidy(&owner);
                Some(
                    if tenant_running >= share || user_running >= Self::user_cap(share) {
                        BusyScope::Tenant
                    } else {
                        BusyScope::Host
                    },
                )
            } else {
                None
            }
        };
        match scope {
            Some(scope) => Err(scope),
            // The grant is being sent (outside the lock): take it.
            None => receive.await.map_err(|_| BusyScope::Host),
        }
    }

    /// Grant free slots to waiting calls: round-robin over tenants, first
    /// preferring users under their part of the tenant's share, then anyone
    /// within the caps.
    fn dispatch(
        self: &Arc<Self>,
        st: &mut State,
    ) -> Vec<(oneshot::Sender<SlotPermit>, SlotPermit)> {
        let mut grants = Vec::new();
        for strict in [true, false] {
            let mut misses = 0;
            while st.free > 0 && misses < st.ring.len() {
                let Some(tenant) = st.ring.pop_front() else {
                    break;
                };
                match self.serve(st, &tenant, strict) {
                    Some(grant) => {
                        grants.push(grant);
                        misses = 0;
                    }
                    None => misses += 1,
                }
                if st.tenants.get(&tenant).is_some_and(|t| t.waiting > 0) {
                    st.ring.push_back(tenant);
                }
            }
        }
        grants
    }

    /// Give one slot to a waiting call of `tenant`, if its share allows.
    fn serve(
        self: &Arc<Self>,
        st: &mut State,
        tenant: &str,
        strict: bool,
    ) -> Option<(oneshot::Sender<SlotPermit>, SlotPermit)> {
        let share = self.tenant_share(st, tenant);
        let t = st.tenants.get_mut(tenant)?;
        if t.running >= share || t.waiting == 0 {
            return None;
        }
        let user_cap = Self::user_cap(share);
        let soft = (share / t.users.len().max(1)).max(1);
        let others_wait = t.ring.len() > 1;
        let mut chosen = None;
        for _ in 0..t.ring.len() {
            let user = t.ring.pop_front()?;
            let running = t.users.get(&user).map_or(0, |u| u.running);
            let fits = running < user_cap && (!strict || !others_wait || running < soft);
            if fits && chosen.is_none() {
                chosen = Some(user);
            } else {
                t.ring.push_back(user);
            }
        }
        let user = chosen?;
        let u = t.users.get_mut(&user)?;
        let waiter = u.queue.pop_front()?;
        u.running = u.running.saturating_add(1);
        if !u.queue.is_empty() {
            t.ring.push_back(user.clone());
        }
        t.running = t.running.saturating_add(1);
        t.waiting = t.waiting.saturating_sub(1);
        st.free = st.free.saturating_sub(1);
        let permit = SlotPermit {
            slots: self.clone(),
            owner: Owner {
                tenant: tenant.to_string(),
                user,
            },
        };
        Some((waiter.send, permit))
    }
}

/// A call in the queue; leaves it if the waiting future is dropped.
struct Waiting<'a> {
    slots: &'a Arc<Slots>,
    owner: &'a Owner,
    id: u64,
    done: bool,
}

impl Waiting<'_> {
    /// Take this call out of the queue; false if it was already granted.
    fn cancel(&self, st: &mut State) -> bool {
        let Some(t) = st.tenants.get_mut(&self.owner.tenant) else {
            return false;
        };
        let Some(u) = t.users.get_mut(&self.owner.user) else {
            return false;
        };
        let Some(at) = u.queue.iter().position(|w| w.id == self.id) else {
            return false;
        };
        u.queue.remove(at);
        t.waiting = t.waiting.saturating_sub(1);
        true
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut st = self.slots.lock();
        if self.cancel(&mut st) {
            st.tidy(self.owner);
        }
        // Otherwise a grant is in flight: its permit is dropped with the
        // receiver and frees the slot.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(t: &str, u: &str) -> Owner {
        Owner {
            tenant: t.into(),
            user: u.into(),
        }
    }

    const WAIT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_tenant_holds_at_most_its_share() {
        let weights = BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 1)]);
        let slots = Arc::new(Slots::new(4, 4, &weights));
        let a1 = slots.acquire(owner("a", "x"), WAIT).await.unwrap();
        let _a2 = slots.acquire(owner("a", "y"), WAIT).await.unwrap();
        assert_eq!(
            slots.acquire(owner("a", "z"), WAIT).await.err(),
            Some(BusyScope::Tenant)
        );
        let _b1 = slots.acquire(owner("b", "x"), WAIT).await.unwrap();
        let _b2 = slots.acquire(owner("b", "y"), WAIT).await.unwrap();
        drop(a1);
        let _a3 = slots.acquire(owner("a", "z"), WAIT).await.unwrap();
        let st = slots.lock();
        assert_eq!(st.free, 0);
    }

    #[tokio::test]
    async fn one_user_leaves_a_slot_for_the_others_of_its_tenant() {
        let slots = Arc::new(Slots::new(8, 3, &BTreeMap::new()));
        let _x1 = slots.acquire(owner("a", "x"), WAIT).await.unwrap();
        let _x2 = slots.acquire(owner("a", "x"), WAIT).await.unwrap();
        assert_eq!(
            slots.acquire(owner("a", "x"), WAIT).await.err(),
            Some(BusyScope::Tenant)
        );
        let _y = slots.acquire(owner("a", "y"), WAIT).await.unwrap();
    }

    #[tokio::test]
    async fn a_full_host_serves_waiters_round_robin_and_forgets_cancelled_ones() {
        let slots = Arc::new(Slots::new(1, 1, &BTreeMap::new()));
        let held = slots.acquire(owner("a", "x"), WAIT).await.unwrap();
        assert_eq!(
            slots.acquire(owner("b", "x"), WAIT).await.err(),
            Some(BusyScope::Host)
        );
        let waiting = {
            let slots = slots.clone();
            tokio::spawn(async move {
                slots
                    .acquire(owner("b", "y"), Duration::from_secs(5))
                    .await
                    .is_ok()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiting.await.unwrap());
        let st = slots.lock();
        assert_eq!(st.free, 1);
        assert!(st.tenants.is_empty() && st.ring.is_empty());
    }
}
