//! Checks of the rules in ARCHITECTURE.md that a program can check.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The host module a file belongs to (`sandbox` for `host/src/sandbox/call.rs`).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(root().join("host/src")).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// (what, which modules may name it)
const OWNERS: &[(&str, &[&str])] = &[
    ("wasmtime", &["sandbox"]),
    ("rmcp", &["mcp"]),
    ("sled", &["storage"]),
    // Sealing and opening secrets happens in one place.
    ("chacha20poly1305", &["vault"]),
    // The edge verifies tokens; only the development issuers mint them.
    ("jsonwebtoken", &["edge", "dev"]),
];

#[test]
fn only_the_owning_module_names_its_crate() {
    let mut files = Vec::new();
    rust_files(&root().join("host/src"), &mut files);
    assert!(files.len() > 5);
    let mut violations = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let module = module_of(file);
        for (krate, owner) in OWNERS {
            let named =
                text.contains(&format!("{krate}::")) || text.contains(&format!("use {krate}"));
            if named && !owner.contains(&module.as_str()) {
                violations.push(format!(
                    "{} names `{krate}` (only {owner:?} may)",
                    file.display()
                ));
            }
        }
        if text.contains("AUTHORIZATION") || text.to_ascii_lowercase().contains("\"authorization\"")
        {
            // `delegate` refuses it from guests and sets the host's own
            // credential on outbound requests; `config` names it as the default
            // credential header; the development authorization server
            // authenticates its own clients, and the demo third-party provider
            // checks the tokens it issued. None reads an inbound MCP token.
            let allowed = module == "edge"
                || module == "delegate"
                || file.ends_with("config/services.rs")
                || file.ends_with("dev/authserver.rs")
                || file.ends_with("dev/calendar.rs");
            if !allowed {
                violations.push(format!(
                    "{} reads Authorization (only `edge` may)",
                    file.display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn nothing_dev_only_is_reachable_from_serve() {
    // `dev` (the development issuers, demo users) is used by the `dev` and
    // `token` commands only; no other module may reach into it.
    let mut files = Vec::new();
    rust_files(&root().join("host/src"), &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(file);
        if module == "dev" || file.ends_with("cli/mod.rs") {
            continue;
        }
        let text = fs::read_to_string(file).unwrap();
        if text.contains("crate::dev") || text.contains("dev::") {
            violations.push(file.display().to_string());
        }
    }
    assert!(
        violations.is_empty(),
        "modules reaching into `dev`: {violations:?}"
    );
}

#[test]
fn only_invoke_mints_envelopes_and_seals_rounds_and_mcp_only_translates() {
    let mut files = Vec::new();
    rust_files(&root().join("host/src"), &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let module = module_of(file);
        // `airlock tool run` mints a development envelope for one local call.
        let may_mint = module == "invoke" || module == "envelope" || file.ends_with("cli/tool.rs");
        if text.contains("Envelope::mint") && !may_mint {
            violations.push(format!("{} mints an envelope", file.display()));
        }
        // requestState is sealed and opened by `invoke` through `rounds`
        // only (`server` gives it the key); never by the protocol layer.
        let may_seal = ["invoke", "rounds", "server"].contains(&module.as_str());
        if (text.contains("crate::rounds") || text.contains("Rounds")) && !may_seal {
            violations.push(format!("{} handles round states", file.display()));
        }
        if module == "mcp" {
            for pipeline in [
                "Envelope",
                "crate::audit",
                "Sandbox",
                "crate::delegate",
                "crate::registry::TenantCatalog",
            ] {
                if text.contains(pipeline) {
                    violations.push(format!(
                        "{} names `{pipeline}`: the call pipeline belongs in `invoke`",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn every_guest_component_has_a_test() {
    let mut sources = String::new();
    let mut files = Vec::new();
    rust_files(&root().join("tests/all"), &mut files);
    for file in files.iter().filter(|f| !f.ends_with("tidy.rs")) {
        sources.push_str(&fs::read_to_string(file).unwrap());
    }
    for (name, _) in airlock_tests::guests::ALL {
        assert!(
            sources.contains(&format!("guests::{name}")),
            "guest {name} is built but no test uses it"
        );
    }
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let ci = fs::read_to_string(root().join(".ci/run")).unwrap();
    let command = "cargo test --workspace";
    assert!(readme.contains(command), "README must give `{command}`");
    assert!(ci.contains(command), ".ci/run must run `{command}`");
}

#[test]
fn no_build_outputs_are_committed() {
    let listed = std::process::Command::new("git")
        .args(["ls-files"])
        .current_dir(root())
        .output();
    // Not a git checkout (a source tarball): nothing to check.
    let Ok(listed) = listed else { return };
    let files = String::from_utf8_lossy(&listed.stdout);
    let bad: Vec<_> = files
        .lines()
        .filter(|f| f.ends_with(".wasm") || f.ends_with(".cwasm") || f.contains("/target/"))
        .collect();
    assert!(bad.is_empty(), "build outputs committed: {bad:?}");
}
