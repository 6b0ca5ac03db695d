//! Withdrawal (取り下げ) of a delivered 診療情報提供書 over HTTP, on both stores: the sender
//! deletes the letter's document Bundle by identifier (`DELETE /fhir/Bundle?identifier=…`); both
//! boxes then list it as 取り下げ with the time and who (a receipt made before stays shown),
//! opening it answers 410 saying the sender withdrew it (not retention), its file and attached
//! 退院時サマリー are gone, and the withdrawal is audited. Posting the same identifier again sends
//! a new letter (a new referral, 未受領) beside the withdrawn one.

use crate::common::*;
use base64::Engine;
use musubi_store::Store;
use reqwest::Method;
use serde_json::{Value, json};

const SENDER: &str = "1318814790";
const ADDRESSEE: &str = "1311234567";

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n";

fn facilities(s: &TestServer) {
    for (code, name, class) in [(SENDER, "結び総合病院", "hospital"), (ADDRESSEE, "むすびクリニック", "clinic")]
    {
        let r = api(
            &s.client(&s.admin),
            Method::POST,
            "/admin/facilities",
            Some(json!({"code": code, "name": name, "class": class, "prefecture": 13, "area": "1301"})),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
}

/// A clinician logged in with password and TOTP.
fn user(s: &TestServer, login: &str, profession: &str, facility: &str) -> Client {
    let pw = "Musubi-pass-2026";
    let r = api(
        &s.client(&s.admin),
        Method::POST,
        "/admin/users",
        Some(
            json!({"login": login, "name": format!("{login} 先生"), "profession": profession, "facilities": [facility], "password": pw}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let secret = r.body["totp_secret"].as_str().unwrap().to_owned();
    let r = api(&s.client(""), Method::POST, "/login", Some(json!({"login": login, "password": pw})));
    assert_eq!(r.status, 200, "login {login}: {}", r.text);
    let c = s.client(r.body["token"].as_str().unwrap());
    let code = musubi_service::people::totp_code_now(&secret).unwrap();
    let r = api(&c, Method::POST, "/login/totp", Some(json!({"code": code})));
    assert_eq!(r.status, 200, "{}", r.text);
    // The login completes under a new token; the pending one is dead.
    let mut c = c;
    c.token = r.body["token"].as_str().unwrap().to_owned();
    c
}

/// The reference 診療情報提供書 with its own Bundle identifier.
fn referral_doc(local: &str) -> Value {
    let mut d = read_json(&reference_dir().join("jp-clins/examples/Bundle-Bundle-CLINS-Referral-Example-01.json"));
    d["identifier"]["value"] = json!(format!("{SENDER}^2024^{local}"));
    d
}

/// A 退院時サマリー built from the example's resources with the sections the eDischargeSummary
/// profile requires.
fn discharge_doc(local: &str) -> Value {
    let mut d = referral_doc(local);
    d["meta"]["profile"] = json!(["http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_eDischargeSummary|1"]);
    let purpose = "urn:uuid:3acc3dc7-c79b-41f1-8eea-ac4de9b664b8";
    d["entry"].as_array_mut().unwrap().retain(|e| e["fullUrl"] != purpose);
    let section = |code: &str, title: &str, refs: &[(&str, &str)]| {
        let mut s = json!({"title": title, "code": {"coding": [{"system": "http://jpfhir.jp/fhir/clins/CodeSystem/document-section", "code": code}]},
            "text": {"status": "additional", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{title}</div>")}});
        if !refs.is_empty() {
            s["entry"] = refs.iter().map(|(u, t)| json!({"reference": format!("urn:uuid:{u}"), "type": t})).collect();
        }
        s
    };
    let enc = ("7cad1f19-3435-451d-9a71-a81b61f3358e", "Encounter");
    let cc1 = ("6a31db8e-109d-4349-b0cf-095131c3307a", "Condition");
    let structured = json!([
        section("322", "入院時詳細", &[enc]),
        section("342", "入院時診断", &[cc1]),
        section("352", "主訴", &[("a9358f3e-c743-4998-aa89-1be54c31b432", "Condition")]),
        section("312", "入院理由", &[]),
        section("362", "現病歴", &[("5eab50b2-6741-467c-a2fd-a4adab1f835f", "Condition")]),
        section("333", "入院中経過", &[("a6e4fc73-a749-4583-94a7-18e4241b4c75", "DocumentReference")]),
        section("324", "退院時詳細", &[enc]),
        section("344", "退院時診断", &[cc1]),
        section("444", "退院時投薬指示", &[]),
        section("424", "退院時方針指示", &[]),
    ]);
    let c = &mut d["entry"][0]["resource"];
    c["meta"]["profile"] =
        json!(["http://jpfhir.jp/fhir/eDischargeSummary/StructureDefinition/JP_Composition_eDischargeSummary|1"]);
    c["type"]["coding"][0]["code"] = json!("18842-5");
    c["type"]["coding"][0]["display"] = json!("退院時サマリー");
    c["category"] = json!([{"coding": [{"system": "http://jpfhir.jp/fhir/Common/CodeSystem/doc-subtypecodes", "code": "DISCHARGE"}]}]);
    c["title"] = json!("退院時サマリー");
    c["event"] = json!([{"period": {"start": "2020-08-01", "end": "2020-08-20"}}]);
    for s in c["section"].as_array_mut().unwrap() {
        if s["code"]["coding"][0]["code"] == "300" {
            s["section"] = structured.clone();
        }
    }
    d
}

fn delete_path(local: &str) -> String {
    format!("Bundle?identifier=http%3A%2F%2Fjpfhir.jp%2Ffhir%2Fclins%2Fbundle-identifier%7C{SENDER}%5E2024%5E{local}")
}

/// The referral `id` as a box lists it.
fn listed(c: &Client, which: &str, id: &str) -> Value {
    let r = api(c, Method::GET, &format!("/referrals/{which}"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["referrals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in the {which}: {}", r.text))
        .clone()
}

fn audit_subtypes(s: &TestServer) -> Vec<Value> {
    s.store
        .read(|r| r.audit_page(0, 100_000))
        .unwrap()
        .iter()
        .map(|a| serde_json::from_str::<Value>(&a.record).unwrap())
        .collect()
}

fn scenario(s: &TestServer) {
    facilities(s);
    let dr_send = user(s, "dr-send", "doctor", SENDER);
    let dr_to = user(s, "dr-to", "doctor", ADDRESSEE);
    let emr = s.client(&s.token(SENDER, "sender-emr"));

    // A letter sent through the referral API with a PDF; the addressee opens it (received).
    let r = api(
        &dr_send,
        Method::POST,
        "/referrals",
        Some(json!({"document": referral_doc("WD-1"), "discharge_summary": discharge_doc("WD-1-DS"),
               "attachments": [{"filename": "紹介状 写し.pdf", "content_type": "application/pdf",
                                "data": base64::engine::general_purpose::STANDARD.encode(PDF)}]})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let open = api(&dr_to, Method::GET, &format!("/referrals/{id}"), None);
    assert_eq!(open.status, 200, "{}", open.text);
    assert_eq!(open.body["received_now"], true);
    let bundle_id = open.body["bundle_id"].as_str().unwrap().to_owned();
    assert_eq!(open.body["discharge_summary"]["identifier"]["value"], format!("{SENDER}^2024^WD-1-DS"));
    assert!(s.store.read(|r| r.bundle_submission(&format!("{SENDER}^2024^WD-1-DS"))).unwrap().is_some());
    assert_eq!(api(&dr_to, Method::GET, &format!("/referrals/{id}/files/0"), None).status, 200);

    // The sender withdraws it by deleting the document by identifier.
    let del = dr_send.delete(&delete_path("WD-1"));
    assert_eq!(del.status, 200, "{}", del.text);

    // Both boxes show it withdrawn, with when and who; the inbox still shows the receipt.
    for (c, which) in [(&dr_send, "outbox"), (&dr_to, "inbox")] {
        let x = listed(c, which, &id);
        assert_eq!((x["status"].as_str(), x["status_label"].as_str()), (Some("withdrawn"), Some("取り下げ")), "{x}");
        assert_eq!(x["withdrawn_by"], "dr-send", "{x}");
        assert_eq!(x["deleted_reason"], "withdrawn", "{x}");
        assert!(x["deleted_at"].is_string(), "{x}");
        assert_eq!(x["received_by"], "dr-to", "{x}");
        assert!(x["received_at"].is_string(), "{x}");
        // The patient and the files are no longer shown; the title is.
        assert_eq!(x["patient"], Value::Null, "{x}");
        assert_eq!(x["files"], json!([]), "{x}");
        assert_eq!(x["title"], "診療情報提供書", "{x}");
        assert_eq!(x["delete_after"], Value::Null, "{x}");
    }

    // Opening answers 410 naming the withdrawal, not retention; the file is gone too.
    for c in [&dr_to, &dr_send] {
        let gone = api(c, Method::GET, &format!("/referrals/{id}"), None);
        assert_eq!(gone.status, 410, "{}", gone.text);
        let d = gone.diagnostics();
        assert!(d.contains("紹介元（結び総合病院 1318814790）が") && d.contains("取り下げました"), "{d}");
        assert!(!d.contains("保存期間"), "{d}");
        let file = api(c, Method::GET, &format!("/referrals/{id}/files/0"), None);
        assert_eq!(file.status, 410, "{}", file.text);
    }
    // The document itself is deleted, and the attached 退院時サマリー with it.
    assert_eq!(dr_send.get(&format!("Bundle/{bundle_id}")).status, 410);
    let ds_key = format!("{SENDER}^2024^WD-1-DS");
    assert!(s.store.read(|r| r.bundle_submission(&ds_key)).unwrap().is_none(), "the discharge summary is gone");
    assert_eq!(dr_send.delete(&delete_path("WD-1-DS")).status, 404);
    // A reply to a withdrawn letter is refused.
    let reply =
        api(&dr_to, Method::POST, &format!("/referrals/{id}/reply"), Some(json!({"document": referral_doc("WD-1R")})));
    assert_eq!(reply.status, 410, "{}", reply.text);

    // The withdrawal is audited with the deletion, naming the letter and the patient.
    let audits = audit_subtypes(s);
    let w: Vec<&Value> = audits.iter().filter(|a| a["subtype"] == "referral-withdraw").collect();
    assert_eq!(w.len(), 1, "{audits:?}");
    assert_eq!(w[0]["agent"]["name"], "dr-send");
    assert_eq!(w[0]["query"], format!("referral={id}&Bundle?identifier={SENDER}^2024^WD-1"));
    assert!(w[0]["patient"].is_string(), "{}", w[0]);
    assert!(w[0]["entities"].to_string().contains(&format!("Bundle/{bundle_id}")), "{}", w[0]);
    assert_eq!(w[0]["entities"].as_array().unwrap().len(), 2, "the letter and its discharge summary: {}", w[0]);
    // Deleting it again finds nothing: the submission is gone.
    assert_eq!(dr_send.delete(&delete_path("WD-1")).status, 404);

    // A letter posted as a FHIR document Bundle, withdrawn before the addressee opened it.
    let r = emr.post("Bundle", &referral_doc("WD-2"));
    assert_eq!(r.status, 201, "{}", r.text);
    let inbox = api(&dr_to, Method::GET, "/referrals/inbox", None);
    let id2 = inbox.body["referrals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["status"] == "sent")
        .unwrap_or_else(|| panic!("no new letter: {}", inbox.text))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let del = emr.delete(&delete_path("WD-2"));
    assert_eq!(del.status, 200, "{}", del.text);
    let x = listed(&dr_to, "inbox", &id2);
    assert_eq!((x["status_label"].as_str(), x["withdrawn_by"].as_str()), (Some("取り下げ"), Some("sender-emr")), "{x}");
    assert_eq!(x["received_at"], Value::Null, "{x}");
    let gone = api(&dr_to, Method::GET, &format!("/referrals/{id2}"), None);
    assert_eq!(gone.status, 410, "{}", gone.text);
    assert!(gone.diagnostics().contains("取り下げました"), "{}", gone.text);
    // Opening a withdrawn letter does not mark it received.
    assert_eq!(listed(&dr_to, "inbox", &id2)["received_at"], Value::Null);

    // The same identifier posted again is a new letter: a new referral, not yet received,
    // beside the withdrawn one (which stays withdrawn).
    let again = emr.post("Bundle", &referral_doc("WD-2"));
    assert_eq!(again.status, 201, "{}", again.text);
    let inbox = api(&dr_to, Method::GET, "/referrals/inbox", None);
    let rows = inbox.body["referrals"].as_array().unwrap();
    let fresh: Vec<&Value> = rows.iter().filter(|x| x["status"] == "sent").collect();
    assert_eq!(fresh.len(), 1, "{}", inbox.text);
    let id3 = fresh[0]["id"].as_str().unwrap().to_owned();
    assert_ne!(id3, id2);
    assert_eq!(fresh[0]["patient"]["name"], "牧野 爛漫");
    assert_eq!(listed(&dr_to, "inbox", &id2)["status"], "withdrawn");
    let open = api(&dr_to, Method::GET, &format!("/referrals/{id3}"), None);
    assert_eq!(open.status, 200, "{}", open.text);
    assert_eq!(open.body["document"]["identifier"]["value"], format!("{SENDER}^2024^WD-2"));
    // Withdrawn letters are listed without include_deleted; three letters in all.
    assert_eq!(rows.len(), 3, "{}", inbox.text);

    // The explicit withdrawal over the API: refused to the addressee, done for the sender.
    let refused = api(&dr_to, Method::POST, &format!("/referrals/{id3}/withdraw"), None);
    assert_eq!(refused.status, 403, "{}", refused.text);
    let w = api(&dr_send, Method::POST, &format!("/referrals/{id3}/withdraw"), None);
    assert_eq!(w.status, 200, "{}", w.text);
    assert_eq!(
        (w.body["status"].as_str(), w.body["withdrawn_by"].as_str()),
        (Some("withdrawn"), Some("dr-send")),
        "{}",
        w.text
    );
    assert_eq!(listed(&dr_to, "inbox", &id3)["status_label"], "取り下げ");
    assert_eq!(api(&dr_to, Method::GET, &format!("/referrals/{id3}"), None).status, 410);
    let twice = api(&dr_send, Method::POST, &format!("/referrals/{id3}/withdraw"), None);
    assert_eq!(twice.status, 410, "{}", twice.text);
}

#[test]
fn a_withdrawn_referral_sqlite() {
    scenario(&TestServer::start());
}

#[test]
fn a_withdrawn_referral_postgres() {
    let db = FreshDb::new("musubi_referral_withdraw");
    {
        let store = Store::open_postgres(&db.url).unwrap();
        let server = TestServer::start_on(store, tempfile::tempdir().unwrap());
        scenario(&server);
    }
}
