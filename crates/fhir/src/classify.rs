//! The record meta Musubi keeps beside each resource: its class (which of the shared items it
//! is), clinical date, flags, source facility and patient. The store indexes these columns and
//! the gate decides on them, so neither ever needs to parse the JSON again.

use musubi_domain::{FacilityCode, Flags, ResourceClass, systems};
use serde_json::Value;

use crate::ResourceType;
use crate::datetime::parse_range;
use crate::json::{codings, extension, walk};
use crate::reference::parse_reference;

/// What [`classify`] learns about a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// Which kind of information it is.
    pub class: ResourceClass,
    /// The clinical date (epoch ms, start of the value), if the resource has one.
    pub clinical_date: Option<i64>,
    /// LTS / UNINFORMED / UNDELIVERED from `meta.tag`.
    pub flags: Flags,
    /// The facility that the data says it comes from (the JP-CLINS institution number, or the
    /// facility of a local patient id).
    pub facility: Option<FacilityCode>,
    /// The logical id of the Patient it is about (for a Patient, none: the store uses its id).
    pub patient: Option<String>,
    /// The item a "keep the last 3" retention rule counts by (lab item, drug code).
    pub item_key: Option<String>,
}

/// Which of the JP-CLINS lab item sets a code belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabSet {
    /// One of the 43 core items (検査).
    Core,
    /// One of the 5 infection items (感染症).
    Infection,
}

/// A lookup from a coding to the JP-CLINS lab set it belongs to (the validator's terminology
/// provides the real one; JP-CLINS senders also mark the set through the coding system).
pub type LabLookup<'a> = &'a dyn Fn(&str, &str) -> Option<LabSet>;

/// Classifies a resource using only what it says about itself.
pub fn classify(rtype: ResourceType, r: &Value) -> RecordMeta {
    classify_with(rtype, r, &|_, _| None)
}

/// Classifies a resource, asking `labs` which lab set a plain JLAC10 code belongs to.
pub fn classify_with(rtype: ResourceType, r: &Value, labs: LabLookup<'_>) -> RecordMeta {
    let (class, item_key) = class_of(rtype, r, labs);
    RecordMeta {
        class,
        clinical_date: clinical_date(rtype, r),
        flags: flags(r),
        facility: facility(rtype, r),
        patient: patient(rtype, r),
        item_key,
    }
}

fn class_of(rtype: ResourceType, r: &Value, labs: LabLookup<'_>) -> (ResourceClass, Option<String>) {
    use ResourceType as T;
    let first_code = |v: &Value| codings(v).next().map(|(s, c)| format!("{s}|{c}"));
    match rtype {
        T::Patient | T::RelatedPerson | T::Coverage => (ResourceClass::Demographics, None),
        T::Practitioner | T::PractitionerRole | T::Organization | T::Consent | T::Provenance | T::AuditEvent => {
            (ResourceClass::Administrative, None)
        }
        T::Encounter => (ResourceClass::Encounter, None),
        T::Condition => (ResourceClass::Diagnosis, None),
        T::AllergyIntolerance => {
            let medication = r["category"].as_array().is_some_and(|a| a.iter().any(|c| c == "medication"));
            (if medication { ResourceClass::DrugAllergy } else { ResourceClass::OtherAllergy }, None)
        }
        T::MedicationRequest => (ResourceClass::Prescription, first_code(&r["medicationCodeableConcept"])),
        T::Observation => {
            let mut set = None;
            for (system, code) in codings(&r["code"]) {
                let s = match system {
                    systems::INFECTION_LABO_JLAC10 | systems::INFECTION_LABO_JLAC11 => Some(LabSet::Infection),
                    systems::CORE_LABO_JLAC10 | systems::CORE_LABO_JLAC11 => Some(LabSet::Core),
                    _ => labs(system, code),
                };
                if s.is_some() {
                    set = s;
                    break;
                }
            }
            match set {
                Some(LabSet::Infection) => (ResourceClass::Infection, None),
                Some(LabSet::Core) => {
                    // Count by the JLAC10 code (or the first code) so that "the last 3" is per item.
                    let key = codings(&r["code"])
                        .find(|(s, _)| *s == systems::JLAC10)
                        .map(|(s, c)| format!("{s}|{c}"))
                        .or_else(|| first_code(&r["code"]));
                    (ResourceClass::Lab, key)
                }
                None => (ResourceClass::Other, None),
            }
        }
        T::Composition => (composition_class(r), None),
        T::Bundle => {
            let comp = r.pointer("/entry/0/resource").filter(|c| c["resourceType"] == "Composition");
            match comp {
                Some(c) => (composition_class(c), None),
                None => (ResourceClass::Other, None),
            }
        }
        T::DocumentReference => (ResourceClass::Document, None),
        _ => (ResourceClass::Other, None),
    }
}

fn composition_class(c: &Value) -> ResourceClass {
    for (_, code) in codings(&c["type"]) {
        match code {
            "57133-1" => return ResourceClass::Referral,
            "18842-5" => return ResourceClass::DischargeSummary,
            "53576-5" => return ResourceClass::Checkup,
            "60591-5" => return ResourceClass::PatientSummary,
            _ => {}
        }
    }
    ResourceClass::Document
}

fn clinical_date(rtype: ResourceType, r: &Value) -> Option<i64> {
    use ResourceType as T;
    let paths: &[&[&str]] = match rtype {
        T::Condition => &[&["onset[x]"], &["recordedDate"]],
        T::Observation | T::DiagnosticReport => &[&["effective[x]"], &["issued"]],
        T::AllergyIntolerance => &[&["onset[x]"], &["recordedDate"]],
        T::MedicationRequest | T::ServiceRequest => &[&["authoredOn"]],
        T::MedicationAdministration | T::MedicationStatement => &[&["effective[x]"], &["dateAsserted"]],
        T::MedicationDispense => &[&["whenHandedOver"], &["whenPrepared"]],
        T::Encounter | T::Coverage | T::CarePlan => &[&["period"]],
        T::Procedure => &[&["performed[x]"]],
        T::ImagingStudy => &[&["started"]],
        T::Immunization => &[&["occurrence[x]"]],
        T::Composition | T::DocumentReference | T::FamilyMemberHistory => &[&["date"]],
        T::Bundle => &[&["timestamp"]],
        T::Consent => &[&["dateTime"]],
        T::Provenance => &[&["recorded"]],
        _ => &[],
    };
    for path in paths {
        let mut found = None;
        walk(r, path, &mut |_, v| {
            if found.is_some() {
                return;
            }
            let s = match v {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o.get("start").and_then(Value::as_str),
                _ => None,
            };
            found = s.and_then(|s| parse_range(s).ok()).map(|r| r.lo);
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

fn flags(r: &Value) -> Flags {
    let mut f = Flags::empty();
    if let Some(tags) = r.pointer("/meta/tag").and_then(Value::as_array) {
        for t in tags {
            if let (Some(s), Some(c)) = (t["system"].as_str(), t["code"].as_str())
                && let Some(flag) = Flags::from_tag(s, c)
            {
                f.insert(flag);
            }
        }
    }
    f
}

/// The facility the resource says it comes from.
pub fn facility(rtype: ResourceType, r: &Value) -> Option<FacilityCode> {
    if let Some(code) = extension(r, systems::EXT_INSTITUTION_NUMBER)
        .and_then(|e| e.pointer("/valueIdentifier/value"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
    {
        return Some(code);
    }
    match rtype {
        ResourceType::Patient => local_patient_id(r).map(|(f, _)| f),
        ResourceType::Bundle => r
            .pointer("/identifier/value")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<musubi_domain::BundleIdentifier>().ok())
            .map(|b| b.facility()),
        _ => None,
    }
}

/// The facility-local patient id (`urn:oid:1.2.392.100495.20.3.51.1` + facility code) of a
/// Patient: the facility and the id.
pub fn local_patient_id(patient: &Value) -> Option<(FacilityCode, &str)> {
    patient["identifier"].as_array()?.iter().find_map(|i| {
        let system = i["system"].as_str()?;
        let code = system.strip_prefix(systems::LOCAL_PATIENT_ID_PREFIX)?;
        let facility: FacilityCode = code.parse().ok()?;
        Some((facility, i["value"].as_str()?))
    })
}

/// The insurance identity (被保険者個人識別子) of a Patient, if it carries one.
pub fn insurance_id(patient: &Value) -> Option<&str> {
    patient["identifier"]
        .as_array()?
        .iter()
        .find(|i| i["system"] == systems::INSURANCE_MEMBER_ID)
        .and_then(|i| i["value"].as_str())
}

fn patient(rtype: ResourceType, r: &Value) -> Option<String> {
    for path in rtype.patient_paths() {
        let mut found = None;
        walk(r, path, &mut |_, v| {
            if found.is_none() {
                found = v
                    .get("reference")
                    .and_then(Value::as_str)
                    .and_then(parse_reference)
                    .filter(|l| l.rtype == ResourceType::Patient)
                    .map(|l| l.id);
            }
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn infection_and_core_lab_by_system() {
        let infection = json!({"resourceType": "Observation", "code": {"coding": [{"system": systems::INFECTION_LABO_JLAC10, "code": "HBS-AG-SCO"}]}});
        assert_eq!(classify(ResourceType::Observation, &infection).class, ResourceClass::Infection);
        let core = json!({"resourceType": "Observation", "code": {"coding": [{"system": systems::JLAC10, "code": "3D046000001920402"}, {"system": systems::CORE_LABO_JLAC10, "code": "HbA1c"}]}});
        let m = classify(ResourceType::Observation, &core);
        assert_eq!(m.class, ResourceClass::Lab);
        assert_eq!(
            m.item_key.as_deref(),
            Some("http://medis.or.jp/CodeSystem/master-JLAC10-17digits|3D046000001920402")
        );
        let plain =
            json!({"resourceType": "Observation", "code": {"coding": [{"system": systems::JLAC10, "code": "9"}]}});
        assert_eq!(classify(ResourceType::Observation, &plain).class, ResourceClass::Other);
        let lookup = |_: &str, c: &str| (c == "9").then_some(LabSet::Core);
        assert_eq!(classify_with(ResourceType::Observation, &plain, &lookup).class, ResourceClass::Lab);
    }

    #[test]
    fn condition_meta() {
        let c = json!({
            "resourceType": "Condition",
            "meta": {"tag": [{"system": systems::EHRSHRS_INDICATION, "code": "UNINFORMED"}]},
            "extension": [{"url": systems::EXT_INSTITUTION_NUMBER, "valueIdentifier": {"system": systems::INSTITUTION_NUMBER, "value": "1318814790"}}],
            "subject": {"reference": "Patient/abc"},
            "onsetDateTime": "2021-07-01"
        });
        let m = classify(ResourceType::Condition, &c);
        assert_eq!(m.class, ResourceClass::Diagnosis);
        assert!(m.flags.contains(Flags::UNINFORMED));
        assert_eq!(m.facility.unwrap().as_str(), "1318814790");
        assert_eq!(m.patient.as_deref(), Some("abc"));
        assert_eq!(crate::datetime::format_instant(m.clinical_date.unwrap()), "2021-06-30T15:00:00.000Z");
    }

    #[test]
    fn allergies_split_by_category() {
        let drug = json!({"resourceType": "AllergyIntolerance", "category": ["medication"], "patient": {"reference": "Patient/p"}});
        assert_eq!(classify(ResourceType::AllergyIntolerance, &drug).class, ResourceClass::DrugAllergy);
        assert_eq!(classify(ResourceType::AllergyIntolerance, &drug).patient.as_deref(), Some("p"));
        let food = json!({"resourceType": "AllergyIntolerance", "category": ["food"]});
        assert_eq!(classify(ResourceType::AllergyIntolerance, &food).class, ResourceClass::OtherAllergy);
    }

    #[test]
    fn patient_facility_from_local_id() {
        let p = json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11318814790", "value": "00000010"}, {"system": systems::INSURANCE_MEMBER_ID, "value": "00012345:あいう:１８７:05"}]});
        let m = classify(ResourceType::Patient, &p);
        assert_eq!(m.facility.unwrap().as_str(), "1318814790");
        assert_eq!(local_patient_id(&p).unwrap().1, "00000010");
        assert_eq!(insurance_id(&p), Some("00012345:あいう:１８７:05"));
    }

    #[test]
    fn document_bundle_class() {
        let b = json!({"resourceType": "Bundle", "type": "document", "identifier": {"system": systems::BUNDLE_IDENTIFIER, "value": "1318814790^2024^R1"}, "timestamp": "2024-01-02T10:00:00+09:00", "entry": [{"resource": {"resourceType": "Composition", "type": {"coding": [{"code": "57133-1"}]}}}]});
        let m = classify(ResourceType::Bundle, &b);
        assert_eq!(m.class, ResourceClass::Referral);
        assert_eq!(m.facility.unwrap().as_str(), "1318814790");
        assert!(m.clinical_date.is_some());
    }
}
