use airlock_sdk::{tool, Ctx, Elicitation, Field, FormSchema, IfAvailable, Json, ToolError};
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

/// Ask before acting.
#[tool(destructive)]
fn wipe(ctx: &Ctx) -> Result<String, ToolError> {
    ctx.progress(0.0, None, Some("asking"));
    let form = FormSchema::new().field(Field::boolean("confirm").default(false));
    let answer = ctx
        .elicit("confirm", Elicitation::form("Wipe?", form))
        .if_available()?;
    Ok(match answer {
        Some(a) if a.accepted() && a.bool("confirm") == Some(true) => "wiped".into(),
        _ => "kept".into(),
    })
}

airlock_sdk::export_tools!(echo, count, ping, wipe);

fn main() {}
