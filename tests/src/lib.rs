//! Shared pieces for airlock's integration tests and benchmarks: the guest
//! components built by `build.rs`, a [`TestHost`], and delegate doubles that
//! behave like real services.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_host::delegate::{
    BoxFuture, Delegate, DelegateError, DelegateResponse, DenyAll, Method, OutboundRequest,
};
use airlock_host::envelope::{
    ActorKind, Delegation, DelegationMode, Envelope, EnvelopeClaims, random_id,
};
use airlock_host::sandbox::{
    CallError, CallRequest, Limits, LoadedComponent, Outcome, Sandbox, SandboxSettings, ToolOutput,
};

pub mod bench;
pub mod client;
pub mod dev;
pub mod idp;
pub mod oauth;
pub mod server;

/// Paths of the guest components built from source by `build.rs`.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// Run the test `name` of this test binary alone in a child process with
/// `env` set, and assert it passed. Returns `true` in the parent (which then
/// returns), `false` in the child (which then does the work): for
/// measurements of process-wide state such as resident memory or every log
/// line, and for tests that change the working directory.
pub fn in_child_process(name: &str, env: &str) -> bool {
    if std::env::var_os(env).is_some() {
        return false;
    }
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(env, "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

/// Read a built guest component.
pub fn wasm(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("guest {path} was not built: {e}"))
}

/// An envelope for `user` in `tenant` calling `tool`, allowed to reach `services`.
pub fn envelope(tenant: &str, user: &str, tool: &str, services: &[&str]) -> Arc<Envelope> {
    Arc::new(Envelope::mint(
        EnvelopeClaims {
            tenant: tenant.into(),
            issuer: "https://idp.test".into(),
            actor_kind: ActorKind::User,
            subject: user.into(),
            client_id: Some("test-client".into()),
            agent_id: Some("test-agent".into()),
            session_id: None,
            trace_id: random_id(),
            tool: tool.into(),
            scopes: vec!["tools:call".into()],
            delegations: services
                .iter()
                .map(|s| Delegation {
                    service: s.to_string(),
                    mode: DelegationMode::Service,
                })
                .collect(),
        },
        Duration::from_secs(60),
    ))
}

/// Settings for tests: a small pool and the shared compile cache.
pub fn test_settings() -> SandboxSettings {
    SandboxSettings {
        max_concurrent_calls: 16,
        max_concurrent_calls_per_tenant: 8,
        cache_dir: Some(PathBuf::from(guests::COMPILE_CACHE)),
        ..SandboxSettings::default()
    }
}

/// A sandbox plus helpers for loading and calling guests.
pub struct TestHost {
    /// The sandbox under test.
    pub sandbox: Sandbox,
}

impl TestHost {
    /// A host with [`test_settings`].
    pub fn new() -> Self {
        Self::with_settings(test_settings())
    }

    /// A host with `settings`.
    pub fn with_settings(settings: SandboxSettings) -> Self {
        TestHost {
            sandbox: Sandbox::new(settings).expect("sandbox starts"),
        }
    }

    /// Load a built guest, panicking if the host rejects it.
    pub async fn load(&self, path: &str) -> LoadedComponent {
        self.sandbox
            .load(&wasm(path))
            .await
            .unwrap_or_else(|e| panic!("{path} should load: {e}"))
    }

    /// Load a built guest with `limits`.
    pub async fn load_with(&self, path: &str, limits: Limits) -> LoadedComponent {
        self.load(path)
            .await
            .with_limits(limits)
            .expect("valid limits")
    }

    /// Call `tool` as `user` of tenant `acme` with no services.
    pub async fn call(
        &self,
        component: &LoadedComponent,
        tool: &str,
        args: serde_json::Value,
    ) -> Result<ToolOutput, CallError> {
        self.call_as(
            component,
            envelope("acme", "alice", tool, &[]),
            args,
            Arc::new(DenyAll),
        )
        .await
    }

    /// Call with an explicit envelope and delegate.
    pub async fn call_as(
        &self,
        component: &LoadedComponent,
        envelope: Arc<Envelope>,
        args: serde_json::Value,
        delegate: Arc<dyn Delegate>,
    ) -> Result<ToolOutput, CallError> {
        self.sandbox
            .call(
                component,
                CallRequest::new(envelope, args.to_string(), delegate),
            )
            .await
            .and_then(Outcome::into_complete)
    }

    /// Run one round of `request` (which may end by asking for input).
    pub async fn round(
        &self,
        component: &LoadedComponent,
        request: CallRequest,
    ) -> Result<Outcome, CallError> {
        self.sandbox.call(component, request).await
    }
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

/// What a delegate double saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The actor's subject, from the envelope the host passed.
    pub subject: String,
    /// The tenant, from the envelope.
    pub tenant: String,
    /// The service named.
    pub service: String,
    /// The method.
    pub method: Method,
    /// The path.
    pub path: String,
    /// The headers the guest set.
    pub headers: Vec<(String, String)>,
}

/// A `notes` service that keeps each user's notes apart, keyed by the identity
/// in the envelope the host supplies. Other services: `echo` answers 200 with an
/// empty body; `slow` never answers. Anything else is not granted.
#[derive(Default)]
pub struct NotesService {
    notes: Mutex<HashMap<(String, String), Vec<serde_json::Value>>>,
    next_id: Mutex<u64>,
    seen: Mutex<Vec<Seen>>,
}

impl NotesService {
    /// A new, empty service.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every request that reached the service.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn json(status: u16, value: serde_json::Value) -> DelegateResponse {
        DelegateResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    fn notes(&self, envelope: &Envelope, request: &OutboundRequest) -> DelegateResponse {
        let key = (
            envelope.tenant().to_string(),
            envelope.subject().to_string(),
        );
        let mut all = self.notes.lock().unwrap();
        let mine = all.entry(key).or_default();
        match (request.method(), request.path()) {
            (Method::Post, "/notes") => {
                let body: serde_json::Value =
                    serde_json::from_slice(request.body()).unwrap_or_default();
                let mut next = self.next_id.lock().unwrap();
                *next += 1;
                let note = serde_json::json!({"id": format!("n-{next}"), "text": body["text"]});
                mine.push(note.clone());
                Self::json(201, note)
            }
            (Method::Get, "/notes") => Self::json(200, serde_json::Value::Array(mine.clone())),
            (Method::Delete, path) if path.starts_with("/notes/") => {
                let id = &path["/notes/".len()..];
                let before = mine.len();
                mine.retain(|n| n["id"] != id);
                let status = if mine.len() < before { 204 } else { 404 };
                DelegateResponse {
                    status,
                    headers: vec![],
                    body: vec![],
                }
            }
            _ => Self::json(404, serde_json::json!({"error": "no such route"})),
        }
    }
}

impl Delegate for NotesService {
    fn fetch<'a>(
        &'a self,
        envelope: &'a Envelope,
        service: &'a str,
        request: OutboundRequest,
    ) -> BoxFuture<'a, Result<DelegateResponse, DelegateError>> {
        Box::pin(async move {
            if envelope.delegation(service).is_none() {
                return Err(DelegateError::NotGranted(format!(
                    "this call may not use service `{service}`"
                )));
            }
            self.seen.lock().unwrap().push(Seen {
                subject: envelope.subject().to_string(),
                tenant: envelope.tenant().to_string(),
                service: service.to_string(),
                method: request.method(),
                path: request.path().to_string(),
                headers: request.headers().to_vec(),
            });
            match service {
                "notes" => Ok(self.notes(envelope, &request)),
                "echo" => Ok(DelegateResponse {
                    status: 200,
                    headers: vec![],
                    body: vec![],
                }),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Err(DelegateError::Timeout)
                }
                other => Err(DelegateError::NotGranted(format!("no service `{other}`"))),
            }
        })
    }
}
