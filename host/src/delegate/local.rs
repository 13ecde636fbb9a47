//! Delegation to services on local URLs, for `airlock tool run` during development.
//!
//! No credentials, no envelope header: this stands in for a real service so a
//! tool author can see their requests reach something. It is never used by
//! `airlock serve`.

use std::collections::HashMap;
use std::time::Duration;

use super::{BoxFuture, Delegate, DelegateError, DelegateResponse, OutboundRequest};
use crate::envelope::Envelope;

/// Largest response body accepted from a local service.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Maps service names to base URLs and forwards requests there.
#[derive(Debug, Clone)]
pub struct LocalServices {
    bases: HashMap<String, reqwest::Url>,
    client: reqwest::Client,
}

/// Why a `NAME=URL` mapping was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid service mapping `{mapping}`: {reason}")]
pub struct MappingError {
    mapping: String,
    reason: String,
}

impl LocalServices {
    /// Build from `NAME=URL` mappings (plain `http`, loopback hosts only).
    pub fn from_mappings<'a>(
        mappings: impl IntoIterator<Item = &'a str>,
        timeout: Duration,
    ) -> Result<Self, MappingError> {
        let mut bases = HashMap::new();
        for mapping in mappings {
            let fail = |reason: &str| MappingError {
                mapping: mapping.to_string(),
                reason: reason.to_string(),
            };
            let (name, url) = mapping
                .split_once('=')
                .ok_or_else(|| fail("expected NAME=URL"))?;
            if name.is_empty() {
                return Err(fail("the service name is empty"));
            }
            let url = reqwest::Url::parse(url).map_err(|e| fail(&e.to_string()))?;
            if url.scheme() != "http" {
                return Err(fail("only http:// URLs are supported for local services"));
            }
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !loopback {
                return Err(fail("local services must be on a loopback address"));
            }
            bases.insert(name.to_string(), url);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| MappingError {
                mapping: String::new(),
                reason: e.to_string(),
            })?;
        Ok(LocalServices { bases, client })
    }

    async fn send(
        &self,
        service: &str,
        base: &reqwest::Url,
        request: OutboundRequest,
    ) -> Result<DelegateResponse, DelegateError> {
        let url = super::egress::join(base, &request)?;
        let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
            .map_err(|e| DelegateError::InvalidRequest(e.to_string()))?;
        let mut builder = self.client.request(method, url);
        for (name, value) in request.headers() {
            builder = builder.header(name, value);
        }
        let builder = builder.body(request.body().to_vec());
        super::egress::send(builder, service, MAX_RESPONSE_BYTES).await
    }
}

impl Delegate for LocalServices {
    fn fetch<'a>(
        &'a self,
        _envelope: &'a Envelope,
        service: &'a str,
        request: OutboundRequest,
    ) -> BoxFuture<'a, Result<DelegateResponse, DelegateError>> {
        Box::pin(async move {
            let base = self.bases.get(service).ok_or_else(|| {
                DelegateError::NotGranted(format!(
                    "service `{service}` is not mapped; pass --service {service}=http://127.0.0.1:PORT"
                ))
            })?;
            self.send(service, base, request).await
        })
    }
}
