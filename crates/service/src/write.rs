//! Create, update and delete of single resources.

use musubi_domain::audit::{AuditAction, AuditOutcome};
use musubi_fhir::outcome::OutcomeIssue;
use musubi_fhir::{Interaction, ResourceType, datetime};
use musubi_gate::{Decision, Operation};
use musubi_store::{DeleteResource, Expect, StoreError, WriteBatch};
use serde_json::Value;

use crate::prepare::{Prep, expect_type, new_id, prepare, validate};
use crate::{ApiError, Ctx, ErrorKind, Service};

/// The result of a write.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// Type.
    pub rtype: ResourceType,
    /// Logical id.
    pub id: String,
    /// The version now current.
    pub version: i64,
    /// When it was written (epoch ms).
    pub last_updated: i64,
    /// The stored JSON.
    pub content: String,
    /// Whether the resource was created (201) rather than updated (200).
    pub created: bool,
    /// Whether nothing changed (an identical resubmission).
    pub unchanged: bool,
    /// Validation warnings.
    pub warnings: Vec<OutcomeIssue>,
}

/// The audit outcome of an error.
pub(crate) fn audit_outcome(e: &ApiError) -> AuditOutcome {
    match e.kind {
        ErrorKind::Forbidden | ErrorKind::Unauthorized => AuditOutcome::SeriousFailure,
        ErrorKind::Internal | ErrorKind::Unavailable => AuditOutcome::MajorFailure,
        _ => AuditOutcome::MinorFailure,
    }
}

pub(crate) fn check_supported(rtype: ResourceType, i: Interaction) -> Result<(), ApiError> {
    if rtype.supports(i) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorKind::MethodNotAllowed, format!("{} では {} はできません", rtype.as_str(), i.code())))
    }
}

impl Service {
    /// Audits a failed write and returns the error (or an internal error if the audit itself failed).
    pub(crate) fn refuse(
        &self,
        ctx: &Ctx,
        action: AuditAction,
        subtype: &str,
        entity: Option<String>,
        e: ApiError,
    ) -> ApiError {
        let mut r = self.audit_record(ctx, action, subtype, audit_outcome(&e));
        r.outcome_text = Some(e.summary());
        r.entities = entity.into_iter().collect();
        match self.audit(vec![r]) {
            Ok(()) => e,
            Err(audit_err) => audit_err,
        }
    }

    /// `POST [type]`: creates a resource with a new id.
    pub fn create(&self, ctx: &Ctx, rtype: ResourceType, body: Value) -> Result<WriteOutcome, ApiError> {
        let persons = crate::prepare::Persons::new(&self.store);
        let result = (|| {
            check_supported(rtype, Interaction::Create)?;
            expect_type(&body, rtype, rtype.as_str())?;
            let mut warnings = validate(&body, None)?;
            if rtype == ResourceType::Bundle {
                // A 診療情報提供書 stored as a plain resource reaches no inbox: say so.
                warnings.extend(crate::referral::unidentified_referral_warning(&body, "Bundle"));
            }
            let now = datetime::now_ms();
            let put = prepare(
                Prep {
                    persons: &persons,
                    actor: &ctx.actor,
                    rtype,
                    id: new_id(),
                    version: 1,
                    expect: Expect::Absent,
                    now,
                    bundle_key: None,
                    at: rtype.as_str().into(),
                },
                body,
            )?;
            let mut audit = self.audit_record(ctx, AuditAction::Create, "create", AuditOutcome::Success);
            audit.patient = put.meta.patient_id.clone();
            audit.entities = vec![format!("{}/{}/_history/1", rtype, put.id)];
            let out = WriteOutcome {
                rtype,
                id: put.id.clone(),
                version: 1,
                last_updated: now,
                content: put.content.clone(),
                created: true,
                unchanged: false,
                warnings,
            };
            self.commit_and_link(ctx, WriteBatch { puts: vec![put], audit: vec![audit], ..Default::default() })?;
            Ok(out)
        })();
        result.map_err(|e| self.refuse(ctx, AuditAction::Create, "create", Some(rtype.as_str().to_owned()), e))
    }

    /// `PUT [type]/[id]`: updates (or creates with that id). An identical resubmission
    /// changes nothing. `if_match` is the version the client saw (ETag).
    pub fn update(
        &self,
        ctx: &Ctx,
        rtype: ResourceType,
        id: &str,
        body: Value,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome, ApiError> {
        let key = format!("{rtype}/{id}");
        let result = (|| {
            check_supported(rtype, Interaction::Update)?;
            expect_type(&body, rtype, rtype.as_str())?;
            if !musubi_fhir::is_valid_id(id) {
                return Err(ApiError::bad_request(format!(
                    "id {id:?} は FHIR の id の形式（英数字・ハイフン・ピリオド 64 文字以内）ではありません"
                )));
            }
            match body.get("id").and_then(Value::as_str) {
                Some(b) if b == id => {}
                Some(b) => {
                    return Err(ApiError::at(
                        ErrorKind::BadRequest,
                        format!("{rtype}.id"),
                        format!("本文の id {b} が URL の id {id} と一致しません"),
                    ));
                }
                None => {
                    return Err(ApiError::at(
                        ErrorKind::BadRequest,
                        format!("{rtype}.id"),
                        "更新する本文に id がありません",
                    ));
                }
            }
            let warnings = validate(&body, None)?;
            for _attempt in 0..3 {
                match self.try_update(ctx, rtype, id, body.clone(), if_match, &warnings) {
                    Err(e) if e.kind == ErrorKind::Conflict && if_match.is_none() => continue,
                    other => return other,
                }
            }
            Err(ApiError::new(
                ErrorKind::Conflict,
                format!("{key} への同時更新が続いたため処理できませんでした。再度送信してください。"),
            ))
        })();
        result.map_err(|e| self.refuse(ctx, AuditAction::Update, "update", Some(key.clone()), e))
    }

    fn try_update(
        &self,
        ctx: &Ctx,
        rtype: ResourceType,
        id: &str,
        body: Value,
        if_match: Option<i64>,
        warnings: &[OutcomeIssue],
    ) -> Result<WriteOutcome, ApiError> {
        let persons = crate::prepare::Persons::new(&self.store);
        let now = datetime::now_ms();
        let current = self.store.current(rtype, id)?;
        if let Some(cur) = &current {
            // The existing record must be writable too: no taking over another facility's
            // resource, deleted or not (a deleted resource still belongs to its facility, and
            // its old versions stay in its history).
            if !crate::access::write_decision(&ctx.actor, Operation::Write, &cur.view()).is_allow() {
                // The same answer whether or not the caller may read it: nothing leaks.
                return Err(ApiError::new(
                    ErrorKind::Forbidden,
                    format!("{rtype}/{id} は更新できません（アクセス権限がありません）"),
                ));
            }
        }
        if let Some(expected) = if_match {
            let found = current.as_ref().map(|c| c.version);
            if found != Some(expected) {
                return Err(ApiError::new(
                    ErrorKind::PreconditionFailed,
                    format!(
                        "If-Match のバージョン {expected} が現在のバージョン {} と一致しません",
                        found.map_or("（なし）".into(), |v| v.to_string())
                    ),
                ));
            }
        }
        let (version, expect) = match &current {
            Some(c) => (c.version + 1, Expect::Version(c.version)),
            None => (1, Expect::Absent),
        };
        let put = prepare(
            Prep {
                persons: &persons,
                actor: &ctx.actor,
                rtype,
                id: id.to_owned(),
                version,
                expect,
                now,
                bundle_key: None,
                at: rtype.as_str().into(),
            },
            body,
        )?;
        if let Some(c) = &current
            && !c.deleted
            && c.content_hash == put.content_hash
        {
            // Identical resubmission: nothing changes, but the access is still recorded.
            let mut audit = self.audit_record(ctx, AuditAction::Update, "update", AuditOutcome::Success);
            audit.patient = c.meta.patient_id.clone();
            audit.entities = vec![format!("{rtype}/{id}/_history/{}", c.version)];
            audit.outcome_text = Some("unchanged".into());
            self.audit(vec![audit])?;
            let stored = self.store.read(|r| r.version(rtype, id, Some(c.version)))?;
            return Ok(WriteOutcome {
                rtype,
                id: id.to_owned(),
                version: c.version,
                last_updated: c.last_updated,
                content: stored.and_then(|s| s.content).unwrap_or_default(),
                created: false,
                unchanged: true,
                warnings: warnings.to_vec(),
            });
        }
        let mut audit = self.audit_record(
            ctx,
            if current.is_some() { AuditAction::Update } else { AuditAction::Create },
            "update",
            AuditOutcome::Success,
        );
        audit.patient = put.meta.patient_id.clone();
        audit.entities = vec![format!("{rtype}/{id}/_history/{version}")];
        let out = WriteOutcome {
            rtype,
            id: id.to_owned(),
            version,
            last_updated: now,
            content: put.content.clone(),
            created: current.is_none(),
            unchanged: false,
            warnings: warnings.to_vec(),
        };
        let written = crate::mpi::WrittenPatient::of(std::slice::from_ref(&put));
        match self.store.commit(WriteBatch { puts: vec![put], audit: vec![audit], ..Default::default() }) {
            Ok(_) => {
                self.link_written(ctx, written);
                Ok(out)
            }
            Err(StoreError::Constraint(_)) => Err(ApiError::new(ErrorKind::Conflict, "同時に作成されました")),
            Err(e) => Err(e.into()),
        }
    }

    /// `DELETE [type]/[id]`. Returns the deletion's version, or None when there was nothing
    /// to delete (already deleted).
    pub fn delete(&self, ctx: &Ctx, rtype: ResourceType, id: &str) -> Result<Option<i64>, ApiError> {
        let key = format!("{rtype}/{id}");
        let result = (|| {
            check_supported(rtype, Interaction::Delete)?;
            let Some(cur) = self.store.current(rtype, id)? else {
                return Err(ApiError::not_found(rtype.as_str(), id));
            };
            let view = cur.view();
            if !crate::access::Access::new(self, ctx)?.decide(Operation::Read, &view)?.is_allow() {
                return Err(ApiError::not_found(rtype.as_str(), id));
            }
            if let Decision::Deny(reason) = crate::access::write_decision(&ctx.actor, Operation::Delete, &view) {
                return Err(ApiError::new(ErrorKind::Forbidden, reason.message_ja()));
            }
            let mut audit = self.audit_record(ctx, AuditAction::Delete, "delete", AuditOutcome::Success);
            audit.patient = cur.meta.patient_id.clone();
            audit.entities = vec![key.clone()];
            let c = self.store.commit(WriteBatch {
                deletes: vec![DeleteResource {
                    rtype,
                    id: id.to_owned(),
                    last_updated: datetime::now_ms(),
                    expect_version: Some(cur.version),
                }],
                audit: vec![audit],
                ..Default::default()
            })?;
            Ok(c.deleted_versions.first().copied().flatten())
        })();
        result.map_err(|e| self.refuse(ctx, AuditAction::Delete, "delete", Some(key.clone()), e))
    }
}
