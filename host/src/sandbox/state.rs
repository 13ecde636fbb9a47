//! Per-call host state: the envelope, the delegate, counters and the resource
//! limiter. One value lives in each `Store` and dies with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::HasData;

use super::bindings::v2::airlock::tool::{
    delegate as wit_delegate, identity, log, progress, types,
};
use super::limits::Limits;
use super::output::{CallEvents, LogLevel};
use crate::delegate::{Delegate, DelegateError, Method, OutboundRequest, RequestLimits};
use crate::envelope::{ActorKind, DelegationMode, Envelope};

/// Which limit stopped a call, recorded by the host import that enforced it so
/// the trap can be reported precisely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tripped {
    /// Linear memory would have grown past the limit.
    Memory,
    /// Too many log lines.
    LogLines,
    /// Too many log bytes.
    LogBytes,
    /// A table would have grown past its limit.
    TableElements,
    /// The guest used its CPU time.
    Cpu,
}

/// The CPU time a call's guest has used: the CPU time of the thread running
/// it between the guest starting to run (the call's start, the end of a
/// yield or of a host call that awaited) and stopping (a yield at an epoch
/// tick, a host call that awaits, the end of the call). Both ends of a
/// stretch fall in one poll of the call's future, so on one thread; time
/// the thread was preempted by the OS does not count (on Linux; elsewhere
/// the wall-clock time of each stretch). Shared with the future that resumes
/// a yielded guest and with the task that runs the call.
#[derive(Debug)]
pub(crate) struct CpuClock {
    /// The thread's CPU time, in ns, when the guest last started running;
    /// `PAUSED` while it is not running.
    resumed: AtomicU64,
    /// ns used so far.
    used: AtomicU64,
}

const PAUSED: u64 = u64::MAX;

/// The calling thread's CPU time in ns.
fn thread_cpu_ns() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        u64::try_from(t.tv_sec)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
    }
    #[cfg(not(target_os = "linux"))]
    {
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        u64::try_from(ORIGIN.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(PAUSED - 1)
    }
}

impl CpuClock {
    pub(crate) fn new() -> Self {
        CpuClock {
            resumed: AtomicU64::new(PAUSED),
            used: AtomicU64::new(0),
        }
    }

    /// The guest starts (or starts again) running on this thread.
    pub(crate) fn resume(&self) {
        self.resumed
            .store(thread_cpu_ns().min(PAUSED - 1), Ordering::Relaxed);
    }

    /// The guest stops running; returns how long it had run since it last
    /// started.
    pub(crate) fn pause(&self) -> Duration {
        let started = self.resumed.swap(PAUSED, Ordering::Relaxed);
        if started == PAUSED {
            return Duration::ZERO;
        }
        let ran = thread_cpu_ns().saturating_sub(started);
        self.used.fetch_add(ran, Ordering::Relaxed);
        Duration::from_nanos(ran)
    }

    /// CPU time used so far (not counting a stretch still running).
    pub(crate) fn used(&self) -> Duration {
        Duration::from_nanos(self.used.load(Ordering::Relaxed))
    }
}

/// The error a host import returns to trap the guest; the cause is kept in
/// [`HostState::tripped`].
#[derive(Debug, thiserror::Error)]
#[error("airlock limit reached")]
pub(crate) struct LimitTrap;

/// Identity is not available while describing a component.
#[derive(Debug, thiserror::Error)]
#[error("`identity.current` may not be called from `describe`")]
pub(crate) struct NoIdentityTrap;

/// Most core instances, tables and memories in one tool's store.
const MAX_INSTANCES: usize = 32;
const MAX_TABLES: usize = 32;
const MAX_MEMORIES: usize = 4;

pub(crate) struct HostState {
    /// `None` while describing at load time.
    envelope: Option<Arc<Envelope>>,
    delegate: Arc<dyn Delegate>,
    limits: Limits,
    request_limits: RequestLimits,
    delegate_calls: u32,
    call_limit_reported: bool,
    log_lines: u32,
    log_bytes: usize,
    pub(crate) tripped: Option<Tripped>,
    pub(crate) cpu: Arc<CpuClock>,
    /// Where progress and log lines go besides the host log.
    events: Option<Arc<dyn CallEvents>>,
    progress: ProgressGate,
}

/// Progress reports per call round: finite and not negative, at most
/// `PROGRESS_BURST` at once, then `PROGRESS_PER_SECOND`. (That values
/// increase is checked per MCP request, over all its rounds, in `mcp`.)
#[derive(Debug)]
struct ProgressGate {
    tokens: f64,
    refilled: Instant,
}

const PROGRESS_BURST: f64 = 16.0;
const PROGRESS_PER_SECOND: f64 = 20.0;
/// Longest progress message passed on, in bytes.
const MAX_PROGRESS_MESSAGE: usize = 1024;

impl ProgressGate {
    fn new() -> Self {
        ProgressGate {
            tokens: PROGRESS_BURST,
            refilled: Instant::now(),
        }
    }

    /// Whether a report of `progress` (of `total`) may go out now.
    fn admit(&mut self, progress: f64, total: Option<f64>) -> bool {
        if !progress.is_finite() || progress < 0.0 {
            return false;
        }
        if let Some(total) = total
            && (!total.is_finite() || total < 0.0)
        {
            return false;
        }
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * PROGRESS_PER_SECOND;
        self.tokens = (self.tokens + earned).min(PROGRESS_BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

impl HostState {
    pub(crate) fn new(
        envelope: Option<Arc<Envelope>>,
        delegate: Arc<dyn Delegate>,
        limits: Limits,
    ) -> Self {
        Self::with_clock(envelope, delegate, limits, Arc::new(CpuClock::new()))
    }

    /// [`HostState::new`], counting CPU time on `cpu` (which the task
    /// running the call also reads).
    pub(crate) fn with_clock(
        envelope: Option<Arc<Envelope>>,
        delegate: Arc<dyn Delegate>,
        limits: Limits,
        cpu: Arc<CpuClock>,
    ) -> Self {
        HostState {
            envelope,
            delegate,
            limits,
            request_limits: RequestLimits::default(),
            delegate_calls: 0,
            call_limit_reported: false,
            log_lines: 0,
            log_bytes: 0,
            tripped: None,
            cpu,
            events: None,
            progress: ProgressGate::new(),
        }
    }

    /// Send progress and log lines to `events` too.
    pub(crate) fn with_events(mut self, events: Option<Arc<dyn CallEvents>>) -> Self {
        self.events = events;
        self
    }

    /// The rules each delegated request of this call must pass.
    pub(crate) fn request_limits(&self) -> &RequestLimits {
        &self.request_limits
    }

    fn trip(&mut self, what: Tripped) -> wasmtime::Error {
        self.tripped.get_or_insert(what);
        wasmtime::Error::new(LimitTrap)
    }
}

/// Marker for `add_to_linker`: imports are implemented directly on `HostState`.
pub(crate) struct HostData;

impl HasData for HostData {
    type Data<'a> = &'a mut HostState;
}

impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            return Err(self.trip(Tripped::Memory));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > super::engine::TABLE_ELEMENTS {
            return Err(self.trip(Tripped::TableElements));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

impl types::Host for HostState {}

impl identity::Host for HostState {
    fn current(&mut self) -> wasmtime::Result<types::Envelope> {
        let envelope = self
            .envelope
            .as_deref()
            .ok_or_else(|| wasmtime::Error::new(NoIdentityTrap))?;
        Ok(to_wit(envelope))
    }
}

impl progress::Host for HostState {
    fn report(
        &mut self,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    ) -> wasmtime::Result<()> {
        let Some(events) = &self.events else {
            return Ok(());
        };
        if self.progress.admit(progress, total) {
            let message = message.map(|m| super::call::truncate(m, MAX_PROGRESS_MESSAGE));
            events.progress(progress, total, message);
        }
        Ok(())
    }
}

impl log::Host for HostState {
    fn emit(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.log_lines = self.log_lines.saturating_add(1);
        self.log_bytes = self.log_bytes.saturating_add(message.len());
        if self.log_lines > self.limits.log_lines {
            return Err(self.trip(Tripped::LogLines));
        }
        if self.log_bytes > self.limits.log_bytes {
            return Err(self.trip(Tripped::LogBytes));
        }
        let (tenant, tool, trace_id) = match &self.envelope {
            Some(e) => (e.tenant(), e.tool(), e.trace_id()),
            None => ("", "", ""),
        };
        // Guest text is untrusted: log it as a field (escaped by the formatter),
        // never as the format string.
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "airlock::guest", tenant, tool, trace_id, message = %message.escape_debug())
            }
            log::Level::Debug => {
                tracing::debug!(target: "airlock::guest", tenant, tool, trace_id, message = %message.escape_debug())
            }
            log::Level::Info => {
                tracing::info!(target: "airlock::guest", tenant, tool, trace_id, message = %message.escape_debug())
            }
            log::Level::Warn => {
                tracing::warn!(target: "airlock::guest", tenant, tool, trace_id, message = %message.escape_debug())
            }
            log::Level::Error => {
                tracing::error!(target: "airlock::guest", tenant, tool, trace_id, message = %message.escape_debug())
            }
        }
        if let Some(events) = &self.events {
            events.log(
                match level {
                    log::Level::Trace => LogLevel::Trace,
                    log::Level::Debug => LogLevel::Debug,
                    log::Level::Info => LogLevel::Info,
                    log::Level::Warn => LogLevel::Warn,
                    log::Level::Error => LogLevel::Error,
                },
                &message,
            );
        }
        Ok(())
    }
}

impl wit_delegate::Host for HostState {
    async fn fetch(
        &mut self,
        service: String,
        req: wit_delegate::Request,
    ) -> wasmtime::Result<Result<wit_delegate::Response, wit_delegate::DelegateError>> {
        // Awaiting the service is not the guest's CPU time.
        let clock = self.cpu.clone();
        clock.pause();
        let result = self.fetch_checked(service, req).await.map_err(to_wit_error);
        clock.resume();
        Ok(result)
    }
}

impl HostState {
    async fn fetch_checked(
        &mut self,
        service: String,
        req: wit_delegate::Request,
    ) -> Result<wit_delegate::Response, DelegateError> {
        // Identity comes from this store's state, never from the guest.
        let envelope = self.envelope.clone().ok_or_else(|| {
            DelegateError::NotGranted("delegation is not available while describing tools".into())
        })?;
        let method = match req.method {
            wit_delegate::Method::Get => Method::Get,
            wit_delegate::Method::Head => Method::Head,
            wit_delegate::Method::Post => Method::Post,
            wit_delegate::Method::Put => Method::Put,
            wit_delegate::Method::Patch => Method::Patch,
            wit_delegate::Method::Delete => Method::Delete,
        };
        // Kept only to record a refusal; the request rules own the path.
        let path = req.path.clone();
        let checked = if self.delegate_calls >= self.limits.delegate_calls {
            if std::mem::replace(&mut self.call_limit_reported, true) {
                // Recorded once; a guest looping on a refused call must not
                // flood the audit trail.
                return Err(DelegateError::LimitExceeded(format!(
                    "this call already made {} delegated requests, the limit",
                    self.limits.delegate_calls
                )));
            }
            Err(DelegateError::LimitExceeded(format!(
                "this call already made {} delegated requests, the limit",
                self.limits.delegate_calls
            )))
        } else {
            self.delegate_calls += 1;
            OutboundRequest::new(
                method,
                req.path,
                req.query,
                req.headers,
                req.body,
                &self.request_limits,
            )
        };
        let request = match checked {
            Ok(request) => request,
            Err(e) => {
                self.delegate
                    .refused(&envelope, &service, method, &path, &e)
                    .await;
                return Err(e);
            }
        };
        let resp = self.delegate.fetch(&envelope, &service, request).await?;
        Ok(wit_delegate::Response {
            status: resp.status,
            headers: resp.headers,
            body: resp.body,
        })
    }
}

fn to_wit_error(e: DelegateError) -> wit_delegate::DelegateError {
    use wit_delegate::DelegateError as W;
    match e {
        DelegateError::NotGranted(m) => W::NotGranted(m),
        DelegateError::NotConnected(m) => W::NotConnected(m),
        DelegateError::DeniedByPolicy(m) => W::DeniedByPolicy(m),
        DelegateError::LimitExceeded(m) => W::LimitExceeded(m),
        DelegateError::Timeout => W::Timeout,
        DelegateError::Upstream(m) => W::Upstream(m),
        DelegateError::InvalidRequest(m) => W::InvalidRequest(m),
    }
}

fn to_wit(e: &Envelope) -> types::Envelope {
    types::Envelope {
        envelope_id: e.envelope_id().to_string(),
        tenant: e.tenant().to_string(),
        actor: types::Actor {
            kind: match e.actor_kind() {
                ActorKind::User => types::ActorKind::User,
                ActorKind::Service => types::ActorKind::Service,
            },
            subject: e.subject().to_string(),
            tenant: e.tenant().to_string(),
            issuer: e.issuer().to_string(),
        },
        agent: types::Agent {
            client_id: e.client_id().map(str::to_string),
            agent_id: e.agent_id().map(str::to_string),
        },
        session_id: e.session_id().map(str::to_string),
        trace_id: e.trace_id().to_string(),
        tool: e.tool().to_string(),
        scopes: e.scopes().to_vec(),
        delegations: e
            .delegations()
            .iter()
            .map(|d| types::Delegation {
                service: d.service.clone(),
                mode: match d.mode {
                    DelegationMode::Service => types::DelegationMode::Service,
                    DelegationMode::OnBehalfOf => types::DelegationMode::OnBehalfOf,
                    DelegationMode::UserToken => types::DelegationMode::UserToken,
                },
            })
            .collect(),
        issued_at: e.issued_at(),
        expires_at: e.expires_at(),
    }
}
