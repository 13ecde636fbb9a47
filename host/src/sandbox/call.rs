//! Running one guest function in a fresh store, and turning every way it can
//! end into a result or a specific [`CallError`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::Sandbox;
use super::bindings::v2::airlock::tool::types as wit;
use super::engine::{MIN_SLICE, TICK, Waiting};
use super::error::{CallError, ToolErrorKind, TrapKind};
use super::limits::Limits;
use super::load::{LoadedComponent, Pre, Validators};
use super::output::{
    CallEvents, ClientCapabilities, Content, InputRequest, InputRequired, InputResponse, Outcome,
    ResourceBody, ResourceLink, ToolOutput,
};
use super::state::{CpuClock, HostState, LimitTrap, Tripped};
use crate::delegate::Delegate;
use crate::envelope::Envelope;

/// Longest tool error message passed on, in bytes.
const MAX_ERROR_MESSAGE: usize = 4096;

/// One tool call (one round of it).
pub struct CallRequest {
    /// Who the call acts for; also names the tool and tenant.
    pub envelope: Arc<Envelope>,
    /// The arguments object, as JSON text.
    pub arguments: String,
    /// Where delegated requests go.
    pub delegate: Arc<dyn Delegate>,
    /// What the client can be asked for.
    pub client: ClientCapabilities,
    /// Answers to what the previous round asked.
    pub responses: Vec<(String, InputResponse)>,
    /// The state the previous round returned.
    pub state: Option<Vec<u8>>,
    /// Where progress reports and log lines go besides the host log.
    pub events: Option<Arc<dyn CallEvents>>,
}

impl CallRequest {
    /// A first round with nothing to answer, for a client that can be asked nothing.
    pub fn new(envelope: Arc<Envelope>, arguments: String, delegate: Arc<dyn Delegate>) -> Self {
        CallRequest {
            envelope,
            arguments,
            delegate,
            client: ClientCapabilities::default(),
            responses: Vec::new(),
            state: None,
            events: None,
        }
    }
}

impl std::fmt::Debug for CallRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRequest")
            .field("tenant", &self.envelope.tenant())
            .field("tool", &self.envelope.tool())
            .field("arguments_bytes", &self.arguments.len())
            .finish_non_exhaustive()
    }
}

/// Which export to run.
pub(crate) enum Guest<'a> {
    Describe,
    Call(&'a wit::CallRequest),
}

/// What the export returned.
pub(crate) enum Returned {
    Descriptors(Vec<wit::ToolDescriptor>),
    Call(Result<wit::CallOutcome, wit::ToolError>),
}

/// Instantiate `pre` in a new store holding `state`, run `guest` under
/// `limits`, and drop the instance. Also returns the CPU time the guest used.
pub(crate) async fn run(
    engine: &Engine,
    pre: &Pre,
    state: HostState,
    limits: &Limits,
    transfer_bytes: usize,
    guest: Guest<'_>,
    waiting: &Arc<Waiting>,
) -> (Result<Returned, CallError>, Duration) {
    let waiting = waiting.clone();
    let clock = state.cpu.clone();
    let mut store = Store::new(engine, state);
    store.limiter(|s| s);
    // Bound what the host copies out of the guest per transfer (the result,
    // or one import call's arguments) before it allocates for it.
    store.set_hostcall_fuel(transfer_bytes);
    let deadline = Instant::now() + limits.timeout;
    let cpu_limit = limits.cpu;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut ctx| {
        if Instant::now() >= deadline {
            return Ok(UpdateDeadline::Interrupt);
        }
        let state = ctx.data_mut();
        let clock = state.cpu.clone();
        // Count the stretch the guest has just run, and stop it when it has
        // used its CPU time.
        let ran = clock.pause();
        if clock.used() >= cpu_limit {
            state.tripped.get_or_insert(Tripped::Cpu);
            return Ok(UpdateDeadline::Interrupt);
        }
        clock.resume();
        // Calls waiting for a thread come first: a guest that has already
        // used a tick of CPU gives its thread back at once, a newer one after
        // a short slice. Otherwise a guest that has only just started
        // running again (after a yield or a host call spanning a tick) gets a
        // full tick before yielding, or a busy thread would starve it.
        let contended = waiting.any() && (ran >= MIN_SLICE || clock.used() >= TICK);
        if ran < TICK / 2 && !contended {
            return Ok(UpdateDeadline::Continue(1));
        }
        // Give the thread to other guests; time spent waiting for it again
        // is not this guest's CPU time.
        clock.pause();
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::task::yield_now().await;
                clock.resume();
            }),
        ))
    });
    clock.resume();
    let outcome = {
        let work = async {
            match pre {
                Pre::V2(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let exports = instance.airlock_tool_tool();
                    match guest {
                        Guest::Describe => exports
                            .call_describe(&mut store)
                            .await
                            .map(Returned::Descriptors),
                        Guest::Call(request) => exports
                            .call_call(&mut store, request)
                            .await
                            .map(Returned::Call),
                    }
                }
                Pre::V1(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let exports = instance.airlock_tool_tool();
                    match guest {
                        Guest::Describe => exports.call_describe(&mut store).await.map(|d| {
                            Returned::Descriptors(
                                d.into_iter().map(super::upgrade::descriptor).collect(),
                            )
                        }),
                        Guest::Call(request) => exports
                            .call_call(&mut store, &request.name, &request.arguments)
                            .await
                            .map(|r| Returned::Call(super::upgrade::outcome(r))),
                    }
                }
            }
        };
        tokio::time::timeout(limits.timeout, work).await
    };
    clock.pause();
    let used = clock.used();
    let result = match outcome {
        Err(_elapsed) => Err(CallError::Timeout {
            limit: limits.timeout,
        }),
        Ok(Ok(returned)) => Ok(returned),
        Ok(Err(error)) => Err(classify(
            &error,
            store.data().tripped,
            limits,
            transfer_bytes,
        )),
    };
    (result, used)
}

/// Whether wasmtime stopped copying a value out of the guest because it was
/// larger than the store's hostcall fuel. wasmtime's error type for this is
/// private, so it is recognised by its message (pinned by a test with a real
/// guest, `hostile::oversized_*`).
fn transfer_refused(error: &wasmtime::Error) -> bool {
    error.chain().any(|e| {
        e.to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

/// Map a wasmtime error to the specific reason the call ended.
fn classify(
    error: &wasmtime::Error,
    tripped: Option<Tripped>,
    limits: &Limits,
    transfer_bytes: usize,
) -> CallError {
    if transfer_refused(error) {
        // Arguments of an import are copied while the guest is on the stack,
        // so the error carries a wasm backtrace; a result is copied after the
        // guest returned, so it does not.
        return if error.downcast_ref::<wasmtime::WasmBacktrace>().is_some() {
            CallError::ImportTooLarge {
                limit_bytes: transfer_bytes,
            }
        } else {
            CallError::OutputTooLarge {
                limit_bytes: limits.output_bytes,
                actual_bytes: None,
            }
        };
    }
    if error.downcast_ref::<LimitTrap>().is_some() || tripped.is_some() {
        match tripped {
            Some(Tripped::Memory) => {
                return CallError::OutOfMemory {
                    limit_bytes: limits.memory_bytes,
                };
            }
            Some(Tripped::LogLines) => {
                return CallError::LimitExceeded {
                    limit: "log lines",
                    max: limits.log_lines.into(),
                };
            }
            Some(Tripped::LogBytes) => {
                return CallError::LimitExceeded {
                    limit: "log bytes",
                    max: limits.log_bytes as u64,
                };
            }
            Some(Tripped::Cpu) => {
                return CallError::CpuLimit { limit: limits.cpu };
            }
            Some(Tripped::TableElements) => {
                return CallError::LimitExceeded {
                    limit: "table elements",
                    max: super::engine::TABLE_ELEMENTS as u64,
                };
            }
            None => {}
        }
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        let kind = match trap {
            Trap::Interrupt => {
                return CallError::Timeout {
                    limit: limits.timeout,
                };
            }
            Trap::UnreachableCodeReached => TrapKind::Unreachable,
            Trap::StackOverflow => TrapKind::StackOverflow,
            Trap::MemoryOutOfBounds | Trap::HeapMisaligned => TrapKind::MemoryOutOfBounds,
            Trap::IntegerDivisionByZero => TrapKind::DivisionByZero,
            Trap::IntegerOverflow => TrapKind::IntegerOverflow,
            Trap::BadConversionToInteger => TrapKind::BadConversion,
            Trap::TableOutOfBounds | Trap::IndirectCallToNull | Trap::BadSignature => {
                TrapKind::BadIndirectCall
            }
            Trap::InvalidChar
            | Trap::StringOutOfBounds
            | Trap::ListOutOfBounds
            | Trap::InvalidDiscriminant
            | Trap::UnalignedPointer => TrapKind::BadCanonicalValue,
            _ => TrapKind::Other,
        };
        return CallError::Trap { kind };
    }
    if error
        .downcast_ref::<super::state::NoIdentityTrap>()
        .is_some()
    {
        return CallError::BadOutput("`describe` asked for the caller's identity".into());
    }
    // Lifting a malformed value (bad UTF-8, out-of-bounds list) is reported as
    // a plain error rather than a `Trap`; it is still the guest's fault.
    let text = format!("{error:#}");
    tracing::warn!(error = %text, "tool call failed inside the sandbox");
    if text.contains("out of bounds") || text.contains("invalid") || text.contains("utf-8") {
        return CallError::Trap {
            kind: TrapKind::BadCanonicalValue,
        };
    }
    CallError::Internal
}

/// `s` cut to at most `max` bytes (on a character boundary), marked `…` when cut.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn tool_error(e: wit::ToolError) -> CallError {
    let (kind, message) = match e {
        wit::ToolError::InvalidInput(m) => (ToolErrorKind::InvalidInput, m),
        wit::ToolError::Denied(m) => (ToolErrorKind::Denied, m),
        wit::ToolError::NotConnected(m) => (ToolErrorKind::NotConnected, m),
        wit::ToolError::Upstream(m) => (ToolErrorKind::Upstream, m),
        wit::ToolError::Internal(m) => (ToolErrorKind::Internal, m),
        wit::ToolError::Other(m) => (ToolErrorKind::Other, m),
    };
    CallError::Tool {
        kind,
        message: truncate(message, MAX_ERROR_MESSAGE),
    }
}

/// What one content block costs on the wire besides its payload: the JSON
/// object around it (`{"type":"image","data":"","mimeType":""},` and the like),
/// rounded up. Counting it makes a million empty blocks as expensive as they
/// are to send.
pub(crate) const BLOCK_OVERHEAD: usize = 64;

/// Counts bytes written, to measure JSON encodings without building them.
#[derive(Default)]
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of `value` encoded as JSON, exactly as it will be sent.
fn json_len(value: &(impl serde::Serialize + ?Sized)) -> usize {
    let mut counter = Counter::default();
    // Writing to a counter cannot fail, and the values measured here (strings
    // and parsed JSON) always serialize.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// What `block` costs in the response: the per-block overhead plus its
/// payload as encoded (JSON string escapes, base64 for binary data).
fn block_cost(block: &wit::ContentBlock) -> usize {
    let b64 = |data: &[u8]| data.len().div_ceil(3).saturating_mul(4);
    let opt = |s: &Option<String>| s.as_deref().map_or(0, json_len);
    BLOCK_OVERHEAD.saturating_add(match block {
        wit::ContentBlock::Text(t) | wit::ContentBlock::Json(t) => json_len(t.as_str()),
        wit::ContentBlock::Image(i) => b64(&i.data).saturating_add(json_len(i.mime_type.as_str())),
        wit::ContentBlock::Audio(a) => b64(&a.data).saturating_add(json_len(a.mime_type.as_str())),
        wit::ContentBlock::EmbeddedResource(r) => json_len(r.uri.as_str())
            .saturating_add(opt(&r.mime_type))
            .saturating_add(match &r.body {
                wit::ResourceBody::Text(t) => json_len(t.as_str()),
                wit::ResourceBody::Blob(b) => b64(b.as_slice()),
            }),
        wit::ContentBlock::ResourceLink(l) => json_len(l.uri.as_str())
            .saturating_add(json_len(l.name.as_str()))
            .saturating_add(opt(&l.title))
            .saturating_add(opt(&l.description))
            .saturating_add(opt(&l.mime_type))
            .saturating_add(24),
    })
}

/// Longest URI, media type, name or title accepted in a content block.
const MAX_LABEL: usize = 2048;

fn check_uri(uri: &str, what: &str) -> Result<(), CallError> {
    let ok = uri.len() <= MAX_LABEL
        && url::Url::parse(uri).is_ok()
        && !uri.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(CallError::BadOutput(format!(
            "{what} needs an absolute URI of at most {MAX_LABEL} bytes"
        )))
    }
}

fn check_media_type(mime_type: &str, prefix: &str, what: &str) -> Result<(), CallError> {
    let ok = mime_type.starts_with(prefix)
        && mime_type.len() <= 100
        && mime_type.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if ok {
        Ok(())
    } else {
        Err(CallError::BadOutput(format!(
            "{what} needs a `{prefix}*` media type"
        )))
    }
}

fn check_label(text: &Option<String>, what: &str) -> Result<(), CallError> {
    match text {
        Some(t) if t.len() > MAX_LABEL => Err(CallError::BadOutput(format!(
            "{what} is longer than {MAX_LABEL} bytes"
        ))),
        _ => Ok(()),
    }
}

/// A 0.2.0 content block as the host holds it, checked.
fn convert_block(block: wit::ContentBlock) -> Result<Content, CallError> {
    Ok(match block {
        wit::ContentBlock::Text(t) => Content::Text(t),
        wit::ContentBlock::Json(j) => {
            serde_json::from_str::<serde_json::Value>(&j).map_err(|e| {
                CallError::BadOutput(format!("a JSON content block is not JSON: {e}"))
            })?;
            Content::Json(j)
        }
        wit::ContentBlock::Image(i) => {
            check_media_type(&i.mime_type, "image/", "an image content block")?;
            Content::Image {
                data: i.data,
                mime_type: i.mime_type,
            }
        }
        wit::ContentBlock::Audio(a) => {
            check_media_type(&a.mime_type, "audio/", "an audio content block")?;
            Content::Audio {
                data: a.data,
                mime_type: a.mime_type,
            }
        }
        wit::ContentBlock::EmbeddedResource(r) => {
            check_uri(&r.uri, "an embedded resource")?;
            if let Some(m) = &r.mime_type {
                check_media_type(m, "", "an embedded resource")?;
            }
            Content::Resource {
                uri: r.uri,
                mime_type: r.mime_type,
                body: match r.body {
                    wit::ResourceBody::Text(t) => ResourceBody::Text(t),
                    wit::ResourceBody::Blob(b) => ResourceBody::Blob(b),
                },
            }
        }
        wit::ContentBlock::ResourceLink(l) => {
            check_uri(&l.uri, "a resource link")?;
            if l.name.is_empty() || l.name.len() > MAX_LABEL {
                return Err(CallError::BadOutput(format!(
                    "a resource link needs a name of 1 to {MAX_LABEL} bytes"
                )));
            }
            check_label(&l.title, "a resource link's title")?;
            check_label(&l.description, "a resource link's description")?;
            if let Some(m) = &l.mime_type {
                check_media_type(m, "", "a resource link")?;
            }
            Content::ResourceLink(ResourceLink {
                uri: l.uri,
                name: l.name,
                title: l.title,
                description: l.description,
                mime_type: l.mime_type,
                size: l.size,
            })
        }
    })
}

fn check_output(
    result: wit::ToolResult,
    output_validator: Option<&jsonschema::Validator>,
    limits: &Limits,
) -> Result<ToolOutput, CallError> {
    let too_large = |actual: usize| CallError::OutputTooLarge {
        limit_bytes: limits.output_bytes,
        actual_bytes: Some(actual),
    };
    if result.content.len() > limits.content_blocks as usize {
        return Err(CallError::LimitExceeded {
            limit: "content blocks",
            max: limits.content_blocks.into(),
        });
    }
    // Count before converting anything: the host builds nothing bigger than
    // the limit allows.
    let mut size = 0usize;
    for block in &result.content {
        size = size.saturating_add(block_cost(block));
        if size > limits.output_bytes {
            let rest: usize = result.content.iter().map(block_cost).sum();
            return Err(too_large(rest));
        }
    }
    if let Some(text) = &result.structured {
        // Structured output counts at the larger of its text and its
        // re-encoding; checking the text first bounds the parse.
        if size.saturating_add(text.len()) > limits.output_bytes {
            return Err(too_large(size.saturating_add(text.len())));
        }
    }
    let mut content = Vec::with_capacity(result.content.len());
    for block in result.content {
        content.push(convert_block(block)?);
    }
    let structured = match result.structured {
        None => None,
        Some(text) => {
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                CallError::BadOutput(format!("the structured output is not JSON: {e}"))
            })?;
            if !value.is_object() {
                return Err(CallError::BadOutput(
                    "the structured output must be a JSON object".into(),
                ));
            }
            size = size.saturating_add(json_len(&value).max(text.len()));
            if size > limits.output_bytes {
                return Err(too_large(size));
            }
            Some(value)
        }
    };
    if let Some(validator) = output_validator {
        let value = structured.as_ref().ok_or_else(|| {
            CallError::BadOutput(
                "the tool declares an output schema but returned no structured output".into(),
            )
        })?;
        if let Err(e) = validator.validate(value) {
            return Err(CallError::BadOutput(format!(
                "the structured output does not match the output schema: {e}"
            )));
        }
    }
    Ok(ToolOutput {
        content,
        structured,
        encoded_bytes: size,
    })
}

/// Most input requests in one round.
pub const MAX_INPUT_REQUESTS: usize = 16;
/// Largest tool state carried between rounds, in bytes.
pub const MAX_TOOL_STATE: usize = 16 * 1024;
/// Largest form schema or sampling request, as JSON text.
const MAX_INPUT_JSON: usize = 64 * 1024;
/// Longest message shown with an elicitation.
const MAX_INPUT_MESSAGE: usize = 4096;

fn bad_input(key: &str, why: impl std::fmt::Display) -> CallError {
    CallError::BadOutput(format!("input request `{key}`: {why}"))
}

fn json_object(
    key: &str,
    what: &str,
    text: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, CallError> {
    if text.len() > MAX_INPUT_JSON {
        return Err(bad_input(
            key,
            format!("the {what} is larger than {MAX_INPUT_JSON} bytes"),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_input(key, format!("the {what} must be a JSON object"))),
        Err(e) => Err(bad_input(key, format!("the {what} is not JSON: {e}"))),
    }
}

/// The restricted schema MCP allows for forms: a flat object whose
/// properties are strings, numbers, integers, booleans, or (multi-select)
/// arrays of enumerated strings.
fn check_form_schema(
    key: &str,
    schema: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), CallError> {
    if schema.get("type").and_then(|t| t.as_str()) != Some("object") {
        return Err(bad_input(
            key,
            "a form schema must have `\"type\": \"object\"`",
        ));
    }
    let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) else {
        return Err(bad_input(key, "a form schema needs a `properties` object"));
    };
    for (name, property) in properties {
        let kind = property.get("type").and_then(|t| t.as_str());
        let ok = match kind {
            Some("string" | "number" | "integer" | "boolean") => true,
            Some("array") => property
                .get("items")
                .and_then(|i| i.as_object())
                .is_some_and(|i| i.contains_key("enum") || i.contains_key("anyOf")),
            _ => false,
        };
        if !ok {
            return Err(bad_input(
                key,
                format!(
                    "form field `{}` must be a string, number, integer, boolean or \
                     an array of enumerated strings",
                    name.chars().take(64).collect::<String>()
                ),
            ));
        }
    }
    if let Some(required) = schema.get("required")
        && !required.as_array().is_some_and(|r| {
            r.iter()
                .all(|n| n.as_str().is_some_and(|n| properties.contains_key(n)))
        })
    {
        return Err(bad_input(
            key,
            "a form schema's `required` must list names of its properties",
        ));
    }
    Ok(())
}

fn check_message(key: &str, message: &str) -> Result<(), CallError> {
    if message.len() > MAX_INPUT_MESSAGE {
        return Err(bad_input(
            key,
            format!("the message is longer than {MAX_INPUT_MESSAGE} bytes"),
        ));
    }
    Ok(())
}

/// Largest `maxTokens` a tool may ask the client's model for.
pub const MAX_SAMPLING_TOKENS: u64 = 32_768;

/// A URL elicitation's URL: absolute `https`, no credentials, nothing a
/// browser would silently drop or rewrite; passed on as parsed.
fn check_elicitation_url(key: &str, raw: &str) -> Result<String, CallError> {
    let refuse = || {
        bad_input(
            key,
            "a URL elicitation needs an absolute https URL without credentials, \
             spaces, control characters or backslashes",
        )
    };
    if raw.len() > MAX_LABEL
        || raw
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return Err(refuse());
    }
    let parsed = url::Url::parse(raw).map_err(|_| refuse())?;
    if parsed.scheme() != "https"
        || parsed.host().is_none()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(refuse());
    }
    Ok(parsed.into())
}

/// A sampling request rebuilt from the fields a tool may set: the messages,
/// a system prompt, `maxTokens` (at most [`MAX_SAMPLING_TOKENS`]),
/// temperature, stop sequences and model preferences. Context from other
/// servers (`includeContext`) is never asked for, tool use is not offered,
/// and metadata is dropped.
fn check_sampling(
    key: &str,
    mut params: serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>, CallError> {
    if params.contains_key("tools") || params.contains_key("toolChoice") {
        return Err(bad_input(
            key,
            "sampling with tools is not offered to tools hosted by airlock",
        ));
    }
    if let Some(context) = params.get("includeContext")
        && context.as_str() != Some("none")
    {
        return Err(bad_input(
            key,
            "a tool may not ask for context from other servers (`includeContext`)",
        ));
    }
    let messages_ok = params
        .get("messages")
        .and_then(|m| m.as_array())
        .is_some_and(|m| !m.is_empty());
    let max_tokens = params
        .get("maxTokens")
        .and_then(|m| m.as_u64())
        .unwrap_or(0);
    if !messages_ok || max_tokens == 0 {
        return Err(bad_input(
            key,
            "a sampling request needs a non-empty `messages` array and a positive `maxTokens`",
        ));
    }
    if max_tokens > MAX_SAMPLING_TOKENS {
        return Err(bad_input(
            key,
            format!("`maxTokens` is at most {MAX_SAMPLING_TOKENS}"),
        ));
    }
    let mut kept = serde_json::Map::new();
    for field in [
        "messages",
        "systemPrompt",
        "maxTokens",
        "temperature",
        "stopSequences",
        "modelPreferences",
    ] {
        if let Some(value) = params.remove(field) {
            kept.insert(field.into(), value);
        }
    }
    Ok(kept)
}

/// Check what a tool asked for.
fn check_input_required(asked: wit::InputRequired) -> Result<InputRequired, CallError> {
    if asked.requests.is_empty() {
        return Err(CallError::BadOutput(
            "the tool asked for input but made no request".into(),
        ));
    }
    if asked.requests.len() > MAX_INPUT_REQUESTS {
        return Err(CallError::BadOutput(format!(
            "the tool made {} input requests; the limit is {MAX_INPUT_REQUESTS}",
            asked.requests.len()
        )));
    }
    if let Some(state) = &asked.state
        && state.len() > MAX_TOOL_STATE
    {
        return Err(CallError::BadOutput(format!(
            "the tool's state is {} bytes; the limit is {MAX_TOOL_STATE}",
            state.len()
        )));
    }
    let mut requests: Vec<(String, InputRequest)> = Vec::with_capacity(asked.requests.len());
    for (key, request) in asked.requests {
        if !super::load::valid_name(&key) {
            return Err(CallError::BadOutput(
                "an input request key is 1 to 64 characters from `A-Z a-z 0-9 _ - .`".into(),
            ));
        }
        if requests.iter().any(|(k, _)| *k == key) {
            return Err(bad_input(&key, "the key is used twice"));
        }
        let request = match request {
            wit::InputRequest::Form(form) => {
                check_message(&key, &form.message)?;
                let schema = json_object(&key, "form schema", &form.requested_schema)?;
                check_form_schema(&key, &schema)?;
                InputRequest::Form {
                    message: form.message,
                    schema,
                }
            }
            wit::InputRequest::Url(u) => {
                check_message(&key, &u.message)?;
                InputRequest::Url {
                    message: u.message,
                    url: check_elicitation_url(&key, &u.url)?,
                }
            }
            wit::InputRequest::Sampling(text) => {
                let params = json_object(&key, "sampling request", &text)?;
                InputRequest::Sampling(check_sampling(&key, params)?)
            }
            wit::InputRequest::Roots => InputRequest::Roots,
        };
        requests.push((key, request));
    }
    Ok(InputRequired {
        requests,
        state: asked.state,
    })
}

/// CPU time after which a call moves to the low-priority guest threads.
pub(crate) const PROMOTE_AFTER: Duration = Duration::from_millis(2);

/// Run `call` here until it finishes or has used [`PROMOTE_AFTER`] of CPU,
/// then move it (at the point it yields) to the `long` runtime and wait for
/// it there. `None` if the moved call's task failed.
async fn promote_when_long<T: Send + 'static>(
    mut call: std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>,
    clock: &CpuClock,
    long: Option<tokio::runtime::Handle>,
    promoted: impl FnOnce(),
) -> Option<T> {
    let Some(long) = long else {
        return Some(call.await);
    };
    let here = std::future::poll_fn(|cx| match call.as_mut().poll(cx) {
        std::task::Poll::Ready(value) => std::task::Poll::Ready(Some(value)),
        std::task::Poll::Pending if clock.used() >= PROMOTE_AFTER => std::task::Poll::Ready(None),
        std::task::Poll::Pending => std::task::Poll::Pending,
    })
    .await;
    if let Some(value) = here {
        return Some(value);
    }
    promoted();
    // Aborted with this task (the caller went away), like the first part.
    let moved = AbortOnDrop(long.spawn(call));
    match (&mut { moved }.0).await {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::error!(error = %e, "a long-running guest task failed");
            None
        }
    }
}

/// Aborts the guest task when the caller stops waiting for it (the client
/// went away, the request deadline passed): the guest ends at its next epoch
/// tick and frees its slot.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Sandbox {
    /// Run tool `request.envelope.tool()` of `component` in a fresh instance.
    ///
    /// Arguments are checked against the tool's input schema first. The call
    /// waits up to the queue timeout for a slot, then runs under the
    /// component's limits; whatever happens, the instance is discarded.
    pub async fn call(
        &self,
        component: &LoadedComponent,
        request: CallRequest,
    ) -> Result<Outcome, CallError> {
        self.call_metered(component, request).await.0
    }

    /// [`Sandbox::call`], also returning the CPU time the guest used (`None`
    /// when it never ran).
    pub async fn call_metered(
        &self,
        component: &LoadedComponent,
        request: CallRequest,
    ) -> (Result<Outcome, CallError>, Option<Duration>) {
        let name = request.envelope.tool();
        let Some(validators) = component.inner.validators.get(name) else {
            return (Err(CallError::UnknownTool(name.to_string())), None);
        };
        if let Err(e) = check_arguments(&request.arguments, validators) {
            return (Err(e), None);
        }
        let owner = super::slots::Owner {
            tenant: request.envelope.tenant().to_string(),
            user: format!(
                "{}\n{}",
                request.envelope.issuer(),
                request.envelope.subject()
            ),
        };
        let permit = match self.acquire(Some(owner)).await {
            Ok(permit) => permit,
            Err(scope) => return (Err(CallError::Busy { scope }), None),
        };
        let Some(guests) = &self.guests else {
            return (Err(CallError::Internal), None);
        };
        let engine = self.engine.clone();
        let component = component.clone();
        let waiting = self.waiting.clone();
        let ticket = waiting.enter(&engine);
        let long = self.long.as_ref().map(|rt| rt.handle().clone());
        let envelope = request.envelope.clone();
        let metrics = self.metrics.get().cloned();
        let promoted = move || {
            if let Some(metrics) = &metrics {
                metrics.long_running(envelope.tenant());
            }
        };
        // The guest runs on the guest threads, moving to the low-priority
        // ones once it runs long; this side only waits.
        let task = AbortOnDrop(guests.spawn(async move {
            drop(ticket);
            let _permit = permit;
            let clock = Arc::new(CpuClock::new());
            let meter = clock.clone();
            let call =
                Box::pin(
                    async move { run_call(&engine, &component, request, &waiting, clock).await },
                );
            promote_when_long(call, &meter, long, promoted)
                .await
                .unwrap_or((Err(CallError::Internal), Duration::ZERO))
        }));
        match (&mut { task }.0).await {
            Ok((result, used)) => (result, Some(used)),
            Err(e) => {
                tracing::error!(error = %e, "a guest task failed");
                (Err(CallError::Internal), None)
            }
        }
    }
}

fn check_arguments(arguments: &str, validators: &Validators) -> Result<(), CallError> {
    let arguments: serde_json::Value = serde_json::from_str(arguments)
        .map_err(|e| CallError::InvalidInput(format!("the arguments are not JSON: {e}")))?;
    if !arguments.is_object() {
        return Err(CallError::InvalidInput(
            "the arguments must be a JSON object".into(),
        ));
    }
    if let Some(first) = validators.input.iter_errors(&arguments).next() {
        let path = first.instance_path().to_string();
        let at = if path.is_empty() {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        return Err(CallError::InvalidInput(format!("{first}{at}")));
    }
    Ok(())
}

/// The guest side of a call, on a guest thread.
async fn run_call(
    engine: &Engine,
    component: &LoadedComponent,
    request: CallRequest,
    waiting: &Arc<Waiting>,
    clock: Arc<CpuClock>,
) -> (Result<Outcome, CallError>, Duration) {
    let name = request.envelope.tool();
    let Some(validators) = component.inner.validators.get(name) else {
        return (
            Err(CallError::UnknownTool(name.to_string())),
            Duration::ZERO,
        );
    };
    let limits = component.limits;
    let pre = &component.inner.pre;
    // 0.1.0 tools behave exactly as they always did: nothing is forwarded.
    let events = match pre {
        Pre::V2(_) => request.events,
        Pre::V1(_) => None,
    };
    let state = HostState::with_clock(
        Some(request.envelope.clone()),
        request.delegate,
        limits,
        clock,
    )
    .with_events(events);
    let transfer_bytes = limits.transfer_bytes(state.request_limits());
    let c = request.client;
    let wit_request = wit::CallRequest {
        name: name.to_string(),
        arguments: request.arguments,
        client: wit::ClientCapabilities {
            elicitation_form: c.elicitation_form,
            elicitation_url: c.elicitation_url,
            sampling: c.sampling,
            roots: c.roots,
        },
        responses: request
            .responses
            .into_iter()
            .map(|(key, response)| {
                let response = match response {
                    InputResponse::Answered(value) => {
                        wit::InputResponse::Answered(value.to_string())
                    }
                    InputResponse::Unavailable(why) => wit::InputResponse::Unavailable(why),
                };
                (key, response)
            })
            .collect(),
        state: request.state,
    };
    let guest = Guest::Call(&wit_request);
    let (returned, used) = run(engine, pre, state, &limits, transfer_bytes, guest, waiting).await;
    let result = match returned {
        Ok(Returned::Call(Ok(wit::CallOutcome::Complete(result)))) => {
            check_output(result, validators.output.as_ref(), &limits).map(Outcome::Complete)
        }
        Ok(Returned::Call(Ok(wit::CallOutcome::InputRequired(asked)))) => {
            check_input_required(asked).map(Outcome::InputRequired)
        }
        Ok(Returned::Call(Err(e))) => Err(tool_error(e)),
        Ok(Returned::Descriptors(_)) => Err(CallError::Internal),
        Err(e) => Err(e),
    };
    (result, used)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod input_tests {
    use super::*;

    fn form(schema: &str) -> wit::InputRequest {
        wit::InputRequest::Form(wit::FormElicitation {
            message: "Sure?".into(),
            requested_schema: schema.into(),
        })
    }

    fn asked(requests: Vec<(&str, wit::InputRequest)>) -> wit::InputRequired {
        wit::InputRequired {
            requests: requests
                .into_iter()
                .map(|(k, r)| (k.to_string(), r))
                .collect(),
            state: None,
        }
    }

    fn refused(requests: Vec<(&str, wit::InputRequest)>) -> String {
        match check_input_required(asked(requests)) {
            Err(CallError::BadOutput(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    const OK_FORM: &str = r#"{"type":"object","properties":{"ok":{"type":"boolean","default":false}},"required":["ok"]}"#;

    #[test]
    fn well_formed_requests_pass() {
        let checked = check_input_required(asked(vec![
            ("confirm", form(OK_FORM)),
            (
                "approve",
                wit::InputRequest::Url(wit::UrlElicitation {
                    message: "Approve at the bank".into(),
                    url: "https://bank.example/approve?id=1".into(),
                }),
            ),
            (
                "summary",
                wit::InputRequest::Sampling(
                    r#"{"messages":[{"role":"user","content":{"type":"text","text":"hi"}}],"maxTokens":10,"metadata":{"x":1},"_meta":{"y":2},"includeContext":"none"}"#
                        .into(),
                ),
            ),
            ("roots", wit::InputRequest::Roots),
        ]))
        .unwrap();
        assert_eq!(checked.requests.len(), 4);
        let InputRequest::Sampling(params) = &checked.requests[2].1 else {
            panic!("sampling");
        };
        assert_eq!(params.len(), 2, "{params:?}");
        assert_eq!(checked.requests[3].1, InputRequest::Roots);
    }

    #[test]
    fn malformed_requests_are_refused_with_the_reason() {
        assert!(refused(vec![]).contains("no request"));
        let many: Vec<(String, wit::InputRequest)> = (0..=MAX_INPUT_REQUESTS)
            .map(|i| (format!("k{i}"), wit::InputRequest::Roots))
            .collect();
        let too_many = check_input_required(wit::InputRequired {
            requests: many,
            state: None,
        });
        assert!(matches!(too_many, Err(CallError::BadOutput(w)) if w.contains("limit")));
        let state = check_input_required(wit::InputRequired {
            requests: vec![("k".into(), wit::InputRequest::Roots)],
            state: Some(vec![0; MAX_TOOL_STATE + 1]),
        });
        assert!(matches!(state, Err(CallError::BadOutput(w)) if w.contains("state")));
        assert!(refused(vec![("bad key!", wit::InputRequest::Roots)]).contains("key"));
        assert!(refused(vec![("", wit::InputRequest::Roots)]).contains("key"));
        assert!(
            refused(vec![
                ("k", wit::InputRequest::Roots),
                ("k", wit::InputRequest::Roots)
            ])
            .contains("twice")
        );
        for schema in [
            "not json",
            "[]",
            r#"{"type":"array"}"#,
            r#"{"type":"object"}"#,
            r#"{"type":"object","properties":{"nested":{"type":"object"}}}"#,
            r#"{"type":"object","properties":{"list":{"type":"array","items":{"type":"string"}}}}"#,
            r#"{"type":"object","properties":{"a":{"type":"string"}},"required":["b"]}"#,
        ] {
            refused(vec![("k", form(schema))]);
        }
        let huge = format!(
            r#"{{"type":"object","properties":{{"a":{{"type":"string","description":"{}"}}}}}}"#,
            "x".repeat(MAX_INPUT_JSON)
        );
        assert!(refused(vec![("k", form(&huge))]).contains("larger"));
        for url in [
            "javascript:alert(1)",
            "data:text/html,<script>",
            "http://bank.example/approve",
            "https://user:pass@bank.example/",
            "file:///etc/passwd",
            "not a url",
        ] {
            let why = refused(vec![(
                "k",
                wit::InputRequest::Url(wit::UrlElicitation {
                    message: "m".into(),
                    url: url.into(),
                }),
            )]);
            assert!(why.contains("URL"), "{url}: {why}");
        }
        for url in [
            "http://127.0.0.1:8080/approve",
            "https://:accounts.example@evil.example/login",
            "https://acc\tounts.example.evil.example/",
            "https://evil.example\\@accounts.example/",
            " https://evil.example/",
        ] {
            let result = check_input_required(asked(vec![(
                "k",
                wit::InputRequest::Url(wit::UrlElicitation {
                    message: "m".into(),
                    url: url.into(),
                }),
            )]));
            assert!(result.is_err(), "{url}");
        }
        // Passed on as parsed.
        let checked = check_input_required(asked(vec![(
            "k",
            wit::InputRequest::Url(wit::UrlElicitation {
                message: "m".into(),
                url: "HTTPS://Bank.Example/a/../approve".into(),
            }),
        )]))
        .unwrap();
        assert!(
            matches!(&checked.requests[0].1, InputRequest::Url { url, .. } if url == "https://bank.example/approve")
        );
        for sampling in [
            r#"{"messages":[{"role":"user"}],"maxTokens":10,"includeContext":"allServers"}"#,
            r#"{"messages":[{"role":"user"}],"maxTokens":10,"tools":[]}"#,
            r#"{"messages":[{"role":"user"}],"maxTokens":10000000}"#,
            r#"{"maxTokens":10}"#,
            r#"{"messages":[],"maxTokens":10}"#,
            r#"{"messages":[{"role":"user"}],"maxTokens":0}"#,
            r#"{"messages":[{"role":"user"}]}"#,
            r#""text""#,
        ] {
            refused(vec![("k", wit::InputRequest::Sampling(sampling.into()))]);
        }
        let long = "m".repeat(MAX_INPUT_MESSAGE + 1);
        assert!(
            refused(vec![(
                "k",
                wit::InputRequest::Form(wit::FormElicitation {
                    message: long,
                    requested_schema: OK_FORM.into(),
                }),
            )])
            .contains("message")
        );
    }
}
