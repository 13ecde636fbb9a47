//! Host-side views of what tools describe and return.

use serde::Serialize;

/// Behaviour hints (MCP tool annotations). Hints only; never trusted for security.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotations {
    /// The tool does not modify its environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    /// The tool may perform destructive updates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    /// Repeating a call has no additional effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotent_hint: Option<bool>,
    /// The tool interacts with external entities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

/// One tool, as validated at load.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolDescriptor {
    /// Unique within the component.
    pub name: String,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What the tool does.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub input_schema: serde_json::Value,
    /// JSON Schema of the structured output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
    /// Behaviour hints.
    pub annotations: Annotations,
}

/// One piece of a tool's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// JSON text (checked to parse).
    Json(String),
    /// An image.
    Image {
        /// The raw bytes.
        data: Vec<u8>,
        /// An `image/*` media type.
        mime_type: String,
    },
    /// Audio.
    Audio {
        /// The raw bytes.
        data: Vec<u8>,
        /// An `audio/*` media type.
        mime_type: String,
    },
    /// A resource's contents.
    Resource {
        /// An absolute URI.
        uri: String,
        /// Its media type, when known.
        mime_type: Option<String>,
        /// Its contents.
        body: ResourceBody,
    },
    /// A link to a resource.
    ResourceLink(ResourceLink),
}

/// What an embedded resource holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceBody {
    /// Text.
    Text(String),
    /// Binary data.
    Blob(Vec<u8>),
}

/// A link to a resource, without its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceLink {
    /// An absolute URI.
    pub uri: String,
    /// A short name.
    pub name: String,
    /// A display title.
    pub title: Option<String>,
    /// What it is.
    pub description: Option<String>,
    /// Its media type, when known.
    pub mime_type: Option<String>,
    /// Its size in bytes, when known.
    pub size: Option<u64>,
}

/// A successful call's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// What the client shows.
    pub content: Vec<Content>,
    /// Structured output, a JSON object valid against the output schema.
    pub structured: Option<serde_json::Value>,
    /// The result's size as encoded for the client, as counted against the
    /// output limit.
    pub encoded_bytes: usize,
}

/// How one round of a call ended, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The tool finished.
    Complete(ToolOutput),
    /// The tool needs input from the client before it can finish; run it
    /// again with the answers and `state`.
    InputRequired(InputRequired),
}

impl Outcome {
    /// The output of a finished call; a call that asked for input is an
    /// error here (for callers that cannot ask anyone).
    pub fn into_complete(self) -> Result<ToolOutput, super::CallError> {
        match self {
            Outcome::Complete(output) => Ok(output),
            Outcome::InputRequired(_) => Err(super::CallError::BadOutput(
                "the tool asked for input from the client, which this caller cannot give".into(),
            )),
        }
    }
}

/// What a tool asked the client for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRequired {
    /// Each request under the tool's key (valid names, unique, at least one).
    pub requests: Vec<(String, InputRequest)>,
    /// The tool's state for the next round.
    pub state: Option<Vec<u8>>,
}

/// One thing a tool asks the client for.
#[derive(Debug, Clone, PartialEq)]
pub enum InputRequest {
    /// Form-mode elicitation.
    Form {
        /// Shown to the user.
        message: String,
        /// The restricted JSON Schema of the form (an object schema).
        schema: serde_json::Map<String, serde_json::Value>,
    },
    /// URL-mode elicitation.
    Url {
        /// Shown to the user.
        message: String,
        /// An absolute http(s) URL.
        url: String,
    },
    /// `sampling/createMessage` parameters (an object with `messages` and `maxTokens`).
    Sampling(serde_json::Map<String, serde_json::Value>),
    /// `roots/list`.
    Roots,
}

impl InputRequest {
    /// The client capability this request needs.
    pub fn capability(&self) -> Capability {
        match self {
            InputRequest::Form { .. } => Capability::ElicitationForm,
            InputRequest::Url { .. } => Capability::ElicitationUrl,
            InputRequest::Sampling(_) => Capability::Sampling,
            InputRequest::Roots => Capability::Roots,
        }
    }
}

/// A client capability a tool can ask through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Form-mode elicitation.
    ElicitationForm,
    /// URL-mode elicitation.
    ElicitationUrl,
    /// Sampling.
    Sampling,
    /// Roots.
    Roots,
}

/// What the client can be asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCapabilities {
    /// Form-mode elicitation.
    pub elicitation_form: bool,
    /// URL-mode elicitation.
    pub elicitation_url: bool,
    /// Sampling.
    pub sampling: bool,
    /// Roots.
    pub roots: bool,
}

impl ClientCapabilities {
    /// Whether the client declared `capability`.
    pub fn supports(&self, capability: Capability) -> bool {
        match capability {
            Capability::ElicitationForm => self.elicitation_form,
            Capability::ElicitationUrl => self.elicitation_url,
            Capability::Sampling => self.sampling,
            Capability::Roots => self.roots,
        }
    }
}

/// The client's answer to one request, given to the next round.
#[derive(Debug, Clone, PartialEq)]
pub enum InputResponse {
    /// The client's result object.
    Answered(serde_json::Value),
    /// The request could not be put to the client; why.
    Unavailable(String),
}

/// Severity of a tool's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warning.
    Warn,
    /// Error.
    Error,
}

/// Where a running call's progress reports and log lines go, besides the
/// host log (the protocol layer forwards them to the client when it asked).
/// Called from guest threads; must not block.
pub trait CallEvents: Send + Sync + std::fmt::Debug {
    /// The tool reported progress (already checked: finite, not negative,
    /// within the per-round rate; whether it increases is the receiver's to
    /// check, over every round of the request).
    fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>);
    /// The tool logged a line (already counted against the call's limits).
    fn log(&self, level: LogLevel, message: &str);
}
