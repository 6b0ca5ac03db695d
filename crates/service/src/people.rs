//! People: clinician and staff accounts, patient and proxy accounts, login with a password and
//! a second factor (TOTP), sessions, patient registration verified against the records the
//! network holds, proxy grants, disclosure settings (kept for the gate and as a FHIR Consent),
//! consent in person at a visit, emergency access (break-glass) and the patient's access
//! history. Every change here is audited.
//!
//! Passwords are stored only as Argon2id hashes; session tokens and TOTP secrets never reach a
//! log. Failures say nothing about whether the login exists; guessing is slowed by throttles
//! and one-time-code locks (see [`crate::login`]).

use std::collections::BTreeSet;

use musubi_domain::audit::{AuditAction, AuditOutcome, AuditPurpose, AuditRecord};
use musubi_domain::{Flags, Profession};
use musubi_fhir::ResourceType;
use musubi_fhir::datetime::{format_instant, now_ms};
use musubi_gate::{Actor, ConsentSettings, PortalActor, UserActor};
use musubi_store::{AccountWrite, EmergencyRow, NotificationRow, PortalRow, ProxyGrantRow, SessionRow, UserRow};
use serde::Serialize;
use serde_json::{Value, json};

pub use crate::credentials::{
    Enrolled, check_login_name, check_password_rule, hash_password, new_totp_secret, session_hash, totp_code_at,
    totp_code_now, totp_uri,
};
pub(crate) use crate::credentials::{random_b64, totp_step, totp_valid};
use crate::{ApiError, Ctx, ErrorKind, Service};

/// Wrong one-time codes in a row before an account is locked.
pub const MAX_FAILED_LOGINS: i64 = crate::login::MAX_SECOND_FACTOR_FAILURES;
/// How long the first lock lasts.
pub const LOCK_MS: i64 = crate::login::SECOND_FACTOR_LOCK_MS;
/// A valid Argon2id hash (of nothing anyone knows) checked when the login is unknown, so an
/// unknown login costs the same time as a known one.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3dj5Qp8gWbK1i9V4WkTtkbWsnYk4ZB8kq9r2U0UbkkI";
/// How long a user session lasts.
pub const USER_SESSION_MS: i64 = 8 * 3600 * 1000;
/// How long a portal session lasts.
pub const PORTAL_SESSION_MS: i64 = 3600 * 1000;
/// The prefix of session tokens.
pub const SESSION_PREFIX: &str = "mss_";

/// What a login step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoginOutcome {
    /// The session token (a bearer token for the API, a cookie for the web).
    pub token: String,
    /// The CSRF token of the web session.
    pub csrf: String,
    /// Whether the second factor is still needed.
    pub needs_second_factor: bool,
    /// Whether the account has no authenticator yet: enrol one first
    /// (`POST /api/login/totp/enrol`), then give its code.
    pub needs_enrolment: bool,
    /// Whether the password was set by an operator: choose a new one first
    /// (`POST /api/login/password`).
    pub needs_new_password: bool,
    /// Until when the session holds (epoch ms).
    pub expires: i64,
}

/// A new user as the operator creates it.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name.
    pub login: String,
    /// Kanji name.
    pub name: String,
    /// Kana name.
    pub kana: String,
    /// Profession.
    pub profession: Profession,
    /// Facilities.
    pub facilities: Vec<String>,
    /// Initial password.
    pub password: String,
}

/// Registration data of a patient: the activation code and the birth date bind the account;
/// the rest describes the patient (residence, for the disclosure defaults).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Registration {
    /// Kanji name (姓 名).
    pub name: String,
    /// Kana name.
    #[serde(default)]
    pub kana: String,
    /// `male`, `female`, `other`, `unknown`.
    #[serde(default)]
    pub sex: String,
    /// YYYY-MM-DD.
    pub birth_date: String,
    /// Prefecture name (都道府県).
    #[serde(default)]
    pub prefecture: String,
    /// City (市区町村).
    #[serde(default)]
    pub city: String,
    /// 被保険者個人識別子 `保険者番号:記号:番号:枝番` (optional; not what binds the account).
    #[serde(default)]
    pub insurance_id: String,
    /// Login name.
    pub login: String,
    /// Password.
    pub password: String,
    /// The one-time activation code a member facility or the operator issued after checking
    /// the patient's identity: with the birth date, what binds the account to the person.
    #[serde(default)]
    pub activation_code: String,
}

/// One line of a patient's access history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// Audit sequence number.
    pub seq: i64,
    /// When (ISO instant).
    pub when: String,
    /// The facility (code).
    pub facility: Option<String>,
    /// The facility's name.
    pub facility_name: Option<String>,
    /// The profession (Japanese), for users.
    pub profession: Option<String>,
    /// The person's name, for users; the system's name otherwise.
    pub who: String,
    /// 閲覧, 登録, 更新, 削除, 操作.
    pub action: String,
    /// What kinds of information (Japanese class labels).
    pub what: Vec<String>,
    /// 通常, 緊急, 拒否.
    pub why: String,
    /// The stated reason of an emergency access.
    pub reason: Option<String>,
}

/// The disclosure settings as the portal shows them.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentView {
    /// The settings.
    pub settings: ConsentSettings,
    /// Their version (for the next update).
    pub version: i64,
    /// The residence used for the area rules.
    pub residence: ResidenceView,
    /// Facilities the patient has used, each with its effective setting.
    pub facilities: Vec<FacilityUsed>,
    /// The FHIR Consent the settings are kept as.
    pub fhir: Value,
}

/// The residence as shown.
#[derive(Debug, Clone, Serialize)]
pub struct ResidenceView {
    /// Prefecture number.
    pub prefecture: u8,
    /// Prefecture name.
    pub prefecture_name: String,
    /// 二次医療圏 id.
    pub area: String,
}

/// A facility the patient has used.
#[derive(Debug, Clone, Serialize)]
pub struct FacilityUsed {
    /// Code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Kind (Japanese).
    pub kind: String,
    /// Explicit per-facility setting, if any.
    pub setting: Option<bool>,
    /// Whether a doctor there may see the records under the current settings.
    pub open_for_doctors: bool,
}

fn unauthorized() -> ApiError {
    ApiError::new(ErrorKind::Unauthorized, "ログインIDまたはパスワードが違います")
}

fn wrong_code() -> ApiError {
    ApiError::new(ErrorKind::Unauthorized, "ワンタイムコードが違います")
}

fn session_gone() -> ApiError {
    ApiError::new(ErrorKind::Unauthorized, "セッションが無効です。最初からログインしてください。")
}

impl Service {
    pub(crate) fn login_audit(
        &self,
        address: Option<String>,
        kind: &str,
        login: &str,
        outcome: AuditOutcome,
        text: &str,
    ) -> Result<(), ApiError> {
        if outcome != AuditOutcome::Success {
            // Counted, and written as one summary per source and period (failed_auth.rs).
            let now = now_ms();
            self.note_failed_auth_at(now, address, kind, Some(login), text);
            if let Err(e) = self.flush_failed_auth(now) {
                tracing::error!(error = %e.summary(), "failed-authentication summaries not written yet");
            }
            return Ok(());
        }
        let mut r = AuditRecord {
            recorded: now_ms(),
            action: AuditAction::Execute,
            subtype: "login".into(),
            outcome,
            outcome_text: Some(text.into()),
            agent: musubi_domain::audit::AuditAgent {
                kind: kind.into(),
                name: login.into(),
                facility: None,
                profession: None,
                address,
            },
            purpose: AuditPurpose::Operations,
            patient: None,
            person: None,
            entities: Vec::new(),
            query: None,
            source: self.node.clone(),
        };
        if outcome == AuditOutcome::Success {
            r.purpose = AuditPurpose::Treatment;
        }
        self.audit(vec![r])
    }

    /// Creates a user (operator or administrator), with an authenticator key the operator
    /// hands over (see [`Service::create_user_self_enrolling`] for the better way).
    pub fn create_user(&self, ctx: &Ctx, u: NewUser) -> Result<Enrolled, ApiError> {
        let secret = new_totp_secret()?;
        let login = u.login.clone();
        let id = self.create_user_with(ctx, u, Some(secret.clone()))?;
        Ok(Enrolled { id, totp_uri: totp_uri(&secret, &login)?, totp_secret: secret })
    }

    /// Creates a user without an authenticator: the user enrols their own at the first login,
    /// and nobody else ever sees the key. Returns the account id.
    pub fn create_user_self_enrolling(&self, ctx: &Ctx, u: NewUser) -> Result<String, ApiError> {
        self.create_user_with(ctx, u, None)
    }

    fn create_user_with(&self, ctx: &Ctx, u: NewUser, secret: Option<String>) -> Result<String, ApiError> {
        require_privileged(ctx)?;
        let self_chosen = secret.is_none();
        check_password_rule(&u.password)?;
        check_login_name(&u.login)?;
        if u.facilities.is_empty() {
            return Err(ApiError::bad_request("所属医療機関を1つ以上指定してください"));
        }
        for f in &u.facilities {
            let code = f.clone();
            if self.store.read(|r| r.facility(&code))?.is_none() {
                return Err(ApiError::bad_request(format!(
                    "医療機関 {f} はネットワークに登録されていません（先に施設を登録してください）"
                )));
            }
        }
        let login = u.login.clone();
        if self.store.read(|r| r.user_by_login(&login))?.is_some() {
            return Err(ApiError::new(ErrorKind::Conflict, format!("ログインID {} は既に使われています", u.login)));
        }
        let id = crate::prepare::new_id();
        let row = UserRow {
            id: id.clone(),
            login: u.login.clone(),
            name: u.name,
            kana: u.kana,
            profession: u.profession.code().into(),
            password_hash: self.hash_password_pooled(&u.password)?,
            totp_secret: secret.map(|s| self.seal_secret(&s)).transpose()?,
            failed_logins: 0,
            locked_until: None,
            disabled: false,
            created: now_ms(),
            facilities: u.facilities,
            // A user who enrols their own authenticator also chooses their own password.
            must_change_password: self_chosen,
        };
        let mut a = self.audit_record(ctx, AuditAction::Create, "create-user", AuditOutcome::Success);
        a.entities = vec![format!("user/{}", u.login)];
        self.store.write_accounts(vec![AccountWrite::NewUser(row)], vec![a])?;
        Ok(id)
    }

    /// Step one of a clinician's login: the password. `facility` chooses the facility to act
    /// for when the user belongs to several. An unknown login, a wrong password, a disabled or
    /// locked account: one message, one Argon2 check; each counts against the login name and
    /// the address (429 while they wait).
    pub fn login_user(
        &self,
        login: &str,
        password: &str,
        facility: Option<&str>,
        address: Option<String>,
    ) -> Result<LoginOutcome, ApiError> {
        self.throttle("user", login, address.as_deref())?;
        let l = login.to_owned();
        let user = self.store.read(|r| r.user_by_login(&l))?;
        let now = self.now();
        let password_ok =
            self.verify_password_pooled(password, user.as_ref().map_or(DUMMY_HASH, |u| &u.password_hash))?;
        let refusal = match &user {
            None => Some("unknown login"),
            Some(u) if u.disabled => Some("disabled"),
            Some(u) if u.locked_until.is_some_and(|t| t > now) => Some("locked"),
            Some(_) if !password_ok => Some("wrong password"),
            Some(_) => None,
        };
        let Some(user) = user.filter(|_| refusal.is_none()) else {
            let mut a =
                self.login_record(address, "user", login, AuditOutcome::SeriousFailure, refusal.unwrap_or("refused"));
            a.entities = vec![format!("user/{login}")];
            self.audit(vec![a])?;
            return Err(unauthorized());
        };
        // The password was right: this attempt was no guess, whatever follows.
        self.throttle_ok(Some(crate::login::account_key("user", login)), address.as_deref())?;
        let operator = user.profession == crate::login::OPERATOR_PROFESSION;
        let facility = match facility {
            // An operator acts for the network, not for a facility.
            _ if operator => None,
            Some(f) if user.facilities.iter().any(|x| x == f) => Some(f.to_owned()),
            Some(_) => return Err(ApiError::new(ErrorKind::Forbidden, "この医療機関に所属していません")),
            None => user
                .facilities
                .first()
                .cloned()
                .map(Some)
                .ok_or_else(|| ApiError::new(ErrorKind::Forbidden, "所属医療機関がありません"))?,
        };
        // The password step never clears the one-time-code failures: only a right code does.
        let mut out =
            self.new_session("user", &user.id, facility, None, USER_SESSION_MS, user.totp_secret.is_none())?;
        out.0.needs_new_password = user.must_change_password;
        let a = self.login_record(
            address,
            "user",
            login,
            AuditOutcome::Success,
            "password accepted; second factor pending",
        );
        self.store.write_accounts(vec![out.1], vec![a])?;
        Ok(out.0)
    }

    pub(crate) fn login_record(
        &self,
        address: Option<String>,
        kind: &str,
        login: &str,
        outcome: AuditOutcome,
        text: &str,
    ) -> AuditRecord {
        AuditRecord {
            recorded: now_ms(),
            action: AuditAction::Execute,
            subtype: "login".into(),
            outcome,
            outcome_text: Some(text.into()),
            agent: musubi_domain::audit::AuditAgent {
                kind: kind.into(),
                name: login.into(),
                facility: None,
                profession: None,
                address,
            },
            purpose: AuditPurpose::Operations,
            patient: None,
            person: None,
            entities: Vec::new(),
            query: None,
            source: self.node.clone(),
        }
    }

    fn new_session(
        &self,
        kind: &str,
        subject: &str,
        facility: Option<String>,
        acting_for: Option<String>,
        ttl: i64,
        needs_enrolment: bool,
    ) -> Result<(LoginOutcome, AccountWrite), ApiError> {
        let token = format!("{SESSION_PREFIX}{}", random_b64(32)?);
        let csrf = random_b64(18)?;
        let now = self.now();
        let row = SessionRow {
            token_hash: session_hash(&token),
            kind: kind.into(),
            subject: subject.into(),
            facility,
            acting_for,
            created: now,
            expires: now + ttl,
            second_factor: false,
            csrf: csrf.clone(),
            last_seen: now,
        };
        Ok((
            LoginOutcome {
                token,
                csrf,
                needs_second_factor: true,
                needs_enrolment,
                needs_new_password: false,
                expires: now + ttl,
            },
            AccountWrite::NewSession(row),
        ))
    }

    /// The pending session of a token and its account: (session, portal?, login, secret, id).
    /// The lock and the disabled flag are checked here, at every step: a locked or disabled
    /// account's pending session ends.
    fn pending_session(
        &self,
        token: &str,
        address: &Option<String>,
    ) -> Result<(SessionRow, bool, String, Option<String>, String), ApiError> {
        let now = self.now();
        let h = session_hash(token);
        let Some(s) = self.store.read(|r| r.session(&h))? else { return Err(session_gone()) };
        if s.second_factor {
            return Err(ApiError::bad_request("このセッションは既にログインが完了しています"));
        }
        if s.expires < now {
            return Err(ApiError::new(
                ErrorKind::Unauthorized,
                "セッションの有効期限が切れました。最初からログインしてください。",
            ));
        }
        let portal = s.kind == "portal";
        let id = s.subject.clone();
        let (login, secret, disabled, locked_until) = if portal {
            let a = self.store.read(|r| r.portal(&id))?.ok_or_else(session_gone)?;
            (a.login, a.totp_secret, a.disabled, a.locked_until)
        } else {
            let u = self.store.read(|r| r.user(&id))?.ok_or_else(session_gone)?;
            (u.login, u.totp_secret, u.disabled, u.locked_until)
        };
        if disabled || locked_until.is_some_and(|t| t > now) {
            let a = self.login_record(
                address.clone(),
                if portal { "patient" } else { "user" },
                &login,
                AuditOutcome::SeriousFailure,
                if disabled { "second factor: disabled" } else { "second factor: locked" },
            );
            self.store.write_accounts(vec![AccountWrite::EndSession(h)], vec![a])?;
            return Err(session_gone());
        }
        // Secrets are sealed at rest (secrets.rs); the steps below work on the clear one.
        let secret = secret.map(|x| self.open_secret(&x)).transpose()?;
        Ok((s, portal, login, secret, id))
    }

    /// First login without an authenticator (a new account, or after the operator reset the
    /// second factor): a new secret for the account, shown only to the person logging in.
    /// The session stays pending until a code of the new secret is given.
    pub fn enrol_second_factor(&self, token: &str, address: Option<String>) -> Result<Enrolled, ApiError> {
        let (_, portal, login, secret, id) = self.pending_session(token, &address)?;
        if secret.is_some() {
            return Err(ApiError::new(ErrorKind::Conflict, "認証アプリは既に登録されています"));
        }
        let secret = new_totp_secret()?;
        let mut a = self.login_record(
            address,
            if portal { "patient" } else { "user" },
            &login,
            AuditOutcome::Success,
            "second factor enrolled",
        );
        a.subtype = "enrol-second-factor".into();
        self.store.write_accounts(
            vec![AccountWrite::Totp { portal, id: id.clone(), secret: Some(self.seal_secret(&secret)?) }],
            vec![a],
        )?;
        Ok(Enrolled { id, totp_uri: totp_uri(&secret, &login)?, totp_secret: secret })
    }

    /// A user whose password an operator set chooses their own, on the pending session (the
    /// login cannot complete before). The new password must differ from the one set.
    pub fn choose_password(&self, token: &str, password: &str, address: Option<String>) -> Result<(), ApiError> {
        let (_, portal, login, _, id) = self.pending_session(token, &address)?;
        let i = id.clone();
        let user = if portal { None } else { self.store.read(|r| r.user(&i))? };
        let Some(user) = user.filter(|u| u.must_change_password) else {
            return Err(ApiError::new(ErrorKind::Conflict, "パスワードの変更は求められていません"));
        };
        check_password_rule(password)?;
        if self.verify_password_pooled(password, &user.password_hash)? {
            return Err(ApiError::bad_request("運営事務局が設定したものとは別のパスワードにしてください"));
        }
        let hash = self.hash_password_pooled(password)?;
        let mut a = self.login_record(address, "user", &login, AuditOutcome::Success, "password chosen by the user");
        a.subtype = "choose-password".into();
        self.store.write_accounts(
            vec![
                AccountWrite::Password { portal: false, id: id.clone(), hash },
                AccountWrite::MustChangePassword { id, on: false },
            ],
            vec![a],
        )?;
        Ok(())
    }

    /// Step two: the TOTP code. Completes the login with a new session token (the pending one
    /// ends). Wrong codes count in SQL and only a right code resets them; five in a row lock
    /// the account and end its pending sessions; a code's time step is never accepted twice.
    pub fn second_factor(&self, token: &str, code: &str, address: Option<String>) -> Result<LoginOutcome, ApiError> {
        let (s, portal, login, secret, id) = self.pending_session(token, &address)?;
        let Some(secret) = secret else {
            return Err(ApiError::new(ErrorKind::Unauthorized, "先に認証アプリを登録してください"));
        };
        if !portal && self.store.read(|r| r.user(&id))?.is_some_and(|u| u.must_change_password) {
            return Err(ApiError::new(ErrorKind::Unauthorized, "先に新しいパスワードを設定してください"));
        }
        self.throttle_address(address.as_deref())?;
        let now = self.now();
        let agent = if portal { "patient" } else { "user" };
        let refused = |why: &str| -> Result<LoginOutcome, ApiError> {
            let a = self.login_record(address.clone(), agent, &login, AuditOutcome::SeriousFailure, why);
            self.store.second_factor_failed(portal, id.clone(), now, crate::login::second_factor_lock_ms, a)?;
            Err(wrong_code())
        };
        let Some(step) = totp_step(&secret, code, now) else { return refused("wrong one-time code") };
        let new_token = format!("{SESSION_PREFIX}{}", random_b64(32)?);
        let csrf = random_b64(18)?;
        let row = SessionRow {
            token_hash: session_hash(&new_token),
            kind: s.kind.clone(),
            subject: s.subject.clone(),
            facility: s.facility.clone(),
            acting_for: s.acting_for.clone(),
            created: now,
            expires: s.expires,
            second_factor: true,
            csrf: csrf.clone(),
            last_seen: now,
        };
        let a = self.login_record(
            address.clone(),
            agent,
            &login,
            AuditOutcome::Success,
            "logged in (password and one-time code)",
        );
        match self.store.second_factor_accepted(portal, id.clone(), step, s.token_hash.clone(), row, a) {
            Ok(true) => {}
            Ok(false) => return refused("one-time code already used (or account locked)"),
            Err(musubi_store::StoreError::Conflict { .. }) => return Err(session_gone()),
            Err(e) => return Err(e.into()),
        }
        self.throttle_ok(None, address.as_deref())?;
        Ok(LoginOutcome {
            token: new_token,
            csrf,
            needs_second_factor: false,
            needs_enrolment: false,
            needs_new_password: false,
            expires: s.expires,
        })
    }

    /// Ends a session.
    pub fn logout(&self, token: &str) -> Result<(), ApiError> {
        self.store.write_accounts(vec![AccountWrite::EndSession(session_hash(token))], Vec::new())?;
        Ok(())
    }

    /// The actor of a session token (None when unknown, expired, idle too long or the second
    /// factor is missing), with the session.
    pub fn session_actor(&self, token: &str) -> Result<Option<(Actor, SessionRow)>, ApiError> {
        if !token.starts_with(SESSION_PREFIX) || token.len() > 200 {
            return Ok(None);
        }
        let h = session_hash(token);
        let Some(s) = self.store.read(|r| r.session(&h))? else { return Ok(None) };
        let now = self.now();
        if s.expires < now || !s.second_factor {
            return Ok(None);
        }
        if self.session_idle(&h, s.last_seen, s.created, now)? {
            return Ok(None);
        }
        let actor = if s.kind == "user" {
            let id = s.subject.clone();
            let Some(u) = self.store.read(|r| r.user(&id))? else { return Ok(None) };
            if u.profession == crate::login::OPERATOR_PROFESSION {
                // A named operator: acts as the network's operator under their own name.
                return Ok((!u.disabled).then_some((Actor::Operator { name: u.login }, s)));
            }
            let (Some(f), Ok(p)) = (s.facility.as_deref(), u.profession.parse::<Profession>()) else { return Ok(None) };
            if u.disabled || !u.facilities.iter().any(|x| x == f) {
                return Ok(None);
            }
            let Ok(facility) = f.parse() else { return Ok(None) };
            Actor::User(UserActor { user_id: u.id, login: u.login, name: u.name, profession: p, facility })
        } else {
            let id = s.subject.clone();
            let Some(acct) = self.store.read(|r| r.portal(&id))? else { return Ok(None) };
            if acct.disabled {
                return Ok(None);
            }
            match &s.acting_for {
                None => match acct.person_id {
                    Some(person) => Actor::Portal(PortalActor {
                        account_id: acct.id,
                        name: acct.name,
                        person_id: person,
                        proxy_relation: None,
                        may_view_records: true,
                    }),
                    None => return Ok(None),
                },
                Some(person) => {
                    let aid = acct.id.clone();
                    let grants = self.store.read(|r| r.grants_of_proxy(&aid))?;
                    let Some(g) = grants.into_iter().find(|g| &g.person_id == person) else { return Ok(None) };
                    Actor::Portal(PortalActor {
                        account_id: acct.id,
                        name: acct.name,
                        person_id: person.clone(),
                        proxy_relation: Some(g.relation),
                        may_view_records: g.may_view_records,
                    })
                }
            }
        };
        Ok(Some((actor, s)))
    }

    /// Registers an account for a proxy (family or a facility's liaison staff). It sees
    /// nothing until a patient grants it access.
    pub fn register_proxy(
        &self,
        name: &str,
        login: &str,
        password: &str,
        address: Option<String>,
    ) -> Result<Enrolled, ApiError> {
        check_password_rule(password)?;
        check_login_name(login)?;
        let l = login.to_owned();
        if self.store.read(|r| r.portal_by_login(&l))?.is_some() {
            return Err(ApiError::new(ErrorKind::Conflict, "このログインIDは使えません"));
        }
        let id = crate::prepare::new_id();
        let secret = new_totp_secret()?;
        let acct = PortalRow {
            id: id.clone(),
            login: login.into(),
            name: name.into(),
            person_id: None,
            password_hash: hash_password(password)?,
            totp_secret: Some(self.seal_secret(&secret)?),
            failed_logins: 0,
            locked_until: None,
            disabled: false,
            created: now_ms(),
        };
        let mut a = self.login_record(address, "proxy", login, AuditOutcome::Success, "registered as proxy");
        a.subtype = "register".into();
        self.store.write_accounts(vec![AccountWrite::NewPortal(acct)], vec![a])?;
        Ok(Enrolled { id, totp_uri: totp_uri(&secret, login)?, totp_secret: secret })
    }

    /// Step one of a patient's or proxy's login. A proxy chooses whom to act for with
    /// `acting_for` (a person it holds a grant for).
    pub fn login_portal(
        &self,
        login: &str,
        password: &str,
        acting_for: Option<&str>,
        address: Option<String>,
    ) -> Result<LoginOutcome, ApiError> {
        self.throttle("portal", login, address.as_deref())?;
        let l = login.to_owned();
        let acct = self.store.read(|r| r.portal_by_login(&l))?;
        let now = self.now();
        let password_ok =
            self.verify_password_pooled(password, acct.as_ref().map_or(DUMMY_HASH, |a| &a.password_hash))?;
        let refusal = match &acct {
            None => Some("unknown login"),
            Some(a) if a.disabled => Some("disabled"),
            Some(a) if a.locked_until.is_some_and(|t| t > now) => Some("locked"),
            Some(_) if !password_ok => Some("wrong password"),
            Some(_) => None,
        };
        let Some(acct) = acct.filter(|_| refusal.is_none()) else {
            self.login_audit(address, "patient", login, AuditOutcome::SeriousFailure, refusal.unwrap_or("refused"))?;
            return Err(unauthorized());
        };
        let acting_for = match acting_for {
            None => None,
            Some(p) if acct.person_id.as_deref() == Some(p) => None,
            Some(p) => {
                let aid = acct.id.clone();
                let grants = self.store.read(|r| r.grants_of_proxy(&aid))?;
                if !grants.iter().any(|g| g.person_id == p) {
                    return Err(ApiError::new(ErrorKind::Forbidden, "この方の代理人としての権限がありません"));
                }
                Some(p.to_owned())
            }
        };
        if acct.person_id.is_none() && acting_for.is_none() {
            // A proxy-only account acts for the first person who granted it.
            let aid = acct.id.clone();
            let first = self.store.read(|r| r.grants_of_proxy(&aid))?.into_iter().next().map(|g| g.person_id);
            return self.finish_portal_login(acct, first, address);
        }
        self.finish_portal_login(acct, acting_for, address)
    }

    fn finish_portal_login(
        &self,
        acct: PortalRow,
        acting_for: Option<String>,
        address: Option<String>,
    ) -> Result<LoginOutcome, ApiError> {
        let out =
            self.new_session("portal", &acct.id, None, acting_for, PORTAL_SESSION_MS, acct.totp_secret.is_none())?;
        self.throttle_ok(Some(crate::login::account_key("portal", &acct.login)), address.as_deref())?;
        let a = self.login_record(
            address,
            "patient",
            &acct.login,
            AuditOutcome::Success,
            "password accepted; second factor pending",
        );
        self.store.write_accounts(vec![out.1], vec![a])?;
        Ok(out.0)
    }

    /// A patient grants a proxy (by the proxy's login) access to their records.
    pub fn grant_proxy(
        &self,
        ctx: &Ctx,
        proxy_login: &str,
        relation: &str,
        view_records: bool,
        manage_consent: bool,
        view_history: bool,
    ) -> Result<ProxyGrantRow, ApiError> {
        let me = own_portal(ctx, false)?;
        let l = proxy_login.to_owned();
        let proxy = self.store.read(|r| r.portal_by_login(&l))?.ok_or_else(|| {
            ApiError::new(ErrorKind::NotFound, format!("ログインID {proxy_login} の代理人アカウントが見つかりません"))
        })?;
        if proxy.id == me.account_id {
            return Err(ApiError::bad_request("ご自身を代理人にはできません"));
        }
        let g = ProxyGrantRow {
            id: crate::prepare::new_id(),
            proxy_account: proxy.id,
            person_id: me.person_id.clone(),
            relation: relation.into(),
            may_view_records: view_records,
            may_manage_consent: manage_consent,
            may_view_history: view_history,
            granted_by: me.account_id.clone(),
            created: now_ms(),
            revoked: None,
        };
        let mut a = self.audit_record(ctx, AuditAction::Create, "grant-proxy", AuditOutcome::Success);
        a.person = Some(me.person_id.clone());
        a.entities = vec![format!("proxy/{proxy_login}")];
        self.store.write_accounts(vec![AccountWrite::NewProxyGrant(g.clone())], vec![a])?;
        Ok(g)
    }

    /// A patient revokes a proxy grant.
    pub fn revoke_proxy(&self, ctx: &Ctx, grant_id: &str) -> Result<(), ApiError> {
        let me = own_portal(ctx, false)?;
        let p = me.person_id.clone();
        let grants = self.store.read(|r| r.grants_for_person(&p))?;
        if !grants.iter().any(|g| g.id == grant_id && g.revoked.is_none()) {
            return Err(ApiError::new(ErrorKind::NotFound, "その代理人の権限は見つかりません"));
        }
        let mut a = self.audit_record(ctx, AuditAction::Delete, "revoke-proxy", AuditOutcome::Success);
        a.person = Some(me.person_id);
        a.entities = vec![format!("proxy-grant/{grant_id}")];
        self.store
            .write_accounts(vec![AccountWrite::RevokeProxyGrant { id: grant_id.into(), at: now_ms() }], vec![a])?;
        Ok(())
    }

    /// The proxy grants of the logged-in patient.
    pub fn proxies(&self, ctx: &Ctx) -> Result<Vec<ProxyGrantRow>, ApiError> {
        let me = own_portal(ctx, false)?;
        Ok(self.store.read(|r| r.grants_for_person(&me.person_id))?)
    }

    /// The disclosure settings of the portal actor's person.
    pub fn consent_view(&self, ctx: &Ctx) -> Result<ConsentView, ApiError> {
        let me = own_portal(ctx, true)?;
        if let Some(rel) = &me.proxy_relation {
            let _ = rel;
            self.proxy_permission(&me, |g| g.may_manage_consent || g.may_view_records)?;
        }
        self.consent_view_of(&me.person_id)
    }

    fn consent_view_of(&self, person: &str) -> Result<ConsentView, ApiError> {
        let p = person.to_owned();
        let (stored, facilities_used) = self.store.read(|r| {
            let stored = r.consent(&p)?;
            let mut codes: BTreeSet<String> = r.treating_facilities(&p)?.into_iter().collect();
            for pid in r.patients_of_person(&p)? {
                codes.extend(r.facilities_used_by_patient(&pid)?);
            }
            let mut facs = Vec::new();
            for c in codes {
                if let Some(f) = r.facility(&c)? {
                    facs.push(f);
                }
            }
            Ok((stored, facs))
        })?;
        let (settings, version, updated) = match stored {
            Some((json, v, at, _)) => (
                serde_json::from_str::<ConsentSettings>(&json)
                    .map_err(|e| ApiError::internal(format!("consent json: {e}")))?,
                v,
                at,
            ),
            None => (ConsentSettings::default(), 0, 0),
        };
        let ctx = self.person_context(person, now_ms())?;
        let facilities = facilities_used
            .iter()
            .filter_map(|f| {
                let info = crate::access::facility_info(f)?;
                let open = matches!(
                    settings.verdict(&ctx.residence, &info, Profession::Doctor),
                    musubi_gate::Verdict::Open(_)
                );
                Some(FacilityUsed {
                    code: f.code.clone(),
                    name: f.name.clone(),
                    kind: info.class.label_ja().into(),
                    setting: settings.facilities.get(&f.code).copied(),
                    open_for_doctors: open,
                })
            })
            .collect();
        let residence = ResidenceView {
            prefecture: ctx.residence.prefecture,
            prefecture_name: musubi_domain::prefecture_name(ctx.residence.prefecture).unwrap_or("（未登録）").into(),
            area: ctx.residence.area.clone(),
        };
        let fhir = self.consent_resource(person, &settings, version, updated)?;
        Ok(ConsentView { settings, version, residence, facilities, fhir })
    }

    fn consent_resource(
        &self,
        person: &str,
        s: &ConsentSettings,
        version: i64,
        updated: i64,
    ) -> Result<Value, ApiError> {
        let p = person.to_owned();
        let patients = self.store.read(|r| r.patients_of_person(&p))?;
        let mut provisions = Vec::new();
        for (code, allow) in &s.facilities {
            provisions.push(json!({
                "type": if *allow { "permit" } else { "deny" },
                "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                           "reference": {"identifier": {"system": musubi_domain::systems::INSTITUTION_NUMBER, "value": code}}}]
            }));
        }
        for (prof, allow) in &s.professions {
            provisions.push(json!({"type": if *allow { "permit" } else { "deny" }, "actor": [{"role": {"text": prof}, "reference": {"display": prof}}]}));
        }
        Ok(json!({
            "resourceType": "Consent",
            "id": format!("consent-{person}"),
            "meta": {"versionId": version.to_string(), "lastUpdated": format_instant(updated)},
            "status": if s.closed { "inactive" } else { "active" },
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
            "patient": patients.first().map(|p| json!({"reference": format!("Patient/{p}")})).unwrap_or(Value::Null),
            "dateTime": format_instant(updated),
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}], "text": "居住地の二次医療圏内は包括同意、圏外は個別同意（Musubi 開示設定）"},
            "provision": {"type": if s.closed { "deny" } else { "permit" }, "provision": provisions},
            "extension": [{"url": "urn:musubi:consent-settings", "valueString": serde_json::to_string(s).unwrap_or_default()}]
        }))
    }

    /// Saves the disclosure settings (patient, or a proxy allowed to manage them). `version`
    /// is the version the caller saw. The gate's settings and the FHIR Consent are written in
    /// one transaction with the audit record.
    pub fn save_consent(&self, ctx: &Ctx, settings: ConsentSettings, version: i64) -> Result<ConsentView, ApiError> {
        let me = own_portal(ctx, true)?;
        if me.proxy_relation.is_some() {
            self.proxy_permission(&me, |g| g.may_manage_consent)?;
        }
        let now = now_ms();
        let json_text = serde_json::to_string(&settings).map_err(ApiError::internal)?;
        let resource = self.consent_resource(&me.person_id, &settings, version + 1, now)?;
        let p = me.person_id.clone();
        let patients = self.store.read(|r| r.patients_of_person(&p))?;
        let mut batch = musubi_store::WriteBatch::default();
        if let Some(patient) = patients.first() {
            let persons = crate::prepare::Persons::new(&self.store);
            let id = format!("consent-{}", me.person_id);
            let cur = self.store.current(ResourceType::Consent, &id)?;
            let (v, expect) = match &cur {
                Some(c) => (c.version + 1, musubi_store::Expect::Version(c.version)),
                None => (1, musubi_store::Expect::Absent),
            };
            let mut body = resource.clone();
            body["patient"] = json!({"reference": format!("Patient/{patient}")});
            let put = crate::prepare::prepare(
                crate::prepare::Prep {
                    persons: &persons,
                    actor: &Actor::Operator { name: "consent".into() },
                    rtype: ResourceType::Consent,
                    id,
                    version: v,
                    expect,
                    now,
                    bundle_key: None,
                    at: "Consent".into(),
                },
                body,
            )?;
            batch.puts.push(put);
        }
        let mut a = self.audit_record(ctx, AuditAction::Update, "consent", AuditOutcome::Success);
        a.person = Some(me.person_id.clone());
        a.entities = vec![format!("Consent/consent-{}", me.person_id)];
        a.outcome_text = Some(if settings.closed { "all closed".into() } else { "settings changed".into() });
        batch.audit.push(a);
        self.store.commit_with_accounts(
            batch,
            vec![AccountWrite::Consent {
                person_id: me.person_id.clone(),
                settings: json_text,
                version: version + 1,
                at: now,
                by: me.account_id.clone(),
            }],
        )?;
        self.consent_view_of(&me.person_id)
    }

    pub(crate) fn proxy_permission(
        &self,
        me: &PortalActor,
        ok: impl Fn(&ProxyGrantRow) -> bool,
    ) -> Result<(), ApiError> {
        let aid = me.account_id.clone();
        let grants = self.store.read(|r| r.grants_of_proxy(&aid))?;
        if grants.iter().any(|g| g.person_id == me.person_id && ok(g)) {
            Ok(())
        } else {
            Err(ApiError::new(ErrorKind::Forbidden, "代理人としてこの操作を行う権限がありません"))
        }
    }

    /// The access history of the portal actor's person, newest first, optionally within a
    /// period (epoch ms).
    pub fn access_history(
        &self,
        ctx: &Ctx,
        from: Option<i64>,
        to: Option<i64>,
        limit: i64,
    ) -> Result<Vec<HistoryEntry>, ApiError> {
        let me = own_portal(ctx, true)?;
        if me.proxy_relation.is_some() {
            self.proxy_permission(&me, |g| g.may_view_history)?;
        }
        let q = musubi_store::AuditQuery { person: Some(me.person_id.clone()), from, to, ..Default::default() };
        let (_, rows) = self.store.read(|r| r.audit_search(&q, 0, limit.clamp(1, 1000)))?;
        let facilities: std::collections::HashMap<String, String> =
            self.store.read(|r| r.facilities())?.into_iter().map(|f| (f.code, f.name)).collect();
        let mut out = Vec::new();
        let mut hidden_cache: std::collections::HashMap<String, Option<(musubi_domain::ResourceClass, bool)>> =
            std::collections::HashMap::new();
        for (seq, text) in rows {
            let Ok(rec) = serde_json::from_str::<AuditRecord>(&text) else { continue };
            if matches!(rec.agent.kind.as_str(), "patient" | "proxy") || rec.subtype == "login" {
                continue;
            }
            let mut what = BTreeSet::new();
            for e in &rec.entities {
                let mut parts = e.split('/');
                let (Some(t), Some(id)) = (parts.next(), parts.next()) else { continue };
                let Ok(rtype) = t.parse::<ResourceType>() else { continue };
                let key = format!("{t}/{id}");
                let info = match hidden_cache.get(&key) {
                    Some(i) => *i,
                    None => {
                        let iid = id.to_owned();
                        // Entries recorded before a rekey name the old id (the audit trail is
                        // never rewritten): the record is looked up under the id it moved to.
                        let i = self
                            .store
                            .read(|r| match r.current(rtype, &iid)? {
                                Some(c) => Ok(Some(c)),
                                None => match r.rekeyed_to(rtype, &iid)? {
                                    Some(new) => r.current(rtype, &new),
                                    None => Ok(None),
                                },
                            })?
                            .map(|c| (c.meta.class, c.meta.flags.contains(Flags::UNINFORMED)));
                        hidden_cache.insert(key, i);
                        i
                    }
                };
                // Items not told to the patient are not named to the patient or the proxy.
                if let Some((class, false)) = info {
                    what.insert(class.label_ja().to_owned());
                }
            }
            if what.is_empty() {
                what.insert("診療記録".into());
            }
            let (profession, who) = match (&rec.agent.profession, rec.agent.kind.as_str()) {
                (Some(p), "user") => {
                    let (code, name) = p.split_once('|').unwrap_or((p.as_str(), rec.agent.name.as_str()));
                    (code.parse::<Profession>().ok().map(|p| p.label_ja().to_owned()), name.to_owned())
                }
                (_, "system") => (None, format!("{}（システム連携）", rec.agent.name)),
                (_, "admin") | (_, "operator-cli") => (None, "運営事務局".to_owned()),
                _ => (None, rec.agent.name.clone()),
            };
            let why = match (&rec.purpose, rec.outcome) {
                (_, AuditOutcome::SeriousFailure) => "拒否",
                (AuditPurpose::Emergency(_), _) => "緊急",
                _ => "通常",
            };
            let action = match rec.action {
                AuditAction::Read => "閲覧",
                AuditAction::Create => "登録",
                AuditAction::Update => "更新",
                AuditAction::Delete => "削除",
                AuditAction::Execute => "操作",
            };
            out.push(HistoryEntry {
                seq,
                when: format_instant(rec.recorded),
                facility_name: rec.agent.facility.as_ref().and_then(|f| facilities.get(f).cloned()),
                facility: rec.agent.facility.clone(),
                profession,
                who,
                action: action.into(),
                what: what.into_iter().collect(),
                why: why.into(),
                reason: match &rec.purpose {
                    AuditPurpose::Emergency(r) => Some(r.clone()),
                    _ => None,
                },
            });
        }
        Ok(out)
    }

    /// Notices to the portal actor's person (newest first); marks them read.
    pub fn notifications(&self, ctx: &Ctx) -> Result<Vec<NotificationRow>, ApiError> {
        let me = own_portal(ctx, true)?;
        let p = me.person_id.clone();
        let list = self.store.read(|r| r.notifications(&p))?;
        if list.iter().any(|n| n.read_at.is_none()) && me.proxy_relation.is_none() {
            self.store.write_accounts(
                vec![AccountWrite::NotificationsRead { person_id: me.person_id, at: now_ms() }],
                Vec::new(),
            )?;
        }
        Ok(list)
    }

    /// The operator's list of emergency accesses to review.
    pub fn emergency_reviews(&self, ctx: &Ctx) -> Result<Vec<EmergencyRow>, ApiError> {
        require_privileged(ctx)?;
        Ok(self.store.read(|r| r.emergency_to_review())?)
    }

    /// The operator reviews an emergency access.
    pub fn review_emergency(&self, ctx: &Ctx, id: &str, note: &str) -> Result<(), ApiError> {
        require_privileged(ctx)?;
        let mut a = self.audit_record(ctx, AuditAction::Update, "review-break-glass", AuditOutcome::Success);
        a.entities = vec![format!("emergency/{id}")];
        a.outcome_text = Some(note.into());
        self.store.write_accounts(
            vec![AccountWrite::ReviewEmergency {
                id: id.into(),
                by: ctx.actor.name().into(),
                at: now_ms(),
                note: note.into(),
            }],
            vec![a],
        )?;
        Ok(())
    }

    /// The operator's audit report (ONC-style): records by period, user, patient, sortable
    /// by time (newest first by default), as rows ready to show or export.
    pub fn audit_report(
        &self,
        ctx: &Ctx,
        q: &AuditFilter,
        offset: i64,
        limit: i64,
        oldest_first: bool,
    ) -> Result<(i64, Vec<Value>), ApiError> {
        require_privileged(ctx)?;
        let q = musubi_store::AuditQuery::from(q.clone());
        let (total, rows) = self.store.read(|r| r.audit_search(&q, offset, limit.clamp(1, 5000)))?;
        let mut out: Vec<Value> = rows
            .into_iter()
            .filter_map(|(seq, text)| {
                let r: AuditRecord = serde_json::from_str(&text).ok()?;
                Some(json!({
                    "seq": seq,
                    "recorded": format_instant(r.recorded),
                    "agent": r.agent.name,
                    "agentKind": r.agent.kind,
                    "facility": r.agent.facility,
                    "profession": r.agent.profession,
                    "address": r.agent.address,
                    "action": r.action.code(),
                    "subtype": r.subtype,
                    "outcome": r.outcome.code(),
                    "outcomeText": r.outcome_text,
                    "purpose": match &r.purpose { AuditPurpose::Emergency(x) => format!("emergency: {x}"), AuditPurpose::Treatment => "treatment".into(), AuditPurpose::Operations => "operations".into(), AuditPurpose::PatientRequest => "patient".into() },
                    "patient": r.patient,
                    "person": r.person,
                    "entities": r.entities.len(),
                    "query": r.query,
                }))
            })
            .collect();
        if oldest_first {
            out.reverse();
        }
        let mut a = self.audit_record(ctx, AuditAction::Read, "audit-report", AuditOutcome::Success);
        a.query = Some(format!("{q:?}"));
        self.audit(vec![a])?;
        Ok((total, out))
    }

    /// Adds a facility to the registry (operator).
    pub fn register_facility(
        &self,
        ctx: &Ctx,
        row: impl Into<NewFacility>,
        cities: Vec<String>,
    ) -> Result<(), ApiError> {
        require_privileged(ctx)?;
        let row = musubi_store::FacilityRow::from(row.into());
        let code: musubi_domain::FacilityCode =
            row.code.parse().map_err(|e: musubi_domain::DomainError| ApiError::bad_request(e.to_string()))?;
        if musubi_gate::FacilityClass::from_code(&row.class).is_none() {
            return Err(ApiError::bad_request("施設の種類は hospital, clinic, dental, pharmacy, other のいずれかです"));
        }
        let mut writes = vec![];
        for c in cities {
            writes.push(AccountWrite::AreaCity { area: row.area.clone(), prefecture: row.prefecture, city: c });
        }
        writes.push(AccountWrite::Facility(row));
        let mut a = self.audit_record(ctx, AuditAction::Update, "register-facility", AuditOutcome::Success);
        a.entities = vec![format!("facility/{code}")];
        self.store.write_accounts(writes, vec![a])?;
        Ok(())
    }
}

/// A facility to add to the registry ([`Service::register_facility`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewFacility {
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

impl From<NewFacility> for musubi_store::FacilityRow {
    fn from(f: NewFacility) -> Self {
        musubi_store::FacilityRow {
            code: f.code,
            name: f.name,
            class: f.class,
            prefecture: f.prefecture,
            area: f.area,
            area_name: f.area_name,
            discloses: f.discloses,
            views: f.views,
        }
    }
}

impl From<musubi_store::FacilityRow> for NewFacility {
    fn from(f: musubi_store::FacilityRow) -> Self {
        NewFacility {
            code: f.code,
            name: f.name,
            class: f.class,
            prefecture: f.prefecture,
            area: f.area,
            area_name: f.area_name,
            discloses: f.discloses,
            views: f.views,
        }
    }
}

/// What the operator's audit report selects ([`Service::audit_report`]); `None`: any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// The agent's login or name.
    pub agent: Option<String>,
    /// The patient (Patient id).
    pub patient: Option<String>,
    /// The person (MPI id).
    pub person: Option<String>,
    /// The agent's facility.
    pub facility: Option<String>,
    /// The outcome code.
    pub outcome: Option<String>,
    /// The action code.
    pub action: Option<String>,
    /// Recorded at or after (epoch ms).
    pub from: Option<i64>,
    /// Recorded at or before (epoch ms).
    pub to: Option<i64>,
}

impl From<AuditFilter> for musubi_store::AuditQuery {
    fn from(f: AuditFilter) -> Self {
        musubi_store::AuditQuery {
            agent: f.agent,
            patient: f.patient,
            person: f.person,
            facility: f.facility,
            outcome: f.outcome,
            action: f.action,
            from: f.from,
            to: f.to,
            seq: None,
        }
    }
}

pub(crate) fn require_privileged(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.actor.is_privileged() {
        Ok(())
    } else if ctx.actor.is_bootstrap() {
        Err(ApiError::new(ErrorKind::Forbidden, musubi_gate::BOOTSTRAP_ONLY_JA))
    } else {
        Err(ApiError::new(ErrorKind::Forbidden, "この操作は運営管理者のみが行えます"))
    }
}

pub(crate) fn own_portal(ctx: &Ctx, proxy_ok: bool) -> Result<PortalActor, ApiError> {
    match &ctx.actor {
        Actor::Portal(p) if proxy_ok || p.proxy_relation.is_none() => Ok(p.clone()),
        Actor::Portal(_) => Err(ApiError::new(ErrorKind::Forbidden, "この操作はご本人のみが行えます")),
        _ => Err(ApiError::new(ErrorKind::Forbidden, "患者ポータルのログインが必要です")),
    }
}
