//! Fuzzes what reads certificates and CRLs from files and signatures: the trust-root loader
//! (`TrustRoots::from_pem`), the CRL loader (`Crls::parse`, PEM or DER), the DER certificate
//! view with its hcRole (subjectDirectoryAttributes) parser, and the PEM unwrapping of
//! signatures. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_service::signature::{Crls, TrustRoots, certificate_view, signature_der};

fuzz_target!(|data: &[u8]| {
    if let Ok(roots) = TrustRoots::from_pem(data) {
        let _ = roots.subjects();
    }
    if let Ok(crls) = Crls::parse(data) {
        let _ = TrustRoots::empty().with_crls(crls).crl_issuers();
    }
    if let Some(view) = certificate_view(data) {
        let _ = view.hc_roles.iter().map(|r| r.display().len()).sum::<usize>();
    }
    let _ = signature_der(data);
});
