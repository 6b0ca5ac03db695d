//! The people side of the store: the facility registry, clinician/staff accounts, patient and
//! proxy portal accounts, sessions, disclosure settings, residence, in-person consents,
//! emergency grants, notifications and audit anchors. Changes that matter to patients (consent,
//! emergency access) are written together with their audit records in one transaction.

use musubi_domain::audit::AuditRecord;

use crate::ops::append_audit;
use crate::sql::{Conn, Param, Row};
use crate::{Reader, Store, StoreError};

/// A facility in the network's registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacilityRow {
    /// 医療機関コード.
    pub code: String,
    /// Name.
    pub name: String,
    /// `hospital`, `clinic`, `dental`, `pharmacy`, `other`.
    pub class: String,
    /// Prefecture number.
    pub prefecture: i64,
    /// 二次医療圏 id.
    pub area: String,
    /// 二次医療圏 name.
    pub area_name: String,
    /// Whether it discloses (開示) its data to the network.
    pub discloses: bool,
    /// Whether its staff view (閲覧) the network's data.
    pub views: bool,
}

/// A clinician or staff account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// Id.
    pub id: String,
    /// Login name.
    pub login: String,
    /// Kanji name.
    pub name: String,
    /// Kana name.
    pub kana: String,
    /// Profession code.
    pub profession: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// TOTP secret (base32), when enrolled.
    pub totp_secret: Option<String>,
    /// Consecutive failed logins.
    pub failed_logins: i64,
    /// Locked until (epoch ms).
    pub locked_until: Option<i64>,
    /// Disabled by the operator.
    pub disabled: bool,
    /// Created.
    pub created: i64,
    /// Facilities the user belongs to.
    pub facilities: Vec<String>,
    /// The password was set by an operator: the user chooses their own at the next login
    /// before the login can complete.
    pub must_change_password: bool,
}

/// A patient's (or a proxy's) portal account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalRow {
    /// Id.
    pub id: String,
    /// Login name.
    pub login: String,
    /// Name.
    pub name: String,
    /// The person the account is (None for a proxy-only account).
    pub person_id: Option<String>,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// TOTP secret (base32), when enrolled.
    pub totp_secret: Option<String>,
    /// Consecutive failed logins.
    pub failed_logins: i64,
    /// Locked until.
    pub locked_until: Option<i64>,
    /// Disabled.
    pub disabled: bool,
    /// Created.
    pub created: i64,
}

/// A patient's grant to a proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyGrantRow {
    /// Id.
    pub id: String,
    /// The proxy's portal account.
    pub proxy_account: String,
    /// The person the proxy acts for.
    pub person_id: String,
    /// 家族, 施設の連携担当 …
    pub relation: String,
    /// May view the records.
    pub may_view_records: bool,
    /// May change the disclosure settings.
    pub may_manage_consent: bool,
    /// May read the access history.
    pub may_view_history: bool,
    /// Who granted it (the patient's account id).
    pub granted_by: String,
    /// When.
    pub created: i64,
    /// When revoked.
    pub revoked: Option<i64>,
}

/// A login session (web cookie or bearer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 of the session token.
    pub token_hash: String,
    /// `user` or `portal`.
    pub kind: String,
    /// The account id.
    pub subject: String,
    /// For users: the facility they act for.
    pub facility: Option<String>,
    /// For proxies: the person they act for.
    pub acting_for: Option<String>,
    /// Created.
    pub created: i64,
    /// Expires.
    pub expires: i64,
    /// Whether the second factor was given.
    pub second_factor: bool,
    /// The CSRF token of the web session.
    pub csrf: String,
    /// When the session was last used (epoch ms; the idle timeout counts from it).
    pub last_seen: i64,
}

/// An emergency access grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyRow {
    /// Id.
    pub id: String,
    /// User id.
    pub user_id: String,
    /// User login.
    pub user_login: String,
    /// The user's facility.
    pub facility: String,
    /// The person.
    pub person_id: String,
    /// The stated reason.
    pub reason: String,
    /// Started.
    pub started: i64,
    /// Until.
    pub until: i64,
    /// Reviewed by (operator).
    pub reviewed_by: Option<String>,
    /// Reviewed at.
    pub reviewed_at: Option<i64>,
    /// Review note.
    pub review_note: Option<String>,
}

/// A notice to a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    /// Id.
    pub id: String,
    /// The person.
    pub person_id: String,
    /// `emergency-access`, `first-access`, …
    pub kind: String,
    /// The text (Japanese).
    pub text: String,
    /// Created.
    pub created: i64,
    /// Read.
    pub read_at: Option<i64>,
}

/// Consent given in person at a visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitConsentRow {
    /// Id.
    pub id: String,
    /// The person.
    pub person_id: String,
    /// The facility.
    pub facility: String,
    /// When given.
    pub given_at: i64,
    /// Until (None only for consents recorded before evidence was required).
    pub until: Option<i64>,
    /// Recorded by (user login).
    pub recorded_by: String,
    /// What shows the patient was there: `code` (a code the patient showed from the portal or
    /// a printed notice), `paper:<form reference>` (a signed form the operator confirms), or
    /// `none` (recorded before evidence was required).
    pub evidence: String,
    /// `active` (the gate counts it), `pending` (waits for the operator), `rejected`.
    pub status: String,
    /// The operator who confirmed or rejected it.
    pub confirmed_by: Option<String>,
    /// When.
    pub confirmed_at: Option<i64>,
}

/// A signed checkpoint of the audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorRow {
    /// The sequence number anchored.
    pub seq: i64,
    /// Its chain hash.
    pub hash: String,
    /// When.
    pub created: i64,
    /// The signature (hex HMAC-SHA256 or other, see the service).
    pub signature: String,
}

/// The database's copy of one line of the external anchor log (see `musubi_service::anchors`):
/// a line the database knows about but the log lacks shows the log was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorLogRow {
    /// The line's number in the log (1, 2, 3, …).
    pub n: i64,
    /// Why it was written: start, periodic, shutdown, demand, prune.
    pub kind: String,
    /// The sequence number anchored.
    pub seq: i64,
    /// Its chain hash.
    pub hash: String,
    /// When (epoch ms).
    pub created: i64,
    /// The hash of the whole signed line (the next line's `prev`).
    pub line_hash: String,
}

fn b(v: bool) -> Param<'static> {
    Param::I64(i64::from(v))
}

fn user_row(r: &Row) -> UserRow {
    UserRow {
        id: r.str(0).into(),
        login: r.str(1).into(),
        name: r.str(2).into(),
        kana: r.str(3).into(),
        profession: r.str(4).into(),
        password_hash: r.str(5).into(),
        totp_secret: r.opt_str(6).map(Into::into),
        failed_logins: r.i64(7),
        locked_until: r.opt_i64(8),
        disabled: r.i64(9) != 0,
        created: r.i64(10),
        facilities: Vec::new(),
        must_change_password: r.i64(11) != 0,
    }
}

const USER_COLS: &str = "id, login, name, kana, profession, password_hash, totp_secret, failed_logins, locked_until, disabled, created, must_change_password";
const PORTAL_COLS: &str =
    "id, login, name, person_id, password_hash, totp_secret, failed_logins, locked_until, disabled, created";
const EMERGENCY_COLS: &str =
    "id, user_id, user_login, facility, person_id, reason, started, until_at, reviewed_by, reviewed_at, review_note";

fn portal_row(r: &Row) -> PortalRow {
    PortalRow {
        id: r.str(0).into(),
        login: r.str(1).into(),
        name: r.str(2).into(),
        person_id: r.opt_str(3).map(Into::into),
        password_hash: r.str(4).into(),
        totp_secret: r.opt_str(5).map(Into::into),
        failed_logins: r.i64(6),
        locked_until: r.opt_i64(7),
        disabled: r.i64(8) != 0,
        created: r.i64(9),
    }
}

fn emergency_row(r: &Row) -> EmergencyRow {
    EmergencyRow {
        id: r.str(0).into(),
        user_id: r.str(1).into(),
        user_login: r.str(2).into(),
        facility: r.str(3).into(),
        person_id: r.str(4).into(),
        reason: r.str(5).into(),
        started: r.i64(6),
        until: r.i64(7),
        reviewed_by: r.opt_str(8).map(Into::into),
        reviewed_at: r.opt_i64(9),
        review_note: r.opt_str(10).map(Into::into),
    }
}

fn grant_row(r: &Row) -> ProxyGrantRow {
    ProxyGrantRow {
        id: r.str(0).into(),
        proxy_account: r.str(1).into(),
        person_id: r.str(2).into(),
        relation: r.str(3).into(),
        may_view_records: r.i64(4) != 0,
        may_manage_consent: r.i64(5) != 0,
        may_view_history: r.i64(6) != 0,
        granted_by: r.str(7).into(),
        created: r.i64(8),
        revoked: r.opt_i64(9),
    }
}

/// A write to the people side, with the audit records that go with it.
pub enum AccountWrite {
    /// Add or replace a facility.
    Facility(FacilityRow),
    /// A city of a 二次医療圏.
    AreaCity {
        /// Area id.
        area: String,
        /// Prefecture.
        prefecture: i64,
        /// City (市区町村) name.
        city: String,
    },
    /// A new user.
    NewUser(UserRow),
    /// Login bookkeeping of a user or portal account (`table` is `user_account` or
    /// `portal_account`).
    LoginState {
        /// Which table.
        portal: bool,
        /// Account id.
        id: String,
        /// Consecutive failures.
        failed: i64,
        /// Locked until.
        locked_until: Option<i64>,
    },
    /// Set the TOTP secret of an account.
    Totp {
        /// Which table.
        portal: bool,
        /// Account id.
        id: String,
        /// Secret (base32) or None to remove.
        secret: Option<String>,
    },
    /// Set the password hash of an account.
    Password {
        /// Which table.
        portal: bool,
        /// Account id.
        id: String,
        /// Argon2id PHC string.
        hash: String,
    },
    /// A new portal account.
    NewPortal(PortalRow),
    /// A proxy grant.
    NewProxyGrant(ProxyGrantRow),
    /// Revoke a proxy grant.
    RevokeProxyGrant {
        /// Grant id.
        id: String,
        /// When.
        at: i64,
    },
    /// A new session.
    NewSession(SessionRow),
    /// Mark a session's second factor done.
    SessionSecondFactor(String),
    /// End a session.
    EndSession(String),
    /// End every session of an account (`kind` is `user` or `portal`): log out everywhere,
    /// a disabled account, a reset credential.
    EndSessionsOf {
        /// `user` or `portal`.
        kind: String,
        /// The account id.
        subject: String,
    },
    /// Disable or enable an account; disabling ends every session of it at once.
    Disabled {
        /// Which table.
        portal: bool,
        /// Account id.
        id: String,
        /// Disabled or not.
        disabled: bool,
    },
    /// Whether a user must choose a new password at the next login.
    MustChangePassword {
        /// User id.
        id: String,
        /// Must or not.
        on: bool,
    },
    /// Forget an account's second factor (the user enrols again at the next login), its
    /// failure count and lock.
    ResetSecondFactor {
        /// Which table.
        portal: bool,
        /// Account id.
        id: String,
    },
    /// Replace a person's disclosure settings (version must be the current one + 1).
    Consent {
        /// Person.
        person_id: String,
        /// Settings JSON.
        settings: String,
        /// The new version.
        version: i64,
        /// When.
        at: i64,
        /// By whom.
        by: String,
    },
    /// Set a person's residence.
    Residence {
        /// Person.
        person_id: String,
        /// Prefecture.
        prefecture: i64,
        /// Area.
        area: String,
        /// Prefectures of the past 2 years, comma-separated.
        recent: String,
        /// When.
        at: i64,
    },
    /// Consent given in person at a visit.
    VisitConsent(VisitConsentRow),
    /// An emergency grant.
    Emergency(EmergencyRow),
    /// An operator's review of an emergency grant.
    ReviewEmergency {
        /// Grant id.
        id: String,
        /// Operator.
        by: String,
        /// When.
        at: i64,
        /// Note.
        note: String,
    },
    /// A notice to a patient.
    Notify(NotificationRow),
    /// Mark notices of a person read.
    NotificationsRead {
        /// Person.
        person_id: String,
        /// When.
        at: i64,
    },
    /// An audit anchor.
    Anchor(AnchorRow),
    /// A network setting (written with the audit record of the change).
    Setting {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
}

fn table(portal: bool) -> &'static str {
    if portal { "portal_account" } else { "user_account" }
}

pub(crate) fn apply(conn: &mut dyn Conn, w: &AccountWrite) -> Result<(), StoreError> {
    match w {
        AccountWrite::Facility(f) => {
            conn.execute("DELETE FROM facility WHERE code = $1", &[Param::Text(&f.code)])?;
            conn.execute(
                "INSERT INTO facility (code, name, class, prefecture, area, area_name, discloses, views, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    Param::Text(&f.code),
                    Param::Text(&f.name),
                    Param::Text(&f.class),
                    Param::I64(f.prefecture),
                    Param::Text(&f.area),
                    Param::Text(&f.area_name),
                    b(f.discloses),
                    b(f.views),
                    Param::I64(musubi_fhir::datetime::now_ms()),
                ],
            )?;
        }
        AccountWrite::Setting { key, value } => crate::ops::put_setting(conn, key, value)?,
        AccountWrite::AreaCity { area, prefecture, city } => {
            conn.execute(
                "DELETE FROM area_city WHERE prefecture = $1 AND city = $2",
                &[Param::I64(*prefecture), Param::Text(city)],
            )?;
            conn.execute(
                "INSERT INTO area_city (area, prefecture, city) VALUES ($1, $2, $3)",
                &[Param::Text(area), Param::I64(*prefecture), Param::Text(city)],
            )?;
        }
        AccountWrite::NewUser(u) => {
            conn.execute(
                &format!(
                    "INSERT INTO user_account ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                ),
                &[
                    Param::Text(&u.id),
                    Param::Text(&u.login),
                    Param::Text(&u.name),
                    Param::Text(&u.kana),
                    Param::Text(&u.profession),
                    Param::Text(&u.password_hash),
                    u.totp_secret.as_deref().into(),
                    Param::I64(u.failed_logins),
                    u.locked_until.into(),
                    b(u.disabled),
                    Param::I64(u.created),
                    b(u.must_change_password),
                ],
            )?;
            for f in &u.facilities {
                conn.execute(
                    "INSERT INTO user_facility (user_id, facility) VALUES ($1, $2)",
                    &[Param::Text(&u.id), Param::Text(f)],
                )?;
            }
        }
        AccountWrite::LoginState { portal, id, failed, locked_until } => {
            conn.execute(
                &format!("UPDATE {} SET failed_logins = $1, locked_until = $2 WHERE id = $3", table(*portal)),
                &[Param::I64(*failed), (*locked_until).into(), Param::Text(id)],
            )?;
        }
        AccountWrite::Totp { portal, id, secret } => {
            conn.execute(
                &format!("UPDATE {} SET totp_secret = $1 WHERE id = $2", table(*portal)),
                &[secret.as_deref().into(), Param::Text(id)],
            )?;
        }
        AccountWrite::Password { portal, id, hash } => {
            conn.execute(
                &format!("UPDATE {} SET password_hash = $1 WHERE id = $2", table(*portal)),
                &[Param::Text(hash), Param::Text(id)],
            )?;
        }
        AccountWrite::NewPortal(p) => {
            conn.execute(
                &format!("INSERT INTO portal_account ({PORTAL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                &[
                    Param::Text(&p.id),
                    Param::Text(&p.login),
                    Param::Text(&p.name),
                    p.person_id.as_deref().into(),
                    Param::Text(&p.password_hash),
                    p.totp_secret.as_deref().into(),
                    Param::I64(p.failed_logins),
                    p.locked_until.into(),
                    b(p.disabled),
                    Param::I64(p.created),
                ],
            )?;
        }
        AccountWrite::NewProxyGrant(g) => {
            conn.execute(
                "INSERT INTO proxy_grant (id, proxy_account, person_id, relation, may_view_records, may_manage_consent, may_view_history, granted_by, created, revoked) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    Param::Text(&g.id),
                    Param::Text(&g.proxy_account),
                    Param::Text(&g.person_id),
                    Param::Text(&g.relation),
                    b(g.may_view_records),
                    b(g.may_manage_consent),
                    b(g.may_view_history),
                    Param::Text(&g.granted_by),
                    Param::I64(g.created),
                    g.revoked.into(),
                ],
            )?;
        }
        AccountWrite::RevokeProxyGrant { id, at } => {
            conn.execute(
                "UPDATE proxy_grant SET revoked = $1 WHERE id = $2 AND revoked IS NULL",
                &[Param::I64(*at), Param::Text(id)],
            )?;
        }
        AccountWrite::NewSession(s) => insert_session(conn, s)?,
        AccountWrite::SessionSecondFactor(h) => {
            conn.execute("UPDATE session SET second_factor = 1 WHERE token_hash = $1", &[Param::Text(h)])?;
        }
        AccountWrite::EndSession(h) => {
            conn.execute("DELETE FROM session WHERE token_hash = $1", &[Param::Text(h)])?;
        }
        AccountWrite::EndSessionsOf { kind, subject } => {
            conn.execute(
                "DELETE FROM session WHERE kind = $1 AND subject = $2",
                &[Param::Text(kind), Param::Text(subject)],
            )?;
        }
        AccountWrite::Disabled { portal, id, disabled } => {
            conn.execute(
                &format!("UPDATE {} SET disabled = $1 WHERE id = $2", table(*portal)),
                &[b(*disabled), Param::Text(id)],
            )?;
            if *disabled {
                conn.execute(
                    "DELETE FROM session WHERE kind = $1 AND subject = $2",
                    &[Param::Text(session_kind(*portal)), Param::Text(id)],
                )?;
            }
        }
        AccountWrite::MustChangePassword { id, on } => {
            conn.execute(
                "UPDATE user_account SET must_change_password = $1 WHERE id = $2",
                &[b(*on), Param::Text(id)],
            )?;
        }
        AccountWrite::ResetSecondFactor { portal, id } => {
            conn.execute(
                &format!(
                    "UPDATE {} SET totp_secret = NULL, totp_last_step = NULL, failed_logins = 0, locked_until = NULL WHERE id = $1",
                    table(*portal)
                ),
                &[Param::Text(id)],
            )?;
        }
        AccountWrite::Consent { person_id, settings, version, at, by } => {
            let cur =
                conn.query("SELECT version FROM consent_setting WHERE person_id = $1", &[Param::Text(person_id)])?;
            let found = cur.first().map_or(0, |r| r.i64(0));
            if found + 1 != *version {
                return Err(StoreError::Conflict {
                    key: format!("consent/{person_id}"),
                    expected: format!("version {}", version - 1),
                    found: format!("version {found}"),
                });
            }
            conn.execute("DELETE FROM consent_setting WHERE person_id = $1", &[Param::Text(person_id)])?;
            conn.execute(
                "INSERT INTO consent_setting (person_id, settings, version, updated, updated_by) VALUES ($1, $2, $3, $4, $5)",
                &[Param::Text(person_id), Param::Text(settings), Param::I64(*version), Param::I64(*at), Param::Text(by)],
            )?;
        }
        AccountWrite::Residence { person_id, prefecture, area, recent, at } => {
            // The history keeps every residence registered, for "lived in during the past 2 years".
            conn.execute(
                "INSERT INTO residence_event (person_id, prefecture, area, at) VALUES ($1, $2, $3, $4)",
                &[Param::Text(person_id), Param::I64(*prefecture), Param::Text(area), Param::I64(*at)],
            )?;
            conn.execute("DELETE FROM residence WHERE person_id = $1", &[Param::Text(person_id)])?;
            conn.execute(
                "INSERT INTO residence (person_id, prefecture, area, recent, updated) VALUES ($1, $2, $3, $4, $5)",
                &[
                    Param::Text(person_id),
                    Param::I64(*prefecture),
                    Param::Text(area),
                    Param::Text(recent),
                    Param::I64(*at),
                ],
            )?;
        }
        AccountWrite::VisitConsent(v) => {
            conn.execute(
                "INSERT INTO visit_consent (id, person_id, facility, given_at, until_at, recorded_by, evidence, status, confirmed_by, confirmed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[Param::Text(&v.id), Param::Text(&v.person_id), Param::Text(&v.facility), Param::I64(v.given_at), v.until.into(), Param::Text(&v.recorded_by), Param::Text(&v.evidence), Param::Text(&v.status), v.confirmed_by.as_deref().into(), v.confirmed_at.into()],
            )?;
        }
        AccountWrite::Emergency(e) => {
            conn.execute(
                &format!("INSERT INTO emergency_grant ({EMERGENCY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
                &[
                    Param::Text(&e.id),
                    Param::Text(&e.user_id),
                    Param::Text(&e.user_login),
                    Param::Text(&e.facility),
                    Param::Text(&e.person_id),
                    Param::Text(&e.reason),
                    Param::I64(e.started),
                    Param::I64(e.until),
                    e.reviewed_by.as_deref().into(),
                    e.reviewed_at.into(),
                    e.review_note.as_deref().into(),
                ],
            )?;
        }
        AccountWrite::ReviewEmergency { id, by, at, note } => {
            conn.execute(
                "UPDATE emergency_grant SET reviewed_by = $1, reviewed_at = $2, review_note = $3 WHERE id = $4",
                &[Param::Text(by), Param::I64(*at), Param::Text(note), Param::Text(id)],
            )?;
        }
        AccountWrite::Notify(n) => {
            conn.execute(
                "INSERT INTO notification (id, person_id, kind, text, created, read_at) VALUES ($1, $2, $3, $4, $5, $6)",
                &[Param::Text(&n.id), Param::Text(&n.person_id), Param::Text(&n.kind), Param::Text(&n.text), Param::I64(n.created), n.read_at.into()],
            )?;
        }
        AccountWrite::NotificationsRead { person_id, at } => {
            conn.execute(
                "UPDATE notification SET read_at = $1 WHERE person_id = $2 AND read_at IS NULL",
                &[Param::I64(*at), Param::Text(person_id)],
            )?;
        }
        AccountWrite::Anchor(a) => {
            conn.execute(
                "INSERT INTO audit_anchor (seq, hash, created, signature) VALUES ($1, $2, $3, $4)",
                &[Param::I64(a.seq), Param::Text(&a.hash), Param::I64(a.created), Param::Text(&a.signature)],
            )?;
        }
    }
    Ok(())
}

impl Store {
    /// Applies account writes and appends audit records, atomically.
    pub fn write_accounts(&self, writes: Vec<AccountWrite>, audit: Vec<AuditRecord>) -> Result<Vec<i64>, StoreError> {
        self.inner.writer.write(move |conn| {
            for w in &writes {
                apply(conn, w)?;
            }
            append_audit(conn, &audit)
        })
    }

    /// Sets the person of every record of a source patient (the MPI's link), returning how many
    /// rows changed.
    pub fn set_person(
        &self,
        patient_id: String,
        person_id: String,
        audit: Vec<AuditRecord>,
    ) -> Result<u64, StoreError> {
        self.inner.writer.write(move |conn| {
            let n = conn.execute(
                "UPDATE resource SET person_id = $1 WHERE patient_id = $2",
                &[Param::Text(&person_id), Param::Text(&patient_id)],
            )?;
            append_audit(conn, &audit)?;
            Ok(n)
        })
    }
}

impl Reader<'_> {
    /// A facility.
    pub fn facility(&mut self, code: &str) -> Result<Option<FacilityRow>, StoreError> {
        Ok(self.facilities_where("WHERE code = $1", &[Param::Text(code)])?.into_iter().next())
    }

    /// The codes of facilities that do not disclose (開示) their data to the network.
    pub fn withheld_facilities(&mut self) -> Result<Vec<String>, StoreError> {
        let rows = self.conn.query("SELECT code FROM facility WHERE discloses = 0 ORDER BY code", &[])?;
        Ok(rows.iter().map(|r| r.str(0).to_owned()).collect())
    }

    /// Every facility.
    pub fn facilities(&mut self) -> Result<Vec<FacilityRow>, StoreError> {
        self.facilities_where("", &[])
    }

    fn facilities_where(&mut self, w: &str, p: &[Param<'_>]) -> Result<Vec<FacilityRow>, StoreError> {
        let rows = self.conn.query(&format!("SELECT code, name, class, prefecture, area, area_name, discloses, views FROM facility {w} ORDER BY code"), p)?;
        Ok(rows
            .iter()
            .map(|r| FacilityRow {
                code: r.str(0).into(),
                name: r.str(1).into(),
                class: r.str(2).into(),
                prefecture: r.i64(3),
                area: r.str(4).into(),
                area_name: r.str(5).into(),
                discloses: r.i64(6) != 0,
                views: r.i64(7) != 0,
            })
            .collect())
    }

    /// The 二次医療圏 of a city.
    pub fn area_of_city(&mut self, prefecture: i64, city: &str) -> Result<Option<String>, StoreError> {
        let rows = self.conn.query(
            "SELECT area FROM area_city WHERE prefecture = $1 AND city = $2",
            &[Param::I64(prefecture), Param::Text(city)],
        )?;
        Ok(rows.first().map(|r| r.str(0).to_owned()))
    }

    /// A user by login (with facilities).
    pub fn user_by_login(&mut self, login: &str) -> Result<Option<UserRow>, StoreError> {
        self.user_where("login = $1", login)
    }

    /// A user by id (with facilities).
    pub fn user(&mut self, id: &str) -> Result<Option<UserRow>, StoreError> {
        self.user_where("id = $1", id)
    }

    fn user_where(&mut self, w: &str, v: &str) -> Result<Option<UserRow>, StoreError> {
        let rows = self.conn.query(&format!("SELECT {USER_COLS} FROM user_account WHERE {w}"), &[Param::Text(v)])?;
        let Some(mut u) = rows.first().map(user_row) else { return Ok(None) };
        u.facilities = self
            .conn
            .query("SELECT facility FROM user_facility WHERE user_id = $1 ORDER BY facility", &[Param::Text(&u.id)])?
            .iter()
            .map(|r| r.str(0).to_owned())
            .collect();
        Ok(Some(u))
    }

    /// Every user (without password hashes' use; for the operator console).
    pub fn users(&mut self) -> Result<Vec<UserRow>, StoreError> {
        let rows = self.conn.query(&format!("SELECT {USER_COLS} FROM user_account ORDER BY login"), &[])?;
        let mut out: Vec<UserRow> = rows.iter().map(user_row).collect();
        let links = self.conn.query("SELECT user_id, facility FROM user_facility ORDER BY facility", &[])?;
        for l in links {
            if let Some(u) = out.iter_mut().find(|u| u.id == l.str(0)) {
                u.facilities.push(l.str(1).to_owned());
            }
        }
        Ok(out)
    }

    /// Accounts whose TOTP secret is still stored in clear (not `enc1:`-sealed): `(portal,
    /// id, secret)`, for sealing them on start.
    pub fn clear_totp_secrets(&mut self) -> Result<Vec<(bool, String, String)>, StoreError> {
        let mut out = Vec::new();
        for portal in [false, true] {
            let rows = self.conn.query(
                &format!(
                    "SELECT id, totp_secret FROM {} WHERE totp_secret IS NOT NULL AND totp_secret NOT LIKE 'enc1:%'",
                    table(portal)
                ),
                &[],
            )?;
            out.extend(rows.iter().map(|r| (portal, r.str(0).to_owned(), r.str(1).to_owned())));
        }
        Ok(out)
    }

    /// A portal account by login.
    pub fn portal_by_login(&mut self, login: &str) -> Result<Option<PortalRow>, StoreError> {
        let rows = self
            .conn
            .query(&format!("SELECT {PORTAL_COLS} FROM portal_account WHERE login = $1"), &[Param::Text(login)])?;
        Ok(rows.first().map(portal_row))
    }

    /// A portal account by id.
    pub fn portal(&mut self, id: &str) -> Result<Option<PortalRow>, StoreError> {
        let rows =
            self.conn.query(&format!("SELECT {PORTAL_COLS} FROM portal_account WHERE id = $1"), &[Param::Text(id)])?;
        Ok(rows.first().map(portal_row))
    }

    /// The portal account of a person, if any.
    pub fn portal_of_person(&mut self, person_id: &str) -> Result<Option<PortalRow>, StoreError> {
        let rows = self.conn.query(
            &format!("SELECT {PORTAL_COLS} FROM portal_account WHERE person_id = $1"),
            &[Param::Text(person_id)],
        )?;
        Ok(rows.first().map(portal_row))
    }

    /// Active proxy grants held by an account.
    pub fn grants_of_proxy(&mut self, account: &str) -> Result<Vec<ProxyGrantRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT id, proxy_account, person_id, relation, may_view_records, may_manage_consent, may_view_history, granted_by, created, revoked FROM proxy_grant WHERE proxy_account = $1 AND revoked IS NULL ORDER BY created",
            &[Param::Text(account)],
        )?;
        Ok(rows.iter().map(grant_row).collect())
    }

    /// Proxy grants given for a person (including revoked ones).
    pub fn grants_for_person(&mut self, person_id: &str) -> Result<Vec<ProxyGrantRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT id, proxy_account, person_id, relation, may_view_records, may_manage_consent, may_view_history, granted_by, created, revoked FROM proxy_grant WHERE person_id = $1 ORDER BY created",
            &[Param::Text(person_id)],
        )?;
        Ok(rows.iter().map(grant_row).collect())
    }

    /// A session by token hash.
    pub fn session(&mut self, token_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT token_hash, kind, subject, facility, acting_for, created, expires, second_factor, csrf, last_seen FROM session WHERE token_hash = $1",
            &[Param::Text(token_hash)],
        )?;
        Ok(rows.first().map(|r| SessionRow {
            token_hash: r.str(0).into(),
            kind: r.str(1).into(),
            subject: r.str(2).into(),
            facility: r.opt_str(3).map(Into::into),
            acting_for: r.opt_str(4).map(Into::into),
            created: r.i64(5),
            expires: r.i64(6),
            second_factor: r.i64(7) != 0,
            csrf: r.str(8).into(),
            last_seen: r.i64(9),
        }))
    }

    /// A person's disclosure settings and their version.
    pub fn consent(&mut self, person_id: &str) -> Result<Option<(String, i64, i64, String)>, StoreError> {
        let rows = self.conn.query(
            "SELECT settings, version, updated, updated_by FROM consent_setting WHERE person_id = $1",
            &[Param::Text(person_id)],
        )?;
        Ok(rows.first().map(|r| (r.str(0).to_owned(), r.i64(1), r.i64(2), r.str(3).to_owned())))
    }

    /// A person's residence: (prefecture, area, recent prefectures).
    pub fn residence(&mut self, person_id: &str) -> Result<Option<(i64, String, String)>, StoreError> {
        let rows = self
            .conn
            .query("SELECT prefecture, area, recent FROM residence WHERE person_id = $1", &[Param::Text(person_id)])?;
        Ok(rows.first().map(|r| (r.i64(0), r.str(1).to_owned(), r.str(2).to_owned())))
    }

    /// Consents given in person for a person.
    pub fn visit_consents(&mut self, person_id: &str) -> Result<Vec<VisitConsentRow>, StoreError> {
        self.visit_consents_where(
            "WHERE person_id = $1 AND status = 'active' ORDER BY given_at",
            &[Param::Text(person_id)],
        )
    }

    /// Consents at a visit waiting for the operator (paper forms), oldest first.
    pub fn visit_consents_pending(&mut self) -> Result<Vec<VisitConsentRow>, StoreError> {
        self.visit_consents_where("WHERE status = 'pending' ORDER BY given_at", &[])
    }

    /// Consents at a visit recorded since `since` (epoch ms), newest first: the operator's list.
    pub fn visit_consents_since(&mut self, since: i64) -> Result<Vec<VisitConsentRow>, StoreError> {
        self.visit_consents_where("WHERE given_at >= $1 ORDER BY given_at DESC", &[Param::I64(since)])
    }

    /// One consent at a visit.
    pub fn visit_consent(&mut self, id: &str) -> Result<Option<VisitConsentRow>, StoreError> {
        Ok(self.visit_consents_where("WHERE id = $1", &[Param::Text(id)])?.into_iter().next())
    }

    fn visit_consents_where(&mut self, w: &str, p: &[Param<'_>]) -> Result<Vec<VisitConsentRow>, StoreError> {
        let rows = self.conn.query(
            &format!(
                "SELECT id, person_id, facility, given_at, until_at, recorded_by, evidence, status, confirmed_by, confirmed_at FROM visit_consent {w}"
            ),
            p,
        )?;
        Ok(rows
            .iter()
            .map(|r| VisitConsentRow {
                id: r.str(0).into(),
                person_id: r.str(1).into(),
                facility: r.str(2).into(),
                given_at: r.i64(3),
                until: r.opt_i64(4),
                recorded_by: r.str(5).into(),
                evidence: r.opt_str(6).unwrap_or("none").into(),
                status: r.opt_str(7).unwrap_or("pending").into(),
                confirmed_by: r.opt_str(8).map(Into::into),
                confirmed_at: r.opt_i64(9),
            })
            .collect())
    }

    /// Facilities whose own source patient (a current `Patient` they sent) is linked to the
    /// person: they have treated the person. Other records a facility wrote about a person are
    /// not evidence of care (it could write them about anyone); the link of its Patient is,
    /// because the MPI makes it only on matching demographics (identifier-only links wait in
    /// review).
    pub fn treating_facilities(&mut self, person_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = self.conn.query(
            "SELECT DISTINCT facility FROM resource WHERE person_id = $1 AND rtype = 'Patient' AND deleted = 0 AND facility IS NOT NULL ORDER BY facility",
            &[Param::Text(person_id)],
        )?;
        Ok(rows.iter().map(|r| r.str(0).to_owned()).collect())
    }

    /// Facilities a referral of the person is addressed to by another facility (a letter a
    /// facility addresses to itself is no evidence of care).
    pub fn referral_recipients(&mut self, person_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = self.conn.query(
            "SELECT DISTINCT i.code FROM resource r JOIN idx_token i ON i.rtype = r.rtype AND i.id = r.id \
             WHERE r.person_id = $1 AND r.rtype = 'Bundle' AND r.deleted = 0 AND i.param = 'recipient' \
             AND r.facility IS NOT NULL AND r.facility <> i.code ORDER BY i.code",
            &[Param::Text(person_id)],
        )?;
        Ok(rows.iter().map(|r| r.str(0).to_owned()).collect())
    }

    /// Emergency grants for a person (newest first).
    pub fn emergency_grants(&mut self, person_id: &str) -> Result<Vec<EmergencyRow>, StoreError> {
        let rows = self.conn.query(
            &format!("SELECT {EMERGENCY_COLS} FROM emergency_grant WHERE person_id = $1 ORDER BY started DESC"),
            &[Param::Text(person_id)],
        )?;
        Ok(rows.iter().map(emergency_row).collect())
    }

    /// Emergency grants not yet reviewed (oldest first) — the operator's review list.
    pub fn emergency_to_review(&mut self) -> Result<Vec<EmergencyRow>, StoreError> {
        let rows = self.conn.query(
            &format!("SELECT {EMERGENCY_COLS} FROM emergency_grant WHERE reviewed_at IS NULL ORDER BY started"),
            &[],
        )?;
        Ok(rows.iter().map(emergency_row).collect())
    }

    /// Notices to a person (newest first).
    pub fn notifications(&mut self, person_id: &str) -> Result<Vec<NotificationRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT id, person_id, kind, text, created, read_at FROM notification WHERE person_id = $1 ORDER BY created DESC",
            &[Param::Text(person_id)],
        )?;
        Ok(rows
            .iter()
            .map(|r| NotificationRow {
                id: r.str(0).into(),
                person_id: r.str(1).into(),
                kind: r.str(2).into(),
                text: r.str(3).into(),
                created: r.i64(4),
                read_at: r.opt_i64(5),
            })
            .collect())
    }

    /// Audit anchors, oldest first.
    pub fn anchors(&mut self) -> Result<Vec<AnchorRow>, StoreError> {
        let rows = self.conn.query("SELECT seq, hash, created, signature FROM audit_anchor ORDER BY seq", &[])?;
        Ok(rows
            .iter()
            .map(|r| AnchorRow { seq: r.i64(0), hash: r.str(1).into(), created: r.i64(2), signature: r.str(3).into() })
            .collect())
    }

    /// The chain hash of one audit record.
    pub fn audit_hash(&mut self, seq: i64) -> Result<Option<String>, StoreError> {
        let rows = self.conn.query("SELECT hash FROM audit WHERE seq = $1", &[Param::I64(seq)])?;
        Ok(rows.first().map(|r| r.str(0).to_owned()))
    }

    /// The person of a Patient (the MPI link; the patient itself when not linked).
    pub fn person_of_patient(&mut self, patient_id: &str) -> Result<Option<String>, StoreError> {
        let rows = self
            .conn
            .query("SELECT person_id FROM resource WHERE rtype = 'Patient' AND id = $1", &[Param::Text(patient_id)])?;
        Ok(rows.first().map(|r| r.opt_str(0).unwrap_or(patient_id).to_owned()))
    }

    /// The source patients (Patient ids) of a person.
    pub fn patients_of_person(&mut self, person_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = self.conn.query(
            "SELECT id FROM resource WHERE rtype = 'Patient' AND deleted = 0 AND (person_id = $1 OR (person_id IS NULL AND id = $1)) ORDER BY id",
            &[Param::Text(person_id)],
        )?;
        Ok(rows.iter().map(|r| r.str(0).to_owned()).collect())
    }
}

impl Store {
    /// Commits resource writes and account writes together (a consent change is both the
    /// gate's settings row and a FHIR Consent version), with the batch's audit records.
    pub fn commit_with_accounts(
        &self,
        batch: crate::WriteBatch,
        writes: Vec<AccountWrite>,
    ) -> Result<crate::Committed, StoreError> {
        self.inner.writer.write(move |conn| {
            for w in &writes {
                apply(conn, w)?;
            }
            crate::ops::apply(conn, &batch)
        })
    }
}

impl Reader<'_> {
    /// Facilities where a source patient has a usage history from claims (レセプト): the
    /// facility-use facts the collectors record.
    pub fn facilities_used_by_patient(&mut self, patient_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = self.conn.query(
            "SELECT DISTINCT facility FROM facility_use WHERE patient_id = $1 ORDER BY facility",
            &[Param::Text(patient_id)],
        )?;
        Ok(rows.iter().map(|r| r.str(0).to_owned()).collect())
    }
}

impl Store {
    /// Keeps the database's copy of an anchor line. A line number already recorded keeps its
    /// first copy: a log restarted from line 1 must not overwrite what it is checked against.
    pub fn record_anchor_line(&self, row: AnchorLogRow) -> Result<(), StoreError> {
        self.inner.writer.write(move |conn| {
            conn.execute(
                "INSERT INTO audit_anchor_log (n, kind, seq, hash, created, line_hash) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (n) DO NOTHING",
                &[
                    Param::I64(row.n),
                    Param::Text(&row.kind),
                    Param::I64(row.seq),
                    Param::Text(&row.hash),
                    Param::I64(row.created),
                    Param::Text(&row.line_hash),
                ],
            )?;
            Ok(())
        })
    }
}

impl Reader<'_> {
    /// The database's copies of the anchor log's lines, in line order.
    pub fn anchor_lines(&mut self) -> Result<Vec<AnchorLogRow>, StoreError> {
        let rows =
            self.conn.query("SELECT n, kind, seq, hash, created, line_hash FROM audit_anchor_log ORDER BY n", &[])?;
        Ok(rows
            .iter()
            .map(|r| AnchorLogRow {
                n: r.i64(0),
                kind: r.str(1).into(),
                seq: r.i64(2),
                hash: r.str(3).into(),
                created: r.i64(4),
                line_hash: r.str(5).into(),
            })
            .collect())
    }

    /// The stored canonical JSON of one audit record.
    pub fn audit_record(&mut self, seq: i64) -> Result<Option<String>, StoreError> {
        let rows = self.conn.query("SELECT record FROM audit WHERE seq = $1", &[Param::I64(seq)])?;
        Ok(rows.first().map(|r| r.str(0).to_owned()))
    }

    /// The last audit record recorded before `before` (epoch ms): (seq, hash).
    pub fn last_audit_before(&mut self, before: i64) -> Result<Option<(i64, String)>, StoreError> {
        let rows = self.conn.query(
            "SELECT seq, hash FROM audit WHERE recorded < $1 ORDER BY seq DESC LIMIT 1",
            &[Param::I64(before)],
        )?;
        Ok(rows.first().map(|r| (r.i64(0), r.str(1).to_owned())))
    }
}

impl Store {
    /// Deletes audit records up to `seq` (whose hash is `hash`) and records the boundary, so
    /// that verification resumes after it.
    pub fn prune_audit(&self, seq: i64, hash: String) -> Result<u64, StoreError> {
        self.inner.writer.write(move |conn| {
            let n = conn.execute("DELETE FROM audit WHERE seq <= $1", &[Param::I64(seq)])?;
            conn.execute("DELETE FROM setting WHERE key = $1", &[Param::Text("audit.pruned_through")])?;
            conn.execute(
                "INSERT INTO setting (key, value) VALUES ($1, $2)",
                &[Param::Text("audit.pruned_through"), Param::Text(&format!("{seq}:{hash}"))],
            )?;
            Ok(n)
        })
    }
}

impl Store {
    /// PostgreSQL, run as the owner of the tables: lets `app_role` read and write every table
    /// but never UPDATE, DELETE or TRUNCATE audit rows or anchor copies. The application then
    /// connects as `app_role`; pruning connects as the owner (`--prune-database-url`). Run again
    /// after an upgrade that adds tables.
    pub fn restrict_app_role(&self, app_role: String) -> Result<(), StoreError> {
        let valid = app_role.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && app_role.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(StoreError::backend("restrict", format!("{app_role:?}: a role name is a-z, 0-9 and _")));
        }
        self.inner.writer.write(move |conn| {
            if conn.dialect() != crate::sql::Dialect::Postgres {
                return Err(StoreError::backend("restrict", "only PostgreSQL has roles"));
            }
            let schema = conn.query("SELECT current_schema()", &[])?;
            let schema = schema.first().and_then(|r| r.opt_str(0)).unwrap_or("public").replace('"', "");
            // The app must lock schema_migrations on start (hence UPDATE there), and needs no
            // CREATE: the owner runs the migrations.
            conn.batch(&format!(
                "GRANT USAGE ON SCHEMA \"{schema}\" TO {app_role}; \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{schema}\" TO {app_role}; \
                 REVOKE UPDATE, DELETE, TRUNCATE ON audit, audit_anchor, audit_anchor_log, id_rekeyed FROM {app_role}"
            ))?;
            Ok(())
        })
    }
}

impl Reader<'_> {
    /// PostgreSQL: whether the connected role may change or delete audit rows (None on SQLite,
    /// where whoever can write the file can).
    pub fn audit_rows_mutable(&mut self) -> Result<Option<bool>, StoreError> {
        if self.conn.dialect() != crate::sql::Dialect::Postgres {
            return Ok(None);
        }
        let rows = self.conn.query(
            "SELECT has_table_privilege(current_user, 'audit', 'DELETE') OR has_table_privilege(current_user, 'audit', 'UPDATE')",
            &[],
        )?;
        Ok(Some(rows.first().is_some_and(|r| r.i64(0) != 0)))
    }
}

impl Reader<'_> {
    /// Every current, non-deleted record of a person (all linked source patients), newest
    /// clinical date first: only what the gate decides on and the version to load.
    pub fn person_records(&mut self, person_id: &str) -> Result<Vec<PersonRecordRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT rtype, id, version, last_updated, patient_id, facility, class, clinical_date, flags \
             FROM resource WHERE person_id = $1 AND deleted = 0 \
             ORDER BY clinical_date DESC NULLS LAST, rtype, id",
            &[Param::Text(person_id)],
        )?;
        rows.into_iter()
            .map(|mut r| {
                Ok(PersonRecordRow {
                    rtype: r.str(0).parse().map_err(StoreError::Corrupt)?,
                    id: r.take_str(1).unwrap_or_default(),
                    version: r.i64(2),
                    last_updated: r.i64(3),
                    patient_id: r.take_str(4),
                    facility: r.opt_str(5).and_then(|f| f.parse().ok()),
                    class: r.str(6).parse().map_err(StoreError::Corrupt)?,
                    clinical_date: r.opt_i64(7),
                    flags: musubi_domain::Flags::from_bits(u8::try_from(r.i64(8)).unwrap_or(0)),
                })
            })
            .collect()
    }
}

/// One current record of a person, as a whole-record read needs it (a long history has
/// thousands: the row carries what the gate decides on and which version to load, no more).
#[derive(Debug, Clone, PartialEq)]
pub struct PersonRecordRow {
    /// Type.
    pub rtype: musubi_fhir::ResourceType,
    /// Logical id.
    pub id: String,
    /// Current version.
    pub version: i64,
    /// When the current version was written.
    pub last_updated: i64,
    /// The source patient it is about.
    pub patient_id: Option<String>,
    /// Source facility.
    pub facility: Option<musubi_domain::FacilityCode>,
    /// Class.
    pub class: musubi_domain::ResourceClass,
    /// Clinical date (epoch ms).
    pub clinical_date: Option<i64>,
    /// Flags.
    pub flags: musubi_domain::Flags,
}

fn session_kind(portal: bool) -> &'static str {
    if portal { "portal" } else { "user" }
}

fn insert_session(conn: &mut dyn Conn, s: &SessionRow) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO session (token_hash, kind, subject, facility, acting_for, created, expires, second_factor, csrf, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            Param::Text(&s.token_hash),
            Param::Text(&s.kind),
            Param::Text(&s.subject),
            s.facility.as_deref().into(),
            s.acting_for.as_deref().into(),
            Param::I64(s.created),
            Param::I64(s.expires),
            b(s.second_factor),
            Param::Text(&s.csrf),
            Param::I64(s.last_seen),
        ],
    )?;
    Ok(())
}

/// How a login throttle grows: the first `free` failures cost nothing, then each failure
/// doubles the wait from `base_ms` up to `cap_ms` (a delay, never a lock that a stranger could
/// keep a clinician out with); failures older than `forget_ms` are forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRule {
    /// Failures allowed without a wait.
    pub free: i64,
    /// The first wait (ms).
    pub base_ms: i64,
    /// The longest wait (ms).
    pub cap_ms: i64,
    /// A quiet period after which the count starts again (ms).
    pub forget_ms: i64,
}

impl ThrottleRule {
    /// The wait after `failures` failures in a row.
    pub fn delay_ms(&self, failures: i64) -> i64 {
        if failures <= self.free {
            return 0;
        }
        let doublings = u32::try_from((failures - self.free - 1).clamp(0, 40)).unwrap_or(40);
        self.base_ms.saturating_mul(1_i64 << doublings).min(self.cap_ms)
    }
}

/// What a throttle said about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// Counted; go on and check the credential.
    Counted,
    /// Refused without counting: wait until this time (epoch ms).
    WaitUntil(i64),
}

impl Store {
    /// Counts one login attempt against every key (an account, a client address) before the
    /// credential is checked, so concurrent guesses each take their own place in the count.
    /// When any key is still waiting nothing is counted and the attempt is refused. The
    /// attempt's success is given back with [`Store::throttle_succeeded`].
    pub fn throttle_attempt(&self, keys: Vec<(String, ThrottleRule)>, now: i64) -> Result<Throttle, StoreError> {
        self.inner.writer.write(move |conn| {
            let mut until = 0_i64;
            for (key, _) in &keys {
                conn.execute(
                    "INSERT INTO login_throttle (key, failures, last_failure, blocked_until) VALUES ($1, 0, $2, 0) ON CONFLICT (key) DO NOTHING",
                    &[Param::Text(key), Param::I64(now)],
                )?;
                // A no-op UPDATE rather than a SELECT: it takes the row lock on PostgreSQL, so
                // several servers sharing the database count one attempt at a time.
                let rows = conn.query(
                    "UPDATE login_throttle SET blocked_until = blocked_until WHERE key = $1 RETURNING blocked_until",
                    &[Param::Text(key)],
                )?;
                until = until.max(rows.first().map_or(0, |r| r.i64(0)));
            }
            if until > now {
                return Ok(Throttle::WaitUntil(until));
            }
            for (key, rule) in &keys {
                let rows = conn.query(
                    "UPDATE login_throttle SET failures = CASE WHEN last_failure < $3 THEN 1 ELSE failures + 1 END, last_failure = $2 WHERE key = $1 RETURNING failures",
                    &[Param::Text(key), Param::I64(now), Param::I64(now.saturating_sub(rule.forget_ms))],
                )?;
                let failures = rows.first().map_or(1, |r| r.i64(0));
                let delay = rule.delay_ms(failures);
                conn.execute(
                    "UPDATE login_throttle SET blocked_until = $2 WHERE key = $1",
                    &[Param::Text(key), Param::I64(if delay > 0 { now + delay } else { 0 })],
                )?;
            }
            // Rows nobody has failed on for a day are kept no longer.
            conn.execute(
                "DELETE FROM login_throttle WHERE last_failure < $1 AND blocked_until < $2",
                &[Param::I64(now.saturating_sub(24 * 3600 * 1000)), Param::I64(now)],
            )?;
            Ok(Throttle::Counted)
        })
    }

    /// An attempt counted by [`Store::throttle_attempt`] succeeded: the keys in `reset` start
    /// again (the account), the keys in `undo` take the attempt back (the address, which other
    /// accounts' failures also count against).
    pub fn throttle_succeeded(&self, reset: Vec<String>, undo: Vec<String>) -> Result<(), StoreError> {
        self.inner.writer.write(move |conn| {
            for key in &reset {
                conn.execute("DELETE FROM login_throttle WHERE key = $1", &[Param::Text(key)])?;
            }
            for key in &undo {
                conn.execute(
                    "UPDATE login_throttle SET failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END, blocked_until = 0 WHERE key = $1",
                    &[Param::Text(key)],
                )?;
            }
            Ok(())
        })
    }

    /// A wrong one-time code: adds one to the account's second-factor failures in SQL (so
    /// concurrent guesses cannot race the count); from `lock_ms(count)` on, locks the account
    /// until then and ends every pending session of it. Returns the count and the lock.
    pub fn second_factor_failed(
        &self,
        portal: bool,
        id: String,
        now: i64,
        lock_ms: impl Fn(i64) -> Option<i64> + Send + 'static,
        mut audit: AuditRecord,
    ) -> Result<(i64, Option<i64>), StoreError> {
        self.inner.writer.write(move |conn| {
            let rows = conn.query(
                &format!(
                    "UPDATE {} SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
                    table(portal)
                ),
                &[Param::Text(&id)],
            )?;
            let failed = rows.first().map_or(0, |r| r.i64(0));
            let locked = lock_ms(failed).map(|ms| now + ms);
            if let Some(until) = locked {
                conn.execute(
                    &format!("UPDATE {} SET locked_until = $1 WHERE id = $2", table(portal)),
                    &[Param::I64(until), Param::Text(&id)],
                )?;
                conn.execute(
                    "DELETE FROM session WHERE kind = $1 AND subject = $2 AND second_factor = 0",
                    &[Param::Text(session_kind(portal)), Param::Text(&id)],
                )?;
                audit.outcome_text = audit.outcome_text.map(|t| format!("{t}; locked; pending sessions ended"));
            }
            append_audit(conn, &[audit])?;
            Ok((failed, locked))
        })
    }

    /// A right one-time code for time step `step`: accepted only if the account is enabled,
    /// not locked, and `step` is later than every step accepted before (a code is never
    /// accepted twice), at `new_session.created`. Then, atomically, the failures and lock are cleared, the pending
    /// session `pending_hash` ends and `new_session` (a new token) takes its place. Returns
    /// false, changing nothing, when the code is refused.
    pub fn second_factor_accepted(
        &self,
        portal: bool,
        id: String,
        step: i64,
        pending_hash: String,
        new_session: SessionRow,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        // The new session is made now: its creation time is the time of the check.
        let now = new_session.created;
        self.inner.writer.write(move |conn| {
            let rows = conn.query(
                &format!(
                    "UPDATE {} SET totp_last_step = $2, failed_logins = 0, locked_until = NULL \
                     WHERE id = $1 AND disabled = 0 AND (locked_until IS NULL OR locked_until <= $3) \
                     AND (totp_last_step IS NULL OR totp_last_step < $2) RETURNING id",
                    table(portal)
                ),
                &[Param::Text(&id), Param::I64(step), Param::I64(now)],
            )?;
            if rows.is_empty() {
                return Ok(false);
            }
            let ended = conn.execute(
                "DELETE FROM session WHERE token_hash = $1 AND second_factor = 0",
                &[Param::Text(&pending_hash)],
            )?;
            if ended == 0 {
                // The pending session ended meanwhile (a lock, a concurrent completion): undo.
                return Err(StoreError::Conflict {
                    key: "session".into(),
                    expected: "a pending session".into(),
                    found: "none".into(),
                });
            }
            insert_session(conn, &new_session)?;
            append_audit(conn, &[audit])?;
            Ok(true)
        })
    }

    /// Revokes every administrator (bootstrap) token: once a named operator exists, operators
    /// log in as themselves. Returns how many were revoked.
    pub fn revoke_admin_tokens(&self) -> Result<u64, StoreError> {
        self.inner.writer.write(|conn| {
            conn.execute("UPDATE api_token SET revoked = 1 WHERE kind = $1 AND revoked = 0", &[Param::Text("admin")])
        })
    }

    /// Records that a session was used now (the idle timeout counts from here). Deferred
    /// durability: losing the last few touches in a power cut only shortens a session.
    pub fn touch_session(&self, token_hash: String, now: i64) -> Result<(), StoreError> {
        self.inner.writer.write_with(crate::writer::Durability::Deferred, move |conn| {
            conn.execute(
                "UPDATE session SET last_seen = $2 WHERE token_hash = $1",
                &[Param::Text(&token_hash), Param::I64(now)],
            )?;
            Ok(())
        })
    }
}

impl Reader<'_> {
    /// The sessions of an account (for the operator's view: how many are open).
    pub fn sessions_of(&mut self, kind: &str, subject: &str) -> Result<i64, StoreError> {
        let rows = self.conn.query(
            "SELECT COUNT(*) FROM session WHERE kind = $1 AND subject = $2",
            &[Param::Text(kind), Param::Text(subject)],
        )?;
        Ok(rows.first().map_or(0, |r| r.i64(0)))
    }
}
