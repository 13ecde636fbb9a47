//! The signed form of the envelope, checked the way an API team would: only
//! the host's JWKS and an independent JWT library (jsonwebtoken), never the
//! host's own code.

use std::time::Duration;

use airlock_host::envelope::{
    ActorKind, Delegation, DelegationMode, ENVELOPE_JWS_TYPE, Envelope, EnvelopeClaims, KeyRing,
    RequestBinding,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
// An independent implementation verifies what the host signs.
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use sha2::{Digest, Sha256};

const HOST: &str = "https://airlock.example";
const SERVICE: &str = "https://api.notes.example";

fn envelope() -> Envelope {
    Envelope::mint(
        EnvelopeClaims {
            tenant: "acme".into(),
            actor_kind: ActorKind::User,
            issuer: "https://idp.acme.example".into(),
            subject: "alice".into(),
            client_id: Some("cli".into()),
            agent_id: None,
            session_id: Some("s-1".into()),
            trace_id: "trace-1".into(),
            tool: "notes.add".into(),
            scopes: vec!["notes:read".into(), "notes:write".into()],
            delegations: vec![Delegation {
                service: "notes".into(),
                mode: DelegationMode::Service,
            }],
        },
        Duration::from_secs(60),
    )
}

const POST: RequestBinding<'static> = RequestBinding {
    method: "POST",
    path: "/v1/notes?folder=a%20b",
    body: br#"{"text":"hi"}"#,
};

/// Verify `token` the way a service would: only the JWKS JSON and jsonwebtoken.
fn verify(
    token: &str,
    jwks: &serde_json::Value,
    audience: &str,
) -> jsonwebtoken::errors::Result<serde_json::Value> {
    let header = decode_header(token)?;
    assert_eq!(header.typ.as_deref(), Some(ENVELOPE_JWS_TYPE));
    assert_eq!(header.alg, Algorithm::EdDSA);
    let set: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let key = DecodingKey::from_jwk(jwk)?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[HOST]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    Ok(decode::<serde_json::Value>(token, &key, &validation)?.claims)
}

#[test]
fn a_signed_envelope_verifies_with_only_the_jwks() {
    let tmp = tempfile::tempdir().unwrap();
    let ring = KeyRing::open(tmp.path()).unwrap();
    let envelope = envelope();
    let token = envelope.sign_for(&ring, HOST, SERVICE, &POST).unwrap();
    let jwks = ring.jwks(envelope.issued_at(), 600);
    let claims = verify(&token, &jwks, SERVICE).unwrap();

    assert_eq!(
        decode_header(&token).unwrap().kid.unwrap(),
        ring.active_kid()
    );
    assert_eq!(claims["iss"], HOST);
    assert_eq!(claims["aud"], SERVICE);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["envelope_id"], envelope.envelope_id());
    assert_eq!(claims["nbf"], envelope.issued_at());
    assert_eq!(claims["exp"], envelope.expires_at());
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(
        claims["actor"],
        serde_json::json!({"kind": "user", "subject": "alice", "issuer": "https://idp.acme.example"})
    );
    assert_eq!(claims["agent"], serde_json::json!({"client_id": "cli"}));
    assert_eq!(claims["session_id"], "s-1");
    assert_eq!(claims["trace_id"], "trace-1");
    assert_eq!(claims["tool"], "notes.add");
    assert_eq!(claims["scope"], "notes:read notes:write");
    assert_eq!(
        claims["delegations"],
        serde_json::json!([{"service": "notes", "mode": "service"}])
    );
    assert_eq!(
        claims["req"],
        serde_json::json!({
            "method": "POST",
            "path": "/v1/notes?folder=a%20b",
            "body_sha256": URL_SAFE_NO_PAD.encode(Sha256::digest(POST.body)),
        })
    );

    // Every signature has its own jti.
    let again = envelope.sign_for(&ring, HOST, SERVICE, &POST).unwrap();
    let claims_again = verify(&again, &jwks, SERVICE).unwrap();
    assert_ne!(claims["jti"], claims_again["jti"]);
    assert_eq!(claims["envelope_id"], claims_again["envelope_id"]);
}

#[test]
fn a_token_for_one_service_fails_at_another() {
    let tmp = tempfile::tempdir().unwrap();
    let ring = KeyRing::open(tmp.path()).unwrap();
    let envelope = envelope();
    let token = envelope.sign_for(&ring, HOST, SERVICE, &POST).unwrap();
    let jwks = ring.jwks(envelope.issued_at(), 600);
    let error = verify(&token, &jwks, "https://api.other.example").unwrap_err();
    assert_eq!(
        error.kind(),
        &jsonwebtoken::errors::ErrorKind::InvalidAudience
    );

    // A changed payload breaks the signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["sub"] = "mallory".into();
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let forged = parts.join(".");
    let error = verify(&forged, &jwks, SERVICE).unwrap_err();
    assert_eq!(
        error.kind(),
        &jsonwebtoken::errors::ErrorKind::InvalidSignature
    );
}

#[test]
fn the_request_binding_follows_method_path_and_body() {
    let tmp = tempfile::tempdir().unwrap();
    let ring = KeyRing::open(tmp.path()).unwrap();
    let envelope = envelope();
    let jwks = ring.jwks(envelope.issued_at(), 600);
    let req = |request: RequestBinding<'_>| {
        let token = envelope.sign_for(&ring, HOST, SERVICE, &request).unwrap();
        verify(&token, &jwks, SERVICE).unwrap()["req"].clone()
    };
    let base = req(POST);
    let others = [
        RequestBinding {
            method: "PUT",
            ..POST
        },
        RequestBinding {
            path: "/v1/notes?folder=other",
            ..POST
        },
        RequestBinding {
            path: "/v1/notes",
            ..POST
        },
        RequestBinding {
            body: br#"{"text":"ho"}"#,
            ..POST
        },
        RequestBinding { body: b"", ..POST },
    ];
    for other in others {
        let bound = req(other);
        assert_ne!(bound, base, "{other:?}");
        assert_eq!(bound["method"], other.method);
        assert_eq!(bound["path"], other.path);
        assert_eq!(
            bound["body_sha256"],
            URL_SAFE_NO_PAD.encode(Sha256::digest(other.body))
        );
    }
}

#[test]
fn tokens_signed_before_a_rotation_verify_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ring = KeyRing::open(tmp.path()).unwrap();
    let envelope = envelope();
    let before = envelope.sign_for(&ring, HOST, SERVICE, &POST).unwrap();
    KeyRing::rotate(tmp.path()).unwrap();
    assert!(ring.refresh().unwrap());
    let after = envelope.sign_for(&ring, HOST, SERVICE, &POST).unwrap();
    let kid = |t: &str| decode_header(t).unwrap().kid.unwrap();
    assert_ne!(kid(&before), kid(&after));
    let jwks = ring.jwks(envelope.issued_at(), 600);
    verify(&before, &jwks, SERVICE).unwrap();
    verify(&after, &jwks, SERVICE).unwrap();
}

/// The README's recipe for an API team, step by step: the token's `typ`, its
/// signature against the host's JWKS, `iss`, `aud` (this service), expiry,
/// then the request binding against the request actually received.
fn verify_received(
    token: &str,
    jwks: &serde_json::Value,
    host: &str,
    me: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<serde_json::Value, String> {
    let header = decode_header(token).map_err(|e| e.to_string())?;
    if header.typ.as_deref() != Some(ENVELOPE_JWS_TYPE) {
        return Err("not an airlock envelope".into());
    }
    let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| e.to_string())?;
    let jwk = set
        .find(header.kid.as_deref().ok_or("no kid")?)
        .ok_or("unknown kid")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[host]);
    validation.set_audience(&[me]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims = decode::<serde_json::Value>(token, &key, &validation)
        .map_err(|e| e.to_string())?
        .claims;
    let req = &claims["req"];
    if req["method"] != method || req["path"] != path {
        return Err("signed for another request".into());
    }
    if req["body_sha256"] != URL_SAFE_NO_PAD.encode(Sha256::digest(body)) {
        return Err("signed for another body".into());
    }
    Ok(claims)
}

#[tokio::test]
async fn a_running_host_publishes_its_keys_and_keeps_retired_ones_while_rotating() {
    use airlock_tests::idp::TestIdp;
    use airlock_tests::server::{TestServer, tenant};

    let idp = TestIdp::start("").await;
    let server = TestServer::start(&tenant("acme", &idp.issuer, &[])).await;
    let jwks_url = format!("{}/.well-known/jwks.json", server.url);
    let fetch = async || {
        let resp = reqwest::get(&jwks_url).await.unwrap();
        assert_eq!(resp.status(), 200);
        let cache = resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(cache.contains("max-age="), "{cache}");
        resp.json::<serde_json::Value>().await.unwrap()
    };
    // The host's own ring, as the delegation broker uses it.
    let ring = KeyRing::open(&KeyRing::dir_in(server.data_dir())).unwrap();
    let envelope = envelope();
    let body = br#"{"text":"hi"}"#;
    let binding = RequestBinding {
        method: "POST",
        path: "/v1/notes",
        body,
    };
    let token = envelope
        .sign_for(&ring, &server.url, SERVICE, &binding)
        .unwrap();
    let jwks = fetch().await;
    let claims = verify_received(
        &token,
        &jwks,
        &server.url,
        SERVICE,
        "POST",
        "/v1/notes",
        body,
    )
    .unwrap();
    assert_eq!(claims["sub"], "alice");
    // Captured by one API and replayed elsewhere: refused.
    for (me, method, path, body, why) in [
        (
            "https://api.other.example",
            "POST",
            "/v1/notes",
            &body[..],
            "InvalidAudience",
        ),
        (SERVICE, "POST", "/v1/admin", &body[..], "another request"),
        (SERVICE, "DELETE", "/v1/notes", &body[..], "another request"),
        (SERVICE, "POST", "/v1/notes", &b"{}"[..], "another body"),
    ] {
        let err = verify_received(&token, &jwks, &server.url, me, method, path, body).unwrap_err();
        assert!(err.contains(why), "{err}");
    }

    // `airlock keys rotate` while serving: the new key is published beside the old.
    let mut out = Vec::new();
    let mut err = Vec::new();
    let data = server.data_dir().display().to_string();
    let code = airlock_host::cli::run(
        ["airlock", "keys", "rotate", "--data", &data],
        &mut out,
        &mut err,
    )
    .await;
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let started = std::time::Instant::now();
    let rotated = loop {
        let jwks = fetch().await;
        if jwks["keys"].as_array().unwrap().len() == 2 {
            break jwks;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the running host did not publish the new key: {jwks}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    verify_received(
        &token,
        &rotated,
        &server.url,
        SERVICE,
        "POST",
        "/v1/notes",
        body,
    )
    .unwrap();
    ring.refresh().unwrap();
    let after = envelope
        .sign_for(&ring, &server.url, SERVICE, &binding)
        .unwrap();
    assert_ne!(
        decode_header(&after).unwrap().kid,
        decode_header(&token).unwrap().kid
    );
    verify_received(
        &after,
        &rotated,
        &server.url,
        SERVICE,
        "POST",
        "/v1/notes",
        body,
    )
    .unwrap();
}
