//! Issue 12 in the pages: the operator disables a clinician from the console and the
//! clinician's open session ends at once; enabled again, they log in; the operator's other
//! account actions (end sessions, reset the second factor with enrolment at the next login)
//! work from the console; a clinician logs out everywhere.

use crate::common::*;
use musubi_domain::Profession;

#[test]
fn the_console_disables_a_clinician_and_their_session_ends() {
    let net = Net::start();
    net.facility(HOSP, "東京結び病院", "hospital", "1301", &["千代田区"]);
    let secret = net.user("dr-web", "結 一郎", Profession::Doctor, &[HOSP]);
    let dr = Web::new(&net);
    dr.login_clinician("dr-web", &secret, None);
    assert_eq!(dr.get("/patients").status, 200);

    let op = Web::new(&net);
    let page = op.login_operator(&net.admin_token);
    let csrf = page.csrf();
    let users = op.get("/admin/users");
    assert!(users.text().contains("/admin/users/dr-web/disable"), "{}", users.text());
    let r = op.post("/admin/users/dr-web/disable", &[("csrf", &csrf)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("停止しました"), "{}", r.text());
    let after = dr.get("/patients");
    assert_eq!(after.status, 303, "a disabled clinician's session ends at once");
    assert!(after.location.as_deref().unwrap_or("").starts_with("/login"));
    // Without the CSRF token nothing happens.
    assert_eq!(op.post("/admin/users/dr-web/enable", &[("csrf", "x")]).status, 403);
    let r = op.post("/admin/users/dr-web/enable", &[("csrf", &csrf)]);
    assert!(r.text().contains("再開しました"), "{}", r.text());

    // Reset the second factor: at the next login the clinician enrols a new authenticator,
    // whose key only they see.
    let r = op.post("/admin/users/dr-web/reset-second-factor", &[("csrf", &csrf)]);
    assert!(r.text().contains("初期化しました"), "{}", r.text());
    assert!(!r.text().contains(&secret));
    let dr = Web::new(&net);
    let p = dr.post("/login", &[("login", "dr-web"), ("password", PASSWORD), ("next", "")]);
    assert_eq!(p.status, 200, "{}", p.text());
    let text = p.text();
    assert!(text.contains("はじめてのログイン"), "{text}");
    let key_start = text.find("id=\"totp-secret\">").unwrap() + "id=\"totp-secret\">".len();
    let new_secret: String = text[key_start..].chars().take_while(|c| *c != '<').filter(|c| *c != ' ').collect();
    let code = musubi_service::people::totp_code_now(&new_secret).unwrap();
    let p = dr.post("/login/code", &[("code", &code), ("next", "/patients")]);
    assert_eq!(p.status, 303, "{}", p.text());
    let patients = dr.follow(&p);
    assert_eq!(patients.status, 200);

    // A user created from the console (self-enrolment is the default there): the operator
    // never sees a key.
    let r = op.post(
        "/admin/users",
        &[
            ("csrf", &csrf),
            ("login", "ns-self"),
            ("name", "看護 結"),
            ("profession", "nurse"),
            ("facilities", HOSP),
            ("password", PASSWORD),
            ("self_enrol", "1"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("初回ログイン時に本人が認証アプリを登録します"), "{}", r.text());
    assert!(!r.text().contains("otpauth://"));
    assert!(op.get("/admin/users").text().contains(r#"name="self_enrol" value="1" checked"#));
    let ns = Web::new(&net);
    let p = ns.post("/login", &[("login", "ns-self"), ("password", PASSWORD), ("next", "")]);
    let text = p.text();
    assert!(text.contains("はじめてのログイン") && text.contains("otpauth://"), "{text}");
    assert!(text.contains("新しいパスワード"), "they choose their own password: {text}");
    let key_start = text.find("id=\"totp-secret\">").unwrap() + "id=\"totp-secret\">".len();
    let ns_secret: String = text[key_start..].chars().take_while(|c| *c != '<').filter(|c| *c != ' ').collect();
    let code = musubi_service::people::totp_code_now(&ns_secret).unwrap();
    let same =
        [("code", code.as_str()), ("next", "/patients"), ("needs_new_password", "1"), ("new_password", PASSWORD)];
    let r = ns.post("/login/code", &same);
    assert_eq!(r.status, 400, "not the password the operator set: {}", r.text());
    assert!(r.text().contains("新しいパスワード"), "the form asks again");
    let chosen = [
        ("code", code.as_str()),
        ("next", "/patients"),
        ("needs_new_password", "1"),
        ("new_password", "Yui-own-pass-9"),
    ];
    let r = ns.post("/login/code", &chosen);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(ns.follow(&r).status, 200);

    // Log out everywhere (the API test checks that other devices' sessions end too).
    let csrf_dr = patients.csrf();
    assert!(patients.text().contains("すべての端末からログアウト"));
    let r = dr.post("/logout/everywhere", &[("csrf", &csrf_dr)]);
    assert_eq!(r.status, 303);
    assert_eq!(dr.get("/patients").status, 303);
}

/// A named operator logs into the console with password and one-time code (choosing their own
/// password and enrolling their own authenticator the first time); the bootstrap token no
/// longer opens the console once an operator exists.
#[test]
fn a_named_operator_uses_the_console() {
    let net = Net::start();
    net.facility(HOSP, "東京結び病院", "hospital", "1301", &["千代田区"]);
    net.user("dr-web", "結 一郎", Profession::Doctor, &[HOSP]);
    let admin = musubi_service::Ctx {
        actor: musubi_gate::Actor::Admin { name: "admin".into() },
        address: None,
        base_url: String::new(),
    };
    net.svc.create_operator(&admin, "op-web", "山田 運営", PASSWORD).unwrap();

    let op = Web::new(&net);
    let page = op.get("/admin/login");
    assert!(page.text().contains("/login?next=/admin"), "{}", page.text());
    let p = op.post("/login", &[("login", "op-web"), ("password", PASSWORD), ("next", "/admin")]);
    assert_eq!(p.status, 200, "{}", p.text());
    let text = p.text();
    assert!(text.contains("新しいパスワード") && text.contains("はじめてのログイン"), "{text}");
    let key_start = text.find("id=\"totp-secret\">").unwrap() + "id=\"totp-secret\">".len();
    let secret: String = text[key_start..].chars().take_while(|c| *c != '<').filter(|c| *c != ' ').collect();
    let code = musubi_service::people::totp_code_now(&secret).unwrap();
    let r = op.post(
        "/login/code",
        &[("code", &code), ("next", "/admin"), ("needs_new_password", "1"), ("new_password", "Yamada-own-2026")],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.location.as_deref(), Some("/admin"));
    let users = op.get("/admin/users");
    assert_eq!(users.status, 200, "{}", users.text());
    let csrf = users.csrf();
    let r = op.post("/admin/users/dr-web/disable", &[("csrf", &csrf)]);
    assert!(r.text().contains("停止しました"), "{}", r.text());
    let report = op.get("/admin/audit?user=op-web");
    assert!(report.text().contains("disable-user"), "audited under the operator's name: {}", report.text());

    // The bootstrap token expired when the operator was created.
    let other = Web::new(&net);
    let r = other.post("/admin/login", &[("token", &net.admin_token)]);
    assert_eq!(r.status, 401, "{}", r.text());
    // Logging out of the console ends the operator's session.
    let r = op.post("/admin/logout", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    assert_eq!(op.get("/admin/users").status, 303);
}
