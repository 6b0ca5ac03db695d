//! Who may do what with referral letters (文書送受信: 診療情報提供書 sent from one facility to
//! another, and replies): the decision behind every step of the referral exchange, made here so
//! that the gate stays the one place where access is decided. The service asks
//! [`decide_referral`] before it lists a box, opens a letter or a file, marks a letter received,
//! replies or sends, and audits the answer, allowed or refused.
//!
//! | actor | list a box | send as a facility | open a letter, download its files | mark received, reply |
//! |---|---|---|---|---|
//! | 医師, 歯科医師, 看護師 | their facility's inbox and outbox | as their facility | letters sent by or addressed to their facility | letters addressed to their facility |
//! | 事務職 (地域連携室), 薬剤師, その他医療職 | their facility's (the lists show the patient's name, the sender and the status, no clinical content) | no | no (the profession may not see referral letters: [`crate::policy`]) | no |
//! | a facility's system | its facility's | as its facility | as a clinician of its facility | letters addressed to its facility |
//! | administrator, operator | any facility's | as any facility | any letter (without marking it received) | no |
//! | a patient or proxy | no | no | no (their letters are in their own record, read through [`crate::decide`]) | no |
//! | another facility | no | no | no, answered as if the letter did not exist | no |
//!
//! ## Why the addressee's opening does not ask the patient's disclosure settings
//!
//! The disclosure settings ([`crate::consent`]) govern what the network *shares*: which
//! facilities and professions may look into records that other facilities sent about the
//! patient. A 診療情報提供書 is not shared that way: the referring physician writes it to one
//! named facility, because the patient is going there and asked for it, and the network only
//! carries it (the national sharing service delivers a referral to its addressee in the same
//! way, apart from the consent for viewing the 6 information items). Japan's guidance on personal
//! information in medical care (医療・介護関係事業者における個人情報の適切な取扱いのための
//! ガイダンス) treats passing information to the facility a patient is referred to as within the
//! consent the patient gave by asking for the referral. Refusing the addressee because the
//! patient had closed, say, clinics in another area would stop the letter the patient asked for
//! and help nobody. So the addressee's clinicians open the letter whatever the settings say; the
//! rest of the patient's record stays behind the settings: the letter gives the addressee a care
//! relationship (`CareKind::ReferralAddressed`), never consent, so [`crate::decide`] still asks
//! the settings for everything else. The profession table still applies to the letter itself
//! (a clerk at the addressee lists it but does not read it), and so does the audit: every
//! opening is in the patient's access history.

use musubi_domain::{FacilityCode, Profession, ResourceClass};

use crate::{Actor, Basis, Decision, DenyReason, policy};

/// A referral letter as the gate sees it: who sent it, and to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LetterView {
    /// The sending facility.
    pub sender: FacilityCode,
    /// The facility it is addressed to.
    pub addressee: FacilityCode,
}

/// What the actor wants to do in the referral exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferralOp {
    /// List the letters addressed to a facility (its inbox).
    ListInbox(FacilityCode),
    /// List the letters a facility sent (its outbox).
    ListOutbox(FacilityCode),
    /// Send a letter (a new one, or a reply) as a facility.
    Send(FacilityCode),
    /// Open a letter: its documents and its signature.
    Open(LetterView),
    /// Download a file attached to a letter.
    File(LetterView),
    /// Mark a letter received (what the addressee's first opening does).
    MarkReceived(LetterView),
    /// Answer a letter (返書).
    Reply(LetterView),
    /// Withdraw (取り下げ) a letter sent by mistake: the sender facility's act.
    Withdraw(LetterView),
}

/// The actor's part in a letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferralParty {
    /// The actor acts for the facility the letter is addressed to.
    Addressee,
    /// The actor acts for the facility that sent it.
    Sender,
}

/// The actor's part in a letter, if any (administrators and the operator have none: they are
/// not a facility). A letter a facility addressed to itself is never sent; if one were, the
/// facility would be its addressee.
pub fn party(actor: &Actor, view: &LetterView) -> Option<ReferralParty> {
    let own = actor.facility()?;
    if own == view.addressee {
        Some(ReferralParty::Addressee)
    } else if own == view.sender {
        Some(ReferralParty::Sender)
    } else {
        None
    }
}

/// The actor's part in a letter when they may handle it: one of its two facilities (else the
/// letter is hidden) and, for a person, a profession that reads letters.
fn handling_party(actor: &Actor, view: &LetterView) -> Result<ReferralParty, DenyReason> {
    let p = party(actor, view).ok_or(DenyReason::NotReferralParty)?;
    if let Actor::User(u) = actor
        && !profession_may_handle(u.profession)
    {
        return Err(DenyReason::ProfessionClass);
    }
    Ok(p)
}

/// Whether the profession may read (and so write) referral letters: the profession table's
/// rule for the class 診療情報提供書.
fn profession_may_handle(p: Profession) -> bool {
    policy::profession_may_see(p, ResourceClass::Referral)
}

/// Whether the actor may send referral letters at all, before it is known as which facility:
/// facility staff of a profession that may handle letters, systems, administrators. Lets a
/// refusal come before the document is even read.
pub fn may_send_referrals(actor: &Actor) -> Decision {
    match actor {
        Actor::Operator { .. } => Decision::Allow(Basis::Privileged),
        Actor::Bootstrap { .. } => Decision::Deny(DenyReason::BootstrapOnly),
        Actor::System { .. } => Decision::Allow(Basis::OwnFacility),
        Actor::User(u) if profession_may_handle(u.profession) => Decision::Allow(Basis::OwnFacility),
        Actor::User(_) => Decision::Deny(DenyReason::ProfessionClass),
        Actor::Portal(_) => Decision::Deny(DenyReason::StaffOnly),
    }
}

/// The decision about one step of the referral exchange (the table in the module
/// documentation). Refusals that must look like a missing letter are
/// [`DenyReason::NotReferralParty`]; the caller answers them as "not found".
pub fn decide_referral(actor: &Actor, op: &ReferralOp) -> Decision {
    if actor.is_bootstrap() {
        return Decision::Deny(DenyReason::BootstrapOnly);
    }
    match *op {
        ReferralOp::ListInbox(f) | ReferralOp::ListOutbox(f) => match actor {
            Actor::Operator { .. } => Decision::Allow(Basis::Privileged),
            Actor::Bootstrap { .. } => Decision::Deny(DenyReason::BootstrapOnly),
            // Every profession of the facility lists its boxes: the lists carry no clinical
            // content (DESIGN.md: the clerk "manages referrals").
            Actor::System { facility, .. } | Actor::User(crate::UserActor { facility, .. }) => {
                if *facility == f {
                    Decision::Allow(Basis::OwnFacility)
                } else {
                    Decision::Deny(DenyReason::OtherFacility)
                }
            }
            Actor::Portal(_) => Decision::Deny(DenyReason::StaffOnly),
        },
        ReferralOp::Send(f) => match may_send_referrals(actor) {
            Decision::Allow(Basis::Privileged) => Decision::Allow(Basis::Privileged),
            Decision::Allow(_) if actor.facility() == Some(f) => Decision::Allow(Basis::OwnFacility),
            Decision::Allow(_) => Decision::Deny(DenyReason::OtherFacility),
            deny => deny,
        },
        ReferralOp::Open(v) | ReferralOp::File(v) => {
            if actor.is_privileged() {
                return Decision::Allow(Basis::Privileged);
            }
            match handling_party(actor, &v) {
                Err(r) => Decision::Deny(r),
                Ok(ReferralParty::Addressee) => Decision::Allow(Basis::ReferralAddressed),
                Ok(ReferralParty::Sender) => Decision::Allow(Basis::OwnFacility),
            }
        }
        ReferralOp::Withdraw(v) => {
            if actor.is_privileged() {
                return Decision::Allow(Basis::Privileged);
            }
            match handling_party(actor, &v) {
                Err(r) => Decision::Deny(r),
                Ok(_) if actor.facility() == Some(v.sender) => Decision::Allow(Basis::OwnFacility),
                // The addressee learns of the letter but cannot take it back.
                Ok(_) => Decision::Deny(DenyReason::OtherFacility),
            }
        }
        ReferralOp::MarkReceived(v) | ReferralOp::Reply(v) => {
            // Administrators open letters without receiving them, and write no replies: a
            // receipt and a reply are the addressee facility's acts.
            if actor.is_privileged() {
                return Decision::Deny(DenyReason::NotAddressee);
            }
            match handling_party(actor, &v) {
                Err(r) => Decision::Deny(r),
                Ok(ReferralParty::Addressee) => Decision::Allow(Basis::ReferralAddressed),
                Ok(ReferralParty::Sender) => Decision::Deny(DenyReason::NotAddressee),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PortalActor, UserActor};
    use proptest::prelude::*;

    const A: &str = "1318814790";
    const B: &str = "1311234567";
    const C: &str = "1319999990";

    fn fac(s: &str) -> FacilityCode {
        s.parse().unwrap()
    }

    fn user(p: Profession, f: &str) -> Actor {
        Actor::User(UserActor {
            user_id: format!("u-{}-{f}", p.code()),
            login: format!("{}@{f}", p.code()),
            name: "結 花子".into(),
            profession: p,
            facility: fac(f),
        })
    }

    fn system(f: &str) -> Actor {
        Actor::System { name: format!("emr-{f}"), facility: fac(f) }
    }

    fn patient() -> Actor {
        Actor::Portal(PortalActor {
            account_id: "pt-1".into(),
            name: "牧野 爛漫".into(),
            person_id: "P1".into(),
            proxy_relation: None,
            may_view_records: true,
        })
    }

    fn letter() -> LetterView {
        LetterView { sender: fac(A), addressee: fac(B) }
    }

    #[test]
    fn the_addressee_doctor_opens_receives_and_replies() {
        let dr = user(Profession::Doctor, B);
        for op in [ReferralOp::Open(letter()), ReferralOp::File(letter()), ReferralOp::MarkReceived(letter())] {
            assert_eq!(decide_referral(&dr, &op), Decision::Allow(Basis::ReferralAddressed), "{op:?}");
        }
        assert_eq!(decide_referral(&dr, &ReferralOp::Reply(letter())), Decision::Allow(Basis::ReferralAddressed));
        assert_eq!(party(&dr, &letter()), Some(ReferralParty::Addressee));
    }

    #[test]
    fn the_sender_opens_but_neither_receives_nor_replies() {
        let ns = user(Profession::Nurse, A);
        assert_eq!(decide_referral(&ns, &ReferralOp::Open(letter())), Decision::Allow(Basis::OwnFacility));
        assert_eq!(decide_referral(&ns, &ReferralOp::MarkReceived(letter())), Decision::Deny(DenyReason::NotAddressee));
        assert_eq!(decide_referral(&ns, &ReferralOp::Reply(letter())), Decision::Deny(DenyReason::NotAddressee));
    }

    #[test]
    fn a_clerk_lists_the_box_but_does_not_read_or_send() {
        let clerk = user(Profession::Clerk, B);
        assert_eq!(decide_referral(&clerk, &ReferralOp::ListInbox(fac(B))), Decision::Allow(Basis::OwnFacility));
        assert_eq!(decide_referral(&clerk, &ReferralOp::ListOutbox(fac(B))), Decision::Allow(Basis::OwnFacility));
        assert_eq!(decide_referral(&clerk, &ReferralOp::Open(letter())), Decision::Deny(DenyReason::ProfessionClass));
        assert_eq!(
            decide_referral(&clerk, &ReferralOp::MarkReceived(letter())),
            Decision::Deny(DenyReason::ProfessionClass)
        );
        assert_eq!(decide_referral(&clerk, &ReferralOp::Send(fac(B))), Decision::Deny(DenyReason::ProfessionClass));
        assert_eq!(may_send_referrals(&clerk), Decision::Deny(DenyReason::ProfessionClass));
        // A pharmacist likewise (the profession table: no referral letters).
        let ph = user(Profession::Pharmacist, B);
        assert_eq!(decide_referral(&ph, &ReferralOp::File(letter())), Decision::Deny(DenyReason::ProfessionClass));
    }

    #[test]
    fn another_facility_sees_nothing_and_is_told_nothing() {
        let dr = user(Profession::Doctor, C);
        for op in [
            ReferralOp::Open(letter()),
            ReferralOp::File(letter()),
            ReferralOp::MarkReceived(letter()),
            ReferralOp::Reply(letter()),
        ] {
            assert_eq!(decide_referral(&dr, &op), Decision::Deny(DenyReason::NotReferralParty), "{op:?}");
        }
        // Its clerk is refused the same way (not "your profession may not"): the letter's
        // existence is not revealed.
        let clerk = user(Profession::Clerk, C);
        assert_eq!(decide_referral(&clerk, &ReferralOp::Open(letter())), Decision::Deny(DenyReason::NotReferralParty));
        assert_eq!(decide_referral(&dr, &ReferralOp::ListInbox(fac(B))), Decision::Deny(DenyReason::OtherFacility));
        assert_eq!(decide_referral(&dr, &ReferralOp::Send(fac(A))), Decision::Deny(DenyReason::OtherFacility));
    }

    #[test]
    fn systems_act_for_their_facility() {
        let emr = system(B);
        assert_eq!(decide_referral(&emr, &ReferralOp::Open(letter())), Decision::Allow(Basis::ReferralAddressed));
        assert_eq!(
            decide_referral(&emr, &ReferralOp::MarkReceived(letter())),
            Decision::Allow(Basis::ReferralAddressed)
        );
        assert_eq!(decide_referral(&emr, &ReferralOp::Send(fac(B))), Decision::Allow(Basis::OwnFacility));
        assert_eq!(decide_referral(&emr, &ReferralOp::Send(fac(A))), Decision::Deny(DenyReason::OtherFacility));
        assert_eq!(
            decide_referral(&system(C), &ReferralOp::Open(letter())),
            Decision::Deny(DenyReason::NotReferralParty)
        );
    }

    #[test]
    fn administrators_open_without_receiving() {
        let admin = Actor::Operator { name: "op".into() };
        assert_eq!(decide_referral(&admin, &ReferralOp::Open(letter())), Decision::Allow(Basis::Privileged));
        assert_eq!(decide_referral(&admin, &ReferralOp::ListInbox(fac(C))), Decision::Allow(Basis::Privileged));
        assert_eq!(decide_referral(&admin, &ReferralOp::Send(fac(A))), Decision::Allow(Basis::Privileged));
        assert_eq!(
            decide_referral(&admin, &ReferralOp::MarkReceived(letter())),
            Decision::Deny(DenyReason::NotAddressee)
        );
        let op = Actor::Operator { name: "root".into() };
        assert_eq!(decide_referral(&op, &ReferralOp::Reply(letter())), Decision::Deny(DenyReason::NotAddressee));
    }

    #[test]
    fn patients_use_their_own_record_not_the_exchange() {
        let p = patient();
        assert_eq!(decide_referral(&p, &ReferralOp::Open(letter())), Decision::Deny(DenyReason::NotReferralParty));
        assert_eq!(decide_referral(&p, &ReferralOp::ListInbox(fac(B))), Decision::Deny(DenyReason::StaffOnly));
        assert_eq!(decide_referral(&p, &ReferralOp::Send(fac(A))), Decision::Deny(DenyReason::StaffOnly));
        assert_eq!(may_send_referrals(&p), Decision::Deny(DenyReason::StaffOnly));
    }

    /// What the caller sees of a decision.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Seen {
        Allowed,
        /// Answered as if the letter did not exist (404).
        Hidden,
        /// Refused with a reason (403).
        Refused,
    }

    fn seen(d: &Decision) -> Seen {
        match d {
            Decision::Allow(_) => Seen::Allowed,
            Decision::Deny(DenyReason::NotReferralParty) => Seen::Hidden,
            Decision::Deny(_) => Seen::Refused,
        }
    }

    /// The rules as DESIGN.md states them, written without the code above: clinicians
    /// (医師・歯科医師・看護師: the professions that see documents) send and receive referral
    /// letters; clerks (地域連携室) manage referrals but see no clinical content; systems act for
    /// their facility; the operator sees everything but is not a facility; patients read their
    /// own record, not the exchange; a letter is between its sender and its addressee, and
    /// nobody else learns it exists; the bootstrap token takes no part at all.
    fn oracle(actor: &Actor, op: &ReferralOp) -> Seen {
        if matches!(actor, Actor::Bootstrap { .. }) {
            return Seen::Refused;
        }
        let privileged = matches!(actor, Actor::Operator { .. });
        let facility = match actor {
            Actor::System { facility, .. } => Some(*facility),
            Actor::User(u) => Some(u.facility),
            _ => None,
        };
        let reads_letters = match actor {
            Actor::System { .. } => true,
            Actor::User(u) => matches!(u.profession, Profession::Doctor | Profession::Dentist | Profession::Nurse),
            _ => false,
        };
        let yes = |b: bool| if b { Seen::Allowed } else { Seen::Refused };
        match op {
            ReferralOp::ListInbox(f) | ReferralOp::ListOutbox(f) => yes(privileged || facility == Some(*f)),
            ReferralOp::Send(f) => yes(privileged || (reads_letters && facility == Some(*f))),
            ReferralOp::Open(v) | ReferralOp::File(v) => {
                if privileged {
                    Seen::Allowed
                } else if facility == Some(v.sender) || facility == Some(v.addressee) {
                    yes(reads_letters)
                } else {
                    Seen::Hidden
                }
            }
            ReferralOp::Withdraw(v) => {
                if privileged {
                    Seen::Allowed
                } else if facility == Some(v.sender) {
                    yes(reads_letters)
                } else if facility == Some(v.addressee) {
                    Seen::Refused
                } else {
                    Seen::Hidden
                }
            }
            ReferralOp::MarkReceived(v) | ReferralOp::Reply(v) => {
                if privileged {
                    Seen::Refused
                } else if facility == Some(v.addressee) {
                    yes(reads_letters)
                } else if facility == Some(v.sender) {
                    Seen::Refused
                } else {
                    Seen::Hidden
                }
            }
        }
    }

    fn any_facility() -> impl Strategy<Value = FacilityCode> + Clone {
        prop_oneof![Just(fac(A)), Just(fac(B)), Just(fac(C))]
    }

    fn any_actor() -> impl Strategy<Value = Actor> {
        let profession = prop_oneof![
            Just(Profession::Doctor),
            Just(Profession::Dentist),
            Just(Profession::Pharmacist),
            Just(Profession::Nurse),
            Just(Profession::OtherLicensed),
            Just(Profession::Clerk),
        ];
        prop_oneof![
            Just(Actor::Bootstrap { name: "admin".into() }),
            Just(Actor::Operator { name: "root".into() }),
            any_facility().prop_map(|f| Actor::System { name: "emr".into(), facility: f }),
            (profession, any_facility()).prop_map(|(p, f)| Actor::User(UserActor {
                user_id: "u".into(),
                login: "u".into(),
                name: "結 花子".into(),
                profession: p,
                facility: f,
            })),
            (any::<bool>(), any::<bool>()).prop_map(|(proxy, may_view)| Actor::Portal(PortalActor {
                account_id: "pt".into(),
                name: "牧野 爛漫".into(),
                person_id: "P1".into(),
                proxy_relation: proxy.then(|| "家族".into()),
                may_view_records: may_view,
            })),
        ]
    }

    fn any_view() -> impl Strategy<Value = LetterView> {
        (any_facility(), any_facility()).prop_map(|(sender, addressee)| LetterView { sender, addressee })
    }

    fn any_op() -> impl Strategy<Value = ReferralOp> {
        prop_oneof![
            any_facility().prop_map(ReferralOp::ListInbox),
            any_facility().prop_map(ReferralOp::ListOutbox),
            any_facility().prop_map(ReferralOp::Send),
            any_view().prop_map(ReferralOp::Open),
            any_view().prop_map(ReferralOp::File),
            any_view().prop_map(ReferralOp::MarkReceived),
            any_view().prop_map(ReferralOp::Reply),
            any_view().prop_map(ReferralOp::Withdraw),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Every actor × operation × pair of facilities: the decision is the oracle's.
        #[test]
        fn the_decision_follows_the_design(actor in any_actor(), op in any_op()) {
            let d = decide_referral(&actor, &op);
            prop_assert_eq!(seen(&d), oracle(&actor, &op), "{:?} {:?} -> {:?}", actor, op, d);
            if let Decision::Deny(r) = &d {
                prop_assert!(!r.message_ja().is_empty());
            }
        }

        /// Whoever may receive or answer a letter may open it; whoever may open it is the
        /// operator or one of its two facilities; whoever may send as a facility may list its
        /// boxes.
        #[test]
        fn the_operations_nest(actor in any_actor(), sender in any_facility(), addressee in any_facility()) {
            let v = LetterView { sender, addressee };
            let open = decide_referral(&actor, &ReferralOp::Open(v)).is_allow();
            prop_assert_eq!(open, decide_referral(&actor, &ReferralOp::File(v)).is_allow());
            if decide_referral(&actor, &ReferralOp::MarkReceived(v)).is_allow()
                || decide_referral(&actor, &ReferralOp::Reply(v)).is_allow()
            {
                prop_assert!(open);
                prop_assert_eq!(party(&actor, &v), Some(ReferralParty::Addressee));
            }
            // Whoever may withdraw a letter may open it.
            if decide_referral(&actor, &ReferralOp::Withdraw(v)).is_allow() {
                prop_assert!(open);
            }
            if open && !actor.is_privileged() {
                prop_assert!(party(&actor, &v).is_some());
            }
            if decide_referral(&actor, &ReferralOp::Send(sender)).is_allow() {
                prop_assert!(decide_referral(&actor, &ReferralOp::ListOutbox(sender)).is_allow());
                prop_assert!(may_send_referrals(&actor).is_allow());
            }
        }
    }
}
