//! Bearer tokens for systems: issued by the operator (`musubi token issue`), shown once, stored
//! only as a SHA-256 hash (tokens are 256 random bits, so a fast hash is enough; passwords,
//! which are guessable, get a slow hash elsewhere). Lookups are cached for a few seconds so a
//! revocation takes effect quickly without a database read per request.
//!
//! System tokens expire (`musubi token issue --expires 90d`); `musubi token rotate` issues a new
//! secret under the same name and lets the old one live on for a short overlap only. A cached
//! answer carries the token's expiry, so a cached token is never accepted past it.
//! With mutual TLS a system token is also bound to its facility's client certificate (see
//! [`crate::tls`]).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use musubi_gate::Actor;
use musubi_store::{Store, StoreError, TokenRow};
use sha2::{Digest, Sha256};

/// The prefix of every Musubi token (so they are recognisable in a leaked file or log).
pub const TOKEN_PREFIX: &str = "msb_";

/// How long a looked-up token is trusted without asking the store again.
const CACHE_TTL_MS: i64 = 5_000;

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
pub fn actor_of(row: &TokenRow) -> Option<Actor> {
    if row.revoked {
        return None;
    }
    match row.kind.as_str() {
        // The bootstrap token: it may only create the first operator (see `edge::Authed`).
        "admin" => Some(Actor::Bootstrap { name: row.name.clone() }),
        "system" => Some(Actor::System { name: row.name.clone(), facility: row.facility.as_deref()?.parse().ok()? }),
        _ => None,
    }
}

/// One cached lookup: the actor (None: refused), when it was looked up (epoch ms, on the
/// service's clock, so tests move time instead of waiting), and the token's expiry.
type Entry = (Option<Actor>, i64, Option<i64>);

/// Token → actor, with a short cache.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, Entry>>,
}

/// A cached entry is used while fresh and, whatever its age, never at or past the token's expiry.
fn usable(entry: &Entry, now_ms: i64) -> Option<Option<Actor>> {
    let (actor, at, expires) = entry;
    if now_ms.saturating_sub(*at) >= CACHE_TTL_MS || now_ms < *at {
        return None;
    }
    Some(if expires.is_some_and(|e| now_ms >= e) { None } else { actor.clone() })
}

impl TokenCache {
    /// The cached answer for a token at `now_ms`, if fresh (never blocks).
    pub fn cached(&self, token: &str, now_ms: i64) -> Option<Option<Actor>> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
            return Some(None);
        }
        let hash = token_hash(token);
        let map = self.entries.lock().ok()?;
        usable(map.get(&hash)?, now_ms)
    }

    /// Resolves a presented token at `now_ms` (blocking: may read the store).
    pub fn resolve(&self, store: &Store, token: &str, now_ms: i64) -> Result<Option<Actor>, StoreError> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
            return Ok(None);
        }
        let hash = token_hash(token);
        if let Ok(map) = self.entries.lock()
            && let Some(answer) = map.get(&hash).and_then(|e| usable(e, now_ms))
        {
            return Ok(answer);
        }
        let row = store.read(|r| r.token(&hash))?;
        let actor = row.as_ref().filter(|r| r.active_at(now_ms)).and_then(actor_of);
        let expires = row.as_ref().and_then(|r| r.expires);
        if let Ok(mut map) = self.entries.lock() {
            if map.len() > 10_000 {
                map.clear();
            }
            map.insert(hash, (actor.clone(), now_ms, expires));
        }
        Ok(actor)
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

    #[test]
    fn a_cached_token_is_refused_from_its_expiry_on() {
        let actor = Some(Actor::Bootstrap { name: "x".into() });
        let entry = (actor.clone(), 500, Some(1_000));
        assert_eq!(usable(&entry, 999), Some(actor));
        assert_eq!(usable(&entry, 1_000), Some(None));
    }

    #[test]
    fn a_cached_answer_is_fresh_for_five_seconds() {
        let actor = Some(Actor::Bootstrap { name: "x".into() });
        let entry = (actor.clone(), 10_000, None);
        assert_eq!(usable(&entry, 14_999), Some(actor));
        assert_eq!(usable(&entry, 15_000), None, "looked up again");
        assert_eq!(usable(&entry, 9_000), None, "a clock that went back looks up again");
    }
}
