//! OperationOutcome bodies: the one shape every error of the API takes.

use serde_json::{Value, json};

/// Severity of an issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The request failed.
    Error,
    /// Worth fixing; the request succeeded.
    Warning,
    /// For information.
    Information,
}

impl Severity {
    /// The FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// One issue of an OperationOutcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeIssue {
    /// Severity.
    pub severity: Severity,
    /// FHIR IssueType code (`invalid`, `required`, `not-found`, `forbidden`, …).
    pub code: &'static str,
    /// The element, as a FHIRPath expression (empty when the whole request is meant).
    pub expression: Option<String>,
    /// What went wrong, for a person (Japanese).
    pub diagnostics: String,
    /// The rule broken, if any (e.g. `R3010`), carried in `details.coding`.
    pub rule: Option<String>,
}

impl OutcomeIssue {
    /// An error with no element.
    pub fn error(code: &'static str, diagnostics: impl Into<String>) -> Self {
        OutcomeIssue { severity: Severity::Error, code, expression: None, diagnostics: diagnostics.into(), rule: None }
    }

    /// Names the element.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }
}

/// The rule-id code system Musubi uses in `issue.details` (JP-CLINS rule ids like R3010).
pub const RULE_SYSTEM: &str = "urn:musubi:validation-rule";

/// Builds an OperationOutcome from issues.
pub fn operation_outcome(issues: &[OutcomeIssue]) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut v = json!({"severity": i.severity.code(), "code": i.code, "diagnostics": i.diagnostics});
            if let Some(e) = &i.expression {
                v["expression"] = json!([e]);
            }
            if let Some(r) = &i.rule {
                v["details"] = json!({"coding": [{"system": RULE_SYSTEM, "code": r}], "text": r});
            }
            v
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

/// An OperationOutcome with one error issue.
pub fn error_outcome(code: &'static str, diagnostics: &str) -> Value {
    operation_outcome(&[OutcomeIssue::error(code, diagnostics)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let mut i = OutcomeIssue::error("required", "患者がありません").at("Observation.subject");
        i.rule = Some("R9016O".into());
        let oo = operation_outcome(&[i]);
        assert_eq!(oo["resourceType"], "OperationOutcome");
        assert_eq!(oo["issue"][0]["expression"][0], "Observation.subject");
        assert_eq!(oo["issue"][0]["details"]["coding"][0]["code"], "R9016O");
    }
}
