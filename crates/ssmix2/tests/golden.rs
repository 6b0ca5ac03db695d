//! Golden tests over every file of the SS-MIX2 checker's sample storage
//! (reference/ssmix2/SSMIX2DataTestingTool/sampleData): real values, not counts.

use std::path::{Path, PathBuf};

use musubi_domain::FacilityCode;
use musubi_ssmix2::{Collected, MappedResource, Outcome, ProblemKind, Severity, collect, patient_logical_id};
use serde_json::{Value, json};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../reference/ssmix2/SSMIX2DataTestingTool/sampleData");

/// JP Core's Rp number and order-in-Rp identifier systems (URL variant of JP Core 1.1.2).
const RP_NUMBER: &str = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/Medication-RPGroupNumber";
const ORDER_IN_RP: &str = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicationAdministrationIndex";

fn facility() -> FacilityCode {
    "1318814790".parse().unwrap()
}

fn files() -> Vec<String> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { walk(&p, out) } else { out.push(p) }
        }
    }
    let mut out = Vec::new();
    walk(Path::new(ROOT), &mut out);
    let mut rel: Vec<String> =
        out.iter().map(|p| p.strip_prefix(ROOT).unwrap().to_str().unwrap().replace('\\', "/")).collect();
    rel.sort();
    rel
}

fn run(fragment: &str) -> Collected {
    let rel = files().into_iter().find(|f| f.contains(fragment)).unwrap_or_else(|| panic!("no sample {fragment}"));
    let bytes = std::fs::read(Path::new(ROOT).join(&rel)).unwrap();
    collect(facility(), &rel, &bytes).unwrap_or_else(|e| panic!("{rel} rejected: {e:?}"))
}

fn resources(c: &Collected) -> &[MappedResource] {
    match &c.outcome {
        Outcome::Resources(r) => r,
        Outcome::Retraction(_) => panic!("expected resources"),
    }
}

fn of<'a>(c: &'a Collected, t: &str) -> Vec<&'a Value> {
    resources(c).iter().filter(|r| r.resource_type == t).map(|r| &r.resource).collect()
}

fn patient_ref() -> String {
    format!("Patient/{}", patient_logical_id(&facility(), "9999013"))
}

#[test]
fn every_good_sample_lands_and_the_misplaced_one_is_rejected() {
    let all = files();
    assert_eq!(all.len(), 22);
    let mut landed = 0;
    for rel in &all {
        let bytes = std::fs::read(Path::new(ROOT).join(rel)).unwrap();
        let got = collect(facility(), rel, &bytes);
        if rel.contains("/ADT-31/") {
            let e = got.expect_err("the misplaced file must be rejected");
            assert_eq!(e.problems.len(), 1);
            let p = &e.problems[0];
            assert_eq!(p.severity, Severity::Error);
            assert_eq!(p.kind, ProblemKind::Path);
            assert!(
                p.reason.contains("ディレクトリ \"000\" がファイル名の患者ID \"9999013\" と一致しません"),
                "{}",
                p.reason
            );
            assert_eq!(e.sha256, musubi_ssmix2::sha256_hex(&[0xfb, 0xfc]));
        } else {
            let c = got.unwrap_or_else(|e| panic!("{rel}: {e:?}"));
            assert!(c.problems.iter().all(|p| p.severity == Severity::Warning));
            assert_eq!(c.provenance.sha256, musubi_ssmix2::sha256_hex(&bytes));
            assert_eq!(c.provenance.path, *rel);
            landed += 1;
        }
    }
    assert_eq!(landed, 21);
}

#[test]
fn ids_are_deterministic_and_unique() {
    let a = run("ADT-00/");
    let b = run("ADT-00/");
    let ids_a: Vec<&str> = resources(&a).iter().map(|r| r.id.as_str()).collect();
    let ids_b: Vec<&str> = resources(&b).iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids_a, ids_b);
    let mut all = Vec::new();
    for rel in files().iter().filter(|f| !f.contains("/ADT-31/") && f.ends_with("_1")) {
        let c = run(rel);
        for r in resources(&c) {
            assert_eq!(r.resource["id"], r.id.as_str());
            assert!(r.id.len() <= 64 && r.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
            all.push(r.id.clone());
        }
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "logical ids collide");
}

#[test]
fn adt00_patient_names_insurance_and_body_measurements() {
    let c = run("ADT-00/");
    assert_eq!(c.provenance.message_type.as_deref(), Some("ADT^A08"));
    assert_eq!(c.provenance.occurred_at, "2011-12-20T22:44:47.339+09:00");
    let p = of(&c, "Patient")[0];
    assert_eq!(resources(&c)[0].resource_type, "Patient");
    assert_eq!(format!("Patient/{}", p["id"].as_str().unwrap()), patient_ref());
    assert_eq!(p["identifier"][0]["system"], "urn:oid:1.2.392.100495.20.3.51.11318814790");
    assert_eq!(p["identifier"][0]["value"], "9999013");
    assert_eq!(p["name"][0]["text"], "患者 太郎");
    assert_eq!(p["name"][0]["extension"][0]["valueCode"], "IDE");
    assert_eq!(p["name"][1]["family"], "カンジャ");
    assert_eq!(p["name"][1]["given"][0], "タロウ");
    assert_eq!(p["name"][1]["extension"][0]["valueCode"], "SYL");
    assert_eq!(p["gender"], "male");
    assert_eq!(p["birthDate"], "1948-04-05");
    assert_eq!(p["address"][0]["postalCode"], "422-8033");
    assert!(p["address"][0]["text"].as_str().unwrap().starts_with("静岡県静岡市登呂１"));
    assert_eq!(p["telecom"][0]["value"], "054-000-0000");
    assert_eq!(p["telecom"][0]["use"], "home");
    assert_eq!(p["telecom"][2]["value"], "03-3599-9993");
    assert_eq!(p["telecom"][2]["use"], "work");
    assert_eq!(p["contact"][0]["organization"]["display"], "鹿ノ門商事株式会社");

    let cov = of(&c, "Coverage")[0];
    assert_eq!(cov["payor"][0]["identifier"]["value"], "67999991");
    assert_eq!(cov["type"]["coding"][0]["code"], "67");
    assert_eq!(cov["type"]["text"], "国民健康保険退職者");
    assert_eq!(cov["period"]["start"], "2009-12-01");
    assert_eq!(cov["beneficiary"]["reference"], patient_ref());

    let obs = of(&c, "Observation");
    assert_eq!(obs.len(), 3);
    assert_eq!(obs[0]["code"]["coding"][0]["code"], "9N001000000000001");
    assert_eq!(obs[0]["code"]["text"], "身長");
    assert_eq!(obs[0]["valueQuantity"]["value"], 167.8);
    assert_eq!(obs[0]["valueQuantity"]["unit"], "cm");
    assert_eq!(obs[0]["category"][0]["coding"][0]["code"], "vital-signs");
    assert_eq!(obs[1]["valueQuantity"]["value"], 63.5);
    assert_eq!(obs[1]["valueQuantity"]["code"], "kg");
    assert_eq!(obs[2]["valueCodeableConcept"]["coding"][0]["code"], "A");

    let al = of(&c, "AllergyIntolerance")[0];
    assert_eq!(al["category"][0], "medication");
    assert_eq!(al["code"]["text"], "ペニシリン");
}

#[test]
fn adt61_allergies() {
    let c = run("ADT-61/");
    let a = of(&c, "AllergyIntolerance");
    assert_eq!(a.len(), 4);
    assert_eq!(a[0]["category"][0], "environment");
    assert_eq!(a[0]["code"]["coding"][0]["code"], "5A1002216023023");
    assert_eq!(a[0]["code"]["text"], "スギ");
    assert_eq!(a[0]["reaction"][0]["severity"], "mild");
    assert_eq!(a[0]["reaction"][0]["manifestation"][0]["text"], "目のかゆみ");
    assert_eq!(a[0]["onsetDateTime"], "1996-01");
    assert_eq!(a[1]["category"][0], "food");
    assert_eq!(a[1]["code"]["text"], "ソバ");
    assert_eq!(a[1]["onsetString"], "小学校低学年の頃");
    assert_eq!(a[1]["reaction"][0]["severity"], "moderate");
    assert_eq!(a[3]["category"][0], "medication");
    assert_eq!(a[3]["code"]["coding"][0]["system"], "http://medis.or.jp/CodeSystem/master-HOT9");
    assert_eq!(a[3]["onsetDateTime"], "2007-07-10");
    assert!(c.problems.iter().any(|p| p.kind == ProblemKind::PatientMismatch && p.field == Some(3)));
}

#[test]
fn ppr01_condition() {
    let c = run("PPR-01/");
    let cond = of(&c, "Condition");
    assert_eq!(cond.len(), 1);
    let k = cond[0];
    assert_eq!(k["code"]["coding"][0]["system"], "http://medis.or.jp/CodeSystem/master-disease-keyNumber");
    assert_eq!(k["code"]["coding"][0]["code"], "20054174");
    assert_eq!(k["code"]["coding"][1]["code"], "K297");
    assert_eq!(k["code"]["text"], "胃炎");
    assert_eq!(k["onsetDateTime"], "2011-08-31");
    assert_eq!(k["abatementDateTime"], "2011-09-15");
    assert_eq!(k["clinicalStatus"]["coding"][0]["code"], "inactive");
    assert_eq!(k["recorder"]["display"], "医師 一郎");
    assert_eq!(k["subject"]["reference"], patient_ref());
    assert_eq!(resources(&c)[0].key, "1318814790.9999013.-.PPR-01.999999999999999.Condition.123456789012345");
}

#[test]
fn omp01_prescriptions() {
    let c = run("OMP-01/");
    let m = of(&c, "MedicationRequest");
    assert_eq!(m.len(), 3);
    assert_eq!(m[0]["medicationCodeableConcept"]["coding"][0]["code"], "108665201");
    assert_eq!(m[0]["medicationCodeableConcept"]["text"], "ダーゼン錠（５mg)");
    assert_eq!(m[0]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"], 1);
    assert_eq!(m[0]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["unit"], "錠");
    assert_eq!(m[0]["dosageInstruction"][0]["timing"]["code"]["coding"][0]["code"], "1013044400000000");
    assert_eq!(m[0]["dosageInstruction"][0]["timing"]["repeat"]["boundsDuration"]["value"], 5);
    assert_eq!(m[0]["dosageInstruction"][0]["text"], "内服・経口・１日３回朝昼夕食後");
    assert_eq!(m[0]["dosageInstruction"][0]["route"]["coding"][0]["code"], "PO");
    assert_eq!(m[0]["dispenseRequest"]["quantity"]["value"], 15);
    assert_eq!(m[0]["authoredOn"], "2011-07-01T10:30:45+09:00");
    assert_eq!(m[0]["requester"]["display"], "医師 一郎");
    assert_eq!(m[2]["medicationCodeableConcept"]["text"], "アレピアチン１０倍散");
    assert_eq!(m[2]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"], 50);
    assert_eq!(m[2]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["code"], "MG");
    assert_eq!(m[2]["dosageInstruction"][0]["timing"]["repeat"]["boundsDuration"]["value"], 14);
    // ORC-4 is the Rp number; the order within the Rp counts the RXEs of that Rp (JP Core
    // `identifier:rpNumber` and `identifier:orderInRp`).
    let ids = |x: &Value, system: &str| -> String {
        let list = x["identifier"].as_array().unwrap();
        list.iter().find(|i| i["system"] == system).unwrap()["value"].as_str().unwrap().to_owned()
    };
    let rp: Vec<String> = m.iter().map(|x| ids(x, RP_NUMBER)).collect();
    assert_eq!(rp, ["1", "1", "2"]);
    let order: Vec<String> = m.iter().map(|x| ids(x, ORDER_IN_RP)).collect();
    assert_eq!(order, ["1", "2", "1"]);
}

#[test]
fn omp02_injection_orders_with_ingredients() {
    let c = run("OMP-02/");
    let m = of(&c, "MedicationRequest");
    assert_eq!(m.len(), 3);
    let ing = &m[0]["contained"][0]["ingredient"];
    assert_eq!(ing[0]["itemCodeableConcept"]["coding"][0]["code"], "620007329");
    assert_eq!(ing[1]["itemCodeableConcept"]["text"], "アドナ注（静脈用）50mg");
    assert_eq!(ing[1]["strength"]["numerator"]["unit"], "アンプル");
    assert_eq!(m[0]["medicationReference"]["reference"], "#medication");
    assert_eq!(m[0]["dosageInstruction"][0]["route"]["coding"][0]["code"], "IV");
    let period = &m[1]["dosageInstruction"][0]["extension"][0]["valuePeriod"];
    assert_eq!(period["start"], "2011-07-01T13:00:00+09:00");
    assert_eq!(period["end"], "2011-07-01T18:00:00+09:00");
}

#[test]
fn omp11_and_omp12_administrations() {
    let c = run("999/901/9999013/20110630/OMP-11/");
    let a = of(&c, "MedicationAdministration");
    assert_eq!(a.len(), 2);
    assert_eq!(a[0]["status"], "completed");
    assert_eq!(a[0]["medicationCodeableConcept"]["coding"][0]["code"], "108665201");
    assert_eq!(a[1]["medicationCodeableConcept"]["text"], "パンスポリンＴ錠（１００mg)");
    assert_eq!(a[1]["dosage"]["dose"]["value"], 2);
    assert_eq!(a[0]["effectivePeriod"]["start"], "2011-07-01T08:30:00+09:00");
    assert_eq!(a[0]["performer"][0]["actor"]["display"], "看護 花子");
    assert_eq!(a[0]["dosage"]["route"]["coding"][0]["code"], "PO");
    // Both RXAs are drugs of Rp 1 (ORC-4), in that order.
    for (i, x) in a.iter().enumerate() {
        let ids = &x["identifier"];
        assert_eq!(ids[1], json!({"system": RP_NUMBER, "value": "1"}));
        assert_eq!(ids[2], json!({"system": ORDER_IN_RP, "value": (i + 1).to_string()}));
    }

    let c = run("OMP-12/");
    let a = of(&c, "MedicationAdministration");
    assert_eq!(a.len(), 2);
    // JP_MedicationAdministration_Injection: the drug as a contained Medication.
    assert_eq!(a[0]["medicationReference"]["reference"], "#medication");
    assert_eq!(a[0]["contained"][0]["code"]["coding"][0]["code"], "620007329");
    assert!(a[0]["contained"][0]["code"]["text"].as_str().unwrap().starts_with("ソリタ"));
    assert!(a[0].get("medicationCodeableConcept").is_none());
    let rp: Vec<(&str, &str)> = a[0]["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["system"].as_str().unwrap(), i["value"].as_str().unwrap()))
        .collect();
    assert!(rp.contains(&(RP_NUMBER, "123456789012345_01_001")), "{rp:?}");
    assert_eq!(a[0]["effectivePeriod"]["end"], "2011-07-01T13:05:43+09:00");
    assert_eq!(a[0]["note"][0]["text"], "左手に実施");
    assert_eq!(a[0]["dosage"]["text"], "投与速度 102ml/hr");
    assert_eq!(a[0]["dosage"]["route"]["coding"][0]["code"], "IV");
}

#[test]
fn the_cancelled_file_is_a_retraction() {
    let c = run("123456789012346_20110701113813226_01_0");
    let Outcome::Retraction(r) = &c.outcome else { panic!("expected a retraction") };
    assert_eq!(r.source_key, "1318814790.0000001.20000401.OMP-11.123456789012346.20110701113813226");
    assert_eq!(r.targets.len(), 3);
    assert!(r.targets.iter().all(|t| t.resource_type == "MedicationAdministration"));
    // The retraction names exactly what the same file would have produced if valid.
    assert_eq!(
        r.targets[0].id,
        musubi_ssmix2::logical_id(
            "MedicationAdministration",
            "1318814790.0000001.20000401.OMP-11.123456789012346.MedicationAdministration.4"
        )
    );
    assert!(c.problems.iter().any(|p| p.kind == ProblemKind::SegmentOrder && p.segment.as_deref() == Some("TQ1")));
}

#[test]
fn oml01_lab_order() {
    let c = run("OML-01/");
    let sr = of(&c, "ServiceRequest");
    assert_eq!(sr.len(), 2);
    assert_eq!(sr[0]["code"]["text"], "生化学的検査");
    assert_eq!(sr[0]["orderDetail"][0]["coding"][0]["code"], "3A010000002327101");
    assert_eq!(sr[0]["orderDetail"][0]["text"], "総蛋白");
    assert_eq!(sr[0]["orderDetail"].as_array().unwrap().len(), 4);
    assert_eq!(sr[1]["orderDetail"].as_array().unwrap().len(), 3);
    let sp = of(&c, "Specimen");
    assert_eq!(sp[0]["type"]["text"], "血清");
    assert_eq!(sp[1]["type"]["text"], "血漿");
    assert_eq!(sr[1]["specimen"][0]["reference"], format!("Specimen/{}", sp[1]["id"].as_str().unwrap()));
}

#[test]
fn oml11_lab_results_with_jlac10() {
    let c = run("OML-11/");
    let obs = of(&c, "Observation");
    assert_eq!(obs.len(), 3);
    assert_eq!(obs[1]["code"]["coding"][0]["system"], "http://medis.or.jp/CodeSystem/master-JLAC10-17digits");
    assert_eq!(obs[1]["code"]["coding"][0]["code"], "3A010000002327101");
    assert_eq!(obs[1]["code"]["text"], "総蛋白");
    assert_eq!(obs[1]["valueQuantity"]["value"], 7.2);
    assert_eq!(obs[1]["valueQuantity"]["unit"], "g/dl");
    assert_eq!(obs[1]["referenceRange"][0]["low"]["value"], 6.7);
    assert_eq!(obs[1]["referenceRange"][0]["high"]["value"], 8.3);
    assert_eq!(obs[1]["effectiveDateTime"], "2011-12-19T15:00:00+09:00");
    assert_eq!(obs[2]["code"]["text"], "アルブミン");
    assert_eq!(obs[2]["valueQuantity"]["value"], 4.9);
    assert_eq!(obs[0]["status"], "final");
    assert!(c.problems.iter().all(|p| p.kind == ProblemKind::PatientMismatch), "{:?}", c.problems);
    let dr = of(&c, "DiagnosticReport")[0];
    assert_eq!(dr["result"].as_array().unwrap().len(), 3);
    assert_eq!(dr["code"]["text"], "血液学的検査");
    assert_eq!(dr["issued"], "2011-12-20T10:30:59+09:00");
    // The categories JP_Observation_LabResult and JP_DiagnosticReport_LabResult fix.
    assert_eq!(
        obs[1]["category"][0]["coding"][0],
        json!({"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS", "code": "laboratory", "display": "検体検査"})
    );
    assert_eq!(dr["category"][0]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(dr["category"][0]["coding"][0]["code"], "LP29693-6");
    assert_eq!(dr["category"][1]["coding"][0]["code"], "LAB");
    // SPM-4 `023^血清^JC10` is the 3-digit JLAC10 material code, not a 17-digit JLAC10 code.
    let sp = of(&c, "Specimen")[0];
    assert_eq!(
        sp["type"]["coding"][0],
        json!({"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationSampleMaterialCode_CS", "code": "023", "display": "血清"})
    );
    assert_eq!(obs[1]["specimen"]["reference"], format!("Specimen/{}", sp["id"].as_str().unwrap()));
}

#[test]
fn omg_orders_studies_and_reports() {
    let c = run("OMG-01/");
    let sr = of(&c, "ServiceRequest");
    assert_eq!(sr.len(), 6);
    assert_eq!(sr[0]["code"]["text"], "Ｘ線単純撮影");
    assert_eq!(sr[2]["code"]["text"], "胸部.Ｘ線単純撮影.立位正面(A→P)");
    assert_eq!(sr[2]["intent"], "instance-order");
    assert_eq!(sr[2]["basedOn"][0]["identifier"]["value"], "1318814790-000201101200100");
    let weight = of(&c, "Observation")[0];
    assert_eq!(weight["valueQuantity"]["value"], 62);
    assert_eq!(sr[1]["supportingInfo"][0]["reference"], format!("Observation/{}", weight["id"].as_str().unwrap()));

    let c = run("OMG-11/");
    let st = of(&c, "ImagingStudy");
    assert_eq!(st.len(), 3);
    assert_eq!(st[0]["identifier"][0]["value"], "urn:oid:1.2.392.1114.20045.43233.5.300001");
    assert_eq!(st[0]["identifier"][1]["value"], "A201112200030001");
    assert_eq!(st[0]["modality"][0]["code"], "US");
    assert_eq!(st[0]["started"], "2011-12-20");
    assert_eq!(st[2]["procedureCode"][0]["text"], "胎児.経皮的超音波検査");

    let c = run("OMG-12/");
    let obs = of(&c, "Observation");
    let doctor = obs.iter().find(|o| o["code"]["coding"][0]["code"] == "DR-02.EM-01").unwrap();
    assert_eq!(doctor["valueString"], "大江戸 信吉");
    let start = obs.iter().find(|o| o["code"]["coding"][0]["code"] == "TM-P1").unwrap();
    assert_eq!(start["valueDateTime"], "2011-11-20T14:45:12+09:00");

    let c = run("OMG-13/");
    let dr = of(&c, "DiagnosticReport")[0];
    assert_eq!(dr["code"]["text"], "標準１２誘導心電図");
    let obs = of(&c, "Observation");
    assert_eq!(obs.len(), 12);
    assert_eq!(obs[0]["valueString"], "心筋虚血疑い");
    assert_eq!(obs[1]["code"]["text"], "心拍数");
    assert_eq!(obs[1]["valueQuantity"]["value"], 67);
    assert_eq!(obs[1]["valueQuantity"]["unit"], "bpm");
    assert_eq!(obs[10]["valueQuantity"]["value"], 2.505);
}

#[test]
fn adt_events_are_encounters() {
    let c = run("ADT-22/");
    let e = of(&c, "Encounter")[0];
    assert_eq!(e["status"], "arrived");
    assert_eq!(e["class"]["code"], "IMP");
    assert_eq!(e["period"]["start"], "2011-11-20T16:00:00+09:00");
    assert_eq!(e["location"][0]["period"]["start"], "2011-11-20T16:00:00+09:00");
    assert_eq!(e["location"][0]["location"]["display"], "病棟 32 病室 302 病床 1");

    let c = run("ADT-42/");
    let e = of(&c, "Encounter")[0];
    assert_eq!(e["status"], "in-progress");
    assert_eq!(e["location"][0]["period"]["start"], "2011-12-20T20:00:00+09:00");
    assert_eq!(e["location"][0]["location"]["display"], "病棟 32 病室 305 病床 1");

    let c = run("ADT-52/");
    let e = of(&c, "Encounter")[0];
    assert_eq!(e["status"], "finished");
    assert_eq!(e["period"]["end"], "2011-12-20T12:00:00+09:00");
    assert_eq!(e["location"][0]["status"], "completed");
    assert_eq!(e["participant"][0]["individual"]["display"], "医師 一郎");
}

#[test]
fn omd_diet_order() {
    let c = run("/OMD/");
    let n = of(&c, "NutritionOrder")[0];
    assert_eq!(n["oralDiet"]["instruction"], "塩分控えめ");
    assert_eq!(n["dateTime"], "2011-10-13T23:22:13+09:00");
}
