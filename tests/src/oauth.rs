//! OAuth servers for the account-connect tests, on `127.0.0.1:0`:
//! a tenant issuer that signs browser users in with authorization code +
//! PKCE (who logs in is chosen by the test), and a third-party provider with
//! an API, refresh-token rotation, counters and failure switches. Every token
//! the provider issues carries [`PLANTED`], so a test can search for leaks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use sha2::{Digest, Sha256};

use airlock_host::vault::MasterKey;

use crate::guests;
use crate::idp::{TestIdp, TestKey, now};
use crate::server::TestServer;

/// Bytes in every token the provider issues.
pub const PLANTED: &str = "PLANTEDx7q";

fn random() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("random");
    URL_SAFE_NO_PAD.encode(b)
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn form(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn redirect_with(uri: &str, pairs: &[(&str, &str)]) -> Response {
    let mut url = url::Url::parse(uri).expect("redirect_uri");
    url.query_pairs_mut().extend_pairs(pairs);
    Redirect::to(url.as_str()).into_response()
}

struct Code {
    user: String,
    redirect_uri: String,
    challenge: String,
    resource: Option<String>,
}

fn spawn(app: Router, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, url)
}

// ---------------------------------------------------------------- issuer

/// Signs browser users in for the connect page: `/authorize` logs in the
/// user set by [`LoginIssuer::login_as`] at once, `/token` answers an access
/// token signed by the tenant issuer's key for the requested resource.
pub struct LoginIssuer {
    /// Base URL (`/authorize`, `/token`).
    pub url: String,
    state: Arc<LoginState>,
    task: tokio::task::JoinHandle<()>,
}

struct LoginState {
    issuer: String,
    key: TestKey,
    scope: String,
    user: Mutex<String>,
    codes: Mutex<HashMap<String, Code>>,
}

impl Drop for LoginIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LoginIssuer {
    /// Tokens name `issuer`, are signed with `key` and carry `scope`.
    pub async fn start(issuer: &str, key: TestKey, scope: &str) -> Self {
        let (listener, url) = bind().await;
        let state = Arc::new(LoginState {
            issuer: issuer.to_string(),
            key,
            scope: scope.to_string(),
            user: Mutex::new("alice".into()),
            codes: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/authorize", get(login_authorize))
            .route("/token", post(login_token))
            .with_state(state.clone());
        LoginIssuer {
            url,
            state,
            task: spawn(app, listener),
        }
    }

    /// Who signs in from now on.
    pub fn login_as(&self, user: &str) {
        *self.state.user.lock().expect("lock") = user.to_string();
    }
}

async fn login_authorize(
    State(s): State<Arc<LoginState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    assert_eq!(
        q.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    let code = random();
    s.codes.lock().expect("lock").insert(
        code.clone(),
        Code {
            user: s.user.lock().expect("lock").clone(),
            redirect_uri: q["redirect_uri"].clone(),
            challenge: q["code_challenge"].clone(),
            resource: q.get("resource").cloned(),
        },
    );
    redirect_with(
        &q["redirect_uri"],
        &[("code", &code), ("state", &q["state"])],
    )
}

async fn login_token(State(s): State<Arc<LoginState>>, body: String) -> Response {
    let p = form(&body);
    let Some(code) = s.codes.lock().expect("lock").remove(&p["code"]) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    };
    if s256(&p["code_verifier"]) != code.challenge || p["redirect_uri"] != code.redirect_uri {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    let now = now();
    let token = s.key.sign(&json!({
        "iss": s.issuer, "aud": code.resource, "sub": code.user, "scope": s.scope,
        "client_id": "airlock-connect", "iat": now, "exp": now + 300,
    }));
    axum::Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 300}))
        .into_response()
}

// -------------------------------------------------------------- provider

/// The provider's client registration airlock uses.
pub const CLIENT_ID: &str = "airlock-test";
/// Its secret.
pub const CLIENT_SECRET: &str = "provider-client-secret";

#[derive(Default)]
struct Grants {
    /// access token → (user, expires at)
    access: HashMap<String, (String, u64)>,
    /// refresh token → user (only the newest of each family is valid)
    refresh: HashMap<String, String>,
    codes: HashMap<String, Code>,
}

/// A third-party provider: `/authorize` consents as the user set by
/// [`TestProvider::consent_as`], `/token` redeems codes and rotates refresh
/// tokens, `/api/events` answers `{"owner": user}` for a valid token.
pub struct TestProvider {
    /// Base URL.
    pub url: String,
    state: Arc<ProviderState>,
    task: tokio::task::JoinHandle<()>,
}

struct ProviderState {
    user: Mutex<String>,
    lifetime: Mutex<u64>,
    grants: Mutex<Grants>,
    refreshes: Mutex<u32>,
    refresh_fails: Mutex<Option<&'static str>>,
    slow_refresh_ms: Mutex<u64>,
    always_401: Mutex<bool>,
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestProvider {
    /// Start a provider.
    pub async fn start() -> Self {
        let (listener, url) = bind().await;
        let state = Arc::new(ProviderState {
            user: Mutex::new("alice-cal".into()),
            lifetime: Mutex::new(3600),
            grants: Mutex::new(Grants::default()),
            refreshes: Mutex::new(0),
            refresh_fails: Mutex::new(None),
            slow_refresh_ms: Mutex::new(0),
            always_401: Mutex::new(false),
        });
        let app = Router::new()
            .route("/authorize", get(provider_authorize))
            .route("/token", post(provider_token))
            .route("/api/events", get(events))
            .with_state(state.clone());
        TestProvider {
            url,
            state,
            task: spawn(app, listener),
        }
    }

    /// Whose account is connected at the next consent.
    pub fn consent_as(&self, user: &str) {
        *self.state.user.lock().expect("lock") = user.to_string();
    }

    /// Lifetime of access tokens issued from now on, in seconds.
    pub fn set_lifetime(&self, seconds: u64) {
        *self.state.lifetime.lock().expect("lock") = seconds;
    }

    /// Refresh grants served so far.
    pub fn refreshes(&self) -> u32 {
        *self.state.refreshes.lock().expect("lock")
    }

    /// Make refresh grants fail with `invalid_grant` (or work again).
    pub fn fail_refreshes(&self, fail: bool) {
        self.fail_refreshes_with(fail.then_some("invalid_grant"));
    }

    /// Make refresh grants fail with this OAuth error code (400), or work again.
    pub fn fail_refreshes_with(&self, error: Option<&'static str>) {
        *self.state.refresh_fails.lock().expect("lock") = error;
    }

    /// Delay every refresh by `ms`, so concurrent callers overlap.
    pub fn slow_refreshes(&self, ms: u64) {
        *self.state.slow_refresh_ms.lock().expect("lock") = ms;
    }

    /// Make the API answer 401 to every token (or behave again).
    pub fn always_unauthorized(&self, on: bool) {
        *self.state.always_401.lock().expect("lock") = on;
    }

    /// Revoke every access token (refresh tokens stay valid): the API answers 401.
    pub fn revoke_access_tokens(&self) {
        self.state.grants.lock().expect("lock").access.clear();
    }

    /// Every token issued so far that is still valid.
    pub fn live_tokens(&self) -> Vec<String> {
        let g = self.state.grants.lock().expect("lock");
        g.access.keys().chain(g.refresh.keys()).cloned().collect()
    }
}

async fn provider_authorize(
    State(s): State<Arc<ProviderState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let code = random();
    s.grants.lock().expect("lock").codes.insert(
        code.clone(),
        Code {
            user: s.user.lock().expect("lock").clone(),
            redirect_uri: q["redirect_uri"].clone(),
            challenge: q["code_challenge"].clone(),
            resource: None,
        },
    );
    redirect_with(
        &q["redirect_uri"],
        &[("code", &code), ("state", &q["state"])],
    )
}

fn issue(s: &ProviderState, user: &str) -> Response {
    let access = format!("{PLANTED}-at-{}", random());
    let refresh = format!("{PLANTED}-rt-{}", random());
    let lifetime = *s.lifetime.lock().expect("lock");
    let mut g = s.grants.lock().expect("lock");
    g.access
        .insert(access.clone(), (user.to_string(), now() + lifetime));
    g.refresh.retain(|_, u| u != user);
    g.refresh.insert(refresh.clone(), user.to_string());
    axum::Json(json!({
        "access_token": access, "token_type": "Bearer", "expires_in": lifetime,
        "refresh_token": refresh, "scope": "calendar.read",
    }))
    .into_response()
}

fn invalid_grant() -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": "invalid_grant"})),
    )
        .into_response()
}

async fn provider_token(
    State(s): State<Arc<ProviderState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let p = form(&body);
    match p.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = s.grants.lock().expect("lock").codes.remove(&p["code"]);
            match code {
                Some(c)
                    if s256(&p["code_verifier"]) == c.challenge
                        && p["redirect_uri"] == c.redirect_uri =>
                {
                    issue(&s, &c.user)
                }
                _ => invalid_grant(),
            }
        }
        Some("refresh_token") => {
            *s.refreshes.lock().expect("lock") += 1;
            let delay = *s.slow_refresh_ms.lock().expect("lock");
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            let failure = *s.refresh_fails.lock().expect("lock");
            if let Some(error) = failure {
                return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error})))
                    .into_response();
            }
            let user = s
                .grants
                .lock()
                .expect("lock")
                .refresh
                .remove(&p["refresh_token"]);
            match user {
                Some(user) => issue(&s, &user),
                None => invalid_grant(),
            }
        }
        _ => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response(),
    }
}

async fn events(State(s): State<Arc<ProviderState>>, headers: HeaderMap) -> Response {
    let always_401 = *s.always_401.lock().expect("lock");
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let owner = s
        .grants
        .lock()
        .expect("lock")
        .access
        .get(token)
        .filter(|(_, exp)| *exp > now() && !always_401)
        .map(|(user, _)| user.clone());
    match owner {
        Some(owner) => axum::Json(json!({
            "owner": owner,
            "events": [{"title": format!("{owner}'s meeting"), "start": "2026-12-02T10:00:00Z", "end": "2026-12-02T11:00:00Z"}],
        }))
        .into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer error=\"invalid_token\"")],
        )
            .into_response(),
    }
}

// ------------------------------------------------------------- together

/// A host whose tenant `acme` has the `calendar` tool on a `user-token`
/// service at a [`TestProvider`], with connect through a [`LoginIssuer`].
pub struct ConnectSetup {
    /// The tenant's issuer.
    pub idp: TestIdp,
    /// Where the connect page signs users in.
    pub login: LoginIssuer,
    /// The third party.
    pub provider: TestProvider,
    /// The host.
    pub server: TestServer,
    _secrets: tempfile::TempDir,
}

impl ConnectSetup {
    /// Start it all; the provider's client secret is in a file.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// Start it all with the provider's client secret in the vault (put
    /// there before the host starts, as `airlock vault put-secret` does).
    pub async fn start_with_secret_in_vault() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(secret_in_vault: bool) -> Self {
        let idp = TestIdp::start("").await;
        let login = LoginIssuer::start(&idp.issuer, idp.current_key(), "mcp").await;
        let provider = TestProvider::start().await;
        let secrets = tempfile::tempdir().expect("tempdir");
        let secret_file = secrets.path().join("provider.secret");
        std::fs::write(&secret_file, CLIENT_SECRET).expect("write");
        let key_file = secrets.path().join("vault.key");
        MasterKey::create_file(&key_file).expect("master key");
        let rest = format!(
            "[vault]\nmaster_key_file = {key:?}\n\
         [components.calendar]\npath = {calendar:?}\n\
         [tenants.acme]\nissuers = [{{ issuer = {iss:?} }}]\nscopes = [\"mcp\"]\n\
         [[tenants.acme.install]]\ncomponent = \"calendar\"\nservices = [\"calendar\"]\n\
         [tenants.acme.connect]\nclient_id = \"airlock-connect\"\n\
         authorization_endpoint = \"{login}/authorize\"\ntoken_endpoint = \"{login}/token\"\n\
         [tenants.acme.providers.calendar]\nauthorization_endpoint = \"{p}/authorize\"\n\
         token_endpoint = \"{p}/token\"\nclient_id = \"{CLIENT_ID}\"\n{secret}\n\
         scopes = [\"calendar.read\"]\n\
         [tenants.acme.services.calendar]\nbase_url = \"{p}/api\"\nmode = \"user-token\"\n\
         provider = \"calendar\"\nallow_private = true\nmethods = [\"GET\", \"POST\"]\n\
         path_prefixes = [\"/events\"]\n",
            key = key_file.display().to_string(),
            calendar = guests::CALENDAR,
            iss = idp.issuer,
            login = login.url,
            p = provider.url,
            secret = if secret_in_vault {
                "secret_vault = \"calendar-client\"".to_string()
            } else {
                format!("secret_file = {:?}", secret_file.display().to_string())
            },
        );
        let data = tempfile::tempdir().expect("tempdir");
        if secret_in_vault {
            let storage =
                airlock_host::storage::Storage::open(&data.path().join("db")).expect("storage");
            let vault = airlock_host::vault::Vault::open(
                &storage,
                &airlock_host::config::VaultKeySource::File(key_file.clone()),
            )
            .expect("vault");
            vault
                .put_secret(
                    "acme",
                    "calendar-client",
                    &airlock_host::delegate::Secret::new(CLIENT_SECRET.into()),
                )
                .expect("put secret");
        }
        let server = TestServer::start_brokered_in(data, &rest).await;
        ConnectSetup {
            idp,
            login,
            provider,
            server,
            _secrets: secrets,
        }
    }

    /// A valid token of `user` for the tenant.
    pub fn token(&self, user: &str) -> String {
        self.idp.token(&self.server.endpoint("acme"), user, "mcp")
    }
}

/// What a browser does with a connect link: follow redirects (carrying
/// airlock's cookie back to airlock only) until a page is shown.
pub struct Browser {
    /// The client (no redirects followed by itself).
    pub http: reqwest::Client,
    airlock: String,
    cookie: Option<String>,
}

impl Browser {
    /// A browser that sends airlock's cookie back to `airlock` only.
    pub fn new(airlock: &str) -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            airlock: airlock.to_string(),
            cookie: None,
        }
    }

    /// Follow from `url`; returns the final status, body and every URL visited.
    pub async fn open(&mut self, url: &str) -> (u16, String, Vec<String>) {
        let mut url = url.to_string();
        let mut visited = Vec::new();
        for _ in 0..10 {
            visited.push(url.clone());
            let mut request = self.http.get(&url);
            if url.starts_with(&self.airlock)
                && let Some(cookie) = &self.cookie
            {
                request = request.header("cookie", cookie);
            }
            let response = request.send().await.expect("send");
            if url.starts_with(&self.airlock) {
                assert_eq!(
                    response.headers()["referrer-policy"],
                    "no-referrer",
                    "{url}"
                );
                if let Some(set) = response.headers().get("set-cookie") {
                    let set = set.to_str().expect("cookie");
                    assert!(
                        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
                        "{set}"
                    );
                    self.cookie = set.split(';').next().map(str::to_string);
                }
            }
            let status = response.status().as_u16();
            match response.headers().get("location") {
                Some(location) if (300..400).contains(&status) => {
                    url = location.to_str().expect("location").to_string();
                }
                _ => return (status, response.text().await.expect("body"), visited),
            }
        }
        panic!("redirect loop: {visited:?}");
    }
}
