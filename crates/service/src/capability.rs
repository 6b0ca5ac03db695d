//! The CapabilityStatement, built from the same type table the router and search use, so it
//! says exactly what works.

use musubi_fhir::{ParamKind, ResourceType};
use serde_json::{Value, json};

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
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "OAuth", "display": "OAuth"}], "text": "Bearer tokens issued by the network operator (musubi token issue)"}],
                "description": "Every request needs Authorization: Bearer <token>. A facility's system token reads and writes its own facility's data."
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            "searchParam": [{"name": "_count", "type": "number"}, {"name": "_offset", "type": "number"}, {"name": "_sort", "type": "string", "documentation": "date, -date, _lastUpdated, -_lastUpdated, _id"}]
        }]
    })
}
