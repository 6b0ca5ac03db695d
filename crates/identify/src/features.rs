//! A source record reduced to the compact, normalized values the comparisons read: strings are
//! interned to `u32` symbols (0 = missing), dates and numbers packed, so that one record takes
//! about a hundred bytes and a comparison touches no heap.

use std::collections::HashMap;
use std::hash::BuildHasher;

use crate::normalize as n;
use crate::record::{PostalAddress, Sex, SourceRecord};

/// The hasher used for every map in the crate: fast and fixed (the same input gives the same
/// layout, so runs are reproducible).
pub(crate) type Hasher = foldhash::fast::FixedState;
pub(crate) type Map<K, V> = HashMap<K, V, Hasher>;

pub(crate) fn new_map<K, V>() -> Map<K, V> {
    HashMap::with_hasher(Hasher::default())
}

/// A 64-bit hash of any hashable value (block keys, source keys).
pub(crate) fn hash64<T: std::hash::Hash + ?Sized>(v: &T) -> u64 {
    Hasher::default().hash_one(v)
}

/// String interner: each distinct string gets a dense id from 1; 0 means missing.
#[derive(Debug, Default, Clone)]
pub(crate) struct Interner {
    map: Map<Box<str>, u32>,
    strings: Vec<Box<str>>,
}

impl Interner {
    pub(crate) fn new() -> Self {
        Interner { map: new_map(), strings: vec!["".into()] }
    }

    /// The id of `s` (0 for the empty string), adding it if new.
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        if let Some(&id) = self.map.get(s) {
            return id;
        }
        let id = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        self.strings.push(s.into());
        self.map.insert(s.into(), id);
        id
    }

    /// The id of `s` if known (0 for the empty string or an unknown one).
    pub(crate) fn get(&self, s: &str) -> Option<u32> {
        if s.is_empty() { Some(0) } else { self.map.get(s).copied() }
    }

    pub(crate) fn resolve(&self, id: u32) -> &str {
        self.strings.get(id as usize).map(|s| &**s).unwrap_or("")
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        let strings: usize = self.strings.iter().map(|s| s.len()).sum();
        // Each string is stored twice (vector and map), plus the map's slots.
        strings * 2 + self.strings.capacity() * 16 + self.map.capacity() * (16 + 4 + 1)
    }
}

/// One insurance identity, reduced: the household part (保険者番号:記号:番号, normalized) and the
/// 枝番 (255 when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Ins {
    pub household: u32,
    pub insurer: u32,
    pub branch: u8,
}

/// The normalized values of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Features {
    pub family_kanji: u32,
    pub given_kanji: u32,
    pub family_kana: u32,
    pub given_kana: u32,
    pub family_phon: u32,
    pub given_phon: u32,
    /// YYYYMMDD, 0 when missing.
    pub birth: u32,
    /// 0 unknown, 1 male, 2 female, 3 other.
    pub sex: u8,
    /// JIS prefecture code, 0 when unknown.
    pub pref: u8,
    /// pref + city.
    pub city: u32,
    /// pref + city + 町名.
    pub town: u32,
    /// pref + city + 町名 + numbers (building dropped).
    pub addr: u32,
    /// 7-digit postal code + 1 (0 when missing).
    pub postal: u32,
    /// Up to two phone numbers: digits as a number, with the digit count in the top byte.
    pub phones: [u64; 2],
    pub insurance: Insurances,
}

/// Insurance identities of a record: the first inline (almost every record has one), any
/// further ones on the heap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Insurances {
    first: Option<Ins>,
    more: Option<Box<[Ins]>>,
}

impl Insurances {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Ins> {
        self.first.iter().chain(self.more.iter().flat_map(|m| m.iter()))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.as_ref().map(|m| m.len()).unwrap_or(0)
    }
}

impl FromIterator<Ins> for Insurances {
    fn from_iter<T: IntoIterator<Item = Ins>>(iter: T) -> Self {
        let mut it = iter.into_iter();
        let first = it.next();
        let rest: Vec<Ins> = it.collect();
        Insurances { first, more: (!rest.is_empty()).then(|| rest.into_boxed_slice()) }
    }
}

/// Turns source records into [`Features`], owning the interners.
#[derive(Debug, Clone)]
pub(crate) struct Normalizer {
    pub names: Interner,
    pub places: Interner,
    pub insurance: Interner,
}

impl Normalizer {
    pub(crate) fn new() -> Self {
        Normalizer { names: Interner::new(), places: Interner::new(), insurance: Interner::new() }
    }

    pub(crate) fn features(&mut self, r: &SourceRecord) -> Features {
        let nv = NormalizedValues::of(r);
        self.intern(&nv)
    }

    pub(crate) fn intern(&mut self, v: &NormalizedValues) -> Features {
        Features {
            family_kanji: self.names.intern(&v.family_kanji),
            given_kanji: self.names.intern(&v.given_kanji),
            family_kana: self.names.intern(&v.family_kana),
            given_kana: self.names.intern(&v.given_kana),
            family_phon: self.names.intern(&v.family_phon),
            given_phon: self.names.intern(&v.given_phon),
            birth: v.birth,
            sex: v.sex,
            pref: v.pref,
            city: self.places.intern(&v.city),
            town: self.places.intern(&v.town),
            addr: self.places.intern(&v.addr),
            postal: v.postal,
            phones: v.phones,
            insurance: v
                .insurance
                .iter()
                .map(|(h, i, b)| Ins {
                    household: self.insurance.intern(h),
                    insurer: self.insurance.intern(i),
                    branch: *b,
                })
                .collect(),
        }
    }

    /// Features without adding new strings to the interners (for a query that is not stored):
    /// an unknown string gets `u32::MAX`, which equals nothing stored.
    pub(crate) fn features_readonly(&self, r: &SourceRecord) -> Features {
        let v = NormalizedValues::of(r);
        let get = |i: &Interner, s: &str| i.get(s).unwrap_or(u32::MAX);
        Features {
            family_kanji: get(&self.names, &v.family_kanji),
            given_kanji: get(&self.names, &v.given_kanji),
            family_kana: get(&self.names, &v.family_kana),
            given_kana: get(&self.names, &v.given_kana),
            family_phon: get(&self.names, &v.family_phon),
            given_phon: get(&self.names, &v.given_phon),
            birth: v.birth,
            sex: v.sex,
            pref: v.pref,
            city: get(&self.places, &v.city),
            town: get(&self.places, &v.town),
            addr: get(&self.places, &v.addr),
            postal: v.postal,
            phones: v.phones,
            insurance: v
                .insurance
                .iter()
                .map(|(h, i, b)| Ins {
                    household: get(&self.insurance, h),
                    insurer: get(&self.insurance, i),
                    branch: *b,
                })
                .collect(),
        }
    }
}

/// The normalized values of a record, as strings (what [`Features`] interns). Public through
/// [`crate::NormalizedRecord`] so that other tools (the Splink comparison) see the same inputs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct NormalizedValues {
    pub family_kanji: String,
    pub given_kanji: String,
    pub family_kana: String,
    pub given_kana: String,
    pub family_phon: String,
    pub given_phon: String,
    pub birth: u32,
    pub sex: u8,
    pub pref: u8,
    pub city: String,
    pub town: String,
    pub addr: String,
    pub postal: u32,
    pub phones: [u64; 2],
    /// (household, insurer, branch)
    pub insurance: Vec<(String, String, u8)>,
}

impl NormalizedValues {
    pub(crate) fn of(r: &SourceRecord) -> Self {
        let opt = |s: &Option<String>, f: fn(&str) -> String| s.as_deref().map(f).unwrap_or_default();
        let mut v = NormalizedValues {
            family_kanji: opt(&r.family_kanji, n::kanji_name),
            given_kanji: opt(&r.given_kanji, n::kanji_name),
            family_kana: opt(&r.family_kana, n::kana_exact),
            given_kana: opt(&r.given_kana, n::kana_exact),
            family_phon: String::new(),
            given_phon: String::new(),
            birth: r.birth_date.map(|b| b.yyyymmdd()).unwrap_or(0),
            sex: match r.sex {
                Sex::Unknown => 0,
                Sex::Male => 1,
                Sex::Female => 2,
                Sex::Other => 3,
            },
            ..Default::default()
        };
        // The phonetic form from the exact form (already NFKC and katakana).
        v.family_phon = n::phonetic_of_exact(&v.family_kana);
        v.given_phon = n::phonetic_of_exact(&v.given_kana);
        if let Some(a) = r.addresses.first() {
            let pa = parse_address(a);
            v.pref = pa.pref;
            v.postal = pa.postal.as_deref().and_then(|p| p.parse::<u32>().ok()).map(|p| p + 1).unwrap_or(0);
            if !pa.city.is_empty() {
                let base = format!("{:02}{}", pa.pref, pa.city);
                let (town, nums) = n::split_town_numbers(&pa.line);
                v.town = if town.is_empty() { String::new() } else { format!("{base}|{town}") };
                v.addr =
                    if nums.is_empty() || town.is_empty() { String::new() } else { format!("{base}|{town}{nums}") };
                v.city = base;
            }
        }
        let mut pi = 0;
        for p in &r.phones {
            let d = n::phone_digits(p);
            if d.len() >= 6 && d.len() <= 15 && pi < 2 {
                let num: u64 = d.parse().unwrap_or(0);
                v.phones[pi] = (d.len() as u64) << 56 | num;
                pi += 1;
            }
        }
        for id in &r.insurance {
            let key = id.match_key();
            let mut parts = key.rsplitn(2, ':');
            let branch = parts.next().and_then(|b| b.parse::<u8>().ok()).unwrap_or(255);
            let household = parts.next().unwrap_or("").to_owned();
            v.insurance.push((household, id.insurer().to_string(), branch));
        }
        v
    }
}

/// An address split into prefecture, city and the canonical rest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ParsedAddress {
    pub pref: u8,
    pub city: String,
    pub line: String,
    pub postal: Option<String>,
}

/// Splits an address into prefecture / city / line. The city comes from `Address.city` when
/// given; otherwise it is read from the text after the prefecture, up to the first `市`, `区`
/// (Tokyo's wards), or `郡…町/村` — an approximation that is exact for municipality names without
/// those characters inside them, and consistent (the same text always splits the same way),
/// which is what comparison needs.
pub(crate) fn parse_address(a: &PostalAddress) -> ParsedAddress {
    let clean = |s: &str| n::normalize_hyphens(&n::remove_whitespace(&n::nfkc(s)));
    let mut pref = a.prefecture.as_deref().and_then(n::prefecture_code).unwrap_or(0);
    let city_field = a.city.as_deref().map(clean).unwrap_or_default();
    let full = match (&a.text, &a.line) {
        (Some(t), _) => clean(t),
        (None, Some(l)) => clean(l),
        (None, None) => String::new(),
    };
    let (p2, mut rest) = n::split_prefecture(&full);
    if pref == 0 {
        pref = p2.unwrap_or(0);
    }
    // A `line` given beside a text that is only pref + city: use the line.
    let mut city = String::new();
    if !city_field.is_empty() {
        city = city_field.clone();
        rest = rest.strip_prefix(city_field.as_str()).unwrap_or(rest);
    } else if let Some(end) = city_end(rest) {
        city = rest[..end].to_owned();
        rest = &rest[end..];
    }
    let mut line = rest.to_owned();
    if line.is_empty()
        && let (Some(_), Some(l)) = (&a.text, &a.line)
    {
        line = clean(l);
    }
    ParsedAddress {
        pref,
        city,
        line: n::address_line(&line),
        postal: a.postal_code.as_deref().and_then(n::postal_code),
    }
}

fn city_end(s: &str) -> Option<usize> {
    let mut gun = false;
    for (i, c) in s.char_indices() {
        match c {
            '郡' => gun = true,
            '市' | '区' => {
                // 政令市 + 区: take both (横浜市中区).
                let after = i + c.len_utf8();
                if c == '市'
                    && let Some(ku) = s[after..].char_indices().take(4).find(|(_, k)| *k == '区')
                {
                    return Some(after + ku.0 + '区'.len_utf8());
                }
                return Some(after);
            }
            '町' | '村' if gun => return Some(i + c.len_utf8()),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SourceKey;

    fn addr(text: &str, state: Option<&str>, city: Option<&str>) -> PostalAddress {
        PostalAddress {
            prefecture: state.map(Into::into),
            city: city.map(Into::into),
            line: None,
            text: Some(text.into()),
            postal_code: Some("１００－００１３".into()),
        }
    }

    #[test]
    fn addresses_split_the_same_with_or_without_fields() {
        let a = parse_address(&addr("東京都千代田区霞が関一丁目2番3号", Some("東京都"), Some("千代田区")));
        let b = parse_address(&addr("東京都千代田区霞ヶ関１－２－３", None, None));
        assert_eq!(a.pref, 13);
        assert_eq!(a.city, "千代田区");
        assert_eq!(a.line, "霞ケ関1-2-3");
        assert_eq!(a, b);
        assert_eq!(a.postal.as_deref(), Some("1000013"));
        let c = parse_address(&addr("神奈川県横浜市中区山下町1-2", None, None));
        assert_eq!((c.pref, c.city.as_str(), c.line.as_str()), (14, "横浜市中区", "山下町1-2"));
        let d = parse_address(&addr("長野県北佐久郡軽井沢町軽井沢1-1", None, None));
        assert_eq!(d.city, "北佐久郡軽井沢町");
    }

    #[test]
    fn features_fold_the_desk_variants() {
        let key = SourceKey::new("1311234567".parse().unwrap(), "1");
        let mut a = SourceRecord::new(key.clone());
        a.family_kanji = Some("髙橋".into());
        a.family_kana = Some("ﾀｶﾊｼ".into());
        a.phones = vec!["０９０－１２３４－５６７８".into()];
        let mut b = SourceRecord::new(key);
        b.family_kanji = Some("高橋".into());
        b.family_kana = Some("たかはし".into());
        b.phones = vec!["090 1234 5678".into()];
        let mut nz = Normalizer::new();
        let (fa, fb) = (nz.features(&a), nz.features(&b));
        assert_eq!(fa, fb);
        assert_eq!(nz.names.resolve(fa.family_kanji), "高橋");
        assert_eq!(nz.names.resolve(fa.family_kana), "タカハシ");
        assert_eq!(fa.phones[0], 11u64 << 56 | 9012345678);
    }
}
