//! The calling user's calendar, at a third-party calendar service they
//! connect with their own account.
//!
//! The service is configured `user-token`: the host attaches the token the
//! user granted airlock at the calendar provider, from its vault. When the
//! user has not connected an account yet, the delegate answers
//! `not-connected`; the tool passes that on unchanged (`?`), and the host
//! turns the call into a request to the user to connect. The tool never sees
//! a token and never says whose calendar it wants.

use airlock_sdk::{Content, Ctx, IntoToolOutput, Json, ToolError, ToolOutput, tool};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The service these tools call, as configured for the tenant.
const SERVICE: &str = "calendar";

/// A calendar event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// What it is.
    pub title: String,
    /// When it starts (RFC 3339).
    pub start: String,
    /// When it ends (RFC 3339).
    pub end: String,
}

/// The events of the connected calendar account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventList {
    /// The calendar account the service answered for (its own account
    /// name, not necessarily the airlock user's).
    pub owner: String,
    /// The events, earliest first.
    pub events: Vec<Event>,
}

/// The arguments of `add_event`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct AddEvent {
    /// What it is (1 to 200 characters).
    #[schemars(length(min = 1, max = 200))]
    pub title: String,
    /// When it starts, RFC 3339 (`2026-03-02T09:00:00Z`).
    pub start: String,
    /// When it ends, RFC 3339.
    pub end: String,
}

/// [`EventList`] as output: a one-line summary for people, the list as JSON
/// text and as structured content for programs.
pub struct Listed(pub EventList);

impl Listed {
    fn summary(&self) -> String {
        let list = &self.0;
        match list.events.as_slice() {
            [] => format!("No events in {}'s calendar.", list.owner),
            [one] => format!(
                "1 event in {}'s calendar: {} ({}).",
                list.owner, one.title, one.start
            ),
            [first, ..] => format!(
                "{} events in {}'s calendar; first: {} ({}).",
                list.events.len(),
                list.owner,
                first.title,
                first.start
            ),
        }
    }
}

impl IntoToolOutput for Listed {
    fn into_tool_output(self) -> Result<ToolOutput, ToolError> {
        let summary = self.summary();
        let mut output = Json(self.0).into_tool_output()?;
        output.content.insert(0, Content::Text(summary));
        Ok(output)
    }

    fn output_schema() -> Option<serde_json::Value> {
        Json::<EventList>::output_schema()
    }
}

/// List the events in the calling user's connected calendar.
#[tool(title = "List calendar events", read_only, idempotent, open_world)]
pub fn list_events(ctx: &Ctx) -> Result<Listed, ToolError> {
    let list = ctx
        .delegate(SERVICE)
        .get("/events")
        .send()?
        .error_for_status()?
        .json()?;
    Ok(Listed(list))
}

/// Add an event to the calling user's connected calendar.
#[tool(title = "Add calendar event", open_world)]
pub fn add_event(ctx: &Ctx, args: AddEvent) -> Result<Json<Event>, ToolError> {
    if args.title.trim().is_empty() {
        return Err(ToolError::invalid_input("`title` may not be blank"));
    }
    let event = ctx
        .delegate(SERVICE)
        .post("/events")
        .json(&args)?
        .send()?
        .error_for_status()?
        .json()?;
    Ok(Json(event))
}

airlock_sdk::export_tools!(list_events, add_event);

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::testing::{self, MockDelegate};
    use airlock_sdk::{DelegateError, Method, Response};

    fn events() -> serde_json::Value {
        serde_json::json!({
            "owner": "alice",
            "events": [
                {"title": "Quarterly planning", "start": "2026-03-02T09:00:00Z", "end": "2026-03-02T10:30:00Z"},
                {"title": "Dentist", "start": "2026-03-05T16:00:00Z", "end": "2026-03-05T16:45:00Z"},
            ],
        })
    }

    #[test]
    fn list_events_gets_the_events_and_summarises_them() {
        let mock = MockDelegate::new().route(SERVICE, |req| {
            assert_eq!((req.method, req.path.as_str()), (Method::Get, "/events"));
            Ok(Response::json_body(200, &events()))
        });
        let ctx = Ctx::testing(testing::envelope(), mock.clone());
        let listed = list_events(&ctx).unwrap();
        assert_eq!(listed.0.owner, "alice");
        assert_eq!(listed.0.events.len(), 2);
        let output = listed.into_tool_output().unwrap();
        assert_eq!(
            output.content[0],
            Content::Text(
                "2 events in alice's calendar; first: Quarterly planning (2026-03-02T09:00:00Z)."
                    .into()
            )
        );
        assert_eq!(output.structured, Some(events()));
        assert!(Listed::output_schema().is_some());
        assert_eq!(mock.requests().len(), 1);
    }

    #[test]
    fn not_connected_is_passed_on_unchanged() {
        let message = "connect your calendar account first";
        let mock = MockDelegate::new().route(SERVICE, move |_| {
            Err(DelegateError::NotConnected(message.into()))
        });
        let ctx = Ctx::testing(testing::envelope(), mock);
        let err = list_events(&ctx).err().unwrap();
        assert_eq!(err, ToolError::NotConnected(message.into()));
        let mock = MockDelegate::new().route(SERVICE, move |_| {
            Err(DelegateError::NotConnected(message.into()))
        });
        let ctx = Ctx::testing(testing::envelope(), mock);
        let args = AddEvent {
            title: "x".into(),
            start: "2026-01-01T00:00:00Z".into(),
            end: "2026-01-01T01:00:00Z".into(),
        };
        assert_eq!(
            add_event(&ctx, args).unwrap_err(),
            ToolError::NotConnected(message.into())
        );
    }

    #[test]
    fn add_event_posts_the_event() {
        let mock = MockDelegate::new().route(SERVICE, |req| {
            assert_eq!((req.method, req.path.as_str()), (Method::Post, "/events"));
            let body: serde_json::Value = req.json()?;
            Ok(Response::json_body(201, &body))
        });
        let ctx = Ctx::testing(testing::envelope(), mock.clone());
        let Json(event) = add_event(
            &ctx,
            AddEvent {
                title: "Offsite".into(),
                start: "2026-04-01T09:00:00Z".into(),
                end: "2026-04-01T17:00:00Z".into(),
            },
        )
        .unwrap();
        assert_eq!(event.title, "Offsite");
        assert_eq!(
            mock.requests()[0].json::<serde_json::Value>().unwrap()["start"],
            "2026-04-01T09:00:00Z"
        );
    }

    #[test]
    fn a_refusal_by_the_service_is_an_error_and_a_blank_title_sends_nothing() {
        let mock = MockDelegate::new().route(SERVICE, |_| {
            Ok(Response::json_body(
                401,
                &serde_json::json!({"error": "invalid_token"}),
            ))
        });
        let ctx = Ctx::testing(testing::envelope(), mock);
        assert!(matches!(list_events(&ctx), Err(ToolError::Upstream(_))));
        let mock = MockDelegate::new();
        let ctx = Ctx::testing(testing::envelope(), mock.clone());
        let args = AddEvent {
            title: " ".into(),
            start: "a".into(),
            end: "b".into(),
        };
        assert!(matches!(
            add_event(&ctx, args),
            Err(ToolError::InvalidInput(_))
        ));
        assert!(mock.requests().is_empty());
    }
}
