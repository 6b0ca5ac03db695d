//! Referral exchange (文書送受信) bookkeeping and the retention purge.
//!
//! A referral row says who sent which 診療情報提供書 to which facility, when the addressee
//! received it and who opened it, and where its documents (stored as FHIR Bundle resources) and
//! attached files are. A referral is written together with its resources and its audit record
//! in one transaction; receipt is marked at most once (the first opening wins).
//!
//! A letter its sender withdraws (取り下げ: its document deleted by Bundle identifier) keeps its
//! row, marked withdrawn (when, by whom) in the same transaction as the deletion, so that both
//! boxes show what happened and an opening answers 410 naming the withdrawal.
//!
//! The purge removes a resource's content for good (every stored version) and leaves a deletion
//! version behind, so that a read answers 410 Gone and the id is never reused: what retention
//! removes must not linger in `_history`.

use musubi_domain::audit::AuditRecord;
use musubi_fhir::ResourceType;

use crate::ops::{append_audit, apply as apply_batch};
use crate::sql::{Conn, Dialect, Param, Row};
use crate::{Committed, CurrentRow, Reader, Store, StoreError, WriteBatch};

/// A referral as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReferralRow {
    /// Id (a UUID).
    pub id: String,
    /// The sending facility (10-digit code).
    pub sender: String,
    /// The addressee facility.
    pub addressee: String,
    /// The stored document Bundle (None once deleted).
    pub bundle_id: Option<String>,
    /// Its JP-CLINS Bundle identifier (unique among referrals not deleted: one letter, one
    /// identifier).
    pub bundle_key: Option<String>,
    /// The attached 退院時サマリー Bundle, if any.
    pub discharge_id: Option<String>,
    /// The source patient (Patient id) at the sender.
    pub patient_id: Option<String>,
    /// The person (MPI) at the time it was sent.
    pub person_id: Option<String>,
    /// The referral this one answers (a reply, 返書).
    pub reply_to: Option<String>,
    /// What the lists show (JSON, written by the service; wiped on deletion).
    pub summary: Option<String>,
    /// Sent at (epoch ms).
    pub created: i64,
    /// Who sent it (login or system name).
    pub created_by: String,
    /// When it is deleted at the latest (epoch ms; 6 months after sending).
    pub expires: i64,
    /// When the addressee received (first opened) it.
    pub received_at: Option<i64>,
    /// Who received it (login or system name).
    pub received_by: Option<String>,
    /// That person's display name and profession.
    pub received_by_name: Option<String>,
    /// The signature status code at sending.
    pub signature_status: String,
    /// The signature report at sending (JSON).
    pub signature_report: Option<String>,
    /// The CMS signature (base64 DER), when signed.
    pub signature: Option<String>,
    /// The exact signed bytes (base64), for re-verification.
    pub signed_content: Option<String>,
    /// When deleted.
    pub deleted_at: Option<i64>,
    /// Why: `received+7d` or `retention-6m` (retention), or [`WITHDRAWN`] (the sender withdrew it).
    pub deleted_reason: Option<String>,
    /// Who withdrew it (login or system name), when `deleted_reason` is [`WITHDRAWN`].
    pub withdrawn_by: Option<String>,
}

/// The `deleted_reason` of a letter its sender withdrew (取り下げ).
pub const WITHDRAWN: &str = "withdrawn";

/// A letter to mark withdrawn by its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    /// The referral.
    pub referral_id: String,
    /// When.
    pub at: i64,
    /// Who (login or system name).
    pub by: String,
    /// What the lists go on showing (JSON written by the service; None shows nothing).
    pub summary: Option<String>,
}

/// A file attached to a referral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRow {
    /// The referral.
    pub referral_id: String,
    /// Position (0, 1, …).
    pub seq: i64,
    /// File name as sent (sanitized).
    pub filename: String,
    /// MIME type (checked against the bytes).
    pub content_type: String,
    /// Size in bytes.
    pub size: i64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// The bytes, base64 (None in listings).
    pub data: Option<String>,
}

/// A receipt: who opened a referral at the addressee, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The referral.
    pub referral_id: String,
    /// When.
    pub at: i64,
    /// Login or system name.
    pub by: String,
    /// Display name and profession.
    pub by_name: String,
}

/// A referral to delete by retention, with the resources to purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralDeletion {
    /// The referral.
    pub id: String,
    /// `received+7d` or `retention-6m`.
    pub reason: String,
    /// Its document Bundles.
    pub resources: Vec<(ResourceType, String)>,
}

/// A resource to purge, if it is still at `version` (a newer version means it changed since it
/// was selected; the next sweep looks at it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeKey {
    /// Type.
    pub rtype: ResourceType,
    /// Id.
    pub id: String,
    /// The version that was selected.
    pub version: i64,
}

const LIST_COLS: &str = "id, sender, addressee, bundle_id, bundle_key, discharge_id, patient_id, person_id, reply_to, summary, \
     created, created_by, expires, received_at, received_by, received_by_name, signature_status, signature_report, deleted_at, deleted_reason, withdrawn_by";
const BLOB_COLS: &str = "signature, signed_content";

fn referral_row(r: &Row, blobs: bool) -> ReferralRow {
    let s = |i: usize| r.opt_str(i).map(str::to_owned);
    ReferralRow {
        id: r.str(0).into(),
        sender: r.str(1).into(),
        addressee: r.str(2).into(),
        bundle_id: s(3),
        bundle_key: s(4),
        discharge_id: s(5),
        patient_id: s(6),
        person_id: s(7),
        reply_to: s(8),
        summary: s(9),
        created: r.i64(10),
        created_by: r.str(11).into(),
        expires: r.i64(12),
        received_at: r.opt_i64(13),
        received_by: s(14),
        received_by_name: s(15),
        signature_status: r.str(16).into(),
        signature_report: s(17),
        deleted_at: r.opt_i64(18),
        deleted_reason: s(19),
        withdrawn_by: s(20),
        signature: if blobs { s(21) } else { None },
        signed_content: if blobs { s(22) } else { None },
    }
}

fn insert_referral(conn: &mut dyn Conn, r: &ReferralRow) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO referral ({LIST_COLS}, {BLOB_COLS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
        ),
        &[
            Param::Text(&r.id),
            Param::Text(&r.sender),
            Param::Text(&r.addressee),
            r.bundle_id.as_deref().into(),
            r.bundle_key.as_deref().into(),
            r.discharge_id.as_deref().into(),
            r.patient_id.as_deref().into(),
            r.person_id.as_deref().into(),
            r.reply_to.as_deref().into(),
            r.summary.as_deref().into(),
            Param::I64(r.created),
            Param::Text(&r.created_by),
            Param::I64(r.expires),
            r.received_at.into(),
            r.received_by.as_deref().into(),
            r.received_by_name.as_deref().into(),
            Param::Text(&r.signature_status),
            r.signature_report.as_deref().into(),
            r.deleted_at.into(),
            r.deleted_reason.as_deref().into(),
            r.withdrawn_by.as_deref().into(),
            r.signature.as_deref().into(),
            r.signed_content.as_deref().into(),
        ],
    )?;
    Ok(())
}

fn mark_received(conn: &mut dyn Conn, r: &Receipt) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE referral SET received_at = $1, received_by = $2, received_by_name = $3 \
         WHERE id = $4 AND received_at IS NULL AND deleted_at IS NULL",
        &[Param::I64(r.at), Param::Text(&r.by), Param::Text(&r.by_name), Param::Text(&r.referral_id)],
    )?;
    Ok(n > 0)
}

/// Purges one resource (all versions' content), leaving a deletion version. Returns whether it
/// purged (false when it is gone, already deleted, or changed since it was selected).
pub(crate) fn purge(
    conn: &mut dyn Conn,
    rtype: ResourceType,
    id: &str,
    expect: Option<i64>,
    at: i64,
) -> Result<bool, StoreError> {
    let sql = match conn.dialect() {
        Dialect::Sqlite => "SELECT version, deleted, bundle_key FROM resource WHERE rtype = $1 AND id = $2",
        Dialect::Postgres => {
            "SELECT version, deleted, bundle_key FROM resource WHERE rtype = $1 AND id = $2 FOR UPDATE"
        }
    };
    let rows = conn.query(sql, &[Param::Text(rtype.as_str()), Param::Text(id)])?;
    let Some(row) = rows.first() else { return Ok(false) };
    let (version, deleted, bundle_key) = (row.i64(0), row.i64(1) != 0, row.opt_str(2).map(str::to_owned));
    if deleted || expect.is_some_and(|v| v != version) {
        return Ok(false);
    }
    let key = [Param::Text(rtype.as_str()), Param::Text(id)];
    conn.execute("DELETE FROM resource_version WHERE rtype = $1 AND id = $2", &key)?;
    conn.execute(
        "INSERT INTO resource_version (rtype, id, version, last_updated, deleted, content) VALUES ($1, $2, $3, $4, 1, NULL)",
        &[key[0], key[1], Param::I64(version + 1), Param::I64(at)],
    )?;
    conn.execute(
        "UPDATE resource SET version = $3, last_updated = $4, deleted = 1 WHERE rtype = $1 AND id = $2",
        &[key[0], key[1], Param::I64(version + 1), Param::I64(at)],
    )?;
    for table in ["idx_token", "idx_ref", "idx_date", "idx_string"] {
        conn.execute(&format!("DELETE FROM {table} WHERE rtype = $1 AND id = $2"), &key)?;
    }
    // A submission whose every resource is gone is forgotten, so that sending the same Bundle
    // again stores it again instead of answering "unchanged" with nothing behind it.
    if let Some(k) = bundle_key {
        conn.execute(
            "DELETE FROM bundle_submission WHERE bundle_key = $1 \
             AND NOT EXISTS (SELECT 1 FROM resource WHERE bundle_key = $1 AND deleted = 0)",
            &[Param::Text(&k)],
        )?;
    }
    Ok(true)
}

impl Store {
    /// Writes a new referral with its resources, files and audit records in one transaction;
    /// `receipt` marks the referral it answers as received (a reply implies receipt).
    pub fn create_referral(
        &self,
        batch: WriteBatch,
        referral: ReferralRow,
        attachments: Vec<AttachmentRow>,
        receipt: Option<Receipt>,
    ) -> Result<Committed, StoreError> {
        self.inner.writer.write(move |conn| {
            let c = apply_batch(conn, &batch)?;
            insert_referral(conn, &referral)?;
            for a in &attachments {
                conn.execute(
                    "INSERT INTO referral_attachment (referral_id, seq, filename, content_type, size, sha256, data) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        Param::Text(&a.referral_id),
                        Param::I64(a.seq),
                        Param::Text(&a.filename),
                        Param::Text(&a.content_type),
                        Param::I64(a.size),
                        Param::Text(&a.sha256),
                        Param::Text(a.data.as_deref().unwrap_or("")),
                    ],
                )?;
            }
            if let Some(r) = &receipt {
                mark_received(conn, r)?;
            }
            Ok(c)
        })
    }

    /// Writes a batch together with new referrals without files: the 診療情報提供書 a FHIR
    /// submission or transaction carried, delivered to their addressees' inboxes in the same
    /// transaction as the documents themselves.
    pub fn commit_with_referrals(
        &self,
        batch: WriteBatch,
        referrals: Vec<ReferralRow>,
    ) -> Result<Committed, StoreError> {
        self.inner.writer.write(move |conn| {
            let c = apply_batch(conn, &batch)?;
            for r in &referrals {
                insert_referral(conn, r)?;
            }
            Ok(c)
        })
    }

    /// Marks a referral received (if it is not yet) together with the audit record of the
    /// opening. Returns whether this call marked it.
    pub fn receive_referral(&self, receipt: Receipt, audit: Vec<AuditRecord>) -> Result<bool, StoreError> {
        self.inner.writer.write(move |conn| {
            let marked = mark_received(conn, &receipt)?;
            append_audit(conn, &audit)?;
            Ok(marked)
        })
    }

    /// Writes a batch (the deletion of withdrawn letters' documents, with its audit records)
    /// and marks those letters withdrawn in the same transaction: when and by whom, their files
    /// dropped, their signature and identifier released (the identifier may be sent again as a
    /// new letter). A letter already deleted or withdrawn is left as it is. Returns the ids
    /// marked by this call.
    pub fn commit_withdrawing(
        &self,
        batch: WriteBatch,
        withdrawals: Vec<Withdrawal>,
    ) -> Result<(Committed, Vec<String>), StoreError> {
        self.inner.writer.write(move |conn| {
            let c = apply_batch(conn, &batch)?;
            let mut done = Vec::new();
            for w in &withdrawals {
                let n = conn.execute(
                    "UPDATE referral SET deleted_at = $1, deleted_reason = $2, withdrawn_by = $3, summary = $4, \
                     signature = NULL, signed_content = NULL, bundle_id = NULL, discharge_id = NULL, bundle_key = NULL \
                     WHERE id = $5 AND deleted_at IS NULL",
                    &[
                        Param::I64(w.at),
                        Param::Text(WITHDRAWN),
                        Param::Text(&w.by),
                        w.summary.as_deref().into(),
                        Param::Text(&w.referral_id),
                    ],
                )?;
                if n == 0 {
                    continue;
                }
                conn.execute("DELETE FROM referral_attachment WHERE referral_id = $1", &[Param::Text(&w.referral_id)])?;
                done.push(w.referral_id.clone());
            }
            Ok((c, done))
        })
    }

    /// Deletes referrals by retention: purges their documents, drops their files, wipes what
    /// the lists showed, and records when and why. A referral already deleted is skipped.
    /// Returns the ids deleted by this call; the audit records commit with them.
    pub fn delete_referrals(
        &self,
        items: Vec<ReferralDeletion>,
        at: i64,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.writer.write(move |conn| {
            let mut done = Vec::new();
            for it in &items {
                let n = conn.execute(
                    "UPDATE referral SET deleted_at = $1, deleted_reason = $2, summary = NULL, signature = NULL, \
                     signed_content = NULL, signature_report = NULL, bundle_id = NULL, discharge_id = NULL, bundle_key = NULL \
                     WHERE id = $3 AND deleted_at IS NULL",
                    &[Param::I64(at), Param::Text(&it.reason), Param::Text(&it.id)],
                )?;
                if n == 0 {
                    continue;
                }
                conn.execute("DELETE FROM referral_attachment WHERE referral_id = $1", &[Param::Text(&it.id)])?;
                for (rtype, id) in &it.resources {
                    purge(conn, *rtype, id, None, at)?;
                }
                done.push(it.id.clone());
            }
            if !done.is_empty() {
                append_audit(conn, &audit)?;
            }
            Ok(done)
        })
    }

    /// Purges resources whose retention ended (each only if still at the selected version),
    /// with the batch's audit records. Returns the keys purged.
    pub fn purge_resources(
        &self,
        keys: Vec<PurgeKey>,
        at: i64,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<PurgeKey>, StoreError> {
        self.inner.writer.write(move |conn| {
            let mut done = Vec::new();
            for k in keys {
                if purge(conn, k.rtype, &k.id, Some(k.version), at)? {
                    done.push(k);
                }
            }
            if !done.is_empty() {
                append_audit(conn, &audit)?;
            }
            Ok(done)
        })
    }
}

impl Reader<'_> {
    /// One referral, with its signature and signed bytes.
    pub fn referral(&mut self, id: &str) -> Result<Option<ReferralRow>, StoreError> {
        let rows = self
            .conn
            .query(&format!("SELECT {LIST_COLS}, {BLOB_COLS} FROM referral WHERE id = $1"), &[Param::Text(id)])?;
        Ok(rows.first().map(|r| referral_row(r, true)))
    }

    /// The referral (not deleted) of a JP-CLINS Bundle identifier, without its signature.
    pub fn referral_by_bundle_key(&mut self, bundle_key: &str) -> Result<Option<ReferralRow>, StoreError> {
        let rows = self.conn.query(
            &format!("SELECT {LIST_COLS} FROM referral WHERE bundle_key = $1 AND deleted_at IS NULL"),
            &[Param::Text(bundle_key)],
        )?;
        Ok(rows.first().map(|r| referral_row(r, false)))
    }

    /// Referrals addressed to a facility, newest first (without signatures).
    pub fn referrals_to(&mut self, addressee: &str, limit: i64) -> Result<Vec<ReferralRow>, StoreError> {
        let rows = self.conn.query(
            &format!("SELECT {LIST_COLS} FROM referral WHERE addressee = $1 ORDER BY created DESC, id DESC LIMIT $2"),
            &[Param::Text(addressee), Param::I64(limit)],
        )?;
        Ok(rows.iter().map(|r| referral_row(r, false)).collect())
    }

    /// Referrals sent by a facility, newest first (without signatures).
    pub fn referrals_from(&mut self, sender: &str, limit: i64) -> Result<Vec<ReferralRow>, StoreError> {
        let rows = self.conn.query(
            &format!("SELECT {LIST_COLS} FROM referral WHERE sender = $1 ORDER BY created DESC, id DESC LIMIT $2"),
            &[Param::Text(sender), Param::I64(limit)],
        )?;
        Ok(rows.iter().map(|r| referral_row(r, false)).collect())
    }

    /// Replies to a referral, oldest first.
    pub fn referral_replies(&mut self, id: &str) -> Result<Vec<ReferralRow>, StoreError> {
        let rows = self.conn.query(
            &format!("SELECT {LIST_COLS} FROM referral WHERE reply_to = $1 ORDER BY created, id"),
            &[Param::Text(id)],
        )?;
        Ok(rows.iter().map(|r| referral_row(r, false)).collect())
    }

    /// Referrals due for deletion at `now`: received at or before `received_before`, or past
    /// their expiry; oldest first, at most `limit`.
    pub fn referrals_due(
        &mut self,
        received_before: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<ReferralRow>, StoreError> {
        let rows = self.conn.query(
            &format!(
                "SELECT {LIST_COLS} FROM referral WHERE deleted_at IS NULL \
                 AND ((received_at IS NOT NULL AND received_at <= $1) OR expires <= $2) \
                 ORDER BY created, id LIMIT $3"
            ),
            &[Param::I64(received_before), Param::I64(now), Param::I64(limit)],
        )?;
        Ok(rows.iter().map(|r| referral_row(r, false)).collect())
    }

    /// The files of a referral, without their bytes.
    pub fn referral_attachments(&mut self, id: &str) -> Result<Vec<AttachmentRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT referral_id, seq, filename, content_type, size, sha256 FROM referral_attachment \
             WHERE referral_id = $1 ORDER BY seq",
            &[Param::Text(id)],
        )?;
        Ok(rows
            .iter()
            .map(|r| AttachmentRow {
                referral_id: r.str(0).into(),
                seq: r.i64(1),
                filename: r.str(2).into(),
                content_type: r.str(3).into(),
                size: r.i64(4),
                sha256: r.str(5).into(),
                data: None,
            })
            .collect())
    }

    /// One file of a referral, with its bytes (base64).
    pub fn referral_attachment(&mut self, id: &str, seq: i64) -> Result<Option<AttachmentRow>, StoreError> {
        let mut rows = self.conn.query(
            "SELECT referral_id, seq, filename, content_type, size, sha256, data FROM referral_attachment \
             WHERE referral_id = $1 AND seq = $2",
            &[Param::Text(id), Param::I64(seq)],
        )?;
        let Some(r) = rows.first_mut() else { return Ok(None) };
        Ok(Some(AttachmentRow {
            referral_id: r.str(0).into(),
            seq: r.i64(1),
            filename: r.str(2).into(),
            content_type: r.str(3).into(),
            size: r.i64(4),
            sha256: r.str(5).into(),
            data: r.take_str(6),
        }))
    }

    /// Current records whose retention ended before `today` (YYYY-MM-DD), in the order
    /// (retention end, type, id), after the key `after`; at most `limit`.
    pub fn retention_due(
        &mut self,
        today: &str,
        after: Option<(&str, &str, &str)>,
        limit: i64,
    ) -> Result<Vec<CurrentRow>, StoreError> {
        let cols = crate::query::CURRENT_COLS;
        let rows = match after {
            None => self.conn.query(
                &format!(
                    "SELECT {cols} FROM resource r WHERE r.deleted = 0 AND r.retention_end IS NOT NULL \
                     AND r.retention_end < $1 ORDER BY r.retention_end, r.rtype, r.id LIMIT $2"
                ),
                &[Param::Text(today), Param::I64(limit)],
            )?,
            Some((end, rtype, id)) => self.conn.query(
                &format!(
                    "SELECT {cols} FROM resource r WHERE r.deleted = 0 AND r.retention_end IS NOT NULL \
                     AND r.retention_end < $1 AND (r.retention_end, r.rtype, r.id) > ($2, $3, $4) \
                     ORDER BY r.retention_end, r.rtype, r.id LIMIT $5"
                ),
                &[Param::Text(today), Param::Text(end), Param::Text(rtype), Param::Text(id), Param::I64(limit)],
            )?,
        };
        rows.into_iter().map(|mut r| crate::query::current_row(&mut r, 0)).collect()
    }

    /// The ids of the newest `n` current records of one item (`item_key`) of a person (or of a
    /// patient not linked to a person), by clinical date (or write time when it has none).
    pub fn latest_of_item(
        &mut self,
        rtype: ResourceType,
        person_id: Option<&str>,
        patient_id: Option<&str>,
        item_key: &str,
        n: i64,
    ) -> Result<Vec<String>, StoreError> {
        let (col, who) = match (person_id, patient_id) {
            (Some(p), _) => ("person_id", p),
            (None, Some(p)) => ("patient_id", p),
            (None, None) => return Ok(Vec::new()),
        };
        let rows = self.conn.query(
            &format!(
                "SELECT id FROM resource WHERE {col} = $1 AND rtype = $2 AND item_key = $3 AND deleted = 0 \
                 ORDER BY COALESCE(clinical_date, last_updated) DESC, id DESC LIMIT $4"
            ),
            &[Param::Text(who), Param::Text(rtype.as_str()), Param::Text(item_key), Param::I64(n)],
        )?;
        Ok(rows.iter().map(|r| r.str(0).to_owned()).collect())
    }
}
