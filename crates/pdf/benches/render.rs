//! PDF rendering time of an emergency summary (target ≤ 200 ms): a one-page summary and a
//! long one (several pages), timed over repeated renders; prints p50 / p99 / max.
//!
//! `cargo bench -p musubi-pdf` (add `-- --quick` for fewer rounds).

use std::time::Instant;

use musubi_domain::{Flags, ResourceClass};
use musubi_fhir::ResourceType;
use musubi_pdf::{PdfMeta, render_summary};
use musubi_record::{PersonRecord, RecordEntry};
use serde_json::json;

const NOW: i64 = 1_790_000_000_000;
const DAY: i64 = 86_400_000;

fn record(items: usize) -> PersonRecord {
    let mut entries = vec![RecordEntry {
        rtype: ResourceType::Patient,
        id: "pt".into(),
        version: 1,
        class: ResourceClass::Demographics,
        facility: Some("1312345678".into()),
        facility_name: Some("結びクリニック".into()),
        clinical_date: None,
        flags: Flags::empty(),
        resource: json!({"resourceType": "Patient", "gender": "male", "birthDate": "1948-02-11",
            "name": [{"text": "合成 太郎"}], "address": [{"text": "東京都中央区日本橋1-1"}]})
        .into(),
        derived: Default::default(),
    }];
    for i in 0..items {
        let f = format!("13{:08}", 10_000_000 + (i % 10) as i64);
        let d = Some(NOW - (i as i64 % 90) * DAY);
        let mk = |rtype, class, id: String, resource: serde_json::Value| RecordEntry {
            rtype,
            id,
            version: 1,
            class,
            facility: Some(f.clone()),
            facility_name: Some(format!("合成病院{}", i % 10)),
            clinical_date: d,
            flags: Flags::empty(),
            resource: resource.into(),
            derived: Default::default(),
        };
        entries.push(mk(ResourceType::MedicationRequest, ResourceClass::Prescription, format!("m{i}"),
            json!({"resourceType": "MedicationRequest", "medicationCodeableConcept": {"text": format!("合成薬{i}錠5mg")},
                   "dosageInstruction": [{"timing": {"code": {"text": "1日2回朝夕食後"}}, "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "錠"}}]}]})));
        entries.push(mk(ResourceType::Condition, ResourceClass::Diagnosis, format!("c{i}"),
            json!({"resourceType": "Condition", "code": {"text": format!("合成疾患{i}")}, "clinicalStatus": {"coding": [{"code": "active"}]}})));
        entries.push(mk(ResourceType::AllergyIntolerance, ResourceClass::DrugAllergy, format!("a{i}"),
            json!({"resourceType": "AllergyIntolerance", "category": ["medication"], "criticality": "high", "code": {"text": format!("合成アレルゲン{i}")}})));
    }
    PersonRecord { person_id: "pt".into(), patients: vec!["pt".into()], entries, emergency: None }
}

fn time(label: &str, items: usize, rounds: usize) {
    let s = musubi_record::summary::build(&record(items), "pt", NOW);
    let meta = PdfMeta {
        generated_at: NOW, generated_by: "救急 一郎（医師）".into(), facility: "東京結び病院".into()
    };
    let first = Instant::now();
    let bytes = render_summary(&s, &meta).expect("render");
    let cold = first.elapsed();
    let mut ms: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            let out = render_summary(&s, &meta).expect("render");
            std::hint::black_box(out);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{label:<28} {:>7} bytes  first {:>7.1} ms  p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms  ({rounds} rounds)",
        bytes.len(),
        cold.as_secs_f64() * 1000.0,
        pct(0.5),
        pct(0.99),
        ms[ms.len() - 1]
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 10 } else { 100 };
    time("render_summary/one-page", 4, rounds);
    time("render_summary/long (3+ pages)", 30, rounds);
}
