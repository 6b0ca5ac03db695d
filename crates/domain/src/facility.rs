use std::fmt;
use std::str::FromStr;

use crate::DomainError;

/// The fee-schedule digit (点数表番号) of a facility code: what kind of insured care it gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum FacilityKind {
    /// 1: 医科 (hospitals and clinics).
    Medical,
    /// 3: 歯科 (dental clinics).
    Dental,
    /// 4: 調剤 (pharmacies).
    Pharmacy,
    /// 6: 訪問看護 (home-visit nursing stations).
    VisitingNursing,
}

impl FacilityKind {
    /// The digit used in the 10-digit code.
    pub fn digit(self) -> u8 {
        match self {
            FacilityKind::Medical => 1,
            FacilityKind::Dental => 3,
            FacilityKind::Pharmacy => 4,
            FacilityKind::VisitingNursing => 6,
        }
    }

    fn from_digit(d: u8) -> Option<Self> {
        Some(match d {
            1 => FacilityKind::Medical,
            3 => FacilityKind::Dental,
            4 => FacilityKind::Pharmacy,
            6 => FacilityKind::VisitingNursing,
            _ => return None,
        })
    }
}

/// A 10-digit 医療機関コード: prefecture (2) + fee schedule (1) + the 7-digit code within the
/// prefecture. It can only hold a valid code.
///
/// The last digit is a Luhn check digit over all ten digits for codes issued by the regional
/// bureaus; the published JP-CLINS examples use made-up codes that fail it, so parsing does not
/// require it and [`FacilityCode::has_valid_check_digit`] tells.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FacilityCode([u8; 10]);

impl FacilityCode {
    /// Builds a code from its parts, computing the check digit. `local` is the six digits of
    /// 郡市区番号 + 医療機関番号 (0..=999_999).
    pub fn from_parts(prefecture: u8, kind: FacilityKind, local: u32) -> Option<Self> {
        if !(1..=47).contains(&prefecture) || local > 999_999 {
            return None;
        }
        let s = format!("{prefecture:02}{}{local:06}0", kind.digit());
        let mut digits = [0u8; 10];
        for (i, b) in s.bytes().enumerate() {
            digits[i] = b;
        }
        digits[9] = b'0' + luhn_check_digit(&digits[..9]);
        Some(FacilityCode(digits))
    }

    /// The prefecture number (1 北海道 … 13 東京都 … 47 沖縄県).
    pub fn prefecture(&self) -> u8 {
        (self.0[0] - b'0') * 10 + (self.0[1] - b'0')
    }

    /// The fee schedule: medical, dental, pharmacy, visiting nursing.
    pub fn kind(&self) -> FacilityKind {
        FacilityKind::from_digit(self.0[2] - b'0').unwrap_or(FacilityKind::Medical)
    }

    /// The code as ten ASCII digits.
    pub fn as_str(&self) -> &str {
        // The array only ever holds ASCII digits (checked in `from_str` and `from_parts`).
        std::str::from_utf8(&self.0).unwrap_or("0000000000")
    }

    /// The 7-digit code used on receipts (レセプト) without prefecture and fee schedule.
    pub fn receipt_code(&self) -> &str {
        &self.as_str()[3..]
    }

    /// Whether the Luhn check digit over all ten digits holds.
    pub fn has_valid_check_digit(&self) -> bool {
        luhn_check_digit(&self.0[..9]) == self.0[9] - b'0'
    }
}

fn luhn_check_digit(ascii_digits: &[u8]) -> u8 {
    let sum: u32 = ascii_digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

impl FromStr for FacilityCode {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| DomainError::FacilityCode { value: s.to_owned(), reason };
        let half = crate::halfwidth_alnum(s.trim());
        let bytes = half.as_bytes();
        if bytes.len() != 10 {
            return Err(err("must be exactly 10 digits"));
        }
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(err("must contain only digits"));
        }
        let mut digits = [0u8; 10];
        digits.copy_from_slice(bytes);
        let code = FacilityCode(digits);
        if !(1..=47).contains(&code.prefecture()) {
            return Err(err("prefecture number must be 01 to 47"));
        }
        if FacilityKind::from_digit(digits[2] - b'0').is_none() {
            return Err(err("fee-schedule digit must be 1 (医科), 3 (歯科), 4 (調剤) or 6 (訪問看護)"));
        }
        Ok(code)
    }
}

impl fmt::Display for FacilityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for FacilityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FacilityCode({})", self.as_str())
    }
}

impl serde::Serialize for FacilityCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for FacilityCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_jp_clins_example_code() {
        let c: FacilityCode = "1318814790".parse().unwrap();
        assert_eq!(c.prefecture(), 13);
        assert_eq!(c.kind(), FacilityKind::Medical);
        assert_eq!(c.receipt_code(), "8814790");
        // The published example is made up: its check digit does not hold.
        assert!(!c.has_valid_check_digit());
    }

    #[test]
    fn luhn_holds_for_a_published_prescription_code() {
        let c: FacilityCode = "0110113719".parse().unwrap();
        assert!(c.has_valid_check_digit());
    }

    #[test]
    fn full_width_digits_are_accepted() {
        let c: FacilityCode = "１３１８８１４７９０".parse().unwrap();
        assert_eq!(c.as_str(), "1318814790");
    }

    #[test]
    fn rejects_bad_codes() {
        for bad in ["", "131881479", "13188147900", "131881479a", "4818814790", "0018814790", "1328814790"] {
            assert!(bad.parse::<FacilityCode>().is_err(), "{bad} should be rejected");
        }
    }

    proptest! {
        #[test]
        fn from_parts_always_has_a_valid_check_digit(pref in 1u8..=47, local in 0u32..=999_999, k in 0usize..4) {
            let kind = [FacilityKind::Medical, FacilityKind::Dental, FacilityKind::Pharmacy, FacilityKind::VisitingNursing][k];
            let c = FacilityCode::from_parts(pref, kind, local).unwrap();
            prop_assert!(c.has_valid_check_digit());
            prop_assert_eq!(c.prefecture(), pref);
            prop_assert_eq!(c.kind(), kind);
            prop_assert_eq!(c.as_str().parse::<FacilityCode>().unwrap(), c);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC*") {
            let _ = s.parse::<FacilityCode>();
        }
    }
}
