//! The routes of the FHIR API and the translation between HTTP and the service.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use musubi_fhir::ResourceType;
use musubi_service::{ApiError, ErrorKind, ReadOutcome, Service, WriteOutcome, parse_query};
use serde_json::Value;

use crate::AppState;
use crate::edge::{Authed, HttpError, Result, base_url_of, fhir, read_body};

fn http_date(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    httpdate::fmt_http_date(t)
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

fn check_accept(headers: &HeaderMap, query: &[(String, String)]) -> Result<()> {
    if let Some((_, f)) = query.iter().find(|(k, _)| k == "_format")
        && !matches!(f.as_str(), "json" | "application/json" | "application/fhir+json")
    {
        return Err(
            ApiError::new(ErrorKind::NotAcceptable, format!("_format={f} には対応していません（JSON のみ）")).into()
        );
    }
    if let Some(a) = headers.get(header::ACCEPT).and_then(|h| h.to_str().ok()) {
        let ok = a.split(',').any(|m| {
            let m = m.split(';').next().unwrap_or("").trim();
            m.is_empty() || m == "*/*" || m == "application/*" || m.ends_with("json")
        });
        if !ok {
            return Err(ApiError::new(ErrorKind::NotAcceptable, "JSON（application/fhir+json）のみ返せます").into());
        }
    }
    Ok(())
}

fn check_json_content_type(headers: &HeaderMap) -> Result<()> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime == "application/fhir+json" || mime == "application/json" {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!("Content-Type {ct:?} には対応していません（application/fhir+json）"),
        )
        .into())
    }
}

async fn json_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Value> {
    check_json_content_type(headers)?;
    let bytes = read_body(state, headers, body).await?;
    parse_json(&bytes)
}

fn parse_json(bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        HttpError(ApiError::at(
            ErrorKind::BadRequest,
            format!("line {} column {}", e.line(), e.column()),
            format!("JSON の構文エラー: {e}（{} 行 {} 列）", e.line(), e.column()),
        ))
    })
}

fn rtype_of(s: &str) -> Result<ResourceType> {
    s.parse::<ResourceType>()
        .map_err(|_| HttpError(ApiError::new(ErrorKind::NotFound, format!("リソース型 {s} には対応していません"))))
}

fn query_pairs(q: Option<String>) -> Vec<(String, String)> {
    q.map(|q| parse_query(&q)).unwrap_or_default()
}

fn prefer(headers: &HeaderMap) -> &str {
    headers
        .get("prefer")
        .and_then(|h| h.to_str().ok())
        .and_then(|p| p.split(',').find_map(|x| x.trim().strip_prefix("return=")))
        .unwrap_or("representation")
}

fn write_response(w: WriteOutcome, base: &str, headers: &HeaderMap) -> Response {
    let status = if w.created { StatusCode::CREATED } else { StatusCode::OK };
    let body = match prefer(headers) {
        "minimal" => String::new(),
        "OperationOutcome" => {
            let mut issues = w.warnings.clone();
            if issues.is_empty() {
                issues.push(musubi_fhir::outcome::OutcomeIssue {
                    severity: musubi_fhir::outcome::Severity::Information,
                    code: "informational",
                    expression: None,
                    diagnostics: "正常に処理しました".into(),
                    rule: None,
                });
            }
            musubi_fhir::outcome::operation_outcome(&issues).to_string()
        }
        _ => w.content,
    };
    let mut r = fhir(status, body);
    let h = r.headers_mut();
    set(h, header::ETAG, format!("W/\"{}\"", w.version));
    set(h, header::LAST_MODIFIED, http_date(w.last_updated));
    set(h, header::LOCATION, format!("{base}/{}/{}/_history/{}", w.rtype, w.id, w.version));
    r
}

fn read_response(r: ReadOutcome) -> Response {
    let mut resp = fhir(StatusCode::OK, r.content);
    let h = resp.headers_mut();
    set(h, header::ETAG, format!("W/\"{}\"", r.version));
    set(h, header::LAST_MODIFIED, http_date(r.last_updated));
    resp
}

/// The CapabilityStatement: answered without a token (discovery; it holds no patient data and
/// says in `rest.security` how to authenticate).
async fn metadata(State(state): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Result<Response> {
    check_accept(&headers, &query_pairs(q))?;
    let cs = musubi_service::capability_statement(&base_url_of(&state, &headers), env!("CARGO_PKG_VERSION"));
    Ok(fhir(StatusCode::OK, cs.to_string()))
}

/// `/.well-known/smart-configuration`, without a token: what a SMART client looks up first.
async fn smart_configuration(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = base_url_of(&state, &headers);
    let mut r = (StatusCode::OK, musubi_service::smart_configuration(&base).to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    r
}

pub(crate) async fn system_post(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    check_accept(&headers, &[])?;
    let v = json_body(&state, &headers, body).await?;
    let out = state.blocking(move |svc: &Service| svc.process_bundle(&ctx, v)).await?;
    Ok(fhir(StatusCode::OK, out))
}

async fn system_history(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let params = query_pairs(q);
    check_accept(&headers, &params)?;
    let out = state.blocking(move |svc| svc.history(&ctx, None, None, &params)).await?;
    Ok(fhir(StatusCode::OK, out))
}

async fn type_get(
    State(state): State<AppState>,
    Path(t): Path<String>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    let params = query_pairs(q);
    check_accept(&headers, &params)?;
    let out = state.blocking(move |svc| svc.search(&ctx, rtype, &params)).await?;
    Ok(fhir(StatusCode::OK, out.json))
}

async fn type_search_post(
    State(state): State<AppState>,
    Path(t): Path<String>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "_search の本文は application/x-www-form-urlencoded でなければなりません",
        )
        .into());
    }
    let bytes = read_body(&state, &headers, body).await?;
    let mut params = query_pairs(q);
    params.extend(parse_query(&String::from_utf8_lossy(&bytes)));
    check_accept(&headers, &params)?;
    let out = state.blocking(move |svc| svc.search(&ctx, rtype, &params)).await?;
    Ok(fhir(StatusCode::OK, out.json))
}

async fn type_post(
    State(state): State<AppState>,
    Path(t): Path<String>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    check_accept(&headers, &[])?;
    let v = json_body(&state, &headers, body).await?;
    let base = ctx.base_url.clone();
    if rtype == ResourceType::Bundle && Service::is_submission(&v) {
        let out = state.blocking(move |svc| svc.submit_bundle(&ctx, v)).await?;
        let status = match out.status {
            musubi_service::SubmitStatus::Created => StatusCode::CREATED,
            _ => StatusCode::OK,
        };
        let mut r = fhir(status, out.outcome().to_string());
        if let Some(id) = &out.bundle_id {
            set(r.headers_mut(), header::LOCATION, format!("{base}/Bundle/{id}"));
        }
        return Ok(r);
    }
    if rtype == ResourceType::Bundle && matches!(v.get("type").and_then(Value::as_str), Some("transaction" | "batch")) {
        return Err(ApiError::at(
            ErrorKind::BadRequest,
            "Bundle.type",
            "transaction / batch は POST [base]（/fhir）に送ってください",
        )
        .into());
    }
    let h = headers.clone();
    let out = state.blocking(move |svc| svc.create(&ctx, rtype, v)).await?;
    Ok(write_response(out, &base, &h))
}

async fn type_delete(
    State(state): State<AppState>,
    Path(t): Path<String>,
    Authed(ctx): Authed,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    let params = query_pairs(q);
    match (rtype, params.as_slice()) {
        (ResourceType::Bundle, [(k, v)]) if k == "identifier" => {
            let v = v.clone();
            let n = state.blocking(move |svc| svc.delete_bundle(&ctx, &v)).await?;
            let oo = musubi_fhir::outcome::operation_outcome(&[musubi_fhir::outcome::OutcomeIssue {
                severity: musubi_fhir::outcome::Severity::Information,
                code: "informational",
                expression: None,
                diagnostics: format!("Bundle の送信を削除しました（{n} 件）"),
                rule: None,
            }]);
            Ok(fhir(StatusCode::OK, oo.to_string()))
        }
        _ => {
            Err(ApiError::new(ErrorKind::MethodNotAllowed, "条件付き削除は Bundle?identifier=… のみ対応しています")
                .into())
        }
    }
}

async fn type_history(
    State(state): State<AppState>,
    Path(t): Path<String>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    let params = query_pairs(q);
    check_accept(&headers, &params)?;
    let out = state.blocking(move |svc| svc.history(&ctx, Some(rtype), None, &params)).await?;
    Ok(fhir(StatusCode::OK, out))
}

async fn instance_get(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    if rtype == ResourceType::Patient && id.as_str() == "$everything" {
        return Err(ApiError::bad_request("Patient/[id]/$everything の形で指定してください").into());
    }
    check_accept(&headers, &query_pairs(q))?;
    let out = state.blocking(move |svc| svc.read(&ctx, rtype, &id, None)).await?;
    Ok(read_response(out))
}

async fn instance_put(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    check_accept(&headers, &[])?;
    let v = json_body(&state, &headers, body).await?;
    let if_match = match headers.get(header::IF_MATCH).and_then(|h| h.to_str().ok()) {
        Some(m) => Some(musubi_service::etag_version(m).ok_or_else(|| {
            HttpError(ApiError::bad_request(format!("If-Match の値 {m:?} が不正です（W/\"バージョン\"）")))
        })?),
        None => None,
    };
    let base = ctx.base_url.clone();
    let h = headers.clone();
    let out = state.blocking(move |svc| svc.update(&ctx, rtype, &id, v, if_match)).await?;
    Ok(write_response(out, &base, &h))
}

async fn instance_delete(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    Authed(ctx): Authed,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    let v = state.blocking(move |svc| svc.delete(&ctx, rtype, &id)).await?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Some(v) = v {
        set(r.headers_mut(), header::ETAG, format!("W/\"{v}\""));
    }
    Ok(r)
}

async fn instance_history(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    let params = query_pairs(q);
    check_accept(&headers, &params)?;
    let out = state.blocking(move |svc| svc.history(&ctx, Some(rtype), Some(&id), &params)).await?;
    Ok(fhir(StatusCode::OK, out))
}

async fn vread(
    State(state): State<AppState>,
    Path((t, id, vid)): Path<(String, String, String)>,
    Authed(ctx): Authed,
    headers: HeaderMap,
) -> Result<Response> {
    let rtype = rtype_of(&t)?;
    check_accept(&headers, &[])?;
    let vid: i64 = vid
        .parse()
        .map_err(|_| HttpError(ApiError::new(ErrorKind::NotFound, format!("バージョン {vid:?} は見つかりません"))))?;
    let out = state.blocking(move |svc| svc.read(&ctx, rtype, &id, Some(vid))).await?;
    Ok(read_response(out))
}

async fn everything(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    check_accept(&headers, &query_pairs(q))?;
    let out = state.blocking(move |svc| svc.everything(&ctx, &id)).await?;
    Ok(fhir(StatusCode::OK, out))
}

async fn pix(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let params = query_pairs(q);
    check_accept(&headers, &params)?;
    let source = params
        .iter()
        .find(|(k, _)| k == "sourceIdentifier")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| HttpError(ApiError::bad_request("sourceIdentifier が必要です（system|value）")))?;
    let targets: Vec<String> = params.iter().filter(|(k, _)| k == "targetSystem").map(|(_, v)| v.clone()).collect();
    let out = state.blocking(move |svc| svc.pix(&ctx, &source, &targets)).await?;
    Ok(fhir(StatusCode::OK, out.to_string()))
}

async fn pdq_match(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    check_accept(&headers, &[])?;
    let v = json_body(&state, &headers, body).await?;
    if v["resourceType"] != "Parameters" {
        return Err(
            ApiError::at(ErrorKind::BadRequest, "resourceType", "$match には Parameters を送ってください").into()
        );
    }
    let params = v["parameter"].as_array().cloned().unwrap_or_default();
    let patient = params.iter().find(|p| p["name"] == "resource").map(|p| p["resource"].clone()).ok_or_else(|| {
        HttpError(ApiError::at(ErrorKind::BadRequest, "Parameters.parameter", "resource（Patient）が必要です"))
    })?;
    let count =
        params.iter().find(|p| p["name"] == "count").and_then(|p| p["valueInteger"].as_u64()).unwrap_or(10).min(100)
            as usize;
    let only_certain = params
        .iter()
        .find(|p| p["name"] == "onlyCertainMatches")
        .and_then(|p| p["valueBoolean"].as_bool())
        .unwrap_or(false);
    let out = state.blocking(move |svc| svc.pdq_match(&ctx, &patient, count, only_certain)).await?;
    Ok(fhir(StatusCode::OK, out.to_string()))
}

/// The FHIR API's routes (nested under `/fhir`).
pub(crate) fn fhir_routes() -> Router<AppState> {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/.well-known/smart-configuration", get(smart_configuration))
        .route("/", post(system_post))
        .route("/_history", get(system_history))
        .route("/{rtype}", get(type_get).post(type_post).delete(type_delete))
        .route("/{rtype}/_search", post(type_search_post))
        .route("/{rtype}/_history", get(type_history))
        .route("/{rtype}/{id}", get(instance_get).put(instance_put).delete(instance_delete))
        .route("/{rtype}/{id}/_history", get(instance_history))
        .route("/Patient/{id}/$everything", get(everything))
        .route("/Patient/$ihe-pix", get(pix))
        .route("/Patient/$match", post(pdq_match))
        .route("/{rtype}/{id}/_history/{vid}", get(vread))
        .method_not_allowed_fallback(crate::edge::method_not_allowed)
}
