//! The embedded store's own write rate, without the collector: `n` small lab Observations
//! (5 index entries each) committed as creates in chunks of `chunk`, into a fresh SQLite store.
//! The ceiling the collectors' end-to-end rates meet (see BENCH-RESULTS.md).
//!
//! ```sh
//! cargo run --release -p musubi-collect --example store_throughput -- 200000 10000
//! ```

use musubi_fhir::{ResourceType, classify, index::extract};
use musubi_store::{Expect, PutResource, Store, StoredMeta, WriteBatch};
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let chunk: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_sqlite(dir.path()).expect("store");
    let facility: musubi_domain::FacilityCode = "1318814790".parse().expect("facility");
    let puts: Vec<PutResource> = (0..n)
        .map(|i| {
            let id = uuid::Uuid::new_v4().to_string();
            let body = json!({"resourceType": "Observation", "id": id, "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "code": "3A010000002327101", "display": "総蛋白"}], "text": "総蛋白"},
                "subject": {"reference": format!("Patient/p{}", i % 1000)}, "effectiveDateTime": "2024-05-01T10:00:00+09:00",
                "valueQuantity": {"value": 7.2, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"},
                "referenceRange": [{"low": {"value": 6.7}, "high": {"value": 8.3}}]});
            let m = classify::classify(ResourceType::Observation, &body);
            PutResource {
                rtype: ResourceType::Observation,
                id,
                version: 1,
                expect: Expect::Absent,
                last_updated: 1,
                content: body.to_string(),
                content_hash: musubi_fhir::sha256_hex(body.to_string().as_bytes()),
                meta: StoredMeta {
                    facility: Some(facility),
                    submitter: facility.to_string(),
                    patient_id: m.patient,
                    person_id: None,
                    class: m.class,
                    clinical_date: m.clinical_date,
                    flags: m.flags,
                    retention_end: None,
                    keep_last: None,
                    item_key: m.item_key,
                    bundle_key: None,
                },
                index: extract(ResourceType::Observation, &body),
            }
        })
        .collect();
    let t = std::time::Instant::now();
    let mut it = puts.into_iter();
    loop {
        let c: Vec<PutResource> = it.by_ref().take(chunk).collect();
        if c.is_empty() {
            break;
        }
        store.commit(WriteBatch { puts: c, ..Default::default() }).expect("commit");
    }
    let e = t.elapsed();
    println!("{n} resources in chunks of {chunk}: {e:?}, {:.0} resources/s", n as f64 / e.as_secs_f64());
}
