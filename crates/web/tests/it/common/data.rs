//! Synthetic Japanese clinical histories for the page tests and the benchmark: one person seen
//! at several facilities over years — visits and admissions, diagnoses (one 未告知), drug and
//! food allergies, the infection items, series of the core lab items, prescriptions and
//! progress notes — as one FHIR transaction Bundle per facility. Codes and names come from
//! musubi-synth's tables (real JLAC10, YJ and disease names). Deterministic for a seed.

#![allow(dead_code)]

use musubi_domain::systems;
use musubi_synth::codes::{DISEASES, DRUGS, LABS, LabGroup};
use serde_json::{Value, json};

pub const DAY_MS: i64 = 86_400_000;

/// Who the synthetic patient is.
#[derive(Debug, Clone)]
pub struct Person {
    pub family: &'static str,
    pub given: &'static str,
    pub kana_family: &'static str,
    pub kana_given: &'static str,
    pub gender: &'static str,
    pub birth: &'static str,
    pub insurance: &'static str,
    pub state: &'static str,
    pub city: &'static str,
    pub line: &'static str,
    pub phone: &'static str,
}

impl Person {
    pub fn name(&self) -> String {
        format!("{} {}", self.family, self.given)
    }

    pub fn kana(&self) -> String {
        format!("{} {}", self.kana_family, self.kana_given)
    }
}

/// The test patient: 髙 (a variant kanji) in the name on purpose.
pub const YUI: Person = Person {
    family: "髙橋",
    given: "結衣",
    kana_family: "タカハシ",
    kana_given: "ユイ",
    gender: "female",
    birth: "1958-03-14",
    insurance: "06139999:ａ１:１２３:01",
    state: "東京都",
    city: "千代田区",
    line: "丸の内1-1-1",
    phone: "03-1234-5678",
};

/// Where the person is a patient: the facility and its local patient number.
#[derive(Debug, Clone)]
pub struct Site {
    pub facility: String,
    pub local_id: String,
    pub hospital: bool,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Plan {
    pub years: i64,
    pub visits_per_year: i64,
    pub now_ms: i64,
    pub seed: u64,
    /// Add the 未告知 diagnosis (胃癌) at the first site.
    pub uninformed: bool,
}

/// A small deterministic generator (xorshift; no dependency for test data).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn iso_date(ms: i64) -> String {
    let d = musubi_fhir::datetime::jst_date(ms).unwrap();
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

fn iso_datetime(ms: i64) -> String {
    format!("{}T10:30:00+09:00", iso_date(ms))
}

fn institution(facility: &str) -> Value {
    json!([{"url": "http://jpfhir.jp/fhir/clins/Extension/StructureDefinition/JP_eCS_InstitutionNumber",
            "valueIdentifier": {"system": "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no", "value": facility}}])
}

/// The Patient resource as a facility holds it.
pub fn patient(p: &Person, facility: &str, local_id: &str) -> Value {
    let rep = |code: &str| json!([{"url": systems::EXT_NAME_REPRESENTATION, "valueCode": code}]);
    json!({"resourceType": "Patient",
        "identifier": [
            {"system": format!("{}{facility}", systems::LOCAL_PATIENT_ID_PREFIX), "value": local_id},
            {"system": systems::INSURANCE_MEMBER_ID, "value": p.insurance}],
        "name": [
            {"extension": rep("IDE"), "text": p.name(), "family": p.family, "given": [p.given]},
            {"extension": rep("SYL"), "text": p.kana(), "family": p.kana_family, "given": [p.kana_given]}],
        "gender": p.gender, "birthDate": p.birth,
        "telecom": [{"system": "phone", "value": p.phone}],
        "address": [{"text": format!("{}{}{}", p.state, p.city, p.line), "state": p.state, "city": p.city, "line": [p.line]}]})
}

fn entry(n: &mut u64, resource: Value) -> Value {
    *n += 1;
    let rtype = resource["resourceType"].as_str().unwrap_or("Basic").to_owned();
    json!({"fullUrl": format!("urn:uuid:00000000-0000-4000-8000-{:012x}", *n), "resource": resource,
           "request": {"method": "POST", "url": rtype}})
}

fn disease(key: &str) -> &'static musubi_synth::codes::Disease {
    DISEASES.iter().find(|d| d.key == key).unwrap()
}

fn drug(key: &str) -> &'static musubi_synth::codes::Drug {
    DRUGS.iter().find(|d| d.key == key).unwrap()
}

fn lab(key: &str) -> &'static musubi_synth::codes::Lab {
    LABS.iter().find(|l| l.key == key).unwrap()
}

fn condition(site: &Site, pref: &str, key: &str, onset_ms: i64, status: &str, flags: &[&str]) -> Value {
    let d = disease(key);
    let mut c = json!({"resourceType": "Condition", "extension": institution(&site.facility),
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "code": {"coding": [{"system": systems::MEDIS_DISEASE, "code": d.medis, "display": d.name}], "text": d.name},
        "subject": {"reference": pref}, "onsetDateTime": iso_date(onset_ms), "recordedDate": iso_date(onset_ms)});
    if status == "resolved" {
        c["abatementDateTime"] = json!(iso_date(onset_ms + 14 * DAY_MS));
    }
    if !flags.is_empty() {
        let tags: Vec<Value> =
            flags.iter().map(|f| json!({"system": systems::EHRSHRS_INDICATION, "code": f})).collect();
        c["meta"] = json!({"tag": tags});
    }
    c
}

fn observation(site: &Site, pref: &str, key: &str, when: i64, value: f64) -> Value {
    let l = lab(key);
    let set = if l.group == LabGroup::Infection { systems::INFECTION_LABO_JLAC10 } else { systems::CORE_LABO_JLAC10 };
    let factor = 10f64.powi(i32::from(l.decimals));
    let v = (value * factor).round() / factor;
    let mut o = json!({"resourceType": "Observation", "extension": institution(&site.facility), "status": "final",
        "category": [{"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS", "code": "laboratory"}]}],
        "code": {"coding": [{"system": set, "code": l.jlac10, "display": l.name}, {"system": systems::JLAC10, "code": l.jlac10, "display": l.name}], "text": l.name},
        "subject": {"reference": pref}, "effectiveDateTime": iso_datetime(when),
        "valueQuantity": {"value": v, "unit": l.unit},
        "referenceRange": [{"low": {"value": l.range.0, "unit": l.unit}, "high": {"value": l.range.1, "unit": l.unit}}]});
    let flag = if v > l.range.1 {
        Some("H")
    } else if v < l.range.0 {
        Some("L")
    } else {
        None
    };
    if let Some(f) = flag {
        o["interpretation"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": f}]}]);
    }
    o
}

fn infection(site: &Site, pref: &str, key: &str, when: i64, positive: bool) -> Value {
    let l = lab(key);
    json!({"resourceType": "Observation", "extension": institution(&site.facility), "status": "final",
        "category": [{"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS", "code": "laboratory"}]}],
        "code": {"coding": [{"system": systems::INFECTION_LABO_JLAC10, "code": l.jlac10, "display": l.name}, {"system": systems::JLAC10, "code": l.jlac10}], "text": l.name},
        "subject": {"reference": pref}, "effectiveDateTime": iso_datetime(when),
        "valueCodeableConcept": {"text": if positive { "陽性" } else { "陰性" }},
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": if positive { "POS" } else { "NEG" }}]}]})
}

/// A prescription, shaped like the JP-CLINS example (the JP Core rules need its identifiers,
/// timing and dose), with this drug, date and duration.
fn prescription(site: &Site, pref: &str, key: &str, when: i64, days: i64, seq: u64) -> Value {
    static TEMPLATE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let t = TEMPLATE.get_or_init(|| {
        let path = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../reference"))
            .join("jp-clins/examples/MedicationRequest-Example-JP-MedReq-PO-SID-28days.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    });
    let d = drug(key);
    let mut m = t.clone();
    let o = m.as_object_mut().unwrap();
    for k in ["id", "meta", "text", "note", "category"] {
        o.remove(k);
    }
    let order = format!("{}-{}-{seq}", site.facility, iso_date(when).replace('-', ""));
    m["extension"] = institution(&site.facility);
    m["status"] = json!("active");
    m["identifier"] = json!([
        {"system": "http://jpfhir.jp/fhir/core/mhlw/IdSystem/Medication-RPGroupNumber", "value": "1"},
        {"system": "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicationAdministrationIndex", "value": "1"},
        {"system": "urn:oid:1.2.392.100495.20.3.11", "value": order},
        {"system": "http://jpfhir.jp/fhir/core/IdSystem/resourceInstance-identifier", "value": order}]);
    m["groupIdentifier"] = json!({"value": order});
    m["medicationCodeableConcept"] = json!({"coding": [
        {"system": "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationGeneralOrderCode", "code": d.general, "display": d.general_name},
        {"system": "urn:oid:1.2.392.100495.20.2.74", "code": d.yj, "display": d.name}], "text": d.name});
    m["subject"] = json!({"reference": pref});
    m["authoredOn"] = json!(format!("{}T10:40:00+09:00", iso_date(when)));
    m["requester"]["display"] = json!("結城 一郎");
    let dose = &mut m["dosageInstruction"][0];
    dose["extension"][0]["valuePeriod"]["start"] = json!(iso_date(when));
    dose["timing"]["event"] = json!([format!("{}T00:00:00+09:00", iso_date(when))]);
    dose["timing"]["repeat"]["boundsDuration"]["value"] = json!(days);
    dose["timing"]["repeat"]["count"] = json!(days);
    dose["text"] = json!(format!("1日1回 朝食後 １回 1{}", d.unit.1));
    m["dispenseRequest"]["quantity"]["value"] = json!(days);
    m["dispenseRequest"]["expectedSupplyDuration"]["value"] = json!(days);
    m
}

fn allergy(
    site: &Site,
    pref: &str,
    substance: &str,
    category: &str,
    criticality: &str,
    reaction: &str,
    when: i64,
) -> Value {
    json!({"resourceType": "AllergyIntolerance", "extension": institution(&site.facility),
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "category": [category], "criticality": criticality,
        "code": {"text": substance}, "patient": {"reference": pref}, "recordedDate": iso_date(when),
        "reaction": [{"manifestation": [{"text": reaction}]}]})
}

fn encounter(pref: &str, start: i64, inpatient: bool) -> Value {
    let mut e = json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": if inpatient { "IMP" } else { "AMB" }, "display": if inpatient { "入院" } else { "外来" }},
        "subject": {"reference": pref}, "period": {"start": iso_datetime(start)}});
    if inpatient {
        e["period"]["end"] = json!(iso_datetime(start + 9 * DAY_MS));
        e["reasonCode"] = json!([{"text": "肺炎"}]);
    }
    e
}

fn note(site: &Site, pref: &str, when: i64, text: &str) -> Value {
    use base64::Engine;
    json!({"resourceType": "DocumentReference", "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "経過記録"}], "text": "経過記録"},
        "subject": {"reference": pref}, "date": format!("{}T11:00:00+09:00", iso_date(when)), "description": "外来経過記録",
        "author": [{"display": "結城 一郎"}],
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": base64::engine::general_purpose::STANDARD.encode(text), "title": "経過記録"}}],
        "context": {"related": [{"display": site.facility.clone()}]}})
}

const LAB_ROTATION: [&str; 12] =
    ["HbA1c-NGSP", "BS", "Cre", "K", "Na", "AST", "ALT", "LDL-C", "Hb", "PLT", "CRP", "ALB"];
const CHRONIC: [(&str, &str); 4] =
    [("dm2", "metformin"), ("htn", "amlodipine"), ("dyslipidemia", "rosuvastatin"), ("gerd", "vonoprazan")];

/// One transaction Bundle per site with the person's history there.
pub fn history(p: &Person, sites: &[Site], plan: &Plan) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (si, site) in sites.iter().enumerate() {
        let mut rng = Rng::new(plan.seed ^ ((si as u64 + 1) << 32));
        let mut n = 0u64;
        let mut entries = Vec::new();
        let pat = entry(&mut n, patient(p, &site.facility, &site.local_id));
        let pref = pat["fullUrl"].as_str().unwrap().to_owned();
        entries.push(pat);
        let start = plan.now_ms - plan.years * 365 * DAY_MS;
        // Two chronic diseases per site (rotating), their drugs prescribed at each visit.
        let chronic: Vec<(&str, &str)> = (0..2).map(|k| CHRONIC[(si + k) % CHRONIC.len()]).collect();
        for (dk, _) in &chronic {
            entries.push(entry(&mut n, condition(site, &pref, dk, start + 3 * DAY_MS, "active", &[])));
        }
        entries.push(entry(&mut n, condition(site, &pref, "bronchitis", start + 40 * DAY_MS, "resolved", &[])));
        if si == 0 {
            entries.push(entry(
                &mut n,
                allergy(
                    site,
                    &pref,
                    "ペニシリン系抗菌薬",
                    "medication",
                    "high",
                    "アナフィラキシー",
                    start + 2 * DAY_MS,
                ),
            ));
            entries.push(entry(&mut n, infection(site, &pref, "HBs-AG-RESULT", start + 5 * DAY_MS, false)));
            entries.push(entry(&mut n, infection(site, &pref, "HCV-AB-RESULT", start + 5 * DAY_MS, true)));
            if plan.uninformed {
                let mut c = condition(site, &pref, "gastritis", start + 20 * DAY_MS, "active", &["UNINFORMED"]);
                c["code"] = json!({"coding": [{"system": systems::MEDIS_DISEASE, "code": "20084770", "display": "胃癌"}], "text": "胃癌"});
                entries.push(entry(&mut n, c));
            }
        }
        if si == 1 {
            entries.push(entry(&mut n, allergy(site, &pref, "そば", "food", "low", "蕁麻疹", start + 10 * DAY_MS)));
        }
        let visits = (plan.years * plan.visits_per_year).max(1);
        let step = (plan.now_ms - 3 * DAY_MS - start) / visits;
        for v in 0..visits {
            // Visits spread over the period, the last one within the past two weeks.
            let when = start + (v + 1) * step - (rng.below(5) as i64) * DAY_MS - (si as i64 % 7) * DAY_MS;
            let inpatient = site.hospital && v % 9 == 2;
            entries.push(entry(&mut n, encounter(&pref, when, inpatient)));
            let progress = v as f64 / visits as f64;
            for k in 0..6 {
                let key = LAB_ROTATION[(v as usize * 6 + k + si) % LAB_ROTATION.len()];
                let l = lab(key);
                let (lo, hi) = l.range;
                // HbA1c and K drift upwards (a trend to see); the rest wander inside the range.
                let base = match key {
                    "HbA1c-NGSP" => 6.2 + 1.4 * progress,
                    "K" => 4.2 + 1.3 * progress,
                    _ => lo + (hi - lo) * (0.3 + 0.4 * rng.unit()),
                };
                entries.push(entry(
                    &mut n,
                    observation(site, &pref, key, when, base + (rng.unit() - 0.5) * (hi - lo) * 0.05),
                ));
            }
            for (_, drug_key) in &chronic {
                let seq = n;
                entries.push(entry(&mut n, prescription(site, &pref, drug_key, when, 90, seq)));
            }
            if v % 3 == 0 {
                entries.push(entry(
                    &mut n,
                    note(
                        site,
                        &pref,
                        when,
                        &format!("経過良好。血圧 128/76 mmHg。内服継続。次回 {} 週後。", 4 + v % 5),
                    ),
                ));
            }
        }
        out.push((site.facility.clone(), json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})));
    }
    out
}
