//! Delegation: the only way a tool reaches the outside world.
//!
//! The sandbox turns a guest's `delegate.fetch` into a validated
//! [`OutboundRequest`] and hands it, with the call's [`Envelope`] taken from host
//! state, to a [`Delegate`]. Policy, credentials and audit live behind that
//! trait; this module owns the request rules every implementation relies on.

mod local;
mod request;

use std::future::Future;
use std::pin::Pin;

pub use local::LocalServices;
pub use request::{Method, OutboundRequest, RequestLimits};

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
