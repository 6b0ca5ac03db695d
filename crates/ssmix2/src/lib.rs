//! SS-MIX2 standardized storage: path rules, ISO-2022-JP decoding, HL7 v2.5 parsing and mapping
//! to FHIR R4 (JP Core shapes), following the JAMI guide "SSMIX2toFHIR".
//!
//! This crate is the pure half of the SS-MIX2 collector: it takes one file's bytes and its path
//! relative to the storage root, and returns either FHIR resources (or a [`Retraction`] for a
//! cancelled file) with the problems noticed, or a [`Rejected`] with the reasons the file must
//! be quarantined. It does no I/O; walking the tree, remembering what was collected and writing
//! to the store belong to the caller.
//!
//! ```
//! use musubi_ssmix2::{collect, Outcome};
//! let facility = "1318814790".parse().unwrap();
//! let bytes = b"MSH|^~\\&|HIS|SEND|GW|RCV|20111220||ADT^A08^ADT_A01|1|P|2.5\r\
//! EVN||201112202100\rPID|0001||9999013||\x1b$B45<T\x1b(B^\x1b$BB@O:\x1b(B^^^^^L^I||19480405|M\r";
//! let path = "999/901/9999013/-/ADT-00/9999013_-_ADT-00_999999999999999_20111220224447339_-_1";
//! let got = collect(facility, path, bytes).unwrap();
//! let Outcome::Resources(resources) = &got.outcome else { panic!() };
//! assert_eq!(resources[0].resource["name"][0]["text"], "患者 太郎");
//! assert_eq!(resources[0].resource["birthDate"], "1948-04-05");
//! ```
//!
//! Decisions, and where Musubi departs from the guide:
//! - **The path is authoritative for the patient.** The file is placed under its patient by the
//!   storage; a PID-3 that disagrees is reported as a warning (the published samples disagree
//!   in most files) and the path's 患者ID is used.
//! - **Logical ids** follow the guide's rule `[患者ID].[診療日].[データ種別].[オーダ番号].[連番]`
//!   with the facility code in front (ids must be unique across facilities) and the resource
//!   type added (one segment may give several resources). That key is longer than FHIR's 64
//!   characters, so the id is its UUID v5; the readable key is kept in
//!   [`MappedResource::key`]. The patient is `[施設].[患者ID].ADT-00` as in the guide. Messages
//!   without an order (オーダNO all 9s, e.g. ADT events) add the 発生日時 so two events on one
//!   day stay two resources; the patient-level snapshots ADT-00, ADT-61 and PPR-01 do not, so a
//!   newer snapshot replaces the older one.
//! - **Cancelled files** (condition flag 0) give a [`Retraction`] naming the ids the same file
//!   would have produced. The storage marks a superseded version with 0 as well, so the store
//!   must delete a target only while its current version still comes from the retraction's
//!   [`Retraction::source_key`] — otherwise a newer version would be deleted.
//! - Only ADT-00 produces a Patient. Other messages reference the source patient
//!   (`Patient/<id>` plus the local-id identifier) so the reference resolves once ADT-00 lands.
//! - **What JP Core fixes, the guide leaves open** (so every mapped resource validates against
//!   the JP Core 1.1.2 profile it names): lab Observations carry the `laboratory` category of
//!   `JP_SimpleObservationCategory_CS` and lab DiagnosticReports LOINC `LP29693-6`; prescriptions
//!   and administrations carry the Rp number (ORC-4) and their place in that Rp
//!   (`identifier:orderInRp`, counted over the RXE/RXA under the same ORC-4); injection orders
//!   and administrations name their drugs in a contained Medication, the only form the
//!   injection profiles allow. Codes labelled `JC10` go to the JLAC10 system that fits their
//!   length: 17 characters to `master-JLAC10-17digits`, the 3-digit material code (SPM-4) to
//!   `JP_ObservationSampleMaterialCode_CS`, others to JP Core's JLAC10 CodeSystem.

#![deny(missing_docs)]

pub mod decode;
pub mod hl7;
mod map;
pub mod order;
pub mod path;

use std::fmt;

use musubi_domain::FacilityCode;
use sha2::{Digest, Sha256};

pub use map::{logical_id, patient_logical_id};
pub use path::{CareDate, Condition, DataType, PathError, StoragePath};

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Severity {
    /// Noted; the data landed (the original bytes are kept as provenance).
    Warning,
    /// The file cannot land as it is; it goes to quarantine.
    Error,
}

/// What kind of problem, for programs; the [`Problem::reason`] is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ProblemKind {
    /// A standardized-storage path rule is broken.
    Path,
    /// The bytes are not clean ISO-2022-JP.
    Encoding,
    /// The HL7 text is malformed (MSH, escapes, segment names, line ends).
    Syntax,
    /// The segments are not in the order the message requires.
    SegmentOrder,
    /// The message type does not fit the data type.
    MessageType,
    /// A required field is empty.
    MissingField,
    /// A field's value cannot be interpreted.
    InvalidValue,
    /// The message's PID-3 disagrees with the path's 患者ID.
    PatientMismatch,
}

/// One problem with a file, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Error (quarantine) or warning.
    pub severity: Severity,
    /// What kind.
    pub kind: ProblemKind,
    /// The file's path relative to the storage root.
    pub file: String,
    /// 1-based line in the file: the segment's index + 1 (MSH is line 1).
    pub line: Option<usize>,
    /// The segment name (`PID`).
    pub segment: Option<String>,
    /// The field number (5 for PID-5).
    pub field: Option<u32>,
    /// Why, in Japanese (`PID-5 患者氏名がありません`).
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        match (&self.segment, self.field) {
            (Some(s), Some(n)) => write!(f, " {s}-{n}")?,
            (Some(s), None) => write!(f, " {s}")?,
            _ => {}
        }
        write!(f, ": {}", self.reason)
    }
}

/// Where a collected message came from: enough to find, re-run and verify it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Provenance {
    /// The facility the collector runs for.
    pub facility: FacilityCode,
    /// The path relative to the storage root.
    pub path: String,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// `[施設].[患者ID].[診療日].[データ種別].[オーダNO].[発生日時]`: identifies this version of
    /// the message; every resource mapped from it carries it.
    pub source_key: String,
    /// データ種別.
    pub data_type: String,
    /// 発生日時 as a FHIR instant (to apply versions in order).
    pub occurred_at: String,
    /// MSH-9 (`RDE^O11`), when the message could be read.
    pub message_type: Option<String>,
    /// MSH-10, when present.
    pub message_control_id: Option<String>,
}

/// A resource type and logical id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ResourceRef {
    /// `Patient`, `MedicationRequest` …
    pub resource_type: String,
    /// The logical id.
    pub id: String,
}

/// One mapped FHIR resource.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MappedResource {
    /// The resource type.
    pub resource_type: &'static str,
    /// The logical id (UUID v5 of [`MappedResource::key`]); also in `resource.id`.
    pub id: String,
    /// The readable identity key the id is derived from.
    pub key: String,
    /// The 0-based index of the segment it was mapped from (MSH is 0).
    pub segment_index: usize,
    /// The resource.
    pub resource: serde_json::Value,
}

/// What a cancelled file (condition flag 0) withdraws.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Retraction {
    /// The source key of the cancelled version. Delete a target only while its stored version
    /// still comes from this key: a newer version must survive its predecessor's cancellation.
    pub source_key: String,
    /// The resources the same file would have produced.
    pub targets: Vec<ResourceRef>,
}

/// What a collected file gives.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Outcome {
    /// Resources to create or update.
    Resources(Vec<MappedResource>),
    /// Resources to withdraw.
    Retraction(Retraction),
}

/// A file that can land.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Collected {
    /// Where it came from.
    pub provenance: Provenance,
    /// Resources or a retraction.
    pub outcome: Outcome,
    /// Warnings only (errors would have rejected the file).
    pub problems: Vec<Problem>,
}

/// A file that must be quarantined, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{}", problems.iter().find(|p| p.severity == Severity::Error).map(|p| p.to_string()).unwrap_or_default())]
pub struct Rejected {
    /// The path as given.
    pub path: String,
    /// SHA-256 of the bytes.
    pub sha256: String,
    /// At least one error, plus any warnings.
    pub problems: Vec<Problem>,
}

/// SHA-256 of bytes as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks, decodes, parses and maps one standardized-storage file.
///
/// `relative_path` is the path below the storage root (`999/901/9999013/-/ADT-00/…`);
/// `facility` is the facility whose storage this is.
pub fn collect(facility: FacilityCode, relative_path: &str, bytes: &[u8]) -> Result<Collected, Rejected> {
    map::collect(facility, relative_path, bytes)
}

/// Runs the whole path (path check, decoding, parsing, mapping) on arbitrary bytes and never
/// panics: the entry point for fuzzing. The bytes are collected under a path whose data type
/// fits their MSH-9 (so every mapper is reachable), and under a fixed OMP-01 path.
pub fn fuzz_parse(data: &[u8]) {
    let facility =
        FacilityCode::from_parts(13, musubi_domain::FacilityKind::Medical, 1).expect("a constant, valid facility code");
    let text = decode::decode(data).text;
    let message_type = hl7::Message::parse(&text).ok().and_then(|m| m.message_type());
    let row = message_type.and_then(|mt| path::DATA_TYPES.iter().find(|r| r.message == mt));
    if let Some(r) = row {
        let date = if r.care_date_field.is_empty() { "-" } else { "20110701" };
        let rel =
            format!("999/901/9999013/{date}/{0}/9999013_{date}_{0}_000000011000185_20110701224603984_01_1", r.code);
        let _ = collect(facility, &rel, data);
        let cancelled = format!("{}0", rel.trim_end_matches('1'));
        let _ = collect(facility, &cancelled, data);
    }
    let _ = collect(
        facility,
        "999/901/9999013/20110701/OMP-01/9999013_20110701_OMP-01_000000011000185_20110701224603984_01_1",
        data,
    );
}
