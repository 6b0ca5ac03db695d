//! Attacks on the master patient index, over HTTP, on both stores: a facility that writes a
//! Patient carrying another facility's local id or a copied insurance id must not become a
//! "treating" facility of the victim's person (the link waits for an operator), a namesake living
//! elsewhere is not merged, and when a facility is linked to a person for the first time the
//! patient is told.

use crate::common::*;
use musubi_store::Store;
use reqwest::Method;
use serde_json::{Value, json};

/// Facility A: where the victim is a patient.
const A: &str = "1312345678";
/// Facility B: the writer.
const B: &str = "1318814790";
const INSURANCE: &str = "06139999:ａ１:１２３:01";

fn local_system(facility: &str) -> String {
    format!("urn:oid:1.2.392.100495.20.3.51.1{facility}")
}

fn name(text: &str, family: &str, given: Option<&str>, rep: &str) -> Value {
    let mut n = json!({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": rep}],
        "text": text, "family": family});
    if let Some(g) = given {
        n["given"] = json!([g]);
    }
    n
}

/// The victim as facility A registered her: 結 花子, 1970-05-05, Tokyo.
fn victim(facility: &str, local: &str) -> Value {
    json!({"resourceType": "Patient",
        "identifier": [{"system": local_system(facility), "value": local},
                       {"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID", "value": INSURANCE}],
        "name": [name("結 花子", "結", Some("花子"), "IDE"), name("ムスビ ハナコ", "ムスビ", Some("ハナコ"), "SYL")],
        "gender": "female", "birthDate": "1970-05-05",
        "telecom": [{"system": "phone", "value": "03-1234-5678"}],
        "address": [{"text": "東京都千代田区丸の内1-1", "postalCode": "100-0005", "state": "東京都", "city": "千代田区", "line": ["丸の内1-1"]}]})
}

/// Someone else, as facility B writes them: only a family name, another birth date, Osaka.
fn stranger(local: &str, extra: Value) -> Value {
    let mut ids = vec![json!({"system": local_system(B), "value": local})];
    ids.push(extra);
    json!({"resourceType": "Patient", "identifier": ids,
        "name": [name("山田", "山田", None, "IDE")],
        "gender": "female", "birthDate": "1985-11-30",
        "address": [{"text": "大阪府大阪市北区梅田2-2-2", "postalCode": "530-0001", "state": "大阪府", "city": "大阪市北区", "line": ["梅田2-2-2"]}]})
}

struct World {
    victim_patient: String,
    victim_obs: String,
}

fn setup(s: &TestServer) -> World {
    let admin = s.client(&s.admin);
    for (code, fname, class) in [(A, "結びクリニック", "clinic"), (B, "丸の内中央病院", "hospital")] {
        let r = api(
            &admin,
            Method::POST,
            "/admin/facilities",
            Some(
                json!({"code": code, "name": fname, "class": class, "prefecture": 13, "area": "1301", "cities": ["千代田区"]}),
            ),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let a = s.client(&s.token(A, "clinic-emr"));
    let victim_patient = created(a.post("Patient", &victim(A, "C-0001")));
    let obs = a.post(
        "Observation",
        &json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "code": "3D046000001920402", "display": "HbA1c"}]},
            "subject": {"reference": format!("Patient/{victim_patient}")}, "effectiveDateTime": "2026-10-01",
            "valueQuantity": {"value": 7.2, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}),
    );
    World { victim_patient, victim_obs: created(obs) }
}

fn created(r: Resp) -> String {
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

/// `facility|local` → person.
fn person_of(s: &TestServer, facility: &str, local: &str) -> String {
    let r = api(&s.client(&s.admin), Method::GET, "/admin/mpi/links", None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.text
        .lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0] == facility && f[1] == local).then(|| f[2].to_owned())
        })
        .unwrap_or_else(|| panic!("no link for {facility}|{local}: {}", r.text))
}

/// The open review items of a record of B, as (other local id, hold).
fn held(s: &TestServer, local: &str) -> Vec<(String, String)> {
    let r = api(&s.client(&s.admin), Method::GET, "/admin/mpi/review", None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["a"]["facility"] == B && i["a"]["local_id"] == local)
        .map(|i| (i["b"]["local_id"].as_str().unwrap().to_owned(), i["hold"].as_str().unwrap().to_owned()))
        .collect()
}

/// A doctor of facility B (a clinician account with a session).
fn doctor_at_b(s: &TestServer) -> Client {
    let pw = "Musubi-pass-2026";
    let r = api(
        &s.client(&s.admin),
        Method::POST,
        "/admin/users",
        Some(json!({"login": "dr-b", "name": "梅田 医師", "profession": "doctor", "facilities": [B], "password": pw})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let secret = r.body["totp_secret"].as_str().unwrap().to_owned();
    let r = api(&anon(s), Method::POST, "/login", Some(json!({"login": "dr-b", "password": pw, "kind": "user"})));
    assert_eq!(r.status, 200, "login: {}", r.text);
    let c = s.client(r.body["token"].as_str().unwrap());
    let code = musubi_service::people::totp_code_now(&secret).unwrap();
    let r = api(&c, Method::POST, "/login/totp", Some(json!({"code": code})));
    assert_eq!(r.status, 200, "{}", r.text);
    // The login completes under a new token; the pending one is dead.
    s.client(r.body["token"].as_str().unwrap())
}

/// B's doctor sees nothing of A's patient.
fn b_cannot_read_the_victim(s: &TestServer, w: &World) {
    let dr = doctor_at_b(s);
    let r = dr.get(&format!("Observation/{}", w.victim_obs));
    assert_eq!(r.status, 404, "B reads A's result: {}", r.text);
    let r = dr.get(&format!("Patient/{}", w.victim_patient));
    assert_eq!(r.status, 404, "B reads A's patient: {}", r.text);
}

fn notices(s: &TestServer, person: &str) -> Vec<musubi_store::accounts::NotificationRow> {
    let p = person.to_owned();
    s.store.read(|r| r.notifications(&p)).unwrap().into_iter().filter(|n| n.kind == "facility-linked").collect()
}

/// Attack: facility B writes a Patient that carries facility A's local patient id (a
/// cross-reference) with other demographics, to be linked to A's patient and so become
/// "treating".
fn copied_local_id(s: &TestServer) {
    let w = setup(s);
    let b = s.client(&s.token(B, "hospital-emr"));
    let xref = json!({"system": local_system(A), "value": "C-0001"});
    created(b.post("Patient", &stranger("H-1", xref)));
    let victim_person = person_of(s, A, "C-0001");
    assert_ne!(person_of(s, B, "H-1"), victim_person, "a copied local id linked B's patient to A's");
    assert_eq!(held(s, "H-1"), vec![("C-0001".to_owned(), "IdentifierOnly".to_owned())]);
    b_cannot_read_the_victim(s, &w);
    assert!(notices(s, &victim_person).is_empty());
}

/// Attack: facility B writes a Patient carrying the insurance id of A's patient (copied from a
/// card or a claim) with other demographics.
fn copied_insurance_id(s: &TestServer) {
    let w = setup(s);
    let b = s.client(&s.token(B, "hospital-emr"));
    let card = json!({"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID", "value": INSURANCE});
    created(b.post("Patient", &stranger("H-2", card)));
    let victim_person = person_of(s, A, "C-0001");
    assert_ne!(person_of(s, B, "H-2"), victim_person, "a copied insurance id linked B's patient to A's");
    assert_eq!(held(s, "H-2"), vec![("C-0001".to_owned(), "IdentifierOnly".to_owned())]);
    b_cannot_read_the_victim(s, &w);
    assert!(notices(s, &victim_person).is_empty());
}

/// A namesake: 同姓同名・同生年月日, living in Osaka with another insurer and another phone.
/// The name and birth date alone must not merge two people.
fn namesake_living_elsewhere(s: &TestServer) {
    let w = setup(s);
    let b = s.client(&s.token(B, "hospital-emr"));
    let mut p = victim(B, "H-3");
    p["identifier"][1]["value"] = json!("06270011:７７:８８８:00");
    p["telecom"] = json!([{"system": "phone", "value": "06-3333-4444"}]);
    p["address"] = json!([{"text": "大阪府大阪市北区梅田2-2-2", "postalCode": "530-0001", "state": "大阪府", "city": "大阪市北区", "line": ["梅田2-2-2"]}]);
    created(b.post("Patient", &p));
    let victim_person = person_of(s, A, "C-0001");
    assert_ne!(person_of(s, B, "H-3"), victim_person, "a namesake elsewhere was merged");
    assert_eq!(held(s, "H-3"), vec![("C-0001".to_owned(), "StrongConflict".to_owned())]);
    b_cannot_read_the_victim(s, &w);
    assert!(notices(s, &victim_person).is_empty());
    // Had she moved after all, the operator links the pair; the patient is told of B then.
    // (Each side's facilities are new to the other side's records: both are named.)
    let admin = s.client(&s.admin);
    let items = api(&admin, Method::GET, "/admin/mpi/review", None);
    let item = items.body["items"].as_array().unwrap().iter().find(|i| i["a"]["local_id"] == "H-3").unwrap().clone();
    let r = api(
        &admin,
        Method::POST,
        &format!("/admin/mpi/review/{}", item["id"].as_str().unwrap()),
        Some(json!({"link": true})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let merged = person_of(s, A, "C-0001");
    assert_eq!(person_of(s, B, "H-3"), merged);
    let n = notices(s, &merged);
    assert!(n.iter().any(|x| x.text.contains("丸の内中央病院")), "{n:?}");
}

/// The honest case, as a control: B registers the same woman (same demographics, same card).
/// She is linked, B's doctor now sees A's result, and the patient is told once that B's records
/// were joined to hers — not again when B updates its record.
fn first_link_of_a_facility_is_told(s: &TestServer) {
    let w = setup(s);
    let b = s.client(&s.token(B, "hospital-emr"));
    let id = created(b.post("Patient", &victim(B, "H-4")));
    let victim_person = person_of(s, A, "C-0001");
    assert_eq!(person_of(s, B, "H-4"), victim_person);
    // She takes part in the network (参加同意, recorded at A's desk): the network is opt-in.
    s.store
        .write_evidence(
            vec![musubi_store::EvidenceWrite::Participation {
                person_id: victim_person.clone(),
                participating: true,
                at: musubi_fhir::datetime::now_ms(),
                by: format!("{A}:desk"),
                evidence: "paper:参加同意書-1".into(),
            }],
            Vec::new(),
            Vec::new(),
        )
        .unwrap();
    let dr = doctor_at_b(s);
    let r = dr.get(&format!("Observation/{}", w.victim_obs));
    assert_eq!(r.status, 200, "the linked facility treats the patient: {}", r.text);
    let n = notices(s, &victim_person);
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].text.contains("丸の内中央病院"), "{}", n[0].text);
    let mut again = victim(B, "H-4");
    again["id"] = json!(id);
    again["telecom"] = json!([{"system": "phone", "value": "090-1111-2222"}]);
    let r = b.put(&format!("Patient/{id}"), &again);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(person_of(s, B, "H-4"), victim_person);
    assert_eq!(notices(s, &victim_person).len(), 1, "an update is no new link");
}

/// The id a collector computes for facility A's patient P-0001: the UUID v5 of
/// `Patient/1312345678.P-0001.ADT-00` in the SS-MIX2 namespace — public inputs only.
const COMPUTED_PATIENT: &str = "ee8e0968-8676-5b5d-a586-54f849c4e3ca";
const COMPUTED_OBS: &str = "710e2ac0-dc72-5288-806c-a2ec3e2ecc0c";

/// Attack: facility B computes the id of a patient that A's collector stored (a UUID v5 of the
/// facility code and patient number) and writes a record about that Patient, which would put its
/// own facility on the victim's person ("treating"). With the network's key the stored id is
/// a keyed hash: the computed id names nothing.
fn computed_collected_id(s: &TestServer) {
    let admin = s.client(&s.admin);
    for (code, fname, class) in [(A, "結びクリニック", "clinic"), (B, "丸の内中央病院", "hospital")] {
        let r = api(
            &admin,
            Method::POST,
            "/admin/facilities",
            Some(
                json!({"code": code, "name": fname, "class": class, "prefecture": 13, "area": "1301", "cities": ["千代田区"]}),
            ),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // A's collector lands the patient and a result under the computed ids.
    let mut patient = victim(A, "P-0001");
    patient["id"] = json!(COMPUTED_PATIENT);
    let obs = json!({"resourceType": "Observation", "id": COMPUTED_OBS, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "code": "3D046000001920402", "display": "HbA1c"}]},
        "subject": {"reference": format!("Patient/{COMPUTED_PATIENT}")}, "effectiveDateTime": "2026-10-01",
        "valueQuantity": {"value": 7.2, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}});
    let res = |id: &str, key: &str, resource: Value| musubi_service::collect::SourceResource {
        id: id.into(),
        key: key.into(),
        line: None,
        segment: None,
        resource,
    };
    let file = musubi_service::collect::SourceFile {
        facility: A.into(),
        kind: musubi_store::collect::SourceKind::Ssmix2,
        path: "131/234/P-0001/20261001/OML-11/P-0001_1312345678_20261001_OML-11_1_1".into(),
        size: 1,
        mtime: 1,
        sha256: "0".repeat(64),
        seen_before: false,
        blob: None,
        units: vec![musubi_service::collect::SourceUnit {
            source_key: "P-0001.OML-11.1".into(),
            occurred_at: 1,
            resources: vec![
                res(COMPUTED_PATIENT, "1312345678.P-0001.ADT-00", patient),
                res(COMPUTED_OBS, "1312345678.P-0001.OML-11.1", obs),
            ],
            retract: Vec::new(),
            facility_use: None,
        }],
        problems: Vec::new(),
    };
    let svc = musubi_service::Service::new(s.store.clone(), "collector").with_id_key(key());
    let actor = musubi_gate::Actor::System { name: "collector".into(), facility: A.parse().unwrap() };
    let prepared = svc.prepare_collected(&actor, file);
    let stats = svc.commit_collected(vec![prepared]).unwrap();
    assert_eq!(stats.created, 2, "{stats:?}");
    // Stored under keyed ids, the reference following.
    assert_eq!(admin.get(&format!("Patient/{COMPUTED_PATIENT}")).status, 404);
    let found = admin.get(&format!("Patient?identifier={}|P-0001", local_system(A)));
    assert_eq!(found.status, 200, "{}", found.text);
    let stored_id = found.body["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    assert_eq!(stored_id, key().id(COMPUTED_PATIENT));
    let results = admin.get(&format!("Observation?subject=Patient/{stored_id}"));
    assert_eq!(results.body["total"], 1, "{}", results.text);
    let obs_id = results.body["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();

    // B writes a result about the computed id.
    let b = s.client(&s.token(B, "hospital-emr"));
    let forged = json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "code": "3D046000001920402", "display": "HbA1c"}]},
        "subject": {"reference": format!("Patient/{COMPUTED_PATIENT}")}, "effectiveDateTime": "2026-10-02",
        "valueQuantity": {"value": 5.0, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}});
    let r = b.post("Observation", &forged);
    assert!(r.status == 201 || r.status >= 400, "{}", r.text);
    let dr = doctor_at_b(s);
    let r = dr.get(&format!("Observation/{obs_id}"));
    assert_eq!(r.status, 404, "B became a treating facility of A's patient: {}", r.text);
    assert_eq!(dr.get(&format!("Patient/{stored_id}")).status, 404);
}

/// The network key of the test.
fn key() -> musubi_service::ids::IdKey {
    musubi_service::ids::IdKey::from_bytes([42; 32])
}

/// Runs a scenario on SQLite.
fn on_sqlite(scenario: fn(&TestServer)) {
    scenario(&TestServer::start());
}

/// Runs a scenario on PostgreSQL when `MUSUBI_TEST_POSTGRES` is set (skipped otherwise).
fn on_postgres(prefix: &str, scenario: fn(&TestServer)) {
    if std::env::var("MUSUBI_TEST_POSTGRES").is_err() {
        eprintln!("MUSUBI_TEST_POSTGRES is not set: the PostgreSQL run is skipped");
        return;
    }
    let db = FreshDb::new(prefix);
    {
        let store = Store::open_postgres(&db.url).unwrap();
        let server = TestServer::start_on(store, tempfile::tempdir().unwrap());
        scenario(&server);
    }
}

#[test]
fn copied_local_id_sqlite() {
    on_sqlite(copied_local_id);
}

#[test]
fn copied_local_id_postgres() {
    on_postgres("musubi_mpi_copied_local_id", copied_local_id);
}

#[test]
fn copied_insurance_id_sqlite() {
    on_sqlite(copied_insurance_id);
}

#[test]
fn copied_insurance_id_postgres() {
    on_postgres("musubi_mpi_copied_insurance", copied_insurance_id);
}

#[test]
fn namesake_living_elsewhere_sqlite() {
    on_sqlite(namesake_living_elsewhere);
}

#[test]
fn namesake_living_elsewhere_postgres() {
    on_postgres("musubi_mpi_namesake", namesake_living_elsewhere);
}

#[test]
fn first_link_of_a_facility_is_told_sqlite() {
    on_sqlite(first_link_of_a_facility_is_told);
}

#[test]
fn first_link_of_a_facility_is_told_postgres() {
    on_postgres("musubi_mpi_first_link", first_link_of_a_facility_is_told);
}

#[test]
fn computed_collected_id_sqlite() {
    on_sqlite(computed_collected_id);
}

#[test]
fn computed_collected_id_postgres() {
    on_postgres("musubi_mpi_computed_id", computed_collected_id);
}
