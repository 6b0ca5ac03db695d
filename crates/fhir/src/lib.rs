//! FHIR R4 JSON as Musubi understands it.
//!
//! Musubi keeps every resource as the JSON its sender sent (plus the server-assigned `id` and
//! `meta`), parsed once into a [`serde_json::Value`]. This crate knows what Musubi interprets in
//! that JSON and nothing about HTTP or storage:
//!
//! - [`ResourceType`]: the resource types the API serves and their search parameters;
//! - [`datetime`]: FHIR `date`/`dateTime`/`instant` values as millisecond ranges;
//! - [`reference`]: reading and rewriting references (`urn:uuid:` → `Type/id`);
//! - [`index`]: the search-index entries a resource yields;
//! - [`classify`]: the record meta the store and gate need (class, clinical date, flags,
//!   source facility, patient);
//! - [`outcome`]: OperationOutcome bodies.
//!
//! ```
//! use musubi_fhir::{classify, ResourceType};
//! let obs = serde_json::json!({
//!     "resourceType": "Observation", "status": "final",
//!     "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
//!     "subject": {"reference": "Patient/p1"},
//!     "effectiveDateTime": "2024-05-01T09:00:00+09:00"
//! });
//! let meta = classify::classify(ResourceType::Observation, &obs);
//! assert_eq!(meta.patient.as_deref(), Some("p1"));
//! ```

#![deny(missing_docs)]

pub mod classify;
pub mod datetime;
pub mod index;
pub mod json;
pub mod outcome;
pub mod reference;
mod types;

pub use types::{Interaction, ParamKind, ResourceType, SearchParamDef};

/// The SHA-256 of bytes, lower-case hex. Used for content hashes (idempotent re-submission).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Whether `id` is a valid FHIR logical id: 1–64 of `A-Z a-z 0-9 - .`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}
