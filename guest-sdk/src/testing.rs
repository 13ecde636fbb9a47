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

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use crate::ctx::Ctx;
use crate::delegate::{DelegateError, Request, Response};
use crate::envelope::{Actor, ActorKind, Agent, Envelope};

type Handler = Box<dyn Fn(&Request) -> Result<Response, DelegateError>>;

#[derive(Default)]
struct Inner {
    routes: Vec<(String, Handler)>,
    requests: Vec<Request>,
    logs: Vec<(String, String)>,
}

/// A stand-in for the host's delegation: answers requests per service and
/// records every request and log line. Clones share state.
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

/// An envelope for tests: user `test-user` in tenant `test`, no scopes, no
/// delegations. Its fields are public; change what your test needs.
pub fn envelope() -> Envelope {
    Envelope {
        envelope_id: "test-envelope".into(),
        tenant: "test".into(),
        actor: Actor {
            kind: ActorKind::User,
            subject: "test-user".into(),
            tenant: "test".into(),
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
    /// A context for a native unit test: `envelope` as identity, `mock` for services.
    pub fn testing(envelope: Envelope, mock: MockDelegate) -> Ctx {
        Ctx::with_mock(envelope, mock)
    }
}
