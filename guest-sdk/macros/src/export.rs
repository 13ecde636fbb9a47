//! `export_tools!`: the component's `tool` export, dispatching to `#[tool]` functions.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Error, Path, Token};

pub(crate) fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let paths = Punctuated::<Path, Token![,]>::parse_terminated.parse2(input)?;
    if paths.is_empty() {
        return Err(Error::new(
            proc_macro2::Span::call_site(),
            "list the `#[tool]` functions to export: `export_tools!(first_tool, second_tool)`",
        ));
    }
    let mut seen = Vec::new();
    let mut entries = Vec::new();
    for path in &paths {
        let Some(last) = path.segments.last() else {
            continue;
        };
        let name = last.ident.to_string();
        if seen.contains(&name) {
            return Err(Error::new_spanned(
                path,
                format!("`{name}` is listed twice"),
            ));
        }
        seen.push(name);
        let mut marker = path.clone();
        if let Some(seg) = marker.segments.last_mut() {
            seg.ident = format_ident!("__airlock_tool_{}", seg.ident, span = seg.ident.span());
        }
        entries.push(quote!(::airlock_sdk::__private::Entry::of::<#marker>()));
    }
    Ok(quote! {
        #[doc(hidden)]
        const __AIRLOCK_TOOLS: &[::airlock_sdk::__private::Entry] = &[#(#entries),*];

        #[doc(hidden)]
        #[allow(dead_code)]
        struct __AirlockToolsExport;

        impl ::airlock_sdk::wit::exports::airlock::tool::tool::Guest for __AirlockToolsExport {
            fn describe() -> ::std::vec::Vec<::airlock_sdk::wit::airlock::tool::types::ToolDescriptor> {
                ::airlock_sdk::__private::describe(__AIRLOCK_TOOLS)
            }

            fn call(
                request: ::airlock_sdk::wit::airlock::tool::types::CallRequest,
            ) -> ::core::result::Result<
                ::airlock_sdk::wit::airlock::tool::types::CallOutcome,
                ::airlock_sdk::wit::airlock::tool::types::ToolError,
            > {
                ::airlock_sdk::__private::call(__AIRLOCK_TOOLS, request)
            }
        }

        // Native builds (unit tests with `airlock_sdk::testing`) must not export
        // component symbols: their names are not valid native linker symbols.
        #[cfg(target_arch = "wasm32")]
        ::airlock_sdk::wit::__export_tool_component!(__AirlockToolsExport with_types_in ::airlock_sdk::wit);
    })
}
