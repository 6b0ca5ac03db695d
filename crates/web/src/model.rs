//! The patient page model lives in the pure crate `musubi-record` ([`musubi_record::page`]);
//! re-exported here under its old path for the pages that still name it so.

pub use musubi_record::page::*;

/// The kanji and kana names of a Patient (or Practitioner), read by
/// [`musubi_record::identity::names`]: by representation, never by position. The kanji slot
/// holds the name shown (the kanji name, else the romaji name).
pub fn patient_names(p: &serde_json::Value) -> (String, String) {
    let n = musubi_record::identity::names(p);
    (n.kanji.or(n.romaji).unwrap_or_default(), n.kana.unwrap_or_default())
}
