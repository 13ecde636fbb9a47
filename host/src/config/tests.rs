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
        (
            GOOD.replace(
                "data_dir = \"data\"",
                "data_dir = \"data\"\n[server]\nheader_read_timeout_ms = 0",
            ),
            "server.header_read_timeout_ms",
        ),
        (
            GOOD.replace(
                "data_dir = \"data\"",
                "data_dir = \"data\"\n[server]\nidle_timeout_ms = 99999999",
            ),
            "server.idle_timeout_ms",
        ),
        (
            GOOD.replace(
                "data_dir = \"data\"",
                "data_dir = \"data\"\n[server]\nmax_connections = 0",
            ),
            "server.max_connections",
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

const SERVICES: &str = r#"
[tenants.acme.services.notes]
base_url = "https://notes.internal.example/api"
mode = "service"
scope = "notes"
methods = ["get", "POST"]
path_prefixes = ["/notes"]
credential = { type = "static", header = "X-Api-Key", secret_env = "NOTES_KEY" }

[tenants.acme.services.tickets]
base_url = "https://tickets.example"
mode = "on-behalf-of"
token_exchange = { token_endpoint = "https://idp.example.com/token", client_id = "airlock", secret_file = "secrets/client", audience = "https://tickets.example" }
"#;

#[test]
fn services_are_read_with_their_modes_and_grants() {
    let text = format!("{GOOD}services = [\"notes\", \"tickets\"]\n{SERVICES}");
    let c = parse(&text).unwrap();
    let acme = &c.tenants["acme"];
    assert_eq!(acme.install[0].services, ["notes", "tickets"]);
    let notes = &acme.services["notes"];
    assert_eq!(notes.audience, "https://notes.internal.example/api");
    assert_eq!(
        notes.methods.iter().map(String::as_str).collect::<Vec<_>>(),
        ["GET", "POST"]
    );
    assert!(!notes.allow_private);
    assert_eq!(
        notes.mode,
        ServiceMode::Service(Some(ServiceCredential::Static {
            header: "x-api-key".into(),
            secret: SecretSource::Env("NOTES_KEY".into()),
        }))
    );
    match &acme.services["tickets"].mode {
        ServiceMode::OnBehalfOf(client) => {
            assert_eq!(
                client.secret,
                SecretSource::File("/etc/airlock/secrets/client".into())
            );
            assert_eq!(client.audience.as_deref(), Some("https://tickets.example"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn service_errors_name_the_key() {
    let with = |extra: &str, grant: &str| format!("{GOOD}services = [{grant}]\n{SERVICES}{extra}");
    let cases = [
        (
            with("", "\"nope\""),
            "tenants.acme.install[0].services",
            "no service `nope`",
        ),
        (
            with("", "\"notes\", \"notes\""),
            "tenants.acme.install[0].services",
            "listed twice",
        ),
    ];
    for (text, key, says) in &cases {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains(says), "{err}");
    }
    let svc = |body: &str| format!("{GOOD}\n[tenants.acme.services.s]\n{body}\n");
    for (body, key, says) in [
        (
            "base_url = \"ftp://x\"\nmode = \"service\"",
            "services.s.base_url",
            "http or https",
        ),
        (
            "base_url = \"https://u:p@x\"\nmode = \"service\"",
            "services.s.base_url",
            "without credentials",
        ),
        (
            "base_url = \"https://x\"\nmode = \"magic\"",
            "services.s.mode",
            "not a mode",
        ),
        (
            "base_url = \"https://x\"\nmode = \"on-behalf-of\"",
            "services.s.token_exchange",
            "needs a token_exchange",
        ),
        (
            "base_url = \"https://x\"\nmode = \"service\"\nmethods = [\"TRACE\"]",
            "services.s.methods",
            "TRACE",
        ),
        (
            "base_url = \"https://x\"\nmode = \"service\"\npath_prefixes = [\"notes\"]",
            "services.s.path_prefixes",
            "starting with `/`",
        ),
        (
            "base_url = \"https://x\"\nmode = \"service\"\ntimeout_ms = 0",
            "services.s.timeout_ms",
            "between",
        ),
        (
            "base_url = \"https://x\"\nmode = \"service\"\ncredential = { type = \"static\" }",
            "services.s.credential.secret_env",
            "exactly one",
        ),
        (
            "base_url = \"https://x\"\nmode = \"user-token\"",
            "services.s.provider",
            "needs a provider",
        ),
        (
            "base_url = \"https://x\"\nmode = \"service\"\ntoken_exchange = { token_endpoint = \"https://a\", client_id = \"c\", secret_env = \"E\" }",
            "services.s.token_exchange",
            "only for",
        ),
        (
            "base_url = \"https://x\"\nmode = \"on-behalf-of\"\ntoken_exchange = { token_endpoint = \"http://a.example\", client_id = \"c\", secret_env = \"E\" }",
            "services.s.token_exchange.token_endpoint",
            "https",
        ),
    ] {
        let err = parse(&svc(body)).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains(says), "{body}: {err}");
    }
    let err = parse(&format!(
        "{GOOD}\n[tenants.acme.services.Bad]\nbase_url = \"https://x\"\nmode = \"service\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("tenants.acme.services.Bad"), "{err}");
}

#[test]
fn the_example_configuration_is_valid() {
    let text = include_str!("../../../airlock.example.toml");
    let c = parse(text).unwrap();
    assert_eq!(
        c.tenants["acme"].services["notes"].path_prefixes,
        ["/notes"]
    );
    assert!(c.data_dir.is_absolute());
}

#[test]
fn an_issuer_shared_by_tenants_must_have_one_set_of_settings() {
    let two = |extra: &str| {
        format!(
            "{GOOD}\n[tenants.globex]\nissuers = [{{ issuer = \"https://idp.example.com\"{extra} }}]\n"
        )
    };
    assert!(parse(&two("")).is_ok(), "same settings: fine");
    let err = parse(&two(", jwks_uri = \"https://idp.example.com/other-keys\""))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tenants.globex.issuers[0]") && err.contains("`acme`"),
        "{err}"
    );
}

#[test]
fn accepted_token_types_are_per_issuer() {
    let c = parse(GOOD).unwrap();
    assert_eq!(
        c.tenants["acme"].issuers[0].token_types,
        DEFAULT_TOKEN_TYPES
    );
    let text = GOOD.replace(
        "issuer = \"https://idp.example.com\"",
        "issuer = \"https://idp.example.com\", token_types = [\"at+jwt\"]",
    );
    assert_eq!(
        parse(&text).unwrap().tenants["acme"].issuers[0].token_types,
        ["at+jwt"]
    );
    let text = GOOD.replace(
        "issuer = \"https://idp.example.com\"",
        "issuer = \"https://idp.example.com\", token_types = [\"\"]",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("tenants.acme.issuers[0].token_types"), "{err}");
}

#[test]
fn issuer_key_fetches_have_a_timeout() {
    let c = parse(GOOD).unwrap();
    assert_eq!(
        c.tenants["acme"].issuers[0].jwks_fetch_timeout,
        std::time::Duration::from_secs(5)
    );
    let with = |ms: &str| {
        GOOD.replace(
            "issuer = \"https://idp.example.com\"",
            &format!("issuer = \"https://idp.example.com\", jwks_fetch_timeout_ms = {ms}"),
        )
    };
    assert_eq!(
        parse(&with("1500")).unwrap().tenants["acme"].issuers[0].jwks_fetch_timeout,
        std::time::Duration::from_millis(1500)
    );
    for bad in ["0", "99", "60001"] {
        let err = parse(&with(bad)).unwrap_err().to_string();
        assert!(
            err.contains("tenants.acme.issuers[0].jwks_fetch_timeout_ms"),
            "{bad}: {err}"
        );
    }
    // Two tenants sharing the issuer must agree on it too.
    let text = format!(
        "{}\n[tenants.globex]\nissuers = [{{ issuer = \"https://idp.example.com\" }}]\n",
        with("1500")
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("tenants.globex.issuers[0]"), "{err}");
}

#[test]
fn rate_limits_are_off_unless_set_and_validated() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.tenants["acme"].rate_limit, super::RateLimit::default());
    assert_eq!(c.server.metrics_listen, None);
    let example = parse(include_str!("../../../airlock.example.toml")).unwrap();
    let limits = example.tenants["acme"].rate_limit;
    assert_eq!(
        limits.per_user,
        Some(super::Rate {
            interval: Duration::from_millis(100),
            burst: 20
        })
    );
    assert_eq!(limits.tenant.map(|r| r.burst), Some(400));
    assert!(example.server.metrics_listen.is_some());
    let with = |table: &str| parse(&format!("{GOOD}\n[tenants.acme.rate_limit]\n{table}\n"));
    // The burst defaults to one second's worth.
    let c = with("per_user_requests_per_second = 2.5").unwrap();
    assert_eq!(
        c.tenants["acme"].rate_limit.per_user.map(|r| r.burst),
        Some(3)
    );
    assert_eq!(c.tenants["acme"].rate_limit.tenant, None);
    for (bad, key) in [
        (
            "requests_per_second = 0",
            "tenants.acme.rate_limit.requests_per_second",
        ),
        (
            "requests_per_second = -1",
            "tenants.acme.rate_limit.requests_per_second",
        ),
        (
            "requests_per_second = nan",
            "tenants.acme.rate_limit.requests_per_second",
        ),
        ("burst = 5", "tenants.acme.rate_limit.burst"),
        (
            "per_user_requests_per_second = 1\nper_user_burst = 0",
            "tenants.acme.rate_limit.per_user_burst",
        ),
    ] {
        let err = with(bad).unwrap_err().to_string();
        assert!(err.contains(key), "{bad}: {err}");
    }
    assert!(
        with("per_user_rps = 1").is_err(),
        "unknown keys are refused"
    );
}

#[test]
fn cpu_limits_weights_and_guest_threads_are_read() {
    let example = parse(include_str!("../../../airlock.example.toml")).unwrap();
    let acme = &example.tenants["acme"];
    assert_eq!(acme.weight, 1);
    let whoami = acme
        .install
        .iter()
        .find(|i| i.component == "whoami")
        .unwrap();
    assert_eq!(whoami.limits.cpu, Duration::from_millis(1000));
    assert!(example.server.guest_threads >= 1);
    let err = parse(&format!(
        "{GOOD}\n[tenants.globex]\nissuers = []\nweight = 0\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("tenants.globex.weight"), "{err}");
}

#[test]
fn stale_issuer_keys_have_an_allowance() {
    let c = parse(GOOD).unwrap();
    assert_eq!(
        c.tenants["acme"].issuers[0].jwks_max_stale,
        std::time::Duration::from_secs(86_400)
    );
    let with = |s: &str| {
        GOOD.replace(
            "issuer = \"https://idp.example.com\"",
            &format!("issuer = \"https://idp.example.com\", jwks_max_stale_s = {s}"),
        )
    };
    assert_eq!(
        parse(&with("0")).unwrap().tenants["acme"].issuers[0].jwks_max_stale,
        std::time::Duration::ZERO
    );
    for bad in ["2592001", "-1", "\"1h\""] {
        let err = parse(&with(bad)).unwrap_err().to_string();
        assert!(err.contains("jwks_max_stale_s"), "{bad}: {err}");
    }
    // Keys that are never fresh would be fetched without pause.
    let never_fresh = GOOD.replace(
        "issuer = \"https://idp.example.com\"",
        "issuer = \"https://idp.example.com\", jwks_max_age_s = 0",
    );
    let err = parse(&never_fresh).unwrap_err().to_string();
    assert!(
        err.contains("tenants.acme.issuers[0].jwks_max_age_s"),
        "{err}"
    );
}
