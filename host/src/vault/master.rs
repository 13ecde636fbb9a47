//! The vault's master key: 32 random bytes from a key file (hex or base64
//! text, 0600, written atomically) or an environment variable, and its
//! fingerprint, which the vault stores to tell a wrong key from a right one.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::VaultError;
use crate::config::VaultKeySource;

/// Length of a master key and of a data key, in bytes.
pub(crate) const KEY_LEN: usize = 32;

/// The key that wraps every tenant's data keys. Zeroized on drop, never
/// shown by `Debug`.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.fingerprint())
    }
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Result<Self, VaultError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut_slice()).map_err(|e| VaultError::Random(e.to_string()))?;
        Ok(MasterKey { bytes })
    }

    /// Read the key from `source`. Nothing is created: a missing file or
    /// variable is an error naming it.
    pub fn load(source: &VaultKeySource) -> Result<Self, VaultError> {
        match source {
            VaultKeySource::File(path) => {
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    VaultError::MasterKey(if e.kind() == std::io::ErrorKind::NotFound {
                        format!(
                            "the vault master key file {} does not exist (`airlock dev` creates one; \
                             for `airlock serve`, write 32 random bytes as hex to it, mode 0600)",
                            path.display()
                        )
                    } else {
                        format!("cannot read the vault master key file {}: {e}", path.display())
                    })
                })?);
                warn_if_readable_by_others(path);
                Self::parse(&text).map_err(|why| {
                    VaultError::MasterKey(format!(
                        "the vault master key file {}: {why}",
                        path.display()
                    ))
                })
            }
            VaultKeySource::Env(var) => {
                let text = Zeroizing::new(std::env::var(var).map_err(|_| {
                    VaultError::MasterKey(format!(
                        "the environment variable {var} (the vault master key) is not set"
                    ))
                })?);
                Self::parse(&text).map_err(|why| {
                    VaultError::MasterKey(format!(
                        "the environment variable {var} (the vault master key): {why}"
                    ))
                })
            }
        }
    }

    /// Parse 32 bytes written as hex or standard base64, surrounding
    /// whitespace ignored.
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let mut decoded = Zeroizing::new(Vec::with_capacity(KEY_LEN));
        if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            decoded.resize(KEY_LEN, 0);
            hex::decode_to_slice(text, decoded.as_mut_slice()).map_err(|e| e.to_string())?;
        } else {
            base64::engine::general_purpose::STANDARD
                .decode_vec(text, &mut decoded)
                .map_err(|_| {
                    "not a key: expected 32 bytes as 64 hex digits or base64".to_string()
                })?;
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        if decoded.len() != KEY_LEN {
            return Err(format!(
                "the key is {} bytes; a vault master key is {KEY_LEN}",
                decoded.len()
            ));
        }
        bytes.copy_from_slice(&decoded);
        Ok(MasterKey { bytes })
    }

    /// A new random key written to `path` (hex, 0600; the parent directory
    /// is created 0700). Refuses to replace an existing file.
    pub fn create_file(path: &Path) -> Result<Self, VaultError> {
        let key = Self::generate()?;
        key.write_file(path, false)?;
        Ok(key)
    }

    /// The key in `path`, created first if there is no file there: for
    /// `airlock dev`.
    pub fn ensure_file(path: &Path) -> Result<Self, VaultError> {
        match Self::create_file(path) {
            Err(VaultError::MasterKeyExists(_)) => Self::load(&VaultKeySource::File(path.into())),
            other => other,
        }
    }

    /// Write the key to `path` atomically: a temporary file (0600, synced)
    /// renamed over it (or, with `replace` false, linked where nothing is),
    /// then the directory synced. A crash leaves the old file or the new.
    pub(crate) fn write_file(&self, path: &Path, replace: bool) -> Result<(), VaultError> {
        let fail = |e: std::io::Error| {
            VaultError::MasterKey(format!(
                "cannot write the vault master key file {}: {e}",
                path.display()
            ))
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(fail)?;
        }
        if !replace && path.exists() {
            return Err(VaultError::MasterKeyExists(path.to_path_buf()));
        }
        let tmp = temp_path(path);
        let _ = std::fs::remove_file(&tmp);
        let mut text = Zeroizing::new(hex::encode(self.bytes.as_slice()));
        text.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(fail)?;
        // The mode above is masked by the umask; make sure.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(fail)?;
        file.write_all(text.as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        drop(file);
        text.zeroize();
        let placed = if replace {
            std::fs::rename(&tmp, path)
        } else {
            std::fs::hard_link(&tmp, path).and_then(|()| std::fs::remove_file(&tmp))
        };
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                VaultError::MasterKeyExists(path.to_path_buf())
            } else {
                fail(e)
            });
        }
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(fail)
    }

    /// A stable name for the key that reveals nothing about it: the first 16
    /// bytes of SHA-256 over a label and the key, as hex.
    pub fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"airlock vault master key fingerprint v1\0");
        hash.update(self.bytes.as_slice());
        let digest = hash.finalize();
        hex::encode(digest.get(..16).unwrap_or_default())
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

/// Where a key file is written before it is renamed into place.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// A key file others may read is worth a warning (not a refusal: secret
/// mounts are often 0644 inside a container nobody else shares).
fn warn_if_readable_by_others(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %path.display(),
                "the vault master key file can be read by other users; make it 0600"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;

    #[test]
    fn hex_and_base64_parse_and_bad_lengths_are_refused() {
        let key = MasterKey::generate().unwrap();
        let hex_text = hex::encode(key.bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.bytes());
        for text in [hex_text.clone(), format!("  {b64}\n")] {
            assert_eq!(
                MasterKey::parse(&text).unwrap().fingerprint(),
                key.fingerprint()
            );
        }
        assert!(MasterKey::parse(&hex_text[..62]).is_err());
        assert!(MasterKey::parse("not a key").is_err());
        assert!(!format!("{key:?}").contains(&hex_text));
    }

    #[test]
    fn key_files_are_private_and_never_replaced_by_create() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/vault.key");
        let key = MasterKey::create_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert!(matches!(
            MasterKey::create_file(&path),
            Err(VaultError::MasterKeyExists(_))
        ));
        let again = MasterKey::ensure_file(&path).unwrap();
        assert_eq!(again.fingerprint(), key.fingerprint());
        assert!(!temp_path(&path).exists());
    }
}
