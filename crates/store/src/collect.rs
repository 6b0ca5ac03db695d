//! What the collectors (SS-MIX2 storage, UKE receipt files) remember: which files were
//! collected and how, the quarantine list, the original bytes kept as provenance, which source
//! message produced each resource, and the "this person used this facility in this month" facts
//! the consent settings list a patient's facilities from.
//!
//! Everything a collector learns from one chunk of files is written by [`Store::commit_collect`]
//! in the same transaction as the chunk's resources and audit records, so a collector killed
//! at any moment leaves either the whole chunk (resources *and* the file-state rows that say
//! they were collected) or none of it; a rerun then collects exactly what is missing.
//!
//! Tables (migration 2, see [`crate::schema`]):
//! - `collect_file`: one row per (facility, kind, path) with size, mtime and SHA-256, so an
//!   unchanged file is never read again, and the outcome of its last collection;
//! - `collect_quarantine`: every file, message, receipt or resource that could not land, with
//!   where (file, line, segment/record, field, element, rule) and why (Japanese), the original
//!   text and the key of the original bytes; an entry is marked resolved when its file is
//!   collected again with other content;
//! - `collect_blob`: original bytes, content-addressed by SHA-256 and stored once;
//! - `collect_source`: for each collected resource, the source message its stored version came
//!   from (a cancellation deletes a resource only while it still comes from the cancelled
//!   message, see `musubi_ssmix2::Retraction`);
//! - `facility_use`: (facility, source patient, year-month) with the insurance identity.

use musubi_fhir::ResourceType;

use crate::sql::{Conn, Dialect, Param, Row};
use crate::{Committed, Reader, Store, StoreError, WriteBatch};

/// Which collector a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    /// SS-MIX2 standardized storage.
    Ssmix2,
    /// UKE (レセ電) receipt files.
    Uke,
}

impl SourceKind {
    /// `ssmix2` or `uke`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Ssmix2 => "ssmix2",
            SourceKind::Uke => "uke",
        }
    }
}

impl std::str::FromStr for SourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ssmix2" => Ok(SourceKind::Ssmix2),
            "uke" => Ok(SourceKind::Uke),
            other => Err(format!("unknown source kind {other:?}")),
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a file's last collection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileOutcome {
    /// Everything landed (warnings aside).
    Landed,
    /// Some messages, receipts or resources landed, others are in quarantine.
    Partial,
    /// The whole file is in quarantine.
    Quarantined,
    /// A cancellation (SS-MIX2 condition flag 0) was applied.
    Retracted,
}

impl FileOutcome {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            FileOutcome::Landed => "landed",
            FileOutcome::Partial => "partial",
            FileOutcome::Quarantined => "quarantined",
            FileOutcome::Retracted => "retracted",
        }
    }
}

impl std::str::FromStr for FileOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "landed" => Ok(FileOutcome::Landed),
            "partial" => Ok(FileOutcome::Partial),
            "quarantined" => Ok(FileOutcome::Quarantined),
            "retracted" => Ok(FileOutcome::Retracted),
            other => Err(format!("unknown file outcome {other:?}")),
        }
    }
}

/// What the collector remembers about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// The facility (10-digit code) whose file it is; empty when a UKE file's facility could
    /// not be read.
    pub facility: String,
    /// Which collector.
    pub kind: SourceKind,
    /// The path: relative to the storage root (SS-MIX2), or the file's full path (UKE).
    pub path: String,
    /// Size in bytes.
    pub size: i64,
    /// Modification time (epoch ms).
    pub mtime: i64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// How it ended.
    pub outcome: FileOutcome,
    /// Resources written or confirmed unchanged.
    pub resources: i64,
    /// Quarantine entries made.
    pub quarantined: i64,
    /// When it was collected (epoch ms).
    pub collected_at: i64,
}

/// One quarantine entry: something that could not land, where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineEntry {
    /// The facility.
    pub facility: String,
    /// Which collector.
    pub kind: SourceKind,
    /// The file (as in [`FileState::path`]).
    pub path: String,
    /// SHA-256 of the file's bytes at the time.
    pub file_sha256: String,
    /// 0-based number of the entry within that file version.
    pub seq: i64,
    /// The unit: a receipt number, or the identity key of a mapped resource.
    pub unit: Option<String>,
    /// 1-based line (the HL7 segment's or the UKE record's).
    pub line: Option<i64>,
    /// The HL7 segment (`PID`) or UKE record (`SY`).
    pub segment: Option<String>,
    /// The field number.
    pub field: Option<i64>,
    /// The FHIRPath of the element, for a resource the validator refused.
    pub element: Option<String>,
    /// The validator's rule (`R3010`, `JP_Patient: Patient.identifier min=1`).
    pub rule: Option<String>,
    /// Why, in Japanese.
    pub reason: String,
    /// The original text of the unit (a receipt's lines, the refused resource's JSON).
    pub content: Option<String>,
    /// The key of the file's original bytes in the blob table.
    pub blob_sha256: Option<String>,
    /// When it was quarantined (epoch ms).
    pub at: i64,
    /// When it was resolved (the file was collected again with other content).
    pub resolved_at: Option<i64>,
}

/// Original bytes, content-addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// SHA-256 of the bytes, lowercase hex (the key).
    pub sha256: String,
    /// Size of the bytes.
    pub size: i64,
    /// How `data` holds the bytes: `text` (the bytes are UTF-8 without NUL, stored as they
    /// are — ISO-2022-JP files are) or `base64`.
    pub encoding: String,
    /// The bytes in that encoding.
    pub data: String,
}

/// Which source message a resource's stored version came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLink {
    /// Resource type.
    pub rtype: ResourceType,
    /// Logical id.
    pub id: String,
    /// The facility.
    pub facility: String,
    /// Which collector.
    pub kind: SourceKind,
    /// The source key (`musubi_ssmix2::Provenance::source_key`; for UKE the file's key).
    pub source_key: String,
    /// When the source message was made (epoch ms; 0 when unknown): an older message never
    /// overwrites what a newer one wrote.
    pub occurred_at: i64,
    /// The file.
    pub path: String,
    /// SHA-256 of the file (its bytes are in the blob table).
    pub file_sha256: String,
}

/// "This person used this facility in this month".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacilityUseRow {
    /// The facility that billed.
    pub facility: String,
    /// The source patient's logical id.
    pub patient_id: String,
    /// `YYYY-MM`.
    pub year_month: String,
    /// The insurance identity (JP-CLINS 被保険者個人識別子), when known.
    pub insurance_id: Option<String>,
    /// The file it was read from.
    pub file_sha256: String,
}

/// A file whose quarantine entries are superseded: the file is being collected again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recollect {
    /// The facility.
    pub facility: String,
    /// Which collector.
    pub kind: SourceKind,
    /// The path.
    pub path: String,
    /// The SHA-256 of the content being collected now (its old entries, from an earlier
    /// collection of the same content, are replaced).
    pub sha256: String,
}

/// A file that is gone from the storage: its state is forgotten (it is collected again if it
/// comes back) and its open quarantine entries are marked resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forget {
    /// The facility.
    pub facility: String,
    /// Which collector.
    pub kind: SourceKind,
    /// The path.
    pub path: String,
}

/// Everything one chunk of collection writes, atomically.
#[derive(Debug, Clone, Default)]
pub struct CollectBatch {
    /// Resources, deletions and audit records, as successive batches applied in order in the
    /// one transaction: a resource changed twice in a chunk (created, then updated or
    /// retracted) gets one version per change, exactly as if the changes came in separate
    /// chunks.
    pub writes: Vec<WriteBatch>,
    /// Files being collected again: their open quarantine entries are marked resolved.
    pub recollect: Vec<Recollect>,
    /// New quarantine entries.
    pub quarantine: Vec<QuarantineEntry>,
    /// Original bytes (stored once per SHA-256).
    pub blobs: Vec<Blob>,
    /// Source links of the resources written (or confirmed) in this chunk.
    pub sources: Vec<SourceLink>,
    /// Facility-use facts.
    pub facility_uses: Vec<FacilityUseRow>,
    /// File states, written last: a file counts as collected only with everything above.
    pub files: Vec<FileState>,
    /// Files gone from the storage.
    pub forget: Vec<Forget>,
}

/// The current state of a resource as the collector needs it: version, content hash, the meta
/// the gate looks at, and the source link of its stored version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectCurrent {
    /// Type.
    pub rtype: ResourceType,
    /// Logical id.
    pub id: String,
    /// Current version.
    pub version: i64,
    /// Whether the current version is a deletion.
    pub deleted: bool,
    /// Hash of the content without server meta.
    pub content_hash: String,
    /// Source facility.
    pub facility: Option<musubi_domain::FacilityCode>,
    /// Class.
    pub class: musubi_domain::ResourceClass,
    /// The patient it is about.
    pub patient_id: Option<String>,
    /// Where its stored version came from, if a collector wrote it.
    pub source: Option<SourceLink>,
}

/// The columns of `collect_file`, in [`FileState`] order.
const FILE_COLS: &[&str] =
    &["facility", "kind", "path", "size", "mtime", "sha256", "outcome", "resources", "quarantined", "collected_at"];
const QUARANTINE_COLS: &[&str] = &[
    "facility",
    "kind",
    "path",
    "file_sha256",
    "seq",
    "unit",
    "line",
    "segment",
    "field",
    "element",
    "rule",
    "reason",
    "content",
    "blob_sha256",
    "at",
    "resolved_at",
];
const SOURCE_COLS: &[&str] = &["rtype", "id", "facility", "kind", "source_key", "occurred_at", "path", "file_sha256"];
const USE_COLS: &[&str] = &["facility", "patient_id", "year_month", "insurance_id", "file_sha256"];

/// Lookups per statement (well under SQLite's and PostgreSQL's parameter limits).
const LOOKUP_BATCH: usize = 500;

impl Store {
    /// Commits one chunk of collection atomically: its resources, deletions and audit records,
    /// its quarantine entries, blobs, source links, facility-use facts and file states.
    pub fn commit_collect(&self, batch: CollectBatch) -> Result<Committed, StoreError> {
        self.inner.writer.write(move |conn| apply(conn, &batch))
    }
}

fn apply(conn: &mut dyn Conn, b: &CollectBatch) -> Result<Committed, StoreError> {
    for r in &b.recollect {
        // The same content collected again (e.g. a forced re-run) replaces its own entries;
        // entries of earlier content are kept, marked resolved.
        conn.execute(
            "DELETE FROM collect_quarantine WHERE facility = $1 AND kind = $2 AND path = $3 AND file_sha256 = $4",
            &[Param::Text(&r.facility), Param::Text(r.kind.as_str()), Param::Text(&r.path), Param::Text(&r.sha256)],
        )?;
        conn.execute(
            "UPDATE collect_quarantine SET resolved_at = $4 WHERE facility = $1 AND kind = $2 AND path = $3 \
             AND resolved_at IS NULL",
            &[
                Param::Text(&r.facility),
                Param::Text(r.kind.as_str()),
                Param::Text(&r.path),
                Param::I64(musubi_fhir::datetime::now_ms()),
            ],
        )?;
    }
    let mut committed = Committed::default();
    for w in &b.writes {
        let c = crate::ops::apply(conn, w)?;
        committed.deleted_versions.extend(c.deleted_versions);
        committed.audit_seqs.extend(c.audit_seqs);
    }
    let rows: Vec<Vec<Param<'_>>> = b.quarantine.iter().map(quarantine_params).collect();
    conn.insert_rows("collect_quarantine", QUARANTINE_COLS, &rows)?;
    let mut blobs: Vec<&Blob> = b.blobs.iter().collect();
    blobs.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    blobs.dedup_by(|a, b| a.sha256 == b.sha256);
    let now = musubi_fhir::datetime::now_ms();
    let rows: Vec<Vec<Param<'_>>> = blobs
        .iter()
        .map(|x| {
            vec![
                Param::Text(&x.sha256),
                Param::I64(x.size),
                Param::Text(&x.encoding),
                Param::Text(&x.data),
                Param::I64(now),
            ]
        })
        .collect();
    upsert(conn, "collect_blob", &["sha256", "size", "encoding", "data", "stored_at"], 1, false, &rows)?;
    let rows: Vec<Vec<Param<'_>>> = b.sources.iter().map(source_params).collect();
    upsert(conn, "collect_source", SOURCE_COLS, 2, true, &rows)?;
    let rows: Vec<Vec<Param<'_>>> = b
        .facility_uses
        .iter()
        .map(|u| {
            vec![
                Param::Text(&u.facility),
                Param::Text(&u.patient_id),
                Param::Text(&u.year_month),
                u.insurance_id.as_deref().into(),
                Param::Text(&u.file_sha256),
            ]
        })
        .collect();
    upsert(conn, "facility_use", USE_COLS, 3, true, &rows)?;
    let rows: Vec<Vec<Param<'_>>> = b.files.iter().map(file_params).collect();
    upsert(conn, "collect_file", FILE_COLS, 3, true, &rows)?;
    for f in &b.forget {
        let key = [Param::Text(&f.facility), Param::Text(f.kind.as_str()), Param::Text(&f.path)];
        conn.execute(
            "UPDATE collect_quarantine SET resolved_at = $4 WHERE facility = $1 AND kind = $2 AND path = $3 \
             AND resolved_at IS NULL",
            &[key[0], key[1], key[2], Param::I64(now)],
        )?;
        conn.execute("DELETE FROM collect_file WHERE facility = $1 AND kind = $2 AND path = $3", &key)?;
    }
    Ok(committed)
}

fn file_params(f: &FileState) -> Vec<Param<'_>> {
    vec![
        Param::Text(&f.facility),
        Param::Text(f.kind.as_str()),
        Param::Text(&f.path),
        Param::I64(f.size),
        Param::I64(f.mtime),
        Param::Text(&f.sha256),
        Param::Text(f.outcome.as_str()),
        Param::I64(f.resources),
        Param::I64(f.quarantined),
        Param::I64(f.collected_at),
    ]
}

fn quarantine_params(q: &QuarantineEntry) -> Vec<Param<'_>> {
    vec![
        Param::Text(&q.facility),
        Param::Text(q.kind.as_str()),
        Param::Text(&q.path),
        Param::Text(&q.file_sha256),
        Param::I64(q.seq),
        q.unit.as_deref().into(),
        q.line.into(),
        q.segment.as_deref().into(),
        q.field.into(),
        q.element.as_deref().into(),
        q.rule.as_deref().into(),
        Param::Text(&q.reason),
        q.content.as_deref().into(),
        q.blob_sha256.as_deref().into(),
        Param::I64(q.at),
        q.resolved_at.into(),
    ]
}

fn source_params(s: &SourceLink) -> Vec<Param<'_>> {
    vec![
        Param::Text(s.rtype.as_str()),
        Param::Text(&s.id),
        Param::Text(&s.facility),
        Param::Text(s.kind.as_str()),
        Param::Text(&s.source_key),
        Param::I64(s.occurred_at),
        Param::Text(&s.path),
        Param::Text(&s.file_sha256),
    ]
}

/// `INSERT … ON CONFLICT (the first `keys` columns) DO UPDATE` (or `DO NOTHING`), in one
/// syntax both dialects accept. Later rows with the same key win; PostgreSQL gets multi-row
/// statements (one round trip per few thousand rows), SQLite one cached statement per row.
fn upsert(
    conn: &mut dyn Conn,
    table: &str,
    cols: &[&str],
    keys: usize,
    update: bool,
    rows: &[Vec<Param<'_>>],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let unique: Vec<&Vec<Param<'_>>> = match conn.dialect() {
        // One statement per row, in order: a later row with the same key simply wins.
        Dialect::Sqlite => rows.iter().collect(),
        // PostgreSQL refuses to touch one row twice in a statement: keep the last row of each key.
        Dialect::Postgres => {
            let mut seen = std::collections::HashSet::with_capacity(rows.len());
            let mut unique = Vec::with_capacity(rows.len());
            for r in rows.iter().rev() {
                let key: Vec<String> = r.iter().take(keys).map(|p| format!("{p:?}")).collect();
                if seen.insert(key) {
                    unique.push(r);
                }
            }
            unique.reverse();
            unique
        }
    };
    let conflict = cols.get(..keys).unwrap_or(cols).join(", ");
    let action = if update {
        let sets: Vec<String> = cols.iter().skip(keys).map(|c| format!("{c} = excluded.{c}")).collect();
        format!("DO UPDATE SET {}", sets.join(", "))
    } else {
        "DO NOTHING".to_owned()
    };
    let per_stmt = match conn.dialect() {
        Dialect::Sqlite => 1,
        Dialect::Postgres => (60_000 / cols.len()).max(1),
    };
    for chunk in unique.chunks(per_stmt) {
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", cols.join(", "));
        let mut n = 0;
        for (ri, _) in chunk.iter().enumerate() {
            if ri > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for ci in 0..cols.len() {
                if ci > 0 {
                    sql.push_str(", ");
                }
                n += 1;
                sql.push('$');
                sql.push_str(&n.to_string());
            }
            sql.push(')');
        }
        sql.push_str(&format!(" ON CONFLICT ({conflict}) {action}"));
        let flat: Vec<Param<'_>> = chunk.iter().flat_map(|r| r.iter().copied()).collect();
        conn.execute(&sql, &flat)?;
    }
    Ok(())
}

fn file_state(r: &Row) -> Result<FileState, StoreError> {
    Ok(FileState {
        facility: r.str(0).to_owned(),
        kind: r.str(1).parse().map_err(StoreError::Corrupt)?,
        path: r.str(2).to_owned(),
        size: r.i64(3),
        mtime: r.i64(4),
        sha256: r.str(5).to_owned(),
        outcome: r.str(6).parse().map_err(StoreError::Corrupt)?,
        resources: r.i64(7),
        quarantined: r.i64(8),
        collected_at: r.i64(9),
    })
}

fn quarantine_entry(r: &Row) -> Result<QuarantineEntry, StoreError> {
    let s = |i: usize| r.opt_str(i).map(str::to_owned);
    Ok(QuarantineEntry {
        facility: r.str(0).to_owned(),
        kind: r.str(1).parse().map_err(StoreError::Corrupt)?,
        path: r.str(2).to_owned(),
        file_sha256: r.str(3).to_owned(),
        seq: r.i64(4),
        unit: s(5),
        line: r.opt_i64(6),
        segment: s(7),
        field: r.opt_i64(8),
        element: s(9),
        rule: s(10),
        reason: r.str(11).to_owned(),
        content: s(12),
        blob_sha256: s(13),
        at: r.i64(14),
        resolved_at: r.opt_i64(15),
    })
}

fn source_link(r: &Row, o: usize) -> Result<SourceLink, StoreError> {
    Ok(SourceLink {
        rtype: r.str(o).parse().map_err(StoreError::Corrupt)?,
        id: r.str(o + 1).to_owned(),
        facility: r.str(o + 2).to_owned(),
        kind: r.str(o + 3).parse().map_err(StoreError::Corrupt)?,
        source_key: r.str(o + 4).to_owned(),
        occurred_at: r.i64(o + 5),
        path: r.str(o + 6).to_owned(),
        file_sha256: r.str(o + 7).to_owned(),
    })
}

/// Which quarantine entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuarantineQuery {
    /// Only this facility's.
    pub facility: Option<String>,
    /// Only this collector's.
    pub kind: Option<SourceKind>,
    /// Only this file's.
    pub path: Option<String>,
    /// Resolved entries too.
    pub include_resolved: bool,
}

impl Reader<'_> {
    /// The remembered state of every file of `kind` (of one facility, or of all).
    pub fn collect_files(&mut self, facility: Option<&str>, kind: SourceKind) -> Result<Vec<FileState>, StoreError> {
        let cols = FILE_COLS.join(", ");
        let rows = match facility {
            Some(f) => self.conn.query(
                &format!("SELECT {cols} FROM collect_file WHERE facility = $1 AND kind = $2 ORDER BY path"),
                &[Param::Text(f), Param::Text(kind.as_str())],
            )?,
            None => self.conn.query(
                &format!("SELECT {cols} FROM collect_file WHERE kind = $1 ORDER BY facility, path"),
                &[Param::Text(kind.as_str())],
            )?,
        };
        rows.iter().map(file_state).collect()
    }

    /// The remembered states of one path (one per facility that collected it).
    pub fn collect_file(&mut self, kind: SourceKind, path: &str) -> Result<Vec<FileState>, StoreError> {
        let cols = FILE_COLS.join(", ");
        let rows = self.conn.query(
            &format!("SELECT {cols} FROM collect_file WHERE kind = $1 AND path = $2 ORDER BY facility"),
            &[Param::Text(kind.as_str()), Param::Text(path)],
        )?;
        rows.iter().map(file_state).collect()
    }

    /// Quarantine entries, oldest first.
    pub fn quarantine(&mut self, q: &QuarantineQuery) -> Result<Vec<QuarantineEntry>, StoreError> {
        let mut conds = vec!["1 = 1".to_owned()];
        let mut params: Vec<Param<'_>> = Vec::new();
        if let Some(f) = &q.facility {
            params.push(Param::Text(f));
            conds.push(format!("facility = ${}", params.len()));
        }
        if let Some(k) = q.kind {
            params.push(Param::Text(k.as_str()));
            conds.push(format!("kind = ${}", params.len()));
        }
        if let Some(p) = &q.path {
            params.push(Param::Text(p));
            conds.push(format!("path = ${}", params.len()));
        }
        if !q.include_resolved {
            conds.push("resolved_at IS NULL".to_owned());
        }
        let sql = format!(
            "SELECT {} FROM collect_quarantine WHERE {} ORDER BY facility, kind, path, at, file_sha256, seq",
            QUARANTINE_COLS.join(", "),
            conds.join(" AND ")
        );
        let rows = self.conn.query(&sql, &params)?;
        rows.iter().map(quarantine_entry).collect()
    }

    /// Original bytes by SHA-256.
    pub fn blob(&mut self, sha256: &str) -> Result<Option<Blob>, StoreError> {
        let rows = self
            .conn
            .query("SELECT sha256, size, encoding, data FROM collect_blob WHERE sha256 = $1", &[Param::Text(sha256)])?;
        Ok(rows.first().map(|r| Blob {
            sha256: r.str(0).to_owned(),
            size: r.i64(1),
            encoding: r.str(2).to_owned(),
            data: r.str(3).to_owned(),
        }))
    }

    /// The source link of a resource, if a collector wrote it.
    pub fn source_link(&mut self, rtype: ResourceType, id: &str) -> Result<Option<SourceLink>, StoreError> {
        let rows = self.conn.query(
            &format!("SELECT {} FROM collect_source WHERE rtype = $1 AND id = $2", SOURCE_COLS.join(", ")),
            &[Param::Text(rtype.as_str()), Param::Text(id)],
        )?;
        rows.first().map(|r| source_link(r, 0)).transpose()
    }

    /// The resources whose stored version came from a source message (a scan: for
    /// provenance questions and tests, not for the collector's hot path).
    pub fn sourced_from(&mut self, source_key: &str) -> Result<Vec<SourceLink>, StoreError> {
        let rows = self.conn.query(
            &format!("SELECT {} FROM collect_source WHERE source_key = $1 ORDER BY rtype, id", SOURCE_COLS.join(", ")),
            &[Param::Text(source_key)],
        )?;
        rows.iter().map(|r| source_link(r, 0)).collect()
    }

    /// The current state of many resources at once (missing ones left out), with their
    /// source links: what the collector needs to decide create, update, unchanged or skip.
    pub fn collect_currents(&mut self, keys: &[(ResourceType, String)]) -> Result<Vec<CollectCurrent>, StoreError> {
        let mut by_type: std::collections::BTreeMap<ResourceType, Vec<&str>> = std::collections::BTreeMap::new();
        for (t, id) in keys {
            by_type.entry(*t).or_default().push(id);
        }
        let src = SOURCE_COLS.iter().map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ");
        let mut out = Vec::with_capacity(keys.len());
        for (rtype, ids) in by_type {
            for part in ids.chunks(LOOKUP_BATCH) {
                let mut params: Vec<Param<'_>> = Vec::with_capacity(part.len() + 1);
                params.push(Param::Text(rtype.as_str()));
                let mut marks = Vec::with_capacity(part.len());
                for id in part {
                    params.push(Param::Text(id));
                    marks.push(format!("${}", params.len()));
                }
                let sql = format!(
                    "SELECT r.rtype, r.id, r.version, r.deleted, r.content_hash, r.facility, r.class, r.patient_id, {src} \
                     FROM resource r LEFT JOIN collect_source s ON s.rtype = r.rtype AND s.id = r.id \
                     WHERE r.rtype = $1 AND r.id IN ({})",
                    marks.join(", ")
                );
                for r in self.conn.query(&sql, &params)? {
                    out.push(CollectCurrent {
                        rtype,
                        id: r.str(1).to_owned(),
                        version: r.i64(2),
                        deleted: r.i64(3) != 0,
                        content_hash: r.str(4).to_owned(),
                        facility: r.opt_str(5).and_then(|f| f.parse().ok()),
                        class: r.str(6).parse().map_err(StoreError::Corrupt)?,
                        patient_id: r.opt_str(7).map(str::to_owned),
                        source: if r.opt_str(8).is_some() { Some(source_link(&r, 8)?) } else { None },
                    });
                }
            }
        }
        Ok(out)
    }

    /// The facilities a source patient (or anyone with this insurance identity) used, with
    /// the months: `(facility, patient_id, year_month)`, newest month first.
    pub fn facility_uses(
        &mut self,
        patient_id: Option<&str>,
        insurance_id: Option<&str>,
    ) -> Result<Vec<FacilityUseRow>, StoreError> {
        let cols = USE_COLS.join(", ");
        let rows = match (patient_id, insurance_id) {
            (Some(p), Some(i)) => self.conn.query(
                &format!(
                    "SELECT {cols} FROM facility_use WHERE patient_id = $1 OR insurance_id = $2 \
                     ORDER BY year_month DESC, facility, patient_id"
                ),
                &[Param::Text(p), Param::Text(i)],
            )?,
            (Some(p), None) => self.conn.query(
                &format!(
                    "SELECT {cols} FROM facility_use WHERE patient_id = $1 ORDER BY year_month DESC, facility, patient_id"
                ),
                &[Param::Text(p)],
            )?,
            (None, Some(i)) => self.conn.query(
                &format!(
                    "SELECT {cols} FROM facility_use WHERE insurance_id = $1 ORDER BY year_month DESC, facility, patient_id"
                ),
                &[Param::Text(i)],
            )?,
            (None, None) => return Ok(Vec::new()),
        };
        Ok(rows
            .iter()
            .map(|r| FacilityUseRow {
                facility: r.str(0).to_owned(),
                patient_id: r.str(1).to_owned(),
                year_month: r.str(2).to_owned(),
                insurance_id: r.opt_str(3).map(str::to_owned),
                file_sha256: r.str(4).to_owned(),
            })
            .collect())
    }

    /// Counts for the operator: files by outcome, open and resolved quarantine entries, blobs,
    /// facility-use facts.
    pub fn collect_counts(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::new();
        for r in self.conn.query(
            "SELECT kind, outcome, COUNT(*) FROM collect_file GROUP BY kind, outcome ORDER BY kind, outcome",
            &[],
        )? {
            out.push((format!("files.{}.{}", r.str(0), r.str(1)), r.i64(2)));
        }
        for (name, sql) in [
            ("quarantine.open", "SELECT COUNT(*) FROM collect_quarantine WHERE resolved_at IS NULL"),
            ("quarantine.resolved", "SELECT COUNT(*) FROM collect_quarantine WHERE resolved_at IS NOT NULL"),
            ("blobs", "SELECT COUNT(*) FROM collect_blob"),
            ("sources", "SELECT COUNT(*) FROM collect_source"),
            ("facility_uses", "SELECT COUNT(*) FROM facility_use"),
        ] {
            out.push((name.to_owned(), self.conn.query(sql, &[])?.first().map_or(0, |r| r.i64(0))));
        }
        Ok(out)
    }
}
