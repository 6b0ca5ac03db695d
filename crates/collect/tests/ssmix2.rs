//! The SS-MIX2 collector over the checker's sample storage
//! (reference/ssmix2/SSMIX2DataTestingTool/sampleData), through the service into a real store:
//! every good file's resources land (or, refused by the validator, wait in the quarantine with
//! the element and rule — never dropped), the misplaced file is quarantined with its reason,
//! a second run changes nothing, a fixed file is picked up, cancellations delete only what
//! they wrote, and an interrupted run finished later equals an uninterrupted one.

mod common;

use std::path::Path;

use common::*;
use musubi_collect::{CollectOptions, NoProgress, Summary, collect_ssmix2};
use musubi_domain::FacilityCode;
use musubi_fhir::ResourceType;
use musubi_gate::Actor;
use musubi_service::{Ctx, Service};
use musubi_store::Store;
use musubi_store::collect::{FileOutcome, QuarantineQuery, SourceKind};
use serde_json::Value;

fn facility() -> FacilityCode {
    "1318814790".parse().unwrap()
}

fn sqlite(dir: &Path) -> (Store, Service) {
    let store = Store::open_sqlite(&dir.join("data")).unwrap();
    let service = Service::new(store.clone(), "test");
    (store, service)
}

fn run(service: &Service, root: &Path) -> Summary {
    collect_ssmix2(service, root, facility(), &CollectOptions::default(), &NoProgress).unwrap()
}

fn samples(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("storage");
    copy_tree(Path::new(SAMPLES), &root);
    root
}

fn strip_server_meta(mut v: Value) -> Value {
    if let Some(m) = v.get_mut("meta").and_then(Value::as_object_mut) {
        m.remove("versionId");
        m.remove("lastUpdated");
        if m.is_empty() {
            v.as_object_mut().unwrap().remove("meta");
        }
    }
    v
}

fn find<'a>(resources: &'a [Value], t: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    resources.iter().find(|r| r["resourceType"] == t && pred(r)).unwrap_or_else(|| panic!("no stored {t} matching"))
}

/// Every sample either lands or is quarantined, and nothing a mapper produced is lost.
fn check_samples(store: &Store, service: &Service, root: &Path, s: &Summary) {
    assert_eq!(s.files_seen, 22);
    assert_eq!(s.files_read, 22);
    // The misplaced file has no message; the other 21 are one message each.
    assert_eq!(s.stats.units, 21);

    let open = open_quarantine(service);
    let mut landed_total = 0;
    let mut stored: Vec<Value> = Vec::new();
    for rel in files(root) {
        let bytes = std::fs::read(root.join(&rel)).unwrap();
        let state = store.read(|r| r.collect_file(SourceKind::Ssmix2, &rel)).unwrap();
        assert_eq!(state.len(), 1, "{rel} has no state");
        let state = &state[0];
        assert_eq!(state.sha256, musubi_ssmix2::sha256_hex(&bytes));
        assert_eq!(state.size, bytes.len() as i64);
        // The original bytes are kept, once, under their hash.
        let blob = store.read(|r| r.blob(&state.sha256)).unwrap().unwrap();
        assert_eq!(musubi_collect::source::blob_bytes(&blob).unwrap(), bytes, "{rel}");

        match musubi_ssmix2::collect(facility(), &rel, &bytes) {
            Err(rej) => {
                assert!(rel.contains("/ADT-31/"), "{rel} rejected: {rej}");
                assert_eq!(state.outcome, FileOutcome::Quarantined);
                let e: Vec<_> = open.iter().filter(|e| e.path == rel).collect();
                assert_eq!(e.len(), 1);
                assert_eq!(
                    e[0].reason,
                    "1番目のディレクトリ \"000\" がファイル名の患者ID \"9999013\" と一致しません（患者IDの先頭 3 桁）"
                );
                assert_eq!(e[0].blob_sha256.as_deref(), Some(state.sha256.as_str()));
                assert_eq!(blob.encoding, "base64", "the misplaced file is not even ISO-2022-JP");
            }
            Ok(c) => match c.outcome {
                musubi_ssmix2::Outcome::Retraction(r) => {
                    assert_eq!(state.outcome, FileOutcome::Retracted);
                    // Nothing it names was ever stored, so nothing was deleted.
                    for t in &r.targets {
                        assert!(store.current(t.resource_type.parse().unwrap(), &t.id).unwrap().is_none());
                    }
                }
                musubi_ssmix2::Outcome::Resources(rs) => {
                    let mut landed = 0;
                    for m in rs {
                        let q = open.iter().find(|e| e.unit.as_deref() == Some(m.key.as_str()));
                        match current(store, m.resource_type, &m.id) {
                            Some(got) => {
                                assert!(q.is_none(), "{} both stored and quarantined", m.key);
                                assert_eq!(got["meta"]["versionId"], "1");
                                assert_eq!(strip_server_meta(got.clone()), strip_server_meta(m.resource.clone()));
                                let link = store.read(|r| r.source_link(m.resource_type.parse().unwrap(), &m.id));
                                let link = link.unwrap().unwrap();
                                assert_eq!(link.source_key, c.provenance.source_key);
                                assert_eq!(link.file_sha256, state.sha256);
                                stored.push(got);
                                landed += 1;
                            }
                            None => {
                                // Refused by the validator: in the quarantine with where and why,
                                // and the mapped resource itself.
                                let q = q.unwrap_or_else(|| panic!("{} neither stored nor quarantined", m.key));
                                assert_eq!(q.path, rel);
                                assert_eq!(q.line, Some(m.segment_index as i64 + 1));
                                let content: Value = serde_json::from_str(q.content.as_deref().unwrap()).unwrap();
                                assert_eq!(content, m.resource);
                                if m.resource_type != "NutritionOrder" {
                                    assert!(q.element.is_some() && q.rule.is_some(), "{q:?}");
                                }
                            }
                        }
                    }
                    assert_eq!(state.resources, landed);
                    assert_eq!(
                        state.outcome,
                        if state.quarantined == 0 {
                            FileOutcome::Landed
                        } else if landed == 0 {
                            FileOutcome::Quarantined
                        } else {
                            FileOutcome::Partial
                        }
                    );
                    landed_total += landed;
                }
            },
        }
    }
    assert_eq!(landed_total as u64, s.stats.created);
    assert_eq!(s.stats.quarantined as usize, open.len());

    // Values, as read back from the store.
    let pid = musubi_ssmix2::patient_logical_id(&facility(), "9999013");
    let p = current(store, "Patient", &pid).unwrap();
    assert_eq!(p["name"][0]["text"], "患者 太郎");
    assert_eq!(p["name"][1]["family"], "カンジャ");
    assert_eq!(p["name"][1]["given"][0], "タロウ");
    assert_eq!(p["gender"], "male");
    assert_eq!(p["birthDate"], "1948-04-05");
    assert_eq!(p["identifier"][0]["system"], "urn:oid:1.2.392.100495.20.3.51.11318814790");
    assert_eq!(p["identifier"][0]["value"], "9999013");
    assert_eq!(p["address"][0]["postalCode"], "422-8033");
    let cur = store.current(ResourceType::Patient, &pid).unwrap().unwrap();
    assert_eq!(cur.meta.facility, Some(facility()));
    assert_eq!(cur.meta.submitter, "1318814790");

    let cov = find(&stored, "Coverage", |_| true);
    assert_eq!(cov["payor"][0]["identifier"]["value"], "67999991");
    assert_eq!(cov["type"]["coding"][0]["code"], "67");
    assert_eq!(cov["period"]["start"], "2009-12-01");

    let height = find(&stored, "Observation", |o| o["code"]["text"] == "身長");
    assert_eq!(height["code"]["coding"][0]["code"], "9N001000000000001");
    assert_eq!(height["valueQuantity"]["value"], 167.8);
    assert_eq!(height["valueQuantity"]["unit"], "cm");
    assert_eq!(height["subject"]["reference"], format!("Patient/{pid}"));

    let cond = find(&stored, "Condition", |_| true);
    assert_eq!(cond["code"]["coding"][0]["system"], "http://medis.or.jp/CodeSystem/master-disease-keyNumber");
    assert_eq!(cond["code"]["coding"][0]["code"], "20054174");
    assert_eq!(cond["code"]["coding"][1]["code"], "K297");
    assert_eq!(cond["code"]["text"], "胃炎");
    assert_eq!(cond["onsetDateTime"], "2011-08-31");
    assert_eq!(cond["abatementDateTime"], "2011-09-15");
    assert_eq!(cond["clinicalStatus"]["coding"][0]["code"], "inactive");
    let cond_row = store.current(ResourceType::Condition, cond["id"].as_str().unwrap()).unwrap().unwrap();
    assert_eq!(cond_row.meta.class, musubi_domain::ResourceClass::Diagnosis);
    assert_eq!(cond_row.meta.patient_id.as_deref(), Some(pid.as_str()));

    let pen = find(&stored, "AllergyIntolerance", |a| a["code"]["text"] == "ペニシリン");
    assert_eq!(pen["category"][0], "medication");
    let hot = find(&stored, "AllergyIntolerance", |a| {
        a["code"]["coding"][0]["system"] == "http://medis.or.jp/CodeSystem/master-HOT9"
    });
    assert_eq!(hot["onsetDateTime"], "2007-07-10");

    assert_eq!(stored.iter().filter(|r| r["resourceType"] == "Encounter").count(), 3);
    assert_eq!(stored.iter().filter(|r| r["resourceType"] == "ImagingStudy").count(), 7);

    // Besides the misplaced file, only what is really wrong is quarantined; every other
    // resource the sample hospital's messages map to is valid JP Core.
    let refused: Vec<String> = open
        .iter()
        .filter(|e| !e.path.contains("/ADT-31/"))
        .map(|e| format!("{} {} {:?} {:?} {}", e.path, e.unit.as_deref().unwrap_or(""), e.element, e.rule, e.reason))
        .collect();
    assert_eq!(refused.len(), 2, "refused: {refused:#?}");
    // The checker's deliberately broken message (patient 0000001): after its real segments it
    // lists every segment name with no fields, so its last RXA follows an empty ORC and has
    // no order number and no Rp number.
    let broken = open
        .iter()
        .find(|e| e.path.contains("0000001_20000401_OMP-11_123456789012345"))
        .unwrap_or_else(|| panic!("{refused:#?}"));
    assert_eq!(broken.element.as_deref(), Some("MedicationAdministration.identifier"));
    assert!(broken.rule.as_deref().unwrap().contains("identifier min=2"), "{broken:?}");
    // A diet order (OMD → NutritionOrder) is a resource type the store does not serve yet.
    let diet = open.iter().find(|e| e.path.contains("/OMD/")).unwrap_or_else(|| panic!("{refused:#?}"));
    assert!(diet.reason.contains("NutritionOrder"), "{diet:?}");
    assert_eq!(open.len(), 3);

    // The shapes JP Core fixes, as stored: the Rp number and the order within it (ORC-4),
    // the lab categories, the specimen's JLAC10 material code.
    let rx: Vec<&Value> = stored
        .iter()
        .filter(|r| r["resourceType"] == "MedicationRequest" && r["medicationCodeableConcept"].is_object())
        .collect();
    let ids = |r: &Value| -> Vec<(String, String)> {
        r["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["system"].as_str().unwrap().to_owned(), i["value"].as_str().unwrap().to_owned()))
            .collect()
    };
    let dazen = rx.iter().find(|r| r["medicationCodeableConcept"]["coding"][0]["code"] == "108665201").unwrap();
    let rp = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/Medication-RPGroupNumber".to_owned();
    let in_rp = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicationAdministrationIndex".to_owned();
    assert!(ids(dazen).contains(&(rp.clone(), "1".into())), "{dazen}");
    assert!(ids(dazen).contains(&(in_rp.clone(), "1".into())), "{dazen}");
    let pansporin = rx.iter().find(|r| r["medicationCodeableConcept"]["coding"][0]["code"] == "110626901").unwrap();
    assert!(ids(pansporin).contains(&(rp.clone(), "1".into())), "{pansporin}");
    assert!(ids(pansporin).contains(&(in_rp.clone(), "2".into())), "{pansporin}");
    let tp = find(&stored, "Observation", |o| o["code"]["coding"][0]["code"] == "3A010000002327101");
    assert_eq!(tp["valueQuantity"]["value"], 7.2);
    assert_eq!(tp["category"][0]["coding"][0]["code"], "laboratory");
    let serum = find(&stored, "Specimen", |s| s["type"]["text"] == "血清");
    assert_eq!(serum["type"]["coding"][0]["code"], "023");
    assert_eq!(
        serum["type"]["coding"][0]["system"],
        "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationSampleMaterialCode_CS"
    );

    // Written as the facility's system, with audit records.
    let (seq, _) = store.audit_head().unwrap();
    let audits = store.read(|r| r.audit_page(0, seq + 1)).unwrap();
    let cond_entity = format!("Condition/{}/_history/1", cond["id"].as_str().unwrap());
    let rec: Value = audits
        .iter()
        .map(|a| serde_json::from_str::<Value>(&a.record).unwrap())
        .find(|r| r["entities"].as_array().unwrap().iter().any(|e| e == cond_entity.as_str()))
        .expect("an audit record for the Condition");
    assert_eq!(rec["subtype"], "collect");
    assert_eq!(rec["agent"]["kind"], "system");
    assert_eq!(rec["agent"]["facility"], "1318814790");
    assert_eq!(rec["patient"], pid.as_str());
}

#[test]
fn every_sample_lands_or_is_quarantined_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = samples(dir.path());
    let (store, service) = sqlite(dir.path());
    let s = run(&service, &root);
    check_samples(&store, &service, &root, &s);

    // The gate: the facility's own system reads what was collected, another facility's not.
    let pid = musubi_ssmix2::patient_logical_id(&facility(), "9999013");
    let own = Ctx {
        actor: Actor::System { name: "emr".into(), facility: facility() },
        address: None,
        base_url: String::new(),
    };
    assert!(service.read(&own, ResourceType::Patient, &pid, None).is_ok());
    let other = Ctx {
        actor: Actor::System { name: "emr".into(), facility: "2712345678".parse().unwrap() },
        address: None,
        base_url: String::new(),
    };
    assert!(service.read(&other, ResourceType::Patient, &pid, None).is_err());
    // …nor its quarantine.
    let q = QuarantineQuery { facility: Some("1318814790".into()), ..Default::default() };
    assert!(service.collect_quarantine(&other, q.clone()).is_err());
    assert_eq!(service.collect_quarantine(&own, q).unwrap().len() as u64, s.stats.quarantined);

    // A second run reads nothing and changes nothing.
    let before = snapshot(&store);
    let again = run(&service, &root);
    assert_eq!((again.files_read, again.files_unchanged, again.stats.units), (0, 22, 0));
    assert_eq!(snapshot(&store), before);

    // Touched but identical files (new mtime) are hashed, not collected again.
    let rel = files(&root).into_iter().find(|f| f.contains("/PPR-01/")).unwrap();
    let bytes = std::fs::read(root.join(&rel)).unwrap();
    let before_mtime = std::fs::metadata(root.join(&rel)).unwrap().modified().unwrap();
    std::fs::write(root.join(&rel), &bytes).unwrap();
    // A new mtime set explicitly, not waited for.
    let f = std::fs::File::options().write(true).open(root.join(&rel)).unwrap();
    f.set_modified(before_mtime + std::time::Duration::from_secs(2)).unwrap();
    drop(f);
    let touched = run(&service, &root);
    assert_eq!((touched.files_read, touched.files_unchanged, touched.stats.units), (0, 22, 0));

    // Forced: every file read and decided again; identical results change nothing.
    let forced =
        collect_ssmix2(&service, &root, facility(), &CollectOptions { force: true, ..Default::default() }, &NoProgress)
            .unwrap();
    assert_eq!(forced.files_read, 22);
    assert_eq!((forced.stats.created, forced.stats.updated), (0, 0));
    assert_eq!(forced.stats.unchanged, s.stats.created);
    let mut after = snapshot(&store);
    let mut before = before;
    // Only the touched file's mtime-independent state is compared (sizes and hashes equal).
    after["files"].as_array_mut().unwrap().sort_by_key(|v| v.to_string());
    before["files"].as_array_mut().unwrap().sort_by_key(|v| v.to_string());
    assert_eq!(after, before);
}

#[test]
fn postgres_backend_collects_the_samples_the_same_way() {
    let db = FreshPg::new();
    let dir = tempfile::tempdir().unwrap();
    let root = samples(dir.path());
    let store = Store::open_postgres(&db.url).unwrap();
    let service = Service::new(store.clone(), "test");
    let s = run(&service, &root);
    check_samples(&store, &service, &root, &s);
    let before = snapshot(&store);
    let again = run(&service, &root);
    assert_eq!(again.files_read, 0);
    assert_eq!(snapshot(&store), before);

    // The same as on SQLite.
    let dir2 = tempfile::tempdir().unwrap();
    let (lite, lite_service) = sqlite(dir2.path());
    run(&lite_service, &root);
    let strip = |mut v: Value| {
        // Audit entity lists and source links are the same; quarantine timestamps are excluded
        // by the snapshot already.
        v.as_object_mut().unwrap().remove("files");
        v
    };
    assert_eq!(strip(snapshot(&lite)), strip(snapshot(&store)));
}

/// Replaces `from` by `to` in a file's bytes (ASCII parts of an ISO-2022-JP file).
fn patch(path: &Path, from: &str, to: &str) {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains(from), "{} lacks {from}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

#[test]
fn a_fixed_file_is_picked_up_and_its_entries_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let root = samples(dir.path());
    let (store, service) = sqlite(dir.path());
    let rel = files(&root).into_iter().find(|f| f.contains("/PPR-01/")).unwrap();
    let good = std::fs::read(root.join(&rel)).unwrap();
    patch(&root.join(&rel), "PPR^ZD1^PPR_ZD1", "ADT^A08^ADT_A01");
    run(&service, &root);
    let q: Vec<_> = open_quarantine(&service).into_iter().filter(|e| e.path == rel).collect();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].line, q[0].segment.as_deref(), q[0].field), (Some(1), Some("MSH"), Some(9)));
    assert!(q[0].reason.contains("PPR-01"), "{}", q[0].reason);
    let state = &store.read(|r| r.collect_file(SourceKind::Ssmix2, &rel)).unwrap()[0];
    assert_eq!(state.outcome, FileOutcome::Quarantined);
    assert_eq!(store.read(|r| r.counts()).unwrap().iter().find(|c| c.0 == "Condition"), None);

    // The vendor fixes the file: the next run collects it and resolves the entry.
    std::fs::write(root.join(&rel), &good).unwrap();
    let s = run(&service, &root);
    assert_eq!((s.files_read, s.stats.created), (1, 1));
    assert!(open_quarantine(&service).iter().all(|e| e.path != rel));
    let all = service
        .collect_quarantine(
            &operator(),
            QuarantineQuery { path: Some(rel.clone()), include_resolved: true, ..Default::default() },
        )
        .unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].resolved_at.is_some());
    let state = &store.read(|r| r.collect_file(SourceKind::Ssmix2, &rel)).unwrap()[0];
    assert_eq!(state.outcome, FileOutcome::Landed);
    let cond = store.read(|r| r.sourced_from("1318814790.9999013.-.PPR-01.999999999999999.20111209163030000")).unwrap();
    assert_eq!(cond.len(), 1);
    assert_eq!(current(&store, "Condition", &cond[0].id).unwrap()["code"]["text"], "胃炎");

    // A file that cannot be read (here a dangling link) is quarantined with the reason, and
    // tried again on the next run.
    #[cfg(unix)]
    {
        let link = "999/901/9999013/-/ADT-00/9999013_-_ADT-00_999999999999999_20111221000000000_-_1";
        std::os::unix::fs::symlink(dir.path().join("nowhere"), root.join(link)).unwrap();
        run(&service, &root);
        let q: Vec<_> = open_quarantine(&service).into_iter().filter(|e| e.path == link).collect();
        assert_eq!(q.len(), 1);
        assert!(q[0].reason.starts_with("ファイルを読み込めません"), "{}", q[0].reason);
        let s = run(&service, &root);
        assert_eq!(s.files_read, 1, "tried again");
        assert_eq!(open_quarantine(&service).iter().filter(|e| e.path == link).count(), 1);
        std::fs::remove_file(root.join(link)).unwrap();
    }

    // The misplaced file is moved out of the storage: its entry is resolved, its state dropped.
    let bad = files(&root).into_iter().find(|f| f.contains("/ADT-31/")).unwrap();
    std::fs::rename(root.join(&bad), dir.path().join("moved-away")).unwrap();
    let s = run(&service, &root);
    assert_eq!(s.files_seen, 21);
    assert!(
        open_quarantine(&service).is_empty()
            || open_quarantine(&service).iter().all(|e| !e.path.contains("20111221000000000"))
    );
    assert!(open_quarantine(&service).iter().all(|e| e.path != bad));
    assert!(store.read(|r| r.collect_file(SourceKind::Ssmix2, &bad)).unwrap().is_empty());
}

/// The PPR-01 sample under another 発生日時 and condition flag.
fn ppr_version(root: &Path, occurred: &str, flag: char, onset: Option<&str>) -> String {
    let src = files(Path::new(SAMPLES)).into_iter().find(|f| f.contains("/PPR-01/")).unwrap();
    let mut bytes = std::fs::read(Path::new(SAMPLES).join(&src)).unwrap();
    if let Some(d) = onset {
        let text = String::from_utf8(bytes).unwrap();
        bytes = text.replace("20110831", d).into_bytes();
    }
    let name = format!("9999013_-_PPR-01_999999999999999_{occurred}_01_{flag}");
    let rel = format!("999/901/9999013/-/PPR-01/{name}");
    std::fs::create_dir_all(root.join("999/901/9999013/-/PPR-01")).unwrap();
    std::fs::write(root.join(&rel), bytes).unwrap();
    rel
}

fn condition(store: &Store) -> Option<(i64, Value)> {
    let id =
        musubi_ssmix2::logical_id("Condition", "1318814790.9999013.-.PPR-01.999999999999999.Condition.123456789012345");
    let cur = store.current(ResourceType::Condition, &id).unwrap()?;
    Some((cur.version, current(store, "Condition", &id).unwrap_or(Value::Null)))
}

#[test]
fn cancellations_delete_only_what_they_wrote_and_older_messages_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    let (store, service) = sqlite(dir.path());

    // T1 collected, then the storage marks it cancelled (flag 0): the Condition is deleted.
    let t1 = ppr_version(&root, "20111209163030000", '1', None);
    run(&service, &root);
    assert_eq!(condition(&store).unwrap().0, 1);
    std::fs::remove_file(root.join(&t1)).unwrap();
    let t1_cancelled = ppr_version(&root, "20111209163030000", '0', None);
    let s = run(&service, &root);
    assert_eq!(s.stats.retracted, 1);
    let (v, body) = condition(&store).unwrap();
    assert_eq!((v, body), (2, Value::Null), "deleted as version 2");
    let state = &store.read(|r| r.collect_file(SourceKind::Ssmix2, &t1_cancelled)).unwrap()[0];
    assert_eq!(state.outcome, FileOutcome::Retracted);
    // The old path is forgotten.
    assert!(store.read(|r| r.collect_file(SourceKind::Ssmix2, &t1)).unwrap().is_empty());

    // A newer version T2 comes: created again.
    ppr_version(&root, "20111210090000000", '1', Some("20110801"));
    run(&service, &root);
    let (v, body) = condition(&store).unwrap();
    assert_eq!(v, 3);
    assert_eq!(body["onsetDateTime"], "2011-08-01");

    // An older version found late does not overwrite the newer one…
    let t0 = ppr_version(&root, "20111201000000000", '1', Some("20110701"));
    let s = run(&service, &root);
    assert_eq!((s.stats.superseded, s.stats.created, s.stats.updated), (1, 0, 0));
    assert_eq!(condition(&store).unwrap().0, 3);
    assert_eq!(condition(&store).unwrap().1["onsetDateTime"], "2011-08-01");
    // …and its cancellation does not delete the newer one.
    std::fs::remove_file(root.join(&t0)).unwrap();
    ppr_version(&root, "20111201000000000", '0', Some("20110701"));
    let s = run(&service, &root);
    assert_eq!(s.stats.retracted, 0);
    assert_eq!(condition(&store).unwrap().0, 3);
}

#[test]
fn an_interrupted_run_finished_later_equals_an_uninterrupted_one() {
    // The storage: the samples plus, for the same patient, several versions of PPR-01 and a
    // cancellation, so that the order of changes matters.
    let dir = tempfile::tempdir().unwrap();
    let root = samples(dir.path());
    ppr_version(&root, "20111210090000000", '1', Some("20110801"));
    ppr_version(&root, "20111211090000000", '0', Some("20110802"));
    ppr_version(&root, "20111212090000000", '1', Some("20110803"));
    let opts = CollectOptions { chunk: 3, threads: 2, ..Default::default() };

    let whole = tempfile::tempdir().unwrap();
    let (ws, wsvc) = sqlite(whole.path());
    collect_ssmix2(&wsvc, &root, facility(), &opts, &NoProgress).unwrap();

    // Interrupted after every possible number of committed chunks, then finished.
    for stop_after in 1..8 {
        let part = tempfile::tempdir().unwrap();
        let (ps, psvc) = sqlite(part.path());
        let stopper = StopAfter { chunks: std::sync::atomic::AtomicUsize::new(stop_after) };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            collect_ssmix2(&psvc, &root, facility(), &opts, &stopper)
        }));
        assert!(r.is_err(), "the run was interrupted");
        let done = ps.read(|r| r.collect_files(None, SourceKind::Ssmix2)).unwrap().len();
        assert!(done < 25, "stopped part-way ({done} files)");
        collect_ssmix2(&psvc, &root, facility(), &opts, &NoProgress).unwrap();
        assert_eq!(snapshot(&ps), snapshot(&ws), "interrupted after {stop_after} chunks");
    }
}

/// Panics (like a kill) once `chunks` chunks were committed.
struct StopAfter {
    chunks: std::sync::atomic::AtomicUsize,
}

impl musubi_collect::Progress for StopAfter {
    fn start(&self, _: u64) {}
    fn file(&self, _: u64) {}
    fn committed(&self, _: &musubi_service::collect::CollectStats) {
        if self.chunks.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            panic!("interrupted");
        }
    }
}

#[test]
fn watch_mode_picks_up_new_files_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    std::fs::create_dir_all(&root).unwrap();
    let (store, service) = sqlite(dir.path());
    ppr_version(&root, "20111209163030000", '1', None);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut rounds = Vec::new();
    musubi_collect::watch_ssmix2(
        &service,
        &root,
        facility(),
        &CollectOptions::default(),
        musubi_collect::Watch { interval: std::time::Duration::from_millis(10), stop: &stop },
        &NoProgress,
        |s| {
            rounds.push((s.files_read, s.files_unchanged));
            match rounds.len() {
                // A new version arrives between two rounds.
                2 => {
                    ppr_version(&root, "20111210090000000", '1', Some("20110801"));
                }
                4 => stop.store(true, std::sync::atomic::Ordering::Relaxed),
                _ => {}
            }
        },
    )
    .unwrap();
    assert_eq!(rounds, [(1, 0), (0, 1), (1, 1), (0, 2)]);
    assert_eq!(condition(&store).unwrap().1["onsetDateTime"], "2011-08-01");
}

/// Every `Type/id` reference in a stored resource's JSON.
fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("reference", Value::String(s)) if s.contains('/') && !s.starts_with('#') => out.push(s.clone()),
                    _ => references(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

#[test]
fn keyed_ids_cannot_be_computed_follow_their_references_and_keep_stored_ones() {
    let key = || musubi_service::ids::IdKey::from_bytes([3; 32]);
    // The same files into a store without the key (deterministic ids) and one with it.
    let dir = tempfile::tempdir().unwrap();
    let root = samples(dir.path());
    let (old_store, old_service) = sqlite(&dir.path().join("old"));
    run(&old_service, &root);
    let (store, service) = sqlite(dir.path());
    let service = service.with_id_key(key());
    let s = run(&service, &root);
    assert!(s.stats.created > 0);
    let computed = musubi_ssmix2::patient_logical_id(&facility(), "9999013");
    assert!(common::current(&store, "Patient", &computed).is_none(), "the computed id names a stored Patient");
    assert!(common::current(&store, "Patient", &key().id(&computed)).is_some());
    let snap = snapshot(&store);
    let old = snapshot(&old_store);
    assert_eq!(snap["versions"].as_array().unwrap().len(), old["versions"].as_array().unwrap().len());
    for v in snap["versions"].as_array().unwrap() {
        let id = v[1].as_str().unwrap();
        let version = uuid::Uuid::parse_str(id).map(|u| u.get_version_num()).unwrap_or(0);
        assert_ne!(version, 5, "{} {id} has a computable id", v[0]);
    }
    // Every reference that named a stored resource before names the same one, under its
    // keyed id, now.
    let mut checked = 0;
    for v in old["versions"].as_array().unwrap().iter().filter(|v| v[3] == false) {
        let mut refs = Vec::new();
        references(&v[4], &mut refs);
        for r in refs {
            let (t, rid) = r.split_once('/').unwrap();
            if common::current(&old_store, t, rid).is_some() {
                let keyed_id = key().id(rid);
                assert!(common::current(&store, t, &keyed_id).is_some(), "{r} lost its target");
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
    // A rerun (forced) computes the same ids: nothing changes.
    let forced =
        collect_ssmix2(&service, &root, facility(), &CollectOptions { force: true, ..Default::default() }, &NoProgress)
            .unwrap();
    assert_eq!((forced.stats.created, forced.stats.updated), (0, 0));

    // The store collected before the key existed keeps its ids: with the key, the same files
    // change nothing (no second copy under new ids).
    let keyed = old_service.with_id_key(key());
    let again =
        collect_ssmix2(&keyed, &root, facility(), &CollectOptions { force: true, ..Default::default() }, &NoProgress)
            .unwrap();
    assert_eq!((again.stats.created, again.stats.updated), (0, 0));
    assert_eq!(snapshot(&old_store)["versions"], old["versions"]);
}
