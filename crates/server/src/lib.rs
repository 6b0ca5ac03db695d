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
//! | PayloadTooLarge (past `body_limit`, or 64 KiB on a route without credentials) | 413 |
//! | UnsupportedMediaType | 415 |
//! | Unprocessable (breaks FHIR / JP Core / JP-CLINS rules) | 422 |
//! | Internal (logged, no details in the body) | 500 |
//! | TooManyRequests (login attempts, consent codes, emergency accesses throttled) | 429 + `Retry-After` |
//! | Unavailable (stopping; no place in the store pool within the queue timeout) | 503 + `Retry-After` |

#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod edge;
pub mod limits;
pub mod routes;
pub mod tls;

use std::sync::Arc;

use axum::http::StatusCode;
use musubi_service::{ApiError, ErrorKind, Service};
use tokio::sync::Semaphore;

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
    /// The largest body of a route that takes no credentials (login, one-time code,
    /// registration), in bytes: nobody unauthenticated may make the server read megabytes.
    pub public_body_limit: usize,
    /// Timeouts, the connection limit and the wait for the store pool.
    pub limits: limits::Limits,
    /// Served over HTTPS (session cookies are `Secure`, links default to `https://`).
    pub https: bool,
    /// Mutual TLS: a system token is accepted only over a connection whose verified client
    /// certificate names the token's facility ([`tls::ClientCert`]).
    pub bind_system_tokens: bool,
}

/// The default [`ServerConfig::public_body_limit`]: 64 KiB.
pub const PUBLIC_BODY_LIMIT: usize = 64 * 1024;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            base_url: None,
            body_limit: 64 * 1024 * 1024,
            max_blocking: 64,
            public_body_limit: PUBLIC_BODY_LIMIT,
            limits: limits::Limits::default(),
            https: false,
            bind_system_tokens: false,
        }
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
        // A request waits a bounded time for a place; a full queue answers 503 with
        // Retry-After rather than piling up connections behind it.
        let _permit =
            match tokio::time::timeout(self.inner.config.limits.queue_timeout, self.inner.permits.acquire()).await {
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
    serve_on(listener, state, None, stop).await
}

/// Serves `state` on `listener` until `stop` completes, over HTTPS when `tls` is given: one
/// door for both ([`limits::serve_connections`]), with the summaries of failed authentications
/// written as their periods end.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let limits = state.inner.config.limits.clone();
    // Failed authentications are counted in memory; their summaries are written when each
    // period ends (and the rest at shutdown).
    let svc = state.inner.service.clone();
    let flusher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            let s = svc.clone();
            flush_failed_auth(s, musubi_fhir::datetime::now_ms()).await;
        }
    });
    let listener = listener.tap_io(|tcp| {
        // Small answers go out at once (no Nagle delay), over TLS as over plain HTTP.
        let _ = tcp.set_nodelay(true);
    });
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let result = limits::serve_connections(listener, router(state.clone()), limits, acceptor, stop).await;
    flusher.abort();
    flush_failed_auth(state.inner.service.clone(), i64::MAX).await;
    result
}

async fn flush_failed_auth(svc: Service, now: i64) {
    match tokio::task::spawn_blocking(move || svc.flush_failed_auth(now)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e.summary(), "failed-authentication summaries not written"),
        Err(e) => tracing::error!(error = %e, "failed-authentication flush task failed"),
    }
}

/// Completes on Ctrl-C or SIGTERM. The signal handlers are installed when this is called (it
/// must be called on the runtime), not when the future is first polled: call it before binding
/// the listener, and a signal sent as soon as the port answers still stops the server
/// gracefully.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {},
                () = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

/// The router of the whole server: the JSON API at `/api`, the FHIR API at `/fhir`, the web
/// pages (viewer, portal, operator console) at `/`, over the same service, with the security
/// headers and the panic guard on every route.
pub fn router(state: AppState) -> axum::Router {
    let mut web_config = musubi_web::WebConfig::from_base_url(state.inner.config.base_url.as_deref());
    web_config.secure_cookies |= state.inner.config.https;
    let web = musubi_web::router(state.inner.service.clone(), web_config);
    axum::Router::new()
        .nest("/api", api::routes())
        // `nest` does not match the trailing slash: the transaction/batch endpoint by its own.
        .route("/fhir/", axum::routing::post(routes::system_post))
        .nest("/fhir", routes::fhir_routes())
        .merge(web)
        .fallback(edge::not_found)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(edge::panic_response))
        .layer(axum::middleware::map_response(limits::security_headers))
        .with_state(state)
}
