//! The referral tables and the retention purge, on every backend: `sqlite` always, `postgres`
//! against `MUSUBI_TEST_POSTGRES` (as the main suite).

use musubi_domain::ResourceClass;
use musubi_domain::audit::{AuditAction, AuditAgent, AuditOutcome, AuditPurpose, AuditRecord};
use musubi_fhir::ResourceType;
use musubi_store::*;

fn audit(what: &str) -> AuditRecord {
    AuditRecord {
        recorded: 1_700_000_000_000,
        action: AuditAction::Delete,
        subtype: what.into(),
        outcome: AuditOutcome::Success,
        outcome_text: None,
        agent: AuditAgent {
            kind: "operator-cli".into(),
            name: "suite".into(),
            facility: None,
            profession: None,
            address: None,
        },
        purpose: AuditPurpose::Operations,
        patient: None,
        person: None,
        entities: vec![],
        query: None,
        source: "suite".into(),
    }
}

fn put(id: &str, class: ResourceClass, end: Option<&str>, item: Option<&str>, date: i64) -> PutResource {
    let content = format!(r#"{{"resourceType":"Observation","id":"{id}"}}"#);
    PutResource {
        rtype: ResourceType::Observation,
        id: id.into(),
        version: 1,
        expect: Expect::Absent,
        last_updated: 1_700_000_000_000,
        content_hash: musubi_fhir::sha256_hex(content.as_bytes()),
        content,
        meta: StoredMeta {
            facility: Some("1318814790".parse().unwrap()),
            submitter: "suite".into(),
            patient_id: Some("p1".into()),
            person_id: Some("person-1".into()),
            class,
            clinical_date: Some(date),
            flags: musubi_domain::Flags::empty(),
            retention_end: end.map(str::to_owned),
            keep_last: item.map(|_| 3),
            item_key: item.map(str::to_owned),
            bundle_key: Some("1318814790^2024^K".into()),
        },
        index: vec![musubi_fhir::index::IndexEntry {
            param: "code",
            value: musubi_fhir::index::IndexValue::Token { system: "s".into(), code: id.into() },
        }],
    }
}

fn referral(id: &str, to: &str, created: i64) -> ReferralRow {
    ReferralRow {
        id: id.into(),
        sender: "1318814790".into(),
        addressee: to.into(),
        bundle_id: Some(format!("b-{id}")),
        bundle_key: Some(format!("1318814790^2024^{id}")),
        summary: Some(r#"{"patient":{"name":"結 花子"}}"#.into()),
        created,
        created_by: "dr".into(),
        expires: created + 1000,
        signature_status: "unsigned".into(),
        signature: Some("MAA=".into()),
        signed_content: Some("e30=".into()),
        ..Default::default()
    }
}

fn run(store: Store) {
    // Records past their end, paged by (end, type, id) with a small page.
    let mut batch = WriteBatch::default();
    for i in 0..7 {
        batch.puts.push(put(&format!("lab-{i}"), ResourceClass::Lab, Some("2020-01-01"), Some("hba1c"), 1000 + i));
    }
    batch.puts.push(put("dx-old", ResourceClass::Diagnosis, Some("2019-05-01"), None, 10));
    batch.puts.push(put("dx-new", ResourceClass::Diagnosis, Some("2099-01-01"), None, 10));
    batch.puts.push(put("kept", ResourceClass::Other, None, None, 10));
    batch.bundles.push(BundleOp::Put(BundleSubmission {
        bundle_key: "1318814790^2024^K".into(),
        facility: "1318814790".into(),
        kind: "collection".into(),
        bundle_id: None,
        content_hash: "h".into(),
        received: 1,
    }));
    store.commit(batch).unwrap();
    let mut seen = Vec::new();
    let mut after: Option<(String, String, String)> = None;
    loop {
        let a = after.clone();
        let page = store
            .read(|r| {
                r.retention_due("2024-01-01", a.as_ref().map(|(e, t, i)| (e.as_str(), t.as_str(), i.as_str())), 3)
            })
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.meta.retention_end.clone().unwrap(), last.rtype.as_str().into(), last.id.clone()));
        seen.extend(page.iter().map(|r| r.id.clone()));
    }
    assert_eq!(seen, vec!["dx-old", "lab-0", "lab-1", "lab-2", "lab-3", "lab-4", "lab-5", "lab-6"]);
    let latest =
        store.read(|r| r.latest_of_item(ResourceType::Observation, Some("person-1"), None, "hba1c", 3)).unwrap();
    assert_eq!(latest, vec!["lab-6", "lab-5", "lab-4"]);
    let by_patient = store.read(|r| r.latest_of_item(ResourceType::Observation, None, Some("p1"), "hba1c", 2)).unwrap();
    assert_eq!(by_patient, vec!["lab-6", "lab-5"]);

    // Purge: content gone from every version, a deletion left, index cleared; a stale version
    // is skipped; purging twice does nothing.
    let key = |id: &str, version: i64| PurgeKey { rtype: ResourceType::Observation, id: id.into(), version };
    let done =
        store.purge_resources(vec![key("lab-0", 1), key("lab-1", 7)], 5, vec![audit("retention-record")]).unwrap();
    assert_eq!(done, vec![key("lab-0", 1)]);
    let (v1, v2, cur) = store
        .read(|r| {
            Ok((
                r.version(ResourceType::Observation, "lab-0", Some(1))?,
                r.version(ResourceType::Observation, "lab-0", Some(2))?,
                r.current(ResourceType::Observation, "lab-0")?,
            ))
        })
        .unwrap();
    assert_eq!(v1, None);
    assert!(v2.as_ref().is_some_and(|v| v.deleted && v.content.is_none()));
    assert!(cur.unwrap().deleted);
    let hits = store.read(|r| r.find_by_token(ResourceType::Observation, "code", "s", "lab-0")).unwrap();
    assert!(hits.is_empty(), "the index no longer finds it");
    let head = store.audit_head().unwrap().0;
    assert!(store.purge_resources(vec![key("lab-0", 1)], 6, vec![audit("again")]).unwrap().is_empty());
    assert_eq!(store.audit_head().unwrap().0, head, "nothing purged, nothing audited");
    // The submission is forgotten only when its last resource goes.
    assert!(store.read(|r| r.bundle_submission("1318814790^2024^K")).unwrap().is_some());
    let rest: Vec<PurgeKey> = ["lab-1", "lab-2", "lab-3", "lab-4", "lab-5", "lab-6", "dx-old", "dx-new", "kept"]
        .iter()
        .map(|id| key(id, 1))
        .collect();
    assert_eq!(store.purge_resources(rest, 7, vec![audit("all")]).unwrap().len(), 9);
    assert!(store.read(|r| r.bundle_submission("1318814790^2024^K")).unwrap().is_none());

    // Referrals: lists, receipt once, deletion once.
    let to = "1311234567";
    store.create_referral(WriteBatch::default(), referral("r1", to, 100), vec![], None).unwrap();
    let file = AttachmentRow {
        referral_id: "r2".into(),
        seq: 0,
        filename: "紹介状.pdf".into(),
        content_type: "application/pdf".into(),
        size: 5,
        sha256: "x".into(),
        data: Some("JVBERi0=".into()),
    };
    store.create_referral(WriteBatch::default(), referral("r2", to, 200), vec![file], None).unwrap();
    let inbox = store.read(|r| r.referrals_to(to, 10)).unwrap();
    assert_eq!(inbox.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["r2", "r1"]);
    assert_eq!(inbox[0].signature, None, "lists leave the signature out");
    assert_eq!(store.read(|r| r.referral("r2")).unwrap().unwrap().signature.as_deref(), Some("MAA="));
    let files = store.read(|r| r.referral_attachments("r2")).unwrap();
    assert_eq!((files[0].filename.as_str(), files[0].data.as_deref()), ("紹介状.pdf", None));
    let one = store.read(|r| r.referral_attachment("r2", 0)).unwrap().unwrap();
    assert_eq!(one.data.as_deref(), Some("JVBERi0="));
    let receipt =
        |at: i64, by: &str| Receipt { referral_id: "r1".into(), at, by: by.into(), by_name: format!("{by} 先生") };
    assert!(store.receive_referral(receipt(150, "dr-a"), vec![audit("open")]).unwrap());
    assert!(!store.receive_referral(receipt(160, "dr-b"), vec![audit("open")]).unwrap());
    let r1 = store.read(|r| r.referral("r1")).unwrap().unwrap();
    assert_eq!((r1.received_at, r1.received_by.as_deref()), (Some(150), Some("dr-a")));
    // A reply marks its original received in the same transaction.
    let mut reply = referral("r3", "1318814790", 300);
    reply.sender = to.into();
    reply.reply_to = Some("r2".into());
    let mark = Receipt { referral_id: "r2".into(), at: 300, by: "dr-c".into(), by_name: "dr-c 先生".into() };
    store.create_referral(WriteBatch::default(), reply, vec![], Some(mark)).unwrap();
    assert_eq!(store.read(|r| r.referral("r2")).unwrap().unwrap().received_by.as_deref(), Some("dr-c"));
    assert_eq!(store.read(|r| r.referral_replies("r2")).unwrap()[0].id, "r3");
    // Due: r1 received at 150 (received before 155), r2 expired at 1200.
    let due = store.read(|r| r.referrals_due(155, 1100, 10)).unwrap();
    assert_eq!(due.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["r1"]);
    let due = store.read(|r| r.referrals_due(0, 1250, 10)).unwrap();
    assert_eq!(due.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["r1", "r2"]);
    let del = |id: &str| ReferralDeletion { id: id.into(), reason: "received+7d".into(), resources: vec![] };
    assert_eq!(store.delete_referrals(vec![del("r1"), del("r2")], 2000, vec![audit("del")]).unwrap(), vec!["r1", "r2"]);
    assert!(store.delete_referrals(vec![del("r1")], 2001, vec![audit("del")]).unwrap().is_empty());
    let r2 = store.read(|r| r.referral("r2")).unwrap().unwrap();
    assert_eq!((r2.deleted_at, r2.summary, r2.signature, r2.bundle_id), (Some(2000), None, None, None));
    assert!(store.read(|r| r.referral_attachments("r2")).unwrap().is_empty());
    assert!(
        !store
            .receive_referral(Receipt { referral_id: "r2".into(), at: 1, by: "x".into(), by_name: "x".into() }, vec![])
            .unwrap()
    );
    assert!(store.read(|r| r.referrals_due(i64::MAX, i64::MAX, 10)).unwrap().iter().all(|r| r.id == "r3"));
}

#[test]
fn sqlite_referrals_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    run(Store::open_sqlite(dir.path()).unwrap());
}

#[test]
fn postgres_referrals_and_purge() {
    let admin = std::env::var("MUSUBI_TEST_POSTGRES").expect(
        "MUSUBI_TEST_POSTGRES is not set: the store suite must also run on PostgreSQL. Run scripts/test, which starts a server and sets it.",
    );
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let name = format!("musubi_referral_{}_{}", std::process::id(), t % 1_000_000_000_000);
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("connect to MUSUBI_TEST_POSTGRES");
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').map(|(b, _)| b).unwrap());
    let result = std::panic::catch_unwind(|| run(Store::open_postgres(&url).unwrap()));
    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
