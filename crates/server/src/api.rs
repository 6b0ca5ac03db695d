//! The JSON API for people (under `/api`): login with a password and a one-time code, the
//! patient portal (registration, disclosure settings, access history, notices, proxies), the
//! clinician's emergency access and consent in person, and the operator's console (facilities,
//! users, the audit report, the emergency-access review list), referral exchange (文書送受信,
//! see [`referrals`]) and the retention sweep. Errors are OperationOutcomes, as everywhere.

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use musubi_domain::Profession;
use musubi_gate::{Actor, ConsentSettings};
use musubi_service::evidence::{BreakGlass, EmergencyReason, VisitEvidence};
use musubi_service::people::{NewUser, Registration};
use musubi_service::{ApiError, ErrorKind, parse_query};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::AppState;
use crate::edge::{
    Authed, AuthedOrBootstrap, HttpError, cookie_token, read_body, read_body_max, secure, session_cookie_name,
};

type Result<T> = std::result::Result<T, HttpError>;

fn ok_json(v: Value) -> Response {
    let mut r = (StatusCode::OK, v.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    r
}

async fn body_json<T: DeserializeOwned>(state: &AppState, headers: &HeaderMap, body: Body) -> Result<T> {
    let bytes = read_body(state, headers, body).await?;
    parse_body(headers, &bytes)
}

/// The body of a route that takes no credentials (login, one-time code, registration): read
/// only up to the small public limit.
async fn public_body_json<T: DeserializeOwned>(state: &AppState, headers: &HeaderMap, body: Body) -> Result<T> {
    let bytes = read_body_max(headers, body, state.inner.config.public_body_limit).await?;
    parse_body(headers, &bytes)
}

fn parse_body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime == "application/x-www-form-urlencoded" {
        let pairs = parse_query(&String::from_utf8_lossy(bytes));
        let obj: serde_json::Map<String, Value> = pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        return serde_json::from_value(Value::Object(obj))
            .map_err(|e| HttpError(ApiError::bad_request(format!("入力が不正です: {e}"))));
    }
    if mime != "application/json" && mime != "application/fhir+json" {
        return Err(HttpError(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "本文は application/json で送ってください",
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| HttpError(ApiError::bad_request(format!("入力が不正です: {e}"))))
}

/// The client's address, when the server knows it.
struct ClientAddr(Option<String>);

impl axum::extract::FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &AppState,
    ) -> std::result::Result<Self, Self::Rejection> {
        Ok(ClientAddr(parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string())))
    }
}

fn address(ci: &ClientAddr) -> Option<String> {
    ci.0.clone()
}

/// Sets the session cookie (HttpOnly, SameSite=Strict; with TLS a `Secure` `__Host-` cookie).
fn with_session_cookie(mut r: Response, token: &str, max_age_s: i64, secure: bool) -> Response {
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        session_cookie_name(secure),
        max_age_s.max(0),
        if secure { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Whether the server is reached over TLS (it serves HTTPS, or its public URL is https).

#[derive(Deserialize)]
struct LoginBody {
    login: String,
    password: String,
    /// `user` (clinicians and staff, the default) or `portal` (patients and proxies).
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    facility: Option<String>,
    #[serde(default)]
    acting_for: Option<String>,
}

async fn login(State(state): State<AppState>, ci: ClientAddr, headers: HeaderMap, body: Body) -> Result<Response> {
    let b: LoginBody = public_body_json(&state, &headers, body).await?;
    let addr = address(&ci);
    let out = state
        .blocking(move |svc| match b.kind.as_deref() {
            Some("portal") => svc.login_portal(&b.login, &b.password, b.acting_for.as_deref(), addr),
            _ => svc.login_user(&b.login, &b.password, b.facility.as_deref(), addr),
        })
        .await?;
    let max_age = (out.expires - musubi_fhir::datetime::now_ms()) / 1000;
    let token = out.token.clone();
    Ok(with_session_cookie(ok_json(serde_json::to_value(&out).unwrap_or_default()), &token, max_age, secure(&state)))
}

/// The pending session's token (bearer or cookie), or 401.
fn pending_token(state: &AppState, headers: &HeaderMap) -> Result<String> {
    session_token(state, headers)
        .ok_or_else(|| HttpError(ApiError::new(ErrorKind::Unauthorized, "先にパスワードでログインしてください")))
}

#[derive(Deserialize)]
struct NewPasswordBody {
    password: String,
}

/// A user whose password an operator set chooses their own (on the pending session).
async fn choose_password(
    State(state): State<AppState>,
    ci: ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let token = pending_token(&state, &headers)?;
    let b: NewPasswordBody = body_json(&state, &headers, body).await?;
    let addr = address(&ci);
    state.blocking(move |svc| svc.choose_password(&token, &b.password, addr)).await?;
    Ok(ok_json(json!({"ok": true})))
}

/// First login without an authenticator: the new secret, shown to the person logging in only.
async fn enrol(State(state): State<AppState>, ci: ClientAddr, headers: HeaderMap) -> Result<Response> {
    let token = pending_token(&state, &headers)?;
    let addr = address(&ci);
    let out = state.blocking(move |svc| svc.enrol_second_factor(&token, addr)).await?;
    let mut r = ok_json(serde_json::to_value(&out).unwrap_or_default());
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

fn session_token(state: &AppState, headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .or_else(|| cookie_token(headers, secure(state)))
}

async fn second_factor(
    State(state): State<AppState>,
    ci: ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let token = pending_token(&state, &headers)?;
    let b: CodeBody = public_body_json(&state, &headers, body).await?;
    let addr = address(&ci);
    // The login completes under a new token: the pending one (which may have been seen before
    // the second factor) is dead from now on.
    let out = state.blocking(move |svc| svc.second_factor(&token, &b.code, addr)).await?;
    let max_age = (out.expires - musubi_fhir::datetime::now_ms()) / 1000;
    let mut v = serde_json::to_value(&out).unwrap_or_default();
    v["ok"] = Value::Bool(true);
    Ok(with_session_cookie(ok_json(v), &out.token, max_age, secure(&state)))
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    if let Some(token) = session_token(&state, &headers) {
        state.blocking(move |svc| svc.logout(&token)).await?;
    }
    Ok(with_session_cookie(ok_json(json!({"ok": true})), "", 0, secure(&state)))
}

/// Ends every session of the caller's account (this one included).
async fn logout_everywhere(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
    state.blocking(move |svc| svc.logout_everywhere(&ctx)).await?;
    Ok(with_session_cookie(ok_json(json!({"ok": true})), "", 0, secure(&state)))
}

fn actor_json(a: &Actor) -> Value {
    match a {
        Actor::User(u) => {
            json!({"kind": "user", "login": u.login, "name": u.name, "profession": u.profession.code(), "professionLabel": u.profession.label_ja(), "facility": u.facility.to_string()})
        }
        Actor::Portal(p) => {
            json!({"kind": if p.proxy_relation.is_some() { "proxy" } else { "patient" }, "account": p.account_id, "name": p.name, "person": p.person_id, "relation": p.proxy_relation, "mayViewRecords": p.may_view_records})
        }
        Actor::System { name, facility } => json!({"kind": "system", "name": name, "facility": facility.to_string()}),
        Actor::Bootstrap { name } => json!({"kind": "bootstrap", "name": name}),
        Actor::Operator { name } => json!({"kind": "operator", "name": name}),
    }
}

async fn me(Authed(ctx): Authed) -> Result<Response> {
    Ok(ok_json(actor_json(&ctx.actor)))
}

async fn register(State(state): State<AppState>, ci: ClientAddr, headers: HeaderMap, body: Body) -> Result<Response> {
    let reg: Registration = public_body_json(&state, &headers, body).await?;
    let addr = address(&ci);
    let out = state.blocking(move |svc| svc.register_patient(reg, addr)).await?;
    Ok(ok_json(serde_json::to_value(&out).unwrap_or_default()))
}

#[derive(Deserialize)]
struct ProxyRegistration {
    name: String,
    login: String,
    password: String,
}

async fn register_proxy(
    State(state): State<AppState>,
    ci: ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: ProxyRegistration = public_body_json(&state, &headers, body).await?;
    let addr = address(&ci);
    let out = state.blocking(move |svc| svc.register_proxy(&b.name, &b.login, &b.password, addr)).await?;
    Ok(ok_json(serde_json::to_value(&out).unwrap_or_default()))
}

async fn consent_get(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
    let v = state.blocking(move |svc| svc.consent_view(&ctx)).await?;
    Ok(ok_json(serde_json::to_value(&v).unwrap_or_default()))
}

#[derive(Deserialize)]
struct ConsentBody {
    settings: ConsentSettings,
    version: i64,
}

async fn consent_put(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: ConsentBody = body_json(&state, &headers, body).await?;
    let v = state.blocking(move |svc| svc.save_consent(&ctx, b.settings, b.version)).await?;
    Ok(ok_json(serde_json::to_value(&v).unwrap_or_default()))
}

fn date_param(q: &[(String, String)], name: &str, end: bool) -> Result<Option<i64>> {
    match q.iter().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) if v.is_empty() => Ok(None),
        Some((_, v)) => {
            let r = musubi_fhir::datetime::parse_range(v).map_err(|_| {
                HttpError(ApiError::bad_request(format!("{name} の日付 {v:?} が不正です（例: 2026-11-01）")))
            })?;
            Ok(Some(if end { r.hi } else { r.lo }))
        }
    }
}

async fn history(State(state): State<AppState>, Authed(ctx): Authed, RawQuery(q): RawQuery) -> Result<Response> {
    let q = q.map(|q| parse_query(&q)).unwrap_or_default();
    let from = date_param(&q, "from", false)?;
    let to = date_param(&q, "to", true)?;
    let v = state.blocking(move |svc| svc.access_history(&ctx, from, to, 500)).await?;
    Ok(ok_json(json!({"entries": v})))
}

async fn notifications(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
    let v = state.blocking(move |svc| svc.notifications(&ctx)).await?;
    let list: Vec<Value> = v.into_iter().map(|n| json!({"id": n.id, "kind": n.kind, "text": n.text, "created": musubi_fhir::datetime::format_instant(n.created), "read": n.read_at.is_some()})).collect();
    Ok(ok_json(json!({"notifications": list})))
}

#[derive(Deserialize)]
struct GrantBody {
    login: String,
    relation: String,
    #[serde(default)]
    view_records: bool,
    #[serde(default)]
    manage_consent: bool,
    #[serde(default)]
    view_history: bool,
}

async fn proxies_get(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
    let v = state.blocking(move |svc| svc.proxies(&ctx)).await?;
    let list: Vec<Value> = v
        .into_iter()
        .map(|g| json!({"id": g.id, "relation": g.relation, "viewRecords": g.may_view_records, "manageConsent": g.may_manage_consent, "viewHistory": g.may_view_history, "created": musubi_fhir::datetime::format_instant(g.created), "revoked": g.revoked.is_some()}))
        .collect();
    Ok(ok_json(json!({"proxies": list})))
}

async fn proxies_post(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: GrantBody = body_json(&state, &headers, body).await?;
    let g = state
        .blocking(move |svc| {
            svc.grant_proxy(&ctx, &b.login, &b.relation, b.view_records, b.manage_consent, b.view_history)
        })
        .await?;
    Ok(ok_json(json!({"id": g.id})))
}

async fn proxies_delete(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    Path(id): Path<String>,
) -> Result<Response> {
    state.blocking(move |svc| svc.revoke_proxy(&ctx, &id)).await?;
    Ok(ok_json(json!({"ok": true})))
}

#[derive(Deserialize)]
struct BreakGlassBody {
    patient: String,
    /// One of `cannot-consent`, `emergency-transport`, `disaster`, `other-urgent`.
    reason_code: String,
    /// The situation in the clinician's words.
    reason: String,
    /// The clinician's one-time code, entered again.
    code: String,
}

async fn break_glass(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: BreakGlassBody = body_json(&state, &headers, body).await?;
    let reason = EmergencyReason::from_code(&b.reason_code).ok_or_else(|| {
        ApiError::at(
            ErrorKind::BadRequest,
            "reason_code",
            format!(
                "緊急時の閲覧の理由 {:?} は一覧にありません（{}）",
                b.reason_code,
                EmergencyReason::ALL.map(EmergencyReason::code).join(", ")
            ),
        )
    })?;
    let req = BreakGlass { patient_id: b.patient, reason, text: b.reason, totp: b.code };
    let g = state.blocking(move |svc| svc.break_glass(&ctx, req)).await?;
    Ok(ok_json(json!({"id": g.id, "person": g.person_id, "until": musubi_fhir::datetime::format_instant(g.until)})))
}

#[derive(Deserialize)]
struct VisitConsentBody {
    patient: String,
    /// The code the patient shows from the portal.
    #[serde(default)]
    code: Option<String>,
    /// Or the number of a signed paper form (takes effect when the operator confirms it).
    #[serde(default)]
    paper_form: Option<String>,
    #[serde(default)]
    days: Option<i64>,
}

async fn visit_consent(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: VisitConsentBody = body_json(&state, &headers, body).await?;
    let evidence = match (b.code, b.paper_form) {
        (Some(c), None) => VisitEvidence::Code(c),
        (None, Some(f)) => VisitEvidence::Paper(f),
        _ => {
            return Err(ApiError::bad_request(
                "来院時の同意には、患者さんが示した同意コード（code）か紙の同意書の番号（paper_form）のどちらか一方が必要です",
            )
            .into());
        }
    };
    let v = state.blocking(move |svc| svc.record_visit_consent(&ctx, &b.patient, evidence, b.days)).await?;
    Ok(ok_json(musubi_service::evidence::visit_consent_json(&v)))
}

#[derive(Deserialize)]
struct ParticipationBody {
    participating: bool,
}

async fn participation_get(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
    let p = state.blocking(move |svc| svc.participation(&ctx)).await?;
    Ok(ok_json(json!({"participating": p})))
}

async fn participation_put(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: ParticipationBody = body_json(&state, &headers, body).await?;
    let p = state.blocking(move |svc| svc.set_participation(&ctx, b.participating)).await?;
    Ok(ok_json(json!({"participating": p})))
}

#[derive(Deserialize)]
struct ResidenceBody {
    prefecture: String,
    city: String,
}

async fn residence_put(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: ResidenceBody = body_json(&state, &headers, body).await?;
    let (pref, area) = state.blocking(move |svc| svc.set_residence(&ctx, &b.prefecture, &b.city)).await?;
    Ok(ok_json(json!({"prefecture": pref, "area": area})))
}

async fn consent_code(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
    let c = state.blocking(move |svc| svc.issue_consent_code(&ctx)).await?;
    Ok(ok_json(json!({"code": c.code, "expires": musubi_fhir::datetime::format_instant(c.expires)})))
}

#[derive(Deserialize)]
struct PatientBody {
    patient: String,
}

async fn activation_code(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: PatientBody = body_json(&state, &headers, body).await?;
    let c = state.blocking(move |svc| svc.issue_activation_code(&ctx, &b.patient)).await?;
    Ok(ok_json(json!({"code": c.code, "expires": musubi_fhir::datetime::format_instant(c.expires)})))
}

async fn visit_consents_get(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
    let r = state.blocking(move |svc| svc.visit_consent_review(&ctx)).await?;
    Ok(ok_json(json!({
        "pending": r.pending.iter().map(musubi_service::evidence::visit_consent_json).collect::<Vec<_>>(),
        "recent": r.recent.iter().map(musubi_service::evidence::visit_consent_json).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct DecisionBody {
    accept: bool,
}

async fn visit_consent_decide(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: DecisionBody = body_json(&state, &headers, body).await?;
    let v = state.blocking(move |svc| svc.decide_visit_consent(&ctx, &id, b.accept)).await?;
    Ok(ok_json(musubi_service::evidence::visit_consent_json(&v)))
}

async fn alerts_get(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
    let list = state.blocking(move |svc| svc.operator_alerts(&ctx)).await?;
    Ok(ok_json(Value::Array(
        list.iter()
            .map(|a| json!({"id": a.id, "kind": a.kind, "text": a.text, "created": musubi_fhir::datetime::format_instant(a.created)}))
            .collect(),
    )))
}

async fn alert_handled(State(state): State<AppState>, Authed(ctx): Authed, Path(id): Path<String>) -> Result<Response> {
    state.blocking(move |svc| svc.handle_alert(&ctx, &id)).await?;
    Ok(ok_json(json!({"handled": true})))
}

async fn notices_get(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
    let list = state.blocking(move |svc| svc.notices_to_post(&ctx)).await?;
    Ok(ok_json(Value::Array(
        list.iter()
            .map(|n| json!({"id": n.id, "person": n.person_id, "kind": n.kind, "text": n.text, "created": musubi_fhir::datetime::format_instant(n.created)}))
            .collect(),
    )))
}

async fn notice_posted(State(state): State<AppState>, Authed(ctx): Authed, Path(id): Path<String>) -> Result<Response> {
    state.blocking(move |svc| svc.notice_posted(&ctx, &id)).await?;
    Ok(ok_json(json!({"posted": true})))
}

async fn portal_revoke(State(state): State<AppState>, Authed(ctx): Authed, Path(id): Path<String>) -> Result<Response> {
    state.blocking(move |svc| svc.revoke_portal_account(&ctx, &id)).await?;
    Ok(ok_json(json!({"revoked": true})))
}

#[derive(Deserialize)]
struct FacilityBody {
    code: String,
    name: String,
    class: String,
    prefecture: i64,
    area: String,
    #[serde(default)]
    area_name: String,
    #[serde(default = "yes")]
    discloses: bool,
    #[serde(default = "yes")]
    views: bool,
    #[serde(default)]
    cities: Vec<String>,
}

fn yes() -> bool {
    true
}

async fn facility_post(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: FacilityBody = body_json(&state, &headers, body).await?;
    let row = musubi_service::people::NewFacility {
        code: b.code,
        name: b.name,
        class: b.class,
        prefecture: b.prefecture,
        area: b.area,
        area_name: b.area_name,
        discloses: b.discloses,
        views: b.views,
    };
    state.blocking(move |svc| svc.register_facility(&ctx, row, b.cities)).await?;
    Ok(ok_json(json!({"ok": true})))
}

#[derive(Deserialize)]
struct UserBody {
    login: String,
    name: String,
    #[serde(default)]
    kana: String,
    profession: String,
    facilities: Vec<String>,
    password: String,
    /// The user enrols their own authenticator at the first login (no key in the answer).
    #[serde(default)]
    self_enrol: bool,
}

async fn user_post(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: UserBody = body_json(&state, &headers, body).await?;
    let profession: Profession = b.profession.parse().map_err(|e: String| HttpError(ApiError::bad_request(e)))?;
    let u = NewUser {
        login: b.login,
        name: b.name,
        kana: b.kana,
        profession,
        facilities: b.facilities,
        password: b.password,
    };
    if b.self_enrol {
        let id = state.blocking(move |svc| svc.create_user_self_enrolling(&ctx, u)).await?;
        return Ok(ok_json(json!({"id": id, "self_enrol": true})));
    }
    let out = state.blocking(move |svc| svc.create_user(&ctx, u)).await?;
    Ok(ok_json(serde_json::to_value(&out).unwrap_or_default()))
}

/// The operator's actions on a patient's or proxy's portal account.
async fn portal_account_action(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    Path((login, action)): Path<(String, String)>,
) -> Result<Response> {
    state.blocking(move |svc| svc.portal_account_action(&ctx, &login, &action)).await?;
    Ok(ok_json(json!({"ok": true})))
}

#[derive(Deserialize)]
struct OperatorBody {
    login: String,
    name: String,
    password: String,
}

/// A named operator account (the first one made with the bootstrap token, which then expires;
/// the only route that accepts that token).
async fn operator_post(
    State(state): State<AppState>,
    AuthedOrBootstrap(ctx): AuthedOrBootstrap,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: OperatorBody = body_json(&state, &headers, body).await?;
    let id = state.blocking(move |svc| svc.create_operator(&ctx, &b.login, &b.name, &b.password)).await?;
    Ok(ok_json(json!({"id": id})))
}

#[derive(Deserialize)]
struct SettingBody {
    value: String,
}

/// The network's settings with their current values (operators).
async fn settings_get(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
    let list = state
        .blocking(move |svc| {
            if !ctx.actor.is_privileged() {
                return Err(musubi_service::ApiError::new(
                    musubi_service::ErrorKind::Forbidden,
                    "設定の参照は運営管理者のみが行えます",
                ));
            }
            musubi_service::settings::SETTINGS
                .iter()
                .map(|s| Ok(json!({"key": s.key, "label": s.label_ja, "default": s.default, "value": svc.setting_value(s.key)?})))
                .collect::<std::result::Result<Vec<Value>, musubi_service::ApiError>>()
        })
        .await?;
    Ok(ok_json(Value::Array(list)))
}

/// Changes one setting (operators; audited with the old and the new value).
async fn setting_put(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: SettingBody = body_json(&state, &headers, body).await?;
    let value = state
        .blocking(move |svc| {
            svc.change_setting(&ctx, &key, &b.value)?;
            svc.setting_value(&key)
        })
        .await?;
    Ok(ok_json(json!({"value": value})))
}

#[derive(Deserialize)]
struct PasswordBody {
    password: String,
}

/// The operator's account actions on a user: `disable`, `enable`, `reset-second-factor`,
/// `reset-password` (body `{"password": …}`), `revoke-sessions`.
async fn user_action(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    Path((login, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let password = if action == "reset-password" {
        Some(body_json::<PasswordBody>(&state, &headers, body).await?.password)
    } else {
        None
    };
    state
        .blocking(move |svc| match (action.as_str(), password) {
            ("disable", _) => svc.set_user_disabled(&ctx, &login, true),
            ("enable", _) => svc.set_user_disabled(&ctx, &login, false),
            ("reset-second-factor", _) => svc.reset_user_second_factor(&ctx, &login),
            ("reset-password", Some(p)) => svc.reset_user_password(&ctx, &login, &p),
            ("revoke-sessions", _) => svc.revoke_user_sessions(&ctx, &login),
            _ => Err(ApiError::new(
                ErrorKind::NotFound,
                format!("利用者への操作 {action} はありません（disable, enable, reset-second-factor, reset-password, revoke-sessions）"),
            )),
        })
        .await?;
    Ok(ok_json(json!({"ok": true})))
}

async fn audit_report(State(state): State<AppState>, Authed(ctx): Authed, RawQuery(q): RawQuery) -> Result<Response> {
    let q = q.map(|q| parse_query(&q)).unwrap_or_default();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    let query = musubi_service::people::AuditFilter {
        agent: get("user"),
        patient: get("patient"),
        person: get("person"),
        facility: get("facility"),
        outcome: get("outcome"),
        action: get("action"),
        from: date_param(&q, "from", false)?,
        to: date_param(&q, "to", true)?,
    };
    let offset = get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit = get("limit").and_then(|v| v.parse().ok()).unwrap_or(100);
    let oldest = get("sort").as_deref() == Some("asc");
    let csv = get("format").as_deref() == Some("csv");
    let (total, rows) = state.blocking(move |svc| svc.audit_report(&ctx, &query, offset, limit, oldest)).await?;
    if csv {
        let cols = [
            "seq",
            "recorded",
            "agent",
            "agentKind",
            "facility",
            "profession",
            "action",
            "subtype",
            "outcome",
            "purpose",
            "patient",
            "person",
            "entities",
            "query",
        ];
        let mut out = cols.join(",") + "\n";
        for r in &rows {
            let line: Vec<String> = cols
                .iter()
                .map(|c| {
                    let v = match &r[*c] {
                        Value::Null => String::new(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    musubi_web::csv_field(&v)
                })
                .collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        let mut resp = (StatusCode::OK, out).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        return Ok(resp);
    }
    Ok(ok_json(json!({"total": total, "rows": rows})))
}

async fn reviews_get(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
    let v = state.blocking(move |svc| svc.emergency_reviews(&ctx)).await?;
    let list: Vec<Value> = v
        .into_iter()
        .map(|g| json!({"id": g.id, "user": g.user_login, "facility": g.facility, "person": g.person_id, "reason": g.reason, "started": musubi_fhir::datetime::format_instant(g.started), "until": musubi_fhir::datetime::format_instant(g.until)}))
        .collect();
    Ok(ok_json(json!({"reviews": list})))
}

#[derive(Deserialize)]
struct ReviewBody {
    note: String,
}

async fn review_post(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: ReviewBody = body_json(&state, &headers, body).await?;
    state.blocking(move |svc| svc.review_emergency(&ctx, &id, &b.note)).await?;
    Ok(ok_json(json!({"ok": true})))
}

async fn mpi_reviews(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
    let v = state.blocking(move |svc| svc.mpi_review_queue(&ctx)).await?;
    Ok(ok_json(json!({"items": v})))
}

#[derive(Deserialize)]
struct ResolveBody {
    link: bool,
}

async fn mpi_resolve(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: ResolveBody = body_json(&state, &headers, body).await?;
    state.blocking(move |svc| svc.mpi_resolve(&ctx, &id, b.link)).await?;
    Ok(ok_json(json!({"ok": true})))
}

#[derive(Deserialize)]
struct SplitBody {
    facility: String,
    local_id: String,
}

async fn mpi_split(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: SplitBody = body_json(&state, &headers, body).await?;
    let p = state.blocking(move |svc| svc.mpi_split(&ctx, &b.facility, &b.local_id)).await?;
    Ok(ok_json(json!({"person": p})))
}

async fn mpi_rebuild(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
    let (records, persons, review) = state.blocking(move |svc| svc.mpi_rebuild(&ctx)).await?;
    Ok(ok_json(json!({"records": records, "persons": persons, "review": review})))
}

async fn mpi_links(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
    let csv = state.blocking(move |svc| svc.mpi_links_csv(&ctx)).await?;
    let mut r = (StatusCode::OK, csv).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    Ok(r)
}

/// The `/api` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", post(login))
        .route("/login/totp", post(second_factor))
        .route("/login/totp/enrol", post(enrol))
        .route("/login/password", post(choose_password))
        .route("/logout", post(logout))
        .route("/logout/everywhere", post(logout_everywhere))
        .route("/me", get(me))
        .route("/portal/register", post(register))
        .route("/portal/register-proxy", post(register_proxy))
        .route("/portal/consent", get(consent_get).put(consent_put))
        .route("/portal/history", get(history))
        .route("/portal/notifications", get(notifications))
        .route("/portal/proxies", get(proxies_get).post(proxies_post))
        .route("/portal/proxies/{id}", delete(proxies_delete))
        .route("/clinician/break-glass", post(break_glass))
        .route("/clinician/visit-consent", post(visit_consent))
        .route("/clinician/activation-code", post(activation_code))
        .route("/portal/consent-code", post(consent_code))
        .route("/portal/participation", get(participation_get).put(participation_put))
        .route("/portal/residence", put(residence_put))
        .route("/admin/activation-code", post(activation_code))
        .route("/admin/visit-consents", get(visit_consents_get))
        .route("/admin/visit-consents/{id}", post(visit_consent_decide))
        .route("/admin/alerts", get(alerts_get))
        .route("/admin/alerts/{id}", post(alert_handled))
        .route("/admin/notices-to-post", get(notices_get))
        .route("/admin/notices-to-post/{id}", post(notice_posted))
        .route("/admin/portal-revoke/{id}", post(portal_revoke))
        .route("/admin/facilities", post(facility_post))
        .route("/admin/users", post(user_post))
        .route("/admin/operators", post(operator_post))
        .route("/admin/settings", get(settings_get))
        .route("/admin/settings/{key}", put(setting_put))
        .route("/admin/portal-accounts/{login}/{action}", post(portal_account_action))
        .route("/admin/users/{login}/{action}", post(user_action))
        .route("/admin/audit-report", get(audit_report))
        .route("/admin/emergency-reviews", get(reviews_get))
        .route("/admin/emergency-reviews/{id}", post(review_post))
        .route("/admin/mpi/review", get(mpi_reviews))
        .route("/admin/mpi/review/{id}", post(mpi_resolve))
        .route("/admin/mpi/split", post(mpi_split))
        .route("/admin/mpi/rebuild", post(mpi_rebuild))
        .route("/admin/mpi/links", get(mpi_links))
        .route("/referrals", post(referrals::create))
        .route("/referrals/inbox", get(referrals::inbox))
        .route("/referrals/outbox", get(referrals::outbox))
        .route("/referrals/{id}", get(referrals::open))
        .route("/referrals/{id}/files/{seq}", get(referrals::file))
        .route("/referrals/{id}/reply", post(referrals::reply))
        .route("/referrals/{id}/withdraw", post(referrals::withdraw))
        .route("/admin/retention-sweep", post(referrals::sweep))
        .route("/admin/trust-roots", get(referrals::trust_roots))
}

/// Referral exchange (文書送受信) and the retention sweep over JSON.
///
/// | route | who | what |
/// |---|---|---|
/// | `POST /api/referrals` | a clinician (医師・歯科医師・看護師) or a facility system | send a 診療情報提供書; 201 with the referral as the outbox lists it, `Location: /api/referrals/{id}` |
/// | `GET /api/referrals/inbox` | the facility's staff (clerks too), `?facility=` for administrators; `?include_deleted=true` | referrals addressed to the facility, newest first, with 未受領 / 受領済み |
/// | `GET /api/referrals/outbox` | the same | referrals the facility sent, with receipt (time, who) and replies |
/// | `GET /api/referrals/{id}` | sender or addressee (clinicians), administrators | the documents, files, and the signature checked now; the addressee's first opening marks it received |
/// | `GET /api/referrals/{id}/files/{seq}` | the same | one attached file (its bytes, type and name) |
/// | `POST /api/referrals/{id}/withdraw` | the sender facility's clinicians and system, administrators | withdraw (取り下げ) a letter sent by mistake: its documents and files are deleted, both boxes show 取り下げ, opening it answers 410 (deleting its Bundle by identifier does the same) |
/// | `POST /api/referrals/{id}/reply` | the addressee | a reply (返書) to the sender, linked to the original (a regional-network extension: the national service has no replies) |
/// | `POST /api/admin/retention-sweep` | administrators | delete what retention ended (referrals 7 days after receipt or 6 months after sending; records past their end) |
/// | `GET /api/admin/trust-roots` | administrators | the HPKI-style roots signatures are checked against, and the issuers of the configured CRLs |
///
/// The send (and reply) body is JSON (`application/json`), files in base64:
///
/// ```json
/// {
///   "addressee": "1311234567",
///   "document": { "resourceType": "Bundle", "type": "document", "...": "..." },
///   "signature": "MIAGCSqGSIb3DQEHAqCAMIACAQEx… (base64 DER, or PEM text)",
///   "discharge_summary": { "resourceType": "Bundle", "...": "..." },
///   "attachments": [{"filename": "紹介状.pdf", "content_type": "application/pdf", "data": "JVBERi0xLjQK…"}]
/// }
/// ```
///
/// - `addressee` may be left out when the document's 紹介先 section names one facility.
/// - `document` is the eReferral document Bundle: a JSON object, or a string holding the JSON
///   text exactly as signed; `document_base64` gives the exact bytes instead. A detached
///   signature covers exact bytes, so send those (string or base64) with it. With an
///   enveloping signature the document may be left out: it is taken from the signature.
/// - Files: PDF, JPEG, PNG, TIFF, GIF; at most 10 files, 10 MB each, 20 MB together; the
///   declared type must match the bytes.
pub mod referrals {
    use super::*;
    use base64::Engine;
    use musubi_service::referral::{NewFile, NewReferral};

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct FileBody {
        filename: String,
        content_type: String,
        data: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct ReferralBody {
        #[serde(default)]
        addressee: Option<String>,
        #[serde(default)]
        document: Option<Value>,
        #[serde(default)]
        document_base64: Option<String>,
        #[serde(default)]
        signature: Option<String>,
        #[serde(default)]
        discharge_summary: Option<Value>,
        #[serde(default)]
        attachments: Vec<FileBody>,
    }

    fn base64_of(s: &str, at: &str) -> Result<Vec<u8>> {
        let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|e| HttpError(ApiError::at(ErrorKind::BadRequest, at, format!("{at} の base64 が不正です: {e}"))))
    }

    impl ReferralBody {
        fn into_new(self) -> Result<NewReferral> {
            let document = match (self.document, self.document_base64) {
                (Some(_), Some(_)) => {
                    return Err(HttpError(ApiError::at(
                        ErrorKind::BadRequest,
                        "document",
                        "document と document_base64 はどちらか一方だけを送ってください",
                    )));
                }
                (Some(Value::String(text)), None) => Some(text.into_bytes()),
                (Some(v @ Value::Object(_)), None) => Some(v.to_string().into_bytes()),
                (Some(_), None) => {
                    return Err(HttpError(ApiError::at(
                        ErrorKind::BadRequest,
                        "document",
                        "document は Bundle の JSON オブジェクトか、その JSON テキストの文字列で送ってください",
                    )));
                }
                (None, Some(b)) => Some(base64_of(&b, "document_base64")?),
                (None, None) => None,
            };
            let signature = match self.signature {
                Some(s) if s.trim_start().starts_with("-----BEGIN") => Some(s.into_bytes()),
                Some(s) => Some(base64_of(&s, "signature")?),
                None => None,
            };
            let mut files = Vec::with_capacity(self.attachments.len());
            for (i, f) in self.attachments.into_iter().enumerate() {
                let data = base64_of(&f.data, &format!("attachments[{i}].data"))?;
                files.push(NewFile { filename: f.filename, content_type: f.content_type, data });
            }
            Ok(NewReferral {
                addressee: self.addressee,
                document,
                signature,
                discharge_summary: self.discharge_summary,
                files,
            })
        }
    }

    fn created(v: Value, id: &str) -> Response {
        let mut r = ok_json(v);
        *r.status_mut() = StatusCode::CREATED;
        if let Ok(loc) = HeaderValue::from_str(&format!("/api/referrals/{id}")) {
            r.headers_mut().insert(header::LOCATION, loc);
        }
        r
    }

    pub(super) async fn create(
        State(state): State<AppState>,
        Authed(ctx): Authed,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response> {
        let b: ReferralBody = body_json(&state, &headers, body).await?;
        let new = b.into_new()?;
        let out = state.blocking(move |svc| svc.send_referral(&ctx, new)).await?;
        Ok(created(serde_json::to_value(&out).unwrap_or_default(), &out.id))
    }

    pub(super) async fn reply(
        State(state): State<AppState>,
        Authed(ctx): Authed,
        Path(id): Path<String>,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response> {
        let b: ReferralBody = body_json(&state, &headers, body).await?;
        let new = b.into_new()?;
        let out = state.blocking(move |svc| svc.reply_referral(&ctx, &id, new)).await?;
        Ok(created(serde_json::to_value(&out).unwrap_or_default(), &out.id))
    }

    fn list_params(q: Option<String>) -> (Option<String>, bool) {
        let q = q.map(|q| parse_query(&q)).unwrap_or_default();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
        (get("facility"), get("include_deleted").is_some_and(|v| v == "true" || v == "1"))
    }

    pub(super) async fn inbox(
        State(state): State<AppState>,
        Authed(ctx): Authed,
        RawQuery(q): RawQuery,
    ) -> Result<Response> {
        let (facility, deleted) = list_params(q);
        let v = state.blocking(move |svc| svc.referral_inbox(&ctx, facility.as_deref(), deleted)).await?;
        Ok(ok_json(json!({"referrals": v})))
    }

    pub(super) async fn outbox(
        State(state): State<AppState>,
        Authed(ctx): Authed,
        RawQuery(q): RawQuery,
    ) -> Result<Response> {
        let (facility, deleted) = list_params(q);
        let v = state.blocking(move |svc| svc.referral_outbox(&ctx, facility.as_deref(), deleted)).await?;
        Ok(ok_json(json!({"referrals": v})))
    }

    pub(super) async fn open(
        State(state): State<AppState>,
        Authed(ctx): Authed,
        Path(id): Path<String>,
    ) -> Result<Response> {
        let v = state.blocking(move |svc| svc.open_referral(&ctx, &id)).await?;
        let mut r = ok_json(serde_json::to_value(&v).unwrap_or_default());
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(r)
    }

    pub(super) async fn file(
        State(state): State<AppState>,
        Authed(ctx): Authed,
        Path((id, seq)): Path<(String, String)>,
    ) -> Result<Response> {
        let seq: i64 = seq.parse().map_err(|_| {
            HttpError(ApiError::new(ErrorKind::NotFound, format!("紹介状 {id} の添付ファイル {seq} は見つかりません")))
        })?;
        let f = state.blocking(move |svc| svc.referral_file(&ctx, &id, seq)).await?;
        let disposition = f.content_disposition();
        let mut r = (StatusCode::OK, f.data).into_response();
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&f.content_type) {
            h.insert(header::CONTENT_TYPE, v);
        }
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        // The type was checked against the bytes; the browser must not guess another.
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(r)
    }

    pub(super) async fn withdraw(
        State(state): State<AppState>,
        Authed(ctx): Authed,
        Path(id): Path<String>,
    ) -> Result<Response> {
        let v = state.blocking(move |svc| svc.withdraw_referral(&ctx, &id)).await?;
        Ok(ok_json(serde_json::to_value(&v).unwrap_or_default()))
    }

    pub(super) async fn sweep(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
        let report = state.blocking(move |svc| svc.retention_sweep(&ctx, musubi_fhir::datetime::now_ms())).await?;
        let mut v = serde_json::to_value(&report).unwrap_or_default();
        v["summary"] = Value::String(report.summary_ja());
        Ok(ok_json(v))
    }

    pub(super) async fn trust_roots(State(state): State<AppState>, Authed(ctx): Authed) -> Result<Response> {
        if !ctx.actor.is_privileged() {
            return Err(HttpError(ApiError::new(ErrorKind::Forbidden, "この操作は運営管理者のみが行えます")));
        }
        let roots = state.blocking(|svc| Ok(svc.trust_roots())).await?;
        Ok(ok_json(json!({"count": roots.len(), "subjects": roots.subjects(), "crls": roots.crl_issuers()})))
    }
}
