//! The HTTP edge: the axum router, Origin checks, bearer-token validation,
//! Protected Resource Metadata, and legacy-session binding. The only module
//! that reads `Authorization`; everything behind it receives a [`Principal`].

mod auth;
#[cfg(test)]
mod fuzz_tests;
mod jwks;
mod principal;
mod ratelimit;
mod sessions;
mod trace;
mod verified;
mod warnings;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::cors::{self, AllowOrigin, CorsLayer};

pub use auth::AuthError;
pub use principal::{BearerToken, HostSession, Principal};
pub use trace::TraceContext;

use crate::config::Config;
use crate::metrics::Metrics;
use auth::Challenge;
use jwks::KeyCache;
use sessions::SessionBindings;
pub use sessions::SessionLimits;

/// Ends legacy sessions in the protocol layer (implemented by `mcp`): the
/// edge ends the sessions its caps push out.
pub trait SessionControl: Send + Sync + 'static {
    /// End session `id` (a no-op when it already ended).
    fn close(&self, id: String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

/// The header carrying a legacy (2025-11-25) MCP session id.
const SESSION_HEADER: &str = "mcp-session-id";

/// What the edge needs for every request.
pub struct Edge {
    config: Arc<Config>,
    keys: KeyCache,
    sessions: SessionBindings,
    warnings: warnings::Warnings,
    verified: verified::VerifiedTokens,
    metrics: Arc<Metrics>,
    /// Rate limiters of the tenants that configure limits.
    limiters: BTreeMap<String, ratelimit::TenantLimiter>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge").finish_non_exhaustive()
    }
}

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the HTTP edge: {0}")]
pub struct EdgeError(String);

impl Edge {
    /// The edge for `config`, counting into a registry of its own.
    pub fn new(config: Arc<Config>) -> Result<Self, EdgeError> {
        Self::with_metrics(config, Arc::new(Metrics::new()))
    }

    /// The edge for `config`, counting into `metrics`.
    pub fn with_metrics(config: Arc<Config>, metrics: Arc<Metrics>) -> Result<Self, EdgeError> {
        let issuers = config
            .tenants
            .values()
            .flat_map(|t| t.issuers.iter().cloned())
            .collect::<Vec<_>>();
        let limiters = config
            .tenants
            .iter()
            .filter_map(|(id, t)| {
                ratelimit::TenantLimiter::new(t.rate_limit).map(|l| (id.clone(), l))
            })
            .collect();
        Ok(Edge {
            keys: KeyCache::new(issuers, metrics.clone()).map_err(EdgeError)?,
            sessions: SessionBindings::new(config.server.sessions),
            warnings: warnings::Warnings::default(),
            verified: verified::VerifiedTokens::default(),
            metrics,
            limiters,
            config,
        })
    }
}

impl Edge {
    /// Validate `token` exactly as a request to `tenant`'s MCP endpoint would
    /// be (issuer, signature, audience = the endpoint, scopes): for pages
    /// that sign a browser user in as the same user the endpoint knows.
    pub async fn authenticate(&self, tenant: &str, token: String) -> Result<Principal, AuthError> {
        let config = self
            .config
            .tenants
            .get(tenant)
            .ok_or(AuthError::InvalidToken("no such tenant"))?;
        auth::validate(
            token,
            tenant,
            config,
            &self.config.resource_uri(tenant),
            &self.keys,
        )
        .await
    }
}

/// What the guard needs for one tenant, derived once when the router is built.
struct TenantEdge {
    id: String,
    /// The endpoint's canonical URI: the audience its tokens must carry.
    resource: String,
    /// Its Protected Resource Metadata URL, for challenges.
    metadata: String,
    /// Its required scopes, space separated, for challenges.
    scope: String,
    /// Ends its legacy sessions.
    sessions: Arc<dyn SessionControl>,
}

impl TenantEdge {
    fn new(config: &Config, id: &str, sessions: Arc<dyn SessionControl>) -> Self {
        let scope = config
            .tenants
            .get(id)
            .map(|t| t.scopes.join(" "))
            .unwrap_or_default();
        TenantEdge {
            id: id.to_string(),
            resource: config.resource_uri(id),
            metadata: format!(
                "{}/.well-known/oauth-protected-resource/mcp/{id}",
                config.public_url
            ),
            scope,
            sessions,
        }
    }
}

/// Build the router: `/mcp/{tenant}` for each tenant, served by `mcp_services`
/// (one per tenant, with the control that ends its sessions), behind
/// authentication; and the metadata documents.
pub fn router(
    edge: Arc<Edge>,
    mcp_services: BTreeMap<String, (Router, Arc<dyn SessionControl>)>,
) -> Router {
    let mut app = Router::new();
    let cors = mcp_cors(&edge.config);
    for (tenant, (service, sessions)) in mcp_services {
        let tenant_edge = Arc::new(TenantEdge::new(&edge.config, &tenant, sessions));
        let guarded = service
            .layer(middleware::from_fn_with_state(
                (edge.clone(), tenant_edge),
                guard,
            ))
            .layer(cors.clone());
        app = app.nest_service(&format!("/mcp/{tenant}"), guarded);
    }
    app.route(
        "/.well-known/oauth-protected-resource/mcp/{tenant}",
        get(protected_resource_metadata).layer(public_cors()),
    )
    .with_state(edge)
}

/// The JSON-RPC id of `body` if it is an `initialize` request.
fn initialize_id(body: &[u8]) -> Option<serde_json::Value> {
    let message: serde_json::Value = serde_json::from_slice(body).ok()?;
    (message.get("method")?.as_str()? == "initialize").then(|| {
        message
            .get("id")
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    })
}

/// 503 with `Retry-After` and a JSON-RPC error answering request `id`.
fn too_many_sessions(id: serde_json::Value) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32000,
            "message": "the server has too many open sessions; try again later",
        },
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::RETRY_AFTER, "30"),
            (header::CONTENT_TYPE, "application/json"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// 429 with `Retry-After` (whole seconds, rounded up) and a JSON-RPC error.
fn rate_limited(limited: ratelimit::Limited) -> Response {
    let retry_after_s = limited.retry_after_s();
    let whose = match limited.scope {
        ratelimit::Scope::User => "your",
        ratelimit::Scope::Tenant => "this tenant's",
    };
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": -32000,
            "message": format!("{whose} request rate limit is reached; retry after {retry_after_s} s"),
            "data": { "retry_after_s": retry_after_s, "limit": limited.scope.label() },
        },
    });
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    response
}

/// CORS for public documents: any origin may read them, without credentials.
pub fn public_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(cors::Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(cors::Any)
}

/// CORS for the MCP endpoints: only the configured browser origins, with the
/// headers MCP clients send and read.
fn mcp_cors(config: &Config) -> CorsLayer {
    let mut origins: Vec<HeaderValue> = config
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    origins.extend(HeaderValue::from_str(&config.public_url).ok());
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers(cors::Any)
        .expose_headers([
            HeaderName::from_static(SESSION_HEADER),
            HeaderName::from_static("mcp-protocol-version"),
            HeaderName::from_static(trace::TRACEPARENT),
            header::WWW_AUTHENTICATE,
            header::RETRY_AFTER,
        ])
}

/// RFC 9728 Protected Resource Metadata for one tenant's endpoint.
async fn protected_resource_metadata(
    State(edge): State<Arc<Edge>>,
    Path(tenant): Path<String>,
) -> Response {
    let Some(config) = edge.config.tenants.get(&tenant) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    axum::Json(serde_json::json!({
        "resource": edge.config.resource_uri(&tenant),
        "authorization_servers": config.issuers.iter().map(|i| i.issuer.clone()).collect::<Vec<_>>(),
        "scopes_supported": scopes_supported(config),
        "bearer_methods_supported": ["header"],
        "resource_name": format!("airlock MCP endpoint for tenant {tenant}"),
    }))
    .into_response()
}

fn scopes_supported(tenant: &crate::config::TenantConfig) -> Vec<String> {
    let mut scopes: Vec<String> = tenant.scopes.clone();
    for install in &tenant.install {
        scopes.extend(install.scopes.iter().cloned());
        scopes.extend(install.tool_scopes.values().flatten().cloned());
    }
    scopes.sort();
    scopes.dedup();
    scopes
}

fn origin_allowed(config: &Config, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        // Not a browser request: nothing to check.
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    origin == config.public_url
        || config
            .allowed_origins
            .iter()
            .any(|allowed| origin_matches(allowed, origin))
}

/// Whether `origin` is `allowed`: equal, or, for an entry ending in `:*`,
/// the same scheme and host with any port.
fn origin_matches(allowed: &str, origin: &str) -> bool {
    match allowed.strip_suffix(":*") {
        Some(prefix) => origin
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|port| {
                !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
            }),
        None => allowed == origin,
    }
}

/// Authenticate, bind sessions, and hand the request on with its [`Principal`].
async fn guard(
    State((edge, tenant)): State<(Arc<Edge>, Arc<TenantEdge>)>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(tenant_config) = edge.config.tenants.get(&tenant.id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !origin_allowed(&edge.config, request.headers()) {
        if let Some(suppressed) = edge.warnings.admit(&format!("origin|{}", tenant.id)) {
            tracing::warn!(tenant = %tenant.id, suppressed, "a browser origin that is not allowed was refused");
        }
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let challenge = Challenge {
        resource_metadata: &tenant.metadata,
        scope: &tenant.scope,
    };
    let token = match auth::bearer(request.headers(), request.uri().query()) {
        Ok(token) => token,
        Err(e) => {
            edge.metrics.token_failure(&tenant.id, e.reason());
            return e.response(&challenge);
        }
    };
    // A token verified moments ago is not verified again while the key that
    // signed it is still the issuer's (see `verified`).
    let mut cached = None;
    if let Some((p, kid)) = edge.verified.get(&tenant.id, &token)
        && let Some(keys) = edge.keys.issuer(p.issuer())
        && keys.key(kid.as_deref()).await.is_ok()
    {
        cached = Some(p);
    }
    let validated = match cached {
        Some(p) => Ok(p),
        None => {
            let exp = auth::unverified_exp(&token);
            let kid = auth::unverified_kid(&token);
            let key = token.clone();
            let result = auth::validate(
                token,
                &tenant.id,
                tenant_config,
                &tenant.resource,
                &edge.keys,
            )
            .await;
            if let (Ok(p), Some(exp)) = (&result, exp) {
                edge.verified.insert(&tenant.id, &key, exp, kid, p);
            }
            result
        }
    };
    let principal = match validated {
        Ok(p) => p,
        Err(e) => {
            edge.metrics.token_failure(&tenant.id, e.reason());
            if let Some(suppressed) = edge.warnings.admit(&format!("token|{}|{e:?}", tenant.id)) {
                tracing::warn!(tenant = %tenant.id, reason = ?e, suppressed, "a bearer token was refused");
            }
            return e.response(&challenge);
        }
    };
    // Rate limits: after authentication, before anything else is done.
    if let Some(limiter) = edge.limiters.get(&tenant.id)
        && let Err(limited) = limiter.check(principal.issuer(), principal.subject())
    {
        edge.metrics.rate_limited(&tenant.id, limited.scope.label());
        if let Some(suppressed) =
            edge.warnings
                .admit(&format!("rate|{}|{}", tenant.id, limited.scope.label()))
        {
            tracing::warn!(tenant = %tenant.id, limit = limited.scope.label(), suppressed, "requests over a rate limit were refused");
        }
        return rate_limited(limited);
    }
    // A legacy session belongs to the principal that created it.
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(id) = &session
        && !edge.sessions.allows(id, &principal)
    {
        return (StatusCode::NOT_FOUND, "session not found").into_response();
    }
    // At the total cap, a new legacy session is refused (an `initialize`
    // without a session); other requests go on.
    if session.is_none()
        && request.method() == axum::http::Method::POST
        && !edge.sessions.has_room()
    {
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, edge.config.server.max_request_bytes).await {
            Ok(bytes) => bytes,
            Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
        };
        if let Some(id) = initialize_id(&bytes) {
            tracing::warn!(tenant = %tenant.id, "legacy session refused: the host's session cap is reached");
            return too_many_sessions(id);
        }
        request = Request::from_parts(parts, axum::body::Body::from(bytes));
    }
    let is_delete = request.method() == axum::http::Method::DELETE;
    let trace = TraceContext::from_headers(request.headers());
    request.extensions_mut().insert(principal.clone());
    request.extensions_mut().insert(trace.clone());
    if let Some(id) = &session
        && edge.sessions.is_bound(id)
    {
        request
            .extensions_mut()
            .insert(principal::HostSession::new(id.clone()));
    }
    let mut response = next.run(request).await;
    if let Some(value) = trace.header_value() {
        response.headers_mut().insert(trace::TRACEPARENT, value);
    }
    if session.is_none()
        && let Some(created) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
    {
        for ended in edge.sessions.bind(created, &principal) {
            tokio::spawn(tenant.sessions.close(ended));
        }
    }
    // A binding ends only when its session really ended.
    if is_delete
        && response.status().is_success()
        && let Some(id) = session
    {
        edge.sessions.forget(&id);
        // A terminated session has nothing to say: 204, as clients expect.
        if response.status() == StatusCode::ACCEPTED {
            *response.status_mut() = StatusCode::NO_CONTENT;
        }
    }
    response
}

#[cfg(test)]
mod origin_tests {
    use super::origin_matches;

    #[test]
    fn a_port_wildcard_matches_only_ports_of_that_host() {
        assert!(origin_matches(
            "http://localhost:*",
            "http://localhost:6274"
        ));
        assert!(origin_matches(
            "http://localhost:6274",
            "http://localhost:6274"
        ));
        for refused in [
            "http://localhost",
            "http://localhost:",
            "http://localhost:80x",
            "http://localhost:123456",
            "http://localhost.evil.example:80",
            "http://localhost:80@evil.example",
            "https://localhost:80",
        ] {
            assert!(!origin_matches("http://localhost:*", refused), "{refused}");
        }
        assert!(!origin_matches(
            "http://localhost:6274",
            "http://localhost:6275"
        ));
    }
}
