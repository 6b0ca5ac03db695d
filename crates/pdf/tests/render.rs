//! Renders synthetic summaries and reads the PDFs back with `pdftotext` (Debian's
//! poppler-utils): the patient's kanji name, the allergies and the medication are in the text,
//! and every page carries the identity line and its page number.

use std::process::Command;

use musubi_domain::{Flags, ResourceClass};
use musubi_fhir::ResourceType;
use musubi_pdf::{PdfMeta, render_summary};
use musubi_record::{PersonRecord, RecordEntry};
use serde_json::{Value, json};

const NOW: i64 = 1_790_000_000_000; // 2026-09-21 (JST)
const DAY: i64 = 86_400_000;

fn entry(rtype: ResourceType, class: ResourceClass, id: &str, facility: &str, days_ago: i64, r: Value) -> RecordEntry {
    RecordEntry {
        rtype,
        id: id.into(),
        version: 1,
        class,
        facility: Some(facility.into()),
        facility_name: Some(format!("結び病院{}", &facility[6..])),
        clinical_date: Some(NOW - days_ago * DAY),
        flags: Flags::empty(),
        resource: r.into(),
        derived: Default::default(),
    }
}

fn record(meds: usize, emergency: bool) -> PersonRecord {
    let mut entries = vec![entry(
        ResourceType::Patient,
        ResourceClass::Demographics,
        "pt1",
        "1312345678",
        900,
        json!({"resourceType": "Patient", "gender": "female", "birthDate": "1970-05-05",
            "identifier": [{"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID", "value": "06139999:１:２:01"}],
            "name": [{"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "IDE"}], "text": "結 花子"},
                     {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}], "text": "ムスビ ハナコ"}],
            "address": [{"text": "東京都千代田区丸の内1-1"}]}),
    )];
    entries.push(entry(
        ResourceType::AllergyIntolerance,
        ResourceClass::DrugAllergy,
        "al1",
        "1312345678",
        300,
        json!({"resourceType": "AllergyIntolerance", "category": ["medication"], "criticality": "high",
               "code": {"text": "ペニシリン系抗菌薬"}, "reaction": [{"manifestation": [{"text": "アナフィラキシー"}]}]}),
    ));
    entries.push(entry(
        ResourceType::AllergyIntolerance,
        ResourceClass::OtherAllergy,
        "al2",
        "1318814790",
        200,
        json!({"resourceType": "AllergyIntolerance", "category": ["food"], "criticality": "low", "code": {"text": "そば"}}),
    ));
    let drugs = ["ワルファリンK錠1mg", "アムロジピン錠5mg", "メトホルミン塩酸塩錠250mg", "ランソプラゾールOD錠15mg"];
    for i in 0..meds {
        let name = match drugs.get(i) {
            Some(d) => (*d).to_owned(),
            None => format!("合成薬剤{i}錠10mg"),
        };
        entries.push(entry(
            ResourceType::MedicationRequest,
            ResourceClass::Prescription,
            &format!("mr{i}"),
            "1318814790",
            (i % 90) as i64,
            json!({"resourceType": "MedicationRequest", "status": "completed", "medicationCodeableConcept": {"text": name},
                   "dosageInstruction": [{"timing": {"code": {"text": "1日1回朝食後"}}, "route": {"text": "内服"},
                                           "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "錠"}}]}],
                   "dispenseRequest": {"expectedSupplyDuration": {"value": 28, "unit": "日"}}}),
        ));
    }
    entries.push(entry(
        ResourceType::Observation,
        ResourceClass::Lab,
        "k1",
        "1318814790",
        3,
        json!({"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "code": "3H015000002327201"}]},
               "valueQuantity": {"value": 6.1, "unit": "mmol/L"}, "referenceRange": [{"low": {"value": 3.5}, "high": {"value": 5.0}}]}),
    ));
    PersonRecord {
        person_id: "pt1".into(),
        patients: vec!["pt1".into()],
        entries,
        emergency: emergency.then(|| "意識障害で救急搬送、本人確認不能".to_owned()),
    }
}

fn meta() -> PdfMeta {
    PdfMeta {
        generated_at: NOW, generated_by: "救急 一郎（医師）".into(), facility: "東京結び病院".into()
    }
}

/// The text of each page of a PDF, by `pdftotext -layout`.
fn pages_text(pdf: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = match Command::new("pdftotext").arg("-layout").arg(&path).arg("-").output() {
        Ok(o) => o,
        Err(e) => panic!(
            "pdftotext is needed to check the PDF's text ({e}); install Debian's poppler-utils: apt-get install poppler-utils"
        ),
    };
    assert!(out.status.success(), "pdftotext failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    // Layout mode turns spacing (and full-width spaces) into runs of spaces: compare with
    // single spaces.
    text.split('\u{c}').filter(|p| !p.trim().is_empty()).map(norm).collect()
}

fn norm(s: &str) -> String {
    s.replace('\u{3000}', " ").split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

#[test]
fn one_page_summary_has_name_allergies_medication_and_the_page_number() {
    let s = musubi_record::summary::build(&record(3, false), "pt1", NOW);
    let pdf = render_summary(&s, &meta()).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let pages = pages_text(&pdf);
    assert_eq!(pages.len(), 1, "{pages:?}");
    let p = &pages[0];
    for needle in [
        "救急用サマリ",
        "結 花子",
        "ムスビ ハナコ",
        "1970-05-05",
        "ペニシリン系抗菌薬",
        "アナフィラキシー",
        "そば",
        "ワルファリンK錠1mg",
        "アムロジピン錠5mg",
        "カリウム",
        "6.1 mmol/L",
        "ページ 1 / 1",
        "救急 一郎（医師）",
        "東京結び病院",
        "2026-09-21",
        "記録なし",
    ] {
        assert!(p.contains(&norm(needle)), "{needle:?} missing from:\n{p}");
    }
    // Drug allergies come before food allergies.
    assert!(p.find("ペニシリン系抗菌薬").unwrap() < p.find("そば").unwrap());
}

#[test]
fn every_page_has_the_identity_line_and_its_number() {
    let s = musubi_record::summary::build(&record(29, true), "pt1", NOW);
    let pdf = render_summary(&s, &meta()).unwrap();
    let pages = pages_text(&pdf);
    assert!(pages.len() >= 2, "expected several pages, got {}", pages.len());
    let n = pages.len();
    for (i, p) in pages.iter().enumerate() {
        assert!(p.contains("患者 結 花子（ムスビ ハナコ） 女性 1970-05-05 生"), "page {}:\n{p}", i + 1);
        assert!(p.contains(&format!("ページ {} / {n}", i + 1)), "page {}:\n{p}", i + 1);
        assert!(p.contains("作成者 救急 一郎（医師）"), "page {}", i + 1);
    }
    assert!(pages[0].contains("緊急時アクセス（ブレークグラス）"));
    assert!(pages.concat().contains("合成薬剤28錠10mg"));
}

#[test]
fn the_font_is_embedded_as_a_subset() {
    let s = musubi_record::summary::build(&record(2, false), "pt1", NOW);
    let pdf = render_summary(&s, &meta()).unwrap();
    // A subset: far smaller than the 6 MB font file, and the font is named with a subset tag.
    assert!(pdf.len() < 400_000, "{} bytes", pdf.len());
    let text = String::from_utf8_lossy(&pdf);
    assert!(text.contains("IPAexGothic"), "font name not found");
    assert!(text.contains("/FontFile2"), "TrueType font not embedded");
}
