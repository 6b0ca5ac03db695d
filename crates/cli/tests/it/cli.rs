//! The `musubi` binary as an operator and a vendor use it: serving with tokens, a real FHIR
//! client (fhirpy) against it, a kill -9 in the middle of an import, and tampering with the
//! audit log.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use musubi_store::Store;

fn musubi() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_musubi"));
    c.env("MUSUBI_LOG", "warn");
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running server, and the directory of its audit key and anchor log (outside the data
/// directory), kept as long as it runs.
struct Server {
    child: Child,
    _witness: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates an audit key (and its .pub) at `key` with `musubi audit keygen`.
fn keygen(key: &Path, data: &Path) {
    let out = musubi()
        .args(["audit", "keygen", "--out", key.to_str().unwrap(), "--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn serve(data: &Path, port: u16) -> Server {
    let witness = tempfile::tempdir().unwrap();
    let key = witness.path().join("anchor.key");
    keygen(&key, data);
    let child = serve_with_key(data, port, &key);
    Server { child, _witness: Some(witness) }
}

fn serve_with_key(data: &Path, port: u16, key: &Path) -> Child {
    let mut child = musubi()
        .args(["serve", "--data", data.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .args(["--audit-key", key.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (_, rest) = until_listening(&mut child);
    // Keep draining what it writes later, so that it never writes into a closed pipe.
    std::thread::spawn(move || rest.for_each(drop));
    child
}

/// Reads a `musubi serve` child's standard error (piped) until the server says where it
/// listens, which it does once it does: no polling, no sleeping. Gives the lines up to then and
/// the rest of the stream (drain it, or read it to the end after the child stops).
pub(crate) fn until_listening(child: &mut Child) -> (Vec<String>, impl Iterator<Item = String> + Send + 'static) {
    let mut lines =
        std::io::BufReader::new(child.stderr.take().expect("stderr is piped")).lines().map_while(Result::ok);
    let mut seen = Vec::new();
    for l in lines.by_ref() {
        let listening = l.contains("Musubi FHIR API: ");
        seen.push(l);
        if listening {
            return (seen, lines);
        }
    }
    panic!("the server did not start: {}", seen.join("\n"));
}

fn python() -> PathBuf {
    PathBuf::from(std::env::var("MUSUBI_PYTHON").expect(
        "MUSUBI_PYTHON is not set: run scripts/test, which creates the Python environment with fhirpy and sets it",
    ))
}

#[test]
fn a_real_fhir_client_creates_searches_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve(dir.path(), port);
    let admin = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    assert!(admin.starts_with("msb_"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.path().join("admin-token")).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let out = musubi()
        .args([
            "token",
            "issue",
            "--data",
            dir.path().to_str().unwrap(),
            "--facility",
            "1318814790",
            "--name",
            "py-emr",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fhirpy_client.py");
    let out = Command::new(python())
        .args([script, &format!("http://127.0.0.1:{port}/fhir"), &token, "1318814790"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fhirpy: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all checks passed"));
}

fn write_ndjson(path: &Path, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let o = serde_json::json!({
            "resourceType": "Observation",
            "id": format!("obs-{i:07}"),
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationLabResultCode_CS", "code": "3D046000001920402"}]},
            "subject": {"reference": format!("Patient/pt-{}", i % 997)},
            "effectiveDateTime": format!("2024-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
            "valueQuantity": {"value": 5.0 + (i % 40) as f64 / 10.0, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
        });
        writeln!(f, "{o}").unwrap();
    }
}

fn snapshot(data: &Path) -> Vec<(String, i64, String)> {
    let store = Store::open_sqlite(data).unwrap();
    let q = musubi_store::SearchQuery {
        rtype: musubi_fhir::ResourceType::Observation,
        filters: vec![],
        scope: musubi_store::Scope::all(),
        sort: musubi_store::Sort::Id,
    };
    store.read(|r| r.search_rows(&q, 0, None)).unwrap().into_iter().map(|r| (r.id, r.version, r.content_hash)).collect()
}

#[test]
fn kill_9_during_an_import_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.ndjson");
    let n = 40_000;
    write_ndjson(&file, n);
    let data = dir.path().join("data");
    let journal = dir.path().join("journal.txt");
    let mut child = musubi()
        .args([
            "import",
            "--quiet",
            "--data",
            data.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some chunks are acknowledged, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lines = std::fs::read_to_string(&journal).map(|s| s.lines().count()).unwrap_or(0);
        if lines >= 2_000 {
            break;
        }
        assert!(Instant::now() < deadline, "import made no progress");
        assert!(child.try_wait().unwrap().is_none(), "import finished before it could be killed; make the file larger");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acknowledged: Vec<String> =
        std::io::BufReader::new(std::fs::File::open(&journal).unwrap()).lines().map(|l| l.unwrap()).collect();
    assert!(acknowledged.len() < n, "the kill came before the end");
    let after_kill = snapshot(&data);
    let present: std::collections::HashSet<String> =
        after_kill.iter().map(|(id, _, _)| format!("Observation/{id}")).collect();
    for id in &acknowledged {
        assert!(present.contains(id), "{id} was acknowledged but is missing after kill -9");
    }
    // Re-running completes the import; the result equals an uninterrupted import.
    let st = musubi()
        .args(["import", "--quiet", "--data", data.to_str().unwrap(), file.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let clean = dir.path().join("clean");
    let st = musubi()
        .args(["import", "--quiet", "--data", clean.to_str().unwrap(), file.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let resumed = snapshot(&data);
    assert_eq!(resumed.len(), n);
    assert_eq!(resumed, snapshot(&clean), "same ids, versions and contents as an uninterrupted import");
    // Re-importing again changes nothing.
    let st = musubi()
        .args(["import", "--quiet", "--data", data.to_str().unwrap(), file.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(snapshot(&data), resumed);
}

#[test]
fn rejected_lines_are_quarantined_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.ndjson");
    write_ndjson(&file, 3);
    let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
    writeln!(f, "{{not json").unwrap();
    writeln!(
        f,
        "{}",
        serde_json::json!({"resourceType": "Observation", "id": "bad-1", "status": 12, "code": {"text": "x"}})
    )
    .unwrap();
    drop(f);
    let data = dir.path().join("data");
    let out = musubi()
        .args(["import", "--quiet", "--data", data.to_str().unwrap(), file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "partial import exits 3");
    let q: Vec<_> = std::fs::read_dir(data.join("quarantine")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(q.len(), 1);
    let text = std::fs::read_to_string(&q[0]).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["line"], 4);
    assert!(lines[0]["reason"].as_str().unwrap().contains("JSON"));
    assert_eq!(lines[1]["line"], 5);
    assert!(lines[1]["reason"].as_str().unwrap().contains("Observation.status"), "{}", lines[1]);
    assert_eq!(snapshot(&data).len(), 3, "the good lines landed");
}

fn anchor(args: &[&str]) {
    let out = musubi().args(["audit", "anchor"]).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The witness outside the database: the key refused inside the data directory, the server's
/// anchors at start and at shutdown (SIGTERM), and verify failing once the newest records are
/// cut or the anchor log is deleted.
#[test]
fn the_anchor_log_outside_the_database_witnesses_the_audit_chain() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let inside = data.join("anchor.key");
    let out = musubi()
        .args(["audit", "keygen", "--out", inside.to_str().unwrap(), "--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success() && !inside.exists());
    let witness = dir.path().join("witness");
    std::fs::create_dir_all(&witness).unwrap();
    let key = witness.join("anchor.key");
    keygen(&key, &data);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Without a key the server does not start.
    let st = musubi().args(["serve", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!st.status.success());
    let file = dir.path().join("small.ndjson");
    write_ndjson(&file, 300);
    assert!(
        musubi()
            .args(["import", "--quiet", "--data", data.to_str().unwrap(), file.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    let pubkey = format!("{}.pub", key.display());
    let args = ["--data", data.to_str().unwrap(), "--audit-pubkey", &pubkey];
    let (code, out) = verify(&args);
    assert_eq!(code, 2, "records but no anchor log: {out}");
    assert!(out.contains("anchor log") && out.contains("is missing"), "{out}");

    let port = free_port();
    let mut child = serve_with_key(&data, port, &key);
    let st = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    assert!(child.wait().unwrap().success(), "the server stops cleanly on SIGTERM");
    let log = std::fs::read_to_string(witness.join("audit-anchors.log")).unwrap();
    let kinds: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["start", "shutdown"]);
    let (code, out) = verify(&args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 signed anchors"), "{out}");

    // Cut the newest records and rewrite the head.
    let raw = rusqlite::Connection::open(data.join(musubi_store::SQLITE_FILE)).unwrap();
    raw.execute_batch(
        "DELETE FROM audit WHERE seq > (SELECT seq FROM audit_head) - 2; UPDATE audit_head SET seq = seq - 2, hash = (SELECT hash FROM audit WHERE seq = (SELECT seq - 2 FROM audit_head))",
    )
    .unwrap();
    let (code, out) = verify(&args);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("TAMPERED") && out.contains("is missing (records were deleted"), "{out}");
    std::fs::remove_file(witness.join("audit-anchors.log")).unwrap();
    let (code, out) = verify(&args);
    assert_eq!(code, 2, "{out}");
}

fn verify(args: &[&str]) -> (i32, String) {
    let out = musubi().arg("audit").arg("verify").args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn tampering_with_one_audit_row_makes_verify_fail() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("small.ndjson");
    write_ndjson(&file, 1200);
    let data = dir.path().join("data");
    let key = dir.path().join("anchor.key");
    keygen(&key, &data);
    // With MUSUBI_AUDIT_KEY set, a one-shot command anchors what it wrote when it ends.
    assert!(
        musubi()
            .args(["import", "--quiet", "--data", data.to_str().unwrap(), file.to_str().unwrap()])
            .env("MUSUBI_AUDIT_KEY", &key)
            .status()
            .unwrap()
            .success()
    );
    let log = std::fs::read_to_string(dir.path().join("audit-anchors.log")).unwrap();
    assert!(log.lines().count() == 1 && log.contains("\"kind\":\"demand\""), "{log}");
    let pubkey = format!("{}.pub", key.display());
    let (code, out) = verify(&["--data", data.to_str().unwrap(), "--audit-pubkey", &pubkey]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK"));
    let raw = rusqlite::Connection::open(data.join(musubi_store::SQLITE_FILE)).unwrap();
    raw.execute("UPDATE audit SET record = replace(record, 'obs-0000005', 'obs-0000006') WHERE seq = (SELECT MIN(seq) FROM audit WHERE record LIKE '%obs-0000005%')", []).unwrap();
    let (code, out) = verify(&["--data", data.to_str().unwrap(), "--audit-pubkey", &pubkey]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("TAMPERED"));
}

#[test]
fn tampering_is_also_found_on_postgresql() {
    let admin = std::env::var("MUSUBI_TEST_POSTGRES").expect("MUSUBI_TEST_POSTGRES is not set: run scripts/test");
    let name = format!("musubi_cli_{}", std::process::id());
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("small.ndjson");
    write_ndjson(&file, 600);
    let st = musubi()
        .args(["import", "--quiet", "--database", &url, "--data", dir.path().to_str().unwrap(), file.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let witness = tempfile::tempdir().unwrap();
    let key = witness.path().join("anchor.key");
    keygen(&key, dir.path());
    let key = key.to_str().unwrap();
    anchor(&["--database", &url, "--data", dir.path().to_str().unwrap(), "--audit-key", key]);
    let (code, out) = verify(&["--database", &url, "--audit-key", key]);
    assert_eq!(code, 0, "{out}");
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    // The newest records deleted and the head rewritten: the chain holds, the anchor does not.
    db.batch_execute(
        "DELETE FROM audit WHERE seq > (SELECT seq FROM audit_head) - 3; UPDATE audit_head SET seq = seq - 3, hash = (SELECT hash FROM audit WHERE seq = (SELECT seq - 3 FROM audit_head))",
    )
    .unwrap();
    let (code, out) = verify(&["--database", &url, "--audit-key", key]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is missing"), "{out}");
    db.batch_execute("DELETE FROM audit WHERE seq = 1").unwrap();
    let (code, out) = verify(&["--database", &url, "--audit-key", key]);
    assert_eq!(code, 2, "{out}");
    drop(db);
    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

/// `musubi demo`: a region with logins for each role; the demo doctor sees the showcase
/// patient's records from other facilities, and the patient sees that access in the portal.
#[test]
fn the_demo_region_has_logins_for_each_role_and_a_patient_who_sees_who_looked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let port = free_port();
    let mut child = musubi()
        .args(["demo", "--data", data.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ready once it says where it listens (it exits, and this panics, if it cannot start).
    let (_, rest) = until_listening(&mut child);
    std::thread::spawn(move || rest.for_each(drop));
    let _server = Server { child, _witness: None };
    let tour = std::fs::read_to_string(data.join("demo-tour.txt")).unwrap();
    assert!(tour.contains("Musubi デモ地域") && tour.contains("Musubi-demo-2026"), "{tour}");
    // The demo's audit key and anchor log were made beside the data directory; the start
    // anchor covers what loading the region wrote.
    let pubkey = dir.path().join("demo-audit/anchor.key.pub");
    assert!(tour.contains(pubkey.to_str().unwrap()), "{tour}");
    let (code, out) = verify(&["--data", data.to_str().unwrap(), "--audit-pubkey", pubkey.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let accounts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("demo-accounts.json")).unwrap()).unwrap();
    let users = accounts["users"].as_array().unwrap();
    let who: Vec<&str> = users.iter().map(|u| u["who"].as_str().unwrap()).collect();
    for role in ["医師", "看護師", "事務"] {
        assert!(who.iter().any(|w| w.contains(role)), "no {role} login in {who:?}");
    }
    let password = accounts["password"].as_str().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::blocking::Client::new();
    // The tour's web pages are served by the same binary.
    for page in ["/login", "/portal/login", "/admin/login"] {
        let r = http.get(format!("{base}{page}")).send().unwrap();
        assert_eq!(r.status(), 200, "{page}");
        assert!(r.text().unwrap().contains("ログイン"), "{page} is not the Japanese login page");
    }
    let totp = |secret: &str| {
        let mut child = musubi()
            .arg("totp")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), format!("{secret}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let login = |body: serde_json::Value, secret: &str| -> String {
        let r = http.post(format!("{base}/api/login")).json(&body).send().unwrap();
        assert_eq!(r.status(), 200, "login {body}");
        let token = r.json::<serde_json::Value>().unwrap()["token"].as_str().unwrap().to_owned();
        let r = http
            .post(format!("{base}/api/login/totp"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"code": totp(secret)}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "second factor for {body}");
        // The login completes under a new token; the pending one is dead.
        r.json::<serde_json::Value>().unwrap()["token"].as_str().unwrap().to_owned()
    };

    let doctor = users.iter().find(|u| u["who"].as_str().unwrap().contains("医師")).unwrap();
    let token = login(
        serde_json::json!({"login": doctor["login"], "password": password, "facility": doctor["facility"]}),
        doctor["totp_secret"].as_str().unwrap(),
    );
    let patient = &accounts["patient"];
    let pid = patient["patient_id"].as_str().unwrap();
    let r = http.get(format!("{base}/fhir/Patient/{pid}/$everything")).bearer_auth(&token).send().unwrap();
    assert_eq!(r.status(), 200);
    let bundle: serde_json::Value = r.json().unwrap();
    let registrations =
        bundle["entry"].as_array().unwrap().iter().filter(|e| e["resource"]["resourceType"] == "Patient").count();
    assert!(registrations >= 2, "the doctor should see the person's registrations at several facilities");

    let ptoken = login(
        serde_json::json!({"login": patient["login"], "password": password, "kind": "portal"}),
        patient["totp_secret"].as_str().unwrap(),
    );
    let r = http.get(format!("{base}/api/portal/history")).bearer_auth(&ptoken).send().unwrap();
    assert_eq!(r.status(), 200);
    let history = r.text().unwrap();
    assert!(history.contains(doctor["facility"].as_str().unwrap()), "the doctor's access is not in {history}");

    // The operator logs in like everyone else (no bootstrap token is ever written) and reads
    // the audit report; the tour's FHIR examples use a facility's system token.
    assert!(!data.join("admin-token").exists(), "the demo writes no bootstrap token");
    assert!(!tour.contains("管理者トークン") && !tour.contains("admin-token"), "{tour}");
    let operator = &accounts["operator"];
    assert!(tour.contains(operator["totp_secret"].as_str().unwrap()), "{tour}");
    let otoken = login(
        serde_json::json!({"login": operator["login"], "password": password}),
        operator["totp_secret"].as_str().unwrap(),
    );
    let me: serde_json::Value = http.get(format!("{base}/api/me")).bearer_auth(&otoken).send().unwrap().json().unwrap();
    assert_eq!(me["kind"], "operator", "{me}");
    let r = http.get(format!("{base}/api/admin/audit-report?limit=5")).bearer_auth(&otoken).send().unwrap();
    assert_eq!(r.status(), 200);
    let system = accounts["system_tokens"][0]["token"].as_str().unwrap();
    assert!(tour.contains(&format!("export TOKEN={system}")), "{tour}");
    let r = http.get(format!("{base}/fhir/Patient?_count=5")).bearer_auth(system).send().unwrap();
    assert_eq!(r.status(), 200);
}

/// The bootstrap token of a first start creates the first operator and does nothing else; once
/// an operator exists no token is written at a restart (the revoked one's file is removed).
#[test]
fn the_bootstrap_token_only_creates_the_first_operator_and_is_not_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let witness = tempfile::tempdir().unwrap();
    let key = witness.path().join("anchor.key");
    std::fs::create_dir_all(&data).unwrap();
    keygen(&key, &data);
    let port = free_port();
    let mut child = serve_with_key(&data, port, &key);
    let bootstrap = std::fs::read_to_string(data.join("admin-token")).unwrap().trim().to_owned();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::blocking::Client::new();
    let r = http.get(format!("{base}/fhir/Patient?_count=1")).bearer_auth(&bootstrap).send().unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("最初の運営者アカウントの作成にだけ"));
    let r = http.get(format!("{base}/api/admin/audit-report?format=csv")).bearer_auth(&bootstrap).send().unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(format!("{base}/api/admin/operators"))
        .bearer_auth(&bootstrap)
        .json(&serde_json::json!({"login": "op-first", "name": "山田 運営", "password": "Initial-op-2026"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let st = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    assert!(child.wait().unwrap().success());

    // A restart: no new token, and the revoked one's file is gone.
    let port = free_port();
    let _server = Server { child: serve_with_key(&data, port, &key), _witness: None };
    assert!(!data.join("admin-token").exists(), "no bootstrap token once an operator exists");
    let store = Store::open_sqlite(&data).unwrap();
    let admin: Vec<_> = store.read(|r| r.tokens()).unwrap().into_iter().filter(|t| t.kind == "admin").collect();
    assert_eq!(admin.len(), 1, "no new bootstrap token was issued");
    assert!(admin[0].revoked);
    let r = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}/fhir/Patient?_count=1"))
        .bearer_auth(&bootstrap)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// `musubi retention sweep`: labs older than a year go, except the last 3 of an item for a
/// person; a second sweep deletes nothing.
#[test]
fn the_retention_sweep_deletes_expired_labs_but_keeps_the_last_three() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("labs.ndjson");
    let mut f = std::fs::File::create(&file).unwrap();
    for i in 0..5 {
        let o = serde_json::json!({
            "resourceType": "Observation",
            "id": format!("old-lab-{i}"),
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS", "code": "3D046000001920402", "display": "HbA1c"}]},
            "subject": {"reference": "Patient/pt-retention"},
            "effectiveDateTime": format!("2023-0{}-10", i + 1),
            "valueQuantity": {"value": 6.0 + i as f64 / 10.0, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
        });
        writeln!(f, "{o}").unwrap();
    }
    drop(f);
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    assert!(musubi().args(["import", "--quiet", "--data", d, file.to_str().unwrap()]).status().unwrap().success());
    assert_eq!(snapshot(&data).len(), 5);
    let out = musubi().args(["retention", "sweep", "--data", d]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("記録 2 件"), "{text}");
    let left: Vec<String> = snapshot(&data).into_iter().map(|(id, ..)| id).collect();
    assert_eq!(left, vec!["old-lab-2", "old-lab-3", "old-lab-4"], "the newest three stay");
    let again = musubi().args(["retention", "sweep", "--data", d]).output().unwrap();
    assert!(String::from_utf8(again.stdout).unwrap().contains("記録 0 件"));
}

/// `musubi user disable | enable | reset-password | reset-second-factor | revoke-sessions`: the
/// operator's account actions from the command line, each audited under the operator's name.
#[test]
fn operators_manage_user_accounts_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        let out = musubi().args(args).env("USER", "op-suzuki").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    run(&[
        "facility",
        "add",
        "--data",
        d,
        "--code",
        "1318814790",
        "--name",
        "東京結び病院",
        "--class",
        "hospital",
        "--area",
        "1301",
    ]);
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "Musubi-pass-2026\n").unwrap();
    let pwf = pw.to_str().unwrap();
    run(&[
        "user",
        "add",
        "--data",
        d,
        "--login",
        "dr-cli",
        "--name",
        "結 一郎",
        "--profession",
        "doctor",
        "--facility",
        "1318814790",
        "--password-file",
        pwf,
    ]);
    let state = || {
        let store = Store::open_sqlite(dir.path()).unwrap();
        let u = store.read(|r| r.user_by_login("dr-cli")).unwrap().unwrap();
        (u.disabled, u.totp_secret.is_some(), u.password_hash)
    };
    let (_, _, hash) = state();
    run(&["user", "disable", "--data", d, "dr-cli"]);
    assert!(state().0, "disabled");
    let listed = run(&["user", "list", "--data", d]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("disabled"));
    run(&["user", "enable", "--data", d, "dr-cli"]);
    assert!(!state().0, "enabled again");
    std::fs::write(&pw, "Another-pass-2026\n").unwrap();
    run(&["user", "reset-password", "--data", d, "dr-cli", "--password-file", pwf]);
    assert_ne!(state().2, hash, "a new password hash");
    run(&["user", "reset-second-factor", "--data", d, "dr-cli"]);
    assert!(!state().1, "the authenticator is forgotten");
    run(&["user", "revoke-sessions", "--data", d, "dr-cli"]);
    let out = musubi().args(["user", "disable", "--data", d, "no-such-user"]).output().unwrap();
    assert!(!out.status.success(), "an unknown login is an error");
    // A named operator: no facility, chooses a password and enrols at the first login.
    run(&["user", "add-operator", "--data", d, "--login", "op-cli", "--name", "山田 運営", "--password-file", pwf]);
    {
        let store = Store::open_sqlite(dir.path()).unwrap();
        let op = store.read(|r| r.user_by_login("op-cli")).unwrap().unwrap();
        assert_eq!(op.profession, "operator");
        assert!(op.facilities.is_empty() && op.totp_secret.is_none() && op.must_change_password);
    }
    // Audited under the operator's own name.
    let store = Store::open_sqlite(dir.path()).unwrap();
    let q = musubi_store::AuditQuery { agent: Some("op-suzuki".into()), ..Default::default() };
    let (_, rows) = store.read(|r| r.audit_search(&q, 0, 100)).unwrap();
    let text = rows.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join("\n");
    for subtype in
        ["disable-user", "enable-user", "reset-password", "reset-second-factor", "revoke-sessions", "create-operator"]
    {
        assert!(text.contains(subtype), "{subtype} not audited under op-suzuki: {text}");
    }
}

/// `musubi setting`: an allowed value only, and the change is audited under the operator's name
/// with the old and new value.
#[test]
fn settings_are_checked_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let run = |args: &[&str]| musubi().args(args).env("USER", "op-sato").output().unwrap();
    let out = run(&["setting", "--data", d, "network.participation"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "network.participation = opt-in");
    let out = run(&["setting", "--data", d, "network.participation", "everyone"]);
    assert!(!out.status.success(), "a value that is not allowed is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("opt-in / per-visit"));
    let out = run(&["setting", "--data", d, "emergency.hours", "24"]);
    assert!(!out.status.success(), "more than 12 hours is refused");
    let out = run(&["setting", "--data", d, "network.participation", "per-visit"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "network.participation = per-visit");
    let store = Store::open_sqlite(dir.path()).unwrap();
    let q = musubi_store::AuditQuery { agent: Some("op-sato".into()), ..Default::default() };
    let (_, rows) = store.read(|r| r.audit_search(&q, 0, 100)).unwrap();
    let text = rows.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join("\n");
    assert_eq!(text.matches("change-setting").count(), 1, "one change, audited once: {text}");
    assert!(text.contains("opt-in -> per-visit"), "{text}");
}
