//! `airlock vault`: list and disconnect users' provider tokens, store
//! operator secrets, rotate keys. Opens the database directly when no host
//! holds it, else asks the running host through its admin socket.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::config::VaultKeySource;
use crate::storage::Storage;
use crate::vault::admin::{self, AdminRequest, AdminResponse, SecretText};
use crate::vault::{RecordMeta, Vault};

/// Where the vault is.
#[derive(Debug, Args)]
pub(crate) struct Location {
    /// The host's configuration file (its `data_dir` and `[vault]` key).
    #[arg(long, conflicts_with = "data")]
    config: Option<PathBuf>,
    /// The data directory (key file `DATA/vault.key`), for `airlock dev`
    /// data; ignored with --config.
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum VaultCommand {
    /// Replace the master key (key file only): data keys are re-wrapped,
    /// then the key file is replaced atomically.
    RotateMasterKey {
        #[command(flatten)]
        at: Location,
    },
    /// Give a tenant a new data key and re-seal its records and secrets.
    RotateTenantKey {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        at: Location,
    },
    /// Show a tenant's stored tokens: metadata only, never token bytes.
    List {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Only this subject's records.
        #[arg(long, value_name = "SUBJECT")]
        user: Option<String>,
        #[command(flatten)]
        at: Location,
    },
    /// Remove a user's tokens for a provider.
    Disconnect {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The user's subject.
        #[arg(long, value_name = "SUBJECT")]
        user: String,
        /// The provider.
        #[arg(long)]
        provider: String,
        /// The user's issuer (needed when the subject has records under
        /// several issuers).
        #[arg(long)]
        issuer: Option<String>,
        #[command(flatten)]
        at: Location,
    },
    /// Store an operator secret (a provider's client secret, a service
    /// secret), read from stdin; one trailing newline is dropped.
    PutSecret {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The secret's name (`secret_vault = "NAME"` in the configuration).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        at: Location,
    },
}

pub(crate) fn run(cmd: VaultCommand, out: &mut (dyn Write + Send)) -> Result<(), String> {
    let (at, request) = match cmd {
        VaultCommand::RotateMasterKey { at } => (at, AdminRequest::RotateMasterKey),
        VaultCommand::RotateTenantKey { tenant, at } => {
            (at, AdminRequest::RotateTenantKey { tenant })
        }
        VaultCommand::List { tenant, user, at } => (
            at,
            AdminRequest::List {
                tenant,
                subject: user,
            },
        ),
        VaultCommand::Disconnect {
            tenant,
            user,
            provider,
            issuer,
            at,
        } => (
            at,
            AdminRequest::Disconnect {
                tenant,
                subject: user,
                provider,
                issuer,
            },
        ),
        VaultCommand::PutSecret { tenant, name, at } => {
            let secret = read_secret(std::io::stdin().lock())?;
            (
                at,
                AdminRequest::PutSecret {
                    tenant,
                    name,
                    secret,
                },
            )
        }
    };
    let (data, key) = locate(&at)?;
    let response = execute(&data, &key, &request)?;
    print(&request, response, out)
}

/// The data directory and master key source.
fn locate(at: &Location) -> Result<(PathBuf, VaultKeySource), String> {
    if let Some(path) = &at.config {
        let config = crate::config::Config::load(path).map_err(|e| e.to_string())?;
        return Ok((config.data_dir.clone(), config.vault_key.clone()));
    }
    let data = at.data.clone().unwrap_or_else(|| PathBuf::from("data"));
    let key = VaultKeySource::File(data.join("vault.key"));
    Ok((data, key))
}

/// The secret on stdin, less one trailing newline.
fn read_secret(mut input: impl Read) -> Result<SecretText, String> {
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    input
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the secret from stdin: {e}"))?;
    let mut text = zeroize::Zeroizing::new(
        String::from_utf8(bytes.to_vec()).map_err(|_| "the secret is not UTF-8".to_string())?,
    );
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err("the secret on stdin is empty".into());
    }
    Ok(SecretText::new(text.to_string()))
}

/// Carry out `request` on the vault in `data`: directly, or through the
/// running host's admin socket when the host holds the database.
fn execute(
    data: &Path,
    key: &VaultKeySource,
    request: &AdminRequest,
) -> Result<AdminResponse, String> {
    let db = data.join("db");
    if !db.is_dir() {
        return Err(format!(
            "no database in {} (is this the host's data directory?)",
            db.display()
        ));
    }
    // A host that just stopped (or a process that just dropped the
    // database) can hold its lock for a moment: with no admin socket to
    // talk to, wait for the lock a little before giving up.
    let socket = admin::socket_path(data);
    let opened = if socket.exists() {
        Storage::open(&db)
    } else {
        Storage::open_waiting(&db, std::time::Duration::from_secs(5))
    };
    match opened {
        Ok(storage) => {
            let vault = Vault::open(&storage, key).map_err(|e| e.to_string())?;
            Ok(admin::handle(&vault, request.clone()))
        }
        Err(e) if e.is_locked() => admin::request(&socket, request).map_err(|e| {
            format!(
                "the database in {} is in use by a running airlock, and it does not answer on \
                     its vault admin socket ({e})",
                db.display()
            )
        }),
        Err(e) => Err(e.to_string()),
    }
}

fn print(
    request: &AdminRequest,
    response: AdminResponse,
    out: &mut (dyn Write + Send),
) -> Result<(), String> {
    match response {
        AdminResponse::Records { records } => {
            if records.is_empty()
                && let AdminRequest::List { tenant, .. } = request
            {
                let _ = writeln!(out, "no records for tenant {tenant}");
            }
            for record in &records {
                let _ = writeln!(out, "{}", line(record));
            }
        }
        AdminResponse::Disconnected { key } => {
            let _ = writeln!(
                out,
                "removed the {} tokens of {} (issuer {}) in tenant {}",
                key.provider, key.subject, key.issuer, key.tenant
            );
        }
        AdminResponse::NotFound => return Err("no such record".into()),
        AdminResponse::Ambiguous { issuers } => {
            return Err(format!(
                "the user has records for this provider under several issuers; pick one with \
                 --issuer: {}",
                issuers.join(", ")
            ));
        }
        AdminResponse::SecretStored => {
            if let AdminRequest::PutSecret { tenant, name, .. } = request {
                let _ = writeln!(out, "stored the secret {name} of tenant {tenant}");
            }
        }
        AdminResponse::TenantKeyRotated { version, resealed } => {
            let _ = writeln!(
                out,
                "data key version {version} is current; {resealed} records and secrets re-sealed"
            );
        }
        AdminResponse::MasterKeyRotated { fingerprint } => {
            let _ = writeln!(out, "the master key is now {fingerprint}");
        }
        AdminResponse::Error { message } => return Err(message),
    }
    Ok(())
}

/// `provider  issuer  subject  scopes  expires  created  updated  key vN  refresh`.
fn line(r: &RecordMeta) -> String {
    let time = |t: u64| super::keys::rfc3339(t);
    format!(
        "{}  {}  {}  scopes={}  expires={}  created={}  updated={}  key=v{}  refresh={}",
        r.provider,
        r.issuer,
        r.subject,
        r.scopes.join(","),
        r.expires_at.map_or_else(|| "-".to_string(), time),
        time(r.created_at),
        time(r.updated_at),
        r.key_version,
        if r.has_refresh_token { "yes" } else { "no" }
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_dropped() {
        let read = |s: &str| read_secret(s.as_bytes()).map(|t| format!("{t:?}"));
        assert!(read("").is_err());
        assert!(read("\n").is_err());
        assert!(read("abc\n\n").is_ok());
        let secret = read_secret("abc\n".as_bytes()).unwrap();
        let json = serde_json::to_string(&secret).unwrap();
        assert_eq!(json, "\"abc\"");
        let secret = read_secret("abc\n\n".as_bytes()).unwrap();
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"abc\\n\"");
    }
}
