#![allow(unused_imports)]
use airlock_sdk::{tool, Ctx, Json, ToolError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, JsonSchema)]
struct Args {
    text: String,
}

/// Must return a Result.
#[tool]
fn echo(args: Args) -> String {
    args.text
}

fn main() {}
