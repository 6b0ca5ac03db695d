//! Read, vread and history, through the gate, each with its audit record. A record the caller
//! may not see answers exactly like a missing one (404), so existence never leaks.

use musubi_domain::audit::AuditPurpose;
use musubi_domain::audit::{AuditAction, AuditOutcome};
use musubi_fhir::{Interaction, ResourceType, datetime};
use musubi_gate::{Operation, RecordView};

use crate::access::Access;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::paging::{BundleMeta, Link, count_param, offset_param};
use crate::write::check_supported;
use crate::{ApiError, Ctx, ErrorKind, Service};

/// A resource version read back.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    /// Type.
    pub rtype: ResourceType,
    /// Logical id.
    pub id: String,
    /// Version.
    pub version: i64,
    /// When written.
    pub last_updated: i64,
    /// The JSON.
    pub content: String,
}

#[derive(Serialize)]
struct HistoryBundle<'a> {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    id: String,
    meta: BundleMeta,
    #[serde(rename = "type")]
    kind: &'static str,
    total: i64,
    link: Vec<Link>,
    entry: Vec<HistoryEntry<'a>>,
}

#[derive(Serialize)]
struct HistoryEntry<'a> {
    #[serde(rename = "fullUrl")]
    full_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a RawValue>,
    request: Request,
    response: Response,
}

#[derive(Serialize)]
struct Request {
    method: &'static str,
    url: String,
}

#[derive(Serialize)]
struct Response {
    status: &'static str,
    etag: String,
    #[serde(rename = "lastModified")]
    last_modified: String,
}

impl Service {
    /// `GET [type]/[id]` and `GET [type]/[id]/_history/[vid]`.
    pub fn read(&self, ctx: &Ctx, rtype: ResourceType, id: &str, vid: Option<i64>) -> Result<ReadOutcome, ApiError> {
        let subtype = if vid.is_some() { "vread" } else { "read" };
        if rtype == ResourceType::AuditEvent {
            return self.read_audit_event(ctx, id);
        }
        check_supported(rtype, if vid.is_some() { Interaction::Vread } else { Interaction::Read })?;
        let found = self.store.read(|r| r.current_and_version(rtype, id, vid))?;
        let mut audit = self.audit_record(ctx, AuditAction::Read, subtype, AuditOutcome::Success);
        let key = match vid {
            Some(v) => format!("{rtype}/{id}/_history/{v}"),
            None => format!("{rtype}/{id}"),
        };
        audit.entities = vec![key];
        let Some((cur, version)) = found else {
            audit.outcome = AuditOutcome::MinorFailure;
            audit.outcome_text = Some("not found".into());
            self.audit(vec![audit])?;
            return Err(ApiError::not_found(rtype.as_str(), id));
        };
        audit.patient = cur.meta.patient_id.clone();
        audit.person = cur.meta.person_id.clone();
        let access = Access::new(self, ctx)?;
        let mut decision = access.decide(Operation::Read, &cur.view())?;
        // An older version is decided on its own meta too (it may have been about another
        // patient, or carried other flags); the audit names the version's patient.
        if decision.is_allow()
            && let Some(v) = version.as_ref().filter(|v| v.version != cur.version)
        {
            let persons = crate::prepare::Persons::new(&self.store);
            let view = version_view(&cur, v, &persons)?;
            if view.patient_id.is_some() {
                audit.patient = view.patient_id.clone();
                audit.person = view.person_id.clone();
            }
            decision = access.decide(Operation::Read, &view)?;
        }
        if let Some(reason) = decision.emergency_reason() {
            audit.purpose = AuditPurpose::Emergency(reason.to_owned());
        }
        if let musubi_gate::Decision::Deny(reason) = decision {
            audit.outcome = AuditOutcome::SeriousFailure;
            audit.outcome_text = Some(format!("denied: {}", reason.message_ja()));
            self.audit(vec![audit])?;
            return Err(ApiError::not_found(rtype.as_str(), id));
        }
        let Some(v) = version else {
            audit.outcome = AuditOutcome::MinorFailure;
            audit.outcome_text = Some("no such version".into());
            self.audit(vec![audit])?;
            return Err(ApiError::new(
                ErrorKind::NotFound,
                format!("{rtype}/{id} のバージョン {} は見つかりません", vid.unwrap_or(0)),
            ));
        };
        if v.deleted {
            audit.outcome = AuditOutcome::MinorFailure;
            audit.outcome_text = Some("deleted".into());
            self.audit(vec![audit])?;
            return Err(ApiError::new(ErrorKind::Gone, format!("{rtype}/{id} は削除されています")));
        }
        self.audit(vec![audit])?;
        Ok(ReadOutcome {
            rtype,
            id: id.to_owned(),
            version: v.version,
            last_updated: v.last_updated,
            content: v.content.unwrap_or_default(),
        })
    }

    /// `GET [type]/[id]/_history`, `GET [type]/_history`, `GET /_history`: versions the caller
    /// may see, newest first, as a history Bundle (JSON text).
    pub fn history(
        &self,
        ctx: &Ctx,
        rtype: Option<ResourceType>,
        id: Option<&str>,
        params: &[(String, String)],
    ) -> Result<String, ApiError> {
        if let Some(t) = rtype {
            check_supported(t, if id.is_some() { Interaction::HistoryInstance } else { Interaction::HistoryType })?;
            if t == ResourceType::AuditEvent {
                return Err(ApiError::new(ErrorKind::MethodNotAllowed, "AuditEvent に履歴はありません"));
            }
        }
        let mut since = None;
        for (k, v) in params {
            match k.as_str() {
                "_count" | "_offset" | "_format" | "_pretty" => {}
                "_since" => {
                    since = Some(
                        datetime::parse_range(v)
                            .map_err(|_| ApiError::bad_request(format!("_since の値 {v:?} は日時ではありません")))?
                            .lo,
                    )
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "履歴ではパラメータ {other} は使えません（_count, _since, _offset のみ）"
                    )));
                }
            }
        }
        let count = count_param(params)?;
        let offset = offset_param(params)?;
        let access = Access::new(self, ctx)?;
        // One resource's history is in the scope of its person, as a read of it is.
        let person = match (rtype, id) {
            (Some(t), Some(i)) => self.store.current(t, i)?.and_then(|row| row.meta.person_id.or(row.meta.patient_id)),
            _ => None,
        };
        let scope = match rtype {
            Some(t) => access.scope(t, person.as_deref())?,
            None if ctx.actor.is_privileged() => musubi_store::Scope::all(),
            None => {
                return Err(ApiError::new(ErrorKind::Forbidden, "システム全体の履歴は運営管理者のみが参照できます"));
            }
        };
        let (total, rows) = self.store.snapshot(|r| r.history(rtype, id, since, &scope, offset, count))?;
        let mut audit = self.audit_record(ctx, AuditAction::Read, "history", AuditOutcome::Success);
        audit.query = Some(format!(
            "{}/{}_history",
            rtype.map(|t| t.as_str()).unwrap_or(""),
            id.map(|i| format!("{i}/")).unwrap_or_default()
        ));
        let mut entries_raw = Vec::with_capacity(rows.len());
        let persons = crate::prepare::Persons::new(&self.store);
        let mut hidden = 0;
        let mut kept = Vec::with_capacity(rows.len());
        for (stored, cur) in rows {
            if !access.decide(Operation::Read, &cur.view())?.is_allow() {
                // The scope and the decision are held equal by a property test; a row outside
                // it means a bug, and nothing is returned rather than something hidden.
                return Err(ApiError::internal(format!(
                    "history row {}/{} outside the gate's decision",
                    cur.rtype, cur.id
                )));
            }
            // Each version on its own meta as well: an older version about another patient
            // (or flagged otherwise) is not shown with the current one.
            let view = version_view(&cur, &stored, &persons)?;
            if !access.decide(Operation::Read, &view)?.is_allow() {
                hidden += 1;
                continue;
            }
            let mut cur = cur;
            cur.meta.patient_id = view.patient_id.or(cur.meta.patient_id);
            kept.push((stored, cur));
        }
        let rows = kept;
        let total = total - hidden;
        for (stored, _) in &rows {
            let raw = match &stored.content {
                Some(c) => Some(
                    RawValue::from_string(c.clone()).map_err(|e| ApiError::internal(format!("stored JSON: {e}")))?,
                ),
                None => None,
            };
            entries_raw.push((stored, raw));
        }
        if id.is_some() && total == 0 {
            audit.outcome = AuditOutcome::MinorFailure;
            self.audit(vec![audit])?;
            return Err(ApiError::not_found(rtype.map(|t| t.as_str()).unwrap_or(""), id.unwrap_or("")));
        }
        audit.entities = rows.iter().map(|(s, _)| format!("{}/{}/_history/{}", s.rtype, s.id, s.version)).collect();
        let patients: std::collections::BTreeSet<_> =
            rows.iter().filter_map(|(_, c)| c.meta.patient_id.clone()).collect();
        let mut records = Vec::new();
        if patients.len() <= 1 {
            audit.patient = patients.into_iter().next();
            records.push(audit);
        } else {
            for p in patients {
                let mut a = audit.clone();
                a.entities = rows
                    .iter()
                    .filter(|(_, c)| c.meta.patient_id.as_deref() == Some(p.as_str()))
                    .map(|(s, _)| format!("{}/{}/_history/{}", s.rtype, s.id, s.version))
                    .collect();
                a.patient = Some(p);
                records.push(a);
            }
        }
        self.audit(records)?;
        let entry = entries_raw
            .iter()
            .map(|(s, raw)| HistoryEntry {
                full_url: format!("{}/{}/{}", ctx.base_url, s.rtype, s.id),
                resource: raw.as_deref(),
                request: Request {
                    method: if s.deleted {
                        "DELETE"
                    } else if s.version == 1 {
                        "POST"
                    } else {
                        "PUT"
                    },
                    url: if s.version == 1 && !s.deleted {
                        s.rtype.as_str().to_owned()
                    } else {
                        format!("{}/{}", s.rtype, s.id)
                    },
                },
                response: Response {
                    status: if s.deleted {
                        "204 No Content"
                    } else if s.version == 1 {
                        "201 Created"
                    } else {
                        "200 OK"
                    },
                    etag: format!("W/\"{}\"", s.version),
                    last_modified: datetime::format_instant(s.last_updated),
                },
            })
            .collect();
        let path = match (rtype, id) {
            (Some(t), Some(i)) => format!("{}/{t}/{i}/_history", ctx.base_url),
            (Some(t), None) => format!("{}/{t}/_history", ctx.base_url),
            _ => format!("{}/_history", ctx.base_url),
        };
        let link = crate::paging::page_links(&path, params, offset, count, total);
        let b = HistoryBundle {
            resource_type: "Bundle",
            id: crate::prepare::new_id(),
            meta: BundleMeta { last_updated: datetime::format_instant(datetime::now_ms()) },
            kind: "history",
            total,
            link,
            entry,
        };
        serde_json::to_string(&b).map_err(ApiError::internal)
    }
}

/// What the gate sees of one stored version: the current row's facility (a resource never
/// changes hands, deleted or not), with the patient, person, class, flags and clinical date of
/// the version itself. A deletion has no content and is seen as the current row.
pub(crate) fn version_view(
    cur: &musubi_store::CurrentRow,
    v: &musubi_store::StoredResource,
    persons: &crate::prepare::Persons,
) -> Result<RecordView, ApiError> {
    let Some(text) = v.content.as_deref().filter(|_| !v.deleted) else { return Ok(cur.view()) };
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ApiError::internal(format!("stored JSON of {}/{}: {e}", v.rtype, v.id)))?;
    let m = musubi_fhir::classify::classify_with(v.rtype, &value, &crate::lab_set);
    let patient_id = if v.rtype == ResourceType::Patient { Some(v.id.clone()) } else { m.patient };
    let person_id = match &patient_id {
        Some(p) if cur.meta.patient_id.as_deref() == Some(p.as_str()) => {
            cur.meta.person_id.clone().or_else(|| Some(p.clone()))
        }
        Some(p) => Some(persons.of(p)?),
        None => None,
    };
    Ok(RecordView {
        rtype: v.rtype,
        class: m.class,
        facility: cur.meta.facility,
        patient_id,
        person_id,
        flags: m.flags,
        clinical_date: m.clinical_date,
    })
}
