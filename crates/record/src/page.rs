//! The patient page model: what the clinician's patient page and the patient's own record show,
//! built from a person's record as the gate returned it: the identity (read by
//! [`crate::identity`], as every page reads it), the 6 items (diagnoses, allergies — drug allergies first —, infections, the 43 core labs
//! with their series, prescriptions current and recent), a timeline across facilities and the
//! documents. Pure functions over the record's JSON: one pass, no I/O, never a panic on odd
//! input (a missing element shows as blank).

use std::collections::{BTreeMap, HashMap};

use crate::RecordEntry;
use crate::identity::{self, PatientIdentity};
use musubi_domain::{Flags, ResourceClass};
use musubi_fhir::ResourceType;
use serde_json::Value;

const DAY_MS: i64 = 86_400_000;

/// Where and when a record comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// 医療機関コード.
    pub facility: String,
    /// The facility's name (its code when the registry does not know it).
    pub facility_name: String,
    /// The clinical date (epoch ms).
    pub date: Option<i64>,
}

impl Source {
    fn of(e: &RecordEntry) -> Source {
        Source {
            facility_name: Source::name_of(e),
            facility: e.facility.clone().unwrap_or_default(),
            date: e.clinical_date,
        }
    }

    /// The source facility's name (its code when the registry has no name).
    fn name_of(e: &RecordEntry) -> String {
        match (&e.facility_name, &e.facility) {
            (Some(n), _) => n.clone(),
            (None, Some(f)) if !f.is_empty() => f.clone(),
            _ => "（施設不明）".to_owned(),
        }
    }
}

/// A source patient: how one facility knows the patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePatient {
    /// Patient id in Musubi.
    pub patient_id: String,
    /// The facility.
    pub source: Source,
    /// The facility's own patient number.
    pub local_id: String,
}

/// A diagnosis (傷病名), the newest report of it, and the other facilities that report it.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnosis {
    /// Name.
    pub name: String,
    /// MEDIS 病名管理番号, if coded.
    pub code: Option<String>,
    /// 活動中, 寛解, 治癒 …
    pub status: String,
    /// Whether it is active (active, recurrence, relapse).
    pub active: bool,
    /// 確定, 疑い …
    pub verification: String,
    /// Onset (YYYY-MM-DD…).
    pub onset: String,
    /// 未告知 (shown to clinicians only; the gate hides it from patients).
    pub uninformed: bool,
    /// 長期保存.
    pub long_term: bool,
    /// The newest report.
    pub source: Source,
    /// Other facilities that report the same diagnosis.
    pub also: Vec<Source>,
    /// The record (type, id) for links.
    pub id: String,
}

/// An allergy or intolerance.
#[derive(Debug, Clone, PartialEq)]
pub struct Allergy {
    /// Substance.
    pub substance: String,
    /// Whether it is a drug allergy (shown first).
    pub drug: bool,
    /// 薬剤, 食物, 環境, その他.
    pub category: String,
    /// 高, 低, 評価不能.
    pub criticality: String,
    /// High criticality.
    pub high: bool,
    /// Reactions.
    pub reactions: Vec<String>,
    /// The newest report.
    pub source: Source,
    /// Other facilities that report it.
    pub also: Vec<Source>,
}

/// An infection test result.
#[derive(Debug, Clone, PartialEq)]
pub struct Infection {
    /// Item (梅毒STS, HBs抗原 …).
    pub item: String,
    /// The result as shown.
    pub result: String,
    /// Positive / above the cut-off.
    pub positive: bool,
    /// Source.
    pub source: Source,
}

/// One lab value.
#[derive(Debug, Clone, PartialEq)]
pub struct LabPoint {
    /// Date (epoch ms).
    pub date: i64,
    /// Numeric value, if numeric.
    pub value: Option<f64>,
    /// The value as shown (with unit).
    pub text: String,
    /// `H`, `L` or None.
    pub flag: Option<&'static str>,
    /// The facility's name.
    pub facility_name: String,
}

/// The series of one of the 43 core lab items.
#[derive(Debug, Clone, PartialEq)]
pub struct LabSeries {
    /// Group code (`HbA1c-NGSP`, `ALB` …).
    pub group: String,
    /// Japanese name.
    pub name: String,
    /// Unit.
    pub unit: String,
    /// Reference range (low, high), when known.
    pub range: Option<(f64, f64)>,
    /// The values, oldest first.
    pub points: Vec<LabPoint>,
}

impl LabSeries {
    /// The newest value.
    pub fn latest(&self) -> Option<&LabPoint> {
        self.points.last()
    }
}

/// A prescription.
#[derive(Debug, Clone, PartialEq)]
pub struct Prescription {
    /// Drug.
    pub drug: String,
    /// Dosage as written.
    pub dosage: String,
    /// Days supplied.
    pub days: Option<i64>,
    /// When prescribed (epoch ms).
    pub authored: Option<i64>,
    /// Until when it lasts (epoch ms).
    pub until: Option<i64>,
    /// Source.
    pub source: Source,
}

/// A document (診療情報提供書, 退院時サマリー, 健診結果, notes).
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentItem {
    /// Title.
    pub title: String,
    /// Kind (class label).
    pub kind: String,
    /// Resource type.
    pub rtype: ResourceType,
    /// Id.
    pub id: String,
    /// Whether it carries a signature.
    pub signed: bool,
    /// Source.
    pub source: Source,
}

/// One day at one facility on the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineItem {
    /// The day (epoch ms of a time on that day).
    pub date: i64,
    /// The facility.
    pub facility_name: String,
    /// 外来, 入院, 救急 … (when known).
    pub kind: Option<String>,
    /// For an admission: until when.
    pub until: Option<String>,
    /// What was recorded that day, by kind, with counts.
    pub counts: Vec<(String, usize)>,
    /// The documents of that day.
    pub documents: Vec<DocumentItem>,
}

/// Everything the patient page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientView {
    /// The person.
    pub person_id: String,
    /// Who (see [`crate::identity`]).
    pub identity: PatientIdentity,
    /// How each facility knows them.
    pub sources: Vec<SourcePatient>,
    /// 傷病名 (active first).
    pub diagnoses: Vec<Diagnosis>,
    /// アレルギー (drug allergies first).
    pub allergies: Vec<Allergy>,
    /// 感染症 (newest first).
    pub infections: Vec<Infection>,
    /// 検査 (the 43 core items, in the code table's order).
    pub labs: Vec<LabSeries>,
    /// 処方 in effect now.
    pub current_prescriptions: Vec<Prescription>,
    /// 処方 of the last year that ended.
    pub recent_prescriptions: Vec<Prescription>,
    /// Documents, newest first.
    pub documents: Vec<DocumentItem>,
    /// The timeline, newest first.
    pub timeline: Vec<TimelineItem>,
    /// Records the page does not show by item (other observations, procedures …).
    pub other_count: usize,
}

/// The text of a CodeableConcept: its text, else the first coding's display, else its code.
pub fn concept_text(v: &Value) -> String {
    if let Some(t) = v["text"].as_str().filter(|t| !t.is_empty()) {
        return t.to_owned();
    }
    let codings = v["coding"].as_array();
    codings
        .and_then(|cs| cs.iter().find_map(|c| c["display"].as_str().filter(|d| !d.is_empty())))
        .or_else(|| codings.and_then(|cs| cs.iter().find_map(|c| c["code"].as_str())))
        .unwrap_or("")
        .to_owned()
}

/// The code of the first coding of `v` in `system`.
pub fn coding_code<'a>(v: &'a Value, system: &str) -> Option<&'a str> {
    v["coding"].as_array()?.iter().find(|c| c["system"].as_str() == Some(system)).and_then(|c| c["code"].as_str())
}

fn first_code(v: &Value) -> Option<&str> {
    v["coding"].as_array()?.iter().find_map(|c| c["code"].as_str())
}

/// A Quantity as shown (`7.2 %`).
pub fn quantity_text(q: &Value) -> String {
    let value = match &q["value"] {
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let unit = q["unit"].as_str().or_else(|| q["code"].as_str()).unwrap_or("");
    let comparator = q["comparator"].as_str().unwrap_or("");
    format!("{comparator}{value}{}{unit}", if unit.is_empty() || unit == "%" { "" } else { " " }).trim().to_owned()
}

fn date_of(s: &str) -> Option<i64> {
    musubi_fhir::datetime::parse_range(s).ok().map(|r| r.lo)
}

fn jst_day(ms: i64) -> i64 {
    // Days since the epoch in JST (for grouping by calendar day).
    (ms + 9 * 3600 * 1000).div_euclid(DAY_MS)
}

fn clinical_status(v: &Value) -> (&'static str, bool) {
    match first_code(&v["clinicalStatus"]) {
        Some("active") => ("活動中", true),
        Some("recurrence") => ("再発", true),
        Some("relapse") => ("再燃", true),
        Some("inactive") => ("非活動", false),
        Some("remission") => ("寛解", false),
        Some("resolved") => ("治癒・消失", false),
        // JP-CLINS diagnoses without a status are current ones.
        _ => ("（状態の記載なし）", v["abatementDateTime"].is_null() && v["abatementString"].is_null()),
    }
}

fn verification(v: &Value) -> &'static str {
    match first_code(&v["verificationStatus"]) {
        Some("confirmed") => "確定",
        Some("provisional") => "疑い",
        Some("differential") => "鑑別診断",
        Some("unconfirmed") => "未確定",
        Some("refuted") => "否定",
        Some("entered-in-error") => "誤登録",
        _ => "",
    }
}

fn interpretation_flag(o: &Value) -> Option<&'static str> {
    for i in o["interpretation"].as_array().into_iter().flatten() {
        match first_code(i) {
            Some("H" | "HH" | "HU" | ">" | "A" | "AA") => return Some("H"),
            Some("L" | "LL" | "LU" | "<") => return Some("L"),
            Some("POS" | "DET" | "R") => return Some("H"),
            _ => {}
        }
    }
    None
}

fn observation_value(o: &Value) -> (Option<f64>, String) {
    if o["valueQuantity"].is_object() {
        (o["valueQuantity"]["value"].as_f64(), quantity_text(&o["valueQuantity"]))
    } else if let Some(s) = o["valueString"].as_str() {
        (None, s.to_owned())
    } else if o["valueCodeableConcept"].is_object() {
        (None, concept_text(&o["valueCodeableConcept"]))
    } else if let Some(b) = o["valueBoolean"].as_bool() {
        (None, if b { "あり".into() } else { "なし".into() })
    } else if let Some(i) = o["valueInteger"].as_i64() {
        (Some(i as f64), i.to_string())
    } else {
        let absent =
            if o["dataAbsentReason"].is_object() { concept_text(&o["dataAbsentReason"]) } else { String::new() };
        (None, absent)
    }
}

fn reference_range(o: &Value) -> Option<(f64, f64)> {
    let r = o["referenceRange"].as_array()?.first()?;
    Some((r["low"]["value"].as_f64()?, r["high"]["value"].as_f64()?))
}

/// The lab group (code, Japanese name) of an Observation, if it is one of the 43 core items
/// or the 5 infection items.
fn lab_group_of(o: &Value) -> Option<&'static musubi_validate::terminology::LabGroup> {
    o["code"]["coding"]
        .as_array()?
        .iter()
        .find_map(|c| musubi_validate::terminology::lab_group(c["system"].as_str()?, c["code"].as_str()?))
}

/// The document title of a Bundle (its Composition), Composition or DocumentReference.
pub fn document_title(e: &RecordEntry) -> String {
    let r = &e.resource;
    let t = match e.rtype {
        ResourceType::Bundle => {
            let comp = r["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| &x["resource"])
                .find(|x| x["resourceType"].as_str() == Some("Composition"));
            comp.map(|c| c["title"].as_str().map(str::to_owned).unwrap_or_else(|| concept_text(&c["type"])))
        }
        ResourceType::Composition => {
            Some(r["title"].as_str().map(str::to_owned).unwrap_or_else(|| concept_text(&r["type"])))
        }
        ResourceType::DocumentReference => {
            Some(r["description"].as_str().map(str::to_owned).unwrap_or_else(|| concept_text(&r["type"])))
        }
        _ => None,
    };
    t.filter(|t| !t.is_empty()).unwrap_or_else(|| e.class.label_ja().to_owned())
}

fn is_document(e: &RecordEntry) -> bool {
    matches!(e.rtype, ResourceType::Bundle | ResourceType::Composition | ResourceType::DocumentReference)
        || matches!(
            e.class,
            ResourceClass::Referral
                | ResourceClass::DischargeSummary
                | ResourceClass::Checkup
                | ResourceClass::PatientSummary
                | ResourceClass::Document
        ) && !matches!(e.rtype, ResourceType::Patient)
}

fn encounter_kind(class_code: Option<&str>) -> Option<&'static str> {
    match class_code? {
        "IMP" | "ACUTE" | "NONAC" => Some("入院"),
        "AMB" => Some("外来"),
        "EMER" => Some("救急"),
        "HH" => Some("在宅"),
        "VR" => Some("オンライン"),
        _ => None,
    }
}

/// Groups reports of the same thing from several facilities: the newest first, the others in
/// `also`.
fn group_by<T, K: std::hash::Hash + Eq + Clone>(
    items: Vec<T>,
    key: impl Fn(&T) -> K,
    date: impl Fn(&T) -> i64,
    source: impl Fn(&T) -> Source,
    set_also: impl Fn(&mut T, Vec<Source>),
) -> Vec<T> {
    let mut order: Vec<K> = Vec::new();
    let mut groups: HashMap<K, Vec<T>> = HashMap::new();
    for it in items {
        let k = key(&it);
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(it);
    }
    let mut out = Vec::with_capacity(order.len());
    for k in order {
        let Some(mut g) = groups.remove(&k) else { continue };
        g.sort_by_key(|x| std::cmp::Reverse(date(x)));
        let mut it = g.into_iter();
        let Some(mut first) = it.next() else { continue };
        let mut also: Vec<Source> = Vec::new();
        for other in it {
            let s = source(&other);
            if s.facility != source(&first).facility && !also.iter().any(|a| a.facility == s.facility) {
                also.push(s);
            }
        }
        set_also(&mut first, also);
        out.push(first);
    }
    out
}

/// What the patient page reads of one stored version, derived once per version and kept with
/// it (see [`crate::Derived`]): a long history's labs are thousands of records.
/// Content only: the record's class and dates come from the store with each request.
struct PageFacts {
    /// For an Observation: its lab group (43 core items, 5 infection items).
    lab_group: Option<&'static musubi_validate::terminology::LabGroup>,
    /// For an Observation: the value as a number, and as shown.
    value: Option<f64>,
    text: String,
    /// For an Observation: the first reference range and the interpretation flag.
    range: Option<(f64, f64)>,
    flag: Option<&'static str>,
    /// For an Observation: the unit of its Quantity value.
    unit: String,
    /// The kind of visit of a contained Encounter (外来, 入院, …).
    contained_encounter: Option<&'static str>,
}

impl PageFacts {
    fn of(rtype: ResourceType, r: &Value) -> PageFacts {
        let observation = rtype == ResourceType::Observation;
        let (value, text) = if observation { observation_value(r) } else { (None, String::new()) };
        PageFacts {
            lab_group: if observation { lab_group_of(r) } else { None },
            value,
            text,
            range: if observation { reference_range(r) } else { None },
            flag: if observation { interpretation_flag(r) } else { None },
            unit: if observation {
                r["valueQuantity"]["unit"].as_str().unwrap_or("").to_owned()
            } else {
                String::new()
            },
            contained_encounter: r["contained"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["resourceType"].as_str() == Some("Encounter"))
                .and_then(|c| encounter_kind(c["class"]["code"].as_str())),
        }
    }
}

/// Builds the patient page from the visible entries (newest first, as `person_record` returns
/// them). `now_ms` decides what is current.
pub fn patient_view(person_id: &str, entries: &[RecordEntry], now_ms: i64) -> PatientView {
    let identity = PatientIdentity::of_person(entries, now_ms);
    let mut sources = Vec::new();
    let mut diagnoses = Vec::new();
    let mut allergies = Vec::new();
    let mut infections = Vec::new();
    let mut labs: BTreeMap<&'static str, LabSeries> = BTreeMap::new();
    let mut prescriptions = Vec::new();
    let mut documents = Vec::new();
    let mut other_count = 0usize;
    // (day, facility) → timeline item
    let mut days: BTreeMap<(i64, &str), TimelineItem> = BTreeMap::new();
    for e in entries {
        let r = &e.resource;
        // Built only for what lists its source: most records (labs above all) only count on
        // the timeline, and a long history has thousands.
        let src = || Source::of(e);
        let facts = e.derived.get_or_derive(|| PageFacts::of(e.rtype, r));
        let mut day_kind: Option<&'static str> = None;
        let mut day_until = None;
        match e.rtype {
            ResourceType::Patient => {
                sources.push(SourcePatient {
                    patient_id: e.id.clone(),
                    local_id: identity::local_id_at(r, e.facility.as_deref().unwrap_or("")).unwrap_or_default(),
                    source: src(),
                });
                continue;
            }
            ResourceType::Consent | ResourceType::AuditEvent | ResourceType::Provenance => continue,
            ResourceType::Condition => diagnoses.push({
                let (status, active) = clinical_status(r);
                Diagnosis {
                    name: concept_text(&r["code"]),
                    code: coding_code(&r["code"], musubi_domain::systems::MEDIS_DISEASE).map(str::to_owned),
                    status: status.to_owned(),
                    active,
                    verification: verification(r).to_owned(),
                    onset: r["onsetDateTime"].as_str().or_else(|| r["onsetString"].as_str()).unwrap_or("").to_owned(),
                    uninformed: e.flags.contains(Flags::UNINFORMED),
                    long_term: e.flags.contains(Flags::LTS),
                    source: src(),
                    also: Vec::new(),
                    id: e.id.clone(),
                }
            }),
            ResourceType::AllergyIntolerance => {
                let category = r["category"].as_array().and_then(|c| c.first()).and_then(Value::as_str).unwrap_or("");
                let drug = e.class == ResourceClass::DrugAllergy || category == "medication";
                let reactions = r["reaction"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|x| x["manifestation"].as_array().into_iter().flatten().map(concept_text))
                    .filter(|t| !t.is_empty())
                    .collect();
                let crit = r["criticality"].as_str().unwrap_or("");
                allergies.push(Allergy {
                    substance: concept_text(&r["code"]),
                    drug,
                    category: match category {
                        "medication" => "薬剤",
                        "food" => "食物",
                        "environment" => "環境",
                        "biologic" => "生物",
                        _ => "その他",
                    }
                    .to_owned(),
                    criticality: match crit {
                        "high" => "高",
                        "low" => "低",
                        "unable-to-assess" => "評価不能",
                        _ => "",
                    }
                    .to_owned(),
                    high: crit == "high",
                    reactions,
                    source: src(),
                    also: Vec::new(),
                });
            }
            ResourceType::Observation if matches!(e.class, ResourceClass::Lab | ResourceClass::Infection) => {
                let group = facts.lab_group;
                let (value, text) = (facts.value, facts.text.clone());
                let name = group.map_or_else(|| concept_text(&r["code"]), |g| g.display.to_owned());
                if e.class == ResourceClass::Infection {
                    let flag = facts.flag;
                    infections.push(Infection {
                        item: name,
                        positive: flag == Some("H") || text.contains("陽性"),
                        result: text,
                        source: src(),
                    });
                } else if let Some(g) = group {
                    let range = facts.range;
                    let flag = facts.flag.or(match (value, range) {
                        (Some(v), Some((_, hi))) if v > hi => Some("H"),
                        (Some(v), Some((lo, _))) if v < lo => Some("L"),
                        _ => None,
                    });
                    let series = labs.entry(g.code).or_insert_with(|| LabSeries {
                        group: g.code.to_owned(),
                        name: g.display.to_owned(),
                        unit: String::new(),
                        range: None,
                        points: Vec::new(),
                    });
                    // Entries come newest first: the first range and unit seen are the newest.
                    if series.range.is_none() {
                        series.range = range;
                    }
                    if series.unit.is_empty() {
                        series.unit.clone_from(&facts.unit);
                    }
                    series.points.push(LabPoint {
                        date: e.clinical_date.unwrap_or(0),
                        value,
                        text,
                        flag,
                        facility_name: Source::name_of(e),
                    });
                } else {
                    other_count += 1;
                }
            }
            ResourceType::MedicationRequest | ResourceType::MedicationStatement | ResourceType::MedicationDispense => {
                let drug = concept_text(&r["medicationCodeableConcept"]);
                let dosage = r["dosageInstruction"]
                    .as_array()
                    .or_else(|| r["dosage"].as_array())
                    .map(|d| d.iter().filter_map(|x| x["text"].as_str()).collect::<Vec<_>>().join(" / "))
                    .unwrap_or_default();
                let days = r["dispenseRequest"]["expectedSupplyDuration"]["value"]
                    .as_f64()
                    .or_else(|| r["daysSupply"]["value"].as_f64())
                    .map(|d| d.round() as i64);
                let authored = r["authoredOn"]
                    .as_str()
                    .or_else(|| r["whenHandedOver"].as_str())
                    .and_then(date_of)
                    .or(e.clinical_date);
                prescriptions.push(Prescription {
                    drug,
                    dosage,
                    days,
                    authored,
                    until: authored.map(|a| a + days.unwrap_or(0).max(1) * DAY_MS),
                    source: src(),
                });
            }
            ResourceType::Encounter => {
                day_kind = encounter_kind(r["class"]["code"].as_str());
                if day_kind == Some("入院") {
                    day_until = r["period"]["end"].as_str().map(str::to_owned);
                }
            }
            _ if is_document(e) => {
                documents.push(DocumentItem {
                    title: document_title(e),
                    kind: e.class.label_ja().to_owned(),
                    rtype: e.rtype,
                    id: e.id.clone(),
                    signed: r["signature"].is_object(),
                    source: src(),
                });
            }
            _ => other_count += 1,
        }
        // The timeline: every dated record puts its facility's day on it.
        let Some(date) = e.clinical_date else { continue };
        if day_kind.is_none() {
            day_kind = facts.contained_encounter;
        }
        let item = days.entry((jst_day(date), e.facility.as_deref().unwrap_or(""))).or_insert_with(|| TimelineItem {
            date,
            facility_name: Source::name_of(e),
            kind: None,
            until: None,
            counts: Vec::new(),
            documents: Vec::new(),
        });
        if (item.kind.is_none() || day_kind == Some("入院"))
            && let Some(k) = day_kind
        {
            item.kind = Some(k.to_owned());
        }
        if day_until.is_some() {
            item.until = day_until;
        }
        if is_document(e) {
            if let Some(d) = documents.last().filter(|d| d.id == e.id) {
                item.documents.push(d.clone());
            }
        } else if e.rtype != ResourceType::Encounter {
            let label = e.class.label_ja();
            match item.counts.iter_mut().find(|(l, _)| l == label) {
                Some((_, n)) => *n += 1,
                None => item.counts.push((label.to_owned(), 1)),
            }
        }
    }
    let diagnoses = {
        let mut d = group_by(
            diagnoses,
            |d: &Diagnosis| d.code.clone().filter(|c| !c.chars().all(|x| x == '9')).unwrap_or_else(|| d.name.clone()),
            |d| d.source.date.unwrap_or(0),
            |d| d.source.clone(),
            |d, also| d.also = also,
        );
        // Active first, then newest.
        d.sort_by_key(|x| (!x.active, std::cmp::Reverse(x.source.date.unwrap_or(0))));
        d
    };
    let allergies = {
        let mut a = group_by(
            allergies,
            |a: &Allergy| a.substance.clone(),
            |a| a.source.date.unwrap_or(0),
            |a| a.source.clone(),
            |a, also| a.also = also,
        );
        a.sort_by_key(|x| (!x.drug, !x.high, std::cmp::Reverse(x.source.date.unwrap_or(0))));
        a
    };
    infections.sort_by_key(|i| std::cmp::Reverse(i.source.date.unwrap_or(0)));
    // Labs in the order of the core-item table; each series oldest first.
    let mut ordered = Vec::new();
    for g in musubi_validate::terminology::lab_groups(musubi_validate::terminology::LabKind::Core) {
        if let Some(mut s) = labs.remove(g.code) {
            s.points.sort_by_key(|p| p.date);
            ordered.push(s);
        }
    }
    prescriptions.sort_by_key(|p| std::cmp::Reverse(p.authored.unwrap_or(0)));
    let (current, past): (Vec<_>, Vec<_>) =
        prescriptions.into_iter().partition(|p| p.until.is_some_and(|u| u >= now_ms));
    let recent: Vec<Prescription> =
        past.into_iter().filter(|p| p.authored.is_some_and(|a| a >= now_ms - 365 * DAY_MS)).collect();
    documents.sort_by_key(|d| std::cmp::Reverse(d.source.date.unwrap_or(0)));
    let mut timeline: Vec<TimelineItem> = days.into_values().collect();
    timeline.sort_by_key(|t| std::cmp::Reverse(t.date));
    sources.sort_by(|a, b| a.source.facility_name.cmp(&b.source.facility_name));
    PatientView {
        person_id: person_id.to_owned(),
        identity,
        sources,
        diagnoses,
        allergies,
        infections,
        labs: ordered,
        current_prescriptions: current,
        recent_prescriptions: recent,
        documents,
        timeline,
        other_count,
    }
}

/// Plain text from an XHTML narrative (`text.div`): tags dropped, block ends as line breaks,
/// entities decoded. Sender narrative is never inserted as HTML.
pub fn narrative_text(xhtml: &str) -> String {
    let mut out = String::with_capacity(xhtml.len());
    let mut chars = xhtml.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' => {
                let mut tag = String::new();
                for t in chars.by_ref() {
                    if t == '>' {
                        break;
                    }
                    if tag.len() < 16 {
                        tag.push(t.to_ascii_lowercase());
                    }
                }
                let name: String =
                    tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
                if matches!(name.as_str(), "br" | "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "table")
                    && !out.ends_with('\n')
                    && !out.is_empty()
                {
                    out.push('\n');
                }
            }
            '&' => {
                let mut ent = String::new();
                while let Some(&n) = chars.peek() {
                    if n == ';' || ent.len() > 10 {
                        break;
                    }
                    ent.push(n);
                    chars.next();
                }
                let closed = chars.peek() == Some(&';');
                if closed {
                    chars.next();
                }
                let decoded = match ent.as_str() {
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "amp" => Some('&'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    "nbsp" => Some(' '),
                    e if e.starts_with("#x") || e.starts_with("#X") => {
                        e.get(2..).and_then(|h| u32::from_str_radix(h, 16).ok()).and_then(char::from_u32)
                    }
                    e if e.starts_with('#') => e.get(1..).and_then(|d| d.parse().ok()).and_then(char::from_u32),
                    _ => None,
                };
                match (decoded, closed) {
                    (Some(ch), true) => out.push(ch),
                    _ => {
                        out.push('&');
                        out.push_str(&ent);
                        if closed {
                            out.push(';');
                        }
                    }
                }
            }
            c => out.push(c),
        }
    }
    // Collapse the source's indentation but keep line breaks.
    out.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(
        rtype: ResourceType,
        id: &str,
        class: ResourceClass,
        fac: &str,
        date: Option<&str>,
        r: Value,
    ) -> RecordEntry {
        RecordEntry {
            rtype,
            id: id.into(),
            version: 1,
            class,
            facility: Some(fac.into()),
            facility_name: Some(format!("施設{fac}")),
            clinical_date: date.and_then(date_of),
            flags: Flags::empty(),
            resource: r.into(),
            derived: Default::default(),
        }
    }

    const NOW: i64 = 1_793_000_000_000; // 2026-10-26

    #[test]
    fn narrative_is_plain_text() {
        assert_eq!(
            narrative_text(
                r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>経過&amp;所見</p><p>&lt;b&gt; 良好<br/>退院</p><script>x</script></div>"#
            ),
            "経過&所見\n<b> 良好\n退院\nx"
        );
        assert_eq!(narrative_text("a &unknown; &#x9AD9; &#39640; &"), "a &unknown; 髙 高 &");
    }

    #[test]
    fn the_page_model_orders_and_groups() {
        let cond = |code: &str, name: &str, status: &str| {
            json!({"resourceType": "Condition", "clinicalStatus": {"coding": [{"code": status}]},
                   "code": {"coding": [{"system": musubi_domain::systems::MEDIS_DISEASE, "code": code}], "text": name}})
        };
        let entries = vec![
            entry(
                ResourceType::Patient,
                "p1",
                ResourceClass::Demographics,
                "1312345678",
                None,
                json!({"resourceType": "Patient",
                "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11312345678", "value": "C-1"}],
                "name": [{"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "IDE"}], "text": "結 花子"},
                         {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}], "text": "ムスビ ハナコ"}],
                "gender": "female", "birthDate": "1970-05-05"}),
            ),
            entry(
                ResourceType::Condition,
                "c3",
                ResourceClass::Diagnosis,
                "1318814790",
                Some("2026-09-01"),
                cond("20064591", "２型糖尿病", "active"),
            ),
            entry(
                ResourceType::Condition,
                "c1",
                ResourceClass::Diagnosis,
                "1312345678",
                Some("2025-04-01"),
                cond("20064591", "２型糖尿病", "active"),
            ),
            entry(
                ResourceType::Condition,
                "c2",
                ResourceClass::Diagnosis,
                "1312345678",
                Some("2025-03-01"),
                cond("20051234", "急性気管支炎", "resolved"),
            ),
            entry(
                ResourceType::AllergyIntolerance,
                "a1",
                ResourceClass::OtherAllergy,
                "1312345678",
                Some("2025-03-01"),
                json!({"resourceType": "AllergyIntolerance", "category": ["food"], "code": {"text": "そば"}}),
            ),
            entry(
                ResourceType::AllergyIntolerance,
                "a2",
                ResourceClass::DrugAllergy,
                "1312345678",
                Some("2024-03-01"),
                json!({"resourceType": "AllergyIntolerance", "category": ["medication"], "criticality": "high", "code": {"text": "ペニシリン系"},
                       "reaction": [{"manifestation": [{"text": "蕁麻疹"}]}]}),
            ),
        ];
        let v = patient_view("p1", &entries, NOW);
        assert_eq!(v.identity.name, "結 花子");
        assert_eq!(v.identity.kana, "ムスビ ハナコ");
        assert_eq!(v.identity.age_text().as_deref(), Some("56歳"));
        assert_eq!(v.sources[0].local_id, "C-1");
        assert_eq!(v.diagnoses.len(), 2, "the same diagnosis from two facilities is one row");
        assert_eq!(v.diagnoses[0].name, "２型糖尿病");
        assert_eq!(v.diagnoses[0].source.facility, "1318814790", "newest report first");
        assert_eq!(v.diagnoses[0].also[0].facility, "1312345678");
        assert_eq!(v.diagnoses[1].status, "治癒・消失");
        assert_eq!(v.allergies[0].substance, "ペニシリン系", "drug allergies first");
        assert_eq!(v.allergies[0].reactions, vec!["蕁麻疹"]);
        assert_eq!(v.timeline.len(), 4);
        assert_eq!(v.timeline[0].facility_name, "施設1318814790");
    }

    #[test]
    fn labs_form_series_with_ranges_and_flags() {
        let lab = |v: f64, d: &str| {
            json!({"resourceType": "Observation",
                   "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "code": "3D046000001920402"}]},
                   "valueQuantity": {"value": v, "unit": "%"},
                   "referenceRange": [{"low": {"value": 4.6}, "high": {"value": 6.2}}], "effectiveDateTime": d})
        };
        let entries = vec![
            entry(
                ResourceType::Observation,
                "o2",
                ResourceClass::Lab,
                "1312345678",
                Some("2026-06-01"),
                lab(7.2, "2026-06-01"),
            ),
            entry(
                ResourceType::Observation,
                "o1",
                ResourceClass::Lab,
                "1312345678",
                Some("2026-01-01"),
                lab(6.0, "2026-01-01"),
            ),
        ];
        let v = patient_view("p", &entries, NOW);
        assert_eq!(v.labs.len(), 1);
        let s = &v.labs[0];
        assert!(s.name.contains("HbA1c"), "{}", s.name);
        assert_eq!(s.range, Some((4.6, 6.2)));
        assert_eq!(s.points.iter().map(|p| p.value).collect::<Vec<_>>(), vec![Some(6.0), Some(7.2)]);
        assert_eq!(s.latest().map(|p| p.flag), Some(Some("H")));
        assert_eq!(s.latest().map(|p| p.text.as_str()), Some("7.2%"));
    }

    #[test]
    fn prescriptions_split_into_current_and_recent() {
        let rx = |d: &str, days: i64| {
            json!({"resourceType": "MedicationRequest", "medicationCodeableConcept": {"text": "メトホルミン錠"},
                   "authoredOn": d, "dosageInstruction": [{"text": "1日2回朝夕食後"}],
                   "dispenseRequest": {"expectedSupplyDuration": {"value": days}}})
        };
        let entries = vec![
            entry(
                ResourceType::MedicationRequest,
                "m1",
                ResourceClass::Prescription,
                "1312345678",
                Some("2026-10-01"),
                rx("2026-10-01", 60),
            ),
            entry(
                ResourceType::MedicationRequest,
                "m2",
                ResourceClass::Prescription,
                "1312345678",
                Some("2026-03-01"),
                rx("2026-03-01", 30),
            ),
            entry(
                ResourceType::MedicationRequest,
                "m3",
                ResourceClass::Prescription,
                "1312345678",
                Some("2020-03-01"),
                rx("2020-03-01", 30),
            ),
        ];
        let v = patient_view("p", &entries, NOW);
        assert_eq!(v.current_prescriptions.len(), 1);
        assert_eq!(v.current_prescriptions[0].dosage, "1日2回朝夕食後");
        assert_eq!(v.recent_prescriptions.len(), 1, "older than a year is left out");
    }

    proptest::proptest! {
        #[test]
        fn narrative_never_panics(s in ".{0,200}") {
            let _ = narrative_text(&s);
        }
    }
}
