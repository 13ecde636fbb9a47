use std::path::Path;

use super::*;

const GOOD: &str = r#"
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080"
data_dir = "data"

[components.echo]
path = "echo.wasm"

[tenants.acme]
issuers = [{ issuer = "https://idp.example.com" }]
scopes = ["mcp"]

[[tenants.acme.install]]
component = "echo"
tool_scopes = { echo = ["echo:use"] }
limits = { timeout_ms = 1000 }
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("airlock.toml"), Path::new("/etc/airlock"))
}

#[test]
fn a_good_file_is_read_into_typed_settings() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.resource_uri("acme"), "http://127.0.0.1:8080/mcp/acme");
    assert_eq!(c.components["echo"], Path::new("/etc/airlock/echo.wasm"));
    let acme = &c.tenants["acme"];
    assert_eq!(acme.issuers[0].algorithms.len(), 3);
    assert_eq!(acme.install[0].limits.timeout, Duration::from_millis(1000));
    assert_eq!(acme.install[0].tool_scopes["echo"], ["echo:use"]);
}

#[test]
fn errors_name_the_bad_key() {
    let cases = [
        (
            GOOD.replace("scopes = [\"mcp\"]", "scopes = [\"mcp\"]\nscope = 1"),
            "scope",
        ),
        (
            GOOD.replace("listen = \"127.0.0.1:8080\"", "listen = \"nowhere\""),
            "listen",
        ),
        (
            GOOD.replace("timeout_ms = 1000", "timeout_ms = 0"),
            "tenants.acme.install[0].limits",
        ),
        (
            GOOD.replace("component = \"echo\"", "component = \"nope\""),
            "tenants.acme.install[0].component",
        ),
        (
            GOOD.replace("https://idp.example.com", "http://idp.example.com"),
            "tenants.acme.issuers[0].issuer",
        ),
        (
            GOOD.replace("[tenants.acme]", "[tenants.ACME]")
                .replace("tenants.acme.install", "tenants.ACME.install"),
            "tenants.ACME",
        ),
        (
            GOOD.replace(
                "issuer = \"https://idp.example.com\"",
                "issuer = \"https://idp.example.com\", algorithms = [\"HS256\"]",
            ),
            "algorithms",
        ),
        (
            GOOD.replace(
                "public_url = \"http://127.0.0.1:8080\"",
                "public_url = \"http://example.com\"",
            ),
            "public_url",
        ),
        (
            GOOD.replace(
                "data_dir = \"data\"",
                "data_dir = \"data\"\n[server]\nrequest_timeout_ms = 0",
            ),
            "server.request_timeout_ms",
        ),
        (
            GOOD.replace(
                "data_dir = \"data\"",
                "data_dir = \"data\"\n[server]\nmax_request_bytes = 10",
            ),
            "server.max_request_bytes",
        ),
    ];
    for (text, key) in cases {
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(key), "error {err:?} should name {key:?}");
    }
}

#[test]
fn every_path_is_absolute_even_from_a_relative_base() {
    let c = Config::parse(GOOD, Path::new("airlock.toml"), Path::new("site")).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(c.data_dir, cwd.join("site/data"));
    assert!(c.data_dir.is_absolute());
    assert_eq!(c.components["echo"], cwd.join("site/echo.wasm"));
    let c = Config::parse(GOOD, Path::new("airlock.toml"), Path::new("")).unwrap();
    assert_eq!(c.data_dir, cwd.join("data"));
}
