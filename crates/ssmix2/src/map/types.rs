//! HL7 v2 data types (TS, CWE, XPN, XAD, XTN, XCN, CQ) to FHIR R4 data types, following the
//! guide's data-type and table maps (v2-0001, v2-0201, v2-0465).

use musubi_domain::{FacilityCode, systems};
use serde_json::{Map, Value as Json, json};

use crate::hl7::Value;
use crate::path::valid_ymd;

/// HL7 TS/DTM/DT (`yyyy[MM[dd[HH[mm[ss[.f]]]]]][+ZZZZ]`) to a FHIR date or dateTime. Times
/// without a zone are Japan time (+09:00), which SS-MIX2 storage always is.
pub fn fhir_datetime(ts: &str) -> Option<String> {
    let ts = ts.trim();
    let (main, zone) = match ts.find(['+', '-']) {
        Some(p) if p >= 4 => (&ts[..p], Some(&ts[p..])),
        _ => (ts, None),
    };
    let (digits, frac) = match main.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (main, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit())
        || frac.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let zone = match zone {
        None => "+09:00".to_owned(),
        Some(z) if z.len() == 5 && z[1..].bytes().all(|b| b.is_ascii_digit()) => format!("{}:{}", &z[..3], &z[3..]),
        Some(_) => return None,
    };
    let y = digits.get(..4)?;
    match digits.len() {
        4 => Some(y.to_owned()),
        6 => {
            let m: u8 = digits[4..6].parse().ok()?;
            (1..=12).contains(&m).then(|| format!("{y}-{}", &digits[4..6]))
        }
        8 => valid_ymd(digits).then(|| format!("{y}-{}-{}", &digits[4..6], &digits[6..8])),
        10 | 12 | 14 => {
            if !valid_ymd(&digits[..8]) {
                return None;
            }
            let hh = &digits[8..10];
            let mi = digits.get(10..12).unwrap_or("00");
            let ss = digits.get(12..14).unwrap_or("00");
            let ok = hh.parse::<u8>().ok()? <= 23 && mi.parse::<u8>().ok()? <= 59 && ss.parse::<u8>().ok()? <= 59;
            if !ok {
                return None;
            }
            let f = frac.map(|f| format!(".{}", &f[..f.len().min(9)])).unwrap_or_default();
            Some(format!("{y}-{}-{}T{hh}:{mi}:{ss}{f}{zone}", &digits[4..6], &digits[6..8]))
        }
        _ => None,
    }
}

/// The date part only (`yyyy-MM-dd`, or shorter when the value is shorter).
pub fn fhir_date(ts: &str) -> Option<String> {
    let d: String = ts.trim().chars().take_while(|c| c.is_ascii_digit()).take(8).collect();
    fhir_datetime(&d)
}

/// The FHIR system URI for an HL7 v2 coding-system name (CWE-3).
///
/// Known national code systems get their JP Core URIs. The guide gives no URI for the JAHIS,
/// SS-MIX2 and facility-local tables; those get `urn:ssmix2:cs:<name>` (and local `99…`
/// tables `urn:ssmix2:cs:<facility>:<name>`) so the original code is never dropped.
pub fn system_uri(name: &str, facility: &FacilityCode) -> String {
    match name {
        "HOT9" => "http://medis.or.jp/CodeSystem/master-HOT9".into(),
        "HOT7" => "http://medis.or.jp/CodeSystem/master-HOT7".into(),
        "HOT13" => "http://medis.or.jp/CodeSystem/master-HOT13".into(),
        "YJ" => systems::YJ.into(),
        "JC10" => systems::JLAC10.into(),
        "MDCDX2" => systems::MEDIS_DISEASE.into(),
        "I10" => "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full".into(),
        "MR9P" => "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationUnitMERIT9Code".into(),
        "JAMISDP01" => "http://jami.jp/CodeSystem/MedicationUsage".into(),
        "ISO+" | "UCUM" => "http://unitsofmeasure.org".into(),
        "DCM" => "http://dicom.nema.org/resources/ontology/DCM".into(),
        "LN" => systems::LOINC.into(),
        n if n.len() == 7 && n.starts_with("HL7") && n[3..].bytes().all(|b| b.is_ascii_digit()) => {
            format!("http://terminology.hl7.org/CodeSystem/v2-{}", &n[3..])
        }
        n if n.starts_with("99") => format!("urn:ssmix2:cs:{facility}:{n}"),
        n => format!("urn:ssmix2:cs:{n}"),
    }
}

/// JP Core's JLAC10 CodeSystem (NamingSystem `jp-observation-jlac10-namingsystem`, URL form):
/// JLAC10 codes of any length.
pub const JLAC10_JP_CORE: &str = "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationLabResultCode_CS";

/// JP Core's CodeSystem of the JLAC10 specimen material codes (材料コード).
pub const JLAC10_MATERIAL: &str = "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationSampleMaterialCode_CS";

/// The system of a code SS-MIX2 labels `JC10` (JLAC10), by what the code is.
///
/// A full JLAC10 code is 17 characters: analyte 5 · identification 4 · material 3 · method 3 ·
/// result 2. Only those belong to `http://medis.or.jp/CodeSystem/master-JLAC10-17digits`,
/// the system JP-CLINS uses for the shared lab items (and which the validator holds to 17
/// characters). SS-MIX2 also sends parts of a JLAC10 code under `JC10`:
/// - the 3-digit material code as a specimen type (SPM-4 `023^血清^JC10`): JP Core's
///   `JP_ObservationSampleMaterialCode_CS`, as in the JP-CLINS 1.5.2 examples
///   `Specimen-Example-Contained-JP-Specimen-Serum` (`023` 血清) and `…-Urine` (`001`)
///   (reference/jp-clins/examples; alias in
///   reference/jp-clins/fsh-codesystems/aliases-CLINSeCS-terminology.fsh);
/// - 5-character analyte codes (`9A110` 心電図) and 15-character codes without the result
///   part (allergen-specific IgE in ADT-61): JP Core's JLAC10 CodeSystem
///   (`JP_ObservationLabResultCode_CS`, NamingSystem `jp-observation-jlac10-namingsystem` in
///   reference/packages/jp-core.r4-1.1.2-url.tgz), which does not fix a length.
pub fn jlac10_system(code: &str) -> &'static str {
    let alnum = |c: u8| c.is_ascii_digit() || c.is_ascii_uppercase();
    if code.len() == 17 && code.bytes().all(alnum) {
        systems::JLAC10
    } else if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) {
        JLAC10_MATERIAL
    } else {
        JLAC10_JP_CORE
    }
}

fn coding(
    code: Option<String>,
    display: Option<String>,
    system: Option<String>,
    facility: &FacilityCode,
) -> Option<Json> {
    if code.is_none() && display.is_none() {
        return None;
    }
    let mut c = Map::new();
    if let Some(s) = system {
        let uri = match (s.as_str(), code.as_deref()) {
            ("JC10", Some(code)) => jlac10_system(code).to_owned(),
            _ => system_uri(&s, facility),
        };
        c.insert("system".into(), Json::String(uri));
    }
    if let Some(code) = code {
        c.insert("code".into(), Json::String(code));
    }
    if let Some(d) = display {
        c.insert("display".into(), Json::String(d));
    }
    Some(Json::Object(c))
}

/// A CWE/CE (components 1–6) as a CodeableConcept; `None` when it is empty.
pub fn codeable(v: Value<'_>, facility: &FacilityCode) -> Option<Json> {
    codeable_parts([v.comp(1), v.comp(2), v.comp(3), v.comp(4), v.comp(5), v.comp(6)].map(|x| x.text_opt()), facility)
}

/// A CWE written in subcomponents of one component (`code&text&system`, as in TQ1-3).
pub fn codeable_sub(v: Value<'_>, facility: &FacilityCode) -> Option<Json> {
    codeable_parts([v.sub(1), v.sub(2), v.sub(3), v.sub(4), v.sub(5), v.sub(6)].map(|x| x.text_opt()), facility)
}

fn codeable_parts(p: [Option<String>; 6], facility: &FacilityCode) -> Option<Json> {
    let [c1, t1, s1, c2, t2, s2] = p;
    let text = t1.clone().or_else(|| t2.clone());
    let mut codings = Vec::new();
    if c1.is_some() {
        codings.extend(coding(c1, t1, s1, facility));
    }
    if c2.is_some() {
        codings.extend(coding(c2, t2, s2, facility));
    }
    if codings.is_empty() && text.is_none() {
        return None;
    }
    let mut cc = Map::new();
    if !codings.is_empty() {
        cc.insert("coding".into(), Json::Array(codings));
    }
    if let Some(t) = text {
        cc.insert("text".into(), Json::String(t));
    }
    Some(Json::Object(cc))
}

/// A decimal string as a JSON number (integers stay integers).
pub fn number(s: &str) -> Option<Json> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+') {
        return None;
    }
    if let Ok(i) = s.parse::<i64>() {
        return Some(json!(i));
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite()).and_then(serde_json::Number::from_f64).map(Json::Number)
}

/// A value with a CWE unit as a Quantity. `None` when the value is not a number.
pub fn quantity(value: &str, unit: Value<'_>, facility: &FacilityCode) -> Option<Json> {
    let n = number(value)?;
    let mut q = Map::new();
    q.insert("value".into(), n);
    let code = unit.comp(1).text_opt();
    let text = unit.comp(2).text_opt().or_else(|| code.clone());
    if let Some(t) = text {
        q.insert("unit".into(), Json::String(t));
    }
    if let (Some(c), Some(s)) = (code, unit.comp(3).text_opt()) {
        q.insert("system".into(), Json::String(system_uri(&s, facility)));
        q.insert("code".into(), Json::String(c));
    }
    Some(Json::Object(q))
}

/// A CQ written as `qty^unit&text&system` (RXE-19, RXC-3/4 style).
pub fn quantity_cq(v: Value<'_>, facility: &FacilityCode) -> Option<Json> {
    let n = number(&v.comp(1).text())?;
    let u = v.comp(2);
    let mut q = Map::new();
    q.insert("value".into(), n);
    if let Some(t) = u.sub(2).text_opt().or_else(|| u.sub(1).text_opt()) {
        q.insert("unit".into(), Json::String(t));
    }
    if let (Some(c), Some(s)) = (u.sub(1).text_opt(), u.sub(3).text_opt()) {
        q.insert("system".into(), Json::String(system_uri(&s, facility)));
        q.insert("code".into(), Json::String(c));
    }
    Some(Json::Object(q))
}

/// XPN repetitions as JP Core HumanNames: kanji (`I`) with IDE, kana (`P`) with SYL.
pub fn human_names(field: Value<'_>) -> Vec<Json> {
    field
        .reps()
        .into_iter()
        .filter_map(|r| {
            let family = r.comp(1).text_opt();
            let given = r.comp(2).text_opt();
            let middle = r.comp(3).text_opt();
            if family.is_none() && given.is_none() {
                return None;
            }
            let mut n = Map::new();
            match r.comp(8).text().as_ref() {
                "I" => {
                    n.insert(
                        "extension".into(),
                        json!([{"url": systems::EXT_NAME_REPRESENTATION, "valueCode": "IDE"}]),
                    );
                }
                "P" => {
                    n.insert(
                        "extension".into(),
                        json!([{"url": systems::EXT_NAME_REPRESENTATION, "valueCode": "SYL"}]),
                    );
                }
                "A" => {
                    n.insert(
                        "extension".into(),
                        json!([{"url": systems::EXT_NAME_REPRESENTATION, "valueCode": "ABC"}]),
                    );
                }
                _ => {}
            }
            n.insert(
                "use".into(),
                Json::String(
                    match r.comp(7).text().as_ref() {
                        "D" => "usual",
                        "A" => "nickname",
                        "M" => "maiden",
                        _ => "official",
                    }
                    .into(),
                ),
            );
            let mut givens: Vec<String> = given.into_iter().collect();
            givens.extend(middle);
            let text = [family.clone().unwrap_or_default(), givens.join(" ")]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            n.insert("text".into(), Json::String(text));
            if let Some(f) = family {
                n.insert("family".into(), Json::String(f));
            }
            if !givens.is_empty() {
                n.insert("given".into(), json!(givens));
            }
            Some(Json::Object(n))
        })
        .collect()
}

/// XAD repetitions as Addresses. SS-MIX2 writes the whole address as text in XAD-8 (other
/// geographic designation); the structured parts are kept when present.
pub fn addresses(field: Value<'_>) -> Vec<Json> {
    field
        .reps()
        .into_iter()
        .filter_map(|r| {
            let line: Vec<String> = [r.comp(1), r.comp(2)].iter().filter_map(|c| c.text_opt()).collect();
            let city = r.comp(3).text_opt();
            let state = r.comp(4).text_opt();
            let postal = r.comp(5).text_opt();
            let country = r.comp(6).text_opt();
            let text = r.comp(8).text_opt().or_else(|| {
                let t: String =
                    [state.clone(), city.clone()].into_iter().flatten().chain(line.iter().cloned()).collect();
                (!t.is_empty()).then_some(t)
            });
            if text.is_none() && postal.is_none() {
                return None;
            }
            let mut a = Map::new();
            match r.comp(7).text().as_ref() {
                "H" => {
                    a.insert("use".into(), json!("home"));
                }
                "B" | "O" => {
                    a.insert("use".into(), json!("work"));
                }
                "C" => {
                    a.insert("use".into(), json!("temp"));
                }
                _ => {}
            }
            if let Some(t) = text {
                a.insert("text".into(), Json::String(t));
            }
            if !line.is_empty() {
                a.insert("line".into(), json!(line));
            }
            if let Some(c) = city {
                a.insert("city".into(), Json::String(c));
            }
            if let Some(s) = state {
                a.insert("state".into(), Json::String(s));
            }
            if let Some(p) = postal {
                a.insert("postalCode".into(), Json::String(p));
            }
            if let Some(c) = country {
                a.insert("country".into(), Json::String(c));
            }
            Some(Json::Object(a))
        })
        .collect()
}

/// XTN repetitions as ContactPoints. `default_use` applies when XTN-2 gives none (PID-14 is
/// the work number).
pub fn telecoms(field: Value<'_>, default_use: Option<&str>) -> Vec<Json> {
    field
        .reps()
        .into_iter()
        .filter_map(|r| {
            let value = r.comp(12).text_opt().or_else(|| r.comp(4).text_opt()).or_else(|| r.comp(1).text_opt())?;
            let system = match r.comp(3).text().as_ref() {
                "FX" => "fax",
                "Internet" | "X.400" => "email",
                "BP" => "pager",
                _ => "phone",
            };
            let mut t = Map::new();
            t.insert("system".into(), json!(system));
            t.insert("value".into(), Json::String(value));
            let use_ = match r.comp(2).text().as_ref() {
                "PRN" => Some("home"),
                "WPN" => Some("work"),
                "PRS" => Some("mobile"),
                "" => default_use,
                _ => None,
            };
            if let Some(u) = use_ {
                t.insert("use".into(), json!(u));
            }
            Some(Json::Object(t))
        })
        .collect()
}

/// An XCN (staff) as a Reference by the facility-local staff id, with the name as display.
pub fn practitioner_ref(v: Value<'_>, facility: &FacilityCode) -> Option<Json> {
    let r = v.rep(0);
    let id = r.comp(1).text_opt();
    let name: Vec<String> = [r.comp(2), r.comp(3)].iter().filter_map(|c| c.text_opt()).collect();
    if id.is_none() && name.is_empty() {
        return None;
    }
    let mut m = Map::new();
    if let Some(id) = id {
        m.insert(
            "identifier".into(),
            json!({"system": format!("urn:oid:1.2.392.100495.20.3.41.1{facility}"), "value": id}),
        );
    }
    if !name.is_empty() {
        m.insert("display".into(), Json::String(name.join(" ")));
    }
    Some(Json::Object(m))
}

/// HL7 table 0001 to FHIR administrative gender.
pub fn gender(code: &str) -> Option<&'static str> {
    match code {
        "F" => Some("female"),
        "M" => Some("male"),
        "O" | "A" => Some("other"),
        "U" | "N" => Some("unknown"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::Message;

    #[test]
    fn datetimes() {
        assert_eq!(fhir_datetime("19480405").as_deref(), Some("1948-04-05"));
        assert_eq!(fhir_datetime("201112202100").as_deref(), Some("2011-12-20T21:00:00+09:00"));
        assert_eq!(fhir_datetime("20110701113813.225").as_deref(), Some("2011-07-01T11:38:13.225+09:00"));
        assert_eq!(fhir_datetime("2011070100").as_deref(), Some("2011-07-01T00:00:00+09:00"));
        assert_eq!(fhir_datetime("20111220152000+0000").as_deref(), Some("2011-12-20T15:20:00+00:00"));
        assert_eq!(fhir_datetime("199601").as_deref(), Some("1996-01"));
        assert_eq!(fhir_datetime("20110231"), None);
        assert_eq!(fhir_datetime("2011123"), None);
        assert_eq!(fhir_datetime("abc"), None);
        assert_eq!(fhir_date("201112191500").as_deref(), Some("2011-12-19"));
    }

    #[test]
    fn names_addresses_phones() {
        let m = Message::parse(
            "MSH|^~\\&|A\rPID|0001||9999013||患者^太郎^^^^^L^I~カンジャ^タロウ^^^^^L^P||19480405|M|||^^^^422-8033^JPN^H^静岡県静岡市登呂１−３−５||^PRN^PH^^^^^^^^^054-000-0000~^EMR^PH^^^^^^^^^03-5999-9999|^WPN^PH^^^^^^^^^03-3599-9993\r",
        )
        .unwrap();
        let pid = m.segment("PID").unwrap();
        let names = human_names(pid.get(5));
        assert_eq!(names[0]["text"], "患者 太郎");
        assert_eq!(names[0]["extension"][0]["valueCode"], "IDE");
        assert_eq!(names[1]["family"], "カンジャ");
        assert_eq!(names[1]["given"][0], "タロウ");
        assert_eq!(names[1]["extension"][0]["valueCode"], "SYL");
        let a = addresses(pid.get(11));
        assert_eq!(a[0]["text"], "静岡県静岡市登呂１−３−５");
        assert_eq!(a[0]["postalCode"], "422-8033");
        assert_eq!(a[0]["use"], "home");
        let t = telecoms(pid.get(13), Some("home"));
        assert_eq!(t[0]["value"], "054-000-0000");
        assert_eq!(t[0]["use"], "home");
        assert!(t[1].get("use").is_none());
        let w = telecoms(pid.get(14), Some("work"));
        assert_eq!(w[0]["use"], "work");
    }

    #[test]
    fn codes_and_quantities() {
        let f: FacilityCode = "1318814790".parse().unwrap();
        let m = Message::parse("MSH|^~\\&|A\rOBX|1|NM|9N001000000000001^身長^JC10||167.8|cm^cm^ISO+\r").unwrap();
        let obx = m.segment("OBX").unwrap();
        let c = codeable(obx.get(3), &f).unwrap();
        assert_eq!(c["coding"][0]["system"], systems::JLAC10);
        assert_eq!(c["coding"][0]["code"], "9N001000000000001");
        assert_eq!(c["text"], "身長");
        let q = quantity("167.8", obx.get(6), &f).unwrap();
        assert_eq!(q["value"], 167.8);
        assert_eq!(q["system"], "http://unitsofmeasure.org");
        assert_eq!(system_uri("99XY1", &f), "urn:ssmix2:cs:1318814790:99XY1");
        assert_eq!(system_uri("HL70127", &f), "http://terminology.hl7.org/CodeSystem/v2-0127");
    }
}
