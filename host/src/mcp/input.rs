//! A call that needs input from the client, in each protocol era.
//!
//! 2026-07-28: an `InputRequiredResult` with the requests and the sealed
//! `requestState`; the client answers and retries. A request the client did
//! not declare the capability for is never sent: the call ends with -32021
//! naming it. 2025-11-25: the host asks the client itself, within the call
//! (`elicitation/create`, `sampling/createMessage`, `roots/list`), each
//! request bounded by a timeout, and runs the next round with the answers; a
//! request the client cannot take is answered `unavailable` to the tool.
#![allow(deprecated)] // sampling and roots are deprecated by SEP-2577 but part of both eras

use std::time::Duration;

use rmcp::model::{
    ClientCapabilities as McpClientCapabilities, ClientResult, CreateMessageRequest,
    CreateMessageRequestParams, ElicitRequest, ElicitRequestParams,
    InputRequest as McpInputRequest, InputRequests, InputRequiredResult, ListRootsRequest,
    ServerRequest,
};
use rmcp::service::{PeerRequestOptions, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer};

use crate::invoke::Asked;
use crate::sandbox::{Capability, ClientCapabilities, InputRequest, InputResponse};

/// What the client declared it can be asked for, in either era.
pub(super) fn client_capabilities(context: &RequestContext<RoleServer>) -> ClientCapabilities {
    let Some(caps) = context.client_capabilities() else {
        return ClientCapabilities::default();
    };
    let (form, url) = match &caps.elicitation {
        // An empty elicitation capability means form mode (2025-11-25).
        Some(e) => (e.form.is_some() || e.url.is_none(), e.url.is_some()),
        None => (false, false),
    };
    ClientCapabilities {
        elicitation_form: form,
        elicitation_url: url,
        sampling: caps.sampling.is_some(),
        roots: caps.roots.is_some(),
    }
}

/// One request as the MCP request it is.
enum Typed {
    Elicit(ElicitRequest),
    Sample(CreateMessageRequest),
    Roots(ListRootsRequest),
}

fn typed(key: &str, request: &InputRequest) -> Result<Typed, String> {
    let bad = |e: serde_json::Error| format!("input request `{key}` is not valid MCP: {e}");
    Ok(match request {
        InputRequest::Form { message, schema } => {
            let params: ElicitRequestParams = serde_json::from_value(serde_json::json!({
                "mode": "form",
                "message": message,
                "requestedSchema": schema,
            }))
            .map_err(bad)?;
            Typed::Elicit(ElicitRequest::new(params))
        }
        InputRequest::Url { message, url } => Typed::Elicit(ElicitRequest::new(
            ElicitRequestParams::UrlElicitationParams {
                meta: None,
                message: message.clone(),
                url: url.clone(),
                elicitation_id: key.to_string(),
            },
        )),
        InputRequest::Sampling(params) => {
            let params: CreateMessageRequestParams =
                serde_json::from_value(serde_json::Value::Object(params.clone())).map_err(bad)?;
            params
                .validate()
                .map_err(|e| format!("input request `{key}`: {e}"))?;
            Typed::Sample(CreateMessageRequest::new(params))
        }
        InputRequest::Roots => Typed::Roots(ListRootsRequest::default()),
    })
}

/// The capability object naming what the client lacks, for -32021.
fn missing(capabilities: &[Capability]) -> McpClientCapabilities {
    let mut value = serde_json::Map::new();
    for c in capabilities {
        match c {
            Capability::ElicitationForm | Capability::ElicitationUrl => {
                let mode = if *c == Capability::ElicitationForm {
                    "form"
                } else {
                    "url"
                };
                let entry = value
                    .entry("elicitation")
                    .or_insert_with(|| serde_json::json!({}));
                if let Some(e) = entry.as_object_mut() {
                    e.insert(mode.into(), serde_json::json!({}));
                }
            }
            Capability::Sampling => {
                value.insert("sampling".into(), serde_json::json!({}));
            }
            Capability::Roots => {
                value.insert("roots".into(), serde_json::json!({}));
            }
        }
    }
    serde_json::from_value(serde_json::Value::Object(value)).unwrap_or_default()
}

/// Why a tool's request could not go out, as the caller sees it.
pub(super) enum Refused {
    /// The protocol error to answer with.
    Protocol(McpError),
    /// A tool error to answer with.
    Tool(String),
}

/// 2026-07-28: the result that asks the client.
pub(super) fn input_required_result(
    asked: Asked,
    client: ClientCapabilities,
) -> Result<InputRequiredResult, Refused> {
    let lacking: Vec<Capability> = asked
        .requests
        .iter()
        .map(|(_, r)| r.capability())
        .filter(|c| !client.supports(*c))
        .collect();
    if !lacking.is_empty() {
        return Err(Refused::Protocol(
            McpError::missing_required_client_capability(missing(&lacking)),
        ));
    }
    let mut requests = InputRequests::new();
    for (key, request) in &asked.requests {
        let request = match typed(key, request).map_err(Refused::Tool)? {
            Typed::Elicit(r) => McpInputRequest::Elicitation(r),
            Typed::Sample(r) => McpInputRequest::CreateMessage(r),
            Typed::Roots(r) => McpInputRequest::ListRoots(r),
        };
        requests.insert(key.clone(), request);
    }
    Ok(InputRequiredResult::new(
        Some(requests),
        Some(asked.request_state),
    ))
}

/// 2025-11-25: ask the client each request within the call, all before
/// `deadline` (the call's); every request gets an answer or the reason it has
/// none.
pub(super) async fn ask_client(
    asked: &Asked,
    client: ClientCapabilities,
    context: &RequestContext<RoleServer>,
    deadline: tokio::time::Instant,
) -> Vec<(String, InputResponse)> {
    let mut responses = Vec::with_capacity(asked.requests.len());
    for (key, request) in &asked.requests {
        let response = if !client.supports(request.capability()) {
            InputResponse::Unavailable(format!(
                "the client did not declare the {} capability",
                match request.capability() {
                    Capability::ElicitationForm => "elicitation (form)",
                    Capability::ElicitationUrl => "elicitation (url)",
                    Capability::Sampling => "sampling",
                    Capability::Roots => "roots",
                }
            ))
        } else {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match typed(key, request) {
                Err(why) => InputResponse::Unavailable(why),
                Ok(_) if left.is_zero() => InputResponse::Unavailable(
                    "the call ran out of time waiting for the client".into(),
                ),
                Ok(typed) => send(context, typed, left).await,
            }
        };
        responses.push((key.clone(), response));
    }
    responses
}

async fn send(
    context: &RequestContext<RoleServer>,
    typed: Typed,
    timeout: Duration,
) -> InputResponse {
    let request = match typed {
        Typed::Elicit(r) => ServerRequest::ElicitRequest(r),
        Typed::Sample(r) => ServerRequest::CreateMessageRequest(r),
        Typed::Roots(r) => ServerRequest::ListRootsRequest(r),
    };
    let mut options = PeerRequestOptions::no_options();
    options.timeout = Some(timeout);
    let answer = async {
        context
            .peer
            .send_request_with_option(request, options)
            .await?
            .await_response()
            .await
    };
    match answer.await {
        Ok(result) => {
            let value = match result {
                ClientResult::ElicitResult(r) => serde_json::to_value(r),
                ClientResult::CreateMessageResult(r) => serde_json::to_value(r),
                ClientResult::ListRootsResult(r) => serde_json::to_value(r),
                _ => {
                    return InputResponse::Unavailable(
                        "the client answered with the wrong result".into(),
                    );
                }
            };
            match value {
                Ok(value) => InputResponse::Answered(value),
                Err(_) => {
                    InputResponse::Unavailable("the client's answer could not be read".into())
                }
            }
        }
        Err(e) => InputResponse::Unavailable(format!("the client did not answer: {e}")),
    }
}
