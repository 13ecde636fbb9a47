//! Operational metrics: one Prometheus registry per host (never a
//! process-global recorder: tests run many hosts in one process) and typed
//! handles for what the host counts, served in the text format on the
//! separate `[server] metrics_listen` address.
//!
//! Labels are only ever a tenant id (from the configuration), a tool name
//! (from a tenant's catalog, after the tool was resolved), an outcome or a
//! reason from a fixed set. Never a user's subject, a client id, a session
//! id or anything from a token: those are unbounded and personal.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    tenant: String,
    tool: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    tenant: String,
    scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    tenant: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type Histograms = Family<TenantLabels, Histogram, fn() -> Histogram>;

/// Seconds from 1 ms to about 65 s, doubling.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Seconds from 100 µs to about 6.5 s, doubling (CPU time, queue waits).
fn short_seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// The host's metrics.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    call_duration: Histograms,
    call_cpu: Histograms,
    queue_wait: Histograms,
    long_running: Family<TenantLabels, Counter>,
    busy: Family<ScopeLabels, Counter>,
    rate_limited: Family<ScopeLabels, Counter>,
    token_failures: Family<ReasonLabels, Counter>,
    jwks_fetches: Family<OutcomeLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered (at zero).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("airlock");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "tool_calls",
            "Tool calls by tenant, tool and outcome (ok, or the error code)",
            calls.clone(),
        );
        let call_duration: Histograms = Family::new_with_constructor(seconds_histogram);
        registry.register_with_unit(
            "tool_call_duration",
            "Tool call latency by tenant: resolve, audit, queue and run",
            Unit::Seconds,
            call_duration.clone(),
        );
        let call_cpu: Histograms = Family::new_with_constructor(short_seconds_histogram);
        registry.register_with_unit(
            "tool_call_cpu",
            "CPU time a tool call's guest used, by tenant",
            Unit::Seconds,
            call_cpu.clone(),
        );
        let queue_wait: Histograms = Family::new_with_constructor(short_seconds_histogram);
        registry.register_with_unit(
            "queue_wait",
            "How long a tool call waited for a sandbox slot, by tenant",
            Unit::Seconds,
            queue_wait.clone(),
        );
        let long_running = Family::<TenantLabels, Counter>::default();
        registry.register(
            "long_running_calls",
            "Tool calls moved to the low-priority guest threads after 2 ms of CPU, by tenant",
            long_running.clone(),
        );
        let busy = Family::<ScopeLabels, Counter>::default();
        registry.register(
            "busy_refusals",
            "Tool calls refused because no slot freed in time, by tenant and scope (host, tenant)",
            busy.clone(),
        );
        let rate_limited = Family::<ScopeLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused with 429 by the edge's rate limits, by tenant and scope (user, tenant)",
            rate_limited.clone(),
        );
        let token_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "token_validation_failures",
            "Requests whose bearer token was refused, by tenant and reason",
            token_failures.clone(),
        );
        let jwks_fetches = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "jwks_fetches",
            "Fetches of issuers' keys (discovery and JWKS), by outcome (ok, error)",
            jwks_fetches.clone(),
        );
        Metrics {
            registry,
            calls,
            call_duration,
            call_cpu,
            queue_wait,
            long_running,
            busy,
            rate_limited,
            token_failures,
            jwks_fetches,
        }
    }

    /// Everything in the Prometheus (OpenMetrics) text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        out
    }

    /// A tool call of `tenant` to its catalog's `tool` ended with `outcome`
    /// (`ok` or a fixed error code) after `duration`.
    pub fn call(&self, tenant: &str, tool: &str, outcome: &'static str, duration: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                tenant: tenant.to_string(),
                tool: tool.to_string(),
                outcome,
            })
            .inc();
        self.call_duration
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .observe(duration.as_secs_f64());
    }

    /// A call of `tenant` used `cpu` of guest CPU time.
    pub fn call_cpu(&self, tenant: &str, cpu: Duration) {
        self.call_cpu
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .observe(cpu.as_secs_f64());
    }

    /// A call of `tenant` waited `wait` for its sandbox slot (whether it got
    /// one or not).
    pub fn queue_wait(&self, tenant: &str, wait: Duration) {
        self.queue_wait
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .observe(wait.as_secs_f64());
    }

    /// A call of `tenant` ran long and moved to the low-priority guest threads.
    pub fn long_running(&self, tenant: &str) {
        self.long_running
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .inc();
    }

    /// A call of `tenant` was refused as busy at `scope` (`host` or `tenant`).
    pub fn busy(&self, tenant: &str, scope: &'static str) {
        self.busy
            .get_or_create(&ScopeLabels {
                tenant: tenant.to_string(),
                scope,
            })
            .inc();
    }

    /// A request to `tenant` was refused by the rate limit of `scope`
    /// (`user` or `tenant`).
    pub fn rate_limited(&self, tenant: &str, scope: &'static str) {
        self.rate_limited
            .get_or_create(&ScopeLabels {
                tenant: tenant.to_string(),
                scope,
            })
            .inc();
    }

    /// A bearer token presented to `tenant` was refused for `reason` (a
    /// fixed string, never from the token).
    pub fn token_failure(&self, tenant: &str, reason: &'static str) {
        self.token_failures
            .get_or_create(&ReasonLabels {
                tenant: tenant.to_string(),
                reason,
            })
            .inc();
    }

    /// A fetch of an issuer's keys ended, `ok` or not.
    pub fn jwks_fetch(&self, ok: bool) {
        self.jwks_fetches
            .get_or_create(&OutcomeLabels {
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_registered_metrics_with_their_labels() {
        let metrics = Metrics::new();
        metrics.call("acme", "echo", "ok", Duration::from_millis(3));
        metrics.token_failure("acme", "expired");
        metrics.jwks_fetch(true);
        let text = metrics.encode();
        assert!(
            text.contains(r#"airlock_tool_calls_total{tenant="acme",tool="echo",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"airlock_token_validation_failures_total{tenant="acme",reason="expired"} 1"#
        ));
        assert!(text.contains(r#"airlock_jwks_fetches_total{outcome="ok"} 1"#));
        assert!(text.contains("airlock_tool_call_duration_seconds_bucket"));
    }
}
