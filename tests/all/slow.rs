//! Slow and idle clients: the header-read timeout, the idle timeout and the
//! connection cap, against a real host on loopback with raw TCP clients.

use std::time::{Duration, Instant};

use airlock_tests::client::{call, try_call};
use airlock_tests::idp::TestIdp;
use airlock_tests::server::{TestServer, tenant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const JWKS_REQUEST: &[u8] = b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// A host with `[server]` settings `server` and one tenant.
async fn host(server: &str) -> (TestIdp, TestServer) {
    let idp = TestIdp::start("").await;
    let config = format!("[server]\n{server}\n{}", tenant("acme", &idp.issuer, &[]));
    let host = TestServer::start(&config).await;
    (idp, host)
}

fn addr(server: &TestServer) -> String {
    server.url.trim_start_matches("http://").to_string()
}

/// Send one GET on `tcp` and read its whole response; return the status line.
async fn get_jwks(tcp: &mut TcpStream) -> String {
    tcp.write_all(JWKS_REQUEST).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .expect("a content-length");
            if got.len() >= end + 4 + length {
                return text.lines().next().unwrap_or_default().to_string();
            }
        }
    }
}

/// Wait until the peer closes `tcp` (EOF or reset); how long it took.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), tcp.read(&mut buf)).await {
            Err(_) => return Err(format!("still open after {limit:?}")),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_client_dripping_its_request_head_is_disconnected() {
    let (_idp, server) = host("header_read_timeout_ms = 1000\nidle_timeout_ms = 60000\n").await;
    // A head sent at once is served.
    let mut prompt = TcpStream::connect(addr(&server)).await.unwrap();
    assert!(get_jwks(&mut prompt).await.contains("200"));

    let mut tcp = TcpStream::connect(addr(&server)).await.unwrap();
    let started = Instant::now();
    let head = b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed = false;
    for byte in head {
        if tcp.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        // One byte a second would do; four a second keeps the test short.
        if closed_within(&mut tcp, Duration::from_millis(250))
            .await
            .is_ok()
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "the dripping client was served to the end");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "disconnected only after {elapsed:?}"
    );
    // The host goes on serving others.
    assert!(get_jwks(&mut prompt).await.contains("200"));

    // A head dripped after a request on a kept-alive connection is timed
    // from its first byte, not given the idle timeout.
    let started = Instant::now();
    let mut closed = false;
    for byte in head {
        if prompt.write_all(&[*byte]).await.is_err()
            || closed_within(&mut prompt, Duration::from_millis(250))
                .await
                .is_ok()
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the dripping keep-alive client was served to the end"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "disconnected only after {elapsed:?}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let (_idp, server) = host("header_read_timeout_ms = 10000\nidle_timeout_ms = 1000\n").await;
    let mut tcp = TcpStream::connect(addr(&server)).await.unwrap();
    assert!(get_jwks(&mut tcp).await.contains("200"));
    // Kept alive: a second request on the same connection is served.
    assert!(get_jwks(&mut tcp).await.contains("200"));
    let waited = closed_within(&mut tcp, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("the idle connection was not closed: {e}"));
    assert!(
        waited >= Duration::from_millis(500),
        "closed too early: {waited:?}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_in_flight_outlives_the_idle_and_header_timeouts() {
    let idp = TestIdp::start("").await;
    // The spinning tool runs 2 s; the connection is quiet all that time.
    let config = format!(
        "[server]\nheader_read_timeout_ms = 300\nidle_timeout_ms = 300\n\
         [tenants.acme]\nissuers = [{{ issuer = {:?} }}]\n\
         [[tenants.acme.install]]\ncomponent = \"hostile\"\nlimits = {{ timeout_ms = 2000 }}\n",
        idp.issuer
    );
    let server = TestServer::start(&config).await;
    let url = server.endpoint("acme");
    let token = idp.token(&url, "alice", "");
    let started = Instant::now();
    let (_, body) = try_call(&url, &token, "spin", serde_json::json!({}))
        .await
        .unwrap_or_else(|e| panic!("the call in flight was cut off: {e}"));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the tool did not run its time: {body}"
    );
    assert!(body.contains("\"jsonrpc\""), "{body}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_fresh_client_is_served_beside_300_idle_connections() {
    let idp = TestIdp::start("").await;
    let server = TestServer::start(&format!(
        "[server]\nheader_read_timeout_ms = 60000\n{}",
        tenant("acme", &idp.issuer, &[])
    ))
    .await;
    let url = server.endpoint("acme");
    let token = idp.token(&url, "alice", "");
    call(&url, &token, "echo", serde_json::json!({"text": "warm"})).await;
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut tcp = TcpStream::connect(addr(&server)).await.unwrap();
        // Half kept alive after a request, half silent since opening.
        if i % 2 == 0 {
            assert!(get_jwks(&mut tcp).await.contains("200"));
        }
        idle.push(tcp);
    }
    let started = Instant::now();
    let (_, body) = call(&url, &token, "echo", serde_json::json!({"text": "fresh"})).await;
    let elapsed = started.elapsed();
    assert!(body.contains("fresh"), "{body}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    // Shutdown closes the idle connections instead of waiting for them.
    tokio::time::timeout(Duration::from_secs(20), server.stop())
        .await
        .expect("graceful shutdown with idle connections open")
        .unwrap();
    drop(idle);
}

#[tokio::test]
async fn connections_over_the_cap_wait_and_are_served_once_others_close() {
    let (_idp, server) = host("max_connections = 3\nheader_read_timeout_ms = 60000\n").await;
    let mut kept = TcpStream::connect(addr(&server)).await.unwrap();
    assert!(get_jwks(&mut kept).await.contains("200"));
    let silent_a = TcpStream::connect(addr(&server)).await.unwrap();
    let silent_b = TcpStream::connect(addr(&server)).await.unwrap();
    // Let the host take both before the next one queues.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A fourth connection waits in the listen queue.
    let address = addr(&server);
    let mut waiting = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(address).await.unwrap();
        get_jwks(&mut tcp).await
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut waiting)
            .await
            .is_err(),
        "served over the cap"
    );
    // The connections it has are still served.
    assert!(get_jwks(&mut kept).await.contains("200"));

    // One closes: the waiting one is served.
    drop(silent_a);
    let status = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(status.contains("200"), "{status}");
    drop(silent_b);
    drop(kept);
    tokio::time::timeout(Duration::from_secs(20), server.stop())
        .await
        .expect("graceful shutdown")
        .unwrap();
}
