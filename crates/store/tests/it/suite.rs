//! The store test suite. Every backend must pass the same checks: `sqlite` always, `postgres`
//! against the server named by `MUSUBI_TEST_POSTGRES` (a URL to a database where the test may
//! create and drop databases; `scripts/test` starts one and sets it).

use std::collections::HashSet;

use musubi_domain::audit::{AuditAction, AuditAgent, AuditOutcome, AuditPurpose, AuditRecord};
use musubi_domain::{Flags, ResourceClass};
use musubi_fhir::datetime::parse_range;
use musubi_fhir::index::extract;
use musubi_fhir::{ResourceType, classify};
use musubi_store::mpi::MpiWrite;
use musubi_store::*;
use serde_json::{Value, json};

fn audit(i: usize, patient: Option<&str>) -> AuditRecord {
    AuditRecord {
        recorded: 1_700_000_000_000 + i as i64,
        action: AuditAction::Read,
        subtype: "read".into(),
        outcome: AuditOutcome::Success,
        outcome_text: None,
        agent: AuditAgent {
            kind: "system".into(),
            name: format!("agent-{}", i % 3),
            facility: Some("1318814790".into()),
            profession: None,
            address: None,
        },
        purpose: AuditPurpose::Treatment,
        patient: patient.map(str::to_owned),
        person: None,
        entities: vec![format!("Observation/{i}")],
        query: None,
        source: "suite".into(),
    }
}

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
            facility: m.facility,
            submitter: "test".into(),
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

fn obs(patient: &str, code: &str, date: &str, facility: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "extension": [{"url": musubi_domain::systems::EXT_INSTITUTION_NUMBER, "valueIdentifier": {"value": facility}}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": date
    })
}

fn q(rtype: ResourceType, filters: Vec<Filter>) -> SearchQuery {
    SearchQuery { rtype, filters, scope: Scope::default(), sort: Sort::DateDesc }
}

fn ids(rows: &[CurrentRow]) -> Vec<String> {
    rows.iter().map(|r| r.id.clone()).collect()
}

fn run_suite(store: Store) {
    // Create, read.
    let patient = json!({"resourceType": "Patient", "name": [{"text": "山田 太郎"}], "gender": "male", "birthDate": "1960-04-01",
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11318814790", "value": "P001"}]});
    store
        .commit(WriteBatch {
            puts: vec![put(ResourceType::Patient, "p1", 1, Expect::Absent, patient.clone())],
            ..Default::default()
        })
        .unwrap();
    let cur = store.current(ResourceType::Patient, "p1").unwrap().unwrap();
    assert_eq!(cur.version, 1);
    assert_eq!(cur.meta.class, ResourceClass::Demographics);
    assert_eq!(cur.meta.facility.unwrap().as_str(), "1318814790");
    let content = store.read(|r| r.version(ResourceType::Patient, "p1", None)).unwrap().unwrap();
    let back: Value = serde_json::from_str(content.content.as_deref().unwrap()).unwrap();
    assert_eq!(back["name"][0]["text"], "山田 太郎");

    // A second create of the same id is refused, and nothing of its batch lands (not even audit).
    let head_before = store.audit_head().unwrap();
    let err = store
        .commit(WriteBatch {
            puts: vec![put(ResourceType::Patient, "p1", 1, Expect::Absent, patient.clone())],
            audit: vec![audit(0, Some("p1"))],
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert_eq!(store.audit_head().unwrap(), head_before);

    // Update with the right version; a stale version conflicts.
    let mut p2 = patient.clone();
    p2["gender"] = json!("female");
    store
        .commit(WriteBatch {
            puts: vec![put(ResourceType::Patient, "p1", 2, Expect::Version(1), p2.clone())],
            ..Default::default()
        })
        .unwrap();
    let err = store
        .commit(WriteBatch {
            puts: vec![put(ResourceType::Patient, "p1", 2, Expect::Version(1), p2)],
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let found = store
        .read(|r| {
            r.search_rows(
                &q(
                    ResourceType::Patient,
                    vec![Filter::Token {
                        param: "gender",
                        any: vec![TokenMatch::Code("female".into())],
                        negate: false,
                    }],
                ),
                0,
                None,
            )
        })
        .unwrap();
    assert_eq!(ids(&found), vec!["p1"]);
    let none = store
        .read(|r| {
            r.search_rows(
                &q(
                    ResourceType::Patient,
                    vec![Filter::Token { param: "gender", any: vec![TokenMatch::Code("male".into())], negate: false }],
                ),
                0,
                None,
            )
        })
        .unwrap();
    assert!(none.is_empty(), "old index values must be gone after an update");

    // Observations for search.
    let puts = vec![
        put(
            ResourceType::Observation,
            "o1",
            1,
            Expect::Absent,
            obs("p1", "3D046000001920402", "2024-01-10T09:00:00+09:00", "1318814790"),
        ),
        put(
            ResourceType::Observation,
            "o2",
            1,
            Expect::Absent,
            obs("p1", "3D046000001920402", "2024-03-10T09:00:00+09:00", "1318814790"),
        ),
        put(
            ResourceType::Observation,
            "o3",
            1,
            Expect::Absent,
            obs("p1", "3C025000002327101", "2024-02-10T09:00:00+09:00", "2712345678"),
        ),
        put(
            ResourceType::Observation,
            "o4",
            1,
            Expect::Absent,
            obs("p2", "3D046000001920402", "2023-12-31T23:59:59+09:00", "1318814790"),
        ),
    ];
    store.commit(WriteBatch { puts, audit: vec![audit(1, Some("p1"))], ..Default::default() }).unwrap();

    let by_patient = store
        .read(|r| r.search_rows(&q(ResourceType::Observation, vec![Filter::Patient(vec!["p1".into()])]), 0, None))
        .unwrap();
    assert_eq!(ids(&by_patient), vec!["o2", "o3", "o1"], "newest clinical date first");
    let code = Filter::Token {
        param: "code",
        any: vec![TokenMatch::SystemCode(
            "http://medis.or.jp/CodeSystem/master-JLAC10-17digits".into(),
            "3D046000001920402".into(),
        )],
        negate: false,
    };
    let hba1c = store.read(|r| r.search_rows(&q(ResourceType::Observation, vec![code.clone()]), 0, None)).unwrap();
    assert_eq!(ids(&hba1c), vec!["o2", "o1", "o4"]);
    let not_hba1c = store
        .read(|r| {
            r.search_rows(
                &q(
                    ResourceType::Observation,
                    vec![Filter::Token {
                        param: "code",
                        any: vec![TokenMatch::Code("3D046000001920402".into())],
                        negate: true,
                    }],
                ),
                0,
                None,
            )
        })
        .unwrap();
    assert_eq!(ids(&not_hba1c), vec!["o3"]);
    let date =
        |prefix, v: &str| Filter::Date { param: "date", pred: DatePred { prefix, range: parse_range(v).unwrap() } };
    let ge = store
        .read(|r| r.search_rows(&q(ResourceType::Observation, vec![date(DatePrefix::Ge, "2024-02-10")]), 0, None))
        .unwrap();
    assert_eq!(ids(&ge), vec!["o2", "o3"]);
    let lt = store
        .read(|r| r.search_rows(&q(ResourceType::Observation, vec![date(DatePrefix::Lt, "2024-01")]), 0, None))
        .unwrap();
    assert_eq!(ids(&lt), vec!["o4"]);
    let eq = store
        .read(|r| r.search_rows(&q(ResourceType::Observation, vec![date(DatePrefix::Eq, "2024-01")]), 0, None))
        .unwrap();
    assert_eq!(ids(&eq), vec!["o1"]);
    let ne = store
        .read(|r| r.search_rows(&q(ResourceType::Observation, vec![date(DatePrefix::Ne, "2024")]), 0, None))
        .unwrap();
    assert_eq!(ids(&ne), vec!["o4"]);
    let subject = store
        .read(|r| {
            r.search_rows(
                &q(ResourceType::Observation, vec![Filter::Ref { param: "subject", any: vec!["Patient/p2".into()] }]),
                0,
                None,
            )
        })
        .unwrap();
    assert_eq!(ids(&subject), vec!["o4"]);
    let by_id = store
        .read(|r| {
            r.search_rows(&q(ResourceType::Observation, vec![Filter::Id(vec!["o3".into(), "o9".into()])]), 0, None)
        })
        .unwrap();
    assert_eq!(ids(&by_id), vec!["o3"]);

    // Scope (the gate's narrowing) and paging in one snapshot.
    let mut scoped = q(ResourceType::Observation, vec![]);
    scoped.scope =
        Scope { rules: Some(vec![ScopeRule { facilities: Some(vec!["1318814790".into()]), ..Default::default() }]) };
    let (total, page) =
        store.snapshot(|r| Ok((r.search_count(&scoped)?, r.search_rows(&scoped, 1, Some(2))?))).unwrap();
    assert_eq!(total, 3);
    assert_eq!(ids(&page), vec!["o1", "o4"]);
    scoped.scope = Scope::none();
    assert_eq!(store.read(|r| r.search_count(&scoped)).unwrap(), 0);
    // Rules are ORed: this facility's records, or any Lab-class record of patient p2.
    scoped.scope = Scope {
        rules: Some(vec![
            ScopeRule { facilities: Some(vec!["2712345678".into()]), ..Default::default() },
            ScopeRule { patients: Some(vec!["p2".into()]), classes: Some(vec!["other"]), ..Default::default() },
        ]),
    };
    assert_eq!(ids(&store.read(|r| r.search_rows(&scoped, 0, None)).unwrap()), vec!["o3", "o4"]);

    // Strings: kana folded, prefix.
    let name = store
        .read(|r| {
            r.search_rows(
                &q(
                    ResourceType::Patient,
                    vec![Filter::Str { param: "name", any: vec![StrMatch::StartsWith("山田".into())] }],
                ),
                0,
                None,
            )
        })
        .unwrap();
    assert_eq!(ids(&name), vec!["p1"]);

    // Delete: a new version marked deleted; history keeps everything.
    let c = store
        .commit(WriteBatch {
            deletes: vec![DeleteResource {
                rtype: ResourceType::Observation,
                id: "o3".into(),
                last_updated: 1_800_000_000_000,
                expect_version: None,
            }],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(c.deleted_versions, vec![Some(2)]);
    let again = store
        .commit(WriteBatch {
            deletes: vec![DeleteResource {
                rtype: ResourceType::Observation,
                id: "o3".into(),
                last_updated: 1_800_000_000_001,
                expect_version: None,
            }],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(again.deleted_versions, vec![None], "deleting twice writes nothing");
    let cur = store.current(ResourceType::Observation, "o3").unwrap().unwrap();
    assert!(cur.deleted);
    assert_eq!(
        store
            .read(|r| r.search_count(&q(ResourceType::Observation, vec![Filter::Patient(vec!["p1".into()])])))
            .unwrap(),
        2
    );
    let (n, hist) =
        store.read(|r| r.history(Some(ResourceType::Observation), Some("o3"), None, &Scope::all(), 0, 10)).unwrap();
    assert_eq!(n, 2);
    assert!(hist[0].0.deleted && hist[0].0.content.is_none());
    assert_eq!(hist[1].0.version, 1);
    let (n, _) = store.read(|r| r.history(Some(ResourceType::Patient), None, None, &Scope::all(), 0, 10)).unwrap();
    assert_eq!(n, 2);

    // The MPI's person link survives an update.
    store.read(|r| r.current(ResourceType::Patient, "p1")).unwrap();
    let mut linked =
        put(ResourceType::Observation, "o5", 1, Expect::Absent, obs("p1", "x", "2024-05-01", "1318814790"));
    linked.meta.person_id = Some("person-1".into());
    store.commit(WriteBatch { puts: vec![linked], ..Default::default() }).unwrap();
    store
        .commit(WriteBatch {
            puts: vec![put(
                ResourceType::Observation,
                "o5",
                2,
                Expect::Version(1),
                obs("p1", "y", "2024-05-01", "1318814790"),
            )],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        store.current(ResourceType::Observation, "o5").unwrap().unwrap().meta.person_id.as_deref(),
        Some("person-1")
    );

    // Bundle submissions.
    let mut member = put(
        ResourceType::Condition,
        "c1",
        1,
        Expect::Absent,
        json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "meta": {"tag": [{"system": musubi_domain::systems::EHRSHRS_INDICATION, "code": "LTS"}]}}),
    );
    member.meta.bundle_key = Some("1318814790^2024^B1".into());
    let sub = BundleSubmission {
        bundle_key: "1318814790^2024^B1".into(),
        facility: "1318814790".into(),
        kind: "collection".into(),
        bundle_id: None,
        content_hash: "h1".into(),
        received: 1,
    };
    store
        .commit(WriteBatch { puts: vec![member], bundles: vec![BundleOp::Put(sub.clone())], ..Default::default() })
        .unwrap();
    assert_eq!(store.read(|r| r.bundle_submission("1318814790^2024^B1")).unwrap(), Some(sub));
    let members = store.read(|r| r.bundle_members("1318814790^2024^B1")).unwrap();
    assert_eq!(ids(&members), vec!["c1"]);
    assert!(members[0].meta.flags.contains(Flags::LTS));
    store
        .commit(WriteBatch { bundles: vec![BundleOp::Remove("1318814790^2024^B1".into())], ..Default::default() })
        .unwrap();
    assert_eq!(store.read(|r| r.bundle_submission("1318814790^2024^B1")).unwrap(), None);

    // Tokens and settings.
    store
        .insert_token(TokenRow {
            token_hash: "abc".into(),
            kind: "system".into(),
            facility: Some("1318814790".into()),
            name: "emr".into(),
            created: 5,
            revoked: false,
            expires: Some(1_000),
        })
        .unwrap();
    assert_eq!(store.read(|r| r.token("abc")).unwrap().unwrap().name, "emr");
    assert_eq!(store.revoke_token("emr".into()).unwrap(), 1);
    let revoked = store.read(|r| r.token("abc")).unwrap().unwrap();
    assert!(revoked.revoked && revoked.expires == Some(1_000) && !revoked.active_at(0));
    // Rotation: the new token is stored, the old one of the same name ends at the overlap.
    let row = |hash: &str, expires: Option<i64>| TokenRow {
        token_hash: hash.into(),
        kind: "system".into(),
        facility: Some("1318814790".into()),
        name: "pacs".into(),
        created: 10,
        revoked: false,
        expires,
    };
    store.insert_token(row("old", None)).unwrap();
    assert_eq!(store.rotate_token(row("new", Some(90_000)), 500).unwrap(), 1);
    let old = store.read(|r| r.token("old")).unwrap().unwrap();
    assert_eq!(old.expires, Some(500));
    assert!(old.active_at(499) && !old.active_at(500));
    assert!(store.read(|r| r.token("new")).unwrap().unwrap().active_at(89_999));
    store.put_setting("k".into(), "v1".into()).unwrap();
    store.put_setting("k".into(), "v2".into()).unwrap();
    assert_eq!(store.setting("k").unwrap().as_deref(), Some("v2"));

    // Audit from many threads at once: group commit keeps one unbroken chain.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for i in 0..50 {
                    seqs.extend(s.append_audit(vec![audit(t * 100 + i, Some("p1"))]).unwrap());
                }
                seqs
            })
        })
        .collect();
    let mut all = HashSet::new();
    for t in threads {
        for s in t.join().unwrap() {
            assert!(all.insert(s), "sequence {s} given twice");
        }
    }
    assert_eq!(all.len(), 400);
    let verified = verify_audit_chain(&store, |_| {}).unwrap().unwrap();
    assert_eq!(verified, store.audit_head().unwrap().0);
    assert_eq!(verified, 401);
    let (total, page) = store
        .read(|r| r.audit_search(&AuditQuery { agent: Some("agent-1".into()), ..Default::default() }, 0, 5))
        .unwrap();
    assert!(total > 100);
    assert_eq!(page.len(), 5);
    assert!(page[0].0 > page[1].0, "newest first");

    // A merged person's trail: what was recorded under the retired ids is found under the
    // survivor, through a chain of merges (p-a into p-b, then p-b into p-c).
    let about = |i: usize, person: &str| AuditRecord { person: Some(person.into()), ..audit(i, None) };
    store.append_audit(vec![about(900, "p-a"), about(901, "p-b"), about(902, "p-c"), about(903, "p-x")]).unwrap();
    let trail = |person: &str| -> Vec<String> {
        let q = AuditQuery { person: Some(person.into()), ..Default::default() };
        let (_, rows) = store.read(|r| r.audit_search(&q, 0, 100)).unwrap();
        let mut who: Vec<String> = rows
            .iter()
            .map(|(_, text)| serde_json::from_str::<AuditRecord>(text).unwrap().person.unwrap_or_default())
            .collect();
        who.sort();
        who
    };
    assert_eq!(trail("p-c"), vec!["p-c"]);
    store.write_mpi(vec![MpiWrite::MovePerson { from: "p-a".into(), to: "p-b".into() }], vec![]).unwrap();
    assert_eq!(trail("p-b"), vec!["p-a", "p-b"]);
    store.write_mpi(vec![MpiWrite::MovePerson { from: "p-b".into(), to: "p-c".into() }], vec![]).unwrap();
    assert_eq!(trail("p-c"), vec!["p-a", "p-b", "p-c"]);
    // The retired id still finds what was recorded under it, no longer what was merged into it.
    assert_eq!(trail("p-b"), vec!["p-b"]);
    assert_eq!(trail("p-x"), vec!["p-x"]);
}

#[test]
fn sqlite_backend_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).unwrap();
    run_suite(store);
}

#[test]
fn sqlite_store_reopens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_sqlite(dir.path()).unwrap();
        store.append_audit(vec![audit(1, None)]).unwrap();
    }
    let store = Store::open_sqlite(dir.path()).unwrap();
    assert_eq!(store.audit_head().unwrap().0, 1);
}

#[test]
fn audit_tampering_is_detected_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).unwrap();
    for i in 0..20 {
        store.append_audit(vec![audit(i, Some("p1"))]).unwrap();
    }
    assert_eq!(verify_audit_chain(&store, |_| {}).unwrap().unwrap(), 20);
    let raw = rusqlite::Connection::open(dir.path().join(SQLITE_FILE)).unwrap();
    // Hide who looked: change the indexed column only.
    raw.execute("UPDATE audit SET agent = 'someone-else' WHERE seq = 7", []).unwrap();
    let b = verify_audit_chain(&store, |_| {}).unwrap().unwrap_err();
    assert_eq!(b.seq, 7);
    raw.execute("UPDATE audit SET agent = 'agent-0' WHERE seq = 7", []).unwrap();
    // Change the hashed JSON.
    raw.execute("UPDATE audit SET record = replace(record, 'Observation/11', 'Observation/99') WHERE seq = 12", [])
        .unwrap();
    assert_eq!(verify_audit_chain(&store, |_| {}).unwrap().unwrap_err().seq, 12);
}

mod pg {
    use super::*;

    /// Creates a fresh database on the test server and returns its URL, dropping it at the end.
    pub struct FreshDb {
        admin: String,
        name: String,
        pub url: String,
    }

    impl FreshDb {
        pub fn new() -> FreshDb {
            let admin = std::env::var("MUSUBI_TEST_POSTGRES").expect(
                "MUSUBI_TEST_POSTGRES is not set: the store suite must also run on PostgreSQL. Run scripts/test, which starts a server and sets it.",
            );
            let name = format!("musubi_test_{}", uuid_like());
            let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("connect to MUSUBI_TEST_POSTGRES");
            c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
            let url = match admin.rsplit_once('/') {
                Some((base, _)) => format!("{base}/{name}"),
                None => panic!("MUSUBI_TEST_POSTGRES must end in /database"),
            };
            FreshDb { admin, name, url }
        }
    }

    impl Drop for FreshDb {
        fn drop(&mut self) {
            if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
            }
        }
    }

    fn uuid_like() -> String {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        format!("{}_{}", std::process::id(), t % 1_000_000_000_000)
    }

    #[test]
    fn postgres_backend_passes_the_suite() {
        let db = FreshDb::new();
        {
            let store = Store::open_postgres(&db.url).unwrap();
            run_suite(store);
        }
        // Migrations are idempotent: opening again applies nothing and keeps the data.
        let store = Store::open_postgres(&db.url).unwrap();
        assert!(store.audit_head().unwrap().0 > 0);
    }

    #[test]
    fn audit_tampering_is_detected_postgres() {
        let db = FreshDb::new();
        let store = Store::open_postgres(&db.url).unwrap();
        for i in 0..20 {
            store.append_audit(vec![audit(i, Some("p1"))]).unwrap();
        }
        let mut raw = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
        raw.batch_execute("DELETE FROM audit WHERE seq = 9").unwrap();
        let b = verify_audit_chain(&store, |_| {}).unwrap().unwrap_err();
        assert_eq!(b.seq, 10);
        assert!(b.reason.contains("missing"));
    }
}
