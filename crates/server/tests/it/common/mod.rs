//! A real server on a free port, over a real store, for HTTP tests.

#![allow(dead_code)]

use std::path::PathBuf;

use musubi_service::Service;
use musubi_store::Store;
use serde_json::Value;

pub struct TestServer {
    pub base: String,
    pub admin: String,
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

    /// A server over a service built by the test (an id key, …).
    pub fn start_service(
        service: Service,
        store: Store,
        dir: tempfile::TempDir,
        config: musubi_server::ServerConfig,
    ) -> TestServer {
        let admin = musubi_server::auth::issue(&store, "admin", None, "admin").unwrap();
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
            admin,
            store,
            stop: Some(tx),
            thread: Some(thread),
            _dir: dir,
        }
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
