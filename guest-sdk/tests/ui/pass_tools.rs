use airlock_sdk::{tool, Ctx, Json, ToolError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, JsonSchema)]
struct Args {
    text: String,
}

/// Echo.
#[tool]
fn echo(args: Args) -> Result<String, ToolError> {
    Ok(args.text)
}

#[derive(Serialize, JsonSchema)]
struct Out {
    n: usize,
}

/// Count characters, as the caller.
#[tool(name = "count.chars", title = "Count", read_only, idempotent)]
fn count(ctx: &Ctx, args: Args) -> Result<Json<Out>, ToolError> {
    let _ = ctx.envelope();
    Ok(Json(Out { n: args.text.len() }))
}

/// No arguments at all.
#[tool]
fn ping() -> Result<(), ToolError> {
    Ok(())
}

airlock_sdk::export_tools!(echo, count, ping);

fn main() {}
