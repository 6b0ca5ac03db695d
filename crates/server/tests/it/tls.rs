//! HTTPS and mutual TLS through the real server, with certificates generated here (rcgen): a
//! CA, the server's certificate, and client certificates of two facilities (the 医療機関コード
//! in the subject serialNumber) plus one from a CA the server does not trust.
//! A system token counts only with its own facility's certificate; an expired token is refused.

use std::path::PathBuf;
use std::sync::Arc;

use crate::common::FreshDb;
use musubi_service::Service;
use musubi_store::Store;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const FACILITY_A: &str = "1318814790";
const FACILITY_B: &str = "1311234567";

/// A client certificate and its key, PEM.
struct Identity {
    cert: String,
    key: String,
}

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    a: Identity,
    b: Identity,
    /// Facility A's code, but signed by a CA the server does not know.
    rogue_a: Identity,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn client_cert(issuer: &CertifiedIssuer<'static, KeyPair>, facility: &str) -> Identity {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, format!("EMR of {facility}"));
    p.distinguished_name.push(DnType::CustomDnType(vec![2, 5, 4, 5]), facility);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, issuer).unwrap();
    Identity { cert: cert.pem(), key: key.serialize_pem() }
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Musubi test network CA");
    let server_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "musubi.test");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = p.signed_by(&server_key, &root).unwrap();
    std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("ca.pem"), root.pem()).unwrap();
    let rogue = ca("Somebody else's CA");
    Pki {
        ca_pem: root.pem(),
        a: client_cert(&root, FACILITY_A),
        b: client_cert(&root, FACILITY_B),
        rogue_a: client_cert(&rogue, FACILITY_A),
        dir,
    }
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An HTTPS client trusting the test CA, presenting `identity` if given.
    fn client(&self, identity: Option<&Identity>) -> Https {
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            Some(id) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(id.cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Https(Arc::new(config))
    }
}

/// A minimal HTTPS client: one connection per request (TLS over hyper's HTTP/1.1 client).
struct Https(Arc<rustls::ClientConfig>);

struct Answer {
    status: u16,
    hsts: Option<String>,
    retry_after: Option<String>,
    set_cookie: Vec<String>,
    text: String,
}

impl Https {
    fn get(&self, base: &str, path: &str, token: Option<&str>) -> Result<Answer, String> {
        self.send(base, "GET", path, token, None)
    }

    fn send(
        &self,
        base: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        json: Option<serde_json::Value>,
    ) -> Result<Answer, String> {
        let port: u16 = base.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(fetch(self.0.clone(), port, method, path, token, json))
    }
}

async fn fetch(
    config: Arc<rustls::ClientConfig>,
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<serde_json::Value>,
) -> Result<Answer, String> {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(conn);
    let mut req = axum::http::Request::builder().method(method).uri(path).header("host", format!("localhost:{port}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match json {
        Some(j) => {
            req = req.header("content-type", "application/json");
            bytes::Bytes::from(j.to_string())
        }
        None => bytes::Bytes::new(),
    };
    let resp = send
        .send_request(req.body(http_body_util::Full::new(body)).unwrap())
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let hsts = resp.headers().get("strict-transport-security").and_then(|h| h.to_str().ok()).map(str::to_owned);
    let retry_after = resp.headers().get("retry-after").and_then(|h| h.to_str().ok()).map(str::to_owned);
    let set_cookie =
        resp.headers().get_all("set-cookie").iter().filter_map(|h| h.to_str().ok()).map(str::to_owned).collect();
    let body = resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    Ok(Answer { status, hsts, retry_after, set_cookie, text: String::from_utf8_lossy(&body).into_owned() })
}

/// The real server over HTTPS on a free loopback port.
struct TlsServer {
    base: String,
    store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsServer {
    fn start(store: Store, pki: &Pki, require_client_cert: bool) -> TlsServer {
        Self::start_with(store, pki, require_client_cert, musubi_server::limits::Limits::default())
    }

    /// With `limits` (short timeouts, one connection) injected.
    fn start_with(
        store: Store,
        pki: &Pki,
        require_client_cert: bool,
        limits: musubi_server::limits::Limits,
    ) -> TlsServer {
        let (cert, key, ca) = (pki.path("server.pem"), pki.path("server.key"), pki.path("ca.pem"));
        let tls = musubi_server::tls::server_config(&musubi_server::tls::TlsFiles {
            cert: &cert,
            key: &key,
            client_ca: Some(&ca),
            require_client_cert,
        })
        .unwrap();
        let config =
            musubi_server::ServerConfig { https: true, bind_system_tokens: true, limits, ..Default::default() };
        let state = musubi_server::AppState::new(Service::new(store.clone(), "test"), config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                musubi_server::tls::serve_tls_until(listener, state, tls, async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        TlsServer { base: format!("https://localhost:{}", addr.port()), store, stop: Some(tx), thread: Some(thread) }
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap()
    }

    fn token(&self, facility: &str, name: &str, expires: Option<i64>) -> String {
        musubi_server::auth::issue_expiring(&self.store, "system", Some(&facility.parse().unwrap()), name, expires)
            .unwrap()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn scenario(store: Store) {
    let pki = pki();
    let s = TlsServer::start(store, &pki, false);
    let now = musubi_fhir::datetime::now_ms();
    let token_a = s.token(FACILITY_A, "emr-a", Some(now + 90 * 86_400_000));
    let search = "/fhir/Patient";

    // Facility A's system with A's certificate: served over HTTPS, with HSTS.
    let with_a = pki.client(Some(&pki.a));
    let ok = with_a.get(&s.base, search, Some(&token_a)).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.hsts.as_deref(), Some(musubi_server::tls::HSTS));
    // Again (now from the token cache): still bound to the certificate.
    assert_eq!(with_a.get(&s.base, search, Some(&token_a)).unwrap().status, 200);

    // A's token with facility B's certificate (a valid one, from the same CA): refused.
    let with_b = pki.client(Some(&pki.b));
    let wrong = with_b.get(&s.base, search, Some(&token_a)).unwrap();
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert!(wrong.text.contains("クライアント証明書"), "{}", wrong.text);
    assert_eq!(wrong.hsts.as_deref(), Some(musubi_server::tls::HSTS));

    // A's token without any certificate: refused (a browser without one still gets pages).
    let bare = pki.client(None);
    let none = bare.get(&s.base, search, Some(&token_a)).unwrap();
    assert_eq!(none.status, 401, "{}", none.text);
    let page = bare.get(&s.base, "/", None).unwrap();
    assert!(page.status < 500 && page.status != 401, "a browser without a certificate: {}", page.status);
    assert_eq!(page.hsts.as_deref(), Some(musubi_server::tls::HSTS));

    // A certificate naming facility A but signed by an unknown CA: the handshake fails.
    let rogue = pki.client(Some(&pki.rogue_a));
    assert!(rogue.get(&s.base, search, Some(&token_a)).is_err(), "a certificate from an unknown CA must be refused");

    // An expired token, even with the right certificate: refused.
    let expired = s.token(FACILITY_A, "emr-a-old", Some(now - 1_000));
    let late = with_a.get(&s.base, search, Some(&expired)).unwrap();
    assert_eq!(late.status, 401, "{}", late.text);

    // Rotation ending the old secret at once: the new one works, the old one is refused
    // (never looked up before, so no cache entry can keep it alive).
    let old = s.token(FACILITY_A, "emr-a2", Some(now + 86_400_000));
    let new = musubi_server::auth::rotate(&s.store, "emr-a2", Some(now + 86_400_000), now - 1, now).unwrap().unwrap();
    assert_eq!(with_a.get(&s.base, search, Some(&old)).unwrap().status, 401);
    assert_eq!(with_a.get(&s.base, search, Some(&new)).unwrap().status, 200);

    // A clinician's browser (no certificate) logs in: the session cookie is Secure. The
    // operator who registers them was made with the bootstrap token, over HTTPS too.
    let bootstrap = musubi_server::auth::issue(&s.store, "admin", None, "admin").unwrap();
    let admin = first_operator(&bare, &s.base, &bootstrap);
    let facility = serde_json::json!({"code": FACILITY_A, "name": "結び総合病院", "class": "hospital", "prefecture": 13, "area": "1301"});
    let r = bare.send(&s.base, "POST", "/api/admin/facilities", Some(&admin), Some(facility)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    let pw = "Musubi-pass-2026";
    let user = serde_json::json!({"login": "dr-tls", "name": "田中 先生", "profession": "doctor", "facilities": [FACILITY_A], "password": pw});
    let r = bare.send(&s.base, "POST", "/api/admin/users", Some(&admin), Some(user)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    let login = serde_json::json!({"login": "dr-tls", "password": pw});
    let r = bare.send(&s.base, "POST", "/api/login", None, Some(login)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.set_cookie.is_empty(), "no session cookie");
    assert!(r.set_cookie.iter().all(|c| c.contains("; Secure")), "{:?}", r.set_cookie);

    // Plain HTTP to the HTTPS port gets nothing served.
    let plain = reqwest::blocking::Client::new();
    let http_url = format!("{}{search}", s.base.replace("https://", "http://"));
    assert!(plain.get(http_url).bearer_auth(&token_a).send().map(|r| r.status() != 200).unwrap_or(true));
}

/// The first operator, created with the bootstrap token and logged in for the first time (its
/// own password, an authenticator, a code): its session token.
fn first_operator(https: &Https, base: &str, bootstrap: &str) -> String {
    let post = |path: &str, token: Option<&str>, body: Option<serde_json::Value>| {
        let r = https.send(base, "POST", path, token, body).unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        serde_json::from_str::<serde_json::Value>(&r.text).unwrap()
    };
    let pw = "Initial-op-2026";
    post(
        "/api/admin/operators",
        Some(bootstrap),
        Some(serde_json::json!({"login": "op-tls", "name": "運営 TLS", "password": pw})),
    );
    let pending = post("/api/login", None, Some(serde_json::json!({"login": "op-tls", "password": pw})));
    let pending = pending["token"].as_str().unwrap().to_owned();
    post("/api/login/password", Some(&pending), Some(serde_json::json!({"password": "Operator-own-2026"})));
    let secret = post("/api/login/totp/enrol", Some(&pending), None)["totp_secret"].as_str().unwrap().to_owned();
    let code = musubi_service::people::totp_code_now(&secret).unwrap();
    post("/api/login/totp", Some(&pending), Some(serde_json::json!({"code": code})))["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn mutual_tls_binds_system_tokens_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    scenario(Store::open_sqlite(dir.path()).unwrap());
}

#[test]
fn mutual_tls_binds_system_tokens_postgres() {
    let db = FreshDb::new("musubi_tls");
    scenario(Store::open_postgres(&db.url).unwrap());
}

#[test]
fn a_required_client_certificate_is_asked_of_everyone() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let s = TlsServer::start(Store::open_sqlite(dir.path()).unwrap(), &pki, true);
    assert!(pki.client(None).get(&s.base, "/", None).is_err());
    let page = pki.client(Some(&pki.b)).get(&s.base, "/", None).unwrap();
    assert!(page.status < 500, "{}", page.status);
}

#[test]
fn a_certificate_names_its_facility() {
    let pki = pki();
    let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(musubi_server::tls::facility_of_cert(der(&pki.a.cert).as_ref()).unwrap().to_string(), FACILITY_A);
    // The code as the whole CN, without a serialNumber.
    let root = ca("CN-only CA");
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, FACILITY_B);
    let cn_only = p.signed_by(&key, &root).unwrap();
    assert_eq!(musubi_server::tls::facility_of_cert(cn_only.der()).unwrap().to_string(), FACILITY_B);
    // A CN that is not a facility code names none, nor a serialNumber with no such prefecture.
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "dr-tanaka");
    let person = p.signed_by(&key, &root).unwrap();
    assert!(musubi_server::tls::facility_of_cert(person.der()).is_err());
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CustomDnType(vec![2, 5, 4, 5]), "9918814790");
    let bad_check_digit = p.signed_by(&key, &root).unwrap();
    assert!(musubi_server::tls::facility_of_cert(bad_check_digit.der()).is_err());
}

// ---- one door for plain and TLS connections: the same limits over HTTPS ----

/// A server over HTTPS whose header, body-idle and handshake timeouts are 200 ms (and the
/// directory of its store).
fn impatient(pki: &Pki) -> (TlsServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let limits = musubi_server::limits::Limits {
        header_timeout: std::time::Duration::from_millis(200),
        body_idle_timeout: std::time::Duration::from_millis(200),
        handshake_timeout: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    (TlsServer::start_with(Store::open_sqlite(dir.path()).unwrap(), pki, false, limits), dir)
}

/// Opens a TLS connection, sends `first`, and reads until the server closes it (20 s at most):
/// how long that took after sending, and what came back.
fn send_and_wait(https: &Https, port: u16, first: &[u8]) -> (std::time::Duration, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(https.0.clone()).connect(name, tcp).await.unwrap();
        tls.write_all(first).await.unwrap();
        tls.flush().await.unwrap();
        let start = std::time::Instant::now();
        let mut out = Vec::new();
        // An end without close_notify is an error here: what was read before it is kept.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(20), tls.read_to_end(&mut out)).await;
        (start.elapsed(), String::from_utf8_lossy(&out).into_owned())
    })
}

#[test]
fn over_tls_a_client_that_never_finishes_its_headers_is_disconnected() {
    let pki = pki();
    let (s, _dir) = impatient(&pki);
    let (took, answer) =
        send_and_wait(&pki.client(None), s.port(), b"GET /fhir/metadata HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
    assert!(took < std::time::Duration::from_secs(15), "closed by the header timeout, not after {took:?}");
    assert!(!answer.contains("200 OK"), "{answer}");
    // A whole request on the same server is answered.
    assert_eq!(pki.client(None).get(&s.base, "/fhir/metadata", None).unwrap().status, 200);
}

#[test]
fn over_tls_a_body_that_stops_arriving_is_cut_off() {
    let pki = pki();
    let (s, _dir) = impatient(&pki);
    let (took, answer) = send_and_wait(
        &pki.client(None),
        s.port(),
        b"POST /api/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"login\":",
    );
    assert!(took < std::time::Duration::from_secs(15), "{took:?}");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("途中で止まった"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("strict-transport-security"), "HSTS on every answer: {answer}");
}

/// With one connection allowed: a connection that has not even begun its TLS handshake holds
/// the place (so the next one is answered 503 with Retry-After, over TLS), until its handshake
/// times out; then the place is free again.
#[test]
fn over_tls_connections_beyond_the_limit_get_503_and_a_stalled_handshake_holds_its_place_until_its_timeout() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let limits = musubi_server::limits::Limits {
        max_connections: 1,
        handshake_timeout: std::time::Duration::from_millis(1500),
        ..Default::default()
    };
    let s = TlsServer::start_with(Store::open_sqlite(dir.path()).unwrap(), &pki, false, limits);
    let client = pki.client(None);
    // The place is free: a request is served.
    assert_eq!(client.get(&s.base, "/fhir/metadata", None).unwrap().status, 200);
    let held = std::net::TcpStream::connect(("127.0.0.1", s.port())).unwrap();
    let mut busy = None;
    for _ in 0..50 {
        match client.get(&s.base, "/fhir/metadata", None) {
            Ok(a) if a.status == 503 => {
                busy = Some(a);
                break;
            }
            _ => std::thread::yield_now(),
        }
    }
    let busy = busy.expect("no 503 while the only place was held");
    assert_eq!(busy.retry_after.as_deref(), Some("5"), "{}", busy.text);
    assert!(busy.text.contains("混雑"), "{}", busy.text);
    // The stalled handshake times out and gives its place back.
    let start = std::time::Instant::now();
    let mut served = false;
    while start.elapsed() < std::time::Duration::from_secs(20) {
        if client.get(&s.base, "/fhir/metadata", None).is_ok_and(|a| a.status == 200) {
            served = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(served, "the place came back after the handshake timeout");
    drop(held);
}
