//! `airlock dev` and `airlock token`: everything local, no setup. Two demo
//! tenants with the example tools installed, each with a development OAuth
//! authorization server, and demo downstream APIs for the tools to delegate
//! to, all on one loopback listener; with `--conformance`, a third tenant
//! holding one given component, for the MCP conformance suite. Nothing here
//! is reachable from `airlock serve`.

mod authserver;
mod calendar;
mod demo;
mod forms;
pub mod guest_build;
mod keys;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::server::Host;
use authserver::{DevAuth, TenantIssuer};
pub use calendar::{CalendarHooks, CalendarStats};
use keys::IssuerKey;

/// A demo tenant.
#[derive(Debug)]
pub struct DemoTenant {
    /// The tenant id.
    pub id: &'static str,
    /// The demo users who may log in.
    pub users: &'static [&'static str],
    /// The example tools installed, with the extra scope each needs and the
    /// demo APIs (services) it may reach.
    pub tools: &'static [(&'static str, Option<&'static str>, &'static [&'static str])],
}

/// The demo tenants.
pub const DEMO_TENANTS: &[DemoTenant] = &[
    DemoTenant {
        id: "acme",
        users: &["alice", "bob"],
        tools: &[
            ("echo", None, &[]),
            ("whoami", None, &[]),
            ("notes", None, &["notes"]),
            ("tickets", None, &["tickets"]),
            ("calendar", None, &["calendar"]),
        ],
    },
    DemoTenant {
        id: "globex",
        users: &["carol"],
        tools: &[
            ("echo", None, &[]),
            ("whoami", None, &[]),
            ("calendar", None, &["calendar"]),
        ],
    },
];

/// The tenant `airlock dev --conformance` adds: the given component, one
/// user, no services.
pub static CONFORMANCE_TENANT: DemoTenant = DemoTenant {
    id: "conformance",
    users: &["tester"],
    tools: &[(CONFORMANCE_COMPONENT, None, &[])],
};
/// The component name of the `--conformance` component.
const CONFORMANCE_COMPONENT: &str = "conformance";

/// The tenants `airlock dev` serves: the demo tenants, plus the conformance
/// tenant when it has a component.
fn dev_tenants(conformance: bool) -> Vec<&'static DemoTenant> {
    let mut tenants: Vec<&'static DemoTenant> = DEMO_TENANTS.iter().collect();
    if conformance {
        tenants.push(&CONFORMANCE_TENANT);
    }
    tenants
}

/// The scope every demo tenant requires.
pub const TENANT_SCOPE: &str = "mcp";
/// The example tools.
const EXAMPLE_TOOLS: &[&str] = &["echo", "whoami", "notes", "tickets", "calendar"];
/// The file in the dev data directory holding the host's client secret at
/// the development issuers (for token exchange).
const HOST_SECRET_FILE: &str = "airlock-host.secret";
/// Browser origins of MCP Inspector.
/// Browser pages on this machine (MCP Inspector, local tools), any port:
/// `airlock dev` listens on loopback only.
const INSPECTOR_ORIGINS: &[&str] = &["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];

impl DemoTenant {
    fn scopes(&self) -> Vec<String> {
        let mut scopes = vec![TENANT_SCOPE.to_string()];
        scopes.extend(
            self.tools
                .iter()
                .filter_map(|(_, s, _)| s.map(String::from)),
        );
        scopes
    }

    /// The demo APIs its tools reach.
    fn services(&self) -> Vec<&'static str> {
        let mut services: Vec<&'static str> = self
            .tools
            .iter()
            .flat_map(|(_, _, s)| s.iter().copied())
            .collect();
        services.sort_unstable();
        services.dedup();
        services
    }
}

fn demo(tenant: &str) -> Result<&'static DemoTenant, String> {
    let all = dev_tenants(true);
    all.iter().copied().find(|t| t.id == tenant).ok_or_else(|| {
        let known: Vec<&str> = all.iter().map(|t| t.id).collect();
        format!(
            "no demo tenant `{tenant}`; the demo tenants are {}",
            known.join(", ")
        )
    })
}

/// What `airlock dev` needs.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// The data directory (sled database, signing keys, compiled components).
    pub data: PathBuf,
    /// Where to listen: a loopback address.
    pub listen: SocketAddr,
    /// A directory holding `echo.wasm`, `whoami.wasm`, `notes.wasm`,
    /// `tickets.wasm` and `calendar.wasm`; when absent the example tools are
    /// built from this source tree.
    pub tools: Option<PathBuf>,
    /// A component to install in an extra tenant, `conformance` (one user,
    /// `tester`, no services), for the MCP conformance suite.
    pub conformance: Option<PathBuf>,
}

/// What the dev server remembers for `airlock token`.
#[derive(Debug, Serialize, Deserialize)]
struct DevState {
    public_url: String,
}

fn keys_dir(data: &Path) -> PathBuf {
    data.join("dev")
}

/// The example tools: from `explicit`, or built from the source tree.
fn example_tools(
    explicit: Option<&Path>,
    out: &mut (dyn Write + Send),
) -> Result<BTreeMap<&'static str, PathBuf>, String> {
    let dir = match explicit {
        Some(dir) => dir.to_path_buf(),
        None => {
            let source = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map(|root| root.join("example-tools"))
                .filter(|p| p.join("Cargo.toml").exists())
                .ok_or_else(|| {
                    "the example-tools source is not next to this build of airlock; \
                     pass --tools DIR with echo.wasm, whoami.wasm, notes.wasm, tickets.wasm \
                     and calendar.wasm"
                        .to_string()
                })?;
            let target = source.join("target");
            let _ = writeln!(out, "building the example tools in {} …", source.display());
            let _ = out.flush();
            guest_build::ensure_wasm_target("rustc", &source, &mut |note| {
                let _ = writeln!(out, "{note}");
            })?;
            guest_build::build_workspace("cargo", &source, &target)?;
            guest_build::component_path(&target, "echo")
                .parent()
                .map(Path::to_path_buf)
                .ok_or("unexpected target layout")?
        }
    };
    let mut tools = BTreeMap::new();
    for name in EXAMPLE_TOOLS {
        let path = dir.join(format!("{name}.wasm"));
        if !path.is_file() {
            return Err(format!("{} is missing", path.display()));
        }
        tools.insert(*name, path);
    }
    Ok(tools)
}

/// The `[tenants.T.services.NAME]` table of demo API `name`. The secret
/// files are in `dev_dir`.
fn service_toml(tenant: &str, name: &str, url: &str, dev_dir: &Path) -> Result<String, String> {
    let base = match name {
        "calendar" => calendar::api_url(url),
        _ => demo::mount(url, name),
    };
    let head = format!(
        "[tenants.{tenant}.services.{name}]\nbase_url = \"{base}\"\nallow_private = true\n"
    );
    let file = |f: &str| dev_dir.join(f).display().to_string();
    match name {
        "notes" => Ok(format!(
            "{head}mode = \"service\"\nmethods = [\"GET\", \"POST\", \"DELETE\"]\npath_prefixes = [\"/notes\"]\n\
             credential = {{ type = \"static\", secret_file = {:?} }}",
            file(demo::NOTES_KEY_FILE)
        )),
        "tickets" => Ok(format!(
            "{head}mode = \"on-behalf-of\"\nmethods = [\"GET\", \"POST\"]\npath_prefixes = [\"/tickets\"]\n\
             token_exchange = {{ token_endpoint = \"{url}/dev/{tenant}/token\", client_id = \"{client}\", \
             secret_file = {secret:?}, audience = \"{base}\", scopes = [\"{scope}\"] }}",
            client = authserver::HOST_CLIENT_ID,
            secret = file(HOST_SECRET_FILE),
            scope = demo::TICKETS_SCOPE,
        )),
        "calendar" => Ok(format!(
            "{head}mode = \"user-token\"\nprovider = \"calendar\"\nmethods = [\"GET\", \"POST\"]\n\
             path_prefixes = [\"/events\"]"
        )),
        other => Err(format!("no demo API `{other}`")),
    }
}

/// The Demo Calendar provider of `tenant` (`[tenants.T.providers.calendar]`)
/// and how its connect page signs users in at the tenant's dev issuer
/// (`[tenants.T.connect]`, the pre-registered public client).
fn calendar_provider_toml(tenant: &str, url: &str, dev_dir: &Path) -> String {
    let provider = calendar::base_url(url);
    let issuer = format!("{url}/dev/{tenant}");
    format!(
        "[tenants.{tenant}.providers.calendar]\n\
         authorization_endpoint = \"{provider}/authorize\"\n\
         token_endpoint = \"{provider}/token\"\n\
         client_id = \"{client}\"\n\
         secret_file = {secret:?}\n\
         scopes = {scopes:?}\n\
         [tenants.{tenant}.connect]\n\
         client_id = \"{connect}\"\n\
         authorization_endpoint = \"{issuer}/authorize\"\n\
         token_endpoint = \"{issuer}/token\"",
        client = calendar::client_id(tenant),
        secret = dev_dir
            .join(calendar::secret_file(tenant))
            .display()
            .to_string(),
        scopes = [calendar::READ_SCOPE, calendar::WRITE_SCOPE],
        connect = authserver::CONNECT_CLIENT_ID,
    )
}

/// The configuration `airlock dev` runs: the same format `airlock serve` reads.
fn dev_config(
    listen: SocketAddr,
    url: &str,
    data: &Path,
    tools: &BTreeMap<&str, PathBuf>,
) -> Result<Config, String> {
    let conformance = tools.contains_key(CONFORMANCE_COMPONENT);
    // `/metrics` on a loopback port the system picks (printed in the banner).
    let mut text = format!(
        "listen = \"{listen}\"\npublic_url = \"{url}\"\ndata_dir = {data:?}\nallowed_origins = {INSPECTOR_ORIGINS:?}\n\
         [server]\nmetrics_listen = \"{metrics}\"\n",
        metrics = SocketAddr::new(listen.ip(), 0),
        data = data.display().to_string(),
    );
    for (name, path) in tools {
        let _ = writeln!(
            text,
            "[components.{name}]\npath = {:?}",
            path.display().to_string()
        );
    }
    for t in dev_tenants(conformance) {
        let issuer = format!("{url}/dev/{}", t.id);
        let _ = writeln!(
            text,
            "[tenants.{id}]\nissuers = [{{ issuer = \"{issuer}\", jwks_uri = \"{issuer}/jwks\", algorithms = [\"EdDSA\"] }}]\nscopes = [\"{TENANT_SCOPE}\"]",
            id = t.id
        );
        for (tool, scope, services) in t.tools {
            let scopes: Vec<&str> = scope.iter().copied().collect();
            let _ = writeln!(
                text,
                "[[tenants.{id}.install]]\ncomponent = \"{tool}\"\nscopes = {scopes:?}\nservices = {services:?}",
                id = t.id
            );
        }
        for service in t.services() {
            let _ = writeln!(
                text,
                "{}",
                service_toml(t.id, service, url, &keys_dir(data))?
            );
        }
        if t.services().contains(&"calendar") {
            let _ = writeln!(
                text,
                "{}",
                calendar_provider_toml(t.id, url, &keys_dir(data))
            );
        }
    }
    Config::parse(&text, Path::new("<airlock dev>"), data).map_err(|e| e.to_string())
}

/// A dev host, bound and ready to serve.
#[derive(Debug)]
pub struct DevServer {
    /// `http://ADDR`.
    pub url: String,
    /// `http://ADDR/metrics`, on a loopback port of its own.
    pub metrics_url: Option<String>,
    host: Host,
    listener: tokio::net::TcpListener,
    calendar: CalendarHooks,
    conformance: bool,
}

impl DevServer {
    /// Build the example tools (unless given), open the data directory, bind,
    /// and assemble the host with the development authorization servers.
    pub async fn start(options: DevOptions, out: &mut (dyn Write + Send)) -> Result<Self, String> {
        if !options.listen.ip().is_loopback() {
            return Err(format!(
                "airlock dev listens on loopback only (its users log in without passwords); \
                 {} is not a loopback address",
                options.listen
            ));
        }
        let mut tools = example_tools(options.tools.as_deref(), out)?;
        if let Some(path) = &options.conformance {
            if !path.is_file() {
                return Err(format!(
                    "the conformance component {} is missing",
                    path.display()
                ));
            }
            let path = std::fs::canonicalize(path)
                .map_err(|e| format!("cannot use {}: {e}", path.display()))?;
            tools.insert(CONFORMANCE_COMPONENT, path);
        }
        let conformance = options.conformance.is_some();
        std::fs::create_dir_all(&options.data)
            .map_err(|e| format!("cannot create {}: {e}", options.data.display()))?;
        let data = std::fs::canonicalize(&options.data)
            .map_err(|e| format!("cannot use {}: {e}", options.data.display()))?;
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        let url = format!("http://{addr}");
        // Secrets first: the host reads them when it starts.
        let host_secret =
            authserver::load_or_create_secret(&keys_dir(&data).join(HOST_SECRET_FILE))?;
        let notes_key =
            authserver::load_or_create_secret(&keys_dir(&data).join(demo::NOTES_KEY_FILE))?;
        let mut calendar_clients = Vec::new();
        for t in DEMO_TENANTS {
            let secret = authserver::load_or_create_secret(
                &keys_dir(&data).join(calendar::secret_file(t.id)),
            )?;
            calendar_clients.push(calendar::CalendarClient::for_tenant(t.id, &url, &secret)?);
        }
        let config = dev_config(addr, &url, &data, &tools)?;
        // The vault (users' connected accounts) needs its master key.
        if let crate::config::VaultKeySource::File(path) = &config.vault_key {
            crate::vault::MasterKey::ensure_file(path).map_err(|e| e.to_string())?;
        }

        let host = Host::build(config.clone())
            .await
            .map_err(|e| e.to_string())?;
        let storage = host.storage().clone();
        let mut issuers = BTreeMap::new();
        for t in dev_tenants(conformance) {
            issuers.insert(
                t.id.to_string(),
                TenantIssuer {
                    issuer: format!("{url}/dev/{}", t.id),
                    resource: config.resource_uri(t.id),
                    users: t.users.iter().map(|u| u.to_string()).collect(),
                    scopes: t.scopes(),
                    key: IssuerKey::load_or_create(&keys_dir(&data), t.id)?,
                    exchange: demo::exchange_targets(&url, &t.services()),
                    connect_redirect_uri: format!("{url}/connect/{}/login", t.id),
                },
            );
        }
        let state = serde_json::to_vec_pretty(&DevState {
            public_url: url.clone(),
        })
        .map_err(|e| e.to_string())?;
        std::fs::write(keys_dir(&data).join("dev.json"), state)
            .map_err(|e| format!("cannot write {}: {e}", data.display()))?;
        let auth = Arc::new(DevAuth::new(issuers, &host_secret, &storage)?);
        let apis = Arc::new(demo::DemoApis::new(&url, &notes_key, auth.clone())?);
        let calendar = Arc::new(calendar::Calendar::new(calendar_clients, &storage)?);
        let host = host
            .with_routes(authserver::router(auth))
            .with_routes(demo::router(apis))
            .with_routes(calendar::router(calendar.clone()));
        let metrics_url = host.metrics_addr().map(|a| format!("http://{a}/metrics"));
        Ok(DevServer {
            url,
            metrics_url,
            host,
            listener,
            calendar: CalendarHooks(calendar),
            conformance,
        })
    }

    /// Test hooks of the Demo Calendar provider (counters, expiring and
    /// revoking tokens); keep a copy before [`DevServer::serve`].
    pub fn calendar(&self) -> CalendarHooks {
        self.calendar.clone()
    }

    /// The endpoints and how to connect, for the terminal.
    pub fn banner(&self, data: &Path) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\nairlock dev is running; data in {}\n", data.display());
        for t in dev_tenants(self.conformance) {
            let _ = writeln!(
                s,
                "  tenant {:<7} {}/mcp/{:<7} users: {}   issuer: {}/dev/{}",
                t.id,
                self.url,
                t.id,
                t.users.join(", "),
                self.url,
                t.id
            );
        }
        if self.conformance {
            let _ = writeln!(
                s,
                "\n  tenant {id} holds the --conformance component; a token for the suite:\n\n  \
                 airlock token --tenant {id} --user {user} --data {}",
                data.display(),
                id = CONFORMANCE_TENANT.id,
                user = CONFORMANCE_TENANT.users.join(", "),
            );
        }
        let _ = writeln!(
            s,
            "\n  demo APIs the tools reach through the broker: {url}/demo/notes (service mode), \
             {url}/demo/tickets (on-behalf-of, RFC 8693)",
            url = self.url
        );
        let _ = writeln!(
            s,
            "  a third-party service users connect their own accounts with (user-token): \
             Demo Calendar at {}, accounts {}; the `calendar` tool sends you to connect it",
            calendar::base_url(&self.url),
            calendar::USERS.join(", ")
        );
        let _ = writeln!(
            s,
            "\n  health: {url}/healthz, {url}/readyz   metrics (Prometheus): {}",
            self.metrics_url.as_deref().unwrap_or("off"),
            url = self.url
        );
        let _ = writeln!(
            s,
            "\nConnect MCP Inspector (Node.js 22+), then Connect and log in as alice:\n\n  \
             npx @modelcontextprotocol/inspector --transport http --server-url {}/mcp/acme\n",
            self.url
        );
        let _ = writeln!(
            s,
            "A bearer token for scripts:\n\n  cargo run -p airlock-host -- token --tenant acme --user alice --data {}\n",
            data.display()
        );
        s
    }

    /// Serve until `signal` completes.
    pub async fn serve(
        self,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        self.host
            .serve(self.listener, signal)
            .await
            .map_err(|e| e.to_string())
    }
}

/// `airlock token`: a bearer token from the dev data in `data`.
pub fn token(data: &Path, tenant: &str, user: &str, scopes: &[String]) -> Result<String, String> {
    let demo = demo(tenant)?;
    if !demo.users.contains(&user) {
        return Err(format!(
            "no demo user `{user}` in tenant `{tenant}`; its users are {}",
            demo.users.join(", ")
        ));
    }
    let offered = demo.scopes();
    if let Some(bad) = scopes.iter().find(|s| !offered.contains(s)) {
        return Err(format!(
            "scope `{bad}` is not offered by tenant `{tenant}`; it offers {}",
            offered.join(", ")
        ));
    }
    let dir = keys_dir(data);
    let not_dev = || {
        format!(
            "{} holds no airlock dev data; start `airlock dev --data {}` once first",
            data.display(),
            data.display()
        )
    };
    let state = std::fs::read(dir.join("dev.json")).map_err(|_| not_dev())?;
    let state: DevState = serde_json::from_slice(&state).map_err(|_| not_dev())?;
    let key = IssuerKey::load(&dir, tenant)?.ok_or_else(|| {
        if tenant == CONFORMANCE_TENANT.id {
            format!(
                "{} holds no key for tenant `{tenant}`; start `airlock dev --data {} \
                 --conformance COMPONENT.wasm` once first",
                data.display(),
                data.display()
            )
        } else {
            not_dev()
        }
    })?;
    let scope = if scopes.is_empty() {
        offered.join(" ")
    } else {
        scopes.join(" ")
    };
    keys::mint(
        &key,
        &format!("{}/dev/{tenant}", state.public_url),
        user,
        &format!("{}/mcp/{tenant}", state.public_url),
        &scope,
        "airlock-token",
        std::time::Duration::from_secs(3600),
    )
}
