//! A whole generated region — every hospital's SS-MIX2 storage and every facility's UKE files
//! from `musubi_synth` — collected into one store: what a correct vendor sends must land as
//! stored, valid JP Core / JP-CLINS resources. The quarantine is for genuinely bad input only,
//! and the generator makes none, so its share of the resources must stay below 1 %; when it
//! does not, the test prints the quarantine grouped by resource type, element, rule and reason.
//!
//! Regression test for the mappers' profile mistakes found in the first benchmark (84 % of the
//! SS-MIX2 resources and a quarter of the UKE resources quarantined): lab categories,
//! `orderInRp`, the 調剤 dispenses' identifiers, and ids colliding between a facility's 医科 and
//! DPC files of one month. `MUSUBI_TEST_PERSONS` sets the region's size (default 300).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use musubi_collect::{CollectOptions, NoProgress, collect_ssmix2, collect_uke};
use musubi_domain::FacilityCode;
use musubi_fhir::ResourceType;
use musubi_service::Service;
use musubi_service::collect::CollectStats;
use musubi_store::collect::{QuarantineEntry, SourceKind};
use musubi_store::{Scope, Store};
use serde_json::Value;

/// The quarantine grouped by (collector, resource type, element, rule, reason without ids),
/// largest first, one line each with an example path.
fn grouped(entries: &[QuarantineEntry]) -> String {
    // "collector type element [rule] reason" → (count, an example path).
    let mut groups: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for e in entries {
        let rtype = e
            .content
            .as_deref()
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
            .and_then(|v| v.get("resourceType").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| e.segment.clone().unwrap_or_default());
        // Ids and keys differ per entry; the first 60 characters say what kind of problem it is.
        let reason: String = e.reason.chars().take(60).collect();
        let key = format!(
            "{} {rtype} {} [{}] {reason}",
            e.kind.as_str(),
            e.element.as_deref().unwrap_or(""),
            e.rule.as_deref().unwrap_or("")
        );
        groups.entry(key).or_insert_with(|| (0, e.path.clone())).0 += 1;
    }
    let mut v: Vec<_> = groups.into_iter().collect();
    v.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
    v.iter().map(|(k, (n, path))| format!("{n:>7} {k}  (e.g. {path})")).collect::<Vec<_>>().join("\n")
}

fn share(stats: &CollectStats) -> f64 {
    stats.quarantined as f64 / (stats.resources() + stats.quarantined).max(1) as f64
}

#[test]
fn a_generated_region_lands_with_almost_nothing_quarantined() {
    let persons: u64 = std::env::var("MUSUBI_TEST_PERSONS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("synth");
    let mut opts = musubi_synth::SynthOptions::new(persons, 20261122, &data);
    opts.formats = musubi_synth::Formats { fhir: false, ssmix2: true, uke: true, truth: false };
    opts.years = 1;
    let manifest = musubi_synth::generate(&opts, &musubi_synth::NoProgress).unwrap();
    assert!(manifest.ssmix2_files > 50 && manifest.uke_files > 20, "{manifest:?}");

    let store = Store::open_sqlite(&dir.path().join("data")).unwrap();
    let service = Service::new(store.clone(), "test");
    let copts = CollectOptions::default();

    let mut ss = CollectStats::default();
    let mut hospitals: Vec<PathBuf> =
        std::fs::read_dir(data.join("ssmix2")).unwrap().map(|e| e.unwrap().path()).collect();
    hospitals.sort();
    for h in &hospitals {
        let code: FacilityCode = h.file_name().unwrap().to_str().unwrap().parse().unwrap();
        ss.add(&collect_ssmix2(&service, h, code, &copts, &NoProgress).unwrap().stats);
    }
    let uke = collect_uke(&service, &[data.join("uke")], None, &copts, &NoProgress).unwrap().stats;

    let open = open_quarantine(&service);
    let by_kind = |k: SourceKind| open.iter().filter(|e| e.kind == k).cloned().collect::<Vec<_>>();
    let (ss_q, uke_q) = (by_kind(SourceKind::Ssmix2), by_kind(SourceKind::Uke));
    assert_eq!(ss_q.len() as u64, ss.quarantined, "every SS-MIX2 quarantine entry is open");
    assert_eq!(uke_q.len() as u64, uke.quarantined, "every UKE quarantine entry is open");
    eprintln!(
        "SS-MIX2: {} messages, {} resources landed, {} quarantined ({:.3} %)",
        ss.units,
        ss.resources(),
        ss.quarantined,
        100.0 * share(&ss)
    );
    eprintln!(
        "UKE: {} receipts, {} resources landed, {} quarantined ({:.3} %)",
        uke.units,
        uke.resources(),
        uke.quarantined,
        100.0 * share(&uke)
    );
    assert!(share(&ss) < 0.01, "SS-MIX2: {:.2} % quarantined:\n{}", 100.0 * share(&ss), grouped(&ss_q));
    assert!(share(&uke) < 0.01, "UKE: {:.2} % quarantined:\n{}", 100.0 * share(&uke), grouped(&uke_q));
    assert!(ss.units > 50 && ss.resources() > 200, "{ss:?}");
    assert!(uke.units > 100 && uke.resources() > 500, "{uke:?}");

    // No two distinct receipts share an id (a facility's 社保/国保 and 医科/DPC files of a month).
    let collisions: Vec<_> = open.iter().filter(|e| e.reason.contains("衝突")).collect();
    assert!(collisions.is_empty(), "{} id collisions:\n{}", collisions.len(), grouped(&open));

    // What landed is what the profiles describe: the shapes the fixes are about.
    check_landed(&store);
}

/// Up to `n` stored resources of a type, newest first.
fn stored(store: &Store, rtype: ResourceType, n: i64) -> Vec<Value> {
    let (_, rows) = store.read(|r| r.history(Some(rtype), None, None, &Scope::all(), 0, n)).unwrap();
    rows.into_iter().filter_map(|(v, _)| v.content.map(|c| serde_json::from_str(&c).unwrap())).collect()
}

fn profile_of(r: &Value) -> &str {
    r["meta"]["profile"][0].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default()
}

fn systems(ids: &Value) -> Vec<(&str, &str)> {
    ids.as_array()
        .map(|a| a.iter().map(|i| (i["system"].as_str().unwrap_or(""), i["value"].as_str().unwrap_or(""))).collect())
        .unwrap_or_default()
}

const RP: &str = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/Medication-RPGroupNumber";
const IN_RP: &str = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicationAdministrationIndex";

fn check_landed(store: &Store) {
    let obs = stored(store, ResourceType::Observation, 5000);
    let lab: Vec<&Value> = obs.iter().filter(|o| profile_of(o) == "JP_Observation_LabResult").collect();
    assert!(!lab.is_empty(), "no lab Observation stored");
    for o in &lab {
        let cat = &o["category"][0]["coding"][0];
        assert_eq!(cat["system"], "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS");
        assert_eq!(cat["code"], "laboratory");
        assert_eq!(o["code"]["coding"][0]["system"], "http://medis.or.jp/CodeSystem/master-JLAC10-17digits");
        assert_eq!(o["code"]["coding"][0]["code"].as_str().unwrap().len(), 17, "{o}");
        assert!(o["specimen"]["reference"].as_str().unwrap().starts_with("Specimen/"), "{o}");
    }

    let reports = stored(store, ResourceType::DiagnosticReport, 500);
    let lab_reports: Vec<&Value> =
        reports.iter().filter(|r| profile_of(r) == "JP_DiagnosticReport_LabResult").collect();
    assert!(!lab_reports.is_empty(), "no lab DiagnosticReport stored");
    for r in &lab_reports {
        assert_eq!(r["category"][0]["coding"][0]["system"], "http://loinc.org");
        assert_eq!(r["category"][0]["coding"][0]["code"], "LP29693-6");
        assert!(!r["result"].as_array().unwrap().is_empty());
    }

    let specimens = stored(store, ResourceType::Specimen, 500);
    assert!(!specimens.is_empty(), "no Specimen stored");
    for sp in &specimens {
        let t = &sp["type"]["coding"][0];
        // The synthetic hospitals send serum (JLAC10 material 023).
        assert_eq!(t["system"], "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationSampleMaterialCode_CS");
        assert_eq!(t["code"], "023");
        assert_eq!(t["display"], "血清");
    }

    let requests = stored(store, ResourceType::MedicationRequest, 2000);
    let oral: Vec<&Value> = requests.iter().filter(|m| profile_of(m) == "JP_MedicationRequest").collect();
    assert!(!oral.is_empty(), "no MedicationRequest stored");
    for m in &oral {
        let ids = systems(&m["identifier"]);
        let rp = ids.iter().find(|(s, _)| *s == RP).unwrap_or_else(|| panic!("no rpNumber: {m}"));
        assert!(rp.1.parse::<u32>().is_ok(), "{m}");
        // The generator writes one drug per Rp: each is the first of its Rp.
        assert!(ids.contains(&(IN_RP, "1")), "{m}");
    }

    let dispenses = stored(store, ResourceType::MedicationDispense, 2000);
    assert!(!dispenses.is_empty(), "no MedicationDispense stored");
    for d in &dispenses {
        let ids = systems(&d["identifier"]);
        let rp = ids.iter().find(|(s, _)| *s == RP).unwrap_or_else(|| panic!("no rpNumber: {d}"));
        assert_eq!(rp.1.len(), 2, "SH 処方No is two digits: {d}");
        assert!(ids.contains(&(IN_RP, "1")), "{d}");
        assert!(d["whenHandedOver"].as_str().unwrap().len() == 10, "{d}");
    }
}
