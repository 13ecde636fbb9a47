//! End to end with a real MCP client library (rmcp) over HTTP to a listening
//! host, in both protocol eras: the stateless 2026-07-28 revision and the
//! 2025-11-25 `initialize` handshake.

use std::sync::Arc;

use airlock_host::delegate::{
    BoxFuture, Delegate, DelegateError, DelegateResponse, OutboundRequest,
};
use airlock_host::envelope::Envelope;
use airlock_tests::client::{connect, tool_names};
use airlock_tests::idp::TestIdp;
use airlock_tests::server::{TestServer, tenant};
use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use serde_json::{Value, json};

fn args(v: Value) -> rmcp::model::JsonObject {
    v.as_object().cloned().expect("object")
}

async fn one_tenant() -> (TestServer, TestIdp) {
    let idp = TestIdp::start("").await;
    let server = TestServer::start(&tenant("acme", &idp.issuer, &["mcp"])).await;
    (server, idp)
}

const ERAS: [ProtocolVersion; 2] = [ProtocolVersion::V_2026_07_28, ProtocolVersion::V_2025_11_25];

#[tokio::test]
async fn list_and_call_tools_in_both_eras() {
    let (server, idp) = one_tenant().await;
    let url = server.endpoint("acme");
    for era in &ERAS {
        let token = idp.token(&url, "alice", "mcp whoami");
        let client = connect(&url, &token, era).await;
        assert_eq!(tool_names(&client).await, ["echo", "whoami"], "era {era}");

        let result = client
            .call_tool(
                CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "hi"}))),
            )
            .await
            .expect("tools/call echo");
        assert_ne!(result.is_error, Some(true), "{result:?}");
        let text = serde_json::to_string(&result.content).expect("json");
        assert!(text.contains("hi"), "era {era}: {text}");

        let result = client
            .call_tool(CallToolRequestParams::new("whoami"))
            .await
            .expect("tools/call whoami");
        let who = result.structured_content.expect("structured whoami");
        assert_eq!(who["actor"]["subject"], "alice", "era {era}: {who}");
        assert_eq!(who["tenant"], "acme", "era {era}: {who}");
        client.cancel().await.expect("close");
    }
}

#[tokio::test]
async fn hidden_tools_are_indistinguishable_from_unknown_ones() {
    let (server, idp) = one_tenant().await;
    let url = server.endpoint("acme");
    for era in &ERAS {
        // No `whoami` scope: the tool is neither listed nor callable.
        let token = idp.token(&url, "bob", "mcp");
        let client = connect(&url, &token, era).await;
        assert_eq!(tool_names(&client).await, ["echo"], "era {era}");
        let hidden = client
            .call_tool(CallToolRequestParams::new("whoami"))
            .await
            .expect_err("hidden tool");
        let unknown = client
            .call_tool(CallToolRequestParams::new("nosuch"))
            .await
            .expect_err("unknown tool");
        let shape =
            |e: &rmcp::ServiceError| e.to_string().replace("whoami", "X").replace("nosuch", "X");
        assert_eq!(shape(&hidden), shape(&unknown), "era {era}");
        client.cancel().await.expect("close");
    }
}

#[tokio::test]
async fn tool_failures_come_back_as_tool_errors() {
    let (server, idp) = one_tenant().await;
    let url = server.endpoint("acme");
    let token = idp.token(&url, "alice", "mcp");
    let client = connect(&url, &token, &ProtocolVersion::V_2026_07_28).await;
    // Invalid input: echo wants a string `text`.
    let result = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args(json!({"text": 5}))))
        .await
        .expect("tools/call");
    assert_eq!(result.is_error, Some(true));
    let text = serde_json::to_string(&result.content).expect("json");
    assert!(text.contains("invalid"), "{text}");
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn a_globex_token_is_refused_at_acme() {
    let acme = TestIdp::start("").await;
    let globex = TestIdp::start("").await;
    let config = format!(
        "{}{}",
        tenant("acme", &acme.issuer, &[]),
        tenant("globex", &globex.issuer, &[])
    );
    let server = TestServer::start(&config).await;
    let token = globex.token(&server.endpoint("globex"), "carol", "");
    // The same token works at its own tenant…
    let client = connect(
        &server.endpoint("globex"),
        &token,
        &ProtocolVersion::V_2026_07_28,
    )
    .await;
    assert!(!client.list_all_tools().await.expect("list").is_empty());
    client.cancel().await.expect("close");
    // …and is refused at acme.
    let response = reqwest::Client::new()
        .post(server.endpoint("acme"))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);
}

/// A service that answers after a pause, so calls are in flight when the
/// server is asked to stop.
struct Pause(std::time::Duration, Arc<std::sync::atomic::AtomicUsize>);

impl Delegate for Pause {
    fn fetch<'a>(
        &'a self,
        _envelope: &'a Envelope,
        _service: &'a str,
        _request: OutboundRequest,
    ) -> BoxFuture<'a, Result<DelegateResponse, DelegateError>> {
        Box::pin(async move {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(self.0).await;
            Ok(DelegateResponse {
                status: 200,
                headers: vec![],
                body: vec![],
            })
        })
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_calls() {
    let idp = TestIdp::start("").await;
    let config = format!(
        "[tenants.acme]\nissuers = [{{ issuer = {:?} }}]\n\
         [[tenants.acme.install]]\ncomponent = \"hostile\"\n",
        idp.issuer
    );
    let delay = std::time::Duration::from_millis(2000);
    let arrived = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut server = TestServer::start_with(&config, Arc::new(Pause(delay, arrived.clone()))).await;
    let url = server.endpoint("acme");
    let token = idp.token(&url, "alice", "");
    let client = connect(&url, &token, &ProtocolVersion::V_2026_07_28).await;
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let peer = client.peer().clone();
            tokio::spawn(async move {
                peer.call_tool(CallToolRequestParams::new("slow_delegate"))
                    .await
            })
        })
        .collect();
    // Let every call reach the paused service, then ask the server to stop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while arrived.load(std::sync::atomic::Ordering::SeqCst) < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the calls never reached the service"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    server.begin_stop();
    for call in calls {
        let result = call
            .await
            .expect("join")
            .expect("an in-flight call completes");
        assert_ne!(result.is_error, Some(true), "{result:?}");
        let text = serde_json::to_string(&result.content).expect("json");
        assert!(text.contains("status 200"), "{text}");
    }
    tokio::time::timeout(std::time::Duration::from_secs(60), server.finished())
        .await
        .expect("shutdown finishes")
        .expect("clean shutdown");
    // And nothing new is accepted.
    let refused = reqwest::Client::new()
        .post(&url)
        .header("authorization", format!("Bearer {token}"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await;
    assert!(refused.is_err(), "the listener is closed");
}

#[tokio::test]
async fn every_request_ends_at_the_request_timeout() {
    let idp = TestIdp::start("").await;
    // The tool may run for 20 s, but no HTTP request may take more than 0.3 s.
    let config = format!(
        "[server]\nrequest_timeout_ms = 300\n[tenants.acme]\n\
         issuers = [{{ issuer = {:?} }}]\n\
         [[tenants.acme.install]]\ncomponent = \"hostile\"\nlimits = {{ timeout_ms = 20000 }}\n",
        idp.issuer
    );
    let server = TestServer::start(&config).await;
    let url = server.endpoint("acme");
    let token = idp.token(&url, "alice", "");
    let client = connect(&url, &token, &ProtocolVersion::V_2026_07_28).await;
    let started = std::time::Instant::now();
    let outcome = client.call_tool(CallToolRequestParams::new("spin")).await;
    assert!(
        outcome.is_err(),
        "a spinning call cannot complete: {outcome:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the request outlived its deadline: {:?}",
        started.elapsed()
    );
}
