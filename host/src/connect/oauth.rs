//! airlock as an OAuth client: authorization URLs with PKCE S256, code
//! redemption and refresh at a token endpoint the operator configured.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::delegate::Secret;

/// Deadline for one call to a token endpoint.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// Longest lifetime believed from `expires_in`.
const MAX_LIFETIME_S: u64 = 90 * 24 * 3600;

/// `n` random bytes, URL-safe base64: ids, `state`, PKCE verifiers.
pub(crate) fn random_token(n: usize) -> Result<String, String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| format!("the OS random source failed: {e}"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
pub(crate) fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One OAuth client registration of airlock: at a tenant's issuer (to sign
/// browser users in) or at a third-party provider.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub authorization_endpoint: url::Url,
    pub token_endpoint: url::Url,
    pub client_id: String,
    pub secret: Option<Secret>,
    pub scopes: Vec<String>,
}

/// What a token endpoint granted.
#[derive(Debug)]
pub(crate) struct Granted {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// Unix seconds.
    pub expires_at: Option<u64>,
    /// The granted scopes (the requested ones when the server does not say).
    pub scopes: Vec<String>,
}

/// Why a token endpoint gave no token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
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
struct ErrorBody {
    error: String,
}

impl Client {
    /// The URL sending the browser to consent.
    pub(crate) fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        verifier: &str,
        extra: &[(&str, &str)],
    ) -> url::Url {
        let mut url = self.authorization_endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("state", state)
                .append_pair("code_challenge", &challenge(verifier))
                .append_pair("code_challenge_method", "S256");
            if !self.scopes.is_empty() {
                q.append_pair("scope", &self.scopes.join(" "));
            }
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        url
    }

    /// Redeem an authorization code.
    pub(crate) async fn redeem(
        &self,
        http: &reqwest::Client,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        extra: &[(&str, &str)],
    ) -> Result<Granted, TokenError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        form.extend_from_slice(extra);
        self.token_request(http, &form).await
    }

    /// Use a refresh token.
    pub(crate) async fn refresh(
        &self,
        http: &reqwest::Client,
        refresh_token: &Secret,
    ) -> Result<Granted, TokenError> {
        self.token_request(
            http,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose()),
            ],
        )
        .await
    }

    async fn token_request(
        &self,
        http: &reqwest::Client,
        form: &[(&str, &str)],
    ) -> Result<Granted, TokenError> {
        let mut pairs: Vec<(&str, &str)> = form.to_vec();
        if self.secret.is_none() {
            // A public client names itself in the body (RFC 6749 §3.2.1).
            pairs.push(("client_id", &self.client_id));
        }
        let body = Zeroizing::new(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish(),
        );
        let mut request = http
            .post(self.token_endpoint.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body.to_string())
            .timeout(TOKEN_TIMEOUT);
        if let Some(secret) = &self.secret {
            request = request.basic_auth(
                form_encode(&self.client_id),
                Some(form_encode(secret.expose())),
            );
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
            let code = serde_json::from_slice::<ErrorBody>(&bytes)
                .ok()
                .map(|b| b.error)
                .filter(|c| {
                    c.len() <= 64 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                });
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
                .map(|s| now().saturating_add(s.min(MAX_LIFETIME_S))),
            scopes: match token.scope {
                Some(s) => s.split_whitespace().map(str::to_string).collect(),
                None => self.scopes.clone(),
            },
        })
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before HTTP Basic.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let a = random_token(32).unwrap_or_default();
        let b = random_token(32).unwrap_or_default();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }
}
