//! The FHIR API over HTTP against a real server and a real (embedded) store: the reference
//! examples accepted and rejected, the REST interactions, search after the gate, Bundles and the
//! JP-CLINS submission semantics, authentication and bad input.

use crate::common::*;
use serde_json::{Value, json};

fn post_example(c: &Client, v: &Value) -> Resp {
    let t = v["resourceType"].as_str().unwrap();
    c.post(t, v)
}

#[test]
fn every_valid_reference_example_is_accepted_and_every_error_example_rejected() {
    let s = TestServer::start();
    let c = s.client(&s.admin);
    let mut files: Vec<_> = ["jp-clins/examples", "jp-core/json-examples", "eCheckup"]
        .iter()
        .flat_map(|d| std::fs::read_dir(reference_dir().join(d)).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 70, "reference examples missing: {}", files.len());
    let mut rejected = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let v = read_json(f);
        let r = post_example(&c, &v);
        if name.contains("ErrorExample") {
            rejected += 1;
            assert_eq!(r.status, 422, "{name} must be rejected: {}", r.text);
            assert_eq!(r.body["resourceType"], "OperationOutcome");
            let exprs = r.expressions();
            assert!(
                !exprs.is_empty() && exprs.iter().all(|e| !e.is_empty()),
                "{name}: every issue names an element: {}",
                r.text
            );
            assert!(!r.rules().is_empty(), "{name}: the rule is named: {}", r.text);
        } else {
            assert!(
                r.status == 201 || r.status == 200,
                "{name} must be accepted, got {}: {}",
                r.status,
                r.diagnostics()
            );
        }
    }
    assert_eq!(rejected, 3);
    // The specific rules of the three error examples.
    let ext_eye = post_example(
        &c,
        &read_json(
            &reference_dir().join("jp-clins/examples/MedicationRequest-ErrorExample-JP-MedReq-ExtEye-Total1.json"),
        ),
    );
    assert!(ext_eye.rules().iter().any(|r| r.contains("R3010")), "{}", ext_eye.text);
    let egfr = post_example(
        &c,
        &read_json(&reference_dir().join("jp-clins/examples/Observation-ErrorExample-ObsLabo-eGFR.json")),
    );
    assert!(egfr.rules().iter().any(|r| r.contains("R6021")), "{}", egfr.text);
    assert!(egfr.expressions().iter().any(|e| e.starts_with("Observation.code")), "{}", egfr.text);
    let general = post_example(
        &c,
        &read_json(
            &reference_dir().join("jp-clins/examples/MedicationRequest-ErrorExample-JP-MedReq-PO-SID-28days.json"),
        ),
    );
    assert!(general.expressions().iter().any(|e| e.contains("medication")), "{}", general.text);
}

#[test]
fn crud_versions_history_and_headers() {
    let s = TestServer::start();
    let c = s.client(&s.admin);
    let patient = json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11318814790", "value": "00001"}], "name": [{"text": "結 花子"}], "gender": "female", "birthDate": "1980-02-29"});
    let r = c.post("Patient", &patient);
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["meta"]["versionId"], "1");
    assert_eq!(r.headers["etag"], "W/\"1\"");
    assert!(r.headers["location"].to_str().unwrap().ends_with(&format!("/Patient/{id}/_history/1")));
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("application/fhir+json"));

    let r = c.get(&format!("Patient/{id}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["name"][0]["text"], "結 花子");

    let mut p2 = r.body.clone();
    p2["gender"] = json!("other");
    let r = c.put(&format!("Patient/{id}"), &p2);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["meta"]["versionId"], "2");
    // An identical resubmission changes nothing.
    let r = c.put(&format!("Patient/{id}"), &p2);
    assert_eq!(r.body["meta"]["versionId"], "2");
    // A stale If-Match is refused.
    let r = Client::finish_put_if_match(&c, &format!("Patient/{id}"), &p2, "W/\"1\"");
    assert_eq!(r.status, 412, "{}", r.text);

    assert_eq!(c.get(&format!("Patient/{id}/_history/1")).body["gender"], "female");
    let h = c.get(&format!("Patient/{id}/_history"));
    assert_eq!(h.body["type"], "history");
    assert_eq!(h.body["total"], 2);
    assert_eq!(h.body["entry"][0]["resource"]["meta"]["versionId"], "2");

    assert_eq!(c.delete(&format!("Patient/{id}")).status, 204);
    assert_eq!(c.get(&format!("Patient/{id}")).status, 410);
    assert_eq!(c.get(&format!("Patient/{id}/_history")).body["total"], 3);
    assert_eq!(c.get("Patient/does-not-exist").status, 404);

    // Update-as-create with a client id.
    let r = c.put("Patient/client-chosen-1", &json!({"resourceType": "Patient", "id": "client-chosen-1", "identifier": [{"system": "urn:x", "value": "1"}], "gender": "male"}));
    assert_eq!(r.status, 201, "{}", r.text);
    // The id in the body must match the URL.
    assert_eq!(
        c.put(
            "Patient/a",
            &json!({"resourceType": "Patient", "id": "b", "identifier": [{"system": "urn:x", "value": "2"}]})
        )
        .status,
        400
    );
}

trait PutIfMatch {
    fn finish_put_if_match(c: &Client, path: &str, body: &Value, etag: &str) -> Resp;
}

impl PutIfMatch for Client {
    fn finish_put_if_match(c: &Client, path: &str, body: &Value, etag: &str) -> Resp {
        let r = c
            .http
            .put(c.url(path))
            .bearer_auth(&c.token)
            .header("content-type", "application/fhir+json")
            .header("if-match", etag)
            .body(body.to_string())
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().unwrap();
        Resp { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
    }
}

fn obs(patient: &str, code: &str, date: &str, value: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationLabResultCode_CS", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": date,
        "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    })
}

/// The whole-record reads (`$everything`, the viewer, the summary) keep parsed versions in
/// memory: every write must show in the next read all the same.
#[test]
fn whole_record_reads_follow_every_write() {
    let s = TestServer::start();
    let c = s.client(&s.admin);
    let patient = json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11318814790", "value": "00077"}], "name": [{"text": "結 冬子"}], "gender": "female", "birthDate": "1975-12-01"});
    let r = c.post("Patient", &patient);
    assert_eq!(r.status, 201, "{}", r.text);
    let pid = r.body["id"].as_str().unwrap().to_owned();
    let r = c.post("Observation", &obs(&pid, "3D046000001906202", "2026-10-01", 5.5));
    assert_eq!(r.status, 201, "{}", r.text);
    let oid = r.body["id"].as_str().unwrap().to_owned();
    let values = |c: &Client| -> Vec<Value> {
        let all = c.get(&format!("Patient/{pid}/$everything"));
        assert_eq!(all.status, 200, "{}", all.text);
        all.body["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["resource"]["resourceType"] == "Observation")
            .map(|e| e["resource"]["valueQuantity"]["value"].clone())
            .collect()
    };
    assert_eq!(values(&c), vec![json!(5.5)]);
    assert_eq!(values(&c), vec![json!(5.5)], "read again (from the cache)");

    let mut o = obs(&pid, "3D046000001906202", "2026-10-01", 6.5);
    o["id"] = json!(oid);
    let r = c.put(&format!("Observation/{oid}"), &o);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(values(&c), vec![json!(6.5)], "an update shows at once");

    assert_eq!(c.delete(&format!("Observation/{oid}")).status, 204);
    assert_eq!(values(&c), Vec::<Value>::new(), "a deletion shows at once");

    o["valueQuantity"]["value"] = json!(7.5);
    let r = c.put(&format!("Observation/{oid}"), &o);
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
    assert_eq!(values(&c), vec![json!(7.5)], "written again after its deletion");
}

#[test]
fn search_parameters_paging_sort_and_include() {
    let s = TestServer::start();
    let c = s.client(&s.admin);
    let p = c.post("Patient", &json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11318814790", "value": "00002"}], "name": [{"family": "山田", "given": ["太郎"]}, {"family": "ヤマダ", "given": ["タロウ"]}], "gender": "male", "birthDate": "1955-04-01"}));
    let pid = p.body["id"].as_str().unwrap().to_owned();
    for (i, d) in ["2024-01-10", "2024-02-10", "2024-03-10", "2024-04-10", "2024-05-10"].iter().enumerate() {
        assert_eq!(c.post("Observation", &obs(&pid, "3D046000001920402", d, 6.0 + i as f64 / 10.0)).status, 201);
    }
    c.post("Observation", &obs(&pid, "3C025000002327101", "2024-03-01", 0.9));

    let r = c.get(&format!("Observation?patient={pid}&_sort=-date&_count=2"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["total"], 6);
    assert_eq!(r.body["entry"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["entry"][0]["resource"]["effectiveDateTime"], "2024-05-10");
    // Follow next links to the end: every result exactly once, newest first.
    let mut dates = Vec::new();
    let mut page = r;
    loop {
        for e in page.body["entry"].as_array().unwrap() {
            dates.push(e["resource"]["effectiveDateTime"].as_str().unwrap().to_owned());
        }
        let next = page.body["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        match next {
            Some(u) => page = c.get(&u),
            None => break,
        }
    }
    assert_eq!(dates, vec!["2024-05-10", "2024-04-10", "2024-03-10", "2024-03-01", "2024-02-10", "2024-01-10"]);

    let r = c.get(&format!("Observation?subject=Patient/{pid}&code=http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationLabResultCode_CS|3D046000001920402&date=ge2024-02-01&date=lt2024-04-01"));
    assert_eq!(r.body["total"], 2, "{}", r.text);
    let r = c.get(&format!("Observation?patient=Patient/{pid}&code:not=3D046000001920402"));
    assert_eq!(r.body["total"], 1);
    let r = c.get(&format!("Observation?patient={pid}&_include=Observation:patient&_count=3"));
    let modes: Vec<_> =
        r.body["entry"].as_array().unwrap().iter().map(|e| e["search"]["mode"].as_str().unwrap().to_owned()).collect();
    assert_eq!(modes, vec!["match", "match", "match", "include"]);
    assert_eq!(r.body["entry"][3]["resource"]["id"], pid.as_str());

    // Names: kana folding and prefix matching.
    assert_eq!(c.get("Patient?name=やまだ").body["total"], 1);
    assert_eq!(c.get("Patient?name=山").body["total"], 1);
    assert_eq!(c.get("Patient?birthdate=1955-04-01&gender=male").body["total"], 1);
    assert_eq!(c.get("Patient?birthdate=1955-04-02").body["total"], 0);
    assert_eq!(c.get(&format!("Patient?_id={pid}")).body["total"], 1);
    assert_eq!(c.get("Observation?_summary=count").body["total"], 6);
    assert_eq!(c.get("Observation?_lastUpdated=ge2020-01-01").body["total"], 6);
    // POST _search.
    let r = c.send(
        reqwest::Method::POST,
        "Observation/_search",
        format!("patient={pid}&_count=1"),
        "application/x-www-form-urlencoded",
    );
    assert_eq!(r.body["total"], 6);

    // Unknown parameters and unsupported modifiers are errors, not silently ignored.
    for bad in [
        "Observation?foo=bar",
        "Observation?code:text=x",
        "Observation?date=2024-99-01",
        "Observation?_sort=value",
        "Observation?subject.name=x",
    ] {
        let r = c.get(bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.body["resourceType"], "OperationOutcome");
    }
}

#[test]
fn facility_systems_see_only_their_own_data_and_nothing_leaks() {
    let s = TestServer::start();
    let admin = s.client(&s.admin);
    let a = s.client(&s.token("1318814790", "hospital-a"));
    let b = s.client(&s.token("2712345678", "clinic-b"));
    let ext = |f: &str| json!([{"url": "http://jpfhir.jp/fhir/clins/Extension/StructureDefinition/JP_eCS_InstitutionNumber", "valueIdentifier": {"system": "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no", "value": f}}]);
    let pa = a.post("Patient", &json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11318814790", "value": "00003"}], "gender": "female"}));
    assert_eq!(pa.status, 201, "{}", pa.text);
    let pid = pa.body["id"].as_str().unwrap().to_owned();
    let mut o = obs(&pid, "x1", "2024-01-01", 1.0);
    o["extension"] = ext("1318814790");
    let oa = a.post("Observation", &o);
    assert_eq!(oa.status, 201, "{}", oa.text);
    let oid = oa.body["id"].as_str().unwrap().to_owned();
    // A system cannot submit another facility's data.
    let mut foreign = obs(&pid, "x2", "2024-01-02", 1.0);
    foreign["extension"] = ext("1318814790");
    let r = b.post("Observation", &foreign);
    assert_eq!(r.status, 403, "{}", r.text);
    // Nor its own observation about A's patient: a facility writes about its own patients
    // (issue 11: such a write once made B "treating" the person).
    let ob = b.post("Observation", &obs(&pid, "x3", "2024-01-03", 1.0));
    assert_eq!(ob.status, 403, "{}", ob.text);
    // B's own patient and observation.
    let pb = b.post("Patient", &json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.12712345678", "value": "B-1"}], "gender": "male"}));
    assert_eq!(pb.status, 201, "{}", pb.text);
    let pbid = pb.body["id"].as_str().unwrap().to_owned();
    let ob = b.post("Observation", &obs(&pbid, "x3", "2024-01-03", 1.0));
    assert_eq!(ob.status, 201, "{}", ob.text);

    // Reads: hidden resources look exactly like missing ones.
    assert_eq!(b.get(&format!("Observation/{oid}")).status, 404);
    assert_eq!(
        b.get(&format!("Observation/{oid}")).diagnostics(),
        b.get("Observation/no-such-id").diagnostics().replace("no-such-id", &oid)
    );
    assert_eq!(b.get(&format!("Observation/{oid}/_history")).status, 404);
    // Totals and pages count only what the caller may see.
    assert_eq!(b.get(&format!("Observation?patient={pid}")).body["total"], 0);
    assert_eq!(a.get(&format!("Observation?patient={pid}")).body["total"], 1);
    assert_eq!(admin.get(&format!("Observation?patient={pid}")).body["total"], 1);
    assert_eq!(admin.get(&format!("Observation?patient={pbid}")).body["total"], 1);
    assert_eq!(
        b.get(&format!("Observation?patient={pbid}&_include=Observation:patient")).body["entry"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "B's own patient is included for B"
    );
    assert_eq!(
        b.get(&format!("Observation?patient={pid}&_include=Observation:patient")).body["entry"]
            .as_array()
            .map_or(0, Vec::len),
        0,
        "A's patient is not included for B"
    );
    assert_eq!(b.get("Observation/_history").body["total"], 1);
    // B cannot change or delete A's resources.
    assert_eq!(b.delete(&format!("Observation/{oid}")).status, 404);
    let mut changed = oa.body.clone();
    changed["status"] = json!("amended");
    assert_eq!(b.put(&format!("Observation/{oid}"), &changed).status, 403);
    // The audit log: only the administrator reads it, and the denied read is in it.
    assert_eq!(b.get("AuditEvent").status, 403);
    let audit = admin.get(&format!("AuditEvent?patient={pid}&outcome=8"));
    assert!(audit.body["total"].as_i64().unwrap() >= 2, "{}", audit.text);
    let e = &audit.body["entry"][0]["resource"];
    assert_eq!(e["resourceType"], "AuditEvent");
    assert_eq!(e["agent"][0]["who"]["display"], "clinic-b");
}

#[test]
fn authentication_and_bad_input_get_operation_outcomes() {
    let clock = musubi_service::login::TestClock::default();
    let c2 = clock.clone();
    let dir = tempfile::tempdir().unwrap();
    let store = musubi_store::Store::open_sqlite(dir.path()).unwrap();
    let config = musubi_server::ServerConfig { body_limit: 2 * 1024 * 1024, ..Default::default() };
    let s = TestServer::start_with_service(store, dir, config, move |svc| {
        svc.with_clock(musubi_service::login::Clock::from_fn(move || c2.now()))
    });
    let http = reqwest::blocking::Client::new();
    let r = http.get(format!("{}/Patient", s.base)).send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    assert_eq!(serde_json::from_str::<Value>(&r.text().unwrap()).unwrap()["resourceType"], "OperationOutcome");
    let r = http.get(format!("{}/Patient", s.base)).bearer_auth("msb_forged").send().unwrap();
    assert_eq!(r.status(), 401);
    // Revoked tokens stop working (after the short cache).
    let t = s.token("1318814790", "to-revoke");
    assert_eq!(s.client(&t).get("Patient").status, 200);
    s.store.revoke_token("to-revoke".into()).unwrap();
    clock.advance_ms(5_200);
    assert_eq!(s.client(&t).get("Patient").status, 401);

    let c = s.client(&s.admin);
    let cs = c.get("metadata");
    assert_eq!(cs.body["fhirVersion"], "4.0.1");
    let types: Vec<_> = cs.body["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap().to_owned())
        .collect();
    for t in [
        "Patient",
        "Condition",
        "Observation",
        "AllergyIntolerance",
        "MedicationRequest",
        "Composition",
        "DocumentReference",
        "Bundle",
        "Consent",
        "AuditEvent",
        "Provenance",
    ] {
        assert!(types.contains(&t.to_owned()), "{t} missing in CapabilityStatement");
    }
    let audit =
        cs.body["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == "AuditEvent").unwrap().clone();
    assert_eq!(audit["interaction"].as_array().unwrap().len(), 2, "AuditEvent is read-only");

    let cases = [
        (c.send(reqwest::Method::POST, "Patient", "{not json".into(), "application/fhir+json"), 400),
        (c.send(reqwest::Method::POST, "Patient", "<Patient/>".into(), "application/fhir+xml"), 415),
        (
            c.send(
                reqwest::Method::POST,
                "Patient",
                format!("{{\"resourceType\":\"Patient\",\"x\":\"{}\"}}", "a".repeat(3 * 1024 * 1024)),
                "application/fhir+json",
            ),
            413,
        ),
        (c.post("Patient", &json!({"resourceType": "Observation"})), 400),
        (c.post("Patient", &json!([1, 2])), 400),
        (
            c.post(
                "Patient",
                &json!({"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}], "gender": 5}),
            ),
            422,
        ),
        (c.post("Patient", &json!({"resourceType": "Patient", "gender": "male"})), 422),
        (c.post("AuditEvent", &json!({"resourceType": "AuditEvent"})), 405),
        (c.get("Unknown/1"), 404),
        (c.get("Patient?_format=xml"), 406),
    ];
    for (i, (r, status)) in cases.iter().enumerate() {
        assert_eq!(r.status, *status, "case {i}: {}", r.text);
        assert_eq!(r.body["resourceType"], "OperationOutcome", "case {i}: {}", r.text);
        assert!(!r.diagnostics().is_empty());
    }
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = c.send(reqwest::Method::POST, "Patient", deep, "application/fhir+json");
    assert_eq!(r.status, 400, "deeply nested JSON is refused, not a crash");
    assert_eq!(c.get("metadata").status, 200, "the server is still up");
}

#[test]
fn transactions_are_atomic_and_rewrite_references() {
    let s = TestServer::start();
    let c = s.client(&s.admin);
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "tx-1"}], "gender": "male"}, "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222", "resource": obs("x", "a", "2024-01-01", 1.0), "request": {"method": "POST", "url": "Observation"}}
    ]});
    let mut tx = tx;
    tx["entry"][1]["resource"]["subject"]["reference"] = json!("urn:uuid:11111111-1111-1111-1111-111111111111");
    let r = c.post("", &tx);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["type"], "transaction-response");
    let loc = r.body["entry"][0]["response"]["location"].as_str().unwrap().to_owned();
    let pid = loc.split('/').nth(1).unwrap().to_owned();
    let o = c.get(r.body["entry"][1]["response"]["location"].as_str().unwrap().split("/_history").next().unwrap());
    assert_eq!(o.body["subject"]["reference"], format!("Patient/{pid}"));
    assert_eq!(c.get(&format!("Observation?patient={pid}")).body["total"], 1);

    // One bad entry: nothing of the transaction lands, and the error names the entry.
    let before = c.get("Patient?_summary=count").body["total"].as_i64().unwrap();
    let bad = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:33333333-3333-3333-3333-333333333333", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "tx-2"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": 12}, "request": {"method": "POST", "url": "Observation"}}
    ]});
    let r = c.post("", &bad);
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.expressions().iter().any(|e| e.starts_with("Bundle.entry[1].resource")), "{}", r.text);
    assert_eq!(c.get("Patient?_summary=count").body["total"].as_i64().unwrap(), before);

    // Batch: entries succeed or fail on their own.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "b-1"}], "gender": "female"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "b-2"}], "gender": 3}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": format!("Patient/{pid}")}}
    ]});
    let r = c.post("", &batch);
    assert_eq!(r.body["type"], "batch-response");
    assert_eq!(r.body["entry"][0]["response"]["status"], "201 Created");
    assert!(r.body["entry"][1]["response"]["status"].as_str().unwrap().starts_with("422"));
    assert_eq!(r.body["entry"][2]["resource"]["id"], pid.as_str());
    // Conditional create makes re-sending idempotent.
    let cond = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11318814790", "value": "P-77"}]}, "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:oid:1.2.392.100495.20.3.51.11318814790|P-77"}}
    ]});
    let first = c.post("", &cond);
    let second = c.post("", &cond);
    assert_eq!(first.body["entry"][0]["response"]["status"], "201 Created");
    assert_eq!(second.body["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(c.get("Patient?identifier=P-77").body["total"], 1);
}

#[test]
fn jp_clins_submissions_replace_and_delete_by_bundle_identifier() {
    let s = TestServer::start();
    let sys = s.client(&s.token("1318814790", "clins-sender"));
    let other = s.client(&s.token("2712345678", "other-sender"));
    let bundle = read_json(&reference_dir().join("jp-clins/examples/Bundle-Bundle-CLINS-Observations-Example-01.json"));
    let n_obs = bundle["entry"].as_array().unwrap().len() - 1;
    let r = sys.post("Bundle", &bundle);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["resourceType"], "OperationOutcome");
    let obs = sys.get("Observation?_count=100");
    assert_eq!(obs.body["total"].as_u64().unwrap() as usize, n_obs);
    // The observations are filed under the submitted patient.
    let pid = obs.body["entry"][0]["resource"]["subject"]["reference"].as_str().unwrap().to_owned();
    assert!(pid.starts_with("Patient/"), "{pid}");
    assert_eq!(sys.get(&format!("Observation?patient={pid}")).body["total"].as_u64().unwrap() as usize, n_obs);
    // Identical resubmission: nothing changes.
    let r = sys.post("Bundle", &bundle);
    assert_eq!(r.status, 200);
    assert!(r.diagnostics().contains("変更はありません"));
    assert_eq!(sys.get("Observation/_history").body["total"].as_u64().unwrap() as usize, n_obs);
    // A changed submission with the same identifier replaces the earlier one.
    let mut fewer = bundle.clone();
    fewer["entry"].as_array_mut().unwrap().truncate(3);
    let r = sys.post("Bundle", &fewer);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(sys.get("Observation").body["total"], 2);
    assert_eq!(sys.get("Patient").body["total"], 1, "the same source patient is reused");
    // Another facility may neither submit under nor delete this identifier.
    assert_eq!(other.post("Bundle", &bundle).status, 403);
    let key = bundle["identifier"]["value"].as_str().unwrap();
    let del = format!("Bundle?identifier=http://jpfhir.jp/fhir/clins/bundle-identifier|{}", key.replace('^', "%5E"));
    assert_eq!(other.delete(&del).status, 404);
    let r = sys.delete(&del);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(sys.get("Observation").body["total"], 0);
    assert_eq!(sys.delete(&del).status, 404);

    // Documents: kept whole; the second referral with the same identifier replaces the first.
    let referral = read_json(&reference_dir().join("jp-clins/examples/Bundle-Bundle-CLINS-Referral-Example-01.json"));
    let r = sys.post("Bundle", &referral);
    assert_eq!(r.status, 201, "{}", r.text);
    let loc = r.headers["location"].to_str().unwrap().to_owned();
    let doc = sys.get(&loc);
    assert_eq!(doc.body["type"], "document");
    assert_eq!(doc.body["entry"][0]["resource"]["resourceType"], "Composition");
    let noentry =
        read_json(&reference_dir().join("jp-clins/examples/Bundle-Bundle-CLINS-Referral-NoEntry-Example-01.json"));
    let r = sys.post("Bundle", &noentry);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(sys.get(&format!("{loc}/_history")).body["total"], 2);
    assert_eq!(sys.get("Bundle?composition-type=57133-1").body["total"], 1);
    let patient_ref = sys.get("Patient").body["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    assert_eq!(sys.get(&format!("Bundle?patient={patient_ref}")).body["total"], 1);
    // A bad Bundle identifier is refused with the rule.
    let mut bad = bundle.clone();
    bad["identifier"]["value"] = json!("131881479^2024^x");
    let r = sys.post("Bundle", &bad);
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.expressions().iter().any(|e| e.contains("identifier")), "{}", r.text);
}
