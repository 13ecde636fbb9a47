//! [`AuditLog`]: appends records, with the disk off the request path.
//!
//! A caller's entry gets its place in its tenant's chain and is stored in one
//! atomic append, under a lock, before `append` returns; a flusher thread takes
//! what was written to disk at most every [`FLUSH_INTERVAL`] (see
//! [`AuditLog`]). Nothing is ever dropped: a failed write fails its
//! append, and that tenant's chain is re-read from the store before its next
//! write.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::storage::Storage;

use super::record::{Checkpoint, Entry, Salt, ZERO_HASH, chain_hash, decode_hash, now_ms, unframe};
use super::store::{AuditStore, EmbeddedStore};
use super::{AuditError, CheckpointSigner};

/// How the writer signs.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Sign a checkpoint after this many records of a tenant (and at shutdown).
    pub checkpoint_every: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            checkpoint_every: 1000,
        }
    }
}

/// Where an appended record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReceipt {
    /// Its position in its tenant's chain.
    pub seq: u64,
}

type Ack = oneshot::Sender<Result<AppendReceipt, AuditError>>;

/// The audit trail's writer. Share it (`Arc`); call [`AuditLog::shutdown`]
/// before exit to sign the final checkpoints.
///
/// An append is written by its caller, under a lock: giving each record its
/// place in the chain and storing it takes microseconds, less than handing it
/// to another task or thread would. The slow part, the disk, is off the
/// request path: a flusher thread flushes what was written at most every
/// [`FLUSH_INTERVAL`], batching many records into one fsync.
pub struct AuditLog {
    writer: Mutex<Option<Writer>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Open the audit trail in `storage`, continuing each tenant's chain from
    /// its last stored record. Must run inside a tokio runtime.
    pub fn open(
        storage: &Storage,
        signer: Arc<dyn CheckpointSigner>,
        settings: AuditSettings,
    ) -> Result<AuditLog, AuditError> {
        Self::open_store(
            Arc::new(EmbeddedStore::new(storage.clone())),
            signer,
            settings,
        )
    }

    /// [`AuditLog::open`] over any [`AuditStore`].
    pub fn open_store(
        store: Arc<dyn AuditStore>,
        signer: Arc<dyn CheckpointSigner>,
        settings: AuditSettings,
    ) -> Result<AuditLog, AuditError> {
        let mut heads = HashMap::new();
        for tenant in store.tenants()? {
            match Head::load(&*store, &tenant) {
                Ok(head) => {
                    heads.insert(tenant, head);
                }
                // Only this tenant's appends fail (each names the problem).
                Err(e @ AuditError::Broken { .. }) => {
                    tracing::error!(tenant, error = %e, "audit chain cannot be continued");
                }
                Err(e) => return Err(e),
            }
        }
        let flusher = Arc::new(Flusher {
            state: Mutex::new(FlushState::default()),
            wake: std::sync::Condvar::new(),
        });
        let flush_thread = {
            let (flusher, store) = (flusher.clone(), store.clone());
            std::thread::Builder::new()
                .name("airlock-audit-flush".into())
                .spawn(move || flusher.run(&*store))
                .map_err(|e| AuditError::Store(super::StoreError::new(e.to_string())))?
        };
        let writer = Writer {
            flusher,
            flush_thread: Some(flush_thread),
            store,
            signer,
            checkpoint_every: settings.checkpoint_every.max(1),
            heads,
        };
        Ok(AuditLog {
            writer: Mutex::new(Some(writer)),
        })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Option<Writer>> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Append `entry` to its tenant's chain. Resolves once the database holds
    /// the record (its batch is flushed to disk right after), with its seq; an
    /// error means it may not be written, and the call it belongs to must fail.
    pub fn append(
        &self,
        entry: Entry,
    ) -> impl Future<Output = Result<AppendReceipt, AuditError>> + Send + 'static {
        std::future::ready(self.append_now(entry))
    }

    fn append_now(&self, entry: Entry) -> Result<AppendReceipt, AuditError> {
        if !crate::config::valid_tenant_id(entry.tenant()) {
            return Err(AuditError::InvalidTenant(entry.tenant().to_string()));
        }
        let (ack, mut receipt) = oneshot::channel();
        match self.writer().as_mut() {
            Some(writer) => writer.write(vec![(entry, ack)]),
            None => return Err(AuditError::Closed),
        }
        receipt.try_recv().unwrap_or(Err(AuditError::Closed))
    }

    /// Sign a final checkpoint for every chain with unsigned records, flush,
    /// and stop accepting entries. Safe to call more than once.
    pub async fn shutdown(&self) -> Result<(), AuditError> {
        let writer = self.writer().take();
        match writer {
            // Dropping the writer stops the flusher after a last flush.
            Some(mut writer) => writer.final_checkpoints(),
            None => Ok(()),
        }
    }
}

/// The end of a tenant's chain, as stored.
#[derive(Debug, Clone)]
struct Head {
    last_seq: u64,
    hash: [u8; 32],
    last_checkpoint: u64,
    salt: Salt,
}

impl Head {
    /// Read the end of `tenant`'s chain, refusing one this writer could not
    /// have left: continuing it would hide what happened to it.
    fn load(store: &dyn AuditStore, tenant: &str) -> Result<Head, AuditError> {
        let broken = |reason: String| AuditError::Broken {
            tenant: tenant.to_string(),
            reason,
        };
        let salt = store.salt(tenant)?;
        let (last_seq, hash) = match store.last_record(tenant)? {
            None => (0, ZERO_HASH),
            Some((seq, value)) => {
                let framed = unframe(&value)
                    .map_err(|e| broken(format!("record {seq} is unreadable: {e}")))?;
                if framed.header.seq != seq {
                    return Err(broken(format!(
                        "record {seq} holds record {}",
                        framed.header.seq
                    )));
                }
                let prev = decode_hash(&framed.header.prev)
                    .ok_or_else(|| broken(format!("record {seq} has no valid prev")))?;
                if chain_hash(&prev, framed.body) != framed.hash {
                    return Err(broken(format!("record {seq} was edited")));
                }
                (seq, framed.hash)
            }
        };
        let last_checkpoint = store.last_checkpoint(tenant)?.map_or(0, |(seq, _)| seq);
        if last_checkpoint > last_seq {
            return Err(broken(format!(
                "a checkpoint covers record {last_checkpoint} but the chain ends at {last_seq}"
            )));
        }
        Ok(Head {
            last_seq,
            hash,
            last_checkpoint,
            salt,
        })
    }
}

/// How often written records are flushed to disk at most: the longest a
/// crash can be after a record was acknowledged and still lose it.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Flushes the store on a thread of its own, so that the writer goes on
/// writing (and acknowledging) while the disk catches up.
struct Flusher {
    state: Mutex<FlushState>,
    wake: std::sync::Condvar,
}

#[derive(Default)]
struct FlushState {
    /// Something was written since the last flush began.
    dirty: bool,
    /// The writer is gone: flush once more and stop.
    stop: bool,
    /// The last flush failed.
    failed: bool,
}

impl Flusher {
    fn lock(&self) -> std::sync::MutexGuard<'_, FlushState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn mark_dirty(&self) {
        self.lock().dirty = true;
        self.wake.notify_one();
    }

    fn failed(&self) -> bool {
        self.lock().failed
    }

    fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_one();
    }

    fn run(&self, store: &dyn AuditStore) {
        let mut last_flush: Option<std::time::Instant> = None;
        loop {
            let mut state = self.lock();
            while !state.dirty && !state.stop {
                state = self
                    .wake
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if state.stop && !state.dirty {
                return;
            }
            let stopping = state.stop;
            drop(state);
            // A flush holds up concurrent writes (sled serialises them), so
            // flush at most once per interval; the write path stays short.
            if !stopping && let Some(at) = last_flush {
                std::thread::sleep(FLUSH_INTERVAL.saturating_sub(at.elapsed()));
            }
            self.lock().dirty = false;
            last_flush = Some(std::time::Instant::now());
            let result = store.flush();
            if let Err(e) = &result {
                tracing::error!(error = %e, "audit flush failed; refusing appends until one succeeds");
            }
            self.lock().failed = result.is_err();
        }
    }
}

struct Writer {
    flusher: Arc<Flusher>,
    flush_thread: Option<std::thread::JoinHandle<()>>,
    store: Arc<dyn AuditStore>,
    signer: Arc<dyn CheckpointSigner>,
    checkpoint_every: u64,
    heads: HashMap<String, Head>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Flush what was written and wait for the flusher to let go of the store.
        self.flusher.stop();
        if let Some(thread) = self.flush_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Writer {
    /// Write one batch and acknowledge every entry; the flusher then takes
    /// it to disk.
    ///
    /// An entry is acknowledged when the database holds it (each tenant's
    /// share is one atomic append). Waiting for the disk before answering
    /// would put an fsync on every call's path; instead a thread of its own
    /// flushes what was written at most every [`FLUSH_INTERVAL`], so a crash
    /// can lose the records of the last interval, never tear one. If a flush
    /// fails, nothing more is accepted until one succeeds.
    fn write(&mut self, appends: Vec<(Entry, Ack)>) {
        if appends.is_empty() {
            return;
        }
        let span = tracing::info_span!(
            "airlock.audit.write",
            records = appends.len(),
            tenants = tracing::field::Empty
        );
        let _entered = span.enter();
        if self.flusher.failed() {
            if let Err(e) = self.store.flush() {
                tracing::error!(error = %e, "audit flush still failing; refusing appends");
                for (_, ack) in appends {
                    let _ = ack.send(Err(AuditError::Store(e.clone())));
                }
                return;
            }
            self.flusher.lock().failed = false;
        }
        let mut by_tenant: BTreeMap<String, Vec<(Entry, Ack)>> = BTreeMap::new();
        for (entry, ack) in appends {
            by_tenant
                .entry(entry.tenant().to_string())
                .or_default()
                .push((entry, ack));
        }
        span.record("tenants", by_tenant.len());
        let mut acks = Vec::new();
        let mut written = false;
        for (tenant, entries) in by_tenant {
            written |= self.write_tenant(&tenant, entries, &mut acks);
        }
        if written {
            self.flusher.mark_dirty();
        }
        for (ack, result) in acks {
            // The caller may have given up waiting; the record stays written.
            let _ = ack.send(result);
        }
    }

    /// Chain and append one tenant's entries; `true` if anything was stored.
    fn write_tenant(
        &mut self,
        tenant: &str,
        entries: Vec<(Entry, Ack)>,
        acks: &mut Vec<(Ack, Result<AppendReceipt, AuditError>)>,
    ) -> bool {
        let head = match self.head(tenant) {
            Ok(head) => head.clone(),
            Err(e) => {
                tracing::error!(tenant, error = %e, "cannot continue the audit chain");
                acks.extend(entries.into_iter().map(|(_, ack)| (ack, Err(e.clone()))));
                return false;
            }
        };
        let mut next = head;
        let mut records = Vec::with_capacity(entries.len());
        let mut checkpoints = Vec::new();
        let mut sealed = Vec::with_capacity(entries.len());
        for (entry, ack) in entries {
            let seq = next.last_seq.saturating_add(1);
            match entry.seal(seq, &next.hash, now_ms(), &next.salt) {
                Ok((value, hash)) => {
                    records.push((seq, value));
                    next.last_seq = seq;
                    next.hash = hash;
                    sealed.push((ack, seq));
                }
                Err(e) => acks.push((ack, Err(e))),
            }
            if next.last_seq.saturating_sub(next.last_checkpoint) >= self.checkpoint_every {
                match self.checkpoint(tenant, &next) {
                    Ok(checkpoint) => {
                        checkpoints.push(checkpoint);
                        next.last_checkpoint = next.last_seq;
                    }
                    // The records stay chained; the next write tries again.
                    Err(e) => tracing::error!(tenant, error = %e, "audit checkpoint not signed"),
                }
            }
        }
        if records.is_empty() {
            return false;
        }
        match self.store.append(tenant, &records, &checkpoints) {
            Ok(()) => {
                self.heads.insert(tenant.to_string(), next);
                acks.extend(
                    sealed
                        .into_iter()
                        .map(|(ack, seq)| (ack, Ok(AppendReceipt { seq }))),
                );
                true
            }
            Err(e) => {
                tracing::error!(tenant, error = %e, "audit append failed");
                // Whatever the store holds now is the truth: re-read it next time.
                self.heads.remove(tenant);
                acks.extend(
                    sealed
                        .into_iter()
                        .map(|(ack, _)| (ack, Err(AuditError::Store(e.clone())))),
                );
                false
            }
        }
    }

    fn head(&mut self, tenant: &str) -> Result<&Head, AuditError> {
        if !self.heads.contains_key(tenant) {
            let head = Head::load(&*self.store, tenant)?;
            self.heads.insert(tenant.to_string(), head);
        }
        self.heads.get(tenant).ok_or(AuditError::Closed)
    }

    /// A signed checkpoint at `head`, as stored.
    fn checkpoint(&self, tenant: &str, head: &Head) -> Result<(u64, Vec<u8>), AuditError> {
        let time_ms = now_ms();
        let hash = hex::encode(head.hash);
        let msg = Checkpoint::message(tenant, head.last_seq, &hash, time_ms);
        let (kid, signature) = self.signer.sign(&msg).map_err(AuditError::Sign)?;
        let checkpoint = Checkpoint {
            tenant: tenant.to_string(),
            seq: head.last_seq,
            hash,
            time_ms,
            kid,
            signature: hex::encode(signature),
        };
        let value =
            serde_json::to_vec(&checkpoint).map_err(|e| AuditError::Encode(e.to_string()))?;
        Ok((head.last_seq, value))
    }

    /// Sign every chain's unsigned tail, then flush.
    fn final_checkpoints(&mut self) -> Result<(), AuditError> {
        let _entered = tracing::info_span!("airlock.audit.shutdown").entered();
        let mut result = Ok(());
        let tenants: Vec<String> = self.heads.keys().cloned().collect();
        for tenant in tenants {
            let Some(head) = self.heads.get(&tenant) else {
                continue;
            };
            if head.last_seq <= head.last_checkpoint {
                continue;
            }
            let written = self.checkpoint(&tenant, head).and_then(|checkpoint| {
                self.store
                    .append(&tenant, &[], &[checkpoint])
                    .map_err(AuditError::from)
            });
            match written {
                Ok(()) => {
                    if let Some(head) = self.heads.get_mut(&tenant) {
                        head.last_checkpoint = head.last_seq;
                    }
                }
                Err(e) => {
                    tracing::error!(tenant, error = %e, "final audit checkpoint not written");
                    result = Err(e);
                }
            }
        }
        self.store.flush()?;
        result
    }
}
