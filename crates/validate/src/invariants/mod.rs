//! The JP-CLINS invariants of `reference/jp-clins/fsh-codesystems/InvariantsRules.fsh`, written
//! directly in Rust (no FHIRPath engine), each under its rule id.
//!
//! Resource rules apply to resources that claim a JP-CLINS / eCS profile; Bundle rules to
//! Bundles that claim `JP_Bundle_CLINS` or one of the document Bundle profiles. Identifier rules
//! use the parsers of `musubi-domain` ([`InsuranceId`], [`BundleIdentifier`], [`FacilityCode`])
//! so the same rules hold everywhere in Musubi.
//!
//! Where the published material and the rules disagree, the rule is kept and the
//! interpretation is written next to it: R1011 compares only when the institution-number
//! extension is present (no JP-CLINS Patient example carries it); R2012/R2013 accept the
//! real YJ / 一般名 / J-FAGY (GCM, YCM) system URIs besides the ones spelled in the FSH file;
//! R9018C (abatementDateTime on every Condition) is a warning, because an ongoing disease has
//! no abatement and the published `JP_Bundle_CLINS` profile does not attach the rule.

use musubi_domain::{FacilityCode, InsuranceId, systems};
use serde_json::{Map, Value};

use crate::Severity;
use crate::codes::GENERAL_ORDER_OID;
use crate::report::Report;

mod bundle;

pub(crate) use bundle::{document_profile_for_type, is_submission_profile};

/// ISO 21090 name representation (IDE 漢字, SYL カナ).
const EN_REPRESENTATION: &str = systems::EXT_NAME_REPRESENTATION;
const LOCAL_PATIENT_PREFIX: &str = "urn:oid:1.2.392.100495.20.3.51.";
const LOCAL_DOCTOR_PREFIX: &str = "urn:oid:1.2.392.100495.20.3.41.";
const PATIENT_ECS: &str = "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Patient_eCS";
const PATIENT_ECS_CLINS: &str = "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Patient_eCS";
const BUNDLE_CLINS: &str = "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_CLINS";
const LAB_RESULT_ECS: &str = "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Observation_LabResult_eCS";
const JP_ENCOUNTER: &str = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Encounter";
const JP_PRACTITIONER: &str = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Practitioner";
const USAGE_EPRESCRIPTION: &str = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationUsage_ePrescription";
const USAGE_UNCODED: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_MedicationUsage_Uncoded_CS";
const USAGE_UNCODED_CODE: &str = "0X0XXXXXXXXX0000";
/// The misspelt YJ system of rule R2012 in InvariantsRules.fsh, accepted as written.
const YJ_AS_IN_R2012: &str = "http://tandard.jp/CodeSystem/YJ-code";

/// Whether a profile URL belongs to the JP-CLINS family (eCS, CLINS, documents, checkup).
pub fn is_clins_profile(url: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "http://jpfhir.jp/fhir/eCS/",
        "http://jpfhir.jp/fhir/clins/",
        "http://jpfhir.jp/fhir/eReferral/",
        "http://jpfhir.jp/fhir/eDischargeSummary/",
        "http://jpfhir.jp/fhir/ePCS/",
        "http://jpfhir.jp/fhir/ePrescription/",
        "http://jpfhir.jp/fhir/eCheckup/",
    ];
    PREFIXES.iter().any(|p| url.starts_with(p))
}

fn r(id: &str) -> Option<String> {
    Some(id.to_owned())
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn arr<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    obj.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn varr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The extensions of an object with this URL.
fn extensions<'a>(obj: &'a Map<String, Value>, url: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    arr(obj, "extension").iter().filter(move |e| str_at(e, "url") == Some(url))
}

/// A JP-CLINS 医療機関番号: `[0-4][0-9][1-3][0-9]{7}` (R1021/R9012) and a valid FacilityCode.
fn institution_number_ok(v: &str) -> Result<FacilityCode, &'static str> {
    let b = v.as_bytes();
    if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) {
        return Err("半角数字 10 桁でなければなりません");
    }
    if !(b'0'..=b'4').contains(&b[0]) || !(b'1'..=b'3').contains(&b[2]) {
        return Err("都道府県番号 2 桁 + 医療機関区分 (1 医科・3 歯科) 1 桁 + 医療機関コード 7 桁の形式ではありません");
    }
    v.parse::<FacilityCode>().map_err(|_| "都道府県番号 (01〜47) または点数表番号が正しくありません")
}

/// Rules for one resource (called after its structural walk, at the resource's path).
pub(crate) fn resource(w: &mut Report, rt: &str, obj: &Map<String, Value>, claimed: &[&str]) {
    if rt == "Bundle" {
        bundle::bundle(w, obj, claimed);
    }
    if !claimed.iter().any(|u| is_clins_profile(u)) {
        return;
    }
    institution_number(w, obj);
    match rt {
        "Patient" if claimed.iter().any(|u| *u == PATIENT_ECS || *u == PATIENT_ECS_CLINS) => patient(w, obj),
        "Practitioner" => local_id(w, obj, LOCAL_DOCTOR_PREFIX, "R1090", "施設医師ID"),
        "AllergyIntolerance" => allergy(w, obj),
        "MedicationRequest" => medication_request(w, obj),
        "Observation" if claimed.contains(&LAB_RESULT_ECS) => lab_result(w, obj),
        _ => {}
    }
}

/// R1021: the institution-number extension, when present, holds a valid 10-digit number.
fn institution_number(w: &mut Report, obj: &Map<String, Value>) {
    for (i, e) in arr(obj, "extension").iter().enumerate() {
        if str_at(e, "url") != Some(systems::EXT_INSTITUTION_NUMBER) {
            continue;
        }
        let value = e.get("valueIdentifier").and_then(|v| str_at(v, "value"));
        match value {
            Some(v) => {
                if let Err(why) = institution_number_ok(v) {
                    w.issue(
                        Severity::Error,
                        "value",
                        &format!("extension[{i}].value.value"),
                        r("R1021"),
                        format!("医療機関番号「{v}」が不正です: {why} (R1021)"),
                    );
                }
            }
            None => w.issue(
                Severity::Error,
                "required",
                &format!("extension[{i}].value"),
                r("R1021"),
                "医療機関番号拡張には valueIdentifier.value (10 桁の医療機関番号) が必要です (R1021)".into(),
            ),
        }
    }
}

fn patient(w: &mut Report, obj: &Map<String, Value>) {
    let names = arr(obj, "name");
    fn rep(n: &Value) -> Option<&str> {
        varr(n, "extension")
            .iter()
            .find(|e| str_at(e, "url") == Some(EN_REPRESENTATION))
            .and_then(|e| str_at(e, "valueCode"))
    }
    // R1112
    if !names.iter().any(|n| matches!(rep(n), Some("IDE" | "SYL"))) {
        w.issue(
            Severity::Error,
            "invariant",
            "name",
            r("R1112"),
            "患者氏名に漢字 (iso21090-EN-representation = IDE) またはカナ (SYL) の name が少なくとも 1 つ必要です (R1112)".into(),
        );
    }
    // R1113 (the rule names text; family and given are held to the same rule)
    for (i, n) in names.iter().enumerate() {
        if rep(n).is_none() {
            continue;
        }
        let report = |w: &mut Report, path: String, s: &str| {
            w.issue(
                Severity::Error,
                "invariant",
                &path,
                r("R1113"),
                format!("患者氏名「{s}」に全角空白があります。姓と名は区切らないか半角空白で区切ってください (R1113)"),
            );
        };
        for key in ["text", "family"] {
            if let Some(s) = str_at(n, key).filter(|s| s.contains('\u{3000}')) {
                report(w, format!("name[{i}].{key}"), s);
            }
        }
        for (j, g) in varr(n, "given").iter().enumerate() {
            if let Some(s) = g.as_str().filter(|s| s.contains('\u{3000}')) {
                report(w, format!("name[{i}].given[{j}]"), s);
            }
        }
    }
    local_id(w, obj, LOCAL_PATIENT_PREFIX, "R1010", "施設患者ID");
    // R1011: compare with the institution-number extension when there is one.
    let ext_no = extensions(obj, systems::EXT_INSTITUTION_NUMBER)
        .find_map(|e| e.get("valueIdentifier").and_then(|v| str_at(v, "value")));
    if let Some(no) = ext_no {
        for (i, id) in arr(obj, "identifier").iter().enumerate() {
            if let Some(sys) = str_at(id, "system").and_then(|s| s.strip_prefix(LOCAL_PATIENT_PREFIX))
                && sys.strip_prefix('1') != Some(no)
            {
                w.issue(
                    Severity::Error,
                    "invariant",
                    &format!("identifier[{i}].system"),
                    r("R1011"),
                    format!(
                        "施設患者IDの system の医療機関番号 ({}) が医療機関番号拡張の値 {no} と一致しません (R1011)",
                        sys.get(1..).unwrap_or(sys)
                    ),
                );
            }
        }
    }
    // R1012 / R1013
    let members: Vec<(usize, &Value)> = arr(obj, "identifier")
        .iter()
        .enumerate()
        .filter(|(_, id)| str_at(id, "system") == Some(systems::INSURANCE_MEMBER_ID))
        .collect();
    if members.len() != 1 {
        // The checkup-report package defines JP_Patient_eCS without R1012: a checkup report may
        // identify the examinee by the checkup institution's id only.
        let severity = if w.in_checkup && members.is_empty() { Severity::Warning } else { Severity::Error };
        w.issue(
            severity,
            "invariant",
            "identifier",
            r("R1012"),
            format!(
                "被保険者個人識別子 (system = {}) はちょうど 1 つ必要ですが {} 個あります (R1012)",
                systems::INSURANCE_MEMBER_ID,
                members.len()
            ),
        );
    }
    for (i, id) in members {
        let value = str_at(id, "value").unwrap_or("");
        if let Err(e) = value.parse::<InsuranceId>() {
            let why = match e {
                musubi_domain::DomainError::InsuranceId { reason, .. } => reason,
                _ => "",
            };
            w.issue(
                Severity::Error,
                "value",
                &format!("identifier[{i}].value"),
                r("R1013"),
                format!(
                    "被保険者個人識別子「{value}」は「保険者番号(半角数字8桁):記号:番号:枝番(空または半角数字2桁)」の形式でなければなりません ({why}) (R1013)"
                ),
            );
        }
    }
}

/// R1010 / R1090: a local id system is `prefix` + `1` + a 10-digit institution number, at most once.
fn local_id(w: &mut Report, obj: &Map<String, Value>, prefix: &str, rule: &str, what: &str) {
    let ids: Vec<(usize, &str)> = arr(obj, "identifier")
        .iter()
        .enumerate()
        .filter_map(|(i, id)| str_at(id, "system").filter(|s| s.starts_with(prefix)).map(|s| (i, s)))
        .collect();
    if ids.len() > 1 {
        w.issue(
            Severity::Error,
            "invariant",
            "identifier",
            r(rule),
            format!("{what} ({prefix}…) は 1 つまでですが {} 個あります ({rule})", ids.len()),
        );
    }
    for (i, sys) in ids {
        let rest = &sys[prefix.len()..];
        let ok = rest.strip_prefix('1').is_some_and(|no| institution_number_ok(no).is_ok());
        if !ok {
            w.issue(
                Severity::Error,
                "invariant",
                &format!("identifier[{i}].system"),
                r(rule),
                format!(
                    "{what}の system「{sys}」は「{prefix}」+「1」+ 医療機関番号 10 桁でなければなりません ({rule})"
                ),
            );
        }
    }
}

fn has_system(codings: &[Value], systems_: &[&str]) -> bool {
    codings.iter().filter(|c| str_at(c, "system").is_some_and(|s| systems_.contains(&s))).count() == 1
}

fn allergy(w: &mut Report, obj: &Map<String, Value>) {
    let medication = arr(obj, "category").iter().any(|c| c.as_str() == Some("medication"));
    let high = obj.get("criticality").and_then(Value::as_str) == Some("high");
    let codings = obj.get("code").map(|c| varr(c, "coding")).unwrap_or(&[]);
    if medication && !high {
        w.issue(
            Severity::Warning,
            "business-rule",
            "criticality",
            r("R2011"),
            "薬剤アレルギー等として送る場合は category を medication、criticality を high にしてください。high 以外でよければ修正は不要です (R2011)".into(),
        );
    }
    if medication && high {
        let ok = has_system(codings, &[systems::YJ, YJ_AS_IN_R2012])
            || has_system(codings, &[systems::GENERAL_ORDER_CODE, GENERAL_ORDER_OID])
            || has_system(
                codings,
                &[
                    systems::JFAGY_MEDICATION,
                    "http://jpfhir.jp/fhir/core/CodeSystem/GCM/JP_JfagyMedicationAllergen_CS",
                    "http://jpfhir.jp/fhir/core/CodeSystem/YCM/JP_JfagyMedicationAllergen_CS",
                ],
            );
        if !ok {
            w.issue(
                Severity::Error,
                "invariant",
                "code.coding",
                r("R2012"),
                "薬剤アレルギー等 (category = medication, criticality = high) の code には YJ コードまたは一般名処方コード (J-FAGY 医薬品アレルゲンの YCM/GCM を含む) が 1 つ必要です (R2012)".into(),
            );
        }
    } else {
        let ok = has_system(codings, &[systems::JFAGY_FOOD])
            || has_system(codings, &[systems::JFAGY_NON_FOOD])
            || has_system(
                codings,
                &[
                    systems::JFAGY_MEDICATION,
                    "http://jpfhir.jp/fhir/core/CodeSystem/GCM/JP_JfagyMedicationAllergen_CS",
                    "http://jpfhir.jp/fhir/core/CodeSystem/YCM/JP_JfagyMedicationAllergen_CS",
                ],
            );
        if !ok {
            w.issue(
                Severity::Error,
                "invariant",
                "code.coding",
                r("R2013"),
                "薬剤アレルギー等でないアレルギーの code には J-FAGY コード (食物・非食物非医薬品・医薬品のいずれか) が 1 つ必要です (R2013)".into(),
            );
        }
    }
}

fn medication_request(w: &mut Report, obj: &Map<String, Value>) {
    // R3010
    if let Some(cc) = obj.get("medicationCodeableConcept") {
        let codings = varr(cc, "coding");
        let ok = has_system(codings, &[systems::YJ])
            || has_system(codings, &[systems::MEDICATION_NOCODED])
            || has_system(codings, &[systems::GENERAL_ORDER_CODE]);
        if !ok {
            w.issue(
                Severity::Error,
                "invariant",
                if codings.is_empty() { "medication" } else { "medication.coding" },
                r("R3010"),
                "medicationCodeableConcept には YJ コード、一般名処方コード、または標準コードなしのコードのいずれかが必要です (R3010)".into(),
            );
        }
    }
    // R5020 / R5021 (JP_MedicationDosage_eCS)
    for (i, d) in arr(obj, "dosageInstruction").iter().enumerate() {
        let codings = d.get("timing").and_then(|t| t.get("code")).map(|c| varr(c, "coding")).unwrap_or(&[]);
        let mhlw = codings.iter().any(|c| str_at(c, "system") == Some(USAGE_EPRESCRIPTION));
        let dummy = codings
            .iter()
            .any(|c| str_at(c, "system") == Some(USAGE_UNCODED) && str_at(c, "code") == Some(USAGE_UNCODED_CODE));
        let path = format!("dosageInstruction[{i}].timing.code.coding");
        if mhlw && dummy {
            w.issue(
                Severity::Error,
                "invariant",
                &path,
                r("R5021"),
                "厚労省用法コード (電子処方箋) とダミー用法コードを同時に使うことはできません (R5021)".into(),
            );
        } else if !mhlw && !dummy {
            w.issue(
                Severity::Error,
                "invariant",
                &path,
                r("R5020"),
                format!(
                    "用法は厚労省用法コード (電子処方箋, {USAGE_EPRESCRIPTION}) か、ダミー用法コード {USAGE_UNCODED_CODE} のどちらか一方でコード化してください (R5020)"
                ),
            );
        }
    }
}

fn lab_result(w: &mut Report, obj: &Map<String, Value>) {
    let codings = obj.get("code").map(|c| varr(c, "coding")).unwrap_or(&[]);
    if !codings.iter().any(|c| str_at(c, "system") == Some(systems::LAB_LOCAL_CODE)) {
        w.issue(
            Severity::Error,
            "invariant",
            "code.coding",
            r("R6021"),
            format!(
                "検査結果の code.coding には施設のローカルコード (system = {}) が必要です (R6021)",
                systems::LAB_LOCAL_CODE
            ),
        );
    }
    if extensions(obj, systems::EXT_INSTITUTION_NUMBER).next().is_none() {
        w.issue(
            Severity::Error,
            "invariant",
            "extension",
            r("R901101"),
            "医療機関番号拡張 (JP_eCS_InstitutionNumber) が必要です (R901101)".into(),
        );
    }
}
