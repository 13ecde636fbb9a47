//! Asking the client for input: elicitation (forms and URLs), sampling, roots.
//!
//! A call that needs something from the client ends early, the host asks the
//! client, then runs the tool again, in a fresh instance, with the same
//! arguments and the answers. So a tool is written as "if the answer is
//! there, use it; otherwise ask", and `?` does the asking:
//!
//! ```
//! use airlock_sdk::{tool, Ctx, Elicitation, Field, FormSchema, IfAvailable, ToolError};
//!
//! /// Archive everything, after the user confirms.
//! #[tool(destructive)]
//! fn archive_all(ctx: &Ctx) -> Result<String, ToolError> {
//!     let form = FormSchema::new().field(Field::boolean("confirm").title("Archive").default(false));
//!     let answer = ctx
//!         .elicit("confirm", Elicitation::form("Archive all your notes?", form))
//!         .if_available()?; // None: the client cannot be asked
//!     match answer {
//!         Some(a) if a.accepted() && a.bool("confirm") == Some(true) => Ok("archived".into()),
//!         _ => Ok("nothing archived".into()),
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! The first round, [`Ctx::elicit`] finds no answer under `"confirm"` and
//! returns an error that is not an error: `?` passes it up, and the SDK turns
//! it into an "input required" outcome. The next round finds the answer and
//! returns it. Answers carry over: the SDK keeps every answer the call has
//! received in the state it hands the host (which seals it), so a tool that
//! asks one thing after another still sees the earlier answers. Each key is
//! asked at most once per call; to ask again, use another key.
//!
//! A request the client cannot take (it did not declare the capability, or it
//! failed or timed out) ends as [`ToolError::Unavailable`]; match on it, or
//! use [`IfAvailable::if_available`] to get `None` instead.
//!
//! Several requests in one round: [`Ctx::ask`]. State for the next round:
//! [`Ctx::set_state`] and [`Ctx::state`].

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ctx::Ctx;
use crate::error::ToolError;

/// Most bytes of state the host carries from one round to the next.
pub const MAX_STATE_BYTES: usize = 16 * 1024;

/// What the client can be asked for: the capabilities it declared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCapabilities {
    /// Form-mode elicitation ([`Elicitation::form`]).
    pub elicitation_form: bool,
    /// URL-mode elicitation ([`Elicitation::url`]).
    pub elicitation_url: bool,
    /// Sampling ([`Ctx::sample`]).
    pub sampling: bool,
    /// Roots ([`Ctx::roots`]).
    pub roots: bool,
}

impl ClientCapabilities {
    /// A client that declared everything.
    pub const fn all() -> Self {
        ClientCapabilities {
            elicitation_form: true,
            elicitation_url: true,
            sampling: true,
            roots: true,
        }
    }

    /// A client that declared nothing.
    pub const fn none() -> Self {
        ClientCapabilities {
            elicitation_form: false,
            elicitation_url: false,
            sampling: false,
            roots: false,
        }
    }

    /// Whether the client can take `request`.
    pub fn allows(&self, request: &InputRequest) -> bool {
        match request {
            InputRequest::Form { .. } => self.elicitation_form,
            InputRequest::Url { .. } => self.elicitation_url,
            InputRequest::Sampling(_) => self.sampling,
            InputRequest::Roots => self.roots,
        }
    }
}

/// One thing to ask the client, as the host receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputRequest {
    /// Ask the user to fill in a form.
    Form {
        /// What to ask, shown to the user.
        message: String,
        /// The form: a flat JSON Schema object whose properties are strings,
        /// numbers, integers, booleans or enums. The host refuses anything else.
        requested_schema: Value,
    },
    /// Ask the user to visit a URL.
    Url {
        /// Why, shown to the user.
        message: String,
        /// An absolute `https` (or loopback `http`) URL.
        url: String,
    },
    /// A completion from the client's model: MCP `sampling/createMessage` params.
    Sampling(Value),
    /// The client's roots.
    Roots,
}

impl InputRequest {
    fn what(&self) -> &'static str {
        match self {
            InputRequest::Form { .. } => "a form",
            InputRequest::Url { .. } => "to visit a URL",
            InputRequest::Sampling(_) => "a completion (sampling)",
            InputRequest::Roots => "its roots",
        }
    }
}

/// The client's answer to one request, as the host delivers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputResponse {
    /// The client's result as JSON text (`ElicitResult`, `CreateMessageResult`
    /// or `ListRootsResult`).
    Answered(String),
    /// The request could not be put to the client; why.
    Unavailable(String),
}

/// An elicitation: a form to fill in, or a URL to visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elicitation(InputRequest);

impl Elicitation {
    /// Ask the user to fill in a form. `schema` is the restricted JSON Schema
    /// MCP allows (a flat object of strings, numbers, integers, booleans and
    /// enums): raw JSON (`serde_json::json!`) or a [`FormSchema`].
    pub fn form(message: impl Into<String>, schema: impl Into<Value>) -> Self {
        Elicitation(InputRequest::Form {
            message: message.into(),
            requested_schema: schema.into(),
        })
    }

    /// Ask the user to visit `url` (absolute `https`, or loopback `http`),
    /// for example to approve something at a service. Never for credentials
    /// the host manages.
    pub fn url(message: impl Into<String>, url: impl Into<String>) -> Self {
        Elicitation(InputRequest::Url {
            message: message.into(),
            url: url.into(),
        })
    }
}

impl From<Elicitation> for InputRequest {
    fn from(e: Elicitation) -> Self {
        e.0
    }
}

/// A restricted form schema, built from fields.
///
/// ```
/// use airlock_sdk::{Field, FormSchema};
///
/// let schema = FormSchema::new()
///     .field(Field::boolean("confirm").title("Delete it").default(false).required())
///     .field(Field::string("reason").max_length(200))
///     .field(Field::choice("when", ["now", "tomorrow"]));
/// let json = serde_json::Value::from(schema);
/// assert_eq!(json["properties"]["confirm"]["type"], "boolean");
/// assert_eq!(json["required"], serde_json::json!(["confirm"]));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FormSchema {
    fields: Vec<Field>,
}

impl FormSchema {
    /// An empty form.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a field (shown in this order).
    pub fn field(mut self, field: Field) -> Self {
        self.fields.push(field);
        self
    }

    /// The JSON Schema.
    pub fn to_value(&self) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for f in &self.fields {
            properties.insert(f.name.clone(), Value::Object(f.schema.clone()));
            if f.required {
                required.push(Value::String(f.name.clone()));
            }
        }
        let mut schema = Map::new();
        schema.insert("type".into(), "object".into());
        schema.insert("properties".into(), Value::Object(properties));
        if !required.is_empty() {
            schema.insert("required".into(), Value::Array(required));
        }
        Value::Object(schema)
    }
}

impl From<FormSchema> for Value {
    fn from(f: FormSchema) -> Self {
        f.to_value()
    }
}

/// One field of a [`FormSchema`].
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    name: String,
    required: bool,
    schema: Map<String, Value>,
}

impl Field {
    fn of_type(name: impl Into<String>, ty: &str) -> Self {
        let mut schema = Map::new();
        schema.insert("type".into(), ty.into());
        Field {
            name: name.into(),
            required: false,
            schema,
        }
    }

    fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.schema.insert(key.into(), value.into());
        self
    }

    /// A text field.
    pub fn string(name: impl Into<String>) -> Self {
        Self::of_type(name, "string")
    }

    /// A yes/no field.
    pub fn boolean(name: impl Into<String>) -> Self {
        Self::of_type(name, "boolean")
    }

    /// A whole-number field.
    pub fn integer(name: impl Into<String>) -> Self {
        Self::of_type(name, "integer")
    }

    /// A number field.
    pub fn number(name: impl Into<String>) -> Self {
        Self::of_type(name, "number")
    }

    /// A choice among fixed strings (a string enum).
    pub fn choice<I, S>(name: impl Into<String>, options: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let options: Vec<Value> = options
            .into_iter()
            .map(|o| Value::String(o.into()))
            .collect();
        Self::string(name).set("enum", options)
    }

    /// The label shown for the field.
    pub fn title(self, title: impl Into<String>) -> Self {
        self.set("title", title.into())
    }

    /// A longer explanation.
    pub fn description(self, description: impl Into<String>) -> Self {
        self.set("description", description.into())
    }

    /// The value the form starts with.
    pub fn default(self, value: impl Into<Value>) -> Self {
        self.set("default", value)
    }

    /// The user must fill it in to accept.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Shortest text allowed.
    pub fn min_length(self, n: u64) -> Self {
        self.set("minLength", n)
    }

    /// Longest text allowed.
    pub fn max_length(self, n: u64) -> Self {
        self.set("maxLength", n)
    }

    /// A text format: `email`, `uri`, `date` or `date-time`.
    pub fn format(self, format: impl Into<String>) -> Self {
        self.set("format", format.into())
    }

    /// Smallest number allowed.
    pub fn minimum(self, n: impl Into<Value>) -> Self {
        self.set("minimum", n)
    }

    /// Largest number allowed.
    pub fn maximum(self, n: impl Into<Value>) -> Self {
        self.set("maximum", n)
    }
}

/// What the user did with an elicitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElicitAction {
    /// Submitted the form (or agreed to visit the URL).
    Accept,
    /// Said no.
    Decline,
    /// Dismissed it without choosing.
    Cancel,
}

/// The client's answer to an elicitation (MCP `ElicitResult`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElicitAnswer {
    /// What the user did.
    pub action: ElicitAction,
    /// The submitted form, when accepted. Check each value: the client, not
    /// the tool, filled it in.
    #[serde(default)]
    pub content: Map<String, Value>,
}

impl ElicitAnswer {
    /// Whether the user accepted.
    pub fn accepted(&self) -> bool {
        self.action == ElicitAction::Accept
    }

    /// A boolean field of the submitted form.
    pub fn bool(&self, field: &str) -> Option<bool> {
        self.content.get(field).and_then(Value::as_bool)
    }

    /// A text field of the submitted form.
    pub fn str(&self, field: &str) -> Option<&str> {
        self.content.get(field).and_then(Value::as_str)
    }

    /// A number field of the submitted form.
    pub fn f64(&self, field: &str) -> Option<f64> {
        self.content.get(field).and_then(Value::as_f64)
    }

    /// An integer field of the submitted form.
    pub fn i64(&self, field: &str) -> Option<i64> {
        self.content.get(field).and_then(Value::as_i64)
    }

    /// The submitted form as `T`; `InvalidInput` when it does not fit.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ToolError> {
        serde_json::from_value(Value::Object(self.content.clone()))
            .map_err(|e| ToolError::InvalidInput(format!("the submitted form does not fit: {e}")))
    }
}

/// Who says a sampling message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    Assistant,
}

/// A request for a completion from the client's model (MCP
/// `sampling/createMessage`), built from text messages.
///
/// ```
/// use airlock_sdk::SamplingRequest;
///
/// let req = SamplingRequest::new(200)
///     .system_prompt("You summarise notes in one line.")
///     .user("milk, eggs, flour");
/// let params = req.to_value();
/// assert_eq!(params["maxTokens"], 200);
/// assert_eq!(params["messages"][0]["content"]["text"], "milk, eggs, flour");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingRequest {
    messages: Vec<(Role, String)>,
    max_tokens: u32,
    system_prompt: Option<String>,
    temperature: Option<f64>,
    stop_sequences: Vec<String>,
}

impl SamplingRequest {
    /// A request for at most `max_tokens` tokens; add messages next.
    pub fn new(max_tokens: u32) -> Self {
        SamplingRequest {
            messages: Vec::new(),
            max_tokens,
            system_prompt: None,
            temperature: None,
            stop_sequences: Vec::new(),
        }
    }

    /// Add a user message.
    pub fn user(mut self, text: impl Into<String>) -> Self {
        self.messages.push((Role::User, text.into()));
        self
    }

    /// Add an assistant message (earlier model output).
    pub fn assistant(mut self, text: impl Into<String>) -> Self {
        self.messages.push((Role::Assistant, text.into()));
        self
    }

    /// The system prompt. The client may change or drop it.
    pub fn system_prompt(mut self, text: impl Into<String>) -> Self {
        self.system_prompt = Some(text.into());
        self
    }

    /// The sampling temperature.
    pub fn temperature(mut self, t: f64) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Add a stop sequence.
    pub fn stop_sequence(mut self, s: impl Into<String>) -> Self {
        self.stop_sequences.push(s.into());
        self
    }

    /// The `sampling/createMessage` params.
    pub fn to_value(&self) -> Value {
        let messages: Vec<Value> = self
            .messages
            .iter()
            .map(|(role, text)| {
                serde_json::json!({
                    "role": match role { Role::User => "user", Role::Assistant => "assistant" },
                    "content": { "type": "text", "text": text },
                })
            })
            .collect();
        let mut params = Map::new();
        params.insert("messages".into(), Value::Array(messages));
        params.insert("maxTokens".into(), self.max_tokens.into());
        if let Some(p) = &self.system_prompt {
            params.insert("systemPrompt".into(), p.clone().into());
        }
        if let Some(t) = self.temperature {
            params.insert("temperature".into(), t.into());
        }
        if !self.stop_sequences.is_empty() {
            params.insert("stopSequences".into(), self.stop_sequences.clone().into());
        }
        Value::Object(params)
    }
}

impl From<SamplingRequest> for InputRequest {
    fn from(r: SamplingRequest) -> Self {
        InputRequest::Sampling(r.to_value())
    }
}

/// The client's completion (MCP `CreateMessageResult`).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleAnswer {
    /// Who "said" it, normally `assistant`.
    pub role: String,
    /// The model that answered, when the client says.
    pub model: Option<String>,
    /// Why generation stopped (`endTurn`, `maxTokens`, ...), when the client says.
    pub stop_reason: Option<String>,
    /// The content: one block or a list of blocks, as the client sent it.
    pub content: Value,
}

impl SampleAnswer {
    /// The text of the completion: its text blocks, joined; `None` when it has none.
    pub fn text(&self) -> Option<String> {
        fn block_text(b: &Value) -> Option<&str> {
            (b.get("type").and_then(Value::as_str) == Some("text"))
                .then(|| b.get("text").and_then(Value::as_str))
                .flatten()
        }
        let parts: Vec<&str> = match &self.content {
            Value::Array(blocks) => blocks.iter().filter_map(block_text).collect(),
            block => block_text(block).into_iter().collect(),
        };
        (!parts.is_empty()).then(|| parts.concat())
    }

    fn parse(json: &str) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            #[serde(default)]
            role: String,
            model: Option<String>,
            stop_reason: Option<String>,
            content: Value,
        }
        let raw: Raw = serde_json::from_str(json)?;
        Ok(SampleAnswer {
            role: raw.role,
            model: raw.model,
            stop_reason: raw.stop_reason,
            content: raw.content,
        })
    }
}

/// One of the client's roots (MCP `Root`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// Its URI, for example `file:///home/alice/project`.
    pub uri: String,
    /// A name for it, when the client gives one.
    #[serde(default)]
    pub name: Option<String>,
}

/// The requests a call ended with, and the state for the next round.
///
/// Only the SDK makes one: a tool gets it inside the error that
/// [`Ctx::elicit`] and friends return, and passes it on with `?`. Tests read
/// it to see what a tool asked for.
#[derive(Clone, PartialEq, Eq)]
pub struct InputRequired {
    pub(crate) requests: Vec<(String, InputRequest)>,
    pub(crate) state: Option<Vec<u8>>,
}

impl fmt::Debug for InputRequired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputRequired")
            .field("requests", &self.requests)
            .field("state", &self.state().ok().flatten().unwrap_or(Value::Null))
            .finish()
    }
}

impl InputRequired {
    /// What the call asks for, by key, in order.
    pub fn requests(&self) -> &[(String, InputRequest)] {
        &self.requests
    }

    /// The request under `key`.
    pub fn request(&self, key: &str) -> Option<&InputRequest> {
        self.requests.iter().find(|(k, _)| k == key).map(|(_, r)| r)
    }

    /// The keys asked, in order.
    pub fn keys(&self) -> Vec<&str> {
        self.requests.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// The state the tool set for the next round ([`Ctx::set_state`]), as `T`.
    pub fn state<T: DeserializeOwned>(&self) -> Result<Option<T>, ToolError> {
        let frame = Frame::decode(self.state.as_deref());
        frame.state.map(|v| decode_state(v)).transpose()
    }

    /// The answers carried to the next round.
    pub fn carried(&self) -> BTreeMap<String, InputResponse> {
        Frame::decode(self.state.as_deref()).answers
    }

    /// The state bytes handed to the host (the SDK's framing of answers and
    /// tool state; opaque to the host).
    pub fn state_bytes(&self) -> Option<&[u8]> {
        self.state.as_deref()
    }
}

fn decode_state<T: DeserializeOwned>(v: Value) -> Result<T, ToolError> {
    serde_json::from_value(v).map_err(|e| {
        ToolError::Internal(format!(
            "the state from the previous round does not fit the type asked for: {e}"
        ))
    })
}

/// What the SDK keeps in the state bytes between rounds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Frame {
    /// Every answer this call has received so far.
    #[serde(default)]
    pub(crate) answers: BTreeMap<String, InputResponse>,
    /// The tool's own state.
    #[serde(default)]
    pub(crate) state: Option<Value>,
}

impl Frame {
    /// The frame in `bytes`; an empty one when there are none or they do not
    /// parse (then the tool asks again, which is safe).
    pub(crate) fn decode(bytes: Option<&[u8]>) -> Self {
        bytes
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default()
    }
}

/// A check of request keys: `[A-Za-z0-9_.-]`, 1 to 64 characters.
pub(crate) fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Several requests in one round; start with [`Ctx::ask`].
///
/// ```
/// use airlock_sdk::{Ctx, Elicitation, SamplingRequest, ToolError};
///
/// fn plan(ctx: &Ctx) -> Result<String, ToolError> {
///     let answers = ctx
///         .ask()
///         .sample("draft", SamplingRequest::new(100).user("Draft a plan"))
///         .roots("roots")
///         .answers()?; // asks whatever is missing, in one round
///     let draft = answers.sample("draft")?.text().unwrap_or_default();
///     let roots = answers.roots("roots").unwrap_or_default(); // Unavailable: none
///     Ok(format!("{draft} ({} roots)", roots.len()))
/// }
/// ```
#[derive(Debug)]
#[must_use = "nothing is asked until `answers()` is called"]
pub struct Ask<'a> {
    pub(crate) ctx: &'a Ctx,
    pub(crate) requests: Vec<(String, InputRequest)>,
}

impl<'a> Ask<'a> {
    /// Ask `request` under `key`.
    pub fn request(mut self, key: impl Into<String>, request: impl Into<InputRequest>) -> Self {
        self.requests.push((key.into(), request.into()));
        self
    }

    /// Ask for an elicitation under `key`.
    pub fn elicit(self, key: impl Into<String>, elicitation: Elicitation) -> Self {
        self.request(key, elicitation)
    }

    /// Ask for a completion under `key`.
    pub fn sample(self, key: impl Into<String>, request: SamplingRequest) -> Self {
        self.request(key, request)
    }

    /// Ask for the client's roots under `key`.
    pub fn roots(self, key: impl Into<String>) -> Self {
        self.request(key, InputRequest::Roots)
    }

    /// The answers, when every request has one (or cannot be put to the
    /// client); otherwise end the round asking for the missing ones — pass
    /// that on with `?`.
    pub fn answers(self) -> Result<Answers<'a>, ToolError> {
        let mut missing = Vec::new();
        let mut unavailable = BTreeMap::new();
        for (key, request) in self.requests {
            if self.ctx.response(&key).is_some() {
                continue;
            }
            if !self.ctx.client().allows(&request) {
                let reason = format!(
                    "the client did not declare that it can be asked for {}",
                    request.what()
                );
                unavailable.insert(key, reason);
                continue;
            }
            missing.push((key, request));
        }
        if !missing.is_empty() {
            return Err(self.ctx.input_required(missing));
        }
        Ok(Answers {
            ctx: self.ctx,
            unavailable,
        })
    }
}

/// The answers to an [`Ask`], read by key.
#[derive(Debug)]
pub struct Answers<'a> {
    ctx: &'a Ctx,
    unavailable: BTreeMap<String, String>,
}

impl Answers<'_> {
    /// The raw answer under `key`: the client's JSON text.
    pub fn json(&self, key: &str) -> Result<&str, ToolError> {
        if let Some(reason) = self.unavailable.get(key) {
            return Err(ToolError::Unavailable(format!(
                "could not ask the client (`{key}`): {reason}"
            )));
        }
        match self.ctx.response(key) {
            Some(InputResponse::Answered(json)) => Ok(json),
            Some(InputResponse::Unavailable(reason)) => Err(ToolError::Unavailable(format!(
                "could not ask the client (`{key}`): {reason}"
            ))),
            None => Err(ToolError::Internal(format!(
                "the tool read an answer to `{key}` without asking for it"
            ))),
        }
    }

    /// The answer to the elicitation under `key`.
    pub fn elicit(&self, key: &str) -> Result<ElicitAnswer, ToolError> {
        let json = self.json(key)?;
        serde_json::from_str(json).map_err(|e| malformed(key, "an elicitation result", e))
    }

    /// The answer to the sampling request under `key`.
    pub fn sample(&self, key: &str) -> Result<SampleAnswer, ToolError> {
        let json = self.json(key)?;
        SampleAnswer::parse(json).map_err(|e| malformed(key, "a sampling result", e))
    }

    /// The roots asked for under `key`.
    pub fn roots(&self, key: &str) -> Result<Vec<Root>, ToolError> {
        #[derive(Deserialize)]
        struct Raw {
            roots: Vec<Root>,
        }
        let json = self.json(key)?;
        serde_json::from_str::<Raw>(json)
            .map(|r| r.roots)
            .map_err(|e| malformed(key, "a roots list", e))
    }
}

fn malformed(key: &str, what: &str, e: serde_json::Error) -> ToolError {
    ToolError::InvalidInput(format!("the client's answer to `{key}` is not {what}: {e}"))
}

/// Treat [`ToolError::Unavailable`] as "no answer".
pub trait IfAvailable<T> {
    /// `Ok(None)` when the request could not be put to the client; every other
    /// result (including "input required") as it was.
    fn if_available(self) -> Result<Option<T>, ToolError>;
}

impl<T> IfAvailable<T> for Result<T, ToolError> {
    fn if_available(self) -> Result<Option<T>, ToolError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(ToolError::Unavailable(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
