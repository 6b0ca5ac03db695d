//! End-to-end collection rates into the embedded store, and parse-only rates, over a synthetic
//! region (`musubi_synth`): SS-MIX2 messages/s and UKE records/s.
//!
//! ```sh
//! cargo bench -p musubi-collect --bench collect
//! MUSUBI_BENCH_PERSONS=20000 MUSUBI_BENCH_DIR=/tmp/collect-bench cargo bench -p musubi-collect --bench collect
//! ```
//!
//! `MUSUBI_BENCH_DIR` keeps the generated data between runs (the store is always fresh);
//! `MUSUBI_BENCH_LIST=FILE` also writes the SS-MIX2 file list for `scripts/bench-hl7.py`.
//! Results go to stdout as one JSON object; BENCH-RESULTS.md records them.

use std::path::{Path, PathBuf};
use std::time::Instant;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use musubi_collect::{CollectOptions, NoProgress};
use musubi_domain::FacilityCode;
use musubi_service::Service;
use musubi_store::Store;
use serde_json::json;

fn walk(d: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(d).expect("readable bench dir") {
        let p = e.expect("entry").path();
        if p.is_dir() { walk(&p, out) } else { out.push(p) }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is ignored.
    let persons: u64 = env_or("MUSUBI_BENCH_PERSONS", 10_000);
    let threads: usize = env_or("MUSUBI_BENCH_THREADS", 0);
    let chunk: usize = env_or("MUSUBI_BENCH_CHUNK", 10_000);
    let keep = std::env::var("MUSUBI_BENCH_DIR").ok().map(PathBuf::from);
    let tmp = tempfile::tempdir().expect("temp dir");
    let data_dir = keep.clone().unwrap_or_else(|| tmp.path().join("synth"));
    if !data_dir.join("manifest.json").exists() {
        let mut o = musubi_synth::SynthOptions::new(persons, 20261122, &data_dir);
        o.formats = musubi_synth::Formats { fhir: false, ssmix2: true, uke: true, truth: false };
        o.years = 1;
        let t = Instant::now();
        let m = musubi_synth::generate(&o, &musubi_synth::NoProgress).expect("generate");
        eprintln!("generated {} SS-MIX2 files, {} UKE files in {:?}", m.ssmix2_files, m.uke_files, t.elapsed());
    }
    let opts = CollectOptions { threads, chunk, ..Default::default() };

    // SS-MIX2: every facility's storage into one fresh store.
    let ss_root = data_dir.join("ssmix2");
    let mut facilities: Vec<PathBuf> =
        std::fs::read_dir(&ss_root).expect("ssmix2 dir").map(|e| e.expect("entry").path()).collect();
    facilities.sort();
    let mut ss_files: Vec<(FacilityCode, String, Vec<u8>)> = Vec::new();
    for f in &facilities {
        let code: FacilityCode = f.file_name().and_then(|n| n.to_str()).expect("name").parse().expect("code");
        let mut files = Vec::new();
        walk(f, &mut files);
        for p in files {
            let rel = p.strip_prefix(f).expect("under").to_string_lossy().into_owned();
            ss_files.push((code, rel, std::fs::read(&p).expect("read")));
        }
    }
    if let Ok(list) = std::env::var("MUSUBI_BENCH_LIST") {
        let text: String = facilities
            .iter()
            .flat_map(|f| {
                let mut v = Vec::new();
                walk(f, &mut v);
                v
            })
            .map(|p| format!("{}\n", p.display()))
            .collect();
        std::fs::write(list, text).expect("write list");
    }
    let ss_bytes: usize = ss_files.iter().map(|f| f.2.len()).sum();

    // Parse only, one thread, best of three: decode + parse (segments and fields; components
    // split on access), parse of already-decoded text, and decode + parse + splitting every
    // field into repetitions, components and subcomponents (the tree python-hl7 builds).
    let best = |f: &dyn Fn() -> usize| -> (f64, usize) {
        let mut t_best = f64::MAX;
        let mut n = 0;
        for _ in 0..3 {
            let t = Instant::now();
            n = f();
            t_best = t_best.min(t.elapsed().as_secs_f64());
        }
        (t_best, n)
    };
    let (parse_secs, segments) = best(&|| {
        let mut segments = 0usize;
        for (_, _, b) in &ss_files {
            let text = musubi_ssmix2::decode::decode(b).text;
            if let Ok(m) = musubi_ssmix2::hl7::Message::parse(&text) {
                segments += m.segments.len();
            }
        }
        segments
    });
    let texts: Vec<String> = ss_files.iter().map(|(_, _, b)| musubi_ssmix2::decode::decode(b).text).collect();
    let (parse_text_secs, _) = best(&|| {
        texts.iter().filter_map(|t| musubi_ssmix2::hl7::Message::parse(t).ok()).map(|m| m.segments.len()).sum()
    });
    let (tree_secs, leaves) = best(&|| {
        let mut leaves = 0usize;
        for (_, _, b) in &ss_files {
            let text = musubi_ssmix2::decode::decode(b).text;
            let Ok(m) = musubi_ssmix2::hl7::Message::parse(&text) else { continue };
            let d = m.delimiters;
            for seg in &m.segments {
                for n in 1..=seg.field_count() {
                    for rep in seg.get(n).as_str().split(d.repetition) {
                        for comp in rep.split(d.component) {
                            leaves += comp.split(d.subcomponent).count();
                        }
                    }
                }
            }
        }
        leaves
    });
    // Parse + map, one thread and on every core.
    let (map_secs, mapped) = best(&|| {
        let mut mapped = 0usize;
        for (c, rel, b) in &ss_files {
            if let Ok(x) = musubi_ssmix2::collect(*c, rel, b)
                && let musubi_ssmix2::Outcome::Resources(r) = x.outcome
            {
                mapped += r.len();
            }
        }
        mapped
    });
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (map_par_secs, _) = best(&|| {
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|sc| {
            for _ in 0..cores {
                sc.spawn(|| {
                    while let Some((c, rel, b)) = ss_files.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        let _ = musubi_ssmix2::collect(*c, rel, b);
                    }
                });
            }
        });
        0
    });

    // End to end.
    let store_dir = tmp.path().join("store-ssmix2");
    let store = Store::open_sqlite(&store_dir).expect("store");
    let service = Service::new(store, "bench");
    let t = Instant::now();
    let mut ss = musubi_service::collect::CollectStats::default();
    let mut files_read = 0;
    for f in &facilities {
        let code: FacilityCode = f.file_name().and_then(|n| n.to_str()).expect("name").parse().expect("code");
        let s = musubi_collect::collect_ssmix2(&service, f, code, &opts, &NoProgress).expect("collect");
        ss.add(&s.stats);
        files_read += s.files_read;
    }
    let e2e_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for f in &facilities {
        let code: FacilityCode = f.file_name().and_then(|n| n.to_str()).expect("name").parse().expect("code");
        musubi_collect::collect_ssmix2(&service, f, code, &opts, &NoProgress).expect("collect again");
    }
    let rerun_secs = t.elapsed().as_secs_f64();
    let db_size = std::fs::metadata(store_dir.join(musubi_store::SQLITE_FILE)).map_or(0, |m| m.len());

    // UKE.
    let uke_root = data_dir.join("uke");
    let mut uke_paths = Vec::new();
    walk(&uke_root, &mut uke_paths);
    uke_paths.sort();
    let uke_data: Vec<(String, Vec<u8>)> = uke_paths
        .iter()
        .map(|p| {
            (p.file_name().and_then(|n| n.to_str()).unwrap_or("x.UKE").to_owned(), std::fs::read(p).expect("read"))
        })
        .collect();
    let t = Instant::now();
    let mut records = 0usize;
    for (n, b) in &uke_data {
        records += musubi_uke::parse(n, b).records;
    }
    let uke_parse_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (n, b) in &uke_data {
        let _ = musubi_uke::collect(n, b, None);
    }
    let uke_map_secs = t.elapsed().as_secs_f64();
    let store_dir = tmp.path().join("store-uke");
    let store = Store::open_sqlite(&store_dir).expect("store");
    let service = Service::new(store, "bench");
    let t = Instant::now();
    let u = musubi_collect::collect_uke(&service, std::slice::from_ref(&uke_root), None, &opts, &NoProgress)
        .expect("collect uke");
    let uke_secs = t.elapsed().as_secs_f64();

    let out = json!({
        "persons": persons,
        "allocator": if cfg!(feature = "mimalloc") { "mimalloc" } else { "system (glibc)" },
        "threads": if threads == 0 { std::thread::available_parallelism().map_or(0, |n| n.get()) } else { threads },
        "chunk": chunk,
        "ssmix2": {
            "files": ss_files.len(),
            "bytes": ss_bytes,
            "segments": segments,
            "parse_only_msgs_per_s": ss_files.len() as f64 / parse_secs,
            "parse_only_decoded_text_msgs_per_s": ss_files.len() as f64 / parse_text_secs,
            "parse_full_tree_msgs_per_s": ss_files.len() as f64 / tree_secs,
            "leaves": leaves,
            "parse_map_msgs_per_s_1_thread": ss_files.len() as f64 / map_secs,
            "parse_map_msgs_per_s_all_cores": ss_files.len() as f64 / map_par_secs,
            "mapped_resources": mapped,
            "end_to_end": {
                "files_read": files_read,
                "messages": ss.units,
                "created": ss.created, "updated": ss.updated, "unchanged": ss.unchanged,
                "quarantined": ss.quarantined,
                "secs": e2e_secs,
                "msgs_per_s": ss.units as f64 / e2e_secs,
                "resources_per_s": ss.resources() as f64 / e2e_secs,
                "rerun_secs": rerun_secs,
                "db_bytes": db_size,
            },
        },
        "uke": {
            "files": uke_data.len(),
            "records": records,
            "parse_only_records_per_s": records as f64 / uke_parse_secs,
            "parse_map_records_per_s_1_thread": records as f64 / uke_map_secs,
            "end_to_end": {
                "receipts": u.stats.units,
                "records": u.records,
                "created": u.stats.created, "updated": u.stats.updated, "unchanged": u.stats.unchanged,
                "quarantined": u.stats.quarantined,
                "secs": uke_secs,
                "records_per_s": u.records as f64 / uke_secs,
                "receipts_per_s": u.stats.units as f64 / uke_secs,
                "resources_per_s": u.stats.resources() as f64 / uke_secs,
            },
        },
    });
    println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    if keep.is_none() {
        eprintln!("(set MUSUBI_BENCH_DIR to keep the generated data)");
    }
}
