//! In-process sandbox benchmark: a fresh component instance per call.
//!
//! `cargo bench -p airlock-tests --bench sandbox` prints p50/p99 latency of one
//! call (instantiate + call + drop) on one task, and calls per second with
//! concurrent tasks on all cores, for `echo` and `whoami`. Results go in
//! BENCHMARKS.md by hand, with the machine.

/// The allocator the `airlock` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use airlock_host::sandbox::LoadedComponent;
use airlock_tests::{TestHost, guests};
use serde_json::{Value, json};

const WARMUP: usize = 1_000;
const SAMPLES: usize = 20_000;
const THROUGHPUT_FOR: Duration = Duration::from_secs(5);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn latency(
    host: &TestHost,
    component: &LoadedComponent,
    tool: &str,
    args: &Value,
) -> (Duration, Duration, Duration) {
    for _ in 0..WARMUP {
        host.call(component, tool, args.clone()).await.unwrap();
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let start = Instant::now();
        host.call(component, tool, args.clone()).await.unwrap();
        samples.push(start.elapsed());
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / SAMPLES as u32;
    (percentile(&samples, 0.50), percentile(&samples, 0.99), mean)
}

async fn throughput(
    host: Arc<TestHost>,
    component: LoadedComponent,
    tool: &'static str,
    args: Value,
    tasks: usize,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (host, component, args, done) =
            (host.clone(), component.clone(), args.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            while start.elapsed() < THROUGHPUT_FOR {
                host.call(&component, tool, args.clone()).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores available")
}

fn main() {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // In process there is no edge to leave room for: guests get every core.
        let host = Arc::new(TestHost::with_settings(
            airlock_host::sandbox::SandboxSettings {
                guest_threads: cores,
                ..airlock_tests::test_settings()
            },
        ));
        println!("machine: {}, guest threads: {cores}", machine());
        println!();
        println!(
            "| tool | p50 | p99 | mean | calls/s ({} tasks, {cores} threads) |",
            cores * 2
        );
        println!("| --- | --- | --- | --- | --- |");
        for (path, tool, args) in [
            (guests::ECHO, "echo", json!({"text": "hello"})),
            (guests::WHOAMI, "whoami", json!({})),
        ] {
            let component = host.load(path).await;
            let (p50, p99, mean) = latency(&host, &component, tool, &args).await;
            let rate = throughput(host.clone(), component, tool, args, cores * 2).await;
            println!(
                "| {tool} | {:.1} µs | {:.1} µs | {:.1} µs | {rate:.0} |",
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6,
                mean.as_secs_f64() * 1e6,
            );
        }
    });
}
