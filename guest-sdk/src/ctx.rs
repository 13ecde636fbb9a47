//! The per-call context a tool receives.

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::delegate::{self, DelegateError, Request, Response, Service};
use crate::envelope::Envelope;
use crate::error::ToolError;
use crate::input::{
    Ask, ClientCapabilities, ElicitAnswer, Elicitation, Frame, InputRequest, InputRequired,
    InputResponse, MAX_STATE_BYTES, Root, SampleAnswer, SamplingRequest, valid_key,
};
use crate::wit::airlock::tool::{identity, log as wit_log, progress as wit_progress};

/// Where the context's capabilities come from.
pub(crate) enum Backend {
    /// The airlock host, through the component's imports.
    Host,
    /// A native test double.
    #[cfg(any(test, feature = "testing"))]
    Mock(crate::testing::MockDelegate),
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Host => f.write_str("Host"),
            #[cfg(any(test, feature = "testing"))]
            Backend::Mock(_) => f.write_str("Mock"),
        }
    }
}

impl Backend {
    pub(crate) fn fetch(&self, request: Request) -> Result<Response, DelegateError> {
        match self {
            Backend::Host => delegate::fetch_from_host(request),
            #[cfg(any(test, feature = "testing"))]
            Backend::Mock(mock) => mock.fetch(request),
        }
    }

    fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        match self {
            Backend::Host => wit_progress::report(progress, total, message),
            #[cfg(any(test, feature = "testing"))]
            Backend::Mock(mock) => mock.record_progress(progress, total, message),
        }
    }
}

/// What a tool call can see and do: its identity, its services, its log, and
/// what the client answered in earlier rounds of the call.
#[derive(Debug)]
pub struct Ctx {
    envelope: OnceCell<Envelope>,
    backend: Backend,
    client: ClientCapabilities,
    /// Every answer the call has received: carried in the state, then this round's.
    answers: BTreeMap<String, InputResponse>,
    /// The tool's state: from the previous round, or as set in this one.
    state: RefCell<Option<Value>>,
}

impl Ctx {
    /// The context of one round of a call: the client's capabilities, the
    /// answers to the previous round's requests, and the state it returned.
    pub(crate) fn new(
        backend: Backend,
        envelope: Option<Envelope>,
        client: ClientCapabilities,
        responses: Vec<(String, InputResponse)>,
        state: Option<&[u8]>,
    ) -> Self {
        // Answers count only in a round that continues one this SDK ended
        // (the host returns the state it sealed): answers a client sends
        // unasked, without that state, are ignored and the tool asks.
        let continued = state.is_some();
        let Frame { mut answers, state } = Frame::decode(state);
        if continued {
            answers.extend(responses);
        }
        Ctx {
            envelope: envelope.map(OnceCell::from).unwrap_or_default(),
            backend,
            client,
            answers,
            state: RefCell::new(state),
        }
    }

    /// The context of a call made by the host.
    pub(crate) fn from_host(
        client: ClientCapabilities,
        responses: Vec<(String, InputResponse)>,
        state: Option<&[u8]>,
    ) -> Self {
        Ctx::new(Backend::Host, None, client, responses, state)
    }

    /// Who this call acts for. Use this, never an argument, to decide whose data to touch.
    pub fn envelope(&self) -> &Envelope {
        self.envelope.get_or_init(|| match &self.backend {
            Backend::Host => Envelope::from(identity::current()),
            // A mock context is always built with its envelope.
            #[cfg(any(test, feature = "testing"))]
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

    /// The call's log. Lines are attributed to the call and limited per call,
    /// and sent to the client when it asked for log messages at that level.
    pub fn log(&self) -> Log<'_> {
        Log { ctx: self }
    }

    /// Report progress: `progress` of `total` (when known) is done, with an
    /// optional message. Values must increase. Sent to the client only when
    /// it asked for progress on this call, at a limited rate; never fails.
    pub fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        self.backend.progress(progress, total, message);
    }

    /// What the client can be asked for. Asking for something it did not
    /// declare ends as [`ToolError::Unavailable`] at once, without a round trip.
    pub fn client(&self) -> ClientCapabilities {
        self.client
    }

    /// The client's raw answer under `key`, if the call has one.
    pub fn response(&self, key: &str) -> Option<&InputResponse> {
        self.answers.get(key)
    }

    /// Ask several things in one round; see [`Ask`].
    pub fn ask(&self) -> Ask<'_> {
        Ask {
            ctx: self,
            requests: Vec::new(),
        }
    }

    /// The answer to `elicitation` under `key`, or (with `?`) end this round
    /// asking the client for it. [`ToolError::Unavailable`] when the client
    /// cannot be asked.
    pub fn elicit(&self, key: &str, elicitation: Elicitation) -> Result<ElicitAnswer, ToolError> {
        self.ask().elicit(key, elicitation).answers()?.elicit(key)
    }

    /// Shorthand for [`Ctx::elicit`] with [`Elicitation::url`]: ask the user to
    /// visit `url` (absolute `https`, or loopback `http`).
    pub fn elicit_url(
        &self,
        key: &str,
        message: impl Into<String>,
        url: impl Into<String>,
    ) -> Result<ElicitAnswer, ToolError> {
        self.elicit(key, Elicitation::url(message, url))
    }

    /// A completion from the client's model under `key`, or (with `?`) end this
    /// round asking for it. [`ToolError::Unavailable`] when the client cannot be
    /// asked.
    pub fn sample(&self, key: &str, request: SamplingRequest) -> Result<SampleAnswer, ToolError> {
        self.ask().sample(key, request).answers()?.sample(key)
    }

    /// The client's roots under `key`, or (with `?`) end this round asking for
    /// them. [`ToolError::Unavailable`] when the client cannot be asked.
    pub fn roots(&self, key: &str) -> Result<Vec<Root>, ToolError> {
        self.ask().roots(key).answers()?.roots(key)
    }

    /// The tool's state: as set by [`Ctx::set_state`] in this round, or else
    /// as the previous round left it. `Internal` when it is not a `T`.
    pub fn state<T: DeserializeOwned>(&self) -> Result<Option<T>, ToolError> {
        let state = self.state.borrow().clone();
        state
            .map(|v| {
                serde_json::from_value(v).map_err(|e| {
                    ToolError::Internal(format!(
                        "the state from the previous round does not fit the type asked for: {e}"
                    ))
                })
            })
            .transpose()
    }

    /// Set the state the next round gets if this one ends asking for input.
    /// It stays until set again; the host seals it while the client holds it,
    /// and the SDK's framing and the answers so far count against its 16 KiB.
    pub fn set_state<T: Serialize + ?Sized>(&self, state: &T) -> Result<(), ToolError> {
        let value = serde_json::to_value(state)
            .map_err(|e| ToolError::Internal(format!("could not encode the state: {e}")))?;
        *self.state.borrow_mut() = Some(value);
        Ok(())
    }

    /// Drop the tool's state.
    pub fn clear_state(&self) {
        *self.state.borrow_mut() = None;
    }

    /// The error that ends this round asking for `requests`, carrying every
    /// answer so far and the tool's state; `Internal` when a key is invalid
    /// or repeated, or the state is too large.
    pub(crate) fn input_required(&self, requests: Vec<(String, InputRequest)>) -> ToolError {
        for (i, (key, _)) in requests.iter().enumerate() {
            if !valid_key(key) {
                return ToolError::Internal(format!(
                    "input request key `{key}` is not 1 to 64 characters from `A-Z a-z 0-9 _ - .`"
                ));
            }
            if requests.iter().take(i).any(|(k, _)| k == key) {
                return ToolError::Internal(format!("input request key `{key}` is used twice"));
            }
        }
        let frame = Frame {
            answers: self.answers.clone(),
            state: self.state.borrow().clone(),
        };
        // Always a state, even an empty frame: the next round's answers
        // count only when it comes back (see `Ctx::new`).
        let state = match serde_json::to_vec(&frame) {
            Ok(bytes) if bytes.len() <= MAX_STATE_BYTES => Some(bytes),
            Ok(bytes) => {
                return ToolError::Internal(format!(
                    "the state for the next round (the answers so far and the tool's state) \
                     is {} bytes; the host carries at most {MAX_STATE_BYTES}",
                    bytes.len()
                ));
            }
            Err(e) => {
                return ToolError::Internal(format!("could not encode the state: {e}"));
            }
        };
        ToolError::__InputRequired(InputRequired { requests, state })
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn mock(&self) -> Option<&crate::testing::MockDelegate> {
        match &self.backend {
            Backend::Host => None,
            Backend::Mock(m) => Some(m),
        }
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn set_client(&mut self, client: ClientCapabilities) {
        self.client = client;
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn set_response(&mut self, key: String, response: InputResponse) {
        self.answers.insert(key, response);
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
            #[cfg(any(test, feature = "testing"))]
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

#[cfg(any(test, feature = "testing"))]
fn level_name(level: wit_log::Level) -> &'static str {
    match level {
        wit_log::Level::Trace => "trace",
        wit_log::Level::Debug => "debug",
        wit_log::Level::Info => "info",
        wit_log::Level::Warn => "warn",
        wit_log::Level::Error => "error",
    }
}
