//! The example tools, called through the sandbox as the host would.

use airlock_host::sandbox::{
    CallError, CallRequest, Content, InputRequest, InputResponse, Outcome, ToolErrorKind,
};
use airlock_tests::{NotesService, TestHost, envelope, guests};
use serde_json::{Value, json};

#[tokio::test]
async fn echo_returns_its_text() {
    let host = TestHost::new();
    let echo = host.load(guests::ECHO).await;
    let out = host
        .call(&echo, "echo", json!({"text": "hi"}))
        .await
        .unwrap();
    assert_eq!(out.content, vec![Content::Text("hi".into())]);
    assert_eq!(out.structured, None);
}

#[tokio::test]
async fn echo_describes_itself_from_its_doc_comment_and_types() {
    let host = TestHost::new();
    let echo = host.load(guests::ECHO).await;
    let [tool] = echo.tools() else {
        panic!("echo has one tool: {:?}", echo.tools())
    };
    assert_eq!(tool.name, "echo");
    assert_eq!(tool.title.as_deref(), Some("Echo"));
    assert_eq!(tool.description, "Return `text` unchanged.");
    assert_eq!(tool.input_schema["type"], "object");
    assert_eq!(tool.input_schema["required"], json!(["text"]));
    assert_eq!(tool.input_schema["properties"]["text"]["type"], "string");
    assert_eq!(tool.annotations.read_only_hint, Some(true));
    assert_eq!(tool.output_schema, None);
    assert!(
        echo.imports()
            .iter()
            .all(|i| i.starts_with("airlock:tool/"))
    );
}

#[tokio::test]
async fn arguments_are_checked_against_the_input_schema_before_the_guest_runs() {
    let host = TestHost::new();
    let echo = host.load(guests::ECHO).await;
    let cases = [
        (json!({}), "text"),
        (json!({"text": 5}), "/text"),
        (json!([1, 2]), "object"),
        (json!("hi"), "object"),
    ];
    for (args, needle) in cases {
        match host.call(&echo, "echo", args.clone()).await {
            Err(CallError::InvalidInput(msg)) => {
                assert!(
                    msg.contains(needle),
                    "{args}: {msg:?} should mention {needle}"
                )
            }
            other => panic!("{args}: expected invalid input, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unknown_tools_are_reported_by_name() {
    let host = TestHost::new();
    let echo = host.load(guests::ECHO).await;
    let err = host.call(&echo, "nope", json!({})).await.unwrap_err();
    assert_eq!(err, CallError::UnknownTool("nope".into()));
}

#[tokio::test]
async fn whoami_returns_exactly_the_envelope_the_host_minted() {
    let host = TestHost::new();
    let whoami = host.load(guests::WHOAMI).await;
    let env = envelope("globex", "carol", "whoami", &["notes"]);
    let out = host
        .call_as(&whoami, env.clone(), json!({}), NotesService::new())
        .await
        .unwrap();
    let got = out.structured.expect("structured output");
    assert_eq!(got["envelope_id"], env.envelope_id());
    assert_eq!(got["tenant"], "globex");
    assert_eq!(
        got["actor"],
        json!({"kind": "user", "subject": "carol", "tenant": "globex", "issuer": "https://idp.test"})
    );
    assert_eq!(
        got["agent"],
        json!({"client_id": "test-client", "agent_id": "test-agent"})
    );
    assert_eq!(got["trace_id"], env.trace_id());
    assert_eq!(got["tool"], "whoami");
    assert_eq!(got["scopes"], json!(["tools:call"]));
    assert_eq!(
        got["delegations"],
        json!([{"service": "notes", "mode": "service"}])
    );
    assert_eq!(got["issued_at"], env.issued_at());
    assert_eq!(got["expires_at"], env.expires_at());
    let schema = whoami.tools()[0]
        .output_schema
        .as_ref()
        .expect("output schema");
    assert_eq!(schema["type"], "object");
}

#[tokio::test]
async fn notes_are_kept_per_user_by_the_identity_the_host_supplies() {
    let host = TestHost::new();
    let notes = host.load(guests::NOTES).await;
    let names: Vec<_> = notes.tools().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["add_note", "list_notes", "delete_note"]);
    let service = NotesService::new();
    let call = |user: &str, tool: &str, args| {
        let env = envelope("acme", user, tool, &["notes"]);
        host.call_as(&notes, env, args, service.clone())
    };

    let added = call("alice", "add_note", json!({"text": "milk"}))
        .await
        .unwrap();
    let id = added.structured.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    call("alice", "add_note", json!({"text": "eggs"}))
        .await
        .unwrap();
    call("bob", "add_note", json!({"text": "bob's secret"}))
        .await
        .unwrap();

    let alice = call("alice", "list_notes", json!({})).await.unwrap();
    let texts: Vec<_> = alice.structured.unwrap()["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["milk", "eggs"]);

    // A client that cannot be asked: nothing is deleted.
    let kept = call("alice", "delete_note", json!({"id": id}))
        .await
        .unwrap();
    assert!(
        matches!(&kept.content[..], [Content::Text(t)] if t.starts_with(&format!("kept note {id}"))),
        "{kept:?}"
    );
    // One that can: the first round asks, naming the note; a decline keeps
    // it; a confirmation in the next round deletes it.
    let round = |answer: Option<Value>, state: Option<Vec<u8>>| {
        let mut request = CallRequest::new(
            envelope("acme", "alice", "delete_note", &["notes"]),
            json!({"id": id}).to_string(),
            service.clone(),
        );
        request.client.elicitation_form = true;
        if let Some(answer) = answer {
            request.responses = vec![("confirm".into(), InputResponse::Answered(answer))];
        }
        request.state = state;
        host.round(&notes, request)
    };
    let Outcome::InputRequired(asked) = round(None, None).await.unwrap() else {
        panic!("the first round must ask");
    };
    let [(key, InputRequest::Form { message, schema })] = &asked.requests[..] else {
        panic!("one form: {asked:?}");
    };
    assert_eq!(key, "confirm");
    assert!(message.contains("milk"), "{message}");
    assert_eq!(schema["properties"]["confirm"]["type"], "boolean");
    let declined = round(Some(json!({"action": "decline"})), asked.state.clone())
        .await
        .unwrap();
    assert!(
        matches!(declined, Outcome::Complete(ref o) if o.content == vec![Content::Text(format!("kept note {id}"))]),
        "{declined:?}"
    );
    let confirmed = round(
        Some(json!({"action": "accept", "content": {"confirm": true}})),
        asked.state.clone(),
    )
    .await
    .unwrap();
    let Outcome::Complete(deleted) = confirmed else {
        panic!("{confirmed:?}");
    };
    assert_eq!(
        deleted.content,
        vec![Content::Text(format!("deleted note {id}"))]
    );
    let again = call("alice", "delete_note", json!({"id": id}))
        .await
        .unwrap_err();
    assert!(
        matches!(&again, CallError::Tool { kind: ToolErrorKind::InvalidInput, message } if message.contains(&id)),
        "{again:?}"
    );

    // Bob's note was never visible to alice, and the service saw who asked.
    let seen = service.seen();
    assert!(seen.iter().all(|s| s.tenant == "acme"));
    assert_eq!(seen.iter().filter(|s| s.subject == "bob").count(), 1);
}

#[tokio::test]
async fn add_note_enforces_its_schema_constraints() {
    let host = TestHost::new();
    let notes = host.load(guests::NOTES).await;
    let env = envelope("acme", "alice", "add_note", &["notes"]);
    let err = host
        .call_as(&notes, env, json!({"text": ""}), NotesService::new())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::InvalidInput(_)), "{err:?}");
}

#[tokio::test]
async fn services_the_envelope_does_not_grant_are_refused() {
    let host = TestHost::new();
    let notes = host.load(guests::NOTES).await;
    // Default delegate: no services configured.
    let err = host
        .call(&notes, "list_notes", json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Tool { kind: ToolErrorKind::Denied, message } if message.contains("no services are configured")),
        "{err:?}"
    );
    // A service exists, but this call's envelope does not grant it.
    let service = NotesService::new();
    let env = envelope("acme", "alice", "list_notes", &[]);
    let err = host
        .call_as(&notes, env, json!({}), service.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Tool {
                kind: ToolErrorKind::Denied,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(service.seen().is_empty());
}

#[tokio::test]
async fn tickets_describes_its_tools_and_needs_its_service() {
    let host = TestHost::new();
    let tickets = host.load(guests::TICKETS).await;
    let mut names: Vec<&str> = tickets.tools().iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["list_tickets", "open_ticket"]);
    assert!(
        tickets
            .imports()
            .iter()
            .all(|i| i.starts_with("airlock:tool/"))
    );
    // Without a tickets service the tool says so; it never reaches anything.
    let err = host
        .call(&tickets, "list_tickets", json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CallError::Tool {
                kind: ToolErrorKind::Denied,
                ..
            }
        ),
        "{err:?}"
    );
}
