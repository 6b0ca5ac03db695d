//! The audit trail and its witness: every way of tampering with the audit records or the anchor
//! log is found by `anchors::verify` (what `musubi audit verify` runs). Each case runs on
//! SQLite, and on PostgreSQL when MUSUBI_TEST_POSTGRES is set. Times are passed in: no sleeps.

use std::path::PathBuf;

use musubi_domain::audit::{AuditAction, AuditAgent, AuditOutcome, AuditPurpose, AuditRecord};
use musubi_service::anchors::{self, AnchorError, AnchorKind, Anchorer, Policy, PublicKey, Report, Sink};
use musubi_store::Store;

/// A fixed synthetic clock origin (epoch ms).
const T0: i64 = 1_800_000_000_000;
const SEC: i64 = 1000;

fn record(i: i64, at: i64) -> AuditRecord {
    AuditRecord {
        recorded: at,
        action: AuditAction::Read,
        subtype: "read".into(),
        outcome: AuditOutcome::Success,
        outcome_text: None,
        agent: AuditAgent {
            kind: "user".into(),
            name: format!("doctor-{}", i % 3),
            facility: Some("1318814790".into()),
            profession: Some("doctor".into()),
            address: None,
        },
        purpose: AuditPurpose::Treatment,
        patient: Some("synthetic-patient-1".into()),
        person: None,
        entities: vec![format!("Observation/obs-{i}")],
        query: None,
        source: "test".into(),
    }
}

/// Raw access to the database, as someone tampering with it would have.
enum Raw {
    Sqlite(rusqlite::Connection),
    Pg(Box<postgres::Client>),
}

impl Raw {
    fn exec(&mut self, sql: &str) {
        match self {
            Raw::Sqlite(c) => c.execute_batch(sql).unwrap(),
            Raw::Pg(c) => c.batch_execute(sql).unwrap(),
        }
    }

    fn hash(&mut self, seq: i64) -> String {
        let q = format!("SELECT hash FROM audit WHERE seq = {seq}");
        match self {
            Raw::Sqlite(c) => c.query_row(&q, [], |r| r.get(0)).unwrap(),
            Raw::Pg(c) => c.query_one(&q, &[]).unwrap().get(0),
        }
    }
}

/// A fresh PostgreSQL database, dropped at the end.
struct FreshDb {
    admin: String,
    name: String,
    url: String,
}

impl FreshDb {
    fn new() -> FreshDb {
        let admin = std::env::var("MUSUBI_TEST_POSTGRES").unwrap();
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("musubi_anchor_{}_{}", std::process::id(), t % 1_000_000_000_000);
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        FreshDb { admin, name, url }
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

struct Env {
    store: Store,
    raw: Raw,
    data: PathBuf,
    key: PathBuf,
    log: PathBuf,
    public: PublicKey,
    _db: Option<FreshDb>,
    _dir: tempfile::TempDir,
}

impl Env {
    fn new(pg: bool) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        // The witness lives outside the data directory (another volume in production).
        let witness = dir.path().join("witness");
        std::fs::create_dir_all(&witness).unwrap();
        let key = witness.join("anchor.key");
        let public = anchors::keygen(&key).unwrap();
        let log = witness.join(anchors::LOG_FILE);
        let (store, raw, db) = if pg {
            let db = FreshDb::new();
            let store = Store::open_postgres(&db.url).unwrap();
            let raw = Raw::Pg(Box::new(postgres::Client::connect(&db.url, postgres::NoTls).unwrap()));
            (store, raw, Some(db))
        } else {
            let store = Store::open_sqlite(&data).unwrap();
            let raw = Raw::Sqlite(rusqlite::Connection::open(data.join(musubi_store::SQLITE_FILE)).unwrap());
            (store, raw, None)
        };
        Env { store, raw, data, key, log, public, _db: db, _dir: dir }
    }

    fn anchorer(&self) -> Anchorer {
        let key = anchors::load_key(&self.key, &self.data).unwrap();
        Anchorer::new(self.store.clone(), key, Sink { log: self.log.clone(), syslog: None }, &self.data).unwrap()
    }

    /// Appends records `from..=to`, one a second from `start`.
    fn append(&self, from: i64, to: i64, start: i64) {
        for i in from..=to {
            self.store.append_audit(vec![record(i, start + (i - from) * SEC)]).unwrap();
        }
    }

    fn verify(&self) -> Result<Report, AnchorError> {
        anchors::verify(&self.store, &self.public, &self.log, Policy::default(), |_| {})
    }

    fn tampered(&self) -> String {
        match self.verify() {
            Err(AnchorError::Tampered(why)) => why,
            other => panic!("tampering not detected: {other:?}"),
        }
    }

    fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap().lines().map(str::to_owned).collect()
    }

    fn write_log(&self, lines: &[String]) {
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(&self.log, text).unwrap();
    }
}

/// Runs a case on SQLite, and on PostgreSQL when MUSUBI_TEST_POSTGRES is set.
fn on_each_store(case: impl Fn(Env)) {
    case(Env::new(false));
    if std::env::var("MUSUBI_TEST_POSTGRES").is_ok() {
        case(Env::new(true));
    }
}

/// 20 records from T0, anchored at start (T0+20 s); 5 more, periodically anchored at T0+60 s.
fn anchored(env: &Env) -> Anchorer {
    let a = env.anchorer();
    env.append(1, 20, T0);
    a.anchor(AnchorKind::Start, T0 + 20 * SEC).unwrap();
    env.append(21, 25, T0 + 40 * SEC);
    a.anchor_if_moved(T0 + 60 * SEC).unwrap().expect("the head moved");
    a
}

#[test]
fn an_untouched_trail_verifies_and_a_periodic_anchor_of_an_unchanged_head_is_skipped() {
    on_each_store(|env| {
        // A fresh database with no log is fine: nothing to witness yet.
        assert_eq!(env.verify().unwrap(), Report { records: 0, anchors: 0 });
        let a = anchored(&env);
        assert!(a.anchor_if_moved(T0 + 120 * SEC).unwrap().is_none());
        // Records newer than the newest anchor, but within the interval: not stale.
        env.append(26, 30, T0 + 61 * SEC);
        assert_eq!(env.verify().unwrap(), Report { records: 30, anchors: 2 });
        a.anchor(AnchorKind::Shutdown, T0 + 70 * SEC).unwrap();
        assert_eq!(env.verify().unwrap(), Report { records: 30, anchors: 3 });
        let lines = env.log_lines();
        assert!(lines[0].contains("\"kind\":\"start\"") && lines[2].contains("\"kind\":\"shutdown\""), "{lines:?}");
    });
}

#[test]
fn deleting_changing_or_reordering_a_record_is_detected() {
    on_each_store(|mut env| {
        anchored(&env);
        env.raw.exec("DELETE FROM audit WHERE seq = 7");
        assert!(env.tampered().contains("audit record 8: records 7..7 are missing"));
    });
    on_each_store(|mut env| {
        anchored(&env);
        env.raw.exec("UPDATE audit SET record = replace(record, 'obs-12', 'obs-99') WHERE seq = 12");
        assert!(env.tampered().contains("audit record 12"));
    });
    on_each_store(|mut env| {
        anchored(&env);
        env.raw.exec(
            "UPDATE audit SET seq = -1 WHERE seq = 5; UPDATE audit SET seq = 5 WHERE seq = 6; UPDATE audit SET seq = 6 WHERE seq = -1",
        );
        assert!(env.tampered().contains("audit record 5"));
    });
}

#[test]
fn deleting_the_newest_records_and_rewriting_the_head_is_detected() {
    on_each_store(|mut env| {
        anchored(&env);
        let h = env.raw.hash(22);
        env.raw.exec(&format!("DELETE FROM audit WHERE seq > 22; UPDATE audit_head SET seq = 22, hash = '{h}'"));
        // The chain alone is consistent again; the anchor of record 25 is not.
        assert!(musubi_store::verify_audit_chain(&env.store, |_| {}).unwrap().is_ok());
        let why = env.tampered();
        assert!(why.contains("audit record 25, anchored on line 2, is missing"), "{why}");
    });
}

#[test]
fn rewriting_the_newest_records_consistently_is_detected() {
    on_each_store(|mut env| {
        anchored(&env);
        // Rewrite record 25 and recompute its hash and the head: the chain holds, the anchor not.
        let prev = env.raw.hash(24);
        env.raw.exec("UPDATE audit SET record = replace(record, 'obs-25', 'obs-77') WHERE seq = 25");
        let rec: String = match &mut env.raw {
            Raw::Sqlite(c) => c.query_row("SELECT record FROM audit WHERE seq = 25", [], |r| r.get(0)).unwrap(),
            Raw::Pg(c) => c.query_one("SELECT record FROM audit WHERE seq = 25", &[]).unwrap().get(0),
        };
        let h = musubi_domain::audit::chain_hash(&prev, 25, &rec);
        env.raw.exec(&format!("UPDATE audit SET hash = '{h}' WHERE seq = 25; UPDATE audit_head SET hash = '{h}'"));
        assert!(musubi_store::verify_audit_chain(&env.store, |_| {}).unwrap().is_ok());
        assert!(env.tampered().contains("not the one anchored on line 2"));
    });
}

#[test]
fn a_missing_or_emptied_anchor_log_is_detected() {
    on_each_store(|env| {
        anchored(&env);
        std::fs::remove_file(&env.log).unwrap();
        assert!(env.tampered().contains("is missing"));
        env.write_log(&[]);
        assert!(env.tampered().contains("is empty"));
    });
}

#[test]
fn cutting_the_last_lines_of_the_log_is_detected() {
    on_each_store(|mut env| {
        anchored(&env);
        let lines = env.log_lines();
        env.write_log(&lines[..1]);
        let why = env.tampered();
        assert!(why.contains("recorded anchor line 2, but the anchor log ends at line 1"), "{why}");
        // Also removing the database's copy leaves the log stale: records 21..25 were written
        // more than a minute and a half after the newest remaining anchor.
        let a = env.anchorer();
        env.append(26, 30, T0 + 200 * SEC);
        a.anchor(AnchorKind::Periodic, T0 + 210 * SEC).unwrap();
        let lines = env.log_lines();
        env.write_log(&lines[..1]);
        env.raw.exec("DELETE FROM audit_anchor_log WHERE n > 1");
        let why = env.tampered();
        assert!(why.contains("audit records 21..30 are not anchored") && why.contains("stale"), "{why}");
    });
}

#[test]
fn reordering_changing_or_inserting_log_lines_is_detected() {
    on_each_store(|env| {
        let a = anchored(&env);
        a.anchor(AnchorKind::Demand, T0 + 61 * SEC).unwrap();
        let lines = env.log_lines();
        env.write_log(&[lines[0].clone(), lines[2].clone(), lines[1].clone()]);
        assert!(env.tampered().contains("line 2: carries number 3 where 2 was expected"));
        // Renumbering does not help: the line is signed and linked.
        let renumbered = lines[2].replace("\"n\":3", "\"n\":2");
        env.write_log(&[lines[0].clone(), renumbered, lines[1].clone()]);
        assert!(env.tampered().contains("line 2: does not follow"));
        // Changing what a line anchors breaks its signature.
        let changed = lines[1].replace("\"seq\":25", "\"seq\":22");
        env.write_log(&[lines[0].clone(), changed, lines[2].clone()]);
        assert!(env.tampered().contains("line 2: the signature does not verify"));
        env.write_log(&lines);
        assert!(env.verify().is_ok());
    });
}

#[test]
fn a_prune_is_accepted_only_when_the_log_records_it() {
    on_each_store(|mut env| {
        let a = anchored(&env);
        // An unrecorded prune: the first records deleted and the boundary written by hand.
        let h = env.raw.hash(5);
        env.raw.exec(&format!(
            "DELETE FROM audit WHERE seq <= 5; INSERT INTO setting (key, value) VALUES ('{}', '5:{h}')",
            anchors::PRUNED_SETTING
        ));
        let why = env.tampered();
        assert!(
            why.contains("records up to 5 were deleted as pruned, but the anchor log records no such prune"),
            "{why}"
        );
        // The same prune done by the anchorer (the boundary in the log first) verifies.
        env.raw.exec(&format!("DELETE FROM setting WHERE key = '{}'", anchors::PRUNED_SETTING));
        let n = a.prune(T0 + 10 * SEC, T0 + 62 * SEC).unwrap();
        assert_eq!(n, 5, "records 6..10 are already gone");
        assert_eq!(env.verify().unwrap(), Report { records: 15, anchors: 3 });
    });
}

#[test]
fn the_key_and_the_log_must_stay_out_of_the_data_directory() {
    let env = Env::new(false);
    let inside = env.data.join("anchor.key");
    let e = anchors::keygen(&inside).and_then(|_| anchors::load_key(&inside, &env.data)).err().unwrap();
    assert!(e.to_string().contains("must not be inside the data directory"), "{e}");
    let key = anchors::load_key(&env.key, &env.data).unwrap();
    let log = env.data.join("sub").join("..").join(anchors::LOG_FILE);
    let e = Anchorer::new(env.store.clone(), key, Sink { log, syslog: None }, &env.data).err().unwrap();
    assert!(e.to_string().contains("anchor log must not be inside"), "{e}");
    // A key readable by others is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&env.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(anchors::load_key(&env.key, &env.data).is_err());
    }
    // A verifier needs only the public key file.
    let public = anchors::load_public_key(&anchors::public_key_path(&env.key)).unwrap();
    assert_eq!(public.to_hex(), env.public.to_hex());
}

/// PostgreSQL with two roles: the owner (migrations, pruning) and the application's role,
/// which writes audit records but cannot change or delete them.
#[test]
fn on_postgresql_the_application_role_cannot_change_or_delete_audit_rows() {
    let Ok(admin) = std::env::var("MUSUBI_TEST_POSTGRES") else { return };
    let env = Env::new(true);
    let owner_url = env._db.as_ref().unwrap().url.clone();
    let role = format!("musubi_app_{}", std::process::id());
    let mut admin_client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    admin_client.batch_execute(&format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN")).unwrap();
    env.store.restrict_app_role(role.clone()).unwrap();
    assert_eq!(env.store.read(|r| r.audit_rows_mutable()).unwrap(), Some(true), "the owner still can");
    // The same database, as the application's role (the test server trusts local logins).
    let (scheme_host, db) = owner_url.rsplit_once('/').unwrap();
    let host = scheme_host.rsplit_once('@').map_or(scheme_host.trim_start_matches("postgres://"), |(_, h)| h);
    let app_url = format!("postgres://{role}@{host}/{db}");
    {
        let app = Store::open_postgres(&app_url).unwrap();
        assert_eq!(app.read(|r| r.audit_rows_mutable()).unwrap(), Some(false));
        for i in 1..=20 {
            app.append_audit(vec![record(i, T0 + i * SEC)]).unwrap();
        }
        let key = anchors::load_key(&env.key, &env.data).unwrap();
        let sink = Sink { log: env.log.clone(), syslog: None };
        let a = Anchorer::new(app.clone(), key, sink, &env.data).unwrap();
        a.anchor(AnchorKind::Start, T0 + 21 * SEC).unwrap();
        let mut raw = postgres::Client::connect(&app_url, postgres::NoTls).unwrap();
        for sql in [
            "DELETE FROM audit WHERE seq = 20",
            "UPDATE audit SET record = 'x' WHERE seq = 3",
            "TRUNCATE audit",
            "DELETE FROM audit_anchor_log",
        ] {
            let e = raw.batch_execute(sql).unwrap_err();
            let why = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
            assert!(why.contains("permission denied"), "{sql}: {e:?}");
        }
        // Pruning as the application fails; as the owner it works and verifies.
        assert!(a.prune(T0 + 10 * SEC, T0 + 22 * SEC).is_err());
    }
    let key = anchors::load_key(&env.key, &env.data).unwrap();
    let owner = Anchorer::new(env.store.clone(), key, Sink { log: env.log.clone(), syslog: None }, &env.data).unwrap();
    // The failed attempt left its prune line in the log; the owner's prune supersedes it.
    assert_eq!(owner.prune(T0 + 10 * SEC, T0 + 23 * SEC).unwrap(), 9);
    let report = env.verify().unwrap();
    assert_eq!(report.records, 11);
    drop(env);
    let _ = admin_client.batch_execute(&format!("DROP ROLE IF EXISTS {role}"));
}

/// Two writers of one log (the server and `musubi audit anchor`) append under a file lock:
/// the numbering and links stay whole and the anchored heads never go backwards.
#[test]
fn concurrent_anchorers_keep_the_log_a_chain() {
    on_each_store(|env| {
        env.append(1, 5, T0);
        let (a, b) = (env.anchorer(), env.anchorer());
        std::thread::scope(|s| {
            for (k, who) in [&a, &b].into_iter().enumerate() {
                let store = &env.store;
                s.spawn(move || {
                    for i in 0..20 {
                        let n = 6 + (k as i64) * 100 + i;
                        store.append_audit(vec![record(n, T0 + 5 * SEC + i)]).unwrap();
                        who.anchor(AnchorKind::Demand, T0 + 6 * SEC + i).unwrap();
                    }
                });
            }
        });
        assert_eq!(env.verify().unwrap(), Report { records: 45, anchors: 40 });
    });
}

/// The second sink: every anchor line also goes to a syslog socket (here a test socket).
#[cfg(unix)]
#[test]
fn anchors_are_also_sent_to_syslog() {
    let env = Env::new(false);
    let socket = env.key.with_file_name("log.sock");
    let daemon = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    let key = anchors::load_key(&env.key, &env.data).unwrap();
    let sink = Sink { log: env.log.clone(), syslog: Some(socket) };
    let a = Anchorer::new(env.store.clone(), key, sink, &env.data).unwrap();
    env.append(1, 3, T0);
    a.anchor(AnchorKind::Demand, T0 + 4 * SEC).unwrap();
    let mut buf = [0u8; 2048];
    let n = daemon.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]);
    assert!(msg.starts_with("<85>musubi-audit[") && msg.ends_with(env.log_lines()[0].as_str()), "{msg}");
}

/// While the server runs, cutting records it has not anchored yet (and rewriting the head,
/// even appending new records in their place) still shows: the server anchors the head it
/// committed, not the database's.
#[test]
fn a_running_server_anchors_what_it_wrote_even_after_a_cut() {
    on_each_store(|mut env| {
        let a = env.anchorer();
        env.append(1, 20, T0);
        a.anchor(AnchorKind::Start, T0 + 20 * SEC).unwrap();
        env.append(21, 25, T0 + 30 * SEC);
        let h = env.raw.hash(20);
        env.raw.exec(&format!("DELETE FROM audit WHERE seq > 20; UPDATE audit_head SET seq = 20, hash = '{h}'"));
        // New records take the freed numbers; the chain alone holds.
        env.append(21, 22, T0 + 40 * SEC);
        assert!(musubi_store::verify_audit_chain(&env.store, |_| {}).unwrap().is_ok());
        let anchored = a.anchor_if_moved(T0 + 60 * SEC).unwrap().unwrap();
        assert_eq!(anchored.seq, 25, "the head this process committed");
        let why = env.tampered();
        assert!(why.contains("audit record 25, anchored on line 2, is missing"), "{why}");
    });
}
