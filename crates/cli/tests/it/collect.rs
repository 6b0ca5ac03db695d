//! `musubi collect` as an operator runs it: the SS-MIX2 samples with the quarantine report (text
//! and JSON), UKE files from the generator, and a kill -9 in the middle of a collection followed
//! by a rerun, which must end with the same store as an uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use musubi_store::Store;
use musubi_store::collect::{QuarantineQuery, SourceKind};
use serde_json::Value;

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../reference/ssmix2/SSMIX2DataTestingTool/sampleData");

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

#[test]
fn ssmix2_samples_and_the_quarantine_report() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    copy_tree(Path::new(SAMPLES), &root);
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let (_, err) = ok(musubi()
        .args(["collect", "ssmix2", root.to_str().unwrap(), "--facility", "1318814790", "--data", d, "--quiet"])
        .output()
        .unwrap());
    assert!(err.contains("ssmix2: 22 files (22 read, 0 unchanged), 21 messages, 98 resources (98 created"), "{err}");
    assert!(err.contains("3 quarantined"), "{err}");
    assert!(err.contains("musubi collect report"), "{err}");

    // The report, for people: file, line, segment, reason.
    let (out, err) = ok(musubi().args(["collect", "report", "--data", d]).output().unwrap());
    assert!(err.contains("3 件"), "{err}");
    let misplaced = out.lines().find(|l| l.contains("/ADT-31/")).expect("the misplaced file is reported");
    assert!(
        misplaced.contains("1番目のディレクトリ \"000\" がファイル名の患者ID \"9999013\" と一致しません"),
        "{misplaced}"
    );
    // The sample's NutritionOrder (OMD) is a type Musubi does not keep: quarantined, named.
    let diet = out.lines().find(|l| l.contains("/OMD/")).expect("the OMD message is reported");
    assert!(diet.contains(":6\t") && diet.contains("NutritionOrder"), "{diet}");

    // …and for programs.
    let (json, _) = ok(musubi().args(["collect", "report", "--data", d, "--format", "json"]).output().unwrap());
    let v: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(v.len(), 3);
    let m = v.iter().find(|e| e["file"].as_str().unwrap().contains("/ADT-31/")).unwrap();
    assert_eq!(m["kind"], "ssmix2");
    assert_eq!(m["facility"], "1318814790");
    assert_eq!(m["resolved"], false);
    assert!(m["blob"].is_string());
    // The checker's deliberately broken OMP-11 message: its RXA has no order (ORC) to take the
    // Rp number from, so the record has one identifier where JP Core needs two; element, rule
    // and line are named.
    let admin = v.iter().find(|e| e["file"].as_str().unwrap().contains("/OMP-11/0000001_")).unwrap();
    assert_eq!(admin["element"], "MedicationAdministration.identifier");
    assert_eq!(admin["rule"], "JP_MedicationAdministration: MedicationAdministration.identifier min=2");
    assert_eq!(admin["line"], 27);
    let body: Value = serde_json::from_str(admin["content"].as_str().unwrap()).unwrap();
    assert_eq!(body["resourceType"], "MedicationAdministration");

    // Another facility's entries: none. Only one collector's: all of them.
    let (json, _) = ok(musubi()
        .args(["collect", "report", "--data", d, "--format", "json", "--facility", "2712345678"])
        .output()
        .unwrap());
    assert_eq!(serde_json::from_str::<Vec<Value>>(&json).unwrap().len(), 0);
    let (json, _) =
        ok(musubi().args(["collect", "report", "--data", d, "--format", "json", "--kind", "uke"]).output().unwrap());
    assert_eq!(serde_json::from_str::<Vec<Value>>(&json).unwrap().len(), 0);

    // Incremental: a second run reads nothing.
    let (_, err) = ok(musubi()
        .args(["collect", "ssmix2", root.to_str().unwrap(), "--facility", "1318814790", "--data", d, "--quiet"])
        .output()
        .unwrap());
    assert!(err.contains("22 files (0 read, 22 unchanged), 0 messages"), "{err}");

    // Bad arguments are named.
    let out = musubi()
        .args(["collect", "ssmix2", root.to_str().unwrap(), "--facility", "13188147", "--data", d])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--facility 13188147"));
}

#[test]
fn uke_files_from_the_generator() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = musubi_synth::SynthOptions::new(120, 5, dir.path().join("synth"));
    opts.formats = musubi_synth::Formats { fhir: false, ssmix2: false, uke: true, truth: false };
    opts.years = 1;
    let manifest = musubi_synth::generate(&opts, &musubi_synth::NoProgress).unwrap();
    let data = dir.path().join("data");
    let uke = dir.path().join("synth/uke");
    let (_, err) = ok(musubi()
        .args(["collect", "uke", uke.to_str().unwrap(), "--data", data.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap());
    let expected = format!(
        "uke: {} files ({} read, 0 unchanged), {} receipts",
        manifest.uke_files, manifest.uke_files, manifest.uke_receipts
    );
    assert!(err.contains(&expected), "{err}\nexpected {expected}");
    assert!(err.contains("records/s"), "{err}");
    let store = Store::open_sqlite(&data).unwrap();
    let files = store.read(|r| r.collect_files(None, SourceKind::Uke)).unwrap();
    assert_eq!(files.len() as u64, manifest.uke_files);
    assert!(files.iter().all(|f| f.facility.len() == 10));
}

/// What the collector wrote, without write times.
fn snapshot(data: &Path) -> Value {
    let store = Store::open_sqlite(data).unwrap();
    let (_, versions) =
        store.read(|r| r.history(None, None, None, &musubi_store::Scope::all(), 0, 10_000_000)).unwrap();
    let mut vs: Vec<String> = versions
        .into_iter()
        .map(|(v, _)| {
            let mut c: Value = v.content.as_deref().map_or(Value::Null, |c| serde_json::from_str(c).unwrap());
            if let Some(m) = c.get_mut("meta").and_then(Value::as_object_mut) {
                m.remove("lastUpdated");
            }
            format!("{}/{}/{}/{}/{c}", v.rtype, v.id, v.version, v.deleted)
        })
        .collect();
    vs.sort();
    let mut files: Vec<String> = store
        .read(|r| r.collect_files(None, SourceKind::Ssmix2))
        .unwrap()
        .into_iter()
        .map(|f| format!("{} {} {} {} {}", f.path, f.sha256, f.outcome.as_str(), f.resources, f.quarantined))
        .collect();
    files.sort();
    let q: Vec<String> = store
        .read(|r| r.quarantine(&QuarantineQuery { include_resolved: true, ..Default::default() }))
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {} {:?} {:?} {:?} {}", e.path, e.seq, e.unit, e.line, e.rule, e.reason))
        .collect();
    serde_json::json!({"versions": vs, "files": files, "quarantine": q})
}

fn collect_args(root: &Path, facility: &str, data: &Path) -> Vec<String> {
    ["collect", "ssmix2", root.to_str().unwrap(), "--facility", facility, "--data", data.to_str().unwrap()]
        .into_iter()
        .map(str::to_owned)
        .chain(["--quiet", "--chunk", "5", "--threads", "1"].map(str::to_owned))
        .collect()
}

#[test]
fn kill_9_during_a_collection_then_a_rerun_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = musubi_synth::SynthOptions::new(4000, 3, dir.path().join("synth"));
    opts.formats = musubi_synth::Formats { fhir: false, ssmix2: true, uke: false, truth: false };
    opts.years = 1;
    musubi_synth::generate(&opts, &musubi_synth::NoProgress).unwrap();
    // The facility with the largest storage.
    let ss = dir.path().join("synth/ssmix2");
    let (root, facility): (PathBuf, String) = std::fs::read_dir(&ss)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let n = walkdir_count(&p);
            (n, p)
        })
        .max()
        .map(|(_, p)| {
            let f = p.file_name().unwrap().to_str().unwrap().to_owned();
            (p, f)
        })
        .unwrap();

    let whole = dir.path().join("whole");
    ok(musubi().args(collect_args(&root, &facility, &whole)).output().unwrap());

    let killed = dir.path().join("killed");
    let mut child = musubi()
        .args(collect_args(&root, &facility, &killed))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some files are committed, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "nothing was committed");
        if committed_files(&killed) >= 20 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(child.try_wait().unwrap().is_none(), "the collection finished before it could be killed");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let total = walkdir_count(&root);
    let done = committed_files(&killed);
    assert!(done < total, "the kill came before the end ({done} of {total})");

    let (_, err) = ok(musubi().args(collect_args(&root, &facility, &killed)).output().unwrap());
    assert!(err.contains(&format!("{} unchanged", done)), "the rerun skips what was committed: {err}");
    assert_eq!(snapshot(&killed), snapshot(&whole));
}

fn walkdir_count(p: &Path) -> usize {
    if p.is_dir() { std::fs::read_dir(p).unwrap().map(|e| walkdir_count(&e.unwrap().path())).sum() } else { 1 }
}

/// Files the store holds a state for (read with a plain SQLite connection, beside the writer).
fn committed_files(data: &Path) -> usize {
    let path = data.join("musubi.db");
    if !path.exists() {
        return 0;
    }
    let Ok(c) = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return 0;
    };
    c.query_row("SELECT COUNT(*) FROM collect_file", [], |r| r.get::<_, i64>(0)).map_or(0, |n| n as usize)
}
