//! Bulk import of FHIR data files (FHIR Bulk Data NDJSON, single resources and Bundles) for
//! `musubi import`: streaming, in chunks committed one after another while the next chunk is
//! prepared, so memory stays bounded whatever the file size.
//!
//! - Idempotent: a resource with an `id` is written as an update-or-create of that id, and an
//!   identical one changes nothing, so re-importing the same file is a no-op.
//! - Nothing lost: a line that is not valid JSON or breaks a rule is returned as a [`Rejected`]
//!   (file, line, reason, the original text) for the caller to quarantine; the rest goes on.
//! - Acknowledged means durable: [`ImportProgress::committed`] is called only after a chunk's
//!   commit returned.

use std::collections::BTreeMap;
use std::io::BufRead;

use musubi_domain::audit::{AuditAction, AuditOutcome};
use musubi_fhir::{ResourceType, datetime};
use musubi_store::{Expect, PutResource, WriteBatch};
use serde_json::Value;

use crate::prepare::{Prep, expect_type, new_id, prepare, validate};
use crate::{ApiError, Ctx, Service};

/// A line (or file) that was not imported, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The file.
    pub file: String,
    /// The 1-based line (0 for a whole JSON file).
    pub line: u64,
    /// Why (Japanese), with the element when known.
    pub reason: String,
    /// The original text.
    pub text: String,
}

/// Counts of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Resources read (lines / entries).
    pub read: u64,
    /// New resources written.
    pub created: u64,
    /// Resources changed.
    pub updated: u64,
    /// Resources identical to what was stored.
    pub unchanged: u64,
    /// Bundles processed (transactions, JP-CLINS submissions).
    pub bundles: u64,
    /// Rejected lines.
    pub rejected: Vec<Rejected>,
}

/// Progress callbacks (the CLI drives a progress bar and a journal with them).
pub trait ImportProgress: Sync {
    /// `n` more bytes were read.
    fn bytes(&self, n: u64);
    /// A chunk of `resources` was committed; `ids` are its `Type/id`s (durable now).
    fn committed(&self, resources: u64, ids: &[String]);
}

/// No progress reporting.
pub struct NoProgress;

impl ImportProgress for NoProgress {
    fn bytes(&self, _: u64) {}
    fn committed(&self, _: u64, _: &[String]) {}
}

/// Resources per committed chunk.
pub const CHUNK: usize = 500;

struct Chunk {
    puts: Vec<PutResource>,
    unchanged: u64,
    created: u64,
    updated: u64,
}

impl Service {
    /// Imports NDJSON from `reader`. Lines may be resources or Bundles.
    pub fn import_ndjson(
        &self,
        ctx: &Ctx,
        file: &str,
        reader: impl BufRead,
        progress: &dyn ImportProgress,
        stats: &mut ImportStats,
    ) -> Result<(), ApiError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(2);
        std::thread::scope(|scope| {
            let committer = scope.spawn(move || -> Result<(u64, u64, u64), ApiError> {
                let (mut c, mut u, mut n) = (0, 0, 0);
                for chunk in rx {
                    c += chunk.created;
                    u += chunk.updated;
                    n += chunk.unchanged;
                    self.commit_chunk(ctx, chunk, progress)?;
                }
                Ok((c, u, n))
            });
            let produced = self.produce_chunks(ctx, file, reader, progress, stats, &tx);
            drop(tx);
            let committed = committer.join().map_err(|_| ApiError::internal("import committer panicked"))?;
            produced?;
            let (c, u, n) = committed?;
            stats.created += c;
            stats.updated += u;
            stats.unchanged += n;
            Ok(())
        })
    }

    fn produce_chunks(
        &self,
        ctx: &Ctx,
        file: &str,
        mut reader: impl BufRead,
        progress: &dyn ImportProgress,
        stats: &mut ImportStats,
        tx: &std::sync::mpsc::SyncSender<Chunk>,
    ) -> Result<(), ApiError> {
        let mut pending: Vec<(u64, Value, String)> = Vec::with_capacity(CHUNK);
        let mut line_no = 0u64;
        let mut buf = String::new();
        loop {
            buf.clear();
            let n = reader
                .read_line(&mut buf)
                .map_err(|e| ApiError::bad_request(format!("{file}: 読み込みエラー: {e}")))?;
            if n == 0 {
                break;
            }
            progress.bytes(n as u64);
            line_no += 1;
            let line = buf.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                continue;
            }
            stats.read += 1;
            let v: Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => {
                    stats.rejected.push(Rejected {
                        file: file.into(),
                        line: line_no,
                        reason: format!("JSON の構文エラー（{e}）"),
                        text: line.into(),
                    });
                    continue;
                }
            };
            if v.get("resourceType").and_then(Value::as_str) == Some("Bundle")
                && v.get("type").and_then(Value::as_str) != Some("searchset")
            {
                // Bundles are whole units: flush what is pending first, to keep the order.
                if !pending.is_empty() {
                    let chunk = self.prepare_chunk(ctx, file, std::mem::take(&mut pending), stats)?;
                    tx.send(chunk).map_err(|_| ApiError::internal("import committer stopped"))?;
                }
                if let Err(e) = self.import_bundle(ctx, v, stats) {
                    stats.rejected.push(Rejected {
                        file: file.into(),
                        line: line_no,
                        reason: describe(&e),
                        text: line.into(),
                    });
                }
                continue;
            }
            pending.push((line_no, v, line.to_owned()));
            if pending.len() >= CHUNK {
                let chunk = self.prepare_chunk(ctx, file, std::mem::take(&mut pending), stats)?;
                tx.send(chunk).map_err(|_| ApiError::internal("import committer stopped"))?;
            }
        }
        if !pending.is_empty() {
            let chunk = self.prepare_chunk(ctx, file, pending, stats)?;
            tx.send(chunk).map_err(|_| ApiError::internal("import committer stopped"))?;
        }
        Ok(())
    }

    fn prepare_chunk(
        &self,
        ctx: &Ctx,
        file: &str,
        items: Vec<(u64, Value, String)>,
        stats: &mut ImportStats,
    ) -> Result<Chunk, ApiError> {
        let persons = crate::prepare::Persons::new(&self.store);
        let now = datetime::now_ms();
        let mut chunk = Chunk { puts: Vec::with_capacity(items.len()), unchanged: 0, created: 0, updated: 0 };
        let mut seen = std::collections::HashSet::new();
        for (line, v, text) in items {
            let r = (|| -> Result<Option<PutResource>, ApiError> {
                let t = v.get("resourceType").and_then(Value::as_str).unwrap_or("");
                let rtype: ResourceType =
                    t.parse().map_err(|_| ApiError::bad_request(format!("リソース型 {t:?} には対応していません")))?;
                expect_type(&v, rtype, rtype.as_str())?;
                validate(&v, None)?;
                let id = v.get("id").and_then(Value::as_str).map(str::to_owned);
                let (id, version, expect, cur) = match id {
                    Some(id) => {
                        if !musubi_fhir::is_valid_id(&id) {
                            return Err(ApiError::bad_request(format!("id {id:?} が不正です")));
                        }
                        if !seen.insert(format!("{rtype}/{id}")) {
                            return Err(ApiError::bad_request(format!(
                                "{rtype}/{id} が同じチャンク内に重複しています"
                            )));
                        }
                        match self.store.current(rtype, &id)? {
                            Some(c) => (id, c.version + 1, Expect::Version(c.version), Some(c)),
                            None => (id, 1, Expect::Absent, None),
                        }
                    }
                    None => (new_id(), 1, Expect::Absent, None),
                };
                let put = prepare(
                    Prep {
                        persons: &persons,
                        actor: &ctx.actor,
                        rtype,
                        id,
                        version,
                        expect,
                        now,
                        bundle_key: None,
                        at: rtype.as_str().into(),
                    },
                    v.clone(),
                )?;
                if let Some(c) = &cur {
                    if !c.deleted && c.content_hash == put.content_hash {
                        return Ok(None);
                    }
                    if !crate::access::write_decision(&ctx.actor, musubi_gate::Operation::Write, &c.view()).is_allow() {
                        return Err(ApiError::new(
                            crate::ErrorKind::Forbidden,
                            format!("{}/{} は更新できません（アクセス権限がありません）", c.rtype, c.id),
                        ));
                    }
                }
                Ok(Some(put))
            })();
            match r {
                Ok(Some(put)) => {
                    if put.version == 1 {
                        chunk.created += 1;
                    } else {
                        chunk.updated += 1;
                    }
                    chunk.puts.push(put);
                }
                Ok(None) => chunk.unchanged += 1,
                Err(e) => stats.rejected.push(Rejected { file: file.into(), line, reason: describe(&e), text }),
            }
        }
        Ok(chunk)
    }

    fn commit_chunk(&self, ctx: &Ctx, chunk: Chunk, progress: &dyn ImportProgress) -> Result<(), ApiError> {
        let n = (chunk.puts.len() as u64) + chunk.unchanged;
        if chunk.puts.is_empty() {
            progress.committed(n, &[]);
            return Ok(());
        }
        let ids: Vec<String> = chunk.puts.iter().map(|p| format!("{}/{}", p.rtype, p.id)).collect();
        let mut groups: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
        for p in &chunk.puts {
            groups
                .entry(p.meta.patient_id.clone())
                .or_default()
                .push(format!("{}/{}/_history/{}", p.rtype, p.id, p.version));
        }
        let audit = groups
            .into_iter()
            .map(|(patient, entities)| {
                let mut a = self.audit_record(ctx, AuditAction::Create, "import", AuditOutcome::Success);
                a.patient = patient;
                a.entities = entities;
                a
            })
            .collect();
        self.commit_and_link(ctx, WriteBatch { puts: chunk.puts, audit, ..Default::default() })?;
        progress.committed(n, &ids);
        Ok(())
    }

    fn import_bundle(&self, ctx: &Ctx, v: Value, stats: &mut ImportStats) -> Result<(), ApiError> {
        stats.bundles += 1;
        if Service::is_submission(&v) {
            let out = self.submit_bundle(ctx, v)?;
            match out.status {
                crate::SubmitStatus::Unchanged => stats.unchanged += out.stored.len() as u64,
                crate::SubmitStatus::Created => stats.created += out.stored.len() as u64,
                crate::SubmitStatus::Replaced => stats.updated += out.stored.len() as u64,
            }
            return Ok(());
        }
        match v.get("type").and_then(Value::as_str) {
            Some("transaction" | "batch") => {
                let n = v.get("entry").and_then(Value::as_array).map_or(0, Vec::len) as u64;
                self.process_bundle(ctx, v)?;
                stats.created += n;
                Ok(())
            }
            _ => {
                self.create(ctx, ResourceType::Bundle, v)?;
                stats.created += 1;
                Ok(())
            }
        }
    }

    /// Imports one JSON document (a resource or a Bundle).
    pub fn import_json(
        &self,
        ctx: &Ctx,
        file: &str,
        text: &str,
        progress: &dyn ImportProgress,
        stats: &mut ImportStats,
    ) -> Result<(), ApiError> {
        progress.bytes(text.len() as u64);
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                stats.rejected.push(Rejected {
                    file: file.into(),
                    line: e.line() as u64,
                    reason: format!("JSON の構文エラー（{e}）"),
                    text: text.into(),
                });
                return Ok(());
            }
        };
        stats.read += 1;
        if v.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            if let Err(e) = self.import_bundle(ctx, v, stats) {
                stats.rejected.push(Rejected { file: file.into(), line: 0, reason: describe(&e), text: text.into() });
            }
            return Ok(());
        }
        let line = format!("{}\n", v);
        self.import_ndjson(ctx, file, std::io::Cursor::new(line.into_bytes()), progress, stats)
    }
}

/// An error as one line: each issue's element and message.
pub fn describe(e: &ApiError) -> String {
    e.issues
        .iter()
        .map(|i| match (&i.expression, &i.rule) {
            (Some(x), Some(r)) => format!("{x}: {} [{r}]", i.diagnostics),
            (Some(x), None) => format!("{x}: {}", i.diagnostics),
            _ => i.diagnostics.clone(),
        })
        .collect::<Vec<_>>()
        .join(" / ")
}
