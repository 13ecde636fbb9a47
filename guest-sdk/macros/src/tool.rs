//! `#[tool]`: checks the function's shape and generates its descriptor and entry point.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Error, Expr, FnArg, ItemFn, Lit, LitStr, Meta, ReturnType, Type};

/// The `#[tool(...)]` options.
#[derive(Default)]
struct Options {
    name: Option<LitStr>,
    title: Option<LitStr>,
    read_only: bool,
    destructive: bool,
    idempotent: bool,
    open_world: bool,
}

impl Options {
    fn parse(attr: TokenStream) -> syn::Result<Self> {
        let mut opts = Options::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                let name: LitStr = meta.value()?.parse()?;
                check_name(&name)?;
                opts.name = Some(name);
            } else if meta.path.is_ident("title") {
                opts.title = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("read_only") {
                opts.read_only = true;
            } else if meta.path.is_ident("destructive") {
                opts.destructive = true;
            } else if meta.path.is_ident("idempotent") {
                opts.idempotent = true;
            } else if meta.path.is_ident("open_world") {
                opts.open_world = true;
            } else {
                return Err(meta.error(
                    "unknown #[tool] option; expected `name = \"...\"`, `title = \"...\"`, \
                     `read_only`, `destructive`, `idempotent` or `open_world`",
                ));
            }
            Ok(())
        });
        syn::parse::Parser::parse2(parser, attr)?;
        Ok(opts)
    }
}

fn check_name(name: &LitStr) -> syn::Result<()> {
    let value = name.value();
    let valid_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if value.is_empty() || value.len() > 64 || !valid_chars {
        return Err(Error::new(
            name.span(),
            "a tool name is 1 to 64 characters from `A-Z a-z 0-9 _ - .`",
        ));
    }
    Ok(())
}

/// The parameters of a tool function, after checking.
struct Params<'a> {
    takes_ctx: bool,
    args: Option<&'a Type>,
}

fn is_ctx_ref(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => match &*r.elem {
            Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Ctx"),
            _ => false,
        },
        _ => false,
    }
}

fn check_params(func: &ItemFn) -> syn::Result<Params<'_>> {
    let mut typed = Vec::new();
    for input in &func.sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                return Err(Error::new(
                    r.span(),
                    "#[tool] functions cannot take `self`; write a free function \
                     `fn name(ctx: &Ctx, args: Args)`",
                ));
            }
            FnArg::Typed(t) => typed.push(t),
        }
    }
    match typed.as_slice() {
        [] => Ok(Params {
            takes_ctx: false,
            args: None,
        }),
        [only] if is_ctx_ref(&only.ty) => Ok(Params {
            takes_ctx: true,
            args: None,
        }),
        [only] => Ok(Params {
            takes_ctx: false,
            args: Some(&only.ty),
        }),
        [first, second] => {
            if !is_ctx_ref(&first.ty) {
                return Err(Error::new(
                    first.ty.span(),
                    "with two parameters, the first must be `ctx: &Ctx`",
                ));
            }
            if is_ctx_ref(&second.ty) {
                return Err(Error::new(second.ty.span(), "`&Ctx` may appear only once"));
            }
            Ok(Params {
                takes_ctx: true,
                args: Some(&second.ty),
            })
        }
        [_, _, third, ..] => Err(Error::new(
            third.span(),
            "a tool takes at most `ctx: &Ctx` and one argument value; \
             gather several arguments into one struct that derives `Deserialize` and `JsonSchema`",
        )),
    }
}

/// Check that the return type is spelled `Result<T, E>` and give `T`.
fn output_type(func: &ItemFn) -> syn::Result<&Type> {
    let wrong = |span: Span| {
        Error::new(
            span,
            "a tool returns `Result<T, ToolError>`, where `T` is `String`, `Json<_>`, `ToolOutput` or `()`",
        )
    };
    let ty = match &func.sig.output {
        ReturnType::Default => return Err(wrong(func.sig.ident.span())),
        ReturnType::Type(_, ty) => ty,
    };
    let Type::Path(path) = &**ty else {
        return Err(wrong(ty.span()));
    };
    let last = path.path.segments.last().ok_or_else(|| wrong(ty.span()))?;
    if last.ident != "Result" {
        return Err(wrong(ty.span()));
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return Err(wrong(ty.span()));
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(ok), Some(_err), None) => Ok(ok),
        _ => Err(wrong(ty.span())),
    }
}

fn doc_comment(func: &ItemFn) -> syn::Result<String> {
    let mut lines = Vec::new();
    for attr in &func.attrs {
        if let Meta::NameValue(nv) = &attr.meta
            && nv.path.is_ident("doc")
            && let Expr::Lit(lit) = &nv.value
            && let Lit::Str(s) = &lit.lit
        {
            let line = s.value();
            lines.push(line.strip_prefix(' ').unwrap_or(&line).to_string());
        }
    }
    let doc = lines.join("\n").trim().to_string();
    if doc.is_empty() {
        return Err(Error::new(
            func.sig.ident.span(),
            "add a doc comment to this tool: it becomes the description the model reads",
        ));
    }
    Ok(doc)
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let opts = Options::parse(attr)?;
    let func: ItemFn = syn::parse2(item).map_err(|e| {
        Error::new(e.span(), "#[tool] applies to a plain function `fn name(ctx: &Ctx, args: Args) -> Result<T, ToolError>`")
    })?;
    let sig = &func.sig;
    if let Some(a) = &sig.asyncness {
        return Err(Error::new(
            a.span(),
            "tool functions cannot be `async`: each call runs synchronously in its own sandbox; \
             delegated requests block until the host answers",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(Error::new(
            sig.generics.span(),
            "tool functions cannot be generic: the argument type must be concrete so its JSON Schema is known",
        ));
    }
    if let Some(c) = &sig.constness {
        return Err(Error::new(c.span(), "tool functions cannot be `const`"));
    }
    if let Some(u) = &sig.unsafety {
        return Err(Error::new(u.span(), "tool functions cannot be `unsafe`"));
    }
    if let Some(abi) = &sig.abi {
        return Err(Error::new(
            abi.span(),
            "tool functions cannot declare an ABI",
        ));
    }
    let params = check_params(&func)?;
    let output = output_type(&func)?;
    let description = doc_comment(&func)?;

    let fn_name = &sig.ident;
    let vis = &func.vis;
    let marker = format_ident!("__airlock_tool_{}", fn_name);
    let tool_name = opts
        .name
        .as_ref()
        .map(LitStr::value)
        .unwrap_or_else(|| fn_name.to_string());
    let title = match &opts.title {
        Some(t) => quote!(::core::option::Option::Some(#t)),
        None => quote!(::core::option::Option::None),
    };
    let hint = |on: bool| {
        if on {
            quote!(::core::option::Option::Some(true))
        } else {
            quote!(::core::option::Option::None)
        }
    };
    let (read_only, destructive, idempotent, open_world) = (
        hint(opts.read_only),
        hint(opts.destructive),
        hint(opts.idempotent),
        hint(opts.open_world),
    );
    let output_span = output.span();
    let call_result =
        quote_spanned!(output_span=> ::airlock_sdk::__private::into_output::<#output>);
    let ctx_arg = params.takes_ctx.then(|| quote!(ctx,));
    let (schema, parse, arg) = match params.args {
        Some(ty) => {
            let span = ty.span();
            (
                quote_spanned!(span=> ::airlock_sdk::__private::input_schema::<#ty>()),
                quote_spanned!(span=>
                    let args: #ty = ::airlock_sdk::__private::parse_args::<#ty>(arguments)?;
                ),
                quote!(args),
            )
        }
        None => (
            quote!(::airlock_sdk::__private::empty_input_schema()),
            quote!(let _ = arguments;),
            quote!(),
        ),
    };

    Ok(quote! {
        #func

        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis struct #marker;

        impl ::airlock_sdk::__private::Tool for #marker {
            const NAME: &'static str = #tool_name;

            fn descriptor() -> ::airlock_sdk::wit::airlock::tool::types::ToolDescriptor {
                ::airlock_sdk::__private::descriptor::<#output>(
                    #tool_name,
                    #title,
                    #description,
                    #schema,
                    ::airlock_sdk::__private::Hints {
                        read_only: #read_only,
                        destructive: #destructive,
                        idempotent: #idempotent,
                        open_world: #open_world,
                    },
                )
            }

            #[allow(unused_variables)]
            fn call(
                ctx: &::airlock_sdk::Ctx,
                arguments: &str,
            ) -> ::core::result::Result<::airlock_sdk::ToolOutput, ::airlock_sdk::ToolError> {
                #parse
                #call_result(#fn_name(#ctx_arg #arg))
            }
        }
    })
}
