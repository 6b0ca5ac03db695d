//! SS-MIX2 standardized storage: HL7 v2.5 messages in ISO-2022-JP with segments ending in CR,
//! stored under `PID[0:3]/PID[3:6]/PID/診療日|-/データ種別/PID_診療日_データ種別_オーダNO_発生日時_診療科_コンディションフラグ`,
//! modelled on the real sample tree `reference/ssmix2/SSMIX2DataTestingTool/sampleData/` and its
//! segment-order tables.
//!
//! Text is NFKC-normalized (half-width kana become full-width, which ISO-2022-JP needs), variant
//! kanji are folded (JIS X 0208 has no 髙 or 﨑; real storages substitute the standard form),
//! any other character outside JIS X 0208 becomes 〓, and HL7 delimiters in text are escaped.
//! Builders return the message text and its storage path; encoding is a separate pure function.

use std::borrow::Cow;

use time::Date;
use unicode_normalization::UnicodeNormalization;

use crate::PersonHistory;
use crate::care::{Encounter, EncounterKind, LabResult, Rx, Value as LabValue};
use crate::codes::{self, Form};
use crate::dates::compact;
use crate::noise::SourcePatient;
use crate::region::{Facility, Region, User};
use crate::rng::key;

/// One SS-MIX2 message ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Ssmix2File {
    /// Path relative to the storage root.
    pub path: String,
    /// The message text (segments joined by CR).
    pub text: String,
}

/// Text for an HL7 field: NFKC, variant kanji folded, HL7 delimiters escaped, characters that
/// ISO-2022-JP cannot carry replaced by 〓.
pub fn field_text(s: &str) -> String {
    let folded = crate::names::fold_variants(&s.nfkc().collect::<String>());
    let mut out = String::with_capacity(folded.len());
    for c in folded.chars() {
        match c {
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '~' => out.push_str("\\R\\"),
            '\\' => out.push_str("\\E\\"),
            '&' => out.push_str("\\T\\"),
            '\r' | '\n' => out.push(' '),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                let (_, _, unmappable) = encoding_rs::ISO_2022_JP.encode(c.encode_utf8(&mut buf));
                out.push(if unmappable { '〓' } else { c });
            }
        }
    }
    out
}

/// Encodes a message in ISO-2022-JP (the text must come from [`field_text`]-cleaned values).
pub fn encode(text: &str) -> Cow<'_, [u8]> {
    encoding_rs::ISO_2022_JP.encode(text).0
}

fn dt(d: Date, secs: u64) -> String {
    let s = secs % 36_000;
    format!("{}{:02}{:02}{:02}", compact(d), 8 + s / 3600, (s / 60) % 60, s % 60)
}

fn order_no(seed: u64, person: u64, enc: usize, kind: u64) -> String {
    format!("{:015}", key(seed, &[person, enc as u64, kind]) % 1_000_000_000_000_000)
}

fn xcn(u: &User) -> String {
    let (f, g) = u.name.split_once(' ').unwrap_or((&u.name, ""));
    format!("{}^{}^{}^^^^^^^L^^^^^I", u.staff_id, field_text(f), field_text(g))
}

fn msh(f: &Facility, when: &str, msg_type: &str, control: &str) -> String {
    format!(
        "MSH|^~\\&|HIS|{}|GW|MUSUBI|{}||{}|{}|P|2.5||||||~ISO IR87||ISO 2022-1994|SS-MIX2_1.20^SS-MIX2^1.2.392.200250.2.1.100.1.2.120^ISO",
        f.code, when, msg_type, control
    )
}

fn pid(sp: &SourcePatient, updated: &str) -> String {
    let kana = match (&sp.family_kana, &sp.given_kana) {
        (Some(fk), Some(gk)) => format!("~{}^{}^^^^^L^P", field_text(fk), field_text(gk)),
        _ => String::new(),
    };
    let a = &sp.address;
    let addr = format!("^^^^{}^JPN^H^{}", a.postal_code, field_text(&a.text()));
    let phone = sp.phone.as_ref().map(|p| format!("^PRN^PH^^^^^^^^^{p}")).unwrap_or_default();
    format!(
        "PID|0001||{}^^^^PI||{}^{}^^^^^L^I{}||{}|{}|||{}||{}|||||||||||||||||||{}",
        sp.local_id,
        field_text(&sp.family),
        field_text(&sp.given),
        kana,
        compact(sp.birth),
        sp.sex.hl7(),
        addr,
        phone,
        updated
    )
}

fn pv1(kind: EncounterKind, dept: &str, doctor: &User, admit: Option<&str>, discharge: Option<&str>) -> String {
    let class = if kind == EncounterKind::Inpatient { "I" } else { "O" };
    let loc = if kind == EncounterKind::Inpatient {
        format!("{}^{}^1^^^N", 30 + dept.len(), 300 + dept.as_bytes()[1] as u32)
    } else {
        format!("{dept}^^^^^C")
    };
    let mut s = format!("PV1|0001|{}|{}||||{}|||{}", class, loc, xcn(doctor), dept);
    if admit.is_some() || discharge.is_some() {
        // PV1-44 admit and PV1-45 discharge date/time.
        let fields: Vec<&str> = s.split('|').collect();
        let mut v: Vec<String> = fields.iter().map(|x| x.to_string()).collect();
        while v.len() < 46 {
            v.push(String::new());
        }
        if let Some(a) = admit {
            v[44] = a.to_owned();
        }
        if let Some(d) = discharge {
            v[45] = d.to_owned();
        }
        s = v.join("|");
        s = s.trim_end_matches('|').to_owned();
    }
    s
}

fn path(pid: &str, date: Option<Date>, data_type: &str, order: &str, occurred: &str, dept: Option<&str>) -> String {
    let day = date.map(compact).unwrap_or_else(|| "-".to_owned());
    let dept = dept.unwrap_or("-");
    format!(
        "{}/{}/{}/{}/{}/{}_{}_{}_{}_{}_{}_1",
        &pid[0..3],
        &pid[3..6],
        pid,
        day,
        data_type,
        pid,
        day,
        data_type,
        order,
        occurred,
        dept
    )
}

fn join(segments: Vec<String>) -> String {
    let mut s = segments.join("\r");
    s.push('\r');
    s
}

fn insurance_type(region: &Region, sp: &SourcePatient) -> (&'static str, &'static str) {
    use crate::region::InsurerKind::*;
    match region.insurers[sp.insurance.insurer as usize].kind {
        Kyokai => ("01", "全国健康保険協会管掌健康保険"),
        Kumiai => ("06", "組合管掌健康保険"),
        Kyosai => ("31", "共済組合"),
        Kokuho => ("C0", "国民健康保険"),
        Koki => ("39", "後期高齢者医療"),
    }
}

fn rx_segments(rx: &Rx, order: &str, seq: usize, d: Date, doctor: &User, f: &Facility, inpatient: bool) -> Vec<String> {
    let drug = rx.drug;
    let entered = dt(d, 1800 + seq as u64 * 7);
    let (class, rxclass) = if inpatient {
        ("I^入院患者オーダ^HL70482", "IHP^入院処方^MR9P")
    } else {
        ("O^外来患者オーダ^HL70482", "OHP^外来処方^MR9P~OHO^院外処方^MR9P")
    };
    let orc = format!(
        "ORC|NW|{}||{}|||||{}|||{}||||||||{}|||||||{}",
        order,
        seq + 1,
        entered,
        xcn(doctor),
        field_text(&f.name),
        class
    );
    if drug.form == Form::Injection {
        vec![
            orc,
            format!(
                "RXE||{}^{}^HOT9|{}||{}^{}^MR9P|INJ^注射剤^MR9P|||||||||||||||{}",
                drug.hot9,
                field_text(drug.name),
                fmt_qty(rx.per_day),
                drug.unit.0,
                field_text(drug.unit.1),
                rxclass
            ),
            format!("TQ1|1||{}&{}&JAMISDP01|||{}^d|{}", drug.usage.0, field_text(drug.usage.1), rx.days, compact(d)),
            "RXR|IV^静脈内^HL70162".to_owned(),
        ]
    } else {
        let route = match drug.form {
            Form::External => "AP^外用^HL70162",
            _ => "PO^口^HL70162",
        };
        vec![
            orc,
            format!(
                "RXE||{}^{}^HOT9|{}||{}^{}^MR9P|||||{}|{}^{}^MR9P||||||||{}^{}&{}&MR9P||{}",
                drug.hot9,
                field_text(drug.name),
                fmt_qty(rx.per_day),
                drug.unit.0,
                field_text(drug.unit.1),
                fmt_qty(rx.total()),
                drug.unit.0,
                field_text(drug.unit.1),
                fmt_qty(rx.per_day),
                drug.unit.0,
                field_text(drug.unit.1),
                rxclass
            ),
            format!("TQ1|1||{}&{}&JAMISDP01|||{}^d|{}", drug.usage.0, field_text(drug.usage.1), rx.days, compact(d)),
            format!("RXR|{route}"),
        ]
    }
}

fn fmt_qty(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 { format!("{}", v.round() as i64) } else { format!("{:.2}", v) }
}

fn obx(i: usize, r: &LabResult) -> String {
    let l = r.lab;
    match r.value {
        LabValue::Num(v) => {
            let flag = if l.range.1 > l.range.0 {
                if v > l.range.1 {
                    "H"
                } else if v < l.range.0 {
                    "L"
                } else {
                    ""
                }
            } else {
                ""
            };
            let range = if l.range.1 > l.range.0 { format!("{}-{}", l.range.0, l.range.1) } else { String::new() };
            format!(
                "OBX|{}|NM|{}^{}^JC10||{}|{}^{}^99XYZ|{}|{}|||F",
                i + 1,
                l.jlac10,
                field_text(l.name),
                v,
                field_text(l.unit),
                field_text(l.unit),
                range,
                flag
            )
        }
        LabValue::Qual(p) => format!(
            "OBX|{}|ST|{}^{}^JC10||{}||||||F",
            i + 1,
            l.jlac10,
            field_text(l.name),
            if p { "(+)" } else { "(-)" }
        ),
    }
}

/// All SS-MIX2 files a storage holds for one patient of an SS-MIX2 hospital.
pub fn patient_files(region: &Region, seed: u64, person: &PersonHistory, sp: &SourcePatient) -> Vec<Ssmix2File> {
    let f = region.facility(sp.facility);
    let pidv = &sp.local_id;
    let pi = person.identity.index;
    let mut out = Vec::new();
    let encs: Vec<(usize, &Encounter)> =
        person.care.encounters.iter().enumerate().filter(|(_, e)| e.facility == sp.facility).collect();
    let Some((_, last)) = encs.last() else { return out };
    let last_day = last.end.unwrap_or(last.date);
    let updated = dt(last_day, 61_000);
    let any_doctor = &region.users[last.clinician as usize];
    // ADT-00: the latest patient record with insurance.
    {
        let (code, name) = insurance_type(region, sp);
        let insurer = &region.insurers[sp.insurance.insurer as usize];
        let id = &sp.insurance.id;
        let rel = if sp.insurance.principal { "SEL^本人^HL70063" } else { "EME^家族^HL70063" };
        let in1 = format!(
            "IN1|1|{}^{}^JHSD0001|{}|{}|||||||{}^{}|{}|{}|||||{}",
            code,
            name,
            insurer.number,
            field_text(&insurer.name),
            field_text(id.symbol()),
            id.branch().unwrap_or(""),
            field_text(id.number()),
            compact(sp.insurance.from.max(person.identity.birth)),
            rel
        );
        let text = join(vec![
            msh(f, &updated, "ADT^A08^ADT_A01", &order_no(seed, pi, 0, 100)),
            format!("EVN||{}|||||{}", updated, f.code),
            pid(sp, &updated),
            format!("PV1|0001|O|01^^^^^C||||{}", xcn(any_doctor)),
            in1,
        ]);
        out.push(Ssmix2File {
            path: path(pidv, None, "ADT-00", "999999999999999", &format!("{updated}000"), None),
            text,
        });
    }
    // ADT-61: allergies recorded at the hospital.
    let allergies = crate::fhir::recorded_allergies(seed, person, sp);
    if !allergies.is_empty() {
        let mut segs = vec![
            msh(f, &updated, "ADT^A60^ADT_A60", &order_no(seed, pi, 0, 101)),
            format!("EVN||{updated}"),
            pid(sp, &updated),
        ];
        for (i, a) in allergies.iter().enumerate() {
            let (cat, code, name, system) = match a.allergen.category {
                "food" => ("FA^食物アレルギー^HL70127", a.allergen.code, a.allergen.name, "99JFAGY"),
                "environment" => ("EA^環境アレルギー^HL70127", a.allergen.code, a.allergen.name, "99JFAGY"),
                _ => {
                    let d = codes::drug(a.allergen.code);
                    ("DA^薬剤アレルギー^HL70127", d.hot9, d.name, "HOT9")
                }
            };
            segs.push(format!(
                "IAM|{}|{}|{}^{}^{}|MO^中等度^HL70128||A^追加^HL70323|||||{}",
                i + 1,
                cat,
                code,
                field_text(name),
                system,
                compact(a.since)
            ));
        }
        out.push(Ssmix2File {
            path: path(pidv, None, "ADT-61", "999999999999999", &format!("{updated}000"), None),
            text: join(segs),
        });
    }
    // PPR-01: the problem list.
    {
        let mut segs = vec![msh(f, &updated, "PPR^ZD1^PPR_ZD1", &order_no(seed, pi, 0, 102)), pid(sp, &updated)];
        let mut seen: Vec<&str> = Vec::new();
        for (i, e) in &encs {
            for dx in &e.diagnoses {
                if seen.contains(&dx.disease.key) {
                    continue;
                }
                seen.push(dx.disease.key);
                let d = dx.disease;
                let resolved = dx.resolved.map(compact).unwrap_or_default();
                let outcome = if dx.resolved.is_some() { "R^回復^HL70241" } else { "N^回復せず^HL70241" };
                segs.push(format!(
                    "PRB|AD|{}|{}^{}^MDCDX2|{}|||{}||{}|{}^^I10||||{}|{}|{}|{}|{}",
                    compact(e.date),
                    d.medis,
                    field_text(d.name),
                    order_no(seed, pi, *i, 200 + seen.len() as u64),
                    compact(dx.onset),
                    resolved,
                    d.icd10,
                    outcome,
                    resolved,
                    compact(dx.onset),
                    field_text(d.name),
                    if dx.main { "1^主診断^JHSD0007" } else { "2^副診断^JHSD0007" }
                ));
                segs.push(format!(
                    "ORC|NW|{}|||||||||||{}||||||{}^{}^99XY1",
                    order_no(seed, pi, *i, 200 + seen.len() as u64),
                    xcn(&region.users[e.clinician as usize]),
                    e.dept,
                    field_text(codes::department_name(e.dept))
                ));
            }
        }
        if segs.len() > 2 {
            out.push(Ssmix2File {
                path: path(pidv, None, "PPR-01", "999999999999999", &format!("{updated}000"), Some("01")),
                text: join(segs),
            });
        }
    }
    for (i, e) in &encs {
        let doctor = &region.users[e.clinician as usize];
        let when = dt(e.date, 3600 + *i as u64);
        if e.kind == EncounterKind::Inpatient {
            let admit = dt(e.date, 7200);
            let end = e.end.unwrap_or(e.date);
            let discharge = dt(end, 36_000);
            out.push(Ssmix2File {
                path: path(pidv, Some(e.date), "ADT-22", "999999999999999", &format!("{admit}000"), Some(e.dept)),
                text: join(vec![
                    msh(f, &admit, "ADT^A01^ADT_A01", &order_no(seed, pi, *i, 1)),
                    format!("EVN||{admit}|||||{}", f.code),
                    pid(sp, &admit),
                    pv1(e.kind, e.dept, doctor, Some(&admit), None),
                ]),
            });
            out.push(Ssmix2File {
                path: path(pidv, Some(end), "ADT-52", "999999999999999", &format!("{discharge}000"), Some(e.dept)),
                text: join(vec![
                    msh(f, &discharge, "ADT^A03^ADT_A03", &order_no(seed, pi, *i, 2)),
                    format!("EVN||{discharge}||||{discharge}|{}", f.code),
                    pid(sp, &discharge),
                    pv1(e.kind, e.dept, doctor, Some(&admit), Some(&discharge)),
                ]),
            });
            if !e.injections.is_empty() {
                let order = order_no(seed, pi, *i, 3);
                let mut segs = vec![
                    msh(f, &admit, "RDE^O11^RDE_O11", &order),
                    pid(sp, &admit),
                    pv1(e.kind, e.dept, doctor, None, None),
                ];
                for (k, rx) in e.injections.iter().enumerate() {
                    segs.extend(rx_segments(rx, &order, k, e.date, doctor, f, true));
                }
                out.push(Ssmix2File {
                    path: path(pidv, Some(e.date), "OMP-02", &order, &format!("{admit}000"), Some(e.dept)),
                    text: join(segs),
                });
            }
            for (k, (code, name, modality)) in e.studies.iter().enumerate() {
                let order = order_no(seed, pi, *i, 10 + k as u64);
                let t = dt(e.date, 9000 + k as u64 * 60);
                let segs = vec![
                    msh(f, &t, "OMG^O19^OMG_O19", &order),
                    pid(sp, &t),
                    pv1(e.kind, e.dept, doctor, None, None),
                    format!("ORC|NW|{}|||||||{}|||{}", order, t, xcn(doctor)),
                    "TQ1|1||||||||R^^HL70485".to_owned(),
                    format!("OBR||{}||{}^{}^99{}", order, 1000 + k, field_text(name), modality),
                ];
                out.push(Ssmix2File {
                    path: path(pidv, Some(e.date), code, &order, &format!("{t}000"), Some(e.dept)),
                    text: join(segs),
                });
            }
        }
        if !e.prescriptions.is_empty() {
            let d = e.end.unwrap_or(e.date);
            let order = order_no(seed, pi, *i, 4);
            let t = dt(d, 5400 + *i as u64);
            let mut segs = vec![
                msh(f, &t, "RDE^O11^RDE_O11", &order),
                pid(sp, &t),
                pv1(EncounterKind::Outpatient, e.dept, doctor, None, None),
            ];
            for (k, rx) in e.prescriptions.iter().enumerate() {
                segs.extend(rx_segments(rx, &order, k, d, doctor, f, false));
            }
            out.push(Ssmix2File {
                path: path(pidv, Some(d), "OMP-01", &order, &format!("{t}000"), Some(e.dept)),
                text: join(segs),
            });
        }
        let mut panels: Vec<(Date, &[LabResult])> = Vec::new();
        if !e.labs.is_empty() {
            panels.push((e.date, &e.labs));
        }
        for (d, p) in &e.stay_labs {
            panels.push((*d, p));
        }
        for (k, (d, labs)) in panels.iter().enumerate() {
            let order = order_no(seed, pi, *i, 20 + k as u64);
            let collected = dt(*d, 1200 + k as u64);
            let reported = dt(*d, 14_400 + k as u64);
            let mut segs = vec![
                msh(f, &reported, "OUL^R22^OUL_R22", &order),
                pid(sp, &reported),
                pv1(
                    if e.kind == EncounterKind::Inpatient {
                        EncounterKind::Inpatient
                    } else {
                        EncounterKind::Outpatient
                    },
                    e.dept,
                    doctor,
                    None,
                    None,
                ),
                format!("SPM|1|{}||023^血清^JC10|||||||||||||{}", order, collected),
                format!(
                    "OBR|1|{}|{}|E001^検体検査^99O03|||{}|||||||||{}||||||{}",
                    order,
                    order,
                    compact(*d),
                    xcn(doctor),
                    reported
                ),
                format!(
                    "ORC|SC|{}|{}||CM||||{}|||{}|{}^^^^^C||||{}^{}^99XY1||||{}",
                    order,
                    order,
                    reported,
                    xcn(doctor),
                    e.dept,
                    e.dept,
                    field_text(codes::department_name(e.dept)),
                    field_text(&f.name)
                ),
            ];
            for (n, r) in labs.iter().enumerate() {
                segs.push(obx(n, r));
            }
            out.push(Ssmix2File {
                path: path(pidv, Some(*d), "OML-11", &order, &format!("{reported}000"), Some(e.dept)),
                text: join(segs),
            });
        }
        let _ = when;
    }
    out
}

/// Checks a storage path against the SS-MIX2 rules: returns why not, or `None` when it holds.
pub fn check_path(p: &str) -> Option<String> {
    let parts: Vec<&str> = p.split('/').collect();
    if parts.len() != 6 {
        return Some(format!("{p}: expected 6 path components"));
    }
    let (a, b, pid, day, dtype, file) = (parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]);
    if pid.len() < 6 || &pid[0..3] != a || &pid[3..6] != b {
        return Some(format!("{p}: PID[0:3]/PID[3:6] do not match the PID folder"));
    }
    if day != "-" && (day.len() != 8 || !day.bytes().all(|c| c.is_ascii_digit())) {
        return Some(format!("{p}: 診療日 folder must be YYYYMMDD or -"));
    }
    let known = [
        "ADT-00", "ADT-12", "ADT-22", "ADT-52", "ADT-61", "PPR-01", "OMP-01", "OMP-02", "OMP-11", "OMP-12", "OML-11",
        "OMG-01", "OMG-02", "OMG-03", "OMG-11", "OMG-12", "OMG-13",
    ];
    if !known.contains(&dtype) {
        return Some(format!("{p}: unknown data type {dtype}"));
    }
    let static_type = matches!(dtype, "ADT-00" | "ADT-61" | "PPR-01");
    if static_type != (day == "-") {
        return Some(format!(
            "{p}: {dtype} must be stored under {}",
            if static_type { "-" } else { "a 診療日 folder" }
        ));
    }
    let f: Vec<&str> = file.split('_').collect();
    if f.len() != 7 {
        return Some(format!("{p}: file name must have 7 parts"));
    }
    if f[0] != pid || f[1] != day || f[2] != dtype {
        return Some(format!("{p}: file name PID/診療日/データ種別 disagree with the folders"));
    }
    if f[3].is_empty() || !f[3].bytes().all(|c| c.is_ascii_digit()) {
        return Some(format!("{p}: オーダNO must be digits"));
    }
    if f[4].len() != 17 || !f[4].bytes().all(|c| c.is_ascii_digit()) {
        return Some(format!("{p}: 発生日時 must be 17 digits (YYYYMMDDHHMMSSfff)"));
    }
    if f[5] != "-" && (f[5].len() != 2 || !f[5].bytes().all(|c| c.is_ascii_digit())) {
        return Some(format!("{p}: 診療科 must be 2 digits or -"));
    }
    if f[6] != "1" && f[6] != "0" {
        return Some(format!("{p}: コンディションフラグ must be 0 or 1"));
    }
    None
}
