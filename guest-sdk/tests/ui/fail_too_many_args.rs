#![allow(unused_imports)]
use airlock_sdk::{tool, Ctx, Json, ToolError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, JsonSchema)]
struct Args {
    text: String,
}

/// Two values instead of one struct.
#[tool]
fn echo(ctx: &Ctx, a: Args, b: Args) -> Result<String, ToolError> {
    let _ = ctx;
    Ok(a.text + &b.text)
}

fn main() {}
