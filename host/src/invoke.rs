//! One tool call, end to end: the only home of the call pipeline.
//!
//! resolve the tool in the tenant's catalog → mint the envelope from the
//! validated principal → audit start → run in the sandbox → audit end → the
//! outcome. The protocol layer (`mcp`) only translates to and from this
//! module; later steps (delegation grants, account connect, input-required
//! rounds) are added here.

use std::sync::Arc;
use std::time::Instant;

pub use crate::connect::UrlElicitation;

use crate::audit::{AuditLog, CallEnd, CallIdentity, Entry, Outcome};
use crate::connect::Connector;
use crate::delegate::Delegation;
use crate::edge::{HostSession, Principal, TraceContext};
use crate::envelope::{Envelope, EnvelopeClaims};
use crate::registry::{InstalledTool, TenantCatalog};
use crate::sandbox::{CallError, CallRequest, Sandbox, ToolOutput};

/// Why a call produced no tool output.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// No such tool, or the caller may not see it (indistinguishable).
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
    /// The tool ran (or tried to) and failed; shown to the caller as a tool error.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The call's audit record could not be written, so the call was refused
    /// (or its result withheld). Details are in the host log.
    #[error("the call was refused: its audit record could not be written")]
    AuditUnavailable,
    /// The call needs the user to do something first (connect an account):
    /// the protocol layer asks them, and the client retries.
    #[error("{}", .0.message)]
    InputRequired(UrlElicitation),
}

/// What the host shares between every tenant's calls.
pub struct Invoker {
    sandbox: Arc<Sandbox>,
    delegation: Arc<dyn Delegation>,
    audit: Arc<AuditLog>,
    connector: Option<Arc<Connector>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Invoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invoker").finish_non_exhaustive()
    }
}

impl Invoker {
    /// Calls run in `sandbox`, reach services through the delegates
    /// `delegation` makes, and are recorded in `audit`.
    pub fn new(
        sandbox: Arc<Sandbox>,
        delegation: Arc<dyn Delegation>,
        audit: Arc<AuditLog>,
    ) -> Self {
        Invoker {
            sandbox,
            delegation,
            audit,
            connector: None,
            metrics: Arc::default(),
        }
    }

    /// Count calls into `metrics` (by default, a registry of its own).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Calls that find an account not connected can tell the caller when
    /// the user has connected it.
    pub fn with_connector(mut self, connector: Arc<Connector>) -> Self {
        self.connector = Some(connector);
        self
    }
}

/// Per-tenant policy for the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantPolicy {
    /// Refuse a call whose audit record cannot be written (default). When
    /// off, the failure is logged and the call goes on.
    pub audit_fail_closed: bool,
}

/// The pipeline for one tenant.
#[derive(Debug)]
pub struct TenantInvoker {
    catalog: Arc<TenantCatalog>,
    shared: Arc<Invoker>,
    policy: TenantPolicy,
}

/// One call as the protocol layer received it.
#[derive(Debug)]
pub struct Call<'a> {
    /// Who is calling (validated at the edge).
    pub principal: &'a Principal,
    /// The legacy session the host issued to this caller, if any.
    pub session: Option<&'a HostSession>,
    /// The request's trace.
    pub trace: &'a TraceContext,
    /// The tool's name.
    pub tool: &'a str,
    /// The arguments object.
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

impl TenantInvoker {
    /// The pipeline for `catalog`.
    pub fn new(catalog: Arc<TenantCatalog>, shared: Arc<Invoker>, policy: TenantPolicy) -> Self {
        TenantInvoker {
            catalog,
            shared,
            policy,
        }
    }

    /// The tenant id.
    pub fn tenant(&self) -> &str {
        self.catalog.id()
    }

    /// The tools `principal` may see and call.
    pub fn tools<'a>(
        &'a self,
        principal: &'a Principal,
    ) -> impl Iterator<Item = &'a InstalledTool> {
        self.catalog.visible(principal.scopes())
    }

    /// Run one call.
    pub async fn call(&self, call: Call<'_>) -> Result<ToolOutput, InvokeError> {
        let principal = call.principal;
        let tool = self
            .catalog
            .find(call.tool, principal.scopes())
            .ok_or_else(|| InvokeError::UnknownTool(call.tool.to_string()))?;
        let envelope = Arc::new(mint(&call, tool));
        let arguments = serde_json::Value::Object(call.arguments).to_string();
        tracing::info!(
            tenant = %envelope.tenant(), tool = %envelope.tool(), trace_id = %envelope.trace_id(),
            envelope_id = %envelope.envelope_id(), "tool call"
        );

        let audit = &self.shared.audit;
        // The start record is written while the guest runs (`join` polls it
        // first, so it is queued before anything else of this call): a tool
        // reaches nothing but its own memory without a delegated request, and
        // each of those is audited on its own. The result is withheld until
        // the start record is safely written.
        let began = Instant::now();
        let who = CallIdentity::from(&*envelope);
        let start = audit.append(Entry::start(who.clone(), arguments.as_bytes()));
        let delegate = self.shared.delegation.for_call(principal.token().expose());
        let run = self.shared.sandbox.call_metered(
            &tool.component,
            CallRequest {
                envelope: envelope.clone(),
                arguments,
                delegate: delegate.clone(),
            },
        );
        let (started, (outcome, cpu)) = tokio::join!(start, run);
        let end = audit
            .append(Entry::end(
                who,
                CallEnd {
                    outcome: if outcome.is_ok() {
                        Outcome::Ok
                    } else {
                        Outcome::Error
                    },
                    error_kind: outcome.as_ref().err().map(|e| e.code().to_string()),
                    duration_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
                    cpu_ms: cpu.map(|c| u64::try_from(c.as_millis()).unwrap_or(u64::MAX)),
                    output_bytes: outcome.as_ref().map_or(0, |o| o.encoded_bytes as u64),
                },
            ))
            .await;
        let metrics = &self.shared.metrics;
        if let Err(CallError::Busy { scope }) = &outcome {
            let scope = match scope {
                crate::sandbox::BusyScope::Host => "host",
                crate::sandbox::BusyScope::Tenant => "tenant",
            };
            metrics.busy(envelope.tenant(), scope);
        }
        let code = outcome.as_ref().err().map_or("ok", CallError::code);
        metrics.call(envelope.tenant(), envelope.tool(), code, began.elapsed());
        if let Some(cpu) = cpu {
            metrics.call_cpu(envelope.tenant(), cpu);
        }
        if let Err(e) = started.and(end) {
            tracing::error!(
                tenant = %envelope.tenant(), trace_id = %envelope.trace_id(), error = %e,
                "could not write the audit trail"
            );
            if self.policy.audit_fail_closed {
                return Err(InvokeError::AuditUnavailable);
            }
        }
        match (outcome, delegate.needs_connect()) {
            // A tool that failed because an account is not connected ends
            // by asking the user to connect it (one that coped gets its way).
            (Err(_), Some(elicitation)) => Err(InvokeError::InputRequired(elicitation)),
            (outcome, _) => outcome.map_err(InvokeError::Call),
        }
    }

    /// Run `done` when the user completes elicitation `id` (for clients
    /// that wait for a completion notification); `waiter` names who waits
    /// (a session), which waits once however often it retried.
    pub fn on_elicitation_complete(&self, id: &str, waiter: &str, done: Box<dyn FnOnce() + Send>) {
        if let Some(connector) = &self.shared.connector {
            connector.watch(id, waiter, done);
        }
    }
}

/// The envelope of this call, from the validated principal and the host's own
/// state only: nothing comes from the arguments or the model. It expires no
/// later than the call's deadline.
fn mint(call: &Call<'_>, tool: &InstalledTool) -> Envelope {
    let p = call.principal;
    Envelope::mint(
        EnvelopeClaims {
            tenant: p.tenant().to_string(),
            issuer: p.issuer().to_string(),
            actor_kind: p.actor_kind(),
            subject: p.subject().to_string(),
            client_id: p.client_id().map(str::to_string),
            agent_id: p.agent_id().map(str::to_string),
            session_id: call.session.map(|s| s.id().to_string()),
            trace_id: call.trace.trace_id().to_string(),
            tool: tool.descriptor.name.clone(),
            scopes: p.scopes().iter().cloned().collect(),
            delegations: tool.delegations.clone(),
        },
        tool.component.limits().timeout,
    )
}
