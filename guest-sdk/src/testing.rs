//! Run tools natively in unit tests, without wasm or a host.
//!
//! ```
//! use airlock_sdk::testing::{self, MockDelegate};
//! use airlock_sdk::{Ctx, Response, ToolError};
//!
//! fn list_notes(ctx: &Ctx) -> Result<String, ToolError> {
//!     let response = ctx.delegate("notes").get("/notes").send()?;
//!     Ok(response.text()?)
//! }
//!
//! let notes = MockDelegate::new().route("notes", |req| {
//!     assert_eq!(req.path, "/notes");
//!     Ok(Response::json_body(200, &serde_json::json!([])))
//! });
//! let ctx = Ctx::testing(testing::envelope(), notes.clone());
//! let out = list_notes(&ctx).unwrap();
//! assert_eq!(notes.requests().len(), 1);
//! ```
//!
//! The mock also plays the client: give it capabilities and canned answers
//! by key, and [`run`] a tool round after round as the host would, each round
//! with a fresh context, the answers and the state the previous one returned:
//!
//! ```
//! use airlock_sdk::testing::{self, MockDelegate};
//! use airlock_sdk::{ClientCapabilities, Ctx, Elicitation, ToolError};
//!
//! fn greet(ctx: &Ctx) -> Result<String, ToolError> {
//!     let form = serde_json::json!({"type": "object", "properties": {"name": {"type": "string"}}});
//!     let answer = ctx.elicit("name", Elicitation::form("Your name?", form))?;
//!     Ok(format!("hello {}", answer.str("name").unwrap_or("stranger")))
//! }
//!
//! let mock = MockDelegate::new()
//!     .answer("name", serde_json::json!({"action": "accept", "content": {"name": "Ada"}}));
//! let run = testing::run(testing::envelope(), &mock, greet);
//! assert_eq!(run.outcome.text().as_deref(), Some("hello Ada"));
//! assert_eq!(run.asked.len(), 1); // one round asked, the second completed
//!
//! // A client without elicitation is not asked: the tool gets `Unavailable`.
//! let mock = MockDelegate::new().client(ClientCapabilities::none());
//! let run = testing::run(testing::envelope(), &mock, greet);
//! assert!(matches!(run.outcome.error(), Some(ToolError::Unavailable(_))));
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use crate::ctx::{Backend, Ctx};
use crate::delegate::{DelegateError, Request, Response};
use crate::envelope::{Actor, ActorKind, Agent, Envelope};
use crate::error::ToolError;
use crate::input::{ClientCapabilities, InputRequired, InputResponse};
use crate::output::{Content, IntoToolOutput, ToolOutput};

type Handler = Box<dyn Fn(&Request) -> Result<Response, DelegateError>>;

/// Most rounds [`run`] plays before it gives up.
pub const MAX_ROUNDS: usize = 16;

struct Inner {
    routes: Vec<(String, Handler)>,
    requests: Vec<Request>,
    logs: Vec<(String, String)>,
    progress: Vec<ProgressReport>,
    client: ClientCapabilities,
    answers: BTreeMap<String, InputResponse>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            routes: Vec::new(),
            requests: Vec::new(),
            logs: Vec::new(),
            progress: Vec::new(),
            client: ClientCapabilities::all(),
            answers: BTreeMap::new(),
        }
    }
}

/// One progress report a tool made.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressReport {
    /// How much is done.
    pub progress: f64,
    /// Of how much, when known.
    pub total: Option<f64>,
    /// The message, if any.
    pub message: Option<String>,
}

/// A stand-in for the host and the client: answers delegated requests per
/// service, declares client capabilities (all, unless set) and answers input
/// requests by key, and records every request, log line and progress report.
/// Clones share state.
#[derive(Clone, Default)]
pub struct MockDelegate {
    inner: Rc<RefCell<Inner>>,
}

impl fmt::Debug for MockDelegate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.borrow();
        f.debug_struct("MockDelegate")
            .field(
                "services",
                &inner.routes.iter().map(|(s, _)| s).collect::<Vec<_>>(),
            )
            .field("requests", &inner.requests.len())
            .finish()
    }
}

impl MockDelegate {
    /// A mock with no services: every request fails with `NotGranted`, as on a
    /// host where the tenant configured none.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answer requests to `service` with `handler`.
    pub fn route(
        self,
        service: impl Into<String>,
        handler: impl Fn(&Request) -> Result<Response, DelegateError> + 'static,
    ) -> Self {
        self.inner
            .borrow_mut()
            .routes
            .push((service.into(), Box::new(handler)));
        self
    }

    /// Every request made so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.borrow().requests.clone()
    }

    /// Every log line so far, as `(level, message)`.
    pub fn logs(&self) -> Vec<(String, String)> {
        self.inner.borrow().logs.clone()
    }

    /// Every progress report so far, in order.
    pub fn progress(&self) -> Vec<ProgressReport> {
        self.inner.borrow().progress.clone()
    }

    /// Declare what the client can be asked for (default: everything).
    pub fn client(self, client: ClientCapabilities) -> Self {
        self.inner.borrow_mut().client = client;
        self
    }

    /// Answer the request under `key` with `result`: the client's JSON result
    /// (`{"action": "accept", "content": {...}}` for an elicitation, a
    /// `CreateMessageResult` for sampling, `{"roots": [...]}` for roots).
    pub fn answer(self, key: impl Into<String>, result: serde_json::Value) -> Self {
        self.inner
            .borrow_mut()
            .answers
            .insert(key.into(), InputResponse::Answered(result.to_string()));
        self
    }

    /// Answer the request under `key` with "could not be put to the client".
    pub fn unavailable(self, key: impl Into<String>, reason: impl Into<String>) -> Self {
        self.inner
            .borrow_mut()
            .answers
            .insert(key.into(), InputResponse::Unavailable(reason.into()));
        self
    }

    fn client_capabilities(&self) -> ClientCapabilities {
        self.inner.borrow().client
    }

    fn canned(&self, key: &str) -> Option<InputResponse> {
        self.inner.borrow().answers.get(key).cloned()
    }

    pub(crate) fn record_progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        self.inner.borrow_mut().progress.push(ProgressReport {
            progress,
            total,
            message: message.map(str::to_string),
        });
    }

    pub(crate) fn fetch(&self, request: Request) -> Result<Response, DelegateError> {
        self.inner.borrow_mut().requests.push(request.clone());
        let inner = self.inner.borrow();
        let handler = inner
            .routes
            .iter()
            .find(|(service, _)| *service == request.service)
            .map(|(_, h)| h)
            .ok_or_else(|| {
                DelegateError::NotGranted(format!(
                    "no mock route for service `{}`",
                    request.service
                ))
            })?;
        handler(&request)
    }

    pub(crate) fn record_log(&self, level: &str, message: &str) {
        self.inner
            .borrow_mut()
            .logs
            .push((level.to_string(), message.to_string()));
    }
}

/// An envelope for tests: user `test-user` in tenant `test` (issuer
/// `https://issuer.test`), no scopes, no delegations. Its fields are public; change what your test needs.
pub fn envelope() -> Envelope {
    Envelope {
        envelope_id: "test-envelope".into(),
        tenant: "test".into(),
        actor: Actor {
            kind: ActorKind::User,
            subject: "test-user".into(),
            tenant: "test".into(),
            issuer: "https://issuer.test".into(),
        },
        agent: Agent::default(),
        session_id: None,
        trace_id: "test-trace".into(),
        tool: "test".into(),
        scopes: Vec::new(),
        delegations: Vec::new(),
        issued_at: 0,
        expires_at: u64::MAX,
    }
}

impl Ctx {
    /// A context for a native unit test: the first round of a call, with
    /// `envelope` as identity, `mock` for services, the mock's client
    /// capabilities, no answers and no state.
    pub fn testing(envelope: Envelope, mock: MockDelegate) -> Ctx {
        let client = mock.client_capabilities();
        Ctx::new(
            Backend::Mock(mock),
            Some(envelope),
            client,
            Vec::new(),
            None,
        )
    }

    /// The next round after this one ended with `asked`: a fresh context
    /// (same envelope, mock and client) with the state `asked` carries and the
    /// mock's answers to the keys it asked (keys the mock has no answer for
    /// stay unanswered).
    pub fn next_round(&self, asked: &InputRequired) -> Ctx {
        let Some(mock) = self.mock().cloned() else {
            return Ctx::testing(self.envelope().clone(), MockDelegate::new());
        };
        let responses = asked
            .keys()
            .into_iter()
            .filter_map(|k| mock.canned(k).map(|r| (k.to_string(), r)))
            .collect();
        Ctx::new(
            Backend::Mock(mock),
            Some(self.envelope().clone()),
            self.client(),
            responses,
            asked.state_bytes(),
        )
    }

    /// This context, with the client declaring `client`.
    pub fn with_client(mut self, client: ClientCapabilities) -> Ctx {
        self.set_client(client);
        self
    }

    /// This context, with `result` (the client's JSON result) as the answer under `key`.
    pub fn with_answer(mut self, key: impl Into<String>, result: serde_json::Value) -> Ctx {
        self.set_response(key.into(), InputResponse::Answered(result.to_string()));
        self
    }

    /// This context, with "could not be put to the client" as the answer under `key`.
    pub fn with_unavailable(mut self, key: impl Into<String>, reason: impl Into<String>) -> Ctx {
        self.set_response(key.into(), InputResponse::Unavailable(reason.into()));
        self
    }
}

/// How one round of a tool call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done, with this output.
    Complete(ToolOutput),
    /// Asking the client first.
    InputRequired(InputRequired),
    /// Failed.
    Failed(ToolError),
}

impl Outcome {
    /// How a tool function's result ends the round, as the export glue sees it.
    pub fn of<R: IntoToolOutput>(result: Result<R, ToolError>) -> Self {
        match result.and_then(IntoToolOutput::into_tool_output) {
            Ok(output) => Outcome::Complete(output),
            Err(ToolError::__InputRequired(asked)) => Outcome::InputRequired(asked),
            Err(e) => Outcome::Failed(e),
        }
    }

    /// The output, when complete.
    pub fn output(&self) -> Option<&ToolOutput> {
        match self {
            Outcome::Complete(o) => Some(o),
            _ => None,
        }
    }

    /// The text blocks of the output, joined by newlines, when complete.
    pub fn text(&self) -> Option<String> {
        let output = self.output()?;
        let texts: Vec<&str> = output
            .content
            .iter()
            .filter_map(|c| match c {
                Content::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        Some(texts.join("\n"))
    }

    /// What the round asked for, when it asked.
    pub fn input_required(&self) -> Option<&InputRequired> {
        match self {
            Outcome::InputRequired(i) => Some(i),
            _ => None,
        }
    }

    /// The error, when it failed.
    pub fn error(&self) -> Option<&ToolError> {
        match self {
            Outcome::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// What [`run`] saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// How the last round ended.
    pub outcome: Outcome,
    /// What each round that asked for input asked, in order (the last one too,
    /// when the mock had no answer for it).
    pub asked: Vec<InputRequired>,
}

/// Run `tool` round after round as the host would: each round gets a fresh
/// context with the previous round's state and the mock's answers to what it
/// asked. Stops when a round completes or fails, when it asks for a key the
/// mock has no answer for (the outcome is then that request), or after
/// [`MAX_ROUNDS`] rounds (then it fails with `Internal`).
pub fn run<R, F>(envelope: Envelope, mock: &MockDelegate, mut tool: F) -> Run
where
    R: IntoToolOutput,
    F: FnMut(&Ctx) -> Result<R, ToolError>,
{
    let mut asked = Vec::new();
    let mut ctx = Ctx::testing(envelope, mock.clone());
    for _ in 0..MAX_ROUNDS {
        let request = match Outcome::of(tool(&ctx)) {
            Outcome::InputRequired(request) => request,
            done => {
                return Run {
                    outcome: done,
                    asked,
                };
            }
        };
        asked.push(request.clone());
        if request.keys().iter().any(|k| mock.canned(k).is_none()) {
            return Run {
                outcome: Outcome::InputRequired(request),
                asked,
            };
        }
        ctx = ctx.next_round(&request);
    }
    Run {
        outcome: Outcome::Failed(ToolError::Internal(format!(
            "the tool still asked for input after {MAX_ROUNDS} rounds"
        ))),
        asked,
    }
}
