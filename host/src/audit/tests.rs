//! The audit trail against a real database in a temporary directory, real
//! Ed25519 signatures, and stores that tamper with what they return.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

use super::*;
use crate::storage::Storage;

pub(super) fn who(tenant: &str, trace: &str) -> CallIdentity {
    CallIdentity {
        tenant: tenant.into(),
        actor_kind: ActorKind::User,
        actor_issuer: "https://idp.example".into(),
        actor_subject: "alice".into(),
        client_id: Some("inspector".into()),
        agent_id: None,
        tool: "echo".into(),
        trace_id: trace.into(),
        envelope_id: "env-1".into(),
    }
}

struct TestSigner(SigningKey);

impl CheckpointSigner for TestSigner {
    fn sign(&self, msg: &[u8]) -> Result<(String, Vec<u8>), String> {
        Ok(("k1".into(), self.0.sign(msg).to_bytes().to_vec()))
    }
}

struct TestVerifier(VerifyingKey);

impl CheckpointVerifier for TestVerifier {
    fn verify(&self, kid: &str, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        kid == "k1" && self.0.verify(msg, &sig).is_ok()
    }
}

struct FailingSigner;

impl CheckpointSigner for FailingSigner {
    fn sign(&self, _: &[u8]) -> Result<(String, Vec<u8>), String> {
        Err("the key ring is unavailable".into())
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    storage: Storage,
    key: SigningKey,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage =
            Storage::open_waiting(&dir.path().join("db"), std::time::Duration::from_secs(2))
                .unwrap();
        Fixture {
            _dir: dir,
            storage,
            key: SigningKey::from_bytes(&[42; 32]),
        }
    }

    fn log(&self, settings: AuditSettings) -> AuditLog {
        AuditLog::open(&self.storage, self.signer(), settings).unwrap()
    }

    fn signer(&self) -> Arc<dyn CheckpointSigner> {
        Arc::new(TestSigner(self.key.clone()))
    }

    fn verifier(&self) -> TestVerifier {
        TestVerifier(self.key.verifying_key())
    }

    fn store(&self) -> EmbeddedStore {
        EmbeddedStore::new(self.storage.clone())
    }

    fn verify(&self) -> VerifyReport {
        verify(&self.storage, &self.verifier(), None).unwrap()
    }

    /// Verify `tenant` as a store that applies `tamper` to its records reads.
    fn verify_tampered(
        &self,
        tenant: &str,
        tamper: impl Fn(&mut Vec<(u64, Vec<u8>)>) + Send + Sync + 'static,
    ) -> Verdict {
        let store = Tampered::records(self.store(), tamper);
        let report = verify_store(&store, &self.verifier(), Some(tenant)).unwrap();
        report.tenants.into_iter().next().unwrap().verdict
    }
}

fn settings(checkpoint_every: u64) -> AuditSettings {
    AuditSettings { checkpoint_every }
}

fn end() -> CallEnd {
    CallEnd {
        outcome: Outcome::Ok,
        error_kind: None,
        duration_ms: 3,
        cpu_ms: Some(1),
        output_bytes: 10,
    }
}

fn delegation() -> DelegatedRequest {
    DelegatedRequest {
        service: "notes".into(),
        mode: Some(DelegationMode::Service),
        method: "GET".into(),
        path: "/notes?user=alice&limit=5".into(),
        status: Some(200),
        duration_ms: 2,
        refusal: None,
    }
}

/// `n` calls (start, delegation, end) for `tenant`: `3 * n` records.
async fn calls(log: &AuditLog, tenant: &str, trace: &str, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    for _ in 0..n {
        for entry in [
            Entry::start(who(tenant, trace), br#"{"text":"top secret"}"#),
            Entry::delegation(who(tenant, trace), delegation()),
            Entry::end(who(tenant, trace), end()),
        ] {
            seqs.push(log.append(entry).await.unwrap().seq);
        }
    }
    seqs
}

fn ok(records: u64, checkpoints: u64, unsigned_tail: u64) -> Verdict {
    Verdict::Ok(ChainCounts {
        records,
        checkpoints,
        unsigned_tail,
    })
}

fn verdicts(report: &VerifyReport) -> Vec<(String, Verdict)> {
    report
        .tenants
        .iter()
        .map(|t| (t.tenant.clone(), t.verdict.clone()))
        .collect()
}

/// Replace `from` by `to` (same length) in a stored value.
fn replace(value: &mut Vec<u8>, from: &str, to: &str) {
    let text = String::from_utf8(value.clone()).unwrap();
    assert!(text.contains(from), "{text}");
    *value = text.replacen(from, to, 1).into_bytes();
}

type Tamper = Box<dyn Fn(&mut Vec<(u64, Vec<u8>)>) + Send + Sync>;

/// A store that changes what it reads, as someone with the database files
/// could: the real records or checkpoints, edited on the way out.
struct Tampered {
    inner: EmbeddedStore,
    records: Tamper,
    checkpoints: Tamper,
}

impl Tampered {
    fn records(
        inner: EmbeddedStore,
        tamper: impl Fn(&mut Vec<(u64, Vec<u8>)>) + Send + Sync + 'static,
    ) -> Self {
        Tampered {
            inner,
            records: Box::new(tamper),
            checkpoints: Box::new(|_| {}),
        }
    }

    fn checkpoints(
        inner: EmbeddedStore,
        tamper: impl Fn(&mut Vec<(u64, Vec<u8>)>) + Send + Sync + 'static,
    ) -> Self {
        Tampered {
            inner,
            records: Box::new(|_| {}),
            checkpoints: Box::new(tamper),
        }
    }

    fn read(
        entries: StoredEntries<'_>,
        tamper: &Tamper,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut all = entries.collect::<Result<Vec<_>, _>>()?;
        tamper(&mut all);
        Ok(all)
    }
}

impl AuditStore for Tampered {
    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        self.inner.tenants()
    }
    fn salt(&self, tenant: &str) -> Result<Salt, StoreError> {
        self.inner.salt(tenant)
    }
    fn last_record(&self, tenant: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(Self::read(self.inner.records(tenant, 0)?, &self.records)?.pop())
    }
    fn last_checkpoint(&self, tenant: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(Self::read(self.inner.checkpoints(tenant)?, &self.checkpoints)?.pop())
    }
    fn append(
        &self,
        tenant: &str,
        records: &[(u64, Vec<u8>)],
        checkpoints: &[(u64, Vec<u8>)],
    ) -> Result<(), StoreError> {
        self.inner.append(tenant, records, checkpoints)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
    fn records(&self, tenant: &str, from: u64) -> Result<StoredEntries<'_>, StoreError> {
        let all = Self::read(self.inner.records(tenant, from)?, &self.records)?;
        Ok(Box::new(all.into_iter().map(Ok)))
    }
    fn checkpoints(&self, tenant: &str) -> Result<StoredEntries<'_>, StoreError> {
        let all = Self::read(self.inner.checkpoints(tenant)?, &self.checkpoints)?;
        Ok(Box::new(all.into_iter().map(Ok)))
    }
}

/// A store whose appends fail while `failing` is set.
struct Flaky {
    inner: EmbeddedStore,
    failing: AtomicBool,
}

impl AuditStore for Flaky {
    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        self.inner.tenants()
    }
    fn salt(&self, tenant: &str) -> Result<Salt, StoreError> {
        self.inner.salt(tenant)
    }
    fn last_record(&self, tenant: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.inner.last_record(tenant)
    }
    fn last_checkpoint(&self, tenant: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.inner.last_checkpoint(tenant)
    }
    fn append(
        &self,
        tenant: &str,
        records: &[(u64, Vec<u8>)],
        checkpoints: &[(u64, Vec<u8>)],
    ) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::new("disk full"));
        }
        self.inner.append(tenant, records, checkpoints)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
    fn records(&self, tenant: &str, from: u64) -> Result<StoredEntries<'_>, StoreError> {
        self.inner.records(tenant, from)
    }
    fn checkpoints(&self, tenant: &str) -> Result<StoredEntries<'_>, StoreError> {
        self.inner.checkpoints(tenant)
    }
}

#[tokio::test]
async fn appended_records_verify_and_hold_no_raw_arguments() {
    let fx = Fixture::new();
    let log = fx.log(settings(4));
    assert_eq!(
        calls(&log, "acme", "t1", 3).await,
        (1..=9).collect::<Vec<_>>()
    );
    assert_eq!(calls(&log, "globex", "t2", 1).await, vec![1, 2, 3]);
    assert_eq!(
        verdicts(&fx.verify()),
        vec![("acme".into(), ok(9, 2, 1)), ("globex".into(), ok(3, 0, 3))]
    );

    let mut out = Vec::new();
    assert_eq!(
        export(&fx.storage, &ExportFilter::default(), &mut out).unwrap(),
        12
    );
    let text = String::from_utf8(out).unwrap();
    assert!(
        !text.contains("top secret"),
        "raw arguments exported: {text}"
    );
    assert!(!text.contains("alice&"), "query values exported: {text}");
    let records: Vec<Record> = text
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            serde_json::from_value(value["body"].clone()).unwrap()
        })
        .collect();
    let first = &records[0];
    assert_eq!((first.seq, first.who.clone()), (1, who("acme", "t1")));
    assert_eq!(first.prev, "0".repeat(64));
    let Event::Delegation(request) = &records[1].event else {
        panic!("{:?}", records[1])
    };
    assert_eq!(request.path, "/notes?user&limit");
    assert_eq!(records[2].event, Event::End(end()));
    log.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_reopened_log_continues_each_chain() {
    let fx = Fixture::new();
    let log = fx.log(settings(1000));
    calls(&log, "acme", "t1", 2).await;
    log.shutdown().await.unwrap();
    drop(log);

    let log = fx.log(settings(1000));
    assert_eq!(calls(&log, "acme", "t1", 1).await, vec![7, 8, 9]);
    assert_eq!(calls(&log, "globex", "t1", 1).await, vec![1, 2, 3]);
    log.shutdown().await.unwrap();
    assert_eq!(
        verdicts(&fx.verify()),
        vec![("acme".into(), ok(9, 2, 0)), ("globex".into(), ok(3, 1, 0))]
    );
}

#[tokio::test]
async fn each_kind_of_tampering_is_named_at_its_record() {
    let fx = Fixture::new();
    let log = fx.log(settings(1000));
    calls(&log, "acme", "t1", 3).await;
    log.shutdown().await.unwrap();
    assert_eq!(fx.verify_tampered("acme", |_| {}), ok(9, 1, 0));

    let failed = |seq, problem| Verdict::Failed(Finding { seq, problem });
    let edited = fx.verify_tampered("acme", |r| replace(&mut r[4].1, "\"echo\"", "\"ecHo\""));
    assert_eq!(edited, failed(5, Problem::Edited));

    let removed = fx.verify_tampered("acme", |r| {
        r.remove(2);
    });
    assert_eq!(removed, failed(3, Problem::Removed { next_stored: 4 }));

    let swapped = fx.verify_tampered("acme", |r| {
        let (a, b) = (r[3].1.clone(), r[4].1.clone());
        r[3].1 = b;
        r[4].1 = a;
    });
    assert!(
        matches!(
            &swapped,
            Verdict::Failed(Finding {
                seq: 4,
                problem: Problem::Reordered { .. }
            })
        ),
        "{swapped:?}"
    );

    let truncated = fx.verify_tampered("acme", |r| {
        let len = r[5].1.len();
        r[5].1.truncate(len - 1);
    });
    assert!(
        matches!(
            &truncated,
            Verdict::Failed(Finding {
                seq: 6,
                problem: Problem::Unparseable { .. }
            })
        ),
        "{truncated:?}"
    );
    let halved = fx.verify_tampered("acme", |r| {
        let len = r[0].1.len();
        r[0].1.truncate(len / 2);
    });
    assert!(
        matches!(
            &halved,
            Verdict::Failed(Finding {
                seq: 1,
                problem: Problem::Unparseable { .. }
            })
        ),
        "{halved:?}"
    );

    // Rewriting a record and re-hashing it breaks the next record's link.
    let rehashed = fx.verify_tampered("acme", |r| {
        let value = String::from_utf8(r[1].1.clone()).unwrap();
        let body = &value[value.find(",\"body\":").unwrap() + 8..value.len() - 1];
        let body = body.replace("\"GET\"", "\"PUT\"");
        let record: Record = serde_json::from_str(&body).unwrap();
        let prev = record::decode_hash(&record.prev).unwrap();
        let hash = record::chain_hash(&prev, body.as_bytes());
        r[1].1 = format!("{{\"hash\":\"{}\",\"body\":{body}}}", hex::encode(hash)).into_bytes();
    });
    assert_eq!(
        rehashed,
        failed(
            3,
            Problem::Reordered {
                detail: "prev mismatch".into()
            }
        )
    );

    // Removing the tail after a checkpoint is caught by the checkpoint.
    let tail = fx.verify_tampered("acme", |r| r.truncate(7));
    assert_eq!(
        tail,
        failed(8, Problem::CheckpointBeyondChain { checkpoint: 9 })
    );

    let report = TenantReport {
        tenant: "acme".into(),
        verdict: edited,
    };
    assert_eq!(
        report.to_string(),
        "FAILED: tenant acme record 5: edited (hash mismatch)"
    );
}

#[tokio::test]
async fn checkpoints_must_be_signed_by_a_known_key_over_the_chain() {
    let fx = Fixture::new();
    let log = fx.log(settings(3));
    calls(&log, "acme", "t1", 2).await;
    log.shutdown().await.unwrap();
    assert_eq!(verdicts(&fx.verify()), vec![("acme".into(), ok(6, 2, 0))]);

    let failed = |seq, problem| Verdict::Failed(Finding { seq, problem });
    let check = |tamper: fn(&mut Vec<(u64, Vec<u8>)>)| {
        let store = Tampered::checkpoints(fx.store(), tamper);
        let report = verify_store(&store, &fx.verifier(), None).unwrap();
        report.tenants[0].verdict.clone()
    };
    let resigned_with_flip = check(|c| {
        let text = String::from_utf8(c[1].1.clone()).unwrap();
        let at = text.find("\"signature\":\"").unwrap() + 13;
        let flipped = if &text[at..at + 1] == "0" { "1" } else { "0" };
        c[1].1 = format!("{}{flipped}{}", &text[..at], &text[at + 1..]).into_bytes();
    });
    assert_eq!(
        resigned_with_flip,
        failed(6, Problem::BadCheckpointSignature { kid: "k1".into() })
    );
    let moved = check(|c| c[1].0 = 5);
    assert!(
        matches!(
            &moved,
            Verdict::Failed(Finding {
                seq: 5,
                problem: Problem::BadCheckpoint { .. }
            })
        ),
        "{moved:?}"
    );
    let garbage = check(|c| c[0].1 = b"{".to_vec());
    assert!(
        matches!(
            &garbage,
            Verdict::Failed(Finding {
                seq: 3,
                problem: Problem::BadCheckpoint { .. }
            })
        ),
        "{garbage:?}"
    );

    // Another key: every checkpoint is unverifiable.
    let stranger = TestVerifier(SigningKey::from_bytes(&[1; 32]).verifying_key());
    let report = verify(&fx.storage, &stranger, Some("acme")).unwrap();
    assert!(!report.is_ok());
    assert_eq!(
        report.tenants[0].verdict,
        failed(3, Problem::BadCheckpointSignature { kid: "k1".into() })
    );

    // A checkpoint validly signed over another hash: the chain was rewritten.
    let signer = TestSigner(fx.key.clone());
    let forged = move |c: &mut Vec<(u64, Vec<u8>)>| {
        let hash = "ab".repeat(32);
        let msg = Checkpoint::message("acme", 3, &hash, 1);
        let (kid, sig) = signer.sign(&msg).unwrap();
        let checkpoint = Checkpoint {
            tenant: "acme".into(),
            seq: 3,
            hash,
            time_ms: 1,
            kid,
            signature: hex::encode(sig),
        };
        c[0].1 = serde_json::to_vec(&checkpoint).unwrap();
    };
    let store = Tampered::checkpoints(fx.store(), forged);
    let report = verify_store(&store, &fx.verifier(), None).unwrap();
    assert_eq!(
        report.tenants[0].verdict,
        failed(3, Problem::CheckpointMismatch)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_all_acknowledged_in_one_contiguous_chain() {
    let fx = Fixture::new();
    let log = Arc::new(fx.log(settings(100)));
    let mut tasks = Vec::new();
    for task in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for _ in 0..200 {
                let entry = Entry::start(who("acme", &format!("t{task}")), b"{}");
                seqs.push(log.append(entry).await.unwrap().seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one task's records out of order"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=1600).collect::<Vec<_>>());
    assert_eq!(
        verdicts(&fx.verify()),
        vec![("acme".into(), ok(1600, 16, 0))]
    );
    log.shutdown().await.unwrap();
}

#[tokio::test]
async fn many_concurrent_appends_are_never_dropped() {
    let fx = Fixture::new();
    let log = Arc::new(fx.log(AuditSettings {
        checkpoint_every: 1000,
    }));
    let appends: Vec<_> = (0..100)
        .map(|i| log.append(Entry::start(who("acme", &format!("t{i}")), b"{}")))
        .collect();
    let mut seqs = Vec::new();
    for append in appends.into_iter().map(tokio::spawn).collect::<Vec<_>>() {
        seqs.push(append.await.unwrap().unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    assert_eq!(
        verdicts(&fx.verify()),
        vec![("acme".into(), ok(100, 0, 100))]
    );
    log.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_signs_the_unsigned_tail_and_closes() {
    let fx = Fixture::new();
    let log = fx.log(settings(1000));
    calls(&log, "acme", "t1", 2).await;
    // Without a final checkpoint the chain alone vouches for the records.
    assert_eq!(verdicts(&fx.verify()), vec![("acme".into(), ok(6, 0, 6))]);
    log.shutdown().await.unwrap();
    assert_eq!(verdicts(&fx.verify()), vec![("acme".into(), ok(6, 1, 0))]);
    let late = log.append(Entry::end(who("acme", "t1"), end())).await;
    assert!(matches!(late, Err(AuditError::Closed)), "{late:?}");
    log.shutdown().await.unwrap();
    assert_eq!(verdicts(&fx.verify()), vec![("acme".into(), ok(6, 1, 0))]);
}

#[tokio::test]
async fn a_failed_write_fails_every_waiting_append_and_the_chain_recovers() {
    let fx = Fixture::new();
    let store = Arc::new(Flaky {
        inner: fx.store(),
        failing: AtomicBool::new(false),
    });
    let log = AuditLog::open_store(store.clone(), fx.signer(), settings(1000)).unwrap();
    calls(&log, "acme", "t1", 1).await;
    store.failing.store(true, Ordering::SeqCst);
    let failed: Vec<_> = (0..5)
        .map(|_| tokio::spawn(log.append(Entry::end(who("acme", "t1"), end()))))
        .collect();
    for append in failed {
        let result = append.await.unwrap();
        assert!(
            matches!(&result, Err(AuditError::Store(e)) if e.to_string() == "disk full"),
            "{result:?}"
        );
    }
    store.failing.store(false, Ordering::SeqCst);
    assert_eq!(calls(&log, "acme", "t1", 1).await, vec![4, 5, 6]);
    log.shutdown().await.unwrap();
    assert_eq!(verdicts(&fx.verify()), vec![("acme".into(), ok(6, 1, 0))]);
}

#[tokio::test]
async fn without_a_signer_records_are_still_chained() {
    let fx = Fixture::new();
    let log = AuditLog::open(&fx.storage, Arc::new(FailingSigner), settings(2)).unwrap();
    calls(&log, "acme", "t1", 1).await;
    let result = log.shutdown().await;
    assert!(matches!(&result, Err(AuditError::Sign(_))), "{result:?}");
    assert_eq!(verdicts(&fx.verify()), vec![("acme".into(), ok(3, 0, 3))]);
}

#[tokio::test]
async fn a_chain_with_a_removed_tail_is_not_continued() {
    let fx = Fixture::new();
    let log = fx.log(settings(1000));
    calls(&log, "acme", "t1", 1).await;
    calls(&log, "globex", "t1", 1).await;
    log.shutdown().await.unwrap();
    drop(log);
    let store = Arc::new(Tampered::records(fx.store(), |r| {
        if r.first()
            .is_some_and(|(_, v)| String::from_utf8_lossy(v).contains("acme"))
        {
            r.truncate(2);
        }
    }));
    let log = AuditLog::open_store(store, fx.signer(), settings(1000)).unwrap();
    let refused = log.append(Entry::end(who("acme", "t1"), end())).await;
    assert!(
        matches!(&refused, Err(AuditError::Broken { tenant, .. }) if tenant == "acme"),
        "{refused:?}"
    );
    // Other tenants are unaffected.
    let globex = log.append(Entry::end(who("globex", "t1"), end())).await;
    assert_eq!(globex.unwrap().seq, 4);
    let invalid = log
        .append(Entry::end(who("Not A Tenant", "t1"), end()))
        .await;
    assert!(
        matches!(invalid, Err(AuditError::InvalidTenant(_))),
        "{invalid:?}"
    );
    log.shutdown().await.unwrap();
}

#[tokio::test]
async fn export_filters_by_tenant_time_and_trace() {
    let fx = Fixture::new();
    let log = fx.log(settings(1000));
    calls(&log, "acme", "t1", 2).await;
    calls(&log, "acme", "t2", 1).await;
    calls(&log, "globex", "t1", 1).await;
    log.shutdown().await.unwrap();
    let count = |filter: ExportFilter| {
        let mut out = Vec::new();
        let n = export(&fx.storage, &filter, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count() as u64, n);
        n
    };
    assert_eq!(count(ExportFilter::default()), 12);
    let acme = || ExportFilter {
        tenant: Some("acme".into()),
        ..ExportFilter::default()
    };
    assert_eq!(count(acme()), 9);
    assert_eq!(
        count(ExportFilter {
            trace_id: Some("t1".into()),
            ..acme()
        }),
        6
    );
    assert_eq!(
        count(ExportFilter {
            trace_id: Some("t1".into()),
            ..ExportFilter::default()
        }),
        9
    );
    let since = |text: &str| ExportFilter {
        since_ms: Some(parse_rfc3339_ms(text).unwrap()),
        ..ExportFilter::default()
    };
    assert_eq!(count(since("2000-01-01T00:00:00Z")), 12);
    assert_eq!(count(since("9999-01-01T00:00:00+02:00")), 0);
    let unknown = export(
        &fx.storage,
        &ExportFilter {
            tenant: Some("initech".into()),
            ..ExportFilter::default()
        },
        &mut Vec::new(),
    );
    assert!(
        matches!(unknown, Err(ExportError::UnknownTenant(_))),
        "{unknown:?}"
    );
    let unknown = verify(&fx.storage, &fx.verifier(), Some("initech"));
    assert!(
        matches!(unknown, Err(VerifyError::UnknownTenant(_))),
        "{unknown:?}"
    );
}

#[test]
fn rfc3339_times_parse_strictly() {
    assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01Z"), Ok(1000));
    assert_eq!(parse_rfc3339_ms("1970-01-01T02:00:01.250+02:00"), Ok(1250));
    for bad in [
        "",
        "2025-06-01",
        "2025-06-01T12:00:00",
        "yesterday",
        "1969-12-31T23:59:59Z",
    ] {
        assert!(parse_rfc3339_ms(bad).is_err(), "{bad}");
    }
}

#[test]
fn reports_read_as_the_cli_prints_them() {
    let line = |verdict| {
        TenantReport {
            tenant: "acme".into(),
            verdict,
        }
        .to_string()
    };
    assert_eq!(
        line(ok(1234, 1, 234)),
        "OK: tenant acme: 1234 records, 1 checkpoint, unsigned tail 234"
    );
    assert_eq!(
        line(ok(1, 0, 1)),
        "OK: tenant acme: 1 record, 0 checkpoints, unsigned tail 1"
    );
    assert_eq!(
        line(Verdict::Failed(Finding {
            seq: 17,
            problem: Problem::Removed { next_stored: 18 }
        })),
        "FAILED: tenant acme record 17: removed (seq gap: the next stored record is 18)"
    );
}

/// Run by [`a_killed_writer_leaves_every_acknowledged_record_and_no_torn_one`]
/// in a child process: append from four tasks until killed, publishing how
/// many appends were acknowledged.
async fn append_until_killed(dir: &std::path::Path) {
    let storage =
        Storage::open_waiting(&dir.join("db"), std::time::Duration::from_secs(2)).unwrap();
    let signer = Arc::new(TestSigner(SigningKey::from_bytes(&[42; 32])));
    let log = Arc::new(AuditLog::open(&storage, signer, settings(50)).unwrap());
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for task in 0..4 {
        let (log, acked, dir) = (log.clone(), acked.clone(), dir.to_path_buf());
        tokio::spawn(async move {
            loop {
                let entry = Entry::start(who("acme", &format!("t{task}")), b"{\"n\":1}");
                log.append(entry).await.unwrap();
                let n = acked.fetch_add(1, Ordering::SeqCst) + 1;
                let tmp = dir.join(format!("acked.{task}"));
                std::fs::write(&tmp, n.to_string()).unwrap();
                std::fs::rename(&tmp, dir.join("acked")).unwrap();
            }
        });
    }
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_leaves_every_acknowledged_record_and_no_torn_one() {
    const CHILD: &str = "AIRLOCK_AUDIT_KILL_TEST_DIR";
    if let Some(dir) = std::env::var_os(CHILD) {
        append_until_killed(std::path::Path::new(&dir)).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "audit::tests::a_killed_writer_leaves_every_acknowledged_record_and_no_torn_one",
            "--nocapture",
        ])
        .env(CHILD, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let read_acked = || {
        std::fs::read_to_string(dir.path().join("acked"))
            .ok()
            .and_then(|n| n.parse::<u64>().ok())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while read_acked().is_none_or(|n| n < 300) {
        assert!(
            std::time::Instant::now() < deadline,
            "the child wrote nothing"
        );
        assert!(child.try_wait().unwrap().is_none(), "the child exited");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL: no shutdown, no final flush
    child.wait().unwrap();
    let acked = read_acked().unwrap();

    let storage =
        Storage::open_waiting(&dir.path().join("db"), std::time::Duration::from_secs(2)).unwrap();
    let key = SigningKey::from_bytes(&[42; 32]);
    let report = verify(&storage, &TestVerifier(key.verifying_key()), None).unwrap();
    let Verdict::Ok(counts) = report.tenants[0].verdict else {
        panic!("{report:?}")
    };
    // Acknowledged records may be lost only from the last flush interval
    // (100 ms: far fewer than 2,000 here); none is torn, the chain verifies.
    assert!(
        counts.records + 2_000 >= acked && counts.records > 0,
        "{} records, {acked} acknowledged",
        counts.records
    );
    assert!(counts.checkpoints >= 5, "{counts:?}");
    // The chain continues after the crash.
    let log = AuditLog::open(&storage, Arc::new(TestSigner(key)), settings(50)).unwrap();
    let next = log
        .append(Entry::end(who("acme", "t0"), end()))
        .await
        .unwrap();
    assert_eq!(next.seq, counts.records + 1);
    log.shutdown().await.unwrap();
}
