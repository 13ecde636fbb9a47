#![allow(unused_imports)]
use airlock_sdk::{tool, Ctx, Json, ToolError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, JsonSchema)]
struct Args {
    text: String,
}

/// The Ok type must be tool output.
#[tool]
fn echo(args: Args) -> Result<u32, ToolError> {
    Ok(args.text.len() as u32)
}

fn main() {}
