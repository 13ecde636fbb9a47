//! For the vault's crash test: open the vault in `DIR` (key file
//! `DIR/vault.key`, database `DIR/db`), print `ready`, then until killed put
//! records and a secret from one thread, printing `ack KEY N` once each put
//! has returned, while another thread rotates the tenant key and the master
//! key in turn.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use airlock_host::config::VaultKeySource;
use airlock_host::storage::Storage;
use airlock_host::vault::{RecordKey, Secret, TokenSet, Vault};

/// How many distinct records the churn writes.
const RECORDS: usize = 8;

fn main() -> Result<(), String> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: vault-churn DIR")?);
    // The test that started it may still be letting go of the database
    // (sled's flusher thread outlives the handle briefly).
    let storage = Storage::open_waiting(&dir.join("db"), std::time::Duration::from_secs(15))
        .map_err(|e| e.to_string())?;
    let source = VaultKeySource::File(dir.join("vault.key"));
    let vault = Arc::new(Vault::open(&storage, &source).map_err(|e| e.to_string())?);
    // Where the last run stopped, so every run writes higher numbers.
    let start: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let say = {
        let stdout = stdout.clone();
        move |line: String| {
            let mut out = stdout.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    };
    say("ready".into());
    let rotator = {
        let vault = vault.clone();
        std::thread::spawn(move || -> Result<(), String> {
            loop {
                vault.rotate_tenant_key("acme").map_err(|e| e.to_string())?;
                vault.rotate_master_key().map_err(|e| e.to_string())?;
            }
        })
    };
    for n in start.. {
        if rotator.is_finished() {
            break;
        }
        let slot = (n as usize) % RECORDS;
        let key = RecordKey {
            tenant: "acme".into(),
            issuer: "https://idp.test".into(),
            subject: format!("user-{slot}"),
            provider: "github".into(),
        };
        let tokens = TokenSet {
            access_token: Secret::new(format!("at-{n}")),
            refresh_token: Some(Secret::new(format!("rt-{n}"))),
            expires_at: Some(n),
            scopes: vec!["repo".into()],
        };
        vault.put(&key, &tokens).map_err(|e| e.to_string())?;
        say(format!("ack {slot} {n}"));
        if n % 5 == 0 {
            vault
                .put_secret("acme", "client", &Secret::new(format!("s-{n}")))
                .map_err(|e| e.to_string())?;
            say(format!("ack secret {n}"));
        }
    }
    match rotator.join() {
        Ok(Err(e)) => Err(e),
        _ => Err("the rotator stopped".into()),
    }
}
