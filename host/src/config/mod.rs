//! The configuration file: one TOML document, validated once into typed
//! settings. Unknown keys and invalid values fail at start with a message that
//! names the key.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::sandbox::Limits;

mod connect;
mod services;

pub use connect::{ConnectLogin, ProviderConfig, VaultKeySource};
pub use services::{
    OAuthClient, SecretSource, ServiceConfig, ServiceCredential, ServiceMode, valid_secret_name,
};

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key and position.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The raw file, as written. Every table rejects unknown keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: SocketAddr,
    public_url: String,
    data_dir: PathBuf,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    components: BTreeMap<String, RawComponent>,
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
    #[serde(default)]
    vault: connect::RawVault,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    max_concurrent_calls: Option<u32>,
    max_concurrent_calls_per_tenant: Option<u32>,
    queue_timeout_ms: Option<u64>,
    guest_threads: Option<usize>,
    request_timeout_ms: Option<u64>,
    max_request_bytes: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    max_sessions: Option<usize>,
    max_sessions_per_user: Option<usize>,
    session_idle_timeout_s: Option<u64>,
    metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    issuers: Vec<RawIssuer>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    install: Vec<RawInstall>,
    audit_fail_closed: Option<bool>,
    weight: Option<u32>,
    #[serde(default)]
    services: BTreeMap<String, services::RawService>,
    connect: Option<connect::RawConnect>,
    #[serde(default)]
    providers: BTreeMap<String, connect::RawProvider>,
    rate_limit: Option<RawRateLimit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    requests_per_second: Option<f64>,
    burst: Option<u32>,
    per_user_requests_per_second: Option<f64>,
    per_user_burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    issuer: String,
    jwks_uri: Option<String>,
    algorithms: Option<Vec<String>>,
    jwks_min_refresh_ms: Option<u64>,
    jwks_max_age_s: Option<u64>,
    jwks_max_stale_s: Option<u64>,
    jwks_fetch_timeout_ms: Option<u64>,
    token_types: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstall {
    component: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    tool_scopes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    services: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mib: Option<usize>,
    timeout_ms: Option<u64>,
    cpu_ms: Option<u64>,
    output_kib: Option<usize>,
    content_blocks: Option<u32>,
    delegate_calls: Option<u32>,
    log_lines: Option<u32>,
    log_kib: Option<usize>,
}

/// JWT signature algorithms the edge accepts. Symmetric and `none` are not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl SigningAlgorithm {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }
}

/// JOSE `typ` values accepted for access tokens unless an issuer says
/// otherwise: RFC 9068's and plain JWT (RFC 8725 §3.11 is why others are not).
pub const DEFAULT_TOKEN_TYPES: [&str; 3] = ["at+jwt", "application/at+jwt", "JWT"];

/// One trusted token issuer of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// The `iss` value, an https (or loopback http) URL.
    pub issuer: String,
    /// Where its keys are; `None` means discover them (RFC 8414, then OpenID).
    pub jwks_uri: Option<String>,
    /// Accepted algorithms.
    pub algorithms: Vec<SigningAlgorithm>,
    /// Least time between refetches triggered by an unknown `kid`.
    pub jwks_min_refresh: Duration,
    /// Keys older than this are refreshed (in the background: they keep
    /// serving meanwhile).
    pub jwks_max_age: Duration,
    /// How long keys keep serving past `jwks_max_age` while every refresh
    /// fails; after that, tokens are refused (503) until a fetch succeeds,
    /// so a key withdrawn at an unreachable issuer is not trusted forever.
    pub jwks_max_stale: Duration,
    /// Longest a key fetch (discovery and JWKS together) may take.
    pub jwks_fetch_timeout: Duration,
    /// JOSE `typ` values accepted on its access tokens (compared without
    /// case); a token without `typ` is always accepted.
    pub token_types: Vec<String>,
}

/// A component installed in a tenant, with its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallConfig {
    /// The component's name in `[components]`.
    pub component: String,
    /// Scopes required for every tool of the component.
    pub scopes: Vec<String>,
    /// Extra scopes per tool name.
    pub tool_scopes: BTreeMap<String, Vec<String>>,
    /// Per-call limits.
    pub limits: Limits,
    /// Services of the tenant its tools may reach, in the order listed.
    pub services: Vec<String>,
}

/// A sustained request rate with a burst: a token bucket that holds `burst`
/// tokens and gains one every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// The time one request's token takes to come back (1 / requests per second).
    pub interval: Duration,
    /// Most requests at once after a quiet time.
    pub burst: u32,
}

/// A tenant's request rate limits at the edge (`[tenants.T.rate_limit]`),
/// checked after authentication; each is off unless configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// All requests to the tenant together.
    pub tenant: Option<Rate>,
    /// Each user's requests: a user is (tenant, issuer, subject).
    pub per_user: Option<Rate>,
}

/// One tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// Trusted issuers.
    pub issuers: Vec<IssuerConfig>,
    /// Audiences accepted besides the tenant endpoint's canonical URI.
    pub extra_audiences: Vec<String>,
    /// Scopes required for any request to the tenant.
    pub scopes: Vec<String>,
    /// Installed components.
    pub install: Vec<InstallConfig>,
    /// Refuse calls whose audit records cannot be written (default true).
    pub audit_fail_closed: bool,
    /// Its weight in sharing the host's execution slots (default 1).
    pub weight: u32,
    /// Services its tools may reach, by name.
    pub services: BTreeMap<String, ServiceConfig>,
    /// How the connect page signs users in (needed when any service is in
    /// `user-token` mode).
    pub connect: Option<ConnectLogin>,
    /// Third-party providers its users connect, by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Request rate limits (off unless configured).
    pub rate_limit: RateLimit,
}

/// How many legacy sessions there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Live sessions per user (tenant, issuer, subject, client); over it the
    /// user's least recently used session ends.
    pub per_user: usize,
    /// Live sessions in total; over it `initialize` is refused.
    pub total: usize,
    /// A session unused this long has ended.
    pub idle: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            per_user: 32,
            total: 10_000,
            idle: Duration::from_secs(300),
        }
    }
}

/// Host-wide server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Most tool calls running at once.
    pub max_concurrent_calls: u32,
    /// Most tool calls running at once per tenant.
    pub max_concurrent_calls_per_tenant: u32,
    /// How long a call waits for a slot.
    pub queue_timeout: Duration,
    /// Threads that run guests, apart from the threads serving HTTP.
    pub guest_threads: usize,
    /// Deadline for one HTTP request.
    pub request_timeout: Duration,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// How long a connection may take to send a request's head, counted from
    /// its opening or from the first byte after its previous request.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight and
    /// nothing read or written.
    pub idle_timeout: Duration,
    /// Most connections open at once; more wait in the listen queue.
    pub max_connections: usize,
    /// Caps on legacy (2025-11-25) sessions.
    pub sessions: SessionLimits,
    /// Where `/metrics` is served (a separate listener); `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The public base URL (scheme, host, port), without a trailing slash.
    pub public_url: String,
    /// Where airlock keeps its data.
    pub data_dir: PathBuf,
    /// Browser origins allowed to call the MCP endpoints.
    pub allowed_origins: Vec<String>,
    /// Server settings.
    pub server: ServerConfig,
    /// Components by name, as paths resolved against the config file's directory.
    pub components: BTreeMap<String, PathBuf>,
    /// Tenants by id.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// Where the vault's master key is.
    pub vault_key: VaultKeySource,
}

impl RawRateLimit {
    fn validate(&self) -> Result<RateLimit, (&'static str, String)> {
        let rate = |per_second: Option<f64>,
                    burst: Option<u32>,
                    (rate_key, burst_key): (&'static str, &'static str)|
         -> Result<Option<Rate>, (&'static str, String)> {
            let Some(per_second) = per_second else {
                return match burst {
                    Some(_) => Err((burst_key, format!("needs `{rate_key}`"))),
                    None => Ok(None),
                };
            };
            if !(per_second.is_finite() && (0.001..=1_000_000.0).contains(&per_second)) {
                return Err((rate_key, "must be between 0.001 and 1,000,000".into()));
            }
            let interval = Duration::try_from_secs_f64(1.0 / per_second)
                .map_err(|e| (rate_key, e.to_string()))?;
            // By default a second's worth of requests may come at once.
            let burst = burst.unwrap_or_else(|| {
                let second = per_second.ceil();
                if second >= 1_000_000.0 {
                    1_000_000
                } else {
                    (second as u32).max(1)
                }
            });
            if !(1..=1_000_000).contains(&burst) {
                return Err((burst_key, "must be between 1 and 1,000,000".into()));
            }
            Ok(Some(Rate { interval, burst }))
        };
        Ok(RateLimit {
            tenant: rate(
                self.requests_per_second,
                self.burst,
                ("requests_per_second", "burst"),
            )?,
            per_user: rate(
                self.per_user_requests_per_second,
                self.per_user_burst,
                ("per_user_requests_per_second", "per_user_burst"),
            )?,
        })
    }
}

/// A tenant id: lowercase letters, digits and `-`, 1 to 63 characters.
pub fn valid_tenant_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.starts_with('-')
}

fn is_loopback_http(url: &url::Url) -> bool {
    url.scheme() == "http" && matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

impl Config {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // Relative paths in the file are relative to the file, wherever the
        // command runs from; resolving the file first makes them absolute.
        let absolute = std::path::absolute(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = absolute.parent().unwrap_or(Path::new("/"));
        Config::parse(&text, path, base)
    }

    /// Validate `text` (named `path` in messages), resolving relative paths
    /// against `base`. Every path in the result is absolute: a relative `base`
    /// is taken from the current directory.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        let base = std::path::absolute(base).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;

        let public = url::Url::parse(&raw.public_url)
            .map_err(|e| invalid("public_url".into(), e.to_string()))?;
        if !(public.scheme() == "https" || is_loopback_http(&public)) {
            return Err(invalid(
                "public_url".into(),
                "must be https (plain http only on a loopback host)".into(),
            ));
        }
        if public.path() != "/" || public.query().is_some() {
            return Err(invalid(
                "public_url".into(),
                "must be a bare origin such as https://mcp.example.com".into(),
            ));
        }
        let public_url = raw.public_url.trim_end_matches('/').to_string();

        let defaults = crate::sandbox::SandboxSettings::default();
        let server = ServerConfig {
            max_concurrent_calls: raw
                .server
                .max_concurrent_calls
                .unwrap_or(defaults.max_concurrent_calls),
            max_concurrent_calls_per_tenant: raw
                .server
                .max_concurrent_calls_per_tenant
                .unwrap_or(defaults.max_concurrent_calls_per_tenant),
            queue_timeout: raw
                .server
                .queue_timeout_ms
                .map_or(defaults.queue_timeout, Duration::from_millis),
            guest_threads: raw.server.guest_threads.unwrap_or(defaults.guest_threads),
            request_timeout: Duration::from_millis(raw.server.request_timeout_ms.unwrap_or(30_000)),
            max_request_bytes: raw.server.max_request_bytes.unwrap_or(4 * 1024 * 1024),
            header_read_timeout: Duration::from_millis(
                raw.server.header_read_timeout_ms.unwrap_or(10_000),
            ),
            idle_timeout: Duration::from_millis(raw.server.idle_timeout_ms.unwrap_or(60_000)),
            max_connections: raw.server.max_connections.unwrap_or(1024),
            sessions: SessionLimits {
                per_user: raw
                    .server
                    .max_sessions_per_user
                    .unwrap_or(SessionLimits::default().per_user),
                total: raw
                    .server
                    .max_sessions
                    .unwrap_or(SessionLimits::default().total),
                idle: raw
                    .server
                    .session_idle_timeout_s
                    .map_or(SessionLimits::default().idle, Duration::from_secs),
            },
            metrics_listen: raw.server.metrics_listen,
        };
        if !(1..=1_000_000).contains(&server.sessions.total)
            || !(1..=server.sessions.total).contains(&server.sessions.per_user)
        {
            return Err(invalid(
                "server.max_sessions".into(),
                "max_sessions must be 1 to 1,000,000 and max_sessions_per_user 1 to max_sessions"
                    .into(),
            ));
        }
        if !(Duration::from_secs(10)..=Duration::from_secs(7 * 24 * 3600))
            .contains(&server.sessions.idle)
        {
            return Err(invalid(
                "server.session_idle_timeout_s".into(),
                "must be between 10 seconds and 7 days".into(),
            ));
        }
        if !(1..=1024).contains(&server.guest_threads) {
            return Err(invalid(
                "server.guest_threads".into(),
                "must be between 1 and 1024".into(),
            ));
        }
        if !(1..=4096).contains(&server.max_concurrent_calls) {
            return Err(invalid(
                "server.max_concurrent_calls".into(),
                "must be between 1 and 4096".into(),
            ));
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(3600))
            .contains(&server.request_timeout)
        {
            return Err(invalid(
                "server.request_timeout_ms".into(),
                "must be between 10 ms and one hour".into(),
            ));
        }
        if server.max_concurrent_calls_per_tenant == 0 {
            return Err(invalid(
                "server.max_concurrent_calls_per_tenant".into(),
                "must be at least 1".into(),
            ));
        }
        if !(1024..=256 * 1024 * 1024).contains(&server.max_request_bytes) {
            return Err(invalid(
                "server.max_request_bytes".into(),
                "must be between 1 KiB and 256 MiB".into(),
            ));
        }
        for (key, value) in [
            ("server.header_read_timeout_ms", server.header_read_timeout),
            ("server.idle_timeout_ms", server.idle_timeout),
        ] {
            if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&value) {
                return Err(invalid(
                    key.into(),
                    "must be between 10 ms and one hour".into(),
                ));
            }
        }
        if !(1..=65_536).contains(&server.max_connections) {
            return Err(invalid(
                "server.max_connections".into(),
                "must be between 1 and 65536".into(),
            ));
        }

        let mut components = BTreeMap::new();
        for (name, c) in raw.components {
            components.insert(name, base.join(c.path));
        }

        let mut tenants = BTreeMap::new();
        for (id, t) in raw.tenants {
            let key = |rest: &str| format!("tenants.{id}.{rest}");
            let weight = t.weight.unwrap_or(1);
            if !(1..=1000).contains(&weight) {
                return Err(invalid(key("weight"), "must be between 1 and 1000".into()));
            }
            if !valid_tenant_id(&id) {
                return Err(invalid(
                    format!("tenants.{id}"),
                    "a tenant id is 1 to 63 lowercase letters, digits and `-`".into(),
                ));
            }
            if t.issuers.is_empty() {
                return Err(invalid(
                    key("issuers"),
                    "at least one issuer is required".into(),
                ));
            }
            let mut issuers = Vec::new();
            for (i, raw_issuer) in t.issuers.into_iter().enumerate() {
                let ikey = |rest: &str| key(&format!("issuers[{i}].{rest}"));
                let url = url::Url::parse(&raw_issuer.issuer)
                    .map_err(|e| invalid(ikey("issuer"), e.to_string()))?;
                if !(url.scheme() == "https" || is_loopback_http(&url)) {
                    return Err(invalid(
                        ikey("issuer"),
                        "must be https (plain http only on a loopback host)".into(),
                    ));
                }
                let algorithms = match raw_issuer.algorithms {
                    None => vec![
                        SigningAlgorithm::Rs256,
                        SigningAlgorithm::Es256,
                        SigningAlgorithm::EdDsa,
                    ],
                    Some(list) => {
                        let mut out = Vec::new();
                        for a in list {
                            out.push(SigningAlgorithm::parse(&a).ok_or_else(|| {
                                invalid(
                                    ikey("algorithms"),
                                    format!("`{a}` is not accepted; use RS256, ES256 or EdDSA"),
                                )
                            })?);
                        }
                        if out.is_empty() {
                            return Err(invalid(ikey("algorithms"), "may not be empty".into()));
                        }
                        out
                    }
                };
                let jwks_fetch_timeout_ms = raw_issuer.jwks_fetch_timeout_ms.unwrap_or(5_000);
                if !(100..=60_000).contains(&jwks_fetch_timeout_ms) {
                    return Err(invalid(
                        ikey("jwks_fetch_timeout_ms"),
                        "must be between 100 ms and one minute".into(),
                    ));
                }
                let jwks_max_age_s = raw_issuer.jwks_max_age_s.unwrap_or(3600);
                if jwks_max_age_s == 0 {
                    return Err(invalid(
                        ikey("jwks_max_age_s"),
                        "must be at least 1 second (0 would refetch the keys without pause)".into(),
                    ));
                }
                let jwks_max_stale_s = raw_issuer.jwks_max_stale_s.unwrap_or(86_400);
                if jwks_max_stale_s > 30 * 86_400 {
                    return Err(invalid(
                        ikey("jwks_max_stale_s"),
                        "must be at most 30 days (2592000 s)".into(),
                    ));
                }
                issuers.push(IssuerConfig {
                    issuer: raw_issuer.issuer,
                    jwks_uri: raw_issuer.jwks_uri,
                    algorithms,
                    jwks_min_refresh: Duration::from_millis(
                        raw_issuer.jwks_min_refresh_ms.unwrap_or(10_000),
                    ),
                    jwks_max_age: Duration::from_secs(jwks_max_age_s),
                    jwks_max_stale: Duration::from_secs(jwks_max_stale_s),
                    jwks_fetch_timeout: Duration::from_millis(jwks_fetch_timeout_ms),
                    token_types: match raw_issuer.token_types {
                        None => DEFAULT_TOKEN_TYPES.iter().map(|t| t.to_string()).collect(),
                        Some(types) => {
                            if let Some(bad) = types.iter().find(|t| {
                                t.is_empty() || t.len() > 64 || t.contains(char::is_whitespace)
                            }) {
                                return Err(invalid(
                                    ikey("token_types"),
                                    format!("`{bad}` is not a JOSE typ value"),
                                ));
                            }
                            types
                        }
                    },
                });
            }
            let rate_limit = match &t.rate_limit {
                None => RateLimit::default(),
                Some(raw) => raw
                    .validate()
                    .map_err(|(k, m)| invalid(key(&format!("rate_limit.{k}")), m))?,
            };
            let services = services::validate_all(t.services, &format!("tenants.{id}"), &base)
                .map_err(|(k, m)| invalid(k, m))?;
            let providers =
                connect::validate_providers(t.providers, &format!("tenants.{id}"), &base)
                    .map_err(|(k, m)| invalid(k, m))?;
            let connect = match t.connect {
                None => None,
                Some(raw) => Some(
                    raw.validate(&base, &t.scopes)
                        .map_err(|(k, m)| invalid(key(&format!("connect.{k}")), m))?,
                ),
            };
            for (name, service) in &services {
                if let ServiceMode::UserToken { provider } = &service.mode {
                    if !providers.contains_key(provider) {
                        return Err(invalid(
                            key(&format!("services.{name}.provider")),
                            format!("no provider `{provider}` in [tenants.{id}.providers]"),
                        ));
                    }
                    if connect.is_none() {
                        return Err(invalid(
                            key("connect"),
                            format!(
                                "service `{name}` is in user-token mode: users connect their \
                                 accounts on the connect page, which signs them in at the tenant's \
                                 issuer; add [tenants.{id}.connect] with client_id, \
                                 authorization_endpoint and token_endpoint"
                            ),
                        ));
                    }
                }
            }
            let mut install = Vec::new();
            let mut seen = BTreeSet::new();
            for (i, inst) in t.install.into_iter().enumerate() {
                let ikey = |rest: &str| key(&format!("install[{i}].{rest}"));
                if !components.contains_key(&inst.component) {
                    return Err(invalid(
                        ikey("component"),
                        format!("no component `{}` in [components]", inst.component),
                    ));
                }
                if !seen.insert(inst.component.clone()) {
                    return Err(invalid(ikey("component"), "installed twice".into()));
                }
                let d = Limits::default();
                let l = &inst.limits;
                let limits = Limits {
                    memory_bytes: l
                        .memory_mib
                        .map_or(d.memory_bytes, |m| m.saturating_mul(1 << 20)),
                    timeout: l.timeout_ms.map_or(d.timeout, Duration::from_millis),
                    cpu: l.cpu_ms.map_or(d.cpu, Duration::from_millis),
                    output_bytes: l
                        .output_kib
                        .map_or(d.output_bytes, |k| k.saturating_mul(1024)),
                    content_blocks: l.content_blocks.unwrap_or(d.content_blocks),
                    delegate_calls: l.delegate_calls.unwrap_or(d.delegate_calls),
                    log_lines: l.log_lines.unwrap_or(d.log_lines),
                    log_bytes: l.log_kib.map_or(d.log_bytes, |k| k.saturating_mul(1024)),
                };
                limits
                    .validate_memory(defaults.max_memory_bytes)
                    .map_err(|e| invalid(ikey("limits"), e.to_string()))?;
                let mut granted = BTreeSet::new();
                for service in &inst.services {
                    if !services.contains_key(service) {
                        return Err(invalid(
                            ikey("services"),
                            format!("no service `{service}` in [tenants.{id}.services]"),
                        ));
                    }
                    if !granted.insert(service) {
                        return Err(invalid(
                            ikey("services"),
                            format!("`{service}` is listed twice"),
                        ));
                    }
                }
                install.push(InstallConfig {
                    component: inst.component,
                    scopes: inst.scopes,
                    tool_scopes: inst.tool_scopes,
                    limits,
                    services: inst.services,
                });
            }
            tenants.insert(
                id,
                TenantConfig {
                    issuers,
                    extra_audiences: t.audiences,
                    scopes: t.scopes,
                    install,
                    audit_fail_closed: t.audit_fail_closed.unwrap_or(true),
                    weight,
                    services,
                    connect,
                    providers,
                    rate_limit,
                },
            );
        }
        // Keys are cached per issuer: two tenants trusting one issuer must
        // agree on how to reach and accept it, or one would silently get the
        // other's settings.
        let mut seen: BTreeMap<&str, (&str, &IssuerConfig)> = BTreeMap::new();
        for (id, tenant) in &tenants {
            for (i, issuer) in tenant.issuers.iter().enumerate() {
                match seen.get(issuer.issuer.as_str()) {
                    Some((other, theirs)) if *theirs != issuer => {
                        return Err(invalid(
                            format!("tenants.{id}.issuers[{i}]"),
                            format!(
                                "issuer {} is also trusted by tenant `{other}` with other settings \
                                 (jwks_uri, algorithms, token types, refresh, staleness or fetch timeout); give both the same settings",
                                issuer.issuer
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(&issuer.issuer, (id, issuer));
                    }
                }
            }
        }
        if tenants.is_empty() {
            return Err(invalid(
                "tenants".into(),
                "configure at least one tenant".into(),
            ));
        }

        let data_dir = base.join(raw.data_dir);
        let vault_key = raw
            .vault
            .validate(&base, &data_dir)
            .map_err(|m| invalid("vault".into(), m))?;
        Ok(Config {
            vault_key,
            listen: raw.listen,
            public_url,
            data_dir,
            allowed_origins: raw.allowed_origins,
            server,
            components,
            tenants,
        })
    }

    /// The canonical resource URI of a tenant's MCP endpoint (RFC 8707 audience).
    pub fn resource_uri(&self, tenant: &str) -> String {
        format!("{}/mcp/{tenant}", self.public_url)
    }
}

#[cfg(test)]
mod tests;
