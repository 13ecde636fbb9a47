//! The HTTP edge as a client meets it: bearer-token validation with exact
//! statuses and challenges, Protected Resource Metadata, Origin checks, key
//! rotation at the issuer, and legacy sessions bound to their creator.

use airlock_tests::idp::{TestIdp, TestKey, now, raw_jwt};
use airlock_tests::server::{TestServer, tenant};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Two tenants with their own issuers: acme requires `mcp`, globex nothing.
async fn two_tenants() -> (TestServer, TestIdp, TestIdp) {
    let acme = TestIdp::start("acme").await;
    let globex = TestIdp::start("").await;
    let config = format!(
        "{}{}",
        tenant("acme", &acme.issuer, &["mcp"]),
        tenant("globex", &globex.issuer, &[])
    );
    (TestServer::start(&config).await, acme, globex)
}

fn initialize() -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": { "name": "edge-test", "version": "1" }
        }
    })
}

/// POST a legacy `initialize` with `authorization` (the whole header value).
async fn post(url: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize());
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.expect("request")
}

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .expect("a WWW-Authenticate header")
        .to_str()
        .expect("text")
        .to_string()
}

/// Assert `response` is a 401 challenge, with `error` when given.
async fn assert_401(response: reqwest::Response, server: &TestServer, error: Option<&str>) {
    assert_eq!(response.status(), 401);
    let header = challenge(&response);
    let metadata = format!(
        "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp/acme\"",
        server.url
    );
    assert!(header.starts_with("Bearer "), "{header}");
    assert!(header.contains(&metadata), "{header}");
    assert!(header.contains("scope=\"mcp\""), "{header}");
    match error {
        Some(e) => assert!(header.contains(&format!("error=\"{e}\"")), "{header}"),
        None => assert!(!header.contains("error="), "{header}"),
    }
    let body = response.text().await.expect("body");
    assert!(
        !body.contains("eyJ"),
        "a token leaked into the body: {body}"
    );
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn a_valid_token_reaches_the_mcp_endpoint() {
    let (server, acme, _) = two_tenants().await;
    let token = acme.token(&server.endpoint("acme"), "alice", "mcp");
    let response = post(&server.endpoint("acme"), Some(&bearer(&token))).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("mcp-session-id").is_some());
}

#[tokio::test]
async fn the_bad_token_suite_answers_exactly() {
    let (server, acme, globex) = two_tenants().await;
    let url = server.endpoint("acme");
    let aud = url.as_str();

    // Missing.
    assert_401(post(&url, None).await, &server, None).await;
    // Another scheme: no bearer token was presented.
    assert_401(
        post(&url, Some("Basic YWxpY2U6c2VjcmV0")).await,
        &server,
        None,
    )
    .await;
    // Malformed bearer values.
    for bad in [
        "Bearer",
        "Bearer ",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer a b",
    ] {
        assert_401(post(&url, Some(bad)).await, &server, Some("invalid_token")).await;
    }
    // Expired, beyond the leeway.
    let mut claims = acme.claims(aud, "alice", "mcp");
    claims["exp"] = json!(now() - 120);
    claims["iat"] = json!(now() - 400);
    claims["nbf"] = json!(now() - 400);
    let expired = acme.sign(&claims);
    assert_401(
        post(&url, Some(&bearer(&expired))).await,
        &server,
        Some("invalid_token"),
    )
    .await;
    // Not yet valid.
    let mut claims = acme.claims(aud, "alice", "mcp");
    claims["nbf"] = json!(now() + 600);
    claims["exp"] = json!(now() + 900);
    let early = acme.sign(&claims);
    assert_401(
        post(&url, Some(&bearer(&early))).await,
        &server,
        Some("invalid_token"),
    )
    .await;
    // Wrong issuer: signed by a key the tenant trusts, claiming another issuer.
    let mut claims = acme.claims(aud, "alice", "mcp");
    claims["iss"] = json!("https://evil.example");
    let wrong_iss = acme.sign(&claims);
    assert_401(
        post(&url, Some(&bearer(&wrong_iss))).await,
        &server,
        Some("invalid_token"),
    )
    .await;
    // Wrong audience.
    let wrong_aud = acme.token("https://elsewhere.example/mcp", "alice", "mcp");
    assert_401(
        post(&url, Some(&bearer(&wrong_aud))).await,
        &server,
        Some("invalid_token"),
    )
    .await;
    // Another tenant's token, aimed at this tenant's endpoint.
    let other = globex.token(aud, "carol", "mcp");
    assert_401(
        post(&url, Some(&bearer(&other))).await,
        &server,
        Some("invalid_token"),
    )
    .await;
    // Another tenant's token for its own endpoint.
    let other = globex.token(&server.endpoint("globex"), "carol", "mcp");
    assert_401(
        post(&url, Some(&bearer(&other))).await,
        &server,
        Some("invalid_token"),
    )
    .await;
    // alg: none.
    let none = raw_jwt(
        &json!({"alg": "none", "typ": "JWT"}),
        &acme.claims(aud, "alice", "mcp"),
        b"",
    );
    assert_401(
        post(&url, Some(&bearer(&none))).await,
        &server,
        Some("invalid_token"),
    )
    .await;
    // HS256 "signed" with the issuer's public key.
    let key = acme.current_key();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    for secret in [
        key.public.to_vec(),
        URL_SAFE_NO_PAD.encode(key.public).into_bytes(),
        key.jwk().to_string().into_bytes(),
    ] {
        let hs = jsonwebtoken::encode(
            &header,
            &acme.claims(aud, "alice", "mcp"),
            &EncodingKey::from_secret(&secret),
        )
        .expect("sign");
        assert_401(
            post(&url, Some(&bearer(&hs))).await,
            &server,
            Some("invalid_token"),
        )
        .await;
    }
    // Unknown kid: a key the issuer never published.
    let stranger = TestKey::generate().sign(&acme.claims(aud, "alice", "mcp"));
    assert_401(
        post(&url, Some(&bearer(&stranger))).await,
        &server,
        Some("invalid_token"),
    )
    .await;
    // Tampered payload: a valid token whose payload was edited.
    let good = acme.token(aud, "alice", "mcp");
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims = acme.claims(aud, "alice", "mcp");
    claims["sub"] = json!("mallory");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert_401(
        post(&url, Some(&bearer(&tampered))).await,
        &server,
        Some("invalid_token"),
    )
    .await;
    // Another kind of JWT from the same issuer (RFC 8725 §3.11).
    let key = acme.current_key();
    for typ in ["airlock-envelope+jwt", "dpop+jwt", "id_token+jwt"] {
        let other = key.sign_typed(Some(typ), &acme.claims(aud, "alice", "mcp"));
        assert_401(
            post(&url, Some(&bearer(&other))).await,
            &server,
            Some("invalid_token"),
        )
        .await;
    }
    for typ in [
        None,
        Some("at+jwt"),
        Some("application/at+jwt"),
        Some("JWT"),
    ] {
        let ok = key.sign_typed(typ, &acme.claims(aud, "alice", "mcp"));
        assert_eq!(
            post(&url, Some(&bearer(&ok))).await.status(),
            200,
            "{typ:?}"
        );
    }
    // Subjects the host cannot key a user by.
    for sub in [
        String::new(),
        "a".repeat(256),
        "alice\nbob".into(),
        "al\u{0}ice".into(),
    ] {
        let bad = acme.sign(&acme.claims(aud, &sub, "mcp"));
        assert_401(
            post(&url, Some(&bearer(&bad))).await,
            &server,
            Some("invalid_token"),
        )
        .await;
    }
    // Missing scope: 403 naming the scope needed.
    let unscoped = acme.token(aud, "alice", "other");
    let response = post(&url, Some(&bearer(&unscoped))).await;
    assert_eq!(response.status(), 403);
    let header = challenge(&response);
    assert!(header.contains("error=\"insufficient_scope\""), "{header}");
    assert!(header.contains("scope=\"mcp\""), "{header}");
    assert!(header.contains("resource_metadata=\""), "{header}");
    // Token in the query string, alone or beside a valid header.
    let query = format!("{url}?access_token={good}");
    for auth in [None, Some(bearer(&good))] {
        let response = post(&query, auth.as_deref()).await;
        assert_eq!(response.status(), 400);
        let header = challenge(&response);
        assert!(header.contains("error=\"invalid_request\""), "{header}");
        let body = response.text().await.expect("body");
        assert!(!body.contains(&good));
    }
    // And the good token still works.
    let response = post(&url, Some(&bearer(&good))).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn protected_resource_metadata_describes_each_tenant() {
    let (server, acme, _) = two_tenants().await;
    let url = format!(
        "{}/.well-known/oauth-protected-resource/mcp/acme",
        server.url
    );
    let response = reqwest::get(&url).await.expect("get");
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.expect("json");
    assert_eq!(doc["resource"], json!(server.endpoint("acme")));
    assert_eq!(doc["authorization_servers"], json!([acme.issuer]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    let scopes = doc["scopes_supported"].as_array().expect("scopes");
    assert!(scopes.contains(&json!("mcp")) && scopes.contains(&json!("whoami")));

    let missing = format!(
        "{}/.well-known/oauth-protected-resource/mcp/nobody",
        server.url
    );
    assert_eq!(reqwest::get(&missing).await.expect("get").status(), 404);
}

#[tokio::test]
async fn a_disallowed_browser_origin_is_forbidden() {
    let (server, acme, _) = two_tenants().await;
    let token = acme.token(&server.endpoint("acme"), "alice", "mcp");
    let client = reqwest::Client::new();
    let send = |origin: &'static str| {
        client
            .post(server.endpoint("acme"))
            .header("accept", "application/json, text/event-stream")
            .header("authorization", bearer(&token))
            .header("origin", origin)
            .json(&initialize())
            .send()
    };
    assert_eq!(
        send("https://evil.example").await.expect("send").status(),
        403
    );
    assert_eq!(
        send("http://localhost:6274").await.expect("send").status(),
        200
    );
}

#[tokio::test]
async fn issuer_key_rotation_needs_no_restart() {
    let (server, acme, _) = two_tenants().await;
    let aud = server.endpoint("acme");
    let before = acme.token(&aud, "alice", "mcp");
    assert_eq!(post(&aud, Some(&bearer(&before))).await.status(), 200);
    acme.rotate();
    let after = acme.token(&aud, "alice", "mcp");
    assert_ne!(before.split('.').next(), after.split('.').next());
    assert_eq!(post(&aud, Some(&bearer(&after))).await.status(), 200);
    // The withdrawn key is no longer honoured once the keys were refetched.
    let old = post(&aud, Some(&bearer(&before))).await;
    assert_eq!(old.status(), 401);
}

#[tokio::test]
async fn an_unknown_kid_does_not_refetch_keys_without_limit() {
    let acme = TestIdp::start("acme").await;
    let config = format!(
        "[tenants.acme]\nissuers = [{{ issuer = {:?}, jwks_min_refresh_ms = 60000 }}]\n\
         [[tenants.acme.install]]\ncomponent = \"echo\"\n",
        acme.issuer
    );
    let server = TestServer::start(&config).await;
    let aud = server.endpoint("acme");
    let good = acme.token(&aud, "alice", "");
    assert_eq!(post(&aud, Some(&bearer(&good))).await.status(), 200);
    let fetches = acme.jwks_fetches();
    for _ in 0..20 {
        let stranger = TestKey::generate().sign(&acme.claims(&aud, "alice", ""));
        assert_eq!(post(&aud, Some(&bearer(&stranger))).await.status(), 401);
    }
    assert_eq!(
        acme.jwks_fetches(),
        fetches,
        "unknown kids must not flood the issuer"
    );
}

#[tokio::test]
async fn a_legacy_session_belongs_to_its_creator() {
    let (server, acme, _) = two_tenants().await;
    let url = server.endpoint("acme");
    let alice = acme.token(&url, "alice", "mcp");
    let bob = acme.token(&url, "bob", "mcp");
    let response = post(&url, Some(&bearer(&alice))).await;
    assert_eq!(response.status(), 200);
    let session = response
        .headers()
        .get("mcp-session-id")
        .expect("session id")
        .to_str()
        .expect("text")
        .to_string();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let send = |token: String| {
        reqwest::Client::new()
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("authorization", bearer(&token))
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&list)
            .send()
    };
    let hijack = send(bob).await.expect("send");
    assert_eq!(hijack.status(), 404, "bob must not use alice's session");
    // A new token for alice herself is fine.
    let again = acme.token(&url, "alice", "mcp");
    let own = send(again).await.expect("send");
    assert_ne!(own.status(), 404);
    assert_ne!(own.status(), 401);
    // Bob cannot end it either; alice can, and it is gone afterwards.
    let delete = |token: String| {
        reqwest::Client::new()
            .delete(&url)
            .header("authorization", bearer(&token))
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
    };
    let bob = acme.token(&url, "bob", "mcp");
    assert_eq!(delete(bob).await.expect("send").status(), 404);
    let alice = acme.token(&url, "alice", "mcp");
    assert_eq!(delete(alice.clone()).await.expect("send").status(), 204);
    assert_eq!(send(alice.clone()).await.expect("send").status(), 404);
    // A session id the host never issued is refused like an unknown one,
    // whoever presents it (bindings fail closed).
    let guessed = reqwest::Client::new()
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .header("authorization", bearer(&alice))
        .header("mcp-session-id", "00000000-0000-0000-0000-000000000000")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&list)
        .send()
        .await
        .expect("send");
    assert_eq!(guessed.status(), 404);
}

#[tokio::test]
async fn request_bodies_over_the_limit_are_refused() {
    let idp = TestIdp::start("").await;
    let config = format!(
        "[server]\nmax_request_bytes = 4096\n{}",
        tenant("acme", &idp.issuer, &[])
    );
    let server = TestServer::start(&config).await;
    let url = server.endpoint("acme");
    let token = idp.token(&url, "alice", "");
    let mut big = initialize();
    big["params"]["clientInfo"]["name"] = json!("x".repeat(8192));
    let response = reqwest::Client::new()
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .header("authorization", bearer(&token))
        .json(&big)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 413);
    // A normal request still works.
    assert_eq!(post(&url, Some(&bearer(&token))).await.status(), 200);
}

/// An issuer can narrow the accepted token types (RFC 9068 `at+jwt` only).
#[tokio::test]
async fn an_issuer_can_require_at_jwt() {
    let idp = TestIdp::start("").await;
    let server = TestServer::start(&format!(
        "[tenants.acme]\nissuers = [{{ issuer = {:?}, token_types = [\"at+jwt\"] }}]\n\
         scopes = [\"mcp\"]\n[[tenants.acme.install]]\ncomponent = \"echo\"\n",
        idp.issuer
    ))
    .await;
    let url = server.endpoint("acme");
    let key = idp.current_key();
    let claims = idp.claims(&url, "alice", "mcp");
    let plain = key.sign_typed(Some("JWT"), &claims);
    assert_401(
        post(&url, Some(&bearer(&plain))).await,
        &server,
        Some("invalid_token"),
    )
    .await;
    let at = key.sign_typed(Some("at+jwt"), &claims);
    assert_eq!(post(&url, Some(&bearer(&at))).await.status(), 200);
}

/// The verified-token cache is per tenant: a token accepted (and cached) at
/// one tenant's endpoint is still refused at another tenant that trusts the
/// same issuer, and a token with the wrong scope stays refused however often
/// a good one was seen.
#[tokio::test]
async fn a_cached_token_is_not_accepted_at_another_tenant() {
    let idp = TestIdp::start("").await;
    let config = format!(
        "{}{}",
        tenant("acme", &idp.issuer, &["mcp"]),
        tenant("globex", &idp.issuer, &["mcp"])
    );
    let server = TestServer::start(&config).await;
    let acme = server.endpoint("acme");
    let token = idp.token(&acme, "alice", "mcp");
    for _ in 0..3 {
        assert_eq!(post(&acme, Some(&bearer(&token))).await.status(), 200);
    }
    let at_globex = post(&server.endpoint("globex"), Some(&bearer(&token))).await;
    assert_eq!(at_globex.status(), 401, "the audience is acme's");
    let unscoped = idp.token(&acme, "alice", "other");
    assert_eq!(post(&acme, Some(&bearer(&unscoped))).await.status(), 403);
}
