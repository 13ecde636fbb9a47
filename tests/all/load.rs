//! Under load: runaway tools use their tenant's share and their own CPU
//! time, never anyone else's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_host::delegate::DenyAll;
use airlock_host::sandbox::{BusyScope, CallError, CallRequest, Content, Limits, SandboxSettings};
use airlock_tests::{NotesService, TestHost, envelope, guests, test_settings};
use serde_json::json;

/// Runaways that keep running for the whole test unless the CPU limit ends them.
fn runaway(cpu: Duration) -> Limits {
    Limits {
        timeout: Duration::from_millis(2500),
        cpu,
        ..Limits::default()
    }
}

/// Two known tenants sharing four slots: two each.
fn shared() -> SandboxSettings {
    SandboxSettings {
        max_concurrent_calls: 4,
        max_concurrent_calls_per_tenant: 4,
        queue_timeout: Duration::from_secs(1),
        tenant_weights: BTreeMap::from([("acme".to_string(), 1), ("globex".to_string(), 1)]),
        ..test_settings()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaways_of_one_tenant_leave_the_other_tenant_its_share() {
    let host = Arc::new(TestHost::with_settings(shared()));
    let hostile = host
        .load_with(guests::HOSTILE, runaway(Duration::from_secs(10)))
        .await;
    let echo = host.load(guests::ECHO).await;
    // Tenant acme fills its share (two users, one runaway each).
    let mut runaways = Vec::new();
    for user in ["a1", "a2"] {
        let (host, hostile) = (host.clone(), hostile.clone());
        runaways.push(tokio::spawn(async move {
            host.call_as(
                &hostile,
                envelope("acme", user, "spin", &[]),
                json!({}),
                Arc::new(DenyAll),
            )
            .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // acme's next call waits briefly, then is told its tenant is busy.
    let extra = host
        .call_as(
            &echo,
            envelope("acme", "a3", "echo", &[]),
            json!({"text": "x"}),
            Arc::new(DenyAll),
        )
        .await;
    assert_eq!(
        extra.unwrap_err(),
        CallError::Busy {
            scope: BusyScope::Tenant
        }
    );

    // globex's calls, several at once, still run promptly.
    let began = Instant::now();
    let calls = (0..8).map(|i| {
        host.call_as(
            &echo,
            envelope("globex", &format!("b{}", i % 2), "echo", &[]),
            json!({"text": format!("call {i}")}),
            Arc::new(DenyAll),
        )
    });
    for (i, result) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            result.expect("the other tenant's call succeeds").content,
            vec![Content::Text(format!("call {i}"))]
        );
    }
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "the other tenant waited {:?}",
        began.elapsed()
    );

    for task in runaways {
        assert_eq!(task.await.unwrap().unwrap_err().code(), "timeout");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cpu_limit_ends_a_spinning_call_with_its_own_error() {
    let host = TestHost::new();
    // A deadline far off: on a busy machine the spinning call, moved to the
    // low-priority threads, may take long to use its 200 ms of CPU.
    let hostile = host
        .load_with(
            guests::HOSTILE,
            Limits {
                timeout: Duration::from_secs(60),
                ..runaway(Duration::from_millis(200))
            },
        )
        .await;
    let (result, cpu) = host
        .sandbox
        .call_metered(
            &hostile,
            CallRequest::new(
                envelope("acme", "mallory", "spin", &[]),
                "{}".into(),
                Arc::new(DenyAll),
            ),
        )
        .await;
    let err = result.unwrap_err();
    assert_eq!(
        err,
        CallError::CpuLimit {
            limit: Duration::from_millis(200)
        }
    );
    assert_eq!(err.code(), "cpu_limit");
    assert!(
        err.to_string().contains("CPU time limit of 200 ms"),
        "{err}"
    );
    let cpu = cpu.expect("the guest ran");
    assert!(cpu >= Duration::from_millis(200), "{cpu:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaiting_a_slow_service_is_not_cpu_time() {
    let host = TestHost::new();
    let hostile = host
        .load_with(
            guests::HOSTILE,
            Limits {
                timeout: Duration::from_millis(1000),
                cpu: Duration::from_millis(50),
                ..Limits::default()
            },
        )
        .await;
    // `slow` never answers: the call waits far longer than its CPU limit
    // and ends at its wall-clock deadline instead.
    let (result, cpu) = host
        .sandbox
        .call_metered(
            &hostile,
            CallRequest::new(
                envelope("acme", "mallory", "slow_delegate", &["slow"]),
                "{}".into(),
                NotesService::new(),
            ),
        )
        .await;
    assert_eq!(
        result.unwrap_err(),
        CallError::Timeout {
            limit: Duration::from_millis(1000)
        }
    );
    let cpu = cpu.expect("the guest ran");
    assert!(cpu < Duration::from_millis(50), "{cpu:?}");
}
