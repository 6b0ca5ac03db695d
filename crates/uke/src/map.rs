//! From parsed receipts to FHIR resources (Patient, Coverage, Condition, Procedure,
//! MedicationStatement / MedicationDispense) and facility-use facts.

use musubi_domain::{FacilityCode, InsuranceId, InsurerNumber, systems};
use serde_json::{Map, Value as Json, json};
use uuid::Uuid;

use crate::date::{self, YearMonth};
use crate::layout::FileKind;
use crate::parse::{Parsed, Record, Unit};
use crate::{
    FacilityUse, MappedReceipt, MappedResource, Problem, ProblemKind, ReceiptOutcome, Rejected, Severity, UkeFile,
    master,
};

/// Namespace of Musubi's UKE logical ids (UUID v5). Never change it.
const NAMESPACE: Uuid = Uuid::from_bytes(*b"musubi-uke-ns-v1");

fn logical_id(resource_type: &str, key: &str) -> String {
    Uuid::new_v5(&NAMESPACE, format!("{resource_type}/{key}").as_bytes()).to_string()
}

const CS_PRACTICE: &str = "urn:uke:cs:medical-practice";
const CS_DRUG: &str = "urn:uke:cs:drug";
const CS_DEVICE: &str = "urn:uke:cs:device";
const CS_CATEGORY: &str = "urn:uke:cs:shinryo-shikibetsu";
const CS_USAGE: &str = "urn:uke:cs:usage";
/// JP Core's Rp number system (URL variant of JP Core 1.1.2, `identifier:rpNumber`).
const RP_NUMBER: &str = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/Medication-RPGroupNumber";
/// JP Core's order-in-Rp system (URL variant of JP Core 1.1.2, `identifier:orderInRp`).
const ORDER_IN_RP: &str = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicationAdministrationIndex";

/// The 調剤 Rp being read: its SH record, the CZ 調剤年月日 and 調剤数量, and how many IY
/// drugs it has had so far.
#[derive(Default)]
struct Dispensing<'r> {
    handed: Option<String>,
    quantity: Option<String>,
    sh: Option<&'r Record>,
    drugs: usize,
}

fn problem(
    file: &str,
    severity: Severity,
    kind: ProblemKind,
    rec: Option<&Record>,
    field: Option<usize>,
    reason: String,
) -> Problem {
    Problem {
        severity,
        kind,
        file: file.to_owned(),
        line: rec.map(|r| r.line),
        record: rec.map(|r| r.id().to_owned()),
        field,
        reason,
    }
}

pub(crate) fn collect(parsed: Parsed, expected: Option<FacilityCode>) -> Result<UkeFile, Rejected> {
    let name = parsed.name.clone();
    let reject = |problems: Vec<Problem>| Rejected { name: name.clone(), sha256: parsed.sha256.clone(), problems };
    let mut file_problems = parsed.problems.clone();
    let (Some(kind), Some(edition), Some(header)) = (parsed.kind, parsed.edition, parsed.header.as_ref()) else {
        return Err(reject(file_problems));
    };
    if file_problems.iter().any(|p| p.severity == Severity::Error) {
        return Err(reject(file_problems));
    }
    let code = format!("{}{}{}", header.field(3).trim(), header.field(4).trim(), header.field(5).trim());
    let facility: FacilityCode = match code.parse() {
        Ok(f) => f,
        Err(e) => {
            file_problems.push(problem(
                &name,
                Severity::Error,
                ProblemKind::Code,
                Some(header),
                Some(5),
                format!("医療機関コード {code} が不正です: {e}"),
            ));
            return Err(reject(file_problems));
        }
    };
    if let Some(exp) = expected
        && exp != facility
    {
        file_problems.push(problem(
            &name,
            Severity::Error,
            ProblemKind::Consistency,
            Some(header),
            Some(5),
            format!("このファイルは医療機関 {facility} のものです（収集対象は {exp}）"),
        ));
        return Err(reject(file_problems));
    }
    let ym_field = if kind == FileKind::Medical { 8 } else { 7 };
    let Some(billing) = header.opt(ym_field).and_then(date::year_month) else {
        return Err(reject(file_problems));
    };
    let name_field = if kind == FileKind::Medical { 7 } else { 6 };
    totals(&parsed, &name, &mut file_problems);
    let submission = submission(&parsed, kind, header);

    let mut receipts = Vec::with_capacity(parsed.units.len());
    for unit in &parsed.units {
        let first = unit.records.first().map(|r| r.line).unwrap_or(0);
        let last = unit.records.last().map(|r| r.line).unwrap_or(first);
        let result = if unit.has_errors() {
            Err(unit.problems.clone())
        } else {
            let mut ctx = ReceiptCtx::new(&name, kind, facility, billing, &submission, unit);
            match ctx.map() {
                Some(m) => Ok(m),
                None => Err(ctx.problems),
            }
        };
        receipts.push(ReceiptOutcome {
            receipt_no: unit.receipt_no.clone(),
            lines: (first, last),
            raw: unit.raw.clone(),
            result,
        });
    }
    Ok(UkeFile {
        name: name.clone(),
        sha256: parsed.sha256.clone(),
        kind,
        edition,
        facility,
        facility_name: header.opt(name_field).map(str::to_owned),
        billing_month: billing.fhir(),
        receipts,
        problems: file_problems,
        records: parsed.records,
    })
}

/// Records only DPC receipts have (the older table's DPC records; see layout::MEDICAL).
const DPC_RECORDS: &[&str] = &["BU", "SB", "KK", "SK", "GA", "HH", "GT", "CD"];

/// What, besides the facility and the 請求年月, tells one submitted file from another: the
/// kind of receipts (`ika`, `dpc`, `chozai`), the 審査支払機関 (IR-2 / YK-2: 1 支払基金,
/// 2 国保連) and, for a multi-volume submission, the volume (IR-9 / YK-8 マルチボリューム識別情報,
/// `00` when there is one volume).
///
/// A receipt computer numbers the receipts (RE-2 レセプト番号) per file, from 1: a facility's
/// 社保 and 国保 files of one month, and a DPC hospital's 医科 and DPC files, reuse the same
/// numbers for other patients. Receipt ids carry this tag so they never collide, and, being
/// read from the file's own content, the same file always gives the same ids. A file is `dpc`
/// when any of its receipts has a DPC record; a hospital that sends DPC and 出来高 receipts in
/// one file numbers them in one sequence, so tagging that whole file `dpc` keeps them apart.
fn submission(parsed: &Parsed, kind: FileKind, header: &Record) -> String {
    let receipts = match kind {
        FileKind::Pharmacy => "chozai",
        FileKind::Medical
            if parsed.units.iter().flat_map(|u| u.records.iter()).any(|r| DPC_RECORDS.contains(&r.id())) =>
        {
            "dpc"
        }
        FileKind::Medical => "ika",
    };
    let reviewer = header.opt(2).unwrap_or("0");
    let volume = header.opt(if kind == FileKind::Medical { 9 } else { 8 }).filter(|v| *v != "00");
    match volume {
        Some(v) => format!("{receipts}{reviewer}v{v}"),
        None => format!("{receipts}{reviewer}"),
    }
}

/// GO 総件数 is the number of HO and KO records; 総合計点数 the sum of HO 合計点数.
fn totals(parsed: &Parsed, name: &str, out: &mut Vec<Problem>) {
    let Some(go) = parsed.trailer.as_ref() else { return };
    let all = parsed.units.iter().flat_map(|u| u.records.iter());
    let (mut count, mut points) = (0u64, 0u64);
    for r in all {
        match r.id() {
            "HO" => {
                count += 1;
                points += r.field(6).trim().parse::<u64>().unwrap_or(0);
            }
            "KO" => count += 1,
            _ => {}
        }
    }
    if let Some(n) = go.opt(2).and_then(|v| v.parse::<u64>().ok())
        && n != count
    {
        out.push(problem(
            name,
            Severity::Warning,
            ProblemKind::Consistency,
            Some(go),
            Some(2),
            format!("GO-2 総件数 {n} が HO・KO レコードの数 {count} と一致しません"),
        ));
    }
    if let Some(n) = go.opt(3).and_then(|v| v.parse::<u64>().ok())
        && n != points
    {
        out.push(problem(
            name,
            Severity::Warning,
            ProblemKind::Consistency,
            Some(go),
            Some(3),
            format!("GO-3 総合計点数 {n} が HO の合計点数の和 {points} と一致しません"),
        ));
    }
}

struct ReceiptCtx<'u> {
    file: &'u str,
    kind: FileKind,
    facility: FacilityCode,
    billing: YearMonth,
    unit: &'u Unit,
    base: String,
    patient_ref: Json,
    problems: Vec<Problem>,
    out: Vec<MappedResource>,
}

fn is_kana(s: &str) -> bool {
    s.chars().all(|c| matches!(c, 'ァ'..='ヶ' | 'ー' | '・' | '　' | ' ' | 'ｦ'..='ﾟ'))
}

fn human_name(text: &str, rep: &str) -> Json {
    let mut parts = text.splitn(2, ['　', ' ']);
    let family = parts.next().unwrap_or("").trim();
    let given = parts.next().unwrap_or("").trim();
    let mut n = Map::new();
    n.insert("extension".into(), json!([{"url": systems::EXT_NAME_REPRESENTATION, "valueCode": rep}]));
    n.insert("use".into(), json!("official"));
    n.insert("text".into(), json!(text));
    if !family.is_empty() && !given.is_empty() {
        n.insert("family".into(), json!(family));
        n.insert("given".into(), json!([given]));
    }
    Json::Object(n)
}

fn coding(system: &str, code: &str, display: Option<&str>) -> Json {
    match display {
        Some(d) => json!({"system": system, "code": code, "display": d}),
        None => json!({"system": system, "code": code}),
    }
}

fn number(s: &str) -> Option<Json> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(json!(i));
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite()).and_then(serde_json::Number::from_f64).map(Json::Number)
}

impl<'u> ReceiptCtx<'u> {
    fn new(
        file: &'u str,
        kind: FileKind,
        facility: FacilityCode,
        billing: YearMonth,
        submission: &str,
        unit: &'u Unit,
    ) -> Self {
        let no = unit.receipt_no.clone().unwrap_or_default();
        ReceiptCtx {
            file,
            kind,
            facility,
            billing,
            unit,
            base: format!("{facility}.{}.{submission}.{no}", billing.compact()),
            patient_ref: Json::Null,
            problems: unit.problems.clone(),
            out: Vec::new(),
        }
    }

    fn warn(&mut self, rec: &Record, field: Option<usize>, kind: ProblemKind, reason: String) {
        self.problems.push(problem(self.file, Severity::Warning, kind, Some(rec), field, reason));
    }

    fn push(&mut self, resource_type: &'static str, ordinal: usize, rec: &Record, body: Map<String, Json>) -> usize {
        let key = format!("{}.{}.{ordinal}", self.base, rec.id());
        let id = logical_id(resource_type, &key);
        self.push_with(resource_type, key, id, rec.line, body)
    }

    fn push_with(
        &mut self,
        resource_type: &'static str,
        key: String,
        id: String,
        line: usize,
        body: Map<String, Json>,
    ) -> usize {
        let mut full = Map::new();
        full.insert("resourceType".into(), json!(resource_type));
        full.insert("id".into(), json!(id));
        full.extend(body);
        self.out.push(MappedResource { resource_type, id, key, line, resource: Json::Object(full) });
        self.out.len() - 1
    }

    /// The day-by-day 算定日 fields (day → value) of an SI/IY/TO record of the current edition.
    fn days(&self, rec: &Record) -> Vec<(u8, String)> {
        let first = match (rec.id(), rec.fields.len()) {
            ("SI" | "IY", 44..) => 14,
            ("TO", 48..) => 18,
            _ => return Vec::new(),
        };
        (0u8..31).filter_map(|d| rec.opt(first + usize::from(d)).map(|v| (d + 1, v.to_owned()))).collect()
    }

    /// When a claim line happened: the 算定日 span, or the 診療年月 when the edition has none.
    fn period(&self, rec: &Record, ym: YearMonth) -> (Option<Json>, Option<String>, Option<String>) {
        let days = self.days(rec);
        let start = days.first().and_then(|(d, _)| ym.day(*d));
        let end = days.last().and_then(|(d, _)| ym.day(*d));
        let note = (!days.is_empty()).then(|| {
            let list: Vec<String> = days.iter().map(|(d, v)| format!("{d}日({v})")).collect();
            format!("算定日: {}", list.join(", "))
        });
        match (start, end) {
            (Some(s), Some(e)) => (Some(json!({"start": s, "end": e})), None, note),
            _ => (None, Some(ym.fhir()), note),
        }
    }

    fn map(&mut self) -> Option<MappedReceipt> {
        let unit = self.unit;
        let re = unit.records.first().filter(|r| r.id() == "RE")?;
        let ym = re.opt(4).and_then(date::year_month).unwrap_or(self.billing);
        let pharmacy = self.kind == FileKind::Pharmacy;

        // Insurance identity: HO (保険者番号, 記号, 番号) with 枝番 from the SN of the 医療保険.
        let ho = unit.records.iter().find(|r| r.id() == "HO");
        let branch = unit
            .records
            .iter()
            .find(|r| r.id() == "SN" && r.opt(2) == Some("1"))
            .and_then(|sn| sn.opt(7))
            .and_then(|b| b.parse::<u8>().ok());
        let mut insurance_id = None;
        if let Some(ho) = ho {
            let made = ho
                .field(2)
                .trim()
                .parse::<InsurerNumber>()
                .and_then(|n| InsuranceId::new(n, ho.opt(3).unwrap_or(""), ho.opt(4).unwrap_or(""), branch));
            match made {
                Ok(id) => insurance_id = Some(id),
                Err(e) => {
                    self.warn(ho, Some(2), ProblemKind::Code, format!("HO から被保険者個人識別子を作れません: {e}"))
                }
            }
        }
        let karte = re.opt(if pharmacy { 36 } else { 14 }).map(str::to_owned);
        let patient_key = match (&karte, &insurance_id) {
            (Some(k), _) => format!("{}.{k}.UKE", self.facility),
            (None, Some(id)) => format!("{}.ins.{}.UKE", self.facility, id.match_key()),
            (None, None) => format!("{}.UKE", self.base),
        };
        let patient_id = logical_id("Patient", &patient_key);
        self.patient_ref = json!({"reference": format!("Patient/{patient_id}")});

        let mut p = Map::new();
        p.insert("meta".into(), json!({"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient"]}));
        let mut ids = Vec::new();
        if let Some(k) = &karte {
            ids.push(json!({"system": format!("{}{}", systems::LOCAL_PATIENT_ID_PREFIX, self.facility), "value": k}));
        }
        if let Some(id) = &insurance_id {
            ids.push(json!({"system": systems::INSURANCE_MEMBER_ID, "value": id.to_string()}));
        }
        if !ids.is_empty() {
            p.insert("identifier".into(), Json::Array(ids));
        }
        let mut names = Vec::new();
        if let Some(n) = re.opt(5) {
            names.push(human_name(n, if is_kana(n) { "SYL" } else { "IDE" }));
        } else {
            self.warn(re, Some(5), ProblemKind::Missing, "RE-5 氏名がありません".into());
        }
        if let Some(k) = re.opt(if pharmacy { 42 } else { 37 })
            && names.iter().all(|n| n["text"] != k)
        {
            names.push(human_name(k, "SYL"));
        }
        if !names.is_empty() {
            p.insert("name".into(), Json::Array(names));
        }
        match re.opt(6) {
            Some("1") => {
                p.insert("gender".into(), json!("male"));
            }
            Some("2") => {
                p.insert("gender".into(), json!("female"));
            }
            other => self.warn(
                re,
                Some(6),
                ProblemKind::Code,
                format!("RE-6 男女区分 {:?} は 1 でも 2 でもありません", other.unwrap_or("")),
            ),
        }
        if let Some(b) = re.opt(7).and_then(date::date) {
            p.insert("birthDate".into(), json!(b));
        }
        let patient = {
            let mut full = Map::new();
            full.insert("resourceType".into(), json!("Patient"));
            full.insert("id".into(), json!(patient_id));
            full.extend(p.clone());
            Json::Object(full)
        };
        self.push_with("Patient", patient_key, patient_id.clone(), re.line, p);

        let mut last_clinical: Option<usize> = None;
        let mut dispense_ctx = Dispensing::default();
        for (ordinal, rec) in unit.records.iter().enumerate().skip(1) {
            let made = match (self.kind, rec.id()) {
                (_, "HO") => {
                    self.coverage_ho(ordinal, rec, insurance_id.as_ref());
                    None
                }
                (_, "KO") => {
                    self.coverage_ko(ordinal, rec);
                    None
                }
                (FileKind::Medical, "SY") => Some(self.condition(ordinal, rec, ym)),
                (FileKind::Medical, "SB") => Some(self.condition_dpc(ordinal, rec)),
                (FileKind::Medical, "SI") => Some(self.procedure(ordinal, rec, ym, Some(rec.field(4)), None)),
                (FileKind::Medical, "TO") => Some(self.procedure(ordinal, rec, ym, None, Some(rec.field(4)))),
                (FileKind::Medical, "IY") => Some(self.statement(ordinal, rec, ym)),
                (FileKind::Medical, "CD") => self.coding_data(ordinal, rec),
                (FileKind::Pharmacy, "SH") => {
                    dispense_ctx = Dispensing { sh: Some(rec), ..Dispensing::default() };
                    None
                }
                (FileKind::Pharmacy, "CZ") => {
                    dispense_ctx.handed = rec.opt(4).and_then(date::date);
                    dispense_ctx.quantity = rec.opt(6).map(str::to_owned);
                    None
                }
                (FileKind::Pharmacy, "IY") => {
                    dispense_ctx.drugs += 1;
                    Some(self.dispense(ordinal, rec, ym, &dispense_ctx))
                }
                (_, "CO") => {
                    let text = if pharmacy { rec.opt(3) } else { rec.opt(5) };
                    let code = if pharmacy { rec.field(2) } else { rec.field(4) };
                    let note =
                        format!("コメント {}{}", code.trim(), text.map(|t| format!(": {t}")).unwrap_or_default());
                    match last_clinical.and_then(|i| self.out.get_mut(i)) {
                        Some(r) => append_note(&mut r.resource, note),
                        None => self.warn(
                            rec,
                            None,
                            ProblemKind::Structure,
                            format!("CO レコードの前に対応する明細がありません（{note}）"),
                        ),
                    }
                    None
                }
                _ => None,
            };
            if made.is_some() {
                last_clinical = made;
            }
        }
        let facility_use = FacilityUse { facility: self.facility, insurance_id, patient_id, year_month: ym.fhir() };
        Some(MappedReceipt {
            patient,
            resources: std::mem::take(&mut self.out),
            facility_use,
            problems: std::mem::take(&mut self.problems),
        })
    }

    fn coverage_ho(&mut self, ordinal: usize, ho: &Record, id: Option<&InsuranceId>) {
        let mut c = Map::new();
        c.insert("meta".into(), json!({"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Coverage"]}));
        let mut ext = Vec::new();
        if let Some(s) = ho.opt(3) {
            ext.push(json!({"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonSymbol", "valueString": s}));
        }
        if let Some(n) = ho.opt(4) {
            ext.push(json!({"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonNumber", "valueString": n}));
        }
        if let Some(b) = id.and_then(|i| i.branch()) {
            ext.push(json!({"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonSubNumber", "valueString": b}));
        }
        if !ext.is_empty() {
            c.insert("extension".into(), Json::Array(ext));
        }
        if let Some(i) = id {
            c.insert("identifier".into(), json!([{"system": systems::INSURANCE_MEMBER_ID, "value": i.to_string()}]));
        }
        c.insert("status".into(), json!("active"));
        c.insert("type".into(), json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PUBLICPOL"}], "text": "医療保険"}));
        let sub: Vec<&str> = [ho.opt(3), ho.opt(4)].into_iter().flatten().collect();
        if !sub.is_empty() {
            c.insert("subscriberId".into(), json!(sub.join(":")));
        }
        c.insert("beneficiary".into(), self.patient_ref.clone());
        if let Some(b) = id.and_then(|i| i.branch()) {
            c.insert("dependent".into(), json!(b));
        }
        let insurer = id.map(|i| i.insurer().to_string()).unwrap_or_else(|| ho.field(2).trim().to_owned());
        c.insert(
            "payor".into(),
            json!([{"identifier": {"system": "urn:oid:1.2.392.100495.20.3.61", "value": insurer}}]),
        );
        self.push("Coverage", ordinal, ho, c);
    }

    fn coverage_ko(&mut self, ordinal: usize, ko: &Record) {
        let mut c = Map::new();
        c.insert("meta".into(), json!({"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Coverage"]}));
        c.insert("status".into(), json!("active"));
        c.insert("type".into(), json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PUBLICPOL"}], "text": "公費負担医療"}));
        if let Some(r) = ko.opt(3) {
            c.insert("subscriberId".into(), json!(r));
        }
        c.insert("beneficiary".into(), self.patient_ref.clone());
        c.insert(
            "payor".into(),
            json!([{"identifier": {"system": "urn:oid:1.2.392.100495.20.3.71", "value": ko.field(2).trim()}}]),
        );
        self.push("Coverage", ordinal, ko, c);
    }

    fn condition(&mut self, ordinal: usize, sy: &Record, ym: YearMonth) -> usize {
        let code = sy.field(2).trim().to_owned();
        let free = sy.opt(6);
        let master_name = master::disease_name(&code);
        let name = if code == master::UNCODED {
            if free.is_none() {
                self.warn(
                    sy,
                    Some(6),
                    ProblemKind::Missing,
                    "SY-6 傷病名称がありません（未コード化傷病名 0000999 には必要です）".into(),
                );
            }
            free.map(str::to_owned)
        } else {
            if master_name.is_none() {
                self.warn(
                    sy,
                    Some(2),
                    ProblemKind::Code,
                    format!("SY-2 傷病名コード {code} は傷病名マスターにありません"),
                );
            }
            master_name.map(str::to_owned).or(free.map(str::to_owned))
        };
        let mut c = Map::new();
        c.insert("meta".into(), json!({"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Condition"]}));
        let (clinical, abated) = match sy.opt(4) {
            Some("2") => ("resolved", true),
            Some("3") | Some("4") => ("inactive", true),
            _ => ("active", false),
        };
        c.insert(
            "clinicalStatus".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]}),
        );
        c.insert(
            "verificationStatus".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]}),
        );
        c.insert(
            "category".into(),
            json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}]),
        );
        let mut cc = Map::new();
        cc.insert("coding".into(), json!([coding(master::SYSTEM, &code, master_name)]));
        if let Some(n) = &name {
            cc.insert("text".into(), json!(n));
        }
        c.insert("code".into(), Json::Object(cc));
        c.insert("subject".into(), self.patient_ref.clone());
        if let Some(d) = sy.opt(3).and_then(date::date) {
            c.insert("onsetDateTime".into(), json!(d));
        }
        if abated {
            // The receipt tells the outcome within the month, not its day.
            c.insert(
                "abatementString".into(),
                json!(format!(
                    "{} 転帰: {}",
                    ym.fhir(),
                    match sy.opt(4) {
                        Some("2") => "治ゆ",
                        Some("3") => "死亡",
                        _ => "中止（転医）",
                    }
                )),
            );
        }
        let mut notes = Vec::new();
        if let Some(m) = sy.opt(5) {
            notes.push(format!(
                "修飾語コード: {}",
                m.as_bytes().chunks(4).filter_map(|c| std::str::from_utf8(c).ok()).collect::<Vec<_>>().join(" ")
            ));
        }
        if sy.opt(7) == Some("01") {
            notes.push("主傷病".to_owned());
        }
        if let Some(t) = sy.opt(8) {
            notes.push(format!("補足コメント: {t}"));
        }
        if !notes.is_empty() {
            c.insert("note".into(), Json::Array(notes.into_iter().map(|t| json!({"text": t})).collect()));
        }
        self.push("Condition", ordinal, sy, c)
    }

    fn condition_dpc(&mut self, ordinal: usize, sb: &Record) -> usize {
        let code = sb.field(2).trim().to_owned();
        let master_name = master::disease_name(&code);
        let mut c = Map::new();
        c.insert("meta".into(), json!({"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Condition"]}));
        c.insert(
            "clinicalStatus".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}),
        );
        let mut codings = vec![coding(master::SYSTEM, &code, master_name)];
        if let Some(icd) = sb.opt(5) {
            codings.push(coding("http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full", icd, None));
        }
        let mut cc = Map::new();
        cc.insert("coding".into(), Json::Array(codings));
        if let Some(n) = master_name.or(sb.opt(4)) {
            cc.insert("text".into(), json!(n));
        }
        c.insert("code".into(), Json::Object(cc));
        c.insert("subject".into(), self.patient_ref.clone());
        if let Some(k) = sb.opt(6) {
            c.insert("note".into(), json!([{"text": format!("DPC 傷病名区分: {k}")}]));
        }
        self.push("Condition", ordinal, sb, c)
    }

    fn procedure(
        &mut self,
        ordinal: usize,
        rec: &Record,
        ym: YearMonth,
        practice: Option<&str>,
        device: Option<&str>,
    ) -> usize {
        let mut pr = Map::new();
        pr.insert("meta".into(), json!({"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Procedure"]}));
        pr.insert("status".into(), json!("completed"));
        if let Some(cat) = rec.opt(2) {
            pr.insert("category".into(), json!({"coding": [coding(CS_CATEGORY, cat, None)]}));
        }
        match (practice, device) {
            (Some(code), _) => {
                pr.insert("code".into(), json!({"coding": [coding(CS_PRACTICE, code.trim(), None)]}));
            }
            (None, Some(code)) => {
                pr.insert("code".into(), json!({"text": "特定器材の使用"}));
                let mut used = json!({"coding": [coding(CS_DEVICE, code.trim(), None)]});
                if let Some(n) = rec.opt(11) {
                    used["text"] = json!(n);
                }
                pr.insert("usedCode".into(), json!([used]));
            }
            _ => {}
        }
        pr.insert("subject".into(), self.patient_ref.clone());
        let (period, month, days_note) = self.period(rec, ym);
        if let Some(p) = period {
            pr.insert("performedPeriod".into(), p);
        } else if let Some(m) = month {
            pr.insert("performedDateTime".into(), json!(m));
        }
        let mut notes = Vec::new();
        if let Some(q) = rec.opt(5) {
            notes.push(format!("数量: {q}"));
        }
        if let Some(t) = rec.opt(6) {
            notes.push(format!("点数: {t}"));
        }
        if let Some(n) = rec.opt(7) {
            notes.push(format!("回数: {n}"));
        }
        notes.extend(days_note);
        notes.extend(self.inline_comments(rec, if device.is_some() { 12 } else { 8 }));
        if !notes.is_empty() {
            pr.insert("note".into(), Json::Array(notes.into_iter().map(|t| json!({"text": t})).collect()));
        }
        self.push("Procedure", ordinal, rec, pr)
    }

    /// The three コメントコード/文字データ pairs carried on SI/IY/TO lines.
    fn inline_comments(&self, rec: &Record, first: usize) -> Vec<String> {
        (0..3)
            .filter_map(|i| {
                let code = rec.opt(first + 2 * i);
                let text = rec.opt(first + 2 * i + 1);
                (code.is_some() || text.is_some()).then(|| {
                    format!("コメント {}{}", code.unwrap_or(""), text.map(|t| format!(": {t}")).unwrap_or_default())
                })
            })
            .collect()
    }

    fn statement(&mut self, ordinal: usize, iy: &Record, ym: YearMonth) -> usize {
        let mut m = Map::new();
        m.insert("status".into(), json!("completed"));
        if let Some(cat) = iy.opt(2) {
            m.insert("category".into(), json!({"coding": [coding(CS_CATEGORY, cat, None)]}));
        }
        m.insert("medicationCodeableConcept".into(), json!({"coding": [coding(CS_DRUG, iy.field(4).trim(), None)]}));
        m.insert("subject".into(), self.patient_ref.clone());
        let (period, month, days_note) = self.period(iy, ym);
        if let Some(p) = period {
            m.insert("effectivePeriod".into(), p);
        } else if let Some(mo) = month {
            m.insert("effectiveDateTime".into(), json!(mo));
        }
        if let Some(q) = iy.opt(5).and_then(number) {
            m.insert("dosage".into(), json!([{"doseAndRate": [{"doseQuantity": {"value": q}}]}]));
        }
        let mut notes = Vec::new();
        if let Some(t) = iy.opt(6) {
            notes.push(format!("点数: {t}"));
        }
        if let Some(n) = iy.opt(7) {
            notes.push(format!("回数: {n}"));
        }
        notes.extend(days_note);
        notes.extend(self.inline_comments(iy, 8));
        notes.push("レセプト（医科 IY）からの情報".into());
        m.insert("note".into(), Json::Array(notes.into_iter().map(|t| json!({"text": t})).collect()));
        self.push("MedicationStatement", ordinal, iy, m)
    }

    /// DPC CD lines: the code's first digit tells 診療行為 (1), 医薬品 (6) or 特定器材 (7).
    fn coding_data(&mut self, ordinal: usize, cd: &Record) -> Option<usize> {
        let code = cd.field(6).trim().to_owned();
        let day = cd.opt(2).and_then(date::date);
        let mut r = Map::new();
        let rt = match code.as_bytes().first() {
            Some(b'6') => {
                r.insert("status".into(), json!("completed"));
                r.insert("medicationCodeableConcept".into(), json!({"coding": [coding(CS_DRUG, &code, None)]}));
                r.insert("subject".into(), self.patient_ref.clone());
                if let Some(d) = day {
                    r.insert("effectiveDateTime".into(), json!(d));
                }
                "MedicationStatement"
            }
            Some(b'1' | b'7') => {
                r.insert("status".into(), json!("completed"));
                if code.starts_with('7') {
                    r.insert("code".into(), json!({"text": "特定器材の使用"}));
                    r.insert("usedCode".into(), json!([{"coding": [coding(CS_DEVICE, &code, None)]}]));
                } else {
                    r.insert("code".into(), json!({"coding": [coding(CS_PRACTICE, &code, None)]}));
                }
                r.insert("subject".into(), self.patient_ref.clone());
                if let Some(d) = day {
                    r.insert("performedDateTime".into(), json!(d));
                }
                "Procedure"
            }
            _ => {
                self.warn(
                    cd,
                    Some(6),
                    ProblemKind::Code,
                    format!("CD-6 レセ電コード {code} の種類（1 診療行為 / 6 医薬品 / 7 特定器材）が分かりません"),
                );
                return None;
            }
        };
        let mut notes = Vec::new();
        if let Some(q) = cd.opt(7) {
            notes.push(format!("使用量: {q}"));
        }
        if let Some(n) = cd.opt(10) {
            notes.push(format!("回数: {n}"));
        }
        notes.push("DPC コーディングデータ".into());
        r.insert("note".into(), Json::Array(notes.into_iter().map(|t| json!({"text": t})).collect()));
        Some(self.push(rt, ordinal, cd, r))
    }

    fn dispense(&mut self, ordinal: usize, iy: &Record, ym: YearMonth, ctx: &Dispensing<'_>) -> usize {
        let Dispensing { handed, quantity, sh, drugs } = ctx;
        let mut m = Map::new();
        m.insert(
            "meta".into(),
            json!({"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_MedicationDispense"]}),
        );
        // JP_MedicationDispense requires `identifier:rpNumber` (処方箋内部の剤グループとしてのRp番号)
        // and `identifier:orderInRp` (同一RP番号（剤グループ）での薬剤の表記順): the SH 処方No
        // opens an Rp, and its IY records are its drugs in order. An IY before any SH has no Rp
        // and is refused by the validator (a record-order error in the file).
        if let Some(rp) = sh.and_then(|s| s.opt(2)) {
            m.insert(
                "identifier".into(),
                json!([
                    {"system": RP_NUMBER, "value": rp},
                    {"system": ORDER_IN_RP, "value": drugs.to_string()},
                ]),
            );
        }
        m.insert("status".into(), json!("completed"));
        m.insert("medicationCodeableConcept".into(), json!({"coding": [coding(CS_DRUG, iy.field(3).trim(), None)]}));
        m.insert("subject".into(), self.patient_ref.clone());
        if let Some(q) = iy.opt(4).and_then(number) {
            m.insert("quantity".into(), json!({"value": q}));
        }
        let form = sh.and_then(|s| s.opt(3));
        if let (Some("1"), Some(days)) = (form, quantity.as_deref().and_then(number)) {
            m.insert(
                "daysSupply".into(),
                json!({"value": days, "unit": "日", "system": "http://unitsofmeasure.org", "code": "d"}),
            );
        }
        m.insert("whenHandedOver".into(), json!(handed.clone().unwrap_or_else(|| ym.fhir())));
        if let Some(usage) = sh.and_then(|s| s.opt(4)) {
            m.insert(
                "dosageInstruction".into(),
                json!([{"timing": {"code": {"coding": [coding(CS_USAGE, usage, None)]}}}]),
            );
        }
        let mut notes = Vec::new();
        if let Some(f) = form {
            notes.push(format!("剤形コード: {f}"));
        }
        if let Some(q) = quantity {
            notes.push(format!("調剤数量: {q}"));
        }
        if !notes.is_empty() {
            m.insert("note".into(), Json::Array(notes.into_iter().map(|t| json!({"text": t})).collect()));
        }
        self.push("MedicationDispense", ordinal, iy, m)
    }
}

fn append_note(resource: &mut Json, text: String) {
    if let Some(obj) = resource.as_object_mut() {
        let notes = obj.entry("note").or_insert_with(|| json!([]));
        if let Some(list) = notes.as_array_mut() {
            list.push(json!({"text": text}));
        }
    }
}
