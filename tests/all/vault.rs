//! The token vault on real sled in temp dirs: what reaches the disk, a wrong
//! or missing master key, rotation under concurrent load, crashes at random
//! points (a child process killed with SIGKILL), and `airlock vault` run as
//! a real process, directly and through a running host's admin socket.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use airlock_host::config::VaultKeySource;
use airlock_host::storage::Storage;
use airlock_host::vault::{MasterKey, RecordKey, Secret, TokenSet, Vault};
use sha2::{Digest, Sha256};

fn key_file(dir: &Path) -> VaultKeySource {
    VaultKeySource::File(dir.join("vault.key"))
}

fn record(tenant: &str, subject: &str, provider: &str) -> RecordKey {
    RecordKey {
        tenant: tenant.into(),
        issuer: "https://idp.test".into(),
        subject: subject.into(),
        provider: provider.into(),
    }
}

fn tokens(access: &str) -> TokenSet {
    TokenSet {
        access_token: Secret::new(access.into()),
        refresh_token: Some(Secret::new(format!("{access}-refresh"))),
        expires_at: Some(1_900_000_000),
        scopes: vec!["repo".into(), "read:user".into()],
    }
}

/// An empty data directory with a master key file.
fn keyed() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    MasterKey::create_file(&dir.path().join("vault.key")).unwrap();
    dir
}

/// The database in `dir` and the vault on it, opened with `dir`'s key file.
/// (A database this process just dropped can stay locked for a moment while
/// sled's flusher thread ends: retry briefly.)
fn open(dir: &Path) -> (Storage, Vault) {
    let storage = Storage::open_waiting(&dir.join("db"), Duration::from_secs(15)).unwrap();
    let vault = Vault::open(&storage, &key_file(dir)).unwrap();
    (storage, vault)
}

/// A data directory with a key file and a vault holding a few records.
fn populated() -> tempfile::TempDir {
    let dir = keyed();
    let (storage, vault) = open(dir.path());
    vault
        .put(&record("acme", "alice", "github"), &tokens("a"))
        .unwrap();
    vault
        .put_secret("acme", "client", &Secret::new("c".into()))
        .unwrap();
    storage.flush().unwrap();
    dir
}

/// Every file under `dir` with the SHA-256 of its bytes.
fn hashes(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for path in files(dir) {
        let bytes = std::fs::read(&path).unwrap();
        out.insert(path, format!("{:x}", Sha256::digest(&bytes)));
    }
    out
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_wrong_master_key_fails_at_open_and_changes_nothing() {
    let dir = populated();
    let wrong = dir.path().join("other.key");
    MasterKey::create_file(&wrong).unwrap();
    // sled itself rewrites its files when it opens (recovery, snapshot):
    // compare what is on disk once it has, before and after the vault.
    let storage = Storage::open_waiting(&dir.path().join("db"), Duration::from_secs(15)).unwrap();
    storage.flush().unwrap();
    let before = hashes(dir.path());
    let err = Vault::open(&storage, &VaultKeySource::File(wrong.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&wrong.display().to_string()) && err.contains("nothing was changed"),
        "{err}"
    );
    storage.flush().unwrap();
    assert_eq!(hashes(dir.path()), before);
    let vault = Vault::open(&storage, &key_file(dir.path())).unwrap();
    assert!(
        vault
            .get(&record("acme", "alice", "github"))
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_missing_key_file_fails_naming_it_and_creates_nothing() {
    let dir = populated();
    let missing = dir.path().join("nowhere/vault.key");
    let storage = Storage::open_waiting(&dir.path().join("db"), Duration::from_secs(15)).unwrap();
    storage.flush().unwrap();
    let before = hashes(dir.path());
    let err = Vault::open(&storage, &VaultKeySource::File(missing.clone()))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
    storage.flush().unwrap();
    assert_eq!(hashes(dir.path()), before);
    assert!(!missing.exists());
}

#[test]
fn no_token_or_secret_bytes_reach_the_disk() {
    let dir = keyed();
    let marker = "PLANTED-MARKER-7f3a9c";
    {
        let (storage, vault) = open(dir.path());
        for i in 0..20 {
            let k = record("acme", &format!("user{i}"), "github");
            vault.put(&k, &tokens(&format!("{marker}-{i}"))).unwrap();
        }
        vault
            .put_secret("acme", "client", &Secret::new(format!("{marker}-secret")))
            .unwrap();
        vault.rotate_tenant_key("acme").unwrap();
        storage.flush().unwrap();
        let read = vault
            .get(&record("acme", "user3", "github"))
            .unwrap()
            .unwrap();
        assert_eq!(read.access_token.expose(), format!("{marker}-3"));
        let shown = format!(
            "{read:?} {:?}",
            vault.secret("acme", "client").unwrap().unwrap()
        );
        assert!(!shown.contains(marker), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
    let found: Vec<PathBuf> = files(dir.path())
        .into_iter()
        .filter(|path| {
            let bytes = std::fs::read(path).unwrap();
            bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
        })
        .collect();
    assert!(found.is_empty(), "the marker is on disk in {found:?}");
}

#[test]
fn rotations_under_concurrent_load_fail_no_call() {
    let dir = populated();
    let (storage, vault) = open(dir.path());
    let vault = Arc::new(vault);
    for t in 0..4 {
        for i in 0..10 {
            let k = record("acme", &format!("seed{t}-{i}"), "github");
            vault.put(&k, &tokens("seed")).unwrap();
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (vault, stop, calls) = (vault.clone(), stop.clone(), calls.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let mine = record("acme", &format!("worker{t}"), "github");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let value = format!("w{t}-{n}");
                    vault
                        .put(&mine, &tokens(&value))
                        .map_err(|e| e.to_string())?;
                    let got = vault.get(&mine).map_err(|e| e.to_string())?;
                    let got = got.ok_or("my record vanished")?;
                    if got.access_token.expose() != value {
                        return Err(format!("lost a write: {value}"));
                    }
                    let seed = record("acme", &format!("seed{t}-{}", n % 10), "github");
                    vault
                        .get(&seed)
                        .map_err(|e| e.to_string())?
                        .ok_or("a seed record vanished")?;
                    calls.fetch_add(3, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    for _ in 0..3 {
        vault.rotate_tenant_key("acme").unwrap();
        vault.rotate_master_key().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap().unwrap();
    }
    assert!(calls.load(Ordering::Relaxed) > 0);
    assert_eq!(vault.key_versions("acme"), vec![4]);
    drop(vault);
    drop(storage);
    let (_storage, vault) = open(dir.path());
    let listed = vault.list("acme", None).unwrap();
    assert_eq!(listed.len(), 1 + 40 + 4);
    for meta in listed {
        assert_eq!(meta.key_version, 4);
        let k = RecordKey {
            tenant: meta.tenant,
            issuer: meta.issuer,
            subject: meta.subject,
            provider: meta.provider,
        };
        assert!(vault.get(&k).unwrap().is_some());
    }
    assert_eq!(
        vault.secret("acme", "client").unwrap().unwrap().expose(),
        "c"
    );
}

/// A random number in `0..n`.
fn random_below(n: u64) -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    u64::from_le_bytes(bytes) % n
}

#[test]
fn a_crash_at_any_point_leaves_a_vault_that_opens_with_the_key_on_disk() {
    const KILLS: usize = 50;
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    MasterKey::create_file(&dir.path().join("vault.key")).unwrap();
    // The highest acknowledged number per record slot, and for the secret.
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut next = 0u64;
    let mut key_files = std::collections::HashSet::new();
    for round in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vault-churn"))
            .arg(dir.path())
            .arg(next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line == "ready" {
                    let _ = ready_tx.send(());
                }
                lines.push(line);
            }
            lines
        });
        if ready_rx.recv_timeout(Duration::from_secs(40)).is_err() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "round {round}: the churn did not start:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20 + random_below(181)));
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "round {round}: the churn stopped by itself ({status}):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in reader.join().unwrap() {
            let mut parts = line.split(' ');
            if parts.next() != Some("ack") {
                continue;
            }
            let (Some(slot), Some(n)) = (parts.next(), parts.next()) else {
                continue;
            };
            let n: u64 = n.parse().unwrap();
            next = next.max(n + 1);
            let entry = acked.entry(slot.to_string()).or_default();
            *entry = (*entry).max(n);
        }
        // Reopen with whatever key file is on disk: every record opens and
        // holds its last acknowledged value or a later one.
        let storage =
            Storage::open_waiting(&dir.path().join("db"), Duration::from_secs(15)).unwrap();
        let vault = Vault::open(&storage, &key_file(dir.path()))
            .unwrap_or_else(|e| panic!("round {round}: the vault does not open: {e}"));
        for meta in vault.list("acme", None).unwrap() {
            let slot = meta.subject.trim_start_matches("user-").to_string();
            let k = RecordKey {
                tenant: meta.tenant,
                issuer: meta.issuer,
                subject: meta.subject,
                provider: meta.provider,
            };
            let got = vault
                .get(&k)
                .unwrap_or_else(|e| panic!("round {round}: {e}"))
                .unwrap();
            let n: u64 = got
                .access_token
                .expose()
                .trim_start_matches("at-")
                .parse()
                .unwrap();
            assert!(
                n >= acked.get(&slot).copied().unwrap_or(0),
                "round {round}: record {slot} went back to {n}"
            );
            assert_eq!(got.refresh_token.unwrap().expose(), format!("rt-{n}"));
        }
        if let Some(secret) = vault.secret("acme", "client").unwrap() {
            let n: u64 = secret.expose().trim_start_matches("s-").parse().unwrap();
            assert!(n >= acked.get("secret").copied().unwrap_or(0));
        } else {
            assert!(!acked.contains_key("secret"));
        }
        assert!(
            !dir.path().join("vault.key.tmp").exists(),
            "opening cleans up"
        );
        key_files.insert(std::fs::read(dir.path().join("vault.key")).unwrap());
    }
    assert!(
        key_files.len() > KILLS / 2,
        "the master key rotated in too few rounds to test anything: {}",
        key_files.len()
    );
    assert!(
        acked.len() > 2,
        "the churn wrote too little to test anything: {acked:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "{:?}",
        started.elapsed()
    );
}

/// Run `airlock ARGS` as a process with `stdin`; (exit code, stdout, stderr).
fn airlock(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock-vault-cli"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The CLI steps shared by the offline and the socket test; `check` reads
/// the vault afterwards (directly or not).
fn cli_session(data: &str) {
    // `airlock vault ARGS --data DATA`: (exit code, stdout, stderr).
    let vault = |args: &[&str], stdin: &str| {
        airlock(&[&["vault"], args, &["--data", data]].concat(), stdin)
    };
    // The same, which must succeed: its stdout.
    let ok = |args: &[&str], stdin: &str| {
        let (code, out, err) = vault(args, stdin);
        assert_eq!(code, 0, "{err}");
        out
    };
    let out = ok(&["list", "--tenant", "acme"], "");
    assert!(
        out.contains("github  https://idp.test  alice  scopes=repo,read:user"),
        "{out}"
    );
    assert!(
        out.contains("key=v1") && out.contains("refresh=yes"),
        "{out}"
    );
    assert!(!out.contains("SECRET-TOKEN"), "{out}");

    let out = ok(
        &["put-secret", "--tenant", "acme", "--name", "gh"],
        "client-secret-value\n",
    );
    assert!(out.contains("gh"), "{out}");

    let out = ok(&["rotate-tenant-key", "--tenant", "acme"], "");
    assert!(out.contains("version 2"), "{out}");
    let out = ok(&["rotate-master-key"], "");
    assert!(out.contains("master key"), "{out}");

    // Two issuers: disconnect must be told which.
    let bob = [
        "disconnect",
        "--tenant",
        "acme",
        "--user",
        "bob",
        "--provider",
        "github",
    ];
    let (code, _, err) = vault(&bob, "");
    assert_eq!(code, 1);
    assert!(
        err.contains("--issuer")
            && err.contains("https://a.test")
            && err.contains("https://b.test"),
        "{err}"
    );
    let out = ok(&[&bob[..], &["--issuer", "https://a.test"]].concat(), "");
    assert!(out.contains("removed"), "{out}");
    let out = ok(
        &[
            "disconnect",
            "--tenant",
            "acme",
            "--user",
            "alice",
            "--provider",
            "github",
        ],
        "",
    );
    assert!(out.contains("alice"), "{out}");
    let out = ok(&["list", "--tenant", "acme", "--user", "bob"], "");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("https://b.test") && out.contains("key=v2"),
        "{out}"
    );
}

fn seed_for_cli(vault: &Vault) {
    vault
        .put(&record("acme", "alice", "github"), &tokens("SECRET-TOKEN"))
        .unwrap();
    for issuer in ["https://a.test", "https://b.test"] {
        let k = RecordKey {
            issuer: issuer.into(),
            ..record("acme", "bob", "github")
        };
        vault.put(&k, &tokens("SECRET-TOKEN-bob")).unwrap();
    }
}

fn check_after_cli(vault: &Vault) {
    assert_eq!(
        vault.secret("acme", "gh").unwrap().unwrap().expose(),
        "client-secret-value"
    );
    assert!(
        vault
            .get(&record("acme", "alice", "github"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn the_cli_manages_the_vault_offline() {
    let dir = keyed();
    {
        seed_for_cli(&open(dir.path()).1);
    }
    cli_session(dir.path().to_str().unwrap());
    check_after_cli(&open(dir.path()).1);

    let (code, _, err) = airlock(
        &[
            "vault",
            "list",
            "--tenant",
            "acme",
            "--data",
            "/nonexistent",
        ],
        "",
    );
    assert_eq!(code, 1);
    assert!(err.contains("no database in /nonexistent/db"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_a_running_hosts_vault_through_the_admin_socket() {
    let dir = keyed();
    // The "host" holds the database; the CLI cannot open it.
    let (storage, vault) = open(dir.path());
    let vault = Arc::new(vault);
    seed_for_cli(&vault);
    let socket = airlock_host::vault::admin::socket_path(dir.path());
    // A stale socket from an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(airlock_host::vault::admin::serve_admin(
        vault.clone(),
        socket.clone(),
        shutdown.clone(),
    ));
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The private directory it was bound in is gone.
    let staging: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".vs"))
        .collect();
    assert!(staging.is_empty(), "{staging:?}");
    let data = dir.path().to_str().unwrap().to_string();
    tokio::task::spawn_blocking(move || cli_session(&data))
        .await
        .unwrap();
    check_after_cli(&vault);
    shutdown.cancel();
    served.await.unwrap().unwrap();
    assert!(!socket.exists());
    drop(vault);
    drop(storage);
    // The rotated key file opens the vault.
    check_after_cli(&open(dir.path()).1);
}

#[tokio::test]
async fn the_admin_socket_refuses_to_replace_what_is_not_a_socket() {
    let dir = keyed();
    let (_storage, vault) = open(dir.path());
    let vault = Arc::new(vault);
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep").unwrap();
    let socket = dir.path().join("vault.sock");
    std::os::unix::fs::symlink(&target, &socket).unwrap();
    let err = airlock_host::vault::admin::serve_admin(
        vault,
        socket.clone(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    assert!(
        std::fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
