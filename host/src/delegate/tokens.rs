//! Tokens the host obtains for delegated requests: OAuth client credentials
//! (`service` mode) and RFC 8693 token exchange (`on-behalf-of` mode), cached
//! per key until shortly before they expire, with one fetch at a time per key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use zeroize::Zeroizing;

use super::DelegateError;
use crate::config::{OAuthClient, SecretSource};

/// A secret held by the host: zeroized on drop, never shown by `Debug`.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wrap `value`.
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }

    /// Read a secret from its configured source; `vault` looks up the
    /// tenant's named vault secrets.
    pub fn load(
        source: &SecretSource,
        vault: &dyn Fn(&str) -> Result<Option<Secret>, String>,
    ) -> Result<Self, String> {
        let value = match source {
            SecretSource::Env(var) => std::env::var(var)
                .map_err(|_| format!("the environment variable {var} is not set"))?,
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            SecretSource::Vault(name) => {
                return vault(name)?.ok_or_else(|| {
                    format!(
                        "the vault holds no secret `{name}` for this tenant; \
                         store it with `airlock vault put-secret --tenant T --name {name}`"
                    )
                });
            }
        };
        let value = value.trim_end_matches(['\r', '\n']).to_string();
        if value.is_empty() {
            return Err("the secret is empty".into());
        }
        Ok(Secret::new(value))
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Refresh a cached token this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Most tokens kept; past it, expired ones go first, then all.
const MAX_CACHED: usize = 10_000;
/// Deadline for one call to a token endpoint.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

#[derive(Clone)]
struct Cached {
    token: Secret,
    fresh_until: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// A cache of tokens by key, one fetch at a time per key.
#[derive(Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").finish_non_exhaustive()
    }
}

impl TokenCache {
    fn slot(&self, key: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.len() >= MAX_CACHED && !slots.contains_key(key) {
            // Slots in use (locked) survive; idle ones are refetched on demand.
            slots.retain(|_, slot| slot.try_lock().is_err());
        }
        slots.entry(key.to_string()).or_default().clone()
    }

    /// The cached token for `key`, or the one `fetch` returns (which is then
    /// cached). Concurrent callers with the same key wait for one fetch.
    pub async fn get_or_fetch<F, Fut>(&self, key: &str, fetch: F) -> Result<Secret, DelegateError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(Secret, Duration), DelegateError>>,
    {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.fresh_until
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = fetch().await?;
        *cached = Some(Cached {
            token: token.clone(),
            fresh_until: Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN),
        });
        Ok(token)
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
}

/// The host's OAuth client for one authorization server, with its secret.
#[derive(Debug, Clone)]
pub struct TokenClient {
    config: OAuthClient,
    secret: Secret,
    http: reqwest::Client,
}

impl TokenClient {
    /// A client for `config`, reading its secret now (`vault`: see
    /// [`Secret::load`]).
    pub fn new(
        config: OAuthClient,
        http: reqwest::Client,
        vault: &dyn Fn(&str) -> Result<Option<Secret>, String>,
    ) -> Result<Self, String> {
        let secret = Secret::load(&config.secret, vault)?;
        Ok(TokenClient {
            config,
            secret,
            http,
        })
    }

    /// A key for caching this client's tokens: which endpoint, client and target.
    pub fn cache_key(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.config.token_endpoint,
            self.config.client_id,
            self.config.audience.as_deref().unwrap_or(""),
            self.config.resource.as_deref().unwrap_or(""),
            self.config.scopes.join(" ")
        )
    }

    /// A client-credentials token.
    pub async fn client_credentials(
        &self,
        service: &str,
    ) -> Result<(Secret, Duration), DelegateError> {
        self.request(
            service,
            vec![("grant_type", "client_credentials".to_string())],
        )
        .await
    }

    /// Exchange `subject_token` (the caller's access token) for a token for
    /// this client's audience (RFC 8693).
    pub async fn exchange(
        &self,
        service: &str,
        subject_token: &str,
    ) -> Result<(Secret, Duration), DelegateError> {
        self.request(
            service,
            vec![
                ("grant_type", TOKEN_EXCHANGE.to_string()),
                ("subject_token", subject_token.to_string()),
                ("subject_token_type", ACCESS_TOKEN_TYPE.to_string()),
                ("requested_token_type", ACCESS_TOKEN_TYPE.to_string()),
            ],
        )
        .await
    }

    async fn request(
        &self,
        service: &str,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<(Secret, Duration), DelegateError> {
        if let Some(audience) = &self.config.audience {
            form.push(("audience", audience.clone()));
        }
        if let Some(resource) = &self.config.resource {
            form.push(("resource", resource.clone()));
        }
        if !self.config.scopes.is_empty() {
            form.push(("scope", self.config.scopes.join(" ")));
        }
        let body = Zeroizing::new(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
                .finish(),
        );
        // The subject token is in `form`; clear it as soon as it is encoded.
        for (_, value) in &mut form {
            zeroize::Zeroize::zeroize(value);
        }
        let failed = |why: String| {
            DelegateError::Upstream(format!(
                "could not get a token for service `{service}`: {why}"
            ))
        };
        let response = self
            .http
            .post(self.config.token_endpoint.clone())
            .basic_auth(&self.config.client_id, Some(self.secret.expose()))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body.to_string())
            .timeout(TOKEN_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    failed("the authorization server did not answer in time".into())
                } else {
                    failed("the authorization server could not be reached".into())
                }
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|_| failed("the authorization server's answer was cut off".into()))?;
        if bytes.len() > MAX_TOKEN_RESPONSE {
            return Err(failed(
                "the authorization server's answer is too large".into(),
            ));
        }
        if !status.is_success() {
            // Only the registered OAuth error code is passed on: descriptions
            // can echo request values.
            let code = serde_json::from_slice::<OAuthErrorBody>(&bytes)
                .ok()
                .map(|b| b.error)
                .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
            return Err(failed(format!("the authorization server refused: {code}")));
        }
        let token: TokenResponse = serde_json::from_slice(&bytes).map_err(|_| {
            failed("the authorization server's answer is not a token response".into())
        })?;
        if let Some(kind) = &token.token_type
            && !kind.eq_ignore_ascii_case("bearer")
            && !kind.eq_ignore_ascii_case("n_a")
        {
            return Err(failed(format!("unsupported token type `{kind}`")));
        }
        if token.access_token.is_empty() {
            return Err(failed("the token is empty".into()));
        }
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(60).min(24 * 3600));
        Ok((Secret::new(token.access_token), lifetime))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn one_fetch_per_key_until_near_expiry() {
        let cache = TokenCache::default();
        let fetches = Arc::new(AtomicU32::new(0));
        let fetch = |life: u64| {
            let fetches = fetches.clone();
            move || async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok((Secret::new("t".into()), Duration::from_secs(life)))
            }
        };
        let (a, b) = tokio::join!(
            cache.get_or_fetch("k", fetch(3600)),
            cache.get_or_fetch("k", fetch(3600))
        );
        assert_eq!(a.unwrap().expose(), "t");
        assert_eq!(b.unwrap().expose(), "t");
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "single flight");
        cache.get_or_fetch("other", fetch(3600)).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "keys are separate");
        // A token within the expiry margin is fetched again.
        cache.get_or_fetch("short", fetch(10)).await.unwrap();
        cache.get_or_fetch("short", fetch(10)).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Secret::new("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
