//! The authenticated caller. Only `edge` can make one.

use std::collections::BTreeSet;
use std::fmt;

use crate::envelope::ActorKind;

/// The raw bearer token, kept in host memory only for a later token exchange.
/// Its `Debug` never shows the value.
#[derive(Clone)]
pub struct BearerToken(String);

impl BearerToken {
    /// The token text, for the one place that needs it (RFC 8693 subject token).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Who is calling: derived from a validated token for one tenant.
#[derive(Debug, Clone)]
pub struct Principal {
    tenant: String,
    issuer: String,
    subject: String,
    actor_kind: ActorKind,
    client_id: Option<String>,
    agent_id: Option<String>,
    scopes: BTreeSet<String>,
    token: BearerToken,
}

impl Principal {
    #[allow(clippy::too_many_arguments)] // one private constructor, called once by `auth`
    pub(super) fn new(
        tenant: String,
        issuer: String,
        subject: String,
        actor_kind: ActorKind,
        client_id: Option<String>,
        agent_id: Option<String>,
        scopes: BTreeSet<String>,
        token: String,
    ) -> Self {
        Principal {
            tenant,
            issuer,
            subject,
            actor_kind,
            client_id,
            agent_id,
            scopes,
            token: BearerToken(token),
        }
    }

    /// The tenant the token was validated for.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }
    /// The issuer that vouched for the subject; a user is (tenant, issuer, subject).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The token's subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// User or service.
    pub fn actor_kind(&self) -> ActorKind {
        self.actor_kind
    }
    /// The OAuth client.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }
    /// The acting agent from an `act` claim.
    pub fn agent_id(&self) -> Option<&str> {
        self.agent_id.as_deref()
    }
    /// Granted scopes.
    pub fn scopes(&self) -> &BTreeSet<String> {
        &self.scopes
    }
    /// Whether every scope in `required` was granted.
    pub fn has_all<'a>(&self, required: impl IntoIterator<Item = &'a String>) -> bool {
        required.into_iter().all(|s| self.scopes.contains(s))
    }
    /// The raw token (host memory only).
    pub fn token(&self) -> &BearerToken {
        &self.token
    }
}

/// A legacy MCP session id the host issued and the caller owns. Only the edge
/// makes one; a session id a client merely sent (as on a stateless request)
/// never becomes one, so it never reaches an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSession(String);

impl HostSession {
    pub(super) fn new(id: String) -> Self {
        HostSession(id)
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.0
    }
}
