//! Per-tool resource limits and the host-wide settings they must fit in.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// What one call of a tool may use. Every limit is enforced: exceeding it ends
/// the call with an error that names the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock deadline for the whole call, including delegated requests.
    pub timeout: Duration,
    /// CPU time the guest may use: time it spends executing, counted from
    /// epoch ticks while it runs; time awaiting the host (a delegated
    /// request) or waiting for a thread does not count.
    pub cpu: Duration,
    /// Largest result as encoded for the client, in bytes: every content
    /// block costs a fixed overhead plus its payload as sent (JSON-escaped
    /// text, base64 images), plus the structured output.
    pub output_bytes: usize,
    /// Most content blocks in one result.
    pub content_blocks: u32,
    /// Most delegated requests per call.
    pub delegate_calls: u32,
    /// Most log lines per call.
    pub log_lines: u32,
    /// Most log bytes per call.
    pub log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(5),
            cpu: Duration::from_secs(2),
            output_bytes: 1024 * 1024,
            content_blocks: 256,
            delegate_calls: 32,
            log_lines: 256,
            log_bytes: 64 * 1024,
        }
    }
}

/// A limit outside what the host allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit `{name}` is {value}; it must be between {min} and {max}")]
pub struct LimitsError {
    /// The limit's name.
    pub name: &'static str,
    /// The value given.
    pub value: u128,
    /// Smallest allowed.
    pub min: u128,
    /// Largest allowed.
    pub max: u128,
}

impl Limits {
    /// Check every limit is in range, with memory at most `max_memory_bytes`
    /// (the host's [`SandboxSettings::max_memory_bytes`]).
    pub fn validate_memory(&self, max_memory_bytes: usize) -> Result<(), LimitsError> {
        let check = |name, value: u128, min: u128, max: u128| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(LimitsError {
                    name,
                    value,
                    min,
                    max,
                })
            }
        };
        check(
            "memory_bytes",
            self.memory_bytes as u128,
            1024 * 1024,
            max_memory_bytes as u128,
        )?;
        check("timeout_ms", self.timeout.as_millis(), 10, 600_000)?;
        check("cpu_ms", self.cpu.as_millis(), 10, 600_000)?;
        check(
            "output_bytes",
            self.output_bytes as u128,
            1024,
            64 * 1024 * 1024,
        )?;
        check("content_blocks", self.content_blocks.into(), 1, 100_000)?;
        check("delegate_calls", self.delegate_calls.into(), 0, 10_000)?;
        check("log_lines", self.log_lines.into(), 0, 1_000_000)?;
        check("log_bytes", self.log_bytes as u128, 0, 64 * 1024 * 1024)?;
        Ok(())
    }
}

/// Slack on top of the largest legitimate transfer, for the small fixed parts
/// of a value (names, tags, the host's own representation of list elements).
const TRANSFER_SLACK: usize = 64 * 1024;

impl Limits {
    /// The most bytes the host copies out of the guest in one transfer (a
    /// result, or one import call's arguments): enough for the largest result
    /// `output_bytes` allows and the largest request or log line, and no more.
    /// wasmtime enforces it while lifting values ("hostcall fuel"), so an
    /// oversized value is refused before the host allocates for it.
    pub fn transfer_bytes(&self, request: &crate::delegate::RequestLimits) -> usize {
        self.output_bytes
            .max(request.max_total_bytes())
            .max(self.log_bytes)
            .saturating_add(TRANSFER_SLACK)
    }
}

/// Host-wide sandbox settings, fixed when the [`super::Sandbox`] is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSettings {
    /// Most calls running at once across all tenants; also sizes the instance pool.
    pub max_concurrent_calls: u32,
    /// Most calls running at once for one tenant.
    pub max_concurrent_calls_per_tenant: u32,
    /// How long a call waits for a free slot before failing as busy.
    pub queue_timeout: Duration,
    /// The ceiling for any tool's `memory_bytes`.
    pub max_memory_bytes: usize,
    /// Where compiled components are cached, keyed by content hash and engine
    /// version. `None` compiles every load.
    pub cache_dir: Option<PathBuf>,
    /// Threads that run guests, apart from the runtime serving HTTP; by
    /// default one fewer than the cores (at least 1), so the edge always has
    /// a core's worth of room.
    pub guest_threads: usize,
    /// Tenants' weights in sharing the slots; a tenant not listed has
    /// weight 1 and joins when it first calls.
    pub tenant_weights: BTreeMap<String, u32>,
}

/// The default number of guest threads: one fewer than the cores, at least 1.
pub fn default_guest_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .saturating_sub(1)
        .max(1)
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            max_concurrent_calls: 64,
            max_concurrent_calls_per_tenant: 16,
            queue_timeout: Duration::from_secs(2),
            max_memory_bytes: 256 * 1024 * 1024,
            cache_dir: None,
            guest_threads: default_guest_threads(),
            tenant_weights: BTreeMap::new(),
        }
    }
}
