//! The key ring as stored (one document, so every change to it is one atomic
//! write): the fingerprints of the master keys that wrap every data key, and
//! per tenant its data key versions, each wrapped under one or two master
//! keys (two only while the master key rotates). In memory: the unwrapped
//! data keys.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::VaultError;
use super::crypto::{DataKey, Sealed};
use super::master::MasterKey;

/// Where the key ring is stored in [`super::store::Space::Keys`].
pub(crate) const KEYRING_KEY: &[u8] = b"keyring";

/// The stored key ring.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct KeyringDoc {
    /// Fingerprints of the master keys under which every data key is
    /// wrapped: a key file holding any of them opens the vault.
    pub(crate) masters: Vec<String>,
    pub(crate) tenants: BTreeMap<String, TenantDoc>,
}

/// One tenant's data keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct TenantDoc {
    /// The version new seals use.
    pub(crate) current: u32,
    /// Version → master-key fingerprint → the wrapped data key.
    pub(crate) versions: BTreeMap<u32, BTreeMap<String, Sealed>>,
}

/// A tenant's unwrapped data keys.
#[derive(Clone)]
pub(crate) struct TenantKeys {
    pub(crate) current: u32,
    pub(crate) keys: BTreeMap<u32, DataKey>,
}

impl TenantKeys {
    pub(crate) fn current(&self) -> Option<(u32, &DataKey)> {
        self.keys.get(&self.current).map(|k| (self.current, k))
    }
}

/// Associated data of a wrapped data key: the tenant, the version and the
/// master key it is wrapped under.
fn wrap_aad(tenant: &str, version: u32, fingerprint: &str) -> Vec<u8> {
    serde_json::to_vec(&("airlock-vault-data-key-v1", tenant, version, fingerprint))
        .unwrap_or_default()
}

/// Wrap `key` (version `version` of `tenant`) under `master`.
pub(crate) fn wrap(
    master: &MasterKey,
    tenant: &str,
    version: u32,
    key: &DataKey,
) -> Result<Sealed, VaultError> {
    let fp = master.fingerprint();
    DataKey::from_bytes(master.bytes()).seal(key.bytes(), &wrap_aad(tenant, version, &fp))
}

/// Unwrap every tenant's data keys with `master`.
pub(crate) fn unwrap_all(
    doc: &KeyringDoc,
    master: &MasterKey,
) -> Result<HashMap<String, TenantKeys>, VaultError> {
    let fp = master.fingerprint();
    let wrapping = DataKey::from_bytes(master.bytes());
    let mut tenants = HashMap::new();
    for (tenant, tdoc) in &doc.tenants {
        let mut keys = BTreeMap::new();
        for (version, wrapped) in &tdoc.versions {
            let sealed = wrapped.get(&fp).ok_or_else(|| VaultError::Undecryptable {
                what: format!("data key version {version} of tenant `{tenant}`"),
                reason: format!("it is not wrapped under the master key {fp}"),
            })?;
            let key = wrapping
                .open(sealed, &wrap_aad(tenant, *version, &fp))
                .and_then(|plain| DataKey::from_slice(&plain))
                .ok_or_else(|| VaultError::Undecryptable {
                    what: format!("data key version {version} of tenant `{tenant}`"),
                    reason: "its wrapping was altered or belongs to another tenant or version"
                        .into(),
                })?;
            keys.insert(*version, key);
        }
        tenants.insert(
            tenant.clone(),
            TenantKeys {
                current: tdoc.current,
                keys,
            },
        );
    }
    Ok(tenants)
}
