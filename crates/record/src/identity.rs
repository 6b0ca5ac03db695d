//! The one reader of a FHIR Patient: who the person is, as every page, the emergency summary,
//! its PDF, letters and the demo show it.
//!
//! Rules (each used everywhere, so the same person reads the same on every page):
//!
//! - **Names** are chosen by their `iso21090-EN-representation` extension, never by their
//!   position: `IDE` is the kanji name, `SYL` the kana name, `ABC` the romaji name. A name
//!   without the extension is classified by its script (katakana or hiragana only: kana; Latin
//!   letters and no kana or kanji: romaji; otherwise kanji). Among several names of one kind,
//!   a current one (`use` not `old`/`maiden`, no `period.end`) comes before an old one, an
//!   `official`/`usual` (or unstated) use before `nickname`/`temp`/`anonymous`, then the text
//!   in code-point order: the choice does not depend on the order the sender listed them in.
//!   The name shown ([`PatientIdentity::name`]) is the kanji name, else the romaji name.
//! - **Sex**: `gender` with its Japanese label (男性, 女性, その他, 不明).
//! - **Birth date** as given (`1950-03-14`, `1950-03`, `1950`), and the **age** in Japan time
//!   from it: a partial date gives the range of ages the person may be, from the last possible
//!   birth day (the youngest) to the first (the oldest), shown as 「76歳」 when they agree and
//!   「75〜76歳」 when they do not ([`Age`]).
//! - **Address**: the first `home` address that has not ended (`use` not `old`, no
//!   `period.end` before now), else the first that has not ended, else the first; written
//!   whole as in JP Core: `〒postalCode ` then the `text` when the sender gave one, else
//!   `state`, `city` and the `line`s.
//! - **Phone**: the first `telecom` whose system is `phone`.
//! - **Several facilities**: a person has one source Patient per facility. Their identity is
//!   read from those Patients in one order — the most recently updated first (`meta.lastUpdated`;
//!   a Patient without one last), ties by facility code, then by Patient id — each item taken
//!   from the first Patient that has it ([`source_patients`], [`PatientIdentity::of_person`]).
//!   Which Patient a page was opened with does not matter.

use musubi_domain::systems;
use musubi_fhir::json::extension;
use serde::Serialize;
use serde_json::Value;

use crate::RecordEntry;

/// A name's representation (JP Core: `iso21090-EN-representation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Representation {
    /// `IDE`: kanji (漢字氏名).
    Kanji,
    /// `SYL`: kana (カナ氏名).
    Kana,
    /// `ABC`: romaji (ローマ字氏名).
    Romaji,
}

/// The names of a person (Patient, Practitioner, RelatedPerson: any resource with `name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Names {
    /// The kanji name (`IDE`).
    pub kanji: Option<String>,
    /// The kana name (`SYL`).
    pub kana: Option<String>,
    /// The romaji name (`ABC`).
    pub romaji: Option<String>,
}

impl Names {
    /// The name to show: kanji, else romaji, else kana.
    pub fn display(&self) -> Option<&str> {
        self.kanji.as_deref().or(self.romaji.as_deref()).or(self.kana.as_deref())
    }
}

/// Sex (FHIR `gender`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Sex {
    /// `male`.
    Male,
    /// `female`.
    Female,
    /// `other`.
    Other,
    /// `unknown`, or a code FHIR does not define.
    Unknown,
}

impl Sex {
    /// From a FHIR `gender` code.
    pub fn from_code(code: &str) -> Sex {
        match code {
            "male" => Sex::Male,
            "female" => Sex::Female,
            "other" => Sex::Other,
            _ => Sex::Unknown,
        }
    }

    /// 男性 / 女性 / その他 / 不明.
    pub fn label(self) -> &'static str {
        match self {
            Sex::Male => "男性",
            Sex::Female => "女性",
            Sex::Other => "その他",
            Sex::Unknown => "不明",
        }
    }

    /// 男 / 女, empty otherwise (lists of search results).
    pub fn short_label(self) -> &'static str {
        match self {
            Sex::Male => "男",
            Sex::Female => "女",
            Sex::Other | Sex::Unknown => "",
        }
    }
}

/// An age in whole years. A partial birth date (`1950-03`, `1950`) may give two ages on a day:
/// `min` from the last possible birth day, `max` from the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Age {
    /// The youngest the person may be.
    pub min: i32,
    /// The oldest the person may be.
    pub max: i32,
}

impl Age {
    /// `76歳`, or `75〜76歳` when the birth date allows both.
    pub fn text(&self) -> String {
        self.to_string()
    }
}

impl std::fmt::Display for Age {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max { write!(f, "{}歳", self.min) } else { write!(f, "{}〜{}歳", self.min, self.max) }
    }
}

/// A facility's own patient number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalId {
    /// 医療機関コード.
    pub facility: String,
    /// The number.
    pub value: String,
}

/// Who the patient is, as every page shows it. Text items are empty when not recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PatientIdentity {
    /// The name to show: the kanji name (漢字氏名), else the romaji name.
    pub name: String,
    /// The kana name (カナ氏名).
    pub kana: String,
    /// The romaji name, if recorded.
    pub romaji: String,
    /// Sex, if recorded.
    pub sex: Option<Sex>,
    /// The birth date as given (`1950-03-14`, `1950-03`, `1950`).
    pub birth_date: String,
    /// The age at the time the identity was read.
    pub age: Option<Age>,
    /// The address, whole.
    pub address: String,
    /// Phone.
    pub phone: String,
    /// The insurance identity (被保険者個人識別子) shown.
    pub insurance: String,
    /// Every insurance identity recorded, in the order of [`source_patients`].
    pub insurance_ids: Vec<String>,
    /// Each facility's own patient number.
    pub local_ids: Vec<LocalId>,
}

impl PatientIdentity {
    /// The identity one Patient resource gives, at `now_ms` (epoch ms).
    pub fn of_patient(p: &Value, now_ms: i64) -> PatientIdentity {
        let mut id = PatientIdentity::default();
        id.fill_from(p, None, now_ms);
        id.finish(now_ms);
        id
    }

    /// A person's identity from the Patient entries of their record, by the rule of
    /// [`source_patients`]: each item from the first Patient that has it.
    pub fn of_person(entries: &[RecordEntry], now_ms: i64) -> PatientIdentity {
        let mut id = PatientIdentity::default();
        for e in source_patients(entries) {
            id.fill_from(&e.resource, e.facility.as_deref(), now_ms);
        }
        id.finish(now_ms);
        id
    }

    fn fill_from(&mut self, p: &Value, facility: Option<&str>, now_ms: i64) {
        let n = names(p);
        let set = |slot: &mut String, v: Option<String>| {
            if slot.is_empty()
                && let Some(v) = v
            {
                *slot = v;
            }
        };
        // The kanji name of any Patient beats the romaji one; kept apart until `finish`.
        set(&mut self.name, n.kanji);
        set(&mut self.kana, n.kana);
        set(&mut self.romaji, n.romaji);
        if self.sex.is_none() {
            self.sex = s(&p["gender"]).map(Sex::from_code);
        }
        set(&mut self.birth_date, s(&p["birthDate"]).map(str::to_owned));
        set(&mut self.address, address(p, now_ms));
        set(&mut self.phone, phone(p));
        for i in insurance_ids(p) {
            if !self.insurance_ids.contains(&i) {
                self.insurance_ids.push(i);
            }
        }
        let local = match facility {
            Some(f) => local_id_at(p, f).map(|v| LocalId { facility: f.to_owned(), value: v }),
            None => musubi_fhir::classify::local_patient_id(p)
                .map(|(f, v)| LocalId { facility: f.to_string(), value: v.to_owned() }),
        };
        if let Some(l) = local
            && !self.local_ids.contains(&l)
        {
            self.local_ids.push(l);
        }
    }

    fn finish(&mut self, now_ms: i64) {
        if self.name.is_empty() {
            self.name.clone_from(&self.romaji);
        }
        self.insurance = self.insurance_ids.first().cloned().unwrap_or_default();
        self.age = age_at(&self.birth_date, now_ms);
    }

    /// The sex label, or `""` when not recorded.
    pub fn sex_label(&self) -> &'static str {
        self.sex.map_or("", Sex::label)
    }

    /// The age as shown (`76歳`, `75〜76歳`).
    pub fn age_text(&self) -> Option<String> {
        self.age.map(|a| a.text())
    }

    /// One line for page headers: `結 花子（ムスビ ハナコ） 女性 1970-05-05 生（56歳）`.
    pub fn line(&self) -> String {
        let mut out = if self.name.is_empty() { "氏名不明".to_owned() } else { self.name.clone() };
        if !self.kana.is_empty() {
            out.push_str(&format!("（{}）", self.kana));
        }
        if let Some(x) = self.sex {
            out.push_str(&format!(" {}", x.label()));
        }
        if !self.birth_date.is_empty() {
            out.push_str(&format!(" {} 生", self.birth_date));
        }
        if let Some(a) = self.age {
            out.push_str(&format!("（{a}）"));
        }
        out
    }
}

/// The person's source Patients in the order their identity is read from: the most recently
/// updated first (`meta.lastUpdated`; a Patient without one last), ties by facility code (a
/// Patient without a facility last), then by id.
pub fn source_patients(entries: &[RecordEntry]) -> Vec<&RecordEntry> {
    let mut out: Vec<&RecordEntry> = entries.iter().filter(|e| e.rtype == musubi_fhir::ResourceType::Patient).collect();
    out.sort_by_cached_key(|e| {
        let updated = s(&e.resource["meta"]["lastUpdated"])
            .and_then(|t| musubi_fhir::datetime::parse_range(t).ok())
            .map(|r| r.lo);
        (std::cmp::Reverse(updated), e.facility.is_none(), e.facility.clone(), e.id.clone())
    });
    out
}

fn s(v: &Value) -> Option<&str> {
    v.as_str().map(str::trim).filter(|x| !x.is_empty())
}

/// The text of a HumanName: its `text`, else family and given names.
fn name_text(n: &Value) -> Option<String> {
    if let Some(t) = s(&n["text"]) {
        return Some(t.to_owned());
    }
    let family = s(&n["family"]).unwrap_or("");
    let given: Vec<&str> = n["given"].as_array().into_iter().flatten().filter_map(s).collect();
    let full = format!("{family} {}", given.join(" ")).trim().to_owned();
    (!full.is_empty()).then_some(full)
}

/// The representation of a HumanName: its extension, else its script.
pub fn representation(n: &Value, text: &str) -> Representation {
    match extension(n, systems::EXT_NAME_REPRESENTATION).and_then(|e| e["valueCode"].as_str()) {
        Some("IDE") => return Representation::Kanji,
        Some("SYL") => return Representation::Kana,
        Some("ABC") => return Representation::Romaji,
        _ => {}
    }
    script_of(text)
}

/// The representation a text's script suggests: kana only, Latin only, else kanji.
fn script_of(text: &str) -> Representation {
    let is_sep = |c: char| c.is_whitespace() || matches!(c, '・' | '･' | '.' | ',' | '-' | '\'' | 'ー' | 'ｰ');
    let is_kana = |c: char| matches!(c, '\u{3041}'..='\u{309F}' | '\u{30A0}'..='\u{30FF}' | '\u{FF66}'..='\u{FF9F}');
    let letters: Vec<char> = text.chars().filter(|c| !is_sep(*c)).collect();
    if !letters.is_empty() && letters.iter().all(|c| is_kana(*c)) {
        Representation::Kana
    } else if letters.iter().any(|c| c.is_alphabetic())
        && letters.iter().all(|c| c.is_ascii_alphabetic() || matches!(c, 'Ａ'..='Ｚ' | 'ａ'..='ｚ'))
    {
        Representation::Romaji
    } else {
        Representation::Kanji
    }
}

/// How a name ranks among names of its kind (lower first): current before old, an official,
/// usual or unstated use before the others.
fn name_rank(n: &Value) -> (bool, u8) {
    let ended = !n["period"]["end"].is_null();
    match s(&n["use"]) {
        Some("old" | "maiden") => (true, 2),
        None | Some("official" | "usual") => (ended, 0),
        Some(_) => (ended, 1),
    }
}

/// The kanji, kana and romaji names of a resource's `name` list, by representation (see the
/// module's rules): never by position.
pub fn names(r: &Value) -> Names {
    let mut best: [Option<((bool, u8), String)>; 3] = [None, None, None];
    for n in r["name"].as_array().into_iter().flatten() {
        let Some(text) = name_text(n) else { continue };
        let slot = match representation(n, &text) {
            Representation::Kanji => 0,
            Representation::Kana => 1,
            Representation::Romaji => 2,
        };
        let key = (name_rank(n), text);
        if let Some(b) = best.get_mut(slot)
            && b.as_ref().is_none_or(|cur| key < *cur)
        {
            *b = Some(key);
        }
    }
    let [kanji, kana, romaji] = best.map(|b| b.map(|(_, t)| t));
    Names { kanji, kana, romaji }
}

/// Whether a Patient element with a `period` (address, telecom) has ended at `now_ms`.
fn ended(v: &Value, now_ms: i64) -> bool {
    s(&v["use"]) == Some("old")
        || s(&v["period"]["end"])
            .and_then(|t| musubi_fhir::datetime::parse_range(t).ok())
            .is_some_and(|r| r.hi < now_ms)
}

/// The Address element a Patient is reached at (see the module's rules), for readers that
/// need its parts (`state`, `city`).
pub fn chosen_address(p: &Value, now_ms: i64) -> Option<&Value> {
    let list = p["address"].as_array()?;
    list.iter()
        .find(|a| s(&a["use"]) == Some("home") && !ended(a, now_ms))
        .or_else(|| list.iter().find(|a| !ended(a, now_ms)))
        .or_else(|| list.first())
}

/// The address a Patient is reached at (see the module's rules), whole.
pub fn address(p: &Value, now_ms: i64) -> Option<String> {
    address_text(chosen_address(p, now_ms)?)
}

/// One Address written whole: `〒postalCode ` and the text, else state, city and lines.
pub fn address_text(a: &Value) -> Option<String> {
    let body = match s(&a["text"]) {
        Some(t) => t.to_owned(),
        None => {
            let mut parts: Vec<&str> = Vec::new();
            parts.extend(s(&a["state"]));
            parts.extend(s(&a["city"]));
            parts.extend(a["line"].as_array().into_iter().flatten().filter_map(s));
            parts.concat()
        }
    };
    let out = match s(&a["postalCode"]) {
        Some(pc) if !body.contains(pc) => format!("〒{pc} {body}"),
        _ => body,
    };
    let out = out.trim().to_owned();
    (!out.is_empty()).then_some(out)
}

/// The first phone number of a Patient.
pub fn phone(p: &Value) -> Option<String> {
    p["telecom"]
        .as_array()?
        .iter()
        .find(|t| t["system"].as_str() == Some("phone"))
        .and_then(|t| s(&t["value"]).map(str::to_owned))
}

/// The insurance identities (被保険者個人識別子) of a Patient, in its order.
pub fn insurance_ids(p: &Value) -> Vec<String> {
    p["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["system"].as_str() == Some(systems::INSURANCE_MEMBER_ID))
        .filter_map(|i| s(&i["value"]).map(str::to_owned))
        .collect()
}

/// The facility's own patient number in a Patient: the identifier of the facility's local-id
/// system, else the first identifier that is not an insurance identity.
pub fn local_id_at(p: &Value, facility: &str) -> Option<String> {
    let ids = p["identifier"].as_array();
    let by_facility = ids.into_iter().flatten().find(|i| {
        i["system"]
            .as_str()
            .is_some_and(|sys| sys.starts_with(systems::LOCAL_PATIENT_ID_PREFIX) && sys.ends_with(facility))
    });
    by_facility
        .or_else(|| ids.into_iter().flatten().find(|i| i["system"].as_str() != Some(systems::INSURANCE_MEMBER_ID)))
        .and_then(|i| s(&i["value"]))
        .map(str::to_owned)
}

/// The age at `now_ms` (in Japan time) of a person born on `birth` (a FHIR date, full or
/// partial): see [`Age`]. None when the date cannot be read or lies wholly after today.
pub fn age_at(birth: &str, now_ms: i64) -> Option<Age> {
    let range = musubi_fhir::datetime::parse_range(birth.trim()).ok()?;
    let today = musubi_fhir::datetime::jst_date(now_ms)?;
    let first = musubi_fhir::datetime::jst_date(range.lo)?;
    // Born by today at the latest.
    let last = musubi_fhir::datetime::jst_date(range.hi)?.min(today);
    if first > today {
        return None;
    }
    let years = |born: time::Date| {
        let mut age = today.year() - born.year();
        if (today.month() as u8, today.day()) < (born.month() as u8, born.day()) {
            age -= 1;
        }
        age
    };
    Some(Age { min: years(last), max: years(first) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use musubi_domain::{Flags, ResourceClass};
    use proptest::prelude::*;
    use serde_json::json;

    const NOW: i64 = 1_790_000_000_000; // 2026-09-21 (JST)

    fn named(rep: Option<&str>, text: &str) -> Value {
        match rep {
            Some(r) => json!({"extension": [{"url": systems::EXT_NAME_REPRESENTATION, "valueCode": r}], "text": text}),
            None => json!({"text": text}),
        }
    }

    fn patient_entry(id: &str, facility: &str, updated: Option<&str>, p: Value) -> RecordEntry {
        let mut p = p;
        if let Some(u) = updated {
            p["meta"] = json!({"lastUpdated": u});
        }
        RecordEntry {
            rtype: musubi_fhir::ResourceType::Patient,
            id: id.into(),
            version: 1,
            class: ResourceClass::Demographics,
            facility: Some(facility.into()),
            facility_name: None,
            clinical_date: None,
            flags: Flags::empty(),
            resource: p.into(),
            derived: Default::default(),
        }
    }

    #[test]
    fn names_by_representation_not_by_position() {
        let p = json!({"name": [named(Some("ABC"), "MUSUBI HANAKO"), named(Some("IDE"), "結 花子"), named(Some("SYL"), "ムスビ ハナコ")]});
        let n = names(&p);
        assert_eq!(n.kanji.as_deref(), Some("結 花子"));
        assert_eq!(n.kana.as_deref(), Some("ムスビ ハナコ"));
        assert_eq!(n.romaji.as_deref(), Some("MUSUBI HANAKO"));
        // Unmarked names by their script.
        let p = json!({"name": [named(None, "Musubi Hanako"), named(None, "ムスビ ハナコ"), named(None, "結 花子")]});
        assert_eq!(
            names(&p),
            Names {
                kanji: Some("結 花子".into()),
                kana: Some("ムスビ ハナコ".into()),
                romaji: Some("Musubi Hanako".into())
            }
        );
        // Family and given when there is no text; an old name after the current one.
        let p = json!({"name": [
            {"use": "old", "family": "旧姓", "given": ["花子"], "extension": [{"url": systems::EXT_NAME_REPRESENTATION, "valueCode": "IDE"}]},
            {"family": "結", "given": ["花子"], "extension": [{"url": systems::EXT_NAME_REPRESENTATION, "valueCode": "IDE"}]}]});
        assert_eq!(names(&p).kanji.as_deref(), Some("結 花子"));
        // Only a romaji name: it is the name shown.
        let id = PatientIdentity::of_patient(&json!({"name": [named(Some("ABC"), "SMITH JOHN")]}), NOW);
        assert_eq!(id.name, "SMITH JOHN");
    }

    #[test]
    fn ages_of_full_and_partial_birth_dates() {
        // 2026-09-21 in Japan.
        assert_eq!(age_at("1970-05-05", NOW), Some(Age { min: 56, max: 56 }));
        assert_eq!(age_at("1970-09-22", NOW), Some(Age { min: 55, max: 55 }));
        assert_eq!(age_at("1970-09-21", NOW), Some(Age { min: 56, max: 56 }));
        assert_eq!(age_at("1950-03", NOW), Some(Age { min: 76, max: 76 }));
        assert_eq!(age_at("1950-09", NOW), Some(Age { min: 75, max: 76 }));
        assert_eq!(age_at("1950", NOW), Some(Age { min: 75, max: 76 }));
        assert_eq!(age_at("1950", NOW).map(|a| a.text()).as_deref(), Some("75〜76歳"));
        assert_eq!(age_at("1950-03", NOW).map(|a| a.text()).as_deref(), Some("76歳"));
        assert_eq!(age_at("2026", NOW), Some(Age { min: 0, max: 0 }));
        assert_eq!(age_at("2027", NOW), None);
        assert_eq!(age_at("1950-13", NOW), None);
        assert_eq!(age_at("", NOW), None);
    }

    #[test]
    fn the_address_is_the_current_home_one_whole() {
        let p = json!({"address": [
            {"use": "home", "text": "静岡県静岡市葵区追手町9-6", "period": {"end": "2020-03-31"}},
            {"use": "work", "text": "静岡県沼津市大手町1-1"},
            {"use": "home", "postalCode": "418-0000", "state": "静岡県", "city": "富士宮市", "line": ["駅前1-2"]}]});
        assert_eq!(address(&p, NOW).as_deref(), Some("〒418-0000 静岡県富士宮市駅前1-2"));
        let p = json!({"address": [{"use": "old", "text": "旧住所"}, {"text": "東京都千代田区丸の内1-1", "postalCode": "100-0005"}]});
        assert_eq!(address(&p, NOW).as_deref(), Some("〒100-0005 東京都千代田区丸の内1-1"));
        let p = json!({"address": [{"use": "old", "text": "旧住所"}]});
        assert_eq!(address(&p, NOW).as_deref(), Some("旧住所"));
        let p = json!({"address": [{"text": "〒100-0005 東京都千代田区丸の内1-1", "postalCode": "100-0005"}]});
        assert_eq!(address(&p, NOW).as_deref(), Some("〒100-0005 東京都千代田区丸の内1-1"));
    }

    #[test]
    fn a_person_reads_from_the_most_recently_updated_patient_first() {
        let a = patient_entry(
            "pa",
            "1311111111",
            Some("2026-01-01T00:00:00Z"),
            json!({"resourceType": "Patient", "name": [named(Some("IDE"), "結 花子")], "gender": "female",
                   "address": [{"text": "静岡県静岡市葵区末広町1"}],
                   "identifier": [{"system": format!("{}1311111111", systems::LOCAL_PATIENT_ID_PREFIX), "value": "A-1"}]}),
        );
        let b = patient_entry(
            "pb",
            "1322222222",
            Some("2026-06-01T09:00:00+09:00"),
            json!({"resourceType": "Patient", "address": [{"text": "静岡県富士宮市駅前1"}], "birthDate": "1950-03",
                   "identifier": [{"system": format!("{}1322222222", systems::LOCAL_PATIENT_ID_PREFIX), "value": "B-1"},
                                  {"system": systems::INSURANCE_MEMBER_ID, "value": "00000000:1:2:01"}]}),
        );
        for entries in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
            let id = PatientIdentity::of_person(&entries, NOW);
            assert_eq!(id.address, "静岡県富士宮市駅前1", "the newest registration's address");
            assert_eq!(id.name, "結 花子", "what the newest lacks comes from the next");
            assert_eq!(id.sex, Some(Sex::Female));
            assert_eq!(id.age_text().as_deref(), Some("76歳"));
            assert_eq!(id.insurance, "00000000:1:2:01");
            assert_eq!(
                id.local_ids,
                vec![
                    LocalId { facility: "1322222222".into(), value: "B-1".into() },
                    LocalId { facility: "1311111111".into(), value: "A-1".into() }
                ]
            );
            assert!(id.line().starts_with("結 花子 女性 1950-03 生（76歳）"), "{}", id.line());
        }
        // The same update time: by facility code.
        let mut b2 = b.clone();
        std::sync::Arc::make_mut(&mut b2.resource)["meta"]["lastUpdated"] = json!("2026-01-01T09:00:00+09:00");
        let id = PatientIdentity::of_person(&[b2, a], NOW);
        assert_eq!(id.address, "静岡県静岡市葵区末広町1");
    }

    fn name_strategy() -> impl Strategy<Value = Value> {
        let rep = prop_oneof![Just(None), Just(Some("IDE")), Just(Some("SYL")), Just(Some("ABC")), Just(Some("XYZ"))];
        let text = prop_oneof![
            Just("結 花子"),
            Just("結 はな"),
            Just("ムスビ ハナコ"),
            Just("むすび はなこ"),
            Just("MUSUBI HANAKO"),
            Just("Musubi Hana"),
            Just("髙橋 結衣"),
            Just(""),
        ];
        let use_ = prop_oneof![Just(None), Just(Some("official")), Just(Some("old")), Just(Some("nickname"))];
        (rep, text, use_).prop_map(|(rep, text, use_)| {
            let mut n = named(rep, text);
            if let Some(u) = use_ {
                n["use"] = json!(u);
            }
            n
        })
    }

    proptest! {
        #[test]
        fn name_choice_does_not_depend_on_order(list in proptest::collection::vec(name_strategy(), 0..6), seed in any::<u64>()) {
            let mut shuffled = list.clone();
            // A deterministic shuffle from the seed.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let a = names(&json!({"name": list}));
            let b = names(&json!({"name": shuffled}));
            prop_assert_eq!(&a, &b);
            // A romaji name (marked ABC, or unmarked in Latin letters) is never the kanji name
            // unless a name marked IDE says the same.
            if let Some(k) = &a.kanji {
                let marked_ide = list.iter().any(|n| {
                    extension(n, systems::EXT_NAME_REPRESENTATION).and_then(|e| e["valueCode"].as_str()) == Some("IDE")
                        && n["text"].as_str() == Some(k.as_str())
                });
                prop_assert!(!k.is_ascii() || marked_ide, "{k}");
            }
        }

        #[test]
        fn partial_dates_give_the_range_of_full_ones(y in 1900i32..2026, m in 1u8..=12, d in 1u8..=28, days in 0i64..40_000) {
            let now = 1_000_000_000_000i64 + days * 86_400_000;
            let full = format!("{y:04}-{m:02}-{d:02}");
            let month = format!("{y:04}-{m:02}");
            let year = format!("{y:04}");
            let (Some(f), Some(mo), Some(ye)) = (age_at(&full, now), age_at(&month, now), age_at(&year, now)) else {
                // Not born yet at `now`: neither is the month's first day... unless it is.
                prop_assume!(false);
                unreachable!()
            };
            // A full date gives one age; the partial ones contain it and are at most a year wide.
            prop_assert_eq!(f.min, f.max);
            prop_assert!(mo.min <= f.min && f.max <= mo.max && mo.max - mo.min <= 1);
            prop_assert!(ye.min <= mo.min && mo.max <= ye.max && ye.max - ye.min <= 1);
            // The youngest is the age of the last possible day, the oldest of the first.
            let first_of_month = format!("{y:04}-{m:02}-01");
            prop_assert_eq!(age_at(&first_of_month, now).map(|a| a.max), Some(mo.max));
            prop_assert_eq!(age_at(&format!("{y:04}-01-01"), now).map(|a| a.max), Some(ye.max));
            prop_assert_eq!(age_at(&format!("{y:04}-12-31"), now).map_or(0, |a| a.min), ye.min);
            prop_assert!(mo.min >= 0);
        }
    }
}
