//! Writes a synthetic emergency summary PDF (for looking at the layout):
//! `cargo run -p musubi-pdf --example sample_summary -- out.pdf`.

use musubi_domain::{Flags, ResourceClass};
use musubi_fhir::ResourceType;
use musubi_record::{PersonRecord, RecordEntry};
use serde_json::{Value, json};

fn e(rtype: ResourceType, class: ResourceClass, id: &str, f: &str, name: &str, days: i64, r: Value) -> RecordEntry {
    let now = 1_790_000_000_000i64;
    RecordEntry {
        rtype,
        id: id.into(),
        version: 1,
        class,
        facility: Some(f.into()),
        facility_name: Some(name.into()),
        clinical_date: Some(now - days * 86_400_000),
        flags: Flags::empty(),
        resource: r.into(),
        derived: Default::default(),
    }
}

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "summary.pdf".into());
    let jlac = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits";
    let lab = |id: &str, code: &str, v: f64, unit: &str, days: i64, lo: f64, hi: f64| {
        e(
            ResourceType::Observation,
            ResourceClass::Lab,
            id,
            "1318814790",
            "東京結び病院",
            days,
            json!({"resourceType": "Observation", "code": {"coding": [{"system": jlac, "code": code}]},
                 "valueQuantity": {"value": v, "unit": unit}, "referenceRange": [{"low": {"value": lo}, "high": {"value": hi}}]}),
        )
    };
    let entries = vec![
        e(
            ResourceType::Patient,
            ResourceClass::Demographics,
            "pt",
            "1312345678",
            "結びクリニック",
            900,
            json!({"resourceType": "Patient", "gender": "female", "birthDate": "1950-05-05", "name": [{"text": "結 花子"}, {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}], "text": "ムスビ ハナコ"}],
                 "identifier": [{"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID", "value": "06139999:１:２:01"}],
                 "address": [{"text": "東京都千代田区丸の内1-1"}], "telecom": [{"system": "phone", "value": "03-0000-0001"}]}),
        ),
        e(
            ResourceType::AllergyIntolerance,
            ResourceClass::DrugAllergy,
            "a1",
            "1312345678",
            "結びクリニック",
            400,
            json!({"resourceType": "AllergyIntolerance", "category": ["medication"], "criticality": "high", "code": {"text": "ペニシリン系抗菌薬"}, "reaction": [{"manifestation": [{"text": "アナフィラキシー"}]}]}),
        ),
        e(
            ResourceType::AllergyIntolerance,
            ResourceClass::OtherAllergy,
            "a2",
            "1318814790",
            "東京結び病院",
            100,
            json!({"resourceType": "AllergyIntolerance", "category": ["food"], "criticality": "low", "code": {"text": "そば"}}),
        ),
        e(
            ResourceType::Observation,
            ResourceClass::Infection,
            "i1",
            "1318814790",
            "東京結び病院",
            200,
            json!({"resourceType": "Observation", "code": {"coding": [{"system": jlac, "code": "5F016141002399511"}]}, "valueString": "陰性"}),
        ),
        e(
            ResourceType::MedicationRequest,
            ResourceClass::Prescription,
            "m1",
            "1318814790",
            "東京結び病院",
            12,
            json!({"resourceType": "MedicationRequest", "medicationCodeableConcept": {"text": "ワルファリンK錠1mg"},
                 "dosageInstruction": [{"timing": {"code": {"text": "1日1回朝食後"}}, "route": {"text": "内服"}, "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "錠"}}]}],
                 "dispenseRequest": {"expectedSupplyDuration": {"value": 28, "unit": "日"}}}),
        ),
        e(
            ResourceType::Condition,
            ResourceClass::Diagnosis,
            "c1",
            "1312345678",
            "結びクリニック",
            700,
            json!({"resourceType": "Condition", "code": {"text": "心房細動"}, "clinicalStatus": {"coding": [{"code": "active"}]}, "onsetDateTime": "2024-01-10"}),
        ),
        lab("k1", "3H015000002327201", 5.8, "mmol/L", 3, 3.5, 5.0),
        lab("k0", "3H015000002327201", 4.4, "mmol/L", 60, 3.5, 5.0),
        lab("inr", "2B030000002231157", 3.4, "", 3, 0.9, 1.1),
        lab("hb", "2A030000001930901", 10.1, "g/dL", 3, 11.6, 14.8),
        e(
            ResourceType::Encounter,
            ResourceClass::Encounter,
            "en1",
            "1318814790",
            "東京結び病院",
            150,
            json!({"resourceType": "Encounter", "class": {"code": "IMP"}, "period": {"start": "2026-04-20", "end": "2026-05-01"}, "reasonCode": [{"text": "脳梗塞"}],
                 "contained": [{"resourceType": "Practitioner", "id": "d", "name": [{"text": "山田 太郎"}]}]}),
        ),
    ];
    let rec = PersonRecord {
        person_id: "pt".into(),
        patients: vec!["pt".into()],
        entries,
        emergency: Some("意識障害で救急搬送".into()),
    };
    let s = musubi_record::summary::build(&rec, "pt", 1_790_000_000_000);
    let meta = musubi_pdf::PdfMeta {
        generated_at: 1_790_000_000_000,
        generated_by: "救急 一郎（医師）".into(),
        facility: "横浜結び病院".into(),
    };
    match musubi_pdf::render_summary(&s, &meta) {
        Ok(pdf) => {
            if let Err(e) = std::fs::write(&out, pdf) {
                eprintln!("{out}: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
