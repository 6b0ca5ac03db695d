//! UKE (レセ電) receipt files from receipt computers: Shift_JIS decoding, record parsing and
//! validation, and mapping to FHIR R4 (JP Core shapes).
//!
//! The pure half of the UKE collector: bytes and a file name in, per-receipt FHIR resources,
//! "facility use" facts and located problems out. No I/O.
//!
//! ```
//! use musubi_uke::collect;
//! let text = "IR,1,13,1,8814790,,テスト医院,202405,00,0312345678\r\n\
//! RE,1,1112,202405,山田　太郎,1,19700101,,,,,,,KARTE1,,,,,,,,,,,,,,,,,,,,,,,ヤマダ　タロウ,\r\n\
//! HO,06139999,１２,３４,1,120,,,,,,,,,\r\n\
//! SY,8848176,20240501,1,,,01,\r\n\
//! GO,1,120,99\r\n\x1a";
//! let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode(text);
//! let file = collect("RECEIPTC.UKE", &bytes, None).unwrap();
//! let receipt = file.receipts[0].result.as_ref().unwrap();
//! assert_eq!(receipt.patient["name"][0]["text"], "山田　太郎");
//! assert_eq!(receipt.facility_use.year_month, "2024-05");
//! ```
//!
//! Decisions:
//! - **What is quarantined.** A problem in a receipt (a truncated line, a record out of order,
//!   a malformed code) quarantines that receipt: its lines from RE up to the next RE. The other
//!   receipts of the file land. Problems that make the whole file untrustworthy quarantine the
//!   file: no IR/YK header, an undecodable header, no GO trailer (the file was cut), a record
//!   after GO, or a facility that is not the expected one. Records between the header and the
//!   first RE form a receipt-less unit that is quarantined on its own. Warnings never drop
//!   data: what is not mapped stays in the original file, whose SHA-256 every result carries.
//! - **Medications.** 医科 IY (and DPC CD drug lines) become MedicationStatement: the claim
//!   says the drug was given or prescribed on the 算定日, not how (FHIR names claims as a
//!   source of MedicationStatement). 調剤 IY becomes MedicationDispense: the pharmacy handed
//!   it over on the CZ 調剤年月日. SI (and DPC CD 診療行為 lines) become Procedure; TO becomes a
//!   Procedure with the device as `usedCode`; CO comments become notes on the record before.
//! - **Ids** are UUID v5 of
//!   `[施設].[請求年月].[提出単位].[レセプト番号].[レコード識別].[receipt 内の行]`, so re-importing
//!   a file gives the same ids. The 提出単位 (`ika1`, `dpc2`, `chozai1`, `ika1v01` …: the kind of
//!   receipts, the 審査支払機関, the volume) is read from the file, because a receipt computer
//!   numbers receipts per file: a facility's 社保 and 国保 files, or its 医科 and DPC files, of
//!   one month reuse the same レセプト番号 for other patients. The receipt's Patient is keyed on
//!   the facility and the カルテ番号 (RE-14 医科, RE-36 調剤) when present, else the insurance
//!   identity, else the receipt; it is a separate source patient from the SS-MIX2 one (linked
//!   by the MPI through the same local-id identifier), so a claim never overwrites richer
//!   demographics.
//! - Code systems with no published FHIR URI (診療行為, 医薬品, 特定器材, 診療識別 codes of
//!   the レセ電 masters) use `urn:uke:cs:<name>` placeholders.

#![deny(missing_docs)]

pub mod date;
pub mod layout;
mod map;
pub mod master;
pub mod parse;

use std::fmt;

use musubi_domain::{FacilityCode, InsuranceId};

pub use layout::{Edition, FileKind};
pub use parse::{Parsed, Record, Unit, parse};

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Severity {
    /// Noted; the data landed.
    Warning,
    /// The unit (receipt or file) is quarantined.
    Error,
}

/// What kind of problem, for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ProblemKind {
    /// Bytes that are not Shift_JIS, a misplaced EOF byte, odd line ends.
    Encoding,
    /// A record with too few fields (a cut line) or an unknown record id.
    Structure,
    /// Records in the wrong order.
    Order,
    /// A code or number that does not have its format.
    Code,
    /// A date that is not a date.
    Date,
    /// A required field is empty.
    Missing,
    /// Totals that do not add up, duplicates, other consistency checks.
    Consistency,
}

/// One problem, located by file, line, record and field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Error (quarantine) or warning.
    pub severity: Severity,
    /// What kind.
    pub kind: ProblemKind,
    /// The file name as given.
    pub file: String,
    /// 1-based line number.
    pub line: Option<usize>,
    /// The record id (`SY`).
    pub record: Option<String>,
    /// The 1-based field number (the record id is field 1).
    pub field: Option<usize>,
    /// Why, in Japanese (`SY-2 傷病名コード "12345AB" が 7 桁の数字ではありません`).
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        match (&self.record, self.field) {
            (Some(r), Some(n)) => write!(f, " {r}-{n}")?,
            (Some(r), None) => write!(f, " {r}")?,
            _ => {}
        }
        write!(f, ": {}", self.reason)
    }
}

/// One mapped FHIR resource.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MappedResource {
    /// The resource type.
    pub resource_type: &'static str,
    /// The logical id (UUID v5 of [`MappedResource::key`]); also in `resource.id`.
    pub id: String,
    /// The readable identity key.
    pub key: String,
    /// The 1-based line of the record it came from.
    pub line: usize,
    /// The resource.
    pub resource: serde_json::Value,
}

/// "This person used this facility in this month": what the consent settings list a
/// patient's facilities from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FacilityUse {
    /// The facility that billed.
    pub facility: FacilityCode,
    /// The person's insurance identity (JP-CLINS form), when HO gives one.
    #[serde(serialize_with = "ser_insurance")]
    pub insurance_id: Option<InsuranceId>,
    /// The receipt's Patient logical id.
    pub patient_id: String,
    /// 診療年月 (調剤年月) as `YYYY-MM`.
    pub year_month: String,
}

fn ser_insurance<S: serde::Serializer>(v: &Option<InsuranceId>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(id) => s.serialize_some(&id.to_string()),
        None => s.serialize_none(),
    }
}

/// A receipt that landed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MappedReceipt {
    /// The source patient (also first in `resources`).
    pub patient: serde_json::Value,
    /// All resources: Patient, Coverage, Condition, Procedure, MedicationStatement /
    /// MedicationDispense.
    pub resources: Vec<MappedResource>,
    /// The facility-use fact.
    pub facility_use: FacilityUse,
    /// Warnings.
    pub problems: Vec<Problem>,
}

/// One receipt (RE up to the next RE), landed or quarantined.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReceiptOutcome {
    /// RE-2 レセプト番号 (`None` for records before the first RE).
    pub receipt_no: Option<String>,
    /// First and last line (1-based, inclusive).
    pub lines: (usize, usize),
    /// The receipt's original lines (decoded), for the quarantine list.
    pub raw: String,
    /// The mapped receipt, or every problem (at least one error) that quarantines it.
    pub result: Result<MappedReceipt, Vec<Problem>>,
}

/// A file whose header and trailer are sound: its receipts, each landed or quarantined.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UkeFile {
    /// The file name as given.
    pub name: String,
    /// SHA-256 of the bytes (provenance), lowercase hex.
    pub sha256: String,
    /// 医科 or 調剤.
    pub kind: FileKind,
    /// 西暦 or 和暦 dates.
    pub edition: Edition,
    /// The billing facility (IR/YK 都道府県 + 点数表 + 医療機関コード).
    pub facility: FacilityCode,
    /// The facility's name as the header gives it.
    pub facility_name: Option<String>,
    /// 請求年月 as `YYYY-MM`.
    pub billing_month: String,
    /// The receipts in file order.
    pub receipts: Vec<ReceiptOutcome>,
    /// File-level warnings.
    pub problems: Vec<Problem>,
    /// Number of records read.
    pub records: usize,
}

/// A file quarantined whole.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{}", problems.iter().find(|p| p.severity == Severity::Error).map(|p| p.to_string()).unwrap_or_default())]
pub struct Rejected {
    /// The file name.
    pub name: String,
    /// SHA-256 of the bytes.
    pub sha256: String,
    /// At least one error.
    pub problems: Vec<Problem>,
}

/// Parses, validates and maps one UKE file. `expected` is the facility the collector runs
/// for, when known: a file from another facility is rejected.
pub fn collect(name: &str, bytes: &[u8], expected: Option<FacilityCode>) -> Result<UkeFile, Rejected> {
    map::collect(parse(name, bytes), expected)
}

/// Runs parse and map on arbitrary bytes and never panics: the entry point for fuzzing.
pub fn fuzz_parse(data: &[u8]) {
    let _ = collect("fuzz.UKE", data, None);
}
