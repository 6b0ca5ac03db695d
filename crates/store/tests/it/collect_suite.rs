//! The collection tables (file states, quarantine, blobs, source links, facility use) on every
//! backend: `sqlite` always, `postgres` against `MUSUBI_TEST_POSTGRES` (see suite.rs).

use musubi_fhir::index::extract;
use musubi_fhir::{ResourceType, classify};
use musubi_store::collect::*;
use musubi_store::*;
use serde_json::{Value, json};

const FAC: &str = "1318814790";

fn put(rtype: ResourceType, id: &str, version: i64, expect: Expect, body: Value) -> PutResource {
    let mut body = body;
    body["id"] = json!(id);
    let m = classify::classify(rtype, &body);
    PutResource {
        rtype,
        id: id.into(),
        version,
        expect,
        last_updated: 1_700_000_000_000 + version,
        content: body.to_string(),
        content_hash: musubi_fhir::sha256_hex(body.to_string().as_bytes()),
        meta: StoredMeta {
            facility: Some(FAC.parse().unwrap()),
            submitter: FAC.into(),
            patient_id: if rtype == ResourceType::Patient { Some(id.into()) } else { m.patient },
            person_id: None,
            class: m.class,
            clinical_date: m.clinical_date,
            flags: m.flags,
            retention_end: None,
            keep_last: None,
            item_key: m.item_key,
            bundle_key: None,
        },
        index: extract(rtype, &body),
    }
}

fn patient(name: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"text": name}],
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11318814790", "value": "P001"}]})
}

fn file(path: &str, sha: &str, outcome: FileOutcome) -> FileState {
    FileState {
        facility: FAC.into(),
        kind: SourceKind::Ssmix2,
        path: path.into(),
        size: 120,
        mtime: 1_700_000_000_000,
        sha256: sha.into(),
        outcome,
        resources: 1,
        quarantined: i64::from(outcome != FileOutcome::Landed),
        collected_at: 1_700_000_000_500,
    }
}

fn entry(path: &str, sha: &str, seq: i64, reason: &str) -> QuarantineEntry {
    QuarantineEntry {
        facility: FAC.into(),
        kind: SourceKind::Ssmix2,
        path: path.into(),
        file_sha256: sha.into(),
        seq,
        unit: None,
        line: Some(3),
        segment: Some("PID".into()),
        field: Some(5),
        element: None,
        rule: None,
        reason: reason.into(),
        content: None,
        blob_sha256: Some(sha.into()),
        at: 1_700_000_000_600,
        resolved_at: None,
    }
}

fn link(id: &str, key: &str, at: i64) -> SourceLink {
    SourceLink {
        rtype: ResourceType::Patient,
        id: id.into(),
        facility: FAC.into(),
        kind: SourceKind::Ssmix2,
        source_key: key.into(),
        occurred_at: at,
        path: "a/ADT-00/f".into(),
        file_sha256: "aa".into(),
    }
}

fn run(store: Store) {
    // One chunk: a resource, its source link, the original bytes, a facility-use fact, a
    // quarantined second file and both file states.
    let iso = "MSH|^~\\&|\x1b$B45<T\x1b(B\r".to_owned();
    store
        .commit_collect(CollectBatch {
            writes: vec![WriteBatch {
                puts: vec![put(ResourceType::Patient, "p1", 1, Expect::Absent, patient("患者 太郎"))],
                ..Default::default()
            }],
            recollect: vec![],
            quarantine: vec![entry("b/PPR-01/g", "bb", 0, "PID-5 患者氏名がありません")],
            blobs: vec![
                Blob { sha256: "aa".into(), size: iso.len() as i64, encoding: "text".into(), data: iso.clone() },
                Blob { sha256: "bb".into(), size: 2, encoding: "base64".into(), data: "+/w=".into() },
            ],
            sources: vec![link("p1", "k1", 10)],
            facility_uses: vec![FacilityUseRow {
                facility: FAC.into(),
                patient_id: "p1".into(),
                year_month: "2024-05".into(),
                insurance_id: Some("06139999:12:34:".into()),
                file_sha256: "cc".into(),
            }],
            files: vec![
                file("a/ADT-00/f", "aa", FileOutcome::Landed),
                file("b/PPR-01/g", "bb", FileOutcome::Quarantined),
            ],
            forget: vec![],
        })
        .unwrap();

    let states = store.read(|r| r.collect_files(Some(FAC), SourceKind::Ssmix2)).unwrap();
    assert_eq!(states.len(), 2);
    assert_eq!(states[0].path, "a/ADT-00/f");
    assert_eq!(states[0].outcome, FileOutcome::Landed);
    assert_eq!(states[1].outcome, FileOutcome::Quarantined);
    assert_eq!(states[1].sha256, "bb");
    assert!(store.read(|r| r.collect_files(Some("2712345678"), SourceKind::Ssmix2)).unwrap().is_empty());
    assert!(store.read(|r| r.collect_files(None, SourceKind::Uke)).unwrap().is_empty());
    assert_eq!(store.read(|r| r.collect_file(SourceKind::Ssmix2, "b/PPR-01/g")).unwrap().len(), 1);

    let blob = store.read(|r| r.blob("aa")).unwrap().unwrap();
    assert_eq!(blob.data, iso, "ISO-2022-JP bytes (with ESC) come back exactly");
    assert_eq!(store.read(|r| r.blob("bb")).unwrap().unwrap().encoding, "base64");

    let q = store.read(|r| r.quarantine(&QuarantineQuery::default())).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].reason, "PID-5 患者氏名がありません");
    assert_eq!((q[0].line, q[0].segment.as_deref(), q[0].field), (Some(3), Some("PID"), Some(5)));
    assert_eq!(q[0].resolved_at, None);

    let uses = store.read(|r| r.facility_uses(None, Some("06139999:12:34:"))).unwrap();
    assert_eq!(uses.len(), 1);
    assert_eq!((uses[0].facility.as_str(), uses[0].year_month.as_str()), (FAC, "2024-05"));
    assert_eq!(store.read(|r| r.facility_uses(Some("p1"), None)).unwrap().len(), 1);

    let cur = store.read(|r| r.collect_currents(&[(ResourceType::Patient, "p1".into())])).unwrap();
    assert_eq!(cur.len(), 1);
    assert_eq!(cur[0].version, 1);
    assert_eq!(cur[0].source.as_ref().unwrap().source_key, "k1");
    assert_eq!(cur[0].patient_id.as_deref(), Some("p1"));
    assert!(store.read(|r| r.collect_currents(&[(ResourceType::Patient, "nope".into())])).unwrap().is_empty());
    assert_eq!(store.read(|r| r.sourced_from("k1")).unwrap().len(), 1);

    // A chunk that fails (the create conflicts) writes nothing: no file state, no quarantine,
    // no blob, no source link.
    let err = store
        .commit_collect(CollectBatch {
            writes: vec![WriteBatch {
                puts: vec![put(ResourceType::Patient, "p1", 1, Expect::Absent, patient("患者 次郎"))],
                ..Default::default()
            }],
            quarantine: vec![entry("c/x", "dd", 0, "x")],
            blobs: vec![Blob { sha256: "dd".into(), size: 1, encoding: "text".into(), data: "x".into() }],
            sources: vec![link("p1", "k2", 20)],
            files: vec![file("c/x", "dd", FileOutcome::Partial)],
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert!(store.read(|r| r.collect_file(SourceKind::Ssmix2, "c/x")).unwrap().is_empty());
    assert!(store.read(|r| r.blob("dd")).unwrap().is_none());
    assert_eq!(store.read(|r| r.source_link(ResourceType::Patient, "p1")).unwrap().unwrap().source_key, "k1");
    assert_eq!(store.read(|r| r.quarantine(&QuarantineQuery::default())).unwrap().len(), 1);

    // The fixed file is collected again: its old entry is resolved, the state replaced; a
    // blob already stored is not duplicated; upserts replace (later rows of a key win).
    store
        .commit_collect(CollectBatch {
            recollect: vec![Recollect {
                facility: FAC.into(),
                kind: SourceKind::Ssmix2,
                path: "b/PPR-01/g".into(),
                sha256: "ee".into(),
            }],
            blobs: vec![Blob {
                sha256: "aa".into(),
                size: iso.len() as i64,
                encoding: "text".into(),
                data: iso.clone(),
            }],
            sources: vec![link("p1", "k2", 20), link("p1", "k3", 30)],
            files: vec![file("b/PPR-01/g", "ee", FileOutcome::Landed)],
            ..Default::default()
        })
        .unwrap();
    let open = store.read(|r| r.quarantine(&QuarantineQuery::default())).unwrap();
    assert!(open.is_empty());
    let all = store.read(|r| r.quarantine(&QuarantineQuery { include_resolved: true, ..Default::default() })).unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].resolved_at.is_some());
    let st = store.read(|r| r.collect_file(SourceKind::Ssmix2, "b/PPR-01/g")).unwrap();
    assert_eq!((st[0].sha256.as_str(), st[0].outcome), ("ee", FileOutcome::Landed));
    assert_eq!(store.read(|r| r.source_link(ResourceType::Patient, "p1")).unwrap().unwrap().source_key, "k3");
    let counts: std::collections::HashMap<String, i64> =
        store.read(|r| r.collect_counts()).unwrap().into_iter().collect();
    assert_eq!(counts["blobs"], 2);
    assert_eq!(counts["quarantine.open"], 0);
    assert_eq!(counts["quarantine.resolved"], 1);
    assert_eq!(counts["files.ssmix2.landed"], 2);

    // The same content quarantined again (a forced re-run) replaces its own entries.
    for _ in 0..2 {
        store
            .commit_collect(CollectBatch {
                recollect: vec![Recollect {
                    facility: FAC.into(),
                    kind: SourceKind::Ssmix2,
                    path: "b/PPR-01/g".into(),
                    sha256: "ff".into(),
                }],
                quarantine: vec![entry("b/PPR-01/g", "ff", 0, "again"), entry("b/PPR-01/g", "ff", 1, "twice")],
                files: vec![file("b/PPR-01/g", "ff", FileOutcome::Quarantined)],
                ..Default::default()
            })
            .unwrap();
    }
    let open =
        store.read(|r| r.quarantine(&QuarantineQuery { facility: Some(FAC.into()), ..Default::default() })).unwrap();
    assert_eq!(open.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>(), ["again", "twice"]);
    let resolved = store
        .read(|r| {
            r.quarantine(&QuarantineQuery {
                include_resolved: true,
                kind: Some(SourceKind::Ssmix2),
                ..Default::default()
            })
        })
        .unwrap();
    assert_eq!(resolved.len(), 3);

    // A deletion and a source link committed together (a retraction).
    store
        .commit_collect(CollectBatch {
            writes: vec![WriteBatch {
                deletes: vec![DeleteResource {
                    rtype: ResourceType::Patient,
                    id: "p1".into(),
                    last_updated: 1_700_000_001_000,
                    expect_version: Some(1),
                }],
                ..Default::default()
            }],
            files: vec![file("a/ADT-00/f_0", "gg", FileOutcome::Retracted)],
            ..Default::default()
        })
        .unwrap();
    let cur = store.read(|r| r.collect_currents(&[(ResourceType::Patient, "p1".into())])).unwrap();
    assert!(cur[0].deleted);

    // A file gone from the storage: state forgotten, open entries resolved.
    store
        .commit_collect(CollectBatch {
            forget: vec![Forget { facility: FAC.into(), kind: SourceKind::Ssmix2, path: "b/PPR-01/g".into() }],
            ..Default::default()
        })
        .unwrap();
    assert!(store.read(|r| r.collect_file(SourceKind::Ssmix2, "b/PPR-01/g")).unwrap().is_empty());
    assert!(store.read(|r| r.quarantine(&QuarantineQuery::default())).unwrap().is_empty());
    store
        .commit_collect(CollectBatch {
            files: vec![file("b/PPR-01/g", "ff", FileOutcome::Landed)],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(cur[0].version, 2);

    // Many lookups at once (more than one statement's worth).
    let puts: Vec<PutResource> = (0..1200)
        .map(|i| put(ResourceType::Patient, &format!("m{i}"), 1, Expect::Absent, patient(&format!("患者 {i}"))))
        .collect();
    let sources: Vec<SourceLink> = (0..1200).map(|i| link(&format!("m{i}"), &format!("k{i}"), i)).collect();
    store
        .commit_collect(CollectBatch {
            writes: vec![WriteBatch { puts, ..Default::default() }],
            sources,
            ..Default::default()
        })
        .unwrap();
    let keys: Vec<(ResourceType, String)> = (0..1300).map(|i| (ResourceType::Patient, format!("m{i}"))).collect();
    let cur = store.read(|r| r.collect_currents(&keys)).unwrap();
    assert_eq!(cur.len(), 1200);
    assert!(cur.iter().all(|c| c.source.as_ref().is_some_and(|s| s.id == c.id)));

    // Successive batches in one chunk: created, updated and deleted in one transaction, one
    // version per change.
    let c = store
        .commit_collect(CollectBatch {
            writes: vec![
                WriteBatch {
                    puts: vec![put(ResourceType::Patient, "w1", 1, Expect::Absent, patient("一"))],
                    ..Default::default()
                },
                WriteBatch {
                    puts: vec![put(ResourceType::Patient, "w1", 2, Expect::Version(1), patient("二"))],
                    ..Default::default()
                },
                WriteBatch {
                    deletes: vec![DeleteResource {
                        rtype: ResourceType::Patient,
                        id: "w1".into(),
                        last_updated: 1_700_000_002_000,
                        expect_version: Some(2),
                    }],
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(c.deleted_versions, [Some(3)]);
    let v2 = store.read(|r| r.version(ResourceType::Patient, "w1", Some(2))).unwrap().unwrap();
    assert!(v2.content.unwrap().contains("二"));
}

#[test]
fn sqlite_collect_tables() {
    let dir = tempfile::tempdir().unwrap();
    run(Store::open_sqlite(dir.path()).unwrap());
    // Reopening migrates nothing and keeps the data.
    let store = Store::open_sqlite(dir.path()).unwrap();
    assert_eq!(store.read(|r| r.collect_files(None, SourceKind::Ssmix2)).unwrap().len(), 3);
}

#[test]
fn postgres_collect_tables() {
    let admin = std::env::var("MUSUBI_TEST_POSTGRES").expect(
        "MUSUBI_TEST_POSTGRES is not set: the store suite must also run on PostgreSQL. Run scripts/test, which starts a server and sets it.",
    );
    let name = format!(
        "musubi_collect_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000_000
    );
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("connect to MUSUBI_TEST_POSTGRES");
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').expect("MUSUBI_TEST_POSTGRES must end in /database").0);
    let result = std::panic::catch_unwind(|| {
        run(Store::open_postgres(&url).unwrap());
        let store = Store::open_postgres(&url).unwrap();
        assert_eq!(store.read(|r| r.collect_files(None, SourceKind::Ssmix2)).unwrap().len(), 3);
    });
    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
