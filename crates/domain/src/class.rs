use std::fmt;
use std::str::FromStr;

/// What kind of clinical information a record is. The six shared items of the national service
/// and its documents get their own classes because retention, the emergency summary and the
/// access rules treat them differently; everything else is kept too, as `Other` or by its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceClass {
    /// 傷病名 (Condition).
    Diagnosis,
    /// 感染症 (Observation with one of the 5 infection items).
    Infection,
    /// 薬剤アレルギー等 (AllergyIntolerance, category medication).
    DrugAllergy,
    /// その他アレルギー等 (AllergyIntolerance, food / environment / biologic).
    OtherAllergy,
    /// 検査 (Observation with one of the 43 core lab items).
    Lab,
    /// 処方 (MedicationRequest).
    Prescription,
    /// 診療情報提供書 (document Bundle, Composition 57133-1).
    Referral,
    /// 退院時サマリー (Composition 18842-5), shared only attached to a referral.
    DischargeSummary,
    /// 健康診断結果報告書 (document Bundle, Composition 53576-5).
    Checkup,
    /// 患者サマリー (document Bundle, Composition 60591-5).
    PatientSummary,
    /// Other documents and notes (progress notes, reports, DocumentReference).
    Document,
    /// Visits and admissions (Encounter).
    Encounter,
    /// Who the patient is (Patient): demographics, not clinical content.
    Demographics,
    /// Other clinical data (other Observations, procedures, …).
    Other,
    /// Administrative resources that are not about one patient (Organization, Practitioner).
    Administrative,
}

impl ResourceClass {
    /// Every class, in a stable order.
    pub const ALL: [ResourceClass; 15] = [
        ResourceClass::Diagnosis,
        ResourceClass::Infection,
        ResourceClass::DrugAllergy,
        ResourceClass::OtherAllergy,
        ResourceClass::Lab,
        ResourceClass::Prescription,
        ResourceClass::Referral,
        ResourceClass::DischargeSummary,
        ResourceClass::Checkup,
        ResourceClass::PatientSummary,
        ResourceClass::Document,
        ResourceClass::Encounter,
        ResourceClass::Demographics,
        ResourceClass::Other,
        ResourceClass::Administrative,
    ];

    /// The stable code stored in the database and shown in the API.
    pub fn code(self) -> &'static str {
        match self {
            ResourceClass::Diagnosis => "diagnosis",
            ResourceClass::Infection => "infection",
            ResourceClass::DrugAllergy => "drug-allergy",
            ResourceClass::OtherAllergy => "other-allergy",
            ResourceClass::Lab => "lab",
            ResourceClass::Prescription => "prescription",
            ResourceClass::Referral => "referral",
            ResourceClass::DischargeSummary => "discharge-summary",
            ResourceClass::Checkup => "checkup",
            ResourceClass::PatientSummary => "patient-summary",
            ResourceClass::Document => "document",
            ResourceClass::Encounter => "encounter",
            ResourceClass::Demographics => "demographics",
            ResourceClass::Other => "other",
            ResourceClass::Administrative => "administrative",
        }
    }

    /// The Japanese name people see.
    pub fn label_ja(self) -> &'static str {
        match self {
            ResourceClass::Diagnosis => "傷病名",
            ResourceClass::Infection => "感染症",
            ResourceClass::DrugAllergy => "薬剤アレルギー等",
            ResourceClass::OtherAllergy => "その他アレルギー等",
            ResourceClass::Lab => "検査",
            ResourceClass::Prescription => "処方",
            ResourceClass::Referral => "診療情報提供書",
            ResourceClass::DischargeSummary => "退院時サマリー",
            ResourceClass::Checkup => "健康診断結果報告書",
            ResourceClass::PatientSummary => "患者サマリー",
            ResourceClass::Document => "文書・記録",
            ResourceClass::Encounter => "受診・入院",
            ResourceClass::Demographics => "基本情報",
            ResourceClass::Other => "その他の診療情報",
            ResourceClass::Administrative => "管理情報",
        }
    }

    /// Whether this is clinical content (as opposed to demographics, visit lists and
    /// administrative data that clerks may see).
    pub fn is_clinical(self) -> bool {
        !matches!(self, ResourceClass::Demographics | ResourceClass::Encounter | ResourceClass::Administrative)
    }
}

impl FromStr for ResourceClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceClass::ALL.into_iter().find(|c| c.code() == s).ok_or_else(|| format!("unknown resource class {s:?}"))
    }
}

impl fmt::Display for ResourceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl serde::Serialize for ResourceClass {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in ResourceClass::ALL {
            assert!(seen.insert(c.code()));
            assert_eq!(c.code().parse::<ResourceClass>().unwrap(), c);
        }
    }
}
