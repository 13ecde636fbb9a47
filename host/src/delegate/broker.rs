//! The delegation broker: the only way out of the sandbox under `airlock
//! serve` and `airlock dev`.
//!
//! For each `delegate.fetch` it checks policy (the tool's install grants the
//! service, the caller holds its scope, method and path are allowed, sizes fit),
//! attaches the mode's credential (the host's own, or a token exchanged for the
//! caller), signs the envelope for exactly this request and service, sends it
//! through [`Egress`], and writes one audit record, refusals included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::egress::{self, Egress};
use super::tokens::{Secret, TokenCache, TokenClient};
use super::{BoxFuture, Delegate, DelegateError, DelegateResponse, Delegation, OutboundRequest};
use crate::audit::{AuditLog, CallIdentity, DelegatedRequest, Entry};
use crate::config::{Config, ServiceConfig, ServiceCredential, ServiceMode};
use crate::connect::{AfterUnauthorized, Connector, UrlElicitation};
use crate::envelope::{DelegationMode, Envelope, KeyRing, RequestBinding};
use crate::vault::RecordKey;

/// The header carrying the signed envelope on every delegated request.
pub const ENVELOPE_HEADER: &str = "airlock-envelope";

/// Why the broker could not be built: a service is unusable as configured.
#[derive(Debug, thiserror::Error)]
#[error("tenants.{tenant}.services.{service}: {reason}")]
pub struct BrokerError {
    tenant: String,
    service: String,
    reason: String,
}

enum Credential {
    /// Only the signed envelope.
    None,
    /// A static header.
    Static {
        header: reqwest::header::HeaderName,
        value: Secret,
    },
    /// A client-credentials token.
    ClientCredentials(TokenClient),
    /// A token exchanged for the caller.
    Exchange(TokenClient),
    /// The user's own token for a provider, from the vault.
    UserToken { provider: String },
}

struct Service {
    config: ServiceConfig,
    credential: Credential,
}

impl Service {
    fn mode(&self) -> DelegationMode {
        match self.config.mode {
            ServiceMode::Service(_) => DelegationMode::Service,
            ServiceMode::OnBehalfOf(_) => DelegationMode::OnBehalfOf,
            ServiceMode::UserToken { .. } => DelegationMode::UserToken,
        }
    }
}

/// Every tenant's services, the clients to reach them, and what the host
/// signs and records with.
pub struct Broker {
    tenants: HashMap<String, HashMap<String, Service>>,
    egress: Egress,
    keys: Arc<KeyRing>,
    issuer_url: String,
    audit: Arc<AuditLog>,
    tokens: TokenCache,
    connector: Option<Arc<Connector>>,
}

/// What one call's delegate holds for the broker: the caller's own token
/// (token exchange only) and the account connection the call found missing.
struct CallState {
    caller_token: Secret,
    needs_connect: Mutex<Option<UrlElicitation>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("tenants", &self.tenants.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Build the broker for `config`'s services, reading their secrets now
    /// (vault secrets from `connector`'s vault). Without a connector,
    /// `user-token` services answer not-connected.
    pub fn new(
        config: &Config,
        keys: Arc<KeyRing>,
        audit: Arc<AuditLog>,
        connector: Option<Arc<Connector>>,
    ) -> Result<Self, BrokerError> {
        let egress = Egress::new().map_err(|reason| BrokerError {
            tenant: String::new(),
            service: String::new(),
            reason,
        })?;
        // Token endpoints are the operator's, not a tool's: a plain client.
        let token_http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| BrokerError {
                tenant: String::new(),
                service: String::new(),
                reason: e.to_string(),
            })?;
        let mut tenants = HashMap::new();
        for (tenant, tenant_config) in &config.tenants {
            let mut services = HashMap::new();
            let vault = connector.as_ref().map(|c| c.vault().clone());
            let from_vault = |secret: &str| match &vault {
                Some(vault) => vault.secret(tenant, secret).map_err(|e| e.to_string()),
                None => Err("the vault is not open".to_string()),
            };
            for (name, service) in &tenant_config.services {
                let fail = |reason: String| BrokerError {
                    tenant: tenant.clone(),
                    service: name.clone(),
                    reason,
                };
                check_base_url(service).map_err(fail)?;
                let credential = match &service.mode {
                    ServiceMode::Service(None) => Credential::None,
                    ServiceMode::Service(Some(ServiceCredential::Static { header, secret })) => {
                        let secret = Secret::load(secret, &from_vault).map_err(fail)?;
                        let value = if header == "authorization" {
                            Secret::new(format!("Bearer {}", secret.expose()))
                        } else {
                            secret
                        };
                        Credential::Static {
                            header: reqwest::header::HeaderName::from_bytes(header.as_bytes())
                                .map_err(|e| fail(e.to_string()))?,
                            value,
                        }
                    }
                    ServiceMode::Service(Some(ServiceCredential::ClientCredentials(client))) => {
                        Credential::ClientCredentials(
                            TokenClient::new(client.clone(), token_http.clone(), &from_vault)
                                .map_err(fail)?,
                        )
                    }
                    ServiceMode::OnBehalfOf(client) => Credential::Exchange(
                        TokenClient::new(client.clone(), token_http.clone(), &from_vault)
                            .map_err(fail)?,
                    ),
                    ServiceMode::UserToken { provider } => Credential::UserToken {
                        provider: provider.clone(),
                    },
                };
                services.insert(
                    name.clone(),
                    Service {
                        config: service.clone(),
                        credential,
                    },
                );
            }
            tenants.insert(tenant.clone(), services);
        }
        Ok(Broker {
            tenants,
            egress,
            keys,
            issuer_url: config.public_url.clone(),
            audit,
            tokens: TokenCache::default(),
            connector,
        })
    }

    async fn fetch(
        &self,
        envelope: &Envelope,
        call: &CallState,
        name: &str,
        request: OutboundRequest,
    ) -> Result<DelegateResponse, DelegateError> {
        let started = Instant::now();
        let service = self
            .tenants
            .get(envelope.tenant())
            .and_then(|t| t.get(name));
        let method = request.method().as_str();
        let path = match request.query().is_empty() {
            true => request.path().to_string(),
            false => format!(
                "{}?{}",
                request.path(),
                request
                    .query()
                    .iter()
                    .map(|(k, _)| format!("{k}="))
                    .collect::<Vec<_>>()
                    .join("&")
            ),
        };
        let outcome = match service {
            None => Err(DelegateError::NotGranted(format!(
                "service `{name}` is not configured for this tenant"
            ))),
            Some(service) => self.send(envelope, call, name, service, request).await,
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.record(
            envelope,
            name,
            method,
            &path,
            outcome.as_ref().map(|r| r.status),
            duration_ms,
        )
        .await?;
        outcome
    }

    /// Write the audit record of one request (or refusal). If it cannot be
    /// written, the request's outcome is withheld from the tool.
    async fn record(
        &self,
        envelope: &Envelope,
        name: &str,
        method: &str,
        path: &str,
        outcome: Result<u16, &DelegateError>,
        duration_ms: u64,
    ) -> Result<(), DelegateError> {
        let service = self
            .tenants
            .get(envelope.tenant())
            .and_then(|t| t.get(name));
        // The guest chose these (a refused request may be as long as the
        // host lets it copy): bound what one record can hold.
        let record = DelegatedRequest {
            service: clip(name, MAX_RECORDED_NAME),
            mode: service.map(|s| s.mode().into()),
            method: method.to_string(),
            path: clip(path, MAX_RECORDED_PATH),
            status: outcome.ok(),
            duration_ms,
            refusal: outcome
                .err()
                .map(|e| clip(&refusal(e), MAX_RECORDED_PATH * 2)),
        };
        let audited = self
            .audit
            .append(Entry::delegation(CallIdentity::from(envelope), record))
            .await;
        audited.map(|_| ()).map_err(|e| {
            tracing::error!(
                tenant = %envelope.tenant(), trace_id = %envelope.trace_id(), error = %e,
                "could not write the audit record of a delegated request"
            );
            DelegateError::DeniedByPolicy("the request's audit record could not be written".into())
        })
    }

    #[tracing::instrument(name = "airlock.delegate.fetch", skip_all, fields(tenant = %envelope.tenant(), tool = %envelope.tool(), service = %name))]
    async fn send(
        &self,
        envelope: &Envelope,
        call: &CallState,
        name: &str,
        service: &Service,
        request: OutboundRequest,
    ) -> Result<DelegateResponse, DelegateError> {
        let config = &service.config;
        if envelope.delegation(name).is_none() {
            return Err(DelegateError::NotGranted(format!(
                "this tool is not granted service `{name}`"
            )));
        }
        if let Some(scope) = &config.scope
            && !envelope.scopes().iter().any(|s| s == scope)
        {
            return Err(DelegateError::NotGranted(format!(
                "service `{name}` needs scope `{scope}`, which the caller was not granted"
            )));
        }
        let method = request.method().as_str();
        if !config.methods.contains(method) {
            return Err(DelegateError::DeniedByPolicy(format!(
                "service `{name}` does not allow {method}"
            )));
        }
        if !path_allowed(&config.path_prefixes, request.path()) {
            return Err(DelegateError::DeniedByPolicy(format!(
                "service `{name}` does not allow the path {}",
                request.path()
            )));
        }
        if request.body().len() > config.max_request_bytes {
            return Err(DelegateError::LimitExceeded(format!(
                "the request body is {} bytes; service `{name}` accepts at most {}",
                request.body().len(),
                config.max_request_bytes
            )));
        }
        let url = egress::join(&config.base_url, &request)?;
        let signed = envelope
            .sign_for(
                &self.keys,
                &self.issuer_url,
                &config.audience,
                &RequestBinding {
                    method,
                    path: &egress::path_and_query(&url),
                    body: request.body(),
                },
            )
            .map_err(|e| {
                tracing::error!(error = %e, "could not sign the envelope");
                DelegateError::DeniedByPolicy("the host could not sign this request".into())
            })?;
        let http_method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| DelegateError::InvalidRequest(e.to_string()))?;
        let build = |credential: Option<(reqwest::header::HeaderName, Secret)>| {
            let mut builder = self
                .egress
                .client(config.allow_private)
                .request(http_method.clone(), url.clone())
                .timeout(config.timeout)
                .header(ENVELOPE_HEADER, signed.as_str())
                .header("traceparent", traceparent(envelope.trace_id()))
                .header("user-agent", concat!("airlock/", env!("CARGO_PKG_VERSION")));
            for (header, value) in request.headers() {
                builder = builder.header(header, value);
            }
            if let Some((header, value)) = credential {
                builder = builder.header(header, value.expose());
            }
            if !request.body().is_empty() {
                builder = builder.body(request.body().to_vec());
            }
            builder
        };
        if let Credential::UserToken { provider } = &service.credential {
            return self
                .send_user_token(envelope, call, name, provider, config, build)
                .await;
        }
        let credential = self.credential(envelope, call, name, service).await?;
        egress::send(build(credential), name, config.max_response_bytes).await
    }

    /// A `user-token` request: the user's own token, refreshed once if the
    /// provider refuses it; when there is none, the call needs the user to
    /// connect their account.
    async fn send_user_token(
        &self,
        envelope: &Envelope,
        call: &CallState,
        name: &str,
        provider: &str,
        config: &ServiceConfig,
        build: impl Fn(Option<(reqwest::header::HeaderName, Secret)>) -> reqwest::RequestBuilder,
    ) -> Result<DelegateResponse, DelegateError> {
        let Some(connector) = &self.connector else {
            return Err(DelegateError::NotConnected(format!(
                "service `{name}` needs a connected {provider} account, and this host has no vault"
            )));
        };
        let key = RecordKey {
            tenant: envelope.tenant().to_string(),
            issuer: envelope.issuer().to_string(),
            subject: envelope.subject().to_string(),
            provider: provider.to_string(),
        };
        let bearer = |token: &Secret| {
            Some((
                reqwest::header::AUTHORIZATION,
                Secret::new(format!("Bearer {}", token.expose())),
            ))
        };
        let Some(token) = connector.tokens().access_token(&key).await? else {
            return Err(self.needs_connect(connector, call, &key, name));
        };
        let response = egress::send(build(bearer(&token)), name, config.max_response_bytes).await?;
        if response.status != 401 {
            return Ok(response);
        }
        match connector.tokens().after_unauthorized(&key, &token).await? {
            AfterUnauthorized::Retry(token) => {
                let response =
                    egress::send(build(bearer(&token)), name, config.max_response_bytes).await?;
                if response.status == 401 {
                    connector.tokens().refused_after_refresh(&key, &token);
                }
                Ok(response)
            }
            AfterUnauthorized::Keep => Ok(response),
            AfterUnauthorized::Disconnected => Err(self.needs_connect(connector, call, &key, name)),
        }
    }

    /// Remember that this call needs `key`'s account connected, and say so.
    fn needs_connect(
        &self,
        connector: &Connector,
        call: &CallState,
        key: &RecordKey,
        name: &str,
    ) -> DelegateError {
        match connector.begin(key) {
            Ok(elicitation) => {
                // The link goes to the user through the protocol, never to
                // the tool or the audit trail.
                let message = format!(
                    "service `{name}` needs the user's {} account, which is not connected; \
                     the user is asked to connect it",
                    key.provider
                );
                *call
                    .needs_connect
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(elicitation);
                DelegateError::NotConnected(message)
            }
            Err(why) => DelegateError::NotConnected(format!(
                "service `{name}` needs the user's {} account, which cannot be connected now: {why}",
                key.provider
            )),
        }
    }

    /// The credential header for `service`, if its mode has one.
    async fn credential(
        &self,
        envelope: &Envelope,
        call: &CallState,
        name: &str,
        service: &Service,
    ) -> Result<Option<(reqwest::header::HeaderName, Secret)>, DelegateError> {
        let bearer = |token: Secret| {
            Some((
                reqwest::header::AUTHORIZATION,
                Secret::new(format!("Bearer {}", token.expose())),
            ))
        };
        match &service.credential {
            Credential::None => Ok(None),
            Credential::Static { header, value } => Ok(Some((header.clone(), value.clone()))),
            Credential::ClientCredentials(client) => {
                let key = format!("cc|{}", client.cache_key());
                let token = self
                    .tokens
                    .get_or_fetch(&key, || client.client_credentials(name))
                    .await?;
                Ok(bearer(token))
            }
            Credential::Exchange(client) => {
                // One exchanged token per user (tenant, issuer, subject), service and target.
                let key = format!(
                    "obo|{}|{}|{}|{name}|{}",
                    envelope.tenant(),
                    envelope.issuer(),
                    envelope.subject(),
                    client.cache_key()
                );
                let token = self
                    .tokens
                    .get_or_fetch(&key, || client.exchange(name, call.caller_token.expose()))
                    .await?;
                Ok(bearer(token))
            }
            // Sent by `send_user_token`.
            Credential::UserToken { .. } => Ok(None),
        }
    }
}

/// Longest service name and path kept in an audit record, in bytes.
const MAX_RECORDED_NAME: usize = 64;
const MAX_RECORDED_PATH: usize = 512;

/// `s` cut to at most `max` bytes on a character boundary, marked when cut.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let cut = (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}…", s.get(..cut).unwrap_or_default())
}

/// A refusal as the audit trail records it: the error kind and its message
/// (host-made text, never a secret).
fn refusal(e: &DelegateError) -> String {
    let kind = match e {
        DelegateError::NotGranted(_) => "not-granted",
        DelegateError::NotConnected(_) => "not-connected",
        DelegateError::DeniedByPolicy(_) => "denied-by-policy",
        DelegateError::LimitExceeded(_) => "limit-exceeded",
        DelegateError::Timeout => "timeout",
        DelegateError::Upstream(_) => "upstream",
        DelegateError::InvalidRequest(_) => "invalid-request",
    };
    format!("{kind}: {e}")
}

/// A `traceparent` continuing the call's trace with a new span.
fn traceparent(trace_id: &str) -> String {
    let span = crate::envelope::random_id();
    format!(
        "00-{trace_id}-{}-01",
        span.get(..16).unwrap_or("0000000000000001")
    )
}

/// Whether `path` is one of `prefixes` or below one of them, segment-wise
/// (`/notes` allows `/notes` and `/notes/1`, not `/notesx`).
fn path_allowed(prefixes: &[String], path: &str) -> bool {
    prefixes.iter().any(|prefix| {
        let prefix = prefix.trim_end_matches('/');
        prefix.is_empty()
            || path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// A base URL naming an IP address skips the resolver's check: check it here.
fn check_base_url(service: &ServiceConfig) -> Result<(), String> {
    if service.allow_private {
        return Ok(());
    }
    let ip: Option<std::net::IpAddr> = match service.base_url.host() {
        Some(url::Host::Ipv4(ip)) => Some(ip.into()),
        Some(url::Host::Ipv6(ip)) => Some(ip.into()),
        _ => None,
    };
    match ip.and_then(|ip| egress::forbidden(ip).map(|r| (ip, r))) {
        Some((ip, reason)) => Err(format!(
            "base_url names {ip}, {reason}; set allow_private = true only for a service you run yourself"
        )),
        None => Ok(()),
    }
}

/// The delegate for one call: the broker plus the caller's own token, which
/// only token exchange uses and which lives no longer than the call.
struct CallDelegate {
    broker: Arc<Broker>,
    state: CallState,
}

impl Delegate for CallDelegate {
    fn fetch<'a>(
        &'a self,
        envelope: &'a Envelope,
        service: &'a str,
        request: OutboundRequest,
    ) -> BoxFuture<'a, Result<DelegateResponse, DelegateError>> {
        Box::pin(self.broker.fetch(envelope, &self.state, service, request))
    }

    fn refused<'a>(
        &'a self,
        envelope: &'a Envelope,
        service: &'a str,
        method: super::Method,
        path: &'a str,
        error: &'a DelegateError,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let _ = self
                .broker
                .record(envelope, service, method.as_str(), path, Err(error), 0)
                .await;
        })
    }

    fn needs_connect(&self) -> Option<UrlElicitation> {
        self.state
            .needs_connect
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Delegation for Arc<Broker> {
    fn for_call(&self, caller_token: &str) -> Arc<dyn Delegate> {
        Arc::new(CallDelegate {
            broker: self.clone(),
            state: CallState {
                caller_token: Secret::new(caller_token.to_string()),
                needs_connect: Mutex::new(None),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_names_and_paths_are_bounded() {
        assert_eq!(clip("/notes", 512), "/notes");
        let long = "é".repeat(1000);
        assert_eq!(clip(&long, 9), "éééé…");
    }

    #[test]
    fn path_prefixes_match_whole_segments() {
        let prefixes = vec!["/notes".to_string()];
        assert!(path_allowed(&prefixes, "/notes"));
        assert!(path_allowed(&prefixes, "/notes/1"));
        assert!(!path_allowed(&prefixes, "/notesx"));
        assert!(!path_allowed(&prefixes, "/admin"));
        assert!(path_allowed(&["/".to_string()], "/anything"));
        assert!(path_allowed(&["/v1/".to_string()], "/v1/x"));
        assert!(!path_allowed(&["/v1/".to_string()], "/v2"));
    }
}
