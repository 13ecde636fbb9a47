//! The connect pages: `/connect/{tenant}/{id}` (a link from an elicitation),
//! `/connect/{tenant}/login` (back from the tenant's issuer) and
//! `/connect/{tenant}/callback/{provider}` (back from the provider: one
//! redirect URI per provider, so a code can only come back to the flow of the
//! provider that issued it — the mix-up defence of RFC 9700 §4.4).
//!
//! Every step is bound to the browser that opened the link by a cookie whose
//! hash the flow keeps, and to a single-use `state`; nothing secret or
//! personal is ever in a URL airlock makes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::{Connector, Flow, LINK_LIFETIME, MAX_IN_FLIGHT, lock, oauth};
use crate::vault::{RecordKey, TokenSet};

/// The browser-binding cookie: `__Host-` (Secure, whole origin, no Domain)
/// when airlock is served over https, so no other site can plant it.
const COOKIE: &str = "airlock_connect";
const HOST_COOKIE: &str = "__Host-airlock_connect";

/// The connect pages of every tenant.
pub fn router(connector: Arc<Connector>) -> Router {
    Router::new()
        .route("/connect/{tenant}/login", get(login_returned))
        .route(
            "/connect/{tenant}/callback/{provider}",
            get(provider_returned),
        )
        .route("/connect/{tenant}/{id}", get(open_link))
        .with_state(connector)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Headers every connect response carries: never cached, never framed, and
/// never telling the next site which URL the browser came from.
fn harden(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    response
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;line-height:1.5}}</style>\
         </head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    harden(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
    )
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut response = (StatusCode::FOUND, [(header::LOCATION, to.to_string())]).into_response();
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    harden(response)
}

fn expired() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "This link no longer works",
        "<p>Connect links work once and only for a few minutes. Ask your assistant to try \
         the tool again: it will give you a new link.</p>",
    )
}

fn unavailable(why: &str) -> Response {
    tracing::warn!(reason = %why, "connect flow failed");
    page(
        StatusCode::BAD_GATEWAY,
        "Something went wrong",
        "<p>airlock could not finish connecting your account. Nothing was stored. Ask your \
         assistant to try the tool again for a new link.</p>",
    )
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The value of this browser's connect cookie, if it sent one value (two
/// different ones mean one was planted: refuse both).
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, value)| value.to_string());
    let first = values.next()?;
    let mut others = values;
    (others.all(|v| v == first) && (32..=64).contains(&first.len())).then_some(first)
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    // Both are hashes of secrets; compare without an early exit anyway.
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Connector {
    fn redirect_uri(&self, tenant: &str, step: &str) -> String {
        format!("{}/connect/{tenant}/{step}", self.public_url)
    }

    fn cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            HOST_COOKIE
        } else {
            COOKIE
        }
    }

    /// The hash of this browser's connect cookie.
    fn browser(&self, headers: &HeaderMap) -> Option<[u8; 32]> {
        cookie_value(headers, self.cookie_name()).map(|v| sha(v.as_bytes()))
    }

    /// `Set-Cookie` for `value`, good for a whole flow from now.
    fn set_cookie(&self, value: &str) -> String {
        if self.secure_cookies {
            format!(
                "{HOST_COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax; Secure",
                2 * LINK_LIFETIME.as_secs()
            )
        } else {
            format!(
                "{COOKIE}={value}; Path=/connect; Max-Age={}; HttpOnly; SameSite=Lax",
                2 * LINK_LIFETIME.as_secs()
            )
        }
    }

    /// Keep a new flow under its `state`, unless too many of its tenant's are
    /// in flight (then the page to show instead). A new provider step for a
    /// user and provider replaces the one before.
    fn start_flow(&self, flow: Flow) -> Result<String, Box<Response>> {
        let state = oauth::random_token(32).map_err(|e| Box::new(unavailable(&e)))?;
        let now = Instant::now();
        let mut in_flight = lock(&self.in_flight);
        in_flight.flows.retain(|_, f| f.expires() > now);
        if let Flow::Provider { key, .. } = &flow {
            in_flight
                .flows
                .retain(|_, f| !matches!(f, Flow::Provider { key: k, .. } if k == key));
        }
        let tenant = flow.tenant().to_string();
        if in_flight
            .flows
            .values()
            .filter(|f| f.tenant() == tenant)
            .count()
            >= MAX_IN_FLIGHT
        {
            return Err(Box::new(page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too busy",
                "<p>Too many connections are in progress. Try again in a few minutes.</p>",
            )));
        }
        in_flight.flows.insert(state.clone(), flow);
        Ok(state)
    }

    /// Take the flow of `state` (single use), if this browser started it and
    /// it has not expired.
    fn take_flow(&self, state: Option<&String>, headers: &HeaderMap) -> Option<Flow> {
        let flow = lock(&self.in_flight).flows.remove(state?)?;
        let cookie = self.browser(headers)?;
        let (owner, expires) = match &flow {
            Flow::Login {
                browser, expires, ..
            }
            | Flow::Provider {
                browser, expires, ..
            } => (browser, *expires),
        };
        (same(owner, &cookie) && expires > Instant::now()).then_some(flow)
    }
}

async fn open_link(
    State(connector): State<Arc<Connector>>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(login) = connector.tenants.get(&tenant).map(|t| &t.login) else {
        return expired();
    };
    let found = {
        let mut in_flight = lock(&connector.in_flight);
        let found = in_flight
            .pending
            .get(&id)
            .filter(|p| p.key.tenant == tenant && p.expires > Instant::now())
            .is_some();
        // One sign-in per link at a time: opening it again replaces the
        // last one, so reopening a link cannot fill the flow table.
        in_flight
            .flows
            .retain(|_, f| !matches!(f, Flow::Login { connect_id, .. } if *connect_id == id));
        found
    };
    if !found {
        return expired();
    }
    // A browser already in a connect flow keeps its cookie, so opening a
    // second link does not break the first.
    let cookie = match cookie_value(&headers, connector.cookie_name()) {
        Some(value) => Ok(value),
        None => oauth::random_token(32),
    };
    let (Ok(cookie), Ok(verifier)) = (cookie, oauth::random_token(32)) else {
        return unavailable("the OS random source failed");
    };
    let state = match connector.start_flow(Flow::Login {
        tenant: tenant.clone(),
        connect_id: id,
        verifier: verifier.clone(),
        browser: sha(cookie.as_bytes()),
        expires: Instant::now() + LINK_LIFETIME,
    }) {
        Ok(state) => state,
        Err(response) => return *response,
    };
    let resource = format!("{}/mcp/{tenant}", connector.public_url);
    let to = login.authorization_url(
        &connector.redirect_uri(&tenant, "login"),
        &state,
        &verifier,
        &[("resource", &resource)],
    );
    redirect(to.as_str(), Some(connector.set_cookie(&cookie)))
}

async fn login_returned(
    State(connector): State<Arc<Connector>>,
    Path(tenant): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(Flow::Login {
        tenant: flow_tenant,
        connect_id,
        verifier,
        browser,
        ..
    }) = connector.take_flow(query.get("state"), &headers)
    else {
        return expired();
    };
    let Some(tenant_connect) = connector
        .tenants
        .get(&tenant)
        .filter(|_| flow_tenant == tenant)
    else {
        return expired();
    };
    if query.contains_key("error") {
        return page(
            StatusCode::OK,
            "Sign-in cancelled",
            "<p>You did not sign in, so nothing was connected. Ask your assistant to try the \
             tool again when you are ready.</p>",
        );
    }
    let Some(code) = query.get("code") else {
        return expired();
    };
    let resource = format!("{}/mcp/{tenant}", connector.public_url);
    let granted = match tenant_connect
        .login
        .redeem(
            &connector.http,
            code,
            &connector.redirect_uri(&tenant, "login"),
            &verifier,
            &[("resource", &resource)],
        )
        .await
    {
        Ok(granted) => granted,
        Err(e) => return unavailable(&format!("signing in at the issuer: {e}")),
    };
    let principal = match connector
        .edge
        .authenticate(&tenant, granted.access_token.expose().to_string())
        .await
    {
        Ok(p) => p,
        Err(e) => return unavailable(&format!("the issuer's token was refused: {e:?}")),
    };
    // The link is for one user: anyone else is turned away, and the link
    // stays usable for its user.
    let pending = {
        let mut in_flight = lock(&connector.in_flight);
        match in_flight.pending.get(&connect_id) {
            Some(p) if p.expires <= Instant::now() => None,
            Some(p)
                if p.key.issuer != principal.issuer() || p.key.subject != principal.subject() =>
            {
                drop(in_flight);
                tracing::warn!(
                    tenant = %tenant,
                    "a connect link was opened by a different user than the one it was made for"
                );
                return page(
                    StatusCode::FORBIDDEN,
                    "This link is for someone else",
                    "<p>You signed in as a different user than the one this link was made for, \
                     so nothing was connected. Each user connects their own account from their \
                     own assistant.</p>",
                );
            }
            Some(_) => in_flight.pending.remove(&connect_id),
            None => None,
        }
    };
    let Some(pending) = pending else {
        return expired();
    };
    let Some(provider) = tenant_connect.providers.get(&pending.key.provider) else {
        return expired();
    };
    let pending_provider = pending.key.provider.clone();
    let Ok(verifier) = oauth::random_token(32) else {
        return unavailable("the OS random source failed");
    };
    let state = match connector.start_flow(Flow::Provider {
        key: pending.key,
        elicitation_id: pending.elicitation_id,
        verifier: verifier.clone(),
        browser,
        expires: Instant::now() + LINK_LIFETIME,
    }) {
        Ok(state) => state,
        Err(response) => return *response,
    };
    let to = provider.authorization_url(
        &connector.redirect_uri(&tenant, &format!("callback/{}", pending_provider)),
        &state,
        &verifier,
        &[],
    );
    // The cookie lives for the provider step too.
    let cookie =
        cookie_value(&headers, connector.cookie_name()).map(|value| connector.set_cookie(&value));
    redirect(to.as_str(), cookie)
}

async fn provider_returned(
    State(connector): State<Arc<Connector>>,
    Path((tenant, provider_name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(Flow::Provider {
        key,
        elicitation_id,
        verifier,
        ..
    }) = connector.take_flow(query.get("state"), &headers)
    else {
        return expired();
    };
    // A code comes back only to the redirect URI of the provider whose flow
    // this is (a different provider's code cannot be mixed in).
    if key.tenant != tenant || key.provider != provider_name {
        return expired();
    }
    let Some(provider) = connector
        .tenants
        .get(&tenant)
        .and_then(|t| t.providers.get(&key.provider))
    else {
        return expired();
    };
    if query.contains_key("error") {
        return page(
            StatusCode::OK,
            "Not connected",
            &format!(
                "<p>You declined at {}, so nothing was stored. Ask your assistant to try the \
                 tool again if you change your mind.</p>",
                escape(&key.provider)
            ),
        );
    }
    let Some(code) = query.get("code") else {
        return expired();
    };
    let granted = match provider
        .redeem(
            &connector.http,
            code,
            &connector.redirect_uri(&tenant, &format!("callback/{provider_name}")),
            &verifier,
            &[],
        )
        .await
    {
        Ok(granted) => granted,
        Err(e) => return unavailable(&format!("redeeming the provider's code: {e}")),
    };
    if let Err(e) = store(&connector, &key, granted).await {
        return unavailable(&format!("storing the tokens: {e}"));
    }
    tracing::info!(tenant = %key.tenant, provider = %key.provider, "account connected");
    connector.complete(&elicitation_id);
    page(
        StatusCode::OK,
        "Account connected",
        &format!(
            "<p>Your {} account is connected. You can close this window and go back to your \
             assistant.</p>",
            escape(&key.provider)
        ),
    )
}

async fn store(
    connector: &Connector,
    key: &RecordKey,
    granted: oauth::Granted,
) -> Result<(), String> {
    let vault = connector.vault.clone();
    let key = key.clone();
    let tokens = TokenSet {
        access_token: granted.access_token,
        refresh_token: granted.refresh_token,
        expires_at: granted.expires_at,
        scopes: granted.scopes,
    };
    tokio::task::spawn_blocking(move || vault.put(&key, &tokens).map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())?
}
