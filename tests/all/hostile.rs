//! Hostile guests: each attack ends with its specific error within its limit,
//! while a well-behaved call on the same host, running at the same time, succeeds.

use std::sync::Arc;
use std::time::Duration;

use airlock_host::sandbox::{
    CallError, Content, Limits, LoadedComponent, ToolErrorKind, ToolOutput, TrapKind,
};
use airlock_tests::{NotesService, TestHost, envelope, guests};
use serde_json::{Value, json};

/// Tight limits so attacks end quickly.
fn tight() -> Limits {
    Limits {
        timeout: Duration::from_millis(500),
        cpu: Duration::from_secs(2),
        memory_bytes: 16 * 1024 * 1024,
        output_bytes: 64 * 1024,
        log_lines: 50,
        log_bytes: 1024,
        delegate_calls: 8,
        content_blocks: 256,
    }
}

/// The tight limits with a deadline a loaded machine cannot reach by
/// accident, for attacks that must end by another limit: a CPU-heavy call
/// moves to the low-priority threads, where a busy machine may starve it.
fn patient() -> Limits {
    Limits {
        timeout: Duration::from_secs(20),
        ..tight()
    }
}

/// Run `tool` of the hostile component with `service` as delegate while an
/// echo call runs on the same host; check the echo call succeeded.
async fn attack(host: &TestHost, tool: &str, args: Value) -> Result<ToolOutput, CallError> {
    attack_with(host, tool, args, NotesService::new()).await
}

/// [`attack`] for calls that should end at the 500 ms deadline.
async fn attack_until_deadline(
    host: &TestHost,
    tool: &str,
    args: Value,
) -> Result<ToolOutput, CallError> {
    attack_limited(host, tool, args, NotesService::new(), tight()).await
}

async fn attack_with(
    host: &TestHost,
    tool: &str,
    args: Value,
    service: Arc<NotesService>,
) -> Result<ToolOutput, CallError> {
    attack_limited(host, tool, args, service, patient()).await
}

async fn attack_limited(
    host: &TestHost,
    tool: &str,
    args: Value,
    service: Arc<NotesService>,
    limits: Limits,
) -> Result<ToolOutput, CallError> {
    let hostile: LoadedComponent = host.load_with(guests::HOSTILE, limits).await;
    let echo = host.load(guests::ECHO).await;
    let env = envelope("acme", "mallory", tool, &["echo", "slow"]);
    let bad = host.call_as(&hostile, env, args, service);
    let good = async {
        // Start the good call after the attack is underway.
        tokio::time::sleep(Duration::from_millis(20)).await;
        host.call(&echo, "echo", json!({"text": "still here"}))
            .await
    };
    let (bad, good) = tokio::join!(bad, good);
    assert_eq!(
        good.expect("a well-behaved call succeeds beside the attack")
            .content,
        vec![Content::Text("still here".into())]
    );
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_times_out() {
    let host = TestHost::new();
    let err = attack_until_deadline(&host, "spin", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::Timeout {
            limit: Duration::from_millis(500)
        }
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_infinite_loop_yields_so_other_calls_progress_on_one_thread() {
    let host = TestHost::new();
    let err = attack_until_deadline(&host, "spin", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "timeout");
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let host = TestHost::new();
    let err = attack(&host, "hog", json!({})).await.unwrap_err();
    assert_eq!(
        err,
        CallError::OutOfMemory {
            limit_bytes: 16 * 1024 * 1024
        }
    );
}

#[tokio::test]
async fn unbounded_recursion_overflows_the_stack() {
    let host = TestHost::new();
    let err = attack(&host, "recurse", json!({})).await.unwrap_err();
    assert_eq!(
        err,
        CallError::Trap {
            kind: TrapKind::StackOverflow
        }
    );
    let err = attack(&host, "recurse_frames", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::Trap {
            kind: TrapKind::MemoryOutOfBounds
        }
    );
}

#[tokio::test]
async fn huge_output_is_refused() {
    let host = TestHost::new();
    let err = attack(&host, "flood_output", json!({"bytes": 1_000_000}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::OutputTooLarge {
            limit_bytes: 64 * 1024,
            // The text as encoded (quoted) plus the per-block overhead.
            actual_bytes: Some(1_000_002 + 64)
        }
    );
    let ok = attack(&host, "flood_output", json!({"bytes": 1000}))
        .await
        .unwrap();
    assert_eq!(ok.content, vec![Content::Text("x".repeat(1000))]);
}

#[tokio::test]
async fn a_log_flood_stops_at_the_log_limits() {
    let host = TestHost::new();
    let err = attack(&host, "flood_log", json!({})).await.unwrap_err();
    assert_eq!(
        err,
        CallError::LimitExceeded {
            limit: "log bytes",
            max: 1024
        }
    );

    let hostile = host
        .load_with(
            guests::HOSTILE,
            Limits {
                log_bytes: 1 << 20,
                ..tight()
            },
        )
        .await;
    let err = host
        .call(&hostile, "flood_log", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::LimitExceeded {
            limit: "log lines",
            max: 50
        }
    );
}

#[tokio::test]
async fn a_panic_is_a_trap() {
    let host = TestHost::new();
    let err = attack(&host, "panic", json!({})).await.unwrap_err();
    assert_eq!(
        err,
        CallError::Trap {
            kind: TrapKind::Unreachable
        }
    );
}

#[tokio::test]
async fn delegated_requests_are_capped_per_call() {
    let host = TestHost::new();
    let service = NotesService::new();
    let out = attack_with(&host, "delegate_spam", json!({}), service.clone())
        .await
        .unwrap();
    assert_eq!(out.structured, Some(json!({"sent": 8, "limited": 92})));
    assert_eq!(service.seen().len(), 8);
}

#[tokio::test]
async fn forged_credentials_and_escaping_paths_never_leave_the_host() {
    let host = TestHost::new();
    let service = NotesService::new();
    let out = attack_with(&host, "forge", json!({}), service.clone())
        .await
        .unwrap();
    let [Content::Json(text)] = &out.content[..] else {
        panic!("unexpected content {:?}", out.content)
    };
    let outcomes: Vec<String> = serde_json::from_str(text).unwrap();
    assert_eq!(outcomes.len(), 4);
    assert!(
        outcomes.iter().all(|o| o.starts_with("refused: ")),
        "{outcomes:?}"
    );
    assert!(service.seen().is_empty(), "nothing reached the service");
}

#[tokio::test]
async fn the_deadline_covers_delegated_requests() {
    let host = TestHost::new();
    let err = attack_until_deadline(&host, "slow_delegate", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::Timeout {
            limit: Duration::from_millis(500)
        }
    );
}

#[tokio::test]
async fn structured_output_that_breaks_its_schema_is_refused() {
    let host = TestHost::new();
    let err = attack(&host, "lie_in_output", json!({})).await.unwrap_err();
    assert!(
        matches!(&err, CallError::BadOutput(m) if m.contains("output schema")),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_host_keeps_serving_after_every_attack() {
    let host = TestHost::new();
    let _ = attack_until_deadline(&host, "spin", json!({}))
        .await
        .unwrap_err();
    for tool in ["hog", "recurse", "panic", "flood_log"] {
        let _ = attack(&host, tool, json!({})).await.unwrap_err();
    }
    let echo = host.load(guests::ECHO).await;
    for _ in 0..50 {
        host.call(&echo, "echo", json!({"text": "ok"}))
            .await
            .unwrap();
    }
    let err = host
        .call(
            &host.load(guests::NOTES).await,
            "delete_note",
            json!({"id": "../x"}),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CallError::Tool {
            kind: ToolErrorKind::InvalidInput,
            ..
        }
    ));
}
