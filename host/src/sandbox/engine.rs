//! Engine configuration and the epoch ticker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::SandboxError;
use super::limits::SandboxSettings;

/// How often the ticker advances the epoch. Guests yield to the async runtime
/// and have their deadline checked once per tick.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// The least a running guest keeps its thread, once calls are waiting for
/// one, before it gives it back.
pub(crate) const MIN_SLICE: Duration = Duration::from_micros(50);

/// Calls handed to the guest threads that have not started running yet.
/// While any wait, a running guest gives its thread back at its next epoch
/// check once it has run [`MIN_SLICE`], instead of finishing its tick: a
/// short call does not wait behind a long one's time slice.
#[derive(Debug, Default)]
pub(crate) struct Waiting(AtomicUsize);

/// One waiting call; it stops waiting when this is dropped (the call
/// started, or was abandoned before it could).
pub(crate) struct WaitTicket(Arc<Waiting>);

impl Waiting {
    /// A call starts waiting; running guests are told at once (an epoch
    /// step makes each check in).
    pub(crate) fn enter(self: &Arc<Self>, engine: &Engine) -> WaitTicket {
        self.0.fetch_add(1, Ordering::SeqCst);
        engine.increment_epoch();
        WaitTicket(self.clone())
    }

    /// Whether any call is waiting.
    pub(crate) fn any(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Per-component maxima for the pooling allocator. A component built by
/// wasm-component-ld has a handful of core instances (the module plus shims),
/// one memory and a few tables.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const TABLES_PER_COMPONENT: u32 = 8;
const MEMORIES_PER_COMPONENT: u32 = 2;
pub(crate) const TABLE_ELEMENTS: usize = 20_000;

pub(crate) fn build(settings: &SandboxSettings) -> Result<Engine, SandboxError> {
    let n = settings.max_concurrent_calls;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(n.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(n.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(n)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .table_elements(TABLE_ELEMENTS)
        .max_memory_size(settings.max_memory_bytes)
        // Keep the first pages of each slot resident between calls: resetting
        // them with memset (only the pages a call touched, where the kernel
        // can say which) is cheaper than madvise, its TLB shootdowns across
        // cores and faulting them in again; the amount is fixed per slot.
        .linear_memory_keep_resident(1024 * 1024)
        .table_keep_resident(64 * 1024)
        .pagemap_scan(wasmtime::Enabled::Auto)
        // What is still decommitted goes in batches: fewer system calls and
        // cross-core TLB flushes per call.
        .decommit_batch_size(8);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // Initialise memory by copying data segments into the slot, not by
        // mapping a copy-on-write image: per call that is a memcpy of a few
        // KiB instead of mmap calls that take the process-wide mapping lock
        // and flush TLBs on every core.
        .memory_init_cow(false)
        // Explicit bounds checks instead of guard pages and signal handlers:
        // memory a call grew is then given back without `mprotect`, whose
        // TLB flush interrupts every core on every call.
        .signals_based_traps(false)
        .memory_guard_size(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Some(dir) = &settings.cache_dir {
        let mut cache_config = wasmtime::CacheConfig::new();
        cache_config.with_directory(dir);
        let cache = wasmtime::Cache::new(cache_config).map_err(|e| {
            SandboxError::Settings(format!(
                "cannot use {} as the compilation cache: {e}",
                dir.display()
            ))
        })?;
        config.cache(Some(cache));
    }
    Engine::new(&config).map_err(|e| SandboxError::Engine(e.to_string()))
}

/// Start the one thread that advances the engine's epoch; it stops when the
/// returned flag is set. Without it CPU-bound guests would never reach their
/// deadline, so failing to start it is fatal.
pub(crate) fn start_epoch_ticker(engine: &Engine) -> Result<Arc<AtomicBool>, SandboxError> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let engine = engine.clone();
    std::thread::Builder::new()
        .name("airlock-epoch".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                engine.increment_epoch();
            }
        })
        .map_err(|e| SandboxError::Engine(format!("could not start the epoch ticker: {e}")))?;
    Ok(stop)
}
