//! Building guest workspaces (example tools, test fixtures) into components:
//! make sure the wasm target is installed, then run cargo in the guest
//! workspace, whose `.cargo/config.toml` links with `wasm-component-ld`.
//!
//! Standard library only: `tests/build.rs` includes this file as well.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target guests are built for.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// Make sure `rustc` (run in `dir`, so its `rust-toolchain.toml` applies) has
/// the wasm target, installing it with rustup when missing. `note` hears what
/// is being done.
pub fn ensure_wasm_target(
    rustc: &str,
    dir: &Path,
    note: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let sysroot = Command::new(rustc)
        .current_dir(dir)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(TARGET).exists() {
        return Ok(());
    }
    let toolchain = sysroot
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    note(&format!(
        "installing the {TARGET} target for toolchain {toolchain}"
    ));
    let status = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "add", TARGET, "--toolchain", &toolchain])
        .status();
    match status {
        Ok(s) if s.success() && sysroot.join("lib/rustlib").join(TARGET).exists() => Ok(()),
        _ => Err(format!(
            "the {TARGET} target is missing and could not be installed; run:\n    \
             rustup target add {TARGET} --toolchain {toolchain}"
        )),
    }
}

/// Build every member of the guest workspace in `workspace` (release, for
/// [`TARGET`]) into `target_dir`. Nothing from an outer cargo invocation
/// (rustflags, wrappers, target settings) leaks into the guest build.
pub fn build_workspace(cargo: &str, workspace: &Path, target_dir: &Path) -> Result<(), String> {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(target_dir);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let outer =
            key.starts_with("CARGO_") && !matches!(key.as_str(), "CARGO_HOME" | "CARGO_MAKEFLAGS");
        if outer || key.starts_with("RUSTC_") || key == "RUSTFLAGS" || key == "RUSTDOCFLAGS" {
            cmd.env_remove(&key);
        }
    }
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run cargo for {}: {e}", workspace.display()))?;
    if !output.status.success() {
        return Err(format!(
            "building the guests in {} failed:\n{}",
            workspace.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// Where [`build_workspace`] puts the component of crate `name`.
pub fn component_path(target_dir: &Path, name: &str) -> PathBuf {
    target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", name.replace('-', "_")))
}
