//! JP-CLINS FHIR Bundles, shaped like the published examples in `reference/jp-clins/examples/`
//! and `reference/eCheckup/`:
//!
//! - 5情報 collection Bundles (`JP_Bundle_CLINS`): one resource type (Condition,
//!   AllergyIntolerance or Observation), one patient, `JP_Patient_eCS` first, Bundle identifier
//!   `医療機関番号^西暦年^識別子`, the institution-number extension on every resource, contained
//!   `JP_Encounter` / `JP_Practitioner` / `JP_Specimen` where rules R9011–R9019 ask.
//! - 診療情報提供書 document Bundles (`JP_Bundle_eReferral`), with a 退院時サマリー
//!   (`JP_Bundle_eDischargeSummary`) attached as a Bundle entry referenced from the
//!   attachment section (210) when the letter follows a discharge.
//! - 健康診断結果報告書 document Bundles (`JP_Bundle_eCheckupGeneral`).
//!
//! Builders take the generator's values and return `serde_json::Value`; they do no I/O.

use musubi_domain::systems as sys;
use serde_json::{Value, json};
use time::Date;

use crate::PersonHistory;
use crate::care::{Allergy, Dx, Encounter, EncounterKind, LabResult, Rx, Value as LabValue};
use crate::codes::{self, Form, LabGroup};
use crate::dates::iso;
use crate::noise::SourcePatient;
use crate::region::{Facility, Region, User};
use crate::rng::key;

const P_PATIENT: &str = "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Patient_eCS";
const P_CONDITION: &str = "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Condition_eCS";
const P_ALLERGY: &str = "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_AllergyIntolerance_eCS";
const P_LAB: &str = "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Observation_LabResult_eCS";
const P_MEDREQ: &str = "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_MedicationRequest_eCS";
const P_ENCOUNTER_CORE: &str = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Encounter";
const P_PRACT_CORE: &str = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Practitioner";
const P_SPECIMEN_CORE: &str = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Specimen";
const P_BUNDLE_CLINS: &str = "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_CLINS|1";
const P_BUNDLE_REFERRAL: &str = "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_eReferral|1";
const P_BUNDLE_DISCHARGE: &str = "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_eDischargeSummary|1";
const P_COMP_REFERRAL: &str = "http://jpfhir.jp/fhir/eReferral/StructureDefinition/JP_Composition_eReferral|1";
const P_COMP_DISCHARGE: &str =
    "http://jpfhir.jp/fhir/eDischargeSummary/StructureDefinition/JP_Composition_eDischargeSummary|1";
const P_ENCOUNTER_ECS: &str = "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Encounter_eCS";
const P_PRACT_ECS: &str = "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Practitioner_eCS";
const P_ORG_ECS: &str = "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Organization_eCS";
const P_DOCREF_ECS: &str = "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_DocumentReference_eCS";
const RESOURCE_ID: &str = "http://jpfhir.jp/fhir/core/IdSystem/resourceInstance-identifier";
const SECTION: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/document-section";
const DEPT_SYSTEM: &str = "http://jami.jp/SS-MIX2/CodeSystem/ClinicalDepartment";
const RECEIPT_DISEASE: &str = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/masterB-disease";
const ICD10: &str = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full";
const XHTML: &str = "http://www.w3.org/1999/xhtml";

/// Deterministic `urn:uuid:` values for one Bundle.
pub(crate) struct Ids {
    base: u64,
    n: u64,
}

impl Ids {
    pub(crate) fn new(seed: u64, keys: &[u64]) -> Self {
        Ids { base: key(seed, keys), n: 0 }
    }
    pub(crate) fn next(&mut self) -> String {
        self.n += 1;
        let a = key(self.base, &[self.n, 1]);
        let b = key(self.base, &[self.n, 2]);
        // Version 4 / variant bits so the UUIDs look like the ones EMRs make.
        format!(
            "urn:uuid:{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            0x8000 | (b >> 48 & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

fn ts(d: Date, secs: u64) -> String {
    let s = secs % 86_400;
    let h = 8 + (s / 3600) % 10;
    format!("{}T{:02}:{:02}:{:02}+09:00", iso(d), h, (s / 60) % 60, s % 60)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn div(text: &str) -> Value {
    json!({"status": "additional", "div": format!("<div xmlns=\"{XHTML}\">{}</div>", esc(text))})
}

fn inst_ext(f: &Facility) -> Value {
    json!({"url": sys::EXT_INSTITUTION_NUMBER, "valueIdentifier": {"system": sys::INSTITUTION_NUMBER, "value": f.code.as_str()}})
}

fn dept_ext(dept: &str) -> Value {
    let name = codes::department_name(dept);
    json!({"url": sys::EXT_DEPARTMENT, "valueCodeableConcept": {"coding": [{"code": dept, "system": DEPT_SYSTEM, "display": name}], "text": name}})
}

fn name_parts(family: &str, given: &str, rep: &str) -> Value {
    json!({
        "extension": [{"url": sys::EXT_NAME_REPRESENTATION, "valueCode": rep}],
        "text": format!("{family} {given}"),
        "family": family,
        "given": [given]
    })
}

fn split_name(full: &str) -> (&str, &str) {
    full.split_once(' ').unwrap_or((full, ""))
}

/// The `JP_Patient_eCS` resource of a source patient.
pub fn patient(sp: &SourcePatient, f: &Facility, last_updated: &str) -> Value {
    let mut names = vec![name_parts(&sp.family, &sp.given, "IDE")];
    if let (Some(fk), Some(gk)) = (&sp.family_kana, &sp.given_kana) {
        names.push(name_parts(fk, gk, "SYL"));
    }
    let addr = &sp.address;
    let mut p = json!({
        "resourceType": "Patient",
        "meta": {"lastUpdated": last_updated, "profile": [P_PATIENT]},
        "extension": [inst_ext(f)],
        "identifier": [
            {"system": format!("{}{}", sys::LOCAL_PATIENT_ID_PREFIX, f.code), "value": sp.local_id},
            {"system": sys::INSURANCE_MEMBER_ID, "value": sp.insurance.id.to_string()}
        ],
        "name": names,
        "gender": sp.sex.fhir(),
        "birthDate": iso(sp.birth),
        "address": [{
            "text": addr.text(),
            "postalCode": addr.postal_code,
            "city": addr.city,
            "state": crate::geo::prefecture_name(addr.prefecture),
            "country": "JP"
        }]
    });
    if let Some(phone) = &sp.phone {
        p["telecom"] = json!([{"system": "phone", "value": phone, "use": if phone.starts_with("0") && !phone.starts_with("090") && !phone.starts_with("080") && !phone.starts_with("070") { "home" } else { "mobile" }}]);
    }
    p
}

fn contained_encounter(id: &str, e: &Encounter, enc_no: &str) -> Value {
    let (code, display) = if e.kind == EncounterKind::Inpatient { ("IMP", "入院") } else { ("AMB", "外来") };
    json!({
        "resourceType": "Encounter",
        "id": id,
        "meta": {"profile": [P_ENCOUNTER_CORE]},
        "identifier": [{"system": RESOURCE_ID, "value": enc_no}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code, "display": display}
    })
}

fn contained_practitioner(id: &str, u: &User, f: &Facility) -> Value {
    json!({
        "resourceType": "Practitioner",
        "id": id,
        "meta": {"profile": [P_PRACT_CORE]},
        "identifier": [{"system": format!("urn:oid:1.2.392.100495.20.3.41.1{}", f.code), "value": u.staff_id}],
        "name": [{"extension": [{"url": sys::EXT_NAME_REPRESENTATION, "valueCode": "IDE"}], "text": u.name}]
    })
}

fn bundle_identifier(f: &Facility, year: i32, local: &str) -> Value {
    json!({"system": sys::BUNDLE_IDENTIFIER, "value": format!("{}^{}^{}", f.code, year, local)})
}

fn condition_code(dx: &Dx) -> Value {
    let d = dx.disease;
    json!({
        "coding": [
            {"system": sys::MEDIS_DISEASE, "code": d.medis, "display": d.name},
            {"system": RECEIPT_DISEASE, "code": d.receipt, "display": d.name},
            {"system": ICD10, "code": d.icd10, "display": d.name}
        ],
        "text": d.name
    })
}

fn condition(
    dx: &Dx,
    e: &Encounter,
    enc_index: usize,
    f: &Facility,
    sp: &SourcePatient,
    patient_ref: &str,
    last_updated: &str,
) -> Value {
    let resolved = dx.resolved.is_some_and(|r| r <= e.end.unwrap_or(e.date) || r < e.date);
    let mut c = json!({
        "resourceType": "Condition",
        "meta": {"lastUpdated": last_updated, "profile": [P_CONDITION]},
        "extension": [inst_ext(f), dept_ext(e.dept)],
        "identifier": [{"system": RESOURCE_ID, "value": format!("{}-{}-CND{}{}", f.code, sp.local_id, dx.disease.receipt, crate::dates::compact(dx.onset))}],
        "contained": [contained_encounter("enc", e, &format!("{}-{:04}", sp.local_id, enc_index))],
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": if resolved { "resolved" } else { "active" }}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}],
        "code": condition_code(dx),
        "subject": {"reference": patient_ref},
        "encounter": {"reference": "#enc"},
        "onsetDateTime": iso(dx.onset),
        "recordedDate": iso(e.date)
    });
    if let (true, Some(r)) = (resolved, dx.resolved) {
        c["abatementDateTime"] = json!(iso(r));
    }
    c
}

fn lab_code(r: &LabResult, f: &Facility) -> Value {
    let l = r.lab;
    let system = match l.group {
        LabGroup::Core => sys::CORE_LABO_JLAC10,
        LabGroup::Infection => sys::INFECTION_LABO_JLAC10,
        LabGroup::Other => sys::JLAC10,
    };
    json!({
        "coding": [
            {"system": sys::LAB_LOCAL_CODE, "code": format!("{}{}", &f.code.as_str()[5..], l.local), "display": l.name},
            {"system": system, "code": l.jlac10, "display": l.name}
        ],
        "text": l.name
    })
}

fn lab_value(r: &LabResult, obs: &mut Value) {
    match r.value {
        LabValue::Num(v) => {
            obs["valueQuantity"] = json!({"value": v, "unit": r.lab.unit});
            let (lo, hi) = r.lab.range;
            if hi > lo {
                let flag = if v > hi {
                    Some(("H", "High"))
                } else if v < lo {
                    Some(("L", "Low"))
                } else {
                    None
                };
                if let Some((code, display)) = flag {
                    obs["interpretation"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": code, "display": display}]}]);
                }
                obs["referenceRange"] =
                    json!([{"low": {"value": lo, "unit": r.lab.unit}, "high": {"value": hi, "unit": r.lab.unit}}]);
            }
        }
        LabValue::Qual(pos) => {
            obs["valueString"] = json!(if pos { "陽性" } else { "陰性" });
            obs["interpretation"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": if pos { "POS" } else { "NEG" }, "display": if pos { "Positive" } else { "Negative" }}]}]);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn observation(
    r: &LabResult,
    taken: Date,
    e: &Encounter,
    enc_index: usize,
    seq: usize,
    f: &Facility,
    sp: &SourcePatient,
    clinician: &User,
    patient_ref: &str,
    last_updated: &str,
) -> Value {
    let specimen_id = "spc";
    let mut o = json!({
        "resourceType": "Observation",
        "meta": {"lastUpdated": last_updated, "profile": [P_LAB]},
        "extension": [inst_ext(f), dept_ext(e.dept)],
        "identifier": [{"system": RESOURCE_ID, "value": format!("{}-{}-OBS{}{:03}", f.code, sp.local_id, crate::dates::compact(taken), seq)}],
        "contained": [
            contained_encounter("enc", e, &format!("{}-{:04}", sp.local_id, enc_index)),
            contained_practitioner("prc", clinician, f),
            {
                "resourceType": "Specimen",
                "id": specimen_id,
                "meta": {"profile": [P_SPECIMEN_CORE]},
                "type": {"coding": [{"code": r.lab.specimen.0, "system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationSampleMaterialCode_CS", "display": r.lab.specimen.1}]}
            }
        ],
        "status": "final",
        "category": [{"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS", "code": "laboratory"}]}],
        "code": lab_code(r, f),
        "subject": {"reference": patient_ref},
        "effectiveDateTime": ts(taken, 3600 + seq as u64),
        "encounter": {"reference": "#enc"},
        "performer": [{"reference": "#prc"}],
        "specimen": {"reference": format!("#{specimen_id}")}
    });
    lab_value(r, &mut o);
    o
}

fn allergy(a: &Allergy, f: &Facility, sp: &SourcePatient, patient_ref: &str, last_updated: &str) -> Value {
    let al = a.allergen;
    let (category, criticality, code) = if al.category == "medication" {
        let d = codes::drug(al.code);
        (
            "medication",
            "high",
            json!({"coding": [
                {"system": sys::YJ, "code": d.yj, "display": d.name},
                {"system": sys::GENERAL_ORDER_CODE, "code": d.general, "display": d.general_name}
            ], "text": al.name}),
        )
    } else {
        let system = if al.category == "food" { sys::JFAGY_FOOD } else { sys::JFAGY_NON_FOOD };
        (
            al.category,
            "low",
            json!({"coding": [{"system": system, "code": al.code, "display": al.name}], "text": al.name}),
        )
    };
    json!({
        "resourceType": "AllergyIntolerance",
        "meta": {"lastUpdated": last_updated, "profile": [P_ALLERGY]},
        "extension": [inst_ext(f)],
        "identifier": [{"system": RESOURCE_ID, "value": format!("{}-{}-ALG{}", f.code, sp.local_id, al.code)}],
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]},
        "type": "allergy",
        "category": [category],
        "criticality": criticality,
        "code": code,
        "patient": {"reference": patient_ref},
        "onsetDateTime": iso(a.since),
        "recordedDate": iso(sp.first_visit)
    })
}

#[allow(clippy::too_many_arguments)]
fn medication_request(
    rx: &Rx,
    e: &Encounter,
    seq: usize,
    f: &Facility,
    sp: &SourcePatient,
    clinician_ref: &str,
    patient_ref: &str,
    last_updated: &str,
) -> Value {
    let d = rx.drug;
    let method = match d.form {
        Form::Oral | Form::AsNeeded => ("1", "内服"),
        Form::External => ("2", "外用"),
        Form::Injection => ("3", "注射"),
    };
    let mut m = json!({
        "resourceType": "MedicationRequest",
        "meta": {"lastUpdated": last_updated, "profile": [P_MEDREQ]},
        "extension": [inst_ext(f)],
        "identifier": [
            {"system": "http://jpfhir.jp/fhir/core/mhlw/IdSystem/Medication-RPGroupNumber", "value": format!("{}", seq + 1)},
            {"system": "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicationAdministrationIndex", "value": "1"},
            {"system": RESOURCE_ID, "value": format!("{}-{}-MRQ{}{:02}", f.code, sp.local_id, crate::dates::compact(e.end.unwrap_or(e.date)), seq)}
        ],
        "status": "completed",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [
            {"system": sys::YJ, "code": d.yj, "display": d.name},
            {"system": sys::GENERAL_ORDER_CODE, "code": d.general, "display": d.general_name}
        ], "text": d.name},
        "subject": {"reference": patient_ref},
        "authoredOn": ts(e.end.unwrap_or(e.date), 7200 + seq as u64),
        "requester": {"reference": clinician_ref},
        "dosageInstruction": [{
            "text": format!("{} {}日分", d.usage.1, rx.days),
            "timing": {"code": {"coding": [{"system": "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationUsage_ePrescription", "code": d.usage.0, "display": d.usage.1}], "text": d.usage.1}},
            "method": {"coding": [{"system": "http://jami.jp/CodeSystem/MedicationMethodBasicUsage", "code": method.0, "display": method.1}]},
            "doseAndRate": [{"doseQuantity": {"value": round2(rx.per_day), "unit": d.unit.1, "system": "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationUnitMERIT9Code", "code": d.unit.0}}]
        }],
        "dispenseRequest": {"quantity": {"value": rx.total(), "unit": d.unit.1, "system": "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationUnitMERIT9Code", "code": d.unit.0}}
    });
    if d.form == Form::Oral {
        m["dispenseRequest"]["expectedSupplyDuration"] =
            json!({"value": rx.days, "unit": "日", "system": "http://unitsofmeasure.org", "code": "d"});
    }
    m
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn wrap(full_url: &str, resource: Value) -> Value {
    json!({"fullUrl": full_url, "resource": resource})
}

fn year_of(d: Date) -> i32 {
    d.year()
}

/// The 5情報 collection Bundles a FHIR-submitting facility holds for one patient at the end of
/// the history: one per resource type, identified by the year of the last visit. Each
/// submission replaces the previous one with the same identifier, so only the final state is
/// written: every diagnosis with its latest status, the lab results of the last year (at least
/// the last three of each item, as the national service keeps them), and the allergies.
pub fn collection_bundles(region: &Region, seed: u64, person: &PersonHistory, sp: &SourcePatient) -> Vec<Value> {
    let f = region.facility(sp.facility);
    let encs: Vec<(usize, &Encounter)> =
        person.care.encounters.iter().enumerate().filter(|(_, e)| e.facility == sp.facility).collect();
    let Some(last) = encs.iter().map(|(_, e)| e.end.unwrap_or(e.date)).max() else { return Vec::new() };
    let year = year_of(last);
    let updated = ts(last, 64_800);
    let mut out = Vec::new();
    // Conditions: each disease once, from its latest encounter.
    let mut conds: Vec<(usize, &Encounter, &Dx)> = Vec::new();
    for (i, e) in &encs {
        for dx in &e.diagnoses {
            match conds.iter_mut().find(|(_, _, d)| d.disease.key == dx.disease.key) {
                Some(slot) => *slot = (*i, e, dx),
                None => conds.push((*i, e, dx)),
            }
        }
    }
    let mut labs: Vec<(usize, &Encounter, Date, &LabResult)> = Vec::new();
    for (i, e) in &encs {
        labs.extend(e.labs.iter().map(|r| (*i, *e, e.date, r)));
        for (d, panel) in &e.stay_labs {
            labs.extend(panel.iter().map(|r| (*i, *e, *d, r)));
        }
    }
    let year_ago = crate::dates::add_days(last, -365);
    let keep: Vec<bool> = (0..labs.len())
        .map(|k| labs[k].2 > year_ago || labs[k + 1..].iter().filter(|x| x.3.lab.key == labs[k].3.lab.key).count() < 3)
        .collect();
    let allergies = recorded_allergies(seed, person, sp);
    for (kind, tag) in [("CND", "Condition"), ("OBS", "Observation"), ("ALG", "AllergyIntolerance")] {
        let mut ids = Ids::new(seed, &[person.identity.index, u64::from(sp.facility), kind.as_bytes()[0] as u64]);
        let pat_url = ids.next();
        let mut entries = vec![wrap(&pat_url, patient(sp, f, &updated))];
        match kind {
            "CND" => {
                for (i, e, dx) in &conds {
                    entries.push(wrap(&ids.next(), condition(dx, e, *i, f, sp, &pat_url, &updated)));
                }
            }
            "OBS" => {
                for (seq, ((i, e, d, r), _)) in labs.iter().zip(&keep).filter(|(_, k)| **k).enumerate() {
                    let clinician = &region.users[e.clinician as usize];
                    entries.push(wrap(
                        &ids.next(),
                        observation(r, *d, e, *i, seq + 1, f, sp, clinician, &pat_url, &updated),
                    ));
                }
            }
            _ => {
                for a in &allergies {
                    entries.push(wrap(&ids.next(), allergy(a, f, sp, &pat_url, &updated)));
                }
            }
        }
        if entries.len() < 2 {
            continue;
        }
        out.push(json!({
            "resourceType": "Bundle",
            "meta": {"lastUpdated": updated, "profile": [P_BUNDLE_CLINS], "tag": [{"system": sys::BUNDLE_RESOURCE_TYPE, "code": tag}]},
            "identifier": bundle_identifier(f, year, &format!("{}-{}", kind, sp.local_id)),
            "type": "collection",
            "timestamp": updated,
            "entry": entries
        }));
    }
    out
}

/// The allergies a facility has recorded for a patient (asked at the first visit; some are
/// not mentioned).
pub(crate) fn recorded_allergies(seed: u64, person: &PersonHistory, sp: &SourcePatient) -> Vec<Allergy> {
    person
        .care
        .allergies
        .iter()
        .filter(|a| {
            a.since <= sp.last_visit && key(seed, &[person.identity.index, u64::from(sp.facility), 0xA11E]) % 10 < 7
        })
        .cloned()
        .collect()
}

fn organization(f: &Facility) -> Value {
    json!({
        "resourceType": "Organization",
        "meta": {"lastUpdated": "2023-01-01T09:00:00+09:00", "profile": [P_ORG_ECS]},
        "extension": [inst_ext(f)],
        "identifier": [{"system": sys::INSTITUTION_NUMBER, "value": f.code.as_str()}],
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}],
        "name": f.name,
        "telecom": [{"system": "phone", "value": f.phone}],
        "address": [{"text": f.address, "postalCode": f.postal_code, "country": "JP"}]
    })
}

fn practitioner(u: &User, f: &Facility) -> Value {
    let (fam, giv) = split_name(&u.name);
    let (fk, gk) = split_name(&u.kana);
    json!({
        "resourceType": "Practitioner",
        "meta": {"lastUpdated": "2023-01-01T09:00:00+09:00", "profile": [P_PRACT_ECS]},
        "extension": [inst_ext(f)],
        "identifier": [{"system": format!("urn:oid:1.2.392.100495.20.3.41.1{}", f.code), "value": u.staff_id}],
        "name": [name_parts(fam, giv, "IDE"), name_parts(fk, gk, "SYL")]
    })
}

fn encounter_res(e: &Encounter, f: &Facility, sp: &SourcePatient, enc_index: usize, patient_ref: &str) -> Value {
    let (code, display) = if e.kind == EncounterKind::Inpatient { ("IMP", "入院") } else { ("AMB", "外来") };
    let mut period = json!({"start": iso(e.date)});
    if let Some(end) = e.end {
        period["end"] = json!(iso(end));
    }
    json!({
        "resourceType": "Encounter",
        "meta": {"lastUpdated": ts(e.end.unwrap_or(e.date), 61_200), "profile": [P_ENCOUNTER_ECS]},
        "extension": [inst_ext(f)],
        "identifier": [{"system": RESOURCE_ID, "value": format!("{}-{:04}", sp.local_id, enc_index)}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code, "display": display},
        "subject": {"reference": patient_ref},
        "period": period
    })
}

fn section(code: &str, title: &str, text: &str, entries: &[(&str, &str)]) -> Value {
    let mut s = json!({
        "title": title,
        "code": {"coding": [{"system": SECTION, "code": code}]},
        "text": div(text)
    });
    if !entries.is_empty() {
        s["entry"] = Value::Array(entries.iter().map(|(r, t)| json!({"reference": r, "type": t})).collect());
    }
    s
}

fn docref(text: &str, f: &Facility, patient_ref: &str, date: Date, id: &str) -> Value {
    use base64::Engine as _;
    // The clinical course as a plain-text attachment.
    let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    let desc = "臨床経過";
    json!({
        "resourceType": "DocumentReference",
        "meta": {"lastUpdated": ts(date, 61_200), "profile": [P_DOCREF_ECS]},
        "extension": [inst_ext(f)],
        "identifier": [{"system": RESOURCE_ID, "value": id}],
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
        "subject": {"reference": patient_ref},
        "date": ts(date, 61_200),
        "description": desc,
        "content": [{"attachment": {"contentType": "text/plain;charset=utf-8", "data": b64}}]
    })
}

/// A 診療情報提供書 written at encounter `enc_index`, with a 退院時サマリー attached when the
/// referral follows a discharge.
pub fn referral_bundle(
    region: &Region,
    seed: u64,
    person: &PersonHistory,
    sp: &SourcePatient,
    enc_index: usize,
) -> Option<Value> {
    let e = person.care.encounters.get(enc_index)?;
    let r = e.referral.as_ref()?;
    let f = region.facility(e.facility);
    let to = region.facility(r.to);
    let author = &region.users[e.clinician as usize];
    let date = e.end.unwrap_or(e.date);
    let mut ids = Ids::new(seed, &[person.identity.index, u64::from(e.facility), enc_index as u64, 0x0052_4546]);
    let comp_url = ids.next();
    let pat_url = ids.next();
    let enc_url = ids.next();
    let author_url = ids.next();
    let org_url = ids.next();
    let to_org_url = ids.next();
    let updated = ts(date, 57_600);
    let mut entries = vec![];
    let mut problem_refs: Vec<(String, &str)> = Vec::new();
    let mut cond_entries = Vec::new();
    for dx in &e.diagnoses {
        let u = ids.next();
        cond_entries.push(wrap(&u, condition(dx, e, enc_index, f, sp, &pat_url, &updated)));
        problem_refs.push((u, "Condition"));
    }
    let allergies = recorded_allergies(seed, person, sp);
    let mut allergy_refs: Vec<(String, &str)> = Vec::new();
    let mut allergy_entries = Vec::new();
    for a in &allergies {
        let u = ids.next();
        allergy_entries.push(wrap(&u, allergy(a, f, sp, &pat_url, &updated)));
        allergy_refs.push((u, "AllergyIntolerance"));
    }
    let mut med_refs: Vec<(String, &str)> = Vec::new();
    let mut med_entries = Vec::new();
    for (i, rx) in e.prescriptions.iter().enumerate() {
        let u = ids.next();
        med_entries.push(wrap(&u, medication_request(rx, e, i, f, sp, &author_url, &pat_url, &updated)));
        med_refs.push((u, "MedicationRequest"));
    }
    let dx_text = e.diagnoses.iter().map(|d| d.disease.name).collect::<Vec<_>>().join("、");
    let med_text = if e.prescriptions.is_empty() {
        "なし".to_owned()
    } else {
        e.prescriptions.iter().map(|r| format!("{} {}", r.drug.name, r.drug.usage.1)).collect::<Vec<_>>().join("、")
    };
    let allergy_text = if allergies.is_empty() {
        "特記事項なし".to_owned()
    } else {
        allergies.iter().map(|a| a.allergen.name).collect::<Vec<_>>().join("、")
    };
    let course = match e.kind {
        EncounterKind::Inpatient => format!(
            "{}から{}まで入院加療。経過良好にて退院となりました。詳細は添付の退院時サマリーをご参照ください。",
            iso(e.date),
            iso(date)
        ),
        _ => format!("{}にて当院通院中。{}", dx_text, r.purpose),
    };
    let course_url = ids.next();
    let mut structured = vec![
        section("950", "紹介目的", &r.purpose, &[(enc_url.as_str(), "Encounter")]),
        section(
            "340",
            "傷病名・主訴",
            &dx_text,
            &problem_refs.iter().map(|(u, t)| (u.as_str(), *t)).collect::<Vec<_>>(),
        ),
        section("360", "現病歴", &course, &[]),
        section(
            "510",
            "アレルギー・不耐性反応",
            &allergy_text,
            &allergy_refs.iter().map(|(u, t)| (u.as_str(), *t)).collect::<Vec<_>>(),
        ),
        section("330", "臨床経過", &course, &[(course_url.as_str(), "DocumentReference")]),
        section("430", "投薬指示", &med_text, &med_refs.iter().map(|(u, t)| (u.as_str(), *t)).collect::<Vec<_>>()),
    ];
    // Remove empty-entry sections' "entry" keys is done by `section`; keep the order of the example.
    structured.retain(|s| s.get("title").is_some());
    let mut sections = vec![
        section(
            "920",
            "紹介元情報",
            &f.name,
            &[(org_url.as_str(), "Organization"), (author_url.as_str(), "Practitioner")],
        ),
        section("910", "紹介先情報", &to.name, &[(to_org_url.as_str(), "Organization")]),
        json!({"title": "構造情報", "code": {"coding": [{"system": SECTION, "code": "300"}]}, "text": div("構造情報"), "section": structured}),
    ];
    // The attached discharge summary.
    let mut attached = None;
    if let Some(adm) = r.discharge_summary_of
        && let Some(ds) = discharge_summary_bundle(region, seed, person, sp, adm)
    {
        let u = ids.next();
        sections.push(section("210", "添付情報", "退院時サマリー", &[(u.as_str(), "Bundle")]));
        attached = Some(wrap(&u, ds));
    }
    let composition = json!({
        "resourceType": "Composition",
        "meta": {"lastUpdated": updated, "profile": [P_COMP_REFERRAL]},
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/composition-clinicaldocument-versionNumber", "valueString": "1.0"}],
        "identifier": {"system": RESOURCE_ID, "value": format!("{}-{}-{:04}", f.code, date.year(), enc_index)},
        "status": "final",
        "type": {"coding": [{"system": sys::DOC_TYPECODES, "code": "57133-1", "display": "診療情報提供書"}]},
        "category": [{"coding": [{"system": "http://jpfhir.jp/fhir/Common/CodeSystem/doc-subtypecodes", "code": if e.kind == EncounterKind::Inpatient { "DISCHARGE" } else { "OUTPATIENT" }, "display": if e.kind == EncounterKind::Inpatient { "退院時文書" } else { "外来文書" }}]}],
        "subject": {"reference": pat_url, "type": "Patient"},
        "encounter": {"reference": enc_url, "type": "Encounter"},
        "date": updated,
        "author": [{"reference": author_url, "type": "Practitioner"}, {"reference": org_url, "type": "Organization"}],
        "title": "診療情報提供書",
        "custodian": {"reference": org_url, "type": "Organization"},
        "event": [{"code": [{"text": "診療情報提供書発行"}], "period": {"start": iso(date)}}],
        "section": sections
    });
    entries.push(wrap(&comp_url, composition));
    entries.push(wrap(&pat_url, patient(sp, f, &updated)));
    entries.push(wrap(&enc_url, encounter_res(e, f, sp, enc_index, &pat_url)));
    entries.push(wrap(&author_url, practitioner(author, f)));
    entries.push(wrap(&org_url, organization(f)));
    entries.push(wrap(&to_org_url, organization(to)));
    entries.extend(cond_entries);
    entries.extend(allergy_entries);
    entries.extend(med_entries);
    entries.push(wrap(
        &course_url,
        docref(&course, f, &pat_url, date, &format!("{}-{}-DOC{:04}", f.code, sp.local_id, enc_index)),
    ));
    entries.extend(attached);
    Some(json!({
        "resourceType": "Bundle",
        "meta": {"lastUpdated": updated, "profile": [P_BUNDLE_REFERRAL]},
        "identifier": bundle_identifier(f, date.year(), &format!("REF-{}-{:04}", sp.local_id, enc_index)),
        "language": "ja",
        "type": "document",
        "timestamp": updated,
        "entry": entries
    }))
}

/// The 退院時サマリー of an admission (attached to the discharge referral).
pub fn discharge_summary_bundle(
    region: &Region,
    seed: u64,
    person: &PersonHistory,
    sp: &SourcePatient,
    adm_index: usize,
) -> Option<Value> {
    let e = person.care.encounters.get(adm_index)?;
    let end = e.end?;
    let f = region.facility(e.facility);
    let author = &region.users[e.clinician as usize];
    let mut ids = Ids::new(seed, &[person.identity.index, u64::from(e.facility), adm_index as u64, 0x4453_554d]);
    let comp_url = ids.next();
    let pat_url = ids.next();
    let enc_url = ids.next();
    let author_url = ids.next();
    let org_url = ids.next();
    let updated = ts(end, 54_000);
    let main = e.diagnoses.iter().find(|d| d.main).or(e.diagnoses.first())?;
    let main_url = ids.next();
    let mut cond_entries = vec![wrap(&main_url, condition(main, e, adm_index, f, sp, &pat_url, &updated))];
    let mut other_refs = Vec::new();
    for dx in e.diagnoses.iter().filter(|d| !d.main) {
        let u = ids.next();
        cond_entries.push(wrap(&u, condition(dx, e, adm_index, f, sp, &pat_url, &updated)));
        other_refs.push(u);
    }
    let mut med_entries = Vec::new();
    let mut med_refs = Vec::new();
    for (i, rx) in e.prescriptions.iter().enumerate() {
        let u = ids.next();
        med_entries.push(wrap(&u, medication_request(rx, e, i, f, sp, &author_url, &pat_url, &updated)));
        med_refs.push(u);
    }
    let course_url = ids.next();
    let labs_text = e
        .labs
        .iter()
        .filter(|l| matches!(l.value, LabValue::Num(_)))
        .take(6)
        .map(|l| match l.value {
            LabValue::Num(v) => format!("{} {}{}", l.lab.name, v, l.lab.unit),
            LabValue::Qual(p) => format!("{} {}", l.lab.name, if p { "陽性" } else { "陰性" }),
        })
        .collect::<Vec<_>>()
        .join("、");
    let course = format!(
        "{}の診断で{}に入院。入院時検査：{}。{}治療を行い、{}に軽快退院。",
        main.disease.name,
        iso(e.date),
        labs_text,
        e.injections.iter().map(|r| r.drug.name).collect::<Vec<_>>().join("、").chars().take(80).collect::<String>()
            + if e.injections.is_empty() { "保存的" } else { "による" },
        iso(end)
    );
    let main_ref = [(main_url.as_str(), "Condition")];
    let others: Vec<(&str, &str)> = other_refs.iter().map(|u| (u.as_str(), "Condition")).collect();
    let meds: Vec<(&str, &str)> = med_refs.iter().map(|u| (u.as_str(), "MedicationRequest")).collect();
    let med_text = if e.prescriptions.is_empty() {
        "退院時処方なし".to_owned()
    } else {
        e.prescriptions.iter().map(|r| r.drug.name).collect::<Vec<_>>().join("、")
    };
    let structured = vec![
        section("322", "入院時詳細", &format!("入院日 {}", iso(e.date)), &[(enc_url.as_str(), "Encounter")]),
        section("342", "入院時診断", main.disease.name, &main_ref),
        section("352", "主訴", main.disease.name, &[]),
        section("312", "入院理由", &format!("{}の加療目的", main.disease.name), &[]),
        section(
            "362",
            "現病歴",
            &format!("{}頃より症状あり受診。{}と診断され入院となった。", iso(e.date), main.disease.name),
            &others,
        ),
        section("333", "入院中経過", &course, &[(course_url.as_str(), "DocumentReference")]),
        section("324", "退院時詳細", &format!("退院日 {}", iso(end)), &[(enc_url.as_str(), "Encounter")]),
        section("344", "退院時診断", main.disease.name, &main_ref),
        section("444", "退院時投薬指示", &med_text, &meds),
        section("424", "退院時方針指示", "かかりつけ医での継続加療をお願いします。", &[]),
    ];
    let composition = json!({
        "resourceType": "Composition",
        "meta": {"lastUpdated": updated, "profile": [P_COMP_DISCHARGE]},
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/composition-clinicaldocument-versionNumber", "valueString": "1.0"}],
        "identifier": {"system": RESOURCE_ID, "value": format!("{}-{}-DS{:04}", f.code, end.year(), adm_index)},
        "status": "final",
        "type": {"coding": [{"system": sys::DOC_TYPECODES, "code": "18842-5", "display": "退院時サマリー"}]},
        "category": [{"coding": [{"system": "http://jpfhir.jp/fhir/Common/CodeSystem/doc-subtypecodes", "code": "DISCHARGE", "display": "退院時文書"}]}],
        "subject": {"reference": pat_url, "type": "Patient"},
        "encounter": {"reference": enc_url, "type": "Encounter"},
        "date": updated,
        "author": [{"reference": author_url, "type": "Practitioner"}, {"reference": org_url, "type": "Organization"}],
        "title": "退院時サマリー",
        "custodian": {"reference": org_url, "type": "Organization"},
        "event": [{"period": {"start": iso(e.date), "end": iso(end)}}],
        "section": [json!({"title": "構造情報", "code": {"coding": [{"system": SECTION, "code": "300"}]}, "section": structured})]
    });
    let mut entries = vec![
        wrap(&comp_url, composition),
        wrap(&pat_url, patient(sp, f, &updated)),
        wrap(&enc_url, encounter_res(e, f, sp, adm_index, &pat_url)),
        wrap(&author_url, practitioner(author, f)),
        wrap(&org_url, organization(f)),
    ];
    entries.extend(cond_entries);
    entries.extend(med_entries);
    entries.push(wrap(
        &course_url,
        docref(&course, f, &pat_url, end, &format!("{}-{}-DSC{:04}", f.code, sp.local_id, adm_index)),
    ));
    Some(json!({
        "resourceType": "Bundle",
        "meta": {"lastUpdated": updated, "profile": [P_BUNDLE_DISCHARGE]},
        "identifier": bundle_identifier(f, end.year(), &format!("DIS-{}-{:04}", sp.local_id, adm_index)),
        "language": "ja",
        "type": "document",
        "timestamp": updated,
        "entry": entries
    }))
}

const CK_SYSTEM: &str = "urn:oid:1.2.392.200119.6.1005";

/// A 健康診断結果報告書 for a checkup encounter.
pub fn checkup_bundle(
    region: &Region,
    seed: u64,
    person: &PersonHistory,
    sp: &SourcePatient,
    enc_index: usize,
) -> Option<Value> {
    let e = person.care.encounters.get(enc_index)?;
    let ck = e.checkup.as_ref()?;
    let f = region.facility(e.facility);
    let author = &region.users[e.clinician as usize];
    let insurer = &region.insurers[sp.insurance.insurer as usize];
    let mut ids = Ids::new(seed, &[person.identity.index, u64::from(e.facility), enc_index as u64, 0x434b]);
    let comp_url = ids.next();
    let pat_url = ids.next();
    let pr_url = ids.next();
    let org_url = ids.next();
    let enc_url = ids.next();
    let cov_url = ids.next();
    let ins_url = ids.next();
    let updated = ts(e.date, 50_000);
    let d = iso(e.date);
    let mut obs: Vec<(String, Value)> = Vec::new();
    let mut push_q = |ids: &mut Ids, code: &str, display: &str, cat: &str, value: f64, unit: &str, ucum: &str| {
        obs.push((ids.next(), json!({
            "resourceType": "Observation",
            "meta": {"lastUpdated": updated, "profile": ["http://jpfhir.jp/fhir/eCheckup/StructureDefinition/JP_Observation_eCheckupGeneral"]},
            "status": "final",
            "category": [{"coding": [{"code": cat, "system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS"}]}],
            "code": {"coding": [{"code": code, "system": CK_SYSTEM, "display": display}]},
            "subject": {"reference": pat_url},
            "effectiveDateTime": d,
            "valueQuantity": {"value": value, "code": ucum, "system": "http://unitsofmeasure.org", "unit": unit}
        })));
    };
    let bmi = ((ck.weight / (ck.height / 100.0).powi(2)) * 10.0).round() / 10.0;
    push_q(&mut ids, "9N001000000000001", "身長", "body-measurement", ck.height, "cm", "cm");
    push_q(&mut ids, "9N006000000000001", "体重", "body-measurement", ck.weight, "kg", "kg");
    push_q(&mut ids, "9N011000000000001", "BMI", "body-measurement", bmi, "kg/m2", "kg/m2");
    push_q(&mut ids, "9N016160100000001", "腹囲", "body-measurement", ck.waist, "cm", "cm");
    push_q(&mut ids, "9A751000000000001", "収縮期血圧（１回目）", "vital-signs", f64::from(ck.bp.0), "mmHg", "mm[Hg]");
    push_q(&mut ids, "9A761000000000001", "拡張期血圧（１回目）", "vital-signs", f64::from(ck.bp.1), "mmHg", "mm[Hg]");
    for r in &e.labs {
        if let LabValue::Num(v) = r.value {
            let display = r.lab.name;
            push_q(&mut ids, r.lab.jlac10, display, "laboratory", v, r.lab.unit, r.lab.unit);
        }
    }
    let list = format!(
        "<ul><li>身長 {} cm</li><li>体重 {} kg</li><li>BMI {} kg/m2</li><li>腹囲 {} cm</li><li>血圧 {}/{} mmHg</li></ul>",
        ck.height, ck.weight, bmi, ck.waist, ck.bp.0, ck.bp.1
    );
    let composition = json!({
        "resourceType": "Composition",
        "meta": {"lastUpdated": updated, "profile": ["http://jpfhir.jp/fhir/eCheckup/StructureDefinition/JP_Composition_eCheckupGeneral"]},
        "language": "ja",
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/composition-clinicaldocument-versionNumber", "valueString": "1.0"}],
        "identifier": {"system": RESOURCE_ID, "value": format!("{}-{}-CK{:04}", f.code, e.date.year(), enc_index)},
        "status": "final",
        "type": {"coding": [{"code": "53576-5", "system": sys::DOC_TYPECODES, "display": "検診・健診報告書"}]},
        "category": [{"coding": [{"system": "urn:oid:2.16.840.1.113883.2.2.1.6.1001", "code": "10", "display": "特定健診"}]}],
        "subject": {"reference": pat_url},
        "encounter": {"reference": enc_url},
        "date": updated,
        "author": [{"reference": pr_url}, {"reference": org_url}],
        "title": "健康診断結果のお知らせ",
        "custodian": {"reference": org_url},
        "event": [{"code": [{"coding": [{"code": "010", "system": "urn:oid:1.2.392.200119.6.1002", "display": "特定健診"}]}], "period": {"start": d, "end": d}, "detail": [{"reference": enc_url}]}],
        "section": [{
            "title": "健診セクション",
            "code": {"coding": [{"code": "01011", "system": "http://jpfhir.jp/fhir/eCheckup/CodeSystem/section-code", "display": "特定健診検査結果セクション"}]},
            "text": {"status": "generated", "div": format!("<div xmlns=\"{XHTML}\">{list}</div>")},
            "entry": obs.iter().map(|(u, _)| json!({"reference": u})).collect::<Vec<_>>()
        }]
    });
    let (fam, giv) = split_name(&author.name);
    let (fk, gk) = split_name(&author.kana);
    let coverage_ext: Vec<Value> = [
        ("JP_Coverage_InsuredPersonSymbol", sp.insurance.id.symbol()),
        ("JP_Coverage_InsuredPersonNumber", sp.insurance.id.number()),
        ("JP_Coverage_InsuredPersonSubNumber", sp.insurance.id.branch().unwrap_or("")),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| json!({"url": format!("http://jpfhir.jp/fhir/core/Extension/StructureDefinition/{k}"), "valueString": v}))
    .collect();
    let mut entries = vec![
        wrap(&comp_url, composition),
        wrap(&pat_url, patient(sp, f, &updated)),
        wrap(
            &pr_url,
            json!({
                "resourceType": "Practitioner",
                "meta": {"lastUpdated": updated, "profile": ["http://jpfhir.jp/fhir/eCheckup/StructureDefinition/JP_Practitioner_eCheckupGeneral"]},
                "name": [name_parts(fam, giv, "IDE"), name_parts(fk, gk, "SYL")]
            }),
        ),
        wrap(
            &org_url,
            json!({
                "resourceType": "Organization",
                "meta": {"lastUpdated": updated, "profile": ["http://jpfhir.jp/fhir/eCheckup/StructureDefinition/JP_Organization_eCheckupGeneral"]},
                "identifier": [{"system": sys::INSTITUTION_NUMBER, "value": f.code.as_str()}],
                "type": [{"coding": [{"code": "prov", "system": "http://terminology.hl7.org/CodeSystem/organization-type"}]}],
                "name": f.name,
                "telecom": [{"system": "phone", "value": f.phone}],
                "address": [{"text": f.address, "postalCode": f.postal_code, "country": "JP"}]
            }),
        ),
        wrap(
            &enc_url,
            json!({
                "resourceType": "Encounter",
                "meta": {"lastUpdated": updated, "profile": ["http://jpfhir.jp/fhir/eCheckup/StructureDefinition/JP_Encounter_eCheckupGeneral"]},
                "status": "finished",
                "class": {"code": "checkup", "system": "http://jpfhir.jp/fhir/eCheckup/CodeSystem/encounter-category", "display": "健診"},
                "period": {"start": d, "end": d},
                "serviceProvider": {"reference": org_url}
            }),
        ),
        wrap(
            &cov_url,
            json!({
                "resourceType": "Coverage",
                "meta": {"lastUpdated": updated, "profile": ["http://jpfhir.jp/fhir/eCheckup/StructureDefinition/JP_CoverageInsurance_eCheckupGeneral"]},
                "status": "active",
                "type": {"coding": [{"system": "urn:oid:1.2.392.100495.20.2.61", "code": "1"}]},
                "extension": coverage_ext,
                "subscriberId": format!("{}:{}", sp.insurance.id.symbol(), sp.insurance.id.number()),
                "beneficiary": {"reference": pat_url},
                "dependent": sp.insurance.id.branch().unwrap_or(""),
                "relationship": {"coding": [{"code": if sp.insurance.principal { "1" } else { "2" }, "system": "urn:oid:1.2.392.100495.20.2.62", "display": if sp.insurance.principal { "被保険者" } else { "被扶養者" }}]},
                "payor": [{"reference": ins_url}]
            }),
        ),
        wrap(
            &ins_url,
            json!({
                "resourceType": "Organization",
                "meta": {"lastUpdated": updated, "profile": ["http://jpfhir.jp/fhir/eCheckup/StructureDefinition/JP_OrganizationInsurer_eCheckupGeneral"]},
                "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.61", "value": insurer.number.as_str()}],
                "type": [{"coding": [{"code": "ins", "system": "http://terminology.hl7.org/CodeSystem/organization-type"}]}],
                "name": insurer.name
            }),
        ),
    ];
    entries.extend(obs.into_iter().map(|(u, o)| wrap(&u, o)));
    Some(json!({
        "resourceType": "Bundle",
        "meta": {"lastUpdated": updated, "profile": ["http://jpfhir.jp/fhir/eCheckup/StructureDefinition/JP_Bundle_eCheckupGeneral"]},
        "identifier": {"system": "http://jpfhir.jp/fhir/core/IdSystem/documentInstance-identifier", "value": format!("{}^{}-{:08}", f.code, e.date.year(), key(seed, &[person.identity.index, enc_index as u64]) % 100_000_000)},
        "type": "document",
        "timestamp": updated,
        "entry": entries
    }))
}
