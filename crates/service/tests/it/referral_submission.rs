//! A 診療情報提供書 submitted as a FHIR document Bundle (`POST /Bundle`, an entry of a
//! transaction or a batch) reaches its addressee's inbox as if it had been sent through the
//! referral API — once, however often it is posted — and where it cannot (no addressee, two, an
//! unknown one, a sender who may not send letters), it is stored all the same and the sender is
//! told why. Service level, embedded store; the reference eReferral example with its own
//! facility codes.

use musubi_domain::audit::AuditOutcome;
use musubi_domain::{FacilityCode, Profession};
use musubi_fhir::ResourceType;
use musubi_fhir::outcome::Severity;
use musubi_gate::{Actor, UserActor};
use musubi_service::referral::ReferralStatus;
use musubi_service::{Ctx, ErrorKind, Service, SubmitStatus};
use musubi_store::Store;
use serde_json::{Value, json};

/// The example's Bundle identifier facility (the sender) and its 紹介先 (the addressee).
const SENDER: &str = "1318814790";
const ADDRESSEE: &str = "1311234567";
const OTHER: &str = "1319999990";
/// A valid code no facility of the network has (yet).
const UNKNOWN: &str = "1311111119";

struct Fixture {
    svc: Service,
    /// The test's own handle on the service's store (to look at what was stored).
    store: Store,
    _dir: tempfile::TempDir,
}

fn register(svc: &Service, code: &str, name: &str) {
    let row = musubi_store::FacilityRow {
        code: code.into(),
        name: name.into(),
        class: "hospital".into(),
        prefecture: 13,
        area: "1301".into(),
        area_name: "区中央部".into(),
        discloses: true,
        views: true,
    };
    svc.register_facility(&Ctx::operator("test"), row, vec![]).unwrap();
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).unwrap();
    let svc = Service::new(store.clone(), "test");
    register(&svc, SENDER, "結び総合病院");
    register(&svc, ADDRESSEE, "むすびクリニック");
    register(&svc, OTHER, "よその病院");
    Fixture { svc, store, _dir: dir }
}

fn user(login: &str, profession: Profession, facility: &str) -> Ctx {
    Ctx {
        actor: Actor::User(UserActor {
            user_id: format!("id-{login}"),
            login: login.into(),
            name: format!("{login} 先生"),
            profession,
            facility: facility.parse::<FacilityCode>().unwrap(),
        }),
        address: Some("127.0.0.1".into()),
        base_url: String::new(),
    }
}

fn system(facility: &str) -> Ctx {
    Ctx {
        actor: Actor::System { name: format!("emr-{facility}"), facility: facility.parse().unwrap() },
        address: None,
        base_url: String::new(),
    }
}

/// The reference 診療情報提供書 with its own Bundle identifier.
fn referral_doc(local: &str) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../reference/jp-clins/examples/Bundle-Bundle-CLINS-Referral-Example-01.json"
    );
    let mut d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    d["identifier"]["value"] = json!(format!("{SENDER}^2024^{local}"));
    d
}

/// The document with its 紹介先 facility code replaced.
fn addressed_to(local: &str, code: &str) -> Value {
    serde_json::from_str(&referral_doc(local).to_string().replace(ADDRESSEE, code)).unwrap()
}

/// The index of the 紹介先 Organization entry (the one with the addressee's code).
fn addressee_entry(doc: &Value) -> usize {
    doc["entry"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| {
            e["resource"]["resourceType"] == "Organization" && e["resource"]["identifier"][0]["value"] == ADDRESSEE
        })
        .unwrap()
}

/// The warnings about the letter's delivery (validation warnings name a rule; these do not).
fn warnings(o: &musubi_service::SubmitOutcome) -> Vec<String> {
    o.warnings
        .iter()
        .filter(|w| w.severity == Severity::Warning && w.rule.is_none())
        .map(|w| w.diagnostics.clone())
        .collect()
}

fn inbox(f: &Fixture, facility: &str) -> Vec<musubi_service::referral::ReferralSummary> {
    f.svc.referral_inbox(&user("dr-in", Profession::Doctor, facility), None, true).unwrap()
}

#[test]
fn a_posted_referral_document_reaches_the_addressee_once() {
    let f = fixture();
    let emr = system(SENDER);
    let out = f.svc.submit_bundle(&emr, referral_doc("FB-1")).unwrap();
    assert_eq!(out.status, SubmitStatus::Created);
    assert!(warnings(&out).is_empty(), "{:?}", out.warnings);
    let referral_id = out.referral_id.clone().expect("delivered");
    assert!(
        out.outcome().to_string().contains(&format!("むすびクリニック（{ADDRESSEE}）の受信箱に届けました")),
        "{}",
        out.outcome()
    );

    // The addressee's inbox, as if sent through the referral API.
    let items = inbox(&f, ADDRESSEE);
    assert_eq!(items.len(), 1);
    let r = &items[0];
    assert_eq!(r.id, referral_id);
    assert_eq!((r.status, r.status_label), (ReferralStatus::Sent, "未受領"));
    assert_eq!((r.sender.code.as_str(), r.sender.name.as_deref()), (SENDER, Some("結び総合病院")));
    assert_eq!(r.patient.as_ref().and_then(|p| p.name.as_deref()), Some("牧野 爛漫"));
    assert_eq!(r.author.as_deref(), Some("大河内 勘三郎"));
    assert_eq!(r.created_by, "emr-1318814790");
    assert_eq!(r.delete_after, Some(musubi_service::referral::expiry_of(r.created)));
    // The sender's outbox holds it too.
    let outbox = f.svc.referral_outbox(&user("dr-out", Profession::Doctor, SENDER), None, false).unwrap();
    assert_eq!(outbox.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec![referral_id.as_str()]);

    // The addressee's doctor opens the very Bundle that was posted, and receives it.
    let view = f.svc.open_referral(&user("dr-to", Profession::Doctor, ADDRESSEE), &referral_id).unwrap();
    assert!(view.received_now);
    assert_eq!(view.bundle_id, out.bundle_id);
    assert_eq!(view.document["identifier"]["value"], format!("{SENDER}^2024^FB-1"));
    assert_eq!(view.signature_report.status.code(), "unsigned");
    // Filed under the source patient the referral names, with the referral's retention.
    let bid = out.bundle_id.clone().unwrap();
    let row = f.store.current(ResourceType::Bundle, &bid).unwrap().unwrap();
    assert_eq!(row.meta.patient_id.as_deref(), Some(out.patient_id.as_str()));
    assert_eq!(view.patient_id.as_deref(), Some(out.patient_id.as_str()));
    let expected_end = musubi_fhir::datetime::jst_date(musubi_service::referral::expiry_of(r.created)).unwrap();
    assert_eq!(row.meta.retention_end.as_deref(), Some(expected_end.to_string().as_str()));

    // The same Bundle again: unchanged, and not a second inbox entry.
    let again = f.svc.submit_bundle(&emr, referral_doc("FB-1")).unwrap();
    assert_eq!(again.status, SubmitStatus::Unchanged);
    assert_eq!(again.referral_id.as_deref(), Some(referral_id.as_str()));
    assert!(
        again
            .outcome()
            .to_string()
            .contains(&format!("紹介状 {referral_id} として紹介先 {ADDRESSEE} の受信箱に届いています")),
        "{}",
        again.outcome()
    );
    assert_eq!(inbox(&f, ADDRESSEE).len(), 1);
    // Changed content under the same identifier: the letter already sent is not replaced.
    let mut changed = referral_doc("FB-1");
    changed["timestamp"] = json!("2021-11-27T09:30:00+09:00");
    let e = f.svc.submit_bundle(&emr, changed).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.summary().contains("送信済み"), "{}", e.summary());
    assert_eq!(inbox(&f, ADDRESSEE).len(), 1);
    // And the referral API refuses the identifier as well: one letter, one identifier.
    let e = f
        .svc
        .send_referral(
            &emr,
            musubi_service::referral::NewReferral {
                document: Some(referral_doc("FB-1").to_string().into_bytes()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e:?}");
}

#[test]
fn without_one_registered_addressee_it_is_stored_with_a_warning() {
    let f = fixture();
    let emr = system(SENDER);

    // No 紹介先 Organization: the 紹介先 section names only the addressee's physician.
    let mut none = referral_doc("NA-1");
    let org_url = none["entry"][addressee_entry(&none)]["fullUrl"].clone();
    for s in none["entry"][0]["resource"]["section"].as_array_mut().unwrap() {
        if s["code"]["coding"][0]["code"] == "910" {
            s["entry"].as_array_mut().unwrap().retain(|e| e["reference"] != org_url);
        }
    }
    let out = f.svc.submit_bundle(&emr, none).unwrap();
    assert_eq!(out.status, SubmitStatus::Created);
    assert_eq!(out.referral_id, None);
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("この診療情報提供書は保存しましたが、紹介先の受信箱には届いていません。"), "{}", w[0]);
    assert!(w[0].contains("紹介先医療機関"), "{}", w[0]);
    let stored = f.store.current(ResourceType::Bundle, out.bundle_id.as_deref().unwrap()).unwrap().unwrap();
    assert_eq!(stored.meta.patient_id.as_deref(), Some(out.patient_id.as_str()), "stored as before");

    // Two addressees.
    let mut two = referral_doc("NA-2");
    let i = addressee_entry(&two);
    let mut second = two["entry"][i].clone();
    second["fullUrl"] = json!("urn:uuid:0b0f4bd3-2f63-4b61-9e6a-5d0c1b8a0f11");
    second["resource"]["identifier"][0]["value"] = json!(OTHER);
    two["entry"].as_array_mut().unwrap().push(second);
    for s in two["entry"][0]["resource"]["section"].as_array_mut().unwrap() {
        if s["code"]["coding"][0]["code"] == "910" {
            s["entry"]
                .as_array_mut()
                .unwrap()
                .push(json!({"reference": "urn:uuid:0b0f4bd3-2f63-4b61-9e6a-5d0c1b8a0f11", "type": "Organization"}));
        }
    }
    let out = f.svc.submit_bundle(&emr, two).unwrap();
    let w = warnings(&out);
    assert!(w.iter().any(|w| w.contains("複数") && w.contains(ADDRESSEE) && w.contains(OTHER)), "{w:?}");
    assert_eq!(out.referral_id, None);

    // An addressee the network does not know.
    let out = f.svc.submit_bundle(&emr, addressed_to("NA-3", UNKNOWN)).unwrap();
    let w = warnings(&out);
    assert!(w.iter().any(|w| w.contains(UNKNOWN) && w.contains("登録されていません")), "{w:?}");
    assert!(out.outcome().to_string().contains("\"severity\":\"warning\""), "{}", out.outcome());
    for code in [ADDRESSEE, OTHER] {
        assert!(inbox(&f, code).is_empty(), "{code}");
    }
    // Once it is registered, posting the same Bundle again delivers it — once.
    register(&f.svc, UNKNOWN, "新しい診療所");
    let again = f.svc.submit_bundle(&emr, addressed_to("NA-3", UNKNOWN)).unwrap();
    assert_eq!(again.status, SubmitStatus::Unchanged);
    assert!(warnings(&again).is_empty(), "{:?}", again.warnings);
    let id = again.referral_id.clone().expect("delivered now");
    let items = inbox(&f, UNKNOWN);
    assert_eq!(items.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec![id.as_str()]);
    // …kept no longer than the document it was registered with.
    let sub = f.store.read(|r| r.bundle_submission(&format!("{SENDER}^2024^NA-3"))).unwrap().unwrap();
    assert_eq!(items[0].delete_after, Some(musubi_service::referral::expiry_of(sub.received)));
    f.svc.submit_bundle(&emr, addressed_to("NA-3", UNKNOWN)).unwrap();
    assert_eq!(inbox(&f, UNKNOWN).len(), 1);
}

#[test]
fn only_those_who_may_send_letters_deliver_them() {
    let f = fixture();
    // A clerk (地域連携室) may store the facility's documents, but sends no letters.
    let clerk = user("clerk", Profession::Clerk, SENDER);
    let out = f.svc.submit_bundle(&clerk, referral_doc("CL-1")).unwrap();
    assert_eq!(out.status, SubmitStatus::Created);
    let w = warnings(&out);
    assert!(w.iter().any(|w| w.contains("事務職は診療情報提供書を作成・送信できません")), "{w:?}");
    assert!(inbox(&f, ADDRESSEE).is_empty());
    // A doctor of the facility does.
    let dr = user("dr", Profession::Doctor, SENDER);
    let out = f.svc.submit_bundle(&dr, referral_doc("DR-1")).unwrap();
    assert!(out.referral_id.is_some(), "{:?}", out.warnings);
    assert_eq!(inbox(&f, ADDRESSEE)[0].created_by, "dr");
    // Another facility's system may not even store it.
    let e = f.svc.submit_bundle(&system(OTHER), referral_doc("OT-1")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    // A Bundle.signature (XML-DSig / JWT) is kept but not verified, and the sender is told so.
    let mut signed = referral_doc("SG-1");
    signed["signature"] = json!({"type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1"}],
        "when": "2024-04-01T10:00:00+09:00", "who": {"display": "大河内 勘三郎"}, "sigFormat": "application/jose", "data": "ZXlKaGJHY2lPaUpGVXpJMU5pSjku"});
    let out = f.svc.submit_bundle(&system(SENDER), signed).unwrap();
    let id = out.referral_id.clone().expect("delivered");
    assert!(warnings(&out).iter().any(|w| w.contains("Bundle.signature")), "{:?}", out.warnings);
    let view = f.svc.open_referral(&user("dr-to", Profession::Doctor, ADDRESSEE), &id).unwrap();
    assert_eq!(view.signature_report.status.code(), "unsigned");
    assert!(view.signature_report.message.contains("検証していません"), "{}", view.signature_report.message);
}

fn response_entries(text: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(text).unwrap();
    v["entry"].as_array().unwrap().clone()
}

#[test]
fn a_referral_document_in_a_transaction_or_batch_is_delivered() {
    let f = fixture();
    let emr = system(SENDER);
    let org = json!({"resourceType": "Organization", "identifier": [{"system": "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no", "value": SENDER}], "name": "結び総合病院"});
    let tx = |local: &str| {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:5e1b8f5c-7d59-4d7e-9b8a-3f1f8f0d1a01", "resource": org, "request": {"method": "POST", "url": "Organization"}},
            {"fullUrl": "urn:uuid:5e1b8f5c-7d59-4d7e-9b8a-3f1f8f0d1a02", "resource": referral_doc(local), "request": {"method": "POST", "url": "Bundle"}}
        ]})
    };
    let text = f.svc.transaction(&emr, tx("TX-1")).unwrap();
    let entries = response_entries(&text);
    assert_eq!(entries[0]["response"]["status"], "201 Created", "{text}");
    assert_eq!(entries[1]["response"]["status"], "201 Created", "{text}");
    let location = entries[1]["response"]["location"].as_str().unwrap().to_owned();
    assert!(entries[1]["response"]["outcome"].to_string().contains("受信箱に届けました"), "{text}");
    let items = inbox(&f, ADDRESSEE);
    assert_eq!(items.len(), 1);
    // The document inside kept its own references (not rewritten by the transaction).
    let view = f.svc.open_referral(&system(ADDRESSEE), &items[0].id).unwrap();
    assert_eq!(location, format!("Bundle/{}/_history/1", view.bundle_id.as_deref().unwrap()));
    assert_eq!(view.document, {
        let mut d = referral_doc("TX-1");
        let stored_meta = view.document["meta"].clone();
        d["id"] = view.document["id"].clone();
        d["meta"] = stored_meta;
        d
    });
    // The same transaction again: the letter is not delivered twice.
    let text = f.svc.transaction(&emr, tx("TX-1")).unwrap();
    let entries = response_entries(&text);
    assert_eq!(entries[1]["response"]["status"], "200 OK", "{text}");
    assert_eq!(inbox(&f, ADDRESSEE).len(), 1);
    // Two letters with one identifier in one transaction are refused as a whole.
    let mut dup = tx("TX-2");
    let second = json!({"fullUrl": "urn:uuid:5e1b8f5c-7d59-4d7e-9b8a-3f1f8f0d1a03", "resource": referral_doc("TX-2"), "request": {"method": "POST", "url": "Bundle"}});
    dup["entry"].as_array_mut().unwrap().push(second);
    assert_eq!(f.svc.transaction(&emr, dup).unwrap_err().kind, ErrorKind::BadRequest);
    assert_eq!(inbox(&f, ADDRESSEE).len(), 1);

    // A batch entry likewise.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": referral_doc("BA-1"), "request": {"method": "POST", "url": "Bundle"}}]});
    let text = f.svc.batch(&emr, batch.clone()).unwrap();
    let entries = response_entries(&text);
    assert_eq!(entries[0]["response"]["status"], "201 Created", "{text}");
    assert!(entries[0]["response"]["outcome"].to_string().contains("受信箱に届けました"), "{text}");
    assert_eq!(inbox(&f, ADDRESSEE).len(), 2);
    let text = f.svc.batch(&emr, batch).unwrap();
    assert_eq!(response_entries(&text)[0]["response"]["status"], "200 OK", "{text}");
    assert_eq!(inbox(&f, ADDRESSEE).len(), 2);

    // Without the national service's Bundle identifier it stays a plain Bundle resource, and
    // the sender is told it reached no inbox.
    let mut plain = referral_doc("PL-1");
    plain["identifier"] = json!({"system": "urn:example:documents", "value": "PL-1"});
    plain["meta"].as_object_mut().unwrap().remove("profile");
    let w = f.svc.create(&emr, ResourceType::Bundle, plain).unwrap();
    assert!(w.warnings.iter().any(|i| i.diagnostics.contains("受信箱には届いていません")), "{:?}", w.warnings);
    assert_eq!(inbox(&f, ADDRESSEE).len(), 2);
}

#[test]
fn a_refused_reading_is_audited() {
    // The gate's refusal of a letter of other facilities is audited as denied, as before.
    let f = fixture();
    let out = f.svc.submit_bundle(&system(SENDER), referral_doc("AU-1")).unwrap();
    let id = out.referral_id.unwrap();
    let e = f.svc.open_referral(&user("dr-other", Profession::Doctor, OTHER), &id).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    let (head, _) = f.store.audit_head().unwrap();
    let page = f.store.read(|r| r.audit_page(head - 1, 1)).unwrap();
    let a: musubi_domain::audit::AuditRecord = serde_json::from_str(&page[0].record).unwrap();
    assert_eq!((a.outcome, a.agent.name.as_str()), (AuditOutcome::SeriousFailure, "dr-other"));
    assert_eq!(a.outcome_text.as_deref(), Some("denied: 紹介元・紹介先以外の医療機関です"));
    assert_eq!(a.patient.as_deref(), Some(out.patient_id.as_str()));
}
