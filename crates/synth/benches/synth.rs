//! Bench: people per second to all outputs, and peak memory.
//!
//! `cargo bench -p musubi-synth --bench synth` generates `SYNTH_PERSONS` people (default
//! 20,000) into `SYNTH_OUT` (default a temporary directory, removed afterwards) and prints the
//! rate, the peak resident memory (VmHWM) and the output size. `SYNTH_YEARS` sets the years of
//! history (default 3).

use std::time::Instant;

use musubi_synth::{NoProgress, SynthOptions, generate};

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn dir_size(p: &std::path::Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut files = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(e.path()),
                    Ok(_) => {
                        files += 1;
                        bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                    }
                    Err(_) => {}
                }
            }
        }
    }
    (bytes, files)
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let persons: u64 = std::env::var("SYNTH_PERSONS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let keep = std::env::var("SYNTH_OUT").ok();
    let out = keep
        .clone()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("musubi-synth-bench-{}", std::process::id())));
    let mut opts = SynthOptions::new(persons, 20_261_122, &out);
    if let Some(y) = std::env::var("SYNTH_YEARS").ok().and_then(|s| s.parse().ok()) {
        opts.years = y;
    }
    let start = Instant::now();
    let manifest = match generate(&opts, &NoProgress) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("generation failed: {e}");
            std::process::exit(1);
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let (bytes, files) = dir_size(&out);
    println!("persons            {persons}");
    println!("seconds            {secs:.1}");
    println!("persons/s          {:.0}", persons as f64 / secs);
    println!("peak RSS (MiB)     {:.0}", peak_rss_kib().unwrap_or(0) as f64 / 1024.0);
    println!("output (MiB)       {:.0}", bytes as f64 / (1024.0 * 1024.0));
    println!("output files       {files}");
    println!("source patients    {}", manifest.source_patients);
    println!("encounters         {}", manifest.encounters);
    println!(
        "FHIR bundles       {} collection, {} referral ({} with discharge summary), {} checkup",
        manifest.fhir_collection_bundles,
        manifest.fhir_referral_bundles,
        manifest.fhir_discharge_summaries,
        manifest.fhir_checkup_bundles
    );
    println!("SS-MIX2 files      {}", manifest.ssmix2_files);
    println!("UKE files/receipts {} / {}", manifest.uke_files, manifest.uke_receipts);
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&out);
    }
}
