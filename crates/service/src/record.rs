//! A person's whole record as the caller may see it: every current record of every source
//! patient linked to the person, each decided by the gate (what is refused is left out without
//! a trace), with one audit record. The clinician viewer, the emergency summary, the patient's
//! own record and its download, and `Patient/$everything` are built on it.
//!
//! The data types ([`PersonRecord`], [`RecordEntry`]) live in the pure crate `musubi-record`,
//! with the projections built on them; this module is the gate, audit and I/O side.

pub use musubi_record::{PersonRecord, RecordEntry};

use musubi_domain::audit::{AuditAction, AuditOutcome, AuditPurpose};
use musubi_fhir::ResourceType;
use musubi_gate::{Operation, RecordView};
use std::collections::HashMap;

use musubi_store::PersonRecordRow;
use serde_json::Value;

use crate::cache::{Parsed, VersionRef};

use crate::access::Access;
use crate::{ApiError, Ctx, ErrorKind, Service};

impl Service {
    /// The whole record of the person of `patient_id`, through the gate, audited once.
    /// `purpose` names the route in the audit record (`viewer`, `$everything`, `summary`,
    /// `portal`, `export`).
    pub fn person_record(&self, ctx: &Ctx, patient_id: &str, purpose: &str) -> Result<PersonRecord, ApiError> {
        let pid = patient_id.to_owned();
        let Some(person) = self.store.read(|r| r.person_of_patient(&pid))? else {
            let mut a = self.audit_record(ctx, AuditAction::Read, purpose, AuditOutcome::MinorFailure);
            a.entities = vec![format!("Patient/{patient_id}")];
            self.audit(vec![a])?;
            return Err(ApiError::not_found("Patient", patient_id));
        };
        let access = Access::new(self, ctx)?;
        access.person(&person)?;
        let p2 = person.clone();
        let (rows, patients, facilities) =
            self.store.read(|r| Ok((r.person_records(&p2)?, r.patients_of_person(&p2)?, r.facilities()?)))?;
        let mut allowed = Vec::with_capacity(rows.len());
        let mut emergency = None;
        for row in rows {
            let view = RecordView {
                rtype: row.rtype,
                class: row.class,
                facility: row.facility,
                patient_id: row.patient_id.clone(),
                person_id: Some(person.clone()),
                flags: row.flags,
                clinical_date: row.clinical_date,
            };
            let d = access.decide_loaded(Operation::Read, &view);
            if let Some(reason) = d.emergency_reason() {
                emergency = Some(reason.to_owned());
            }
            if d.is_allow() {
                allowed.push(row);
            }
        }
        let mut a = self.audit_record(ctx, AuditAction::Read, purpose, AuditOutcome::Success);
        a.person = Some(person.clone());
        a.patient = Some(patient_id.to_owned());
        if let Some(r) = &emergency {
            a.purpose = AuditPurpose::Emergency(r.clone());
        }
        // The named registration itself must be visible: otherwise the answer would tell the
        // caller that a patient id of another facility is the same person as one of theirs.
        let named_visible = allowed.iter().any(|r| r.rtype == ResourceType::Patient && r.id == patient_id);
        if allowed.is_empty() || !named_visible {
            // Nothing visible: answered exactly like an unknown patient, and audited as refused.
            a.outcome = AuditOutcome::SeriousFailure;
            a.outcome_text = Some("nothing visible to the caller".into());
            a.entities = vec![format!("Patient/{patient_id}")];
            self.audit(vec![a])?;
            return Err(ApiError::not_found("Patient", patient_id));
        }
        a.entities = allowed.iter().map(|r| format!("{}/{}/_history/{}", r.rtype, r.id, r.version)).collect();
        self.audit(vec![a])?;
        let resources = self.parsed_contents(&person, &allowed)?;
        let names: std::collections::HashMap<String, String> =
            facilities.into_iter().map(|f| (f.code, f.name)).collect();
        let mut entries = Vec::with_capacity(allowed.len());
        for (row, parsed) in allowed.into_iter().zip(resources) {
            let Some(Parsed { value: resource, derived, .. }) = parsed else {
                // A current row without its version's content: the store is damaged. Leave the
                // record out (it cannot be shown) and say so in the log.
                tracing::error!(rtype = %row.rtype, id = %row.id, version = row.version, "stored version missing");
                continue;
            };
            let facility = row.facility.map(|f| f.to_string());
            entries.push(RecordEntry {
                rtype: row.rtype,
                id: row.id,
                version: row.version,
                class: row.class,
                facility_name: facility.as_ref().and_then(|f| names.get(f).cloned()),
                facility,
                clinical_date: row.clinical_date,
                flags: row.flags,
                resource,
                derived,
            });
        }
        Ok(PersonRecord { person_id: person, patients, entries, emergency })
    }

    /// The parsed content of each allowed row's version, in order: from the cache, and what
    /// it misses from the store (in one statement when many are missing), parsed and cached.
    fn parsed_contents(&self, person: &str, rows: &[PersonRecordRow]) -> Result<Vec<Option<Parsed>>, ApiError> {
        let mut out: Vec<Option<Parsed>> = Vec::with_capacity(rows.len());
        let mut missing = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let hit = self.cache.get(&VersionRef::of(row));
            if hit.is_none() {
                missing.push(i);
            }
            out.push(hit);
        }
        if missing.is_empty() {
            return Ok(out);
        }
        // A first look at a long history: one statement for the person's contents rather than
        // one per record (a version written since the rows were read is looked up by itself).
        let mut texts: HashMap<(ResourceType, String, i64), Option<String>> = HashMap::new();
        if missing.len() >= 32 {
            let p = person.to_owned();
            for s in self.store.read(|r| r.person_contents(&p))? {
                texts.insert((s.rtype, s.id, s.version), s.content);
            }
        }
        let unresolved: Vec<(ResourceType, String, i64)> = missing
            .iter()
            .filter_map(|&i| rows.get(i))
            .map(|r| (r.rtype, r.id.clone(), r.version))
            .filter(|k| !texts.contains_key(k))
            .collect();
        if !unresolved.is_empty() {
            for s in self.store.read(|r| r.contents(&unresolved))? {
                texts.insert((s.rtype, s.id, s.version), s.content);
            }
        }
        // The texts to parse, in row order.
        let jobs: Vec<(usize, Option<String>)> = missing
            .into_iter()
            .filter_map(|i| {
                let row = rows.get(i)?;
                texts.remove(&(row.rtype, row.id.clone(), row.version)).map(|t| (i, t))
            })
            .collect();
        for (i, parsed) in parse_all(rows, jobs)? {
            let (Some(row), Some(slot)) = (rows.get(i), out.get_mut(i)) else { continue };
            self.cache.insert(VersionRef::of(row).to_key(), parsed.clone());
            *slot = Some(parsed);
        }
        Ok(out)
    }

    /// `Patient/[id]/$everything`: the person's visible record as a searchset Bundle.
    pub fn everything(&self, ctx: &Ctx, patient_id: &str) -> Result<String, ApiError> {
        if !musubi_fhir::is_valid_id(patient_id) {
            return Err(ApiError::new(ErrorKind::NotFound, "Patient が見つかりません"));
        }
        let rec = self.person_record(ctx, patient_id, "$everything")?;
        let entries: Vec<Value> = rec
            .entries
            .iter()
            .map(|e| serde_json::json!({"fullUrl": format!("{}/{}/{}", ctx.base_url, e.rtype, e.id), "resource": e.resource, "search": {"mode": "match"}}))
            .collect();
        let bundle = serde_json::json!({
            "resourceType": "Bundle",
            "id": crate::prepare::new_id(),
            "meta": {"lastUpdated": musubi_fhir::datetime::format_instant(musubi_fhir::datetime::now_ms())},
            "type": "searchset",
            "total": entries.len(),
            "entry": entries
        });
        Ok(bundle.to_string())
    }
}

/// Parses stored JSON texts (`(row index, text)`), on every core when there are many: the first
/// open of a long history parses thousands of records, and parsing is most of its time.
fn parse_all(rows: &[PersonRecordRow], jobs: Vec<(usize, Option<String>)>) -> Result<Vec<(usize, Parsed)>, ApiError> {
    fn parse(rows: &[PersonRecordRow], jobs: &[(usize, Option<String>)]) -> Result<Vec<(usize, Parsed)>, ApiError> {
        jobs.iter()
            .map(|(i, text)| {
                let text = text.as_deref().unwrap_or("{}");
                let value: Value = serde_json::from_str(text).map_err(|e| {
                    let what = rows.get(*i).map(|r| format!("{}/{}", r.rtype, r.id)).unwrap_or_default();
                    ApiError::internal(format!("stored JSON of {what}: {e}"))
                })?;
                Ok((*i, Parsed::new(value, text.len())))
            })
            .collect()
    }
    const PARALLEL_FROM: usize = 512;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    if jobs.len() < PARALLEL_FROM || threads < 2 {
        return parse(rows, &jobs);
    }
    let chunk = jobs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs.chunks(chunk).map(|part| scope.spawn(move || parse(rows, part))).collect();
        let mut out = Vec::with_capacity(jobs.len());
        for h in handles {
            out.extend(h.join().map_err(|_| ApiError::internal("a parsing thread panicked".to_owned()))??);
        }
        Ok(out)
    })
}
