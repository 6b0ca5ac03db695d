//! The clinician viewer: login (password, one-time code, facility), patient search, the patient
//! page, a lab item's page, documents, consent in person and emergency access (break-glass).
//! Each patient page is one `Service::person_record` call (gated, audited once).

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use musubi_fhir::ResourceType;
use musubi_service::evidence::{
    BreakGlass, EMERGENCY_HOURS, EMERGENCY_PER_DAY, EMERGENCY_REASON_MIN, EmergencyReason, VisitEvidence,
};
use musubi_service::{ApiError, ErrorKind, parse_query};
use serde_json::Value;

use crate::Web;
use crate::html::{self, Nav, csrf_field, notice, page};
use crate::record_html::{self, Links};
use crate::session::{self, Anonymous, Clinician, Form, PageError, SESSION_COOKIE, cookie, safe_next, set_cookie};
use musubi_record::identity::PatientIdentity;
use musubi_record::page::{self as model, PatientView};

type Result<T> = std::result::Result<T, PageError>;

pub(crate) fn routes() -> Router<Web> {
    Router::new()
        .route("/login", get(login_form).post(login_post).layer(session::public_limit()))
        .route("/login/code", post(code_post).layer(session::public_limit()))
        .route("/logout", post(logout))
        .route("/logout/everywhere", post(logout_everywhere))
        .route("/patients", get(search))
        .route("/patients/{id}", get(patient))
        .route("/patients/{id}/labs/{group}", get(lab))
        .route("/patients/{id}/documents/{rtype}/{rid}", get(document))
        .route("/patients/{id}/visit-consent", get(visit_consent_form).post(visit_consent))
        .route("/patients/{id}/activation-code", post(activation_code))
        .route("/patients/{id}/emergency", get(emergency_form).post(emergency_post))
}

fn query(q: Option<String>) -> Vec<(String, String)> {
    q.map(|q| parse_query(&q)).unwrap_or_default()
}

fn q_get<'a>(q: &'a [(String, String)], k: &str) -> &'a str {
    q.iter().find(|(n, _)| n == k).map_or("", |(_, v)| v.trim())
}

/// The landing page: the three doors.
pub(crate) async fn home() -> Response {
    page(
        "ようこそ",
        Nav::Anonymous,
        html! {
            section.hero {
                h1 { "結 Musubi 地域医療情報連携ネットワーク" }
                p { "地域の病院・診療所・薬局が、患者さんの同意のもとで診療情報を共有します。" }
            }
            div.doors {
                a.door href="/login" { strong { "医療従事者の方" } span { "患者検索・診療情報の閲覧・文書送受信" } }
                a.door href="/portal" { strong { "患者さん・ご家族の方" } span { "開示設定・閲覧履歴・ご自身の記録" } }
                a.door href="/admin" { strong { "運営事務局" } span { "施設・利用者・監査" } }
            }
        },
    )
}

fn login_page(message: Option<&str>, next: &str, login: &str, facilities: &[(String, String)]) -> Response {
    page(
        "医療従事者ログイン",
        Nav::Anonymous,
        html! {
            section.card.narrow {
                h1 { "医療従事者ログイン" }
                @if let Some(m) = message { (notice("error", m)) }
                form method="post" action="/login" {
                    input type="hidden" name="next" value=(next);
                    label { "ログインID" input type="text" name="login" value=(login) autocomplete="username" required autofocus[login.is_empty()]; }
                    label { "パスワード" input type="password" name="password" autocomplete="current-password" required autofocus[!login.is_empty()]; }
                    @if !facilities.is_empty() {
                        label { "所属施設"
                            select name="facility" required {
                                @for (code, name) in facilities { option value=(code) { (name) "（" (code) "）" } }
                            }
                        }
                    }
                    button type="submit" { "次へ" }
                }
                p.note { "パスワードの次に、認証アプリのワンタイムコードを入力します。続けて失敗すると、しばらくログインできなくなります。" }
            }
        },
    )
}

async fn login_form(RawQuery(q): RawQuery) -> Response {
    let q = query(q);
    login_page(None, q_get(&q, "next"), "", &[])
}

/// The authenticator enrolment shown at a first login (the secret is shown only here, to the
/// person logging in).
pub(crate) fn enrolment_markup(e: &musubi_service::people::Enrolled) -> maud::Markup {
    let grouped: Vec<String> =
        e.totp_secret.chars().collect::<Vec<_>>().chunks(4).map(|c| c.iter().collect()).collect();
    html! {
        div.enrol {
            p { "はじめてのログインです。認証アプリ（Google Authenticator など）に次のキーを登録し、表示された6桁のコードを入力してください。このキーはこの画面でしか表示されません。" }
            p.secret { code #totp-secret { (grouped.join(" ")) } }
            p.secret { code #totp-uri { (e.totp_uri) } }
        }
    }
}

pub(crate) fn code_page_enrol(
    message: Option<&str>,
    next: &str,
    action: &str,
    facility_name: Option<&str>,
    enrolment: Option<&musubi_service::people::Enrolled>,
    new_password: bool,
) -> Response {
    page(
        "ワンタイムコード",
        Nav::Anonymous,
        html! {
            section.card.narrow {
                h1 { "ワンタイムコード" }
                @if let Some(m) = message { (notice("error", m)) }
                @if let Some(f) = facility_name { p { (f) " としてログインします。" } }
                @if let Some(e) = enrolment { (enrolment_markup(e)) }
                form method="post" action=(action) {
                    input type="hidden" name="next" value=(next);
                    @if new_password {
                        input type="hidden" name="needs_new_password" value="1";
                        p { "運営事務局が設定したパスワードでログインしました。ご自身のパスワードを決めてください（10文字以上、2種類以上の文字）。" }
                        label { "新しいパスワード"
                            input type="password" name="new_password" autocomplete="new-password" required minlength="10";
                        }
                    }
                    label { "認証アプリに表示されている6桁のコード"
                        input type="text" name="code" inputmode="numeric" pattern="[0-9 ]{6,7}" autocomplete="one-time-code" required autofocus;
                    }
                    button type="submit" { "ログイン" }
                }
            }
        },
    )
}

async fn login_post(State(web): State<Web>, anon: Anonymous, form: Form) -> Result<Response> {
    let login = form.get("login").to_owned();
    let password = form.get("password").to_owned();
    let next = form.get("next").to_owned();
    let facility = form.opt("facility");
    let addr = anon.address.clone();
    let addr2 = anon.address.clone();
    let l2 = login.clone();
    let outcome = web
        .call(move |svc| {
            let out = svc.login_user(&l2, &password, facility.as_deref(), addr)?;
            // A user of several facilities chooses which one to act for.
            let own = svc.login_facilities(&out.token)?;
            let fname = facility.as_ref().and_then(|f| own.iter().find(|(c, _)| c == f).map(|(_, n)| n.clone()));
            let mut choices = Vec::new();
            if own.len() > 1 && facility.is_none() {
                svc.logout(&out.token)?;
                choices = own;
            }
            // A first login (or one after the operator reset the second factor): enrol now.
            let enrolment = if out.needs_enrolment && choices.is_empty() {
                Some(svc.enrol_second_factor(&out.token, addr2)?)
            } else {
                None
            };
            Ok((out, choices, fname, enrolment))
        })
        .await;
    match outcome {
        Ok((_, choices, _, _)) if !choices.is_empty() => {
            Ok(login_page(Some("所属施設を選んで、もう一度パスワードを入力してください。"), &next, &login, &choices))
        }
        Ok((out, _, fname, enrolment)) => {
            let mut r = code_page_enrol(
                None,
                &next,
                "/login/code",
                fname.as_deref(),
                enrolment.as_ref(),
                out.needs_new_password,
            );
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

/// Step two for both doors: the one-time code completes the session in the cookie.
pub(crate) async fn second_factor(
    web: &Web,
    headers: &HeaderMap,
    address: Option<String>,
    form: &Form,
    default_next: &'static str,
    action: &'static str,
    login_page_path: &'static str,
) -> Result<Response> {
    let next = safe_next(form.get("next"), default_next);
    let secure = web.config().secure_cookies;
    let Some(token) = cookie(headers, SESSION_COOKIE, secure) else {
        return Ok(Redirect::to(login_page_path).into_response());
    };
    let code = form.get("code").to_owned();
    let new_password = form.opt("new_password").filter(|_| form.get("needs_new_password") == "1");
    let asked_new_password = new_password.is_some();
    let done = web
        .call(move |svc| {
            if let Some(p) = new_password {
                // Chosen on an earlier try whose code was wrong: nothing more to do.
                match svc.choose_password(&token, &p, address.clone()) {
                    Ok(()) => {}
                    Err(e) if e.kind == ErrorKind::Conflict => {}
                    Err(e) => return Err(e),
                }
            }
            svc.second_factor(&token, &code, address)
        })
        .await;
    match done {
        Ok(out) => {
            // The login completes under a new session token; the pending one is dead.
            let mut r = Redirect::to(&next).into_response();
            let max_age = (out.expires - musubi_fhir::datetime::now_ms()) / 1000;
            set_cookie(&mut r, SESSION_COOKIE, &out.token, max_age, secure);
            Ok(r)
        }
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::Unauthorized | ErrorKind::TooManyRequests { .. } | ErrorKind::BadRequest
            ) =>
        {
            let mut r = code_page_enrol(Some(&e.summary()), form.get("next"), action, None, None, asked_new_password);
            *r.status_mut() = session::status_of(e.kind);
            session::with_retry_after(&mut r, &e);
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

async fn code_post(State(web): State<Web>, anon: Anonymous, headers: HeaderMap, form: Form) -> Result<Response> {
    second_factor(&web, &headers, anon.address, &form, "/patients", "/login/code", "/login").await
}

/// Ends the session in the cookie (after the CSRF check) and clears the cookie.
pub(crate) async fn end_session(web: &Web, headers: &HeaderMap, form: &Form, csrf: &str, to: &str) -> Result<Response> {
    session::check_csrf(form, csrf)?;
    if let Some(token) = cookie(headers, SESSION_COOKIE, web.config().secure_cookies) {
        web.call(move |svc| svc.logout(&token)).await?;
    }
    let mut r = Redirect::to(to).into_response();
    set_cookie(&mut r, SESSION_COOKIE, "", 0, web.config().secure_cookies);
    Ok(r)
}

async fn logout(State(web): State<Web>, c: Clinician, headers: HeaderMap, form: Form) -> Result<Response> {
    end_session(&web, &headers, &form, &c.csrf, "/login").await
}

/// Ends every session of the account (after the CSRF check) and clears the cookie.
pub(crate) async fn end_every_session(
    web: &Web,
    ctx: musubi_service::Ctx,
    form: &Form,
    csrf: &str,
    to: &str,
) -> Result<Response> {
    session::check_csrf(form, csrf)?;
    web.call(move |svc| svc.logout_everywhere(&ctx)).await?;
    let mut r = Redirect::to(to).into_response();
    set_cookie(&mut r, SESSION_COOKIE, "", 0, web.config().secure_cookies);
    Ok(r)
}

async fn logout_everywhere(State(web): State<Web>, c: Clinician, form: Form) -> Result<Response> {
    end_every_session(&web, c.ctx, &form, &c.csrf, "/login").await
}

/// `1970/05/05`, `19700505`, `1970-05-05` → `1970-05-05`.
fn normalize_date(s: &str) -> Option<String> {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    let nums: Vec<&str> = s.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).collect();
    match (digits.len(), nums.as_slice()) {
        (8, [_]) => Some(format!("{}-{}-{}", digits.get(..4)?, digits.get(4..6)?, digits.get(6..8)?)),
        (_, [y, m, d]) if y.len() == 4 => {
            Some(format!("{y}-{:02}-{:02}", m.parse::<u8>().ok()?, d.parse::<u8>().ok()?))
        }
        _ => None,
    }
}

struct Found {
    id: String,
    name: String,
    kana: String,
    sex: String,
    birth: String,
    local_id: String,
}

fn found(bundle: &str) -> Vec<Found> {
    let Ok(b) = serde_json::from_str::<Value>(bundle) else { return Vec::new() };
    b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"].as_str() == Some("Patient"))
        .map(|p| {
            let i = PatientIdentity::of_patient(p, musubi_fhir::datetime::now_ms());
            let local_id = i.local_ids.first().map(|l| l.value.clone()).unwrap_or_default();
            Found {
                id: p["id"].as_str().unwrap_or("").to_owned(),
                sex: i.sex.map_or("", |x| x.short_label()).to_owned(),
                name: i.name,
                kana: i.kana,
                birth: i.birth_date,
                local_id,
            }
        })
        .collect()
}

/// `system|` of the insurance identity in token searches.
const INS_PREFIX: &str = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID|";

/// An insurance identity as typed, then half-width (the MPI's match key), then with full-width
/// 記号 and 番号 (as many senders write them); duplicates dropped.
fn insurance_variants(typed: &str) -> Vec<String> {
    let mut out = vec![typed.to_owned()];
    let Ok(id) = typed.parse::<musubi_domain::InsuranceId>() else { return out };
    let half = id.match_key();
    let full: Vec<String> = half
        .split(':')
        .enumerate()
        .map(|(i, part)| {
            if i == 1 || i == 2 {
                part.chars()
                    .map(|c| if c.is_ascii_alphanumeric() { char::from_u32(c as u32 + 0xFEE0).unwrap_or(c) } else { c })
                    .collect()
            } else {
                part.to_owned()
            }
        })
        .collect();
    for v in [half.clone(), full.join(":")] {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// The Patient to match (`$match`) from the search form: names split into family and given at
/// the first space, the birth date when it reads as one, the insurance identity.
fn match_patient(kana: &str, name: &str, birth: &str, insurance: &str) -> Value {
    let rep = |code: &str, text: &str| {
        let t = text.replace('\u{3000}', " ");
        let (family, given) = t.trim().split_once(' ').unwrap_or((t.trim(), ""));
        let mut n = serde_json::json!({
            "extension": [{"url": musubi_domain::systems::EXT_NAME_REPRESENTATION, "valueCode": code}],
            "text": t.trim(), "family": family.trim()});
        if !given.trim().is_empty() {
            n["given"] = serde_json::json!([given.trim()]);
        }
        n
    };
    let mut names = Vec::new();
    if !name.is_empty() {
        names.push(rep("IDE", name));
    }
    if !kana.is_empty() {
        names.push(rep("SYL", kana));
    }
    let mut p = serde_json::json!({"resourceType": "Patient", "name": names});
    if let Some(d) = normalize_date(birth) {
        p["birthDate"] = Value::String(d);
    }
    if !insurance.is_empty() {
        p["identifier"] =
            serde_json::json!([{"system": musubi_domain::systems::INSURANCE_MEMBER_ID, "value": insurance}]);
    }
    p
}

/// The candidates of a `$match` answer worth showing (certain, or a score of at least 0.5), with the score and
/// the grade in Japanese.
fn scored(bundle: &Value) -> Vec<(Found, f64, &'static str)> {
    let list = found(&bundle.to_string());
    let scores = bundle["entry"].as_array().into_iter().flatten().map(|e| {
        let grade = e["search"]["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|x| x["valueCode"].as_str())
            .unwrap_or("");
        (
            e["search"]["score"].as_f64().unwrap_or(0.0),
            match grade {
                "certain" => "ほぼ確実",
                "probable" => "可能性が高い",
                _ => "可能性あり",
            },
        )
    });
    list.into_iter()
        .zip(scores)
        .filter(|(_, (s, g))| *s >= 0.5 || *g == "ほぼ確実")
        .map(|(f, (s, g))| (f, s, g))
        .collect()
}

async fn search(State(web): State<Web>, c: Clinician, RawQuery(q): RawQuery) -> Result<Response> {
    let q = query(q);
    let (kana, name, birth, insurance, local, facility) = (
        q_get(&q, "kana").to_owned(),
        q_get(&q, "name").to_owned(),
        q_get(&q, "birthdate").to_owned(),
        q_get(&q, "insurance").to_owned(),
        q_get(&q, "local_id").to_owned(),
        q_get(&q, "facility").to_owned(),
    );
    let mut params: Vec<(String, String)> = Vec::new();
    let mut problem = None;
    for v in [&kana, &name] {
        if !v.is_empty() {
            params.push(("name".into(), v.clone()));
        }
    }
    if !birth.is_empty() {
        match normalize_date(&birth) {
            Some(d) => params.push(("birthdate".into(), d)),
            None => problem = Some("生年月日は 1970/05/05 の形で入力してください"),
        }
    }
    if !insurance.is_empty() {
        params.push(("identifier".into(), format!("{INS_PREFIX}{insurance}")));
    }
    if !local.is_empty() {
        let fac = if facility.is_empty() { c.user.facility.to_string() } else { facility.clone() };
        if fac.len() != 10 || !fac.bytes().all(|b| b.is_ascii_digit()) {
            problem = Some("医療機関コードは10桁の数字です");
        }
        params.push(("identifier".into(), format!("{}{fac}|{local}", musubi_domain::systems::LOCAL_PATIENT_ID_PREFIX)));
    }
    let searched = !params.is_empty() && problem.is_none();
    // When the exact search finds no one, a scored match on the demographics (PDQm `$match`)
    // tolerates spelling variants, typos and an insurance id typed with other widths; it needs
    // a name or the insurance id.
    let match_query = (!kana.is_empty() || !name.is_empty() || !insurance.is_empty())
        .then(|| match_patient(&kana, &name, &birth, &insurance));
    let results = if searched {
        params.push(("_count".into(), "50".into()));
        let ctx = c.ctx.clone();
        let p2 = params.clone();
        let ins = insurance.clone();
        let (text, total, candidates) = web
            .call(move |svc| {
                let mut r = svc.search(&ctx, ResourceType::Patient, &p2)?;
                // The same insurance identity as senders write it: half-width, or full-width
                // 記号 and 番号 (the index keeps the value as sent).
                for v in insurance_variants(&ins).into_iter().skip(1) {
                    if r.total > 0 {
                        break;
                    }
                    let mut p3: Vec<(String, String)> =
                        p2.iter().filter(|(k, x)| !(k == "identifier" && x.starts_with(INS_PREFIX))).cloned().collect();
                    p3.push(("identifier".into(), format!("{INS_PREFIX}{v}")));
                    r = svc.search(&ctx, ResourceType::Patient, &p3)?;
                }
                if r.total == 0
                    && let Some(m) = match_query
                {
                    let b = svc.pdq_match(&ctx, &m, 10, false)?;
                    return Ok((r.json, r.total, Some(b)));
                }
                Ok((r.json, r.total, None))
            })
            .await?;
        Some((found(&text), total, candidates.map(|b| scored(&b)).unwrap_or_default()))
    } else {
        None
    };
    let facility_value = if facility.is_empty() { c.user.facility.to_string() } else { facility.clone() };
    Ok(page(
        "患者検索",
        Nav::Clinician(&c.user, &c.csrf),
        html! {
            section.card {
                h1 { "患者検索" }
                form.search method="get" action="/patients" role="search" {
                    div.fields {
                        label { "カナ氏名" input type="text" name="kana" value=(kana) placeholder="ムスビ ハナコ"; }
                        label { "漢字氏名" input type="text" name="name" value=(name) placeholder="結 花子"; }
                        label { "生年月日" input type="text" name="birthdate" value=(birth) placeholder="1970/05/05" inputmode="numeric"; }
                        label { "被保険者番号" input type="text" name="insurance" value=(insurance) placeholder="保険者番号:記号:番号:枝番"; }
                    }
                    fieldset {
                        legend { "施設の患者IDで探す" }
                        div.fields {
                            label { "医療機関コード" input type="text" name="facility" value=(facility_value) inputmode="numeric" maxlength="10"; }
                            label { "患者ID" input type="text" name="local_id" value=(local); }
                        }
                    }
                    button type="submit" { "検索" }
                }
                @if let Some(p) = problem { (notice("error", p)) }
            }
            @if let Some((list, total, similar)) = &results {
                section.card aria-live="polite" {
                    h2 { "検索結果 " (total) " 件" @if *total > list.len() as i64 { "（先頭 " (list.len()) " 件を表示）" } }
                    @if list.is_empty() && !similar.is_empty() {
                        p { "完全に一致する患者はいませんでしたが、次の患者が似ています（表記ゆれ・入力誤りを考慮した照合）。本人であることを確認してから開いてください。" }
                        table.results {
                            thead { tr { th { "氏名" } th { "カナ" } th { "性別" } th { "生年月日" } th { "患者ID" } th { "一致度" } } }
                            tbody {
                                @for (f, score, grade) in similar {
                                    tr {
                                        td { a href={"/patients/" (f.id)} { (f.name) } }
                                        td { (f.kana) }
                                        td { (f.sex) }
                                        td { (html::fhir_date(&f.birth, false)) }
                                        td { code { (f.local_id) } }
                                        td { (format!("{:.0}%", score * 100.0)) " " span.tag { (grade) } }
                                    }
                                }
                            }
                        }
                    } @else if list.is_empty() {
                        p { "該当する患者は見つかりませんでした。" }
                        p.note { "表示されるのは、閲覧が許可されている患者だけです（自施設の患者、および同意と診療関係のある患者）。初めて来院した患者は、施設の患者IDで登録したあとに検索できます。" }
                    } @else {
                        table.results {
                            thead { tr { th { "氏名" } th { "カナ" } th { "性別" } th { "生年月日" } th { "患者ID" } } }
                            tbody {
                                @for f in list {
                                    tr {
                                        td { a href={"/patients/" (f.id)} { (f.name) } }
                                        td { (f.kana) }
                                        td { (f.sex) }
                                        td { (html::fhir_date(&f.birth, false)) }
                                        td { code { (f.local_id) } }
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

pub(crate) fn valid_id(id: &str) -> Result<()> {
    if musubi_fhir::is_valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorKind::NotFound, "患者が見つかりません").into())
    }
}

/// The patient page's data: the view and, during an emergency access, until when it holds.
async fn load(
    web: &Web,
    c: &Clinician,
    id: &str,
    purpose: &'static str,
) -> std::result::Result<(PatientView, Option<(String, i64)>), ApiError> {
    let ctx = c.ctx.clone();
    let pid = id.to_owned();
    web.call(move |svc| {
        let rec = svc.person_record(&ctx, &pid, purpose)?;
        let view = model::patient_view(&rec.person_id, &rec.entries, musubi_fhir::datetime::now_ms());
        let emergency = match rec.emergency {
            Some(reason) => {
                // The caller's own grant (account data, not clinical): when it ends.
                let now = musubi_fhir::datetime::now_ms();
                let until = svc.own_emergency_until(&ctx, &rec.person_id, now)?.unwrap_or(now);
                Some((reason, until))
            }
            None => None,
        };
        Ok((view, emergency))
    })
    .await
}

fn flash(q: &[(String, String)]) -> Option<Markup> {
    match q_get(q, "msg") {
        "consent" => Some(notice(
            "ok",
            "来院時の同意を記録しました。期間中、この施設から記録を閲覧できます。患者さんに通知されました。",
        )),
        "consent-pending" => {
            Some(notice("warn", "紙の同意書による来院時の同意を登録しました。運営事務局が確認した後に有効になります。"))
        }
        "emergency" => Some(notice("warn", "緊急時の閲覧を開始しました。この閲覧は記録され、患者さんに通知されます。")),
        _ => None,
    }
}

fn emergency_banner(e: &Option<(String, i64)>) -> Markup {
    html! {
        @if let Some((reason, until)) = e {
            div.banner.emergency role="alert" {
                strong { "緊急時の閲覧中（" (html::datetime_ms(*until)) "まで）" }
                " 理由: " (reason) " — この閲覧は監査記録に残り、患者さんに通知されています。"
            }
        }
    }
}

/// The patient's actions; `to` is where an emergency access leads (`summary` or the record).
fn actions(c: &Clinician, id: &str, to: &str) -> Markup {
    html! {
        div.actions {
            a.button href={"/patients/" (id) "/summary"} { "救急用サマリ" }
            a.button.secondary href={"/referrals/new?patient=" (id)} { "紹介状を作成" }
            a.button.secondary href={"/patients/" (id) "/visit-consent"} { "来院時の同意を記録" }
            form.inline method="post" action={"/patients/" (id) "/activation-code"} {
                (csrf_field(&c.csrf))
                button.secondary type="submit" title="自施設の患者さんに、本人確認のうえ患者ポータルの利用登録コードを発行します" { "ポータル利用登録コード" }
            }
            a.button.danger href={"/patients/" (id) "/emergency" @if to == "summary" { "?to=summary" }} { "緊急時の閲覧" }
        }
    }
}

/// The page shown when nothing of the patient is visible: the ways to gain access.
pub(crate) fn not_visible(c: &Clinician, id: &str, to: &str) -> Response {
    let mut r = page(
        "閲覧できません",
        Nav::Clinician(&c.user, &c.csrf),
        html! {
            section.card {
                h1 { "この患者の記録は閲覧できません" }
                p { "患者が見つからないか、患者さんの開示設定・診療関係により、この施設からは閲覧が許可されていません。" }
                p { "来院され同意を得た場合は「来院時の同意を記録」を、救急など生命に関わる場合は「緊急時の閲覧」を使ってください。" }
                (actions(c, id, to))
            }
        },
    );
    *r.status_mut() = axum::http::StatusCode::NOT_FOUND;
    r
}

async fn patient(
    State(web): State<Web>,
    c: Clinician,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    valid_id(&id)?;
    let q = query(q);
    let (view, emergency) = match load(&web, &c, &id, "viewer").await {
        Ok(v) => v,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(not_visible(&c, &id, "record")),
        Err(e) => return Err(e.into()),
    };
    let base = format!("/patients/{id}");
    let links = Links {
        base: &base,
        clinician: true,
        timeline_limit: (q_get(&q, "timeline") != "all").then_some(60),
        documents_limit: (q_get(&q, "documents") != "all").then_some(20),
    };
    let title = if view.identity.name.is_empty() { "患者".to_owned() } else { view.identity.name.clone() };
    Ok(page(
        &title,
        Nav::Clinician(&c.user, &c.csrf),
        html! {
            @if let Some(m) = flash(&q) { (m) }
            (emergency_banner(&emergency))
            div.patient-head {
                (record_html::identity(&view))
                (actions(&c, &id, "record"))
            }
            (record_html::sections(&view, &links))
        },
    ))
}

async fn lab(State(web): State<Web>, c: Clinician, Path((id, group)): Path<(String, String)>) -> Result<Response> {
    valid_id(&id)?;
    let (view, emergency) = load(&web, &c, &id, "viewer").await?;
    let Some(body) = record_html::lab_detail(&view, &group) else {
        return Err(ApiError::new(ErrorKind::NotFound, "この検査項目の記録はありません").into());
    };
    Ok(page(
        "検査の推移",
        Nav::Clinician(&c.user, &c.csrf),
        html! {
            (emergency_banner(&emergency))
            p.crumb { a href={"/patients/" (id)} { "← " (view.identity.name) " さんの記録" } }
            (body)
        },
    ))
}

async fn document(
    State(web): State<Web>,
    c: Clinician,
    Path((id, rtype, rid)): Path<(String, String, String)>,
) -> Result<Response> {
    valid_id(&id)?;
    let rtype: ResourceType = rtype.parse().map_err(|_| ApiError::new(ErrorKind::NotFound, "文書が見つかりません"))?;
    let ctx = c.ctx.clone();
    let out = web.call(move |svc| svc.read(&ctx, rtype, &rid, None)).await?;
    let r: Value = serde_json::from_str(&out.content).map_err(|e| ApiError::internal(format!("document JSON: {e}")))?;
    Ok(page(
        "文書",
        Nav::Clinician(&c.user, &c.csrf),
        html! {
            p.crumb { a href={"/patients/" (id) "#h-doc"} { "← 患者の記録へ戻る" } }
            section.card.doc { (record_html::document(&r)) }
        },
    ))
}

fn visit_consent_page(c: &Clinician, id: &str, message: Option<&str>) -> Response {
    page(
        "来院時の同意",
        Nav::Clinician(&c.user, &c.csrf),
        html! {
            section.card.narrow {
                h1 { "来院時の同意を記録" }
                @if let Some(m) = message { (notice("error", m)) }
                p { "患者さんご本人がいらしていることの証として、次のどちらかが必要です。記録すると患者さんに通知され、運営事務局の一覧にも表示されます。" }
                form method="post" action={"/patients/" (id) "/visit-consent"} {
                    (csrf_field(&c.csrf))
                    fieldset {
                        legend { "1. 同意コード（すぐに有効）" }
                        p.note { "患者さんに患者ポータルの「来院時の同意コード」を表示してもらい、8桁の数字を入力してください（15分間・1回限り有効）。" }
                        label { "同意コード" input type="text" name="code" inputmode="numeric" autocomplete="off" maxlength="16"; }
                    }
                    fieldset {
                        legend { "2. 紙の同意書（運営事務局の確認後に有効）" }
                        p.note { "署名された同意書の番号を入力し、同意書は運営事務局に送付してください。" }
                        label { "同意書の番号" input type="text" name="paper_form" maxlength="64"; }
                    }
                    label { "期間"
                        select name="days" {
                            option value="" { "本日のみ（受診日）" }
                            option value="7" { "7日間" }
                            option value="30" { "30日間（入院など）" }
                            option value="90" { "90日間（最長）" }
                        }
                    }
                    button type="submit" { "記録する" }
                    " " a href={"/patients/" (id)} { "やめる" }
                }
            }
        },
    )
}

async fn visit_consent_form(c: Clinician, Path(id): Path<String>) -> Result<Response> {
    valid_id(&id)?;
    Ok(visit_consent_page(&c, &id, None))
}

async fn visit_consent(State(web): State<Web>, c: Clinician, Path(id): Path<String>, form: Form) -> Result<Response> {
    session::check_csrf(&form, &c.csrf)?;
    valid_id(&id)?;
    let ctx = c.ctx.clone();
    let days = match form.get("days").trim() {
        "" => None,
        d => Some(d.parse::<i64>().map_err(|_| ApiError::bad_request("期間の指定が正しくありません"))?),
    };
    let evidence = match (form.get("code").trim(), form.get("paper_form").trim()) {
        (code, "") if !code.is_empty() => VisitEvidence::Code(code.to_owned()),
        ("", paper) if !paper.is_empty() => VisitEvidence::Paper(paper.to_owned()),
        _ => {
            let mut r = visit_consent_page(&c, &id, Some("同意コードか同意書の番号のどちらか一方を入力してください"));
            *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            return Ok(r);
        }
    };
    let pid = id.clone();
    match web.call(move |svc| svc.record_visit_consent(&ctx, &pid, evidence, days)).await {
        Ok(v) if v.status == "pending" => {
            Ok(Redirect::to(&format!("/patients/{id}?msg=consent-pending")).into_response())
        }
        Ok(_) => Ok(Redirect::to(&format!("/patients/{id}?msg=consent")).into_response()),
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::BadRequest | ErrorKind::Forbidden | ErrorKind::TooManyRequests { .. } | ErrorKind::NotFound
            ) =>
        {
            let mut r = visit_consent_page(&c, &id, Some(&e.summary()));
            *r.status_mut() = session::status_of(e.kind);
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

/// A printable activation code for the patient portal (the facility's own patient, after an
/// identity check at the desk).
async fn activation_code(State(web): State<Web>, c: Clinician, Path(id): Path<String>, form: Form) -> Result<Response> {
    session::check_csrf(&form, &c.csrf)?;
    valid_id(&id)?;
    let ctx = c.ctx.clone();
    let pid = id.clone();
    let code = web.call(move |svc| svc.issue_activation_code(&ctx, &pid)).await?;
    Ok(page(
        "利用登録コード",
        Nav::Clinician(&c.user, &c.csrf),
        html! {
            section.card.narrow.printable {
                h1 { "患者ポータル 利用登録コード" }
                p { "本人確認のうえ、患者さんご本人にお渡しください。コードは一度だけ表示されます。" }
                p.code-big { strong { (code.code) } }
                p { "有効期限: " (html::datetime_ms(code.expires)) }
                p.note { "患者ポータル（/portal/register）で、このコードと生年月日を入力して登録します。以前のコードは無効になりました。" }
                p { a href={"/patients/" (id)} { "← 患者の記録へ戻る" } }
            }
        },
    ))
}

fn emergency_page(c: &Clinician, id: &str, message: Option<&str>, form: &Form, to: &str) -> Response {
    let chosen = form.get("reason_code");
    page(
        "緊急時の閲覧",
        Nav::Clinician(&c.user, &c.csrf),
        html! {
            section.card.narrow.danger-zone {
                h1 { "緊急時の閲覧" }
                @if let Some(m) = message { (notice("error", m)) }
                p { strong { "患者さんの同意なしに記録を開きます。" } "生命・身体の保護のために必要で、本人の同意を得ることが困難な場合に限って使ってください。" }
                ul {
                    li { "閲覧は数時間（既定 " (EMERGENCY_HOURS) " 時間）に限られます。24時間に " (EMERGENCY_PER_DAY) " 回を超えると受け付けられず、運営事務局に通知されます。" }
                    li { "この操作と理由は監査記録に残り、患者さんご本人に通知されます（ポータル未登録の方には郵送されます）。" }
                    li { "運営事務局が後日、妥当性を確認します。" }
                }
                form method="post" action={"/patients/" (id) "/emergency"} {
                    (csrf_field(&c.csrf))
                    input type="hidden" name="to" value=(to);
                    label { "理由（必須）"
                        select name="reason_code" required {
                            option value="" { "選んでください" }
                            @for r in EmergencyReason::ALL {
                                option value=(r.code()) selected[chosen == r.code()] { (r.label_ja()) }
                            }
                        }
                    }
                    label { "状況の説明（必須・" (EMERGENCY_REASON_MIN) "文字以上）"
                        textarea name="reason" rows="3" required minlength=(EMERGENCY_REASON_MIN) maxlength="500" { (form.get("reason")) }
                    }
                    label { "ワンタイムコード（再入力）"
                        input type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required maxlength="10";
                    }
                    button.danger type="submit" { "記録に残して閲覧する" }
                    " " a href={"/patients/" (id)} { "やめる" }
                }
            }
        },
    )
}

async fn emergency_form(c: Clinician, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response> {
    valid_id(&id)?;
    let q = query(q);
    Ok(emergency_page(&c, &id, None, &Form(Vec::new()), q_get(&q, "to")))
}

async fn emergency_post(State(web): State<Web>, c: Clinician, Path(id): Path<String>, form: Form) -> Result<Response> {
    session::check_csrf(&form, &c.csrf)?;
    valid_id(&id)?;
    let to = if form.get("to") == "summary" { "summary" } else { "record" };
    let Some(reason) = EmergencyReason::from_code(form.get("reason_code")) else {
        let mut r = emergency_page(&c, &id, Some("理由を一覧から選んでください"), &form, to);
        *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
        return Ok(r);
    };
    let req = BreakGlass {
        patient_id: id.clone(),
        reason,
        text: form.get("reason").to_owned(),
        totp: form.get("code").to_owned(),
    };
    let ctx = c.ctx.clone();
    match web.call(move |svc| svc.break_glass(&ctx, req)).await {
        // The emergency summary first when that is what the doctor asked for.
        Ok(_) if to == "summary" => Ok(Redirect::to(&format!("/patients/{id}/summary")).into_response()),
        Ok(_) => Ok(Redirect::to(&format!("/patients/{id}?msg=emergency")).into_response()),
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::BadRequest
                    | ErrorKind::Forbidden
                    | ErrorKind::Unauthorized
                    | ErrorKind::TooManyRequests { .. }
            ) =>
        {
            let mut r = emergency_page(&c, &id, Some(&e.summary()), &form, to);
            *r.status_mut() = session::status_of(e.kind);
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insurance_ids_in_both_widths() {
        assert_eq!(insurance_variants("06139999:a1:123:01"), vec!["06139999:a1:123:01", "06139999:ａ１:１２３:01"]);
        assert_eq!(
            insurance_variants("06139999:ａ１:１２３:01"),
            vec!["06139999:ａ１:１２３:01", "06139999:a1:123:01"]
        );
        assert_eq!(insurance_variants("not an id"), vec!["not an id"]);
    }

    #[test]
    fn birth_dates_in_the_usual_forms() {
        assert_eq!(normalize_date("1970/05/05").as_deref(), Some("1970-05-05"));
        assert_eq!(normalize_date("1970-5-5").as_deref(), Some("1970-05-05"));
        assert_eq!(normalize_date("19700505").as_deref(), Some("1970-05-05"));
        assert_eq!(normalize_date("70/5/5"), None);
        assert_eq!(normalize_date("あ"), None);
    }
}
