//! The encrypted per-user token vault: records keyed by (tenant, issuer,
//! subject, provider), each sealed (XChaCha20-Poly1305) under its tenant's
//! current data key, with associated data binding it to that key and that
//! place; data keys wrapped by the master key (`master`); online rotation of
//! both. Also the tenant's operator secrets (client secrets, service
//! secrets). The admin socket and its protocol are in `admin`.
//!
//! Concurrency: `get`, `put` and the rest hold a read lock on the key state
//! for the whole read-open or seal-write, so a rotation that adds or drops a
//! data key version (under the write lock) never pulls a key from under
//! them; re-sealing during a rotation swaps each record only if it is
//! unchanged (compare-and-swap), so a concurrent write is never lost.

pub mod admin;
mod crypto;
mod keyring;
mod master;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use crate::config::VaultKeySource;
pub use crate::delegate::Secret;
use crate::storage::{Storage, StorageError};
pub(crate) use crypto::{DataKey, Sealed};
use keyring::{KEYRING_KEY, KeyringDoc, TenantKeys};
pub use master::MasterKey;
pub use store::{Space, StorageVaultStore, VaultStore};

/// Why a vault operation failed. Messages never contain secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The master key is missing or unreadable (the message names the file
    /// or variable).
    #[error("{0}")]
    MasterKey(String),
    /// `MasterKey::create_file` found a file already there.
    #[error("a vault master key file already exists at {}", .0.display())]
    MasterKeyExists(PathBuf),
    /// The master key is not the one this vault's data keys are wrapped
    /// under. Nothing was changed.
    #[error(
        "the vault master key from {key_source} (fingerprint {given}) is not this vault's \
         (its data keys are wrapped under {expected}); nothing was changed"
    )]
    WrongMasterKey {
        /// The file or variable.
        key_source: String,
        /// The given key's fingerprint.
        given: String,
        /// The fingerprints the vault accepts.
        expected: String,
    },
    /// A sealed value does not authenticate.
    #[error("{what} does not open: {reason}")]
    Undecryptable {
        /// Which value (tenant, user, provider or name; never its bytes).
        what: String,
        /// Why it might not.
        reason: String,
    },
    /// A stored value is not what this version of airlock writes.
    #[error("the vault value {what} is unreadable: {reason}")]
    Corrupt {
        /// Which value.
        what: String,
        /// Why.
        reason: String,
    },
    /// The system gave no randomness.
    #[error("no randomness for the vault: {0}")]
    Random(String),
    /// Sealing failed.
    #[error("vault encryption failed: {0}")]
    Crypto(String),
    /// The master key comes from an environment variable, which the host
    /// cannot replace.
    #[error(
        "the vault master key comes from the environment variable {0}; online master key \
         rotation needs a key file ([vault] master_key_file): rotate offline by re-keying, \
         or switch to a key file"
    )]
    EnvKeyRotation(String),
    /// The admin socket failed.
    #[error("{0}")]
    Admin(String),
}

/// Where a user's tokens for a provider are kept. A user is (issuer,
/// subject) within a tenant.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct RecordKey {
    /// The tenant.
    pub tenant: String,
    /// The user's issuer.
    pub issuer: String,
    /// The user's subject at that issuer.
    pub subject: String,
    /// The third-party provider.
    pub provider: String,
}

impl RecordKey {
    /// The stored key: the JSON array of the four parts, so no part can
    /// pose as a separator.
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&(&self.tenant, &self.issuer, &self.subject, &self.provider))
            .unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (tenant, issuer, subject, provider) = serde_json::from_slice(bytes).ok()?;
        Some(RecordKey {
            tenant,
            issuer,
            subject,
            provider,
        })
    }

    fn describe(&self) -> String {
        format!(
            "the vault record of tenant `{}`, issuer `{}`, subject `{}`, provider `{}`",
            self.tenant, self.issuer, self.subject, self.provider
        )
    }
}

/// The stored-key prefix of every entry of `tenant` (keys are JSON arrays
/// starting with the tenant).
fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut prefix = serde_json::to_vec(&[tenant]).unwrap_or_default();
    prefix.pop(); // `]`
    prefix.push(b',');
    prefix
}

/// A user's tokens for one provider.
#[derive(Clone, Debug)]
pub struct TokenSet {
    /// The access token.
    pub access_token: Secret,
    /// The refresh token, if the provider issued one.
    pub refresh_token: Option<Secret>,
    /// When the access token expires (Unix seconds).
    pub expires_at: Option<u64>,
    /// The scopes granted.
    pub scopes: Vec<String>,
}

/// What `list` shows of a record: never token bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordMeta {
    /// The tenant.
    pub tenant: String,
    /// The user's issuer.
    pub issuer: String,
    /// The user's subject.
    pub subject: String,
    /// The provider.
    pub provider: String,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// When the access token expires (Unix seconds).
    pub expires_at: Option<u64>,
    /// When the record was first stored (Unix seconds).
    pub created_at: u64,
    /// When it was last stored.
    pub updated_at: u64,
    /// The data key version it is sealed under.
    pub key_version: u32,
    /// Whether it holds a refresh token.
    pub has_refresh_token: bool,
}

/// A record's metadata as stored: in the clear (so `list` never decrypts)
/// but bound into the associated data, so a changed field fails to open.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredMeta {
    scopes: Vec<String>,
    expires_at: Option<u64>,
    created_at: u64,
    updated_at: u64,
    has_refresh_token: bool,
}

impl StoredMeta {
    /// The metadata of `tokens` replacing the record `old` (whose
    /// `created_at` is kept).
    fn of(tokens: &TokenSet, old: Option<&[u8]>) -> Self {
        let now = now();
        let created_at = old
            .and_then(|bytes| serde_json::from_slice::<RecordDoc>(bytes).ok())
            .map_or(now, |doc| doc.meta.created_at);
        StoredMeta {
            scopes: tokens.scopes.clone(),
            expires_at: tokens.expires_at,
            created_at,
            updated_at: now,
            has_refresh_token: tokens.refresh_token.is_some(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RecordDoc {
    key_version: u32,
    meta: StoredMeta,
    sealed: Sealed,
}

#[derive(Serialize, Deserialize)]
struct SecretDoc {
    key_version: u32,
    updated_at: u64,
    sealed: Sealed,
}

/// The sealed part of a record.
#[derive(Serialize, Deserialize)]
struct RecordPlain<'a> {
    access_token: &'a str,
    refresh_token: Option<&'a str>,
}

#[derive(Deserialize)]
struct RecordPlainOwned {
    access_token: String,
    refresh_token: Option<String>,
}

fn record_aad(key: &RecordKey, version: u32, meta: &StoredMeta) -> Vec<u8> {
    serde_json::to_vec(&(
        "airlock-vault-record-v1",
        (&key.tenant, &key.issuer, &key.subject, &key.provider),
        version,
        meta,
    ))
    .unwrap_or_default()
}

fn secret_aad(tenant: &str, name: &str, version: u32, updated_at: u64) -> Vec<u8> {
    serde_json::to_vec(&("airlock-vault-secret-v1", tenant, name, version, updated_at))
        .unwrap_or_default()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

const BINDING: &str = "it was altered, or copied from another tenant, user, provider or name, \
                       or relabelled with another key version";

/// The key state every operation reads and rotations change.
struct State {
    doc: KeyringDoc,
    /// The master keys new data keys are wrapped under; the first is the
    /// one in the key file (a second exists only while the master rotates).
    masters: Vec<MasterKey>,
    tenants: std::collections::HashMap<String, TenantKeys>,
}

/// Which kind of sealed entry, for re-sealing.
#[derive(Clone, Copy)]
enum Kind {
    Record,
    Secret,
}

/// The vault. `Send + Sync`; share it as `Arc<Vault>`.
pub struct Vault {
    store: Arc<dyn VaultStore>,
    source: VaultKeySource,
    state: RwLock<State>,
    /// One rotation at a time.
    rotation: Mutex<()>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The outcome of [`Vault::disconnect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Disconnect {
    /// The record was removed.
    Removed(RecordKey),
    /// No such record.
    NotFound,
    /// The subject has records for the provider under several issuers: the
    /// caller must name one.
    Ambiguous(Vec<String>),
}

impl Vault {
    /// Open the vault in `storage` with the master key from `key`. A missing
    /// or wrong key fails here, naming the file or variable, and changes
    /// nothing on disk. A vault left mid-master-rotation by a crash opens
    /// with either key and finishes (or undoes) the rotation.
    pub fn open(storage: &Storage, key: &VaultKeySource) -> Result<Vault, VaultError> {
        let master = MasterKey::load(key)?;
        Self::open_store(Arc::new(StorageVaultStore::new(storage)?), key, master)
    }

    /// Open the vault over any store with an already loaded master key.
    pub fn open_store(
        store: Arc<dyn VaultStore>,
        source: &VaultKeySource,
        master: MasterKey,
    ) -> Result<Vault, VaultError> {
        let fp = master.fingerprint();
        let doc = match store.get(Space::Keys, KEYRING_KEY)? {
            Some(bytes) => {
                serde_json::from_slice::<KeyringDoc>(&bytes).map_err(|e| VaultError::Corrupt {
                    what: "key ring".into(),
                    reason: e.to_string(),
                })?
            }
            None => {
                let doc = KeyringDoc {
                    masters: vec![fp.clone()],
                    tenants: BTreeMap::new(),
                };
                put_doc(store.as_ref(), &doc)?;
                doc
            }
        };
        if !doc.masters.contains(&fp) {
            return Err(VaultError::WrongMasterKey {
                key_source: describe_source(source),
                given: fp,
                expected: doc.masters.join(" or "),
            });
        }
        let tenants = keyring::unwrap_all(&doc, &master)?;
        // Finish what a crash interrupted: keep only this key's wrappings.
        let mut cleaned = doc.clone();
        cleaned.masters = vec![fp.clone()];
        for tenant in cleaned.tenants.values_mut() {
            for wrapped in tenant.versions.values_mut() {
                wrapped.retain(|f, _| *f == fp);
            }
        }
        let doc = if serde_json::to_value(&cleaned).ok() != serde_json::to_value(&doc).ok() {
            put_doc(store.as_ref(), &cleaned)?;
            cleaned
        } else {
            doc
        };
        if let VaultKeySource::File(path) = source {
            let _ = std::fs::remove_file(master::temp_path(path));
        }
        Ok(Vault {
            store,
            source: source.clone(),
            state: RwLock::new(State {
                doc,
                masters: vec![master],
                tenants,
            }),
            rotation: Mutex::new(()),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic cannot leave the state half-changed: every change is
        // computed first, then assigned.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The tokens stored at `key`.
    pub fn get(&self, key: &RecordKey) -> Result<Option<TokenSet>, VaultError> {
        let state = self.read();
        let Some(bytes) = self.store.get(Space::Records, &key.encode())? else {
            return Ok(None);
        };
        open_record(&state, key, &bytes).map(Some)
    }

    /// Store `tokens` at `key`, keeping the record's `created_at`.
    pub fn put(&self, key: &RecordKey, tokens: &TokenSet) -> Result<(), VaultError> {
        let state = self.tenant_ready(&key.tenant)?;
        let stored_key = key.encode();
        let old = self.store.get(Space::Records, &stored_key)?;
        let bytes = seal_record(&state, key, StoredMeta::of(tokens, old.as_deref()), tokens)?;
        self.store.put(Space::Records, &stored_key, &bytes)
    }

    /// Replace the record at `key` with `tokens` (`None`: remove it), only
    /// if it still holds the access token `expected`; whether it did. A
    /// refresh that raced a disconnect or a new connection changes nothing.
    pub fn replace_if(
        &self,
        key: &RecordKey,
        expected: &Secret,
        tokens: Option<&TokenSet>,
    ) -> Result<bool, VaultError> {
        let stored_key = key.encode();
        // A rotation may re-seal the record meanwhile (same tokens, other
        // bytes): then read it again.
        for _ in 0..8 {
            let state = self.tenant_ready(&key.tenant)?;
            let Some(old) = self.store.get(Space::Records, &stored_key)? else {
                return Ok(false);
            };
            let current = open_record(&state, key, &old)?;
            if current.access_token.expose() != expected.expose() {
                return Ok(false);
            }
            let new = match tokens {
                Some(tokens) => Some(seal_record(
                    &state,
                    key,
                    StoredMeta::of(tokens, Some(&old)),
                    tokens,
                )?),
                None => None,
            };
            if self.store.compare_and_swap(
                Space::Records,
                &stored_key,
                Some(&old),
                new.as_deref(),
            )? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Remove the record at `key`; whether there was one.
    pub fn remove(&self, key: &RecordKey) -> Result<bool, VaultError> {
        self.store.remove(Space::Records, &key.encode())
    }

    /// The metadata of `tenant`'s records (of one subject if given), sorted
    /// by subject, issuer, provider. Decrypts nothing.
    pub fn list(&self, tenant: &str, subject: Option<&str>) -> Result<Vec<RecordMeta>, VaultError> {
        let mut out = Vec::new();
        for (k, v) in self
            .store
            .scan_prefix(Space::Records, &tenant_prefix(tenant))?
        {
            let key = RecordKey::decode(&k).ok_or_else(|| VaultError::Corrupt {
                what: format!("key {}", String::from_utf8_lossy(&k)),
                reason: "not a record key".into(),
            })?;
            if subject.is_some_and(|s| s != key.subject) {
                continue;
            }
            let doc: RecordDoc = serde_json::from_slice(&v).map_err(|e| VaultError::Corrupt {
                what: key.describe(),
                reason: e.to_string(),
            })?;
            out.push(RecordMeta {
                tenant: key.tenant,
                issuer: key.issuer,
                subject: key.subject,
                provider: key.provider,
                scopes: doc.meta.scopes,
                expires_at: doc.meta.expires_at,
                created_at: doc.meta.created_at,
                updated_at: doc.meta.updated_at,
                key_version: doc.key_version,
                has_refresh_token: doc.meta.has_refresh_token,
            });
        }
        out.sort_by(|a, b| {
            (&a.subject, &a.issuer, &a.provider).cmp(&(&b.subject, &b.issuer, &b.provider))
        });
        Ok(out)
    }

    /// Remove `subject`'s record for `provider`. Without an issuer, the
    /// subject's records for the provider must be under one issuer only.
    pub fn disconnect(
        &self,
        tenant: &str,
        subject: &str,
        provider: &str,
        issuer: Option<&str>,
    ) -> Result<Disconnect, VaultError> {
        let key = match issuer {
            Some(issuer) => RecordKey {
                tenant: tenant.into(),
                issuer: issuer.into(),
                subject: subject.into(),
                provider: provider.into(),
            },
            None => {
                let mut found: Vec<RecordMeta> = self
                    .list(tenant, Some(subject))?
                    .into_iter()
                    .filter(|m| m.provider == provider)
                    .collect();
                match found.len() {
                    0 => return Ok(Disconnect::NotFound),
                    1 => {
                        let Some(m) = found.pop() else {
                            return Ok(Disconnect::NotFound);
                        };
                        RecordKey {
                            tenant: m.tenant,
                            issuer: m.issuer,
                            subject: m.subject,
                            provider: m.provider,
                        }
                    }
                    _ => {
                        return Ok(Disconnect::Ambiguous(
                            found.into_iter().map(|m| m.issuer).collect(),
                        ));
                    }
                }
            }
        };
        Ok(if self.remove(&key)? {
            Disconnect::Removed(key)
        } else {
            Disconnect::NotFound
        })
    }

    /// Store the operator secret `name` of `tenant`.
    pub fn put_secret(&self, tenant: &str, name: &str, secret: &Secret) -> Result<(), VaultError> {
        let state = self.tenant_ready(tenant)?;
        let bytes = seal_secret(&state, tenant, name, now(), secret.expose().as_bytes())?;
        self.store
            .put(Space::Secrets, &secret_key(tenant, name), &bytes)
    }

    /// The operator secret `name` of `tenant`.
    pub fn secret(&self, tenant: &str, name: &str) -> Result<Option<Secret>, VaultError> {
        let state = self.read();
        let Some(bytes) = self.store.get(Space::Secrets, &secret_key(tenant, name))? else {
            return Ok(None);
        };
        let plain = open_secret(&state, tenant, name, &bytes)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Corrupt {
            what: format!("the secret `{name}` of tenant `{tenant}`"),
            reason: "not UTF-8".into(),
        })?;
        Ok(Some(Secret::new(text)))
    }

    /// Remove the operator secret `name` of `tenant`; whether there was one.
    pub fn remove_secret(&self, tenant: &str, name: &str) -> Result<bool, VaultError> {
        self.store.remove(Space::Secrets, &secret_key(tenant, name))
    }

    /// The read lock, once `tenant` has a data key (created on first use).
    fn tenant_ready(&self, tenant: &str) -> Result<RwLockReadGuard<'_, State>, VaultError> {
        {
            let state = self.read();
            if state.tenants.contains_key(tenant) {
                return Ok(state);
            }
        }
        {
            let mut state = self.write();
            if !state.tenants.contains_key(tenant) {
                self.add_version(&mut state, tenant)?;
            }
        }
        Ok(self.read())
    }

    /// Make a new data key version current for `tenant`, wrapped under
    /// every master key, stored before it is used. Returns the version.
    fn add_version(&self, state: &mut State, tenant: &str) -> Result<u32, VaultError> {
        let version = state
            .tenants
            .get(tenant)
            .and_then(|t| t.keys.keys().next_back().copied())
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| VaultError::Crypto("data key versions exhausted".into()))?;
        let key = DataKey::generate()?;
        let mut doc = state.doc.clone();
        let tdoc = doc.tenants.entry(tenant.to_string()).or_default();
        let mut wrapped = BTreeMap::new();
        for master in &state.masters {
            wrapped.insert(
                master.fingerprint(),
                keyring::wrap(master, tenant, version, &key)?,
            );
        }
        tdoc.versions.insert(version, wrapped);
        tdoc.current = version;
        put_doc(self.store.as_ref(), &doc)?;
        state.doc = doc;
        let keys = state
            .tenants
            .entry(tenant.to_string())
            .or_insert_with(|| TenantKeys {
                current: version,
                keys: BTreeMap::new(),
            });
        keys.keys.insert(version, key);
        keys.current = version;
        Ok(version)
    }

    /// Make a new data key current for `tenant`, re-seal every record and
    /// secret of the tenant under it, then drop the old versions. Runs
    /// beside concurrent `get`/`put`. Returns how many values were re-sealed.
    pub fn rotate_tenant_key(&self, tenant: &str) -> Result<usize, VaultError> {
        let _one = self.rotation.lock().unwrap_or_else(PoisonError::into_inner);
        let version = {
            let mut state = self.write();
            self.add_version(&mut state, tenant)?
        };
        let mut resealed = 0;
        for kind in [Kind::Record, Kind::Secret] {
            for (k, _) in self
                .store
                .scan_prefix(kind.space(), &tenant_prefix(tenant))?
            {
                let state = self.read();
                if self.reseal(&state, kind, &k, version)? {
                    resealed += 1;
                }
            }
        }
        let mut state = self.write();
        // Nothing can still be sealed under an old version (writes since the
        // new one was made use it); check anyway before dropping them.
        for kind in [Kind::Record, Kind::Secret] {
            for (k, _) in self
                .store
                .scan_prefix(kind.space(), &tenant_prefix(tenant))?
            {
                if self.reseal(&state, kind, &k, version)? {
                    resealed += 1;
                }
            }
        }
        let mut doc = state.doc.clone();
        if let Some(tdoc) = doc.tenants.get_mut(tenant) {
            tdoc.versions.retain(|v, _| *v == version);
        }
        put_doc(self.store.as_ref(), &doc)?;
        state.doc = doc;
        if let Some(keys) = state.tenants.get_mut(tenant) {
            keys.keys.retain(|v, _| *v == version);
        }
        Ok(resealed)
    }

    /// Re-seal the value at `stored_key` under `version` unless it already
    /// is, swapping only if it did not change meanwhile (else retrying on
    /// the new value). Whether it re-sealed. A value that does not open
    /// (altered, or planted under a key it does not belong to) cannot be
    /// re-sealed and already opens for no one: it is skipped with a warning
    /// naming it, and stays unopenable.
    fn reseal(
        &self,
        state: &State,
        kind: Kind,
        stored_key: &[u8],
        version: u32,
    ) -> Result<bool, VaultError> {
        match self.reseal_once(state, kind, stored_key, version) {
            Err(e @ (VaultError::Undecryptable { .. } | VaultError::Corrupt { .. })) => {
                tracing::warn!(error = %e, "vault rotation: skipped a value that does not open");
                Ok(false)
            }
            other => other,
        }
    }

    fn reseal_once(
        &self,
        state: &State,
        kind: Kind,
        stored_key: &[u8],
        version: u32,
    ) -> Result<bool, VaultError> {
        loop {
            let Some(old) = self.store.get(kind.space(), stored_key)? else {
                return Ok(false);
            };
            let new = match kind {
                Kind::Record => {
                    let key = RecordKey::decode(stored_key).ok_or_else(|| VaultError::Corrupt {
                        what: format!("key {}", String::from_utf8_lossy(stored_key)),
                        reason: "not a record key".into(),
                    })?;
                    let doc = decode_record(&key, &old)?;
                    if doc.key_version == version {
                        return Ok(false);
                    }
                    let tokens = open_record(state, &key, &old)?;
                    seal_record(state, &key, doc.meta, &tokens)?
                }
                Kind::Secret => {
                    let (tenant, name): (String, String) = serde_json::from_slice(stored_key)
                        .map_err(|e| VaultError::Corrupt {
                            what: format!("key {}", String::from_utf8_lossy(stored_key)),
                            reason: e.to_string(),
                        })?;
                    let doc = decode_secret(&tenant, &name, &old)?;
                    if doc.key_version == version {
                        return Ok(false);
                    }
                    let plain = open_secret(state, &tenant, &name, &old)?;
                    seal_secret(state, &tenant, &name, doc.updated_at, &plain)?
                }
            };
            if self
                .store
                .compare_and_swap(kind.space(), stored_key, Some(&old), Some(&new))?
            {
                return Ok(true);
            }
        }
    }

    /// Replace the master key: wrap every data key under a new key as well
    /// as the old, atomically replace the key file, then drop the old
    /// wrappings. A crash at any point leaves a vault that opens with the
    /// key file on disk. Refused for a key from an environment variable.
    pub fn rotate_master_key(&self) -> Result<(), VaultError> {
        let path = match &self.source {
            VaultKeySource::File(path) => path.clone(),
            VaultKeySource::Env(var) => return Err(VaultError::EnvKeyRotation(var.clone())),
        };
        let _one = self.rotation.lock().unwrap_or_else(PoisonError::into_inner);
        let new = MasterKey::generate()?;
        let new_fp = new.fingerprint();
        {
            let mut state = self.write();
            let mut doc = state.doc.clone();
            for (tenant, tdoc) in &mut doc.tenants {
                let keys = state.tenants.get(tenant);
                for (version, wrapped) in &mut tdoc.versions {
                    let key = keys.and_then(|k| k.keys.get(version)).ok_or_else(|| {
                        VaultError::Crypto(format!(
                            "data key version {version} of tenant `{tenant}` is not loaded"
                        ))
                    })?;
                    wrapped.insert(new_fp.clone(), keyring::wrap(&new, tenant, *version, key)?);
                }
            }
            doc.masters.push(new_fp.clone());
            put_doc(self.store.as_ref(), &doc)?;
            state.doc = doc;
            state.masters.push(new.clone());
        }
        if let Err(e) = new.write_file(&path, true) {
            // The rename may have happened before a later step failed: go by
            // what the file now holds.
            let on_disk = MasterKey::load(&self.source).map(|k| k.fingerprint());
            if on_disk.ok().as_deref() != Some(new_fp.as_str()) {
                let mut state = self.write();
                let mut doc = state.doc.clone();
                drop_wrappings(&mut doc, |fp| fp != new_fp);
                put_doc(self.store.as_ref(), &doc)?;
                state.doc = doc;
                state.masters.retain(|m| m.fingerprint() != new_fp);
                return Err(e);
            }
        }
        let mut state = self.write();
        let mut doc = state.doc.clone();
        drop_wrappings(&mut doc, |fp| fp == new_fp);
        put_doc(self.store.as_ref(), &doc)?;
        state.doc = doc;
        state.masters = vec![new];
        Ok(())
    }

    /// The fingerprint of the master key in use.
    pub fn master_fingerprint(&self) -> String {
        self.read()
            .masters
            .first()
            .map(MasterKey::fingerprint)
            .unwrap_or_default()
    }

    /// The data key versions `tenant` has (one, except during a rotation).
    pub fn key_versions(&self, tenant: &str) -> Vec<u32> {
        self.read()
            .tenants
            .get(tenant)
            .map(|t| t.keys.keys().copied().collect())
            .unwrap_or_default()
    }
}

impl Kind {
    fn space(self) -> Space {
        match self {
            Kind::Record => Space::Records,
            Kind::Secret => Space::Secrets,
        }
    }
}

/// Keep only the wrappings (and master fingerprints) for which `keep` holds.
fn drop_wrappings(doc: &mut KeyringDoc, keep: impl Fn(&str) -> bool) {
    doc.masters.retain(|fp| keep(fp));
    for tdoc in doc.tenants.values_mut() {
        for wrapped in tdoc.versions.values_mut() {
            wrapped.retain(|fp, _| keep(fp));
        }
    }
}

fn put_doc(store: &dyn VaultStore, doc: &KeyringDoc) -> Result<(), VaultError> {
    let bytes = serde_json::to_vec(doc).map_err(|e| VaultError::Corrupt {
        what: "key ring".into(),
        reason: e.to_string(),
    })?;
    store.put(Space::Keys, KEYRING_KEY, &bytes)
}

fn describe_source(source: &VaultKeySource) -> String {
    match source {
        VaultKeySource::File(path) => format!("the key file {}", path.display()),
        VaultKeySource::Env(var) => format!("the environment variable {var}"),
    }
}

fn secret_key(tenant: &str, name: &str) -> Vec<u8> {
    serde_json::to_vec(&(tenant, name)).unwrap_or_default()
}

/// The data key `version` of `tenant`, or an error naming `what`.
fn data_key<'a>(
    state: &'a State,
    tenant: &str,
    version: u32,
    what: impl FnOnce() -> String,
) -> Result<&'a DataKey, VaultError> {
    state
        .tenants
        .get(tenant)
        .and_then(|t| t.keys.get(&version))
        .ok_or_else(|| VaultError::Undecryptable {
            what: what(),
            reason: format!("tenant `{tenant}` has no data key version {version}; {BINDING}"),
        })
}

fn current_key<'a>(state: &'a State, tenant: &str) -> Result<(u32, &'a DataKey), VaultError> {
    state
        .tenants
        .get(tenant)
        .and_then(TenantKeys::current)
        .ok_or_else(|| VaultError::Crypto(format!("tenant `{tenant}` has no data key")))
}

fn decode_record(key: &RecordKey, bytes: &[u8]) -> Result<RecordDoc, VaultError> {
    serde_json::from_slice(bytes).map_err(|e| VaultError::Corrupt {
        what: key.describe(),
        reason: e.to_string(),
    })
}

fn decode_secret(tenant: &str, name: &str, bytes: &[u8]) -> Result<SecretDoc, VaultError> {
    serde_json::from_slice(bytes).map_err(|e| VaultError::Corrupt {
        what: format!("the secret `{name}` of tenant `{tenant}`"),
        reason: e.to_string(),
    })
}

fn seal_record(
    state: &State,
    key: &RecordKey,
    meta: StoredMeta,
    tokens: &TokenSet,
) -> Result<Vec<u8>, VaultError> {
    let (version, data_key) = current_key(state, &key.tenant)?;
    let plain = RecordPlain {
        access_token: tokens.access_token.expose(),
        refresh_token: tokens.refresh_token.as_ref().map(Secret::expose),
    };
    let capacity =
        64 + plain.access_token.len() * 2 + plain.refresh_token.map_or(0, |r| r.len() * 2);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    serde_json::to_writer(&mut *bytes, &plain).map_err(|e| VaultError::Crypto(e.to_string()))?;
    let sealed = data_key.seal(&bytes, &record_aad(key, version, &meta))?;
    serde_json::to_vec(&RecordDoc {
        key_version: version,
        meta,
        sealed,
    })
    .map_err(|e| VaultError::Crypto(e.to_string()))
}

fn open_record(state: &State, key: &RecordKey, bytes: &[u8]) -> Result<TokenSet, VaultError> {
    let doc = decode_record(key, bytes)?;
    let data_key = data_key(state, &key.tenant, doc.key_version, || key.describe())?;
    let plain = data_key
        .open(&doc.sealed, &record_aad(key, doc.key_version, &doc.meta))
        .ok_or_else(|| VaultError::Undecryptable {
            what: key.describe(),
            reason: BINDING.into(),
        })?;
    let tokens: RecordPlainOwned =
        serde_json::from_slice(&plain).map_err(|_| VaultError::Corrupt {
            what: key.describe(),
            reason: "the opened record is not a token set".into(),
        })?;
    Ok(TokenSet {
        access_token: Secret::new(tokens.access_token),
        refresh_token: tokens.refresh_token.map(Secret::new),
        expires_at: doc.meta.expires_at,
        scopes: doc.meta.scopes,
    })
}

fn seal_secret(
    state: &State,
    tenant: &str,
    name: &str,
    updated_at: u64,
    plain: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let (version, data_key) = current_key(state, tenant)?;
    let sealed = data_key.seal(plain, &secret_aad(tenant, name, version, updated_at))?;
    serde_json::to_vec(&SecretDoc {
        key_version: version,
        updated_at,
        sealed,
    })
    .map_err(|e| VaultError::Crypto(e.to_string()))
}

fn open_secret(
    state: &State,
    tenant: &str,
    name: &str,
    bytes: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let what = || format!("the secret `{name}` of tenant `{tenant}`");
    let doc = decode_secret(tenant, name, bytes)?;
    let data_key = data_key(state, tenant, doc.key_version, what)?;
    data_key
        .open(
            &doc.sealed,
            &secret_aad(tenant, name, doc.key_version, doc.updated_at),
        )
        .ok_or_else(|| VaultError::Undecryptable {
            what: what(),
            reason: BINDING.into(),
        })
}

#[cfg(test)]
mod tests;
