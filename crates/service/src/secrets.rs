//! TOTP secrets at rest: sealed with ChaCha20-Poly1305 under a key kept in a file outside the
//! database (`--secrets-key`, by default `secrets.key` in the data directory, created 0600 on
//! first start). A copy of the database (a PostgreSQL dump, a backup) then holds no usable
//! second factor. A stored value is `enc1:` + base64(nonce ‖ ciphertext); a value without the
//! prefix is a secret stored in clear by an older version, still read, and sealed by
//! [`Service::seal_clear_totp_secrets`](crate::Service::seal_clear_totp_secrets) on start.

use std::path::Path;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::{ApiError, ErrorKind};

/// The prefix of a sealed value.
pub const SEALED_PREFIX: &str = "enc1:";

/// The key that seals TOTP secrets (never printed: `Debug` shows nothing of it).
pub struct SecretsKey {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(…)")
    }
}

fn key_error(path: &Path, what: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("secrets key {}: {what}", path.display()))
}

impl SecretsKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> SecretsKey {
        SecretsKey { cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)) }
    }

    /// Reads the key file (64 hex digits), creating it (0600, new random key) when missing.
    pub fn load_or_create(path: &Path) -> Result<SecretsKey, ApiError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(|e| key_error(path, format!("not hex: {e}")))?;
                let bytes: [u8; 32] =
                    bytes.try_into().map_err(|_| key_error(path, "must hold 32 bytes (64 hex digits)"))?;
                musubi_store::private::tighten(path, 0o600);
                Ok(SecretsKey::from_bytes(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = [0u8; 32];
                getrandom::fill(&mut k).map_err(|e| key_error(path, format!("random: {e}")))?;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(path).map_err(|e| key_error(path, e))?;
                std::io::Write::write_all(&mut f, hex::encode(k).as_bytes()).map_err(|e| key_error(path, e))?;
                f.sync_all().map_err(|e| key_error(path, e))?;
                Ok(SecretsKey::from_bytes(k))
            }
            Err(e) => Err(key_error(path, e)),
        }
    }

    /// Seals a secret (a fresh random nonce each time).
    pub fn seal(&self, clear: &str) -> Result<String, ApiError> {
        let mut n = [0u8; 12];
        getrandom::fill(&mut n).map_err(|e| ApiError::internal(format!("random: {e}")))?;
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&n), clear.as_bytes())
            .map_err(|_| ApiError::internal("sealing a secret failed"))?;
        let mut out = n.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!("{SEALED_PREFIX}{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)))
    }

    /// Opens a stored value: a sealed one is decrypted (a wrong key or a changed value is an
    /// error), an unsealed one (stored in clear by an older version) is returned as it is.
    pub fn open(&self, stored: &str) -> Result<String, ApiError> {
        let Some(b64) = stored.strip_prefix(SEALED_PREFIX) else { return Ok(stored.to_owned()) };
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64)
            .map_err(|_| ApiError::internal("a sealed secret is not base64"))?;
        if raw.len() < 12 + 16 {
            return Err(ApiError::internal("a sealed secret is too short"));
        }
        let (n, ct) = raw.split_at(12);
        let clear = self.cipher.decrypt(Nonce::from_slice(n), ct).map_err(|_| {
            ApiError::new(
                ErrorKind::Internal,
                "a sealed TOTP secret does not open with this key (wrong --secrets-key, or the value was changed)",
            )
        })?;
        String::from_utf8(clear).map_err(|_| ApiError::internal("a sealed secret is not UTF-8"))
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key() {
        let k = SecretsKey::from_bytes([7; 32]);
        let s = k.seal("JBSWY3DPEHPK3PXP").unwrap();
        assert!(is_sealed(&s) && !s.contains("JBSWY3DPEHPK3PXP"));
        assert_ne!(s, k.seal("JBSWY3DPEHPK3PXP").unwrap(), "a fresh nonce each time");
        assert_eq!(k.open(&s).unwrap(), "JBSWY3DPEHPK3PXP");
        assert_eq!(k.open("JBSWY3DPEHPK3PXP").unwrap(), "JBSWY3DPEHPK3PXP", "clear values still read");
        assert!(SecretsKey::from_bytes([8; 32]).open(&s).is_err());
        // A changed value (one character of the ciphertext, never the same one: the old test
        // replaced the last character with 'A', which was a no-op whenever it already was 'A').
        let mut bad: Vec<char> = s.chars().collect();
        let i = bad.len() / 2;
        bad[i] = if bad[i] == 'A' { 'B' } else { 'A' };
        let bad: String = bad.into_iter().collect();
        assert!(k.open(&bad).is_err());
        assert!(!format!("{k:?}").contains('7'));
    }

    #[test]
    fn the_key_file_is_created_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let a = SecretsKey::load_or_create(&path).unwrap();
        let sealed = a.seal("X").unwrap();
        let b = SecretsKey::load_or_create(&path).unwrap();
        assert_eq!(b.open(&sealed).unwrap(), "X");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
