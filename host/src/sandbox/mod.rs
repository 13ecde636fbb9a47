//! The sandbox: the only module that names wasmtime.
//!
//! One [`Sandbox`] per process owns the engine (component model, pooling
//! allocator sized to the concurrency cap, epoch interruption driven by one
//! ticker thread, on-disk compilation cache) and the linker. [`Sandbox::load`]
//! checks and prepares a component once; [`Sandbox::call`] runs one tool call
//! in a fresh instance with its own store and limits, and discards it.

mod bindings;
mod call;
mod engine;
mod error;
mod limits;
mod load;
mod output;
mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use call::CallRequest;
pub use error::{BusyScope, CallError, LoadError, ToolErrorKind, TrapKind};
pub use limits::{Limits, LimitsError, SandboxSettings};
pub use load::LoadedComponent;
pub use output::{Annotations, Content, ToolDescriptor, ToolOutput};

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
    global: Arc<Semaphore>,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
    ticker_stop: Arc<AtomicBool>,
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
    }
}

impl Sandbox {
    /// Start a sandbox with `settings`.
    pub fn new(settings: SandboxSettings) -> Result<Self, SandboxError> {
        if settings.max_concurrent_calls == 0 || settings.max_concurrent_calls_per_tenant == 0 {
            return Err(SandboxError::Settings(
                "concurrency caps must be at least 1".into(),
            ));
        }
        let engine = engine::build(&settings)?;
        let mut linker = wasmtime::component::Linker::new(&engine);
        bindings::ToolComponent::add_to_linker::<HostState, HostData>(&mut linker, |s| s)
            .map_err(|e| SandboxError::Engine(e.to_string()))?;
        let ticker_stop = engine::start_epoch_ticker(&engine)?;
        Ok(Sandbox {
            global: Arc::new(Semaphore::new(settings.max_concurrent_calls as usize)),
            engine,
            linker,
            settings,
            tenants: Mutex::new(HashMap::new()),
            ticker_stop,
        })
    }

    /// The settings this sandbox runs with.
    pub fn settings(&self) -> &SandboxSettings {
        &self.settings
    }

    /// Wait briefly for a global slot, then for a slot of `tenant`.
    async fn acquire(
        &self,
        tenant: Option<&str>,
    ) -> Result<(OwnedSemaphorePermit, Option<OwnedSemaphorePermit>), BusyScope> {
        let wait = self.settings.queue_timeout;
        let global = tokio::time::timeout(wait, self.global.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(BusyScope::Host)?;
        let Some(tenant) = tenant else {
            return Ok((global, None));
        };
        let semaphore = {
            let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
            tenants
                .entry(tenant.to_string())
                .or_insert_with(|| {
                    Arc::new(Semaphore::new(
                        self.settings.max_concurrent_calls_per_tenant as usize,
                    ))
                })
                .clone()
        };
        let local = tokio::time::timeout(wait, semaphore.acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(BusyScope::Tenant)?;
        Ok((global, Some(local)))
    }
}
