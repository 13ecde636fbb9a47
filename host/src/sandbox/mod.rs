//! The sandbox: the only module that names wasmtime.
//!
//! One [`Sandbox`] per process owns the engine (component model, pooling
//! allocator sized to the concurrency cap, epoch interruption driven by one
//! ticker thread, on-disk compilation cache) and the linker. [`Sandbox::load`]
//! checks and prepares a component once; [`Sandbox::call`] runs one tool call
//! in a fresh instance with its own store and limits, and discards it.
//!
//! Guests run on the sandbox's own multi-thread tokio runtime
//! (`guest_threads` workers), never on the runtime that accepts connections,
//! validates tokens and speaks MCP; a guest gives its thread back at every
//! epoch tick. Slots are shared fairly between tenants and users (`slots`).

mod bindings;
mod call;
mod engine;
mod error;
mod limits;
mod load;
mod output;
mod slots;
mod state;
mod upgrade;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use call::CallRequest;
pub use call::{MAX_INPUT_REQUESTS, MAX_TOOL_STATE};
pub use error::{BusyScope, CallError, LoadError, ToolErrorKind, TrapKind};
pub use limits::{Limits, LimitsError, SandboxSettings, default_guest_threads};
pub use load::LoadedComponent;
pub use output::{
    Annotations, CallEvents, Capability, ClientCapabilities, Content, InputRequest, InputRequired,
    InputResponse, LogLevel, Outcome, ResourceBody, ResourceLink, ToolDescriptor, ToolOutput,
};

use state::{HostData, HostState};

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The settings are unusable.
    #[error("invalid sandbox settings: {0}")]
    Settings(String),
    /// The engine could not be created.
    #[error("could not start the WebAssembly engine: {0}")]
    Engine(String),
}

/// Runs tool components. Cheap to share behind an `Arc`.
pub struct Sandbox {
    engine: wasmtime::Engine,
    linker: wasmtime::component::Linker<HostState>,
    settings: SandboxSettings,
    slots: Arc<slots::Slots>,
    /// Where guests run; `None` only once dropped.
    guests: Option<tokio::runtime::Runtime>,
    /// Where a guest moves once it has used [`call::PROMOTE_AFTER`] of CPU:
    /// threads of the lowest OS priority, so long-running guests take CPU
    /// only when the edge and short calls leave it. `None` only once dropped.
    long: Option<tokio::runtime::Runtime>,
    ticker_stop: Arc<AtomicBool>,
    /// Calls handed to the guest threads, not yet running.
    waiting: Arc<engine::Waiting>,
    /// Where slot waits are recorded (`Sandbox::set_metrics`).
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        // Dropping a runtime waits for its workers, which may not happen
        // inside another runtime; guests still running are cancelled.
        // The long-running guests first: their calls may use the guest
        // runtime's timers, which must outlive them.
        if let Some(long) = self.long.take() {
            long.shutdown_background();
        }
        if let Some(guests) = self.guests.take() {
            guests.shutdown_background();
        }
    }
}

/// Give the calling thread the lowest CPU priority (nice 19). Best effort:
/// where it cannot be done, long-running guests keep the normal priority.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        let thread = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(thread), 19) {
            tracing::debug!(error = %e, "could not lower a guest thread's priority");
        }
    }
}

/// A multi-thread runtime for guests: `threads` workers named `name`, each
/// running `on_start` first.
fn guest_runtime(
    threads: usize,
    name: &str,
    on_start: fn(),
) -> Result<tokio::runtime::Runtime, SandboxError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .on_thread_start(on_start)
        .enable_all()
        .build()
        .map_err(|e| SandboxError::Engine(format!("could not start the guest threads: {e}")))
}

impl Sandbox {
    /// Start a sandbox with `settings`.
    pub fn new(settings: SandboxSettings) -> Result<Self, SandboxError> {
        if settings.max_concurrent_calls == 0 || settings.max_concurrent_calls_per_tenant == 0 {
            return Err(SandboxError::Settings(
                "concurrency caps must be at least 1".into(),
            ));
        }
        if !(1..=1024).contains(&settings.guest_threads) {
            return Err(SandboxError::Settings(
                "guest_threads must be between 1 and 1024".into(),
            ));
        }
        let engine = engine::build(&settings)?;
        let mut linker = wasmtime::component::Linker::new(&engine);
        bindings::v2::ToolComponent::add_to_linker::<HostState, HostData>(&mut linker, |s| s)
            .map_err(|e| SandboxError::Engine(e.to_string()))?;
        bindings::v1::ToolComponent::add_to_linker::<HostState, HostData>(&mut linker, |s| s)
            .map_err(|e| SandboxError::Engine(e.to_string()))?;
        // Runtimes last: one dropped on an error path inside an async
        // context would panic, so each is shut down explicitly instead.
        // Delegated requests (reqwest, timers, DNS) run from guests, so the
        // guest runtimes have I/O and time enabled.
        let guests = guest_runtime(settings.guest_threads, "airlock-guest", || {})?;
        let long = match guest_runtime(
            settings.guest_threads,
            "airlock-guest-long",
            lowest_priority,
        ) {
            Ok(long) => long,
            Err(e) => {
                guests.shutdown_background();
                return Err(e);
            }
        };
        let ticker_stop = match engine::start_epoch_ticker(&engine) {
            Ok(stop) => stop,
            Err(e) => {
                long.shutdown_background();
                guests.shutdown_background();
                return Err(e);
            }
        };
        Ok(Sandbox {
            slots: Arc::new(slots::Slots::new(
                settings.max_concurrent_calls as usize,
                settings.max_concurrent_calls_per_tenant as usize,
                &settings.tenant_weights,
            )),
            guests: Some(guests),
            long: Some(long),
            engine,
            linker,
            settings,
            ticker_stop,
            waiting: Arc::default(),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// The settings this sandbox runs with.
    pub fn settings(&self) -> &SandboxSettings {
        &self.settings
    }

    /// Record how long calls wait for a slot in `metrics` (once; later calls
    /// are ignored).
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Wait briefly for a slot for `owner` (`None`: the host's own work).
    async fn acquire(&self, owner: Option<slots::Owner>) -> Result<slots::SlotPermit, BusyScope> {
        let owner = owner.unwrap_or(slots::Owner {
            tenant: String::new(),
            user: String::new(),
        });
        let began = std::time::Instant::now();
        let tenant = owner.tenant.clone();
        let permit = self.slots.acquire(owner, self.settings.queue_timeout).await;
        if let Some(metrics) = self.metrics.get()
            && !tenant.is_empty()
        {
            metrics.queue_wait(&tenant, began.elapsed());
        }
        permit
    }
}
