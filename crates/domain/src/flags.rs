use crate::systems;

/// The JP-CLINS indication flags a sender puts in `meta.tag` (system
/// `http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// `LTS` 長期保存: keep beyond the normal retention period.
    pub const LTS: Flags = Flags(1);
    /// `UNINFORMED` 未告知: the patient has not been told; hidden from the patient and proxies.
    pub const UNINFORMED: Flags = Flags(2);
    /// `UNDELIVERED` 未提供: not to be provided (Condition).
    pub const UNDELIVERED: Flags = Flags(4);

    /// No flags.
    pub const fn empty() -> Flags {
        Flags(0)
    }

    /// The raw bits (stored in the database).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// From stored bits; unknown bits are dropped.
    pub fn from_bits(bits: u8) -> Flags {
        Flags(bits & 0b111)
    }

    /// Whether every flag in `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the flags in `other`.
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }

    /// The flag for a `meta.tag` coding, if it is one.
    pub fn from_tag(system: &str, code: &str) -> Option<Flags> {
        if system != systems::EHRSHRS_INDICATION {
            return None;
        }
        match code {
            "LTS" => Some(Flags::LTS),
            "UNINFORMED" => Some(Flags::UNINFORMED),
            "UNDELIVERED" => Some(Flags::UNDELIVERED),
            _ => None,
        }
    }

    /// The tag codes of the set flags.
    pub fn codes(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.contains(Flags::LTS) {
            v.push("LTS");
        }
        if self.contains(Flags::UNINFORMED) {
            v.push("UNINFORMED");
        }
        if self.contains(Flags::UNDELIVERED) {
            v.push("UNDELIVERED");
        }
        v
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_map_to_flags() {
        assert_eq!(Flags::from_tag(systems::EHRSHRS_INDICATION, "LTS"), Some(Flags::LTS));
        assert_eq!(Flags::from_tag("http://other", "LTS"), None);
        let f = Flags::LTS | Flags::UNINFORMED;
        assert!(f.contains(Flags::LTS) && f.contains(Flags::UNINFORMED) && !f.contains(Flags::UNDELIVERED));
        assert_eq!(Flags::from_bits(f.bits()), f);
        assert_eq!(f.codes(), vec!["LTS", "UNINFORMED"]);
    }
}
