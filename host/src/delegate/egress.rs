//! Leaving the host: which addresses a delegated request may reach, the HTTP
//! clients that enforce it, and sending one request with its size limits.
//!
//! The address check runs in the clients' DNS resolver, so it sees exactly
//! the addresses the connection will use: there is no window between a check
//! and the connect for a name to re-resolve somewhere else. Base URLs with an
//! IP literal (which skip the resolver) are checked when the broker is built.
//! Redirects are never followed and proxies from the environment are ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::{DelegateError, DelegateResponse, OutboundRequest};

/// Why an address is refused, or `None` when it is a public unicast address.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "an unspecified (\"this network\") address",
        (127, _, _) => "a loopback address",
        (10, _, _) | (192, 168, _) => "a private address",
        (172, 16..=31, _) => "a private address",
        (169, 254, _) => "a link-local address (cloud metadata lives here)",
        (100, 64..=127, _) => "a shared (carrier-grade NAT) address",
        (192, 0, 0) => "an IETF protocol address",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (198, 18..=19, _) => "a benchmarking address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved or broadcast address",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // Forms that carry an IPv4 address are judged by that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        // Real services are not published as mapped addresses: refuse them all.
        return Some(forbidden_v4(v4).unwrap_or("an IPv4-mapped address"));
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let [s0, s1, s2, s3, s4, s5, s6, s7] = s;
    Some(match s0 {
        _ if ip.is_unspecified() => "an unspecified address",
        _ if ip.is_loopback() => "a loopback address",
        // ::a.b.c.d (IPv4-compatible, deprecated): judged as a private form.
        0 if s1 == 0 && s2 == 0 && s3 == 0 && s4 == 0 && s5 == 0 => "an IPv4-compatible address",
        // 64:ff9b::/96 (NAT64) embeds an IPv4 address.
        0x0064 if s1 == 0xff9b && s2 == 0 && s3 == 0 && s4 == 0 && s5 == 0 => {
            return forbidden_v4(embedded(s6, s7));
        }
        // 2002::/16 (6to4) embeds an IPv4 address in the next 32 bits.
        0x2002 => return forbidden_v4(embedded(s1, s2)),
        // 2001::/32 (Teredo) hides an obfuscated IPv4 address.
        0x2001 if s1 == 0 => "a Teredo address",
        x if x & 0xfe00 == 0xfc00 => "a unique-local address",
        x if x & 0xffc0 == 0xfe80 => "a link-local address",
        x if x & 0xffc0 == 0xfec0 => "a site-local address",
        x if x & 0xff00 == 0xff00 => "a multicast address",
        _ => return None,
    })
}

/// The resolver's refusal, found again in the error chain of a failed send.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {address}, {reason}")]
struct ForbiddenAddress {
    host: String,
    address: IpAddr,
    reason: &'static str,
}

/// Resolves with the system resolver and refuses names whose addresses are
/// not public, unless private addresses are allowed.
#[derive(Debug, Clone, Copy)]
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private {
                // Refuse the name if any of its addresses is not public: the
                // connector may try any of them.
                if let Some((address, reason)) = addrs
                    .iter()
                    .find_map(|a| forbidden(a.ip()).map(|r| (a.ip(), r)))
                {
                    return Err(Box::new(ForbiddenAddress {
                        host,
                        address,
                        reason,
                    })
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP clients delegated requests leave through.
#[derive(Debug, Clone)]
pub struct Egress {
    public_only: reqwest::Client,
    private_allowed: reqwest::Client,
}

fn client(allow_private: bool) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl Egress {
    /// Both clients.
    pub fn new() -> Result<Self, String> {
        Ok(Egress {
            public_only: client(false)?,
            private_allowed: client(true)?,
        })
    }

    /// The client for a service that does (or does not) allow private addresses.
    pub fn client(&self, allow_private: bool) -> &reqwest::Client {
        if allow_private {
            &self.private_allowed
        } else {
            &self.public_only
        }
    }
}

/// Response headers a guest never sees: they carry credentials or session state.
fn hidden_response_header(name: &str) -> bool {
    matches!(
        name,
        "set-cookie"
            | "set-cookie2"
            | "authorization"
            | "proxy-authorization"
            | "cookie"
            | "proxy-authenticate"
            | "www-authenticate"
            | "airlock-envelope"
    ) || name.ends_with("-token")
        || name.contains("secret")
        || name.contains("api-key")
        || name.contains("apikey")
}

/// `base` joined with the request's path and query, checked to stay under
/// `base` (the request rules already refused `..`, encoded slashes and
/// absolute URLs; this is the second lock).
pub fn join(base: &url::Url, request: &OutboundRequest) -> Result<url::Url, DelegateError> {
    let mut url = base.clone();
    let base_path = base.path().trim_end_matches('/');
    url.set_path(&format!("{base_path}{}", request.path()));
    url.set_query(None);
    if !request.query().is_empty() {
        url.query_pairs_mut().extend_pairs(request.query());
    }
    let stays = url.origin() == base.origin()
        && (url.path() == base_path || url.path().starts_with(&format!("{base_path}/")));
    if !stays {
        return Err(DelegateError::InvalidRequest(
            "the path leaves the service's base URL".into(),
        ));
    }
    Ok(url)
}

/// The path and query of `url` exactly as sent on the wire.
pub fn path_and_query(url: &url::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// Why a send failed, for the guest and the audit trail.
fn send_error(e: &reqwest::Error, service: &str) -> DelegateError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(forbidden) = err.downcast_ref::<ForbiddenAddress>() {
            return DelegateError::DeniedByPolicy(format!(
                "service `{service}` is not reachable: {forbidden}, which delegated requests may not use"
            ));
        }
        source = err.source();
    }
    if e.is_timeout() {
        DelegateError::Timeout
    } else {
        DelegateError::Upstream(format!("service `{service}` could not be reached"))
    }
}

/// Send `builder` and read the response, refusing a body over `max_body`.
pub async fn send(
    builder: reqwest::RequestBuilder,
    service: &str,
    max_body: usize,
) -> Result<DelegateResponse, DelegateError> {
    let mut resp = builder.send().await.map_err(|e| send_error(&e, service))?;
    let too_big = || {
        DelegateError::LimitExceeded(format!(
            "the response of service `{service}` is larger than {max_body} bytes"
        ))
    };
    if resp.content_length().is_some_and(|n| n > max_body as u64) {
        return Err(too_big());
    }
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter(|(n, _)| !hidden_response_header(n.as_str()))
        .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| send_error(&e, service))? {
        if body.len().saturating_add(chunk.len()) > max_body {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(DelegateResponse {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused_in_every_spelling() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "[::1]",
            "[::]",
            "[::ffff:127.0.0.1]",
            "[::ffff:169.254.169.254]",
            "[::127.0.0.1]",
            "[64:ff9b::a9fe:a9fe]",
            "[2002:7f00:1::]",
            "[2001:0::1]",
            "[fc00::1]",
            "[fd12:3456::1]",
            "[fe80::1]",
            "[ff02::1]",
            // Obfuscated IPv4: the URL parser normalises these to 127.0.0.1.
            "0x7f000001",
            "017700000001",
            "2130706433",
            "0x7f.1",
        ] {
            let url = url::Url::parse(&format!("http://{host}/")).unwrap();
            let ip: IpAddr = match url.host().unwrap() {
                url::Host::Ipv4(ip) => ip.into(),
                url::Host::Ipv6(ip) => ip.into(),
                url::Host::Domain(d) => panic!("{host} parsed as the name {d}"),
            };
            assert!(forbidden(ip).is_some(), "{host} ({ip}) must be refused");
        }
        for ok in [
            "93.184.216.34",
            "8.8.8.8",
            "[2606:4700::1111]",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            let url = url::Url::parse(&format!("http://{ok}/")).unwrap();
            let ip: IpAddr = match url.host().unwrap() {
                url::Host::Ipv4(ip) => ip.into(),
                url::Host::Ipv6(ip) => ip.into(),
                url::Host::Domain(_) => unreachable!(),
            };
            assert_eq!(forbidden(ip), None, "{ok}");
        }
    }

    #[test]
    fn credential_headers_never_reach_the_guest() {
        for name in [
            "set-cookie",
            "authorization",
            "www-authenticate",
            "x-auth-token",
            "x-amz-security-token",
            "x-api-key",
            "client-secret",
        ] {
            assert!(hidden_response_header(name), "{name}");
        }
        for name in ["content-type", "etag", "x-request-id", "location"] {
            assert!(!hidden_response_header(name), "{name}");
        }
    }
}
