//! HTTPS and mutual TLS (rustls, ring provider). `musubi serve --tls-cert --tls-key` serves
//! HTTPS with HSTS; with `--client-ca` a facility system's client certificate is verified
//! against that CA during the handshake, and the facility it names is handed to the handlers
//! ([`ClientCert`] in the request extensions), where a system token is refused unless it
//! belongs to that facility (`edge::Authed`). HTTPS connections go through the same door as
//! plain ones ([`crate::limits::serve_connections`]): connection limit, handshake, header and
//! body timeouts alike.
//!
//! **How a certificate names its facility**: the subject's `serialNumber` attribute
//! (OID 2.5.4.5) holds the facility's 10-digit 医療機関コード; a certificate without it may put
//! the code as its whole subject CN instead. Anything else names no facility (such a
//! certificate can still open the TLS connection, but no system token is accepted with it).
//!
//! Clinicians' browsers are not asked for a certificate (client certificates are optional at
//! the TLS layer) unless the operator requires one (`--require-client-cert`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use der::Decode;
use der::asn1::ObjectIdentifier;
use musubi_domain::FacilityCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::DirectoryString;

use crate::AppState;

/// The HSTS header sent on every HTTPS response: browsers keep to HTTPS for two years.
pub const HSTS: &str = "max-age=63072000";

/// X.520 serialNumber.
const SERIAL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.5");
/// X.520 commonName.
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// Why the TLS settings could not be loaded.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// What the operator configured.
#[derive(Debug, Clone)]
pub struct TlsFiles<'a> {
    /// The server's certificate chain (PEM, leaf first).
    pub cert: &'a Path,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: &'a Path,
    /// The CA (PEM, one or more certificates) that signs the facilities' client certificates.
    pub client_ca: Option<&'a Path>,
    /// Refuse the handshake without a client certificate (only with `client_ca`).
    pub require_client_cert: bool,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("cannot read the {what} {}: {e}", path.display())))
}

/// PEM certificates of a file (at least one).
pub fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("the {what} {} is not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("the {what} {} holds no CERTIFICATE block", path.display())));
    }
    Ok(certs)
}

// ring rather than aws-lc-rs: it builds without cmake and quickly. rustls marks it deprecated
// only because it lacks the post-quantum key exchange.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls server configuration for these files (HTTP/1.1 over TLS 1.2 or 1.3).
pub fn server_config(files: &TlsFiles<'_>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = load_certs(files.cert, "server certificate")?;
    let key_pem = read(files.key, "server key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError(format!("the server key {} is not a PEM private key: {e}", files.key.display())))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS versions: {e}")))?;
    let builder = match files.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(ca, "client CA")? {
                roots.add(c).map_err(|e| TlsError(format!("the client CA {}: {e}", ca.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if files.require_client_cert { verifier } else { verifier.allow_unauthenticated() };
            let verifier = verifier.build().map_err(|e| TlsError(format!("the client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError(format!("the server certificate and key do not go together: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client certificate a connection presented (already verified against the client CA):
/// the facility it names, if it names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The facility of the subject (see the module docs), or why it names none.
    pub facility: Result<FacilityCode, String>,
}

/// The facility a certificate (DER) names: subject serialNumber, else a subject CN that is a
/// facility code.
pub fn facility_of_cert(der: &[u8]) -> Result<FacilityCode, String> {
    let cert = Certificate::from_der(der).map_err(|e| format!("client certificate: not X.509 DER: {e}"))?;
    let subject = cert.tbs_certificate().subject();
    let attr = |oid| -> Result<Option<String>, String> {
        subject
            .by_oid::<DirectoryString>(oid)
            .map(|v| v.map(|d| d.value().trim().to_owned()))
            .map_err(|e| format!("client certificate subject: {e}"))
    };
    if let Some(serial) = attr(SERIAL_NUMBER)? {
        return serial
            .parse::<FacilityCode>()
            .map_err(|e| format!("client certificate subject serialNumber {serial:?}: {e}"));
    }
    match attr(COMMON_NAME)? {
        Some(cn) => cn.parse::<FacilityCode>().map_err(|e| format!("client certificate subject CN {cn:?}: {e}")),
        None => Err("client certificate subject: no serialNumber or CN with a 医療機関コード".into()),
    }
}

/// The client certificate a TLS connection presented (verified during the handshake), if any.
pub(crate) fn client_cert(conn: &rustls::ServerConnection) -> Option<ClientCert> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|leaf| ClientCert { facility: facility_of_cert(leaf.as_ref()) })
}

/// Serves `state` over HTTPS on `listener` until `stop` completes, then lets the open
/// connections finish their requests: the same door as plain HTTP ([`crate::serve_on`]), with
/// every limit of [`crate::limits`].
pub async fn serve_tls_until(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Arc<rustls::ServerConfig>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::serve_on(listener, state, Some(tls), stop).await
}

/// Whether an address to listen on is loopback (plain HTTP is only allowed there).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        assert!(is_loopback(&"127.0.0.1:8080".parse().unwrap()));
        assert!(is_loopback(&"[::1]:8080".parse().unwrap()));
        assert!(!is_loopback(&"0.0.0.0:8080".parse().unwrap()));
        assert!(!is_loopback(&"192.0.2.1:443".parse().unwrap()));
    }
}
