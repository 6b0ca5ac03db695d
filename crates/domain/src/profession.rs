use std::fmt;
use std::str::FromStr;

/// A user's profession. Access rules depend on it (a clerk sees demographics and visit lists,
/// not clinical content).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Profession {
    /// 医師
    Doctor,
    /// 歯科医師
    Dentist,
    /// 薬剤師
    Pharmacist,
    /// 看護師
    Nurse,
    /// その他の医療資格者 (other licensed staff: 臨床検査技師, 理学療法士, …)
    OtherLicensed,
    /// 事務職 (clerks, 地域連携室)
    Clerk,
}

impl Profession {
    /// Every profession.
    pub const ALL: [Profession; 6] = [
        Profession::Doctor,
        Profession::Dentist,
        Profession::Pharmacist,
        Profession::Nurse,
        Profession::OtherLicensed,
        Profession::Clerk,
    ];

    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Profession::Doctor => "doctor",
            Profession::Dentist => "dentist",
            Profession::Pharmacist => "pharmacist",
            Profession::Nurse => "nurse",
            Profession::OtherLicensed => "other-licensed",
            Profession::Clerk => "clerk",
        }
    }

    /// The Japanese name.
    pub fn label_ja(self) -> &'static str {
        match self {
            Profession::Doctor => "医師",
            Profession::Dentist => "歯科医師",
            Profession::Pharmacist => "薬剤師",
            Profession::Nurse => "看護師",
            Profession::OtherLicensed => "その他医療職",
            Profession::Clerk => "事務職",
        }
    }
}

impl FromStr for Profession {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profession::ALL
            .into_iter()
            .find(|p| p.code() == s || p.label_ja() == s)
            .ok_or_else(|| format!("unknown profession {s:?}"))
    }
}

impl fmt::Display for Profession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
