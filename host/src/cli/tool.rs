//! `airlock tool inspect` and `airlock tool run`: for tool authors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;

use crate::delegate::{Delegate, DenyAll, LocalServices};
use crate::envelope::{ActorKind, Delegation, DelegationMode, Envelope, EnvelopeClaims, random_id};
use crate::sandbox::{
    CallRequest, Content, Limits, LoadedComponent, Outcome, ResourceBody, Sandbox, SandboxSettings,
    ToolDescriptor,
};

#[derive(Debug, Subcommand)]
pub(crate) enum ToolCommand {
    /// Show a component's tools, imports and size; fail if the host would reject it.
    Inspect {
        /// The component (.wasm).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Compile without the on-disk cache.
        #[arg(long)]
        no_cache: bool,
    },
    /// Run one tool call locally with a development identity.
    Run {
        /// The component (.wasm).
        file: PathBuf,
        /// The tool to call.
        tool: String,
        /// The arguments, a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
        /// The tenant in the development envelope.
        #[arg(long, default_value = "dev")]
        tenant: String,
        /// The user (subject) in the development envelope.
        #[arg(long, default_value = "dev-user")]
        user: String,
        /// A scope to grant (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Map a service to a local URL, NAME=http://127.0.0.1:PORT (repeatable).
        /// Without it every delegated request is denied.
        #[arg(long = "service")]
        services: Vec<String>,
        /// Wall-clock limit for the call, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        /// Memory limit for the call, in MiB.
        #[arg(long, default_value_t = 64)]
        memory_mib: usize,
        /// Compile without the on-disk cache.
        #[arg(long)]
        no_cache: bool,
    },
}

fn read(file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

async fn load(file: &Path, no_cache: bool) -> Result<(Sandbox, LoadedComponent), String> {
    let wasm = read(file)?;
    let settings = SandboxSettings {
        max_concurrent_calls: 2,
        max_concurrent_calls_per_tenant: 2,
        cache_dir: if no_cache {
            None
        } else {
            super::default_cache_dir()
        },
        ..SandboxSettings::default()
    };
    let sandbox = Sandbox::new(settings).map_err(|e| e.to_string())?;
    let component = sandbox.load(&wasm).await.map_err(|e| {
        format!(
            "{} is not a valid airlock tool component: {e}",
            file.display()
        )
    })?;
    Ok((sandbox, component))
}

pub(crate) async fn run(cmd: ToolCommand, out: &mut (dyn Write + Send)) -> Result<(), String> {
    match cmd {
        ToolCommand::Inspect {
            file,
            json,
            no_cache,
        } => {
            let (_sandbox, component) = load(&file, no_cache).await?;
            inspect(&file, &component, json, out)
        }
        ToolCommand::Run {
            file,
            tool,
            args,
            tenant,
            user,
            scopes,
            services,
            timeout_ms,
            memory_mib,
            no_cache,
        } => {
            let limits = Limits {
                timeout: Duration::from_millis(timeout_ms),
                memory_bytes: memory_mib.saturating_mul(1024 * 1024),
                ..Limits::default()
            };
            let delegate: Arc<dyn Delegate> = if services.is_empty() {
                Arc::new(DenyAll)
            } else {
                Arc::new(
                    LocalServices::from_mappings(
                        services.iter().map(String::as_str),
                        limits.timeout,
                    )
                    .map_err(|e| e.to_string())?,
                )
            };
            let delegations = services
                .iter()
                .filter_map(|m| m.split_once('='))
                .map(|(name, _)| Delegation {
                    service: name.to_string(),
                    mode: DelegationMode::Service,
                })
                .collect();
            let (sandbox, component) = load(&file, no_cache).await?;
            let component = component.with_limits(limits).map_err(|e| e.to_string())?;
            if component.tool(&tool).is_none() {
                let names: Vec<_> = component.tools().iter().map(|t| t.name.as_str()).collect();
                return Err(format!(
                    "{} has no tool `{tool}`; it has: {}",
                    file.display(),
                    names.join(", ")
                ));
            }
            let envelope = Envelope::mint(
                EnvelopeClaims {
                    tenant,
                    issuer: "airlock-cli".into(),
                    actor_kind: ActorKind::User,
                    subject: user,
                    client_id: Some("airlock-cli".into()),
                    agent_id: None,
                    session_id: None,
                    trace_id: random_id(),
                    tool: tool.clone(),
                    scopes,
                    delegations,
                },
                limits.timeout + Duration::from_secs(60),
            );
            let request = CallRequest::new(Arc::new(envelope), args, delegate);
            let output = sandbox
                .call(&component, request)
                .await
                .and_then(Outcome::into_complete)
                .map_err(|e| format!("tool `{tool}` failed ({}): {e}", e.code()))?;
            print_output(&output.content, output.structured.as_ref(), out)
        }
    }
}

#[derive(Serialize)]
struct Inspection<'a> {
    file: String,
    size: usize,
    sha256: &'a str,
    imports: &'a [String],
    tools: &'a [ToolDescriptor],
}

fn inspect(
    file: &Path,
    component: &LoadedComponent,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), String> {
    let report = Inspection {
        file: file.display().to_string(),
        size: component.size(),
        sha256: component.digest(),
        imports: component.imports(),
        tools: component.tools(),
    };
    let w = |e: std::io::Error| format!("cannot write output: {e}");
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        return writeln!(out, "{text}").map_err(w);
    }
    writeln!(out, "component: {}", report.file).map_err(w)?;
    writeln!(out, "size:      {} bytes", report.size).map_err(w)?;
    writeln!(out, "sha256:    {}", report.sha256).map_err(w)?;
    writeln!(out, "imports:").map_err(w)?;
    for import in report.imports {
        writeln!(out, "  {import}").map_err(w)?;
    }
    writeln!(out, "tools:").map_err(w)?;
    for tool in report.tools {
        match &tool.title {
            Some(title) => writeln!(out, "  {} ({title})", tool.name).map_err(w)?,
            None => writeln!(out, "  {}", tool.name).map_err(w)?,
        }
        for line in tool.description.lines() {
            writeln!(out, "    {line}").map_err(w)?;
        }
        writeln!(out, "    input schema: {}", tool.input_schema).map_err(w)?;
        if let Some(schema) = &tool.output_schema {
            writeln!(out, "    output schema: {schema}").map_err(w)?;
        }
    }
    Ok(())
}

fn print_output(
    content: &[Content],
    structured: Option<&serde_json::Value>,
    out: &mut (dyn Write + Send),
) -> Result<(), String> {
    let w = |e: std::io::Error| format!("cannot write output: {e}");
    for block in content {
        match block {
            Content::Text(text) => writeln!(out, "{text}").map_err(w)?,
            Content::Json(text) => {
                let pretty = serde_json::from_str::<serde_json::Value>(text)
                    .and_then(|v| serde_json::to_string_pretty(&v))
                    .unwrap_or_else(|_| text.clone());
                writeln!(out, "{pretty}").map_err(w)?;
            }
            Content::Image { data, mime_type } => {
                writeln!(out, "[image {mime_type}, {} bytes]", data.len()).map_err(w)?
            }
            Content::Audio { data, mime_type } => {
                writeln!(out, "[audio {mime_type}, {} bytes]", data.len()).map_err(w)?
            }
            Content::Resource { uri, body, .. } => match body {
                ResourceBody::Text(text) => writeln!(out, "[resource {uri}]\n{text}").map_err(w)?,
                ResourceBody::Blob(data) => {
                    writeln!(out, "[resource {uri}, {} bytes]", data.len()).map_err(w)?
                }
            },
            Content::ResourceLink(link) => {
                writeln!(out, "[link {} {}]", link.name, link.uri).map_err(w)?
            }
        }
    }
    if content.is_empty()
        && let Some(value) = structured
    {
        let pretty = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
        writeln!(out, "{pretty}").map_err(w)?;
    }
    Ok(())
}
