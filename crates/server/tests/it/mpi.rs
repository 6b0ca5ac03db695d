//! The master patient index over HTTP: a Patient written at one facility is linked to the same
//! person at another, PIXm and PDQm `$match` find them, a doubtful pair waits in the review queue
//! for an operator, who keeps records apart, merges and splits; every decision survives a
//! restart and a rebuild, and what a patient set up follows their person through a merge.

use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};

const CLINIC: &str = "1312345678";
const HOSP: &str = "1318814790";

fn local_system(facility: &str) -> String {
    format!("urn:oid:1.2.392.100495.20.3.51.1{facility}")
}

fn patient(facility: &str, local: &str, insurance: Option<&str>, given: (&str, &str)) -> Value {
    let mut ids = vec![json!({"system": local_system(facility), "value": local})];
    if let Some(i) = insurance {
        ids.push(json!({"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID", "value": i}));
    }
    json!({"resourceType": "Patient", "identifier": ids,
        "name": [{"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "IDE"}], "text": format!("結 {}", given.0), "family": "結", "given": [given.0]},
                 {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}], "text": format!("ムスビ {}", given.1), "family": "ムスビ", "given": [given.1]}],
        "gender": "female", "birthDate": "1970-05-05",
        "telecom": [{"system": "phone", "value": "03-1234-5678"}],
        "address": [{"text": "東京都千代田区丸の内1-1", "postalCode": "100-0005", "state": "東京都", "city": "千代田区", "line": ["丸の内1-1"]}]})
}

/// `facility|local` → person, from the operator's links export.
fn links(s: &TestServer) -> std::collections::HashMap<String, String> {
    let r = api(&s.client(&s.admin), Method::GET, "/admin/mpi/links", None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (format!("{}|{}", f[0], f[1]), f[2].to_owned())
        })
        .collect()
}

fn reviews(s: &TestServer) -> Vec<Value> {
    let r = api(&s.client(&s.admin), Method::GET, "/admin/mpi/review", None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"].as_array().unwrap().clone()
}

fn post_patient(c: &Client, p: &Value) -> String {
    let r = c.post("Patient", p);
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

#[test]
fn linking_pix_match_review_merge_split_restart_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let store = musubi_store::Store::open_sqlite(dir.path()).unwrap();
    let s = TestServer::start_on(store, dir);
    let admin = s.client(&s.admin);
    for (code, name, class) in [(CLINIC, "結びクリニック", "clinic"), (HOSP, "東京結び病院", "hospital")] {
        let r = api(
            &admin,
            Method::POST,
            "/admin/facilities",
            Some(json!({"code": code, "name": name, "class": class, "prefecture": 13, "area": "1301", "cities": []})),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let clinic = s.client(&s.token(CLINIC, "clinic-emr"));
    let hosp = s.client(&s.token(HOSP, "hospital-emr"));

    // The clinic's patient and a laboratory result.
    let p1 = post_patient(&clinic, &patient(CLINIC, "C-0001", Some("06139999:ａ１:１２３:01"), ("花子", "ハナコ")));
    let obs = clinic.post(
        "Observation",
        &json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "code": "3D046000001920402", "display": "HbA1c"}]},
            "subject": {"reference": format!("Patient/{p1}")}, "effectiveDateTime": "2026-10-01",
            "valueQuantity": {"value": 7.2, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}),
    );
    assert_eq!(obs.status, 201, "{}", obs.text);
    let obs_id = obs.body["id"].as_str().unwrap().to_owned();

    // The hospital registers the same person under its own number, with the same insurance.
    let p2 = post_patient(&hosp, &patient(HOSP, "H-77", Some("06139999:ａ１:１２３:01"), ("花子", "ハナコ")));
    let l = links(&s);
    let person = l[&format!("{CLINIC}|C-0001")].clone();
    assert_eq!(l[&format!("{HOSP}|H-77")], person, "same insurance at two facilities is one person");
    // The person of the clinic's records follows: the hospital patient's whole record holds the
    // clinic's result.
    let all = admin.get(&format!("Patient/{p2}/$everything"));
    assert_eq!(all.status, 200, "{}", all.text);
    let ids: Vec<&str> =
        all.body["entry"].as_array().unwrap().iter().filter_map(|e| e["resource"]["id"].as_str()).collect();
    assert!(ids.contains(&obs_id.as_str()) && ids.contains(&p1.as_str()), "{ids:?}");

    // PIXm: from the clinic's number to the hospital's.
    let src = format!("{}|C-0001", local_system(CLINIC));
    let pix = admin.get(&format!("Patient/$ihe-pix?sourceIdentifier={}", urlencode(&src)));
    assert_eq!(pix.status, 200, "{}", pix.text);
    let values: Vec<&str> = pix.body["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["valueIdentifier"]["value"].as_str())
        .collect();
    assert!(values.contains(&"H-77") && values.contains(&"C-0001"), "{values:?}");
    let only_hosp = admin.get(&format!(
        "Patient/$ihe-pix?sourceIdentifier={}&targetSystem={}",
        urlencode(&src),
        urlencode(&local_system(HOSP))
    ));
    let values: Vec<&str> = only_hosp.body["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["valueIdentifier"]["value"].as_str())
        .collect();
    assert_eq!(values, vec!["H-77"]);
    let unknown = admin
        .get(&format!("Patient/$ihe-pix?sourceIdentifier={}", urlencode(&format!("{}|nobody", local_system(CLINIC)))));
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let bad = admin.get("Patient/$ihe-pix?sourceIdentifier=no-bar");
    assert_eq!(bad.status, 400, "{}", bad.text);

    // PDQm $match with demographics only.
    let query = json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {
        "resourceType": "Patient", "name": [{"family": "結", "given": ["花子"]}], "gender": "female", "birthDate": "1970-05-05",
        "telecom": [{"system": "phone", "value": "03-1234-5678"}]}}, {"name": "count", "valueInteger": 5}]});
    let m = admin.post("Patient/$match", &query);
    assert_eq!(m.status, 200, "{}", m.text);
    assert_eq!(m.body["type"], "searchset");
    let first = &m.body["entry"][0];
    assert!([p1.as_str(), p2.as_str()].contains(&first["resource"]["id"].as_str().unwrap()), "{}", m.text);
    assert!(first["search"]["score"].as_f64().unwrap() > 0.5, "{}", m.text);
    let other = json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {
        "resourceType": "Patient", "name": [{"family": "山川", "given": ["一郎"]}], "gender": "male", "birthDate": "1931-01-01"}}]});
    let m = admin.post("Patient/$match", &other);
    assert_eq!(m.status, 200, "{}", m.text);
    assert!(
        m.body["entry"].as_array().is_none_or(|e| e.iter().all(|e| e["search"]["score"].as_f64().unwrap() < 0.5)),
        "{}",
        m.text
    );
    let not_patient = admin.post("Patient/$match", &json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Observation"}}]}));
    assert_eq!(not_patient.status, 400, "{}", not_patient.text);

    // A second registration at the same clinic with the same demographics but no insurance:
    // a duplicate at one facility is never linked automatically; it waits for an operator.
    let _p3 = post_patient(&clinic, &patient(CLINIC, "C-0002", None, ("花子", "ハナコ")));
    let l = links(&s);
    assert_ne!(l[&format!("{CLINIC}|C-0002")], person);
    let queue = reviews(&s);
    assert!(!queue.is_empty());
    let item = queue.iter().find(|i| i["a"]["local_id"] == "C-0002").expect("C-0002 waits for review").clone();
    assert_eq!(item["a"]["patient"]["resourceType"], "Patient", "both records are shown side by side");
    // Only operators see the queue and decide.
    let r = api(&clinic, Method::GET, "/admin/mpi/review", None);
    assert_eq!(r.status, 403, "{}", r.text);
    let r = api(
        &clinic,
        Method::POST,
        &format!("/admin/mpi/review/{}", item["id"].as_str().unwrap()),
        Some(json!({"link": true})),
    );
    assert_eq!(r.status, 403, "{}", r.text);

    // The operator says: not the same person. Every item about C-0002 and this person goes.
    for i in reviews(&s).iter().filter(|i| i["a"]["local_id"] == "C-0002") {
        let r = api(
            &admin,
            Method::POST,
            &format!("/admin/mpi/review/{}", i["id"].as_str().unwrap()),
            Some(json!({"link": false})),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert!(reviews(&s).iter().all(|i| i["a"]["local_id"] != "C-0002"));
    let r = api(
        &admin,
        Method::POST,
        &format!("/admin/mpi/review/{}", item["id"].as_str().unwrap()),
        Some(json!({"link": false})),
    );
    assert_eq!(r.status, 404, "a resolved item cannot be resolved again: {}", r.text);
    let kept_person = links(&s)[&format!("{CLINIC}|C-0002")].clone();
    assert_ne!(kept_person, person);

    // A third registration, again held; this time the operator merges it.
    let _p4 = post_patient(&clinic, &patient(CLINIC, "C-0003", None, ("花子", "ハナコ")));
    let queue = reviews(&s);
    let item = queue
        .iter()
        .find(|i| i["a"]["local_id"] == "C-0003" && i["b"]["local_id"] == "C-0001")
        .or_else(|| queue.iter().find(|i| i["a"]["local_id"] == "C-0003" && i["b"]["local_id"] == "H-77"))
        .unwrap_or_else(|| panic!("C-0003 against the linked person: {queue:?}"))
        .clone();
    // The person the new record was given holds something the patient set up (a consent in
    // person at the hospital); the merge must carry it over to the surviving person.
    let before = links(&s)[&format!("{CLINIC}|C-0003")].clone();
    s.store
        .write_accounts(
            vec![musubi_store::accounts::AccountWrite::VisitConsent(musubi_store::accounts::VisitConsentRow {
                id: "vc-test".into(),
                person_id: before.clone(),
                facility: HOSP.into(),
                given_at: 1,
                until: Some(i64::MAX / 2),
                recorded_by: "test".into(),
                evidence: "code".into(),
                status: "active".into(),
                confirmed_by: None,
                confirmed_at: None,
            })],
            Vec::new(),
        )
        .unwrap();
    let r = api(
        &admin,
        Method::POST,
        &format!("/admin/mpi/review/{}", item["id"].as_str().unwrap()),
        Some(json!({"link": true})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let l = links(&s);
    assert_eq!(l[&format!("{CLINIC}|C-0003")], l[&format!("{CLINIC}|C-0001")]);
    assert_eq!(l[&format!("{HOSP}|H-77")], l[&format!("{CLINIC}|C-0001")]);
    let merged = l[&format!("{CLINIC}|C-0001")].clone();
    let moved = s.store.read(|r| r.visit_consents(&merged)).unwrap();
    assert!(moved.iter().any(|v| v.id == "vc-test"), "the consent in person follows the merge: {moved:?}");

    // Split the hospital record off (a wrong link found later).
    let r = api(&admin, Method::POST, "/admin/mpi/split", Some(json!({"facility": HOSP, "local_id": "H-77"})));
    assert_eq!(r.status, 200, "{}", r.text);
    let split_person = r.body["person"].as_str().unwrap().to_owned();
    let l = links(&s);
    assert_eq!(l[&format!("{HOSP}|H-77")], split_person);
    assert_ne!(split_person, merged);
    // The hospital patient's records moved with it: the clinic's result is no longer part of it.
    let all = admin.get(&format!("Patient/{p2}/$everything"));
    let ids: Vec<&str> =
        all.body["entry"].as_array().unwrap().iter().filter_map(|e| e["resource"]["id"].as_str()).collect();
    assert!(!ids.contains(&obs_id.as_str()), "{ids:?}");
    let r = api(&admin, Method::POST, "/admin/mpi/split", Some(json!({"facility": HOSP, "local_id": "nobody"})));
    assert_eq!(r.status, 404, "{}", r.text);
    let r = api(&admin, Method::POST, "/admin/mpi/split", Some(json!({"facility": "123", "local_id": "x"})));
    assert_eq!(r.status, 400, "{}", r.text);
    let decided = links(&s);

    // A restart changes nobody's person: a second service over the same store builds its index
    // from what was stored.
    let svc = musubi_service::Service::new(s.store.clone(), "test");
    let op = musubi_service::Ctx::operator("test");
    assert_eq!(svc.mpi_person_of(HOSP, "H-77").unwrap().as_deref(), Some(split_person.as_str()));
    assert_eq!(svc.mpi_person_of(CLINIC, "C-0002").unwrap().as_deref(), Some(kept_person.as_str()));
    // Rebuilding from scratch keeps the operator's decisions and the person ids.
    let (records, persons, _) = svc.mpi_rebuild(&op).unwrap();
    assert_eq!((records, persons), (4, 3));
    let after = svc.mpi_links_csv(&op).unwrap();
    for line in after.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(decided[&format!("{}|{}", f[0], f[1])], f[2], "rebuild changed {line}");
    }
    assert_eq!(svc.mpi_person_of(CLINIC, "C-0001").unwrap().as_deref(), Some(merged.as_str()));

    // Every decision left an audit record.
    let audit = s.store.read(|r| r.audit_page(0, 100_000)).unwrap();
    let kinds: Vec<String> = audit
        .iter()
        .map(|a| serde_json::from_str::<Value>(&a.record).unwrap()["subtype"].as_str().unwrap().to_owned())
        .collect();
    for k in ["mpi-link", "mpi-keep-apart", "mpi-merge", "mpi-split", "mpi-rebuild", "$ihe-pix", "$match"] {
        assert!(kinds.iter().any(|x| x == k), "no audit record for {k}: {kinds:?}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
