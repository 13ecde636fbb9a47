//! The per-call context a tool receives.

use std::cell::OnceCell;
use std::fmt;

use crate::delegate::{self, DelegateError, Request, Response, Service};
use crate::envelope::Envelope;
use crate::wit::airlock::tool::{identity, log as wit_log};

/// Where the context's capabilities come from.
pub(crate) enum Backend {
    /// The airlock host, through the component's imports.
    Host,
    /// A native test double.
    #[cfg(feature = "testing")]
    Mock(crate::testing::MockDelegate),
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Host => f.write_str("Host"),
            #[cfg(feature = "testing")]
            Backend::Mock(_) => f.write_str("Mock"),
        }
    }
}

impl Backend {
    pub(crate) fn fetch(&self, request: Request) -> Result<Response, DelegateError> {
        match self {
            Backend::Host => delegate::fetch_from_host(request),
            #[cfg(feature = "testing")]
            Backend::Mock(mock) => mock.fetch(request),
        }
    }
}

/// What a tool call can see and do: its identity, its services, its log.
#[derive(Debug)]
pub struct Ctx {
    envelope: OnceCell<Envelope>,
    backend: Backend,
}

impl Ctx {
    /// The context of a call made by the host.
    pub(crate) fn from_host() -> Self {
        Ctx {
            envelope: OnceCell::new(),
            backend: Backend::Host,
        }
    }

    #[cfg(feature = "testing")]
    pub(crate) fn with_mock(envelope: Envelope, mock: crate::testing::MockDelegate) -> Self {
        Ctx {
            envelope: OnceCell::from(envelope),
            backend: Backend::Mock(mock),
        }
    }

    /// Who this call acts for. Use this, never an argument, to decide whose data to touch.
    pub fn envelope(&self) -> &Envelope {
        self.envelope.get_or_init(|| match &self.backend {
            Backend::Host => Envelope::from(identity::current()),
            // A mock context is always built with its envelope.
            #[cfg(feature = "testing")]
            Backend::Mock(_) => crate::testing::envelope(),
        })
    }

    /// A handle for requests to `service`, as configured for the tenant.
    pub fn delegate(&self, service: impl Into<String>) -> Service<'_> {
        Service {
            backend: &self.backend,
            name: service.into(),
        }
    }

    /// The call's log. Lines are attributed to the call and limited per call.
    pub fn log(&self) -> Log<'_> {
        Log { ctx: self }
    }
}

/// Leveled log lines for the current call.
#[derive(Debug)]
pub struct Log<'a> {
    ctx: &'a Ctx,
}

impl Log<'_> {
    fn emit(&self, level: wit_log::Level, message: &str) {
        match &self.ctx.backend {
            Backend::Host => wit_log::emit(level, message),
            #[cfg(feature = "testing")]
            Backend::Mock(mock) => mock.record_log(level_name(level), message),
        }
    }

    /// Log at debug level.
    pub fn debug(&self, message: &str) {
        self.emit(wit_log::Level::Debug, message);
    }

    /// Log at info level.
    pub fn info(&self, message: &str) {
        self.emit(wit_log::Level::Info, message);
    }

    /// Log at warn level.
    pub fn warn(&self, message: &str) {
        self.emit(wit_log::Level::Warn, message);
    }

    /// Log at error level.
    pub fn error(&self, message: &str) {
        self.emit(wit_log::Level::Error, message);
    }
}

#[cfg(feature = "testing")]
fn level_name(level: wit_log::Level) -> &'static str {
    match level {
        wit_log::Level::Trace => "trace",
        wit_log::Level::Debug => "debug",
        wit_log::Level::Info => "info",
        wit_log::Level::Warn => "warn",
        wit_log::Level::Error => "error",
    }
}
