//! Shows the execution identity envelope a tool receives.

use airlock_sdk::{Ctx, Envelope, Json, ToolError, tool};

/// Return the execution identity envelope of this call: who acts, for whom,
/// through which client, with which scopes and services.
#[tool(title = "Who am I?", read_only, idempotent)]
pub fn whoami(ctx: &Ctx) -> Result<Json<Envelope>, ToolError> {
    Ok(Json(ctx.envelope().clone()))
}

airlock_sdk::export_tools!(whoami);

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::testing::{self, MockDelegate};

    #[test]
    fn returns_the_callers_envelope() {
        let mut envelope = testing::envelope();
        envelope.actor.subject = "alice".into();
        let ctx = Ctx::testing(envelope.clone(), MockDelegate::new());
        let Json(got) = whoami(&ctx).unwrap();
        assert_eq!(got, envelope);
    }
}
