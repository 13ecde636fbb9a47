//! The caller's identity, as the host describes it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::wit::airlock::tool::types as wit;

/// Whether the caller is a person or a machine client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A human user.
    User,
    /// A machine client acting for itself.
    Service,
}

/// Who the call acts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Actor {
    /// User or service.
    pub kind: ActorKind,
    /// The subject identifier from the validated token.
    pub subject: String,
    /// The tenant the subject belongs to.
    pub tenant: String,
    /// The issuer that vouched for the subject. A user is tenant + issuer + subject.
    pub issuer: String,
}

/// Which software makes the call on the actor's behalf.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Agent {
    /// The OAuth client id, when known.
    pub client_id: Option<String>,
    /// The acting agent from an RFC 8693 `act` claim, when present.
    pub agent_id: Option<String>,
}

/// How the host authenticates delegated requests to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DelegationMode {
    /// The host's own credential plus the signed envelope.
    Service,
    /// A token-exchanged, short-lived token for this user.
    OnBehalfOf,
    /// The user's own connected third-party token.
    UserToken,
}

/// One service this call may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Delegation {
    /// The service name.
    pub service: String,
    /// How the host authenticates to it.
    pub mode: DelegationMode,
}

/// The execution identity envelope of the current call: who acts, for whom, via
/// which agent, and what they may reach. Take identity from here, never from
/// arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    /// Unique id of this envelope.
    pub envelope_id: String,
    /// The tenant the call runs in.
    pub tenant: String,
    /// Who the call acts for.
    pub actor: Actor,
    /// Which client or agent makes the call.
    pub agent: Agent,
    /// The MCP session id, when there is one (informational, never identity).
    pub session_id: Option<String>,
    /// Correlates the call with host logs and audit records.
    pub trace_id: String,
    /// The tool being called.
    pub tool: String,
    /// Scopes granted to the caller.
    pub scopes: Vec<String>,
    /// Services this call may reach.
    pub delegations: Vec<Delegation>,
    /// Issue time, seconds since the Unix epoch.
    pub issued_at: u64,
    /// Expiry time, seconds since the Unix epoch.
    pub expires_at: u64,
}

impl Envelope {
    /// Whether the caller was granted `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The delegation mode for `service`, if this call may reach it.
    pub fn delegation(&self, service: &str) -> Option<DelegationMode> {
        self.delegations
            .iter()
            .find(|d| d.service == service)
            .map(|d| d.mode)
    }
}

impl From<wit::Envelope> for Envelope {
    fn from(e: wit::Envelope) -> Self {
        Envelope {
            envelope_id: e.envelope_id,
            tenant: e.tenant,
            actor: Actor {
                kind: match e.actor.kind {
                    wit::ActorKind::User => ActorKind::User,
                    wit::ActorKind::Service => ActorKind::Service,
                },
                subject: e.actor.subject,
                tenant: e.actor.tenant,
                issuer: e.actor.issuer,
            },
            agent: Agent {
                client_id: e.agent.client_id,
                agent_id: e.agent.agent_id,
            },
            session_id: e.session_id,
            trace_id: e.trace_id,
            tool: e.tool,
            scopes: e.scopes,
            delegations: e
                .delegations
                .into_iter()
                .map(|d| Delegation {
                    service: d.service,
                    mode: match d.mode {
                        wit::DelegationMode::Service => DelegationMode::Service,
                        wit::DelegationMode::OnBehalfOf => DelegationMode::OnBehalfOf,
                        wit::DelegationMode::UserToken => DelegationMode::UserToken,
                    },
                })
                .collect(),
            issued_at: e.issued_at,
            expires_at: e.expires_at,
        }
    }
}
