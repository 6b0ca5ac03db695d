//! The search-index entries a resource yields.
//!
//! Extraction is pure and runs before the store's write lock is taken (see ARCHITECTURE.md:
//! index values are computed outside the critical section, as Blaze does).

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use crate::datetime::{DateRange, parse_range};
use crate::json::walk;
use crate::reference::parse_reference;
use crate::{ParamKind, ResourceType};

/// One indexed value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IndexValue {
    /// A coded value or identifier: `system|code` (system may be empty).
    Token {
        /// The system URI ('' when none).
        system: String,
        /// The code or identifier value.
        code: String,
    },
    /// A literal reference `Type/id`.
    Ref(String),
    /// A date range.
    Date(DateRange),
    /// A normalized string (see [`normalize_string`]).
    Str(String),
}

/// A search-index entry: parameter name and value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexEntry {
    /// The search parameter.
    pub param: &'static str,
    /// The value.
    pub value: IndexValue,
}

/// Every index entry of `resource` (of type `rtype`) for the type's search parameters.
pub fn extract(rtype: ResourceType, resource: &Value) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    for def in rtype.search_params() {
        if rtype == ResourceType::Bundle && def.name == "composition-type" {
            // Only the document's Composition (entry[0]) says what the document is.
            if let Some(comp) = resource.pointer("/entry/0/resource").filter(|r| r["resourceType"] == "Composition") {
                push_tokens(def.name, &comp["type"], &mut out);
            }
            continue;
        }
        if rtype == ResourceType::Bundle && def.name == "recipient" {
            for code in referral_recipients(resource) {
                out.push(IndexEntry { param: def.name, value: IndexValue::Token { system: String::new(), code } });
            }
            continue;
        }
        for path in def.paths {
            walk(resource, path, &mut |_, v| match def.kind {
                ParamKind::Token => push_tokens(def.name, v, &mut out),
                ParamKind::Reference => {
                    if let Some(r) = v.get("reference").and_then(Value::as_str).and_then(parse_reference) {
                        out.push(IndexEntry { param: def.name, value: IndexValue::Ref(r.key()) });
                    }
                }
                ParamKind::Date => push_dates(def.name, v, &mut out),
                ParamKind::String => {
                    if let Some(s) = v.as_str() {
                        let n = normalize_string(s);
                        if !n.is_empty() {
                            out.push(IndexEntry { param: def.name, value: IndexValue::Str(n) });
                        }
                    }
                }
                ParamKind::Patient => {}
            });
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The 医療機関番号 of the facilities a document's 紹介先 section (code 910) names: the section's
/// entries resolved against the Bundle's fullUrls to Organizations, and their institution number.
pub fn referral_recipients(bundle: &Value) -> Vec<String> {
    let Some(entries) = bundle.get("entry").and_then(Value::as_array) else { return Vec::new() };
    let Some(comp) = entries.first().and_then(|e| e.get("resource")).filter(|r| r["resourceType"] == "Composition")
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for section in comp["section"].as_array().into_iter().flatten() {
        let is_to = crate::json::codings(&section["code"]).any(|(_, c)| c == "910");
        if !is_to {
            continue;
        }
        for r in section["entry"].as_array().into_iter().flatten().filter_map(|e| e["reference"].as_str()) {
            let Some(org) = entries.iter().find(|e| e["fullUrl"].as_str() == Some(r)).map(|e| &e["resource"]) else {
                continue;
            };
            if org["resourceType"] != "Organization" {
                continue;
            }
            for id in org["identifier"].as_array().into_iter().flatten() {
                if id["system"] == musubi_domain::systems::INSTITUTION_NUMBER
                    && let Some(v) = id["value"].as_str()
                {
                    out.push(v.to_owned());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn push_tokens(param: &'static str, v: &Value, out: &mut Vec<IndexEntry>) {
    let mut push = |system: &str, code: &str| {
        if !code.is_empty() {
            out.push(IndexEntry {
                param,
                value: IndexValue::Token { system: system.to_owned(), code: code.to_owned() },
            });
        }
    };
    match v {
        Value::String(s) => push("", s),
        Value::Bool(b) => push("", if *b { "true" } else { "false" }),
        Value::Object(o) => {
            if let Some(Value::Array(codings)) = o.get("coding") {
                for c in codings {
                    if let Some(code) = c.get("code").and_then(Value::as_str) {
                        push(c.get("system").and_then(Value::as_str).unwrap_or(""), code);
                    }
                }
            } else if let Some(code) = o.get("code").and_then(Value::as_str) {
                push(o.get("system").and_then(Value::as_str).unwrap_or(""), code);
            } else if let Some(value) = o.get("value").and_then(Value::as_str) {
                // Identifier (system|value) or ContactPoint (value; its `system` is "phone" etc.,
                // not a URI, so it is not used).
                let system = o.get("system").and_then(Value::as_str).filter(|s| s.contains(':')).unwrap_or("");
                push(system, value);
            }
        }
        _ => {}
    }
}

fn push_dates(param: &'static str, v: &Value, out: &mut Vec<IndexEntry>) {
    let range = match v {
        Value::String(s) => parse_range(s).ok(),
        Value::Object(o) if o.contains_key("start") || o.contains_key("end") => {
            let lo = o
                .get("start")
                .and_then(Value::as_str)
                .and_then(|s| parse_range(s).ok())
                .map_or(DateRange::ALL.lo, |r| r.lo);
            let hi = o
                .get("end")
                .and_then(Value::as_str)
                .and_then(|s| parse_range(s).ok())
                .map_or(DateRange::ALL.hi, |r| r.hi);
            Some(DateRange { lo, hi })
        }
        _ => None,
    };
    if let Some(r) = range {
        out.push(IndexEntry { param, value: IndexValue::Date(r) });
    }
}

/// Normalizes a string for search: NFKC (half-width kana become full-width, full-width ASCII
/// becomes half-width), lower case, hiragana folded to katakana (so やまだ finds ヤマダ), and no
/// white space (Japanese names are written with and without a space between family and given).
pub fn normalize_string(s: &str) -> String {
    s.nfkc()
        .flat_map(char::to_lowercase)
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '\u{3041}'..='\u{3096}' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tokens(entries: &[IndexEntry], param: &str) -> Vec<(String, String)> {
        entries
            .iter()
            .filter(|e| e.param == param)
            .filter_map(|e| match &e.value {
                IndexValue::Token { system, code } => Some((system.clone(), code.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn observation_entries() {
        let obs = json!({
            "resourceType": "Observation",
            "identifier": [{"system": "urn:x", "value": "1"}],
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JLAC10", "code": "3D046000001920402"}, {"code": "local"}]},
            "subject": {"reference": "Patient/p1"},
            "effectivePeriod": {"start": "2024-01-01"}
        });
        let e = extract(ResourceType::Observation, &obs);
        assert_eq!(tokens(&e, "identifier"), vec![("urn:x".into(), "1".into())]);
        assert_eq!(tokens(&e, "status"), vec![("".into(), "final".into())]);
        assert_eq!(tokens(&e, "code").len(), 2);
        assert!(e.contains(&IndexEntry { param: "subject", value: IndexValue::Ref("Patient/p1".into()) }));
        let date = e.iter().find(|x| x.param == "date").unwrap();
        match date.value {
            IndexValue::Date(r) => assert_eq!(r.hi, DateRange::ALL.hi),
            _ => panic!("date expected"),
        }
    }

    #[test]
    fn patient_names_are_normalized() {
        let p = json!({"resourceType": "Patient", "name": [{"text": "山田 太郎"}, {"family": "ﾔﾏﾀﾞ", "given": ["たろう"]}], "gender": "male", "birthDate": "1970-01-02"});
        let e = extract(ResourceType::Patient, &p);
        let names: Vec<_> = e
            .iter()
            .filter(|x| x.param == "name")
            .map(|x| match &x.value {
                IndexValue::Str(s) => s.clone(),
                _ => String::new(),
            })
            .collect();
        assert!(names.contains(&"山田太郎".to_owned()));
        assert!(names.contains(&"ヤマダ".to_owned()));
        assert!(names.contains(&"タロウ".to_owned()));
    }

    #[test]
    fn referral_addressee_from_the_reference_example() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../reference/jp-clins/examples/Bundle-Bundle-CLINS-Referral-Example-01.json"
        ))
        .unwrap();
        let b: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(referral_recipients(&b), vec!["1311234567".to_owned()]);
        let e = extract(ResourceType::Bundle, &b);
        assert!(e.contains(&IndexEntry {
            param: "recipient",
            value: IndexValue::Token { system: String::new(), code: "1311234567".into() }
        }));
    }

    #[test]
    fn bundle_composition_type() {
        let b = json!({"resourceType": "Bundle", "type": "document", "entry": [{"resource": {"resourceType": "Composition", "type": {"coding": [{"system": "http://jpfhir.jp/fhir/Common/CodeSystem/doc-typecodes", "code": "57133-1"}]}}}, {"resource": {"resourceType": "Encounter", "type": [{"coding": [{"code": "x"}]}]}}]});
        let e = extract(ResourceType::Bundle, &b);
        assert_eq!(
            tokens(&e, "composition-type"),
            vec![("http://jpfhir.jp/fhir/Common/CodeSystem/doc-typecodes".into(), "57133-1".into())]
        );
    }
}
