//! The closed-loop load driver shared by the HTTP benchmarks: keep-alive
//! clients each sending one `tools/call` after another, warmed up, then
//! measured for a fixed time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the clients run before measuring starts.
pub const WARMUP: Duration = Duration::from_secs(2);
/// How long the clients are measured.
pub const MEASURE: Duration = Duration::from_secs(8);

/// The `p` quantile (0.0 to 1.0) of `sorted`, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// One `tools/call` over Streamable HTTP (2026-07-28): `body` posted to `url`
/// with `token`, the `mcp-name` header set to `tool`. The response body, or
/// `None` on a transport error or a status other than 200.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    tool: &str,
    body: &str,
) -> Option<String> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    response.text().await.ok()
}

/// What one benchmark run sends.
pub struct Load<'a> {
    pub url: &'a str,
    pub token: &'a str,
    /// The JSON-RPC `tools/call` request.
    pub body: &'a str,
    /// The tool's name, for the `mcp-name` header.
    pub tool: &'a str,
    /// Whether a response body is the expected result.
    pub ok: fn(&str) -> bool,
}

/// Run `connections` closed-loop clients sending `load` for [`WARMUP`] and
/// then [`MEASURE`]; returns (sorted latencies measured, calls/s). Panics if
/// any call failed or `load.ok` rejected its result.
pub async fn run(load: &Load<'_>, connections: usize) -> (Vec<Duration>, f64) {
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
        let (url, token) = (load.url.to_string(), load.token.to_string());
        let (body, tool, ok) = (load.body.to_string(), load.tool.to_string(), load.ok);
        let (measuring, stop, errors) = (measuring.clone(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let passed = post(&client, &url, &token, &tool, &body)
                    .await
                    .is_some_and(|text| ok(&text));
                if !passed {
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

/// A runtime with two worker threads, for the server or the clients.
pub fn runtime(what: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{what} runtime: {e}"))
}

/// Run `load` on a runtime of its own (two worker threads, apart from the
/// server's) with one and then 16 connections, printing a Markdown table of
/// p50, p99 and calls/s under `title`.
pub fn table(title: &str, load: &Load<'_>) {
    let runtime = runtime("client");
    println!("{title}");
    println!("| connections | p50 | p99 | calls/s |\n| --- | --- | --- | --- |");
    for connections in [1, 16] {
        let (samples, rate) = runtime.block_on(run(load, connections));
        println!(
            "| {connections} | {:.0} µs | {:.0} µs | {:.0} |",
            percentile(&samples, 0.50).as_secs_f64() * 1e6,
            percentile(&samples, 0.99).as_secs_f64() * 1e6,
            rate
        );
    }
}
