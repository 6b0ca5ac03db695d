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
    let page = op.login_operator(&net);
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
    // Made by the network's first operator (who was made with the bootstrap token).
    net.svc.create_operator(&musubi_service::Ctx::operator(OPERATOR_LOGIN), "op-web", "山田 運営", PASSWORD).unwrap();

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
    let r = other.post("/admin/login", &[("token", &net.bootstrap)]);
    assert_eq!(r.status, 401, "{}", r.text());
    // Logging out of the console ends the operator's session.
    let r = op.post("/admin/logout", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    assert_eq!(op.get("/admin/users").status, 303);
}

/// On a first start the console opened with the bootstrap token shows one page, 「最初の運営者を
/// 作成」: every other console page refuses it (403, saying to create an operator and log in with
/// it). Creating the operator revokes the token; the operator then logs in with password and
/// one-time code.
#[test]
fn the_bootstrap_token_opens_only_the_first_operator_page() {
    let net = Net::start_bare();
    net.facility(HOSP, "東京結び病院", "hospital", "1301", &["千代田区"]);
    net.user("dr-web", "結 一郎", Profession::Doctor, &[HOSP]);
    let boot = Web::new(&net);
    let r = boot.post("/admin/login", &[("token", &net.bootstrap)]);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.location.as_deref(), Some("/admin/first-operator"));
    let form = boot.follow(&r);
    assert_eq!(form.status, 200, "{}", form.text());
    assert!(form.text().contains("最初の運営者を作成"), "{}", form.text());
    let csrf = form.csrf();

    // Every other page: 403 with the message, never the data.
    for path in ["/admin", "/admin/users", "/admin/facilities", "/admin/audit", "/admin/audit?format=csv", "/admin/mpi"]
    {
        let p = boot.get(path);
        assert_eq!(p.status, 403, "{path}: {}", p.text());
        let t = p.text();
        assert!(t.contains("管理者トークンは最初の運営者アカウントの作成にだけ使えます"), "{path}: {t}");
        assert!(t.contains("/admin/first-operator"), "{path}: a way to the one page it may use");
        assert!(!t.contains("dr-web") && !t.contains("東京結び病院"), "{path}: {t}");
    }
    let p = boot.post("/admin/users/dr-web/disable", &[("csrf", &csrf)]);
    assert_eq!(p.status, 403, "{}", p.text());
    assert!(!net.store.read(|r| r.user_by_login("dr-web")).unwrap().unwrap().disabled);
    // Nor does the token open the FHIR API or the JSON API.
    let (status, body) = net.fhir(&net.bootstrap, reqwest::Method::GET, "Patient?_count=1", None);
    assert_eq!(status, 403, "{body}");

    // Without the CSRF token, or with a weak password, nothing is made.
    let fields = [("login", "op-first"), ("name", "山田 運営"), ("password", "Initial-op-2026")];
    assert_eq!(boot.post("/admin/first-operator", &fields).status, 403);
    let weak = [("csrf", csrf.as_str()), ("login", "op-first"), ("name", "山田 運営"), ("password", "short")];
    let r = boot.post("/admin/first-operator", &weak);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(net.store.read(|r| r.user_by_login("op-first")).unwrap().is_none());
    let mut with = fields.to_vec();
    with.push(("csrf", &csrf));
    let r = boot.post("/admin/first-operator", &with);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("運営者アカウント op-first を作成しました"), "{}", r.text());
    assert!(r.text().contains("/login?next=/admin"));
    // The token is revoked: its console session ends, and it opens nothing any more.
    assert_eq!(boot.get("/admin/first-operator").status, 303);
    let again = Web::new(&net);
    assert_eq!(again.post("/admin/login", &[("token", &net.bootstrap)]).status, 401);

    // The operator logs in: their own password, their own authenticator, the code.
    let op = Web::new(&net);
    let p = op.post("/login", &[("login", "op-first"), ("password", "Initial-op-2026"), ("next", "/admin")]);
    assert_eq!(p.status, 200, "{}", p.text());
    let text = p.text();
    let key_start = text.find("id=\"totp-secret\">").unwrap() + "id=\"totp-secret\">".len();
    let secret: String = text[key_start..].chars().take_while(|c| *c != '<').filter(|c| *c != ' ').collect();
    let code = musubi_service::people::totp_code_now(&secret).unwrap();
    let r = op.post(
        "/login/code",
        &[("code", &code), ("next", "/admin"), ("needs_new_password", "1"), ("new_password", "Yamada-own-2026")],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let users = op.get("/admin/users");
    assert_eq!(users.status, 200, "{}", users.text());
    assert!(users.text().contains("dr-web"));
}
