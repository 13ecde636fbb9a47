//! `airlock dev`'s demo downstream APIs and the development issuers' token
//! exchange, called directly over HTTP the way the delegation broker will:
//! envelopes signed through the public API with the dev host's own key ring,
//! tokens exchanged at `/dev/{tenant}/token` as the host's client. Then the
//! `notes` and `tickets` components, run in a sandbox whose delegate does the
//! same, against the same APIs.

use std::time::Duration;

use airlock_host::envelope::{
    ActorKind, Delegation, DelegationMode, Envelope, EnvelopeClaims, KeyRing, RequestBinding,
};
use airlock_tests::dev::Dev;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// `airlock dev`, which loads every example tool (tickets too), and the key
/// ring it signs envelopes with.
struct Demo {
    dev: Dev,
    ring: KeyRing,
}

impl std::ops::Deref for Demo {
    type Target = Dev;

    fn deref(&self) -> &Dev {
        &self.dev
    }
}

async fn start_dev() -> Demo {
    let dev = Dev::start().await;
    let ring = dev.key_ring();
    Demo { dev, ring }
}

/// Who an envelope acts for.
#[derive(Clone, Copy)]
struct Actor<'a> {
    tenant: &'a str,
    issuer: &'a str,
    subject: &'a str,
}

impl Demo {
    fn api(&self, name: &str) -> String {
        format!("{}/demo/{name}", self.url)
    }

    fn issuer(&self, tenant: &str) -> String {
        format!("{}/dev/{tenant}", self.url)
    }

    fn notes_key(&self) -> String {
        self.secret("notes-api.key")
    }

    fn host_secret(&self) -> String {
        self.secret("airlock-host.secret")
    }

    /// An envelope for `actor`, signed with the dev host's ring as `iss`
    /// (the host's URL) for `aud` and one request.
    fn envelope(
        &self,
        actor: Actor<'_>,
        aud: &str,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> String {
        self.envelope_from(&self.ring, &self.url, actor, aud, method, path, body)
    }

    #[allow(clippy::too_many_arguments)] // one request's every part
    fn envelope_from(
        &self,
        ring: &KeyRing,
        iss: &str,
        actor: Actor<'_>,
        aud: &str,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> String {
        // The host signs the path as sent: the API's mount plus the tool's path.
        let mount = url::Url::parse(aud).map_or(String::new(), |u| u.path().to_string());
        let path = format!("{}{path}", mount.trim_end_matches('/'));
        mint(actor, "demo")
            .sign_for(
                ring,
                iss,
                aud,
                &RequestBinding {
                    method,
                    path: &path,
                    body,
                },
            )
            .expect("sign")
    }

    /// RFC 8693 token exchange at `tenant`'s issuer as client `id:secret`.
    async fn exchange(
        &self,
        tenant: &str,
        client: (&str, &str),
        subject: &str,
        extra: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TOKEN),
            ("requested_token_type", ACCESS_TOKEN),
        ];
        form.extend_from_slice(extra);
        let basic = STANDARD.encode(format!("{}:{}", client.0, client.1));
        let response = http()
            .post(format!("{}/token", self.issuer(tenant)))
            .header("authorization", format!("Basic {basic}"))
            .form(&form)
            .send()
            .await
            .expect("token endpoint");
        let status = response.status().as_u16();
        if status == 200 || status == 400 || status == 401 {
            assert_eq!(response.headers()["cache-control"], "no-store");
        }
        (status, response.json().await.expect("json"))
    }

    /// A token for the tickets API, exchanged for `user` of acme.
    async fn tickets_token(&self, user: &str) -> String {
        let subject = self.user_token("acme", user).await;
        let aud = self.api("tickets");
        let (status, body) = self
            .exchange(
                "acme",
                ("airlock-host", &self.host_secret()),
                &subject,
                &[("audience", &aud), ("scope", "tickets")],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().expect("token").to_string()
    }
}

/// The envelope of a call to `tool` for `actor`.
fn mint(actor: Actor<'_>, tool: &str) -> Envelope {
    Envelope::mint(
        EnvelopeClaims {
            tenant: actor.tenant.into(),
            actor_kind: ActorKind::User,
            issuer: actor.issuer.into(),
            subject: actor.subject.into(),
            client_id: Some("demo-test".into()),
            agent_id: None,
            session_id: None,
            trace_id: "trace-demo".into(),
            tool: tool.into(),
            scopes: vec!["mcp".into()],
            delegations: ["notes", "tickets"]
                .into_iter()
                .map(|s| Delegation {
                    service: s.into(),
                    mode: DelegationMode::Service,
                })
                .collect(),
        },
        Duration::from_secs(60),
    )
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// One request to a demo API: `credential` as bearer, `envelope` as header.
async fn call(
    method: &str,
    url: &str,
    credential: Option<&str>,
    envelope: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut request = http().request(method.parse().expect("method"), url);
    if let Some(c) = credential {
        request = request.header("authorization", format!("Bearer {c}"));
    }
    if let Some(e) = envelope {
        request = request.header("airlock-envelope", e);
    }
    if !body.is_empty() {
        request = request
            .header("content-type", "application/json")
            .body(body.to_vec());
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("json")
    };
    (status, value)
}

/// A request the notes API must refuse, and the check it must name.
struct Refused {
    what: &'static str,
    key: Option<String>,
    envelope: Option<String>,
    method: &'static str,
    query: &'static str,
    body: &'static [u8],
    check: &'static str,
}

#[tokio::test]
async fn notes_refuses_requests_without_its_key_or_a_matching_envelope() {
    let dev = start_dev().await;
    let key = dev.notes_key();
    let notes = dev.api("notes");
    let url = format!("{notes}/notes");
    let issuer = dev.issuer("acme");
    let alice = Actor {
        tenant: "acme",
        issuer: &issuer,
        subject: "alice",
    };
    let body = br#"{"text":"milk"}"#;
    let get = dev.envelope(alice, &notes, "GET", "/notes", b"");
    let post = dev.envelope(alice, &notes, "POST", "/notes", body);

    // The happy paths first, so the refusals below are about what changed.
    assert_eq!(
        call("GET", &url, Some(&key), Some(&get), b"").await,
        (200, json!([]))
    );
    let (status, note) = call("POST", &url, Some(&key), Some(&post), body).await;
    assert_eq!((status, &note["text"]), (201, &json!("milk")), "{note}");
    let with_query = dev.envelope(alice, &notes, "GET", "/notes?folder=a%20b", b"");
    let (status, _) = call(
        "GET",
        &format!("{url}?folder=a%20b"),
        Some(&key),
        Some(&with_query),
        b"",
    )
    .await;
    assert_eq!(status, 200);

    let elsewhere = tempfile::tempdir().expect("tempdir");
    let stranger_ring = KeyRing::open(elsewhere.path()).expect("ring");
    // Each case changes one thing about the GET above.
    let case = |what, check| Refused {
        what,
        key: Some(key.clone()),
        envelope: Some(get.clone()),
        method: "GET",
        query: "",
        body: b"",
        check,
    };
    let sign = |ring, iss, aud: &str, method, path: &str, body| {
        Some(dev.envelope_from(ring, iss, alice, aud, method, path, body))
    };
    let cases = [
        Refused {
            envelope: None,
            ..case("no envelope", "envelope")
        },
        Refused {
            envelope: Some("a.b.c".into()),
            ..case("not an envelope", "envelope")
        },
        Refused {
            key: None,
            ..case("no API key", "api_key")
        },
        Refused {
            key: Some("not-the-key".into()),
            ..case("a wrong API key", "api_key")
        },
        Refused {
            envelope: sign(
                &dev.ring,
                &dev.url,
                &dev.api("tickets"),
                "GET",
                "/notes",
                b"",
            ),
            ..case("an envelope for another service", "aud")
        },
        Refused {
            envelope: sign(&dev.ring, &dev.url, &notes, "GET", "/notes/n-1", b""),
            ..case("an envelope for another path", "req.path")
        },
        Refused {
            query: "?folder=x",
            ..case("an envelope without the query", "req.path")
        },
        Refused {
            envelope: Some(post.clone()),
            method: "POST",
            body: br#"{"text":"eggs"}"#,
            ..case("an envelope for another body", "req.body_sha256")
        },
        Refused {
            envelope: Some(post.clone()),
            ..case("an envelope for another method", "req.method")
        },
        Refused {
            envelope: sign(
                &dev.ring,
                "https://other.example",
                &notes,
                "GET",
                "/notes",
                b"",
            ),
            ..case("an envelope from another host", "iss")
        },
        Refused {
            envelope: sign(&stranger_ring, &dev.url, &notes, "GET", "/notes", b""),
            ..case(
                "an envelope signed with a key the host never published",
                "kid",
            )
        },
    ];
    for c in cases {
        let (status, error) = call(
            c.method,
            &format!("{url}{}", c.query),
            c.key.as_deref(),
            c.envelope.as_deref(),
            c.body,
        )
        .await;
        assert_eq!(status, 401, "{}: {error}", c.what);
        assert_eq!(error["check"], c.check, "{}: {error}", c.what);
    }

    // Nothing above reached the data: alice still has one note.
    let (_, listed) = call("GET", &url, Some(&key), Some(&get), b"").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[tokio::test]
async fn notes_keeps_each_users_notes_apart() {
    let dev = start_dev().await;
    let key = dev.notes_key();
    let notes = dev.api("notes");
    let url = format!("{notes}/notes");
    let issuer = dev.issuer("acme");
    let actor = |subject| Actor {
        tenant: "acme",
        issuer: &issuer,
        subject,
    };
    let add = |who: Actor<'_>, text: &str| {
        let body = json!({ "text": text }).to_string();
        let envelope = dev.envelope(who, &notes, "POST", "/notes", body.as_bytes());
        let (url, key) = (url.clone(), key.clone());
        async move {
            let (status, note) =
                call("POST", &url, Some(&key), Some(&envelope), body.as_bytes()).await;
            assert_eq!(status, 201, "{note}");
            note["id"].as_str().expect("id").to_string()
        }
    };
    let list = |who: Actor<'_>| {
        let envelope = dev.envelope(who, &notes, "GET", "/notes", b"");
        let (url, key) = (url.clone(), key.clone());
        async move {
            let (status, listed) = call("GET", &url, Some(&key), Some(&envelope), b"").await;
            assert_eq!(status, 200, "{listed}");
            listed
                .as_array()
                .expect("array")
                .iter()
                .map(|n| n["text"].as_str().expect("text").to_string())
                .collect::<Vec<_>>()
        }
    };
    let delete = |who: Actor<'_>, id: &str| {
        let path = format!("/notes/{id}");
        let envelope = dev.envelope(who, &notes, "DELETE", &path, b"");
        let (url, key) = (format!("{notes}{path}"), key.clone());
        async move {
            call("DELETE", &url, Some(&key), Some(&envelope), b"")
                .await
                .0
        }
    };

    let milk = add(actor("alice"), "milk").await;
    add(actor("alice"), "bread").await;
    let eggs = add(actor("bob"), "eggs").await;
    assert_eq!(list(actor("alice")).await, ["milk", "bread"]);
    assert_eq!(list(actor("bob")).await, ["eggs"]);
    // The same subject at another issuer, or in another tenant, is someone else.
    let elsewhere = Actor {
        tenant: "acme",
        issuer: "https://idp.other.example",
        subject: "alice",
    };
    assert!(list(elsewhere).await.is_empty());
    let globex_issuer = dev.issuer("globex");
    let other_tenant = Actor {
        tenant: "globex",
        issuer: &globex_issuer,
        subject: "alice",
    };
    assert!(list(other_tenant).await.is_empty());

    // bob cannot delete alice's note; it is not even there for him.
    assert_eq!(delete(actor("bob"), &milk).await, 404);
    assert_eq!(delete(actor("alice"), &eggs).await, 404);
    assert_eq!(delete(actor("alice"), &milk).await, 204);
    assert_eq!(delete(actor("alice"), &milk).await, 404);
    assert_eq!(list(actor("alice")).await, ["bread"]);
    assert_eq!(list(actor("bob")).await, ["eggs"]);
}

#[tokio::test]
async fn tickets_accept_only_a_token_exchanged_for_the_envelopes_user() {
    let dev = start_dev().await;
    let tickets = dev.api("tickets");
    let url = format!("{tickets}/tickets");
    let issuer = dev.issuer("acme");
    let actor = |subject| Actor {
        tenant: "acme",
        issuer: &issuer,
        subject,
    };
    let get = |who| dev.envelope(actor(who), &tickets, "GET", "/tickets", b"");

    // alice's own access token (for the MCP endpoint) is not accepted.
    let user_token = dev.user_token("acme", "alice").await;
    let (status, error) = call("GET", &url, Some(&user_token), Some(&get("alice")), b"").await;
    assert_eq!((status, &error["check"]), (401, &json!("aud")), "{error}");
    // Neither is the notes API key, nor nothing.
    let (status, _) = call(
        "GET",
        &url,
        Some(&dev.notes_key()),
        Some(&get("alice")),
        b"",
    )
    .await;
    assert_eq!(status, 401);
    let (status, error) = call("GET", &url, None, Some(&get("alice")), b"").await;
    assert_eq!((status, &error["check"]), (401, &json!("token")), "{error}");

    // An exchanged one is, and the API says whom it acted for and through whom.
    let token = dev.tickets_token("alice").await;
    let body = br#"{"title":"printer on fire"}"#;
    let post = dev.envelope(actor("alice"), &tickets, "POST", "/tickets", body);
    let (status, opened) = call("POST", &url, Some(&token), Some(&post), body).await;
    assert_eq!(status, 201, "{opened}");
    assert_eq!(opened["title"], "printer on fire");
    assert_eq!(opened["status"], "open");
    assert_eq!(opened["acting_for"], "alice");
    assert_eq!(opened["via"], "airlock-host");
    let (status, listed) = call("GET", &url, Some(&token), Some(&get("alice")), b"").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["tickets"][0]["title"], "printer on fire");
    assert_eq!(
        (&listed["acting_for"], &listed["via"]),
        (&json!("alice"), &json!("airlock-host"))
    );

    // The token still needs an envelope for this API and request…
    let (status, error) = call("GET", &url, Some(&token), None, b"").await;
    assert_eq!(
        (status, &error["check"]),
        (401, &json!("envelope")),
        "{error}"
    );
    let for_notes = dev.envelope(actor("alice"), &dev.api("notes"), "GET", "/tickets", b"");
    let (status, error) = call("GET", &url, Some(&token), Some(&for_notes), b"").await;
    assert_eq!((status, &error["check"]), (401, &json!("aud")), "{error}");
    // …acting for the token's user: alice's token with bob's envelope is refused.
    let (status, error) = call("GET", &url, Some(&token), Some(&get("bob")), b"").await;
    assert_eq!((status, &error["check"]), (403, &json!("actor")), "{error}");

    // bob's own exchanged token sees only bob's tickets.
    let bobs = dev.tickets_token("bob").await;
    let (status, listed) = call("GET", &url, Some(&bobs), Some(&get("bob")), b"").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["tickets"], json!([]));
    assert_eq!(listed["acting_for"], "bob");

    // A token exchanged without the tickets scope is refused.
    let subject = dev.user_token("acme", "alice").await;
    let (status, exchanged) = dev
        .exchange(
            "acme",
            ("airlock-host", &dev.host_secret()),
            &subject,
            &[("audience", &tickets), ("scope", "mcp")],
        )
        .await;
    assert_eq!(status, 200, "{exchanged}");
    let narrow = exchanged["access_token"].as_str().expect("token");
    let (status, error) = call("GET", &url, Some(narrow), Some(&get("alice")), b"").await;
    assert_eq!((status, &error["check"]), (403, &json!("scope")), "{error}");
}

#[tokio::test]
async fn token_exchange_refuses_bad_clients_foreign_tokens_and_unknown_audiences() {
    let dev = start_dev().await;
    let secret = dev.host_secret();
    let alice = dev.user_token("acme", "alice").await;
    let carol = dev.user_token("globex", "carol").await;
    let tickets = dev.api("tickets");
    let notes = dev.api("notes");
    let to_tickets = [("audience", tickets.as_str())];

    let meta: Value = http()
        .get(format!(
            "{}/.well-known/oauth-authorization-server/dev/acme",
            dev.url
        ))
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert!(
        meta["grant_types_supported"]
            .as_array()
            .expect("grants")
            .contains(&json!(TOKEN_EXCHANGE)),
        "{meta}"
    );

    let (status, body) = dev
        .exchange("acme", ("airlock-host", &secret), &alice, &to_tickets)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(body["token_type"], "Bearer");

    let host = ("airlock-host", secret.as_str());
    // The status and the OAuth error code of a token response.
    let refused = |(status, body): (u16, Value)| {
        (
            status,
            body["error"].as_str().unwrap_or_default().to_string(),
        )
    };
    let error = |status, code: &str| (status, code.to_string());

    // The host's client only, with its secret.
    assert_eq!(
        refused(
            dev.exchange("acme", ("airlock-host", "guess"), &alice, &to_tickets)
                .await
        ),
        error(401, "invalid_client"),
        "a wrong client secret"
    );
    assert_eq!(
        refused(
            dev.exchange("acme", ("inspector", &secret), &alice, &to_tickets)
                .await
        ),
        error(401, "invalid_client"),
        "another client"
    );
    // A subject token of this tenant only.
    assert_eq!(
        refused(dev.exchange("acme", host, &carol, &to_tickets).await),
        error(400, "invalid_grant"),
        "a subject token from another tenant"
    );
    // For an API this tenant's tools reach through token exchange only.
    assert_eq!(
        refused(
            dev.exchange("acme", host, &alice, &[("audience", "https://api.example")])
                .await
        ),
        error(400, "invalid_target"),
        "an audience the issuer does not serve"
    );
    assert_eq!(
        refused(
            dev.exchange("acme", host, &alice, &[("audience", &notes)])
                .await
        ),
        error(400, "invalid_target"),
        "an API that takes no exchanged tokens"
    );
    assert_eq!(
        refused(dev.exchange("globex", host, &carol, &to_tickets).await),
        error(400, "invalid_target"),
        "a tenant whose tools reach no such API"
    );
}

/// One MCP `tools/call` as `token`'s user; the tool's structured output.
async fn mcp_call(dev: &Dev, tenant: &str, token: &str, tool: &str, args: Value) -> Value {
    let url = format!("{}/mcp/{tenant}", dev.url);
    let (_, body) = airlock_tests::client::call(&url, token, tool, args).await;
    let json = body
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(&body);
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_ne!(v["result"]["isError"], true, "{tool}: {v}");
    v["result"]["structuredContent"].clone()
}

/// The whole chain as a user meets it: an MCP client calls the tools of
/// `airlock dev`, the broker signs and sends, the demo APIs verify.
#[tokio::test]
async fn alice_and_bob_use_notes_and_tickets_through_the_broker() {
    let dev = start_dev().await;
    let alice = dev.user_token("acme", "alice").await;
    let bob = dev.user_token("acme", "bob").await;

    let added = mcp_call(&dev, "acme", &alice, "add_note", json!({"text": "milk"})).await;
    assert_eq!(added["text"], "milk");
    let mine = mcp_call(&dev, "acme", &alice, "list_notes", json!({})).await;
    assert_eq!(mine["notes"][0]["text"], "milk", "{mine}");
    let theirs = mcp_call(&dev, "acme", &bob, "list_notes", json!({})).await;
    assert_eq!(theirs["notes"], json!([]), "bob sees none of alice's notes");

    let opened = mcp_call(
        &dev,
        "acme",
        &alice,
        "open_ticket",
        json!({"title": "printer on fire"}),
    )
    .await;
    assert_eq!(opened["acting_for"], "alice");
    assert_eq!(opened["via"], "airlock-host");
    let listed = mcp_call(&dev, "acme", &bob, "list_tickets", json!({})).await;
    assert_eq!(listed["acting_for"], "bob");
    assert_eq!(listed["tickets"], json!([]), "{listed}");
}
