//! Account connect end to end over real HTTP: a `user-token` call with no
//! connected account ends in a URL elicitation (both protocol eras, and a
//! tool error for clients that cannot show one); the connect page signs the
//! browser user in at the tenant's issuer, refuses anyone else, runs code +
//! PKCE with the provider and seals the tokens; the retry succeeds. Then
//! refresh: before expiry, after a 401, once for many concurrent calls, and
//! a refused refresh asks the user to connect again.

use airlock_tests::oauth::{Browser, ConnectSetup as Setup, PLANTED};
use serde_json::{Value, json};

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
    call_at(&s.server.endpoint("acme"), &s.token(user), capabilities).await
}

/// A stateless `tools/call` of `list_events` at `endpoint` with `token`.
async fn call_at(endpoint: &str, token: &str, capabilities: Value) -> Value {
    let body = reqwest::Client::new()
        .post(endpoint)
        .bearer_auth(token)
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
    let s = Setup::start().await;
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
    let s = Setup::start().await;
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
    let s = Setup::start().await;
    let http = reqwest::Client::new();
    let endpoint = s.server.endpoint("acme");
    let token = s.token("alice");
    let init = airlock_tests::client::legacy_initialize(&http, &endpoint, &token, url_capable())
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
    // A `tools/call` of `list_events` in the session: the response to `id`.
    let call = async |id: u64| {
        let body = post(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                               "params": {"name": "list_events", "arguments": {}}}))
        .await
        .expect("call")
        .text()
        .await
        .expect("body");
        messages(&body)
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{body}"))
    };
    let response = call(2).await;
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
    assert_eq!(owner(&call(3).await), "alice-cal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_cannot_complete_a_connect_link() {
    let s = Setup::start().await;
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

/// One browser step by hand: GET `url` (sending `cookie`), following no
/// redirect: the status, where it redirects, and the cookie it sets.
async fn step(url: &str, cookie: Option<&str>) -> (u16, Option<String>, Option<String>) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut request = http.get(url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.expect("send");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("header").to_string())
    };
    let location = header("location");
    let cookie = header("set-cookie").and_then(|c| c.split(';').next().map(str::to_string));
    (response.status().as_u16(), location, cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_links_and_states_are_single_use_and_bound_to_the_browser() {
    let s = Setup::start().await;
    let (url, _) = elicitation_of(&call_stateless(&s, "alice", url_capable()).await);
    s.login.login_as("alice");
    // Walk by hand to keep each step's URL.
    let mut browser = Browser::new(&s.server.url);
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
    let s = Setup::start().await;
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
    let s = Setup::start().await;
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
    let (logs, runtime) = crate::leaks::capture_logs(crate::leaks::TRACE_ALL);
    runtime.block_on(async {
        let s = Setup::start().await;
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

/// Through `airlock dev` as a user meets it: the calendar tool, the dev
/// issuer's login page and the Demo Calendar's consent page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airlock_dev_shows_the_whole_connect_loop_with_the_calendar_tool() {
    let dev = airlock_tests::dev::Dev::start().await;
    let (url, data) = (&dev.url, &dev.data);
    let endpoint = format!("{url}/mcp/acme");
    let call = async |user: &str| {
        let token = airlock_host::dev::token(data.path(), "acme", user, &[]).expect("a dev token");
        call_at(&endpoint, &token, url_capable()).await
    };
    // A browser that logs in as `user` and consents as `user`.
    let connect_as = async |link: &str, user: &str| {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let mut cookies: Vec<(String, String)> = Vec::new();
        let mut next = (
            reqwest::Method::GET,
            link.to_string(),
            Vec::<(String, String)>::new(),
        );
        for _ in 0..12 {
            let (method, at, form) = next.clone();
            let path = url::Url::parse(&at).expect("url").path().to_string();
            let cookie = cookies
                .iter()
                .filter(|(p, _)| path.starts_with(p.as_str()))
                .map(|(_, c)| c.clone())
                .collect::<Vec<_>>()
                .join("; ");
            let mut request = http.request(method, &at).header("cookie", cookie);
            if !form.is_empty() {
                request = request.form(&form);
            }
            let response = request.send().await.expect("send");
            if let Some(set) = response.headers().get("set-cookie") {
                let set = set.to_str().expect("cookie");
                let pair = set.split(';').next().expect("pair").to_string();
                let scope = set
                    .split(';')
                    .find_map(|a| a.trim().strip_prefix("Path="))
                    .unwrap_or("/")
                    .to_string();
                // Like a browser: a cookie set again replaces the old one.
                let name = pair.split('=').next().unwrap_or_default().to_string();
                cookies.retain(|(p, c)| !(p == &scope && c.starts_with(&format!("{name}="))));
                cookies.push((scope, pair));
            }
            let status = response.status().as_u16();
            if let Some(location) = response.headers().get("location") {
                let location = location.to_str().expect("location");
                let location = url::Url::parse(&at)
                    .expect("url")
                    .join(location)
                    .expect("join");
                next = (reqwest::Method::GET, location.to_string(), Vec::new());
                continue;
            }
            let html = response.text().await.expect("html");
            if path.ends_with("/dev/acme/authorize") && status == 200 {
                // The dev issuer's login page: pick the user, sending the
                // form's one-time token (and the page's cookie, above).
                let mut form: Vec<(String, String)> = url::Url::parse(&at)
                    .expect("url")
                    .query_pairs()
                    .into_owned()
                    .collect();
                form.push(("user".into(), user.into()));
                let form_token =
                    airlock_tests::dev::form_token(&html).expect("the login form's token");
                form.push(("form_token".into(), form_token.into()));
                next = (reqwest::Method::POST, at.clone(), form);
            } else if path.ends_with("/dev/calendar/authorize") && status == 200 {
                // The provider's consent page.
                let form_token = airlock_tests::dev::form_token(&html)
                    .expect("form token")
                    .to_string();
                next = (
                    reqwest::Method::POST,
                    format!("{url}/dev/calendar/consent"),
                    vec![
                        ("form_token".into(), form_token),
                        ("account".into(), user.into()),
                        ("decision".into(), "allow".into()),
                    ],
                );
            } else {
                return (status, html);
            }
        }
        panic!("the connect flow did not end");
    };

    let (link, _) = elicitation_of(&call("alice").await);
    let (status, page) = connect_as(&link, "alice").await;
    assert_eq!(status, 200, "{page}");
    let alice = call("alice").await;
    assert_eq!(owner(&alice), "alice");
    // bob is asked separately, cannot use alice's link, and sees his own.
    let (bob_link, _) = elicitation_of(&call("bob").await);
    assert_ne!(bob_link, link);
    let (status, page) = connect_as(&link, "bob").await;
    assert_eq!(status, 400, "alice's link is spent: {page}");
    let (status, page) = connect_as(&bob_link, "bob").await;
    assert_eq!(status, 200, "{page}");
    let bob = call("bob").await;
    assert_eq!(owner(&bob), "bob");
    assert_ne!(
        alice["result"]["structuredContent"],
        bob["result"]["structuredContent"]
    );
    // The Demo Calendar's tokens (`cal_at_…`, `cal_rt_…`) are nowhere on disk.
    let mut found = Vec::new();
    crate::leaks::files_containing(data.path(), &["cal_at_", "cal_rt_"], &mut found);
    assert!(found.is_empty(), "token bytes on disk: {found:?}");
}

/// Key rotations through a running host's admin socket while calls that
/// read the connected token keep coming: no call fails; then a disconnect
/// makes the next call ask to connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_while_serving_fail_no_call_and_disconnect_asks_again() {
    use airlock_host::vault::admin::{self, AdminRequest, AdminResponse};
    let s = Setup::start().await;
    connect(&s, "alice", "alice-cal").await;
    let socket = admin::socket_path(s.server.data_dir());
    let ask = |request: AdminRequest| {
        let socket = socket.clone();
        tokio::task::spawn_blocking(move || admin::request(&socket, &request).expect("socket"))
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            let s = &s;
            async move {
                let mut calls = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    assert_eq!(
                        owner(&call_stateless(s, "alice", url_capable()).await),
                        "alice-cal"
                    );
                    calls += 1;
                }
                calls
            }
        })
        .collect();
    let rotations = async {
        for round in 0..3 {
            let rotated = ask(AdminRequest::RotateTenantKey {
                tenant: "acme".into(),
            })
            .await
            .expect("join");
            assert!(
                matches!(rotated, AdminResponse::TenantKeyRotated { resealed, .. } if resealed >= 1),
                "round {round}: {rotated:?}"
            );
            let rotated = ask(AdminRequest::RotateMasterKey).await.expect("join");
            assert!(
                matches!(rotated, AdminResponse::MasterKeyRotated { .. }),
                "round {round}: {rotated:?}"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (calls, ()) = tokio::join!(futures_util::future::join_all(callers), rotations);
    assert!(calls.iter().sum::<u32>() >= 4, "{calls:?}");

    // Metadata only, then a disconnect: the next call asks to connect again.
    let listed = ask(AdminRequest::List {
        tenant: "acme".into(),
        subject: Some("alice".into()),
    })
    .await
    .expect("join");
    let text = format!("{listed:?}");
    assert!(
        text.contains("calendar") && !text.contains(PLANTED),
        "{text}"
    );
    let removed = ask(AdminRequest::Disconnect {
        tenant: "acme".into(),
        subject: "alice".into(),
        provider: "calendar".into(),
        issuer: None,
    })
    .await
    .expect("join");
    assert!(
        matches!(removed, AdminResponse::Disconnected { .. }),
        "{removed:?}"
    );
    elicitation_of(&call_stateless(&s, "alice", url_capable()).await);
}

/// The provider's client secret can live in the vault: stored beforehand
/// (as `airlock vault put-secret` does), used to redeem the code, never on
/// disk in the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_client_secret_from_the_vault_redeems_the_code() {
    let s = Setup::start_with_secret_in_vault().await;
    connect(&s, "alice", "alice-cal").await;
    assert_eq!(
        owner(&call_stateless(&s, "alice", url_capable()).await),
        "alice-cal"
    );
    let mut found = Vec::new();
    crate::leaks::files_containing(
        s.server.data_dir(),
        &[airlock_tests::oauth::CLIENT_SECRET, PLANTED],
        &mut found,
    );
    assert!(found.is_empty(), "secret bytes on disk: {found:?}");
}

/// Only `invalid_grant` disconnects: a provider refusing the client (a
/// rotated client secret) is an outage, not a reason to drop every user's
/// account; and an API that always answers 401 forces at most one refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_failures_other_than_invalid_grant_keep_the_account() {
    let s = Setup::start().await;
    connect(&s, "alice", "alice-cal").await;
    s.provider.revoke_access_tokens();
    s.provider.fail_refreshes_with(Some("invalid_client"));
    let response = call_stateless(&s, "alice", url_capable()).await;
    assert_eq!(response["result"]["isError"], true, "{response}");
    s.provider.fail_refreshes_with(None);
    // Still connected: the next refresh works and the call succeeds.
    assert_eq!(
        owner(&call_stateless(&s, "alice", url_capable()).await),
        "alice-cal"
    );
    let refreshes = s.provider.refreshes();

    // A path that always answers 401 (as a hostile tool might pick): one
    // refresh, then the 401 goes to the tool; the account stays.
    s.provider.always_unauthorized(true);
    for _ in 0..5 {
        let response = call_stateless(&s, "alice", url_capable()).await;
        assert_eq!(response["result"]["isError"], true, "{response}");
    }
    assert!(
        s.provider.refreshes() <= refreshes + 1,
        "{} refreshes for five 401s",
        s.provider.refreshes() - refreshes
    );
    s.provider.always_unauthorized(false);
    assert_eq!(
        owner(&call_stateless(&s, "alice", url_capable()).await),
        "alice-cal"
    );
}

/// A code can only come back to its own provider's redirect URI, a browser
/// presenting two connect cookies is refused, and a client that declined
/// the elicitation is not asked again in a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_return_only_to_their_provider_and_planted_cookies_are_refused() {
    let s = Setup::start().await;
    let first = call_stateless(&s, "alice", url_capable()).await;
    let (url, elicitation_id) = elicitation_of(&first);
    let request_state = first["result"]["requestState"]
        .as_str()
        .expect("a requestState")
        .to_string();
    s.login.login_as("alice");
    let (_, to_issuer, cookie) = step(&url, None).await;
    let cookie = cookie.expect("cookie");
    let (_, back, _) = step(&to_issuer.expect("to the issuer"), None).await;
    // A second, planted cookie: refused.
    let planted = format!("{cookie}; airlock_connect={}", "p".repeat(43));
    let (status, _, _) = step(&back.expect("back"), Some(&planted)).await;
    assert_eq!(status, 400);

    // Again, properly, up to the provider's answer.
    let (_, to_issuer, kept) = step(&url, Some(&cookie)).await;
    assert_eq!(
        kept.as_ref(),
        Some(&cookie),
        "a browser in a flow keeps its cookie"
    );
    let (_, back, _) = step(&to_issuer.expect("to issuer"), None).await;
    let (_, to_provider, _) = step(&back.expect("back"), Some(&cookie)).await;
    let to_provider = to_provider.expect("to provider");
    assert!(to_provider.contains("callback%2Fcalendar"), "{to_provider}");
    let (_, callback, _) = step(&to_provider, None).await;
    let callback = callback.expect("callback");
    assert!(
        callback.contains("/connect/acme/callback/calendar?"),
        "{callback}"
    );
    // The same code and state at another provider's redirect URI: refused
    // (and the state is spent).
    let mixed = callback.replace("/callback/calendar?", "/callback/other?");
    assert_eq!(step(&mixed, Some(&cookie)).await.0, 400);
    assert_eq!(step(&callback, Some(&cookie)).await.0, 400);

    // A 2026-07-28 retry reporting that the user declined: a tool error, not
    // another round.
    let body = reqwest::Client::new()
        .post(s.server.endpoint("acme"))
        .bearer_auth(s.token("alice"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "list_events")
        .json(&json!({
            "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "list_events", "arguments": {},
              "inputResponses": {elicitation_id: {"action": "decline"}},
              "requestState": request_state,
              "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                        "io.modelcontextprotocol/clientCapabilities": url_capable()}}
        }))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    let response = messages(&body)
        .into_iter()
        .find(|m| m["id"] == 7)
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(response["result"]["isError"], true, "{response}");
}
