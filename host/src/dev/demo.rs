//! The demo downstream APIs of `airlock dev`, one per delegation mode built so
//! far, served on the dev listener so there is nothing else to run. They check
//! what a real API behind airlock should check, and nothing is trusted from a
//! tool:
//!
//! - **notes** at `{url}/demo/notes` (`service` mode): the host's API key
//!   (`Authorization: Bearer`, from a secret file in the dev data) and the
//!   signed envelope, whose actor owns the notes.
//! - **tickets** at `{url}/demo/tickets` (`on-behalf-of` mode): a token the
//!   tenant's development issuer exchanged for the host (RFC 8693: `aud` this
//!   API, `act.sub` the host's client), plus the signed envelope, whose actor
//!   must be the token's subject.
//!
//! The envelope is verified as the README tells API teams to: the host's
//! JWKS fetched from `{url}/.well-known/jwks.json` (cached, refetched on an
//! unknown `kid` at most once a second), `typ`, EdDSA, `iss`, `aud`,
//! `exp`/`nbf`, and the request binding against the request received (its
//! path and query exactly as they arrived). Every refusal is a JSON error
//! naming the check that failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::authserver::{
    DevAuth, ExchangeTarget, ExpectedSecret, HOST_CLIENT_ID, Presented, presented_credentials,
};
use crate::envelope::{ENVELOPE_JWS_TYPE, random_id};

/// The file in the dev data directory holding the notes API's key.
pub(crate) const NOTES_KEY_FILE: &str = "notes-api.key";
/// The request header carrying the signed envelope.
const ENVELOPE_HEADER: &str = "airlock-envelope";
/// The scope the tickets API requires of exchanged tokens.
pub(crate) const TICKETS_SCOPE: &str = "tickets";
/// Clock skew tolerated on envelopes.
const LEEWAY_SECONDS: u64 = 5;
/// Refetch the host's keys at most this often.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(1);
/// Use fetched keys at most this long (the JWKS's `max-age`).
const JWKS_MAX_AGE: Duration = Duration::from_secs(300);
/// Largest JWKS accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most notes or tickets one user may keep.
const MAX_ITEMS: usize = 1000;
/// Longest note, in characters (as the `notes` tool allows).
const MAX_NOTE_CHARS: usize = 10_000;
/// Longest ticket title, in characters.
const MAX_TITLE_CHARS: usize = 200;

/// `{url}/demo/{api}`: where a demo API is mounted, which is also its
/// identifier (the envelope's `aud`, the exchanged token's `aud`).
pub(crate) fn mount(url: &str, api: &str) -> String {
    format!("{url}/demo/{api}")
}

/// The token-exchange targets for a tenant whose tools reach `services`:
/// the demo APIs in `on-behalf-of` mode (tickets).
pub(crate) fn exchange_targets(url: &str, services: &[&str]) -> Vec<ExchangeTarget> {
    services
        .iter()
        .filter(|s| **s == "tickets")
        .map(|s| ExchangeTarget {
            audience: mount(url, s),
            scopes: vec![TICKETS_SCOPE.to_string()],
        })
        .collect()
}

/// A refusal: status, error code, the check that failed, and why.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    error: &'static str,
    check: &'static str,
    description: &'static str,
}

impl Refusal {
    fn envelope(check: &'static str, description: &'static str) -> Self {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_envelope",
            check,
            description,
        }
    }

    fn token(check: &'static str, description: &'static str) -> Self {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_token",
            check,
            description,
        }
    }

    fn forbidden(error: &'static str, check: &'static str, description: &'static str) -> Self {
        Refusal {
            status: StatusCode::FORBIDDEN,
            error,
            check,
            description,
        }
    }

    fn bad_request(description: &'static str) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            check: "body",
            description,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        tracing::debug!(
            error = self.error,
            check = self.check,
            "a demo API refused a request"
        );
        (
            self.status,
            axum::Json(json!({
                "error": self.error,
                "check": self.check,
                "error_description": self.description,
            })),
        )
            .into_response()
    }
}

/// The host's envelope keys, fetched from its JWKS.
struct HostKeys {
    jwks_uri: String,
    http: reqwest::Client,
    state: tokio::sync::Mutex<KeysState>,
}

#[derive(Default)]
struct KeysState {
    keys: Option<JwkSet>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

impl HostKeys {
    /// The key `kid`, fetching the JWKS when it is unknown (at most once a
    /// second) or the cached copy is old.
    async fn key(&self, kid: &str) -> Option<DecodingKey> {
        let mut state = self.state.lock().await;
        let fresh = state.fetched_at.is_some_and(|t| t.elapsed() < JWKS_MAX_AGE);
        if fresh && let Some(key) = find(state.keys.as_ref(), kid) {
            return Some(key);
        }
        let may_fetch = state
            .attempted_at
            .is_none_or(|t| t.elapsed() >= JWKS_MIN_REFETCH);
        if may_fetch {
            state.attempted_at = Some(Instant::now());
            match self.fetch().await {
                Ok(keys) => {
                    state.keys = Some(keys);
                    state.fetched_at = Some(Instant::now());
                }
                Err(e) => tracing::warn!(error = %e, "the demo APIs cannot fetch the host's keys"),
            }
        }
        find(state.keys.as_ref(), kid)
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let response = self
            .http
            .get(&self.jwks_uri)
            .send()
            .await
            .map_err(|e| format!("GET {}: {e}", self.jwks_uri))?;
        if !response.status().is_success() {
            return Err(format!(
                "GET {}: status {}",
                self.jwks_uri,
                response.status()
            ));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("GET {}: {e}", self.jwks_uri))?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!("{} is too large", self.jwks_uri));
        }
        serde_json::from_slice(&body)
            .map_err(|e| format!("{} is not a JWK set: {e}", self.jwks_uri))
    }
}

fn find(keys: Option<&JwkSet>, kid: &str) -> Option<DecodingKey> {
    DecodingKey::from_jwk(keys?.find(kid)?).ok()
}

/// The envelope claims the demo APIs act on.
#[derive(Debug, Deserialize)]
struct EnvelopeClaims {
    tenant: String,
    actor: EnvelopeActor,
    req: BoundRequest,
}

#[derive(Debug, Deserialize)]
struct EnvelopeActor {
    subject: String,
    issuer: String,
}

#[derive(Debug, Deserialize)]
struct BoundRequest {
    method: String,
    path: String,
    body_sha256: String,
}

/// A user: (tenant, issuer, subject).
type Owner = (String, String, String);

/// One note.
#[derive(Debug, Clone, Serialize)]
struct Note {
    id: String,
    text: String,
}

/// One ticket.
#[derive(Debug, Clone, Serialize)]
struct Ticket {
    id: String,
    title: String,
    status: &'static str,
}

/// The demo APIs' state: keys to check callers with, and the data, in memory.
pub(crate) struct DemoApis {
    host_url: String,
    tickets_url: String,
    notes_key: ExpectedSecret,
    auth: Arc<DevAuth>,
    host_keys: HostKeys,
    notes: Mutex<HashMap<Owner, Vec<Note>>>,
    tickets: Mutex<HashMap<Owner, Vec<Ticket>>>,
}

impl DemoApis {
    /// The APIs of the dev host at `url`; the notes API accepts `notes_key`,
    /// the tickets API tokens exchanged at `auth`.
    pub(crate) fn new(url: &str, notes_key: &str, auth: Arc<DevAuth>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(DemoApis {
            host_url: url.to_string(),
            tickets_url: mount(url, "tickets"),
            notes_key: ExpectedSecret::new(notes_key)?,
            auth,
            host_keys: HostKeys {
                jwks_uri: format!("{url}/.well-known/jwks.json"),
                http,
                state: tokio::sync::Mutex::new(KeysState::default()),
            },
            notes: Mutex::new(HashMap::new()),
            tickets: Mutex::new(HashMap::new()),
        })
    }

    /// Verify the request's envelope for the demo API `api` (`notes`, …).
    async fn envelope(&self, api: &str, request: &Request) -> Result<EnvelopeClaims, Refusal> {
        let mut values = request.headers.get_all(ENVELOPE_HEADER).iter();
        let token = match (values.next(), values.next()) {
            (None, _) => {
                return Err(Refusal::envelope(
                    "envelope",
                    "the Airlock-Envelope header is missing",
                ));
            }
            (Some(v), None) => v.to_str().map_err(|_| {
                Refusal::envelope("envelope", "the Airlock-Envelope header is not text")
            })?,
            (Some(_), Some(_)) => {
                return Err(Refusal::envelope(
                    "envelope",
                    "more than one Airlock-Envelope header",
                ));
            }
        };
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Refusal::envelope("envelope", "the envelope is not a compact JWS"))?;
        if header.typ.as_deref() != Some(ENVELOPE_JWS_TYPE) {
            return Err(Refusal::envelope(
                "typ",
                "the envelope's typ is not airlock-envelope+jwt",
            ));
        }
        if header.alg != Algorithm::EdDSA {
            return Err(Refusal::envelope(
                "alg",
                "the envelope is not signed with EdDSA",
            ));
        }
        let kid = header
            .kid
            .ok_or(Refusal::envelope("kid", "the envelope names no key"))?;
        let key = self.host_keys.key(&kid).await.ok_or(Refusal::envelope(
            "kid",
            "the envelope's key is not in the host's JWKS",
        ))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.host_url]);
        validation.set_audience(&[mount(&self.host_url, api)]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<EnvelopeClaims>(token, &key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidSignature => {
                        Refusal::envelope("signature", "the envelope's signature is invalid")
                    }
                    ErrorKind::InvalidIssuer => {
                        Refusal::envelope("iss", "the envelope was not issued by this host")
                    }
                    ErrorKind::InvalidAudience => {
                        Refusal::envelope("aud", "the envelope was signed for another service")
                    }
                    ErrorKind::ExpiredSignature => {
                        Refusal::envelope("exp", "the envelope has expired")
                    }
                    ErrorKind::ImmatureSignature => {
                        Refusal::envelope("nbf", "the envelope is not valid yet")
                    }
                    _ => Refusal::envelope("claims", "the envelope's claims are incomplete"),
                }
            })?
            .claims;
        if claims.req.method != request.method.as_str() {
            return Err(Refusal::envelope(
                "req.method",
                "the envelope was signed for another method",
            ));
        }
        // The path (and query) exactly as the request arrived.
        let path = request.uri.path();
        let path_matches = match request.uri.query() {
            Some(query) => claims.req.path.strip_prefix(path) == Some(&format!("?{query}")),
            None => claims.req.path == path,
        };
        if !path_matches {
            return Err(Refusal::envelope(
                "req.path",
                "the envelope was signed for another path",
            ));
        }
        if claims.req.body_sha256 != URL_SAFE_NO_PAD.encode(Sha256::digest(&request.body)) {
            return Err(Refusal::envelope(
                "req.body_sha256",
                "the envelope was signed for another body",
            ));
        }
        Ok(claims)
    }

    /// The notes API's caller: the host's key, then the envelope's actor.
    async fn notes_owner(&self, request: &Request) -> Result<Owner, Refusal> {
        let key_ok = match presented_credentials(&request.headers) {
            Presented::Bearer(key) => self.notes_key.matches(&key),
            _ => false,
        };
        if !key_ok {
            return Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                error: "invalid_api_key",
                check: "api_key",
                description: "send the notes API key as a bearer token",
            });
        }
        let claims = self.envelope("notes", request).await?;
        Ok((claims.tenant, claims.actor.issuer, claims.actor.subject))
    }

    /// The tickets API's caller: an exchanged token, and an envelope acting
    /// for the same user.
    async fn tickets_caller(&self, request: &Request) -> Result<TicketsCaller, Refusal> {
        let Presented::Bearer(token) = presented_credentials(&request.headers) else {
            return Err(Refusal::token(
                "token",
                "send a token exchanged for this API as a bearer token",
            ));
        };
        let (tenant, claims) =
            self.auth
                .verify(&token, &self.tickets_url, None)
                .map_err(|check| {
                    Refusal::token(check, "the token is not one exchanged for this API")
                })?;
        let tenant = tenant.to_string();
        let via = match claims.act {
            Some(act) if act.sub == HOST_CLIENT_ID => act.sub,
            _ => {
                return Err(Refusal::token(
                    "act",
                    "the token was not exchanged for the airlock host",
                ));
            }
        };
        let envelope = self.envelope("tickets", request).await?;
        if envelope.tenant != tenant
            || envelope.actor.issuer != claims.iss
            || envelope.actor.subject != claims.sub
        {
            return Err(Refusal::forbidden(
                "actor_mismatch",
                "actor",
                "the envelope acts for someone other than the token's subject",
            ));
        }
        if !claims.scope.split_whitespace().any(|s| s == TICKETS_SCOPE) {
            return Err(Refusal::forbidden(
                "insufficient_scope",
                "scope",
                "the token lacks the tickets scope",
            ));
        }
        Ok(TicketsCaller {
            owner: (tenant, claims.iss, claims.sub),
            via,
        })
    }
}

struct TicketsCaller {
    owner: Owner,
    via: String,
}

/// What the checks need of a request.
struct Request {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Request {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(
            axum::extract::Request::from_parts(parts.clone(), body),
            state,
        )
        .await
        .map_err(IntoResponse::into_response)?;
        Ok(Request {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body: bytes,
        })
    }
}

/// The routes, under `/demo/notes` and `/demo/tickets`.
pub(crate) fn router(apis: Arc<DemoApis>) -> Router {
    Router::new()
        .route("/demo/notes/notes", get(list_notes).post(add_note))
        .route("/demo/notes/notes/{id}", delete(delete_note))
        .route("/demo/tickets/tickets", get(list_tickets).post(open_ticket))
        .with_state(apis)
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body)
        .map_err(|_| Refusal::bad_request("the body is not the JSON expected"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn list_notes(State(apis): State<Arc<DemoApis>>, request: Request) -> Response {
    match apis.notes_owner(&request).await {
        Ok(owner) => {
            let notes = lock(&apis.notes).get(&owner).cloned().unwrap_or_default();
            axum::Json(notes).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

#[derive(Deserialize)]
struct NewNote {
    text: String,
}

async fn add_note(State(apis): State<Arc<DemoApis>>, request: Request) -> Response {
    let result = async {
        let owner = apis.notes_owner(&request).await?;
        let new: NewNote = json_body(&request.body)?;
        if new.text.is_empty() || new.text.chars().count() > MAX_NOTE_CHARS {
            return Err(Refusal::bad_request("text must be 1 to 10,000 characters"));
        }
        let note = Note {
            id: format!("n-{}", random_id().get(..12).unwrap_or_default()),
            text: new.text,
        };
        let mut notes = lock(&apis.notes);
        let mine = notes.entry(owner).or_default();
        if mine.len() >= MAX_ITEMS {
            return Err(Refusal::bad_request("too many notes; delete some first"));
        }
        mine.push(note.clone());
        Ok(note)
    };
    match result.await {
        Ok(note) => (StatusCode::CREATED, axum::Json(note)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn delete_note(
    State(apis): State<Arc<DemoApis>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let owner = match apis.notes_owner(&request).await {
        Ok(owner) => owner,
        Err(refusal) => return refusal.into_response(),
    };
    let mut notes = lock(&apis.notes);
    let mine = notes.get_mut(&owner);
    match mine.and_then(|m| m.iter().position(|n| n.id == id).map(|i| (m, i))) {
        Some((mine, i)) => {
            mine.remove(i);
            StatusCode::NO_CONTENT.into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": "not_found", "error_description": "no such note" })),
        )
            .into_response(),
    }
}

async fn list_tickets(State(apis): State<Arc<DemoApis>>, request: Request) -> Response {
    match apis.tickets_caller(&request).await {
        Ok(caller) => {
            let tickets = lock(&apis.tickets)
                .get(&caller.owner)
                .cloned()
                .unwrap_or_default();
            axum::Json(json!({
                "tickets": tickets,
                "acting_for": caller.owner.2,
                "via": caller.via,
            }))
            .into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

#[derive(Deserialize)]
struct NewTicket {
    title: String,
}

async fn open_ticket(State(apis): State<Arc<DemoApis>>, request: Request) -> Response {
    let result = async {
        let caller = apis.tickets_caller(&request).await?;
        let new: NewTicket = json_body(&request.body)?;
        let title = new.title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
            return Err(Refusal::bad_request("title must be 1 to 200 characters"));
        }
        let mut tickets = lock(&apis.tickets);
        let mine = tickets.entry(caller.owner.clone()).or_default();
        if mine.len() >= MAX_ITEMS {
            return Err(Refusal::bad_request("too many tickets"));
        }
        let ticket = Ticket {
            id: format!("T-{}", mine.len() + 1),
            title: title.to_string(),
            status: "open",
        };
        mine.push(ticket.clone());
        Ok((ticket, caller))
    };
    match result.await {
        Ok((ticket, caller)) => (
            StatusCode::CREATED,
            axum::Json(json!({
                "id": ticket.id,
                "title": ticket.title,
                "status": ticket.status,
                "acting_for": caller.owner.2,
                "via": caller.via,
            })),
        )
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}
