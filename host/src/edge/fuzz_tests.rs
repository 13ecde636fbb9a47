//! Property tests: what a client sends before its token is verified — the
//! `Authorization` header, the query string, the token's header and payload —
//! never panics the edge, whatever the bytes.

use std::path::Path;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use proptest::prelude::*;

use super::{AuthError, Edge, auth};
use crate::config::Config;

/// One tenant whose only issuer accepts RS256: a token naming that issuer
/// with any other algorithm is refused before any key is fetched, so these
/// tests never reach the network.
const CONFIG: &str = r#"
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080"
data_dir = "data"

[components.echo]
path = "echo.wasm"

[tenants.acme]
issuers = [{ issuer = "http://127.0.0.1:9/issuer", algorithms = ["RS256"], jwks_uri = "http://127.0.0.1:9/jwks" }]

[[tenants.acme.install]]
component = "echo"
"#;

const ISSUER: &str = "http://127.0.0.1:9/issuer";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token part: raw text, base64url of arbitrary bytes, or base64url of a
/// JSON object close to a JOSE header or claims set.
fn part() -> impl Strategy<Value = String> {
    let alg = prop::sample::select(vec![
        "HS256", "HS512", "ES384", "PS256", "EdDSA", "none", "", "RS256x",
    ]);
    let typ = prop::sample::select(vec!["JWT", "at+jwt", "airlock-envelope+jwt", ""]);
    let iss = prop_oneof![
        Just(ISSUER.to_string()),
        Just("https://other.example".to_string()),
        ".{0,40}",
    ];
    prop_oneof![
        ".{0,80}",
        prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| b64(&b)),
        (alg, typ, prop::option::of(".{0,20}")).prop_map(|(alg, typ, kid)| {
            let mut h = serde_json::json!({"alg": alg, "typ": typ});
            if let Some(kid) = kid {
                h["kid"] = kid.into();
            }
            b64(h.to_string().as_bytes())
        }),
        (iss, any::<i64>()).prop_map(|(iss, exp)| b64(
            serde_json::json!({"iss": iss, "sub": "alice", "exp": exp})
                .to_string()
                .as_bytes()
        )),
        ".{0,20}".prop_map(|s| b64(format!("{{\"iss\": {s:?}").as_bytes())),
    ]
}

/// Dot-separated garbage: one to five parts.
fn token() -> impl Strategy<Value = String> {
    prop::collection::vec(part(), 1..6).prop_map(|parts| parts.join("."))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Arbitrary `Authorization` values (one or several) and query strings:
    /// an answer, never a panic, and any token returned is one word.
    #[test]
    fn the_bearer_parser_takes_any_bytes(
        values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 0..3),
        prefixed in prop::collection::vec(any::<bool>(), 3),
        query in prop::option::of(".{0,60}"),
    ) {
        let mut headers = HeaderMap::new();
        for (value, prefix) in values.iter().zip(&prefixed) {
            let mut bytes = if *prefix { b"Bearer ".to_vec() } else { Vec::new() };
            bytes.extend_from_slice(value);
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                headers.append(header::AUTHORIZATION, v);
            }
        }
        if let Ok(token) = auth::bearer(&headers, query.as_deref()) {
            prop_assert!(!token.is_empty());
            prop_assert!(!token.contains(char::is_whitespace));
        }
    }
}

/// Dot-separated garbage, some of it close to a real token, goes through
/// header decoding, the unverified issuer, `typ` and algorithm checks: always
/// refused as an invalid token, never a panic.
#[test]
fn tokens_of_garbage_are_refused_without_panicking() {
    let config = Config::parse(CONFIG, Path::new("airlock.toml"), Path::new("/tmp")).unwrap();
    let edge = Edge::new(Arc::new(config)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(1000));
    runner
        .run(&token(), |token| {
            let outcome = runtime.block_on(edge.authenticate("acme", token.clone()));
            prop_assert!(
                matches!(outcome, Err(AuthError::InvalidToken(_))),
                "{} gave {:?}",
                token,
                outcome.map(|_| "a principal")
            );
            Ok(())
        })
        .unwrap();
}
