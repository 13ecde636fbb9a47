//! A flood of refused requests writes a few log lines, not one per request:
//! repeated identical warnings (bad tokens, refused origins) are
//! rate-limited. In a child process, to capture every line of the process
//! with the default filter `airlock serve` uses.

use airlock_tests::idp::TestIdp;
use airlock_tests::server::{TestServer, tenant};

const CHILD_ENV: &str = "AIRLOCK_LOGS_CHILD";

#[test]
fn refused_request_floods_write_a_few_lines() {
    if airlock_tests::in_child_process("logs::refused_request_floods_write_a_few_lines", CHILD_ENV)
    {
        return;
    }
    let (logs, runtime) = crate::leaks::capture_logs(airlock_host::cli::DEFAULT_LOG_FILTER);
    runtime.block_on(async {
        let idp = TestIdp::start("").await;
        let server = TestServer::start(&tenant("acme", &idp.issuer, &["mcp"])).await;
        let url = server.endpoint("acme");
        let http = reqwest::Client::new();
        let expired = {
            let mut claims = idp.claims(&url, "alice", "mcp");
            claims["exp"] = serde_json::json!(1);
            idp.sign(&claims)
        };
        for i in 0..300 {
            let token = if i % 2 == 0 {
                "not-a-jwt".to_string()
            } else {
                expired.clone()
            };
            let status = http
                .post(&url)
                .bearer_auth(token)
                .body("{}")
                .send()
                .await
                .expect("send")
                .status();
            assert_eq!(status, 401);
            let status = http
                .post(&url)
                .header("origin", "https://evil.example")
                .bearer_auth("x")
                .body("{}")
                .send()
                .await
                .expect("send")
                .status();
            assert_eq!(status, 403);
        }
    });
    let text = String::from_utf8_lossy(&logs.0.lock().expect("logs")).to_string();
    let refusals = text.lines().filter(|l| l.contains("was refused")).count();
    assert!(refusals >= 2, "the warnings are written at all:\n{text}");
    assert!(refusals <= 6, "{refusals} lines for 900 refusals:\n{text}");
}
