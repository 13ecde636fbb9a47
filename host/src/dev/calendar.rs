//! "Demo Calendar": a third-party OAuth 2.1 provider with a calendar API,
//! mounted at `{public_url}/dev/calendar` by `airlock dev`, for `user-token`
//! delegation. It plays another company: its accounts (alice, bob, carol) are
//! its own, not airlock's users, and its tokens are opaque random strings
//! (`cal_at_…`, `cal_rt_…`) that only it can check.
//!
//! - `GET /authorize`: authorization code with PKCE S256 for a registered
//!   confidential client and its exact redirect URI; a consent page where the
//!   user picks an account (`login_hint` only preselects) and allows or
//!   denies. Errors before the redirect URI is trusted are pages.
//! - `POST /consent`: the page's form, carrying a one-time form token bound
//!   to a `SameSite=Strict` cookie set with the page.
//! - `POST /token`: `authorization_code` (single use, 60 s, bound to client,
//!   redirect URI and verifier; a reused code revokes what it issued) and
//!   `refresh_token` (rotated on every use; presenting a rotated one revokes
//!   the whole family). Clients authenticate with `client_secret_basic` or
//!   `client_secret_post`.
//! - `GET /api/events` (`calendar.read`), `POST /api/events`
//!   (`calendar.write`): the bearer's events.
//!
//! Refresh tokens and their families are in sled, so a restarted `airlock
//! dev` keeps connections; access tokens, pending consents and codes are in
//! memory: after a restart, clients refresh, as they must with any provider.
//! Only hashes of tokens are kept. Test hooks ([`CalendarHooks`]) are Rust
//! methods, not routes.
//!
//! Here: state, test hooks, the calendar API. The consent page is in
//! `consent.rs`, the token endpoint in `token.rs`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::authserver::{ExpectedSecret, Presented, presented_credentials};
use super::forms::FormTokens;
use crate::storage::{Storage, Tree};

mod consent;
mod token;

/// Where the provider is mounted on the dev listener.
const MOUNT: &str = "/dev/calendar";
/// The provider's own accounts.
pub(crate) const USERS: &[&str] = &["alice", "bob", "carol"];
/// Reading events.
pub(crate) const READ_SCOPE: &str = "calendar.read";
/// Adding events.
pub(crate) const WRITE_SCOPE: &str = "calendar.write";
const SCOPES: &[&str] = &[READ_SCOPE, WRITE_SCOPE];
/// Recognisable prefixes, so tests can search outputs for leaked tokens.
const ACCESS_PREFIX: &str = "cal_at_";
const REFRESH_PREFIX: &str = "cal_rt_";
const CODE_PREFIX: &str = "cal_code_";
/// How long an access token lives unless [`CalendarHooks::set_access_token_lifetime`].
const DEFAULT_ACCESS_LIFETIME: Duration = Duration::from_secs(3600);
/// How long a refresh token lives.
const REFRESH_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long an authorization code may wait to be redeemed.
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// How long a consent page may wait for its answer.
const CONSENT_LIFETIME: Duration = Duration::from_secs(600);
/// Most outstanding consents, codes, or live access tokens.
const MAX_PENDING: usize = 10_000;
const MAX_ACCESS_TOKENS: usize = 100_000;
/// Largest form or JSON body.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most events one account may add.
const MAX_ADDED_EVENTS: usize = 1000;
/// Longest event title, in characters.
const MAX_TITLE_CHARS: usize = 200;
/// The cookie the consent form token is bound to.
const CONSENT_COOKIE: &str = "demo_calendar_consent";

/// `{url}/dev/calendar`.
pub(crate) fn base_url(url: &str) -> String {
    format!("{url}{MOUNT}")
}

/// `{url}/dev/calendar/api`: the calendar API's base URL.
pub(crate) fn api_url(url: &str) -> String {
    format!("{url}{MOUNT}/api")
}

/// The client id of airlock's client for `tenant`.
pub(crate) fn client_id(tenant: &str) -> String {
    format!("airlock-{tenant}")
}

/// The file in the dev data directory holding that client's secret.
pub(crate) fn secret_file(tenant: &str) -> String {
    format!("calendar-{tenant}.secret")
}

/// A registered confidential client.
pub(crate) struct CalendarClient {
    client_id: String,
    name: String,
    redirect_uri: String,
    secret: ExpectedSecret,
}

impl CalendarClient {
    /// airlock's client for `tenant` of the dev host at `url`, redirecting to
    /// its connect callback.
    pub(crate) fn for_tenant(tenant: &str, url: &str, secret: &str) -> Result<Self, String> {
        Ok(CalendarClient {
            client_id: client_id(tenant),
            name: format!("airlock ({tenant})"),
            redirect_uri: format!("{url}/connect/{tenant}/callback/calendar"),
            secret: ExpectedSecret::new(secret)?,
        })
    }
}

/// A consent page waiting for its answer, by form token.
struct PendingConsent {
    client_id: String,
    redirect_uri: String,
    redirect_uri_sent: bool,
    state: Option<String>,
    challenge: String,
    scope: String,
}

/// An authorization code, by code. Kept after redemption until it expires,
/// so a second redemption can revoke what the first issued.
struct PendingCode {
    client_id: String,
    redirect_uri: String,
    redirect_uri_sent: bool,
    challenge: String,
    scope: String,
    user: String,
    expires: Instant,
    redeemed: Option<String>,
}

/// A live access token, by hash.
struct AccessRecord {
    user: String,
    scope: String,
    family: String,
    expires: Instant,
}

/// A refresh token, by hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefreshRecord {
    client_id: String,
    user: String,
    scope: String,
    family: String,
    expires_at: u64,
    /// Rotated: presenting it again revokes the family.
    used: bool,
}

/// The tokens descending from one authorization code.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Family {
    user: String,
    revoked: bool,
}

/// One calendar event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Event {
    title: String,
    start: String,
    end: String,
}

#[derive(Default)]
struct Counters {
    code_grants: AtomicU64,
    refresh_grants: AtomicU64,
    refused_grants: AtomicU64,
    api_requests: AtomicU64,
    api_refused: AtomicU64,
}

/// The provider's state.
pub(crate) struct Calendar {
    clients: BTreeMap<String, CalendarClient>,
    access_lifetime_ms: AtomicU64,
    consents: FormTokens<PendingConsent>,
    codes: Mutex<HashMap<String, PendingCode>>,
    access: Mutex<HashMap<String, AccessRecord>>,
    refresh: Tree,
    families: Tree,
    /// Serialises refresh-token rotation and family revocation, so a token
    /// is rotated once however many requests race.
    grants: Mutex<()>,
    /// The families created by this process, per account (for
    /// [`CalendarHooks::revoke_grants`]).
    user_families: Mutex<HashMap<String, Vec<String>>>,
    added: Mutex<HashMap<String, Vec<Event>>>,
    counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// 32 random bytes, base64url, after `prefix`; `None` without randomness.
fn random_token(prefix: &str) -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

impl Calendar {
    /// The provider with `clients` registered, keeping refresh tokens in `storage`.
    pub(crate) fn new(clients: Vec<CalendarClient>, storage: &Storage) -> Result<Self, String> {
        Ok(Calendar {
            clients: clients
                .into_iter()
                .map(|c| (c.client_id.clone(), c))
                .collect(),
            access_lifetime_ms: AtomicU64::new(
                u64::try_from(DEFAULT_ACCESS_LIFETIME.as_millis()).unwrap_or(u64::MAX),
            ),
            consents: FormTokens::new(
                CONSENT_COOKIE,
                CONSENT_LIFETIME,
                MAX_PENDING,
                "too many pending consents; try again shortly",
            ),
            codes: Mutex::new(HashMap::new()),
            access: Mutex::new(HashMap::new()),
            refresh: storage
                .tree("dev.calendar.refresh")
                .map_err(|e| e.to_string())?,
            families: storage
                .tree("dev.calendar.families")
                .map_err(|e| e.to_string())?,
            grants: Mutex::new(()),
            user_families: Mutex::new(HashMap::new()),
            added: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        })
    }

    fn access_lifetime(&self) -> Duration {
        Duration::from_millis(self.access_lifetime_ms.load(Ordering::Relaxed))
    }

    /// Mark `family` revoked and forget its access tokens. Call with `grants` held.
    fn revoke_family(&self, family: &str) {
        let user = match self.families.get::<Family>(family) {
            Ok(Some(f)) => f.user,
            Ok(None) => String::new(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a calendar grant");
                String::new()
            }
        };
        let record = Family {
            user,
            revoked: true,
        };
        if let Err(e) = self.families.put(family, &record) {
            tracing::error!(error = %e, "cannot revoke a calendar grant");
        }
        lock(&self.access).retain(|_, a| a.family != family);
    }

    /// The bearer's account, when its token is live and holds `scope`.
    fn bearer(&self, headers: &HeaderMap, scope: &'static str) -> Result<String, ApiRefusal> {
        let token = match presented_credentials(headers) {
            Presented::Bearer(token) => token,
            Presented::Nothing => return Err(ApiRefusal::NoToken(scope)),
            _ => return Err(ApiRefusal::BadToken("invalid_request", scope)),
        };
        let live = lock(&self.access);
        let Some(record) = live
            .get(&hash(&token))
            .filter(|a| a.expires > Instant::now())
        else {
            return Err(ApiRefusal::BadToken("invalid_token", scope));
        };
        if !record.scope.split_whitespace().any(|s| s == scope) {
            return Err(ApiRefusal::InsufficientScope(scope));
        }
        Ok(record.user.clone())
    }

    fn events(&self, user: &str) -> Vec<Event> {
        let mut events: Vec<Event> = seed_events(user);
        if let Some(added) = lock(&self.added).get(user) {
            events.extend(added.iter().cloned());
        }
        events.sort_by_key(|e| chrono::DateTime::parse_from_rfc3339(&e.start).ok());
        events
    }
}

/// Each account's own demo events.
fn seed_events(user: &str) -> Vec<Event> {
    let event = |title: &str, start: &str, end: &str| Event {
        title: title.into(),
        start: start.into(),
        end: end.into(),
    };
    match user {
        "alice" => vec![
            event(
                "Quarterly planning",
                "2026-03-02T09:00:00Z",
                "2026-03-02T10:30:00Z",
            ),
            event(
                "Lunch with the design team",
                "2026-03-03T12:00:00Z",
                "2026-03-03T13:00:00Z",
            ),
            event("Dentist", "2026-03-05T16:00:00Z", "2026-03-05T16:45:00Z"),
        ],
        "bob" => vec![
            event(
                "Release review",
                "2026-03-02T14:00:00Z",
                "2026-03-02T15:00:00Z",
            ),
            event(
                "On-call handover",
                "2026-03-04T08:30:00Z",
                "2026-03-04T09:00:00Z",
            ),
        ],
        "carol" => vec![event(
            "Board meeting",
            "2026-03-06T10:00:00Z",
            "2026-03-06T12:00:00Z",
        )],
        _ => Vec::new(),
    }
}

/// What [`CalendarHooks::stats`] reports: how often each endpoint answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CalendarStats {
    /// Authorization codes redeemed for tokens.
    pub code_grants: u64,
    /// Refresh tokens rotated for new tokens.
    pub refresh_grants: u64,
    /// Token requests refused (any error).
    pub refused_grants: u64,
    /// Calendar API requests answered.
    pub api_requests: u64,
    /// Calendar API requests refused (bad, expired or missing token, scope).
    pub api_refused: u64,
}

/// Test hooks of the Demo Calendar provider of a [`super::DevServer`]: Rust
/// methods, unreachable over HTTP.
#[derive(Clone)]
pub struct CalendarHooks(pub(crate) Arc<Calendar>);

impl fmt::Debug for CalendarHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalendarHooks").finish_non_exhaustive()
    }
}

impl CalendarHooks {
    /// The counters so far.
    pub fn stats(&self) -> CalendarStats {
        let c = &self.0.counters;
        CalendarStats {
            code_grants: c.code_grants.load(Ordering::Relaxed),
            refresh_grants: c.refresh_grants.load(Ordering::Relaxed),
            refused_grants: c.refused_grants.load(Ordering::Relaxed),
            api_requests: c.api_requests.load(Ordering::Relaxed),
            api_refused: c.api_refused.load(Ordering::Relaxed),
        }
    }

    /// End every access token of the Demo Calendar account `user` now (the
    /// API answers 401 `invalid_token` to them); refresh tokens still work.
    /// Returns how many were live.
    pub fn expire_access_tokens(&self, user: &str) -> usize {
        let mut live = lock(&self.0.access);
        let before = live.len();
        live.retain(|_, a| a.user != user);
        before - live.len()
    }

    /// Revoke every grant `user` made in this process, as if they
    /// disconnected the app at the provider: its access and refresh tokens
    /// stop working (refresh answers `invalid_grant`). Returns how many grants.
    pub fn revoke_grants(&self, user: &str) -> usize {
        let _guard = lock(&self.0.grants);
        let families = lock(&self.0.user_families).remove(user).unwrap_or_default();
        for family in &families {
            self.0.revoke_family(family);
        }
        families.len()
    }

    /// How long access tokens issued from now on live (`expires_in`); zero
    /// makes them expired on arrival.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.0.access_lifetime_ms.store(
            u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// The routes, all under `/dev/calendar`.
pub(crate) fn router(calendar: Arc<Calendar>) -> Router {
    Router::new()
        .route("/dev/calendar/authorize", get(consent::authorize))
        .route("/dev/calendar/consent", post(consent::consent))
        .route("/dev/calendar/token", post(token::token))
        .route("/dev/calendar/api/events", get(list_events).post(add_event))
        .with_state(calendar)
}

fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A refused API request, with its Bearer challenge (RFC 6750 §3).
enum ApiRefusal {
    /// No credentials: 401 without an error code.
    NoToken(&'static str),
    /// 401 `invalid_token` (unknown, expired, revoked) or `invalid_request`.
    BadToken(&'static str, &'static str),
    /// 403: the token lacks the scope.
    InsufficientScope(&'static str),
}

impl IntoResponse for ApiRefusal {
    fn into_response(self) -> Response {
        let realm = "Bearer realm=\"Demo Calendar\"";
        let (status, challenge, body) = match self {
            ApiRefusal::NoToken(scope) => (
                StatusCode::UNAUTHORIZED,
                format!("{realm}, scope=\"{scope}\""),
                json!({ "error": "unauthorized", "error_description": "send a Demo Calendar access token" }),
            ),
            ApiRefusal::BadToken(error, scope) => (
                StatusCode::UNAUTHORIZED,
                format!("{realm}, error=\"{error}\", scope=\"{scope}\""),
                json!({ "error": error, "error_description": "send a valid Demo Calendar access token" }),
            ),
            ApiRefusal::InsufficientScope(scope) => (
                StatusCode::FORBIDDEN,
                format!("{realm}, error=\"insufficient_scope\", scope=\"{scope}\""),
                json!({ "error": "insufficient_scope", "error_description": format!("this needs the {scope} scope") }),
            ),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

fn count(calendar: &Calendar, response: Response) -> Response {
    let counter = if response.status().is_success() {
        &calendar.counters.api_requests
    } else {
        &calendar.counters.api_refused
    };
    counter.fetch_add(1, Ordering::Relaxed);
    response
}

async fn list_events(State(calendar): State<Arc<Calendar>>, headers: HeaderMap) -> Response {
    let response = match calendar.bearer(&headers, READ_SCOPE) {
        Ok(user) => axum::Json(json!({
            "owner": user,
            "events": calendar.events(&user),
        }))
        .into_response(),
        Err(refused) => refused.into_response(),
    };
    count(&calendar, response)
}

fn bad_event(description: &'static str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": "invalid_event", "error_description": description })),
    )
        .into_response()
}

async fn add_event(
    State(calendar): State<Arc<Calendar>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = match calendar.bearer(&headers, WRITE_SCOPE) {
        Err(refused) => refused.into_response(),
        Ok(user) => new_event(&calendar, &user, &body),
    };
    count(&calendar, response)
}

fn new_event(calendar: &Calendar, user: &str, body: &[u8]) -> Response {
    if body.len() > MAX_BODY_BYTES {
        return bad_event("the event is too large");
    }
    let Ok(event) = serde_json::from_slice::<Event>(body) else {
        return bad_event("send {\"title\", \"start\", \"end\"} as JSON");
    };
    let title = event.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return bad_event("title must be 1 to 200 characters");
    }
    let (Ok(start), Ok(end)) = (
        chrono::DateTime::parse_from_rfc3339(&event.start),
        chrono::DateTime::parse_from_rfc3339(&event.end),
    ) else {
        return bad_event("start and end must be RFC 3339 times");
    };
    if end < start {
        return bad_event("the event ends before it starts");
    }
    let event = Event {
        title: title.to_string(),
        start: event.start,
        end: event.end,
    };
    let mut added = lock(&calendar.added);
    let mine = added.entry(user.to_string()).or_default();
    if mine.len() >= MAX_ADDED_EVENTS {
        return bad_event("this calendar is full");
    }
    mine.push(event.clone());
    (StatusCode::CREATED, axum::Json(event)).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests
mod tests {
    use super::consent::{authorize, consent};
    use super::token::token;
    use super::*;
    use axum::extract::RawQuery;

    const URL: &str = "http://127.0.0.1:8080";

    struct Fixture {
        calendar: Arc<Calendar>,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let clients = vec![
            CalendarClient::for_tenant("acme", URL, "acme-secret").unwrap(),
            CalendarClient::for_tenant("globex", URL, "globex-secret").unwrap(),
        ];
        Fixture {
            calendar: Arc::new(Calendar::new(clients, &storage).unwrap()),
            _dir: dir,
        }
    }

    fn query(pairs: &[(&str, &str)]) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    }

    const VERIFIER: &str = "a-verifier-that-is-long-enough-for-pkce-0123456789";

    fn challenge() -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()))
    }

    fn location(response: &Response) -> url::Url {
        url::Url::parse(response.headers()[header::LOCATION].to_str().unwrap()).unwrap()
    }

    fn pairs(url: &url::Url) -> HashMap<String, String> {
        url.query_pairs().into_owned().collect()
    }

    async fn text(response: Response) -> String {
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    impl Fixture {
        async fn authorize(&self, extra: &[(&str, &str)]) -> Response {
            let c = challenge();
            let redirect = format!("{URL}/connect/acme/callback/calendar");
            let mut p = vec![
                ("response_type", "code"),
                ("client_id", "airlock-acme"),
                ("redirect_uri", redirect.as_str()),
                ("state", "s1"),
                ("code_challenge", c.as_str()),
                ("code_challenge_method", "S256"),
            ];
            p.extend_from_slice(extra);
            authorize(
                State(self.calendar.clone()),
                HeaderMap::new(),
                RawQuery(Some(query(&p))),
            )
            .await
        }

        /// The consent page's form token and cookie.
        async fn page(&self) -> (String, String) {
            let response = self.authorize(&[]).await;
            assert_eq!(response.status(), StatusCode::OK);
            let cookie = response.headers()[header::SET_COOKIE]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string();
            let html = text(response).await;
            let token = html
                .split("name=\"form_token\" value=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string();
            (token, cookie)
        }

        async fn consent(&self, cookie: &str, form: &[(&str, &str)]) -> Response {
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
            consent(
                State(self.calendar.clone()),
                headers,
                Bytes::from(query(form)),
            )
            .await
        }

        async fn code(&self, account: &str) -> String {
            let (token, cookie) = self.page().await;
            let response = self
                .consent(
                    &cookie,
                    &[
                        ("form_token", &token),
                        ("account", account),
                        ("decision", "allow"),
                    ],
                )
                .await;
            pairs(&location(&response))["code"].clone()
        }

        async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
            let response = token(
                State(self.calendar.clone()),
                HeaderMap::new(),
                Bytes::from(query(form)),
            )
            .await;
            let status = response.status();
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
            (status, serde_json::from_str(&text(response).await).unwrap())
        }

        async fn redeem(&self, code: &str) -> (StatusCode, serde_json::Value) {
            let redirect = format!("{URL}/connect/acme/callback/calendar");
            self.token(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &redirect),
                ("code_verifier", VERIFIER),
                ("client_id", "airlock-acme"),
                ("client_secret", "acme-secret"),
            ])
            .await
        }

        async fn refresh(&self, refresh_token: &str) -> (StatusCode, serde_json::Value) {
            self.token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", "airlock-acme"),
                ("client_secret", "acme-secret"),
            ])
            .await
        }

        async fn events(&self, token: &str) -> (StatusCode, serde_json::Value) {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            );
            let response = list_events(State(self.calendar.clone()), headers).await;
            let status = response.status();
            (status, serde_json::from_str(&text(response).await).unwrap())
        }
    }

    #[tokio::test]
    async fn consent_then_code_then_tokens_then_events() {
        let f = fixture();
        let page = f.authorize(&[("login_hint", "bob")]).await;
        assert_eq!(page.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        let html = text(page).await;
        assert!(html.contains("allow <b>airlock (acme)</b> to read your calendar"));
        assert!(html.contains("value=\"bob\" required checked"), "{html}");
        assert!(html.contains("value=\"alice\" required>"), "{html}");

        let code = f.code("alice").await;
        assert!(code.starts_with(CODE_PREFIX));
        let (status, tokens) = f.redeem(&code).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["expires_in"], 3600);
        assert_eq!(tokens["scope"], READ_SCOPE);
        let access = tokens["access_token"].as_str().unwrap();
        assert!(access.starts_with(ACCESS_PREFIX));
        assert!(
            tokens["refresh_token"]
                .as_str()
                .unwrap()
                .starts_with(REFRESH_PREFIX)
        );
        let (status, events) = f.events(access).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(events["owner"], "alice");
        assert_eq!(events["events"][0]["title"], "Quarterly planning");
        let stats = CalendarHooks(f.calendar.clone()).stats();
        assert_eq!((stats.code_grants, stats.api_requests), (1, 1));
    }

    #[tokio::test]
    async fn deny_redirects_with_access_denied_and_the_state() {
        let f = fixture();
        let (token, cookie) = f.page().await;
        let response = f
            .consent(&cookie, &[("form_token", &token), ("decision", "deny")])
            .await;
        let to = location(&response);
        assert!(
            to.as_str()
                .starts_with(&format!("{URL}/connect/acme/callback/calendar?"))
        );
        let p = pairs(&to);
        assert_eq!(p["error"], "access_denied");
        assert_eq!(p["state"], "s1");
        assert!(!p.contains_key("code"));
    }

    #[tokio::test]
    async fn the_form_token_needs_its_cookie_and_works_once() {
        let f = fixture();
        let (token, cookie) = f.page().await;
        let allow = [
            ("form_token", token.as_str()),
            ("account", "alice"),
            ("decision", "allow"),
        ];
        let elsewhere = f
            .consent(&format!("{CONSENT_COOKIE}=someone-else"), &allow)
            .await;
        assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);
        // No account picked: the form may be answered again.
        let none = f
            .consent(&cookie, &[("form_token", &token), ("decision", "allow")])
            .await;
        assert_eq!(none.status(), StatusCode::BAD_REQUEST);
        let first = f.consent(&cookie, &allow).await;
        assert_eq!(first.status(), StatusCode::SEE_OTHER);
        let second = f.consent(&cookie, &allow).await;
        assert_eq!(second.status(), StatusCode::BAD_REQUEST);
        assert!(!second.headers().contains_key(header::LOCATION));
    }

    #[tokio::test]
    async fn bad_authorization_requests_are_pages_or_redirects_as_trusted() {
        let f = fixture();
        let bad_redirect = f
            .authorize(&[("redirect_uri", "https://evil.example/cb")])
            .await;
        assert_eq!(bad_redirect.status(), StatusCode::BAD_REQUEST);
        assert!(!bad_redirect.headers().contains_key(header::LOCATION));
        let unknown = authorize(
            State(f.calendar.clone()),
            HeaderMap::new(),
            RawQuery(Some(query(&[
                ("response_type", "code"),
                ("client_id", "airlock-initech"),
            ]))),
        )
        .await;
        assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
        assert!(!unknown.headers().contains_key(header::LOCATION));
        // Once the client and redirect URI are known, errors go back to it.
        let plain = authorize(
            State(f.calendar.clone()),
            HeaderMap::new(),
            RawQuery(Some(query(&[
                ("response_type", "code"),
                ("client_id", "airlock-acme"),
                ("state", "s2"),
            ]))),
        )
        .await;
        let p = pairs(&location(&plain));
        assert_eq!(
            (p["error"].as_str(), p["state"].as_str()),
            ("invalid_request", "s2")
        );
        let scope = f.authorize(&[("scope", "calendar.admin")]).await;
        assert_eq!(pairs(&location(&scope))["error"], "invalid_scope");
    }

    #[tokio::test]
    async fn refresh_rotates_and_reuse_revokes_the_family() {
        let f = fixture();
        let code = f.code("bob").await;
        let (_, first) = f.redeem(&code).await;
        let rt1 = first["refresh_token"].as_str().unwrap().to_string();
        let (status, second) = f.refresh(&rt1).await;
        assert_eq!(status, StatusCode::OK, "{second}");
        let rt2 = second["refresh_token"].as_str().unwrap().to_string();
        assert_ne!(rt1, rt2);
        let at2 = second["access_token"].as_str().unwrap().to_string();
        assert_eq!(f.events(&at2).await.1["owner"], "bob");
        // The rotated token comes back: refused, and the family ends.
        let (status, body) = f.refresh(&rt1).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant"))
        );
        let (status, body) = f.refresh(&rt2).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant"))
        );
        assert_eq!(f.events(&at2).await.0, StatusCode::UNAUTHORIZED);
        let stats = CalendarHooks(f.calendar.clone()).stats();
        assert_eq!((stats.code_grants, stats.refresh_grants), (1, 1));
    }

    #[tokio::test]
    async fn codes_are_bound_to_client_redirect_and_verifier() {
        let f = fixture();
        let redirect = format!("{URL}/connect/acme/callback/calendar");
        // Another client (globex's, with its own secret) cannot redeem acme's code.
        let code = f.code("alice").await;
        let (status, body) = f
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect),
                ("code_verifier", VERIFIER),
                ("client_id", "airlock-globex"),
                ("client_secret", "globex-secret"),
            ])
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant"))
        );
        // A wrong secret is a client error, before the code is looked at.
        let code = f.code("alice").await;
        let (status, body) = f
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect),
                ("code_verifier", VERIFIER),
                ("client_id", "airlock-acme"),
                ("client_secret", "guess"),
            ])
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client"))
        );
        // …so the code still works, once.
        assert_eq!(f.redeem(&code).await.0, StatusCode::OK);
        let (status, body) = f.redeem(&code).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant"))
        );
    }

    #[tokio::test]
    async fn the_api_wants_a_live_token_with_its_scope() {
        let f = fixture();
        let hooks = CalendarHooks(f.calendar.clone());
        let (_, tokens) = f.redeem(&f.code("carol").await).await;
        let access = tokens["access_token"].as_str().unwrap().to_string();
        assert_eq!(f.events(&access).await.0, StatusCode::OK);
        // Read-only tokens cannot add events.
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {access}")).unwrap(),
        );
        let response = add_event(
            State(f.calendar.clone()),
            headers,
            Bytes::from_static(
                br#"{"title":"x","start":"2026-01-01T00:00:00Z","end":"2026-01-01T01:00:00Z"}"#,
            ),
        )
        .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(hooks.expire_access_tokens("carol"), 1);
        let (status, body) = f.events(&access).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_token"))
        );
        // Zero lifetime: expired on arrival.
        hooks.set_access_token_lifetime(Duration::ZERO);
        let rt = tokens["refresh_token"].as_str().unwrap();
        let (status, fresh) = f.refresh(rt).await;
        assert_eq!((status, &fresh["expires_in"]), (StatusCode::OK, &json!(0)));
        assert_eq!(
            f.events(fresh["access_token"].as_str().unwrap()).await.0,
            StatusCode::UNAUTHORIZED
        );
        // Revoking the grant ends the refresh token too.
        assert_eq!(hooks.revoke_grants("carol"), 1);
        let (status, _) = f.refresh(fresh["refresh_token"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}
