//! A 診療情報提供書 posted as a plain FHIR document Bundle reaches the addressee's inbox, over
//! HTTP, on both stores: `POST /fhir/Bundle` with the reference eReferral example shows up in the
//! addressee's `/api/referrals/inbox` and opens there as the very Bundle that was posted;
//! posting it again adds nothing; a document without one registered addressee (none, two, an
//! unknown one) is stored all the same with a warning in Japanese; a transaction carrying one
//! delivers it too.

use crate::common::*;
use musubi_store::Store;
use reqwest::Method;
use serde_json::{Value, json};

/// The example's Bundle identifier facility (the sender) and its 紹介先 (the addressee).
const SENDER: &str = "1318814790";
const ADDRESSEE: &str = "1311234567";
const OTHER: &str = "1319999990";
/// A valid code no facility of the network has.
const UNKNOWN: &str = "1311111119";

fn facilities(s: &TestServer) {
    for (code, name, class) in [
        (SENDER, "結び総合病院", "hospital"),
        (ADDRESSEE, "むすびクリニック", "clinic"),
        (OTHER, "よその病院", "hospital"),
    ] {
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

/// The reference 診療情報提供書 with its own Bundle identifier, addressed to `to`.
fn referral_doc(local: &str, to: &str) -> Value {
    let text =
        std::fs::read_to_string(reference_dir().join("jp-clins/examples/Bundle-Bundle-CLINS-Referral-Example-01.json"))
            .unwrap()
            .replace(ADDRESSEE, to);
    let mut d: Value = serde_json::from_str(&text).unwrap();
    d["identifier"]["value"] = json!(format!("{SENDER}^2024^{local}"));
    d
}

/// The issues of an OperationOutcome with the given severity, as `diagnostics` texts.
fn issues(r: &Resp, severity: &str) -> Vec<String> {
    r.body["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["severity"] == severity)
        .filter_map(|i| i["diagnostics"].as_str().map(str::to_owned))
        .collect()
}

/// The warnings about delivery (validation warnings carry a rule in `details`).
fn delivery_warnings(r: &Resp) -> Vec<String> {
    r.body["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["severity"] == "warning" && i["details"].is_null())
        .filter_map(|i| i["diagnostics"].as_str().map(str::to_owned))
        .collect()
}

fn inbox_ids(c: &Client) -> Vec<String> {
    let r = api(c, Method::GET, "/referrals/inbox", None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["referrals"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_owned()).collect()
}

fn scenario(s: &TestServer) {
    facilities(s);
    let emr = s.client(&s.token(SENDER, "sender-emr"));
    let dr_to = user(s, "dr-to", "doctor", ADDRESSEE);
    let dr_other = user(s, "dr-other", "doctor", OTHER);

    // The sender's EMR posts the letter as a FHIR document Bundle.
    let r = emr.post("Bundle", &referral_doc("FB-100", ADDRESSEE));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["resourceType"], "OperationOutcome");
    assert!(delivery_warnings(&r).is_empty(), "{}", r.text);
    let info = issues(&r, "information").join(" | ");
    assert!(info.contains(&format!("むすびクリニック（{ADDRESSEE}）の受信箱に届けました")), "{info}");
    let location = r.headers["location"].to_str().unwrap().to_owned();
    let bundle_id = location.rsplit('/').next().unwrap().to_owned();

    // It is in the addressee's inbox, not yet received, and nowhere else.
    let inbox = api(&dr_to, Method::GET, "/referrals/inbox", None);
    assert_eq!(inbox.status, 200, "{}", inbox.text);
    let items = inbox.body["referrals"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", inbox.text);
    let id = items[0]["id"].as_str().unwrap().to_owned();
    assert!(info.contains(&id), "{info}");
    assert_eq!(items[0]["status_label"], "未受領");
    assert_eq!(items[0]["sender"], json!({"code": SENDER, "name": "結び総合病院"}));
    assert_eq!(items[0]["patient"]["name"], "牧野 爛漫");
    assert_eq!(items[0]["title"], "診療情報提供書");
    assert_eq!(items[0]["created_by"], "sender-emr");
    assert!(inbox_ids(&dr_other).is_empty());
    // The addressee's doctor opens the very Bundle that was posted, and receives it.
    let open = api(&dr_to, Method::GET, &format!("/referrals/{id}"), None);
    assert_eq!(open.status, 200, "{}", open.text);
    assert_eq!(open.body["received_now"], true);
    assert_eq!(open.body["received_by"], "dr-to");
    assert_eq!(open.body["bundle_id"], bundle_id.as_str());
    assert_eq!(open.body["document"]["identifier"]["value"], format!("{SENDER}^2024^FB-100"));
    // Another facility is told nothing.
    assert_eq!(api(&dr_other, Method::GET, &format!("/referrals/{id}"), None).status, 404);

    // Posting the same Bundle again changes nothing and delivers nothing more.
    let again = emr.post("Bundle", &referral_doc("FB-100", ADDRESSEE));
    assert_eq!(again.status, 200, "{}", again.text);
    assert!(issues(&again, "information").join(" ").contains("以前の送信と同一"), "{}", again.text);
    assert_eq!(inbox_ids(&dr_to), vec![id.clone()]);

    // No registered addressee: stored as before, with a warning saying why it reached no inbox.
    let r = emr.post("Bundle", &referral_doc("FB-101", UNKNOWN));
    assert_eq!(r.status, 201, "{}", r.text);
    let w = delivery_warnings(&r);
    assert_eq!(w.len(), 1, "{}", r.text);
    assert!(w[0].starts_with("この診療情報提供書は保存しましたが、紹介先の受信箱には届いていません。"), "{}", w[0]);
    assert!(w[0].contains(&format!("紹介先の医療機関 {UNKNOWN} はネットワークに登録されていません")), "{}", w[0]);
    let stored_at = r.headers["location"].to_str().unwrap().to_owned();
    let stored = emr.get(&stored_at);
    assert_eq!(stored.status, 200, "{}", stored.text);
    assert_eq!(stored.body["identifier"]["value"], format!("{SENDER}^2024^FB-101"));
    // Two addressees: which one is meant cannot be told.
    let mut two = referral_doc("FB-102", ADDRESSEE);
    let org = two["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["resource"]["resourceType"] == "Organization" && e["resource"]["identifier"][0]["value"] == ADDRESSEE
        })
        .unwrap()
        .clone();
    let mut second = org.clone();
    second["fullUrl"] = json!("urn:uuid:0b0f4bd3-2f63-4b61-9e6a-5d0c1b8a0f11");
    second["resource"]["identifier"][0]["value"] = json!(OTHER);
    two["entry"].as_array_mut().unwrap().push(second);
    for sec in two["entry"][0]["resource"]["section"].as_array_mut().unwrap() {
        if sec["code"]["coding"][0]["code"] == "910" {
            sec["entry"]
                .as_array_mut()
                .unwrap()
                .push(json!({"reference": "urn:uuid:0b0f4bd3-2f63-4b61-9e6a-5d0c1b8a0f11", "type": "Organization"}));
        }
    }
    let r = emr.post("Bundle", &two);
    assert_eq!(r.status, 201, "{}", r.text);
    let w = delivery_warnings(&r).join(" | ");
    assert!(w.contains(&format!("紹介先の医療機関が複数あり（{ADDRESSEE}、{OTHER}）")), "{w}");
    // None: the 紹介先 section names no Organization.
    let mut none = referral_doc("FB-103", ADDRESSEE);
    let org_url = org["fullUrl"].clone();
    for sec in none["entry"][0]["resource"]["section"].as_array_mut().unwrap() {
        if sec["code"]["coding"][0]["code"] == "910" {
            sec["entry"].as_array_mut().unwrap().retain(|e| e["reference"] != org_url);
        }
    }
    let r = emr.post("Bundle", &none);
    assert_eq!(r.status, 201, "{}", r.text);
    let w = delivery_warnings(&r).join(" | ");
    assert!(w.contains("紹介先医療機関（Organization）がありません"), "{w}");
    assert_eq!(
        r.body["issue"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["severity"] == "warning" && i["details"].is_null())
            .unwrap()["expression"][0],
        "Bundle.entry[0].resource.section"
    );
    assert_eq!(inbox_ids(&dr_to), vec![id.clone()]);
    assert!(inbox_ids(&dr_other).is_empty());

    // A transaction carrying a letter delivers it in the same commit; again, nothing more.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5e1b8f5c-7d59-4d7e-9b8a-3f1f8f0d1a02", "resource": referral_doc("TX-100", ADDRESSEE),
         "request": {"method": "POST", "url": "Bundle"}}]});
    let r = emr.post("", &tx);
    assert_eq!(r.status, 200, "{}", r.text);
    let entry = &r.body["entry"][0]["response"];
    assert_eq!(entry["status"], "201 Created", "{}", r.text);
    assert!(entry["outcome"].to_string().contains("受信箱に届けました"), "{}", r.text);
    let ids = inbox_ids(&dr_to);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(emr.post("", &tx).body["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(inbox_ids(&dr_to), ids);
}

#[test]
fn a_posted_referral_document_reaches_the_inbox_sqlite() {
    scenario(&TestServer::start());
}

#[test]
fn a_posted_referral_document_reaches_the_inbox_postgres() {
    let db = FreshDb::new("musubi_referral_bundle");
    {
        let store = Store::open_postgres(&db.url).unwrap();
        let server = TestServer::start_on(store, tempfile::tempdir().unwrap());
        scenario(&server);
    }
}
