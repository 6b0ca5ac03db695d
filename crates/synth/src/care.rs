//! Care histories that make clinical sense: chronic diseases followed at a home clinic with
//! regular visits, prescriptions and lab trends; acute episodes; dental care; admissions with
//! discharge summaries and referrals; pharmacy dispensing after outside prescriptions; annual
//! checkups; allergies and infection carriers.

use time::Date;

use crate::codes::{self, Disease, Drug, Form, Lab};
use crate::dates::{add_days, age_on, days_between};
use crate::person::{Identity, Sex, Window};
use crate::region::{FacilityType, Region};
use crate::rng::Rng;

/// What kind of contact an encounter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncounterKind {
    /// Outpatient visit (外来).
    Outpatient,
    /// Admission (入院) from `date` to `end`.
    Inpatient,
    /// Dental visit.
    Dental,
    /// Pharmacy dispensing of another facility's prescription.
    Dispensing,
    /// Annual health checkup (健診).
    Checkup,
}

/// A diagnosis recorded at an encounter.
#[derive(Debug, Clone, PartialEq)]
pub struct Dx {
    /// The disease.
    pub disease: &'static Disease,
    /// Onset (開始日) as this facility records it.
    pub onset: Date,
    /// Main diagnosis (主病).
    pub main: bool,
    /// Resolved on this date (治ゆ), if it is.
    pub resolved: Option<Date>,
}

/// A lab value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// Numeric.
    Num(f64),
    /// Qualitative: positive / negative.
    Qual(bool),
}

/// One lab result.
#[derive(Debug, Clone, PartialEq)]
pub struct LabResult {
    /// Item.
    pub lab: &'static Lab,
    /// Value.
    pub value: Value,
}

/// One prescribed or administered drug.
#[derive(Debug, Clone, PartialEq)]
pub struct Rx {
    /// Drug.
    pub drug: &'static Drug,
    /// Days (内服) or times (頓服) or uses.
    pub days: u32,
    /// Quantity per day (or per time).
    pub per_day: f64,
}

impl Rx {
    /// Total quantity dispensed.
    pub fn total(&self) -> f64 {
        match self.drug.form {
            Form::Oral | Form::Injection => (self.per_day * f64::from(self.days)).ceil().max(1.0),
            Form::AsNeeded => f64::from(self.days),
            Form::External => (self.per_day * f64::from(self.days)).ceil().max(1.0),
        }
    }
}

/// A referral letter (診療情報提供書) written at an encounter.
#[derive(Debug, Clone, PartialEq)]
pub struct Referral {
    /// Addressee facility.
    pub to: u32,
    /// Purpose text.
    pub purpose: String,
    /// With a discharge summary attached (the index of the admission encounter).
    pub discharge_summary_of: Option<usize>,
}

/// A checkup's measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkup {
    /// 身長 cm.
    pub height: f64,
    /// 体重 kg.
    pub weight: f64,
    /// 腹囲 cm.
    pub waist: f64,
    /// 収縮期 / 拡張期血圧.
    pub bp: (u32, u32),
}

/// One contact of a person with a facility.
#[derive(Debug, Clone, PartialEq)]
pub struct Encounter {
    /// Facility index.
    pub facility: u32,
    /// Date (admission date for inpatient stays).
    pub date: Date,
    /// Discharge date for inpatient stays.
    pub end: Option<Date>,
    /// Kind.
    pub kind: EncounterKind,
    /// Department code.
    pub dept: &'static str,
    /// Index of the clinician in [`Region::users`].
    pub clinician: u32,
    /// First visit at this facility (初診).
    pub first: bool,
    /// Diagnoses.
    pub diagnoses: Vec<Dx>,
    /// Lab results (taken on `date`, or on admission).
    pub labs: Vec<LabResult>,
    /// Later lab panels during a stay: (date, results).
    pub stay_labs: Vec<(Date, Vec<LabResult>)>,
    /// Prescriptions (to take home).
    pub prescriptions: Vec<Rx>,
    /// Injections during a stay.
    pub injections: Vec<Rx>,
    /// Imaging / physiology studies (JJ1017-ish code, name, modality data type).
    pub studies: Vec<(&'static str, &'static str, &'static str)>,
    /// Referral written here.
    pub referral: Option<Referral>,
    /// For dispensing: the prescribing facility and its encounter index.
    pub prescribed_by: Option<(u32, usize)>,
    /// Checkup measurements.
    pub checkup: Option<Checkup>,
}

/// A person's allergy.
#[derive(Debug, Clone, PartialEq)]
pub struct Allergy {
    /// Allergen.
    pub allergen: &'static codes::Allergen,
    /// Known since.
    pub since: Date,
}

/// Per-person latent physiology that lab values and checkups follow.
#[derive(Debug, Clone)]
struct Latent {
    hba1c: f64,
    ldl: f64,
    hdl: f64,
    tg: f64,
    egfr: f64,
    egfr_slope: f64,
    ua: f64,
    ast: f64,
    alt: f64,
    hb: f64,
    height: f64,
    bmi: f64,
    sbp: f64,
}

/// The clinical history of one person.
#[derive(Debug, Clone)]
pub struct CareHistory {
    /// Encounters in date order.
    pub encounters: Vec<Encounter>,
    /// Allergies.
    pub allergies: Vec<Allergy>,
    /// Infection carriers: disease keys (hbv, hcv, syphilis, hiv).
    pub carriers: Vec<&'static str>,
}

struct Ctx<'a> {
    region: &'a Region,
    id: &'a Identity,
    window: Window,
    latent: Latent,
    chronic: Vec<(&'static Disease, Date)>,
    encounters: Vec<Encounter>,
    /// Pharmacy chosen per prescribing facility.
    pharmacy_for: Vec<(u32, u32)>,
    carriers: Vec<&'static str>,
    seen: Vec<u32>,
}

fn prevalence(key: &str, age: i32, sex: Sex) -> f64 {
    let m = sex == Sex::Male;
    match key {
        "htn" => match age {
            ..=39 => 0.02,
            40..=59 => 0.2,
            60..=74 => 0.45,
            _ => 0.6,
        },
        "dm2" => {
            (match age {
                ..=39 => 0.005,
                40..=59 => 0.06,
                60..=74 => 0.13,
                _ => 0.15,
            }) * if m { 1.4 } else { 0.7 }
        }
        "dyslipidemia" => match age {
            ..=39 => 0.02,
            40..=59 => 0.14,
            _ => 0.25,
        },
        "ckd" => match age {
            ..=59 => 0.01,
            60..=74 => 0.06,
            _ => 0.13,
        },
        "asthma" => {
            if age < 15 {
                0.06
            } else {
                0.035
            }
        }
        "hyperuricemia" if m && age >= 30 => 0.07,
        "osteoporosis" if !m && age >= 60 => {
            if age >= 75 {
                0.25
            } else {
                0.12
            }
        }
        "gerd" if age >= 40 => 0.04,
        "af" => match age {
            ..=64 => 0.002,
            65..=74 => 0.03,
            _ => 0.06,
        },
        "angina" if age >= 60 => 0.03,
        "rhinitis" if (5..=64).contains(&age) => 0.07,
        "insomnia" => {
            if age >= 50 {
                0.05
            } else {
                0.01
            }
        }
        _ => 0.0,
    }
}

const CHRONIC: &[&str] = &[
    "htn",
    "dm2",
    "dyslipidemia",
    "ckd",
    "asthma",
    "hyperuricemia",
    "osteoporosis",
    "gerd",
    "af",
    "angina",
    "rhinitis",
    "insomnia",
];

/// Generates a person's care history.
pub(crate) fn care_history(region: &Region, seed: u64, window: Window, id: &Identity) -> CareHistory {
    let mut rng = Rng::new(seed, &[0x4341_5245, id.index]);
    let age0 = id.age_on(window.start);
    let female = id.sex == Sex::Female;
    let mut chronic = Vec::new();
    for key in CHRONIC {
        let p_end = prevalence(key, age0 + (window.days() / 365) as i32, id.sex);
        let p0 = prevalence(key, age0, id.sex);
        let x = rng.f64();
        if x < p0 {
            let onset = add_days(window.start, -rng.range(60, 365 * 12));
            let onset = onset.max(add_days(id.birth, 365 * 3));
            chronic.push((codes::disease(key), onset));
        } else if x < p_end.max(p0) {
            chronic.push((codes::disease(key), window.random_day(&mut rng)));
        }
    }
    let has = |k: &str| chronic.iter().any(|(d, _)| d.key == k);
    let height =
        if female { rng.normal(156.0, 6.0) } else { rng.normal(169.0, 6.5) } - if age0 > 70 { 3.0 } else { 0.0 };
    let bmi = rng.normal(22.5, 3.2) + if has("dm2") { 2.5 } else { 0.0 };
    let latent = Latent {
        hba1c: if has("dm2") { rng.normal(7.8, 0.9) } else { rng.normal(5.5, 0.3) },
        ldl: if has("dyslipidemia") { rng.normal(168.0, 22.0) } else { rng.normal(118.0, 25.0) },
        hdl: rng.normal(if female { 64.0 } else { 54.0 }, 12.0),
        tg: (rng.normal(4.7, 0.45)).exp() + if has("dm2") { 40.0 } else { 0.0 },
        egfr: if has("ckd") {
            rng.normal(48.0, 9.0)
        } else {
            (105.0 - 0.75 * f64::from(age0.max(20) - 20) + rng.normal(0.0, 10.0)).max(45.0)
        },
        egfr_slope: if has("ckd") { rng.normal(-3.0, 1.2) } else { -0.5 },
        ua: if has("hyperuricemia") {
            rng.normal(8.4, 0.7)
        } else if female {
            rng.normal(4.6, 0.9)
        } else {
            rng.normal(6.0, 1.0)
        },
        ast: rng.normal(22.0, 5.0),
        alt: rng.normal(20.0, 8.0).max(7.0),
        hb: if female { rng.normal(12.9, 1.0) } else { rng.normal(14.6, 1.1) } - if has("ckd") { 1.2 } else { 0.0 },
        height,
        bmi,
        sbp: 112.0 + 0.45 * f64::from((age0 - 30).max(0)) + rng.normal(0.0, 10.0) + if has("htn") { 18.0 } else { 0.0 },
    };
    let mut carriers = Vec::new();
    for (k, p) in
        [("hbv", 0.008), ("hcv", if age0 >= 50 { 0.008 } else { 0.002 }), ("syphilis", 0.0005), ("hiv", 0.0002)]
    {
        if rng.chance(p) {
            carriers.push(k);
        }
    }
    let mut ctx = Ctx {
        region,
        id,
        window,
        latent,
        chronic,
        encounters: Vec::new(),
        pharmacy_for: Vec::new(),
        carriers,
        seen: Vec::new(),
    };
    chronic_care(&mut ctx, &mut rng);
    acute_care(&mut ctx, &mut rng);
    dental_care(&mut ctx, &mut rng);
    admissions(&mut ctx, &mut rng);
    checkups(&mut ctx, &mut rng);
    // Dispensing follows its prescription; this also sorts encounters by date, fixing indices.
    dispensing(&mut ctx, &mut rng);
    let mut seen: Vec<u32> = Vec::new();
    for e in &mut ctx.encounters {
        e.first = !seen.contains(&e.facility);
        if e.first {
            seen.push(e.facility);
        }
    }
    ctx.seen = seen;
    let mut allergies = Vec::new();
    let mut arng = Rng::new(seed, &[0x414c_4c45_5247, id.index]);
    for (cat, p) in [("food", 0.08), ("environment", 0.15), ("medication", 0.05)] {
        if arng.chance(p) {
            let list: Vec<&'static codes::Allergen> = codes::ALLERGENS.iter().filter(|a| a.category == cat).collect();
            let a = list[arng.index(list.len())];
            allergies.push(Allergy {
                allergen: a,
                since: add_days(id.birth, arng.range(365, 365 * i64::from(age0.max(2)))),
            });
        }
    }
    CareHistory { encounters: ctx.encounters, allergies, carriers: ctx.carriers }
}

impl Ctx<'_> {
    fn area_on(&self, d: Date) -> u16 {
        self.id.address_on(d).area
    }

    /// A facility of a kind in the area of the address on `d`, chosen stably per (person, purpose).
    fn pick_in_area(&self, d: Date, kind: FacilityType, purpose: u64, dept: Option<&str>) -> Option<u32> {
        let area = self.area_on(d) as usize;
        let af = self.region.by_area.get(area)?;
        let list: &[u32] = match kind {
            FacilityType::Hospital => &af.hospitals,
            FacilityType::Clinic => &af.clinics,
            FacilityType::DentalClinic => &af.dental,
            FacilityType::Pharmacy => &af.pharmacies,
            FacilityType::Lab => return self.region.lab_of(self.region.areas[area].prefecture).map(|f| f.index),
        };
        let filtered: Vec<u32> = match dept {
            Some(dc) => list.iter().copied().filter(|i| self.region.facility(*i).departments.contains(&dc)).collect(),
            None => list.to_vec(),
        };
        let pool = if filtered.is_empty() { list.to_vec() } else { filtered };
        if pool.is_empty() {
            return None;
        }
        let h = crate::rng::key(self.id.index, &[purpose, area as u64, u64::from(kind as u8)]);
        Some(pool[(h % pool.len() as u64) as usize])
    }

    fn home_clinic(&self, d: Date) -> Option<u32> {
        self.pick_in_area(d, FacilityType::Clinic, 1, Some("01"))
    }

    fn main_hospital(&self, d: Date, rng: &mut Rng) -> Option<u32> {
        let area = self.area_on(d) as usize;
        let hs = &self.region.by_area.get(area)?.hospitals;
        if hs.is_empty() {
            return None;
        }
        if rng.chance(0.7) { hs.first().copied() } else { Some(hs[rng.index(hs.len())]) }
    }

    fn clinician(&self, facility: u32, dept: &str) -> u32 {
        let start = self.region.user_start.get(facility as usize).copied().unwrap_or(0);
        self.region
            .clinician(facility, dept)
            .and_then(|u| self.region.users_of(facility).iter().position(|x| std::ptr::eq(x, u)))
            .map(|p| start + p as u32)
            .unwrap_or(start)
    }

    fn encounter(&self, facility: u32, date: Date, kind: EncounterKind, dept: &'static str) -> Encounter {
        Encounter {
            facility,
            date,
            end: None,
            kind,
            dept,
            clinician: self.clinician(facility, dept),
            first: false,
            diagnoses: Vec::new(),
            labs: Vec::new(),
            stay_labs: Vec::new(),
            prescriptions: Vec::new(),
            injections: Vec::new(),
            studies: Vec::new(),
            referral: None,
            prescribed_by: None,
            checkup: None,
        }
    }

    fn age(&self, d: Date) -> i32 {
        age_on(self.id.birth, d)
    }

    fn years_since_start(&self, d: Date) -> f64 {
        days_between(self.window.start, d) as f64 / 365.0
    }

    fn hba1c(&self, d: Date, treated_since: Option<Date>, rng: &mut Rng) -> f64 {
        let base = self.latent.hba1c;
        let v = match treated_since {
            Some(t) if d >= t => {
                let k = (-(days_between(t, d) as f64) / 150.0).exp();
                7.0 + (base - 7.0) * k + 0.15 * (self.years_since_start(d) * 1.3).sin()
            }
            _ => base + 0.1 * self.years_since_start(d),
        };
        (v + rng.normal(0.0, 0.2)).clamp(4.5, 13.5)
    }

    fn egfr(&self, d: Date, rng: &mut Rng) -> f64 {
        (self.latent.egfr + self.latent.egfr_slope * self.years_since_start(d) + rng.normal(0.0, 2.5)).clamp(6.0, 130.0)
    }

    /// Serum creatinine from eGFR with the Japanese equation (eGFR = 194·Cr^−1.094·Age^−0.287, ×0.739 for women).
    fn creatinine(&self, egfr: f64, d: Date) -> f64 {
        let age = f64::from(self.age(d).max(18));
        let f = if self.id.sex == Sex::Female { 0.739 } else { 1.0 };
        (egfr / (194.0 * age.powf(-0.287) * f)).powf(-1.0 / 1.094)
    }

    fn lab(&self, key: &str, d: Date, rng: &mut Rng, sick: f64) -> LabResult {
        let lab = codes::lab_item(key);
        let v = match key {
            "HbA1c-NGSP" => self.hba1c(d, self.treated_since("dm2"), rng),
            "BS" => 28.7 * self.hba1c(d, self.treated_since("dm2"), rng) - 46.7 + rng.normal(0.0, 12.0),
            "eGFR" => self.egfr(d, rng),
            "Cre" => self.creatinine(self.egfr(d, rng), d),
            "BUN" => 14.0 + (60.0 - self.egfr(d, rng)).max(0.0) * 0.45 + rng.normal(0.0, 2.5),
            "UA" => {
                let treated = self.treated_since("hyperuricemia").is_some_and(|t| d > add_days(t, 60));
                if treated { rng.normal(6.0, 0.5) } else { self.latent.ua + rng.normal(0.0, 0.4) }
            }
            "K" => rng.normal(4.2, 0.3) + if self.egfr(d, rng) < 45.0 { 0.4 } else { 0.0 },
            "Na" => rng.normal(141.0, 1.8),
            "LDL-C" => {
                let treated = self.treated_since("dyslipidemia").is_some_and(|t| d > add_days(t, 60));
                (if treated { self.latent.ldl * 0.62 } else { self.latent.ldl }) + rng.normal(0.0, 9.0)
            }
            "HDL-C" => self.latent.hdl + rng.normal(0.0, 4.0),
            "TG" => self.latent.tg * rng.normal(1.0, 0.15).max(0.4),
            "AST" => {
                self.latent.ast * (1.0 + sick * 0.3)
                    + rng.normal(0.0, 3.0)
                    + if self.carriers.contains(&"hcv") { 25.0 } else { 0.0 }
            }
            "ALT" => {
                self.latent.alt * (1.0 + sick * 0.3)
                    + rng.normal(0.0, 3.0)
                    + if self.carriers.contains(&"hcv") { 30.0 } else { 0.0 }
            }
            "GGT" => rng.normal(28.0, 12.0).max(8.0),
            "ALB" => rng.normal(4.3, 0.25) - sick * 0.6,
            "CRP" => {
                if sick > 0.0 {
                    (sick * rng.normal(9.0, 3.0)).max(0.3)
                } else {
                    rng.normal(0.06, 0.04).max(0.01)
                }
            }
            "WBC" => rng.normal(6000.0, 1300.0) * (1.0 + sick * 0.8),
            "Hb" => self.latent.hb + rng.normal(0.0, 0.4) - sick * 0.5,
            "PLT" => rng.normal(24.0, 5.0),
            "BNP" => {
                if self.chronic.iter().any(|(d, _)| d.key == "hf") || sick > 1.5 {
                    rng.normal(650.0, 250.0).max(120.0)
                } else {
                    rng.normal(16.0, 8.0).max(2.0)
                }
            }
            "CK" => rng.normal(110.0, 35.0) * if sick > 1.9 { 12.0 } else { 1.0 },
            "U-TP" => return LabResult { lab, value: Value::Qual(self.egfr(d, rng) < 45.0 && rng.chance(0.6)) },
            "HBs-AG-RESULT" => return LabResult { lab, value: Value::Qual(self.carriers.contains(&"hbv")) },
            "HCV-AB-RESULT" => return LabResult { lab, value: Value::Qual(self.carriers.contains(&"hcv")) },
            "TP-RESULT" | "STS-QLRESULT" => {
                return LabResult { lab, value: Value::Qual(self.carriers.contains(&"syphilis")) };
            }
            "HIV-1P2-AB-P24-RESULT" => return LabResult { lab, value: Value::Qual(self.carriers.contains(&"hiv")) },
            _ => rng.normal((lab.range.0 + lab.range.1) / 2.0, (lab.range.1 - lab.range.0) / 6.0),
        };
        let p = 10f64.powi(i32::from(lab.decimals));
        LabResult { lab, value: Value::Num(((v.max(0.0)) * p).round() / p) }
    }

    fn treated_since(&self, key: &str) -> Option<Date> {
        self.chronic
            .iter()
            .find(|(d, _)| d.key == key)
            .map(|(_, onset)| (*onset).max(add_days(self.window.start, -3650)))
    }
}

fn chronic_drugs(key: &str, rng_val: u64, hba1c: f64) -> Vec<&'static str> {
    match key {
        "dm2" => {
            let mut v = vec!["metformin"];
            if hba1c > 7.5 {
                v.push(if rng_val.is_multiple_of(2) { "sitagliptin" } else { "dapagliflozin" });
            }
            v
        }
        "htn" => {
            if rng_val.is_multiple_of(3) {
                vec!["amlodipine", "olmesartan"]
            } else if rng_val % 3 == 1 {
                vec!["amlodipine"]
            } else {
                vec!["olmesartan"]
            }
        }
        "dyslipidemia" => vec![if rng_val.is_multiple_of(2) { "rosuvastatin" } else { "atorvastatin" }],
        "ckd" => vec![],
        "asthma" => vec!["budesonide", "montelukast"],
        "hyperuricemia" => vec!["febuxostat"],
        "osteoporosis" => vec!["alendronate"],
        "gerd" => vec!["vonoprazan"],
        "af" => vec!["apixaban", "bisoprolol"],
        "angina" => vec!["nitro"],
        "rhinitis" => vec!["fexofenadine"],
        "insomnia" => vec!["lemborexant"],
        _ => vec![],
    }
}

fn chronic_labs(key: &str, visit_no: u32) -> Vec<&'static str> {
    match key {
        "dm2" => {
            let mut v = vec!["HbA1c-NGSP", "BS"];
            if visit_no.is_multiple_of(3) {
                v.extend(["Cre", "eGFR", "AST", "ALT", "TG", "LDL-C", "HDL-C"]);
            }
            v
        }
        "dyslipidemia" if visit_no % 3 == 1 => vec!["LDL-C", "HDL-C", "TG", "AST", "ALT"],
        "htn" if visit_no % 6 == 2 => vec!["Cre", "eGFR", "K", "Na"],
        "ckd" if visit_no.is_multiple_of(2) => vec!["Cre", "eGFR", "BUN", "K", "Hb", "U-TP"],
        "hyperuricemia" if visit_no.is_multiple_of(3) => vec!["UA", "Cre", "eGFR"],
        "af" if visit_no % 6 == 3 => vec!["Hb", "Cre", "eGFR"],
        _ => vec![],
    }
}

fn chronic_care(ctx: &mut Ctx, rng: &mut Rng) {
    if ctx.chronic.is_empty() {
        return;
    }
    let region = ctx.region;
    // Complex patients are followed at a hospital; the others at their home clinic.
    let at_hospital = ctx.chronic.iter().any(|(d, _)| matches!(d.key, "ckd" | "af" | "angina")) && rng.chance(0.35);
    let mut day = ctx.window.start;
    let first_onset = ctx.chronic.iter().map(|(_, o)| *o).min().unwrap_or(day);
    if first_onset > day {
        day = first_onset;
    }
    let interval: u32 = [28, 56, 84][rng.weighted(&[0.3, 0.5, 0.2])];
    let mut visit_no = 0u32;
    let mut current: Option<u32> = None;
    let drug_seed = rng.u64();
    while day < ctx.window.end {
        let facility = if at_hospital {
            ctx.main_hospital(day, &mut Rng::new(drug_seed, &[u64::from(ctx.area_on(day))]))
        } else {
            ctx.home_clinic(day)
        };
        let Some(facility) = facility else { break };
        let dept =
            if at_hospital { "01" } else { region.facility(facility).departments.first().copied().unwrap_or("01") };
        // A move to another area: the old doctor writes a referral to the new one.
        if let Some(prev) = current
            && prev != facility
            && let Some(last) =
                ctx.encounters.iter_mut().rev().find(|e| e.facility == prev && e.kind == EncounterKind::Outpatient)
        {
            last.referral = Some(Referral {
                to: facility,
                purpose: "転居に伴う継続加療のお願い".to_owned(),
                discharge_summary_of: None,
            });
        }
        current = Some(facility);
        let active: Vec<(&'static Disease, Date)> = ctx.chronic.iter().copied().filter(|(_, o)| *o <= day).collect();
        if active.is_empty() {
            day = add_days(day, 30);
            continue;
        }
        let mut e = ctx.encounter(facility, day, EncounterKind::Outpatient, dept);
        let hba1c_now = ctx.hba1c(day, ctx.treated_since("dm2"), rng);
        for (i, (d, onset)) in active.iter().enumerate() {
            // Seasonal allergic rhinitis is seen only in spring.
            if d.key == "rhinitis" && !(2..=4).contains(&(day.month() as u8)) {
                continue;
            }
            e.diagnoses.push(Dx { disease: d, onset: *onset, main: i == 0, resolved: None });
            for key in chronic_drugs(d.key, drug_seed.rotate_left(i as u32), hba1c_now) {
                let drug = codes::drug(key);
                let days = if drug.form == Form::AsNeeded { 10 } else { interval };
                e.prescriptions.push(Rx { drug, days, per_day: drug.per_day });
            }
            for key in chronic_labs(d.key, visit_no) {
                if !e.labs.iter().any(|l| l.lab.key == key) {
                    let r = ctx.lab(key, day, rng, 0.0);
                    e.labs.push(r);
                }
            }
        }
        if !e.diagnoses.is_empty() {
            ctx.encounters.push(e);
            visit_no += 1;
        }
        day = add_days(day, i64::from(interval) + rng.range(-3, 4));
    }
}

fn acute_care(ctx: &mut Ctx, rng: &mut Rng) {
    let age0 = ctx.age(ctx.window.start);
    let rate = match age0 {
        0..=5 => 2.5,
        6..=14 => 1.3,
        15..=64 => 0.55,
        _ => 0.75,
    };
    let n = poisson(rng, rate * ctx.window.days() as f64 / 365.0);
    for _ in 0..n {
        let day = ctx.window.random_day(rng);
        let age = ctx.age(day);
        let month = day.month() as u8;
        let winter = matches!(month, 12 | 1 | 2 | 3);
        let choices: &[(&str, f64)] = &[
            ("uri", 4.0),
            ("influenza", if winter { 2.0 } else { 0.1 }),
            ("gastroenteritis", 1.5),
            ("bronchitis", 1.0),
            ("cystitis", if ctx.id.sex == Sex::Female && age > 15 { 0.8 } else { 0.0 }),
            ("lumbago", if age > 25 { 1.0 } else { 0.0 }),
            ("eczema", 0.7),
            ("conjunctivitis", if (3..=5).contains(&month) { 0.8 } else { 0.2 }),
            ("zoster", if age >= 50 { 0.4 } else { 0.02 }),
            ("covid", 0.6),
            ("sprain", if age < 60 { 0.5 } else { 0.1 }),
            ("pharyngitis", 0.8),
            ("gastritis", if age > 20 { 0.5 } else { 0.0 }),
        ];
        let w: Vec<f64> = choices.iter().map(|c| c.1).collect();
        let key = choices[rng.weighted(&w)].0;
        let disease = codes::disease(key);
        let dept = match key {
            "lumbago" | "sprain" => "11",
            "eczema" | "zoster" => "19",
            "conjunctivitis" => "26",
            "pharyngitis" => "27",
            "cystitis" => "20",
            _ if age < 15 => "09",
            _ => "01",
        };
        let facility = if rng.chance(0.08) {
            ctx.main_hospital(day, rng)
        } else if dept == "01" && rng.chance(0.7) {
            ctx.home_clinic(day)
        } else {
            ctx.pick_in_area(day, FacilityType::Clinic, 100 + u64::from(dept.as_bytes()[1]), Some(dept))
        };
        let Some(facility) = facility else { continue };
        let dept = if ctx.region.facility(facility).departments.contains(&dept) {
            dept
        } else {
            ctx.region.facility(facility).departments.first().copied().unwrap_or("01")
        };
        let mut e = ctx.encounter(facility, day, EncounterKind::Outpatient, dept);
        let resolved = add_days(day, rng.range(5, 14));
        e.diagnoses.push(Dx { disease, onset: day, main: true, resolved: Some(resolved) });
        let days = rng.range(3, 7) as u32;
        let drugs: &[&str] = match key {
            "uri" | "pharyngitis" => &["calonal_prn", "carbocisteine"],
            "influenza" => &["oseltamivir", "calonal_prn"],
            "gastroenteritis" => &["miyabm"],
            "bronchitis" => &["carbocisteine", "cefcapene"],
            "cystitis" => &["levofloxacin"],
            "lumbago" | "sprain" => &["loxoprofen", "rebamipide"],
            "eczema" => &["heparinoid"],
            "zoster" => &["valacyclovir", "calonal"],
            "covid" => &["calonal_prn"],
            "gastritis" => &["rebamipide"],
            _ => &[],
        };
        for k in drugs {
            let drug = codes::drug(k);
            let per_day =
                if age < 12 && drug.form == Form::Oral { (drug.per_day / 2.0).max(1.0) } else { drug.per_day };
            e.prescriptions.push(Rx { drug, days: if drug.form == Form::AsNeeded { 5 } else { days }, per_day });
        }
        if matches!(key, "bronchitis" | "influenza" | "covid") && rng.chance(0.3) {
            for k in ["WBC", "CRP"] {
                let r = ctx.lab(k, day, rng, 0.4);
                e.labs.push(r);
            }
        }
        ctx.encounters.push(e);
    }
}

fn dental_care(ctx: &mut Ctx, rng: &mut Rng) {
    let years = (ctx.window.days() / 365).max(1);
    for y in 0..years {
        if !rng.chance(0.33) {
            continue;
        }
        let start = add_days(ctx.window.start, y * 365 + rng.range(0, 330));
        let Some(f) = ctx.pick_in_area(start, FacilityType::DentalClinic, 2, None) else { continue };
        let age = ctx.age(start);
        let key = if age >= 40 && rng.chance(0.55) {
            "perio"
        } else if rng.chance(0.15) {
            "pulpitis"
        } else {
            "caries"
        };
        let d = codes::disease(key);
        let visits = rng.range(2, 4);
        for v in 0..visits {
            let day = add_days(start, v * 7);
            if day >= ctx.window.end {
                break;
            }
            let mut e = ctx.encounter(f, day, EncounterKind::Dental, "40");
            e.diagnoses.push(Dx {
                disease: d,
                onset: start,
                main: true,
                resolved: if v == visits - 1 { Some(day) } else { None },
            });
            if v == 0 && key == "pulpitis" {
                e.prescriptions.push(Rx { drug: codes::drug("loxoprofen"), days: 3, per_day: 3.0 });
            }
            ctx.encounters.push(e);
        }
    }
}

fn poisson(rng: &mut Rng, lambda: f64) -> u32 {
    let l = (-lambda).exp();
    let (mut k, mut p) = (0u32, 1.0);
    loop {
        p *= rng.f64();
        if p <= l || k > 60 {
            return k;
        }
        k += 1;
    }
}

fn admissions(ctx: &mut Ctx, rng: &mut Rng) {
    let age0 = ctx.age(ctx.window.start);
    let rate = match age0 {
        0..=14 => 0.01,
        15..=64 => 0.015,
        65..=74 => 0.05,
        _ => 0.11,
    };
    let n = poisson(rng, rate * ctx.window.days() as f64 / 365.0).min(3);
    let has = |ctx: &Ctx, k: &str| ctx.chronic.iter().any(|(d, _)| d.key == k);
    for _ in 0..n {
        let day = ctx.window.random_day(rng);
        if add_days(day, 40) >= ctx.window.end {
            continue;
        }
        if ctx
            .encounters
            .iter()
            .any(|e| e.kind == EncounterKind::Inpatient && e.end.is_some_and(|end| end >= add_days(day, -30)))
        {
            continue;
        }
        let age = ctx.age(day);
        let female = ctx.id.sex == Sex::Female;
        let choices: Vec<(&str, f64)> = vec![
            ("pneumonia", if age >= 65 { 3.0 } else { 0.8 }),
            ("aspiration", if age >= 80 { 1.5 } else { 0.0 }),
            (
                "ami",
                if age >= 45 {
                    (if female { 0.4 } else { 1.0 }) * (1.0 + f64::from(u8::from(has(ctx, "htn") || has(ctx, "dm2"))))
                } else {
                    0.0
                },
            ),
            ("stroke", if age >= 50 { 1.0 + f64::from(u8::from(has(ctx, "af") || has(ctx, "htn"))) } else { 0.05 }),
            ("hipfx", if age >= 70 { if female { 2.0 } else { 0.6 } } else { 0.0 }),
            ("appendicitis", if age < 40 { 2.0 } else { 0.3 }),
            ("cholecystitis", if (30..80).contains(&age) { 0.8 } else { 0.2 }),
            ("hf", if age >= 70 { 1.0 + f64::from(u8::from(has(ctx, "af"))) } else { 0.0 }),
            ("polyp", if age >= 45 { 1.2 } else { 0.0 }),
        ];
        let w: Vec<f64> = choices.iter().map(|c| c.1).collect();
        if w.iter().sum::<f64>() <= 0.0 {
            continue;
        }
        let key = choices[rng.weighted(&w)].0;
        let disease = codes::disease(key);
        let Some(hospital) = ctx.main_hospital(day, rng) else { continue };
        let dept = disease.dept;
        let dept = if ctx.region.facility(hospital).departments.contains(&dept) { dept } else { "01" };
        let planned = matches!(key, "polyp") || (key == "cholecystitis" && rng.chance(0.3));
        let home = ctx.home_clinic(day);
        let mut adm_day = day;
        if planned {
            // The home clinic refers; the hospital sees the patient, then admits.
            if let Some(clinic) = home {
                let mut r = ctx.encounter(clinic, add_days(day, -21), EncounterKind::Outpatient, "01");
                r.diagnoses.push(Dx { disease, onset: add_days(day, -21), main: true, resolved: None });
                r.referral = Some(Referral {
                    to: hospital,
                    purpose: format!("{}の精査・加療のお願い", disease.name),
                    discharge_summary_of: None,
                });
                ctx.encounters.push(r);
            }
            let mut pre = ctx.encounter(hospital, add_days(day, -14), EncounterKind::Outpatient, dept);
            pre.diagnoses.push(Dx { disease, onset: add_days(day, -21), main: true, resolved: None });
            for k in ["WBC", "Hb", "PLT", "CRP", "AST", "ALT", "Cre", "eGFR"] {
                let l = ctx.lab(k, pre.date, rng, 0.0);
                pre.labs.push(l);
            }
            ctx.encounters.push(pre);
        } else {
            adm_day = day;
        }
        let los: i64 = match key {
            "polyp" => rng.range(2, 3),
            "appendicitis" => rng.range(5, 8),
            "cholecystitis" => rng.range(7, 12),
            "pneumonia" => rng.range(8, 16),
            "aspiration" => rng.range(12, 25),
            "ami" => rng.range(10, 16),
            "stroke" => rng.range(18, 35),
            "hipfx" => rng.range(20, 35),
            _ => rng.range(12, 20),
        };
        let discharge = add_days(adm_day, los);
        let severity = match key {
            "polyp" => 0.0,
            "ami" => 2.0,
            "pneumonia" | "aspiration" => 1.6,
            "hf" => 1.6,
            _ => 1.0,
        };
        let mut e = ctx.encounter(hospital, adm_day, EncounterKind::Inpatient, dept);
        e.end = Some(discharge);
        e.diagnoses.push(Dx {
            disease,
            onset: adm_day,
            main: true,
            resolved: if key == "polyp" || key == "appendicitis" || key == "cholecystitis" || key == "pneumonia" {
                Some(discharge)
            } else {
                None
            },
        });
        for (d, onset) in ctx.chronic.iter().filter(|(_, o)| *o <= adm_day).take(3) {
            e.diagnoses.push(Dx { disease: d, onset: *onset, main: false, resolved: None });
        }
        for k in ["WBC", "Hb", "PLT", "CRP", "AST", "ALT", "ALB", "BUN", "Cre", "eGFR", "Na", "K"] {
            let l = ctx.lab(k, adm_day, rng, severity);
            e.labs.push(l);
        }
        if key == "hf" || key == "ami" {
            let l = ctx.lab("BNP", adm_day, rng, severity);
            e.labs.push(l);
            let l = ctx.lab("CK", adm_day, rng, severity);
            e.labs.push(l);
        }
        for k in ["HBs-AG-RESULT", "HCV-AB-RESULT", "TP-RESULT", "STS-QLRESULT", "HIV-1P2-AB-P24-RESULT"] {
            let l = ctx.lab(k, adm_day, rng, 0.0);
            e.labs.push(l);
        }
        for (i, frac) in [(1u8, 0.5), (2, 0.1)] {
            let d = if i == 1 { add_days(adm_day, (los / 2).max(1)) } else { add_days(discharge, -1) };
            let panel: Vec<LabResult> =
                ["WBC", "Hb", "CRP", "Cre", "eGFR"].iter().map(|k| ctx.lab(k, d, rng, severity * frac)).collect();
            e.stay_labs.push((d, panel));
        }
        match key {
            "pneumonia" | "aspiration" => {
                let abx = if rng.chance(0.5) { "ceftriaxone" } else { "ampsul" };
                e.injections.push(Rx {
                    drug: codes::drug(abx),
                    days: (los as u32).min(7),
                    per_day: codes::drug(abx).per_day,
                });
                e.injections.push(Rx { drug: codes::drug("solita"), days: 3, per_day: 2.0 });
                e.studies.push(("OMG-01", "胸部Ｘ線単純撮影", "CR"));
            }
            "stroke" => {
                e.injections.push(Rx { drug: codes::drug("solita"), days: 5, per_day: 2.0 });
                e.studies.push(("OMG-01", "頭部ＭＲＩ", "MR"));
            }
            "ami" | "hf" => {
                e.injections.push(Rx { drug: codes::drug("heparin"), days: 3, per_day: 2.0 });
                e.studies.push(("OMG-03", "標準１２誘導心電図", "ECG"));
                e.studies.push(("OMG-01", "胸部Ｘ線単純撮影", "CR"));
            }
            "polyp" => e.studies.push(("OMG-02", "大腸内視鏡検査", "ES")),
            _ => {
                e.injections.push(Rx { drug: codes::drug("solita"), days: 2, per_day: 2.0 });
                e.studies.push(("OMG-01", "腹部ＣＴ", "CT"));
            }
        }
        // Discharge medication: the chronic drugs plus what the admission needs.
        match key {
            "ami" => {
                for k in ["atorvastatin", "bisoprolol", "nitro"] {
                    let d = codes::drug(k);
                    e.prescriptions.push(Rx {
                        drug: d,
                        days: if d.form == Form::AsNeeded { 10 } else { 14 },
                        per_day: d.per_day,
                    });
                }
            }
            "stroke" | "hf" => {
                for k in ["apixaban", "amlodipine"] {
                    let d = codes::drug(k);
                    e.prescriptions.push(Rx { drug: d, days: 14, per_day: d.per_day });
                }
            }
            "pneumonia" | "aspiration" => {
                e.prescriptions.push(Rx { drug: codes::drug("carbocisteine"), days: 7, per_day: 3.0 })
            }
            "hipfx" => e.prescriptions.push(Rx { drug: codes::drug("loxoprofen"), days: 14, per_day: 3.0 }),
            _ => {}
        }
        let adm_index = ctx.encounters.len();
        // Discharge: a referral back to the home clinic with the discharge summary attached.
        let back_to = home.filter(|_| !matches!(key, "appendicitis") || rng.chance(0.5));
        if let Some(clinic) = back_to {
            e.referral = Some(Referral {
                to: clinic,
                purpose: format!("{}にて入院加療しました。退院後の継続加療をお願いします。", disease.name),
                discharge_summary_of: Some(adm_index),
            });
        }
        ctx.encounters.push(e);
        // Follow-up outpatient visit two weeks later.
        let fu = add_days(discharge, 14);
        if fu < ctx.window.end {
            let mut f = ctx.encounter(hospital, fu, EncounterKind::Outpatient, dept);
            f.diagnoses.push(Dx { disease, onset: adm_day, main: true, resolved: Some(fu) });
            for k in ["WBC", "CRP", "Hb"] {
                let l = ctx.lab(k, fu, rng, 0.0);
                f.labs.push(l);
            }
            ctx.encounters.push(f);
        }
    }
}

fn checkups(ctx: &mut Ctx, rng: &mut Rng) {
    let years = (ctx.window.days() / 365).max(1);
    for y in 0..years {
        let day = add_days(ctx.window.start, y * 365 + rng.range(90, 300));
        if day >= ctx.window.end {
            continue;
        }
        let age = ctx.age(day);
        let employed =
            ctx.id.insurance_on(day).principal && !ctx.id.insurance_on(day).id.insurer().as_str().starts_with("00");
        let p = match age {
            0..=19 => 0.0,
            20..=39 => {
                if employed {
                    0.5
                } else {
                    0.05
                }
            }
            40..=74 => 0.45,
            _ => 0.2,
        };
        if !rng.chance(p) {
            continue;
        }
        let prefecture = ctx.id.address_on(day).prefecture;
        let Some(lab) = ctx.region.lab_of(prefecture).map(|f| f.index) else { continue };
        let mut e = ctx.encounter(lab, day, EncounterKind::Checkup, "01");
        let w = ctx.latent.bmi * (ctx.latent.height / 100.0).powi(2) * rng.normal(1.0, 0.02);
        let bmi = w / (ctx.latent.height / 100.0).powi(2);
        let treated_bp = ctx.treated_since("htn").is_some_and(|t| t < day);
        let sbp = ctx.latent.sbp - if treated_bp { 12.0 } else { 0.0 } + rng.normal(0.0, 6.0);
        e.checkup = Some(Checkup {
            height: (ctx.latent.height * 10.0).round() / 10.0,
            weight: (w * 10.0).round() / 10.0,
            waist: ((60.0 + (bmi - 18.0) * 2.6 + rng.normal(0.0, 3.0)) * 10.0).round() / 10.0,
            bp: (sbp.round() as u32, (sbp * 0.62 + rng.normal(0.0, 4.0)).round() as u32),
        });
        for k in ["TG", "HDL-C", "LDL-C", "AST", "ALT", "GGT", "HbA1c-NGSP"] {
            let l = ctx.lab(k, day, rng, 0.0);
            e.labs.push(l);
        }
        ctx.encounters.push(e);
    }
}

fn dispensing(ctx: &mut Ctx, rng: &mut Rng) {
    let mut out = Vec::new();
    for (i, e) in ctx.encounters.iter().enumerate() {
        if e.prescriptions.is_empty() || e.kind == EncounterKind::Dispensing {
            continue;
        }
        let f = ctx.region.facility(e.facility);
        if !f.outside_prescription || e.kind == EncounterKind::Dental {
            continue;
        }
        // One pharmacy per prescriber (門前 or かかりつけ), near the prescriber.
        let pharmacy = match ctx.pharmacy_for.iter().find(|(p, _)| *p == e.facility) {
            Some((_, ph)) => *ph,
            None => {
                let area = f.area as usize;
                let list = &ctx.region.by_area[area].pharmacies;
                if list.is_empty() {
                    continue;
                }
                let h = crate::rng::key(ctx.id.index, &[u64::from(e.facility), 7]);
                let ph = list[(h % list.len() as u64) as usize];
                ctx.pharmacy_for.push((e.facility, ph));
                ph
            }
        };
        let date = match e.end {
            Some(end) => end,
            None => {
                if rng.chance(0.9) {
                    e.date
                } else {
                    add_days(e.date, 1)
                }
            }
        };
        let mut d = ctx.encounter(pharmacy, date, EncounterKind::Dispensing, "01");
        d.prescriptions = e.prescriptions.clone();
        d.diagnoses = Vec::new();
        d.prescribed_by = Some((e.facility, i));
        out.push(d);
    }
    ctx.encounters.extend(out);
    // Keep prescribing encounters' indices valid: stable sort puts dispensing after the
    // prescriptions of the same day (kind order), then fix the links.
    let order: Vec<usize> = {
        let mut idx: Vec<usize> = (0..ctx.encounters.len()).collect();
        idx.sort_by(|a, b| {
            let (x, y) = (&ctx.encounters[*a], &ctx.encounters[*b]);
            x.date
                .cmp(&y.date)
                .then((x.kind == EncounterKind::Dispensing).cmp(&(y.kind == EncounterKind::Dispensing)))
                .then(a.cmp(b))
        });
        idx
    };
    let mut new_pos = vec![0usize; order.len()];
    for (newi, old) in order.iter().enumerate() {
        new_pos[*old] = newi;
    }
    let mut sorted: Vec<Encounter> = order.iter().map(|i| ctx.encounters[*i].clone()).collect();
    for e in &mut sorted {
        if let Some((f, i)) = e.prescribed_by {
            e.prescribed_by = Some((f, new_pos[i]));
        }
        if let Some(r) = &mut e.referral
            && let Some(a) = r.discharge_summary_of
        {
            r.discharge_summary_of = Some(new_pos[a]);
        }
    }
    ctx.encounters = sorted;
}
