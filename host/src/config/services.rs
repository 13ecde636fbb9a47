//! `[tenants.T.services.NAME]`: the downstream services a tenant's tools may
//! reach through `delegate.fetch`, each with its delegation mode and policy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    base_url: String,
    mode: String,
    audience: Option<String>,
    scope: Option<String>,
    methods: Option<Vec<String>>,
    path_prefixes: Option<Vec<String>>,
    timeout_ms: Option<u64>,
    max_request_kib: Option<usize>,
    max_response_kib: Option<usize>,
    #[serde(default)]
    allow_private: bool,
    credential: Option<RawCredential>,
    token_exchange: Option<RawClient>,
    provider: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "kebab-case")]
enum RawCredential {
    Static {
        header: Option<String>,
        secret_env: Option<String>,
        secret_file: Option<PathBuf>,
        secret_vault: Option<String>,
    },
    ClientCredentials(RawClient),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    token_endpoint: String,
    client_id: String,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    secret_vault: Option<String>,
    audience: Option<String>,
    resource: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

/// Where a secret is read from when the host starts. The value itself is
/// never part of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file (its contents, trailing newline removed).
    File(PathBuf),
    /// A named secret of the tenant in the vault (`airlock vault put-secret`).
    Vault(String),
}

/// An OAuth client of the host at some authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    /// The token endpoint (https, or http on loopback).
    pub token_endpoint: url::Url,
    /// The host's client id there.
    pub client_id: String,
    /// The host's client secret (sent with HTTP Basic authentication).
    pub secret: SecretSource,
    /// `audience` to ask for, if any.
    pub audience: Option<String>,
    /// `resource` (RFC 8707) to ask for, if any.
    pub resource: Option<String>,
    /// Scopes to ask for.
    pub scopes: Vec<String>,
}

/// How the host authenticates itself to a `service`-mode service, besides
/// the signed envelope it always sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceCredential {
    /// A static secret in one header (`Authorization: Bearer …` by default).
    Static {
        /// The header name, lowercase.
        header: String,
        /// Where the secret is.
        secret: SecretSource,
    },
    /// An OAuth client-credentials token, cached until shortly before expiry.
    ClientCredentials(OAuthClient),
}

/// The delegation mode of a service, with what that mode needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceMode {
    /// The host's own credential (if any) plus the signed envelope.
    Service(Option<ServiceCredential>),
    /// RFC 8693 token exchange of the caller's token, as this client.
    OnBehalfOf(OAuthClient),
    /// The user's own token for `provider`, from the vault.
    UserToken {
        /// The third-party provider the user connects.
        provider: String,
    },
}

/// One service, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Requests go to this URL joined with the tool's relative path.
    pub base_url: url::Url,
    /// The `aud` of the envelope signed for this service.
    pub audience: String,
    /// The mode and its credential.
    pub mode: ServiceMode,
    /// A scope the caller must hold, if any.
    pub scope: Option<String>,
    /// Allowed methods, uppercase.
    pub methods: BTreeSet<String>,
    /// Allowed path prefixes (segment-wise), each starting with `/`.
    pub path_prefixes: Vec<String>,
    /// Deadline for one request, response body included.
    pub timeout: Duration,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Largest response body.
    pub max_response_bytes: usize,
    /// Whether the service may resolve to loopback, private or link-local
    /// addresses (off by default; `airlock dev` turns it on for its demos).
    pub allow_private: bool,
}

const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

pub(super) fn loopback_http_or_https(url: &url::Url) -> bool {
    url.scheme() == "https" || super::is_loopback_http(url)
}

/// The secret named by at most one of `secret_env`, `secret_file` and
/// `secret_vault`.
pub(super) fn secret_or_none(
    env: Option<String>,
    file: Option<PathBuf>,
    vault: Option<String>,
    base: &Path,
) -> Result<Option<SecretSource>, String> {
    match (env, file, vault) {
        (None, None, None) => Ok(None),
        (Some(var), None, None) if !var.is_empty() => Ok(Some(SecretSource::Env(var))),
        (None, Some(file), None) => Ok(Some(SecretSource::File(base.join(file)))),
        (None, None, Some(name)) if valid_secret_name(&name) => Ok(Some(SecretSource::Vault(name))),
        (None, None, Some(_)) => Err(
            "`secret_vault` names a vault secret: 1 to 64 letters, digits, `-`, `_`, `.`".into(),
        ),
        _ => Err("give exactly one of `secret_env`, `secret_file` or `secret_vault`".into()),
    }
}

/// A vault secret's name.
pub fn valid_secret_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn secret(
    env: Option<String>,
    file: Option<PathBuf>,
    vault: Option<String>,
    base: &Path,
) -> Result<SecretSource, String> {
    secret_or_none(env, file, vault, base)?
        .ok_or_else(|| "give exactly one of `secret_env`, `secret_file` or `secret_vault`".into())
}

fn client(raw: RawClient, base: &Path) -> Result<OAuthClient, (String, String)> {
    let token_endpoint = url::Url::parse(&raw.token_endpoint)
        .map_err(|e| ("token_endpoint".to_string(), e.to_string()))?;
    if !loopback_http_or_https(&token_endpoint) {
        return Err((
            "token_endpoint".into(),
            "must be https (plain http only on a loopback host)".into(),
        ));
    }
    if raw.client_id.is_empty() {
        return Err(("client_id".into(), "may not be empty".into()));
    }
    Ok(OAuthClient {
        token_endpoint,
        client_id: raw.client_id,
        secret: secret(raw.secret_env, raw.secret_file, raw.secret_vault, base)
            .map_err(|m| ("secret_env".into(), m))?,
        audience: raw.audience,
        resource: raw.resource,
        scopes: raw.scopes,
    })
}

impl RawService {
    /// Validate; on error, the key (relative to the service's table) and why.
    pub(super) fn validate(self, base: &Path) -> Result<ServiceConfig, (String, String)> {
        let err = |key: &str, m: &str| (key.to_string(), m.to_string());
        let base_url =
            url::Url::parse(&self.base_url).map_err(|e| ("base_url".to_string(), e.to_string()))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(err("base_url", "must be an http or https URL"));
        }
        if base_url.host().is_none()
            || !base_url.username().is_empty()
            || base_url.password().is_some()
            || base_url.query().is_some()
            || base_url.fragment().is_some()
        {
            return Err(err(
                "base_url",
                "must be scheme://host[:port][/path], without credentials, query or fragment",
            ));
        }
        let mode = match self.mode.as_str() {
            "service" => {
                let credential = match self.credential {
                    None => None,
                    Some(RawCredential::Static {
                        header,
                        secret_env,
                        secret_file,
                        secret_vault,
                    }) => {
                        let header = header
                            .unwrap_or_else(|| "authorization".into())
                            .to_ascii_lowercase();
                        if header.is_empty()
                            || !header
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        {
                            return Err(err("credential.header", "is not a header name"));
                        }
                        Some(ServiceCredential::Static {
                            header,
                            secret: secret(secret_env, secret_file, secret_vault, base)
                                .map_err(|m| ("credential.secret_env".to_string(), m))?,
                        })
                    }
                    Some(RawCredential::ClientCredentials(raw)) => {
                        Some(ServiceCredential::ClientCredentials(
                            client(raw, base).map_err(|(k, m)| (format!("credential.{k}"), m))?,
                        ))
                    }
                };
                if self.token_exchange.is_some() {
                    return Err(err("token_exchange", "only for mode = \"on-behalf-of\""));
                }
                ServiceMode::Service(credential)
            }
            "on-behalf-of" => {
                let raw = self.token_exchange.ok_or_else(|| {
                    err(
                        "token_exchange",
                        "mode = \"on-behalf-of\" needs a token_exchange table",
                    )
                })?;
                if self.credential.is_some() {
                    return Err(err("credential", "only for mode = \"service\""));
                }
                ServiceMode::OnBehalfOf(
                    client(raw, base).map_err(|(k, m)| (format!("token_exchange.{k}"), m))?,
                )
            }
            "user-token" => {
                if self.credential.is_some() || self.token_exchange.is_some() {
                    return Err(err(
                        "mode",
                        "a user-token service takes no credential or token_exchange",
                    ));
                }
                ServiceMode::UserToken {
                    provider: self
                        .provider
                        .ok_or_else(|| err("provider", "mode = \"user-token\" needs a provider"))?,
                }
            }
            other => {
                return Err((
                    "mode".into(),
                    format!("`{other}` is not a mode; use service, on-behalf-of or user-token"),
                ));
            }
        };
        let methods: BTreeSet<String> = match self.methods {
            None => METHODS.iter().map(|m| m.to_string()).collect(),
            Some(list) => {
                let mut out = BTreeSet::new();
                for m in list {
                    let upper = m.to_ascii_uppercase();
                    if !METHODS.contains(&upper.as_str()) {
                        return Err(("methods".into(), format!("`{m}` is not one of {METHODS:?}")));
                    }
                    out.insert(upper);
                }
                out
            }
        };
        let path_prefixes = self.path_prefixes.unwrap_or_else(|| vec!["/".into()]);
        if path_prefixes.is_empty()
            || path_prefixes.iter().any(|p| {
                !p.starts_with('/')
                    || p.contains(['?', '#', '%', '\\'])
                    || p.contains("/../")
                    || p.ends_with("/..")
            })
        {
            return Err(err(
                "path_prefixes",
                "each prefix must be a plain path starting with `/` (no `..`, `%`, `?` or `#`)",
            ));
        }
        let timeout = Duration::from_millis(self.timeout_ms.unwrap_or(10_000));
        if !(Duration::from_millis(10)..=Duration::from_secs(300)).contains(&timeout) {
            return Err(err("timeout_ms", "must be between 10 ms and 5 minutes"));
        }
        let kib = |v: Option<usize>, key: &str| -> Result<usize, (String, String)> {
            let v = v.unwrap_or(1024);
            if (1..=64 * 1024).contains(&v) {
                Ok(v * 1024)
            } else {
                Err(err(key, "must be between 1 and 65536 KiB"))
            }
        };
        Ok(ServiceConfig {
            audience: self
                .audience
                .unwrap_or_else(|| base_url.as_str().trim_end_matches('/').to_string()),
            base_url,
            mode,
            scope: self.scope,
            methods,
            path_prefixes,
            timeout,
            max_request_bytes: kib(self.max_request_kib, "max_request_kib")?,
            max_response_bytes: kib(self.max_response_kib, "max_response_kib")?,
            allow_private: self.allow_private,
        })
    }
}

/// Validate every service of a tenant; errors name the full key.
pub(super) fn validate_all(
    raw: BTreeMap<String, RawService>,
    tenant_key: &str,
    base: &Path,
) -> Result<BTreeMap<String, ServiceConfig>, (String, String)> {
    validate_named(raw, tenant_key, "service", |service| service.validate(base))
}

/// Validate every `[{tenant_key}.{kind}s.NAME]` table with `validate`: the
/// name is 1 to 64 lowercase letters, digits, `-` and `_`; errors name the
/// full key.
pub(super) fn validate_named<R, T>(
    raw: BTreeMap<String, R>,
    tenant_key: &str,
    kind: &str,
    validate: impl Fn(R) -> Result<T, (String, String)>,
) -> Result<BTreeMap<String, T>, (String, String)> {
    let mut out = BTreeMap::new();
    for (name, entry) in raw {
        let key = format!("{tenant_key}.{kind}s.{name}");
        if !(1..=64).contains(&name.len())
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err((
                key,
                format!("a {kind} name is 1 to 64 lowercase letters, digits, `-` and `_`"),
            ));
        }
        let entry = validate(entry).map_err(|(k, m)| (format!("{key}.{k}"), m))?;
        out.insert(name, entry);
    }
    Ok(out)
}
