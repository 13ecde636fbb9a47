//! The signed form of an envelope: one compact JWS per downstream request.
//!
//! The host signs the envelope for one service (`aud`) and one request
//! (`req`), so a service can check who the call acts for, and that the token
//! was made for it and for exactly the request it received: a token lifted
//! from one request is worthless for another service, method, path or body.
//!
//! Header: `{"alg":"EdDSA","typ":"airlock-envelope+jwt","kid":…}`. The explicit
//! `typ` (RFC 8725 §3.11) keeps the token from being taken for an access token.
//!
//! Claims:
//!
//! | claim | value |
//! | --- | --- |
//! | `iss` | the host's public URL; its JWKS lists the signing key |
//! | `aud` | the service's identifier (its base URL) |
//! | `sub` | the actor's subject (unique only with `tenant` and `actor.issuer`) |
//! | `jti` | fresh for every signature |
//! | `envelope_id` | the envelope's id, as in the audit trail |
//! | `iat` | when this token was signed |
//! | `nbf`, `exp` | the envelope's issue and expiry times |
//! | `tenant` | the tenant the call runs in |
//! | `actor` | `{kind, subject, issuer}`: who the call acts for. Not `act`: in RFC 8693 `act` names the party acting *for* the subject, which here is the agent |
//! | `agent` | `{client_id?, agent_id?}`: the client or agent making the call |
//! | `session_id`? | the MCP session, when there is one (informational, never identity) |
//! | `trace_id`, `tool` | as in the envelope |
//! | `scope` | granted scopes, space-separated (RFC 8693 §4.2) |
//! | `delegations` | `[{service, mode}]` the call may use |
//! | `req` | `{method, path, body_sha256}`: the request as sent — the method, the path with `?` and the encoded query when there is one, and base64url(SHA-256(body)), also of an empty body |

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{ActorKind, Delegation, Envelope, KeyError, KeyRing};

/// The `typ` header of a signed envelope.
pub const ENVELOPE_JWS_TYPE: &str = "airlock-envelope+jwt";

/// The downstream request a signed envelope is bound to, exactly as sent.
#[derive(Debug, Clone, Copy)]
pub struct RequestBinding<'a> {
    /// The HTTP method (`GET`, `POST`, …).
    pub method: &'a str,
    /// The path, plus `?` and the encoded query when there is one.
    pub path: &'a str,
    /// The request body (empty when there is none).
    pub body: &'a [u8],
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    jti: String,
    envelope_id: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    tenant: &'a str,
    actor: Actor<'a>,
    agent: Agent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    trace_id: &'a str,
    tool: &'a str,
    scope: String,
    delegations: &'a [Delegation],
    req: Req<'a>,
}

#[derive(Serialize)]
struct Actor<'a> {
    kind: ActorKind,
    subject: &'a str,
    issuer: &'a str,
}

#[derive(Serialize)]
struct Agent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_id: Option<&'a str>,
}

#[derive(Serialize)]
struct Req<'a> {
    method: &'a str,
    path: &'a str,
    body_sha256: String,
}

impl Envelope {
    /// This envelope signed for one request to one service: a compact JWS
    /// whose `iss` is `issuer_url` (the host's public URL) and whose `aud` is
    /// `audience` (the service's identifier). See the module documentation for
    /// the claims. An expired envelope is not signed.
    pub fn sign_for(
        &self,
        ring: &KeyRing,
        issuer_url: &str,
        audience: &str,
        request: &RequestBinding<'_>,
    ) -> Result<String, KeyError> {
        self.sign_at(ring, issuer_url, audience, request, super::unix_now())
    }

    fn sign_at(
        &self,
        ring: &KeyRing,
        issuer_url: &str,
        audience: &str,
        request: &RequestBinding<'_>,
        now: u64,
    ) -> Result<String, KeyError> {
        if now >= self.expires_at {
            return Err(KeyError::EnvelopeExpired {
                envelope_id: self.envelope_id.clone(),
                expires_at: self.expires_at,
            });
        }
        let c = &self.claims;
        let claims = Claims {
            iss: issuer_url,
            aud: audience,
            sub: &c.subject,
            jti: super::random_id(),
            envelope_id: &self.envelope_id,
            iat: now,
            nbf: self.issued_at,
            exp: self.expires_at,
            tenant: &c.tenant,
            actor: Actor {
                kind: c.actor_kind,
                subject: &c.subject,
                issuer: &c.issuer,
            },
            agent: Agent {
                client_id: c.client_id.as_deref(),
                agent_id: c.agent_id.as_deref(),
            },
            session_id: c.session_id.as_deref(),
            trace_id: &c.trace_id,
            tool: &c.tool,
            scope: c.scopes.join(" "),
            delegations: &c.delegations,
            req: Req {
                method: request.method,
                path: request.path,
                body_sha256: URL_SAFE_NO_PAD.encode(Sha256::digest(request.body)),
            },
        };
        let payload = serde_json::to_vec(&claims)
            .map_err(|e| KeyError::Encode(format!("envelope claims: {e}")))?;

        // One snapshot for both the `kid` and the signature.
        let signer = ring.signer();
        let header = serde_json::to_vec(&Header {
            alg: "EdDSA",
            typ: ENVELOPE_JWS_TYPE,
            kid: signer.kid(),
        })
        .map_err(|e| KeyError::Encode(format!("a JWS header: {e}")))?;
        let mut jws = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 100);
        URL_SAFE_NO_PAD.encode_string(&header, &mut jws);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut jws);
        let signature = signer.sign(jws.as_bytes());
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
        Ok(jws)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::envelope::EnvelopeClaims;

    // Verification with an independent JWT library is in the integration
    // tests (`tests/all/envelope.rs`): only `edge` and `dev` name one here.

    #[test]
    fn an_expired_envelope_is_not_signed() {
        let tmp = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(tmp.path()).unwrap();
        let envelope = Envelope::mint(
            EnvelopeClaims {
                tenant: "acme".into(),
                actor_kind: ActorKind::User,
                issuer: "https://idp.acme.example".into(),
                subject: "alice".into(),
                client_id: None,
                agent_id: None,
                session_id: None,
                trace_id: "trace-1".into(),
                tool: "notes.add".into(),
                scopes: vec![],
                delegations: vec![],
            },
            Duration::from_secs(60),
        );
        let post = RequestBinding {
            method: "POST",
            path: "/v1/notes",
            body: b"{}",
        };
        let host = "https://airlock.example";
        let error = envelope
            .sign_at(
                &ring,
                host,
                "https://api.example",
                &post,
                envelope.expires_at(),
            )
            .unwrap_err();
        assert!(matches!(error, KeyError::EnvelopeExpired { .. }), "{error}");
        envelope
            .sign_at(
                &ring,
                host,
                "https://api.example",
                &post,
                envelope.expires_at() - 1,
            )
            .unwrap();
    }
}
