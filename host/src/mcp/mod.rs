//! The MCP protocol layer: the only module that names rmcp. Serves one tenant's
//! catalog over Streamable HTTP (both protocol eras), taking the caller from the
//! [`Principal`] the edge attached to the request.
// Logging, sampling and roots are deprecated by SEP-2577 but part of both
// protocol eras airlock serves.
#![allow(deprecated)]

mod content;
mod events;
mod input;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
    CustomNotification, ErrorCode, Implementation, ListToolsResult, LoggingLevel,
    PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig, ServerNotification,
    SetLevelRequestMethod, SetLevelRequestParams, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::edge::{HostSession, Principal, SessionControl, TraceContext};
use crate::invoke::{Asked, Call, Input, InvokeError, TenantInvoker};
use crate::registry::InstalledTool;
use crate::sandbox::{CallEvents, InputResponse};

/// Most rounds one 2025-11-25 call may take asking the client.
const MAX_LEGACY_ROUNDS: usize = 8;
/// Most requests one 2025-11-25 call may put to the client, over all rounds.
const MAX_LEGACY_REQUESTS: usize = 32;
/// How long `tools/list` may be served from a client's cache (2026-07-28).
const TOOLS_LIST_TTL: Duration = Duration::from_secs(60);

/// Serves one tenant: translates MCP requests to [`TenantInvoker`] calls and
/// their outcomes back. One value per legacy session (and per stateless
/// request), holding that session's log level.
#[derive(Clone)]
pub struct McpHandler {
    invoker: Arc<TenantInvoker>,
    /// The level `logging/setLevel` chose for this session; nothing is
    /// forwarded before it is set.
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
    /// How long a 2025-11-25 call may spend on everything it asks the
    /// client within the call (the request timeout).
    input_timeout: Duration,
}

impl McpHandler {
    /// A handler for one tenant's pipeline.
    pub fn new(invoker: Arc<TenantInvoker>) -> Self {
        McpHandler {
            invoker,
            log_level: Arc::default(),
            input_timeout: Duration::from_secs(30),
        }
    }

    /// Spend at most `timeout` on all answers from the client within a call.
    pub fn with_input_timeout(mut self, timeout: Duration) -> Self {
        self.input_timeout = timeout;
        self
    }

    /// The same tenant, with a session of its own (its own log level).
    fn for_session(&self) -> Self {
        McpHandler {
            invoker: self.invoker.clone(),
            log_level: Arc::default(),
            input_timeout: self.input_timeout,
        }
    }
}

impl std::fmt::Debug for McpHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpHandler")
            .field("tenant", &self.invoker.tenant())
            .finish_non_exhaustive()
    }
}

/// What the edge attached to the request: the principal, the request's
/// trace, and the host-issued session when there is one.
struct Caller {
    principal: Principal,
    trace: TraceContext,
    session: Option<HostSession>,
}

fn caller(ctx: &RequestContext<RoleServer>) -> Result<Caller, McpError> {
    let parts = ctx
        .extensions
        .get::<axum::http::request::Parts>()
        .ok_or_else(|| McpError::internal_error("request context missing", None))?;
    let principal = parts
        .extensions
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| McpError::internal_error("request is not authenticated", None))?;
    let trace = parts
        .extensions
        .get::<TraceContext>()
        .cloned()
        .ok_or_else(|| McpError::internal_error("request has no trace context", None))?;
    Ok(Caller {
        principal,
        trace,
        session: parts.extensions.get::<HostSession>().cloned(),
    })
}

fn to_tool(t: &InstalledTool) -> Tool {
    let d = &t.descriptor;
    let object = |v: &serde_json::Value| v.as_object().cloned().unwrap_or_default();
    let mut tool = Tool::new(
        d.name.clone(),
        d.description.clone(),
        object(&d.input_schema),
    );
    if let Some(title) = &d.title {
        tool = tool.with_title(title.clone());
    }
    if let Some(schema) = &d.output_schema {
        tool = tool.with_raw_output_schema(Arc::new(object(schema)));
    }
    let a = &d.annotations;
    if a.read_only_hint.is_some()
        || a.destructive_hint.is_some()
        || a.idempotent_hint.is_some()
        || a.open_world_hint.is_some()
    {
        tool = tool.with_annotations(ToolAnnotations::from_raw(
            None,
            a.read_only_hint,
            a.destructive_hint,
            a.idempotent_hint,
            a.open_world_hint,
        ));
    }
    tool
}

fn error_result(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

/// The JSON-RPC error a 2025-11-25 server answers when the user must first
/// complete URL elicitations.
const URL_ELICITATION_REQUIRED: i32 = -32042;

/// Whether this request speaks the stateless 2026-07-28 revision (or later).
fn stateless_era(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

impl McpHandler {
    /// The user must connect an account: ask in the way the caller's
    /// protocol era and declared capabilities allow.
    fn connect_required(
        &self,
        asked: Asked,
        context: &RequestContext<RoleServer>,
        waiter: &str,
    ) -> Result<CallToolResponse, McpError> {
        let Some(elicitation) = asked.connect.clone() else {
            return Err(McpError::internal_error("not a connect request", None));
        };
        let client = input::client_capabilities(context);
        if !client.elicitation_url {
            // A client that cannot show a URL elicitation still shows a
            // tool error: the user can follow the link from there.
            return Ok(error_result(format!(
                "{} Open {} to connect, then try again.",
                elicitation.message, elicitation.url
            ))
            .into());
        }
        if stateless_era(context) {
            return match input::input_required_result(asked, client) {
                Ok(result) => Ok(result.into()),
                Err(input::Refused::Protocol(e)) => Err(e),
                Err(input::Refused::Tool(message)) => Ok(error_result(message).into()),
            };
        }
        // 2025-11-25: the error, then a completion notification on the
        // session once the user has connected.
        let peer = context.peer.clone();
        let id = elicitation.id.clone();
        self.invoker.on_elicitation_complete(
            &elicitation.id,
            waiter,
            Box::new(move || {
                let notification = ServerNotification::CustomNotification(CustomNotification::new(
                    "notifications/elicitation/complete",
                    Some(serde_json::json!({ "elicitationId": id })),
                ));
                tokio::spawn(async move {
                    let _ = peer.send_notification(notification).await;
                });
            }),
        );
        Err(McpError::new(
            ErrorCode(URL_ELICITATION_REQUIRED),
            "This request requires more information.",
            Some(serde_json::json!({
                "elicitations": [{
                    "mode": "url",
                    "elicitationId": elicitation.id,
                    "url": elicitation.url,
                    "message": elicitation.message,
                }]
            })),
        ))
    }

    /// The level the client asked log lines to be forwarded at, if any:
    /// the request's own (2026-07-28) or the session's (2025-11-25).
    fn log_level(&self, context: &RequestContext<RoleServer>) -> Option<LoggingLevel> {
        if stateless_era(context) {
            context.meta.log_level()
        } else {
            *self
                .log_level
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// Run the call's rounds: one in 2026-07-28 (the client drives the
    /// next), as many as the tool needs (bounded) in 2025-11-25.
    async fn run_call(
        &self,
        request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
        events: Option<Arc<dyn CallEvents>>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = caller(context)?;
        let stateless = stateless_era(context);
        let client = input::client_capabilities(context);
        let mut input = retry_input(&request)?;
        let arguments = request.arguments.unwrap_or_default();
        // Everything a legacy call asks the client fits in the request's time.
        let deadline = tokio::time::Instant::now() + self.input_timeout;
        let mut requests_made = 0usize;
        for _round in 0..MAX_LEGACY_ROUNDS {
            let outcome = self
                .invoker
                .call(Call {
                    principal: &caller.principal,
                    session: caller.session.as_ref(),
                    trace: &caller.trace,
                    tool: request.name.as_ref(),
                    arguments: &arguments,
                    client,
                    input,
                    events: events.clone(),
                })
                .await;
            let asked = match outcome {
                Ok(output) => {
                    let mut content = Vec::with_capacity(output.content.len());
                    for block in output.content {
                        match content::block(block) {
                            Ok(block) => content.push(block),
                            Err(message) => return Ok(error_result(message).into()),
                        }
                    }
                    let mut result = CallToolResult::success(content);
                    result.structured_content = output.structured;
                    return Ok(result.into());
                }
                Err(InvokeError::UnknownTool(name)) => {
                    return Err(McpError::invalid_params(
                        format!("unknown tool `{name}`"),
                        None,
                    ));
                }
                Err(e @ (InvokeError::AuditUnavailable | InvokeError::InputUnavailable)) => {
                    return Err(McpError::internal_error(e.to_string(), None));
                }
                Err(InvokeError::BadRequestState(e)) => {
                    return Err(McpError::invalid_params(e.to_string(), None));
                }
                Err(e @ InvokeError::Declined) => return Ok(error_result(e.to_string()).into()),
                Err(InvokeError::Call(e)) => return Ok(error_result(e.to_string()).into()),
                Err(InvokeError::InputRequired(asked)) => *asked,
            };
            if asked.connect.is_some() {
                let waiter = caller.session.as_ref().map_or("", |s| s.id());
                return self.connect_required(asked, context, waiter);
            }
            if stateless {
                return match input::input_required_result(asked, client) {
                    Ok(result) => Ok(result.into()),
                    Err(input::Refused::Protocol(e)) => Err(e),
                    Err(input::Refused::Tool(message)) => Ok(error_result(message).into()),
                };
            }
            requests_made = requests_made.saturating_add(asked.requests.len());
            if requests_made > MAX_LEGACY_REQUESTS {
                return Ok(error_result(format!(
                    "the tool asked the client more than {MAX_LEGACY_REQUESTS} things in one call, so it was stopped"
                ))
                .into());
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(error_result(
                    "the call ran out of time waiting for the client's answers".into(),
                )
                .into());
            }
            let responses = input::ask_client(&asked, client, context, deadline).await;
            input = Input {
                responses,
                request_state: Some(asked.request_state),
            };
        }
        Ok(error_result(format!(
            "the tool asked for input more than {MAX_LEGACY_ROUNDS} times in one call, so it was stopped"
        ))
        .into())
    }
}

/// The answers and state a 2026-07-28 retry carries; each answer must be a
/// JSON object (an MCP result).
fn retry_input(request: &CallToolRequestParams) -> Result<Input, McpError> {
    let mut responses = Vec::new();
    if let Some(given) = &request.input_responses {
        if given.len() > crate::sandbox::MAX_INPUT_REQUESTS * 4 {
            return Err(McpError::invalid_params(
                "inputResponses has more entries than any request asked for",
                None,
            ));
        }
        for (key, value) in given {
            if !value.is_object() {
                return Err(McpError::invalid_params(
                    format!(
                        "inputResponses.{} must be a result object",
                        key.chars().take(64).collect::<String>()
                    ),
                    None,
                ));
            }
            responses.push((key.clone(), InputResponse::Answered(value.clone())));
        }
    }
    Ok(Input {
        responses,
        request_state: request.request_state.clone(),
    })
}

impl ServerHandler for McpHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new("airlock", env!("CARGO_PKG_VERSION")))
        .with_instructions(format!(
            "Tools of tenant `{}`, run in WebAssembly sandboxes on the caller's behalf.",
            self.invoker.tenant()
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let caller = caller(&context)?;
        let tools = self.invoker.tools(&caller.principal).map(to_tool).collect();
        let mut result = ListToolsResult::with_all_items(tools);
        if stateless_era(&context) {
            // The list depends on the caller's scopes: only their own client
            // may cache it.
            result.ttl_ms = Some(TOOLS_LIST_TTL.as_millis() as u64);
            result.cache_scope = Some(CacheScope::Private);
        }
        Ok(result)
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        // Removed in 2026-07-28: the level travels with each request.
        if stateless_era(&context) {
            return Err(McpError::method_not_found::<SetLevelRequestMethod>());
        }
        *self
            .log_level
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(request.level);
        Ok(())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let progress_token = context.meta.get_progress_token();
        let forwarder = events::Forwarder::start(
            context.peer.clone(),
            request.name.as_ref(),
            progress_token,
            self.log_level(&context),
        );
        let (events, sending) = match forwarder {
            Some((forwarder, sending)) => (Some(forwarder as Arc<dyn CallEvents>), Some(sending)),
            None => (None, None),
        };
        let response = self.run_call(request, &context, events).await;
        // Every progress report and log line goes out before the response.
        if let Some(sending) = sending {
            sending.finish().await;
        }
        response
    }
}

/// Settings for the Streamable HTTP transport.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// Host names (and `host:port`) accepted in the `Host` header.
    pub allowed_hosts: Vec<String>,
    /// Cancelled on shutdown.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// A legacy session with no activity this long ends.
    pub session_idle: std::time::Duration,
    /// How long to wait for the client's answer to a request the host makes
    /// within a call (2025-11-25); at most the request timeout.
    pub input_timeout: std::time::Duration,
}

/// Ends sessions of one tenant's session manager.
struct Sessions(Arc<LocalSessionManager>);

impl SessionControl for Sessions {
    fn close(&self, id: String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        use rmcp::transport::streamable_http_server::session::SessionManager;
        let manager = self.0.clone();
        Box::pin(async move {
            let _ = manager.close_session(&id.into()).await;
        })
    }
}

/// The Streamable HTTP service for one tenant, as an axum router, and the
/// control that ends its legacy sessions.
pub fn service(
    handler: McpHandler,
    settings: TransportSettings,
) -> (axum::Router, Arc<dyn SessionControl>) {
    let mut config = StreamableHttpServerConfig::default();
    config.legacy_session_mode = true;
    config.json_response = true;
    config.allowed_hosts = settings.allowed_hosts;
    config.cancellation_token = settings.shutdown;
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = Some(settings.session_idle);
    let manager = Arc::new(manager);
    let handler = handler.with_input_timeout(settings.input_timeout);
    let service =
        StreamableHttpService::new(move || Ok(handler.for_session()), manager.clone(), config);
    (
        axum::Router::new().fallback_service(service),
        Arc::new(Sessions(manager)),
    )
}
