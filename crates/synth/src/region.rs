//! The region: prefectures, 二次医療圏, facilities of every kind with valid 医療機関コード,
//! insurers with valid 保険者番号, and the users of each facility.
//!
//! Facility and insurer *names* are made up (built from place names and common words); codes
//! are valid by the real rules (Luhn check digit for facilities, the 保険者番号 check digit) but
//! belong to no real institution.

use musubi_domain::{FacilityCode, FacilityKind, InsurerNumber, Profession};
use serde::Serialize;

use crate::geo::{self, AREAS, City, PREFECTURES, TOWNS};
use crate::rng::Rng;

/// What kind of facility this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FacilityType {
    /// 病院 (20 beds or more).
    Hospital,
    /// 診療所 (medical clinic).
    Clinic,
    /// 歯科診療所.
    DentalClinic,
    /// 保険薬局.
    Pharmacy,
    /// 健診・検査センター (checkups and outsourced lab work).
    Lab,
}

impl FacilityType {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            FacilityType::Hospital => "hospital",
            FacilityType::Clinic => "clinic",
            FacilityType::DentalClinic => "dental-clinic",
            FacilityType::Pharmacy => "pharmacy",
            FacilityType::Lab => "lab",
        }
    }
}

/// A facility of the region.
#[derive(Debug, Clone, Serialize)]
pub struct Facility {
    /// Index in [`Region::facilities`].
    pub index: u32,
    /// 医療機関コード (10 digits, valid check digit).
    pub code: FacilityCode,
    /// Name (synthetic).
    pub name: String,
    /// Kind.
    pub kind: FacilityType,
    /// Prefecture number.
    pub prefecture: u8,
    /// Index of its 二次医療圏 in [`Region::areas`].
    pub area: u16,
    /// Address text.
    pub address: String,
    /// Postal code.
    pub postal_code: String,
    /// Phone.
    pub phone: String,
    /// Beds (hospitals).
    pub beds: u16,
    /// Whether it discloses (開示) its data to the network.
    pub discloses: bool,
    /// Whether its staff view (閲覧) the network.
    pub views: bool,
    /// Whether it runs SS-MIX2 standardized storage (large hospitals).
    pub ssmix2: bool,
    /// Whether it is a DPC hospital.
    pub dpc: bool,
    /// Whether its EMR submits JP-CLINS FHIR (5情報 Bundles).
    pub fhir: bool,
    /// Whether it prescribes 院外処方 (most clinics and hospitals).
    pub outside_prescription: bool,
    /// Whether its registration system stores kana as half-width (old レセコン).
    pub halfwidth_kana: bool,
    /// Whether its system can store variant kanji (髙, 﨑 …); others fold them.
    pub stores_variants: bool,
    /// Departments (SS-MIX2 codes) it has.
    pub departments: Vec<&'static str>,
}

/// An insurer.
#[derive(Debug, Clone, Serialize)]
pub struct Insurer {
    /// Index in [`Region::insurers`].
    pub index: u32,
    /// 保険者番号 (valid check digit).
    #[serde(serialize_with = "ser_display")]
    pub number: InsurerNumber,
    /// Name (institutional names are generic; 組合 names are synthetic).
    pub name: String,
    /// Kind.
    pub kind: InsurerKind,
    /// Prefecture.
    pub prefecture: u8,
    /// For 国保 and 後期高齢者: the municipality it covers.
    pub city: Option<&'static str>,
}

/// Kinds of insurer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InsurerKind {
    /// 全国健康保険協会 (協会けんぽ), 法別 01.
    Kyokai,
    /// 健康保険組合, 法別 06.
    Kumiai,
    /// 共済組合, 法別 31–34.
    Kyosai,
    /// 国民健康保険 (市町村), six digits.
    Kokuho,
    /// 後期高齢者医療, 法別 39.
    Koki,
}

impl InsurerKind {
    /// Whether receipts for it go to 国保連 (2) rather than 支払基金 (1).
    pub fn reviewer(self) -> u8 {
        match self {
            InsurerKind::Kokuho | InsurerKind::Koki => 2,
            _ => 1,
        }
    }
}

/// A 二次医療圏 in the region.
#[derive(Debug, Clone, Serialize)]
pub struct Area {
    /// Index.
    pub index: u16,
    /// Prefecture number.
    pub prefecture: u8,
    /// Name.
    pub name: &'static str,
    /// Relative population weight.
    pub weight: u32,
    /// Municipalities.
    #[serde(skip)]
    pub cities: &'static [City],
}

/// A user account of a facility.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Facility index.
    pub facility: u32,
    /// Login name (unique in the region).
    pub login: String,
    /// Staff id inside the facility (used in documents and SS-MIX2 messages).
    pub staff_id: String,
    /// Kanji name `姓 名`.
    pub name: String,
    /// Kana name `セイ メイ`.
    pub kana: String,
    /// Profession.
    #[serde(serialize_with = "ser_profession")]
    pub profession: Profession,
    /// Department code (clinicians), if any.
    pub department: Option<&'static str>,
}

fn ser_display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ser_profession<S: serde::Serializer>(p: &Profession, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.code())
}

/// The whole region.
#[derive(Debug, Clone, Serialize)]
pub struct Region {
    /// The seed it was generated from.
    pub seed: u64,
    /// Prefectures (number, name).
    pub prefectures: Vec<(u8, &'static str)>,
    /// 二次医療圏.
    pub areas: Vec<Area>,
    /// Facilities.
    pub facilities: Vec<Facility>,
    /// Insurers.
    pub insurers: Vec<Insurer>,
    /// Users.
    pub users: Vec<User>,
    /// Facilities per area and kind (indices), for fast lookups.
    #[serde(skip)]
    pub by_area: Vec<AreaFacilities>,
    /// First user index of each facility (users are grouped by facility).
    #[serde(skip)]
    pub user_start: Vec<u32>,
}

/// Facility indices of one area by kind.
#[derive(Debug, Clone, Default)]
pub struct AreaFacilities {
    /// Hospitals (largest first).
    pub hospitals: Vec<u32>,
    /// Clinics.
    pub clinics: Vec<u32>,
    /// Dental clinics.
    pub dental: Vec<u32>,
    /// Pharmacies.
    pub pharmacies: Vec<u32>,
}

const HOSP_WORDS: &[&str] =
    &["中央病院", "総合病院", "市民病院", "記念病院", "医療センター", "共立病院", "協同病院", "第一病院"];
const CLINIC_WORDS: &[&str] =
    &["内科クリニック", "内科医院", "クリニック", "医院", "ファミリークリニック", "内科・循環器科", "診療所"];
const CLINIC_SPECIAL: &[(&str, &str)] =
    &[("整形外科", "11"), ("皮膚科", "19"), ("耳鼻咽喉科", "27"), ("眼科", "26"), ("小児科", "09"), ("泌尿器科", "20")];
const PHARMACY_BRANDS: &[&str] = &[
    "あおば薬局",
    "さくら調剤薬局",
    "ひまわり薬局",
    "みどり薬局",
    "すずらん薬局",
    "つばさ薬局",
    "こすもす薬局",
    "やまびこ薬局",
];

/// People per facility of each kind (Japan's national ratios, rounded).
const PER_HOSPITAL: f64 = 15_000.0;
const PER_CLINIC: f64 = 1_200.0;
const PER_DENTAL: f64 = 1_850.0;
const PER_PHARMACY: f64 = 2_000.0;

/// Generates the region for a seed and a population size (facility counts scale with it).
pub fn region(seed: u64, persons: u64) -> Region {
    let mut rng = Rng::new(seed, &[0x5245_4749_4f4e]); // "REGION"
    let total_weight: u32 = AREAS.iter().map(|a| a.weight).sum();
    let areas: Vec<Area> = AREAS
        .iter()
        .enumerate()
        .map(|(i, a)| Area {
            index: i as u16,
            prefecture: a.prefecture,
            name: a.name,
            weight: a.weight,
            cities: a.cities,
        })
        .collect();

    let mut facilities: Vec<Facility> = Vec::new();
    let mut serial: std::collections::BTreeMap<(u8, u8), u32> = std::collections::BTreeMap::new();
    let mut by_area = vec![AreaFacilities::default(); areas.len()];
    let mut used_names = std::collections::BTreeSet::new();

    for area in &areas {
        let pop = persons as f64 * f64::from(area.weight) / f64::from(total_weight);
        let n_h = ((pop / PER_HOSPITAL).round() as usize).max(1);
        let n_c = ((pop / PER_CLINIC).round() as usize).max(2);
        let n_d = ((pop / PER_DENTAL).round() as usize).max(1);
        let n_p = ((pop / PER_PHARMACY).round() as usize).max(1);
        for (kind, n) in [
            (FacilityType::Hospital, n_h),
            (FacilityType::Clinic, n_c),
            (FacilityType::DentalClinic, n_d),
            (FacilityType::Pharmacy, n_p),
        ] {
            for k in 0..n {
                let f = make_facility(&mut rng, facilities.len() as u32, area, kind, k, &mut serial, &mut used_names);
                match kind {
                    FacilityType::Hospital => by_area[area.index as usize].hospitals.push(f.index),
                    FacilityType::Clinic => by_area[area.index as usize].clinics.push(f.index),
                    FacilityType::DentalClinic => by_area[area.index as usize].dental.push(f.index),
                    FacilityType::Pharmacy => by_area[area.index as usize].pharmacies.push(f.index),
                    FacilityType::Lab => {}
                }
                facilities.push(f);
            }
        }
    }
    // One checkup and lab centre per prefecture.
    for (pref, pname) in PREFECTURES {
        if let Some(area) = areas.iter().filter(|a| a.prefecture == *pref).max_by_key(|a| a.weight) {
            let mut f = make_facility(
                &mut rng,
                facilities.len() as u32,
                area,
                FacilityType::Lab,
                0,
                &mut serial,
                &mut used_names,
            );
            f.name = format!("{}{}", pname.trim_end_matches('県'), "総合健診センター");
            facilities.push(f);
        }
    }
    // The largest hospital of each area sorts first (referrals and admissions go there).
    for af in &mut by_area {
        af.hospitals.sort_by_key(|i| std::cmp::Reverse(facilities[*i as usize].beds));
    }

    let insurers = make_insurers(&mut rng, &areas);
    let (users, user_start) = make_users(seed, &facilities);
    Region { seed, prefectures: PREFECTURES.to_vec(), areas, facilities, insurers, users, by_area, user_start }
}

fn town_address(rng: &mut Rng, city: &City) -> (String, String, usize) {
    let t = rng.index(TOWNS.len());
    let addr = format!("{}{}{}-{}-{}", city.name, TOWNS[t], rng.range(1, 5), rng.range(1, 30), rng.range(1, 20));
    (addr, geo::postal_code(city, t), t)
}

fn pick_city(rng: &mut Rng, area: &Area) -> &'static City {
    let w: Vec<f64> = area.cities.iter().map(|c| f64::from(c.weight)).collect();
    &area.cities[rng.weighted(&w)]
}

fn make_facility(
    rng: &mut Rng,
    index: u32,
    area: &Area,
    kind: FacilityType,
    k: usize,
    serial: &mut std::collections::BTreeMap<(u8, u8), u32>,
    used_names: &mut std::collections::BTreeSet<String>,
) -> Facility {
    let city = pick_city(rng, area);
    let (address_local, postal_code, town) = town_address(rng, city);
    let fee = match kind {
        FacilityType::DentalClinic => FacilityKind::Dental,
        FacilityType::Pharmacy => FacilityKind::Pharmacy,
        _ => FacilityKind::Medical,
    };
    let counter = serial.entry((area.prefecture, fee.digit())).or_insert(0);
    *counter += 1;
    // 郡市区番号 (2 digits) from the city, then a 4-digit number.
    let city_no = (area.index as u32 % 90) + 1;
    let local = city_no * 10_000 + *counter % 10_000;
    let code = FacilityCode::from_parts(area.prefecture, fee, local).unwrap_or_else(|| {
        FacilityCode::from_parts(area.prefecture, fee, *counter)
            .unwrap_or_else(|| FacilityCode::from_parts(13, fee, 1).expect("valid constant"))
    });
    let place = city.name.trim_end_matches(['市', '区', '町']);
    let place_short: String =
        place.chars().rev().take_while(|c| *c != '市').collect::<Vec<_>>().into_iter().rev().collect();
    let town_name = TOWNS[town].trim_end_matches('町');
    let (surname, _) = crate::names::draw_surname(rng);
    let mut name = match kind {
        FacilityType::Hospital => {
            if k == 0 && rng.chance(0.5) {
                format!("{}{}", place_short, rng.pick(&["市立病院", "総合医療センター", "中央病院"]))
            } else if rng.chance(0.5) {
                format!("{}{}", surname, rng.pick(&["病院", "記念病院", "総合病院"]))
            } else {
                format!("{}{}", town_name, rng.pick(HOSP_WORDS))
            }
        }
        FacilityType::Clinic => {
            if rng.chance(0.25) {
                let (label, _) = rng.pick(CLINIC_SPECIAL);
                format!("{}{}", surname, label)
            } else if rng.chance(0.6) {
                format!("{}{}", surname, rng.pick(CLINIC_WORDS))
            } else {
                format!("{}{}", town_name, rng.pick(CLINIC_WORDS))
            }
        }
        FacilityType::DentalClinic => {
            if rng.chance(0.6) {
                format!("{}歯科医院", surname)
            } else {
                format!("{}{}", town_name, rng.pick(&["歯科クリニック", "デンタルクリニック", "歯科"]))
            }
        }
        FacilityType::Pharmacy => format!("{} {}店", rng.pick(PHARMACY_BRANDS), town_name),
        FacilityType::Lab => "総合健診センター".to_owned(),
    };
    if !used_names.insert(name.clone()) {
        name = format!("{}（{}）", name, place_short);
        used_names.insert(name.clone());
    }
    let beds: u16 = match kind {
        FacilityType::Hospital => {
            if k == 0 {
                rng.range(300, 700) as u16
            } else {
                rng.range(40, 350) as u16
            }
        }
        FacilityType::Clinic if rng.chance(0.05) => rng.range(1, 19) as u16,
        _ => 0,
    };
    let (discloses, views) = match kind {
        FacilityType::Hospital => {
            let d = k == 0 || rng.chance(0.75);
            (d, true)
        }
        FacilityType::Clinic => {
            let d = rng.chance(0.55);
            (d, true)
        }
        FacilityType::DentalClinic => (rng.chance(0.35), true),
        FacilityType::Pharmacy => (rng.chance(0.65), true),
        FacilityType::Lab => (true, false),
    };
    let dpc = kind == FacilityType::Hospital && beds >= 200;
    let ssmix2 = kind == FacilityType::Hospital && discloses && (beds >= 400 || (beds >= 200 && rng.chance(0.5)));
    let fhir = discloses
        && match kind {
            FacilityType::Hospital => !ssmix2,
            FacilityType::Clinic => rng.chance(0.6),
            FacilityType::DentalClinic => true,
            FacilityType::Pharmacy => false,
            FacilityType::Lab => true,
        };
    let departments: Vec<&'static str> = match kind {
        FacilityType::Hospital if beds >= 200 => vec!["01", "05", "06", "08", "10", "11", "04", "30"],
        FacilityType::Hospital => vec!["01", "10", "11"],
        FacilityType::Clinic => {
            if let Some((_, dept)) = CLINIC_SPECIAL.iter().find(|(l, _)| name.contains(l)) {
                vec![dept]
            } else {
                vec!["01"]
            }
        }
        FacilityType::DentalClinic => vec!["40"],
        FacilityType::Pharmacy => vec![],
        FacilityType::Lab => vec!["01"],
    };
    Facility {
        index,
        code,
        name,
        kind,
        prefecture: area.prefecture,
        area: area.index,
        address: format!("{}{}", geo::prefecture_name(area.prefecture), address_local),
        postal_code,
        // Ten digits in all: 0XX-XXX-XXXX or 0XXX-XX-XXXX.
        phone: format!(
            "{}-{}-{:04}",
            city.area_code,
            if city.area_code.len() == 3 {
                format!("{:03}", rng.range(200, 999))
            } else {
                format!("{:02}", rng.range(20, 99))
            },
            rng.range(0, 9999)
        ),
        beds,
        discloses,
        views,
        ssmix2,
        dpc,
        fhir,
        outside_prescription: match kind {
            FacilityType::Hospital => true,
            FacilityType::Clinic => rng.chance(0.8),
            _ => false,
        },
        halfwidth_kana: kind != FacilityType::Hospital && rng.chance(0.15),
        stores_variants: kind == FacilityType::Hospital || rng.chance(0.4),
        departments,
    }
}

fn make_insurers(rng: &mut Rng, areas: &[Area]) -> Vec<Insurer> {
    let mut out: Vec<Insurer> = Vec::new();
    let mut push =
        |number: Option<InsurerNumber>, name: String, kind: InsurerKind, prefecture: u8, city: Option<&'static str>| {
            if let Some(number) = number {
                out.push(Insurer { index: out.len() as u32, number, name, kind, prefecture, city });
            }
        };
    const COMPANIES: &[&str] = &[
        "東海精機",
        "相模電機",
        "富士製紙",
        "湘南交通",
        "駿河銀行協同",
        "甲斐電子",
        "浜名湖楽器",
        "横浜港湾運輸",
        "みなと情報システム",
        "伊豆観光",
    ];
    for (pref, pname) in PREFECTURES {
        let short = pname.trim_end_matches('県');
        push(
            InsurerNumber::from_parts(1, *pref, 1),
            format!("全国健康保険協会{}支部", short),
            InsurerKind::Kyokai,
            *pref,
            None,
        );
        for i in 0..4u16 {
            let company = COMPANIES[(usize::from(*pref) * 3 + usize::from(i)) % COMPANIES.len()];
            push(
                InsurerNumber::from_parts(6, *pref, 100 + i * 17 + rng.range(0, 9) as u16),
                format!("{}健康保険組合", company),
                InsurerKind::Kumiai,
                *pref,
                None,
            );
        }
        push(
            InsurerNumber::from_parts(32, *pref, 1),
            format!("{}市町村職員共済組合", short),
            InsurerKind::Kyosai,
            *pref,
            None,
        );
        push(
            InsurerNumber::from_parts(34, *pref, 1),
            "日本私立学校振興・共済事業団".to_owned(),
            InsurerKind::Kyosai,
            *pref,
            None,
        );
        let mut city_no = 0u16;
        for area in areas.iter().filter(|a| a.prefecture == *pref) {
            for city in area.cities {
                city_no += 1;
                push(
                    InsurerNumber::from_parts(0, *pref, city_no * 7 % 1000),
                    format!("{}国民健康保険", city.name),
                    InsurerKind::Kokuho,
                    *pref,
                    Some(city.name),
                );
                push(
                    InsurerNumber::from_parts(39, *pref, city_no * 7 % 1000),
                    format!("{}後期高齢者医療広域連合", pname),
                    InsurerKind::Koki,
                    *pref,
                    Some(city.name),
                );
            }
        }
    }
    out
}

fn make_users(seed: u64, facilities: &[Facility]) -> (Vec<User>, Vec<u32>) {
    let mut users = Vec::new();
    let mut start = Vec::with_capacity(facilities.len());
    for f in facilities {
        start.push(users.len() as u32);
        let mut rng = Rng::new(seed, &[0x5553_4552, u64::from(f.index)]);
        let plan: Vec<(Profession, usize)> = match f.kind {
            FacilityType::Hospital => vec![
                (Profession::Doctor, f.departments.len() * if f.beds >= 200 { 2 } else { 1 }),
                (Profession::Nurse, 4),
                (Profession::Pharmacist, 2),
                (Profession::OtherLicensed, 2),
                (Profession::Clerk, 3),
            ],
            FacilityType::Clinic => vec![
                (Profession::Doctor, 1 + usize::from(rng.chance(0.3))),
                (Profession::Nurse, 2),
                (Profession::Clerk, 2),
            ],
            FacilityType::DentalClinic => vec![
                (Profession::Dentist, 1 + usize::from(rng.chance(0.3))),
                (Profession::OtherLicensed, 1),
                (Profession::Clerk, 1),
            ],
            FacilityType::Pharmacy => {
                vec![(Profession::Pharmacist, 2 + usize::from(rng.chance(0.4))), (Profession::Clerk, 1)]
            }
            FacilityType::Lab => vec![(Profession::Doctor, 2), (Profession::OtherLicensed, 2), (Profession::Clerk, 1)],
        };
        for (profession, n) in plan {
            for i in 0..n {
                let female = rng.chance(if profession == Profession::Nurse { 0.9 } else { 0.35 });
                let year = 1960 + rng.range(0, 35) as i32;
                let (sk, skana) = crate::names::draw_surname(&mut rng);
                let (g, form) = crate::names::draw_given(&mut rng, female, year);
                let prefix = match profession {
                    Profession::Doctor => "D",
                    Profession::Dentist => "DD",
                    Profession::Pharmacist => "P",
                    Profession::Nurse => "N",
                    Profession::OtherLicensed => "T",
                    Profession::Clerk => "C",
                };
                let department = match profession {
                    Profession::Doctor | Profession::Dentist => {
                        f.departments.get(i % f.departments.len().max(1)).copied()
                    }
                    _ => None,
                };
                users.push(User {
                    facility: f.index,
                    login: format!("{}-{}{:02}", f.code, profession.code(), i + 1),
                    staff_id: format!("{}{:03}", prefix, i + 1),
                    name: format!("{} {}", sk, g.forms[form]),
                    kana: format!("{} {}", skana, g.kana),
                    profession,
                    department,
                });
            }
        }
    }
    (users, start)
}

impl Region {
    /// The users of a facility.
    pub fn users_of(&self, facility: u32) -> &[User] {
        let start = self.user_start.get(facility as usize).copied().unwrap_or(0) as usize;
        let end = self.user_start.get(facility as usize + 1).copied().map(|e| e as usize).unwrap_or(self.users.len());
        self.users.get(start..end).unwrap_or(&[])
    }

    /// A clinician of a facility for a department (doctor or dentist), falling back to any.
    pub fn clinician(&self, facility: u32, dept: &str) -> Option<&User> {
        let us = self.users_of(facility);
        us.iter()
            .find(|u| matches!(u.profession, Profession::Doctor | Profession::Dentist) && u.department == Some(dept))
            .or_else(|| {
                us.iter()
                    .find(|u| matches!(u.profession, Profession::Doctor | Profession::Dentist | Profession::Pharmacist))
            })
    }

    /// The facility with the given index.
    pub fn facility(&self, index: u32) -> &Facility {
        &self.facilities[(index as usize).min(self.facilities.len().saturating_sub(1))]
    }

    /// The checkup centre of a prefecture.
    pub fn lab_of(&self, prefecture: u8) -> Option<&Facility> {
        self.facilities.iter().find(|f| f.kind == FacilityType::Lab && f.prefecture == prefecture)
    }

    /// Insurers of a kind in a prefecture (and municipality for 国保 / 後期).
    pub fn insurers_of(&self, kind: InsurerKind, prefecture: u8, city: Option<&str>) -> Vec<&Insurer> {
        self.insurers
            .iter()
            .filter(|i| i.kind == kind && i.prefecture == prefecture && (city.is_none() || i.city == city))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_valid_and_unique() {
        let r = region(42, 20_000);
        let mut seen = std::collections::BTreeSet::new();
        for f in &r.facilities {
            assert!(f.code.has_valid_check_digit(), "{}", f.code);
            assert!(seen.insert(f.code), "duplicate {}", f.code);
            assert_eq!(f.code.prefecture(), f.prefecture);
        }
        let mut ins = std::collections::BTreeSet::new();
        for i in &r.insurers {
            assert!(i.number.has_valid_check_digit(), "{}", i.number);
            assert!(ins.insert(i.number), "duplicate {}", i.number);
        }
        assert!(r.insurers.iter().any(|i| i.number.is_late_elderly()));
        assert!(r.insurers.iter().any(|i| i.number.as_str().starts_with("00")));
    }

    #[test]
    fn every_kind_exists_and_users_are_unique() {
        let r = region(1, 5_000);
        for k in [
            FacilityType::Hospital,
            FacilityType::Clinic,
            FacilityType::DentalClinic,
            FacilityType::Pharmacy,
            FacilityType::Lab,
        ] {
            assert!(r.facilities.iter().any(|f| f.kind == k), "{k:?}");
        }
        assert!(r.facilities.iter().any(|f| f.ssmix2 && f.dpc));
        assert!(r.facilities.iter().any(|f| !f.discloses && f.views));
        let mut logins = std::collections::BTreeSet::new();
        for u in &r.users {
            assert!(logins.insert(u.login.clone()), "{}", u.login);
        }
        for p in Profession::ALL {
            assert!(r.users.iter().any(|u| u.profession == p), "{p:?}");
        }
        assert_eq!(r.users_of(0).first().map(|u| u.facility), Some(0));
    }

    #[test]
    fn same_seed_same_region() {
        let a = serde_json::to_string(&region(9, 3000)).unwrap();
        let b = serde_json::to_string(&region(9, 3000)).unwrap();
        assert_eq!(a, b);
    }
}
