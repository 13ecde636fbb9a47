//! The development OAuth 2.1 authorization server, one issuer per demo tenant
//! at `{public_url}/dev/{tenant}`: RFC 8414 metadata, dynamic client
//! registration (RFC 7591), authorization code with PKCE S256 and a login page
//! that picks a demo user, the RFC 8707 `resource` parameter, rotating refresh
//! tokens, RFC 8693 token exchange for the host's own confidential client,
//! and the JWKS. Mounted only by `airlock dev`.
//!
//! Any web page open in the developer's browser can reach this server, so a
//! code is issued only from the login page's own form: its one-time token is
//! bound to the authorization request and to the browser that opened the
//! page (an HttpOnly SameSite=Strict cookie). `login_hint` only preselects a
//! user. The page cannot be framed, CORS is offered only where browser
//! clients need it (metadata, JWKS, registration, token), registrations are
//! rate-limited, and a refresh token presented twice revokes its whole
//! family (every refresh token descending from the same grant).
//!
//! Token exchange is what `on-behalf-of` delegation asks for: the host (client
//! `airlock-host`, HTTP Basic authentication) trades a user's access token for
//! this tenant's MCP endpoint for a five-minute token for one demo API, which
//! names the user as `sub` and the host as `act.sub`. The exchanged token may
//! carry the subject token's scopes and the target API's own scopes, nothing
//! else: the user consented to the host acting for them when logging in, and
//! the demo APIs' scopes are granted to the host's client.
//!
//! This module also reads the `Authorization` header for the demo APIs
//! ([`presented_credentials`]): the client authentication of an authorization
//! server and an API's credential check, never the host's own inbound tokens.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::forms::{self, FormRefusal, FormTokens, TokenRefusal as Refused, escape, pkce_matches};
use super::keys::{IssuerKey, mint, now};
use crate::storage::{Storage, Tree};

/// How long an access token lives.
const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// How long a refresh token lives.
const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long an authorization code may wait to be redeemed.
const CODE_LIFETIME: Duration = Duration::from_secs(120);
/// Most outstanding authorization codes.
const MAX_CODES: usize = 10_000;
/// Largest registration or token request.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// How long an exchanged token lives.
const EXCHANGED_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// Clock skew tolerated when verifying the tokens these issuers minted.
const LEEWAY_SECONDS: u64 = 5;
/// How long a login page's form may wait to be submitted.
const LOGIN_LIFETIME: Duration = Duration::from_secs(600);
/// The cookie binding a login form to the browser that opened the page.
const LOGIN_COOKIE: &str = "airlock_dev_login";
/// The window registrations are counted in.
const REGISTRATION_WINDOW: Duration = Duration::from_secs(60);
/// Most registrations per window from one source address.
const REGISTRATIONS_PER_ADDRESS: usize = 20;
/// Most registrations per window in total.
const REGISTRATIONS_TOTAL: usize = 200;

/// The host's confidential client at every development issuer.
pub(crate) const HOST_CLIENT_ID: &str = "airlock-host";
/// The connect page's public client at every development issuer, present
/// without registration (registered ids are random, so it cannot be taken).
pub(crate) const CONNECT_CLIENT_ID: &str = "airlock-connect";
/// The RFC 8693 grant type.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The RFC 8693 token type of an access token.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// One demo tenant's issuer.
pub(crate) struct TenantIssuer {
    /// `iss`.
    pub issuer: String,
    /// The tenant's MCP endpoint: the only audience tokens are minted for.
    pub resource: String,
    /// Who may log in.
    pub users: Vec<String>,
    /// Scopes the issuer grants.
    pub scopes: Vec<String>,
    /// Its signing key.
    pub key: IssuerKey,
    /// The demo APIs the host may exchange this tenant's tokens for.
    pub exchange: Vec<ExchangeTarget>,
    /// The only redirect URI of [`CONNECT_CLIENT_ID`]: `{url}/connect/{tenant}/login`.
    pub connect_redirect_uri: String,
}

/// A demo API that accepts exchanged tokens.
#[derive(Debug, Clone)]
pub(crate) struct ExchangeTarget {
    /// Its identifier: the `audience` (or `resource`) to ask for, and the
    /// exchanged token's `aud`.
    pub audience: String,
    /// Its own scopes, which the host's client may always ask for.
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Client {
    client_id: String,
    client_name: Option<String>,
    redirect_uris: Vec<String>,
    issued_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Refresh {
    tenant: String,
    client_id: String,
    user: String,
    scope: String,
    resource: String,
    expires_at: u64,
    /// The grant it descends from: the key of the grant's first refresh
    /// token (empty in records written before families existed).
    #[serde(default)]
    family: String,
    /// Redeemed: kept until it expires so that reuse is recognised.
    #[serde(default)]
    used: bool,
}

/// A login page's form, waiting to be submitted.
struct PendingLogin {
    tenant: String,
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    challenge: String,
    scope: String,
    resource: String,
}

/// Registrations of the last [`REGISTRATION_WINDOW`], oldest first.
struct Registrations {
    per_address: usize,
    total: usize,
    recent: VecDeque<(Option<IpAddr>, Instant)>,
}

impl Registrations {
    /// Count a registration from `from` at `now`, or refuse it with the
    /// seconds to wait.
    fn admit(&mut self, from: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        while self
            .recent
            .front()
            .is_some_and(|(_, t)| now.duration_since(*t) >= REGISTRATION_WINDOW)
        {
            self.recent.pop_front();
        }
        let mut mine = self.recent.iter().filter(|(a, _)| *a == from);
        let full = if self.recent.len() >= self.total {
            self.recent.front().map(|(_, t)| *t)
        } else if mine.clone().count() >= self.per_address {
            mine.next().map(|(_, t)| *t)
        } else {
            None
        };
        if let Some(oldest) = full {
            let wait = REGISTRATION_WINDOW.saturating_sub(now.duration_since(oldest));
            return Err((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1));
        }
        self.recent.push_back((from, now));
        Ok(())
    }
}

struct PendingCode {
    tenant: String,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    scope: String,
    resource: String,
    user: String,
    expires: Instant,
}

/// The authorization server's state.
pub(crate) struct DevAuth {
    tenants: BTreeMap<String, TenantIssuer>,
    /// Each tenant's verification key, by tenant id.
    verifying: BTreeMap<String, DecodingKey>,
    /// The host client's secret, to compare presented ones with.
    host_secret: ExpectedSecret,
    clients: Tree,
    refresh: Tree,
    /// Each refresh-token family's newest token (family → key); a revoked
    /// family has none.
    families: Tree,
    /// Held while refresh records and families are read and written.
    refresh_lock: Mutex<()>,
    codes: Mutex<HashMap<String, PendingCode>>,
    /// Login forms by their one-time token.
    logins: FormTokens<PendingLogin>,
    registrations: Mutex<Registrations>,
}

impl DevAuth {
    /// The issuers of `tenants`, with `host_secret` as the secret of the
    /// host's client ([`HOST_CLIENT_ID`]) at each.
    pub(crate) fn new(
        tenants: BTreeMap<String, TenantIssuer>,
        host_secret: &str,
        storage: &Storage,
    ) -> Result<Self, String> {
        let mut verifying = BTreeMap::new();
        for (id, t) in &tenants {
            let jwk: Jwk = serde_json::from_value(t.key.jwk())
                .map_err(|e| format!("the key of tenant {id} is not a JWK: {e}"))?;
            let key = DecodingKey::from_jwk(&jwk)
                .map_err(|e| format!("the key of tenant {id} cannot verify: {e}"))?;
            verifying.insert(id.clone(), key);
        }
        Ok(DevAuth {
            tenants,
            verifying,
            host_secret: ExpectedSecret::new(host_secret)?,
            clients: storage.tree("dev.clients").map_err(|e| e.to_string())?,
            refresh: storage.tree("dev.refresh").map_err(|e| e.to_string())?,
            families: storage
                .tree("dev.refresh.families")
                .map_err(|e| e.to_string())?,
            refresh_lock: Mutex::new(()),
            codes: Mutex::new(HashMap::new()),
            logins: FormTokens::new(
                LOGIN_COOKIE,
                LOGIN_LIFETIME,
                MAX_CODES,
                "too many pending logins; try again shortly",
            ),
            registrations: Mutex::new(Registrations {
                per_address: REGISTRATIONS_PER_ADDRESS,
                total: REGISTRATIONS_TOTAL,
                recent: VecDeque::new(),
            }),
        })
    }

    fn tenant(&self, id: &str) -> Option<&TenantIssuer> {
        self.tenants.get(id)
    }

    fn client(&self, tenant: &str, client_id: &str) -> Option<Client> {
        if client_id == CONNECT_CLIENT_ID {
            return self.tenant(tenant).map(|t| Client {
                client_id: CONNECT_CLIENT_ID.to_string(),
                client_name: Some("airlock (connect an account)".to_string()),
                redirect_uris: vec![t.connect_redirect_uri.clone()],
                issued_at: 0,
            });
        }
        self.clients
            .get::<Client>(&format!("{tenant}/{client_id}"))
            .ok()
            .flatten()
    }
}

/// The routes, all under `/dev/{tenant}` or the matching `/.well-known/…/dev/{tenant}`.
/// CORS only on what browser clients read or call; never on the login page.
pub(crate) fn router(auth: Arc<DevAuth>) -> Router {
    let login = Router::new()
        .route("/dev/{tenant}/authorize", get(authorize).post(login))
        .with_state(auth.clone());
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server/dev/{tenant}",
            get(metadata),
        )
        .route(
            "/.well-known/openid-configuration/dev/{tenant}",
            get(metadata),
        )
        .route(
            "/dev/{tenant}/.well-known/openid-configuration",
            get(metadata),
        )
        .route(
            "/dev/{tenant}/.well-known/oauth-authorization-server",
            get(metadata),
        )
        .route("/dev/{tenant}/jwks", get(jwks))
        .route("/dev/{tenant}/register", post(register))
        .route("/dev/{tenant}/token", post(token))
        .with_state(auth)
        .layer(crate::edge::public_cors())
        .merge(login)
}

async fn metadata(State(auth): State<Arc<DevAuth>>, Path(tenant): Path<String>) -> Response {
    let Some(t) = auth.tenant(&tenant) else {
        return no_issuer();
    };
    let i = &t.issuer;
    axum::Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "registration_endpoint": format!("{i}/register"),
        "jwks_uri": format!("{i}/jwks"),
        "scopes_supported": t.scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", TOKEN_EXCHANGE],
        // Public clients (MCP clients) send no secret; the host's own client
        // authenticates for token exchange with HTTP Basic.
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "authorization_response_iss_parameter_supported": true,
    }))
    .into_response()
}

async fn jwks(State(auth): State<Arc<DevAuth>>, Path(tenant): Path<String>) -> Response {
    match auth.tenant(&tenant) {
        Some(t) => axum::Json(json!({ "keys": [t.key.jwk()] })).into_response(),
        None => no_issuer(),
    }
}

fn no_issuer() -> Response {
    (StatusCode::NOT_FOUND, "no such development issuer").into_response()
}

/// An OAuth error response (RFC 6749 §5.2, RFC 7591 §3.2.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    no_store(&mut response);
    response
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // Without randomness no secret may be minted; an empty value is
        // refused by every check below.
        return String::new();
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `uri` may be a redirect target: absolute, no fragment, and not a
/// script or data URL.
fn valid_redirect_uri(uri: &str) -> bool {
    match url::Url::parse(uri) {
        Ok(u) => {
            u.fragment().is_none()
                && !matches!(u.scheme(), "javascript" | "data" | "file" | "about")
                && (u.scheme() != "http" || u.host_str().is_some())
        }
        Err(_) => false,
    }
}

async fn register(
    State(auth): State<Arc<DevAuth>>,
    Path(tenant): Path<String>,
    extensions: Extensions,
    body: Bytes,
) -> Response {
    if auth.tenant(&tenant).is_none() {
        return no_issuer();
    }
    let from = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    let admitted = lock(&auth.registrations).admit(from, Instant::now());
    if let Err(wait) = admitted {
        tracing::warn!(tenant, "client registrations are arriving too fast");
        let mut response = oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "too many client registrations; try again later",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return response;
    }
    if body.len() > MAX_FORM_BYTES {
        return oauth_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_client_metadata",
            "the registration request is too large",
        );
    }
    let Ok(meta) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "the registration request must be a JSON object",
        );
    };
    let Some(uris) = meta.get("redirect_uris").and_then(|v| v.as_array()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            "redirect_uris must be a non-empty array of absolute URIs",
        );
    };
    let mut redirect_uris = Vec::new();
    for uri in uris {
        match uri.as_str() {
            Some(u) if valid_redirect_uri(u) => redirect_uris.push(u.to_string()),
            _ => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_redirect_uri",
                    "every redirect URI must be absolute, without a fragment",
                );
            }
        }
    }
    if redirect_uris.is_empty() || redirect_uris.len() > 16 {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            "register between 1 and 16 redirect URIs",
        );
    }
    let client = Client {
        client_id: random_token(),
        client_name: meta
            .get("client_name")
            .and_then(|v| v.as_str())
            .map(|s| s.chars().take(200).collect()),
        redirect_uris,
        issued_at: now(),
    };
    if client.client_id.is_empty() {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "no randomness",
        );
    }
    if let Err(e) = auth
        .clients
        .put(&format!("{tenant}/{}", client.client_id), &client)
    {
        tracing::error!(error = %e, "cannot store a registered client");
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the client could not be stored",
        );
    }
    let mut response = (
        StatusCode::CREATED,
        axum::Json(json!({
            "client_id": client.client_id,
            "client_id_issued_at": client.issued_at,
            "client_name": client.client_name,
            "redirect_uris": client.redirect_uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        })),
    )
        .into_response();
    no_store(&mut response);
    response
}

fn form(bytes: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

/// A validated authorization request.
struct AuthRequest {
    client: Client,
    redirect_uri: String,
    state: Option<String>,
    challenge: String,
    scope: String,
    resource: String,
}

/// A failure answered on the page itself (the redirect target is not trusted)
/// or by redirecting back to the client with an error.
enum AuthFailure {
    Page(&'static str),
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: &'static str,
    },
}

fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(params);
            Redirect::to(url.as_str()).into_response()
        }
        Err(_) => (StatusCode::BAD_REQUEST, "invalid redirect_uri").into_response(),
    }
}

impl AuthFailure {
    fn response(self, issuer: &str) -> Response {
        match self {
            AuthFailure::Page(message) => page(
                StatusCode::BAD_REQUEST,
                "Authorization failed",
                &format!("<p>{}</p>", escape(message)),
            ),
            AuthFailure::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut params = vec![
                    ("error", error),
                    ("error_description", description),
                    ("iss", issuer),
                ];
                if let Some(state) = &state {
                    params.push(("state", state));
                }
                redirect_with(&redirect_uri, &params)
            }
        }
    }
}

fn validate_request(
    auth: &DevAuth,
    tenant_id: &str,
    tenant: &TenantIssuer,
    p: &HashMap<String, String>,
) -> Result<AuthRequest, AuthFailure> {
    let client_id = p
        .get("client_id")
        .ok_or(AuthFailure::Page("client_id is missing"))?;
    let client = auth.client(tenant_id, client_id).ok_or(AuthFailure::Page(
        "unknown client_id: register the client with this issuer first",
    ))?;
    let redirect_uri = match p.get("redirect_uri") {
        Some(uri) if client.redirect_uris.contains(uri) => uri.clone(),
        Some(_) => {
            return Err(AuthFailure::Page(
                "redirect_uri is not one the client registered",
            ));
        }
        None => match client.redirect_uris.as_slice() {
            [only] => only.clone(),
            _ => return Err(AuthFailure::Page("redirect_uri is missing")),
        },
    };
    let state = p.get("state").cloned();
    let fail = |error, description| AuthFailure::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
        description,
    };
    if p.get("response_type").map(String::as_str) != Some("code") {
        return Err(fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    let challenge = p
        .get("code_challenge")
        .filter(|c| (43..=128).contains(&c.len()))
        .ok_or_else(|| fail("invalid_request", "PKCE is required: send a code_challenge"))?;
    if p.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return Err(fail(
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    let resource = match p.get("resource") {
        None => tenant.resource.clone(),
        Some(r) if r.trim_end_matches('/') == tenant.resource => tenant.resource.clone(),
        Some(_) => {
            return Err(fail(
                "invalid_target",
                "this issuer only mints tokens for its own tenant's MCP endpoint",
            ));
        }
    };
    let scope = match p
        .get("scope")
        .map(|s| s.split_whitespace().collect::<BTreeSet<_>>())
    {
        None => tenant.scopes.join(" "),
        Some(requested) if requested.is_empty() => tenant.scopes.join(" "),
        Some(requested) => {
            if requested
                .iter()
                .any(|s| !tenant.scopes.iter().any(|t| t == s))
            {
                return Err(fail("invalid_scope", "a requested scope is not offered"));
            }
            requested.into_iter().collect::<Vec<_>>().join(" ")
        }
    };
    Ok(AuthRequest {
        client,
        redirect_uri,
        state,
        challenge: challenge.clone(),
        scope,
        resource,
    })
}

/// A page of the issuer, which no other site may frame.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let mut response = forms::page(
        status,
        title,
        "body{font-family:sans-serif;max-width:32em;margin:4em auto}\
         button{font-size:1.1em;margin:.3em;padding:.4em 1.2em}",
        body,
    );
    no_store(&mut response);
    response
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl PendingLogin {
    /// Whether the form was made for `request` (as validated again).
    fn is_for(&self, request: &AuthRequest) -> bool {
        self.client_id == request.client.client_id
            && self.redirect_uri == request.redirect_uri
            && self.state == request.state
            && self.challenge == request.challenge
            && self.scope == request.scope
            && self.resource == request.resource
    }
}

async fn authorize(
    State(auth): State<Arc<DevAuth>>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(tenant) = auth.tenant(&tenant_id) else {
        return no_issuer();
    };
    let params = form(query.unwrap_or_default().as_bytes());
    let request = match validate_request(&auth, &tenant_id, tenant, &params) {
        Ok(r) => r,
        Err(f) => return f.response(&tenant.issuer),
    };
    let issued = match auth.logins.issue(
        &headers,
        &format!("/dev/{tenant_id}"),
        PendingLogin {
            tenant: tenant_id.clone(),
            client_id: request.client.client_id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
            challenge: request.challenge.clone(),
            scope: request.scope.clone(),
            resource: request.resource.clone(),
        },
    ) {
        Ok(issued) => issued,
        Err(refused) => return refused.into_response(),
    };
    let form_token = &issued.token;
    let mut hidden: String = params
        .iter()
        .filter(|(k, _)| k.as_str() != "user" && k.as_str() != "form_token")
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    hidden.push_str(&format!(
        "<input type=\"hidden\" name=\"form_token\" value=\"{form_token}\">"
    ));
    // `login_hint` only preselects: its user's button has the focus.
    let hint = params.get("login_hint");
    let buttons: String = tenant
        .users
        .iter()
        .map(|u| {
            format!(
                "<button type=\"submit\" name=\"user\" value=\"{e}\"{focus}>{e}</button>",
                e = escape(u),
                focus = if hint == Some(u) { " autofocus" } else { "" },
            )
        })
        .collect();
    let client = request
        .client
        .client_name
        .as_deref()
        .unwrap_or(&request.client.client_id);
    let body = format!(
        "<p><b>{client}</b> asks to act for you at <code>{resource}</code> with scopes \
         <code>{scope}</code>.</p><p>This is the development issuer of tenant <b>{tenant}</b>: \
         pick a demo user to log in as.</p><form method=\"post\">{hidden}{buttons}</form>",
        client = escape(client),
        resource = escape(&request.resource),
        scope = escape(&request.scope),
        tenant = escape(&tenant_id),
    );
    let mut response = page(StatusCode::OK, "Log in to airlock (development)", &body);
    issued.set_cookie(&mut response);
    response
}

/// The login form: a code only with the page's unused one-time token, from
/// the browser that opened the page, for the request the page was made for.
async fn login(
    State(auth): State<Arc<DevAuth>>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(tenant) = auth.tenant(&tenant_id) else {
        return no_issuer();
    };
    if body.len() > MAX_FORM_BYTES {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
    }
    let params = form(&body);
    let refuse = |message| AuthFailure::Page(message).response(&tenant.issuer);
    let Some(form_token) = params.get("form_token") else {
        return refuse("this login form has no one-time token; start again from the app");
    };
    let (request, user) = {
        let mut logins = auth.logins.open();
        let pending = match logins.find(form_token, &headers, |l| l.tenant == tenant_id) {
            Ok(pending) => pending,
            Err(FormRefusal::Stale) => {
                return refuse(
                    "this login form was already used or has expired; start again from the app",
                );
            }
            Err(FormRefusal::OtherBrowser) => {
                return refuse("this login form was not opened in this browser");
            }
        };
        let request = match validate_request(&auth, &tenant_id, tenant, &params) {
            Ok(r) => r,
            Err(f) => return f.response(&tenant.issuer),
        };
        if !pending.is_for(&request) {
            return refuse("this login form belongs to another authorization request");
        }
        let Some(user) = params.get("user").filter(|u| tenant.users.contains(u)) else {
            return refuse("pick one of the demo users");
        };
        logins.take(form_token);
        (request, user)
    };
    grant_code(&auth, &tenant_id, tenant, request, user)
}

/// Issue a code for `user` and send the browser back to the client.
fn grant_code(
    auth: &DevAuth,
    tenant_id: &str,
    tenant: &TenantIssuer,
    request: AuthRequest,
    user: &str,
) -> Response {
    let code = random_token();
    if code.is_empty() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
    }
    {
        let mut codes = lock(&auth.codes);
        codes.retain(|_, c| c.expires > Instant::now());
        if codes.len() >= MAX_CODES {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many pending logins; try again shortly",
            )
                .into_response();
        }
        codes.insert(
            code.clone(),
            PendingCode {
                tenant: tenant_id.to_string(),
                client_id: request.client.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                challenge: request.challenge,
                scope: request.scope,
                resource: request.resource,
                user: user.to_string(),
                expires: Instant::now() + CODE_LIFETIME,
            },
        );
    }
    let mut out = vec![("code", code.as_str()), ("iss", tenant.issuer.as_str())];
    if let Some(state) = &request.state {
        out.push(("state", state));
    }
    redirect_with(&request.redirect_uri, &out)
}

struct Grant {
    tenant: String,
    client_id: String,
    user: String,
    scope: String,
    resource: String,
    /// The redeemed refresh token whose family the new one joins; `None`
    /// for a new grant, which starts a family.
    rotates: Option<Rotation>,
}

struct Rotation {
    family: String,
    /// The redeemed token's key.
    from: String,
}

impl DevAuth {
    /// Redeem the refresh token stored at `key`: marked used, or, when it
    /// was used before or is presented by another client, its whole family
    /// revoked.
    fn redeem_refresh(
        &self,
        key: &str,
        tenant_id: &str,
        client_id: &str,
        scope: Option<&String>,
        resource: Option<&String>,
    ) -> Result<Grant, Refused> {
        let _guard = lock(&self.refresh_lock);
        let stored = self.refresh.get::<Refresh>(key).map_err(storage_failed)?;
        let Some(mut stored) = stored.filter(|r| r.expires_at > now()) else {
            return Err(Refused::bad(
                "invalid_grant",
                "the refresh token is unknown or expired",
            ));
        };
        let legacy = stored.family.is_empty();
        if legacy {
            stored.family = key.to_string();
        }
        if stored.used || stored.tenant != tenant_id || stored.client_id != client_id {
            // Reuse means the token leaked: whoever holds its successor
            // loses it too.
            self.revoke_family(&stored.family)?;
            tracing::warn!(
                tenant = tenant_id,
                "a refresh token was reused; every token of its grant is revoked"
            );
            return Err(Refused::bad(
                "invalid_grant",
                "the refresh token was already used or belongs to another client;                  its grant is revoked",
            ));
        }
        let scope = match scope {
            None => stored.scope.clone(),
            Some(s) => {
                let granted: BTreeSet<&str> = stored.scope.split_whitespace().collect();
                if s.split_whitespace().any(|x| !granted.contains(x)) {
                    return Err(Refused::bad("invalid_scope", "a refresh cannot add scopes"));
                }
                s.split_whitespace().collect::<Vec<_>>().join(" ")
            }
        };
        if let Some(r) = resource
            && r.trim_end_matches('/') != stored.resource
        {
            return Err(Refused::bad(
                "invalid_target",
                "resource differs from the original grant",
            ));
        }
        stored.used = true;
        self.refresh.put(key, &stored).map_err(storage_failed)?;
        if legacy {
            self.families
                .put(&stored.family, &key.to_string())
                .map_err(storage_failed)?;
        }
        Ok(Grant {
            tenant: stored.tenant,
            client_id: stored.client_id,
            user: stored.user,
            scope,
            resource: stored.resource,
            rotates: Some(Rotation {
                family: stored.family,
                from: key.to_string(),
            }),
        })
    }

    /// Revoke `family`: its newest token goes, and no token joins it again.
    /// Older ones are all used already. Call with `refresh_lock` held.
    fn revoke_family(&self, family: &str) -> Result<(), Refused> {
        if let Some(newest) = self
            .families
            .take::<String>(family)
            .map_err(storage_failed)?
            && let Some(record) = self
                .refresh
                .get::<Refresh>(&newest)
                .map_err(storage_failed)?
            && !record.used
        {
            self.refresh
                .take::<Refresh>(&newest)
                .map_err(storage_failed)?;
        }
        Ok(())
    }
}

fn storage_failed(e: crate::storage::StorageError) -> Refused {
    tracing::error!(error = %e, "cannot read or write refresh tokens");
    Refused {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error: "server_error",
        description: "refresh tokens are unavailable",
    }
}

async fn token(
    State(auth): State<Arc<DevAuth>>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(tenant) = auth.tenant(&tenant_id) else {
        return no_issuer();
    };
    if body.len() > MAX_FORM_BYTES {
        return oauth_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the request is too large",
        );
    }
    let p = form(&body);
    if p.get("grant_type").map(String::as_str) == Some(TOKEN_EXCHANGE) {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        return exchange(&auth, &tenant_id, tenant, &headers, &pairs);
    }
    let bad = |error, description| oauth_error(StatusCode::BAD_REQUEST, error, description);
    let Some(client_id) = p.get("client_id") else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client_id is required (public client)",
        );
    };
    if auth.client(&tenant_id, client_id).is_none() {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client_id",
        );
    }
    let grant = match p.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(code) = p.get("code") else {
                return bad("invalid_request", "code is missing");
            };
            let pending = auth
                .codes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(code);
            let Some(pending) = pending.filter(|c| c.expires > Instant::now()) else {
                return bad("invalid_grant", "the code is unknown, used or expired");
            };
            if pending.tenant != tenant_id || &pending.client_id != client_id {
                return bad("invalid_grant", "the code was issued to another client");
            }
            if p.get("redirect_uri") != Some(&pending.redirect_uri) {
                return bad(
                    "invalid_grant",
                    "redirect_uri does not match the authorization request",
                );
            }
            let Some(verifier) = p.get("code_verifier") else {
                return bad("invalid_request", "code_verifier is missing");
            };
            if !pkce_matches(verifier, &pending.challenge) {
                return bad(
                    "invalid_grant",
                    "code_verifier does not match the code_challenge",
                );
            }
            if let Some(r) = p.get("resource")
                && r.trim_end_matches('/') != pending.resource
            {
                return bad(
                    "invalid_target",
                    "resource differs from the authorization request",
                );
            }
            Grant {
                tenant: pending.tenant,
                client_id: pending.client_id,
                user: pending.user,
                scope: pending.scope,
                resource: pending.resource,
                rotates: None,
            }
        }
        Some("refresh_token") => {
            let Some(presented) = p.get("refresh_token") else {
                return bad("invalid_request", "refresh_token is missing");
            };
            match auth.redeem_refresh(
                &hash(presented),
                &tenant_id,
                client_id,
                p.get("scope"),
                p.get("resource"),
            ) {
                Ok(grant) => grant,
                Err(refused) => return refused.response(),
            }
        }
        Some(_) => {
            return bad(
                "unsupported_grant_type",
                "only authorization_code, refresh_token and token exchange are supported",
            );
        }
        None => return bad("invalid_request", "grant_type is missing"),
    };
    issue(&auth, tenant, grant)
}

fn issue(auth: &DevAuth, tenant: &TenantIssuer, grant: Grant) -> Response {
    let access = match mint(
        &tenant.key,
        &tenant.issuer,
        &grant.user,
        &grant.resource,
        &grant.scope,
        &grant.client_id,
        ACCESS_TOKEN_LIFETIME,
    ) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot mint an access token");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "cannot mint a token",
            );
        }
    };
    let refresh = random_token();
    if refresh.is_empty() {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "no randomness",
        );
    }
    let key = hash(&refresh);
    let record = Refresh {
        tenant: grant.tenant,
        client_id: grant.client_id,
        user: grant.user,
        scope: grant.scope.clone(),
        resource: grant.resource,
        expires_at: now() + REFRESH_TOKEN_LIFETIME.as_secs(),
        family: match &grant.rotates {
            Some(r) => r.family.clone(),
            None => key.clone(),
        },
        used: false,
    };
    {
        let _guard = lock(&auth.refresh_lock);
        // A family revoked since its token was redeemed takes no successor.
        if let Some(r) = &grant.rotates {
            match auth.families.get::<String>(&r.family) {
                Ok(Some(newest)) if newest == r.from => {}
                Ok(_) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "the refresh token's grant was revoked",
                    );
                }
                Err(e) => return storage_failed(e).response(),
            }
        }
        let stored = auth
            .refresh
            .put(&key, &record)
            .and_then(|()| auth.families.put(&record.family, &key));
        if let Err(e) = stored {
            return storage_failed(e).response();
        }
    }
    let mut response = axum::Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_LIFETIME.as_secs(),
        "refresh_token": refresh,
        "scope": grant.scope,
    }))
    .into_response();
    no_store(&mut response);
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// What a request's `Authorization` header carries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Presented {
    /// No header.
    Nothing,
    /// `Bearer <token>`.
    Bearer(String),
    /// `Basic <base64(id:secret)>`, both halves form-decoded (RFC 6749 §2.3.1).
    Basic {
        /// The client id.
        id: String,
        /// The client secret.
        secret: String,
    },
    /// Anything else: another scheme, several headers, bad encoding.
    Malformed,
}

/// The credentials in `headers`.
pub(crate) fn presented_credentials(headers: &HeaderMap) -> Presented {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return if headers.contains_key(header::AUTHORIZATION) {
            Presented::Malformed
        } else {
            Presented::Nothing
        };
    };
    let Ok(value) = value.to_str() else {
        return Presented::Malformed;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Presented::Malformed;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Presented::Bearer(rest.to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Presented::Malformed;
    }
    let decoded = STANDARD
        .decode(rest)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let Some((id, secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Presented::Malformed;
    };
    match (form_decode(id), form_decode(secret)) {
        (Some(id), Some(secret)) => Presented::Basic { id, secret },
        _ => Presented::Malformed,
    }
}

/// One `application/x-www-form-urlencoded` value.
fn form_decode(s: &str) -> Option<String> {
    if s.contains(['&', '=']) {
        return None;
    }
    Some(
        url::form_urlencoded::parse(s.as_bytes())
            .next()
            .map(|(k, _)| k.into_owned())
            .unwrap_or_default(),
    )
}

/// A secret to check presented values against in constant time: only an
/// HMAC tag of it is kept, and tags are compared with `verify_slice`.
pub(crate) struct ExpectedSecret {
    tag: Vec<u8>,
}

/// The key of the tags [`ExpectedSecret`] compares; not a secret.
const SECRET_TAG_KEY: &[u8] = b"airlock dev secret comparison";

fn secret_mac(value: &str) -> Result<Hmac<Sha256>, String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET_TAG_KEY).map_err(|e| e.to_string())?;
    mac.update(value.as_bytes());
    Ok(mac)
}

impl ExpectedSecret {
    /// Expect `secret`, which may not be empty.
    pub(crate) fn new(secret: &str) -> Result<Self, String> {
        if secret.is_empty() {
            return Err("a secret may not be empty".into());
        }
        Ok(ExpectedSecret {
            tag: secret_mac(secret)?.finalize().into_bytes().to_vec(),
        })
    }

    /// Whether `presented` is the secret (constant time in its value).
    pub(crate) fn matches(&self, presented: &str) -> bool {
        secret_mac(presented).is_ok_and(|mac| mac.verify_slice(&self.tag).is_ok())
    }
}

/// The secret in `path`, created (32 random bytes, base64url, readable by
/// the owner only) when missing.
pub(crate) fn load_or_create_secret(path: &FsPath) -> Result<String, String> {
    let read = |path: &FsPath| -> Result<Option<String>, String> {
        match std::fs::read_to_string(path) {
            Ok(s) if s.trim().is_empty() => Err(format!("{} is empty", path.display())),
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    };
    if let Some(secret) = read(path)? {
        return Ok(secret);
    }
    let secret = random_token();
    if secret.is_empty() {
        return Err("no randomness for a secret".into());
    }
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    match write_new_private(path, secret.as_bytes()) {
        Ok(()) => Ok(secret),
        // Another `airlock dev` on the same data created it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?.ok_or_else(|| format!("{} vanished", path.display()))
        }
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &FsPath) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &FsPath) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

#[cfg(unix)]
fn write_new_private(path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_new_private(path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)
}

/// `act` (RFC 8693 §4.1): who acts for the subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ActClaim {
    /// The acting party.
    pub sub: String,
}

/// The claims of a development token that are read back.
#[derive(Debug, Deserialize)]
pub(crate) struct DevClaims {
    /// The issuer.
    pub iss: String,
    /// The subject.
    pub sub: String,
    /// Granted scopes, space-separated.
    #[serde(default)]
    pub scope: String,
    /// Who acts for the subject, on exchanged tokens.
    pub act: Option<ActClaim>,
}

/// The claims of an exchanged token.
#[derive(Serialize)]
struct ExchangedClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    scope: &'a str,
    act: ActClaim,
    client_id: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
}

#[derive(Deserialize)]
struct UnverifiedIssuer {
    iss: String,
}

impl DevAuth {
    /// Verify `token` as one a development issuer signed for `audience`:
    /// EdDSA signature by that tenant's key, `iss`, `aud`, `exp`, `nbf`.
    /// With `tenant`, only that tenant's issuer is accepted. Returns the
    /// tenant and the claims, or the check that failed.
    pub(crate) fn verify(
        &self,
        token: &str,
        audience: &str,
        tenant: Option<&str>,
    ) -> Result<(&str, DevClaims), &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "token")?;
        if header.alg != Algorithm::EdDSA {
            return Err("alg");
        }
        let iss = jsonwebtoken::dangerous::insecure_decode_claims::<UnverifiedIssuer>(token)
            .map_err(|_| "iss")?
            .iss;
        let (id, issuer) = self
            .tenants
            .iter()
            .find(|(_, t)| t.issuer == iss)
            .ok_or("iss")?;
        if tenant.is_some_and(|t| t != id.as_str()) {
            return Err("iss");
        }
        let key = self.verifying.get(id).ok_or("iss")?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&issuer.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<DevClaims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => "signature",
                ErrorKind::ExpiredSignature => "exp",
                ErrorKind::ImmatureSignature => "nbf",
                ErrorKind::InvalidAudience => "aud",
                ErrorKind::InvalidIssuer => "iss",
                _ => "token",
            }
        })?;
        Ok((id.as_str(), data.claims))
    }
}

impl Refused {
    fn response(self) -> Response {
        self.respond("Basic realm=\"airlock dev\"", no_store)
    }
}

/// The one non-empty value of `name` in `pairs`; refused when repeated.
fn single<'a>(pairs: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, Refused> {
    let mut values = pairs
        .iter()
        .filter(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(Refused::bad("invalid_request", "a parameter is repeated"));
    }
    Ok(first)
}

/// RFC 8693 token exchange, for the host's client only.
fn exchange(
    auth: &DevAuth,
    tenant_id: &str,
    tenant: &TenantIssuer,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Response {
    try_exchange(auth, tenant_id, tenant, headers, pairs).unwrap_or_else(Refused::response)
}

fn try_exchange(
    auth: &DevAuth,
    tenant_id: &str,
    tenant: &TenantIssuer,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<Response, Refused> {
    let bad = |error, description| Err(Refused::bad(error, description));
    match presented_credentials(headers) {
        Presented::Basic { id, secret }
            if id == HOST_CLIENT_ID && auth.host_secret.matches(&secret) => {}
        Presented::Basic { .. } => return Err(Refused::client("client authentication failed")),
        _ => {
            return Err(Refused::client(
                "token exchange is for the host's confidential client, authenticated with HTTP Basic",
            ));
        }
    }
    if pairs.iter().any(|(k, _)| k == "client_secret") {
        return bad("invalid_request", "use one client authentication method");
    }
    if single(pairs, "client_id")?.is_some_and(|id| id != HOST_CLIENT_ID) {
        return Err(Refused::client(
            "client_id differs from the authenticated client",
        ));
    }
    let Some(subject) = single(pairs, "subject_token")? else {
        return bad("invalid_request", "subject_token is missing");
    };
    if single(pairs, "subject_token_type")? != Some(ACCESS_TOKEN_TYPE) {
        return bad(
            "invalid_request",
            "subject_token_type must be urn:ietf:params:oauth:token-type:access_token",
        );
    }
    if single(pairs, "requested_token_type")?.is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return bad(
            "invalid_request",
            "only access tokens are issued (requested_token_type)",
        );
    }
    if single(pairs, "actor_token")?.is_some() {
        return bad(
            "invalid_request",
            "actor_token is not supported: the authenticated client is the actor",
        );
    }
    let scope = single(pairs, "scope")?;
    // `audience` and `resource` both name the target; they must agree.
    let targets: BTreeSet<&str> = pairs
        .iter()
        .filter(|(k, v)| (k == "audience" || k == "resource") && !v.is_empty())
        .map(|(_, v)| v.trim_end_matches('/'))
        .collect();
    let target = match targets.into_iter().collect::<Vec<_>>().as_slice() {
        [] => return bad("invalid_request", "name the API with audience or resource"),
        [one] => match tenant.exchange.iter().find(|t| t.audience == *one) {
            Some(target) => target,
            None => {
                return bad(
                    "invalid_target",
                    "this issuer does not exchange tokens for that audience",
                );
            }
        },
        _ => return bad("invalid_target", "ask for one audience per request"),
    };
    let Ok((_, claims)) = auth.verify(subject, &tenant.resource, Some(tenant_id)) else {
        return bad(
            "invalid_grant",
            "subject_token is not a valid access token of this tenant's MCP endpoint",
        );
    };
    let held: BTreeSet<&str> = claims
        .scope
        .split_whitespace()
        .chain(target.scopes.iter().map(String::as_str))
        .collect();
    let requested: BTreeSet<&str> = match scope {
        Some(s) => s.split_whitespace().collect(),
        None => target.scopes.iter().map(String::as_str).collect(),
    };
    if !requested.is_subset(&held) {
        return bad(
            "invalid_scope",
            "ask for the subject token's scopes or the API's own",
        );
    }
    let scope = requested.into_iter().collect::<Vec<_>>().join(" ");
    let now = now();
    let token = tenant.key.sign(&ExchangedClaims {
        iss: &tenant.issuer,
        sub: &claims.sub,
        aud: &target.audience,
        scope: &scope,
        act: ActClaim {
            sub: HOST_CLIENT_ID.to_string(),
        },
        client_id: HOST_CLIENT_ID,
        iat: now,
        nbf: now,
        exp: now + EXCHANGED_TOKEN_LIFETIME.as_secs(),
        jti: crate::envelope::random_id(),
    });
    let token = match token {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot mint an exchanged token");
            return Err(Refused {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                error: "server_error",
                description: "cannot mint a token",
            });
        }
    };
    let mut response = axum::Json(json!({
        "access_token": token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": EXCHANGED_TOKEN_LIFETIME.as_secs(),
        "scope": scope,
    }))
    .into_response();
    no_store(&mut response);
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests
mod tests {
    use super::*;
    use crate::dev::keys::AccessClaims;

    const URL: &str = "http://127.0.0.1:8080";
    const SECRET: &str = "host-secret";

    struct Fixture {
        auth: Arc<DevAuth>,
        _dir: tempfile::TempDir,
    }

    fn tickets() -> String {
        format!("{URL}/demo/tickets")
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut tenants = BTreeMap::new();
        for id in ["acme", "globex"] {
            tenants.insert(
                id.to_string(),
                TenantIssuer {
                    issuer: format!("{URL}/dev/{id}"),
                    resource: format!("{URL}/mcp/{id}"),
                    users: vec!["alice".into()],
                    scopes: vec!["mcp".into()],
                    key: IssuerKey::load_or_create(&dir.path().join("keys"), id).unwrap(),
                    exchange: vec![ExchangeTarget {
                        audience: tickets(),
                        scopes: vec!["tickets".into()],
                    }],
                    connect_redirect_uri: format!("{URL}/connect/{id}/login"),
                },
            );
        }
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let auth = Arc::new(DevAuth::new(tenants, SECRET, &storage).unwrap());
        Fixture { auth, _dir: dir }
    }

    impl Fixture {
        /// A user token of `tenant` for `aud`, alive for `lifetime_s` (negative: expired).
        fn token(&self, tenant: &str, aud: &str, lifetime_s: i64) -> String {
            let t = &self.auth.tenants[tenant];
            let now = now();
            t.key
                .sign(&AccessClaims {
                    iss: &t.issuer,
                    sub: "alice",
                    aud,
                    scope: "mcp",
                    client_id: "inspector",
                    iat: now - 600,
                    nbf: now - 600,
                    exp: now.saturating_add_signed(lifetime_s),
                    jti: "j".into(),
                })
                .unwrap()
        }

        fn acme_token(&self) -> String {
            self.token("acme", &format!("{URL}/mcp/acme"), 3600)
        }

        async fn exchange(
            &self,
            authorization: Option<&str>,
            form: &[(&str, &str)],
        ) -> (StatusCode, HeaderMap, serde_json::Value) {
            let mut headers = HeaderMap::new();
            if let Some(value) = authorization {
                headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            }
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            let response = token(
                State(self.auth.clone()),
                Path("acme".to_string()),
                headers,
                Bytes::from(body),
            )
            .await;
            let status = response.status();
            let headers = response.headers().clone();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, headers, serde_json::from_slice(&body).unwrap())
        }
    }

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    fn form<'a>(subject: &'a str, audience: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("audience", audience),
        ]
    }

    #[tokio::test]
    async fn the_host_client_exchanges_a_user_token_for_an_api_token() {
        let f = fixture();
        let subject = f.acme_token();
        let aud = tickets();
        let mut request = form(&subject, &aud);
        request.push(("scope", "tickets mcp"));
        let (status, headers, body) = f
            .exchange(Some(&basic(HOST_CLIENT_ID, SECRET)), &request)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(body["issued_token_type"], ACCESS_TOKEN_TYPE);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 300);
        let token = body["access_token"].as_str().unwrap();
        let (tenant, claims) = f.auth.verify(token, &aud, Some("acme")).unwrap();
        assert_eq!(tenant, "acme");
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.iss, format!("{URL}/dev/acme"));
        assert_eq!(claims.scope, "mcp tickets");
        assert_eq!(claims.act.unwrap().sub, HOST_CLIENT_ID);
        let raw: serde_json::Value =
            jsonwebtoken::dangerous::insecure_decode_claims(token).unwrap();
        assert_eq!(raw["client_id"], HOST_CLIENT_ID);
        assert_eq!(
            raw["exp"].as_u64().unwrap() - raw["iat"].as_u64().unwrap(),
            300
        );
        assert!(raw["jti"].as_str().is_some_and(|j| !j.is_empty()));
        // The exchanged token is not a token for the MCP endpoint.
        assert_eq!(
            f.auth.verify(token, &format!("{URL}/mcp/acme"), None).err(),
            Some("aud")
        );

        // Without `scope`, the API's own scopes; `resource` works like `audience`.
        let mut request = form(&subject, "");
        request.push(("resource", &aud));
        let (status, _, body) = f
            .exchange(Some(&basic(HOST_CLIENT_ID, SECRET)), &request)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["scope"], "tickets");
    }

    #[tokio::test]
    async fn token_exchange_refuses_what_it_must() {
        let f = fixture();
        let acme = f.acme_token();
        let globex = f.token("globex", &format!("{URL}/mcp/globex"), 3600);
        let expired = f.token("acme", &format!("{URL}/mcp/acme"), -120);
        let for_the_api = f.token("acme", &tickets(), 3600);
        let aud = tickets();
        let host = basic(HOST_CLIENT_ID, SECRET);
        let ok = form(&acme, &aud);
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut f = ok.clone();
            f.extend_from_slice(extra);
            f
        };
        let without = |name: &str| {
            let mut f = ok.clone();
            f.retain(|(k, _)| *k != name);
            f
        };
        let wrong_secret = basic(HOST_CLIENT_ID, "guess");
        let other_client = basic("someone", SECRET);
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Vec<(&'a str, &'a str)>,
            u16,
            &'a str,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "no client authentication",
                None,
                ok.clone(),
                401,
                "invalid_client",
            ),
            (
                "a wrong secret",
                Some(&wrong_secret),
                ok.clone(),
                401,
                "invalid_client",
            ),
            (
                "another client",
                Some(&other_client),
                ok.clone(),
                401,
                "invalid_client",
            ),
            (
                "a bearer token as client",
                Some("Bearer abc"),
                ok.clone(),
                401,
                "invalid_client",
            ),
            (
                "a second client_id",
                Some(&host),
                with(&[("client_id", "someone")]),
                401,
                "invalid_client",
            ),
            (
                "a second authentication method",
                Some(&host),
                with(&[("client_secret", SECRET)]),
                400,
                "invalid_request",
            ),
            (
                "no subject token",
                Some(&host),
                without("subject_token"),
                400,
                "invalid_request",
            ),
            (
                "no subject token type",
                Some(&host),
                without("subject_token_type"),
                400,
                "invalid_request",
            ),
            (
                "a refresh token requested",
                Some(&host),
                {
                    let mut f = without("requested_token_type");
                    f.push((
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:refresh_token",
                    ));
                    f
                },
                400,
                "invalid_request",
            ),
            (
                "an actor token",
                Some(&host),
                with(&[
                    ("actor_token", "x"),
                    ("actor_token_type", ACCESS_TOKEN_TYPE),
                ]),
                400,
                "invalid_request",
            ),
            (
                "no audience",
                Some(&host),
                without("audience"),
                400,
                "invalid_request",
            ),
            (
                "an unknown audience",
                Some(&host),
                {
                    let mut f = without("audience");
                    f.push(("audience", "https://api.example"));
                    f
                },
                400,
                "invalid_target",
            ),
            (
                "the MCP endpoint as audience",
                Some(&host),
                {
                    let mut f = without("audience");
                    f.push(("audience", "http://127.0.0.1:8080/mcp/acme"));
                    f
                },
                400,
                "invalid_target",
            ),
            (
                "two audiences",
                Some(&host),
                with(&[("resource", "https://api.example")]),
                400,
                "invalid_target",
            ),
            (
                "another tenant's token",
                Some(&host),
                form(&globex, &aud),
                400,
                "invalid_grant",
            ),
            (
                "an expired token",
                Some(&host),
                form(&expired, &aud),
                400,
                "invalid_grant",
            ),
            (
                "a token not for the MCP endpoint",
                Some(&host),
                form(&for_the_api, &aud),
                400,
                "invalid_grant",
            ),
            (
                "not a token",
                Some(&host),
                form("a.b.c", &aud),
                400,
                "invalid_grant",
            ),
            (
                "a scope the user was never granted",
                Some(&host),
                with(&[("scope", "tickets admin")]),
                400,
                "invalid_scope",
            ),
            (
                "a repeated parameter",
                Some(&host),
                with(&[("subject_token", "again")]),
                400,
                "invalid_request",
            ),
        ];
        for (what, authorization, request, status, error) in cases {
            let (got, headers, body) = f.exchange(authorization, &request).await;
            assert_eq!(
                (got.as_u16(), body["error"].as_str()),
                (status, Some(error)),
                "{what}: {body}"
            );
            assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{what}");
            if status == 401 {
                assert!(headers.contains_key(header::WWW_AUTHENTICATE), "{what}");
            }
        }
    }

    /// Open the login page for `query` and submit its form as `user`: the
    /// page's answer when it is not the login page, else the form's.
    async fn log_in(auth: Arc<DevAuth>, query: String, user: &str) -> Response {
        let page = authorize(
            State(auth.clone()),
            Path("acme".to_string()),
            HeaderMap::new(),
            RawQuery(Some(query.clone())),
        )
        .await;
        if page.status() != StatusCode::OK {
            return page;
        }
        let cookie = page.headers()[header::SET_COOKIE].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        let html = axum::body::to_bytes(page.into_body(), usize::MAX)
            .await
            .unwrap();
        let html = String::from_utf8(html.to_vec()).unwrap();
        let token = html.split("name=\"form_token\" value=\"").nth(1).unwrap();
        let token = token.split('"').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        let body = format!("{query}&user={user}&form_token={token}");
        login(
            State(auth),
            Path("acme".to_string()),
            headers,
            Bytes::from(body),
        )
        .await
    }

    #[test]
    fn registrations_are_limited_per_address_and_in_total() {
        let mut limit = Registrations {
            per_address: 2,
            total: 3,
            recent: VecDeque::new(),
        };
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let a = Some(IpAddr::from([127, 0, 0, 1]));
        let b = Some(IpAddr::from([127, 0, 0, 2]));
        assert_eq!(limit.admit(a, at(0)), Ok(()));
        assert_eq!(limit.admit(a, at(10)), Ok(()));
        // a's third within the minute waits until its first is a minute old.
        assert_eq!(limit.admit(a, at(15)), Err(45));
        assert_eq!(limit.admit(b, at(20)), Ok(()));
        // Three in total: nobody else either.
        assert_eq!(limit.admit(None, at(30)), Err(30));
        assert_eq!(limit.admit(a, at(60)), Ok(()));
        assert_eq!(limit.admit(None, at(70)), Ok(()));
    }

    #[tokio::test]
    async fn the_connect_client_is_preregistered_public_and_pkce_bound() {
        let f = fixture();
        let redirect = format!("{URL}/connect/acme/login");
        let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789";
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let authorize = |redirect: &str, pkce: bool| {
            let mut q = vec![
                ("response_type", "code"),
                ("client_id", CONNECT_CLIENT_ID),
                ("redirect_uri", redirect),
                ("state", "st"),
            ];
            if pkce {
                q.extend([
                    ("code_challenge", challenge.as_str()),
                    ("code_challenge_method", "S256"),
                ]);
            }
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(q)
                .finish();
            log_in(f.auth.clone(), query, "alice")
        };
        let location = |r: &Response| {
            url::Url::parse(r.headers()[header::LOCATION].to_str().unwrap()).unwrap()
        };
        // Only its own redirect URI, at its own tenant.
        let other = authorize(&format!("{URL}/connect/globex/login"), true).await;
        assert_eq!(other.status(), StatusCode::BAD_REQUEST);
        assert!(!other.headers().contains_key(header::LOCATION));
        // PKCE is required as for every client.
        let no_pkce = location(&authorize(&redirect, false).await);
        assert!(no_pkce.query().unwrap().contains("error=invalid_request"));
        let to = location(&authorize(&redirect, true).await);
        assert!(to.as_str().starts_with(&redirect), "{to}");
        let code = to
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();
        // A public client: no secret, the verifier proves it.
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("grant_type", "authorization_code"),
                ("client_id", CONNECT_CLIENT_ID),
                ("code", &code),
                ("redirect_uri", &redirect),
                ("code_verifier", verifier),
            ])
            .finish();
        let response = token(
            State(f.auth.clone()),
            Path("acme".to_string()),
            HeaderMap::new(),
            Bytes::from(body),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let tokens: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let access = tokens["access_token"].as_str().unwrap();
        let (tenant, claims) = f
            .auth
            .verify(access, &format!("{URL}/mcp/acme"), Some("acme"))
            .unwrap();
        assert_eq!((tenant, claims.sub.as_str()), ("acme", "alice"));
        // Unknown at a tenant that does not exist.
        assert!(f.auth.client("initech", CONNECT_CLIENT_ID).is_none());
    }

    #[tokio::test]
    async fn metadata_advertises_token_exchange_and_basic_client_auth() {
        let f = fixture();
        let response = metadata(State(f.auth.clone()), Path("acme".into())).await;
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let meta: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let grants = meta["grant_types_supported"].as_array().unwrap();
        assert!(grants.iter().any(|g| g == TOKEN_EXCHANGE), "{meta}");
        let methods = meta["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap();
        assert!(methods.iter().any(|m| m == "client_secret_basic"), "{meta}");
    }

    #[test]
    fn authorization_headers_are_read_strictly() {
        let read = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            }
            presented_credentials(&headers)
        };
        assert_eq!(read(&[]), Presented::Nothing);
        assert_eq!(read(&["Bearer abc"]), Presented::Bearer("abc".into()));
        assert_eq!(read(&["bearer abc"]), Presented::Bearer("abc".into()));
        // RFC 6749 §2.3.1: both halves are form-encoded before base64.
        assert_eq!(
            read(&[&format!("Basic {}", STANDARD.encode("a%3Ab:s+e%25t"))]),
            Presented::Basic {
                id: "a:b".into(),
                secret: "s e%t".into()
            }
        );
        for bad in [
            &["Bearer"][..],
            &["Bearer a b"],
            &["Basic !!!"],
            &[&format!("Basic {}", STANDARD.encode("no-colon"))],
            &["Digest abc"],
            &["Bearer a", "Bearer b"],
        ] {
            assert_eq!(read(bad), Presented::Malformed, "{bad:?}");
        }
    }

    #[test]
    fn secrets_are_created_once_owner_only_and_compared_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev").join("s.secret");
        let first = load_or_create_secret(&path).unwrap();
        assert_eq!(first.len(), 43);
        assert_eq!(load_or_create_secret(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let expected = ExpectedSecret::new(&first).unwrap();
        assert!(expected.matches(&first));
        assert!(!expected.matches(&first[..42]));
        assert!(!expected.matches(&format!("{first}x")));
        assert!(!expected.matches(""));
        assert!(ExpectedSecret::new("").is_err());
    }
}
