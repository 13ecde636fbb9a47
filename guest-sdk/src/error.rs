//! Tool errors: what a failed call tells the caller.

use std::fmt;

use crate::delegate::DelegateError;
use crate::wit::airlock::tool::types::ToolError as WitToolError;

/// Why a tool call failed. The message is shown to the caller; keep it helpful.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    /// The arguments were wrong.
    InvalidInput(String),
    /// The caller may not do this.
    Denied(String),
    /// The caller must connect an account with the named service first.
    NotConnected(String),
    /// A downstream service failed.
    Upstream(String),
    /// A bug in the tool.
    Internal(String),
    /// Anything else.
    Other(String),
}

impl ToolError {
    /// Shorthand for [`ToolError::InvalidInput`].
    pub fn invalid_input(msg: impl Into<String>) -> Self {
        ToolError::InvalidInput(msg.into())
    }

    /// Shorthand for [`ToolError::Denied`].
    pub fn denied(msg: impl Into<String>) -> Self {
        ToolError::Denied(msg.into())
    }

    /// Shorthand for [`ToolError::Internal`].
    pub fn internal(msg: impl Into<String>) -> Self {
        ToolError::Internal(msg.into())
    }

    /// The message carried by any variant.
    pub fn message(&self) -> &str {
        match self {
            ToolError::InvalidInput(m)
            | ToolError::Denied(m)
            | ToolError::NotConnected(m)
            | ToolError::Upstream(m)
            | ToolError::Internal(m)
            | ToolError::Other(m) => m,
        }
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            ToolError::InvalidInput(_) => "invalid input",
            ToolError::Denied(_) => "denied",
            ToolError::NotConnected(_) => "not connected",
            ToolError::Upstream(_) => "upstream error",
            ToolError::Internal(_) => "internal error",
            ToolError::Other(_) => "error",
        };
        write!(f, "{kind}: {}", self.message())
    }
}

impl std::error::Error for ToolError {}

impl From<DelegateError> for ToolError {
    fn from(e: DelegateError) -> Self {
        let msg = e.to_string();
        match e {
            DelegateError::NotConnected(_) => ToolError::NotConnected(msg),
            DelegateError::NotGranted(_) | DelegateError::DeniedByPolicy(_) => {
                ToolError::Denied(msg)
            }
            DelegateError::Timeout | DelegateError::Upstream(_) | DelegateError::Status { .. } => {
                ToolError::Upstream(msg)
            }
            DelegateError::LimitExceeded(_) => ToolError::Other(msg),
            DelegateError::InvalidRequest(_) | DelegateError::Decode(_) => ToolError::Internal(msg),
        }
    }
}

impl From<ToolError> for WitToolError {
    fn from(e: ToolError) -> Self {
        match e {
            ToolError::InvalidInput(m) => WitToolError::InvalidInput(m),
            ToolError::Denied(m) => WitToolError::Denied(m),
            ToolError::NotConnected(m) => WitToolError::NotConnected(m),
            ToolError::Upstream(m) => WitToolError::Upstream(m),
            ToolError::Internal(m) => WitToolError::Internal(m),
            ToolError::Other(m) => WitToolError::Other(m),
        }
    }
}
