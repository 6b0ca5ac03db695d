//! `musubi import`: FHIR NDJSON (Bulk Data), JSON resources and Bundles, from files or
//! directories, with a progress bar, a journal of what is durable, and a quarantine file for
//! whatever was rejected (nothing is silently dropped).

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use musubi_gate::Actor;
use musubi_service::import::{ImportProgress, ImportStats};
use musubi_service::{Ctx, Service};
use musubi_store::Store;

struct Progress {
    bar: ProgressBar,
    journal: Option<Mutex<std::fs::File>>,
    committed: Mutex<u64>,
}

impl ImportProgress for Progress {
    fn bytes(&self, n: u64) {
        self.bar.inc(n);
    }

    fn committed(&self, resources: u64, ids: &[String]) {
        if let Ok(mut c) = self.committed.lock() {
            *c += resources;
            self.bar.set_message(format!("{} resources committed", *c));
        }
        if let Some(j) = &self.journal
            && let Ok(mut f) = j.lock()
        {
            let mut text = String::new();
            for id in ids {
                text.push_str(id);
                text.push('\n');
            }
            // The journal records what is durable: written after the commit returned.
            let _ = f.write_all(text.as_bytes());
            let _ = f.flush();
        }
    }
}

fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(d) = stack.pop() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)
                    .with_context(|| format!("cannot read {}", d.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                entries.sort();
                for e in entries {
                    if e.is_dir() {
                        stack.push(e);
                    } else if is_data_file(&e) {
                        files.push(e);
                    }
                }
            }
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            anyhow::bail!("{} does not exist", p.display());
        }
    }
    files.sort();
    Ok(files)
}

fn is_data_file(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("ndjson" | "jsonl" | "json"))
}

/// Runs the import as the operator.
pub fn run(store: &Store, data: &Path, paths: &[PathBuf], journal: Option<&Path>, quiet: bool) -> Result<()> {
    let files = collect_files(paths)?;
    let total: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let journal = match journal {
        Some(p) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open journal {}", p.display()))?,
        )),
        None => None,
    };
    let progress = Progress { bar, journal, committed: Mutex::new(0) };
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let ctx = Ctx { actor: Actor::Operator { name: user }, address: None, base_url: String::new() };
    let service = Service::new(store.clone(), "cli");
    let mut stats = ImportStats::default();
    let start = Instant::now();
    for f in &files {
        let name = f.display().to_string();
        progress.bar.set_message(name.clone());
        let is_ndjson = matches!(f.extension().and_then(|e| e.to_str()), Some("ndjson" | "jsonl"));
        let result = if is_ndjson {
            let file = std::fs::File::open(f).with_context(|| format!("cannot open {name}"))?;
            service.import_ndjson(&ctx, &name, BufReader::with_capacity(1 << 20, file), &progress, &mut stats)
        } else {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {name} as UTF-8"))?;
            service.import_json(&ctx, &name, &text, &progress, &mut stats)
        };
        result.map_err(|e| anyhow::anyhow!("{name}: {}", musubi_service::import::describe(&e)))?;
    }
    progress.bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let written = stats.created + stats.updated;
    eprintln!(
        "import: {} files, {} read, {} created, {} updated, {} unchanged, {} bundles, {} rejected in {:.1} s ({:.0} resources/s)",
        files.len(),
        stats.read,
        stats.created,
        stats.updated,
        stats.unchanged,
        stats.bundles,
        stats.rejected.len(),
        secs,
        (written + stats.unchanged) as f64 / secs.max(1e-9)
    );
    if !stats.rejected.is_empty() {
        let dir = data.join("quarantine");
        musubi_store::private_dir(&dir)?;
        let path = dir.join(format!("import-{}.ndjson", musubi_fhir::datetime::now_ms()));
        let mut out = musubi_store::private_create(&path)?;
        for r in &stats.rejected {
            let line = serde_json::json!({"file": r.file, "line": r.line, "reason": r.reason, "text": r.text});
            writeln!(out, "{line}")?;
            eprintln!("  rejected {}:{}: {}", r.file, r.line, r.reason);
        }
        eprintln!(
            "{} 件を取り込めませんでした。内容と理由を {} に保存しました。",
            stats.rejected.len(),
            path.display()
        );
        crate::audit::anchor_after_command();
        std::process::exit(3);
    }
    Ok(())
}
