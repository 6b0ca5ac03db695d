//! Turning what the pure parsers return (`musubi_ssmix2::collect`, `musubi_uke::collect`) into
//! the service's format-free [`SourceFile`]: units with their resources or retractions,
//! problems that keep files or receipts out, the original bytes and the facility-use facts.

use base64::Engine as _;
use musubi_domain::FacilityCode;
use musubi_fhir::ResourceType;
use musubi_service::collect::{SourceFile, SourceProblem, SourceResource, SourceUnit};
use musubi_store::collect::{Blob, FacilityUseRow, SourceKind};

/// The identity of a file on disk, as the file state keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// The path the state is kept under (relative to the storage root for SS-MIX2).
    pub path: String,
    /// Size in bytes.
    pub size: i64,
    /// Modification time (epoch ms).
    pub mtime: i64,
    /// Whether the store already has a state for this path.
    pub seen_before: bool,
}

/// The original bytes as a blob: as text when they are UTF-8 without NUL (ISO-2022-JP is
/// 7-bit, so SS-MIX2 files always are), else base64 (UKE files are Shift_JIS).
pub fn blob(sha256: &str, bytes: &[u8]) -> Blob {
    let (encoding, data) = match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains('\0') => ("text", s.to_owned()),
        _ => ("base64", base64::engine::general_purpose::STANDARD.encode(bytes)),
    };
    Blob { sha256: sha256.to_owned(), size: bytes.len() as i64, encoding: encoding.to_owned(), data }
}

/// The original bytes of a blob.
pub fn blob_bytes(b: &Blob) -> Option<Vec<u8>> {
    match b.encoding.as_str() {
        "text" => Some(b.data.clone().into_bytes()),
        "base64" => base64::engine::general_purpose::STANDARD.decode(&b.data).ok(),
        _ => None,
    }
}

/// Epoch ms of a FHIR instant/date (`2011-12-20T22:44:47.339+09:00`, `2024-05`); 0 if unreadable.
pub fn epoch_ms(s: &str) -> i64 {
    musubi_fhir::datetime::parse_range(s).map(|r| r.lo).unwrap_or(0)
}

fn ssmix2_problem(p: &musubi_ssmix2::Problem) -> SourceProblem {
    SourceProblem {
        unit: None,
        line: p.line.map(|l| l as i64),
        segment: p.segment.clone(),
        field: p.field.map(i64::from),
        reason: p.reason.clone(),
        content: None,
    }
}

/// One SS-MIX2 file as a [`SourceFile`]: one unit (the message), or the file's problems.
pub fn ssmix2_file(facility: FacilityCode, meta: FileMeta, bytes: &[u8]) -> SourceFile {
    let got = musubi_ssmix2::collect(facility, &meta.path, bytes);
    let (sha256, units, problems) = match got {
        Ok(c) => {
            let mut unit = SourceUnit {
                source_key: c.provenance.source_key,
                occurred_at: epoch_ms(&c.provenance.occurred_at),
                resources: Vec::new(),
                retract: Vec::new(),
                facility_use: None,
            };
            let mut problems = Vec::new();
            match c.outcome {
                musubi_ssmix2::Outcome::Resources(rs) => {
                    unit.resources = rs
                        .into_iter()
                        .map(|r| SourceResource {
                            id: r.id,
                            key: r.key,
                            line: Some(r.segment_index as i64 + 1),
                            segment: None,
                            resource: r.resource,
                        })
                        .collect();
                }
                musubi_ssmix2::Outcome::Retraction(r) => {
                    for t in r.targets {
                        match t.resource_type.parse::<ResourceType>() {
                            Ok(rt) => unit.retract.push((rt, t.id)),
                            Err(_) => problems.push(SourceProblem {
                                reason: format!("取消対象のリソース型 {} には対応していません", t.resource_type),
                                ..Default::default()
                            }),
                        }
                    }
                }
            }
            (c.provenance.sha256, vec![unit], problems)
        }
        Err(rej) => {
            let problems = rej
                .problems
                .iter()
                .filter(|p| p.severity == musubi_ssmix2::Severity::Error)
                .map(ssmix2_problem)
                .collect();
            (rej.sha256, Vec::new(), problems)
        }
    };
    SourceFile {
        facility: facility.to_string(),
        kind: SourceKind::Ssmix2,
        path: meta.path,
        size: meta.size,
        mtime: meta.mtime,
        blob: Some(blob(&sha256, bytes)),
        sha256,
        seen_before: meta.seen_before,
        units,
        problems,
    }
}

fn uke_problem(p: &musubi_uke::Problem) -> SourceProblem {
    SourceProblem {
        unit: None,
        line: p.line.map(|l| l as i64),
        segment: p.record.clone(),
        field: p.field.map(|f| f as i64),
        reason: p.reason.clone(),
        content: None,
    }
}

/// What a UKE file gave besides the [`SourceFile`]: the facility and the record count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UkeInfo {
    /// The billing facility, when the header could be read.
    pub facility: Option<FacilityCode>,
    /// Records read.
    pub records: usize,
    /// Receipts in the file.
    pub receipts: usize,
}

/// One UKE file as a [`SourceFile`]: one unit per receipt that landed; the quarantined
/// receipts (or the whole file) as problems.
pub fn uke_file(expected: Option<FacilityCode>, meta: FileMeta, bytes: &[u8]) -> (SourceFile, UkeInfo) {
    let name = meta.path.rsplit('/').next().unwrap_or(&meta.path).to_owned();
    let got = musubi_uke::collect(&name, bytes, expected);
    let mut units = Vec::new();
    let mut problems = Vec::new();
    let (sha256, info) = match got {
        Ok(f) => {
            let info = UkeInfo { facility: Some(f.facility), records: f.records, receipts: f.receipts.len() };
            for r in f.receipts {
                match r.result {
                    Ok(m) => {
                        let fu = &m.facility_use;
                        units.push(SourceUnit {
                            source_key: format!("uke.{}.{}", f.sha256, r.lines.0),
                            occurred_at: epoch_ms(&fu.year_month),
                            facility_use: Some(FacilityUseRow {
                                facility: fu.facility.to_string(),
                                patient_id: fu.patient_id.clone(),
                                year_month: fu.year_month.clone(),
                                insurance_id: fu.insurance_id.as_ref().map(|i| i.to_string()),
                                file_sha256: f.sha256.clone(),
                            }),
                            resources: m
                                .resources
                                .into_iter()
                                .map(|x| SourceResource {
                                    id: x.id,
                                    key: x.key,
                                    line: Some(x.line as i64),
                                    segment: None,
                                    resource: x.resource,
                                })
                                .collect(),
                            retract: Vec::new(),
                        });
                    }
                    Err(ps) => {
                        let mut raw = Some(r.raw);
                        for p in ps.iter().filter(|p| p.severity == musubi_uke::Severity::Error) {
                            let mut sp = uke_problem(p);
                            sp.unit = Some(r.receipt_no.clone().unwrap_or_else(|| format!("{}行目〜", r.lines.0)));
                            // The receipt's lines once, on its first entry.
                            sp.content = raw.take();
                            problems.push(sp);
                        }
                    }
                }
            }
            (f.sha256, info)
        }
        Err(rej) => {
            problems.extend(rej.problems.iter().filter(|p| p.severity == musubi_uke::Severity::Error).map(uke_problem));
            (rej.sha256, UkeInfo { facility: expected, records: 0, receipts: 0 })
        }
    };
    let facility = info.facility.map(|f| f.to_string()).unwrap_or_default();
    let file = SourceFile {
        facility,
        kind: SourceKind::Uke,
        path: meta.path,
        size: meta.size,
        mtime: meta.mtime,
        blob: Some(blob(&sha256, bytes)),
        sha256,
        seen_before: meta.seen_before,
        units,
        problems,
    };
    (file, info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip() {
        let iso = b"MSH|^~\\&|\x1b$B45<T\x1b(B\r";
        let b = blob("x", iso);
        assert_eq!(b.encoding, "text");
        assert_eq!(blob_bytes(&b).unwrap(), iso);
        let sjis = [0x82, 0xa0, 0x00, 0x1a];
        let b = blob("y", &sjis);
        assert_eq!(b.encoding, "base64");
        assert_eq!(blob_bytes(&b).unwrap(), sjis);
        let nul = b"a\0b";
        assert_eq!(blob("z", nul).encoding, "base64");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_round_trip_through_a_blob(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let b = blob("k", &bytes);
            proptest::prop_assert_eq!(b.size, bytes.len() as i64);
            proptest::prop_assert!(!b.data.contains('\0'), "PostgreSQL TEXT cannot hold NUL");
            proptest::prop_assert_eq!(blob_bytes(&b).unwrap(), bytes);
        }

        #[test]
        fn any_file_maps_without_panicking(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let meta = FileMeta { path: "999/901/9999013/-/ADT-00/9999013_-_ADT-00_999999999999999_20111220224447339_-_1".into(), size: 0, mtime: 0, seen_before: false };
            let f = ssmix2_file("1318814790".parse().unwrap(), meta.clone(), &bytes);
            // Every file either has its message or says why not.
            proptest::prop_assert!(!f.units.is_empty() || !f.problems.is_empty());
            let (u, _) = uke_file(None, FileMeta { path: "x.UKE".into(), ..meta }, &bytes);
            proptest::prop_assert_eq!(u.sha256.len(), 64);
        }
    }

    #[test]
    fn instants_to_epoch() {
        assert_eq!(epoch_ms("2011-12-20T22:44:47.339+09:00"), 1_324_388_687_339);
        assert_eq!(epoch_ms("2024-05"), epoch_ms("2024-05-01T00:00:00+09:00"));
        assert_eq!(epoch_ms("garbage"), 0);
    }
}
