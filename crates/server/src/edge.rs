//! The HTTP edge shared by every route: the error → response translation, authentication
//! (bearer tokens, session cookies, client certificates) into a request context, and request
//! bodies within their limits. The FHIR routes (`routes.rs`) and the JSON API (`api.rs`) both
//! build on it; neither reaches into the other.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use musubi_gate::Actor;
use musubi_service::{ApiError, Ctx, ErrorKind};

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

pub(crate) type Result<T> = std::result::Result<T, HttpError>;

pub(crate) fn fhir(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

/// The authenticated caller and request context. Every route that takes credentials takes
/// this, and it never holds the bootstrap token: that token is refused here (403, with the
/// message that it only creates the first operator), in one place, whatever the route.
pub struct Authed(pub Ctx);

/// The authenticated caller, who may also be the bootstrap token. Only the route that creates
/// the first operator account takes it (`api::operator_post`); the service lets the bootstrap
/// token do nothing else.
pub struct AuthedOrBootstrap(pub Ctx);

pub(crate) fn base_url(state: &AppState, parts: &Parts) -> String {
    base_url_of(state, &parts.headers)
}

pub(crate) fn base_url_of(state: &AppState, headers: &HeaderMap) -> String {
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
        None => (cookie_token(&parts.headers, secure(state)), true),
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
            let actor = st.inner.tokens.resolve(svc, &token, now)?;
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

pub(crate) async fn not_found(method: Method) -> Response {
    HttpError(ApiError::new(ErrorKind::NotFound, format!("この URL（{method}）には対応していません"))).into_response()
}

pub(crate) async fn method_not_allowed() -> Response {
    HttpError(ApiError::new(ErrorKind::MethodNotAllowed, "この URL ではこのメソッドは使えません")).into_response()
}

pub(crate) fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    HttpError(ApiError::new(ErrorKind::Internal, "サーバー内部でエラーが発生しました")).into_response()
}

/// Whether cookies must be `Secure` (TLS is on, or the public base URL is HTTPS).
pub(crate) fn secure(state: &AppState) -> bool {
    state.inner.config.https || state.inner.config.base_url.as_deref().is_some_and(|u| u.starts_with("https://"))
}
