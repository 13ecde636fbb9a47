//! Legacy (2025-11-25) sessions are capped: per user (the least recently used
//! ends and answers 404, so a client that lost its id never locks its user
//! out) and in total (`initialize` then gets 503 with `Retry-After` and a
//! JSON-RPC error; stateless requests go on). Against a real host.

use airlock_tests::idp::TestIdp;
use airlock_tests::server::{TestServer, tenant};
use serde_json::{Value, json};

async fn start(server_settings: &str) -> (TestServer, TestIdp) {
    let idp = TestIdp::start("").await;
    let config = format!(
        "[server]\n{server_settings}\n{}",
        tenant("acme", &idp.issuer, &["mcp"])
    );
    (TestServer::start(&config).await, idp)
}

/// `initialize` as `user`: the status, the session id and the body.
async fn initialize(
    server: &TestServer,
    idp: &TestIdp,
    user: &str,
) -> (u16, Option<String>, String, Option<String>) {
    let url = server.endpoint("acme");
    let response = airlock_tests::client::legacy_initialize(
        &reqwest::Client::new(),
        &url,
        &idp.token(&url, user, "mcp"),
        json!({}),
    )
    .send()
    .await
    .expect("initialize");
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().expect("id").to_string());
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("retry").to_string());
    (status, session, response.text().await.expect("body"), retry)
}

/// `tools/list` on `session` as `user`: the status.
async fn use_session(server: &TestServer, idp: &TestIdp, user: &str, session: &str) -> u16 {
    let url = server.endpoint("acme");
    reqwest::Client::new()
        .post(&url)
        .bearer_auth(idp.token(&url, user, "mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_least_recently_used_session_ends_past_the_per_user_cap() {
    let (server, idp) = start("max_sessions_per_user = 3").await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let (status, session, body, _) = initialize(&server, &idp, "alice").await;
        assert_eq!(status, 200, "{body}");
        sessions.push(session.expect("a session"));
    }
    // The first is used again, so the second is the least recently used.
    assert_eq!(use_session(&server, &idp, "alice", &sessions[0]).await, 200);
    let (status, fourth, _, _) = initialize(&server, &idp, "alice").await;
    assert_eq!(status, 200, "a user over the cap can still start a session");
    assert_eq!(use_session(&server, &idp, "alice", &sessions[1]).await, 404);
    for live in [&sessions[0], &sessions[2], &fourth.expect("a session")] {
        assert_eq!(use_session(&server, &idp, "alice", live).await, 200);
    }
    // Many more: alice never holds more than three, and bob is unaffected.
    let (_, bobs, _, _) = initialize(&server, &idp, "bob").await;
    let mut last = Vec::new();
    for _ in 0..50 {
        let (status, session, _, _) = initialize(&server, &idp, "alice").await;
        assert_eq!(status, 200);
        last.push(session.expect("a session"));
    }
    let live =
        futures_util::future::join_all(last.iter().map(|s| use_session(&server, &idp, "alice", s)))
            .await;
    assert_eq!(live.iter().filter(|s| **s == 200).count(), 3, "{live:?}");
    assert_eq!(
        use_session(&server, &idp, "bob", &bobs.expect("bob's")).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_past_the_total_cap_gets_503_and_stateless_calls_go_on() {
    let (server, idp) = start("max_sessions = 2\nmax_sessions_per_user = 2").await;
    for user in ["alice", "bob"] {
        let (status, session, body, _) = initialize(&server, &idp, user).await;
        assert_eq!(status, 200, "{body}");
        assert!(session.is_some());
    }
    let (status, session, body, retry) = initialize(&server, &idp, "carol").await;
    assert_eq!(status, 503, "{body}");
    assert!(session.is_none());
    assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok()));
    let error: Value = serde_json::from_str(&body).expect("JSON-RPC error");
    assert_eq!(error["id"], 41, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("sessions"))
    );
    // A stateless (2026-07-28) call needs no session and goes on.
    let url = server.endpoint("acme");
    let body = reqwest::Client::new()
        .post(&url)
        .bearer_auth(idp.token(&url, "carol", "mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "still here"},
              "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                        "io.modelcontextprotocol/clientCapabilities": {}}}
        }))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    assert!(body.contains("still here"), "{body}");
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// The attack that opened 104,000 sessions with one token: now that token
/// holds at most its 32, and resident memory stays flat while it tries.
#[test]
fn one_token_opening_thousands_of_sessions_stays_bounded() {
    if airlock_tests::in_child_process(
        "sessions::one_token_opening_thousands_of_sessions_stays_bounded",
        "AIRLOCK_SESSIONS_CHILD",
    ) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (server, idp) = start("").await;
        // Warm up, then measure.
        for _ in 0..100 {
            initialize(&server, &idp, "mallory").await;
        }
        let before = resident_bytes();
        let mut last = Vec::new();
        for _ in 0..3_000 {
            let (status, session, _, _) = initialize(&server, &idp, "mallory").await;
            assert_eq!(status, 200);
            last.push(session.expect("a session"));
        }
        let grown = resident_bytes().saturating_sub(before);
        // 32 live sessions at ~55 KB each, plus allocator slack.
        assert!(
            grown < 24 << 20,
            "resident memory grew by {} MiB",
            grown >> 20
        );
        let live = futures_util::future::join_all(
            last.iter()
                .rev()
                .take(40)
                .map(|s| use_session(&server, &idp, "mallory", s)),
        )
        .await;
        assert_eq!(live.iter().filter(|s| **s == 200).count(), 32, "{live:?}");
    });
}
