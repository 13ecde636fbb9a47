//! HTTP benchmark: `tools/call` of `echo` over Streamable HTTP (the stateless
//! 2026-07-28 revision), with a valid JWT validated on every request.
//!
//! `cargo bench -p airlock-tests --bench http` starts a test issuer and a real
//! host on loopback (on a 2-thread runtime of its own) and drives it from a
//! separate 2-thread runtime over keep-alive connections: first one connection,
//! then 16. It prints p50/p99 latency and calls per second. Results go in
//! BENCHMARKS.md by hand, with the machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use airlock_tests::idp::TestIdp;
use airlock_tests::server::{TestServer, tenant};
use serde_json::json;

const WARMUP: Duration = Duration::from_secs(2);
const MEASURE: Duration = Duration::from_secs(8);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn request(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &str,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .body(body.to_string())
}

/// Run `connections` closed-loop clients; returns (sorted latencies, calls/s).
async fn run(url: &str, token: &str, connections: usize) -> (Vec<Duration>, f64) {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {
            "name": "echo", "arguments": { "text": "hello" },
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}
            }
        }
    })
    .to_string();
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
                let response = request(&client, &url, &token, &body).send().await;
                let ok = match response {
                    Ok(r) if r.status() == 200 => r
                        .text()
                        .await
                        .is_ok_and(|t| t.contains("\"hello\"") && t.contains("\"isError\":false")),
                    _ => false,
                };
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
    let (server, idp) = server_rt.block_on(async {
        let idp = TestIdp::start("").await;
        let config = format!(
            "[server]\nmax_concurrent_calls = 64\nmax_concurrent_calls_per_tenant = 64\n{}",
            tenant("acme", &idp.issuer, &["mcp"])
        );
        (TestServer::start(&config).await, idp)
    });
    let url = server.endpoint("acme");
    let token = idp.token(&url, "alice", "mcp");
    // The issuer stays up (its keys were fetched on the first request).
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    println!("tools/call echo over HTTP, JWT validated on every request");
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
    drop(server);
    drop(idp);
}
