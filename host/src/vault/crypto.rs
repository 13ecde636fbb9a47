//! Sealing and opening with XChaCha20-Poly1305 (RustCrypto): a fresh 24-byte
//! random nonce per seal, the associated data binding each ciphertext to
//! where it belongs, and plaintexts kept in zeroizing buffers.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::VaultError;
use super::master::KEY_LEN;

const NONCE_LEN: usize = 24;

/// A 32-byte key (a tenant's data key, or the master key's bytes).
#[derive(Clone)]
pub(crate) struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl DataKey {
    pub(crate) fn generate() -> Result<Self, VaultError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut_slice()).map_err(|e| VaultError::Random(e.to_string()))?;
        Ok(DataKey(bytes))
    }

    pub(crate) fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        DataKey(Zeroizing::new(*bytes))
    }

    /// Build a key from an opened plaintext, which must be exactly 32 bytes.
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return None;
        }
        key.copy_from_slice(bytes);
        Some(DataKey(key))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    fn cipher(&self) -> Result<XChaCha20Poly1305, VaultError> {
        XChaCha20Poly1305::new_from_slice(self.0.as_slice())
            .map_err(|_| VaultError::Crypto("bad key length".into()))
    }

    /// Seal `plaintext` bound to `aad`.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| VaultError::Random(e.to_string()))?;
        // Encrypted in place in a zeroizing buffer: the plaintext copy never
        // outlives this call.
        let mut buffer = Zeroizing::new(Vec::with_capacity(plaintext.len() + 16));
        buffer.extend_from_slice(plaintext);
        self.cipher()?
            .encrypt_in_place(&XNonce::from(nonce), aad, &mut *buffer)
            .map_err(|_| VaultError::Crypto("sealing failed".into()))?;
        Ok(Sealed {
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(buffer.as_slice()),
        })
    }

    /// Open `sealed` bound to `aad`; `None` if it does not authenticate.
    pub(crate) fn open(&self, sealed: &Sealed, aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let mut nonce = [0u8; NONCE_LEN];
        hex::decode_to_slice(&sealed.nonce, &mut nonce).ok()?;
        let mut buffer = Zeroizing::new(hex::decode(&sealed.ciphertext).ok()?);
        self.cipher()
            .ok()?
            .decrypt_in_place(&XNonce::from(nonce), aad, &mut *buffer)
            .ok()?;
        Some(buffer)
    }
}

/// A nonce and a ciphertext (with its tag), as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sealed {
    /// 24 bytes, hex.
    pub(crate) nonce: String,
    /// Hex.
    pub(crate) ciphertext: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_any_change_fails() {
        let key = DataKey::generate().unwrap();
        let sealed = key.seal(b"hello", b"aad").unwrap();
        assert_eq!(key.open(&sealed, b"aad").unwrap().as_slice(), b"hello");
        assert!(key.open(&sealed, b"other").is_none());
        assert!(DataKey::generate().unwrap().open(&sealed, b"aad").is_none());
        let mut flipped = sealed.clone();
        let last = if flipped.ciphertext.ends_with('0') {
            "1"
        } else {
            "0"
        };
        flipped.ciphertext.pop();
        flipped.ciphertext.push_str(last);
        assert!(key.open(&flipped, b"aad").is_none());
        // Nonces are fresh per seal.
        assert_ne!(key.seal(b"hello", b"aad").unwrap().nonce, sealed.nonce);
    }
}
