//! The airlock guest SDK: write MCP tools as plain Rust functions and build them
//! into WebAssembly components that the airlock host runs in a sandbox.
//!
//! ```
//! use airlock_sdk::{tool, Ctx, ToolError};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Greet { name: String }
//!
//! /// Greet someone on behalf of the calling user.
//! #[tool]
//! fn greet(ctx: &Ctx, args: Greet) -> Result<String, ToolError> {
//!     Ok(format!("{} greets {}", ctx.envelope().actor.subject, args.name))
//! }
//!
//! airlock_sdk::export_tools!(greet);
//! # fn main() {}
//! ```
//!
//! A tool function takes an optional `&Ctx` and at most one argument value (any
//! type that is `serde::Deserialize` and `schemars::JsonSchema`), and returns
//! `Result<T, ToolError>` where `T` is `String`, [`Json<T>`] or [`ToolOutput`].
//! Its doc comment becomes the tool's description and the argument type's schema
//! its input schema.
//!
//! Output is text, JSON, images, audio, embedded resources and resource links
//! ([`Content`]).
//!
//! The tool sees who it acts for through [`Ctx::envelope`], reaches services only
//! through [`Ctx::delegate`], logs through [`Ctx::log`] and reports progress
//! through [`Ctx::progress`]. It has no network, files, clock or environment.
//!
//! A tool can ask the client for input before it finishes — a form or a URL
//! to visit ([`Ctx::elicit`]), a completion from the client's model
//! ([`Ctx::sample`]), the client's roots ([`Ctx::roots`]), several at once
//! ([`Ctx::ask`]) — and `?` does the asking: the call ends, the host asks the
//! client and runs the tool again in a fresh instance with the answers. See
//! the [`input`] module.
//!
//! With the `testing` feature, the `testing` module lets you run tools
//! natively in unit tests, playing the client's part too.
#![deny(missing_docs)]

mod ctx;
pub mod delegate;
mod envelope;
mod error;
pub mod input;
mod output;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[doc(hidden)]
pub mod __private;
#[cfg(test)]
mod tests;

/// Generated bindings for `wit/0.2.0/airlock-tool.wit` (`airlock:tool@0.2.0`). Not part of the API: use the
/// wrappers in this crate instead.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit/0.2.0",
        world: "tool-component",
        default_bindings_module: "airlock_sdk::wit",
        pub_export_macro: true,
        export_macro_name: "__export_tool_component",
    });
}

pub use airlock_sdk_macros::{export_tools, tool};
pub use ctx::{Ctx, Log};
pub use delegate::{DelegateError, Method, RequestBuilder, Response};
pub use envelope::{Actor, ActorKind, Agent, Delegation, DelegationMode, Envelope};
pub use error::ToolError;
pub use input::{
    Answers, Ask, ClientCapabilities, ElicitAction, ElicitAnswer, Elicitation, Field, FormSchema,
    IfAvailable, InputRequest, InputRequired, InputResponse, Root, SampleAnswer, SamplingRequest,
};
pub use output::{
    Content, EmbeddedResource, IntoToolOutput, Json, ResourceBody, ResourceLink, ToolOutput,
};

/// Re-exported so tool crates derive schemas with the same version the SDK uses.
pub use schemars;
/// Re-exported so tool crates use the same serde version the SDK uses.
pub use serde;
/// Re-exported for building JSON values.
pub use serde_json;
