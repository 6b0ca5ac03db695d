//! The gate: the one function that decides every access to patient data, the search scope
//! that follows from it, and the shape of the audit record each access writes.
//!
//! Every route (FHIR read, search, history, `_include`, bundles, exports, the viewer, PDFs,
//! federation) asks [`decide`] about each record before it is returned or changed, and writes
//! one audit record per request, allowed or denied. No route reads the store around it.
//!
//! The rules today (the consent issue extends the rules, not the routes):
//!
//! | actor | may read | may write |
//! |---|---|---|
//! | administrator token, operator CLI | everything | everything |
//! | a facility's system token | what its facility sent; the directory (Organization, Practitioner, PractitionerRole) of every facility | records of its own facility only |
//!
//! [`search_scope`] turns the same rules into a [`Scope`] the store applies in SQL, so totals
//! and pages are computed after the gate; [`decide`] is still asked for every row returned, and
//! a property test holds the two in agreement.
//!
//! ```
//! use musubi_gate::{decide, Actor, Operation, RecordView, Decision};
//! use musubi_domain::ResourceClass;
//! use musubi_fhir::ResourceType;
//! let emr = Actor::System { name: "emr".into(), facility: "1318814790".parse().unwrap() };
//! let other: musubi_domain::FacilityCode = "2712345678".parse().unwrap();
//! let rec = RecordView { rtype: ResourceType::Condition, class: ResourceClass::Diagnosis, facility: Some(other), patient_id: None };
//! assert!(matches!(decide(&emr, Operation::Read, &rec), Decision::Deny(_)));
//! ```

#![deny(missing_docs)]

use musubi_domain::audit::{AuditAgent, AuditPurpose};
use musubi_domain::{FacilityCode, ResourceClass};
use musubi_fhir::ResourceType;
use musubi_store::{CurrentRow, Scope, ScopeRule};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The network's administrator (the admin token).
    Admin {
        /// Token name.
        name: String,
    },
    /// The operator at the command line (`musubi import`, `musubi audit …`), acting on the data
    /// directory directly.
    Operator {
        /// The OS user.
        name: String,
    },
    /// A facility's system (EMR, レセコン gateway, SS-MIX2 collector) with a system token.
    System {
        /// Token name.
        name: String,
        /// The facility it acts for.
        facility: FacilityCode,
    },
}

impl Actor {
    /// The facility the actor acts for, if any.
    pub fn facility(&self) -> Option<FacilityCode> {
        match self {
            Actor::System { facility, .. } => Some(*facility),
            _ => None,
        }
    }

    /// A stable name for logs and the audit record.
    pub fn name(&self) -> &str {
        match self {
            Actor::Admin { name } | Actor::Operator { name } | Actor::System { name, .. } => name,
        }
    }

    /// Whether the actor may see everything (administrators and the operator).
    pub fn is_privileged(&self) -> bool {
        matches!(self, Actor::Admin { .. } | Actor::Operator { .. })
    }

    /// The `submitter` recorded on what this actor writes.
    pub fn submitter(&self) -> String {
        match self {
            Actor::Admin { .. } => "admin".into(),
            Actor::Operator { name } => format!("operator:{name}"),
            Actor::System { facility, .. } => facility.to_string(),
        }
    }

    /// The agent of the audit record.
    pub fn audit_agent(&self, address: Option<String>) -> AuditAgent {
        let (kind, facility) = match self {
            Actor::Admin { .. } => ("admin", None),
            Actor::Operator { .. } => ("operator-cli", None),
            Actor::System { facility, .. } => ("system", Some(facility.to_string())),
        };
        AuditAgent { kind: kind.into(), name: self.name().to_owned(), facility, profession: None, address }
    }

    /// Why this actor accesses data, for the audit record.
    pub fn purpose(&self) -> AuditPurpose {
        match self {
            Actor::Admin { .. } | Actor::Operator { .. } => AuditPurpose::Operations,
            Actor::System { .. } => AuditPurpose::Treatment,
        }
    }
}

/// What the actor wants to do with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Read it (read, vread, search, history, include, export).
    Read,
    /// Create or change it.
    Write,
    /// Delete it.
    Delete,
}

/// What the gate looks at: the record meta, never the JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    /// Type.
    pub rtype: ResourceType,
    /// Class.
    pub class: ResourceClass,
    /// Source facility.
    pub facility: Option<FacilityCode>,
    /// The patient it is about.
    pub patient_id: Option<String>,
}

impl RecordView {
    /// The view of a stored row.
    pub fn of(row: &CurrentRow) -> RecordView {
        RecordView {
            rtype: row.rtype,
            class: row.meta.class,
            facility: row.meta.facility,
            patient_id: row.meta.patient_id.clone(),
        }
    }
}

/// Why an access was refused. The text is shown to the caller (Japanese) and kept in the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// The record belongs to another facility.
    OtherFacility,
    /// Only administrators may do this.
    AdminOnly,
}

impl DenyReason {
    /// The message for people.
    pub fn message_ja(&self) -> &'static str {
        match self {
            DenyReason::OtherFacility => "他の医療機関の情報にはアクセスできません（アクセス権限がありません）",
            DenyReason::AdminOnly => "この操作は運営管理者のみが行えます",
        }
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refused, with the reason.
    Deny(DenyReason),
}

impl Decision {
    /// Whether allowed.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// Directory classes every authenticated system may read.
const DIRECTORY: &[ResourceClass] = &[ResourceClass::Administrative];

fn is_directory(rtype: ResourceType) -> bool {
    matches!(rtype, ResourceType::Organization | ResourceType::Practitioner | ResourceType::PractitionerRole)
}

/// The one access decision.
pub fn decide(actor: &Actor, op: Operation, rec: &RecordView) -> Decision {
    match actor {
        Actor::Admin { .. } | Actor::Operator { .. } => Decision::Allow,
        Actor::System { facility, .. } => {
            if rec.rtype == ResourceType::AuditEvent {
                return Decision::Deny(DenyReason::AdminOnly);
            }
            if rec.facility == Some(*facility) {
                return Decision::Allow;
            }
            if op == Operation::Read && is_directory(rec.rtype) && DIRECTORY.contains(&rec.class) {
                return Decision::Allow;
            }
            Decision::Deny(DenyReason::OtherFacility)
        }
    }
}

/// Whether the actor may read the audit log (AuditEvent).
pub fn may_read_audit(actor: &Actor) -> Decision {
    if actor.is_privileged() { Decision::Allow } else { Decision::Deny(DenyReason::AdminOnly) }
}

/// The scope of a search of `rtype` by `actor`: exactly the records [`decide`] allows to read.
pub fn search_scope(actor: &Actor, rtype: ResourceType) -> Scope {
    match actor {
        Actor::Admin { .. } | Actor::Operator { .. } => Scope::all(),
        Actor::System { facility, .. } => {
            if rtype == ResourceType::AuditEvent {
                return Scope::none();
            }
            let mut rules = vec![ScopeRule { facilities: Some(vec![facility.to_string()]), ..Default::default() }];
            if is_directory(rtype) {
                rules.push(ScopeRule {
                    classes: Some(DIRECTORY.iter().map(|c| c.code()).collect()),
                    ..Default::default()
                });
            }
            Scope { rules: Some(rules) }
        }
    }
}

/// Whether a record is inside a scope (the SQL the store runs, evaluated in memory; used to
/// check that scope and decision agree).
pub fn in_scope(scope: &Scope, rec: &RecordView) -> bool {
    let Some(rules) = &scope.rules else { return true };
    rules.iter().any(|r| {
        r.facilities.as_ref().is_none_or(|f| rec.facility.is_some_and(|rf| f.iter().any(|x| x == rf.as_str())))
            && r.classes.as_ref().is_none_or(|c| c.contains(&rec.class.code()))
            && r.patients.as_ref().is_none_or(|p| rec.patient_id.as_ref().is_some_and(|id| p.contains(id)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fac(s: &str) -> FacilityCode {
        s.parse().unwrap()
    }

    fn arb_actor() -> impl Strategy<Value = Actor> {
        prop_oneof![
            Just(Actor::Admin { name: "admin".into() }),
            Just(Actor::Operator { name: "root".into() }),
            prop::sample::select(vec!["1318814790", "2712345678", "0131234567"])
                .prop_map(|f| Actor::System { name: "sys".into(), facility: fac(f) }),
        ]
    }

    fn arb_record() -> impl Strategy<Value = RecordView> {
        (
            prop::sample::select(ResourceType::ALL.to_vec()),
            prop::sample::select(ResourceClass::ALL.to_vec()),
            prop::option::of(prop::sample::select(vec!["1318814790", "2712345678", "0131234567"])),
            prop::option::of(prop::sample::select(vec!["p1", "p2"])),
        )
            .prop_map(|(rtype, class, f, p)| RecordView {
                rtype,
                class,
                facility: f.map(fac),
                patient_id: p.map(str::to_owned),
            })
    }

    proptest! {
        /// What search shows is exactly what read allows: no hidden record is counted, no
        /// visible one is missing.
        #[test]
        fn scope_agrees_with_decision(actor in arb_actor(), rec in arb_record()) {
            let scope = search_scope(&actor, rec.rtype);
            prop_assert_eq!(in_scope(&scope, &rec), decide(&actor, Operation::Read, &rec).is_allow());
        }

        /// A system never writes or deletes another facility's record.
        #[test]
        fn systems_write_only_their_own(actor in arb_actor(), rec in arb_record()) {
            if let Actor::System { facility, .. } = &actor {
                for op in [Operation::Write, Operation::Delete] {
                    let d = decide(&actor, op, &rec);
                    prop_assert_eq!(d.is_allow(), rec.facility == Some(*facility) && rec.rtype != ResourceType::AuditEvent);
                }
            }
        }

        /// Administrators and the operator see everything.
        #[test]
        fn privileged_see_all(rec in arb_record()) {
            let admin = Actor::Admin { name: "a".into() };
            let operator = Actor::Operator { name: "o".into() };
            prop_assert!(decide(&admin, Operation::Read, &rec).is_allow());
            prop_assert!(decide(&operator, Operation::Delete, &rec).is_allow());
        }
    }

    #[test]
    fn directory_is_readable_by_every_system() {
        let sys = Actor::System { name: "s".into(), facility: fac("1318814790") };
        let org = RecordView {
            rtype: ResourceType::Organization,
            class: ResourceClass::Administrative,
            facility: Some(fac("2712345678")),
            patient_id: None,
        };
        assert!(decide(&sys, Operation::Read, &org).is_allow());
        assert!(!decide(&sys, Operation::Write, &org).is_allow());
        let audit = RecordView {
            rtype: ResourceType::AuditEvent,
            class: ResourceClass::Administrative,
            facility: Some(fac("1318814790")),
            patient_id: None,
        };
        assert_eq!(decide(&sys, Operation::Read, &audit), Decision::Deny(DenyReason::AdminOnly));
    }
}
