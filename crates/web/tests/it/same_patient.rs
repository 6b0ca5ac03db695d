//! One patient, every page: the clinician's patient page, the emergency summary page, its PDF
//! and the patient's own record in the portal must say the same name, address, age and sex
//! (issue 13: they were read by different code and drifted).
//!
//! The patient carries every trigger of the drift seen on the demo: two facilities whose
//! registrations give different addresses and were updated at different times, a romaji name
//! listed before the kanji and kana names, and a birth date known only to the month
//! (`1950-03`). The rule every page follows (`musubi_record::identity`): names by their
//! representation, the most recently updated registration first, and a partial birth date's
//! age as the range of ages it allows.

use musubi_domain::systems;
use musubi_service::Ctx;
use musubi_service::people::Registration;
use serde_json::{Value, json};

use crate::common::*;

const ROMAJI: &str = "MUSUBI HANAKO";
const KANJI: &str = "結 花子";
const KANA: &str = "ムスビ ハナコ";
/// The hospital's registration, written first. (Both addresses lie in the facilities' area, so
/// the patient's default disclosure lets the hospital see the clinic's registration.)
const OLD_ADDRESS: &str = "東京都千代田区丸の内2-2-2";
/// The clinic's, written after: the one every page shows.
const NEW_ADDRESS: &str = "東京都中央区銀座3-3-3";

fn patient(facility: &str, local_id: &str, address: &str, city: &str, postal: &str) -> Value {
    let rep = |code: &str| json!([{"url": systems::EXT_NAME_REPRESENTATION, "valueCode": code}]);
    json!({"resourceType": "Patient",
        "identifier": [
            {"system": format!("{}{facility}", systems::LOCAL_PATIENT_ID_PREFIX), "value": local_id},
            {"system": systems::INSURANCE_MEMBER_ID, "value": "06139999:b2:456:01"}],
        // The romaji name first: it must not become the kanji name.
        "name": [
            {"extension": rep("ABC"), "use": "official", "text": ROMAJI, "family": "MUSUBI", "given": ["HANAKO"]},
            {"extension": rep("IDE"), "use": "official", "text": KANJI, "family": "結", "given": ["花子"]},
            {"extension": rep("SYL"), "use": "official", "text": KANA, "family": "ムスビ", "given": ["ハナコ"]}],
        "gender": "female",
        "birthDate": "1950-03",
        "telecom": [{"system": "phone", "value": "03-0000-0101"}],
        "address": [{"use": "home", "text": address, "postalCode": postal, "state": "東京都", "city": city}]})
}

fn transaction(resource: Value) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5a1e0000-0000-4000-8000-000000000001", "resource": resource,
         "request": {"method": "POST", "url": "Patient"}}]})
}

/// The age text of a person born in March 1950, today in Japan, computed here without the
/// code under test: one age from April on, two in March (born on its first or its last day).
fn expected_age() -> String {
    let today = time::OffsetDateTime::now_utc().to_offset(time::UtcOffset::from_hms(9, 0, 0).unwrap());
    let years = today.year() - 1950;
    match (today.month() as u8).cmp(&3) {
        std::cmp::Ordering::Greater => format!("{years}歳"),
        std::cmp::Ordering::Less => format!("{}歳", years - 1),
        std::cmp::Ordering::Equal => format!("{}〜{years}歳", years - 1),
    }
}

fn pdf_text(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.pdf");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("pdftotext").arg("-layout").arg(&path).arg("-").output().unwrap_or_else(|e| {
        panic!("pdftotext is needed to check the PDF ({e}); install Debian's poppler-utils (scripts/test does)")
    });
    assert!(out.status.success(), "pdftotext failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The text of the element that follows `open` (up to the next `<`).
fn text_after(html: &str, open: &str) -> Option<String> {
    let at = html.find(open)? + open.len();
    let rest = &html[at..];
    Some(rest[..rest.find('<')?].trim().to_owned())
}

/// What an identity block shows: name, sex, age, address.
#[derive(Debug, PartialEq, Eq)]
struct Shown {
    name: String,
    sex: String,
    age: String,
    address: String,
}

/// Reads the identity block of the patient page or the portal record (`span.name`) or of the
/// summary page (`strong.name`): the name, and the `dt`/`dd` facts.
fn shown(html: &str, name_open: &str) -> Shown {
    let fact = |label: &str| text_after(html, &format!("<dt>{label}</dt><dd>")).unwrap_or_default();
    let birth = fact("生年月日");
    let age = birth.split_once('（').and_then(|(_, a)| a.strip_suffix('）')).unwrap_or("").to_owned();
    Shown { name: text_after(html, name_open).unwrap_or_default(), sex: fact("性別"), age, address: fact("住所") }
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn the_same_patient_reads_the_same_on_every_page_and_the_pdf() {
    let w = world();
    let net = &w.net;
    // The hospital registers her first, the clinic later (with her new address).
    let hosp =
        net.load(&[(HOSP.to_owned(), transaction(patient(HOSP, "H-0101", OLD_ADDRESS, "千代田区", "100-0005")))]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let clinic =
        net.load(&[(CLINIC.to_owned(), transaction(patient(CLINIC, "C-0101", NEW_ADDRESS, "中央区", "104-0061")))]);
    let (pid, clinic_pid) = (hosp[HOSP].clone(), clinic[CLINIC].clone());
    // One person: linked by the MPI, or by the operator from the review queue (a birth date
    // known only to the month is no evidence for the index).
    let person = |f: &str, l: &str| net.svc.mpi_person_of(f, l).unwrap();
    if person(HOSP, "H-0101") != person(CLINIC, "C-0101") {
        let op = Ctx::operator("test");
        let queue = net.svc.mpi_review_queue(&op).unwrap();
        let item = queue
            .iter()
            .find(|i| [&i.a.local_id, &i.b.local_id].iter().all(|l| ["H-0101", "C-0101"].contains(&l.as_str())))
            .unwrap_or_else(|| panic!("the two registrations are neither linked nor in review: {queue:?}"));
        net.svc.mpi_resolve(&op, &item.id, true).unwrap();
    }
    assert_eq!(person(HOSP, "H-0101"), person(CLINIC, "C-0101"), "one person");
    net.store.participation_for_everyone(musubi_fhir::datetime::now_ms(), "test".into()).unwrap();

    let expected = Shown {
        name: KANJI.into(),
        sex: "女性".into(),
        age: expected_age(),
        address: format!("〒104-0061 {NEW_ADDRESS}"),
    };

    // The clinician's patient page.
    let dr = Web::new(net);
    dr.login_clinician("dr-hosp", &w.secrets["dr-hosp"], None);
    let page = dr.get(&format!("/patients/{pid}"));
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.text();
    assert!(page.contains(&clinic_pid) || page.contains("C-0101"), "both registrations are on the page: {page}");
    assert_eq!(shown(&page, r#"<span class="name">"#), expected, "patient page");

    // The emergency summary page.
    let summary = dr.get(&format!("/patients/{pid}/summary"));
    assert_eq!(summary.status, 200);
    assert_eq!(shown(&summary.text(), r#"<strong class="name">"#), expected, "summary page");

    // Its PDF: the identity line on every page and the address below it.
    let pdf = dr.get(&format!("/patients/{pid}/summary.pdf"));
    assert_eq!(pdf.status, 200);
    let text = squeeze(&pdf_text(&pdf.bytes));
    let line = squeeze(&format!("{KANJI}（{KANA}） {} 1950-03 生（{}）", expected.sex, expected.age));
    assert!(text.contains(&line), "PDF identity line {line:?} missing:\n{text}");
    assert!(text.contains(&squeeze(&format!("住所 {}", expected.address))), "PDF address:\n{text}");

    // The patient's own record in the portal.
    let code = net.svc.issue_activation_code(&Ctx::operator("desk"), &pid).unwrap().code;
    let enrolled = net
        .svc
        .register_patient(
            Registration {
                name: KANJI.into(),
                kana: KANA.into(),
                sex: "female".into(),
                birth_date: "1950-03".into(),
                prefecture: "東京都".into(),
                city: "中央区".into(),
                insurance_id: String::new(),
                login: "hanako".into(),
                password: "Hanako-portal-2026".into(),
                activation_code: code,
            },
            None,
        )
        .unwrap();
    let me = Web::new(net);
    let p = me.post("/portal/login", &[("login", "hanako"), ("password", "Hanako-portal-2026"), ("next", "")]);
    assert_eq!(p.status, 200, "{}", p.text());
    let totp = musubi_service::people::totp_code_now(&enrolled.totp_secret).unwrap();
    assert_eq!(me.post("/portal/login/code", &[("code", &totp), ("next", "")]).status, 303);
    let own = me.get("/portal/record");
    assert_eq!(own.status, 200, "{}", own.text());
    assert_eq!(shown(&own.text(), r#"<span class="name">"#), expected, "portal record");

    // Neither the romaji name as the name nor the older address anywhere.
    for (what, text) in [("patient page", page), ("summary", summary.text()), ("portal", own.text())] {
        assert!(!text.contains(OLD_ADDRESS), "{what} shows the older address");
        assert!(!text.contains(ROMAJI), "{what} shows the romaji name");
    }
    assert!(!text.contains(&squeeze(OLD_ADDRESS)) && !text.contains(ROMAJI), "the PDF");
}
