//! Issue 11's attack suite: each route by which an insider of a member facility, a facility
//! system, an anonymous caller or a patient once opened a record the patient had not allowed,
//! tried through the real HTTP server on both stores, asserting denial or review (never a 200
//! with data). Each attack is a function named after it; the two tests at the bottom run them
//! all on SQLite and on PostgreSQL.

use crate::common::*;
use musubi_store::Store;
use reqwest::Method;
use serde_json::{Value, json};

const SOURCE: &str = "1312345678"; // clinic in 区中央部 that sent the records
const HOSP: &str = "1318814790"; // hospital in the same 二次医療圏, never treated the patient
const SHUT: &str = "1318800012"; // hospital that does not view (閲覧しない)
const QUIET: &str = "1318800020"; // clinic that does not disclose (開示しない)
const FAR: &str = "1418814790"; // hospital in another prefecture

const INS: &str = "06139999:ａ１:１２３:01";

fn ext(code: &str) -> Value {
    json!([{"url": "http://jpfhir.jp/fhir/clins/Extension/StructureDefinition/JP_eCS_InstitutionNumber",
            "valueIdentifier": {"system": "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no", "value": code}}])
}

fn patient_json(facility: &str, local: &str, name: (&str, &str, &str), kana: &str, birth: &str, ins: &str) -> Value {
    json!({"resourceType": "Patient",
        "identifier": [{"system": format!("urn:oid:1.2.392.100495.20.3.51.1{facility}"), "value": local},
                       {"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID", "value": ins}],
        "name": [{"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "IDE"}], "text": name.0, "family": name.1, "given": [name.2]},
                 {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}], "text": kana}],
        "gender": "female", "birthDate": birth,
        "address": [{"state": "東京都", "city": "千代田区", "line": ["丸の内1-1"]}]})
}

fn lab(facility: &str, patient: &str, value: f64) -> Value {
    json!({"resourceType": "Observation", "extension": ext(facility), "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "code": "3D046000001920402", "display": "HbA1c"}]},
        "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": "2026-10-01",
        "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}})
}

fn created(r: Resp) -> String {
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

/// A logged-in user with their TOTP secret.
fn clinician(s: &TestServer, login: &str, profession: &str, facility: &str) -> (Client, String) {
    let pw = "Musubi-pass-2026";
    let r = api(
        &s.client(&s.admin),
        Method::POST,
        "/admin/users",
        Some(
            json!({"login": login, "name": format!("{login} さん"), "profession": profession, "facilities": [facility], "password": pw}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let secret = r.body["totp_secret"].as_str().unwrap().to_owned();
    (log_in(s, login, pw, &secret, "user"), secret)
}

fn log_in(s: &TestServer, login: &str, password: &str, secret: &str, kind: &str) -> Client {
    let r = api(&anon(s), Method::POST, "/login", Some(json!({"login": login, "password": password, "kind": kind})));
    assert_eq!(r.status, 200, "login {login}: {}", r.text);
    let c = s.client(r.body["token"].as_str().unwrap());
    let code = musubi_service::people::totp_code_now(secret).unwrap();
    let r = api(&c, Method::POST, "/login/totp", Some(json!({"code": code})));
    assert_eq!(r.status, 200, "{}", r.text);
    // The login completes under a new token; the pending one is dead.
    s.client(r.body["token"].as_str().unwrap())
}

fn register(s: &TestServer, code: &str, birth: &str, login: &str) -> Resp {
    api(
        &anon(s),
        Method::POST,
        "/portal/register",
        Some(json!({"name": "結 花子", "birth_date": birth, "prefecture": "東京都", "city": "千代田区",
                    "login": login, "password": "Hanako-pass-2026", "activation_code": code})),
    )
}

fn portal(s: &TestServer, patient: &str, birth: &str, login: &str) -> Client {
    let code = activation_code(s, patient);
    let r = register(s, &code, birth, login);
    assert_eq!(r.status, 200, "{}", r.text);
    log_in(s, login, "Hanako-pass-2026", r.body["totp_secret"].as_str().unwrap(), "portal")
}

fn everything(c: &Client, patient: &str) -> Resp {
    c.get(&format!("Patient/{patient}/$everything"))
}

fn notifications(patient: &Client) -> Vec<String> {
    let r = api(patient, Method::GET, "/portal/notifications", None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["notifications"].as_array().unwrap().iter().map(|n| n["text"].as_str().unwrap().to_owned()).collect()
}

struct World {
    /// The clinic's patient (the victim).
    pid: String,
    /// Another patient of the clinic, who lives in Yamanashi.
    other: String,
    /// The clinic's system.
    src: Client,
}

fn world(s: &TestServer) -> World {
    let admin = s.client(&s.admin);
    for (code, name, class, area, cities, discloses, views) in [
        (SOURCE, "結びクリニック", "clinic", "1301", vec!["千代田区", "中央区"], true, true),
        (HOSP, "東京結び病院", "hospital", "1301", vec![], true, true),
        (SHUT, "閲覧しない病院", "hospital", "1301", vec![], true, false),
        (QUIET, "開示しない診療所", "clinic", "1301", vec![], false, true),
        (FAR, "横浜結び病院", "hospital", "1401", vec!["横浜市"], true, true),
    ] {
        let r = api(
            &admin,
            Method::POST,
            "/admin/facilities",
            Some(json!({"code": code, "name": name, "class": class, "prefecture": code[..2].parse::<i64>().unwrap(),
                        "area": area, "cities": cities, "discloses": discloses, "views": views})),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let src = s.client(&s.token(SOURCE, "clinic-emr"));
    let pid = created(src.post(
        "Patient",
        &patient_json(SOURCE, "C-0001", ("結 花子", "結", "花子"), "ムスビ ハナコ", "1970-05-05", INS),
    ));
    created(src.post("Observation", &lab(SOURCE, &pid, 7.2)));
    let mut other = patient_json(
        SOURCE,
        "C-0002",
        ("山梨 太郎", "山梨", "太郎"),
        "ヤマナシ タロウ",
        "1960-01-01",
        "06190001:1:2:01",
    );
    other["gender"] = json!("male");
    other["address"] = json!([{"state": "山梨県", "city": "甲府市"}]);
    let other = created(src.post("Patient", &other));
    created(src.post("Observation", &lab(SOURCE, &other, 6.1)));
    World { pid, other, src }
}

/// A clerk posts consent at the visit with only a patient id, for a patient the hospital never
/// treated (one in the area, one living in Yamanashi): refused; the doctor still sees nothing.
fn attack_clerk_records_visit_consent_without_the_patient(s: &TestServer, w: &World) {
    let (clerk, _) = clinician(s, "clerk-a", "clerk", HOSP);
    let (doctor, _) = clinician(s, "dr-a", "doctor", HOSP);
    for p in [&w.pid, &w.other] {
        let r = api(&clerk, Method::POST, "/clinician/visit-consent", Some(json!({"patient": p})));
        assert_eq!(r.status, 400, "a patient id alone is no evidence: {}", r.text);
        let r = api(&clerk, Method::POST, "/clinician/visit-consent", Some(json!({"patient": p, "code": "1234 5678"})));
        assert_eq!(r.status, 403, "a made-up code: {}", r.text);
        assert_eq!(everything(&doctor, p).status, 404);
    }
    // Other licensed staff do not receive consent at all.
    let (tech, _) = clinician(s, "tech-a", "other-licensed", HOSP);
    let r = api(&tech, Method::POST, "/clinician/visit-consent", Some(json!({"patient": w.pid, "paper_form": "F-1"})));
    assert_eq!(r.status, 403, "{}", r.text);
}

/// Guessing codes is throttled per user: after 5 wrong codes in an hour, even a right one waits.
fn attack_guessing_consent_codes(s: &TestServer, w: &World, patient: &Client) {
    let (clerk, _) = clinician(s, "clerk-guess", "clerk", HOSP);
    for i in 0..5 {
        let r = api(
            &clerk,
            Method::POST,
            "/clinician/visit-consent",
            Some(json!({"patient": w.pid, "code": format!("0000 000{i}")})),
        );
        assert_eq!(r.status, 403, "{}", r.text);
    }
    let code = consent_code(patient);
    let r = api(&clerk, Method::POST, "/clinician/visit-consent", Some(json!({"patient": w.pid, "code": code})));
    assert_eq!(r.status, 429, "{}", r.text);
    // The count is in the database: a restart, or a second server on it, does not forget it.
    let second = TestServer::start_bare(s.store.clone(), tempfile::tempdir().unwrap(), Default::default());
    let r = api(
        &second.client(&clerk.token),
        Method::POST,
        "/clinician/visit-consent",
        Some(json!({"patient": w.pid, "code": code})),
    );
    assert_eq!(r.status, 429, "{}", r.text);
}

/// The patient's code opens their own record only, once, and the patient and the operator see
/// the consent at once.
fn attack_consent_code_reused_or_used_for_another_patient(s: &TestServer, w: &World, patient: &Client) {
    let (clerk, _) = clinician(s, "clerk-b", "clerk", HOSP);
    let (doctor, _) = clinician(s, "dr-b", "doctor", HOSP);
    let code = consent_code(patient);
    let r = api(&clerk, Method::POST, "/clinician/visit-consent", Some(json!({"patient": w.other, "code": code})));
    assert_eq!(r.status, 403, "another patient's code: {}", r.text);
    assert_eq!(everything(&doctor, &w.other).status, 404);
    let r = api(&clerk, Method::POST, "/clinician/visit-consent", Some(json!({"patient": w.pid, "code": code})));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["until"].is_string(), "bounded: {}", r.text);
    let again = api(&clerk, Method::POST, "/clinician/visit-consent", Some(json!({"patient": w.pid, "code": code})));
    assert_eq!(again.status, 403, "a code works once: {}", again.text);
    assert_eq!(everything(&doctor, &w.pid).status, 200, "the hospital now sees the record");
    assert!(notifications(patient).iter().any(|t| t.contains("来院時の同意を記録しました")));
    let list = api(&s.client(&s.admin), Method::GET, "/admin/visit-consents", None);
    assert!(
        list.body["recent"].as_array().unwrap().iter().any(|v| v["facility"] == HOSP && v["evidence"] == "code"),
        "{}",
        list.text
    );
    // The patient's access history names it.
    let h = api(patient, Method::GET, "/portal/history", None);
    assert!(h.text.contains("東京結び病院"), "{}", h.text);
}

/// A paper form takes effect only when the operator confirms it.
fn attack_paper_consent_without_the_operator(s: &TestServer, w: &World) {
    let (doctor, _) = clinician(s, "dr-far", "doctor", FAR);
    let r =
        api(&doctor, Method::POST, "/clinician/visit-consent", Some(json!({"patient": w.other, "paper_form": "F-77"})));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(everything(&doctor, &w.other).status, 404, "pending is not consent");
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        api(&doctor, Method::POST, &format!("/admin/visit-consents/{id}"), Some(json!({"accept": true}))).status,
        403
    );
    let pending = api(&s.client(&s.admin), Method::GET, "/admin/visit-consents", None);
    assert!(pending.body["pending"].as_array().unwrap().iter().any(|v| v["id"] == id.as_str()), "{}", pending.text);
    let r =
        api(&s.client(&s.admin), Method::POST, &format!("/admin/visit-consents/{id}"), Some(json!({"accept": true})));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(everything(&doctor, &w.other).status, 200);
    // Deciding twice is refused.
    let r =
        api(&s.client(&s.admin), Method::POST, &format!("/admin/visit-consents/{id}"), Some(json!({"accept": false})));
    assert_eq!(r.status, 404, "{}", r.text);
}

/// A facility writes a record about another facility's patient (which once made it "treating"):
/// refused, and its staff still see nothing.
fn attack_write_about_another_facilitys_patient(s: &TestServer, w: &World) {
    let hosp = s.client(&s.token(HOSP, "hosp-emr"));
    let r = hosp.post("Observation", &lab(HOSP, &w.other, 5.0));
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.diagnostics().contains("他の医療機関"), "{}", r.text);
    let (doctor, _) = clinician(s, "dr-hosp-w", "doctor", HOSP);
    assert_eq!(doctor.get(&format!("Observation?patient={}", w.other)).body["total"], 0);
}

/// A deleted resource still belongs to its facility: another facility cannot take its id over,
/// and never reads its old versions.
fn attack_recreate_another_facilitys_deleted_resource(s: &TestServer, w: &World) {
    let body = |f: &str, p: &str| {
        let mut o = lab(f, p, 9.9);
        o["id"] = json!("obs-taken-over");
        o
    };
    let r = w.src.put("Observation/obs-taken-over", &body(SOURCE, &w.pid));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(w.src.delete("Observation/obs-taken-over").status, 204);
    let far = s.client(&s.token(FAR, "far-emr2"));
    let far_patient = created(far.post(
        "Patient",
        &patient_json(FAR, "F-1", ("別人 花子", "別人", "花子"), "ベツジン ハナコ", "1990-01-01", "06140001:9:9:01"),
    ));
    let r = far.put("Observation/obs-taken-over", &body(FAR, &far_patient));
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(far.get("Observation/obs-taken-over/_history/1").status, 404);
    assert_eq!(far.get("Observation/obs-taken-over/_history").status, 404);
}

/// An older version about another patient is decided on its own meta.
fn attack_vread_of_a_version_about_another_patient(s: &TestServer, w: &World, patient: &Client) {
    // The clinic filed a result under the Yamanashi patient first, then corrected the subject.
    let mut o = lab(SOURCE, &w.other, 8.8);
    o["id"] = json!("obs-corrected");
    assert_eq!(w.src.put("Observation/obs-corrected", &o).status, 201);
    o["subject"] = json!({"reference": format!("Patient/{}", w.pid)});
    assert_eq!(w.src.put("Observation/obs-corrected", &o).status, 200);
    // A hospital doctor allowed for the victim only (consent code) must not read version 1.
    let (clerk, _) = clinician(s, "clerk-v", "clerk", HOSP);
    let (doctor, _) = clinician(s, "dr-v", "doctor", HOSP);
    let code = consent_code(patient);
    assert_eq!(
        api(&clerk, Method::POST, "/clinician/visit-consent", Some(json!({"patient": w.pid, "code": code}))).status,
        200
    );
    assert_eq!(doctor.get("Observation/obs-corrected").status, 200);
    assert_eq!(doctor.get("Observation/obs-corrected/_history/2").status, 200);
    assert_eq!(doctor.get("Observation/obs-corrected/_history/1").status, 404, "version 1 was about another patient");
    let h = doctor.get("Observation/obs-corrected/_history");
    assert_eq!(h.status, 200, "{}", h.text);
    assert_eq!(h.body["total"], 1, "{}", h.text);
    assert!(!h.text.contains(&w.other), "{}", h.text);
    // The patient does not see version 1 either.
    assert_eq!(patient.get("Observation/obs-corrected/_history/1").status, 404);
}

/// The patient's disclosure settings (which facilities they closed) are theirs.
fn attack_clinician_reads_the_patients_consent(s: &TestServer, w: &World, patient: &Client) {
    let view = api(patient, Method::GET, "/portal/consent", None);
    let mut settings = view.body["settings"].clone();
    settings["facilities"] = json!({FAR: false});
    let r = api(
        patient,
        Method::PUT,
        "/portal/consent",
        Some(json!({"settings": settings, "version": view.body["version"]})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let mine = patient.get(&format!("Consent?patient={}", w.pid));
    assert_eq!(mine.body["total"], 1, "{}", mine.text);
    let id = mine.body["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    let (doctor, _) = clinician(s, "dr-c", "doctor", HOSP);
    let code = consent_code(patient);
    let (clerk, _) = clinician(s, "clerk-c", "clerk", HOSP);
    assert_eq!(
        api(&clerk, Method::POST, "/clinician/visit-consent", Some(json!({"patient": w.pid, "code": code}))).status,
        200
    );
    assert_eq!(everything(&doctor, &w.pid).status, 200);
    assert!(!everything(&doctor, &w.pid).text.contains("\"Consent\""), "not in $everything");
    assert_eq!(doctor.get(&format!("Consent/{id}")).status, 404);
    let cs = doctor.get(&format!("Consent?patient={}", w.pid));
    assert_eq!(cs.body["total"], 0, "{}", cs.text);
    assert_eq!(s.client(&s.admin).get(&format!("Consent/{id}")).status, 200, "the operator may");
}

/// 閲覧 and 開示 are enforced: a facility that does not view reads nothing of others; one that
/// does not disclose is shown to nobody.
fn attack_facility_flags(s: &TestServer, w: &World, patient: &Client) {
    // The quiet clinic registers the patient (linked by matching demographics) and sends a result.
    let quiet = s.client(&s.token(QUIET, "quiet-emr"));
    let qp =
        created(quiet.post(
            "Patient",
            &patient_json(QUIET, "Q-1", ("結 花子", "結", "花子"), "ムスビ ハナコ", "1970-05-05", INS),
        ));
    let qobs = created(quiet.post("Observation", &lab(QUIET, &qp, 6.6)));
    let (doctor, _) = clinician(s, "dr-flags", "doctor", HOSP);
    let (clerk, _) = clinician(s, "clerk-flags", "clerk", HOSP);
    let code = consent_code(patient);
    assert_eq!(
        api(&clerk, Method::POST, "/clinician/visit-consent", Some(json!({"patient": w.pid, "code": code}))).status,
        200
    );
    let all = everything(&doctor, &w.pid);
    assert_eq!(all.status, 200);
    assert!(!all.text.contains(&qobs), "a facility that does not disclose is not shown: {}", all.text);
    assert_eq!(doctor.get(&format!("Observation/{qobs}")).status, 404);
    let n = doctor.get(&format!("Observation?patient={qp}")).body["total"].clone();
    assert_eq!(n, 0);
    // The facility that does not view: consent recorded, still nothing of others.
    let (shut_clerk, _) = clinician(s, "clerk-shut", "clerk", SHUT);
    let (shut_doc, _) = clinician(s, "dr-shut", "doctor", SHUT);
    let code = consent_code(patient);
    assert_eq!(
        api(&shut_clerk, Method::POST, "/clinician/visit-consent", Some(json!({"patient": w.pid, "code": code})))
            .status,
        200
    );
    assert_eq!(everything(&shut_doc, &w.pid).status, 404);
    assert_eq!(shut_doc.get(&format!("Observation?patient={}", w.pid)).body["total"], 0);
}

/// Anyone who knows name, birth date, sex and insurance number once took over a portal account;
/// now enrolment needs the code, and every failure looks the same.
fn attack_portal_takeover(s: &TestServer, w: &World, patient: &Client) {
    let no_code = register(s, "", "1970-05-05", "thief1");
    let wrong_code = register(s, "AAAA-BBBB-CCCC-DDDD", "1970-05-05", "thief2");
    let probe_nobody = register(s, "AAAA-BBBB-CCCC-DDDD", "1999-09-09", "thief3");
    for r in [&no_code, &wrong_code, &probe_nobody] {
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.diagnostics(), no_code.diagnostics(), "one answer for every failure");
    }
    // A valid code for a person who already has an account: the same answer, and the holder is told.
    let code = activation_code(s, &w.pid);
    let r = register(s, &code, "1970-05-05", "thief4");
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.diagnostics(), no_code.diagnostics());
    assert!(notifications(patient).iter().any(|t| t.contains("利用登録が試みられました")), "the holder is told");
    // A facility that never treated the patient cannot issue a code for them.
    let (clerk, _) = clinician(s, "clerk-code", "clerk", HOSP);
    let r = api(&clerk, Method::POST, "/clinician/activation-code", Some(json!({"patient": w.pid})));
    assert_eq!(r.status, 403, "{}", r.text);
    // The clinic's own desk can, for its patient.
    let (own, _) = clinician(s, "clerk-own", "clerk", SOURCE);
    let r = api(&own, Method::POST, "/clinician/activation-code", Some(json!({"patient": w.other})));
    assert_eq!(r.status, 200, "{}", r.text);
    // An account made with a desk's code is announced by post to the address on file, even when
    // whoever holds the account has read (and so would hide) the portal notices.
    let code = r.body["code"].as_str().unwrap().to_owned();
    let r = register(s, &code, "1960-01-01", "desk-made");
    assert_eq!(r.status, 200, "{}", r.text);
    let held = log_in(s, "desk-made", "Hanako-pass-2026", r.body["totp_secret"].as_str().unwrap(), "portal");
    assert!(notifications(&held).iter().any(|t| t.contains("利用登録が完了しました")));
    let to_post = api(&s.client(&s.admin), Method::GET, "/admin/notices-to-post", None);
    assert!(
        to_post.body.as_array().unwrap().iter().any(|n| n["kind"] == "portal-enrolled"
            && n["text"].as_str().unwrap().contains("desk-made")
            && n["text"].as_str().unwrap().contains("発行元")),
        "the letter waits for the post: {}",
        to_post.text
    );
    let revoked = api(
        &s.client(&s.admin),
        Method::POST,
        &format!("/admin/portal-revoke/{}", r.body["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    // The anonymous probe says nothing either way: the registration text names no one.
    assert!(!no_code.text.contains("結 花子"));
}

/// A hijacked account: the operator revokes it and issues a new code; the real patient enrols.
fn attack_hijacked_account_is_revoked(s: &TestServer, w: &World) {
    let code = activation_code(s, &w.other);
    let r = register(s, &code, "1960-01-01", "hijacker");
    assert_eq!(r.status, 200, "{}", r.text);
    let account = r.body["id"].as_str().unwrap().to_owned();
    let hijacker = log_in(s, "hijacker", "Hanako-pass-2026", r.body["totp_secret"].as_str().unwrap(), "portal");
    assert_eq!(hijacker.get(&format!("Observation?patient={}", w.other)).body["total"], 1);
    let r = api(&s.client(&s.admin), Method::POST, &format!("/admin/portal-revoke/{account}"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(hijacker.get(&format!("Observation?patient={}", w.other)).status, 401, "its session ended");
    let code = activation_code(s, &w.other);
    let r = register(s, &code, "1960-01-01", "real-taro");
    assert_eq!(r.status, 200, "the real patient enrols again: {}", r.text);
}

/// Break-glass is bounded: the second factor again, a reason from the list and in words, a
/// per-user limit with an operator alert, and a notice kept for posting when the patient has
/// no account.
fn attack_break_glass_unbounded(s: &TestServer, w: &World) {
    let (doctor, secret) = clinician(s, "dr-glass", "doctor", FAR);
    let r = api(
        &doctor,
        Method::POST,
        "/clinician/break-glass",
        Some(
            json!({"patient": w.other, "reason_code": "emergency-transport", "reason": "意識がなく救急搬送された", "code": "000000"}),
        ),
    );
    let wrong = if musubi_service::people::totp_code_now(&secret).unwrap() == "000000" { 200 } else { 401 };
    assert_eq!(r.status, wrong, "the second factor is asked again: {}", r.text);
    let r = api(
        &doctor,
        Method::POST,
        "/clinician/break-glass",
        Some(json!({"patient": w.other, "reason_code": "because", "reason": "意識がなく救急搬送された", "code": "1"})),
    );
    assert_eq!(r.status, 400, "a reason from the list: {}", r.text);
    for i in 0..3 {
        let r = break_glass(&doctor, &w.other, &secret, "意識がなく救急搬送された、既往歴の確認");
        assert_eq!(r.status, 200, "#{i}: {}", r.text);
        let until = time::OffsetDateTime::parse(
            r.body["until"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert!(until - time::OffsetDateTime::now_utc() <= time::Duration::hours(4), "hours, not a day");
    }
    let r = break_glass(&doctor, &w.other, &secret, "意識がなく救急搬送された、既往歴の確認");
    assert_eq!(r.status, 429, "a fourth in 24 hours is refused: {}", r.text);
    let admin = s.client(&s.admin);
    let alerts = api(&admin, Method::GET, "/admin/alerts", None);
    assert!(alerts.body.as_array().unwrap().iter().any(|a| a["kind"] == "break-glass-rate"), "{}", alerts.text);
    let notices = api(&admin, Method::GET, "/admin/notices-to-post", None);
    let to_post: Vec<&Value> =
        notices.body.as_array().unwrap().iter().filter(|n| n["kind"] == "emergency-access").collect();
    assert!(!to_post.is_empty(), "the patient without an account gets a letter: {}", notices.text);
    let id = to_post[0]["id"].as_str().unwrap();
    assert_eq!(api(&admin, Method::POST, &format!("/admin/notices-to-post/{id}"), None).status, 200);
    let after = api(&admin, Method::GET, "/admin/notices-to-post", None);
    assert!(!after.text.contains(id), "posted once");
    let reviews = api(&admin, Method::GET, "/admin/emergency-reviews", None);
    assert!(reviews.body["reviews"].as_array().unwrap().len() >= 3, "{}", reviews.text);
}

/// Records arrive for everyone, but are shown to other facilities only after the person's
/// participation consent (opt-in, the default); in a per-visit network, only under a consent at
/// the visit.
fn attack_sharing_without_participation(s: &TestServer) {
    let src = s.client(&s.token(SOURCE, "clinic-emr-p"));
    let hosp = s.client(&s.token(HOSP, "hosp-emr-p"));
    let who = ("参加 未子", "参加", "未子");
    let p = created(
        src.post("Patient", &patient_json(SOURCE, "C-0009", who, "サンカ ミコ", "1981-02-03", "06139999:9:9:09")),
    );
    created(src.post("Observation", &lab(SOURCE, &p, 5.5)));
    // The hospital treated her too (its own registration, matching demographics).
    created(hosp.post("Patient", &patient_json(HOSP, "H-0009", who, "サンカ ミコ", "1981-02-03", "06139999:9:9:09")));
    let (doctor, _) = clinician(s, "dr-part", "doctor", HOSP);
    assert_eq!(doctor.get(&format!("Observation?patient={p}")).body["total"], 0, "no participation yet");
    let me = portal(s, &p, "1981-02-03", "miko");
    // Registration alone is not participation.
    assert_eq!(doctor.get(&format!("Observation?patient={p}")).body["total"], 0);
    let r = api(&me, Method::PUT, "/portal/participation", Some(json!({"participating": true})));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(doctor.get(&format!("Observation?patient={p}")).body["total"], 1, "shared once she takes part");
    // Per-visit networks need a consent at the visit on top.
    s.store.put_setting("network.participation".into(), "per-visit".into()).unwrap();
    assert_eq!(doctor.get(&format!("Observation?patient={p}")).body["total"], 0);
    let (clerk, _) = clinician(s, "clerk-part", "clerk", HOSP);
    assert_eq!(visit_consent(&clerk, &me, &p).status, 200);
    assert_eq!(doctor.get(&format!("Observation?patient={p}")).body["total"], 1);
    s.store.put_setting("network.participation".into(), "opt-in".into()).unwrap();
    // Withdrawn: hidden again.
    let r = api(&me, Method::PUT, "/portal/participation", Some(json!({"participating": false})));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(doctor.get(&format!("Observation?patient={p}")).body["total"], 0);
}

/// "Prefectures lived in during the past 2 years" (DESIGN.md) come from the residence history:
/// a move recorded by a facility's update of its registration opens (or not) the old
/// prefecture's facilities as the patient set it.
fn residence_over_time(s: &TestServer) {
    const YAMANASHI: &str = "1918814790";
    let admin = s.client(&s.admin);
    let r = api(
        &admin,
        Method::POST,
        "/admin/facilities",
        Some(
            json!({"code": YAMANASHI, "name": "甲府結び病院", "class": "hospital", "prefecture": 19, "area": "1901", "cities": ["甲府市"]}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let src = s.client(&s.token(SOURCE, "clinic-emr-move"));
    let who = ("転居 花子", "転居", "花子");
    // Registered while she lived in Kofu, then the clinic updates the address: she moved.
    let mut reg = patient_json(SOURCE, "C-0077", who, "テンキョ ハナコ", "1975-07-07", "06139999:7:7:07");
    reg["address"] = json!([{"state": "山梨県", "city": "甲府市"}]);
    let p = created(src.post("Patient", &reg));
    reg["id"] = json!(p);
    reg["address"] = json!([{"state": "東京都", "city": "千代田区"}]);
    assert_eq!(src.put(&format!("Patient/{p}"), &reg).status, 200);
    created(src.post("Observation", &lab(SOURCE, &p, 6.0)));
    // The Kofu hospital treated her there (its own registration of her).
    let yh = s.client(&s.token(YAMANASHI, "kofu-emr"));
    let mut theirs = patient_json(YAMANASHI, "Y-1", who, "テンキョ ハナコ", "1975-07-07", "06139999:7:7:07");
    theirs["address"] = json!([{"state": "東京都", "city": "千代田区"}]);
    created(yh.post("Patient", &theirs));
    let me = portal(s, &p, "1975-07-07", "tenkyo");
    assert_eq!(api(&me, Method::PUT, "/portal/participation", Some(json!({"participating": true}))).status, 200);
    let (doctor, _) = clinician(s, "dr-kofu", "doctor", YAMANASHI);
    // By default only the residence 二次医療圏 is open: Kofu needs individual consent.
    assert_eq!(doctor.get(&format!("Observation?patient={p}")).body["total"], 0);
    // She opens "prefectures lived in during the past 2 years": Yamanashi is one of them.
    let view = api(&me, Method::GET, "/portal/consent", None);
    let mut settings = view.body["settings"].clone();
    settings["area"]["recent_prefectures"] = json!(true);
    let r =
        api(&me, Method::PUT, "/portal/consent", Some(json!({"settings": settings, "version": view.body["version"]})));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(doctor.get(&format!("Observation?patient={p}")).body["total"], 1, "Yamanashi was lived in lately");
    // She moves to Yokohama and says so in the portal: Tokyo joins the recent prefectures, and
    // Kofu stays one of them.
    let r = api(&me, Method::PUT, "/portal/residence", Some(json!({"prefecture": "神奈川県", "city": "横浜市"})));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["prefecture"], 14);
    let bad = api(&me, Method::PUT, "/portal/residence", Some(json!({"prefecture": "どこか", "city": "横浜市"})));
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(doctor.get(&format!("Observation?patient={p}")).body["total"], 1);
    let (tokyo, _) = clinician(s, "dr-tokyo-move", "doctor", HOSP);
    let (clerk, _) = clinician(s, "clerk-tokyo-move", "clerk", HOSP);
    // A Tokyo hospital that never treated her sees nothing (Tokyo, a recent prefecture, is
    // open by her settings, but there is no care relationship) until she shows a code there.
    assert_eq!(tokyo.get(&format!("Observation?patient={p}")).body["total"], 0);
    assert_eq!(visit_consent(&clerk, &me, &p).status, 200);
    assert_eq!(tokyo.get(&format!("Observation?patient={p}")).body["total"], 1);
}

/// A setting decides who sees what (`network.participation`): only an operator changes it,
/// only to an allowed value, and the change is in the audit trail with the old and new value.
fn attack_setting_changed_silently(s: &TestServer) {
    let (doctor, _) = clinician(s, "dr-settings", "doctor", HOSP);
    let body = json!({"value": "per-visit"});
    let r = api(&doctor, Method::PUT, "/admin/settings/network.participation", Some(body.clone()));
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(api(&doctor, Method::GET, "/admin/settings", None).status, 403);
    let op = s.client(&s.admin);
    let bad = api(&op, Method::PUT, "/admin/settings/network.participation", Some(json!({"value": "everyone"})));
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(api(&op, Method::PUT, "/admin/settings/audit.off", Some(json!({"value": "1"}))).status, 404);
    let r = api(&op, Method::PUT, "/admin/settings/network.participation", Some(body));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["value"], "per-visit");
    let list = api(&op, Method::GET, "/admin/settings", None);
    let current = list.body.as_array().unwrap().iter().find(|v| v["key"] == "network.participation").unwrap();
    assert_eq!(current["value"], "per-visit");
    let report = api(&op, Method::GET, "/admin/audit-report?format=csv&limit=1000", None);
    assert_eq!(report.status, 200, "{}", report.text);
    assert!(
        report.text.lines().any(|l| l.contains("change-setting") && l.contains("opt-in -> per-visit")),
        "the change is audited with the old and new value: {}",
        report.text
    );
    let r = api(&op, Method::PUT, "/admin/settings/network.participation", Some(json!({"value": "opt-in"})));
    assert_eq!(r.status, 200, "{}", r.text);
}

fn scenario(s: &TestServer) {
    let w = world(s);
    let patient = portal(s, &w.pid, "1970-05-05", "hanako");
    attack_clerk_records_visit_consent_without_the_patient(s, &w);
    attack_consent_code_reused_or_used_for_another_patient(s, &w, &patient);
    attack_paper_consent_without_the_operator(s, &w);
    attack_write_about_another_facilitys_patient(s, &w);
    attack_recreate_another_facilitys_deleted_resource(s, &w);
    attack_vread_of_a_version_about_another_patient(s, &w, &patient);
    attack_clinician_reads_the_patients_consent(s, &w, &patient);
    attack_facility_flags(s, &w, &patient);
    attack_portal_takeover(s, &w, &patient);
    attack_break_glass_unbounded(s, &w);
    attack_hijacked_account_is_revoked(s, &w);
    attack_guessing_consent_codes(s, &w, &patient);
    attack_sharing_without_participation(s);
    residence_over_time(s);
    attack_setting_changed_silently(s);
}

#[test]
fn insider_attacks_are_denied_sqlite() {
    scenario(&TestServer::start());
}

#[test]
fn insider_attacks_are_denied_postgres() {
    let db = FreshDb::new("musubi_attacks");
    {
        let store = Store::open_postgres(&db.url).unwrap();
        let server = TestServer::start_on(store, tempfile::tempdir().unwrap());
        scenario(&server);
    }
}
