//! The audit log as FHIR AuditEvent resources (IHE BALP shape), read-only and for
//! administrators. Reading the audit log is itself audited.

use base64::Engine;
use musubi_domain::audit::{AuditAction, AuditOutcome, AuditPurpose, AuditRecord};
use musubi_fhir::datetime;
use musubi_store::AuditQuery;
use serde_json::{Value, json};

use crate::paging::{count_param, offset_param, page_links};
use crate::params::parse_date_pred;
use crate::{ApiError, Ctx, ErrorKind, SearchResult, Service};

/// Renders one stored audit record as an AuditEvent.
pub fn audit_event_json(seq: i64, record: &AuditRecord) -> Value {
    let profile = match record.action {
        AuditAction::Create => "IHE.BasicAudit.Create",
        AuditAction::Read => match record.subtype.as_str() {
            "search-type" | "history" => "IHE.BasicAudit.Query",
            _ => "IHE.BasicAudit.Read",
        },
        AuditAction::Update => "IHE.BasicAudit.Update",
        AuditAction::Delete => "IHE.BasicAudit.Delete",
        AuditAction::Execute => "IHE.BasicAudit.Execute",
    };
    let purpose = match &record.purpose {
        AuditPurpose::Treatment => ("TREAT", "treatment"),
        AuditPurpose::Emergency(_) => ("ETREAT", "emergency treatment"),
        AuditPurpose::Operations => ("HOPERAT", "healthcare operations"),
        AuditPurpose::PatientRequest => ("PATRQT", "patient requested"),
    };
    let mut entity = Vec::new();
    if let Some(p) = &record.patient {
        entity.push(json!({
            "what": {"reference": format!("Patient/{p}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}
        }));
    }
    for e in &record.entities {
        entity.push(json!({
            "what": {"reference": e},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"}
        }));
    }
    if let Some(q) = &record.query {
        entity.push(json!({
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24", "display": "Query"},
            "query": base64::engine::general_purpose::STANDARD.encode(q.as_bytes()),
            "description": q
        }));
    }
    let mut agent = json!({
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient"}]},
        "who": {"display": record.agent.name, "identifier": {"system": "urn:musubi:agent", "value": format!("{}:{}", record.agent.kind, record.agent.name)}},
        "requestor": true
    });
    if let Some(f) = &record.agent.facility {
        agent["who"]["extension"] = json!([{"url": musubi_domain::systems::EXT_INSTITUTION_NUMBER, "valueIdentifier": {"system": musubi_domain::systems::INSTITUTION_NUMBER, "value": f}}]);
    }
    if let Some(a) = &record.agent.address {
        agent["network"] = json!({"address": a, "type": "2"});
    }
    if let Some(p) = &record.agent.profession {
        agent["role"] = json!([{"text": p}]);
    }
    let mut v = json!({
        "resourceType": "AuditEvent",
        "id": seq.to_string(),
        "meta": {"profile": [format!("https://profiles.ihe.net/ITI/BALP/StructureDefinition/{profile}")]},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "Restful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": record.subtype}],
        "action": record.action.code(),
        "recorded": datetime::format_instant(record.recorded),
        "outcome": record.outcome.code(),
        "purposeOfEvent": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose.0, "display": purpose.1}]}],
        "agent": [agent],
        "source": {"observer": {"display": record.source}, "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]},
        "entity": entity
    });
    if let Some(t) = &record.outcome_text {
        v["outcomeDesc"] = json!(t);
    }
    if let AuditPurpose::Emergency(reason) = &record.purpose {
        v["purposeOfEvent"][0]["text"] = json!(reason);
    }
    v
}

/// The audit-trail filters of an `AuditEvent` search's parameters (pure).
pub(crate) fn audit_query(params: &[(String, String)]) -> Result<AuditQuery, ApiError> {
    let mut q = AuditQuery::default();
    for (k, v) in params {
        match k.as_str() {
            "_count" | "_offset" | "_format" | "_pretty" => {}
            "date" => {
                let p = parse_date_pred("date", v)?;
                use musubi_store::DatePrefix::*;
                match p.prefix {
                    Ge | Gt | Sa => {
                        q.from = Some(if p.prefix == Ge { p.range.lo } else { p.range.hi.saturating_add(1) })
                    }
                    Le | Lt | Eb => q.to = Some(if p.prefix == Le { p.range.hi } else { p.range.lo.saturating_sub(1) }),
                    Eq => {
                        q.from = Some(p.range.lo);
                        q.to = Some(p.range.hi);
                    }
                    _ => {
                        return Err(ApiError::bad_request(
                            "AuditEvent の date には eq, ge, gt, le, lt, sa, eb を使ってください",
                        ));
                    }
                }
            }
            "patient" => q.patient = Some(v.trim_start_matches("Patient/").to_owned()),
            "agent" => q.agent = Some(v.clone()),
            "action" => q.action = Some(v.clone()),
            "outcome" => q.outcome = Some(v.clone()),
            "_id" => q.seq = Some(v.parse().map_err(|_| ApiError::bad_request("AuditEvent の _id は数値です"))?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "AuditEvent では検索パラメータ {other} に対応していません（date, patient, agent, action, outcome, _id）"
                )));
            }
        }
    }
    Ok(q)
}

impl Service {
    fn audit_gate(&self, ctx: &Ctx, subtype: &str, query: Option<String>) -> Result<(), ApiError> {
        if let musubi_gate::Decision::Deny(reason) = musubi_gate::may_read_audit(&ctx.actor) {
            let mut a = self.audit_record(ctx, AuditAction::Read, subtype, AuditOutcome::SeriousFailure);
            a.query = query;
            a.outcome_text = Some(reason.message_ja().into());
            self.audit(vec![a])?;
            return Err(ApiError::new(ErrorKind::Forbidden, reason.message_ja()));
        }
        Ok(())
    }

    pub(crate) fn read_audit_event(&self, ctx: &Ctx, id: &str) -> Result<crate::ReadOutcome, ApiError> {
        self.audit_gate(ctx, "read", Some(format!("AuditEvent/{id}")))?;
        let seq: i64 = id.parse().map_err(|_| ApiError::not_found("AuditEvent", id))?;
        let (_, rows) =
            self.store.read(|r| r.audit_search(&AuditQuery { seq: Some(seq), ..Default::default() }, 0, 1))?;
        let mut a = self.audit_record(ctx, AuditAction::Read, "read", AuditOutcome::Success);
        a.entities = vec![format!("AuditEvent/{id}")];
        let Some((seq, text)) = rows.into_iter().next() else {
            a.outcome = AuditOutcome::MinorFailure;
            self.audit(vec![a])?;
            return Err(ApiError::not_found("AuditEvent", id));
        };
        let record: AuditRecord =
            serde_json::from_str(&text).map_err(|e| ApiError::internal(format!("audit record {seq}: {e}")))?;
        self.audit(vec![a])?;
        Ok(crate::ReadOutcome {
            rtype: musubi_fhir::ResourceType::AuditEvent,
            id: id.to_owned(),
            version: 1,
            last_updated: record.recorded,
            content: audit_event_json(seq, &record).to_string(),
        })
    }

    pub(crate) fn search_audit_events(&self, ctx: &Ctx, params: &[(String, String)]) -> Result<SearchResult, ApiError> {
        let query_text = params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        self.audit_gate(ctx, "search-type", Some(format!("AuditEvent?{query_text}")))?;
        let q = audit_query(params)?;
        let count = count_param(params)?;
        let offset = offset_param(params)?;
        let (total, rows) = self.store.read(|r| r.audit_search(&q, offset, count))?;
        let mut entries = Vec::with_capacity(rows.len());
        for (seq, text) in &rows {
            let record: AuditRecord =
                serde_json::from_str(text).map_err(|e| ApiError::internal(format!("audit record {seq}: {e}")))?;
            entries.push(json!({"fullUrl": format!("{}/AuditEvent/{seq}", ctx.base_url), "resource": audit_event_json(*seq, &record), "search": {"mode": "match"}}));
        }
        let mut a = self.audit_record(ctx, AuditAction::Read, "search-type", AuditOutcome::Success);
        a.query = Some(format!("AuditEvent?{query_text}"));
        a.patient = q.patient.clone();
        self.audit(vec![a])?;
        let bundle = json!({
            "resourceType": "Bundle",
            "id": crate::prepare::new_id(),
            "meta": {"lastUpdated": datetime::format_instant(datetime::now_ms())},
            "type": "searchset",
            "total": total,
            "link": page_links(&format!("{}/AuditEvent", ctx.base_url), params, offset, count, total),
            "entry": entries
        });
        Ok(SearchResult { json: bundle.to_string(), total })
    }
}
