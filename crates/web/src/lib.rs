//! Musubi's web pages: the clinician viewer, the patient portal and the operator console, as
//! server-rendered HTML in Japanese.
//!
//! [`router`] returns the pages as an axum router that `musubi-server` merges at `/`:
//!
//! | path | who | what |
//! |---|---|---|
//! | `/login`, `/patients`, `/patients/{id}`, `/patients/{id}/documents/…` | clinicians and staff | login (password, one-time code, facility), patient search, the patient page (the 6 items, lab trends, timeline, documents), consent in person, emergency access |
//! | `/portal/…` | patients and proxies | registration, login, disclosure settings, access history, notices, own record and its download (FHIR Bundle), proxies |
//! | `/patients/{id}/summary`, `/patients/{id}/summary.pdf` | clinicians | the emergency summary (救急用サマリ) and its PDF |
//! | `/referrals/…` | clinicians and staff | referral exchange (文書送受信): inbox, outbox, a new 診療情報提供書 with attachments, an opened referral with its signature checked, a reply |
//! | `/admin/…` | network operators | facilities and users, the audit report (CSV), the emergency-access review list, the MPI review queue |
//!
//! **Every read of clinical data goes through the service** ([`musubi_service::Service`]): a
//! patient page is one [`Service::person_record`](musubi_service::Service::person_record) call
//! (the gate decides each record, one audit record per page); searches are
//! [`Service::search`](musubi_service::Service::search). This crate never reads clinical
//! resources from the store. It reads only registry and account data that are not clinical
//! (the facility list for forms, the user list for the operator, the caller's own emergency
//! grant to show when it ends, the administrator token's row to log an operator in).
//!
//! ## Choices
//!
//! - **maud** for templates rather than askama: templates are Rust expressions checked by the
//!   compiler (a typo in a field is a build error, not a blank page), every interpolation is
//!   HTML-escaped unless marked, pages are composed from plain functions, and it adds one small
//!   proc-macro crate and no template files to keep in sync.
//! - **No script at all.** Every action is a plain form (one-click toggles are one-button
//!   forms), so the Content-Security-Policy ([`CSP`], `default-src 'none'`) allows no script,
//!   and the pages work with JavaScript turned off. Charts are inline SVG drawn on the server;
//!   no element carries an inline style.
//! - **Referral letters** written in the form are built by [`letter`] as JP-CLINS eReferral
//!   document Bundles (checked against the profiles by a test); a letter an EMR made and signed
//!   can be uploaded as it is, with its CMS signature. Uploads are `multipart/form-data`; the
//!   service checks every file's type and size.
//! - **Sessions** are the service's: the `musubi_session` HttpOnly, SameSite=Strict cookie that
//!   `/api/login` also sets; every form that changes something carries the session's CSRF token
//!   and is refused without it; a cross-site `Origin` or `Sec-Fetch-Site` is refused too.
//! - **Operators** log in by pasting the administrator token into a form (the token row is
//!   checked, then an 8-hour operator session lives in this process's memory, with its own CSRF
//!   token; revoking the token ends it at the next request). The service has no operator
//!   account with a second factor yet; when it does, this login moves to it.
//! - Patient pages are never cached (`Cache-Control: no-store`); every page is sent with
//!   `X-Frame-Options: DENY`, `nosniff`, `Referrer-Policy: no-referrer`, and with
//!   `Server-Timing: app;dur=…` (the server's time for it; the benchmark reads it).
//!
//! ## Tests
//!
//! `tests/pages.rs` drives every page family over HTTP against a real server (refusals
//! included: no session, no CSRF token, no consent or care relationship, emergency access and
//! its trace in the patient's history); `tests/referrals.rs` the referral exchange, signatures
//! included; `tests/browser.rs` the main path in headless Chromium through chromedriver, with
//! screenshots in `target/test-artifacts/`. `benches/pages.rs` measures the pages for a patient
//! with 5 years of history at 10 facilities (`BENCH-RESULTS.md`).

#![deny(missing_docs)]

mod admin;
pub mod chart;
mod html;
pub mod letter;
mod portal;
mod record_html;
mod referrals;
mod session;
mod summary_page;
mod viewer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::header::{self, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use musubi_service::{ApiError, ErrorKind, Service};
use tokio::sync::Semaphore;

/// Settings of the web pages.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Mark cookies `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// The FHIR base URL for `fullUrl`s in downloads (`https://musubi.example.jp/fhir`); when
    /// unset it is built from the request's Host header.
    pub fhir_base: Option<String>,
    /// How many service calls the pages may run at once.
    pub max_blocking: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { secure_cookies: false, fhir_base: None, max_blocking: 32 }
    }
}

impl WebConfig {
    /// The settings that follow from the server's public FHIR base URL.
    pub fn from_base_url(base_url: Option<&str>) -> WebConfig {
        WebConfig {
            secure_cookies: base_url.is_some_and(|u| u.starts_with("https://")),
            fhir_base: base_url.map(|u| u.trim_end_matches('/').to_owned()),
            ..WebConfig::default()
        }
    }
}

/// How long a page waits for a place among the service calls before it answers 503.
const QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

struct Inner {
    service: Service,
    config: WebConfig,
    permits: Semaphore,
    bootstrap: Mutex<HashMap<String, session::BootstrapSession>>,
}

/// The state of the web pages.
#[derive(Clone)]
pub(crate) struct Web {
    inner: Arc<Inner>,
}

impl Web {
    /// Runs `f` on the blocking pool with a permit (the service blocks).
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Service) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        // A bounded wait for a place: a full queue answers 503 (with Retry-After) rather than
        // piling up connections behind it.
        let _permit = match tokio::time::timeout(QUEUE_TIMEOUT, self.inner.permits.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(ApiError::new(ErrorKind::Unavailable, "サーバーは停止処理中です")),
            Err(_) => {
                return Err(ApiError::new(
                    ErrorKind::Unavailable,
                    "サーバーが混雑しています。しばらくしてから再度お試しください。",
                ));
            }
        };
        let svc = self.inner.service.clone();
        tokio::task::spawn_blocking(move || f(&svc))
            .await
            .map_err(|e| ApiError::internal(format!("blocking task failed: {e}")))?
    }

    pub(crate) fn config(&self) -> &WebConfig {
        &self.inner.config
    }
}

/// The pages as a router for `service`, to be merged into the server's router at `/`. The
/// router carries its own state, so it fits a router of any state type `S`.
pub fn router<S: Clone + Send + Sync + 'static>(service: Service, config: WebConfig) -> Router<S> {
    let permits = Semaphore::new(config.max_blocking.max(1));
    let web = Web { inner: Arc::new(Inner { service, config, permits, bootstrap: Mutex::new(HashMap::new()) }) };
    Router::new()
        .route("/", get(viewer::home))
        .route("/assets/style.css", get(style))
        .merge(viewer::routes())
        // The emergency summary pages build on the viewer's (its access checks and the page
        // shown when nothing is visible); the viewer does not know them.
        .route("/patients/{id}/summary", get(summary_page::summary))
        .route("/patients/{id}/summary.pdf", get(summary_page::summary_pdf))
        .merge(portal::routes())
        .merge(admin::routes())
        .merge(referrals::routes())
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn(server_timing))
        .with_state(web)
}

/// One CSV field, quoted, for a spreadsheet. A cell that starts with `=`, `+`, `-`, `@` (or
/// their full-width forms, which Japanese Excel also reads as a formula) or a control
/// character gets a leading `'`, so a login name such as `=HYPERLINK(…)` stays text instead of
/// running as a formula (OWASP "CSV injection").
pub fn csv_field(value: &str) -> String {
    let risky = value
        .chars()
        .next()
        .is_some_and(|c| matches!(c, '=' | '+' | '-' | '@' | '＝' | '＋' | '－' | '＠') || c.is_control());
    let quote = if risky { "'" } else { "" };
    format!("\"{quote}{}\"", value.replace('"', "\"\""))
}

const STYLE: &str = include_str!("../assets/style.css");

async fn style() -> Response {
    let mut r = Response::new(axum::body::Body::from(STYLE));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    r
}

/// The Content-Security-Policy of every page: no script, styles and images only from here,
/// forms only to here, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds `Server-Timing: app;dur=…` (milliseconds from the request to the response head): the
/// server's own time for a page, as browsers' developer tools and the benchmark read it.
async fn server_timing(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let start = std::time::Instant::now();
    let mut r = next.run(req).await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.2}")) {
        r.headers_mut().insert("server-timing", v);
    }
    r
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("permissions-policy", HeaderValue::from_static("camera=(), microphone=(), geolocation=()"));
    if !h.contains_key(header::CACHE_CONTROL) {
        // Patient data must not stay in a shared computer's cache.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_cells_never_start_a_formula() {
        assert_eq!(csv_field("yamada"), "\"yamada\"");
        assert_eq!(csv_field("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        for s in ["+1", "-1+2", "@SUM(A1)", "\tx", "\r=1", "＝1"] {
            assert!(csv_field(s).starts_with("\"'"), "{s:?}");
        }
        assert_eq!(csv_field(""), "\"\"");
        assert_eq!(csv_field("山田 a=1"), "\"山田 a=1\"");
    }
}
