//! Bearer tokens for systems: issued by the operator (`musubi token issue`), shown once, stored
//! only as a SHA-256 hash (tokens are 256 random bits, so a fast hash is enough; passwords,
//! which are guessable, get a slow hash elsewhere).
//!
//! System tokens expire (`musubi token issue --expires 90d`); `musubi token rotate` issues a new
//! secret under the same name and lets the old one live on for a short overlap only.
//! The server resolves presented tokens through [`Service::token_actor`] (it caches answers
//! for a few seconds); the operator console checks its session through
//! [`Service::active_admin_token`].

use base64::Engine;
use musubi_gate::Actor;
use musubi_store::{Store, StoreError, TokenRow};
use sha2::{Digest, Sha256};

use crate::{ApiError, Service};

/// The prefix of every Musubi token (so they are recognisable in a leaked file or log).
pub const TOKEN_PREFIX: &str = "msb_";

/// SHA-256 of a token, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)))
}

/// Issues a token that does not expire and stores its hash; returns the token (shown once).
pub fn issue(
    store: &Store,
    kind: &str,
    facility: Option<&musubi_domain::FacilityCode>,
    name: &str,
) -> Result<String, StoreError> {
    issue_expiring(store, kind, facility, name, None)
}

fn new_row(
    kind: &str,
    facility: Option<&musubi_domain::FacilityCode>,
    name: &str,
    expires: Option<i64>,
) -> Result<(String, TokenRow), StoreError> {
    let token = new_token().map_err(|e| StoreError::Backend { op: "random", message: e.to_string() })?;
    let row = TokenRow {
        token_hash: token_hash(&token),
        kind: kind.to_owned(),
        facility: facility.map(|f| f.to_string()),
        name: name.to_owned(),
        created: musubi_fhir::datetime::now_ms(),
        revoked: false,
        expires,
    };
    Ok((token, row))
}

/// Issues a token that is refused from `expires` on (ms since the epoch; `None`: never), and
/// stores its hash; returns the token (shown once).
pub fn issue_expiring(
    store: &Store,
    kind: &str,
    facility: Option<&musubi_domain::FacilityCode>,
    name: &str,
    expires: Option<i64>,
) -> Result<String, StoreError> {
    let (token, row) = new_row(kind, facility, name, expires)?;
    store.insert_token(row)?;
    Ok(token)
}

/// Rotates the system token named `name`: a new secret (same kind and facility as the newest
/// active token of that name, refused from `expires` on), while the old ones stay valid until
/// `old_until` at the latest. Returns the new token, or `None` when no active token has that
/// name.
pub fn rotate(
    store: &Store,
    name: &str,
    expires: Option<i64>,
    old_until: i64,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    let rows = store.read(|r| r.tokens())?;
    let Some(current) = rows.iter().rev().find(|t| t.name == name && t.active_at(now_ms)) else {
        return Ok(None);
    };
    let facility = match current.facility.as_deref() {
        Some(f) => Some(f.parse::<musubi_domain::FacilityCode>().map_err(|e| StoreError::Backend {
            op: "token rotate",
            message: format!("stored facility {f:?} of token {name:?}: {e}"),
        })?),
        None => None,
    };
    let (token, row) = new_row(&current.kind, facility.as_ref(), name, expires)?;
    store.rotate_token(row, old_until)?;
    Ok(Some(token))
}

/// Parses a lifetime such as `90d`, `12h` or `30m` (days, hours, minutes) into milliseconds.
pub fn parse_lifetime(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| format!("{s:?}: expected a number followed by d, h or m (e.g. 90d)"))?;
    let per = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        _ => return Err(format!("{s:?}: the unit must be d (days), h (hours) or m (minutes), e.g. 90d")),
    };
    n.checked_mul(per).filter(|ms| *ms <= 3650 * 86_400_000).ok_or_else(|| format!("{s:?}: at most 3650 days"))
}

/// The actor a token row stands for (ignoring expiry: see [`TokenRow::active_at`]).
fn actor_of(row: &TokenRow) -> Option<Actor> {
    if row.revoked {
        return None;
    }
    match row.kind.as_str() {
        // The bootstrap token: it may only create the first operator (see the server's `Authed`).
        "admin" => Some(Actor::Bootstrap { name: row.name.clone() }),
        "system" => Some(Actor::System { name: row.name.clone(), facility: row.facility.as_deref()?.parse().ok()? }),
        _ => None,
    }
}

impl Service {
    /// The actor a bearer token (by its hash) stands for at `now_ms` (None: unknown, revoked
    /// or expired), and the token's expiry (so a cached answer is never used past it).
    pub fn token_actor(&self, hash: &str, now_ms: i64) -> Result<(Option<Actor>, Option<i64>), ApiError> {
        let row = self.store.read(|r| r.token(hash))?;
        let actor = row.as_ref().filter(|r| r.active_at(now_ms)).and_then(actor_of);
        Ok((actor, row.and_then(|r| r.expires)))
    }

    /// The name of the administrator (bootstrap) token with this hash when it is active at
    /// `now_ms` (the operator console's first login and its session check).
    pub fn active_admin_token(&self, hash: &str, now_ms: i64) -> Result<Option<String>, ApiError> {
        let row = self.store.read(|r| r.token(hash))?;
        Ok(row.filter(|t| t.kind == "admin" && t.active_at(now_ms)).map(|t| t.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_prefixed() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert!(a.starts_with("msb_") && a.len() == 4 + 43);
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 64);
    }

    #[test]
    fn lifetimes_take_days_hours_minutes() {
        assert_eq!(parse_lifetime("90d"), Ok(90 * 86_400_000));
        assert_eq!(parse_lifetime("12h"), Ok(12 * 3_600_000));
        assert_eq!(parse_lifetime("30m"), Ok(30 * 60_000));
        assert!(parse_lifetime("90").is_err());
        assert!(parse_lifetime("d").is_err());
        assert!(parse_lifetime("2w").is_err());
        assert!(parse_lifetime("99999999999999d").is_err());
    }
}
