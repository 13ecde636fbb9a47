//! The MCP protocol layer: the only module that names rmcp. Serves one tenant's
//! catalog over Streamable HTTP (both protocol eras), taking the caller from the
//! [`Principal`] the edge attached to the request.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, CustomNotification,
    ElicitRequest, ElicitRequestParams, ErrorCode, Implementation, InputRequest, InputRequests,
    InputRequiredResult, ListToolsResult, PaginatedRequestParams, ProtocolVersion,
    ServerCapabilities, ServerConfig, ServerNotification, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::edge::{HostSession, Principal, SessionControl, TraceContext};
use crate::invoke::{Call, InvokeError, TenantInvoker, UrlElicitation};
use crate::registry::InstalledTool;
use crate::sandbox::Content;

/// Serves one tenant: translates MCP requests to [`TenantInvoker`] calls and
/// their outcomes back.
#[derive(Clone)]
pub struct McpHandler {
    invoker: Arc<TenantInvoker>,
}

impl McpHandler {
    /// A handler for one tenant's pipeline.
    pub fn new(invoker: Arc<TenantInvoker>) -> Self {
        McpHandler { invoker }
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
    fn input_required(
        &self,
        elicitation: UrlElicitation,
        context: &RequestContext<RoleServer>,
        waiter: &str,
    ) -> Result<CallToolResponse, McpError> {
        let url_capable = context
            .client_capabilities()
            .and_then(|c| c.elicitation)
            .is_some_and(|e| e.url.is_some());
        if !url_capable {
            // A client that cannot show a URL elicitation still shows a
            // tool error: the user can follow the link from there.
            return Ok(error_result(format!(
                "{} Open {} to connect, then try again.",
                elicitation.message, elicitation.url
            ))
            .into());
        }
        if stateless_era(context) {
            let mut requests = InputRequests::new();
            requests.insert(
                elicitation.id.clone(),
                InputRequest::Elicitation(ElicitRequest::new(
                    ElicitRequestParams::UrlElicitationParams {
                        meta: None,
                        message: elicitation.message,
                        url: elicitation.url,
                        elicitation_id: elicitation.id,
                    },
                )),
            );
            return Ok(InputRequiredResult::from_input_requests(requests).into());
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
}

impl ServerHandler for McpHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
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
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = caller(&context)?;
        // A retry after the user declined (or dismissed) what was asked
        // ends here: asking again would loop.
        if let Some(responses) = &request.input_responses
            && responses.values().any(|r| {
                matches!(
                    r.get("action").and_then(|a| a.as_str()),
                    Some("decline" | "cancel")
                )
            })
        {
            return Ok(error_result(
                "The user declined what this tool asked for, so it did not run.".into(),
            )
            .into());
        }
        let outcome = self
            .invoker
            .call(Call {
                principal: &caller.principal,
                session: caller.session.as_ref(),
                trace: &caller.trace,
                tool: request.name.as_ref(),
                arguments: request.arguments.unwrap_or_default(),
            })
            .await;
        let result = match outcome {
            Ok(output) => {
                let content = output
                    .content
                    .into_iter()
                    .map(|c| match c {
                        Content::Text(t) | Content::Json(t) => ContentBlock::text(t),
                        Content::Image { data, mime_type } => {
                            use base64::Engine;
                            let b64 = base64::engine::general_purpose::STANDARD.encode(data);
                            ContentBlock::image(b64, mime_type)
                        }
                    })
                    .collect();
                let mut result = CallToolResult::success(content);
                result.structured_content = output.structured;
                result
            }
            Err(InvokeError::UnknownTool(name)) => {
                return Err(McpError::invalid_params(
                    format!("unknown tool `{name}`"),
                    None,
                ));
            }
            Err(InvokeError::AuditUnavailable) => {
                return Err(McpError::internal_error(
                    InvokeError::AuditUnavailable.to_string(),
                    None,
                ));
            }
            Err(InvokeError::InputRequired(elicitation)) => {
                let waiter = caller.session.as_ref().map_or("", |s| s.id());
                return self.input_required(elicitation, &context, waiter);
            }
            Err(InvokeError::Call(e)) => error_result(e.to_string()),
        };
        Ok(result.into())
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
    config.allowed_hosts = settings.allowed_hosts;
    config.cancellation_token = settings.shutdown;
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = Some(settings.session_idle);
    let manager = Arc::new(manager);
    let service = StreamableHttpService::new(move || Ok(handler.clone()), manager.clone(), config);
    (
        axum::Router::new().fallback_service(service),
        Arc::new(Sessions(manager)),
    )
}
