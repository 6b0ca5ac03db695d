//! End-to-end checks of a small run: same seed → same bytes, truth covers every source patient,
//! the SS-MIX2 tree follows the path rules and parses with the Python `hl7` package, and every
//! UKE file parses record by record against the layouts of `reference/uke/LAYOUT.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use musubi_synth::{NoProgress, SynthOptions, generate};
use sha2::{Digest, Sha256};

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

fn tree_hash(root: &Path) -> String {
    let mut h = Sha256::new();
    for f in files(root) {
        h.update(f.strip_prefix(root).unwrap().to_string_lossy().as_bytes());
        h.update(std::fs::read(&f).unwrap());
    }
    hex::encode(h.finalize())
}

fn run(persons: u64, seed: u64, threads: usize) -> (tempfile::TempDir, musubi_synth::Manifest) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SynthOptions::new(persons, seed, dir.path());
    opts.threads = threads;
    let m = generate(&opts, &NoProgress).unwrap();
    (dir, m)
}

#[test]
fn same_seed_same_bytes_whatever_the_threads() {
    let (a, ma) = run(150, 5, 1);
    let (b, mb) = run(150, 5, 2);
    assert_eq!(ma, mb);
    assert_eq!(tree_hash(a.path()), tree_hash(b.path()));
    let (c, _) = run(150, 6, 2);
    assert_ne!(tree_hash(a.path()), tree_hash(c.path()), "another seed gives other data");
}

fn truth(dir: &Path) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(dir.join("truth/source_patients.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("facility,local_id,person"));
    lines
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            assert_eq!(v.len(), 3, "{l}");
            assert!(v[2].starts_with('P'));
            (v[0].to_owned(), v[1].to_owned())
        })
        .collect()
}

#[test]
fn truth_covers_every_source_patient_in_every_output() {
    let (dir, m) = run(300, 21, 2);
    let truth = truth(dir.path());
    assert_eq!(truth.len() as u64, m.source_patients);
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    // FHIR: every Patient's local id.
    for f in files(&dir.path().join("fhir")) {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            let b: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut stack = vec![&b];
            while let Some(v) = stack.pop() {
                if v["resourceType"] == "Patient" {
                    for id in v["identifier"].as_array().unwrap() {
                        if let Some(sys) =
                            id["system"].as_str().and_then(|s| s.strip_prefix("urn:oid:1.2.392.100495.20.3.51.1"))
                        {
                            let key = (sys.to_owned(), id["value"].as_str().unwrap().to_owned());
                            assert!(truth.contains(&key), "FHIR patient {key:?} not in truth");
                            seen.insert(key);
                        }
                    }
                }
                if let Some(entries) = v["entry"].as_array() {
                    stack.extend(entries.iter().map(|e| &e["resource"]));
                }
            }
        }
    }
    // SS-MIX2: every PID folder.
    for f in files(&dir.path().join("ssmix2")) {
        let rel = f.strip_prefix(dir.path().join("ssmix2")).unwrap();
        let parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        let key = (parts[0].clone(), parts[3].clone());
        assert!(truth.contains(&key), "SS-MIX2 patient {key:?} not in truth");
        seen.insert(key);
    }
    // UKE: RE カルテ番号 (医科 field 14, 調剤 field 36).
    for f in files(&dir.path().join("uke")) {
        let fac = f.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        let raw = std::fs::read(&f).unwrap();
        let (text, _, _) = encoding_rs::SHIFT_JIS.decode(&raw);
        let chozai = f.to_string_lossy().contains("chozai");
        for line in text.lines().filter(|l| l.starts_with("RE,")) {
            let v: Vec<&str> = line.split(',').collect();
            let id = if chozai { v[35] } else { v[13] };
            let key = (fac.clone(), id.to_owned());
            assert!(truth.contains(&key), "UKE patient {key:?} not in truth");
            seen.insert(key);
        }
    }
    let missing: Vec<_> = truth.difference(&seen).take(5).collect();
    assert!(missing.is_empty(), "truth rows with no output: {missing:?}");
}

#[test]
fn ssmix2_paths_follow_the_rules_and_python_hl7_parses_every_file() {
    let (dir, m) = run(400, 31, 2);
    assert!(m.ssmix2_files > 100, "{m:?}");
    let root = dir.path().join("ssmix2");
    let mut types = BTreeSet::new();
    for f in files(&root) {
        let rel = f.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        let (_, inside) = rel.split_once('/').unwrap();
        assert_eq!(musubi_synth::ssmix2::check_path(inside), None);
        types.insert(inside.split('/').nth(4).unwrap().to_owned());
        let bytes = std::fs::read(&f).unwrap();
        assert!(bytes.ends_with(b"\r"), "{rel}: segments end in CR");
        assert!(bytes.iter().all(|b| *b < 0x80), "{rel}: ISO-2022-JP is 7-bit");
    }
    for t in ["ADT-00", "ADT-22", "ADT-52", "PPR-01", "OMP-01", "OMP-02", "OML-11", "OMG-01"] {
        assert!(types.contains(t), "no {t} in {types:?}");
    }
    let python = std::env::var("MUSUBI_PYTHON").unwrap_or_else(|_| {
        panic!("MUSUBI_PYTHON is not set: run scripts/test (it creates a venv with the `hl7` package and sets MUSUBI_PYTHON)")
    });
    let script = r#"
import hl7, os, sys
root = sys.argv[1]
n = 0
kinds = {}
for d, _, fs in os.walk(root):
    for f in fs:
        raw = open(os.path.join(d, f), 'rb').read()
        text = raw.decode('iso2022_jp')
        msg = hl7.parse(text)
        assert str(msg.segment('MSH')[9][0][0]) in ('ADT', 'PPR', 'RDE', 'RAS', 'OUL', 'OMG', 'OMI', 'ORU'), f
        pid = msg.segment('PID')
        assert str(pid[3][0][0]) == f.split('_')[0], f
        kinds[f.split('_')[2]] = kinds.get(f.split('_')[2], 0) + 1
        n += 1
print(n, sorted(kinds.items()))
"#;
    let out = std::process::Command::new(&python).arg("-c").arg(script).arg(&root).output().expect("run MUSUBI_PYTHON");
    assert!(out.status.success(), "python hl7 failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed: u64 = stdout.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(parsed, m.ssmix2_files, "{stdout}");
}

/// Field counts of the current layouts (LAYOUT.md); DPC records after the older table.
fn layout(kind: &str, rec: &str) -> Option<usize> {
    Some(match (kind, rec) {
        ("chozai", "YK") => 9,
        ("chozai", "RE") => 42,
        ("chozai", "HO") => 14,
        ("chozai", "SH") => 10,
        ("chozai", "CZ") => 71,
        ("chozai", "IY") => 10,
        (_, "IR") => 10,
        (_, "RE") => 38,
        (_, "HO") => 15,
        (_, "SY") => 8,
        (_, "SI") => 44,
        (_, "IY") => 44,
        ("dpc", "BU") => 6,
        ("dpc", "SB") => 8,
        ("dpc", "KK") => 14,
        ("dpc", "GT") => 12,
        ("dpc", "CD") => 11,
        (_, "SN") => 9,
        (_, "GO") => 4,
        _ => return None,
    })
}

fn is_date(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) && {
        let m: u32 = s[4..6].parse().unwrap_or(0);
        (1..=12).contains(&m) && (len == 6 || (1..=31).contains(&s[6..8].parse::<u32>().unwrap_or(0)))
    }
}

#[test]
fn uke_files_parse_record_by_record() {
    let (dir, m) = run(400, 41, 2);
    assert!(m.uke_receipts > 100);
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for f in files(&dir.path().join("uke")) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let kind = name.trim_end_matches(".UKE").rsplit('_').next().unwrap().to_owned();
        *kinds.entry(kind.clone()).or_insert(0) += 1;
        let bytes = std::fs::read(&f).unwrap();
        assert_eq!(bytes.last(), Some(&0x1A), "{name}: ends with 0x1A");
        let body = &bytes[..bytes.len() - 1];
        assert!(body.ends_with(b"\r\n"));
        let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(body);
        assert!(!bad, "{name}: valid Shift_JIS");
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        let month = name[..6].to_owned();
        let first: Vec<&str> = lines[0].split(',').collect();
        assert_eq!(first[0], if kind == "chozai" { "YK" } else { "IR" }, "{name}");
        let month_field = if kind == "chozai" { first[6] } else { first[7] };
        assert_eq!(month_field, month);
        assert_eq!(lines.last().unwrap().split(',').next(), Some("GO"));
        let (mut ho_points, mut ho_ko, mut re_no, mut in_receipt) = (0u64, 0u64, 0u64, false);
        let mut prev = "";
        for (n, line) in lines.iter().enumerate() {
            let v: Vec<&str> = line.split(',').collect();
            let rec = v[0];
            let want = layout(&kind, rec).unwrap_or_else(|| panic!("{name}:{}: unknown record {rec}", n + 1));
            assert_eq!(v.len(), want, "{name}:{}: {rec} has {} fields, layout says {want}: {line}", n + 1, v.len());
            match rec {
                "RE" => {
                    re_no += 1;
                    assert_eq!(v[1], re_no.to_string(), "{name}: receipt numbers run 1, 2, …");
                    assert_eq!(v[3], month, "{name}: 診療年月");
                    assert!(is_date(v[6], 8), "{name}: 生年月日 {}", v[6]);
                    assert!(matches!(v[5], "1" | "2"));
                    assert!(
                        v[2].len() == 4 && v[2].starts_with(if kind == "chozai" { '4' } else { '1' }),
                        "{name}: 種別 {}",
                        v[2]
                    );
                    in_receipt = true;
                }
                "HO" => {
                    assert_eq!(prev, "RE", "{name}:{}: HO follows RE", n + 1);
                    assert_eq!(v[1].trim_start().len(), if v[1].starts_with(' ') { 6 } else { 8 });
                    ho_points += v[5].parse::<u64>().unwrap();
                    ho_ko += 1;
                }
                "SN" => assert_eq!(prev, "HO", "{name}:{}: SN follows HO", n + 1),
                "SY" => {
                    assert!(in_receipt);
                    assert_eq!(v[1].len(), 7);
                    assert!(is_date(v[2], 8), "{name}: 診療開始日 {}", v[2]);
                    assert!(matches!(v[3], "1" | "2" | "3" | "4"));
                }
                "SI" | "IY" if kind != "chozai" => assert_eq!(v[3].len(), 9),
                "CZ" => {
                    assert_eq!(prev, "SH");
                    assert!(is_date(v[2], 8) && is_date(v[3], 8));
                }
                "IY" => assert_eq!(prev, "CZ"),
                "BU" => assert!(is_date(v[2], 8) && v[1].len() == 14),
                "GO" => {
                    assert_eq!(n, lines.len() - 1);
                    assert_eq!(v[1], ho_ko.to_string(), "{name}: GO 総件数");
                    assert_eq!(v[2], ho_points.to_string(), "{name}: GO 総合計点数");
                    assert_eq!(v[3], "99");
                }
                _ => {}
            }
            prev = rec;
        }
        assert!(re_no > 0);
    }
    for k in ["ika", "chozai", "dpc"] {
        assert!(kinds.contains_key(k), "no {k} files: {kinds:?}");
    }
}
