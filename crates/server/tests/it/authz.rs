//! The authorization matrix (issue 6): every FHIR read route × every role × consent setting ×
//! care relationship, generated, over HTTP against a real server, compared with an oracle
//! written here from DESIGN.md's rules — independently of `musubi_gate` — so a change to the
//! gate that disagrees with the documented rules fails here.
//!
//! Routes: read, vread, instance history, search by patient (totals and entries), `_include`
//! of the patient, `Patient/$everything`. Roles: the six professions at facilities with each
//! kind of care relationship, break-glass users, the source facility's system, another
//! facility's system, the patient, another patient, the operator. Consent settings: the
//! default, everything closed, pharmacies in the area closed, nurses turned off, every area
//! opened. A hidden record must not show through a status, a total, an entry or an include.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;
use serde_json::{Value, json};

const SOURCE: &str = "1312345678"; // clinic in 区中央部 (1301) that sent most records
const H_T: &str = "1318814790"; // hospital in 1301 that treated the patient (sent its own registration)
const P_V: &str = "1348814790"; // pharmacy in 1301, consent in person at a visit
const H_N: &str = "1318800012"; // hospital in 1301, no relationship (its break-glass users)
const S_V: &str = "1318800020"; // hospital in 1302 (same prefecture), consent in person
const F_T: &str = "1418814790"; // hospital in another prefecture that treated the patient

const DAY: i64 = 86_400_000;

/// Where a viewer stands: the facility's place and class, and its care relationship.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Care {
    Treated,
    InPerson,
    None,
}

#[derive(Debug)]
struct Facility {
    code: &'static str,
    class: &'static str,
    prefecture: i64,
    area: &'static str,
    care: Care,
}

const FACILITIES: [Facility; 6] = [
    Facility { code: SOURCE, class: "clinic", prefecture: 13, area: "1301", care: Care::None },
    Facility { code: H_T, class: "hospital", prefecture: 13, area: "1301", care: Care::Treated },
    Facility { code: P_V, class: "pharmacy", prefecture: 13, area: "1301", care: Care::InPerson },
    Facility { code: H_N, class: "hospital", prefecture: 13, area: "1301", care: Care::None },
    Facility { code: S_V, class: "hospital", prefecture: 13, area: "1302", care: Care::InPerson },
    Facility { code: F_T, class: "hospital", prefecture: 14, area: "1401", care: Care::Treated },
];

const PROFESSIONS: [&str; 6] = ["doctor", "dentist", "pharmacist", "nurse", "other-licensed", "clerk"];

/// The consent settings the matrix runs through.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Setting {
    Default,
    AllClosed,
    AreaPharmaciesClosed,
    NursesOff,
    EverywhereOpen,
}

const SETTINGS: [Setting; 5] =
    [Setting::Default, Setting::AllClosed, Setting::AreaPharmaciesClosed, Setting::NursesOff, Setting::EverywhereOpen];

fn settings_json(s: Setting) -> Value {
    let mut v = json!({
        "closed": false,
        "area": {"residence_area": true, "residence_prefecture": false, "recent_prefectures": false, "elsewhere": false},
        "kinds": [], "professions": {}, "facilities": {}
    });
    match s {
        Setting::Default => {}
        Setting::AllClosed => v["closed"] = json!(true),
        Setting::AreaPharmaciesClosed => {
            v["kinds"] = json!([{"within": {"type": "area", "value": "1301"}, "class": "pharmacy", "allow": false}])
        }
        Setting::NursesOff => v["professions"] = json!({"nurse": false}),
        Setting::EverywhereOpen => {
            v["area"] = json!({"residence_area": true, "residence_prefecture": true, "recent_prefectures": true, "elsewhere": true})
        }
    }
    v
}

/// One stored record as the oracle sees it.
#[derive(Debug, Clone)]
struct Rec {
    rtype: &'static str,
    id: String,
    /// DESIGN.md's class name (the rows of the profession table).
    class: &'static str,
    facility: &'static str,
    /// Days before today of the clinical date.
    age_days: i64,
    undelivered: bool,
    uninformed: bool,
    /// Whether it is about the patient under test (the other patient's records are not).
    ours: bool,
}

/// Who asks.
#[derive(Debug, Clone)]
enum Role {
    Clinician { profession: &'static str, facility: &'static Facility, break_glass: bool },
    System { facility: &'static str },
    Patient,
    OtherPatient,
    Operator,
}

/// DESIGN.md's table of what each profession sees (written out, not taken from the gate).
fn profession_sees(profession: &str, class: &str) -> bool {
    let six_items = ["diagnosis", "infection", "drug-allergy", "other-allergy", "lab", "prescription"];
    match class {
        "demographics" | "encounter" => true,
        c if six_items.contains(&c) => profession != "clerk",
        "document" | "referral" | "discharge-summary" | "checkup" => {
            matches!(profession, "doctor" | "dentist" | "nurse")
        }
        _ => matches!(profession, "doctor" | "dentist" | "nurse" | "other-licensed"),
    }
}

/// Pharmacists, other licensed staff and clerks see one year back; the others everything.
fn within_period(profession: &str, age_days: i64) -> bool {
    !matches!(profession, "pharmacist" | "other-licensed" | "clerk") || age_days <= 365
}

/// The patient's consent for a viewer at `f` of `profession`: Some(true) open, Some(false)
/// closed for good, None = needs consent given in person.
fn consent(setting: Setting, f: &Facility, profession: &str) -> Option<bool> {
    match setting {
        Setting::AllClosed => return Some(false),
        Setting::NursesOff if profession == "nurse" => return Some(false),
        Setting::AreaPharmaciesClosed if f.class == "pharmacy" && f.area == "1301" => return Some(false),
        _ => {}
    }
    let in_area = f.prefecture == 13 && f.area == "1301";
    if in_area || setting == Setting::EverywhereOpen { Some(true) } else { None }
}

fn oracle(role: &Role, setting: Setting, r: &Rec) -> bool {
    match role {
        Role::Operator => true,
        Role::System { facility } => r.facility == *facility,
        Role::Patient => r.ours && !r.uninformed,
        Role::OtherPatient => !r.ours,
        Role::Clinician { profession, facility, break_glass } => {
            if !profession_sees(profession, r.class) {
                return false;
            }
            if r.facility == facility.code {
                return true;
            }
            if !r.ours || r.undelivered {
                return false;
            }
            if *break_glass {
                return true;
            }
            let open = match consent(setting, facility, profession) {
                Some(true) => facility.care != Care::None,
                Some(false) => false,
                None => facility.care == Care::InPerson,
            };
            open && within_period(profession, r.age_days)
        }
    }
}

fn date_days_ago(days: i64) -> String {
    let now = musubi_fhir::datetime::now_ms();
    let t = time::OffsetDateTime::from_unix_timestamp((now - days * DAY) / 1000).unwrap();
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

fn institution(code: &str) -> Value {
    json!([{"url": "http://jpfhir.jp/fhir/clins/Extension/StructureDefinition/JP_eCS_InstitutionNumber", "valueIdentifier": {"system": "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no", "value": code}}])
}

fn patient_json(facility: &str, local: &str, name: (&str, &str, &str), kana: &str, insurance: &str) -> Value {
    json!({"resourceType": "Patient",
        "identifier": [{"system": format!("urn:oid:1.2.392.100495.20.3.51.1{facility}"), "value": local},
                       {"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID", "value": insurance}],
        "name": [{"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "IDE"}], "text": name.0, "family": name.1, "given": [name.2]},
                 {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}], "text": kana}],
        "gender": "female", "birthDate": "1970-05-05",
        "address": [{"state": "東京都", "city": "千代田区", "line": ["丸の内1-1"]}]})
}

fn created(r: Resp, what: &str) -> String {
    assert_eq!(r.status, 201, "{what}: {}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

/// The records: the patient's at the clinic (every class the tables distinguish, a recent and
/// an old lab, an undelivered and an uninformed diagnosis), the treating hospitals' own
/// registrations, and another patient's record.
fn load(s: &TestServer) -> (String, Vec<Rec>) {
    let admin = s.client(&s.admin);
    for f in &FACILITIES {
        let cities = match f.area {
            "1301" => vec!["千代田区", "中央区"],
            "1302" => vec!["港区"],
            _ => vec!["横浜市"],
        };
        let r = api(
            &admin,
            reqwest::Method::POST,
            "/admin/facilities",
            Some(json!({"code": f.code, "name": format!("施設{}", f.code), "class": f.class,
                        "prefecture": f.prefecture, "area": f.area, "cities": cities})),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let src = s.client(&s.token(SOURCE, "clinic-emr"));
    let ins = "06139999:ａ１:１２３:01";
    let pid = created(
        src.post("Patient", &patient_json(SOURCE, "C-0001", ("結 花子", "結", "花子"), "ムスビ ハナコ", ins)),
        "patient",
    );
    let subject = json!({"reference": format!("Patient/{pid}")});
    let mut recs = vec![Rec {
        rtype: "Patient",
        id: pid.clone(),
        class: "demographics",
        facility: SOURCE,
        age_days: 0,
        undelivered: false,
        uninformed: false,
        ours: true,
    }];
    let mut add = |rtype: &'static str, class: &'static str, age: i64, flags: (bool, bool), body: Value| {
        let id = created(src.post(rtype, &body), rtype);
        recs.push(Rec {
            rtype,
            id,
            class,
            facility: SOURCE,
            age_days: age,
            undelivered: flags.0,
            uninformed: flags.1,
            ours: true,
        });
    };
    let lab = |age: i64| {
        json!({"resourceType": "Observation", "extension": institution(SOURCE), "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "code": "3D046000001920402", "display": "HbA1c"}]},
            "subject": subject, "effectiveDateTime": date_days_ago(age),
            "valueQuantity": {"value": 7.2, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}})
    };
    add("Observation", "lab", 30, (false, false), lab(30));
    add("Observation", "lab", 800, (false, false), lab(800));
    let condition = |age: i64, tag: Option<&str>| {
        let mut c = json!({"resourceType": "Condition", "extension": institution(SOURCE), "subject": subject,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-disease-keyNumber", "code": "20064591", "display": "２型糖尿病"}], "text": "２型糖尿病"},
            "onsetDateTime": date_days_ago(age), "recordedDate": date_days_ago(age)});
        if let Some(t) = tag {
            c["meta"] =
                json!({"tag": [{"system": "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication", "code": t}]});
        }
        c
    };
    add("Condition", "diagnosis", 60, (false, false), condition(60, None));
    add("Condition", "diagnosis", 60, (true, false), condition(60, Some("UNDELIVERED")));
    add("Condition", "diagnosis", 60, (false, true), condition(60, Some("UNINFORMED")));
    let mut allergy = read_json(
        &reference_dir().join("jp-clins/examples/AllergyIntolerance-Example-JP-AllergyIntolerance-eCS-01.json"),
    );
    allergy.as_object_mut().unwrap().remove("id");
    allergy["patient"] = subject.clone();
    allergy["extension"] = institution(SOURCE);
    allergy["meta"].as_object_mut().unwrap().remove("tag");
    for k in ["onsetDateTime", "onsetPeriod", "onsetAge", "onsetString", "onsetRange"] {
        allergy.as_object_mut().unwrap().remove(k);
    }
    allergy["recordedDate"] = json!(date_days_ago(10));
    let class = classify_allergy(&allergy);
    add("AllergyIntolerance", class, 10, (false, false), allergy);
    let enc = json!({"resourceType": "Encounter", "status": "finished", "extension": institution(SOURCE),
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "subject": subject, "period": {"start": date_days_ago(30), "end": date_days_ago(30)}});
    add("Encounter", "encounter", 30, (false, false), enc);

    // The treating hospitals register the same person (same insurance identity: linked).
    for (code, local) in [(H_T, "H-77"), (F_T, "F-88")] {
        let c = s.client(&s.token(code, &format!("emr-{code}")));
        let facility = FACILITIES.iter().find(|f| f.code == code).unwrap();
        let id = created(
            c.post("Patient", &patient_json(code, local, ("結 花子", "結", "花子"), "ムスビ ハナコ", ins)),
            "reg",
        );
        recs.push(Rec {
            rtype: "Patient",
            id,
            class: "demographics",
            facility: facility.code,
            age_days: 0,
            undelivered: false,
            uninformed: false,
            ours: true,
        });
    }
    // Another patient of the clinic.
    let other = created(
        src.post(
            "Patient",
            &patient_json(SOURCE, "C-0002", ("結 次郎", "結", "次郎"), "ムスビ ジロウ", "06139999:ｂ２:４５６:01"),
        ),
        "other patient",
    );
    recs.push(Rec {
        rtype: "Patient",
        id: other,
        class: "demographics",
        facility: SOURCE,
        age_days: 0,
        undelivered: false,
        uninformed: false,
        ours: false,
    });
    (pid, recs)
}

/// The class of the allergy example (drug or other), from its category, as DESIGN.md names it.
fn classify_allergy(a: &Value) -> &'static str {
    let text = a.to_string();
    if text.contains("\"medication\"") { "drug-allergy" } else { "other-allergy" }
}

fn login(s: &TestServer, login: &str, password: &str, secret: &str, kind: &str, facility: Option<&str>) -> Client {
    let mut body = json!({"login": login, "password": password, "kind": kind});
    if let Some(f) = facility {
        body["facility"] = json!(f);
    }
    let r = api(&anon(s), reqwest::Method::POST, "/login", Some(body));
    assert_eq!(r.status, 200, "login {login}: {}", r.text);
    let c = s.client(r.body["token"].as_str().unwrap());
    let code = musubi_service::people::totp_code_now(secret).unwrap();
    let r = api(&c, reqwest::Method::POST, "/login/totp", Some(json!({"code": code})));
    assert_eq!(r.status, 200, "{}", r.text);
    // The login completes under a new token; the pending one is dead.
    let mut c = c;
    c.token = r.body["token"].as_str().unwrap().to_owned();
    c
}

fn user(s: &TestServer, name: &str, profession: &str, facility: &str) -> Client {
    user_with_secret(s, name, profession, facility).0
}

fn user_with_secret(s: &TestServer, name: &str, profession: &str, facility: &str) -> (Client, String) {
    let pw = "Musubi-pass-2026";
    let r = api(
        &s.client(&s.admin),
        reqwest::Method::POST,
        "/admin/users",
        Some(
            json!({"login": name, "name": format!("{name} さん"), "profession": profession, "facilities": [facility], "password": pw}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let secret = r.body["totp_secret"].as_str().unwrap().to_owned();
    (login(s, name, pw, &secret, "user", None), secret)
}

fn register(s: &TestServer, patient: &str, name: &str, kana: &str, login_name: &str) -> Client {
    let pw = "Hanako-pass-2026";
    let code = activation_code(s, patient);
    let r = api(
        &anon(s),
        reqwest::Method::POST,
        "/portal/register",
        Some(json!({"name": name, "kana": kana, "sex": "female", "birth_date": "1970-05-05", "prefecture": "東京都",
                    "city": "千代田区", "activation_code": code, "login": login_name, "password": pw})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    login(s, login_name, pw, r.body["totp_secret"].as_str().unwrap(), "portal", None)
}

/// What one role sees through every route, as (route, record id) facts; compared with the
/// oracle's facts.
fn observe(
    c: &Client,
    pid: &str,
    recs: &[Rec],
    failures: &mut Vec<String>,
    label: &str,
    expect: &dyn Fn(&Rec) -> bool,
) {
    for r in recs {
        let want = expect(r);
        let code = if want { 200 } else { 404 };
        for path in [
            format!("{}/{}", r.rtype, r.id),
            format!("{}/{}/_history/1", r.rtype, r.id),
            format!("{}/{}/_history", r.rtype, r.id),
        ] {
            let got = c.get(&path);
            // Operators and systems may get 403 for a whole type they never see; a hidden
            // record is otherwise indistinguishable from a missing one.
            let ok = got.status == code || (!want && got.status == 403);
            if !ok {
                failures.push(format!("{label}: GET {path} → {} (expected {code})", got.status));
            }
            if !want && got.text.contains("ムスビ") {
                failures.push(format!("{label}: GET {path} leaks content in its error"));
            }
        }
    }
    // Searches: totals and entries.
    let types: BTreeSet<&str> = recs.iter().map(|r| r.rtype).filter(|t| *t != "Patient").collect();
    for t in types {
        let expected: BTreeSet<String> =
            recs.iter().filter(|r| r.rtype == t && r.ours && expect(r)).map(|r| r.id.clone()).collect();
        let got = c.get(&format!("{t}?patient={pid}&_count=100"));
        if got.status == 403 && expected.is_empty() {
            continue;
        }
        let ids: BTreeSet<String> = got.body["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["search"]["mode"] != "include")
            .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
            .collect();
        let total = got.body["total"].as_u64().map(|n| n as usize);
        if got.status != 200 || ids != expected || total != Some(expected.len()) {
            failures.push(format!(
                "{label}: GET {t}?patient → {} total {total:?} ids {ids:?} (expected {expected:?})",
                got.status
            ));
        }
        // _include of the patient: included only when the patient is visible.
        if t == "Observation" && !expected.is_empty() {
            let got = c.get(&format!("Observation?patient={pid}&_include=Observation:patient"));
            let included: BTreeSet<String> = got.body["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["search"]["mode"] == "include")
                .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
                .collect();
            let source_patient = recs.iter().find(|r| r.id == pid).map(expect).unwrap_or(false);
            let want: BTreeSet<String> = if source_patient { [pid.to_owned()].into() } else { BTreeSet::new() };
            if included != want {
                failures.push(format!("{label}: _include gave {included:?} (expected {want:?})"));
            }
        }
    }
    // $everything: exactly the visible records of the person.
    let source_visible = recs.iter().find(|r| r.id == pid).map(expect).unwrap_or(false);
    let got = c.get(&format!("Patient/{pid}/$everything"));
    if source_visible {
        let ids: BTreeSet<String> = got.body["entry"]
            .as_array()
            .into_iter()
            .flatten()
            // The patient's Consent (their disclosure settings) is part of their record; its
            // access is tested with the portal in people.rs.
            .filter(|e| e["resource"]["resourceType"] != "Consent")
            .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
            .collect();
        let expected: BTreeSet<String> = recs.iter().filter(|r| r.ours && expect(r)).map(|r| r.id.clone()).collect();
        if got.status != 200 || ids != expected {
            failures.push(format!("{label}: $everything → {} {ids:?} (expected {expected:?})", got.status));
        }
    } else if got.status != 404 {
        failures.push(format!("{label}: $everything of a hidden patient → {} (expected 404)", got.status));
    }
}

#[test]
fn every_route_role_consent_and_care_relationship_agrees_with_the_documented_rules() {
    let s = TestServer::start();
    let (pid, recs) = load(&s);
    let patient = register(&s, &pid, "結 花子", "ムスビ ハナコ", "hanako");
    let other_id = recs.iter().find(|r| r.rtype == "Patient" && !r.ours).unwrap().id.clone();
    let other_patient = register(&s, &other_id, "結 次郎", "ムスビ ジロウ", "jiro");
    // The network is opt-in: the patient consents to take part (参加同意) in the portal.
    let r = api(&patient, reqwest::Method::PUT, "/portal/participation", Some(json!({"participating": true})));
    assert_eq!(r.status, 200, "{}", r.text);

    // Clinicians: every profession at every facility; consent in person where the matrix says so.
    let mut roles: Vec<(String, Role, Client)> = Vec::new();
    for f in FACILITIES.iter().filter(|f| f.code != SOURCE) {
        for p in PROFESSIONS {
            let name = format!("{p}-{}", f.code);
            let c = user(&s, &name, p, f.code);
            if f.care == Care::InPerson {
                let r = visit_consent(&c, &patient, &pid);
                // Other licensed staff (検査技師, 療法士) do not receive consent; a colleague does.
                if p == "other-licensed" {
                    assert_eq!(r.status, 403, "{name}: {}", r.text);
                } else {
                    assert_eq!(r.status, 200, "{name}: {}", r.text);
                }
            }
            roles.push((name, Role::Clinician { profession: p, facility: f, break_glass: false }, c));
        }
    }
    // Break-glass at the hospital without a relationship, by every profession that may.
    let h_n = FACILITIES.iter().find(|f| f.code == H_N).unwrap();
    for p in ["doctor", "dentist", "nurse", "pharmacist"] {
        let name = format!("bg-{p}");
        let (c, secret) = user_with_secret(&s, &name, p, H_N);
        let r = break_glass(&c, &pid, &secret, "意識障害で救急搬送、既往歴の確認");
        assert_eq!(r.status, 200, "{name}: {}", r.text);
        roles.push((name, Role::Clinician { profession: p, facility: h_n, break_glass: true }, c));
    }
    // Professions that may not break the glass are refused.
    for p in ["other-licensed", "clerk"] {
        let (c, secret) = user_with_secret(&s, &format!("bg-{p}"), p, H_N);
        let r = break_glass(&c, &pid, &secret, "意識障害で救急搬送、既往歴の確認");
        assert_eq!(r.status, 403, "{p} must not break the glass: {}", r.text);
    }
    roles.push(("system-source".into(), Role::System { facility: SOURCE }, s.client(&s.token(SOURCE, "src-2"))));
    roles.push(("system-h_t".into(), Role::System { facility: H_T }, s.client(&s.token(H_T, "ht-2"))));
    roles.push(("patient".into(), Role::Patient, patient));
    roles.push(("other-patient".into(), Role::OtherPatient, other_patient));
    roles.push(("operator".into(), Role::Operator, s.client(&s.admin)));

    let mut failures = Vec::new();
    let mut checked = 0usize;
    let mut allowed: BTreeMap<String, usize> = BTreeMap::new();
    let mut version = 0i64;
    for setting in SETTINGS {
        let r = api(
            &roles.iter().find(|(n, ..)| n == "patient").unwrap().2,
            reqwest::Method::PUT,
            "/portal/consent",
            Some(json!({"settings": settings_json(setting), "version": version})),
        );
        assert_eq!(r.status, 200, "{setting:?}: {}", r.text);
        version = r.body["version"].as_i64().unwrap();
        for (name, role, client) in &roles {
            let label = format!("{setting:?} {name}");
            let expect = |r: &Rec| oracle(role, setting, r);
            *allowed.entry(format!("{setting:?}")).or_default() += recs.iter().filter(|r| expect(r)).count();
            observe(client, &pid, &recs, &mut failures, &label, &expect);
            checked += recs.len();
        }
    }
    assert!(failures.is_empty(), "{} of the matrix disagree with the rules:\n{}", failures.len(), failures.join("\n"));
    // The matrix is not trivially all-open or all-closed under any setting.
    for (setting, n) in &allowed {
        assert!(*n > 0 && *n < checked / SETTINGS.len(), "{setting}: {n} visible");
    }
}
