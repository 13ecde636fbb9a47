//! Issuer keys: discovered (RFC 8414, then OpenID), cached, refetched on an
//! unknown `kid` (rate-limited, one fetch at a time) and when they grow old.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use tokio::sync::Mutex;

use crate::config::IssuerConfig;

/// Largest discovery or JWKS document accepted.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

#[derive(Default)]
struct KeyState {
    jwks_uri: Option<String>,
    keys: Option<JwkSet>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

/// One issuer's keys.
pub(crate) struct IssuerKeys {
    pub(crate) config: IssuerConfig,
    state: Mutex<KeyState>,
}

/// Why no key was found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("no key `{0}` at the issuer")]
    UnknownKid(String),
    #[error("the issuer's keys could not be fetched")]
    Unavailable,
}

impl IssuerKeys {
    pub(crate) fn new(config: IssuerConfig) -> Self {
        let jwks_uri = config.jwks_uri.clone();
        IssuerKeys {
            config,
            state: Mutex::new(KeyState {
                jwks_uri,
                ..KeyState::default()
            }),
        }
    }

    /// The key for `kid` (or the only key, when the token names none).
    pub(crate) async fn key(
        &self,
        http: &reqwest::Client,
        kid: Option<&str>,
    ) -> Result<DecodingKey, KeyError> {
        let mut state = self.state.lock().await;
        let stale = state
            .fetched_at
            .is_none_or(|t| t.elapsed() >= self.config.jwks_max_age);
        if !stale && let Some(key) = find(state.keys.as_ref(), kid) {
            return Ok(key);
        }
        let may_fetch = state
            .last_attempt
            .is_none_or(|t| t.elapsed() >= self.config.jwks_min_refresh)
            || stale;
        if may_fetch {
            state.last_attempt = Some(Instant::now());
            match self.fetch(http, &mut state).await {
                Ok(keys) => {
                    state.keys = Some(keys);
                    state.fetched_at = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.config.issuer, error = %e, "fetching issuer keys failed");
                }
            }
        }
        match (find(state.keys.as_ref(), kid), &state.keys) {
            (Some(key), _) => Ok(key),
            (None, Some(_)) => Err(KeyError::UnknownKid(kid.unwrap_or("").to_string())),
            (None, None) => Err(KeyError::Unavailable),
        }
    }

    async fn fetch(&self, http: &reqwest::Client, state: &mut KeyState) -> Result<JwkSet, String> {
        let jwks_uri = match &state.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let uri = discover(http, &self.config.issuer).await?;
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let body = get_json(http, &jwks_uri).await?;
        parse_jwks(&body).ok_or_else(|| format!("{jwks_uri} is not a JWK set"))
    }
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
    pub(crate) http: reqwest::Client,
    issuers: HashMap<String, IssuerKeys>,
}

impl KeyCache {
    pub(crate) fn new(issuers: impl IntoIterator<Item = IssuerConfig>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let mut map = HashMap::new();
        for issuer in issuers {
            map.entry(issuer.issuer.clone())
                .or_insert_with(|| IssuerKeys::new(issuer));
        }
        Ok(KeyCache { http, issuers: map })
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
}
