//! The execution identity envelope: who a tool call acts for.
//!
//! An [`Envelope`] is minted by the host for exactly one tool call from an
//! authenticated principal, and is immutable afterwards: its fields are private
//! and only readable. Tools see its claims through the `identity` import;
//! delegation reads it from the call's host state, never from the guest.
//!
//! Downstream services do not take the host's word for it: for every delegated
//! request the host signs the envelope for that service and that request
//! ([`Envelope::sign_for`]) with the Ed25519 keys of a [`KeyRing`], whose
//! public halves it publishes as a JWKS ([`KeyRing::jwks`]).

mod keys;
mod sign;

pub use keys::{CHECK_INTERVAL, KeyError, KeyInfo, KeyRing, PUBLICATION_GRACE_SECS, PublicKeys};
pub use sign::{ENVELOPE_JWS_TYPE, RequestBinding};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Whether the actor is a person or a machine client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A human user.
    User,
    /// A machine client acting for itself (client-credentials token).
    Service,
}

/// How the host authenticates delegated requests to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DelegationMode {
    /// The host's own credential plus the signed envelope.
    Service,
    /// RFC 8693 token exchange for this user.
    OnBehalfOf,
    /// The user's own third-party token from the vault.
    UserToken,
}

/// One service a call may reach, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delegation {
    /// The service name as configured for the tenant.
    pub service: String,
    /// How the host authenticates to it.
    pub mode: DelegationMode,
}

/// Everything the host knows about a call before minting its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeClaims {
    /// The tenant the call runs in.
    pub tenant: String,
    /// User or service.
    pub actor_kind: ActorKind,
    /// The issuer of the validated token: a user is (tenant, issuer, subject).
    pub issuer: String,
    /// The subject of the validated token.
    pub subject: String,
    /// The OAuth client id, when known.
    pub client_id: Option<String>,
    /// The acting agent from an `act` claim, when present.
    pub agent_id: Option<String>,
    /// The MCP session id, when there is one.
    pub session_id: Option<String>,
    /// The trace id of the request.
    pub trace_id: String,
    /// The tool being called.
    pub tool: String,
    /// Scopes granted to the caller.
    pub scopes: Vec<String>,
    /// Services the call may reach.
    pub delegations: Vec<Delegation>,
}

/// The immutable identity of one tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Envelope {
    envelope_id: String,
    #[serde(flatten)]
    claims: ClaimsView,
    issued_at: u64,
    expires_at: u64,
}

/// The serialized form of the claims (kept apart so `EnvelopeClaims` stays a plain input).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct ClaimsView {
    tenant: String,
    actor_kind: ActorKind,
    issuer: String,
    subject: String,
    client_id: Option<String>,
    agent_id: Option<String>,
    session_id: Option<String>,
    trace_id: String,
    tool: String,
    scopes: Vec<String>,
    delegations: Vec<Delegation>,
}

/// A random identifier: 128 bits, hex encoded.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // The OS random source failing is not recoverable in any useful way; an
    // all-zero id would still be unique per process in practice, but we prefer
    // to make the failure visible in the id rather than panic in the host.
    if getrandom::fill(&mut bytes).is_err() {
        return format!("fallback-{:x}", unix_now_nanos());
    }
    hex::encode(bytes)
}

fn unix_now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Envelope {
    /// Mint the envelope of one call, valid for `lifetime` from now.
    pub fn mint(claims: EnvelopeClaims, lifetime: Duration) -> Self {
        let now = unix_now();
        let EnvelopeClaims {
            tenant,
            actor_kind,
            issuer,
            subject,
            client_id,
            agent_id,
            session_id,
            trace_id,
            tool,
            scopes,
            delegations,
        } = claims;
        Envelope {
            envelope_id: random_id(),
            claims: ClaimsView {
                tenant,
                actor_kind,
                issuer,
                subject,
                client_id,
                agent_id,
                session_id,
                trace_id,
                tool,
                scopes,
                delegations,
            },
            issued_at: now,
            // Round up so a sub-second lifetime still yields a non-empty window.
            expires_at: now.saturating_add(lifetime.as_secs().max(1)),
        }
    }

    /// Unique id of this envelope.
    pub fn envelope_id(&self) -> &str {
        &self.envelope_id
    }
    /// The tenant the call runs in.
    pub fn tenant(&self) -> &str {
        &self.claims.tenant
    }
    /// User or service.
    pub fn actor_kind(&self) -> ActorKind {
        self.claims.actor_kind
    }
    /// The issuer of the actor's validated token.
    pub fn issuer(&self) -> &str {
        &self.claims.issuer
    }
    /// The actor's subject (unique only together with the tenant and issuer).
    pub fn subject(&self) -> &str {
        &self.claims.subject
    }
    /// The OAuth client id.
    pub fn client_id(&self) -> Option<&str> {
        self.claims.client_id.as_deref()
    }
    /// The acting agent id.
    pub fn agent_id(&self) -> Option<&str> {
        self.claims.agent_id.as_deref()
    }
    /// The MCP session id.
    pub fn session_id(&self) -> Option<&str> {
        self.claims.session_id.as_deref()
    }
    /// The trace id.
    pub fn trace_id(&self) -> &str {
        &self.claims.trace_id
    }
    /// The tool being called.
    pub fn tool(&self) -> &str {
        &self.claims.tool
    }
    /// Scopes granted to the caller.
    pub fn scopes(&self) -> &[String] {
        &self.claims.scopes
    }
    /// Services the call may reach.
    pub fn delegations(&self) -> &[Delegation] {
        &self.claims.delegations
    }
    /// The delegation for `service`, if granted.
    pub fn delegation(&self, service: &str) -> Option<&Delegation> {
        self.claims
            .delegations
            .iter()
            .find(|d| d.service == service)
    }
    /// Issue time, seconds since the Unix epoch.
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }
    /// Expiry time, seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> EnvelopeClaims {
        EnvelopeClaims {
            tenant: "acme".into(),
            actor_kind: ActorKind::User,
            issuer: "https://idp.acme.example".into(),
            subject: "alice".into(),
            client_id: None,
            agent_id: None,
            session_id: None,
            trace_id: "t".into(),
            tool: "echo".into(),
            scopes: vec![],
            delegations: vec![],
        }
    }

    #[test]
    fn every_envelope_has_a_fresh_id_and_a_lifetime() {
        let a = Envelope::mint(claims(), Duration::from_secs(30));
        let b = Envelope::mint(claims(), Duration::from_secs(30));
        assert_ne!(a.envelope_id(), b.envelope_id());
        assert_eq!(a.envelope_id().len(), 32);
        assert_eq!(a.expires_at() - a.issued_at(), 30);
        assert_eq!(a.issuer(), "https://idp.acme.example");
        assert_eq!(a.subject(), "alice");
    }
}
