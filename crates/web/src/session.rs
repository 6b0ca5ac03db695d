//! Who is calling: the service's session cookie (clinicians, patients, proxies, named
//! operators) resolved with `Service::session_actor`, the in-memory console session opened
//! with the bootstrap token (good only for creating the first operator), the CSRF check of
//! every form that changes something, and the refusal of cross-site form posts.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use musubi_gate::{Actor, PortalActor, UserActor};
use musubi_service::{ApiError, Ctx, ErrorKind};

use crate::Web;
use crate::html;

/// The service's session cookie (the same one `/api/login` sets).
pub(crate) const SESSION_COOKIE: &str = "musubi_session";
/// The cookie of a console session opened with the bootstrap token.
pub(crate) const BOOTSTRAP_COOKIE: &str = "musubi_bootstrap";
/// How long a bootstrap console session lasts.
pub(crate) const BOOTSTRAP_SESSION_MS: i64 = 3600 * 1000;

/// The console opened with the bootstrap (administrator) token: it shows only the page that
/// creates the first operator account.
#[derive(Debug, Clone)]
pub(crate) struct BootstrapSession {
    /// The token's name (the audit agent).
    pub name: String,
    /// The token's hash, checked again on every request (revocation ends the session).
    pub token_hash: String,
    /// The CSRF token of the session.
    pub csrf: String,
    /// Until when (epoch ms).
    pub expires: i64,
    /// Last used (epoch ms): the session ends after [`BOOTSTRAP_IDLE_MS`] unused.
    pub last_seen: i64,
}

/// How long a bootstrap console session may go unused.
pub(crate) const BOOTSTRAP_IDLE_MS: i64 = 15 * 60 * 1000;

/// A cookie's name as sent: with TLS a `__Host-` cookie (kept by a browser only when `Secure`,
/// for this host alone and every path, so no sibling host can plant or read it).
pub(crate) fn cookie_name(name: &str, secure: bool) -> String {
    if secure { format!("__Host-{name}") } else { name.to_owned() }
}

/// A value of the Cookie header (the name as [`cookie_name`] makes it).
pub(crate) fn cookie(headers: &HeaderMap, name: &str, secure: bool) -> Option<String> {
    let name = cookie_name(name, secure);
    headers.get_all(header::COOKIE).iter().filter_map(|h| h.to_str().ok()).flat_map(|h| h.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_owned())
    })
}

/// A `Set-Cookie` value (HttpOnly, SameSite=Strict, Path=/; with TLS `Secure` and `__Host-`).
pub(crate) fn set_cookie(r: &mut Response, name: &str, value: &str, max_age_s: i64, secure: bool) {
    let name = cookie_name(name, secure);
    let c = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age_s.max(0),
        if secure { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Random URL-safe text.
pub(crate) fn random_token(bytes: usize) -> Result<String, ApiError> {
    use base64::Engine;
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("random: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// An error shown as a page.
#[derive(Debug)]
pub(crate) enum PageError {
    /// A service error (shown with its message and the matching status).
    Api(ApiError),
    /// Not logged in: go to this login page.
    Login(&'static str, String),
    /// The console was opened with the bootstrap token, which only creates the first operator.
    BootstrapOnly,
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::Api(e)
    }
}

/// The HTTP status of an error kind (the same table as the FHIR API's).
pub(crate) fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Gone => StatusCode::GONE,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login(path, next) => {
                let to =
                    if next.is_empty() { path.to_owned() } else { format!("{path}?next={}", html::url_encode(&next)) };
                Redirect::to(&to).into_response()
            }
            PageError::Api(e) => {
                let status = status_of(e.kind);
                let title = match e.kind {
                    ErrorKind::NotFound => "見つかりません",
                    ErrorKind::Forbidden => "この操作はできません",
                    ErrorKind::Unauthorized => "ログインが必要です",
                    ErrorKind::Conflict => "ほかの変更と重なりました",
                    ErrorKind::BadRequest | ErrorKind::Unprocessable => "入力を確認してください",
                    _ => "エラーが発生しました",
                };
                let mut r = (status, html::error_page(title, &e.summary())).into_response();
                if e.kind == ErrorKind::Unavailable {
                    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                }
                with_retry_after(&mut r, &e);
                r
            }
            PageError::BootstrapOnly => {
                (StatusCode::FORBIDDEN, html::bootstrap_only_page(musubi_gate::BOOTSTRAP_ONLY_JA)).into_response()
            }
        }
    }
}

/// Adds `Retry-After` to the answer of a throttled attempt (429).
pub(crate) fn with_retry_after(r: &mut Response, e: &ApiError) {
    if let ErrorKind::TooManyRequests { retry_after_s } = e.kind {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    }
}

/// The client's address (for the audit record).
pub(crate) fn address(parts: &Parts) -> Option<String> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string())
}

/// The FHIR base URL for links in downloads.
pub(crate) fn fhir_base(web: &Web, headers: &HeaderMap) -> String {
    if let Some(b) = &web.config().fhir_base {
        return b.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty() && h.len() < 256 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("http://{host}/fhir")
}

/// Refuses a state-changing request that comes from another site (a second line behind the
/// CSRF token and the SameSite cookie).
pub(crate) fn same_origin(parts: &Parts) -> Result<(), PageError> {
    if matches!(parts.method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    let forbidden = || PageError::Api(ApiError::new(ErrorKind::Forbidden, "ほかのサイトからの送信は受け付けません"));
    if parts.headers.get("sec-fetch-site").and_then(|h| h.to_str().ok()) == Some("cross-site") {
        return Err(forbidden());
    }
    if let Some(origin) = parts.headers.get(header::ORIGIN).and_then(|h| h.to_str().ok()) {
        let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest.trim_end_matches('/'));
        if origin != "null" && origin_host != host {
            return Err(forbidden());
        }
    }
    Ok(())
}

/// Checks the CSRF token of a form.
pub(crate) fn check_csrf(form: &Form, expected: &str) -> Result<(), PageError> {
    if form.get("csrf") == expected && !expected.is_empty() {
        Ok(())
    } else {
        Err(PageError::Api(ApiError::new(
            ErrorKind::Forbidden,
            "不正な要求です（CSRF トークンが一致しません）。ページを再読み込みしてからやり直してください。",
        )))
    }
}

/// A submitted form (`application/x-www-form-urlencoded`), in order, repeated names kept.
#[derive(Debug, Default, Clone)]
pub(crate) struct Form(pub Vec<(String, String)>);

impl Form {
    /// Parses a body.
    pub(crate) fn parse(body: &[u8]) -> Form {
        Form(musubi_service::parse_query(&String::from_utf8_lossy(body)))
    }

    /// The first value of `name`, trimmed ("" when absent).
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.trim())
    }

    /// The first value of `name` when not empty.
    pub(crate) fn opt(&self, name: &str) -> Option<String> {
        Some(self.get(name)).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    /// Whether a checkbox named `name` was checked.
    pub(crate) fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, v)| k == name && !v.is_empty())
    }

    /// Every value of `name`.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, v)| k == name && !v.trim().is_empty()).map(|(_, v)| v.trim().to_owned()).collect()
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Form {
    type Rejection = PageError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                PageError::Api(ApiError::new(ErrorKind::PayloadTooLarge, "送信内容が大きすぎます"))
            } else {
                PageError::Api(ApiError::bad_request("送信内容を読み取れませんでした"))
            }
        })?;
        if bytes.len() > 1024 * 1024 {
            return Err(PageError::Api(ApiError::new(ErrorKind::PayloadTooLarge, "送信内容が大きすぎます")));
        }
        Ok(Form::parse(&bytes))
    }
}

fn next_of(parts: &Parts) -> String {
    if parts.method == Method::GET {
        parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default()
    } else {
        String::new()
    }
}

/// A logged-in clinician or staff member.
pub(crate) struct Clinician {
    /// The request context for the service.
    pub ctx: Ctx,
    /// Who.
    pub user: UserActor,
    /// The session's CSRF token.
    pub csrf: String,
}

impl FromRequestParts<Web> for Clinician {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        same_origin(parts)?;
        let login = || PageError::Login("/login", next_of(parts));
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE, web.config().secure_cookies) else {
            return Err(login());
        };
        let found = web.call(move |svc| svc.session_actor(&token)).await?;
        match found {
            Some((Actor::User(user), session)) => Ok(Clinician {
                ctx: Ctx {
                    actor: Actor::User(user.clone()),
                    address: address(parts),
                    base_url: fhir_base(web, &parts.headers),
                },
                user,
                csrf: session.csrf,
            }),
            _ => Err(login()),
        }
    }
}

/// A logged-in patient or proxy.
pub(crate) struct PortalUser {
    /// The request context for the service.
    pub ctx: Ctx,
    /// Who.
    pub me: PortalActor,
    /// The session's CSRF token.
    pub csrf: String,
}

impl FromRequestParts<Web> for PortalUser {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        same_origin(parts)?;
        let login = || PageError::Login("/portal/login", next_of(parts));
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE, web.config().secure_cookies) else {
            return Err(login());
        };
        let found = web.call(move |svc| svc.session_actor(&token)).await?;
        match found {
            Some((Actor::Portal(me), session)) => Ok(PortalUser {
                ctx: Ctx {
                    actor: Actor::Portal(me.clone()),
                    address: address(parts),
                    base_url: fhir_base(web, &parts.headers),
                },
                me,
                csrf: session.csrf,
            }),
            _ => Err(login()),
        }
    }
}

/// A logged-in operator: a named operator account's session (password and one-time code).
/// A console opened with the bootstrap token is refused here (403): it may only create the
/// first operator ([`Bootstrap`]).
pub(crate) struct Operator {
    /// The request context for the service (the operator actor).
    pub ctx: Ctx,
    /// The session's CSRF token.
    pub csrf: String,
}

impl FromRequestParts<Web> for Operator {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        same_origin(parts)?;
        if let Some(token) = cookie(&parts.headers, SESSION_COOKIE, web.config().secure_cookies) {
            let found = web.call(move |svc| svc.session_actor(&token)).await?;
            if let Some((actor @ Actor::Operator { .. }, session)) = found {
                return Ok(Operator {
                    ctx: Ctx { actor, address: address(parts), base_url: fhir_base(web, &parts.headers) },
                    csrf: session.csrf,
                });
            }
        }
        if live_bootstrap(parts, web).await?.is_some() {
            return Err(PageError::BootstrapOnly);
        }
        Err(PageError::Login("/admin/login", next_of(parts)))
    }
}

/// The console opened with the bootstrap token (only while its token is valid): the request
/// context acts as [`Actor::Bootstrap`], which the service lets create the first operator and
/// nothing else.
pub(crate) struct Bootstrap {
    /// The request context for the service.
    pub ctx: Ctx,
    /// The session's CSRF token.
    pub csrf: String,
}

impl FromRequestParts<Web> for Bootstrap {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        same_origin(parts)?;
        let Some(s) = live_bootstrap(parts, web).await? else {
            return Err(PageError::Login("/admin/login", String::new()));
        };
        Ok(Bootstrap {
            ctx: Ctx {
                actor: Actor::Bootstrap { name: s.name.clone() },
                address: address(parts),
                base_url: fhir_base(web, &parts.headers),
            },
            csrf: s.csrf,
        })
    }
}

/// The bootstrap console session of the request's cookie, if it is live and its token still
/// valid (a revoked token ends the session).
async fn live_bootstrap(parts: &Parts, web: &Web) -> Result<Option<BootstrapSession>, PageError> {
    let Some(id) = cookie(&parts.headers, BOOTSTRAP_COOKIE, web.config().secure_cookies) else {
        return Ok(None);
    };
    let now = musubi_fhir::datetime::now_ms();
    let session = {
        let mut map = web.inner.bootstrap.lock().map_err(|_| ApiError::internal("bootstrap sessions poisoned"))?;
        // Unused for too long: the session ends (as the service's sessions do).
        let live = map.get(&id).is_some_and(|s| s.expires > now && now - s.last_seen <= BOOTSTRAP_IDLE_MS);
        if live {
            map.get_mut(&id).map(|s| {
                s.last_seen = now;
                s.clone()
            })
        } else {
            map.remove(&id);
            None
        }
    };
    let Some(s) = session else { return Ok(None) };
    let hash = s.token_hash.clone();
    let valid = web.call(move |svc| Ok(svc.active_admin_token(&hash, now)?.is_some())).await?;
    if !valid {
        if let Ok(mut map) = web.inner.bootstrap.lock() {
            map.remove(&id);
        }
        return Ok(None);
    }
    Ok(Some(s))
}

/// The largest form a page without a session (login, one-time code, registration) accepts:
/// nobody unauthenticated may make the server read megabytes.
pub(crate) const PUBLIC_FORM_LIMIT: usize = 64 * 1024;

/// The body limit of the routes that take no session (a route layer).
pub(crate) fn public_limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(PUBLIC_FORM_LIMIT)
}

/// The request's address and Host (for pages without a session: login, registration).
pub(crate) struct Anonymous {
    /// The client's address.
    pub address: Option<String>,
}

impl FromRequestParts<Web> for Anonymous {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &Web) -> Result<Self, Self::Rejection> {
        same_origin(parts)?;
        Ok(Anonymous { address: address(parts) })
    }
}

/// Where to go after logging in: only a local path, never another site. Browsers drop tabs and
/// newlines from a URL and read `\\` as `/`, so `/\t/evil.example` would become
/// `//evil.example` (another host): a control character, white space, a backslash or `//`
/// sends the user to `default` instead, and so does a control character, a backslash or a
/// leading `//` that percent-decoding would reveal.
pub(crate) fn safe_next(next: &str, default: &str) -> String {
    let raw_ok = next.len() <= 2048
        && next.starts_with('/')
        && !next.contains("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    let decoded = percent_encoding::percent_decode_str(next).decode_utf8_lossy();
    let decoded_ok = !decoded.starts_with("//") && !decoded.contains('\\') && !decoded.chars().any(char::is_control);
    if raw_ok && decoded_ok { next.to_owned() } else { default.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_local_only() {
        assert_eq!(safe_next("/patients/abc", "/"), "/patients/abc");
        assert_eq!(safe_next("//evil.example/x", "/"), "/");
        assert_eq!(safe_next("https://evil.example/", "/"), "/");
        assert_eq!(safe_next("/\\evil", "/"), "/");
        assert_eq!(safe_next("", "/patients"), "/patients");
        assert_eq!(safe_next("/\t/evil.example", "/"), "/");
        assert_eq!(safe_next("/%09/evil.example", "/"), "/");
        assert_eq!(safe_next("/%2F/evil.example", "/"), "/");
        assert_eq!(safe_next("/a\r\nSet-Cookie:x", "/"), "/");
        assert_eq!(safe_next("/patients?q=%E5%B1%B1%E7%94%B0&x=1", "/"), "/patients?q=%E5%B1%B1%E7%94%B0&x=1");
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; musubi_session=mss_x; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE, false).as_deref(), Some("mss_x"));
        assert_eq!(cookie(&h, SESSION_COOKIE, true), None, "with TLS only the __Host- cookie counts");
        assert_eq!(cookie(&h, BOOTSTRAP_COOKIE, false), None);
        h.insert(header::COOKIE, HeaderValue::from_static("__Host-musubi_session=mss_y"));
        assert_eq!(cookie(&h, SESSION_COOKIE, true).as_deref(), Some("mss_y"));
    }

    #[test]
    fn forms_keep_repeated_names() {
        let f = Form::parse("csrf=abc&x=1&x=2&name=%E7%B5%90+%E8%8A%B1%E5%AD%90".as_bytes());
        assert_eq!(f.get("csrf"), "abc");
        assert_eq!(f.all("x"), vec!["1", "2"]);
        assert_eq!(f.get("name"), "結 花子");
        assert!(check_csrf(&f, "abc").is_ok());
        assert!(check_csrf(&f, "abd").is_err());
        assert!(check_csrf(&Form::default(), "").is_err());
    }
}
