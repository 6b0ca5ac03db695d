//! Issue 11, point 4: a store collected before keyed ids holds the collectors' deterministic
//! ids (UUID v5 of the facility code and patient number), which anyone can compute. `musubi
//! ids rekey` moves them to keyed ids. Here the SS-MIX2 checker's samples are collected the old
//! way (a service without a key), read, linked by the MPI and pointed at by other records; then
//! the rekey runs, on SQLite and on PostgreSQL, and every place that named an old id is checked,
//! with the audit chain, the patient's access history, `$everything`, the MPI person, a second
//! rekey (nothing to do) and a collection of the same input (nothing new). Last, the command
//! itself, end to end, with the warning `musubi serve` gives while old ids remain.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use musubi_collect::{CollectOptions, NoProgress, collect_ssmix2};
use musubi_fhir::ResourceType;
use musubi_gate::{Actor, PortalActor};
use musubi_service::ids::IdKey;
use musubi_service::{Ctx, Service};
use musubi_store::Store;
use serde_json::{Value, json};

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../reference/ssmix2/SSMIX2DataTestingTool/sampleData");
const FACILITY: &str = "1318814790";
const OTHER: &str = "1311234567";
/// An id a facility's system chose itself (`PUT`), shaped like a collector's: it is not the
/// collectors', so it stays.
const CHOSEN: &str = "3f2a9c1e-4b7d-5e8f-9a0b-1c2d3e4f5a6b";

fn key() -> IdKey {
    IdKey::from_bytes([11; 32])
}

/// A UUID of version 5 (what the collectors compute), by shape.
fn deterministic(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36 && b[8] == b'-' && b[13] == b'-' && b[14] == b'5' && b[18] == b'-' && b[23] == b'-'
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// Plain SQL on the store's database, for looking at every table as it is.
enum Raw {
    Lite(rusqlite::Connection),
    Pg(postgres::Client),
}

impl Raw {
    /// The first column of every row, as text (NULLs left out).
    fn texts(&mut self, sql: &str) -> Vec<String> {
        match self {
            Raw::Lite(c) => {
                let mut st = c.prepare(sql).unwrap();
                st.query_map([], |r| r.get::<_, Option<String>>(0)).unwrap().filter_map(|x| x.unwrap()).collect()
            }
            Raw::Pg(c) => c.query(sql, &[]).unwrap().iter().filter_map(|r| r.get::<_, Option<String>>(0)).collect(),
        }
    }

    fn one(&mut self, sql: &str) -> String {
        self.texts(sql).into_iter().next().unwrap_or_else(|| panic!("no row: {sql}"))
    }

    fn exec(&mut self, sql: &str) {
        match self {
            Raw::Lite(c) => c.execute_batch(sql).unwrap(),
            Raw::Pg(c) => c.batch_execute(sql).unwrap(),
        }
    }
}

/// Every column that names a resource or a source patient.
const ID_COLUMNS: &[(&str, &str)] = &[
    ("resource", "id"),
    ("resource_version", "id"),
    ("idx_token", "id"),
    ("idx_ref", "id"),
    ("idx_date", "id"),
    ("idx_string", "id"),
    ("collect_source", "id"),
    ("resource", "patient_id"),
    ("facility_use", "patient_id"),
    ("mpi_link", "patient_id"),
    ("referral", "patient_id"),
];

/// Every column that names a person (a patient the MPI has not linked is its own person).
const PERSON_COLUMNS: &[(&str, &str)] = &[
    ("resource", "person_id"),
    ("person_code", "person_id"),
    ("notification", "person_id"),
    ("consent_setting", "person_id"),
    ("referral", "person_id"),
    ("mpi_link", "person_id"),
];

fn system() -> Ctx {
    Ctx {
        actor: Actor::System { name: "emr".into(), facility: FACILITY.parse().unwrap() },
        address: None,
        base_url: String::new(),
    }
}

fn portal(person: &str) -> Ctx {
    Ctx {
        actor: Actor::Portal(PortalActor {
            account_id: "portal-1".into(),
            name: "患者".into(),
            person_id: person.into(),
            proxy_relation: None,
            may_view_records: true,
        }),
        address: None,
        base_url: String::new(),
    }
}

fn lab(patient: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "code": "3D046000001920402", "display": "HbA1c"}]},
        "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": "2026-10-01",
        "valueQuantity": {"value": 7.2, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}})
}

fn everything_count(svc: &Service, patient: &str) -> u64 {
    let b: Value = serde_json::from_str(&svc.everything(&system(), patient).unwrap()).unwrap();
    b["total"].as_u64().unwrap()
}

/// The access history entries recorded up to `seq` (later ones are the test's own reads).
fn history(svc: &Service, person: &str, up_to: i64) -> Vec<Value> {
    let h = svc.access_history(&portal(person), None, None, 1000).unwrap();
    h.iter().filter(|e| e.seq <= up_to).map(|e| serde_json::to_value(e).unwrap()).collect()
}

/// The operator's audit search by patient: the entries recorded up to `seq`.
fn audited(svc: &Service, patient: &str, up_to: i64) -> usize {
    let q = musubi_service::people::AuditFilter { patient: Some(patient.into()), ..Default::default() };
    let (_, rows) = svc.audit_report(&Ctx::operator("op"), &q, 0, 1000, false).unwrap();
    rows.iter().filter(|r| r["seq"].as_i64().unwrap() <= up_to).count()
}

/// Every stored version: (type/id, version, written at, JSON).
fn versions(raw: &mut Raw) -> Vec<(String, String)> {
    raw.texts("SELECT rtype || '/' || id || '|' || version || '|' || last_updated || '|' || COALESCE(content, '') FROM resource_version ORDER BY 1")
        .into_iter()
        .map(|s| {
            let mut parts = s.splitn(4, '|');
            let k = parts.next().unwrap().to_owned();
            let v = parts.next().unwrap();
            let at = parts.next().unwrap();
            (format!("{k}|{v}|{at}"), parts.next().unwrap().to_owned())
        })
        .collect()
}

/// Every reference in every stored version (Bundles aside: documents point into themselves)
/// that names no stored resource, with the version naming it.
fn dangling(raw: &mut Raw) -> HashSet<String> {
    let stored: HashSet<String> = raw.texts("SELECT rtype || '/' || id FROM resource").into_iter().collect();
    let mut out = HashSet::new();
    for (k, content) in versions(raw) {
        if content.is_empty() || k.starts_with("Bundle/") {
            continue;
        }
        let v: Value = serde_json::from_str(&content).unwrap();
        for r in musubi_fhir::reference::collect_references(&v) {
            if let Some(l) = musubi_fhir::reference::parse_reference(r)
                && !stored.contains(&l.key())
            {
                out.insert(format!("{k} -> {}", l.key()));
            }
        }
    }
    out
}

/// Builds a store the old way (no key), does what a network does with it, rekeys it and checks
/// everything that named an old id.
fn scenario(store: Store, mut raw: Raw, dir: &Path) {
    let root = dir.join("storage");
    copy_tree(Path::new(SAMPLES), &root);
    let old = Service::new(store.clone(), "test");
    for (code, name) in [(FACILITY, "結び総合病院"), (OTHER, "丸の内クリニック")] {
        let row = musubi_store::FacilityRow {
            code: code.into(),
            name: name.into(),
            class: "hospital".into(),
            prefecture: 13,
            area: "1301".into(),
            area_name: "区中央部".into(),
            discloses: true,
            views: true,
        };
        old.register_facility(&Ctx::operator("test"), row, vec![]).unwrap();
    }
    let first =
        collect_ssmix2(&old, &root, FACILITY.parse().unwrap(), &CollectOptions::default(), &NoProgress).unwrap();
    assert!(first.stats.created > 50, "{:?}", first.stats);
    // The same storage as another facility's: other ids (the facility code is in them).
    let other = collect_ssmix2(&old, &root, OTHER.parse().unwrap(), &CollectOptions::default(), &NoProgress).unwrap();
    assert_eq!(other.stats.created, first.stats.created);
    let collected: Vec<String> = raw.texts("SELECT rtype || '/' || id FROM collect_source ORDER BY 1");
    assert!(collected.iter().all(|k| deterministic(k.split_once('/').unwrap().1)), "{collected:?}");

    // The patient with the longest record, and a second one.
    let patients = raw.texts(
        "SELECT patient_id FROM resource WHERE patient_id IN (SELECT id FROM resource WHERE rtype = 'Patient') \
         GROUP BY patient_id ORDER BY COUNT(*) DESC, patient_id",
    );
    assert_eq!(patients.len(), 2, "{patients:?}");
    let (p, p2) = (patients[0].clone(), patients[1].clone());
    assert!(deterministic(&p) && deterministic(&p2));
    let p = raw.one(&format!("SELECT id FROM resource WHERE rtype = 'Patient' AND facility = '{FACILITY}'"));
    let p2 = if p == p2 { patients[0].clone() } else { p2 };
    let person = raw.one(&format!("SELECT person_id FROM resource WHERE rtype = 'Patient' AND id = '{p}'"));
    assert_ne!(person, p, "the MPI linked the patient");

    // The facility's system reads the record (audited under the old ids), writes a result of
    // its own about the patient, and a result under an id it chose.
    let obs =
        raw.one(&format!("SELECT id FROM resource WHERE rtype = 'Observation' AND patient_id = '{p}' ORDER BY id"));
    old.read(&system(), ResourceType::Patient, &p, None).unwrap();
    old.read(&system(), ResourceType::Observation, &obs, None).unwrap();
    let q = old.create(&system(), ResourceType::Observation, lab(&p)).unwrap().id;
    assert!(!deterministic(&q));
    let mut chosen = lab(&p);
    chosen["id"] = json!(CHOSEN);
    assert!(old.update(&system(), ResourceType::Observation, CHOSEN, chosen, None).unwrap().created);
    let everything = everything_count(&old, &p);

    // A patient the MPI has not linked stands as its own person: the second patient, made so,
    // with an activation code and its notice (both filed under the person).
    raw.exec(&format!(
        "UPDATE resource SET person_id = '{p2}' WHERE patient_id = '{p2}'; DELETE FROM mpi_link WHERE patient_id = '{p2}'"
    ));
    old.issue_activation_code(&Ctx::operator("op"), &p2).unwrap();
    // A claim and a referral letter name the patient too.
    raw.exec(&format!(
        "INSERT INTO facility_use (facility, patient_id, year_month, insurance_id, file_sha256) VALUES ('{FACILITY}', '{p}', '2026-10', NULL, 'x'); \
         INSERT INTO referral (id, sender, addressee, patient_id, person_id, created, created_by, expires, signature_status) \
         VALUES ('ref-1', '{FACILITY}', '1311234567', '{p}', '{person}', 1, 'dr', 2, 'unsigned')"
    ));

    let (head, _) = store.audit_head().unwrap();
    let history_before = history(&old, &person, head);
    assert!(history_before.len() >= 2, "{history_before:?}");
    let labels: Vec<&Value> = history_before.iter().map(|e| &e["what"]).collect();
    assert!(labels.iter().any(|w| w.as_array().unwrap().iter().any(|x| x != "診療記録")), "{labels:?}");
    let audited_before = audited(&old, &p, head);
    assert!(audited_before >= 3, "{audited_before}");
    let versions_before = versions(&mut raw);
    // References that name nothing stored (a sample's Patient is refused by the validator, so
    // its other records point to nothing): they must name the same nothing afterwards.
    let dangling_before = dangling(&mut raw);
    let resources_before = raw.texts("SELECT rtype || '/' || id FROM resource").len();
    let old_ids: HashSet<String> = collected.iter().map(|k| k.split_once('/').unwrap().1.to_owned()).collect();

    let (np, np2) = (key().id(&p), key().id(&p2));
    let svc = Service::new(store.clone(), "cli").with_id_key(key());

    // A failure late in the rekey (the resources have moved, then the consent settings of the
    // second patient's person collide with some under its new id) leaves the store as it was.
    raw.exec(&format!(
        "INSERT INTO consent_setting (person_id, settings, version, updated, updated_by) \
         VALUES ('{p2}', '{{}}', 1, 1, 'test'), ('{np2}', '{{}}', 1, 1, 'test')"
    ));
    let head_before_failure = store.audit_head().unwrap();
    let failed = svc.rekey_ids(&Ctx::operator("op"), |_, _| {}).unwrap_err();
    assert_eq!(failed.kind, musubi_service::ErrorKind::Conflict, "{failed:?}");
    assert_eq!(versions(&mut raw), versions_before);
    assert_eq!(raw.texts("SELECT rtype || '/' || id FROM collect_source ORDER BY 1"), collected);
    assert_eq!(raw.texts(&format!("SELECT id FROM resource WHERE id = '{np}'")).len(), 0);
    assert_eq!(raw.texts("SELECT old_id FROM id_rekeyed").len(), 0);
    assert_eq!(store.audit_head().unwrap(), head_before_failure);
    raw.exec(&format!("DELETE FROM consent_setting WHERE person_id = '{np2}'"));

    // The rekey, by the operator with the network's key.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s = seen.clone();
    let report = svc
        .rekey_ids(&Ctx::operator("op"), move |done, _| s.store(done, std::sync::atomic::Ordering::Relaxed))
        .unwrap();
    assert_eq!(report.moved, collected.len() as u64, "{report:?}");
    assert_eq!(report.versions_seen, versions_before.len() as u64);
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), report.versions_seen);
    assert!(report.versions_rewritten >= report.moved, "{report:?}");

    // No column names an old id: only the id the system chose stays as it was.
    for (table, col) in ID_COLUMNS {
        let left: Vec<String> =
            raw.texts(&format!("SELECT {col} FROM {table}")).into_iter().filter(|v| deterministic(v)).collect();
        assert!(left.iter().all(|v| v == CHOSEN), "{table}.{col} still holds {left:?}");
    }
    for t in raw.texts("SELECT target FROM idx_ref") {
        let id = t.split_once('/').unwrap().1;
        assert!(!old_ids.contains(id), "idx_ref.target {t}");
    }
    for (table, col) in PERSON_COLUMNS {
        let left: Vec<String> =
            raw.texts(&format!("SELECT {col} FROM {table}")).into_iter().filter(|v| old_ids.contains(v)).collect();
        assert!(left.is_empty(), "{table}.{col} still holds {left:?}");
    }
    assert_eq!(raw.one(&format!("SELECT person_id FROM person_code WHERE person_id = '{np2}'")), np2);
    assert_eq!(raw.one(&format!("SELECT person_id FROM consent_setting WHERE person_id = '{np2}'")), np2);
    assert_eq!(
        raw.texts(&format!("SELECT person_id FROM resource WHERE patient_id = '{np2}' AND person_id <> '{np2}'")).len(),
        0
    );
    assert_eq!(raw.one("SELECT patient_id FROM referral WHERE id = 'ref-1'"), np);
    assert_eq!(raw.one("SELECT person_id FROM referral WHERE id = 'ref-1'"), person, "a real person id stays");

    // Every version is still there, with its version and time; only ids changed in the JSON,
    // and every reference of every version resolves to a stored resource.
    let versions_after = versions(&mut raw);
    assert_eq!(versions_after.len(), versions_before.len());
    // What the rekey should do to a text: every deterministic id keyed (those of collected
    // resources, and those that name nothing stored: a collection under the key would give
    // them the keyed id), but the one a system chose.
    let rename = |s: &str| {
        let mut out = s.to_owned();
        for i in 0..s.len().saturating_sub(35) {
            if let Some(id) = s.get(i..i + 36)
                && deterministic(id)
                && id != CHOSEN
                && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
            {
                out = out.replace(id, &key().id(id));
            }
        }
        out
    };
    let before: BTreeMap<String, String> = versions_before.iter().map(|(k, c)| (rename(k), rename(c))).collect();
    let after: BTreeMap<String, String> = versions_after.into_iter().collect();
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "versions or their times changed");
    for (k, b) in &before {
        assert_eq!(Some(b), after.get(k), "{k}: the rekey changed something besides the ids");
    }
    assert_eq!(raw.texts("SELECT rtype || '/' || id FROM resource").len(), resources_before);
    let renamed: HashSet<String> = dangling_before.iter().map(|r| rename(r)).collect();
    assert_eq!(dangling(&mut raw), renamed, "a reference lost its resource");
    // …and those point where the same input collected under the key would put their resources.
    for r in &renamed {
        assert!(!deterministic(r.rsplit('/').next().unwrap()), "{r}");
    }
    let q_content =
        raw.one(&format!("SELECT content FROM resource_version WHERE rtype = 'Observation' AND id = '{q}'"));
    assert!(q_content.contains(&format!("Patient/{np}")), "{q_content}");
    let chosen =
        raw.one(&format!("SELECT content FROM resource_version WHERE rtype = 'Observation' AND id = '{CHOSEN}'"));
    assert!(chosen.contains(&format!("Patient/{np}")), "{chosen}");

    // Reads go on as before, under the new ids: the whole record, the MPI person (after a
    // restart, with a fresh service), the patient's access history with the reads made before
    // the rekey, and the operator's audit search by patient.
    let after_svc = Service::new(store.clone(), "test-restarted").with_id_key(key());
    assert_eq!(store.current(ResourceType::Patient, &p).unwrap(), None);
    assert_eq!(everything_count(&after_svc, &np), everything);
    assert_eq!(store.read(|r| r.person_of_patient(&np)).unwrap(), Some(person.clone()));
    let local = raw.one(&format!("SELECT local_id FROM mpi_link WHERE patient_id = '{np}'"));
    assert_eq!(after_svc.mpi_person_of(FACILITY, &local).unwrap(), Some(person.clone()));
    assert_eq!(history(&after_svc, &person, head), history_before, "the patient no longer sees who looked");
    assert_eq!(audited(&after_svc, &np, head), audited_before);
    assert_eq!(audited(&after_svc, &p, head), audited_before, "the old id still finds its entries");
    // The audit chain is untouched and holds one record of the rekey.
    let verified = musubi_store::verify_audit_chain(&store, |_| {}).unwrap();
    assert!(verified.is_ok(), "{verified:?}");
    let last = store.read(|r| r.audit_page(head, 10)).unwrap();
    let rekeys: Vec<Value> = last
        .iter()
        .map(|a| serde_json::from_str::<Value>(&a.record).unwrap())
        .filter(|a| a["subtype"] == "ids-rekey")
        .collect();
    assert_eq!(rekeys.len(), 1, "{last:?}");
    assert!(
        rekeys[0]["outcome_text"].as_str().unwrap_or("").starts_with(&format!("{} collected", report.moved)),
        "{}",
        rekeys[0]
    );

    // A second rekey has nothing to do.
    let again = svc.rekey_ids(&Ctx::operator("op"), |_, _| {}).unwrap();
    assert_eq!((again.moved, again.versions_rewritten), (0, 0), "{again:?}");
    assert_eq!(versions(&mut raw).into_iter().collect::<BTreeMap<_, _>>(), after);

    // The same input collected again under the key: every old id maps to the stored keyed id,
    // so nothing is created or changed.
    let opts = CollectOptions { force: true, ..Default::default() };
    let again = collect_ssmix2(&after_svc, &root, FACILITY.parse().unwrap(), &opts, &NoProgress).unwrap();
    assert_eq!((again.stats.created, again.stats.updated), (0, 0), "{:?}", again.stats);
    assert_eq!(
        again.stats.unchanged + again.stats.superseded,
        first.stats.created + first.stats.updated + first.stats.unchanged + first.stats.superseded
    );
    assert_eq!(raw.texts("SELECT rtype || '/' || id FROM resource").len(), resources_before);
    assert_eq!(versions(&mut raw).len(), versions_before.len());
}

#[test]
fn rekey_of_a_collected_store_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = Store::open_sqlite(&data).unwrap();
    let raw = Raw::Lite(rusqlite::Connection::open(data.join(musubi_store::SQLITE_FILE)).unwrap());
    scenario(store, raw, dir.path());
}

#[test]
fn rekey_of_a_collected_store_on_postgresql() {
    let admin = std::env::var("MUSUBI_TEST_POSTGRES").expect("MUSUBI_TEST_POSTGRES is not set: run scripts/test");
    let name = format!("musubi_rekey_{}", std::process::id());
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_postgres(&url).unwrap();
        let raw = Raw::Pg(postgres::Client::connect(&url, postgres::NoTls).unwrap());
        scenario(store, raw, dir.path());
    }
    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

fn musubi() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_musubi"));
    c.env("MUSUBI_LOG", "warn");
    c
}

fn ok(out: Output) -> (String, String) {
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{stderr}", out.status);
    (stdout, stderr)
}

/// Starts `musubi serve` until it listens, stops it, and gives what it printed.
fn serve_briefly(data: &Path, audit_key: &Path) -> String {
    let mut child = musubi()
        .args(["serve", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--audit-key", audit_key.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut seen, rest) = crate::cli::until_listening(&mut child);
    let _ = child.kill();
    let _ = child.wait();
    seen.extend(rest);
    seen.join("\n")
}

/// The operator's path: the server warns, `musubi ids rekey` moves the ids (refusing to make up
/// a key), the audit log still verifies, a second run and a forced collection change nothing,
/// and the server no longer warns.
#[test]
fn the_rekey_command_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    copy_tree(Path::new(SAMPLES), &root);
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    {
        let old = Service::new(Store::open_sqlite(&data).unwrap(), "test");
        collect_ssmix2(&old, &root, FACILITY.parse().unwrap(), &CollectOptions::default(), &NoProgress).unwrap();
    }
    let count_deterministic = |data: &Path| -> usize {
        let c = rusqlite::Connection::open(data.join(musubi_store::SQLITE_FILE)).unwrap();
        let mut st = c.prepare("SELECT id FROM resource").unwrap();
        st.query_map([], |r| r.get::<_, String>(0)).unwrap().filter(|id| deterministic(id.as_ref().unwrap())).count()
    };
    let before = count_deterministic(&data);
    assert!(before > 50, "{before}");

    // Without the network's key the command refuses (a key made up here would give the store
    // ids no server can compute).
    let out = musubi().args(["ids", "rekey", "--data", d, "--quiet"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("musubi-id.key がありません") && err.contains("--create-key"), "{err}");

    // The server (which creates the key on its first start) warns while old ids remain.
    let witness = tempfile::tempdir().unwrap();
    let audit_key = witness.path().join("anchor.key");
    ok(musubi().args(["audit", "keygen", "--out", audit_key.to_str().unwrap(), "--data", d]).output().unwrap());
    let log = serve_briefly(&data, &audit_key);
    assert!(log.contains("musubi ids rekey"), "{log}");
    let id_key: PathBuf = dir.path().join(musubi_service::ids::KEY_FILE);
    assert!(id_key.exists());

    let (_, err) = ok(musubi()
        .args(["ids", "rekey", "--data", d, "--quiet"])
        .env("MUSUBI_AUDIT_KEY", &audit_key)
        .output()
        .unwrap());
    assert!(err.contains(&format!("収集リソース {before} 件を推測できない ID に移しました")), "{err}");
    assert_eq!(count_deterministic(&data), 0);
    let pubkey = format!("{}.pub", audit_key.display());
    let (out, _) = ok(musubi().args(["audit", "verify", "--data", d, "--audit-pubkey", &pubkey]).output().unwrap());
    assert!(out.starts_with("OK"), "{out}");

    let (_, err) = ok(musubi().args(["ids", "rekey", "--data", d, "--quiet"]).output().unwrap());
    assert!(err.contains("付け替えの必要なリソースはありません"), "{err}");
    let (_, err) = ok(musubi()
        .args(["collect", "ssmix2", root.to_str().unwrap(), "--facility", FACILITY, "--data", d, "--quiet", "--force"])
        .output()
        .unwrap());
    assert!(err.contains("(0 created, 0 updated"), "{err}");
    assert_eq!(count_deterministic(&data), 0);
    let log = serve_briefly(&data, &audit_key);
    assert!(!log.contains("musubi ids rekey"), "{log}");
    // Without the rekey's note the server looks, finds none, and notes it.
    let setting = |sql: &str| {
        let c = rusqlite::Connection::open(data.join(musubi_store::SQLITE_FILE)).unwrap();
        c.execute(sql, [musubi_store::rekey::ALL_KEYED_SETTING]).unwrap()
    };
    assert_eq!(setting("DELETE FROM setting WHERE key = ?1"), 1);
    let log = serve_briefly(&data, &audit_key);
    assert!(!log.contains("musubi ids rekey"), "{log}");
    assert_eq!(setting("UPDATE setting SET value = value WHERE key = ?1"), 1);
}

/// The measurement behind the report: a synthetic region (`MUSUBI_REKEY_PERSONS`, default
/// 10,000; SS-MIX2 and UKE) collected the old way, then rekeyed, on SQLite and (with
/// `MUSUBI_TEST_POSTGRES`) PostgreSQL; with the start-up check before and after. Run it
/// optimized: `cargo test --release -p musubi --test it rekey_timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn rekey_timing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("MUSUBI_LOG").unwrap_or_else(|_| "warn,musubi_store::rekey=info".into()),
        ))
        .with_writer(std::io::stderr)
        .try_init();
    let persons: u64 = std::env::var("MUSUBI_REKEY_PERSONS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = musubi_synth::SynthOptions::new(persons, 7, dir.path().join("synth"));
    opts.formats = musubi_synth::Formats { fhir: false, ssmix2: true, uke: true, truth: false };
    musubi_synth::generate(&opts, &musubi_synth::NoProgress).unwrap();
    let run = |store: Store, name: &str| {
        let old = Service::new(store.clone(), "timing");
        let t = Instant::now();
        let ssmix2 = dir.path().join("synth/ssmix2");
        for f in std::fs::read_dir(&ssmix2).unwrap() {
            let f = f.unwrap();
            let code = f.file_name().to_string_lossy().into_owned();
            collect_ssmix2(&old, &f.path(), code.parse().unwrap(), &CollectOptions::default(), &NoProgress).unwrap();
        }
        musubi_collect::collect_uke(
            &old,
            &[dir.path().join("synth/uke")],
            None,
            &CollectOptions::default(),
            &NoProgress,
        )
        .unwrap();
        let collect_s = t.elapsed().as_secs_f64();
        let check = |s: &Store| {
            let t = Instant::now();
            let remain = s.read(|r| r.deterministic_ids_remain()).unwrap();
            (remain, t.elapsed().as_secs_f64() * 1e3)
        };
        let before = check(&store);
        let svc = Service::new(store.clone(), "timing").with_id_key(key());
        let t = Instant::now();
        let r = svc.rekey_ids(&Ctx::operator("op"), |_, _| {}).unwrap();
        let rekey_s = t.elapsed().as_secs_f64();
        let after = check(&store);
        let t = Instant::now();
        let again = svc.rekey_ids(&Ctx::operator("op"), |_, _| {}).unwrap();
        let again_s = t.elapsed().as_secs_f64();
        eprintln!(
            "{name}: {persons} persons collected in {collect_s:.1} s; rekey: {} resources moved, {} of {} versions rewritten in {rekey_s:.2} s ({:.0} versions/s); second run {} moved in {again_s:.2} s; start-up check {:?} ms before, {:?} ms after",
            r.moved,
            r.versions_rewritten,
            r.versions_seen,
            r.versions_seen as f64 / rekey_s,
            again.moved,
            before,
            after
        );
        assert!(before.0 && !after.0 && again.moved == 0);
    };
    let only = std::env::var("MUSUBI_REKEY_ONLY").unwrap_or_default();
    if only != "postgres" {
        run(Store::open_sqlite(&dir.path().join("data")).unwrap(), "sqlite");
    }
    if let Ok(admin) = std::env::var("MUSUBI_TEST_POSTGRES")
        && only != "sqlite"
    {
        let name = format!("musubi_rekey_timing_{}", std::process::id());
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        run(Store::open_postgres(&url).unwrap(), "postgres");
        let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}
