//! The `airlock` command line.

mod audit;
mod keys;
mod tool;
mod vault;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// airlock: a multi-tenant MCP host that runs untrusted tools in WebAssembly sandboxes.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with tool components.
    #[command(subcommand)]
    Tool(tool::ToolCommand),
    /// Manage the keys that sign execution identity envelopes.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Run the host from a configuration file.
    Serve {
        /// The configuration file (see airlock.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Run everything locally: demo tenants, example tools, development
    /// authorization servers. Listens on loopback only.
    Dev {
        /// The data directory.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Where to listen (a loopback address).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Use the components echo.wasm, whoami.wasm, notes.wasm, tickets.wasm
        /// and calendar.wasm in DIR instead of building the example tools from
        /// source.
        #[arg(long, value_name = "DIR")]
        tools: Option<PathBuf>,
        /// Also serve tenant `conformance` (user `tester`, no services) with
        /// this one component installed, for the MCP conformance suite
        /// (tests/scripts/conformance.sh).
        #[arg(long, value_name = "COMPONENT")]
        conformance: Option<PathBuf>,
    },
    /// Check the audit trail's chains and signatures, or export its records.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Manage the token vault: list and disconnect users' provider tokens,
    /// store operator secrets, rotate keys (beside a running host too).
    #[command(subcommand)]
    Vault(vault::VaultCommand),
    /// Print a bearer token for a demo user, from `airlock dev` data.
    Token {
        /// The demo tenant.
        #[arg(long)]
        tenant: String,
        /// The demo user.
        #[arg(long)]
        user: String,
        /// A scope to grant (repeatable; default: every scope the tenant offers).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// The data directory `airlock dev` used.
        #[arg(long, default_value = "data")]
        data: PathBuf,
    },
}

/// Where compiled components are cached between runs.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("airlock").join("compiled"))
}

/// Run the command line given in `args` (including the program name), writing
/// normal output to `out` and diagnostics to `err`. Returns the exit code.
pub async fn run(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let text = e.render();
            let _ = if e.use_stderr() {
                write!(err, "{text}")
            } else {
                write!(out, "{text}")
            };
            return code;
        }
    };
    let result = match cli.command {
        Command::Tool(cmd) => tool::run(cmd, out).await,
        Command::Keys(cmd) => keys::run(cmd, out),
        Command::Serve { config } => serve(&config, out).await,
        Command::Dev {
            data,
            listen,
            tools,
            conformance,
        } => {
            dev(
                crate::dev::DevOptions {
                    data,
                    listen,
                    tools,
                    conformance,
                },
                out,
            )
            .await
        }
        Command::Audit(cmd) => audit::run(cmd, out),
        Command::Vault(cmd) => vault::run(cmd, out),
        Command::Token {
            tenant,
            user,
            scopes,
            data,
        } => crate::dev::token(&data, &tenant, &user, &scopes).map(|token| {
            let _ = writeln!(out, "{token}");
        }),
    };
    match result {
        Ok(()) => 0,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            1
        }
    }
}

async fn serve(path: &std::path::Path, out: &mut (dyn Write + Send)) -> Result<(), String> {
    let config = crate::config::Config::load(path).map_err(|e| e.to_string())?;
    let listen = config.listen;
    let public = config.public_url.clone();
    let tenants: Vec<String> = config.tenants.keys().cloned().collect();
    let host = crate::server::Host::build(config)
        .await
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    for tenant in &tenants {
        let _ = writeln!(out, "MCP endpoint: {public}/mcp/{tenant}");
    }
    let _ = out.flush();
    host.serve(listener, crate::server::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn dev(options: crate::dev::DevOptions, out: &mut (dyn Write + Send)) -> Result<(), String> {
    let data = options.data.clone();
    let server = crate::dev::DevServer::start(options, out).await?;
    let _ = write!(out, "{}", server.banner(&data));
    let _ = out.flush();
    server.serve(crate::server::shutdown_signal()).await
}

/// Without `RUST_LOG`: the host's own lines at INFO (one per call), guest
/// log lines, and libraries only at WARN (the protocol library alone writes
/// several INFO lines per request, megabytes a second on a busy host).
pub const DEFAULT_LOG_FILTER: &str = "warn,airlock_host=info,airlock::guest=info";

/// The binary's entry point.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        run(std::env::args_os(), &mut out, &mut err).await
    });
    ExitCode::from(code)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod log_filter_tests {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn by_default_libraries_log_warnings_only_and_the_host_its_calls() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                super::DEFAULT_LOG_FILTER,
            ))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "a_library::service", "serve finished");
            tracing::info!(target: "hyper::proto", "chatter");
            tracing::warn!(target: "a_library::service", "a library warning");
            tracing::info!(target: "airlock_host::invoke", "tool call");
            tracing::info!(target: "airlock::guest", "a guest line");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(
            !text.contains("serve finished") && !text.contains("chatter"),
            "{text}"
        );
        assert!(text.contains("a library warning"), "{text}");
        assert!(
            text.contains("tool call") && text.contains("a guest line"),
            "{text}"
        );
    }
}
