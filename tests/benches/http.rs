//! HTTP benchmark: `tools/call` of `echo` over Streamable HTTP (the stateless
//! 2026-07-28 revision), with a bearer JWT on every request (its signature
//! verified once per token and tenant, then its key checked per request).
//!
//! `cargo bench -p airlock-tests --bench http` starts a test issuer and a real
//! host on loopback (on a 2-thread runtime of its own) and drives it from a
//! separate 2-thread runtime over keep-alive connections: first one connection,
//! then 16. It prints p50/p99 latency and calls per second. Results go in
//! BENCHMARKS.md by hand, with the machine.

/// The allocator the `airlock` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use airlock_tests::bench::{self, Load};
use airlock_tests::idp::TestIdp;
use airlock_tests::server::{TestServer, tenant};
use serde_json::json;

fn main() {
    let server_rt = bench::runtime("server");
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
    bench::table(
        "tools/call echo over HTTP, bearer JWT on every request (verified-token cache)",
        &Load {
            url: &url,
            token: &token,
            body: &body,
            tool: "echo",
            ok: |text| text.contains("\"hello\"") && text.contains("\"isError\":false"),
        },
    );
    drop(server);
    drop(idp);
}
