//! JP Core / JP-CLINS validation of incoming FHIR R4 JSON, at the edge, before anything is stored.
//!
//! [`Validator`] checks a resource (and, recursively, its `contained` resources and a Bundle's
//! entries) against:
//! - the StructureDefinition snapshots of the verbatim JP-CLINS 1.5.2, JP Core 1.1.2 and
//!   eCheckupReport packages (embedded in the binary, compiled once at first use): unknown
//!   elements, cardinality, JSON shape, primitive formats, fixed/pattern values, slices;
//! - the JP-CLINS invariants (R1010 … R9019), written directly in Rust ([`invariants`]);
//! - the code systems of the shared items: JLAC10 core/infection lab items, J-FAGY, MEDIS
//!   病名管理番号, YJ and 一般名処方コード ([`terminology`]).
//!
//! Every problem is an [`Issue`] with a FHIRPath expression, the rule that fired and a Japanese
//! message for the sending vendor's engineer. Nothing here does I/O.
//!
//! Which profile: each known URL in `meta.profile` (a `|version` suffix is ignored); otherwise
//! the profile a slice or entry type expects; otherwise the JP Core profile of the resource type
//! (`JP_Patient`, `JP_Condition`, …), or, for types JP Core does not profile, a relaxed copy of a
//! package profile (base cardinalities, no fixed values or slices), or plain Resource checks. An
//! unknown profile URL is a warning.
//!
//! Rule ids: JP-CLINS rules by their number (`R3010`); structure as `Profile: Element what`
//! (`JP_Patient_eCS: Patient.identifier min=1`, `… unknown element`, `… type=code`, `… fixed`,
//! `…:slice min=1`, `… slicing closed`); FHIR invariants by key (`ext-1`, `bdl-7`); code
//! checks by code system (`J-FAGY`, `一般名処方マスタ`, `JP_CLINS_ObsLabResult_CoreLabo_CS`).
//!
//! Known inconsistencies of the published material are accepted with a warning: section codes
//! missing from the document-section CodeSystem, patients referenced by `subject.identifier`,
//! `urn:oid:` spellings of JP Core systems where the URL variant fixes the URI, and the checkup
//! report's patient without a 被保険者個人識別子.
//!
//! ```
//! use musubi_validate::{Validator, has_errors};
//! let patient = serde_json::json!({"resourceType": "Patient", "gender": 5});
//! let issues = Validator::shared().validate_resource(&patient);
//! assert!(has_errors(&issues));
//! assert!(issues.iter().any(|i| i.expression == "Patient.gender"));
//! ```

#![deny(missing_docs)]

mod codes;
mod datatypes;
pub mod invariants;
mod package;
pub mod primitives;
mod profiles;
mod report;
pub mod terminology;
mod walk;

use std::sync::OnceLock;

use serde_json::Value;

/// How serious an issue is. Only [`Severity::Error`] rejects a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The resource violates a rule and must be rejected.
    Error,
    /// Suspicious but accepted (known inconsistencies in the published material land here).
    Warning,
    /// For the record (an unknown but well-formed code, …).
    Information,
}

impl Severity {
    /// The FHIR `OperationOutcome.issue.severity` code.
    pub fn code(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// One problem found in a resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Issue {
    /// How serious it is.
    pub severity: Severity,
    /// FHIR IssueType code: `structure`, `required`, `value`, `invariant`, `code-invalid`,
    /// `not-supported`, `invalid`, `business-rule`.
    pub code: &'static str,
    /// FHIRPath of the element, e.g. `Bundle.entry[2].resource.identifier[0].value`.
    pub expression: String,
    /// The rule that fired: a JP-CLINS rule id (`R3010`) or `Profile: Element constraint`.
    pub rule: Option<String>,
    /// What is wrong and how to fix it, in Japanese.
    pub message: String,
}

/// Whether any issue is an error.
pub fn has_errors(issues: &[Issue]) -> bool {
    issues.iter().any(|i| i.severity == Severity::Error)
}

/// The validator: compiled profiles and code tables. Build it once ([`Validator::shared`]) and
/// share it between threads.
#[derive(Debug)]
pub struct Validator {
    schema: profiles::Schema,
}

impl Validator {
    /// Compiles the embedded packages. Takes a fraction of a second; prefer [`Validator::shared`].
    pub fn new() -> Validator {
        Validator { schema: profiles::Schema::load() }
    }

    /// The process-wide validator, built at first use.
    pub fn shared() -> &'static Validator {
        static V: OnceLock<Validator> = OnceLock::new();
        V.get_or_init(Validator::new)
    }

    /// Problems met while reading the embedded packages (empty unless the build is broken).
    pub fn load_errors(&self) -> &[String] {
        &self.schema.load_errors
    }

    /// The canonical URLs of the profiles the validator knows.
    pub fn known_profiles(&self) -> impl Iterator<Item = &str> {
        self.schema.profiles.iter().map(|p| p.url.as_ref()).filter(|u| !u.is_empty())
    }

    /// Validates one resource (any type, including a Bundle, whose entries are validated too).
    pub fn validate_resource(&self, resource: &Value) -> Vec<Issue> {
        let mut w = walk::Walker::new(&self.schema);
        w.resource(resource, &[]);
        w.finish()
    }

    /// Validates a submission Bundle: a JP-CLINS 5情報 collection Bundle or a document Bundle
    /// (診療情報提供書, 退院時サマリー, 健診結果報告書, 患者サマリー), including every entry.
    pub fn validate_bundle(&self, bundle: &Value) -> Vec<Issue> {
        let mut w = walk::Walker::new(&self.schema);
        w.submission_bundle(bundle);
        w.finish()
    }
}

impl Default for Validator {
    fn default() -> Self {
        Validator::new()
    }
}
