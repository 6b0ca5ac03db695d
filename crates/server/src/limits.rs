//! Limits at the door: how long a client may take to finish its TLS handshake, to send its
//! headers and each piece of its body, how many connections are served at once (past that a
//! short 503 with `Retry-After`), how long a request may wait for the bounded store pool (past
//! that 503 with `Retry-After`), and the security headers every response carries.
//!
//! One door for plain HTTP and HTTPS: [`serve_connections`] takes any
//! [`axum::serve::Listener`] whose address is a socket address and, for HTTPS, a TLS acceptor.
//! A TLS connection takes its connection slot before its handshake, so the handshake counts
//! against the limit and has its own timeout; then every limit applies to it exactly as to a
//! plain one, and its verified client certificate ([`crate::tls::ClientCert`]) goes with each
//! of its requests.

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
    /// A TLS client must finish its handshake within this time (it holds a connection slot
    /// meanwhile).
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
            queue_timeout: Duration::from_secs(10),
            retry_after_s: 5,
            handshake_timeout: Duration::from_secs(10),
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

/// How many connections past the limit may be answered 503 at once (each for a short while);
/// past that, a connection is closed without an answer.
const MAX_BUSY_ANSWERS: usize = 64;
/// How long answering 503 to a connection past the limit may take (the TLS handshake included).
const BUSY_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long open connections may take to finish their requests once the server stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `stop` completes: HTTP/1.1, over TLS when `tls` is given
/// (with HSTS on every response and the verified client certificate in each request's
/// extensions), with the header-read and body-idle timeouts, the TLS handshake timeout, at most
/// `limits.max_connections` connections at once (a TLS handshake holds its place), and the
/// client's address in `ConnectInfo`. On `stop`, connections finish their current request
/// (bounded by 30 s) before it returns.
pub async fn serve_connections<L>(
    mut listener: L,
    app: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let busy = Arc::new(Semaphore::new(MAX_BUSY_ANSWERS));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        let (io, addr) = tokio::select! {
            c = listener.accept() => c,
            () = &mut stop => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "connection limit reached; answered 503");
            // Past the limit a connection gets a short answer, but only so many at once: a
            // flood of them is closed without one.
            if let Ok(answering) = busy.clone().try_acquire_owned() {
                let (tls, retry) = (tls.clone(), limits.retry_after_s);
                tokio::spawn(async move {
                    let _answering = answering;
                    let _ = tokio::time::timeout(BUSY_ANSWER_TIMEOUT, answer_busy(io, tls, retry)).await;
                });
            }
            continue;
        };
        let conn = Connection {
            app: app.clone(),
            addr,
            limits: limits.clone(),
            tls: tls.clone(),
            closing: closing_rx.clone(),
        };
        tokio::spawn(async move {
            let _slot = slot;
            conn.serve(io).await;
        });
    }
    let _ = closing_tx.send(true);
    // Every connection holds a slot: when all are back, every connection has ended.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all)).await;
    Ok(())
}

/// The 503 to a connection past the limit: over TLS after the handshake (a client could not
/// read it otherwise).
async fn answer_busy<I>(io: I, tls: Option<tokio_rustls::TlsAcceptor>, retry_after_s: u32)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let answer = busy_response(retry_after_s);
    match tls {
        None => {
            let mut io = io;
            let _ = io.write_all(&answer).await;
            let _ = io.shutdown().await;
        }
        Some(acceptor) => {
            if let Ok(mut stream) = acceptor.accept(io).await {
                let _ = stream.write_all(&answer).await;
                let _ = stream.shutdown().await;
            }
        }
    }
}

/// One accepted connection, holding its slot while it lives.
struct Connection {
    app: Router,
    addr: SocketAddr,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    closing: watch::Receiver<bool>,
}

impl Connection {
    /// The TLS handshake (bounded by the handshake timeout, given up when the server stops),
    /// then HTTP.
    async fn serve<I>(self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let addr = self.addr;
        let Some(acceptor) = self.tls.clone() else {
            self.http(io, false, None).await;
            return;
        };
        let handshake = tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(io));
        let mut closing = self.closing.clone();
        let stream = tokio::select! {
            r = handshake => r,
            () = async { let _ = closing.wait_for(|c| *c).await; } => return,
        };
        match stream {
            Ok(Ok(stream)) => {
                let client = crate::tls::client_cert(stream.get_ref().1);
                self.http(stream, true, client).await;
            }
            Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
        }
    }

    /// HTTP/1.1 on `io`: the header-read timeout, the body idle timeout, the client's address
    /// (and over TLS, `https`, HSTS and the client certificate, if any), graceful shutdown.
    async fn http<I>(self, io: I, https: bool, client: Option<crate::tls::ClientCert>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection { app, addr, limits, closing: mut closing_rx, .. } = self;
        let idle = limits.body_idle_timeout;
        let svc = app
            .map_request(move |req: Request<hyper::body::Incoming>| {
                // A body that pauses longer than `idle` between two pieces ends with an error (a
                // slow client cannot hold a connection and a store permit by trickling bytes).
                let mut req = req.map(|b| Body::new(tower_http::timeout::TimeoutBody::new(idle, b)));
                req.extensions_mut().insert(ConnectInfo(addr));
                if let Some(c) = &client {
                    req.extensions_mut().insert(c.clone());
                }
                req
            })
            .map_response(move |mut r: Response| {
                if https {
                    r.headers_mut()
                        .insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(crate::tls::HSTS));
                }
                r
            });
        let hyper_svc = TowerToHyperService::new(svc);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
        let conn = builder.serve_connection(TokioIo::new(io), hyper_svc).with_upgrades();
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%addr, error = %e, "connection ended with an error");
                }
            }
            () = async { let _ = closing_rx.wait_for(|c| *c).await.map(|_| ()); } => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
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
