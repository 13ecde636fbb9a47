//! The delegation broker against real services on loopback: policy, egress
//! safety, the signed envelope on every request, credentials per mode, token
//! exchange, the audit record of every request, and users kept apart under load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use airlock_tests::idp::TestIdp;
use airlock_tests::server::TestServer;

use airlock_tests::client::call;

use crate::audit::airlock;

/// What the service saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Service {
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn service_handler(
    State(s): State<Service>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    s.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path_and_query: path_and_query.clone(),
        headers: headers.clone(),
        body,
    });
    if uri.path().ends_with("/big") {
        return vec![b'x'; 2 * 1024 * 1024].into_response();
    }
    if uri.path().ends_with("/redirect") {
        return (
            StatusCode::FOUND,
            [("location", "http://169.254.169.254/latest/meta-data")],
        )
            .into_response();
    }
    let who = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        [
            ("set-cookie", "session=secret"),
            ("x-auth-token", "leaky"),
            ("x-request-id", "r-1"),
        ],
        axum::Json(json!({"ok": true, "authorization": who})),
    )
        .into_response()
}

/// A fake authorization server: token exchange returns `obo:{sub}:{n}` for
/// the subject token's `sub`, after checking the host's client credentials.
#[derive(Clone, Default)]
struct Issuer {
    exchanges: Arc<AtomicU32>,
    client_tokens: Arc<AtomicU32>,
    subject_tokens: Arc<Mutex<Vec<String>>>,
}

async fn token_endpoint(State(s): State<Issuer>, headers: HeaderMap, body: String) -> Response {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("airlock-host:s3cret")
    );
    if headers.get("authorization").map(|v| v.to_str().unwrap()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    if form.get("grant_type").map(String::as_str) == Some("client_credentials") {
        let n = s.client_tokens.fetch_add(1, Ordering::SeqCst);
        return axum::Json(json!({
            "access_token": format!("cc:{}:{n}", form.get("scope").map_or("", String::as_str)),
            "token_type": "Bearer",
            "expires_in": 300,
        }))
        .into_response();
    }
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:token-exchange")
        || form.get("audience").map(String::as_str) != Some("https://tickets.example")
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_request"})),
        )
            .into_response();
    }
    let subject = form["subject_token"].clone();
    let payload = subject.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let n = s.exchanges.fetch_add(1, Ordering::SeqCst);
    s.subject_tokens.lock().unwrap().push(subject);
    axum::Json(json!({
        "access_token": format!("obo:{}:{n}", claims["sub"].as_str().unwrap()),
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer",
        "expires_in": 300,
    }))
    .into_response()
}

struct World {
    idp: TestIdp,
    server: TestServer,
    service: Service,
    issuer: Issuer,
    _secrets: tempfile::TempDir,
}

async fn listen(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn world() -> World {
    let idp = TestIdp::start("").await;
    let service = Service::default();
    let svc = listen(
        Router::new()
            .fallback(service_handler)
            .with_state(service.clone()),
    )
    .await;
    let issuer = Issuer::default();
    let as_url = listen(
        Router::new()
            .route("/token", axum::routing::post(token_endpoint))
            .with_state(issuer.clone()),
    )
    .await;
    let secrets = tempfile::tempdir().unwrap();
    let api_key = secrets.path().join("api-key");
    std::fs::write(&api_key, "the-api-key\n").unwrap();
    let client_secret = secrets.path().join("client-secret");
    let vault_key = secrets.path().join("vault.key");
    airlock_host::vault::MasterKey::create_file(&vault_key).unwrap();
    std::fs::write(&client_secret, "s3cret").unwrap();
    let port = svc.rsplit(':').next().unwrap();
    let tenant = format!(
        r#"[vault]
master_key_file = {vault_key:?}
[tenants.acme]
issuers = [{{ issuer = "{issuer_url}" }}]
[tenants.acme.connect]
client_id = "airlock-connect"
authorization_endpoint = "{issuer_url}/authorize"
token_endpoint = "{issuer_url}/token"
[tenants.acme.providers.mail]
authorization_endpoint = "https://mail.example/authorize"
token_endpoint = "https://mail.example/token"
client_id = "airlock"
[tenants.acme.services.api]
base_url = "{svc}/base"
mode = "service"
scope = "api"
methods = ["GET", "POST"]
path_prefixes = ["/items", "/big", "/redirect"]
max_request_kib = 1
allow_private = true
credential = {{ type = "static", header = "x-api-key", secret_file = {api_key:?} }}
[tenants.acme.services.ungranted]
base_url = "{svc}/"
mode = "service"
allow_private = true
[tenants.acme.services.tickets]
base_url = "{svc}/t"
mode = "on-behalf-of"
allow_private = true
token_exchange = {{ token_endpoint = "{as_url}/token", client_id = "airlock-host", secret_file = {client_secret:?}, audience = "https://tickets.example" }}
[tenants.acme.services.machine]
base_url = "{svc}/m"
mode = "service"
allow_private = true
credential = {{ type = "client-credentials", token_endpoint = "{as_url}/token", client_id = "airlock-host", secret_file = {client_secret:?}, scopes = ["read"] }}
[tenants.acme.services.named]
base_url = "http://localhost:{port}/"
mode = "service"
[tenants.acme.services.mail]
base_url = "https://mail.example"
mode = "user-token"
provider = "mail"
[[tenants.acme.install]]
component = "hostile"
services = ["api", "tickets", "named", "mail", "machine"]
"#,
        issuer_url = idp.issuer,
    );
    let server = TestServer::start_brokered(&tenant).await;
    World {
        idp,
        server,
        service,
        issuer,
        _secrets: secrets,
    }
}

/// The claims of the envelope a request carried (unverified: the service
/// test in this file verifies one; here only who it names matters).
fn envelope_claims(r: &Seen) -> Value {
    let token = r.headers["airlock-envelope"].to_str().unwrap();
    let payload = URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// The text the `fetch` tool returned.
fn tool_text(body: &str) -> String {
    let json = body
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(body);
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text: {body}"))
        .to_string()
}

impl World {
    async fn fetch_as(&self, user: &str, scope: &str, args: Value) -> String {
        let url = self.server.endpoint("acme");
        let token = self.idp.token(&url, user, scope);
        let (_, body) = call(&url, &token, "fetch", args).await;
        tool_text(&body)
    }

    async fn fetch(&self, args: Value) -> String {
        self.fetch_as("alice", "api", args).await
    }

    fn seen(&self) -> Vec<Seen> {
        self.service.seen.lock().unwrap().clone()
    }
}

async fn jwks(server: &TestServer) -> JwkSet {
    reqwest::get(format!("{}/.well-known/jwks.json", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_service_request_carries_the_host_credential_and_a_bound_envelope() {
    let w = world().await;
    let out = w
        .fetch(json!({"service": "api", "method": "POST", "path": "/items",
                      "query": [["q", "a b"]], "headers": [["x-custom", "1"]], "body": "{\"n\":1}"}))
        .await;
    assert!(out.starts_with("status 200"), "{out}");
    // Credential-bearing response headers never reach the tool.
    assert!(
        out.contains("x-request-id")
            && !out.contains("set-cookie")
            && !out.contains("x-auth-token"),
        "{out}"
    );
    let seen = w.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path_and_query, "/base/items?q=a+b");
    assert_eq!(r.headers["x-api-key"], "the-api-key");
    assert_eq!(r.headers["x-custom"], "1");
    assert!(
        r.headers.get("authorization").is_none(),
        "the caller's token never leaves"
    );
    assert!(
        r.headers["traceparent"]
            .to_str()
            .unwrap()
            .starts_with("00-")
    );

    let token = r.headers["airlock-envelope"].to_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("airlock-envelope+jwt"));
    let set = jwks(&w.server).await;
    let key = DecodingKey::from_jwk(set.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
    let audience = format!(
        "{}/base",
        r.headers["host"]
            .to_str()
            .map(|h| format!("http://{h}"))
            .unwrap()
    );
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[&w.server.url]);
    validation.set_audience(&[&audience]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["actor"]["subject"], "alice");
    assert_eq!(claims["actor"]["issuer"], w.idp.issuer.as_str());
    assert_eq!(claims["tool"], "fetch");
    assert_eq!(claims["req"]["method"], "POST");
    assert_eq!(claims["req"]["path"], "/base/items?q=a+b");
    assert_eq!(
        claims["req"]["body_sha256"],
        URL_SAFE_NO_PAD.encode(Sha256::digest(&r.body))
    );
    assert!(
        r.headers["traceparent"]
            .to_str()
            .unwrap()
            .contains(claims["trace_id"].as_str().unwrap())
    );
}

#[tokio::test]
async fn policy_refusals_are_specific_and_audited() {
    let w = world().await;
    let cases = [
        (
            json!({"service": "ungranted", "method": "GET", "path": "/items"}),
            "error not-granted: this tool is not granted service `ungranted`",
        ),
        (
            json!({"service": "nowhere", "method": "GET", "path": "/items"}),
            "error not-granted: service `nowhere` is not configured",
        ),
        (
            json!({"service": "api", "method": "DELETE", "path": "/items/1"}),
            "error denied-by-policy: service `api` does not allow DELETE",
        ),
        (
            json!({"service": "api", "method": "GET", "path": "/admin"}),
            "error denied-by-policy: service `api` does not allow the path /admin",
        ),
        (
            json!({"service": "api", "method": "GET", "path": "/itemsx"}),
            "error denied-by-policy",
        ),
        (
            json!({"service": "api", "method": "POST", "path": "/items", "body": "x".repeat(2000)}),
            "error limit-exceeded: the request body is 2000 bytes",
        ),
        (
            json!({"service": "mail", "method": "GET", "path": "/inbox"}),
            "error not-connected: service `mail` needs the user's mail account",
        ),
        (
            json!({"service": "api", "method": "GET", "path": "/items/%2e%2e/admin"}),
            "error invalid-request",
        ),
        (
            json!({"service": "api", "method": "GET", "path": "/items/%2fadmin"}),
            "error invalid-request",
        ),
        (
            json!({"service": "api", "method": "GET", "path": "http://169.254.169.254/latest"}),
            "error invalid-request",
        ),
        (
            json!({"service": "api", "method": "GET", "path": "/items", "headers": [["x-a", "b\r\nHost: evil"]]}),
            "error invalid-request",
        ),
        (
            json!({"service": "api", "method": "GET", "path": "/items", "headers": [["authorization", "Bearer stolen"]]}),
            "error invalid-request",
        ),
    ];
    for (args, expected) in &cases {
        let out = w.fetch(args.clone()).await;
        assert!(out.starts_with(expected), "{args}: {out}");
    }
    // The caller lacks the service's scope.
    let out = w
        .fetch_as(
            "alice",
            "",
            json!({"service": "api", "method": "GET", "path": "/items"}),
        )
        .await;
    assert!(
        out.starts_with("error not-granted: service `api` needs scope `api`"),
        "{out}"
    );
    assert!(w.seen().is_empty(), "nothing refused reached the service");

    // Every refusal has its audit record, with the reason; no query values.
    let data = w.server.stop_keeping_data().await.unwrap();
    let (_, out, _) = airlock(&[
        "audit",
        "export",
        "--data",
        &data.path().display().to_string(),
    ])
    .await;
    let delegations: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["body"].clone())
        .filter(|b| b["event"]["kind"] == "delegation")
        .collect();
    assert_eq!(delegations.len(), cases.len() + 1, "{out}");
    for d in &delegations {
        assert!(d["event"]["refusal"].is_string(), "{d}");
        assert_eq!(d["actor_subject"], "alice");
        assert_eq!(d["tool"], "fetch");
    }
    assert!(
        out.contains("not-granted")
            && out.contains("denied-by-policy")
            && out.contains("not-connected")
    );
}

#[tokio::test]
async fn egress_refuses_private_addresses_redirects_and_oversized_responses() {
    let w = world().await;
    // A name that resolves to loopback, for a service that does not allow it.
    let out = w
        .fetch(json!({"service": "named", "method": "GET", "path": "/x"}))
        .await;
    assert!(
        out.starts_with(
            "error denied-by-policy: service `named` is not reachable: localhost resolves to"
        ),
        "{out}"
    );
    // A redirect to the metadata service is handed back, never followed.
    let out = w
        .fetch(json!({"service": "api", "method": "GET", "path": "/redirect"}))
        .await;
    assert!(out.starts_with("status 302"), "{out}");
    assert_eq!(w.seen().len(), 1);
    // A response over the service's limit (1 MiB) is refused, not truncated.
    let out = w
        .fetch(json!({"service": "api", "method": "GET", "path": "/big"}))
        .await;
    assert!(
        out.starts_with("error limit-exceeded: the response of service `api` is larger than"),
        "{out}"
    );
}

#[tokio::test]
async fn services_at_private_ip_literals_are_refused_at_start() {
    let idp = TestIdp::start("").await;
    for host in [
        "127.0.0.1",
        "169.254.169.254",
        "[::1]",
        "0x7f000001",
        "017700000001",
        "2130706433",
        "[::ffff:127.0.0.1]",
        "10.1.2.3",
    ] {
        let text = format!(
            "listen = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1:9\"\ndata_dir = \"/tmp\"\n\
             [tenants.acme]\nissuers = [{{ issuer = {:?} }}]\n\
             [tenants.acme.services.s]\nbase_url = \"http://{host}/\"\nmode = \"service\"\n",
            idp.issuer
        );
        let data = tempfile::tempdir().unwrap();
        let text = text.replace("/tmp", &data.path().display().to_string());
        let config =
            airlock_host::config::Config::parse(&text, std::path::Path::new("t.toml"), data.path())
                .unwrap();
        let err = airlock_host::server::Host::build(config)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tenants.acme.services.s") && err.contains("allow_private"),
            "{host}: {err}"
        );
    }
}

#[tokio::test]
async fn on_behalf_of_exchanges_the_callers_token_once_per_user() {
    let w = world().await;
    let args = json!({"service": "tickets", "method": "GET", "path": "/mine"});
    let alice = w.fetch_as("alice", "api", args.clone()).await;
    assert!(
        alice.contains("\"authorization\":\"Bearer obo:alice:"),
        "{alice}"
    );
    let again = w.fetch_as("alice", "api", args.clone()).await;
    assert!(again.contains("Bearer obo:alice:"), "{again}");
    let bob = w.fetch_as("bob", "api", args.clone()).await;
    assert!(bob.contains("Bearer obo:bob:"), "{bob}");
    assert_eq!(
        w.issuer.exchanges.load(Ordering::SeqCst),
        2,
        "cached per user"
    );
    // The subject token was the caller's own inbound token.
    let subjects = w.issuer.subject_tokens.lock().unwrap().clone();
    assert!(subjects.iter().all(|t| t.split('.').count() == 3));
}

/// ≥ 2,000 interleaved concurrent calls by three users: every downstream
/// request carries exactly its caller's envelope and exchanged token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_never_cross_under_load() {
    let w = Arc::new(world().await);
    let users = ["alice", "bob", "carol"];
    let mut tasks = Vec::new();
    for worker in 0..24 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let url = w.server.endpoint("acme");
            let mut mismatches = 0;
            for i in 0..84 {
                let user = users[(worker + i) % 3];
                let token = w.idp.token(&url, user, "api");
                let (_, body) = call(
                    &url,
                    &token,
                    "fetch",
                    json!({"service": "tickets", "method": "GET", "path": format!("/{user}")}),
                )
                .await;
                let text = tool_text(&body);
                if !text.contains(&format!("Bearer obo:{user}:")) {
                    mismatches += 1;
                }
            }
            mismatches
        }));
    }
    let mut mismatches = 0;
    for t in tasks {
        mismatches += t.await.unwrap();
    }
    assert_eq!(mismatches, 0);
    // On the service's side: the envelope's actor, the token's user and the
    // path the tool chose agree on every one of the requests.
    let seen = w.seen();
    assert_eq!(seen.len(), 24 * 84);
    for r in &seen {
        let payload = envelope_claims(r);
        let actor = payload["actor"]["subject"].as_str().unwrap();
        let bearer = r.headers["authorization"].to_str().unwrap();
        assert!(
            bearer.starts_with(&format!("Bearer obo:{actor}:")),
            "{actor} vs {bearer}"
        );
        assert_eq!(r.path_and_query, format!("/t/{actor}"));
    }
}

#[tokio::test]
async fn service_mode_with_client_credentials_caches_the_hosts_token() {
    let w = world().await;
    let args = json!({"service": "machine", "method": "GET", "path": "/x"});
    let alice = w.fetch_as("alice", "api", args.clone()).await;
    assert!(
        alice.contains("\"authorization\":\"Bearer cc:read:0\""),
        "{alice}"
    );
    let bob = w.fetch_as("bob", "api", args).await;
    assert!(
        bob.contains("Bearer cc:read:0"),
        "the host's own token, shared: {bob}"
    );
    assert_eq!(w.issuer.client_tokens.load(Ordering::SeqCst), 1);
    // The envelope still says who acts.
    let seen = w.seen();
    let actors: Vec<String> = seen
        .iter()
        .map(|r| {
            envelope_claims(r)["actor"]["subject"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(actors, ["alice", "bob"]);
}
