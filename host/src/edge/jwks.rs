//! Issuer keys: discovered (RFC 8414, then OpenID), cached, and refetched
//! when they grow old or a token names an unknown `kid`.
//!
//! An issuer that is down, slow or hostile must not slow down or refuse
//! callers whose keys are cached, nor be flooded:
//!
//! - cached keys keep serving at once; when they are older than
//!   `jwks_max_age`, one background refresh runs (stale-while-revalidate);
//!   keys whose refreshes keep failing serve `jwks_max_stale` longer, then
//!   are no longer trusted (503 until a fetch succeeds);
//! - one fetch at a time per issuer, run by its own task, each bounded by the
//!   issuer's `jwks_fetch_timeout`; no lock is held while it runs, callers
//!   that need its result wait for it at most that long;
//! - after a failed fetch, none is tried again until an exponential,
//!   jittered backoff ends (1 s doubling up to 5 min);
//! - an unknown `kid` refetches at most once per `jwks_min_refresh`, and a
//!   `kid` not found in keys fetched after it was presented is refused at once
//!   for a while (a small, bounded negative cache);
//! - with no keys at all and the issuer down, callers are told so at once
//!   ([`KeyError::Unavailable`], a 503 with `Retry-After`), not queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use tokio::sync::watch;

use crate::config::IssuerConfig;

/// Largest discovery or JWKS document accepted.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// The first wait after a failed fetch; it doubles with each failure.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// The longest wait after failed fetches.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long an unknown `kid` is refused without a fetch (at least; never
/// less than the issuer's `jwks_min_refresh`).
const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Most unknown `kid`s remembered per issuer, and their longest length.
const MAX_UNKNOWN_KIDS: usize = 1024;
const MAX_KID_BYTES: usize = 256;

#[derive(Default)]
struct KeyState {
    jwks_uri: Option<String>,
    keys: Option<Arc<JwkSet>>,
    /// When `keys` were fetched.
    fetched_at: Option<Instant>,
    /// When the last fetch started.
    last_attempt: Option<Instant>,
    /// A fetch is running.
    in_flight: bool,
    /// Failed fetches since the last success.
    failures: u32,
    /// No fetch before this, after a failure.
    retry_at: Option<Instant>,
    /// Unknown `kid`s, refused without a fetch until the instant given.
    unknown: HashMap<String, Instant>,
}

impl KeyState {
    fn backing_off(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|t| now < t)
    }

    /// Whether a refetch for stale keys or an unknown `kid` may start now.
    fn may_refetch(&self, now: Instant, min_refresh: Duration) -> bool {
        !self.in_flight
            && !self.backing_off(now)
            && self
                .last_attempt
                .is_none_or(|t| now.duration_since(t) >= min_refresh)
    }

    fn known_unknown(&mut self, kid: &str, now: Instant) -> bool {
        match self.unknown.get(kid) {
            Some(until) if now < *until => true,
            Some(_) => {
                self.unknown.remove(kid);
                false
            }
            None => false,
        }
    }

    fn remember_unknown(&mut self, kid: &str, until: Instant, now: Instant) {
        if kid.len() > MAX_KID_BYTES {
            return;
        }
        if self.unknown.len() >= MAX_UNKNOWN_KIDS {
            self.unknown.retain(|_, t| now < *t);
        }
        // Full of live entries: the refetch rate limit still bounds fetches.
        if self.unknown.len() < MAX_UNKNOWN_KIDS {
            self.unknown.insert(kid.to_string(), until);
        }
    }

    /// When a caller refused for want of keys may try again.
    fn retry_after(&self, now: Instant, fetch_timeout: Duration) -> Duration {
        self.retry_at
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(fetch_timeout)
    }
}

/// What every caller and the fetch task of one issuer share.
struct Shared {
    config: IssuerConfig,
    http: reqwest::Client,
    metrics: Arc<crate::metrics::Metrics>,
    state: Mutex<KeyState>,
    /// Bumped when a fetch ends (either way); waiters subscribe under `state`.
    done: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, KeyState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Start a fetch in its own task (so a caller going away does not cancel
    /// it). `state` must be the locked state, with no fetch in flight.
    fn start_fetch(self: &Arc<Self>, state: &mut KeyState, now: Instant) {
        state.in_flight = true;
        state.last_attempt = Some(now);
        let shared = Arc::clone(self);
        let jwks_uri = state.jwks_uri.clone();
        tokio::spawn(async move { shared.run_fetch(jwks_uri).await });
    }

    async fn run_fetch(self: Arc<Self>, jwks_uri: Option<String>) {
        let timeout = self.config.jwks_fetch_timeout;
        let result =
            match tokio::time::timeout(timeout, fetch(&self.http, &self.config.issuer, jwks_uri))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            };
        self.metrics.jwks_fetch(result.is_ok());
        let generation = {
            let mut state = self.lock();
            let now = Instant::now();
            state.in_flight = false;
            match result {
                Ok((uri, keys)) => {
                    state.jwks_uri = Some(uri);
                    state.keys = Some(Arc::new(keys));
                    state.fetched_at = Some(now);
                    state.failures = 0;
                    state.retry_at = None;
                }
                Err(e) => {
                    state.failures = state.failures.saturating_add(1);
                    let wait = backoff(state.failures, jitter());
                    state.retry_at = Some(now + wait);
                    tracing::warn!(
                        issuer = %self.config.issuer,
                        error = %e,
                        failures = state.failures,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        cached_keys = state.keys.is_some(),
                        "fetching issuer keys failed"
                    );
                }
            }
            self.done.borrow().wrapping_add(1)
        };
        self.done.send_replace(generation);
    }
}

/// One issuer's keys.
pub(crate) struct IssuerKeys {
    shared: Arc<Shared>,
}

/// Why no key was found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("no key `{0}` at the issuer")]
    UnknownKid(String),
    #[error("the issuer's keys could not be fetched; retry in {retry_after:?}")]
    Unavailable { retry_after: Duration },
}

impl IssuerKeys {
    pub(crate) fn new(
        config: IssuerConfig,
        http: reqwest::Client,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let jwks_uri = config.jwks_uri.clone();
        IssuerKeys {
            shared: Arc::new(Shared {
                config,
                http,
                metrics,
                state: Mutex::new(KeyState {
                    jwks_uri,
                    ..KeyState::default()
                }),
                done: watch::Sender::new(0),
            }),
        }
    }

    /// The key for `kid` (or the only key, when the token names none).
    ///
    /// Answers at once from cached keys (starting a background refresh when
    /// they are old); waits, at most the fetch timeout, only when no cached
    /// key can answer and a fetch may help.
    pub(crate) async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, KeyError> {
        let shared = &self.shared;
        let config = &shared.config;
        let arrived = Instant::now();
        let mut waited = false;
        loop {
            let mut done = {
                let mut state = shared.lock();
                let now = Instant::now();
                let age = state.fetched_at.map(|t| now.duration_since(t));
                let stale = age.is_none_or(|age| age >= config.jwks_max_age);
                let refetch_allowed = state.may_refetch(now, config.jwks_min_refresh);
                if stale && state.keys.is_some() && refetch_allowed {
                    shared.start_fetch(&mut state, now);
                }
                // Keys past their stale allowance answer nobody.
                let trusted = age.is_some_and(|age| {
                    age < config.jwks_max_age.saturating_add(config.jwks_max_stale)
                });
                if let Some(key) = find(state.keys.as_deref().filter(|_| trusted), kid) {
                    return Ok(key);
                }
                let usable = trusted && state.keys.is_some();
                if waited {
                    return Err(refusal(&mut state, usable, config, kid, arrived, now));
                }
                if usable {
                    // An unknown kid (or no kid among several keys).
                    if let Some(kid) = kid
                        && state.known_unknown(kid, now)
                    {
                        return Err(KeyError::UnknownKid(kid.to_string()));
                    }
                    if !state.in_flight {
                        if !refetch_allowed {
                            return Err(KeyError::UnknownKid(kid.unwrap_or("").to_string()));
                        }
                        shared.start_fetch(&mut state, now);
                    }
                } else if !state.in_flight {
                    // Never fetched, every fetch failed so far, or the keys
                    // outlived their stale allowance.
                    if state.backing_off(now) {
                        return Err(KeyError::Unavailable {
                            retry_after: state.retry_after(now, config.jwks_fetch_timeout),
                        });
                    }
                    shared.start_fetch(&mut state, now);
                }
                shared.done.subscribe()
            };
            waited = true;
            // The fetch bounds itself; the margin only guards against a lost task.
            let limit = config.jwks_fetch_timeout + Duration::from_secs(1);
            let _ = tokio::time::timeout(limit, done.changed()).await;
        }
    }
}

/// The answer to a caller whose key was still not found after a fetch.
fn refusal(
    state: &mut KeyState,
    usable_keys: bool,
    config: &IssuerConfig,
    kid: Option<&str>,
    arrived: Instant,
    now: Instant,
) -> KeyError {
    if !usable_keys {
        return KeyError::Unavailable {
            retry_after: state.retry_after(now, config.jwks_fetch_timeout),
        };
    }
    let kid = kid.unwrap_or("");
    // Checked against keys fetched after the token arrived: refuse it at once
    // for a while rather than refetch for it again.
    if !kid.is_empty() && state.fetched_at.is_some_and(|t| t >= arrived) {
        let until = now + NEGATIVE_TTL.max(config.jwks_min_refresh);
        state.remember_unknown(kid, until, now);
    }
    KeyError::UnknownKid(kid.to_string())
}

/// The wait after `failures` failed fetches in a row: 1 s doubling up to
/// 5 min, stretched by up to half again by `jitter` (in [0, 1)) so that hosts
/// sharing an issuer do not retry in step.
fn backoff(failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let base = BACKOFF_START
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX);
    base.mul_f64(1.0 + jitter.clamp(0.0, 1.0) / 2.0)
        .min(BACKOFF_MAX)
}

/// A uniform value in [0, 1); 0 if the system has no randomness to give.
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.0,
    }
}

/// The issuer's JWKS URI (discovered unless known) and its keys.
async fn fetch(
    http: &reqwest::Client,
    issuer: &str,
    jwks_uri: Option<String>,
) -> Result<(String, JwkSet), String> {
    let jwks_uri = match jwks_uri {
        Some(uri) => uri,
        None => discover(http, issuer).await?,
    };
    let body = get_json(http, &jwks_uri).await?;
    let keys = parse_jwks(&body).ok_or_else(|| format!("{jwks_uri} is not a JWK set"))?;
    Ok((jwks_uri, keys))
}

/// A JWK set, keeping the keys this host can use and skipping the others
/// (encryption keys, key types or algorithms it does not know), so one exotic
/// key at the issuer does not hide the rest.
fn parse_jwks(body: &serde_json::Value) -> Option<JwkSet> {
    let keys = body.get("keys")?.as_array()?;
    let keys = keys
        .iter()
        .filter(|k| {
            k.get("use")
                .and_then(|u| u.as_str())
                .is_none_or(|u| u == "sig")
        })
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(|jwk| DecodingKey::from_jwk(jwk).is_ok())
        .collect();
    Some(JwkSet { keys })
}

fn find(keys: Option<&JwkSet>, kid: Option<&str>) -> Option<DecodingKey> {
    let keys = keys?;
    let jwk = match kid {
        Some(kid) => keys.find(kid)?,
        None => match keys.keys.as_slice() {
            [only] => only,
            _ => return None,
        },
    };
    DecodingKey::from_jwk(jwk).ok()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let mut resp = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: status {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "GET {url}: document larger than {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
}

/// The well-known URL for `issuer` (RFC 8414 §3.1: inserted before the path).
fn well_known(issuer: &str, suffix: &str) -> Option<String> {
    let url = url::Url::parse(issuer).ok()?;
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    Some(format!("{origin}/.well-known/{suffix}{path}"))
}

async fn discover(http: &reqwest::Client, issuer: &str) -> Result<String, String> {
    let mut candidates = Vec::new();
    candidates.extend(well_known(issuer, "oauth-authorization-server"));
    candidates.extend(well_known(issuer, "openid-configuration"));
    candidates.push(format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    ));
    let mut last = String::from("no discovery URL");
    for url in candidates {
        match get_json(http, &url).await {
            Ok(meta) => {
                if meta.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
                    last = format!("{url} describes a different issuer");
                    continue;
                }
                return meta
                    .get("jwks_uri")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| format!("{url} has no jwks_uri"));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Keys of every issuer trusted by any tenant, shared by issuer URL.
pub(crate) struct KeyCache {
    issuers: HashMap<String, IssuerKeys>,
}

impl KeyCache {
    pub(crate) fn new(
        issuers: impl IntoIterator<Item = IssuerConfig>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, String> {
        // Each fetch is bounded by its issuer's fetch timeout; this is a backstop.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let mut map = HashMap::new();
        for issuer in issuers {
            map.entry(issuer.issuer.clone())
                .or_insert_with(|| IssuerKeys::new(issuer, http.clone(), metrics.clone()));
        }
        Ok(KeyCache { issuers: map })
    }

    pub(crate) fn issuer(&self, iss: &str) -> Option<&IssuerKeys> {
        self.issuers.get(iss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let body = serde_json::json!({ "keys": [
            { "kty": "OKP", "crv": "Ed25519", "kid": "good", "alg": "EdDSA",
              "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" },
            { "kty": "RSA", "use": "enc", "kid": "enc", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB" },
            { "kty": "ML-DSA", "kid": "future", "alg": "ML-DSA-65", "pub": "xyz" },
        ]});
        let set = parse_jwks(&body).unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.common.key_id.clone()).collect();
        assert_eq!(set.keys.len(), 1, "{kids:?}");
        assert!(find(Some(&set), Some("good")).is_some());
        assert!(find(Some(&set), Some("enc")).is_none());
        assert!(parse_jwks(&serde_json::json!({"nokeys": []})).is_none());
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_five_minutes() {
        assert_eq!(backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(2, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(5, 0.0), Duration::from_secs(16));
        let most = backoff(1, 0.999);
        assert!(most > Duration::from_millis(1499) && most < Duration::from_millis(1500));
        for failures in [10, 11, 30, u32::MAX] {
            assert_eq!(backoff(failures, 0.0), BACKOFF_MAX);
            assert_eq!(backoff(failures, 0.9), BACKOFF_MAX);
        }
        for failures in 1..40 {
            let wait = backoff(failures, jitter());
            let base = backoff(failures, 0.0);
            assert!(wait >= base && wait <= base.mul_f64(1.5), "{wait:?}");
        }
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn the_negative_cache_expires_and_stays_bounded() {
        let mut state = KeyState::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        state.remember_unknown("junk", later, now);
        assert!(state.known_unknown("junk", now));
        assert!(!state.known_unknown("other", now));
        assert!(!state.known_unknown("junk", later));
        assert!(state.unknown.is_empty());
        state.remember_unknown(&"k".repeat(MAX_KID_BYTES + 1), later, now);
        assert!(state.unknown.is_empty());
        for i in 0..MAX_UNKNOWN_KIDS + 10 {
            state.remember_unknown(&format!("kid-{i}"), later, now);
        }
        assert_eq!(state.unknown.len(), MAX_UNKNOWN_KIDS);
        // Expired entries make room.
        let much_later = later + Duration::from_secs(1);
        state.remember_unknown("fresh", much_later + Duration::from_secs(10), much_later);
        assert_eq!(state.unknown.len(), 1);
        assert!(state.known_unknown("fresh", much_later));
    }

    #[test]
    fn retry_after_counts_down_to_the_end_of_the_backoff() {
        let now = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut state = KeyState::default();
        assert_eq!(state.retry_after(now, timeout), timeout);
        state.retry_at = Some(now + Duration::from_secs(3));
        assert_eq!(state.retry_after(now, timeout), Duration::from_secs(3));
        assert!(state.backing_off(now));
        assert!(!state.backing_off(now + Duration::from_secs(3)));
        assert!(!state.may_refetch(now, Duration::ZERO));
        state.retry_at = None;
        state.last_attempt = Some(now);
        assert!(!state.may_refetch(now, Duration::from_secs(1)));
        assert!(state.may_refetch(now + Duration::from_secs(1), Duration::from_secs(1)));
        state.in_flight = true;
        assert!(!state.may_refetch(now + Duration::from_secs(1), Duration::ZERO));
    }
}
