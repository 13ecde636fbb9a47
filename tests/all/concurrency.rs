//! Concurrency caps: exhaustion queues briefly, then fails with a clear "busy".

use std::sync::Arc;
use std::time::Duration;

use airlock_host::delegate::DenyAll;
use airlock_host::sandbox::{BusyScope, CallError, Limits, SandboxSettings};
use airlock_tests::{TestHost, envelope, guests, test_settings};
use serde_json::json;

fn settings(global: u32, per_tenant: u32) -> SandboxSettings {
    SandboxSettings {
        max_concurrent_calls: global,
        max_concurrent_calls_per_tenant: per_tenant,
        queue_timeout: Duration::from_millis(100),
        ..test_settings()
    }
}

const SPIN: Limits = Limits {
    timeout: Duration::from_millis(1500),
    cpu: Duration::from_secs(2),
    memory_bytes: 16 * 1024 * 1024,
    output_bytes: 1024 * 1024,
    content_blocks: 16,
    delegate_calls: 0,
    log_lines: 0,
    log_bytes: 0,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_host_answers_busy() {
    let host = TestHost::with_settings(settings(1, 1));
    let hostile = host.load_with(guests::HOSTILE, SPIN).await;
    let echo = host.load(guests::ECHO).await;
    let spinning = host.call_as(
        &hostile,
        envelope("acme", "a", "spin", &[]),
        json!({}),
        Arc::new(DenyAll),
    );
    let blocked = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        host.call_as(
            &echo,
            envelope("globex", "c", "echo", &[]),
            json!({"text": "x"}),
            Arc::new(DenyAll),
        )
        .await
    };
    let (spun, blocked) = tokio::join!(spinning, blocked);
    assert_eq!(spun.unwrap_err().code(), "timeout");
    let err = blocked.unwrap_err();
    assert_eq!(
        err,
        CallError::Busy {
            scope: BusyScope::Host
        }
    );
    assert!(err.to_string().contains("busy"));
    // Once the slot is free, calls run again.
    host.call(&echo, "echo", json!({"text": "x"}))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_take_every_slot() {
    let host = TestHost::with_settings(settings(4, 1));
    let hostile = host.load_with(guests::HOSTILE, SPIN).await;
    let echo = host.load(guests::ECHO).await;
    let spinning = host.call_as(
        &hostile,
        envelope("acme", "a", "spin", &[]),
        json!({}),
        Arc::new(DenyAll),
    );
    let others = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let same = host
            .call_as(
                &echo,
                envelope("acme", "b", "echo", &[]),
                json!({"text": "x"}),
                Arc::new(DenyAll),
            )
            .await;
        let other = host
            .call_as(
                &echo,
                envelope("globex", "c", "echo", &[]),
                json!({"text": "y"}),
                Arc::new(DenyAll),
            )
            .await;
        (same, other)
    };
    let (spun, (same, other)) = tokio::join!(spinning, others);
    assert_eq!(spun.unwrap_err().code(), "timeout");
    assert_eq!(
        same.unwrap_err(),
        CallError::Busy {
            scope: BusyScope::Tenant
        }
    );
    other.expect("another tenant still gets a slot");
}
