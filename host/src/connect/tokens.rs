//! Users' connected tokens, as the broker gets them: read from the vault,
//! refreshed shortly before they expire or once after the provider refused
//! them, one refresh at a time per record (concurrent calls wait for it and
//! use its result). A refresh the provider refuses disconnects the record, so
//! the next call asks the user to connect again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{lock, oauth};
use crate::delegate::{DelegateError, Secret};
use crate::vault::{RecordKey, TokenSet, Vault};

/// Refresh a token this many seconds before it expires.
const REFRESH_MARGIN_S: u64 = 60;

/// The users' connected tokens and how to refresh them.
pub struct UserTokens {
    vault: Arc<Vault>,
    providers: HashMap<(String, String), oauth::Client>,
    http: reqwest::Client,
    /// One lock per record being refreshed.
    refreshing: Mutex<HashMap<RecordKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserTokens").finish_non_exhaustive()
    }
}

fn vault_error(e: impl std::fmt::Display) -> DelegateError {
    tracing::error!(error = %e, "the vault failed");
    DelegateError::Upstream("the host could not read the connected account".into())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, DelegateError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(vault_error)?
        .map_err(vault_error)
}

impl UserTokens {
    pub(super) fn new(
        vault: Arc<Vault>,
        providers: HashMap<(String, String), oauth::Client>,
        http: reqwest::Client,
    ) -> Self {
        UserTokens {
            vault,
            providers,
            http,
            refreshing: Mutex::new(HashMap::new()),
        }
    }

    async fn read(&self, key: &RecordKey) -> Result<Option<TokenSet>, DelegateError> {
        let vault = self.vault.clone();
        let key = key.clone();
        blocking(move || vault.get(&key).map_err(|e| e.to_string())).await
    }

    /// A usable access token for `key`, or `None` when the user has not
    /// connected (or is no longer connected).
    pub async fn access_token(&self, key: &RecordKey) -> Result<Option<Secret>, DelegateError> {
        let Some(tokens) = self.read(key).await? else {
            return Ok(None);
        };
        if !expiring(&tokens) {
            return Ok(Some(tokens.access_token));
        }
        self.refresh(key, &tokens.access_token).await
    }

    /// The provider refused `used`: refresh once (unless another call already
    /// did) and return the new token, or `None` when the user must connect
    /// again.
    pub async fn after_unauthorized(
        &self,
        key: &RecordKey,
        used: &Secret,
    ) -> Result<Option<Secret>, DelegateError> {
        self.refresh(key, used).await
    }

    /// Refresh `key`'s record, whose access token was `stale`, one refresh
    /// at a time: whoever waited for the lock finds the token changed and
    /// uses what the refresh before it stored.
    async fn refresh(
        &self,
        key: &RecordKey,
        stale: &Secret,
    ) -> Result<Option<Secret>, DelegateError> {
        let slot = lock(&self.refreshing)
            .entry(key.clone())
            .or_default()
            .clone();
        let _turn = slot.lock().await;
        let result = self.refresh_locked(key, stale).await;
        // Forget the lock once nobody else holds it.
        let mut refreshing = lock(&self.refreshing);
        if Arc::strong_count(&slot) <= 2 {
            refreshing.remove(key);
        }
        result
    }

    async fn refresh_locked(
        &self,
        key: &RecordKey,
        stale: &Secret,
    ) -> Result<Option<Secret>, DelegateError> {
        let Some(current) = self.read(key).await? else {
            return Ok(None);
        };
        if current.access_token.expose() != stale.expose() {
            return Ok(Some(current.access_token));
        }
        let Some(refresh_token) = current.refresh_token.clone() else {
            self.disconnect(key, "it expired and cannot be refreshed")
                .await?;
            return Ok(None);
        };
        let Some(client) = self
            .providers
            .get(&(key.tenant.clone(), key.provider.clone()))
        else {
            return Err(DelegateError::NotConnected(format!(
                "provider `{}` is not configured",
                key.provider
            )));
        };
        match client.refresh(&self.http, &refresh_token).await {
            Ok(granted) => {
                let tokens = TokenSet {
                    access_token: granted.access_token.clone(),
                    // A provider that does not rotate keeps the old one valid.
                    refresh_token: granted.refresh_token.or(Some(refresh_token)),
                    expires_at: granted.expires_at,
                    scopes: granted.scopes,
                };
                let vault = self.vault.clone();
                let key = key.clone();
                blocking(move || vault.put(&key, &tokens).map_err(|e| e.to_string())).await?;
                Ok(Some(granted.access_token))
            }
            Err(oauth::TokenError::Refused(code)) => {
                self.disconnect(key, &format!("the provider refused to refresh it ({code})"))
                    .await?;
                Ok(None)
            }
            Err(oauth::TokenError::Unavailable(why)) => Err(DelegateError::Upstream(format!(
                "could not refresh the {} token: {why}",
                key.provider
            ))),
        }
    }

    async fn disconnect(&self, key: &RecordKey, why: &str) -> Result<(), DelegateError> {
        tracing::info!(tenant = %key.tenant, provider = %key.provider, reason = %why, "connected account dropped");
        let vault = self.vault.clone();
        let key = key.clone();
        blocking(move || vault.remove(&key).map(|_| ()).map_err(|e| e.to_string())).await
    }
}

fn expiring(tokens: &TokenSet) -> bool {
    tokens
        .expires_at
        .is_some_and(|at| at <= oauth::now().saturating_add(REFRESH_MARGIN_S))
}
