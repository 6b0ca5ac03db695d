use std::fmt;
use std::str::FromStr;

use crate::{DomainError, FacilityCode};

/// The identifier of a JP-CLINS submission Bundle: `医療機関番号(10)^西暦年(4)^識別子` where the
/// last part is 1 to 36 half-width letters, digits or hyphens (rule R2152). Resubmitting a
/// Bundle with the same identifier replaces the earlier one; deleting by it removes it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleIdentifier {
    facility: FacilityCode,
    year: u16,
    local: String,
}

impl BundleIdentifier {
    /// The system URI the identifier is carried under.
    pub const SYSTEM: &'static str = crate::systems::BUNDLE_IDENTIFIER;

    /// The submitting facility.
    pub fn facility(&self) -> FacilityCode {
        self.facility
    }

    /// The year part.
    pub fn year(&self) -> u16 {
        self.year
    }

    /// The facility-local part.
    pub fn local(&self) -> &str {
        &self.local
    }
}

impl FromStr for BundleIdentifier {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| DomainError::BundleIdentifier { value: s.to_owned(), reason };
        let mut parts = s.split('^');
        let (Some(f), Some(y), Some(l), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(err("must be 医療機関番号^西暦年^識別子 (three parts separated by '^')"));
        };
        let fb = f.as_bytes();
        // JP-CLINS limits the fee-schedule digit to 1-3 and the prefecture's first digit to 0-4.
        if fb.len() != 10 || !fb.iter().all(u8::is_ascii_digit) || !(b'1'..=b'3').contains(&fb[2]) {
            return Err(err("医療機関番号 must be 10 half-width digits matching [0-4][0-9][1-3][0-9]{7}"));
        }
        let facility: FacilityCode = f.parse().map_err(|_| err("医療機関番号 is not a valid facility code"))?;
        let yb = y.as_bytes();
        if yb.len() != 4 || !yb.iter().all(u8::is_ascii_digit) || &y[..2] != "20" || !(b'2'..=b'3').contains(&yb[2]) {
            return Err(err("西暦年 must be four digits from 2020 to 2039"));
        }
        let year: u16 = y.parse().map_err(|_| err("西暦年 must be four digits"))?;
        if l.is_empty() || l.len() > 36 || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(err("識別子 must be 1 to 36 half-width letters, digits or hyphens"));
        }
        Ok(BundleIdentifier { facility, year, local: l.to_owned() })
    }
}

impl fmt::Display for BundleIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}^{}^{}", self.facility, self.year, self.local)
    }
}

impl fmt::Debug for BundleIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleIdentifier({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_valid_identifier() {
        let b: BundleIdentifier = "1318814790^2024^ABC-123".parse().unwrap();
        assert_eq!(b.facility().as_str(), "1318814790");
        assert_eq!(b.year(), 2024);
        assert_eq!(b.local(), "ABC-123");
        assert_eq!(b.to_string(), "1318814790^2024^ABC-123");
    }

    #[test]
    fn rejects_invalid_identifiers() {
        for bad in [
            "1318814790^2024",
            "1318814790^1999^A",
            "1348814790^2024^A",
            "1318814790^2024^",
            "1318814790^2024^A_B",
            "1318814790^2024^0123456789012345678901234567890123456",
            "131881479^2024^A",
            "1318814790^2024^A^B",
        ] {
            assert!(bad.parse::<BundleIdentifier>().is_err(), "{bad} should be rejected");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = s.parse::<BundleIdentifier>();
        }

        #[test]
        fn valid_ones_roundtrip(pref in 1u8..=47, mid in 0u32..=9_999_999, y in 2020u16..=2039, local in "[A-Za-z0-9-]{1,36}") {
            let s = format!("{pref:02}1{mid:07}^{y}^{local}");
            let b: BundleIdentifier = s.parse().unwrap();
            prop_assert_eq!(b.to_string(), s);
        }
    }
}
