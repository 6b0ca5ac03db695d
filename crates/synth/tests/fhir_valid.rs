//! Every FHIR Bundle of a small run passes Musubi's own validator without an Error issue.

use std::collections::BTreeMap;

use musubi_synth::{Formats, NoProgress, SynthOptions, generate};

#[test]
fn every_generated_bundle_passes_the_validator() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SynthOptions::new(400, 11, dir.path());
    opts.formats = Formats { fhir: true, ssmix2: false, uke: false, truth: false };
    let m = generate(&opts, &NoProgress).unwrap();
    assert!(m.fhir_collection_bundles > 50, "{m:?}");
    assert!(m.fhir_referral_bundles > 0 && m.fhir_discharge_summaries > 0 && m.fhir_checkup_bundles > 0, "{m:?}");
    let v = musubi_validate::Validator::shared();
    let mut failures: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut bundles = 0;
    for entry in std::fs::read_dir(dir.path().join("fhir")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let bundle: serde_json::Value = serde_json::from_str(line).unwrap();
            bundles += 1;
            for issue in v.validate_bundle(&bundle) {
                if issue.severity == musubi_validate::Severity::Error {
                    let key = format!("{} {}", issue.rule.clone().unwrap_or_default(), issue.message);
                    let e = failures.entry(key).or_insert((0, issue.expression.clone()));
                    e.0 += 1;
                }
            }
        }
    }
    assert!(bundles > 100);
    assert!(failures.is_empty(), "validator errors (count, first path):\n{failures:#?}");
}
