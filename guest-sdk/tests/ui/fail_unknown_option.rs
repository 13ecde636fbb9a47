#![allow(unused_imports)]
use airlock_sdk::{tool, Ctx, Json, ToolError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, JsonSchema)]
struct Args {
    text: String,
}

/// An unknown option.
#[tool(readonly)]
fn echo(args: Args) -> Result<String, ToolError> {
    Ok(args.text)
}

fn main() {}
