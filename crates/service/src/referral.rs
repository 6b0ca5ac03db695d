//! Referral exchange (文書送受信): a clinician sends a 診療情報提供書 (JP-CLINS eReferral document
//! Bundle, HS038) to another facility, with a 退院時サマリー (eDischargeSummary document) and
//! files (PDF, images) attached; the addressee's inbox lists it as not yet received until someone
//! there opens it; the sender's outbox shows when and by whom it was received. The addressee may
//! answer with a reply (返書) linked to the original — the national sharing service has no
//! replies; this is a regional-network extension.
//!
//! Every step is audited: sending, every listing, every opening (the first opening by the
//! addressee marks the receipt in the same transaction as its audit record), every refusal.
//!
//! Who may do what is decided by the gate ([`musubi_gate::referral`], with its table and the
//! reason the addressee opens a letter whatever the patient's disclosure settings say): every
//! list, opening, file download, receipt, reply and sending here asks
//! [`musubi_gate::decide_referral`] first. A letter of other facilities answers exactly like a
//! missing one (404, audited as denied); other refusals are 403 with the reason.
//!
//! Retention (DESIGN.md, the national service): a referral and its documents and files are
//! deleted 7 days after the addressee received it, and 6 months after sending at the latest
//! ([`crate::retention`] does it). What is deleted answers 410 Gone.
//!
//! Withdrawal (取り下げ): the sender withdraws a letter sent by mistake by deleting its
//! document Bundle by identifier (`DELETE /Bundle?identifier=…`, [`Service::delete_bundle`]).
//! The letter is marked withdrawn (when, by whom) in the same transaction as the deletion; both
//! boxes list it as 取り下げ (with its receipt, if it was received before), its files are
//! dropped, and opening it answers 410 saying the sender withdrew it. The patient is no longer
//! shown: a letter sent by mistake may have gone to the wrong facility or be about the wrong
//! patient.
//!
//! Signatures: a CMS signature over the document's exact bytes (detached) or enveloping it is
//! verified against the operator's trust roots and CRLs ([`crate::signature`]); the result (each
//! signer's status, certificate, hcRole and revocation status, and the time checked) is stored
//! with the letter at sending and shown beside the check made again, with the current roots and
//! CRLs, whenever the referral is opened. Certificate validity is judged at the time Musubi
//! received the document. A letter carries one signature (over its document); the 退院時サマリー
//! and the files are not signed.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use base64::Engine;
use musubi_domain::audit::{AuditAction, AuditOutcome};
use musubi_domain::{BundleIdentifier, FacilityCode, systems};
use musubi_fhir::index::{IndexEntry, IndexValue, referral_recipients};
use musubi_fhir::outcome::{OutcomeIssue, Severity};
use musubi_fhir::{ResourceType, datetime};
use musubi_gate::{Actor, Decision, DenyReason, LetterView, ReferralOp, decide_referral, may_send_referrals};
use musubi_store::referral::{WITHDRAWN, Withdrawal};
use musubi_store::{AttachmentRow, BundleOp, BundleSubmission, Expect, PutResource, Receipt, ReferralRow, WriteBatch};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::prepare::{Persons, Prep, new_id, prepare, to_outcome_issues};
use crate::signature::{SignatureReport, SignatureStatus, TrustRoots};
use crate::{ApiError, Ctx, ErrorKind, Service};

/// The largest attached file.
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;
/// The most attached bytes in one referral.
pub const MAX_FILES_TOTAL_BYTES: usize = 20 * 1024 * 1024;
/// The most files in one referral.
pub const MAX_FILES: usize = 10;
/// The file types accepted, with their names for people.
pub const FILE_TYPES: &[(&str, &str)] = &[
    ("application/pdf", "PDF"),
    ("image/jpeg", "JPEG"),
    ("image/png", "PNG"),
    ("image/tiff", "TIFF"),
    ("image/gif", "GIF"),
];
/// How long after receipt a referral is deleted.
pub const KEEP_AFTER_RECEIPT_MS: i64 = 7 * 86_400_000;
/// How many months after sending a referral is deleted at the latest.
pub const KEEP_MONTHS: u32 = 6;
/// The Composition type of a 診療情報提供書.
pub const REFERRAL_TYPE: &str = "57133-1";
/// The Composition type of a 退院時サマリー.
pub const DISCHARGE_TYPE: &str = "18842-5";
/// The most referrals a list returns.
pub const LIST_LIMIT: i64 = 500;

/// The trust roots of this service, replaceable while it runs (an operator may add a root).
#[derive(Clone, Default)]
pub(crate) struct ReferralState {
    roots: Arc<RwLock<Arc<TrustRoots>>>,
}

/// A file to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    /// File name as the sender gave it.
    pub filename: String,
    /// The declared MIME type (checked against the bytes).
    pub content_type: String,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A referral to send.
#[derive(Debug, Clone, Default)]
pub struct NewReferral {
    /// The addressee's 医療機関コード; when None, the one facility the document's 紹介先
    /// section names.
    pub addressee: Option<String>,
    /// The document's exact bytes (JSON). May be None when `signature` envelopes the document.
    pub document: Option<Vec<u8>>,
    /// A CMS signature (DER or PEM): detached over `document`, or enveloping it.
    pub signature: Option<Vec<u8>>,
    /// A 退院時サマリー document Bundle to attach.
    pub discharge_summary: Option<Value>,
    /// Files to attach.
    pub files: Vec<NewFile>,
}

/// A facility as the lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FacilityRef {
    /// 医療機関コード.
    pub code: String,
    /// Its name in the registry.
    pub name: Option<String>,
}

/// The patient as the lists show it (from the document's Patient).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralPatient {
    /// Kanji name.
    pub name: Option<String>,
    /// Kana name.
    pub kana: Option<String>,
    /// Birth date.
    pub birth_date: Option<String>,
    /// Sex (FHIR gender code).
    pub gender: Option<String>,
}

/// An attached file, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Position (the download URL uses it).
    pub seq: i64,
    /// File name.
    pub filename: String,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes.
    pub size: i64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// What the lists show, kept beside the referral (and wiped when it is deleted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StoredSummary {
    patient: ReferralPatient,
    title: Option<String>,
    author: Option<String>,
    document_date: Option<String>,
    has_discharge_summary: bool,
    files: Vec<FileInfo>,
}

/// Where a referral stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferralStatus {
    /// Sent, not yet received (未受領).
    Sent,
    /// Received by the addressee (受領済み).
    Received,
    /// Deleted by retention (削除済み).
    Deleted,
    /// Withdrawn by its sender (取り下げ).
    Withdrawn,
}

impl ReferralStatus {
    /// The label for people.
    pub fn label_ja(self) -> &'static str {
        match self {
            ReferralStatus::Sent => "未受領",
            ReferralStatus::Received => "受領済み",
            ReferralStatus::Deleted => "削除済み（保存期間経過）",
            ReferralStatus::Withdrawn => "取り下げ",
        }
    }
}

fn instant<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&datetime::format_instant(*ms))
}

fn opt_instant<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(v) => s.serialize_str(&datetime::format_instant(*v)),
        None => s.serialize_none(),
    }
}

/// The signature result as the lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureBadge {
    /// The status.
    pub status: SignatureStatus,
    /// Its label.
    pub label: &'static str,
}

/// A referral as the inbox and outbox list it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferralSummary {
    /// Id.
    pub id: String,
    /// Sent, received or deleted.
    pub status: ReferralStatus,
    /// Its label (未受領, 受領済み, 削除済み).
    pub status_label: &'static str,
    /// The sender.
    pub sender: FacilityRef,
    /// The addressee.
    pub addressee: FacilityRef,
    /// The patient (None once deleted).
    pub patient: Option<ReferralPatient>,
    /// The document's title.
    pub title: Option<String>,
    /// The author (紹介元の医師).
    pub author: Option<String>,
    /// The document's date.
    pub document_date: Option<String>,
    /// Sent at.
    #[serde(serialize_with = "instant")]
    pub created: i64,
    /// Sent by (login or system name).
    pub created_by: String,
    /// Received at.
    #[serde(serialize_with = "opt_instant")]
    pub received_at: Option<i64>,
    /// Received by (login or system name).
    pub received_by: Option<String>,
    /// Their name and profession.
    pub received_by_name: Option<String>,
    /// When retention deletes it (7 days after receipt, 6 months after sending at the latest).
    #[serde(serialize_with = "opt_instant")]
    pub delete_after: Option<i64>,
    /// Deleted at.
    #[serde(serialize_with = "opt_instant")]
    pub deleted_at: Option<i64>,
    /// Why deleted: `received+7d`, `retention-6m` or `withdrawn`.
    pub deleted_reason: Option<String>,
    /// Who withdrew it (login or system name), when withdrawn; `deleted_at` says when.
    pub withdrawn_by: Option<String>,
    /// The signature result at sending.
    pub signature: SignatureBadge,
    /// The referral this one answers.
    pub reply_to: Option<String>,
    /// Replies to this one.
    pub replies: Vec<String>,
    /// Whether a 退院時サマリー is attached.
    pub has_discharge_summary: bool,
    /// Attached files.
    pub files: Vec<FileInfo>,
}

/// An opened referral: the summary, the documents and the signature checked now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferralView {
    /// What the lists show (with the receipt as it is now).
    #[serde(flatten)]
    pub summary: ReferralSummary,
    /// The 診療情報提供書 (document Bundle).
    pub document: Value,
    /// The 退院時サマリー, if attached.
    pub discharge_summary: Option<Value>,
    /// The signature checked at opening, with the current trust roots and CRLs (certificate
    /// validity still judged at the time Musubi received the letter).
    pub signature_report: SignatureReport,
    /// The result kept at sending (each signer's status, certificate, hcRole, revocation, the
    /// time checked), when there is one.
    pub signature_at_sending: Option<SignatureReport>,
    /// The source patient at the sender (Patient id).
    pub patient_id: Option<String>,
    /// The stored Bundle's id.
    pub bundle_id: Option<String>,
    /// Whether this opening marked it received.
    pub received_now: bool,
}

/// A downloaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDownload {
    /// File name.
    pub filename: String,
    /// MIME type.
    pub content_type: String,
    /// The bytes.
    pub data: Vec<u8>,
}

impl FileDownload {
    /// The `Content-Disposition` header value: an ASCII fallback name and the UTF-8 name
    /// (RFC 6266 / RFC 5987), so that 紹介状.pdf arrives as 紹介状.pdf.
    pub fn content_disposition(&self) -> String {
        let ascii: String = self
            .filename
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' })
            .collect();
        let encoded = percent_encoding::utf8_percent_encode(&self.filename, percent_encoding::NON_ALPHANUMERIC);
        format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
    }
}

/// The signature report kept with the letter at sending.
fn stored_report(row: &ReferralRow) -> Option<SignatureReport> {
    row.signature_report.as_deref().and_then(|s| serde_json::from_str::<SignatureReport>(s).ok())
}

/// The letter as the gate sees it (who sent it, to whom).
fn view_of(row: &ReferralRow) -> Result<LetterView, ApiError> {
    let code = |c: &str| {
        c.parse::<FacilityCode>()
            .map_err(|e| ApiError::internal(format!("referral {}: stored facility {c:?}: {e}", row.id)))
    };
    Ok(LetterView { sender: code(&row.sender)?, addressee: code(&row.addressee)? })
}

/// A refusal of the gate about a letter as the caller is told it: a letter of other facilities
/// answers exactly like a missing one (404); anything else is 403 with the reason. `what` says
/// what was refused, for the profession's message.
fn letter_refusal(actor: &Actor, id: &str, reason: &DenyReason, what: &str) -> ApiError {
    match reason {
        DenyReason::NotReferralParty => ApiError::new(ErrorKind::NotFound, format!("紹介状 {id} は見つかりません")),
        DenyReason::ProfessionClass => ApiError::new(
            ErrorKind::Forbidden,
            match actor {
                Actor::User(u) => format!("{}は{what}", u.profession.label_ja()),
                _ => format!("この利用者は{what}"),
            },
        ),
        other => ApiError::new(ErrorKind::Forbidden, other.message_ja()),
    }
}

/// A refusal of the gate to send a letter (as `sender`, when known), as the caller is told it.
fn send_refusal(actor: &Actor, reason: &DenyReason, sender: Option<FacilityCode>) -> ApiError {
    match (reason, sender, actor.facility()) {
        (DenyReason::StaffOnly, ..) => ApiError::new(ErrorKind::Forbidden, "紹介状は医療機関の職員のみ送信できます"),
        (DenyReason::ProfessionClass, ..) => letter_refusal(actor, "", reason, "診療情報提供書を作成・送信できません"),
        (DenyReason::OtherFacility, Some(f), Some(own)) => ApiError::at(
            ErrorKind::Forbidden,
            "document.identifier",
            format!(
                "文書の医療機関番号 {f} は、この利用者の医療機関 {own} と一致しません。他の医療機関の紹介状は送信できません。"
            ),
        ),
        (other, ..) => ApiError::new(ErrorKind::Forbidden, other.message_ja()),
    }
}

/// A refusal of the gate to list a box, as the caller is told it.
fn list_refusal(reason: &DenyReason) -> ApiError {
    match reason {
        DenyReason::OtherFacility => ApiError::new(ErrorKind::Forbidden, "他の医療機関の受信箱・送信箱は見られません"),
        DenyReason::StaffOnly => {
            ApiError::new(ErrorKind::Forbidden, "紹介状の受信箱・送信箱は医療機関の職員のみ使えます")
        }
        other => ApiError::new(ErrorKind::Forbidden, other.message_ja()),
    }
}

/// The file type the bytes are, by their signature (magic number).
pub fn sniff_file_type(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if data.starts_with(b"II*\0") || data.starts_with(b"MM\0*") {
        Some("image/tiff")
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some("image/gif")
    } else {
        None
    }
}

/// A file name safe to store and to offer back: the last path component, no control
/// characters, at most 120 characters.
pub fn clean_filename(name: &str, seq: usize) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|c| !c.is_control() && *c != '"').take(120).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    if cleaned.is_empty() { format!("attachment-{}", seq + 1) } else { cleaned }
}

/// Checks the files: count, sizes, declared type against the bytes.
pub fn check_files(files: &[NewFile]) -> Result<Vec<(String, &'static str)>, ApiError> {
    if files.len() > MAX_FILES {
        return Err(ApiError::at(
            ErrorKind::PayloadTooLarge,
            "attachments",
            format!("添付できるファイルは {MAX_FILES} 個までです（{} 個）", files.len()),
        ));
    }
    let total: usize = files.iter().map(|f| f.data.len()).sum();
    if total > MAX_FILES_TOTAL_BYTES {
        return Err(ApiError::at(
            ErrorKind::PayloadTooLarge,
            "attachments",
            format!("添付ファイルの合計が大きすぎます（上限 {} MB）", MAX_FILES_TOTAL_BYTES / (1024 * 1024)),
        ));
    }
    let mut out = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let at = format!("attachments[{i}]");
        let name = clean_filename(&f.filename, i);
        if f.data.is_empty() {
            return Err(ApiError::at(ErrorKind::BadRequest, at, format!("添付ファイル {name} が空です")));
        }
        if f.data.len() > MAX_FILE_BYTES {
            return Err(ApiError::at(
                ErrorKind::PayloadTooLarge,
                at,
                format!("添付ファイル {name} が大きすぎます（1 ファイル {} MB まで）", MAX_FILE_BYTES / (1024 * 1024)),
            ));
        }
        let declared = f.content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let Some((allowed, label)) = FILE_TYPES.iter().find(|(t, _)| *t == declared) else {
            let list: Vec<&str> = FILE_TYPES.iter().map(|(_, l)| *l).collect();
            return Err(ApiError::at(
                ErrorKind::UnsupportedMediaType,
                format!("{at}.contentType"),
                format!(
                    "添付ファイル {name} の種類 {:?} は受け付けていません（{} のみ）",
                    f.content_type,
                    list.join("・")
                ),
            ));
        };
        if sniff_file_type(&f.data) != Some(allowed) {
            return Err(ApiError::at(
                ErrorKind::UnsupportedMediaType,
                format!("{at}.data"),
                format!("添付ファイル {name} の内容が {label} ではありません（宣言された種類と中身が一致しません）"),
            ));
        }
        out.push((name, *allowed));
    }
    Ok(out)
}

fn composition_type(bundle: &Value) -> Option<&str> {
    let comp = bundle.pointer("/entry/0/resource").filter(|r| r["resourceType"] == "Composition")?;
    musubi_fhir::json::codings(&comp["type"]).map(|(_, c)| c).next()
}

/// The document's entry a reference (fullUrl) points at.
fn entry_by_url<'a>(bundle: &'a Value, url: &str) -> Option<&'a Value> {
    bundle["entry"].as_array()?.iter().find(|e| e["fullUrl"].as_str() == Some(url)).map(|e| &e["resource"])
}

fn summary_of(bundle: &Value) -> StoredSummary {
    let patient = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Patient")
        .map(|p| {
            // The one reader of names (by representation, never by position).
            let n = musubi_record::identity::names(p);
            ReferralPatient {
                name: n.kanji.or(n.romaji),
                kana: n.kana,
                birth_date: p["birthDate"].as_str().map(str::to_owned),
                gender: p["gender"].as_str().map(str::to_owned),
            }
        })
        .unwrap_or_default();
    let comp = bundle.pointer("/entry/0/resource").cloned().unwrap_or(Value::Null);
    // The author: the Practitioner of the 紹介元 section (920), else the Composition's author.
    let from_section = comp["section"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| musubi_fhir::json::codings(&s["code"]).any(|(_, c)| c == "920"))
        .flat_map(|s| s["entry"].as_array().into_iter().flatten())
        .chain(comp["author"].as_array().into_iter().flatten())
        .filter_map(|r| r["reference"].as_str())
        .filter_map(|u| entry_by_url(bundle, u))
        .find(|r| r["resourceType"] == "Practitioner")
        .and_then(|p| musubi_record::identity::names(p).display().map(str::to_owned));
    StoredSummary {
        patient,
        title: comp["title"].as_str().map(str::to_owned),
        author: from_section,
        document_date: comp["date"].as_str().map(str::to_owned),
        has_discharge_summary: false,
        files: Vec::new(),
    }
}

fn patient_of(bundle: &Value) -> Option<&Value> {
    bundle["entry"].as_array()?.iter().map(|e| &e["resource"]).find(|r| r["resourceType"] == "Patient")
}

/// Whether two documents are about the same patient: the same local patient id, else the same
/// insurance identity, else the same kanji name and birth date.
fn same_patient(a: &Value, b: &Value) -> bool {
    use musubi_fhir::classify::{insurance_id, local_patient_id};
    let (Some(a), Some(b)) = (patient_of(a), patient_of(b)) else { return false };
    if let (Some(x), Some(y)) = (local_patient_id(a), local_patient_id(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (insurance_id(a), insurance_id(b)) {
        return x == y;
    }
    let kanji = |p: &Value| musubi_record::identity::names(p).kanji;
    kanji(a).is_some() && kanji(a) == kanji(b) && a["birthDate"] == b["birthDate"]
}

/// When a referral sent at `created` is deleted at the latest: the same time of day,
/// [`KEEP_MONTHS`] calendar months later (in Japan time).
pub fn expiry_of(created: i64) -> i64 {
    let Some(d) = datetime::jst_date(created) else { return created };
    let later = musubi_domain::retention::add_months(d, KEEP_MONTHS);
    created + (later - d).whole_days() * 86_400_000
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// A document Bundle of the expected type, parsed and validated.
struct Document {
    value: Value,
    identifier: BundleIdentifier,
}

fn parse_document(bytes: &[u8], at: &str, expected_type: &str, what: &str) -> Result<Document, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::at(
            ErrorKind::BadRequest,
            at,
            format!("{what}の JSON を読めません: {e}（{} 行 {} 列）", e.line(), e.column()),
        )
    })?;
    parse_document_value(value, at, expected_type, what)
}

fn parse_document_value(value: Value, at: &str, expected_type: &str, what: &str) -> Result<Document, ApiError> {
    if value["resourceType"] != "Bundle" || value["type"] != "document" {
        return Err(ApiError::at(
            ErrorKind::Unprocessable,
            at,
            format!("{what}は document 型の Bundle で送ってください（文書種別 {expected_type}）"),
        ));
    }
    match composition_type(&value) {
        Some(t) if t == expected_type => {}
        other => {
            return Err(ApiError::at(
                ErrorKind::Unprocessable,
                format!("{at}.entry[0].resource.type"),
                format!(
                    "{what}の Composition の文書種別は {expected_type} でなければなりません（実際は {}）",
                    other.unwrap_or("なし")
                ),
            ));
        }
    }
    let issues = musubi_validate::Validator::shared().validate_bundle(&value);
    let mapped = to_outcome_issues(&issues, None);
    if musubi_validate::has_errors(&issues) {
        return Err(ApiError { kind: ErrorKind::Unprocessable, issues: mapped });
    }
    let key = value.pointer("/identifier/value").and_then(Value::as_str).unwrap_or("");
    let identifier: BundleIdentifier = key.parse().map_err(|e: musubi_domain::DomainError| {
        ApiError::at(
            ErrorKind::Unprocessable,
            format!("{at}.identifier.value"),
            format!("Bundle 識別子が不正です: {e}"),
        )
    })?;
    Ok(Document { value, identifier })
}

/// A JP-CLINS document Bundle being stored as a submission, as [`Service::referral_delivery`]
/// needs it.
pub(crate) struct Submitted<'a> {
    /// The document.
    pub doc: &'a Value,
    /// Its Bundle identifier.
    pub key: &'a str,
    /// The facility of the identifier (the sender).
    pub sender: FacilityCode,
    /// The id it is stored under.
    pub bundle_id: &'a str,
    /// The source patient it is filed under.
    pub patient_id: &'a str,
    /// That patient's person.
    pub person_id: Option<String>,
    /// Now (epoch ms): when the letter is delivered.
    pub now: i64,
    /// When the network received the document (epoch ms): its 6 months run from then, as the
    /// stored document's retention does (an earlier identical submission that reached no inbox
    /// is delivered later, but not kept longer).
    pub registered: i64,
    /// Where the document is in the request (`Bundle`, `Bundle.entry[2].resource`).
    pub at: &'a str,
}

/// What becomes of a 診療情報提供書 submitted as a FHIR document Bundle.
pub(crate) enum Delivery {
    /// It goes to the addressee's inbox: the referral to write with the document, the audit
    /// record of its sending, and notes for the sender's OperationOutcome.
    New {
        /// The inbox entry.
        row: Box<ReferralRow>,
        /// The audit record of the sending.
        audit: Box<musubi_domain::audit::AuditRecord>,
        /// The addressee.
        addressee: FacilityCode,
        /// What the sender is told.
        notes: Vec<OutcomeIssue>,
    },
    /// It is in an inbox already (its Bundle identifier was delivered before).
    Already {
        /// The referral.
        id: String,
        /// Its addressee.
        addressee: String,
    },
    /// It reaches no inbox; the warning says why.
    NotDelivered(OutcomeIssue),
}

/// Whether a Bundle is a 診療情報提供書 document (its Composition's type is 57133-1).
pub(crate) fn is_referral_document(bundle: &Value) -> bool {
    bundle["type"] == "document" && composition_type(bundle) == Some(REFERRAL_TYPE)
}

/// The warning of a 診療情報提供書 that was stored but reached no inbox.
fn not_delivered(why: impl Into<String>, at: Option<&str>) -> OutcomeIssue {
    OutcomeIssue {
        severity: Severity::Warning,
        code: "incomplete",
        expression: at.map(str::to_owned),
        diagnostics: format!("この診療情報提供書は保存しましたが、紹介先の受信箱には届いていません。{}", why.into()),
        rule: None,
    }
}

/// The warning of a 診療情報提供書 stored as a plain Bundle resource: without the national
/// service's Bundle identifier it cannot be one letter with one identifier, so it reaches no
/// inbox. None when `bundle` is not a 診療情報提供書 or carries that identifier.
pub(crate) fn unidentified_referral_warning(bundle: &Value, at: &str) -> Option<OutcomeIssue> {
    if !is_referral_document(bundle) || crate::Service::is_submission(bundle) {
        return None;
    }
    Some(not_delivered(
        format!(
            "Bundle.identifier が電子カルテ情報共有サービスの Bundle 識別子（system {}、値 医療機関コード^年^番号）ではありません。",
            systems::BUNDLE_IDENTIFIER
        ),
        Some(&format!("{at}.identifier")),
    ))
}

/// Gives a referral document's store write the referral's retention (`retention_end`: 6 months
/// after sending; the sweep removes it sooner once received) and its addressee as recipient (the
/// gate's care relationship "a referral addressed to it").
pub(crate) fn file_as_referral(put: &mut PutResource, retention_end: Option<String>, addressee: Option<FacilityCode>) {
    put.meta.retention_end = retention_end;
    put.meta.keep_last = None;
    if let Some(a) = addressee {
        let entry =
            IndexEntry { param: "recipient", value: IndexValue::Token { system: String::new(), code: a.to_string() } };
        if !put.index.contains(&entry) {
            put.index.push(entry);
        }
    }
}

/// The retention end (JST date) of a referral sent at `now`.
pub(crate) fn referral_retention_end(now: i64) -> Option<String> {
    datetime::jst_date(expiry_of(now)).map(|d| d.to_string())
}

impl Service {
    /// Replaces the trust roots signatures are checked against (takes effect at once).
    pub fn set_trust_roots(&self, roots: TrustRoots) {
        if let Ok(mut g) = self.referral.roots.write() {
            *g = Arc::new(roots);
        }
    }

    /// The trust roots in use.
    pub fn trust_roots(&self) -> Arc<TrustRoots> {
        self.referral.roots.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// Sends a referral (see the module documentation). Returns it as the sender's outbox
    /// shows it.
    pub fn send_referral(&self, ctx: &Ctx, new: NewReferral) -> Result<ReferralSummary, ApiError> {
        let result = self.send_inner(ctx, new, None);
        result.map_err(|e| self.refuse(ctx, AuditAction::Create, "referral-send", None, e))
    }

    /// Replies (返書) to the referral `id`, which must be addressed to the caller's facility.
    /// The reply is addressed to the original sender and linked to the original; replying
    /// marks the original received if it was not yet.
    pub fn reply_referral(&self, ctx: &Ctx, id: &str, new: NewReferral) -> Result<ReferralSummary, ApiError> {
        let result = (|| {
            let iid = id.to_owned();
            let original = self.store.read(|r| r.referral(&iid))?;
            let Some(original) = original else {
                return Err(ApiError::new(ErrorKind::NotFound, format!("紹介状 {id} は見つかりません")));
            };
            match decide_referral(&ctx.actor, &ReferralOp::Reply(view_of(&original)?)) {
                Decision::Allow(_) => {}
                Decision::Deny(DenyReason::NotAddressee) => {
                    return Err(ApiError::new(ErrorKind::Forbidden, "返書は紹介先の医療機関だけが作成できます"));
                }
                Decision::Deny(r) => {
                    return Err(letter_refusal(&ctx.actor, id, &r, "診療情報提供書を作成・送信できません"));
                }
            }
            if original.deleted_reason.as_deref() == Some(WITHDRAWN) {
                return Err(ApiError::new(ErrorKind::Gone, "元の紹介状は紹介元が取り下げたため、返書は送れません"));
            }
            if original.deleted_at.is_some() {
                return Err(ApiError::new(ErrorKind::Gone, "元の紹介状は保存期間の経過により削除されています"));
            }
            if let Some(a) = new.addressee.as_deref()
                && a != original.sender
            {
                return Err(ApiError::at(
                    ErrorKind::Unprocessable,
                    "addressee",
                    format!("返書の宛先は紹介元 {} です（{a} が指定されました）", original.sender),
                ));
            }
            let new = NewReferral { addressee: Some(original.sender.clone()), ..new };
            self.send_inner(ctx, new, Some(original))
        })();
        result.map_err(|e| self.refuse(ctx, AuditAction::Create, "referral-reply", Some(format!("referral={id}")), e))
    }

    fn send_inner(
        &self,
        ctx: &Ctx,
        new: NewReferral,
        reply_to: Option<ReferralRow>,
    ) -> Result<ReferralSummary, ApiError> {
        // Refused before the document is even read when the actor may send no letter at all.
        if let Decision::Deny(r) = may_send_referrals(&ctx.actor) {
            return Err(send_refusal(&ctx.actor, &r, None));
        }
        let now = datetime::now_ms();
        let roots = self.trust_roots();

        // The document: as sent beside the signature, or from inside it.
        let (doc_bytes, report) = match (&new.signature, &new.document) {
            (Some(sig), detached) => {
                let v = crate::signature::verify(sig, detached.as_deref(), &roots, now);
                let bytes = match (detached, v.enveloped.clone()) {
                    (Some(d), _) => d.clone(),
                    (None, Some(inner)) => inner,
                    (None, None) => {
                        return Err(ApiError::at(
                            ErrorKind::BadRequest,
                            "document",
                            format!("文書本体がありません（署名から取り出せません: {}）", v.report.message),
                        ));
                    }
                };
                (bytes, v.report)
            }
            (None, Some(d)) => (d.clone(), SignatureReport::unsigned(now)),
            (None, None) => {
                return Err(ApiError::at(ErrorKind::BadRequest, "document", "診療情報提供書（document）がありません"));
            }
        };
        let doc = parse_document(&doc_bytes, "document", REFERRAL_TYPE, "診療情報提供書")?;
        // The letter is the facility's of its Bundle identifier; the actor must act for it.
        let sender = doc.identifier.facility();
        if let Decision::Deny(r) = decide_referral(&ctx.actor, &ReferralOp::Send(sender)) {
            return Err(send_refusal(&ctx.actor, &r, Some(sender)));
        }

        // The addressee: as given, checked against the document's 紹介先.
        let named = referral_recipients(&doc.value);
        let addressee_code = match (&new.addressee, named.as_slice()) {
            (Some(a), _) => a.trim().to_owned(),
            (None, [only]) => only.clone(),
            (None, []) => {
                return Err(ApiError::at(
                    ErrorKind::Unprocessable,
                    "addressee",
                    "宛先（addressee: 紹介先の医療機関コード）を指定してください（文書に紹介先の医療機関番号がありません）",
                ));
            }
            (None, _) => {
                return Err(ApiError::at(
                    ErrorKind::Unprocessable,
                    "addressee",
                    format!("文書に紹介先が複数あります（{}）。宛先（addressee）を指定してください", named.join(", ")),
                ));
            }
        };
        let addressee: FacilityCode = addressee_code.parse().map_err(|e: musubi_domain::DomainError| {
            ApiError::at(
                ErrorKind::Unprocessable,
                "addressee",
                format!("宛先の医療機関コード {addressee_code:?} が不正です: {e}"),
            )
        })?;
        if !named.is_empty() && !named.iter().any(|n| n == addressee.as_str()) {
            return Err(ApiError::at(
                ErrorKind::Unprocessable,
                "addressee",
                format!("宛先 {addressee} は文書の紹介先（{}）と一致しません", named.join(", ")),
            ));
        }
        if addressee == sender {
            return Err(ApiError::at(ErrorKind::Unprocessable, "addressee", "自施設あてには送信できません"));
        }
        let code = addressee.to_string();
        let addressee_row = self.store.read(|r| r.facility(&code))?;
        if addressee_row.is_none() {
            return Err(ApiError::at(
                ErrorKind::Unprocessable,
                "addressee",
                format!("宛先の医療機関 {addressee} はネットワークに登録されていません"),
            ));
        }

        let files = check_files(&new.files)?;
        let discharge = match new.discharge_summary {
            Some(v) => {
                let d = parse_document_value(v, "discharge_summary", DISCHARGE_TYPE, "退院時サマリー")?;
                if d.identifier.facility() != sender {
                    return Err(ApiError::at(
                        ErrorKind::Unprocessable,
                        "discharge_summary.identifier",
                        "退院時サマリーは紹介状と同じ医療機関の文書でなければなりません",
                    ));
                }
                if !same_patient(&doc.value, &d.value) {
                    return Err(ApiError::at(
                        ErrorKind::Unprocessable,
                        "discharge_summary.entry",
                        "退院時サマリーの患者が診療情報提供書の患者と一致しません",
                    ));
                }
                Some(d)
            }
            None => None,
        };

        // Each Bundle identifier is one letter: a second sending of the same one is refused.
        let key = doc.identifier.to_string();
        let dkey = discharge.as_ref().map(|d| d.identifier.to_string());
        let (exists, dexists) = self.store.read(|r| {
            Ok((
                r.bundle_submission(&key)?.is_some(),
                match &dkey {
                    Some(k) => r.bundle_submission(k)?.is_some(),
                    None => false,
                },
            ))
        })?;
        if exists || dexists {
            return Err(ApiError::at(
                ErrorKind::Conflict,
                if exists { "document.identifier" } else { "discharge_summary.identifier" },
                format!(
                    "Bundle 識別子 {} の文書は既に登録されています。新しい紹介状には新しい Bundle 識別子を付けてください",
                    if exists { key.clone() } else { dkey.clone().unwrap_or_default() }
                ),
            ));
        }

        // The stored resources: the source patient, the referral Bundle, the discharge summary.
        let persons = Persons::new(&self.store);
        let mut batch = WriteBatch::default();
        let patient = doc.value["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .find(|(_, e)| e["resource"]["resourceType"] == "Patient")
            .map(|(i, e)| (i, e["resource"].clone()))
            .ok_or_else(|| ApiError::at(ErrorKind::Unprocessable, "document.entry", "文書に Patient がありません"))?;
        let (patient_id, patient_put) = self.upsert_source_patient(
            ctx,
            sender,
            patient.1,
            now,
            &format!("document.entry[{}].resource", patient.0),
        )?;
        batch.puts.extend(patient_put);
        let expires = expiry_of(now);
        let retention_end = referral_retention_end(now);
        let mut summary = summary_of(&doc.value);
        let doc_hash = musubi_fhir::sha256_hex(doc.value.to_string().as_bytes());
        let bundle_id = new_id();
        let put = self.document_put(
            ctx,
            &persons,
            &bundle_id,
            &key,
            doc.value,
            &patient_id,
            retention_end.clone(),
            Some(addressee),
            "document",
            now,
        )?;
        let person_id = put.meta.person_id.clone();
        batch.puts.push(put);
        let mut discharge_id = None;
        if let Some(d) = discharge {
            // The summary is about the same patient: it is filed under the same source patient.
            let did = new_id();
            let dk = d.identifier.to_string();
            let content_hash = musubi_fhir::sha256_hex(d.value.to_string().as_bytes());
            let put = self.document_put(
                ctx,
                &persons,
                &did,
                &dk,
                d.value,
                &patient_id,
                retention_end.clone(),
                None,
                "discharge_summary",
                now,
            )?;
            batch.puts.push(put);
            batch.bundles.push(BundleOp::Put(BundleSubmission {
                bundle_key: dk,
                facility: sender.to_string(),
                kind: "document".into(),
                bundle_id: Some(did.clone()),
                content_hash,
                received: now,
            }));
            summary.has_discharge_summary = true;
            discharge_id = Some(did);
        }
        batch.bundles.push(BundleOp::Put(BundleSubmission {
            bundle_key: key.clone(),
            facility: sender.to_string(),
            kind: "document".into(),
            bundle_id: Some(bundle_id.clone()),
            content_hash: doc_hash,
            received: now,
        }));

        let id = new_id();
        let mut attachments = Vec::with_capacity(files.len());
        for (i, (f, (name, ctype))) in new.files.iter().zip(files).enumerate() {
            let seq = i64::try_from(i).unwrap_or(i64::MAX);
            let sha = musubi_fhir::sha256_hex(&f.data);
            let size = i64::try_from(f.data.len()).unwrap_or(i64::MAX);
            summary.files.push(FileInfo {
                seq,
                filename: name.clone(),
                content_type: ctype.to_owned(),
                size,
                sha256: sha.clone(),
            });
            attachments.push(AttachmentRow {
                referral_id: id.clone(),
                seq,
                filename: name,
                content_type: ctype.to_owned(),
                size,
                sha256: sha,
                data: Some(b64(&f.data)),
            });
        }
        let detached = new.signature.is_some() && new.document.is_some();
        let row = ReferralRow {
            id: id.clone(),
            sender: sender.to_string(),
            addressee: addressee.to_string(),
            bundle_id: Some(bundle_id.clone()),
            bundle_key: Some(key.clone()),
            discharge_id: discharge_id.clone(),
            patient_id: Some(patient_id.clone()),
            person_id,
            reply_to: reply_to.as_ref().map(|o| o.id.clone()),
            summary: Some(serde_json::to_string(&summary).map_err(ApiError::internal)?),
            created: now,
            created_by: ctx.actor.name().to_owned(),
            expires,
            received_at: None,
            received_by: None,
            received_by_name: None,
            signature_status: report.status.code().into(),
            signature_report: Some(serde_json::to_string(&report).map_err(ApiError::internal)?),
            signature: new.signature.as_deref().map(|s| b64(&crate::signature::signature_der(s))),
            signed_content: if detached { Some(b64(&doc_bytes)) } else { None },
            deleted_at: None,
            deleted_reason: None,
            withdrawn_by: None,
        };
        let receipt = match &reply_to {
            Some(o) if o.received_at.is_none() => Some(self.receipt_of(ctx, &o.id, now)),
            _ => None,
        };
        let mut a = self.audit_record(
            ctx,
            AuditAction::Create,
            if reply_to.is_some() { "referral-reply" } else { "referral-send" },
            AuditOutcome::Success,
        );
        a.patient = Some(patient_id.clone());
        a.entities = std::iter::once(format!("Bundle/{bundle_id}"))
            .chain(discharge_id.iter().map(|d| format!("Bundle/{d}")))
            .collect();
        a.query = Some(format!(
            "referral={id}&addressee={addressee}&signature={}{}",
            report.status.code(),
            reply_to.as_ref().map(|o| format!("&reply-to={}", o.id)).unwrap_or_default()
        ));
        batch.audit.push(a);
        let written = crate::mpi::WrittenPatient::of(&batch.puts);
        self.store.create_referral(batch, row.clone(), attachments, receipt)?;
        self.link_written(ctx, written);
        let names = self.facility_names([row.sender.as_str(), row.addressee.as_str()])?;
        Ok(self.summarize(&row, &names, &[]))
    }

    /// The store write for a document Bundle of a referral, filed under `patient_id`, with the
    /// referral's retention and the addressee indexed as its recipient (the gate's care
    /// relationship "a referral addressed to it").
    #[allow(clippy::too_many_arguments)]
    fn document_put(
        &self,
        ctx: &Ctx,
        persons: &Persons,
        id: &str,
        key: &str,
        body: Value,
        patient_id: &str,
        retention_end: Option<String>,
        addressee: Option<FacilityCode>,
        at: &str,
        now: i64,
    ) -> Result<PutResource, ApiError> {
        let mut put = prepare(
            Prep {
                persons,
                actor: &ctx.actor,
                rtype: ResourceType::Bundle,
                id: id.to_owned(),
                version: 1,
                expect: Expect::Absent,
                now,
                bundle_key: Some(key.to_owned()),
                at: at.to_owned(),
            },
            body,
        )?;
        put.meta.patient_id = Some(patient_id.to_owned());
        put.meta.person_id = Some(persons.of(patient_id)?);
        file_as_referral(&mut put, retention_end, addressee);
        Ok(put)
    }

    /// What becomes of a 診療情報提供書 submitted as a FHIR document Bundle (`POST /Bundle`, or
    /// a `POST Bundle` entry of a transaction): the inbox entry `send_referral` would make for
    /// it, when the document names exactly one addressee facility (its 紹介先 Organization with a
    /// 医療機関コード) that is registered and the gate lets the caller send as the document's
    /// facility; otherwise the warning that says why it reached no inbox (the document is
    /// stored all the same). The document itself was validated as a submission already, which
    /// is the validation `send_referral` applies.
    pub(crate) fn referral_delivery(&self, ctx: &Ctx, s: &Submitted<'_>) -> Result<Delivery, ApiError> {
        let key = s.key.to_owned();
        if let Some(row) = self.store.read(|r| r.referral_by_bundle_key(&key))? {
            return Ok(Delivery::Already { id: row.id, addressee: row.addressee });
        }
        if let Decision::Deny(r) = decide_referral(&ctx.actor, &ReferralOp::Send(s.sender)) {
            let why = send_refusal(&ctx.actor, &r, Some(s.sender)).summary();
            return Ok(Delivery::NotDelivered(not_delivered(format!("{why}。"), None)));
        }
        let at = format!("{}.entry[0].resource.section", s.at);
        let named = referral_recipients(s.doc);
        let code = match named.as_slice() {
            [only] => only.clone(),
            [] => {
                return Ok(Delivery::NotDelivered(not_delivered(
                    "文書の紹介先情報セクション（910）に、医療機関番号のある紹介先医療機関（Organization）がありません。\
                     紹介先を記載して同じ Bundle 識別子で再送信するか、新しい Bundle 識別子で宛先を指定して /api/referrals から送信してください。",
                    Some(&at),
                )));
            }
            _ => {
                return Ok(Delivery::NotDelivered(not_delivered(
                    format!(
                        "文書に紹介先の医療機関が複数あり（{}）、宛先を1つに決められません。\
                         紹介先を1つにして同じ Bundle 識別子で再送信してください。",
                        named.join("、")
                    ),
                    Some(&at),
                )));
            }
        };
        let addressee: FacilityCode = match code.parse() {
            Ok(c) => c,
            Err(e) => {
                return Ok(Delivery::NotDelivered(not_delivered(
                    format!("紹介先の医療機関番号 {code:?} が不正です: {e}"),
                    Some(&at),
                )));
            }
        };
        if addressee == s.sender {
            return Ok(Delivery::NotDelivered(not_delivered(
                format!("紹介先 {addressee} が紹介元（Bundle 識別子の医療機関）と同じです。"),
                Some(&at),
            )));
        }
        let registered = self.facility_names([addressee.as_str()])?;
        let Some(name) = registered.get(addressee.as_str()) else {
            return Ok(Delivery::NotDelivered(not_delivered(
                format!(
                    "紹介先の医療機関 {addressee} はネットワークに登録されていません。\
                     運営事務局に登録を依頼し、登録後に同じ Bundle をもう一度送信してください。"
                ),
                Some(&at),
            )));
        };

        // A FHIR document carries its own signature element (XML-DSig or JWT), which Musubi does
        // not verify: the letter is shown as unsigned, and the sender is told so.
        let mut notes = Vec::new();
        let report = if s.doc.get("signature").is_some() {
            notes.push(OutcomeIssue {
                severity: Severity::Warning,
                code: "not-supported",
                expression: Some(format!("{}.signature", s.at)),
                diagnostics:
                    "Bundle.signature（XML-DSig・JWT）は検証していません。受信箱では「署名なし」と表示されます。\
                              検証される電子署名（CMS）を付けるには /api/referrals から送信してください。"
                        .into(),
                rule: None,
            });
            SignatureReport {
                message: "Bundle.signature は検証していません（Musubi が検証するのは /api/referrals で送られた CMS 署名です）"
                    .into(),
                ..SignatureReport::unsigned(s.now)
            }
        } else {
            SignatureReport::unsigned(s.now)
        };
        let id = new_id();
        let row = ReferralRow {
            id: id.clone(),
            sender: s.sender.to_string(),
            addressee: addressee.to_string(),
            bundle_id: Some(s.bundle_id.to_owned()),
            bundle_key: Some(key.clone()),
            discharge_id: None,
            patient_id: Some(s.patient_id.to_owned()),
            person_id: s.person_id.clone(),
            reply_to: None,
            summary: Some(serde_json::to_string(&summary_of(s.doc)).map_err(ApiError::internal)?),
            created: s.now,
            created_by: ctx.actor.name().to_owned(),
            expires: expiry_of(s.registered),
            received_at: None,
            received_by: None,
            received_by_name: None,
            signature_status: report.status.code().into(),
            signature_report: Some(serde_json::to_string(&report).map_err(ApiError::internal)?),
            signature: None,
            signed_content: None,
            deleted_at: None,
            deleted_reason: None,
            withdrawn_by: None,
        };
        notes.push(OutcomeIssue {
            severity: Severity::Information,
            code: "informational",
            expression: None,
            diagnostics: format!("診療情報提供書を紹介先 {name}（{addressee}）の受信箱に届けました（紹介状 {id}）"),
            rule: None,
        });
        let mut a = self.audit_record(ctx, AuditAction::Create, "referral-send", AuditOutcome::Success);
        a.patient = Some(s.patient_id.to_owned());
        a.entities = vec![format!("Bundle/{}", s.bundle_id)];
        a.query = Some(format!("referral={id}&addressee={addressee}&signature={}&via=Bundle", report.status.code()));
        Ok(Delivery::New { row: Box::new(row), audit: Box::new(a), addressee, notes })
    }

    /// The registry names of some facilities (only those: the registry may hold every
    /// facility of the country).
    fn facility_names<'a>(
        &self,
        codes: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, String>, ApiError> {
        let codes: BTreeSet<String> = codes.into_iter().map(str::to_owned).collect();
        Ok(self.store.read(|r| {
            let mut out = HashMap::new();
            for c in &codes {
                if let Some(f) = r.facility(c)? {
                    out.insert(f.code, f.name);
                }
            }
            Ok(out)
        })?)
    }

    /// The person a referral's patient is now linked to (the MPI may have linked or merged
    /// since it was sent), for the audit record the patient's access history reads.
    fn current_person(&self, patient_id: &Option<String>) -> Option<String> {
        let pid = patient_id.clone()?;
        self.store.read(|r| r.person_of_patient(&pid)).ok().flatten()
    }

    fn receipt_of(&self, ctx: &Ctx, id: &str, at: i64) -> Receipt {
        let by_name = match &ctx.actor {
            Actor::User(u) => format!("{}（{}）", u.name, u.profession.label_ja()),
            Actor::System { name, .. } => format!("{name}（システム）"),
            other => other.name().to_owned(),
        };
        Receipt { referral_id: id.to_owned(), at, by: ctx.actor.name().to_owned(), by_name }
    }

    fn summarize(&self, row: &ReferralRow, names: &HashMap<String, String>, replies: &[String]) -> ReferralSummary {
        let name = |code: &str| names.get(code).cloned();
        let stored: Option<StoredSummary> = row.summary.as_deref().and_then(|s| serde_json::from_str(s).ok());
        let status = if row.deleted_reason.as_deref() == Some(WITHDRAWN) {
            ReferralStatus::Withdrawn
        } else if row.deleted_at.is_some() {
            ReferralStatus::Deleted
        } else if row.received_at.is_some() {
            ReferralStatus::Received
        } else {
            ReferralStatus::Sent
        };
        let signature = SignatureStatus::from_code(&row.signature_status).unwrap_or(SignatureStatus::InvalidSignature);
        let delete_after = match row.deleted_at {
            Some(_) => None,
            None => Some(row.received_at.map_or(row.expires, |r| (r + KEEP_AFTER_RECEIPT_MS).min(row.expires))),
        };
        let s = stored.unwrap_or_default();
        ReferralSummary {
            id: row.id.clone(),
            status,
            status_label: status.label_ja(),
            sender: FacilityRef { code: row.sender.clone(), name: name(&row.sender) },
            addressee: FacilityRef { code: row.addressee.clone(), name: name(&row.addressee) },
            patient: row.summary.as_ref().filter(|_| status != ReferralStatus::Withdrawn).map(|_| s.patient.clone()),
            title: s.title,
            author: s.author,
            document_date: s.document_date,
            created: row.created,
            created_by: row.created_by.clone(),
            received_at: row.received_at,
            received_by: row.received_by.clone(),
            received_by_name: row.received_by_name.clone(),
            delete_after,
            deleted_at: row.deleted_at,
            deleted_reason: row.deleted_reason.clone(),
            withdrawn_by: row.withdrawn_by.clone(),
            signature: SignatureBadge { status: signature, label: signature.label_ja() },
            reply_to: row.reply_to.clone(),
            replies: replies.to_vec(),
            has_discharge_summary: s.has_discharge_summary,
            files: s.files,
        }
    }

    /// The facility a list is for: the one named, else the caller's own; the gate decides
    /// whether the caller may list it.
    fn list_facility(&self, ctx: &Ctx, facility: Option<&str>, inbox: bool) -> Result<String, ApiError> {
        let named = facility
            .map(|f| {
                f.parse::<FacilityCode>().map_err(|e| {
                    ApiError::at(ErrorKind::BadRequest, "facility", format!("医療機関コード {f:?} が不正です: {e}"))
                })
            })
            .transpose()?;
        let f = match (named, ctx.actor.facility()) {
            (Some(f), _) | (None, Some(f)) => f,
            (None, None) if ctx.actor.is_privileged() => {
                return Err(ApiError::at(
                    ErrorKind::BadRequest,
                    "facility",
                    "どの医療機関の一覧かを facility で指定してください",
                ));
            }
            // A patient or proxy: no box is theirs, and the gate refuses them every box.
            (None, None) => return Err(list_refusal(&DenyReason::StaffOnly)),
        };
        let op = if inbox { ReferralOp::ListInbox(f) } else { ReferralOp::ListOutbox(f) };
        match decide_referral(&ctx.actor, &op) {
            Decision::Allow(_) => Ok(f.to_string()),
            Decision::Deny(r) => Err(list_refusal(&r)),
        }
    }

    /// The referrals addressed to the caller's facility (`facility` for administrators),
    /// newest first; withdrawn ones always (the addressee must see that a letter was taken
    /// back), ones deleted by retention only when `include_deleted`.
    pub fn referral_inbox(
        &self,
        ctx: &Ctx,
        facility: Option<&str>,
        include_deleted: bool,
    ) -> Result<Vec<ReferralSummary>, ApiError> {
        self.referral_list(ctx, facility, include_deleted, true)
    }

    /// The referrals the caller's facility sent (`facility` for administrators), newest first,
    /// with their receipt and replies; withdrawn ones always, ones deleted by retention only when
    /// `include_deleted`.
    pub fn referral_outbox(
        &self,
        ctx: &Ctx,
        facility: Option<&str>,
        include_deleted: bool,
    ) -> Result<Vec<ReferralSummary>, ApiError> {
        self.referral_list(ctx, facility, include_deleted, false)
    }

    fn referral_list(
        &self,
        ctx: &Ctx,
        facility: Option<&str>,
        include_deleted: bool,
        inbox: bool,
    ) -> Result<Vec<ReferralSummary>, ApiError> {
        let subtype = if inbox { "referral-inbox" } else { "referral-outbox" };
        let result = (|| {
            let f = self.list_facility(ctx, facility, inbox)?;
            let (to, from) =
                self.store.read(|r| Ok((r.referrals_to(&f, LIST_LIMIT)?, r.referrals_from(&f, LIST_LIMIT)?)))?;
            let names = self
                .facility_names(to.iter().chain(from.iter()).flat_map(|r| [r.sender.as_str(), r.addressee.as_str()]))?;
            // Replies to what this facility sent are in its inbox, and the other way round.
            let (rows, answers) = if inbox { (to, from) } else { (from, to) };
            let out: Vec<ReferralSummary> = rows
                .iter()
                .filter(|r| include_deleted || r.deleted_at.is_none() || r.deleted_reason.as_deref() == Some(WITHDRAWN))
                .map(|r| {
                    let replies: Vec<String> = answers
                        .iter()
                        .filter(|a| a.reply_to.as_deref() == Some(r.id.as_str()))
                        .map(|a| a.id.clone())
                        .collect();
                    self.summarize(r, &names, &replies)
                })
                .collect();
            let mut a = self.audit_record(ctx, AuditAction::Read, subtype, AuditOutcome::Success);
            a.query = Some(format!("facility={f}&count={}", out.len()));
            self.audit(vec![a])?;
            Ok(out)
        })();
        result.map_err(|e| self.refuse(ctx, AuditAction::Read, subtype, None, e))
    }

    /// Asks the gate whether the caller may open referral `id` (`file`: download one of its
    /// files); audits a refusal. Returns the row and the letter as the gate saw it.
    fn referral_for_reading(
        &self,
        ctx: &Ctx,
        id: &str,
        subtype: &str,
        file: bool,
    ) -> Result<(ReferralRow, LetterView), ApiError> {
        let iid = id.to_owned();
        let row = self.store.read(|r| r.referral(&iid))?;
        let mut a = self.audit_record(ctx, AuditAction::Read, subtype, AuditOutcome::Success);
        a.query = Some(format!("referral={id}"));
        let Some(row) = row else {
            a.outcome = AuditOutcome::MinorFailure;
            a.outcome_text = Some("not found".into());
            self.audit(vec![a])?;
            return Err(ApiError::new(ErrorKind::NotFound, format!("紹介状 {id} は見つかりません")));
        };
        a.patient = row.patient_id.clone();
        a.person = self.current_person(&row.patient_id);
        a.entities = row.bundle_id.iter().map(|b| format!("Bundle/{b}")).collect();
        let view = view_of(&row)?;
        let op = if file { ReferralOp::File(view) } else { ReferralOp::Open(view) };
        if let Decision::Deny(r) = decide_referral(&ctx.actor, &op) {
            // Another facility's letter answers like a missing one; every refusal is recorded
            // as denied, with the patient named (their access history shows the attempt).
            let e = letter_refusal(&ctx.actor, id, &r, "診療情報提供書の内容を閲覧できません");
            a.outcome = AuditOutcome::SeriousFailure;
            a.outcome_text = Some(format!(
                "denied: {}",
                if e.kind == ErrorKind::NotFound { r.message_ja().to_owned() } else { e.summary() }
            ));
            self.audit(vec![a])?;
            return Err(e);
        }
        if let Some(at) = row.deleted_at {
            let withdrawn = row.deleted_reason.as_deref() == Some(WITHDRAWN);
            a.outcome = AuditOutcome::MinorFailure;
            a.outcome_text = Some(if withdrawn { "withdrawn" } else { "deleted" }.into());
            self.audit(vec![a])?;
            if withdrawn {
                let names = self.facility_names([row.sender.as_str()])?;
                return Err(ApiError::new(
                    ErrorKind::Gone,
                    format!(
                        "この紹介状は紹介元（{}）が {} に取り下げました。内容と添付ファイルは閲覧できません",
                        names.get(&row.sender).map_or_else(|| row.sender.clone(), |n| format!("{n} {}", row.sender)),
                        datetime::format_instant(at),
                    ),
                ));
            }
            return Err(ApiError::new(
                ErrorKind::Gone,
                format!(
                    "この紹介状は保存期間の経過により {} に削除されました{}",
                    datetime::format_instant(at),
                    if row.deleted_reason.as_deref() == Some("received+7d") {
                        "（受領から7日経過）"
                    } else {
                        "（送信から6か月経過）"
                    }
                ),
            ));
        }
        Ok((row, view))
    }

    /// Whether this opening marks the letter received: the gate lets the caller receive it
    /// (the addressee's clinicians and system) and nobody has yet.
    fn receives(ctx: &Ctx, row: &ReferralRow, view: LetterView) -> bool {
        row.received_at.is_none() && decide_referral(&ctx.actor, &ReferralOp::MarkReceived(view)).is_allow()
    }

    /// Writes the audit record of an opening; the addressee's first opening also marks the
    /// receipt, in the same transaction. Returns whether it marked.
    fn record_opening(
        &self,
        ctx: &Ctx,
        row: &ReferralRow,
        view: LetterView,
        subtype: &str,
        query: String,
    ) -> Result<bool, ApiError> {
        let mut a = self.audit_record(ctx, AuditAction::Read, subtype, AuditOutcome::Success);
        a.patient = row.patient_id.clone();
        a.person = self.current_person(&row.patient_id);
        a.entities = row.bundle_id.iter().chain(row.discharge_id.iter()).map(|b| format!("Bundle/{b}")).collect();
        a.query = Some(query);
        if Self::receives(ctx, row, view) {
            a.outcome_text = Some("received".into());
            let marked = self
                .store
                .receive_referral(self.receipt_of(ctx, &row.id, datetime::now_ms()), vec![a])
                .map_err(|e| ApiError::internal(format!("referral receipt: {e}")))?;
            return Ok(marked);
        }
        self.audit(vec![a])?;
        Ok(false)
    }

    /// Opens referral `id`: its documents, files and the signature checked now. The first
    /// opening by the addressee marks it received (time and who).
    pub fn open_referral(&self, ctx: &Ctx, id: &str) -> Result<ReferralView, ApiError> {
        let (row, view) = self.referral_for_reading(ctx, id, "referral-open", false)?;
        let result = (|| {
            let names = self.facility_names([row.sender.as_str(), row.addressee.as_str()])?;
            let (bundle, discharge, replies) = self.store.read(|r| {
                let content = |r: &mut musubi_store::Reader<'_>,
                               bid: &Option<String>|
                 -> Result<Option<String>, musubi_store::StoreError> {
                    match bid {
                        Some(b) => {
                            Ok(r.version(ResourceType::Bundle, b, None)?.filter(|v| !v.deleted).and_then(|v| v.content))
                        }
                        None => Ok(None),
                    }
                };
                Ok((content(r, &row.bundle_id)?, content(r, &row.discharge_id)?, r.referral_replies(&row.id)?))
            })?;
            let Some(bundle) = bundle else {
                // Deleted without the referral being marked (by another path than retention or
                // withdrawal): say only that it is gone, not why.
                return Err(ApiError::new(ErrorKind::Gone, "この紹介状の文書は削除されています"));
            };
            let parse = |s: &str| {
                serde_json::from_str::<Value>(s).map_err(|e| ApiError::internal(format!("stored referral JSON: {e}")))
            };
            let document = parse(&bundle)?;
            let discharge_summary = discharge.as_deref().map(parse).transpose()?;
            let signature_report = self.recheck_signature(&row);
            let signature_at_sending = stored_report(&row);
            let receives = Self::receives(ctx, &row, view);
            let marked = self.record_opening(ctx, &row, view, "referral-open", format!("referral={id}"))?;
            let row = if receives {
                // Marked now, or by someone else at the facility a moment earlier: the receipt
                // as stored.
                let iid = id.to_owned();
                self.store.read(|r| r.referral(&iid))?.unwrap_or(row.clone())
            } else {
                row.clone()
            };
            let reply_ids: Vec<String> = replies.iter().map(|r| r.id.clone()).collect();
            Ok(ReferralView {
                summary: self.summarize(&row, &names, &reply_ids),
                document,
                discharge_summary,
                signature_report,
                signature_at_sending,
                patient_id: row.patient_id.clone(),
                bundle_id: row.bundle_id.clone(),
                received_now: marked,
            })
        })();
        result.map_err(|e| match e.kind {
            ErrorKind::Internal | ErrorKind::Unavailable => e,
            _ => self.refuse(ctx, AuditAction::Read, "referral-open", Some(format!("referral={id}")), e),
        })
    }

    /// The signature of a referral checked now, with the current roots, at its receipt by
    /// Musubi.
    fn recheck_signature(&self, row: &ReferralRow) -> SignatureReport {
        let Some(sig) = row.signature.as_deref().and_then(unb64) else {
            // Nothing to check again: the report made at sending (it says why it is unsigned).
            return stored_report(row).unwrap_or_else(|| SignatureReport::unsigned(row.created));
        };
        let detached = row.signed_content.as_deref().and_then(unb64);
        crate::signature::verify(&sig, detached.as_deref(), &self.trust_roots(), row.created).report
    }

    /// Withdraws (取り下げ) referral `id`: deletes its document Bundle by identifier as
    /// [`Service::delete_bundle`] does, which marks the letter withdrawn in the same
    /// transaction. The gate's [`ReferralOp::Withdraw`] decides: the sending facility's
    /// clinicians and system, administrators and the operator; the addressee may not. Returns the letter as the
    /// outbox now lists it.
    pub fn withdraw_referral(&self, ctx: &Ctx, id: &str) -> Result<ReferralSummary, ApiError> {
        let query = format!("referral={id}");
        let result = (|| {
            let iid = id.to_owned();
            let Some(row) = self.store.read(|r| r.referral(&iid))? else {
                return Err(ApiError::new(ErrorKind::NotFound, format!("紹介状 {id} は見つかりません")));
            };
            let view = view_of(&row)?;
            // Another facility's letter answers like a missing one (NotReferralParty).
            if let Decision::Deny(r) = decide_referral(&ctx.actor, &ReferralOp::Withdraw(view)) {
                return Err(match r {
                    DenyReason::OtherFacility => {
                        ApiError::new(ErrorKind::Forbidden, "紹介状を取り下げられるのは紹介元の医療機関だけです")
                    }
                    other => letter_refusal(&ctx.actor, id, &other, "紹介状を取り下げられません"),
                });
            }
            if row.deleted_reason.as_deref() == Some(WITHDRAWN) {
                return Err(ApiError::new(ErrorKind::Gone, "この紹介状はすでに取り下げられています"));
            }
            match (row.deleted_at, row.bundle_key.clone()) {
                (None, Some(key)) => Ok((row, key)),
                _ => Err(ApiError::new(ErrorKind::Gone, "この紹介状は保存期間の経過により削除されています")),
            }
        })();
        let (row, key) = result.map_err(|e| match e.kind {
            ErrorKind::Internal | ErrorKind::Unavailable => e,
            _ => self.refuse(ctx, AuditAction::Delete, "referral-withdraw", Some(query.clone()), e),
        })?;
        // The deletion audits itself, the withdrawal with it (or its refusal).
        self.delete_bundle(ctx, &format!("{}|{key}", systems::BUNDLE_IDENTIFIER))?;
        let iid = id.to_owned();
        let after = self.store.read(|r| r.referral(&iid))?.unwrap_or(row);
        let names = self.facility_names([after.sender.as_str(), after.addressee.as_str()])?;
        Ok(self.summarize(&after, &names, &[]))
    }

    /// The withdrawal (取り下げ) of the delivered letter whose document Bundle identifier is
    /// `key`, if there is one not yet deleted: its attached 退院時サマリー goes into `batch` to be
    /// deleted with it (the caller deletes the letter's own document), with the audit record of
    /// the withdrawal. The caller commits `batch` and the withdrawal together
    /// ([`musubi_store::Store::commit_withdrawing`]).
    pub(crate) fn plan_withdrawal(
        &self,
        ctx: &Ctx,
        key: &str,
        now: i64,
        batch: &mut WriteBatch,
    ) -> Result<Option<Withdrawal>, ApiError> {
        let k = key.to_owned();
        let Some(row) = self.store.read(|r| r.referral_by_bundle_key(&k))? else { return Ok(None) };
        let mut entities: Vec<String> = row.bundle_id.iter().map(|b| format!("Bundle/{b}")).collect();
        if let Some(did) = &row.discharge_id
            && let Some(d) = self.store.current(ResourceType::Bundle, did)?
            && !d.deleted
        {
            if let Decision::Deny(r) =
                crate::access::write_decision(&ctx.actor, musubi_gate::Operation::Delete, &d.view())
            {
                return Err(ApiError::new(ErrorKind::Forbidden, r.message_ja()));
            }
            entities.push(d.key());
            if let Some(dk) = d.meta.bundle_key.clone()
                && dk != key
            {
                batch.bundles.push(BundleOp::Remove(dk));
            }
            batch.deletes.push(musubi_store::DeleteResource {
                rtype: ResourceType::Bundle,
                id: d.id,
                last_updated: now,
                expect_version: Some(d.version),
            });
        }
        // The boxes keep only what names the letter, not the patient nor the files.
        let kept = row.summary.as_deref().and_then(|s| serde_json::from_str::<StoredSummary>(s).ok()).map(|s| {
            StoredSummary { title: s.title, author: s.author, document_date: s.document_date, ..Default::default() }
        });
        let summary =
            kept.map(|k| serde_json::to_string(&k)).transpose().map_err(|e| ApiError::internal(e.to_string()))?;
        let mut a = self.audit_record(ctx, AuditAction::Delete, "referral-withdraw", AuditOutcome::Success);
        a.patient = row.patient_id.clone();
        a.person = self.current_person(&row.patient_id);
        a.entities = entities;
        a.query = Some(format!("referral={}&Bundle?identifier={key}", row.id));
        batch.audit.push(a);
        Ok(Some(Withdrawal { referral_id: row.id, at: now, by: ctx.actor.name().to_owned(), summary }))
    }

    /// Downloads file `seq` of referral `id` (same access as opening; the addressee's first
    /// download also marks it received).
    pub fn referral_file(&self, ctx: &Ctx, id: &str, seq: i64) -> Result<FileDownload, ApiError> {
        let (row, view) = self.referral_for_reading(ctx, id, "referral-file", true)?;
        let iid = id.to_owned();
        let file = self.store.read(|r| r.referral_attachment(&iid, seq))?;
        let Some(file) = file else {
            return Err(self.refuse(
                ctx,
                AuditAction::Read,
                "referral-file",
                Some(format!("referral={id}&file={seq}")),
                ApiError::new(ErrorKind::NotFound, format!("紹介状 {id} の添付ファイル {seq} は見つかりません")),
            ));
        };
        let data = file
            .data
            .as_deref()
            .and_then(unb64)
            .ok_or_else(|| ApiError::internal("stored attachment is not base64"))?;
        self.record_opening(ctx, &row, view, "referral-file", format!("referral={id}&file={seq}"))?;
        Ok(FileDownload { filename: file.filename, content_type: file.content_type, data })
    }
}

#[cfg(test)]
mod tests;
