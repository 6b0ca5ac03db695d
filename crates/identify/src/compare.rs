//! Comparison of two records field by field: each comparison gives a *level* (how well the two
//! values agree), the discrete outcome the Fellegi–Sunter model weighs.
//!
//! | field | levels (after 0 = a value is missing) |
//! |---|---|
//! | family name | 1 equal: kanji equal (variants folded), or — when a side has no kanji — kana equal phonetically · 2 kanji differ, kana equal · 3 kanji differ, kana equal phonetically (long vowels, ヅ/ズ, small kana) · 4 one character different (kana of 3+ letters, kanji of 2+) · 5 different (kana compared) · 6 kanji different, kana missing on a side |
//! | given name | same as family name |
//! | birth date | 1 equal · 2 two adjacent digits transposed (or month and day swapped) · 3 one digit different · 4 different |
//! | sex | 1 equal · 2 different |
//! | address | 1 same 町名 and numbers · 2 same 町名 · 3 same city · 4 same prefecture · 5 different |
//! | postal code | 1 equal · 2 same first three digits · 3 different; counted as missing when the addresses already agree on the 町名 (the two are not independent evidence) |
//! | phone | 1 a number in common · 2 different |
//! | insurance | 1 same identity · 2 same 記号・番号, other 枝番 (a family member) · 3 same insurer · 4 different |
//!
//! Family and given names are each one comparison over kanji and kana together, rather than two
//! comparisons, because kanji and kana agreement are strongly dependent (the Fellegi–Sunter
//! model assumes independent comparisons and would count the same evidence twice).

use serde::{Deserialize, Serialize};

use crate::features::Features;

/// The compared fields, in the order of a comparison vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// 姓 (kanji and kana).
    FamilyName,
    /// 名 (kanji and kana).
    GivenName,
    /// 生年月日.
    BirthDate,
    /// 性別.
    Sex,
    /// 住所.
    Address,
    /// 郵便番号.
    PostalCode,
    /// 電話番号.
    Phone,
    /// 被保険者個人識別子.
    Insurance,
}

/// Number of fields.
pub const FIELDS: usize = 8;

impl Field {
    /// Every field, in vector order.
    pub const ALL: [Field; FIELDS] = [
        Field::FamilyName,
        Field::GivenName,
        Field::BirthDate,
        Field::Sex,
        Field::Address,
        Field::PostalCode,
        Field::Phone,
        Field::Insurance,
    ];

    /// Position in a comparison vector.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Level labels (index = level; level 0 is "missing").
    pub fn levels(self) -> &'static [&'static str] {
        match self {
            Field::FamilyName | Field::GivenName => &[
                "missing",
                "kanji_exact",
                "kana_exact",
                "kana_phonetic",
                "one_char_different",
                "different",
                "kanji_only_different",
            ],
            Field::BirthDate => &["missing", "exact", "transposition", "one_digit", "different"],
            Field::Sex => &["missing", "equal", "different"],
            Field::Address => &["missing", "exact", "same_town", "same_city", "same_prefecture", "different"],
            Field::PostalCode => &["missing", "exact", "same_area", "different"],
            Field::Phone => &["missing", "equal", "different"],
            Field::Insurance => &["missing", "exact", "same_household", "same_insurer", "different"],
        }
    }

    /// The stable name used in serialized models.
    pub fn name(self) -> &'static str {
        match self {
            Field::FamilyName => "family_name",
            Field::GivenName => "given_name",
            Field::BirthDate => "birth_date",
            Field::Sex => "sex",
            Field::Address => "address",
            Field::PostalCode => "postal_code",
            Field::Phone => "phone",
            Field::Insurance => "insurance",
        }
    }
}

/// Name levels.
pub(crate) mod name_level {
    pub const MISSING: u8 = 0;
    pub const KANJI: u8 = 1;
    pub const KANA: u8 = 2;
    pub const PHONETIC: u8 = 3;
    pub const FUZZY: u8 = 4;
    pub const DIFFERENT: u8 = 5;
    pub const KANJI_ONLY_DIFFERENT: u8 = 6;
}

/// A comparison vector: one level per field.
pub type Gamma = [u8; FIELDS];

/// Packs a comparison vector into 24 bits (3 bits a field).
pub(crate) fn pack(g: &Gamma) -> u32 {
    g.iter().enumerate().fold(0u32, |acc, (i, l)| acc | (u32::from(*l & 7) << (3 * i)))
}

/// Unpacks [`pack`].
pub(crate) fn unpack(p: u32) -> Gamma {
    let mut g = [0u8; FIELDS];
    for (i, l) in g.iter_mut().enumerate() {
        *l = ((p >> (3 * i)) & 7) as u8;
    }
    g
}

/// The interned-name resolver the fuzzy levels need (one-character differences are checked on
/// the strings).
pub(crate) trait Names {
    fn name(&self, id: u32) -> &str;
}

impl Names for crate::features::Interner {
    fn name(&self, id: u32) -> &str {
        self.resolve(id)
    }
}

/// Compares two records.
pub(crate) fn compare(a: &Features, b: &Features, names: &impl Names) -> Gamma {
    let addr = address(a, b);
    [
        name(a.family_kanji, a.family_kana, a.family_phon, b.family_kanji, b.family_kana, b.family_phon, names),
        name(a.given_kanji, a.given_kana, a.given_phon, b.given_kanji, b.given_kana, b.given_phon, names),
        birth(a.birth, b.birth),
        sex(a.sex, b.sex),
        addr,
        if addr == 1 || addr == 2 { 0 } else { postal(a.postal, b.postal) },
        phone(&a.phones, &b.phones),
        insurance(a, b),
    ]
}

fn name(ak: u32, akana: u32, aphon: u32, bk: u32, bkana: u32, bphon: u32, names: &impl Names) -> u8 {
    use name_level::*;
    let kanji = ak != 0 && bk != 0;
    let kana = aphon != 0 && bphon != 0;
    if !kanji && !kana {
        return MISSING;
    }
    if kanji && ak == bk {
        return KANJI;
    }
    // One side has no kanji: the kana is all there is to compare, and phonetic equality is as
    // good as it gets (kana-only records come from systems that store kana only, often
    // half-width, with long vowels as ｰ).
    if !kanji {
        if aphon == bphon {
            return KANJI;
        }
        let (sa, sb) = (names.name(akana), names.name(bkana));
        let close = sa.chars().count() >= 3 && sb.chars().count() >= 3 && one_char_apart(sa, sb);
        return if close { FUZZY } else { DIFFERENT };
    }
    if kana && akana == bkana {
        return KANA;
    }
    if kana && aphon == bphon {
        return PHONETIC;
    }
    // One character off only counts where a character stays in common: kana of three letters
    // or more (exact spelling, so that ケイコ/ユウコ are not close), kanji of two or more.
    let long_enough = |s: &str, min: usize| s.chars().count() >= min;
    let (sa, sb) = (names.name(akana), names.name(bkana));
    let kana_close = kana && long_enough(sa, 3) && long_enough(sb, 3) && one_char_apart(sa, sb);
    let (ka, kb) = (names.name(ak), names.name(bk));
    let kanji_close = kanji && long_enough(ka, 2) && long_enough(kb, 2) && one_char_apart(ka, kb);
    if kana_close || kanji_close {
        return FUZZY;
    }
    if kana { DIFFERENT } else { KANJI_ONLY_DIFFERENT }
}

/// Whether two strings are within one edit (substitution, insertion or deletion of a char,
/// or a swap of two adjacent chars).
pub(crate) fn one_char_apart(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let mut ai = a.chars();
    let mut bi = b.chars();
    let (la, lb) = (a.chars().count(), b.chars().count());
    if la.abs_diff(lb) > 1 {
        return false;
    }
    // Skip the common prefix.
    let (mut ra, mut rb): (Vec<char>, Vec<char>) = (Vec::new(), Vec::new());
    loop {
        match (ai.next(), bi.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (x, y) => {
                ra.extend(x);
                ra.extend(ai);
                rb.extend(y);
                rb.extend(bi);
                break;
            }
        }
    }
    let (ra, rb) = (ra.as_slice(), rb.as_slice());
    match (ra, rb) {
        ([_, r1 @ ..], [_, r2 @ ..]) if r1 == r2 => true, // substitution
        ([_, r1 @ ..], r2) if r1 == r2 => true,           // deletion from a
        (r1, [_, r2 @ ..]) if r1 == r2 => true,           // deletion from b
        ([x1, y1, r1 @ ..], [x2, y2, r2 @ ..]) => x1 == y2 && y1 == x2 && r1 == r2, // swap
        _ => false,
    }
}

/// Birth dates as YYYYMMDD numbers.
pub(crate) fn birth(a: u32, b: u32) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    if a == b {
        return 1;
    }
    let da = digits8(a);
    let db = digits8(b);
    let diff: Vec<usize> = (0..8).filter(|&i| da[i] != db[i]).collect();
    match diff.as_slice() {
        [i, j] if *j == i + 1 && da[*i] == db[*j] && da[*j] == db[*i] => 2,
        [_] => 3,
        _ => {
            // Month and day swapped (04-15 vs 15-04 cannot be a date; 03-04 vs 04-03 can).
            let (ya, ma, dda) = (a / 10_000, a / 100 % 100, a % 100);
            let (yb, mb, ddb) = (b / 10_000, b / 100 % 100, b % 100);
            if ya == yb && ma == ddb && dda == mb { 2 } else { 4 }
        }
    }
}

fn digits8(v: u32) -> [u8; 8] {
    let mut d = [0u8; 8];
    let mut x = v;
    for slot in d.iter_mut().rev() {
        *slot = (x % 10) as u8;
        x /= 10;
    }
    d
}

fn sex(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 || a == 3 || b == 3 {
        0
    } else if a == b {
        1
    } else {
        2
    }
}

fn address(a: &Features, b: &Features) -> u8 {
    if a.pref == 0 || b.pref == 0 {
        return 0;
    }
    if a.addr != 0 && a.addr == b.addr {
        1
    } else if a.town != 0 && a.town == b.town {
        2
    } else if a.city != 0 && a.city == b.city {
        3
    } else if a.pref == b.pref {
        4
    } else {
        5
    }
}

fn postal(a: u32, b: u32) -> u8 {
    if a == 0 || b == 0 {
        0
    } else if a == b {
        1
    } else if (a - 1) / 10_000 == (b - 1) / 10_000 {
        2
    } else {
        3
    }
}

fn phone(a: &[u64; 2], b: &[u64; 2]) -> u8 {
    if a[0] == 0 || b[0] == 0 {
        return 0;
    }
    let common = a.iter().filter(|x| **x != 0).any(|x| b.contains(x));
    if common { 1 } else { 2 }
}

fn insurance(a: &Features, b: &Features) -> u8 {
    if a.insurance.is_empty() || b.insurance.is_empty() {
        return 0;
    }
    let mut best = 4;
    for x in a.insurance.iter() {
        for y in b.insurance.iter() {
            let l = if x.household == y.household {
                if x.branch == y.branch { 1 } else { 2 }
            } else if x.insurer == y.insurer {
                3
            } else {
                4
            };
            best = best.min(l);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_char() {
        assert!(one_char_apart("裕子", "優子"));
        assert!(one_char_apart("ヒロシ", "ヒロ"));
        assert!(one_char_apart("ヒロシ", "ヒシロ"));
        assert!(one_char_apart("", "ア"));
        assert!(!one_char_apart("ヒロシ", "タカシ"));
        assert!(!one_char_apart("太郎", "次郎花"));
    }

    #[test]
    fn birth_levels() {
        assert_eq!(birth(19650415, 19650415), 1);
        assert_eq!(birth(19650415, 19650451), 2); // transposed day digits
        assert_eq!(birth(19650415, 19560415), 2); // transposed year digits
        assert_eq!(birth(19650304, 19650403), 2); // month and day swapped
        assert_eq!(birth(19650415, 19650416), 3);
        assert_eq!(birth(19650415, 19750415), 3);
        assert_eq!(birth(19650415, 19701231), 4);
        assert_eq!(birth(0, 19701231), 0);
    }

    #[test]
    fn pack_round_trip() {
        let g: Gamma = [5, 4, 3, 2, 1, 0, 2, 4];
        assert_eq!(unpack(pack(&g)), g);
    }
}
