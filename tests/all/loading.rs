//! What the host refuses to load, and why.

use airlock_host::sandbox::{Limits, LoadError};
use airlock_tests::{TestHost, guests, wasm};

async fn load_err(bytes: &[u8]) -> LoadError {
    TestHost::new().sandbox.load(bytes).await.unwrap_err()
}

#[tokio::test]
async fn a_wasi_importing_component_is_rejected_naming_the_import() {
    let err = load_err(&wasm(guests::WASI_IMPORT)).await;
    assert_eq!(
        err,
        LoadError::ForbiddenImport {
            name: "wasi:cli/environment@0.2.0".into()
        }
    );
    assert!(err.to_string().contains("wasi:cli/environment@0.2.0"));
}

#[tokio::test]
async fn duplicate_tool_names_are_rejected() {
    let err = load_err(&wasm(guests::LYING_DUPES)).await;
    assert_eq!(err, LoadError::DuplicateTool("twin".into()));
}

#[tokio::test]
async fn an_invalid_input_schema_is_rejected_naming_the_tool() {
    let err = load_err(&wasm(guests::LYING_SCHEMA)).await;
    assert!(
        matches!(&err, LoadError::InvalidDescriptor { tool, reason } if tool == "bad" && reason.contains("not a valid JSON Schema")),
        "{err:?}"
    );
}

#[tokio::test]
async fn core_modules_and_garbage_are_not_components() {
    let core = b"\0asm\x01\0\0\0";
    assert!(
        matches!(load_err(core).await, LoadError::NotAComponent(m) if m.contains("core WebAssembly module"))
    );
    assert!(matches!(
        load_err(b"hello world").await,
        LoadError::NotAComponent(_)
    ));
    assert!(matches!(load_err(b"").await, LoadError::NotAComponent(_)));
    // A component header followed by garbage fails to compile, cleanly.
    let truncated = &wasm(guests::ECHO)[..100];
    assert!(matches!(load_err(truncated).await, LoadError::Compile(_)));
}

#[tokio::test]
async fn every_example_and_the_hostile_component_load() {
    let host = TestHost::new();
    for path in [guests::ECHO, guests::WHOAMI, guests::NOTES, guests::HOSTILE] {
        let component = host.load(path).await;
        assert_eq!(component.size(), wasm(path).len());
        assert_eq!(component.digest().len(), 64);
    }
}

#[tokio::test]
async fn limits_outside_the_host_ceiling_are_refused() {
    let host = TestHost::new();
    let echo = host.load(guests::ECHO).await;
    let too_big = Limits {
        memory_bytes: 1 << 40,
        ..Limits::default()
    };
    let err = echo.clone().with_limits(too_big).unwrap_err();
    assert_eq!(err.name, "memory_bytes");
    let zero_time = Limits {
        timeout: std::time::Duration::ZERO,
        ..Limits::default()
    };
    assert_eq!(echo.with_limits(zero_time).unwrap_err().name, "timeout_ms");
}

/// A sandbox that cannot start says why, also from inside an async context
/// (where dropping a half-built runtime would panic).
#[tokio::test]
async fn a_sandbox_that_cannot_start_says_why_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let settings = airlock_host::sandbox::SandboxSettings {
        cache_dir: Some(not_a_dir.clone()),
        ..airlock_host::sandbox::SandboxSettings::default()
    };
    let err = airlock_host::sandbox::Sandbox::new(settings)
        .expect_err("a cache directory that is a file is refused");
    assert!(err.to_string().contains("compilation cache"), "{err}");
}
