use std::fmt;
use std::str::FromStr;

use crate::DomainError;

/// An 8-digit 保険者番号 (insurer number). National Health Insurance numbers have six digits and
/// are carried with two leading zeros, as the JP-CLINS identifier requires eight.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InsurerNumber([u8; 8]);

impl InsurerNumber {
    /// Builds an insurer number from 法別番号 (2), 都道府県番号 (2) and 保険者別番号 (3), computing
    /// the check digit. `law` 0 gives a National Health Insurance number (six significant digits).
    pub fn from_parts(law: u8, prefecture: u8, insurer: u16) -> Option<Self> {
        if law > 99 || prefecture > 47 || insurer > 999 {
            return None;
        }
        let s = format!("{law:02}{prefecture:02}{insurer:03}0");
        let mut d = [0u8; 8];
        d.copy_from_slice(s.as_bytes());
        d[7] = b'0' + insurer_check_digit(&d[..7]);
        Some(InsurerNumber(d))
    }

    /// The eight ASCII digits.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("00000000")
    }

    /// 法別番号: the first two digits (00 for National Health Insurance).
    pub fn law_number(&self) -> u8 {
        (self.0[0] - b'0') * 10 + (self.0[1] - b'0')
    }

    /// Whether this is a 後期高齢者医療 (late-stage elderly, 法別 39) insurer.
    pub fn is_late_elderly(&self) -> bool {
        self.law_number() == 39
    }

    /// Whether the check digit follows the rule of the 保険者番号設定要領: from the last of the
    /// preceding digits, multiply alternately by 2 and 1, add the digits of the products, and
    /// the check digit is 10 minus the last digit of the sum (0 when that is 0).
    pub fn has_valid_check_digit(&self) -> bool {
        insurer_check_digit(&self.0[..7]) == self.0[7] - b'0'
    }
}

fn insurer_check_digit(ascii: &[u8]) -> u8 {
    let sum: u32 = ascii
        .iter()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            let p = if i % 2 == 0 { d * 2 } else { d };
            p / 10 + p % 10
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

impl FromStr for InsurerNumber {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let half = crate::halfwidth_alnum(s.trim());
        let padded = if half.len() == 6 { format!("00{half}") } else { half };
        if padded.len() != 8 || !padded.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::InsuranceId {
                value: s.to_owned(),
                reason: "保険者番号 must be 8 digits (6 for National Health Insurance)",
            });
        }
        let mut d = [0u8; 8];
        d.copy_from_slice(padded.as_bytes());
        Ok(InsurerNumber(d))
    }
}

impl fmt::Display for InsurerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for InsurerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InsurerNumber({})", self.as_str())
    }
}

/// The JP-CLINS 被保険者個人識別子: `保険者番号(8):被保険者記号:被保険者番号:枝番(2 or empty)`,
/// with system `http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID`.
///
/// 記号 and 番号 may be written in full-width or half-width characters by different systems; they
/// are kept as sent ([`InsuranceId::to_string`] gives the original form) and compared in a
/// normalized form ([`InsuranceId::match_key`]) in which full-width digits and letters are
/// half-width.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct InsuranceId {
    insurer: InsurerNumber,
    symbol: String,
    number: String,
    branch: Option<[u8; 2]>,
}

impl InsuranceId {
    /// Builds an identifier from its parts. `symbol` and `number` must not contain `:` or white
    /// space; `branch` is 0..=99 when present.
    pub fn new(insurer: InsurerNumber, symbol: &str, number: &str, branch: Option<u8>) -> Result<Self, DomainError> {
        let s = format!("{}:{}:{}:{}", insurer, symbol, number, branch.map(|b| format!("{b:02}")).unwrap_or_default());
        s.parse()
    }

    /// The insurer (保険者番号).
    pub fn insurer(&self) -> InsurerNumber {
        self.insurer
    }

    /// 被保険者記号, as sent (may be empty).
    pub fn symbol(&self) -> &str {
        &self.symbol
    }

    /// 被保険者番号, as sent (may be empty).
    pub fn number(&self) -> &str {
        &self.number
    }

    /// 枝番 (two digits), if any.
    pub fn branch(&self) -> Option<&str> {
        self.branch.as_ref().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// A normalized form for linking: half-width alphanumerics, no spaces or hyphens in 記号 and
    /// 番号 (cards print 記号 like `ｱｲｳ-12` and desks type `アイウ12`).
    pub fn match_key(&self) -> String {
        let norm = |s: &str| -> String {
            crate::halfwidth_alnum(s).chars().filter(|c| !matches!(c, '-' | '－' | 'ー' | '‐' | ' ' | '　')).collect()
        };
        format!("{}:{}:{}:{}", self.insurer, norm(&self.symbol), norm(&self.number), self.branch().unwrap_or(""))
    }
}

impl FromStr for InsuranceId {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| DomainError::InsuranceId { value: s.to_owned(), reason };
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 4 {
            return Err(err("must have four parts separated by ':' (保険者番号:記号:番号:枝番)"));
        }
        let insurer_raw = parts[0];
        if insurer_raw.len() != 8 || !insurer_raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("保険者番号 must be 8 half-width digits"));
        }
        let insurer: InsurerNumber = insurer_raw.parse()?;
        for part in [parts[1], parts[2]] {
            if part.chars().any(|c| c.is_whitespace() || c == '^') {
                return Err(err("記号 and 番号 must not contain spaces or '^'"));
            }
        }
        let branch = match parts[3] {
            "" => None,
            b if b.len() == 2 && b.bytes().all(|x| x.is_ascii_digit()) => {
                let mut a = [0u8; 2];
                a.copy_from_slice(b.as_bytes());
                Some(a)
            }
            _ => return Err(err("枝番 must be empty or two half-width digits")),
        };
        Ok(InsuranceId { insurer, symbol: parts[1].to_owned(), number: parts[2].to_owned(), branch })
    }
}

impl fmt::Display for InsuranceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:{}", self.insurer, self.symbol, self.number, self.branch().unwrap_or(""))
    }
}

impl fmt::Debug for InsuranceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InsuranceId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_jp_clins_example() {
        let id: InsuranceId = "00012345:あいう:１８７:05".parse().unwrap();
        assert_eq!(id.insurer().as_str(), "00012345");
        assert_eq!(id.symbol(), "あいう");
        assert_eq!(id.number(), "１８７");
        assert_eq!(id.branch(), Some("05"));
        assert_eq!(id.to_string(), "00012345:あいう:１８７:05");
        assert_eq!(id.match_key(), "00012345:あいう:187:05");
    }

    #[test]
    fn empty_parts_are_allowed() {
        let id: InsuranceId = "39131234:::".parse().unwrap();
        assert_eq!(id.branch(), None);
        assert!(id.insurer().is_late_elderly());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "0001234:a:b:01",
            "00012345:a:b",
            "00012345:a b:c:01",
            "00012345:a:b:1",
            "00012345:a:b:001",
            "０００１２３４５:a:b:01",
            "00012345:a:b:c:01",
        ] {
            assert!(bad.parse::<InsuranceId>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn insurer_check_digit_matches_the_published_example() {
        // 33120015: 千葉県警察共済組合, the worked example of the 保険者番号設定要領.
        let n: InsurerNumber = "33120015".parse().unwrap();
        assert!(n.has_valid_check_digit());
        let n: InsurerNumber = "33120016".parse().unwrap();
        assert!(!n.has_valid_check_digit());
        assert_eq!(InsurerNumber::from_parts(33, 12, 1).unwrap().as_str(), "33120015");
    }

    #[test]
    fn match_key_folds_card_punctuation() {
        let a: InsuranceId = "06139999:ｱｲｳ-12:34:".parse().unwrap();
        let b: InsuranceId = "06139999:ｱｲｳ12:３４:".parse().unwrap();
        assert_eq!(a.match_key(), b.match_key());
    }

    proptest! {
        #[test]
        fn roundtrip(law in 0u8..=99, pref in 0u8..=47, ins in 0u16..=999, sym in "[0-9A-Zあ-ん]{0,6}", num in "[0-9]{0,10}", br in proptest::option::of(0u8..=99)) {
            let insurer = InsurerNumber::from_parts(law, pref, ins).unwrap();
            prop_assert!(insurer.has_valid_check_digit());
            let id = InsuranceId::new(insurer, &sym, &num, br).unwrap();
            let again: InsuranceId = id.to_string().parse().unwrap();
            prop_assert_eq!(again, id);
        }

        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = s.parse::<InsuranceId>();
        }
    }
}
