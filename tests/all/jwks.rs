//! Issuer keys when the issuer misbehaves: cached keys keep serving while it
//! fails or hangs, refreshes back off, junk `kid`s cannot make it refetch
//! without bound, an issuer down since start gets a fast 503 with
//! `Retry-After` rather than a queue, and keys come back with the issuer.
//!
//! Timing bounds are generous on purpose: they only tell "answered from the
//! cache" from "waited for the issuer".

use std::time::{Duration, Instant};

use airlock_tests::idp::{IdpMode, TestIdp, TestKey};
use airlock_tests::server::TestServer;
use serde_json::{Value, json};

/// One tenant trusting `idp` with extra issuer `settings` (`, key = value`...).
async fn server(idp: &TestIdp, settings: &str) -> TestServer {
    TestServer::start(&format!(
        "[tenants.acme]\nissuers = [{{ issuer = {:?}{settings} }}]\n\
         [[tenants.acme.install]]\ncomponent = \"echo\"\n",
        idp.issuer
    ))
    .await
}

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    www_authenticate: bool,
    body: Value,
    elapsed: Duration,
}

/// POST a legacy `initialize` with `token`.
async fn call(url: &str, token: &str) -> Answer {
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": { "name": "jwks-test", "version": "1" }
            }
        }))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("text").parse().expect("delay-seconds"));
    let www_authenticate = response.headers().contains_key("www-authenticate");
    let text = response.text().await.expect("body");
    Answer {
        status,
        retry_after,
        www_authenticate,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        elapsed: started.elapsed(),
    }
}

/// Assert `answer` is the issuer-unavailable refusal.
fn assert_503(answer: &Answer) {
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert!(
        answer.retry_after.is_some_and(|s| (1..=300).contains(&s)),
        "Retry-After: {:?}",
        answer.retry_after
    );
    assert_eq!(answer.body["error"], "temporarily_unavailable");
    assert!(!answer.www_authenticate, "the token was not found wanting");
}

/// Call with `token` until it is served (200), each refusal meanwhile being
/// the issuer-unavailable 503; at most 15 s.
async fn served_again(url: &str, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = call(url, token).await;
        if answer.status == 200 {
            return;
        }
        assert_503(&answer);
        assert!(
            Instant::now() < deadline,
            "the issuer's keys were never trusted again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn cached_keys_keep_serving_while_the_issuer_fails_and_refreshes_back_off() {
    let idp = TestIdp::start("acme").await;
    let server = server(&idp, ", jwks_max_age_s = 1, jwks_min_refresh_ms = 0").await;
    let url = server.endpoint("acme");
    let token = idp.token(&url, "alice", "");
    assert_eq!(call(&url, &token).await.status, 200);

    idp.set_mode(IdpMode::Failing);
    tokio::time::sleep(Duration::from_millis(1200)).await; // the keys are now stale
    let before = idp.requests();
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let answer = call(&url, &token).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert!(
            answer.elapsed < Duration::from_secs(2),
            "{:?}",
            answer.elapsed
        );
        calls += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refreshes = idp.requests() - before;
    assert!(calls > 20, "only {calls} calls");
    // Attempts at 0 s, after 1–1.5 s, after 2–3 s more: backoff, not one per call.
    assert!(
        (1..=5).contains(&refreshes),
        "{refreshes} refreshes for {calls} calls"
    );
}

#[tokio::test]
async fn a_silent_issuer_does_not_slow_calls_with_cached_keys() {
    let idp = TestIdp::start("acme").await;
    let server = server(&idp, ", jwks_max_age_s = 1, jwks_fetch_timeout_ms = 1000").await;
    let url = server.endpoint("acme");
    let token = idp.token(&url, "alice", "");
    assert_eq!(call(&url, &token).await.status, 200);

    idp.set_mode(IdpMode::Silent);
    tokio::time::sleep(Duration::from_millis(1200)).await; // the keys are now stale
    let before = idp.requests();
    // Ten calls one after another, then ten at once: waiting for the issuer
    // even once per call would take ten seconds.
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(call(&url, &token).await.status, 200);
    }
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (url, token) = (url.clone(), token.clone());
        set.spawn(async move { call(&url, &token).await.status });
    }
    while let Some(status) = set.join_next().await {
        assert_eq!(status.expect("task"), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // One refresh hangs in the background; nobody queues a second.
    assert!(idp.requests() - before <= 2, "{}", idp.requests() - before);
}

#[tokio::test]
async fn an_issuer_down_since_start_gets_a_fast_503_with_retry_after() {
    let idp = TestIdp::start("acme").await;
    idp.set_mode(IdpMode::Silent);
    let server = server(&idp, ", jwks_fetch_timeout_ms = 2000").await;
    let url = server.endpoint("acme");
    let token = idp.token(&url, "alice", "");

    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (url, token) = (url.clone(), token.clone());
        set.spawn(async move { call(&url, &token).await });
    }
    while let Some(answer) = set.join_next().await {
        let answer = answer.expect("task");
        assert_503(&answer);
        // The fetch timeout (2 s) and a margin, not a queue of 20 fetches.
        assert!(
            answer.elapsed < Duration::from_secs(6),
            "{:?}",
            answer.elapsed
        );
    }
    assert_eq!(idp.requests(), 1, "one fetch for all twenty callers");

    // Backing off (for at least a second): answered at once, without asking
    // the issuer.
    for _ in 0..2 {
        let answer = call(&url, &token).await;
        assert_503(&answer);
        assert!(
            answer.elapsed < Duration::from_millis(1500),
            "{:?}",
            answer.elapsed
        );
    }
    assert_eq!(idp.requests(), 1);
}

#[tokio::test]
async fn junk_kids_cannot_make_the_issuer_refetch_without_bound() {
    let idp = TestIdp::start("acme").await;
    let server = server(&idp, ", jwks_min_refresh_ms = 500").await;
    let url = server.endpoint("acme");
    let good = idp.token(&url, "alice", "");
    assert_eq!(call(&url, &good).await.status, 200);
    let junk = || TestKey::generate().sign(&idp.claims(&url, "alice", ""));
    let after_start = idp.jwks_fetches();

    // Forty strangers at once, past the refetch interval: one fetch between them.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (url, token) = (url.clone(), junk());
        set.spawn(async move { call(&url, &token).await.status });
    }
    while let Some(status) = set.join_next().await {
        assert_eq!(status.expect("task"), 401);
    }
    assert!(
        idp.jwks_fetches() - after_start <= 2,
        "{} fetches for 40 junk kids",
        idp.jwks_fetches() - after_start
    );

    // A kid just checked against fresh keys is refused without a fetch, even
    // once the refetch interval has passed.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let repeated = junk();
    let before = idp.jwks_fetches();
    assert_eq!(call(&url, &repeated).await.status, 401);
    assert_eq!(idp.jwks_fetches(), before + 1, "a new kid refetches once");
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..10 {
        assert_eq!(call(&url, &repeated).await.status, 401);
    }
    assert_eq!(
        idp.jwks_fetches(),
        before + 1,
        "the negative cache answered"
    );
    // Valid tokens were never affected.
    assert_eq!(call(&url, &good).await.status, 200);
}

#[tokio::test]
async fn keys_are_fetched_again_when_the_issuer_comes_back() {
    let mut idp = TestIdp::start("acme").await;
    let server = server(&idp, ", jwks_max_age_s = 1, jwks_min_refresh_ms = 0").await;
    let url = server.endpoint("acme");
    let token = idp.token(&url, "alice", "");

    // Refusing connections since start: a fast 503.
    idp.stop().await;
    let answer = call(&url, &token).await;
    assert_503(&answer);
    assert!(
        answer.elapsed < Duration::from_secs(3),
        "{:?}",
        answer.elapsed
    );

    // Back: once the backoff ends, keys are fetched and calls succeed.
    idp.restart().await;
    served_again(&url, &token).await;

    // Down again with the keys growing stale: cached keys serve; the issuer
    // rotates its key meanwhile; back, the new key is fetched and honoured.
    idp.stop().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..5 {
        assert_eq!(call(&url, &token).await.status, 200);
    }
    idp.restart().await;
    idp.rotate();
    let rotated = idp.token(&url, "alice", "");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = call(&url, &rotated).await;
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 401, "{:?}", answer.body);
        assert!(
            Instant::now() < deadline,
            "the rotated key was never fetched"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn keys_stale_past_their_allowance_are_no_longer_trusted() {
    let idp = TestIdp::start("acme").await;
    let server = server(
        &idp,
        ", jwks_max_age_s = 1, jwks_max_stale_s = 3, jwks_min_refresh_ms = 0",
    )
    .await;
    let url = server.endpoint("acme");
    let token = idp.token(&url, "alice", "");
    assert_eq!(call(&url, &token).await.status, 200);
    // The keys were fetched during that call: no later than now.
    let fetched = Instant::now();

    // Failing from now on: stale keys serve within the allowance...
    idp.set_mode(IdpMode::Failing);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(call(&url, &token).await.status, 200);
    // ...and past it (1 s + 3 s after the fetch) the token is refused as
    // "issuer unavailable", not accepted on keys nobody could check.
    tokio::time::sleep(
        Duration::from_secs(4).saturating_sub(fetched.elapsed()) + Duration::from_millis(300),
    )
    .await;
    assert_503(&call(&url, &token).await);

    // The issuer comes back: keys are fetched and trusted again.
    idp.set_mode(IdpMode::Up);
    served_again(&url, &token).await;
}
