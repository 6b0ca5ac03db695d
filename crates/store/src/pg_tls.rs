//! TLS to PostgreSQL, asked for by the connection URL the way libpq spells it:
//! `sslmode=verify-full` (the server's certificate chains to the root file and names the host),
//! `sslmode=verify-ca` (chains to the root file, any name) and `sslmode=require` (with a root
//! file: as `verify-ca`, as libpq does). The root file is `sslrootcert=FILE` in the URL, or
//! the `PGSSLROOTCERT` environment variable. Musubi never encrypts without verifying: `require`
//! without a root file is refused rather than silently trusting any server.
//! Other `sslmode` values (`disable`, `prefer`, `allow`) connect as before, without TLS.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::StoreError;

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Chain to the root and the host name (`verify-full`).
    Full,
    /// Chain to the root only (`verify-ca`, and `require` with a root file).
    Ca,
}

/// What the URL asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    /// How to verify.
    pub verify: Verify,
    /// The root certificates (PEM).
    pub root: PathBuf,
}

/// Percent-decoding of a URL query value (paths in `sslrootcert` may be encoded).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(h);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits the TLS options off a connection string (URL or `key=value` form): the string the
/// `postgres` crate is given (without `sslmode=verify-*`/`require` and `sslrootcert`, which
/// it does not know) and the TLS to use, if any. `env_root` is `PGSSLROOTCERT`.
pub fn split(url: &str, env_root: Option<PathBuf>) -> Result<(String, Option<PgTls>), StoreError> {
    let err = |m: String| StoreError::Backend { op: "postgres TLS settings", message: m };
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let (head, params, sep): (&str, Vec<&str>, char) = if is_url {
        match url.split_once('?') {
            Some((h, q)) => (h, q.split('&').filter(|p| !p.is_empty()).collect(), '&'),
            None => (url, Vec::new(), '&'),
        }
    } else {
        ("", url.split_whitespace().collect(), ' ')
    };
    let mut mode = None;
    let mut root = None;
    let mut kept = Vec::new();
    for p in params {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let v = if is_url { percent_decode(v) } else { v.trim_matches('\'').to_owned() };
        match k {
            "sslmode" if matches!(v.as_str(), "require" | "verify-ca" | "verify-full") => mode = Some(v),
            "sslrootcert" => root = Some(PathBuf::from(v)),
            _ => kept.push(p),
        }
    }
    let rest = kept.join(&sep.to_string());
    let stripped = match (is_url, rest.is_empty()) {
        (true, true) => head.to_owned(),
        (true, false) => format!("{head}?{rest}"),
        (false, _) => rest,
    };
    let Some(mode) = mode else {
        return Ok((url.to_owned(), None));
    };
    let root = root.or(env_root).ok_or_else(|| {
        err(format!(
            "sslmode={mode} needs the root certificate to verify the server with: add sslrootcert=FILE to the URL or set PGSSLROOTCERT"
        ))
    })?;
    let verify = if mode == "verify-full" { Verify::Full } else { Verify::Ca };
    Ok((stripped, Some(PgTls { verify, root })))
}

#[allow(deprecated)] // ring: see musubi-server's tls module.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `verify-ca`: the chain is checked, the name is not.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The connector for `postgres::Config::connect`.
pub fn connector(tls: &PgTls) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let err = |m: String| StoreError::Backend { op: "postgres TLS settings", message: m };
    let pem =
        std::fs::read(&tls.root).map_err(|e| err(format!("cannot read sslrootcert {}: {e}", tls.root.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        let c = c.map_err(|e| err(format!("sslrootcert {}: not PEM: {e}", tls.root.display())))?;
        roots.add(c).map_err(|e| err(format!("sslrootcert {}: {e}", tls.root.display())))?;
    }
    if roots.is_empty() {
        return Err(err(format!("sslrootcert {} holds no certificate", tls.root.display())));
    }
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?;
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| err(format!("sslrootcert {}: {e}", tls.root.display())))?;
    let config = match tls.verify {
        Verify::Full => builder.with_webpki_verifier(webpki).with_no_client_auth(),
        Verify::Ca => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(webpki))).with_no_client_auth()
        }
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_options_are_split_off() {
        let (u, t) = split("postgres://m@db.example/musubi", None).unwrap();
        assert_eq!((u.as_str(), t), ("postgres://m@db.example/musubi", None));
        let (u, t) = split("postgres://m@db/x?sslmode=disable&connect_timeout=5", None).unwrap();
        assert_eq!((u.as_str(), t), ("postgres://m@db/x?sslmode=disable&connect_timeout=5", None));
        let (u, t) =
            split("postgres://m@db/x?connect_timeout=5&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem", None).unwrap();
        assert_eq!(u, "postgres://m@db/x?connect_timeout=5");
        assert_eq!(t, Some(PgTls { verify: Verify::Full, root: "/etc/ca.pem".into() }));
        let (u, t) = split("postgresql://m@db/x?sslmode=verify-ca", Some("/env/ca.pem".into())).unwrap();
        assert_eq!(u, "postgresql://m@db/x");
        assert_eq!(t, Some(PgTls { verify: Verify::Ca, root: "/env/ca.pem".into() }));
        let (u, t) = split("host=db user=m sslmode=require sslrootcert=/r.pem", None).unwrap();
        assert_eq!(u, "host=db user=m");
        assert_eq!(t, Some(PgTls { verify: Verify::Ca, root: "/r.pem".into() }));
        let e = split("postgres://m@db/x?sslmode=require", None).unwrap_err();
        assert!(e.to_string().contains("sslrootcert"), "{e}");
    }
}
