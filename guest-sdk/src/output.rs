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
    /// Audio.
    Audio {
        /// The raw bytes.
        data: Vec<u8>,
        /// For example `audio/wav`.
        mime_type: String,
    },
    /// A resource's contents, included in the result.
    Resource(EmbeddedResource),
    /// A link to a resource the client may fetch or show.
    ResourceLink(ResourceLink),
}

impl Content {
    /// Plain text.
    pub fn text(text: impl Into<String>) -> Self {
        Content::Text(text.into())
    }

    /// An image, for example `image/png`.
    pub fn image(data: impl Into<Vec<u8>>, mime_type: impl Into<String>) -> Self {
        Content::Image {
            data: data.into(),
            mime_type: mime_type.into(),
        }
    }

    /// Audio, for example `audio/wav`.
    pub fn audio(data: impl Into<Vec<u8>>, mime_type: impl Into<String>) -> Self {
        Content::Audio {
            data: data.into(),
            mime_type: mime_type.into(),
        }
    }

    /// A text resource's contents, under its absolute `uri`.
    pub fn resource_text(
        uri: impl Into<String>,
        mime_type: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Content::Resource(EmbeddedResource {
            uri: uri.into(),
            mime_type: Some(mime_type.into()),
            body: ResourceBody::Text(text.into()),
        })
    }

    /// A binary resource's contents, under its absolute `uri`.
    pub fn resource_blob(
        uri: impl Into<String>,
        mime_type: impl Into<String>,
        data: impl Into<Vec<u8>>,
    ) -> Self {
        Content::Resource(EmbeddedResource {
            uri: uri.into(),
            mime_type: Some(mime_type.into()),
            body: ResourceBody::Blob(data.into()),
        })
    }

    /// A link to the resource at absolute `uri`, called `name`. For the
    /// optional fields, build a [`ResourceLink`] and convert it.
    pub fn resource_link(uri: impl Into<String>, name: impl Into<String>) -> Self {
        Content::ResourceLink(ResourceLink::new(uri, name))
    }
}

/// What an embedded resource holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceBody {
    /// Text.
    Text(String),
    /// Binary data; the host encodes it for the client.
    Blob(Vec<u8>),
}

/// A resource's contents, included in a result ([`Content::Resource`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedResource {
    /// The resource's absolute URI, for example `notes://alice/3`.
    pub uri: String,
    /// Its media type, when known.
    pub mime_type: Option<String>,
    /// Its contents.
    pub body: ResourceBody,
}

impl From<EmbeddedResource> for Content {
    fn from(r: EmbeddedResource) -> Self {
        Content::Resource(r)
    }
}

/// A pointer to a resource, without its contents ([`Content::ResourceLink`]).
///
/// ```
/// use airlock_sdk::{Content, ResourceLink};
///
/// let link: Content = ResourceLink::new("notes://alice/3", "note 3")
///     .title("Shopping list")
///     .mime_type("text/plain")
///     .into();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceLink {
    /// The resource's absolute URI.
    pub uri: String,
    /// A short name for it.
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

impl ResourceLink {
    /// A link to the resource at absolute `uri`, called `name`.
    pub fn new(uri: impl Into<String>, name: impl Into<String>) -> Self {
        ResourceLink {
            uri: uri.into(),
            name: name.into(),
            title: None,
            description: None,
            mime_type: None,
            size: None,
        }
    }

    /// Set the display title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Set the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Set the media type.
    pub fn mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }

    /// Set the size in bytes.
    pub fn size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }
}

impl From<ResourceLink> for Content {
    fn from(l: ResourceLink) -> Self {
        Content::ResourceLink(l)
    }
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
    pub fn with(mut self, content: impl Into<Content>) -> Self {
        self.content.push(content.into());
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
