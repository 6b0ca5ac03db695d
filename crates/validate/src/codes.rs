//! Checks on every `Coding` met during the walk, by code system: JP-CLINS lab CodeSystems
//! (membership and group), JLAC10, J-FAGY (existence in the master), MEDIS 病名管理番号, YJ and
//! 一般名処方コード (formats, and the display check against the small 一般名処方 table).

use musubi_domain::systems;
use serde_json::{Map, Value};

use crate::Severity;
use crate::report::Report;
use crate::terminology::{self, LabKind};

/// J-FAGY medication allergens, by 一般名 (GCM) and by YJ (YCM).
const JFAGY_MEDICATION_GCM: &str = "http://jpfhir.jp/fhir/core/CodeSystem/GCM/JP_JfagyMedicationAllergen_CS";
const JFAGY_MEDICATION_YCM: &str = "http://jpfhir.jp/fhir/core/CodeSystem/YCM/JP_JfagyMedicationAllergen_CS";
/// The OID form of the 一般名処方コード system used by older material (and by rule R2012).
pub(crate) const GENERAL_ORDER_OID: &str = "urn:oid:1.2.392.100495.20.1.81";

fn rule(s: &str) -> Option<String> {
    Some(s.to_owned())
}

/// Checks one Coding object at the walker's current path.
pub(crate) fn coding(w: &mut Report, obj: &Map<String, Value>) {
    // One pass over the (few) members is cheaper than three hashed lookups.
    let (mut system, mut code, mut display) = (None, None, None);
    for (k, v) in obj {
        match k.as_str() {
            "system" => system = v.as_str(),
            "code" => code = v.as_str(),
            "display" => display = v.as_str(),
            _ => {}
        }
    }
    let (Some(system), Some(code)) = (system, code) else {
        return;
    };
    match system {
        systems::CORE_LABO_JLAC10 | systems::INFECTION_LABO_JLAC10 => lab(w, system, code, display),
        systems::JLAC10 if !terminology::is_jlac10(code) => {
            w.issue(
                Severity::Error,
                "value",
                "code",
                rule("JLAC10"),
                format!("JLAC10 コード「{code}」は半角英大文字・数字 17 桁でなければなりません"),
            );
        }
        systems::JFAGY_FOOD | systems::JFAGY_NON_FOOD => jfagy(w, system, code),
        systems::JFAGY_MEDICATION | JFAGY_MEDICATION_GCM | JFAGY_MEDICATION_YCM => jfagy_medication(w, code),
        systems::MEDIS_DISEASE if !terminology::is_medis_disease_key(code) => {
            w.issue(
                Severity::Error,
                "value",
                "code",
                rule("MEDIS 病名管理番号"),
                format!(
                    "病名管理番号「{code}」は半角数字 8 桁でなければなりません (標準病名マスターにない病名は 99999999 とし、病名は display と text に記載します)"
                ),
            );
        }
        systems::YJ if !terminology::is_yj_code(code) => {
            w.issue(
                Severity::Error,
                "value",
                "code",
                rule("YJ"),
                format!("YJ コード「{code}」は 12 桁 (数字 7 桁・剤形の英大文字 1 桁・英数字 3 桁・チェック数字 1 桁) でなければなりません"),
            );
        }
        systems::GENERAL_ORDER_CODE | GENERAL_ORDER_OID => general_order(w, code, display),
        terminology::DOCUMENT_SECTION_CS if terminology::document_section(code).is_none() => {
            // Known inconsistency: the eDischargeSummary profile uses 362/372/552/642, which the
            // CodeSystem comments out; accepted with a warning.
            w.issue(
                Severity::Warning,
                "code-invalid",
                "code",
                rule("JP-CLINS document-section"),
                format!(
                    "セクションコード「{code}」は文書セクション区分コード表 ({}) にありません",
                    terminology::DOCUMENT_SECTION_CS
                ),
            );
        }
        _ => {}
    }
}

fn lab(w: &mut Report, system: &str, code: &str, display: Option<&str>) {
    let (kind, cs) = if system == systems::CORE_LABO_JLAC10 {
        (LabKind::Core, "JP_CLINS_ObsLabResult_CoreLabo_CS")
    } else {
        (LabKind::Infection, "JP_CLINS_ObsLabResult_InfectionLabo_CS")
    };
    let group = match kind {
        LabKind::Core => terminology::is_core_lab_code(system, code),
        LabKind::Infection => terminology::is_infection_lab_code(system, code),
    };
    let Some(group) = group else {
        let item = if kind == LabKind::Core { "検査 (43 項目)" } else { "感染症 (5 項目)" };
        w.issue(
            Severity::Error,
            "code-invalid",
            "code",
            rule(cs),
            format!(
                "コード「{code}」は {cs} ({item}) にない JLAC10 コードです。対象外の項目は system を http://medis.or.jp/CodeSystem/master-JLAC10-17digits にしてください"
            ),
        );
        return;
    };
    // The profile slices this system by display = group code; a display naming another group
    // means the code and its label disagree.
    if let Some(d) = display
        && d != group
        && let Some(other) = terminology::lab_group_by_code(kind, d)
    {
        w.issue(
            Severity::Error,
            "code-invalid",
            "display",
            rule(cs),
            format!(
                "コード「{code}」は {cs} のグループ {group} に属しますが、display は別のグループ {} ({}) を示しています",
                other.code, other.display
            ),
        );
    }
}

fn jfagy(w: &mut Report, system: &str, code: &str) {
    let Some(entry) = terminology::jfagy(code) else {
        w.issue(
            Severity::Error,
            "code-invalid",
            "code",
            rule("J-FAGY"),
            format!("「{code}」は J-FAGY アレルゲンコード表 (2025-04-01 版) にないコードです"),
        );
        return;
    };
    let food = system == systems::JFAGY_FOOD;
    let ok_prefix = if food {
        code.starts_with("J9F") || code.starts_with("D9F")
    } else {
        code.starts_with("J9N") || code.starts_with("D9N")
    };
    if !ok_prefix {
        w.issue(
            Severity::Error,
            "code-invalid",
            "system",
            rule("J-FAGY"),
            format!(
                "J-FAGY コード「{code}」({}) は{}アレルゲンのコードではありません。system を確認してください",
                entry.term,
                if food { "食物" } else { "非食物・非医薬品" }
            ),
        );
    }
    if entry.end_date != "99999999" {
        w.issue(
            Severity::Warning,
            "code-invalid",
            "code",
            rule("J-FAGY"),
            format!("J-FAGY コード「{code}」({}) は {} で使用終了です", entry.term, entry.end_date),
        );
    }
}

fn jfagy_medication(w: &mut Report, code: &str) {
    let ok = code == "D9M000000000"
        || code.strip_prefix("GCM").is_some_and(terminology::is_general_order_code)
        || code.strip_prefix("YCM").is_some_and(terminology::is_yj_code);
    if !ok {
        w.issue(
            Severity::Error,
            "value",
            "code",
            rule("J-FAGY"),
            format!("J-FAGY 医薬品アレルゲンコード「{code}」は GCM+一般名処方コード、YCM+YJ コード、または D9M000000000 でなければなりません"),
        );
    }
}

fn general_order(w: &mut Report, code: &str, display: Option<&str>) {
    if !terminology::is_general_order_code(code) {
        w.issue(
            Severity::Error,
            "value",
            "code",
            rule("一般名処方マスタ"),
            format!("一般名処方コード「{code}」は 12 桁 (薬価基準コードの上 9 桁 + ZZZ、例 1124030F2ZZZ) でなければなりません"),
        );
        return;
    }
    let known_name = terminology::general_order_name(code);
    if known_name.is_some() && known_name == display {
        return; // the display is the table's name for this code
    }
    if let Some(d) = display
        && let Some(listed) = terminology::general_order_code_for_name(d)
        && listed != code
    {
        w.issue(
            Severity::Error,
            "code-invalid",
            "code",
            rule("一般名処方マスタ"),
            format!(
                "一般名処方コード「{code}」と表示名「{d}」が一致しません。一般名処方マスタでは「{}」のコードは {listed} です",
                terminology::general_order_name(listed).unwrap_or(d)
            ),
        );
        return;
    }
    match (known_name, display) {
        (Some(name), Some(d)) if terminology::normalize_drug_name(name) != terminology::normalize_drug_name(d) => {
            w.issue(
                Severity::Warning,
                "code-invalid",
                "display",
                rule("一般名処方マスタ"),
                format!("一般名処方コード「{code}」の一般名は「{name}」ですが、表示名は「{d}」です"),
            );
        }
        (None, _) => w.issue(
            Severity::Information,
            "code-invalid",
            "code",
            rule("一般名処方マスタ"),
            format!(
                "一般名処方コード「{code}」は Musubi の一般名処方マスタ抜粋にないため、表示名との照合はしていません"
            ),
        ),
        _ => {}
    }
}
