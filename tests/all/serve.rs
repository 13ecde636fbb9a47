//! `airlock serve --config FILE` as an operator runs it: a real process whose
//! working directory is wherever the operator stands, with relative paths in
//! the file and a relative `--config`.
//!
//! A process's working directory is process-wide, so each server runs in a
//! child process: this test binary re-run with only [`child_serves`] selected.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock_tests::client::try_call;
use airlock_tests::guests;
use airlock_tests::idp::TestIdp;
use airlock_tests::server::tenant;

const CHILD_ARGS: &str = "AIRLOCK_SERVE_CHILD_ARGS";

/// In the child: run the CLI with the arguments from the environment.
#[tokio::test]
async fn child_serves() {
    let Some(args) = std::env::var_os(CHILD_ARGS) else {
        return;
    };
    let args = args.to_string_lossy().to_string();
    let mut argv = vec!["airlock".to_string()];
    argv.extend(args.split('\u{1f}').map(str::to_string));
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let code = airlock_host::cli::run(argv, &mut out, &mut err).await;
    panic!("airlock serve exited with {code}");
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_serve(cwd: &std::path::Path, config: &str) -> KillOnDrop {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--exact", "serve::child_serves", "--nocapture"])
        .env(CHILD_ARGS, format!("serve\u{1f}--config\u{1f}{config}"))
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Call `echo` until the server answers (it is starting), or fail after 60 s.
async fn echo_until_up(server: &mut KillOnDrop, endpoint: &str, token: &str) -> String {
    let started = Instant::now();
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut e) = server.0.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut stderr);
            }
            panic!("airlock serve stopped ({status}):\n{stderr}");
        }
        let sent = try_call(
            endpoint,
            token,
            "echo",
            serde_json::json!({"text": "relative"}),
        )
        .await;
        if let Ok((_, body)) = sent {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "airlock serve did not start listening within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn relative_config_path_works_from_any_working_directory() {
    if std::env::var_os(CHILD_ARGS).is_some() {
        return;
    }
    let idp = TestIdp::start("").await;
    let root = tempfile::tempdir().unwrap();
    let site = root.path().join("site");
    std::fs::create_dir_all(site.join("tools")).unwrap();
    std::fs::copy(guests::ECHO, site.join("tools/echo.wasm")).unwrap();
    std::fs::copy(guests::WHOAMI, site.join("tools/whoami.wasm")).unwrap();

    // From the config's own directory, then from its parent.
    for (cwd, config) in [
        (site.clone(), "airlock.toml"),
        (root.path().to_path_buf(), "site/airlock.toml"),
    ] {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let text = format!(
            "listen = \"127.0.0.1:{port}\"\npublic_url = \"{url}\"\ndata_dir = \"data\"\n\
             [components.echo]\npath = \"tools/echo.wasm\"\n\
             [components.whoami]\npath = \"tools/whoami.wasm\"\n{}",
            tenant("acme", &idp.issuer, &["mcp"])
        );
        std::fs::write(site.join("airlock.toml"), text).unwrap();
        let mut server = spawn_serve(&cwd, config);
        let endpoint = format!("{url}/mcp/acme");
        let token = idp.token(&endpoint, "alice", "mcp");
        let body = echo_until_up(&mut server, &endpoint, &token).await;
        assert!(body.contains("relative"), "from {}: {body}", cwd.display());
        assert!(
            site.join("data").is_dir(),
            "the data directory is created beside the file, not in the working directory"
        );
        assert!(!cwd.join("data").exists() || cwd == site);
    }
}

/// SIGKILL while calls are in flight leaves an audit trail that verifies up
/// to its last complete record, and the next start continues it.
#[tokio::test]
async fn a_killed_server_leaves_a_verifiable_audit_trail() {
    if std::env::var_os(CHILD_ARGS).is_some() {
        return;
    }
    let idp = TestIdp::start("").await;
    let site = tempfile::tempdir().unwrap();
    std::fs::copy(guests::ECHO, site.path().join("echo.wasm")).unwrap();
    std::fs::copy(guests::WHOAMI, site.path().join("whoami.wasm")).unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\npublic_url = \"{url}\"\ndata_dir = \"data\"\n\
         [components.echo]\npath = \"echo.wasm\"\n\
         [components.whoami]\npath = \"whoami.wasm\"\n{}",
        tenant("acme", &idp.issuer, &["mcp"])
    );
    std::fs::write(site.path().join("airlock.toml"), text).unwrap();
    let endpoint = format!("{url}/mcp/acme");
    let token = idp.token(&endpoint, "alice", "mcp");
    let data = site.path().join("data").display().to_string();
    let verify = async || {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = airlock_host::cli::run(
            ["airlock", "audit", "verify", "--data", &data],
            &mut out,
            &mut err,
        )
        .await;
        let out = String::from_utf8(out).unwrap() + &String::from_utf8(err).unwrap();
        (code, out)
    };

    for round in 0..2 {
        let mut server = spawn_serve(site.path(), "airlock.toml");
        echo_until_up(&mut server, &endpoint, &token).await;
        // Keep 8 calls in flight, then kill the server without warning.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut load = Vec::new();
        for _ in 0..8 {
            let (endpoint, token, stop) = (endpoint.clone(), token.clone(), stop.clone());
            load.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let args = serde_json::json!({"text": "load"});
                    let _ = try_call(&endpoint, &token, "echo", args).await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        drop(server); // SIGKILL
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in load {
            task.await.unwrap();
        }
        let (code, out) = verify().await;
        assert_eq!(code, 0, "round {round}: {out}");
        assert!(out.contains("OK: tenant acme"), "round {round}: {out}");
    }
}
