//! Support for the code that `#[tool]` and `export_tools!` generate. Not public API.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::ctx::Ctx;
use crate::error::ToolError;
use crate::output::{Content, IntoToolOutput, ToolOutput};
use crate::wit::airlock::tool::types as wit;

/// Behaviour hints given in `#[tool(...)]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hints {
    /// `read_only`
    pub read_only: Option<bool>,
    /// `destructive`
    pub destructive: Option<bool>,
    /// `idempotent`
    pub idempotent: Option<bool>,
    /// `open_world`
    pub open_world: Option<bool>,
}

/// What `#[tool]` generates for each tool function.
pub trait Tool {
    /// The tool's name.
    const NAME: &'static str;
    /// The tool's descriptor.
    fn descriptor() -> wit::ToolDescriptor;
    /// Parse `arguments` and run the tool.
    fn call(ctx: &Ctx, arguments: &str) -> Result<ToolOutput, ToolError>;
}

/// The input schema for argument type `A`.
pub fn input_schema<A: JsonSchema>() -> String {
    schemars::schema_for!(A).to_value().to_string()
}

/// The input schema of a tool that takes no arguments.
pub fn empty_input_schema() -> String {
    r#"{"type":"object","properties":{},"additionalProperties":false}"#.to_string()
}

/// Build a descriptor.
pub fn descriptor<R: IntoToolOutput>(
    name: &str,
    title: Option<&str>,
    description: &str,
    input_schema: String,
    hints: Hints,
) -> wit::ToolDescriptor {
    wit::ToolDescriptor {
        name: name.to_string(),
        title: title.map(str::to_string),
        description: description.trim().to_string(),
        input_schema,
        output_schema: R::output_schema().map(|s| s.to_string()),
        annotations: wit::ToolAnnotations {
            read_only_hint: hints.read_only,
            destructive_hint: hints.destructive,
            idempotent_hint: hints.idempotent,
            open_world_hint: hints.open_world,
        },
    }
}

/// Parse the arguments object into the tool's argument type.
pub fn parse_args<A: DeserializeOwned + JsonSchema>(arguments: &str) -> Result<A, ToolError> {
    serde_json::from_str(arguments).map_err(|e| ToolError::InvalidInput(e.to_string()))
}

/// Convert a tool function's return value.
pub fn into_output<R: IntoToolOutput>(
    result: Result<R, ToolError>,
) -> Result<ToolOutput, ToolError> {
    result.and_then(IntoToolOutput::into_tool_output)
}

/// One exported tool: its name, descriptor and entry point.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The name.
    pub name: &'static str,
    /// The descriptor.
    pub descriptor: fn() -> wit::ToolDescriptor,
    /// The entry point.
    pub call: fn(&Ctx, &str) -> Result<ToolOutput, ToolError>,
}

impl Entry {
    /// The entry for tool `T`.
    pub const fn of<T: Tool>() -> Self {
        Entry {
            name: T::NAME,
            descriptor: T::descriptor,
            call: T::call,
        }
    }
}

/// `tool.describe` for a set of tools.
pub fn describe(entries: &[Entry]) -> Vec<wit::ToolDescriptor> {
    entries.iter().map(|e| (e.descriptor)()).collect()
}

/// `tool.call` for a set of tools.
pub fn call(
    entries: &[Entry],
    name: &str,
    arguments: &str,
) -> Result<wit::ToolResult, wit::ToolError> {
    let entry = entries
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| wit::ToolError::InvalidInput(format!("unknown tool `{name}`")))?;
    let ctx = Ctx::from_host();
    let output = (entry.call)(&ctx, arguments).map_err(wit::ToolError::from)?;
    Ok(to_wit(output))
}

fn to_wit(output: ToolOutput) -> wit::ToolResult {
    wit::ToolResult {
        content: output
            .content
            .into_iter()
            .map(|c| match c {
                Content::Text(t) => wit::ContentBlock::Text(t),
                Content::Json(j) => wit::ContentBlock::Json(j),
                Content::Image { data, mime_type } => {
                    wit::ContentBlock::Image(wit::Image { data, mime_type })
                }
            })
            .collect(),
        structured: output.structured.map(|v| v.to_string()),
    }
}
