//! Tool errors: what a failed call tells the caller.

use std::fmt;

use crate::delegate::DelegateError;
use crate::input::InputRequired;
use crate::wit::airlock::tool::types::ToolError as WitToolError;

/// Why a tool call failed. The message is shown to the caller; keep it helpful.
///
/// One case is not a failure: when [`Ctx::elicit`](crate::Ctx::elicit) and
/// friends need to ask the client first, they return a hidden "input required"
/// value that only the SDK can make. Pass it on with `?` (or return it as it
/// is): the SDK turns it into a request to the client, never into an error.
/// [`ToolError::is_input_required`] tells it apart when mapping errors.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The client could not be asked for input (it did not declare the
    /// capability, or the request failed or timed out). Returned by
    /// [`Ctx::elicit`](crate::Ctx::elicit) and friends; handle it, for example
    /// with [`IfAvailable::if_available`](crate::IfAvailable::if_available).
    /// Passed on unhandled, the caller sees it as an error.
    Unavailable(String),
    /// Not an error: end this round asking the client for input. Made only by
    /// the SDK; pass it on.
    #[doc(hidden)]
    __InputRequired(InputRequired),
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
            | ToolError::Other(m)
            | ToolError::Unavailable(m) => m,
            ToolError::__InputRequired(_) => "input required",
        }
    }

    /// Whether this is not a failure but the call asking the client for input
    /// ([`Ctx::elicit`](crate::Ctx::elicit) and friends). Pass such a value on
    /// unchanged.
    pub fn is_input_required(&self) -> bool {
        matches!(self, ToolError::__InputRequired(_))
    }

    /// What the call asks the client for, when it is asking.
    pub fn input_required(&self) -> Option<&InputRequired> {
        match self {
            ToolError::__InputRequired(i) => Some(i),
            _ => None,
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
            ToolError::Unavailable(_) => "client unavailable",
            ToolError::__InputRequired(i) => {
                return write!(f, "input required: {}", i.keys().join(", "));
            }
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
            ToolError::Other(m) | ToolError::Unavailable(m) => WitToolError::Other(m),
            // The export glue turns this into `call-outcome::input-required`
            // before it gets here.
            ToolError::__InputRequired(i) => WitToolError::Internal(format!(
                "the tool asked for input ({}) where it cannot be asked",
                i.keys().join(", ")
            )),
        }
    }
}
