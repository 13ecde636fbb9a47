//! Operating a host: rate limits at the edge (429 with `Retry-After`), the
//! unauthenticated `/healthz` and `/readyz`, and `/metrics` on its own
//! listener, parsed as Prometheus text, with no user, client or token in it.

use airlock_tests::idp::{TestIdp, now};
use airlock_tests::server::{TestServer, tenant};
use serde_json::{Value, json};

/// POST one stateless `tools/call` of `echo` with `token`.
async fn echo(endpoint: &str, token: &str) -> reqwest::Response {
    post(endpoint, token, "echo", json!({"text": "hi"})).await
}

/// POST one stateless `tools/call` of `tool` with `arguments` and `token`.
async fn post(endpoint: &str, token: &str, tool: &str, arguments: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(endpoint)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments,
              "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                        "io.modelcontextprotocol/clientCapabilities": {}}}
        }))
        .send()
        .await
        .expect("request")
}

/// Assert `response` is a 429 with a whole-seconds `Retry-After` and a
/// JSON-RPC error naming the limit `scope`.
async fn assert_limited(response: reqwest::Response, scope: &str) {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .expect("text")
        .parse()
        .expect("whole seconds");
    assert!(retry_after >= 1);
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["error"]["code"], -32000);
    assert_eq!(body["error"]["data"]["limit"], scope);
    assert_eq!(body["error"]["data"]["retry_after_s"], retry_after);
}

#[tokio::test]
async fn a_user_over_the_limit_gets_429_while_another_user_goes_on() {
    let idp = TestIdp::start("").await;
    // One request every 1,000 s: nothing refills while the test runs.
    let config = format!(
        "{}[tenants.acme.rate_limit]\nper_user_requests_per_second = 0.001\nper_user_burst = 2\n",
        tenant("acme", &idp.issuer, &[])
    );
    let server = TestServer::start(&config).await;
    let endpoint = server.endpoint("acme");
    let alice = idp.token(&endpoint, "alice", "");
    let bob = idp.token(&endpoint, "bob", "");
    for _ in 0..2 {
        assert_eq!(echo(&endpoint, &alice).await.status(), 200);
    }
    assert_limited(echo(&endpoint, &alice).await, "user").await;
    // Another user of the same tenant is not held back.
    assert_eq!(echo(&endpoint, &bob).await.status(), 200);
    // A new token does not make a new user: a user is (tenant, issuer, subject).
    let alice_again = idp.token(&endpoint, "alice", "");
    assert_limited(echo(&endpoint, &alice_again).await, "user").await;
    // A request that is not authenticated is answered as before (401), not 429.
    let anonymous = reqwest::Client::new()
        .post(&endpoint)
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn a_tenant_wide_limit_counts_every_user_and_spares_other_tenants() {
    let acme = TestIdp::start("acme").await;
    let globex = TestIdp::start("globex").await;
    let config = format!(
        "{}[tenants.acme.rate_limit]\nrequests_per_second = 0.001\nburst = 3\n{}",
        tenant("acme", &acme.issuer, &[]),
        tenant("globex", &globex.issuer, &[])
    );
    let server = TestServer::start(&config).await;
    let endpoint = server.endpoint("acme");
    for user in ["u1", "u2", "u3"] {
        let token = acme.token(&endpoint, user, "");
        assert_eq!(echo(&endpoint, &token).await.status(), 200, "{user}");
    }
    let fourth = acme.token(&endpoint, "u4", "");
    assert_limited(echo(&endpoint, &fourth).await, "tenant").await;
    // Tenants without a limit are not limited.
    let other = server.endpoint("globex");
    let token = globex.token(&other, "u1", "");
    for _ in 0..5 {
        assert_eq!(echo(&other, &token).await.status(), 200);
    }
}

#[tokio::test]
async fn health_and_readiness_answer_without_a_token() {
    let idp = TestIdp::start("").await;
    let server = TestServer::start(&tenant("acme", &idp.issuer, &[])).await;
    let http = reqwest::Client::new();
    let health = http
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), "ok");
    let ready = http
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    // Metrics are off unless configured, and never on the main listener.
    assert!(server.metrics_url.is_none());
    let metrics = http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 404);
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .find_map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

#[tokio::test]
async fn metrics_count_calls_and_refusals_and_name_no_user_or_token() {
    let idp = TestIdp::start("acme").await;
    let config = format!(
        "[server]\nmetrics_listen = \"127.0.0.1:0\"\n{}",
        tenant("acme", &idp.issuer, &[])
    );
    let server = TestServer::start(&config).await;
    let metrics_url = server.metrics_url.clone().expect("metrics are served");
    assert!(!metrics_url.starts_with(&server.url), "a separate listener");
    let endpoint = server.endpoint("acme");
    let subject = "subject-zqx7731-distinctive";
    let client = "client-qqv5521-distinctive";
    let mut claims = idp.claims(&endpoint, subject, "");
    claims["client_id"] = json!(client);
    let token = idp.sign(&claims);
    for _ in 0..3 {
        assert_eq!(echo(&endpoint, &token).await.status(), 200);
    }
    let mut expired = idp.claims(&endpoint, subject, "");
    expired["client_id"] = json!(client);
    expired["nbf"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    let expired = idp.sign(&expired);
    assert_eq!(echo(&endpoint, &expired).await.status(), 401);

    let response = reqwest::get(&metrics_url).await.expect("metrics");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    assert_eq!(
        value(
            &scrape,
            "airlock_tool_calls_total",
            &[("tenant", "acme"), ("tool", "echo"), ("outcome", "ok")]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            &scrape,
            "airlock_token_validation_failures_total",
            &[("tenant", "acme"), ("reason", "expired")]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(&scrape, "airlock_jwks_fetches_total", &[("outcome", "ok")])
            .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "airlock_tool_call_duration_seconds"
                && s.labels.get("tenant") == Some("acme")),
        "{text}"
    );
    for histogram in [
        "airlock_queue_wait_seconds",
        "airlock_tool_call_cpu_seconds",
    ] {
        assert!(
            scrape
                .samples
                .iter()
                .any(|s| s.metric == histogram && s.labels.get("tenant") == Some("acme")),
            "{histogram}: {text}"
        );
    }
    for secret in [
        subject,
        client,
        token.as_str(),
        expired.as_str(),
        &idp.issuer,
    ] {
        assert!(!text.contains(secret), "metrics mention {secret}:\n{text}");
    }
    // Signature parts of the tokens, in case a token were cut.
    for part in token.split('.').chain(expired.split('.')) {
        assert!(!text.contains(part));
    }
}

/// POST one stateless `tools/call` of `tool` (no arguments) with `token`.
async fn call(endpoint: &str, token: &str, tool: &str) -> String {
    post(endpoint, token, tool, json!({}))
        .await
        .text()
        .await
        .expect("body")
}

#[tokio::test]
async fn a_call_that_runs_long_moves_to_the_low_priority_threads_and_short_ones_do_not() {
    let idp = TestIdp::start("acme").await;
    let config = format!(
        "[server]\nmetrics_listen = \"127.0.0.1:0\"\n{}\
         [[tenants.acme.install]]\ncomponent = \"hostile\"\nlimits = {{ cpu_ms = 300, timeout_ms = 25000 }}\n",
        tenant("acme", &idp.issuer, &[])
    );
    let server = TestServer::start(&config).await;
    let endpoint = server.endpoint("acme");
    let token = idp.token(&endpoint, "alice", "");
    let scrape = || async {
        let text = reqwest::get(server.metrics_url.as_deref().expect("metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses")
    };
    for _ in 0..5 {
        assert_eq!(echo(&endpoint, &token).await.status(), 200);
    }
    let moved = |s: &prometheus_parse::Scrape| {
        value(s, "airlock_long_running_calls_total", &[("tenant", "acme")]).unwrap_or(0.0)
    };
    assert_eq!(moved(&scrape().await), 0.0, "short calls stay");
    // A spinning call moves, and still ends at its CPU limit there.
    let body = call(&endpoint, &token, "spin").await;
    assert!(body.contains("CPU"), "{body}");
    assert_eq!(moved(&scrape().await), 1.0);
    assert_eq!(
        value(
            &scrape().await,
            "airlock_tool_calls_total",
            &[
                ("tenant", "acme"),
                ("tool", "spin"),
                ("outcome", "cpu_limit")
            ]
        ),
        Some(1.0)
    );
}
