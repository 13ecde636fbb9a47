//! The MCP protocol layer: the only module that names rmcp. Serves one tenant's
//! catalog over Streamable HTTP (both protocol eras), taking the caller from the
//! [`Principal`] the edge attached to the request.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::delegate::Delegate;
use crate::edge::Principal;
use crate::envelope::{Envelope, EnvelopeClaims, random_id};
use crate::registry::{InstalledTool, TenantCatalog};
use crate::sandbox::{CallError, CallRequest, Content, Sandbox};

/// Extra lifetime given to an envelope beyond the tool's own deadline.
const ENVELOPE_SLACK: Duration = Duration::from_secs(30);

/// Serves one tenant.
#[derive(Clone)]
pub struct McpHandler {
    catalog: Arc<TenantCatalog>,
    sandbox: Arc<Sandbox>,
    delegate: Arc<dyn Delegate>,
}

impl McpHandler {
    /// A handler for `catalog`.
    pub fn new(
        catalog: Arc<TenantCatalog>,
        sandbox: Arc<Sandbox>,
        delegate: Arc<dyn Delegate>,
    ) -> Self {
        McpHandler {
            catalog,
            sandbox,
            delegate,
        }
    }
}

impl std::fmt::Debug for McpHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpHandler")
            .field("tenant", &self.catalog.id())
            .finish_non_exhaustive()
    }
}

/// The principal the edge attached, and the request's session id.
fn caller(ctx: &RequestContext<RoleServer>) -> Result<(Principal, Option<String>), McpError> {
    let parts = ctx
        .extensions
        .get::<axum::http::request::Parts>()
        .ok_or_else(|| McpError::internal_error("request context missing", None))?;
    let principal = parts
        .extensions
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| McpError::internal_error("request is not authenticated", None))?;
    let session = parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((principal, session))
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

impl ServerHandler for McpHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("airlock", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "Tools of tenant `{}`, run in WebAssembly sandboxes on the caller's behalf.",
                self.catalog.id()
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let (principal, _) = caller(&context)?;
        let tools = self
            .catalog
            .visible(principal.scopes())
            .map(to_tool)
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let (principal, session) = caller(&context)?;
        let name = request.name.as_ref();
        let Some(tool) = self.catalog.find(name, principal.scopes()) else {
            return Err(McpError::invalid_params(
                format!("unknown tool `{name}`"),
                None,
            ));
        };
        let arguments = serde_json::Value::Object(request.arguments.unwrap_or_default());
        let lifetime = tool.component.limits().timeout + ENVELOPE_SLACK;
        let envelope = Envelope::mint(
            EnvelopeClaims {
                tenant: principal.tenant().to_string(),
                actor_kind: principal.actor_kind(),
                subject: principal.subject().to_string(),
                client_id: principal.client_id().map(str::to_string),
                agent_id: principal.agent_id().map(str::to_string),
                session_id: session,
                trace_id: random_id(),
                tool: name.to_string(),
                scopes: principal.scopes().iter().cloned().collect(),
                delegations: Vec::new(),
            },
            lifetime,
        );
        tracing::info!(
            tenant = %envelope.tenant(), tool = %name, trace_id = %envelope.trace_id(),
            envelope_id = %envelope.envelope_id(), "tool call"
        );
        let outcome = self
            .sandbox
            .call(
                &tool.component,
                CallRequest {
                    envelope: Arc::new(envelope),
                    arguments: arguments.to_string(),
                    delegate: self.delegate.clone(),
                },
            )
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
            Err(CallError::UnknownTool(name)) => {
                return Err(McpError::invalid_params(
                    format!("unknown tool `{name}`"),
                    None,
                ));
            }
            Err(e) => error_result(e.to_string()),
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
}

/// The Streamable HTTP service for one tenant, as an axum router.
pub fn service(handler: McpHandler, settings: TransportSettings) -> axum::Router {
    let mut config = StreamableHttpServerConfig::default();
    config.legacy_session_mode = true;
    config.allowed_hosts = settings.allowed_hosts;
    config.cancellation_token = settings.shutdown;
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new().fallback_service(service)
}
