//! The UKE collector through the service into a real store: files from the synthetic
//! generator land (or wait in the quarantine with where and why) with their facility-use
//! facts; hand-written edge cases — both date editions, a truncated line, a wrong record
//! order, a bad code, a cut file, another facility's file — quarantine exactly the bad
//! receipts or files; a second run changes nothing; a fixed file is picked up.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use common::*;
use musubi_collect::{CollectOptions, NoProgress, Summary, collect_uke};
use musubi_domain::FacilityCode;
use musubi_service::Service;
use musubi_store::Store;
use musubi_store::collect::{FileOutcome, QuarantineQuery, SourceKind};
use serde_json::Value;

fn sqlite(dir: &Path) -> (Store, Service) {
    let store = Store::open_sqlite(&dir.join("data")).unwrap();
    let service = Service::new(store.clone(), "test");
    (store, service)
}

fn run(service: &Service, paths: &[PathBuf], facility: Option<FacilityCode>) -> Summary {
    collect_uke(service, paths, facility, &CollectOptions::default(), &NoProgress).unwrap()
}

fn strip_server_meta(mut v: Value) -> Value {
    if let Some(m) = v.get_mut("meta").and_then(Value::as_object_mut) {
        m.remove("versionId");
        m.remove("lastUpdated");
        if m.is_empty() {
            v.as_object_mut().unwrap().remove("meta");
        }
    }
    v
}

#[test]
fn generated_files_land_with_facility_uses_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = musubi_synth::SynthOptions::new(150, 11, dir.path().join("synth"));
    opts.formats = musubi_synth::Formats { fhir: false, ssmix2: false, uke: true, truth: false };
    opts.years = 1;
    let manifest = musubi_synth::generate(&opts, &musubi_synth::NoProgress).unwrap();
    assert!(manifest.uke_files > 20, "{manifest:?}");
    let uke_dir = dir.path().join("synth/uke");
    let chosen: Vec<PathBuf> = files(&uke_dir).into_iter().map(|f| uke_dir.join(f)).collect();
    let receipts_in_chosen: usize = chosen
        .iter()
        .map(|p| musubi_uke::collect("x.UKE", &std::fs::read(p).unwrap(), None).unwrap().receipts.len())
        .sum();
    assert!(chosen.len() > 10, "{manifest:?}");
    let (store, service) = sqlite(dir.path());
    let s = run(&service, &chosen, None);
    assert_eq!(s.files_read, chosen.len() as u64);
    assert_eq!(s.stats.units, receipts_in_chosen as u64);
    assert!(s.records > s.stats.units * 3);

    // A correct receipt computer's files land whole: nothing is quarantined.
    let open = open_quarantine(&service);
    assert!(open.is_empty(), "quarantined: {:#?}", &open[..open.len().min(5)]);
    let mut receipts = 0;
    let mut dispenses = 0;
    let mut ids = HashSet::new();
    for p in &chosen {
        let rel = p.display();
        let abs = std::fs::canonicalize(p).unwrap();
        let key = abs.to_string_lossy().into_owned();
        let bytes = std::fs::read(&abs).unwrap();
        let name = abs.file_name().unwrap().to_str().unwrap();
        let f = musubi_uke::collect(name, &bytes, None).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let state = &store.read(|r| r.collect_file(SourceKind::Uke, &key)).unwrap()[0];
        assert_eq!(state.facility, f.facility.as_str());
        assert_eq!(state.sha256, f.sha256);
        assert_eq!(state.outcome, FileOutcome::Landed, "{rel}");
        for r in f.receipts {
            receipts += 1;
            let m = r.result.unwrap_or_else(|e| panic!("{rel}: receipt quarantined: {e:?}"));
            // The facility-use fact the consent settings list facilities from.
            let uses = store.read(|s| s.facility_uses(Some(&m.facility_use.patient_id), None)).unwrap();
            let u = uses
                .iter()
                .find(|u| u.facility == f.facility.as_str() && u.year_month == m.facility_use.year_month)
                .unwrap_or_else(|| panic!("{rel}: no facility use for {:?}", m.facility_use));
            assert_eq!(u.insurance_id, m.facility_use.insurance_id.as_ref().map(|i| i.to_string()));
            for x in m.resources {
                let got = current(&store, x.resource_type, &x.id).unwrap_or_else(|| panic!("{} not stored", x.key));
                if x.resource_type == "Patient" {
                    // The receipt's Patient is shared by every month's receipt: the newest
                    // month's version is kept.
                    assert_eq!(got["identifier"], x.resource["identifier"], "{}", x.key);
                    continue;
                }
                // Every other resource is the receipt's own: ids never collide between a
                // facility's files of one month (社保/国保, 医科/DPC).
                assert!(ids.insert(x.id.clone()), "{}: id used twice", x.key);
                assert_eq!(strip_server_meta(got), strip_server_meta(x.resource), "{}", x.key);
                if x.resource_type == "MedicationDispense" {
                    dispenses += 1;
                }
            }
        }
    }
    assert_eq!(receipts, receipts_in_chosen);
    assert!(dispenses > 0, "the pharmacies' dispenses land");

    let before = snapshot(&store);
    let again = run(&service, &chosen, None);
    assert_eq!((again.files_read, again.files_unchanged), (0, chosen.len() as u64));
    assert_eq!(snapshot(&store), before);
}

/// A record with `fields` first and empty fields up to `total`.
fn rec(fields: &[&str], total: usize) -> String {
    let mut v: Vec<String> = fields.iter().map(|s| (*s).to_owned()).collect();
    v.resize(total.max(fields.len()), String::new());
    v.join(",")
}

/// An SI/IY record of the current edition with 算定日 counts on the given days.
fn with_days(head: &[&str], days: &[(usize, &str)]) -> String {
    let mut v: Vec<String> = head.iter().map(|s| (*s).to_owned()).collect();
    v.resize(44, String::new());
    for (d, val) in days {
        v[13 + d - 1] = (*val).to_owned();
    }
    v.join(",")
}

/// Shift_JIS, CR LF, the 0x1A terminator.
fn uke_bytes(lines: &[String]) -> Vec<u8> {
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    let (b, _, bad) = encoding_rs::SHIFT_JIS.encode(&text);
    assert!(!bad);
    let mut out = b.into_owned();
    out.push(0x1a);
    out
}

fn re(no: &str, ym: &str, name: &str, sex: &str, birth: &str, karte: &str, kana: &str) -> String {
    let mut v = vec![String::new(); 38];
    for (i, s) in ["RE", no, "1112", ym, name, sex, birth].iter().enumerate() {
        v[i] = (*s).to_owned();
    }
    v[13] = karte.to_owned();
    v[36] = kana.to_owned();
    v.join(",")
}

/// A 医科 file of the current edition (西暦, 算定日 fields) billed for `ym`: two receipts.
/// Each case below bills another month, so that their ids (which include the 請求年月) are
/// their own.
fn current_edition(ym: &str) -> Vec<String> {
    vec![
        rec(&["IR", "1", "13", "1", "8814790", "", "むすび内科クリニック", ym, "00", "0312345678"], 10),
        re("1", ym, "架空　一郎", "1", "19700401", "K0001", "カクウ　イチロウ"),
        rec(&["HO", "06139999", "１２", "３４", "2", "465"], 15),
        rec(&["KO", "54136015", "1234566", "", "2", "465"], 12),
        rec(&["SN", "1", "01", "06139999", "１２", "３４", "01"], 9),
        rec(&["SY", "8848176", "20240501", "1", "", "", "01", ""], 8),
        rec(&["SY", "0000999", "20240510", "2", "80028003", "架空の病名", "", "経過観察"], 8),
        with_days(&["SI", "12", "", "112007410", "", "73", "2"], &[(7, "1"), (21, "1")]),
        rec(&["CO", "12", "", "810000001", "再診時に説明"], 5),
        with_days(&["IY", "21", "", "620007880", "3", "12", "14"], &[(7, "14")]),
        rec(&["TO", "40", "", "700010000", "1", "10", "1", "", "", "", "架空の器材"], 48),
        re("2", ym, "架空　花子", "2", "19820911", "K0002", "カクウ　ハナコ"),
        rec(&["HO", "39131234", "", "00112233", "1", "120"], 15),
        rec(&["SY", "8849692", "20240401", "1", "", "", "", ""], 8),
        rec(&["GO", "3", "585", "99"], 4),
    ]
}

/// A 医科 file of the older edition (和暦 dates, no 算定日 fields).
fn older_edition() -> Vec<String> {
    vec![
        rec(&["IR", "2", "13", "1", "8814790", "", "むすび医院", "43012", "00", ""], 10),
        rec(&["RE", "1", "1112", "43012", "カクウ　タロウ", "1", "3230405"], 35),
        rec(&["HO", "  133066", "", "1234", "1", "100"], 15),
        rec(&["SY", "8848177", "4301201", "4", "", "", "", ""], 8),
        rec(&["SI", "11", "", "111000110", "", "282", "1"], 13),
        rec(&["IY", "21", "", "610453119", "2", "5", "7"], 13),
        rec(&["GO", "1", "100", "99"], 4),
    ]
}

fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, uke_bytes(lines)).unwrap();
    std::fs::canonicalize(p).unwrap()
}

/// The stored resources of type `rtype` that the receipts of a file map to (by the pure
/// mapper's ids), in file order.
fn stored_of(store: &Store, path: &Path, rtype: &str) -> Vec<Value> {
    let bytes = std::fs::read(path).unwrap();
    let Ok(f) = musubi_uke::collect("x.UKE", &bytes, None) else { return Vec::new() };
    let mut out = Vec::new();
    for r in f.receipts {
        let Ok(m) = r.result else { continue };
        for x in m.resources.iter().filter(|x| x.resource_type == rtype) {
            if let Some(v) = current(store, rtype, &x.id) {
                out.push(v);
            }
        }
    }
    out
}

#[test]
fn hand_written_edge_cases() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let current = write(&inbox, "current.UKE", &current_edition("202405"));
    let older = write(&inbox, "older.UKE", &older_edition());
    let mut lines = current_edition("202401");
    // Receipt 2's SY is cut after its third field.
    lines[13] = "SY,8849692,20240401".into();
    let cut = write(&inbox, "cut.UKE", &lines);
    let mut lines = current_edition("202402");
    // Receipt 2: SY before HO.
    lines.swap(12, 13);
    let order = write(&inbox, "order.UKE", &lines);
    let mut lines = current_edition("202403");
    lines[5] = rec(&["SY", "12345AB", "20240501", "1", "", "", "01", ""], 8);
    let code = write(&inbox, "code.UKE", &lines);
    let mut lines = current_edition("202404");
    lines.pop();
    let nogo = write(&inbox, "nogo.UKE", &lines);
    // Not a UKE file by name: left alone when the directory is collected.
    std::fs::write(inbox.join("notes.txt"), "メモ").unwrap();

    let (store, service) = sqlite(dir.path());
    let s = run(&service, std::slice::from_ref(&inbox), None);
    assert_eq!(s.files_seen, 6);
    let state = |p: &PathBuf| store.read(|r| r.collect_file(SourceKind::Uke, p.to_str().unwrap())).unwrap()[0].clone();
    let q_of = |p: &PathBuf| -> Vec<musubi_store::collect::QuarantineEntry> {
        service
            .collect_quarantine(
                &operator(),
                QuarantineQuery { path: Some(p.to_string_lossy().into()), ..Default::default() },
            )
            .unwrap()
    };

    // Current edition: both receipts land, with values.
    assert_eq!(state(&current).outcome, FileOutcome::Landed);
    assert_eq!(state(&current).facility, "1318814790");
    let patients = stored_of(&store, &current, "Patient");
    let ichiro = patients.iter().find(|p| p["name"][0]["text"] == "架空　一郎").unwrap();
    assert_eq!(ichiro["birthDate"], "1970-04-01");
    assert_eq!(ichiro["identifier"][0]["value"], "K0001");
    assert_eq!(ichiro["identifier"][1]["value"], "06139999:１２:３４:01");
    let conditions = stored_of(&store, &current, "Condition");
    let c = conditions.iter().find(|c| c["code"]["coding"][0]["code"] == "8848176").unwrap();
    assert_eq!(c["onsetDateTime"], "2024-05-01");
    let procs = stored_of(&store, &current, "Procedure");
    assert!(procs.iter().any(|p| p["code"]["coding"][0]["code"] == "112007410"), "{procs:?}");
    let meds = stored_of(&store, &current, "MedicationStatement");
    assert!(meds.iter().any(|m| m["medicationCodeableConcept"]["coding"][0]["code"] == "620007880"), "{meds:?}");
    // The months this person used the facility: the receipts that landed (receipt 1 of the
    // bad-code file did not).
    let uses = store.read(|r| r.facility_uses(None, Some("06139999:１２:３４:01"))).unwrap();
    let months: Vec<(&str, &str)> = uses.iter().map(|u| (u.facility.as_str(), u.year_month.as_str())).collect();
    assert_eq!(months, [("1318814790", "2024-05"), ("1318814790", "2024-02"), ("1318814790", "2024-01")]);
    assert!(uses.iter().all(|u| u.patient_id == ichiro["id"].as_str().unwrap()));

    // Older edition: 和暦 dates converted.
    assert_eq!(state(&older).outcome, FileOutcome::Landed);
    let c = &stored_of(&store, &older, "Condition")[0];
    assert_eq!(c["onsetDateTime"], "2018-12-01");
    assert_eq!(c["code"]["text"], "１７α－水酸化酵素欠損症");
    assert_eq!(stored_of(&store, &older, "Patient")[0]["birthDate"], "1948-04-05");
    assert_eq!(store.read(|r| r.facility_uses(None, Some("00133066::1234:"))).unwrap()[0].year_month, "2018-12");

    // A truncated line: its receipt (2) is quarantined, receipt 1 lands.
    assert_eq!(state(&cut).outcome, FileOutcome::Partial);
    let q = q_of(&cut);
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].line, q[0].segment.as_deref(), q[0].unit.as_deref()), (Some(14), Some("SY"), Some("2")));
    assert!(q[0].reason.contains("フィールド数が 3 です（8 が必要です）"), "{}", q[0].reason);
    assert!(q[0].content.as_deref().unwrap().contains("SY,8849692,20240401"));
    assert_eq!(q[0].blob_sha256.as_deref(), Some(state(&cut).sha256.as_str()));
    // Exactly receipt 1's resources were written.
    let pure = musubi_uke::collect("cut.UKE", &std::fs::read(&cut).unwrap(), None).unwrap();
    let first = pure.receipts[0].result.as_ref().unwrap().resources.len() as i64;
    assert_eq!((state(&cut).resources, state(&cut).quarantined), (first, 1));
    assert_eq!(stored_of(&store, &cut, "Condition").len(), 2);

    // A wrong record order: receipt 2 quarantined, named.
    let q = q_of(&order);
    assert!(q.iter().all(|e| e.unit.as_deref() == Some("2")));
    let e = q.iter().find(|e| e.reason.contains("HO レコードが SY レコードより後にあります")).unwrap();
    assert_eq!((e.line, e.segment.as_deref()), (Some(14), Some("HO")));

    // A bad code: receipt 1 quarantined with the field; receipt 2 lands.
    let q = q_of(&code);
    let e = q.iter().find(|e| e.segment.as_deref() == Some("SY")).unwrap();
    assert_eq!((e.line, e.field, e.unit.as_deref()), (Some(6), Some(2), Some("1")));
    assert_eq!(e.reason, "SY-2 傷病名コード \"12345AB\" が 7 桁の数字ではありません");
    assert_eq!(state(&code).outcome, FileOutcome::Partial);

    // A cut file (no GO): quarantined whole, nothing of it written.
    assert_eq!(state(&nogo).outcome, FileOutcome::Quarantined);
    assert!(q_of(&nogo).iter().any(|e| e.reason.contains("GO レコードがありません")));
    assert_eq!(state(&nogo).resources, 0);

    // Another facility's file, when the collector runs for one facility.
    let other: FacilityCode = "1312345678".parse().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let foreign = write(&elsewhere, "RECEIPTC.UKE", &current_edition("202406"));
    let s = run(&service, std::slice::from_ref(&foreign), Some(other));
    assert_eq!(s.stats.quarantined, 1);
    let q = q_of(&foreign);
    assert_eq!(q[0].facility, "1312345678");

    // A second run changes nothing.
    let before = snapshot(&store);
    let again = run(&service, std::slice::from_ref(&inbox), None);
    assert_eq!((again.files_read, again.files_unchanged), (0, 6));
    assert_eq!(snapshot(&store), before);

    // The fixed file is picked up: its receipt lands and the entries are resolved.
    std::fs::write(&code, uke_bytes(&current_edition("202403"))).unwrap();
    let s = run(&service, std::slice::from_ref(&inbox), None);
    assert_eq!(s.files_read, 1);
    assert!(q_of(&code).is_empty());
    assert_eq!(state(&code).outcome, FileOutcome::Landed);
    let all = service
        .collect_quarantine(
            &operator(),
            QuarantineQuery { path: Some(code.to_string_lossy().into()), include_resolved: true, ..Default::default() },
        )
        .unwrap();
    assert!(!all.is_empty() && all.iter().all(|e| e.resolved_at.is_some()));
    let names: HashSet<String> = stored_of(&store, &code, "Condition")
        .iter()
        .map(|c| c["code"]["coding"][0]["code"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains("8848176"), "{names:?}");
}

/// Panics (like a kill) once `chunks` chunks were committed.
struct StopAfter(std::sync::atomic::AtomicUsize);

impl musubi_collect::Progress for StopAfter {
    fn start(&self, _: u64) {}
    fn file(&self, _: u64) {}
    fn committed(&self, _: &musubi_service::collect::CollectStats) {
        if self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            panic!("interrupted");
        }
    }
}

#[test]
fn large_files_split_across_chunks_survive_an_interruption() {
    // Files larger than a chunk are committed in parts; the file state comes with the last
    // part, so a file cut off after some parts is collected again and ends the same.
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for (i, ym) in ["202401", "202402", "202403"].iter().enumerate() {
        let mut lines = current_edition(ym);
        if i == 1 {
            lines[13] = "SY,8849692,20240401".into();
        }
        write(&inbox, &format!("{ym}.UKE"), &lines);
    }
    let opts = CollectOptions { chunk: 4, threads: 2, ..Default::default() };
    let whole = tempfile::tempdir().unwrap();
    let (ws, wsvc) = sqlite(whole.path());
    let counter = StopAfter(std::sync::atomic::AtomicUsize::new(usize::MAX));
    let s = collect_uke(&wsvc, std::slice::from_ref(&inbox), None, &opts, &counter).unwrap();
    assert_eq!(s.files_read, 3);
    let chunks = usize::MAX - counter.0.load(std::sync::atomic::Ordering::SeqCst);
    assert!(chunks >= 4, "the files were split into {chunks} chunks");
    let expected = snapshot(&ws);
    for stop_after in 1..chunks {
        let part = tempfile::tempdir().unwrap();
        let (ps, psvc) = sqlite(part.path());
        let stopper = StopAfter(std::sync::atomic::AtomicUsize::new(stop_after));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            collect_uke(&psvc, std::slice::from_ref(&inbox), None, &opts, &stopper)
        }));
        assert!(r.is_err(), "interrupted");
        collect_uke(&psvc, std::slice::from_ref(&inbox), None, &opts, &NoProgress).unwrap();
        assert_eq!(snapshot(&ps), expected, "interrupted after {stop_after} chunks");
    }
}
