//! The JSON API for people (under `/api`): login with a password and a one-time code, the
//! patient portal (registration, disclosure settings, access history, notices, proxies), the
//! clinician's emergency access and consent in person, and the operator's console (facilities,
//! users, the audit report, the emergency-access review list). Errors are OperationOutcomes, as
//! everywhere.

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use musubi_domain::Profession;
use musubi_gate::{Actor, ConsentSettings};
use musubi_service::people::{NewUser, Registration};
use musubi_service::{ApiError, ErrorKind, parse_query};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::AppState;
use crate::routes::{Authed, HttpError, SESSION_COOKIE, cookie_token, read_body};

type Result<T> = std::result::Result<T, HttpError>;

fn ok_json(v: Value) -> Response {
    let mut r = (StatusCode::OK, v.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    r
}

async fn body_json<T: DeserializeOwned>(state: &AppState, headers: &HeaderMap, body: Body) -> Result<T> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    let bytes = read_body(state, headers, body).await?;
    if mime == "application/x-www-form-urlencoded" {
        let pairs = parse_query(&String::from_utf8_lossy(&bytes));
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
    serde_json::from_slice(&bytes).map_err(|e| HttpError(ApiError::bad_request(format!("入力が不正です: {e}"))))
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

/// Sets the session cookie (HttpOnly, SameSite=Strict; Secure when the public URL is https).
fn with_session_cookie(mut r: Response, token: &str, max_age_s: i64, secure: bool) -> Response {
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn secure(state: &AppState) -> bool {
    state.inner.config.base_url.as_deref().is_some_and(|u| u.starts_with("https://"))
}

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
    let b: LoginBody = body_json(&state, &headers, body).await?;
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

#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .or_else(|| cookie_token(headers))
}

async fn second_factor(
    State(state): State<AppState>,
    ci: ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let token = session_token(&headers)
        .ok_or_else(|| HttpError(ApiError::new(ErrorKind::Unauthorized, "先にパスワードでログインしてください")))?;
    let b: CodeBody = body_json(&state, &headers, body).await?;
    let addr = address(&ci);
    state.blocking(move |svc| svc.second_factor(&token, &b.code, addr)).await?;
    Ok(ok_json(json!({"ok": true})))
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    if let Some(token) = session_token(&headers) {
        state.blocking(move |svc| svc.logout(&token)).await?;
    }
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
        Actor::Admin { name } => json!({"kind": "admin", "name": name}),
        Actor::Operator { name } => json!({"kind": "operator", "name": name}),
    }
}

async fn me(Authed(ctx): Authed) -> Result<Response> {
    Ok(ok_json(actor_json(&ctx.actor)))
}

async fn register(State(state): State<AppState>, ci: ClientAddr, headers: HeaderMap, body: Body) -> Result<Response> {
    let reg: Registration = body_json(&state, &headers, body).await?;
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
    let b: ProxyRegistration = body_json(&state, &headers, body).await?;
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
    reason: String,
}

async fn break_glass(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: BreakGlassBody = body_json(&state, &headers, body).await?;
    let g = state.blocking(move |svc| svc.break_glass(&ctx, &b.patient, &b.reason)).await?;
    Ok(ok_json(json!({"id": g.id, "person": g.person_id, "until": musubi_fhir::datetime::format_instant(g.until)})))
}

#[derive(Deserialize)]
struct VisitConsentBody {
    patient: String,
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
    let v = state.blocking(move |svc| svc.record_visit_consent(&ctx, &b.patient, b.days)).await?;
    Ok(ok_json(json!({"id": v.id, "person": v.person_id, "facility": v.facility})))
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
    let row = musubi_store::FacilityRow {
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
    let out = state.blocking(move |svc| svc.create_user(&ctx, u)).await?;
    Ok(ok_json(serde_json::to_value(&out).unwrap_or_default()))
}

async fn audit_report(State(state): State<AppState>, Authed(ctx): Authed, RawQuery(q): RawQuery) -> Result<Response> {
    let q = q.map(|q| parse_query(&q)).unwrap_or_default();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    let query = musubi_store::AuditQuery {
        agent: get("user"),
        patient: get("patient"),
        person: get("person"),
        facility: get("facility"),
        outcome: get("outcome"),
        action: get("action"),
        from: date_param(&q, "from", false)?,
        to: date_param(&q, "to", true)?,
        seq: None,
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
                    format!("\"{}\"", v.replace('"', "\"\""))
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
        .route("/logout", post(logout))
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
        .route("/admin/facilities", post(facility_post))
        .route("/admin/users", post(user_post))
        .route("/admin/audit-report", get(audit_report))
        .route("/admin/emergency-reviews", get(reviews_get))
        .route("/admin/emergency-reviews/{id}", post(review_post))
        .route("/admin/mpi/review", get(mpi_reviews))
        .route("/admin/mpi/review/{id}", post(mpi_resolve))
        .route("/admin/mpi/split", post(mpi_split))
        .route("/admin/mpi/rebuild", post(mpi_rebuild))
        .route("/admin/mpi/links", get(mpi_links))
}
