//! Throughput of the validator on published JP-CLINS examples.

use criterion::{Criterion, criterion_group, criterion_main};
use musubi_validate::Validator;
use serde_json::Value;

fn load(rel: &str) -> Value {
    let path = format!("{}/../../reference/{rel}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bench(c: &mut Criterion) {
    let v = Validator::shared();
    for (name, rel) in [
        ("patient", "jp-clins/examples/Patient-Example-JP-Patient-eCS-MAKINO.json"),
        ("condition", "jp-clins/examples/Condition-Example-JP-Condition-eCS-01.json"),
        ("allergy", "jp-clins/examples/AllergyIntolerance-Example-JP-AllergyIntolerance-eCS-01.json"),
        ("observation_lab", "jp-clins/examples/Observation-Example-JP-Obs-LabResult-eCS-Alb.json"),
        ("medication_request", "jp-clins/examples/MedicationRequest-Example-JP-MedReq-PO-SID-28days.json"),
    ] {
        let r = load(rel);
        c.bench_function(&format!("validate_resource/{name}"), |b| {
            b.iter(|| v.validate_resource(std::hint::black_box(&r)))
        });
    }
    let bundle = load("jp-clins/examples/Bundle-Bundle-CLINS-Observations-Example-01.json");
    c.bench_function("validate_bundle/5info_observations", |b| {
        b.iter(|| v.validate_bundle(std::hint::black_box(&bundle)))
    });
    let referral = load("jp-clins/examples/Bundle-Bundle-CLINS-Referral-Example-01.json");
    c.bench_function("validate_bundle/referral_document", |b| {
        b.iter(|| v.validate_bundle(std::hint::black_box(&referral)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
