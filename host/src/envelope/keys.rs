//! The host's Ed25519 key ring: the keys that sign envelopes (and audit
//! checkpoints), kept in one owner-only directory.
//!
//! Layout (the directory is 0700, every file 0600, every file written to a
//! temporary name, synced, then renamed into place):
//!
//! - `ring.json` — every key the ring ever had, `{kid, public, created_at,
//!   retired_at}`, in creation order. Exactly one key has no `retired_at`: the
//!   active key, the only one that signs. Public halves are never removed, so
//!   old signatures stay verifiable offline ([`PublicKeys`]).
//! - `{kid}.key` — a private key as PKCS#8 DER. Only the active key's file is
//!   ever read. A rotation deletes the files of keys retired by an earlier
//!   rotation: nothing signs with a retired key.
//! - `ring.lock` — serializes the processes that change the ring.
//!
//! A running host notices a rotation (done by `airlock keys rotate`) by
//! looking at `ring.json`'s metadata at most once per [`CHECK_INTERVAL`];
//! signing itself touches no file.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const RING_FILE: &str = "ring.json";
const LOCK_FILE: &str = "ring.lock";
const RING_VERSION: u32 = 1;

/// How often a running ring looks for a rotation.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Extra time a retired key stays in the JWKS after the last envelope it
/// signed has expired: covers a host noticing a rotation up to
/// [`CHECK_INTERVAL`] late and verifiers that allow some clock skew.
pub const PUBLICATION_GRACE_SECS: u64 = 60;

/// Why the key ring cannot be used or changed. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// There is no ring in the directory.
    #[error("no key ring at {path} (a host creates one when it first starts)")]
    NotFound {
        /// The `ring.json` that is missing.
        path: PathBuf,
    },
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file of the ring does not hold what it should.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `ring.json` is missing but private keys are there: creating a new ring
    /// would silently orphan them.
    #[error(
        "{dir} holds private keys but no ring.json; restore ring.json or move the key files away"
    )]
    Orphaned {
        /// The ring directory.
        dir: PathBuf,
    },
    /// The operating system gave no randomness for a new key.
    #[error("no randomness for a new key: {0}")]
    Random(String),
    /// A key or document could not be encoded.
    #[error("cannot encode {0}")]
    Encode(String),
    /// The envelope has expired: signing it would only produce a token every
    /// service refuses.
    #[error("envelope {envelope_id} expired at {expires_at}; it is not signed")]
    EnvelopeExpired {
        /// The envelope.
        envelope_id: String,
        /// Its expiry, seconds since the Unix epoch.
        expires_at: u64,
    },
}

/// One key of the ring, as `airlock keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key id (base64url of the first 12 bytes of SHA-256 of the public key).
    pub kid: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
    /// Retirement time, for every key but the active one.
    pub retired_at: Option<u64>,
    /// Whether this key signs.
    pub active: bool,
}

impl KeyInfo {
    /// The last second at which the JWKS publishes this key, given the longest
    /// lifetime an envelope can have; `None` for the active key (always published).
    pub fn published_until(&self, max_envelope_lifetime: u64) -> Option<u64> {
        published_until(self.retired_at, max_envelope_lifetime)
    }
}

fn published_until(retired_at: Option<u64>, max_envelope_lifetime: u64) -> Option<u64> {
    retired_at.map(|at| {
        at.saturating_add(max_envelope_lifetime)
            .saturating_add(PUBLICATION_GRACE_SECS)
    })
}

/// `ring.json` as stored.
#[derive(Serialize, Deserialize)]
struct RingFile {
    version: u32,
    keys: Vec<KeyRecord>,
}

#[derive(Clone, Serialize, Deserialize)]
struct KeyRecord {
    kid: String,
    /// The raw public key, base64url.
    public: String,
    created_at: u64,
    retired_at: Option<u64>,
}

/// A key id: base64url of the first 12 bytes of SHA-256 of the public key.
fn kid_of(public: &VerifyingKey) -> String {
    let digest = Sha256::digest(public.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.get(..12).unwrap_or_default())
}

/// One public key of the ring.
#[derive(Debug, Clone)]
struct PublicKey {
    kid: String,
    key: VerifyingKey,
    created_at: u64,
    retired_at: Option<u64>,
}

/// Every public key a ring ever had, read from `ring.json` alone: what
/// verifying old signatures offline needs (`airlock audit verify`).
#[derive(Debug, Clone)]
pub struct PublicKeys {
    /// In creation order; exactly one without `retired_at`.
    keys: Vec<PublicKey>,
}

impl PublicKeys {
    /// Read the public keys of the ring in `dir`. Changes nothing on disk.
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join(RING_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(KeyError::NotFound { path }),
            Err(source) => return Err(KeyError::Read { path, source }),
        };
        Self::parse(&path, &bytes)
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Self, KeyError> {
        let corrupt = |reason: String| KeyError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let file: RingFile = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if file.version != RING_VERSION {
            return Err(corrupt(format!(
                "version {} is not {RING_VERSION}, the one this airlock knows",
                file.version
            )));
        }
        let mut keys: Vec<PublicKey> = Vec::with_capacity(file.keys.len());
        for record in file.keys {
            let raw = URL_SAFE_NO_PAD
                .decode(&record.public)
                .ok()
                .and_then(|raw| <[u8; 32]>::try_from(raw).ok())
                .ok_or_else(|| corrupt(format!("key {:?}: public is not 32 bytes", record.kid)))?;
            let key = VerifyingKey::from_bytes(&raw).map_err(|_| {
                corrupt(format!(
                    "key {:?}: public is not an Ed25519 key",
                    record.kid
                ))
            })?;
            // Kids name files: only ever accept the one derived from the key.
            if kid_of(&key) != record.kid {
                return Err(corrupt(format!(
                    "key {:?}: the kid does not match its public key",
                    record.kid
                )));
            }
            if keys.iter().any(|k| k.kid == record.kid) {
                return Err(corrupt(format!("key {:?} is listed twice", record.kid)));
            }
            keys.push(PublicKey {
                kid: record.kid,
                key,
                created_at: record.created_at,
                retired_at: record.retired_at,
            });
        }
        let active = keys.iter().filter(|k| k.retired_at.is_none()).count();
        if active != 1 {
            return Err(corrupt(format!(
                "{active} keys are active; exactly one must be"
            )));
        }
        Ok(PublicKeys { keys })
    }

    fn active(&self) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.retired_at.is_none())
    }

    /// Every key, in creation order.
    pub fn list(&self) -> Vec<KeyInfo> {
        self.keys
            .iter()
            .map(|k| KeyInfo {
                kid: k.kid.clone(),
                created_at: k.created_at,
                retired_at: k.retired_at,
                active: k.retired_at.is_none(),
            })
            .collect()
    }

    /// Whether `signature` is the signature of `msg` by the key `kid` (active
    /// or retired). Uses strict verification (no malleable signatures).
    pub fn verify(&self, kid: &str, msg: &[u8], signature: &[u8]) -> bool {
        let Some(key) = self.keys.iter().find(|k| k.kid == kid) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        key.key.verify_strict(msg, &signature).is_ok()
    }

    fn to_file(&self) -> RingFile {
        RingFile {
            version: RING_VERSION,
            keys: self
                .keys
                .iter()
                .map(|k| KeyRecord {
                    kid: k.kid.clone(),
                    public: URL_SAFE_NO_PAD.encode(k.key.as_bytes()),
                    created_at: k.created_at,
                    retired_at: k.retired_at,
                })
                .collect(),
        }
    }
}

/// What `ring.json` looked like when a snapshot was read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn fingerprint(path: &Path) -> Result<Fingerprint, KeyError> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(KeyError::NotFound {
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(KeyError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Fingerprint {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// The ring as loaded at one moment: the active private key and every public key.
pub(super) struct Snapshot {
    kid: String,
    signing: SigningKey,
    public: PublicKeys,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("Snapshot")
            .field("active", &self.kid)
            .field(
                "kids",
                &self.public.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    fn load(dir: &Path) -> Result<Self, KeyError> {
        let ring_path = dir.join(RING_FILE);
        // Metadata first: a rotation landing between the two reads then only
        // causes one needless reload, never a missed one.
        let fingerprint = fingerprint(&ring_path)?;
        let public = PublicKeys::load(dir)?;
        let Some(active) = public.active() else {
            return Err(KeyError::Corrupt {
                path: ring_path,
                reason: "no key is active".into(),
            });
        };
        let key_path = key_path(dir, &active.kid);
        let der = Zeroizing::new(fs::read(&key_path).map_err(|source| KeyError::Read {
            path: key_path.clone(),
            source,
        })?);
        let signing = SigningKey::from_pkcs8_der(&der).map_err(|_| KeyError::Corrupt {
            path: key_path.clone(),
            reason: "not an Ed25519 PKCS#8 private key".into(),
        })?;
        if signing.verifying_key() != active.key {
            return Err(KeyError::Corrupt {
                path: key_path,
                reason: format!("it is not the private half of key {}", active.kid),
            });
        }
        Ok(Snapshot {
            kid: active.kid.clone(),
            signing,
            public,
            fingerprint,
        })
    }

    /// The active key's id.
    pub(super) fn kid(&self) -> &str {
        &self.kid
    }

    /// Sign `msg` with the active key.
    pub(super) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }
}

fn key_path(dir: &Path, kid: &str) -> PathBuf {
    dir.join(format!("{kid}.key"))
}

/// The host's signing keys, shared by every request. Cheap to use: signing
/// reads memory only, after looking at `ring.json`'s metadata at most once a
/// second to pick up a rotation.
pub struct KeyRing {
    dir: PathBuf,
    current: RwLock<Arc<Snapshot>>,
    /// Milliseconds after `started` at which the next rotation check is due.
    next_check_ms: AtomicU64,
    started: Instant,
    check_interval: Duration,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key: only ids.
        let snapshot = self.snapshot();
        f.debug_struct("KeyRing")
            .field("dir", &self.dir)
            .field("active", &snapshot.kid)
            .field(
                "kids",
                &snapshot
                    .public
                    .keys
                    .iter()
                    .map(|k| &k.kid)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Where the envelope ring of a host with data directory `data_dir` lives.
    pub fn dir_in(data_dir: &Path) -> PathBuf {
        data_dir.join("keys").join("envelope")
    }

    /// Open the ring in `dir`, creating the directory (0700) and a first
    /// signing key when there is none. A corrupt or unreadable ring is an
    /// error naming the file, and nothing on disk is changed.
    pub fn open(dir: &Path) -> Result<Self, KeyError> {
        Self::open_checking_every(dir, CHECK_INTERVAL)
    }

    fn open_checking_every(dir: &Path, check_interval: Duration) -> Result<Self, KeyError> {
        let snapshot = match Snapshot::load(dir) {
            Ok(snapshot) => snapshot,
            Err(KeyError::NotFound { .. }) => {
                create_private_dir(dir)?;
                let _lock = lock(dir)?;
                // Another process may have created it while we waited.
                if !dir.join(RING_FILE).exists() {
                    create_ring(dir)?;
                }
                Snapshot::load(dir)?
            }
            Err(e) => return Err(e),
        };
        Ok(KeyRing {
            dir: dir.to_path_buf(),
            current: RwLock::new(Arc::new(snapshot)),
            next_check_ms: AtomicU64::new(duration_ms(check_interval)),
            started: Instant::now(),
            check_interval,
        })
    }

    /// Add a new active key to the ring in `dir` and retire the active one
    /// now; delete the private files of keys retired before. Safe while hosts
    /// use the ring: they switch keys within [`CHECK_INTERVAL`].
    pub fn rotate(dir: &Path) -> Result<KeyInfo, KeyError> {
        // Refuse a missing or corrupt ring before touching anything.
        PublicKeys::load(dir)?;
        let _lock = lock(dir)?;
        let ring = PublicKeys::load(dir)?;
        // Timestamps never go backwards within a ring, whatever the clock does.
        let now = ring
            .keys
            .iter()
            .flat_map(|k| [Some(k.created_at), k.retired_at])
            .flatten()
            .fold(super::unix_now(), u64::max);
        let retired_before: Vec<String> = ring
            .keys
            .iter()
            .filter(|k| k.retired_at.is_some())
            .map(|k| k.kid.clone())
            .collect();
        let (signing, new) = new_key(now)?;
        if ring.keys.iter().any(|k| k.kid == new.kid) {
            return Err(KeyError::Encode(
                "a new key: its kid is already in the ring".into(),
            ));
        }
        // The private half first: `ring.json` never names a missing key.
        write_key(dir, &new.kid, &signing)?;
        let mut keys = ring.keys;
        for key in &mut keys {
            if key.retired_at.is_none() {
                key.retired_at = Some(now);
            }
        }
        keys.push(new.clone());
        write_ring(dir, &PublicKeys { keys })?;
        for kid in retired_before {
            let path = key_path(dir, &kid);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(source) => return Err(KeyError::Write { path, source }),
            }
        }
        Ok(KeyInfo {
            kid: new.kid,
            created_at: new.created_at,
            retired_at: None,
            active: true,
        })
    }

    /// Every key of the ring in `dir`, in creation order. Changes nothing on disk.
    pub fn list(dir: &Path) -> Result<Vec<KeyInfo>, KeyError> {
        Ok(PublicKeys::load(dir)?.list())
    }

    /// The ring's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The id of the key that signs now.
    pub fn active_kid(&self) -> String {
        self.refresh_if_due();
        self.snapshot().kid.clone()
    }

    pub(super) fn snapshot(&self) -> Arc<Snapshot> {
        let guard = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&guard)
    }

    /// The snapshot to sign with, after a rotation check if one is due.
    pub(super) fn signer(&self) -> Arc<Snapshot> {
        self.refresh_if_due();
        self.snapshot()
    }

    /// Reload the ring if `ring.json` changed since it was read. Returns
    /// whether it did. On an error the ring keeps the keys it has.
    pub fn refresh(&self) -> Result<bool, KeyError> {
        let seen = fingerprint(&self.dir.join(RING_FILE))?;
        if seen == self.snapshot().fingerprint {
            return Ok(false);
        }
        let fresh = Arc::new(Snapshot::load(&self.dir)?);
        let mut guard = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = fresh;
        Ok(true)
    }

    /// [`KeyRing::refresh`], at most once per check interval across all
    /// threads; the other callers go on with the keys they have.
    pub fn refresh_if_due(&self) {
        let now = duration_ms(self.started.elapsed());
        let due = self.next_check_ms.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        let next = now.saturating_add(duration_ms(self.check_interval));
        if self
            .next_check_ms
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another thread is checking
        }
        if let Err(error) = self.refresh() {
            tracing::warn!(%error, "cannot reload the envelope key ring; keeping the loaded keys");
        }
    }

    /// The public keys to publish at `now`: the active key, and every retired
    /// key while an envelope it signed may still be unexpired (see
    /// [`KeyInfo::published_until`]).
    pub fn jwks(&self, now: u64, max_envelope_lifetime: u64) -> serde_json::Value {
        self.refresh_if_due();
        let snapshot = self.snapshot();
        // Active first, then the most recently retired.
        let keys: Vec<serde_json::Value> = snapshot
            .public
            .keys
            .iter()
            .rev()
            .filter(|k| {
                published_until(k.retired_at, max_envelope_lifetime).is_none_or(|end| now <= end)
            })
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(k.key.as_bytes()),
                    "kid": k.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Sign `msg` with the active key: its kid and the 64-byte signature.
    pub fn sign_bytes(&self, msg: &[u8]) -> (String, [u8; 64]) {
        let snapshot = self.signer();
        (snapshot.kid.clone(), snapshot.sign(msg))
    }

    /// Whether `signature` is the signature of `msg` by the ring's key `kid`,
    /// active or retired.
    pub fn verify_bytes(&self, kid: &str, msg: &[u8], signature: &[u8]) -> bool {
        self.refresh_if_due();
        self.snapshot().public.verify(kid, msg, signature)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A fresh signing key and its public entry, created `now`.
fn new_key(now: u64) -> Result<(SigningKey, PublicKey), KeyError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut_slice()).map_err(|e| KeyError::Random(e.to_string()))?;
    let signing = SigningKey::from_bytes(&seed);
    let key = signing.verifying_key();
    let public = PublicKey {
        kid: kid_of(&key),
        key,
        created_at: now,
        retired_at: None,
    };
    Ok((signing, public))
}

/// Write the private half of a new key to `{kid}.key`.
fn write_key(dir: &Path, kid: &str, signing: &SigningKey) -> Result<(), KeyError> {
    let der = signing
        .to_pkcs8_der()
        .map_err(|_| KeyError::Encode("a new key as PKCS#8".into()))?;
    write_private(dir, &format!("{kid}.key"), der.as_bytes())
}

/// A new ring in `dir` with one active key. The caller holds the lock.
fn create_ring(dir: &Path) -> Result<(), KeyError> {
    let entries = fs::read_dir(dir).map_err(|source| KeyError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| KeyError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.file_name().to_string_lossy().ends_with(".key") {
            return Err(KeyError::Orphaned {
                dir: dir.to_path_buf(),
            });
        }
    }
    let (signing, key) = new_key(super::unix_now())?;
    write_key(dir, &key.kid, &signing)?;
    write_ring(dir, &PublicKeys { keys: vec![key] })
}

fn write_ring(dir: &Path, ring: &PublicKeys) -> Result<(), KeyError> {
    let mut json = serde_json::to_vec_pretty(&ring.to_file())
        .map_err(|e| KeyError::Encode(format!("{RING_FILE}: {e}")))?;
    json.push(b'\n');
    write_private(dir, RING_FILE, &json)
}

/// Write `name` in `dir` atomically: a 0600 temporary file in the same
/// directory, synced, renamed over `name`, and the directory synced.
fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), KeyError> {
    let target = dir.join(name);
    let temp = dir.join(format!(".{name}.{}.tmp", super::random_id()));
    let written = (|| {
        let mut file = private_options().write(true).create_new(true).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, &target)?;
        sync_dir(dir)
    })();
    written.map_err(|source| {
        let _ = fs::remove_file(&temp);
        KeyError::Write {
            path: target,
            source,
        }
    })
}

/// Hold the ring's lock until the returned file is dropped.
fn lock(dir: &Path) -> Result<File, KeyError> {
    let path = dir.join(LOCK_FILE);
    let file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| KeyError::Write {
            path: path.clone(),
            source,
        })?;
    file.lock()
        .map_err(|source| KeyError::Write { path, source })?;
    Ok(file)
}

#[cfg(unix)]
fn private_options() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options.mode(0o600);
    options
}

#[cfg(not(unix))]
fn private_options() -> OpenOptions {
    OpenOptions::new()
}

fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| KeyError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests
mod tests {
    use super::*;

    fn kids(jwks: &serde_json::Value) -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    }

    /// Every file in `dir` with its bytes.
    fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[cfg(unix)]
    #[test]
    fn the_ring_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = KeyRing::dir_in(tmp.path());
        let ring = KeyRing::open(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(RING_FILE)), 0o600);
        assert_eq!(mode(&key_path(&dir, &ring.active_kid())), 0o600);
        KeyRing::rotate(&dir).unwrap();
        assert_eq!(contents(&dir).len(), 4, "ring.json, ring.lock, two keys");
        for (name, _) in contents(&dir) {
            assert_eq!(mode(&dir.join(&name)), 0o600, "{name}");
            assert!(!name.ends_with(".tmp"), "temporary file left: {name}");
        }
    }

    #[test]
    fn reopening_keeps_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let first = KeyRing::open(tmp.path()).unwrap();
        let again = KeyRing::open(tmp.path()).unwrap();
        assert_eq!(first.active_kid(), again.active_kid());
        assert_eq!(first.active_kid().len(), 16);
        let list = KeyRing::list(tmp.path()).unwrap();
        assert_eq!(list.len(), 1);
        assert!(list[0].active);
        assert_eq!(list[0].kid, first.active_kid());
    }

    #[test]
    fn rotation_retires_the_old_key_and_publishes_it_until_its_envelopes_expire() {
        let tmp = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(tmp.path()).unwrap();
        let old = ring.active_kid();
        let new = KeyRing::rotate(tmp.path()).unwrap();
        assert!(ring.refresh().unwrap());
        assert_ne!(new.kid, old);
        assert_eq!(ring.active_kid(), new.kid);

        let list = KeyRing::list(tmp.path()).unwrap();
        assert_eq!(list.len(), 2);
        let retired = list.iter().find(|k| k.kid == old).unwrap();
        let retired_at = retired.retired_at.unwrap();
        assert!(!retired.active);
        let lifetime = 90;
        let until = retired.published_until(lifetime).unwrap();
        assert_eq!(until, retired_at + lifetime + PUBLICATION_GRACE_SECS);

        assert_eq!(
            kids(&ring.jwks(retired_at, lifetime)),
            vec![new.kid.clone(), old.clone()]
        );
        assert_eq!(
            kids(&ring.jwks(until, lifetime)),
            vec![new.kid.clone(), old.clone()]
        );
        assert_eq!(kids(&ring.jwks(until + 1, lifetime)), vec![new.kid.clone()]);

        let jwk = &ring.jwks(retired_at, lifetime)["keys"][0];
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
    }

    #[test]
    fn a_second_rotation_deletes_only_private_halves_and_old_signatures_still_verify() {
        let tmp = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(tmp.path()).unwrap();
        let (first, signed) = ring.sign_bytes(b"checkpoint 1");
        KeyRing::rotate(tmp.path()).unwrap();
        assert!(key_path(tmp.path(), &first).exists(), "retired just now");
        let third = KeyRing::rotate(tmp.path()).unwrap();
        assert!(!key_path(tmp.path(), &first).exists());
        assert_eq!(KeyRing::list(tmp.path()).unwrap().len(), 3);

        let offline = PublicKeys::load(tmp.path()).unwrap();
        assert!(offline.verify(&first, b"checkpoint 1", &signed));
        assert!(!offline.verify(&first, b"checkpoint 2", &signed));
        assert!(!offline.verify(&third.kid, b"checkpoint 1", &signed));
        assert!(!offline.verify("nope", b"checkpoint 1", &signed));
        assert!(!offline.verify(&first, b"checkpoint 1", &signed[..63]));
        assert!(ring.verify_bytes(&first, b"checkpoint 1", &signed));

        // A reopened ring signs with the third key and verifies every key's signatures.
        let reopened = KeyRing::open(tmp.path()).unwrap();
        let (kid, signature) = reopened.sign_bytes(b"checkpoint 3");
        assert_eq!(kid, third.kid);
        assert!(reopened.verify_bytes(&first, b"checkpoint 1", &signed));
        assert!(reopened.verify_bytes(&kid, b"checkpoint 3", &signature));
        assert!(offline.verify(&kid, b"checkpoint 3", &signature));
    }

    #[test]
    fn a_running_ring_picks_up_a_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        // Checking on every use: the path signing takes, without waiting.
        let eager = KeyRing::open_checking_every(tmp.path(), Duration::ZERO).unwrap();
        // Checking once an hour: keeps the key it loaded.
        let lazy = KeyRing::open_checking_every(tmp.path(), Duration::from_secs(3600)).unwrap();
        assert!(!eager.refresh().unwrap(), "nothing changed yet");
        let (old, signed) = eager.sign_bytes(b"m");

        let new = KeyRing::rotate(tmp.path()).unwrap();
        assert_eq!(eager.sign_bytes(b"m").0, new.kid);
        assert_eq!(lazy.sign_bytes(b"m").0, old);
        assert!(lazy.refresh().unwrap());
        assert_eq!(lazy.sign_bytes(b"m").0, new.kid);
        // What the old key signed still verifies through the running ring.
        assert!(eager.verify_bytes(&old, b"m", &signed));
    }

    #[test]
    fn a_corrupt_ring_names_the_file_and_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(tmp.path()).unwrap();
        let ring_path = tmp.path().join(RING_FILE);
        for bad in [
            &b"{ not json"[..],
            br#"{"version":1,"keys":[]}"#,
            br#"{"version":2,"keys":[]}"#,
            br#"{"version":1,"keys":[{"kid":"../../x","public":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","created_at":1,"retired_at":null}]}"#,
        ] {
            fs::write(&ring_path, bad).unwrap();
            let before = contents(tmp.path());
            for error in [
                KeyRing::open(tmp.path()).unwrap_err(),
                KeyRing::rotate(tmp.path()).unwrap_err(),
                KeyRing::list(tmp.path()).unwrap_err(),
                ring.refresh().unwrap_err(),
            ] {
                assert!(matches!(error, KeyError::Corrupt { .. }), "{error}");
                assert!(
                    error.to_string().contains(&ring_path.display().to_string()),
                    "{error}"
                );
            }
            assert_eq!(contents(tmp.path()), before);
        }
        // The running ring kept its key.
        let (kid, signature) = ring.sign_bytes(b"m");
        assert!(ring.verify_bytes(&kid, b"m", &signature));

        // A private key that is not the listed one.
        let tmp = tempfile::tempdir().unwrap();
        let kid = KeyRing::open(tmp.path()).unwrap().active_kid();
        let other = tempfile::tempdir().unwrap();
        let other_kid = KeyRing::open(other.path()).unwrap().active_kid();
        fs::copy(
            key_path(other.path(), &other_kid),
            key_path(tmp.path(), &kid),
        )
        .unwrap();
        let error = KeyRing::open(tmp.path()).unwrap_err();
        assert!(error.to_string().contains(&format!("{kid}.key")), "{error}");
    }

    #[test]
    fn a_missing_ring_is_not_recreated_over_existing_keys() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            KeyRing::rotate(tmp.path()).unwrap_err(),
            KeyError::NotFound { .. }
        ));
        assert!(matches!(
            KeyRing::list(tmp.path()).unwrap_err(),
            KeyError::NotFound { .. }
        ));
        assert!(contents(tmp.path()).is_empty());
        KeyRing::open(tmp.path()).unwrap();
        fs::remove_file(tmp.path().join(RING_FILE)).unwrap();
        assert!(matches!(
            KeyRing::open(tmp.path()).unwrap_err(),
            KeyError::Orphaned { .. }
        ));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let tmp = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(tmp.path()).unwrap();
        let kid = ring.active_kid();
        let der = fs::read(key_path(tmp.path(), &kid)).unwrap();
        let signing = SigningKey::from_pkcs8_der(&der).unwrap();
        let seed = signing.to_bytes();
        let shown = format!("{ring:?} {ring:#?} {:?}", ring.snapshot());
        assert!(shown.contains(&kid));
        use base64::engine::general_purpose::STANDARD;
        for secret in [
            hex::encode(seed),
            hex::encode(&der),
            URL_SAFE_NO_PAD.encode(seed),
            STANDARD.encode(seed),
            STANDARD.encode(&der),
            format!("{seed:?}"),
            format!("{:?}", &seed[..4])
                .trim_end_matches(']')
                .to_string(),
        ] {
            assert!(!shown.contains(&secret), "Debug shows {secret}");
        }
    }
}
