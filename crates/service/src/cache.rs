//! Parsed resource versions kept in memory, so a clinician's whole-record pages (the patient
//! page, the emergency summary and its PDF, a lab item's trend) do not load and parse every
//! record of a long history on every request.
//!
//! Only the *content* is cached, never a decision: each request still reads the person's
//! current rows and asks the gate about every one of them; the cache only answers "what does
//! this stored version say", which never changes (see [`VersionKey`]).
//!
//! Bounded by an estimate of the memory the parsed values take (the JSON text's length times
//! [`PARSED_BYTES_PER_TEXT_BYTE`]); least recently and least frequently used entries go first.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use musubi_fhir::ResourceType;
use musubi_record::Derived;
use musubi_store::PersonRecordRow;
use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};
use serde_json::Value;

/// How much larger a parsed `serde_json::Value` is than its JSON text (measured on JP-CLINS
/// resources with `preserve_order`: about 3–5×; the high end, so the bound holds).
pub const PARSED_BYTES_PER_TEXT_BYTE: u64 = 5;

/// The default bound of the cache: 256 MiB of parsed resources (about 50 MB of JSON, some
/// 50,000 records: the long histories of the patients being looked at this hour).
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Identity of one stored version. Versions of a resource are never renumbered (a purge
/// leaves a deletion behind and a later write continues after it), so type, id and version
/// name one content for good; the write time is kept as a second guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionKey {
    rtype: ResourceType,
    id: String,
    version: i64,
    last_updated: i64,
}

// Hashed as a `VersionRef` is, so a lookup can borrow the row's id instead of copying it.
impl Hash for VersionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        VersionRef::of_key(self).hash(state);
    }
}

/// A borrowed [`VersionKey`], for lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct VersionRef<'a> {
    rtype: ResourceType,
    id: &'a str,
    version: i64,
    last_updated: i64,
}

impl<'a> VersionRef<'a> {
    /// The version of a person's record row.
    pub(crate) fn of(row: &'a PersonRecordRow) -> VersionRef<'a> {
        VersionRef { rtype: row.rtype, id: &row.id, version: row.version, last_updated: row.last_updated }
    }

    fn of_key(k: &'a VersionKey) -> VersionRef<'a> {
        VersionRef { rtype: k.rtype, id: &k.id, version: k.version, last_updated: k.last_updated }
    }

    /// The owned key.
    pub(crate) fn to_key(self) -> VersionKey {
        VersionKey { rtype: self.rtype, id: self.id.to_owned(), version: self.version, last_updated: self.last_updated }
    }
}

impl Equivalent<VersionKey> for VersionRef<'_> {
    fn equivalent(&self, key: &VersionKey) -> bool {
        *self == VersionRef::of_key(key)
    }
}

/// A parsed version, what readers derived from it, and its weight.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) value: Arc<Value>,
    pub(crate) derived: Derived,
    weight: u64,
}

impl Parsed {
    /// Wraps a parsed value whose JSON text was `text_len` bytes long.
    pub(crate) fn new(value: Value, text_len: usize) -> Parsed {
        Parsed {
            value: Arc::new(value),
            derived: Derived::default(),
            weight: (text_len as u64).max(1) * PARSED_BYTES_PER_TEXT_BYTE,
        }
    }
}

#[derive(Debug, Clone)]
struct ByWeight;

impl Weighter<VersionKey, Parsed> for ByWeight {
    fn weight(&self, _key: &VersionKey, val: &Parsed) -> u64 {
        val.weight
    }
}

/// The cache, shared by every clone of the service.
#[derive(Clone)]
pub(crate) struct ResourceCache {
    inner: Option<Arc<Cache<VersionKey, Parsed, ByWeight>>>,
}

impl std::fmt::Debug for ResourceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Some(c) => write!(f, "ResourceCache({} entries, {} bytes)", c.len(), c.weight()),
            None => write!(f, "ResourceCache(off)"),
        }
    }
}

impl ResourceCache {
    /// A cache bounded by `bytes` of parsed values; 0 turns caching off.
    pub(crate) fn new(bytes: u64) -> ResourceCache {
        if bytes == 0 {
            return ResourceCache { inner: None };
        }
        // An average record parses to ~5 KB: size the table for that.
        let items = usize::try_from(bytes / 5_000).unwrap_or(usize::MAX).max(64);
        ResourceCache { inner: Some(Arc::new(Cache::with_weighter(items, bytes, ByWeight))) }
    }

    /// The parsed value of a version, if cached.
    pub(crate) fn get(&self, key: &VersionRef<'_>) -> Option<Parsed> {
        self.inner.as_ref()?.get(key)
    }

    /// Keeps a parsed version.
    pub(crate) fn insert(&self, key: VersionKey, parsed: Parsed) {
        if let Some(c) = &self.inner {
            c.insert(key, parsed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, version: i64, at: i64) -> VersionKey {
        VersionKey { rtype: ResourceType::Observation, id: id.into(), version, last_updated: at }
    }

    #[test]
    fn a_version_is_found_only_under_its_whole_identity() {
        let c = ResourceCache::new(1 << 20);
        c.insert(key("a", 1, 10), Parsed::new(serde_json::json!({"id": "a"}), 10));
        let k = key("a", 1, 10);
        assert_eq!(c.get(&VersionRef::of_key(&k)).map(|v| v.value["id"].clone()), Some("a".into()));
        for other in [key("a", 1, 11), key("a", 2, 10), key("b", 1, 10)] {
            assert!(c.get(&VersionRef::of_key(&other)).is_none(), "{other:?}");
        }
    }

    #[test]
    fn the_bound_holds() {
        let c = ResourceCache::new(100 * PARSED_BYTES_PER_TEXT_BYTE);
        for i in 0..1000 {
            c.insert(key(&i.to_string(), 1, 1), Parsed::new(Value::Null, 10));
        }
        let inner = c.inner.as_ref().map(|c| c.weight()).unwrap_or(0);
        assert!(inner <= 100 * PARSED_BYTES_PER_TEXT_BYTE, "{inner}");
        assert!(c.inner.as_ref().is_some_and(|c| !c.is_empty()));
    }

    #[test]
    fn zero_turns_it_off() {
        let c = ResourceCache::new(0);
        c.insert(key("a", 1, 1), Parsed::new(Value::Null, 10));
        assert!(c.get(&VersionRef::of_key(&key("a", 1, 1))).is_none());
    }
}
