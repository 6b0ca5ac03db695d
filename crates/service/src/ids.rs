//! Unguessable ids for collected resources.
//!
//! The collectors name what they map deterministically — a UUID v5 of public inputs (the
//! facility code and its patient number, a message's keys) — so that a rerun writes the same
//! resources again. Anyone can compute such an id, and an id that can be computed can be
//! written against (a resource of another facility's patient) or probed. With a network secret
//! the service replaces each of them by a keyed hash of it: HMAC-SHA256 under the key, the first
//! 16 bytes as a UUID (version 8). The mapping is still deterministic (a rerun gives the same
//! ids), but only a holder of the key can compute it.
//!
//! The key is a file of 64 hex characters, created (mode 0600) on first start beside the data
//! directory — never in the database, so a copy of the database does not carry it.
//!
//! **Existing stores.** A resource already stored under its old id keeps it while it is there:
//! before a file is written, every old id it names (resource ids, references, withdrawals) is
//! looked up, and only those not stored yet are replaced, so a collection never splits a
//! resource in two. `musubi ids rekey` ([`crate::Service::rekey_ids`], run while the servers
//! are stopped) then moves every collected resource still stored under a deterministic id to
//! its keyed id, in one transaction, with every version's JSON (its own `id` and each
//! reference to a moved resource, in every stored resource), the search indexes and every
//! column that names a patient (`musubi_store::rekey` lists them). The audit trail is not
//! rewritten (it is hash-chained): `id_rekeyed` keeps each move, and the audit queries and the
//! patient's access history follow it. A second run finds nothing to move. Afterwards the
//! deterministic ids are stored nowhere, so a collection of the same input maps each of them
//! to the same keyed id and changes nothing. `musubi serve` warns at start while deterministic
//! ids remain.
//!
//! The rewrite touches only the resource's own `id` and `reference` strings (`Type/id`,
//! `Type/id/_history/n`, or an absolute URL ending in one of those); never identifiers,
//! narratives or other text, even when a value happens to equal an old id, and never
//! `urn:uuid:` references (the collectors write none, and the store resolves them on write).
//! A `Bundle` is a document kept as it was sent (a referral letter may be signed): only its own
//! id would move, its references point into the document. Parsed versions are cached by
//! version identity (type, id, version, write time), so entries of the old ids are simply never
//! asked for again; the rekey runs offline anyway, and a restart empties the cache.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac};
use musubi_fhir::ResourceType;
use serde_json::Value;

use crate::collect::SourceFile;

/// The default file name of the key, in the parent of the data directory.
pub const KEY_FILE: &str = "musubi-id.key";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The network's secret for collected ids. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct IdKey {
    key: [u8; 32],
}

impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdKey(…)")
    }
}

/// Why the key could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum IdKeyError {
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("{path}: not a key of 64 hex characters")]
    Malformed {
        /// Which file.
        path: PathBuf,
    },
    /// No randomness.
    #[error("random: {0}")]
    Random(String),
}

impl IdKey {
    /// A key from its bytes (tests, or a key kept elsewhere).
    pub fn from_bytes(key: [u8; 32]) -> IdKey {
        IdKey { key }
    }

    /// Where the key lives by default: beside the data directory (in its parent), so that a
    /// copy of the data directory alone does not carry it.
    pub fn default_path(data_dir: &Path) -> PathBuf {
        let abs = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        abs.parent().map(|p| p.join(KEY_FILE)).unwrap_or_else(|| data_dir.join(KEY_FILE))
    }

    /// Reads the key at `path`, or creates it (32 random bytes, mode 0600) if there is none.
    pub fn load_or_create(path: &Path) -> Result<IdKey, IdKeyError> {
        let io = |source| IdKeyError::Io { path: path.to_owned(), source };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(|_| IdKeyError::Malformed { path: path.to_owned() })?;
                let key: [u8; 32] = bytes.try_into().map_err(|_| IdKeyError::Malformed { path: path.to_owned() })?;
                Ok(IdKey { key })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| IdKeyError::Random(e.to_string()))?;
                // Written whole under a temporary name, then linked into place: a second
                // process starting at the same moment either wins or reads the complete key.
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let written = (|| {
                    let mut f = opts.open(&tmp)?;
                    f.write_all(hex::encode(key).as_bytes())?;
                    f.sync_all()?;
                    std::fs::hard_link(&tmp, path)
                })();
                let _ = std::fs::remove_file(&tmp);
                match written {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "created the key for collected resource ids");
                        Ok(IdKey { key })
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => IdKey::load_or_create(path),
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The keyed id of a deterministic (old) id.
    pub fn id(&self, old: &str) -> String {
        // HMAC takes keys of any length: this cannot fail.
        let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(&self.key) else { return old.to_owned() };
        mac.update(b"musubi-collected-id\n");
        mac.update(old.as_bytes());
        let out = mac.finalize().into_bytes();
        let mut b = [0u8; 16];
        b.copy_from_slice(&out[..16]);
        // UUID version 8 (custom), RFC 9562 variant.
        b[6] = (b[6] & 0x0f) | 0x80;
        b[8] = (b[8] & 0x3f) | 0x80;
        uuid::Uuid::from_bytes(b).to_string()
    }
}

/// Whether an id is one the collectors compute (a UUID v5).
fn deterministic(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 5)
}

/// `Type/id` of a deterministic id, from a reference string.
fn reference_target(s: &str) -> Option<(ResourceType, &str)> {
    let (t, id) = s.split_once('/')?;
    let rt: ResourceType = t.parse().ok()?;
    deterministic(id).then_some((rt, id))
}

fn references<'a>(v: &'a Value, out: &mut Vec<(ResourceType, &'a str)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("reference", Value::String(s)) => out.extend(reference_target(s)),
                    _ => references(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

fn rewrite_references(v: &mut Value, map: &HashMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match (k.as_str(), x) {
                    ("reference", Value::String(s)) => {
                        if let Some((t, id)) = s.split_once('/')
                            && let Some(new) = map.get(id)
                        {
                            *s = format!("{t}/{new}");
                        }
                    }
                    (_, x) => rewrite_references(x, map),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_references(x, map)),
        _ => {}
    }
}

/// Where the id sits in a reference string that names a resource here (`Type/id`,
/// `Type/id/_history/n`, or an absolute URL ending in one of those): the type and the byte range
/// of the id. Contained (`#x`) and `urn:` references give None.
fn reference_id(s: &str) -> Option<(ResourceType, std::ops::Range<usize>)> {
    if s.starts_with('#') || s.starts_with("urn:") {
        return None;
    }
    let end = s.find("/_history/").unwrap_or(s.len());
    let base = s.get(..end)?;
    let slash = base.rfind('/')?;
    let t = base.get(..slash)?.rsplit('/').next()?;
    let rtype: ResourceType = t.parse().ok()?;
    let id = base.get(slash + 1..)?;
    musubi_fhir::is_valid_id(id).then_some((rtype, slash + 1..end))
}

/// Rewrites a stored resource for a rekey: its own `id` when `moved` gives `rtype` and it a new
/// one, and every `reference` string whose target `moved` maps, anywhere in it (contained
/// resources and extensions included). Nothing else: identifiers, text and `urn:` references
/// stay. A `Bundle` keeps its content (see the module documentation). Returns how many values
/// changed.
pub fn rekey_resource(
    rtype: ResourceType,
    v: &mut Value,
    moved: &dyn Fn(ResourceType, &str) -> Option<String>,
) -> usize {
    fn walk(v: &mut Value, moved: &dyn Fn(ResourceType, &str) -> Option<String>, n: &mut usize) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match (k.as_str(), x) {
                        ("reference", Value::String(s)) => {
                            if let Some((t, range)) = reference_id(s)
                                && let Some(id) = s.get(range.clone())
                                && let Some(new) = moved(t, id)
                            {
                                s.replace_range(range, &new);
                                *n += 1;
                            }
                        }
                        (_, x) => walk(x, moved, n),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, moved, n)),
            _ => {}
        }
    }
    let mut n = 0;
    if let Some(Value::String(id)) = v.get_mut("id")
        && let Some(new) = moved(rtype, id)
    {
        *id = new;
        n += 1;
    }
    if rtype != ResourceType::Bundle {
        walk(v, moved, &mut n);
    }
    n
}

/// Whether `text` holds something shaped like a UUID of version 5 (a quick look before parsing
/// a stored version's JSON).
fn mentions_deterministic(text: &str) -> bool {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(p) = text.get(from..).and_then(|t| t.find("-5")) {
        let dash = from + p;
        from = dash + 1;
        // The version digit is the 15th character: the dash before it is the 14th.
        if let Some(start) = dash.checked_sub(13)
            && let Some(cand) = b.get(start..start + 36)
            && let Ok(u) = uuid::Uuid::try_parse_ascii(cand)
            && u.get_version_num() == 5
        {
            return true;
        }
    }
    false
}

/// The rules of a rekey under the network's key (see [`musubi_store::rekey`]).
struct Rekeyer {
    key: std::sync::Arc<IdKey>,
    audit: musubi_domain::audit::AuditRecord,
    progress: Box<dyn Fn(u64, u64) + Send>,
}

impl musubi_store::rekey::Rekeying for Rekeyer {
    fn new_id(&self, id: &str) -> Option<String> {
        deterministic(id).then(|| self.key.id(id))
    }

    fn rewrite(
        &self,
        rtype: ResourceType,
        content: &str,
        moved: &dyn Fn(ResourceType, &str) -> Option<String>,
    ) -> Result<Option<musubi_store::rekey::Rewritten>, String> {
        if !mentions_deterministic(content) {
            return Ok(None);
        }
        let mut v: Value = serde_json::from_str(content).map_err(|e| format!("stored JSON: {e}"))?;
        if rekey_resource(rtype, &mut v, moved) == 0 {
            return Ok(None);
        }
        let content = v.to_string();
        let meta = |k: &str| v.get("meta").and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or("");
        let content_hash = crate::prepare::content_hash(&content, meta("versionId"), meta("lastUpdated"));
        Ok(Some(musubi_store::rekey::Rewritten { content, content_hash }))
    }

    fn audit(&self, report: &musubi_store::rekey::RekeyReport) -> musubi_domain::audit::AuditRecord {
        let mut a = self.audit.clone();
        a.recorded = musubi_fhir::datetime::now_ms();
        a.outcome_text = Some(format!(
            "{} collected resources moved from deterministic to keyed ids; {} of {} stored versions rewritten",
            report.moved, report.versions_rewritten, report.versions_seen
        ));
        a
    }

    fn progress(&self, done: u64, total: u64) {
        (self.progress)(done, total);
    }
}

/// Every deterministic (type, id) a file names: its resources, their references, withdrawals
/// and the patients of facility-use facts.
fn named(file: &SourceFile) -> Vec<(ResourceType, String)> {
    let mut out: Vec<(ResourceType, String)> = Vec::new();
    for u in &file.units {
        for r in &u.resources {
            if let Some(t) = r.resource.get("resourceType").and_then(Value::as_str).and_then(|t| t.parse().ok())
                && deterministic(&r.id)
            {
                out.push((t, r.id.clone()));
            }
            let mut refs = Vec::new();
            references(&r.resource, &mut refs);
            out.extend(refs.into_iter().map(|(t, id)| (t, id.to_owned())));
        }
        out.extend(u.retract.iter().filter(|(_, id)| deterministic(id)).cloned());
        if let Some(fu) = &u.facility_use
            && deterministic(&fu.patient_id)
        {
            out.push((ResourceType::Patient, fu.patient_id.clone()));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Replaces the deterministic ids a file names by keyed ones, except those already stored
/// (`stored`: the old ids that exist, of any state).
pub(crate) fn key_file(key: &IdKey, mut file: SourceFile, stored: &HashSet<(ResourceType, String)>) -> SourceFile {
    let map: HashMap<String, String> =
        named(&file).into_iter().filter(|k| !stored.contains(k)).map(|(_, id)| (id.clone(), key.id(&id))).collect();
    if map.is_empty() {
        return file;
    }
    for u in &mut file.units {
        for r in &mut u.resources {
            if let Some(new) = map.get(&r.id) {
                r.id = new.clone();
                if let Some(obj) = r.resource.as_object_mut() {
                    obj.insert("id".into(), Value::String(new.clone()));
                }
            }
            rewrite_references(&mut r.resource, &map);
        }
        for (_, id) in &mut u.retract {
            if let Some(new) = map.get(id.as_str()) {
                *id = new.clone();
            }
        }
        if let Some(fu) = &mut u.facility_use
            && let Some(new) = map.get(&fu.patient_id)
        {
            fu.patient_id = new.clone();
        }
    }
    file
}

impl crate::Service {
    /// Uses `key` for the ids of collected resources (see the module documentation).
    pub fn with_id_key(mut self, key: IdKey) -> crate::Service {
        self.id_key = Some(std::sync::Arc::new(key));
        self
    }

    /// Moves every collected resource stored under a deterministic id to its keyed id, with
    /// everything that names it, in one transaction, and records it in the audit log (see the
    /// module documentation). For the operator, with the servers stopped. `progress` hears
    /// (versions looked at, versions stored).
    pub fn rekey_ids(
        &self,
        ctx: &crate::Ctx,
        progress: impl Fn(u64, u64) + Send + 'static,
    ) -> Result<musubi_store::rekey::RekeyReport, crate::ApiError> {
        crate::people::require_privileged(ctx)?;
        let Some(key) = self.id_key.clone() else {
            return Err(crate::ApiError::new(
                crate::ErrorKind::BadRequest,
                "ID の付け替えには収集リソース用の鍵（--id-key）が必要です",
            ));
        };
        let audit = self.audit_record(
            ctx,
            musubi_domain::audit::AuditAction::Execute,
            "ids-rekey",
            musubi_domain::audit::AuditOutcome::Success,
        );
        let report =
            self.store.rekey(Box::new(Rekeyer { key, audit, progress: Box::new(progress) })).map_err(|e| match e {
                musubi_store::StoreError::Constraint(m) => crate::ApiError::new(
                    crate::ErrorKind::Conflict,
                    format!("ID の付け替えを中止しました（保存内容は変わっていません）: {m}"),
                ),
                other => crate::ApiError::internal(format!("the rekey failed and changed nothing: {other}")),
            })?;
        // The index was built from the Patients under their old ids.
        self.mpi.forget();
        Ok(report)
    }

    /// A collected file with keyed ids, if the service has a key. Old ids already stored stay;
    /// if the store cannot say which are, the file keeps its old ids (a duplicate of stored
    /// data would be worse than a guessable id) and the failure is logged.
    pub(crate) fn keyed_ids(&self, file: SourceFile) -> SourceFile {
        let Some(key) = self.id_key.clone() else { return file };
        let names = named(&file);
        if names.is_empty() {
            return file;
        }
        match self.store.read(|r| r.collect_currents(&names)) {
            Ok(current) => {
                let stored: HashSet<(ResourceType, String)> = current.into_iter().map(|c| (c.rtype, c.id)).collect();
                key_file(&key, file, &stored)
            }
            Err(e) => {
                tracing::error!(error = %e, path = %file.path, "cannot look up stored ids; this file keeps its deterministic ids");
                file
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{SourceResource, SourceUnit};
    use musubi_store::collect::SourceKind;
    use serde_json::json;

    const PATIENT: &str = "2f1f7d4c-6a1e-5b0e-9a57-3d9a3c8e1b10";
    const OBS: &str = "8c0d1f0e-2b3a-5c4d-8e5f-6a7b8c9d0e1f";

    fn file() -> SourceFile {
        SourceFile {
            facility: "1311234567".into(),
            kind: SourceKind::Ssmix2,
            path: "x".into(),
            size: 0,
            mtime: 0,
            sha256: String::new(),
            seen_before: false,
            blob: None,
            units: vec![SourceUnit {
                source_key: "k".into(),
                occurred_at: 0,
                resources: vec![
                    SourceResource {
                        id: PATIENT.into(),
                        key: "p".into(),
                        line: None,
                        segment: None,
                        resource: json!({"resourceType": "Patient", "id": PATIENT}),
                    },
                    SourceResource {
                        id: OBS.into(),
                        key: "o".into(),
                        line: None,
                        segment: None,
                        resource: json!({"resourceType": "Observation", "id": OBS,
                            "subject": {"reference": format!("Patient/{PATIENT}")},
                            "hasMember": [{"reference": "Observation/not-a-uuid"}]}),
                    },
                ],
                retract: vec![(ResourceType::Observation, OBS.into())],
                facility_use: None,
            }],
            problems: Vec::new(),
        }
    }

    #[test]
    fn keyed_ids_follow_their_references_and_keep_stored_ones() {
        let key = IdKey::from_bytes([7; 32]);
        let f = key_file(&key, file(), &HashSet::new());
        let new_patient = key.id(PATIENT);
        assert_ne!(new_patient, PATIENT);
        assert_eq!(uuid::Uuid::parse_str(&new_patient).map(|u| u.get_version_num()), Ok(8));
        let u = &f.units[0];
        assert_eq!(u.resources[0].id, new_patient);
        assert_eq!(u.resources[0].resource["id"], json!(new_patient));
        assert_eq!(u.resources[1].resource["subject"]["reference"], json!(format!("Patient/{new_patient}")));
        assert_eq!(u.resources[1].resource["hasMember"][0]["reference"], "Observation/not-a-uuid");
        assert_eq!(u.retract[0].1, key.id(OBS));
        // Deterministic: the same key gives the same ids; another key others.
        assert_eq!(key.id(PATIENT), new_patient);
        assert_ne!(IdKey::from_bytes([8; 32]).id(PATIENT), new_patient);
        // A Patient already stored under its old id keeps it, and references to it follow.
        let stored: HashSet<(ResourceType, String)> = [(ResourceType::Patient, PATIENT.to_owned())].into();
        let f = key_file(&key, file(), &stored);
        let u = &f.units[0];
        assert_eq!(u.resources[0].id, PATIENT);
        assert_eq!(u.resources[1].resource["subject"]["reference"], json!(format!("Patient/{PATIENT}")));
        assert_eq!(u.resources[1].id, key.id(OBS));
    }

    /// The moves of the rekey tests: the two deterministic ids above, keyed.
    fn moves(key: &IdKey) -> impl Fn(ResourceType, &str) -> Option<String> + '_ {
        |_, id| [PATIENT, OBS].contains(&id).then(|| key.id(id))
    }

    #[test]
    fn a_rekey_rewrites_the_own_id_and_references_only() {
        let key = IdKey::from_bytes([7; 32]);
        let (p, o) = (key.id(PATIENT), key.id(OBS));
        let mut v = json!({
            "resourceType": "Observation",
            "id": OBS,
            "meta": {"versionId": "3", "lastUpdated": "2026-01-01T00:00:00.000+09:00", "source": OBS},
            // An identifier whose value happens to equal an old id is data: it stays.
            "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11318814790", "value": OBS}],
            "text": {"status": "generated", "div": format!("<div>{PATIENT}</div>")},
            "subject": {"reference": format!("Patient/{PATIENT}"), "display": PATIENT},
            "hasMember": [
                {"reference": format!("Observation/{OBS}/_history/2")},
                {"reference": format!("https://musubi.example.jp/fhir/Patient/{PATIENT}")},
                {"reference": format!("urn:uuid:{PATIENT}")},
                {"reference": "#contained"},
                {"reference": format!("Observation/{}", key.id("not-moved"))}
            ],
            "contained": [{"resourceType": "Specimen", "id": "contained", "subject": {"reference": format!("Patient/{PATIENT}")}}],
            "extension": [{"url": "http://example.jp/x", "valueReference": {"reference": format!("Patient/{PATIENT}")}}]
        });
        let before = v.clone();
        assert_eq!(rekey_resource(ResourceType::Observation, &mut v, &moves(&key)), 6);
        assert_eq!(v["id"], json!(o));
        assert_eq!(v["subject"]["reference"], json!(format!("Patient/{p}")));
        assert_eq!(v["hasMember"][0]["reference"], json!(format!("Observation/{o}/_history/2")));
        assert_eq!(v["hasMember"][1]["reference"], json!(format!("https://musubi.example.jp/fhir/Patient/{p}")));
        assert_eq!(v["contained"][0]["subject"]["reference"], json!(format!("Patient/{p}")));
        assert_eq!(v["extension"][0]["valueReference"]["reference"], json!(format!("Patient/{p}")));
        // Untouched: identifiers, text, display, meta, urn:uuid, contained ids, other targets.
        for path in
            ["/identifier", "/text", "/subject/display", "/meta", "/hasMember/2", "/hasMember/3", "/hasMember/4"]
        {
            assert_eq!(v.pointer(path), before.pointer(path), "{path}");
        }
        assert_eq!(v["contained"][0]["id"], "contained");
        // Nothing left to move: a second pass changes nothing.
        let again = v.clone();
        assert_eq!(rekey_resource(ResourceType::Observation, &mut v, &moves(&key)), 0);
        assert_eq!(v, again);

        // A Bundle is a document as sent: only its own id would move.
        let mut doc = json!({"resourceType": "Bundle", "id": OBS, "entry": [{"resource": {"subject": {"reference": format!("Patient/{PATIENT}")}}}]});
        assert_eq!(rekey_resource(ResourceType::Bundle, &mut doc, &moves(&key)), 1);
        assert_eq!(doc["entry"][0]["resource"]["subject"]["reference"], json!(format!("Patient/{PATIENT}")));
    }

    #[test]
    fn the_rekey_rules_rewrite_stored_json_and_its_hash() {
        use musubi_store::rekey::Rekeying;
        let key = IdKey::from_bytes([7; 32]);
        let r = Rekeyer {
            key: std::sync::Arc::new(key.clone()),
            audit: musubi_domain::audit::AuditRecord {
                recorded: 0,
                action: musubi_domain::audit::AuditAction::Execute,
                subtype: "ids-rekey".into(),
                outcome: musubi_domain::audit::AuditOutcome::Success,
                outcome_text: None,
                agent: musubi_domain::audit::AuditAgent {
                    kind: "operator-cli".into(),
                    name: "op".into(),
                    facility: None,
                    profession: None,
                    address: None,
                },
                purpose: musubi_domain::audit::AuditPurpose::Operations,
                patient: None,
                person: None,
                entities: Vec::new(),
                query: None,
                source: "test".into(),
            },
            progress: Box::new(|_, _| {}),
        };
        assert_eq!(r.new_id(PATIENT), Some(key.id(PATIENT)));
        assert_eq!(r.new_id(&key.id(PATIENT)), None, "a keyed id (v8) is not moved again");
        assert_eq!(r.new_id("0190e5a3-0000-7000-8000-000000000000"), None, "a server id (v7) stays");
        let stored = format!(
            r#"{{"resourceType":"Observation","id":"{OBS}","meta":{{"versionId":"2","lastUpdated":"2026-01-01T00:00:00.000+09:00"}},"subject":{{"reference":"Patient/{PATIENT}"}},"valueQuantity":{{"value":7.25}}}}"#
        );
        let out = r.rewrite(ResourceType::Observation, &stored, &moves(&key)).unwrap().unwrap();
        let expected = stored.replace(OBS, &key.id(OBS)).replace(PATIENT, &key.id(PATIENT));
        assert_eq!(out.content, expected, "same bytes but the ids: element order and numbers kept");
        // The hash a write of the same resource under the new ids would give (server meta out).
        assert_eq!(out.content_hash, crate::prepare::content_hash(&expected, "2", "2026-01-01T00:00:00.000+09:00"));
        assert_eq!(r.rewrite(ResourceType::Observation, &expected, &moves(&key)).unwrap(), None);
        // JSON without any deterministic id is not even parsed.
        assert_eq!(r.rewrite(ResourceType::Observation, "not json", &moves(&key)).unwrap(), None);
        assert!(r.rewrite(ResourceType::Observation, &format!("{{\"id\": \"{OBS}\""), &moves(&key)).is_err());
        assert!(mentions_deterministic(&format!("x{PATIENT}x")));
        assert!(!mentions_deterministic("2026-05-01 -5 ee8e0968-8676-4b5d-a586-54f849c4e3ca"));
    }

    #[test]
    fn the_key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let a = IdKey::load_or_create(&path).unwrap();
        let b = IdKey::load_or_create(&path).unwrap();
        assert_eq!(a.id(PATIENT), b.id(PATIENT));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(format!("{a:?}"), "IdKey(…)");
        std::fs::write(&path, "zz").unwrap();
        assert!(matches!(IdKey::load_or_create(&path), Err(IdKeyError::Malformed { .. })));
        let data = dir.path().join("data");
        assert_eq!(IdKey::default_path(&data), dir.path().join(KEY_FILE));
    }
}
