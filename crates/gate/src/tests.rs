//! The gate's tests: the rules one by one, and property tests that the search scope and the
//! decision agree for every actor, record and context (nothing hidden is counted, nothing
//! visible is missing).

use super::*;
use consent::{FacilityClass, KindSetting, Within};
use proptest::prelude::*;

const NOW: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;

fn fac(s: &str) -> FacilityCode {
    s.parse().unwrap()
}

fn info(code: &str, class: FacilityClass, pref: u8, area: &str) -> FacilityInfo {
    FacilityInfo { code: fac(code), name: "x".into(), class, prefecture: pref, area: area.into(), views: true }
}

fn user(p: Profession, f: &str) -> Actor {
    Actor::User(UserActor {
        user_id: format!("u-{}", p.code()),
        login: format!("{}@{f}", p.code()),
        name: "結 花子".into(),
        profession: p,
        facility: fac(f),
    })
}

fn rec(class: ResourceClass, f: &str, person: &str) -> RecordView {
    RecordView {
        rtype: ResourceType::Condition,
        class,
        facility: Some(fac(f)),
        patient_id: Some(format!("pt-{person}")),
        person_id: Some(person.into()),
        flags: Flags::empty(),
        clinical_date: Some(NOW - 30 * DAY),
    }
}

fn person(care: Vec<(&str, CareKind)>) -> PersonContext {
    PersonContext {
        person_id: "P1".into(),
        consent: ConsentSettings::default(),
        residence: Residence { prefecture: 13, area: "1301".into(), recent_prefectures: vec![] },
        care: care.into_iter().map(|(f, k)| CareRelation { facility: fac(f), kind: k, until: None }).collect(),
        emergency: vec![],
        participating: true,
    }
}

const HOSP: &str = "1318814790"; // hospital in the residence area
const PHARM: &str = "1348814791"; // pharmacy in the residence area
const FAR: &str = "1418814790"; // hospital in another prefecture
const SOURCE: &str = "1312345678"; // where the records come from

fn registry() -> Vec<FacilityInfo> {
    vec![
        info(HOSP, FacilityClass::Hospital, 13, "1301"),
        info(PHARM, FacilityClass::Pharmacy, 13, "1301"),
        info(FAR, FacilityClass::Hospital, 14, "1401"),
        info(SOURCE, FacilityClass::Clinic, 13, "1301"),
    ]
}

fn ctx<'a>(reg: &'a [FacilityInfo], actor: &Actor, p: &'a PersonContext) -> Context<'a> {
    Context {
        now: NOW,
        facility: actor.facility().and_then(|f| reg.iter().find(|i| i.code == f)),
        person: Some(p),
        withheld: &[],
        policy: SharingPolicy::OptIn,
    }
}

#[test]
fn a_doctor_with_a_care_relationship_sees_in_the_residence_area() {
    let reg = registry();
    let p = person(vec![(HOSP, CareKind::Treated)]);
    let doc = user(Profession::Doctor, HOSP);
    assert_eq!(
        decide(&doc, Operation::Read, &rec(ResourceClass::Diagnosis, SOURCE, "P1"), &ctx(&reg, &doc, &p)),
        Decision::Allow(Basis::Consent)
    );
    // Without a care relationship: denied.
    let p2 = person(vec![]);
    assert_eq!(
        decide(&doc, Operation::Read, &rec(ResourceClass::Diagnosis, SOURCE, "P1"), &ctx(&reg, &doc, &p2)),
        Decision::Deny(DenyReason::NoCareRelation)
    );
}

#[test]
fn closing_pharmacies_denies_the_pharmacist() {
    let reg = registry();
    let mut p = person(vec![(PHARM, CareKind::Treated)]);
    let ph = user(Profession::Pharmacist, PHARM);
    let r = rec(ResourceClass::Prescription, SOURCE, "P1");
    assert!(decide(&ph, Operation::Read, &r, &ctx(&reg, &ph, &p)).is_allow());
    p.consent.kinds.push(KindSetting {
        within: Within::Area("1301".into()),
        class: FacilityClass::Pharmacy,
        allow: false,
    });
    assert!(matches!(decide(&ph, Operation::Read, &r, &ctx(&reg, &ph, &p)), Decision::Deny(DenyReason::Consent(_))));
}

#[test]
fn outside_the_area_needs_individual_consent_given_in_person() {
    let reg = registry();
    let doc = user(Profession::Doctor, FAR);
    let r = rec(ResourceClass::Lab, SOURCE, "P1");
    let treated = person(vec![(FAR, CareKind::Treated)]);
    assert!(matches!(
        decide(&doc, Operation::Read, &r, &ctx(&reg, &doc, &treated)),
        Decision::Deny(DenyReason::Consent(_))
    ));
    let consented = person(vec![(FAR, CareKind::InPersonConsent)]);
    assert!(decide(&doc, Operation::Read, &r, &ctx(&reg, &doc, &consented)).is_allow());
    // An explicit "no" for that facility is not overridden by consent in person.
    let mut refused = consented.clone();
    refused.consent.facilities.insert(FAR.into(), false);
    assert!(matches!(
        decide(&doc, Operation::Read, &r, &ctx(&reg, &doc, &refused)),
        Decision::Deny(DenyReason::Consent(_))
    ));
}

#[test]
fn profession_class_period_and_flags() {
    let reg = registry();
    let p = person(vec![(HOSP, CareKind::Treated)]);
    let clerk = user(Profession::Clerk, HOSP);
    assert_eq!(
        decide(&clerk, Operation::Read, &rec(ResourceClass::Diagnosis, SOURCE, "P1"), &ctx(&reg, &clerk, &p)),
        Decision::Deny(DenyReason::ProfessionClass)
    );
    assert!(
        decide(&clerk, Operation::Read, &rec(ResourceClass::Encounter, SOURCE, "P1"), &ctx(&reg, &clerk, &p))
            .is_allow()
    );
    // Even at its own facility a clerk does not read clinical content.
    assert_eq!(
        decide(&clerk, Operation::Read, &rec(ResourceClass::Lab, HOSP, "P1"), &ctx(&reg, &clerk, &p)),
        Decision::Deny(DenyReason::ProfessionClass)
    );
    let ph = user(Profession::Pharmacist, HOSP);
    let mut old = rec(ResourceClass::Lab, SOURCE, "P1");
    old.clinical_date = Some(NOW - 400 * DAY);
    assert_eq!(decide(&ph, Operation::Read, &old, &ctx(&reg, &ph, &p)), Decision::Deny(DenyReason::OutsidePeriod));
    let doc = user(Profession::Doctor, HOSP);
    assert!(decide(&doc, Operation::Read, &old, &ctx(&reg, &doc, &p)).is_allow());
    let mut undelivered = rec(ResourceClass::Diagnosis, SOURCE, "P1");
    undelivered.flags = Flags::UNDELIVERED;
    assert_eq!(
        decide(&doc, Operation::Read, &undelivered, &ctx(&reg, &doc, &p)),
        Decision::Deny(DenyReason::Undelivered)
    );
}

#[test]
fn break_glass_skips_consent_and_care_until_it_expires() {
    let reg = registry();
    let mut p = person(vec![]);
    p.consent.closed = true;
    let doc = user(Profession::Doctor, FAR);
    let r = rec(ResourceClass::DrugAllergy, SOURCE, "P1");
    assert!(!decide(&doc, Operation::Read, &r, &ctx(&reg, &doc, &p)).is_allow());
    p.emergency.push(EmergencyGrant {
        user_id: "u-doctor".into(),
        reason: "意識障害で救急搬送".into(),
        until: NOW + DAY,
    });
    let d = decide(&doc, Operation::Read, &r, &ctx(&reg, &doc, &p));
    assert_eq!(d.emergency_reason(), Some("意識障害で救急搬送"));
    p.emergency[0].until = NOW - 1;
    assert!(!decide(&doc, Operation::Read, &r, &ctx(&reg, &doc, &p)).is_allow(), "expired");
}

/// The bootstrap token sees nothing, writes nothing, searches nothing and reads no audit log;
/// the operator sees everything.
#[test]
fn the_bootstrap_token_is_not_privileged() {
    let boot = Actor::Bootstrap { name: "admin".into() };
    assert!(!boot.is_privileged() && boot.is_bootstrap());
    let c = Context { now: NOW, ..Default::default() };
    for op in [Operation::Read, Operation::Write, Operation::Delete] {
        assert_eq!(
            decide(&boot, op, &rec(ResourceClass::Diagnosis, SOURCE, "P1"), &c),
            Decision::Deny(DenyReason::BootstrapOnly)
        );
    }
    assert_eq!(search_scope(&boot, ResourceType::Condition, &c), Scope::none());
    assert!(!may_read_audit(&boot).is_allow());
    assert!(DenyReason::BootstrapOnly.message_ja().contains("最初の運営者アカウントの作成にだけ"));
    let op = Actor::Operator { name: "op-yamada".into() };
    assert!(op.is_privileged() && !op.is_bootstrap());
    assert!(decide(&op, Operation::Read, &rec(ResourceClass::Diagnosis, SOURCE, "P1"), &c).is_allow());
}

#[test]
fn patients_see_their_own_records_except_uninformed() {
    let me = Actor::Portal(PortalActor {
        account_id: "a1".into(),
        name: "x".into(),
        person_id: "P1".into(),
        proxy_relation: None,
        may_view_records: true,
    });
    let c = Context { now: NOW, ..Default::default() };
    assert!(decide(&me, Operation::Read, &rec(ResourceClass::Diagnosis, SOURCE, "P1"), &c).is_allow());
    assert!(!decide(&me, Operation::Read, &rec(ResourceClass::Diagnosis, SOURCE, "P2"), &c).is_allow());
    let mut hidden = rec(ResourceClass::Diagnosis, SOURCE, "P1");
    hidden.flags = Flags::UNINFORMED;
    assert_eq!(decide(&me, Operation::Read, &hidden, &c), Decision::Deny(DenyReason::Uninformed));
    assert!(!decide(&me, Operation::Write, &rec(ResourceClass::Diagnosis, SOURCE, "P1"), &c).is_allow());
    // Clinicians are not affected by 未告知.
    let reg = registry();
    let p = person(vec![(HOSP, CareKind::Treated)]);
    let doc = user(Profession::Doctor, HOSP);
    assert!(decide(&doc, Operation::Read, &hidden, &ctx(&reg, &doc, &p)).is_allow());
    let proxy = Actor::Portal(PortalActor {
        account_id: "a2".into(),
        name: "y".into(),
        person_id: "P1".into(),
        proxy_relation: Some("家族".into()),
        may_view_records: false,
    });
    assert!(!decide(&proxy, Operation::Read, &rec(ResourceClass::Diagnosis, SOURCE, "P1"), &c).is_allow());
}

#[test]
fn attack_a_facility_that_does_not_view_reads_nothing_of_others() {
    let mut reg = registry();
    for f in &mut reg {
        if f.code == fac(HOSP) {
            f.views = false;
        }
    }
    let p = person(vec![(HOSP, CareKind::InPersonConsent)]);
    let doc = user(Profession::Doctor, HOSP);
    let c = ctx(&reg, &doc, &p);
    assert_eq!(
        decide(&doc, Operation::Read, &rec(ResourceClass::Diagnosis, SOURCE, "P1"), &c),
        Decision::Deny(DenyReason::FacilityDoesNotView)
    );
    // Its own records stay readable.
    assert!(decide(&doc, Operation::Read, &rec(ResourceClass::Diagnosis, HOSP, "P1"), &c).is_allow());
}

#[test]
fn attack_a_facility_that_does_not_disclose_is_shown_to_nobody() {
    let reg = registry();
    let p = person(vec![(HOSP, CareKind::Treated)]);
    let doc = user(Profession::Doctor, HOSP);
    let withheld = [fac(SOURCE)];
    let c = Context { withheld: &withheld, ..ctx(&reg, &doc, &p) };
    assert_eq!(
        decide(&doc, Operation::Read, &rec(ResourceClass::Diagnosis, SOURCE, "P1"), &c),
        Decision::Deny(DenyReason::NotDisclosed)
    );
    // Break-glass does not open it either.
    let mut p2 = p.clone();
    p2.emergency.push(EmergencyGrant { user_id: "u-doctor".into(), reason: "救急".into(), until: NOW + DAY });
    let c2 = Context { withheld: &withheld, ..ctx(&reg, &doc, &p2) };
    assert!(!decide(&doc, Operation::Read, &rec(ResourceClass::Diagnosis, SOURCE, "P1"), &c2).is_allow());
    // The patient still sees their own record.
    let me = Actor::Portal(PortalActor {
        account_id: "a".into(),
        name: "n".into(),
        person_id: "P1".into(),
        proxy_relation: None,
        may_view_records: true,
    });
    assert!(decide(&me, Operation::Read, &rec(ResourceClass::Diagnosis, SOURCE, "P1"), &c).is_allow());
}

#[test]
fn attack_a_clinician_reads_the_patients_disclosure_settings() {
    let reg = registry();
    let p = person(vec![(HOSP, CareKind::Treated)]);
    let doc = user(Profession::Doctor, HOSP);
    let mut consent = rec(ResourceClass::Other, SOURCE, "P1");
    consent.rtype = ResourceType::Consent;
    consent.facility = None;
    assert_eq!(
        decide(&doc, Operation::Read, &consent, &ctx(&reg, &doc, &p)),
        Decision::Deny(DenyReason::PatientSettings)
    );
    assert!(!in_scope(&search_scope(&doc, ResourceType::Consent, &ctx(&reg, &doc, &p)), &consent));
}

#[test]
fn expired_consent_at_the_visit_is_no_care_relationship() {
    let reg = registry();
    let mut p = person(vec![]);
    p.care.push(CareRelation { facility: fac(FAR), kind: CareKind::InPersonConsent, until: Some(NOW - 1) });
    let doc = user(Profession::Doctor, FAR);
    assert!(
        !decide(&doc, Operation::Read, &rec(ResourceClass::Diagnosis, SOURCE, "P1"), &ctx(&reg, &doc, &p)).is_allow()
    );
    p.care[0].until = Some(NOW + DAY);
    assert!(
        decide(&doc, Operation::Read, &rec(ResourceClass::Diagnosis, SOURCE, "P1"), &ctx(&reg, &doc, &p)).is_allow()
    );
}

#[test]
fn break_glass_opens_what_an_emergency_needs_not_checkups() {
    let reg = registry();
    let mut p = person(vec![]);
    p.emergency.push(EmergencyGrant { user_id: "u-doctor".into(), reason: "救急".into(), until: NOW + DAY });
    let doc = user(Profession::Doctor, FAR);
    let c = ctx(&reg, &doc, &p);
    assert!(decide(&doc, Operation::Read, &rec(ResourceClass::DrugAllergy, SOURCE, "P1"), &c).is_allow());
    assert_eq!(
        decide(&doc, Operation::Read, &rec(ResourceClass::Checkup, SOURCE, "P1"), &c),
        Decision::Deny(DenyReason::NotForEmergency)
    );
}

// ---- property tests: scope == decision ----

fn arb_actor() -> impl Strategy<Value = Actor> {
    let facs = vec![HOSP, PHARM, FAR, SOURCE];
    prop_oneof![
        Just(Actor::Bootstrap { name: "admin".into() }),
        Just(Actor::Operator { name: "root".into() }),
        prop::sample::select(facs.clone()).prop_map(|f| Actor::System { name: "sys".into(), facility: fac(f) }),
        (prop::sample::select(Profession::ALL.to_vec()), prop::sample::select(facs)).prop_map(|(p, f)| user(p, f)),
        (any::<bool>(), prop::sample::select(vec!["P1", "P2"]), any::<bool>()).prop_map(|(proxy, person, view)| {
            Actor::Portal(PortalActor {
                account_id: "a".into(),
                name: "n".into(),
                person_id: person.into(),
                proxy_relation: proxy.then(|| "家族".into()),
                may_view_records: view || !proxy,
            })
        }),
    ]
}

fn arb_record() -> impl Strategy<Value = RecordView> {
    (
        prop::sample::select(ResourceType::ALL.to_vec()),
        prop::sample::select(ResourceClass::ALL.to_vec()),
        prop::option::of(prop::sample::select(vec![HOSP, PHARM, FAR, SOURCE])),
        prop::option::of(prop::sample::select(vec!["P1", "P2"])),
        0u8..8,
        prop::option::of(0i64..800),
    )
        .prop_map(|(rtype, class, f, person, flags, age_days)| RecordView {
            rtype,
            class,
            facility: f.map(fac),
            patient_id: person.map(|p| format!("pt-{p}")),
            person_id: person.map(str::to_owned),
            flags: Flags::from_bits(flags),
            clinical_date: age_days.map(|d| NOW - d * DAY),
        })
}

fn arb_person() -> impl Strategy<Value = PersonContext> {
    let facs = vec![HOSP, PHARM, FAR, SOURCE];
    (
        any::<bool>(),
        prop::collection::vec(
            (
                prop::sample::select(facs.clone()),
                prop::sample::select(vec![CareKind::Treated, CareKind::ReferralAddressed, CareKind::InPersonConsent]),
                any::<bool>(),
            ),
            0..4,
        ),
        prop::collection::vec((prop::sample::select(facs.clone()), any::<bool>()), 0..3),
        prop::collection::vec((prop::sample::select(FacilityClass::ALL.to_vec()), any::<bool>(), any::<bool>()), 0..3),
        prop::collection::vec((prop::sample::select(Profession::ALL.to_vec()), any::<bool>()), 0..3),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        prop::option::of((prop::sample::select(Profession::ALL.to_vec()), any::<bool>())),
    )
        .prop_map(|(closed, care, facilities, kinds, profs, area, emergency)| {
            let mut p = person(Vec::new());
            // Some people have not consented to take part.
            p.participating = !(closed && care.len() % 2 == 1);
            // Consent at the visit is always bounded now; some relations have run out.
            p.care = care
                .into_iter()
                .map(|(f, k, expired)| CareRelation {
                    facility: fac(f),
                    kind: k,
                    until: match (k, expired) {
                        (CareKind::InPersonConsent, true) => Some(NOW - DAY),
                        (CareKind::InPersonConsent, false) => Some(NOW + DAY),
                        _ => None,
                    },
                })
                .collect();
            p.consent.closed = closed;
            p.consent.facilities = facilities.into_iter().map(|(f, a)| (f.to_string(), a)).collect();
            p.consent.kinds = kinds
                .into_iter()
                .map(|(class, by_area, allow)| KindSetting {
                    within: if by_area { Within::Area("1301".into()) } else { Within::Prefecture(13) },
                    class,
                    allow,
                })
                .collect();
            p.consent.professions = profs.into_iter().map(|(pr, a)| (pr.code().to_string(), a)).collect();
            p.consent.area = consent::AreaSettings {
                residence_area: area.0,
                residence_prefecture: area.1,
                recent_prefectures: area.2,
                elsewhere: area.3,
            };
            if let Some((pr, active)) = emergency {
                p.emergency.push(EmergencyGrant {
                    user_id: format!("u-{}", pr.code()),
                    reason: "救急".into(),
                    until: if active { NOW + DAY } else { NOW - DAY },
                });
            }
            p
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// What search shows is exactly what read allows.
    #[test]
    fn scope_agrees_with_decision(
        actor in arb_actor(),
        rec in arb_record(),
        p in arb_person(),
        with_person in any::<bool>(),
        views in any::<bool>(),
        withheld in prop::sample::subsequence(vec![HOSP, PHARM, FAR, SOURCE], 0..3),
        per_visit in any::<bool>(),
    ) {
        let mut reg = registry();
        for f in &mut reg {
            f.views = views;
        }
        let withheld: Vec<FacilityCode> = withheld.into_iter().map(fac).collect();
        let c = Context {
            now: NOW,
            facility: actor.facility().and_then(|f| reg.iter().find(|i| i.code == f)),
            person: with_person.then_some(&p),
            withheld: &withheld,
            policy: if per_visit { SharingPolicy::PerVisit } else { SharingPolicy::OptIn },
        };
        let scope = search_scope(&actor, rec.rtype, &c);
        prop_assert_eq!(in_scope(&scope, &rec), decide(&actor, Operation::Read, &rec, &c).is_allow());
    }

    /// Nobody but administrators writes another facility's records; patients write nothing.
    #[test]
    fn writes_only_to_own_facility(actor in arb_actor(), rec in arb_record()) {
        let c = Context { now: NOW, ..Default::default() };
        for op in [Operation::Write, Operation::Delete] {
            let d = decide(&actor, op, &rec, &c);
            match &actor {
                Actor::Operator { .. } => prop_assert!(d.is_allow()),
                Actor::Bootstrap { .. } => prop_assert_eq!(d, Decision::Deny(DenyReason::BootstrapOnly)),
                Actor::System { facility, .. } => prop_assert_eq!(d.is_allow(), rec.facility == Some(*facility) && rec.rtype != ResourceType::AuditEvent),
                Actor::User(u) => prop_assert_eq!(d.is_allow(), rec.facility == Some(u.facility) && rec.rtype != ResourceType::AuditEvent),
                Actor::Portal(_) => prop_assert!(!d.is_allow()),
            }
        }
    }

    /// A user never reads another facility's record of a person without consent and a care
    /// relationship, or an active emergency grant.
    #[test]
    fn no_access_without_basis(
        p in arb_person(),
        rec in arb_record(),
        prof in prop::sample::select(Profession::ALL.to_vec()),
        views in any::<bool>(),
        withheld in prop::sample::subsequence(vec![PHARM, FAR, SOURCE], 0..3),
        per_visit in any::<bool>(),
    ) {
        let mut reg = registry();
        for f in &mut reg {
            f.views = views;
        }
        let withheld: Vec<FacilityCode> = withheld.into_iter().map(fac).collect();
        let actor = user(prof, HOSP);
        let policy = if per_visit { SharingPolicy::PerVisit } else { SharingPolicy::OptIn };
        let c = Context { now: NOW, facility: reg.iter().find(|i| i.code == fac(HOSP)), person: Some(&p), withheld: &withheld, policy };
        let d = decide(&actor, Operation::Read, &rec, &c);
        if d.is_allow() && rec.facility != Some(fac(HOSP)) && !is_directory(rec.rtype, rec.class) {
            // A facility that does not view reads nothing of others; a withheld facility's
            // records and the patients' settings reach nobody outside it.
            prop_assert!(views);
            prop_assert!(rec.facility.is_none_or(|f| !withheld.contains(&f)));
            prop_assert!(rec.rtype != ResourceType::Consent);
            let emergency = p.emergency.iter().any(|g| g.user_id == format!("u-{}", prof.code()) && g.until > NOW);
            let care = p.care.iter().any(|c| c.facility == fac(HOSP) && c.until.is_none_or(|t| t > NOW));
            prop_assert!(emergency || (care && !p.consent.closed));
            // Without participation (opt-in) or a consent at the visit (per visit), only an
            // emergency grant opens another facility's record.
            let visit = p.care.iter().any(|c| {
                c.facility == fac(HOSP) && c.kind == CareKind::InPersonConsent && c.until.is_none_or(|t| t > NOW)
            });
            match policy {
                SharingPolicy::OptIn => prop_assert!(emergency || p.participating),
                SharingPolicy::PerVisit => prop_assert!(emergency || visit),
            }
            prop_assert!(policy::profession_may_see(prof, rec.class));
            // Break-glass opens only what an emergency needs.
            if matches!(d, Decision::Allow(Basis::Emergency(_))) {
                prop_assert!(policy::emergency_may_see(rec.class));
            }
            prop_assert!(!rec.flags.contains(Flags::UNDELIVERED));
        }
    }
}
