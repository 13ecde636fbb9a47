//! Unit tests for asking the client for input, content blocks and the export glue.

use serde_json::json;

use crate::__private::{self, Entry};
use crate::input::{Frame, MAX_STATE_BYTES};
use crate::testing::{self, MockDelegate, Outcome, ProgressReport};
use crate::wit::airlock::tool::types as wit;
use crate::{
    ClientCapabilities, Content, Ctx, ElicitAction, Elicitation, Field, FormSchema, IfAvailable,
    InputRequest, InputResponse, ResourceLink, Root, SamplingRequest, ToolError, ToolOutput,
};

fn confirm_form() -> Elicitation {
    Elicitation::form(
        "Go ahead?",
        FormSchema::new().field(Field::boolean("ok").default(false).required()),
    )
}

/// Asks "ok" and answers "done" on an accepted `true`, "kept" otherwise.
fn confirm(ctx: &Ctx) -> Result<String, ToolError> {
    let answer = ctx.elicit("ok", confirm_form()).if_available()?;
    Ok(match answer {
        Some(a) if a.accepted() && a.bool("ok") == Some(true) => "done".into(),
        _ => "kept".into(),
    })
}

fn ctx() -> Ctx {
    Ctx::testing(testing::envelope(), MockDelegate::new())
}

fn asked(result: Result<impl crate::IntoToolOutput, ToolError>) -> crate::InputRequired {
    match Outcome::of(result) {
        Outcome::InputRequired(i) => i,
        other => unreachable!("expected input required, got {other:?}"),
    }
}

#[test]
fn the_first_round_asks_and_the_error_is_not_shown_as_one() {
    let err = confirm(&ctx()).unwrap_err();
    assert!(err.is_input_required());
    assert_eq!(err.to_string(), "input required: ok");
    let asked = err.input_required().unwrap();
    assert_eq!(asked.keys(), ["ok"]);
    let Some(InputRequest::Form {
        message,
        requested_schema,
    }) = asked.request("ok")
    else {
        unreachable!("{asked:?}")
    };
    assert_eq!(message, "Go ahead?");
    assert_eq!(
        requested_schema,
        &json!({
            "type": "object",
            "properties": {"ok": {"type": "boolean", "default": false}},
            "required": ["ok"],
        })
    );
    // Always a state (here an empty frame): answers count only with it.
    assert!(asked.state_bytes().is_some());
}

#[test]
fn an_answer_is_used_instead_of_asking() {
    let accept = ctx().with_answer("ok", json!({"action": "accept", "content": {"ok": true}}));
    assert_eq!(confirm(&accept).unwrap(), "done");
    let unticked = ctx().with_answer("ok", json!({"action": "accept", "content": {"ok": false}}));
    assert_eq!(confirm(&unticked).unwrap(), "kept");
    for action in ["decline", "cancel"] {
        let ctx = ctx().with_answer("ok", json!({ "action": action }));
        assert_eq!(confirm(&ctx).unwrap(), "kept");
        let answer = ctx.elicit("ok", confirm_form()).unwrap();
        assert!(!answer.accepted());
        assert!(answer.content.is_empty());
    }
}

#[test]
fn unavailable_is_a_clear_error_the_tool_can_match() {
    let ctx = ctx().with_unavailable("ok", "the client timed out");
    let err = ctx.elicit("ok", confirm_form()).unwrap_err();
    let ToolError::Unavailable(message) = &err else {
        unreachable!("{err:?}")
    };
    assert!(message.contains("the client timed out"), "{message}");
    assert_eq!(confirm(&ctx).unwrap(), "kept");
    // Passed on unhandled, the caller sees an error, not a crash.
    assert!(matches!(
        wit::ToolError::from(err),
        wit::ToolError::Other(m) if m.contains("timed out")
    ));
}

#[test]
fn a_client_without_the_capability_is_not_asked() {
    let ctx = ctx().with_client(ClientCapabilities {
        elicitation_form: false,
        ..ClientCapabilities::all()
    });
    let err = ctx.elicit("ok", confirm_form()).unwrap_err();
    assert!(
        matches!(&err, ToolError::Unavailable(m) if m.contains("a form")),
        "{err:?}"
    );
    assert_eq!(confirm(&ctx).unwrap(), "kept");

    let none = ctx.with_client(ClientCapabilities::none());
    assert!(matches!(
        none.sample("s", SamplingRequest::new(5).user("hi")),
        Err(ToolError::Unavailable(_))
    ));
    assert!(matches!(none.roots("r"), Err(ToolError::Unavailable(_))));
    assert!(matches!(
        none.elicit_url("u", "Approve", "https://example.com/a"),
        Err(ToolError::Unavailable(_))
    ));
}

/// Asks one thing after another, then reports both answers.
fn two_steps(ctx: &Ctx) -> Result<String, ToolError> {
    ctx.progress(0.0, Some(2.0), Some("starting"));
    let name = ctx.elicit(
        "name",
        Elicitation::form(
            "Name?",
            FormSchema::new().field(Field::string("name").required()),
        ),
    )?;
    ctx.progress(1.0, Some(2.0), None);
    let summary = ctx.sample("summary", SamplingRequest::new(50).user("Summarise"))?;
    ctx.log().info("both answered");
    Ok(format!(
        "{} / {}",
        name.str("name").unwrap_or_default(),
        summary.text().unwrap_or_default()
    ))
}

#[test]
fn answers_carry_over_to_later_rounds() {
    let mock = MockDelegate::new()
        .answer(
            "name",
            json!({"action": "accept", "content": {"name": "Ada"}}),
        )
        .answer(
            "summary",
            json!({"role": "assistant", "content": {"type": "text", "text": "all good"},
                   "model": "m", "stopReason": "endTurn"}),
        );
    let run = testing::run(testing::envelope(), &mock, two_steps);
    assert_eq!(run.outcome.text().as_deref(), Some("Ada / all good"));
    let keys: Vec<_> = run.asked.iter().map(|a| a.keys()).collect();
    assert_eq!(keys, [vec!["name"], vec!["summary"]]);
    // The second round's state carries the first answer.
    assert!(run.asked[1].carried().contains_key("name"));
    // Three rounds: each fresh instance reports from the start.
    let progress: Vec<_> = mock.progress().iter().map(|p| p.progress).collect();
    assert_eq!(progress, [0.0, 0.0, 1.0, 0.0, 1.0]);
    assert_eq!(
        mock.logs(),
        [("info".to_string(), "both answered".to_string())]
    );
}

#[test]
fn progress_reports_are_recorded_in_order() {
    let mock = MockDelegate::new();
    let ctx = Ctx::testing(testing::envelope(), mock.clone());
    ctx.progress(1.0, None, None);
    ctx.progress(2.0, Some(4.0), Some("half"));
    assert_eq!(
        mock.progress(),
        [
            ProgressReport {
                progress: 1.0,
                total: None,
                message: None
            },
            ProgressReport {
                progress: 2.0,
                total: Some(4.0),
                message: Some("half".into())
            },
        ]
    );
}

#[test]
fn run_stops_at_a_key_the_mock_cannot_answer() {
    let mock = MockDelegate::new().answer("name", json!({"action": "accept", "content": {}}));
    let run = testing::run(testing::envelope(), &mock, two_steps);
    let asked = run.outcome.input_required().unwrap();
    assert_eq!(asked.keys(), ["summary"]);
    let Some(InputRequest::Sampling(params)) = asked.request("summary") else {
        unreachable!("{asked:?}")
    };
    assert_eq!(
        params,
        &json!({"messages": [{"role": "user", "content": {"type": "text", "text": "Summarise"}}],
                "maxTokens": 50})
    );
}

#[test]
fn run_gives_up_on_a_tool_that_never_finishes() {
    let mock = MockDelegate::new().answer("x", json!({"action": "cancel"}));
    let mut round = 0;
    let run = testing::run(testing::envelope(), &mock, |ctx: &Ctx| {
        round += 1;
        ctx.elicit(&format!("x{round}"), confirm_form())?;
        Ok(String::new())
    });
    // "x1" has no canned answer: stops after one round.
    assert_eq!(run.asked.len(), 1);
    let run = testing::run(testing::envelope(), &mock, |ctx: &Ctx| -> Result<(), _> {
        // Has its answer, and asks again anyway, every round.
        let _ = ctx.elicit("x", confirm_form())?;
        Err(ctx.input_required(vec![("x".into(), InputRequest::Roots)]))
    });
    assert!(matches!(run.outcome.error(), Some(ToolError::Internal(_))));
    assert_eq!(run.asked.len(), testing::MAX_ROUNDS);
}

#[test]
fn ask_puts_every_missing_request_in_one_round() {
    let ctx = ctx().with_answer(
        "roots",
        json!({"roots": [{"uri": "file:///a", "name": "a"}]}),
    );
    let asked = asked(
        ctx.ask()
            .elicit("ok", confirm_form())
            .roots("roots")
            .sample("s", SamplingRequest::new(10).user("x"))
            .elicit("visit", Elicitation::url("Approve", "https://example.com"))
            .answers()
            .map(|_| ()),
    );
    assert_eq!(asked.keys(), ["ok", "s", "visit"]);
    // The answer already there is carried to the next round.
    assert!(asked.carried().contains_key("roots"));

    let next = Ctx::testing(testing::envelope(), MockDelegate::new())
        .next_round(&asked)
        .with_answer("ok", json!({"action": "accept", "content": {"ok": true}}))
        .with_answer("s", json!({"role": "assistant", "content": [
            {"type": "text", "text": "one "}, {"type": "image", "data": "", "mimeType": "image/png"},
            {"type": "text", "text": "two"}]}))
        .with_unavailable("visit", "declined by the client");
    let answers = next
        .ask()
        .elicit("ok", confirm_form())
        .roots("roots")
        .sample("s", SamplingRequest::new(10).user("x"))
        .elicit("visit", Elicitation::url("Approve", "https://example.com"))
        .answers()
        .unwrap();
    assert_eq!(answers.elicit("ok").unwrap().action, ElicitAction::Accept);
    assert_eq!(
        answers.roots("roots").unwrap(),
        [Root {
            uri: "file:///a".into(),
            name: Some("a".into())
        }]
    );
    assert_eq!(
        answers.sample("s").unwrap().text().as_deref(),
        Some("one two")
    );
    assert!(matches!(
        answers.elicit("visit"),
        Err(ToolError::Unavailable(_))
    ));
    assert!(matches!(
        answers.json("never-asked"),
        Err(ToolError::Internal(_))
    ));
}

#[test]
fn state_goes_to_the_next_round_and_stays_until_replaced() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Step {
        n: u32,
    }
    let first = ctx();
    assert_eq!(first.state::<Step>().unwrap(), None);
    first.set_state(&Step { n: 1 }).unwrap();
    let asked = asked(first.roots("r").map(|_| ()));
    assert_eq!(asked.state::<Step>().unwrap(), Some(Step { n: 1 }));

    let second = first
        .next_round(&asked)
        .with_answer("r", json!({"roots": []}));
    assert_eq!(second.roots("r").unwrap(), []);
    assert_eq!(second.state::<Step>().unwrap(), Some(Step { n: 1 }));
    // Not replaced: carried again.
    let again = self::asked(second.elicit("ok", confirm_form()).map(|_| ()));
    assert_eq!(again.state::<Step>().unwrap(), Some(Step { n: 1 }));
    assert!(again.carried().contains_key("r"));
    // A different type is a bug in the tool, reported as one.
    assert!(matches!(
        second.state::<Vec<String>>(),
        Err(ToolError::Internal(_))
    ));
    second.clear_state();
    assert_eq!(second.state::<Step>().unwrap(), None);
}

#[test]
fn state_that_does_not_parse_is_dropped_and_the_tool_asks_again() {
    let frame = Frame::decode(Some(b"not the sdk's framing"));
    assert!(frame.answers.is_empty() && frame.state.is_none());
}

#[test]
fn bad_keys_and_oversized_state_are_bugs_not_requests() {
    for key in ["", "has space", "slash/y", &"k".repeat(65)] {
        let err = ctx().elicit(key, confirm_form()).unwrap_err();
        assert!(matches!(err, ToolError::Internal(_)), "{key:?}: {err:?}");
    }
    let err = ctx()
        .ask()
        .roots("same")
        .roots("same")
        .answers()
        .unwrap_err();
    assert!(
        matches!(&err, ToolError::Internal(m) if m.contains("twice")),
        "{err:?}"
    );

    let ctx = ctx();
    ctx.set_state(&"x".repeat(MAX_STATE_BYTES)).unwrap();
    let err = ctx.roots("r").unwrap_err();
    assert!(
        matches!(&err, ToolError::Internal(m) if m.contains("16384")),
        "{err:?}"
    );
}

#[test]
fn malformed_answers_are_invalid_input() {
    let ctx = ctx()
        .with_answer("ok", json!({"action": "maybe"}))
        .with_answer("s", json!({"role": "assistant"}))
        .with_answer("r", json!({"roots": "none"}));
    assert!(matches!(
        ctx.elicit("ok", confirm_form()),
        Err(ToolError::InvalidInput(m)) if m.contains("`ok`")
    ));
    assert!(matches!(
        ctx.sample("s", SamplingRequest::new(1)),
        Err(ToolError::InvalidInput(_))
    ));
    assert!(matches!(ctx.roots("r"), Err(ToolError::InvalidInput(_))));
}

#[test]
fn elicit_answers_read_typed_fields() {
    #[derive(serde::Deserialize)]
    struct Form {
        name: String,
        age: u8,
    }
    let ctx = ctx().with_answer(
        "f",
        json!({"action": "accept", "content": {"name": "Ada", "age": 36, "ok": true}}),
    );
    let a = ctx.elicit("f", Elicitation::form("?", json!({}))).unwrap();
    assert_eq!(a.str("name"), Some("Ada"));
    assert_eq!(a.i64("age"), Some(36));
    assert_eq!(a.f64("age"), Some(36.0));
    assert_eq!(a.bool("ok"), Some(true));
    assert_eq!(a.bool("name"), None);
    let form: Form = a.parse().unwrap();
    assert_eq!((form.name.as_str(), form.age), ("Ada", 36));
    assert!(matches!(
        a.parse::<Vec<u8>>(),
        Err(ToolError::InvalidInput(_))
    ));
}

#[test]
fn form_fields_build_the_restricted_schema() {
    let schema = serde_json::Value::from(
        FormSchema::new()
            .field(
                Field::string("email")
                    .title("Email")
                    .description("Where to write")
                    .format("email")
                    .min_length(3)
                    .max_length(100)
                    .required(),
            )
            .field(Field::integer("n").minimum(1).maximum(9))
            .field(Field::number("x"))
            .field(Field::choice("size", ["s", "m"]).default("m")),
    );
    assert_eq!(
        schema,
        json!({
            "type": "object",
            "properties": {
                "email": {"type": "string", "title": "Email", "description": "Where to write",
                          "format": "email", "minLength": 3, "maxLength": 100},
                "n": {"type": "integer", "minimum": 1, "maximum": 9},
                "x": {"type": "number"},
                "size": {"type": "string", "enum": ["s", "m"], "default": "m"},
            },
            "required": ["email"],
        })
    );
    assert_eq!(
        FormSchema::new().to_value(),
        json!({"type": "object", "properties": {}})
    );
}

#[test]
fn sampling_requests_are_create_message_params() {
    let params = SamplingRequest::new(100)
        .system_prompt("Be brief.")
        .user("hi")
        .assistant("hello")
        .user("more")
        .temperature(0.5)
        .stop_sequence("END")
        .to_value();
    assert_eq!(
        params,
        json!({
            "messages": [
                {"role": "user", "content": {"type": "text", "text": "hi"}},
                {"role": "assistant", "content": {"type": "text", "text": "hello"}},
                {"role": "user", "content": {"type": "text", "text": "more"}},
            ],
            "maxTokens": 100,
            "systemPrompt": "Be brief.",
            "temperature": 0.5,
            "stopSequences": ["END"],
        })
    );
}

fn wit_request(
    name: &str,
    responses: Vec<(String, wit::InputResponse)>,
    state: Option<Vec<u8>>,
) -> (String, Ctx) {
    let ctx = Ctx::new(
        crate::ctx::Backend::Mock(MockDelegate::new()),
        Some(testing::envelope()),
        ClientCapabilities::all(),
        responses
            .into_iter()
            .map(|(k, r)| {
                let r = match r {
                    wit::InputResponse::Answered(j) => InputResponse::Answered(j),
                    wit::InputResponse::Unavailable(m) => InputResponse::Unavailable(m),
                };
                (k, r)
            })
            .collect(),
        state.as_deref(),
    );
    (name.to_string(), ctx)
}

struct Confirm;

impl __private::Tool for Confirm {
    const NAME: &'static str = "confirm";
    fn descriptor() -> wit::ToolDescriptor {
        __private::descriptor::<String>(
            "confirm",
            None,
            "Confirm.",
            __private::empty_input_schema(),
            __private::Hints::default(),
        )
    }
    fn call(ctx: &Ctx, _arguments: &str) -> Result<ToolOutput, ToolError> {
        __private::into_output(confirm(ctx))
    }
}

struct Rich;

impl __private::Tool for Rich {
    const NAME: &'static str = "rich";
    fn descriptor() -> wit::ToolDescriptor {
        __private::descriptor::<ToolOutput>(
            "rich",
            None,
            "Every kind of content.",
            __private::empty_input_schema(),
            __private::Hints::default(),
        )
    }
    fn call(_ctx: &Ctx, _arguments: &str) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text("t")
            .with(Content::audio(vec![1, 2], "audio/wav"))
            .with(Content::resource_text("notes://a/1", "text/plain", "hi"))
            .with(Content::resource_blob(
                "notes://a/2",
                "application/octet-stream",
                vec![0u8],
            ))
            .with(Content::resource_link("notes://a/3", "three"))
            .with(
                ResourceLink::new("notes://a/4", "four")
                    .title("Four")
                    .description("The fourth")
                    .mime_type("text/plain")
                    .size(4),
            )
            .with(Content::image(vec![9], "image/png")))
    }
}

const ENTRIES: &[Entry] = &[Entry::of::<Confirm>(), Entry::of::<Rich>()];

#[test]
fn the_glue_turns_asking_into_an_input_required_outcome() {
    let (name, ctx) = wit_request("confirm", Vec::new(), None);
    let outcome = __private::dispatch(ENTRIES, &name, "{}", &ctx);
    let Ok(wit::CallOutcome::InputRequired(asked)) = outcome else {
        unreachable!("{outcome:?}")
    };
    assert_eq!(asked.requests.len(), 1);
    let Some((key, wit::InputRequest::Form(form))) = asked.requests.first() else {
        unreachable!("{asked:?}")
    };
    assert_eq!(key, "ok");
    let schema: serde_json::Value = serde_json::from_str(&form.requested_schema).unwrap();
    assert_eq!(schema["properties"]["ok"]["type"], "boolean");
    assert!(asked.state.is_some());

    // An answer sent unasked, without the state: ignored, the tool asks.
    let answer = json!({"action": "accept", "content": {"ok": true}}).to_string();
    let (name, ctx) = wit_request(
        "confirm",
        vec![("ok".into(), wit::InputResponse::Answered(answer.clone()))],
        None,
    );
    let outcome = __private::dispatch(ENTRIES, &name, "{}", &ctx);
    assert!(
        matches!(outcome, Ok(wit::CallOutcome::InputRequired(_))),
        "{outcome:?}"
    );

    let (name, ctx) = wit_request(
        "confirm",
        vec![("ok".into(), wit::InputResponse::Answered(answer))],
        asked.state,
    );
    let outcome = __private::dispatch(ENTRIES, &name, "{}", &ctx);
    let Ok(wit::CallOutcome::Complete(result)) = outcome else {
        unreachable!("{outcome:?}")
    };
    assert!(matches!(result.content.as_slice(), [wit::ContentBlock::Text(t)] if t == "done"));

    let (name, ctx) = wit_request("nope", Vec::new(), None);
    assert!(matches!(
        __private::dispatch(ENTRIES, &name, "{}", &ctx),
        Err(wit::ToolError::InvalidInput(m)) if m.contains("nope")
    ));
}

#[test]
fn the_glue_sends_every_content_block() {
    let (name, ctx) = wit_request("rich", Vec::new(), None);
    let Ok(wit::CallOutcome::Complete(result)) = __private::dispatch(ENTRIES, &name, "{}", &ctx)
    else {
        unreachable!()
    };
    let kinds: Vec<String> = result
        .content
        .iter()
        .map(|c| match c {
            wit::ContentBlock::Text(t) => format!("text {t}"),
            wit::ContentBlock::Json(j) => format!("json {j}"),
            wit::ContentBlock::Image(i) => format!("image {}", i.mime_type),
            wit::ContentBlock::Audio(a) => format!("audio {} {:?}", a.mime_type, a.data),
            wit::ContentBlock::EmbeddedResource(r) => format!(
                "resource {} {:?} {}",
                r.uri,
                r.mime_type,
                match &r.body {
                    wit::ResourceBody::Text(t) => format!("text {t}"),
                    wit::ResourceBody::Blob(b) => format!("blob {b:?}"),
                }
            ),
            wit::ContentBlock::ResourceLink(l) => format!(
                "link {} {} {:?} {:?} {:?} {:?}",
                l.uri, l.name, l.title, l.description, l.mime_type, l.size
            ),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "text t",
            "audio audio/wav [1, 2]",
            "resource notes://a/1 Some(\"text/plain\") text hi",
            "resource notes://a/2 Some(\"application/octet-stream\") blob [0]",
            "link notes://a/3 three None None None None",
            "link notes://a/4 four Some(\"Four\") Some(\"The fourth\") Some(\"text/plain\") Some(4)",
            "image image/png",
        ]
    );
}

#[test]
fn the_glue_carries_state_between_rounds() {
    // Round 1 answered "ok" earlier; a round that asks more hands it back.
    let (_, first) = wit_request(
        "confirm",
        vec![(
            "ok".into(),
            wit::InputResponse::Answered(json!({"action": "decline"}).to_string()),
        )],
        Some(b"{}".to_vec()),
    );
    let err = first.roots("r").unwrap_err();
    let Ok(wit::CallOutcome::InputRequired(asked)) = __private::outcome(Err(err)) else {
        unreachable!()
    };
    assert!(matches!(
        asked.requests.as_slice(),
        [(k, wit::InputRequest::Roots)] if k == "r"
    ));
    let (_, second) = wit_request("confirm", Vec::new(), asked.state);
    assert_eq!(confirm(&second).unwrap(), "kept");
    assert!(matches!(
        second.response("ok"),
        Some(InputResponse::Answered(_))
    ));
}

#[test]
fn the_envelope_keeps_the_issuer() {
    let e = crate::Envelope::from(wit::Envelope {
        envelope_id: "e".into(),
        tenant: "t".into(),
        actor: wit::Actor {
            kind: wit::ActorKind::User,
            subject: "alice".into(),
            tenant: "t".into(),
            issuer: "https://idp.example".into(),
        },
        agent: wit::Agent {
            client_id: None,
            agent_id: None,
        },
        session_id: None,
        trace_id: "x".into(),
        tool: "confirm".into(),
        scopes: Vec::new(),
        delegations: Vec::new(),
        issued_at: 1,
        expires_at: 2,
    });
    assert_eq!(e.actor.issuer, "https://idp.example");
}
