//! Assembling and running the host: configuration → sandbox → registry → MCP
//! services → edge, served over HTTP with TCP_NODELAY and graceful shutdown
//! (`listen`: the accept loop, connection cap, header-read and idle timeouts).

mod listen;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditLog, AuditSettings, CheckpointSigner};
use crate::config::Config;
use crate::config::{SecretSource, ServiceCredential, ServiceMode, VaultKeySource};
use crate::connect::{self, Connector};
use crate::delegate::{Broker, Delegate, Delegation};
use crate::edge::{self, Edge};
use crate::envelope::KeyRing;
use crate::invoke::{Invoker, TenantInvoker, TenantPolicy};
use crate::mcp::{self, McpHandler, TransportSettings};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::sandbox::{Sandbox, SandboxSettings};
use crate::storage::Storage;
use crate::vault::Vault;

/// The longest an envelope can live: the largest tool timeout the
/// configuration accepts. Retired signing keys stay published this long.
pub const MAX_ENVELOPE_LIFETIME_S: u64 = 600;

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
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The key sealing input rounds' `requestState` is unusable.
    #[error(transparent)]
    RoundKey(#[from] crate::rounds::RoundKeyError),
    /// The envelope signing keys are unusable.
    #[error("envelope signing keys: {0}")]
    Keys(#[from] crate::envelope::KeyError),
    /// A service is unusable as configured.
    #[error(transparent)]
    Broker(#[from] crate::delegate::BrokerError),
    /// The audit trail could not be opened.
    #[error("audit trail: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// The vault could not be opened (a wrong or missing master key).
    #[error("vault: {0}")]
    Vault(#[from] crate::vault::VaultError),
    /// Account connect is unusable as configured.
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    /// Listening or serving failed.
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
}

/// A built host, ready to serve.
pub struct Host {
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
    connections: listen::ConnectionLimits,
    storage: Storage,
    audit: Arc<AuditLog>,
    vault: Option<Arc<Vault>>,
    data_dir: std::path::PathBuf,
    metrics: Arc<Metrics>,
    /// The `/metrics` listener, bound when the host was built.
    metrics_listener: Option<tokio::net::TcpListener>,
    /// Set once shutdown begins: `/readyz` answers 503 from then on.
    draining: Arc<AtomicBool>,
}

/// Checkpoints of the audit trail are signed with the envelope key ring.
struct RingSigner(Arc<KeyRing>);

impl CheckpointSigner for RingSigner {
    fn sign(&self, msg: &[u8]) -> Result<(String, Vec<u8>), String> {
        let (kid, signature) = self.0.sign_bytes(msg);
        Ok((kid, signature.to_vec()))
    }
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
    /// Build everything `config` describes: open the data directory's
    /// database and envelope key ring, load the components, build the
    /// delegation broker for the configured services, and assemble the HTTP
    /// service.
    pub async fn build(config: Config) -> Result<Self, ServeError> {
        Self::assemble(config, None).await
    }

    /// [`Host::build`] with every delegated request going to `delegate`
    /// instead of the broker (tests, tools).
    pub async fn build_with(
        config: Config,
        delegate: Arc<dyn Delegate>,
    ) -> Result<Self, ServeError> {
        Self::assemble(config, Some(delegate)).await
    }

    async fn assemble(
        config: Config,
        delegate: Option<Arc<dyn Delegate>>,
    ) -> Result<Self, ServeError> {
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new());
        create_private_dir(&config.data_dir).map_err(|source| ServeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let storage = Storage::open_waiting(&config.data_dir.join("db"), Duration::from_secs(5))?;
        let keys = Arc::new(KeyRing::open(&KeyRing::dir_in(&config.data_dir))?);
        let audit = Arc::new(AuditLog::open(
            &storage,
            Arc::new(RingSigner(keys.clone())),
            AuditSettings::default(),
        )?);
        let sandbox = Arc::new(Sandbox::new(SandboxSettings {
            max_concurrent_calls: config.server.max_concurrent_calls,
            max_concurrent_calls_per_tenant: config.server.max_concurrent_calls_per_tenant,
            queue_timeout: config.server.queue_timeout,
            guest_threads: config.server.guest_threads,
            tenant_weights: config
                .tenants
                .iter()
                .map(|(id, t)| (id.clone(), t.weight))
                .collect(),
            cache_dir: Some(config.data_dir.join("compiled")),
            ..SandboxSettings::default()
        })?);
        sandbox.set_metrics(metrics.clone());
        let registry = Registry::build(&config, &sandbox).await?;
        let vault = match uses_vault(&config) {
            true => Some(Arc::new(Vault::open(&storage, &config.vault_key)?)),
            false => None,
        };
        let edge = Arc::new(Edge::with_metrics(config.clone(), metrics.clone())?);
        let connector = match &vault {
            Some(vault) if config.tenants.values().any(|t| t.connect.is_some()) => Some(Arc::new(
                Connector::new(&config, edge.clone(), vault.clone())?,
            )),
            _ => None,
        };
        let delegation: Arc<dyn Delegation> = match delegate {
            Some(delegate) => Arc::new(delegate),
            None => Arc::new(Arc::new(Broker::new(
                &config,
                keys.clone(),
                audit.clone(),
                connector.clone(),
            )?)),
        };
        let mut invoker = Invoker::new(sandbox, delegation, audit.clone())
            .with_metrics(metrics.clone())
            .with_rounds(
                crate::rounds::Rounds::open_or_create(
                    &config.data_dir.join("keys").join("rounds.key"),
                )?
                .with_ledger(storage.tree("rounds_answered")?),
            );
        if let Some(connector) = &connector {
            invoker = invoker.with_connector(connector.clone());
        }
        let invoker = Arc::new(invoker);
        let shutdown = CancellationToken::new();
        let mut services = BTreeMap::new();
        for (tenant, tenant_config) in &config.tenants {
            let Some(catalog) = registry.tenant(tenant) else {
                continue;
            };
            let policy = TenantPolicy {
                audit_fail_closed: tenant_config.audit_fail_closed,
            };
            let handler = McpHandler::new(Arc::new(TenantInvoker::new(
                catalog,
                invoker.clone(),
                policy,
            )));
            let settings = TransportSettings {
                allowed_hosts: allowed_hosts(&config),
                shutdown: shutdown.child_token(),
                session_idle: config.server.sessions.idle,
                input_timeout: config.server.request_timeout,
            };
            services.insert(tenant.clone(), mcp::service(handler, settings));
        }
        let draining = Arc::new(AtomicBool::new(false));
        let mut router = edge::router(edge, services)
            .merge(envelope_keys(keys))
            .merge(health(storage.clone(), draining.clone()));
        if let Some(connector) = connector {
            router = router.merge(connect::router(connector));
        }
        let router = router
            .layer(axum::middleware::from_fn_with_state(
                config.server.request_timeout,
                deadline,
            ))
            .layer(DefaultBodyLimit::max(config.server.max_request_bytes))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                config.server.max_request_bytes,
            ));
        let metrics_listener = match config.server.metrics_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr} for metrics: {e}"),
                )
            })?),
            None => None,
        };
        Ok(Host {
            router,
            shutdown,
            grace: config.server.request_timeout,
            connections: listen::ConnectionLimits {
                header_read_timeout: config.server.header_read_timeout,
                idle_timeout: config.server.idle_timeout,
                max_connections: config.server.max_connections,
            },
            storage,
            audit,
            vault,
            data_dir: config.data_dir.clone(),
            metrics,
            metrics_listener,
            draining,
        })
    }

    /// The host's metrics (what `/metrics` serves).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where `/metrics` is served (`[server] metrics_listen`, bound when the
    /// host was built: a port 0 there is chosen by the system).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The vault, when the configuration uses one.
    pub fn vault(&self) -> Option<&Arc<Vault>> {
        self.vault.as_ref()
    }

    /// The host's database, for the parts of the process that share it
    /// (`airlock dev`'s authorization servers).
    pub fn storage(&self) -> &Storage {
        &self.storage
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
    /// Connections are capped and closed when their request head is too slow
    /// or they sit idle (`[server]` `max_connections`,
    /// `header_read_timeout_ms`, `idle_timeout_ms`).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        // Vault commands (`airlock vault …`) reach a running host here.
        let admin_stop = CancellationToken::new();
        let admin = self.vault.clone().map(|vault| {
            let socket = crate::vault::admin::socket_path(&self.data_dir);
            let stop = admin_stop.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::vault::admin::serve_admin(vault, socket, stop).await {
                    tracing::error!(
                        error = %e,
                        "the vault admin socket is not served: `airlock vault` cannot reach this host"
                    );
                }
            })
        });
        // `/metrics` on its own listener, until the main one has stopped.
        let metrics_stop = CancellationToken::new();
        let metrics_served = self.metrics_listener.map(|listener| {
            let stop = metrics_stop.clone();
            let limits = listen::ConnectionLimits {
                max_connections: 16,
                ..self.connections
            };
            tokio::spawn(listen::serve(
                listener,
                metrics_router(self.metrics.clone()),
                limits,
                async move { stop.cancelled().await },
            ))
        });
        let shutdown = self.shutdown.clone();
        let grace = self.grace;
        let draining = self.draining.clone();
        let stopping = async move {
            signal.await;
            draining.store(true, Ordering::Relaxed);
            tracing::info!("shutting down: finishing in-flight requests");
            // Long-lived event streams never end by themselves: close them
            // once in-flight calls have had their time.
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                shutdown.cancel();
            });
        };
        // The peer address reaches handlers as `ConnectInfo<SocketAddr>` (the
        // dev issuer limits client registrations per address).
        let served = listen::serve(listener, self.router, self.connections, stopping).await;
        self.shutdown.cancel();
        admin_stop.cancel();
        metrics_stop.cancel();
        if let Some(served) = metrics_served {
            let _ = served.await;
        }
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        served?;
        // Every call has ended: write what is queued and the final checkpoints.
        self.audit.shutdown().await?;
        Ok(())
    }
}

/// Create the data directory owner-only (0700) if missing; warn if an
/// existing one lets others write in it (they could replace its sockets).
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        } else if std::fs::metadata(dir)?.permissions().mode() & 0o022 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                "the data directory is writable by other users; make it 0700"
            );
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Whether the configuration needs the vault: accounts to connect, a secret
/// kept there, or a vault key file already made.
fn uses_vault(config: &Config) -> bool {
    let in_vault = |s: &SecretSource| matches!(s, SecretSource::Vault(_));
    let key_file_exists = matches!(&config.vault_key, VaultKeySource::File(f) if f.exists());
    key_file_exists
        || config.tenants.values().any(|t| {
            t.connect.is_some()
                || !t.providers.is_empty()
                || t.providers
                    .values()
                    .any(|p| p.secret.as_ref().is_some_and(in_vault))
                || t.services.values().any(|s| match &s.mode {
                    ServiceMode::Service(Some(ServiceCredential::Static { secret, .. })) => {
                        in_vault(secret)
                    }
                    ServiceMode::Service(Some(ServiceCredential::ClientCredentials(c)))
                    | ServiceMode::OnBehalfOf(c) => in_vault(&c.secret),
                    ServiceMode::Service(None) | ServiceMode::UserToken { .. } => false,
                })
        })
}

/// `GET /.well-known/jwks.json`: the public keys that verify envelopes (and
/// audit checkpoints), retired keys included until what they signed expired.
fn envelope_keys(keys: Arc<KeyRing>) -> Router {
    use axum::http::header;
    use axum::response::IntoResponse;
    let handler = move || {
        let keys = keys.clone();
        async move {
            keys.refresh_if_due();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            (
                [
                    (header::CACHE_CONTROL, "public, max-age=300"),
                    (header::CONTENT_TYPE, "application/jwk-set+json"),
                ],
                keys.jwks(now, MAX_ENVELOPE_LIFETIME_S).to_string(),
            )
                .into_response()
        }
    };
    Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(handler).layer(edge::public_cors()),
    )
}

/// `GET /healthz` (the process answers: 200 `ok`) and `GET /readyz` (200
/// while the database answers and shutdown has not begun, else 503): no
/// token, no work beyond one in-memory read. A host exists only once its
/// components are loaded and its storage, keys and audit trail are open.
fn health(storage: Storage, draining: Arc<AtomicBool>) -> Router {
    use axum::http::StatusCode;
    let ready = move || {
        let storage = storage.clone();
        let draining = draining.clone();
        async move {
            if draining.load(Ordering::Relaxed) {
                (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
            } else if !storage.is_usable() {
                (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
            } else {
                (StatusCode::OK, "ready")
            }
        }
    };
    Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(ready))
}

/// `GET /metrics` in the Prometheus text format, for the metrics listener.
fn metrics_router(metrics: Arc<Metrics>) -> Router {
    use axum::http::header;
    Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                    metrics.encode(),
                )
            }
        }),
    )
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
