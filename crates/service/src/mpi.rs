//! The master patient index in the service: every Patient write is linked to a person right
//! after it commits (the person of all the patient's records follows), operators merge, split
//! and keep apart with history and audit, the review queue, a batch rebuild, and the IHE
//! interfaces: PIXm (`Patient/$ihe-pix`) and PDQm `$match`.
//!
//! The matcher (`musubi-identify`) keeps its index in memory. It is built on first use from the
//! stored Patients and the stored decisions (links, kept-apart pairs, the trained model), so a
//! restart changes nobody's person; Patients written while no index was loaded (or whose
//! linking was interrupted) are linked then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use musubi_domain::FacilityCode;
use musubi_domain::audit::{AuditAction, AuditOutcome};
use musubi_fhir::ResourceType;
use musubi_fhir::datetime::now_ms;
use musubi_gate::{Actor, Operation};
use musubi_identify::{Decision, Index, IndexBuilder, LinkConfig, LinkReason, PersonId, SourceKey, SourceRecord};
use musubi_store::PutResource;
use musubi_store::accounts::NotificationRow;
use musubi_store::mpi::{LinkRow, MpiWrite, ReviewRow};
use serde::Serialize;
use serde_json::{Value, json};

use crate::access::Access;
use crate::{ApiError, Ctx, ErrorKind, Service};

/// Source records moved to a person.
type Moves = Vec<(SourceKey, PersonId)>;

/// What a merge did: the records moved, (retired, survivor), and the facilities new to the
/// merged person.
type Merged = (Moves, Option<(PersonId, PersonId)>, Vec<String>);

/// The setting holding the trained model (JSON).
pub const MODEL_SETTING: &str = "mpi.model";

/// The notification kind: a facility's records were first linked to the person.
pub const FACILITY_LINKED: &str = "facility-linked";

/// The in-memory index, shared by the clones of a service.
#[derive(Clone, Default)]
pub(crate) struct MpiState {
    index: Arc<Mutex<Option<Index>>>,
}

impl MpiState {
    /// Drops the index: the next use builds it again from the store (after a rekey moved the
    /// Patients it was built from).
    pub(crate) fn forget(&self) {
        if let Ok(mut g) = self.index.lock() {
            *g = None;
        }
    }
}

/// A Patient that was just written and must be linked.
pub(crate) struct WrittenPatient {
    id: String,
    facility: Option<FacilityCode>,
    content: String,
}

impl WrittenPatient {
    /// The Patients among a batch's puts.
    pub(crate) fn of(puts: &[PutResource]) -> Vec<WrittenPatient> {
        puts.iter()
            .filter(|p| p.rtype == ResourceType::Patient)
            .map(|p| WrittenPatient { id: p.id.clone(), facility: p.meta.facility, content: p.content.clone() })
            .collect()
    }
}

fn key_string(k: &SourceKey) -> String {
    k.to_string()
}

fn parse_key(s: &str) -> Option<SourceKey> {
    let (f, l) = s.split_once('|')?;
    Some(SourceKey::new(f.parse().ok()?, l))
}

fn person_string(p: PersonId) -> String {
    p.to_string()
}

fn parse_person(s: &str) -> Option<PersonId> {
    uuid::Uuid::parse_str(s).ok().map(PersonId)
}

fn reason_code(d: &Decision) -> &'static str {
    match d {
        Decision::Linked { reason: LinkReason::Insurance, .. } => "insurance",
        Decision::Linked { reason: LinkReason::CrossReference, .. } => "cross_reference",
        Decision::Linked { reason: LinkReason::Probabilistic, .. } => "probabilistic",
        Decision::Review { .. } => "review",
        Decision::NewPerson { .. } => "new",
    }
}

/// A source record read from a stored Patient (None when it has no facility-local id: such a
/// Patient stays its own person).
fn record_of(content: &str, facility: Option<FacilityCode>) -> Option<SourceRecord> {
    let v: Value = serde_json::from_str(content).ok()?;
    let fac = musubi_fhir::classify::local_patient_id(&v).map(|(f, _)| f).or(facility)?;
    SourceRecord::from_fhir_patient(&v, &fac).ok().map(|(r, _)| r)
}

/// One side of a review item, as the operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewSide {
    /// Facility code.
    pub facility: String,
    /// Facility name.
    pub facility_name: Option<String>,
    /// Local patient id.
    pub local_id: String,
    /// Patient resource id.
    pub patient_id: Option<String>,
    /// The Patient resource.
    pub patient: Value,
}

/// A review item.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewItem {
    /// Id.
    pub id: String,
    /// Match weight.
    pub weight: f64,
    /// Why it was held.
    pub hold: String,
    /// One record.
    pub a: ReviewSide,
    /// The other.
    pub b: ReviewSide,
}

impl Service {
    /// Runs `f` on the index, building it first if needed.
    fn with_index<T>(&self, f: impl FnOnce(&mut Index) -> T) -> Result<T, ApiError> {
        let mut guard = self.mpi.index.lock().map_err(|_| ApiError::internal("mpi lock poisoned"))?;
        if guard.is_none() {
            let (index, catch_up) = self.load_index()?;
            *guard = Some(index);
            if !catch_up.is_empty() {
                let idx = guard.as_mut().ok_or_else(|| ApiError::internal("mpi index missing"))?;
                let writes = self.link_records(idx, catch_up, "catch-up");
                drop(guard);
                self.store.write_mpi(writes, Vec::new())?;
                guard = self.mpi.index.lock().map_err(|_| ApiError::internal("mpi lock poisoned"))?;
            }
        }
        let idx = guard.as_mut().ok_or_else(|| ApiError::internal("mpi index missing"))?;
        Ok(f(idx))
    }

    /// Builds the index from the stored Patients and decisions. Returns it and the Patients
    /// that have no stored link yet.
    fn load_index(&self) -> Result<(Index, Vec<(String, SourceRecord)>), ApiError> {
        let (patients, links, kept, model) = self
            .store
            .read(|r| Ok((r.all_patients()?, r.mpi_links()?, r.mpi_kept_apart()?, r.setting(MODEL_SETTING)?)))?;
        let linked: HashMap<String, &LinkRow> = links.iter().map(|l| (l.patient_id.clone(), l)).collect();
        let mut builder = IndexBuilder::new(LinkConfig::default());
        let mut assignments = Vec::new();
        let mut unlinked = Vec::new();
        for (id, facility, content) in &patients {
            let Some(rec) = record_of(content, facility.as_deref().and_then(|f| f.parse().ok())) else { continue };
            match linked.get(id).and_then(|l| parse_person(&l.person_id)) {
                Some(p) => {
                    assignments.push((rec.key.clone(), p));
                    builder.push(&rec);
                }
                None => unlinked.push((id.clone(), rec)),
            }
        }
        let kept: Vec<(SourceKey, SourceKey)> =
            kept.iter().filter_map(|(a, b)| Some((parse_key(a)?, parse_key(b)?))).collect();
        let model = match model.as_deref().map(musubi_identify::Model::from_json) {
            Some(Ok(m)) => Some(m),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "stored MPI model unreadable; using a new one");
                None
            }
            None => None,
        };
        let index = match model {
            Some(m) => builder.restore(m, &assignments, &kept),
            None if assignments.is_empty() => Index::new(LinkConfig::default()),
            // Links without a stored model (an older store): the default model, stored links.
            None => builder.restore(Index::new(LinkConfig::default()).model().clone(), &assignments, &kept),
        };
        Ok((index, unlinked))
    }

    /// Links records into the index; returns the writes that persist the decisions.
    fn link_records(&self, idx: &mut Index, recs: Vec<(String, SourceRecord)>, by: &str) -> Vec<MpiWrite> {
        let now = now_ms();
        let mut writes = Vec::new();
        for (patient_id, rec) in recs {
            let before = idx.person_of(&rec.key);
            let d = idx.add(&rec);
            let person = person_string(d.person());
            // A facility joins the person: the patient is told (a wrong link shows up as a
            // facility they never visited). A record that stays where it was tells nothing new.
            if let Decision::Linked { person: p, .. } = &d
                && before != Some(*p)
                && !idx
                    .records_of(*p)
                    .unwrap_or_default()
                    .iter()
                    .any(|k| k.facility == rec.key.facility && k.local_id != rec.key.local_id)
            {
                writes.push(self.facility_linked_notice(&person, &rec.key.facility.to_string(), now));
            }
            writes.push(MpiWrite::Link(LinkRow {
                facility: rec.key.facility.to_string(),
                local_id: rec.key.local_id.clone(),
                patient_id: patient_id.clone(),
                person_id: person.clone(),
                reason: reason_code(&d).into(),
                decided: now,
            }));
            writes.push(MpiWrite::PersonOfPatient { patient_id: patient_id.clone(), person_id: person.clone() });
            if let Decision::Review { candidates, .. } = &d {
                for c in candidates.iter().take(5) {
                    writes.push(MpiWrite::Review(ReviewRow {
                        id: crate::prepare::new_id(),
                        a: (rec.key.facility.to_string(), rec.key.local_id.clone()),
                        b: (c.record.facility.to_string(), c.record.local_id.clone()),
                        weight: c.weight,
                        hold: c.hold.map(|h| format!("{h:?}")).unwrap_or_else(|| "Uncertain".into()),
                        created: now,
                        resolved: None,
                        resolution: None,
                    }));
                }
            }
            writes.push(MpiWrite::History {
                id: crate::prepare::new_id(),
                at: now,
                action: "link".into(),
                detail: json!({"patient": patient_id, "key": key_string(&rec.key), "person": person, "decision": reason_code(&d)}).to_string(),
                by: by.into(),
            });
        }
        writes
    }

    /// The notice that a facility's records were linked to a person (the patient sees it in the
    /// portal).
    fn facility_linked_notice(&self, person: &str, facility: &str, now: i64) -> MpiWrite {
        let code = facility.to_owned();
        let name = match self.store.read(|r| r.facility(&code)) {
            Ok(Some(f)) => f.name,
            Ok(None) => format!("医療機関（コード {facility}）"),
            Err(e) => {
                tracing::warn!(error = %e, "facility name for a link notice");
                format!("医療機関（コード {facility}）")
            }
        };
        MpiWrite::Notify(NotificationRow {
            id: crate::prepare::new_id(),
            person_id: person.to_owned(),
            kind: FACILITY_LINKED.into(),
            text: format!(
                "{name} の診療記録があなたの記録に結び付けられました。{name} を受診したことがない場合は、地域医療連携ネットワークの窓口にご連絡ください。"
            ),
            created: now,
            read_at: None,
        })
    }

    /// Links Patients just written (called after their commit). A failure here leaves the
    /// patient its own person until the next start-up links it; it never undoes the write.
    pub(crate) fn link_written(&self, ctx: &Ctx, written: Vec<WrittenPatient>) {
        if written.is_empty() {
            return;
        }
        if let Err(e) = self.try_link_written(ctx, written) {
            tracing::error!(error = %e, "linking written patients failed; they will be linked at the next start");
        }
    }

    fn try_link_written(&self, ctx: &Ctx, written: Vec<WrittenPatient>) -> Result<(), ApiError> {
        let recs: Vec<(String, SourceRecord)> =
            written.into_iter().filter_map(|w| Some((w.id.clone(), record_of(&w.content, w.facility)?))).collect();
        if recs.is_empty() {
            return Ok(());
        }
        let by = ctx.actor.name().to_owned();
        let writes = self.with_index(|idx| self.link_records(idx, recs, &by))?;
        let audit: Vec<_> = writes
            .iter()
            .filter_map(|w| match w {
                MpiWrite::Link(l) => {
                    let mut a = self.audit_record(ctx, AuditAction::Execute, "mpi-link", AuditOutcome::Success);
                    a.patient = Some(l.patient_id.clone());
                    a.person = Some(l.person_id.clone());
                    a.outcome_text = Some(l.reason.clone());
                    Some(a)
                }
                _ => None,
            })
            .collect();
        self.store.write_mpi(writes, audit)?;
        Ok(())
    }

    /// Rebuilds every link from scratch (training a new model on the data): `musubi mpi rebuild`.
    /// Operator decisions survive: pairs an operator linked are merged again and pairs kept
    /// apart are split again. Person ids survive too: each new person takes the old id most of
    /// its records had, so consent settings and portal accounts stay attached; an old person
    /// that no longer exists hands what the patient set up to the person most of its records
    /// went to. Returns (records, persons, review items).
    pub fn mpi_rebuild(&self, ctx: &Ctx) -> Result<(u64, u64, usize), ApiError> {
        require_admin(ctx)?;
        let (patients, old_links, reviews, kept) =
            self.store.read(|r| Ok((r.all_patients()?, r.mpi_links()?, r.mpi_reviews(true)?, r.mpi_kept_apart()?)))?;
        let mut ids_by_key: HashMap<SourceKey, String> = HashMap::new();
        let mut recs = Vec::new();
        for (id, facility, content) in &patients {
            if let Some(rec) = record_of(content, facility.as_deref().and_then(|f| f.parse().ok())) {
                ids_by_key.insert(rec.key.clone(), id.clone());
                recs.push(rec);
            }
        }
        let mut builder = IndexBuilder::new(LinkConfig::default());
        builder.push_all(&recs);
        let (mut index, report) = builder.finish();
        let key_of = |f: &str, l: &str| f.parse::<FacilityCode>().ok().map(|f| SourceKey::new(f, l));
        let kept: Vec<(SourceKey, SourceKey)> =
            kept.iter().filter_map(|(a, b)| Some((parse_key(a)?, parse_key(b)?))).collect();
        let mut decided: std::collections::HashSet<(SourceKey, SourceKey)> = std::collections::HashSet::new();
        for r in reviews.iter().filter(|r| r.resolution.as_deref() == Some("linked")) {
            let (Some(a), Some(b)) = (key_of(&r.a.0, &r.a.1), key_of(&r.b.0, &r.b.1)) else { continue };
            if let (Some(pa), Some(pb)) = (index.person_of(&a), index.person_of(&b))
                && pa != pb
                && let Err(e) = index.merge(pa, pb)
            {
                tracing::warn!(error = %e, "an operator's link could not be restored by the rebuild");
            }
            decided.insert((a.clone(), b.clone()));
            decided.insert((b, a));
        }
        // Kept-apart pairs the batch put together: split off the record in most such pairs
        // (the one an operator split off) until none is left.
        for _ in 0..kept.len() {
            let mut count: HashMap<&SourceKey, usize> = HashMap::new();
            for (a, b) in &kept {
                if index.person_of(a).is_some() && index.person_of(a) == index.person_of(b) {
                    *count.entry(a).or_default() += 1;
                    *count.entry(b).or_default() += 1;
                }
            }
            let Some((key, _)) = count.into_iter().max_by(|x, y| x.1.cmp(&y.1).then_with(|| y.0.cmp(x.0))) else {
                break;
            };
            let key = key.clone();
            if let Err(e) = index.split(&key) {
                tracing::warn!(error = %e, "an operator's keep-apart could not be restored by the rebuild");
                break;
            }
        }
        for (a, b) in &kept {
            decided.insert((a.clone(), b.clone()));
            decided.insert((b.clone(), a.clone()));
        }
        let assignments = relabel(index.links(), &old_links);
        let persons = {
            let mut p: Vec<PersonId> = assignments.iter().map(|(_, p)| *p).collect();
            p.sort();
            p.dedup();
            p.len() as u64
        };
        // The index serving from now on carries the kept ids.
        let mut builder = IndexBuilder::new(LinkConfig::default());
        builder.push_all(&recs);
        let index = builder.restore(report.model.clone(), &assignments, &kept);

        let now = now_ms();
        let by = ctx.actor.name().to_owned();
        let old_by_key: HashMap<SourceKey, &LinkRow> =
            old_links.iter().filter_map(|l| Some((key_of(&l.facility, &l.local_id)?, l))).collect();
        let mut writes = vec![MpiWrite::ClearOpenReviews];
        let mut changed = 0u64;
        for (key, person) in &assignments {
            let Some(pid) = ids_by_key.get(key) else { continue };
            let person = person_string(*person);
            if old_by_key.get(key).is_some_and(|l| l.person_id == person && &l.patient_id == pid) {
                continue;
            }
            changed += 1;
            writes.push(MpiWrite::Link(LinkRow {
                facility: key.facility.to_string(),
                local_id: key.local_id.clone(),
                patient_id: pid.clone(),
                person_id: person.clone(),
                reason: "rebuild".into(),
                decided: now,
            }));
            writes.push(MpiWrite::PersonOfPatient { patient_id: pid.clone(), person_id: person });
        }
        for (from, to) in retired_persons(&assignments, &old_links) {
            writes.push(MpiWrite::MovePerson { from, to });
        }
        let mut review = 0usize;
        for r in report.review.iter().filter(|r| !decided.contains(&(r.a.clone(), r.b.clone()))) {
            review += 1;
            writes.push(MpiWrite::Review(ReviewRow {
                id: crate::prepare::new_id(),
                a: (r.a.facility.to_string(), r.a.local_id.clone()),
                b: (r.b.facility.to_string(), r.b.local_id.clone()),
                weight: r.weight,
                hold: format!("{:?}", r.hold),
                created: now,
                resolved: None,
                resolution: None,
            }));
        }
        let records = report.records;
        writes.push(MpiWrite::History {
            id: crate::prepare::new_id(),
            at: now,
            action: "rebuild".into(),
            detail: json!({"records": records, "persons": persons, "changed": changed, "review": review, "seconds": report.seconds}).to_string(),
            by: by.clone(),
        });
        // Hold the index lock so no write links against the old index meanwhile.
        let mut guard = self.mpi.index.lock().map_err(|_| ApiError::internal("mpi lock poisoned"))?;
        // Large networks: commit in chunks so one transaction never holds everything.
        for chunk in writes.chunks(20_000) {
            self.store.write_mpi(chunk.to_vec(), Vec::new())?;
        }
        self.store.put_setting(MODEL_SETTING.into(), report.model.to_json())?;
        *guard = Some(index);
        drop(guard);
        let mut a = self.audit_record(ctx, AuditAction::Execute, "mpi-rebuild", AuditOutcome::Success);
        a.outcome_text = Some(format!("{records} records, {persons} persons, {changed} relinked, {review} to review"));
        self.audit(vec![a])?;
        Ok((records, persons, review))
    }

    fn side(&self, f: &str, l: &str, names: &HashMap<String, String>) -> Result<ReviewSide, ApiError> {
        let (fa, lo) = (f.to_owned(), l.to_owned());
        let link = self.store.read(|r| r.mpi_link(&fa, &lo))?;
        let patient = match &link {
            Some(l) => {
                let id = l.patient_id.clone();
                self.store
                    .read(|r| r.version(ResourceType::Patient, &id, None))?
                    .and_then(|v| v.content)
                    .and_then(|c| serde_json::from_str(&c).ok())
                    .unwrap_or(Value::Null)
            }
            None => Value::Null,
        };
        Ok(ReviewSide {
            facility: f.into(),
            facility_name: names.get(f).cloned(),
            local_id: l.into(),
            patient_id: link.map(|l| l.patient_id),
            patient,
        })
    }

    /// The open review queue, with both records side by side (administrators).
    pub fn mpi_review_queue(&self, ctx: &Ctx) -> Result<Vec<ReviewItem>, ApiError> {
        require_admin(ctx)?;
        let (rows, facilities) = self.store.read(|r| Ok((r.mpi_reviews(false)?, r.facilities()?)))?;
        let names: HashMap<String, String> = facilities.into_iter().map(|f| (f.code, f.name)).collect();
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(ReviewItem {
                id: r.id.clone(),
                weight: r.weight,
                hold: r.hold.clone(),
                a: self.side(&r.a.0, &r.a.1, &names)?,
                b: self.side(&r.b.0, &r.b.1, &names)?,
            });
        }
        let mut a = self.audit_record(ctx, AuditAction::Read, "mpi-review-queue", AuditOutcome::Success);
        a.entities = out
            .iter()
            .flat_map(|i| [i.a.patient_id.clone(), i.b.patient_id.clone()])
            .flatten()
            .map(|p| format!("Patient/{p}"))
            .collect();
        self.audit(vec![a])?;
        Ok(out)
    }

    /// Resolves a review item: `link` merges the two persons, otherwise they are kept apart.
    pub fn mpi_resolve(&self, ctx: &Ctx, id: &str, link: bool) -> Result<(), ApiError> {
        require_admin(ctx)?;
        let item = self
            .store
            .read(|r| r.mpi_reviews(false))?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "その確認項目は見つからないか、解決済みです"))?;
        let a = SourceKey::new(item.a.0.parse().map_err(|_| ApiError::internal("bad facility in review"))?, &item.a.1);
        let b = SourceKey::new(item.b.0.parse().map_err(|_| ApiError::internal("bad facility in review"))?, &item.b.1);
        let now = now_ms();
        let by = ctx.actor.name().to_owned();
        let mut writes = vec![MpiWrite::Resolve {
            id: id.into(),
            resolution: if link { "linked".into() } else { "kept-apart".into() },
            by: by.clone(),
            at: now,
        }];
        if link {
            let (moved, retired, joined) = self.with_index(|idx| -> Result<Merged, ApiError> {
                let (Some(pa), Some(pb)) = (idx.person_of(&a), idx.person_of(&b)) else {
                    return Err(ApiError::new(ErrorKind::Conflict, "記録が索引にありません"));
                };
                if pa == pb {
                    return Ok((Vec::new(), None, Vec::new()));
                }
                // Facilities one side had and the other not: new to the merged person.
                let facilities = |p: PersonId| -> std::collections::BTreeSet<String> {
                    idx.records_of(p).unwrap_or_default().iter().map(|k| k.facility.to_string()).collect()
                };
                let (fa, fb) = (facilities(pa), facilities(pb));
                let joined: Vec<String> = fa.symmetric_difference(&fb).cloned().collect();
                let out = idx
                    .merge(pa, pb)
                    .map_err(|e| ApiError::new(ErrorKind::Conflict, format!("統合できません: {e}")))?;
                let moved =
                    idx.records_of(out.survivor).unwrap_or_default().into_iter().map(|k| (k, out.survivor)).collect();
                Ok((moved, Some((out.retired, out.survivor)), joined))
            })??;
            writes.extend(self.relink_writes(&moved, "operator", now)?);
            if let Some((from, to)) = retired {
                writes.push(MpiWrite::MovePerson { from: person_string(from), to: person_string(to) });
                for f in &joined {
                    writes.push(self.facility_linked_notice(&person_string(to), f, now));
                }
            }
            writes.push(MpiWrite::History {
                id: crate::prepare::new_id(),
                at: now,
                action: "merge".into(),
                detail: json!({"a": key_string(&a), "b": key_string(&b), "review": id}).to_string(),
                by: by.clone(),
            });
        } else {
            let (moved, left) = self.with_index(|idx| -> Result<(Moves, Vec<SourceKey>), ApiError> {
                let mut moved = Vec::new();
                let mut left = Vec::new();
                if idx.person_of(&a).is_some() && idx.person_of(&a) == idx.person_of(&b) {
                    left = split_off_list(idx, &b);
                    let p = idx
                        .split(&b)
                        .map_err(|e| ApiError::new(ErrorKind::Conflict, format!("分離できません: {e}")))?;
                    moved.push((b.clone(), p));
                }
                idx.keep_apart(&a, &b).map_err(|e| ApiError::new(ErrorKind::Conflict, format!("{e}")))?;
                Ok((moved, left))
            })??;
            writes.extend(self.relink_writes(&moved, "operator", now)?);
            for o in left.iter().filter(|o| **o != a) {
                writes.push(MpiWrite::KeepApart { a: key_string(o), b: key_string(&b), by: by.clone(), at: now });
            }
            writes.push(MpiWrite::KeepApart { a: key_string(&a), b: key_string(&b), by: by.clone(), at: now });
            writes.push(MpiWrite::History {
                id: crate::prepare::new_id(),
                at: now,
                action: "keep-apart".into(),
                detail: json!({"a": key_string(&a), "b": key_string(&b), "review": id}).to_string(),
                by: by.clone(),
            });
        }
        let mut audit = self.audit_record(
            ctx,
            AuditAction::Execute,
            if link { "mpi-merge" } else { "mpi-keep-apart" },
            AuditOutcome::Success,
        );
        audit.entities = vec![key_string(&a), key_string(&b)];
        self.store.write_mpi(writes, vec![audit])?;
        Ok(())
    }

    /// Splits a source patient off its person (unmerge): it becomes a person of its own.
    pub fn mpi_split(&self, ctx: &Ctx, facility: &str, local_id: &str) -> Result<String, ApiError> {
        require_admin(ctx)?;
        let key = SourceKey::new(
            facility.parse().map_err(|e: musubi_domain::DomainError| ApiError::bad_request(e.to_string()))?,
            local_id,
        );
        let now = now_ms();
        let (person, left) = self.with_index(|idx| {
            let left = split_off_list(idx, &key);
            idx.split(&key).map(|p| (p, left)).map_err(|e| ApiError::new(ErrorKind::NotFound, format!("{e}")))
        })??;
        let by = ctx.actor.name().to_owned();
        let mut writes = self.relink_writes(&[(key.clone(), person)], "operator", now)?;
        // The index remembers that the record is none of those it left; so does the store,
        // for restarts and rebuilds.
        for o in &left {
            writes.push(MpiWrite::KeepApart { a: key_string(o), b: key_string(&key), by: by.clone(), at: now });
        }
        writes.push(MpiWrite::History {
            id: crate::prepare::new_id(),
            at: now,
            action: "split".into(),
            detail: json!({"key": key_string(&key), "person": person_string(person)}).to_string(),
            by,
        });
        let mut audit = self.audit_record(ctx, AuditAction::Execute, "mpi-split", AuditOutcome::Success);
        audit.entities = vec![key_string(&key)];
        audit.person = Some(person_string(person));
        self.store.write_mpi(writes, vec![audit])?;
        Ok(person_string(person))
    }

    fn relink_writes(
        &self,
        moved: &[(SourceKey, PersonId)],
        reason: &str,
        now: i64,
    ) -> Result<Vec<MpiWrite>, ApiError> {
        let mut writes = Vec::new();
        for (key, person) in moved {
            let (f, l) = (key.facility.to_string(), key.local_id.clone());
            if let Some(link) = self.store.read(|r| r.mpi_link(&f, &l))? {
                writes.push(MpiWrite::PersonOfPatient {
                    patient_id: link.patient_id.clone(),
                    person_id: person_string(*person),
                });
                writes.push(MpiWrite::Link(LinkRow {
                    person_id: person_string(*person),
                    reason: reason.into(),
                    decided: now,
                    ..link
                }));
            }
        }
        Ok(writes)
    }

    /// `facility,local_id,person` for every source patient (for audits and scoring).
    pub fn mpi_links_csv(&self, ctx: &Ctx) -> Result<String, ApiError> {
        require_admin(ctx)?;
        let links = self.store.read(|r| r.mpi_links())?;
        let mut out = String::from("facility,local_id,person\n");
        for l in links {
            out.push_str(&format!("{},{},{}\n", l.facility, l.local_id, l.person_id));
        }
        Ok(out)
    }

    /// PIXm: the identifiers under which the person of the given source identifier is known at
    /// the facilities the caller may see (a Parameters resource).
    pub fn pix(&self, ctx: &Ctx, source_identifier: &str, target_systems: &[String]) -> Result<Value, ApiError> {
        let (system, value) = source_identifier
            .split_once('|')
            .ok_or_else(|| ApiError::bad_request("sourceIdentifier は system|value の形で指定してください"))?;
        let (sys, val) = (system.to_owned(), value.to_owned());
        let rows = self.store.read(|r| r.find_by_token(ResourceType::Patient, "identifier", &sys, &val))?;
        let access = Access::new(self, ctx)?;
        let mut audit = self.audit_record(ctx, AuditAction::Read, "$ihe-pix", AuditOutcome::Success);
        audit.query = Some(format!("Patient/$ihe-pix?sourceIdentifier={source_identifier}"));
        let Some(source) =
            rows.into_iter().find(|r| access.decide(Operation::Read, &r.view()).map(|d| d.is_allow()).unwrap_or(false))
        else {
            audit.outcome = AuditOutcome::MinorFailure;
            self.audit(vec![audit])?;
            return Err(ApiError::new(ErrorKind::NotFound, "その識別子の患者は見つかりません"));
        };
        let person = source.meta.person_id.clone().unwrap_or_else(|| source.id.clone());
        access.person(&person)?;
        let p2 = person.clone();
        let patients = self.store.read(|r| r.patients_of_person(&p2))?;
        let mut params = Vec::new();
        let mut entities = Vec::new();
        for pid in patients {
            let Some((row, Some(v))) = self.store.read(|r| r.current_and_version(ResourceType::Patient, &pid, None))?
            else {
                continue;
            };
            if !access.decide_loaded(Operation::Read, &row.view()).is_allow() {
                continue;
            }
            let p: Value = serde_json::from_str(v.content.as_deref().unwrap_or("{}")).unwrap_or(Value::Null);
            for id in p["identifier"].as_array().into_iter().flatten() {
                let s = id["system"].as_str().unwrap_or("");
                if id["value"].is_null() || (!target_systems.is_empty() && !target_systems.iter().any(|t| t == s)) {
                    continue;
                }
                params
                    .push(json!({"name": "targetIdentifier", "valueIdentifier": {"system": s, "value": id["value"]}}));
            }
            params.push(json!({"name": "targetId", "valueReference": {"reference": format!("Patient/{pid}")}}));
            entities.push(format!("Patient/{pid}"));
        }
        audit.person = Some(person);
        audit.patient = Some(source.id.clone());
        audit.entities = entities;
        self.audit(vec![audit])?;
        Ok(json!({"resourceType": "Parameters", "parameter": params}))
    }

    /// PDQm `$match`: the persons a Patient (as given) may be, best first, with scores, among
    /// the Patients the caller may see.
    pub fn pdq_match(&self, ctx: &Ctx, patient: &Value, count: usize, only_certain: bool) -> Result<Value, ApiError> {
        if patient["resourceType"] != "Patient" {
            return Err(ApiError::at(
                ErrorKind::BadRequest,
                "Parameters.parameter.resource",
                "$match には Patient リソースが必要です",
            ));
        }
        // A query record without a local id gets a placeholder key (it is never stored).
        let placeholder: FacilityCode = "0110000000".parse().map_err(|_| ApiError::internal("placeholder facility"))?;
        let rec = match SourceRecord::from_fhir_patient(patient, &placeholder) {
            Ok((r, _)) => r,
            Err(_) => {
                let mut p = patient.clone();
                p["identifier"] = json!([{"system": format!("urn:oid:1.2.392.100495.20.3.51.1{placeholder}"), "value": "match-query"}]);
                SourceRecord::from_fhir_patient(&p, &placeholder)
                    .map_err(|e| ApiError::bad_request(format!("Patient を読めません: {e}")))?
                    .0
            }
        };
        let candidates = self.with_index(|idx| idx.evaluate(&rec))?;
        let access = Access::new(self, ctx)?;
        let mut entries = Vec::new();
        let mut entities = Vec::new();
        for c in candidates {
            if entries.len() >= count {
                break;
            }
            let grade = if c.deterministic.is_some() || c.probability >= 0.99 {
                "certain"
            } else if c.probability >= 0.9 {
                "probable"
            } else {
                "possible"
            };
            if only_certain && grade != "certain" {
                continue;
            }
            let (f, l) = (c.record.facility.to_string(), c.record.local_id.clone());
            let Some(link) = self.store.read(|r| r.mpi_link(&f, &l))? else { continue };
            let pid = link.patient_id.clone();
            let Some((row, Some(v))) = self.store.read(|r| r.current_and_version(ResourceType::Patient, &pid, None))?
            else {
                continue;
            };
            if !access.decide(Operation::Read, &row.view())?.is_allow() {
                continue;
            }
            let resource: Value = serde_json::from_str(v.content.as_deref().unwrap_or("{}")).unwrap_or(Value::Null);
            entities.push(format!("Patient/{pid}"));
            entries.push(json!({
                "fullUrl": format!("{}/Patient/{pid}", ctx.base_url),
                "resource": resource,
                "search": {"mode": "match", "score": (c.probability * 1000.0).round() / 1000.0,
                           "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/match-grade", "valueCode": grade}]}
            }));
        }
        let mut a = self.audit_record(ctx, AuditAction::Read, "$match", AuditOutcome::Success);
        a.entities = entities;
        self.audit(vec![a])?;
        Ok(
            json!({"resourceType": "Bundle", "id": crate::prepare::new_id(), "type": "searchset", "total": entries.len(), "entry": entries}),
        )
    }

    /// The person of a source patient according to the index (for tests and the CLI).
    pub fn mpi_person_of(&self, facility: &str, local_id: &str) -> Result<Option<String>, ApiError> {
        let key = SourceKey::new(
            facility.parse().map_err(|e: musubi_domain::DomainError| ApiError::bad_request(e.to_string()))?,
            local_id,
        );
        self.with_index(|idx| idx.person_of(&key).map(person_string))
    }
}

/// Gives each new person the old person id most of its records had (largest persons choose
/// first; an id is used once), so a rebuild keeps everyone who did not change under the id their
/// settings are stored under. Persons with no usable old id keep the id the matcher gave them.
fn relabel(links: Vec<(SourceKey, PersonId)>, old: &[LinkRow]) -> Vec<(SourceKey, PersonId)> {
    let old_of: HashMap<(String, String), PersonId> = old
        .iter()
        .filter_map(|l| Some(((l.facility.clone(), l.local_id.clone()), parse_person(&l.person_id)?)))
        .collect();
    let mut clusters: HashMap<PersonId, Vec<SourceKey>> = HashMap::new();
    for (k, p) in links {
        clusters.entry(p).or_default().push(k);
    }
    let mut clusters: Vec<(PersonId, Vec<SourceKey>)> = clusters.into_iter().collect();
    for (_, keys) in &mut clusters {
        keys.sort();
    }
    clusters.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.1.cmp(&b.1)));
    let mut taken: std::collections::HashSet<PersonId> = std::collections::HashSet::new();
    let mut chosen: Vec<Option<PersonId>> = Vec::with_capacity(clusters.len());
    for (_, keys) in &clusters {
        let mut votes: HashMap<PersonId, usize> = HashMap::new();
        for k in keys {
            if let Some(p) = old_of.get(&(k.facility.to_string(), k.local_id.clone())) {
                *votes.entry(*p).or_default() += 1;
            }
        }
        let mut votes: Vec<(PersonId, usize)> = votes.into_iter().filter(|(p, _)| !taken.contains(p)).collect();
        votes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let pick = votes.first().map(|(p, _)| *p);
        if let Some(p) = pick {
            taken.insert(p);
        }
        chosen.push(pick);
    }
    let mut out = Vec::new();
    for ((mut id, keys), pick) in clusters.into_iter().zip(chosen) {
        id = match pick {
            Some(p) => p,
            None => {
                let mut salt = 0u32;
                while taken.contains(&id) {
                    salt += 1;
                    id = PersonId(uuid::Uuid::new_v5(
                        &musubi_identify::PERSON_NAMESPACE,
                        format!("{id}#{salt}").as_bytes(),
                    ));
                }
                taken.insert(id);
                id
            }
        };
        out.extend(keys.into_iter().map(|k| (k, id)));
    }
    out
}

/// Old person ids that no longer exist after a rebuild, each with the new person most of its
/// records went to.
fn retired_persons(assignments: &[(SourceKey, PersonId)], old: &[LinkRow]) -> Vec<(String, String)> {
    let new_of: HashMap<(String, String), PersonId> =
        assignments.iter().map(|(k, p)| ((k.facility.to_string(), k.local_id.clone()), *p)).collect();
    let alive: std::collections::HashSet<String> = assignments.iter().map(|(_, p)| person_string(*p)).collect();
    let mut votes: HashMap<&str, HashMap<PersonId, usize>> = HashMap::new();
    for l in old.iter().filter(|l| !alive.contains(&l.person_id)) {
        if let Some(p) = new_of.get(&(l.facility.clone(), l.local_id.clone())) {
            *votes.entry(l.person_id.as_str()).or_default().entry(*p).or_default() += 1;
        }
    }
    let mut out: Vec<(String, String)> = votes
        .into_iter()
        .filter_map(|(from, v)| {
            let mut v: Vec<(PersonId, usize)> = v.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            v.first().map(|(to, _)| (from.to_owned(), person_string(*to)))
        })
        .collect();
    out.sort();
    out
}

/// The other records of the person `key` belongs to (those a split leaves).
fn split_off_list(idx: &Index, key: &SourceKey) -> Vec<SourceKey> {
    idx.person_of(key).and_then(|p| idx.records_of(p)).unwrap_or_default().into_iter().filter(|k| k != key).collect()
}

fn require_admin(ctx: &Ctx) -> Result<(), ApiError> {
    match ctx.actor {
        Actor::Operator { .. } => Ok(()),
        _ => Err(ApiError::new(ErrorKind::Forbidden, "名寄せの操作は運営管理者のみが行えます")),
    }
}
