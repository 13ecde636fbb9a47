//! `airlock dev` as a user meets it: the full OAuth login flow against the
//! development authorization server driven by an HTTP client (discover,
//! register, authorize, log in, code, token with `resource`, call a tool),
//! refresh tokens, and `airlock token`.

use std::collections::HashMap;
use std::path::Path;

use airlock_host::dev::{DevOptions, DevServer};
use airlock_tests::client::{connect, tool_names};
use airlock_tests::guests;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

struct Dev {
    url: String,
    data: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_dev() -> Dev {
    let data = tempfile::tempdir().expect("tempdir");
    let tools = Path::new(guests::ECHO).parent().expect("dir").to_path_buf();
    let mut out = Vec::new();
    let server = DevServer::start(
        DevOptions {
            data: data.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            tools: Some(tools),
        },
        &mut out,
    )
    .await
    .expect("airlock dev starts");
    let url = server.url.clone();
    let banner = server.banner(data.path());
    assert!(banner.contains(&format!("{url}/mcp/acme")), "{banner}");
    assert!(
        banner.contains("npx @modelcontextprotocol/inspector"),
        "{banner}"
    );
    let task = tokio::spawn(async move {
        let _ = server.serve(std::future::pending()).await;
    });
    Dev { url, data, task }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .expect("absolute redirect")
        .query_pairs()
        .into_owned()
        .collect()
}

const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// Discover the acme issuer from the resource's metadata, as an MCP client does.
async fn discover(dev: &Dev) -> Value {
    let prm: Value = http()
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp/acme",
            dev.url
        ))
        .send()
        .await
        .expect("PRM")
        .json()
        .await
        .expect("json");
    let issuer = prm["authorization_servers"][0].as_str().expect("issuer");
    let parsed = url::Url::parse(issuer).expect("issuer URL");
    let well_known = format!(
        "{}/.well-known/oauth-authorization-server{}",
        parsed.origin().ascii_serialization(),
        parsed.path()
    );
    let meta: Value = http()
        .get(well_known)
        .send()
        .await
        .expect("AS metadata")
        .json()
        .await
        .expect("json");
    assert_eq!(meta["issuer"], issuer);
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    meta
}

async fn register(meta: &Value) -> String {
    let response = http()
        .post(
            meta["registration_endpoint"]
                .as_str()
                .expect("registration"),
        )
        .json(&json!({
            "redirect_uris": [REDIRECT], "client_name": "flow test",
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), 201);
    let client: Value = response.json().await.expect("json");
    client["client_id"].as_str().expect("client_id").to_string()
}

fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode([7u8; 40]);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Authorize and log in as `user`; returns the redirect's query.
async fn log_in(
    meta: &Value,
    client_id: &str,
    challenge: &str,
    resource: &str,
    user: &str,
) -> HashMap<String, String> {
    let params = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("state", "xyz"),
        ("resource", resource),
    ];
    let endpoint = meta["authorization_endpoint"].as_str().expect("authorize");
    let page = http()
        .get(endpoint)
        .query(&params)
        .send()
        .await
        .expect("authorize");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("alice") && html.contains("bob"), "{html}");
    let mut form: Vec<(&str, &str)> = params.to_vec();
    form.push(("user", user));
    let response = http()
        .post(endpoint)
        .form(&form)
        .send()
        .await
        .expect("log in");
    assert!(response.status().is_redirection(), "{}", response.status());
    let location = response.headers()["location"].to_str().expect("location");
    assert!(location.starts_with(REDIRECT), "{location}");
    query_of(location)
}

async fn token_request(meta: &Value, form: &[(&str, &str)]) -> (u16, Value) {
    let response = http()
        .post(meta["token_endpoint"].as_str().expect("token"))
        .form(form)
        .send()
        .await
        .expect("token");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

async fn call_whoami(endpoint: &str, token: &str) -> Value {
    let client = connect(endpoint, token, &ProtocolVersion::V_2026_07_28).await;
    let names = tool_names(&client).await;
    assert!(names.contains(&"echo".to_string()) && names.contains(&"whoami".to_string()));
    let result = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .expect("call whoami");
    let _ = client.cancel().await;
    result.structured_content.expect("structured")
}

#[tokio::test]
async fn the_full_login_flow_ends_in_a_tool_call_as_alice() {
    let dev = start_dev().await;
    let resource = format!("{}/mcp/acme", dev.url);
    let meta = discover(&dev).await;
    let client_id = register(&meta).await;
    let (verifier, challenge) = pkce();
    let redirect = log_in(&meta, &client_id, &challenge, &resource, "alice").await;
    assert_eq!(redirect["state"], "xyz");
    assert_eq!(redirect["iss"], meta["issuer"].as_str().expect("issuer"));
    let code = redirect["code"].clone();

    // A wrong verifier fails, and spends the code.
    let (status, body) = token_request(
        &meta,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", &client_id),
            ("code_verifier", &URL_SAFE_NO_PAD.encode([9u8; 40])),
            ("resource", &resource),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // The code was consumed by the failed attempt: log in again.
    let redirect = log_in(&meta, &client_id, &challenge, &resource, "alice").await;
    let code = redirect["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", client_id.as_str()),
        ("code_verifier", verifier.as_str()),
        ("resource", resource.as_str()),
    ];
    let (status, tokens) = token_request(&meta, &form).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    let access = tokens["access_token"].as_str().expect("access token");
    let who = call_whoami(&resource, access).await;
    assert_eq!(who["actor"]["subject"], "alice", "{who}");
    assert_eq!(who["tenant"], "acme");
    assert_eq!(who["agent"]["client_id"], client_id.as_str());

    // The code is single-use.
    let (status, body) = token_request(&meta, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Refresh tokens rotate: the new one works, the old one is spent.
    let refresh = tokens["refresh_token"].as_str().expect("refresh token");
    let refresh_form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", client_id.as_str()),
    ];
    let (status, renewed) = token_request(&meta, &refresh_form).await;
    assert_eq!(status, 200, "{renewed}");
    let who = call_whoami(&resource, renewed["access_token"].as_str().expect("at")).await;
    assert_eq!(who["actor"]["subject"], "alice");
    let (status, body) = token_request(&meta, &refresh_form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn the_authorization_server_refuses_what_it_must() {
    let dev = start_dev().await;
    let meta = discover(&dev).await;
    let client_id = register(&meta).await;
    let (_, challenge) = pkce();
    let endpoint = meta["authorization_endpoint"].as_str().expect("authorize");
    let authorize = |params: Vec<(&'static str, String)>| {
        let request = http().get(endpoint).query(&params);
        async move { request.send().await.expect("authorize") }
    };
    let base = |resource: String| {
        vec![
            ("response_type", "code".to_string()),
            ("client_id", client_id.clone()),
            ("redirect_uri", REDIRECT.to_string()),
            ("code_challenge", challenge.clone()),
            ("code_challenge_method", "S256".to_string()),
            ("resource", resource),
        ]
    };
    // Another tenant's endpoint as the resource: invalid_target, back to the client.
    let response = authorize(base(format!("{}/mcp/globex", dev.url))).await;
    assert!(response.status().is_redirection());
    let q = query_of(response.headers()["location"].to_str().expect("location"));
    assert_eq!(q["error"], "invalid_target");
    // No PKCE: invalid_request.
    let mut params = base(format!("{}/mcp/acme", dev.url));
    params.retain(|(k, _)| !k.starts_with("code_challenge"));
    let response = authorize(params).await;
    let q = query_of(response.headers()["location"].to_str().expect("location"));
    assert_eq!(q["error"], "invalid_request");
    // An unregistered redirect URI is never redirected to.
    let mut params = base(format!("{}/mcp/acme", dev.url));
    params[2].1 = "https://evil.example/cb".into();
    let response = authorize(params).await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    // An unknown client likewise.
    let mut params = base(format!("{}/mcp/acme", dev.url));
    params[1].1 = "nobody".into();
    assert_eq!(authorize(params).await.status(), 400);
    // A registration without redirect URIs.
    let response = http()
        .post(
            meta["registration_endpoint"]
                .as_str()
                .expect("registration"),
        )
        .json(&json!({ "client_name": "no redirects" }))
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_redirect_uri");
    // An unknown grant type.
    let (status, body) = token_request(
        &meta,
        &[("grant_type", "password"), ("client_id", &client_id)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
}

#[tokio::test]
async fn airlock_token_mints_tokens_for_its_own_tenant_only() {
    let dev = start_dev().await;
    let run = |args: Vec<String>| async move {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = airlock_host::cli::run(args, &mut out, &mut err).await;
        (
            code,
            String::from_utf8(out).expect("utf8"),
            String::from_utf8(err).expect("utf8"),
        )
    };
    let data = dev.data.path().display().to_string();
    let args = |tenant: &str, user: &str| {
        [
            "airlock", "token", "--tenant", tenant, "--user", user, "--data", &data,
        ]
        .map(String::from)
        .to_vec()
    };
    let (code, alice, err) = run(args("acme", "alice")).await;
    assert_eq!(code, 0, "{err}");
    let who = call_whoami(&format!("{}/mcp/acme", dev.url), alice.trim()).await;
    assert_eq!(who["actor"]["subject"], "alice");

    // carol's globex token is refused at acme.
    let (code, carol, _) = run(args("globex", "carol")).await;
    assert_eq!(code, 0);
    let response = http()
        .post(format!("{}/mcp/acme", dev.url))
        .header("authorization", format!("Bearer {}", carol.trim()))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);

    // Unknown users and tenants are named.
    let (code, _, err) = run(args("acme", "carol")).await;
    assert_eq!(code, 1);
    assert!(err.contains("carol") && err.contains("alice, bob"), "{err}");
    let (code, _, err) = run(args("initech", "alice")).await;
    assert_eq!(code, 1);
    assert!(err.contains("initech"), "{err}");
    // Outside dev data it refuses.
    let empty = tempfile::tempdir().expect("tempdir");
    let mut a = args("acme", "alice");
    a[7] = empty.path().display().to_string();
    let (code, _, err) = run(a).await;
    assert_eq!(code, 1);
    assert!(err.contains("no airlock dev data"), "{err}");
}

#[tokio::test]
async fn a_login_hint_naming_a_demo_user_skips_the_page() {
    let dev = start_dev().await;
    let meta = discover(&dev).await;
    let client_id = register(&meta).await;
    let (verifier, challenge) = pkce();
    let resource = format!("{}/mcp/acme", dev.url);
    let endpoint = meta["authorization_endpoint"].as_str().expect("authorize");
    let params = |hint: &'static str| {
        [
            ("response_type", "code".to_string()),
            ("client_id", client_id.clone()),
            ("redirect_uri", REDIRECT.to_string()),
            ("code_challenge", challenge.clone()),
            ("code_challenge_method", "S256".to_string()),
            ("resource", resource.clone()),
            ("login_hint", hint.to_string()),
        ]
    };
    // Not a demo user of this tenant: the page is shown.
    let page = http()
        .get(endpoint)
        .query(&params("carol"))
        .send()
        .await
        .expect("authorize");
    assert_eq!(page.status(), 200);
    let response = http()
        .get(endpoint)
        .query(&params("bob"))
        .send()
        .await
        .expect("authorize");
    assert!(response.status().is_redirection());
    let q = query_of(response.headers()["location"].to_str().expect("location"));
    let (status, tokens) = token_request(
        &meta,
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("client_id", &client_id),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let who = call_whoami(&resource, tokens["access_token"].as_str().expect("at")).await;
    assert_eq!(who["actor"]["subject"], "bob");
}
