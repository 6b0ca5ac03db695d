//! The retention sweep: removes what the network may no longer keep (DESIGN.md, the national
//! sharing service's rules), and writes down what it removed.
//!
//! 1. Referrals (文書送受信): deleted 7 days after the addressee received them, and 6 months
//!    after sending at the latest — the document, the attached 退院時サマリー and the files.
//! 2. Every other record whose retention end (computed when it was written, see
//!    `musubi_domain::retention`) has passed: 5 years for 傷病名, 感染症, アレルギー and 健診;
//!    1 year for 検査 and 100 days for 処方, except the newest 3 of each item of the person,
//!    which are kept; anything flagged LTS (長期保存) has no end and is kept.
//!
//! Removal purges every stored version's content (nothing lingers in `_history`) and leaves a
//! deletion, so a later read answers 410 Gone. Each batch is one transaction with one audit
//! record naming what it removed; one more record sums up the run.
//!
//! Safe to run again and again and while the server runs: a referral already deleted and a
//! record already removed are skipped, and a record changed since it was selected is left for
//! the next run. Only administrators and the operator may run it. The CLI
//! (`musubi retention sweep`) and the server's periodic task call [`Service::retention_sweep`].

use std::collections::{BTreeMap, HashMap};

use musubi_domain::audit::{AuditAction, AuditOutcome};
use musubi_fhir::{ResourceType, datetime};
use musubi_store::{PurgeKey, ReferralDeletion};
use serde::Serialize;

use crate::referral::KEEP_AFTER_RECEIPT_MS;
use crate::{ApiError, Ctx, ErrorKind, Service};

/// How many referrals or records one batch (one transaction, one audit record) removes.
pub const BATCH: i64 = 500;

/// How often a running server should sweep (a suggestion for `musubi serve`).
pub const SUGGESTED_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// What a sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// The time the sweep judged by (epoch ms).
    pub now: i64,
    /// Referrals deleted 7 days after receipt.
    pub referrals_received: u64,
    /// Referrals deleted 6 months after sending (never received, or received late).
    pub referrals_expired: u64,
    /// Records removed, by class code (`diagnosis`, `lab`, `prescription`, …).
    pub records: BTreeMap<String, u64>,
    /// Records past their end kept because they are among the newest of their item.
    pub kept_as_latest: u64,
    /// Transactions written.
    pub batches: u64,
}

impl SweepReport {
    /// Records removed in all.
    pub fn records_total(&self) -> u64 {
        self.records.values().sum()
    }

    /// One line for people (Japanese).
    pub fn summary_ja(&self) -> String {
        let classes: Vec<String> = self
            .records
            .iter()
            .map(|(c, n)| {
                let label = c.parse::<musubi_domain::ResourceClass>().map(|k| k.label_ja()).unwrap_or(c.as_str());
                format!("{label} {n}")
            })
            .collect();
        format!(
            "保存期間による削除: 紹介状 {} 件（受領後7日 {} 件、送信後6か月 {} 件）、記録 {} 件{}、最新3件として保持 {} 件",
            self.referrals_received + self.referrals_expired,
            self.referrals_received,
            self.referrals_expired,
            self.records_total(),
            if classes.is_empty() { String::new() } else { format!("（{}）", classes.join("、")) },
            self.kept_as_latest
        )
    }
}

impl Service {
    /// Removes everything whose retention has ended at `now` (epoch ms): see the module
    /// documentation. Administrators and the operator only.
    pub fn retention_sweep(&self, ctx: &Ctx, now: i64) -> Result<SweepReport, ApiError> {
        if !ctx.actor.is_privileged() {
            return Err(self.refuse(
                ctx,
                AuditAction::Delete,
                "retention-sweep",
                None,
                ApiError::new(ErrorKind::Forbidden, "保存期間による削除は運営管理者のみが実行できます"),
            ));
        }
        let result = self.sweep_inner(ctx, now);
        result.map_err(|e| self.refuse(ctx, AuditAction::Delete, "retention-sweep", None, e))
    }

    fn sweep_inner(&self, ctx: &Ctx, now: i64) -> Result<SweepReport, ApiError> {
        let mut report = SweepReport { now, ..Default::default() };
        self.sweep_referrals(ctx, now, &mut report)?;
        self.sweep_records(ctx, now, &mut report)?;
        let mut a = self.audit_record(ctx, AuditAction::Execute, "retention-sweep", AuditOutcome::Success);
        a.outcome_text = Some(report.summary_ja());
        a.query = Some(format!("now={}", datetime::format_instant(now)));
        self.audit(vec![a])?;
        Ok(report)
    }

    fn sweep_referrals(&self, ctx: &Ctx, now: i64, report: &mut SweepReport) -> Result<(), ApiError> {
        let received_before = now - KEEP_AFTER_RECEIPT_MS;
        // Each pass deletes what it read, so the next read starts over; a referral that could
        // not be deleted (deleted meanwhile) is not read again.
        let mut seen = std::collections::HashSet::new();
        loop {
            let due = self.store.read(|r| r.referrals_due(received_before, now, BATCH))?;
            let due: Vec<_> = due.into_iter().filter(|r| seen.insert(r.id.clone())).collect();
            if due.is_empty() {
                return Ok(());
            }
            let mut items = Vec::with_capacity(due.len());
            let mut entities = Vec::new();
            for r in &due {
                let after_receipt = r.received_at.is_some_and(|t| t <= received_before);
                let resources: Vec<(ResourceType, String)> = r
                    .bundle_id
                    .iter()
                    .chain(r.discharge_id.iter())
                    .map(|b| (ResourceType::Bundle, b.clone()))
                    .collect();
                entities.extend(resources.iter().map(|(t, id)| format!("{t}/{id}")));
                items.push(ReferralDeletion {
                    id: r.id.clone(),
                    reason: if after_receipt { "received+7d".into() } else { "retention-6m".into() },
                    resources,
                });
            }
            let reasons: HashMap<String, bool> =
                items.iter().map(|i| (i.id.clone(), i.reason == "received+7d")).collect();
            let mut a = self.audit_record(ctx, AuditAction::Delete, "retention-referral", AuditOutcome::Success);
            a.entities = entities;
            a.query = Some(format!("referrals={}", items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>().join(",")));
            a.outcome_text = Some(format!("紹介状 {} 件を保存期間の経過により削除", items.len()));
            let done = self.store.delete_referrals(items, now, vec![a])?;
            if !done.is_empty() {
                report.batches += 1;
            }
            for id in done {
                if reasons.get(&id).copied().unwrap_or(false) {
                    report.referrals_received += 1;
                } else {
                    report.referrals_expired += 1;
                }
            }
        }
    }

    fn sweep_records(&self, ctx: &Ctx, now: i64, report: &mut SweepReport) -> Result<(), ApiError> {
        let Some(today) = datetime::jst_date(now).map(|d| d.to_string()) else {
            return Err(ApiError::bad_request("削除の基準日時が不正です"));
        };
        // Keyset paging: records kept (the newest of their item) are passed over, not re-read.
        let mut after: Option<(String, String, String)> = None;
        let mut latest: HashMap<(ResourceType, String, String), Vec<String>> = HashMap::new();
        loop {
            let key = after.clone();
            let rows = self.store.read(|r| {
                r.retention_due(&today, key.as_ref().map(|(e, t, i)| (e.as_str(), t.as_str(), i.as_str())), BATCH)
            })?;
            let Some(last) = rows.last() else { return Ok(()) };
            after = Some((
                last.meta.retention_end.clone().unwrap_or_default(),
                last.rtype.as_str().to_owned(),
                last.id.clone(),
            ));
            let mut purge = Vec::new();
            let mut classes: HashMap<(ResourceType, String), String> = HashMap::new();
            for row in &rows {
                if let (Some(n), Some(item)) = (row.meta.keep_last, row.meta.item_key.as_deref()) {
                    let who = row.meta.person_id.clone().or_else(|| row.meta.patient_id.clone()).unwrap_or_default();
                    let k = (row.rtype, who, item.to_owned());
                    if !latest.contains_key(&k) {
                        let (person, patient) = (row.meta.person_id.clone(), row.meta.patient_id.clone());
                        let ids = self
                            .store
                            .read(|r| r.latest_of_item(row.rtype, person.as_deref(), patient.as_deref(), item, n))?;
                        latest.insert(k.clone(), ids);
                    }
                    if latest.get(&k).is_some_and(|ids| ids.contains(&row.id)) {
                        report.kept_as_latest += 1;
                        continue;
                    }
                }
                classes.insert((row.rtype, row.id.clone()), row.meta.class.code().to_owned());
                purge.push(PurgeKey { rtype: row.rtype, id: row.id.clone(), version: row.version });
            }
            if purge.is_empty() {
                continue;
            }
            let mut a = self.audit_record(ctx, AuditAction::Delete, "retention-record", AuditOutcome::Success);
            a.entities = purge.iter().map(|k| format!("{}/{}", k.rtype, k.id)).collect();
            a.outcome_text = Some(format!("記録 {} 件を保存期間の経過により削除（{today} より前に期限）", purge.len()));
            let done = self.store.purge_resources(purge, now, vec![a])?;
            if !done.is_empty() {
                report.batches += 1;
            }
            for k in done {
                if let Some(c) = classes.get(&(k.rtype, k.id)) {
                    *report.records.entry(c.clone()).or_default() += 1;
                }
            }
        }
    }
}
