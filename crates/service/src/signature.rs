//! Signed documents: verification of a CMS (PKCS #7) `SignedData` signature over a document and
//! of the signer's certificate path up to the trust roots the operator configured (HPKI-style:
//! 保健医療福祉分野の公開鍵基盤 root certificates as PEM), with revocation checked against the
//! certificate revocation lists (CRLs) the operator configured.
//!
//! The result is one of six, shown in the referral's view:
//!
//! | status | when |
//! |---|---|
//! | `valid` | the signature verifies over the document, a path leads from the signer to a configured root, every certificate valid at the time checked and none listed in a configured CRL |
//! | `invalid-signature` | the signature does not verify (content changed, wrong key, malformed CMS, unsupported algorithm, more certificates or signers than the caps allow) |
//! | `untrusted-chain` | the signature verifies but no acceptable path leads from the signer to a configured root: unknown issuer, an intermediate that is not a CA or breaks a `pathLenConstraint` or name constraint, a signer key not for signing (keyUsage / extendedKeyUsage), a CRL that cannot be verified |
//! | `expired` | signature and path are good, but a certificate of the path was outside its validity at the time checked |
//! | `revoked` | a certificate of the path (the signer's or an intermediate's) is listed in its issuer's CRL |
//! | `unsigned` | no signature was sent |
//!
//! Both forms are accepted: *detached* (the document is sent beside the signature, which covers
//! its exact bytes) and *enveloping* (the document is inside the `SignedData`). Signed attributes
//! (content-type, message-digest, signing-time) are checked as RFC 5652 §5.4 says. Algorithms of
//! the CMS signature: RSA PKCS #1 v1.5 and ECDSA P-256 / P-384 with SHA-256/384/512 (what HPKI
//! and current tools produce). Input must be DER (or PEM of DER); BER indefinite lengths are
//! refused. A `SignedData` with more than [`MAX_CERTIFICATES`] certificates or more than
//! [`MAX_SIGNERS`] signers is refused before any digest or signature is computed. Every signer
//! must verify; the report keeps each signer's own result ([`SignerResult`]) and leads with the
//! first that fails (or the first signer).
//!
//! **Who checks what.** The CMS signature itself (signed attributes, message digest, the
//! signer's signature value) is verified here by hand over the RustCrypto ASN.1 types (`cms`,
//! `x509-cert`), because the `cms` crate has no verification API yet and OpenSSL would bring a C
//! library into the build. The certificate path is built and validated by `rustls-webpki` (the
//! validator rustls uses, with the ring provider): signer → the certificates carried in the CMS
//! as intermediates → a configured root, with signatures, validity, `basicConstraints` (an
//! intermediate must be a CA, `pathLenConstraint` holds), name constraints and unknown critical
//! extensions all checked there. Checked here besides: the signer's `keyUsage` must allow
//! `digitalSignature` or `nonRepudiation` (webpki does not look at an end entity's keyUsage), and
//! a root's own validity period (webpki's trust anchors carry none).
//!
//! **Extended key usage.** webpki asks for an EKU policy; a signer (and every intermediate)
//! without the extension may be used for anything (RFC 5280 §4.2.1.12), and one with it must
//! name a document-signing purpose: id-kp-documentSigning (1.3.6.1.5.5.7.3.36, RFC 9336),
//! Microsoft's document signing (1.3.6.1.4.1.311.10.3.12), id-kp-emailProtection
//! (1.3.6.1.5.5.7.3.4, what S/MIME signing certificates carry) or anyExtendedKeyUsage. A single
//! OID (`KeyUsage::required_if_present`) would refuse signers whose CA chose another of these
//! for the same purpose; a certificate restricted to TLS (serverAuth / clientAuth only) is
//! refused.
//!
//! **Time.** Validity is checked at the time Musubi received the document, not at the signer's
//! own `signing-time` (the signer asserts that, so it proves nothing).
//!
//! **Revocation.** Every certificate of the path is looked up in the CRL of its issuer, from the
//! CRL files the operator configured (`musubi serve --signature-crl FILE`, PEM or DER, loaded at
//! start). A listed certificate makes the signature `revoked` whatever the revocation date says:
//! a CRL cannot tell when a key was really compromised, so a letter opened after its signer's
//! certificate was revoked shows 失効 (the message gives the date and the reason). When no CRL
//! is configured for an issuer of the path, the signature is **allowed** and the report says
//! the revocation status is unknown (`revocation: unknown`, shown as 失効確認なし): refusing would
//! make every signature untrusted on a network that distributes no CRLs, and the reader is told.
//! A configured CRL that does not verify under its issuer's key makes that issuer's signatures
//! `untrusted-chain` until the operator fixes the file; a CRL past its `nextUpdate` is still used
//! (a stale list still lists what it lists; refreshing the files is the operator's job). OCSP is
//! not consulted.
//!
//! **hcRole.** HPKI certificates carry the holder's healthcare role (hcRole, ISO 17090) in the
//! subjectDirectoryAttributes extension; it is shown with the signer ([`SignerView::hc_roles`]),
//! with a Japanese name for the HPKI values.
//!
//! The result is stored with the referral at sending and checked again, with the current roots
//! and CRLs, whenever the referral is opened ([`crate::referral`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{AnyRef, ObjectIdentifier as Oid, OctetString};
use der::{Decode, Encode, EncodeValue, Reader, SliceReader, Tag, TagNumber, Tagged};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use spki::SubjectPublicKeyInfoOwned;
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter,
    OwnedCertRevocationList, RequiredEkuNotFoundContext, RevocationCheckDepth, RevocationOptionsBuilder,
    RevocationReason, UnknownStatusPolicy,
};
use x509_cert::Certificate;
use x509_cert::ext::pkix::{KeyUsage, SubjectDirectoryAttributes, SubjectKeyIdentifier};

const ID_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
const ATTR_CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
const ATTR_MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
const ATTR_SIGNING_TIME: Oid = Oid::new_unwrap("1.2.840.113549.1.9.5");
const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
const SHA256_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
const ECDSA_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: Oid = Oid::new_unwrap("1.2.840.10045.4.3.4");
const CURVE_P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
const CURVE_P384: Oid = Oid::new_unwrap("1.3.132.0.34");

/// The attribute type of hcRole in subjectDirectoryAttributes: `id-hcpki-at-healthcareactor`
/// = { iso(1) standard(0) hcpki(17090) attribute(0) 1 } (ISO 17090-3). Its value is
/// `HCActorData ::= SET OF HCActor`, `HCActor ::= SEQUENCE { codedData [0] CodedData,
/// regionalHCActorData [1] … OPTIONAL }`, `CodedData ::= SET { codingSchemeReference [0] OBJECT
/// IDENTIFIER, codeDataValue [1] NumericString OPTIONAL, codeDataFreeText [2] DirectoryString }`
/// (tags explicit), as the MHLW HPKI certificate policy (保健医療福祉分野 PKI 認証局 証明書ポリシ,
/// §7.1, hcRole 属性) profiles it. 1.2.392.100495.1.6.1.1 is not the attribute type but Japan's
/// coding scheme for the values (`id-jhpki-cdata`, [`HPKI_ROLE_SCHEME`]): checked against a public
/// HPKI verifier's ASN.1 definitions and test vectors ("Medical Doctor", "Pharmacist").
pub const HC_ROLE: Oid = Oid::new_unwrap("1.0.17090.0.1");
/// The Japanese HPKI coding scheme of hcRole values (`id-jhpki-cdata`): the value is the role's
/// English name in `codeDataFreeText`.
pub const HPKI_ROLE_SCHEME: Oid = Oid::new_unwrap("1.2.392.100495.1.6.1.1");

/// The most certificates a `SignedData` may carry. An HPKI signature needs the signer and one or
/// two CA certificates; 16 leaves room for cross-certificates while keeping the work an input can
/// cause (parsing, path building over the pool) small.
pub const MAX_CERTIFICATES: usize = 16;
/// The most signers (`signerInfos`) of one `SignedData`: each costs a digest and a signature
/// check and a path validation. A letter is signed by its author, sometimes countersigned.
pub const MAX_SIGNERS: usize = 4;

/// The most hcRole values read from one certificate, and the most TLVs read at each level of
/// the hcRole structure (bounds the work of a crafted extension).
const MAX_HC_ITEMS: usize = 8;

/// The HPKI hcRole values (the English names of the HPKI certificate policy's table of 国家資格
/// and 管理者資格) and their Japanese names. Matched ignoring case, spaces and punctuation; a value
/// not in this list is shown as written.
const HC_ROLE_NAMES: &[(&str, &str)] = &[
    ("Medical Doctor", "医師"),
    ("Dentist", "歯科医師"),
    ("Pharmacist", "薬剤師"),
    ("Medical Technologist", "臨床検査技師"),
    ("Clinical Laboratory Technician", "臨床検査技師"),
    ("Laboratory Technician", "衛生検査技師"),
    ("Radiological Technologist", "診療放射線技師"),
    ("Nurse", "看護師"),
    ("Registered Nurse", "看護師"),
    ("Public Health Nurse", "保健師"),
    ("Midwife", "助産師"),
    ("Assistant Nurse", "准看護師"),
    ("Physical Therapist", "理学療法士"),
    ("Occupational Therapist", "作業療法士"),
    ("Orthoptist", "視能訓練士"),
    ("Speech Therapist", "言語聴覚士"),
    ("Speech-Language-Hearing Therapist", "言語聴覚士"),
    ("Dental Technician", "歯科技工士"),
    ("Dental Hygienist", "歯科衛生士"),
    ("Registered Dietitian", "管理栄養士"),
    ("Certified Social Worker", "社会福祉士"),
    ("Certified Care Worker", "介護福祉士"),
    ("Psychiatric Social Worker", "精神保健福祉士"),
    ("Emergency Medical Technician", "救急救命士"),
    ("Clinical Engineer", "臨床工学技士"),
    ("Prosthetist and Orthotist", "義肢装具士"),
    ("Masseur", "あん摩マッサージ指圧師"),
    ("Acupuncturist", "はり師"),
    ("Moxibustion Practitioner", "きゅう師"),
    ("Moxacauterist", "きゅう師"),
    ("Judo Therapist", "柔道整復師"),
    ("Certified Public Psychologist", "公認心理師"),
    ("Director of Hospital", "病院長"),
    ("Director of Clinic", "診療所院長"),
    ("Director of Pharmacy", "管理薬剤師"),
    ("Owner of Pharmacy", "薬局開設者"),
    ("Director of Other Healthcare-related Facility", "その他の保健医療福祉機関の管理責任者"),
];

/// Extended key usages that allow signing documents (see the module documentation); the DER
/// contents of the OIDs, as webpki compares them.
const EKU_DOCUMENT_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x24]; // 1.3.6.1.5.5.7.3.36
const EKU_MS_DOCUMENT_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x0a, 0x03, 0x0c]; // 1.3.6.1.4.1.311.10.3.12
const EKU_EMAIL_PROTECTION: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x04]; // 1.3.6.1.5.5.7.3.4
const EKU_ANY: &[u8] = &[0x55, 0x1d, 0x25, 0x00]; // 2.5.29.37.0
const SIGNING_EKUS: [&[u8]; 4] = [EKU_DOCUMENT_SIGNING, EKU_MS_DOCUMENT_SIGNING, EKU_EMAIL_PROTECTION, EKU_ANY];

/// The outcome of a signature check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureStatus {
    /// Signature and path verify; every certificate was valid at the time checked and none is
    /// revoked.
    Valid,
    /// The signature does not verify over the document (or cannot be read, or exceeds the caps).
    InvalidSignature,
    /// No acceptable path from the signer to a configured trust root.
    UntrustedChain,
    /// A certificate of the path was outside its validity period.
    Expired,
    /// A certificate of the path is listed in its issuer's CRL.
    Revoked,
    /// The document was sent without a signature.
    Unsigned,
}

impl SignatureStatus {
    const ALL: [SignatureStatus; 6] = [
        SignatureStatus::Valid,
        SignatureStatus::InvalidSignature,
        SignatureStatus::UntrustedChain,
        SignatureStatus::Expired,
        SignatureStatus::Revoked,
        SignatureStatus::Unsigned,
    ];

    /// The stable code (`valid`, `invalid-signature`, `untrusted-chain`, `expired`, `revoked`,
    /// `unsigned`).
    pub fn code(self) -> &'static str {
        match self {
            SignatureStatus::Valid => "valid",
            SignatureStatus::InvalidSignature => "invalid-signature",
            SignatureStatus::UntrustedChain => "untrusted-chain",
            SignatureStatus::Expired => "expired",
            SignatureStatus::Revoked => "revoked",
            SignatureStatus::Unsigned => "unsigned",
        }
    }

    /// The status from its code.
    pub fn from_code(code: &str) -> Option<SignatureStatus> {
        SignatureStatus::ALL.into_iter().find(|s| s.code() == code)
    }

    /// A short label for people.
    pub fn label_ja(self) -> &'static str {
        match self {
            SignatureStatus::Valid => "署名有効",
            SignatureStatus::InvalidSignature => "署名不正",
            SignatureStatus::UntrustedChain => "信頼できない証明書",
            SignatureStatus::Expired => "証明書期限切れ",
            SignatureStatus::Revoked => "失効",
            SignatureStatus::Unsigned => "署名なし",
        }
    }
}

/// What the CRLs said about the signer's path (only known once a path to a root was found).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Revocation {
    /// Every certificate of the path was looked up in its issuer's CRL and none is listed.
    NotRevoked,
    /// No CRL is configured for at least one issuer of the path: the status is unknown (the
    /// signature is allowed; see the module documentation).
    Unknown,
    /// A certificate of the path is listed in its issuer's CRL.
    Revoked,
}

impl Revocation {
    /// The stable code (`not-revoked`, `unknown`, `revoked`).
    pub fn code(self) -> &'static str {
        match self {
            Revocation::NotRevoked => "not-revoked",
            Revocation::Unknown => "unknown",
            Revocation::Revoked => "revoked",
        }
    }

    /// A short label for people.
    pub fn label_ja(self) -> &'static str {
        match self {
            Revocation::NotRevoked => "失効なし（CRL 確認済み）",
            Revocation::Unknown => "失効確認なし",
            Revocation::Revoked => "失効",
        }
    }
}

/// A healthcare role (hcRole) of a certificate's holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HcRole {
    /// The value as the certificate writes it (for HPKI, the role's English name, e.g.
    /// `Medical Doctor`).
    pub value: String,
    /// The coding scheme of the value (OID; HPKI: [`HPKI_ROLE_SCHEME`]).
    pub scheme: String,
    /// The Japanese name (医師, 歯科医師, …) for the known HPKI values.
    pub label: Option<String>,
}

impl HcRole {
    /// What people are shown: the Japanese name, else the value as written.
    pub fn display(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.value)
    }
}

/// The signer's certificate, as shown to people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerView {
    /// Subject (RFC 4514).
    pub subject: String,
    /// Issuer (RFC 4514).
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// Valid from (epoch ms).
    pub not_before: i64,
    /// Valid until (epoch ms).
    pub not_after: i64,
    /// The subjects of the path from the signer's issuer to the root, when one was found.
    pub chain: Vec<String>,
    /// The holder's healthcare roles (hcRole), when the certificate carries them.
    #[serde(default)]
    pub hc_roles: Vec<HcRole>,
}

/// One signer's result (a `SignedData` may have several signers, each checked on its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerResult {
    /// The outcome for this signer.
    pub status: SignatureStatus,
    /// Why, for people (Japanese).
    pub message: String,
    /// The signer's certificate, when it was found.
    pub signer: Option<SignerView>,
    /// The signer's own claim of when it signed (signing-time attribute; not trusted).
    pub signing_time: Option<i64>,
    /// What the CRLs said, when a path to a root was found.
    pub revocation: Option<Revocation>,
}

/// The result of checking a document's signature: the outcome of the lead signer (the first
/// that fails, else the first) and every signer's own result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureReport {
    /// The outcome.
    pub status: SignatureStatus,
    /// Why, for people (Japanese).
    pub message: String,
    /// The lead signer's certificate, when it was found.
    pub signer: Option<SignerView>,
    /// The lead signer's own claim of when it signed (signing-time attribute; not trusted).
    pub signing_time: Option<i64>,
    /// The time the certificates' validity was checked at (epoch ms): when Musubi received the
    /// document.
    pub checked_at: i64,
    /// What the CRLs said about the lead signer's path, when one was found.
    #[serde(default)]
    pub revocation: Option<Revocation>,
    /// Each signer's result, in the order of the `SignedData` (empty when the signature could
    /// not be read).
    #[serde(default)]
    pub signers: Vec<SignerResult>,
}

impl SignatureReport {
    /// The report for a document sent without a signature.
    pub fn unsigned(at: i64) -> SignatureReport {
        SignatureReport {
            status: SignatureStatus::Unsigned,
            message: "この文書には電子署名がありません".into(),
            signer: None,
            signing_time: None,
            checked_at: at,
            revocation: None,
            signers: Vec::new(),
        }
    }

    fn invalid(message: impl Into<String>, at: i64) -> SignatureReport {
        SignatureReport {
            status: SignatureStatus::InvalidSignature,
            message: message.into(),
            signer: None,
            signing_time: None,
            checked_at: at,
            revocation: None,
            signers: Vec::new(),
        }
    }

    /// The report of all signers: led by the first that fails, else by the first.
    fn of_signers(signers: Vec<SignerResult>, at: i64) -> SignatureReport {
        let lead = signers.iter().find(|r| r.status != SignatureStatus::Valid).or(signers.first()).cloned();
        match lead {
            None => SignatureReport::invalid("署名者情報がありません", at),
            Some(lead) => SignatureReport {
                status: lead.status,
                message: lead.message,
                signer: lead.signer,
                signing_time: lead.signing_time,
                checked_at: at,
                revocation: lead.revocation,
                signers,
            },
        }
    }
}

/// Why trust roots or CRLs could not be loaded (configuration errors, for the operator).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustRootError {
    /// A file or directory could not be read.
    #[error("cannot read trust roots from {path}: {message}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// A file holds no readable certificate.
    #[error("no PEM certificate in {path}: {message}")]
    Pem {
        /// The path (or `<memory>`).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file holds no readable CRL.
    #[error("no usable CRL in {path}: {message}")]
    Crl {
        /// The path (or `<memory>`).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Certificate revocation lists the operator configured (PEM `X509 CRL` blocks or DER).
#[derive(Debug, Default)]
pub struct Crls {
    lists: Vec<Crl>,
}

#[derive(Debug)]
struct Crl {
    list: CertRevocationList<'static>,
    /// The issuer as people read it (RFC 4514).
    issuer: String,
}

impl Crls {
    /// No CRLs: every revocation status is unknown.
    pub fn empty() -> Crls {
        Crls::default()
    }

    /// The CRLs in `bytes`: one or more PEM `X509 CRL` blocks, or one DER CRL.
    pub fn parse(bytes: &[u8]) -> Result<Crls, TrustRootError> {
        Self::parse_at(bytes, Path::new("<memory>"))
    }

    fn parse_at(bytes: &[u8], path: &Path) -> Result<Crls, TrustRootError> {
        let err = |message: String| TrustRootError::Crl { path: path.to_owned(), message };
        let ders: Vec<Vec<u8>> = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            CertificateRevocationListDer::pem_slice_iter(bytes)
                .map(|r| r.map(|d| d.as_ref().to_vec()).map_err(|e| err(format!("PEM: {e}"))))
                .collect::<Result<_, _>>()?
        } else {
            vec![bytes.to_vec()]
        };
        if ders.is_empty() {
            return Err(err("no X509 CRL block".into()));
        }
        let mut lists = Vec::with_capacity(ders.len());
        for der in ders {
            let owned = OwnedCertRevocationList::from_der(&der).map_err(|e| err(format!("{e:?}")))?;
            let list = CertRevocationList::from(owned);
            let issuer = name_of_content(list.issuer());
            lists.push(Crl { list, issuer });
        }
        Ok(Crls { lists })
    }

    /// Loads each path: a CRL file (PEM or DER), or a directory whose `*.crl`, `*.pem` and `*.der`
    /// files are CRLs.
    pub fn load(paths: &[PathBuf]) -> Result<Crls, TrustRootError> {
        let mut out = Crls::empty();
        for f in files_of(paths, &["crl", "pem", "der"])? {
            out.lists.extend(Self::parse_at(&read_file(&f)?, &f)?.lists);
        }
        Ok(out)
    }

    /// How many CRLs.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }
}

/// An RFC 4514 string of a Name given as webpki gives it (the contents of the SEQUENCE).
fn name_of_content(content: &[u8]) -> String {
    let Ok(len) = der::Length::try_from(content.len()) else { return String::new() };
    let Ok(header) = der::Header::new(Tag::Sequence, len).to_der() else { return String::new() };
    let mut full = header;
    full.extend_from_slice(content);
    x509_cert::name::Name::from_der(&full).map(|n| n.to_string()).unwrap_or_else(|_| hex::encode(content))
}

fn read_file(path: &Path) -> Result<Vec<u8>, TrustRootError> {
    std::fs::read(path).map_err(|e| TrustRootError::Read { path: path.to_owned(), message: e.to_string() })
}

/// The files named by `paths`: each file itself, or a directory's files with one of `exts`
/// (sorted).
fn files_of(paths: &[PathBuf], exts: &[&str]) -> Result<Vec<PathBuf>, TrustRootError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries =
                std::fs::read_dir(p).map_err(|e| TrustRootError::Read { path: p.clone(), message: e.to_string() })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| exts.iter().any(|e| x.eq_ignore_ascii_case(e)))
                })
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// The trust anchors (HPKI-style root certificates) and the CRLs the operator configured.
#[derive(Debug, Default)]
pub struct TrustRoots {
    /// The root certificates (for names and validity).
    roots: Vec<Certificate>,
    /// webpki's trust anchors of `roots` (same order).
    anchors: Vec<TrustAnchor<'static>>,
    crls: Crls,
}

impl TrustRoots {
    /// No roots: every signed document is `untrusted-chain`.
    pub fn empty() -> TrustRoots {
        TrustRoots::default()
    }

    /// The certificates in a PEM text (one or more `BEGIN CERTIFICATE` blocks).
    pub fn from_pem(pem: &[u8]) -> Result<TrustRoots, TrustRootError> {
        Self::parse_pem(pem, Path::new("<memory>"))
    }

    fn parse_pem(pem: &[u8], path: &Path) -> Result<TrustRoots, TrustRootError> {
        let err = |message: String| TrustRootError::Pem { path: path.to_owned(), message };
        let certs = Certificate::load_pem_chain(pem).map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no certificate".into()));
        }
        let mut out = TrustRoots::empty();
        for cert in certs {
            let der = cert.to_der().map_err(|e| err(e.to_string()))?;
            let anchor = webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                .map_err(|e| {
                    err(format!("{} is not usable as a trust anchor: {e:?}", cert.tbs_certificate().subject()))
                })?
                .to_owned();
            out.anchors.push(anchor);
            out.roots.push(cert);
        }
        Ok(out)
    }

    /// Loads each path: a PEM file, or a directory whose `*.pem`, `*.crt` and `*.cer` files
    /// are PEM certificates.
    pub fn load(paths: &[PathBuf]) -> Result<TrustRoots, TrustRootError> {
        let mut out = TrustRoots::empty();
        for f in files_of(paths, &["pem", "crt", "cer"])? {
            let more = Self::parse_pem(&read_file(&f)?, &f)?;
            out.roots.extend(more.roots);
            out.anchors.extend(more.anchors);
        }
        Ok(out)
    }

    /// These roots with `crls` to check revocation against.
    pub fn with_crls(mut self, crls: Crls) -> TrustRoots {
        self.crls = crls;
        self
    }

    /// How many roots.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The roots' subjects (for the operator's console and logs).
    pub fn subjects(&self) -> Vec<String> {
        self.roots.iter().map(subject).collect()
    }

    /// The issuers of the configured CRLs (for the operator's console and logs).
    pub fn crl_issuers(&self) -> Vec<String> {
        self.crls.lists.iter().map(|c| c.issuer.clone()).collect()
    }
}

/// A signature as sent: DER, or PEM (`-----BEGIN PKCS7-----`, `CMS`, …) of DER.
pub fn signature_der(input: &[u8]) -> Vec<u8> {
    let trimmed = input.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN")
        && let Ok((_label, der)) = pem_rfc7468::decode_vec(trimmed)
    {
        return der;
    }
    input.to_vec()
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The report.
    pub report: SignatureReport,
    /// The signed content: the document inside an enveloping signature (None when detached or
    /// unreadable).
    pub enveloped: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn of_oid(oid: &Oid) -> Option<Hash> {
        match *oid {
            SHA256 => Some(Hash::Sha256),
            SHA384 => Some(Hash::Sha384),
            SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    RsaPkcs1,
    Ecdsa,
}

/// The scheme and hash of a signature algorithm; `digest` is the hash named beside it (CMS
/// signer infos may give only `rsaEncryption` / `id-ecPublicKey`).
fn algorithm(sig: &Oid, digest: Hash) -> Result<(Scheme, Hash), String> {
    let pair = match *sig {
        SHA256_WITH_RSA => (Scheme::RsaPkcs1, Hash::Sha256),
        SHA384_WITH_RSA => (Scheme::RsaPkcs1, Hash::Sha384),
        SHA512_WITH_RSA => (Scheme::RsaPkcs1, Hash::Sha512),
        ECDSA_SHA256 => (Scheme::Ecdsa, Hash::Sha256),
        ECDSA_SHA384 => (Scheme::Ecdsa, Hash::Sha384),
        ECDSA_SHA512 => (Scheme::Ecdsa, Hash::Sha512),
        RSA_ENCRYPTION | EC_PUBLIC_KEY => {
            let scheme = if *sig == RSA_ENCRYPTION { Scheme::RsaPkcs1 } else { Scheme::Ecdsa };
            (scheme, digest)
        }
        other => {
            return Err(format!(
                "署名アルゴリズム {other} には対応していません（RSA PKCS#1 v1.5 と ECDSA P-256/P-384）"
            ));
        }
    };
    Ok(pair)
}

/// Verifies `sig` over `data` with the public key `spki`.
fn verify_raw(
    spki: &SubjectPublicKeyInfoOwned,
    scheme: Scheme,
    hash: Hash,
    data: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    use signature::hazmat::PrehashVerifier;
    let hashed = hash.digest(data);
    fn bad<E>(_: E) -> String {
        "署名値が公開鍵で検証できません".to_owned()
    }
    match scheme {
        Scheme::RsaPkcs1 => {
            if spki.algorithm.oid != RSA_ENCRYPTION {
                return Err("証明書の公開鍵が RSA ではありません".into());
            }
            let der = spki.to_der().map_err(|e| format!("公開鍵を読めません: {e}"))?;
            let key = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&der)
                .map_err(|e| format!("RSA 公開鍵を読めません: {e}"))?;
            let padding = match hash {
                Hash::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                Hash::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                Hash::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
            };
            key.verify(padding, &hashed, sig).map_err(bad)
        }
        Scheme::Ecdsa => {
            if spki.algorithm.oid != EC_PUBLIC_KEY {
                return Err("証明書の公開鍵が楕円曲線暗号ではありません".into());
            }
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.to_der().ok())
                .and_then(|d| Oid::from_der(&d).ok())
                .ok_or_else(|| "楕円曲線の種類が証明書にありません".to_owned())?;
            let point = spki.subject_public_key.raw_bytes();
            match curve {
                CURVE_P256 => {
                    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                        .map_err(|_| "P-256 公開鍵を読めません".to_owned())?;
                    let s =
                        p256::ecdsa::Signature::from_der(sig).map_err(|_| "ECDSA 署名値の形式が不正です".to_owned())?;
                    key.verify_prehash(&hashed, &s).map_err(bad)
                }
                CURVE_P384 => {
                    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                        .map_err(|_| "P-384 公開鍵を読めません".to_owned())?;
                    let s =
                        p384::ecdsa::Signature::from_der(sig).map_err(|_| "ECDSA 署名値の形式が不正です".to_owned())?;
                    key.verify_prehash(&hashed, &s).map_err(bad)
                }
                other => Err(format!("楕円曲線 {other} には対応していません（P-256 と P-384）")),
            }
        }
    }
}

fn signer_cert<'a>(
    sid: &SignerIdentifier,
    pool: &'a [(Certificate, CertificateDer<'static>)],
) -> Option<&'a (Certificate, CertificateDer<'static>)> {
    pool.iter().find(|(c, _)| {
        let tbs = c.tbs_certificate();
        match sid {
            SignerIdentifier::IssuerAndSerialNumber(isn) => {
                tbs.issuer() == &isn.issuer && tbs.serial_number() == &isn.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => {
                matches!(tbs.get_extension::<SubjectKeyIdentifier>(), Ok(Some((_, own))) if own == *ski)
            }
        }
    })
}

fn attr_value<T: for<'a> Decode<'a>>(si: &SignerInfo, oid: Oid) -> Option<Result<T, ()>> {
    let attrs = si.signed_attrs.as_ref()?;
    let a = attrs.iter().find(|a| a.oid == oid)?;
    Some(
        a.values
            .iter()
            .next()
            .ok_or(())
            .and_then(|v| v.to_der().map_err(|_| ()).and_then(|d| T::from_der(&d).map_err(|_| ()))),
    )
}

/// Checks one signer's signature over `content`; returns the signing-time claim.
fn check_signer(
    si: &SignerInfo,
    cert: &Certificate,
    content: &[u8],
    econtent_type: &Oid,
) -> Result<Option<i64>, String> {
    let digest = Hash::of_oid(&si.digest_alg.oid).ok_or_else(|| {
        format!("ダイジェストアルゴリズム {} には対応していません（SHA-256/384/512 のみ）", si.digest_alg.oid)
    })?;
    let (scheme, hash) = algorithm(&si.signature_algorithm.oid, digest)?;
    let mut signing_time = None;
    let signed: Vec<u8> = match &si.signed_attrs {
        Some(attrs) => {
            match attr_value::<Oid>(si, ATTR_CONTENT_TYPE) {
                Some(Ok(ct)) if ct == *econtent_type => {}
                Some(Ok(_)) => return Err("署名属性の content-type が内容の種類と一致しません".into()),
                _ => return Err("署名属性に content-type がありません".into()),
            }
            match attr_value::<OctetString>(si, ATTR_MESSAGE_DIGEST) {
                Some(Ok(md)) if md.as_bytes() == digest.digest(content).as_slice() => {}
                Some(Ok(_)) => {
                    return Err(
                        "文書のハッシュ値が署名時と一致しません（文書が改ざんされたか、別の文書の署名です）".into()
                    );
                }
                _ => return Err("署名属性に message-digest がありません".into()),
            }
            if let Some(Ok(t)) = attr_value::<x509_cert::time::Time>(si, ATTR_SIGNING_TIME) {
                signing_time = Some(millis(t));
            }
            // The signature covers the DER of the attributes as a SET OF (RFC 5652 §5.4).
            attrs.to_der().map_err(|e| format!("署名属性を符号化できません: {e}"))?
        }
        None => content.to_vec(),
    };
    let spki = cert.tbs_certificate().subject_public_key_info();
    verify_raw(spki, scheme, hash, &signed, si.signature.as_bytes()).map_err(|e| {
        if si.signed_attrs.is_none() {
            format!("{e}（文書が改ざんされたか、別の文書の署名です）")
        } else {
            e
        }
    })?;
    Ok(signing_time)
}

/// Verifies a CMS `SignedData` (`signature`, DER or PEM) over `detached` (the document's exact
/// bytes) or over the document it envelopes, and each signer's certificate path against `roots`
/// and their CRLs, with certificate validity checked at `at` (epoch ms).
pub fn verify(signature: &[u8], detached: Option<&[u8]>, roots: &TrustRoots, at: i64) -> Verified {
    let der = signature_der(signature);
    let fail = |m: String| Verified { report: SignatureReport::invalid(m, at), enveloped: None };
    let ci = match ContentInfo::from_der(&der) {
        Ok(ci) => ci,
        Err(e) => return fail(format!("署名データを CMS (PKCS#7, DER) として読めません: {e}")),
    };
    if ci.content_type != ID_SIGNED_DATA {
        return fail(format!("署名データが SignedData ではありません（{}）", ci.content_type));
    }
    let sd = match ci.content.to_der().and_then(|d| SignedData::from_der(&d)) {
        Ok(sd) => sd,
        Err(e) => return fail(format!("SignedData を読めません: {e}")),
    };
    // The caps, before any digest, signature or path is computed.
    let ncerts = sd.certificates.as_ref().map_or(0, |set| set.0.len());
    if ncerts > MAX_CERTIFICATES {
        return fail(format!("署名データに含まれる証明書が多すぎます（{ncerts} 件。上限は {MAX_CERTIFICATES} 件）"));
    }
    let nsigners = sd.signer_infos.0.len();
    if nsigners > MAX_SIGNERS {
        return fail(format!("署名者が多すぎます（{nsigners} 名。上限は {MAX_SIGNERS} 名）"));
    }
    let econtent_type = sd.encap_content_info.econtent_type;
    let enveloped = match &sd.encap_content_info.econtent {
        Some(any) => match any.to_der().and_then(|d| OctetString::from_der(&d)) {
            Ok(o) => Some(o.as_bytes().to_vec()),
            Err(e) => return fail(format!("署名に含まれる文書を読めません: {e}")),
        },
        None => None,
    };
    let content: &[u8] = match (&enveloped, detached) {
        (Some(inner), Some(outer)) if inner.as_slice() != outer => {
            return Verified {
                report: SignatureReport::invalid("署名に含まれる文書と、送信された文書が一致しません", at),
                enveloped,
            };
        }
        (Some(inner), _) => inner,
        (None, Some(outer)) => outer,
        (None, None) => return fail("署名対象の文書がありません（分離署名には文書本体が必要です）".into()),
    };
    if econtent_type != ID_DATA && sd.signer_infos.0.iter().any(|si| si.signed_attrs.is_none()) {
        return Verified {
            report: SignatureReport::invalid("id-data 以外の内容には署名属性が必要です", at),
            enveloped,
        };
    }
    let mut pool = Vec::with_capacity(ncerts);
    for c in sd.certificates.iter().flat_map(|set| set.0.iter()) {
        if let CertificateChoices::Certificate(cert) = c {
            match cert.to_der() {
                Ok(der) => pool.push((cert.clone(), CertificateDer::from(der))),
                Err(e) => return fail(format!("署名データの証明書を読めません: {e}")),
            }
        }
    }
    let intermediates: Vec<CertificateDer<'static>> = pool.iter().map(|(_, d)| d.clone()).collect();
    // Every signer must verify; each keeps its own result.
    let results = sd
        .signer_infos
        .0
        .iter()
        .map(|si| check_one(si, &pool, &intermediates, roots, content, &econtent_type, at))
        .collect();
    Verified { report: SignatureReport::of_signers(results, at), enveloped }
}

fn check_one(
    si: &SignerInfo,
    pool: &[(Certificate, CertificateDer<'static>)],
    intermediates: &[CertificateDer<'static>],
    roots: &TrustRoots,
    content: &[u8],
    econtent_type: &Oid,
    at: i64,
) -> SignerResult {
    let Some((cert, cert_der)) = signer_cert(&si.sid, pool) else {
        return SignerResult {
            status: SignatureStatus::InvalidSignature,
            message: "署名者の証明書が署名データに含まれていません".into(),
            signer: None,
            signing_time: None,
            revocation: None,
        };
    };
    let mut view = view_of(cert);
    let (signing_time, outcome) = match check_signer(si, cert, content, econtent_type) {
        Err(m) => (None, Err((SignatureStatus::InvalidSignature, m))),
        Ok(t) => {
            (t, signing_key_usage(cert).and_then(|()| validate_path(cert, cert_der, pool, intermediates, roots, at)))
        }
    };
    match outcome {
        Ok((chain, revocation)) => {
            view.chain = chain;
            let note = match revocation {
                Revocation::NotRevoked => "失効リスト（CRL）で失効していないことを確認しました",
                _ => "失効リスト（CRL）が設定されていない発行者があるため、失効は確認していません",
            };
            SignerResult {
                status: SignatureStatus::Valid,
                message: format!("電子署名は有効です（署名者: {}）。{note}", view.subject),
                signer: Some(view),
                signing_time,
                revocation: Some(revocation),
            }
        }
        Err((status, message)) => SignerResult {
            status,
            message,
            signer: Some(view),
            signing_time,
            revocation: (status == SignatureStatus::Revoked).then_some(Revocation::Revoked),
        },
    }
}

/// The signer's keyUsage, when present, must allow digitalSignature or nonRepudiation
/// (webpki does not look at an end entity's keyUsage).
fn signing_key_usage(cert: &Certificate) -> Result<(), (SignatureStatus, String)> {
    match cert.tbs_certificate().get_extension::<KeyUsage>() {
        Ok(Some((_, ku))) if !(ku.digital_signature() || ku.non_repudiation()) => Err((
            SignatureStatus::UntrustedChain,
            "署名者の証明書は署名用の鍵ではありません（keyUsage に digitalSignature も nonRepudiation もありません）"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// The EKU policy of document signing (see the module documentation): no extension, or one of
/// [`SIGNING_EKUS`].
struct DocumentSigning;

impl ExtendedKeyUsageValidator for DocumentSigning {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            if SIGNING_EKUS.iter().any(|ok| KeyPurposeId::new(ok) == id) {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if present.is_empty() {
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(RequiredEkuNotFoundContext {
            required: webpki::KeyUsage::required_if_present(EKU_DOCUMENT_SIGNING),
            present,
        }))
    }
}

fn unix_time(ms: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn unix_ms(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX / 1000).saturating_mul(1000)
}

/// Validates the path from the signer to a configured root with webpki, at `at`, with the
/// configured CRLs. Returns the subjects from the signer's issuer to the root and what the CRLs
/// said; or the status and message of the failure.
fn validate_path(
    cert: &Certificate,
    cert_der: &CertificateDer<'static>,
    pool: &[(Certificate, CertificateDer<'static>)],
    intermediates: &[CertificateDer<'static>],
    roots: &TrustRoots,
    at: i64,
) -> Result<(Vec<String>, Revocation), (SignatureStatus, String)> {
    let ee = EndEntityCert::try_from(cert_der)
        .map_err(|e| (SignatureStatus::UntrustedChain, format!("署名者の証明書を検証できません（{e:?}）")))?;
    let time = unix_time(at);
    let crls: Vec<&CertRevocationList<'static>> = roots.crls.lists.iter().map(|c| &c.list).collect();
    // One path building; `policy` None checks no revocation (no CRL configured at all).
    let build = |policy: Option<UnknownStatusPolicy>| {
        let revocation = policy.and_then(|p| {
            RevocationOptionsBuilder::new(&crls).ok().map(|b| {
                b.with_depth(RevocationCheckDepth::Chain)
                    .with_status_policy(p)
                    .with_expiration_policy(ExpirationPolicy::Ignore)
                    .build()
            })
        });
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &roots.anchors,
            intermediates,
            time,
            DocumentSigning,
            revocation,
            None,
        )
        .map(|path| {
            let mut chain: Vec<String> = path
                .intermediate_certificates()
                .map(|c| {
                    let der = c.der();
                    pool.iter()
                        .find(|(_, d)| d.as_ref() == der.as_ref())
                        .map(|(c, _)| subject(c))
                        .unwrap_or_else(|| name_of_content(c.subject()))
                })
                .collect();
            let root = roots.anchors.iter().position(|a| std::ptr::eq(a, path.anchor()));
            chain.extend(root.and_then(|i| roots.roots.get(i)).map(subject));
            (chain, root)
        })
    };
    // Unknown revocation status is allowed (see the module documentation); a second building
    // that denies it tells whether every certificate of the path was covered by a CRL.
    let allowing = if crls.is_empty() { None } else { Some(UnknownStatusPolicy::Allow) };
    let (chain, root) = build(allowing).map_err(|e| path_failure(&e, cert, pool, roots))?;
    let revocation = match allowing {
        Some(_) if build(Some(UnknownStatusPolicy::Deny)).is_ok() => Revocation::NotRevoked,
        _ => Revocation::Unknown,
    };
    // The root's own validity (webpki's trust anchors have none).
    if let Some(root) = root.and_then(|i| roots.roots.get(i)) {
        let v = root.tbs_certificate().validity();
        let (from, until) = (millis(v.not_before), millis(v.not_after));
        if at > until || at < from {
            return Err((SignatureStatus::Expired, validity_message(&subject(root), at, from, until)));
        }
    }
    Ok((chain, revocation))
}

fn validity_message(who: &str, at: i64, from: i64, until: i64) -> String {
    if at > until {
        format!("証明書 {who} の有効期限（{}）が切れています", musubi_fhir::datetime::format_instant(until))
    } else {
        format!("証明書 {who} はまだ有効期間が始まっていません（{} から）", musubi_fhir::datetime::format_instant(from))
    }
}

/// The status and message of a path that webpki refused.
fn path_failure(
    e: &webpki::Error,
    cert: &Certificate,
    pool: &[(Certificate, CertificateDer<'static>)],
    roots: &TrustRoots,
) -> (SignatureStatus, String) {
    use webpki::Error as E;
    let untrusted = |m: String| (SignatureStatus::UntrustedChain, m);
    match e {
        E::CertExpired { time, .. } | E::CertNotValidYet { time, .. } => {
            // webpki does not say which certificate: the first of the signer's and the pool's
            // that is outside its validity.
            let at = unix_ms(*time);
            let outside = std::iter::once(cert).chain(pool.iter().map(|(c, _)| c)).find_map(|c| {
                let v = c.tbs_certificate().validity();
                let (from, until) = (millis(v.not_before), millis(v.not_after));
                (at > until || at < from).then(|| validity_message(&subject(c), at, from, until))
            });
            let message = outside.unwrap_or_else(|| match e {
                E::CertExpired { not_after, .. } => format!(
                    "証明書チェーン上の証明書の有効期限（{}）が切れています",
                    musubi_fhir::datetime::format_instant(unix_ms(*not_after))
                ),
                _ => "証明書チェーン上の証明書の有効期間が始まっていません".into(),
            });
            (SignatureStatus::Expired, message)
        }
        E::CertRevoked => (SignatureStatus::Revoked, revoked_message(cert, pool, roots)),
        E::UnknownIssuer => untrusted(format!(
            "署名者の証明書（発行者 {}）から、設定された信頼済みルート証明書までの証明書チェーンがつながりません",
            cert.tbs_certificate().issuer()
        )),
        E::EndEntityUsedAsCa => {
            untrusted("証明書チェーン上の中間証明書が認証局（CA）の証明書ではありません（basicConstraints）".into())
        }
        E::CaUsedAsEndEntity => {
            untrusted("署名者の証明書は認証局（CA）の証明書です。文書への署名には使えません".into())
        }
        E::PathLenConstraintViolated => untrusted(
            "証明書チェーンが認証局の証明書の pathLenConstraint（下位認証局の段数の制限）に違反しています".into(),
        ),
        E::NameConstraintViolation => untrusted("証明書チェーンが認証局の名前制約（nameConstraints）に違反しています".into()),
        E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => untrusted(
            "証明書の拡張鍵用途（extendedKeyUsage）が文書への署名を認めていません（文書署名・電子メール保護のいずれもありません）"
                .into(),
        ),
        E::InvalidSignatureForPublicKey => {
            untrusted("証明書チェーン上の証明書の署名が、発行者の公開鍵で検証できません".into())
        }
        E::UnknownRevocationStatus
        | E::InvalidCrlSignatureForPublicKey
        | E::UnsupportedCrlSignatureAlgorithmContext(_)
        | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_)
        | E::IssuerNotCrlSigner
        | E::CrlExpired { .. }
        | E::UnsupportedIndirectCrl
        | E::UnsupportedRevocationReason
        | E::UnsupportedRevocationReasonsPartitioning
        | E::UnsupportedCrlIssuingDistributionPoint => untrusted(format!(
            "設定された失効リスト（CRL）を検証できないため、失効を確認できません（{e:?}）。運営事務局に CRL の設定を確認してください"
        )),
        E::UnsupportedSignatureAlgorithmContext(_) | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            untrusted("証明書チェーン上の証明書の署名アルゴリズムに対応していません".into())
        }
        E::UnsupportedCriticalExtension => {
            untrusted("証明書に、対応していない重要（critical）拡張があります".into())
        }
        E::MaximumPathDepthExceeded
        | E::MaximumSignatureChecksExceeded
        | E::MaximumPathBuildCallsExceeded
        | E::MaximumNameConstraintComparisonsExceeded => {
            untrusted("証明書チェーンが長すぎるか、複雑すぎて検証できません".into())
        }
        other => untrusted(format!("証明書チェーンを検証できません（{other:?}）")),
    }
}

fn reason_ja(r: Option<RevocationReason>) -> &'static str {
    match r {
        None | Some(RevocationReason::Unspecified) => "理由の記載なし",
        Some(RevocationReason::KeyCompromise) => "鍵の危殆化",
        Some(RevocationReason::CaCompromise) => "認証局の危殆化",
        Some(RevocationReason::AffiliationChanged) => "所属の変更",
        Some(RevocationReason::Superseded) => "証明書の更新",
        Some(RevocationReason::CessationOfOperation) => "利用の終了",
        Some(RevocationReason::CertificateHold) => "一時停止",
        Some(RevocationReason::RemoveFromCrl) => "CRL からの削除",
        Some(RevocationReason::PrivilegeWithdrawn) => "資格・権限の取り消し",
        Some(RevocationReason::AaCompromise) => "属性認証局の危殆化",
    }
}

/// Which certificate (the signer's or one of the pool's) a configured CRL lists, with when and
/// why, for the message of a `revoked` signature.
fn revoked_message(cert: &Certificate, pool: &[(Certificate, CertificateDer<'static>)], roots: &TrustRoots) -> String {
    let listed = std::iter::once(cert).chain(pool.iter().map(|(c, _)| c)).find_map(|c| {
        let tbs = c.tbs_certificate();
        // webpki compares the issuer's contents (the Name without its SEQUENCE header).
        let issuer = tbs.issuer().to_der().ok()?;
        let content_len = usize::try_from(tbs.issuer().value_len().ok()?).ok()?;
        let content = issuer.get(issuer.len().checked_sub(content_len)?..)?;
        let serial = tbs.serial_number().as_bytes();
        roots.crls.lists.iter().find_map(|crl| {
            if content != crl.list.issuer() {
                return None;
            }
            let entry = crl.list.find_serial(serial).ok()??;
            Some((c, unix_ms(entry.revocation_date), entry.reason_code))
        })
    });
    match listed {
        Some((c, when, reason)) => format!(
            "{}証明書 {}（シリアル番号 {}）は {} に失効しています（理由: {}）",
            if std::ptr::eq(c, cert) { "署名者の" } else { "証明書チェーン上の" },
            subject(c),
            hex::encode(c.tbs_certificate().serial_number().as_bytes()),
            musubi_fhir::datetime::format_instant(when),
            reason_ja(reason)
        ),
        None => "証明書チェーン上の証明書が失効リスト（CRL）に載っています（失効しています）".into(),
    }
}

fn millis(t: x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_millis()).unwrap_or(i64::MAX)
}

fn subject(c: &Certificate) -> String {
    c.tbs_certificate().subject().to_string()
}

/// What people are shown of a certificate (no chain yet).
fn view_of(cert: &Certificate) -> SignerView {
    let tbs = cert.tbs_certificate();
    SignerView {
        subject: subject(cert),
        issuer: tbs.issuer().to_string(),
        serial: hex::encode(tbs.serial_number().as_bytes()),
        not_before: millis(tbs.validity().not_before),
        not_after: millis(tbs.validity().not_after),
        chain: Vec::new(),
        hc_roles: hc_roles(cert),
    }
}

/// What people are shown of a DER certificate (subject, issuer, validity, hcRole), or None when
/// the bytes are not an X.509 certificate.
pub fn certificate_view(der: &[u8]) -> Option<SignerView> {
    Certificate::from_der(der).ok().map(|c| view_of(&c))
}

/// The TLVs inside `bytes` (at most [`MAX_HC_ITEMS`]); empty when they are not DER.
fn tlvs(bytes: &[u8]) -> Vec<AnyRef<'_>> {
    let mut out = Vec::new();
    let Ok(mut reader) = SliceReader::new(bytes) else { return out };
    while !reader.is_finished() && out.len() < MAX_HC_ITEMS {
        match AnyRef::decode(&mut reader) {
            Ok(any) => out.push(any),
            Err(_) => break,
        }
    }
    out
}

/// The content of the explicit `[n]` among `items`.
fn explicit<'a>(items: &[AnyRef<'a>], n: u32) -> Option<AnyRef<'a>> {
    let tagged = items.iter().find(|a| a.tag() == Tag::ContextSpecific { constructed: true, number: TagNumber(n) })?;
    tlvs(tagged.value()).first().copied()
}

/// A DirectoryString / NumericString as text.
fn text_of(any: &AnyRef<'_>) -> Option<String> {
    match any.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString | Tag::VisibleString => {
            std::str::from_utf8(any.value()).ok().map(str::to_owned)
        }
        Tag::BmpString => {
            let units: Vec<u16> = any.value().chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

fn hc_label(value: &str) -> Option<String> {
    let norm =
        |s: &str| s.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect::<String>();
    let v = norm(value);
    HC_ROLE_NAMES.iter().find(|(en, _)| norm(en) == v).map(|(_, ja)| (*ja).to_owned())
}

/// The hcRole values of a certificate (subjectDirectoryAttributes, [`HC_ROLE`]); empty when it
/// has none or they cannot be read.
fn hc_roles(cert: &Certificate) -> Vec<HcRole> {
    let Ok(Some((_, sda))) = cert.tbs_certificate().get_extension::<SubjectDirectoryAttributes>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for attr in sda.0.iter().filter(|a| a.oid == HC_ROLE) {
        for value in attr.values.iter() {
            // HCActorData ::= SET OF HCActor
            if value.tag() != Tag::Set {
                continue;
            }
            for actor in tlvs(value.value()).iter().filter(|a| a.tag() == Tag::Sequence) {
                let Some(coded) = explicit(&tlvs(actor.value()), 0).filter(|c| c.tag() == Tag::Set) else { continue };
                let fields = tlvs(coded.value());
                let scheme = explicit(&fields, 0).and_then(|o| Oid::from_bytes(o.value()).ok());
                let Some(value) = explicit(&fields, 2).or_else(|| explicit(&fields, 1)).and_then(|t| text_of(&t))
                else {
                    continue;
                };
                let label = if scheme == Some(HPKI_ROLE_SCHEME) { hc_label(&value) } else { None };
                out.push(HcRole { value, scheme: scheme.map(|o| o.to_string()).unwrap_or_default(), label });
                if out.len() >= MAX_HC_ITEMS {
                    return out;
                }
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
