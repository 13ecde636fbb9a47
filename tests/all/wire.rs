//! Every list a guest hands the host is bounded in count and bytes before the
//! host allocates for it, and a result's limit counts what goes on the wire:
//! per-block overhead, escaped text, base64 images.

use std::sync::Arc;
use std::time::Duration;

use airlock_host::sandbox::{CallError, Content, Limits, LoadError};
use airlock_tests::idp::TestIdp;
use airlock_tests::server::TestServer;
use airlock_tests::{NotesService, TestHost, envelope, guests, wasm};
use serde_json::{Value, json};

fn limits() -> Limits {
    Limits {
        output_bytes: 64 * 1024,
        // CPU-heavy calls move to low-priority threads a busy machine may
        // starve: these tests are about output limits, not deadlines.
        timeout: Duration::from_secs(60),
        ..Limits::default()
    }
}

async fn hostile(host: &TestHost, tool: &str, args: Value) -> Result<Vec<Content>, CallError> {
    let component = host.load_with(guests::HOSTILE, limits()).await;
    let env = envelope("acme", "mallory", tool, &["echo"]);
    host.call_as(&component, env, args, NotesService::new())
        .await
        .map(|o| o.content)
}

fn text(content: &[Content]) -> &str {
    match content {
        [Content::Text(t)] => t,
        other => panic!("expected one text block, got {other:?}"),
    }
}

#[tokio::test]
async fn a_million_empty_blocks_are_refused_before_the_host_copies_them() {
    let host = TestHost::new();
    let err = hostile(&host, "many_blocks", json!({"count": 300_000}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::OutputTooLarge {
            limit_bytes: 64 * 1024,
            actual_bytes: None
        }
    );
    assert_eq!(err.code(), "output_too_large");
}

#[tokio::test]
async fn block_count_and_per_block_overhead_are_counted() {
    let host = TestHost::new();
    let err = hostile(&host, "many_blocks", json!({"count": 257}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::LimitExceeded {
            limit: "content blocks",
            max: 256
        }
    );
    // 200 blocks of 300 bytes: 60,000 bytes of text, but 200 × (302 + 64) as sent.
    let err = hostile(&host, "many_blocks", json!({"count": 200, "bytes": 300}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::OutputTooLarge {
            limit_bytes: 64 * 1024,
            actual_bytes: Some(200 * (302 + 64))
        }
    );
    let ok = hostile(&host, "many_blocks", json!({"count": 150, "bytes": 300}))
        .await
        .unwrap();
    assert_eq!(ok.len(), 150);
}

#[tokio::test]
async fn images_count_as_base64() {
    let host = TestHost::new();
    let err = hostile(&host, "many_images", json!({"count": 100_000, "bytes": 1}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::OutputTooLarge {
                actual_bytes: None,
                ..
            }
        ),
        "{err:?}"
    );
    // 40 images of 1200 bytes: 48,000 raw bytes, 40 × (1600 + 11 + 64) as sent.
    let err = hostile(&host, "many_images", json!({"count": 40, "bytes": 1200}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::OutputTooLarge {
            limit_bytes: 64 * 1024,
            actual_bytes: Some(40 * (1600 + 11 + 64))
        }
    );
}

#[tokio::test]
async fn delegated_header_and_query_lists_are_bounded() {
    let host = TestHost::new();
    let out = hostile(&host, "many_headers", json!({"count": 100}))
        .await
        .unwrap();
    assert_eq!(
        text(&out),
        "limit: the request has 100 headers; the limit is 32"
    );
    let out = hostile(&host, "many_query_pairs", json!({"count": 100}))
        .await
        .unwrap();
    assert_eq!(
        text(&out),
        "limit: the request has 100 query pairs; the limit is 64"
    );
    // Far past any request the rules allow: the host stops copying and ends the call.
    let err = hostile(&host, "many_headers", json!({"count": 200_000}))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::ImportTooLarge { .. }), "{err:?}");
    assert_eq!(err.code(), "import_too_large");
    let err = hostile(&host, "big_log_line", json!({"count": 1, "bytes": 4 << 20}))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::ImportTooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn a_component_describing_100_000_tools_is_refused() {
    let err = TestHost::new()
        .sandbox
        .load(&wasm(guests::LYING_MANY_TOOLS))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LoadError::Describe(m) if m.contains("larger than 4194304 bytes")),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_http_response_stays_within_the_output_limit_plus_framing() {
    let idp = TestIdp::start("").await;
    let tenant = format!(
        "[tenants.acme]\nissuers = [{{ issuer = {:?} }}]\n\
         [[tenants.acme.install]]\ncomponent = \"hostile\"\n\
         limits = {{ output_kib = 64 }}\n",
        idp.issuer
    );
    let server = TestServer::start(&tenant).await;
    let url = server.endpoint("acme");
    let token = idp.token(&url, "alice", "");
    let http = reqwest::Client::new();
    let call = async |args: Value| {
        http.post(&url)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "many_blocks")
            .json(&json!({
                "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "many_blocks", "arguments": args,
                  "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                            "io.modelcontextprotocol/clientCapabilities": {}}}
            }))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // Just under the limit as counted: the response is no larger than the
    // limit plus the JSON-RPC and SSE framing.
    let body = call(json!({"count": 60, "bytes": 1000})).await;
    assert!(!body.contains("\"isError\":true"), "{body}");
    assert!(body.matches("xxxxxxxxxx").count() >= 60, "{body}");
    assert!(body.len() <= 64 * 1024 + 1024, "{} bytes", body.len());
    // A million empty blocks: a short error, not megabytes.
    let body = call(json!({"count": 1_000_000})).await;
    assert!(body.contains("isError\":true"), "{body}");
    assert!(body.len() < 2048, "{} bytes", body.len());
}

fn peak_resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

const CHILD_ENV: &str = "AIRLOCK_WIRE_MEMORY_CHILD";

/// 16 oversized results at once: the host's peak memory grows by the guests'
/// own linear memory and little else. Measured in a child process, since
/// peak memory is process-wide and other tests run in this one.
#[test]
fn sixteen_oversized_results_at_once_stay_within_a_memory_bound() {
    if airlock_tests::in_child_process(
        "wire::sixteen_oversized_results_at_once_stay_within_a_memory_bound",
        CHILD_ENV,
    ) {
        return;
    }
    const GUEST_MEMORY: usize = 32 << 20;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let host = Arc::new(TestHost::new());
        let component = host
            .load_with(
                guests::HOSTILE,
                Limits {
                    memory_bytes: GUEST_MEMORY,
                    timeout: Duration::from_secs(60),
                    ..Limits::default()
                },
            )
            .await;
        // Warm up the pool and the allocator with one small call.
        host.call(&component, "many_blocks", json!({"count": 1}))
            .await
            .unwrap();
        let baseline = peak_resident_bytes();
        let mut calls = Vec::new();
        for (i, (tool, count)) in [("many_blocks", 100_000), ("many_images", 50_000)]
            .iter()
            .cycle()
            .take(16)
            .enumerate()
        {
            let host = host.clone();
            let component = component.clone();
            let args = json!({"count": count, "bytes": i % 2});
            calls.push(tokio::spawn(async move {
                // Two tenants, so both tenants' slots (8 each) run at once.
                let env = envelope(&format!("t{}", i % 2), "mallory", tool, &[]);
                host.call_as(
                    &component,
                    env,
                    args,
                    Arc::new(airlock_host::delegate::DenyAll),
                )
                .await
            }));
        }
        for call in calls {
            let err = call.await.unwrap().unwrap_err();
            assert!(
                matches!(
                    err,
                    CallError::OutputTooLarge { .. } | CallError::Busy { .. }
                ),
                "{err:?}"
            );
        }
        let growth = peak_resident_bytes().saturating_sub(baseline);
        // Each running guest may touch its whole linear memory; the host's own
        // copies are bounded by the transfer limit (about 1 MiB per call).
        let bound = 16 * (GUEST_MEMORY as u64) + 48 * 1024 * 1024;
        println!(
            "peak resident growth: {} MiB (bound {} MiB)",
            growth >> 20,
            bound >> 20
        );
        assert!(
            growth <= bound,
            "peak resident memory grew by {} MiB; the bound is {} MiB",
            growth >> 20,
            bound >> 20
        );
    });
}
