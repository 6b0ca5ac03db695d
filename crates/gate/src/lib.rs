//! The gate: the one function that decides every access to patient data, the search scope
//! that follows from it, and the shape of the audit record each access writes.
//!
//! Every route (FHIR read, search, history, `_include`, bundles, exports, the viewer, PDFs,
//! federation) asks [`decide`] about each record before it is returned or changed, and writes
//! one audit record per request, allowed or denied. No route reads the store around it.
//!
//! ## The rules
//!
//! | actor | may read | may write |
//! |---|---|---|
//! | administrator token, operator CLI | everything | everything |
//! | a facility's system token | what its facility sent; the directory (Organization, Practitioner, PractitionerRole) | its own facility's records |
//! | a user (医師, 歯科医師, 薬剤師, 看護師, その他医療職, 事務職) | its facility's records, and another facility's records of a person when **all** hold: the person's disclosure settings open the user's facility and profession ([`consent`]); the facility has a care relationship with the person (treated them, a referral addressed to it, consent in person at a visit); the profession may see that class ([`policy`]); the record is within the profession's period; the record is not flagged 未提供 (UNDELIVERED) — or the user holds an active emergency grant (break-glass) for the person | its own facility's records |
//! | a patient | their own records, except those flagged 未告知 (UNINFORMED) | nothing through the FHIR API |
//! | a proxy (family, liaison staff) | as the patient, when the patient granted it | nothing through the FHIR API |
//!
//! [`search_scope`] turns the same rules into a [`Scope`] the store applies in SQL, so totals
//! and pages are computed after the gate; [`decide`] is still asked for every row returned, and
//! a property test holds the two in agreement for every actor, record and context.
//!
//! The referral exchange (a letter from one facility to another, its inbox, outbox, receipt and
//! replies) is decided by [`referral::decide_referral`], with its own table: a letter is
//! between its sender and its addressee, and its addressee opens it whatever the patient's
//! disclosure settings say (the module says why).

#![deny(missing_docs)]

pub mod consent;
pub mod policy;
pub mod referral;
mod scope;

use musubi_domain::audit::{AuditAgent, AuditPurpose};
use musubi_domain::{FacilityCode, Flags, Profession, ResourceClass};
use musubi_fhir::ResourceType;

pub use consent::{ConsentSettings, FacilityClass, FacilityInfo, Residence, Verdict};
pub use referral::{LetterView, ReferralOp, ReferralParty, decide_referral, may_send_referrals};
pub use scope::{Scope, ScopeRule};

/// A clinician or staff member logged in at a facility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserActor {
    /// Account id.
    pub user_id: String,
    /// Login name.
    pub login: String,
    /// Display name (kanji).
    pub name: String,
    /// Profession.
    pub profession: Profession,
    /// The facility the user acts for in this session.
    pub facility: FacilityCode,
}

/// A patient (or a proxy) at the portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalActor {
    /// Account id.
    pub account_id: String,
    /// Display name.
    pub name: String,
    /// The person whose records are concerned (the patient, or whom the proxy acts for).
    pub person_id: String,
    /// For a proxy: the relationship (家族, 施設の連携担当 …); None for the patient.
    pub proxy_relation: Option<String>,
    /// Whether this actor may view the records (a proxy only if the patient granted it).
    pub may_view_records: bool,
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The holder of the bootstrap token (`DATA/admin-token`, written on the first start while
    /// no operator account exists). It may do exactly one thing: create the first operator
    /// account. It is not privileged: the gate denies it every record and every search scope is
    /// empty, and the server refuses it on every route but that one
    /// ([`DenyReason::BootstrapOnly`]).
    Bootstrap {
        /// Token name.
        name: String,
    },
    /// The network's operator: a named operator account logged in with password and one-time
    /// code (its login), or the operator at the command line acting on the data directory
    /// directly (the OS user).
    Operator {
        /// The login name or the OS user.
        name: String,
    },
    /// A facility's system (EMR, レセコン gateway, SS-MIX2 collector) with a system token.
    System {
        /// Token name.
        name: String,
        /// The facility it acts for.
        facility: FacilityCode,
    },
    /// A clinician or staff member.
    User(UserActor),
    /// A patient, or a proxy acting for one.
    Portal(PortalActor),
}

impl Actor {
    /// The facility the actor acts for, if any.
    pub fn facility(&self) -> Option<FacilityCode> {
        match self {
            Actor::System { facility, .. } => Some(*facility),
            Actor::User(u) => Some(u.facility),
            _ => None,
        }
    }

    /// A stable name for logs and the audit record.
    pub fn name(&self) -> &str {
        match self {
            Actor::Bootstrap { name } | Actor::Operator { name } | Actor::System { name, .. } => name,
            Actor::User(u) => &u.login,
            Actor::Portal(p) => &p.account_id,
        }
    }

    /// Whether the actor may see everything (the operator; never the bootstrap token).
    pub fn is_privileged(&self) -> bool {
        matches!(self, Actor::Operator { .. })
    }

    /// Whether the actor is the bootstrap token, which may only create the first operator.
    pub fn is_bootstrap(&self) -> bool {
        matches!(self, Actor::Bootstrap { .. })
    }

    /// The `submitter` recorded on what this actor writes.
    pub fn submitter(&self) -> String {
        match self {
            Actor::Bootstrap { .. } => "admin".into(),
            Actor::Operator { name } => format!("operator:{name}"),
            Actor::System { facility, .. } => facility.to_string(),
            Actor::User(u) => u.facility.to_string(),
            Actor::Portal(p) => format!("portal:{}", p.account_id),
        }
    }

    /// The agent of the audit record.
    pub fn audit_agent(&self, address: Option<String>) -> AuditAgent {
        match self {
            Actor::User(u) => AuditAgent {
                kind: "user".into(),
                name: u.login.clone(),
                facility: Some(u.facility.to_string()),
                profession: Some(format!("{}|{}", u.profession.code(), u.name)),
                address,
            },
            Actor::Portal(p) => AuditAgent {
                kind: if p.proxy_relation.is_some() { "proxy".into() } else { "patient".into() },
                name: p.account_id.clone(),
                facility: None,
                profession: p.proxy_relation.clone(),
                address,
            },
            _ => {
                let (kind, facility) = match self {
                    // The audit records name the bootstrap token's use as they always did.
                    Actor::Bootstrap { .. } => ("admin", None),
                    Actor::Operator { .. } => ("operator-cli", None),
                    Actor::System { facility, .. } => ("system", Some(facility.to_string())),
                    _ => ("unknown", None),
                };
                AuditAgent { kind: kind.into(), name: self.name().to_owned(), facility, profession: None, address }
            }
        }
    }

    /// Why this actor accesses data, for the audit record (emergency access is set by the
    /// caller from the decision's basis).
    pub fn purpose(&self) -> AuditPurpose {
        match self {
            Actor::Bootstrap { .. } | Actor::Operator { .. } => AuditPurpose::Operations,
            Actor::System { .. } | Actor::User(_) => AuditPurpose::Treatment,
            Actor::Portal(_) => AuditPurpose::PatientRequest,
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
    /// The person (MPI) it is about.
    pub person_id: Option<String>,
    /// LTS / UNINFORMED / UNDELIVERED.
    pub flags: Flags,
    /// Clinical date (epoch ms).
    pub clinical_date: Option<i64>,
}

impl RecordView {
    /// A view for a write decision (only type, class, facility and patient matter there).
    pub fn for_write(
        rtype: ResourceType,
        class: ResourceClass,
        facility: Option<FacilityCode>,
        patient_id: Option<String>,
    ) -> RecordView {
        RecordView {
            rtype,
            class,
            facility,
            person_id: patient_id.clone(),
            patient_id,
            flags: Flags::empty(),
            clinical_date: None,
        }
    }
}

/// A facility's care relationship with a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CareRelation {
    /// The facility.
    pub facility: FacilityCode,
    /// How it arose.
    pub kind: CareKind,
    /// Until when it holds (epoch ms); None = open-ended.
    pub until: Option<i64>,
}

/// How a care relationship arose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CareKind {
    /// The facility has treated the person (its records or claims).
    Treated,
    /// A referral is addressed to the facility.
    ReferralAddressed,
    /// The person consented in person at a visit (also an individual consent for the facility).
    InPersonConsent,
}

/// An emergency access grant (break-glass) of a user for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyGrant {
    /// The user.
    pub user_id: String,
    /// The stated reason.
    pub reason: String,
    /// Until when (epoch ms).
    pub until: i64,
}

/// What the gate knows about the person a record is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonContext {
    /// The person.
    pub person_id: String,
    /// Their disclosure settings.
    pub consent: ConsentSettings,
    /// Where they live.
    pub residence: Residence,
    /// Care relationships.
    pub care: Vec<CareRelation>,
    /// Emergency grants.
    pub emergency: Vec<EmergencyGrant>,
    /// Whether the person's participation consent (参加同意) is recorded (by the patient in the
    /// portal, or by staff on the patient's evidence).
    pub participating: bool,
}

/// How the network shares a person's records with other facilities (a network setting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SharingPolicy {
    /// Regional networks' style and the 2012 要綱: records are kept but shown to no other facility
    /// until the person's participation consent is recorded (the default).
    #[default]
    OptIn,
    /// The national service's style: consent at each visit — another facility sees the records
    /// only under an active consent at the visit.
    PerVisit,
}

impl SharingPolicy {
    /// From the setting `network.participation` (`opt-in`, `per-visit`).
    pub fn from_setting(s: Option<&str>) -> SharingPolicy {
        match s {
            Some("per-visit") => SharingPolicy::PerVisit,
            _ => SharingPolicy::OptIn,
        }
    }
}

/// The context of a decision: the time, the actor's facility, the person concerned.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// Now (epoch ms).
    pub now: i64,
    /// The registry entry of the user's facility.
    pub facility: Option<&'a FacilityInfo>,
    /// The person concerned.
    pub person: Option<&'a PersonContext>,
    /// Facilities that do not disclose (開示) their data to the network: their records are
    /// shown to nobody outside them (administrators and the patient excepted).
    pub withheld: &'a [FacilityCode],
    /// The network's sharing policy.
    pub policy: SharingPolicy,
}

/// Why an access was allowed (emergency access is marked in the audit record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// Administrators and the operator.
    Privileged,
    /// The actor's own facility's records.
    OwnFacility,
    /// The network's directory.
    Directory,
    /// The person's consent and a care relationship.
    Consent,
    /// Emergency access with the stated reason.
    Emergency(String),
    /// The patient's own record (or their proxy's).
    OwnRecord,
    /// A referral letter addressed to the actor's facility.
    ReferralAddressed,
}

/// Why an access was refused. The text is shown to the caller (Japanese) and kept in the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// The record belongs to another facility (systems).
    OtherFacility,
    /// Only administrators may do this.
    AdminOnly,
    /// The person's disclosure settings do not open this facility/profession.
    Consent(&'static str),
    /// No care relationship between the facility and the person.
    NoCareRelation,
    /// The profession may not see this class of data.
    ProfessionClass,
    /// Older than the profession may see.
    OutsidePeriod,
    /// Flagged 未提供: not provided to other facilities.
    Undelivered,
    /// Flagged 未告知: hidden from the patient and proxies.
    Uninformed,
    /// Not the patient's own record (or no proxy permission).
    NotOwnRecord,
    /// The person concerned is unknown to the gate (no context was given for them).
    UnknownPerson,
    /// The user's facility is not in the network's registry.
    UnknownFacility,
    /// Read-only actor.
    ReadOnly,
    /// The actor's facility neither sent nor received the referral letter (answered as if it
    /// did not exist).
    NotReferralParty,
    /// Only the facility a referral letter is addressed to may do this (receive it, reply).
    NotAddressee,
    /// Only facility staff and systems take part in the referral exchange.
    StaffOnly,
    /// The record's facility does not disclose (開示) its data to the network.
    NotDisclosed,
    /// The user's facility does not view (閲覧) the network's data.
    FacilityDoesNotView,
    /// The patient's own disclosure settings (a `Consent` of the network) are the patient's.
    PatientSettings,
    /// The person has not consented to take part in the network (参加同意).
    NotParticipating,
    /// The network shares per visit, and there is no active consent at a visit.
    NoVisitConsent,
    /// Emergency access does not open this kind of data (health checkups, other data).
    NotForEmergency,
    /// The bootstrap token only creates the first operator account.
    BootstrapOnly,
}

/// What the holder of the bootstrap token is told wherever it is refused.
pub const BOOTSTRAP_ONLY_JA: &str =
    "管理者トークンは最初の運営者アカウントの作成にだけ使えます。運営者アカウントでログインしてください。";

impl DenyReason {
    /// The message for people.
    pub fn message_ja(&self) -> &'static str {
        match self {
            DenyReason::OtherFacility => "他の医療機関の情報にはアクセスできません（アクセス権限がありません）",
            DenyReason::AdminOnly => "この操作は運営管理者のみが行えます",
            DenyReason::Consent(why) => why,
            DenyReason::NoCareRelation => "この患者との診療関係（受診歴・紹介・来院時の同意）がありません",
            DenyReason::ProfessionClass => "この職種ではこの種類の情報は閲覧できません",
            DenyReason::OutsidePeriod => "この職種で閲覧できる期間より前の情報です",
            DenyReason::Undelivered => "作成元の医療機関が提供しないとした情報です（未提供）",
            DenyReason::Uninformed => "この情報は閲覧できません",
            DenyReason::NotOwnRecord => "ご本人（または代理権限のある方）の情報ではありません",
            DenyReason::UnknownPerson => "この患者の情報にはアクセスできません",
            DenyReason::UnknownFacility => "所属医療機関がネットワークに登録されていません",
            DenyReason::ReadOnly => "この操作は行えません",
            DenyReason::NotReferralParty => "紹介元・紹介先以外の医療機関です",
            DenyReason::NotAddressee => "この操作は紹介先の医療機関だけが行えます",
            DenyReason::StaffOnly => "紹介状の送受信は医療機関の職員のみ行えます",
            DenyReason::NotDisclosed => "作成元の医療機関はネットワークに情報を開示していません",
            DenyReason::FacilityDoesNotView => "所属医療機関はネットワークの情報を閲覧する設定になっていません",
            DenyReason::PatientSettings => "患者さんの開示設定は、ご本人・代理人・運営事務局のみが参照できます",
            DenyReason::NotParticipating => {
                "この患者さんはネットワークへの参加に同意していません（参加同意が未登録です）"
            }
            DenyReason::NoVisitConsent => "受診時の同意がありません（このネットワークは受診ごとの同意で共有します）",
            DenyReason::NotForEmergency => "緊急時の閲覧では、この種類の情報（健診結果など）は開示されません",
            DenyReason::BootstrapOnly => BOOTSTRAP_ONLY_JA,
        }
    }

    /// A stable code for logs and the audit record.
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::OtherFacility => "other-facility",
            DenyReason::AdminOnly => "admin-only",
            DenyReason::Consent(_) => "consent",
            DenyReason::NoCareRelation => "no-care-relation",
            DenyReason::ProfessionClass => "profession-class",
            DenyReason::OutsidePeriod => "outside-period",
            DenyReason::Undelivered => "undelivered",
            DenyReason::Uninformed => "uninformed",
            DenyReason::NotOwnRecord => "not-own-record",
            DenyReason::UnknownPerson => "unknown-person",
            DenyReason::UnknownFacility => "unknown-facility",
            DenyReason::ReadOnly => "read-only",
            DenyReason::NotReferralParty => "not-referral-party",
            DenyReason::NotAddressee => "not-addressee",
            DenyReason::StaffOnly => "staff-only",
            DenyReason::NotDisclosed => "not-disclosed",
            DenyReason::FacilityDoesNotView => "facility-does-not-view",
            DenyReason::PatientSettings => "patient-settings",
            DenyReason::NotParticipating => "not-participating",
            DenyReason::NoVisitConsent => "no-visit-consent",
            DenyReason::NotForEmergency => "not-for-emergency",
            DenyReason::BootstrapOnly => "bootstrap-only",
        }
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead, on this basis.
    Allow(Basis),
    /// Refused, with the reason.
    Deny(DenyReason),
}

impl Decision {
    /// Whether allowed.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// Whether allowed by emergency access.
    pub fn emergency_reason(&self) -> Option<&str> {
        match self {
            Decision::Allow(Basis::Emergency(r)) => Some(r),
            _ => None,
        }
    }
}

fn is_directory(rtype: ResourceType, class: ResourceClass) -> bool {
    matches!(rtype, ResourceType::Organization | ResourceType::Practitioner | ResourceType::PractitionerRole)
        && class == ResourceClass::Administrative
}

/// Whether a user may see the person's records at all (consent + care relationship, or an
/// emergency grant), before the per-record checks.
pub fn person_access(u: &UserActor, ctx: &Context<'_>, person: &PersonContext) -> Result<Basis, DenyReason> {
    let Some(fac) = ctx.facility.filter(|f| f.code == u.facility) else {
        return Err(DenyReason::UnknownFacility);
    };
    if !fac.views {
        return Err(DenyReason::FacilityDoesNotView);
    }
    if let Some(g) = person.emergency.iter().find(|g| g.user_id == u.user_id && g.until > ctx.now) {
        return Ok(Basis::Emergency(g.reason.clone()));
    }
    let active = |k: CareKind| {
        person.care.iter().any(|c| c.facility == u.facility && c.kind == k && c.until.is_none_or(|t| t > ctx.now))
    };
    match ctx.policy {
        SharingPolicy::OptIn if !person.participating => return Err(DenyReason::NotParticipating),
        SharingPolicy::PerVisit if !active(CareKind::InPersonConsent) => return Err(DenyReason::NoVisitConsent),
        _ => {}
    }
    match person.consent.verdict(&person.residence, fac, u.profession) {
        Verdict::Open(_) => {}
        Verdict::Closed(why) => return Err(DenyReason::Consent(why)),
        Verdict::NeedsIndividualConsent(why) => {
            if !active(CareKind::InPersonConsent) {
                return Err(DenyReason::Consent(why));
            }
        }
    }
    if !(active(CareKind::Treated) || active(CareKind::ReferralAddressed) || active(CareKind::InPersonConsent)) {
        return Err(DenyReason::NoCareRelation);
    }
    Ok(Basis::Consent)
}

/// The one access decision.
pub fn decide(actor: &Actor, op: Operation, rec: &RecordView, ctx: &Context<'_>) -> Decision {
    match actor {
        Actor::Operator { .. } => Decision::Allow(Basis::Privileged),
        Actor::Bootstrap { .. } => Decision::Deny(DenyReason::BootstrapOnly),
        Actor::System { facility, .. } => {
            if rec.rtype == ResourceType::AuditEvent {
                return Decision::Deny(DenyReason::AdminOnly);
            }
            if rec.facility == Some(*facility) {
                return Decision::Allow(Basis::OwnFacility);
            }
            if op == Operation::Read && is_directory(rec.rtype, rec.class) {
                return Decision::Allow(Basis::Directory);
            }
            Decision::Deny(DenyReason::OtherFacility)
        }
        Actor::User(u) => {
            if rec.rtype == ResourceType::AuditEvent {
                return Decision::Deny(DenyReason::AdminOnly);
            }
            if op != Operation::Read {
                return if rec.facility == Some(u.facility) {
                    Decision::Allow(Basis::OwnFacility)
                } else {
                    Decision::Deny(DenyReason::OtherFacility)
                };
            }
            if is_directory(rec.rtype, rec.class) {
                return Decision::Allow(Basis::Directory);
            }
            if !policy::profession_may_see(u.profession, rec.class) {
                return Decision::Deny(DenyReason::ProfessionClass);
            }
            if rec.facility == Some(u.facility) {
                return Decision::Allow(Basis::OwnFacility);
            }
            if rec.rtype == ResourceType::Consent {
                // Another facility's or the network's Consent holds the patient's settings
                // (which facilities they closed): the patient's, not a clinician's, to read.
                return Decision::Deny(DenyReason::PatientSettings);
            }
            let Some(person) = ctx.person.filter(|p| rec.person_id.as_deref() == Some(p.person_id.as_str())) else {
                return Decision::Deny(DenyReason::UnknownPerson);
            };
            if rec.flags.contains(Flags::UNDELIVERED) {
                return Decision::Deny(DenyReason::Undelivered);
            }
            if rec.facility.is_some_and(|f| ctx.withheld.contains(&f)) {
                return Decision::Deny(DenyReason::NotDisclosed);
            }
            match person_access(u, ctx, person) {
                Err(r) => Decision::Deny(r),
                Ok(Basis::Emergency(reason)) => {
                    if policy::emergency_may_see(rec.class) {
                        Decision::Allow(Basis::Emergency(reason))
                    } else {
                        Decision::Deny(DenyReason::NotForEmergency)
                    }
                }
                Ok(basis) => {
                    let earliest = policy::earliest_visible(u.profession, ctx.now);
                    if let (Some(e), Some(d)) = (earliest, rec.clinical_date)
                        && d < e
                    {
                        return Decision::Deny(DenyReason::OutsidePeriod);
                    }
                    Decision::Allow(basis)
                }
            }
        }
        Actor::Portal(p) => {
            if op != Operation::Read {
                return Decision::Deny(DenyReason::ReadOnly);
            }
            if rec.rtype == ResourceType::AuditEvent
                || !p.may_view_records
                || rec.person_id.as_deref() != Some(p.person_id.as_str())
            {
                return Decision::Deny(DenyReason::NotOwnRecord);
            }
            if rec.flags.contains(Flags::UNINFORMED) {
                return Decision::Deny(DenyReason::Uninformed);
            }
            Decision::Allow(Basis::OwnRecord)
        }
    }
}

/// Whether the actor may read the network-wide audit log (AuditEvent).
pub fn may_read_audit(actor: &Actor) -> Decision {
    if actor.is_privileged() { Decision::Allow(Basis::Privileged) } else { Decision::Deny(DenyReason::AdminOnly) }
}

/// The scope of a search of `rtype` by `actor` in `ctx`: exactly the records [`decide`] allows
/// to read.
pub fn search_scope(actor: &Actor, rtype: ResourceType, ctx: &Context<'_>) -> Scope {
    let directory = || ScopeRule { classes: Some(vec![ResourceClass::Administrative.code()]), ..Default::default() };
    let is_dir_type =
        matches!(rtype, ResourceType::Organization | ResourceType::Practitioner | ResourceType::PractitionerRole);
    match actor {
        Actor::Operator { .. } => Scope::all(),
        Actor::Bootstrap { .. } => Scope::none(),
        Actor::System { facility, .. } => {
            if rtype == ResourceType::AuditEvent {
                return Scope::none();
            }
            let mut rules = vec![ScopeRule { facilities: Some(vec![facility.to_string()]), ..Default::default() }];
            if is_dir_type {
                rules.push(directory());
            }
            Scope { rules: Some(rules) }
        }
        Actor::User(u) => {
            if rtype == ResourceType::AuditEvent {
                return Scope::none();
            }
            let classes = policy::visible_classes(u.profession);
            let mut rules = vec![ScopeRule {
                facilities: Some(vec![u.facility.to_string()]),
                classes: Some(classes.clone()),
                ..Default::default()
            }];
            if is_dir_type {
                rules.push(directory());
            }
            // Consent resources of others hold patients' settings: never in a user's scope.
            if let Some(person) = ctx.person.filter(|_| rtype != ResourceType::Consent) {
                let exclude_facilities =
                    (!ctx.withheld.is_empty()).then(|| ctx.withheld.iter().map(|f| f.to_string()).collect());
                match person_access(u, ctx, person) {
                    Ok(Basis::Emergency(_)) => rules.push(ScopeRule {
                        persons: Some(vec![person.person_id.clone()]),
                        classes: Some(
                            ResourceClass::ALL
                                .iter()
                                .filter(|c| {
                                    policy::profession_may_see(u.profession, **c) && policy::emergency_may_see(**c)
                                })
                                .map(|c| c.code())
                                .collect(),
                        ),
                        exclude_flags: Flags::UNDELIVERED.bits(),
                        exclude_facilities,
                        ..Default::default()
                    }),
                    Ok(_) => rules.push(ScopeRule {
                        persons: Some(vec![person.person_id.clone()]),
                        classes: Some(classes),
                        min_clinical_date: policy::earliest_visible(u.profession, ctx.now),
                        exclude_flags: Flags::UNDELIVERED.bits(),
                        exclude_facilities,
                        ..Default::default()
                    }),
                    Err(_) => {}
                }
            }
            Scope { rules: Some(rules) }
        }
        Actor::Portal(p) => {
            if rtype == ResourceType::AuditEvent || !p.may_view_records {
                return Scope::none();
            }
            Scope {
                rules: Some(vec![ScopeRule {
                    persons: Some(vec![p.person_id.clone()]),
                    exclude_flags: Flags::UNINFORMED.bits(),
                    ..Default::default()
                }]),
            }
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
            && r.persons.as_ref().is_none_or(|p| rec.person_id.as_ref().is_some_and(|id| p.contains(id)))
            && r.min_clinical_date.is_none_or(|m| rec.clinical_date.is_none_or(|d| d >= m))
            && rec.flags.bits() & r.exclude_flags == 0
            && r.exclude_facilities
                .as_ref()
                .is_none_or(|x| rec.facility.is_none_or(|rf| !x.iter().any(|f| f == rf.as_str())))
    })
}

#[cfg(test)]
mod tests;
