//! `airlock:tool@0.1.0` components on the 0.2.0 host: their imports are
//! served by the 0.2.0 implementation, and what they return is read as the
//! 0.2.0 value it is. Nothing 0.2.0 added (issuer, progress, forwarded logs,
//! input rounds) reaches them.

use super::bindings::v1::airlock::tool as old;
use super::bindings::v2::airlock::tool as new;
use super::state::HostState;

fn agent(a: new::types::Agent) -> old::types::Agent {
    old::types::Agent {
        client_id: a.client_id,
        agent_id: a.agent_id,
    }
}

fn delegation(d: new::types::Delegation) -> old::types::Delegation {
    old::types::Delegation {
        service: d.service,
        mode: match d.mode {
            new::types::DelegationMode::Service => old::types::DelegationMode::Service,
            new::types::DelegationMode::OnBehalfOf => old::types::DelegationMode::OnBehalfOf,
            new::types::DelegationMode::UserToken => old::types::DelegationMode::UserToken,
        },
    }
}

impl old::types::Host for HostState {}

impl old::identity::Host for HostState {
    fn current(&mut self) -> wasmtime::Result<old::types::Envelope> {
        let e = new::identity::Host::current(self)?;
        Ok(old::types::Envelope {
            envelope_id: e.envelope_id,
            tenant: e.tenant,
            actor: old::types::Actor {
                kind: match e.actor.kind {
                    new::types::ActorKind::User => old::types::ActorKind::User,
                    new::types::ActorKind::Service => old::types::ActorKind::Service,
                },
                subject: e.actor.subject,
                tenant: e.actor.tenant,
            },
            agent: agent(e.agent),
            session_id: e.session_id,
            trace_id: e.trace_id,
            tool: e.tool,
            scopes: e.scopes,
            delegations: e.delegations.into_iter().map(delegation).collect(),
            issued_at: e.issued_at,
            expires_at: e.expires_at,
        })
    }
}

impl old::log::Host for HostState {
    fn emit(&mut self, level: old::log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            old::log::Level::Trace => new::log::Level::Trace,
            old::log::Level::Debug => new::log::Level::Debug,
            old::log::Level::Info => new::log::Level::Info,
            old::log::Level::Warn => new::log::Level::Warn,
            old::log::Level::Error => new::log::Level::Error,
        };
        new::log::Host::emit(self, level, message)
    }
}

impl old::delegate::Host for HostState {
    async fn fetch(
        &mut self,
        service: String,
        req: old::delegate::Request,
    ) -> wasmtime::Result<Result<old::delegate::Response, old::delegate::DelegateError>> {
        use new::delegate::Method as N;
        use old::delegate::Method as O;
        let req = new::delegate::Request {
            method: match req.method {
                O::Get => N::Get,
                O::Head => N::Head,
                O::Post => N::Post,
                O::Put => N::Put,
                O::Patch => N::Patch,
                O::Delete => N::Delete,
            },
            path: req.path,
            query: req.query,
            headers: req.headers,
            body: req.body,
        };
        let result = new::delegate::Host::fetch(self, service, req).await?;
        Ok(match result {
            Ok(r) => Ok(old::delegate::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(e) => Err({
                use new::delegate::DelegateError as N;
                use old::delegate::DelegateError as O;
                match e {
                    N::NotGranted(m) => O::NotGranted(m),
                    N::NotConnected(m) => O::NotConnected(m),
                    N::DeniedByPolicy(m) => O::DeniedByPolicy(m),
                    N::LimitExceeded(m) => O::LimitExceeded(m),
                    N::Timeout => O::Timeout,
                    N::Upstream(m) => O::Upstream(m),
                    N::InvalidRequest(m) => O::InvalidRequest(m),
                }
            }),
        })
    }
}

/// A 0.1.0 descriptor as the 0.2.0 one it is.
pub(crate) fn descriptor(d: old::types::ToolDescriptor) -> new::types::ToolDescriptor {
    let a = d.annotations;
    new::types::ToolDescriptor {
        name: d.name,
        title: d.title,
        description: d.description,
        input_schema: d.input_schema,
        output_schema: d.output_schema,
        annotations: new::types::ToolAnnotations {
            read_only_hint: a.read_only_hint,
            destructive_hint: a.destructive_hint,
            idempotent_hint: a.idempotent_hint,
            open_world_hint: a.open_world_hint,
        },
    }
}

/// A 0.1.0 call's result as the 0.2.0 outcome it is.
pub(crate) fn outcome(
    r: Result<old::types::ToolResult, old::types::ToolError>,
) -> Result<new::types::CallOutcome, new::types::ToolError> {
    use new::types::ToolError as N;
    use old::types::ToolError as O;
    match r {
        Ok(result) => Ok(new::types::CallOutcome::Complete(new::types::ToolResult {
            content: result
                .content
                .into_iter()
                .map(|block| match block {
                    old::types::ContentBlock::Text(t) => new::types::ContentBlock::Text(t),
                    old::types::ContentBlock::Json(j) => new::types::ContentBlock::Json(j),
                    old::types::ContentBlock::Image(i) => {
                        new::types::ContentBlock::Image(new::types::Image {
                            data: i.data,
                            mime_type: i.mime_type,
                        })
                    }
                })
                .collect(),
            structured: result.structured,
        })),
        Err(e) => Err(match e {
            O::InvalidInput(m) => N::InvalidInput(m),
            O::Denied(m) => N::Denied(m),
            O::NotConnected(m) => N::NotConnected(m),
            O::Upstream(m) => N::Upstream(m),
            O::Internal(m) => N::Internal(m),
            O::Other(m) => N::Other(m),
        }),
    }
}
