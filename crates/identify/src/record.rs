//! The input of the matcher: a source patient as one facility registered it, and how it is
//! read from a JP Core Patient resource.

use std::fmt;

use musubi_domain::{FacilityCode, InsuranceId, systems};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A source patient's key: the facility and its local patient id. Unique across the region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceKey {
    /// The facility (医療機関コード).
    pub facility: FacilityCode,
    /// The facility-local patient id, as sent.
    pub local_id: String,
}

impl SourceKey {
    /// A key from its parts.
    pub fn new(facility: FacilityCode, local_id: impl Into<String>) -> Self {
        SourceKey { facility, local_id: local_id.into() }
    }

    /// The JP Core identifier system of this facility's local ids
    /// (`urn:oid:1.2.392.100495.20.3.51.1` + facility code).
    pub fn system(&self) -> String {
        format!("{}{}", systems::LOCAL_PATIENT_ID_PREFIX, self.facility)
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}", self.facility, self.local_id)
    }
}

/// Administrative sex as registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Sex {
    /// male
    Male,
    /// female
    Female,
    /// other
    Other,
    /// unknown or not recorded
    #[default]
    Unknown,
}

impl Sex {
    /// From a FHIR `gender` code.
    pub fn from_fhir(code: &str) -> Sex {
        match code {
            "male" => Sex::Male,
            "female" => Sex::Female,
            "other" => Sex::Other,
            _ => Sex::Unknown,
        }
    }
}

/// A birth date as year, month, day (validated: a real calendar date).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BirthDate {
    /// Year.
    pub year: u16,
    /// Month 1–12.
    pub month: u8,
    /// Day 1–31.
    pub day: u8,
}

impl BirthDate {
    /// Parses `YYYY-MM-DD` (FHIR date; a partial date `YYYY` or `YYYY-MM` gives `None`). Full-width
    /// digits are accepted.
    pub fn parse(s: &str) -> Option<BirthDate> {
        let t = crate::normalize::nfkc(s.trim());
        let t = t.get(..10).unwrap_or(&t);
        let mut parts = t.split(['-', '/']);
        let y: u16 = parts.next()?.parse().ok()?;
        let m: u8 = parts.next()?.parse().ok()?;
        let d: u8 = parts.next()?.parse().ok()?;
        BirthDate::new(y, m, d)
    }

    /// A date from its parts, if it exists in the Gregorian calendar (years 1800–2200).
    pub fn new(year: u16, month: u8, day: u8) -> Option<BirthDate> {
        if !(1800..=2200).contains(&year) || !(1..=12).contains(&month) || day == 0 {
            return None;
        }
        let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        (day <= days).then_some(BirthDate { year, month, day })
    }

    /// `YYYYMMDD` as a number (the form the comparisons work on).
    pub fn yyyymmdd(self) -> u32 {
        u32::from(self.year) * 10_000 + u32::from(self.month) * 100 + u32::from(self.day)
    }
}

impl fmt::Display for BirthDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A postal address as registered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PostalAddress {
    /// 都道府県 (`Address.state`), if given separately.
    pub prefecture: Option<String>,
    /// 市区町村 (`Address.city`), if given separately.
    pub city: Option<String>,
    /// The rest (`Address.line` joined), if given.
    pub line: Option<String>,
    /// The full text (`Address.text`), if given.
    pub text: Option<String>,
    /// 郵便番号, as sent.
    pub postal_code: Option<String>,
}

/// A source patient: what one facility registered about a person. Values are kept as sent;
/// the matcher normalizes them (see [`crate::normalize`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Facility and local id.
    pub key: SourceKey,
    /// 姓 (kanji, the IDE representation).
    pub family_kanji: Option<String>,
    /// 名 (kanji).
    pub given_kanji: Option<String>,
    /// セイ (kana, the SYL representation).
    pub family_kana: Option<String>,
    /// メイ (kana).
    pub given_kana: Option<String>,
    /// Sex.
    pub sex: Sex,
    /// Birth date.
    pub birth_date: Option<BirthDate>,
    /// Addresses (current first).
    pub addresses: Vec<PostalAddress>,
    /// Phone numbers as sent.
    pub phones: Vec<String>,
    /// Insurance identities (被保険者個人識別子), possibly several over time (serialized in
    /// their JP-CLINS string form).
    #[serde(with = "insurance_strings")]
    pub insurance: Vec<InsuranceId>,
    /// Other facilities' keys that the sender says are the same person (an explicit
    /// cross-reference: another facility's local id in `Patient.identifier` or `Patient.link`).
    pub cross_refs: Vec<SourceKey>,
}

impl SourceRecord {
    /// An empty record for a key (every field missing).
    pub fn new(key: SourceKey) -> Self {
        SourceRecord {
            key,
            family_kanji: None,
            given_kanji: None,
            family_kana: None,
            given_kana: None,
            sex: Sex::Unknown,
            birth_date: None,
            addresses: Vec::new(),
            phones: Vec::new(),
            insurance: Vec::new(),
            cross_refs: Vec::new(),
        }
    }

    /// Reads a JP Core Patient sent by `facility`.
    ///
    /// - the local id is the identifier whose system is `urn:oid:1.2.392.100495.20.3.51.1` +
    ///   `facility`; identifiers of the same form for another facility become cross-references,
    ///   as do `link[].other.identifier` of that form;
    /// - names: the `HumanName` with the iso21090-EN-representation extension `IDE` gives the
    ///   kanji, `SYL` the kana; a name without the extension counts as kanji unless it is all
    ///   kana; `family` and `given[0]`, or `text` split at the first space;
    /// - insurance: identifiers with system `http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID`;
    /// - `gender`, `birthDate`, `address` (state, city, line, text, postalCode), `telecom` phones.
    ///
    /// Values that cannot be read (a malformed insurance id, a partial birth date) are left out
    /// and reported as [`Warning`]s; only a missing Patient or local id is an error.
    pub fn from_fhir_patient(
        patient: &Value,
        facility: &FacilityCode,
    ) -> Result<(SourceRecord, Vec<Warning>), RecordError> {
        if patient.get("resourceType").and_then(Value::as_str) != Some("Patient") {
            return Err(RecordError::NotAPatient);
        }
        let mut warnings = Vec::new();
        let own_system = format!("{}{}", systems::LOCAL_PATIENT_ID_PREFIX, facility);
        let mut local_id = None;
        let mut insurance = Vec::new();
        let mut cross_refs = Vec::new();
        let identifiers = patient.get("identifier").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for (i, ident) in identifiers.iter().enumerate() {
            let system = ident.get("system").and_then(Value::as_str).unwrap_or("");
            let Some(value) = ident.get("value").and_then(Value::as_str) else { continue };
            if system == own_system {
                if local_id.is_none() {
                    local_id = Some(value.trim().to_owned());
                }
            } else if system == systems::INSURANCE_MEMBER_ID {
                match value.parse::<InsuranceId>() {
                    Ok(id) => insurance.push(id),
                    Err(e) => warnings.push(Warning {
                        path: format!("Patient.identifier[{i}].value"),
                        message: format!("被保険者個人識別子を読めません: {e}"),
                    }),
                }
            } else if let Some(key) = foreign_key(system, value) {
                cross_refs.push(key);
            }
        }
        let links = patient.get("link").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for link in links {
            if let Some(ident) = link.get("other").and_then(|o| o.get("identifier"))
                && let (Some(system), Some(value)) =
                    (ident.get("system").and_then(Value::as_str), ident.get("value").and_then(Value::as_str))
                && let Some(key) = foreign_key(system, value)
                && key.facility != *facility
            {
                cross_refs.push(key);
            }
        }
        let local_id = local_id.filter(|s| !s.is_empty()).ok_or(RecordError::MissingLocalId { system: own_system })?;
        let mut rec = SourceRecord::new(SourceKey::new(*facility, local_id));
        rec.insurance = insurance;
        rec.cross_refs = cross_refs;

        let names = patient.get("name").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for name in names {
            let rep = name
                .get("extension")
                .and_then(Value::as_array)
                .and_then(|exts| {
                    exts.iter().find(|e| e.get("url").and_then(Value::as_str) == Some(systems::EXT_NAME_REPRESENTATION))
                })
                .and_then(|e| e.get("valueCode"))
                .and_then(Value::as_str);
            let (family, given) = name_parts(name);
            let is_kana = match rep {
                Some("SYL") => true,
                Some("IDE") => false,
                _ => {
                    let all = format!("{}{}", family.as_deref().unwrap_or(""), given.as_deref().unwrap_or(""));
                    !all.is_empty() && all.chars().all(is_kana_char)
                }
            };
            let (f_slot, g_slot) = if is_kana {
                (&mut rec.family_kana, &mut rec.given_kana)
            } else {
                (&mut rec.family_kanji, &mut rec.given_kanji)
            };
            if f_slot.is_none() && g_slot.is_none() {
                *f_slot = family;
                *g_slot = given;
            }
        }
        rec.sex = patient.get("gender").and_then(Value::as_str).map(Sex::from_fhir).unwrap_or_default();
        if let Some(b) = patient.get("birthDate").and_then(Value::as_str) {
            rec.birth_date = BirthDate::parse(b);
            if rec.birth_date.is_none() {
                warnings.push(Warning {
                    path: "Patient.birthDate".into(),
                    message: format!("生年月日 {b:?} は年月日まで揃っていないため照合に使いません"),
                });
            }
        }
        let addresses = patient.get("address").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for a in addresses {
            let s =
                |k: &str| a.get(k).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
            let line = a
                .get("line")
                .and_then(Value::as_array)
                .map(|ls| ls.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(""))
                .filter(|l| !l.is_empty());
            let addr = PostalAddress {
                prefecture: s("state"),
                city: s("city"),
                line,
                text: s("text"),
                postal_code: s("postalCode"),
            };
            if addr != PostalAddress::default() {
                // The current address first: one marked `use: old` or with a period end goes last.
                let old = a.get("use").and_then(Value::as_str) == Some("old")
                    || a.get("period").and_then(|p| p.get("end")).is_some();
                if old { rec.addresses.push(addr) } else { rec.addresses.insert(0, addr) }
            }
        }
        let telecoms = patient.get("telecom").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for t in telecoms {
            if t.get("system").and_then(Value::as_str).is_none_or(|s| s == "phone" || s == "sms")
                && let Some(v) = t.get("value").and_then(Value::as_str)
                && !v.trim().is_empty()
            {
                rec.phones.push(v.trim().to_owned());
            }
        }
        Ok((rec, warnings))
    }
}

mod insurance_strings {
    use musubi_domain::InsuranceId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[InsuranceId], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<InsuranceId>, D::Error> {
        let v: Vec<String> = Vec::deserialize(d)?;
        v.iter().map(|s| s.parse().map_err(serde::de::Error::custom)).collect()
    }
}

fn name_parts(name: &Value) -> (Option<String>, Option<String>) {
    let clean = |s: &str| Some(s.trim().to_owned()).filter(|v| !v.is_empty());
    let family = name.get("family").and_then(Value::as_str).and_then(clean);
    let given = name
        .get("given")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(""))
        .and_then(|g| clean(&g));
    if family.is_some() || given.is_some() {
        return (family, given);
    }
    let Some(text) = name.get("text").and_then(Value::as_str) else { return (None, None) };
    let text = text.trim();
    match text.split_once([' ', '　']) {
        Some((f, g)) => (clean(f), clean(g)),
        None => (clean(text), None),
    }
}

fn is_kana_char(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{309F}' | '\u{30A0}'..='\u{30FF}' | '\u{FF66}'..='\u{FF9F}' | ' ' | '　')
}

/// Another facility's local-id identifier as a key.
fn foreign_key(system: &str, value: &str) -> Option<SourceKey> {
    let code = system.strip_prefix(systems::LOCAL_PATIENT_ID_PREFIX)?;
    let facility: FacilityCode = code.parse().ok()?;
    let v = value.trim();
    (!v.is_empty()).then(|| SourceKey::new(facility, v))
}

/// A soft problem found while reading a Patient: the value was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// FHIRPath of the element.
    pub path: String,
    /// What was wrong (Japanese, for the sender).
    pub message: String,
}

/// Why a Patient could not be read as a source record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The resource is not a Patient.
    #[error("Patient リソースではありません")]
    NotAPatient,
    /// No identifier with the facility's local-id system.
    #[error("Patient.identifier に施設の患者ID (system {system}) がありません")]
    MissingLocalId {
        /// The expected identifier system.
        system: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fac() -> FacilityCode {
        "1311234567".parse().unwrap()
    }

    #[test]
    fn reads_a_jp_core_patient() {
        let p = json!({
            "resourceType": "Patient",
            "identifier": [
                {"system": "urn:oid:1.2.392.100495.20.3.51.11311234567", "value": "00012345"},
                {"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID", "value": "06131234:ｱｲｳ:187:01"},
                {"system": "urn:oid:1.2.392.100495.20.3.51.12710000017", "value": "998"},
                {"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID", "value": "bad"}
            ],
            "name": [
                {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "IDE"}],
                 "text": "髙橋 太郎", "family": "髙橋", "given": ["太郎"]},
                {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}],
                 "text": "ﾀｶﾊｼ ﾀﾛｳ"}
            ],
            "gender": "male",
            "birthDate": "1970-04-15",
            "address": [{"text": "東京都千代田区霞が関1-2-3", "state": "東京都", "city": "千代田区", "postalCode": "100-0013"}],
            "telecom": [{"system": "phone", "value": "03-1234-5678"}, {"system": "email", "value": "x@example.invalid"}]
        });
        let (r, w) = SourceRecord::from_fhir_patient(&p, &fac()).unwrap();
        assert_eq!(r.key, SourceKey::new(fac(), "00012345"));
        assert_eq!(r.family_kanji.as_deref(), Some("髙橋"));
        assert_eq!(r.given_kanji.as_deref(), Some("太郎"));
        assert_eq!(r.family_kana.as_deref(), Some("ﾀｶﾊｼ"));
        assert_eq!(r.given_kana.as_deref(), Some("ﾀﾛｳ"));
        assert_eq!(r.sex, Sex::Male);
        assert_eq!(r.birth_date, BirthDate::new(1970, 4, 15));
        assert_eq!(r.insurance.len(), 1);
        assert_eq!(r.insurance[0].to_string(), "06131234:ｱｲｳ:187:01");
        assert_eq!(r.cross_refs, vec![SourceKey::new("2710000017".parse().unwrap(), "998")]);
        assert_eq!(r.phones, vec!["03-1234-5678".to_owned()]);
        assert_eq!(r.addresses[0].postal_code.as_deref(), Some("100-0013"));
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].path, "Patient.identifier[3].value");
    }

    #[test]
    fn missing_local_id_is_an_error() {
        let p = json!({"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}]});
        assert!(matches!(SourceRecord::from_fhir_patient(&p, &fac()), Err(RecordError::MissingLocalId { .. })));
        let o = json!({"resourceType": "Observation"});
        assert_eq!(SourceRecord::from_fhir_patient(&o, &fac()), Err(RecordError::NotAPatient));
    }

    #[test]
    fn partial_birth_date_is_a_warning() {
        let p = json!({"resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11311234567", "value": "1"}],
            "birthDate": "1970-04"});
        let (r, w) = SourceRecord::from_fhir_patient(&p, &fac()).unwrap();
        assert_eq!(r.birth_date, None);
        assert_eq!(w[0].path, "Patient.birthDate");
    }

    proptest::proptest! {
        #[test]
        fn any_patient_json_reads_without_panic(
            family in ".{0,8}", given in ".{0,8}", birth in ".{0,12}", ins in ".{0,30}",
            addr in ".{0,30}", phone in ".{0,16}", rep in "(IDE|SYL|ABC)?", gender in ".{0,8}"
        ) {
            let p = json!({
                "resourceType": "Patient",
                "identifier": [
                    {"system": "urn:oid:1.2.392.100495.20.3.51.11311234567", "value": "1"},
                    {"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID", "value": ins},
                    {"system": format!("urn:oid:1.2.392.100495.20.3.51.1{phone}"), "value": given}
                ],
                "name": [{"extension": [{"url": systems::EXT_NAME_REPRESENTATION, "valueCode": rep}],
                          "family": family, "given": [given], "text": format!("{family} {given}")}],
                "gender": gender,
                "birthDate": birth,
                "address": [{"text": addr, "postalCode": phone, "state": family, "city": given}],
                "telecom": [{"system": "phone", "value": phone}]
            });
            let (r, _) = SourceRecord::from_fhir_patient(&p, &fac()).expect("has a local id");
            let mut nz = crate::features::Normalizer::new();
            let _ = nz.features(&r);
            let _ = crate::NormalizedRecord::of(&r);
        }
    }

    #[test]
    fn birth_dates() {
        assert_eq!(BirthDate::parse("２０００－０２－２９"), BirthDate::new(2000, 2, 29));
        assert_eq!(BirthDate::parse("2000-02-29"), BirthDate::new(2000, 2, 29));
        assert_eq!(BirthDate::parse("1900-02-29"), None);
        assert_eq!(BirthDate::parse("1970/4/15").map(BirthDate::yyyymmdd), Some(19700415));
    }
}
