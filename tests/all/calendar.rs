//! Demo Calendar, `airlock dev`'s pretend third-party OAuth provider for
//! `user-token` delegation, driven over HTTP as a browser and airlock's
//! connect page will: consent page, form POST, code, tokens with PKCE, refresh
//! rotation, and the calendar API. Then the `calendar` component, run in a
//! sandbox whose delegate attaches a Demo Calendar token as the host will.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use airlock_host::delegate::{
    BoxFuture, Delegate, DelegateError, DelegateResponse, OutboundRequest,
};
use airlock_host::envelope::Envelope;
use airlock_host::sandbox::{CallError, ToolErrorKind};
use airlock_tests::client::{connect, tool_names};
use airlock_tests::dev::{Dev, form_token};
use airlock_tests::{TestHost, envelope, guests};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rmcp::model::ProtocolVersion;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// `airlock dev`, driven at its Demo Calendar.
struct DevCalendar(Dev);

impl std::ops::Deref for DevCalendar {
    type Target = Dev;

    fn deref(&self) -> &Dev {
        &self.0
    }
}

async fn start_dev() -> DevCalendar {
    let dev = Dev::start().await;
    let banner = &dev.banner;
    assert!(
        banner.contains(&format!("{}/dev/calendar", dev.url)),
        "{banner}"
    );
    DevCalendar(dev)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A PKCE pair: (verifier, S256 challenge).
fn pkce() -> (String, String) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("random");
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The consent page: its form token and the cookie it is bound to.
struct Consent {
    form_token: String,
    cookie: String,
    html: String,
}

/// The query of a redirect's `Location`.
fn redirect_query(response: &reqwest::Response) -> (String, HashMap<String, String>) {
    let location = response.headers()["location"].to_str().expect("location");
    let url = url::Url::parse(location).expect("absolute location");
    let query = url.query_pairs().into_owned().collect();
    let mut base = url.clone();
    base.set_query(None);
    (base.to_string(), query)
}

impl DevCalendar {
    fn calendar(&self) -> String {
        format!("{}/dev/calendar", self.url)
    }

    fn callback(&self, tenant: &str) -> String {
        format!("{}/connect/{tenant}/callback/calendar", self.url)
    }

    /// The tenant's client secret at the Demo Calendar.
    fn secret(&self, tenant: &str) -> String {
        self.0.secret(&format!("calendar-{tenant}.secret"))
    }

    /// GET the authorize endpoint for acme's client with `challenge` and `extra`.
    async fn authorize(&self, challenge: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let callback = self.callback("acme");
        let mut query = vec![
            ("response_type", "code"),
            ("client_id", "airlock-acme"),
            ("redirect_uri", callback.as_str()),
            ("scope", "calendar.read"),
            ("state", "st-1"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ];
        query.extend_from_slice(extra);
        http()
            .get(format!("{}/authorize", self.calendar()))
            .query(&query)
            .send()
            .await
            .expect("authorize")
    }

    /// The consent page for `challenge`, checked for its framing headers.
    async fn consent_page(&self, challenge: &str, extra: &[(&str, &str)]) -> Consent {
        let page = self.authorize(challenge, extra).await;
        assert_eq!(page.status(), 200);
        let headers = page.headers();
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .expect("csp")
                .contains("frame-ancestors 'none'")
        );
        assert_eq!(headers["cache-control"], "no-store");
        let set_cookie = headers["set-cookie"].to_str().expect("cookie").to_string();
        assert!(
            set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
            "{set_cookie}"
        );
        let cookie = set_cookie
            .split(';')
            .next()
            .expect("cookie pair")
            .to_string();
        let html = page.text().await.expect("html");
        let form_token = form_token(&html).expect("form token").to_string();
        Consent {
            form_token,
            cookie,
            html,
        }
    }

    /// POST the consent form.
    async fn answer(&self, consent: &Consent, form: &[(&str, &str)]) -> reqwest::Response {
        let mut fields = vec![("form_token", consent.form_token.as_str())];
        fields.extend_from_slice(form);
        http()
            .post(format!("{}/consent", self.calendar()))
            .header("cookie", &consent.cookie)
            .form(&fields)
            .send()
            .await
            .expect("consent")
    }

    /// A code for `account`, allowed on the consent page.
    async fn code(&self, challenge: &str, account: &str) -> String {
        let consent = self.consent_page(challenge, &[]).await;
        let response = self
            .answer(&consent, &[("account", account), ("decision", "allow")])
            .await;
        assert_eq!(response.status(), 303);
        let (to, query) = redirect_query(&response);
        assert_eq!(to, self.callback("acme"));
        assert_eq!(query["state"], "st-1");
        query["code"].clone()
    }

    /// POST the token endpoint as acme's client, with HTTP Basic.
    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let basic = STANDARD.encode(format!("airlock-acme:{}", self.secret("acme")));
        let response = http()
            .post(format!("{}/token", self.calendar()))
            .header("authorization", format!("Basic {basic}"))
            .form(form)
            .send()
            .await
            .expect("token");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json"))
    }

    async fn redeem(&self, code: &str, verifier: &str) -> (u16, Value) {
        let callback = self.callback("acme");
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &callback),
            ("code_verifier", verifier),
        ])
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// Tokens for `account`, through the whole flow.
    async fn connect(&self, account: &str) -> Value {
        let (verifier, challenge) = pkce();
        let code = self.code(&challenge, account).await;
        let (status, tokens) = self.redeem(&code, &verifier).await;
        assert_eq!(status, 200, "{tokens}");
        tokens
    }

    /// GET the events with `token`: status, `WWW-Authenticate`, body.
    async fn events(&self, token: &str) -> (u16, String, Value) {
        let response = http()
            .get(format!("{}/api/events", self.calendar()))
            .bearer_auth(token)
            .send()
            .await
            .expect("events");
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().expect("text").to_string())
            .unwrap_or_default();
        (status, challenge, response.json().await.expect("json"))
    }
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().expect(key).to_string()
}

#[tokio::test]
async fn code_with_pkce_gives_each_account_its_own_calendar() {
    let dev = start_dev().await;
    let (verifier, challenge) = pkce();
    // login_hint only preselects: the page is still shown.
    let consent = dev.consent_page(&challenge, &[("login_hint", "bob")]).await;
    assert!(
        consent
            .html
            .contains("Sign in and allow <b>airlock (acme)</b> to read your calendar"),
        "{}",
        consent.html
    );
    assert!(consent.html.contains("value=\"bob\" required checked"));
    let response = dev
        .answer(&consent, &[("account", "alice"), ("decision", "allow")])
        .await;
    assert_eq!(response.status(), 303);
    let (to, query) = redirect_query(&response);
    assert_eq!(to, dev.callback("acme"));
    assert_eq!(query["state"], "st-1");
    let code = &query["code"];
    assert!(code.starts_with("cal_code_"), "{code}");

    let (status, tokens) = dev.redeem(code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], "calendar.read");
    let access = text(&tokens, "access_token");
    assert!(access.starts_with("cal_at_"), "{access}");
    assert!(text(&tokens, "refresh_token").starts_with("cal_rt_"));

    let (status, _, alice) = dev.events(&access).await;
    assert_eq!(status, 200, "{alice}");
    assert_eq!(alice["owner"], "alice");
    assert!(!alice["events"].as_array().expect("events").is_empty());

    // bob, with client_secret_post this time, sees his own events.
    let (verifier, challenge) = pkce();
    let code = dev.code(&challenge, "bob").await;
    let callback = dev.callback("acme");
    let secret = dev.secret("acme");
    let response = http()
        .post(format!("{}/token", dev.calendar()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &callback),
            ("code_verifier", &verifier),
            ("client_id", "airlock-acme"),
            ("client_secret", &secret),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.expect("json");
    let (_, _, bob) = dev.events(&text(&tokens, "access_token")).await;
    assert_eq!(bob["owner"], "bob");
    assert_ne!(alice["events"], bob["events"]);

    let stats = dev.hooks.stats();
    assert_eq!((stats.code_grants, stats.refresh_grants), (2, 0));
    assert_eq!(stats.api_requests, 2);
}

#[tokio::test]
async fn codes_are_single_use_and_bound_to_verifier_and_redirect_uri() {
    let dev = start_dev().await;
    // A wrong verifier is refused and spends the code.
    let (verifier, challenge) = pkce();
    let code = dev.code(&challenge, "alice").await;
    let (other, _) = pkce();
    let (status, body) = dev.redeem(&code, &other).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = dev.redeem(&code, &verifier).await;
    assert_eq!(status, 400);

    // A redirect URI other than the authorization request's is refused.
    let (verifier, challenge) = pkce();
    let code = dev.code(&challenge, "alice").await;
    let (status, body) = dev
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &dev.callback("globex")),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // A code works once; a second redemption also revokes what the first issued.
    let (verifier, challenge) = pkce();
    let code = dev.code(&challenge, "alice").await;
    let (status, tokens) = dev.redeem(&code, &verifier).await;
    assert_eq!(status, 200);
    let access = text(&tokens, "access_token");
    assert_eq!(dev.events(&access).await.0, 200);
    let (status, body) = dev.redeem(&code, &verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(dev.events(&access).await.0, 401);
    let (status, _) = dev.refresh(&text(&tokens, "refresh_token")).await;
    assert_eq!(status, 400);

    // A wrong client secret is a client error.
    let response = http()
        .post(format!("{}/token", dev.calendar()))
        .basic_auth("airlock-acme", Some("guess"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn the_consent_page_trusts_only_registered_redirects_and_answers_once() {
    let dev = start_dev().await;
    let (_, challenge) = pkce();
    // An unregistered redirect URI or client: a page, never a redirect.
    let callback = dev.callback("acme");
    for (client, redirect) in [
        ("airlock-acme", "https://evil.example/callback"),
        ("airlock-initech", callback.as_str()),
    ] {
        let response = http()
            .get(format!("{}/authorize", dev.calendar()))
            .query(&[
                ("response_type", "code"),
                ("client_id", client),
                ("redirect_uri", redirect),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await
            .expect("authorize");
        assert_eq!(response.status(), 400, "{client} {redirect}");
        assert!(!response.headers().contains_key("location"));
    }
    // Without PKCE: back to the (registered) client with an error.
    let response = http()
        .get(format!("{}/authorize", dev.calendar()))
        .query(&[
            ("response_type", "code"),
            ("client_id", "airlock-acme"),
            ("redirect_uri", &callback),
            ("state", "s"),
        ])
        .send()
        .await
        .expect("authorize");
    let (to, query) = redirect_query(&response);
    assert_eq!(to, dev.callback("acme"));
    assert_eq!(
        (query["error"].as_str(), query["state"].as_str()),
        ("invalid_request", "s")
    );

    // Deny: access_denied with the state.
    let consent = dev.consent_page(&challenge, &[]).await;
    let response = dev.answer(&consent, &[("decision", "deny")]).await;
    let (_, query) = redirect_query(&response);
    assert_eq!(query["error"], "access_denied");
    assert_eq!(query["state"], "st-1");
    assert!(!query.contains_key("code"));

    // The form token works once, and only with the page's cookie.
    let consent = dev.consent_page(&challenge, &[]).await;
    let allow = [("account", "carol"), ("decision", "allow")];
    let stolen = http()
        .post(format!("{}/consent", dev.calendar()))
        .form(&[
            ("form_token", consent.form_token.as_str()),
            ("account", "carol"),
            ("decision", "allow"),
        ])
        .send()
        .await
        .expect("consent");
    assert_eq!(stolen.status(), 400);
    assert_eq!(dev.answer(&consent, &allow).await.status(), 303);
    let again = dev.answer(&consent, &allow).await;
    assert_eq!(again.status(), 400);
    assert!(!again.headers().contains_key("location"));
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_revokes_the_grant() {
    let dev = start_dev().await;
    let first = dev.connect("alice").await;
    let rt1 = text(&first, "refresh_token");
    let (status, second) = dev.refresh(&rt1).await;
    assert_eq!(status, 200, "{second}");
    let rt2 = text(&second, "refresh_token");
    assert_ne!(rt1, rt2);
    assert!(rt2.starts_with("cal_rt_"));
    let at2 = text(&second, "access_token");
    assert_eq!(dev.events(&at2).await.2["owner"], "alice");
    // The old access token is not revoked by a normal rotation.
    assert_eq!(dev.events(&text(&first, "access_token")).await.0, 200);

    // rt1 again: refused, and the whole family ends.
    let (status, body) = dev.refresh(&rt1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = dev.refresh(&rt2).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(dev.events(&at2).await.0, 401);
    let stats = dev.hooks.stats();
    assert_eq!((stats.code_grants, stats.refresh_grants), (1, 1));
    assert_eq!(stats.refused_grants, 2);
}

#[tokio::test]
async fn the_api_answers_401_invalid_token_to_bad_and_expired_tokens() {
    let dev = start_dev().await;
    let (status, challenge, body) = dev.events("cal_at_not-a-token").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let response = http()
        .get(format!("{}/api/events", dev.calendar()))
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));

    // Expired (the test hook): 401 until a refresh, exactly one.
    let tokens = dev.connect("bob").await;
    let access = text(&tokens, "access_token");
    assert_eq!(dev.hooks.expire_access_tokens("bob"), 1);
    let (status, challenge, _) = dev.events(&access).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let (status, fresh) = dev.refresh(&text(&tokens, "refresh_token")).await;
    assert_eq!(status, 200);
    assert_eq!(dev.events(&text(&fresh, "access_token")).await.0, 200);
    assert_eq!(dev.hooks.stats().refresh_grants, 1);

    // Short lives: a zero lifetime is expired on arrival.
    dev.hooks.set_access_token_lifetime(Duration::ZERO);
    let (status, short) = dev.refresh(&text(&fresh, "refresh_token")).await;
    assert_eq!((status, &short["expires_in"]), (200, &json!(0)));
    assert_eq!(dev.events(&text(&short, "access_token")).await.0, 401);

    // Revoked at the provider: refresh fails too.
    assert_eq!(dev.hooks.revoke_grants("bob"), 1);
    let (status, body) = dev.refresh(&text(&short, "refresh_token")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

/// A delegate that sends `calendar` requests to Demo Calendar with a bearer
/// token, as the host does in `user-token` mode; `None`: not connected.
struct UserToken {
    api: String,
    token: Option<String>,
}

impl Delegate for UserToken {
    fn fetch<'a>(
        &'a self,
        _envelope: &'a Envelope,
        service: &'a str,
        request: OutboundRequest,
    ) -> BoxFuture<'a, Result<DelegateResponse, DelegateError>> {
        Box::pin(async move {
            assert_eq!(service, "calendar");
            let Some(token) = &self.token else {
                return Err(DelegateError::NotConnected(
                    "connect your Demo Calendar account first".into(),
                ));
            };
            let response = http()
                .request(
                    request.method().as_str().parse().expect("method"),
                    format!("{}{}", self.api, request.path()),
                )
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(request.body().to_vec())
                .send()
                .await
                .map_err(|e| DelegateError::Upstream(e.to_string()))?;
            Ok(DelegateResponse {
                status: response.status().as_u16(),
                headers: Vec::new(),
                body: response.bytes().await.expect("body").to_vec(),
            })
        })
    }
}

#[tokio::test]
async fn the_calendar_tool_lists_the_connected_accounts_events() {
    let dev = start_dev().await;
    let host = TestHost::new();
    let component = host.load(guests::CALENDAR).await;
    let api = format!("{}/api", dev.calendar());
    let tokens = dev.connect("alice").await;
    let call = |token: Option<String>| {
        let delegate = Arc::new(UserToken {
            api: api.clone(),
            token,
        });
        host.call_as(
            &component,
            envelope("acme", "alice", "list_events", &["calendar"]),
            json!({}),
            delegate,
        )
    };
    let output = call(Some(text(&tokens, "access_token")))
        .await
        .expect("list_events");
    let structured = output.structured.expect("structured");
    assert_eq!(structured["owner"], "alice");
    assert_eq!(structured["events"][0]["title"], "Quarterly planning");

    // Not connected: the delegate's error comes back as the tool's, unchanged.
    let err = call(None).await.expect_err("not connected");
    assert_eq!(
        err,
        CallError::Tool {
            kind: ToolErrorKind::NotConnected,
            message: "connect your Demo Calendar account first".into(),
        }
    );

    // airlock dev installs the tool in both demo tenants.
    for (tenant, user) in [("acme", "alice"), ("globex", "carol")] {
        let token = dev.user_token(tenant, user).await;
        let client = connect(
            &format!("{}/mcp/{tenant}", dev.url),
            &token,
            &ProtocolVersion::V_2026_07_28,
        )
        .await;
        let names = tool_names(&client).await;
        let _ = client.cancel().await;
        assert!(
            names.contains(&"list_events".to_string()) && names.contains(&"add_event".to_string()),
            "{tenant}: {names:?}"
        );
    }
}
