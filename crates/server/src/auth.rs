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

use musubi_gate::Actor;
pub use musubi_service::tokens::{TOKEN_PREFIX, issue, issue_expiring, new_token, parse_lifetime, rotate, token_hash};
use musubi_service::{ApiError, Service};

/// How long a looked-up token is trusted without asking the service again.
const CACHE_TTL_MS: i64 = 5_000;

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
    pub fn resolve(&self, svc: &Service, token: &str, now_ms: i64) -> Result<Option<Actor>, ApiError> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
            return Ok(None);
        }
        let hash = token_hash(token);
        if let Ok(map) = self.entries.lock()
            && let Some(answer) = map.get(&hash).and_then(|e| usable(e, now_ms))
        {
            return Ok(answer);
        }
        let (actor, expires) = svc.token_actor(&hash, now_ms)?;
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
