//! Support for the code that `#[tool]` and `export_tools!` generate. Not public API.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::ctx::Ctx;
use crate::error::ToolError;
use crate::input::{ClientCapabilities, InputRequest, InputResponse};
use crate::output::{
    Content, EmbeddedResource, IntoToolOutput, ResourceBody, ResourceLink, ToolOutput,
};
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

/// `tool.call` for a set of tools: one round of a call made by the host.
pub fn call(
    entries: &[Entry],
    request: wit::CallRequest,
) -> Result<wit::CallOutcome, wit::ToolError> {
    let wit::CallRequest {
        name,
        arguments,
        client,
        responses,
        state,
    } = request;
    let ctx = Ctx::from_host(
        client_from_wit(client),
        responses.into_iter().map(response_from_wit).collect(),
        state.as_deref(),
    );
    dispatch(entries, &name, &arguments, &ctx)
}

/// Run tool `name` with `ctx` and turn how it ended into the call's outcome.
pub(crate) fn dispatch(
    entries: &[Entry],
    name: &str,
    arguments: &str,
    ctx: &Ctx,
) -> Result<wit::CallOutcome, wit::ToolError> {
    let entry = entries
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| wit::ToolError::InvalidInput(format!("unknown tool `{name}`")))?;
    outcome((entry.call)(ctx, arguments))
}

/// A tool's result as the call's outcome: output, input required, or error.
pub(crate) fn outcome(
    result: Result<ToolOutput, ToolError>,
) -> Result<wit::CallOutcome, wit::ToolError> {
    match result {
        Ok(output) => Ok(wit::CallOutcome::Complete(to_wit(output))),
        Err(ToolError::__InputRequired(asked)) => {
            Ok(wit::CallOutcome::InputRequired(wit::InputRequired {
                requests: asked
                    .requests
                    .into_iter()
                    .map(|(key, request)| (key, request_to_wit(request)))
                    .collect(),
                state: asked.state,
            }))
        }
        Err(e) => Err(e.into()),
    }
}

fn client_from_wit(c: wit::ClientCapabilities) -> ClientCapabilities {
    ClientCapabilities {
        elicitation_form: c.elicitation_form,
        elicitation_url: c.elicitation_url,
        sampling: c.sampling,
        roots: c.roots,
    }
}

fn response_from_wit((key, response): (String, wit::InputResponse)) -> (String, InputResponse) {
    let response = match response {
        wit::InputResponse::Answered(json) => InputResponse::Answered(json),
        wit::InputResponse::Unavailable(reason) => InputResponse::Unavailable(reason),
    };
    (key, response)
}

fn request_to_wit(request: InputRequest) -> wit::InputRequest {
    match request {
        InputRequest::Form {
            message,
            requested_schema,
        } => wit::InputRequest::Form(wit::FormElicitation {
            message,
            requested_schema: requested_schema.to_string(),
        }),
        InputRequest::Url { message, url } => {
            wit::InputRequest::Url(wit::UrlElicitation { message, url })
        }
        InputRequest::Sampling(params) => wit::InputRequest::Sampling(params.to_string()),
        InputRequest::Roots => wit::InputRequest::Roots,
    }
}

fn to_wit(output: ToolOutput) -> wit::ToolResult {
    wit::ToolResult {
        content: output.content.into_iter().map(content_to_wit).collect(),
        structured: output.structured.map(|v| v.to_string()),
    }
}

fn content_to_wit(content: Content) -> wit::ContentBlock {
    match content {
        Content::Text(t) => wit::ContentBlock::Text(t),
        Content::Json(j) => wit::ContentBlock::Json(j),
        Content::Image { data, mime_type } => {
            wit::ContentBlock::Image(wit::Image { data, mime_type })
        }
        Content::Audio { data, mime_type } => {
            wit::ContentBlock::Audio(wit::Audio { data, mime_type })
        }
        Content::Resource(EmbeddedResource {
            uri,
            mime_type,
            body,
        }) => wit::ContentBlock::EmbeddedResource(wit::EmbeddedResource {
            uri,
            mime_type,
            body: match body {
                ResourceBody::Text(t) => wit::ResourceBody::Text(t),
                ResourceBody::Blob(b) => wit::ResourceBody::Blob(b),
            },
        }),
        Content::ResourceLink(ResourceLink {
            uri,
            name,
            title,
            description,
            mime_type,
            size,
        }) => wit::ContentBlock::ResourceLink(wit::ResourceLink {
            uri,
            name,
            title,
            description,
            mime_type,
            size,
        }),
    }
}
