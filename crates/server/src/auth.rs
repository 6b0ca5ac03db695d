//! Bearer tokens for systems: issued by the operator (`musubi token issue`), shown once, stored
//! only as a SHA-256 hash (tokens are 256 random bits, so a fast hash is enough; passwords,
//! which are guessable, get a slow hash elsewhere). Lookups are cached for a few seconds so a
//! revocation takes effect quickly without a database read per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use musubi_gate::Actor;
use musubi_store::{Store, StoreError, TokenRow};
use sha2::{Digest, Sha256};

/// The prefix of every Musubi token (so they are recognisable in a leaked file or log).
pub const TOKEN_PREFIX: &str = "msb_";

/// How long a looked-up token is trusted without asking the store again.
const CACHE_TTL: Duration = Duration::from_secs(5);

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

/// Issues a token and stores its hash; returns the token (shown once).
pub fn issue(
    store: &Store,
    kind: &str,
    facility: Option<&musubi_domain::FacilityCode>,
    name: &str,
) -> Result<String, StoreError> {
    let token = new_token().map_err(|e| StoreError::Backend { op: "random", message: e.to_string() })?;
    store.insert_token(TokenRow {
        token_hash: token_hash(&token),
        kind: kind.to_owned(),
        facility: facility.map(|f| f.to_string()),
        name: name.to_owned(),
        created: musubi_fhir::datetime::now_ms(),
        revoked: false,
    })?;
    Ok(token)
}

/// The actor a token row stands for.
pub fn actor_of(row: &TokenRow) -> Option<Actor> {
    if row.revoked {
        return None;
    }
    match row.kind.as_str() {
        "admin" => Some(Actor::Admin { name: row.name.clone() }),
        "system" => Some(Actor::System { name: row.name.clone(), facility: row.facility.as_deref()?.parse().ok()? }),
        _ => None,
    }
}

/// Token → actor, with a short cache.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Option<Actor>, Instant)>>,
}

impl TokenCache {
    /// The cached answer for a token, if fresh (never blocks).
    pub fn cached(&self, token: &str) -> Option<Option<Actor>> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
            return Some(None);
        }
        let hash = token_hash(token);
        let map = self.entries.lock().ok()?;
        let (actor, at) = map.get(&hash)?;
        (at.elapsed() < CACHE_TTL).then(|| actor.clone())
    }

    /// Resolves a presented token (blocking: may read the store).
    pub fn resolve(&self, store: &Store, token: &str) -> Result<Option<Actor>, StoreError> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
            return Ok(None);
        }
        let hash = token_hash(token);
        if let Ok(map) = self.entries.lock()
            && let Some((actor, at)) = map.get(&hash)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(actor.clone());
        }
        let row = store.read(|r| r.token(&hash))?;
        let actor = row.as_ref().and_then(actor_of);
        if let Ok(mut map) = self.entries.lock() {
            if map.len() > 10_000 {
                map.clear();
            }
            map.insert(hash, (actor.clone(), Instant::now()));
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
}
