//! Account connection: the vault's master key (`[vault]`), how the connect
//! page signs a browser user in at the tenant's issuer
//! (`[tenants.T.connect]`), and the third-party OAuth providers users connect
//! (`[tenants.T.providers.NAME]`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::services::{SecretSource, loopback_http_or_https, secret_or_none, validate_named};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVault {
    master_key_file: Option<PathBuf>,
    master_key_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnect {
    client_id: String,
    authorization_endpoint: String,
    token_endpoint: String,
    scopes: Option<Vec<String>>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    secret_vault: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    authorization_endpoint: String,
    token_endpoint: String,
    client_id: String,
    #[serde(default)]
    scopes: Vec<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    secret_vault: Option<String>,
}

/// Where the vault's master key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultKeySource {
    /// A key file (created by `airlock dev`, 0600).
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

/// How the connect page signs the browser user in at the tenant's issuer:
/// airlock is an OAuth client there (authorization code + PKCE S256), asks
/// for a token for the tenant's own endpoint and checks it as the edge does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectLogin {
    /// airlock's client id at the issuer.
    pub client_id: String,
    /// Its secret, if the client is confidential.
    pub secret: Option<SecretSource>,
    /// The issuer's authorization endpoint.
    pub authorization_endpoint: url::Url,
    /// The issuer's token endpoint.
    pub token_endpoint: url::Url,
    /// Scopes to ask for (default: the tenant's required scopes).
    pub scopes: Vec<String>,
}

/// A third-party OAuth provider users connect their accounts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// Where the browser is sent to consent.
    pub authorization_endpoint: url::Url,
    /// Where codes and refresh tokens are redeemed.
    pub token_endpoint: url::Url,
    /// airlock's client id there.
    pub client_id: String,
    /// Its secret, if the client is confidential (best kept in the vault).
    pub secret: Option<SecretSource>,
    /// Scopes to ask for.
    pub scopes: Vec<String>,
}

fn endpoint(raw: &str, key: &str) -> Result<url::Url, (String, String)> {
    let url = url::Url::parse(raw).map_err(|e| (key.to_string(), e.to_string()))?;
    if !loopback_http_or_https(&url) {
        return Err((
            key.to_string(),
            "must be https (plain http only on a loopback host)".into(),
        ));
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err((
            key.to_string(),
            "may not carry credentials or a fragment".into(),
        ));
    }
    Ok(url)
}

fn valid_scopes(scopes: &[String], key: &str) -> Result<(), (String, String)> {
    match scopes.iter().find(|s| {
        s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    }) {
        Some(bad) => Err((key.to_string(), format!("`{bad}` is not a scope token"))),
        None => Ok(()),
    }
}

impl RawVault {
    pub(super) fn validate(self, base: &Path, data_dir: &Path) -> Result<VaultKeySource, String> {
        match (self.master_key_file, self.master_key_env) {
            (None, None) => Ok(VaultKeySource::File(data_dir.join("vault.key"))),
            (Some(file), None) => Ok(VaultKeySource::File(base.join(file))),
            (None, Some(var)) if !var.is_empty() => Ok(VaultKeySource::Env(var)),
            _ => Err("give at most one of `master_key_file` or `master_key_env`".into()),
        }
    }
}

impl RawConnect {
    /// Checked as a provider is: airlock is an OAuth client at the issuer
    /// the same way.
    pub(super) fn validate(
        self,
        base: &Path,
        tenant_scopes: &[String],
    ) -> Result<ConnectLogin, (String, String)> {
        let client = RawProvider {
            authorization_endpoint: self.authorization_endpoint,
            token_endpoint: self.token_endpoint,
            client_id: self.client_id,
            scopes: self.scopes.unwrap_or_else(|| tenant_scopes.to_vec()),
            secret_env: self.secret_env,
            secret_file: self.secret_file,
            secret_vault: self.secret_vault,
        }
        .validate(base)?;
        Ok(ConnectLogin {
            client_id: client.client_id,
            secret: client.secret,
            authorization_endpoint: client.authorization_endpoint,
            token_endpoint: client.token_endpoint,
            scopes: client.scopes,
        })
    }
}

impl RawProvider {
    fn validate(self, base: &Path) -> Result<ProviderConfig, (String, String)> {
        if self.client_id.is_empty() {
            return Err(("client_id".into(), "may not be empty".into()));
        }
        valid_scopes(&self.scopes, "scopes")?;
        Ok(ProviderConfig {
            authorization_endpoint: endpoint(
                &self.authorization_endpoint,
                "authorization_endpoint",
            )?,
            token_endpoint: endpoint(&self.token_endpoint, "token_endpoint")?,
            client_id: self.client_id,
            secret: secret_or_none(self.secret_env, self.secret_file, self.secret_vault, base)
                .map_err(|m| ("secret_env".to_string(), m))?,
            scopes: self.scopes,
        })
    }
}

/// Validate every provider of a tenant; errors name the full key.
pub(super) fn validate_providers(
    raw: BTreeMap<String, RawProvider>,
    tenant_key: &str,
    base: &Path,
) -> Result<BTreeMap<String, ProviderConfig>, (String, String)> {
    validate_named(raw, tenant_key, "provider", |provider| {
        provider.validate(base)
    })
}
