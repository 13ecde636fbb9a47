//! Delegation: the only way a tool reaches the outside world.
//!
//! The sandbox turns a guest's `delegate.fetch` into a validated
//! [`OutboundRequest`] and hands it, with the call's [`Envelope`] taken from host
//! state, to a [`Delegate`]. Policy, credentials and audit live behind that
//! trait; this module owns the request rules every implementation relies on.

mod broker;
mod egress;
mod local;
mod request;
mod tokens;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use broker::{Broker, BrokerError, ENVELOPE_HEADER};
pub use egress::forbidden as forbidden_address;
pub use local::LocalServices;
pub use request::{Method, OutboundRequest, RequestLimits};
pub(crate) use tokens::token_request;
pub use tokens::{Granted, Secret, TokenError};

use crate::envelope::Envelope;

/// A service's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegateResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers, credential-bearing ones removed.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a delegated request produced no response. Messages reach the guest, so
/// they never carry secrets or internal detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelegateError {
    /// The envelope grants no access to the service.
    #[error("{0}")]
    NotGranted(String),
    /// The user has not connected an account with the service.
    #[error("{0}")]
    NotConnected(String),
    /// Policy refused the request.
    #[error("{0}")]
    DeniedByPolicy(String),
    /// A per-call limit was reached.
    #[error("{0}")]
    LimitExceeded(String),
    /// The service did not answer in time.
    #[error("the service did not answer in time")]
    Timeout,
    /// The service could not be reached or answered badly.
    #[error("{0}")]
    Upstream(String),
    /// The request was malformed.
    #[error("{0}")]
    InvalidRequest(String),
}

/// A boxed future, so [`Delegate`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends delegated requests for tool calls.
///
/// Implementations decide policy and credentials from `envelope`, which the
/// host took from the call's own state: it is never a value the guest supplied.
pub trait Delegate: Send + Sync + 'static {
    /// Send `request` to `service` for the call described by `envelope`.
    fn fetch<'a>(
        &'a self,
        envelope: &'a Envelope,
        service: &'a str,
        request: OutboundRequest,
    ) -> BoxFuture<'a, Result<DelegateResponse, DelegateError>>;

    /// A request the sandbox refused before it reached [`Delegate::fetch`]
    /// (it broke the request rules, or the call's request limit): recorded
    /// where requests are recorded. `path` is as the guest gave it.
    fn refused<'a>(
        &'a self,
        _envelope: &'a Envelope,
        _service: &'a str,
        _method: Method,
        _path: &'a str,
        _error: &'a DelegateError,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// The account connection this call found missing, if any: the call
    /// then ends by asking the user to connect (a URL elicitation).
    fn needs_connect(&self) -> Option<crate::connect::UrlElicitation> {
        None
    }
}

/// Makes the [`Delegate`] for one call. The caller's own access token is
/// handed over for the call only (token exchange needs it as the subject
/// token); it is never stored.
pub trait Delegation: Send + Sync + 'static {
    /// The delegate for one call by the holder of `caller_token`.
    fn for_call(&self, caller_token: &str) -> Arc<dyn Delegate>;
}

/// Every call uses the same delegate (tests, `airlock tool run`).
impl Delegation for Arc<dyn Delegate> {
    fn for_call(&self, _caller_token: &str) -> Arc<dyn Delegate> {
        self.clone()
    }
}

/// The default: no services are configured, so every request is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

impl Delegate for DenyAll {
    fn fetch<'a>(
        &'a self,
        _envelope: &'a Envelope,
        service: &'a str,
        _request: OutboundRequest,
    ) -> BoxFuture<'a, Result<DelegateResponse, DelegateError>> {
        let err = DelegateError::NotGranted(format!(
            "service `{service}` is not available: no services are configured"
        ));
        Box::pin(async move { Err(err) })
    }
}
