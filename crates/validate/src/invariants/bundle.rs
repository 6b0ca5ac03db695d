//! The Bundle rules: 5情報 collection Bundles (R0211 … R9019, validEntryProfile-*) and document
//! Bundles (bdl-9/10/11, entry references), plus the entry fullUrl rules.

use std::collections::HashSet;

use musubi_domain::{BundleIdentifier, systems};
use serde_json::{Map, Value};

use super::{
    BUNDLE_CLINS, JP_ENCOUNTER, JP_PRACTITIONER, LAB_RESULT_ECS, PATIENT_ECS, arr, extensions, institution_number_ok,
    r, str_at, varr,
};
use crate::Severity;
use crate::report::{Report, claimed_profiles, short};

/// The document Bundle profiles, with the Composition type each carries.
const DOCUMENT_BUNDLES: &[(&str, &str)] = &[
    ("http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_eReferral", "診療情報提供書"),
    ("http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_eDischargeSummary", "退院時サマリー"),
    ("http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_ePCS", "患者サマリー"),
    ("http://jpfhir.jp/fhir/eCheckup/StructureDefinition/JP_Bundle_eCheckupGeneral", "健康診断結果報告書"),
    ("http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_eCheckupGeneral", "健康診断結果報告書"),
];

/// The document Bundle profile for a Composition type code (doc-typecodes).
pub(crate) fn document_profile_for_type(code: &str) -> Option<&'static str> {
    Some(match code {
        "57133-1" => DOCUMENT_BUNDLES[0].0,
        "18842-5" => DOCUMENT_BUNDLES[1].0,
        "56447-6" => DOCUMENT_BUNDLES[2].0,
        "53576-5" => DOCUMENT_BUNDLES[3].0,
        _ => return None,
    })
}

/// Whether a URL is one of the submission Bundle profiles (5情報 or documents).
pub(crate) fn is_submission_profile(url: &str) -> bool {
    url == BUNDLE_CLINS || DOCUMENT_BUNDLES.iter().any(|(u, _)| *u == url)
}

/// The eCS profile each resource type of a 5情報 Bundle must claim (validEntryProfile-*).
const ENTRY_PROFILES: &[(&str, &str)] = &[
    ("AllergyIntolerance", "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_AllergyIntolerance_eCS"),
    ("Condition", "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Condition_eCS"),
    ("MedicationRequest", "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_MedicationRequest_eCS"),
    ("Observation", LAB_RESULT_ECS),
];

fn contained_claims(res: &Value, profile: &str) -> bool {
    varr(res, "contained").iter().any(|c| {
        c.get("meta")
            .and_then(|m| m.get("profile"))
            .and_then(Value::as_array)
            .is_some_and(|ps| ps.iter().filter_map(Value::as_str).any(|p| p.split('|').next() == Some(profile)))
    })
}

pub(super) fn bundle(w: &mut Report, obj: &Map<String, Value>, claimed: &[&str]) {
    let clins = claimed.contains(&BUNDLE_CLINS);
    let document = DOCUMENT_BUNDLES.iter().find(|(u, _)| claimed.contains(u));
    let btype = obj.get("type").and_then(Value::as_str);
    // The top-level Bundle of a submission (validate_bundle) is a 5情報 collection or a document.
    let submitted = w.submission && w.path == "Bundle";
    if submitted && !matches!(btype, Some("collection" | "document")) {
        w.issue(
            Severity::Error,
            "invariant",
            "type",
            r("JP-CLINS: Bundle type"),
            format!(
                "送信する Bundle の type は collection (5情報) か document (文書) です (実際は {})",
                btype.unwrap_or("なし")
            ),
        );
    }
    // R0213: a collection Bundle sent to the service must claim JP_Bundle_CLINS.
    if !clins && document.is_none() {
        if submitted && btype == Some("collection") {
            w.issue(
                Severity::Error,
                "invariant",
                "meta.profile",
                r("R0213"),
                format!("5情報の Bundle は meta.profile に {BUNDLE_CLINS} を指定しなければなりません (R0213)"),
            );
        }
        return;
    }
    let entries = arr(obj, "entry");
    entry_urls(w, entries, clins);
    if clins {
        clins_bundle(w, obj, entries);
    }
    if let Some((_, kind)) = document {
        document_bundle(w, obj, entries, kind);
    }
    if clins || document.is_some_and(|(u, _)| u.contains("/clins/")) {
        bundle_identifier(w, obj);
    }
    // validEntryProfile-MedicationRequest (all CLINS Bundles) and the rest (5情報).
    for (i, e) in entries.iter().enumerate() {
        let Some(res) = e.get("resource").and_then(Value::as_object) else { continue };
        let Some(rt) = res.get("resourceType").and_then(Value::as_str) else { continue };
        let Some((_, want)) = ENTRY_PROFILES.iter().find(|(t, _)| *t == rt) else { continue };
        if !clins && rt != "MedicationRequest" {
            continue;
        }
        if !claimed_profiles(res).contains(want) {
            w.issue(
                Severity::Error,
                "invariant",
                &format!("entry[{i}].resource.meta.profile"),
                r(&format!("validEntryProfile-{rt}")),
                format!("Bundle に含める {rt} は meta.profile に {want} を指定しなければなりません"),
            );
        }
    }
}

/// Entry fullUrls: present, unique (bdl-7), and `urn:uuid:` in 5情報 Bundles.
fn entry_urls(w: &mut Report, entries: &[Value], clins: bool) {
    let mut seen = HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        let Some(url) = str_at(e, "fullUrl") else {
            w.issue(
                Severity::Error,
                "required",
                &format!("entry[{i}].fullUrl"),
                r("JP-CLINS: entry.fullUrl"),
                "entry.fullUrl がありません。entry ごとに毎回新しい UUID (urn:uuid:…) を設定してください".into(),
            );
            continue;
        };
        if !seen.insert(url) {
            w.issue(
                Severity::Error,
                "invariant",
                &format!("entry[{i}].fullUrl"),
                r("bdl-7"),
                format!("fullUrl「{url}」が同じ Bundle の中で重複しています。entry ごとに別の UUID を使ってください"),
            );
        }
        if clins && !crate::primitives::is_uuid(url) {
            w.issue(
                Severity::Error,
                "value",
                &format!("entry[{i}].fullUrl"),
                r("JP-CLINS: entry.fullUrl"),
                format!("fullUrl「{url}」は urn:uuid: + 小文字の UUID でなければなりません"),
            );
        }
    }
}

/// R02151 / R2152.
fn bundle_identifier(w: &mut Report, obj: &Map<String, Value>) {
    let ids: Vec<&Value> = match obj.get("identifier") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    };
    let ours: Vec<&Value> =
        ids.into_iter().filter(|i| str_at(i, "system") == Some(systems::BUNDLE_IDENTIFIER)).collect();
    if ours.is_empty() {
        w.issue(
            Severity::Error,
            "invariant",
            "identifier",
            r("R02151"),
            format!("Bundle.identifier.system は {} でなければなりません (R02151)", systems::BUNDLE_IDENTIFIER),
        );
        return;
    }
    for id in ours {
        let value = str_at(id, "value").unwrap_or("");
        if let Err(musubi_domain::DomainError::BundleIdentifier { reason, .. }) = value.parse::<BundleIdentifier>() {
            w.issue(
                Severity::Error,
                "value",
                "identifier.value",
                r("R2152"),
                format!(
                    "Bundle.identifier.value「{value}」は「医療機関番号10桁^西暦4桁^36文字以内の半角英数字・ハイフン」でなければなりません ({reason}) (R2152)"
                ),
            );
        }
    }
}

fn clins_bundle(w: &mut Report, obj: &Map<String, Value>, entries: &[Value]) {
    // R0211 / R0212
    let first = entries.first().and_then(|e| e.get("resource"));
    let first_type = first.and_then(|r| str_at(r, "resourceType"));
    if first_type != Some("Patient") {
        w.issue(
            Severity::Error,
            "invariant",
            if entries.is_empty() { "entry" } else { "entry[0].resource" },
            r("R0211"),
            "最初の entry は Patient でなければなりません (R0211)".into(),
        );
    } else if let Some(Value::Object(p)) = first {
        let claims = claimed_profiles(p);
        if !claims.contains(&PATIENT_ECS) {
            w.issue(
                Severity::Error,
                "invariant",
                "entry[0].resource.meta.profile",
                r("R0212"),
                format!("最初の entry の Patient は meta.profile に {PATIENT_ECS} を指定しなければなりません (R0212)"),
            );
        }
    }
    // R02141 / R02142
    let tags = obj.get("meta").map(|m| varr(m, "tag")).unwrap_or(&[]);
    let tagged: Vec<&str> = tags
        .iter()
        .filter(|t| str_at(t, "system") == Some(systems::BUNDLE_RESOURCE_TYPE))
        .filter_map(|t| str_at(t, "code"))
        .collect();
    let designated = match tagged.as_slice() {
        [] => {
            w.issue(
                Severity::Error,
                "invariant",
                "meta.tag",
                r("R02141"),
                format!(
                    "Bundle.meta.tag に収納するリソース種別 (system = {}) を記述してください (R02141)",
                    systems::BUNDLE_RESOURCE_TYPE
                ),
            );
            None
        }
        [t] if matches!(*t, "AllergyIntolerance" | "Observation" | "Condition") => Some(*t),
        _ => {
            w.issue(
                Severity::Error,
                "invariant",
                "meta.tag",
                r("R02142"),
                format!(
                    "Bundle.meta.tag のリソース種別は AllergyIntolerance、Observation、Condition のいずれか 1 つです (指定: {}) (R02142)",
                    tagged.join(", ")
                ),
            );
            None
        }
    };
    let patient_url = entries.first().and_then(|e| str_at(e, "fullUrl"));
    let mut designated_count = 0;
    for (i, e) in entries.iter().enumerate().skip(1) {
        let Some(res) = e.get("resource") else { continue };
        let rt = str_at(res, "resourceType").unwrap_or("");
        let at = |rel: &str| format!("entry[{i}].resource{}{rel}", if rel.is_empty() { "" } else { "." });
        if let Some(d) = designated {
            if rt == d {
                designated_count += 1;
            } else {
                w.issue(
                    Severity::Error,
                    "invariant",
                    &at(""),
                    r("R02142"),
                    format!("この Bundle は {d} 用 (meta.tag) ですが、{rt} が含まれています。1 つの Bundle には 1 種類のリソースだけを入れてください"),
                );
            }
        }
        // R9011 / R9012
        let inst = res
            .as_object()
            .and_then(|o| extensions(o, systems::EXT_INSTITUTION_NUMBER).next())
            .map(|e| e.get("valueIdentifier").and_then(|v| str_at(v, "value")));
        match inst {
            None => w.issue(
                Severity::Error,
                "invariant",
                &at("extension"),
                r("R9011"),
                "Bundle に含める Patient 以外のリソースには医療機関番号拡張 (JP_eCS_InstitutionNumber) が必要です (R9011)".into(),
            ),
            Some(v) => {
                if let Err(why) = institution_number_ok(v.unwrap_or("")) {
                    w.issue(
                        Severity::Error,
                        "value",
                        &at("extension"),
                        r("R9012"),
                        format!("医療機関番号「{}」が不正です: {why} (R9012)", v.unwrap_or("")),
                    );
                }
            }
        }
        let obs = rt == "Observation";
        let cond = rt == "Condition";
        let suffix = if obs { "O" } else { "C" };
        if obs || cond {
            if !contained_claims(res, JP_ENCOUNTER) {
                w.issue(
                    Severity::Error,
                    "invariant",
                    &at("contained"),
                    r(&format!("R9013{suffix}")),
                    format!("{rt} には meta.profile が JP_Encounter の contained Encounter が必要です (R9013{suffix})"),
                );
            }
            let dept = res.as_object().is_some_and(|o| extensions(o, systems::EXT_DEPARTMENT).next().is_some());
            if !dept {
                w.issue(
                    Severity::Error,
                    "invariant",
                    &at("extension"),
                    r(&format!("R9014{suffix}")),
                    format!("{rt} には診療科拡張 (JP_eCS_Department) が必要です (R9014{suffix})"),
                );
            }
            if res.get("encounter").is_none() {
                w.issue(
                    Severity::Error,
                    "invariant",
                    &at("encounter"),
                    r(&format!("R9016{suffix}")),
                    format!("{rt} には encounter が必要です (R9016{suffix})"),
                );
            }
            subject_reference(w, res, patient_url, &at("subject"));
        }
        if cond {
            if res.get("onsetDateTime").is_none() {
                w.issue(
                    Severity::Error,
                    "invariant",
                    &at("onset"),
                    r("R9015C"),
                    "Condition には onsetDateTime が必要です (R9015C)".into(),
                );
            }
            if res.get("abatementDateTime").is_none() {
                w.issue(
                    Severity::Warning,
                    "invariant",
                    &at("abatement"),
                    r("R9018C"),
                    "InvariantsRules.fsh の R9018C は abatementDateTime を求めますが、継続中の病名には終了日がないため警告にとどめています (R9018C)".into(),
                );
            }
        }
        if obs {
            if res.get("performer").is_none() {
                w.issue(
                    Severity::Error,
                    "invariant",
                    &at("performer"),
                    r("R9017O"),
                    "Observation には performer が必要です (R9017O)".into(),
                );
            }
            if !contained_claims(res, JP_PRACTITIONER) {
                w.issue(
                    Severity::Error,
                    "invariant",
                    &at("contained"),
                    r("R9019O"),
                    "Observation には meta.profile が JP_Practitioner の contained Practitioner が必要です (R9019O)"
                        .into(),
                );
            }
        }
        if rt == "AllergyIntolerance" {
            let subject = res.get("patient");
            if let Some(s) = subject {
                subject_reference_value(w, s, patient_url, &at("patient"));
            }
        }
    }
    if designated.is_some() && designated_count == 0 {
        w.issue(
            Severity::Error,
            "invariant",
            "entry",
            r("mustHaveOneMoreResources-with-designatedResourceType"),
            format!("Bundle.meta.tag で指定した {} のリソースが 1 つ以上必要です", designated.unwrap_or("")),
        );
    }
}

fn subject_reference(w: &mut Report, res: &Value, patient_url: Option<&str>, rel: &str) {
    if let Some(s) = res.get("subject") {
        subject_reference_value(w, s, patient_url, rel);
    }
}

/// The guide says entries reference the Patient entry by its fullUrl; some published examples use
/// `subject.identifier` instead — accepted with a warning (a known inconsistency).
fn subject_reference_value(w: &mut Report, s: &Value, patient_url: Option<&str>, rel: &str) {
    match (str_at(s, "reference"), patient_url) {
        (Some(reference), Some(p)) if reference != p => w.issue(
            Severity::Error,
            "invariant",
            &format!("{rel}.reference"),
            r("JP-CLINS: subject reference"),
            format!(
                "患者参照「{}」が Bundle 内の Patient (fullUrl {p}) を指していません",
                short(&Value::String(reference.into()))
            ),
        ),
        (None, _) if s.get("identifier").is_some() => w.issue(
            Severity::Warning,
            "business-rule",
            rel,
            r("JP-CLINS: subject reference"),
            "患者は identifier ではなく、Bundle 内の Patient entry の fullUrl (urn:uuid:…) で参照してください".into(),
        ),
        _ => {}
    }
}

fn document_bundle(w: &mut Report, obj: &Map<String, Value>, entries: &[Value], kind: &str) {
    if obj.get("type").and_then(Value::as_str) != Some("document") {
        w.issue(
            Severity::Error,
            "invariant",
            "type",
            r("JP-CLINS: document Bundle type"),
            format!("{kind}の Bundle.type は document でなければなりません"),
        );
    }
    let has_id = obj.get("identifier").is_some_and(|i| i.get("system").is_some() && i.get("value").is_some());
    if !has_id {
        w.issue(
            Severity::Error,
            "invariant",
            "identifier",
            r("bdl-9"),
            "文書 Bundle には identifier (system と value) が必要です (bdl-9)".into(),
        );
    }
    if obj.get("timestamp").is_none() {
        w.issue(
            Severity::Error,
            "invariant",
            "timestamp",
            r("bdl-10"),
            "文書 Bundle には timestamp が必要です (bdl-10)".into(),
        );
    }
    let first = entries.first().and_then(|e| e.get("resource")).and_then(|r| str_at(r, "resourceType"));
    if first != Some("Composition") {
        w.issue(
            Severity::Error,
            "invariant",
            if entries.is_empty() { "entry" } else { "entry[0].resource" },
            r("bdl-11"),
            format!("{kind}の最初の entry は Composition でなければなりません (bdl-11)"),
        );
    }
    let patient_url = entries
        .iter()
        .find(|e| e.get("resource").and_then(|r| str_at(r, "resourceType")) == Some("Patient"))
        .and_then(|e| str_at(e, "fullUrl"));
    for (i, e) in entries.iter().enumerate() {
        let Some(res) = e.get("resource") else { continue };
        if matches!(
            str_at(res, "resourceType"),
            Some("Condition" | "Observation" | "MedicationRequest" | "Composition")
        ) {
            subject_reference(w, res, patient_url, &format!("entry[{i}].resource.subject"));
        }
    }
}
