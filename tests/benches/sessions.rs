//! Resident memory per idle legacy (2025-11-25) session: a real host on
//! loopback, N sessions opened with `initialize` (+ `notifications/initialized`)
//! and left idle; the process's resident set before and after, divided by N.
//!
//! `cargo bench -p airlock-tests --bench sessions`. The caps in `[server]`
//! (`max_sessions`, default 10,000; `max_sessions_per_user`, default 32)
//! bound what this can reach; here they are raised to measure.

/// The allocator the `airlock` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use airlock_tests::idp::TestIdp;
use airlock_tests::server::{TestServer, tenant};
use serde_json::json;

const SESSIONS: usize = 5_000;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let idp = TestIdp::start("").await;
        let config = format!(
            "[server]\nmax_sessions = 100000\nmax_sessions_per_user = 100000\n{}",
            tenant("acme", &idp.issuer, &["mcp"])
        );
        let server = TestServer::start(&config).await;
        let url = server.endpoint("acme");
        let token = idp.token(&url, "alice", "mcp");
        let http = reqwest::Client::new();
        let open = async || {
            let response = airlock_tests::client::legacy_initialize(&http, &url, &token, json!({}))
                .send()
                .await
                .expect("initialize");
            let session = response.headers()["mcp-session-id"]
                .to_str()
                .expect("id")
                .to_string();
            let _ = response.text().await;
            http.post(&url)
                .bearer_auth(&token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", &session)
                .header("mcp-protocol-version", "2025-11-25")
                .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                .send()
                .await
                .expect("initialized");
        };
        // Warm up allocators and caches first.
        for _ in 0..200 {
            open().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let before = resident_bytes();
        for _ in 0..SESSIONS {
            open().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let after = resident_bytes();
        println!(
            "{SESSIONS} idle legacy sessions: resident {:.1} MiB → {:.1} MiB, {:.1} KiB per session",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            (after.saturating_sub(before)) as f64 / SESSIONS as f64 / 1024.0
        );
        drop(server);
    });
}
