//! Bundles: `transaction` (atomic, with `urn:uuid` references rewritten to the ids assigned),
//! `batch` (each entry on its own), and the JP-CLINS submissions of the national sharing
//! service — 5情報 `collection` Bundles and document Bundles — accepted whole at
//! `POST /Bundle`, replaced by a second submission with the same Bundle identifier, and deleted
//! by identifier.

use std::collections::{BTreeMap, HashMap, HashSet};

use musubi_domain::audit::{AuditAction, AuditOutcome, AuditRecord};
use musubi_domain::{BundleIdentifier, systems};
use musubi_fhir::outcome::OutcomeIssue;
use musubi_fhir::reference::rewrite_references;
use musubi_fhir::{ResourceType, classify, datetime};
use musubi_gate::{Actor, Decision, Operation};
use musubi_store::{BundleOp, BundleSubmission, DeleteResource, Expect, PutResource, WriteBatch};
use serde::Serialize;
use serde_json::{Value, json};

use crate::prepare::{Prep, new_id, prepare, resolve_facility, to_outcome_issues, validate};
use crate::{ApiError, Ctx, ErrorKind, Service};

/// How a JP-CLINS submission ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitStatus {
    /// A new submission.
    Created,
    /// It replaced an earlier submission with the same identifier.
    Replaced,
    /// Identical to the stored submission: nothing changed.
    Unchanged,
}

/// The result of a JP-CLINS submission.
#[derive(Debug, Clone)]
pub struct SubmitOutcome {
    /// Created, replaced or unchanged.
    pub status: SubmitStatus,
    /// The Bundle identifier.
    pub bundle_key: String,
    /// `collection` or `document`.
    pub kind: String,
    /// The source patient the data was filed under.
    pub patient_id: String,
    /// `Type/id` of every resource stored from it.
    pub stored: Vec<String>,
    /// For documents, the stored Bundle's id.
    pub bundle_id: Option<String>,
    /// For a 診療情報提供書, the referral (the addressee's inbox entry) it was delivered as.
    pub referral_id: Option<String>,
    /// Validation warnings, and what became of a referral letter (delivered to an inbox, or a
    /// warning saying why not).
    pub warnings: Vec<OutcomeIssue>,
}

/// A JP-CLINS submission ready to commit.
pub(crate) struct Planned {
    /// What the caller is told.
    pub outcome: SubmitOutcome,
    /// The store write, with its audit records.
    pub batch: WriteBatch,
    /// Referrals it delivers (written in the same store transaction).
    pub referrals: Vec<musubi_store::ReferralRow>,
    /// For a document, the version of its Bundle after the commit.
    pub doc_version: Option<i64>,
}

impl SubmitOutcome {
    /// An OperationOutcome reporting it (Japanese).
    pub fn outcome(&self) -> Value {
        let what = match self.status {
            SubmitStatus::Created => "受け付けました",
            SubmitStatus::Replaced => "受け付けました（同じ Bundle 識別子の以前の送信を置き換えました）",
            SubmitStatus::Unchanged => "以前の送信と同一のため変更はありません",
        };
        let mut issues = vec![OutcomeIssue {
            severity: musubi_fhir::outcome::Severity::Information,
            code: "informational",
            expression: None,
            diagnostics: format!(
                "Bundle {} を{}（患者 Patient/{}、{} 件）",
                self.bundle_key,
                what,
                self.patient_id,
                self.stored.len()
            ),
            rule: None,
        }];
        issues.extend(self.warnings.iter().cloned());
        musubi_fhir::outcome::operation_outcome(&issues)
    }
}

#[derive(Serialize)]
struct ResponseEntry {
    #[serde(skip_serializing_if = "Option::is_none", rename = "fullUrl")]
    full_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Value>,
    response: EntryResponse,
}

#[derive(Serialize)]
struct EntryResponse {
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "lastModified")]
    last_modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Value>,
}

fn response_bundle(kind: &str, entries: Vec<ResponseEntry>) -> Result<String, ApiError> {
    let v = json!({
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": datetime::format_instant(datetime::now_ms())},
        "type": kind,
        "entry": entries,
    });
    serde_json::to_string(&v).map_err(ApiError::internal)
}

/// Groups entities by patient into audit records (each patient's history shows the access).
fn audits_by_patient(base: &AuditRecord, items: &[(Option<String>, String)]) -> Vec<AuditRecord> {
    let mut groups: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for (p, e) in items {
        groups.entry(p.clone()).or_default().push(e.clone());
    }
    if groups.is_empty() {
        return vec![base.clone()];
    }
    groups
        .into_iter()
        .map(|(patient, entities)| {
            let mut a = base.clone();
            a.patient = patient;
            a.entities = entities;
            a
        })
        .collect()
}

fn entry_at(i: usize) -> String {
    format!("Bundle.entry[{i}]")
}

/// A parsed transaction entry.
enum TxOp {
    Create { rtype: ResourceType, body: Value, if_none_exist: Option<String> },
    Update { rtype: ResourceType, id: String, body: Value, if_match: Option<i64> },
    Delete { rtype: ResourceType, id: String },
    Get { url: String },
}

fn parse_type_id(url: &str, at: &str) -> Result<(ResourceType, String), ApiError> {
    let path = url.split('?').next().unwrap_or("");
    let mut parts = path.trim_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(t), Some(id), None) => {
            let rtype: ResourceType = t.parse().map_err(|_| {
                ApiError::at(
                    ErrorKind::BadRequest,
                    format!("{at}.request.url"),
                    format!("リソース型 {t} には対応していません"),
                )
            })?;
            if !musubi_fhir::is_valid_id(id) {
                return Err(ApiError::at(
                    ErrorKind::BadRequest,
                    format!("{at}.request.url"),
                    format!("id {id:?} が不正です"),
                ));
            }
            Ok((rtype, id.to_owned()))
        }
        _ => Err(ApiError::at(
            ErrorKind::BadRequest,
            format!("{at}.request.url"),
            format!("request.url は Type/id の形でなければなりません: {url}"),
        )),
    }
}

fn parse_entry(i: usize, mut e: Value) -> Result<(Option<String>, TxOp), ApiError> {
    let at = entry_at(i);
    let full_url = e.get("fullUrl").and_then(Value::as_str).map(str::to_owned);
    let mut body = e.get_mut("resource").map(Value::take);
    let req = e.get("request").ok_or_else(|| {
        ApiError::at(
            ErrorKind::BadRequest,
            format!("{at}.request"),
            "transaction / batch の entry には request が必要です",
        )
    })?;
    let method = req.get("method").and_then(Value::as_str).unwrap_or("");
    let url = req.get("url").and_then(Value::as_str).unwrap_or("");
    let mut need_body = || {
        body.take().ok_or_else(|| {
            ApiError::at(
                ErrorKind::BadRequest,
                format!("{at}.resource"),
                format!("{method} の entry には resource が必要です"),
            )
        })
    };
    let op = match method {
        "POST" => {
            let body = need_body()?;
            let t = body.get("resourceType").and_then(Value::as_str).unwrap_or("");
            let rtype: ResourceType = t.parse().map_err(|_| {
                ApiError::at(
                    ErrorKind::BadRequest,
                    format!("{at}.resource.resourceType"),
                    format!("リソース型 {t:?} には対応していません"),
                )
            })?;
            if url.trim_matches('/') != rtype.as_str() {
                return Err(ApiError::at(
                    ErrorKind::BadRequest,
                    format!("{at}.request.url"),
                    format!("POST の request.url は {} でなければなりません（{url}）", rtype.as_str()),
                ));
            }
            let if_none_exist = req.get("ifNoneExist").and_then(Value::as_str).map(str::to_owned);
            TxOp::Create { rtype, body, if_none_exist }
        }
        "PUT" => {
            let (rtype, id) = parse_type_id(url, &at)?;
            let if_match = req.get("ifMatch").and_then(Value::as_str).and_then(crate::etag_version);
            TxOp::Update { rtype, id, body: need_body()?, if_match }
        }
        "DELETE" => {
            if url.contains('?') {
                return Err(ApiError::at(
                    ErrorKind::BadRequest,
                    format!("{at}.request.url"),
                    "条件付き削除には対応していません",
                ));
            }
            let (rtype, id) = parse_type_id(url, &at)?;
            TxOp::Delete { rtype, id }
        }
        "GET" => TxOp::Get { url: url.to_owned() },
        other => {
            return Err(ApiError::at(
                ErrorKind::BadRequest,
                format!("{at}.request.method"),
                format!("request.method {other:?} には対応していません（GET, POST, PUT, DELETE）"),
            ));
        }
    };
    Ok((full_url, op))
}

impl Service {
    /// `POST /` with a Bundle of type `transaction` or `batch`.
    pub fn process_bundle(&self, ctx: &Ctx, bundle: Value) -> Result<String, ApiError> {
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(ApiError::at(
                ErrorKind::BadRequest,
                "resourceType",
                "POST / には Bundle（transaction または batch）を送ってください",
            ));
        }
        match bundle.get("type").and_then(Value::as_str) {
            Some("transaction") => self.transaction(ctx, bundle),
            Some("batch") => self.batch(ctx, bundle),
            Some(other) => Err(ApiError::at(
                ErrorKind::BadRequest,
                "Bundle.type",
                format!(
                    "POST / で受け付けるのは transaction と batch です（type={other}）。5情報・文書 Bundle は POST /Bundle に送ってください"
                ),
            )),
            None => Err(ApiError::at(ErrorKind::BadRequest, "Bundle.type", "Bundle.type がありません")),
        }
    }

    /// An atomic transaction: all entries or none.
    pub fn transaction(&self, ctx: &Ctx, bundle: Value) -> Result<String, ApiError> {
        let result = self.transaction_inner(ctx, bundle);
        result.map_err(|e| self.refuse(ctx, AuditAction::Execute, "transaction", None, e))
    }

    fn transaction_inner(&self, ctx: &Ctx, bundle: Value) -> Result<String, ApiError> {
        let persons = crate::prepare::Persons::new(&self.store);
        let Value::Object(mut b) = bundle else {
            return Err(ApiError::bad_request("Bundle はオブジェクトでなければなりません"));
        };
        let entries = match b.remove("entry") {
            None => Vec::new(),
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(ApiError::at(ErrorKind::BadRequest, "Bundle.entry", "entry は配列でなければなりません"));
            }
        };
        let mut ops = Vec::with_capacity(entries.len());
        for (i, e) in entries.into_iter().enumerate() {
            ops.push(parse_entry(i, e)?);
        }

        // Ids for creates; the urn:uuid map for references.
        let mut map: HashMap<String, String> = HashMap::new();
        let mut ids: Vec<Option<String>> = Vec::with_capacity(ops.len());
        let mut seen: HashSet<String> = HashSet::new();
        let mut existing_for: Vec<Option<(String, i64)>> = vec![None; ops.len()];
        // Entries that POST a JP-CLINS 診療情報提供書: stored as a submission (as at
        // `POST /Bundle`), so that the letter reaches its addressee's inbox.
        let mut submission: Vec<bool> = vec![false; ops.len()];
        let mut submission_keys: HashSet<String> = HashSet::new();
        for (i, (full_url, op)) in ops.iter().enumerate() {
            let key = match op {
                TxOp::Create { rtype, if_none_exist, body } => {
                    if let Some(cond) = if_none_exist {
                        let found = self.conditional_match(ctx, *rtype, cond, &entry_at(i))?;
                        match found.as_slice() {
                            [] => {}
                            [(id, v)] => existing_for[i] = Some((id.clone(), *v)),
                            _ => {
                                return Err(ApiError::at(
                                    ErrorKind::PreconditionFailed,
                                    format!("{}.request.ifNoneExist", entry_at(i)),
                                    format!("ifNoneExist {cond} に一致するリソースが複数あります"),
                                ));
                            }
                        }
                    }
                    let id = match &existing_for[i] {
                        Some((id, _)) => id.clone(),
                        None if *rtype == ResourceType::Bundle && is_referral_submission(body) => {
                            let key =
                                body.pointer("/identifier/value").and_then(Value::as_str).unwrap_or("").to_owned();
                            if !submission_keys.insert(key.clone()) {
                                return Err(ApiError::at(
                                    ErrorKind::BadRequest,
                                    format!("{}.resource.identifier", entry_at(i)),
                                    format!("Bundle 識別子 {key} の文書が同じ transaction に複数あります"),
                                ));
                            }
                            submission[i] = true;
                            // A resubmission keeps the stored document's id.
                            self.store
                                .read(|r| r.bundle_submission(&key))?
                                .and_then(|s| s.bundle_id)
                                .unwrap_or_else(new_id)
                        }
                        None => new_id(),
                    };
                    ids.push(Some(id.clone()));
                    Some(format!("{rtype}/{id}"))
                }
                TxOp::Update { rtype, id, .. } | TxOp::Delete { rtype, id } => {
                    ids.push(Some(id.clone()));
                    Some(format!("{rtype}/{id}"))
                }
                TxOp::Get { .. } => {
                    ids.push(None);
                    None
                }
            };
            if let Some(k) = &key {
                if !seen.insert(k.clone()) {
                    return Err(ApiError::at(
                        ErrorKind::BadRequest,
                        entry_at(i),
                        format!("{k} が同じ transaction に複数回現れます"),
                    ));
                }
                if let Some(fu) = full_url
                    && (fu.starts_with("urn:uuid:") || fu.starts_with("urn:oid:"))
                {
                    map.insert(fu.clone(), k.clone());
                }
            }
        }

        // Rewrite references, validate everything, and report every problem at once.
        let mut issues: Vec<OutcomeIssue> = Vec::new();
        let mut warnings = Vec::new();
        for (i, (_, op)) in ops.iter_mut().enumerate() {
            if let TxOp::Create { rtype, body, .. } | TxOp::Update { rtype, body, .. } = op {
                // A Bundle resource (a document, a collection) resolves its references among
                // its own entries: the transaction's fullUrls are not its, and rewriting them
                // would change the document as its author wrote (and signed) it.
                if *rtype != ResourceType::Bundle {
                    rewrite_references(body, &map);
                    for r in musubi_fhir::reference::collect_references(body) {
                        if r.starts_with("urn:uuid:") {
                            issues.push(
                                OutcomeIssue::error(
                                    "invalid",
                                    format!("参照 {r} はこの transaction のどの fullUrl とも一致しません"),
                                )
                                .at(format!("{}.resource", entry_at(i))),
                            );
                        }
                    }
                }
                if submission[i] {
                    // Validated whole, as a submission, when it is planned below.
                    continue;
                }
                match validate(body, Some(&format!("{}.resource", entry_at(i)))) {
                    Ok(w) => warnings.extend(w),
                    Err(e) => issues.extend(e.issues),
                }
            }
        }
        if !issues.is_empty() {
            return Err(ApiError { kind: ErrorKind::Unprocessable, issues });
        }

        let now = datetime::now_ms();
        let mut batch = WriteBatch::default();
        let mut audit_items: Vec<(Option<String>, String)> = Vec::new();
        let mut responses: Vec<ResponseEntry> = Vec::with_capacity(ops.len());
        let mut gets: Vec<(usize, String)> = Vec::new();
        let mut submitted_audit = Vec::new();
        let mut referrals = Vec::new();
        for (i, ((_, op), id)) in ops.into_iter().zip(ids).enumerate() {
            let at = format!("{}.resource", entry_at(i));
            match op {
                TxOp::Create { rtype, body, .. } if submission[i] && existing_for[i].is_none() => {
                    let id = id.unwrap_or_else(new_id);
                    let planned = self.plan_submission(ctx, body, &persons, now, Some(id.clone()), &at)?;
                    let Planned { outcome, batch: b, referrals: r, doc_version } = planned;
                    let id = outcome.bundle_id.clone().unwrap_or(id);
                    let v = doc_version.unwrap_or(1);
                    let written = !b.puts.is_empty();
                    batch.puts.extend(b.puts);
                    batch.deletes.extend(b.deletes);
                    batch.bundles.extend(b.bundles);
                    submitted_audit.extend(b.audit);
                    referrals.extend(r);
                    responses.push(ResponseEntry {
                        full_url: Some(format!("{}/{rtype}/{id}", ctx.base_url)),
                        resource: None,
                        response: EntryResponse {
                            status: if outcome.status == SubmitStatus::Created { "201 Created" } else { "200 OK" }
                                .into(),
                            location: Some(format!("{rtype}/{id}/_history/{v}")),
                            etag: Some(format!("W/\"{v}\"")),
                            last_modified: written.then(|| datetime::format_instant(now)),
                            outcome: Some(outcome.outcome()),
                        },
                    });
                }
                TxOp::Create { rtype, body, .. } => {
                    let id = id.unwrap_or_else(new_id);
                    let warning = crate::referral::unidentified_referral_warning(&body, &at);
                    if let Some((eid, v)) = &existing_for[i] {
                        responses.push(ResponseEntry {
                            full_url: Some(format!("{}/{rtype}/{eid}", ctx.base_url)),
                            resource: None,
                            response: EntryResponse {
                                status: "200 OK".into(),
                                location: Some(format!("{rtype}/{eid}/_history/{v}")),
                                etag: Some(format!("W/\"{v}\"")),
                                last_modified: None,
                                outcome: None,
                            },
                        });
                        continue;
                    }
                    let put = prepare(
                        Prep {
                            persons: &persons,
                            actor: &ctx.actor,
                            rtype,
                            id: id.clone(),
                            version: 1,
                            expect: Expect::Absent,
                            now,
                            bundle_key: None,
                            at,
                        },
                        body,
                    )?;
                    audit_items.push((put.meta.patient_id.clone(), format!("{rtype}/{id}/_history/1")));
                    responses.push(ResponseEntry {
                        full_url: Some(format!("{}/{rtype}/{id}", ctx.base_url)),
                        resource: None,
                        response: EntryResponse {
                            status: "201 Created".into(),
                            location: Some(format!("{rtype}/{id}/_history/1")),
                            etag: Some("W/\"1\"".into()),
                            last_modified: Some(datetime::format_instant(now)),
                            outcome: warning.map(|w| musubi_fhir::outcome::operation_outcome(&[w])),
                        },
                    });
                    batch.puts.push(put);
                }
                TxOp::Update { rtype, id, body, if_match } => {
                    let cur = self.store.current(rtype, &id)?;
                    // A deleted resource still belongs to its facility.
                    if let Some(c) = &cur
                        && !crate::access::write_decision(&ctx.actor, Operation::Write, &c.view()).is_allow()
                    {
                        return Err(ApiError::at(
                            ErrorKind::Forbidden,
                            entry_at(i),
                            format!("{rtype}/{id} は更新できません（アクセス権限がありません）"),
                        ));
                    }
                    if let Some(m) = if_match
                        && cur.as_ref().map(|c| c.version) != Some(m)
                    {
                        return Err(ApiError::at(
                            ErrorKind::PreconditionFailed,
                            format!("{}.request.ifMatch", entry_at(i)),
                            "ifMatch のバージョンが現在のバージョンと一致しません",
                        ));
                    }
                    let (version, expect) = match &cur {
                        Some(c) => (c.version + 1, Expect::Version(c.version)),
                        None => (1, Expect::Absent),
                    };
                    let put = prepare(
                        Prep {
                            persons: &persons,
                            actor: &ctx.actor,
                            rtype,
                            id: id.clone(),
                            version,
                            expect,
                            now,
                            bundle_key: None,
                            at,
                        },
                        body,
                    )?;
                    if let Some(c) = &cur
                        && !c.deleted
                        && c.content_hash == put.content_hash
                    {
                        responses.push(ResponseEntry {
                            full_url: Some(format!("{}/{rtype}/{id}", ctx.base_url)),
                            resource: None,
                            response: EntryResponse {
                                status: "200 OK".into(),
                                location: Some(format!("{rtype}/{id}/_history/{}", c.version)),
                                etag: Some(format!("W/\"{}\"", c.version)),
                                last_modified: None,
                                outcome: None,
                            },
                        });
                        continue;
                    }
                    audit_items.push((put.meta.patient_id.clone(), format!("{rtype}/{id}/_history/{version}")));
                    responses.push(ResponseEntry {
                        full_url: Some(format!("{}/{rtype}/{id}", ctx.base_url)),
                        resource: None,
                        response: EntryResponse {
                            status: if cur.is_some() { "200 OK".into() } else { "201 Created".into() },
                            location: Some(format!("{rtype}/{id}/_history/{version}")),
                            etag: Some(format!("W/\"{version}\"")),
                            last_modified: Some(datetime::format_instant(now)),
                            outcome: None,
                        },
                    });
                    batch.puts.push(put);
                }
                TxOp::Delete { rtype, id } => {
                    let cur = self.store.current(rtype, &id)?;
                    match &cur {
                        Some(c)
                            if crate::access::Access::new(self, ctx)?
                                .decide(Operation::Read, &c.view())?
                                .is_allow() =>
                        {
                            if let Decision::Deny(r) =
                                crate::access::write_decision(&ctx.actor, Operation::Delete, &c.view())
                            {
                                return Err(ApiError::at(ErrorKind::Forbidden, entry_at(i), r.message_ja()));
                            }
                            audit_items.push((c.meta.patient_id.clone(), format!("{rtype}/{id}")));
                            batch.deletes.push(DeleteResource {
                                rtype,
                                id: id.clone(),
                                last_updated: now,
                                expect_version: Some(c.version),
                            });
                            responses.push(ResponseEntry {
                                full_url: None,
                                resource: None,
                                response: EntryResponse {
                                    status: "204 No Content".into(),
                                    location: None,
                                    etag: None,
                                    last_modified: None,
                                    outcome: None,
                                },
                            });
                        }
                        _ => responses.push(ResponseEntry {
                            full_url: None,
                            resource: None,
                            response: EntryResponse {
                                status: "404 Not Found".into(),
                                location: None,
                                etag: None,
                                last_modified: None,
                                outcome: None,
                            },
                        }),
                    }
                }
                TxOp::Get { url } => {
                    gets.push((i, url));
                    responses.push(ResponseEntry {
                        full_url: None,
                        resource: None,
                        response: EntryResponse {
                            status: "200 OK".into(),
                            location: None,
                            etag: None,
                            last_modified: None,
                            outcome: None,
                        },
                    });
                }
            }
        }
        let base = self.audit_record(ctx, AuditAction::Execute, "transaction", AuditOutcome::Success);
        batch.audit = audits_by_patient(&base, &audit_items);
        batch.audit.extend(submitted_audit);
        self.commit_delivering(ctx, batch, referrals)?;
        // Reads run after the writes, each through the gate with its own audit record.
        for (i, url) in gets {
            let (status, resource, outcome) = match self.get_url(ctx, &url) {
                Ok(v) => ("200 OK".to_owned(), Some(v), None),
                Err(e) => (crate::status_line(e.kind), None, Some(e.outcome())),
            };
            if let Some(r) = responses.get_mut(i) {
                r.response.status = status;
                r.resource = resource;
                r.response.outcome = outcome;
            }
        }
        drop(warnings);
        response_bundle("transaction-response", responses)
    }

    /// Resolves a conditional create's query to the matching ids the caller may see.
    fn conditional_match(
        &self,
        ctx: &Ctx,
        rtype: ResourceType,
        query: &str,
        at: &str,
    ) -> Result<Vec<(String, i64)>, ApiError> {
        let params = crate::parse_query(query.split_once('?').map_or(query, |(_, q)| q));
        let (filters, _) = crate::search::parse_params(rtype, &params)
            .map_err(|e| ApiError::at(ErrorKind::BadRequest, format!("{at}.request.ifNoneExist"), e.summary()))?;
        let q = musubi_store::SearchQuery {
            rtype,
            filters,
            scope: crate::access::Access::new(self, ctx)?.scope(rtype, None)?,
            sort: musubi_store::Sort::Id,
        };
        let rows = self.store.read(|r| r.search_rows(&q, 0, Some(2)))?;
        Ok(rows.into_iter().map(|r| (r.id, r.version)).collect())
    }

    /// Runs a GET entry (`Type/id` or `Type?query`), returning the resource or searchset.
    fn get_url(&self, ctx: &Ctx, url: &str) -> Result<Value, ApiError> {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let rtype: ResourceType = parts
            .first()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| ApiError::bad_request(format!("GET {url} のリソース型が不正です")))?;
        let text = match parts.as_slice() {
            [_] => self.search(ctx, rtype, &crate::parse_query(query))?.json,
            [_, id] => self.read(ctx, rtype, id, None)?.content,
            [_, id, "_history", v] => {
                let v: i64 = v.parse().map_err(|_| ApiError::bad_request(format!("バージョン {v:?} が不正です")))?;
                self.read(ctx, rtype, id, Some(v))?.content
            }
            _ => return Err(ApiError::bad_request(format!("GET {url} には対応していません"))),
        };
        serde_json::from_str(&text).map_err(ApiError::internal)
    }

    /// Each entry on its own; failures are reported per entry.
    pub fn batch(&self, ctx: &Ctx, bundle: Value) -> Result<String, ApiError> {
        let mut bundle = bundle;
        let entries = match bundle.get_mut("entry").map(Value::take) {
            None => Vec::new(),
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(ApiError::at(ErrorKind::BadRequest, "Bundle.entry", "entry は配列でなければなりません"));
            }
        };
        let mut out = Vec::with_capacity(entries.len());
        for (i, e) in entries.into_iter().enumerate() {
            let r = parse_entry(i, e).and_then(|(_, op)| match op {
                TxOp::Create { rtype: ResourceType::Bundle, body, .. } if is_referral_submission(&body) => {
                    // As at `POST /Bundle`: a submission, delivered to the addressee's inbox.
                    self.submit_bundle(ctx, body).map(|o| {
                        let status = if o.status == SubmitStatus::Created { "201 Created" } else { "200 OK" };
                        (status, None, Some(o))
                    })
                }
                TxOp::Create { rtype, body, .. } => self
                    .create(ctx, rtype, body)
                    .map(|w| (if w.created { "201 Created" } else { "200 OK" }, Some(w), None)),
                TxOp::Update { rtype, id, body, if_match } => self
                    .update(ctx, rtype, &id, body, if_match)
                    .map(|w| (if w.created { "201 Created" } else { "200 OK" }, Some(w), None)),
                TxOp::Delete { rtype, id } => self.delete(ctx, rtype, &id).map(|_| ("204 No Content", None, None)),
                TxOp::Get { url } => self.get_url(ctx, &url).map(|v| {
                    (
                        "200 OK",
                        Some(crate::write::WriteOutcome {
                            rtype: ResourceType::Bundle,
                            id: String::new(),
                            version: 0,
                            last_updated: 0,
                            content: v.to_string(),
                            created: false,
                            unchanged: true,
                            warnings: Vec::new(),
                        }),
                        None,
                    )
                }),
            });
            out.push(match r {
                Ok((status, _, Some(o))) => ResponseEntry {
                    full_url: o.bundle_id.as_ref().map(|id| format!("{}/Bundle/{id}", ctx.base_url)),
                    resource: None,
                    response: EntryResponse {
                        status: status.into(),
                        location: o.bundle_id.as_ref().map(|id| format!("Bundle/{id}")),
                        etag: None,
                        last_modified: None,
                        outcome: Some(o.outcome()),
                    },
                },
                Ok((status, Some(w), None)) if w.version > 0 => ResponseEntry {
                    full_url: Some(format!("{}/{}/{}", ctx.base_url, w.rtype, w.id)),
                    resource: None,
                    response: EntryResponse {
                        status: status.into(),
                        location: Some(format!("{}/{}/_history/{}", w.rtype, w.id, w.version)),
                        etag: Some(format!("W/\"{}\"", w.version)),
                        last_modified: Some(datetime::format_instant(w.last_updated)),
                        outcome: None,
                    },
                },
                Ok((status, Some(w), None)) => ResponseEntry {
                    full_url: None,
                    resource: serde_json::from_str(&w.content).ok(),
                    response: EntryResponse {
                        status: status.into(),
                        location: None,
                        etag: None,
                        last_modified: None,
                        outcome: None,
                    },
                },
                Ok((status, None, None)) => ResponseEntry {
                    full_url: None,
                    resource: None,
                    response: EntryResponse {
                        status: status.into(),
                        location: None,
                        etag: None,
                        last_modified: None,
                        outcome: None,
                    },
                },
                Err(e) => ResponseEntry {
                    full_url: None,
                    resource: None,
                    response: EntryResponse {
                        status: crate::status_line(e.kind),
                        location: None,
                        etag: None,
                        last_modified: None,
                        outcome: Some(e.outcome()),
                    },
                },
            });
        }
        response_bundle("batch-response", out)
    }

    /// Whether a Bundle posted at `/Bundle` is a JP-CLINS submission (it carries the national
    /// service's Bundle identifier) rather than a plain Bundle resource.
    pub fn is_submission(bundle: &Value) -> bool {
        bundle.pointer("/identifier/system").and_then(Value::as_str) == Some(systems::BUNDLE_IDENTIFIER)
            && matches!(bundle.get("type").and_then(Value::as_str), Some("collection" | "document"))
    }

    /// `POST /Bundle` with a JP-CLINS 5情報 collection Bundle or a document Bundle.
    pub fn submit_bundle(&self, ctx: &Ctx, bundle: Value) -> Result<SubmitOutcome, ApiError> {
        let key_hint =
            bundle.pointer("/identifier/value").and_then(Value::as_str).map(|k| format!("Bundle?identifier={k}"));
        let result = self.submit_inner(ctx, bundle);
        result.map_err(|e| self.refuse(ctx, AuditAction::Create, "submit-bundle", key_hint, e))
    }

    fn submit_inner(&self, ctx: &Ctx, bundle: Value) -> Result<SubmitOutcome, ApiError> {
        let persons = crate::prepare::Persons::new(&self.store);
        let planned = self.plan_submission(ctx, bundle, &persons, datetime::now_ms(), None, "Bundle")?;
        let Planned { outcome, batch, referrals, .. } = planned;
        if referrals.is_empty() && batch.puts.is_empty() && batch.deletes.is_empty() && batch.bundles.is_empty() {
            // Unchanged: only the access is recorded.
            self.audit(batch.audit)?;
        } else {
            self.commit_delivering(ctx, batch, referrals)?;
        }
        Ok(outcome)
    }

    /// Commits a batch with the referrals it delivers (in the same store transaction) and links
    /// the Patients it wrote to persons.
    fn commit_delivering(
        &self,
        ctx: &Ctx,
        batch: WriteBatch,
        referrals: Vec<musubi_store::ReferralRow>,
    ) -> Result<(), ApiError> {
        if referrals.is_empty() {
            self.commit_and_link(ctx, batch)?;
            return Ok(());
        }
        let written = crate::mpi::WrittenPatient::of(&batch.puts);
        self.store.commit_with_referrals(batch, referrals)?;
        self.link_written(ctx, written);
        Ok(())
    }

    /// A JP-CLINS submission made ready to commit: validated, filed under its source patient,
    /// compared with an earlier submission of the same identifier (unchanged, or replacing it),
    /// and — for a 診療情報提供書 — delivered to its addressee's inbox as
    /// [`Service::send_referral`] would (see [`Service::referral_delivery`]). `doc_id` is the id
    /// a new document gets (None: a new one); `at` is where the Bundle is in the request.
    pub(crate) fn plan_submission(
        &self,
        ctx: &Ctx,
        bundle: Value,
        persons: &crate::prepare::Persons,
        now: i64,
        doc_id: Option<String>,
        at: &str,
    ) -> Result<Planned, ApiError> {
        let issues = musubi_validate::Validator::shared().validate_bundle(&bundle);
        let mapped = to_outcome_issues(&issues, Some(at));
        if musubi_validate::has_errors(&issues) {
            return Err(ApiError { kind: ErrorKind::Unprocessable, issues: mapped });
        }
        let mut warnings: Vec<OutcomeIssue> =
            mapped.into_iter().filter(|i| i.severity == musubi_fhir::outcome::Severity::Warning).collect();
        let key = bundle.pointer("/identifier/value").and_then(Value::as_str).unwrap_or("").to_owned();
        let ident: BundleIdentifier = key.parse().map_err(|e: musubi_domain::DomainError| {
            ApiError::at(
                ErrorKind::Unprocessable,
                format!("{at}.identifier.value"),
                format!("Bundle 識別子が不正です: {e}"),
            )
        })?;
        let facility = resolve_facility(&ctx.actor, Some(ident.facility()), &format!("{at}.identifier"))?
            .unwrap_or(ident.facility());
        let kind = bundle.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
        let is_referral = kind == "document" && crate::referral::is_referral_document(&bundle);
        let content_hash = musubi_fhir::sha256_hex(bundle.to_string().as_bytes());
        let existing = self.store.read(|r| r.bundle_submission(&key))?;
        let mut referrals = Vec::new();
        if let Some(ex) = &existing {
            if ex.facility != facility.as_str() {
                return Err(ApiError::at(
                    ErrorKind::Forbidden,
                    format!("{at}.identifier"),
                    "この Bundle 識別子は別の医療機関が使用しています",
                ));
            }
            if ex.content_hash == content_hash {
                let members = self.store.read(|r| r.bundle_members(&key))?;
                let patient_id = members.iter().find_map(|m| m.meta.patient_id.clone()).unwrap_or_default();
                let stored: Vec<String> = members.iter().map(|m| m.key()).collect();
                let doc_version = members.iter().find(|m| Some(&m.id) == ex.bundle_id.as_ref()).map(|m| m.version);
                let mut a = self.audit_record(ctx, AuditAction::Update, "submit-bundle", AuditOutcome::Success);
                a.patient = Some(patient_id.clone()).filter(|p| !p.is_empty());
                a.entities = stored.clone();
                a.outcome_text = Some("unchanged".into());
                let mut batch = WriteBatch { audit: vec![a], ..Default::default() };
                // The same letter again: delivered now if it was not before (its addressee may
                // have been registered since), never twice.
                let mut referral_id = None;
                if is_referral
                    && let Some(bid) = &ex.bundle_id
                    && !patient_id.is_empty()
                {
                    let s = crate::referral::Submitted {
                        doc: &bundle,
                        key: &key,
                        sender: facility,
                        bundle_id: bid,
                        patient_id: &patient_id,
                        person_id: Some(persons.of(&patient_id)?),
                        now,
                        registered: ex.received,
                        at,
                    };
                    referral_id = self.deliver(ctx, &s, &mut batch, &mut referrals, &mut warnings, None)?;
                }
                return Ok(Planned {
                    outcome: SubmitOutcome {
                        status: SubmitStatus::Unchanged,
                        bundle_key: key,
                        kind,
                        patient_id,
                        stored,
                        bundle_id: ex.bundle_id.clone(),
                        referral_id,
                        warnings,
                    },
                    batch,
                    referrals,
                    doc_version,
                });
            }
            if is_referral && let Some(sent) = self.store.read(|r| r.referral_by_bundle_key(&key))? {
                // One letter, one identifier: what the addressee may already have read is not
                // changed under them (nor its signature's meaning).
                return Err(ApiError::at(
                    ErrorKind::Conflict,
                    format!("{at}.identifier"),
                    format!(
                        "Bundle 識別子 {key} の診療情報提供書は紹介状 {} として紹介先 {} に送信済みのため、置き換えられません。訂正した紹介状は新しい Bundle 識別子で送信してください",
                        sent.id, sent.addressee
                    ),
                ));
            }
        }

        let entries = bundle.get("entry").and_then(Value::as_array).cloned().unwrap_or_default();
        // The patient: the collection's first entry, or the document's Patient entry.
        let (patient_idx, patient) = entries
            .iter()
            .enumerate()
            .find_map(|(i, e)| {
                e.get("resource")
                    .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Patient"))
                    .map(|r| (i, r.clone()))
            })
            .ok_or_else(|| {
                ApiError::at(ErrorKind::Unprocessable, format!("{at}.entry"), "Bundle に Patient がありません")
            })?;
        let patient_full_url =
            entries.get(patient_idx).and_then(|e| e.get("fullUrl")).and_then(Value::as_str).map(str::to_owned);
        let mut batch = WriteBatch::default();
        let (patient_id, patient_put) =
            self.upsert_source_patient(ctx, facility, patient, now, &format!("{at}.entry[{patient_idx}].resource"))?;
        if let Some(p) = patient_put {
            batch.puts.push(p);
        }
        let mut stored = Vec::new();
        let mut bundle_id = None;
        let mut doc_version = None;
        let mut referral_id = None;
        let mut delivery_audit = WriteBatch::default();
        let insurance =
            classify::insurance_id(entries.get(patient_idx).and_then(|e| e.get("resource")).unwrap_or(&Value::Null))
                .map(str::to_owned);

        if kind == "collection" {
            let mut map: HashMap<String, String> = HashMap::new();
            if let Some(fu) = &patient_full_url {
                map.insert(fu.clone(), format!("Patient/{patient_id}"));
            }
            let mut ids = Vec::new();
            for (i, e) in entries.iter().enumerate() {
                if i == patient_idx {
                    ids.push(None);
                    continue;
                }
                let Some(r) = e.get("resource") else {
                    ids.push(None);
                    continue;
                };
                let t = r.get("resourceType").and_then(Value::as_str).unwrap_or("");
                let id = new_id();
                if let Some(fu) = e.get("fullUrl").and_then(Value::as_str) {
                    map.insert(fu.to_owned(), format!("{t}/{id}"));
                }
                ids.push(Some(id));
            }
            for (i, (e, id)) in entries.into_iter().zip(ids).enumerate() {
                let (Some(id), Some(mut r)) = (id, e.get("resource").cloned()) else { continue };
                let t = r.get("resourceType").and_then(Value::as_str).unwrap_or("");
                let rtype: ResourceType = t.parse().map_err(|_| {
                    ApiError::at(
                        ErrorKind::Unprocessable,
                        format!("{at}.entry[{i}].resource.resourceType"),
                        format!("リソース型 {t} には対応していません"),
                    )
                })?;
                rewrite_references(&mut r, &map);
                link_patient_by_identifier(&mut r, rtype, &patient_id, insurance.as_deref());
                let put = prepare(
                    Prep {
                        persons,
                        actor: &ctx.actor,
                        rtype,
                        id: id.clone(),
                        version: 1,
                        expect: Expect::Absent,
                        now,
                        bundle_key: Some(key.clone()),
                        at: format!("{at}.entry[{i}].resource"),
                    },
                    r,
                )?;
                stored.push(format!("{rtype}/{id}"));
                batch.puts.push(put);
            }
            if let Some(ex) = &existing {
                let old = self.store.read(|r| r.bundle_members(&ex.bundle_key))?;
                for m in old {
                    batch.deletes.push(DeleteResource {
                        rtype: m.rtype,
                        id: m.id,
                        last_updated: now,
                        expect_version: Some(m.version),
                    });
                }
            }
        } else {
            // A document is kept whole, as sent; a replacement is a new version of it.
            let (id, version, expect) = match existing.as_ref().and_then(|e| e.bundle_id.clone()) {
                Some(id) => match self.store.current(ResourceType::Bundle, &id)? {
                    Some(c) => (id, c.version + 1, Expect::Version(c.version)),
                    None => (id, 1, Expect::Absent),
                },
                None => (doc_id.unwrap_or_else(new_id), 1, Expect::Absent),
            };
            // The document is filed under its patient, and so under that patient's person (the
            // gate and the person's record go by the person).
            let person_id = persons.of(&patient_id)?;
            // A 診療情報提供書 goes to its addressee's inbox, as if sent through the referral API.
            let addressee = if is_referral {
                let s = crate::referral::Submitted {
                    doc: &bundle,
                    key: &key,
                    sender: facility,
                    bundle_id: &id,
                    patient_id: &patient_id,
                    person_id: Some(person_id.clone()),
                    now,
                    registered: now,
                    at,
                };
                let mut addressee = None;
                referral_id =
                    self.deliver(ctx, &s, &mut delivery_audit, &mut referrals, &mut warnings, Some(&mut addressee))?;
                addressee
            } else {
                None
            };
            let mut put = prepare(
                Prep {
                    persons,
                    actor: &ctx.actor,
                    rtype: ResourceType::Bundle,
                    id: id.clone(),
                    version,
                    expect,
                    now,
                    bundle_key: Some(key.clone()),
                    at: at.to_owned(),
                },
                bundle,
            )?;
            put.meta.person_id = Some(person_id);
            put.meta.patient_id = Some(patient_id.clone());
            if let Some(a) = addressee {
                crate::referral::file_as_referral(&mut put, crate::referral::referral_retention_end(now), Some(a));
            }
            stored.push(format!("Bundle/{id}"));
            bundle_id = Some(id);
            doc_version = Some(version);
            batch.puts.push(put);
        }
        batch.bundles.push(BundleOp::Put(BundleSubmission {
            bundle_key: key.clone(),
            facility: facility.to_string(),
            kind: kind.clone(),
            bundle_id: bundle_id.clone(),
            content_hash,
            received: now,
        }));
        let mut a = self.audit_record(
            ctx,
            if existing.is_some() { AuditAction::Update } else { AuditAction::Create },
            "submit-bundle",
            AuditOutcome::Success,
        );
        a.patient = Some(patient_id.clone());
        a.entities = stored.clone();
        a.query = Some(format!("Bundle?identifier={key}"));
        batch.audit.push(a);
        batch.audit.append(&mut delivery_audit.audit);
        Ok(Planned {
            outcome: SubmitOutcome {
                status: if existing.is_some() { SubmitStatus::Replaced } else { SubmitStatus::Created },
                bundle_key: key,
                kind,
                patient_id,
                stored,
                bundle_id,
                referral_id,
                warnings,
            },
            batch,
            referrals,
            doc_version,
        })
    }

    /// Delivers a submitted 診療情報提供書 (see [`Service::referral_delivery`]): a new inbox
    /// entry goes into `referrals` with its audit record in `batch`, and what the sender is told
    /// into `notes`; `addressee` receives the addressee of a new entry. Returns the referral's
    /// id when the letter is (now or already) in an inbox.
    fn deliver(
        &self,
        ctx: &Ctx,
        s: &crate::referral::Submitted<'_>,
        batch: &mut WriteBatch,
        referrals: &mut Vec<musubi_store::ReferralRow>,
        notes: &mut Vec<OutcomeIssue>,
        addressee: Option<&mut Option<musubi_domain::FacilityCode>>,
    ) -> Result<Option<String>, ApiError> {
        use crate::referral::Delivery;
        Ok(match self.referral_delivery(ctx, s)? {
            Delivery::New { row, audit, addressee: to, notes: n } => {
                let id = row.id.clone();
                referrals.push(*row);
                batch.audit.push(*audit);
                notes.extend(n);
                if let Some(slot) = addressee {
                    *slot = Some(to);
                }
                Some(id)
            }
            Delivery::Already { id, addressee } => {
                notes.push(OutcomeIssue {
                    severity: musubi_fhir::outcome::Severity::Information,
                    code: "informational",
                    expression: None,
                    diagnostics: format!(
                        "この診療情報提供書は紹介状 {id} として紹介先 {addressee} の受信箱に届いています"
                    ),
                    rule: None,
                });
                Some(id)
            }
            Delivery::NotDelivered(w) => {
                notes.push(w);
                None
            }
        })
    }

    /// Files a submitted Patient under the facility's source patient: found by the facility's
    /// local patient id, else by insurance identity within the facility; updated when it
    /// changed, created when new. Returns its id and the write, if any.
    pub(crate) fn upsert_source_patient(
        &self,
        ctx: &Ctx,
        facility: musubi_domain::FacilityCode,
        patient: Value,
        now: i64,
        at: &str,
    ) -> Result<(String, Option<PutResource>), ApiError> {
        let persons = crate::prepare::Persons::new(&self.store);
        let mut candidates = Vec::new();
        if let Some((f, local)) = classify::local_patient_id(&patient) {
            let system = format!("{}{}", systems::LOCAL_PATIENT_ID_PREFIX, f);
            candidates = self.store.read(|r| r.find_by_token(ResourceType::Patient, "identifier", &system, local))?;
        }
        if candidates.is_empty()
            && let Some(ins) = classify::insurance_id(&patient)
        {
            candidates = self
                .store
                .read(|r| r.find_by_token(ResourceType::Patient, "identifier", systems::INSURANCE_MEMBER_ID, ins))?;
        }
        let existing = candidates.into_iter().find(|c| c.meta.facility == Some(facility));
        let (id, version, expect) = match &existing {
            Some(c) => (c.id.clone(), c.version + 1, Expect::Version(c.version)),
            None => (new_id(), 1, Expect::Absent),
        };
        // The facility's system acts for that facility; an administrator files it there too.
        let filing_actor = match &ctx.actor {
            Actor::System { .. } => ctx.actor.clone(),
            other => other.clone(),
        };
        let mut put = prepare(
            Prep {
                persons: &persons,
                actor: &filing_actor,
                rtype: ResourceType::Patient,
                id: id.clone(),
                version,
                expect,
                now,
                bundle_key: None,
                at: at.to_owned(),
            },
            patient,
        )?;
        if put.meta.facility.is_none() {
            put.meta.facility = Some(facility);
        }
        if let Some(c) = existing
            && c.content_hash == put.content_hash
        {
            return Ok((id, None));
        }
        Ok((id, Some(put)))
    }

    /// `DELETE /Bundle?identifier=…`: removes a JP-CLINS submission and what it stored. When it
    /// is a delivered 診療情報提供書, the letter is withdrawn (取り下げ, see
    /// [`crate::referral`]) in the same transaction, with its attached 退院時サマリー.
    pub fn delete_bundle(&self, ctx: &Ctx, identifier: &str) -> Result<usize, ApiError> {
        let key = identifier
            .split_once('|')
            .map_or(identifier, |(sys, v)| if sys == systems::BUNDLE_IDENTIFIER || sys.is_empty() { v } else { "" })
            .to_owned();
        let result = (|| {
            if key.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "identifier の system は {} でなければなりません",
                    systems::BUNDLE_IDENTIFIER
                )));
            }
            let Some(sub) = self.store.read(|r| r.bundle_submission(&key))? else {
                return Err(ApiError::new(ErrorKind::NotFound, format!("Bundle 識別子 {key} の送信は見つかりません")));
            };
            if let Some(own) = ctx.actor.facility()
                && own.as_str() != sub.facility
            {
                return Err(ApiError::new(ErrorKind::NotFound, format!("Bundle 識別子 {key} の送信は見つかりません")));
            }
            let members = self.store.read(|r| r.bundle_members(&key))?;
            let now = datetime::now_ms();
            let mut batch = WriteBatch::default();
            let mut items = Vec::new();
            for m in &members {
                if let Decision::Deny(r) = crate::access::write_decision(&ctx.actor, Operation::Delete, &m.view()) {
                    return Err(ApiError::new(ErrorKind::Forbidden, r.message_ja()));
                }
                items.push((m.meta.patient_id.clone(), m.key()));
                batch.deletes.push(DeleteResource {
                    rtype: m.rtype,
                    id: m.id.clone(),
                    last_updated: now,
                    expect_version: Some(m.version),
                });
            }
            batch.bundles.push(BundleOp::Remove(key.clone()));
            let mut base = self.audit_record(ctx, AuditAction::Delete, "delete-bundle", AuditOutcome::Success);
            base.query = Some(format!("Bundle?identifier={key}"));
            batch.audit = audits_by_patient(&base, &items);
            // A delivered 診療情報提供書 is withdrawn (取り下げ) by its sender: the referral is
            // marked in the same transaction as the deletion of its document.
            match self.plan_withdrawal(ctx, &key, now, &mut batch)? {
                Some(w) => {
                    self.store.commit_withdrawing(batch, vec![w])?;
                }
                None => {
                    self.commit_and_link(ctx, batch)?;
                }
            }
            Ok(members.len())
        })();
        result.map_err(|e| {
            self.refuse(ctx, AuditAction::Delete, "delete-bundle", Some(format!("Bundle?identifier={key}")), e)
        })
    }
}

/// Whether a transaction entry's body is a JP-CLINS 診療情報提供書 submission (a document Bundle
/// with the national service's Bundle identifier and Composition type 57133-1).
fn is_referral_submission(body: &Value) -> bool {
    Service::is_submission(body) && crate::referral::is_referral_document(body)
}

/// Where a JP-CLINS resource names its patient only by insurance identifier
/// (`subject.identifier`), adds the literal reference to the filed Patient, keeping the
/// identifier as sent.
fn link_patient_by_identifier(r: &mut Value, rtype: ResourceType, patient_id: &str, insurance: Option<&str>) {
    for path in rtype.patient_paths() {
        let [field] = path else { continue };
        let Some(obj) = r.get_mut(*field).and_then(Value::as_object_mut) else { continue };
        if obj.contains_key("reference") {
            continue;
        }
        let matches = obj.get("identifier").is_some_and(|i| {
            i.get("system").and_then(Value::as_str) == Some(systems::INSURANCE_MEMBER_ID)
                && (insurance.is_none() || i.get("value").and_then(Value::as_str) == insurance)
        });
        if matches {
            obj.insert("reference".into(), Value::String(format!("Patient/{patient_id}")));
        }
    }
}
