//! A real Musubi server (the FHIR API and the pages, as `musubi serve` runs them) on a free
//! port over a fresh store, the network the tests use (facilities, clinicians, one patient seen
//! at a hospital and a clinic, a referral document), and a small form-posting web client that
//! keeps cookies and does not follow redirects (so the tests see every redirect).

#![allow(dead_code)]

pub mod data;

use std::collections::HashMap;

use musubi_domain::Profession;
use musubi_service::people::NewUser;
use musubi_service::{Ctx, Service};
use musubi_store::{FacilityRow, Store};
use serde_json::{Value, json};

pub const HOSP: &str = "1318814790"; // 東京結び病院 (treats the patient)
pub const CLINIC: &str = "1312345678"; // 結びクリニック (treats the patient)
pub const PHARM: &str = "1348814790"; // さくら薬局
pub const OTHER: &str = "1317777770"; // 丸の内中央病院: same area, has never treated the patient
pub const FAR: &str = "1418814790"; // 横浜結び病院: another prefecture

pub const PASSWORD: &str = "Musubi-pass-2026";

/// The operator account every test network has (made with the bootstrap token).
pub const OPERATOR_LOGIN: &str = "op-admin";
/// Its password, chosen at its first login.
pub const OPERATOR_PASSWORD: &str = "Operator-own-2026";

/// A running server.
pub struct Net {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub svc: Service,
    pub store: Store,
    /// The bootstrap token of the first start: revoked once the operator was made (still valid
    /// on a network started with [`Net::start_bare`]).
    pub bootstrap: String,
    /// The session of the operator [`OPERATOR_LOGIN`] (logged in with password and one-time
    /// code); empty on a bare network.
    pub operator_session: String,
    /// The TOTP secret the operator enrolled.
    pub operator_secret: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Net {
    /// A network whose first operator was made with the bootstrap token and is logged in.
    pub fn start() -> Net {
        let mut net = Net::start_bare();
        let (session, secret) = first_operator(&net.base, &net.bootstrap);
        net.operator_session = session;
        net.operator_secret = secret;
        net
    }

    /// A network on its first start: no operator yet, only the bootstrap token.
    pub fn start_bare() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path()).unwrap();
        let bootstrap = musubi_server::auth::issue(&store, "admin", None, "admin").unwrap();
        let svc = Service::new(store.clone(), "web-test");
        let state = musubi_server::AppState::new(svc.clone(), musubi_server::ServerConfig::default());
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
        Net {
            base: format!("http://{addr}"),
            svc,
            store,
            bootstrap,
            operator_session: String::new(),
            operator_secret: String::new(),
            stop: Some(tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn facility(&self, code: &str, name: &str, class: &str, area: &str, cities: &[&str]) {
        let row = FacilityRow {
            code: code.into(),
            name: name.into(),
            class: class.into(),
            prefecture: code[..2].parse().unwrap(),
            area: area.into(),
            area_name: String::new(),
            discloses: true,
            views: true,
        };
        self.svc
            .register_facility(&Ctx::operator("setup"), row, cities.iter().map(|c| c.to_string()).collect())
            .unwrap();
    }

    /// Creates a clinician; returns the TOTP secret (the password is [`PASSWORD`]).
    pub fn user(&self, login: &str, name: &str, profession: Profession, facilities: &[&str]) -> String {
        let e = self
            .svc
            .create_user(
                &Ctx::operator("setup"),
                NewUser {
                    login: login.into(),
                    name: name.into(),
                    kana: String::new(),
                    profession,
                    facilities: facilities.iter().map(|f| f.to_string()).collect(),
                    password: PASSWORD.into(),
                },
            )
            .unwrap();
        e.totp_secret
    }

    pub fn system_token(&self, facility: &str) -> String {
        musubi_server::auth::issue(&self.store, "system", Some(&facility.parse().unwrap()), &format!("emr-{facility}"))
            .unwrap()
    }

    /// A FHIR call with a bearer token: (status, body).
    pub fn fhir(&self, token: &str, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let http = reqwest::blocking::Client::new();
        let mut r =
            http.request(method, format!("{}/fhir/{}", self.base, path.trim_start_matches('/'))).bearer_auth(token);
        if let Some(b) = body {
            r = r.header("content-type", "application/fhir+json").body(b.to_string());
        }
        let resp = r.send().unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Posts each facility's transaction Bundle with that facility's system token; returns the
    /// Patient id each facility got.
    pub fn load(&self, bundles: &[(String, Value)]) -> HashMap<String, String> {
        let mut ids = HashMap::new();
        for (facility, bundle) in bundles {
            let token = self.system_token(facility);
            let (status, body) = self.fhir(&token, reqwest::Method::POST, "", Some(bundle));
            assert_eq!(status, 200, "{facility}: {body}");
            for e in body["entry"].as_array().unwrap() {
                let loc = e["response"]["location"].as_str().unwrap_or("");
                if let Some(rest) = loc.strip_prefix("Patient/") {
                    ids.insert(facility.clone(), rest.split('/').next().unwrap().to_owned());
                }
            }
        }
        ids
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Creates the first operator with the bootstrap token and logs it in for the first time over
/// the API (its own password, an authenticator, a code): its session token and TOTP secret.
fn first_operator(base: &str, bootstrap: &str) -> (String, String) {
    let http = reqwest::blocking::Client::new();
    let post = |path: &str, token: &str, body: Value| {
        let mut r = http.post(format!("{base}/api{path}")).json(&body);
        if !token.is_empty() {
            r = r.bearer_auth(token);
        }
        let r = r.send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let initial = "Initial-op-2026";
    post("/admin/operators", bootstrap, json!({"login": OPERATOR_LOGIN, "name": "試験 運営", "password": initial}));
    let pending =
        post("/login", "", json!({"login": OPERATOR_LOGIN, "password": initial}))["token"].as_str().unwrap().to_owned();
    post("/login/password", &pending, json!({"password": OPERATOR_PASSWORD}));
    let secret = post("/login/totp/enrol", &pending, json!({}))["totp_secret"].as_str().unwrap().to_owned();
    let code = musubi_service::people::totp_code_now(&secret).unwrap();
    let session = post("/login/totp", &pending, json!({"code": code}))["token"].as_str().unwrap().to_owned();
    (session, secret)
}

/// The network of the tests: five facilities, clinicians, and 髙橋 結衣 with a year of history at
/// the hospital and the clinic plus a 診療情報提供書 from the hospital.
pub struct World {
    pub net: Net,
    /// Patient id at the hospital.
    pub patient: String,
    /// Patient id at the clinic.
    pub clinic_patient: String,
    /// TOTP secrets by login.
    pub secrets: HashMap<&'static str, String>,
}

pub fn world() -> World {
    let net = Net::start();
    net.facility(HOSP, "東京結び病院", "hospital", "1301", &["千代田区", "中央区"]);
    net.facility(CLINIC, "結びクリニック", "clinic", "1301", &[]);
    net.facility(PHARM, "さくら薬局", "pharmacy", "1301", &[]);
    net.facility(OTHER, "丸の内中央病院", "hospital", "1301", &[]);
    net.facility(FAR, "横浜結び病院", "hospital", "1401", &["横浜市"]);
    let mut secrets = HashMap::new();
    secrets.insert("dr-hosp", net.user("dr-hosp", "結城 一郎", Profession::Doctor, &[HOSP]));
    secrets.insert("dr-other", net.user("dr-other", "丸山 次郎", Profession::Doctor, &[OTHER]));
    secrets.insert("dr-two", net.user("dr-two", "二宮 三郎", Profession::Doctor, &[HOSP, CLINIC]));
    secrets.insert("clerk-hosp", net.user("clerk-hosp", "事務 花子", Profession::Clerk, &[HOSP]));
    let plan =
        data::Plan { years: 1, visits_per_year: 4, now_ms: musubi_fhir::datetime::now_ms(), seed: 7, uninformed: true };
    let sites = [
        data::Site { facility: HOSP.into(), local_id: "H-0001".into(), hospital: true },
        data::Site { facility: CLINIC.into(), local_id: "C-0001".into(), hospital: false },
    ];
    let ids = net.load(&data::history(&data::YUI, &sites, &plan));
    let patient = ids[HOSP].clone();
    // She consented to take part in the network (参加同意) at the hospital's desk.
    net.store.participation_for_everyone(musubi_fhir::datetime::now_ms(), "test".into()).unwrap();
    let clinic_patient = ids[CLINIC].clone();
    // The hospital's referral letter (the JP-CLINS example, about this patient, written lately).
    let mut referral = read_json("jp-clins/examples/Bundle-Bundle-CLINS-Referral-Example-01.json");
    let now = musubi_fhir::datetime::now_ms();
    for e in referral["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "Patient" {
            let id = e["resource"]["id"].clone();
            e["resource"] = data::patient(&data::YUI, HOSP, "H-0001");
            e["resource"]["id"] = id;
        }
        if e["resource"]["resourceType"] == "Composition" {
            e["resource"]["date"] = json!(format!("{}T09:00:00+09:00", data::iso_date(now - 20 * data::DAY_MS)));
        }
    }
    referral["timestamp"] = json!(format!("{}T09:00:00+09:00", data::iso_date(now - 20 * data::DAY_MS)));
    let (status, body) = net.fhir(&net.system_token(HOSP), reqwest::Method::POST, "Bundle", Some(&referral));
    assert!(status == 201 || status == 200, "referral: {status} {body}");
    World { net, patient, clinic_patient, secrets }
}

pub fn reference(path: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../reference")).join(path)
}

pub fn read_json(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(reference(path)).unwrap()).unwrap()
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Page {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    }

    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        csrf(&self.text())
    }
}

pub fn csrf(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).unwrap_or_else(|| panic!("no CSRF field in {html}"));
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// `application/x-www-form-urlencoded`.
pub fn form_body(fields: &[(&str, &str)]) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                percent_encoding::utf8_percent_encode(k, SET),
                percent_encoding::utf8_percent_encode(v, SET)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A browser-like client: cookies kept, redirects not followed.
pub struct Web {
    pub base: String,
    pub http: reqwest::blocking::Client,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
}

impl Web {
    pub fn new(net: &Net) -> Web {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::blocking::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Web { base: net.base.clone(), http, jar }
    }

    fn finish(r: reqwest::blocking::Response) -> Page {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let location = headers.get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = r.bytes().unwrap().to_vec();
        Page { status, location, headers, bytes }
    }

    pub fn get(&self, path: &str) -> Page {
        Self::finish(self.http.get(format!("{}{path}", self.base)).send().unwrap())
    }

    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        Self::finish(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form_body(fields))
                .send()
                .unwrap(),
        )
    }

    /// Posts `multipart/form-data`: fields, then files (field name, file name, type, bytes).
    pub fn post_multipart(&self, path: &str, fields: &[(&str, &str)], files: &[(&str, &str, &str, &[u8])]) -> Page {
        let boundary = "----musubi-test-boundary-7f3a";
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
            );
        }
        for (k, name, ctype, data) in files {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n")
                    .as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        Self::finish(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", format!("multipart/form-data; boundary={boundary}"))
                .body(body)
                .send()
                .unwrap(),
        )
    }

    /// Follows one redirect (asserting there is one).
    pub fn follow(&self, p: &Page) -> Page {
        assert!((300..400).contains(&p.status), "expected a redirect, got {}: {}", p.status, p.text());
        self.get(p.location.as_deref().unwrap())
    }

    /// The clinician login: password, then the one-time code; lands on the search page.
    pub fn login_clinician(&self, login: &str, secret: &str, facility: Option<&str>) -> Page {
        let mut f = vec![("login", login), ("password", PASSWORD), ("next", "")];
        if let Some(fac) = facility {
            f.push(("facility", fac));
        }
        let p = self.post("/login", &f);
        assert_eq!(p.status, 200, "{}", p.text());
        assert!(p.text().contains("ワンタイムコード"), "{}", p.text());
        let code = musubi_service::people::totp_code_now(secret).unwrap();
        let p = self.post("/login/code", &[("code", &code), ("next", "/patients")]);
        assert_eq!(p.status, 303, "{}", p.text());
        assert_eq!(p.location.as_deref(), Some("/patients"));
        let p = self.follow(&p);
        assert_eq!(p.status, 200);
        p
    }

    /// The network's operator, logged in (the session made at the start: the browser holds
    /// its cookie, as after `/login?next=/admin`); lands on the console.
    pub fn login_operator(&self, net: &Net) -> Page {
        assert!(!net.operator_session.is_empty(), "a bare network has no operator");
        let url: reqwest::Url = self.base.parse().unwrap();
        self.jar.add_cookie_str(&format!("musubi_session={}; Path=/", net.operator_session), &url);
        let p = self.get("/admin");
        assert_eq!(p.status, 200, "{}", p.text());
        p
    }
}

/// The href of the first link whose text contains `text`.
pub fn link_to(html: &str, text: &str) -> Option<String> {
    let at = html.find(text)?;
    let before = &html[..at];
    let a = before.rfind("<a ")?;
    let tag = &html[a..at];
    let h = tag.find("href=\"")?;
    let rest = &tag[h + 6..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}
