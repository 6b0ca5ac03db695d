//! What each profession may see, and for how long back. One table, used by the gate and shown
//! in the documentation and the operator console.
//!
//! | class | 医師 | 歯科医師 | 薬剤師 | 看護師 | その他医療職 | 事務職 |
//! |---|---|---|---|---|---|---|
//! | 基本情報 (Patient), 受診・入院 (Encounter) | ○ | ○ | ○ | ○ | ○ | ○ |
//! | 傷病名, 感染症, アレルギー (2), 検査, 処方 (the 6 items) | ○ | ○ | ○ | ○ | ○ | × |
//! | 患者サマリー | ○ | ○ | ○ | ○ | × | × |
//! | 診療情報提供書, 退院時サマリー, 健診結果, 文書・記録 | ○ | ○ | × | ○ | × | × |
//! | その他の診療情報 | ○ | ○ | × | ○ | ○ | × |
//!
//! Period back from today: 医師・歯科医師・看護師 everything kept; 薬剤師・その他医療職 1 year;
//! 事務職 1 year (visit lists). Records without a clinical date count as recent.
//!
//! Access through the records of one's own facility is not limited by this table: a facility
//! always sees what it sent itself.

use musubi_domain::{Profession, ResourceClass};

/// Whether `p` may see records of class `c`.
pub fn profession_may_see(p: Profession, c: ResourceClass) -> bool {
    use Profession as P;
    use ResourceClass as C;
    match c {
        C::Demographics | C::Encounter | C::Administrative => true,
        C::Diagnosis | C::Infection | C::DrugAllergy | C::OtherAllergy | C::Lab | C::Prescription => p != P::Clerk,
        C::PatientSummary => matches!(p, P::Doctor | P::Dentist | P::Pharmacist | P::Nurse),
        C::Referral | C::DischargeSummary | C::Checkup | C::Document => matches!(p, P::Doctor | P::Dentist | P::Nurse),
        C::Other => matches!(p, P::Doctor | P::Dentist | P::Nurse | P::OtherLicensed),
    }
}

/// The classes `p` may see.
pub fn visible_classes(p: Profession) -> Vec<&'static str> {
    ResourceClass::ALL.iter().filter(|c| profession_may_see(p, **c)).map(|c| c.code()).collect()
}

/// How far back (days) `p` may see; None = everything kept.
pub fn period_days(p: Profession) -> Option<i64> {
    match p {
        Profession::Doctor | Profession::Dentist | Profession::Nurse => None,
        Profession::Pharmacist | Profession::OtherLicensed | Profession::Clerk => Some(365),
    }
}

/// The earliest clinical date (epoch ms) `p` may see at `now`.
pub fn earliest_visible(p: Profession, now: i64) -> Option<i64> {
    period_days(p).map(|d| now - d * 86_400_000)
}

/// The professions that may receive a patient's consent at the visit and record it: the
/// licensed clinical professions and the clerks at the desk (事務職, 地域連携室), who take the
/// consent forms in practice. Other licensed staff (検査技師, 療法士) do not.
pub fn may_receive_consent(p: Profession) -> bool {
    !matches!(p, Profession::OtherLicensed)
}

/// What an emergency access (break-glass) opens: what treating a patient who cannot consent
/// needs — problems, allergies, infections, labs, prescriptions, summaries, referral and
/// discharge documents, notes, visits — but not health-checkup reports or other data.
pub fn emergency_may_see(c: ResourceClass) -> bool {
    !matches!(c, ResourceClass::Checkup | ResourceClass::Other)
}

/// The professions that may open a record by emergency access (break-glass).
pub fn may_break_glass(p: Profession) -> bool {
    matches!(p, Profession::Doctor | Profession::Dentist | Profession::Nurse | Profession::Pharmacist)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clerks_see_demographics_and_visits_only() {
        for c in ResourceClass::ALL {
            let expected =
                matches!(c, ResourceClass::Demographics | ResourceClass::Encounter | ResourceClass::Administrative);
            assert_eq!(profession_may_see(Profession::Clerk, c), expected, "{c}");
        }
    }

    #[test]
    fn doctors_see_everything() {
        assert!(ResourceClass::ALL.iter().all(|c| profession_may_see(Profession::Doctor, *c)));
    }

    #[test]
    fn pharmacists_see_the_six_items_not_referrals() {
        assert!(profession_may_see(Profession::Pharmacist, ResourceClass::Prescription));
        assert!(profession_may_see(Profession::Pharmacist, ResourceClass::DrugAllergy));
        assert!(!profession_may_see(Profession::Pharmacist, ResourceClass::Referral));
        assert_eq!(period_days(Profession::Pharmacist), Some(365));
    }
}
