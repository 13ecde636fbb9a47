#![allow(unused_imports)]
use airlock_sdk::{tool, Ctx, Json, ToolError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, JsonSchema)]
struct Args {
    text: String,
}

#[derive(Deserialize)]
struct NoSchema {
    text: String,
}

/// The argument type needs a JSON Schema.
#[tool]
fn echo(args: NoSchema) -> Result<String, ToolError> {
    Ok(args.text)
}

fn main() {}
