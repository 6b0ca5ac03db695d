//! Issue 6 end to end over HTTP: clinicians log in with a password and a one-time code, a
//! patient registers against the records the network holds and sets who may see what, the gate
//! follows the settings, care relationships and professions, break-glass works, expires and
//! shows, and the patient reads who looked.

use crate::common::*;
use serde_json::{Value, json};

const SOURCE: &str = "1312345678"; // clinic in 区中央部 that sent the records
const HOSP: &str = "1318814790"; // hospital in the same 二次医療圏
const PHARM: &str = "1348814790"; // pharmacy in the same 二次医療圏
const FAR: &str = "1418814790"; // hospital in another prefecture

/// Logs in with password and one-time code; returns a client carrying the session token.
fn login(s: &TestServer, login: &str, password: &str, secret: &str, kind: &str) -> Client {
    let r = api(
        &anon(s),
        reqwest::Method::POST,
        "/login",
        Some(json!({"login": login, "password": password, "kind": kind})),
    );
    assert_eq!(r.status, 200, "login {login}: {}", r.text);
    assert_eq!(r.body["needs_second_factor"], true);
    let token = r.body["token"].as_str().unwrap().to_owned();
    let c = s.client(&token);
    // Before the second factor the session opens nothing.
    assert_eq!(c.get("Patient").status, 401);
    let code = musubi_service::people::totp_code_now(secret).unwrap();
    let r = api(&c, reqwest::Method::POST, "/login/totp", Some(json!({"code": code})));
    assert_eq!(r.status, 200, "{}", r.text);
    // The login completes under a new token; the pending one is dead.
    let mut c = c;
    c.token = r.body["token"].as_str().unwrap().to_owned();
    c
}

fn setup(s: &TestServer) -> (String, String) {
    let admin = s.client(&s.admin);
    for (code, name, class, area, cities) in [
        (SOURCE, "結びクリニック", "clinic", "1301", vec!["千代田区", "中央区"]),
        (HOSP, "東京結び病院", "hospital", "1301", vec![]),
        (PHARM, "さくら薬局", "pharmacy", "1301", vec![]),
        (FAR, "横浜結び病院", "hospital", "1401", vec!["横浜市"]),
    ] {
        let r = api(
            &admin,
            reqwest::Method::POST,
            "/admin/facilities",
            Some(
                json!({"code": code, "name": name, "class": class, "prefecture": code[..2].parse::<i64>().unwrap(), "area": area, "cities": cities}),
            ),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // The clinic's system sends the patient and their records.
    let src = s.client(&s.token(SOURCE, "clinic-emr"));
    let ext = json!([{"url": "http://jpfhir.jp/fhir/clins/Extension/StructureDefinition/JP_eCS_InstitutionNumber", "valueIdentifier": {"system": "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no", "value": SOURCE}}]);
    let p = src.post(
        "Patient",
        &json!({"resourceType": "Patient",
            "identifier": [{"system": format!("urn:oid:1.2.392.100495.20.3.51.1{SOURCE}"), "value": "C-0001"}, {"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID", "value": "06139999:ａ１:１２３:01"}],
            "name": [{"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "IDE"}], "text": "結 花子", "family": "結", "given": ["花子"]},
                     {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}], "text": "ムスビ ハナコ", "family": "ムスビ", "given": ["ハナコ"]}],
            "gender": "female", "birthDate": "1970-05-05",
            "address": [{"state": "東京都", "city": "千代田区", "line": ["丸の内1-1"]}]}),
    );
    assert_eq!(p.status, 201, "{}", p.text);
    let pid = p.body["id"].as_str().unwrap().to_owned();
    let lab = json!({"resourceType": "Observation", "extension": ext, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "code": "3D046000001920402", "display": "HbA1c"}]},
        "subject": {"reference": format!("Patient/{pid}")}, "effectiveDateTime": "2026-10-01",
        "valueQuantity": {"value": 7.2, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}});
    let r = src.post("Observation", &lab);
    assert_eq!(r.status, 201, "{}", r.text);
    let told = json!({"resourceType": "Condition", "extension": ext, "subject": {"reference": format!("Patient/{pid}")},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-disease-keyNumber", "code": "20064591", "display": "２型糖尿病"}], "text": "２型糖尿病"},
        "onsetDateTime": "2025-04-01", "recordedDate": "2025-04-01"});
    let r = src.post("Condition", &told);
    assert_eq!(r.status, 201, "{}", r.text);
    let mut untold = told.clone();
    untold["meta"] = json!({"tag": [{"system": "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication", "code": "UNINFORMED"}]});
    untold["code"] = json!({"coding": [{"system": "http://medis.or.jp/CodeSystem/master-disease-keyNumber", "code": "20084770", "display": "胃癌"}], "text": "胃癌"});
    let r = src.post("Condition", &untold);
    assert_eq!(r.status, 201, "{}", r.text);
    (pid, r.body["id"].as_str().unwrap().to_owned())
}

fn new_user(s: &TestServer, login: &str, profession: &str, facility: &str) -> (String, String) {
    let pw = "Musubi-pass-2026".to_owned();
    let r = api(
        &s.client(&s.admin),
        reqwest::Method::POST,
        "/admin/users",
        Some(
            json!({"login": login, "name": format!("{login} 先生"), "profession": profession, "facilities": [facility], "password": pw}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    (pw, r.body["totp_secret"].as_str().unwrap().to_owned())
}

fn obs_total(c: &Client, pid: &str) -> i64 {
    let r = c.get(&format!("Observation?patient={pid}"));
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["total"].as_i64().unwrap()
}

#[test]
fn consent_care_professions_break_glass_and_the_access_history() {
    let s = TestServer::start();
    let (pid, untold_id) = setup(&s);

    // The patient registers with the activation code handed over after an identity check,
    // and the birth date.
    let code = activation_code(&s, &pid);
    let bad = api(
        &anon(&s),
        reqwest::Method::POST,
        "/portal/register",
        Some(
            json!({"name": "結 花子", "kana": "ムスビ ハナコ", "sex": "female", "birth_date": "1970-05-06", "prefecture": "東京都", "city": "千代田区", "login": "hanako", "password": "Hanako-pass-2026", "activation_code": code}),
        ),
    );
    assert_eq!(bad.status, 400, "a wrong birth date is refused: {}", bad.text);
    let reg = api(
        &anon(&s),
        reqwest::Method::POST,
        "/portal/register",
        Some(
            json!({"name": "結 花子", "kana": "ムスビ ハナコ", "sex": "female", "birth_date": "1970-05-05", "prefecture": "東京都", "city": "千代田区", "login": "hanako", "password": "Hanako-pass-2026", "activation_code": code}),
        ),
    );
    assert_eq!(reg.status, 200, "{}", reg.text);
    let patient = login(&s, "hanako", "Hanako-pass-2026", reg.body["totp_secret"].as_str().unwrap(), "portal");

    // Clinicians.
    let (pw, sec) = new_user(&s, "dr-hosp", "doctor", HOSP);
    let doctor = login(&s, "dr-hosp", &pw, &sec, "user");
    let (pw, sec) = new_user(&s, "ph-sakura", "pharmacist", PHARM);
    let pharmacist = login(&s, "ph-sakura", &pw, &sec, "user");
    let (pw, sec) = new_user(&s, "clerk-hosp", "clerk", HOSP);
    let clerk = login(&s, "clerk-hosp", &pw, &sec, "user");
    let (pw, far_secret) = new_user(&s, "dr-far", "doctor", FAR);
    let far_doctor = login(&s, "dr-far", &pw, &far_secret, "user");

    // No care relationship yet: nothing is visible, and nothing leaks through totals or reads.
    assert_eq!(obs_total(&doctor, &pid), 0);
    assert_eq!(doctor.get(&format!("Patient/{pid}")).status, 404);
    // Consent in person at a visit (the patient shows a code) creates the care relationship;
    // the residence 二次医療圏 is open by default.
    for c in [&doctor, &pharmacist, &clerk] {
        let r = visit_consent(c, &patient, &pid);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["status"], "active");
        assert!(r.body["until"].is_string(), "a consent at the visit is bounded: {}", r.text);
    }
    assert_eq!(obs_total(&doctor, &pid), 1, "a doctor with a care relationship sees");
    assert_eq!(obs_total(&pharmacist, &pid), 1, "a pharmacist sees lab results");
    assert_eq!(obs_total(&clerk, &pid), 0, "a clerk sees no clinical content");
    assert_eq!(clerk.get(&format!("Patient/{pid}")).status, 200, "but sees demographics");
    // 未告知 items are not hidden from clinicians.
    assert_eq!(doctor.get(&format!("Condition?patient={pid}")).body["total"], 2);

    // The patient closes pharmacies in their 二次医療圏.
    let view = api(&patient, reqwest::Method::GET, "/portal/consent", None);
    assert_eq!(view.status, 200, "{}", view.text);
    assert_eq!(view.body["residence"]["area"], "1301");
    assert!(
        view.body["facilities"].as_array().unwrap().iter().any(|f| f["code"] == SOURCE),
        "the facilities used are listed: {}",
        view.text
    );
    assert_eq!(view.body["fhir"]["resourceType"], "Consent");
    let mut settings = view.body["settings"].clone();
    settings["kinds"] = json!([{"within": {"type": "area", "value": "1301"}, "class": "pharmacy", "allow": false}]);
    let saved = api(
        &patient,
        reqwest::Method::PUT,
        "/portal/consent",
        Some(json!({"settings": settings, "version": view.body["version"]})),
    );
    assert_eq!(saved.status, 200, "{}", saved.text);
    assert_eq!(saved.body["version"], 1);
    // A stale version is refused.
    let stale =
        api(&patient, reqwest::Method::PUT, "/portal/consent", Some(json!({"settings": settings, "version": 0})));
    assert_eq!(stale.status, 409, "{}", stale.text);
    assert_eq!(obs_total(&pharmacist, &pid), 0, "the pharmacist is now denied");
    assert_eq!(pharmacist.get(&format!("Patient/{pid}")).status, 404);
    assert_eq!(obs_total(&doctor, &pid), 1, "the hospital is unaffected");
    // The Consent is kept as a FHIR resource the patient can read.
    let consent = patient.get(&format!("Consent?patient={pid}"));
    assert_eq!(consent.body["total"], 1, "{}", consent.text);

    // A doctor in another prefecture: denied, until break-glass.
    assert_eq!(obs_total(&far_doctor, &pid), 0);
    let short = break_glass(&far_doctor, &pid, &far_secret, "急");
    assert_eq!(short.status, 400, "a reason is required");
    let bg = break_glass(&far_doctor, &pid, &far_secret, "意識障害で救急搬送、既往歴の確認");
    assert_eq!(bg.status, 200, "{}", bg.text);
    assert_eq!(obs_total(&far_doctor, &pid), 1, "break-glass opens the record");
    let r = far_doctor.get(&format!("Observation?patient={pid}"));
    let obs_id = r.body["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    assert_eq!(far_doctor.get(&format!("Observation/{obs_id}")).status, 200);

    // The patient sees it at once: a notice, and the history marks it as emergency.
    let notes = api(&patient, reqwest::Method::GET, "/portal/notifications", None);
    assert!(notes.body["notifications"][0]["text"].as_str().unwrap().contains("緊急"), "{}", notes.text);
    let hist = api(&patient, reqwest::Method::GET, "/portal/history", None);
    assert_eq!(hist.status, 200, "{}", hist.text);
    let entries = hist.body["entries"].as_array().unwrap().clone();
    let emergency: Vec<&Value> = entries.iter().filter(|e| e["why"] == "緊急").collect();
    assert!(!emergency.is_empty(), "{}", hist.text);
    assert!(emergency.iter().any(|e| e["reason"] == "救急搬送: 意識障害で救急搬送、既往歴の確認"
        && e["facility_name"] == "横浜結び病院"
        && e["profession"] == "医師"));
    let denied: Vec<&Value> = entries.iter().filter(|e| e["why"] == "拒否").collect();
    assert!(
        denied.iter().any(|e| e["facility_name"] == "さくら薬局" && e["profession"] == "薬剤師"),
        "the pharmacist's denial is in the history: {}",
        hist.text
    );
    assert!(entries.iter().any(|e| e["why"] == "通常" && e["facility_name"] == "東京結び病院"));
    // 未告知 items are never named to the patient.
    assert!(!hist.text.contains("胃癌"));
    assert!(entries.iter().all(|e| e["what"].as_array().unwrap().iter().all(|w| w != "未告知")));
    // The patient's own record: 未告知 hidden.
    let own = patient.get(&format!("Condition?patient={pid}"));
    assert_eq!(own.body["total"], 1, "{}", own.text);
    assert_eq!(patient.get(&format!("Condition/{untold_id}")).status, 404);
    // The operator's review list has the emergency access.
    let reviews = api(&s.client(&s.admin), reqwest::Method::GET, "/admin/emergency-reviews", None);
    assert_eq!(reviews.body["reviews"].as_array().unwrap().len(), 1, "{}", reviews.text);
    let rid = reviews.body["reviews"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        api(
            &s.client(&s.admin),
            reqwest::Method::POST,
            &format!("/admin/emergency-reviews/{rid}"),
            Some(json!({"note": "救急外来での正当な閲覧を確認"}))
        )
        .status,
        200
    );
    assert_eq!(
        api(&s.client(&s.admin), reqwest::Method::GET, "/admin/emergency-reviews", None).body["reviews"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // The grant expires.
    let raw = rusqlite::Connection::open(s.data_dir().join(musubi_store::SQLITE_FILE)).unwrap();
    raw.execute("UPDATE emergency_grant SET until_at = 1", []).unwrap();
    assert_eq!(obs_total(&far_doctor, &pid), 0, "after expiry the record is closed again");

    // The audit report for the operator.
    let rep = api(&s.client(&s.admin), reqwest::Method::GET, "/admin/audit-report?user=dr-far&limit=50", None);
    assert!(rep.body["total"].as_i64().unwrap() >= 3, "{}", rep.text);
    assert!(
        rep.body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["purpose"].as_str().unwrap_or("").starts_with("emergency"))
    );
    // Patients cannot use the operator's console, clinicians cannot read the network audit log.
    assert_eq!(api(&patient, reqwest::Method::GET, "/admin/audit-report", None).status, 403);
    assert_eq!(doctor.get("AuditEvent").status, 403);
}

#[test]
fn repeated_failures_are_throttled_and_say_nothing_about_logins() {
    let s = TestServer::start();
    setup(&s);
    new_user(&s, "dr-lock", "doctor", HOSP);
    let unknown = api(&anon(&s), reqwest::Method::POST, "/login", Some(json!({"login": "nobody", "password": "x"})));
    let wrong = api(&anon(&s), reqwest::Method::POST, "/login", Some(json!({"login": "dr-lock", "password": "x"})));
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.diagnostics(), wrong.diagnostics(), "no hint whether the login exists");
    // After the free failures the account waits (a growing delay, not a lock), and says for
    // how long; the password is not even checked meanwhile.
    let waiting = (0..15)
        .map(|_| {
            api(&anon(&s), reqwest::Method::POST, "/login", Some(json!({"login": "dr-lock", "password": "wrong"})))
        })
        .find(|r| r.status == 429)
        .expect("repeated failures are throttled");
    assert!(waiting.headers.get("retry-after").is_some(), "{:?}", waiting.headers);
    // The failures are in the audit log.
    let failures = s.client(&s.admin).get("AuditEvent?agent=dr-lock&outcome=8");
    assert!(failures.body["total"].as_i64().unwrap() >= 4, "{}", failures.text);
}

#[test]
fn cookie_sessions_need_the_csrf_token_for_changes() {
    let s = TestServer::start();
    let (pid, _) = setup(&s);
    let (pw, sec) = new_user(&s, "dr-cookie", "doctor", HOSP);
    let c = login(&s, "dr-cookie", &pw, &sec, "user");
    let http = reqwest::blocking::Client::new();
    let cookie = format!("musubi_session={}", c.token);
    let url = s.base.replace("/fhir", "/api/clinician/visit-consent");
    let r = http
        .post(&url)
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .body(json!({"patient": pid}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 403, "a cookie alone does not authorize a change");
    let r = http.get(format!("{}/Patient", s.base)).header("cookie", &cookie).send().unwrap();
    assert_eq!(r.status(), 200, "reads with the cookie work");
}
