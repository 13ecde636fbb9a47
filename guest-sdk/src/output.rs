//! What a tool returns.

use schemars::JsonSchema;
use serde::Serialize;

use crate::error::ToolError;

/// One piece of output shown to the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// JSON text.
    Json(String),
    /// An image.
    Image {
        /// The raw bytes.
        data: Vec<u8>,
        /// For example `image/png`.
        mime_type: String,
    },
}

/// The full result of a tool call, for tools that need more than one value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolOutput {
    /// What the client shows.
    pub content: Vec<Content>,
    /// Structured output, a JSON object matching the tool's output schema.
    pub structured: Option<serde_json::Value>,
}

impl ToolOutput {
    /// Output made of one text block.
    pub fn text(text: impl Into<String>) -> Self {
        ToolOutput {
            content: vec![Content::Text(text.into())],
            structured: None,
        }
    }

    /// Add a content block.
    pub fn with(mut self, content: Content) -> Self {
        self.content.push(content);
        self
    }
}

/// Structured JSON output: shown as JSON text and, when `T` serializes to an
/// object, returned as structured content with `T`'s schema as the output schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Json<T>(pub T);

/// Types a tool function may return inside `Result<_, ToolError>`.
pub trait IntoToolOutput {
    /// Convert into the output sent to the host.
    fn into_tool_output(self) -> Result<ToolOutput, ToolError>;

    /// The JSON Schema of the structured output, if any.
    fn output_schema() -> Option<serde_json::Value> {
        None
    }
}

impl IntoToolOutput for ToolOutput {
    fn into_tool_output(self) -> Result<ToolOutput, ToolError> {
        Ok(self)
    }
}

impl IntoToolOutput for String {
    fn into_tool_output(self) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text(self))
    }
}

impl IntoToolOutput for () {
    fn into_tool_output(self) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::default())
    }
}

impl<T: Serialize + JsonSchema> IntoToolOutput for Json<T> {
    fn into_tool_output(self) -> Result<ToolOutput, ToolError> {
        let value = serde_json::to_value(&self.0)
            .map_err(|e| ToolError::Internal(format!("could not encode the result: {e}")))?;
        let text = value.to_string();
        let structured = value.is_object().then_some(value);
        Ok(ToolOutput {
            content: vec![Content::Json(text)],
            structured,
        })
    }

    fn output_schema() -> Option<serde_json::Value> {
        let schema = schemars::schema_for!(T).to_value();
        (schema.get("type").and_then(|t| t.as_str()) == Some("object")).then_some(schema)
    }
}
