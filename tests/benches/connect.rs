//! HTTP benchmark of a `user-token` call: `tools/call` of the `calendar`
//! tool's `list_events` over Streamable HTTP (2026-07-28), JWT validated on
//! every request, with alice's connected provider token read from the vault
//! and opened for each call, and one delegated request to the provider's API
//! (a loopback test server) per call.
//!
//! `cargo bench -p airlock-tests --bench connect` connects alice through the
//! real connect flow first, then drives one and then 16 keep-alive
//! connections. Results go in BENCHMARKS.md by hand, with the machine.

/// The allocator the `airlock` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use airlock_tests::bench::{self, Load};
use airlock_tests::oauth::{Browser, ConnectSetup};
use serde_json::json;

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

fn main() {
    let server_rt = bench::runtime("server");
    let setup = server_rt.block_on(async {
        let setup = ConnectSetup::start().await;
        // Connect alice through the real flow.
        let first = bench::post(
            &reqwest::Client::new(),
            &setup.server.endpoint("acme"),
            &setup.token("alice"),
            "list_events",
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
    bench::table(
        "tools/call list_events (user-token: vault read + open, one delegated request)",
        &Load {
            url: &url,
            token: &token,
            body: &body(json!({})),
            tool: "list_events",
            ok: |text| text.contains("alice-cal") && text.contains("\"isError\":false"),
        },
    );
    drop(setup);
}
