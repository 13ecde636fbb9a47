//! The token endpoint (`POST /token`): client authentication, codes, and
//! refresh-token rotation with reuse detection.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::consent::params;
use super::{
    ACCESS_PREFIX, AccessRecord, Calendar, CalendarClient, Family, MAX_ACCESS_TOKENS,
    MAX_BODY_BYTES, REFRESH_LIFETIME, REFRESH_PREFIX, RefreshRecord, hash, lock, no_store,
    random_token,
};
use crate::dev::authserver::{Presented, presented_credentials};
use crate::dev::forms::{TokenRefusal as Refusal, pkce_matches};
use crate::dev::keys::now;

impl Calendar {
    fn family_revoked(&self, family: &str) -> Result<bool, Refusal> {
        match self.families.get::<Family>(family) {
            Ok(f) => Ok(f.is_none_or(|f| f.revoked)),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a calendar grant");
                Err(Refusal::server_error())
            }
        }
    }

    /// New access and refresh tokens for `user` in `family`.
    fn issue(
        &self,
        client_id: &str,
        user: &str,
        scope: &str,
        refresh_scope: &str,
        family: &str,
    ) -> Result<Response, Refusal> {
        let (Some(access), Some(refresh)) =
            (random_token(ACCESS_PREFIX), random_token(REFRESH_PREFIX))
        else {
            return Err(Refusal::server_error());
        };
        let lifetime = self.access_lifetime();
        {
            let mut live = lock(&self.access);
            let now = Instant::now();
            live.retain(|_, a| a.expires > now);
            if live.len() >= MAX_ACCESS_TOKENS {
                return Err(Refusal::server_error());
            }
            live.insert(
                hash(&access),
                AccessRecord {
                    user: user.to_string(),
                    scope: scope.to_string(),
                    family: family.to_string(),
                    expires: now + lifetime,
                },
            );
        }
        let record = RefreshRecord {
            client_id: client_id.to_string(),
            user: user.to_string(),
            scope: refresh_scope.to_string(),
            family: family.to_string(),
            expires_at: now() + REFRESH_LIFETIME.as_secs(),
            used: false,
        };
        if let Err(e) = self.refresh.put(&hash(&refresh), &record) {
            tracing::error!(error = %e, "cannot store a calendar refresh token");
            return Err(Refusal::server_error());
        }
        let mut response = axum::Json(json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
            "refresh_token": refresh,
            "scope": scope,
        }))
        .into_response();
        no_store(&mut response);
        Ok(response)
    }
}

impl Refusal {
    fn grant(description: &'static str) -> Self {
        Refusal::bad("invalid_grant", description)
    }

    fn server_error() -> Self {
        Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: "the provider cannot issue tokens right now",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.respond("Basic realm=\"Demo Calendar\"", no_store)
    }
}

/// The authenticated client: HTTP Basic or `client_id` + `client_secret`
/// in the body, exactly one of them.
fn authenticate<'a>(
    calendar: &'a Calendar,
    headers: &HeaderMap,
    p: &HashMap<String, String>,
) -> Result<&'a CalendarClient, Refusal> {
    let (id, secret) = match presented_credentials(headers) {
        Presented::Basic { id, secret } => {
            if p.contains_key("client_secret") {
                return Err(Refusal::bad(
                    "invalid_request",
                    "use one client authentication method",
                ));
            }
            if p.get("client_id").is_some_and(|body| *body != id) {
                return Err(Refusal::client(
                    "client_id differs from the authenticated client",
                ));
            }
            (id, secret)
        }
        Presented::Nothing => match (p.get("client_id"), p.get("client_secret")) {
            (Some(id), Some(secret)) => (id.clone(), secret.clone()),
            _ => {
                return Err(Refusal::client(
                    "authenticate with client_secret_basic or client_secret_post",
                ));
            }
        },
        _ => return Err(Refusal::client("unsupported Authorization header")),
    };
    match calendar.clients.get(&id) {
        Some(client) if client.secret.matches(&secret) => Ok(client),
        _ => Err(Refusal::client("client authentication failed")),
    }
}

pub(super) async fn token(
    State(calendar): State<Arc<Calendar>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = if body.len() > MAX_BODY_BYTES {
        Err(Refusal::bad("invalid_request", "the request is too large"))
    } else {
        match params(&body) {
            None => Err(Refusal::bad("invalid_request", "a parameter is repeated")),
            Some(p) => grant(&calendar, &headers, &p),
        }
    };
    result.unwrap_or_else(|refusal| {
        calendar
            .counters
            .refused_grants
            .fetch_add(1, Ordering::Relaxed);
        refusal.into_response()
    })
}

fn grant(
    calendar: &Calendar,
    headers: &HeaderMap,
    p: &HashMap<String, String>,
) -> Result<Response, Refusal> {
    let client = authenticate(calendar, headers, p)?;
    match p.get("grant_type").map(String::as_str) {
        Some("authorization_code") => redeem_code(calendar, client, p),
        Some("refresh_token") => rotate(calendar, client, p),
        Some(_) => Err(Refusal::bad(
            "unsupported_grant_type",
            "only authorization_code and refresh_token are supported",
        )),
        None => Err(Refusal::bad("invalid_request", "grant_type is missing")),
    }
}

fn redeem_code(
    calendar: &Calendar,
    client: &CalendarClient,
    p: &HashMap<String, String>,
) -> Result<Response, Refusal> {
    let code = p
        .get("code")
        .ok_or(Refusal::bad("invalid_request", "code is missing"))?;
    let Some(family) = random_token("") else {
        return Err(Refusal::server_error());
    };
    let (user, scope) = {
        let mut codes = lock(&calendar.codes);
        let Some(pending) = codes.get_mut(code).filter(|c| c.expires > Instant::now()) else {
            return Err(Refusal::grant("the code is unknown or expired"));
        };
        if let Some(issued) = pending.redeemed.clone() {
            drop(codes);
            // RFC 6749 §4.1.2: a code used twice revokes what it issued.
            let _guard = lock(&calendar.grants);
            calendar.revoke_family(&issued);
            return Err(Refusal::grant("the code was already used"));
        }
        let checked = if pending.client_id != client.client_id {
            Err(Refusal::grant("the code was issued to another client"))
        } else if p
            .get("redirect_uri")
            .is_some_and(|r| *r != pending.redirect_uri)
            || (pending.redirect_uri_sent && !p.contains_key("redirect_uri"))
        {
            Err(Refusal::grant(
                "redirect_uri does not match the authorization request",
            ))
        } else {
            match p.get("code_verifier") {
                None => Err(Refusal::bad("invalid_request", "code_verifier is missing")),
                Some(v) if !pkce_matches(v, &pending.challenge) => Err(Refusal::grant(
                    "code_verifier does not match the code_challenge",
                )),
                Some(_) => Ok(()),
            }
        };
        if let Err(refusal) = checked {
            // A failed attempt spends the code.
            codes.remove(code);
            return Err(refusal);
        }
        pending.redeemed = Some(family.clone());
        (pending.user.clone(), pending.scope.clone())
    };
    let record = Family {
        user: user.clone(),
        revoked: false,
    };
    if let Err(e) = calendar.families.put(&family, &record) {
        tracing::error!(error = %e, "cannot store a calendar grant");
        return Err(Refusal::server_error());
    }
    lock(&calendar.user_families)
        .entry(user.clone())
        .or_default()
        .push(family.clone());
    let response = calendar.issue(&client.client_id, &user, &scope, &scope, &family)?;
    calendar
        .counters
        .code_grants
        .fetch_add(1, Ordering::Relaxed);
    Ok(response)
}

fn rotate(
    calendar: &Calendar,
    client: &CalendarClient,
    p: &HashMap<String, String>,
) -> Result<Response, Refusal> {
    let presented = p
        .get("refresh_token")
        .ok_or(Refusal::bad("invalid_request", "refresh_token is missing"))?;
    let key = hash(presented);
    let _guard = lock(&calendar.grants);
    let stored = match calendar.refresh.get::<RefreshRecord>(&key) {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!(error = %e, "cannot read calendar refresh tokens");
            return Err(Refusal::server_error());
        }
    };
    let Some(mut stored) = stored.filter(|r| r.expires_at > now()) else {
        return Err(Refusal::grant("the refresh token is unknown or expired"));
    };
    if stored.client_id != client.client_id {
        return Err(Refusal::grant(
            "the refresh token belongs to another client",
        ));
    }
    if stored.used {
        // A rotated token came back: someone holds a copy. End the grant.
        calendar.revoke_family(&stored.family);
        return Err(Refusal::grant(
            "the refresh token was already used; the grant is revoked",
        ));
    }
    if calendar.family_revoked(&stored.family)? {
        return Err(Refusal::grant("the grant was revoked"));
    }
    let scope = match p.get("scope") {
        None => stored.scope.clone(),
        Some(s) => {
            let granted: BTreeSet<&str> = stored.scope.split_whitespace().collect();
            let asked: BTreeSet<&str> = s.split_whitespace().collect();
            if asked.is_empty() || !asked.is_subset(&granted) {
                return Err(Refusal::bad("invalid_scope", "a refresh cannot add scopes"));
            }
            asked.into_iter().collect::<Vec<_>>().join(" ")
        }
    };
    stored.used = true;
    if let Err(e) = calendar.refresh.put(&key, &stored) {
        tracing::error!(error = %e, "cannot rotate a calendar refresh token");
        return Err(Refusal::server_error());
    }
    let response = calendar.issue(
        &client.client_id,
        &stored.user,
        &scope,
        &stored.scope,
        &stored.family,
    )?;
    calendar
        .counters
        .refresh_grants
        .fetch_add(1, Ordering::Relaxed);
    Ok(response)
}
