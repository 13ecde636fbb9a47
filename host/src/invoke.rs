//! One tool call, end to end: the only home of the call pipeline.
//!
//! resolve the tool in the tenant's catalog → mint the envelope from the
//! validated principal → audit start → run in the sandbox → audit end → the
//! outcome. The protocol layer (`mcp`) only translates to and from this
//! module. A call that needs input from the client (the tool asked, or an
//! account must be connected) ends with [`InvokeError::InputRequired`] and a
//! sealed `requestState` (`rounds`); the next round opens it here.

use std::sync::Arc;
use std::time::Instant;

pub use crate::connect::UrlElicitation;

use crate::audit::{AuditLog, CallEnd, CallIdentity, Entry, Outcome};
use crate::connect::Connector;
use crate::delegate::Delegation;
use crate::edge::{HostSession, Principal, TraceContext};
use crate::envelope::{Envelope, EnvelopeClaims};
use crate::registry::{InstalledTool, TenantCatalog};
use crate::rounds::{Binding, Pending, Rounds, StateError};
use crate::sandbox::{
    CallError, CallEvents, CallRequest, ClientCapabilities, InputRequest, InputResponse,
    Outcome as RoundOutcome, Sandbox, ToolOutput,
};

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
    /// The call needs input from the client first: the protocol layer asks
    /// (or has the client ask), then the client retries with the answers and
    /// the sealed state.
    #[error("the call needs input from the client")]
    InputRequired(Box<Asked>),
    /// The `requestState` sent back cannot be used.
    #[error(transparent)]
    BadRequestState(#[from] StateError),
    /// The host cannot take input rounds right now (too many are open, or
    /// its database failed); the caller may try again later.
    #[error("input rounds are unavailable on this host right now; try again later")]
    InputUnavailable,
    /// The user declined connecting the account this call needs.
    #[error("the user declined what this tool asked for, so it did not run")]
    Declined,
}

/// What to ask the client before the next round.
#[derive(Debug)]
pub struct Asked {
    /// The requests, under their keys.
    pub requests: Vec<(String, InputRequest)>,
    /// The sealed state the next round needs back.
    pub request_state: String,
    /// Set when the host itself asks the user to connect an account (the
    /// only request is then this URL elicitation).
    pub connect: Option<UrlElicitation>,
}

/// What a retry carries from the client.
#[derive(Debug, Default)]
pub struct Input {
    /// The client's answers by key (each a JSON object).
    pub responses: Vec<(String, InputResponse)>,
    /// The state the previous round returned.
    pub request_state: Option<String>,
}

/// What the host shares between every tenant's calls.
pub struct Invoker {
    sandbox: Arc<Sandbox>,
    delegation: Arc<dyn Delegation>,
    audit: Arc<AuditLog>,
    connector: Option<Arc<Connector>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Seals `requestState`; `None` only if no key could be made.
    rounds: Option<Rounds>,
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
            rounds: Rounds::ephemeral()
                .inspect_err(|e| tracing::error!(error = %e, "input rounds are unavailable"))
                .ok(),
        }
    }

    /// Seal round states with `rounds` (by default a key of this process).
    pub fn with_rounds(mut self, rounds: Rounds) -> Self {
        self.rounds = Some(rounds);
        self
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
    /// The arguments object (the same in every round of a call).
    pub arguments: &'a serde_json::Map<String, serde_json::Value>,
    /// What the client can be asked for.
    pub client: ClientCapabilities,
    /// Answers and state from the client, on a retry.
    pub input: Input,
    /// Where the tool's progress and log lines go besides the host log.
    pub events: Option<Arc<dyn CallEvents>>,
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

    /// Run one round of a call.
    pub async fn call(&self, mut call: Call<'_>) -> Result<ToolOutput, InvokeError> {
        let principal = call.principal;
        let given = std::mem::take(&mut call.input.responses);
        let events = call.events.take();
        let tool = self
            .catalog
            .find(call.tool, principal.scopes())
            .ok_or_else(|| InvokeError::UnknownTool(call.tool.to_string()))?;
        let arguments = serde_json::to_string(call.arguments)
            .map_err(|_| InvokeError::Call(CallError::Internal))?;
        let binding = Binding {
            tenant: principal.tenant(),
            issuer: principal.issuer(),
            subject: principal.subject(),
            client: principal.client_id().unwrap_or(""),
            agent: principal.agent_id().unwrap_or(""),
            tool: &tool.descriptor.name,
            component: tool.component.digest(),
            arguments: &arguments,
        };
        let rounds = self.shared.rounds.as_ref();
        let mut ticket = None;
        let (responses, state) = match &call.input.request_state {
            None => (given, None),
            Some(token) => {
                let rounds = rounds.ok_or(StateError::Invalid)?;
                let opened = rounds.open(&binding, token).map_err(|e| match e {
                    StateError::Unavailable => InvokeError::InputUnavailable,
                    e => InvokeError::BadRequestState(e),
                })?;
                ticket = Some(opened.ticket);
                match opened.pending {
                    Pending::Connect => {
                        let declined = given.iter().any(|(_, r)| {
                            matches!(r, InputResponse::Answered(v)
                                if matches!(v.get("action").and_then(|a| a.as_str()), Some("decline" | "cancel")))
                        });
                        if declined {
                            return Err(InvokeError::Declined);
                        }
                        (Vec::new(), None)
                    }
                    Pending::Tool { keys, state } => {
                        let mut responses = given;
                        responses.retain(|(key, _)| keys.contains(key));
                        (responses, state)
                    }
                }
            }
        };
        let envelope = Arc::new(mint(&call, tool));
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
                arguments: arguments.clone(),
                delegate: delegate.clone(),
                client: call.client,
                responses,
                state,
                events,
            },
        );
        let (started, (outcome, cpu)) = tokio::join!(start, run);
        let end = audit
            .append(Entry::end(
                who,
                CallEnd {
                    outcome: match &outcome {
                        Ok(RoundOutcome::Complete(_)) => Outcome::Ok,
                        Ok(RoundOutcome::InputRequired(_)) => Outcome::InputRequired,
                        Err(_) => Outcome::Error,
                    },
                    error_kind: outcome.as_ref().err().map(|e| e.code().to_string()),
                    duration_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
                    cpu_ms: cpu.map(|c| u64::try_from(c.as_millis()).unwrap_or(u64::MAX)),
                    output_bytes: match &outcome {
                        Ok(RoundOutcome::Complete(o)) => o.encoded_bytes as u64,
                        _ => 0,
                    },
                },
            ))
            .await;
        let metrics = &self.shared.metrics;
        if let Err(CallError::Busy { scope }) = &outcome {
            // The guest never ran: the client may send the same state again.
            if let (Some(rounds), Some(ticket)) = (rounds, ticket) {
                rounds.release(ticket);
            }
            let scope = match scope {
                crate::sandbox::BusyScope::Host => "host",
                crate::sandbox::BusyScope::Tenant => "tenant",
            };
            metrics.busy(envelope.tenant(), scope);
        }
        let code = match &outcome {
            Ok(RoundOutcome::Complete(_)) => "ok",
            Ok(RoundOutcome::InputRequired(_)) => "input_required",
            Err(e) => e.code(),
        };
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
        let seal = |pending: Pending| -> Result<String, InvokeError> {
            let rounds = rounds.ok_or(InvokeError::Call(CallError::Internal))?;
            rounds
                .seal(&binding, pending)
                .map_err(|_| InvokeError::Call(CallError::Internal))
        };
        match (outcome, delegate.needs_connect()) {
            // A tool that failed because an account is not connected ends
            // by asking the user to connect it (one that coped gets its way).
            (Err(_), Some(elicitation)) => Err(InvokeError::InputRequired(Box::new(Asked {
                requests: vec![(
                    elicitation.id.clone(),
                    InputRequest::Url {
                        message: elicitation.message.clone(),
                        url: elicitation.url.clone(),
                    },
                )],
                request_state: seal(Pending::Connect)?,
                connect: Some(elicitation),
            }))),
            (Ok(RoundOutcome::Complete(output)), _) => Ok(output),
            (Ok(RoundOutcome::InputRequired(asked)), _) => {
                let keys = asked.requests.iter().map(|(k, _)| k.clone()).collect();
                Err(InvokeError::InputRequired(Box::new(Asked {
                    request_state: seal(Pending::Tool {
                        keys,
                        state: asked.state,
                    })?,
                    requests: asked.requests,
                    connect: None,
                })))
            }
            (Err(e), None) => Err(InvokeError::Call(e)),
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
