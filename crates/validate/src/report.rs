//! Where a validation run's issues go: the walker (structure, cardinality, types) and the rule
//! modules it calls (codes, invariants) all report here, so the rules need nothing of the
//! walker and the modules form no cycle.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::{Issue, Severity};

/// The issues of one run, and where in the resource the walk is.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// The issues so far.
    pub issues: Vec<Issue>,
    /// FHIRPath of the element being walked.
    pub path: String,
    /// Inside a 健診結果報告書 Bundle, whose package defines JP_Patient_eCS without R1012.
    pub in_checkup: bool,
    /// Validating a submission (validate_bundle): the top-level Bundle must be a 5情報 or
    /// document Bundle.
    pub submission: bool,
}

impl Report {
    /// Records an issue at the current path (plus `rel`, a relative FHIRPath, if not empty).
    pub fn issue(&mut self, severity: Severity, code: &'static str, rel: &str, rule: Option<String>, message: String) {
        let mut expression = self.path.clone();
        if !rel.is_empty() {
            if !expression.is_empty() && !rel.starts_with('[') {
                expression.push('.');
            }
            expression.push_str(rel);
        }
        self.issues.push(Issue { severity, code, expression, rule, message });
    }

    /// The issues, without duplicates (a resource claiming two profiles is walked twice).
    pub fn finish(self) -> Vec<Issue> {
        let mut seen = HashSet::new();
        self.issues.into_iter().filter(|i| seen.insert(i.clone())).collect()
    }
}

/// The profile URLs a resource claims in `meta.profile`, without `|version`.
pub(crate) fn claimed_profiles(obj: &Map<String, Value>) -> Vec<&str> {
    obj.get("meta")
        .and_then(|m| m.get("profile"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(|u| u.split('|').next().unwrap_or(u)).collect())
        .unwrap_or_default()
}

/// A value for a message, cut to a readable length.
pub(crate) fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 60 { s.chars().take(60).collect::<String>() + "…" } else { s }
}
