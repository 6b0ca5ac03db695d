//! A 診療情報提供書 (JP-CLINS eReferral document Bundle, HS038) built from what a clinician
//! writes in the referral form: the sections of the letter as text (紹介目的, 傷病名・主訴,
//! 現病歴, 既往歴, アレルギー, 家族歴, 身体所見, 感染症情報, 検査結果, 投薬指示, 臨床経過, 備考),
//! the patient as the sending facility holds them, the sender and the addressee (Organization and
//! Practitioner), and the visit. Pure: the caller gives the time and the ids.
//!
//! The structure follows the JP-CLINS eReferral profiles (section codes of
//! `http://jpfhir.jp/fhir/clins/CodeSystem/document-section`); it is written here rather than
//! derived from the published example, whose licence (CC BY-ND) does not allow adapting it.

use serde_json::{Value, json};

const SECTION_SYSTEM: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/document-section";
const INSTITUTION_NO: &str = "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";
const INSTANCE_ID: &str = "http://jpfhir.jp/fhir/core/IdSystem/resourceInstance-identifier";
const NAME_REP: &str = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation";

/// A facility as the letter names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facility {
    /// 医療機関コード (10 digits).
    pub code: String,
    /// Name.
    pub name: String,
}

/// The text sections of a letter, in the order a letter reads.
pub const SECTIONS: [(&str, &str, &str); 12] = [
    ("purpose", "950", "紹介目的"),
    ("problem", "340", "傷病名・主訴"),
    ("present", "360", "現病歴"),
    ("past", "370", "既往歴"),
    ("allergy", "510", "アレルギー・不耐性反応"),
    ("family", "550", "家族歴"),
    ("findings", "610", "身体所見"),
    ("infection", "520", "感染症情報"),
    ("study", "620", "検査結果"),
    ("medication", "430", "投薬指示"),
    ("course", "330", "臨床経過"),
    ("remarks", "220", "備考・連絡情報"),
];

/// The sections every letter has (the eReferral profile's required slices), 記載なし when
/// left empty.
pub const REQUIRED: [&str; 3] = ["purpose", "problem", "present"];

/// What the letter says and who is involved.
#[derive(Debug, Clone)]
pub struct Letter {
    /// A unique id for this letter (used in the Bundle identifier and the Composition's).
    pub id: String,
    /// When written (epoch ms).
    pub now_ms: i64,
    /// The sending facility.
    pub sender: Facility,
    /// The addressee.
    pub addressee: Facility,
    /// The addressee's doctor (may be empty: 担当医).
    pub addressee_doctor: String,
    /// The author (the logged-in doctor's name).
    pub author: String,
    /// The patient as the sender holds them (a Patient resource).
    pub patient: Value,
    /// Section key (see [`SECTIONS`]) → text.
    pub texts: Vec<(String, String)>,
}

impl Letter {
    fn text(&self, key: &str) -> &str {
        self.texts.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.trim())
    }
}

/// Escapes text for an XHTML narrative (the only markup is ours: line breaks).
fn narrative(text: &str) -> String {
    let mut out = String::from("<div xmlns=\"http://www.w3.org/1999/xhtml\">");
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push_str("<br/>");
        }
        for c in line.chars() {
            match c {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '&' => out.push_str("&amp;"),
                '"' => out.push_str("&quot;"),
                c if c.is_control() => {}
                c => out.push(c),
            }
        }
    }
    out.push_str("</div>");
    out
}

fn organization(f: &Facility) -> Value {
    let pref = f.code.get(..2).unwrap_or("");
    let category = f.code.get(2..3).unwrap_or("");
    let number = f.code.get(3..).unwrap_or("");
    json!({
        "resourceType": "Organization",
        "meta": {"profile": ["http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Organization_eCS"]},
        "extension": [
            {"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Organization_PrefectureNo",
             "valueCoding": {"system": "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/PrefectureNo-2digits", "code": pref}},
            {"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Organization_InsuranceOrganizationCategory",
             "valueCoding": {"system": "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationFeeScoreType", "code": category}},
            {"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Organization_InsuranceOrganizationNo",
             "valueIdentifier": {"system": "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicalOrganizationID", "value": number}}],
        "identifier": [{"system": INSTITUTION_NO, "value": f.code}],
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}],
        "name": f.name
    })
}

fn practitioner(name: &str) -> Value {
    let name = if name.trim().is_empty() { "担当医" } else { name.trim() };
    let (family, given) = name.split_once([' ', '\u{3000}']).unwrap_or((name, ""));
    let mut n = json!({"extension": [{"url": NAME_REP, "valueCode": "IDE"}], "use": "official", "text": name, "family": family});
    if !given.trim().is_empty() {
        n["given"] = json!([given.trim()]);
    }
    json!({
        "resourceType": "Practitioner",
        "meta": {"profile": ["http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Practitioner_eCS"]},
        "name": [n]
    })
}

fn section(code: &str, title: &str, text: &str, refs: &[(&str, &str)]) -> Value {
    let mut s = json!({
        "title": title,
        "code": {"coding": [{"system": SECTION_SYSTEM, "code": code, "display": format!("{title}セクション")}]},
        "text": {"status": "additional", "div": narrative(if text.is_empty() { "記載なし" } else { text })}
    });
    if !refs.is_empty() {
        s["entry"] = refs.iter().map(|(url, t)| json!({"reference": url, "type": t})).collect();
    }
    s
}

/// The JST date and time of epoch ms: (`2026-11-03`, `2026-11-03T14:05:00+09:00`).
fn jst(ms: i64) -> (String, String) {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(musubi_fhir::datetime::JST);
    let date = format!("{:04}-{:02}-{:02}", t.year(), t.month() as u8, t.day());
    let dt = format!("{date}T{:02}:{:02}:{:02}+09:00", t.hour(), t.minute(), t.second());
    (date, dt)
}

/// The letter as a JP-CLINS eReferral document Bundle.
pub fn build(l: &Letter) -> Value {
    let (date, datetime) = jst(l.now_ms);
    let year = date.get(..4).unwrap_or("2026");
    let url = |n: u32| format!("urn:uuid:{}-0000-4000-8000-{:012x}", uuid_head(&l.id), n);
    let (u_comp, u_pat, u_enc, u_author, u_to_dr, u_from, u_to, u_purpose) =
        (url(1), url(2), url(3), url(4), url(5), url(6), url(7), url(8));
    let mut patient = l.patient.clone();
    if let Some(o) = patient.as_object_mut() {
        // The sender's stored copy: its server fields do not belong in a document.
        o.remove("id");
        o.remove("meta");
        o.remove("text");
        o.insert(
            "meta".into(),
            json!({"lastUpdated": datetime, "profile": ["http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Patient_eCS"]}),
        );
    }
    let purpose = l.text("purpose");
    let encounter = json!({
        "resourceType": "Encounter",
        "meta": {"profile": ["http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Encounter_eCS"]},
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "外来"},
        "period": {"start": date}
    });
    let purpose_encounter = json!({
        "resourceType": "Encounter",
        "meta": {"profile": ["http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Encounter_eCS"]},
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "外来"},
        "reasonCode": [{"text": if purpose.is_empty() { "診療情報提供" } else { purpose }}]
    });
    let mut structured = Vec::new();
    for (key, code, title) in SECTIONS {
        let refs: Vec<(&str, &str)> =
            if key == "purpose" { vec![(u_purpose.as_str(), "Encounter")] } else { Vec::new() };
        let text = l.text(key);
        // Sections left empty are left out, except those the profile requires of every letter.
        if text.is_empty() && !REQUIRED.contains(&key) {
            continue;
        }
        structured.push(section(code, title, text, &refs));
    }
    let structure = json!({"title": "構造情報",
        "code": {"coding": [{"system": SECTION_SYSTEM, "code": "300", "display": "構造情報セクション"}]},
        "section": structured});
    let composition = json!({
        "resourceType": "Composition",
        "meta": {"lastUpdated": datetime, "profile": ["http://jpfhir.jp/fhir/eReferral/StructureDefinition/JP_Composition_eReferral|1"]},
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/composition-clinicaldocument-versionNumber", "valueString": "1.0"}],
        "identifier": {"system": INSTANCE_ID, "value": format!("{}-{year}-{}", l.sender.code, l.id)},
        "status": "final",
        "type": {"coding": [{"system": "http://jpfhir.jp/fhir/Common/CodeSystem/doc-typecodes", "code": "57133-1", "display": "診療情報提供書"}]},
        "category": [{"coding": [{"system": "http://jpfhir.jp/fhir/Common/CodeSystem/doc-subtypecodes", "code": "OUTPATIENT", "display": "外来文書"}]}],
        "subject": {"reference": u_pat, "type": "Patient"},
        "encounter": {"reference": u_enc, "type": "Encounter"},
        "date": datetime,
        "author": [{"reference": u_author, "type": "Practitioner"}, {"reference": u_from, "type": "Organization"}],
        "title": "診療情報提供書",
        "custodian": {"reference": u_from, "type": "Organization"},
        "event": [{"code": [{"text": "診療情報提供書発行"}], "period": {"start": date}}],
        "section": [
            section("920", "紹介元情報", &format!("{}　{}", l.sender.name, l.author), &[(&u_from, "Organization"), (&u_author, "Practitioner")]),
            section("910", "紹介先情報", &format!("{}　{}", l.addressee.name, if l.addressee_doctor.trim().is_empty() { "担当医" } else { l.addressee_doctor.trim() }),
                &[(&u_to, "Organization"), (&u_to_dr, "Practitioner")]),
            structure
        ]
    });
    let entries = vec![
        (u_comp, composition),
        (u_pat, patient),
        (u_enc, encounter),
        (u_author, practitioner(&l.author)),
        (u_to_dr, practitioner(&l.addressee_doctor)),
        (u_from, organization(&l.sender)),
        (u_to, organization(&l.addressee)),
        (u_purpose, purpose_encounter),
    ];
    json!({
        "resourceType": "Bundle",
        "meta": {"lastUpdated": datetime, "profile": ["http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_eReferral|1"]},
        "language": "ja",
        "identifier": {"system": musubi_domain::systems::BUNDLE_IDENTIFIER, "value": format!("{}^{year}^{}", l.sender.code, l.id)},
        "type": "document",
        "timestamp": datetime,
        "entry": entries.into_iter().map(|(u, r)| json!({"fullUrl": u, "resource": r})).collect::<Vec<_>>()
    })
}

/// Eight hex digits from the letter id, for its urn:uuid fullUrls.
fn uuid_head(id: &str) -> String {
    let h = musubi_fhir::sha256_hex(id.as_bytes());
    h.get(..8).unwrap_or("00000000").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> Letter {
        Letter {
            id: "W-20261103-abc".into(),
            now_ms: 1_793_649_600_000,
            sender: Facility { code: "1318814790".into(), name: "東京結び病院".into() },
            addressee: Facility { code: "1312345678".into(), name: "結びクリニック".into() },
            addressee_doctor: "倉石 四郎".into(),
            author: "結城 一郎".into(),
            patient: json!({"resourceType": "Patient", "id": "p1", "meta": {"versionId": "3"},
                "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11318814790", "value": "H-0001"},
                               {"system": musubi_domain::systems::INSURANCE_MEMBER_ID, "value": "06139999:ａ１:１２３:01"}],
                "name": [{"extension": [{"url": NAME_REP, "valueCode": "IDE"}], "text": "髙橋 結衣", "family": "髙橋", "given": ["結衣"]},
                         {"extension": [{"url": NAME_REP, "valueCode": "SYL"}], "text": "タカハシ ユイ", "family": "タカハシ", "given": ["ユイ"]}],
                "gender": "female", "birthDate": "1958-03-14",
                "address": [{"text": "東京都千代田区丸の内1-1-1", "state": "東京都", "city": "千代田区"}]}),
            texts: vec![
                ("purpose".into(), "糖尿病の血糖管理の継続をお願いします。".into()),
                ("problem".into(), "２型糖尿病\n本態性高血圧症".into()),
                ("allergy".into(), "ペニシリン系抗菌薬（アナフィラキシー）<要注意>".into()),
                ("course".into(), "".into()),
            ],
        }
    }

    #[test]
    fn the_letter_has_the_sections_and_parties() {
        let b = build(&letter());
        assert_eq!(b["identifier"]["value"], "1318814790^2026^W-20261103-abc");
        assert_eq!(b["timestamp"], "2026-11-03T05:00:00+09:00");
        let comp = &b["entry"][0]["resource"];
        assert_eq!(comp["type"]["coding"][0]["code"], "57133-1");
        assert_eq!(comp["date"], "2026-11-03T05:00:00+09:00");
        assert_eq!(musubi_fhir::index::referral_recipients(&b), vec!["1312345678"]);
        let structured = comp["section"][2]["section"].as_array().unwrap();
        let titles: Vec<&str> = structured.iter().map(|s| s["title"].as_str().unwrap()).collect();
        assert_eq!(
            titles,
            vec!["紹介目的", "傷病名・主訴", "現病歴", "アレルギー・不耐性反応"],
            "empty sections are left out, but for the required 現病歴"
        );
        assert_eq!(
            structured[3]["text"]["div"],
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">ペニシリン系抗菌薬（アナフィラキシー）&lt;要注意&gt;</div>"
        );
        assert!(structured[1]["text"]["div"].as_str().unwrap().contains("２型糖尿病<br/>本態性高血圧症"));
        let patient = &b["entry"][1]["resource"];
        assert!(patient.get("id").is_none() && patient["meta"]["versionId"].is_null());
        assert_eq!(patient["identifier"][0]["value"], "H-0001");
        // Every reference resolves inside the Bundle.
        let urls: Vec<&str> = b["entry"].as_array().unwrap().iter().map(|e| e["fullUrl"].as_str().unwrap()).collect();
        let text = b.to_string();
        for r in text.split("\"reference\":\"").skip(1) {
            let r = &r[..r.find('"').unwrap()];
            assert!(urls.contains(&r), "{r} does not resolve");
        }
    }

    #[test]
    fn the_letter_passes_the_jp_clins_rules() {
        let mut minimal = letter();
        minimal.texts = vec![("purpose".into(), "精査をお願いします。".into())];
        let mut full = letter();
        full.texts = SECTIONS.iter().map(|(k, _, t)| ((*k).to_owned(), format!("{t}の記載"))).collect();
        for l in [letter(), minimal, full] {
            let issues = musubi_validate::Validator::shared().validate_bundle(&build(&l));
            let errors: Vec<String> = issues
                .iter()
                .filter(|i| i.severity == musubi_validate::Severity::Error)
                .map(|i| format!("{i:?}"))
                .collect();
            assert!(errors.is_empty(), "{errors:#?}");
        }
    }
}
