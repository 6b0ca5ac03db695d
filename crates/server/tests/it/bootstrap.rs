//! Issue 12 point 4: the bootstrap (administrator) token only creates the first operator. On a
//! first start it is refused (403, saying to create an operator and log in with it) on every
//! FHIR route, on user management, on the audit export and on every other API route; it
//! creates the first operator (audited under the token's name), and from then on it is refused
//! everywhere — even the creation of a second operator while a server still caches it.

use crate::common::*;
use musubi_store::Store;
use reqwest::Method;
use serde_json::json;

const HOSP: &str = "1318814790";

/// The message the bootstrap token gets wherever it is refused.
const BOOTSTRAP_ONLY: &str = "管理者トークンは最初の運営者アカウントの作成にだけ使えます";

/// Every kind of route: FHIR reads, searches, history, operations and writes; the people,
/// portal, clinician and operator API (user management, the audit export, the MPI, referrals,
/// the retention sweep).
fn routes() -> Vec<(Method, &'static str, Option<serde_json::Value>)> {
    let fhir = |m: Method, p: &'static str| (m, p, None);
    let api = |m: Method, p: &'static str, b: Option<serde_json::Value>| (m, p, b);
    vec![
        fhir(Method::GET, "/fhir/Patient/pt-1"),
        fhir(Method::GET, "/fhir/Patient?_count=5"),
        fhir(Method::GET, "/fhir/Patient/pt-1/$everything"),
        fhir(Method::GET, "/fhir/Patient/pt-1/_history"),
        fhir(Method::GET, "/fhir/Observation?patient=pt-1"),
        fhir(Method::GET, "/fhir/AuditEvent?_count=5"),
        fhir(Method::GET, "/fhir/_history"),
        fhir(Method::DELETE, "/fhir/Patient/pt-1"),
        (Method::POST, "/fhir/Patient", Some(json!({"resourceType": "Patient"}))),
        api(Method::GET, "/api/me", None),
        api(
            Method::POST,
            "/api/admin/users",
            Some(
                json!({"login": "dr-x", "name": "結 一郎", "profession": "doctor", "facilities": [HOSP], "password": "Musubi-pass-2026"}),
            ),
        ),
        api(Method::POST, "/api/admin/users/dr-x/disable", Some(json!({}))),
        api(Method::POST, "/api/admin/users/dr-x/reset-password", Some(json!({"password": "Musubi-pass-2027"}))),
        api(
            Method::POST,
            "/api/admin/facilities",
            Some(json!({"code": HOSP, "name": "東京結び病院", "class": "hospital", "prefecture": 13, "area": "1301"})),
        ),
        api(Method::GET, "/api/admin/audit-report?format=csv&limit=1000", None),
        api(Method::GET, "/api/admin/audit-report?limit=10", None),
        api(Method::POST, "/api/admin/activation-code", Some(json!({"patient": "pt-1"}))),
        api(Method::GET, "/api/admin/alerts", None),
        api(Method::GET, "/api/admin/visit-consents", None),
        api(Method::GET, "/api/admin/notices-to-post", None),
        api(Method::GET, "/api/admin/emergency-reviews", None),
        api(Method::GET, "/api/admin/mpi/review", None),
        api(Method::GET, "/api/admin/mpi/links", None),
        api(Method::POST, "/api/admin/mpi/rebuild", Some(json!({}))),
        api(Method::POST, "/api/admin/portal-accounts/someone/disable", None),
        api(Method::POST, "/api/admin/retention-sweep", Some(json!({}))),
        api(Method::GET, "/api/admin/trust-roots", None),
        api(Method::GET, "/api/referrals/inbox", None),
        api(Method::GET, "/api/portal/history", None),
        api(Method::POST, "/api/clinician/break-glass", Some(json!({"patient": "pt-1"}))),
        api(Method::POST, "/api/logout/everywhere", None),
    ]
}

/// A request with the bearer `token` to `path` (relative to the server's root).
fn call(s: &TestServer, token: &str, method: Method, path: &str, body: Option<serde_json::Value>) -> Resp {
    let c = s.client(token);
    let url = s.base.trim_end_matches("/fhir").to_owned() + path;
    let ctype = if path.starts_with("/fhir") { "application/fhir+json" } else { "application/json" };
    c.send(method, &url, body.map(|b| b.to_string()).unwrap_or_default(), ctype)
}

fn bare() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).unwrap();
    TestServer::start_bare(store, dir, musubi_server::ServerConfig::default())
}

#[test]
fn the_bootstrap_token_is_refused_everywhere_but_creating_the_first_operator() {
    let s = bare();
    // Something for it to see, if it could (a facility's system wrote a patient).
    let emr = s.client(&s.token(HOSP, "emr"));
    let r = emr.put(
        "Patient/pt-1",
        &json!({"resourceType": "Patient", "id": "pt-1", "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11318814790", "value": "0001"}], "name": [{"text": "結 花子"}], "birthDate": "1980-01-01"}),
    );
    assert!(r.status == 200 || r.status == 201, "{}", r.text);

    for (method, path, body) in routes() {
        let r = call(&s, &s.bootstrap, method.clone(), path, body);
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
        assert!(r.diagnostics().contains(BOOTSTRAP_ONLY), "{method} {path}: {}", r.text);
        assert!(r.diagnostics().contains("運営者アカウントでログインしてください"), "{}", r.text);
    }
    // Discovery needs no token at all, so it still answers.
    assert_eq!(call(&s, &s.bootstrap, Method::GET, "/fhir/metadata", None).status, 200);
    // Nothing was done: no user, no facility.
    assert!(s.store.read(|r| r.users()).unwrap().is_empty());
    assert!(s.store.read(|r| r.facilities()).unwrap().is_empty());

    // A bad request to the one route it may use is answered as such, and creates nothing.
    let weak = json!({"login": "op-first", "name": "山田 運営", "password": "short"});
    assert_eq!(call(&s, &s.bootstrap, Method::POST, "/api/admin/operators", Some(weak)).status, 400);
    // The first operator.
    let first = json!({"login": "op-first", "name": "山田 運営", "password": "Initial-op-2026"});
    let r = call(&s, &s.bootstrap, Method::POST, "/api/admin/operators", Some(first));
    assert_eq!(r.status, 200, "{}", r.text);
    let tokens = s.store.read(|r| r.tokens()).unwrap();
    assert!(tokens.iter().filter(|t| t.kind == "admin").all(|t| t.revoked), "the bootstrap token is revoked");
    // Audited under the token's name, as before.
    let q = musubi_store::AuditQuery { agent: Some("admin".into()), ..Default::default() };
    let (_, rows) = s.store.read(|r| r.audit_search(&q, 0, 100)).unwrap();
    assert!(rows.iter().any(|(_, t)| t.contains("create-operator") && t.contains("op-first")), "{rows:?}");

    // From now on it is refused everywhere: revoked (401), or, while this server still caches
    // it for a few seconds, refused as a bootstrap token (403) — a second operator included.
    let second = json!({"login": "op-second", "name": "鈴木 運営", "password": "Initial-op-2026"});
    let r = call(&s, &s.bootstrap, Method::POST, "/api/admin/operators", Some(second));
    assert!(r.status == 401 || r.status == 403, "{}", r.text);
    assert!(s.store.read(|r| r.user_by_login("op-second")).unwrap().is_none());
    for (method, path, body) in routes() {
        let r = call(&s, &s.bootstrap, method.clone(), path, body);
        assert!(r.status == 401 || r.status == 403, "{method} {path}: {}", r.text);
    }
    // A fresh server over the same store (no cache) answers 401 at once.
    let revoked = musubi_server::auth::TokenCache::default()
        .resolve(&musubi_service::Service::new(s.store.clone(), "test"), &s.bootstrap, musubi_fhir::datetime::now_ms())
        .unwrap();
    assert_eq!(revoked, None);
}

/// The operator made with the bootstrap token logs in and works under its own name: the
/// test servers' set-up, checked once here.
#[test]
fn the_first_operator_logs_in_and_works_under_its_own_name() {
    let s = TestServer::start();
    let op = s.client(&s.admin);
    let me = api(&op, Method::GET, "/me", None);
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["kind"], "operator");
    assert_eq!(me.body["name"], OPERATOR_LOGIN);
    let r = api(
        &op,
        Method::POST,
        "/admin/facilities",
        Some(json!({"code": HOSP, "name": "東京結び病院", "class": "hospital", "prefecture": 13, "area": "1301"})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(op.get("AuditEvent?_count=1").status, 200, "the operator reads the audit log");
    // The bootstrap token used for the set-up is dead.
    let r = call(&s, &s.bootstrap, Method::GET, "/fhir/Patient?_count=1", None);
    assert!(r.status == 401 || r.status == 403, "{}", r.text);
    let q = musubi_store::AuditQuery { agent: Some(OPERATOR_LOGIN.into()), ..Default::default() };
    let (_, rows) = s.store.read(|r| r.audit_search(&q, 0, 100)).unwrap();
    assert!(rows.iter().any(|(_, t)| t.contains("register-facility")), "{rows:?}");
}
