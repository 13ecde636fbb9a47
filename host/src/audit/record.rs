//! What one audit record says, and the bytes it is stored and hashed as.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AuditError;

/// The `prev` of a tenant's first record.
pub const ZERO_HASH: [u8; 32] = [0; 32];

/// Whether the actor is a person or a machine client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A human user.
    User,
    /// A machine client acting for itself.
    Service,
}

impl From<crate::envelope::ActorKind> for ActorKind {
    fn from(kind: crate::envelope::ActorKind) -> Self {
        match kind {
            crate::envelope::ActorKind::User => ActorKind::User,
            crate::envelope::ActorKind::Service => ActorKind::Service,
        }
    }
}

/// How the host authenticated a delegated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DelegationMode {
    /// The host's own credential plus the signed envelope.
    Service,
    /// RFC 8693 token exchange for this user.
    OnBehalfOf,
    /// The user's own third-party token from the vault.
    UserToken,
}

impl From<crate::envelope::DelegationMode> for DelegationMode {
    fn from(mode: crate::envelope::DelegationMode) -> Self {
        match mode {
            crate::envelope::DelegationMode::Service => DelegationMode::Service,
            crate::envelope::DelegationMode::OnBehalfOf => DelegationMode::OnBehalfOf,
            crate::envelope::DelegationMode::UserToken => DelegationMode::UserToken,
        }
    }
}

/// Who acts in a call, and where: carried by every record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallIdentity {
    /// The tenant; its chain holds the record.
    pub tenant: String,
    /// User or service.
    pub actor_kind: ActorKind,
    /// The issuer of the actor's token.
    pub actor_issuer: String,
    /// The actor's subject at that issuer.
    pub actor_subject: String,
    /// The OAuth client the actor used.
    pub client_id: Option<String>,
    /// The acting agent, from an `act` claim.
    pub agent_id: Option<String>,
    /// The tool called.
    pub tool: String,
    /// The trace id of the request.
    pub trace_id: String,
    /// The id of the call's envelope.
    pub envelope_id: String,
}

impl From<&crate::envelope::Envelope> for CallIdentity {
    fn from(envelope: &crate::envelope::Envelope) -> Self {
        CallIdentity {
            tenant: envelope.tenant().to_string(),
            actor_kind: envelope.actor_kind().into(),
            actor_issuer: envelope.issuer().to_string(),
            actor_subject: envelope.subject().to_string(),
            client_id: envelope.client_id().map(str::to_string),
            agent_id: envelope.agent_id().map(str::to_string),
            tool: envelope.tool().to_string(),
            trace_id: envelope.trace_id().to_string(),
            envelope_id: envelope.envelope_id().to_string(),
        }
    }
}

/// Whether a call succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The tool returned a result.
    Ok,
    /// The call ended in an error (tool error, limit, trap, refusal).
    Error,
    /// The round ended by asking the client for input; the call goes on
    /// in another round (its own records).
    InputRequired,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEnd {
    /// Success or error.
    pub outcome: Outcome,
    /// The error's kind as a code string (`timeout`, `out_of_memory`, ...).
    pub error_kind: Option<String>,
    /// Wall-clock time from start to end.
    pub duration_ms: u64,
    /// CPU time the guest used, when the sandbox measures it.
    pub cpu_ms: Option<u64>,
    /// Size of the output as sent.
    pub output_bytes: u64,
}

/// One request a tool asked the host to make, or the host refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegatedRequest {
    /// The service, as configured for the tenant.
    pub service: String,
    /// How the host authenticated (none when the service is not configured).
    pub mode: Option<DelegationMode>,
    /// The HTTP method.
    pub method: String,
    /// The path; [`Entry::delegation`] keeps only the names of query parameters.
    pub path: String,
    /// The response status, when a response came.
    pub status: Option<u16>,
    /// Time the request took.
    pub duration_ms: u64,
    /// Why the host refused the request, when it did (a fixed reason string).
    pub refusal: Option<String>,
}

/// What happened: the part of a record that differs by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A call started.
    Start {
        /// `hmac-sha256:<hex>` of the arguments under the tenant's salt.
        arguments_digest: String,
    },
    /// A call ended: exactly one per start.
    End(CallEnd),
    /// A delegated request.
    Delegation(DelegatedRequest),
}

/// A stored record's body. Fields serialize in declaration order; the bytes
/// written are the bytes hashed, so nothing is ever serialized twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the tenant's chain, from 1, without gaps.
    pub seq: u64,
    /// Hex SHA-256 hash of the previous record (zeros for the first).
    pub prev: String,
    /// When the writer stored it, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Who acted.
    #[serde(flatten)]
    pub who: CallIdentity,
    /// What happened.
    pub event: Event,
}

/// A record to append; the writer gives it its place in the chain.
pub struct Entry {
    who: CallIdentity,
    what: What,
}

enum What {
    /// Raw arguments: digested by the writer, never stored.
    Start(Vec<u8>),
    Event(Event),
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("Entry");
        s.field("who", &self.who);
        match &self.what {
            What::Start(arguments) => s.field("arguments_len", &arguments.len()),
            What::Event(event) => s.field("event", event),
        };
        s.finish()
    }
}

impl Entry {
    /// A call starts with `arguments` (the raw JSON bytes; only their salted
    /// digest is stored).
    pub fn start(who: CallIdentity, arguments: &[u8]) -> Self {
        Entry {
            who,
            what: What::Start(arguments.to_vec()),
        }
    }

    /// A call ended.
    pub fn end(who: CallIdentity, end: CallEnd) -> Self {
        Entry {
            who,
            what: What::Event(Event::End(end)),
        }
    }

    /// A delegated request was made or refused. Query values are dropped from
    /// the path here, whatever the caller passed.
    pub fn delegation(who: CallIdentity, mut request: DelegatedRequest) -> Self {
        request.path = path_without_query_values(&request.path);
        Entry {
            who,
            what: What::Event(Event::Delegation(request)),
        }
    }

    /// The tenant whose chain the entry goes to.
    pub fn tenant(&self) -> &str {
        &self.who.tenant
    }

    /// The record at `seq` after the record hashed `prev`, as stored: the
    /// stored bytes and their chain hash.
    pub(crate) fn seal(
        self,
        seq: u64,
        prev: &[u8; 32],
        time_ms: u64,
        salt: &Salt,
    ) -> Result<(Vec<u8>, [u8; 32]), AuditError> {
        let event = match self.what {
            What::Start(arguments) => Event::Start {
                arguments_digest: salt.digest(&arguments),
            },
            What::Event(event) => event,
        };
        let record = Record {
            seq,
            prev: hex::encode(prev),
            time_ms,
            who: self.who,
            event,
        };
        let body = serde_json::to_vec(&record).map_err(|e| AuditError::Encode(e.to_string()))?;
        let hash = chain_hash(prev, &body);
        Ok((frame(&hash, &body), hash))
    }
}

/// `path` with each query parameter reduced to its name: `/a?x=1&y=2` →
/// `/a?x&y`. Parameters without `=` and fragments are dropped: any of them
/// could be a value.
pub fn path_without_query_values(path: &str) -> String {
    let path = path.split_once('#').map_or(path, |(p, _)| p);
    let Some((base, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let names: Vec<&str> = query
        .split('&')
        .filter_map(|pair| pair.split_once('=').map(|(name, _)| name))
        .filter(|name| !name.is_empty())
        .collect();
    if names.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", names.join("&"))
    }
}

/// A tenant's secret key for argument digests. Kept by the store; never in a
/// record, a log or an error.
#[derive(Clone)]
pub struct Salt([u8; 32]);

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salt(..)")
    }
}

impl Salt {
    /// A new random salt.
    pub fn generate() -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("no random bytes: {e}"))?;
        Ok(Salt(bytes))
    }

    /// A salt read back from a store.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Salt(bytes)
    }

    /// The bytes, for the store to keep.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `hmac-sha256:<hex>` of `data` under this salt.
    pub fn digest(&self, data: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail; fall back to
        // a salted hash rather than panic if that ever changes.
        match <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(mut mac) => {
                mac.update(data);
                format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
            }
            Err(_) => {
                let mut h = Sha256::new();
                h.update(self.0);
                h.update(data);
                format!("sha256:{}", hex::encode(h.finalize()))
            }
        }
    }
}

/// SHA-256 over `prev` and the body bytes: a record's chain hash.
pub fn chain_hash(prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(body);
    h.finalize().into()
}

const FRAME_START: &[u8] = b"{\"hash\":\"";
const FRAME_MIDDLE: &[u8] = b"\",\"body\":";
const FRAME_END: &[u8] = b"}";

/// The stored form: a JSON object whose `body` is exactly the hashed bytes.
fn frame(hash: &[u8; 32], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_START.len() + 64 + FRAME_MIDDLE.len() + body.len() + 1);
    out.extend_from_slice(FRAME_START);
    out.extend_from_slice(hex::encode(hash).as_bytes());
    out.extend_from_slice(FRAME_MIDDLE);
    out.extend_from_slice(body);
    out.extend_from_slice(FRAME_END);
    out
}

/// A stored value taken apart, without trusting it yet.
#[derive(Debug)]
pub(crate) struct Framed<'a> {
    /// The hash stored beside the body.
    pub hash: [u8; 32],
    /// The body bytes as stored.
    pub body: &'a [u8],
    /// The fields verification and export look at.
    pub header: Header,
}

/// The fields of a body that chaining and filtering need. Unknown fields are
/// ignored, so records of later versions still verify.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    pub seq: u64,
    pub prev: String,
    pub time_ms: u64,
    pub tenant: String,
    pub trace_id: String,
}

/// Take a stored value apart: framing, hash, and a body that parses.
pub(crate) fn unframe(value: &[u8]) -> Result<Framed<'_>, String> {
    let rest = value
        .strip_prefix(FRAME_START)
        .ok_or("it does not start like a record")?;
    let (hash_hex, rest) = rest.split_at_checked(64).ok_or("it ends inside the hash")?;
    let hash = decode_hash(hash_hex).ok_or("its hash is not 64 hex digits")?;
    let body = rest
        .strip_prefix(FRAME_MIDDLE)
        .and_then(|rest| rest.strip_suffix(FRAME_END))
        .ok_or("it does not frame a body")?;
    let header: Header =
        serde_json::from_slice(body).map_err(|e| format!("its body is not a record: {e}"))?;
    Ok(Framed { hash, body, header })
}

/// 64 hex digits as a hash.
pub(crate) fn decode_hash(hex_digits: impl AsRef<[u8]>) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut out).ok()?;
    Some(out)
}

/// A signed statement that a tenant's chain had `hash` at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The tenant.
    pub tenant: String,
    /// The last record covered.
    pub seq: u64,
    /// Hex chain hash of that record.
    pub hash: String,
    /// When it was signed, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The signing key.
    pub kid: String,
    /// Hex Ed25519 signature over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    /// The signed bytes: a fixed label, then tenant, seq, hash and time as
    /// JSON in that order. The kid is bound by the verifier choosing the key.
    pub fn message(tenant: &str, seq: u64, hash: &str, time_ms: u64) -> Vec<u8> {
        #[derive(Serialize)]
        struct Signed<'a> {
            tenant: &'a str,
            seq: u64,
            hash: &'a str,
            time_ms: u64,
        }
        let mut msg = b"airlock-audit-checkpoint-v1\n".to_vec();
        // Serializing strings and integers into a Vec cannot fail.
        let _ = serde_json::to_writer(
            &mut msg,
            &Signed {
                tenant,
                seq,
                hash,
                time_ms,
            },
        );
        msg
    }

    /// Whether the signature is `verifier`'s key `kid` over this checkpoint.
    pub fn signature_valid(&self, verifier: &dyn super::CheckpointVerifier) -> bool {
        let Ok(signature) = hex::decode(&self.signature) else {
            return false;
        };
        let msg = Checkpoint::message(&self.tenant, self.seq, &self.hash, self.time_ms);
        verifier.verify(&self.kid, &msg, &signature)
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_never_reach_the_record() {
        for (path, want) in [
            ("/notes", "/notes"),
            ("/notes?limit=5&cursor=abc", "/notes?limit&cursor"),
            ("/notes?token", "/notes"),
            ("/notes?a=1&secret#frag=x", "/notes?a"),
            ("/n?=v", "/n"),
        ] {
            assert_eq!(path_without_query_values(path), want, "{path}");
        }
    }

    #[test]
    fn stored_form_round_trips_and_hashes_the_stored_body() {
        let salt = Salt::from_bytes([7; 32]);
        let who = super::super::tests::who("acme", "t1");
        let (value, hash) = Entry::start(who, b"{\"x\":1}")
            .seal(1, &ZERO_HASH, 5, &salt)
            .unwrap();
        let framed = unframe(&value).unwrap();
        assert_eq!(framed.hash, hash);
        assert_eq!(chain_hash(&ZERO_HASH, framed.body), hash);
        let record: Record = serde_json::from_slice(framed.body).unwrap();
        assert_eq!(record.seq, 1);
        assert_eq!(record.prev, "0".repeat(64));
        let Event::Start { arguments_digest } = &record.event else {
            panic!("not a start: {record:?}")
        };
        assert_eq!(arguments_digest, &salt.digest(b"{\"x\":1}"));
        assert!(arguments_digest.starts_with("hmac-sha256:"));
        let text = String::from_utf8(value).unwrap();
        assert!(!text.contains("\"x\""), "raw arguments stored: {text}");
        assert!(!text.contains('\n'));
        // Another salt, another digest: digests cannot be compared across tenants.
        assert_ne!(
            Salt::from_bytes([8; 32]).digest(b"{\"x\":1}"),
            *arguments_digest
        );
    }

    #[test]
    fn broken_values_are_refused() {
        for value in [
            &b""[..],
            b"{\"hash\":\"00\",\"body\":{}}",
            b"{\"hash\":\"zz00000000000000000000000000000000000000000000000000000000000000\",\"body\":{}}",
            b"{\"hash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"body\":{}}",
            b"{\"hash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"body\":{\"seq\":1",
        ] {
            assert!(unframe(value).is_err(), "{}", String::from_utf8_lossy(value));
        }
    }
}
