//! Procedural macros for `airlock-sdk`: `#[tool]` and `export_tools!`.
//!
//! Use them through `airlock_sdk`, not directly.
#![deny(missing_docs)]

mod export;
mod tool;

use proc_macro::TokenStream;

/// Turn a plain function into an airlock tool.
///
/// The function takes an optional `ctx: &Ctx` and at most one argument value,
/// and returns `Result<T, ToolError>`. Its doc comment becomes the description.
/// A tool that asks the client for input returns early through `?`; it runs
/// again, from the start, with the answer.
/// Options: `name = "..."`, `title = "..."`, and the hints `read_only`,
/// `destructive`, `idempotent`, `open_world`.
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    tool::expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Export the listed `#[tool]` functions as this component's tools.
///
/// Call it once per crate: `airlock_sdk::export_tools!(add_note, list_notes);`
#[proc_macro]
pub fn export_tools(input: TokenStream) -> TokenStream {
    export::expand(input.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
