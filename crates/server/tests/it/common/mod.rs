//! A real server on a free port, over a real store, for HTTP tests.

#![allow(dead_code)]

use std::path::PathBuf;

use musubi_service::Service;
use musubi_store::Store;
use serde_json::Value;

/// The login of the operator account every test server has (made with the bootstrap token).
pub const OPERATOR_LOGIN: &str = "op-admin";
/// The password it is created with (an operator must replace it at the first login).
pub const OPERATOR_INITIAL_PASSWORD: &str = "Initial-op-2026";
/// The password it chose at its first login.
pub const OPERATOR_PASSWORD: &str = "Operator-own-2026";

pub struct TestServer {
    pub base: String,
    /// The session token of the operator [`OPERATOR_LOGIN`], logged in with password and
    /// one-time code (a session token works as a bearer token). Empty on a server started
    /// with [`TestServer::start_bare`].
    pub admin: String,
    /// The TOTP secret the operator enrolled at the first login (empty on a bare server).
    pub operator_secret: String,
    /// The bootstrap token written on the first start: revoked once the operator was created,
    /// still valid on a bare server.
    pub bootstrap: String,
    pub store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path()).unwrap();
        Self::start_on(store, dir)
    }

    pub fn start_on(store: Store, dir: tempfile::TempDir) -> TestServer {
        Self::start_with(store, dir, musubi_server::ServerConfig { body_limit: 2 * 1024 * 1024, ..Default::default() })
    }

    pub fn start_with(store: Store, dir: tempfile::TempDir, config: musubi_server::ServerConfig) -> TestServer {
        Self::start_with_service(store, dir, config, |s| s)
    }

    /// A server whose service `adjust` changes first (a test clock, a short idle timeout).
    pub fn start_with_service(
        store: Store,
        dir: tempfile::TempDir,
        config: musubi_server::ServerConfig,
        adjust: impl FnOnce(Service) -> Service,
    ) -> TestServer {
        let service = adjust(Service::new(store.clone(), "test"));
        Self::start_service(service, store, dir, config)
    }

    /// A server over a service built by the test (an id key, …), with the operator
    /// [`OPERATOR_LOGIN`] created with the bootstrap token and logged in (its session in
    /// `admin`).
    pub fn start_service(
        service: Service,
        store: Store,
        dir: tempfile::TempDir,
        config: musubi_server::ServerConfig,
    ) -> TestServer {
        let mut s = Self::start_service_bare(service, store, dir, config);
        let (admin, secret) = first_operator(&s.base, &s.bootstrap);
        s.admin = admin;
        s.operator_secret = secret;
        s
    }

    /// A server with no operator account yet: only the bootstrap token (`bootstrap`), as on a
    /// first start; `admin` is empty.
    pub fn start_bare(store: Store, dir: tempfile::TempDir, config: musubi_server::ServerConfig) -> TestServer {
        Self::start_service_bare(Service::new(store.clone(), "test"), store, dir, config)
    }

    fn start_service_bare(
        service: Service,
        store: Store,
        dir: tempfile::TempDir,
        config: musubi_server::ServerConfig,
    ) -> TestServer {
        let bootstrap = musubi_server::auth::issue(&store, "admin", None, "admin").unwrap();
        let state = musubi_server::AppState::new(service, config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                musubi_server::serve_until(listener, state, async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        TestServer {
            base: format!("http://{addr}/fhir"),
            admin: String::new(),
            operator_secret: String::new(),
            bootstrap,
            store,
            stop: Some(tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// A new login of the operator at `now_ms` (the service's clock: a test clock may have
    /// moved): password, then the one-time code of that time; returns the session token.
    pub fn operator_login_at(&self, now_ms: i64) -> String {
        let anon = anon(self);
        let r = api(
            &anon,
            reqwest::Method::POST,
            "/login",
            Some(serde_json::json!({"login": OPERATOR_LOGIN, "password": OPERATOR_PASSWORD})),
        );
        assert_eq!(r.status, 200, "operator password: {}", r.text);
        let pending = self.client(r.body["token"].as_str().unwrap());
        let code = musubi_service::people::totp_code_at(&self.operator_secret, now_ms).unwrap();
        let r = api(&pending, reqwest::Method::POST, "/login/totp", Some(serde_json::json!({"code": code})));
        assert_eq!(r.status, 200, "operator code: {}", r.text);
        r.body["token"].as_str().unwrap().to_owned()
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn token(&self, facility: &str, name: &str) -> String {
        musubi_server::auth::issue(&self.store, "system", Some(&facility.parse().unwrap()), name).unwrap()
    }

    pub fn client(&self, token: &str) -> Client {
        Client { base: self.base.clone(), token: token.to_owned(), http: reqwest::blocking::Client::new() }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct Client {
    pub base: String,
    pub token: String,
    pub http: reqwest::blocking::Client,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// The diagnostics of every issue of an OperationOutcome body, joined.
    pub fn diagnostics(&self) -> String {
        self.body["issue"]
            .as_array()
            .map(|a| a.iter().map(|i| i["diagnostics"].as_str().unwrap_or("")).collect::<Vec<_>>().join(" | "))
            .unwrap_or_default()
    }

    pub fn expressions(&self) -> Vec<String> {
        self.body["issue"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["expression"][0].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    pub fn rules(&self) -> Vec<String> {
        self.body["issue"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["details"]["text"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

impl Client {
    fn finish(r: reqwest::blocking::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, headers, body, text }
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else if path.is_empty() {
            self.base.clone()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        Self::finish(self.http.get(self.url(path)).bearer_auth(&self.token).send().unwrap())
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(reqwest::Method::POST, path, body.to_string(), "application/fhir+json")
    }

    pub fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(reqwest::Method::PUT, path, body.to_string(), "application/fhir+json")
    }

    pub fn delete(&self, path: &str) -> Resp {
        Self::finish(self.http.delete(self.url(path)).bearer_auth(&self.token).send().unwrap())
    }

    pub fn send(&self, method: reqwest::Method, path: &str, body: String, content_type: &str) -> Resp {
        Self::finish(
            self.http
                .request(method, self.url(path))
                .bearer_auth(&self.token)
                .header("content-type", content_type)
                .body(body)
                .send()
                .unwrap(),
        )
    }
}

/// A call to the `/api` routes (JSON).
pub fn api(c: &Client, method: reqwest::Method, path: &str, body: Option<Value>) -> Resp {
    let url = c.base.replace("/fhir", "/api") + path;
    let mut r = c.http.request(method, url);
    if !c.token.is_empty() {
        r = r.bearer_auth(&c.token);
    }
    if let Some(b) = body {
        r = r.header("content-type", "application/json").body(b.to_string());
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap();
    Resp { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
}

/// Creates the first operator with the bootstrap token and logs it in for the first time
/// (password, a password of its own, enrolment of an authenticator, one-time code); returns its
/// session token and TOTP secret. One HTTP client (one connection) for all of it.
fn first_operator(base: &str, bootstrap: &str) -> (String, String) {
    let http = reqwest::blocking::Client::new();
    let c = |token: &str| Client { base: base.to_owned(), token: token.to_owned(), http: http.clone() };
    let r = api(
        &c(bootstrap),
        reqwest::Method::POST,
        "/admin/operators",
        Some(serde_json::json!({"login": OPERATOR_LOGIN, "name": "試験 運営", "password": OPERATOR_INITIAL_PASSWORD})),
    );
    assert_eq!(r.status, 200, "first operator: {}", r.text);
    let r = api(
        &c(""),
        reqwest::Method::POST,
        "/login",
        Some(serde_json::json!({"login": OPERATOR_LOGIN, "password": OPERATOR_INITIAL_PASSWORD})),
    );
    assert_eq!(r.status, 200, "operator password: {}", r.text);
    assert_eq!(r.body["needs_new_password"], true, "{}", r.text);
    let pending = c(r.body["token"].as_str().unwrap());
    let r = api(
        &pending,
        reqwest::Method::POST,
        "/login/password",
        Some(serde_json::json!({"password": OPERATOR_PASSWORD})),
    );
    assert_eq!(r.status, 200, "operator's own password: {}", r.text);
    let r = api(&pending, reqwest::Method::POST, "/login/totp/enrol", None);
    assert_eq!(r.status, 200, "operator enrolment: {}", r.text);
    let secret = r.body["totp_secret"].as_str().unwrap().to_owned();
    let code = musubi_service::people::totp_code_now(&secret).unwrap();
    let r = api(&pending, reqwest::Method::POST, "/login/totp", Some(serde_json::json!({"code": code})));
    assert_eq!(r.status, 200, "operator code: {}", r.text);
    (r.body["token"].as_str().unwrap().to_owned(), secret)
}

/// A client without credentials.
pub fn anon(s: &TestServer) -> Client {
    let mut c = s.client("");
    c.token.clear();
    c
}

pub fn reference_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../reference"))
}

pub fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A fresh database on the PostgreSQL server of `MUSUBI_TEST_POSTGRES`, named from `prefix`,
/// dropped at the end (made with `psql`, which comes with the server package).
pub struct FreshDb {
    admin: String,
    name: String,
    pub url: String,
}

fn psql(url: &str, sql: &str) -> std::process::Output {
    let bin = std::env::var("PG_BIN").map(|b| format!("{b}/psql")).ok().filter(|p| std::path::Path::new(p).exists());
    std::process::Command::new(bin.as_deref().unwrap_or("psql"))
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql is needed to create a test database (it comes with the PostgreSQL packages)")
}

impl FreshDb {
    pub fn new(prefix: &str) -> FreshDb {
        let admin = std::env::var("MUSUBI_TEST_POSTGRES").expect(
            "MUSUBI_TEST_POSTGRES is not set: the referral tests must also run on PostgreSQL. Run scripts/test, which starts a server and sets it.",
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

/// The operator issues an activation code for a patient (after an identity check at the desk).
pub fn activation_code(s: &TestServer, patient: &str) -> String {
    let r = api(
        &s.client(&s.admin),
        reqwest::Method::POST,
        "/admin/activation-code",
        Some(serde_json::json!({"patient": patient})),
    );
    assert_eq!(r.status, 200, "activation code: {}", r.text);
    r.body["code"].as_str().unwrap().to_owned()
}

/// The patient (logged in at the portal) shows a consent code.
pub fn consent_code(patient: &Client) -> String {
    let r = api(patient, reqwest::Method::POST, "/portal/consent-code", None);
    assert_eq!(r.status, 200, "consent code: {}", r.text);
    r.body["code"].as_str().unwrap().to_owned()
}

/// A clinician records consent at the visit with the code the patient shows.
pub fn visit_consent(c: &Client, patient_client: &Client, patient: &str) -> Resp {
    let code = consent_code(patient_client);
    api(
        c,
        reqwest::Method::POST,
        "/clinician/visit-consent",
        Some(serde_json::json!({"patient": patient, "code": code})),
    )
}

/// A clinician starts an emergency access (reason from the list, words, the one-time code again).
pub fn break_glass(c: &Client, patient: &str, totp_secret: &str, reason: &str) -> Resp {
    let code = musubi_service::people::totp_code_now(totp_secret).unwrap();
    api(
        c,
        reqwest::Method::POST,
        "/clinician/break-glass",
        Some(
            serde_json::json!({"patient": patient, "reason_code": "emergency-transport", "reason": reason, "code": code}),
        ),
    )
}

/// A clinician registers a signed paper consent form; the operator confirms it.
pub fn paper_visit_consent(s: &TestServer, c: &Client, patient: &str) {
    let r = api(
        c,
        reqwest::Method::POST,
        "/clinician/visit-consent",
        Some(serde_json::json!({"patient": patient, "paper_form": "同意書-0001"})),
    );
    assert_eq!(r.status, 200, "paper consent: {}", r.text);
    assert_eq!(r.body["status"], "pending", "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let r = api(
        &s.client(&s.admin),
        reqwest::Method::POST,
        &format!("/admin/visit-consents/{id}"),
        Some(serde_json::json!({"accept": true})),
    );
    assert_eq!(r.status, 200, "confirm: {}", r.text);
    assert_eq!(r.body["status"], "active", "{}", r.text);
}
