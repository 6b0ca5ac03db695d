//! UKE (レセ電) receipts in the current layouts of `reference/uke/LAYOUT.md`: 医科 (IR, RE, HO,
//! SN, SY, SI, IY, GO), DPC inpatient receipts (RE, HO, SN, BU, SB, KK, GT, CD after the older
//! table, with 西暦 dates) and 調剤 (YK, RE, HO, SN, SH, CZ, IY, GO). Shift_JIS (CP932), CRLF,
//! 0x1A after the last line.
//!
//! Builders return records as text lines without the レセプト番号, which the writer numbers per
//! file. Inpatient 医科 receipts carry diagnoses, drugs and the lab fees below; 入院料 and the
//! 調剤 KI record (調剤基本料) are not written, because no master for their codes is available.

use time::Date;

use crate::PersonHistory;
use crate::care::{Encounter, EncounterKind, LabResult};
use crate::codes::{self, Form, fees};
use crate::dates::{add_days, compact};
use crate::noise::SourcePatient;
use crate::region::{Facility, FacilityType, InsurerKind, Region};

/// Which kind of receipt file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UkeKind {
    /// 医科.
    Ika,
    /// DPC (inpatient months of DPC hospitals).
    Dpc,
    /// 調剤.
    Chozai,
}

impl UkeKind {
    /// File-name tag.
    pub fn tag(self) -> &'static str {
        match self {
            UkeKind::Ika => "ika",
            UkeKind::Dpc => "dpc",
            UkeKind::Chozai => "chozai",
        }
    }
}

/// One receipt (レセプト) for a patient, a facility and a month.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// File kind.
    pub kind: UkeKind,
    /// 審査支払機関 (1 支払基金, 2 国保連).
    pub reviewer: u8,
    /// 診療年月 `YYYYMM`.
    pub month: u32,
    /// The RE record after its first two fields (`RE,<番号>,` is added by the writer).
    pub re_rest: String,
    /// The records after RE.
    pub lines: Vec<String>,
    /// 合計点数 (HO).
    pub points: u64,
    /// Number of HO + KO records (for GO).
    pub ho_ko: u64,
}

/// Text for a UKE field: no commas or line breaks.
fn t(s: &str) -> String {
    s.chars().map(|c| if matches!(c, ',' | '\r' | '\n') { '、' } else { c }).collect()
}

/// A 保険者番号 as HO/SN record it: 国保's six digits right-aligned with spaces.
fn insurer_field(n: &musubi_domain::InsurerNumber) -> String {
    let s = n.as_str();
    if n.law_number() == 0 { format!("  {}", &s[2..]) } else { s.to_owned() }
}

fn receipt_type(
    region: &Region,
    sp: &SourcePatient,
    birth: Date,
    on: Date,
    pharmacy: bool,
    inpatient: bool,
) -> (String, String) {
    let ins = &region.insurers[sp.insurance.insurer as usize];
    let age = crate::dates::age_on(birth, on);
    let koki = ins.kind == InsurerKind::Koki;
    let last = match (koki, age, sp.insurance.principal) {
        (true, _, _) => {
            if inpatient {
                '7'
            } else {
                '8'
            }
        }
        (false, 70..=74, _) => {
            if inpatient {
                '7'
            } else {
                '8'
            }
        }
        (false, 0..=5, _) => {
            if inpatient {
                '3'
            } else {
                '4'
            }
        }
        (false, _, true) => {
            if inpatient {
                '1'
            } else {
                '2'
            }
        }
        (false, _, false) => {
            if inpatient {
                '5'
            } else {
                '6'
            }
        }
    };
    let code = format!("{}{}1{}", if pharmacy { '4' } else { '1' }, if koki { '3' } else { '1' }, last);
    let ratio = if ins.kind == InsurerKind::Kokuho { if (70..=74).contains(&age) { "80" } else { "70" } } else { "" };
    (code, ratio.to_owned())
}

fn name_field(sp: &SourcePatient) -> String {
    t(&format!("{}\u{3000}{}", sp.family, sp.given))
}

fn kana_field(sp: &SourcePatient) -> String {
    match (&sp.family_kana, &sp.given_kana) {
        (Some(f), Some(g)) => {
            let sep = if f.chars().any(|c| ('\u{FF61}'..='\u{FF9F}').contains(&c)) { " " } else { "\u{3000}" };
            t(&format!("{f}{sep}{g}"))
        }
        _ => String::new(),
    }
}

fn ho_sn(region: &Region, sp: &SourcePatient, days: usize, points: u64, chozai: bool) -> Vec<String> {
    let id = &sp.insurance.id;
    let ins = insurer_field(&id.insurer());
    let _ = region;
    let ho = if chozai {
        format!("HO,{},{},{},{},{},,,,,,,,", ins, t(id.symbol()), t(id.number()), days, points)
    } else {
        format!("HO,{},{},{},{},{},,,,,,,,,", ins, t(id.symbol()), t(id.number()), days, points)
    };
    let sn = format!("SN,1,01,{},{},{},{},,", ins, t(id.symbol()), t(id.number()), id.branch().unwrap_or(""));
    vec![ho, sn]
}

fn days31(counts: &[(u8, u32)]) -> String {
    let mut v = vec![String::new(); 31];
    for (day, n) in counts {
        if let Some(slot) = v.get_mut(usize::from(*day).saturating_sub(1)) {
            let cur: u32 = slot.parse().unwrap_or(0);
            *slot = format!("{}", cur + n);
        }
    }
    v.join(",")
}

fn si(kind: &str, fee: (&str, u32), times: u32, days: &[(u8, u32)]) -> String {
    format!("SI,{},1,{},,{},{},,,,,,,{}", kind, fee.0, fee.1, times, days31(days))
}

fn drug_points(rx: &crate::care::Rx) -> u32 {
    // 薬剤料 per day: price ×10 / 10 per unit, rounded as 点 (approximate).
    let per_day = f64::from(rx.drug.price10) / 10.0 * rx.per_day / 10.0;
    (per_day.round() as u32).max(1)
}

/// 医科 (or DPC) receipts of one patient at one facility, one per month with visits.
pub fn medical_receipts(region: &Region, person: &PersonHistory, sp: &SourcePatient) -> Vec<Receipt> {
    let f = region.facility(sp.facility);
    if !matches!(f.kind, FacilityType::Hospital | FacilityType::Clinic) {
        return Vec::new();
    }
    let encs: Vec<&Encounter> = person
        .care
        .encounters
        .iter()
        .filter(|e| e.facility == sp.facility && e.kind != EncounterKind::Checkup)
        .collect();
    let mut months: Vec<u32> = Vec::new();
    for e in &encs {
        let mut d = e.date;
        let end = e.end.unwrap_or(e.date);
        loop {
            let m = crate::dates::month_key(d);
            if !months.contains(&m) {
                months.push(m);
            }
            let next = crate::dates::ymd(
                d.year() + i32::from(d.month() as u8 == 12),
                if d.month() as u8 == 12 { 1 } else { d.month() as u8 + 1 },
                1,
            );
            match next {
                Some(n) if n <= end => d = n,
                _ => break,
            }
        }
    }
    months.sort_unstable();
    let mut out = Vec::new();
    let first_visit_month = crate::dates::month_key(sp.first_visit);
    for month in months {
        let in_month = |d: Date| crate::dates::month_key(d) == month;
        let month_encs: Vec<&&Encounter> = encs
            .iter()
            .filter(|e| {
                in_month(e.date)
                    || e.end
                        .is_some_and(|end| in_month(end) || (e.date < month_start(month) && end > month_start(month)))
            })
            .collect();
        let inpatient = month_encs.iter().find(|e| e.kind == EncounterKind::Inpatient).copied();
        let dpc = inpatient.is_some() && f.dpc;
        let on = month_start(month).max(sp.first_visit);
        let (rtype, ratio) = receipt_type(region, sp, sp.birth, on, false, inpatient.is_some());
        let admit = inpatient.map(|e| compact(e.date)).unwrap_or_default();
        let dept = month_encs.first().map(|e| e.dept).unwrap_or("01");
        let re_rest = format!(
            "{},{},{},{},{},{},{},,,,,{},,,,,,,,{},,,,,,,,,,,,,,,{},",
            rtype,
            month,
            name_field(sp),
            sp.sex.uke(),
            compact(sp.birth),
            ratio,
            admit,
            sp.local_id,
            dept,
            kana_field(sp)
        );
        let mut lines = Vec::new();
        let mut points: u64 = 0;
        let mut visit_days: Vec<u8> = Vec::new();
        // Diagnoses.
        let mut sy: Vec<(&'static codes::Disease, Date, Option<Date>, bool)> = Vec::new();
        for e in &month_encs {
            for dx in &e.diagnoses {
                match sy.iter_mut().find(|s| s.0.key == dx.disease.key) {
                    Some(s) => s.2 = dx.resolved.or(s.2),
                    None => sy.push((dx.disease, dx.onset, dx.resolved, dx.main)),
                }
            }
        }
        let mut body = Vec::new();
        let mut first_day_fee = month == first_visit_month;
        let mut labs_days: Vec<(u8, u32)> = Vec::new();
        let mut cbc_days: Vec<(u8, u32)> = Vec::new();
        let mut hba1c_days: Vec<(u8, u32)> = Vec::new();
        let mut chronic_mgmt = 0u32;
        for e in &month_encs {
            let days_in: Vec<Date> = if e.kind == EncounterKind::Inpatient {
                let end = e.end.unwrap_or(e.date);
                (0..=crate::dates::days_between(e.date, end))
                    .map(|k| add_days(e.date, k))
                    .filter(|d| in_month(*d))
                    .collect()
            } else {
                vec![e.date]
            };
            for d in &days_in {
                let day = d.day();
                if !visit_days.contains(&day) {
                    visit_days.push(day);
                }
            }
            if e.kind != EncounterKind::Inpatient && in_month(e.date) {
                let day = e.date.day();
                if first_day_fee && e.date == sp.first_visit {
                    body.push(si("11", fees::FIRST_VISIT, 1, &[(day, 1)]));
                    points += u64::from(fees::FIRST_VISIT.1);
                    first_day_fee = false;
                } else {
                    body.push(si("12", fees::REVISIT, 1, &[(day, 1)]));
                    points += u64::from(fees::REVISIT.1);
                }
                if f.kind == FacilityType::Clinic
                    && e.diagnoses
                        .iter()
                        .any(|d| matches!(d.disease.key, "htn" | "dm2" | "dyslipidemia" | "ckd" | "asthma" | "angina"))
                    && chronic_mgmt < 2
                {
                    body.push(si("13", fees::CHRONIC_MGMT, 1, &[(day, 1)]));
                    points += u64::from(fees::CHRONIC_MGMT.1);
                    chronic_mgmt += 1;
                }
                if !e.prescriptions.is_empty() {
                    if f.outside_prescription {
                        body.push(si("80", fees::PRESCRIPTION_OUT, 1, &[(day, 1)]));
                        points += u64::from(fees::PRESCRIPTION_OUT.1);
                    } else {
                        body.push(si("25", fees::PRESCRIPTION_IN, 1, &[(day, 1)]));
                        points += u64::from(fees::PRESCRIPTION_IN.1);
                        for rx in &e.prescriptions {
                            let (ident, qty) = match rx.drug.form {
                                Form::Oral => ("21", rx.per_day),
                                Form::AsNeeded => ("22", rx.per_day),
                                _ => ("23", rx.total()),
                            };
                            let p = drug_points(rx);
                            body.push(format!(
                                "IY,{},1,{},{},{},{},,,,,,,{}",
                                ident,
                                rx.drug.receipt,
                                fmt(qty),
                                p,
                                rx.days,
                                days31(&[(day, rx.days)])
                            ));
                            points += u64::from(p) * u64::from(rx.days);
                        }
                    }
                }
            }
            if e.kind == EncounterKind::Inpatient {
                for rx in &e.injections {
                    let p = drug_points(rx).max(1);
                    let inj_days: Vec<(u8, u32)> = (0..rx.days)
                        .map(|k| add_days(e.date, i64::from(k)))
                        .filter(|d| in_month(*d))
                        .map(|d| (d.day(), 1))
                        .collect();
                    if inj_days.is_empty() {
                        continue;
                    }
                    let n = inj_days.len() as u32;
                    body.push(format!(
                        "IY,33,1,{},{},{},{},,,,,,,{}",
                        rx.drug.receipt,
                        fmt(rx.per_day),
                        p,
                        n,
                        days31(&inj_days)
                    ));
                    points += u64::from(p) * u64::from(n);
                }
            }
            let mut panels: Vec<(Date, &[LabResult])> = Vec::new();
            if !e.labs.is_empty() {
                panels.push((e.date, &e.labs));
            }
            for (d, p) in &e.stay_labs {
                panels.push((*d, p));
            }
            for (d, labs) in panels.into_iter().filter(|(d, _)| in_month(*d)) {
                labs_days.push((d.day(), 1));
                if labs.iter().any(|l| matches!(l.lab.key, "WBC" | "Hb" | "PLT")) {
                    cbc_days.push((d.day(), 1));
                }
                if labs.iter().any(|l| l.lab.key == "HbA1c-NGSP") {
                    hba1c_days.push((d.day(), 1));
                }
            }
        }
        for (fee, days) in [(fees::CBC, &cbc_days), (fees::HBA1C, &hba1c_days), (fees::BLOOD_DRAW, &labs_days)] {
            if !days.is_empty() {
                let n: u32 = days.iter().map(|(_, c)| c).sum();
                body.push(si("60", fee, n, days));
                points += u64::from(fee.1) * u64::from(n);
            }
        }
        let real_days = visit_days.len();
        lines.extend(ho_sn(region, sp, real_days, points, false));
        if dpc {
            let e = inpatient.expect("checked above");
            let main = e.diagnoses.iter().find(|d| d.main).or(e.diagnoses.first());
            let end = e.end.unwrap_or(e.date);
            let discharged = in_month(end);
            if let Some(main) = main {
                lines.push(format!(
                    "BU,{},{},{},{},",
                    codes::dpc_code(main.disease.key),
                    compact(e.date),
                    if discharged { compact(end) } else { String::new() },
                    if discharged { "1" } else { "" }
                ));
                for (i, dx) in e.diagnoses.iter().enumerate() {
                    let kubun = if i == 0 { "01" } else { "11" };
                    lines.push(format!("SB,{},,,{},{},,", dx.disease.receipt, dx.disease.icd10, kubun));
                }
                let age = crate::dates::age_on(sp.birth, e.date);
                lines.push(format!(
                    "KK,,,{},,,{},,,,,,,",
                    if e.referral.is_some() && age > 0 { "1" } else { "2" },
                    age
                ));
                lines.push(format!("GT,{},0,1,1,{},{},,{},,,", month, points, points, points));
                let mut seq = 0;
                for (i, rx) in e.injections.iter().enumerate() {
                    for k in 0..rx.days {
                        let d = add_days(e.date, i64::from(k));
                        if in_month(d) {
                            seq += 1;
                            lines.push(format!(
                                "CD,{},33,{},{},{},{},,,1,",
                                compact(d),
                                seq,
                                i + 1,
                                rx.drug.receipt,
                                fmt(rx.per_day)
                            ));
                        }
                    }
                }
            }
        }
        for (dis, onset, resolved, main) in &sy {
            let outcome = match resolved {
                Some(r) if crate::dates::month_key(*r) <= month => "2",
                _ => "1",
            };
            lines.push(format!(
                "SY,{},{},{},,,{},",
                dis.receipt,
                compact(*onset),
                outcome,
                if *main { "01" } else { "" }
            ));
        }
        lines.extend(body);
        out.push(Receipt {
            kind: if dpc { UkeKind::Dpc } else { UkeKind::Ika },
            reviewer: region.insurers[sp.insurance.insurer as usize].kind.reviewer(),
            month,
            re_rest,
            lines,
            points,
            ho_ko: 1,
        });
    }
    out
}

fn month_start(month: u32) -> Date {
    crate::dates::ymd((month / 100) as i32, (month % 100) as u8, 1).unwrap_or(Date::MIN)
}

fn fmt(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 { format!("{}", v.round() as i64) } else { format!("{:.2}", v) }
}

/// 調剤 receipts of one patient at one pharmacy, one per month with dispensings.
pub fn pharmacy_receipts(region: &Region, person: &PersonHistory, sp: &SourcePatient) -> Vec<Receipt> {
    let f = region.facility(sp.facility);
    if f.kind != FacilityType::Pharmacy {
        return Vec::new();
    }
    let encs: Vec<(usize, &Encounter)> = person
        .care
        .encounters
        .iter()
        .enumerate()
        .filter(|(_, e)| e.facility == sp.facility && e.kind == EncounterKind::Dispensing)
        .collect();
    let mut months: Vec<u32> = encs.iter().map(|(_, e)| crate::dates::month_key(e.date)).collect();
    months.dedup();
    let mut out = Vec::new();
    for month in months {
        // One receipt per prescribing institution (the RE carries it).
        let in_month: Vec<&(usize, &Encounter)> =
            encs.iter().filter(|(_, e)| crate::dates::month_key(e.date) == month).collect();
        let mut prescribers: Vec<u32> = in_month.iter().filter_map(|(_, e)| e.prescribed_by.map(|p| p.0)).collect();
        prescribers.sort_unstable();
        prescribers.dedup();
        for pres in prescribers {
            let pf: &Facility = region.facility(pres);
            let group: Vec<&&(usize, &Encounter)> =
                in_month.iter().filter(|(_, e)| e.prescribed_by.map(|p| p.0) == Some(pres)).collect();
            let Some((_, first)) = group.first() else { continue };
            let (rtype, ratio) = receipt_type(region, sp, sp.birth, first.date, true, false);
            let doctor = first
                .prescribed_by
                .and_then(|(_, i)| person.care.encounters.get(i))
                .map(|e| region.users[e.clinician as usize].name.replace(' ', "\u{3000}"))
                .unwrap_or_default();
            let mut doctors = vec![String::new(); 20];
            doctors[0] = t(&doctor);
            let re_rest = format!(
                "{},{},{},{},{},{},,{},1,{},{},,{},,{},,,,,,{}",
                rtype,
                month,
                name_field(sp),
                sp.sex.uke(),
                compact(sp.birth),
                ratio,
                pf.prefecture_code(),
                pf.code.receipt_code(),
                t(&pf.name),
                doctors.join(","),
                sp.local_id,
                kana_field(sp)
            );
            let mut body = Vec::new();
            let mut points = 0u64;
            let mut rp = 0;
            for (_, e) in &group {
                let issued = e
                    .prescribed_by
                    .and_then(|(_, i)| person.care.encounters.get(i))
                    .map(|p| p.end.unwrap_or(p.date))
                    .unwrap_or(e.date);
                for rx in &e.prescriptions {
                    rp += 1;
                    let form = match rx.drug.form {
                        Form::Oral => "1",
                        Form::AsNeeded => "3",
                        _ => "5",
                    };
                    let unit_points = drug_points(rx);
                    let qty = match rx.drug.form {
                        Form::Oral => rx.days,
                        _ => 1,
                    };
                    let prep =
                        if rx.drug.form == Form::AsNeeded { fees::DISPENSING_PRN } else { fees::DISPENSING_ORAL };
                    body.push(format!("SH,{:02},{},{},,{},,,,", rp % 100, form, rx.drug.usage.0, unit_points));
                    let mut cz = vec![String::new(); 71];
                    cz[0] = "CZ".into();
                    cz[1] = "1".into();
                    cz[2] = compact(issued);
                    cz[3] = compact(e.date);
                    cz[4] = "1".into();
                    cz[5] = format!("{qty}");
                    cz[6] = "1".into();
                    cz[9] = prep.0.into();
                    cz[10] = format!("{}", prep.1);
                    cz[13] = format!("{}", u64::from(unit_points) * u64::from(qty));
                    body.push(cz.join(","));
                    let use_qty = match rx.drug.form {
                        Form::Oral | Form::AsNeeded => rx.per_day,
                        _ => rx.total(),
                    };
                    body.push(format!("IY,1,{},{},,,,,,", rx.drug.receipt, fmt(use_qty)));
                    points += u64::from(prep.1) + u64::from(unit_points) * u64::from(qty);
                }
            }
            let mut lines = ho_sn(region, sp, group.len(), points, true);
            lines.extend(body);
            out.push(Receipt {
                kind: UkeKind::Chozai,
                reviewer: region.insurers[sp.insurance.insurer as usize].kind.reviewer(),
                month,
                re_rest,
                lines,
                points,
                ho_ko: 1,
            });
        }
    }
    out
}

/// The header record of a file (IR for 医科/DPC, YK for 調剤).
pub fn header(f: &Facility, kind: UkeKind, reviewer: u8, month: u32) -> String {
    match kind {
        UkeKind::Chozai => format!(
            "YK,{},{:02},4,{},{},{},00,{}",
            reviewer,
            f.prefecture,
            f.code.receipt_code(),
            t(&f.name),
            month,
            f.phone
        ),
        _ => format!(
            "IR,{},{:02},1,{},,{},{},00,{}",
            reviewer,
            f.prefecture,
            f.code.receipt_code(),
            t(&f.name),
            month,
            f.phone
        ),
    }
}

/// The closing GO record.
pub fn footer(count: u64, points: u64) -> String {
    format!("GO,{count},{points},99")
}

/// Encodes lines as a UKE file body part: Shift_JIS (CP932), CRLF. Characters outside CP932
/// become 〓.
pub fn encode_lines(lines: &[String]) -> Vec<u8> {
    let mut text = String::new();
    for l in lines {
        text.push_str(l);
        text.push_str("\r\n");
    }
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&text);
    if !unmappable {
        return bytes.into_owned();
    }
    let safe: String = text
        .chars()
        .map(|c| {
            let mut buf = [0u8; 4];
            if encoding_rs::SHIFT_JIS.encode(c.encode_utf8(&mut buf)).2 { '〓' } else { c }
        })
        .collect();
    encoding_rs::SHIFT_JIS.encode(&safe).0.into_owned()
}

impl Facility {
    /// The 2-digit prefecture code as receipts write it.
    pub fn prefecture_code(&self) -> String {
        format!("{:02}", self.prefecture)
    }
}
