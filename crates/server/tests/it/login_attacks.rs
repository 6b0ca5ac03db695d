//! Issue 12 (points 2–4) through the real server, on both stores: guessing one-time codes
//! across rounds of right passwords, concurrent guesses, a replayed code, throttles per login
//! name and per client address with growing delays (429 + Retry-After, never a lock a stranger
//! can keep a clinician out with), one message for unknown / wrong / locked / disabled, a new
//! token when the second factor completes, the idle timeout, log out everywhere, and the
//! operator's actions on a user (disable ends the sessions at once, reset of the password and
//! of the second factor with enrolment at the next login, revoke sessions). Time moves on a
//! test clock injected into the service: nothing sleeps.

use crate::common::*;
use musubi_service::login::TestClock;
use musubi_service::people::totp_code_at;
use musubi_store::Store;
use reqwest::Method;
use serde_json::json;

const HOSP: &str = "1318814790";
const PW: &str = "Musubi-pass-2026";
const MIN: i64 = 60_000;

struct World {
    s: TestServer,
    clock: TestClock,
}

impl World {
    fn start(store: Store, dir: tempfile::TempDir, base_url: Option<&str>) -> World {
        let clock = TestClock::default();
        let c = clock.clock();
        let config = musubi_server::ServerConfig {
            body_limit: 2 * 1024 * 1024,
            base_url: base_url.map(str::to_owned),
            ..Default::default()
        };
        let s = TestServer::start_with_service(store, dir, config, move |svc| svc.with_clock(c));
        let admin = s.client(&s.admin);
        let r = api(
            &admin,
            Method::POST,
            "/admin/facilities",
            Some(json!({"code": HOSP, "name": "東京結び病院", "class": "hospital", "prefecture": 13, "area": "1301"})),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        World { s, clock }
    }

    fn admin(&self) -> Client {
        self.s.client(&self.s.admin)
    }

    /// Moves the clock forward, in steps the operator's session survives (it is used after
    /// each, as an operator at work would): only the sessions under test go idle.
    fn advance_ms(&self, ms: i64) {
        let mut left = ms;
        while left > 0 {
            let step = left.min(10 * MIN);
            self.clock.advance_ms(step);
            left -= step;
            let me = api(&self.admin(), Method::GET, "/me", None);
            assert_eq!(me.status, 200, "the operator's session: {}", me.text);
        }
    }

    /// A doctor; returns the TOTP secret.
    fn user(&self, login: &str) -> String {
        let r = api(
            &self.admin(),
            Method::POST,
            "/admin/users",
            Some(
                json!({"login": login, "name": "結 一郎", "profession": "doctor", "facilities": [HOSP], "password": PW}),
            ),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["totp_secret"].as_str().unwrap().to_owned()
    }

    fn password(&self, login: &str, password: &str) -> Resp {
        api(&anon(&self.s), Method::POST, "/login", Some(json!({"login": login, "password": password})))
    }

    /// The pending token after a right password.
    fn pending(&self, login: &str) -> String {
        let r = self.password(login, PW);
        assert_eq!(r.status, 200, "password step of {login}: {}", r.text);
        assert_eq!(r.body["needs_second_factor"], true);
        r.body["token"].as_str().unwrap().to_owned()
    }

    fn code(&self, token: &str, code: &str) -> Resp {
        api(&self.s.client(token), Method::POST, "/login/totp", Some(json!({"code": code})))
    }

    fn code_now(&self, secret: &str) -> String {
        totp_code_at(secret, self.clock.now()).unwrap()
    }

    /// A complete login; returns the session token. Moves the clock to the next 30-second step
    /// first, so that two logins of one account in a test never share a code.
    fn login(&self, login: &str, secret: &str) -> String {
        self.clock.advance_ms(30_000);
        let p = self.pending(login);
        let r = self.code(&p, &self.code_now(secret));
        assert_eq!(r.status, 200, "second factor of {login}: {}", r.text);
        r.body["token"].as_str().unwrap().to_owned()
    }

    fn status_with(&self, token: &str) -> u16 {
        self.s.client(token).get("Patient?_count=1").status
    }

    fn user_action(&self, login: &str, action: &str, body: Option<serde_json::Value>) -> Resp {
        api(&self.admin(), Method::POST, &format!("/admin/users/{login}/{action}"), body.or(Some(json!({}))))
    }
}

fn wrong_code(right: &str) -> String {
    // A six-digit code that is not the right one (nor, by construction, any neighbour's).
    let n: u32 = right.parse().unwrap();
    format!("{:06}", (n + 500_000) % 1_000_000)
}

/// Runs `scenario` on SQLite, and on PostgreSQL when `MUSUBI_TEST_POSTGRES` is set.
fn on_both_stores(name: &str, scenario: fn(&World)) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).unwrap();
    scenario(&World::start(store, dir, None));
    if std::env::var("MUSUBI_TEST_POSTGRES").is_err() {
        eprintln!("{name}: MUSUBI_TEST_POSTGRES is not set; PostgreSQL skipped");
        return;
    }
    let db = FreshDb::new(&format!("musubi_login_{name}"));
    {
        let store = Store::open_postgres(&db.url).unwrap();
        scenario(&World::start(store, tempfile::tempdir().unwrap(), None));
    }
}

/// Three rounds of "right password, four wrong codes": a right password does not reset the
/// count, so the fifth wrong code locks the account, ends every pending session, and the lock
/// holds at every step until it runs out.
fn guessing_codes_across_rounds_locks(w: &World) {
    let secret = w.user("dr-guess");
    let unknown = w.password("nobody-at-all", PW);
    let p1 = w.pending("dr-guess");
    for _ in 0..4 {
        let r = w.code(&p1, &wrong_code(&w.code_now(&secret)));
        assert_eq!(r.status, 401, "{}", r.text);
        assert!(r.diagnostics().contains("ワンタイムコード"), "{}", r.text);
    }
    // Round two: the right password again; two pending sessions.
    let p2 = w.pending("dr-guess");
    let p3 = w.pending("dr-guess");
    let r = w.code(&p2, &wrong_code(&w.code_now(&secret)));
    assert_eq!(r.status, 401, "the fifth wrong code: {}", r.text);
    // Locked: every pending session is gone, even the right code opens nothing.
    for p in [&p1, &p2, &p3] {
        let r = w.code(p, &w.code_now(&secret));
        assert_eq!(r.status, 401, "a pending session survived the lock: {}", r.text);
        assert_eq!(w.status_with(p), 401);
    }
    // Round three: the right password says exactly what a wrong one or an unknown login says.
    let locked = w.password("dr-guess", PW);
    let wrong = w.password("dr-guess", "Wrong-pass-2026");
    assert_eq!(locked.status, 401, "{}", locked.text);
    assert_eq!(locked.diagnostics(), unknown.diagnostics());
    assert_eq!(wrong.diagnostics(), unknown.diagnostics());
    // After the lock (15 minutes) the account works again, and a right code clears the count.
    w.advance_ms(16 * MIN);
    let token = w.login("dr-guess", &secret);
    assert_eq!(w.status_with(&token), 200);
    // The lock and its end are in the audit trail.
    let r = w.admin().get("AuditEvent?agent=dr-guess&outcome=8");
    assert!(r.text.contains("locked"), "{}", r.text);
}

#[test]
fn guessing_codes_across_rounds_locks_the_account() {
    on_both_stores("rounds", guessing_codes_across_rounds_locks);
}

/// Wrong codes sent at once are each counted (the count is updated in SQL): the account ends up
/// locked.
fn concurrent_guesses(w: &World) {
    let secret = w.user("dr-race");
    let p = w.pending("dr-race");
    let wrong = wrong_code(&w.code_now(&secret));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| w.code(&p, &wrong).status)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    // Locked: a new pending session is refused outright and the right code does nothing.
    let r = w.password("dr-race", PW);
    assert_eq!(r.status, 401, "eight concurrent wrong codes must lock the account: {}", r.text);
}

#[test]
fn concurrent_guesses_are_all_counted() {
    on_both_stores("race", concurrent_guesses);
}

/// A code is accepted once: the same code (same time step) is refused on a new login; the next
/// step's code works.
fn replay(w: &World) {
    let secret = w.user("dr-replay");
    let code = w.code_now(&secret);
    let p = w.pending("dr-replay");
    let r = w.code(&p, &code);
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.body["token"].as_str().unwrap().to_owned();
    assert_eq!(api(&w.s.client(&token), Method::POST, "/logout", None).status, 200);
    let again = w.pending("dr-replay");
    let r = w.code(&again, &code);
    assert_eq!(r.status, 401, "a used code must not open a second session: {}", r.text);
    // The previous step's code (still inside the skew window) is refused too.
    w.advance_ms(30_000);
    let r = w.code(&again, &code);
    assert_eq!(r.status, 401, "an earlier step's code: {}", r.text);
    let r = w.code(&again, &w.code_now(&secret));
    assert_eq!(r.status, 200, "the next step's code: {}", r.text);
    let r = w.admin().get("AuditEvent?agent=dr-replay&outcome=8");
    assert!(r.text.contains("already used"), "{}", r.text);
}

#[test]
fn a_used_code_is_refused() {
    on_both_stores("replay", replay);
}

/// Password failures slow down, per login name and per address, with growing delays: 429 with
/// Retry-After while waiting, and the password is not even checked then. No lock: after the
/// wait the right password works; another address is not slowed by this one's failures.
fn throttling(w: &World) {
    let secret = w.user("dr-slow");
    for i in 0..4 {
        let r = w.password("dr-slow", "Wrong-pass-2026");
        assert_eq!(r.status, 401, "failure {i}: {}", r.text);
    }
    let r = w.password("dr-slow", PW);
    assert_eq!(r.status, 429, "after 4 failures the login name waits: {}", r.text);
    assert_eq!(r.headers["retry-after"], "1");
    w.advance_ms(1000);
    assert_eq!(w.password("dr-slow", "Wrong-pass-2026").status, 401);
    let r = w.password("dr-slow", PW);
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "2", "the wait doubles");
    w.advance_ms(2000);
    // The right password after the wait: no lock.
    let p = w.pending("dr-slow");
    let r = w.code(&p, &w.code_now(&secret));
    assert_eq!(r.status, 200, "{}", r.text);
    // ... and the login name starts again from zero.
    assert_eq!(w.password("dr-slow", "Wrong-pass-2026").status, 401);

    // Per address: many login names from one address (credential stuffing). This address has
    // 6 failures so far; 10 are free, then it waits whatever the login.
    for i in 0..5 {
        let r = w.password(&format!("stuffed-{i}"), "Wrong-pass-2026");
        assert_eq!(r.status, 401, "stuffing attempt {i}: {}", r.text);
    }
    let r = w.password("stuffed-last", "Wrong-pass-2026");
    assert_eq!(r.status, 429, "the address waits: {}", r.text);
    assert!(r.headers.get("retry-after").is_some());
    // The clinician, from another address, is not kept out by that.
    let other =
        reqwest::blocking::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    let url = w.s.base.replace("/fhir", "/api/login");
    let r = other.post(&url).json(&json!({"login": "dr-slow", "password": PW})).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "another address logs in");
}

#[test]
fn failures_are_throttled_not_locked() {
    on_both_stores("throttle", throttling);
}

/// The second factor completes under a new token: the pending one is dead; the cookie carries
/// the new one. Sessions end after 15 minutes unused, and on "log out everywhere".
fn sessions(w: &World) {
    let secret = w.user("dr-session");
    let p = w.pending("dr-session");
    assert_eq!(w.status_with(&p), 401, "a pending session opens nothing");
    let r = w.code(&p, &w.code_now(&secret));
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.body["token"].as_str().unwrap().to_owned();
    assert_ne!(token, p, "a new token");
    let cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with(&format!("musubi_session={token};")), "{cookie}");
    assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");
    assert_eq!(w.status_with(&token), 200);
    assert_eq!(w.status_with(&p), 401, "the pending token died");
    assert_eq!(w.code(&p, &w.code_now(&secret)).status, 401);

    // Idle timeout: used every 14 minutes it lives; 16 minutes unused it ends.
    w.advance_ms(14 * MIN);
    assert_eq!(w.status_with(&token), 200);
    w.advance_ms(14 * MIN);
    assert_eq!(w.status_with(&token), 200, "use keeps the session alive");
    w.advance_ms(16 * MIN);
    assert_eq!(w.status_with(&token), 401, "idle for 16 minutes");

    // Log out everywhere.
    let a = w.login("dr-session", &secret);
    let b = w.login("dr-session", &secret);
    assert_eq!(w.status_with(&a), 200);
    assert_eq!(w.status_with(&b), 200);
    let r = api(&w.s.client(&a), Method::POST, "/logout/everywhere", None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(w.status_with(&a), 401);
    assert_eq!(w.status_with(&b), 401, "the other device's session ended too");
}

#[test]
fn sessions_rotate_idle_out_and_end_everywhere() {
    on_both_stores("sessions", sessions);
}

/// The operator disables a user: their session ends at once and they cannot log in (with the
/// same message as a wrong password); enabled again, they can. Reset password, reset second
/// factor (the user enrols a new authenticator at the next login; the secret is shown to them
/// only), revoke sessions: each ends the sessions and is audited under the operator's name.
fn operator_actions(w: &World) {
    let secret = w.user("dr-ops");
    let token = w.login("dr-ops", &secret);
    assert_eq!(w.status_with(&token), 200);
    let unknown = w.password("nobody-here", PW);

    let r = w.user_action("dr-ops", "disable", None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(w.status_with(&token), 401, "a disabled user's session ends at once");
    let r = w.password("dr-ops", PW);
    assert_eq!(r.status, 401);
    assert_eq!(r.diagnostics(), unknown.diagnostics(), "disabled says what a wrong password says");
    assert_eq!(w.user_action("dr-ops", "enable", None).status, 200);
    let token = w.login("dr-ops", &secret);
    assert_eq!(w.status_with(&token), 200);

    // Revoke sessions.
    assert_eq!(w.user_action("dr-ops", "revoke-sessions", None).status, 200);
    assert_eq!(w.status_with(&token), 401);

    // Reset the password.
    let token = w.login("dr-ops", &secret);
    let r = w.user_action("dr-ops", "reset-password", Some(json!({"password": "Another-pass-2026"})));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(w.status_with(&token), 401, "a reset password ends the sessions");
    assert_eq!(w.password("dr-ops", PW).status, 401);
    let r = w.password("dr-ops", "Another-pass-2026");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["needs_new_password"], true, "an operator-set password is changed at the next login");
    let bad = w.user_action("dr-ops", "reset-password", Some(json!({"password": "short"})));
    assert_eq!(bad.status, 400, "{}", bad.text);

    // Reset the second factor: the old authenticator no longer works; the user enrols anew.
    assert_eq!(w.user_action("dr-ops", "reset-second-factor", None).status, 200);
    w.advance_ms(30_000);
    let r = w.password("dr-ops", "Another-pass-2026");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["needs_enrolment"], true, "{}", r.text);
    let p = r.body["token"].as_str().unwrap().to_owned();
    assert_eq!(w.code(&p, &w.code_now(&secret)).status, 401, "no code before enrolment");
    let e = api(&w.s.client(&p), Method::POST, "/login/totp/enrol", None);
    assert_eq!(e.status, 200, "{}", e.text);
    let new_secret = e.body["totp_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(api(&w.s.client(&p), Method::POST, "/login/totp/enrol", None).status, 409, "enrolled once");
    // The user chooses their own password before the login can complete.
    let r = w.code(&p, &w.code_now(&new_secret));
    assert_eq!(r.status, 401, "not before a new password: {}", r.text);
    let choose = |pw: &str| api(&w.s.client(&p), Method::POST, "/login/password", Some(json!({"password": pw})));
    assert_eq!(choose("Another-pass-2026").status, 400, "not the one the operator set");
    assert_eq!(choose("short").status, 400);
    let r = choose("Chosen-pass-2026");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(choose("Chosen-pass-2027").status, 409, "chosen once");
    w.advance_ms(30_000);
    assert_eq!(w.code(&p, &w.code_now(&secret)).status, 401, "the old authenticator is dead");
    let r = w.code(&p, &w.code_now(&new_secret));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(w.status_with(r.body["token"].as_str().unwrap()), 200);

    assert_eq!(w.password("dr-ops", "Another-pass-2026").status, 401, "the operator's password is gone");
    assert_eq!(w.password("dr-ops", "Chosen-pass-2026").status, 200);

    // Only an operator may do this, and each action is audited under the operator's name.
    let doctor = w.s.client(r.body["token"].as_str().unwrap());
    assert_eq!(api(&doctor, Method::POST, "/admin/users/dr-ops/disable", Some(json!({}))).status, 403);
    assert_eq!(w.user_action("no-such-user", "disable", None).status, 404);
    let report = api(&w.admin(), Method::GET, &format!("/admin/audit-report?user={OPERATOR_LOGIN}&limit=100"), None);
    assert_eq!(report.status, 200, "{}", report.text);
    for subtype in ["disable-user", "enable-user", "revoke-sessions", "reset-password", "reset-second-factor"] {
        assert!(report.text.contains(subtype), "{subtype} not audited: {}", report.text);
    }
}

#[test]
fn operators_disable_reset_and_revoke() {
    on_both_stores("operator", operator_actions);
}

/// With TLS (an https public URL) the session cookie is a `Secure` `__Host-` cookie, and only
/// that name is read.
#[test]
fn cookies_are_host_only_and_secure_with_tls() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).unwrap();
    let w = World::start(store, dir, Some("https://musubi.example.jp/fhir"));
    let secret = w.user("dr-tls");
    let p = w.pending("dr-tls");
    let r = w.code(&p, &w.code_now(&secret));
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.body["token"].as_str().unwrap();
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with(&format!("__Host-musubi_session={token};")), "{cookie}");
    assert!(cookie.contains("; Secure") && cookie.contains("Path=/") && !cookie.contains("Domain"), "{cookie}");
    let http = reqwest::blocking::Client::new();
    let get = |name: &str| {
        http.get(format!("{}/Patient?_count=1", w.s.base)).header("cookie", format!("{name}={token}")).send().unwrap()
    };
    assert_eq!(get("__Host-musubi_session").status().as_u16(), 200);
    assert_eq!(get("musubi_session").status().as_u16(), 401, "a plain cookie could be planted by a sibling host");
}

/// A user created to enrol themselves: the operator never sees a key; the first login enrols
/// one (shown only to the person logging in) and completes with its code.
fn self_enrolment(w: &World) {
    let r = api(
        &w.admin(),
        Method::POST,
        "/admin/users",
        Some(
            json!({"login": "dr-self", "name": "結 二郎", "profession": "doctor", "facilities": [HOSP], "password": PW, "self_enrol": true}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body.get("totp_secret").is_none() && !r.text.contains("otpauth"), "{}", r.text);
    let r = w.password("dr-self", PW);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["needs_enrolment"], true);
    assert_eq!(r.body["needs_new_password"], true, "they choose their own password too");
    let p = r.body["token"].as_str().unwrap().to_owned();
    assert_eq!(w.status_with(&p), 401, "nothing opens before the second factor");
    let r = api(&w.s.client(&p), Method::POST, "/login/password", Some(json!({"password": "Jiro-own-pass-1"})));
    assert_eq!(r.status, 200, "{}", r.text);
    let e = api(&w.s.client(&p), Method::POST, "/login/totp/enrol", None);
    assert_eq!(e.status, 200, "{}", e.text);
    assert_eq!(e.headers["cache-control"], "no-store");
    let secret = e.body["totp_secret"].as_str().unwrap().to_owned();
    let r = w.code(&p, &w.code_now(&secret));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(w.status_with(r.body["token"].as_str().unwrap()), 200);
    // From now on the account is like any other: the next login asks for a code, no enrolment.
    let r = w.password("dr-self", "Jiro-own-pass-1");
    assert_eq!(r.body["needs_enrolment"], false, "{}", r.text);
    let p = r.body["token"].as_str().unwrap().to_owned();
    assert_eq!(api(&w.s.client(&p), Method::POST, "/login/totp/enrol", None).status, 409);
}

#[test]
fn users_enrol_their_own_authenticator() {
    on_both_stores("selfenrol", self_enrolment);
}

/// Named operators: the bootstrap token creates the first operator and then expires; the
/// operator chooses a password and enrols an authenticator at the first login, logs in with
/// both, and what they do is audited under their own name.
fn named_operators(w: &World) {
    let r = api(
        &w.admin(),
        Method::POST,
        "/admin/operators",
        Some(json!({"login": "op-yamada", "name": "山田 運営", "password": PW})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("otpauth"), "nobody else sees the operator's key");
    let tokens = w.s.store.read(|r| r.tokens()).unwrap();
    assert!(tokens.iter().filter(|t| t.kind == "admin").all(|t| t.revoked), "the bootstrap token expired");

    let r = w.password("op-yamada", PW);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["needs_new_password"], true);
    assert_eq!(r.body["needs_enrolment"], true);
    let p = r.body["token"].as_str().unwrap().to_owned();
    let c = w.s.client(&p);
    assert_eq!(api(&c, Method::POST, "/login/password", Some(json!({"password": "Yamada-own-2026"}))).status, 200);
    let e = api(&c, Method::POST, "/login/totp/enrol", None);
    assert_eq!(e.status, 200, "{}", e.text);
    let secret = e.body["totp_secret"].as_str().unwrap().to_owned();
    let r = w.code(&p, &w.code_now(&secret));
    assert_eq!(r.status, 200, "{}", r.text);
    let op = w.s.client(r.body["token"].as_str().unwrap());
    let me = api(&op, Method::GET, "/me", None);
    assert_eq!(me.body["kind"], "operator", "{}", me.text);
    assert_eq!(me.body["name"], "op-yamada");

    // The operator's work, under their own name.
    let r = api(
        &op,
        Method::POST,
        "/admin/users",
        Some(
            json!({"login": "dr-new", "name": "結 三郎", "profession": "doctor", "facilities": [HOSP], "password": PW, "self_enrol": true}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(api(&op, Method::POST, "/admin/users/dr-new/disable", Some(json!({}))).status, 200);
    let report = api(&op, Method::GET, "/admin/audit-report?user=op-yamada&limit=100", None);
    assert_eq!(report.status, 200, "{}", report.text);
    assert!(report.text.contains("create-user") && report.text.contains("disable-user"), "{}", report.text);
    // Disabled, an operator is out at once too.
    assert_eq!(
        api(
            &op,
            Method::POST,
            "/admin/operators",
            Some(json!({"login": "op-sato", "name": "佐藤 運営", "password": PW}))
        )
        .status,
        200
    );
    assert_eq!(api(&op, Method::POST, "/admin/users/op-yamada/revoke-sessions", Some(json!({}))).status, 200);
    assert_eq!(api(&op, Method::GET, "/me", None).status, 401, "the operator's own sessions ended");
}

#[test]
fn named_operators_replace_the_bootstrap_token() {
    on_both_stores("operators", named_operators);
}

/// The operator's actions on a portal account (a proxy's here): disabled, it cannot log in
/// (the same message as a wrong password); enabled, it can; its second factor reset (a lost
/// phone), it enrols again.
fn portal_accounts(w: &World) {
    let r = api(
        &anon(&w.s),
        Method::POST,
        "/portal/register-proxy",
        Some(json!({"name": "結 家族", "login": "family-1", "password": PW})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let portal = |password: &str| {
        api(
            &anon(&w.s),
            Method::POST,
            "/login",
            Some(json!({"login": "family-1", "password": password, "kind": "portal"})),
        )
    };
    assert_eq!(portal(PW).status, 200);
    let wrong = portal("Wrong-pass-2026");
    let act = |a: &str| api(&w.admin(), Method::POST, &format!("/admin/portal-accounts/family-1/{a}"), None);
    assert_eq!(act("disable").status, 200);
    let r = portal(PW);
    assert_eq!(r.status, 401);
    assert_eq!(r.diagnostics(), wrong.diagnostics());
    assert_eq!(act("enable").status, 200);
    assert_eq!(portal(PW).body["needs_enrolment"], false);
    assert_eq!(act("reset-second-factor").status, 200);
    assert_eq!(portal(PW).body["needs_enrolment"], true);
    assert_eq!(act("revoke-sessions").status, 200);
    assert_eq!(act("explode").status, 404);
    assert_eq!(api(&w.admin(), Method::POST, "/admin/portal-accounts/nobody/disable", None).status, 404);
}

#[test]
fn operators_manage_portal_accounts() {
    on_both_stores("portal", portal_accounts);
}
