//! The smallest airlock tool: it returns the text it was given.

use airlock_sdk::{ToolError, tool};
use schemars::JsonSchema;
use serde::Deserialize;

/// The arguments of `echo`.
#[derive(Deserialize, JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

/// Return `text` unchanged.
#[tool(title = "Echo", read_only, idempotent)]
pub fn echo(args: EchoArgs) -> Result<String, ToolError> {
    Ok(args.text)
}

airlock_sdk::export_tools!(echo);
