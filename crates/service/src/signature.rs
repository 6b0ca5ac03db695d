//! Signed documents: verification of a CMS (PKCS #7) `SignedData` signature over a document and
//! of the signer's certificate chain up to the trust roots the operator configured (HPKI-style:
//! 保健医療福祉分野の公開鍵基盤 root certificates as PEM).
//!
//! The result is one of five, shown in the referral's view:
//!
//! | status | when |
//! |---|---|
//! | `valid` | the signature verifies over the document and the signer's chain ends at a configured root, every certificate valid at the time checked |
//! | `invalid-signature` | the signature does not verify (content changed, wrong key, malformed CMS, unsupported algorithm) |
//! | `untrusted-chain` | the signature verifies but no chain leads from the signer to a configured root (or an intermediate is not a CA, or the signer's key is not for signing) |
//! | `expired` | signature and chain are good, but a certificate of the chain was outside its validity at the time checked |
//! | `unsigned` | no signature was sent |
//!
//! Both forms are accepted: *detached* (the document is sent beside the signature, which covers
//! its exact bytes) and *enveloping* (the document is inside the `SignedData`). Signed attributes
//! (content-type, message-digest, signing-time) are checked as RFC 5652 §5.4 says. Algorithms:
//! RSA PKCS #1 v1.5 and ECDSA P-256 / P-384 with SHA-256/384/512 (what HPKI and current tools
//! produce). Input must be DER (or PEM of DER); BER indefinite lengths are refused.
//!
//! Validity is checked at the time Musubi received the document, not at the signer's own
//! `signing-time` (the signer asserts that, so it proves nothing). Revocation (CRL / OCSP) is not
//! checked.
//!
//! Written by hand over the RustCrypto ASN.1 types (`cms`, `x509-cert`) because the `cms` crate
//! has no verification API yet, and OpenSSL would bring a C library into the build.

use std::path::{Path, PathBuf};

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{ObjectIdentifier as Oid, OctetString};
use der::{Decode, Encode};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};

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

/// How long a chain may be (signer, intermediates, root).
const MAX_CHAIN: usize = 8;

/// The outcome of a signature check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureStatus {
    /// Signature and chain verify; every certificate was valid at the time checked.
    Valid,
    /// The signature does not verify over the document (or cannot be read).
    InvalidSignature,
    /// No chain from the signer to a configured trust root.
    UntrustedChain,
    /// A certificate of the chain was outside its validity period.
    Expired,
    /// The document was sent without a signature.
    Unsigned,
}

impl SignatureStatus {
    /// The stable code (`valid`, `invalid-signature`, `untrusted-chain`, `expired`, `unsigned`).
    pub fn code(self) -> &'static str {
        match self {
            SignatureStatus::Valid => "valid",
            SignatureStatus::InvalidSignature => "invalid-signature",
            SignatureStatus::UntrustedChain => "untrusted-chain",
            SignatureStatus::Expired => "expired",
            SignatureStatus::Unsigned => "unsigned",
        }
    }

    /// The status from its code.
    pub fn from_code(code: &str) -> Option<SignatureStatus> {
        [
            SignatureStatus::Valid,
            SignatureStatus::InvalidSignature,
            SignatureStatus::UntrustedChain,
            SignatureStatus::Expired,
            SignatureStatus::Unsigned,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }

    /// A short label for people.
    pub fn label_ja(self) -> &'static str {
        match self {
            SignatureStatus::Valid => "署名有効",
            SignatureStatus::InvalidSignature => "署名不正",
            SignatureStatus::UntrustedChain => "信頼できない証明書",
            SignatureStatus::Expired => "証明書期限切れ",
            SignatureStatus::Unsigned => "署名なし",
        }
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
    /// The subjects of the chain from the signer's issuer to the root, when one was found.
    pub chain: Vec<String>,
}

/// The result of checking a document's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureReport {
    /// The outcome.
    pub status: SignatureStatus,
    /// Why, for people (Japanese).
    pub message: String,
    /// The signer's certificate, when it was found.
    pub signer: Option<SignerView>,
    /// The signer's own claim of when it signed (signing-time attribute; not trusted).
    pub signing_time: Option<i64>,
    /// The time the certificates' validity was checked at (epoch ms).
    pub checked_at: i64,
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
        }
    }

    fn invalid(message: impl Into<String>, at: i64) -> SignatureReport {
        SignatureReport {
            status: SignatureStatus::InvalidSignature,
            message: message.into(),
            signer: None,
            signing_time: None,
            checked_at: at,
        }
    }
}

/// Why trust roots could not be loaded (configuration errors, for the operator).
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
}

/// The trust anchors (HPKI-style root certificates) the operator configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustRoots {
    roots: Vec<Certificate>,
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
        let roots = Certificate::load_pem_chain(pem)
            .map_err(|e| TrustRootError::Pem { path: path.to_owned(), message: e.to_string() })?;
        if roots.is_empty() {
            return Err(TrustRootError::Pem { path: path.to_owned(), message: "no certificate".into() });
        }
        Ok(TrustRoots { roots })
    }

    /// Loads each path: a PEM file, or a directory whose `*.pem`, `*.crt` and `*.cer` files
    /// are PEM certificates.
    pub fn load(paths: &[PathBuf]) -> Result<TrustRoots, TrustRootError> {
        let mut out = TrustRoots::empty();
        for p in paths {
            let read = |path: &Path| {
                std::fs::read(path).map_err(|e| TrustRootError::Read { path: path.to_owned(), message: e.to_string() })
            };
            if p.is_dir() {
                let entries = std::fs::read_dir(p)
                    .map_err(|e| TrustRootError::Read { path: p.clone(), message: e.to_string() })?;
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| {
                        f.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                            x.eq_ignore_ascii_case("pem")
                                || x.eq_ignore_ascii_case("crt")
                                || x.eq_ignore_ascii_case("cer")
                        })
                    })
                    .collect();
                files.sort();
                for f in files {
                    out.roots.extend(Self::parse_pem(&read(&f)?, &f)?.roots);
                }
            } else {
                out.roots.extend(Self::parse_pem(&read(p)?, p)?.roots);
            }
        }
        Ok(out)
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
        self.roots.iter().map(|c| c.tbs_certificate().subject().to_string()).collect()
    }

    fn contains(&self, cert: &Certificate) -> bool {
        self.roots.iter().any(|r| r == cert)
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
fn algorithm(sig: &Oid, digest: Option<Hash>) -> Result<(Scheme, Hash), String> {
    let pair = match *sig {
        SHA256_WITH_RSA => (Scheme::RsaPkcs1, Hash::Sha256),
        SHA384_WITH_RSA => (Scheme::RsaPkcs1, Hash::Sha384),
        SHA512_WITH_RSA => (Scheme::RsaPkcs1, Hash::Sha512),
        ECDSA_SHA256 => (Scheme::Ecdsa, Hash::Sha256),
        ECDSA_SHA384 => (Scheme::Ecdsa, Hash::Sha384),
        ECDSA_SHA512 => (Scheme::Ecdsa, Hash::Sha512),
        RSA_ENCRYPTION | EC_PUBLIC_KEY => {
            let scheme = if *sig == RSA_ENCRYPTION { Scheme::RsaPkcs1 } else { Scheme::Ecdsa };
            let h = digest
                .ok_or_else(|| "ダイジェストアルゴリズムに対応していません（SHA-256/384/512 のみ）".to_owned())?;
            (scheme, h)
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

/// Whether `issuer`'s key signed `cert`.
fn issued_by(cert: &Certificate, issuer: &Certificate) -> bool {
    if cert.tbs_certificate().issuer() != issuer.tbs_certificate().subject() {
        return false;
    }
    let Ok((scheme, hash)) = algorithm(&cert.signature_algorithm().oid, None) else { return false };
    let Ok(tbs) = cert.tbs_certificate().to_der() else { return false };
    let Some(sig) = cert.signature().as_bytes() else { return false };
    verify_raw(issuer.tbs_certificate().subject_public_key_info(), scheme, hash, &tbs, sig).is_ok()
}

fn is_ca(cert: &Certificate) -> bool {
    matches!(cert.tbs_certificate().get_extension::<BasicConstraints>(), Ok(Some((_, bc))) if bc.ca)
}

fn millis(t: x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_millis()).unwrap_or(i64::MAX)
}

fn subject(c: &Certificate) -> String {
    c.tbs_certificate().subject().to_string()
}

/// Builds the path from `signer` to a root: signer first, root last.
fn chain(signer: &Certificate, pool: &[Certificate], roots: &TrustRoots) -> Result<Vec<Certificate>, String> {
    let mut path = vec![signer.clone()];
    while path.len() <= MAX_CHAIN {
        let Some(cur) = path.last() else { break };
        if roots.contains(cur) {
            return Ok(path);
        }
        let next = roots.roots.iter().chain(pool.iter()).find(|c| !path.contains(c) && issued_by(cur, c)).cloned();
        match next {
            Some(c) if roots.contains(&c) => {
                path.push(c);
                return Ok(path);
            }
            Some(c) if is_ca(&c) => path.push(c),
            Some(c) => {
                return Err(format!("中間証明書 {} は認証局（CA）の証明書ではありません", subject(&c)));
            }
            None => {
                return Err(format!(
                    "署名者の証明書（発行者 {}）から、設定された信頼済みルート証明書までの証明書チェーンがつながりません",
                    cur.tbs_certificate().issuer()
                ));
            }
        }
    }
    Err("証明書チェーンが長すぎます".into())
}

fn signer_cert<'a>(sid: &SignerIdentifier, pool: &'a [Certificate]) -> Option<&'a Certificate> {
    pool.iter().find(|c| {
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
    let (scheme, hash) = algorithm(&si.signature_algorithm.oid, Some(digest))?;
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
/// bytes) or over the document it envelopes, and the signer's chain against `roots`, with
/// certificate validity checked at `at` (epoch ms).
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
    let pool: Vec<Certificate> = sd
        .certificates
        .as_ref()
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    CertificateChoices::Certificate(c) => Some(c.clone()),
                    CertificateChoices::Other(_) => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut search: Vec<Certificate> = pool.clone();
    search.extend(roots.roots.iter().cloned());
    let mut report: Option<SignatureReport> = None;
    // Every signer must verify; the report describes the first one, or the first failure.
    for si in sd.signer_infos.0.iter() {
        let r = check_one(si, &search, &pool, roots, content, &econtent_type, at);
        let replace = match &report {
            None => true,
            Some(prev) => prev.status == SignatureStatus::Valid && r.status != SignatureStatus::Valid,
        };
        if replace {
            report = Some(r);
        }
    }
    Verified {
        report: report.unwrap_or_else(|| SignatureReport::invalid("署名者情報がありません", at)), enveloped
    }
}

fn check_one(
    si: &SignerInfo,
    search: &[Certificate],
    pool: &[Certificate],
    roots: &TrustRoots,
    content: &[u8],
    econtent_type: &Oid,
    at: i64,
) -> SignatureReport {
    let Some(cert) = signer_cert(&si.sid, search) else {
        return SignatureReport::invalid("署名者の証明書が署名データに含まれていません", at);
    };
    let tbs = cert.tbs_certificate();
    let mut view = SignerView {
        subject: subject(cert),
        issuer: tbs.issuer().to_string(),
        serial: hex::encode(tbs.serial_number().as_bytes()),
        not_before: millis(tbs.validity().not_before),
        not_after: millis(tbs.validity().not_after),
        chain: Vec::new(),
    };
    let mut report = SignatureReport {
        status: SignatureStatus::Valid,
        message: String::new(),
        signer: None,
        signing_time: None,
        checked_at: at,
    };
    match check_signer(si, cert, content, econtent_type) {
        Ok(t) => report.signing_time = t,
        Err(m) => {
            report.status = SignatureStatus::InvalidSignature;
            report.message = m;
            report.signer = Some(view);
            return report;
        }
    }
    if let Ok(Some((_, ku))) = tbs.get_extension::<KeyUsage>()
        && !(ku.digital_signature() || ku.non_repudiation())
    {
        report.status = SignatureStatus::UntrustedChain;
        report.message = "署名者の証明書は署名用の鍵ではありません（keyUsage）".into();
        report.signer = Some(view);
        return report;
    }
    let path = match chain(cert, pool, roots) {
        Ok(p) => p,
        Err(m) => {
            report.status = SignatureStatus::UntrustedChain;
            report.message = m;
            report.signer = Some(view);
            return report;
        }
    };
    view.chain = path.iter().skip(1).map(subject).collect();
    for c in &path {
        let v = c.tbs_certificate().validity();
        let (from, until) = (millis(v.not_before), millis(v.not_after));
        if at > until || at < from {
            report.status = SignatureStatus::Expired;
            report.message = if at > until {
                format!(
                    "証明書 {} の有効期限（{}）が切れています",
                    subject(c),
                    musubi_fhir::datetime::format_instant(until)
                )
            } else {
                format!(
                    "証明書 {} はまだ有効期間が始まっていません（{} から）",
                    subject(c),
                    musubi_fhir::datetime::format_instant(from)
                )
            };
            report.signer = Some(view);
            return report;
        }
    }
    report.message = format!("電子署名は有効です（署名者: {}）", view.subject);
    report.signer = Some(view);
    report
}

#[cfg(test)]
pub(crate) mod tests;
