//! The vault's cost per operation on real sled: `get` (read + open) and
//! `put` (seal + write, flushed to disk before it returns), from one thread
//! and from four at once.
//!
//! `cargo bench -p airlock-tests --bench vault`. Results go in
//! BENCHMARKS.md by hand, with the machine.

/// The allocator the `airlock` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_host::config::VaultKeySource;
use airlock_host::storage::Storage;
use airlock_host::vault::{MasterKey, RecordKey, Secret, TokenSet, Vault};
use airlock_tests::bench::percentile;

const RECORDS: usize = 1_000;
const GETS: usize = 50_000;
const PUTS: usize = 2_000;

fn report(what: &str, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort();
    let ops = samples.len() as f64 / wall.as_secs_f64();
    println!(
        "{what:<36} p50 {:>9.1?}  p99 {:>9.1?}  {ops:>10.0} ops/s",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
    );
}

fn key(i: usize) -> RecordKey {
    RecordKey {
        tenant: "acme".into(),
        issuer: "https://idp.example".into(),
        subject: format!("user-{i}"),
        provider: "github".into(),
    }
}

fn tokens(i: usize) -> TokenSet {
    // Realistic sizes: a 40-byte opaque access token and a 60-byte refresh token.
    TokenSet {
        access_token: Secret::new(format!("gho_{i:036}")),
        refresh_token: Some(Secret::new(format!("ghr_{i:056}"))),
        expires_at: Some(1_900_000_000),
        scopes: vec!["repo".into(), "read:user".into()],
    }
}

fn timed(
    vault: &Arc<Vault>,
    threads: usize,
    per_thread: usize,
    op: fn(&Vault, usize),
) -> (Vec<Duration>, Duration) {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let vault = vault.clone();
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        let at = Instant::now();
                        op(&vault, (t * per_thread + i) % RECORDS);
                        at.elapsed()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let samples = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    (samples, start.elapsed())
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    MasterKey::create_file(&dir.path().join("vault.key")).unwrap();
    let storage = Storage::open(&dir.path().join("db")).unwrap();
    let vault = Arc::new(
        Vault::open(
            &storage,
            &VaultKeySource::File(dir.path().join("vault.key")),
        )
        .unwrap(),
    );
    for i in 0..RECORDS {
        vault.put(&key(i), &tokens(i)).unwrap();
    }
    let get: fn(&Vault, usize) = |vault, i| {
        let got = vault.get(&key(i)).unwrap().unwrap();
        assert!(got.access_token.expose().starts_with("gho_"));
    };
    let put: fn(&Vault, usize) = |vault, i| vault.put(&key(i), &tokens(i)).unwrap();
    for threads in [1, 4] {
        let (samples, wall) = timed(&vault, threads, GETS / threads, get);
        report(
            &format!("get (read + open), {threads} thread(s)"),
            samples,
            wall,
        );
        let (samples, wall) = timed(&vault, threads, PUTS / threads, put);
        report(
            &format!("put (seal + write + flush), {threads} thread(s)"),
            samples,
            wall,
        );
    }
}
