//! The development OAuth 2.1 authorization server, one issuer per demo tenant
//! at `{public_url}/dev/{tenant}`: RFC 8414 metadata, dynamic client
//! registration (RFC 7591), authorization code with PKCE S256 and a login page
//! that picks a demo user, the RFC 8707 `resource` parameter, rotating refresh
//! tokens, and the JWKS. Mounted only by `airlock dev`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

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
    clients: Tree,
    refresh: Tree,
    codes: Mutex<HashMap<String, PendingCode>>,
}

impl DevAuth {
    pub(crate) fn new(
        tenants: BTreeMap<String, TenantIssuer>,
        storage: &Storage,
    ) -> Result<Self, String> {
        Ok(DevAuth {
            tenants,
            clients: storage.tree("dev.clients").map_err(|e| e.to_string())?,
            refresh: storage.tree("dev.refresh").map_err(|e| e.to_string())?,
            codes: Mutex::new(HashMap::new()),
        })
    }

    fn tenant(&self, id: &str) -> Option<&TenantIssuer> {
        self.tenants.get(id)
    }

    fn client(&self, tenant: &str, client_id: &str) -> Option<Client> {
        self.clients
            .get::<Client>(&format!("{tenant}/{client_id}"))
            .ok()
            .flatten()
    }
}

/// The routes, all under `/dev/{tenant}` or the matching `/.well-known/…/dev/{tenant}`.
pub(crate) fn router(auth: Arc<DevAuth>) -> Router {
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
        .route("/dev/{tenant}/authorize", get(authorize).post(login))
        .route("/dev/{tenant}/token", post(token))
        .with_state(auth)
        .layer(crate::edge::public_cors())
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
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["none"],
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
    body: Bytes,
) -> Response {
    if auth.tenant(&tenant).is_none() {
        return no_issuer();
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
            AuthFailure::Page(message) => (
                StatusCode::BAD_REQUEST,
                Html(page(
                    "Authorization failed",
                    &format!("<p>{}</p>", escape(message)),
                )),
            )
                .into_response(),
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:32em;margin:4em auto}}\
         button{{font-size:1.1em;margin:.3em;padding:.4em 1.2em}}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    )
}

async fn authorize(
    State(auth): State<Arc<DevAuth>>,
    Path(tenant_id): Path<String>,
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
    // A script (or a test harness) may name the demo user up front.
    if let Some(user) = params
        .get("login_hint")
        .filter(|u| tenant.users.contains(u))
    {
        return grant_code(&auth, &tenant_id, tenant, request, user);
    }
    let hidden: String = params
        .iter()
        .filter(|(k, _)| k.as_str() != "user")
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let buttons: String = tenant
        .users
        .iter()
        .map(|u| {
            format!(
                "<button type=\"submit\" name=\"user\" value=\"{u}\">{u}</button>",
                u = escape(u)
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
    let mut response = Html(page("Log in to airlock (development)", &body)).into_response();
    no_store(&mut response);
    response
}

async fn login(
    State(auth): State<Arc<DevAuth>>,
    Path(tenant_id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(tenant) = auth.tenant(&tenant_id) else {
        return no_issuer();
    };
    if body.len() > MAX_FORM_BYTES {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
    }
    let params = form(&body);
    let request = match validate_request(&auth, &tenant_id, tenant, &params) {
        Ok(r) => r,
        Err(f) => return f.response(&tenant.issuer),
    };
    let Some(user) = params.get("user").filter(|u| tenant.users.contains(u)) else {
        return AuthFailure::Page("pick one of the demo users").response(&tenant.issuer);
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
        let mut codes = auth.codes.lock().unwrap_or_else(PoisonError::into_inner);
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

fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    well_formed && URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge
}

struct Grant {
    tenant: String,
    client_id: String,
    user: String,
    scope: String,
    resource: String,
}

async fn token(
    State(auth): State<Arc<DevAuth>>,
    Path(tenant_id): Path<String>,
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
            }
        }
        Some("refresh_token") => {
            let Some(presented) = p.get("refresh_token") else {
                return bad("invalid_request", "refresh_token is missing");
            };
            let key = hex::encode(Sha256::digest(presented.as_bytes()));
            let stored = match auth.refresh.take::<Refresh>(&key) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read refresh tokens");
                    return oauth_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        "refresh tokens are unavailable",
                    );
                }
            };
            let Some(stored) = stored.filter(|r| r.expires_at > now()) else {
                return bad(
                    "invalid_grant",
                    "the refresh token is unknown, used or expired",
                );
            };
            if stored.tenant != tenant_id || &stored.client_id != client_id {
                return bad(
                    "invalid_grant",
                    "the refresh token belongs to another client",
                );
            }
            let scope = match p.get("scope") {
                None => stored.scope.clone(),
                Some(s) => {
                    let granted: BTreeSet<&str> = stored.scope.split_whitespace().collect();
                    if s.split_whitespace().any(|x| !granted.contains(x)) {
                        return bad("invalid_scope", "a refresh cannot add scopes");
                    }
                    s.split_whitespace().collect::<Vec<_>>().join(" ")
                }
            };
            if let Some(r) = p.get("resource")
                && r.trim_end_matches('/') != stored.resource
            {
                return bad("invalid_target", "resource differs from the original grant");
            }
            Grant {
                tenant: stored.tenant,
                client_id: stored.client_id,
                user: stored.user,
                scope,
                resource: stored.resource,
            }
        }
        Some(_) => {
            return bad(
                "unsupported_grant_type",
                "only authorization_code and refresh_token are supported",
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
    let record = Refresh {
        tenant: grant.tenant,
        client_id: grant.client_id,
        user: grant.user,
        scope: grant.scope.clone(),
        resource: grant.resource,
        expires_at: now() + REFRESH_TOKEN_LIFETIME.as_secs(),
    };
    let key = hex::encode(Sha256::digest(refresh.as_bytes()));
    if refresh.is_empty() || auth.refresh.put(&key, &record).is_err() {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "cannot store the refresh token",
        );
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
