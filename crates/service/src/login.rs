//! What keeps logins from being guessed and sessions from outliving their use: the clock the
//! login checks read (injectable, so tests move time instead of sleeping), throttles per
//! account and per client address with growing delays, password hashing on its own bounded
//! pool of threads, and the operator's account lifecycle (disable / enable, reset a second
//! factor, end sessions), each audited under the operator's name.
//!
//! The rules:
//! - A wrong password, an unknown login and a locked or disabled account get the same
//!   message and cost the same Argon2 work; each counts against the login name and the
//!   client's address. After a few free failures each one doubles the wait (answered 429 with
//!   `Retry-After`, the server never sleeps); nobody can lock a clinician out for good.
//! - One-time codes: failures are counted in SQL and only a right code resets them (a right
//!   password does not); five in a row lock the account for 15 minutes (doubling with each
//!   further failure) and end every pending session. A code's time step is remembered and no
//!   step at or before it is accepted again.
//! - Sessions: completing the second factor issues a new token (the pending one dies); a
//!   session ends after [`DEFAULT_IDLE_MS`] without use besides its absolute end.

use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use musubi_domain::audit::{AuditAction, AuditOutcome};
use musubi_gate::Actor;
use musubi_store::{AccountWrite, Throttle, ThrottleRule};

use crate::{ApiError, Ctx, ErrorKind, Service};

/// The `profession` of an operator account (not a clinical profession: no facility, no gate
/// role; the session acts as [`Actor::Operator`]).
pub const OPERATOR_PROFESSION: &str = "operator";

/// How long a session may go unused (15 minutes).
pub const DEFAULT_IDLE_MS: i64 = 15 * 60 * 1000;
/// A session's last use is written at most this often (a write per request would be waste).
const TOUCH_EVERY_MS: i64 = 60 * 1000;

/// Failures per login name: 3 free, then 1 s doubling up to 5 minutes.
pub const ACCOUNT_THROTTLE: ThrottleRule =
    ThrottleRule { free: 3, base_ms: 1000, cap_ms: 5 * 60 * 1000, forget_ms: 24 * 3600 * 1000 };
/// Failures per client address (any login): 10 free, then 1 s doubling up to 15 minutes;
/// forgotten after a quiet hour (a hospital's staff may share one address: a morning's typos
/// must not slow everyone down all day; each success also takes one failure back).
pub const ADDRESS_THROTTLE: ThrottleRule =
    ThrottleRule { free: 10, base_ms: 1000, cap_ms: 15 * 60 * 1000, forget_ms: 3600 * 1000 };

/// Wrong one-time codes in a row before the account locks.
pub const MAX_SECOND_FACTOR_FAILURES: i64 = 5;
/// The first lock after [`MAX_SECOND_FACTOR_FAILURES`]; each further failure doubles it.
pub const SECOND_FACTOR_LOCK_MS: i64 = 15 * 60 * 1000;

/// How long the account stays locked after `failures` wrong codes in a row (None: not yet).
pub fn second_factor_lock_ms(failures: i64) -> Option<i64> {
    (failures >= MAX_SECOND_FACTOR_FAILURES).then(|| {
        let doublings = u32::try_from((failures - MAX_SECOND_FACTOR_FAILURES).clamp(0, 6)).unwrap_or(6);
        SECOND_FACTOR_LOCK_MS << doublings
    })
}

/// The time the login checks read (epoch ms).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(musubi_fhir::datetime::now_ms))
    }

    /// A clock that reads `f` (tests: a time they move forward).
    pub fn from_fn(f: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    /// Now.
    pub fn now(&self) -> i64 {
        (self.0)()
    }
}

/// A clock a test sets and moves (starts at the system time).
#[derive(Clone, Debug)]
pub struct TestClock(Arc<std::sync::atomic::AtomicI64>);

impl Default for TestClock {
    fn default() -> Self {
        TestClock(Arc::new(std::sync::atomic::AtomicI64::new(musubi_fhir::datetime::now_ms())))
    }
}

impl TestClock {
    /// Now, on this clock.
    pub fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Moves the clock forward.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// The clock for a service.
    pub fn clock(&self) -> Clock {
        let c = self.clone();
        Clock::from_fn(move || c.now())
    }
}

type HashJob = Box<dyn FnOnce() + Send>;

/// Argon2 work on its own few threads with a short queue: a flood of logins waits there (or is
/// refused with 503 when the queue is full) instead of taking every core and tens of MB of
/// memory per attempt from the rest of the server.
#[derive(Clone)]
pub(crate) struct HashPool {
    queue: SyncSender<HashJob>,
}

impl HashPool {
    fn new(threads: usize, queue: usize) -> HashPool {
        let (tx, rx) = sync_channel::<HashJob>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new().name(format!("musubi-hash-{i}")).spawn(move || {
                loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hashing thread");
            }
        }
        HashPool { queue: tx }
    }

    /// Runs `f` on the pool and waits for it.
    pub(crate) fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let job: HashJob = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::new(
                    ErrorKind::Unavailable,
                    "ログインが混み合っています。しばらくしてから再度お試しください。",
                ));
            }
            Err(TrySendError::Disconnected(_)) => return Err(ApiError::internal("password-hashing pool stopped")),
        }
        rx.recv().map_err(|_| ApiError::internal("password-hashing job lost"))
    }
}

/// The login side of a service: its clock, its hashing pool, its idle timeout.
#[derive(Clone)]
pub(crate) struct LoginGuard {
    pub(crate) clock: Clock,
    pub(crate) pool: HashPool,
    pub(crate) idle_ms: i64,
}

impl Default for LoginGuard {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        LoginGuard { clock: Clock::system(), pool: HashPool::new(cores.clamp(1, 4), 64), idle_ms: DEFAULT_IDLE_MS }
    }
}

/// The throttle key of a login name (a long one hashed: whatever is typed, the key stays small).
pub(crate) fn account_key(kind: &str, login: &str) -> String {
    if login.len() <= 64 {
        format!("login:{kind}:{login}")
    } else {
        format!("login:{kind}:#{}", musubi_fhir::sha256_hex(login.as_bytes()))
    }
}

/// The throttle key of a client address.
pub(crate) fn address_key(address: &str) -> String {
    format!("addr:{address}")
}

/// 429 until `until`.
pub(crate) fn too_many(now: i64, until: i64) -> ApiError {
    let secs = u32::try_from(((until - now).max(0) + 999) / 1000).unwrap_or(u32::MAX).max(1);
    ApiError::new(
        ErrorKind::TooManyRequests { retry_after_s: secs },
        format!("ログインの試行が続いたため、{secs}秒後まで受け付けません。時間をおいて再度お試しください。"),
    )
}

impl Service {
    /// Uses `clock` for logins and sessions (tests move time instead of sleeping).
    pub fn with_clock(mut self, clock: Clock) -> Service {
        self.guard.clock = clock;
        self
    }

    /// Ends a session after `ms` without use (default [`DEFAULT_IDLE_MS`]).
    pub fn with_idle_timeout(mut self, ms: i64) -> Service {
        self.guard.idle_ms = ms.max(1000);
        self
    }

    /// Now, on the service's clock.
    pub fn now(&self) -> i64 {
        self.guard.clock.now()
    }

    /// Counts a login attempt against the login name and the address; 429 while either waits.
    pub(crate) fn throttle(&self, kind: &str, login: &str, address: Option<&str>) -> Result<(), ApiError> {
        let now = self.now();
        let mut keys = vec![(account_key(kind, login), ACCOUNT_THROTTLE)];
        if let Some(a) = address {
            keys.push((address_key(a), ADDRESS_THROTTLE));
        }
        match self.store.throttle_attempt(keys, now)? {
            Throttle::Counted => Ok(()),
            Throttle::WaitUntil(until) => Err(too_many(now, until)),
        }
    }

    /// Counts a second-factor attempt against the address only (the account has its own
    /// count and lock for codes).
    pub(crate) fn throttle_address(&self, address: Option<&str>) -> Result<(), ApiError> {
        let Some(a) = address else { return Ok(()) };
        let now = self.now();
        match self.store.throttle_attempt(vec![(address_key(a), ADDRESS_THROTTLE)], now)? {
            Throttle::Counted => Ok(()),
            Throttle::WaitUntil(until) => Err(too_many(now, until)),
        }
    }

    /// Gives a counted attempt back after it succeeded.
    pub(crate) fn throttle_ok(&self, account: Option<String>, address: Option<&str>) -> Result<(), ApiError> {
        self.store.throttle_succeeded(account.into_iter().collect(), address.map(address_key).into_iter().collect())?;
        Ok(())
    }

    /// Ends every session of the caller's own account ("log out everywhere").
    pub fn logout_everywhere(&self, ctx: &Ctx) -> Result<(), ApiError> {
        let (kind, subject) = match &ctx.actor {
            Actor::User(u) => ("user", u.user_id.clone()),
            Actor::Portal(p) => ("portal", p.account_id.clone()),
            Actor::Operator { name } if self.store.read(|r| r.user_by_login(name))?.is_some() => {
                ("user", self.user_id_of(name)?)
            }
            _ => return Err(ApiError::new(ErrorKind::Forbidden, "ログインセッションで利用してください")),
        };
        let mut a = self.audit_record(ctx, AuditAction::Execute, "logout-everywhere", AuditOutcome::Success);
        a.entities = vec![format!("{kind}/{subject}")];
        self.store.write_accounts(vec![AccountWrite::EndSessionsOf { kind: kind.into(), subject }], vec![a])?;
        Ok(())
    }

    fn user_id_of(&self, login: &str) -> Result<String, ApiError> {
        let l = login.to_owned();
        self.store
            .read(|r| r.user_by_login(&l))?
            .map(|u| u.id)
            .ok_or_else(|| ApiError::new(ErrorKind::NotFound, format!("利用者 {login} は登録されていません")))
    }

    fn require_operator(ctx: &Ctx) -> Result<(), ApiError> {
        if ctx.actor.is_privileged() {
            Ok(())
        } else if ctx.actor.is_bootstrap() {
            Err(ApiError::new(ErrorKind::Forbidden, musubi_gate::BOOTSTRAP_ONLY_JA))
        } else {
            Err(ApiError::new(ErrorKind::Forbidden, "この操作は運営管理者のみが行えます"))
        }
    }

    /// Disables a clinician's or staff account (every session of it ends at once) or enables
    /// it again (operator).
    pub fn set_user_disabled(&self, ctx: &Ctx, login: &str, disabled: bool) -> Result<(), ApiError> {
        Self::require_operator(ctx)?;
        let id = self.user_id_of(login)?;
        let subtype = if disabled { "disable-user" } else { "enable-user" };
        let mut a = self.audit_record(ctx, AuditAction::Update, subtype, AuditOutcome::Success);
        a.entities = vec![format!("user/{login}")];
        self.store.write_accounts(vec![AccountWrite::Disabled { portal: false, id, disabled }], vec![a])?;
        Ok(())
    }

    /// Forgets a user's second factor: the user enrols a new authenticator at the next login;
    /// every session ends (operator).
    pub fn reset_user_second_factor(&self, ctx: &Ctx, login: &str) -> Result<(), ApiError> {
        Self::require_operator(ctx)?;
        let id = self.user_id_of(login)?;
        let mut a = self.audit_record(ctx, AuditAction::Update, "reset-second-factor", AuditOutcome::Success);
        a.entities = vec![format!("user/{login}")];
        self.store.write_accounts(
            vec![
                AccountWrite::ResetSecondFactor { portal: false, id: id.clone() },
                AccountWrite::EndSessionsOf { kind: "user".into(), subject: id },
            ],
            vec![a],
        )?;
        Ok(())
    }

    /// Sets a new password for a user (the operator hands it over; the user chooses their own
    /// at the next login; every session ends).
    pub fn reset_user_password(&self, ctx: &Ctx, login: &str, password: &str) -> Result<(), ApiError> {
        Self::require_operator(ctx)?;
        crate::credentials::check_password_rule(password)?;
        let id = self.user_id_of(login)?;
        let hash = self.hash_password_pooled(password)?;
        let mut a = self.audit_record(ctx, AuditAction::Update, "reset-password", AuditOutcome::Success);
        a.entities = vec![format!("user/{login}")];
        self.store.write_accounts(
            vec![
                AccountWrite::Password { portal: false, id: id.clone(), hash },
                AccountWrite::MustChangePassword { id: id.clone(), on: true },
                AccountWrite::EndSessionsOf { kind: "user".into(), subject: id },
            ],
            vec![a],
        )?;
        Ok(())
    }

    /// Ends every session of a user (operator).
    pub fn revoke_user_sessions(&self, ctx: &Ctx, login: &str) -> Result<(), ApiError> {
        Self::require_operator(ctx)?;
        let id = self.user_id_of(login)?;
        let mut a = self.audit_record(ctx, AuditAction::Execute, "revoke-sessions", AuditOutcome::Success);
        a.entities = vec![format!("user/{login}")];
        self.store.write_accounts(vec![AccountWrite::EndSessionsOf { kind: "user".into(), subject: id }], vec![a])?;
        Ok(())
    }

    /// Creates a named operator account (password + TOTP, like a clinician's, but acting as
    /// the network's operator with no facility). The operator chooses their own password and
    /// enrols their own authenticator at the first login. Allowed to operators, and to the
    /// bootstrap token while no operator exists (that is all the bootstrap token may do). Once
    /// an operator exists every administrator (bootstrap) token is revoked: from then on
    /// operators act under their own names.
    pub fn create_operator(&self, ctx: &Ctx, login: &str, name: &str, password: &str) -> Result<String, ApiError> {
        self.create_operator_with(ctx, login, name, password, None)
    }

    /// Creates a named operator account with an authenticator key handed over and the given
    /// password kept (the demo prints both, like its clinicians'); otherwise as
    /// [`Service::create_operator`].
    pub fn create_operator_enrolled(
        &self,
        ctx: &Ctx,
        login: &str,
        name: &str,
        password: &str,
    ) -> Result<crate::credentials::Enrolled, ApiError> {
        let secret = crate::credentials::new_totp_secret()?;
        let id = self.create_operator_with(ctx, login, name, password, Some(secret.clone()))?;
        Ok(crate::credentials::Enrolled {
            id,
            totp_uri: crate::credentials::totp_uri(&secret, login)?,
            totp_secret: secret,
        })
    }

    /// Whether a named operator account exists (then the bootstrap token has no use).
    pub fn operator_exists(&self) -> Result<bool, ApiError> {
        Ok(self.store.read(|r| r.users())?.iter().any(|u| u.profession == OPERATOR_PROFESSION))
    }

    fn create_operator_with(
        &self,
        ctx: &Ctx,
        login: &str,
        name: &str,
        password: &str,
        secret: Option<String>,
    ) -> Result<String, ApiError> {
        if ctx.actor.is_bootstrap() {
            // The bootstrap token makes the first operator only (a token still cached for a
            // few seconds after its revocation cannot make a second one).
            if self.operator_exists()? {
                return Err(ApiError::new(ErrorKind::Forbidden, musubi_gate::BOOTSTRAP_ONLY_JA));
            }
        } else {
            Self::require_operator(ctx)?;
        }
        crate::credentials::check_password_rule(password)?;
        if login.trim().is_empty() || login.len() > 64 || login.chars().any(char::is_whitespace) {
            return Err(ApiError::bad_request("ログインIDは空白を含まない64文字以内にしてください"));
        }
        let l = login.to_owned();
        if self.store.read(|r| r.user_by_login(&l))?.is_some() {
            return Err(ApiError::new(ErrorKind::Conflict, format!("ログインID {login} は既に使われています")));
        }
        let id = crate::prepare::new_id();
        // An operator handed a key keeps the password given with it; one who enrols their own
        // authenticator also chooses their own password.
        let self_chosen = secret.is_none();
        let row = musubi_store::UserRow {
            id: id.clone(),
            login: login.into(),
            name: name.into(),
            kana: String::new(),
            profession: OPERATOR_PROFESSION.into(),
            password_hash: self.hash_password_pooled(password)?,
            totp_secret: secret.map(|s| self.seal_secret(&s)).transpose()?,
            failed_logins: 0,
            locked_until: None,
            disabled: false,
            created: musubi_fhir::datetime::now_ms(),
            facilities: Vec::new(),
            must_change_password: self_chosen,
        };
        let mut a = self.audit_record(ctx, AuditAction::Create, "create-operator", AuditOutcome::Success);
        a.entities = vec![format!("operator/{login}")];
        self.store.write_accounts(vec![AccountWrite::NewUser(row)], vec![a])?;
        let n = self.store.revoke_admin_tokens()?;
        if n > 0 {
            tracing::info!(revoked = n, "an operator exists: administrator tokens revoked");
        }
        Ok(id)
    }

    /// The operator's actions on a patient's or proxy's portal account: `disable` (its
    /// sessions end at once), `enable`, `revoke-sessions`, `reset-second-factor` (a lost phone:
    /// they enrol again at the next login). Audited under the operator's name.
    pub fn portal_account_action(&self, ctx: &Ctx, login: &str, action: &str) -> Result<(), ApiError> {
        Self::require_operator(ctx)?;
        let l = login.to_owned();
        let id = self.store.read(|r| r.portal_by_login(&l))?.map(|a| a.id).ok_or_else(|| {
            ApiError::new(ErrorKind::NotFound, format!("ポータルのアカウント {login} は登録されていません"))
        })?;
        let end = AccountWrite::EndSessionsOf { kind: "portal".into(), subject: id.clone() };
        let (subtype, writes) = match action {
            "disable" => ("disable-portal-account", vec![AccountWrite::Disabled { portal: true, id, disabled: true }]),
            "enable" => ("enable-portal-account", vec![AccountWrite::Disabled { portal: true, id, disabled: false }]),
            "revoke-sessions" => ("revoke-portal-sessions", vec![end]),
            "reset-second-factor" => {
                ("reset-portal-second-factor", vec![AccountWrite::ResetSecondFactor { portal: true, id }, end])
            }
            other => {
                return Err(ApiError::new(
                    ErrorKind::NotFound,
                    format!(
                        "アカウントへの操作 {other} はありません（disable, enable, revoke-sessions, reset-second-factor）"
                    ),
                ));
            }
        };
        let mut a = self.audit_record(ctx, AuditAction::Update, subtype, AuditOutcome::Success);
        a.entities = vec![format!("portal/{login}")];
        self.store.write_accounts(writes, vec![a])?;
        Ok(())
    }

    /// An Argon2id hash made on the hashing pool.
    pub(crate) fn hash_password_pooled(&self, password: &str) -> Result<String, ApiError> {
        let p = password.to_owned();
        self.guard.pool.run(move || crate::credentials::hash_password(&p))?
    }

    /// An Argon2id check made on the hashing pool.
    pub(crate) fn verify_password_pooled(&self, password: &str, hash: &str) -> Result<bool, ApiError> {
        let (p, h) = (password.to_owned(), hash.to_owned());
        self.guard.pool.run(move || crate::credentials::verify_password(&p, &h))
    }

    /// Whether a session's last recorded use is too long ago; records this use when the last
    /// record is older than a minute.
    pub(crate) fn session_idle(
        &self,
        token_hash: &str,
        last_seen: i64,
        created: i64,
        now: i64,
    ) -> Result<bool, ApiError> {
        let seen = if last_seen > 0 { last_seen } else { created };
        if now - seen > self.guard.idle_ms {
            self.store.write_accounts(vec![AccountWrite::EndSession(token_hash.to_owned())], Vec::new())?;
            return Ok(true);
        }
        if now - seen >= TOUCH_EVERY_MS {
            self.store.touch_session(token_hash.to_owned(), now)?;
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_grow_and_stop_at_their_cap() {
        assert_eq!(ACCOUNT_THROTTLE.delay_ms(3), 0);
        assert_eq!(ACCOUNT_THROTTLE.delay_ms(4), 1000);
        assert_eq!(ACCOUNT_THROTTLE.delay_ms(5), 2000);
        assert_eq!(ACCOUNT_THROTTLE.delay_ms(60), 5 * 60 * 1000);
        assert_eq!(ADDRESS_THROTTLE.delay_ms(10), 0);
        assert_eq!(ADDRESS_THROTTLE.delay_ms(11), 1000);
    }

    #[test]
    fn second_factor_locks_grow() {
        assert_eq!(second_factor_lock_ms(4), None);
        assert_eq!(second_factor_lock_ms(5), Some(SECOND_FACTOR_LOCK_MS));
        assert_eq!(second_factor_lock_ms(6), Some(2 * SECOND_FACTOR_LOCK_MS));
        assert_eq!(second_factor_lock_ms(100), Some(64 * SECOND_FACTOR_LOCK_MS));
    }

    #[test]
    fn the_pool_runs_jobs() {
        let p = HashPool::new(2, 4);
        assert_eq!(p.run(|| 6 * 7).unwrap(), 42);
    }
}
