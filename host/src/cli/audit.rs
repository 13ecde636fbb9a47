//! `airlock audit verify` and `airlock audit export`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::audit::{CheckpointVerifier, ExportFilter};
use crate::storage::Storage;

/// Check or read the audit trail.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every record and checkpoint; name the first bad record of each
    /// tenant's chain. Exits non-zero if any chain fails.
    Verify {
        /// The data directory (the database is in `DATA/db`).
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Only this tenant's chain.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Print records as JSON lines, exactly as stored.
    Export {
        /// The data directory (the database is in `DATA/db`).
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Only this tenant's records.
        #[arg(long)]
        tenant: Option<String>,
        /// Only records stored at or after this RFC 3339 time
        /// (`2025-06-01T12:00:00Z`).
        #[arg(long, value_name = "RFC3339")]
        since: Option<String>,
        /// Only records of this trace id.
        #[arg(long, value_name = "ID")]
        trace: Option<String>,
    },
}

/// Run an `audit` command.
pub fn run(cmd: AuditCommand, out: &mut (dyn Write + Send)) -> Result<(), String> {
    match cmd {
        AuditCommand::Verify { data, tenant } => {
            let storage = open(&data)?;
            let verifier = ring_verifier(&data)?;
            let report = crate::audit::verify(&storage, verifier.as_ref(), tenant.as_deref())
                .map_err(|e| e.to_string())?;
            if report.tenants.is_empty() {
                let _ = writeln!(out, "no audit records in {}", db_dir(&data).display());
            }
            for tenant in &report.tenants {
                let _ = writeln!(out, "{tenant}");
            }
            let _ = out.flush();
            if report.is_ok() {
                Ok(())
            } else {
                Err("the audit trail failed verification".into())
            }
        }
        AuditCommand::Export {
            data,
            tenant,
            since,
            trace,
        } => {
            let since_ms = since
                .as_deref()
                .map(crate::audit::parse_rfc3339_ms)
                .transpose()?;
            let storage = open(&data)?;
            let filter = ExportFilter {
                tenant,
                since_ms,
                trace_id: trace,
            };
            match crate::audit::export(&storage, &filter, out) {
                Ok(_) => Ok(()),
                // The reader stopped early (`| head`): not an error.
                Err(crate::audit::ExportError::Write(e))
                    if e.kind() == std::io::ErrorKind::BrokenPipe =>
                {
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

fn db_dir(data: &Path) -> PathBuf {
    data.join("db")
}

/// Open the database read-mostly: never create one where there is none.
fn open(data: &Path) -> Result<Storage, String> {
    let dir = db_dir(data);
    if !dir.is_dir() {
        return Err(format!(
            "no database in {} (is --data the host's data directory?)",
            dir.display()
        ));
    }
    // A host that just stopped can hold the lock for a moment.
    Storage::open_waiting(&dir, std::time::Duration::from_secs(5)).map_err(|e| {
        if e.is_locked() {
            format!(
                "the database in {} is in use by a running airlock (serve or dev); stop it, then verify or export",
                dir.display()
            )
        } else {
            e.to_string()
        }
    })
}

/// The public keys of the envelope key ring in `{data}/keys/envelope`, which
/// also signs audit checkpoints: read offline, changing nothing.
fn ring_verifier(data: &Path) -> Result<Box<dyn CheckpointVerifier>, String> {
    struct Ring(crate::envelope::PublicKeys);
    impl CheckpointVerifier for Ring {
        fn verify(&self, kid: &str, msg: &[u8], sig: &[u8]) -> bool {
            self.0.verify(kid, msg, sig)
        }
    }
    let dir = crate::envelope::KeyRing::dir_in(data);
    let keys = crate::envelope::PublicKeys::load(&dir)
        .map_err(|e| format!("cannot check checkpoint signatures: {e}"))?;
    Ok(Box::new(Ring(keys)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::audit::{AuditLog, AuditSettings, CallIdentity, CheckpointSigner, Entry};
    use crate::envelope::KeyRing;

    use super::*;

    struct RingSigner(KeyRing);

    impl CheckpointSigner for RingSigner {
        fn sign(&self, msg: &[u8]) -> Result<(String, Vec<u8>), String> {
            let (kid, sig) = self.0.sign_bytes(msg);
            Ok((kid, sig.to_vec()))
        }
    }

    struct StrangerSigner;

    impl CheckpointSigner for StrangerSigner {
        fn sign(&self, _: &[u8]) -> Result<(String, Vec<u8>), String> {
            Ok(("stranger".into(), vec![0; 64]))
        }
    }

    fn who(trace: &str) -> CallIdentity {
        CallIdentity {
            tenant: "acme".into(),
            actor_kind: crate::audit::ActorKind::User,
            actor_issuer: "https://idp.example".into(),
            actor_subject: "alice".into(),
            client_id: None,
            agent_id: None,
            tool: "echo".into(),
            trace_id: trace.into(),
            envelope_id: "e".into(),
        }
    }

    /// A data directory with an envelope key ring and three acme records
    /// whose final checkpoint `signer` signed (the ring's own key if `None`).
    async fn data_dir(signer: Option<Arc<dyn CheckpointSigner>>) -> tempfile::TempDir {
        let data = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(&KeyRing::dir_in(data.path())).unwrap();
        let signer = signer.unwrap_or_else(|| Arc::new(RingSigner(ring)));
        let storage = Storage::open(&data.path().join("db")).unwrap();
        let log = AuditLog::open(&storage, signer, AuditSettings::default()).unwrap();
        for trace in ["t1", "t1", "t2"] {
            log.append(Entry::start(who(trace), b"{}")).await.unwrap();
        }
        log.shutdown().await.unwrap();
        data
    }

    async fn airlock(args: &[&str]) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let args = std::iter::once("airlock").chain(args.iter().copied());
        let code = crate::cli::run(args, &mut out, &mut err).await;
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    /// A reader that went away, like `head` after its lines.
    struct GoneReader;

    impl std::io::Write for GoneReader {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn export_into_a_closed_pipe_is_not_an_error() {
        let data = data_dir(None).await;
        let dir = data.path().to_str().unwrap();
        let mut err = Vec::new();
        let args = ["airlock", "audit", "export", "--data", dir];
        let code = crate::cli::run(args, &mut GoneReader, &mut err).await;
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    }

    #[tokio::test]
    async fn verify_and_export_read_the_data_directory() {
        let data = data_dir(None).await;
        let dir = data.path().to_str().unwrap();
        let (code, out, err) = airlock(&["audit", "verify", "--data", dir]).await;
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (
                0,
                "OK: tenant acme: 3 records, 1 checkpoint, unsigned tail 0\n",
                ""
            )
        );
        let (code, out, _) = airlock(&["audit", "export", "--data", dir, "--trace", "t1"]).await;
        assert_eq!((code, out.lines().count()), (0, 2));
        let (code, out, _) = airlock(&[
            "audit",
            "export",
            "--data",
            dir,
            "--tenant",
            "acme",
            "--since",
            "2000-01-01T00:00:00Z",
        ])
        .await;
        assert_eq!((code, out.lines().count()), (0, 3));
        let (code, _, err) = airlock(&["audit", "export", "--data", dir, "--since", "now"]).await;
        assert_eq!(code, 1);
        assert!(err.contains("not an RFC 3339 date-time"), "{err}");
        let (code, _, err) = airlock(&["audit", "verify", "--data", dir, "--tenant", "x"]).await;
        assert_eq!(code, 1);
        assert!(err.contains("no audit trail for tenant x"), "{err}");
    }

    #[tokio::test]
    async fn a_checkpoint_the_ring_did_not_sign_fails_verification() {
        let data = data_dir(Some(Arc::new(StrangerSigner))).await;
        let dir = data.path().to_str().unwrap();
        let (code, out, err) = airlock(&["audit", "verify", "--data", dir]).await;
        assert_eq!(code, 1);
        assert_eq!(
            out,
            "FAILED: tenant acme record 3: bad checkpoint signature (key \"stranger\")\n"
        );
        assert!(err.contains("failed verification"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_or_busy_database_is_named() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().to_str().unwrap();
        let (code, _, err) = airlock(&["audit", "verify", "--data", dir]).await;
        assert_eq!(code, 1);
        assert!(err.contains("no database in"), "{err}");
        assert!(
            !data.path().join("db").exists(),
            "verify created a database"
        );

        let data = data_dir(None).await;
        let dir = data.path().to_str().unwrap();
        let _running = Storage::open(&data.path().join("db")).unwrap();
        let (code, _, err) = airlock(&["audit", "export", "--data", dir]).await;
        assert_eq!(code, 1);
        assert!(err.contains("in use by a running airlock"), "{err}");
    }
}
