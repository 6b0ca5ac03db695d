//! The emergency summary (救急用サマリ): what an emergency doctor needs first about a person,
//! prioritized, from the records the caller may see.
//!
//! [`build`] is a pure function of the person's record as the gate returned it (the service's
//! `Service::emergency_summary` reads it, audited as `emergency-summary`, break-glass access
//! marked): identity (read by [`crate::identity`], as every page reads it), then allergies and
//! drug contraindications, infections, current medication, active diagnoses, recent labs with
//! trends and abnormal flags, admissions and surgeries, and the facilities and doctors to call.
//! Every item carries its source facility and date; an empty section says 記録なし. The web
//! viewer renders it as HTML and `musubi_pdf::render_summary` as an A4 PDF.

use std::collections::{BTreeMap, HashMap};

use musubi_domain::{ResourceClass, systems};
use musubi_fhir::ResourceType;
use musubi_fhir::json::codings;
use serde::Serialize;
use serde_json::Value;

use crate::identity::PatientIdentity;
use crate::{PersonRecord, RecordEntry};

/// What an empty section shows.
pub const NO_RECORDS: &str = "記録なし";

/// How far back a prescription or dispensing counts as current medication (days).
pub const CURRENT_MEDICATION_DAYS: i64 = 100;

/// How many items a long section keeps (the rest is counted in [`Section::more`]).
pub const SECTION_LIMIT: usize = 30;

const DAY_MS: i64 = 86_400_000;

/// Where an item comes from: the facility that sent it and its clinical date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// 医療機関コード of the source facility.
    pub facility: Option<String>,
    /// Its name in the registry (the code when the registry does not know it).
    pub facility_name: Option<String>,
    /// Clinical date (YYYY-MM-DD, JST).
    pub date: Option<String>,
    /// `Type/id` of the record.
    pub reference: String,
}

impl Source {
    /// The facility as people read it: the name, else the code, else 不明.
    pub fn facility_label(&self) -> &str {
        self.facility_name.as_deref().or(self.facility.as_deref()).unwrap_or("不明")
    }
}

/// A section: its items in priority order, how many more were left out, and the text to show
/// when it is empty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section<T> {
    /// Heading (Japanese).
    pub title: &'static str,
    /// Items, most important first.
    pub items: Vec<T>,
    /// Items left out beyond [`SECTION_LIMIT`].
    pub more: usize,
    /// [`NO_RECORDS`] when there are no items.
    pub empty_text: Option<&'static str>,
}

impl<T> Section<T> {
    fn new(title: &'static str, mut items: Vec<T>, limit: usize) -> Section<T> {
        let more = items.len().saturating_sub(limit);
        items.truncate(limit);
        let empty_text = items.is_empty().then_some(NO_RECORDS);
        Section { title, items, more, empty_text }
    }
}

/// An allergy or intolerance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllergyItem {
    /// The substance (J-FAGY term, drug name, or the text sent).
    pub substance: String,
    /// 薬剤 / 食物 / 環境 / 生物 / 不明.
    pub category: String,
    /// Whether it is a drug allergy (a contraindication for prescribing).
    pub is_drug: bool,
    /// 高 / 低 / 評価不能, if stated.
    pub criticality: Option<String>,
    /// The reactions recorded (manifestations).
    pub reaction: Option<String>,
    /// The code (`system|code`) of the substance, if coded.
    pub code: Option<String>,
    /// Source.
    pub source: Source,
}

/// The latest result of one of the 5 infection items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InfectionItem {
    /// HBs抗原, HCV, HIV, 梅毒STS, 梅毒TP抗体.
    pub item: &'static str,
    /// The test as named in the record (group name).
    pub test: Option<String>,
    /// The result as recorded (陽性, 陰性, 0.02 IU/mL …); None when no record.
    pub result: Option<String>,
    /// Whether positive (Some(true)), negative (Some(false)), or unknown.
    pub positive: Option<bool>,
    /// Source (None when there is no record of the item).
    pub source: Option<Source>,
}

/// A current or recent medication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MedicationItem {
    /// Drug name.
    pub name: String,
    /// 処方 / 服薬 / 調剤.
    pub kind: &'static str,
    /// Dose (quantity and unit per dose or per day, as recorded).
    pub dose: Option<String>,
    /// Usage (用法).
    pub usage: Option<String>,
    /// Route (内服, 外用, 注射 …).
    pub route: Option<String>,
    /// Days supplied.
    pub days: Option<String>,
    /// Source.
    pub source: Source,
}

/// An active diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiagnosisItem {
    /// Disease name.
    pub name: String,
    /// Onset date, if recorded.
    pub onset: Option<String>,
    /// Whether suspected (疑い).
    pub suspected: bool,
    /// Source.
    pub source: Source,
}

/// The latest value of a lab item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabItem {
    /// Item name (カリウム(K) …).
    pub name: String,
    /// The JP-CLINS group code (`K`, `Cre`, …).
    pub group: Option<String>,
    /// Value with unit.
    pub value: String,
    /// H / L / HH / LL / A (abnormal), from the interpretation or the reference range.
    pub flag: Option<String>,
    /// Whether abnormal.
    pub abnormal: bool,
    /// ↑ / ↓ / → against the previous result of the item.
    pub trend: Option<&'static str>,
    /// The previous value and its date.
    pub previous: Option<String>,
    /// Reference range text.
    pub range: Option<String>,
    /// Whether this is one of the items an emergency doctor looks at first.
    pub key_item: bool,
    /// Source.
    pub source: Source,
}

/// An admission or a surgery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventItem {
    /// 入院 / 手術・処置.
    pub kind: &'static str,
    /// What (the procedure, or the admission's reason / department when recorded).
    pub what: String,
    /// Period (`2025-04-01 〜 2025-04-10`).
    pub period: String,
    /// Source.
    pub source: Source,
}

/// A facility to call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactItem {
    /// 医療機関コード.
    pub facility: String,
    /// Name.
    pub name: String,
    /// Phone, when a record carries it.
    pub phone: Option<String>,
    /// The latest clinical date of its records.
    pub last_date: Option<String>,
    /// The practitioners named in its latest records, newest first.
    pub practitioners: Vec<String>,
    /// How many of the person's records it holds.
    pub records: usize,
}

/// The emergency summary of a person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmergencySummary {
    /// The Patient asked for.
    pub patient_id: String,
    /// The person (MPI).
    pub person_id: String,
    /// When built (ISO instant).
    pub generated_at: String,
    /// Set when the access was by emergency grant (the stated reason).
    pub emergency: Option<String>,
    /// Who the patient is (see [`crate::identity`]).
    pub identity: PatientIdentity,
    /// Allergies and drug contraindications (drug allergies first, high criticality first).
    pub allergies: Section<AllergyItem>,
    /// The 5 infection items with their latest result (always 5 rows).
    pub infections: Section<InfectionItem>,
    /// Current medication (the last 100 days, newest first).
    pub medications: Section<MedicationItem>,
    /// Active diagnoses (newest first).
    pub diagnoses: Section<DiagnosisItem>,
    /// Latest lab values (key items first, abnormal first).
    pub labs: Section<LabItem>,
    /// Admissions and surgeries (newest first).
    pub events: Section<EventItem>,
    /// Facilities and doctors to call (latest first).
    pub contacts: Section<ContactItem>,
    /// How many records the summary was built from.
    pub records_seen: usize,
}

/// Builds the summary from a person's visible record at `now` (epoch ms). Pure.
pub fn build(rec: &PersonRecord, patient_id: &str, now: i64) -> EmergencySummary {
    EmergencySummary {
        patient_id: patient_id.to_owned(),
        person_id: rec.person_id.clone(),
        generated_at: musubi_fhir::datetime::format_instant(now),
        emergency: rec.emergency.clone(),
        identity: PatientIdentity::of_person(&rec.entries, now),
        allergies: Section::new("アレルギー・禁忌", allergies(&rec.entries), SECTION_LIMIT),
        infections: Section::new("感染症", infections(&rec.entries), 5),
        medications: Section::new("現在の処方・服薬", medications(&rec.entries, now), SECTION_LIMIT),
        diagnoses: Section::new("傷病名（活動中）", diagnoses(&rec.entries), SECTION_LIMIT),
        labs: Section::new("主要検査値", labs(&rec.entries), 60),
        events: Section::new("入院歴・手術歴", events(&rec.entries), 10),
        contacts: Section::new("連絡先医療機関・担当医", contacts(&rec.entries), 10),
        records_seen: rec.entries.len(),
    }
}

fn date_of(ms: Option<i64>) -> Option<String> {
    ms.and_then(musubi_fhir::datetime::jst_date).map(|d| d.to_string())
}

fn source(e: &RecordEntry) -> Source {
    Source {
        facility: e.facility.clone(),
        facility_name: e.facility_name.clone().or_else(|| e.facility.clone()),
        date: date_of(e.clinical_date),
        reference: format!("{}/{}", e.rtype, e.id),
    }
}

fn s(v: &Value) -> Option<&str> {
    v.as_str().map(str::trim).filter(|x| !x.is_empty())
}

/// The text of a CodeableConcept: its text, else the first display, else the first code.
fn concept_text(v: &Value) -> Option<String> {
    if let Some(t) = s(&v["text"]) {
        return Some(t.to_owned());
    }
    if let Some(d) = v["coding"].as_array().and_then(|a| a.iter().find_map(|c| s(&c["display"]))) {
        return Some(d.to_owned());
    }
    codings(v).next().map(|(_, c)| c.to_owned())
}

fn first_code(v: &Value) -> Option<String> {
    codings(v).next().map(|(s, c)| format!("{s}|{c}"))
}

fn status_code(v: &Value) -> Option<&str> {
    codings(v).next().map(|(_, c)| c)
}

fn quantity(v: &Value) -> Option<String> {
    let value = match &v["value"] {
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let unit = s(&v["unit"]).or_else(|| s(&v["code"])).unwrap_or("");
    let cmp = s(&v["comparator"]).unwrap_or("");
    Some(format!("{cmp}{value}{}{unit}", if unit.is_empty() || unit == "%" { "" } else { " " }))
}

/// The JST date part of a FHIR date/dateTime string.
fn date_part(v: &Value) -> Option<String> {
    let t = s(v)?;
    musubi_fhir::datetime::parse_range(t)
        .ok()
        .and_then(|r| musubi_fhir::datetime::jst_date(r.lo))
        .map(|d| d.to_string())
}

// --- allergies --------------------------------------------------------------------------

fn allergy_category(r: &Value) -> (&'static str, bool) {
    let cats: Vec<&str> = r["category"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if cats.contains(&"medication") {
        ("薬剤", true)
    } else if cats.contains(&"food") {
        ("食物", false)
    } else if cats.contains(&"environment") {
        ("環境", false)
    } else if cats.contains(&"biologic") {
        ("生物", false)
    } else {
        ("不明", false)
    }
}

fn substance(r: &Value) -> String {
    // A J-FAGY code is named by the master when the sender gave no text.
    if let Some(t) = s(&r["code"]["text"]) {
        return t.to_owned();
    }
    for (system, code) in codings(&r["code"]) {
        if matches!(system, systems::JFAGY_FOOD | systems::JFAGY_NON_FOOD | systems::JFAGY_MEDICATION)
            && let Some(term) = musubi_validate::terminology::jfagy_term(code)
        {
            return term.to_owned();
        }
    }
    concept_text(&r["code"]).unwrap_or_else(|| "（物質不明）".into())
}

/// Allergies and intolerances that are not inactive, resolved or refuted: drug allergies first,
/// then by criticality (high first), then newest first; the same substance reported by several
/// facilities is listed once (its most important report).
pub fn allergies(entries: &[RecordEntry]) -> Vec<AllergyItem> {
    let mut out: Vec<(u8, u8, std::cmp::Reverse<Option<i64>>, AllergyItem)> = Vec::new();
    for e in entries.iter().filter(|e| e.rtype == ResourceType::AllergyIntolerance) {
        let r = &e.resource;
        if matches!(status_code(&r["clinicalStatus"]), Some("inactive" | "resolved"))
            || matches!(status_code(&r["verificationStatus"]), Some("refuted" | "entered-in-error"))
        {
            continue;
        }
        let (category, is_drug) = allergy_category(r);
        let is_drug = is_drug || e.class == ResourceClass::DrugAllergy;
        let criticality = match s(&r["criticality"]) {
            Some("high") => Some("高"),
            Some("low") => Some("低"),
            Some("unable-to-assess") => Some("評価不能"),
            _ => None,
        };
        let rank_crit = match criticality {
            Some("高") => 0,
            Some("評価不能") | None => 1,
            _ => 2,
        };
        let reaction: Vec<String> = r["reaction"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|x| x["manifestation"].as_array().into_iter().flatten())
            .filter_map(concept_text)
            .collect();
        let item = AllergyItem {
            substance: substance(r),
            category: if is_drug { "薬剤".into() } else { category.into() },
            is_drug,
            criticality: criticality.map(str::to_owned),
            reaction: (!reaction.is_empty()).then(|| reaction.join("、")),
            code: first_code(&r["code"]),
            source: source(e),
        };
        out.push((u8::from(!is_drug), rank_crit, std::cmp::Reverse(e.clinical_date), item));
    }
    out.sort_by_key(|a| (a.0, a.1, a.2));
    let mut seen = std::collections::HashSet::new();
    out.into_iter().map(|x| x.3).filter(|i| seen.insert(i.substance.clone())).collect()
}

// --- infections -------------------------------------------------------------------------

/// The 5 JP-CLINS infection items and the JLAC10 analyte codes (first 5 characters) of each.
const INFECTION_ITEMS: [(&str, &[&str]); 5] = [
    ("HBs抗原・抗体", &["5F016"]),
    ("HCV", &["5F360"]),
    ("HIV", &["5F500", "5F550", "5F560"]),
    ("梅毒STS", &["5E071", "5E074"]),
    ("梅毒TP抗体", &["5E075"]),
];

fn jlac10_of(r: &Value) -> Option<(&str, &str)> {
    codings(&r["code"]).find(|(sys, c)| {
        matches!(*sys, systems::JLAC10 | systems::CORE_LABO_JLAC10 | systems::INFECTION_LABO_JLAC10) && c.len() >= 5
    })
}

/// Whether a result is positive, negative or unknown: the interpretation first, then the
/// recorded text.
pub fn positivity(r: &Value) -> Option<bool> {
    for (_, c) in r["interpretation"].as_array().into_iter().flatten().flat_map(codings) {
        match c {
            "POS" | "DET" | "A" | "AA" | "H" | "HH" => return Some(true),
            "NEG" | "ND" | "N" => return Some(false),
            _ => {}
        }
    }
    let text = s(&r["valueString"]).map(str::to_owned).or_else(|| concept_text(&r["valueCodeableConcept"]))?;
    if text.contains("陽性") || text.contains("(+)") || text.contains("（＋）") || text == "+" {
        Some(true)
    } else if text.contains("陰性") || text.contains("(-)") || text.contains("（－）") || text == "-" {
        Some(false)
    } else {
        None
    }
}

fn value_text(r: &Value) -> Option<String> {
    quantity(&r["valueQuantity"])
        .or_else(|| s(&r["valueString"]).map(str::to_owned))
        .or_else(|| concept_text(&r["valueCodeableConcept"]))
        .or_else(|| r["valueBoolean"].as_bool().map(|b| if b { "あり" } else { "なし" }.to_owned()))
        .or_else(|| r["valueInteger"].as_i64().map(|i| i.to_string()))
}

/// The 5 infection items, each with its latest result (positives first, then the rest in the
/// fixed order); an item without a record is listed with no result.
pub fn infections(entries: &[RecordEntry]) -> Vec<InfectionItem> {
    let mut latest: [Option<&RecordEntry>; 5] = [None; 5];
    for e in entries.iter().filter(|e| e.rtype == ResourceType::Observation && e.class == ResourceClass::Infection) {
        let Some((_, code)) = jlac10_of(&e.resource) else { continue };
        let Some(i) = INFECTION_ITEMS.iter().position(|(_, prefixes)| prefixes.iter().any(|p| code.starts_with(p)))
        else {
            continue;
        };
        // A judgement (判定) beats a number on the same day; otherwise the newest wins.
        let better = match latest[i] {
            None => true,
            Some(cur) => {
                (e.clinical_date, positivity(&e.resource).is_some())
                    > (cur.clinical_date, positivity(&cur.resource).is_some())
            }
        };
        if better {
            latest[i] = Some(e);
        }
    }
    let mut out: Vec<InfectionItem> = INFECTION_ITEMS
        .iter()
        .zip(latest)
        .map(|((item, _), e)| match e {
            None => InfectionItem { item, test: None, result: None, positive: None, source: None },
            Some(e) => InfectionItem {
                item,
                test: lab_name(&e.resource),
                result: value_text(&e.resource),
                positive: positivity(&e.resource),
                source: Some(source(e)),
            },
        })
        .collect();
    out.sort_by_key(|i| match i.positive {
        Some(true) => 0,
        _ => 1,
    });
    out
}

// --- medication -------------------------------------------------------------------------

fn medication_name(r: &Value) -> Option<String> {
    concept_text(&r["medicationCodeableConcept"])
        .or_else(|| s(&r["medicationReference"]["display"]).map(str::to_owned))
        .or_else(|| {
            // A contained Medication named by reference.
            let id = r["medicationReference"]["reference"].as_str()?.strip_prefix('#')?;
            let m = r["contained"].as_array()?.iter().find(|c| c["id"].as_str() == Some(id))?;
            concept_text(&m["code"])
        })
}

fn dosage_parts(d: &Value) -> (Option<String>, Option<String>, Option<String>) {
    let dose = d["doseAndRate"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|x| quantity(&x["doseQuantity"]).or_else(|| quantity(&x["rateQuantity"])));
    let usage = concept_text(&d["timing"]["code"]).or_else(|| s(&d["text"]).map(str::to_owned));
    let route = concept_text(&d["route"]).or_else(|| concept_text(&d["method"]));
    (dose, usage, route)
}

/// Prescriptions (MedicationRequest), medication statements and dispensings of the last
/// [`CURRENT_MEDICATION_DAYS`] days, newest first; the same drug from the same facility is
/// listed once (its newest).
pub fn medications(entries: &[RecordEntry], now: i64) -> Vec<MedicationItem> {
    let since = now - CURRENT_MEDICATION_DAYS * DAY_MS;
    let mut out: Vec<(Option<i64>, MedicationItem)> = Vec::new();
    for e in entries {
        let (kind, dosage_key) = match e.rtype {
            ResourceType::MedicationRequest => ("処方", "dosageInstruction"),
            ResourceType::MedicationStatement => ("服薬", "dosage"),
            ResourceType::MedicationDispense => ("調剤", "dosageInstruction"),
            _ => continue,
        };
        if e.clinical_date.is_none_or(|d| d < since) {
            continue;
        }
        let r = &e.resource;
        if matches!(s(&r["status"]), Some("entered-in-error" | "cancelled" | "stopped")) {
            continue;
        }
        let Some(name) = medication_name(r) else { continue };
        let d = r[dosage_key].as_array().and_then(|a| a.first()).cloned().unwrap_or(Value::Null);
        let (dose, usage, route) = dosage_parts(&d);
        let days = quantity(&r["dispenseRequest"]["expectedSupplyDuration"])
            .or_else(|| quantity(&r["daysSupply"]))
            .map(|q| q.replace(" 日", "日").replace(" d", "日"));
        out.push((e.clinical_date, MedicationItem { name, kind, dose, usage, route, days, source: source(e) }));
    }
    out.sort_by_key(|a| std::cmp::Reverse(a.0));
    let mut seen = std::collections::HashSet::new();
    out.into_iter().map(|x| x.1).filter(|m| seen.insert((m.name.clone(), m.source.facility.clone()))).collect()
}

// --- diagnoses --------------------------------------------------------------------------

/// Diagnoses whose clinical status is active (or recurrence / relapse, or not stated), not
/// refuted, newest first; the same name is listed once.
pub fn diagnoses(entries: &[RecordEntry]) -> Vec<DiagnosisItem> {
    let mut out: Vec<(Option<i64>, DiagnosisItem)> = Vec::new();
    for e in entries.iter().filter(|e| e.rtype == ResourceType::Condition) {
        let r = &e.resource;
        if !matches!(status_code(&r["clinicalStatus"]), None | Some("active" | "recurrence" | "relapse")) {
            continue;
        }
        let ver = status_code(&r["verificationStatus"]);
        if matches!(ver, Some("refuted" | "entered-in-error")) {
            continue;
        }
        let Some(name) = concept_text(&r["code"]) else { continue };
        out.push((
            e.clinical_date,
            DiagnosisItem {
                name,
                onset: date_part(&r["onsetDateTime"]).or_else(|| s(&r["onsetString"]).map(str::to_owned)),
                suspected: matches!(ver, Some("provisional" | "differential" | "unconfirmed")),
                source: source(e),
            },
        ));
    }
    out.sort_by_key(|a| std::cmp::Reverse(a.0));
    let mut seen = std::collections::HashSet::new();
    out.into_iter().map(|x| x.1).filter(|d| seen.insert(d.name.clone())).collect()
}

// --- labs -------------------------------------------------------------------------------

/// The lab groups an emergency doctor reads first, in this order.
pub const KEY_LAB_GROUPS: &[&str] = &[
    "K",
    "Na",
    "Cre",
    "BUN",
    "Cys-C",
    "Hb",
    "PLT",
    "WBC",
    "PT-INR",
    "APTT",
    "DD",
    "BS",
    "BG",
    "CBG",
    "HbA1c-NGSP",
    "CRP",
    "BNP",
    "NT-proBNP",
    "AST",
    "ALT",
    "T-Bil",
    "CK",
    "ALB",
    "Ca",
    "Cl",
];

fn lab_name(r: &Value) -> Option<String> {
    if let Some((sys, code)) = jlac10_of(r)
        && let Some(g) = musubi_validate::terminology::lab_group(sys, code)
    {
        // Several groups share a display (プロトロンビン時間 for PT-INR, PT-Sec …): name the group.
        return Some(if g.display.contains(g.code) {
            g.display.to_owned()
        } else {
            format!("{}（{}）", g.display, g.code)
        });
    }
    concept_text(&r["code"])
}

fn lab_group_code(r: &Value) -> Option<&'static str> {
    let (sys, code) = jlac10_of(r)?;
    musubi_validate::terminology::lab_group(sys, code).map(|g| g.code)
}

fn number(r: &Value) -> Option<f64> {
    r["valueQuantity"]["value"].as_f64()
}

/// The abnormal flag of a result: its interpretation code, else computed from the first
/// reference range.
pub fn lab_flag(r: &Value) -> Option<String> {
    for (_, c) in r["interpretation"].as_array().into_iter().flatten().flat_map(codings) {
        match c {
            "H" | "HH" | "L" | "LL" | "A" | "AA" | "HU" | "LU" => return Some(c.to_owned()),
            "POS" => return Some("A".into()),
            _ => {}
        }
    }
    let v = number(r)?;
    let range = r["referenceRange"].as_array()?.first()?;
    if let Some(hi) = range["high"]["value"].as_f64()
        && v > hi
    {
        return Some("H".into());
    }
    if let Some(lo) = range["low"]["value"].as_f64()
        && v < lo
    {
        return Some("L".into());
    }
    None
}

fn range_text(r: &Value) -> Option<String> {
    let range = r["referenceRange"].as_array()?.first()?;
    if let Some(t) = s(&range["text"]) {
        return Some(t.to_owned());
    }
    let lo = range["low"]["value"].as_f64();
    let hi = range["high"]["value"].as_f64();
    match (lo, hi) {
        (Some(l), Some(h)) => Some(format!("{l}-{h}")),
        (Some(l), None) => Some(format!("{l}以上")),
        (None, Some(h)) => Some(format!("{h}以下")),
        _ => None,
    }
}

/// The trend arrow from the previous to the latest value: a change of more than 5 % is ↑ / ↓.
pub fn trend(previous: f64, latest: f64) -> &'static str {
    let base = previous.abs().max(f64::EPSILON);
    let change = (latest - previous) / base;
    if change > 0.05 {
        "↑"
    } else if change < -0.05 {
        "↓"
    } else {
        "→"
    }
}

/// The latest value of each lab item with a trend against the previous one: key items first
/// (in [`KEY_LAB_GROUPS`] order), then abnormal ones, then the rest by name.
pub fn labs(entries: &[RecordEntry]) -> Vec<LabItem> {
    // Item → results newest first (entries come newest first; sort again to be sure).
    let mut by_item: BTreeMap<String, Vec<&RecordEntry>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.rtype == ResourceType::Observation && e.class == ResourceClass::Lab) {
        let facts = SummaryFacts::of(e);
        if matches!(facts.status.as_deref(), Some("entered-in-error" | "cancelled")) {
            continue;
        }
        by_item.entry(facts.lab_item.clone()).or_default().push(e);
    }
    let mut out: Vec<(usize, u8, LabItem)> = Vec::new();
    for (key, mut list) in by_item {
        list.sort_by_key(|a| std::cmp::Reverse(a.clinical_date));
        let Some(latest) = list.first() else { continue };
        let r = &latest.resource;
        let Some(value) = value_text(r) else { continue };
        let flag = lab_flag(r);
        let prev = list.get(1);
        let trend = match (prev.and_then(|p| number(&p.resource)), number(r)) {
            (Some(p), Some(l)) => Some(trend(p, l)),
            _ => None,
        };
        let previous = prev.and_then(|p| {
            let v = value_text(&p.resource)?;
            Some(match date_of(p.clinical_date) {
                Some(d) => format!("{v}（{d}）"),
                None => v,
            })
        });
        let group = lab_group_code(r);
        let key_rank = group.and_then(|g| KEY_LAB_GROUPS.iter().position(|k| *k == g)).unwrap_or(usize::MAX);
        let abnormal = flag.is_some();
        out.push((
            key_rank,
            u8::from(!abnormal),
            LabItem {
                name: lab_name(r).unwrap_or_else(|| key.clone()),
                group: group.map(str::to_owned),
                value,
                flag,
                abnormal,
                trend,
                previous,
                range: range_text(r),
                key_item: key_rank != usize::MAX,
                source: source(latest),
            },
        ));
    }
    out.sort_by(|a, b| (a.0, a.1, &a.2.name).cmp(&(b.0, b.1, &b.2.name)));
    out.into_iter().map(|x| x.2).collect()
}

// --- admissions and surgeries -----------------------------------------------------------

fn period_text(p: &Value) -> Option<String> {
    let start = date_part(&p["start"]);
    let end = date_part(&p["end"]);
    match (start, end) {
        (Some(a), Some(b)) if a == b => Some(a),
        (Some(a), Some(b)) => Some(format!("{a} 〜 {b}")),
        (Some(a), None) => Some(format!("{a} 〜")),
        (None, Some(b)) => Some(format!("〜 {b}")),
        _ => None,
    }
}

/// Admissions (Encounter class IMP) and surgeries and procedures, newest first.
pub fn events(entries: &[RecordEntry]) -> Vec<EventItem> {
    let mut out: Vec<(Option<i64>, EventItem)> = Vec::new();
    for e in entries {
        let r = &e.resource;
        match e.rtype {
            ResourceType::Encounter => {
                let class = r["class"]["code"].as_str().or_else(|| codings(&r["class"]).next().map(|(_, c)| c));
                if !matches!(class, Some("IMP" | "ACUTE" | "NONAC")) {
                    continue;
                }
                let what = r["reasonCode"]
                    .as_array()
                    .and_then(|a| a.first())
                    .and_then(concept_text)
                    .or_else(|| r["type"].as_array().and_then(|a| a.first()).and_then(concept_text))
                    .unwrap_or_else(|| "入院".into());
                let period = period_text(&r["period"]).or_else(|| date_of(e.clinical_date)).unwrap_or_default();
                out.push((e.clinical_date, EventItem { kind: "入院", what, period, source: source(e) }));
            }
            ResourceType::Procedure => {
                if matches!(s(&r["status"]), Some("entered-in-error" | "not-done")) {
                    continue;
                }
                let what = concept_text(&r["code"]).unwrap_or_else(|| "手術・処置".into());
                let period = date_part(&r["performedDateTime"])
                    .or_else(|| period_text(&r["performedPeriod"]))
                    .or_else(|| date_of(e.clinical_date))
                    .unwrap_or_default();
                out.push((e.clinical_date, EventItem { kind: "手術・処置", what, period, source: source(e) }));
            }
            _ => {}
        }
    }
    out.sort_by_key(|a| std::cmp::Reverse(a.0));
    out.into_iter().map(|x| x.1).collect()
}

// --- contacts ---------------------------------------------------------------------------

fn practitioner_names(r: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut take = |p: &Value| {
        if p["resourceType"].as_str() == Some("Practitioner")
            && let Some(n) = crate::identity::names(p).display()
        {
            out.push(n.to_owned());
        }
    };
    take(r);
    for c in r["contained"].as_array().into_iter().flatten() {
        take(c);
    }
    out
}

fn organization_phones(r: &Value, into: &mut HashMap<String, String>) {
    let mut scan = |o: &Value| {
        if o["resourceType"].as_str() != Some("Organization") {
            return;
        }
        let code = o["identifier"].as_array().into_iter().flatten().find_map(|i| {
            (i["system"].as_str() == Some(systems::INSTITUTION_NUMBER)).then(|| i["value"].as_str()).flatten()
        });
        let phone = o["telecom"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["system"].as_str() == Some("phone"))
            .and_then(|t| s(&t["value"]));
        if let (Some(c), Some(p)) = (code, phone) {
            into.entry(c.to_owned()).or_insert_with(|| p.to_owned());
        }
    };
    scan(r);
    for c in r["contained"].as_array().into_iter().flatten() {
        scan(c);
    }
    for e in r["entry"].as_array().into_iter().flatten() {
        scan(&e["resource"]);
    }
}

/// What the summary reads of every record, derived once per stored version and kept with it
/// (see [`crate::Derived`]; content only).
struct SummaryFacts {
    /// `status`.
    status: Option<String>,
    /// For an Observation: the item it is a result of (lab group, else its first code).
    lab_item: String,
    /// Organizations' phone numbers it carries (医療機関コード → phone).
    phones: Vec<(String, String)>,
    /// Practitioners it names (kanji names).
    practitioners: Vec<String>,
}

impl SummaryFacts {
    fn of(e: &RecordEntry) -> std::sync::Arc<SummaryFacts> {
        e.derived.get_or_derive(|| {
            let r = &e.resource;
            let mut phones = HashMap::new();
            organization_phones(r, &mut phones);
            SummaryFacts {
                status: s(&r["status"]).map(str::to_owned),
                lab_item: if e.rtype == ResourceType::Observation {
                    lab_group_code(r)
                        .map(str::to_owned)
                        .or_else(|| first_code(&r["code"]))
                        .unwrap_or_else(|| "?".into())
                } else {
                    String::new()
                },
                phones: phones.into_iter().collect(),
                practitioners: practitioner_names(r),
            }
        })
    }
}

/// The facilities holding the person's records, the latest first, with the practitioners named
/// in their newest records and a phone number when a record carries one.
pub fn contacts(entries: &[RecordEntry]) -> Vec<ContactItem> {
    let mut phones = HashMap::new();
    let mut by_facility: BTreeMap<&str, ContactItem> = BTreeMap::new();
    let mut latest: HashMap<&str, Option<i64>> = HashMap::new();
    // Entries come newest first, so practitioners are collected newest first.
    let mut sorted: Vec<&RecordEntry> = entries.iter().collect();
    sorted.sort_by_key(|a| std::cmp::Reverse(a.clinical_date));
    for e in sorted {
        let facts = SummaryFacts::of(e);
        for (code, phone) in &facts.phones {
            phones.entry(code.clone()).or_insert_with(|| phone.clone());
        }
        let Some(f) = &e.facility else { continue };
        let c = by_facility.entry(f.as_str()).or_insert_with(|| ContactItem {
            facility: f.clone(),
            name: e.facility_name.clone().unwrap_or_else(|| f.clone()),
            phone: None,
            last_date: None,
            practitioners: Vec::new(),
            records: 0,
        });
        c.records += 1;
        let l = latest.entry(f.as_str()).or_insert(None);
        if e.clinical_date > *l {
            *l = e.clinical_date;
            c.last_date = date_of(e.clinical_date);
        }
        for n in &facts.practitioners {
            if c.practitioners.len() < 3 && !c.practitioners.contains(n) {
                c.practitioners.push(n.clone());
            }
        }
    }
    let mut out: Vec<ContactItem> = by_facility
        .into_values()
        .map(|mut c| {
            c.phone = phones.get(&c.facility).cloned();
            c
        })
        .collect();
    out.sort_by(|a, b| {
        latest.get(b.facility.as_str()).cmp(&latest.get(a.facility.as_str())).then(a.facility.cmp(&b.facility))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use musubi_domain::Flags;
    use serde_json::json;

    const NOW: i64 = 1_790_000_000_000; // 2026-09-21

    fn day(n: i64) -> i64 {
        NOW - n * DAY_MS
    }

    fn entry(
        rtype: ResourceType,
        class: ResourceClass,
        id: &str,
        facility: &str,
        days_ago: i64,
        r: Value,
    ) -> RecordEntry {
        RecordEntry {
            rtype,
            id: id.into(),
            version: 1,
            class,
            facility: Some(facility.into()),
            facility_name: Some(format!("病院{facility}")),
            clinical_date: Some(day(days_ago)),
            flags: Flags::empty(),
            resource: r.into(),
            derived: Default::default(),
        }
    }

    fn allergy(id: &str, cat: &str, crit: &str, text: &str, days_ago: i64) -> RecordEntry {
        let class = if cat == "medication" { ResourceClass::DrugAllergy } else { ResourceClass::OtherAllergy };
        entry(
            ResourceType::AllergyIntolerance,
            class,
            id,
            "1311111111",
            days_ago,
            json!({"resourceType": "AllergyIntolerance", "category": [cat], "criticality": crit, "code": {"text": text},
                   "clinicalStatus": {"coding": [{"code": "active"}]}}),
        )
    }

    fn lab(id: &str, code: &str, v: f64, unit: &str, days_ago: i64, range: Option<(f64, f64)>) -> RecordEntry {
        let mut r = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": systems::JLAC10, "code": code}]},
            "valueQuantity": {"value": v, "unit": unit}});
        if let Some((lo, hi)) = range {
            r["referenceRange"] = json!([{"low": {"value": lo}, "high": {"value": hi}}]);
        }
        entry(ResourceType::Observation, ResourceClass::Lab, id, "1322222222", days_ago, r)
    }

    #[test]
    fn drug_allergies_first_then_criticality_then_newest() {
        let list = allergies(&[
            allergy("a1", "food", "high", "そば", 10),
            allergy("a2", "medication", "low", "セフェム系", 5),
            allergy("a3", "medication", "high", "ペニシリン系", 400),
            allergy("a4", "medication", "high", "ヨード造影剤", 20),
            allergy("a5", "medication", "high", "ペニシリン系", 1), // the same substance again
        ]);
        let names: Vec<&str> = list.iter().map(|a| a.substance.as_str()).collect();
        assert_eq!(names, ["ペニシリン系", "ヨード造影剤", "セフェム系", "そば"]);
        assert!(list[0].is_drug && list[0].criticality.as_deref() == Some("高"));
        assert_eq!(list[0].source.reference, "AllergyIntolerance/a5");
        assert_eq!(list[3].category, "食物");
    }

    #[test]
    fn resolved_and_refuted_allergies_are_left_out() {
        let mut a = allergy("a1", "medication", "high", "アスピリン", 3);
        std::sync::Arc::make_mut(&mut a.resource)["clinicalStatus"] = json!({"coding": [{"code": "resolved"}]});
        let mut b = allergy("b1", "medication", "high", "ロキソプロフェン", 3);
        std::sync::Arc::make_mut(&mut b.resource)["verificationStatus"] = json!({"coding": [{"code": "refuted"}]});
        assert!(allergies(&[a, b]).is_empty());
    }

    #[test]
    fn jfagy_codes_are_named_from_the_master() {
        let mut a = allergy("a1", "food", "low", "", 3);
        std::sync::Arc::make_mut(&mut a.resource)["code"] =
            json!({"coding": [{"system": systems::JFAGY_FOOD, "code": "J9FC11310000"}]});
        let list = allergies(&[a]);
        assert_eq!(list.len(), 1);
        assert_eq!(Some(list[0].substance.as_str()), musubi_validate::terminology::jfagy_term("J9FC11310000"));
    }

    #[test]
    fn labs_latest_per_item_with_trend_and_flags_key_items_first() {
        let list = labs(&[
            lab("k1", "3H015000002327201", 5.9, "mmol/L", 2, Some((3.5, 5.0))),
            lab("k0", "3H015000002327201", 4.6, "mmol/L", 40, Some((3.5, 5.0))),
            lab("hb", "2A030000001930901", 13.0, "g/dL", 3, Some((11.6, 14.8))),
            lab("alb", "3A015000002327101", 3.0, "g/dL", 3, Some((4.1, 5.1))),
            lab("a1c1", "3D046000001920402", 7.2, "%", 30, None),
            lab("a1c0", "3D046000001920402", 7.2, "%", 120, None),
        ]);
        let groups: Vec<Option<&str>> = list.iter().map(|l| l.group.as_deref()).collect();
        assert_eq!(groups, [Some("K"), Some("Hb"), Some("HbA1c-NGSP"), Some("ALB")]);
        let k = &list[0];
        assert_eq!(k.value, "5.9 mmol/L");
        assert_eq!(k.flag.as_deref(), Some("H"));
        assert_eq!(k.trend, Some("↑"));
        assert!(k.previous.as_deref().is_some_and(|p| p.starts_with("4.6 mmol/L（")));
        assert_eq!(list[1].flag, None);
        assert_eq!(list[2].trend, Some("→"));
        assert_eq!(list[3].flag.as_deref(), Some("L"));
        assert_eq!(list[2].value, "7.2%");
    }

    #[test]
    fn trend_thresholds() {
        assert_eq!(trend(1.0, 1.04), "→");
        assert_eq!(trend(1.0, 1.2), "↑");
        assert_eq!(trend(1.0, 0.8), "↓");
        assert_eq!(trend(0.0, 0.0), "→");
    }

    #[test]
    fn medication_within_100_days_newest_first_once_per_drug_and_facility() {
        let mr = |id: &str, name: &str, days_ago: i64| {
            entry(
                ResourceType::MedicationRequest,
                ResourceClass::Prescription,
                id,
                "1333333333",
                days_ago,
                json!({"resourceType": "MedicationRequest", "status": "completed", "medicationCodeableConcept": {"text": name},
                       "dosageInstruction": [{"timing": {"code": {"text": "1日1回朝食後"}}, "route": {"text": "内服"},
                                               "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "錠"}}]}],
                       "dispenseRequest": {"expectedSupplyDuration": {"value": 28, "unit": "日"}}}),
            )
        };
        let list = medications(
            &[
                mr("m1", "アムロジピン錠5mg", 10),
                mr("m2", "ワルファリンK錠1mg", 3),
                mr("m3", "アムロジピン錠5mg", 50),
                mr("m4", "古い薬", 150),
            ],
            NOW,
        );
        let names: Vec<&str> = list.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["ワルファリンK錠1mg", "アムロジピン錠5mg"]);
        assert_eq!(list[1].source.reference, "MedicationRequest/m1");
        assert_eq!(list[0].dose.as_deref(), Some("1 錠"));
        assert_eq!(list[0].usage.as_deref(), Some("1日1回朝食後"));
        assert_eq!(list[0].route.as_deref(), Some("内服"));
        assert_eq!(list[0].days.as_deref(), Some("28日"));
    }

    #[test]
    fn active_diagnoses_only_newest_first() {
        let c = |id: &str, name: &str, status: &str, days_ago: i64| {
            entry(
                ResourceType::Condition,
                ResourceClass::Diagnosis,
                id,
                "1344444444",
                days_ago,
                json!({"resourceType": "Condition", "code": {"text": name}, "clinicalStatus": {"coding": [{"code": status}]}}),
            )
        };
        let list = diagnoses(&[
            c("c1", "高血圧症", "active", 100),
            c("c2", "急性胃腸炎", "resolved", 5),
            c("c3", "２型糖尿病", "active", 30),
        ]);
        let names: Vec<&str> = list.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["２型糖尿病", "高血圧症"]);
    }

    #[test]
    fn five_infection_items_positive_first() {
        let inf = |id: &str, code: &str, v: &str, days_ago: i64| {
            entry(
                ResourceType::Observation,
                ResourceClass::Infection,
                id,
                "1355555555",
                days_ago,
                json!({"resourceType": "Observation", "code": {"coding": [{"system": systems::INFECTION_LABO_JLAC10, "code": code}]}, "valueString": v}),
            )
        };
        let list =
            infections(&[inf("i1", "5F016141002399511", "陰性", 10), inf("i2", "5E075143002399511", "陽性", 20)]);
        assert_eq!(list.len(), 5);
        assert_eq!(list[0].item, "梅毒TP抗体");
        assert_eq!(list[0].positive, Some(true));
        assert_eq!(list[1].item, "HBs抗原・抗体");
        assert_eq!(list[1].result.as_deref(), Some("陰性"));
        assert!(list[2..].iter().all(|i| i.result.is_none() && i.source.is_none()));
    }

    #[test]
    fn identity_and_admissions_and_contacts() {
        let p = json!({"resourceType": "Patient", "gender": "female", "birthDate": "1970-05-05",
            "identifier": [{"system": systems::INSURANCE_MEMBER_ID, "value": "06139999:１:２:01"}],
            "name": [{"extension": [{"url": systems::EXT_NAME_REPRESENTATION, "valueCode": "IDE"}], "text": "結 花子"},
                     {"extension": [{"url": systems::EXT_NAME_REPRESENTATION, "valueCode": "SYL"}], "text": "ムスビ ハナコ"}],
            "address": [{"state": "東京都", "city": "千代田区", "line": ["丸の内1-1"]}], "telecom": [{"system": "phone", "value": "03-0000-0000"}]});
        let enc = json!({"resourceType": "Encounter", "class": {"code": "IMP"}, "period": {"start": "2026-03-01", "end": "2026-03-10"},
            "contained": [{"resourceType": "Practitioner", "id": "p", "name": [{"text": "山田 太郎"}]}]});
        let entries = vec![
            entry(ResourceType::Patient, ResourceClass::Demographics, "pt1", "1311111111", 1000, p),
            entry(ResourceType::Encounter, ResourceClass::Encounter, "e1", "1322222222", 200, enc),
        ];
        let rec = PersonRecord { person_id: "x".into(), patients: vec!["pt1".into()], entries, emergency: None };
        let id = build(&rec, "pt1", NOW).identity;
        let entries = rec.entries;
        assert_eq!(id.name, "結 花子");
        assert_eq!(id.kana, "ムスビ ハナコ");
        assert_eq!(id.sex_label(), "女性");
        assert_eq!(id.age_text().as_deref(), Some("56歳"));
        assert_eq!(id.address, "東京都千代田区丸の内1-1");
        assert_eq!(id.insurance, "06139999:１:２:01");
        assert_eq!(id.phone, "03-0000-0000");
        assert!(id.line().starts_with("結 花子（ムスビ ハナコ） 女性 1970-05-05 生（56歳）"));
        let ev = events(&entries);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].period, "2026-03-01 〜 2026-03-10");
        let c = contacts(&entries);
        assert_eq!(c[0].facility, "1322222222");
        assert_eq!(c[0].practitioners, ["山田 太郎"]);
    }

    #[test]
    fn empty_record_sections_say_no_records() {
        let rec = PersonRecord {
            person_id: "x".into(),
            patients: vec!["x".into()],
            entries: vec![],
            emergency: Some("意識障害".into()),
        };
        let s = build(&rec, "x", NOW);
        assert_eq!(s.allergies.empty_text, Some(NO_RECORDS));
        assert_eq!(s.medications.empty_text, Some(NO_RECORDS));
        assert_eq!(s.infections.items.len(), 5);
        assert_eq!(s.emergency.as_deref(), Some("意識障害"));
    }
}
