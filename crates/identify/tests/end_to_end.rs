//! End to end on synthetic data: every generated Patient is read, linked in one batch, and the
//! pairwise F1 against the generator's truth must reach 0.99 (the benchmark reaches ≥ 0.998 on
//! 400,000 records; this small region keeps the test fast).

use std::collections::HashMap;

use musubi_identify::eval::pairwise;
use musubi_identify::{LinkConfig, SourceKey, SourceRecord, link_all};
use musubi_synth::{SynthOptions, persons, region};

#[test]
fn synthetic_region_links_with_high_f1() {
    let opts = SynthOptions::new(3000, 21, std::env::temp_dir().join("identify-e2e-unused"));
    let region = region(opts.seed, opts.persons);
    let mut records = Vec::new();
    let mut truth: HashMap<SourceKey, String> = HashMap::new();
    for p in persons(&region, &opts) {
        for sp in &p.registrations {
            let f = region.facility(sp.facility);
            let patient = musubi_synth::fhir::patient(sp, f, "2025-04-01T09:00:00+09:00");
            let (r, _) = SourceRecord::from_fhir_patient(&patient, &f.code).expect("readable");
            truth.insert(r.key.clone(), p.identity.person_id());
            records.push(r);
        }
    }
    assert!(records.len() > 5000, "{} records", records.len());
    let linkage = link_all(&records, &LinkConfig::default());
    assert_eq!(linkage.assignments.len(), records.len());
    let labels: Vec<(SourceKey, String)> =
        linkage.assignments.iter().map(|(k, p)| (k.clone(), p.to_string())).collect();
    let s = pairwise(labels.iter().map(|(k, p)| (k, p.as_str())), &truth);
    assert_eq!(s.records, records.len() as u64);
    assert!(s.f1 >= 0.99, "F1 {:.4} (precision {:.4}, recall {:.4})", s.f1, s.precision, s.recall);
    assert!(s.precision >= 0.99, "precision {:.4}", s.precision);
    // Deterministic for a given input.
    let again = link_all(&records, &LinkConfig::default());
    assert_eq!(again.assignments, linkage.assignments);
}
