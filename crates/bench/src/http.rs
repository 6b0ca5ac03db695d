//! The load generator's HTTP client: keep-alive HTTP/1.1 connections in a pool, over plain TCP
//! or TLS (rustls + ring, optionally with a client certificate), the same code for both so the
//! plain/HTTPS comparison measures the transport and nothing else. (reqwest's rustls features
//! would make every plain reqwest client in the workspace's tests need a process-wide crypto
//! provider, so the bench speaks hyper directly.)

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// HTTPS (an `https://` base): the CA to trust and, for mutual TLS, the client certificate.
#[derive(clap::Args, Clone, Default)]
pub struct TlsClient {
    /// The CA (PEM) that signed the server's certificate.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The client certificate (PEM) to present.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl TlsClient {
    /// What the load runs over, for the report line.
    pub fn describe(&self) -> &'static str {
        match (&self.ca, &self.client_cert) {
            (None, _) => "plain HTTP",
            (Some(_), None) => "HTTPS",
            (Some(_), Some(_)) => "HTTPS + mutual TLS",
        }
    }

    fn config(&self, ca: &PathBuf) -> Result<Arc<rustls::ClientConfig>> {
        #[allow(deprecated)] // ring, as the server uses.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).with_context(|| format!("--ca {}", ca.display()))? {
            roots.add(c?)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut tls = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => tls.with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?,
                PrivateKeyDer::from_pem_file(key)?,
            )?,
            _ => tls.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(tls))
    }
}

/// A pool of keep-alive connections to one server.
pub struct Pool {
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    idle: Mutex<Vec<SendRequest<Empty<Bytes>>>>,
}

impl Pool {
    /// For a base URL `http(s)://host:port/…`.
    pub fn new(base: &str, tls: &TlsClient) -> Result<Pool> {
        let (scheme, rest) = base.split_once("://").ok_or_else(|| anyhow!("--base {base}: no scheme"))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let (host, port) = authority.rsplit_once(':').ok_or_else(|| anyhow!("--base {base}: give the port"))?;
        let port: u16 = port.parse().with_context(|| format!("--base {base}: port"))?;
        let tls = match (scheme, &tls.ca) {
            ("https", Some(ca)) => Some(tokio_rustls::TlsConnector::from(tls.config(ca)?)),
            ("https", None) => return Err(anyhow!("an https:// base needs --ca")),
            ("http", _) => None,
            _ => return Err(anyhow!("--base {base}: http or https")),
        };
        Ok(Pool { host: host.to_owned(), port, tls, idle: Mutex::new(Vec::new()) })
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(self.host.clone())?;
                let stream = tls.connect(name, tcp).await?;
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                Ok(send)
            }
            None => {
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                Ok(send)
            }
        }
    }

    /// GET `path` with a bearer token; the status, after reading the whole body.
    pub async fn get(&self, path: &str, token: &str) -> Result<u16> {
        let idle = self.idle.lock().map_err(|_| anyhow!("poisoned"))?.pop();
        let mut send = match idle {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        send.ready().await?;
        let req = hyper::Request::get(path)
            .header("host", format!("{}:{}", self.host, self.port))
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())?;
        let resp = send.send_request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        self.idle.lock().map_err(|_| anyhow!("poisoned"))?.push(send);
        Ok(status)
    }
}
