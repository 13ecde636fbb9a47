//! The development issuers' signing keys and the access tokens they mint.
//! One Ed25519 key per demo tenant, kept as PKCS#8 in the dev data directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// One tenant's signing key.
pub(crate) struct IssuerKey {
    kid: String,
    public: [u8; 32],
    encoding: EncodingKey,
}

/// The claims of a development access token.
#[derive(Debug, Serialize)]
pub(crate) struct AccessClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub scope: &'a str,
    pub client_id: &'a str,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn key_path(dir: &Path, tenant: &str) -> PathBuf {
    dir.join(format!("{tenant}.key"))
}

impl IssuerKey {
    fn from_signing(signing: &SigningKey) -> Result<Self, String> {
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| format!("cannot encode the signing key: {e}"))?;
        let public = signing.verifying_key().to_bytes();
        let digest = Sha256::digest(public);
        Ok(IssuerKey {
            kid: URL_SAFE_NO_PAD.encode(digest.get(..12).unwrap_or_default()),
            public,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
        })
    }

    /// The key of `tenant` in `dir`; `None` when there is none yet.
    pub(crate) fn load(dir: &Path, tenant: &str) -> Result<Option<Self>, String> {
        let path = key_path(dir, tenant);
        let der = match std::fs::read(&path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let signing = SigningKey::from_pkcs8_der(&der)
            .map_err(|e| format!("{} is not an Ed25519 PKCS#8 key: {e}", path.display()))?;
        Self::from_signing(&signing).map(Some)
    }

    /// The key of `tenant` in `dir`, created (readable by the owner only) when missing.
    pub(crate) fn load_or_create(dir: &Path, tenant: &str) -> Result<Self, String> {
        if let Some(key) = Self::load(dir, tenant)? {
            return Ok(key);
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| format!("no randomness for a key: {e}"))?;
        let signing = SigningKey::from_bytes(&seed);
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| format!("cannot encode the signing key: {e}"))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = key_path(dir, tenant);
        write_private(&path, der.as_bytes())?;
        Self::from_signing(&signing)
    }

    /// The public JWK.
    pub(crate) fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "kid": self.kid, "x": URL_SAFE_NO_PAD.encode(self.public),
        })
    }

    /// Sign `claims` (EdDSA, with this key's `kid`) as an access token.
    pub(crate) fn sign(&self, claims: &impl Serialize) -> Result<String, String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| format!("cannot sign a token: {e}"))
    }
}

/// A fresh access token for `sub` at `aud`, valid for `lifetime`.
pub(crate) fn mint(
    key: &IssuerKey,
    iss: &str,
    sub: &str,
    aud: &str,
    scope: &str,
    client_id: &str,
    lifetime: Duration,
) -> Result<String, String> {
    let now = now();
    key.sign(&AccessClaims {
        iss,
        sub,
        aud,
        scope,
        client_id,
        iat: now,
        nbf: now,
        exp: now + lifetime.as_secs(),
        jti: crate::envelope::random_id(),
    })
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
