//! A real OAuth issuer for tests: RFC 8414 metadata and a JWKS over HTTP on
//! loopback, Ed25519 signing keys that can be rotated while it runs, and
//! switches for outages (failing, silent, refusing connections).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// One Ed25519 signing key and its public JWK.
#[derive(Clone)]
pub struct TestKey {
    /// The key id.
    pub kid: String,
    /// The raw 32-byte public key.
    pub public: [u8; 32],
    encoding: EncodingKey,
}

impl TestKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("randomness");
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let der = signing.to_pkcs8_der().expect("pkcs8");
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).expect("randomness");
        TestKey {
            kid: URL_SAFE_NO_PAD.encode(id),
            public: signing.verifying_key().to_bytes(),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "kid": self.kid, "x": URL_SAFE_NO_PAD.encode(self.public),
        })
    }

    /// `claims` signed with this key under a JOSE header of type `typ`.
    pub fn sign_typed(&self, typ: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = typ.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }

    /// `claims` signed with this key (EdDSA, with this key's `kid`).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

struct Keys {
    /// Published in the JWKS; the first one signs.
    published: Vec<TestKey>,
}

/// How a [`TestIdp`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpMode {
    /// Normally.
    Up = 0,
    /// Every request with 503.
    Failing = 1,
    /// Never: requests are accepted and left hanging.
    Silent = 2,
    /// Stopped ([`TestIdp::stop`]): new connections are refused, requests on
    /// kept-alive ones get 503 and the connection is closed.
    Stopped = 3,
}

/// An issuer serving metadata and keys on `127.0.0.1:0`.
pub struct TestIdp {
    /// The issuer URL (`iss`).
    pub issuer: String,
    keys: Arc<Mutex<Keys>>,
    jwks_fetches: Arc<Mutex<u32>>,
    mode: Arc<AtomicU8>,
    requests: Arc<AtomicU32>,
    addr: SocketAddr,
    app: Router,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[derive(Clone)]
struct IdpState {
    issuer: String,
    keys: Arc<Mutex<Keys>>,
    jwks_fetches: Arc<Mutex<u32>>,
}

#[derive(Clone)]
struct Gate {
    mode: Arc<AtomicU8>,
    requests: Arc<AtomicU32>,
}

/// Count every request, then answer it as the mode says.
async fn gate(State(g): State<Gate>, request: Request, next: Next) -> Response {
    g.requests.fetch_add(1, Ordering::SeqCst);
    match g.mode.load(Ordering::SeqCst) {
        1 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        2 => std::future::pending::<Response>().await,
        3 => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONNECTION, "close")],
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

impl TestIdp {
    /// Start an issuer at `http://127.0.0.1:PORT/{path}` (`path` may be empty).
    pub async fn start(path: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let issuer = if path.is_empty() {
            format!("http://{addr}")
        } else {
            format!("http://{addr}/{path}")
        };
        let keys = Arc::new(Mutex::new(Keys {
            published: vec![TestKey::generate()],
        }));
        let jwks_fetches = Arc::new(Mutex::new(0));
        let state = IdpState {
            issuer: issuer.clone(),
            keys: keys.clone(),
            jwks_fetches: jwks_fetches.clone(),
        };
        let suffix = if path.is_empty() {
            String::new()
        } else {
            format!("/{path}")
        };
        let app = Router::new()
            .route(
                &format!("/.well-known/oauth-authorization-server{suffix}"),
                get(metadata),
            )
            .route("/keys", get(jwks))
            .with_state(state);
        let mode = Arc::new(AtomicU8::new(IdpMode::Up as u8));
        let requests = Arc::new(AtomicU32::new(0));
        let app = app.layer(middleware::from_fn_with_state(
            Gate {
                mode: mode.clone(),
                requests: requests.clone(),
            },
            gate,
        ));
        let task = serve(listener, app.clone());
        TestIdp {
            issuer,
            keys,
            jwks_fetches,
            mode,
            requests,
            addr,
            app,
            task,
        }
    }

    /// Answer as `mode` says from now on (not [`IdpMode::Stopped`]: use
    /// [`TestIdp::stop`]).
    pub fn set_mode(&self, mode: IdpMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// How many HTTP requests reached the issuer (metadata and keys, in any
    /// mode).
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Stop listening: connections are refused until [`TestIdp::restart`].
    pub async fn stop(&mut self) {
        self.mode.store(IdpMode::Stopped as u8, Ordering::SeqCst);
        if !self.task.is_finished() {
            self.task.abort();
            let _ = (&mut self.task).await;
        }
    }

    /// Listen again, at the same address, answering normally.
    pub async fn restart(&mut self) {
        if !self.task.is_finished() {
            self.task.abort();
            let _ = (&mut self.task).await;
        }
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind the same address again");
        self.mode.store(IdpMode::Up as u8, Ordering::SeqCst);
        self.task = serve(listener, self.app.clone());
    }

    /// The key currently signing.
    pub fn current_key(&self) -> TestKey {
        self.keys.lock().expect("lock").published[0].clone()
    }

    /// Publish a new key and sign with it from now on; the old key is withdrawn.
    pub fn rotate(&self) -> TestKey {
        let key = TestKey::generate();
        self.keys.lock().expect("lock").published = vec![key.clone()];
        key
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> u32 {
        *self.jwks_fetches.lock().expect("lock")
    }

    /// Standard claims for `sub` at `aud` with `scope`, valid for five minutes.
    pub fn claims(&self, aud: &str, sub: &str, scope: &str) -> Value {
        let now = now();
        json!({
            "iss": self.issuer, "aud": aud, "sub": sub, "scope": scope,
            "client_id": "test-client", "iat": now, "nbf": now, "exp": now + 300,
        })
    }

    /// `claims` signed with the current key.
    pub fn sign(&self, claims: &Value) -> String {
        self.current_key().sign(claims)
    }

    /// A valid token for `sub` at `aud` with `scope`.
    pub fn token(&self, aud: &str, sub: &str, scope: &str) -> String {
        self.sign(&self.claims(aud, sub, scope))
    }
}

fn serve(listener: tokio::net::TcpListener, app: Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

async fn metadata(State(s): State<IdpState>) -> axum::Json<Value> {
    let base = s.issuer.clone();
    let origin = url::Url::parse(&base)
        .expect("issuer URL")
        .origin()
        .ascii_serialization();
    axum::Json(json!({
        "issuer": base,
        "jwks_uri": format!("{origin}/keys"),
        "authorization_endpoint": format!("{origin}/authorize"),
        "token_endpoint": format!("{origin}/token"),
        "response_types_supported": ["code"],
    }))
}

async fn jwks(State(s): State<IdpState>) -> axum::Json<Value> {
    *s.jwks_fetches.lock().expect("lock") += 1;
    let keys = s.keys.lock().expect("lock");
    axum::Json(json!({ "keys": keys.published.iter().map(TestKey::jwk).collect::<Vec<_>>() }))
}

/// A compact JWS with `header` and `claims` and the given signature bytes,
/// for hand-made hostile tokens.
pub fn raw_jwt(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}
