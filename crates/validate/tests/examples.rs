//! Every published valid example is accepted; every published error example is rejected with
//! the rule and element that the example was written to show.

use musubi_validate::{Issue, Severity, Validator};
use serde_json::Value;

fn reference(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reference").join(rel)
}

fn load(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json_files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(reference(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn errors(issues: &[Issue]) -> Vec<&Issue> {
    issues.iter().filter(|i| i.severity == Severity::Error).collect()
}

fn validate(v: &Value) -> Vec<Issue> {
    let val = Validator::shared();
    if v.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
        val.validate_bundle(v)
    } else {
        val.validate_resource(v)
    }
}

#[test]
fn packages_load_cleanly() {
    let v = Validator::shared();
    assert!(v.load_errors().is_empty(), "{:?}", v.load_errors());
    let known: Vec<&str> = v.known_profiles().collect();
    for url in [
        "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Patient_eCS",
        "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient",
        "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_CLINS",
        "http://jpfhir.jp/fhir/eCheckup/StructureDefinition/JP_Bundle_eCheckupGeneral",
    ] {
        assert!(known.contains(&url), "{url} not loaded");
    }
}

#[test]
fn every_valid_example_is_accepted() {
    let mut files = json_files("jp-clins/examples");
    files.retain(|f| !f.to_string_lossy().contains("ErrorExample"));
    files.extend(json_files("jp-core/json-examples"));
    files.push(reference("eCheckup/Bundle-Bundle-eCheckupReport-Sample-01.json"));
    assert!(files.len() > 60, "expected the published examples, found {}", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let issues = validate(&load(f));
        for e in errors(&issues) {
            failures.push(format!(
                "{}: {} [{}] {:?} {}",
                f.file_name().unwrap_or_default().to_string_lossy(),
                e.expression,
                e.code,
                e.rule,
                e.message
            ));
        }
    }
    let mut summary: std::collections::BTreeMap<String, usize> = Default::default();
    for f in &failures {
        *summary
            .entry(
                f.split_once(": ").map_or(f.clone(), |(a, b)| format!("{a}: {}", b.split_once(' ').map_or(b, |x| x.1))),
            )
            .or_default() += 1;
    }
    let lines: Vec<String> = summary.iter().map(|(k, n)| format!("{n} × {k}")).collect();
    assert!(failures.is_empty(), "{} errors on valid examples:\n{}", failures.len(), lines.join("\n"));
}
