//! Credentials, with no state: Argon2id password hashes and the password rule, login names,
//! session-token hashes, and TOTP (RFC 6238) secrets, URIs and codes. The login flow
//! (`login.rs`) and the account operations (`people.rs`, `evidence.rs`) both use them.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use serde::Serialize;

use crate::ApiError;

pub(crate) fn random_b64(n: usize) -> Result<String, ApiError> {
    use base64::Engine;
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("random: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// SHA-256 of a session token, hex.
pub fn session_hash(token: &str) -> String {
    musubi_fhir::sha256_hex(token.as_bytes())
}

/// An Argon2id hash of a password (PHC string).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("password hash: {e}")))
}

pub(crate) fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Checks a password against the network's rule: at least 10 characters, not all one kind.
pub fn check_password_rule(password: &str) -> Result<(), ApiError> {
    let kinds = [
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    if password.chars().count() < 10 || kinds < 2 {
        return Err(ApiError::bad_request(
            "パスワードは10文字以上で、英大文字・英小文字・数字・記号のうち2種類以上を含めてください",
        ));
    }
    Ok(())
}

/// Checks a new login name: 1 to 64 characters, no white space or control character, no `:`
/// (the separator of an authenticator app's label, which the otpauth URI cannot carry).
pub fn check_login_name(login: &str) -> Result<(), ApiError> {
    if login.is_empty()
        || login.chars().count() > 64
        || login.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':')
    {
        return Err(ApiError::bad_request("ログインIDは空白・記号「:」を含まない64文字以内にしてください"));
    }
    Ok(())
}

/// A new TOTP secret (base32).
pub fn new_totp_secret() -> Result<String, ApiError> {
    let mut b = [0u8; 20];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("random: {e}")))?;
    Ok(totp_rs::Secret::from(b).to_base32())
}

fn totp(secret: &str, account: &str) -> Result<totp_rs::Totp, ApiError> {
    let s = totp_rs::Secret::try_from_base32(secret).map_err(|e| ApiError::internal(format!("totp secret: {e:?}")))?;
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(s)
        .with_issuer(Some("Musubi"))
        .with_account_name(account)
        .build()
        .map_err(|e| ApiError::internal(format!("totp: {e:?}")))
}

/// The otpauth:// URI for an authenticator app.
pub fn totp_uri(secret: &str, account: &str) -> Result<String, ApiError> {
    totp(secret, account)?.to_url().map_err(|e| ApiError::internal(format!("totp url: {e:?}")))
}

/// The current code of a secret (for the demo's helper and for tests).
pub fn totp_code_now(secret: &str) -> Result<String, ApiError> {
    Ok(totp(secret, "x")?.generate_current().to_string())
}

/// The code of a secret at `ms` (epoch ms; tests with a moved clock).
pub fn totp_code_at(secret: &str, ms: i64) -> Result<String, ApiError> {
    Ok(totp(secret, "x")?.generate(u64::try_from(ms / 1000).unwrap_or(0)).to_string())
}

/// The time step a code is valid for at `now_ms` (one step of skew either way), if any.
pub(crate) fn totp_step(secret: &str, code: &str, now_ms: i64) -> Option<i64> {
    let code: String = code.chars().filter(char::is_ascii_digit).collect();
    let t = totp(secret, "x").ok()?;
    t.check(&code, u64::try_from(now_ms / 1000).ok()?).and_then(|step| i64::try_from(step).ok())
}

#[cfg(test)]
fn totp_ok(secret: &str, code: &str) -> bool {
    totp_step(secret, code, musubi_fhir::datetime::now_ms()).is_some()
}

/// Whether `code` is a valid code of `secret` at `now_ms` (the second factor entered again for
/// break-glass; the login's own step bookkeeping is not involved).
pub(crate) fn totp_valid(secret: &str, code: &str, now_ms: i64) -> bool {
    totp_step(secret, code, now_ms).is_some()
}

/// A created account and its TOTP enrolment.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolled {
    /// Account id.
    pub id: String,
    /// The TOTP secret (shown once, for the authenticator app).
    pub totp_secret: String,
    /// The otpauth URI.
    pub totp_uri: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rule() {
        assert!(check_password_rule("short1A").is_err());
        assert!(check_password_rule("alllowercaseletters").is_err());
        assert!(check_password_rule("Longer-password-1").is_ok());
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("Musubi-pass-2026").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("Musubi-pass-2026", &h));
        assert!(!verify_password("musubi-pass-2026", &h));
    }

    #[test]
    fn totp_codes_verify() {
        let s = new_totp_secret().unwrap();
        let code = totp_code_now(&s).unwrap();
        assert!(totp_ok(&s, &code));
        assert!(!totp_ok(&s, "000000") || code == "000000");
        assert!(totp_uri(&s, "yamada").unwrap().starts_with("otpauth://totp/"));
    }
}
