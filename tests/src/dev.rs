//! `airlock dev` on loopback for tests: every example tool built from
//! source, a fresh data directory, served until dropped.

use std::path::Path;

use airlock_host::dev::{CalendarHooks, DevOptions, DevServer};
use airlock_host::envelope::KeyRing;

use crate::guests;

/// The one-time `form_token` of the form on an HTML page.
pub fn form_token(html: &str) -> Option<&str> {
    html.split("name=\"form_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
}

/// A running `airlock dev`; its serving task is aborted on drop.
pub struct Dev {
    /// Where it listens, `http://127.0.0.1:{port}`.
    pub url: String,
    /// Its data directory (keys, secrets, storage).
    pub data: tempfile::TempDir,
    /// What it prints on start, for the terminal.
    pub banner: String,
    /// The Demo Calendar's test hooks, taken before serving.
    pub hooks: CalendarHooks,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Dev {
    /// Start `airlock dev` on 127.0.0.1 (any port) with the example tools
    /// built by `build.rs` (echo, whoami, notes, tickets, calendar).
    pub async fn start() -> Dev {
        let data = tempfile::tempdir().expect("tempdir");
        let tools = Path::new(guests::CALENDAR)
            .parent()
            .expect("dir")
            .to_path_buf();
        let mut out = Vec::new();
        let server = DevServer::start(
            DevOptions {
                data: data.path().to_path_buf(),
                listen: "127.0.0.1:0".parse().expect("addr"),
                tools: Some(tools),
                conformance: None,
            },
            &mut out,
        )
        .await
        .expect("airlock dev starts");
        let url = server.url.clone();
        let banner = server.banner(data.path());
        let hooks = server.calendar();
        let task = tokio::spawn(async move {
            let _ = server.serve(std::future::pending()).await;
        });
        Dev {
            url,
            data,
            banner,
            hooks,
            task,
        }
    }

    /// A user's access token for the tenant's MCP endpoint, from `airlock token`.
    pub async fn user_token(&self, tenant: &str, user: &str) -> String {
        let data = self.data.path().display().to_string();
        let args = [
            "airlock", "token", "--tenant", tenant, "--user", user, "--data", &data,
        ]
        .map(String::from)
        .to_vec();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = airlock_host::cli::run(args, &mut out, &mut err).await;
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        String::from_utf8(out).expect("utf8").trim().to_string()
    }

    /// The secret file `data/dev/{file}`, checked to be private (0600).
    pub fn secret(&self, file: &str) -> String {
        let path = self.data.path().join("dev").join(file);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("secret")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
        std::fs::read_to_string(path).expect("secret")
    }

    /// The dev host's own key ring, the one it signs envelopes with.
    pub fn key_ring(&self) -> KeyRing {
        KeyRing::open(&KeyRing::dir_in(self.data.path())).expect("the dev host's key ring")
    }
}
