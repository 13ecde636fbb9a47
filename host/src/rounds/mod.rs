//! Rounds of a tool call that asked the client for input: the only home of
//! `requestState`.
//!
//! A tool that needs input ends its instance; the next round runs a fresh
//! one. What it must remember travels through the client as `requestState`,
//! sealed here (XChaCha20-Poly1305 under the host's round key, through the
//! vault's sealing) and bound, as associated data, to the tenant, the
//! caller (issuer + subject, and the client and agent it came through), the
//! tool, the component's digest and a digest of the arguments, with an
//! expiry inside. A state that was changed, has expired, or belongs to
//! another user, client, tool, tenant or argument set does not open.
//!
//! A state opens once: the round that opens it marks it answered in a
//! ledger (`spent`), and the same state sent again is refused, so an answer
//! such as "yes, delete it" cannot be replayed. Only a round the host was
//! too busy to run gives its state back.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::storage::Tree;
use crate::vault::{DataKey, Sealed};

mod spent;

use spent::{ClaimError, Ledger, OWNER_LEN};
pub use spent::{MAX_SPENT, MAX_SPENT_PER_USER, Ticket};

/// How long a client may take to answer and retry.
pub const ROUND_TTL: Duration = Duration::from_secs(10 * 60);
/// Longest `requestState` accepted from a client, in characters.
pub const MAX_REQUEST_STATE: usize = 64 * 1024;
const NONCE_LEN: usize = 24;
const KEY_FILE_LEN: usize = 32;
const VERSION: &str = "r1";

/// Why a `requestState` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not a state this host issued, changed, or issued to another
    /// caller, tool, tenant or argument set (indistinguishable on purpose).
    #[error(
        "requestState is not valid for this call: it was changed, or was issued for another user, tool or arguments"
    )]
    Invalid,
    /// Older than [`ROUND_TTL`].
    #[error("requestState has expired; call the tool again without it")]
    Expired,
    /// Longer than [`MAX_REQUEST_STATE`].
    #[error("requestState is longer than {MAX_REQUEST_STATE} characters")]
    TooLong,
    /// Opened by an earlier round: each state is answered once.
    #[error("requestState was already answered; call the tool again without it")]
    Spent,
    /// The host cannot record answered states right now (too many were
    /// answered recently, by this user or in all, or its database failed).
    #[error("input rounds are unavailable on this host right now; try again later")]
    Unavailable,
}

/// A state that opened for its binding and is now marked answered.
#[derive(Debug)]
pub struct Opened {
    /// What the last round left.
    pub pending: Pending,
    /// Give to [`Rounds::release`] if the round does no work.
    pub ticket: Ticket,
}

/// Why the round key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RoundKeyError {
    /// Reading or writing the key file failed.
    #[error("round key {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a key.
    #[error(
        "round key {path} is not {KEY_FILE_LEN} bytes; remove it to make a new one (open rounds end)"
    )]
    Malformed {
        /// The file.
        path: std::path::PathBuf,
    },
    /// No randomness.
    #[error("no randomness for the round key: {0}")]
    Random(String),
}

/// Who and what a state is bound to.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The caller's issuer.
    pub issuer: &'a str,
    /// The caller's subject.
    pub subject: &'a str,
    /// The OAuth client the caller came through (`""` when the token names
    /// none): another application of the same user cannot answer.
    pub client: &'a str,
    /// The acting agent from the token's `act` claim (`""` when none).
    pub agent: &'a str,
    /// The tool.
    pub tool: &'a str,
    /// The digest of the component that runs it: a new version of the
    /// component starts afresh rather than read an older version's state.
    pub component: &'a str,
    /// The arguments object as JSON text, exactly as the tool receives it.
    pub arguments: &'a str,
}

impl Binding<'_> {
    /// A digest naming the user (tenant, issuer, subject), for the ledger's
    /// per-user count.
    fn owner(&self) -> [u8; OWNER_LEN] {
        let mut digest = Sha256::new();
        for part in [self.tenant, self.issuer, self.subject] {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part.as_bytes());
        }
        let mut owner = [0u8; OWNER_LEN];
        for (o, d) in owner.iter_mut().zip(digest.finalize()) {
            *o = d;
        }
        owner
    }

    fn aad(&self) -> Vec<u8> {
        let digest = Sha256::digest(self.arguments.as_bytes());
        let mut aad = Vec::with_capacity(128);
        for part in [
            "airlock request state 2",
            self.tenant,
            self.issuer,
            self.subject,
            self.client,
            self.agent,
            self.tool,
            self.component,
        ] {
            aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad.extend_from_slice(&digest);
        aad
    }
}

/// What a round left for the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pending {
    /// The tool asked for input under `keys`, with its own `state`.
    Tool {
        /// The keys it asked under (answers under other keys are dropped).
        keys: Vec<String>,
        /// The tool's state, returned to it unchanged.
        #[serde(with = "opt_b64")]
        state: Option<Vec<u8>>,
    },
    /// The host asked the user to connect an account (URL elicitation);
    /// the next round starts the call afresh.
    Connect,
}

#[derive(Serialize, Deserialize)]
struct Plain {
    /// Expiry, seconds since the Unix epoch.
    exp: u64,
    pending: Pending,
}

mod opt_b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_some(&B64.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| B64.decode(t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Seals and opens `requestState`. Cheap to share.
#[derive(Clone)]
pub struct Rounds {
    key: DataKey,
    ttl: Duration,
    spent: Ledger,
}

impl std::fmt::Debug for Rounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rounds")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Rounds {
    /// A key of this process only (states end with it).
    pub fn ephemeral() -> Result<Self, RoundKeyError> {
        Ok(Rounds {
            key: DataKey::generate().map_err(|e| RoundKeyError::Random(e.to_string()))?,
            ttl: ROUND_TTL,
            spent: Ledger::memory(),
        })
    }

    /// The key in `path` (32 random bytes, 0600), created when missing, so
    /// rounds survive a restart and hosts sharing the data directory accept
    /// each other's states.
    pub fn open_or_create(path: &Path) -> Result<Self, RoundKeyError> {
        let io = |source| RoundKeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = DataKey::generate().map_err(|e| RoundKeyError::Random(e.to_string()))?;
                write_new_private(path, key.bytes()).map_err(io)?;
                // Another process may have won the race: read what is there.
                std::fs::read(path).map_err(io)?
            }
            Err(e) => return Err(io(e)),
        };
        let key: &[u8; KEY_FILE_LEN] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| RoundKeyError::Malformed {
                    path: path.to_path_buf(),
                })?;
        Ok(Rounds {
            key: DataKey::from_bytes(key),
            ttl: ROUND_TTL,
            spent: Ledger::memory(),
        })
    }

    /// Record answered states in `tree` (the host's database), so a restart
    /// does not make them answerable again.
    pub fn with_ledger(mut self, tree: Tree) -> Self {
        self.spent = Ledger::stored(tree);
        self
    }

    /// The ledger with caps of `total` live entries and `per_user` per user.
    #[cfg(test)]
    fn with_spent_caps(mut self, total: usize, per_user: usize) -> Self {
        self.spent = self.spent.with_caps(total, per_user);
        self
    }

    /// The same key with states that live `ttl`.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Seal `pending` for `binding`, as the client will hold it.
    pub fn seal(&self, binding: &Binding<'_>, pending: Pending) -> Result<String, StateError> {
        let plain = Plain {
            exp: now().saturating_add(self.ttl.as_secs()),
            pending,
        };
        let json =
            zeroize::Zeroizing::new(serde_json::to_vec(&plain).map_err(|_| StateError::Invalid)?);
        let sealed = self
            .key
            .seal(&json, &binding.aad())
            .map_err(|_| StateError::Invalid)?;
        let mut raw = hex::decode(&sealed.nonce).map_err(|_| StateError::Invalid)?;
        raw.extend(hex::decode(&sealed.ciphertext).map_err(|_| StateError::Invalid)?);
        Ok(format!("{VERSION}.{}", B64URL.encode(raw)))
    }

    /// Open a state the client sent back for `binding`, and mark it
    /// answered: the same state does not open again.
    pub fn open(&self, binding: &Binding<'_>, token: &str) -> Result<Opened, StateError> {
        if token.len() > MAX_REQUEST_STATE {
            return Err(StateError::TooLong);
        }
        let body = token
            .strip_prefix(VERSION)
            .and_then(|t| t.strip_prefix('.'))
            .ok_or(StateError::Invalid)?;
        let raw = B64URL.decode(body).map_err(|_| StateError::Invalid)?;
        if raw.len() <= NONCE_LEN {
            return Err(StateError::Invalid);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let sealed = Sealed {
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        };
        let json = self
            .key
            .open(&sealed, &binding.aad())
            .ok_or(StateError::Invalid)?;
        let plain: Plain = serde_json::from_slice(&json).map_err(|_| StateError::Invalid)?;
        let now = now();
        if plain.exp < now {
            return Err(StateError::Expired);
        }
        let ticket = Ticket::new(plain.exp, nonce, binding.owner()).ok_or(StateError::Invalid)?;
        match self.spent.claim(ticket, now) {
            Ok(()) => Ok(Opened {
                pending: plain.pending,
                ticket,
            }),
            Err(ClaimError::Spent) => Err(StateError::Spent),
            Err(ClaimError::Full | ClaimError::Unavailable) => Err(StateError::Unavailable),
        }
    }

    /// Let the state behind `ticket` be sent again: its round did no work.
    pub fn release(&self, ticket: Ticket) {
        self.spent.release(ticket);
    }
}

fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(bytes)?;
            file.sync_all()
        }
        // Created meanwhile by another process: theirs is used.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
