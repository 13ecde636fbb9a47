//! Account connect: how a user gives airlock their own token for a
//! third-party provider (`user-token` services), and how airlock keeps it
//! usable.
//!
//! A call that needs a token the user has not connected ends in a **URL
//! elicitation** ([`Connector::begin`]) whose URL is airlock's own connect page
//! carrying only an opaque, single-use, short-lived id bound to (tenant,
//! user, provider). The page (`pages.rs`) signs the browser user in at the
//! tenant's issuer, refuses anyone but the user the link was made for, runs
//! authorization code + PKCE S256 with the provider, and seals the tokens in
//! the vault. [`UserTokens`] (`tokens.rs`) hands them to the broker,
//! refreshing them one refresh at a time per record.

mod oauth;
mod pages;
mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::{Config, ConnectLogin, ProviderConfig, SecretSource};
use crate::delegate::Secret;
use crate::edge::Edge;
use crate::vault::{RecordKey, Vault};

pub use pages::router;
pub use tokens::{AfterUnauthorized, UserTokens};

/// How long a connect link (and each step of its flow) stays usable.
const LINK_LIFETIME: Duration = Duration::from_secs(600);
/// A link with less than this left is not handed out again.
const REUSE_MARGIN: Duration = Duration::from_secs(120);
/// Most connect links and browser flows in flight, each.
const MAX_IN_FLIGHT: usize = 10_000;
/// How long a client may wait for a completion notification.
const WATCH_LIFETIME: Duration = Duration::from_secs(900);

/// A URL-mode elicitation: send the user to `url`, then retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlElicitation {
    /// The elicitation's id (for the completion notification).
    pub id: String,
    /// airlock's connect page for this user and provider.
    pub url: String,
    /// What to tell the user.
    pub message: String,
}

/// Why the connector could not be built.
#[derive(Debug, thiserror::Error)]
#[error("tenants.{tenant}.{key}: {reason}")]
pub struct ConnectError {
    tenant: String,
    key: String,
    reason: String,
}

/// A connect link, waiting for its user.
#[derive(Debug)]
struct Pending {
    key: RecordKey,
    elicitation_id: String,
    expires: Instant,
}

/// One browser flow in progress, by its `state`.
#[derive(Debug)]
enum Flow {
    /// Signing the browser user in at the tenant's issuer.
    Login {
        tenant: String,
        connect_id: String,
        verifier: String,
        browser: [u8; 32],
        expires: Instant,
    },
    /// Consenting at the provider.
    Provider {
        key: RecordKey,
        elicitation_id: String,
        verifier: String,
        browser: [u8; 32],
        expires: Instant,
    },
}

impl Flow {
    fn tenant(&self) -> &str {
        match self {
            Flow::Login { tenant, .. } => tenant,
            Flow::Provider { key, .. } => &key.tenant,
        }
    }

    fn expires(&self) -> Instant {
        match self {
            Flow::Login { expires, .. } | Flow::Provider { expires, .. } => *expires,
        }
    }
}

/// Runs when an elicitation completes; keyed by who waits (a session), so a
/// client that retried waits once.
type Watcher = (String, Box<dyn FnOnce() + Send>);

#[derive(Default)]
struct InFlight {
    /// Connect links by id.
    pending: HashMap<String, Pending>,
    /// Browser flows by `state`.
    flows: HashMap<String, Flow>,
    /// Who waits for which elicitation to complete.
    watchers: HashMap<String, (Instant, Vec<Watcher>)>,
}

struct TenantConnect {
    login: oauth::Client,
    providers: HashMap<String, oauth::Client>,
}

/// The connect flows of every tenant, and the tokens users connected.
pub struct Connector {
    public_url: String,
    secure_cookies: bool,
    tenants: HashMap<String, TenantConnect>,
    edge: Arc<Edge>,
    vault: Arc<Vault>,
    http: reqwest::Client,
    in_flight: Mutex<InFlight>,
    tokens: UserTokens,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("tenants", &self.tenants.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn load_secret(
    source: Option<&SecretSource>,
    vault: &Vault,
    tenant: &str,
) -> Result<Option<Secret>, String> {
    source
        .map(|s| {
            Secret::load(s, &|name| {
                vault.secret(tenant, name).map_err(|e| e.to_string())
            })
        })
        .transpose()
}

fn login_client(c: &ConnectLogin, secret: Option<Secret>) -> oauth::Client {
    oauth::Client {
        authorization_endpoint: c.authorization_endpoint.clone(),
        token_endpoint: c.token_endpoint.clone(),
        client_id: c.client_id.clone(),
        secret,
        scopes: c.scopes.clone(),
    }
}

fn provider_client(p: &ProviderConfig, secret: Option<Secret>) -> oauth::Client {
    oauth::Client {
        authorization_endpoint: p.authorization_endpoint.clone(),
        token_endpoint: p.token_endpoint.clone(),
        client_id: p.client_id.clone(),
        secret,
        scopes: p.scopes.clone(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connector {
    /// The connector for `config`'s tenants, reading client secrets now.
    pub fn new(config: &Config, edge: Arc<Edge>, vault: Arc<Vault>) -> Result<Self, ConnectError> {
        // Token endpoints are the operator's: no redirects, no proxies.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| ConnectError {
                tenant: String::new(),
                key: String::new(),
                reason: e.to_string(),
            })?;
        let mut tenants = HashMap::new();
        for (id, tenant) in &config.tenants {
            let Some(login) = &tenant.connect else {
                continue;
            };
            let fail = |key: String| {
                let tenant = id.clone();
                move |reason: String| ConnectError {
                    tenant,
                    key,
                    reason,
                }
            };
            let secret =
                load_secret(login.secret.as_ref(), &vault, id).map_err(fail("connect".into()))?;
            let mut providers = HashMap::new();
            for (name, provider) in &tenant.providers {
                let secret = load_secret(provider.secret.as_ref(), &vault, id)
                    .map_err(fail(format!("providers.{name}")))?;
                providers.insert(name.clone(), provider_client(provider, secret));
            }
            tenants.insert(
                id.clone(),
                TenantConnect {
                    login: login_client(login, secret),
                    providers,
                },
            );
        }
        let refreshers = tenants
            .iter()
            .flat_map(|(t, c)| {
                c.providers
                    .iter()
                    .map(move |(p, client)| ((t.clone(), p.clone()), client.clone()))
            })
            .collect();
        Ok(Connector {
            public_url: config.public_url.clone(),
            secure_cookies: config.public_url.starts_with("https://"),
            tenants,
            edge,
            tokens: UserTokens::new(vault.clone(), refreshers, http.clone()),
            vault,
            http,
            in_flight: Mutex::new(InFlight::default()),
        })
    }

    /// The vault the tokens are sealed in.
    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// The user's tokens, refreshed as needed.
    pub fn tokens(&self) -> &UserTokens {
        &self.tokens
    }

    /// A connect link for `key`'s user and provider: the same one while it
    /// has time left, else a new one.
    pub fn begin(&self, key: &RecordKey) -> Result<UrlElicitation, String> {
        if !self
            .tenants
            .get(&key.tenant)
            .is_some_and(|t| t.providers.contains_key(&key.provider))
        {
            return Err(format!(
                "provider `{}` cannot be connected in this tenant",
                key.provider
            ));
        }
        let now = Instant::now();
        let mut in_flight = lock(&self.in_flight);
        let reuse = in_flight
            .pending
            .iter()
            .find(|(_, p)| p.key == *key && p.expires > now + REUSE_MARGIN)
            .map(|(id, p)| (id.clone(), p.elicitation_id.clone()));
        let (id, elicitation_id) = match reuse {
            Some(found) => found,
            None => {
                in_flight
                    .pending
                    .retain(|_, p| p.expires > now && p.key != *key);
                if in_flight
                    .pending
                    .values()
                    .filter(|p| p.key.tenant == key.tenant)
                    .count()
                    >= MAX_IN_FLIGHT
                {
                    return Err("too many connect links are open; try again later".into());
                }
                let id = oauth::random_token(32)?;
                let elicitation_id = oauth::random_token(16)?;
                in_flight.pending.insert(
                    id.clone(),
                    Pending {
                        key: key.clone(),
                        elicitation_id: elicitation_id.clone(),
                        expires: now + LINK_LIFETIME,
                    },
                );
                (id, elicitation_id)
            }
        };
        Ok(UrlElicitation {
            id: elicitation_id,
            url: format!("{}/connect/{}/{id}", self.public_url, key.tenant),
            message: format!(
                "Connect your {} account so this tool can act for you there, then try again.",
                key.provider
            ),
        })
    }

    /// Run `done` once the elicitation `id` completes (the user connected),
    /// unless that takes longer than a quarter of an hour. A later watch by
    /// the same `waiter` replaces its earlier one.
    pub fn watch(&self, id: &str, waiter: &str, done: Box<dyn FnOnce() + Send>) {
        let now = Instant::now();
        let mut in_flight = lock(&self.in_flight);
        in_flight.watchers.retain(|_, (expires, _)| *expires > now);
        if in_flight.watchers.len() >= MAX_IN_FLIGHT && !in_flight.watchers.contains_key(id) {
            return;
        }
        let entry = in_flight
            .watchers
            .entry(id.to_string())
            .or_insert_with(|| (now + WATCH_LIFETIME, Vec::new()));
        entry.1.retain(|(w, _)| w != waiter);
        if entry.1.len() < 16 {
            entry.1.push((waiter.to_string(), done));
        }
    }

    fn complete(&self, elicitation_id: &str) {
        let watchers = lock(&self.in_flight).watchers.remove(elicitation_id);
        for (_, done) in watchers.map(|(_, w)| w).unwrap_or_default() {
            done();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
