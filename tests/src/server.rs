//! A real airlock host listening on `127.0.0.1:0`, built from a configuration
//! file text exactly as `airlock serve` would build it.

use std::path::Path;
use std::sync::Arc;

use airlock_host::config::Config;
use airlock_host::delegate::{Delegate, DenyAll};
use airlock_host::server::Host;
use tokio::sync::oneshot;

use crate::guests;

/// A running host.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `http://ADDR/metrics` when the configuration sets
    /// `[server] metrics_listen` (`"127.0.0.1:0"` picks a free port).
    pub metrics_url: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
    _data: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Start a host whose configuration is the standard head (listen, public
    /// URL, data directory, components `echo`, `whoami`, `notes`, `hostile`) followed by
    /// `rest` (tenants and server settings).
    pub async fn start(rest: &str) -> Self {
        Self::start_with(rest, Arc::new(DenyAll)).await
    }

    /// [`TestServer::start`] with delegated requests going to `delegate`.
    pub async fn start_with(rest: &str, delegate: Arc<dyn Delegate>) -> Self {
        Self::start_inner(rest, Some(delegate)).await
    }

    /// [`TestServer::start`] with the real delegation broker for the
    /// services `rest` configures.
    pub async fn start_brokered(rest: &str) -> Self {
        Self::start_inner(rest, None).await
    }

    /// [`TestServer::start_brokered`] on a data directory prepared beforehand.
    pub async fn start_brokered_in(data: tempfile::TempDir, rest: &str) -> Self {
        Self::start_in(data, rest, None).await
    }

    async fn start_inner(rest: &str, delegate: Option<Arc<dyn Delegate>>) -> Self {
        Self::start_in(tempfile::tempdir().expect("tempdir"), rest, delegate).await
    }

    async fn start_in(
        data: tempfile::TempDir,
        rest: &str,
        delegate: Option<Arc<dyn Delegate>>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let text = format!(
            "listen = \"{addr}\"\npublic_url = \"{url}\"\ndata_dir = {data:?}\n\
             allowed_origins = [\"http://localhost:6274\"]\n\
             [components.echo]\npath = {echo:?}\n\
             [components.whoami]\npath = {whoami:?}\n\
             [components.notes]\npath = {notes:?}\n\
             [components.hostile]\npath = {hostile:?}\n{rest}",
            data = data.path().display().to_string(),
            echo = guests::ECHO,
            whoami = guests::WHOAMI,
            notes = guests::NOTES,
            hostile = guests::HOSTILE,
        );
        let config = Config::parse(&text, Path::new("test.toml"), data.path())
            .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{text}"));
        let host = match delegate {
            Some(delegate) => Host::build_with(config, delegate).await,
            None => Host::build(config).await,
        }
        .unwrap_or_else(|e| panic!("host builds: {e}"));
        let metrics_url = host.metrics_addr().map(|a| format!("http://{a}/metrics"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            host.serve(listener, async {
                let _ = stopped.await;
            })
            .await
            .map_err(|e| e.to_string())
        });
        TestServer {
            url,
            metrics_url,
            stop: Some(stop),
            task: Some(task),
            _data: Some(data),
        }
    }

    /// The host's data directory (its database, key ring and caches).
    pub fn data_dir(&self) -> &Path {
        self._data
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// Shut down gracefully and hand over the data directory it leaves.
    pub async fn stop_keeping_data(mut self) -> Result<tempfile::TempDir, String> {
        let data = self._data.take().ok_or("no data directory")?;
        self.stop().await?;
        Ok(data)
    }

    /// The MCP endpoint of `tenant` (also its token audience).
    pub fn endpoint(&self, tenant: &str) -> String {
        format!("{}/mcp/{tenant}", self.url)
    }

    /// Begin a graceful shutdown and wait for the server to finish.
    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(|e| e.to_string())?,
            None => Ok(()),
        }
    }

    /// Begin a graceful shutdown without waiting.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Wait for a shutdown begun with [`TestServer::begin_stop`].
    pub async fn finished(mut self) -> Result<(), String> {
        match self.task.take() {
            Some(task) => task.await.map_err(|e| e.to_string())?,
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A tenant table trusting `issuer` (keys by discovery, refetched on any
/// unknown `kid`), requiring `scopes`, with echo for everyone and whoami
/// behind the `whoami` scope.
pub fn tenant(id: &str, issuer: &str, scopes: &[&str]) -> String {
    format!(
        "[tenants.{id}]\nissuers = [{{ issuer = {issuer:?}, jwks_min_refresh_ms = 0 }}]\n\
         scopes = {scopes:?}\n\
         [[tenants.{id}.install]]\ncomponent = \"echo\"\n\
         [[tenants.{id}.install]]\ncomponent = \"whoami\"\nscopes = [\"whoami\"]\n"
    )
}
