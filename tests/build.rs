//! Builds the guest components the tests and benchmarks use, from source:
//! `example-tools/` and `tests/fixtures/`, for wasm32-unknown-unknown, linked
//! into components by the toolchain's wasm-component-ld. Generates
//! `$OUT_DIR/guests.rs` with one path constant per component.
//!
//! The wasm target is installed with rustup when missing, since rustup does not
//! install targets from rust-toolchain.toml on its own everywhere.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

#[path = "../host/src/dev/guest_build.rs"]
mod guest_build;

/// (workspace directory relative to the repository root, member crates)
const WORKSPACES: &[(&str, &[&str])] = &[
    (
        "example-tools",
        &["echo", "whoami", "notes", "tickets", "calendar"],
    ),
    (
        "tests/fixtures",
        &[
            "hostile",
            "wasi-import",
            "lying-dupes",
            "lying-schema",
            "lying-many-tools",
            "conformance",
            "v010",
        ],
    ),
];

type Result<T> = std::result::Result<T, String>;

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = manifest_dir
        .parent()
        .ok_or("tests/ has no parent directory")?
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out; guests get their own
    // target directory beside the profiles so a nested cargo never waits on
    // the outer build's lock.
    let target_root = out_dir
        .ancestors()
        .nth(4)
        .ok_or("unexpected OUT_DIR layout")?
        .join("airlock-guests");

    guest_build::ensure_wasm_target(&rustc(), &root, &mut |note| {
        println!("cargo:warning={note}");
    })?;

    let mut consts = String::new();
    let mut all = String::from(
        "/// Every guest component: (constant name, path).\npub const ALL: &[(&str, &str)] = &[\n",
    );
    for (dir, members) in WORKSPACES {
        let workspace = root.join(dir);
        watch(&workspace)?;
        let target_dir = target_root.join(dir.replace('/', "-"));
        let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        guest_build::build_workspace(&cargo, &workspace, &target_dir)?;
        for member in *members {
            let file = member.replace('-', "_");
            let wasm = guest_build::component_path(&target_dir, member);
            if !wasm.exists() {
                return Err(format!("building {dir} did not produce {}", wasm.display()));
            }
            let name = file.to_uppercase();
            writeln!(consts, "/// `{dir}/{member}`, built to a component.")
                .map_err(|e| e.to_string())?;
            writeln!(
                consts,
                "pub const {name}: &str = {:?};",
                wasm.display().to_string()
            )
            .map_err(|e| e.to_string())?;
            writeln!(all, "    ({name:?}, {name}),").map_err(|e| e.to_string())?;
        }
    }
    all.push_str("];\n");
    let cache = target_root.join("compile-cache");
    writeln!(
        consts,
        "/// Where tests cache compiled components between runs.\npub const COMPILE_CACHE: &str = {:?};",
        cache.display().to_string()
    )
    .map_err(|e| e.to_string())?;
    fs::write(out_dir.join("guests.rs"), consts + &all).map_err(|e| e.to_string())?;
    println!(
        "cargo:rerun-if-changed={}",
        root.join("guest-sdk").display()
    );
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    Ok(())
}

/// Rerun when a guest's sources change (not its `target/`).
fn watch(workspace: &Path) -> Result<()> {
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join(".cargo").display()
    );
    for entry in fs::read_dir(workspace).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.join("Cargo.toml").exists() {
            println!(
                "cargo:rerun-if-changed={}",
                path.join("Cargo.toml").display()
            );
            println!("cargo:rerun-if-changed={}", path.join("src").display());
        }
    }
    Ok(())
}

fn rustc() -> String {
    env::var("RUSTC").unwrap_or_else(|_| "rustc".into())
}
