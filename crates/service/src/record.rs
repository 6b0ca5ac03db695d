//! A person's whole record as the caller may see it: every current record of every source
//! patient linked to the person, each decided by the gate (what is refused is left out without
//! a trace), with one audit record. The clinician viewer, the emergency summary, the patient's
//! own record and its download, and `Patient/$everything` are built on it.

use musubi_domain::audit::{AuditAction, AuditOutcome, AuditPurpose};
use musubi_domain::{Flags, ResourceClass};
use musubi_fhir::ResourceType;
use musubi_gate::{Operation, RecordView};
use serde::Serialize;
use serde_json::Value;

use crate::access::Access;
use crate::{ApiError, Ctx, ErrorKind, Service};

/// One record of the person.
#[derive(Debug, Clone, Serialize)]
pub struct RecordEntry {
    /// Type.
    pub rtype: ResourceType,
    /// Logical id.
    pub id: String,
    /// Version.
    pub version: i64,
    /// Class.
    pub class: ResourceClass,
    /// Source facility (code).
    pub facility: Option<String>,
    /// Its name in the registry.
    pub facility_name: Option<String>,
    /// Clinical date (epoch ms).
    pub clinical_date: Option<i64>,
    /// Flags.
    #[serde(skip)]
    pub flags: Flags,
    /// The resource.
    pub resource: Value,
}

/// A person's record as the caller may see it.
#[derive(Debug, Clone, Serialize)]
pub struct PersonRecord {
    /// The person.
    pub person_id: String,
    /// The source patients (Patient ids) linked to the person.
    pub patients: Vec<String>,
    /// The visible records, newest clinical date first (the Patient resources included).
    pub entries: Vec<RecordEntry>,
    /// Set when the access was by emergency grant (the reason).
    pub emergency: Option<String>,
}

impl PersonRecord {
    /// The entries of one class.
    pub fn of_class(&self, class: ResourceClass) -> impl Iterator<Item = &RecordEntry> {
        self.entries.iter().filter(move |e| e.class == class)
    }

    /// The entries of one resource type.
    pub fn of_type(&self, rtype: ResourceType) -> impl Iterator<Item = &RecordEntry> {
        self.entries.iter().filter(move |e| e.rtype == rtype)
    }
}

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
            let d = access.decide_loaded(Operation::Read, &RecordView::of(&row));
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
        let keys: Vec<(ResourceType, String, i64)> =
            allowed.iter().map(|r| (r.rtype, r.id.clone(), r.version)).collect();
        let contents = self.store.read(|r| r.contents(&keys))?;
        let names: std::collections::HashMap<String, String> =
            facilities.into_iter().map(|f| (f.code, f.name)).collect();
        let mut entries = Vec::with_capacity(allowed.len());
        for (row, stored) in allowed.into_iter().zip(contents) {
            let resource: Value = serde_json::from_str(stored.content.as_deref().unwrap_or("{}"))
                .map_err(|e| ApiError::internal(format!("stored JSON of {}/{}: {e}", row.rtype, row.id)))?;
            let facility = row.meta.facility.map(|f| f.to_string());
            entries.push(RecordEntry {
                rtype: row.rtype,
                id: row.id,
                version: row.version,
                class: row.meta.class,
                facility_name: facility.as_ref().and_then(|f| names.get(f).cloned()),
                facility,
                clinical_date: row.meta.clinical_date,
                flags: row.meta.flags,
                resource,
            });
        }
        Ok(PersonRecord { person_id: person, patients, entries, emergency })
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
