//! Tokens stop at the airlock: a bearer token (and claims planted in it) never
//! reaches a guest, a log line, an audit record, an error response or any file
//! in the data directory, whatever the call does: succeed, fail, trap, flood
//! its logs or hit a limit.
//!
//! Runs in a child process so that it can capture every log line of the
//! process (a global subscriber at TRACE level) without other tests' noise.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use airlock_tests::idp::TestIdp;
use airlock_tests::server::TestServer;
use serde_json::json;

const CHILD_ENV: &str = "AIRLOCK_LEAKS_CHILD";
const MARKER: &str = "planted-marker-7f3a9c1e5b";

/// Everything but the compiler's own chatter, at TRACE.
pub(crate) const TRACE_ALL: &str = "trace,cranelift_codegen=warn,cranelift_frontend=warn,regalloc2=warn,\
     wasmtime_cranelift=warn,wasmtime=warn,wasmtime_environ=warn,h2=warn,hyper=warn";

/// Install a process-wide subscriber with `filter` writing into the returned
/// buffer (call once, in a child process), and a 2-thread runtime to run in.
pub(crate) fn capture_logs(filter: &str) -> (Captured, tokio::runtime::Runtime) {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    (logs, runtime)
}

/// Every log line written to it (a `tracing` writer).
#[derive(Clone, Default)]
pub(crate) struct Captured(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The files under `dir` that contain any of `needles`.
pub(crate) fn files_containing(dir: &Path, needles: &[&str], found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files_containing(&path, needles, found);
        } else if kind.is_file() {
            // (Sockets such as the vault's admin socket hold no bytes.)
            let bytes = std::fs::read(&path).unwrap();
            for needle in needles {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(format!("{} contains {needle:?}", path.display()));
                }
            }
        }
    }
}

async fn post(url: &str, token: &str, body: serde_json::Value, version: &str) -> String {
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", version);
    if let Some(method) = body["method"].as_str() {
        request = request.header("mcp-method", method);
    }
    if let Some(name) = body["params"]["name"].as_str() {
        request = request.header("mcp-name", name);
    }
    let resp = request.json(&body).send().await.unwrap();
    let mut seen = format!("{:?}\n", resp.headers());
    seen.push_str(&resp.text().await.unwrap());
    seen
}

fn tools_call(tool: &str, args: serde_json::Value) -> serde_json::Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": args,
          "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {}}}
    })
}

#[test]
fn tokens_appear_in_no_output_log_record_or_file() {
    if airlock_tests::in_child_process(
        "leaks::tokens_appear_in_no_output_log_record_or_file",
        CHILD_ENV,
    ) {
        return;
    }
    let (logs, runtime) = crate::leaks::capture_logs(TRACE_ALL);
    runtime.block_on(async {
        let idp = TestIdp::start("").await;
        let tenant = format!(
            "[tenants.acme]\nissuers = [{{ issuer = {:?} }}]\n\
             [[tenants.acme.install]]\ncomponent = \"echo\"\n\
             [[tenants.acme.install]]\ncomponent = \"whoami\"\n\
             [[tenants.acme.install]]\ncomponent = \"hostile\"\n\
             limits = {{ timeout_ms = 3000, cpu_ms = 30000, memory_mib = 16, log_kib = 1 }}\n",
            idp.issuer
        );
        let server = TestServer::start(&tenant).await;
        let url = server.endpoint("acme");
        let mut claims = idp.claims(&url, "alice", "");
        claims["jti"] = json!(MARKER);
        claims["marker"] = json!(MARKER);
        let token = idp.sign(&claims);
        let mut other = idp.claims("https://elsewhere.example/mcp", "alice", "");
        other["marker"] = json!(MARKER);
        let wrong_audience = idp.sign(&other);

        let mut seen = String::new();
        let v = "2026-07-28";
        for (tool, args) in [
            ("echo", json!({"text": "hello"})),
            ("echo", json!({"bad": true})),
            ("whoami", json!({})),
            ("nope", json!({})),
            ("spin", json!({})),
            ("hog", json!({})),
            ("recurse", json!({})),
            ("flood_log", json!({})),
            ("panic", json!({})),
            ("forge", json!({})),
            ("delegate_spam", json!({})),
            ("many_blocks", json!({"count": 1_000_000})),
            ("many_headers", json!({"count": 200_000})),
            ("big_log_line", json!({"count": 1, "bytes": 4 << 20})),
            ("lie_in_output", json!({})),
        ] {
            seen.push_str(&post(&url, &token, tools_call(tool, args), v).await);
        }
        // Refused at the edge: the token is never echoed.
        seen.push_str(
            &post(
                &url,
                &wrong_audience,
                tools_call("echo", json!({"text": "x"})),
                v,
            )
            .await,
        );
        // The legacy era, with a session.
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "leaks", "version": "1"}}});
        seen.push_str(&post(&url, &token, init, "2025-11-25").await);
        assert!(seen.contains("hello"), "the good call succeeded: {seen}");
        assert!(seen.contains("alice"), "whoami answered: {seen}");

        let data = server.stop_keeping_data().await.unwrap();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let data_arg = data.path().display().to_string();
        let code = airlock_host::cli::run(
            ["airlock", "audit", "export", "--data", &data_arg],
            &mut out,
            &mut err,
        )
        .await;
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        let audit = String::from_utf8(out).unwrap();
        assert!(
            audit.contains("timeout") && audit.contains("out_of_memory"),
            "{audit}"
        );

        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("tool call"), "the log capture works");
        let needles = [token.as_str(), wrong_audience.as_str(), MARKER];
        for (what, text) in [("responses", &seen), ("logs", &logs), ("audit", &audit)] {
            for needle in needles {
                assert!(
                    !text.contains(needle),
                    "{what} contain a planted secret {needle:?}"
                );
            }
        }
        let mut found = Vec::new();
        files_containing(data.path(), &needles, &mut found);
        assert!(found.is_empty(), "{found:#?}");
    });
}
