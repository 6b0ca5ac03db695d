//! The resource types the API serves, their interactions and search parameters.
//!
//! This table is the single source of truth: the router, the search planner and the
//! CapabilityStatement are all built from it, so `metadata` says exactly what works.

use std::fmt;
use std::str::FromStr;

/// What kind of value a search parameter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// `system|code` against codings, identifiers, codes.
    Token,
    /// A literal reference `Type/id`.
    Reference,
    /// A date range with prefixes (eq, ne, gt, lt, ge, le, sa, eb, ap).
    Date,
    /// A string, matched case- and width-insensitively from the start (or `:exact`, `:contains`).
    String,
    /// The patient a record is about (the store keeps it in its own column).
    Patient,
}

impl ParamKind {
    /// The FHIR search-param type name.
    pub fn fhir_type(self) -> &'static str {
        match self {
            ParamKind::Token => "token",
            ParamKind::Reference | ParamKind::Patient => "reference",
            ParamKind::Date => "date",
            ParamKind::String => "string",
        }
    }
}

/// One search parameter of a resource type.
#[derive(Debug, Clone, Copy)]
pub struct SearchParamDef {
    /// The name in the query string.
    pub name: &'static str,
    /// How it compares.
    pub kind: ParamKind,
    /// The element paths it indexes (FHIRPath-like; `[x]` marks a choice type).
    pub paths: &'static [&'static [&'static str]],
    /// Human description for the CapabilityStatement.
    pub doc: &'static str,
}

/// An interaction the API supports on a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// GET [type]/[id]
    Read,
    /// GET [type]/[id]/_history/[vid]
    Vread,
    /// PUT [type]/[id]
    Update,
    /// DELETE [type]/[id]
    Delete,
    /// GET [type]/[id]/_history
    HistoryInstance,
    /// GET [type]/_history
    HistoryType,
    /// POST [type]
    Create,
    /// GET [type]?…
    SearchType,
}

impl Interaction {
    /// The FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            Interaction::Read => "read",
            Interaction::Vread => "vread",
            Interaction::Update => "update",
            Interaction::Delete => "delete",
            Interaction::HistoryInstance => "history-instance",
            Interaction::HistoryType => "history-type",
            Interaction::Create => "create",
            Interaction::SearchType => "search-type",
        }
    }
}

const ALL_INTERACTIONS: &[Interaction] = &[
    Interaction::Read,
    Interaction::Vread,
    Interaction::Update,
    Interaction::Delete,
    Interaction::HistoryInstance,
    Interaction::HistoryType,
    Interaction::Create,
    Interaction::SearchType,
];
const READ_ONLY: &[Interaction] = &[Interaction::Read, Interaction::SearchType];

macro_rules! resource_types {
    ($($name:ident),* $(,)?) => {
        /// A FHIR resource type Musubi serves.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ResourceType { $(#[doc = stringify!($name)] $name),* }

        impl ResourceType {
            /// Every served type.
            pub const ALL: &'static [ResourceType] = &[$(ResourceType::$name),*];

            /// The type name.
            pub fn as_str(self) -> &'static str {
                match self { $(ResourceType::$name => stringify!($name)),* }
            }
        }

        impl FromStr for ResourceType {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $(stringify!($name) => Ok(ResourceType::$name),)*
                    _ => Err(format!("unsupported resource type {s:?}")),
                }
            }
        }
    };
}

resource_types!(
    Patient,
    Practitioner,
    PractitionerRole,
    Organization,
    RelatedPerson,
    Coverage,
    Encounter,
    Condition,
    Observation,
    AllergyIntolerance,
    MedicationRequest,
    MedicationAdministration,
    MedicationDispense,
    MedicationStatement,
    Immunization,
    Procedure,
    ServiceRequest,
    DiagnosticReport,
    ImagingStudy,
    Specimen,
    CarePlan,
    FamilyMemberHistory,
    Composition,
    DocumentReference,
    Bundle,
    Consent,
    AuditEvent,
    Provenance,
);

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const fn p(
    name: &'static str,
    kind: ParamKind,
    paths: &'static [&'static [&'static str]],
    doc: &'static str,
) -> SearchParamDef {
    SearchParamDef { name, kind, paths, doc }
}

use ParamKind::String as Text;
use ParamKind::{Date, Reference, Token};

macro_rules! params {
    ($($e:expr),* $(,)?) => {{
        const P: &[SearchParamDef] = &[$($e),*];
        P
    }};
}

const IDENTIFIER: SearchParamDef = p("identifier", Token, &[&["identifier"]], "A business identifier (system|value)");
const PATIENT: SearchParamDef =
    p("patient", ParamKind::Patient, &[], "The patient the record is about (Patient/id or id)");
const SUBJECT: SearchParamDef = p("subject", Reference, &[&["subject"]], "The subject (literal reference)");
const ENCOUNTER: SearchParamDef = p("encounter", Reference, &[&["encounter"]], "The encounter");
const CATEGORY: SearchParamDef = p("category", Token, &[&["category"]], "Category code");
const CODE: SearchParamDef = p("code", Token, &[&["code"]], "Code (system|code)");
const STATUS: SearchParamDef = p("status", Token, &[&["status"]], "Status");

impl ResourceType {
    /// The interactions supported on this type.
    pub fn interactions(self) -> &'static [Interaction] {
        match self {
            // The audit log is written only by Musubi itself.
            ResourceType::AuditEvent => READ_ONLY,
            _ => ALL_INTERACTIONS,
        }
    }

    /// Whether `interaction` is supported.
    pub fn supports(self, interaction: Interaction) -> bool {
        self.interactions().contains(&interaction)
    }

    /// The search parameters of this type (besides `_id` and `_lastUpdated`, which every type has).
    pub fn search_params(self) -> &'static [SearchParamDef] {
        match self {
            ResourceType::Patient => params![
                IDENTIFIER,
                p(
                    "name",
                    Text,
                    &[&["name", "family"], &["name", "given"], &["name", "text"]],
                    "Any part of a name (kanji or kana)"
                ),
                p("family", Text, &[&["name", "family"]], "Family name"),
                p("given", Text, &[&["name", "given"]], "Given name"),
                p("birthdate", Date, &[&["birthDate"]], "Birth date"),
                p("gender", Token, &[&["gender"]], "Administrative gender"),
                p("telecom", Token, &[&["telecom"]], "Phone or e-mail"),
                p("address-postalcode", Text, &[&["address", "postalCode"]], "Postal code"),
            ],
            ResourceType::Practitioner | ResourceType::RelatedPerson => {
                params![
                    IDENTIFIER,
                    p(
                        "name",
                        Text,
                        &[&["name", "family"], &["name", "given"], &["name", "text"]],
                        "Any part of a name"
                    )
                ]
            }
            ResourceType::Organization => {
                params![IDENTIFIER, p("name", Text, &[&["name"]], "Name"), p("type", Token, &[&["type"]], "Kind")]
            }
            ResourceType::PractitionerRole => params![
                IDENTIFIER,
                p("practitioner", Reference, &[&["practitioner"]], "The practitioner"),
                p("organization", Reference, &[&["organization"]], "The organization"),
            ],
            ResourceType::Coverage => params![
                IDENTIFIER,
                PATIENT,
                p("beneficiary", Reference, &[&["beneficiary"]], "The beneficiary"),
                STATUS
            ],
            ResourceType::Encounter => params![
                IDENTIFIER,
                PATIENT,
                SUBJECT,
                p("date", Date, &[&["period"]], "The period of the encounter"),
                p("class", Token, &[&["class"]], "Inpatient, outpatient, emergency …"),
                p("type", Token, &[&["type"]], "Type"),
                STATUS,
            ],
            ResourceType::Condition => params![
                IDENTIFIER,
                PATIENT,
                SUBJECT,
                ENCOUNTER,
                CATEGORY,
                CODE,
                p(
                    "clinical-status",
                    Token,
                    &[&["clinicalStatus"]],
                    "active | recurrence | relapse | inactive | remission | resolved"
                ),
                p("verification-status", Token, &[&["verificationStatus"]], "Verification status"),
                p("onset-date", Date, &[&["onset[x]"]], "Onset"),
                p("recorded-date", Date, &[&["recordedDate"]], "Recorded"),
            ],
            ResourceType::Observation => params![
                IDENTIFIER,
                PATIENT,
                SUBJECT,
                ENCOUNTER,
                CATEGORY,
                CODE,
                STATUS,
                p("date", Date, &[&["effective[x]"]], "Clinically relevant time"),
            ],
            ResourceType::AllergyIntolerance => params![
                IDENTIFIER,
                PATIENT,
                p("category", Token, &[&["category"]], "food | medication | environment | biologic"),
                CODE,
                p("clinical-status", Token, &[&["clinicalStatus"]], "active | inactive | resolved"),
                p("criticality", Token, &[&["criticality"]], "low | high | unable-to-assess"),
                p("date", Date, &[&["recordedDate"]], "Recorded"),
                p("onset", Date, &[&["onset[x]"]], "Onset"),
            ],
            ResourceType::MedicationRequest => params![
                IDENTIFIER,
                PATIENT,
                SUBJECT,
                ENCOUNTER,
                CATEGORY,
                p("code", Token, &[&["medicationCodeableConcept"]], "Medication code (YJ, 一般名 …)"),
                STATUS,
                p("intent", Token, &[&["intent"]], "Intent"),
                p("authoredon", Date, &[&["authoredOn"]], "When written"),
            ],
            ResourceType::MedicationAdministration => params![
                IDENTIFIER,
                PATIENT,
                SUBJECT,
                p("code", Token, &[&["medicationCodeableConcept"]], "Medication code"),
                STATUS,
                p("effective-time", Date, &[&["effective[x]"]], "When given"),
            ],
            ResourceType::MedicationDispense => params![
                IDENTIFIER,
                PATIENT,
                SUBJECT,
                p("code", Token, &[&["medicationCodeableConcept"]], "Medication code"),
                STATUS,
                p("whenhandedover", Date, &[&["whenHandedOver"]], "When handed over"),
            ],
            ResourceType::MedicationStatement => params![
                IDENTIFIER,
                PATIENT,
                SUBJECT,
                p("code", Token, &[&["medicationCodeableConcept"]], "Medication code"),
                STATUS,
                p("effective", Date, &[&["effective[x]"]], "When taken"),
            ],
            ResourceType::Immunization => params![
                IDENTIFIER,
                PATIENT,
                p("vaccine-code", Token, &[&["vaccineCode"]], "Vaccine"),
                p("date", Date, &[&["occurrence[x]"]], "When given"),
                STATUS,
            ],
            ResourceType::Procedure => params![
                IDENTIFIER,
                PATIENT,
                SUBJECT,
                ENCOUNTER,
                CATEGORY,
                CODE,
                STATUS,
                p("date", Date, &[&["performed[x]"]], "When performed"),
            ],
            ResourceType::ServiceRequest => params![
                IDENTIFIER,
                PATIENT,
                SUBJECT,
                ENCOUNTER,
                CATEGORY,
                CODE,
                STATUS,
                p("authored", Date, &[&["authoredOn"]], "When requested"),
            ],
            ResourceType::DiagnosticReport => params![
                IDENTIFIER,
                PATIENT,
                SUBJECT,
                ENCOUNTER,
                CATEGORY,
                CODE,
                STATUS,
                p("date", Date, &[&["effective[x]"]], "Clinically relevant time"),
            ],
            ResourceType::ImagingStudy => params![
                IDENTIFIER,
                PATIENT,
                SUBJECT,
                ENCOUNTER,
                p("modality", Token, &[&["modality"], &["series", "modality"]], "Modality"),
                STATUS,
                p("started", Date, &[&["started"]], "When started"),
            ],
            ResourceType::Specimen => {
                params![IDENTIFIER, PATIENT, SUBJECT, p("type", Token, &[&["type"]], "Specimen type")]
            }
            ResourceType::CarePlan => {
                params![IDENTIFIER, PATIENT, SUBJECT, CATEGORY, STATUS, p("date", Date, &[&["period"]], "Period")]
            }
            ResourceType::FamilyMemberHistory => {
                params![IDENTIFIER, PATIENT, STATUS, p("date", Date, &[&["date"]], "When recorded")]
            }
            ResourceType::Composition => params![
                IDENTIFIER,
                PATIENT,
                SUBJECT,
                ENCOUNTER,
                p("type", Token, &[&["type"]], "Document type (57133-1 診療情報提供書 …)"),
                CATEGORY,
                STATUS,
                p("date", Date, &[&["date"]], "Composition date"),
                p("author", Reference, &[&["author"]], "Author"),
            ],
            ResourceType::DocumentReference => params![
                IDENTIFIER,
                PATIENT,
                SUBJECT,
                p("type", Token, &[&["type"]], "Document type"),
                CATEGORY,
                STATUS,
                p("date", Date, &[&["date"]], "When created"),
            ],
            ResourceType::Bundle => params![
                p("identifier", Token, &[&["identifier"]], "Bundle identifier (医療機関番号^年^識別子)"),
                p("type", Token, &[&["type"]], "document | collection | …"),
                p("timestamp", Date, &[&["timestamp"]], "When assembled"),
                p(
                    "patient",
                    ParamKind::Patient,
                    &[],
                    "The patient of a JP-CLINS document or collection Bundle (Musubi extension)"
                ),
                p(
                    "composition-type",
                    Token,
                    &[&["entry", "resource", "type"]],
                    "Type of the document's Composition (Musubi extension)"
                ),
                p(
                    "recipient",
                    Token,
                    &[],
                    "医療機関番号 of the facility a referral (診療情報提供書) is addressed to (Musubi extension)"
                ),
            ],
            ResourceType::Consent => params![
                IDENTIFIER,
                PATIENT,
                STATUS,
                p("category", Token, &[&["category"]], "Category"),
                p("date", Date, &[&["dateTime"]], "When consented"),
            ],
            ResourceType::AuditEvent => params![
                p("date", Date, &[], "When the event was recorded"),
                p("patient", ParamKind::Patient, &[], "The patient whose data was accessed"),
                p("agent", Token, &[], "Who (user or system name)"),
                p("action", Token, &[], "C | R | U | D | E"),
                p("outcome", Token, &[], "0 | 4 | 8 | 12"),
            ],
            ResourceType::Provenance => params![
                PATIENT,
                p("target", Reference, &[&["target"]], "What was made"),
                p("recorded", Date, &[&["recorded"]], "When recorded"),
                p("agent", Reference, &[&["agent", "who"]], "Who"),
            ],
        }
    }

    /// The search parameter named `name`, if the type has it.
    pub fn search_param(self, name: &str) -> Option<&'static SearchParamDef> {
        self.search_params().iter().find(|p| p.name == name)
    }

    /// The element path(s) that name the patient a resource is about (checked in order).
    pub fn patient_paths(self) -> &'static [&'static [&'static str]] {
        match self {
            ResourceType::Patient => &[],
            ResourceType::Coverage => &[&["beneficiary"]],
            ResourceType::AllergyIntolerance
            | ResourceType::Immunization
            | ResourceType::FamilyMemberHistory
            | ResourceType::Consent => &[&["patient"]],
            ResourceType::RelatedPerson => &[&["patient"]],
            ResourceType::Provenance => &[&["target"]],
            ResourceType::Practitioner
            | ResourceType::PractitionerRole
            | ResourceType::Organization
            | ResourceType::AuditEvent
            | ResourceType::Bundle => &[],
            _ => &[&["subject"], &["patient"]],
        }
    }
}

impl serde::Serialize for ResourceType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        for t in ResourceType::ALL {
            assert_eq!(t.as_str().parse::<ResourceType>().unwrap(), *t);
        }
        assert!("Foo".parse::<ResourceType>().is_err());
    }

    #[test]
    fn params_are_unique_per_type() {
        for t in ResourceType::ALL {
            let mut seen = std::collections::HashSet::new();
            for p in t.search_params() {
                assert!(seen.insert(p.name), "{t} has {} twice", p.name);
                assert!(!p.name.starts_with('_'));
            }
        }
    }
}
