//! Notes for the calling user, kept by the `notes` service.
//!
//! The tool never says whose notes it wants: the host attaches the caller's
//! identity to every delegated request, so the service knows.

use airlock_sdk::{Ctx, Json, ToolError, tool};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The service these tools call, as configured for the tenant.
const SERVICE: &str = "notes";

/// A note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Note {
    /// The service's id for the note.
    pub id: String,
    /// The note's text.
    pub text: String,
}

/// The arguments of `add_note`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct AddNote {
    /// What to write down (1 to 10,000 characters).
    #[schemars(length(min = 1, max = 10000))]
    pub text: String,
}

/// The arguments of `delete_note`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeleteNote {
    /// The id of the note to delete, as returned by `add_note` or `list_notes`.
    pub id: String,
}

/// The notes of the calling user.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct NoteList {
    /// The notes, oldest first.
    pub notes: Vec<Note>,
}

/// Add a note for the calling user.
#[tool(title = "Add note")]
pub fn add_note(ctx: &Ctx, args: AddNote) -> Result<Json<Note>, ToolError> {
    let note = ctx
        .delegate(SERVICE)
        .post("/notes")
        .json(&args)?
        .send()?
        .error_for_status()?
        .json()?;
    Ok(Json(note))
}

/// List the calling user's notes.
#[tool(title = "List notes", read_only, idempotent)]
pub fn list_notes(ctx: &Ctx) -> Result<Json<NoteList>, ToolError> {
    let notes = ctx
        .delegate(SERVICE)
        .get("/notes")
        .send()?
        .error_for_status()?
        .json()?;
    Ok(Json(NoteList { notes }))
}

/// Delete one of the calling user's notes.
#[tool(title = "Delete note", destructive, idempotent)]
pub fn delete_note(ctx: &Ctx, args: DeleteNote) -> Result<String, ToolError> {
    if args.id.is_empty()
        || !args
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(ToolError::invalid_input(
            "`id` must be a note id (letters, digits and dashes)",
        ));
    }
    let resp = ctx
        .delegate(SERVICE)
        .delete(format!("/notes/{}", args.id))
        .send()?;
    match resp.status() {
        404 => Err(ToolError::invalid_input(format!(
            "there is no note `{}`",
            args.id
        ))),
        _ => {
            resp.error_for_status()?;
            ctx.log().info("note deleted");
            Ok(format!("deleted note {}", args.id))
        }
    }
}

airlock_sdk::export_tools!(add_note, list_notes, delete_note);

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::testing::{self, MockDelegate};
    use airlock_sdk::{DelegateError, Method, Response};

    #[test]
    fn add_note_posts_to_the_notes_service() {
        let mock = MockDelegate::new().route(SERVICE, |req| {
            let body: serde_json::Value = req.json()?;
            Ok(Response::json_body(
                201,
                &serde_json::json!({"id": "n-1", "text": body["text"]}),
            ))
        });
        let ctx = Ctx::testing(testing::envelope(), mock.clone());
        let Json(note) = add_note(
            &ctx,
            AddNote {
                text: "milk".into(),
            },
        )
        .unwrap();
        assert_eq!(
            note,
            Note {
                id: "n-1".into(),
                text: "milk".into()
            }
        );
        let sent = mock.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].method, sent[0].path.as_str()),
            (Method::Post, "/notes")
        );
    }

    #[test]
    fn delete_rejects_ids_that_would_change_the_path() {
        let ctx = Ctx::testing(testing::envelope(), MockDelegate::new());
        let err = delete_note(
            &ctx,
            DeleteNote {
                id: "../admin".into(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, ToolError::InvalidInput(_)), "{err:?}");
    }

    #[test]
    fn a_missing_service_is_reported_as_denied() {
        let ctx = Ctx::testing(testing::envelope(), MockDelegate::new());
        let err = list_notes(&ctx).unwrap_err();
        assert!(matches!(err, ToolError::Denied(_)), "{err:?}");
        let _ = DelegateError::Timeout;
    }
}
