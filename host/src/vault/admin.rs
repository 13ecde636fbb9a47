//! Managing a vault that a running host holds open: the admin requests
//! (`airlock vault ...`) as data, one function that carries them out, and a
//! Unix socket (`{data}/vault.sock`, 0600, only the host's own user) that
//! takes one JSON line in and gives one JSON line out.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::{Disconnect, RecordKey, RecordMeta, Secret, Vault, VaultError};

/// The longest request line the socket reads.
const MAX_REQUEST_BYTES: u64 = 1 << 20;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the CLI waits for an answer (a tenant rotation re-seals every
/// record of the tenant).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// The admin socket's path in a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("vault.sock")
}

/// A secret in transit to the socket: zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct SecretText(Zeroizing<String>);

impl SecretText {
    /// Wrap `value`.
    pub fn new(value: String) -> Self {
        SecretText(Zeroizing::new(value))
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

impl Serialize for SecretText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretText::new)
    }
}

/// One `airlock vault` command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AdminRequest {
    /// Metadata of a tenant's records.
    List {
        /// The tenant.
        tenant: String,
        /// Only this subject's.
        subject: Option<String>,
    },
    /// Remove a user's record for a provider.
    Disconnect {
        /// The tenant.
        tenant: String,
        /// The user's subject.
        subject: String,
        /// The provider.
        provider: String,
        /// The user's issuer, needed when the subject has records under
        /// several.
        issuer: Option<String>,
    },
    /// Store an operator secret.
    PutSecret {
        /// The tenant.
        tenant: String,
        /// The secret's name.
        name: String,
        /// The value.
        secret: SecretText,
    },
    /// Rotate a tenant's data key.
    RotateTenantKey {
        /// The tenant.
        tenant: String,
    },
    /// Rotate the master key.
    RotateMasterKey,
}

/// The answer to an [`AdminRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum AdminResponse {
    /// The records' metadata.
    Records {
        /// Sorted by subject, issuer, provider.
        records: Vec<RecordMeta>,
    },
    /// The record was removed.
    Disconnected {
        /// Which.
        key: RecordKey,
    },
    /// There is no such record.
    NotFound,
    /// The subject has records for the provider under these issuers.
    Ambiguous {
        /// The issuers.
        issuers: Vec<String>,
    },
    /// The secret was stored.
    SecretStored,
    /// The tenant's data key was rotated.
    TenantKeyRotated {
        /// The new version.
        version: u32,
        /// How many records and secrets were re-sealed.
        resealed: usize,
    },
    /// The master key was rotated.
    MasterKeyRotated {
        /// The new key's fingerprint.
        fingerprint: String,
    },
    /// The command failed.
    Error {
        /// Why (never secret bytes).
        message: String,
    },
}

/// Carry out `request` on `vault`.
pub fn handle(vault: &Vault, request: AdminRequest) -> AdminResponse {
    let result = match request {
        AdminRequest::List { tenant, subject } => vault
            .list(&tenant, subject.as_deref())
            .map(|records| AdminResponse::Records { records }),
        AdminRequest::Disconnect {
            tenant,
            subject,
            provider,
            issuer,
        } => vault
            .disconnect(&tenant, &subject, &provider, issuer.as_deref())
            .map(|d| match d {
                Disconnect::Removed(key) => AdminResponse::Disconnected { key },
                Disconnect::NotFound => AdminResponse::NotFound,
                Disconnect::Ambiguous(issuers) => AdminResponse::Ambiguous { issuers },
            }),
        AdminRequest::PutSecret {
            tenant,
            name,
            secret,
        } => {
            let secret = Secret::new(secret.0.to_string());
            vault
                .put_secret(&tenant, &name, &secret)
                .map(|()| AdminResponse::SecretStored)
        }
        AdminRequest::RotateTenantKey { tenant } => {
            vault
                .rotate_tenant_key(&tenant)
                .map(|resealed| AdminResponse::TenantKeyRotated {
                    version: vault.key_versions(&tenant).last().copied().unwrap_or(0),
                    resealed,
                })
        }
        AdminRequest::RotateMasterKey => {
            vault
                .rotate_master_key()
                .map(|()| AdminResponse::MasterKeyRotated {
                    fingerprint: vault.master_fingerprint(),
                })
        }
    };
    result.unwrap_or_else(|e| AdminResponse::Error {
        message: e.to_string(),
    })
}

fn admin_err(socket: &Path, what: &str, e: impl std::fmt::Display) -> VaultError {
    VaultError::Admin(format!(
        "vault admin socket {}: {what}: {e}",
        socket.display()
    ))
}

/// Serve the admin socket at `socket` until `shutdown`: removes a stale
/// socket first (refusing anything else at that path, symlinks included),
/// creates it 0600, answers only the host's own user, removes it at the end.
pub async fn serve_admin(
    vault: Arc<Vault>,
    socket: PathBuf,
    shutdown: CancellationToken,
) -> Result<(), VaultError> {
    match std::fs::symlink_metadata(&socket) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(&socket)
                .map_err(|e| admin_err(&socket, "cannot remove the stale socket", e))?;
        }
        Ok(_) => {
            return Err(VaultError::Admin(format!(
                "vault admin socket {}: what is there is not a socket (a file or a symlink); refusing to replace it",
                socket.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(admin_err(&socket, "cannot inspect", e)),
    }
    let listener = bind_private(&socket)?;
    // Defence in depth beside the 0600 mode: every connection must come
    // from this process's own user.
    let owner = rustix::process::geteuid().as_raw();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "vault admin socket: accept failed");
                        continue;
                    }
                };
                if stream.peer_cred().map(|c| c.uid()).ok() != Some(owner) {
                    tracing::warn!("vault admin socket: refused a connection from another user");
                    continue;
                }
                let vault = vault.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = answer(&vault, stream) {
                        tracing::warn!(error = %e, "vault admin socket: a request failed");
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// Bind the socket where nobody else can reach it yet (a fresh 0700
/// directory beside it), restrict it to 0600, then link it into place, so
/// the socket never exists at `socket` with the umask's looser mode. The
/// link fails rather than replace anything put at `socket` meanwhile.
fn bind_private(socket: &Path) -> Result<tokio::net::UnixListener, VaultError> {
    use std::os::unix::fs::DirBuilderExt;
    let parent = socket.parent().unwrap_or_else(|| Path::new("."));
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix).map_err(|e| admin_err(socket, "cannot draw a random name", e))?;
    // Short, so the staged path fits wherever `socket` does (a socket's
    // path is limited to about 108 bytes).
    let private = parent.join(format!(".vs{:08x}", u32::from_le_bytes(suffix)));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| admin_err(&private, "cannot create a private directory", e))?;
    let staged = private.join("s");
    let bound = (|| {
        let listener = tokio::net::UnixListener::bind(&staged)
            .map_err(|e| admin_err(socket, "cannot listen", e))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| admin_err(socket, "cannot restrict", e))?;
        std::fs::hard_link(&staged, socket)
            .map_err(|e| admin_err(socket, "cannot move the socket into place", e))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    bound
}

/// Read one request line, carry it out, write one answer line.
fn answer(vault: &Vault, stream: tokio::net::UnixStream) -> std::io::Result<()> {
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut line = Zeroizing::new(String::new());
    BufReader::new((&stream).take(MAX_REQUEST_BYTES)).read_line(&mut line)?;
    let response = match serde_json::from_str::<AdminRequest>(&line) {
        Ok(request) => {
            tracing::info!(op = op_name(&request), "vault admin request");
            handle(vault, request)
        }
        Err(e) => AdminResponse::Error {
            message: format!("not a vault admin request: {e}"),
        },
    };
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    (&stream).write_all(&out)
}

fn op_name(request: &AdminRequest) -> &'static str {
    match request {
        AdminRequest::List { .. } => "list",
        AdminRequest::Disconnect { .. } => "disconnect",
        AdminRequest::PutSecret { .. } => "put-secret",
        AdminRequest::RotateTenantKey { .. } => "rotate-tenant-key",
        AdminRequest::RotateMasterKey => "rotate-master-key",
    }
}

/// Send `request` to the admin socket at `socket` and read the answer.
pub fn request(socket: &Path, request: &AdminRequest) -> Result<AdminResponse, VaultError> {
    let stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| admin_err(socket, "cannot connect", e))?;
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(|e| admin_err(socket, "cannot connect", e))?;
    let mut line = Zeroizing::new(
        serde_json::to_vec(request).map_err(|e| admin_err(socket, "cannot send", e))?,
    );
    line.push(b'\n');
    (&stream)
        .write_all(&line)
        .map_err(|e| admin_err(socket, "cannot send", e))?;
    let mut answer = String::new();
    BufReader::new((&stream).take(64 << 20))
        .read_line(&mut answer)
        .map_err(|e| admin_err(socket, "no answer", e))?;
    serde_json::from_str(&answer).map_err(|e| admin_err(socket, "unreadable answer", e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_requests() {
        let request = AdminRequest::PutSecret {
            tenant: "t".into(),
            name: "n".into(),
            secret: SecretText::new("hunter2".into()),
        };
        assert!(!format!("{request:?}").contains("hunter2"));
        let text = serde_json::to_string(&request).unwrap();
        let back: AdminRequest = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, AdminRequest::PutSecret { .. }));
    }

    fn staging_dirs(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".vs"))
            .collect()
    }

    #[tokio::test]
    async fn the_socket_appears_private_and_never_replaces_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let socket = socket_path(dir.path());
        let listener = bind_private(&socket).unwrap();
        let mode = std::fs::symlink_metadata(&socket)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(std::os::unix::net::UnixStream::connect(&socket).is_ok());
        assert!(staging_dirs(dir.path()).is_empty());
        drop(listener);

        // Something put at the path after the check: refused, kept, and
        // nothing left behind.
        std::fs::remove_file(&socket).unwrap();
        std::fs::write(&socket, "keep").unwrap();
        let err = bind_private(&socket).unwrap_err().to_string();
        assert!(err.contains("cannot move the socket into place"), "{err}");
        assert_eq!(std::fs::read_to_string(&socket).unwrap(), "keep");
        assert!(staging_dirs(dir.path()).is_empty());
    }
}
