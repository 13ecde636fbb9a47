//! Support tickets opened and listed on behalf of the calling user, in the
//! `tickets` service.
//!
//! The service is configured `on-behalf-of`: for each request the host trades
//! the caller's own token for a short-lived one for that service (RFC 8693
//! token exchange), so the service sees the user, with the host as the party
//! acting for them. The tool does nothing different for it: it names the
//! service and a path, and never sees either token.

use airlock_sdk::{Ctx, Json, ToolError, tool};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The service these tools call, as configured for the tenant.
const SERVICE: &str = "tickets";

/// A ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ticket {
    /// The service's id for the ticket.
    pub id: String,
    /// What the ticket is about.
    pub title: String,
    /// Its state (`open`, …).
    pub status: String,
}

/// The arguments of `open_ticket`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct OpenTicket {
    /// What the ticket is about (1 to 200 characters).
    #[schemars(length(min = 1, max = 200))]
    pub title: String,
}

/// The calling user's tickets, and who the service saw acting.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct TicketList {
    /// The tickets, oldest first.
    pub tickets: Vec<Ticket>,
    /// The user the service acted for (the exchanged token's subject).
    pub acting_for: String,
    /// The party acting for them (the exchanged token's `act`): the host.
    pub via: String,
}

/// A ticket just opened, and who the service saw acting.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct OpenedTicket {
    /// The service's id for the ticket.
    pub id: String,
    /// What the ticket is about.
    pub title: String,
    /// Its state: `open`.
    pub status: String,
    /// The user the service acted for (the exchanged token's subject).
    pub acting_for: String,
    /// The party acting for them (the exchanged token's `act`): the host.
    pub via: String,
}

/// List the calling user's support tickets.
#[tool(title = "List tickets", read_only, idempotent)]
pub fn list_tickets(ctx: &Ctx) -> Result<Json<TicketList>, ToolError> {
    let list = ctx
        .delegate(SERVICE)
        .get("/tickets")
        .send()?
        .error_for_status()?
        .json()?;
    Ok(Json(list))
}

/// Open a support ticket for the calling user.
#[tool(title = "Open ticket")]
pub fn open_ticket(ctx: &Ctx, args: OpenTicket) -> Result<Json<OpenedTicket>, ToolError> {
    if args.title.trim().is_empty() {
        return Err(ToolError::invalid_input("`title` may not be blank"));
    }
    let ticket = ctx
        .delegate(SERVICE)
        .post("/tickets")
        .json(&args)?
        .send()?
        .error_for_status()?
        .json()?;
    Ok(Json(ticket))
}

airlock_sdk::export_tools!(list_tickets, open_ticket);

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::testing::{self, MockDelegate};
    use airlock_sdk::{Method, Response};

    #[test]
    fn open_ticket_posts_the_title_to_the_tickets_service() {
        let mock = MockDelegate::new().route(SERVICE, |req| {
            let body: serde_json::Value = req.json()?;
            Ok(Response::json_body(
                201,
                &serde_json::json!({
                    "id": "T-1", "title": body["title"], "status": "open",
                    "acting_for": "alice", "via": "airlock-host",
                }),
            ))
        });
        let ctx = Ctx::testing(testing::envelope(), mock.clone());
        let Json(ticket) = open_ticket(
            &ctx,
            OpenTicket {
                title: "printer on fire".into(),
            },
        )
        .unwrap();
        assert_eq!(
            (
                ticket.id.as_str(),
                ticket.title.as_str(),
                ticket.via.as_str()
            ),
            ("T-1", "printer on fire", "airlock-host")
        );
        let sent = mock.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].method, sent[0].path.as_str()),
            (Method::Post, "/tickets")
        );
        assert_eq!(
            sent[0].json::<serde_json::Value>().unwrap(),
            serde_json::json!({"title": "printer on fire"})
        );
    }

    #[test]
    fn list_tickets_reports_who_the_service_saw() {
        let mock = MockDelegate::new().route(SERVICE, |req| {
            assert_eq!((req.method, req.path.as_str()), (Method::Get, "/tickets"));
            Ok(Response::json_body(
                200,
                &serde_json::json!({
                    "tickets": [{"id": "T-1", "title": "a", "status": "open"}],
                    "acting_for": "alice", "via": "airlock-host",
                }),
            ))
        });
        let ctx = Ctx::testing(testing::envelope(), mock);
        let Json(list) = list_tickets(&ctx).unwrap();
        assert_eq!(list.tickets.len(), 1);
        assert_eq!(
            (list.acting_for.as_str(), list.via.as_str()),
            ("alice", "airlock-host")
        );
    }

    #[test]
    fn a_refusal_by_the_service_is_an_error_not_a_list() {
        let mock = MockDelegate::new().route(SERVICE, |_| {
            Ok(Response::json_body(
                401,
                &serde_json::json!({"error": "invalid_token", "check": "aud"}),
            ))
        });
        let ctx = Ctx::testing(testing::envelope(), mock);
        assert!(list_tickets(&ctx).is_err());
    }

    #[test]
    fn a_blank_title_is_refused_before_any_request() {
        let mock = MockDelegate::new();
        let ctx = Ctx::testing(testing::envelope(), mock.clone());
        let err = open_ticket(&ctx, OpenTicket { title: "  ".into() }).unwrap_err();
        assert!(matches!(err, ToolError::InvalidInput(_)), "{err:?}");
        assert!(mock.requests().is_empty());
    }
}
