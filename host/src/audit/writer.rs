//! [`AuditLog`]: appends records off the request path.
//!
//! Callers put entries on a bounded queue (waiting when it is full; nothing is
//! ever dropped) and wait for their acknowledgement. One writer on tokio's
//! blocking pool takes everything queued, gives each entry its place in its
//! tenant's chain, writes each tenant's share in one atomic append, flushes
//! once, and only then acknowledges: an acknowledged record is on disk. If a
//! write fails, every entry of it gets the error, and that tenant's chain is
//! re-read from the store before its next write.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::storage::Storage;

use super::record::{Checkpoint, Entry, Salt, ZERO_HASH, chain_hash, decode_hash, now_ms, unframe};
use super::store::{AuditStore, EmbeddedStore};
use super::{AuditError, CheckpointSigner};

/// How the writer batches and signs.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Sign a checkpoint after this many records of a tenant (and at shutdown).
    pub checkpoint_every: u64,
    /// Entries that may wait for the writer before appends wait themselves.
    pub queue_capacity: usize,
    /// Most entries written in one batch.
    pub max_batch: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            checkpoint_every: 1000,
            queue_capacity: 4096,
            max_batch: 1024,
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

enum Command {
    // Boxed so queue slots stay small; an entry's strings are on the heap anyway.
    Append(Box<Entry>, Ack),
    Shutdown(oneshot::Sender<Result<(), AuditError>>),
}

/// The audit trail's writer. Share it (`Arc`); call [`AuditLog::shutdown`]
/// before exit to sign the final checkpoints.
#[derive(Debug)]
pub struct AuditLog {
    queue: mpsc::Sender<Command>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
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
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AuditError::NoRuntime)?;
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
        let (queue, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let writer = Writer {
            store,
            signer,
            checkpoint_every: settings.checkpoint_every.max(1),
            max_batch: settings.max_batch.max(1),
            heads,
        };
        let handle = runtime.spawn_blocking(move || writer.run(receiver));
        Ok(AuditLog {
            queue,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Append `entry` to its tenant's chain. Resolves once the record is on
    /// disk, with its seq; an error means it may not be, and the call it
    /// belongs to must fail.
    pub fn append(
        &self,
        entry: Entry,
    ) -> impl Future<Output = Result<AppendReceipt, AuditError>> + Send + 'static {
        let queue = self.queue.clone();
        async move {
            if !crate::config::valid_tenant_id(entry.tenant()) {
                return Err(AuditError::InvalidTenant(entry.tenant().to_string()));
            }
            let (ack, receipt) = oneshot::channel();
            queue
                .send(Command::Append(Box::new(entry), ack))
                .await
                .map_err(|_| AuditError::Closed)?;
            receipt.await.map_err(|_| AuditError::Closed)?
        }
    }

    /// Write everything queued, sign a final checkpoint for every chain with
    /// unsigned records, flush, and stop accepting entries. Safe to call more
    /// than once.
    pub async fn shutdown(&self) -> Result<(), AuditError> {
        let (done, result) = oneshot::channel();
        let outcome = match self.queue.send(Command::Shutdown(done)).await {
            Ok(()) => result.await.unwrap_or(Err(AuditError::Closed)),
            // Already shut down.
            Err(_) => Ok(()),
        };
        let handle = match self.writer.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(handle) = handle
            && handle.await.is_err()
        {
            return Err(AuditError::Closed);
        }
        outcome
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

struct Writer {
    store: Arc<dyn AuditStore>,
    signer: Arc<dyn CheckpointSigner>,
    checkpoint_every: u64,
    max_batch: usize,
    heads: HashMap<String, Head>,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Command>) {
        let mut appends = Vec::new();
        let mut shutdowns = Vec::new();
        while let Some(first) = queue.blocking_recv() {
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Append(entry, ack) => appends.push((*entry, ack)),
                    Command::Shutdown(done) => shutdowns.push(done),
                }
                if appends.len() < self.max_batch {
                    next = queue.try_recv().ok();
                }
            }
            if !shutdowns.is_empty() {
                // Accept nothing more, but write everything already accepted.
                queue.close();
                while let Ok(command) = queue.try_recv() {
                    match command {
                        Command::Append(entry, ack) => appends.push((*entry, ack)),
                        Command::Shutdown(done) => shutdowns.push(done),
                    }
                }
            }
            self.write(std::mem::take(&mut appends));
            if !shutdowns.is_empty() {
                let result = self.final_checkpoints();
                for done in shutdowns.drain(..) {
                    let _ = done.send(result.clone());
                }
                return;
            }
        }
        // Every handle is gone: everything queued was written. No final
        // checkpoint: the tail stays verifiable through the chain.
    }

    /// Write one batch, flush once, then acknowledge every entry.
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
        if written && let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "audit flush failed; failing every append of the batch");
            for (_, result) in &mut acks {
                if result.is_ok() {
                    *result = Err(AuditError::Store(e.clone()));
                }
            }
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
