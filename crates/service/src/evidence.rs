//! Evidence that widens access, and only evidence the requester could not make up alone.
//!
//! - **Consent at the visit** needs the patient: a short-lived code the patient shows from the
//!   portal (or that a proxy who manages their consent shows), used once, in the same transaction
//!   as the consent it records; or a signed paper form that staff register and that takes effect
//!   only when the operator confirms it. Either has a bounded period (the day of the visit by
//!   default, 90 days at most) and is told to the patient and listed for the operator at once.
//! - **Portal enrolment** binds an account to a person only with a one-time activation code that
//!   a member facility (for its own patient) or the operator issued after an identity check,
//!   plus the birth date. Every failure gets the same answer and the same work (one password
//!   hash), so the endpoint tells nobody whether someone has records or an account; the holder
//!   of an existing account is told of every attempt with a valid code.
//! - **Break-glass** is bounded: a reason from a list plus a real free text, the second factor
//!   entered again, a window of hours, a per-user limit with an alert to the operator, and a
//!   notice to the patient that is kept for their first login and listed for posting.
//!
//! Why a paper consent waits for the operator rather than taking effect at once: the paper is
//! evidence only once somebody other than the requester has seen it; an emergency that cannot
//! wait has break-glass, which is bounded and reviewed.

use musubi_domain::Profession;
use musubi_domain::audit::{AuditAction, AuditOutcome, AuditPurpose};
use musubi_fhir::ResourceType;
use musubi_fhir::datetime::now_ms;
use musubi_gate::{Actor, PortalActor, policy};
use musubi_store::{
    AccountWrite, AlertRow, CodePurpose, EmergencyRow, EvidenceWrite, NotificationRow, PersonCodeRow, PortalRow,
    StoreError, VisitConsentRow,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::people::{
    Enrolled, Registration, check_login_name, check_password_rule, hash_password, new_totp_secret, own_portal,
    require_privileged, totp_uri,
};
use crate::{ApiError, Ctx, ErrorKind, Service};

const MINUTE: i64 = 60 * 1000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// How long a consent code shown by the patient stays valid.
pub const CONSENT_CODE_MS: i64 = 15 * MINUTE;
/// How long an activation code for portal enrolment stays valid.
pub const ACTIVATION_CODE_MS: i64 = 30 * DAY;
/// The longest period a consent at the visit may cover (an admission).
pub const MAX_VISIT_CONSENT_DAYS: i64 = 90;
/// Wrong consent codes a user may enter per hour before being refused for the hour.
pub const MAX_CODE_FAILURES_PER_HOUR: i64 = 5;
/// The default window of an emergency access (hours); the setting `emergency.hours` changes it
/// within 1..=12.
pub const EMERGENCY_HOURS: i64 = 4;
/// Emergency accesses one user may start in 24 hours; the operator is alerted when a user
/// reaches it, and further ones are refused.
pub const EMERGENCY_PER_DAY: i64 = 3;
/// The shortest free-text reason of an emergency access (characters).
pub const EMERGENCY_REASON_MIN: usize = 10;
/// An emergency access not reviewed within this many days is shown as overdue.
pub const EMERGENCY_REVIEW_DAYS: i64 = 3;

/// The kind of the notice of a new portal account: always posted to the address on file, even
/// when the account has read it (see [`Service::register_patient`]).
pub const ENROLLED_NOTICE: &str = "portal-enrolled";

/// The one answer to every failed enrolment: no match, already registered, wrong or used code.
pub const ENROL_REFUSED: &str = "利用登録できませんでした。利用登録コードと生年月日をご確認ください。コードは受診された医療機関の窓口または運営事務局で本人確認のうえ発行されます。";

/// Why emergency access was needed (the list a clinician chooses from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmergencyReason {
    /// The patient cannot consent (unconscious, confused).
    CannotConsent,
    /// Brought in by ambulance.
    EmergencyTransport,
    /// A disaster.
    Disaster,
    /// Another urgent need to protect the patient's life or health.
    OtherUrgent,
}

impl EmergencyReason {
    /// Every reason, in the order shown.
    pub const ALL: [EmergencyReason; 4] = [
        EmergencyReason::CannotConsent,
        EmergencyReason::EmergencyTransport,
        EmergencyReason::Disaster,
        EmergencyReason::OtherUrgent,
    ];

    /// The label shown (Japanese).
    pub fn label_ja(self) -> &'static str {
        match self {
            EmergencyReason::CannotConsent => "意識障害等で本人の同意が得られない",
            EmergencyReason::EmergencyTransport => "救急搬送",
            EmergencyReason::Disaster => "災害時の対応",
            EmergencyReason::OtherUrgent => "その他、生命・身体の保護のため緊急に必要",
        }
    }

    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            EmergencyReason::CannotConsent => "cannot-consent",
            EmergencyReason::EmergencyTransport => "emergency-transport",
            EmergencyReason::Disaster => "disaster",
            EmergencyReason::OtherUrgent => "other-urgent",
        }
    }

    /// From the stable code.
    pub fn from_code(s: &str) -> Option<EmergencyReason> {
        EmergencyReason::ALL.into_iter().find(|r| r.code() == s)
    }
}

/// An emergency access request.
#[derive(Debug, Clone)]
pub struct BreakGlass {
    /// The patient (a source Patient id).
    pub patient_id: String,
    /// Why, from the list.
    pub reason: EmergencyReason,
    /// Why, in the clinician's words.
    pub text: String,
    /// The clinician's one-time code, entered again.
    pub totp: String,
}

/// What shows that the patient was at the visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisitEvidence {
    /// The code the patient showed from the portal.
    Code(String),
    /// A signed paper form, by its reference (the form's number at the facility).
    Paper(String),
}

/// A code handed to a person (shown once; only its hash is kept).
#[derive(Debug, Clone, Serialize)]
pub struct IssuedCode {
    /// The code.
    pub code: String,
    /// Until when it can be used (epoch ms).
    pub expires: i64,
}

/// The operator's view of consents at the visit.
#[derive(Debug, Clone)]
pub struct VisitConsentReview {
    /// Paper forms waiting for confirmation.
    pub pending: Vec<VisitConsentRow>,
    /// Everything recorded in the last 7 days, newest first.
    pub recent: Vec<VisitConsentRow>,
}

/// Wrong consent codes per user: five are checked, then nothing more for an hour. Counted in
/// the store's throttle table (`login_throttle`) before the code is checked, so concurrent
/// guesses each take their place in the count, a restart forgets nothing, and several servers
/// sharing one database count together.
const CODE_THROTTLE: musubi_store::ThrottleRule =
    musubi_store::ThrottleRule { free: MAX_CODE_FAILURES_PER_HOUR - 1, base_ms: HOUR, cap_ms: HOUR, forget_ms: HOUR };

/// The hash under which a code is kept (spaces, hyphens and case do not matter).
pub fn code_hash(code: &str) -> String {
    let norm: String = code.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_uppercase()).collect();
    hex::encode(Sha256::digest(norm.as_bytes()))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("random: {e}")))?;
    Ok(b)
}

/// An 8-digit code in two groups ("1234 5678"), easy to read out at a desk.
fn digits_code() -> Result<String, ApiError> {
    let n = u64::from_le_bytes(random_bytes::<8>()?) % 100_000_000;
    let s = format!("{n:08}");
    Ok(format!("{} {}", &s[..4], &s[4..]))
}

/// A 16-character code in Crockford's base32 (80 bits), in groups of four, for printing.
fn activation_code() -> Result<String, ApiError> {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let bytes = random_bytes::<10>()?;
    let mut bits: u128 = 0;
    for b in bytes {
        bits = (bits << 8) | u128::from(b);
    }
    let chars: Vec<char> = (0..16).rev().map(|i| char::from(ALPHABET[((bits >> (i * 5)) & 31) as usize])).collect();
    Ok(chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-"))
}

/// The end of the JST day that contains `now` (epoch ms).
pub fn end_of_jst_day(now: i64) -> i64 {
    const JST: i64 = 9 * HOUR;
    (now + JST).div_euclid(DAY) * DAY + DAY - JST
}

/// The period of a consent at the visit starting `from`: the day of the visit by default, or
/// `days` days (1 to [`MAX_VISIT_CONSENT_DAYS`]) for an admission or a course of care.
pub fn visit_consent_until(from: i64, days: Option<i64>) -> Result<i64, ApiError> {
    match days {
        None => Ok(end_of_jst_day(from)),
        Some(d) if (1..=MAX_VISIT_CONSENT_DAYS).contains(&d) => Ok(end_of_jst_day(from) + (d - 1) * DAY),
        Some(d) => Err(ApiError::bad_request(format!(
            "同意の期間は 1〜{MAX_VISIT_CONSENT_DAYS} 日で指定してください（指定: {d} 日）"
        ))),
    }
}

fn date_ja(ms: i64) -> String {
    musubi_fhir::datetime::jst_date(ms)
        .map_or_else(String::new, |d| format!("{}年{}月{}日", d.year(), u8::from(d.month()), d.day()))
}

fn facility_name(svc: &Service, code: &str) -> Result<String, ApiError> {
    let c = code.to_owned();
    Ok(svc.store.read(|r| r.facility(&c))?.map_or_else(|| code.to_owned(), |f| f.name))
}

fn notice(person: &str, kind: &str, text: String, now: i64) -> NotificationRow {
    NotificationRow {
        id: crate::prepare::new_id(),
        person_id: person.to_owned(),
        kind: kind.into(),
        text,
        created: now,
        read_at: None,
    }
}

impl Service {
    /// A patient (or a proxy who manages their consent) asks for a code to show at the desk:
    /// with it, the facility records consent at the visit.
    pub fn issue_consent_code(&self, ctx: &Ctx) -> Result<IssuedCode, ApiError> {
        let me = self.portal_manager(ctx)?;
        let now = now_ms();
        let code = digits_code()?;
        let row = PersonCodeRow {
            code_hash: code_hash(&code),
            purpose: CodePurpose::VisitConsent,
            person_id: me.person_id.clone(),
            issued_by: format!("portal:{}", me.account_id),
            created: now,
            expires: now + CONSENT_CODE_MS,
        };
        let mut a = self.audit_record(ctx, AuditAction::Create, "consent-code", AuditOutcome::Success);
        a.person = Some(me.person_id.clone());
        self.store.write_evidence(vec![EvidenceWrite::IssueCode(row)], Vec::new(), vec![a])?;
        Ok(IssuedCode { code, expires: now + CONSENT_CODE_MS })
    }

    /// The patient, or a proxy allowed to manage their consent.
    fn portal_manager(&self, ctx: &Ctx) -> Result<PortalActor, ApiError> {
        let me = own_portal(ctx, true)?;
        if me.proxy_relation.is_some() {
            self.proxy_permission(&me, |g| g.may_manage_consent)?;
        }
        Ok(me)
    }

    /// Records that the patient consented in person at this visit, on evidence: the code the
    /// patient showed (takes effect at once) or a signed paper form (takes effect when the
    /// operator confirms it). `days` bounds the period (default: the day of the visit).
    pub fn record_visit_consent(
        &self,
        ctx: &Ctx,
        patient_id: &str,
        evidence: VisitEvidence,
        days: Option<i64>,
    ) -> Result<VisitConsentRow, ApiError> {
        let Actor::User(u) = &ctx.actor else {
            return Err(ApiError::new(ErrorKind::Forbidden, "来院時の同意は医療機関の職員が記録します"));
        };
        if !policy::may_receive_consent(u.profession) {
            return Err(ApiError::new(ErrorKind::Forbidden, "この職種では来院時の同意を記録できません"));
        }
        let now = now_ms();
        let until = visit_consent_until(now, days)?;
        let pid = patient_id.to_owned();
        let person = self.store.read(|r| r.person_of_patient(&pid))?;
        let fname = facility_name(self, &u.facility.to_string())?;
        let mut a = self.audit_record(ctx, AuditAction::Create, "visit-consent", AuditOutcome::Success);
        a.patient = Some(patient_id.into());
        a.person = person.clone();
        a.entities = vec![format!("Patient/{patient_id}")];
        // The consent as recorded: its evidence, and whether the gate counts it yet.
        let new_row = |person: &str, evidence: String, status: &str| VisitConsentRow {
            id: crate::prepare::new_id(),
            person_id: person.to_owned(),
            facility: u.facility.to_string(),
            given_at: now,
            until: Some(until),
            recorded_by: u.login.clone(),
            evidence,
            status: status.into(),
            confirmed_by: None,
            confirmed_at: None,
        };
        match evidence {
            VisitEvidence::Code(code) => {
                let who = format!("user:{}", u.user_id);
                let key = format!("consent-code:{who}");
                if let musubi_store::Throttle::WaitUntil(t) =
                    self.store.throttle_attempt(vec![(key.clone(), CODE_THROTTLE)], now)?
                {
                    return Err(ApiError::new(
                        ErrorKind::TooManyRequests {
                            retry_after_s: u32::try_from(((t - now) / 1000).max(1)).unwrap_or(3600),
                        },
                        "同意コードの入力誤りが続いたため、1時間は受け付けられません",
                    ));
                }
                let refused = || {
                    ApiError::new(
                        ErrorKind::Forbidden,
                        "同意コードが正しくないか、有効期限が切れています。患者さんにポータルで新しいコードを表示してもらってください。",
                    )
                };
                let Some(person) = person else {
                    return Err(refused());
                };
                let row = new_row(&person, "code".into(), "active");
                a.outcome_text = Some(format!("consent code shown by the patient; until {until}"));
                let n = notice(
                    &person,
                    "visit-consent",
                    format!(
                        "{fname} の{} {} が、あなたが示した同意コードで来院時の同意を記録しました。{}まで、この医療機関があなたの情報を閲覧できます。",
                        u.profession.label_ja(),
                        u.name,
                        date_ja(until - 1)
                    ),
                    now,
                );
                let used = self.store.write_evidence(
                    vec![
                        EvidenceWrite::UseCode {
                            code_hash: code_hash(&code),
                            purpose: CodePurpose::VisitConsent,
                            person_id: Some(person.clone()),
                            at: now,
                            by: format!("{}:{}", u.facility, u.login),
                        },
                        // Consent given in person at a member facility, on the patient's own
                        // evidence, is also their participation consent (参加同意).
                        EvidenceWrite::Participation {
                            person_id: person.clone(),
                            participating: true,
                            at: now,
                            by: format!("{}:{}", u.facility, u.login),
                            evidence: "code".into(),
                        },
                    ],
                    vec![AccountWrite::VisitConsent(row.clone()), AccountWrite::Notify(n)],
                    vec![a.clone()],
                );
                match used {
                    Ok(_) => {
                        // A right code takes its attempt back.
                        self.store.throttle_succeeded(Vec::new(), vec![key])?;
                        Ok(row)
                    }
                    Err(StoreError::Conflict { key: k, .. }) if k == "person_code" => {
                        a.outcome = AuditOutcome::MinorFailure;
                        a.outcome_text = Some("wrong, used or expired consent code".into());
                        self.audit(vec![a])?;
                        Err(refused())
                    }
                    Err(e) => Err(e.into()),
                }
            }
            VisitEvidence::Paper(form) => {
                let form = form.trim();
                if form.is_empty() || form.chars().count() > 64 || form.chars().any(char::is_control) {
                    return Err(ApiError::bad_request("同意書の番号（64文字以内）を入力してください"));
                }
                let person = person.ok_or_else(|| ApiError::not_found("Patient", patient_id))?;
                let row = new_row(&person, format!("paper:{form}"), "pending");
                a.outcome_text = Some(format!("paper consent form {form}; waits for the operator"));
                let n = notice(
                    &person,
                    "visit-consent",
                    format!(
                        "{fname} の{} {} が、紙の同意書（番号 {form}）による来院時の同意を登録しました。運営事務局が確認した後に有効になります。お心当たりがない場合は運営事務局にご連絡ください。",
                        u.profession.label_ja(),
                        u.name
                    ),
                    now,
                );
                self.store.write_evidence(
                    Vec::new(),
                    vec![AccountWrite::VisitConsent(row.clone()), AccountWrite::Notify(n)],
                    vec![a],
                )?;
                Ok(row)
            }
        }
    }

    /// The operator confirms (`accept`) or rejects a consent at a visit registered on paper.
    /// An accepted one runs for its requested length from the confirmation.
    pub fn decide_visit_consent(&self, ctx: &Ctx, id: &str, accept: bool) -> Result<VisitConsentRow, ApiError> {
        require_privileged(ctx)?;
        let i = id.to_owned();
        let row =
            self.store.read(|r| r.visit_consent(&i))?.filter(|v| v.status == "pending").ok_or_else(|| {
                ApiError::new(ErrorKind::NotFound, format!("確認待ちの来院時の同意 {id} はありません"))
            })?;
        let now = now_ms();
        let length = row.until.map_or(DAY, |u| (u - row.given_at).max(HOUR));
        let until = accept.then(|| now + length);
        let fname = facility_name(self, &row.facility)?;
        let mut a = self.audit_record(ctx, AuditAction::Update, "visit-consent-review", AuditOutcome::Success);
        a.person = Some(row.person_id.clone());
        a.entities = vec![format!("visit-consent/{id}")];
        a.outcome_text = Some(if accept { "confirmed".into() } else { "rejected".into() });
        let text = if accept {
            format!(
                "{fname} が登録した紙の同意書による来院時の同意を、運営事務局が確認しました。{}まで有効です。",
                date_ja(now + length - 1)
            )
        } else {
            format!("{fname} が登録した紙の同意書による来院時の同意は、運営事務局の確認の結果、無効とされました。")
        };
        let mut evidence = vec![EvidenceWrite::DecideVisitConsent {
            id: id.into(),
            status: if accept { "active" } else { "rejected" },
            by: ctx.actor.name().into(),
            at: now,
            until,
        }];
        if accept {
            evidence.push(EvidenceWrite::Participation {
                person_id: row.person_id.clone(),
                participating: true,
                at: now,
                by: format!("operator:{}", ctx.actor.name()),
                evidence: row.evidence.clone(),
            });
        }
        self.store.write_evidence(
            evidence,
            vec![AccountWrite::Notify(notice(&row.person_id, "visit-consent", text, now))],
            vec![a],
        )?;
        let i = id.to_owned();
        self.store.read(|r| r.visit_consent(&i))?.ok_or_else(|| ApiError::internal("visit consent vanished"))
    }

    /// The patient (or a proxy who manages their consent) gives or withdraws their participation
    /// consent (参加同意): without it, no other facility sees their records (in an opt-in network).
    pub fn set_participation(&self, ctx: &Ctx, participating: bool) -> Result<bool, ApiError> {
        let me = self.portal_manager(ctx)?;
        let now = now_ms();
        let mut a = self.audit_record(ctx, AuditAction::Update, "participation", AuditOutcome::Success);
        a.person = Some(me.person_id.clone());
        a.outcome_text = Some(if participating { "participates".into() } else { "withdrew".into() });
        self.store.write_evidence(
            vec![EvidenceWrite::Participation {
                person_id: me.person_id.clone(),
                participating,
                at: now,
                by: format!("portal:{}", me.account_id),
                evidence: "portal".into(),
            }],
            Vec::new(),
            vec![a],
        )?;
        Ok(participating)
    }

    /// The patient (or a proxy who manages their consent) records a move: the new residence
    /// applies at once, and the old one stays in the history ("lived in during the past 2
    /// years").
    pub fn set_residence(&self, ctx: &Ctx, prefecture: &str, city: &str) -> Result<(u8, String), ApiError> {
        let me = self.portal_manager(ctx)?;
        let pref = musubi_domain::prefecture_number(prefecture.trim()).ok_or_else(|| {
            ApiError::at(ErrorKind::BadRequest, "prefecture", format!("都道府県名 {prefecture:?} がわかりません"))
        })?;
        let city = city.trim().to_owned();
        if city.is_empty() || city.chars().count() > 64 || city.chars().any(char::is_control) {
            return Err(ApiError::at(ErrorKind::BadRequest, "city", "市区町村名（64文字以内）を入力してください"));
        }
        let c = city.clone();
        let area = self.store.read(|r| r.area_of_city(i64::from(pref), &c))?.unwrap_or_default();
        let mut a = self.audit_record(ctx, AuditAction::Update, "residence", AuditOutcome::Success);
        a.person = Some(me.person_id.clone());
        a.outcome_text = Some(format!("moved to prefecture {pref}"));
        self.store.write_accounts(
            vec![AccountWrite::Residence {
                person_id: me.person_id.clone(),
                prefecture: i64::from(pref),
                area: area.clone(),
                recent: String::new(),
                at: now_ms(),
            }],
            vec![a],
        )?;
        Ok((pref, area))
    }

    /// Whether the portal actor's person participates.
    pub fn participation(&self, ctx: &Ctx) -> Result<bool, ApiError> {
        let me = own_portal(ctx, true)?;
        let p = me.person_id.clone();
        Ok(self.store.read(|r| r.participating(&p))?)
    }

    /// The operator's list: paper consents to confirm, and every consent at a visit of the
    /// last 7 days.
    pub fn visit_consent_review(&self, ctx: &Ctx) -> Result<VisitConsentReview, ApiError> {
        require_privileged(ctx)?;
        let since = now_ms() - 7 * DAY;
        let (pending, recent) =
            self.store.read(|r| Ok((r.visit_consents_pending()?, r.visit_consents_since(since)?)))?;
        Ok(VisitConsentReview { pending, recent })
    }

    /// An activation code for the portal, issued after an identity check at the desk of a
    /// member facility (for its own patient) or by the operator. The code and the birth date
    /// bind a new portal account to the person; the patient is told (in the portal, and by
    /// post when they have no account yet).
    pub fn issue_activation_code(&self, ctx: &Ctx, patient_id: &str) -> Result<IssuedCode, ApiError> {
        let pid = patient_id.to_owned();
        let current = self.store.current(ResourceType::Patient, patient_id)?.filter(|c| !c.deleted);
        let issuer = match &ctx.actor {
            Actor::Operator { .. } => format!("operator:{}", ctx.actor.name()),
            Actor::User(u) if current.as_ref().is_some_and(|c| c.meta.facility == Some(u.facility)) => {
                format!("{}:{}", u.facility, u.login)
            }
            _ => {
                return Err(ApiError::new(
                    ErrorKind::Forbidden,
                    "利用登録コードは、自施設の患者について窓口で本人確認のうえ発行してください",
                ));
            }
        };
        let Some(cur) = current else { return Err(ApiError::not_found("Patient", patient_id)) };
        let person = cur.meta.person_id.clone().unwrap_or(pid);
        let now = now_ms();
        let code = activation_code()?;
        let who = match &ctx.actor {
            Actor::User(u) => facility_name(self, &u.facility.to_string())?,
            _ => "運営事務局".to_owned(),
        };
        let mut a = self.audit_record(ctx, AuditAction::Create, "activation-code", AuditOutcome::Success);
        a.person = Some(person.clone());
        a.patient = Some(patient_id.into());
        self.store.write_evidence(
            vec![EvidenceWrite::IssueCode(PersonCodeRow {
                code_hash: code_hash(&code),
                purpose: CodePurpose::Activation,
                person_id: person.clone(),
                issued_by: issuer,
                created: now,
                expires: now + ACTIVATION_CODE_MS,
            })],
            vec![AccountWrite::Notify(notice(
                &person,
                "activation-code",
                format!(
                    "{who} で患者ポータルの利用登録コードが発行されました（{}まで有効）。お心当たりがない場合は運営事務局にご連絡ください。",
                    date_ja(now + ACTIVATION_CODE_MS)
                ),
                now,
            ))],
            vec![a],
        )?;
        Ok(IssuedCode { code, expires: now + ACTIVATION_CODE_MS })
    }

    /// Registers a patient account with an activation code and the birth date. Every failure
    /// answers [`ENROL_REFUSED`] after the same work; a valid code for a person who already has
    /// an account tells that account's holder.
    pub fn register_patient(&self, reg: Registration, address: Option<String>) -> Result<Enrolled, ApiError> {
        check_password_rule(&reg.password)?;
        check_login_name(&reg.login)?;
        // The password is hashed first, whatever happens next: every answer costs the same.
        let password_hash = hash_password(&reg.password)?;
        let now = now_ms();
        let hash = code_hash(&reg.activation_code);
        let login = reg.login.clone();
        let (person, login_taken) = self.store.read(|r| {
            Ok((r.code_person(&hash, CodePurpose::Activation, now)?, r.portal_by_login(&login)?.is_some()))
        })?;
        if login_taken {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                "このログインIDは既に使われています。別のIDを選んでください。",
            ));
        }
        let refuse = |svc: &Service, why: &str, person: Option<String>| -> Result<Enrolled, ApiError> {
            let Some(person) = person else {
                // Nobody's: counted with the failed authentications (one summary per source
                // and period), not one chained record each.
                svc.login_audit(address.clone(), "patient", &reg.login, AuditOutcome::MinorFailure, why)?;
                return Err(ApiError::new(ErrorKind::BadRequest, ENROL_REFUSED));
            };
            let person = Some(person);
            let mut a = svc.login_record(address.clone(), "patient", &reg.login, AuditOutcome::MinorFailure, why);
            a.subtype = "register".into();
            a.person = person;
            svc.audit(vec![a])?;
            Err(ApiError::new(ErrorKind::BadRequest, ENROL_REFUSED))
        };
        let Some(person) = person else { return refuse(self, "registration: wrong, used or expired code", None) };
        let p = person.clone();
        let birth_ok = self.store.read(|r| {
            for pid in r.patients_of_person(&p)? {
                if let Some(v) = r.version(ResourceType::Patient, &pid, None)?
                    && let Some(text) = v.content
                    && let Ok(val) = serde_json::from_str::<serde_json::Value>(&text)
                    && val["birthDate"].as_str() == Some(reg.birth_date.trim())
                {
                    return Ok(true);
                }
            }
            Ok(false)
        })?;
        if !birth_ok {
            return refuse(self, "registration: birth date does not match the code's person", Some(person));
        }
        let p = person.clone();
        if let Some(existing) = self.store.read(|r| r.portal_of_person(&p))? {
            // The holder of the account hears of every attempt with a valid code.
            let n = notice(
                &person,
                "enrolment-attempt",
                "あなたの情報で新しい患者ポータルの利用登録が試みられました（既に登録済みのため受け付けていません）。お心当たりがない場合は運営事務局にご連絡ください。".into(),
                now,
            );
            self.store.write_accounts(vec![AccountWrite::Notify(n)], Vec::new())?;
            return refuse(
                self,
                &format!("registration: the person already has account {}", existing.id),
                Some(person),
            );
        }
        let id = crate::prepare::new_id();
        let secret = new_totp_secret()?;
        let acct = PortalRow {
            id: id.clone(),
            login: reg.login.clone(),
            name: reg.name.clone(),
            person_id: Some(person.clone()),
            password_hash,
            totp_secret: Some(self.seal_secret(&secret)?),
            failed_logins: 0,
            locked_until: None,
            disabled: false,
            created: now,
        };
        // A letter to the address on file, whatever the new account does: a code issued by an
        // insider for a person matched by their demographics would otherwise open the portal
        // without the real patient ever hearing of it (the account's holder could read and so
        // hide the portal notices). The operator's list keeps it until it is posted.
        let issued_by = self.store.read(|r| r.code_issuer(&hash, CodePurpose::Activation))?.unwrap_or_default();
        let letter = notice(
            &person,
            ENROLLED_NOTICE,
            format!(
                "患者ポータルの利用登録が完了しました（ログインID {}、利用登録コードの発行元 {}）。お心当たりがない場合は、すぐに運営事務局にご連絡ください。",
                reg.login,
                issuer_label(self, &issued_by)
            ),
            now,
        );
        let mut writes = vec![AccountWrite::NewPortal(acct), AccountWrite::Notify(letter)];
        if let Some(pref) = musubi_domain::prefecture_number(&reg.prefecture) {
            let city = reg.city.clone();
            let area = self.store.read(|r| r.area_of_city(i64::from(pref), &city))?.unwrap_or_default();
            writes.push(AccountWrite::Residence {
                person_id: person.clone(),
                prefecture: i64::from(pref),
                area,
                recent: String::new(),
                at: now,
            });
        }
        let mut a = self.login_record(
            address,
            "patient",
            &reg.login,
            AuditOutcome::Success,
            "registered with an activation code",
        );
        a.subtype = "register".into();
        a.person = Some(person.clone());
        let used = self.store.write_evidence(
            vec![EvidenceWrite::UseCode {
                code_hash: hash,
                purpose: CodePurpose::Activation,
                person_id: Some(person.clone()),
                at: now,
                by: format!("portal:{id}"),
            }],
            writes,
            vec![a],
        );
        match used {
            Ok(_) => Ok(Enrolled { id, totp_uri: totp_uri(&secret, &reg.login)?, totp_secret: secret }),
            // Used by a concurrent registration in between: the same answer as any failure.
            Err(StoreError::Conflict { key, .. }) if key == "person_code" => {
                Err(ApiError::new(ErrorKind::BadRequest, ENROL_REFUSED))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The operator revokes a portal account (a hijacked one): it is disabled, detached from
    /// the person and its sessions end. The patient then enrols again with a new code.
    pub fn revoke_portal_account(&self, ctx: &Ctx, account_id: &str) -> Result<(), ApiError> {
        require_privileged(ctx)?;
        let aid = account_id.to_owned();
        let acct = self.store.read(|r| r.portal(&aid))?.ok_or_else(|| {
            ApiError::new(ErrorKind::NotFound, format!("ポータルアカウント {account_id} はありません"))
        })?;
        let now = now_ms();
        let mut a = self.audit_record(ctx, AuditAction::Update, "revoke-portal-account", AuditOutcome::Success);
        a.person = acct.person_id.clone();
        a.entities = vec![format!("portal-account/{account_id}")];
        let mut accounts = Vec::new();
        if let Some(p) = &acct.person_id {
            accounts.push(AccountWrite::Notify(notice(
                p,
                "account-revoked",
                "運営事務局が患者ポータルのアカウントを停止しました。医療機関の窓口または運営事務局で新しい利用登録コードを受け取り、再度登録してください。".into(),
                now,
            )));
        }
        self.store.write_evidence(vec![EvidenceWrite::RevokePortal { id: account_id.into() }], accounts, vec![a])?;
        Ok(())
    }

    /// Emergency access (break-glass): a grant for a few hours with a reason from the list and
    /// in words, after the second factor is entered again; marked in the audit, told to the
    /// patient at once (kept for their first login and listed for posting when they have no
    /// account), and put on the operator's review list. A user's third emergency access in 24
    /// hours alerts the operator; a fourth is refused.
    pub fn break_glass(&self, ctx: &Ctx, req: BreakGlass) -> Result<EmergencyRow, ApiError> {
        let Actor::User(u) = &ctx.actor else {
            return Err(ApiError::new(ErrorKind::Forbidden, "緊急時の閲覧は医療従事者のみが行えます"));
        };
        if !policy::may_break_glass(u.profession) {
            return Err(ApiError::new(ErrorKind::Forbidden, "この職種では緊急時の閲覧はできません"));
        }
        let text = req.text.trim();
        if text.chars().count() < EMERGENCY_REASON_MIN || text.chars().count() > 500 {
            return Err(ApiError::bad_request(format!(
                "緊急時の閲覧には、状況の説明（{EMERGENCY_REASON_MIN}〜500文字）を入力してください"
            )));
        }
        let uid = u.user_id.clone();
        let user = self
            .store
            .read(|r| r.user(&uid))?
            .ok_or_else(|| ApiError::new(ErrorKind::Unauthorized, "利用者が見つかりません"))?;
        let Some(secret) = user.totp_secret.as_deref() else {
            return Err(ApiError::new(
                ErrorKind::Forbidden,
                "緊急時の閲覧には二要素認証（ワンタイムコード）の登録が必要です",
            ));
        };
        let secret = self.open_secret(secret)?;
        let now = now_ms();
        if !crate::people::totp_valid(&secret, &req.totp, now) {
            let mut a = self.audit_record(ctx, AuditAction::Execute, "break-glass", AuditOutcome::SeriousFailure);
            a.outcome_text = Some("wrong one-time code".into());
            a.entities = vec![format!("Patient/{}", req.patient_id)];
            self.audit(vec![a])?;
            return Err(ApiError::new(
                ErrorKind::Unauthorized,
                "ワンタイムコードが違います。もう一度入力してください。",
            ));
        }
        let pid = req.patient_id.clone();
        let person = self
            .store
            .read(|r| r.person_of_patient(&pid))?
            .ok_or_else(|| ApiError::not_found("Patient", &req.patient_id))?;
        let uid = u.user_id.clone();
        let recent = self.store.read(|r| r.emergency_count_since(&uid, now - DAY))?;
        let fname = facility_name(self, &u.facility.to_string())?;
        if recent >= EMERGENCY_PER_DAY {
            let mut a = self.audit_record(ctx, AuditAction::Execute, "break-glass", AuditOutcome::SeriousFailure);
            a.outcome_text = Some(format!("refused: {recent} emergency accesses in 24 hours"));
            a.person = Some(person);
            a.entities = vec![format!("Patient/{}", req.patient_id)];
            let alert = AlertRow {
                id: crate::prepare::new_id(),
                kind: "break-glass-rate".into(),
                text: format!(
                    "{fname} の{} {}（{}）の緊急時の閲覧が24時間で上限（{EMERGENCY_PER_DAY}回）を超えたため拒否しました。",
                    u.profession.label_ja(),
                    u.name,
                    u.login
                ),
                created: now,
                handled_by: None,
                handled_at: None,
            };
            self.store.write_evidence(vec![EvidenceWrite::Alert(alert)], Vec::new(), vec![a])?;
            return Err(ApiError::new(
                ErrorKind::TooManyRequests { retry_after_s: 3600 },
                "24時間以内の緊急時の閲覧が上限に達しました。運営事務局に連絡してください。",
            ));
        }
        let hours = self
            .store
            .setting("emergency.hours")?
            .and_then(|h| h.parse::<i64>().ok())
            .unwrap_or(EMERGENCY_HOURS)
            .clamp(1, 12);
        let reason = format!("{}: {text}", req.reason.label_ja());
        let grant = EmergencyRow {
            id: crate::prepare::new_id(),
            user_id: u.user_id.clone(),
            user_login: u.login.clone(),
            facility: u.facility.to_string(),
            person_id: person.clone(),
            reason: reason.clone(),
            started: now,
            until: now + hours * HOUR,
            reviewed_by: None,
            reviewed_at: None,
            review_note: None,
        };
        let n = notice(
            &person,
            "emergency-access",
            format!(
                "{fname} の{} {} が緊急時の閲覧を行いました（理由: {reason}）。{hours}時間有効です。",
                u.profession.label_ja(),
                u.name
            ),
            now,
        );
        let mut evidence = Vec::new();
        if recent + 1 == EMERGENCY_PER_DAY {
            evidence.push(EvidenceWrite::Alert(AlertRow {
                id: crate::prepare::new_id(),
                kind: "break-glass-rate".into(),
                text: format!(
                    "{fname} の{} {}（{}）が24時間で{EMERGENCY_PER_DAY}回の緊急時の閲覧を行いました。",
                    u.profession.label_ja(),
                    u.name,
                    u.login
                ),
                created: now,
                handled_by: None,
                handled_at: None,
            }));
        }
        let mut a = self.audit_record(ctx, AuditAction::Execute, "break-glass", AuditOutcome::Success);
        a.purpose = AuditPurpose::Emergency(reason);
        a.person = Some(person);
        a.patient = Some(req.patient_id.clone());
        a.entities = vec![format!("Patient/{}", req.patient_id)];
        self.store.write_evidence(
            evidence,
            vec![AccountWrite::Emergency(grant.clone()), AccountWrite::Notify(n)],
            vec![a],
        )?;
        Ok(grant)
    }

    /// Alerts for the operator not yet handled.
    pub fn operator_alerts(&self, ctx: &Ctx) -> Result<Vec<AlertRow>, ApiError> {
        require_privileged(ctx)?;
        Ok(self.store.read(|r| r.open_alerts())?)
    }

    /// The operator handled an alert.
    pub fn handle_alert(&self, ctx: &Ctx, id: &str) -> Result<(), ApiError> {
        require_privileged(ctx)?;
        let mut a = self.audit_record(ctx, AuditAction::Update, "alert-handled", AuditOutcome::Success);
        a.entities = vec![format!("alert/{id}")];
        self.store.write_evidence(
            vec![EvidenceWrite::HandleAlert { id: id.into(), by: ctx.actor.name().into(), at: now_ms() }],
            Vec::new(),
            vec![a],
        )?;
        Ok(())
    }

    /// Notices for patients without a portal account, to send by post (oldest first).
    pub fn notices_to_post(&self, ctx: &Ctx) -> Result<Vec<NotificationRow>, ApiError> {
        require_privileged(ctx)?;
        Ok(self.store.read(|r| r.notices_to_post())?)
    }

    /// The operator sent a notice by post.
    pub fn notice_posted(&self, ctx: &Ctx, id: &str) -> Result<(), ApiError> {
        require_privileged(ctx)?;
        let mut a = self.audit_record(ctx, AuditAction::Update, "notice-posted", AuditOutcome::Success);
        a.entities = vec![format!("notification/{id}")];
        self.store.write_evidence(vec![EvidenceWrite::Posted { id: id.into(), at: now_ms() }], Vec::new(), vec![a])?;
        Ok(())
    }
}

/// Who issued an activation code, for the patient's letter: a facility's name or the operator.
fn issuer_label(svc: &Service, issued_by: &str) -> String {
    match issued_by.split_once(':') {
        Some(("operator", _)) => "運営事務局".to_owned(),
        Some((facility, _)) => facility_name(svc, facility).unwrap_or_else(|_| facility.to_owned()),
        None => "不明".to_owned(),
    }
}

/// Whether an unreviewed emergency access is overdue for review at `now`.
pub fn review_overdue(g: &EmergencyRow, now: i64) -> bool {
    g.reviewed_at.is_none() && now - g.started > EMERGENCY_REVIEW_DAYS * DAY
}

/// The professions that may receive consent at the visit (re-exported for the pages).
pub fn may_receive_consent(p: Profession) -> bool {
    policy::may_receive_consent(p)
}

/// A consent at a visit as the API answers it (JSON).
pub fn visit_consent_json(v: &VisitConsentRow) -> serde_json::Value {
    serde_json::json!({"id": v.id, "person": v.person_id, "facility": v.facility, "status": v.status, "evidence": v.evidence,
        "given": musubi_fhir::datetime::format_instant(v.given_at),
        "until": v.until.map(musubi_fhir::datetime::format_instant), "recorded_by": v.recorded_by,
        "confirmed_by": v.confirmed_by})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_hash_without_spaces_hyphens_or_case() {
        assert_eq!(code_hash("1234 5678"), code_hash("12345678"));
        assert_eq!(code_hash("abcd-efgh"), code_hash("ABCDEFGH"));
        assert_ne!(code_hash("12345678"), code_hash("12345679"));
    }

    #[test]
    fn code_shapes() {
        let d = digits_code().unwrap();
        assert_eq!(d.len(), 9);
        assert!(d.chars().filter(|c| *c != ' ').all(|c| c.is_ascii_digit()));
        let a = activation_code().unwrap();
        assert_eq!(a.len(), 19);
        assert_eq!(a.split('-').count(), 4);
        assert_ne!(activation_code().unwrap(), a);
    }

    #[test]
    fn visit_consent_periods_are_bounded() {
        // 2026-12-07 10:00 JST.
        let now = 1_796_605_200_000;
        let end = visit_consent_until(now, None).unwrap();
        assert_eq!(end, 1_796_655_600_000, "midnight JST at the end of the visit day");
        assert_eq!(visit_consent_until(now, Some(1)).unwrap(), end);
        assert_eq!(visit_consent_until(now, Some(90)).unwrap(), end + 89 * DAY);
        assert!(visit_consent_until(now, Some(91)).is_err());
        assert!(visit_consent_until(now, Some(0)).is_err());
        assert!(visit_consent_until(now, Some(-5)).is_err());
    }

    #[test]
    fn overdue_reviews() {
        let g = EmergencyRow {
            id: "g".into(),
            user_id: "u".into(),
            user_login: "u".into(),
            facility: "1318814790".into(),
            person_id: "p".into(),
            reason: "救急搬送: 意識がなく家族とも連絡が取れない".into(),
            started: 0,
            until: 4 * HOUR,
            reviewed_by: None,
            reviewed_at: None,
            review_note: None,
        };
        assert!(!review_overdue(&g, 2 * DAY));
        assert!(review_overdue(&g, 4 * DAY));
    }
}
