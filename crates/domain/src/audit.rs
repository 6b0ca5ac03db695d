//! The audit record and the rule of its hash chain.
//!
//! Every access to patient data, allowed or denied, appends one [`AuditRecord`]. Records form a
//! chain: each stored record carries the SHA-256 of the previous record's hash, its own sequence
//! number and its canonical JSON ([`chain_hash`]). Changing, deleting or reordering a stored
//! record breaks the chain, and `musubi audit verify` finds where.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The longest agent name (a login name, a token name) kept in a record, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// The longest free text (a failure reason, a query, an emergency reason) kept, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// The longest entity reference kept, in characters.
const MAX_ENTITY_CHARS: usize = 256;

/// `s` cut to at most `max` characters (a cut string ends in `…`, counted in `max`).
pub fn cap_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The hash that precedes the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What was done (FHIR AuditEvent.action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditAction {
    /// C: create.
    #[serde(rename = "C")]
    Create,
    /// R: read, vread, search.
    #[serde(rename = "R")]
    Read,
    /// U: update.
    #[serde(rename = "U")]
    Update,
    /// D: delete.
    #[serde(rename = "D")]
    Delete,
    /// E: execute (transactions, batch, operations, login).
    #[serde(rename = "E")]
    Execute,
}

impl AuditAction {
    /// The FHIR code (C, R, U, D, E).
    pub fn code(self) -> &'static str {
        match self {
            AuditAction::Create => "C",
            AuditAction::Read => "R",
            AuditAction::Update => "U",
            AuditAction::Delete => "D",
            AuditAction::Execute => "E",
        }
    }
}

/// How it ended (FHIR AuditEvent.outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditOutcome {
    /// 0: success.
    #[serde(rename = "0")]
    Success,
    /// 4: minor failure (bad request, not found).
    #[serde(rename = "4")]
    MinorFailure,
    /// 8: serious failure (denied by the gate, authentication failed).
    #[serde(rename = "8")]
    SeriousFailure,
    /// 12: major failure (server error).
    #[serde(rename = "12")]
    MajorFailure,
}

impl AuditOutcome {
    /// The FHIR code (0, 4, 8, 12).
    pub fn code(self) -> &'static str {
        match self {
            AuditOutcome::Success => "0",
            AuditOutcome::MinorFailure => "4",
            AuditOutcome::SeriousFailure => "8",
            AuditOutcome::MajorFailure => "12",
        }
    }
}

/// Why the data was accessed (shown to the patient as 通常 / 緊急).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "reason", rename_all = "kebab-case")]
pub enum AuditPurpose {
    /// Normal care (TREAT).
    Treatment,
    /// Emergency access (break-glass, ETREAT) with the stated reason.
    Emergency(String),
    /// Operations of the network (HOPERAT): administrators, collectors.
    Operations,
    /// The patient or a proxy looking at their own data (PATRQT).
    PatientRequest,
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAgent {
    /// `system` (a facility's system token), `admin`, `user`, `patient`, `proxy`, `operator-cli`.
    pub kind: String,
    /// A stable name: the token name, the login name.
    pub name: String,
    /// The facility the agent acted for, if any.
    pub facility: Option<String>,
    /// The profession, for users.
    pub profession: Option<String>,
    /// The client's network address, if known.
    pub address: Option<String>,
}

/// One audit record, as the gate writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When (epoch milliseconds).
    pub recorded: i64,
    /// C, R, U, D or E.
    pub action: AuditAction,
    /// The FHIR interaction or operation: read, vread, search-type, create, update, delete,
    /// history, transaction, batch, submit-bundle, delete-bundle, capabilities, import, …
    pub subtype: String,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Why it failed, when it did (for people).
    pub outcome_text: Option<String>,
    /// Who.
    pub agent: AuditAgent,
    /// Why.
    pub purpose: AuditPurpose,
    /// The patient (logical Patient id) whose data it was, if one.
    pub patient: Option<String>,
    /// The person (MPI) the patient belongs to, if linked.
    pub person: Option<String>,
    /// What: `Type/id` (or `Type/id/_history/v`) of each resource touched.
    pub entities: Vec<String>,
    /// The query, for searches.
    pub query: Option<String>,
    /// The server that recorded it.
    pub source: String,
}

impl AuditRecord {
    /// The record with every client-supplied string cut to its bound (login names to
    /// [`MAX_NAME_CHARS`], texts to [`MAX_TEXT_CHARS`]): whatever a caller sends, a record stays
    /// small. Borrowed when nothing needed cutting (the common case costs no copy).
    pub fn capped(&self) -> std::borrow::Cow<'_, AuditRecord> {
        let long = |s: &str, max: usize| s.len() > max; // bytes >= chars: a cheap first test
        let needs = long(&self.agent.name, MAX_NAME_CHARS)
            || self.agent.kind.len() > MAX_NAME_CHARS
            || self.agent.facility.as_deref().is_some_and(|s| long(s, MAX_NAME_CHARS))
            || self.agent.profession.as_deref().is_some_and(|s| long(s, MAX_NAME_CHARS))
            || self.agent.address.as_deref().is_some_and(|s| long(s, MAX_NAME_CHARS))
            || self.subtype.len() > MAX_NAME_CHARS
            || self.outcome_text.as_deref().is_some_and(|s| long(s, MAX_TEXT_CHARS))
            || self.query.as_deref().is_some_and(|s| long(s, MAX_TEXT_CHARS))
            || matches!(&self.purpose, AuditPurpose::Emergency(r) if long(r, MAX_TEXT_CHARS))
            || self.patient.as_deref().is_some_and(|s| long(s, MAX_ENTITY_CHARS))
            || self.person.as_deref().is_some_and(|s| long(s, MAX_ENTITY_CHARS))
            || self.entities.iter().any(|e| long(e, MAX_ENTITY_CHARS));
        if !needs {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut r = self.clone();
        let cap_opt = |s: &mut Option<String>, max: usize| {
            if let Some(v) = s.as_mut() {
                *v = cap_chars(v, max);
            }
        };
        r.agent.name = cap_chars(&r.agent.name, MAX_NAME_CHARS);
        r.agent.kind = cap_chars(&r.agent.kind, MAX_NAME_CHARS);
        cap_opt(&mut r.agent.facility, MAX_NAME_CHARS);
        cap_opt(&mut r.agent.profession, MAX_NAME_CHARS);
        cap_opt(&mut r.agent.address, MAX_NAME_CHARS);
        r.subtype = cap_chars(&r.subtype, MAX_NAME_CHARS);
        cap_opt(&mut r.outcome_text, MAX_TEXT_CHARS);
        cap_opt(&mut r.query, MAX_TEXT_CHARS);
        cap_opt(&mut r.patient, MAX_ENTITY_CHARS);
        cap_opt(&mut r.person, MAX_ENTITY_CHARS);
        if let AuditPurpose::Emergency(reason) = &mut r.purpose {
            *reason = cap_chars(reason, MAX_TEXT_CHARS);
        }
        for e in &mut r.entities {
            *e = cap_chars(e, MAX_ENTITY_CHARS);
        }
        std::borrow::Cow::Owned(r)
    }

    /// The canonical JSON the hash covers: serde's field order, no white space.
    pub fn canonical_json(&self) -> String {
        // Serializing a plain struct of strings, numbers and vectors cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The hash of the record at `seq` whose canonical JSON is `canonical`, following `prev_hash`.
pub fn chain_hash(prev_hash: &str, seq: i64, canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    hex_lower(&h.finalize())
}

fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// A stored record as read back for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAudit {
    /// Sequence number (1, 2, 3, …).
    pub seq: i64,
    /// The canonical JSON as stored.
    pub record: String,
    /// The stored previous hash.
    pub prev_hash: String,
    /// The stored hash.
    pub hash: String,
}

/// Where a chain stopped holding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The sequence number of the first record that does not verify.
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

/// Verifies records in sequence order, continuing from `(expected_seq, prev_hash)`.
/// Returns the state after the last record, or the first break.
///
/// The sequence numbers and links are checked in order (string compares); the hashes, which
/// are the cost, are recomputed on every core: each record's hash depends only on its own
/// stored previous hash, and the in-order link check ties the stored hashes together, so the
/// result is the same as a sequential walk.
pub fn verify_chain<'a>(
    records: impl IntoIterator<Item = &'a StoredAudit>,
    expected_seq: i64,
    prev_hash: String,
) -> Result<(i64, String), ChainBreak> {
    let records: Vec<&StoredAudit> = records.into_iter().collect();
    // The first record whose hash does not match, by position.
    let bad_hash = first_bad_hash(&records);
    let mut expected = expected_seq;
    let mut prev: &str = &prev_hash;
    for (i, r) in records.iter().enumerate() {
        if r.seq != expected {
            let reason = if r.seq > expected {
                format!("records {expected}..{} are missing (deleted)", r.seq - 1)
            } else {
                format!("sequence number {} appears out of order (expected {expected})", r.seq)
            };
            return Err(ChainBreak { seq: r.seq, reason });
        }
        if r.prev_hash != prev {
            return Err(ChainBreak {
                seq: r.seq,
                reason: "previous-hash link does not match the preceding record".into(),
            });
        }
        if bad_hash == Some(i) {
            return Err(ChainBreak { seq: r.seq, reason: "record content does not match its hash (altered)".into() });
        }
        prev = &r.hash;
        expected += 1;
    }
    Ok((expected, prev.to_owned()))
}

/// The position of the first record whose stored hash is not the hash of its content.
fn first_bad_hash(records: &[&StoredAudit]) -> Option<usize> {
    let ok = |r: &&StoredAudit| chain_hash(&r.prev_hash, r.seq, &r.record) == r.hash;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || records.len() < 4096 {
        return records.iter().position(|r| !ok(r));
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| scope.spawn(move || part.iter().position(|r| !ok(r)).map(|i| n * chunk + i)))
            .collect();
        // A panicking hash thread cannot happen short of a bug; treat it as a break at 0 so
        // the chain never verifies by accident.
        handles.into_iter().filter_map(|h| h.join().unwrap_or(Some(0))).min()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: i64) -> AuditRecord {
        AuditRecord {
            recorded: 1_700_000_000_000 + i,
            action: AuditAction::Read,
            subtype: "read".into(),
            outcome: AuditOutcome::Success,
            outcome_text: None,
            agent: AuditAgent {
                kind: "system".into(),
                name: "emr".into(),
                facility: Some("1318814790".into()),
                profession: None,
                address: None,
            },
            purpose: AuditPurpose::Treatment,
            patient: Some("p1".into()),
            person: None,
            entities: vec![format!("Observation/{i}")],
            query: None,
            source: "test".into(),
        }
    }

    #[test]
    fn client_supplied_strings_are_capped() {
        let r = rec(1);
        assert!(matches!(r.capped(), std::borrow::Cow::Borrowed(_)), "nothing to cut: no copy");
        let mut r = rec(1);
        r.agent.name = "=HYPERLINK(".repeat(1000);
        r.outcome_text = Some("x".repeat(100_000));
        r.purpose = AuditPurpose::Emergency("急".repeat(5000));
        let c = r.capped();
        assert_eq!(c.agent.name.chars().count(), MAX_NAME_CHARS);
        assert!(c.agent.name.ends_with('…'));
        assert_eq!(c.outcome_text.as_deref().unwrap().chars().count(), MAX_TEXT_CHARS);
        assert!(matches!(&c.purpose, AuditPurpose::Emergency(x) if x.chars().count() == MAX_TEXT_CHARS));
        assert_eq!(cap_chars("山田", 64), "山田");
    }

    fn chain(n: i64) -> Vec<StoredAudit> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let record = rec(seq).canonical_json();
                let hash = chain_hash(&prev, seq, &record);
                let s = StoredAudit { seq, record, prev_hash: prev.clone(), hash: hash.clone() };
                prev = hash;
                s
            })
            .collect()
    }

    #[test]
    fn a_long_chain_is_checked_in_parallel_and_breaks_are_still_found_in_order() {
        let c = chain(20_000);
        assert_eq!(verify_chain(&c, 1, GENESIS_HASH.into()).unwrap().0, 20_001);
        let mut c = chain(20_000);
        c[15_000].record = c[15_000].record.replace("Observation", "Condition");
        c[17_000].record = c[17_000].record.replace("Observation", "Condition");
        let e = verify_chain(&c, 1, GENESIS_HASH.into()).unwrap_err();
        assert_eq!(e.seq, 15_001);
        assert!(e.reason.contains("altered"));
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(10);
        let (next, _) = verify_chain(&c, 1, GENESIS_HASH.into()).unwrap();
        assert_eq!(next, 11);
    }

    #[test]
    fn alteration_deletion_and_reordering_are_found() {
        let mut c = chain(10);
        c[4].record = c[4].record.replace("Observation/5", "Observation/6");
        assert_eq!(verify_chain(&c, 1, GENESIS_HASH.into()).unwrap_err().seq, 5);

        let mut c = chain(10);
        c.remove(3);
        let e = verify_chain(&c, 1, GENESIS_HASH.into()).unwrap_err();
        assert_eq!(e.seq, 5);
        assert!(e.reason.contains("missing"));

        let mut c = chain(10);
        c.swap(2, 3);
        assert_eq!(verify_chain(&c, 1, GENESIS_HASH.into()).unwrap_err().seq, 4);

        // Re-hashing an altered record is still found: the next link no longer matches.
        let mut c = chain(10);
        c[4].record = c[4].record.replace("Observation/5", "Observation/6");
        c[4].hash = chain_hash(&c[4].prev_hash, 5, &c[4].record);
        assert_eq!(verify_chain(&c, 1, GENESIS_HASH.into()).unwrap_err().seq, 6);
    }

    #[test]
    fn canonical_json_is_stable() {
        assert_eq!(rec(1).canonical_json(), rec(1).canonical_json());
        let back: AuditRecord = serde_json::from_str(&rec(1).canonical_json()).unwrap();
        assert_eq!(back, rec(1));
    }
}
