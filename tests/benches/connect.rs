//! HTTP benchmark of a `user-token` call: `tools/call` of the `calendar`
//! tool's `list_events` over Streamable HTTP (2026-07-28), JWT validated on
//! every request, with alice's connected provider token read from the vault
//! and opened for each call, and one delegated request to the provider's API
//! (a loopback test server) per call.
//!
//! `cargo bench -p airlock-tests --bench connect` connects alice through the
//! real connect flow first, then drives one and then 16 keep-alive
//! connections. Results go in BENCHMARKS.md by hand, with the machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use airlock_tests::oauth::{Browser, ConnectSetup};
use serde_json::json;

const WARMUP: Duration = Duration::from_secs(2);
const MEASURE: Duration = Duration::from_secs(8);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn body(capabilities: serde_json::Value) -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {
            "name": "list_events", "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": capabilities
            }
        }
    })
    .to_string()
}

async fn post(client: &reqwest::Client, url: &str, token: &str, body: &str) -> Option<String> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "list_events")
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    response.text().await.ok()
}

async fn run(url: &str, token: &str, connections: usize) -> (Vec<Duration>, f64) {
    let body = body(json!({}));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .build()
            .expect("client");
        let (url, token, body) = (url.to_string(), token.to_string(), body.clone());
        let (measuring, stop, errors) = (measuring.clone(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let ok = post(&client, &url, &token, &body)
                    .await
                    .is_some_and(|t| t.contains("alice-cal") && t.contains("\"isError\":false"));
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                if measuring.load(Ordering::Relaxed) {
                    samples.push(start.elapsed());
                }
            }
            samples
        }));
    }
    tokio::time::sleep(WARMUP).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(MEASURE).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    assert_eq!(errors.load(Ordering::Relaxed), 0, "some calls failed");
    all.sort();
    let rate = all.len() as f64 / elapsed.as_secs_f64();
    (all, rate)
}

fn main() {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("server runtime");
    let setup = server_rt.block_on(async {
        let setup = ConnectSetup::start().await;
        // Connect alice through the real flow.
        let first = post(
            &reqwest::Client::new(),
            &setup.server.endpoint("acme"),
            &setup.token("alice"),
            &body(json!({"elicitation": {"url": {}}})),
        )
        .await
        .expect("first call");
        let start = first.find("http://").expect("a connect URL");
        let end = first[start..].find('"').expect("end of URL") + start;
        setup.login.login_as("alice");
        setup.provider.consent_as("alice-cal");
        let (status, page, _) = Browser::new(&setup.server.url)
            .open(&first[start..end])
            .await;
        assert_eq!(status, 200, "{page}");
        setup
    });
    let url = setup.server.endpoint("acme");
    let token = setup.token("alice");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    println!("tools/call list_events (user-token: vault read + open, one delegated request)");
    println!("| connections | p50 | p99 | calls/s |\n| --- | --- | --- | --- |");
    for connections in [1, 16] {
        let (samples, rate) = client_rt.block_on(run(&url, &token, connections));
        println!(
            "| {connections} | {:.0} µs | {:.0} µs | {:.0} |",
            percentile(&samples, 0.50).as_secs_f64() * 1e6,
            percentile(&samples, 0.99).as_secs_f64() * 1e6,
            rate
        );
    }
    drop(setup);
}
