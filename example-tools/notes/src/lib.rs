//! Notes for the calling user, kept by the `notes` service.
//!
//! The tool never says whose notes it wants: the host attaches the caller's
//! identity to every delegated request, so the service knows.
//!
//! `delete_note` asks before acting: it ends its first round asking the user
//! to confirm (a form elicitation), and the host runs it again with the
//! answer. It deletes only on an explicit yes.

use airlock_sdk::{Ctx, Elicitation, Field, FormSchema, IfAvailable, Json, ToolError, tool};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The service these tools call, as configured for the tenant.
const SERVICE: &str = "notes";

/// The key `delete_note` asks for confirmation under, and the form's field.
const CONFIRM: &str = "confirm";

/// Longest part of a note shown as its title in the confirmation.
const TITLE_CHARS: usize = 60;

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

/// Delete one of the calling user's notes. The user is asked to confirm
/// first; without a yes, the note is kept.
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
    // Every round starts here, so the note is looked up again after the user
    // answered: it must still be there, and the question names it.
    let notes: Vec<Note> = ctx
        .delegate(SERVICE)
        .get("/notes")
        .send()?
        .error_for_status()?
        .json()?;
    let Some(note) = notes.iter().find(|n| n.id == args.id) else {
        return Err(no_such_note(&args.id));
    };
    let question = Elicitation::form(
        format!(
            "Delete note {} \"{}\"? This cannot be undone.",
            note.id,
            title(&note.text)
        ),
        FormSchema::new().field(
            Field::boolean(CONFIRM)
                .title("Delete this note")
                .default(false)
                .required(),
        ),
    );
    // The first round ends here (`?`), asking; the next one has the answer.
    let Some(answer) = ctx.elicit(CONFIRM, question).if_available()? else {
        ctx.log()
            .info("note kept: the client cannot ask for confirmation");
        return Ok(format!(
            "kept note {}: the client cannot ask you to confirm the deletion",
            args.id
        ));
    };
    if !(answer.accepted() && answer.bool(CONFIRM) == Some(true)) {
        ctx.log().info("note kept: not confirmed");
        return Ok(format!("kept note {}", args.id));
    }
    let resp = ctx
        .delegate(SERVICE)
        .delete(format!("/notes/{}", args.id))
        .send()?;
    match resp.status() {
        404 => Err(no_such_note(&args.id)),
        _ => {
            resp.error_for_status()?;
            ctx.log().info("note deleted");
            Ok(format!("deleted note {}", args.id))
        }
    }
}

fn no_such_note(id: &str) -> ToolError {
    ToolError::invalid_input(format!("there is no note `{id}`"))
}

/// The note's first line, shortened, to name it in the question.
fn title(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    if line.chars().count() > TITLE_CHARS {
        let short: String = line.chars().take(TITLE_CHARS).collect();
        format!("{}…", short.trim_end())
    } else {
        line.to_string()
    }
}

airlock_sdk::export_tools!(add_note, list_notes, delete_note);

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::testing::{self, MockDelegate};
    use airlock_sdk::{ClientCapabilities, DelegateError, InputRequest, Method, Response};
    use serde_json::json;

    /// The notes service with one note, `n-1`, that answers DELETE with 204.
    fn one_note() -> MockDelegate {
        MockDelegate::new().route(SERVICE, |req| match req.method {
            Method::Get => Ok(Response::json_body(
                200,
                &json!([{"id": "n-1", "text": "buy milk\nand eggs"}]),
            )),
            Method::Delete if req.path == "/notes/n-1" => Ok(Response {
                status: 204,
                headers: Vec::new(),
                body: Vec::new(),
            }),
            _ => Ok(Response::json_body(404, &json!({"error": "not_found"}))),
        })
    }

    fn deletes(mock: &MockDelegate) -> usize {
        mock.requests()
            .iter()
            .filter(|r| r.method == Method::Delete)
            .count()
    }

    fn delete_n1(ctx: &Ctx) -> Result<String, ToolError> {
        delete_note(ctx, DeleteNote { id: "n-1".into() })
    }

    #[test]
    fn delete_asks_first_and_deletes_nothing() {
        let mock = one_note();
        let ctx = Ctx::testing(testing::envelope(), mock.clone());
        let err = delete_n1(&ctx).unwrap_err();
        let asked = err.input_required().expect("asks for confirmation");
        assert_eq!(asked.keys(), [CONFIRM]);
        let Some(InputRequest::Form {
            message,
            requested_schema,
        }) = asked.request(CONFIRM)
        else {
            panic!("{asked:?}")
        };
        assert!(
            message.contains("n-1") && message.contains("\"buy milk\""),
            "{message}"
        );
        assert_eq!(
            requested_schema["properties"][CONFIRM],
            json!({"type": "boolean", "title": "Delete this note", "default": false})
        );
        assert_eq!(requested_schema["required"], json!([CONFIRM]));
        assert_eq!(deletes(&mock), 0);
    }

    #[test]
    fn delete_deletes_once_confirmed() {
        let mock = one_note().answer(
            CONFIRM,
            json!({"action": "accept", "content": {"confirm": true}}),
        );
        let run = testing::run(testing::envelope(), &mock, delete_n1);
        assert_eq!(run.outcome.text().as_deref(), Some("deleted note n-1"));
        assert_eq!(run.asked.len(), 1);
        let sent = mock.requests();
        let last = sent.last().unwrap();
        assert_eq!(
            (last.method, last.path.as_str()),
            (Method::Delete, "/notes/n-1")
        );
        assert_eq!(deletes(&mock), 1);
    }

    #[test]
    fn delete_keeps_the_note_without_a_yes() {
        for answer in [
            json!({"action": "decline"}),
            json!({"action": "cancel"}),
            json!({"action": "accept", "content": {"confirm": false}}),
            json!({"action": "accept", "content": {}}),
            json!({"action": "accept", "content": {"confirm": "yes"}}),
        ] {
            let mock = one_note().answer(CONFIRM, answer.clone());
            let run = testing::run(testing::envelope(), &mock, delete_n1);
            assert_eq!(
                run.outcome.text().as_deref(),
                Some("kept note n-1"),
                "{answer}"
            );
            assert_eq!(deletes(&mock), 0, "{answer}");
        }
    }

    #[test]
    fn delete_keeps_the_note_when_the_client_cannot_be_asked() {
        let cannot = one_note().client(ClientCapabilities::none());
        let failed = one_note().unavailable(CONFIRM, "the client did not answer in time");
        for mock in [cannot, failed] {
            let run = testing::run(testing::envelope(), &mock, delete_n1);
            let text = run.outcome.text().unwrap();
            assert!(text.starts_with("kept note n-1"), "{text}");
            assert_eq!(deletes(&mock), 0);
        }
    }

    #[test]
    fn delete_of_a_missing_note_asks_nothing() {
        let mock = one_note();
        let ctx = Ctx::testing(testing::envelope(), mock.clone());
        let err = delete_note(&ctx, DeleteNote { id: "n-9".into() }).unwrap_err();
        assert!(
            matches!(&err, ToolError::InvalidInput(m) if m.contains("n-9")),
            "{err:?}"
        );
        assert_eq!(deletes(&mock), 0);
    }

    #[test]
    fn long_notes_are_named_by_a_short_title() {
        assert_eq!(title("short\nsecond line"), "short");
        let long = "x".repeat(100);
        assert_eq!(title(&long), format!("{}…", "x".repeat(TITLE_CHARS)));
    }

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
