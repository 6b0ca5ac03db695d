//! Writing what the collectors (SS-MIX2 storage, UKE receipt files) mapped, through the same
//! validation, classification, gate and audit as every other write.
//!
//! The collector (crate `musubi-collect`) reads and maps files; this module knows nothing of
//! their formats. It takes a [`SourceFile`]: the file's identity (facility, path, size, mtime,
//! SHA-256, original bytes), its source messages ([`SourceUnit`]: an SS-MIX2 message or a UKE
//! receipt) with the resources each produced or withdraws, and the problems that already keep
//! parts of it out. Two steps:
//!
//! 1. [`Service::prepare_collected`] (any thread, in parallel): validates each resource —
//!    a refused one becomes a quarantine entry with the validator's element and rule, never
//!    dropped — and prepares it as a create (meta, classification, retention, index, content
//!    hash), as the facility's system actor.
//! 2. [`Service::commit_collected`] (one thread, in file order): looks the chunk's resources
//!    up in one go and decides for each, in order: identical to what is stored → nothing
//!    changes; older than what is stored (an earlier 発生日時) → skipped; otherwise create or
//!    update (the gate is asked about the stored record first). A retraction deletes a resource
//!    only while its stored version still comes from the cancelled message. Everything —
//!    resources, audit records, quarantine entries, original bytes, source links, facility-use
//!    facts and the file states — is committed in one transaction.
//!
//! Every change gets its own version even when a chunk changes a resource twice, and files are
//! applied in the same order whatever the chunk boundaries, so a collection killed at any
//! point and run again ends with the same store as one that was never interrupted.

use std::collections::{BTreeMap, HashMap};

use musubi_domain::audit::{AuditAction, AuditOutcome};
use musubi_fhir::{ResourceType, datetime};
use musubi_gate::{Actor, Operation, RecordView};
use musubi_store::collect::{
    Blob, CollectBatch, CollectCurrent, FacilityUseRow, FileOutcome, FileState, QuarantineEntry, Recollect, SourceKind,
    SourceLink,
};
use musubi_store::{DeleteResource, Expect, PutResource, WriteBatch};
use serde_json::Value;

use crate::import::describe;
use crate::prepare::{Prep, prepare, validate};
use crate::{ApiError, Ctx, ErrorKind, Service};

/// One resource a collector mapped.
#[derive(Debug, Clone)]
pub struct SourceResource {
    /// The logical id (deterministic, from the source identity).
    pub id: String,
    /// The readable identity key the id derives from (shown in the quarantine).
    pub key: String,
    /// The 1-based line of the segment or record it came from.
    pub line: Option<i64>,
    /// The segment or record (`OBX`, `SY`).
    pub segment: Option<String>,
    /// The resource; `resourceType` says its type.
    pub resource: Value,
}

/// One source message: an SS-MIX2 message (one file) or a UKE receipt.
#[derive(Debug, Clone)]
pub struct SourceUnit {
    /// Identifies this version of the message (`musubi_ssmix2::Provenance::source_key`).
    pub source_key: String,
    /// When the message was made (epoch ms; 0 when unknown). A message never overwrites what
    /// a later one wrote.
    pub occurred_at: i64,
    /// Resources to create or update.
    pub resources: Vec<SourceResource>,
    /// Resources to withdraw (a cancelled message): deleted only while their stored version
    /// still comes from `source_key`.
    pub retract: Vec<(ResourceType, String)>,
    /// "This person used this facility in this month", when the unit says so.
    pub facility_use: Option<FacilityUseRow>,
}

/// A problem that keeps (part of) a file out, found before writing.
#[derive(Debug, Clone, Default)]
pub struct SourceProblem {
    /// The unit: a receipt number or message key.
    pub unit: Option<String>,
    /// 1-based line.
    pub line: Option<i64>,
    /// Segment or record.
    pub segment: Option<String>,
    /// Field number.
    pub field: Option<i64>,
    /// Why, in Japanese.
    pub reason: String,
    /// The unit's original text (a receipt's lines).
    pub content: Option<String>,
}

/// A collected file: identity, original bytes, units and problems.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The facility (10-digit code; empty if it could not be read).
    pub facility: String,
    /// Which collector.
    pub kind: SourceKind,
    /// The path the file state is kept under.
    pub path: String,
    /// Size in bytes.
    pub size: i64,
    /// Modification time (epoch ms).
    pub mtime: i64,
    /// SHA-256 of the bytes.
    pub sha256: String,
    /// Whether a state for this path exists (its quarantine entries are then resolved).
    pub seen_before: bool,
    /// The original bytes, kept as provenance.
    pub blob: Option<Blob>,
    /// The source messages, in file order.
    pub units: Vec<SourceUnit>,
    /// Problems that quarantine the file or some of its units.
    pub problems: Vec<SourceProblem>,
}

struct PreparedPut {
    put: PutResource,
    /// Its ordinal in the file (numbers a quarantine entry made at commit time).
    ord: usize,
    key: String,
    line: Option<i64>,
    segment: Option<String>,
}

struct PreparedUnit {
    source_key: String,
    occurred_at: i64,
    puts: Vec<PreparedPut>,
    retract: Vec<(ResourceType, String)>,
    facility_use: Option<FacilityUseRow>,
}

/// A file after validation and preparation, ready to commit (see [`Service::commit_collected`]).
pub struct PreparedFile {
    actor: Actor,
    state: FileState,
    seen_before: bool,
    blob: Option<Blob>,
    units: Vec<PreparedUnit>,
    /// Entries made while preparing (they go with the first part).
    quarantine: Vec<QuarantineEntry>,
    /// How many entries preparing made (entries made at commit time are numbered after them).
    base_seq: usize,
    /// Whether this is the first part of the file (it resolves the old quarantine entries).
    first: bool,
    /// Whether this is the last part of the file (it writes the file state).
    last: bool,
    /// Units in the whole file (counted with the last part).
    unit_count: usize,
    /// Counts over all parts of the file.
    counts: std::sync::Arc<PartCounts>,
    /// Only the file state changes (same content, new mtime): it is written as it is.
    touch: bool,
}

/// What the parts of one file landed and refused, for its file state.
#[derive(Default)]
struct PartCounts {
    landed: std::sync::atomic::AtomicI64,
    refused: std::sync::atomic::AtomicI64,
    retraction: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for PreparedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PreparedFile({} {}, {} resources)", self.state.kind, self.state.path, self.resources())
    }
}

impl PreparedFile {
    /// A file whose content is unchanged though its size or mtime changed: only its state is
    /// written again (with the new size and mtime), nothing is read or quarantined.
    pub fn touch(actor: &Actor, state: FileState) -> PreparedFile {
        PreparedFile {
            actor: actor.clone(),
            state,
            seen_before: true,
            blob: None,
            units: Vec::new(),
            quarantine: Vec::new(),
            base_seq: 0,
            first: false,
            last: true,
            unit_count: 0,
            counts: Default::default(),
            touch: true,
        }
    }

    /// The path.
    pub fn path(&self) -> &str {
        &self.state.path
    }

    /// Resources to write (after validation).
    pub fn resources(&self) -> usize {
        self.units.iter().map(|u| u.puts.len() + u.retract.len()).sum()
    }

    /// Quarantine entries so far.
    pub fn quarantined(&self) -> usize {
        self.quarantine.len()
    }

    /// Splits off the leading units holding about `max` resources (at least one unit) as a
    /// part of their own, so a large file is committed in several chunks; `None` when the rest
    /// fits or is one unit. The file state goes with the last part, so a file whose last part was not
    /// committed is collected again (what its earlier parts wrote is then unchanged).
    pub fn split_off_front(&mut self, max: usize) -> Option<PreparedFile> {
        if self.resources() <= max {
            return None;
        }
        let mut n = 0;
        let mut take = 0;
        for u in &self.units {
            let r = u.puts.len() + u.retract.len();
            if take > 0 && n + r > max {
                break;
            }
            n += r;
            take += 1;
        }
        if take >= self.units.len() {
            // A single unit larger than `max` stays whole, with its file state.
            return None;
        }
        let front: Vec<PreparedUnit> = self.units.drain(..take).collect();
        let part = PreparedFile {
            actor: self.actor.clone(),
            state: self.state.clone(),
            seen_before: self.seen_before,
            blob: self.blob.take(),
            units: front,
            quarantine: std::mem::take(&mut self.quarantine),
            base_seq: self.base_seq,
            first: self.first,
            last: false,
            unit_count: 0,
            counts: self.counts.clone(),
            touch: false,
        };
        self.first = false;
        Some(part)
    }
}

/// Counts of collection.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CollectStats {
    /// Files committed.
    pub files: u64,
    /// Source messages (SS-MIX2 messages, UKE receipts) in them.
    pub units: u64,
    /// Resources created.
    pub created: u64,
    /// Resources changed.
    pub updated: u64,
    /// Resources identical to what was stored.
    pub unchanged: u64,
    /// Resources not written because a later message already wrote them.
    pub superseded: u64,
    /// Resources deleted by a cancellation.
    pub retracted: u64,
    /// Quarantine entries made.
    pub quarantined: u64,
}

impl CollectStats {
    /// Adds another count.
    pub fn add(&mut self, o: &CollectStats) {
        self.files += o.files;
        self.units += o.units;
        self.created += o.created;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.superseded += o.superseded;
        self.retracted += o.retracted;
        self.quarantined += o.quarantined;
    }

    /// Resources that landed (written or confirmed).
    pub fn resources(&self) -> u64 {
        self.created + self.updated + self.unchanged
    }
}

/// A resource's state while a chunk is decided: what is stored, with the chunk's own earlier
/// changes (and those of a chunk decided before but not yet committed) applied.
#[derive(Clone)]
struct KeyState {
    exists: bool,
    version: i64,
    deleted: bool,
    content_hash: String,
    view: Option<RecordView>,
    source_key: Option<String>,
    occurred_at: i64,
    /// Changes already placed in this chunk (the next goes into that batch).
    ops: usize,
}

type Key = (ResourceType, String);

/// What a run of chunks carries from one chunk to the next, so that a chunk can be decided
/// while the one before it is being committed: the decided state of every resource the
/// uncommitted chunks touch. Use one session per run, from one thread.
#[derive(Default)]
pub struct CollectSession {
    overlay: HashMap<Key, (KeyState, u64)>,
    decided: u64,
}

impl CollectSession {
    /// A new session.
    pub fn new() -> CollectSession {
        CollectSession::default()
    }

    /// Chunk `chunk` is committed: the store now has what the session remembered of it.
    pub fn committed(&mut self, chunk: u64) {
        self.overlay.retain(|_, (_, c)| *c > chunk);
    }
}

/// A decided chunk, ready for [`Service::write_collected`] (which may run on another thread).
pub struct DecidedChunk {
    batch: CollectBatch,
    stats: CollectStats,
    /// The chunk's number in its session.
    pub chunk: u64,
}

impl std::fmt::Debug for DecidedChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DecidedChunk({}, {} files)", self.chunk, self.batch.files.len())
    }
}

impl KeyState {
    fn absent() -> KeyState {
        KeyState {
            exists: false,
            version: 0,
            deleted: false,
            content_hash: String::new(),
            view: None,
            source_key: None,
            occurred_at: 0,
            ops: 0,
        }
    }

    fn of(c: CollectCurrent) -> KeyState {
        KeyState {
            exists: true,
            version: c.version,
            deleted: c.deleted,
            content_hash: c.content_hash,
            view: Some(RecordView::for_write(c.rtype, c.class, c.facility, c.patient_id)),
            source_key: c.source.as_ref().map(|s| s.source_key.clone()),
            occurred_at: c.source.map_or(0, |s| s.occurred_at),
            ops: 0,
        }
    }
}

fn entry(state: &FileState, seq: usize, at: i64) -> QuarantineEntry {
    QuarantineEntry {
        facility: state.facility.clone(),
        kind: state.kind,
        path: state.path.clone(),
        file_sha256: state.sha256.clone(),
        seq: seq as i64,
        unit: None,
        line: None,
        segment: None,
        field: None,
        element: None,
        rule: None,
        reason: String::new(),
        content: None,
        blob_sha256: None,
        at,
        resolved_at: None,
    }
}

impl Service {
    /// Validates and prepares a collected file as `actor` (the facility's system). Pure CPU
    /// work: call it from several threads at once.
    pub fn prepare_collected(&self, actor: &Actor, file: SourceFile) -> PreparedFile {
        let file = self.keyed_ids(file);
        let persons = crate::prepare::Persons::new(&self.store);
        let now = datetime::now_ms();
        let state = FileState {
            facility: file.facility,
            kind: file.kind,
            path: file.path,
            size: file.size,
            mtime: file.mtime,
            sha256: file.sha256,
            outcome: FileOutcome::Landed,
            resources: 0,
            quarantined: 0,
            collected_at: now,
        };
        let blob_key = file.blob.as_ref().map(|b| b.sha256.clone());
        let mut quarantine = Vec::new();
        for p in file.problems {
            let mut e = entry(&state, quarantine.len(), now);
            e.unit = p.unit;
            e.line = p.line;
            e.segment = p.segment;
            e.field = p.field;
            e.reason = p.reason;
            e.content = p.content;
            e.blob_sha256 = blob_key.clone();
            quarantine.push(e);
        }
        let unit_count = file.units.len();
        let mut units = Vec::with_capacity(file.units.len());
        let mut ord = 0;
        for u in file.units {
            let mut puts = Vec::with_capacity(u.resources.len());
            for r in u.resources {
                let SourceResource { id, key, line, segment, resource } = r;
                ord += 1;
                match prepare_one(actor, &persons, id, resource, now) {
                    Ok(put) => puts.push(PreparedPut { put, ord, key, line, segment }),
                    Err((err, resource)) => {
                        let mut e = entry(&state, quarantine.len(), now);
                        let first = err.issues.iter().find(|i| i.severity == musubi_fhir::outcome::Severity::Error);
                        e.element = first.and_then(|i| i.expression.clone());
                        e.rule = first.and_then(|i| i.rule.clone());
                        e.reason = describe(&err);
                        e.unit = Some(key);
                        e.line = line;
                        e.segment = segment;
                        e.content = resource.map(|r| r.to_string());
                        e.blob_sha256 = blob_key.clone();
                        quarantine.push(e);
                    }
                }
            }
            units.push(PreparedUnit {
                source_key: u.source_key,
                occurred_at: u.occurred_at,
                puts,
                retract: u.retract,
                facility_use: u.facility_use,
            });
        }
        PreparedFile {
            actor: actor.clone(),
            state,
            seen_before: file.seen_before,
            blob: file.blob,
            units,
            base_seq: quarantine.len(),
            quarantine,
            first: true,
            last: true,
            unit_count,
            counts: Default::default(),
            touch: false,
        }
    }

    /// Decides and commits a chunk of prepared files (or parts), in order, in one transaction.
    /// Returns the chunk's counts; the files are durable when it returns.
    pub fn commit_collected(&self, files: Vec<PreparedFile>) -> Result<CollectStats, ApiError> {
        let mut session = CollectSession::new();
        let decided = self.decide_collected(&mut session, files)?;
        self.write_collected(decided)
    }

    /// Commits a decided chunk (durable when it returns) and gives its counts. Chunks of a
    /// session must be written in the order they were decided, each after the one before
    /// succeeded; then tell the session ([`CollectSession::committed`]).
    pub fn write_collected(&self, chunk: DecidedChunk) -> Result<CollectStats, ApiError> {
        let t = std::time::Instant::now();
        let written: Vec<crate::mpi::WrittenPatient> =
            chunk.batch.writes.iter().flat_map(|w| crate::mpi::WrittenPatient::of(&w.puts)).collect();
        self.store.commit_collect(chunk.batch)?;
        let ctx = Ctx {
            actor: musubi_gate::Actor::Operator { name: "collector".into() },
            address: None,
            base_url: String::new(),
        };
        self.link_written(&ctx, written);
        tracing::debug!(chunk = chunk.chunk, commit_ms = t.elapsed().as_secs_f64() * 1e3, "collect chunk committed");
        Ok(chunk.stats)
    }

    /// Decides a chunk of prepared files (or parts), in order: what to create, update, skip,
    /// delete or quarantine, against the store and the session's uncommitted chunks. Writes
    /// nothing.
    pub fn decide_collected(
        &self,
        session: &mut CollectSession,
        files: Vec<PreparedFile>,
    ) -> Result<DecidedChunk, ApiError> {
        session.decided += 1;
        let chunk_no = session.decided;
        let mut stats = CollectStats::default();
        let mut keys: Vec<(ResourceType, String)> = Vec::new();
        for f in &files {
            for u in &f.units {
                keys.extend(u.puts.iter().map(|p| (p.put.rtype, p.put.id.clone())));
                keys.extend(u.retract.iter().cloned());
            }
        }
        keys.sort();
        keys.dedup();
        let t0 = std::time::Instant::now();
        // What an uncommitted chunk decided wins over the store, which does not have it yet.
        let mut states: HashMap<Key, KeyState> = HashMap::with_capacity(keys.len());
        keys.retain(|k| match session.overlay.get(k) {
            Some((st, _)) => {
                let mut st = st.clone();
                st.ops = 0;
                states.insert(k.clone(), st);
                false
            }
            None => true,
        });
        let current = self.store.read(|r| r.collect_currents(&keys))?;
        let t_lookup = t0.elapsed();
        states.extend(current.into_iter().map(|c| ((c.rtype, c.id.clone()), KeyState::of(c))));

        let mut waves: Vec<WriteBatch> = Vec::new();
        let mut batch = CollectBatch::default();
        // (actor name, patient, action) → entities, for one audit record each.
        let mut audit: BTreeMap<(usize, Option<String>, u8), Vec<String>> = BTreeMap::new();
        let mut actors: Vec<Actor> = Vec::new();
        let now = datetime::now_ms();
        for mut f in files {
            if f.touch {
                batch.files.push(f.state);
                continue;
            }
            let actor_ix = match actors.iter().position(|a| *a == f.actor) {
                Some(i) => i,
                None => {
                    actors.push(f.actor.clone());
                    actors.len() - 1
                }
            };
            if f.first && f.seen_before {
                batch.recollect.push(Recollect {
                    facility: f.state.facility.clone(),
                    kind: f.state.kind,
                    path: f.state.path.clone(),
                    sha256: f.state.sha256.clone(),
                });
            }
            if let Some(b) = f.blob.take() {
                batch.blobs.push(b);
            }
            let mut landed = 0i64;
            let mut retracted_any = false;
            for u in f.units {
                if let Some(fu) = u.facility_use {
                    batch.facility_uses.push(fu);
                }
                let link = |rtype: ResourceType, id: &str| SourceLink {
                    rtype,
                    id: id.to_owned(),
                    facility: f.state.facility.clone(),
                    kind: f.state.kind,
                    source_key: u.source_key.clone(),
                    occurred_at: u.occurred_at,
                    path: f.state.path.clone(),
                    file_sha256: f.state.sha256.clone(),
                };
                for p in u.puts {
                    let k = (p.put.rtype, p.put.id.clone());
                    let st = states.entry(k).or_insert_with(KeyState::absent);
                    if st.exists
                        && st.occurred_at > u.occurred_at
                        && st.source_key.as_deref() != Some(u.source_key.as_str())
                    {
                        stats.superseded += 1;
                        landed += 1;
                        continue;
                    }
                    if st.exists && !st.deleted && st.content_hash == p.put.content_hash {
                        stats.unchanged += 1;
                        landed += 1;
                        if st.source_key.as_deref() != Some(u.source_key.as_str()) {
                            batch.sources.push(link(p.put.rtype, &p.put.id));
                            st.source_key = Some(u.source_key.clone());
                            st.occurred_at = u.occurred_at;
                        }
                        continue;
                    }
                    // Refused: another facility's record (the gate), or a record of another
                    // patient under the same id — a collector's ids are derived from the source
                    // identity, so a change of patient means two sources collide, never an
                    // update; the stored record is kept and the newcomer waits in quarantine.
                    let refusal = match &st.view {
                        // A deleted record still belongs to its facility.
                        Some(view)
                            if st.deleted
                                && !crate::access::write_decision(&f.actor, Operation::Write, view).is_allow() =>
                        {
                            Some(format!(
                                "{}/{} は他の医療機関の記録のため更新できません（アクセス権限がありません）",
                                p.put.rtype, p.put.id
                            ))
                        }
                        Some(view) if !st.deleted => {
                            if !crate::access::write_decision(&f.actor, Operation::Write, view).is_allow() {
                                Some(format!(
                                    "{}/{} は他の医療機関の記録のため更新できません（アクセス権限がありません）",
                                    p.put.rtype, p.put.id
                                ))
                            } else {
                                match (&view.patient_id, &p.put.meta.patient_id) {
                                    (Some(a), Some(b)) if a != b => Some(format!(
                                        "{}/{} の id が別の患者（Patient/{a}）の記録と衝突しています。\
                                         取り込み元の識別子（{}）が一意ではありません",
                                        p.put.rtype, p.put.id, p.key
                                    )),
                                    _ => None,
                                }
                            }
                        }
                        _ => None,
                    };
                    if let Some(reason) = refusal {
                        let mut e = entry(&f.state, f.base_seq + p.ord, now);
                        e.unit = Some(p.key.clone());
                        e.line = p.line;
                        e.segment = p.segment.clone();
                        e.reason = reason;
                        e.content = Some(p.put.content.clone());
                        e.blob_sha256 = Some(f.state.sha256.clone());
                        f.quarantine.push(e);
                        f.counts.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                    let mut put = p.put;
                    if st.exists {
                        restamp(&mut put, st.version + 1)?;
                    }
                    let action = if st.exists {
                        stats.updated += 1;
                        AuditAction::Update
                    } else {
                        stats.created += 1;
                        AuditAction::Create
                    };
                    landed += 1;
                    audit
                        .entry((actor_ix, put.meta.patient_id.clone(), action_code(action)))
                        .or_default()
                        .push(format!("{}/{}/_history/{}", put.rtype, put.id, put.version));
                    batch.sources.push(link(put.rtype, &put.id));
                    *st = KeyState {
                        exists: true,
                        version: put.version,
                        deleted: false,
                        content_hash: put.content_hash.clone(),
                        view: Some(RecordView::for_write(
                            put.rtype,
                            put.meta.class,
                            put.meta.facility,
                            put.meta.patient_id.clone(),
                        )),
                        source_key: Some(u.source_key.clone()),
                        occurred_at: u.occurred_at,
                        ops: st.ops + 1,
                    };
                    wave(&mut waves, st.ops - 1).puts.push(put);
                }
                for (rtype, id) in u.retract {
                    retracted_any = true;
                    let Some(st) = states.get_mut(&(rtype, id.clone())) else { continue };
                    if !st.exists || st.deleted || st.source_key.as_deref() != Some(u.source_key.as_str()) {
                        continue;
                    }
                    if let Some(view) = &st.view
                        && !crate::access::write_decision(&f.actor, Operation::Delete, view).is_allow()
                    {
                        continue;
                    }
                    stats.retracted += 1;
                    audit
                        .entry((
                            actor_ix,
                            st.view.as_ref().and_then(|v| v.patient_id.clone()),
                            action_code(AuditAction::Delete),
                        ))
                        .or_default()
                        .push(format!("{rtype}/{id}/_history/{}", st.version + 1));
                    wave(&mut waves, st.ops).deletes.push(DeleteResource {
                        rtype,
                        id,
                        last_updated: now,
                        expect_version: Some(st.version),
                    });
                    st.version += 1;
                    st.deleted = true;
                    st.ops += 1;
                }
            }
            stats.units += f.unit_count as u64;
            stats.quarantined += f.quarantine.len() as u64;
            batch.quarantine.extend(f.quarantine);
            f.counts.landed.fetch_add(landed, std::sync::atomic::Ordering::Relaxed);
            if retracted_any {
                f.counts.retraction.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            if f.last {
                stats.files += 1;
                let landed = f.counts.landed.load(std::sync::atomic::Ordering::Relaxed);
                let quarantined = f.base_seq as i64 + f.counts.refused.load(std::sync::atomic::Ordering::Relaxed);
                let mut state = f.state;
                state.resources = landed;
                state.quarantined = quarantined;
                state.outcome = if f.counts.retraction.load(std::sync::atomic::Ordering::Relaxed) {
                    FileOutcome::Retracted
                } else if quarantined == 0 {
                    FileOutcome::Landed
                } else if landed == 0 {
                    FileOutcome::Quarantined
                } else {
                    FileOutcome::Partial
                };
                batch.files.push(state);
            }
        }
        let records: Vec<_> = audit
            .into_iter()
            .map(|((actor_ix, patient, action), entities)| {
                let ctx = Ctx { actor: actors[actor_ix].clone(), address: None, base_url: String::new() };
                let mut a = self.audit_record(&ctx, action_from(action), "collect", AuditOutcome::Success);
                a.patient = patient;
                a.entities = entities;
                a
            })
            .collect();
        if waves.is_empty() {
            waves.push(WriteBatch::default());
        }
        if let Some(first) = waves.first_mut() {
            first.audit = records;
        }
        batch.writes = waves;
        // Every key of the chunk (changed, or with a new source link) is remembered until the
        // chunk is committed.
        for (k, st) in states {
            if st.exists {
                session.overlay.insert(k, (st, chunk_no));
            }
        }
        tracing::debug!(
            chunk = chunk_no,
            keys = keys.len(),
            lookup_ms = t_lookup.as_secs_f64() * 1e3,
            decide_ms = (t0.elapsed() - t_lookup).as_secs_f64() * 1e3,
            "collect chunk decided"
        );
        Ok(DecidedChunk { batch, stats, chunk: chunk_no })
    }
}

/// Validates and prepares one resource as a create. A refused resource comes back with the
/// error (and the resource itself, unless preparing had already taken it).
fn prepare_one(
    actor: &Actor,
    persons: &crate::prepare::Persons,
    id: String,
    resource: Value,
    now: i64,
) -> Result<PutResource, (ApiError, Option<Value>)> {
    let t = resource.get("resourceType").and_then(Value::as_str).unwrap_or("").to_owned();
    let Ok(rtype) = t.parse::<ResourceType>() else {
        let e =
            ApiError::at(ErrorKind::Unprocessable, "resourceType", format!("リソース型 {t:?} には対応していません"));
        return Err((e, Some(resource)));
    };
    if resource.get("id").and_then(Value::as_str) != Some(id.as_str()) || !musubi_fhir::is_valid_id(&id) {
        let e = ApiError::at(
            ErrorKind::Unprocessable,
            format!("{t}.id"),
            format!("id {id:?} が不正か、リソースの id と一致しません"),
        );
        return Err((e, Some(resource)));
    }
    if let Err(e) = validate(&resource, None) {
        return Err((e, Some(resource)));
    }
    let prep = Prep { persons, actor, rtype, id, version: 1, expect: Expect::Absent, now, bundle_key: None, at: t };
    // Preparing fails only on what the gate refuses (another facility's data); the original
    // bytes of the file stay in the blob table.
    prepare(prep, resource).map_err(|e| (e, None))
}

/// Makes a put prepared as a create (version 1) the update to `version`: the version is the
/// only thing that differs (content hash, meta, index and retention do not depend on it), so
/// only `meta.versionId` in the stored JSON is changed rather than preparing again.
fn restamp(put: &mut PutResource, version: i64) -> Result<(), ApiError> {
    let mut body: Value = serde_json::from_str(&put.content)
        .map_err(|e| ApiError::internal(format!("prepared resource is not JSON: {e}")))?;
    let Some(meta) = body.get_mut("meta").and_then(Value::as_object_mut) else {
        return Err(ApiError::internal("prepared resource has no meta"));
    };
    meta.insert("versionId".into(), Value::String(version.to_string()));
    put.content = body.to_string();
    put.version = version;
    put.expect = Expect::Version(version - 1);
    Ok(())
}

fn wave(waves: &mut Vec<WriteBatch>, i: usize) -> &mut WriteBatch {
    while waves.len() <= i {
        waves.push(WriteBatch::default());
    }
    &mut waves[i]
}

fn action_code(a: AuditAction) -> u8 {
    match a {
        AuditAction::Create => 0,
        AuditAction::Update => 1,
        AuditAction::Delete => 2,
        _ => 3,
    }
}

fn action_from(c: u8) -> AuditAction {
    match c {
        0 => AuditAction::Create,
        1 => AuditAction::Update,
        2 => AuditAction::Delete,
        _ => AuditAction::Execute,
    }
}

impl Service {
    /// What the collector knows of the files it collected of `kind` (of `facility`, or all):
    /// the collector compares them with the files on disk (a command, not a request path).
    pub fn collected_files(&self, facility: Option<&str>, kind: SourceKind) -> Result<Vec<FileState>, ApiError> {
        Ok(self.store.read(|r| r.collect_files(facility, kind))?)
    }

    /// What the collector knows of the file at `path` (one state per facility it was
    /// collected for).
    pub fn collected_file(&self, kind: SourceKind, path: &str) -> Result<Vec<FileState>, ApiError> {
        Ok(self.store.read(|r| r.collect_file(kind, path))?)
    }

    /// Forgets files gone from the storage: their states are dropped (a file that comes back
    /// is collected again) and their open quarantine entries are marked resolved. What they
    /// wrote stays: the storage withdraws data only by cancellation.
    pub fn forget_collected(&self, files: Vec<musubi_store::collect::Forget>) -> Result<(), ApiError> {
        if files.is_empty() {
            return Ok(());
        }
        self.store.commit_collect(CollectBatch { forget: files, ..Default::default() })?;
        Ok(())
    }

    /// The collectors' quarantine list. The operator and administrators see every facility's
    /// entries; a facility's system only its own. The entries hold clinical text (a receipt's
    /// lines, a refused resource), so the read is audited like any other.
    pub fn collect_quarantine(
        &self,
        ctx: &Ctx,
        mut q: musubi_store::collect::QuarantineQuery,
    ) -> Result<Vec<QuarantineEntry>, ApiError> {
        if let Some(own) = ctx.actor.facility() {
            match &q.facility {
                Some(f) if *f != own.as_str() => {
                    let e = ApiError::new(ErrorKind::Forbidden, "他の医療機関の取り込み保留一覧は参照できません");
                    return Err(self.refuse(ctx, AuditAction::Read, "collect-quarantine", None, e));
                }
                _ => q.facility = Some(own.to_string()),
            }
        }
        let entries = self.store.read(|r| r.quarantine(&q))?;
        let mut a = self.audit_record(ctx, AuditAction::Read, "collect-quarantine", AuditOutcome::Success);
        a.query = Some(format!(
            "facility={} kind={} resolved={}",
            q.facility.as_deref().unwrap_or("*"),
            q.kind.map_or("*", |k| k.as_str()),
            q.include_resolved
        ));
        a.outcome_text = Some(format!("{} entries", entries.len()));
        self.audit(vec![a])?;
        Ok(entries)
    }
}
