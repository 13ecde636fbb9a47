//! Assembling and running the host: configuration → sandbox → registry → MCP
//! services → edge, served over HTTP with TCP_NODELAY and graceful shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::serve::ListenerExt;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::delegate::Delegate;
use crate::edge::{self, Edge};
use crate::mcp::{self, McpHandler, TransportSettings};
use crate::registry::Registry;
use crate::sandbox::{Sandbox, SandboxSettings};

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The sandbox could not start.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// A component or tenant is unusable.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The edge could not start.
    #[error(transparent)]
    Edge(#[from] edge::EdgeError),
    /// Listening or serving failed.
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
}

/// A built host, ready to serve.
pub struct Host {
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

fn allowed_hosts(config: &Config) -> Vec<String> {
    let mut hosts = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "[::1]".to_string(),
        config.listen.to_string(),
    ];
    if let Ok(url) = url::Url::parse(&config.public_url)
        && let Some(host) = url.host_str()
    {
        hosts.push(host.to_string());
        if let Some(port) = url.port() {
            hosts.push(format!("{host}:{port}"));
        }
    }
    hosts
}

impl Host {
    /// Build everything `config` describes. Delegated requests go to `delegate`.
    pub async fn build(config: Config, delegate: Arc<dyn Delegate>) -> Result<Self, ServeError> {
        let config = Arc::new(config);
        let sandbox = Arc::new(Sandbox::new(SandboxSettings {
            max_concurrent_calls: config.server.max_concurrent_calls,
            max_concurrent_calls_per_tenant: config.server.max_concurrent_calls_per_tenant,
            queue_timeout: config.server.queue_timeout,
            cache_dir: Some(config.data_dir.join("compiled")),
            ..SandboxSettings::default()
        })?);
        let registry = Registry::build(&config, &sandbox).await?;
        let shutdown = CancellationToken::new();
        let mut services = BTreeMap::new();
        for tenant in config.tenants.keys() {
            let Some(catalog) = registry.tenant(tenant) else {
                continue;
            };
            let handler = McpHandler::new(catalog, sandbox.clone(), delegate.clone());
            let settings = TransportSettings {
                allowed_hosts: allowed_hosts(&config),
                shutdown: shutdown.child_token(),
            };
            services.insert(tenant.clone(), mcp::service(handler, settings));
        }
        let edge = Arc::new(Edge::new(config.clone())?);
        let router = edge::router(edge, services)
            .layer(axum::middleware::from_fn_with_state(
                config.server.request_timeout,
                deadline,
            ))
            .layer(DefaultBodyLimit::max(config.server.max_request_bytes))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                config.server.max_request_bytes,
            ));
        Ok(Host {
            router,
            shutdown,
            grace: config.server.request_timeout,
        })
    }

    /// Serve `routes` beside the MCP endpoints (used by `airlock dev` for its
    /// authorization servers).
    pub fn with_routes(mut self, routes: Router) -> Self {
        self.router = self.router.merge(routes);
        self
    }

    /// The router, for embedding or tests.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serve on `listener` until `signal` completes, then stop accepting, let
    /// in-flight requests finish (up to the request timeout) and close streams.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let listener = listener.tap_io(|tcp| {
            // Streaming responses stall ~40 ms per request without this.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let shutdown = self.shutdown.clone();
        let grace = self.grace;
        let stopping = async move {
            signal.await;
            tracing::info!("shutting down: finishing in-flight requests");
            // Long-lived event streams never end by themselves: close them
            // once in-flight calls have had their time.
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                shutdown.cancel();
            });
        };
        axum::serve(listener, self.router)
            .with_graceful_shutdown(stopping)
            .await?;
        self.shutdown.cancel();
        Ok(())
    }
}

/// Every request has a deadline: its response must start within it, and a
/// POST's response (often a short event stream carrying one JSON-RPC reply)
/// ends at it. Only the long-lived GET event stream of a legacy session is
/// exempt. Without this, a request the protocol layer parks (for instance a
/// duplicate in-flight JSON-RPC id) would hold its connection forever.
async fn deadline(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use futures_util::StreamExt;

    let bounded_body = request.method() != axum::http::Method::GET;
    let until = tokio::time::Instant::now() + limit;
    let response = match tokio::time::timeout_at(until, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            return (
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                "the request did not complete within the server's request timeout",
            )
                .into_response();
        }
    };
    if !bounded_body {
        return response;
    }
    let (parts, body) = response.into_parts();
    let stream = body
        .into_data_stream()
        .take_until(tokio::time::sleep_until(until));
    axum::response::Response::from_parts(parts, axum::body::Body::from_stream(stream))
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
