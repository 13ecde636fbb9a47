#![allow(unused_imports)]
use airlock_sdk::{tool, Ctx, Json, ToolError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, JsonSchema)]
struct Args {
    text: String,
}

/// Ctx must come first.
#[tool]
fn echo(args: Args, ctx: &Ctx) -> Result<String, ToolError> {
    let _ = ctx;
    Ok(args.text)
}

fn main() {}
