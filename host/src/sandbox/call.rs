//! Running one guest function in a fresh store, and turning every way it can
//! end into a result or a specific [`CallError`].

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::Sandbox;
use super::bindings::ToolComponentPre;
use super::bindings::airlock::tool::types as wit;
use super::error::{BusyScope, CallError, ToolErrorKind, TrapKind};
use super::limits::Limits;
use super::load::LoadedComponent;
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
/// `limits`, and drop the instance.
pub(crate) async fn run(
    engine: &Engine,
    pre: &ToolComponentPre<HostState>,
    state: HostState,
    limits: &Limits,
    guest: Guest<'_>,
) -> Result<Returned, CallError> {
    let mut store = Store::new(engine, state);
    store.limiter(|s| s);
    let deadline = Instant::now() + limits.timeout;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            // Let other tasks on this worker run; check again next tick.
            Ok(UpdateDeadline::Yield(1))
        }
    });
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
    match outcome {
        Err(_elapsed) => Err(CallError::Timeout {
            limit: limits.timeout,
        }),
        Ok(Ok(returned)) => Ok(returned),
        Ok(Err(error)) => Err(classify(&error, store.data().tripped, limits)),
    }
}

/// Map a wasmtime error to the specific reason the call ended.
fn classify(error: &wasmtime::Error, tripped: Option<Tripped>, limits: &Limits) -> CallError {
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

fn output_size(result: &wit::ToolResult) -> usize {
    let content: usize = result
        .content
        .iter()
        .map(|c| match c {
            wit::ContentBlock::Text(t) | wit::ContentBlock::Json(t) => t.len(),
            wit::ContentBlock::Image(i) => i.data.len() + i.mime_type.len(),
        })
        .sum();
    content + result.structured.as_ref().map_or(0, String::len)
}

fn check_output(
    result: wit::ToolResult,
    output_validator: Option<&jsonschema::Validator>,
    limits: &Limits,
) -> Result<ToolOutput, CallError> {
    let size = output_size(&result);
    if size > limits.output_bytes {
        return Err(CallError::OutputTooLarge {
            limit_bytes: limits.output_bytes,
            actual_bytes: size,
        });
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
    })
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
        let name = request.envelope.tool();
        let validators = component
            .inner
            .validators
            .get(name)
            .ok_or_else(|| CallError::UnknownTool(name.to_string()))?;
        let arguments: serde_json::Value = serde_json::from_str(&request.arguments)
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

        let _permits = self
            .acquire(Some(request.envelope.tenant()))
            .await
            .map_err(|scope: BusyScope| CallError::Busy { scope })?;
        let limits = component.limits;
        let state = HostState::new(Some(request.envelope.clone()), request.delegate, limits);
        let guest = Guest::Call {
            name,
            arguments: &request.arguments,
        };
        match run(&self.engine, &component.inner.pre, state, &limits, guest).await? {
            Returned::Call(Ok(result)) => check_output(result, validators.output.as_ref(), &limits),
            Returned::Call(Err(e)) => Err(tool_error(e)),
            Returned::Descriptors(_) => Err(CallError::Internal),
        }
    }
}
