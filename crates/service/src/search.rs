//! FHIR search: parameters parsed into a store query, run in the scope the gate derives (so
//! totals and pages count only what the caller may see), every returned row checked by the
//! gate again, `_include` of the patient gated the same way, one audit record per patient.
//!
//! Unknown parameters are an error rather than silently ignored: a search that quietly drops a
//! filter returns more patients' data than the caller asked for.

use std::collections::BTreeMap;

use musubi_domain::audit::AuditPurpose;
use musubi_domain::audit::{AuditAction, AuditOutcome};
use musubi_fhir::datetime;
use musubi_fhir::index::normalize_string;
use musubi_fhir::reference::parse_reference;
use musubi_fhir::{Interaction, ParamKind, ResourceType};
use musubi_gate::Operation;

use crate::access::Access;
use musubi_store::{AuditQuery, CurrentRow, Filter, SearchQuery, Sort, StoredResource, StrMatch, TokenMatch};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::paging::{BundleMeta, Link, count_param, offset_param, page_links};
use crate::params::parse_date_pred;
use crate::write::check_supported;
use crate::{ApiError, Ctx, Service};

/// A search result: the searchset Bundle as JSON text.
#[derive(Debug, Clone)]
pub struct SearchResult {
    /// The Bundle.
    pub json: String,
    /// How many matched (after the gate).
    pub total: i64,
}

/// Splits a parameter value on unescaped commas (`\,` is a literal comma).
fn split_values(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some(',' | '|' | '$' | '\\')) => {
                if let (Some(n), Some(last)) = (chars.next(), out.last_mut()) {
                    last.push(n);
                }
            }
            ',' => out.push(String::new()),
            other => {
                if let Some(last) = out.last_mut() {
                    last.push(other);
                }
            }
        }
    }
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

fn parse_token(v: &str) -> TokenMatch {
    match v.split_once('|') {
        None => TokenMatch::Code(v.to_owned()),
        Some(("", code)) => TokenMatch::NoSystem(code.to_owned()),
        Some((system, "")) => TokenMatch::System(system.to_owned()),
        Some((system, code)) => TokenMatch::SystemCode(system.to_owned(), code.to_owned()),
    }
}

fn patient_id_of(v: &str) -> Result<String, ApiError> {
    if let Some(r) = parse_reference(v) {
        if r.rtype == ResourceType::Patient {
            return Ok(r.id);
        }
        return Err(ApiError::bad_request(format!("patient には Patient の参照を指定してください: {v}")));
    }
    if musubi_fhir::is_valid_id(v) {
        return Ok(v.to_owned());
    }
    Err(ApiError::bad_request(format!("patient の値 {v:?} は Patient の id でも参照でもありません")))
}

/// What a parsed search asks for besides filters.
pub(crate) struct Controls {
    pub count: i64,
    pub offset: i64,
    pub sort: Sort,
    pub include_patient: bool,
    pub summary_count: bool,
}

/// Parses search parameters for `rtype`.
pub(crate) fn parse_params(
    rtype: ResourceType,
    params: &[(String, String)],
) -> Result<(Vec<Filter>, Controls), ApiError> {
    let mut filters = Vec::new();
    let mut controls = Controls {
        count: count_param(params)?,
        offset: offset_param(params)?,
        sort: Sort::LastUpdatedDesc,
        include_patient: false,
        summary_count: false,
    };
    for (raw_name, value) in params {
        let (name, modifier) = match raw_name.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (raw_name.as_str(), None),
        };
        match name {
            // Controls that change no result set: accepted (and `_elements` answered with whole
            // resources, which FHIR allows). `_totalMethod` is what several clients (fhirpy)
            // send with `_count=0` to ask for a count.
            "_count" | "_offset" | "_format" | "_pretty" | "_total" | "_totalMethod" | "_elements" => continue,
            "_sort" => {
                controls.sort = match value.as_str() {
                    "-date" => Sort::DateDesc,
                    "date" => Sort::DateAsc,
                    "_lastUpdated" => Sort::LastUpdatedAsc,
                    "-_lastUpdated" => Sort::LastUpdatedDesc,
                    "_id" => Sort::Id,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "_sort={other} は使えません（date, -date, _lastUpdated, -_lastUpdated, _id）"
                        )));
                    }
                };
                continue;
            }
            "_summary" => {
                match value.as_str() {
                    "count" => controls.summary_count = true,
                    "false" => {}
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "_summary={other} には対応していません（count, false）"
                        )));
                    }
                }
                continue;
            }
            "_include" => {
                let ok = value == "*"
                    || value.split(':').collect::<Vec<_>>().as_slice() == [rtype.as_str(), "patient"]
                    || (value.split(':').collect::<Vec<_>>().as_slice() == [rtype.as_str(), "subject"]
                        && rtype.search_param("subject").is_some());
                if !ok || rtype.patient_paths().is_empty() {
                    return Err(ApiError::bad_request(format!(
                        "_include={value} には対応していません（{}:patient のみ）",
                        rtype.as_str()
                    )));
                }
                controls.include_patient = true;
                continue;
            }
            "_id" => {
                filters.push(Filter::Id(split_values(value)));
                continue;
            }
            "_lastUpdated" => {
                filters.push(Filter::LastUpdated(parse_date_pred("_lastUpdated", value)?));
                continue;
            }
            _ => {}
        }
        let Some(def) = rtype.search_param(name) else {
            let supported: Vec<&str> = rtype.search_params().iter().map(|p| p.name).collect();
            return Err(ApiError::bad_request(format!(
                "{} では検索パラメータ {name} に対応していません（対応: _id, _lastUpdated, {}）",
                rtype.as_str(),
                supported.join(", ")
            )));
        };
        let bad_modifier = |m: &str| ApiError::bad_request(format!("{name}:{m} の修飾子には対応していません"));
        let values = split_values(value);
        if values.is_empty() {
            return Err(ApiError::bad_request(format!("{name} の値が空です")));
        }
        match def.kind {
            ParamKind::Token => {
                let negate = match modifier {
                    None => false,
                    Some("not") => true,
                    Some(m) => return Err(bad_modifier(m)),
                };
                filters.push(Filter::Token {
                    param: def.name,
                    any: values.iter().map(|v| parse_token(v)).collect(),
                    negate,
                });
            }
            ParamKind::Reference => {
                let mut targets = Vec::new();
                for v in &values {
                    let key = match (parse_reference(v), modifier) {
                        (Some(r), None) => r.key(),
                        (None, Some(t)) if t.parse::<ResourceType>().is_ok() && musubi_fhir::is_valid_id(v) => {
                            format!("{t}/{v}")
                        }
                        (None, None)
                            if musubi_fhir::is_valid_id(v) && matches!(def.name, "subject" | "beneficiary") =>
                        {
                            format!("Patient/{v}")
                        }
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "{name} の値 {v:?} は Type/id 形式の参照ではありません"
                            )));
                        }
                    };
                    targets.push(key);
                }
                filters.push(Filter::Ref { param: def.name, any: targets });
            }
            ParamKind::Patient => {
                if let Some(m) = modifier
                    && m != "Patient"
                {
                    return Err(bad_modifier(m));
                }
                filters.push(Filter::Patient(values.iter().map(|v| patient_id_of(v)).collect::<Result<_, _>>()?));
            }
            ParamKind::Date => {
                if modifier.is_some() || values.len() > 1 {
                    return Err(ApiError::bad_request(format!(
                        "{name} には修飾子やカンマ区切りの複数値は使えません（範囲は {name}=ge…&{name}=lt… のように指定）"
                    )));
                }
                filters.push(Filter::Date { param: def.name, pred: parse_date_pred(name, value)? });
            }
            ParamKind::String => {
                let any = values
                    .iter()
                    .map(|v| {
                        let n = normalize_string(v);
                        match modifier {
                            None => Ok(StrMatch::StartsWith(n)),
                            Some("exact") => Ok(StrMatch::Exact(n)),
                            Some("contains") => Ok(StrMatch::Contains(n)),
                            Some(m) => Err(bad_modifier(m)),
                        }
                    })
                    .collect::<Result<_, _>>()?;
                filters.push(Filter::Str { param: def.name, any });
            }
        }
    }
    Ok((filters, controls))
}

/// What the query string of a search asks for, parsed (see [`parse_search`]).
#[derive(Debug, Clone, PartialEq)]
pub enum SearchRequest {
    /// A search of a served resource type: its filters (ANDed), page size and offset.
    Resources {
        /// The filters.
        filters: Vec<Filter>,
        /// `_count`.
        count: i64,
        /// `_offset`.
        offset: i64,
    },
    /// A search of the audit trail (`AuditEvent`).
    AuditEvents {
        /// The filters.
        query: AuditQuery,
        /// `_count`.
        count: i64,
        /// `_offset`.
        offset: i64,
    },
}

/// Parses the query string of `GET /fhir/{rtype}?…` as a search does (percent-decoding with
/// [`crate::parse_query`], then the search parameters), without the store, the gate or the
/// audit: a pure function of its input, for tests and the `search` fuzz target. An unknown
/// parameter, modifier or value is the same 400 [`Service::search`] answers.
pub fn parse_search(rtype: ResourceType, query: &str) -> Result<SearchRequest, ApiError> {
    let params = crate::parse_query(query);
    if rtype == ResourceType::AuditEvent {
        let q = crate::audit_event::audit_query(&params)?;
        return Ok(SearchRequest::AuditEvents {
            query: q,
            count: count_param(&params)?,
            offset: offset_param(&params)?,
        });
    }
    check_supported(rtype, Interaction::SearchType)?;
    let (filters, c) = parse_params(rtype, &params)?;
    Ok(SearchRequest::Resources { filters, count: c.count, offset: c.offset })
}

#[derive(Serialize)]
struct SearchBundle<'a> {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    id: String,
    meta: BundleMeta,
    #[serde(rename = "type")]
    kind: &'static str,
    total: i64,
    link: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<SearchEntry<'a>>,
}

#[derive(Serialize)]
struct SearchEntry<'a> {
    #[serde(rename = "fullUrl")]
    full_url: String,
    resource: &'a RawValue,
    search: SearchMode,
}

#[derive(Serialize)]
struct SearchMode {
    mode: &'static str,
}

fn raw(s: &StoredResource) -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string(s.content.clone().unwrap_or_else(|| "{}".into()))
        .map_err(|e| ApiError::internal(format!("stored JSON of {}/{}: {e}", s.rtype, s.id)))
}

impl Service {
    /// `GET [type]?…` / `POST [type]/_search`.
    pub fn search(
        &self,
        ctx: &Ctx,
        rtype: ResourceType,
        params: &[(String, String)],
    ) -> Result<SearchResult, ApiError> {
        if rtype == ResourceType::AuditEvent {
            return self.search_audit_events(ctx, params);
        }
        let query_text = params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let parsed = check_supported(rtype, Interaction::SearchType).and_then(|_| parse_params(rtype, params));
        let (filters, c) = match parsed {
            Ok(p) => p,
            Err(e) => {
                let mut a = self.audit_record(ctx, AuditAction::Read, "search-type", AuditOutcome::MinorFailure);
                a.query = Some(format!("{rtype}?{query_text}"));
                a.outcome_text = Some(e.summary());
                self.audit(vec![a])?;
                return Err(e);
            }
        };
        // A search about one patient is decided with that person's context (consent, care
        // relationship, emergency access); the person is loaded before the snapshot.
        let access = Access::new(self, ctx)?;
        let patient = filters.iter().find_map(|f| match f {
            Filter::Patient(ids) if ids.len() == 1 => ids.first().cloned(),
            Filter::Ref { param: "subject" | "beneficiary", any } if any.len() == 1 => {
                any.first().and_then(|t| t.strip_prefix("Patient/")).map(str::to_owned)
            }
            _ => None,
        });
        let person = match (&patient, matches!(ctx.actor, musubi_gate::Actor::User(_))) {
            (Some(p), true) => {
                let pid = p.clone();
                self.store.read(|r| r.person_of_patient(&pid))?
            }
            _ => None,
        };
        if let Some(p) = &person {
            access.person(p)?;
        }
        let q = SearchQuery { rtype, filters, scope: access.scope(rtype, person.as_deref())?, sort: c.sort };
        let (total, page, included) = self.store.snapshot(|r| {
            let total = r.search_count(&q)?;
            let rows =
                if c.summary_count || c.count == 0 { Vec::new() } else { r.search_rows(&q, c.offset, Some(c.count))? };
            let mut page = Vec::with_capacity(rows.len());
            for row in rows {
                let content = r.version(row.rtype, &row.id, Some(row.version))?;
                page.push((row, content));
            }
            let mut included: Vec<(CurrentRow, Option<StoredResource>)> = Vec::new();
            if c.include_patient {
                let mut seen = std::collections::BTreeSet::new();
                for (row, _) in &page {
                    if let Some(p) = &row.meta.patient_id {
                        if rtype == ResourceType::Patient || !seen.insert(p.clone()) {
                            continue;
                        }
                        if let Some(cur) = r.current(ResourceType::Patient, p)? {
                            // An included patient the caller may not see is left out, silently.
                            if !cur.deleted && access.decide_loaded(Operation::Read, &cur.view()).is_allow() {
                                let content = r.version(ResourceType::Patient, p, Some(cur.version))?;
                                included.push((cur, content));
                            }
                        }
                    }
                }
            }
            Ok((total, page, included))
        })?;
        let mut emergency = None;
        for (row, _) in &page {
            let d = access.decide_loaded(Operation::Read, &row.view());
            if let Some(r) = d.emergency_reason() {
                emergency = Some(r.to_owned());
            }
            if !d.is_allow() {
                return Err(ApiError::internal(format!(
                    "search row {}/{} outside the gate's decision",
                    row.rtype, row.id
                )));
            }
        }
        // One audit record per patient whose data was returned, so each patient's access
        // history shows it; one without patient for the rest (and for empty results).
        let mut by_patient: BTreeMap<Option<String>, (Option<String>, Vec<String>)> = BTreeMap::new();
        for (row, _) in page.iter().chain(included.iter()) {
            let e = by_patient
                .entry(row.meta.patient_id.clone())
                .or_insert_with(|| (row.meta.person_id.clone(), Vec::new()));
            e.1.push(format!("{}/{}/_history/{}", row.rtype, row.id, row.version));
        }
        if by_patient.is_empty() {
            by_patient.insert(patient.clone(), (person.clone(), Vec::new()));
        }
        let records = by_patient
            .into_iter()
            .map(|(patient, (person, entities))| {
                let mut a = self.audit_record(ctx, AuditAction::Read, "search-type", AuditOutcome::Success);
                a.query = Some(format!("{rtype}?{query_text}"));
                if let Some(r) = &emergency {
                    a.purpose = AuditPurpose::Emergency(r.clone());
                }
                a.person = person;
                a.patient = patient;
                a.entities = entities;
                a
            })
            .collect();
        self.audit(records)?;

        let mut raws = Vec::with_capacity(page.len() + included.len());
        for (row, content) in page.iter().chain(included.iter()) {
            let Some(content) = content else { continue };
            raws.push((row, raw(content)?));
        }
        let n_match = page.len();
        let entry = raws
            .iter()
            .enumerate()
            .map(|(i, (row, raw))| SearchEntry {
                full_url: format!("{}/{}/{}", ctx.base_url, row.rtype, row.id),
                resource: raw,
                search: SearchMode { mode: if i < n_match { "match" } else { "include" } },
            })
            .collect();
        let b = SearchBundle {
            resource_type: "Bundle",
            id: crate::prepare::new_id(),
            meta: BundleMeta { last_updated: datetime::format_instant(datetime::now_ms()) },
            kind: "searchset",
            total,
            link: page_links(&format!("{}/{}", ctx.base_url, rtype), params, c.offset, c.count, total),
            entry,
        };
        Ok(SearchResult { json: serde_json::to_string(&b).map_err(ApiError::internal)?, total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use musubi_store::{DatePred, DatePrefix};

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn parses_tokens_dates_and_controls() {
        let (f, c) = parse_params(
            ResourceType::Observation,
            &p(&[
                ("patient", "Patient/p1"),
                ("code", "http://loinc.org|718-7,|x"),
                ("date", "ge2024-01-01"),
                ("_sort", "-date"),
                ("_count", "10"),
                ("_include", "Observation:patient"),
            ]),
        )
        .unwrap();
        assert_eq!(f[0], Filter::Patient(vec!["p1".into()]));
        assert_eq!(
            f[1],
            Filter::Token {
                param: "code",
                any: vec![
                    TokenMatch::SystemCode("http://loinc.org".into(), "718-7".into()),
                    TokenMatch::NoSystem("x".into())
                ],
                negate: false
            }
        );
        assert!(matches!(f[2], Filter::Date { param: "date", pred: DatePred { prefix: DatePrefix::Ge, .. } }));
        assert_eq!(c.sort, Sort::DateDesc);
        assert_eq!(c.count, 10);
        assert!(c.include_patient);
    }

    #[test]
    fn rejects_unknown_and_unsupported() {
        for bad in [
            ("foo", "1"),
            ("code:text", "x"),
            ("date", "2024-13-01"),
            ("date", "xx2024"),
            ("_sort", "code"),
            ("_include", "Observation:performer"),
            ("_count", "-1"),
            ("subject", "abc def"),
        ] {
            assert!(parse_params(ResourceType::Observation, &p(&[bad])).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn escaped_commas() {
        assert_eq!(split_values(r"a\,b,c"), vec!["a,b", "c"]);
    }

    #[test]
    fn a_query_string_parses_as_a_search_does() {
        let parsed = parse_search(
            ResourceType::Observation,
            "patient=Patient%2Fp1&code=http%3A%2F%2Floinc.org%7C718-7&date=ge2024-01-01&_count=10&_offset=20",
        )
        .unwrap();
        let SearchRequest::Resources { filters, count, offset } = parsed else { panic!("{parsed:?}") };
        assert_eq!(filters[0], Filter::Patient(vec!["p1".into()]));
        assert!(matches!(&filters[1], Filter::Token { param: "code", any, negate: false }
            if any == &vec![TokenMatch::SystemCode("http://loinc.org".into(), "718-7".into())]));
        assert_eq!((count, offset), (10, 20));
        let e = parse_search(ResourceType::Observation, "foo=1").unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::BadRequest);
        let audit = parse_search(ResourceType::AuditEvent, "date=gt2024-01-01&patient=Patient/p1").unwrap();
        let SearchRequest::AuditEvents { query, .. } = audit else { panic!("{audit:?}") };
        assert_eq!(query.patient.as_deref(), Some("p1"));
        assert!(parse_search(ResourceType::AuditEvent, "outcome=0&bogus=1").is_err());
    }

    #[test]
    fn extreme_offsets_and_dates_do_not_overflow() {
        assert!(parse_search(ResourceType::Observation, "_offset=9223372036854775807").is_ok());
        for q in [
            "date=gt9999-12-31T23:59:59.999Z",
            "date=lt0000-01-01",
            "date=sa9999",
            "date=eb0000",
            "date=2024-01-01T10:00-128:00",
            "date=2024-01-01T10:00%2B255:255",
            "date=2024-01-01T300:99:99.9999",
        ] {
            let _ = parse_search(ResourceType::AuditEvent, q);
            let _ = parse_search(ResourceType::Observation, q);
        }
    }
}
