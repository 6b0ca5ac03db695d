//! Signature checks against a synthetic PKI built here in pure Rust: a root CA, an intermediate,
//! signers (valid, expired, from another root, not for signing), and CMS SignedData made by hand
//! (detached and enveloping, with and without signed attributes). One test cross-checks a
//! signature made by the `openssl` command.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{Any, OctetString, SetOfVec};
use der::{Decode, Encode};
use p256::ecdsa::{DerSignature, SigningKey};
use signature::Signer;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use super::*;

const YEAR: Duration = Duration::from_secs(365 * 86_400);

struct Profile {
    subject: Name,
    issuer: Name,
    ca: bool,
    usage: KeyUsage,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
        tbs: &x509_cert::TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let bc = BasicConstraints { ca: self.ca, path_len_constraint: None };
        let ku = self.usage;
        Ok(vec![bc.to_extension(tbs.subject(), &[])?, ku.to_extension(tbs.subject(), &[])?])
    }
}

/// A key pair and its certificate.
pub(crate) struct Party {
    pub key: SigningKey,
    pub cert: Certificate,
}

fn key(n: u8) -> SigningKey {
    let mut b = [n; 32];
    b[0] = 0x10; // well below the group order
    SigningKey::from_slice(&b).unwrap()
}

fn time(t: SystemTime) -> Time {
    Time::try_from(t).unwrap()
}

/// Issues a certificate for `subject` with `key`, signed by `issuer` (self-signed if None),
/// valid from `from` to `until`.
#[allow(clippy::too_many_arguments)]
fn issue(
    subject: &str,
    key: &SigningKey,
    issuer: Option<&Party>,
    ca: bool,
    usage: KeyUsage,
    from: SystemTime,
    until: SystemTime,
    serial: u8,
) -> Certificate {
    let subject = Name::from_str(subject).unwrap();
    let issuer_name = issuer.map_or(subject.clone(), |p| p.cert.tbs_certificate().subject().clone());
    let profile = Profile { subject, issuer: issuer_name, ca, usage };
    let spki = SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).unwrap();
    let validity = Validity::new(time(from), time(until));
    let builder = CertificateBuilder::new(profile, SerialNumber::from(u32::from(serial)), validity, spki).unwrap();
    let signer = issuer.map_or(key, |p| &p.key);
    builder.build::<_, DerSignature>(signer).unwrap()
}

/// A synthetic PKI.
pub(crate) struct Pki {
    pub root: Party,
    pub intermediate: Party,
    pub signer: Party,
    pub expired: Party,
    pub other_root: Party,
    pub stranger: Party,
    pub encipher_only: Party,
}

impl Pki {
    pub fn new() -> Pki {
        let now = SystemTime::now();
        let long_ago = now - 10 * YEAR;
        let later = now + 10 * YEAR;
        let ca_usage = KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign);
        let sign_usage = KeyUsage(KeyUsages::DigitalSignature | KeyUsages::NonRepudiation);
        let root_key = key(1);
        let root = Party {
            cert: issue("CN=Musubi Test HPKI Root,O=Musubi,C=JP", &root_key, None, true, ca_usage, long_ago, later, 1),
            key: root_key,
        };
        let ik = key(2);
        let intermediate = Party {
            cert: issue(
                "CN=Musubi Test HPKI Signing CA,O=Musubi,C=JP",
                &ik,
                Some(&root),
                true,
                ca_usage,
                long_ago,
                later,
                2,
            ),
            key: ik,
        };
        let sk = key(3);
        let signer = Party {
            cert: issue(
                "CN=結 太郎,O=結びクリニック,C=JP",
                &sk,
                Some(&intermediate),
                false,
                sign_usage,
                now - YEAR,
                later,
                3,
            ),
            key: sk,
        };
        let ek = key(4);
        let expired = Party {
            cert: issue(
                "CN=期限 切子,O=結びクリニック,C=JP",
                &ek,
                Some(&intermediate),
                false,
                sign_usage,
                now - 3 * YEAR,
                now - YEAR,
                4,
            ),
            key: ek,
        };
        let ok = key(5);
        let other_root = Party {
            cert: issue("CN=Other Root,O=Elsewhere,C=JP", &ok, None, true, ca_usage, long_ago, later, 5),
            key: ok,
        };
        let xk = key(6);
        let stranger = Party {
            cert: issue("CN=他所 者,O=Elsewhere,C=JP", &xk, Some(&other_root), false, sign_usage, now - YEAR, later, 6),
            key: xk,
        };
        let nk = key(7);
        let encipher_only = Party {
            cert: issue(
                "CN=暗号 専用,O=結びクリニック,C=JP",
                &nk,
                Some(&intermediate),
                false,
                KeyUsage(KeyUsages::KeyEncipherment.into()),
                now - YEAR,
                later,
                7,
            ),
            key: nk,
        };
        Pki { root, intermediate, signer, expired, other_root, stranger, encipher_only }
    }

    pub fn roots(&self) -> TrustRoots {
        let pem = der::EncodePem::to_pem(&self.root.cert, der::pem::LineEnding::LF).unwrap();
        TrustRoots::from_pem(pem.as_bytes()).unwrap()
    }
}

fn alg(oid: Oid) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned { oid, parameters: None }
}

fn attribute(oid: Oid, value: Any) -> Attribute {
    Attribute { oid, values: SetOfVec::try_from(vec![value]).unwrap() }
}

/// Options for [`sign`].
#[derive(Clone, Copy)]
pub(crate) struct How {
    pub detached: bool,
    pub signed_attrs: bool,
}

/// A CMS SignedData over `content` by `signer`, carrying `certs`.
pub(crate) fn sign(content: &[u8], signer: &Party, certs: &[&Certificate], how: How) -> Vec<u8> {
    let tbs = signer.cert.tbs_certificate();
    let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: tbs.issuer().clone(),
        serial_number: tbs.serial_number().clone(),
    });
    let (signed_attrs, sig) = if how.signed_attrs {
        let digest = sha2::Sha256::digest(content);
        let attrs: SetOfVec<Attribute> = SetOfVec::try_from(vec![
            attribute(ATTR_CONTENT_TYPE, Any::encode_from(&ID_DATA).unwrap()),
            attribute(ATTR_MESSAGE_DIGEST, Any::encode_from(&OctetString::new(digest.to_vec()).unwrap()).unwrap()),
            attribute(ATTR_SIGNING_TIME, Any::from_der(&time(SystemTime::now()).to_der().unwrap()).unwrap()),
        ])
        .unwrap();
        let sig: DerSignature = signer.key.sign(&attrs.to_der().unwrap());
        (Some(attrs), sig)
    } else {
        (None, signer.key.sign(content))
    };
    let si = SignerInfo {
        version: CmsVersion::V1,
        sid,
        digest_alg: alg(SHA256),
        signed_attrs,
        signature_algorithm: alg(ECDSA_SHA256),
        signature: OctetString::new(sig.as_bytes().to_vec()).unwrap(),
        unsigned_attrs: None,
    };
    let sd = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![alg(SHA256)]).unwrap(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: if how.detached {
                None
            } else {
                Some(Any::encode_from(&OctetString::new(content.to_vec()).unwrap()).unwrap())
            },
        },
        certificates: Some(
            CertificateSet::try_from(
                certs.iter().map(|c| CertificateChoices::Certificate((*c).clone())).collect::<Vec<_>>(),
            )
            .unwrap(),
        ),
        crls: None,
        signer_infos: SignerInfos::try_from(vec![si]).unwrap(),
    };
    ContentInfo { content_type: ID_SIGNED_DATA, content: Any::encode_from(&sd).unwrap() }.to_der().unwrap()
}

const DOC: &[u8] = r#"{"resourceType":"Bundle","type":"document","note":"診療情報提供書"}"#.as_bytes();
pub(crate) const DETACHED: How = How { detached: true, signed_attrs: true };

fn now() -> i64 {
    musubi_fhir::datetime::now_ms()
}

#[test]
fn a_good_detached_signature_is_valid_and_names_the_signer() {
    let pki = Pki::new();
    let sig = sign(DOC, &pki.signer, &[&pki.signer.cert, &pki.intermediate.cert], DETACHED);
    let v = verify(&sig, Some(DOC), &pki.roots(), now());
    assert_eq!(v.report.status, SignatureStatus::Valid, "{}", v.report.message);
    let signer = v.report.signer.unwrap();
    assert_eq!(signer.subject, "CN=結 太郎,O=結びクリニック,C=JP");
    assert_eq!(signer.issuer, "CN=Musubi Test HPKI Signing CA,O=Musubi,C=JP");
    assert_eq!(
        signer.chain,
        vec!["CN=Musubi Test HPKI Signing CA,O=Musubi,C=JP", "CN=Musubi Test HPKI Root,O=Musubi,C=JP"]
    );
    assert_eq!(signer.serial, "03");
    assert!(v.report.signing_time.is_some_and(|t| (t - now()).abs() < 120_000));
    assert!(v.enveloped.is_none());
}

#[test]
fn an_enveloping_signature_carries_the_document() {
    let pki = Pki::new();
    let sig = sign(
        DOC,
        &pki.signer,
        &[&pki.signer.cert, &pki.intermediate.cert],
        How { detached: false, signed_attrs: true },
    );
    let v = verify(&sig, None, &pki.roots(), now());
    assert_eq!(v.report.status, SignatureStatus::Valid, "{}", v.report.message);
    assert_eq!(v.enveloped.as_deref(), Some(DOC));
    // The same document sent beside it is fine; a different one is not.
    assert_eq!(verify(&sig, Some(DOC), &pki.roots(), now()).report.status, SignatureStatus::Valid);
    let other = verify(&sig, Some(b"{}"), &pki.roots(), now());
    assert_eq!(other.report.status, SignatureStatus::InvalidSignature);
    assert!(other.report.message.contains("一致しません"), "{}", other.report.message);
}

#[test]
fn without_signed_attributes_the_signature_covers_the_content() {
    let pki = Pki::new();
    let how = How { detached: true, signed_attrs: false };
    let sig = sign(DOC, &pki.signer, &[&pki.signer.cert, &pki.intermediate.cert], how);
    assert_eq!(verify(&sig, Some(DOC), &pki.roots(), now()).report.status, SignatureStatus::Valid);
    let mut tampered = DOC.to_vec();
    tampered[5] ^= 1;
    let v = verify(&sig, Some(&tampered), &pki.roots(), now());
    assert_eq!(v.report.status, SignatureStatus::InvalidSignature);
}

#[test]
fn tampered_content_is_invalid() {
    let pki = Pki::new();
    let sig = sign(DOC, &pki.signer, &[&pki.signer.cert, &pki.intermediate.cert], DETACHED);
    let tampered = String::from_utf8(DOC.to_vec()).unwrap().replace("診療情報提供書", "診療情報提供書（改）");
    let v = verify(&sig, Some(tampered.as_bytes()), &pki.roots(), now());
    assert_eq!(v.report.status, SignatureStatus::InvalidSignature);
    assert!(v.report.message.contains("改ざん"), "{}", v.report.message);
    // A flipped bit in the signature value itself.
    let mut broken = sig.clone();
    let n = broken.len();
    broken[n - 3] ^= 0x40;
    let v = verify(&broken, Some(DOC), &pki.roots(), now());
    assert_eq!(v.report.status, SignatureStatus::InvalidSignature, "{}", v.report.message);
}

#[test]
fn a_signer_from_another_root_is_untrusted() {
    let pki = Pki::new();
    let sig = sign(DOC, &pki.stranger, &[&pki.stranger.cert, &pki.other_root.cert], DETACHED);
    let v = verify(&sig, Some(DOC), &pki.roots(), now());
    assert_eq!(v.report.status, SignatureStatus::UntrustedChain);
    assert!(v.report.message.contains("信頼済みルート"), "{}", v.report.message);
    assert_eq!(v.report.signer.unwrap().subject, "CN=他所 者,O=Elsewhere,C=JP");
    // Trusting that root too makes it valid.
    let mut pem = der::EncodePem::to_pem(&pki.root.cert, der::pem::LineEnding::LF).unwrap();
    pem.push_str(&der::EncodePem::to_pem(&pki.other_root.cert, der::pem::LineEnding::LF).unwrap());
    let both = TrustRoots::from_pem(pem.as_bytes()).unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(verify(&sig, Some(DOC), &both, now()).report.status, SignatureStatus::Valid);
    // No roots at all: untrusted.
    assert_eq!(verify(&sig, Some(DOC), &TrustRoots::empty(), now()).report.status, SignatureStatus::UntrustedChain);
}

#[test]
fn a_missing_intermediate_breaks_the_chain() {
    let pki = Pki::new();
    let sig = sign(DOC, &pki.signer, &[&pki.signer.cert], DETACHED);
    assert_eq!(verify(&sig, Some(DOC), &pki.roots(), now()).report.status, SignatureStatus::UntrustedChain);
}

#[test]
fn an_end_entity_cannot_act_as_a_ca() {
    let pki = Pki::new();
    // A certificate "issued" by the signer (not a CA) for a key the signer controls.
    let fake = Party {
        cert: issue(
            "CN=偽 署名者,O=x,C=JP",
            &key(9),
            Some(&pki.signer),
            false,
            KeyUsage(KeyUsages::DigitalSignature.into()),
            SystemTime::now() - YEAR,
            SystemTime::now() + YEAR,
            9,
        ),
        key: key(9),
    };
    let sig = sign(DOC, &fake, &[&fake.cert, &pki.signer.cert, &pki.intermediate.cert], DETACHED);
    let v = verify(&sig, Some(DOC), &pki.roots(), now());
    assert_eq!(v.report.status, SignatureStatus::UntrustedChain);
    assert!(v.report.message.contains("CA"), "{}", v.report.message);
}

#[test]
fn an_expired_certificate_is_reported() {
    let pki = Pki::new();
    let sig = sign(DOC, &pki.expired, &[&pki.expired.cert, &pki.intermediate.cert], DETACHED);
    let v = verify(&sig, Some(DOC), &pki.roots(), now());
    assert_eq!(v.report.status, SignatureStatus::Expired);
    assert!(v.report.message.contains("有効期限"), "{}", v.report.message);
    // Checked at a time inside its validity it is valid (validity is judged at receipt time).
    let two_years_ago = now() - 2 * 365 * 86_400_000;
    assert_eq!(verify(&sig, Some(DOC), &pki.roots(), two_years_ago).report.status, SignatureStatus::Valid);
}

#[test]
fn a_key_not_for_signing_is_untrusted() {
    let pki = Pki::new();
    let sig = sign(DOC, &pki.encipher_only, &[&pki.encipher_only.cert, &pki.intermediate.cert], DETACHED);
    let v = verify(&sig, Some(DOC), &pki.roots(), now());
    assert_eq!(v.report.status, SignatureStatus::UntrustedChain);
    assert!(v.report.message.contains("keyUsage"));
}

#[test]
fn garbage_is_invalid_never_a_panic() {
    let pki = Pki::new();
    let roots = pki.roots();
    for input in [&b""[..], b"not cms", b"\x30\x80\x06\x09", b"-----BEGIN PKCS7-----\n!!\n-----END PKCS7-----\n"] {
        let v = verify(input, Some(DOC), &roots, now());
        assert_eq!(v.report.status, SignatureStatus::InvalidSignature);
    }
    // Detached signature without the document.
    let sig = sign(DOC, &pki.signer, &[&pki.signer.cert, &pki.intermediate.cert], DETACHED);
    let v = verify(&sig, None, &roots, now());
    assert_eq!(v.report.status, SignatureStatus::InvalidSignature);
    assert!(v.report.message.contains("文書本体"), "{}", v.report.message);
    // Every truncation of a good signature.
    for n in (0..sig.len()).step_by(7) {
        let _ = verify(&sig[..n], Some(DOC), &roots, now());
    }
}

#[test]
fn pem_signatures_and_root_files_load() {
    let pki = Pki::new();
    let sig = sign(DOC, &pki.signer, &[&pki.signer.cert, &pki.intermediate.cert], DETACHED);
    let pem = pem_rfc7468::encode_string("PKCS7", pem_rfc7468::LineEnding::LF, &sig).unwrap();
    assert_eq!(verify(pem.as_bytes(), Some(DOC), &pki.roots(), now()).report.status, SignatureStatus::Valid);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("root.pem"),
        der::EncodePem::to_pem(&pki.root.cert, der::pem::LineEnding::LF).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("README.txt"), "not a certificate").unwrap();
    let roots = TrustRoots::load(&[dir.path().to_owned()]).unwrap();
    assert_eq!(roots.subjects(), vec!["CN=Musubi Test HPKI Root,O=Musubi,C=JP"]);
    std::fs::write(dir.path().join("broken.crt"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .unwrap();
    let err = TrustRoots::load(&[dir.path().to_owned()]).unwrap_err();
    assert!(err.to_string().contains("broken.crt"), "{err}");
}

/// OpenSSL's `cms -sign` (RSA, signed attributes, detached and enveloping) verifies here too:
/// the hand-written verifier agrees with the reference implementation.
#[test]
fn signatures_made_by_openssl_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("the openssl command is needed for this test (Debian package openssl)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(d.join("doc.json"), DOC).unwrap();
    std::fs::write(
        d.join("ca.cnf"),
        "[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n\
         [v3_ee]\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,nonRepudiation\n",
    )
    .unwrap();
    #[rustfmt::skip]
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
        "-subj", "/C=JP/O=Musubi/CN=OpenSSL Test Root", "-config", "ca.cnf", "-extensions", "v3_ca"]);
    #[rustfmt::skip]
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "ee.key", "-out", "ee.csr", "-subj", "/C=JP/O=Musubi/CN=Signer",
        "-config", "ca.cnf"]);
    run(&[
        "x509",
        "-req",
        "-in",
        "ee.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "ee.pem",
        "-days",
        "30",
        "-extfile",
        "ca.cnf",
        "-extensions",
        "v3_ee",
    ]);
    run(&[
        "cms",
        "-sign",
        "-binary",
        "-in",
        "doc.json",
        "-signer",
        "ee.pem",
        "-inkey",
        "ee.key",
        "-outform",
        "DER",
        "-out",
        "detached.p7s",
        "-md",
        "sha256",
    ]);
    run(&[
        "cms",
        "-sign",
        "-binary",
        "-nodetach",
        "-in",
        "doc.json",
        "-signer",
        "ee.pem",
        "-inkey",
        "ee.key",
        "-outform",
        "PEM",
        "-out",
        "enveloping.pem",
        "-md",
        "sha384",
    ]);
    let roots = TrustRoots::load(&[d.join("ca.pem")]).unwrap();
    let detached = std::fs::read(d.join("detached.p7s")).unwrap();
    let v = verify(&detached, Some(DOC), &roots, now());
    assert_eq!(v.report.status, SignatureStatus::Valid, "{}", v.report.message);
    assert_eq!(v.report.signer.unwrap().subject, "CN=Signer,O=Musubi,C=JP");
    let v = verify(&detached, Some(b"{\"x\":1}"), &roots, now());
    assert_eq!(v.report.status, SignatureStatus::InvalidSignature);
    let enveloping = std::fs::read(d.join("enveloping.pem")).unwrap();
    let v = verify(&enveloping, None, &roots, now());
    assert_eq!(v.report.status, SignatureStatus::Valid, "{}", v.report.message);
    assert_eq!(v.enveloped.as_deref(), Some(DOC));
    assert_eq!(
        verify(&detached, Some(DOC), &TrustRoots::empty(), now()).report.status,
        SignatureStatus::UntrustedChain
    );
}
