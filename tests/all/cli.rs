//! `airlock tool inspect` and `airlock tool run`, driven through the real
//! command-line parser, against built components and a real HTTP service.

use std::sync::{Arc, Mutex};

use airlock_tests::guests;
use axum::Json;
use axum::extract::State;
use axum::routing::get;

/// Run the CLI; return (exit code, stdout, stderr).
async fn airlock(args: &[&str]) -> (u8, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut argv = vec!["airlock"];
    argv.extend_from_slice(args);
    argv.push("--no-cache");
    let code = airlock_host::cli::run(argv, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test]
async fn inspect_lists_tools_imports_and_size() {
    let (code, out, err) = airlock(&["tool", "inspect", guests::NOTES]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imports:\n  airlock:tool/"), "{out}");
    for line in [
        "  add_note (Add note)",
        "    Add a note for the calling user.",
        "  list_notes (List notes)",
        "  delete_note (Delete note)",
        "    input schema: {",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    let size = std::fs::metadata(guests::NOTES).unwrap().len();
    assert!(out.contains(&format!("size:      {size} bytes")), "{out}");
}

#[tokio::test]
async fn inspect_json_is_machine_readable() {
    let (code, out, _) = airlock(&["tool", "inspect", "--json", guests::ECHO]).await;
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["tools"][0]["name"], "echo");
    assert_eq!(report["tools"][0]["inputSchema"]["type"], "object");
    assert_eq!(report["sha256"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn inspect_rejects_an_invalid_component_with_the_reason() {
    let (code, out, err) = airlock(&["tool", "inspect", guests::WASI_IMPORT]).await;
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("imports `wasi:cli/environment@0.2.0`"),
        "{err}"
    );

    let (code, _, err) = airlock(&["tool", "inspect", "/no/such/file.wasm"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot read /no/such/file.wasm"), "{err}");
}

#[tokio::test]
async fn run_echo_prints_the_text_back() {
    let (code, out, err) = airlock(&[
        "tool",
        "run",
        guests::ECHO,
        "echo",
        "--args",
        r#"{"text":"hi"}"#,
    ])
    .await;
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");
}

#[tokio::test]
async fn run_whoami_uses_the_development_identity() {
    let (code, out, err) = airlock(&[
        "tool",
        "run",
        guests::WHOAMI,
        "whoami",
        "--tenant",
        "acme",
        "--user",
        "alice",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let envelope: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(envelope["actor"]["subject"], "alice");
    assert_eq!(envelope["tenant"], "acme");
}

#[tokio::test]
async fn run_reports_failures_and_unknown_tools() {
    let (code, _, err) = airlock(&["tool", "run", guests::ECHO, "nope"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("has no tool `nope`; it has: echo"), "{err}");

    let (code, _, err) = airlock(&["tool", "run", guests::ECHO, "echo", "--args", "{"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("invalid_input"), "{err}");

    let (code, _, err) = airlock(&["tool", "run", guests::NOTES, "list_notes"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no services are configured"), "{err}");

    let (code, _, err) = airlock(&[
        "tool",
        "run",
        guests::HOSTILE,
        "spin",
        "--timeout-ms",
        "200",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("time limit of 200 ms"), "{err}");

    let (code, _, err) = airlock(&["tool", "frobnicate"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("frobnicate"), "{err}");
}

type Notes = Arc<Mutex<Vec<serde_json::Value>>>;

async fn list(State(notes): State<Notes>) -> Json<Vec<serde_json::Value>> {
    Json(notes.lock().unwrap().clone())
}

async fn add(
    State(notes): State<Notes>,
    Json(body): Json<serde_json::Value>,
) -> (axum::http::StatusCode, Json<serde_json::Value>) {
    let mut notes = notes.lock().unwrap();
    let note = serde_json::json!({"id": format!("n-{}", notes.len() + 1), "text": body["text"]});
    notes.push(note.clone());
    (axum::http::StatusCode::CREATED, Json(note))
}

#[tokio::test]
async fn run_reaches_a_local_service_mapped_with_service_flag() {
    let notes: Notes = Arc::default();
    let app = axum::Router::new()
        .route("/api/notes", get(list).post(add))
        .with_state(notes.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("notes=http://{}/api", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (code, out, err) = airlock(&[
        "tool",
        "run",
        guests::NOTES,
        "add_note",
        "--args",
        r#"{"text":"milk"}"#,
        "--service",
        &base,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#""text": "milk""#), "{out}");
    let (code, out, err) = airlock(&[
        "tool",
        "run",
        guests::NOTES,
        "list_notes",
        "--service",
        &base,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["notes"][0]["text"], "milk");
    assert_eq!(notes.lock().unwrap().len(), 1);

    let (code, _, err) = airlock(&[
        "tool",
        "run",
        guests::NOTES,
        "list_notes",
        "--service",
        "notes=http://example.com/",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("loopback"), "{err}");
}
