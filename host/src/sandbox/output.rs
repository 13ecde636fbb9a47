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
