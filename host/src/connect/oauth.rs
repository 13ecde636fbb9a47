//! airlock as an OAuth client: authorization URLs with PKCE S256, code
//! redemption and refresh at a token endpoint the operator configured.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

pub(crate) use crate::delegate::{Granted, TokenError};
use crate::delegate::{Secret, token_request};

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
        token_request(
            http,
            &self.token_endpoint,
            &self.client_id,
            self.secret.as_ref(),
            form,
            &self.scopes,
        )
        .await
    }
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
