//! The CapabilityStatement, built from the same type table the router and search use, so it
//! says exactly what works.

use musubi_fhir::{ParamKind, ResourceType};
use serde_json::{Value, json};

/// How to authenticate, as `rest.security.description` says it.
const SECURITY_DESCRIPTION: &str = "Every request except GET [base]/metadata and GET [base]/.well-known/smart-configuration \
needs Authorization: Bearer <token>; without one, or with an invalid or revoked one, the answer is 401 with \
WWW-Authenticate: Bearer. Facility systems use a token the network operator issues (musubi token issue); it reads and \
writes its own facility's data. People (clinicians, patients, proxies) log in with a password (POST /api/login) and a \
one-time code (POST /api/login/totp); the session token returned is the bearer token (the web pages carry it in an \
HttpOnly cookie, and their changes need the page's CSRF token). There is no OAuth authorization server: SMART app \
launch is not supported.";

/// `/.well-known/smart-configuration` (SMART App Launch 2.x discovery). Musubi runs no OAuth
/// authorization server, so it lists no endpoints and no capabilities; the document exists so a
/// SMART client finds that out without a token, and points to the CapabilityStatement.
pub fn smart_configuration(base_url: &str) -> Value {
    json!({
        "capabilities": [],
        "grant_types_supported": [],
        "code_challenge_methods_supported": [],
        "scopes_supported": [],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": [],
        "authentication": SECURITY_DESCRIPTION,
        "capability_statement": format!("{}/metadata", base_url.trim_end_matches('/')),
    })
}

/// The server's CapabilityStatement.
pub fn capability_statement(base_url: &str, software_version: &str) -> Value {
    let resources: Vec<Value> = ResourceType::ALL
        .iter()
        .map(|t| {
            let mut params: Vec<Value> = vec![
                json!({"name": "_id", "type": "token", "documentation": "Logical id"}),
                json!({"name": "_lastUpdated", "type": "date", "documentation": "When last changed"}),
            ];
            params.extend(t.search_params().iter().map(|p| {
                let mut v = json!({"name": p.name, "type": p.kind.fhir_type(), "documentation": p.doc});
                if p.kind == ParamKind::Patient {
                    v["documentation"] = json!(format!("{} (Patient/id or id)", p.doc));
                }
                v
            }));
            let mut r = json!({
                "type": t.as_str(),
                "interaction": t.interactions().iter().map(|i| json!({"code": i.code()})).collect::<Vec<_>>(),
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": *t != ResourceType::AuditEvent,
                "conditionalCreate": *t != ResourceType::AuditEvent,
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchParam": params,
            });
            if !t.patient_paths().is_empty() {
                r["searchInclude"] = json!([format!("{}:patient", t.as_str())]);
            }
            if *t == ResourceType::Bundle {
                r["documentation"] = json!(
                    "JP-CLINS submissions: POST a 5情報 collection Bundle or a document Bundle carrying the bundle-identifier \
                     (http://jpfhir.jp/fhir/clins/bundle-identifier). A second submission with the same identifier replaces the first; \
                     DELETE /Bundle?identifier=system|value deletes it."
                );
            }
            r
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "Musubi",
        "kind": "instance",
        "software": {"name": "Musubi", "version": software_version},
        "implementation": {"description": "Musubi regional health-record sharing service", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "implementationGuide": [
            "http://jpfhir.jp/fhir/core/ImplementationGuide/jpfhir.jp.core",
            "http://jpfhir.jp/fhir/clins/ImplementationGuide/jp-clins"
        ],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": false,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "OAuth", "display": "OAuth"}], "text": "Bearer tokens (RFC 6750): system tokens issued by the network operator, or a person's session token"}],
                "description": SECURITY_DESCRIPTION
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            "searchParam": [{"name": "_count", "type": "number"}, {"name": "_offset", "type": "number"}, {"name": "_sort", "type": "string", "documentation": "date, -date, _lastUpdated, -_lastUpdated, _id"}]
        }]
    })
}
