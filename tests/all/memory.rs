//! Host memory stays flat across many calls: nothing per call outlives the call.
//!
//! Resident memory is process-wide, and other tests run in parallel in this
//! binary, so the measurement runs in a child process running only this test.

use airlock_tests::{TestHost, guests};
use serde_json::json;

const CHILD_ENV: &str = "AIRLOCK_MEMORY_CHILD";

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn resident_memory_returns_to_baseline_after_10_000_calls() {
    if airlock_tests::in_child_process(
        "memory::resident_memory_returns_to_baseline_after_10_000_calls",
        CHILD_ENV,
    ) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let host = TestHost::new();
        let echo = host.load(guests::ECHO).await;
        let whoami = host.load(guests::WHOAMI).await;
        let round = async |n: usize| {
            for i in 0..n {
                let text = format!("call {i}");
                host.call(&echo, "echo", json!({ "text": text }))
                    .await
                    .unwrap();
                host.call(&whoami, "whoami", json!({})).await.unwrap();
            }
        };
        // Warm up: pool slots, allocator arenas, lazily initialised state.
        round(1_000).await;
        let baseline = resident_bytes();
        round(5_000).await; // 10,000 calls: 5,000 of each tool.
        let after = resident_bytes();
        let growth = after.saturating_sub(baseline);
        println!("baseline {baseline} B, after {after} B, growth {growth} B");
        // Per-call leaks of even 1 KiB would show as ~10 MB here.
        assert!(
            growth < 4 * 1024 * 1024,
            "resident memory grew by {growth} bytes"
        );
    });
}
