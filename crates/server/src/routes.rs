//! The routes of the FHIR API and the translation between HTTP and the service.

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use musubi_fhir::ResourceType;
use musubi_gate::Actor;
use musubi_service::{ApiError, Ctx, ErrorKind, ReadOutcome, Service, WriteOutcome, parse_query};
use serde_json::Value;

use crate::{AppState, status_of};

const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// An error as an HTTP response.
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind);
        let mut resp = fhir(status, self.0.outcome().to_string());
        if self.0.kind == ErrorKind::Unauthorized {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"musubi\""));
        }
        if self.0.kind == ErrorKind::Unavailable {
            // Busy or stopping: a client may try again shortly.
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let ErrorKind::TooManyRequests { retry_after_s } = self.0.kind {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        resp
    }
}

type Result<T> = std::result::Result<T, HttpError>;

pub(crate) fn fhir(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

fn http_date(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    httpdate::fmt_http_date(t)
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

/// The authenticated caller and request context. Every route that takes credentials takes
/// this, and it never holds the bootstrap token: that token is refused here (403, with the
/// message that it only creates the first operator), in one place, whatever the route.
pub struct Authed(pub Ctx);

/// The authenticated caller, who may also be the bootstrap token. Only the route that creates
/// the first operator account takes it (`api::operator_post`); the service lets the bootstrap
/// token do nothing else.
pub struct AuthedOrBootstrap(pub Ctx);

fn base_url(state: &AppState, parts: &Parts) -> String {
    base_url_of(state, &parts.headers)
}

fn base_url_of(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(b) = &state.inner.config.base_url {
        return b.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty() && h.len() < 256 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if state.inner.config.https { "https" } else { "http" };
    format!("{scheme}://{host}/fhir")
}

/// The name of the web session cookie without TLS.
pub const SESSION_COOKIE: &str = "musubi_session";
/// The name of the web session cookie with TLS: a `__Host-` cookie, which a browser keeps only
/// when it is `Secure`, for this host alone and for every path (no sibling host can set it).
pub const SESSION_COOKIE_TLS: &str = "__Host-musubi_session";

/// The session cookie's name for a server with (`secure`) or without TLS.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure { SESSION_COOKIE_TLS } else { SESSION_COOKIE }
}

/// The session token from the cookie header, if any (only the name this server sets).
pub(crate) fn cookie_token(headers: &HeaderMap, secure: bool) -> Option<String> {
    let name = session_cookie_name(secure);
    headers.get_all(header::COOKIE).iter().filter_map(|h| h.to_str().ok()).flat_map(|h| h.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> std::result::Result<Self, Self::Rejection> {
        let ctx = authenticate(parts, state).await?;
        if let Actor::Bootstrap { name } = &ctx.actor {
            // Counted like a failed authentication (a summary per source and period).
            state.inner.service.note_failed_auth_at(
                musubi_fhir::datetime::now_ms(),
                ctx.address.clone(),
                "admin",
                Some(name),
                "bootstrap token used for something other than creating the first operator",
            );
            return Err(HttpError(ApiError::new(ErrorKind::Forbidden, musubi_gate::BOOTSTRAP_ONLY_JA)));
        }
        Ok(Authed(ctx))
    }
}

impl FromRequestParts<AppState> for AuthedOrBootstrap {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> std::result::Result<Self, Self::Rejection> {
        Ok(AuthedOrBootstrap(authenticate(parts, state).await?))
    }
}

/// Who is calling: a bearer token (system or bootstrap) or a session (bearer or cookie).
async fn authenticate(parts: &mut Parts, state: &AppState) -> std::result::Result<Ctx, HttpError> {
    let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let base_url = base_url(state, parts);
    let header_value = parts.headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).map(str::to_owned);
    let bearer = header_value
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(|t| t.trim().to_owned());
    let (token, from_cookie) = match bearer {
        Some(t) => (Some(t), false),
        None => (cookie_token(&parts.headers, crate::api::secure(state)), true),
    };
    let Some(token) = token else {
        let reason = if header_value.is_some() {
            "Authorization ヘッダーは Bearer 形式でなければなりません"
        } else {
            "認証が必要です（Authorization: Bearer <トークン>）"
        };
        // Counted in memory (a summary per source and period), never a store write here.
        state.inner.service.audit_login_failure(address.clone(), reason)?;
        return Err(HttpError(ApiError::new(ErrorKind::Unauthorized, reason)));
    };
    let now = state.inner.service.now();
    let client_cert = parts.extensions.get::<crate::tls::ClientCert>().cloned();
    // A token seen in the last few seconds is answered from memory, without a trip to the
    // blocking pool (the common case: a system calling again and again).
    if let Some(Some(actor)) = state.inner.tokens.cached(&token, now)
        && certificate_matches(state, &actor, client_cert.as_ref())
    {
        return Ok(Ctx { actor, address, base_url });
    }
    let st = state.clone();
    let addr = address.clone();
    let method = parts.method.clone();
    let csrf = parts.headers.get("x-csrf-token").and_then(|h| h.to_str().ok()).map(str::to_owned);
    let actor: Option<Actor> = state
        .blocking(move |svc| {
            if token.starts_with(musubi_service::people::SESSION_PREFIX) {
                let Some((actor, session)) = svc.session_actor(&token)? else {
                    svc.audit_login_failure(addr, "invalid or expired session")?;
                    return Ok(None);
                };
                // A browser sends the cookie on its own: a change needs the page's CSRF token.
                if from_cookie
                    && !matches!(method, Method::GET | Method::HEAD)
                    && csrf.as_deref() != Some(session.csrf.as_str())
                {
                    return Err(ApiError::new(
                        ErrorKind::Forbidden,
                        "不正な要求です（CSRF トークンがありません）。ページを再読み込みしてください。",
                    ));
                }
                return Ok(Some(actor));
            }
            let actor = st.inner.tokens.resolve(svc.store(), &token, now).map_err(ApiError::from)?;
            let Some(actor) = actor else {
                svc.audit_login_failure(addr, "invalid, revoked or expired token")?;
                return Ok(None);
            };
            if !certificate_matches(&st, &actor, client_cert.as_ref()) {
                let why = match &client_cert {
                    None => "system token without a client certificate".to_owned(),
                    Some(c) => match &c.facility {
                        Ok(f) => format!("system token presented with facility {f}'s client certificate"),
                        Err(e) => format!("system token with a client certificate naming no facility: {e}"),
                    },
                };
                svc.audit_login_failure(addr, &why)?;
                return Err(ApiError::new(
                    ErrorKind::Unauthorized,
                    "このシステムトークンは、発行先の医療機関のクライアント証明書（TLS）と一緒に使わなければなりません",
                ));
            }
            Ok(Some(actor))
        })
        .await?;
    match actor {
        Some(actor) => Ok(Ctx { actor, address, base_url }),
        None => Err(HttpError(ApiError::new(
            ErrorKind::Unauthorized,
            "トークンが無効か、失効しています。再度ログインしてください。",
        ))),
    }
}

/// Under mutual TLS a system token counts only over a connection whose client certificate
/// names the token's facility; other actors (the administrator, sessions) are not bound.
fn certificate_matches(state: &AppState, actor: &Actor, cert: Option<&crate::tls::ClientCert>) -> bool {
    match actor {
        Actor::System { facility, .. } if state.inner.config.bind_system_tokens => {
            cert.is_some_and(|c| c.facility.as_ref().is_ok_and(|f| f == facility))
        }
        _ => true,
    }
}

fn check_accept(headers: &HeaderMap, query: &[(String, String)]) -> Result<()> {
    if let Some((_, f)) = query.iter().find(|(k, _)| k == "_format")
        && !matches!(f.as_str(), "json" | "application/json" | "application/fhir+json")
    {
        return Err(
            ApiError::new(ErrorKind::NotAcceptable, format!("_format={f} には対応していません（JSON のみ）")).into()
        );
    }
    if let Some(a) = headers.get(header::ACCEPT).and_then(|h| h.to_str().ok()) {
        let ok = a.split(',').any(|m| {
            let m = m.split(';').next().unwrap_or("").trim();
            m.is_empty() || m == "*/*" || m == "application/*" || m.ends_with("json")
        });
        if !ok {
            return Err(ApiError::new(ErrorKind::NotAcceptable, "JSON（application/fhir+json）のみ返せます").into());
        }
    }
    Ok(())
}

pub(crate) async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes> {
    read_body_max(headers, body, state.inner.config.body_limit).await
}

/// Whether a body error is the listener's idle timeout (limits.rs).
fn is_body_timeout(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Reads a body of at most `limit` bytes (413 past it, however the client declares it).
pub(crate) async fn read_body_max(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes> {
    use http_body_util::BodyExt;
    let too_large = || {
        let shown =
            if limit >= 1024 * 1024 { format!("{} MB", limit / (1024 * 1024)) } else { format!("{} KB", limit / 1024) };
        HttpError(ApiError::new(ErrorKind::PayloadTooLarge, format!("リクエスト本文が大きすぎます（上限 {shown}）")))
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|h| h.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut over = declared.is_some_and(|n| n > limit);
    // Read (or, once over the limit, discard) up to a bounded amount so that a client that
    // sends its whole body before reading the answer still receives the 413 OperationOutcome;
    // behind a small (unauthenticated) limit, at most 1 MiB is discarded.
    let drain_cap = if limit < 1024 * 1024 { 1024 * 1024 } else { limit.saturating_mul(2).max(16 * 1024 * 1024) };
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if is_body_timeout(&e) {
                HttpError(ApiError::bad_request("リクエスト本文の受信が途中で止まったため、打ち切りました"))
            } else {
                HttpError(ApiError::bad_request(format!("リクエスト本文を読み取れませんでした: {e}")))
            }
        })?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen > limit {
                over = true;
            }
            if over {
                if seen > drain_cap {
                    break;
                }
                continue;
            }
            buf.extend_from_slice(&data);
        }
    }
    if over {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

fn check_json_content_type(headers: &HeaderMap) -> Result<()> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime == "application/fhir+json" || mime == "application/json" {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!("Content-Type {ct:?} には対応していません（application/fhir+json）"),
        )
        .into())
    }
}

async fn json_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Value> {
    check_json_content_type(headers)?;
    let bytes = read_body(state, headers, body).await?;
    parse_json(&bytes)
}

fn parse_json(bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        HttpError(ApiError::at(
            ErrorKind::BadRequest,
            format!("line {} column {}", e.line(), e.column()),
            format!("JSON の構文エラー: {e}（{} 行 {} 列）", e.line(), e.column()),
        ))
    })
}

fn rtype_of(s: &str) -> Result<ResourceType> {
    s.parse::<ResourceType>()
        .map_err(|_| HttpError(ApiError::new(ErrorKind::NotFound, format!("リソース型 {s} には対応していません"))))
}

fn query_pairs(q: Option<String>) -> Vec<(String, String)> {
    q.map(|q| parse_query(&q)).unwrap_or_default()
}

fn prefer(headers: &HeaderMap) -> &str {
    headers
        .get("prefer")
        .and_then(|h| h.to_str().ok())
        .and_then(|p| p.split(',').find_map(|x| x.trim().strip_prefix("return=")))
        .unwrap_or("representation")
}

fn write_response(w: WriteOutcome, base: &str, headers: &HeaderMap) -> Response {
    let status = if w.created { StatusCode::CREATED } else { StatusCode::OK };
    let body = match prefer(headers) {
        "minimal" => String::new(),
        "OperationOutcome" => {
            let mut issues = w.warnings.clone();
            if issues.is_empty() {
                issues.push(musubi_fhir::outcome::OutcomeIssue {
                    severity: musubi_fhir::outcome::Severity::Information,
                    code: "informational",
                    expression: None,
                    diagnostics: "正常に処理しました".into(),
                    rule: None,
                });
            }
            musubi_fhir::outcome::operation_outcome(&issues).to_string()
        }
        _ => w.content,
    };
    let mut r = fhir(status, body);
    let h = r.headers_mut();
    set(h, header::ETAG, format!("W/\"{}\"", w.version));
    set(h, header::LAST_MODIFIED, http_date(w.last_updated));
    set(h, header::LOCATION, format!("{base}/{}/{}/_history/{}", w.rtype, w.id, w.version));
    r
}

fn read_response(r: ReadOutcome) -> Response {
    let mut resp = fhir(StatusCode::OK, r.content);
    let h = resp.headers_mut();
    set(h, header::ETAG, format!("W/\"{}\"", r.version));
    set(h, header::LAST_MODIFIED, http_date(r.last_updated));
    resp
}

/// The CapabilityStatement: answered without a token (discovery; it holds no patient data and
/// says in `rest.security` how to authenticate).
async fn metadata(State(state): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Result<Response> {
    check_accept(&headers, &query_pairs(q))?;
    let cs = musubi_service::capability_statement(&base_url_of(&state, &headers), env!("CARGO_PKG_VERSION"));
    Ok(fhir(StatusCode::OK, cs.to_string()))
}

/// `/.well-known/smart-configuration`, without a token: what a SMART client looks up first.
async fn smart_configuration(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = base_url_of(&state, &headers);
    let mut r = (StatusCode::OK, musubi_service::smart_configuration(&base).to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    r
}

async fn system_post(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    check_accept(&headers, &[])?;
    let v = json_body(&state, &headers, body).await?;
    let out = state.blocking(move |svc: &Service| svc.process_bundle(&ctx, v)).await?;
    Ok(fhir(StatusCode::OK, out))
}

async fn system_history(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let params = query_pairs(q);
    check_accept(&headers, &params)?;
    let out = state.blocking(move |svc| svc.history(&ctx, None, None, &params)).await?;
    Ok(fhir(StatusCode::OK, out))
}

async fn type_get(
    State(state): State<AppState>,
    Path(t): Path<String>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    let params = query_pairs(q);
    check_accept(&headers, &params)?;
    let out = state.blocking(move |svc| svc.search(&ctx, rtype, &params)).await?;
    Ok(fhir(StatusCode::OK, out.json))
}

async fn type_search_post(
    State(state): State<AppState>,
    Path(t): Path<String>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "_search の本文は application/x-www-form-urlencoded でなければなりません",
        )
        .into());
    }
    let bytes = read_body(&state, &headers, body).await?;
    let mut params = query_pairs(q);
    params.extend(parse_query(&String::from_utf8_lossy(&bytes)));
    check_accept(&headers, &params)?;
    let out = state.blocking(move |svc| svc.search(&ctx, rtype, &params)).await?;
    Ok(fhir(StatusCode::OK, out.json))
}

async fn type_post(
    State(state): State<AppState>,
    Path(t): Path<String>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    check_accept(&headers, &[])?;
    let v = json_body(&state, &headers, body).await?;
    let base = ctx.base_url.clone();
    if rtype == ResourceType::Bundle && Service::is_submission(&v) {
        let out = state.blocking(move |svc| svc.submit_bundle(&ctx, v)).await?;
        let status = match out.status {
            musubi_service::SubmitStatus::Created => StatusCode::CREATED,
            _ => StatusCode::OK,
        };
        let mut r = fhir(status, out.outcome().to_string());
        if let Some(id) = &out.bundle_id {
            set(r.headers_mut(), header::LOCATION, format!("{base}/Bundle/{id}"));
        }
        return Ok(r);
    }
    if rtype == ResourceType::Bundle && matches!(v.get("type").and_then(Value::as_str), Some("transaction" | "batch")) {
        return Err(ApiError::at(
            ErrorKind::BadRequest,
            "Bundle.type",
            "transaction / batch は POST [base]（/fhir）に送ってください",
        )
        .into());
    }
    let h = headers.clone();
    let out = state.blocking(move |svc| svc.create(&ctx, rtype, v)).await?;
    Ok(write_response(out, &base, &h))
}

async fn type_delete(
    State(state): State<AppState>,
    Path(t): Path<String>,
    Authed(ctx): Authed,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    let params = query_pairs(q);
    match (rtype, params.as_slice()) {
        (ResourceType::Bundle, [(k, v)]) if k == "identifier" => {
            let v = v.clone();
            let n = state.blocking(move |svc| svc.delete_bundle(&ctx, &v)).await?;
            let oo = musubi_fhir::outcome::operation_outcome(&[musubi_fhir::outcome::OutcomeIssue {
                severity: musubi_fhir::outcome::Severity::Information,
                code: "informational",
                expression: None,
                diagnostics: format!("Bundle の送信を削除しました（{n} 件）"),
                rule: None,
            }]);
            Ok(fhir(StatusCode::OK, oo.to_string()))
        }
        _ => {
            Err(ApiError::new(ErrorKind::MethodNotAllowed, "条件付き削除は Bundle?identifier=… のみ対応しています")
                .into())
        }
    }
}

async fn type_history(
    State(state): State<AppState>,
    Path(t): Path<String>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    let params = query_pairs(q);
    check_accept(&headers, &params)?;
    let out = state.blocking(move |svc| svc.history(&ctx, Some(rtype), None, &params)).await?;
    Ok(fhir(StatusCode::OK, out))
}

async fn instance_get(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    if rtype == ResourceType::Patient && id.as_str() == "$everything" {
        return Err(ApiError::bad_request("Patient/[id]/$everything の形で指定してください").into());
    }
    check_accept(&headers, &query_pairs(q))?;
    let out = state.blocking(move |svc| svc.read(&ctx, rtype, &id, None)).await?;
    Ok(read_response(out))
}

async fn instance_put(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    check_accept(&headers, &[])?;
    let v = json_body(&state, &headers, body).await?;
    let if_match = match headers.get(header::IF_MATCH).and_then(|h| h.to_str().ok()) {
        Some(m) => Some(musubi_service::etag_version(m).ok_or_else(|| {
            HttpError(ApiError::bad_request(format!("If-Match の値 {m:?} が不正です（W/\"バージョン\"）")))
        })?),
        None => None,
    };
    let base = ctx.base_url.clone();
    let h = headers.clone();
    let out = state.blocking(move |svc| svc.update(&ctx, rtype, &id, v, if_match)).await?;
    Ok(write_response(out, &base, &h))
}

async fn instance_delete(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    Authed(ctx): Authed,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    let v = state.blocking(move |svc| svc.delete(&ctx, rtype, &id)).await?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Some(v) = v {
        set(r.headers_mut(), header::ETAG, format!("W/\"{v}\""));
    }
    Ok(r)
}

async fn instance_history(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    let params = query_pairs(q);
    check_accept(&headers, &params)?;
    let out = state.blocking(move |svc| svc.history(&ctx, Some(rtype), Some(&id), &params)).await?;
    Ok(fhir(StatusCode::OK, out))
}

async fn vread(
    State(state): State<AppState>,
    Path((t, id, vid)): Path<(String, String, String)>,
    Authed(ctx): Authed,
    headers: HeaderMap,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    check_accept(&headers, &[])?;
    let vid: i64 = vid
        .parse()
        .map_err(|_| HttpError(ApiError::new(ErrorKind::NotFound, format!("バージョン {vid:?} は見つかりません"))))?;
    let out = state.blocking(move |svc| svc.read(&ctx, rtype, &id, Some(vid))).await?;
    Ok(read_response(out))
}

async fn everything(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    check_accept(&headers, &query_pairs(q))?;
    let out = state.blocking(move |svc| svc.everything(&ctx, &id)).await?;
    Ok(fhir(StatusCode::OK, out))
}

async fn pix(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let params = query_pairs(q);
    check_accept(&headers, &params)?;
    let source = params
        .iter()
        .find(|(k, _)| k == "sourceIdentifier")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| HttpError(ApiError::bad_request("sourceIdentifier が必要です（system|value）")))?;
    let targets: Vec<String> = params.iter().filter(|(k, _)| k == "targetSystem").map(|(_, v)| v.clone()).collect();
    let out = state.blocking(move |svc| svc.pix(&ctx, &source, &targets)).await?;
    Ok(fhir(StatusCode::OK, out.to_string()))
}

async fn pdq_match(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    check_accept(&headers, &[])?;
    let v = json_body(&state, &headers, body).await?;
    if v["resourceType"] != "Parameters" {
        return Err(
            ApiError::at(ErrorKind::BadRequest, "resourceType", "$match には Parameters を送ってください").into()
        );
    }
    let params = v["parameter"].as_array().cloned().unwrap_or_default();
    let patient = params.iter().find(|p| p["name"] == "resource").map(|p| p["resource"].clone()).ok_or_else(|| {
        HttpError(ApiError::at(ErrorKind::BadRequest, "Parameters.parameter", "resource（Patient）が必要です"))
    })?;
    let count =
        params.iter().find(|p| p["name"] == "count").and_then(|p| p["valueInteger"].as_u64()).unwrap_or(10).min(100)
            as usize;
    let only_certain = params
        .iter()
        .find(|p| p["name"] == "onlyCertainMatches")
        .and_then(|p| p["valueBoolean"].as_bool())
        .unwrap_or(false);
    let out = state.blocking(move |svc| svc.pdq_match(&ctx, &patient, count, only_certain)).await?;
    Ok(fhir(StatusCode::OK, out.to_string()))
}

async fn not_found(method: Method) -> Response {
    HttpError(ApiError::new(ErrorKind::NotFound, format!("この URL（{method}）には対応していません"))).into_response()
}

async fn method_not_allowed() -> Response {
    HttpError(ApiError::new(ErrorKind::MethodNotAllowed, "この URL ではこのメソッドは使えません")).into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    HttpError(ApiError::new(ErrorKind::Internal, "サーバー内部でエラーが発生しました")).into_response()
}

/// The router of the whole server.
pub fn router(state: AppState) -> Router {
    let fhir = Router::new()
        .route("/metadata", get(metadata))
        .route("/.well-known/smart-configuration", get(smart_configuration))
        .route("/", post(system_post))
        .route("/_history", get(system_history))
        .route("/{rtype}", get(type_get).post(type_post).delete(type_delete))
        .route("/{rtype}/_search", post(type_search_post))
        .route("/{rtype}/_history", get(type_history))
        .route("/{rtype}/{id}", get(instance_get).put(instance_put).delete(instance_delete))
        .route("/{rtype}/{id}/_history", get(instance_history))
        .route("/Patient/{id}/$everything", get(everything))
        .route("/Patient/$ihe-pix", get(pix))
        .route("/Patient/$match", post(pdq_match))
        .route("/{rtype}/{id}/_history/{vid}", get(vread))
        .method_not_allowed_fallback(method_not_allowed);
    // The web pages (viewer, portal, operator console) at `/`, over the same service.
    let mut web_config = musubi_web::WebConfig::from_base_url(state.inner.config.base_url.as_deref());
    web_config.secure_cookies |= state.inner.config.https;
    let web = musubi_web::router(state.inner.service.clone(), web_config);
    Router::new()
        .nest("/api", crate::api::routes())
        .route("/fhir/", post(system_post))
        .nest("/fhir", fhir)
        .merge(web)
        .fallback(not_found)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::map_response(crate::limits::security_headers))
        .with_state(state)
}
