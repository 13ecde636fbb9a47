//! Account connect end to end over real HTTP: a `user-token` call with no
//! connected account ends in a URL elicitation (both protocol eras, and a
//! tool error for clients that cannot show one); the connect page signs the
//! browser user in at the tenant's issuer, refuses anyone else, runs code +
//! PKCE with the provider and seals the tokens; the retry succeeds. Then
//! refresh: before expiry, after a 401, once for many concurrent calls, and
//! a refused refresh asks the user to connect again.

use airlock_host::vault::MasterKey;
use airlock_tests::guests;
use airlock_tests::idp::TestIdp;
use airlock_tests::oauth::{CLIENT_ID, CLIENT_SECRET, LoginIssuer, PLANTED, TestProvider};
use airlock_tests::server::TestServer;
use serde_json::{Value, json};

struct Setup {
    idp: TestIdp,
    login: LoginIssuer,
    provider: TestProvider,
    server: TestServer,
    _secrets: tempfile::TempDir,
}

async fn setup() -> Setup {
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
         token_endpoint = \"{p}/token\"\nclient_id = \"{CLIENT_ID}\"\nsecret_file = {secret:?}\n\
         scopes = [\"calendar.read\"]\n\
         [tenants.acme.services.calendar]\nbase_url = \"{p}/api\"\nmode = \"user-token\"\n\
         provider = \"calendar\"\nallow_private = true\nmethods = [\"GET\", \"POST\"]\n\
         path_prefixes = [\"/events\"]\n",
        key = key_file.display().to_string(),
        calendar = guests::CALENDAR,
        iss = idp.issuer,
        login = login.url,
        p = provider.url,
        secret = secret_file.display().to_string(),
    );
    let server = TestServer::start_brokered(&rest).await;
    Setup {
        idp,
        login,
        provider,
        server,
        _secrets: secrets,
    }
}

impl Setup {
    fn token(&self, user: &str) -> String {
        self.idp.token(&self.server.endpoint("acme"), user, "mcp")
    }
}

/// `data: {json}` lines of an event stream, or the body as JSON.
fn messages(body: &str) -> Vec<Value> {
    let from_sse: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect();
    if from_sse.is_empty() {
        serde_json::from_str(body).into_iter().collect()
    } else {
        from_sse
    }
}

/// A stateless (2026-07-28) `tools/call` declaring `capabilities`.
async fn call_stateless(s: &Setup, user: &str, capabilities: Value) -> Value {
    let body = reqwest::Client::new()
        .post(s.server.endpoint("acme"))
        .bearer_auth(s.token(user))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "list_events")
        .json(&json!({
            "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "list_events", "arguments": {},
              "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                        "io.modelcontextprotocol/clientCapabilities": capabilities}}
        }))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    messages(&body)
        .into_iter()
        .find(|m| m["id"] == 7)
        .unwrap_or_else(|| panic!("no response in {body}"))
}

fn url_capable() -> Value {
    json!({"elicitation": {"url": {}}})
}

/// The URL elicitation of an input-required result.
fn elicitation_of(response: &Value) -> (String, String) {
    let result = &response["result"];
    assert_eq!(result["resultType"], "input_required", "{response}");
    let requests = result["inputRequests"].as_object().expect("inputRequests");
    assert_eq!(requests.len(), 1, "{response}");
    let (_, request) = requests.iter().next().expect("one request");
    assert_eq!(request["method"], "elicitation/create", "{response}");
    let params = &request["params"];
    assert_eq!(params["mode"], "url", "{response}");
    (
        params["url"].as_str().expect("url").to_string(),
        params["elicitationId"].as_str().expect("id").to_string(),
    )
}

/// What a browser does with a connect link: follow redirects (carrying
/// airlock's cookie back to airlock only) until a page is shown.
struct Browser {
    http: reqwest::Client,
    airlock: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(airlock: &str) -> Self {
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
    async fn open(&mut self, url: &str) -> (u16, String, Vec<String>) {
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

async fn connect(s: &Setup, user: &str, calendar_user: &str) {
    let response = call_stateless(s, user, url_capable()).await;
    let (url, _) = elicitation_of(&response);
    s.login.login_as(user);
    s.provider.consent_as(calendar_user);
    let (status, page, _) = Browser::new(&s.server.url).open(&url).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("connected"), "{page}");
}

fn owner(response: &Value) -> String {
    let result = &response["result"];
    assert_ne!(result["isError"], true, "{response}");
    result["structuredContent"]["owner"]
        .as_str()
        .unwrap_or_else(|| panic!("no owner in {response}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_loop_runs_end_to_end_and_each_user_connects_their_own_account() {
    let s = setup().await;
    let response = call_stateless(&s, "alice", url_capable()).await;
    let (url, elicitation_id) = elicitation_of(&response);
    // Only airlock's page and an opaque id: no user, provider or token.
    let prefix = format!("{}/connect/acme/", s.server.url);
    let id = url.strip_prefix(&prefix).unwrap_or_else(|| panic!("{url}"));
    assert!(
        id.len() >= 40 && !id.contains("alice") && !id.contains("calendar"),
        "{url}"
    );
    assert_ne!(id, elicitation_id);

    s.login.login_as("alice");
    s.provider.consent_as("alice-cal");
    let (status, page, visited) = Browser::new(&s.server.url).open(&url).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("connected"), "{page}");
    assert!(
        visited.iter().any(|u| u.starts_with(&s.login.url)),
        "{visited:?}"
    );
    assert!(
        visited.iter().any(|u| u.starts_with(&s.provider.url)),
        "{visited:?}"
    );

    // The retry succeeds with alice's own account.
    let response = call_stateless(&s, "alice", url_capable()).await;
    assert_eq!(owner(&response), "alice-cal");

    // bob is asked separately and never sees alice's calendar.
    let response = call_stateless(&s, "bob", url_capable()).await;
    let (bob_url, _) = elicitation_of(&response);
    assert_ne!(bob_url, url);
    s.login.login_as("bob");
    s.provider.consent_as("bob-cal");
    let (status, page, _) = Browser::new(&s.server.url).open(&bob_url).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        owner(&call_stateless(&s, "bob", url_capable()).await),
        "bob-cal"
    );
    assert_eq!(
        owner(&call_stateless(&s, "alice", url_capable()).await),
        "alice-cal"
    );

    // The tokens are sealed: no byte of any token is on disk in the clear.
    let live = s.provider.live_tokens();
    assert!(live.len() >= 4, "{live:?}");
    let mut found = Vec::new();
    crate::leaks::files_containing(s.server.data_dir(), &[PLANTED], &mut found);
    assert!(found.is_empty(), "token bytes on disk: {found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_url_elicitation_gets_the_link_in_a_tool_error() {
    let s = setup().await;
    let response = call_stateless(&s, "alice", json!({})).await;
    let result = &response["result"];
    assert_eq!(result["isError"], true, "{response}");
    let text = result["content"][0]["text"].as_str().expect("text");
    assert!(
        text.contains(&format!("{}/connect/acme/", s.server.url)),
        "{text}"
    );
    // Form-only elicitation is not URL elicitation either.
    let response = call_stateless(&s, "alice", json!({"elicitation": {"form": {}}})).await;
    assert_eq!(response["result"]["isError"], true, "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_era_answers_url_elicitation_required_and_notifies_completion() {
    let s = setup().await;
    let http = reqwest::Client::new();
    let endpoint = s.server.endpoint("acme");
    let token = s.token("alice");
    let init = http
        .post(&endpoint)
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25",
                       "capabilities": {"elicitation": {"url": {}}},
                       "clientInfo": {"name": "t", "version": "1"}}
        }))
        .send()
        .await
        .expect("initialize");
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .expect("session")
        .to_string();
    let post = |body: Value| {
        http.post(&endpoint)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&body)
            .send()
    };
    post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .expect("initialized");
    let body = post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                           "params": {"name": "list_events", "arguments": {}}}))
    .await
    .expect("call")
    .text()
    .await
    .expect("body");
    let response = messages(&body)
        .into_iter()
        .find(|m| m["id"] == 2)
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(response["error"]["code"], -32042, "{response}");
    let elicitation = &response["error"]["data"]["elicitations"][0];
    assert_eq!(elicitation["mode"], "url", "{response}");
    let url = elicitation["url"].as_str().expect("url").to_string();
    let id = elicitation["elicitationId"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(
        elicitation["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );

    // The session's event stream hears when the user has connected.
    let mut stream = http
        .get(&endpoint)
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    s.login.login_as("alice");
    let (status, page, _) = Browser::new(&s.server.url).open(&url).await;
    assert_eq!(status, 200, "{page}");
    let mut seen = String::new();
    let notified = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if messages(&seen).iter().any(|m| {
                m["method"] == "notifications/elicitation/complete"
                    && m["params"]["elicitationId"] == id.as_str()
            }) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(notified, Ok(true), "{seen}");
    let body = post(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                           "params": {"name": "list_events", "arguments": {}}}))
    .await
    .expect("retry")
    .text()
    .await
    .expect("body");
    let response = messages(&body)
        .into_iter()
        .find(|m| m["id"] == 3)
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(owner(&response), "alice-cal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_cannot_complete_a_connect_link() {
    let s = setup().await;
    let (url, _) = elicitation_of(&call_stateless(&s, "alice", url_capable()).await);
    // bob (signed in at the issuer as bob) opens alice's link.
    s.login.login_as("bob");
    s.provider.consent_as("bob-cal");
    let (status, page, visited) = Browser::new(&s.server.url).open(&url).await;
    assert_eq!(status, 403, "{page}");
    assert!(
        !visited.iter().any(|u| u.starts_with(&s.provider.url)),
        "bob never reaches the provider: {visited:?}"
    );
    // Nothing was connected for alice, and the link still works for her.
    let response = call_stateless(&s, "alice", url_capable()).await;
    let (again, _) = elicitation_of(&response);
    assert_eq!(again, url, "the same link is handed out while it lives");
    s.login.login_as("alice");
    s.provider.consent_as("alice-cal");
    let (status, page, _) = Browser::new(&s.server.url).open(&url).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        owner(&call_stateless(&s, "alice", url_capable()).await),
        "alice-cal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_links_and_states_are_single_use_and_bound_to_the_browser() {
    let s = setup().await;
    let (url, _) = elicitation_of(&call_stateless(&s, "alice", url_capable()).await);
    s.login.login_as("alice");
    // Walk by hand to keep each step's URL.
    let mut browser = Browser::new(&s.server.url);
    let http = &browser.http.clone();
    let step = async |url: &str, cookie: Option<&str>| {
        let mut request = http.get(url);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().expect("location").to_string());
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.split(';').next())
            .map(str::to_string);
        (status, location, cookie)
    };
    let (_, to_issuer, cookie) = step(&url, None).await;
    let cookie = cookie.expect("cookie");
    let (_, login_return, _) = step(&to_issuer.expect("to issuer"), None).await;
    let login_return = login_return.expect("back to airlock");
    // Without the cookie that started it, the step is refused (and spent).
    let (status, _, _) = step(&login_return, Some("airlock_connect=forged")).await;
    assert_eq!(status, 400);
    let (status, _, _) = step(&login_return, Some(&cookie)).await;
    assert_eq!(
        status, 400,
        "a state is used once, even by a refused attempt"
    );

    // A fresh walk through the same link works, and the link then is spent.
    let (_, to_issuer, cookie) = step(&url, None).await;
    let cookie = cookie.expect("cookie");
    let (_, login_return, _) = step(&to_issuer.expect("to issuer"), None).await;
    let (status, to_provider, _) = step(&login_return.expect("login"), Some(&cookie)).await;
    assert_eq!(status, 302);
    let (_, provider_return, _) = step(&to_provider.expect("to provider"), None).await;
    let provider_return = provider_return.expect("callback");
    let (status, _, _) = step(&provider_return, Some(&cookie)).await;
    assert_eq!(status, 200);
    // Replays: the callback's state, and the link itself.
    let (status, _, _) = step(&provider_return, Some(&cookie)).await;
    assert_eq!(status, 400);
    let (status, page, _) = browser.open(&url).await;
    assert_eq!(status, 400, "{page}");
    // An id nobody issued.
    let (status, _, _) = browser
        .open(&format!("{}/connect/acme/{}", s.server.url, "x".repeat(43)))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        owner(&call_stateless(&s, "alice", url_capable()).await),
        "alice-cal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_refresh_before_expiry_once_for_concurrent_calls() {
    let s = setup().await;
    // Tokens that are already within the refresh margin when issued.
    s.provider.set_lifetime(30);
    connect(&s, "alice", "alice-cal").await;
    assert_eq!(s.provider.refreshes(), 0);
    s.provider.set_lifetime(3600);
    s.provider.slow_refreshes(300);
    let calls: Vec<_> = (0..8)
        .map(|_| call_stateless(&s, "alice", url_capable()))
        .collect();
    for response in futures_util::future::join_all(calls).await {
        assert_eq!(owner(&response), "alice-cal");
    }
    assert_eq!(s.provider.refreshes(), 1, "one refresh for eight calls");
    // The refreshed token is used from now on.
    assert_eq!(
        owner(&call_stateless(&s, "alice", url_capable()).await),
        "alice-cal"
    );
    assert_eq!(s.provider.refreshes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_refreshed_once_and_a_refused_refresh_asks_to_connect_again() {
    let s = setup().await;
    connect(&s, "alice", "alice-cal").await;
    // The provider forgets its access tokens: one refresh after the 401.
    s.provider.revoke_access_tokens();
    assert_eq!(
        owner(&call_stateless(&s, "alice", url_capable()).await),
        "alice-cal"
    );
    assert_eq!(s.provider.refreshes(), 1);
    // Now the refresh token is refused too: the record is dropped and the
    // call asks the user to connect again.
    s.provider.revoke_access_tokens();
    s.provider.fail_refreshes(true);
    let response = call_stateless(&s, "alice", url_capable()).await;
    elicitation_of(&response);
    assert_eq!(s.provider.refreshes(), 2);
    let response = call_stateless(&s, "alice", url_capable()).await;
    elicitation_of(&response);
    assert_eq!(
        s.provider.refreshes(),
        2,
        "a dropped record is not refreshed again"
    );
}

#[test]
fn connected_tokens_reach_no_log_line_file_or_response() {
    const CHILD_ENV: &str = "AIRLOCK_CONNECT_LEAKS_CHILD";
    if airlock_tests::in_child_process(
        "connect::connected_tokens_reach_no_log_line_file_or_response",
        CHILD_ENV,
    ) {
        return;
    }
    let logs = crate::leaks::Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "trace,cranelift_codegen=warn,cranelift_frontend=warn,regalloc2=warn,\
             wasmtime_cranelift=warn,wasmtime=warn,wasmtime_environ=warn,h2=warn,hyper=warn",
        ))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let s = setup().await;
        let mut responses = String::new();
        // Connect, use, refresh before expiry, refresh after a 401, fail a
        // refresh, connect again.
        s.provider.set_lifetime(30);
        connect(&s, "alice", "alice-cal").await;
        s.provider.set_lifetime(3600);
        responses.push_str(&call_stateless(&s, "alice", url_capable()).await.to_string());
        s.provider.revoke_access_tokens();
        responses.push_str(&call_stateless(&s, "alice", url_capable()).await.to_string());
        s.provider.revoke_access_tokens();
        s.provider.fail_refreshes(true);
        responses.push_str(&call_stateless(&s, "alice", url_capable()).await.to_string());
        s.provider.fail_refreshes(false);
        connect(&s, "alice", "alice-cal").await;
        responses.push_str(&call_stateless(&s, "alice", json!({})).await.to_string());
        assert!(s.provider.refreshes() >= 2);
        assert!(responses.contains("alice-cal"), "{responses}");
        assert!(!responses.contains(PLANTED), "{responses}");
        let mut found = Vec::new();
        crate::leaks::files_containing(s.server.data_dir(), &[PLANTED], &mut found);
        assert!(found.is_empty(), "token bytes on disk: {found:?}");
    });
    let logs = String::from_utf8_lossy(&logs.0.lock().expect("logs")).to_string();
    assert!(logs.contains("account connected"), "the capture works");
    assert!(!logs.contains(PLANTED), "a token reached the logs");
}
