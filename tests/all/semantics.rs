//! Full MCP tool semantics through the sandbox (contract 0.2.0), driven with
//! rmcp's client in both protocol eras against the conformance fixture
//! component: content types, progress, log forwarding, input rounds with a
//! sealed `requestState` (2026-07-28) and requests within the call
//! (2025-11-25), capability checks, caching hints; and a 0.1.0 component
//! still working unchanged.
#![allow(deprecated)] // sampling, roots and logging are deprecated by SEP-2577 but still served

use std::sync::{Arc, Mutex};

use airlock_tests::client::{call_with_meta, connect_with};
use airlock_tests::guests;
use airlock_tests::idp::TestIdp;
use airlock_tests::server::TestServer;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ClientConfig,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    Implementation, InputRequest, InputRequiredResult, ListRootsResult, LoggingLevel,
    LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken, ProtocolVersion,
    RequestMetaObject, SetLevelRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient, RunningService};
use rmcp::{ClientHandler, ErrorData as McpError};
use serde_json::{Value, json};

const ERAS: [ProtocolVersion; 2] = [ProtocolVersion::V_2026_07_28, ProtocolVersion::V_2025_11_25];
const NEW: ProtocolVersion = ProtocolVersion::V_2026_07_28;
const OLD: ProtocolVersion = ProtocolVersion::V_2025_11_25;

/// A client that answers what it is asked and records what it receives.
#[derive(Clone)]
struct Answering {
    capabilities: Value,
    asked: Arc<Mutex<Vec<String>>>,
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    logs: Arc<Mutex<Vec<LoggingMessageNotificationParam>>>,
    elicit_action: &'static str,
    /// How long the client takes to answer an elicitation.
    delay: std::time::Duration,
}

impl Answering {
    fn with(capabilities: Value) -> Self {
        Answering {
            capabilities,
            asked: Arc::default(),
            progress: Arc::default(),
            logs: Arc::default(),
            elicit_action: "accept",
            delay: std::time::Duration::ZERO,
        }
    }

    fn everything() -> Self {
        Self::with(json!({"elicitation": {"form": {}, "url": {}}, "sampling": {}, "roots": {}}))
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

fn answer_for(schema: &Value) -> Value {
    let mut content = serde_json::Map::new();
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            let value = match (name.as_str(), property["type"].as_str()) {
                ("name", _) => json!("Alice"),
                ("username", _) => json!("testuser"),
                ("email", _) => json!("test@example.com"),
                ("color", _) => json!("blue"),
                (_, Some("boolean")) => json!(true),
                (_, Some("integer" | "number")) => json!(7),
                (_, Some("array")) => json!([]),
                _ => property
                    .get("enum")
                    .and_then(|e| e.get(0))
                    .cloned()
                    .unwrap_or(json!("x")),
            };
            content.insert(name.clone(), value);
        }
    }
    Value::Object(content)
}

impl ClientHandler for Answering {
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        self.asked.lock().unwrap().push("sampling".into());
        tokio::time::sleep(self.delay).await;
        assert!(!params.messages.is_empty());
        Ok(serde_json::from_value(json!({
            "role": "assistant",
            "content": {"type": "text", "text": "Paris is the capital."},
            "model": "test-model",
            "stopReason": "endTurn",
        }))
        .unwrap())
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        self.asked.lock().unwrap().push("roots".into());
        Ok(serde_json::from_value(
            json!({"roots": [{"uri": "file:///test/root", "name": "Test Root"}]}),
        )
        .unwrap())
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        self.asked.lock().unwrap().push("elicitation".into());
        tokio::time::sleep(self.delay).await;
        let request = serde_json::to_value(&request).unwrap();
        let content = answer_for(&request["requestedSchema"]);
        let answer = if self.elicit_action == "accept" {
            json!({"action": "accept", "content": content})
        } else {
            json!({"action": self.elicit_action})
        };
        Ok(serde_json::from_value(answer).unwrap())
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.logs.lock().unwrap().push(params);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            serde_json::from_value::<ClientCapabilities>(self.capabilities.clone()).unwrap(),
            Implementation::new("airlock-semantics-test", "1.0.0"),
        )
    }
}

type Client = RunningService<RoleClient, Answering>;

fn conformance_tenant(issuer: &str) -> String {
    format!(
        "[components.conformance]\npath = {path:?}\n\
         [components.v010]\npath = {v010:?}\n\
         [tenants.acme]\nissuers = [{{ issuer = {issuer:?}, jwks_min_refresh_ms = 0 }}]\n\
         scopes = [\"mcp\"]\n\
         [[tenants.acme.install]]\ncomponent = \"conformance\"\n\
         [[tenants.acme.install]]\ncomponent = \"v010\"\n",
        path = guests::CONFORMANCE,
        v010 = guests::V010,
    )
}

async fn start() -> (TestServer, TestIdp, String) {
    let idp = TestIdp::start("").await;
    let server = TestServer::start(&conformance_tenant(&idp.issuer)).await;
    let url = server.endpoint("acme");
    (server, idp, url)
}

async fn client(
    url: &str,
    idp: &TestIdp,
    user: &str,
    era: &ProtocolVersion,
    handler: Answering,
) -> Client {
    let token = idp.token(url, user, "mcp");
    connect_with(url, &token, era, handler).await
}

fn params(tool: &str, args: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(tool.to_string()).with_arguments(args.as_object().cloned().unwrap())
}

fn text_of(result: &CallToolResult) -> String {
    serde_json::to_string(&result.content).unwrap()
}

/// Alice's answer to `test_input_required_result_elicitation`.
fn alice_named() -> Value {
    json!({"user_name": {"action": "accept", "content": {"name": "Alice"}}})
}

/// The tool's greeting came back: the round ran with Alice's answer.
fn assert_greeted(result: &CallToolResult) {
    assert!(
        text_of(result).contains("Hello, Alice!"),
        "{}",
        text_of(result)
    );
}

async fn complete(client: &Client, p: CallToolRequestParams) -> CallToolResult {
    match client.call_tool_once(p).await.expect("tools/call") {
        CallToolResponse::Complete(result) => result,
        other => panic!("expected a complete result, got {other:?}"),
    }
}

async fn input_required(client: &Client, p: CallToolRequestParams) -> InputRequiredResult {
    match client.call_tool_once(p).await.expect("tools/call") {
        CallToolResponse::InputRequired(result) => result,
        other => panic!("expected an input-required result, got {other:?}"),
    }
}

fn error_code(e: rmcp::ServiceError) -> i32 {
    match e {
        rmcp::ServiceError::McpError(e) => e.code.0,
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}

#[tokio::test]
async fn every_content_type_reaches_the_client_in_both_eras() {
    let (_server, idp, url) = start().await;
    for era in &ERAS {
        let c = client(&url, &idp, "alice", era, Answering::everything()).await;
        let result = complete(&c, params("test_simple_text", json!({}))).await;
        assert!(text_of(&result).contains("\"type\":\"text\""), "{era}");

        let result = complete(&c, params("test_image_content", json!({}))).await;
        let blocks = serde_json::to_value(&result.content).unwrap();
        assert_eq!(blocks[0]["type"], "image", "{era}: {blocks}");
        assert_eq!(blocks[0]["mimeType"], "image/png");
        assert!(!blocks[0]["data"].as_str().unwrap().is_empty());

        let result = complete(&c, params("test_audio_content", json!({}))).await;
        let blocks = serde_json::to_value(&result.content).unwrap();
        assert_eq!(blocks[0]["type"], "audio", "{era}: {blocks}");
        assert_eq!(blocks[0]["mimeType"], "audio/wav");

        let result = complete(&c, params("test_embedded_resource", json!({}))).await;
        let blocks = serde_json::to_value(&result.content).unwrap();
        let resource = blocks
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "resource")
            .unwrap_or_else(|| panic!("{era}: no resource block in {blocks}"));
        assert_eq!(resource["resource"]["uri"], "test://embedded-resource");
        assert_eq!(resource["resource"]["mimeType"], "text/plain");
        assert!(resource["resource"]["text"].is_string());

        let result = complete(&c, params("test_multiple_content_types", json!({}))).await;
        let blocks = serde_json::to_value(&result.content).unwrap();
        let kinds: Vec<&str> = blocks
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert!(
            kinds.len() >= 3 && kinds.contains(&"text") && kinds.contains(&"image"),
            "{era}: {kinds:?}"
        );

        let result = complete(&c, params("test_error_handling", json!({}))).await;
        assert_eq!(result.is_error, Some(true), "{era}");
        c.cancel().await.unwrap();
    }
}

fn meta(progress: Option<&str>, level: Option<LoggingLevel>) -> RequestMetaObject {
    let mut meta = RequestMetaObject::new();
    if let Some(token) = progress {
        meta.set_progress_token(ProgressToken(rmcp::model::NumberOrString::String(
            token.into(),
        )));
    }
    if let Some(level) = level {
        meta.set_log_level(level);
    }
    meta
}

async fn settle() {
    // Notifications on a legacy session's GET stream may trail the response.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

/// Wait until `arrived` holds (notifications may trail the response), at
/// most 10 s.
async fn until(what: &str, arrived: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !arrived() {
        assert!(std::time::Instant::now() < deadline, "{what} never arrived");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn progress_goes_out_only_when_asked_and_in_order() {
    let (_server, idp, url) = start().await;
    // rmcp's client sends a progress token with every request.
    for era in &ERAS {
        let handler = Answering::everything();
        let c = client(&url, &idp, "alice", era, handler.clone()).await;
        complete(&c, params("test_tool_with_progress", json!({}))).await;
        until("progress", || handler.progress.lock().unwrap().len() >= 3).await;
        let progress = handler.progress.lock().unwrap().clone();
        assert!(progress.len() >= 3, "{era}: {progress:?}");
        assert!(
            progress.windows(2).all(
                |w| w[0].progress < w[1].progress && w[0].progress_token == w[1].progress_token
            ),
            "{era}: {progress:?}"
        );
        assert_eq!(progress.last().unwrap().total, Some(100.0));
        c.cancel().await.unwrap();
    }
    // A request without a progress token gets none; one with gets its own.
    let token = idp.token(&url, "alice", "mcp");
    let (_, body) = call_with_meta(
        &url,
        &token,
        "test_tool_with_progress",
        json!({}),
        json!({}),
    )
    .await
    .unwrap();
    assert!(!body.contains("notifications/progress"), "{body}");
    let (_, body) = call_with_meta(
        &url,
        &token,
        "test_tool_with_progress",
        json!({}),
        json!({"progressToken": "tok-1"}),
    )
    .await
    .unwrap();
    assert_eq!(body.matches("notifications/progress").count(), 3, "{body}");
    assert_eq!(
        body.matches("\"progressToken\":\"tok-1\"").count(),
        3,
        "{body}"
    );
    // Every notification precedes the result on the stream.
    let result_at = body.find("\"result\"").expect("a result");
    assert!(
        body.rfind("notifications/progress").unwrap() < result_at,
        "{body}"
    );
}

#[tokio::test]
async fn log_lines_go_out_at_or_above_the_level_asked_and_never_otherwise() {
    let (_server, idp, url) = start().await;

    // 2025-11-25: the session's level, from logging/setLevel.
    let handler = Answering::everything();
    let c = client(&url, &idp, "alice", &OLD, handler.clone()).await;
    complete(&c, params("test_tool_with_logging", json!({}))).await;
    settle().await;
    assert!(
        handler.logs.lock().unwrap().is_empty(),
        "logs before setLevel"
    );
    c.set_level(SetLevelRequestParams::new(LoggingLevel::Info))
        .await
        .expect("setLevel");
    complete(&c, params("test_tool_with_logging", json!({}))).await;
    until("log lines", || handler.logs.lock().unwrap().len() >= 3).await;
    let logs = handler.logs.lock().unwrap().clone();
    assert!(logs.len() >= 3, "{logs:?}");
    assert!(logs.iter().all(|l| l.level == LoggingLevel::Info));
    let text = serde_json::to_string(&logs).unwrap();
    assert!(text.contains("Tool execution started"), "{text}");
    // Host internals never appear: no trace ids, tenants or envelope ids.
    assert!(
        !text.contains("trace_id") && !text.contains("envelope"),
        "{text}"
    );
    handler.logs.lock().unwrap().clear();
    c.set_level(SetLevelRequestParams::new(LoggingLevel::Error))
        .await
        .expect("setLevel");
    complete(&c, params("test_tool_with_logging", json!({}))).await;
    settle().await;
    assert!(
        handler.logs.lock().unwrap().is_empty(),
        "info lines above an error level"
    );
    c.cancel().await.unwrap();

    // 2026-07-28: the request's own level.
    let handler = Answering::everything();
    let c = client(&url, &idp, "alice", &NEW, handler.clone()).await;
    complete(&c, params("test_tool_with_logging", json!({}))).await;
    assert!(
        handler.logs.lock().unwrap().is_empty(),
        "logs without a level"
    );
    let mut p = params("test_tool_with_logging", json!({}));
    p.meta = Some(meta(None, Some(LoggingLevel::Debug)));
    complete(&c, p).await;
    until("log lines", || handler.logs.lock().unwrap().len() >= 3).await;
    // logging/setLevel is not a 2026-07-28 method.
    let e = c
        .set_level(SetLevelRequestParams::new(LoggingLevel::Info))
        .await
        .expect_err("setLevel in 2026-07-28");
    assert_eq!(error_code(e), -32601);
    c.cancel().await.unwrap();
}

fn with_answers(
    tool: &str,
    asked: &InputRequiredResult,
    answers: Value,
    state: Option<String>,
) -> CallToolRequestParams {
    let mut p = params(tool, json!({}));
    p.input_responses = Some(serde_json::from_value(answers).unwrap());
    p.request_state = state.or_else(|| asked.request_state.clone());
    p
}

#[tokio::test]
async fn input_rounds_carry_a_sealed_state_bound_to_the_caller() {
    let (_server, idp, url) = start().await;
    let alice = client(&url, &idp, "alice", &NEW, Answering::everything()).await;
    let tool = "test_input_required_result_elicitation";
    let asked = input_required(&alice, params(tool, json!({}))).await;
    let requests = asked.input_requests.clone().unwrap();
    let request = requests.get("user_name").expect("user_name asked");
    assert!(
        matches!(request, InputRequest::Elicitation(_)),
        "{request:?}"
    );
    let state = asked.request_state.clone().expect("a requestState");
    let answer = alice_named();

    let done = complete(&alice, with_answers(tool, &asked, answer.clone(), None)).await;
    assert_greeted(&done);

    // The same state again (a replayed "yes"): -32602, the tool does not run.
    let e = alice
        .call_tool_once(with_answers(tool, &asked, answer.clone(), None))
        .await
        .expect_err("a replayed state");
    let text = format!("{e:?}");
    assert_eq!(error_code(e), -32602);
    assert!(text.contains("already answered"), "{text}");

    // Tampered, truncated or junk state: -32602.
    for bad in [
        format!("{state}-TAMPERED"),
        state[..state.len() / 2].to_string(),
        "junk".into(),
    ] {
        let e = alice
            .call_tool_once(with_answers(tool, &asked, answer.clone(), Some(bad)))
            .await
            .expect_err("tampered state");
        assert_eq!(error_code(e), -32602);
    }
    // Another user's state: -32602 (bob replays alice's).
    let bob = client(&url, &idp, "bob", &NEW, Answering::everything()).await;
    let e = bob
        .call_tool_once(with_answers(tool, &asked, answer.clone(), None))
        .await
        .expect_err("another user's state");
    assert_eq!(error_code(e), -32602);
    // Another tool, or other arguments, with this state: -32602.
    let e = alice
        .call_tool_once(with_answers(
            "test_input_required_result_request_state",
            &asked,
            answer.clone(),
            None,
        ))
        .await
        .expect_err("another tool's state");
    assert_eq!(error_code(e), -32602);
    let mut other_args = with_answers(tool, &asked, answer.clone(), None);
    other_args.arguments = Some(json!({"extra": 1}).as_object().cloned().unwrap());
    let e = alice
        .call_tool_once(other_args)
        .await
        .expect_err("other arguments");
    assert_eq!(error_code(e), -32602);
    // An answer that is not an object: -32602.
    let e = alice
        .call_tool_once(with_answers(
            tool,
            &asked,
            json!({"user_name": 12345}),
            None,
        ))
        .await
        .expect_err("not an object");
    assert_eq!(error_code(e), -32602);
    // More answers than any round may ask for: -32602.
    let flood: serde_json::Map<String, Value> = (0..65)
        .map(|i| (format!("k{i}"), json!({"action": "accept", "content": {}})))
        .collect();
    let e = alice
        .call_tool_once(with_answers(tool, &asked, Value::Object(flood), None))
        .await
        .expect_err("too many answers");
    assert_eq!(error_code(e), -32602);
    // Alice through another application (another client_id): -32602, and
    // the state is not spent by the refusal.
    let fresh = input_required(&alice, params(tool, json!({}))).await;
    let mut claims = idp.claims(&url, "alice", "mcp");
    claims["client_id"] = json!("another-app");
    let other_app = connect_with(&url, &idp.sign(&claims), &NEW, Answering::everything()).await;
    let e = other_app
        .call_tool_once(with_answers(tool, &fresh, answer.clone(), None))
        .await
        .expect_err("another client's state");
    assert_eq!(error_code(e), -32602);
    // A wrong key: the tool asks again.
    input_required(
        &alice,
        with_answers(
            tool,
            &fresh,
            json!({"wrong_key": {"action": "accept", "content": {}}}),
            None,
        ),
    )
    .await;
}

#[tokio::test]
async fn the_tool_gets_its_own_state_back_over_several_rounds() {
    let (_server, idp, url) = start().await;
    let c = client(&url, &idp, "alice", &NEW, Answering::everything()).await;

    let tool = "test_input_required_result_request_state";
    let asked = input_required(&c, params(tool, json!({}))).await;
    let done = complete(
        &c,
        with_answers(
            tool,
            &asked,
            json!({"confirm": {"action": "accept", "content": {"ok": true}}}),
            None,
        ),
    )
    .await;
    assert!(text_of(&done).contains("state-ok"), "{}", text_of(&done));

    let tool = "test_input_required_result_multi_round";
    let first = input_required(&c, params(tool, json!({}))).await;
    assert!(first.input_requests.as_ref().unwrap().contains_key("step1"));
    let second = input_required(
        &c,
        with_answers(
            tool,
            &first,
            json!({"step1": {"action": "accept", "content": {"name": "Alice"}}}),
            None,
        ),
    )
    .await;
    assert!(
        second
            .input_requests
            .as_ref()
            .unwrap()
            .contains_key("step2")
    );
    assert_ne!(first.request_state, second.request_state);
    complete(
        &c,
        with_answers(
            tool,
            &second,
            json!({"step2": {"action": "accept", "content": {"color": "blue"}}}),
            None,
        ),
    )
    .await;

    let tool = "test_input_required_result_multiple_inputs";
    let asked = input_required(&c, params(tool, json!({}))).await;
    let keys: Vec<&String> = asked.input_requests.as_ref().unwrap().keys().collect();
    assert!(keys.len() >= 3, "{keys:?}");
    let done = complete(
        &c,
        with_answers(
            tool,
            &asked,
            json!({
                "user_name": {"action": "accept", "content": {"name": "Alice"}},
                "greeting": {"role": "assistant", "content": {"type": "text", "text": "Hi"}, "model": "m", "stopReason": "endTurn"},
                "client_roots": {"roots": [{"uri": "file:///test/root", "name": "Test Root"}]},
            }),
            None,
        ),
    )
    .await;
    assert_ne!(done.is_error, Some(true), "{}", text_of(&done));
}

#[tokio::test]
async fn undeclared_capabilities_are_never_requested() {
    let (_server, idp, url) = start().await;
    // Only sampling declared: the tool asks for sampling alone.
    let c = client(
        &url,
        &idp,
        "alice",
        &NEW,
        Answering::with(json!({"sampling": {}})),
    )
    .await;
    let asked = input_required(
        &c,
        params("test_input_required_result_capabilities", json!({})),
    )
    .await;
    for (key, request) in asked.input_requests.as_ref().unwrap() {
        assert!(
            matches!(request, InputRequest::CreateMessage(_)),
            "{key}: {request:?}"
        );
    }
    c.cancel().await.unwrap();

    // A tool that needs sampling, from a client without it: -32021 naming it.
    let c = client(&url, &idp, "alice", &NEW, Answering::with(json!({}))).await;
    let e = c
        .call_tool_once(params("test_missing_capability", json!({})))
        .await
        .expect_err("missing capability");
    match e {
        rmcp::ServiceError::McpError(e) => {
            assert_eq!(e.code.0, -32021);
            let data = e.data.expect("data");
            assert!(
                data["requiredCapabilities"]["sampling"].is_object(),
                "{data}"
            );
        }
        other => panic!("{other}"),
    }
    c.cancel().await.unwrap();

    // 2025-11-25: the tool is told, and says so in a tool error; the client is never asked.
    let handler = Answering::with(json!({}));
    let c = client(&url, &idp, "alice", &OLD, handler.clone()).await;
    let result = complete(&c, params("test_sampling", json!({"prompt": "hi"}))).await;
    assert_eq!(result.is_error, Some(true), "{}", text_of(&result));
    assert!(handler.asked().is_empty());
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn legacy_sessions_are_asked_within_the_call() {
    let (_server, idp, url) = start().await;
    let handler = Answering::everything();
    let c = client(&url, &idp, "alice", &OLD, handler.clone()).await;

    let result = complete(
        &c,
        params("test_elicitation", json!({"message": "Who are you?"})),
    )
    .await;
    assert!(
        text_of(&result).contains("testuser"),
        "{}",
        text_of(&result)
    );
    let result = complete(
        &c,
        params("test_sampling", json!({"prompt": "Capital of France?"})),
    )
    .await;
    assert!(text_of(&result).contains("Paris"), "{}", text_of(&result));
    let result = complete(
        &c,
        params("test_input_required_result_multiple_inputs", json!({})),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    let asked = handler.asked();
    for kind in ["elicitation", "sampling", "roots"] {
        assert!(
            asked.iter().any(|a| a == kind),
            "{kind} not asked: {asked:?}"
        );
    }
    // The SEP-1034 defaults and SEP-1330 enum shapes reach the client intact.
    complete(&c, params("test_elicitation_sep1034_defaults", json!({}))).await;
    complete(&c, params("test_elicitation_sep1330_enums", json!({}))).await;
    c.cancel().await.unwrap();

    // A declined elicitation is the tool's to handle.
    let mut declining = Answering::everything();
    declining.elicit_action = "decline";
    let c = client(&url, &idp, "alice", &OLD, declining).await;
    let result = complete(&c, params("test_elicitation", json!({"message": "Who?"}))).await;
    assert!(text_of(&result).contains("decline"), "{}", text_of(&result));
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn tools_list_carries_private_caching_hints_in_2026() {
    let (_server, idp, url) = start().await;
    for era in &ERAS {
        let c = client(&url, &idp, "alice", era, Answering::everything()).await;
        let list = c.list_tools(None).await.expect("tools/list");
        let names: Vec<String> = list.tools.iter().map(|t| t.name.to_string()).collect();
        assert!(
            names.iter().any(|n| n == "json_schema_2020_12_tool"),
            "{names:?}"
        );
        let schema = &list
            .tools
            .iter()
            .find(|t| t.name == "json_schema_2020_12_tool")
            .unwrap()
            .input_schema;
        assert!(
            schema.contains_key("$defs") && schema.contains_key("$schema"),
            "{schema:?}"
        );
        if *era == NEW {
            assert_eq!(list.ttl_ms, Some(60_000));
            assert_eq!(list.cache_scope, Some(rmcp::model::CacheScope::Private));
        } else {
            assert_eq!(list.ttl_ms, None);
        }
        c.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn a_component_built_against_0_1_0_works_as_before() {
    let (_server, idp, url) = start().await;
    for era in &ERAS {
        let handler = Answering::everything();
        let c = client(&url, &idp, "alice", era, handler.clone()).await;
        let result = complete(&c, params("echo", json!({"text": "old contract"}))).await;
        assert!(
            text_of(&result).contains("old contract"),
            "{era}: {}",
            text_of(&result)
        );
        let result = complete(&c, params("who", json!({}))).await;
        assert!(
            text_of(&result).contains("alice"),
            "{era}: {}",
            text_of(&result)
        );
        let result = complete(&c, params("image", json!({}))).await;
        assert_eq!(
            serde_json::to_value(&result.content).unwrap()[0]["type"],
            "image"
        );
        let mut p = params("log_and_fail", json!({}));
        p.meta = Some(meta(Some("t"), Some(LoggingLevel::Debug)));
        let result = complete(&c, p).await;
        assert_eq!(result.is_error, Some(true), "{era}");
        settle().await;
        // A 0.1.0 tool's log lines stay in the host log, as before.
        assert!(handler.logs.lock().unwrap().is_empty(), "{era}");
        c.cancel().await.unwrap();
    }
}

fn hostile_tenant(issuer: &str) -> String {
    format!(
        "[tenants.acme]\nissuers = [{{ issuer = {issuer:?}, jwks_min_refresh_ms = 0 }}]\n\
         scopes = [\"mcp\"]\n\
         [[tenants.acme.install]]\ncomponent = \"hostile\"\n\
         limits = {{ timeout_ms = 25000 }}\n"
    )
}

#[tokio::test]
async fn a_tool_that_never_stops_asking_is_stopped_and_floods_are_cut() {
    let idp = TestIdp::start("").await;
    let server = TestServer::start(&hostile_tenant(&idp.issuer)).await;
    let url = server.endpoint("acme");

    // 2025-11-25: the host asks within the call, at most 8 rounds.
    let handler = Answering::everything();
    let c = client(&url, &idp, "mallory", &OLD, handler.clone()).await;
    let result = complete(&c, params("ask_forever", json!({}))).await;
    assert_eq!(result.is_error, Some(true), "{}", text_of(&result));
    assert!(
        text_of(&result).contains("more than 8 times"),
        "{}",
        text_of(&result)
    );
    assert_eq!(handler.asked().len(), 8);
    // Sixteen questions a round: stopped before the third round asks, at
    // the cap of 32 questions per call.
    handler.asked.lock().unwrap().clear();
    let result = complete(&c, params("ask_many", json!({}))).await;
    assert!(
        text_of(&result).contains("more than 32 things"),
        "{}",
        text_of(&result)
    );
    assert_eq!(handler.asked().len(), 32);
    c.cancel().await.unwrap();

    // 2026-07-28: each round is the client's; every one is a fresh, sealed round.
    let c = client(&url, &idp, "mallory", &NEW, Answering::everything()).await;
    let mut asked = input_required(&c, params("ask_forever", json!({}))).await;
    for round in 0..3 {
        let key = asked
            .input_requests
            .as_ref()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .clone();
        assert_eq!(key, format!("q{round}"));
        asked = input_required(
            &c,
            with_answers(
                "ask_forever",
                &asked,
                json!({ key: {"action": "accept", "content": {"ok": true}} }),
                None,
            ),
        )
        .await;
    }
    c.cancel().await.unwrap();

    // Progress floods are cut to a burst, and values only increase.
    let token = idp.token(&url, "mallory", "mcp");
    let (_, body) = call_with_meta(
        &url,
        &token,
        "progress_flood",
        json!({}),
        json!({"progressToken": 5}),
    )
    .await
    .unwrap();
    let progress: Vec<f64> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["progress"].as_f64().unwrap())
        .collect();
    assert!(!progress.is_empty() && progress.len() <= 20, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert!(body.contains("done"), "{body}");
}

#[tokio::test]
async fn a_legacy_call_asks_nothing_after_its_request_deadline() {
    let idp = TestIdp::start("").await;
    let rest = format!(
        "[server]\nrequest_timeout_ms = 3000\n{}",
        conformance_tenant(&idp.issuer)
    );
    let server = TestServer::start(&rest).await;
    let url = server.endpoint("acme");
    let mut slow = Answering::everything();
    slow.delay = std::time::Duration::from_millis(2000);
    let c = client(&url, &idp, "alice", &OLD, slow.clone()).await;
    // Three requests in one round, each answered after two seconds against
    // a three-second deadline: the first is
    // answered, the second times out at the call's deadline, the third is
    // never sent, and no further round asks anything.
    let call = c.call_tool_once(params(
        "test_input_required_result_multiple_inputs",
        json!({}),
    ));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), call).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(slow.asked(), ["elicitation", "sampling"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_the_host_was_too_busy_to_run_keeps_its_state() {
    let idp = TestIdp::start("").await;
    let rest = format!(
        "[server]\nmax_concurrent_calls = 1\nqueue_timeout_ms = 100\n{}\
         [tenants.globex]\nissuers = [{{ issuer = {issuer:?}, jwks_min_refresh_ms = 0 }}]\nscopes = [\"mcp\"]\n\
         [[tenants.globex.install]]\ncomponent = \"hostile\"\n\
         limits = {{ timeout_ms = 10000, cpu_ms = 10000 }}\n",
        conformance_tenant(&idp.issuer),
        issuer = idp.issuer,
    );
    let server = TestServer::start(&rest).await;
    let url = server.endpoint("acme");
    let alice = client(&url, &idp, "alice", &NEW, Answering::everything()).await;
    let tool = "test_input_required_result_elicitation";
    let asked = input_required(&alice, params(tool, json!({}))).await;
    let answer = alice_named();

    // A runaway of another tenant holds the host's only slot: Alice's round is refused
    // as busy without running...
    let globex = server.endpoint("globex");
    let bob = client(&globex, &idp, "bob", &NEW, Answering::everything()).await;
    let probe = client(&globex, &idp, "carol", &NEW, Answering::everything()).await;
    let spin = tokio::spawn(async move { bob.call_tool_once(params("spin", json!({}))).await });
    // Wait until the runaway holds the slot: a quick call is then refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let quick = complete(&probe, params("panic", json!({}))).await;
        if text_of(&quick).contains("too many tool calls") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the runaway never held the slot: {}",
            text_of(&quick)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let busy = complete(&alice, with_answers(tool, &asked, answer.clone(), None)).await;
    assert_eq!(busy.is_error, Some(true), "{}", text_of(&busy));
    assert!(text_of(&busy).contains("busy"), "{}", text_of(&busy));
    let _ = spin.await;

    // ...so the same state still opens once the host has room, and only once.
    let done = complete(&alice, with_answers(tool, &asked, answer.clone(), None)).await;
    assert_greeted(&done);
    let e = alice
        .call_tool_once(with_answers(tool, &asked, answer, None))
        .await
        .expect_err("answered");
    assert_eq!(error_code(e), -32602);
}
