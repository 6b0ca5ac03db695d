//! Signature checks against synthetic PKIs made here with rcgen (certificates with any extension,
//! CRLs): a root CA, an intermediate, signers (valid, expired, from another root, not for
//! signing, revoked, with hcRole), paths that break `pathLenConstraint` or pass through a
//! certificate that is not a CA, and CMS SignedData made by hand (detached and enveloping, with
//! and without signed attributes, several signers). Two tests cross-check signatures made by the
//! `openssl` command.

use std::time::SystemTime;

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{Any, OctetString, SetOfVec};
use der::{Decode, Encode};
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
};
use signature::Signer;
use spki::AlgorithmIdentifierOwned;
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::time::Time;

use super::*;

const YEAR: time::Duration = time::Duration::days(365);

/// A key pair and its certificate.
pub(crate) struct Party {
    /// The key, for signing CMS.
    pub key: SigningKey,
    /// The certificate.
    pub cert: Certificate,
    params: CertificateParams,
    pair: KeyPair,
}

impl Party {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.pair)
    }

    fn der(&self) -> Vec<u8> {
        self.cert.to_der().unwrap()
    }

    fn pem(&self) -> String {
        der::EncodePem::to_pem(&self.cert, der::pem::LineEnding::LF).unwrap()
    }
}

/// What a certificate is for.
#[derive(Clone)]
pub(crate) enum Kind {
    /// A CA (with its pathLenConstraint, if any).
    Ca(Option<u8>),
    /// A certificate that says it is not a CA (basicConstraints cA FALSE).
    NotCa,
    /// A document signer: no basicConstraints, keyUsage digitalSignature + nonRepudiation.
    Signer,
}

/// Certificate parameters: subject `CN=cn,O=o,C=JP`, `serial`, valid `from`..`until`.
pub(crate) fn params(
    cn: &str,
    o: &str,
    serial: u64,
    kind: Kind,
    from: OffsetDateTime,
    until: OffsetDateTime,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CountryName, "JP");
    p.distinguished_name.push(DnType::OrganizationName, o);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(serial.into());
    p.not_before = from;
    p.not_after = until;
    match kind {
        Kind::Ca(len) => {
            p.is_ca = IsCa::Ca(len.map_or(BasicConstraints::Unconstrained, BasicConstraints::Constrained));
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        }
        Kind::NotCa => {
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages =
                vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        }
        Kind::Signer => {
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::ContentCommitment];
        }
    }
    p
}

/// A party certified by `issuer` (self-signed when None).
pub(crate) fn party(params: CertificateParams, issuer: Option<&Party>) -> Party {
    let pair = KeyPair::generate().unwrap();
    let cert = match issuer {
        Some(i) => params.signed_by(&pair, &i.issuer()).unwrap(),
        None => params.self_signed(&pair).unwrap(),
    };
    Party {
        key: SigningKey::from_pkcs8_der(&pair.serialize_der()).unwrap(),
        cert: Certificate::from_der(cert.der()).unwrap(),
        params,
        pair,
    }
}

/// A CRL of `issuer` listing `revoked` (with their reasons), valid from yesterday for 30 days.
pub(crate) fn crl(issuer: &Party, revoked: &[(&Party, RevocationReason)]) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - time::Duration::days(1),
        next_update: now + time::Duration::days(30),
        crl_number: 1u64.into(),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|(p, reason)| RevokedCertParams {
                serial_number: p.params.serial_number.clone().unwrap(),
                revocation_time: now - time::Duration::hours(1),
                reason_code: Some(*reason),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer.issuer())
    .unwrap()
    .der()
    .to_vec()
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
        let now = OffsetDateTime::now_utc();
        let (long_ago, later) = (now - 10 * YEAR, now + 10 * YEAR);
        let root = party(params("Musubi Test HPKI Root", "Musubi", 1, Kind::Ca(None), long_ago, later), None);
        let intermediate =
            party(params("Musubi Test HPKI Signing CA", "Musubi", 2, Kind::Ca(Some(0)), long_ago, later), Some(&root));
        let signer =
            party(params("結 太郎", "結びクリニック", 3, Kind::Signer, now - YEAR, later), Some(&intermediate));
        let expired = party(
            params("期限 切子", "結びクリニック", 4, Kind::Signer, now - 3 * YEAR, now - YEAR),
            Some(&intermediate),
        );
        let other_root = party(params("Other Root", "Elsewhere", 5, Kind::Ca(None), long_ago, later), None);
        let stranger = party(params("他所 者", "Elsewhere", 6, Kind::Signer, now - YEAR, later), Some(&other_root));
        let mut p = params("暗号 専用", "結びクリニック", 7, Kind::Signer, now - YEAR, later);
        p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
        let encipher_only = party(p, Some(&intermediate));
        Pki { root, intermediate, signer, expired, other_root, stranger, encipher_only }
    }

    pub fn roots(&self) -> TrustRoots {
        TrustRoots::from_pem(self.root.pem().as_bytes()).unwrap()
    }

    /// The roots with CRLs (DER).
    pub fn roots_with(&self, crls: &[Vec<u8>]) -> TrustRoots {
        let mut all = Crls::empty();
        for c in crls {
            all.lists.extend(Crls::parse(c).unwrap().lists);
        }
        self.roots().with_crls(all)
    }

    /// A signer under the intermediate with `params` changed by `edit`.
    fn signer_with(&self, serial: u64, edit: impl FnOnce(&mut CertificateParams)) -> Party {
        let now = OffsetDateTime::now_utc();
        let mut p = params("結 花子", "結びクリニック", serial, Kind::Signer, now - YEAR, now + YEAR);
        edit(&mut p);
        party(p, Some(&self.intermediate))
    }
}

fn alg(oid: Oid) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned { oid, parameters: None }
}

fn attribute(oid: Oid, value: Any) -> Attribute {
    Attribute { oid, values: SetOfVec::try_from(vec![value]).unwrap() }
}

fn x509_time(t: SystemTime) -> Time {
    Time::try_from(t).unwrap()
}

/// Options for [`sign`].
#[derive(Clone, Copy)]
pub(crate) struct How {
    pub detached: bool,
    pub signed_attrs: bool,
}

fn signer_info(content: &[u8], signer: &Party, how: How) -> SignerInfo {
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
            attribute(ATTR_SIGNING_TIME, Any::from_der(&x509_time(SystemTime::now()).to_der().unwrap()).unwrap()),
        ])
        .unwrap();
        let sig: DerSignature = signer.key.sign(&attrs.to_der().unwrap());
        (Some(attrs), sig)
    } else {
        (None, signer.key.sign(content))
    };
    SignerInfo {
        version: CmsVersion::V1,
        sid,
        digest_alg: alg(SHA256),
        signed_attrs,
        signature_algorithm: alg(ECDSA_SHA256),
        signature: OctetString::new(sig.as_bytes().to_vec()).unwrap(),
        unsigned_attrs: None,
    }
}

/// A CMS SignedData over `content` by every one of `signers`, carrying `certs`.
pub(crate) fn sign_by(content: &[u8], signers: &[&Party], certs: &[&Certificate], how: How) -> Vec<u8> {
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
        signer_infos: SignerInfos::try_from(signers.iter().map(|s| signer_info(content, s, how)).collect::<Vec<_>>())
            .unwrap(),
    };
    ContentInfo { content_type: ID_SIGNED_DATA, content: Any::encode_from(&sd).unwrap() }.to_der().unwrap()
}

/// A CMS SignedData over `content` by `signer`, carrying `certs`.
pub(crate) fn sign(content: &[u8], signer: &Party, certs: &[&Certificate], how: How) -> Vec<u8> {
    sign_by(content, &[signer], certs, how)
}

const DOC: &[u8] = r#"{"resourceType":"Bundle","type":"document","note":"診療情報提供書"}"#.as_bytes();
pub(crate) const DETACHED: How = How { detached: true, signed_attrs: true };

fn now() -> i64 {
    musubi_fhir::datetime::now_ms()
}

/// A DER TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(u8::try_from(n).unwrap());
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap());
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The subjectDirectoryAttributes extension with one hcRole attribute holding `roles`
/// (coding scheme, value), as the HPKI certificate policy profiles it.
pub(crate) fn hc_role_extension(roles: &[(Oid, &str)]) -> CustomExtension {
    let actors: Vec<u8> = roles
        .iter()
        .flat_map(|(scheme, value)| {
            let coded =
                tlv(0x31, &[tlv(0xa0, &scheme.to_der().unwrap()), tlv(0xa2, &tlv(0x0c, value.as_bytes()))].concat());
            tlv(0x30, &tlv(0xa0, &coded))
        })
        .collect();
    let attribute = tlv(0x30, &[HC_ROLE.to_der().unwrap(), tlv(0x31, &tlv(0x31, &actors))].concat());
    CustomExtension::from_oid_content(&[2, 5, 29, 9], tlv(0x30, &attribute))
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
    let pem = pki.root.pem() + &pki.other_root.pem();
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
    let now_t = OffsetDateTime::now_utc();
    let fake = party(params("偽 署名者", "x", 9, Kind::Signer, now_t - YEAR, now_t + YEAR), Some(&pki.signer));
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
    std::fs::write(dir.path().join("root.pem"), pki.root.pem()).unwrap();
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

#[test]
fn without_a_crl_the_signature_is_valid_and_its_revocation_unknown() {
    let pki = Pki::new();
    let sig = sign(DOC, &pki.signer, &[&pki.signer.cert, &pki.intermediate.cert], DETACHED);
    let v = verify(&sig, Some(DOC), &pki.roots(), now()).report;
    assert_eq!(v.status, SignatureStatus::Valid, "{}", v.message);
    assert_eq!(v.revocation, Some(Revocation::Unknown));
    assert_eq!(Revocation::Unknown.label_ja(), "失効確認なし");
    assert!(v.message.contains("失効は確認していません"), "{}", v.message);
    assert_eq!(v.signers.len(), 1);
    assert_eq!(v.signers[0].revocation, Some(Revocation::Unknown));
}

#[test]
fn a_signer_listed_in_its_issuers_crl_is_revoked() {
    let pki = Pki::new();
    let sig = sign(DOC, &pki.signer, &[&pki.signer.cert, &pki.intermediate.cert], DETACHED);
    let listed = crl(&pki.intermediate, &[(&pki.signer, RevocationReason::KeyCompromise)]);
    let v = verify(&sig, Some(DOC), &pki.roots_with(&[listed]), now()).report;
    assert_eq!(v.status, SignatureStatus::Revoked, "{}", v.message);
    assert_eq!(v.status.label_ja(), "失効");
    assert_eq!(v.revocation, Some(Revocation::Revoked));
    assert!(v.message.contains("署名者の証明書 CN=結 太郎"), "{}", v.message);
    assert!(v.message.contains("シリアル番号 03") && v.message.contains("鍵の危殆化"), "{}", v.message);
    assert_eq!(v.signer.unwrap().subject, "CN=結 太郎,O=結びクリニック,C=JP");
    // The same signature without that CRL is valid: the CRL decided.
    assert_eq!(verify(&sig, Some(DOC), &pki.roots(), now()).report.status, SignatureStatus::Valid);
}

#[test]
fn a_crl_that_does_not_list_the_signer_leaves_it_valid() {
    let pki = Pki::new();
    let sig = sign(DOC, &pki.signer, &[&pki.signer.cert, &pki.intermediate.cert], DETACHED);
    let others = crl(&pki.intermediate, &[(&pki.expired, RevocationReason::Superseded)]);
    // Only the signing CA's CRL: the intermediate's own status (the root's CRL) is unknown.
    let v = verify(&sig, Some(DOC), &pki.roots_with(std::slice::from_ref(&others)), now()).report;
    assert_eq!(v.status, SignatureStatus::Valid, "{}", v.message);
    assert_eq!(v.revocation, Some(Revocation::Unknown));
    // Both CRLs: every certificate of the path was checked.
    let root_crl = crl(&pki.root, &[]);
    let v = verify(&sig, Some(DOC), &pki.roots_with(&[others, root_crl]), now()).report;
    assert_eq!(v.status, SignatureStatus::Valid, "{}", v.message);
    assert_eq!(v.revocation, Some(Revocation::NotRevoked));
    assert!(v.message.contains("失効していないことを確認しました"), "{}", v.message);
}

#[test]
fn a_revoked_intermediate_revokes_its_signers() {
    let pki = Pki::new();
    let sig = sign(DOC, &pki.signer, &[&pki.signer.cert, &pki.intermediate.cert], DETACHED);
    let root_crl = crl(&pki.root, &[(&pki.intermediate, RevocationReason::CaCompromise)]);
    let v = verify(&sig, Some(DOC), &pki.roots_with(&[root_crl]), now()).report;
    assert_eq!(v.status, SignatureStatus::Revoked, "{}", v.message);
    assert!(v.message.contains("証明書チェーン上の証明書 CN=Musubi Test HPKI Signing CA"), "{}", v.message);
}

#[test]
fn a_crl_that_does_not_verify_makes_the_chain_untrusted() {
    let pki = Pki::new();
    let sig = sign(DOC, &pki.signer, &[&pki.signer.cert, &pki.intermediate.cert], DETACHED);
    // Same issuer name as the signing CA, another key: the list cannot be trusted.
    let now_t = OffsetDateTime::now_utc();
    let impostor =
        party(params("Musubi Test HPKI Signing CA", "Musubi", 2, Kind::Ca(None), now_t - YEAR, now_t + YEAR), None);
    let forged = crl(&impostor, &[]);
    let v = verify(&sig, Some(DOC), &pki.roots_with(&[forged]), now()).report;
    assert_eq!(v.status, SignatureStatus::UntrustedChain, "{}", v.message);
    assert!(v.message.contains("失効リスト（CRL）を検証できない"), "{}", v.message);
}

#[test]
fn an_intermediate_beyond_the_path_length_is_untrusted() {
    let pki = Pki::new();
    let now_t = OffsetDateTime::now_utc();
    let (from, until) = (now_t - YEAR, now_t + YEAR);
    // root -> A (pathLen 0) -> B (CA) -> signer: B is one CA too many below A.
    let a = party(params("Regional CA", "Musubi", 20, Kind::Ca(Some(0)), from, until), Some(&pki.root));
    let b = party(params("Clinic CA", "Musubi", 21, Kind::Ca(None), from, until), Some(&a));
    let signer = party(params("長 道夫", "結びクリニック", 22, Kind::Signer, from, until), Some(&b));
    let sig = sign(DOC, &signer, &[&signer.cert, &b.cert, &a.cert], DETACHED);
    let v = verify(&sig, Some(DOC), &pki.roots(), now()).report;
    assert_eq!(v.status, SignatureStatus::UntrustedChain, "{}", v.message);
    assert!(v.message.contains("pathLenConstraint"), "{}", v.message);
    // With pathLen 1 the same shape is fine.
    let a1 = party(params("Regional CA", "Musubi", 23, Kind::Ca(Some(1)), from, until), Some(&pki.root));
    let b1 = party(params("Clinic CA", "Musubi", 24, Kind::Ca(None), from, until), Some(&a1));
    let signer1 = party(params("長 道夫", "結びクリニック", 25, Kind::Signer, from, until), Some(&b1));
    let sig = sign(DOC, &signer1, &[&signer1.cert, &b1.cert, &a1.cert], DETACHED);
    let v = verify(&sig, Some(DOC), &pki.roots(), now()).report;
    assert_eq!(v.status, SignatureStatus::Valid, "{}", v.message);
    assert_eq!(
        v.signer.unwrap().chain,
        vec!["CN=Clinic CA,O=Musubi,C=JP", "CN=Regional CA,O=Musubi,C=JP", "CN=Musubi Test HPKI Root,O=Musubi,C=JP"]
    );
}

#[test]
fn an_intermediate_that_is_not_a_ca_is_untrusted() {
    let pki = Pki::new();
    let now_t = OffsetDateTime::now_utc();
    let (from, until) = (now_t - YEAR, now_t + YEAR);
    // It says cA FALSE, whatever its keyUsage claims.
    let not_ca = party(params("Not A CA", "Musubi", 30, Kind::NotCa, from, until), Some(&pki.root));
    let signer = party(params("下 請子", "結びクリニック", 31, Kind::Signer, from, until), Some(&not_ca));
    let sig = sign(DOC, &signer, &[&signer.cert, &not_ca.cert], DETACHED);
    let v = verify(&sig, Some(DOC), &pki.roots(), now()).report;
    assert_eq!(v.status, SignatureStatus::UntrustedChain, "{}", v.message);
    assert!(v.message.contains("認証局（CA）の証明書ではありません"), "{}", v.message);
}

#[test]
fn extended_key_usage_must_allow_document_signing() {
    let pki = Pki::new();
    let tls = pki.signer_with(40, |p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]);
    let sig = sign(DOC, &tls, &[&tls.cert, &pki.intermediate.cert], DETACHED);
    let v = verify(&sig, Some(DOC), &pki.roots(), now()).report;
    assert_eq!(v.status, SignatureStatus::UntrustedChain, "{}", v.message);
    assert!(v.message.contains("extendedKeyUsage"), "{}", v.message);
    for (serial, eku) in [
        (41, ExtendedKeyUsagePurpose::EmailProtection),
        (42, ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 36])),
        (43, ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 4, 1, 311, 10, 3, 12])),
        (44, ExtendedKeyUsagePurpose::Any),
    ] {
        let ok = pki.signer_with(serial, |p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, eku]);
        let sig = sign(DOC, &ok, &[&ok.cert, &pki.intermediate.cert], DETACHED);
        let v = verify(&sig, Some(DOC), &pki.roots(), now()).report;
        assert_eq!(v.status, SignatureStatus::Valid, "serial {serial}: {}", v.message);
    }
}

#[test]
fn the_eku_constants_are_the_oids_they_name() {
    for (bytes, oid) in [
        (EKU_DOCUMENT_SIGNING, "1.3.6.1.5.5.7.3.36"),
        (EKU_MS_DOCUMENT_SIGNING, "1.3.6.1.4.1.311.10.3.12"),
        (EKU_EMAIL_PROTECTION, "1.3.6.1.5.5.7.3.4"),
        (EKU_ANY, "2.5.29.37.0"),
    ] {
        assert_eq!(bytes, Oid::new_unwrap(oid).as_bytes(), "{oid}");
    }
}

#[test]
fn more_than_sixteen_certificates_are_refused() {
    let pki = Pki::new();
    let now_t = OffsetDateTime::now_utc();
    let extra: Vec<Party> = (0..15)
        .map(|i| party(params(&format!("Filler {i}"), "x", 100 + i, Kind::Ca(None), now_t - YEAR, now_t + YEAR), None))
        .collect();
    let mut certs: Vec<&Certificate> = vec![&pki.signer.cert, &pki.intermediate.cert];
    certs.extend(extra.iter().take(14).map(|p| &p.cert));
    assert_eq!(certs.len(), MAX_CERTIFICATES);
    let sig = sign(DOC, &pki.signer, &certs, DETACHED);
    let v = verify(&sig, Some(DOC), &pki.roots(), now()).report;
    assert_eq!(v.status, SignatureStatus::Valid, "16 is the cap, not over it: {}", v.message);
    certs.push(&extra[14].cert);
    let sig = sign(DOC, &pki.signer, &certs, DETACHED);
    let v = verify(&sig, Some(DOC), &pki.roots(), now()).report;
    assert_eq!(v.status, SignatureStatus::InvalidSignature);
    assert!(v.message.contains("証明書が多すぎます（17 件。上限は 16 件）"), "{}", v.message);
    assert!(v.signer.is_none() && v.signers.is_empty(), "refused before any signer is looked at");
}

#[test]
fn more_than_four_signers_are_refused_and_each_signer_keeps_its_result() {
    let pki = Pki::new();
    let signers: Vec<Party> = (0..5).map(|i| pki.signer_with(50 + i, |_| {})).collect();
    let mut certs: Vec<&Certificate> = signers.iter().map(|p| &p.cert).collect();
    certs.push(&pki.intermediate.cert);
    let four: Vec<&Party> = signers.iter().take(MAX_SIGNERS).collect();
    let v = verify(&sign_by(DOC, &four, &certs, DETACHED), Some(DOC), &pki.roots(), now()).report;
    assert_eq!(v.status, SignatureStatus::Valid, "{}", v.message);
    assert_eq!(v.signers.len(), 4);
    assert!(v.signers.iter().all(|s| s.status == SignatureStatus::Valid));
    let five: Vec<&Party> = signers.iter().collect();
    let v = verify(&sign_by(DOC, &five, &certs, DETACHED), Some(DOC), &pki.roots(), now()).report;
    assert_eq!(v.status, SignatureStatus::InvalidSignature);
    assert!(v.message.contains("署名者が多すぎます（5 名。上限は 4 名）"), "{}", v.message);
    // Two signers, the second revoked: the report leads with the revoked one and keeps both.
    let listed = crl(&pki.intermediate, &[(&signers[1], RevocationReason::CessationOfOperation)]);
    let v = verify(&sign_by(DOC, &five[..2], &certs, DETACHED), Some(DOC), &pki.roots_with(&[listed]), now()).report;
    assert_eq!(v.status, SignatureStatus::Revoked, "{}", v.message);
    assert_eq!(v.signers.len(), 2);
    let revoked_serial = hex::encode(signers[1].cert.tbs_certificate().serial_number().as_bytes());
    for s in &v.signers {
        let expected = if s.signer.as_ref().unwrap().serial == revoked_serial {
            SignatureStatus::Revoked
        } else {
            SignatureStatus::Valid
        };
        assert_eq!(s.status, expected, "{}", s.message);
    }
    assert_eq!(v.signer.unwrap().serial, revoked_serial);
}

#[test]
fn the_hc_role_is_shown_with_its_japanese_name() {
    let pki = Pki::new();
    let dr = pki.signer_with(60, |p| {
        p.custom_extensions.push(hc_role_extension(&[
            (HPKI_ROLE_SCHEME, "Medical Doctor"),
            (HPKI_ROLE_SCHEME, "Director of Hospital"),
            (HPKI_ROLE_SCHEME, "Chief Wizard"),
            (Oid::new_unwrap("1.2.3.4"), "Dentist"),
        ]))
    });
    let sig = sign(DOC, &dr, &[&dr.cert, &pki.intermediate.cert], DETACHED);
    let v = verify(&sig, Some(DOC), &pki.roots(), now()).report;
    assert_eq!(v.status, SignatureStatus::Valid, "{}", v.message);
    let roles = v.signer.unwrap().hc_roles;
    let shown: Vec<&str> = roles.iter().map(HcRole::display).collect();
    // Known HPKI values in Japanese; others as written; another scheme's values are not HPKI's.
    assert_eq!(shown, vec!["医師", "病院長", "Chief Wizard", "Dentist"]);
    assert_eq!(roles[0].value, "Medical Doctor");
    assert_eq!(roles[0].scheme, "1.2.392.100495.1.6.1.1");
    assert_eq!(roles[3].label, None);
    // The same through the DER certificate view; a certificate without it has none.
    assert_eq!(certificate_view(&dr.der()).unwrap().hc_roles, roles);
    assert!(certificate_view(&pki.signer.der()).unwrap().hc_roles.is_empty());
    assert!(certificate_view(b"not a certificate").is_none());
    for (en, ja) in [("Dentist", "歯科医師"), ("pharmacist", "薬剤師"), ("MEDICAL  DOCTOR", "医師")] {
        assert_eq!(hc_label(en).as_deref(), Some(ja), "{en}");
    }
}

#[test]
fn a_root_outside_its_validity_expires_the_signature() {
    let now_t = OffsetDateTime::now_utc();
    // A root that expired yesterday, and a signer it issued that is still within its own dates.
    let root = party(
        params("Old Root", "Musubi", 70, Kind::Ca(None), now_t - 3 * YEAR, now_t - time::Duration::days(1)),
        None,
    );
    let signer = party(params("古 根子", "結びクリニック", 71, Kind::Signer, now_t - YEAR, now_t + YEAR), Some(&root));
    let roots = TrustRoots::from_pem(root.pem().as_bytes()).unwrap();
    let sig = sign(DOC, &signer, &[&signer.cert], DETACHED);
    let v = verify(&sig, Some(DOC), &roots, now()).report;
    assert_eq!(v.status, SignatureStatus::Expired, "{}", v.message);
    assert!(v.message.contains("CN=Old Root"), "{}", v.message);
}

#[test]
fn crl_files_load_as_pem_or_der() {
    let pki = Pki::new();
    let a = crl(&pki.intermediate, &[(&pki.signer, RevocationReason::KeyCompromise)]);
    let b = crl(&pki.root, &[]);
    let pem = |der: &[u8]| pem_rfc7468::encode_string("X509 CRL", pem_rfc7468::LineEnding::LF, der).unwrap();
    let both = pem(&a) + &pem(&b);
    assert_eq!(Crls::parse(both.as_bytes()).unwrap().len(), 2);
    assert_eq!(Crls::parse(&a).unwrap().len(), 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crl"), &a).unwrap();
    std::fs::write(dir.path().join("root.pem"), pem(&b)).unwrap();
    std::fs::write(dir.path().join("README.txt"), "not a CRL").unwrap();
    let crls = Crls::load(&[dir.path().to_owned()]).unwrap();
    assert_eq!(crls.len(), 2);
    let roots = pki.roots().with_crls(crls);
    assert_eq!(
        roots.crl_issuers(),
        vec!["CN=Musubi Test HPKI Signing CA,O=Musubi,C=JP", "CN=Musubi Test HPKI Root,O=Musubi,C=JP"]
    );
    let sig = sign(DOC, &pki.signer, &[&pki.signer.cert, &pki.intermediate.cert], DETACHED);
    assert_eq!(verify(&sig, Some(DOC), &roots, now()).report.status, SignatureStatus::Revoked);
    // What is not a CRL is an error naming the file.
    for junk in [&b""[..], b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"] {
        assert!(Crls::parse(junk).is_err());
    }
    std::fs::write(dir.path().join("broken.crl"), "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n").unwrap();
    let err = Crls::load(&[dir.path().to_owned()]).unwrap_err();
    assert!(err.to_string().contains("broken.crl"), "{err}");
}

/// A revoked signature made by the `openssl` command (RSA, the OpenSSL CA's own CRL) is
/// revoked here too, and the same signature is valid without the CRL.
#[test]
fn openssl_crls_revoke() {
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
    std::fs::write(d.join("index.txt"), "").unwrap();
    std::fs::write(d.join("crlnumber"), "01\n").unwrap();
    std::fs::write(
        d.join("ca.cnf"),
        "[ca]\ndefault_ca=CA_default\n[CA_default]\ndatabase=index.txt\ncrlnumber=crlnumber\ndefault_md=sha256\n\
         default_crl_days=30\ncrl_extensions=crl_ext\n[crl_ext]\nauthorityKeyIdentifier=keyid:always\n\
         [req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\n[v3_ee]\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,nonRepudiation\n",
    )
    .unwrap();
    #[rustfmt::skip]
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
        "-subj", "/C=JP/O=Musubi/CN=OpenSSL Test Root", "-config", "ca.cnf", "-extensions", "v3_ca"]);
    #[rustfmt::skip]
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "ee.key", "-out", "ee.csr", "-subj", "/C=JP/O=Musubi/CN=Signer",
        "-config", "ca.cnf"]);
    #[rustfmt::skip]
    run(&["x509", "-req", "-in", "ee.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "4660", "-out", "ee.pem",
        "-days", "30", "-extfile", "ca.cnf", "-extensions", "v3_ee"]);
    #[rustfmt::skip]
    run(&["cms", "-sign", "-binary", "-in", "doc.json", "-signer", "ee.pem", "-inkey", "ee.key", "-outform", "DER",
        "-out", "detached.p7s", "-md", "sha256"]);
    run(&[
        "ca",
        "-config",
        "ca.cnf",
        "-keyfile",
        "ca.key",
        "-cert",
        "ca.pem",
        "-revoke",
        "ee.pem",
        "-crl_reason",
        "keyCompromise",
    ]);
    run(&["ca", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.pem", "-gencrl", "-out", "ca.crl"]);
    let sig = std::fs::read(d.join("detached.p7s")).unwrap();
    let roots = TrustRoots::load(&[d.join("ca.pem")]).unwrap();
    assert_eq!(verify(&sig, Some(DOC), &roots, now()).report.status, SignatureStatus::Valid);
    let roots = roots.with_crls(Crls::load(&[d.join("ca.crl")]).unwrap());
    let v = verify(&sig, Some(DOC), &roots, now()).report;
    assert_eq!(v.status, SignatureStatus::Revoked, "{}", v.message);
    assert!(v.message.contains("シリアル番号 1234") && v.message.contains("鍵の危殆化"), "{}", v.message);
}

/// Writes the fuzz seeds (fuzz/seeds/cms and fuzz/seeds/x509) from this PKI: run by hand with
/// `cargo test -p musubi-service --lib write_fuzz_seeds -- --ignored` when the formats change.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let pki = Pki::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    let (cms, x509) = (root.join("cms"), root.join("x509"));
    std::fs::create_dir_all(&cms).unwrap();
    std::fs::create_dir_all(&x509).unwrap();
    let certs = [&pki.signer.cert, &pki.intermediate.cert];
    std::fs::write(cms.join("detached.p7s"), sign(DOC, &pki.signer, &certs, DETACHED)).unwrap();
    std::fs::write(
        cms.join("enveloping.p7s"),
        sign(DOC, &pki.signer, &certs, How { detached: false, signed_attrs: true }),
    )
    .unwrap();
    std::fs::write(
        cms.join("no-attributes.p7s"),
        sign(DOC, &pki.signer, &certs, How { detached: true, signed_attrs: false }),
    )
    .unwrap();
    let dr =
        pki.signer_with(60, |p| p.custom_extensions.push(hc_role_extension(&[(HPKI_ROLE_SCHEME, "Medical Doctor")])));
    std::fs::write(x509.join("hc-role.der"), dr.der()).unwrap();
    std::fs::write(x509.join("root.pem"), pki.root.pem()).unwrap();
    std::fs::write(x509.join("ca.crl"), crl(&pki.intermediate, &[(&pki.signer, RevocationReason::KeyCompromise)]))
        .unwrap();
}
