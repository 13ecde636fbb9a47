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
//! The tool sees who it acts for through [`Ctx::envelope`], reaches services only
//! through [`Ctx::delegate`], and logs through [`Ctx::log`]. It has no network,
//! files, clock or environment. With the `testing` feature, the `testing` module lets you
//! run tools natively in unit tests.
#![deny(missing_docs)]

mod ctx;
pub mod delegate;
mod envelope;
mod error;
mod output;
#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
pub mod __private;

/// Generated bindings for `wit/airlock-tool.wit`. Not part of the API: use the
/// wrappers in this crate instead.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
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
pub use output::{Content, IntoToolOutput, Json, ToolOutput};

/// Re-exported so tool crates derive schemas with the same version the SDK uses.
pub use schemars;
/// Re-exported so tool crates use the same serde version the SDK uses.
pub use serde;
/// Re-exported for building JSON values.
pub use serde_json;
