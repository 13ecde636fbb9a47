//! The consent page (`GET /authorize`) and its form (`POST /consent`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::{
    CODE_LIFETIME, CODE_PREFIX, Calendar, CalendarClient, MAX_BODY_BYTES, MAX_PENDING, MOUNT,
    PendingCode, PendingConsent, READ_SCOPE, SCOPES, USERS, WRITE_SCOPE, lock, no_store,
    random_token,
};
use crate::dev::forms::{self, FormRefusal, escape};

/// A page of the provider, which no other site may frame.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let mut response = forms::page(
        status,
        title,
        "body{font-family:sans-serif;max-width:32em;margin:4em auto;color:#123}\
         h1{color:#0a6}label{display:block;margin:.3em 0}\
         button{font-size:1.1em;margin:.3em;padding:.4em 1.2em}",
        body,
    );
    no_store(&mut response);
    response
}

fn error_page(message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Demo Calendar: request refused",
        &format!("<p>{}</p>", escape(message)),
    )
}

fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(params);
            let mut response = Redirect::to(url.as_str()).into_response();
            no_store(&mut response);
            response
        }
        Err(_) => error_page("the redirect URI is invalid"),
    }
}

/// Form or query parameters; `None` when one is repeated (RFC 6749 §3.1).
pub(super) fn params(bytes: &[u8]) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(bytes).into_owned() {
        if out.insert(k, v).is_some() {
            return None;
        }
    }
    Some(out)
}

/// A failed authorization request: told on a page while the redirect URI is
/// not trusted, else by redirecting back with an error.
enum Failure {
    Page(&'static str),
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: &'static str,
    },
}

impl Failure {
    fn response(self) -> Response {
        match self {
            Failure::Page(message) => error_page(message),
            Failure::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut out = vec![("error", error), ("error_description", description)];
                if let Some(state) = &state {
                    out.push(("state", state));
                }
                redirect_with(&redirect_uri, &out)
            }
        }
    }
}

/// A validated authorization request.
struct ConsentRequest<'a> {
    client: &'a CalendarClient,
    redirect_uri_sent: bool,
    state: Option<String>,
    challenge: String,
    scope: String,
}

fn validate<'a>(
    calendar: &'a Calendar,
    p: &HashMap<String, String>,
) -> Result<ConsentRequest<'a>, Failure> {
    let client = p
        .get("client_id")
        .and_then(|id| calendar.clients.get(id))
        .ok_or(Failure::Page(
            "this app is not registered with Demo Calendar (unknown client_id)",
        ))?;
    let redirect_uri_sent = match p.get("redirect_uri") {
        Some(uri) if *uri == client.redirect_uri => true,
        Some(_) => {
            return Err(Failure::Page(
                "redirect_uri is not the one the app registered",
            ));
        }
        None => false,
    };
    let state = p.get("state").cloned();
    let fail = |error, description| Failure::Redirect {
        redirect_uri: client.redirect_uri.clone(),
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
        .filter(|c| {
            c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .ok_or_else(|| {
            fail(
                "invalid_request",
                "PKCE is required: send an S256 code_challenge",
            )
        })?;
    if p.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return Err(fail(
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    let scope = match p
        .get("scope")
        .map(|s| s.split_whitespace().collect::<BTreeSet<_>>())
    {
        Some(requested) if !requested.is_empty() => {
            if requested.iter().any(|s| !SCOPES.contains(s)) {
                return Err(fail("invalid_scope", "a requested scope is not offered"));
            }
            requested.into_iter().collect::<Vec<_>>().join(" ")
        }
        _ => READ_SCOPE.to_string(),
    };
    Ok(ConsentRequest {
        client,
        redirect_uri_sent,
        state,
        challenge: challenge.clone(),
        scope,
    })
}

fn describe(scope: &str) -> &'static str {
    if scope.split_whitespace().any(|s| s == WRITE_SCOPE) {
        if scope.split_whitespace().any(|s| s == READ_SCOPE) {
            "read your calendar and add events to it"
        } else {
            "add events to your calendar"
        }
    } else {
        "read your calendar"
    }
}

pub(super) async fn authorize(
    State(calendar): State<Arc<Calendar>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(p) = params(query.unwrap_or_default().as_bytes()) else {
        return error_page("a parameter is repeated");
    };
    let request = match validate(&calendar, &p) {
        Ok(r) => r,
        Err(f) => return f.response(),
    };
    let issued = match calendar.consents.issue(
        &headers,
        MOUNT,
        PendingConsent {
            client_id: request.client.client_id.clone(),
            redirect_uri: request.client.redirect_uri.clone(),
            redirect_uri_sent: request.redirect_uri_sent,
            state: request.state,
            challenge: request.challenge,
            scope: request.scope.clone(),
        },
    ) {
        Ok(issued) => issued,
        Err(refused) => return refused.into_response(),
    };
    let form_token = &issued.token;
    let hint = p.get("login_hint").map(String::as_str);
    let accounts: String = USERS
        .iter()
        .map(|u| {
            format!(
                "<label><input type=\"radio\" name=\"account\" value=\"{u}\" required{checked}> {u}@calendar.example</label>",
                u = escape(u),
                checked = if hint == Some(u) { " checked" } else { "" },
            )
        })
        .collect();
    let body = format!(
        "<p>Sign in and allow <b>{client}</b> to {what}.</p>\
         <form method=\"post\" action=\"{MOUNT}/consent\">\
         <input type=\"hidden\" name=\"form_token\" value=\"{form_token}\">\
         <fieldset><legend>Your Demo Calendar account</legend>{accounts}</fieldset>\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" formnovalidate>Deny</button>\
         </form><p><small>Demo Calendar is a pretend third-party service run by \
         <code>airlock dev</code>. Its accounts are its own, not airlock's users; \
         scopes requested: <code>{scope}</code>.</small></p>",
        client = escape(&request.client.name),
        what = describe(&request.scope),
        scope = escape(&request.scope),
    );
    let mut response = page(StatusCode::OK, "Demo Calendar", &body);
    issued.set_cookie(&mut response);
    response
}

pub(super) async fn consent(
    State(calendar): State<Arc<Calendar>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if body.len() > MAX_BODY_BYTES {
        return error_page("the form is too large");
    }
    let Some(p) = params(&body) else {
        return error_page("a form field is repeated");
    };
    let Some(form_token) = p.get("form_token") else {
        return error_page("the form token is missing");
    };
    let decision = p.get("decision").map(String::as_str);
    let account = p
        .get("account")
        .map(String::as_str)
        .filter(|a| USERS.contains(a));
    let pending = {
        let mut consents = calendar.consents.open();
        match consents.find(form_token, &headers, |_| true) {
            Ok(_) => {}
            Err(FormRefusal::Stale) => {
                return error_page(
                    "this consent form was already answered or has expired; start again from the app",
                );
            }
            Err(FormRefusal::OtherBrowser) => {
                return error_page("this consent form was not opened in this browser");
            }
        }
        match (decision, account) {
            (Some("deny"), _) | (Some("allow"), Some(_)) => {}
            (Some("allow"), None) => {
                return error_page("pick one of your Demo Calendar accounts, then Allow");
            }
            _ => return error_page("choose Allow or Deny"),
        }
        match consents.take(form_token) {
            Some(p) => p,
            None => return error_page("this consent form was already answered"),
        }
    };
    let state = pending.state.as_deref();
    let Some(user) = account.filter(|_| decision == Some("allow")) else {
        let mut out = vec![
            ("error", "access_denied"),
            ("error_description", "the user denied access"),
        ];
        if let Some(state) = state {
            out.push(("state", state));
        }
        return redirect_with(&pending.redirect_uri, &out);
    };
    let Some(code) = random_token(CODE_PREFIX) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
    };
    {
        let mut codes = lock(&calendar.codes);
        let now = Instant::now();
        codes.retain(|_, c| c.expires > now);
        if codes.len() >= MAX_PENDING {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many pending authorizations; try again shortly",
            )
                .into_response();
        }
        codes.insert(
            code.clone(),
            PendingCode {
                client_id: pending.client_id.clone(),
                redirect_uri: pending.redirect_uri.clone(),
                redirect_uri_sent: pending.redirect_uri_sent,
                challenge: pending.challenge.clone(),
                scope: pending.scope.clone(),
                user: user.to_string(),
                expires: now + CODE_LIFETIME,
                redeemed: None,
            },
        );
    }
    let mut out = vec![("code", code.as_str())];
    if let Some(state) = state {
        out.push(("state", state));
    }
    redirect_with(&pending.redirect_uri, &out)
}
