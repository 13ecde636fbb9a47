//! What can go wrong loading or calling a tool. Messages are written for the
//! caller: they name the limit or rule and never carry host internals.

use std::fmt;
use std::time::Duration;

/// Why a component could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a WebAssembly component.
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// Compilation failed.
    #[error("the component failed to compile: {0}")]
    Compile(String),
    /// The component imports something the host does not provide.
    #[error(
        "the component imports `{name}`; tools may import only `airlock:tool/*` \
         (no WASI: build for wasm32-unknown-unknown with `wasm-component-ld --wasi-adapter=none`)"
    )]
    ForbiddenImport {
        /// The offending import.
        name: String,
    },
    /// The component's imports or exports do not match `airlock:tool@0.1.0`.
    #[error("the component does not fit the `airlock:tool@0.1.0` tool-component world: {0}")]
    Link(String),
    /// `describe` failed.
    #[error("`describe` failed: {0}")]
    Describe(String),
    /// `describe` returned no tools.
    #[error("`describe` returned no tools")]
    NoTools,
    /// Two tools share a name.
    #[error("`describe` returned the tool name `{0}` more than once")]
    DuplicateTool(String),
    /// A descriptor is invalid.
    #[error("tool `{tool}`: {reason}")]
    InvalidDescriptor {
        /// The tool's name as given.
        tool: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No slot was free to run `describe`.
    #[error("the sandbox is busy; try again shortly")]
    Busy,
}

/// How a guest crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// `unreachable` executed: a Rust panic or abort ends this way.
    Unreachable,
    /// The call stack overflowed (unbounded recursion).
    StackOverflow,
    /// A memory access out of bounds.
    MemoryOutOfBounds,
    /// Integer division by zero.
    DivisionByZero,
    /// Integer overflow.
    IntegerOverflow,
    /// An invalid float-to-integer conversion.
    BadConversion,
    /// A bad indirect call (null, out of table bounds, wrong signature).
    BadIndirectCall,
    /// Values crossing the component boundary were malformed.
    BadCanonicalValue,
    /// Any other trap.
    Other,
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrapKind::Unreachable => "unreachable code executed (the tool panicked or aborted)",
            TrapKind::StackOverflow => "stack overflow",
            TrapKind::MemoryOutOfBounds => {
                "out-of-bounds memory access (often deep recursion overflowing the stack in linear memory)"
            }
            TrapKind::DivisionByZero => "integer division by zero",
            TrapKind::IntegerOverflow => "integer overflow",
            TrapKind::BadConversion => "invalid conversion to integer",
            TrapKind::BadIndirectCall => "invalid indirect call",
            TrapKind::BadCanonicalValue => "malformed value passed to the host",
            TrapKind::Other => "trap",
        })
    }
}

/// The kind of error a tool reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolErrorKind {
    /// The arguments were wrong.
    InvalidInput,
    /// The caller may not do this.
    Denied,
    /// The caller must connect an account first.
    NotConnected,
    /// A downstream service failed.
    Upstream,
    /// A bug in the tool.
    Internal,
    /// Anything else.
    Other,
}

impl fmt::Display for ToolErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ToolErrorKind::InvalidInput => "invalid input",
            ToolErrorKind::Denied => "denied",
            ToolErrorKind::NotConnected => "not connected",
            ToolErrorKind::Upstream => "upstream error",
            ToolErrorKind::Internal => "internal error",
            ToolErrorKind::Other => "error",
        })
    }
}

/// Which concurrency cap was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyScope {
    /// The host-wide cap.
    Host,
    /// The tenant's cap.
    Tenant,
}

/// Why a tool call produced no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No tool by that name in this component.
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
    /// The arguments do not match the tool's input schema.
    #[error("invalid arguments: {0}")]
    InvalidInput(String),
    /// The tool ran and reported an error.
    #[error("{kind}: {message}")]
    Tool {
        /// What kind of error.
        kind: ToolErrorKind,
        /// The tool's message.
        message: String,
    },
    /// The call passed its wall-clock deadline.
    #[error("the tool did not finish within its time limit of {} ms", limit.as_millis())]
    Timeout {
        /// The limit.
        limit: Duration,
    },
    /// The tool used more CPU time than allowed (time spent awaiting
    /// delegated requests does not count).
    #[error("the tool used more than its CPU time limit of {} ms", limit.as_millis())]
    CpuLimit {
        /// The limit.
        limit: Duration,
    },
    /// The tool tried to use more memory than allowed.
    #[error("the tool exceeded its memory limit of {limit_bytes} bytes")]
    OutOfMemory {
        /// The limit.
        limit_bytes: usize,
    },
    /// The tool crashed.
    #[error("the tool crashed: {kind}")]
    Trap {
        /// How.
        kind: TrapKind,
    },
    /// The result, as encoded for the client, was larger than allowed.
    #[error("{}", output_too_large(*limit_bytes, *actual_bytes))]
    OutputTooLarge {
        /// The limit.
        limit_bytes: usize,
        /// The encoded size produced, when the host measured it; `None` when
        /// the result was too large for the host to even copy.
        actual_bytes: Option<usize>,
    },
    /// The tool handed a host import more data at once than any request,
    /// log line or result it may make.
    #[error(
        "the tool passed the host more than {limit_bytes} bytes in one import call; \
         no request or log line it may make is that large"
    )]
    ImportTooLarge {
        /// The most the host copies out of the guest at once.
        limit_bytes: usize,
    },
    /// A per-call limit other than time, memory and output was exceeded.
    #[error("the tool exceeded its limit of {max} {limit}")]
    LimitExceeded {
        /// Which limit, as a plural noun ("log lines").
        limit: &'static str,
        /// The limit's value.
        max: u64,
    },
    /// The tool returned output that breaks the contract.
    #[error("the tool returned malformed output: {0}")]
    BadOutput(String),
    /// Too many calls are running.
    #[error("{}", match scope {
        BusyScope::Host => "the host is busy: too many tool calls are running; try again shortly",
        BusyScope::Tenant => "too many tool calls are running for this tenant; try again shortly",
    })]
    Busy {
        /// Which cap was full.
        scope: BusyScope,
    },
    /// The host failed; details are in the host log, not here.
    #[error("internal error while running the tool")]
    Internal,
}

impl CallError {
    /// A stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            CallError::UnknownTool(_) => "unknown_tool",
            CallError::InvalidInput(_) => "invalid_input",
            CallError::Tool { .. } => "tool_error",
            CallError::Timeout { .. } => "timeout",
            CallError::CpuLimit { .. } => "cpu_limit",
            CallError::OutOfMemory { .. } => "out_of_memory",
            CallError::Trap { .. } => "trap",
            CallError::OutputTooLarge { .. } => "output_too_large",
            CallError::ImportTooLarge { .. } => "import_too_large",
            CallError::LimitExceeded { .. } => "limit_exceeded",
            CallError::BadOutput(_) => "bad_output",
            CallError::Busy { .. } => "busy",
            CallError::Internal => "internal",
        }
    }
}

fn output_too_large(limit: usize, actual: Option<usize>) -> String {
    match actual {
        Some(actual) => format!(
            "the tool's output is {actual} bytes as encoded for the client; the limit is {limit}"
        ),
        None => format!(
            "the tool's output is larger than the host copies out of a tool; the limit is {limit} bytes"
        ),
    }
}
