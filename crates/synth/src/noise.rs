//! Registration at each facility and the noise real registration desks make: variant kanji
//! folded, half-width kana, long-vowel spellings, ヅ/ズ, a wrong kanji with the same reading,
//! a maiden name or an old address never updated, a mistyped birth date, missing phone or kana.
//!
//! Each kind is applied to a source patient (facility, local id) independently with its
//! configured probability, among the source patients it can apply to.

use serde::{Deserialize, Serialize};
use time::Date;

use crate::names;
use crate::person::{Address, Identity, Insurance, Sex};
use crate::region::{Facility, FacilityType};
use crate::rng::Rng;

/// A kind of registration noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseKind {
    /// The legal name has a variant kanji (髙, 﨑 …) and the desk typed the standard form.
    VariantFolded,
    /// Kana stored half-width (ﾔﾏﾀﾞ).
    HalfwidthKana,
    /// A long vowel written with ー (オオノ → オーノ).
    LongVowel,
    /// ズ/ヅ or ジ/ヂ swapped.
    ZuDzu,
    /// Another kanji with the same reading for the given name (裕子 → 優子).
    WrongKanjiGiven,
    /// Still the maiden name after a marriage.
    StaleSurname,
    /// Still the old address after a move.
    StaleAddress,
    /// Birth date mistyped (one digit, or two digits transposed).
    BirthTypo,
    /// No phone recorded.
    MissingPhone,
    /// No kana recorded.
    MissingKana,
}

impl NoiseKind {
    /// Every kind.
    pub const ALL: [NoiseKind; 10] = [
        NoiseKind::VariantFolded,
        NoiseKind::HalfwidthKana,
        NoiseKind::LongVowel,
        NoiseKind::ZuDzu,
        NoiseKind::WrongKanjiGiven,
        NoiseKind::StaleSurname,
        NoiseKind::StaleAddress,
        NoiseKind::BirthTypo,
        NoiseKind::MissingPhone,
        NoiseKind::MissingKana,
    ];

    /// The stable code used in files.
    pub fn code(self) -> &'static str {
        match self {
            NoiseKind::VariantFolded => "variant-folded",
            NoiseKind::HalfwidthKana => "halfwidth-kana",
            NoiseKind::LongVowel => "long-vowel",
            NoiseKind::ZuDzu => "zu-dzu",
            NoiseKind::WrongKanjiGiven => "wrong-kanji-given",
            NoiseKind::StaleSurname => "stale-surname",
            NoiseKind::StaleAddress => "stale-address",
            NoiseKind::BirthTypo => "birth-typo",
            NoiseKind::MissingPhone => "missing-phone",
            NoiseKind::MissingKana => "missing-kana",
        }
    }
}

/// Probabilities of each kind of noise per source patient (among those it can apply to).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NoiseRates {
    /// Variant kanji typed in the standard form (of legal names that have one).
    pub variant_folded: f64,
    /// Half-width kana.
    pub halfwidth_kana: f64,
    /// Long-vowel spelling (of kana that have a long vowel).
    pub long_vowel: f64,
    /// ズ/ヅ, ジ/ヂ (of kana that have one).
    pub zu_dzu: f64,
    /// Wrong kanji for the given name (of names that have another form).
    pub wrong_kanji_given: f64,
    /// Maiden name kept (of patients registered before a marriage and seen after).
    pub stale_surname: f64,
    /// Old address kept (of patients registered before a move and seen after).
    pub stale_address: f64,
    /// Mistyped birth date.
    pub birth_typo: f64,
    /// Missing phone.
    pub missing_phone: f64,
    /// Missing kana.
    pub missing_kana: f64,
}

impl Default for NoiseRates {
    fn default() -> Self {
        NoiseRates {
            variant_folded: 0.5,
            halfwidth_kana: 0.08,
            long_vowel: 0.06,
            zu_dzu: 0.05,
            wrong_kanji_given: 0.02,
            stale_surname: 0.35,
            stale_address: 0.4,
            birth_typo: 0.006,
            missing_phone: 0.12,
            missing_kana: 0.02,
        }
    }
}

/// A patient as one facility has registered them.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePatient {
    /// Facility index.
    pub facility: u32,
    /// Facility-local patient id.
    pub local_id: String,
    /// First and last visit.
    pub first_visit: Date,
    /// Last visit.
    pub last_visit: Date,
    /// 姓 as registered.
    pub family: String,
    /// 名 as registered.
    pub given: String,
    /// セイ (may be half-width), if recorded.
    pub family_kana: Option<String>,
    /// メイ, if recorded.
    pub given_kana: Option<String>,
    /// Sex.
    pub sex: Sex,
    /// Birth date as registered.
    pub birth: Date,
    /// Address as registered.
    pub address: Address,
    /// Phone, if recorded.
    pub phone: Option<String>,
    /// Insurance shown at the last visit.
    pub insurance: Insurance,
    /// Noise applied.
    pub noise: Vec<NoiseKind>,
}

/// The facility-local patient id of a person: a keyed permutation of the person index, so ids
/// look random, never collide within a facility, and need no shared counter.
pub fn local_id(facility: &Facility, person: u64) -> String {
    let digits: u32 = match facility.kind {
        FacilityType::Hospital => 10,
        FacilityType::Clinic | FacilityType::Pharmacy => 8,
        FacilityType::DentalClinic => 7,
        FacilityType::Lab => 9,
    };
    let m = 10u64.pow(digits);
    let h = crate::rng::mix(u64::from(facility.index) ^ 0xA5A5_5A5A);
    // Multiplier coprime to 10 → a bijection on 0..10^digits.
    let mut a = (h % m) | 1;
    if a.is_multiple_of(5) {
        a += 2;
    }
    let b = crate::rng::mix(h) % m;
    let v = ((u128::from(person % m) * u128::from(a) + u128::from(b)) % u128::from(m)) as u64;
    format!("{v:0width$}", width = digits as usize)
}

/// Registers a person at a facility (first and last visit given) with noise.
pub(crate) fn register(
    seed: u64,
    rates: &NoiseRates,
    id: &Identity,
    facility: &Facility,
    first: Date,
    last: Date,
) -> SourcePatient {
    let mut rng = Rng::new(seed, &[0x004e_4f49_5345, id.index, u64::from(facility.index)]);
    let mut noise = Vec::new();
    let now = id.name_on(last);
    let then = id.name_on(first);
    let mut name = now.clone();
    if now.family != then.family && rng.chance(rates.stale_surname) {
        name = then.clone();
        noise.push(NoiseKind::StaleSurname);
    }
    let mut family = name.family.clone();
    let mut given = name.given.clone();
    if names::fold_variants(&family) != family && rng.chance(rates.variant_folded) {
        family = names::fold_variants(&family);
        noise.push(NoiseKind::VariantFolded);
    }
    let alts = names::same_reading_alternatives(&name.given_kana, &given);
    if !alts.is_empty() && rng.chance(rates.wrong_kanji_given) {
        given = alts[rng.index(alts.len())].to_owned();
        noise.push(NoiseKind::WrongKanjiGiven);
    }
    let mut fk = name.family_kana.clone();
    let mut gk = name.given_kana.clone();
    if (long_vowel_candidates(&fk).len() + long_vowel_candidates(&gk).len()) > 0 && rng.chance(rates.long_vowel) {
        let target_family =
            !long_vowel_candidates(&fk).is_empty() && (long_vowel_candidates(&gk).is_empty() || rng.chance(0.5));
        let s = if target_family { &mut fk } else { &mut gk };
        let c = long_vowel_candidates(s);
        let pos = c[rng.index(c.len())];
        *s = s.chars().enumerate().map(|(i, ch)| if i == pos { 'ー' } else { ch }).collect();
        noise.push(NoiseKind::LongVowel);
    }
    if (has_zu(&fk) || has_zu(&gk)) && rng.chance(rates.zu_dzu) {
        if has_zu(&fk) {
            fk = swap_zu(&fk);
        } else {
            gk = swap_zu(&gk);
        }
        noise.push(NoiseKind::ZuDzu);
    }
    if rng.chance(rates.halfwidth_kana) {
        fk = to_halfwidth_kana(&fk);
        gk = to_halfwidth_kana(&gk);
        noise.push(NoiseKind::HalfwidthKana);
    }
    let (family_kana, given_kana) = if rng.chance(rates.missing_kana) {
        noise.push(NoiseKind::MissingKana);
        (None, None)
    } else {
        (Some(fk), Some(gk))
    };
    let mut birth = id.birth;
    if rng.chance(rates.birth_typo)
        && let Some(b) = birth_typo(&mut rng, id.birth)
    {
        birth = b;
        noise.push(NoiseKind::BirthTypo);
    }
    let addr_now = id.address_on(last);
    let addr_then = id.address_on(first);
    let mut address = addr_now.clone();
    if addr_now != addr_then && rng.chance(rates.stale_address) {
        address = addr_then.clone();
        noise.push(NoiseKind::StaleAddress);
    }
    let mut phone = if rng.chance(0.5) {
        id.mobile.clone().or_else(|| id.home_phone.clone())
    } else {
        id.phone().map(str::to_owned)
    };
    if phone.is_some() && rng.chance(rates.missing_phone) {
        phone = None;
        noise.push(NoiseKind::MissingPhone);
    }
    SourcePatient {
        facility: facility.index,
        local_id: local_id(facility, id.index),
        first_visit: first,
        last_visit: last,
        family,
        given,
        family_kana,
        given_kana,
        sex: id.sex,
        birth,
        address,
        phone,
        insurance: id.insurance_on(last).clone(),
        noise,
    }
}

fn vowel(c: char) -> Option<char> {
    const ROWS: [(&str, char); 5] = [
        ("アカガサザタダナハバパマヤャラワァ", 'a'),
        ("イキギシジチヂニヒビピミリィ", 'i'),
        ("ウクグスズツヅヌフブプムユュルゥ", 'u'),
        ("エケゲセゼテデネヘベペメレェ", 'e'),
        ("オコゴソゾトドノホボポモヨョロヲォ", 'o'),
    ];
    ROWS.iter().find(|(s, _)| s.contains(c)).map(|(_, v)| *v)
}

/// Positions where a long vowel could be written with ー.
pub(crate) fn long_vowel_candidates(kana: &str) -> Vec<usize> {
    let cs: Vec<char> = kana.chars().collect();
    (1..cs.len())
        .filter(|&i| {
            let prev = vowel(cs[i - 1]);
            match cs[i] {
                'ウ' => matches!(prev, Some('o') | Some('u')),
                'オ' => prev == Some('o'),
                'イ' => prev == Some('e'),
                _ => false,
            }
        })
        .collect()
}

fn has_zu(s: &str) -> bool {
    s.contains(['ズ', 'ヅ', 'ジ', 'ヂ'])
}

fn swap_zu(s: &str) -> String {
    let mut done = false;
    s.chars()
        .map(|c| {
            if done {
                return c;
            }
            let r = match c {
                'ズ' => 'ヅ',
                'ヅ' => 'ズ',
                'ジ' => 'ヂ',
                'ヂ' => 'ジ',
                other => return other,
            };
            done = true;
            r
        })
        .collect()
}

/// Full-width katakana to half-width (voiced marks become separate ﾞ/ﾟ). Hand-written because
/// NFKC only goes the other way.
pub fn to_halfwidth_kana(s: &str) -> String {
    const FULL: &str = "ァアィイゥウェエォオカキクケコサシスセソタチッツテトナニヌネノハヒフヘホマミムメモャヤュユョヨラリルレロワヲンー";
    const HALF: &str = "ｧｱｨｲｩｳｪｴｫｵｶｷｸｹｺｻｼｽｾｿﾀﾁｯﾂﾃﾄﾅﾆﾇﾈﾉﾊﾋﾌﾍﾎﾏﾐﾑﾒﾓｬﾔｭﾕｮﾖﾗﾘﾙﾚﾛﾜｦﾝｰ";
    const VOICED: &str = "ガギグゲゴザジズゼゾダヂヅデドバビブベボヴ";
    const VOICED_BASE: &str = "カキクケコサシスセソタチツテトハヒフヘホウ";
    const SEMI: &str = "パピプペポ";
    const SEMI_BASE: &str = "ハヒフヘホ";
    let half_of = |c: char| FULL.chars().position(|x| x == c).and_then(|i| HALF.chars().nth(i));
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if let Some(i) = VOICED.chars().position(|x| x == c)
            && let Some(h) = VOICED_BASE.chars().nth(i).and_then(half_of)
        {
            out.push(h);
            out.push('ﾞ');
            continue;
        }
        if let Some(i) = SEMI.chars().position(|x| x == c)
            && let Some(h) = SEMI_BASE.chars().nth(i).and_then(half_of)
        {
            out.push(h);
            out.push('ﾟ');
            continue;
        }
        if c == ' ' || c == '　' {
            out.push(' ');
            continue;
        }
        out.push(half_of(c).unwrap_or(c));
    }
    out
}

/// A plausible mistyped birth date: one digit changed or two adjacent digits swapped, still a
/// valid date and different from the true one.
fn birth_typo(rng: &mut Rng, birth: Date) -> Option<Date> {
    let s = crate::dates::compact(birth);
    let digits: Vec<u8> = s.bytes().map(|b| b - b'0').collect();
    let mut candidates = Vec::new();
    for i in 2..8 {
        // Transposition with the next digit.
        if i + 1 < 8 && digits[i] != digits[i + 1] {
            let mut d = digits.clone();
            d.swap(i, i + 1);
            candidates.push(d);
        }
        // One digit off by one.
        for delta in [1i8, -1] {
            let v = digits[i] as i8 + delta;
            if (0..=9).contains(&v) {
                let mut d = digits.clone();
                d[i] = v as u8;
                candidates.push(d);
            }
        }
    }
    let valid: Vec<Date> = candidates
        .into_iter()
        .filter_map(|d| {
            let y = i32::from(d[0]) * 1000 + i32::from(d[1]) * 100 + i32::from(d[2]) * 10 + i32::from(d[3]);
            let m = d[4] * 10 + d[5];
            let day = d[6] * 10 + d[7];
            let month = time::Month::try_from(m).ok()?;
            time::Date::from_calendar_date(y, month, day).ok()
        })
        .filter(|d| *d != birth && d.year() > 1900)
        .collect();
    if valid.is_empty() { None } else { Some(valid[rng.index(valid.len())]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halfwidth_kana_splits_voiced_marks() {
        assert_eq!(to_halfwidth_kana("ヤマダ タロウ"), "ﾔﾏﾀﾞ ﾀﾛｳ");
        assert_eq!(to_halfwidth_kana("パピー"), "ﾊﾟﾋﾟｰ");
        use unicode_normalization::UnicodeNormalization;
        assert_eq!(to_halfwidth_kana("スズキ ジュンコ").nfkc().collect::<String>(), "スズキ ジュンコ");
    }

    #[test]
    fn long_vowels_are_found() {
        assert_eq!(long_vowel_candidates("オオノ"), vec![1]);
        assert_eq!(long_vowel_candidates("サトウ"), vec![2]);
        assert_eq!(long_vowel_candidates("ケイコ"), vec![1]);
        assert!(long_vowel_candidates("タナカ").is_empty());
        assert_eq!(swap_zu("スズキ"), "スヅキ");
    }

    #[test]
    fn birth_typos_are_valid_near_misses() {
        let b = crate::dates::ymd(1965, 4, 15).unwrap();
        let mut rng = Rng::new(1, &[]);
        for _ in 0..50 {
            let t = birth_typo(&mut rng, b).unwrap();
            assert_ne!(t, b);
            let (x, y) = (crate::dates::compact(t), crate::dates::compact(b));
            let diff = x.bytes().zip(y.bytes()).filter(|(a, b)| a != b).count();
            assert!((1..=2).contains(&diff), "{x} vs {y}");
        }
    }
}
