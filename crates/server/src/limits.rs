//! Limits at the door: how long a client may take to send its headers and each piece of its
//! body, how many connections are served at once (past that a short 503 with `Retry-After`),
//! how long a request may wait for the bounded store pool (past that 503 with `Retry-After`),
//! and the security headers every response carries.
//!
//! Each piece is a small function or layer so that another listener (TLS) can reuse it:
//! [`serve_connections`] takes any [`axum::serve::Listener`] whose address is a socket address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderValue;
use axum::http::header;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// The limits of the listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A client must send a request's whole header within this time (also the idle time a
    /// kept-alive connection may wait for its next request).
    pub header_timeout: Duration,
    /// A request body must not pause longer than this between two pieces.
    pub body_idle_timeout: Duration,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// How long a request may wait for a place in the store pool before it is answered 503.
    pub queue_timeout: Duration,
    /// The `Retry-After` (seconds) of a 503 sent because the server is full.
    pub retry_after_s: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
            queue_timeout: Duration::from_secs(10),
            retry_after_s: 5,
        }
    }
}

/// The answer to a connection over the limit: written raw (the connection is not served), in
/// Japanese like every other error.
fn busy_response(retry_after_s: u32) -> Vec<u8> {
    let body = serde_json::json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "transient",
                   "diagnostics": format!("サーバーが混雑しています。{retry_after_s} 秒後に再度お試しください。")}]
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/fhir+json; charset=utf-8\r\nRetry-After: {retry_after_s}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `stop` completes: HTTP/1.1 with a header-read timeout, at
/// most `limits.max_connections` connections at once, the client's address in `ConnectInfo`.
/// On `stop`, connections finish their current request (bounded by 30 s) before it returns.
pub async fn serve_connections<L>(
    mut listener: L,
    app: Router,
    limits: Limits,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        let (io, addr) = tokio::select! {
            c = listener.accept() => c,
            () = &mut stop => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let retry = limits.retry_after_s;
            tracing::warn!(%addr, "connection limit reached; answered 503");
            tokio::spawn(async move {
                let mut io = io;
                let _ = tokio::time::timeout(Duration::from_secs(2), io.write_all(&busy_response(retry))).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), io.shutdown()).await;
            });
            continue;
        };
        let idle = limits.body_idle_timeout;
        let svc = app.clone().map_request(move |req: Request<hyper::body::Incoming>| {
            // A body that pauses longer than `idle` between two pieces ends with an error (a
            // slow client cannot hold a connection and a store permit by trickling bytes).
            let mut req = req.map(|b| Body::new(tower_http::timeout::TimeoutBody::new(idle, b)));
            req.extensions_mut().insert(ConnectInfo(addr));
            req
        });
        let hyper_svc = TowerToHyperService::new(svc);
        let header_timeout = limits.header_timeout;
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
            let conn = builder.serve_connection(TokioIo::new(io), hyper_svc).with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%addr, error = %e, "connection ended with an error");
                    }
                }
                () = async { let _ = closing.wait_for(|c| *c).await.map(|_| ()); } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = closing_tx.send(true);
    // Every connection holds a slot: when all are back, every connection has ended.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(30), slots.acquire_many(all)).await;
    Ok(())
}

/// The Content-Security-Policy of the API's answers (JSON, never a page): nothing may load.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every response (the web pages set their own stricter page
/// policy first; what a route set is kept): `nosniff`, a CSP, no framing, no referrer, and
/// `Cache-Control: no-store` unless the route chose otherwise — almost every answer carries
/// patient data, and none may stay in a shared computer's or a proxy's cache.
pub async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let defaults = [
        (header::CONTENT_SECURITY_POLICY, API_CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in defaults {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    r
}
