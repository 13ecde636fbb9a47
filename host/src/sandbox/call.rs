//! Running one guest function in a fresh store, and turning every way it can
//! end into a result or a specific [`CallError`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::Sandbox;
use super::bindings::ToolComponentPre;
use super::bindings::airlock::tool::types as wit;
use super::engine::TICK;
use super::error::{CallError, ToolErrorKind, TrapKind};
use super::limits::Limits;
use super::load::{LoadedComponent, Validators};
use super::output::{Content, ToolOutput};
use super::state::{HostState, LimitTrap, Tripped};
use crate::delegate::Delegate;
use crate::envelope::Envelope;

/// Longest tool error message passed on, in bytes.
const MAX_ERROR_MESSAGE: usize = 4096;

/// One tool call.
pub struct CallRequest {
    /// Who the call acts for; also names the tool and tenant.
    pub envelope: Arc<Envelope>,
    /// The arguments object, as JSON text.
    pub arguments: String,
    /// Where delegated requests go.
    pub delegate: Arc<dyn Delegate>,
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
    Call { name: &'a str, arguments: &'a str },
}

/// What the export returned.
pub(crate) enum Returned {
    Descriptors(Vec<wit::ToolDescriptor>),
    Call(Result<wit::ToolResult, wit::ToolError>),
}

/// Instantiate `pre` in a new store holding `state`, run `guest` under
/// `limits`, and drop the instance. Also returns the CPU time the guest used.
pub(crate) async fn run(
    engine: &Engine,
    pre: &ToolComponentPre<HostState>,
    state: HostState,
    limits: &Limits,
    transfer_bytes: usize,
    guest: Guest<'_>,
) -> (Result<Returned, CallError>, Duration) {
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
        if ran < TICK / 2 {
            // It has only just started running again (after a yield or a
            // host call spanning a tick): give it a full tick before
            // yielding, or a busy thread would starve it.
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
            let instance = pre.instantiate_async(&mut store).await?;
            let exports = instance.airlock_tool_tool();
            match guest {
                Guest::Describe => exports
                    .call_describe(&mut store)
                    .await
                    .map(Returned::Descriptors),
                Guest::Call { name, arguments } => exports
                    .call_call(&mut store, name, arguments)
                    .await
                    .map(Returned::Call),
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

fn truncate(mut s: String, max: usize) -> String {
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
    BLOCK_OVERHEAD.saturating_add(match block {
        wit::ContentBlock::Text(t) | wit::ContentBlock::Json(t) => json_len(t.as_str()),
        wit::ContentBlock::Image(i) => i
            .data
            .len()
            .div_ceil(3)
            .saturating_mul(4)
            .saturating_add(json_len(i.mime_type.as_str())),
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
        content.push(match block {
            wit::ContentBlock::Text(t) => Content::Text(t),
            wit::ContentBlock::Json(j) => {
                serde_json::from_str::<serde_json::Value>(&j).map_err(|e| {
                    CallError::BadOutput(format!("a JSON content block is not JSON: {e}"))
                })?;
                Content::Json(j)
            }
            wit::ContentBlock::Image(i) => {
                if !i.mime_type.starts_with("image/") || i.mime_type.len() > 100 {
                    return Err(CallError::BadOutput(
                        "an image content block needs an `image/*` media type".into(),
                    ));
                }
                Content::Image {
                    data: i.data,
                    mime_type: i.mime_type,
                }
            }
        });
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
    ) -> Result<ToolOutput, CallError> {
        self.call_metered(component, request).await.0
    }

    /// [`Sandbox::call`], also returning the CPU time the guest used (`None`
    /// when it never ran).
    pub async fn call_metered(
        &self,
        component: &LoadedComponent,
        request: CallRequest,
    ) -> (Result<ToolOutput, CallError>, Option<Duration>) {
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
        // The guest runs on the guest threads; this side only waits.
        let task = AbortOnDrop(guests.spawn(async move {
            let _permit = permit;
            run_call(&engine, &component, request).await
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
) -> (Result<ToolOutput, CallError>, Duration) {
    let name = request.envelope.tool();
    let Some(validators) = component.inner.validators.get(name) else {
        return (
            Err(CallError::UnknownTool(name.to_string())),
            Duration::ZERO,
        );
    };
    let limits = component.limits;
    let state = HostState::new(Some(request.envelope.clone()), request.delegate, limits);
    let transfer_bytes = limits.transfer_bytes(state.request_limits());
    let guest = Guest::Call {
        name,
        arguments: &request.arguments,
    };
    let pre = &component.inner.pre;
    let (returned, used) = run(engine, pre, state, &limits, transfer_bytes, guest).await;
    let result = match returned {
        Ok(Returned::Call(Ok(result))) => check_output(result, validators.output.as_ref(), &limits),
        Ok(Returned::Call(Err(e))) => Err(tool_error(e)),
        Ok(Returned::Descriptors(_)) => Err(CallError::Internal),
        Err(e) => Err(e),
    };
    (result, used)
}
