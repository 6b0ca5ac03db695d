//! The pages in a real browser: Debian's headless Chromium driven through chromedriver
//! (WebDriver, fantoccini). A clinician logs in with password and one-time code, finds the
//! patient by kana, opens the patient page and the emergency summary, downloads its PDF (read
//! back with `pdftotext`), writes a referral letter to a clinic with the PDF attached; the
//! clinic's doctor logs in, finds it in the inbox and opens it (received); an operator opens
//! the MPI review queue and keeps two records apart. Screenshots of each step
//! go to `target/test-artifacts/` (the paths are printed).
//!
//! chromedriver must be installed (`scripts/test` installs `chromium` and `chromium-driver`);
//! without it this test fails with a message saying so — it never skips silently.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use fantoccini::{Client, ClientBuilder, Locator};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a free port, in a process group of its own (Chromium runs inside it), so
/// that when dropped — also when a test fails before closing the browser — the group this
/// test started is ended, by its id, and no browser outlives the test.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.wait();
    }
}

fn program(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

fn start_driver() -> Driver {
    let driver = program("CHROMEDRIVER", CHROMEDRIVER);
    let chromium = program("CHROMIUM", CHROMIUM);
    assert!(
        std::path::Path::new(&driver).exists(),
        "chromedriver not found at {driver}: the browser tests need Debian's chromium and chromium-driver \
         (apt-get install chromium chromium-driver; scripts/test installs them)"
    );
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium not found at {chromium}: install Debian's chromium (scripts/test does)"
    );
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {driver}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on port {port} within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Driver { child, port, _profile: tempfile::tempdir().unwrap() }
}

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = artifacts().join(format!("web-{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

async fn body_text(c: &Client) -> String {
    c.find(Locator::Css("body")).await.unwrap().text().await.unwrap()
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

fn pdf_text(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.pdf");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("pdftotext").arg("-layout").arg(&path).arg("-").output().unwrap_or_else(|e| {
        panic!("pdftotext is needed to check the PDF ({e}); install Debian's poppler-utils (scripts/test does)")
    });
    assert!(out.status.success(), "pdftotext failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_clinician_and_an_operator_in_headless_chromium() {
    let driver = start_driver();
    let w = world();
    // A doubtful duplicate at the clinic, for the operator's review queue.
    let mut dup = data::patient(&data::YUI, CLINIC, "C-0002");
    dup["identifier"].as_array_mut().unwrap().truncate(1);
    let (s, b) = w.net.fhir(&w.net.system_token(CLINIC), reqwest::Method::POST, "Patient", Some(&dup));
    assert_eq!(s, 201, "{b}");

    let clinic_secret = w.net.user("dr-clinic", "倉石 四郎", musubi_domain::Profession::Doctor, &[CLINIC]);
    let base = w.net.base.clone();
    let secret = w.secrets["dr-hosp"].clone();
    let upload_dir = tempfile::tempdir().unwrap();
    let upload = upload_dir.path().join("救急用サマリ.pdf");
    // An operator who logs into the console for the first time in the browser (the network's
    // first operator was made with the bootstrap token; this one is made by that operator).
    w.net
        .svc
        .create_operator(&musubi_service::Ctx::operator(OPERATOR_LOGIN), "op-browser", "運営 花子", PASSWORD)
        .unwrap();
    let patient = w.patient.clone();
    let profile = driver._profile.path().display().to_string();
    let webdriver = format!("http://127.0.0.1:{}", driver.port);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (pdf, content_type, disposition) = rt.block_on(async move {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), serde_json::json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": program("CHROMIUM", CHROMIUM),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--disable-crash-reporter", "--disable-breakpad",
                         "--lang=ja", format!("--user-data-dir={profile}"),
                         "--window-size=1280,2000"]
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&webdriver)
            .await
            .unwrap_or_else(|e| panic!("could not open a Chromium session through chromedriver: {e}"));
        c.set_window_size(1280, 2000).await.unwrap();

        // Log in: password, then the one-time code.
        c.goto(&format!("{base}/patients")).await.unwrap();
        assert!(c.current_url().await.unwrap().path() == "/login", "no session: sent to the login");
        type_into(&c, "input[name=login]", "dr-hosp").await;
        type_into(&c, "input[name=password]", PASSWORD).await;
        shot(&c, "01-login").await;
        click(&c, "main button[type=submit]").await;
        c.wait().for_element(Locator::Css("input[name=code]")).await.unwrap();
        let code = musubi_service::people::totp_code_now(&secret).unwrap();
        type_into(&c, "input[name=code]", &code).await;
        click(&c, "main button[type=submit]").await;
        c.wait().for_element(Locator::Css("form.search")).await.unwrap();
        assert_eq!(c.current_url().await.unwrap().path(), "/patients");
        assert!(body_text(&c).await.contains("結城 一郎"));

        // Find the patient by kana and open her page.
        type_into(&c, "input[name=kana]", "タカハシ ユイ").await;
        click(&c, "form.search button[type=submit]").await;
        let link = c.wait().for_element(Locator::LinkText("髙橋 結衣")).await.unwrap();
        shot(&c, "02-search").await;
        link.click().await.unwrap();
        c.wait().for_element(Locator::Css("#h-allergy")).await.unwrap();
        assert_eq!(c.current_url().await.unwrap().path(), format!("/patients/{patient}"));
        let t = body_text(&c).await;
        assert!(t.contains("髙橋 結衣") && t.contains("ペニシリン系抗菌薬") && t.contains("２型糖尿病"), "{t}");
        assert!(t.contains("メトホルミン") && t.contains("HbA1c(NGSP)") && t.contains("東京結び病院"));
        // The stylesheet applied (no inline styles: the CSP allows only /assets/style.css).
        let h = c.find(Locator::Css("header.top")).await.unwrap();
        assert_eq!(h.css_value("background-color").await.unwrap(), "rgba(31, 78, 140, 1)");
        // The lab trend is drawn (inline SVG).
        assert!(!c.find_all(Locator::Css("svg.spark circle")).await.unwrap().is_empty());
        shot(&c, "03-patient").await;

        // The emergency summary.
        c.find(Locator::LinkText("救急用サマリ")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Css("#s-allergy")).await.unwrap();
        let t = body_text(&c).await;
        assert!(
            t.contains("救急用サマリ") && t.contains("アレルギー・禁忌") && t.contains("ペニシリン系抗菌薬"),
            "{t}"
        );
        assert!(t.contains("HCV") && t.contains("陽性"), "{t}");
        shot(&c, "04-summary").await;

        // Its PDF, fetched with the browser's session cookie (what the download link does).
        let href = c.find(Locator::LinkText("PDF をダウンロード")).await.unwrap().attr("href").await.unwrap().unwrap();
        let cookie = c.get_named_cookie("musubi_session").await.unwrap();
        let r = reqwest::Client::new()
            .get(format!("{base}{href}"))
            .header("cookie", format!("musubi_session={}", cookie.value()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        let cd = r.headers()["content-disposition"].to_str().unwrap().to_owned();
        let pdf = r.bytes().await.unwrap().to_vec();

        // A referral letter to the clinic, with the summary PDF attached (a real file upload).
        std::fs::write(&upload, &pdf).unwrap();
        c.goto(&format!("{base}/patients/{patient}")).await.unwrap();
        c.find(Locator::LinkText("紹介状を作成")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Css("textarea[name=purpose]")).await.unwrap();
        assert!(body_text(&c).await.contains("２型糖尿病"), "the letter is drafted from the record");
        click(&c, &format!("select[name=addressee] option[value='{CLINIC}']")).await;
        type_into(&c, "textarea[name=purpose]", "２型糖尿病の血糖管理の継続をお願いします。").await;
        c.find(Locator::Css("input[name=files]"))
            .await
            .unwrap()
            .send_keys(&upload.display().to_string())
            .await
            .unwrap();
        shot(&c, "06-referral-form").await;
        c.find(Locator::XPath("//button[contains(., '送信する')]")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Css("div.notice.ok")).await.unwrap();
        let t = body_text(&c).await;
        assert!(t.contains("紹介状を送信しました") && t.contains("未受領") && t.contains("救急用サマリ.pdf"), "{t}");

        // The clinic's doctor: log out, log in, the inbox, open the letter (received).
        click(&c, "form[action='/logout'] button").await;
        c.wait().for_element(Locator::Css("input[name=login]")).await.unwrap();
        type_into(&c, "input[name=login]", "dr-clinic").await;
        type_into(&c, "input[name=password]", PASSWORD).await;
        click(&c, "main button[type=submit]").await;
        c.wait().for_element(Locator::Css("input[name=code]")).await.unwrap();
        let code = musubi_service::people::totp_code_now(&clinic_secret).unwrap();
        type_into(&c, "input[name=code]", &code).await;
        click(&c, "main button[type=submit]").await;
        c.wait().for_element(Locator::Css("form.search")).await.unwrap();
        c.find(Locator::LinkText("文書送受信")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Css("table.referrals")).await.unwrap();
        let t = body_text(&c).await;
        assert!(t.contains("未受領 1") && t.contains("東京結び病院"), "{t}");
        shot(&c, "07-referral-inbox").await;
        c.find(Locator::Css("table.referrals td a")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Css("article.document")).await.unwrap();
        let t = body_text(&c).await;
        assert!(t.contains("この紹介状を受領しました") && t.contains("受領済み") && t.contains("署名なし"), "{t}");
        assert!(t.contains("２型糖尿病の血糖管理の継続をお願いします。") && t.contains("結城 一郎"), "{t}");
        shot(&c, "08-referral-open").await;

        // The operator: password, their own password and authenticator at this first login,
        // the one-time code; then the MPI review queue side by side.
        c.goto(&format!("{base}/admin/mpi")).await.unwrap();
        assert_eq!(c.current_url().await.unwrap().path(), "/admin/login");
        click(&c, "a[href='/login?next=/admin']").await;
        c.wait().for_element(Locator::Css("input[name=login]")).await.unwrap();
        type_into(&c, "input[name=login]", "op-browser").await;
        type_into(&c, "input[name=password]", PASSWORD).await;
        click(&c, "main button[type=submit]").await;
        let key = c.wait().for_element(Locator::Css("#totp-secret")).await.unwrap().text().await.unwrap();
        let code = musubi_service::people::totp_code_now(&key.replace(' ', "")).unwrap();
        type_into(&c, "input[name=new_password]", "Hanako-own-2026").await;
        type_into(&c, "input[name=code]", &code).await;
        click(&c, "main button[type=submit]").await;
        c.wait().for_element(Locator::Css("div.doors")).await.unwrap();
        c.goto(&format!("{base}/admin/mpi")).await.unwrap();
        c.wait().for_element(Locator::Css("table.side")).await.unwrap();
        let t = body_text(&c).await;
        assert!(t.contains("名寄せの確認") && t.contains("C-0002") && t.contains("髙橋 結衣"), "{t}");
        shot(&c, "05-mpi-queue").await;
        // Keep them apart with one click; the queue empties.
        let apart = c.find(Locator::XPath("//button[contains(., '別人として分ける')]")).await.unwrap();
        apart.click().await.unwrap();
        c.wait().for_element(Locator::Css("div.notice.ok")).await.unwrap();
        assert!(body_text(&c).await.contains("別人として分けました"));

        c.close().await.unwrap();
        (pdf, ct, cd)
    });

    assert_eq!(content_type, "application/pdf");
    assert!(disposition.contains("musubi-summary-") && disposition.contains(".pdf"), "{disposition}");
    let text = pdf_text(&pdf);
    assert!(text.contains("髙橋 結衣"), "the kanji name in the PDF: {text}");
    assert!(text.contains("ペニシリン系抗菌薬"), "the allergy in the PDF: {text}");
    assert!(text.contains("メトホルミン"), "the medication in the PDF: {text}");
    let path = artifacts().join("web-summary.pdf");
    std::fs::write(&path, &pdf).unwrap();
    println!("pdf: {}", path.display());
    drop(driver);
}
