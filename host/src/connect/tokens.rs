//! Users' connected tokens, as the broker gets them: read from the vault,
//! refreshed shortly before they expire or once after the provider refused
//! them, one refresh at a time per record (concurrent calls wait for it and
//! use its result). A refresh runs to its end in a task of its own, so a call
//! that times out cannot lose a rotated refresh token; it writes only if the
//! record is still the one it refreshed (a disconnect or a new connection
//! meanwhile wins). Only `invalid_grant` disconnects the record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{lock, oauth};
use crate::delegate::{DelegateError, Secret};
use crate::vault::{RecordKey, TokenSet, Vault};

/// Refresh a token this many seconds before it expires.
const REFRESH_MARGIN_S: u64 = 60;
/// Most records remembered as refused right after a refresh.
const MAX_SUSPECT: usize = 10_000;

type Locks = Arc<Mutex<HashMap<RecordKey, Arc<tokio::sync::Mutex<()>>>>>;

/// What to do after the provider answered 401 to a token.
#[derive(Debug)]
pub enum AfterUnauthorized {
    /// Retry once with this token.
    Retry(Secret),
    /// Give the 401 to the tool as it is (no refresh possible or allowed now).
    Keep,
    /// The user is no longer connected: ask them to connect again.
    Disconnected,
}

/// The users' connected tokens and how to refresh them.
pub struct UserTokens {
    vault: Arc<Vault>,
    providers: HashMap<(String, String), oauth::Client>,
    http: reqwest::Client,
    /// One lock per record being refreshed.
    refreshing: Locks,
    /// Records whose freshly refreshed token was refused at once (by digest
    /// of that token): another 401 for it forces no refresh, so a tool
    /// cannot turn an endpoint that always answers 401 into a refresh storm.
    suspect: Mutex<HashMap<RecordKey, [u8; 32]>>,
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

/// How a refresh ended.
enum Refreshed {
    /// A usable token (new, or from the refresh before this one).
    Token(Secret),
    /// No refresh token: the access token is all there is.
    Unrefreshable,
    /// The provider refused the grant; the record is gone.
    Disconnected,
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
            refreshing: Arc::new(Mutex::new(HashMap::new())),
            suspect: Mutex::new(HashMap::new()),
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
        match self.refresh(key, &tokens.access_token).await? {
            Refreshed::Token(token) => Ok(Some(token)),
            // An expiring token without a refresh token is used while it
            // lasts; the provider says when it no longer works.
            Refreshed::Unrefreshable => Ok(Some(tokens.access_token)),
            Refreshed::Disconnected => Ok(None),
        }
    }

    /// The provider answered 401 to `used`: refresh once (unless another call
    /// already did, or `used` is a fresh token that was refused at once).
    pub async fn after_unauthorized(
        &self,
        key: &RecordKey,
        used: &Secret,
    ) -> Result<AfterUnauthorized, DelegateError> {
        if lock(&self.suspect).get(key) == Some(&digest(used)) {
            return Ok(AfterUnauthorized::Keep);
        }
        Ok(match self.refresh(key, used).await? {
            Refreshed::Token(token) => AfterUnauthorized::Retry(token),
            Refreshed::Unrefreshable => AfterUnauthorized::Keep,
            Refreshed::Disconnected => AfterUnauthorized::Disconnected,
        })
    }

    /// The token a refresh just gave was refused too: refreshing again will
    /// not help until the record changes.
    pub fn refused_after_refresh(&self, key: &RecordKey, token: &Secret) {
        let mut suspect = lock(&self.suspect);
        if suspect.len() >= MAX_SUSPECT && !suspect.contains_key(key) {
            suspect.clear();
        }
        suspect.insert(key.clone(), digest(token));
    }

    /// Refresh `key`'s record, whose access token was `stale`, in a task of
    /// its own, one at a time per record: whoever waited finds the token
    /// changed and uses what the refresh before it stored.
    async fn refresh(&self, key: &RecordKey, stale: &Secret) -> Result<Refreshed, DelegateError> {
        let Some(client) = self
            .providers
            .get(&(key.tenant.clone(), key.provider.clone()))
            .cloned()
        else {
            return Err(DelegateError::NotConnected(format!(
                "provider `{}` is not configured",
                key.provider
            )));
        };
        let job = Refresh {
            vault: self.vault.clone(),
            client,
            http: self.http.clone(),
            locks: self.refreshing.clone(),
            key: key.clone(),
            stale: stale.clone(),
        };
        tokio::spawn(job.run())
            .await
            .map_err(|_| DelegateError::Upstream("the token refresh failed".into()))?
    }
}

/// One refresh, owning everything it needs so it finishes even if the call
/// that started it is gone.
struct Refresh {
    vault: Arc<Vault>,
    client: oauth::Client,
    http: reqwest::Client,
    locks: Locks,
    key: RecordKey,
    stale: Secret,
}

impl Refresh {
    async fn run(self) -> Result<Refreshed, DelegateError> {
        let slot = lock(&self.locks)
            .entry(self.key.clone())
            .or_default()
            .clone();
        let result = {
            let _turn = slot.lock().await;
            self.locked().await
        };
        // Forget the lock once nobody else holds it.
        let mut locks = lock(&self.locks);
        if Arc::strong_count(&slot) <= 2 {
            locks.remove(&self.key);
        }
        result
    }

    async fn vault<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Vault, &RecordKey) -> Result<T, crate::vault::VaultError> + Send + 'static,
    ) -> Result<T, DelegateError> {
        let vault = self.vault.clone();
        let key = self.key.clone();
        blocking(move || f(&vault, &key).map_err(|e| e.to_string())).await
    }

    async fn locked(&self) -> Result<Refreshed, DelegateError> {
        let key = &self.key;
        let Some(current) = self.vault(|v, k| v.get(k)).await? else {
            return Ok(Refreshed::Disconnected);
        };
        if current.access_token.expose() != self.stale.expose() {
            return Ok(Refreshed::Token(current.access_token));
        }
        let Some(refresh_token) = current.refresh_token.clone() else {
            // Past its expiry with nothing to renew it: the user connects again.
            if current.expires_at.is_some_and(|at| at <= oauth::now()) {
                let stale = self.stale.clone();
                self.vault(move |v, k| v.replace_if(k, &stale, None))
                    .await?;
                return Ok(Refreshed::Disconnected);
            }
            return Ok(Refreshed::Unrefreshable);
        };
        match self.client.refresh(&self.http, &refresh_token).await {
            Ok(granted) => {
                let tokens = TokenSet {
                    access_token: granted.access_token.clone(),
                    // A provider that does not rotate keeps the old one valid.
                    refresh_token: granted.refresh_token.or(Some(refresh_token)),
                    expires_at: granted.expires_at,
                    scopes: granted.scopes,
                };
                let stale = self.stale.clone();
                let stored = self
                    .vault(move |v, k| v.replace_if(k, &stale, Some(&tokens)))
                    .await?;
                if !stored {
                    // Disconnected or connected anew meanwhile: that wins.
                    tracing::info!(tenant = %key.tenant, provider = %key.provider, "a refresh raced a change of the record; its result is dropped");
                    return Ok(match self.vault(|v, k| v.get(k)).await? {
                        Some(now) => Refreshed::Token(now.access_token),
                        None => Refreshed::Disconnected,
                    });
                }
                Ok(Refreshed::Token(granted.access_token))
            }
            Err(oauth::TokenError::Refused(code)) if code == "invalid_grant" => {
                tracing::info!(tenant = %key.tenant, provider = %key.provider, "the provider refused the refresh token; the account is disconnected");
                let stale = self.stale.clone();
                self.vault(move |v, k| v.replace_if(k, &stale, None))
                    .await?;
                Ok(Refreshed::Disconnected)
            }
            Err(e) => Err(DelegateError::Upstream(format!(
                "could not refresh the {} token: {e}",
                key.provider
            ))),
        }
    }
}

fn digest(token: &Secret) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.expose().as_bytes()).into()
}

fn expiring(tokens: &TokenSet) -> bool {
    tokens
        .expires_at
        .is_some_and(|at| at <= oauth::now().saturating_add(REFRESH_MARGIN_S))
}
