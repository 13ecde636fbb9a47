//! What the development issuer's login page and Demo Calendar's consent page
//! share: the hardened HTML page, one-time form tokens bound to the browser
//! that opened the page, PKCE, and the token endpoints' refusals.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A page titled `title` with stylesheet `style`, which no other site may
/// frame. Caching headers are the caller's.
pub(super) fn page(status: StatusCode, title: &str, style: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{style}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The value of cookie `name` in `headers`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// 32 random bytes, base64url; `None` without randomness.
fn random() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `verifier` is a well-formed PKCE verifier whose S256 challenge is
/// `challenge` (RFC 7636 §4.1, §4.6).
pub(super) fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    well_formed && URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge
}

/// A page's form, waiting to be submitted.
struct Pending<T> {
    request: T,
    /// The hash of the cookie of the browser that opened the page.
    browser: String,
    expires: Instant,
}

/// Forms by their one-time token, each bound to the browser that opened its
/// page by an HttpOnly SameSite=Strict cookie; at most `limit` outstanding.
pub(super) struct FormTokens<T> {
    forms: Mutex<HashMap<String, Pending<T>>>,
    cookie: &'static str,
    lifetime: Duration,
    limit: usize,
    /// The 503 body when `limit` forms are outstanding.
    busy: &'static str,
}

/// A new form: its one-time token, and the cookie to set with its page.
pub(super) struct Issued {
    pub(super) token: String,
    cookie: Option<HeaderValue>,
}

impl Issued {
    /// Set the browser cookie on the page's `response`.
    pub(super) fn set_cookie(self, response: &mut Response) {
        if let Some(value) = self.cookie {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
}

/// Why no form was issued.
pub(super) enum NotIssued {
    /// 500: no randomness for the token or cookie.
    NoRandomness,
    /// 503: too many forms are outstanding.
    Busy(&'static str),
}

impl IntoResponse for NotIssued {
    fn into_response(self) -> Response {
        match self {
            NotIssued::NoRandomness => {
                (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response()
            }
            NotIssued::Busy(busy) => (StatusCode::SERVICE_UNAVAILABLE, busy).into_response(),
        }
    }
}

/// Why a submitted form is refused.
pub(super) enum FormRefusal {
    /// Unknown, already used, expired, or not accepted.
    Stale,
    /// The page was opened in another browser.
    OtherBrowser,
}

/// The forms, locked.
pub(super) struct OpenForms<'a, T> {
    forms: MutexGuard<'a, HashMap<String, Pending<T>>>,
    cookie: &'static str,
}

impl<T> FormTokens<T> {
    pub(super) fn new(
        cookie: &'static str,
        lifetime: Duration,
        limit: usize,
        busy: &'static str,
    ) -> Self {
        FormTokens {
            forms: Mutex::new(HashMap::new()),
            cookie,
            lifetime,
            limit,
            busy,
        }
    }

    /// A form for `request`, from the browser of `headers`; the cookie is
    /// scoped to `path`. Refused without randomness (500) or while `limit`
    /// forms are outstanding (503).
    pub(super) fn issue(
        &self,
        headers: &HeaderMap,
        path: &str,
        request: T,
    ) -> Result<Issued, NotIssued> {
        // One cookie per browser, reused across tabs: a second page does not
        // break the first.
        let browser = cookie(headers, self.cookie)
            .filter(|c| {
                c.len() == 43
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .or_else(random);
        let (Some(browser), Some(token)) = (browser, random()) else {
            return Err(NotIssued::NoRandomness);
        };
        {
            let mut forms = self.open().forms;
            let now = Instant::now();
            forms.retain(|_, f| f.expires > now);
            if forms.len() >= self.limit {
                return Err(NotIssued::Busy(self.busy));
            }
            forms.insert(
                token.clone(),
                Pending {
                    request,
                    browser: hash(&browser),
                    expires: now + self.lifetime,
                },
            );
        }
        let cookie = HeaderValue::from_str(&format!(
            "{}={browser}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={}",
            self.cookie,
            self.lifetime.as_secs()
        ))
        .ok();
        Ok(Issued { token, cookie })
    }

    pub(super) fn open(&self) -> OpenForms<'_, T> {
        OpenForms {
            forms: self.forms.lock().unwrap_or_else(PoisonError::into_inner),
            cookie: self.cookie,
        }
    }
}

impl<T> OpenForms<'_, T> {
    /// The live form `token`, if `accept`ed and opened in the browser of
    /// `headers`.
    pub(super) fn find(
        &self,
        token: &str,
        headers: &HeaderMap,
        accept: impl FnOnce(&T) -> bool,
    ) -> Result<&T, FormRefusal> {
        let browser = cookie(headers, self.cookie).map(|c| hash(&c));
        let pending = self
            .forms
            .get(token)
            .filter(|f| f.expires > Instant::now() && accept(&f.request))
            .ok_or(FormRefusal::Stale)?;
        if browser.as_ref() != Some(&pending.browser) {
            return Err(FormRefusal::OtherBrowser);
        }
        Ok(&pending.request)
    }

    /// Use up form `token`.
    pub(super) fn take(&mut self, token: &str) -> Option<T> {
        self.forms.remove(token).map(|f| f.request)
    }
}

/// A refused token request (RFC 6749 §5.2).
#[derive(Debug)]
pub(super) struct TokenRefusal {
    pub(super) status: StatusCode,
    pub(super) error: &'static str,
    pub(super) description: &'static str,
}

impl TokenRefusal {
    pub(super) fn bad(error: &'static str, description: &'static str) -> Self {
        TokenRefusal {
            status: StatusCode::BAD_REQUEST,
            error,
            description,
        }
    }

    /// `invalid_client`: 401 with a Basic challenge.
    pub(super) fn client(description: &'static str) -> Self {
        TokenRefusal {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description,
        }
    }

    /// The JSON error, made uncacheable by `no_store`, with a Basic
    /// challenge for `realm` when the client is refused.
    pub(super) fn respond(self, realm: &'static str, no_store: fn(&mut Response)) -> Response {
        let mut response = (
            self.status,
            axum::Json(json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response();
        no_store(&mut response);
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(realm));
        }
        response
    }
}
