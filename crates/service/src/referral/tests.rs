//! Referral exchange and the retention sweep at the service level (embedded store): sending,
//! the inbox and outbox, receipt, who may open what, files, replies, signatures, and what the
//! sweep removes and keeps.

use musubi_domain::audit::AuditOutcome;
use musubi_domain::{FacilityCode, Profession, ResourceClass};
use musubi_fhir::ResourceType;
use musubi_gate::{Actor, UserActor};
use musubi_store::Store;
use serde_json::{Value, json};

use super::*;
use crate::signature::tests::{DETACHED, Pki, sign};

/// The example's Bundle identifier facility (the sender) and its 紹介先 (the addressee).
const SENDER: &str = "1318814790";
const ADDRESSEE: &str = "1311234567";
const OTHER: &str = "1319999990";
const DAY: i64 = 86_400_000;

pub(crate) struct Fixture {
    pub svc: Service,
    _dir: tempfile::TempDir,
}

pub(crate) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::new(Store::open_sqlite(dir.path()).unwrap(), "test");
    let op = Ctx::operator("test");
    for (code, name, class) in [
        (SENDER, "結び総合病院", "hospital"),
        (ADDRESSEE, "むすびクリニック", "clinic"),
        (OTHER, "よその病院", "hospital"),
    ] {
        let row = musubi_store::FacilityRow {
            code: code.into(),
            name: name.into(),
            class: class.into(),
            prefecture: 13,
            area: "1301".into(),
            area_name: "区中央部".into(),
            discloses: true,
            views: true,
        };
        svc.register_facility(&op, row, vec![]).unwrap();
    }
    Fixture { svc, _dir: dir }
}

pub(crate) fn user(login: &str, profession: Profession, facility: &str) -> Ctx {
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

fn example() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../reference/jp-clins/examples/Bundle-Bundle-CLINS-Referral-Example-01.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The reference 診療情報提供書 with its own Bundle identifier.
pub(crate) fn referral_doc(local: &str) -> Value {
    let mut d = example();
    d["identifier"]["value"] = json!(format!("{SENDER}^2024^{local}"));
    d
}

/// A reply letter from the addressee: the same document shape, the facilities swapped.
fn reply_doc(local: &str) -> Value {
    let text =
        example().to_string().replace(SENDER, "XXXXXXXXXX").replace(ADDRESSEE, SENDER).replace("XXXXXXXXXX", ADDRESSEE);
    let mut d: Value = serde_json::from_str(&text).unwrap();
    d["identifier"]["value"] = json!(format!("{ADDRESSEE}^2024^{local}"));
    d
}

/// A 退院時サマリー made from the example's resources: Composition type 18842-5, category
/// DISCHARGE, the eDischargeSummary profiles and the structured sections that profile requires.
pub(crate) fn discharge_doc(local: &str) -> Value {
    let mut d = referral_doc(local);
    d["meta"]["profile"] = json!(["http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_eDischargeSummary|1"]);
    // One Encounter only: drop the referral-purpose one.
    let purpose = "urn:uuid:3acc3dc7-c79b-41f1-8eea-ac4de9b664b8";
    if let Some(entries) = d["entry"].as_array_mut() {
        entries.retain(|e| e["fullUrl"] != purpose);
    }
    let section = |code: &str, title: &str, refs: &[(&str, &str)]| {
        let mut s = json!({"title": title, "code": {"coding": [{"system": "http://jpfhir.jp/fhir/clins/CodeSystem/document-section", "code": code}]},
            "text": {"status": "additional", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{title}</div>")}});
        if !refs.is_empty() {
            s["entry"] = refs.iter().map(|(u, t)| json!({"reference": format!("urn:uuid:{u}"), "type": t})).collect();
        }
        s
    };
    let encounter = ("7cad1f19-3435-451d-9a71-a81b61f3358e", "Encounter");
    let cc1 = ("6a31db8e-109d-4349-b0cf-095131c3307a", "Condition");
    let cc2 = ("a9358f3e-c743-4998-aa89-1be54c31b432", "Condition");
    let structured = vec![
        section("322", "入院時詳細", &[encounter]),
        section("342", "入院時診断", &[cc1]),
        section("352", "主訴", &[cc2]),
        section("312", "入院理由", &[]),
        section("362", "現病歴", &[("5eab50b2-6741-467c-a2fd-a4adab1f835f", "Condition")]),
        section("333", "入院中経過", &[("a6e4fc73-a749-4583-94a7-18e4241b4c75", "DocumentReference")]),
        section("324", "退院時詳細", &[encounter]),
        section("344", "退院時診断", &[cc1]),
        section("444", "退院時投薬指示", &[]),
        section("424", "退院時方針指示", &[]),
    ];
    let c = &mut d["entry"][0]["resource"];
    c["meta"]["profile"] =
        json!(["http://jpfhir.jp/fhir/eDischargeSummary/StructureDefinition/JP_Composition_eDischargeSummary|1"]);
    c["type"]["coding"][0]["code"] = json!("18842-5");
    c["type"]["coding"][0]["display"] = json!("退院時サマリー");
    c["category"] = json!([{"coding": [{"system": "http://jpfhir.jp/fhir/Common/CodeSystem/doc-subtypecodes", "code": "DISCHARGE", "display": "退院時文書"}]}]);
    c["title"] = json!("退院時サマリー");
    c["event"] = json!([{"period": {"start": "2020-08-01", "end": "2020-08-20"}}]);
    if let Some(sections) = c["section"].as_array_mut() {
        for s in sections.iter_mut() {
            if s["code"]["coding"][0]["code"] == "300" {
                s["section"] = Value::Array(structured.clone());
            }
        }
    }
    d
}

fn bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn send(f: &Fixture, ctx: &Ctx, doc: &Value) -> ReferralSummary {
    f.svc.send_referral(ctx, NewReferral { document: Some(bytes(doc)), ..Default::default() }).unwrap()
}

fn last_audit(f: &Fixture) -> musubi_domain::audit::AuditRecord {
    let (head, _) = f.svc.store().audit_head().unwrap();
    let page = f.svc.store().read(|r| r.audit_page(head - 1, 1)).unwrap();
    serde_json::from_str(&page[0].record).unwrap()
}

#[test]
fn send_inbox_open_receipt_outbox() {
    let f = fixture();
    let dr = user("dr-send", Profession::Doctor, SENDER);
    let sent = send(&f, &dr, &referral_doc("R-1"));
    assert_eq!(sent.status, ReferralStatus::Sent);
    assert_eq!(sent.addressee, FacilityRef { code: ADDRESSEE.into(), name: Some("むすびクリニック".into()) });
    assert_eq!(sent.sender.name.as_deref(), Some("結び総合病院"));
    let p = sent.patient.clone().unwrap();
    assert_eq!(p.name.as_deref(), Some("牧野 爛漫"));
    assert_eq!(p.kana.as_deref(), Some("マキノ ランマン"));
    assert_eq!(p.birth_date.as_deref(), Some("1930-06-28"));
    assert_eq!(sent.author.as_deref(), Some("大河内 勘三郎"));
    assert_eq!(sent.signature.status, SignatureStatus::Unsigned);

    // The addressee's inbox: not yet received. A clerk (地域連携室) sees the list.
    let clerk = user("clerk-to", Profession::Clerk, ADDRESSEE);
    let inbox = f.svc.referral_inbox(&clerk, None, false).unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].id, sent.id);
    assert_eq!(inbox[0].status_label, "未受領");
    assert_eq!(inbox[0].received_at, None);
    // …but may not open it, and that is audited as denied.
    let e = f.svc.open_referral(&clerk, &sent.id).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.summary().contains("事務職"), "{}", e.summary());
    assert_eq!(last_audit(&f).outcome, AuditOutcome::SeriousFailure);
    // The sender's outbox.
    assert_eq!(f.svc.referral_outbox(&dr, None, false).unwrap()[0].status, ReferralStatus::Sent);
    // The sender opening it does not mark it received.
    let v = f.svc.open_referral(&dr, &sent.id).unwrap();
    assert!(!v.received_now);
    assert_eq!(v.summary.status, ReferralStatus::Sent);

    // Another facility: 404, audited as denied with the patient named (their history shows it).
    let stranger = user("dr-other", Profession::Doctor, OTHER);
    assert_eq!(f.svc.open_referral(&stranger, &sent.id).unwrap_err().kind, ErrorKind::NotFound);
    let a = last_audit(&f);
    assert_eq!(a.outcome, AuditOutcome::SeriousFailure);
    assert_eq!(a.agent.name, "dr-other");
    assert_eq!(a.patient, sent_patient(&f, &sent.id));
    assert!(f.svc.referral_inbox(&stranger, None, false).unwrap().is_empty());
    assert_eq!(f.svc.referral_inbox(&stranger, Some(ADDRESSEE), false).unwrap_err().kind, ErrorKind::Forbidden);

    // The addressee's doctor opens it: received, with time and who.
    let to = user("dr-to", Profession::Doctor, ADDRESSEE);
    let before = musubi_fhir::datetime::now_ms();
    let v = f.svc.open_referral(&to, &sent.id).unwrap();
    assert!(v.received_now);
    assert_eq!(v.summary.status, ReferralStatus::Received);
    assert_eq!(v.summary.received_by.as_deref(), Some("dr-to"));
    assert_eq!(v.summary.received_by_name.as_deref(), Some("dr-to 先生（医師）"));
    assert!(v.summary.received_at.unwrap() >= before);
    assert_eq!(v.document["identifier"]["value"], format!("{SENDER}^2024^R-1"));
    assert_eq!(v.summary.delete_after, Some(v.summary.received_at.unwrap() + KEEP_AFTER_RECEIPT_MS));
    let a = last_audit(&f);
    assert_eq!((a.subtype.as_str(), a.outcome_text.as_deref()), ("referral-open", Some("received")));
    // A second opening keeps the first receipt.
    let again = f.svc.open_referral(&user("ns-to", Profession::Nurse, ADDRESSEE), &sent.id).unwrap();
    assert!(!again.received_now);
    assert_eq!(again.summary.received_by.as_deref(), Some("dr-to"));
    // The sender sees it received.
    let out = f.svc.referral_outbox(&dr, None, false).unwrap();
    assert_eq!(out[0].status, ReferralStatus::Received);
    assert_eq!(out[0].received_by_name.as_deref(), Some("dr-to 先生（医師）"));
    // The referral opened the care relationship "a referral addressed to it" for the gate.
    let pid = sent_patient(&f, &sent.id).unwrap();
    let person = f.svc.store().read(|r| r.person_of_patient(&pid)).unwrap().unwrap();
    assert!(f.svc.store().read(|r| r.referral_recipients(&person)).unwrap().contains(&ADDRESSEE.to_owned()));
}

fn sent_patient(f: &Fixture, id: &str) -> Option<String> {
    let id = id.to_owned();
    f.svc.store().read(|r| r.referral(&id)).unwrap().unwrap().patient_id
}

#[test]
fn what_may_not_be_sent() {
    let f = fixture();
    let dr = user("dr", Profession::Doctor, SENDER);
    let send_err = |ctx: &Ctx, new: NewReferral| f.svc.send_referral(ctx, new).unwrap_err();
    // A clerk may not send a letter.
    let e = send_err(
        &user("c", Profession::Clerk, SENDER),
        NewReferral { document: Some(bytes(&referral_doc("A"))), ..Default::default() },
    );
    assert_eq!(e.kind, ErrorKind::Forbidden);
    // Another facility's document.
    let e = send_err(
        &user("x", Profession::Doctor, OTHER),
        NewReferral { document: Some(bytes(&referral_doc("A"))), ..Default::default() },
    );
    assert_eq!(e.kind, ErrorKind::Forbidden);
    // An addressee the document does not name.
    let e = send_err(
        &dr,
        NewReferral { addressee: Some(OTHER.into()), document: Some(bytes(&referral_doc("A"))), ..Default::default() },
    );
    assert_eq!((e.kind, e.issues[0].expression.as_deref()), (ErrorKind::Unprocessable, Some("addressee")));
    // Not registered in the network.
    let mut doc = referral_doc("A");
    let text = doc.to_string().replace(ADDRESSEE, "1311111119");
    doc = serde_json::from_str(&text).unwrap();
    let e = send_err(&dr, NewReferral { document: Some(bytes(&doc)), ..Default::default() });
    assert!(e.summary().contains("登録されていません"), "{}", e.summary());
    // A discharge summary is not a referral letter.
    let e = send_err(&dr, NewReferral { document: Some(bytes(&discharge_doc("A"))), ..Default::default() });
    assert!(e.summary().contains("57133-1"), "{}", e.summary());
    // Broken JSON names where.
    let e = send_err(&dr, NewReferral { document: Some(b"{\"resourceType\": ".to_vec()), ..Default::default() });
    assert_eq!(e.kind, ErrorKind::BadRequest);
    // Validation errors come back as issues naming the element.
    let mut bad = referral_doc("B");
    bad["entry"][0]["resource"]["status"] = json!("draft-ish");
    let e = send_err(&dr, NewReferral { document: Some(bytes(&bad)), ..Default::default() });
    assert_eq!(e.kind, ErrorKind::Unprocessable);
    assert!(e.issues.iter().any(|i| i.expression.as_deref().is_some_and(|x| x.contains("status"))), "{:?}", e.issues);
    // The same Bundle identifier twice.
    send(&f, &dr, &referral_doc("C"));
    let e = send_err(&dr, NewReferral { document: Some(bytes(&referral_doc("C"))), ..Default::default() });
    assert_eq!(e.kind, ErrorKind::Conflict);
    // The refusals are audited; nothing of the refused ones was stored.
    assert_eq!(last_audit(&f).outcome, AuditOutcome::MinorFailure);
    assert_eq!(f.svc.referral_outbox(&dr, None, true).unwrap().len(), 1);
}

fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n".to_vec()
}

fn png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend_from_slice(&[0, 0, 0, 13]);
    v
}

#[test]
fn files_and_discharge_summary() {
    let f = fixture();
    let dr = user("dr", Profession::Doctor, SENDER);
    let file = |name: &str, ct: &str, data: Vec<u8>| NewFile { filename: name.into(), content_type: ct.into(), data };
    let new = |files: Vec<NewFile>| NewReferral {
        document: Some(bytes(&referral_doc("F"))),
        discharge_summary: Some(discharge_doc("F-DS")),
        files,
        ..Default::default()
    };
    // A type not accepted, a type that lies, too many files.
    let e = f.svc.send_referral(&dr, new(vec![file("a.exe", "application/octet-stream", b"MZ".to_vec())])).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnsupportedMediaType);
    let e = f.svc.send_referral(&dr, new(vec![file("fake.pdf", "application/pdf", png())])).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnsupportedMediaType);
    assert!(e.summary().contains("fake.pdf") && e.summary().contains("PDF"), "{}", e.summary());
    let e = f
        .svc
        .send_referral(&dr, new((0..11).map(|i| file(&format!("{i}.pdf"), "application/pdf", pdf())).collect()))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PayloadTooLarge);
    let e = f
        .svc
        .send_referral(&dr, new(vec![file("big.pdf", "application/pdf", [pdf(), vec![0; MAX_FILE_BYTES]].concat())]))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PayloadTooLarge);

    // A discharge summary about someone else is refused.
    let mut other = discharge_doc("F-DS");
    let p =
        other["entry"].as_array_mut().unwrap().iter_mut().find(|e| e["resource"]["resourceType"] == "Patient").unwrap();
    p["resource"]["identifier"][0]["value"] = json!("000111222");
    let e = f.svc.send_referral(&dr, NewReferral { discharge_summary: Some(other), ..new(vec![]) }).unwrap_err();
    assert_eq!(
        (e.kind, e.issues[0].expression.as_deref()),
        (ErrorKind::Unprocessable, Some("discharge_summary.entry"))
    );

    let sent = f
        .svc
        .send_referral(
            &dr,
            new(vec![
                file("../../紹介状 写し.pdf", "application/pdf", pdf()),
                file("x線.png", "image/png; q=1", png()),
            ]),
        )
        .unwrap();
    assert!(sent.has_discharge_summary);
    let names: Vec<(&str, &str, i64)> =
        sent.files.iter().map(|f| (f.filename.as_str(), f.content_type.as_str(), f.size)).collect();
    assert_eq!(names, vec![("紹介状 写し.pdf", "application/pdf", pdf().len() as i64), ("x線.png", "image/png", 12)]);
    let to = user("dr-to", Profession::Doctor, ADDRESSEE);
    // Downloading a file is an opening too: it marks the receipt.
    let got = f.svc.referral_file(&to, &sent.id, 1).unwrap();
    assert_eq!((got.filename.as_str(), got.content_type.as_str(), got.data), ("x線.png", "image/png", png()));
    assert_eq!(f.svc.referral_outbox(&dr, None, false).unwrap()[0].status, ReferralStatus::Received);
    assert_eq!(f.svc.referral_file(&to, &sent.id, 7).unwrap_err().kind, ErrorKind::NotFound);
    let stranger = user("x", Profession::Doctor, OTHER);
    assert_eq!(f.svc.referral_file(&stranger, &sent.id, 0).unwrap_err().kind, ErrorKind::NotFound);
    let v = f.svc.open_referral(&to, &sent.id).unwrap();
    let ds = v.discharge_summary.unwrap();
    assert_eq!(ds["entry"][0]["resource"]["type"]["coding"][0]["code"], "18842-5");
    // The discharge summary is stored as a FHIR Bundle of its class, under the same patient.
    let did = f.svc.store().read(|r| r.referral(&sent.id)).unwrap().unwrap().discharge_id.unwrap();
    let row = f.svc.store().current(ResourceType::Bundle, &did).unwrap().unwrap();
    assert_eq!(row.meta.class, ResourceClass::DischargeSummary);
    assert_eq!(row.meta.patient_id, v.patient_id);
}

#[test]
fn replies_are_linked_and_mark_the_original_received() {
    let f = fixture();
    let dr = user("dr", Profession::Doctor, SENDER);
    let to = user("dr-to", Profession::Doctor, ADDRESSEE);
    let sent = send(&f, &dr, &referral_doc("Q"));
    // Only the addressee replies.
    let new = || NewReferral { document: Some(bytes(&reply_doc("ANS-1"))), ..Default::default() };
    assert_eq!(f.svc.reply_referral(&dr, &sent.id, new()).unwrap_err().kind, ErrorKind::Forbidden);
    assert_eq!(
        f.svc.reply_referral(&user("o", Profession::Doctor, OTHER), &sent.id, new()).unwrap_err().kind,
        ErrorKind::NotFound
    );
    let reply = f.svc.reply_referral(&to, &sent.id, new()).unwrap();
    assert_eq!(reply.reply_to.as_deref(), Some(sent.id.as_str()));
    assert_eq!(reply.addressee.code, SENDER);
    assert_eq!(reply.sender.code, ADDRESSEE);
    // The sender's inbox has the reply; its outbox links it to the original, now received.
    let inbox = f.svc.referral_inbox(&dr, None, false).unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].reply_to.as_deref(), Some(sent.id.as_str()));
    let out = f.svc.referral_outbox(&dr, None, false).unwrap();
    assert_eq!(out[0].replies, vec![reply.id.clone()]);
    assert_eq!(out[0].status, ReferralStatus::Received);
    assert_eq!(out[0].received_by.as_deref(), Some("dr-to"));
    // The reply is opened by the original sender like any referral.
    assert!(f.svc.open_referral(&dr, &reply.id).unwrap().received_now);
}

#[test]
fn signatures_are_checked_and_shown() {
    let f = fixture();
    let pki = Pki::new();
    f.svc.set_trust_roots(pki.roots());
    let dr = user("dr", Profession::Doctor, SENDER);
    let to = user("dr-to", Profession::Doctor, ADDRESSEE);
    let certs = [&pki.signer.cert, &pki.intermediate.cert];
    let signed = |local: &str,
                  party: &crate::signature::tests::Party,
                  chain: &[&x509_cert::Certificate],
                  tamper: bool| {
        let doc = bytes(&referral_doc(local));
        let sig = sign(&doc, party, chain, DETACHED);
        let sent_doc =
            if tamper { String::from_utf8(doc).unwrap().replace("牧野", "槙野").into_bytes() } else { doc };
        f.svc
            .send_referral(&dr, NewReferral { document: Some(sent_doc), signature: Some(sig), ..Default::default() })
            .unwrap()
    };
    let valid = signed("S1", &pki.signer, &certs, false);
    assert_eq!(valid.signature.status, SignatureStatus::Valid);
    let v = f.svc.open_referral(&to, &valid.id).unwrap();
    assert_eq!(v.signature_report.status, SignatureStatus::Valid);
    assert_eq!(v.signature_report.signer.as_ref().unwrap().subject, "CN=結 太郎,O=結びクリニック,C=JP");
    let tampered = signed("S2", &pki.signer, &certs, true);
    assert_eq!(tampered.signature.status, SignatureStatus::InvalidSignature);
    assert_eq!(tampered.patient.unwrap().name.as_deref(), Some("槙野 爛漫"), "the document is kept as sent");
    let stranger = signed("S3", &pki.stranger, &[&pki.stranger.cert, &pki.other_root.cert], false);
    assert_eq!(stranger.signature.status, SignatureStatus::UntrustedChain);
    let expired = signed("S4", &pki.expired, &[&pki.expired.cert, &pki.intermediate.cert], false);
    assert_eq!(expired.signature.status, SignatureStatus::Expired);
    // Enveloping: the document comes out of the signature.
    let doc = bytes(&referral_doc("S5"));
    let env = sign(&doc, &pki.signer, &certs, crate::signature::tests::How { detached: false, signed_attrs: true });
    let sent = f.svc.send_referral(&dr, NewReferral { signature: Some(env), ..Default::default() }).unwrap();
    assert_eq!(sent.signature.status, SignatureStatus::Valid);
    // The CRLs are the operator's too: once the signing CA's CRL lists the signer, a new letter
    // is 失効 (kept so at sending, per signer), and the letter sent before shows 失効 when opened
    // while keeping its result at sending.
    let crl = crate::signature::tests::crl(&pki.intermediate, &[(&pki.signer, rcgen::RevocationReason::KeyCompromise)]);
    f.svc.set_trust_roots(pki.roots_with(&[crl]));
    let revoked = signed("S6", &pki.signer, &certs, false);
    assert_eq!(revoked.signature.status, SignatureStatus::Revoked);
    assert_eq!(revoked.signature.label, "失効");
    let v = f.svc.open_referral(&to, &revoked.id).unwrap();
    let at_sending = v.signature_at_sending.unwrap();
    assert_eq!(at_sending.status, SignatureStatus::Revoked);
    assert_eq!(at_sending.signers[0].revocation, Some(crate::signature::Revocation::Revoked));
    let v = f.svc.open_referral(&to, &valid.id).unwrap();
    assert_eq!(v.signature_report.status, SignatureStatus::Revoked);
    assert_eq!(v.signature_at_sending.unwrap().status, SignatureStatus::Valid);
    // The roots are the operator's: removing them makes the same signature untrusted at once.
    f.svc.set_trust_roots(TrustRoots::empty());
    let v = f.svc.open_referral(&to, &valid.id).unwrap();
    assert_eq!(v.signature_report.status, SignatureStatus::UntrustedChain);
    assert_eq!(v.summary.signature.status, SignatureStatus::Valid, "the list keeps the result at sending");
}

fn lab(pid: &str, date: &str) -> Value {
    json!({"resourceType": "Observation",
        "extension": [{"url": musubi_domain::systems::EXT_INSTITUTION_NUMBER, "valueIdentifier": {"system": musubi_domain::systems::INSTITUTION_NUMBER, "value": SENDER}}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "code": "3D046000001920402", "display": "HbA1c"}]},
        "subject": {"reference": format!("Patient/{pid}")}, "effectiveDateTime": date,
        "valueQuantity": {"value": 6.1, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}})
}

fn condition(pid: &str, onset: &str, lts: bool) -> Value {
    let mut c = json!({"resourceType": "Condition",
        "extension": [{"url": musubi_domain::systems::EXT_INSTITUTION_NUMBER, "valueIdentifier": {"system": musubi_domain::systems::INSTITUTION_NUMBER, "value": SENDER}}],
        "subject": {"reference": format!("Patient/{pid}")},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-disease-keyNumber", "code": "20064591", "display": "２型糖尿病"}]},
        "onsetDateTime": onset, "recordedDate": onset});
    if lts {
        c["meta"] = json!({"tag": [{"system": musubi_domain::systems::EHRSHRS_INDICATION, "code": "LTS"}]});
    }
    c
}

#[test]
fn the_sweep_removes_referrals_after_receipt_and_after_six_months() {
    let f = fixture();
    let op = Ctx::operator("test");
    let dr = user("dr", Profession::Doctor, SENDER);
    let to = user("dr-to", Profession::Doctor, ADDRESSEE);
    let received = send(&f, &dr, &referral_doc("D1"));
    let never = send(&f, &dr, &referral_doc("D2"));
    f.svc.open_referral(&to, &received.id).unwrap();
    let now = musubi_fhir::datetime::now_ms();
    // Only operators sweep.
    assert_eq!(f.svc.retention_sweep(&dr, now).unwrap_err().kind, ErrorKind::Forbidden);
    // Six days after receipt: nothing.
    let r = f.svc.retention_sweep(&op, now + 6 * DAY).unwrap();
    assert_eq!((r.referrals_received, r.referrals_expired), (0, 0));
    // Eight days: the received one goes, with its document.
    let r = f.svc.retention_sweep(&op, now + 8 * DAY).unwrap();
    assert_eq!((r.referrals_received, r.referrals_expired), (1, 0));
    assert!(r.summary_ja().contains("受領後7日 1 件"), "{}", r.summary_ja());
    let e = f.svc.open_referral(&to, &received.id).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Gone);
    assert!(e.summary().contains("受領から7日"), "{}", e.summary());
    let row = f.svc.store().read(|r| r.referral(&received.id)).unwrap().unwrap();
    assert_eq!(row.summary, None, "what the list showed is wiped");
    assert_eq!(f.svc.referral_outbox(&dr, None, false).unwrap().len(), 1);
    let all = f.svc.referral_outbox(&dr, None, true).unwrap();
    assert_eq!(all.iter().find(|r| r.id == received.id).unwrap().status, ReferralStatus::Deleted);
    // Idempotent.
    let r = f.svc.retention_sweep(&op, now + 8 * DAY).unwrap();
    assert_eq!((r.referrals_received, r.referrals_expired, r.records_total()), (0, 0, 0));
    // The one never received: kept until six months after sending.
    let r = f.svc.retention_sweep(&op, now + 170 * DAY).unwrap();
    assert_eq!(r.referrals_expired, 0);
    let r = f.svc.retention_sweep(&op, now + 190 * DAY).unwrap();
    assert_eq!(r.referrals_expired, 1);
    // Every deletion batch is in the audit log, and the run's summary last.
    let a = last_audit(&f);
    assert_eq!(a.subtype, "retention-sweep");
    assert!(a.outcome_text.unwrap().contains("送信後6か月 1 件"));
    assert_eq!(f.svc.open_referral(&dr, &never.id).unwrap_err().kind, ErrorKind::Gone);
}

#[test]
fn purged_documents_leave_no_content_in_history() {
    let f = fixture();
    let op = Ctx::operator("test");
    let dr = user("dr", Profession::Doctor, SENDER);
    let sent = send(&f, &dr, &referral_doc("H1"));
    let bid = f.svc.store().read(|r| r.referral(&sent.id)).unwrap().unwrap().bundle_id.unwrap();
    f.svc.retention_sweep(&op, musubi_fhir::datetime::now_ms() + 200 * DAY).unwrap();
    let versions = f
        .svc
        .store()
        .read(|r| {
            let mut out = Vec::new();
            for v in 1..=3 {
                out.push(r.version(ResourceType::Bundle, &bid, Some(v))?);
            }
            Ok(out)
        })
        .unwrap();
    assert_eq!(versions[0], None, "version 1 (the content) is gone");
    let deletion = versions[1].as_ref().unwrap();
    assert!(deletion.deleted && deletion.content.is_none());
    let read = f.svc.read(&op, ResourceType::Bundle, &bid, None).unwrap_err();
    assert_eq!(read.kind, ErrorKind::Gone);
    // The submission is forgotten: the same identifier may be sent again.
    send(&f, &dr, &referral_doc("H1"));
}

#[test]
fn the_sweep_keeps_the_latest_three_lab_results_and_lts_records() {
    let f = fixture();
    let op = Ctx::operator("test");
    let emr = Ctx {
        actor: Actor::System { name: "emr".into(), facility: SENDER.parse().unwrap() },
        address: None,
        base_url: String::new(),
    };
    let sent = send(&f, &user("dr", Profession::Doctor, SENDER), &referral_doc("P"));
    let pid = sent_patient(&f, &sent.id).unwrap();
    let mut labs = Vec::new();
    for date in ["2019-01-10", "2019-02-10", "2019-03-10", "2019-04-10", "2019-05-10"] {
        labs.push(f.svc.create(&emr, ResourceType::Observation, lab(&pid, date)).unwrap().id);
    }
    let old = f.svc.create(&emr, ResourceType::Condition, condition(&pid, "2015-04-01", false)).unwrap().id;
    let kept = f.svc.create(&emr, ResourceType::Condition, condition(&pid, "2015-04-01", true)).unwrap().id;
    let recent = f.svc.create(&emr, ResourceType::Condition, condition(&pid, "2025-04-01", false)).unwrap().id;
    let r = f.svc.retention_sweep(&op, musubi_fhir::datetime::now_ms()).unwrap();
    assert_eq!(r.records.get("lab"), Some(&2), "{r:?}");
    assert_eq!(r.records.get("diagnosis"), Some(&1), "{r:?}");
    assert_eq!(r.kept_as_latest, 3);
    let gone = |t: ResourceType, id: &str| f.svc.store().current(t, id).unwrap().unwrap().deleted;
    assert!(gone(ResourceType::Observation, &labs[0]) && gone(ResourceType::Observation, &labs[1]));
    assert!(labs[2..].iter().all(|id| !gone(ResourceType::Observation, id)), "the newest 3 stay");
    assert!(gone(ResourceType::Condition, &old));
    assert!(!gone(ResourceType::Condition, &kept), "LTS is kept");
    assert!(!gone(ResourceType::Condition, &recent));
    // Idempotent: nothing more, the same three kept.
    let r = f.svc.retention_sweep(&op, musubi_fhir::datetime::now_ms()).unwrap();
    assert_eq!((r.records_total(), r.kept_as_latest), (0, 3));
    // A newer result arrives: the oldest of the three may go now.
    f.svc.create(&emr, ResourceType::Observation, lab(&pid, "2019-06-10")).unwrap();
    let r = f.svc.retention_sweep(&op, musubi_fhir::datetime::now_ms()).unwrap();
    assert_eq!(r.records.get("lab"), Some(&1));
    assert!(gone(ResourceType::Observation, &labs[2]));
}

#[test]
fn filenames_and_sniffing() {
    assert_eq!(clean_filename("C:\\Users\\x\\紹介状.pdf", 0), "紹介状.pdf");
    assert_eq!(clean_filename("../../etc/passwd", 0), "passwd");
    assert_eq!(clean_filename("..", 2), "attachment-3");
    assert_eq!(clean_filename("a\u{0}b\"c.png", 0), "abc.png");
    assert_eq!(sniff_file_type(&pdf()), Some("application/pdf"));
    assert_eq!(sniff_file_type(&png()), Some("image/png"));
    assert_eq!(sniff_file_type(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
    assert_eq!(sniff_file_type(b"MZ\x90"), None);
    assert_eq!(expiry_of(0), 181 * DAY, "1970-01-01 + 6 months = 1970-07-01");
}
