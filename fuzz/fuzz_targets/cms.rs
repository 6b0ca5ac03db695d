//! Fuzzes CMS signature verification (`musubi_service::signature::verify`): CMS / PKCS #7 and
//! X.509 parsing, the caps on certificates and signers, the signed attributes, the signature
//! algorithms, path validation by webpki with a CRL, hcRole reading. A detached document and
//! none (enveloping or refused), with a small fixed trust root: the seeds' own (fuzz/seeds/x509,
//! made by the service's `write_fuzz_seeds` test), so seeds reach every step. Never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use musubi_service::signature::{Crls, TrustRoots, verify};

/// When the seeds were written: their certificates are valid then.
const AT: i64 = 1_796_691_446_000;
/// The document the detached seeds sign.
const DOC: &[u8] = r#"{"resourceType":"Bundle","type":"document","note":"診療情報提供書"}"#.as_bytes();
const ROOT: &[u8] = include_bytes!("../seeds/x509/root.pem");
const CRL: &[u8] = include_bytes!("../seeds/x509/ca.crl");

fn roots() -> &'static (TrustRoots, TrustRoots) {
    static ROOTS: OnceLock<(TrustRoots, TrustRoots)> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let plain = TrustRoots::from_pem(ROOT).expect("the seed root loads");
        let with_crl = TrustRoots::from_pem(ROOT)
            .expect("the seed root loads")
            .with_crls(Crls::parse(CRL).expect("the seed CRL loads"));
        (plain, with_crl)
    })
}

fuzz_target!(|data: &[u8]| {
    let (plain, with_crl) = roots();
    let _ = verify(data, Some(DOC), plain, AT);
    let _ = verify(data, Some(DOC), with_crl, AT);
    let _ = verify(data, None, with_crl, AT);
});
