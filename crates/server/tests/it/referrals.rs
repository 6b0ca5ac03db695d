//! Referral exchange (文書送受信) end to end over HTTP, on both stores: a doctor sends a
//! 診療情報提供書 with a 退院時サマリー and a PDF; the addressee's inbox shows it not yet received;
//! a clerk there may list but not open it; another facility cannot read it (404, audited as
//! denied); the addressee's doctor opens it and it is received, with the time and who; the
//! sender's outbox shows that; a reply comes back linked; the retention sweep deletes the received
//! referral 7 days after receipt and the unreceived reply 6 months after sending. Signatures
//! made with the `openssl` command are checked against roots configured in the service.

use crate::common::*;
use base64::Engine;
use musubi_service::{Ctx, Service};
use musubi_store::Store;
use serde_json::{Value, json};

/// The reference example's Bundle identifier facility (sender) and its 紹介先 (addressee).
const SENDER: &str = "1318814790";
const ADDRESSEE: &str = "1311234567";
const OTHER: &str = "1319999990";
const DAY: i64 = 86_400_000;

/// A server whose service checks signatures against `roots`.
struct RefServer {
    base: String,
    admin: String,
    store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl RefServer {
    fn start(store: Store, dir: tempfile::TempDir, roots: musubi_service::signature::TrustRoots) -> RefServer {
        let admin = musubi_server::auth::issue(&store, "admin", None, "admin").unwrap();
        let svc = Service::new(store.clone(), "test");
        svc.set_trust_roots(roots);
        let state = musubi_server::AppState::new(svc, musubi_server::ServerConfig::default());
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
        RefServer { base: format!("http://{addr}/fhir"), admin, store, stop: Some(tx), thread: Some(thread), _dir: dir }
    }

    fn client(&self, token: &str) -> Client {
        Client { base: self.base.clone(), token: token.to_owned(), http: reqwest::blocking::Client::new() }
    }

    fn token(&self, facility: &str, name: &str) -> String {
        musubi_server::auth::issue(&self.store, "system", Some(&facility.parse().unwrap()), name).unwrap()
    }

    /// Sweeps as the operator would from the command line, at `now`.
    fn sweep(&self, now: i64) -> musubi_service::retention::SweepReport {
        Service::new(self.store.clone(), "cli").retention_sweep(&Ctx::operator("test"), now).unwrap()
    }
}

impl Drop for RefServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn login(s: &RefServer, login: &str, password: &str, secret: &str) -> Client {
    let r = api(&s.client(""), reqwest::Method::POST, "/login", Some(json!({"login": login, "password": password})));
    assert_eq!(r.status, 200, "login {login}: {}", r.text);
    let c = s.client(r.body["token"].as_str().unwrap());
    let code = musubi_service::people::totp_code_now(secret).unwrap();
    let r = api(&c, reqwest::Method::POST, "/login/totp", Some(json!({"code": code})));
    assert_eq!(r.status, 200, "{}", r.text);
    // The login completes under a new token; the pending one is dead.
    let mut c = c;
    c.token = r.body["token"].as_str().unwrap().to_owned();
    c
}

fn user(s: &RefServer, login_name: &str, profession: &str, facility: &str) -> Client {
    let pw = "Musubi-pass-2026";
    let r = api(
        &s.client(&s.admin),
        reqwest::Method::POST,
        "/admin/users",
        Some(
            json!({"login": login_name, "name": format!("{login_name} 先生"), "profession": profession, "facilities": [facility], "password": pw}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    login(s, login_name, pw, r.body["totp_secret"].as_str().unwrap())
}

fn facilities(s: &RefServer) {
    for (code, name, class) in [
        (SENDER, "結び総合病院", "hospital"),
        (ADDRESSEE, "むすびクリニック", "clinic"),
        (OTHER, "よその病院", "hospital"),
    ] {
        let r = api(
            &s.client(&s.admin),
            reqwest::Method::POST,
            "/admin/facilities",
            Some(json!({"code": code, "name": name, "class": class, "prefecture": 13, "area": "1301"})),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
}

fn example() -> Value {
    read_json(&reference_dir().join("jp-clins/examples/Bundle-Bundle-CLINS-Referral-Example-01.json"))
}

fn referral_doc(local: &str) -> Value {
    let mut d = example();
    d["identifier"]["value"] = json!(format!("{SENDER}^2024^{local}"));
    d
}

/// A reply letter from the addressee: the example with the two facilities swapped.
fn reply_doc(local: &str) -> Value {
    let text =
        example().to_string().replace(SENDER, "XXXXXXXXXX").replace(ADDRESSEE, SENDER).replace("XXXXXXXXXX", ADDRESSEE);
    let mut d: Value = serde_json::from_str(&text).unwrap();
    d["identifier"]["value"] = json!(format!("{ADDRESSEE}^2024^{local}"));
    d
}

/// A 退院時サマリー built from the example's resources with the sections the eDischargeSummary
/// profile requires.
fn discharge_doc(local: &str) -> Value {
    let mut d = referral_doc(local);
    d["meta"]["profile"] = json!(["http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_eDischargeSummary|1"]);
    let purpose = "urn:uuid:3acc3dc7-c79b-41f1-8eea-ac4de9b664b8";
    d["entry"].as_array_mut().unwrap().retain(|e| e["fullUrl"] != purpose);
    let section = |code: &str, title: &str, refs: &[(&str, &str)]| {
        let mut s = json!({"title": title, "code": {"coding": [{"system": "http://jpfhir.jp/fhir/clins/CodeSystem/document-section", "code": code}]},
            "text": {"status": "additional", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{title}</div>")}});
        if !refs.is_empty() {
            s["entry"] = refs.iter().map(|(u, t)| json!({"reference": format!("urn:uuid:{u}"), "type": t})).collect();
        }
        s
    };
    let enc = ("7cad1f19-3435-451d-9a71-a81b61f3358e", "Encounter");
    let cc1 = ("6a31db8e-109d-4349-b0cf-095131c3307a", "Condition");
    let structured = json!([
        section("322", "入院時詳細", &[enc]),
        section("342", "入院時診断", &[cc1]),
        section("352", "主訴", &[("a9358f3e-c743-4998-aa89-1be54c31b432", "Condition")]),
        section("312", "入院理由", &[]),
        section("362", "現病歴", &[("5eab50b2-6741-467c-a2fd-a4adab1f835f", "Condition")]),
        section("333", "入院中経過", &[("a6e4fc73-a749-4583-94a7-18e4241b4c75", "DocumentReference")]),
        section("324", "退院時詳細", &[enc]),
        section("344", "退院時診断", &[cc1]),
        section("444", "退院時投薬指示", &[]),
        section("424", "退院時方針指示", &[]),
    ]);
    let c = &mut d["entry"][0]["resource"];
    c["meta"]["profile"] =
        json!(["http://jpfhir.jp/fhir/eDischargeSummary/StructureDefinition/JP_Composition_eDischargeSummary|1"]);
    c["type"]["coding"][0]["code"] = json!("18842-5");
    c["type"]["coding"][0]["display"] = json!("退院時サマリー");
    c["category"] = json!([{"coding": [{"system": "http://jpfhir.jp/fhir/Common/CodeSystem/doc-subtypecodes", "code": "DISCHARGE"}]}]);
    c["title"] = json!("退院時サマリー");
    c["event"] = json!([{"period": {"start": "2020-08-01", "end": "2020-08-20"}}]);
    for s in c["section"].as_array_mut().unwrap() {
        if s["code"]["coding"][0]["code"] == "300" {
            s["section"] = structured.clone();
        }
    }
    d
}

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n";

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn get(c: &Client, path: &str) -> Resp {
    api(c, reqwest::Method::GET, path, None)
}

fn post(c: &Client, path: &str, body: Value) -> Resp {
    api(c, reqwest::Method::POST, path, Some(body))
}

fn scenario(s: &RefServer) {
    facilities(s);
    let dr_send = user(s, "dr-send", "doctor", SENDER);
    let dr_to = user(s, "dr-to", "doctor", ADDRESSEE);
    let clerk_to = user(s, "clerk-to", "clerk", ADDRESSEE);
    let dr_other = user(s, "dr-other", "doctor", OTHER);
    let admin = s.client(&s.admin);

    // Send: the document, a discharge summary and a PDF.
    let r = post(
        &dr_send,
        "/referrals",
        json!({"document": referral_doc("R-100"), "discharge_summary": discharge_doc("R-100-DS"),
               "attachments": [{"filename": "紹介状 写し.pdf", "content_type": "application/pdf", "data": b64(PDF)}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.headers["location"], format!("/api/referrals/{id}").as_str());
    assert_eq!(r.body["status"], "sent");
    assert_eq!(r.body["addressee"], json!({"code": ADDRESSEE, "name": "むすびクリニック"}));
    assert_eq!(r.body["patient"]["name"], "牧野 爛漫");
    assert_eq!(r.body["has_discharge_summary"], true);
    assert_eq!(r.body["signature"]["status"], "unsigned");
    // A bad file type is refused with a Japanese OperationOutcome.
    let bad = post(
        &dr_send,
        "/referrals",
        json!({"document": referral_doc("R-101"), "attachments": [{"filename": "x.pdf", "content_type": "application/pdf", "data": b64(b"MZ\x90\x00")}]}),
    );
    assert_eq!(bad.status, 415, "{}", bad.text);
    assert_eq!(bad.body["resourceType"], "OperationOutcome");
    assert!(bad.diagnostics().contains("x.pdf の内容が PDF ではありません"), "{}", bad.text);

    // The addressee's inbox: not yet received. The clerk lists it, but may not open it.
    let inbox = get(&clerk_to, "/referrals/inbox");
    assert_eq!(inbox.status, 200, "{}", inbox.text);
    let items = inbox.body["referrals"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!((items[0]["id"].as_str(), items[0]["status_label"].as_str()), (Some(id.as_str()), Some("未受領")));
    assert_eq!(items[0]["received_at"], Value::Null);
    assert_eq!(items[0]["sender"]["name"], "結び総合病院");
    let denied = get(&clerk_to, &format!("/referrals/{id}"));
    assert_eq!(denied.status, 403, "{}", denied.text);
    assert!(denied.diagnostics().contains("事務職は診療情報提供書の内容を閲覧できません"), "{}", denied.text);

    // Another facility: nothing to see, and the attempt is audited as denied.
    assert_eq!(get(&dr_other, &format!("/referrals/{id}")).status, 404);
    assert_eq!(get(&dr_other, &format!("/referrals/{id}/files/0")).status, 404);
    assert_eq!(get(&dr_other, "/referrals/inbox").body["referrals"], json!([]));
    assert_eq!(get(&dr_other, &format!("/referrals/inbox?facility={ADDRESSEE}")).status, 403);
    let audits = admin.get("AuditEvent?agent=dr-other&outcome=8");
    assert!(audits.body["total"].as_i64().unwrap() >= 2, "{}", audits.text);

    // The sender still sees it as not received.
    let out = get(&dr_send, "/referrals/outbox");
    assert_eq!(out.body["referrals"][0]["status"], "sent", "{}", out.text);

    // The addressee's doctor opens it: received, with the time and who.
    let open = get(&dr_to, &format!("/referrals/{id}"));
    assert_eq!(open.status, 200, "{}", open.text);
    assert_eq!(open.body["received_now"], true);
    assert_eq!(open.body["status"], "received");
    assert_eq!(open.body["status_label"], "受領済み");
    assert_eq!(open.body["received_by"], "dr-to");
    assert_eq!(open.body["received_by_name"], "dr-to 先生（医師）");
    let received_at = open.body["received_at"].as_str().unwrap().to_owned();
    let at = musubi_fhir::datetime::parse_range(&received_at).unwrap().lo;
    assert!((musubi_fhir::datetime::now_ms() - at).abs() < 60_000, "{received_at}");
    assert_eq!(open.body["document"]["identifier"]["value"], format!("{SENDER}^2024^R-100"));
    assert_eq!(open.body["discharge_summary"]["entry"][0]["resource"]["title"], "退院時サマリー");
    assert_eq!(open.body["signature_report"]["status"], "unsigned");
    assert_eq!(open.body["files"][0]["filename"], "紹介状 写し.pdf");
    let bundle_id = open.body["bundle_id"].as_str().unwrap().to_owned();
    // The file comes back as sent.
    let file = dr_to
        .http
        .get(format!("{}/api/referrals/{id}/files/0", s.base.trim_end_matches("/fhir")))
        .bearer_auth(&dr_to.token)
        .send()
        .unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "application/pdf");
    assert_eq!(file.headers()["x-content-type-options"], "nosniff");
    let disposition = file.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(
        disposition.contains("filename*=UTF-8''%E7%B4%B9%E4%BB%8B%E7%8A%B6%20%E5%86%99%E3%81%97%2Epdf"),
        "{disposition}"
    );
    assert_eq!(file.bytes().unwrap().as_ref(), PDF);

    // The sender's outbox shows the receipt.
    let out = get(&dr_send, "/referrals/outbox");
    let r0 = &out.body["referrals"][0];
    assert_eq!(
        (r0["status"].as_str(), r0["received_by_name"].as_str()),
        (Some("received"), Some("dr-to 先生（医師）"))
    );
    assert_eq!(r0["received_at"], received_at.as_str());

    // A reply (返書) comes back, linked to the original.
    let reply = post(&dr_to, &format!("/referrals/{id}/reply"), json!({"document": reply_doc("ANS-100")}));
    assert_eq!(reply.status, 201, "{}", reply.text);
    let reply_id = reply.body["id"].as_str().unwrap().to_owned();
    assert_eq!(reply.body["reply_to"], id.as_str());
    assert_eq!(reply.body["addressee"]["code"], SENDER);
    assert_eq!(
        post(&dr_send, &format!("/referrals/{id}/reply"), json!({"document": reply_doc("ANS-101")})).status,
        403
    );
    let inbox = get(&dr_send, "/referrals/inbox");
    assert_eq!(inbox.body["referrals"][0]["reply_to"], id.as_str(), "{}", inbox.text);
    assert_eq!(get(&dr_send, "/referrals/outbox").body["referrals"][0]["replies"], json!([reply_id]));

    // The sweep: operators only; nothing is due today.
    assert_eq!(post(&dr_send, "/admin/retention-sweep", json!({})).status, 403);
    let sweep = post(&admin, "/admin/retention-sweep", json!({}));
    assert_eq!(sweep.status, 200, "{}", sweep.text);
    assert_eq!(
        (sweep.body["referrals_received"].as_u64(), sweep.body["referrals_expired"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(sweep.body["summary"].as_str().unwrap().starts_with("保存期間による削除"));
    // Eight days later the received referral is gone, with its document and file.
    let now = musubi_fhir::datetime::now_ms();
    let report = s.sweep(now + 8 * DAY);
    assert_eq!((report.referrals_received, report.referrals_expired), (1, 0));
    let gone = get(&dr_to, &format!("/referrals/{id}"));
    assert_eq!(gone.status, 410, "{}", gone.text);
    assert!(gone.diagnostics().contains("受領から7日"), "{}", gone.text);
    assert_eq!(get(&dr_to, &format!("/referrals/{id}/files/0")).status, 410);
    assert_eq!(admin.get(&format!("Bundle/{bundle_id}")).status, 410);
    assert_eq!(get(&dr_send, "/referrals/outbox").body["referrals"], json!([]));
    let all = get(&dr_send, "/referrals/outbox?include_deleted=true");
    assert_eq!(all.body["referrals"][0]["status"], "deleted", "{}", all.text);
    assert_eq!(all.body["referrals"][0]["patient"], Value::Null, "nothing of the letter is left in the list");
    // The reply, never received, stays until six months after it was sent.
    assert_eq!(s.sweep(now + 30 * DAY).referrals_expired, 0);
    assert_eq!(s.sweep(now + 190 * DAY).referrals_expired, 1);
    assert_eq!(get(&dr_send, &format!("/referrals/{reply_id}")).status, 410);
    // Running it again changes nothing.
    let again = s.sweep(now + 190 * DAY);
    assert_eq!((again.referrals_received, again.referrals_expired, again.records_total()), (0, 0, 0));
}

#[test]
fn referral_exchange_and_retention_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).unwrap();
    scenario(&RefServer::start(store, dir, musubi_service::signature::TrustRoots::empty()));
}

#[test]
fn referral_exchange_and_retention_postgres() {
    let db = FreshDb::new("musubi_referral_http");
    {
        let store = Store::open_postgres(&db.url).unwrap();
        let server =
            RefServer::start(store, tempfile::tempdir().unwrap(), musubi_service::signature::TrustRoots::empty());
        scenario(&server);
    }
}

/// A small PKI made with the `openssl` command: a root the service trusts, a signer, a signer
/// whose certificate expired, and a signer under a root the service does not know.
struct OpenSslPki {
    dir: tempfile::TempDir,
}

impl OpenSslPki {
    fn new() -> OpenSslPki {
        let dir = tempfile::tempdir().unwrap();
        let pki = OpenSslPki { dir };
        std::fs::write(
            pki.path("ca.cnf"),
            "[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n\
             [v3_ee]\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,nonRepudiation\n\
             [ca]\ndefault_ca=ca_default\n[ca_default]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\n\
             default_md=sha256\npolicy=policy_any\nunique_subject=no\n[policy_any]\ncommonName=supplied\n",
        )
        .unwrap();
        std::fs::write(pki.path("index.txt"), "").unwrap();
        std::fs::write(pki.path("serial"), "01\n").unwrap();
        for (root, cn) in [("root", "Musubi Test HPKI Root"), ("other", "Unknown Root")] {
            pki.run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{root}.key"),
                "-out",
                &format!("{root}.pem"),
                "-days",
                "3650",
                "-subj",
                &format!("/C=JP/O=Musubi/CN={cn}"),
                "-config",
                "ca.cnf",
                "-extensions",
                "v3_ca",
            ]);
        }
        for (name, root, dates) in [
            ("signer", "root", ["-days", "365"].as_slice()),
            ("expired", "root", ["-startdate", "20200101000000Z", "-enddate", "20210101000000Z"].as_slice()),
            ("stranger", "other", ["-days", "365"].as_slice()),
        ] {
            pki.run(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/C=JP/CN=Dr {name}"),
                "-config",
                "ca.cnf",
            ]);
            let mut args = vec!["ca", "-batch", "-config", "ca.cnf", "-notext", "-extensions", "v3_ee"];
            let (cert, key, csr, out) =
                (format!("{root}.pem"), format!("{root}.key"), format!("{name}.csr"), format!("{name}.pem"));
            args.extend(["-cert", &cert, "-keyfile", &key, "-in", &csr, "-out", &out]);
            args.extend(dates);
            pki.run(&args);
        }
        pki
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("the openssl command is needed for this test (Debian package openssl)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A CMS signature (DER) by `who` over `content`; detached unless `envelope`.
    fn sign(&self, who: &str, content: &[u8], envelope: bool) -> Vec<u8> {
        std::fs::write(self.path("content"), content).unwrap();
        let (cert, key) = (format!("{who}.pem"), format!("{who}.key"));
        let mut args = vec![
            "cms", "-sign", "-binary", "-in", "content", "-signer", &cert, "-inkey", &key, "-outform", "DER", "-out",
            "sig.der",
        ];
        if envelope {
            args.push("-nodetach");
        }
        self.run(&args);
        std::fs::read(self.path("sig.der")).unwrap()
    }
}

#[test]
fn signed_referrals_show_the_signature_result() {
    let pki = OpenSslPki::new();
    let roots = musubi_service::signature::TrustRoots::load(&[pki.path("root.pem")]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = RefServer::start(Store::open_sqlite(dir.path()).unwrap(), dir, roots);
    facilities(&s);
    // A facility system sends; a doctor at the addressee opens.
    let emr = s.client(&s.token(SENDER, "emr"));
    let dr_to = user(&s, "dr-sig", "doctor", ADDRESSEE);
    let send = |local: &str, signer: &str, tamper: bool| {
        let text = referral_doc(local).to_string();
        let sig = pki.sign(signer, text.as_bytes(), false);
        let sent = if tamper { text.replace("牧野", "槙野") } else { text };
        // The document as a string: the exact bytes the signature covers.
        let r = post(&emr, "/referrals", json!({"document": sent, "signature": b64(&sig)}));
        assert_eq!(r.status, 201, "{}", r.text);
        r.body
    };
    let cases = [
        (send("S-1", "signer", false), "valid", "署名有効"),
        (send("S-2", "signer", true), "invalid-signature", "署名不正"),
        (send("S-3", "stranger", false), "untrusted-chain", "信頼できない証明書"),
        (send("S-4", "expired", false), "expired", "証明書期限切れ"),
    ];
    for (sent, status, label) in &cases {
        assert_eq!(sent["signature"], json!({"status": status, "label": label}), "{sent}");
        let open = get(&dr_to, &format!("/referrals/{}", sent["id"].as_str().unwrap()));
        assert_eq!(open.status, 200, "{}", open.text);
        assert_eq!(open.body["signature_report"]["status"], *status, "{}", open.text);
        assert!(!open.body["signature_report"]["message"].as_str().unwrap().is_empty());
    }
    let valid = get(&dr_to, &format!("/referrals/{}", cases[0].0["id"].as_str().unwrap()));
    assert_eq!(valid.body["signature_report"]["signer"]["subject"], "CN=Dr signer");
    assert_eq!(valid.body["signature_report"]["signer"]["chain"], json!(["CN=Musubi Test HPKI Root,O=Musubi,C=JP"]));
    let tampered = get(&dr_to, &format!("/referrals/{}", cases[1].0["id"].as_str().unwrap()));
    assert!(tampered.body["signature_report"]["message"].as_str().unwrap().contains("改ざん"), "{}", tampered.text);
    // Enveloping, with the document left out: it is taken from the signature (PEM accepted too).
    let doc = referral_doc("S-5").to_string();
    let der = pki.sign("signer", doc.as_bytes(), true);
    let pem = format!(
        "-----BEGIN PKCS7-----\n{}\n-----END PKCS7-----\n",
        b64(&der).as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\n")
    );
    let r = post(&emr, "/referrals", json!({"signature": pem}));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["signature"]["status"], "valid");
    assert_eq!(r.body["patient"]["name"], "牧野 爛漫");
    // A document sent as base64 bytes.
    let doc = referral_doc("S-6").to_string();
    let sig = pki.sign("signer", doc.as_bytes(), false);
    let r = post(&emr, "/referrals", json!({"document_base64": b64(doc.as_bytes()), "signature": b64(&sig)}));
    assert_eq!(r.body["signature"]["status"], "valid", "{}", r.text);
    // Garbage in the signature field: 400 naming the field.
    let r = post(&emr, "/referrals", json!({"document": referral_doc("S-7"), "signature": "not base64!"}));
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.expressions(), vec!["signature"]);
    // The operator sees the configured roots.
    let roots = get(&s.client(&s.admin), "/admin/trust-roots");
    assert_eq!(roots.body, json!({"count": 1, "subjects": ["CN=Musubi Test HPKI Root,O=Musubi,C=JP"]}));
    assert_eq!(get(&dr_to, "/admin/trust-roots").status, 403);
}
