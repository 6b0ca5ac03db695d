//! Musubi's HTTP server. Only this crate knows HTTP: it authenticates the caller, turns each
//! request into a call on the [`Service`] (run on the blocking pool, bounded), and each result
//! or [`ApiError`] into a FHIR JSON response. Every error body is an OperationOutcome.
//! The web pages (`musubi-web`: the clinician viewer, the patient portal and the operator
//! console, server-rendered HTML) are merged at `/` over the same service, so `musubi serve`
//! serves them too; their errors are HTML pages, not OperationOutcomes.
//!
//! | error kind | status |
//! |---|---|
//! | BadRequest (malformed JSON, unknown parameter) | 400 |
//! | Unauthorized (no / bad / revoked token) | 401 + `WWW-Authenticate: Bearer` |
//! | Forbidden (the gate refuses a write) | 403 |
//! | NotFound (missing, or hidden from the caller — indistinguishable) | 404 |
//! | MethodNotAllowed | 405 |
//! | NotAcceptable (XML asked for) | 406 |
//! | Conflict (concurrent write) | 409 |
//! | Gone (deleted) | 410 |
//! | PreconditionFailed (If-Match) | 412 |
//! | PayloadTooLarge | 413 |
//! | UnsupportedMediaType | 415 |
//! | Unprocessable (breaks FHIR / JP Core / JP-CLINS rules) | 422 |
//! | Internal (logged, no details in the body) | 500 |
//! | TooManyRequests (login attempts throttled) | 429 + `Retry-After` |
//! | Unavailable | 503 |

#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use musubi_service::{ApiError, ErrorKind, Service};
use tokio::sync::Semaphore;

pub use routes::router;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The public base URL of the FHIR API (`https://musubi.example.jp/fhir`); when unset,
    /// links are built from the request's Host header.
    pub base_url: Option<String>,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// How many store calls may run at once (work in flight is bounded).
    pub max_blocking: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { base_url: None, body_limit: 64 * 1024 * 1024, max_blocking: 64 }
    }
}

struct Inner {
    service: Service,
    tokens: auth::TokenCache,
    config: ServerConfig,
    permits: Semaphore,
}

/// Shared state of the server.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl AppState {
    /// State over a service.
    pub fn new(service: Service, config: ServerConfig) -> AppState {
        let permits = Semaphore::new(config.max_blocking.max(1));
        AppState { inner: Arc::new(Inner { service, tokens: auth::TokenCache::default(), config, permits }) }
    }

    /// Runs `f` on the blocking pool with a permit.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Service) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| ApiError::new(ErrorKind::Unavailable, "サーバーは停止処理中です"))?;
        let svc = self.inner.service.clone();
        tokio::task::spawn_blocking(move || f(&svc))
            .await
            .map_err(|e| ApiError::internal(format!("blocking task failed: {e}")))?
    }
}

/// The HTTP status of an error kind (the table above).
pub fn status_of(kind: ErrorKind) -> StatusCode {
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

/// Serves `state` on `listener` until Ctrl-C / SIGTERM.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    serve_until(listener, state, shutdown_signal()).await
}

/// Serves until `stop` completes (tests, embedding).
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    state: AppState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(stop).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
