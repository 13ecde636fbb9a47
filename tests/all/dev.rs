//! `airlock dev` as a user meets it: the full OAuth login flow against the
//! development authorization server driven by an HTTP client (discover,
//! register, authorize, log in, code, token with `resource`, call a tool),
//! refresh tokens, and `airlock token`; and what keeps other web pages in the
//! developer's browser from taking tokens: the login form's one-time token
//! and cookie, no framing, CORS only where needed, registration limits, and
//! refresh-token reuse revoking the grant.

use std::collections::HashMap;

use airlock_tests::client::{connect, tool_names};
use airlock_tests::dev::{Dev, form_token};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

async fn start_dev() -> Dev {
    let dev = Dev::start().await;
    let banner = &dev.banner;
    assert!(
        banner.contains(&format!("{}/mcp/acme", dev.url)),
        "{banner}"
    );
    assert!(
        banner.contains("npx @modelcontextprotocol/inspector"),
        "{banner}"
    );
    dev
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

/// A login page as a browser receives it.
struct LoginPage {
    status: u16,
    headers: reqwest::header::HeaderMap,
    html: String,
    /// Its form's one-time token.
    form_token: String,
    /// `name=value` of the browser cookie it set.
    cookie: String,
}

/// Open the login page of the authorization request `params`.
async fn login_page(endpoint: &str, params: &[(&str, &str)]) -> LoginPage {
    let page = http()
        .get(endpoint)
        .query(params)
        .send()
        .await
        .expect("authorize");
    let status = page.status().as_u16();
    let headers = page.headers().clone();
    let html = page.text().await.expect("html");
    let form_token = form_token(&html).unwrap_or_default().to_string();
    let cookie = headers
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_string();
    LoginPage {
        status,
        headers,
        html,
        form_token,
        cookie,
    }
}

/// Submit the login form of `params` as `user`, with the form token and the
/// cookie given.
async fn submit(
    endpoint: &str,
    params: &[(&str, &str)],
    user: &str,
    form_token: Option<&str>,
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = params.to_vec();
    form.push(("user", user));
    form.extend(form_token.map(|t| ("form_token", t)));
    let mut request = http().post(endpoint).form(&form);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.expect("log in")
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
    let page = login_page(endpoint, &params).await;
    assert_eq!(page.status, 200);
    let html = &page.html;
    assert!(html.contains("alice") && html.contains("bob"), "{html}");
    let response = submit(
        endpoint,
        &params,
        user,
        Some(&page.form_token),
        Some(&page.cookie),
    )
    .await;
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
async fn a_login_hint_naming_a_demo_user_only_preselects_it() {
    let dev = start_dev().await;
    let meta = discover(&dev).await;
    let client_id = register(&meta).await;
    let (verifier, challenge) = pkce();
    let resource = format!("{}/mcp/acme", dev.url);
    let endpoint = meta["authorization_endpoint"].as_str().expect("authorize");
    let params = |hint: &'static str| {
        [
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("resource", resource.as_str()),
            ("login_hint", hint),
        ]
    };
    // Not a demo user of this tenant: nobody is preselected.
    let page = login_page(endpoint, &params("carol")).await;
    assert_eq!(page.status, 200);
    assert!(!page.html.contains("autofocus"), "{}", page.html);
    // A demo user: still the page, with no code, and bob's button focused.
    let page = login_page(endpoint, &params("bob")).await;
    assert_eq!(page.status, 200);
    assert!(!page.headers.contains_key("location"));
    assert!(
        page.html.contains("value=\"bob\" autofocus>") && !page.html.contains("alice\" autofocus"),
        "{}",
        page.html
    );
    // The code comes from the form.
    let response = submit(
        endpoint,
        &params("bob"),
        "bob",
        Some(&page.form_token),
        Some(&page.cookie),
    )
    .await;
    assert!(response.status().is_redirection(), "{}", response.status());
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

/// The headers that keep the login page out of frames, caches and referrers.
fn assert_unframeable(headers: &reqwest::header::HeaderMap, what: &str) {
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(
            headers.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{what}: {name}"
        );
    }
}

#[tokio::test]
async fn the_login_form_gives_a_code_once_with_its_token_in_its_browser() {
    let dev = start_dev().await;
    let meta = discover(&dev).await;
    let client_id = register(&meta).await;
    let (_, challenge) = pkce();
    let resource = format!("{}/mcp/acme", dev.url);
    let endpoint = meta["authorization_endpoint"].as_str().expect("authorize");
    let params = |state: &'static str| {
        [
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", state),
            ("resource", resource.as_str()),
        ]
    };
    // Two requests, opened in two browsers.
    let a = login_page(endpoint, &params("a")).await;
    let b = login_page(endpoint, &params("b")).await;
    assert_eq!((a.status, b.status), (200, 200));
    assert_unframeable(&a.headers, "the login page");
    let set_cookie = a.headers["set-cookie"].to_str().expect("cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/dev/acme"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!a.form_token.is_empty() && a.form_token != b.form_token);
    assert_ne!(a.cookie, b.cookie);

    let refused = async |response: reqwest::Response, what: &str| {
        assert_eq!(response.status(), 400, "{what}");
        assert!(!response.headers().contains_key("location"), "{what}");
        assert_unframeable(response.headers(), what);
    };
    let a_params = params("a");
    let a_token = Some(a.form_token.as_str());
    let a_cookie = Some(a.cookie.as_str());
    let cases = [
        ("no form token", None, a_cookie),
        (
            "another request's token",
            Some(b.form_token.as_str()),
            Some(b.cookie.as_str()),
        ),
        ("no cookie", a_token, None),
        ("another browser's cookie", a_token, Some(b.cookie.as_str())),
        ("a made-up token", Some("made-up"), a_cookie),
    ];
    for (what, token, cookie) in cases {
        refused(
            submit(endpoint, &a_params, "alice", token, cookie).await,
            what,
        )
        .await;
    }
    // The page's own form, in its own browser: a code, once.
    let response = submit(endpoint, &a_params, "alice", a_token, a_cookie).await;
    assert!(response.status().is_redirection(), "{}", response.status());
    let q = query_of(response.headers()["location"].to_str().expect("location"));
    assert_eq!(q["state"], "a");
    assert!(q.contains_key("code"));
    refused(
        submit(endpoint, &a_params, "alice", a_token, a_cookie).await,
        "a reused token",
    )
    .await;
    // b's form was not spent by the refusals.
    let response = submit(
        endpoint,
        &params("b"),
        "bob",
        Some(&b.form_token),
        Some(&b.cookie),
    )
    .await;
    assert!(response.status().is_redirection(), "{}", response.status());
}

#[tokio::test]
async fn cors_is_offered_to_browser_clients_but_never_on_the_login_page() {
    const ORIGIN: &str = "http://localhost:6274";
    let dev = start_dev().await;
    let meta = discover(&dev).await;
    let client_id = register(&meta).await;
    let (_, challenge) = pkce();
    let allowed = |response: &reqwest::Response| {
        response
            .headers()
            .get("access-control-allow-origin")
            .is_some()
    };
    let issuer = meta["issuer"].as_str().expect("issuer");
    for url in [
        format!(
            "{}/.well-known/oauth-authorization-server/dev/acme",
            dev.url
        ),
        format!("{issuer}/.well-known/openid-configuration"),
        format!("{issuer}/jwks"),
    ] {
        let response = http()
            .get(&url)
            .header("origin", ORIGIN)
            .send()
            .await
            .expect("get");
        assert!(allowed(&response), "{url}");
    }
    let response = http()
        .post(meta["registration_endpoint"].as_str().expect("register"))
        .header("origin", ORIGIN)
        .json(&json!({ "redirect_uris": [REDIRECT] }))
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), 201);
    assert!(allowed(&response), "register");
    let token_endpoint = meta["token_endpoint"].as_str().expect("token");
    let response = http()
        .post(token_endpoint)
        .header("origin", ORIGIN)
        .form(&[("grant_type", "password"), ("client_id", &client_id)])
        .send()
        .await
        .expect("token");
    assert!(allowed(&response), "token");
    let preflight = |url: &str| {
        http()
            .request(reqwest::Method::OPTIONS, url)
            .header("origin", ORIGIN)
            .header("access-control-request-method", "POST")
            .send()
    };
    assert!(allowed(
        &preflight(token_endpoint).await.expect("preflight")
    ));

    let endpoint = meta["authorization_endpoint"].as_str().expect("authorize");
    let params = [
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let page = http()
        .get(endpoint)
        .query(&params)
        .header("origin", ORIGIN)
        .send()
        .await
        .expect("authorize");
    assert_eq!(page.status(), 200);
    assert!(!allowed(&page), "the login page");
    let post = http()
        .post(endpoint)
        .header("origin", ORIGIN)
        .form(&params)
        .send()
        .await
        .expect("log in");
    assert!(!allowed(&post), "the login form");
    assert!(!allowed(&preflight(endpoint).await.expect("preflight")));
}

#[tokio::test]
async fn the_21st_registration_in_a_minute_from_one_address_waits() {
    let dev = start_dev().await;
    let meta = discover(&dev).await;
    for _ in 0..20 {
        register(&meta).await;
    }
    let response = http()
        .post(meta["registration_endpoint"].as_str().expect("register"))
        .json(&json!({ "redirect_uris": [REDIRECT] }))
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), 429);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
}

#[tokio::test]
async fn refresh_token_reuse_revokes_every_token_of_its_grant() {
    let dev = start_dev().await;
    let resource = format!("{}/mcp/acme", dev.url);
    let meta = discover(&dev).await;
    let client_id = register(&meta).await;
    let (verifier, challenge) = pkce();
    let grant = async || {
        let redirect = log_in(&meta, &client_id, &challenge, &resource, "alice").await;
        let (status, tokens) = token_request(
            &meta,
            &[
                ("grant_type", "authorization_code"),
                ("code", &redirect["code"]),
                ("redirect_uri", REDIRECT),
                ("client_id", &client_id),
                ("code_verifier", &verifier),
            ],
        )
        .await;
        assert_eq!(status, 200, "{tokens}");
        tokens["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_string()
    };
    let refresh = async |token: &str| {
        token_request(
            &meta,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", &client_id),
            ],
        )
        .await
    };
    let first = grant().await;
    let other = grant().await;
    let (status, second) = refresh(&first).await;
    assert_eq!(status, 200, "{second}");
    let second = second["refresh_token"].as_str().expect("rt").to_string();
    let (status, third) = refresh(&second).await;
    assert_eq!(status, 200, "{third}");
    let third = third["refresh_token"].as_str().expect("rt").to_string();
    // The first token again: refused, and its descendants die with it.
    let (status, body) = refresh(&first).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    for (what, token) in [("the newest", &third), ("the middle", &second)] {
        let (status, body) = refresh(token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{what}"
        );
    }
    // Another grant of the same user and client is untouched.
    let (status, body) = refresh(&other).await;
    assert_eq!(status, 200, "{body}");
}
