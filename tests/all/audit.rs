//! The audit trail of a real host: calls over HTTP write start and end
//! records, `airlock audit verify` passes on the data directory the host
//! leaves, and names the record after any single edit or removal on disk.

use std::path::Path;

use airlock_tests::client::call;
use airlock_tests::idp::TestIdp;
use airlock_tests::server::TestServer;
use serde_json::{Value, json};

/// Run the CLI; return (exit code, stdout, stderr).
pub async fn airlock(args: &[&str]) -> (u8, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut argv = vec!["airlock"];
    argv.extend_from_slice(args);
    let code = airlock_host::cli::run(argv, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Change the stored record `seq` of `tenant` with `edit` (or remove it), as
/// someone with access to the disk would.
fn tamper(data: &Path, tenant: &str, seq: u64, edit: Option<fn(&mut Vec<u8>)>) {
    let path = data.join(format!("db.logs/audit.records.{tenant}.log"));
    let text = std::fs::read(&path).unwrap();
    let mut out = Vec::new();
    for line in text.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(format!("{seq} ").as_bytes()) {
            // Removed when there is no edit.
            if let Some(edit) = edit {
                let mut line = line.to_vec();
                edit(&mut line);
                out.extend_from_slice(&line);
            }
        } else {
            out.extend_from_slice(line);
        }
    }
    assert_ne!(out, text, "record {seq} was found");
    std::fs::write(&path, out).unwrap();
}

#[tokio::test]
async fn real_calls_leave_a_trail_that_verifies_and_names_any_tampering() {
    let idp = TestIdp::start("").await;
    let tenant = format!(
        "[tenants.acme]\nissuers = [{{ issuer = {:?} }}]\n\
         [[tenants.acme.install]]\ncomponent = \"echo\"\n\
         [[tenants.acme.install]]\ncomponent = \"whoami\"\n",
        idp.issuer
    );
    let server = TestServer::start(&tenant).await;
    let url = server.endpoint("acme");
    let token = idp.token(&url, "alice", "");

    let (trace, body) = call(&url, &token, "echo", json!({"text": "secret-argument"})).await;
    assert!(body.contains("secret-argument"), "{body}");
    assert!(
        trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "the caller's trace is continued: {trace:?}"
    );
    let (_, body) = call(&url, &token, "echo", json!({"wrong": 1})).await;
    assert!(body.contains("isError\":true"), "{body}");
    let (_, body) = call(&url, &token, "whoami", json!({})).await;
    assert!(body.contains("alice"), "{body}");
    // An unknown tool is a protocol error and runs nothing: no records.
    let (_, body) = call(&url, &token, "nope", json!({})).await;
    assert!(body.contains("unknown tool"), "{body}");

    let data = server.stop_keeping_data().await.unwrap();
    let data_arg = data.path().display().to_string();

    let (code, out, err) = airlock(&["audit", "verify", "--data", &data_arg]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("OK") && out.contains("acme") && out.contains("6 records"),
        "{out}"
    );

    let (code, out, err) =
        airlock(&["audit", "export", "--data", &data_arg, "--tenant", "acme"]).await;
    assert_eq!(code, 0, "{err}");
    let records: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 6, "{out}");
    let bodies: Vec<&Value> = records.iter().map(|r| &r["body"]).collect();
    for b in &bodies {
        assert_eq!(b["tenant"], "acme");
        assert_eq!(b["actor_subject"], "alice");
        assert_eq!(b["actor_issuer"], idp.issuer.as_str());
        assert_eq!(b["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }
    // Start and end of each call share its envelope id.
    for pair in bodies.chunks(2) {
        assert_eq!(pair[0]["envelope_id"], pair[1]["envelope_id"]);
    }
    assert!(
        !out.contains("secret-argument"),
        "arguments are stored only as a digest"
    );
    assert!(out.contains("invalid_input"), "{out}");
    let (_, out, _) = airlock(&[
        "audit",
        "export",
        "--data",
        &data_arg,
        "--trace",
        "0000000000000000000000000000000f",
    ])
    .await;
    assert!(out.is_empty(), "{out}");

    // One byte of record 3 changed: named.
    let edited = tempfile::tempdir().unwrap();
    copy_dir(data.path(), edited.path());
    tamper(
        edited.path(),
        "acme",
        3,
        Some(|v: &mut Vec<u8>| {
            let at = v.windows(5).position(|w| w == b"alice").unwrap();
            v[at] = b'A';
        }),
    );
    let (code, out, _) = airlock(&[
        "audit",
        "verify",
        "--data",
        &edited.path().display().to_string(),
    ])
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("FAILED") && out.contains("record 3"), "{out}");

    // Record 4 removed: named.
    let removed = tempfile::tempdir().unwrap();
    copy_dir(data.path(), removed.path());
    tamper(removed.path(), "acme", 4, None);
    let (code, out, _) = airlock(&[
        "audit",
        "verify",
        "--data",
        &removed.path().display().to_string(),
    ])
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("FAILED") && out.contains("record 4"), "{out}");
}

/// A call whose audit record cannot be written is refused, unless its tenant
/// chose to go on without (`audit_fail_closed = false`).
#[tokio::test]
async fn calls_fail_closed_when_the_trail_cannot_be_written() {
    let idp = TestIdp::start("").await;
    for (fail_closed, expect_refused) in [(true, true), (false, false)] {
        let tenant = format!(
            "[tenants.acme]\nissuers = [{{ issuer = {:?} }}]\naudit_fail_closed = {fail_closed}\n\
             [[tenants.acme.install]]\ncomponent = \"echo\"\n",
            idp.issuer
        );
        let server = TestServer::start(&tenant).await;
        // The audit logs' directory is taken by a file: every append fails.
        std::fs::write(server.data_dir().join("db.logs"), b"in the way").unwrap();
        let url = server.endpoint("acme");
        let token = idp.token(&url, "alice", "");
        let (_, body) = call(&url, &token, "echo", json!({"text": "unaudited"})).await;
        if expect_refused {
            assert!(
                body.contains("its audit record could not be written")
                    && !body.contains("unaudited"),
                "{body}"
            );
        } else {
            assert!(body.contains("unaudited"), "{body}");
        }
    }
}
