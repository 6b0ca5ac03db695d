//! Issue 12 at service level, on both stores (PostgreSQL when `MUSUBI_TEST_POSTGRES` is set):
//! TOTP secrets are sealed with a key outside the database (and secrets stored in clear by an
//! older version are sealed on start, and still log in); failed authentications become one
//! summary record per source, kind and period, written when the period is over (the clock is
//! passed in), with the login name capped; the bootstrap token's actor only creates the first
//! operator.

use musubi_domain::Profession;
use musubi_domain::audit::{AuditRecord, MAX_NAME_CHARS};
use musubi_service::failed_auth::PERIOD_MS;
use musubi_service::people::{NewUser, totp_code_now};
use musubi_service::secrets::{SecretsKey, is_sealed};
use musubi_service::{Ctx, Service};
use musubi_store::Store;

const HOSP: &str = "1318814790";
const PASSWORD: &str = "Musubi-pass-2026";

fn facility(svc: &Service) {
    let row = musubi_store::FacilityRow {
        code: HOSP.into(),
        name: "東京結び病院".into(),
        class: "hospital".into(),
        prefecture: 13,
        area: "1301".into(),
        area_name: "区中央部".into(),
        discloses: true,
        views: true,
    };
    svc.register_facility(&Ctx::operator("test"), row, vec![]).unwrap();
}

fn new_user(svc: &Service, login: &str) -> String {
    let u = NewUser {
        login: login.into(),
        name: "結城 一郎".into(),
        kana: String::new(),
        profession: Profession::Doctor,
        facilities: vec![HOSP.into()],
        password: PASSWORD.into(),
    };
    svc.create_user(&Ctx::operator("test"), u).unwrap().totp_secret
}

fn stored_secret(store: &Store, login: &str) -> String {
    let l = login.to_owned();
    store.read(|r| r.user_by_login(&l)).unwrap().unwrap().totp_secret.unwrap()
}

fn logs_in(svc: &Service, login: &str, secret: &str) {
    let out = svc.login_user(login, PASSWORD, None, Some("10.0.0.9".into())).unwrap();
    // The login completes under a new token (the pending one dies).
    let done = svc.second_factor(&out.token, &totp_code_now(secret).unwrap(), None).unwrap();
    assert!(svc.session_actor(&done.token).unwrap().is_some(), "{login} is logged in");
}

fn secrets_case(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("secrets.key");
    // An older version stored the secret in clear.
    let old = Service::new(store.clone(), "old");
    facility(&old);
    let old_secret = new_user(&old, "dr-old");
    assert_eq!(stored_secret(&store, "dr-old"), old_secret);
    // The first start with a key seals it; the account still logs in.
    let svc = Service::new(store.clone(), "new").with_secrets_key(SecretsKey::load_or_create(&key_path).unwrap());
    assert_eq!(svc.seal_clear_totp_secrets().unwrap(), 1);
    assert_eq!(svc.seal_clear_totp_secrets().unwrap(), 0, "sealing is done once");
    let sealed = stored_secret(&store, "dr-old");
    assert!(is_sealed(&sealed) && !sealed.contains(&old_secret), "{sealed}");
    logs_in(&svc, "dr-old", &old_secret);
    // New accounts are sealed from the start.
    let new_secret = new_user(&svc, "dr-new");
    let stored = stored_secret(&store, "dr-new");
    assert!(is_sealed(&stored) && !stored.contains(&new_secret));
    logs_in(&svc, "dr-new", &new_secret);
    // The database alone (no key, or another key) does not give the second factor.
    let keyless = Service::new(store.clone(), "keyless");
    let out = keyless.login_user("dr-new", PASSWORD, None, None).unwrap();
    assert!(keyless.second_factor(&out.token, &totp_code_now(&new_secret).unwrap(), None).is_err());
    let other = Service::new(store, "other").with_secrets_key(SecretsKey::from_bytes([9; 32]));
    let out = other.login_user("dr-new", PASSWORD, None, None).unwrap();
    assert!(other.second_factor(&out.token, &totp_code_now(&new_secret).unwrap(), None).is_err());
}

fn last_records(store: &Store, n: usize) -> Vec<AuditRecord> {
    let (head, _) = store.audit_head().unwrap();
    let rows = store.read(|r| r.audit_page((head - n as i64).max(0), n as i64)).unwrap();
    rows.iter().map(|r| serde_json::from_str(&r.record).unwrap()).collect()
}

fn failures_case(store: Store) {
    let svc = Service::new(store.clone(), "test");
    let t0 = 1_800_000_000_000 - 1_800_000_000_000 % PERIOD_MS;
    let (before, _) = store.audit_head().unwrap();
    let long = "=HYPERLINK(".repeat(1000);
    for i in 0..40 {
        svc.note_failed_auth_at(t0 + i, Some("192.0.2.7".into()), "user", Some(&long), "unknown login");
    }
    svc.note_failed_auth_at(t0 + 50, Some("192.0.2.8".into()), "token", None, "invalid or revoked token");
    svc.note_failed_auth_at(t0 + PERIOD_MS + 1, Some("192.0.2.7".into()), "user", Some("x"), "unknown login");
    assert_eq!(svc.flush_failed_auth(t0 + PERIOD_MS - 1).unwrap(), 0, "the period is not over");
    assert_eq!(store.audit_head().unwrap().0, before, "nothing is written while counting");
    assert_eq!(svc.flush_failed_auth(t0 + PERIOD_MS).unwrap(), 2);
    let recs = last_records(&store, 2);
    let user = recs.iter().find(|r| r.agent.kind == "user").unwrap();
    assert_eq!(user.subtype, "login-failures");
    assert_eq!(user.agent.address.as_deref(), Some("192.0.2.7"));
    assert!(user.outcome_text.as_deref().unwrap().starts_with("40 failed"), "{:?}", user.outcome_text);
    assert_eq!(user.entities.len(), 1);
    assert!(user.entities[0].chars().count() <= "user/".len() + MAX_NAME_CHARS, "{}", user.entities[0]);
    assert!(recs.iter().any(|r| r.agent.kind == "token" && r.agent.address.as_deref() == Some("192.0.2.8")));
    // The next period's failure is written at shutdown (everything left).
    assert_eq!(svc.flush_failed_auth(i64::MAX).unwrap(), 1);
    assert_eq!(store.audit_head().unwrap().0, before + 3);
    assert!(musubi_store::verify_audit_chain(&store, |_| {}).unwrap().is_ok());
}

#[test]
fn totp_secrets_are_sealed_with_a_key_outside_the_database_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    secrets_case(Store::open_sqlite(dir.path()).unwrap());
}

#[test]
fn failed_authentications_are_summarised_per_source_and_period_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    failures_case(Store::open_sqlite(dir.path()).unwrap());
}

/// A fresh database on the server of `MUSUBI_TEST_POSTGRES`, dropped at the end.
struct FreshDb {
    admin: String,
    name: String,
    url: String,
}

fn psql(url: &str, sql: &str) -> std::process::Output {
    let bin = std::env::var("PG_BIN").map(|b| format!("{b}/psql")).ok().filter(|p| std::path::Path::new(p).exists());
    std::process::Command::new(bin.as_deref().unwrap_or("psql"))
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql is needed to create a test database (it comes with the PostgreSQL packages)")
}

impl FreshDb {
    fn new(prefix: &str) -> FreshDb {
        let admin = std::env::var("MUSUBI_TEST_POSTGRES").expect(
            "MUSUBI_TEST_POSTGRES is not set: these tests must also run on PostgreSQL. Run scripts/test, which starts a server and sets it.",
        );
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("{prefix}_{}_{}", std::process::id(), t % 1_000_000_000_000);
        let out = psql(&admin, &format!("CREATE DATABASE {name}"));
        assert!(out.status.success(), "create database: {}", String::from_utf8_lossy(&out.stderr));
        let url = format!("{}/{name}", admin.rsplit_once('/').map(|(b, _)| b).unwrap());
        FreshDb { admin, name, url }
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        let _ = psql(&self.admin, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

#[test]
fn totp_secrets_are_sealed_with_a_key_outside_the_database_postgres() {
    let db = FreshDb::new("musubi_hygiene_secrets");
    secrets_case(Store::open_postgres(&db.url).unwrap());
}

#[test]
fn failed_authentications_are_summarised_per_source_and_period_postgres() {
    let db = FreshDb::new("musubi_hygiene_failures_svc");
    failures_case(Store::open_postgres(&db.url).unwrap());
}

/// Issue 12 point 4 in the service itself (whatever the caller): the bootstrap token's actor is
/// refused user management and the audit report with the message that it only creates the first
/// operator, reads nothing, creates the first operator, and cannot create a second one.
#[test]
fn the_bootstrap_actor_only_creates_the_first_operator() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).unwrap();
    let svc = Service::new(store.clone(), "test");
    facility(&svc);
    let boot =
        Ctx { actor: musubi_gate::Actor::Bootstrap { name: "admin".into() }, address: None, base_url: String::new() };
    let u = NewUser {
        login: "dr-boot".into(),
        name: "結城 一郎".into(),
        kana: String::new(),
        profession: Profession::Doctor,
        facilities: vec![HOSP.into()],
        password: PASSWORD.into(),
    };
    let e = svc.create_user(&boot, u).unwrap_err();
    assert_eq!(e.kind, musubi_service::ErrorKind::Forbidden);
    assert!(e.summary().contains("最初の運営者アカウントの作成にだけ"), "{}", e.summary());
    let e = svc.audit_report(&boot, &musubi_service::people::AuditFilter::default(), 0, 10, false).unwrap_err();
    assert!(e.summary().contains("最初の運営者アカウントの作成にだけ"), "{}", e.summary());
    new_user(&svc, "dr-hosp");
    let e = svc.set_user_disabled(&boot, "dr-hosp", true).unwrap_err();
    assert_eq!(e.kind, musubi_service::ErrorKind::Forbidden);
    // A read finds nothing it may see.
    let patient = serde_json::json!({"resourceType": "Patient", "id": "pt-1",
        "identifier": [{"system": format!("urn:oid:1.2.392.100495.20.3.51.1{HOSP}"), "value": "1"}],
        "name": [{"text": "結 花子"}], "birthDate": "1980-01-01"});
    let emr = Ctx {
        actor: musubi_gate::Actor::System { name: "emr".into(), facility: HOSP.parse().unwrap() },
        address: None,
        base_url: String::new(),
    };
    svc.update(&emr, musubi_fhir::ResourceType::Patient, "pt-1", patient, None).unwrap();
    assert!(svc.read(&boot, musubi_fhir::ResourceType::Patient, "pt-1", None).is_err());

    assert!(!svc.operator_exists().unwrap());
    svc.create_operator(&boot, "op-first", "山田 運営", PASSWORD).unwrap();
    assert!(svc.operator_exists().unwrap());
    let e = svc.create_operator(&boot, "op-second", "鈴木 運営", PASSWORD).unwrap_err();
    assert_eq!(e.kind, musubi_service::ErrorKind::Forbidden);
    assert!(store.read(|r| r.user_by_login("op-second")).unwrap().is_none());
    // An operator may make more.
    svc.create_operator(&Ctx::operator("op-first"), "op-second", "鈴木 運営", PASSWORD).unwrap();
}
