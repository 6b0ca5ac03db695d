//! The operator console: named operators log in with password and one-time code
//! (`/login?next=/admin`); the bootstrap (administrator) token opens only the page that creates
//! the first operator (`/admin/first-operator`), every other page refuses it. Facilities and
//! users (list and create; a new user's TOTP enrolment is shown once), the audit report
//! (filters, sorting, CSV) and the emergency-access review list.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use musubi_domain::Profession;
use musubi_service::people::NewUser;
use musubi_service::{ApiError, ErrorKind, parse_query};
use serde_json::Value;

use crate::Web;
use crate::html::{self, Nav, csrf_field, notice, page};
use crate::session::{
    self, Anonymous, BOOTSTRAP_COOKIE, BOOTSTRAP_SESSION_MS, Bootstrap, BootstrapSession, Form, Operator, PageError,
    cookie, random_token, set_cookie,
};

type Result<T> = std::result::Result<T, PageError>;

pub(crate) fn routes() -> Router<Web> {
    Router::new()
        .route("/admin", get(dashboard))
        .route("/admin/login", get(login_form).post(login_post).layer(session::public_limit()))
        .route("/admin/logout", post(logout))
        .route("/admin/first-operator", get(first_operator_form).post(first_operator_post))
        .route("/admin/facilities", get(facilities).post(facility_post))
        .route("/admin/users", get(users).post(user_post))
        .route("/admin/users/{login}/{action}", post(user_action))
        .route("/admin/audit", get(audit))
        .route("/admin/emergency", get(emergency))
        .route("/admin/emergency/{id}", post(review))
        .route("/admin/evidence", get(evidence))
        .route("/admin/visit-consents/{id}", post(visit_consent_decide))
        .route("/admin/alerts/{id}", post(alert_handled))
        .route("/admin/notices/{id}", post(notice_posted))
        .route("/admin/mpi", get(mpi))
        .route("/admin/mpi/{id}", post(mpi_resolve))
}

fn query(q: Option<String>) -> Vec<(String, String)> {
    q.map(|q| parse_query(&q)).unwrap_or_default()
}

fn q_get<'a>(q: &'a [(String, String)], k: &str) -> &'a str {
    q.iter().find(|(n, _)| n == k).map_or("", |(_, v)| v.trim())
}

fn login_page(message: Option<&str>) -> Response {
    page(
        "運営事務局 ログイン",
        Nav::Anonymous,
        html! {
            section.card.narrow {
                h1 { "運営事務局 ログイン" }
                @if let Some(m) = message { (notice("error", m)) }
                p { a.button href="/login?next=/admin" { "運営者アカウントでログイン（パスワードとワンタイムコード）" } }
                p { "運営者アカウントがまだない場合だけ、管理者トークン（サーバーの " code { "DATA/admin-token" } "）で最初の運営者を作成します。管理者トークンでできるのはこの作成だけで、作成するとトークンは失効します。" }
                form method="post" action="/admin/login" {
                    label { "管理者トークン" input type="password" name="token" autocomplete="off" required autofocus; }
                    button type="submit" { "最初の運営者を作成する" }
                }
            }
        },
    )
}

async fn login_form() -> Response {
    login_page(None)
}

async fn login_post(State(web): State<Web>, anon: Anonymous, form: Form) -> Result<Response> {
    let token = form.get("token").to_owned();
    let hash = musubi_fhir::sha256_hex(token.as_bytes());
    let h2 = hash.clone();
    let addr = anon.address.clone();
    let row = web
        .call(move |svc| {
            let now = musubi_fhir::datetime::now_ms();
            let row = svc.active_admin_token(&h2, now)?;
            if row.is_none() {
                svc.audit_login_failure(addr, "operator console: invalid administrator token")?;
            }
            Ok(row)
        })
        .await?;
    let Some(token_name) = row else {
        let mut r = login_page(Some("トークンが正しくないか、失効しています。"));
        *r.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
        return Ok(r);
    };
    let id = random_token(32)?;
    let s = BootstrapSession {
        name: token_name,
        token_hash: hash,
        csrf: random_token(18)?,
        expires: musubi_fhir::datetime::now_ms() + BOOTSTRAP_SESSION_MS,
        last_seen: musubi_fhir::datetime::now_ms(),
    };
    {
        let mut map = web.inner.bootstrap.lock().map_err(|_| ApiError::internal("bootstrap sessions poisoned"))?;
        let now = musubi_fhir::datetime::now_ms();
        map.retain(|_, v| v.expires > now);
        map.insert(id.clone(), s);
    }
    // The token opens one page: the one that creates the first operator.
    let mut r = Redirect::to("/admin/first-operator").into_response();
    set_cookie(&mut r, BOOTSTRAP_COOKIE, &id, BOOTSTRAP_SESSION_MS / 1000, web.config().secure_cookies);
    Ok(r)
}

fn first_operator_page(csrf: &str, message: Option<Markup>, f: &Form) -> Response {
    page(
        "最初の運営者を作成",
        Nav::Anonymous,
        html! {
            section.card.narrow {
                h1 { "最初の運営者を作成" }
                @if let Some(m) = message { (m) }
                p { "管理者トークンでできるのは、最初の運営者アカウントの作成だけです。作成するとトークンは失効し、以後は運営者アカウント（パスワードとワンタイムコード）でログインします。" }
                p { "運営者は初回ログイン時に自分のパスワードを決め、認証アプリを登録します。" }
                form method="post" action="/admin/first-operator" {
                    (csrf_field(csrf))
                    label { "ログインID" input type="text" name="login" value=(f.get("login")) required autocomplete="off"; }
                    label { "氏名" input type="text" name="name" value=(f.get("name")) required; }
                    label { "初期パスワード（10文字以上、2種類以上の文字）" input type="password" name="password" autocomplete="new-password" required minlength="10"; }
                    button type="submit" { "作成" }
                }
            }
        },
    )
}

async fn first_operator_form(boot: Bootstrap) -> Response {
    first_operator_page(&boot.csrf, None, &Form::default())
}

async fn first_operator_post(
    State(web): State<Web>,
    boot: Bootstrap,
    headers: HeaderMap,
    form: Form,
) -> Result<Response> {
    session::check_csrf(&form, &boot.csrf)?;
    let ctx = boot.ctx.clone();
    let (login, name, password) =
        (form.get("login").to_owned(), form.get("name").to_owned(), form.get("password").to_owned());
    let l = login.clone();
    match web.call(move |svc| svc.create_operator(&ctx, &l, &name, &password)).await {
        Ok(_) => {}
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::Conflict) => {
            let mut r = first_operator_page(&boot.csrf, Some(notice("error", &e.summary())), &form);
            *r.status_mut() = session::status_of(e.kind);
            return Ok(r);
        }
        Err(e) => return Err(e.into()),
    }
    // The token is revoked: its console session ends with it.
    if let Some(id) = cookie(&headers, BOOTSTRAP_COOKIE, web.config().secure_cookies)
        && let Ok(mut map) = web.inner.bootstrap.lock()
    {
        map.remove(&id);
    }
    let mut r = page(
        "運営者を作成しました",
        Nav::Anonymous,
        html! {
            section.card.narrow {
                h1 { "運営者を作成しました" }
                (notice("ok", &format!("運営者アカウント {login} を作成しました。管理者トークンは失効しました。")))
                p { "運営者アカウントでログインしてください。初回はパスワードの変更と認証アプリの登録を行います。" }
                p { a.button href="/login?next=/admin" { "運営者アカウントでログイン" } }
            }
        },
    );
    set_cookie(&mut r, BOOTSTRAP_COOKIE, "", 0, web.config().secure_cookies);
    Ok(r)
}

async fn logout(State(web): State<Web>, op: Operator, headers: HeaderMap, form: Form) -> Result<Response> {
    session::check_csrf(&form, &op.csrf)?;
    if let Some(id) = cookie(&headers, BOOTSTRAP_COOKIE, web.config().secure_cookies)
        && let Ok(mut map) = web.inner.bootstrap.lock()
    {
        map.remove(&id);
    }
    // A named operator's session is the service's: end it too.
    if let Some(token) = cookie(&headers, session::SESSION_COOKIE, web.config().secure_cookies) {
        web.call(move |svc| svc.logout(&token)).await?;
    }
    let mut r = Redirect::to("/admin/login").into_response();
    set_cookie(&mut r, BOOTSTRAP_COOKIE, "", 0, web.config().secure_cookies);
    set_cookie(&mut r, session::SESSION_COOKIE, "", 0, web.config().secure_cookies);
    Ok(r)
}

async fn dashboard(State(web): State<Web>, op: Operator) -> Result<Response> {
    let ctx = op.ctx.clone();
    let reviews = web.call(move |svc| svc.emergency_reviews(&ctx)).await?;
    Ok(page(
        "運営",
        Nav::Operator(&op.csrf),
        html! {
            h1 { "運営事務局" }
            @if !reviews.is_empty() { (notice("warn", &format!("確認待ちの緊急時の閲覧が {} 件あります。", reviews.len()))) }
            div.doors {
                a.door href="/admin/facilities" { strong { "施設" } span { "参加施設の登録と一覧" } }
                a.door href="/admin/users" { strong { "利用者" } span { "医療従事者・職員のアカウント" } }
                a.door href="/admin/audit" { strong { "監査レポート" } span { "期間・利用者・患者・結果で絞り込み、CSV 出力" } }
                a.door href="/admin/emergency" { strong { "緊急時の閲覧の確認" @if !reviews.is_empty() { " (" (reviews.len()) ")" } } span { "break-glass の妥当性の確認" } }
                a.door href="/admin/mpi" { strong { "名寄せの確認" } span { "同一人物かどうかの判断待ち" } }
                a.door href="/admin/evidence" { strong { "同意・警告・郵送" } span { "紙の同意書の確認、来院時の同意の一覧、警告、郵送する通知" } }
            }
        },
    ))
}

// ---- facilities ----

const CLASSES: [(&str, &str); 5] =
    [("hospital", "病院"), ("clinic", "診療所"), ("dental", "歯科診療所"), ("pharmacy", "薬局"), ("other", "その他")];

async fn facilities(State(web): State<Web>, op: Operator, RawQuery(q): RawQuery) -> Result<Response> {
    let q = query(q);
    facilities_page(
        &web,
        &op,
        if q_get(&q, "msg") == "saved" { Some(notice("ok", "施設を登録しました。")) } else { None },
        &Form::default(),
    )
    .await
}

async fn facilities_page(web: &Web, op: &Operator, message: Option<Markup>, f: &Form) -> Result<Response> {
    // The registry is not clinical data: read for the list.
    let ctx = op.ctx.clone();
    let list = web.call(move |svc| svc.facilities(&ctx)).await?;
    Ok(page(
        "施設",
        Nav::Operator(&op.csrf),
        html! {
            h1 { "施設" }
            @if let Some(m) = message { (m) }
            section.card {
                h2 { "登録済みの施設（" (list.len()) "）" }
                table {
                    thead { tr { th { "医療機関コード" } th { "名称" } th { "種類" } th { "都道府県" } th { "二次医療圏" } th { "開示" } th { "閲覧" } } }
                    tbody {
                        @for f in &list {
                            tr {
                                td { code { (f.code) } }
                                td { (f.name) }
                                td { (CLASSES.iter().find(|(c, _)| *c == f.class).map_or(f.class.as_str(), |(_, l)| l)) }
                                td { (u8::try_from(f.prefecture).ok().and_then(musubi_domain::prefecture_name).unwrap_or("")) }
                                td { (f.area) " " (f.area_name) }
                                td { (if f.discloses { "○" } else { "—" }) }
                                td { (if f.views { "○" } else { "—" }) }
                            }
                        }
                    }
                }
            }
            section.card.narrow {
                h2 { "施設を登録する" }
                form method="post" action="/admin/facilities" {
                    (csrf_field(&op.csrf))
                    label { "医療機関コード（10桁）" input type="text" name="code" value=(f.get("code")) inputmode="numeric" required pattern="[0-9]{10}"; }
                    label { "名称" input type="text" name="name" value=(f.get("name")) required; }
                    label { "種類" select name="class" { @for (c, l) in CLASSES { option value=(c) selected[f.get("class") == c] { (l) } } } }
                    label { "都道府県"
                        select name="prefecture" {
                            @for n in 1..=47u8 { @if let Some(p) = musubi_domain::prefecture_name(n) { option value=(n) selected[f.get("prefecture") == n.to_string()] { (p) } } }
                        }
                    }
                    label { "二次医療圏 ID" input type="text" name="area" value=(f.get("area")) placeholder="1301" required; }
                    label { "二次医療圏の名称" input type="text" name="area_name" value=(f.get("area_name")) placeholder="区中央部"; }
                    label { "圏内の市区町村（読点またはカンマ区切り）" input type="text" name="cities" value=(f.get("cities")) placeholder="千代田区、中央区"; }
                    label.check { input type="checkbox" name="discloses" value="1" checked; "記録を開示する" }
                    label.check { input type="checkbox" name="views" value="1" checked; "ネットワークの記録を閲覧する" }
                    button type="submit" { "登録" }
                }
            }
        },
    ))
}

async fn facility_post(State(web): State<Web>, op: Operator, form: Form) -> Result<Response> {
    session::check_csrf(&form, &op.csrf)?;
    let row = musubi_service::people::NewFacility {
        code: form.get("code").to_owned(),
        name: form.get("name").to_owned(),
        class: form.get("class").to_owned(),
        prefecture: form.get("prefecture").parse().unwrap_or(0),
        area: form.get("area").to_owned(),
        area_name: form.get("area_name").to_owned(),
        discloses: form.checked("discloses"),
        views: form.checked("views"),
    };
    let cities: Vec<String> = form
        .get("cities")
        .split([',', '、', '，'])
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    let ctx = op.ctx.clone();
    match web.call(move |svc| svc.register_facility(&ctx, row, cities)).await {
        Ok(()) => Ok(Redirect::to("/admin/facilities?msg=saved").into_response()),
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::Conflict) => {
            let mut r = facilities_page(&web, &op, Some(notice("error", &e.summary())), &form).await?;
            *r.status_mut() = session::status_of(e.kind);
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

// ---- users ----

async fn users(State(web): State<Web>, op: Operator) -> Result<Response> {
    users_page(&web, &op, None, &Form::default()).await
}

async fn users_page(web: &Web, op: &Operator, message: Option<Markup>, f: &Form) -> Result<Response> {
    // Account and registry data, not clinical: read for the lists.
    let ctx = op.ctx.clone();
    let (list, facilities) = web.call(move |svc| Ok((svc.users(&ctx)?, svc.facilities(&ctx)?))).await?;
    let fname = |code: &str| facilities.iter().find(|f| f.code == code).map_or(code.to_owned(), |f| f.name.clone());
    Ok(page(
        "利用者",
        Nav::Operator(&op.csrf),
        html! {
            h1 { "利用者（医療従事者・職員）" }
            @if let Some(m) = message { (m) }
            section.card {
                h2 { "登録済みの利用者（" (list.len()) "）" }
                table {
                    thead { tr { th { "ログインID" } th { "氏名" } th { "職種" } th { "所属施設" } th { "状態" } th { "操作" } } }
                    tbody {
                        @for u in &list {
                            tr {
                                td { code { (u.login) } }
                                td { (u.name) @if !u.kana.is_empty() { br; small { (u.kana) } } }
                                td { (u.profession.parse::<Profession>().map_or(u.profession.as_str(), |p| p.label_ja())) }
                                td { (u.facilities.iter().map(|c| fname(c)).collect::<Vec<_>>().join("、")) }
                                td {
                                    @if u.disabled { "停止" }
                                    @else if u.locked_until.is_some_and(|t| t > musubi_fhir::datetime::now_ms()) { "ロック中" }
                                    @else { "有効" }
                                }
                                td { (user_actions(&op.csrf, &u.login, u.disabled)) }
                            }
                        }
                    }
                }
            }
            section.card.narrow {
                h2 { "利用者を登録する" }
                form method="post" action="/admin/users" {
                    (csrf_field(&op.csrf))
                    label { "ログインID" input type="text" name="login" value=(f.get("login")) required; }
                    label { "氏名（漢字）" input type="text" name="name" value=(f.get("name")) required; }
                    label { "氏名（カナ）" input type="text" name="kana" value=(f.get("kana")); }
                    label { "職種" select name="profession" { @for p in Profession::ALL { option value=(p.code()) selected[f.get("profession") == p.code()] { (p.label_ja()) } } } }
                    fieldset {
                        legend { "所属施設" }
                        @for fac in &facilities {
                            label.check { input type="checkbox" name="facilities" value=(fac.code) checked[f.all("facilities").contains(&fac.code)]; (fac.name) " (" (fac.code) ")" }
                        }
                    }
                    label { "初期パスワード（10文字以上、2種類以上の文字）" input type="password" name="password" autocomplete="new-password" required minlength="10"; }
                    label.check { input type="checkbox" name="self_enrol" value="1" checked; "認証アプリは本人が初回ログイン時に登録する（鍵を運営事務局が見ない）" }
                    button type="submit" { "登録" }
                }
            }
        },
    ))
}

/// The account actions on one user: each a one-button form (the password reset with its field).
fn user_actions(csrf: &str, login: &str, disabled: bool) -> Markup {
    let button = |action: &str, label: &str| {
        html! {
            form.inline method="post" action=(format!("/admin/users/{}/{action}", crate::html::url_encode(login))) {
                (csrf_field(csrf))
                button.link type="submit" { (label) }
            }
        }
    };
    html! {
        @if disabled { (button("enable", "再開")) } @else { (button("disable", "停止")) }
        (button("revoke-sessions", "セッション終了"))
        (button("reset-second-factor", "二要素認証の初期化"))
        details {
            summary { "パスワード再設定" }
            form method="post" action=(format!("/admin/users/{}/reset-password", crate::html::url_encode(login))) {
                (csrf_field(csrf))
                label { "新しいパスワード" input type="password" name="password" autocomplete="new-password" required minlength="10"; }
                button type="submit" { "再設定" }
            }
        }
    }
}

/// Disable / enable, end the sessions, reset the second factor or the password of a user,
/// audited under the operator's name.
async fn user_action(
    State(web): State<Web>,
    op: Operator,
    Path((login, action)): Path<(String, String)>,
    form: Form,
) -> Result<Response> {
    session::check_csrf(&form, &op.csrf)?;
    let ctx = op.ctx.clone();
    let password = form.get("password").to_owned();
    let l = login.clone();
    let a = action.clone();
    let done = web
        .call(move |svc| match a.as_str() {
            "disable" => {
                svc.set_user_disabled(&ctx, &l, true).map(|()| "停止しました（すべてのセッションを終了しました）")
            }
            "enable" => svc.set_user_disabled(&ctx, &l, false).map(|()| "再開しました"),
            "revoke-sessions" => svc.revoke_user_sessions(&ctx, &l).map(|()| "すべてのセッションを終了しました"),
            "reset-second-factor" => svc
                .reset_user_second_factor(&ctx, &l)
                .map(|()| "二要素認証を初期化しました。次回ログイン時に本人が認証アプリを登録します"),
            "reset-password" => svc
                .reset_user_password(&ctx, &l, &password)
                .map(|()| "パスワードを再設定しました（すべてのセッションを終了しました）"),
            _ => Err(ApiError::new(ErrorKind::NotFound, format!("利用者への操作 {a} はありません"))),
        })
        .await;
    match done {
        Ok(text) => {
            users_page(&web, &op, Some(notice("ok", &format!("利用者 {login}: {text}"))), &Form::default()).await
        }
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::NotFound) => {
            let mut r = users_page(&web, &op, Some(notice("error", &e.summary())), &Form::default()).await?;
            *r.status_mut() = session::status_of(e.kind);
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

async fn user_post(State(web): State<Web>, op: Operator, form: Form) -> Result<Response> {
    session::check_csrf(&form, &op.csrf)?;
    let profession: Profession =
        form.get("profession").parse().map_err(|e: String| ApiError::bad_request(format!("職種が不正です: {e}")))?;
    let u = NewUser {
        login: form.get("login").to_owned(),
        name: form.get("name").to_owned(),
        kana: form.get("kana").to_owned(),
        profession,
        facilities: form.all("facilities"),
        password: form.get("password").to_owned(),
    };
    let login = u.login.clone();
    let ctx = op.ctx.clone();
    if form.checked("self_enrol") {
        let l = login.clone();
        return match web.call(move |svc| svc.create_user_self_enrolling(&ctx, u)).await {
            Ok(_) => {
                let msg = html! {
                    div.notice.ok role="status" {
                        p { "利用者 " code { (l) } " を登録しました。初回ログイン時に本人が認証アプリを登録します。" }
                    }
                };
                users_page(&web, &op, Some(msg), &Form::default()).await
            }
            Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::Conflict) => {
                let mut r = users_page(&web, &op, Some(notice("error", &e.summary())), &form).await?;
                *r.status_mut() = session::status_of(e.kind);
                Ok(r)
            }
            Err(e) => Err(e.into()),
        };
    }
    match web.call(move |svc| svc.create_user(&ctx, u)).await {
        Ok(e) => {
            let grouped: Vec<String> =
                e.totp_secret.chars().collect::<Vec<_>>().chunks(4).map(|c| c.iter().collect()).collect();
            let msg = html! {
                div.notice.ok role="status" {
                    p { "利用者 " code { (login) } " を登録しました。次の認証アプリ用の鍵を本人に安全な方法で渡してください（" strong { "この画面でのみ表示されます" } "）。" }
                    p.secret { code #totp-secret { (grouped.join(" ")) } }
                    p.secret { code #totp-uri { (e.totp_uri) } }
                }
            };
            users_page(&web, &op, Some(msg), &Form::default()).await
        }
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::Conflict) => {
            let mut r = users_page(&web, &op, Some(notice("error", &e.summary())), &form).await?;
            *r.status_mut() = session::status_of(e.kind);
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

// ---- audit report ----

const AUDIT_COLS: [(&str, &str); 12] = [
    ("seq", "番号"),
    ("recorded", "日時"),
    ("agent", "利用者"),
    ("agentKind", "種別"),
    ("facility", "施設"),
    ("profession", "職種"),
    ("action", "操作"),
    ("subtype", "内容"),
    ("outcome", "結果"),
    ("purpose", "目的"),
    ("patient", "患者"),
    ("entities", "件数"),
];

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn outcome_label(code: &str) -> &str {
    match code {
        "0" => "成功",
        "4" => "軽微な失敗",
        "8" => "拒否・失敗",
        "12" => "重大な失敗",
        other => other,
    }
}

async fn audit(State(web): State<Web>, op: Operator, RawQuery(raw): RawQuery) -> Result<Response> {
    let q = query(raw.clone());
    let get = |k: &str| Some(q_get(&q, k).to_owned()).filter(|v| !v.is_empty());
    let date = |k: &str, end: bool| -> std::result::Result<Option<i64>, ApiError> {
        match get(k) {
            None => Ok(None),
            Some(v) => musubi_fhir::datetime::parse_range(&v)
                .map(|r| Some(if end { r.hi } else { r.lo }))
                .map_err(|_| ApiError::bad_request(format!("日付 {v:?} が不正です（例: 2026-11-01）"))),
        }
    };
    let aq = musubi_service::people::AuditFilter {
        agent: get("user"),
        patient: get("patient"),
        person: None,
        facility: get("facility"),
        outcome: get("outcome"),
        action: get("action"),
        from: date("from", false)?,
        to: date("to", true)?,
    };
    let sort = get("sort").unwrap_or_else(|| "time_desc".into());
    let csv = get("format").as_deref() == Some("csv");
    let offset: i64 = get("offset").and_then(|v| v.parse().ok()).unwrap_or(0).max(0);
    let limit: i64 = if csv { 5000 } else { 100 };
    let ctx = op.ctx.clone();
    let oldest = sort == "time_asc";
    let (total, mut rows) = web.call(move |svc| svc.audit_report(&ctx, &aq, offset, limit, oldest)).await?;
    if let Some(col) = sort.strip_prefix("col_").filter(|c| AUDIT_COLS.iter().any(|(k, _)| k == c)) {
        rows.sort_by_key(|r| cell(&r[col]));
    }
    if csv {
        let mut out = AUDIT_COLS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(",") + "\n";
        for r in &rows {
            let line: Vec<String> = AUDIT_COLS.iter().map(|(k, _)| crate::csv_field(&cell(&r[*k]))).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        let mut resp = out.into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"musubi-audit.csv\""));
        return Ok(resp);
    }
    // Links keep the filters and change one thing.
    let base: Vec<(String, String)> =
        q.iter().filter(|(k, _)| !matches!(k.as_str(), "sort" | "offset" | "format")).cloned().collect();
    let link = |extra: &[(&str, String)]| {
        let mut parts: Vec<String> = base.iter().map(|(k, v)| format!("{k}={}", html::url_encode(v))).collect();
        parts.extend(extra.iter().map(|(k, v)| format!("{k}={}", html::url_encode(v))));
        format!("/admin/audit?{}", parts.join("&"))
    };
    let v = |k: &str| q_get(&q, k).to_owned();
    Ok(page(
        "監査レポート",
        Nav::Operator(&op.csrf),
        html! {
            h1 { "監査レポート" }
            form.search method="get" action="/admin/audit" {
                div.fields {
                    label { "期間（から）" input type="date" name="from" value=(v("from")); }
                    label { "期間（まで）" input type="date" name="to" value=(v("to")); }
                    label { "利用者（ログインID・トークン名）" input type="text" name="user" value=(v("user")); }
                    label { "患者（Patient ID）" input type="text" name="patient" value=(v("patient")); }
                    label { "施設コード" input type="text" name="facility" value=(v("facility")); }
                    label { "結果"
                        select name="outcome" {
                            option value="" { "すべて" }
                            @for (c, l) in [("0", "成功"), ("4", "軽微な失敗"), ("8", "拒否・失敗"), ("12", "重大な失敗")] {
                                option value=(c) selected[v("outcome") == c] { (l) }
                            }
                        }
                    }
                    label { "操作"
                        select name="action" {
                            option value="" { "すべて" }
                            @for (c, l) in [("R", "閲覧"), ("C", "登録"), ("U", "更新"), ("D", "削除"), ("E", "実行")] {
                                option value=(c) selected[v("action") == c] { (l) }
                            }
                        }
                    }
                }
                input type="hidden" name="sort" value=(sort);
                button type="submit" { "絞り込む" }
                " " a.button.secondary href=(link(&[("sort", sort.clone()), ("format", "csv".into())])) { "CSV で出力" }
            }
            p { "該当 " (total) " 件" @if total > 0 { "（" (offset + 1) "〜" (offset + rows.len() as i64) " 件目）" } }
            table.audit {
                thead {
                    tr {
                        @for (k, l) in AUDIT_COLS {
                            th {
                                @if k == "recorded" {
                                    a href=(link(&[("sort", (if sort == "time_desc" { "time_asc" } else { "time_desc" }).to_owned())])) { (l) (if sort == "time_asc" { " ▲" } else if sort == "time_desc" { " ▼" } else { "" }) }
                                } @else {
                                    a href=(link(&[("sort", format!("col_{k}"))])) { (l) @if sort == format!("col_{k}") { " ▲" } }
                                }
                            }
                        }
                    }
                }
                tbody {
                    @for r in &rows {
                        tr class=(if cell(&r["outcome"]) != "0" { "denied" } else if cell(&r["purpose"]).starts_with("emergency") { "emergency" } else { "" }) {
                            @for (k, _) in AUDIT_COLS {
                                td {
                                    @match k {
                                        "recorded" => { (html::instant(&cell(&r[k]))) }
                                        "outcome" => { (outcome_label(&cell(&r[k]))) }
                                        "profession" => { (cell(&r[k]).split('|').next().and_then(|p| p.parse::<Profession>().ok()).map_or(String::new(), |p| p.label_ja().to_owned())) }
                                        _ => { (cell(&r[k])) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p {
                @if offset > 0 { a href=(link(&[("sort", sort.clone()), ("offset", (offset - limit).max(0).to_string())])) { "← 前へ" } " " }
                @if offset + limit < total { a href=(link(&[("sort", sort.clone()), ("offset", (offset + limit).to_string())])) { "次へ →" } }
            }
        },
    ))
}

// ---- emergency access review ----

async fn emergency(State(web): State<Web>, op: Operator, RawQuery(q): RawQuery) -> Result<Response> {
    let q = query(q);
    let ctx = op.ctx.clone();
    let (list, facilities) = web.call(move |svc| Ok((svc.emergency_reviews(&ctx)?, svc.facilities(&ctx)?))).await?;
    let fname = |code: &str| facilities.iter().find(|f| f.code == code).map_or(code.to_owned(), |f| f.name.clone());
    let now = musubi_fhir::datetime::now_ms();
    Ok(page(
        "緊急時の閲覧の確認",
        Nav::Operator(&op.csrf),
        html! {
            h1 { "緊急時の閲覧の確認" }
            @if q_get(&q, "msg") == "reviewed" { (notice("ok", "確認済みにしました。")) }
            @if list.is_empty() { p.none { "確認待ちはありません。" } } @else {
                table {
                    thead { tr { th { "開始" } th { "期限" } th { "利用者" } th { "施設" } th { "患者（person）" } th { "理由" } th { "確認" } } }
                    tbody {
                        @for g in &list {
                            tr.emergency {
                                td { (html::datetime_ms(g.started)) @if musubi_service::evidence::review_overdue(g, now) { " " strong.overdue { "確認期限超過" } } }
                                td { (html::datetime_ms(g.until)) }
                                td { code { (g.user_login) } }
                                td { (fname(&g.facility)) }
                                td { a href={"/admin/audit?patient=&user=" (html::url_encode(&g.user_login))} { code { (g.person_id) } } }
                                td { (g.reason) }
                                td {
                                    form method="post" action={"/admin/emergency/" (g.id)} {
                                        (csrf_field(&op.csrf))
                                        label.sr { "確認メモ" input type="text" name="note" required placeholder="確認内容（例: 救急外来での正当な閲覧）"; }
                                        button type="submit" { "確認済みにする" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// Evidence for the operator: paper consents to confirm, every consent at a visit of the week,
/// alerts, and notices to post to patients without a portal account.
async fn evidence(State(web): State<Web>, op: Operator, RawQuery(q): RawQuery) -> Result<Response> {
    let q = query(q);
    let ctx = op.ctx.clone();
    let (review, alerts, notices, facilities) = web
        .call(move |svc| {
            Ok((
                svc.visit_consent_review(&ctx)?,
                svc.operator_alerts(&ctx)?,
                svc.notices_to_post(&ctx)?,
                svc.facilities(&ctx)?,
            ))
        })
        .await?;
    let fname = |code: &str| facilities.iter().find(|f| f.code == code).map_or(code.to_owned(), |f| f.name.clone());
    let status = |s: &str| match s {
        "active" => "有効",
        "pending" => "確認待ち",
        "rejected" => "無効",
        _ => "不明",
    };
    let evidence = |e: &str| match e.split_once(':') {
        Some(("paper", form)) => format!("紙の同意書 {form}"),
        _ if e == "code" => "患者さんの同意コード".to_owned(),
        _ => "証跡なし（移行前の記録）".to_owned(),
    };
    Ok(page(
        "同意・警告・郵送",
        Nav::Operator(&op.csrf),
        html! {
            h1 { "同意・警告・郵送" }
            @if q_get(&q, "msg") == "done" { (notice("ok", "処理しました。")) }
            h2 { "警告" }
            @if alerts.is_empty() { p.none { "未対応の警告はありません。" } } @else {
                ul.alerts {
                    @for a in &alerts {
                        li { (html::datetime_ms(a.created)) " " (a.text)
                            form.inline method="post" action={"/admin/alerts/" (a.id)} { (csrf_field(&op.csrf)) button type="submit" { "対応済み" } }
                        }
                    }
                }
            }
            h2 { "確認待ちの紙の同意書" }
            @if review.pending.is_empty() { p.none { "確認待ちはありません。" } } @else {
                table {
                    thead { tr { th { "登録" } th { "施設" } th { "登録者" } th { "患者（person）" } th { "証跡" } th { "確認" } } }
                    tbody {
                        @for v in &review.pending {
                            tr {
                                td { (html::datetime_ms(v.given_at)) }
                                td { (fname(&v.facility)) }
                                td { code { (v.recorded_by) } }
                                td { code { (v.person_id) } }
                                td { (evidence(&v.evidence)) }
                                td {
                                    form.inline method="post" action={"/admin/visit-consents/" (v.id)} {
                                        (csrf_field(&op.csrf))
                                        input type="hidden" name="accept" value="true";
                                        button type="submit" { "同意書を確認した（有効にする）" }
                                    }
                                    form.inline method="post" action={"/admin/visit-consents/" (v.id)} {
                                        (csrf_field(&op.csrf))
                                        input type="hidden" name="accept" value="false";
                                        button.danger type="submit" { "無効にする" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "来院時の同意（過去7日）" }
            @if review.recent.is_empty() { p.none { "ありません。" } } @else {
                table {
                    thead { tr { th { "記録" } th { "期限" } th { "施設" } th { "記録者" } th { "患者（person）" } th { "証跡" } th { "状態" } } }
                    tbody {
                        @for v in &review.recent {
                            tr {
                                td { (html::datetime_ms(v.given_at)) }
                                td { @if let Some(u) = v.until { (html::datetime_ms(u)) } @else { "—" } }
                                td { (fname(&v.facility)) }
                                td { code { (v.recorded_by) } }
                                td { code { (v.person_id) } }
                                td { (evidence(&v.evidence)) }
                                td { (status(&v.status)) }
                            }
                        }
                    }
                }
            }
            h2 { "郵送する通知（ポータル未登録の患者さん）" }
            @if notices.is_empty() { p.none { "ありません。" } } @else {
                table {
                    thead { tr { th { "作成" } th { "患者（person）" } th { "内容" } th { "" } } }
                    tbody {
                        @for n in &notices {
                            tr {
                                td { (html::datetime_ms(n.created)) }
                                td { code { (n.person_id) } }
                                td { (n.text) }
                                td { form.inline method="post" action={"/admin/notices/" (n.id)} { (csrf_field(&op.csrf)) button type="submit" { "郵送した" } } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

async fn visit_consent_decide(
    State(web): State<Web>,
    op: Operator,
    Path(id): Path<String>,
    form: Form,
) -> Result<Response> {
    session::check_csrf(&form, &op.csrf)?;
    let accept = form.get("accept") == "true";
    let ctx = op.ctx.clone();
    web.call(move |svc| svc.decide_visit_consent(&ctx, &id, accept)).await?;
    Ok(Redirect::to("/admin/evidence?msg=done").into_response())
}

async fn alert_handled(State(web): State<Web>, op: Operator, Path(id): Path<String>, form: Form) -> Result<Response> {
    session::check_csrf(&form, &op.csrf)?;
    let ctx = op.ctx.clone();
    web.call(move |svc| svc.handle_alert(&ctx, &id)).await?;
    Ok(Redirect::to("/admin/evidence?msg=done").into_response())
}

async fn notice_posted(State(web): State<Web>, op: Operator, Path(id): Path<String>, form: Form) -> Result<Response> {
    session::check_csrf(&form, &op.csrf)?;
    let ctx = op.ctx.clone();
    web.call(move |svc| svc.notice_posted(&ctx, &id)).await?;
    Ok(Redirect::to("/admin/evidence?msg=done").into_response())
}

async fn review(State(web): State<Web>, op: Operator, Path(id): Path<String>, form: Form) -> Result<Response> {
    session::check_csrf(&form, &op.csrf)?;
    let note = form.get("note").to_owned();
    if note.is_empty() {
        return Err(ApiError::bad_request("確認メモを入力してください").into());
    }
    let ctx = op.ctx.clone();
    web.call(move |svc| svc.review_emergency(&ctx, &id, &note)).await?;
    Ok(Redirect::to("/admin/emergency?msg=reviewed").into_response())
}

// ---- MPI review queue ----

/// The fields of a source patient the operator compares, as (label, value).
fn patient_facts(p: &Value) -> Vec<(&'static str, String)> {
    // The one Patient reader, so the review queue shows what every other page shows.
    let id = musubi_record::identity::PatientIdentity::of_patient(p, musubi_fhir::datetime::now_ms());
    vec![
        ("氏名", id.name),
        ("カナ", id.kana),
        ("性別", id.sex.map_or("", |x| x.label()).to_owned()),
        ("生年月日", id.birth_date),
        ("住所", id.address),
        ("電話", id.phone),
        ("被保険者番号", id.insurance),
    ]
}

/// Why the index held a pair (`musubi_identify::Hold`, by its debug name), for people.
fn hold_label(hold: &str) -> String {
    match hold {
        "Uncertain" => "一致度が自動判定の基準の間".to_owned(),
        "GivenNameConflict" => "名（下の名前）がはっきり異なる（双子・兄弟姉妹の可能性）".to_owned(),
        "SameFacility" => "同じ施設に同一人物の別の記録がある".to_owned(),
        "KeptApart" => "以前に別人と判断された記録".to_owned(),
        "Ambiguous" => "複数の人物が候補になる".to_owned(),
        "IdentifierOnly" => {
            "送信元が記載した識別子（他施設の患者ID・保険者番号等）だけが一致し、名前と生年月日が一致しない".to_owned()
        }
        "StrongConflict" => {
            "住所の都道府県と保険者がともに異なり電話番号も一致しない、または生年月日が大きく異なる（同姓同名の別人の可能性）"
                .to_owned()
        }
        other => other.to_owned(),
    }
}

async fn mpi(State(web): State<Web>, op: Operator, RawQuery(q): RawQuery) -> Result<Response> {
    let q = query(q);
    let ctx = op.ctx.clone();
    let list = web.call(move |svc| svc.mpi_review_queue(&ctx)).await?;
    let msg = match q_get(&q, "msg") {
        "linked" => Some(notice("ok", "同一人物として統合しました。")),
        "apart" => Some(notice("ok", "別人として分けました。今後、この2件が自動で統合されることはありません。")),
        _ => None,
    };
    Ok(page(
        "名寄せの確認",
        Nav::Operator(&op.csrf),
        html! {
            h1 { "名寄せの確認（同一人物かどうかの判断待ち）" }
            @if let Some(m) = msg { (m) }
            p { "自動では判断できなかった患者記録の組です。2件を見比べて、同一人物なら「統合」、別人なら「別人として分ける」を選んでください。判断は記録され、後から分離（統合の取り消し）もできます。" }
            @if list.is_empty() { p.none { "確認待ちはありません。" } }
            @for item in &list {
                @let (fa, fb) = (patient_facts(&item.a.patient), patient_facts(&item.b.patient));
                section.card.review {
                    h2 { "確認 " code { (item.id) } }
                    p { "一致度（重み） " strong { (format!("{:.1}", item.weight)) } "　理由: " (hold_label(&item.hold)) }
                    table.side {
                        thead {
                            tr {
                                th { "" }
                                th { (item.a.facility_name.as_deref().unwrap_or(&item.a.facility)) br; small { (item.a.facility) " / 患者ID " code { (item.a.local_id) } } }
                                th { (item.b.facility_name.as_deref().unwrap_or(&item.b.facility)) br; small { (item.b.facility) " / 患者ID " code { (item.b.local_id) } } }
                            }
                        }
                        tbody {
                            @for ((label, va), (_, vb)) in fa.iter().zip(fb.iter()) {
                                @let differs = !va.is_empty() && !vb.is_empty() && va != vb;
                                tr class=(if differs { "differs" } else { "" }) {
                                    th scope="row" { (label) @if differs { " " span.tag.warn { "相違" } } }
                                    td { (va) }
                                    td { (vb) }
                                }
                            }
                        }
                    }
                    div.actions {
                        form.inline method="post" action={"/admin/mpi/" (item.id)} {
                            (csrf_field(&op.csrf))
                            input type="hidden" name="decision" value="link";
                            button type="submit" { "同一人物として統合" }
                        }
                        form.inline method="post" action={"/admin/mpi/" (item.id)} {
                            (csrf_field(&op.csrf))
                            input type="hidden" name="decision" value="apart";
                            button.secondary type="submit" { "別人として分ける" }
                        }
                    }
                }
            }
        },
    ))
}

async fn mpi_resolve(State(web): State<Web>, op: Operator, Path(id): Path<String>, form: Form) -> Result<Response> {
    session::check_csrf(&form, &op.csrf)?;
    let link = match form.get("decision") {
        "link" => true,
        "apart" => false,
        _ => return Err(ApiError::bad_request("判断（統合／別人）を選んでください").into()),
    };
    let ctx = op.ctx.clone();
    web.call(move |svc| svc.mpi_resolve(&ctx, &id, link)).await?;
    Ok(Redirect::to(if link { "/admin/mpi?msg=linked" } else { "/admin/mpi?msg=apart" }).into_response())
}
