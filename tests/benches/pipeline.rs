//! What the call pipeline adds to a tool call, in process: minting an
//! envelope and signing it for one downstream request (Ed25519 compact JWS),
//! and writing the audit trail (a start and an end record per call, batched,
//! flushed to disk before they are acknowledged).
//!
//! `cargo bench -p airlock-tests --bench pipeline`. Results go in
//! BENCHMARKS.md by hand, with the machine.

/// The allocator the `airlock` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use airlock_host::audit::{
    AuditLog, AuditSettings, CallEnd, CallIdentity, CheckpointSigner, Entry, Outcome,
};
use airlock_host::envelope::{KeyRing, RequestBinding};
use airlock_host::storage::Storage;
use airlock_tests::bench::percentile;
use airlock_tests::envelope;

const SAMPLES: usize = 20_000;

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{what:<44} p50 {:>9.1?}  p99 {:>9.1?}  mean {:>9.1?}",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        mean
    );
}

struct Signer(Arc<KeyRing>);

impl CheckpointSigner for Signer {
    fn sign(&self, msg: &[u8]) -> Result<(String, Vec<u8>), String> {
        let (kid, sig) = self.0.sign_bytes(msg);
        Ok((kid, sig.to_vec()))
    }
}

fn end() -> CallEnd {
    CallEnd {
        outcome: Outcome::Ok,
        error_kind: None,
        duration_ms: 1,
        cpu_ms: None,
        output_bytes: 20,
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Arc::new(KeyRing::open(&dir.path().join("keys")).unwrap());

    let mut mint = Vec::with_capacity(SAMPLES);
    let mut sign = Vec::with_capacity(SAMPLES);
    let body = br#"{"title":"groceries","text":"milk"}"#;
    for _ in 0..SAMPLES {
        let start = Instant::now();
        let env = envelope("acme", "alice", "add_note", &["notes"]);
        mint.push(start.elapsed());
        let start = Instant::now();
        let jws = env
            .sign_for(
                &ring,
                "https://airlock.example",
                "https://notes.example",
                &RequestBinding {
                    method: "POST",
                    path: "/notes",
                    body,
                },
            )
            .unwrap();
        sign.push(start.elapsed());
        std::hint::black_box(jws);
    }
    report("mint envelope", mint);
    report("sign envelope for one request (Ed25519 JWS)", sign);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let audit = Arc::new(
            AuditLog::open(
                &storage,
                Arc::new(Signer(ring.clone())),
                AuditSettings::default(),
            )
            .unwrap(),
        );
        let env = envelope("acme", "alice", "echo", &[]);
        let who = CallIdentity::from(&*env);
        let args = br#"{"text":"hi"}"#;

        // One caller at a time: each call waits for its start and end records.
        let mut samples = Vec::with_capacity(2_000);
        for _ in 0..2_000 {
            let start = Instant::now();
            audit.append(Entry::start(who.clone(), args)).await.unwrap();
            audit.append(Entry::end(who.clone(), end())).await.unwrap();
            samples.push(start.elapsed());
        }
        report("audit start + end, 1 caller", samples);

        // 64 callers at once: records share batches and flushes.
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (audit, who, done) = (audit.clone(), who.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                while started.elapsed() < Duration::from_secs(3) {
                    audit.append(Entry::start(who.clone(), args)).await.unwrap();
                    audit.append(Entry::end(who.clone(), end())).await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let calls = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        println!("audit start + end, 64 callers: {calls:.0} calls/s");
        audit.shutdown().await.unwrap();

        // What the background flush costs: one small write, then a flush.
        let tree = storage.tree("bench").unwrap();
        let mut samples = Vec::with_capacity(200);
        for i in 0..200u32 {
            tree.put_unflushed(&i.to_string(), &i).unwrap();
            let start = Instant::now();
            storage.flush().unwrap();
            samples.push(start.elapsed());
        }
        report("database flush (fsync) after one write", samples);

        // The storage cost of one record, without the writer's queue.
        let records = storage.seq_tree("bench.records").unwrap();
        let checkpoints = storage.seq_tree("bench.checkpoints").unwrap();
        let value = vec![b'x'; 400];
        let mut samples = Vec::with_capacity(5_000);
        for seq in 1..=5_000u64 {
            let start = Instant::now();
            storage
                .append_atomically((&records, &[(seq, value.clone())]), (&checkpoints, &[]))
                .unwrap();
            samples.push(start.elapsed());
        }
        report("one 400-byte record, atomic append", samples);

        broker_cost(&dir, audit_for_broker(&storage, ring.clone())).await;
    });
}

fn audit_for_broker(storage: &Storage, ring: Arc<KeyRing>) -> Arc<AuditLog> {
    Arc::new(AuditLog::open(storage, Arc::new(Signer(ring)), AuditSettings::default()).unwrap())
}

/// The host's cost per delegated request: the broker's round trip to a local
/// service that answers at once, minus a plain HTTP client's round trip to
/// the same service.
async fn broker_cost(dir: &tempfile::TempDir, audit: Arc<AuditLog>) {
    use airlock_host::delegate::{Broker, Delegation, Method, OutboundRequest, RequestLimits};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "[]" });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let text = format!(
        "listen = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1:9\"\ndata_dir = {:?}\n\
         [tenants.acme]\nissuers = [{{ issuer = \"https://idp.example\" }}]\n\
         [tenants.acme.services.notes]\nbase_url = \"http://{addr}/api\"\nmode = \"service\"\nallow_private = true\n",
        dir.path().display().to_string()
    );
    let config =
        airlock_host::config::Config::parse(&text, std::path::Path::new("b.toml"), dir.path())
            .unwrap();
    let ring = Arc::new(KeyRing::open(&KeyRing::dir_in(dir.path())).unwrap());
    let broker = Arc::new(Broker::new(&config, ring, audit, None).unwrap());
    let delegate = broker.for_call("caller-token");
    let env = envelope("acme", "alice", "list_notes", &["notes"]);
    let request = || {
        OutboundRequest::new(
            Method::Get,
            "/notes".into(),
            vec![],
            vec![],
            None,
            &RequestLimits::default(),
        )
        .unwrap()
    };
    let plain = reqwest::Client::new();
    let url = format!("http://{addr}/api/notes");
    for _ in 0..500 {
        delegate.fetch(&env, "notes", request()).await.unwrap();
        plain.get(&url).send().await.unwrap().bytes().await.unwrap();
    }
    let (mut brokered, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..5_000 {
        let start = Instant::now();
        delegate.fetch(&env, "notes", request()).await.unwrap();
        brokered.push(start.elapsed());
        let start = Instant::now();
        plain.get(&url).send().await.unwrap().bytes().await.unwrap();
        direct.push(start.elapsed());
    }
    brokered.sort();
    direct.sort();
    report("delegated GET through the broker", brokered.clone());
    report("the same GET with a plain HTTP client", direct.clone());
    println!(
        "host's added cost per delegated request: p50 {:.1?}",
        percentile(&brokered, 0.5).saturating_sub(percentile(&direct, 0.5))
    );
}
