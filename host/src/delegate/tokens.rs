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

// ------------------------------------------------------------- requests

/// Longest lifetime believed from `expires_in`.
const MAX_LIFETIME_S: u64 = 90 * 24 * 3600;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a token endpoint granted.
#[derive(Debug)]
pub struct Granted {
    /// The access token.
    pub access_token: Secret,
    /// A refresh token, if the server gave one.
    pub refresh_token: Option<Secret>,
    /// Unix seconds.
    pub expires_at: Option<u64>,
    /// The granted scopes (the requested ones when the server does not say).
    pub scopes: Vec<String>,
}

/// Why a token endpoint gave no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The server refused the grant (`invalid_grant` and friends): the code
    /// or refresh token is no good, now or later.
    #[error("the authorization server refused: {0}")]
    Refused(String),
    /// The server could not be reached or answered badly; trying later may work.
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
    scope: Option<String>,
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
}

/// POST `form` to a token endpoint as `client_id` (HTTP Basic with `secret`,
/// or named in the body as a public client) and read the answer: at most
/// [`MAX_TOKEN_RESPONSE`] bytes, only a registered error code kept from a
/// refusal, bearer (or RFC 8693 `N_A`) tokens only. `default_scopes` are the
/// granted scopes when the server does not say.
pub(crate) async fn token_request(
    http: &reqwest::Client,
    endpoint: &url::Url,
    client_id: &str,
    secret: Option<&Secret>,
    form: &[(&str, &str)],
    default_scopes: &[String],
) -> Result<Granted, TokenError> {
    let mut pairs: Vec<(&str, &str)> = form.to_vec();
    if secret.is_none() {
        // A public client names itself in the body (RFC 6749 §3.2.1).
        pairs.push(("client_id", client_id));
    }
    let body = Zeroizing::new(
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish(),
    );
    let mut request = http
        .post(endpoint.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body.to_string())
        .timeout(TOKEN_TIMEOUT);
    if let Some(secret) = secret {
        request = request.basic_auth(form_encode(client_id), Some(form_encode(secret.expose())));
    }
    let unavailable = |why: &str| TokenError::Unavailable(format!("the token endpoint {why}"));
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            unavailable("did not answer in time")
        } else {
            unavailable("could not be reached")
        }
    })?;
    let status = response.status();
    // Read at most the cap: a token endpoint cannot make the host buffer more.
    let mut response = response;
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| unavailable("cut its answer off"))?
    {
        if bytes.len() + chunk.len() > MAX_TOKEN_RESPONSE {
            return Err(unavailable("answered with too much data"));
        }
        bytes.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        // Only a registered error code is kept: descriptions can echo
        // request values.
        let code = serde_json::from_slice::<OAuthErrorBody>(&bytes)
            .ok()
            .map(|b| b.error)
            .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        return match (status.as_u16(), code) {
            (400 | 401, Some(code)) => Err(TokenError::Refused(code)),
            (_, code) => Err(unavailable(&format!(
                "answered HTTP {}{}",
                status.as_u16(),
                code.map(|c| format!(" ({c})")).unwrap_or_default()
            ))),
        };
    }
    let mut token: TokenResponse = serde_json::from_slice(&bytes)
        .map_err(|_| unavailable("answered with something that is not a token response"))?;
    if let Some(kind) = &token.token_type
        && !kind.eq_ignore_ascii_case("bearer")
        && !kind.eq_ignore_ascii_case("n_a")
    {
        return Err(unavailable(&format!(
            "issued an unsupported token type `{kind}`"
        )));
    }
    // Owned by secrets from here on (zeroized when dropped).
    let access_token = Secret::new(std::mem::take(&mut token.access_token));
    let refresh_token = token.refresh_token.take().map(Secret::new);
    if access_token.expose().is_empty() || access_token.expose().len() > 16 * 1024 {
        return Err(unavailable("issued an empty or oversized token"));
    }
    Ok(Granted {
        access_token,
        refresh_token: refresh_token
            .filter(|t| !t.expose().is_empty() && t.expose().len() <= 16 * 1024),
        expires_at: token
            .expires_in
            .map(|s| unix_now().saturating_add(s.min(MAX_LIFETIME_S))),
        scopes: match token.scope {
            Some(s) => s.split_whitespace().map(str::to_string).collect(),
            None => default_scopes.to_vec(),
        },
    })
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before HTTP Basic.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
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
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let granted = token_request(
            &self.http,
            &self.config.token_endpoint,
            &self.config.client_id,
            Some(&self.secret),
            &pairs,
            &self.config.scopes,
        )
        .await;
        // The subject token is in `form`: clear it.
        drop(pairs);
        for (_, value) in &mut form {
            zeroize::Zeroize::zeroize(value);
        }
        let granted = granted.map_err(|e| {
            DelegateError::Upstream(format!(
                "could not get a token for service `{service}`: {e}"
            ))
        })?;
        let lifetime = granted
            .expires_at
            .map_or(60, |at| at.saturating_sub(unix_now()))
            .min(24 * 3600);
        Ok((granted.access_token, Duration::from_secs(lifetime)))
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

    /// A token endpoint on loopback answering `status` with `body`.
    async fn endpoint(status: u16, body: String) -> url::Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move || {
                let body = body.clone();
                async move {
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [("content-type", "application/json")],
                        body,
                    )
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        url::Url::parse(&format!("http://{addr}/token")).unwrap()
    }

    #[tokio::test]
    async fn token_answers_are_bounded_typed_and_their_errors_reduced_to_a_code() {
        let http = reqwest::Client::new();
        let ask = |url: url::Url| {
            let http = http.clone();
            async move { token_request(&http, &url, "c", None, &[("grant_type", "x")], &[]).await }
        };
        // Over the cap: refused without reading it all.
        let huge = format!(
            "{{\"access_token\":\"{}\"}}",
            "a".repeat(MAX_TOKEN_RESPONSE)
        );
        let err = ask(endpoint(200, huge).await).await.unwrap_err();
        assert!(err.to_string().contains("too much data"), "{err}");
        // Another token type than bearer (or N_A).
        let mac = r#"{"access_token":"t","token_type":"mac"}"#.to_string();
        let err = ask(endpoint(200, mac).await).await.unwrap_err();
        assert!(err.to_string().contains("unsupported token type"), "{err}");
        // A refusal keeps its registered code only, never the description.
        let refused = r#"{"error":"invalid_grant","error_description":"secret-echo"}"#.to_string();
        let err = ask(endpoint(400, refused).await).await.unwrap_err();
        assert!(
            matches!(&err, TokenError::Refused(code) if code == "invalid_grant"),
            "{err}"
        );
        assert!(!err.to_string().contains("secret-echo"));
        // A good answer, with the default scopes when none are given.
        let ok = r#"{"access_token":"t","token_type":"Bearer","expires_in":60}"#.to_string();
        let url = endpoint(200, ok).await;
        let granted = token_request(&http, &url, "c", None, &[], &["s".to_string()])
            .await
            .unwrap();
        assert_eq!(granted.access_token.expose(), "t");
        assert_eq!(granted.scopes, ["s"]);
        assert!(granted.expires_at.is_some());
    }
}
