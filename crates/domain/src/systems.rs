//! Canonical URIs of the identifier and code systems Musubi interprets
//! (from the JP Core and JP-CLINS alias files).

/// 被保険者個人識別子 (JP-CLINS).
pub const INSURANCE_MEMBER_ID: &str = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID";
/// Bundle identifier of a JP-CLINS submission.
pub const BUNDLE_IDENTIFIER: &str = "http://jpfhir.jp/fhir/clins/bundle-identifier";
/// Indication flags in `meta.tag`: LTS, UNINFORMED, UNDELIVERED.
pub const EHRSHRS_INDICATION: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication";
/// The extension carrying the 10-digit institution number on every JP-CLINS resource.
pub const EXT_INSTITUTION_NUMBER: &str =
    "http://jpfhir.jp/fhir/clins/Extension/StructureDefinition/JP_eCS_InstitutionNumber";
/// The department (診療科) extension.
pub const EXT_DEPARTMENT: &str = "http://jpfhir.jp/fhir/eCS/Extension/StructureDefinition/JP_eCS_Department";
/// Identifier system of the 10-digit 保険医療機関番号.
pub const INSTITUTION_NUMBER: &str = "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";
/// Prefix of a facility's local patient id system: `urn:oid:1.2.392.100495.20.3.51.1` + 10-digit code.
pub const LOCAL_PATIENT_ID_PREFIX: &str = "urn:oid:1.2.392.100495.20.3.51.1";
/// Bundle resource-type tag system (5情報 collection Bundles).
pub const BUNDLE_RESOURCE_TYPE: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/BundleResourceType_CS";
/// MEDIS 病名管理番号.
pub const MEDIS_DISEASE: &str = "http://medis.or.jp/CodeSystem/master-disease-keyNumber";
/// JLAC10 17-digit codes.
pub const JLAC10: &str = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits";
/// The 43 core lab items (JLAC10 grouping).
pub const CORE_LABO_JLAC10: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS";
/// The 43 core lab items (JLAC11 grouping).
pub const CORE_LABO_JLAC11: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC11/JP_CLINS_ObsLabResult_CoreLabo_CS";
/// The 5 infection items (JLAC10 grouping).
pub const INFECTION_LABO_JLAC10: &str =
    "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_InfectionLabo_CS";
/// The 5 infection items (JLAC11 grouping).
pub const INFECTION_LABO_JLAC11: &str =
    "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC11/JP_CLINS_ObsLabResult_InfectionLabo_CS";
/// Facility-local lab code (required on JP-CLINS lab results, rule R6021).
pub const LAB_LOCAL_CODE: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_LocalCode_CS";
/// YJ drug codes.
pub const YJ: &str = "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code";
/// 一般名処方マスタ codes.
pub const GENERAL_ORDER_CODE: &str = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationGeneralOrderCode";
/// Explicitly uncoded medication.
pub const MEDICATION_NOCODED: &str = "http://jpfhir.jp/fhir/eCS/CodeSystem/MedicationCodeNocoded_CS";
/// J-FAGY food allergens.
pub const JFAGY_FOOD: &str = "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyFoodAllergen_CS";
/// J-FAGY non-food, non-medication allergens.
pub const JFAGY_NON_FOOD: &str = "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyNonFoodNonMedicationAllergen_CS";
/// J-FAGY medication allergens.
pub const JFAGY_MEDICATION: &str = "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyMedicationAllergen_CS";
/// The LOINC system (document types).
pub const LOINC: &str = "http://loinc.org";
/// Document type codes used by JP-CLINS Compositions.
pub const DOC_TYPECODES: &str = "http://jpfhir.jp/fhir/Common/CodeSystem/doc-typecodes";
/// ISO 21090 name representation extension (IDE kanji / SYL kana).
pub const EXT_NAME_REPRESENTATION: &str = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation";
