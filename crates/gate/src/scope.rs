//! The search scope: the gate's narrowing of a search, a plain value the store translates into
//! SQL (so counts and pages are computed on what the caller may see). It lives here, with the
//! rules that derive it, so that the gate depends on the domain model only.

/// The gate's narrowing of a search, pushed into SQL so counts and pages are computed on what
/// the caller may see: `None` is everything; otherwise a record is in scope when any rule holds.
/// The gate still decides on every row returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The rules (ORed); None means no narrowing.
    pub rules: Option<Vec<ScopeRule>>,
}

/// One scope rule: every condition set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeRule {
    /// Source facility is one of these.
    pub facilities: Option<Vec<String>>,
    /// Class is one of these (codes).
    pub classes: Option<Vec<&'static str>>,
    /// The record is about one of these patients.
    pub patients: Option<Vec<String>>,
    /// The record is about one of these persons (MPI).
    pub persons: Option<Vec<String>>,
    /// The record's clinical date is on or after this (records without one pass).
    pub min_clinical_date: Option<i64>,
    /// None of these flag bits may be set.
    pub exclude_flags: u8,
    /// The source facility is none of these (facilities that do not disclose; records
    /// without a facility pass).
    pub exclude_facilities: Option<Vec<String>>,
}

impl Scope {
    /// No narrowing.
    pub fn all() -> Scope {
        Scope { rules: None }
    }

    /// Nothing at all.
    pub fn none() -> Scope {
        Scope { rules: Some(Vec::new()) }
    }
}
