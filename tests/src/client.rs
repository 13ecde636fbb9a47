//! A real MCP client (rmcp) for tests: connect with a bearer token in either
//! protocol era.

use rmcp::model::ProtocolVersion;
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

/// A connected client.
pub type Client = RunningService<RoleClient, ()>;

/// Connect to `url` with `token`: `initialize` for 2025-11-25, `server/discover`
/// for 2026-07-28 and later.
pub async fn connect(url: &str, token: &str, era: &ProtocolVersion) -> Client {
    connect_with(url, token, era, ()).await
}

/// The names of the tools `client` may see, sorted.
pub async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

/// POST one stateless `tools/call`; return the `traceparent` the host sent
/// back and the body.
pub async fn call(url: &str, token: &str, tool: &str, args: serde_json::Value) -> (String, String) {
    try_call(url, token, tool, args)
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool} at {url}: {e}"))
}

/// [`call`], returning transport errors (a server that is starting or gone).
pub async fn try_call(
    url: &str,
    token: &str,
    tool: &str,
    args: serde_json::Value,
) -> Result<(String, String), reqwest::Error> {
    call_with_meta(url, token, tool, args, serde_json::json!({})).await
}

/// [`try_call`] with `extra` merged into the request's `_meta` (a progress
/// token, a log level, client capabilities).
pub async fn call_with_meta(
    url: &str,
    token: &str,
    tool: &str,
    args: serde_json::Value,
    extra: serde_json::Value,
) -> Result<(String, String), reqwest::Error> {
    let mut meta = serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    if let (Some(meta), Some(extra)) = (meta.as_object_mut(), extra.as_object()) {
        meta.extend(extra.clone());
    }
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": args, "_meta": meta}
        }))
        .send()
        .await?;
    let trace = resp
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((trace, resp.text().await?))
}

/// A raw legacy (2025-11-25) `initialize` request (JSON-RPC id 41) with
/// `capabilities`, as a client sends it before it has a session.
pub fn legacy_initialize(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    capabilities: serde_json::Value,
) -> reqwest::RequestBuilder {
    http.post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&serde_json::json!({
            "jsonrpc": "2.0", "id": 41, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": capabilities,
                       "clientInfo": {"name": "airlock-tests", "version": "1"}}
        }))
}

/// Connect like [`connect`], with `handler` answering what the server asks
/// (elicitation, sampling, roots) and receiving its notifications.
pub async fn connect_with<H: rmcp::ClientHandler>(
    url: &str,
    token: &str,
    era: &ProtocolVersion,
    handler: H,
) -> RunningService<RoleClient, H> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token),
    );
    let lifecycle = if *era == ProtocolVersion::V_2025_11_25 {
        ClientLifecycleMode::Initialize
    } else {
        ClientLifecycleMode::Discover {
            preferred_versions: vec![era.clone()],
        }
    };
    handler
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .unwrap_or_else(|e| panic!("connect to {url} in era {era}: {e}"))
}
