//! The published error examples are rejected for the right reason, and valid examples broken in
//! one place each are rejected with the specific rule and element.

use musubi_validate::{Issue, Severity, Validator, has_errors};
use serde_json::{Value, json};

fn load(rel: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reference").join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn example(name: &str) -> Value {
    load(&format!("jp-clins/examples/{name}.json"))
}

fn validate(v: &Value) -> Vec<Issue> {
    if v.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
        Validator::shared().validate_bundle(v)
    } else {
        Validator::shared().validate_resource(v)
    }
}

/// Asserts an error whose rule contains `rule` at exactly `expression`, and returns it.
#[track_caller]
fn assert_error(issues: &[Issue], rule: &str, expression: &str) -> Issue {
    let found = issues.iter().find(|i| {
        i.severity == Severity::Error
            && i.expression == expression
            && i.rule.as_deref().is_some_and(|r| r.contains(rule))
    });
    match found {
        Some(i) => i.clone(),
        None => panic!(
            "no error {rule} at {expression}; got:\n{}",
            issues
                .iter()
                .map(|i| format!("{:?} {} {:?} {}", i.severity, i.expression, i.rule, i.message))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// A valid example, changed by `f`, then validated.
fn mutate(v: &Value, f: impl FnOnce(&mut Value)) -> Vec<Issue> {
    let mut v = v.clone();
    f(&mut v);
    validate(&v)
}

fn patient() -> Value {
    example("Patient-Example-JP-Patient-eCS-MAKINO")
}

fn observations_bundle() -> Value {
    example("Bundle-Bundle-CLINS-Observations-Example-01")
}

// ---- the published error examples ----

#[test]
fn ext_eye_without_standard_code_is_r3010() {
    let issues = validate(&example("MedicationRequest-ErrorExample-JP-MedReq-ExtEye-Total1"));
    let e = assert_error(&issues, "R3010", "MedicationRequest.medication.coding");
    assert!(e.message.contains("YJ コード"), "{}", e.message);
    assert_eq!(e.code, "invariant");
}

#[test]
fn egfr_without_local_code_is_r6021() {
    let issues = validate(&example("Observation-ErrorExample-ObsLabo-eGFR"));
    let e = assert_error(&issues, "R6021", "Observation.code.coding");
    assert!(e.message.contains("JP_CLINS_ObsLabResult_LocalCode_CS"), "{}", e.message);
}

#[test]
fn wrong_general_order_code_for_quazepam_is_rejected() {
    let issues = validate(&example("MedicationRequest-ErrorExample-JP-MedReq-PO-SID-28days"));
    let e = assert_error(&issues, "一般名処方マスタ", "MedicationRequest.medication.coding[0].code");
    assert!(e.message.contains("2124030F2ZZZ") && e.message.contains("1124030F2ZZZ"), "{}", e.message);
    // The same request with the right code passes.
    assert!(!has_errors(&validate(&example("MedicationRequest-Example-JP-MedReq-PO-SID-28days"))));
}

// ---- mutations of valid examples ----

#[test]
fn missing_required_elements() {
    let p = patient();
    let issues = mutate(&p, |v| {
        v.as_object_mut().map(|o| o.remove("birthDate"));
    });
    let e = assert_error(&issues, "JP_Patient_eCS: Patient.birthDate min=1", "Patient.birthDate");
    assert_eq!(e.code, "required");
    let issues = mutate(&p, |v| {
        v.as_object_mut().map(|o| o.remove("identifier"));
    });
    assert_error(&issues, "JP_Patient_eCS: Patient.identifier min=1", "Patient.identifier");
    assert_error(&issues, "R1012", "Patient.identifier");
}

#[test]
fn bad_insurance_id_is_r1013() {
    let issues = mutate(&patient(), |v| v["identifier"][1]["value"] = json!("0001234:a:b:1"));
    let e = assert_error(&issues, "R1013", "Patient.identifier[1].value");
    assert!(e.message.contains("0001234:a:b:1"));
    let issues = mutate(&patient(), |v| v["identifier"][1]["value"] = json!("00012345:あい う:１８７:05"));
    assert_error(&issues, "R1013", "Patient.identifier[1].value");
}

#[test]
fn two_insurance_ids_is_r1012() {
    let issues = mutate(&patient(), |v| {
        let second = v["identifier"][1].clone();
        if let Some(a) = v["identifier"].as_array_mut() {
            a.push(second)
        }
    });
    assert_error(&issues, "R1012", "Patient.identifier");
}

#[test]
fn bad_local_patient_id_system_is_r1010() {
    let issues =
        mutate(&patient(), |v| v["identifier"][0]["system"] = json!("urn:oid:1.2.392.100495.20.3.51.21318814790"));
    assert_error(&issues, "R1010", "Patient.identifier[0].system");
}

#[test]
fn full_width_space_in_kana_name_is_r1113() {
    let issues = mutate(&patient(), |v| v["name"][1]["text"] = json!("マキノ\u{3000}ランマン"));
    let e = assert_error(&issues, "R1113", "Patient.name[1].text");
    assert!(e.message.contains("全角空白"));
}

#[test]
fn no_kanji_or_kana_name_is_r1112() {
    let issues = mutate(&patient(), |v| {
        for n in v["name"].as_array_mut().into_iter().flatten() {
            n.as_object_mut().map(|o| o.remove("extension"));
        }
    });
    assert_error(&issues, "R1112", "Patient.name");
}

#[test]
fn unknown_element_and_wrong_choice_suffix() {
    let c = example("Condition-Example-JP-Condition-eCS-01");
    let issues = mutate(&c, |v| v["severty"] = json!({"text": "重症"}));
    let e = assert_error(&issues, "unknown element", "Condition.severty");
    assert_eq!(e.code, "structure");
    let issues = mutate(&c, |v| {
        let onset = v.as_object_mut().and_then(|o| o.remove("onsetDateTime"));
        v["onsetDatetime"] = onset.unwrap_or(Value::Null);
    });
    assert_error(&issues, "Condition.onset[x] type", "Condition.onset");
    // A nested unknown element inside a datatype.
    let issues = mutate(&c, |v| v["code"]["coding"][0]["sytem"] = json!("http://example.org"));
    assert_error(&issues, "Condition.code.coding unknown element", "Condition.code.coding[0].sytem");
    let issues = mutate(&c, |v| v["subject"]["identifier"]["sytem"] = json!("x"));
    assert_error(&issues, "Identifier unknown element", "Condition.subject.identifier.sytem");
}

#[test]
fn wrong_primitive_types() {
    let o = example("Observation-Example-JP-Obs-LabResult-eCS-Alb");
    let issues = mutate(&o, |v| v["status"] = json!(5));
    let e = assert_error(&issues, "Observation.status type=code", "Observation.status");
    assert_eq!(e.code, "structure");
    let issues = mutate(&o, |v| v["valueQuantity"]["value"] = json!("4.5"));
    assert_error(&issues, "type=decimal", "Observation.value.value");
    let issues = mutate(&patient(), |v| v["birthDate"] = json!("1930-02-30"));
    let e = assert_error(&issues, "Patient.birthDate type=date", "Patient.birthDate");
    assert_eq!(e.code, "value");
    let issues = mutate(&patient(), |v| v["active"] = json!("true"));
    assert_error(&issues, "type=boolean", "Patient.active");
    let issues = mutate(&o, |v| v["issued"] = json!("2021-07-05"));
    assert_error(&issues, "type=instant", "Observation.issued");
}

#[test]
fn arrays_and_single_values() {
    let issues = mutate(&patient(), |v| {
        let first = v["name"][0].clone();
        v["name"] = first;
    });
    let e = assert_error(&issues, "Patient.name", "Patient.name");
    assert!(e.message.contains("配列"), "{}", e.message);
    let issues = mutate(&patient(), |v| v["gender"] = json!(["female"]));
    assert_error(&issues, "Patient.gender max=1", "Patient.gender");
    let issues = mutate(&patient(), |v| v["telecom"] = json!([]));
    assert!(issues.iter().any(|i| i.severity == Severity::Error && i.expression == "Patient.telecom"));
    // JP_Patient_eCS allows one address.
    let issues = mutate(&patient(), |v| {
        let a = v["address"][0].clone();
        if let Some(x) = v["address"].as_array_mut() {
            x.push(a)
        }
    });
    assert_error(&issues, "Patient.address max=1", "Patient.address");
}

#[test]
fn slices_are_counted() {
    let o = example("Observation-Example-JP-Obs-LabResult-eCS-Alb");
    // identifier:resourceIdentifier (system fixed) is required by JP_Observation_LabResult_eCS.
    let issues = mutate(&o, |v| v["identifier"][0]["system"] = json!("http://example.org/other"));
    assert_error(&issues, "Observation.identifier:resourceIdentifier min=1", "Observation.identifier");
    // meta.tag is closed-sliced to the LTS flag.
    let issues = mutate(&o, |v| v["meta"]["tag"] = json!([{"system": "http://example.org", "code": "X"}]));
    assert_error(&issues, "Observation.meta.tag slicing closed", "Observation.meta.tag[0]");
}

#[test]
fn extension_shape() {
    let issues = mutate(&patient(), |v| {
        v["name"][0]["extension"][0] =
            json!({"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"})
    });
    assert_error(&issues, "ext-1", "Patient.name[0].extension[0]");
    let issues = mutate(&patient(), |v| v["extension"] = json!([{"valueString": "x"}]));
    assert_error(&issues, "Extension.url min=1", "Patient.extension[0].url");
}

#[test]
fn codes_of_the_shared_items() {
    let a = example("AllergyIntolerance-Example-JP-Allergy-eCS-01");
    let issues = mutate(&a, |v| v["code"]["coding"][0]["code"] = json!("J9FZ99999999"));
    let e = assert_error(&issues, "J-FAGY", "AllergyIntolerance.code.coding[0].code");
    assert_eq!(e.code, "code-invalid");
    let c = example("Condition-Example-JP-Condition-eCS-01");
    let issues = mutate(&c, |v| {
        for coding in v["code"]["coding"].as_array_mut().into_iter().flatten() {
            if coding["system"] == json!("http://medis.or.jp/CodeSystem/master-disease-keyNumber") {
                coding["code"] = json!("2005891");
            }
        }
    });
    assert!(issues.iter().any(|i| i.severity == Severity::Error && i.rule.as_deref() == Some("MEDIS 病名管理番号")));
    let uncoded = mutate(&c, |v| {
        for coding in v["code"]["coding"].as_array_mut().into_iter().flatten() {
            if coding["system"] == json!("http://medis.or.jp/CodeSystem/master-disease-keyNumber") {
                coding["code"] = json!("99999999");
            }
        }
    });
    assert!(!has_errors(&uncoded), "{uncoded:?}");
    let o = example("Observation-Example-JP-Obs-LabResult-eCS-Alb");
    let issues = mutate(&o, |v| v["code"]["coding"][1]["code"] = json!("3H015000002326101"));
    // 3H015000002326101 is a core item (K), labelled ALB: the display names another group.
    assert_error(&issues, "JP_CLINS_ObsLabResult_CoreLabo_CS", "Observation.code.coding[1].display");
    let issues = mutate(&o, |v| v["code"]["coding"][1]["code"] = json!("8A065000002391901"));
    assert_error(&issues, "JP_CLINS_ObsLabResult_CoreLabo_CS", "Observation.code.coding[1].code");
}

#[test]
fn medication_usage_codes_r5020_r5021() {
    let m = example("MedicationRequest-Example-JP-MedReq-PO-BID-2d");
    let issues = mutate(&m, |v| {
        if let Some(a) = v["dosageInstruction"][0]["timing"]["code"]["coding"].as_array_mut() {
            a.push(json!({"system": "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_MedicationUsage_Uncoded_CS", "code": "0X0XXXXXXXXX0000", "display": "不明"}))
        }
    });
    assert_error(&issues, "R5021", "MedicationRequest.dosageInstruction[0].timing.code.coding");
    let issues = mutate(&m, |v| {
        v["dosageInstruction"][0]["timing"]["code"]["coding"][0]["system"] =
            json!("http://jami.jp/CodeSystem/MedicationUsage")
    });
    assert_error(&issues, "R5020", "MedicationRequest.dosageInstruction[0].timing.code.coding");
}

#[test]
fn allergy_code_rules() {
    let a = example("AllergyIntolerance-Example-JP-Allergy-eCS-01");
    let issues = mutate(&a, |v| v["code"]["coding"][0]["system"] = json!("http://example.org/allergen"));
    assert_error(&issues, "R2013", "AllergyIntolerance.code.coding");
    let issues = mutate(&a, |v| {
        v["category"] = json!(["medication"]);
        v["criticality"] = json!("high");
    });
    assert_error(&issues, "R2012", "AllergyIntolerance.code.coding");
    let issues = mutate(&a, |v| v["category"] = json!(["medication"]));
    let warn = issues.iter().find(|i| i.rule.as_deref() == Some("R2011")).expect("R2011 warning");
    assert_eq!(warn.severity, Severity::Warning);
}

// ---- 5情報 Bundle rules ----

#[test]
fn bad_bundle_identifier_is_r2152() {
    let b = observations_bundle();
    for bad in ["1318814790^24^0123", "1318814790^2024^ABC_1", "131881479^2024^A", "1348814790^2024^A"] {
        let issues = mutate(&b, |v| v["identifier"]["value"] = json!(bad));
        let e = assert_error(&issues, "R2152", "Bundle.identifier.value");
        assert!(e.message.contains(bad));
    }
    let issues = mutate(&b, |v| v["identifier"]["system"] = json!("http://example.org"));
    assert_error(&issues, "R02151", "Bundle.identifier");
}

#[test]
fn eleven_digit_institution_number() {
    let issues = mutate(&observations_bundle(), |v| {
        v["entry"][1]["resource"]["extension"][0]["valueIdentifier"]["value"] = json!("13188147901")
    });
    assert_error(&issues, "R9012", "Bundle.entry[1].resource.extension");
    assert_error(&issues, "R1021", "Bundle.entry[1].resource.extension[0].value.value");
}

#[test]
fn entry_rules() {
    let b = observations_bundle();
    let issues = mutate(&b, |v| {
        if let Some(a) = v["entry"].as_array_mut() {
            a.swap(0, 1)
        }
    });
    assert_error(&issues, "R0211", "Bundle.entry[0].resource");
    let issues = mutate(&b, |v| v["meta"]["tag"] = json!([{"system": "http://example.org", "code": "x"}]));
    assert_error(&issues, "R02141", "Bundle.meta.tag");
    let issues = mutate(&b, |v| v["meta"]["tag"][0]["code"] = json!("MedicationRequest"));
    assert_error(&issues, "R02142", "Bundle.meta.tag");
    let issues = mutate(&b, |v| {
        v["entry"][2]["resource"].as_object_mut().map(|o| o.remove("contained"));
    });
    assert_error(&issues, "R9013O", "Bundle.entry[2].resource.contained");
    assert_error(&issues, "R9019O", "Bundle.entry[2].resource.contained");
    let issues = mutate(&b, |v| {
        v["entry"][2]["resource"].as_object_mut().map(|o| o.remove("performer"));
    });
    assert_error(&issues, "R9017O", "Bundle.entry[2].resource.performer");
    let issues = mutate(&b, |v| {
        if let Some(a) = v["entry"][3]["resource"]["extension"].as_array_mut() {
            a.truncate(1)
        }
    });
    assert_error(&issues, "R9014O", "Bundle.entry[3].resource.extension");
    let issues = mutate(&b, |v| v["entry"][2]["fullUrl"] = v["entry"][1]["fullUrl"].clone());
    assert_error(&issues, "bdl-7", "Bundle.entry[2].fullUrl");
    let unclaimed =
        |v: &mut Value| v["meta"]["profile"] = json!(["http://jpfhir.jp/fhir/StructureDefinition/JP_Bundle"]);
    let issues = mutate(&b, unclaimed);
    assert_error(&issues, "R0213", "Bundle.meta.profile");
    // Outside a submission (validate_resource) a plain collection Bundle is not a 5情報 Bundle.
    let mut plain = b.clone();
    unclaimed(&mut plain);
    let issues = Validator::shared().validate_resource(&plain);
    assert!(!issues.iter().any(|i| i.rule.as_deref() == Some("R0213")), "{issues:?}");
    let issues = mutate(&b, |v| v["type"] = json!("transaction"));
    assert_error(&issues, "JP-CLINS: Bundle type", "Bundle.type");
}

#[test]
fn errors_inside_entries_and_contained_carry_their_path() {
    let issues = mutate(&observations_bundle(), |v| v["entry"][2]["resource"]["identifier"][0]["value"] = json!(7));
    assert_error(&issues, "type=string", "Bundle.entry[2].resource.identifier[0].value");
    let issues =
        mutate(&observations_bundle(), |v| v["entry"][1]["resource"]["contained"][0]["statuss"] = json!("finished"));
    assert_error(&issues, "unknown element", "Bundle.entry[1].resource.contained[0].statuss");
}

#[test]
fn document_bundle_rules() {
    let b = example("Bundle-Bundle-CLINS-Referral-Example-01");
    let issues = mutate(&b, |v| {
        if let Some(a) = v["entry"].as_array_mut() {
            a.swap(0, 1)
        }
    });
    assert_error(&issues, "bdl-11", "Bundle.entry[0].resource");
    let issues = mutate(&b, |v| {
        v.as_object_mut().map(|o| o.remove("timestamp"));
    });
    assert_error(&issues, "bdl-10", "Bundle.timestamp");
    // Without meta.profile, the Composition type decides the profile (with a warning).
    let issues = mutate(&b, |v| {
        v["meta"].as_object_mut().map(|m| m.remove("profile"));
        v.as_object_mut().map(|o| o.remove("timestamp"));
    });
    let w = issues.iter().find(|i| i.rule.as_deref() == Some("JP-CLINS: Bundle profile")).expect("profile warning");
    assert!(w.message.contains("JP_Bundle_eReferral"), "{}", w.message);
    assert_error(&issues, "bdl-10", "Bundle.timestamp");
    // The Composition's document type is a pattern of the profile (57133-1 for 診療情報提供書).
    let issues = mutate(&b, |v| v["entry"][0]["resource"]["type"]["coding"][0]["code"] = json!("18842-5"));
    let e = assert_error(
        &issues,
        "JP_Composition_eReferral: Composition.type.coding.code fixed",
        "Bundle.entry[0].resource.type.coding[0].code",
    );
    assert!(e.message.contains("57133-1"), "{}", e.message);
    // 5情報 Bundles are closed to other resource types.
    let issues = mutate(&observations_bundle(), |v| {
        let practitioner = v["entry"][1]["resource"]["contained"][2].clone();
        if let Some(a) = v["entry"].as_array_mut() {
            a.push(json!({"fullUrl": "urn:uuid:0b4a2c2e-5a9e-4d43-9c1e-6a3f9c1d2e11", "resource": practitioner}))
        }
    });
    assert_error(&issues, "Bundle.entry slicing closed", "Bundle.entry[5]");
}

#[test]
fn not_a_bundle_and_unknown_resource_types() {
    let issues = Validator::shared().validate_bundle(&patient());
    assert_error(&issues, "JP-CLINS: Bundle", "Bundle");
    let issues = validate(&json!({"resourceType": "Patiant"}));
    assert!(issues.iter().any(|i| i.severity == Severity::Error && i.code == "not-supported"));
    let issues = validate(&json!({"id": "x"}));
    assert!(issues.iter().any(|i| i.severity == Severity::Error && i.code == "required"));
}

#[test]
fn unknown_profile_is_a_warning_and_falls_back_to_jp_core() {
    let issues =
        mutate(&patient(), |v| v["meta"]["profile"] = json!(["http://example.org/StructureDefinition/MyPatient"]));
    let w = issues.iter().find(|i| i.expression == "Patient.meta.profile").expect("warning");
    assert_eq!(w.severity, Severity::Warning);
    assert!(!has_errors(&issues), "{issues:?}");
    // The JP Core base still checks structure.
    let issues = mutate(&patient(), |v| {
        v["meta"]["profile"] = json!(["http://example.org/StructureDefinition/MyPatient"]);
        v["gender"] = json!(1);
    });
    assert_error(&issues, "JP_Patient: Patient.gender type=code", "Patient.gender");
}

#[test]
fn resource_types_without_profiles_get_plain_checks() {
    let issues =
        validate(&json!({"resourceType": "Provenance", "id": "bad id", "recorded": "2024-01-01T00:00:00+09:00"}));
    assert_error(&issues, "type=id", "Provenance.id");
    let issues = validate(&json!({"resourceType": "Composition", "status": "final", "statuz": 1}));
    assert!(issues.iter().any(|i| i.expression == "Composition.statuz" && i.severity == Severity::Error));
}

#[test]
fn known_inconsistencies_are_warnings() {
    // eDischargeSummary section codes the CodeSystem comments out.
    let issues = mutate(&example("Bundle-Bundle-CLINS-Referral-Example-01"), |v| {
        let mut extra = v["entry"][0]["resource"]["section"][2]["section"][2].clone();
        extra["code"]["coding"][0]["code"] = json!("362");
        if let Some(a) = v["entry"][0]["resource"]["section"][2]["section"].as_array_mut() {
            a.push(extra)
        }
    });
    let w = issues.iter().find(|i| i.rule.as_deref() == Some("JP-CLINS document-section")).expect("section warning");
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(w.expression, "Bundle.entry[0].resource.section[2].section[9].code.coding[0].code");
    assert!(!has_errors(&issues), "{issues:?}");
    // subject by identifier instead of the Patient entry's fullUrl.
    let issues = mutate(
        &observations_bundle(),
        |v| v["entry"][1]["resource"]["subject"] = json!({"identifier": {"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID", "value": "00012345:あいう:１８７:01"}}),
    );
    let w = issues.iter().find(|i| i.rule.as_deref() == Some("JP-CLINS: subject reference")).expect("subject warning");
    assert_eq!((w.severity, w.expression.as_str()), (Severity::Warning, "Bundle.entry[1].resource.subject"));
    assert!(!has_errors(&issues), "{issues:?}");
    // ... but a reference to another entry is an error.
    let issues = mutate(&observations_bundle(), |v| {
        v["entry"][1]["resource"]["subject"]["reference"] = v["entry"][2]["fullUrl"].clone()
    });
    assert_error(&issues, "JP-CLINS: subject reference", "Bundle.entry[1].resource.subject.reference");
}
