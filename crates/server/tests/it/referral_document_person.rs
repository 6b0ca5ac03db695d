//! Regression (commit ab24ce7): a JP-CLINS document Bundle posted at `POST /fhir/Bundle` is
//! filed under its patient's person as well as under the patient, so that it is part of the
//! person's whole record. Two facilities register the same patient (one person by the MPI's
//! deterministic link on the insurance identity); facility B posts the reference 診療情報提供書;
//! facility A's doctor finds it in `Patient/{A's id}/$everything` — whether B's registration
//! came before the document or was made by it.

use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// Facility A, where the doctor looks.
const A: &str = "1319999990";
/// Facility B, which sends the document (the example's Bundle identifier facility).
const B: &str = "1318814790";
/// The document's 紹介先 (neither of the two).
const TO: &str = "1311234567";
const INSURANCE: &str = "00012345:あいう:１８７:05";

fn example() -> Value {
    read_json(&reference_dir().join("jp-clins/examples/Bundle-Bundle-CLINS-Referral-Example-01.json"))
}

/// The example's Patient as registered at `facility` under the local id `local`.
fn patient_at(facility: &str, local: &str) -> Value {
    let mut p = example()["entry"][1]["resource"].clone();
    assert_eq!(p["resourceType"], "Patient");
    p.as_object_mut().unwrap().remove("id");
    p.as_object_mut().unwrap().remove("meta");
    p["identifier"] = json!([
        {"system": format!("urn:oid:1.2.392.100495.20.3.51.1{facility}"), "value": local},
        {"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID", "value": INSURANCE}
    ]);
    p
}

fn setup(s: &TestServer) -> (Client, Client, Client) {
    for (code, name, class) in
        [(A, "東京むすび病院", "hospital"), (B, "結び総合病院", "hospital"), (TO, "むすびクリニック", "clinic")]
    {
        let r = api(
            &s.client(&s.admin),
            Method::POST,
            "/admin/facilities",
            Some(json!({"code": code, "name": name, "class": class, "prefecture": 13, "area": "1301"})),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let pw = "Musubi-pass-2026";
    let r = api(
        &s.client(&s.admin),
        Method::POST,
        "/admin/users",
        Some(json!({"login": "dr-a", "name": "結 一郎", "profession": "doctor", "facilities": [A], "password": pw})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let secret = r.body["totp_secret"].as_str().unwrap().to_owned();
    let r = api(&s.client(""), Method::POST, "/login", Some(json!({"login": "dr-a", "password": pw})));
    assert_eq!(r.status, 200, "{}", r.text);
    let dr_a = s.client(r.body["token"].as_str().unwrap());
    let code = musubi_service::people::totp_code_now(&secret).unwrap();
    let r = api(&dr_a, Method::POST, "/login/totp", Some(json!({"code": code})));
    assert_eq!(r.status, 200, "{}", r.text);
    let mut dr_a = dr_a;
    dr_a.token = r.body["token"].as_str().unwrap().to_owned();
    (s.client(&s.token(A, "a-emr")), s.client(&s.token(B, "b-emr")), dr_a)
}

fn created(r: Resp) -> String {
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

/// What A's doctor finds in the person's whole record, as `Type/id`.
fn everything_seen_from_a(dr_a: &Client, a_patient: &str) -> Vec<String> {
    let r = dr_a.get(&format!("Patient/{a_patient}/$everything"));
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!("{}/{}", e["resource"]["resourceType"].as_str().unwrap(), e["resource"]["id"].as_str().unwrap())
        })
        .collect()
}

/// Posts the document from B; returns the stored Bundle's id (from the Location).
fn post_document(b_emr: &Client, local: &str) -> String {
    let mut doc = example();
    doc["identifier"]["value"] = json!(format!("{B}^2024^{local}"));
    let r = b_emr.post("Bundle", &doc);
    assert_eq!(r.status, 201, "{}", r.text);
    r.headers["location"].to_str().unwrap().rsplit('/').next().unwrap().to_owned()
}

#[test]
fn a_document_from_b_is_in_the_persons_record_seen_from_a() {
    let s = TestServer::start();
    let (a_emr, b_emr, dr_a) = setup(&s);
    let a_patient = created(a_emr.post("Patient", &patient_at(A, "A-0001")));
    // B registered the patient first, exactly as its document names them (so filing the
    // document writes no Patient, and nothing but the filing itself can put the document under
    // the person): the MPI links both registrations into one person.
    let b_patient = created(b_emr.post("Patient", &example()["entry"][1]["resource"]));
    // A's doctor: consent in person at the visit on a signed paper form the operator confirmed
    // (the patient lives in 高知県, outside the area opened by default).
    paper_visit_consent(&s, &dr_a, &a_patient);
    let before = everything_seen_from_a(&dr_a, &a_patient);
    assert!(before.contains(&format!("Patient/{b_patient}")), "one person: {before:?}");

    let bundle_id = post_document(&b_emr, "PR-1");
    // Filed under B's registration (the document's Patient is B's local id)…
    let stored = s.client(&s.admin).get(&format!("Bundle/{bundle_id}"));
    assert_eq!(stored.status, 200, "{}", stored.text);
    let seen = everything_seen_from_a(&dr_a, &a_patient);
    // …and so in the person's record that A's doctor sees.
    assert!(seen.contains(&format!("Bundle/{bundle_id}")), "{seen:?}");
    assert!(seen.contains(&format!("Patient/{a_patient}")) && seen.contains(&format!("Patient/{b_patient}")));
    let everything = dr_a.get(&format!("Patient/{a_patient}/$everything"));
    let doc = everything.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["id"] == bundle_id.as_str())
        .unwrap();
    assert_eq!(doc["resource"]["identifier"]["value"], format!("{B}^2024^PR-1"));
    // In the store: the document's patient is B's registration, its person A's.
    let person = s.store.read(|r| r.person_of_patient(&a_patient)).unwrap().unwrap();
    let row = s.store.current(musubi_fhir::ResourceType::Bundle, &bundle_id).unwrap().unwrap();
    assert_eq!(row.meta.patient_id.as_deref(), Some(b_patient.as_str()));
    assert_eq!(row.meta.person_id.as_deref(), Some(person.as_str()));
}

#[test]
fn a_document_that_registers_the_patient_at_b_is_in_the_persons_record_too() {
    let s = TestServer::start();
    let (a_emr, b_emr, dr_a) = setup(&s);
    let a_patient = created(a_emr.post("Patient", &patient_at(A, "A-0002")));
    paper_visit_consent(&s, &dr_a, &a_patient);
    // B has not registered the patient: the document's Patient becomes B's registration, and
    // the MPI links it to A's person after the commit.
    let bundle_id = post_document(&b_emr, "PR-2");
    let seen = everything_seen_from_a(&dr_a, &a_patient);
    assert!(seen.contains(&format!("Bundle/{bundle_id}")), "{seen:?}");
    assert_eq!(seen.iter().filter(|k| k.starts_with("Patient/")).count(), 2, "{seen:?}");
}
