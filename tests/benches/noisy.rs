//! Noisy-neighbour benchmark: tenant B's `echo` latency while tenant A keeps
//! runaway calls (the hostile fixture's `spin`) in flight on the same host.
//!
//! `cargo bench -p airlock-tests --bench noisy` starts a test issuer and a
//! real host on loopback (on a 2-thread runtime of its own; guests run on the
//! host's guest threads) and drives it from a separate 2-thread runtime:
//! B's `echo` at 1 and 16 connections, first alone, then with K = cores and
//! K = 2 × cores runaway calls of A kept in flight (each re-issued when it
//! ends). It prints a Markdown table; results go in BENCHMARKS.md by hand.

/// The allocator the `airlock` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use airlock_tests::bench::{self, Load, percentile};
use airlock_tests::idp::TestIdp;
use airlock_tests::server::TestServer;
use serde_json::json;

fn tenant(id: &str, issuer: &str, hostile: bool) -> String {
    let mut t = format!(
        "[tenants.{id}]\nissuers = [{{ issuer = {issuer:?}, jwks_min_refresh_ms = 0 }}]\n\
         scopes = [\"mcp\"]\n\
         [[tenants.{id}.install]]\ncomponent = \"echo\"\n"
    );
    if hostile {
        // Long limits: a runaway keeps its thread busy for 20 s unless stopped.
        t.push_str(&format!(
            "[[tenants.{id}.install]]\ncomponent = \"hostile\"\n\
             limits = {{ timeout_ms = 20000, cpu_ms = 20000 }}\n"
        ));
    }
    t
}

fn call(tool: &str, arguments: serde_json::Value) -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {
            "name": tool, "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}
            }
        }
    })
    .to_string()
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server_rt = bench::runtime("server");
    let (server, idp) = server_rt.block_on(async {
        let idp = TestIdp::start("").await;
        let config = format!(
            "[server]\nmax_concurrent_calls = 64\nmax_concurrent_calls_per_tenant = 64\n{}{}",
            tenant("a", &idp.issuer, true),
            tenant("b", &idp.issuer, false),
        );
        (TestServer::start(&config).await, idp)
    });
    let (url_a, url_b) = (server.endpoint("a"), server.endpoint("b"));
    let token_a = idp.token(&url_a, "mallory", "mcp");
    let token_b = idp.token(&url_b, "bob", "mcp");
    let echo = call("echo", json!({ "text": "hello" }));
    let spin = call("spin", json!({}));
    let load = Load {
        url: &url_b,
        token: &token_b,
        body: &echo,
        tool: "echo",
        ok: |text| text.contains("\"hello\"") && text.contains("\"isError\":false"),
    };

    let clients = bench::runtime("client");
    println!("tenant B `echo` over HTTP beside tenant A's runaway `spin` calls ({cores} cores)\n");
    println!("| tenant A runaways | connections | p50 | p99 | calls/s |");
    println!("| --- | --- | --- | --- | --- |");
    for runaways in [0, cores, 2 * cores] {
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..runaways {
            let client = reqwest::Client::new();
            let (url, token, body) = (url_a.clone(), token_a.clone(), spin.clone());
            let (stop, ended) = (stop.clone(), ended.clone());
            tasks.push(clients.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    // Ends as a tool error (time or CPU limit); re-issued.
                    let _ = bench::post(&client, &url, &token, "spin", &body).await;
                    ended.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for connections in [1, 16] {
            let (samples, rate) = clients.block_on(bench::run(&load, connections));
            println!(
                "| {runaways} | {connections} | {:.0} µs | {:.0} µs | {:.0} |",
                percentile(&samples, 0.50).as_secs_f64() * 1e6,
                percentile(&samples, 0.99).as_secs_f64() * 1e6,
                rate
            );
        }
        stop.store(true, Ordering::Relaxed);
        // Runaways still in flight are abandoned: dropping the request
        // cancels the guest at its next epoch tick.
        for task in tasks {
            task.abort();
        }
    }
    drop(server);
    drop(idp);
}
