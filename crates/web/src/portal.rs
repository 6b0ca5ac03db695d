//! The patient portal: registration (the 4 basic items and the insurance identity, checked
//! against the records the network holds; the TOTP enrolment shown once), login (a proxy
//! chooses whom to act for), disclosure settings with one-click toggles, the access history,
//! notices, the own record and its download as a FHIR Bundle, and proxies.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use musubi_domain::Profession;
use musubi_fhir::ResourceType;
use musubi_gate::consent::{KindSetting, Within};
use musubi_gate::{ConsentSettings, FacilityClass};
use musubi_service::people::{ConsentView, Enrolled, Registration};
use musubi_service::{ApiError, Ctx, ErrorKind, parse_query};
use serde_json::{Value, json};

use crate::Web;
use crate::html::{self, Nav, csrf_field, notice, page};
use crate::record_html::{self, Links};
use crate::session::{self, Anonymous, Form, PageError, PortalUser, SESSION_COOKIE, set_cookie};
use crate::viewer;

type Result<T> = std::result::Result<T, PageError>;

pub(crate) fn routes() -> Router<Web> {
    Router::new()
        .route("/portal", get(home))
        .route("/portal/login", get(login_form).post(login_post).layer(session::public_limit()))
        .route("/portal/login/code", post(code_post).layer(session::public_limit()))
        .route("/portal/logout", post(logout))
        .route("/portal/logout/everywhere", post(logout_everywhere))
        .route("/portal/register", get(register_form).post(register_post).layer(session::public_limit()))
        .route(
            "/portal/register-proxy",
            get(proxy_register_form).post(proxy_register_post).layer(session::public_limit()),
        )
        .route("/portal/consent", get(consent).post(consent_post))
        .route("/portal/consent-code", get(consent_code_page).post(consent_code_post))
        .route("/portal/participation", post(participation_post))
        .route("/portal/residence", get(residence_page).post(residence_post))
        .route("/portal/history", get(history))
        .route("/portal/notices", get(notices))
        .route("/portal/record", get(record))
        .route("/portal/record/labs/{group}", get(record_lab))
        .route("/portal/record/documents/{rtype}/{rid}", get(record_document))
        .route("/portal/record.json", get(download))
        .route("/portal/proxies", get(proxies).post(proxy_grant))
        .route("/portal/proxies/{id}/revoke", post(proxy_revoke))
}

fn query(q: Option<String>) -> Vec<(String, String)> {
    q.map(|q| parse_query(&q)).unwrap_or_default()
}

fn q_get<'a>(q: &'a [(String, String)], k: &str) -> &'a str {
    q.iter().find(|(n, _)| n == k).map_or("", |(_, v)| v.trim())
}

fn nav<'a>(u: &'a PortalUser) -> Nav<'a> {
    Nav::Portal(&u.me, &u.csrf)
}

async fn home(State(web): State<Web>, u: PortalUser) -> Result<Response> {
    let ctx = u.ctx.clone();
    let notices = web.call(move |svc| svc.notifications(&ctx)).await.unwrap_or_default();
    let ctx = u.ctx.clone();
    let participating = web.call(move |svc| svc.participation(&ctx)).await.unwrap_or(false);
    let unread = notices.iter().filter(|n| n.read_at.is_none()).count();
    Ok(page(
        "患者ポータル",
        nav(&u),
        html! {
            h1 { (u.me.name) " さん" @if let Some(r) = &u.me.proxy_relation { "（代理人: " (r) "）" } }
            @if unread > 0 { (notice("warn", &format!("新しいお知らせが {unread} 件あります。"))) }
            section.card {
                h2 { "ネットワークへの参加（参加同意）" }
                @if participating {
                    p { "参加に同意しています。開示設定の範囲で、診療関係のある医療機関があなたの記録を閲覧できます。" }
                } @else {
                    p { "参加に同意していません。あなたの記録は保管されますが、他の医療機関には表示されません（緊急時の閲覧を除く）。" }
                }
                form.inline method="post" action="/portal/participation" {
                    (csrf_field(&u.csrf))
                    input type="hidden" name="participating" value=(if participating { "false" } else { "true" });
                    button type="submit" class=(if participating { "secondary" } else { "" }) {
                        @if participating { "参加同意を取り消す" } @else { "参加に同意する" }
                    }
                }
            }
            div.doors {
                a.door href="/portal/consent" { strong { "開示設定" } span { "どの医療機関・職種に記録を見せるかを選べます" } }
                a.door href="/portal/history" { strong { "閲覧履歴" } span { "いつ・誰が・何を・なぜ見たか" } }
                a.door href="/portal/record" { strong { "わたしの記録" } span { "各医療機関の記録の一覧とダウンロード" } }
                a.door href="/portal/notices" { strong { "お知らせ" @if unread > 0 { " (" (unread) ")" } } span { "緊急時の閲覧などの通知" } }
                a.door href="/portal/residence" { strong { "転居の届出" } span { "お住まいが変わったとき（開示設定の地域に使われます）" } }
                a.door href="/portal/consent-code" { strong { "来院時の同意コード" } span { "受診先の窓口で示すと、その医療機関に記録の閲覧を認めます" } }
                @if u.me.proxy_relation.is_none() { a.door href="/portal/proxies" { strong { "代理人" } span { "ご家族などに手続きを任せる" } } }
            }
        },
    ))
}

fn consent_code_view(u: &PortalUser, code: Option<&musubi_service::evidence::IssuedCode>) -> Response {
    page(
        "来院時の同意コード",
        nav(u),
        html! {
            section.card.narrow {
                h1 { "来院時の同意コード" }
                p { "受診先の医療機関の窓口でこのコードを示すと、その医療機関があなたの記録を閲覧できるようになります（受診日のみ、または医療機関が指定した期間。最長90日）。記録されると、お知らせと閲覧履歴に表示されます。" }
                @if let Some(c) = code {
                    p.code-big { strong { (c.code) } }
                    p { "このコードは " (html::datetime_ms(c.expires)) " まで、1回だけ使えます。窓口の方以外には教えないでください。" }
                } @else {
                    form method="post" action="/portal/consent-code" {
                        (csrf_field(&u.csrf))
                        button type="submit" { "コードを表示する" }
                    }
                }
                p { a href="/portal" { "← ポータルへ戻る" } }
            }
        },
    )
}

async fn participation_post(State(web): State<Web>, u: PortalUser, form: Form) -> Result<Response> {
    session::check_csrf(&form, &u.csrf)?;
    let participating = form.get("participating") == "true";
    let ctx = u.ctx.clone();
    web.call(move |svc| svc.set_participation(&ctx, participating)).await?;
    Ok(Redirect::to("/portal").into_response())
}

fn residence_view(u: &PortalUser, message: Option<(&str, &str)>, prefecture: &str, city: &str) -> Response {
    page(
        "転居の届出",
        nav(u),
        html! {
            section.card.narrow {
                h1 { "転居の届出" }
                @if let Some((kind, m)) = message { (notice(kind, m)) }
                p { "新しいお住まいの都道府県と市区町村を入力してください。開示設定の「住んでいる地域」に使われます。前のお住まいも2年間は「最近2年間に住んだ都道府県」として残ります。" }
                form method="post" action="/portal/residence" {
                    (csrf_field(&u.csrf))
                    label { "都道府県"
                        select name="prefecture" required {
                            option value="" { "選んでください" }
                            @for p in musubi_domain::PREFECTURES {
                                option value=(p) selected[p == prefecture] { (p) }
                            }
                        }
                    }
                    label { "市区町村" input type="text" name="city" value=(city) maxlength="64" required; }
                    button type="submit" { "届け出る" }
                }
                p { a href="/portal" { "← ポータルへ戻る" } }
            }
        },
    )
}

async fn residence_page(u: PortalUser) -> Result<Response> {
    Ok(residence_view(&u, None, "", ""))
}

async fn residence_post(State(web): State<Web>, u: PortalUser, form: Form) -> Result<Response> {
    session::check_csrf(&form, &u.csrf)?;
    let (prefecture, city) = (form.get("prefecture").to_owned(), form.get("city").to_owned());
    let ctx = u.ctx.clone();
    let (p, c) = (prefecture.clone(), city.clone());
    match web.call(move |svc| svc.set_residence(&ctx, &p, &c)).await {
        Ok(_) => Ok(residence_view(&u, Some(("ok", &format!("{prefecture} {city} への転居を記録しました。"))), "", "")),
        Err(e) if e.kind == ErrorKind::BadRequest => {
            let m = e.issues.first().map(|i| i.diagnostics.clone()).unwrap_or_default();
            let mut r = residence_view(&u, Some(("error", &m)), &prefecture, &city);
            *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

async fn consent_code_page(u: PortalUser) -> Result<Response> {
    Ok(consent_code_view(&u, None))
}

async fn consent_code_post(State(web): State<Web>, u: PortalUser, form: Form) -> Result<Response> {
    session::check_csrf(&form, &u.csrf)?;
    let ctx = u.ctx.clone();
    let code = web.call(move |svc| svc.issue_consent_code(&ctx)).await?;
    Ok(consent_code_view(&u, Some(&code)))
}

fn login_page(message: Option<&str>, next: &str, login: &str, persons: &[(String, String)]) -> Response {
    page(
        "患者ポータル ログイン",
        Nav::Anonymous,
        html! {
            section.card.narrow {
                h1 { "患者ポータル ログイン" }
                @if let Some(m) = message { (notice("error", m)) }
                form method="post" action="/portal/login" {
                    input type="hidden" name="next" value=(next);
                    label { "ログインID" input type="text" name="login" value=(login) autocomplete="username" required autofocus[login.is_empty()]; }
                    label { "パスワード" input type="password" name="password" autocomplete="current-password" required autofocus[!login.is_empty()]; }
                    @if !persons.is_empty() {
                        label { "どなたの手続きをしますか"
                            select name="acting_for" required {
                                @for (id, name) in persons { option value=(id) { (name) } }
                            }
                        }
                    }
                    button type="submit" { "次へ" }
                }
                p { a href="/portal/register" { "はじめての方（利用登録）" } "　" a href="/portal/register-proxy" { "代理人として登録する" } }
            }
        },
    )
}

async fn login_form(RawQuery(q): RawQuery) -> Response {
    let q = query(q);
    login_page(None, q_get(&q, "next"), "", &[])
}

async fn login_post(State(web): State<Web>, anon: Anonymous, form: Form) -> Result<Response> {
    let login = form.get("login").to_owned();
    let password = form.get("password").to_owned();
    let next = form.get("next").to_owned();
    let acting_for = form.opt("acting_for");
    let addr = anon.address.clone();
    let addr2 = anon.address.clone();
    let l2 = login.clone();
    let outcome = web
        .call(move |svc| {
            let out = svc.login_portal(&l2, &password, acting_for.as_deref(), addr)?;
            // A proxy (or a patient who is also a proxy) chooses whom to act for. The names are
            // the portal accounts' names (account data).
            let mut choices = Vec::new();
            if acting_for.is_none() {
                choices = svc.portal_login_choices(&out.token)?;
                if choices.len() > 1 {
                    svc.logout(&out.token)?;
                } else {
                    choices.clear();
                }
            }
            // No authenticator yet (the operator reset it): enrol now.
            let enrolment = if out.needs_enrolment && choices.is_empty() {
                Some(svc.enrol_second_factor(&out.token, addr2)?)
            } else {
                None
            };
            Ok((out, choices, enrolment))
        })
        .await;
    match outcome {
        Ok((_, choices, _)) if !choices.is_empty() => Ok(login_page(
            Some("どなたの手続きをするか選んで、もう一度パスワードを入力してください。"),
            &next,
            &login,
            &choices,
        )),
        Ok((out, _, enrolment)) => {
            let mut r = code_page(&next, enrolment.as_ref());
            let max_age = (out.expires - musubi_fhir::datetime::now_ms()) / 1000;
            set_cookie(&mut r, SESSION_COOKIE, &out.token, max_age, web.config().secure_cookies);
            Ok(r)
        }
        Err(e)
            if matches!(e.kind, ErrorKind::Unauthorized | ErrorKind::Forbidden | ErrorKind::TooManyRequests { .. }) =>
        {
            let mut r = login_page(Some(&e.summary()), &next, &login, &[]);
            *r.status_mut() = session::status_of(e.kind);
            session::with_retry_after(&mut r, &e);
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

fn code_page(next: &str, enrolment: Option<&Enrolled>) -> Response {
    page(
        "ワンタイムコード",
        Nav::Anonymous,
        html! {
            section.card.narrow {
                h1 { "ワンタイムコード" }
                @if let Some(e) = enrolment { (viewer::enrolment_markup(e)) }
                form method="post" action="/portal/login/code" {
                    input type="hidden" name="next" value=(next);
                    label { "認証アプリに表示されている6桁のコード"
                        input type="text" name="code" inputmode="numeric" pattern="[0-9 ]{6,7}" autocomplete="one-time-code" required autofocus;
                    }
                    button type="submit" { "ログイン" }
                }
            }
        },
    )
}

async fn code_post(State(web): State<Web>, anon: Anonymous, headers: HeaderMap, form: Form) -> Result<Response> {
    viewer::second_factor(&web, &headers, anon.address, &form, "/portal", "/portal/login/code", "/portal/login").await
}

async fn logout(State(web): State<Web>, u: PortalUser, headers: HeaderMap, form: Form) -> Result<Response> {
    viewer::end_session(&web, &headers, &form, &u.csrf, "/portal/login").await
}

async fn logout_everywhere(State(web): State<Web>, u: PortalUser, form: Form) -> Result<Response> {
    viewer::end_every_session(&web, u.ctx, &form, &u.csrf, "/portal/login").await
}

fn enrolled_page(title: &str, e: &Enrolled) -> Response {
    let grouped: Vec<String> =
        e.totp_secret.chars().collect::<Vec<_>>().chunks(4).map(|c| c.iter().collect()).collect();
    page(
        title,
        Nav::Anonymous,
        html! {
            section.card.narrow {
                h1 { (title) }
                (notice("ok", "登録しました。次に、認証アプリ（Google Authenticator など）にこのアカウントを追加してください。"))
                p { strong { "この画面は一度しか表示されません。" } "認証アプリに追加してから次へ進んでください。" }
                h2 { "認証アプリに入力する鍵" }
                p.secret { code #totp-secret { (grouped.join(" ")) } }
                h2 { "設定用 URI" }
                p.secret { code #totp-uri { (e.totp_uri) } }
                p { a.button href="/portal/login" { "ログインへ" } }
            }
        },
    )
}

const SEXES: [(&str, &str); 4] = [("female", "女性"), ("male", "男性"), ("other", "その他"), ("unknown", "回答しない")];

fn register_page(message: Option<&str>, f: &Form) -> Response {
    page(
        "利用登録",
        Nav::Anonymous,
        html! {
            section.card.narrow {
                h1 { "患者ポータル 利用登録" }
                p { "受診した医療機関の窓口または運営事務局で、本人確認のうえ「利用登録コード」をお受け取りください。コードと生年月日で、あなたの記録に結び付けます。" }
                @if let Some(m) = message { (notice("error", m)) }
                form method="post" action="/portal/register" {
                    fieldset {
                        legend { "利用登録コード" }
                        label { "利用登録コード（16文字）" input type="text" name="activation_code" value=(f.get("activation_code")) placeholder="XXXX-XXXX-XXXX-XXXX" required autocomplete="off"; }
                        label { "生年月日" input type="date" name="birth_date" value=(f.get("birth_date")) required autocomplete="bday"; }
                    }
                    fieldset {
                        legend { "お名前とお住まい" }
                        label { "氏名（漢字）" input type="text" name="name" value=(f.get("name")) placeholder="結 花子" required autocomplete="name"; }
                        label { "氏名（カナ）" input type="text" name="kana" value=(f.get("kana")) placeholder="ムスビ ハナコ"; }
                        label { "性別"
                            select name="sex" {
                                @for (code, label) in SEXES { option value=(code) selected[f.get("sex") == code] { (label) } }
                            }
                        }
                        label { "都道府県"
                            select name="prefecture" required {
                                @for n in 1..=47u8 {
                                    @if let Some(p) = musubi_domain::prefecture_name(n) { option value=(p) selected[f.get("prefecture") == p] { (p) } }
                                }
                            }
                        }
                        label { "市区町村" input type="text" name="city" value=(f.get("city")) placeholder="千代田区" required; }
                    }
                    fieldset {
                        legend { "ログイン情報" }
                        label { "ログインID" input type="text" name="login" value=(f.get("login")) autocomplete="username" required; }
                        label { "パスワード（10文字以上、2種類以上の文字）" input type="password" name="password" autocomplete="new-password" required minlength="10"; }
                        label { "パスワード（確認）" input type="password" name="password2" autocomplete="new-password" required minlength="10"; }
                    }
                    button type="submit" { "登録する" }
                }
            }
        },
    )
}

async fn register_form() -> Response {
    register_page(None, &Form::default())
}

async fn register_post(State(web): State<Web>, anon: Anonymous, form: Form) -> Result<Response> {
    if form.get("password") != form.get("password2") {
        return Ok(with_status(register_page(Some("確認用のパスワードが一致しません"), &form), ErrorKind::BadRequest));
    }
    let reg = Registration {
        name: form.get("name").to_owned(),
        kana: form.get("kana").to_owned(),
        sex: form.get("sex").to_owned(),
        birth_date: form.get("birth_date").to_owned(),
        prefecture: form.get("prefecture").to_owned(),
        city: form.get("city").to_owned(),
        insurance_id: form.get("insurance_id").to_owned(),
        login: form.get("login").to_owned(),
        password: form.get("password").to_owned(),
        activation_code: form.get("activation_code").to_owned(),
    };
    match web.call(move |svc| svc.register_patient(reg, anon.address)).await {
        Ok(e) => Ok(enrolled_page("利用登録が完了しました", &e)),
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::NotFound | ErrorKind::Conflict) => {
            Ok(with_status(register_page(Some(&e.summary()), &form), e.kind))
        }
        Err(e) => Err(e.into()),
    }
}

fn with_status(mut r: Response, kind: ErrorKind) -> Response {
    *r.status_mut() = session::status_of(kind);
    r
}

fn proxy_register_page(message: Option<&str>, f: &Form) -> Response {
    page(
        "代理人の登録",
        Nav::Anonymous,
        html! {
            section.card.narrow {
                h1 { "代理人として登録する" }
                p { "ご家族や施設の連携担当の方が、患者さんに代わって手続きをするためのアカウントです。登録後、患者さんご本人がポータルの「代理人」で、このログインIDに権限を与えると利用できます。" }
                @if let Some(m) = message { (notice("error", m)) }
                form method="post" action="/portal/register-proxy" {
                    label { "お名前" input type="text" name="name" value=(f.get("name")) required; }
                    label { "ログインID" input type="text" name="login" value=(f.get("login")) autocomplete="username" required; }
                    label { "パスワード（10文字以上、2種類以上の文字）" input type="password" name="password" autocomplete="new-password" required minlength="10"; }
                    button type="submit" { "登録する" }
                }
            }
        },
    )
}

async fn proxy_register_form() -> Response {
    proxy_register_page(None, &Form::default())
}

async fn proxy_register_post(State(web): State<Web>, anon: Anonymous, form: Form) -> Result<Response> {
    let (name, login, password) =
        (form.get("name").to_owned(), form.get("login").to_owned(), form.get("password").to_owned());
    match web.call(move |svc| svc.register_proxy(&name, &login, &password, anon.address)).await {
        Ok(e) => Ok(enrolled_page("代理人の登録が完了しました", &e)),
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::Conflict) => {
            Ok(with_status(proxy_register_page(Some(&e.summary()), &form), e.kind))
        }
        Err(e) => Err(e.into()),
    }
}

// ---- disclosure settings ----

/// What a one-click toggle changes: one setting (`action`, `key`) of the settings version the
/// page showed.
struct Setting<'a> {
    csrf: &'a str,
    version: i64,
    action: &'a str,
    key: &'a str,
}

fn toggle(t: &Setting<'_>, value: &str, label: &str, class: &str, pressed: bool) -> Markup {
    html! {
        form.inline method="post" action="/portal/consent" {
            (csrf_field(t.csrf))
            input type="hidden" name="version" value=(t.version);
            input type="hidden" name="action" value=(t.action);
            input type="hidden" name="key" value=(t.key);
            input type="hidden" name="value" value=(value);
            button class=(class) type="submit" aria-pressed=(if pressed { "true" } else { "false" }) disabled[pressed] { (label) }
        }
    }
}

/// Open / closed (/ follow the broader setting) buttons for one setting.
fn switch(csrf: &str, version: i64, action: &str, key: &str, state: Option<bool>, with_default: bool) -> Markup {
    let t = Setting { csrf, version, action, key };
    html! {
        span.switch role="group" {
            (toggle(&t, "on", "開示する", "on", state == Some(true)))
            (toggle(&t, "off", "開示しない", "off", state == Some(false)))
            @if with_default { (toggle(&t, "default", "地域の設定に従う", "default", state.is_none())) }
        }
    }
}

fn state_label(s: Option<bool>) -> Markup {
    html! {
        @match s {
            Some(true) => span.state.on { "開示" },
            Some(false) => span.state.off { "非開示" },
            None => span.state.default { "地域の設定に従う" },
        }
    }
}

fn kind_state(s: &ConsentSettings, within: &Within, class: FacilityClass) -> Option<bool> {
    s.kinds.iter().find(|k| &k.within == within && k.class == class).map(|k| k.allow)
}

fn consent_page(u: &PortalUser, v: &ConsentView, message: Option<Markup>) -> Response {
    let s = &v.settings;
    let (csrf, ver) = (u.csrf.as_str(), v.version);
    let area_tiers: [(&str, &str, bool); 4] = [
        ("residence_area", "お住まいの二次医療圏の医療機関", s.area.residence_area),
        ("residence_prefecture", "お住まいの都道府県内のそのほかの医療機関", s.area.residence_prefecture),
        ("recent_prefectures", "過去2年間に住んでいた都道府県の医療機関", s.area.recent_prefectures),
        ("elsewhere", "そのほかの地域の医療機関", s.area.elsewhere),
    ];
    let scopes = [
        (
            format!("area:{}", v.residence.area),
            format!("お住まいの二次医療圏（{}）", v.residence.area),
            Within::Area(v.residence.area.clone()),
        ),
        (
            format!("pref:{}", v.residence.prefecture),
            format!("{}内", v.residence.prefecture_name),
            Within::Prefecture(v.residence.prefecture),
        ),
    ];
    page(
        "開示設定",
        nav(u),
        html! {
            h1 { "開示設定" }
            @if let Some(m) = message { (m) }
            p { "あなたの診療記録を、どの医療機関・職種の人が見られるかを決めます。ボタンを押すとすぐに保存されます。お住まいの地域（" (v.residence.prefecture_name) "・二次医療圏 " (v.residence.area) "）の医療機関には、はじめから開示されています（包括同意）。" }
            section.card.closeall {
                h2 { "すべて" }
                @if s.closed {
                    (notice("warn", "現在、すべての開示を停止しています。どの医療機関も（緊急時を除き）あなたの記録を見られません。"))
                    (toggle(&Setting { csrf, version: ver, action: "closed", key: "" }, "off", "開示を再開する", "on", false))
                } @else {
                    p { "すべての医療機関への開示を一度に停止できます（救命のための緊急時の閲覧は除きます。その場合も履歴に残り、お知らせが届きます）。" }
                    (toggle(&Setting { csrf, version: ver, action: "closed", key: "" }, "on", "すべての開示を停止する", "off danger", false))
                }
            }
            section.card {
                h2 { "地域ごと" }
                table.settings {
                    tbody {
                        @for (key, label, on) in area_tiers {
                            tr { th scope="row" { (label) } td { (state_label(Some(on))) } td { (switch(csrf, ver, "area", key, Some(on), false)) } }
                        }
                    }
                }
            }
            section.card {
                h2 { "施設の種類ごと" }
                @for (key, label, within) in &scopes {
                    h3 { (label) }
                    table.settings {
                        tbody {
                            @for class in FacilityClass::ALL {
                                @let st = kind_state(s, within, class);
                                tr {
                                    th scope="row" { (class.label_ja()) }
                                    td { (state_label(st)) }
                                    td { (switch(csrf, ver, "kind", &format!("{key}:{}", class.code()), st, true)) }
                                }
                            }
                        }
                    }
                }
            }
            section.card {
                h2 { "職種ごと" }
                table.settings {
                    tbody {
                        @for p in Profession::ALL {
                            @let on = s.professions.get(p.code()).copied().unwrap_or(true);
                            tr { th scope="row" { (p.label_ja()) } td { (state_label(Some(on))) } td { (switch(csrf, ver, "profession", p.code(), Some(on), false)) } }
                        }
                    }
                }
            }
            section.card {
                h2 { "医療機関ごと（受診したことのある医療機関）" }
                @if v.facilities.is_empty() { p.none { "受診記録のある医療機関はまだありません。" } }
                table.settings {
                    tbody {
                        @for f in &v.facilities {
                            tr {
                                th scope="row" { (f.name) br; small { (f.kind) "・" (f.code) } }
                                td {
                                    (state_label(f.setting))
                                    br; small { @if f.open_for_doctors { "医師は閲覧できます" } @else { "医師は閲覧できません" } }
                                }
                                td { (switch(csrf, ver, "facility", &f.code, f.setting, true)) }
                            }
                        }
                    }
                }
            }
            details.card {
                summary { "FHIR Consent リソースとして表示" }
                pre.json { (serde_json::to_string_pretty(&v.fhir).unwrap_or_default()) }
            }
        },
    )
}

async fn consent(State(web): State<Web>, u: PortalUser, RawQuery(q): RawQuery) -> Result<Response> {
    let q = query(q);
    let ctx = u.ctx.clone();
    let v = web.call(move |svc| svc.consent_view(&ctx)).await?;
    let msg = match q_get(&q, "msg") {
        "saved" => Some(notice("ok", "保存しました。")),
        "conflict" => Some(notice(
            "error",
            "ほかの画面（または代理人）が先に設定を変更していました。最新の設定を表示しています。もう一度操作してください。",
        )),
        _ => None,
    };
    Ok(consent_page(&u, &v, msg))
}

/// Applies one toggle to the settings.
pub(crate) fn apply_toggle(
    s: &mut ConsentSettings,
    action: &str,
    key: &str,
    value: &str,
) -> std::result::Result<(), ApiError> {
    let bad = || ApiError::bad_request("設定の指定が不正です");
    let on = match value {
        "on" => Some(true),
        "off" => Some(false),
        "default" => None,
        _ => return Err(bad()),
    };
    match action {
        "closed" => s.closed = on.ok_or_else(bad)?,
        "area" => {
            let v = on.ok_or_else(bad)?;
            match key {
                "residence_area" => s.area.residence_area = v,
                "residence_prefecture" => s.area.residence_prefecture = v,
                "recent_prefectures" => s.area.recent_prefectures = v,
                "elsewhere" => s.area.elsewhere = v,
                _ => return Err(bad()),
            }
        }
        "profession" => {
            let p: Profession = key.parse().map_err(|_| bad())?;
            match on {
                Some(false) => {
                    s.professions.insert(p.code().to_owned(), false);
                }
                _ => {
                    s.professions.remove(p.code());
                }
            }
        }
        "facility" => {
            let code: musubi_domain::FacilityCode = key.parse().map_err(|_| bad())?;
            match on {
                Some(v) => {
                    s.facilities.insert(code.to_string(), v);
                }
                None => {
                    s.facilities.remove(code.as_str());
                }
            }
        }
        "kind" => {
            let mut parts = key.splitn(3, ':');
            let (Some(scope), Some(where_), Some(class)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad());
            };
            let within = match scope {
                "area" if !where_.is_empty() && where_.len() <= 32 => Within::Area(where_.to_owned()),
                "pref" => Within::Prefecture(where_.parse().ok().filter(|p| (1..=47).contains(p)).ok_or_else(bad)?),
                _ => return Err(bad()),
            };
            let class = FacilityClass::from_code(class).ok_or_else(bad)?;
            s.kinds.retain(|k| !(k.within == within && k.class == class));
            if let Some(allow) = on {
                s.kinds.push(KindSetting { within, class, allow });
            }
        }
        _ => return Err(bad()),
    }
    Ok(())
}

async fn consent_post(State(web): State<Web>, u: PortalUser, form: Form) -> Result<Response> {
    session::check_csrf(&form, &u.csrf)?;
    let version: i64 = form.get("version").parse().map_err(|_| ApiError::bad_request("版の指定が不正です"))?;
    let (action, key, value) =
        (form.get("action").to_owned(), form.get("key").to_owned(), form.get("value").to_owned());
    let ctx = u.ctx.clone();
    let saved = web
        .call(move |svc| {
            let current = svc.consent_view(&ctx)?;
            let mut settings = current.settings;
            apply_toggle(&mut settings, &action, &key, &value)?;
            // The version the page showed: a change made meanwhile is a conflict, not overwritten.
            svc.save_consent(&ctx, settings, version)
        })
        .await;
    match saved {
        Ok(_) => Ok(Redirect::to("/portal/consent?msg=saved").into_response()),
        Err(e) if e.kind == ErrorKind::Conflict => Ok(Redirect::to("/portal/consent?msg=conflict").into_response()),
        Err(e) => Err(e.into()),
    }
}

// ---- access history, notices ----

async fn history(State(web): State<Web>, u: PortalUser, RawQuery(q): RawQuery) -> Result<Response> {
    let q = query(q);
    let (from_s, to_s) = (q_get(&q, "from").to_owned(), q_get(&q, "to").to_owned());
    let parse = |s: &str, end: bool| -> std::result::Result<Option<i64>, ApiError> {
        if s.is_empty() {
            return Ok(None);
        }
        let r = musubi_fhir::datetime::parse_range(s)
            .map_err(|_| ApiError::bad_request(format!("日付 {s:?} が不正です（例: 2026-11-01）")))?;
        Ok(Some(if end { r.hi } else { r.lo }))
    };
    let (from, to) = (parse(&from_s, false)?, parse(&to_s, true)?);
    let ctx = u.ctx.clone();
    let list = web.call(move |svc| svc.access_history(&ctx, from, to, 500)).await?;
    let ago = |days: i64| {
        musubi_fhir::datetime::jst_date(musubi_fhir::datetime::now_ms() - days * 86_400_000)
            .map(|d| format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day()))
            .unwrap_or_default()
    };
    Ok(page(
        "閲覧履歴",
        nav(&u),
        html! {
            h1 { "閲覧履歴" }
            p { "あなたの記録を、いつ・どの医療機関の・どの職種の誰が・何を・なぜ見たかの一覧です。" }
            form.search method="get" action="/portal/history" {
                div.fields {
                    label { "期間（から）" input type="date" name="from" value=(from_s); }
                    label { "期間（まで）" input type="date" name="to" value=(to_s); }
                }
                button type="submit" { "絞り込む" }
                " "
                a href={"/portal/history?from=" (ago(30))} { "1か月" } " / "
                a href={"/portal/history?from=" (ago(90))} { "3か月" } " / "
                a href={"/portal/history?from=" (ago(365))} { "1年" } " / "
                a href="/portal/history" { "すべて" }
            }
            @if list.is_empty() { p.none { "この期間の閲覧はありません。" } } @else {
                table.history {
                    thead { tr { th { "日時" } th { "医療機関" } th { "職種" } th { "氏名" } th { "操作" } th { "内容" } th { "理由" } } }
                    tbody {
                        @for h in &list {
                            tr class=(match h.why.as_str() { "緊急" => "emergency", "拒否" => "denied", _ => "" }) {
                                td { (html::instant(&h.when)) }
                                td { (h.facility_name.clone().or_else(|| h.facility.clone()).unwrap_or_default()) }
                                td { (h.profession.clone().unwrap_or_default()) }
                                td { (h.who) }
                                td { (h.action) }
                                td { (h.what.join("、")) }
                                td {
                                    span class={"tag why " (match h.why.as_str() { "緊急" => "danger", "拒否" => "warn", _ => "" })} { (h.why) }
                                    @if let Some(r) = &h.reason { br; small { (r) } }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

async fn notices(State(web): State<Web>, u: PortalUser) -> Result<Response> {
    let ctx = u.ctx.clone();
    let list = web.call(move |svc| svc.notifications(&ctx)).await?;
    Ok(page(
        "お知らせ",
        nav(&u),
        html! {
            h1 { "お知らせ" }
            @if list.is_empty() { p.none { "お知らせはありません。" } }
            ul.items {
                @for n in &list {
                    li class=(if n.read_at.is_none() { "unread" } else { "" }) {
                        time { (html::datetime_ms(n.created)) } " "
                        @if n.kind == "emergency-access" { span.tag.danger { "緊急時の閲覧" } " " }
                        @if n.kind == "facility-linked" { span.tag { "記録の結び付け" } " " }
                        (n.text)
                    }
                }
            }
        },
    ))
}

// ---- own record ----

/// One of the person's Patient ids (searched through the gate as the portal actor).
fn own_patient(svc: &musubi_service::Service, ctx: &Ctx) -> std::result::Result<String, ApiError> {
    let r = svc.search(ctx, ResourceType::Patient, &[("_count".into(), "1".into())])?;
    let b: Value = serde_json::from_str(&r.json).map_err(|e| ApiError::internal(format!("search JSON: {e}")))?;
    b["entry"][0]["resource"]["id"].as_str().map(str::to_owned).ok_or_else(|| {
        ApiError::new(ErrorKind::NotFound, "記録が見つかりません（閲覧の権限がないか、まだ記録がありません）")
    })
}

async fn own_view(
    web: &Web,
    u: &PortalUser,
    purpose: &'static str,
) -> std::result::Result<musubi_record::page::PatientView, ApiError> {
    let ctx = u.ctx.clone();
    web.call(move |svc| {
        let pid = own_patient(svc, &ctx)?;
        let rec = svc.person_record(&ctx, &pid, purpose)?;
        Ok(musubi_record::page::patient_view(&rec.person_id, &rec.entries, musubi_fhir::datetime::now_ms()))
    })
    .await
}

async fn record(State(web): State<Web>, u: PortalUser, RawQuery(q): RawQuery) -> Result<Response> {
    let q = query(q);
    let view = own_view(&web, &u, "portal").await?;
    let links = Links {
        base: "/portal/record",
        clinician: false,
        timeline_limit: (q_get(&q, "timeline") != "all").then_some(60),
        documents_limit: (q_get(&q, "documents") != "all").then_some(20),
    };
    Ok(page(
        "わたしの記録",
        nav(&u),
        html! {
            div.patient-head {
                (record_html::identity(&view))
                div.actions { a.button href="/portal/record.json" download { "FHIR 形式でダウンロード" } }
            }
            (record_html::sections(&view, &links))
        },
    ))
}

async fn record_lab(State(web): State<Web>, u: PortalUser, Path(group): Path<String>) -> Result<Response> {
    let view = own_view(&web, &u, "portal").await?;
    let body = record_html::lab_detail(&view, &group)
        .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "この検査項目の記録はありません"))?;
    Ok(page("検査の推移", nav(&u), html! { p.crumb { a href="/portal/record" { "← わたしの記録" } } (body) }))
}

async fn record_document(
    State(web): State<Web>,
    u: PortalUser,
    Path((rtype, rid)): Path<(String, String)>,
) -> Result<Response> {
    let rtype: ResourceType = rtype.parse().map_err(|_| ApiError::new(ErrorKind::NotFound, "文書が見つかりません"))?;
    let ctx = u.ctx.clone();
    let out = web.call(move |svc| svc.read(&ctx, rtype, &rid, None)).await?;
    let r: Value = serde_json::from_str(&out.content).map_err(|e| ApiError::internal(format!("document JSON: {e}")))?;
    Ok(page(
        "文書",
        nav(&u),
        html! { p.crumb { a href="/portal/record#h-doc" { "← わたしの記録" } } section.card.doc { (record_html::document(&r)) } },
    ))
}

async fn download(State(web): State<Web>, u: PortalUser) -> Result<Response> {
    let ctx = u.ctx.clone();
    let (bundle, date) = web
        .call(move |svc| {
            let pid = own_patient(svc, &ctx)?;
            let rec = svc.person_record(&ctx, &pid, "export")?;
            let now = musubi_fhir::datetime::now_ms();
            let entries: Vec<Value> = rec
                .entries
                .iter()
                .map(|e| json!({"fullUrl": format!("{}/{}/{}", ctx.base_url, e.rtype, e.id), "resource": e.resource}))
                .collect();
            let bundle = json!({
                "resourceType": "Bundle",
                "meta": {"lastUpdated": musubi_fhir::datetime::format_instant(now)},
                "type": "collection",
                "timestamp": musubi_fhir::datetime::format_instant(now),
                "entry": entries
            });
            Ok((bundle.to_string(), html::date_ms(now).replace('/', "")))
        })
        .await?;
    let mut r = bundle.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"musubi-record-{date}.json\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

// ---- proxies ----

async fn proxies(State(web): State<Web>, u: PortalUser, RawQuery(q): RawQuery) -> Result<Response> {
    let q = query(q);
    let ctx = u.ctx.clone();
    let list = web
        .call(move |svc| {
            // Each proxy with their display name and login (account data).
            svc.proxies_with_accounts(&ctx)
        })
        .await?;
    let msg = match q_get(&q, "msg") {
        "granted" => Some(notice("ok", "代理人に権限を与えました。")),
        "revoked" => Some(notice("ok", "代理人の権限を取り消しました。")),
        _ => None,
    };
    Ok(page(
        "代理人",
        nav(&u),
        html! {
            h1 { "代理人" }
            @if let Some(m) = msg { (m) }
            section.card {
                h2 { "代理人の一覧" }
                @if list.is_empty() { p.none { "代理人はいません。" } } @else {
                    table {
                        thead { tr { th { "代理人" } th { "続柄など" } th { "権限" } th { "登録日" } th {} } }
                        tbody {
                            @for musubi_service::directory::ProxyView { grant: g, name, login } in &list {
                                tr class=(if g.revoked.is_some() { "inactive" } else { "" }) {
                                    td { (name) " " small { "(" (login) ")" } }
                                    td { (g.relation) }
                                    td {
                                        @if g.may_view_records { span.tag { "記録の閲覧" } " " }
                                        @if g.may_manage_consent { span.tag { "開示設定" } " " }
                                        @if g.may_view_history { span.tag { "閲覧履歴" } }
                                    }
                                    td { (html::date_ms(g.created)) }
                                    td {
                                        @if g.revoked.is_some() { "取消済み" } @else {
                                            form.inline method="post" action={"/portal/proxies/" (g.id) "/revoke"} {
                                                (csrf_field(&u.csrf))
                                                button.off type="submit" { "取り消す" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.card.narrow {
                h2 { "代理人を追加する" }
                p { "代理人になる方に、先に「代理人として登録」をしてもらい、そのログインIDを入力してください。" }
                form method="post" action="/portal/proxies" {
                    (csrf_field(&u.csrf))
                    label { "代理人のログインID" input type="text" name="login" required; }
                    label { "続柄など"
                        select name="relation" {
                            option value="家族" { "家族" }
                            option value="施設の連携担当" { "施設の連携担当" }
                            option value="その他" { "その他" }
                        }
                    }
                    fieldset {
                        legend { "任せること" }
                        label.check { input type="checkbox" name="view_records" value="1" checked; "記録の閲覧" }
                        label.check { input type="checkbox" name="manage_consent" value="1"; "開示設定の変更" }
                        label.check { input type="checkbox" name="view_history" value="1" checked; "閲覧履歴の確認" }
                    }
                    button type="submit" { "権限を与える" }
                }
            }
        },
    ))
}

async fn proxy_grant(State(web): State<Web>, u: PortalUser, form: Form) -> Result<Response> {
    session::check_csrf(&form, &u.csrf)?;
    let ctx = u.ctx.clone();
    let (login, relation) = (form.get("login").to_owned(), form.get("relation").to_owned());
    let (vr, mc, vh) = (form.checked("view_records"), form.checked("manage_consent"), form.checked("view_history"));
    web.call(move |svc| svc.grant_proxy(&ctx, &login, &relation, vr, mc, vh)).await?;
    Ok(Redirect::to("/portal/proxies?msg=granted").into_response())
}

async fn proxy_revoke(State(web): State<Web>, u: PortalUser, Path(id): Path<String>, form: Form) -> Result<Response> {
    session::check_csrf(&form, &u.csrf)?;
    let ctx = u.ctx.clone();
    web.call(move |svc| svc.revoke_proxy(&ctx, &id)).await?;
    Ok(Redirect::to("/portal/proxies?msg=revoked").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toggles_change_exactly_one_setting() {
        let mut s = ConsentSettings::default();
        apply_toggle(&mut s, "kind", "area:1301:pharmacy", "off").unwrap();
        assert_eq!(
            s.kinds,
            vec![KindSetting { within: Within::Area("1301".into()), class: FacilityClass::Pharmacy, allow: false }]
        );
        apply_toggle(&mut s, "kind", "area:1301:pharmacy", "default").unwrap();
        assert!(s.kinds.is_empty());
        apply_toggle(&mut s, "profession", "pharmacist", "off").unwrap();
        assert_eq!(s.professions.get("pharmacist"), Some(&false));
        apply_toggle(&mut s, "profession", "pharmacist", "on").unwrap();
        assert!(s.professions.is_empty());
        apply_toggle(&mut s, "facility", "1318814790", "on").unwrap();
        assert_eq!(s.facilities.get("1318814790"), Some(&true));
        apply_toggle(&mut s, "area", "elsewhere", "on").unwrap();
        assert!(s.area.elsewhere);
        apply_toggle(&mut s, "closed", "", "on").unwrap();
        assert!(s.closed);
        assert!(apply_toggle(&mut s, "facility", "12345", "on").is_err(), "not a facility code");
        assert!(apply_toggle(&mut s, "kind", "pref:99:clinic", "on").is_err());
        assert!(apply_toggle(&mut s, "area", "elsewhere", "default").is_err());
        assert!(apply_toggle(&mut s, "nonsense", "", "on").is_err());
    }
}
