//! `musubi collect`: the SS-MIX2 and UKE collectors from the command line, with a progress bar
//! and a summary, and the quarantine report.
//!
//! ```sh
//! musubi collect ssmix2 /srv/ssmix2 --facility 1318814790 [--watch --interval 60]
//! musubi collect uke /srv/receipts/ [--facility 1318814790]
//! musubi collect report [--facility 1318814790] [--format text|json] [--all]
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use musubi_collect::{CollectOptions, Progress, Summary};
use musubi_domain::FacilityCode;
use musubi_gate::Actor;
use musubi_service::collect::CollectStats;
use musubi_service::{Ctx, Service};
use musubi_store::collect::{QuarantineEntry, QuarantineQuery, SourceKind};

use crate::StoreArgs;

/// Output formats of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One line per entry, for people.
    Text,
    /// One JSON array, for programs.
    Json,
}

/// `musubi collect …`.
#[derive(Subcommand)]
pub(crate) enum CollectCommand {
    /// Collect an SS-MIX2 standardized storage tree (new and changed files only).
    Ssmix2 {
        #[command(flatten)]
        store: StoreArgs,
        /// The storage root (the directory holding PID[0:3]/…).
        root: PathBuf,
        /// The facility whose storage it is (10-digit 医療機関コード).
        #[arg(long)]
        facility: String,
        /// Keep collecting, every --interval seconds, until interrupted.
        #[arg(long)]
        watch: bool,
        /// Seconds between rounds in --watch mode.
        #[arg(long, default_value_t = 60)]
        interval: u64,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// Collect UKE (レセ電) receipt files: files, or directories of *.UKE files.
    Uke {
        #[command(flatten)]
        store: StoreArgs,
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Accept only this facility's files (others are quarantined).
        #[arg(long)]
        facility: Option<String>,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// Show the quarantine: every file, message, receipt or resource that did not land, with
    /// where and why.
    Report {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this facility's entries.
        #[arg(long)]
        facility: Option<String>,
        /// Only this collector's entries.
        #[arg(long, value_parser = ["ssmix2", "uke"])]
        kind: Option<String>,
        /// Resolved entries too.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// Options shared by the collectors.
#[derive(clap::Args, Clone)]
pub(crate) struct Tuning {
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Resources per committed chunk.
    #[arg(long, default_value_t = 10_000)]
    chunk: usize,
    /// Read every file again, even unchanged ones (after an upgrade of the mapping).
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

impl Tuning {
    fn options(&self) -> CollectOptions {
        CollectOptions { threads: self.threads, chunk: self.chunk, force: self.force, system_name: None }
    }
}

struct Bar {
    bar: ProgressBar,
    resources: AtomicU64,
    quarantined: AtomicU64,
}

impl Bar {
    fn new(quiet: bool) -> Bar {
        let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} files ({per_sec}, eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bar { bar, resources: AtomicU64::new(0), quarantined: AtomicU64::new(0) }
    }
}

impl Progress for Bar {
    fn start(&self, files: u64) {
        self.bar.set_length(files);
        self.bar.set_position(0);
    }

    fn file(&self, _bytes: u64) {
        self.bar.inc(1);
    }

    fn committed(&self, s: &CollectStats) {
        let r = self.resources.fetch_add(s.resources(), Ordering::Relaxed) + s.resources();
        let q = self.quarantined.fetch_add(s.quarantined, Ordering::Relaxed) + s.quarantined;
        self.bar.set_message(format!("{r} resources, {q} quarantined"));
    }
}

fn facility(code: &str) -> Result<FacilityCode> {
    code.parse().map_err(|e| anyhow!("--facility {code}: {e}"))
}

fn print_summary(what: &str, unit: &str, s: &Summary) {
    let secs = s.elapsed.as_secs_f64();
    let mut line = format!(
        "{what}: {} files ({} read, {} unchanged), {} {unit}, {} resources ({} created, {} updated, {} unchanged",
        s.files_seen,
        s.files_read,
        s.files_unchanged,
        s.stats.units,
        s.stats.resources(),
        s.stats.created,
        s.stats.updated,
        s.stats.unchanged,
    );
    if s.stats.superseded > 0 {
        line.push_str(&format!(", {} superseded", s.stats.superseded));
    }
    if s.stats.retracted > 0 {
        line.push_str(&format!(", {} retracted", s.stats.retracted));
    }
    line.push_str(&format!("), {} quarantined in {secs:.1} s", s.stats.quarantined));
    line.push_str(&format!(" ({:.0} {unit}/s", s.rate(s.stats.units)));
    if s.records > 0 {
        line.push_str(&format!(", {:.0} records/s", s.rate(s.records)));
    }
    line.push_str(&format!(", {:.0} resources/s)", s.rate(s.stats.resources())));
    eprintln!("{line}");
    if s.stats.quarantined > 0 {
        eprintln!(
            "{} 件を取り込み保留（quarantine）にしました。`musubi collect report` で場所と理由を確認できます。",
            s.stats.quarantined
        );
    }
}

/// Runs a `collect` command.
pub(crate) fn run(command: CollectCommand) -> Result<()> {
    match command {
        CollectCommand::Ssmix2 { store, root, facility: code, watch, interval, tuning } => {
            let facility = facility(&code)?;
            if !root.is_dir() {
                anyhow::bail!("{} is not a directory", root.display());
            }
            let service = Service::new(store.open()?, crate::hostname()).with_id_key(store.id_key()?);
            let bar = Bar::new(tuning.quiet);
            let opts = tuning.options();
            if watch {
                // Runs until the process is interrupted: every chunk is committed atomically
                // with its file states, so an interruption loses nothing and the next start
                // continues where it stopped.
                let never = AtomicBool::new(false);
                musubi_collect::watch_ssmix2(
                    &service,
                    &root,
                    facility,
                    &opts,
                    musubi_collect::Watch { interval: Duration::from_secs(interval.max(1)), stop: &never },
                    &bar,
                    |s| {
                        if s.files_read > 0 || s.stats.quarantined > 0 {
                            bar.bar.suspend(|| print_summary("ssmix2", "messages", s));
                        }
                    },
                )
                .map_err(|e| anyhow!("{e}"))?;
                return Ok(());
            }
            let s =
                musubi_collect::collect_ssmix2(&service, &root, facility, &opts, &bar).map_err(|e| anyhow!("{e}"))?;
            bar.bar.finish_and_clear();
            print_summary("ssmix2", "messages", &s);
            Ok(())
        }
        CollectCommand::Uke { store, paths, facility: code, tuning } => {
            let facility = code.as_deref().map(facility).transpose()?;
            let service = Service::new(store.open()?, crate::hostname()).with_id_key(store.id_key()?);
            let bar = Bar::new(tuning.quiet);
            let s = musubi_collect::collect_uke(&service, &paths, facility, &tuning.options(), &bar)
                .map_err(|e| anyhow!("{e}"))?;
            bar.bar.finish_and_clear();
            print_summary("uke", "receipts", &s);
            Ok(())
        }
        CollectCommand::Report { store, facility: code, kind, all, format } => {
            if let Some(c) = &code {
                facility(c)?;
            }
            let service = Service::new(store.open()?, crate::hostname());
            let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
            let ctx = Ctx { actor: Actor::Operator { name: user }, address: None, base_url: String::new() };
            let kind = kind.as_deref().map(|k| k.parse::<SourceKind>()).transpose().map_err(|e| anyhow!(e))?;
            let q = QuarantineQuery { facility: code, kind, path: None, include_resolved: all };
            let entries =
                service.collect_quarantine(&ctx, q).map_err(|e| anyhow!("{}", musubi_service::import::describe(&e)))?;
            match format {
                Format::Json => {
                    let v: Vec<serde_json::Value> = entries.iter().map(entry_json).collect();
                    println!("{}", serde_json::to_string_pretty(&v).context("JSON")?);
                }
                Format::Text => {
                    for e in &entries {
                        println!("{}", entry_line(e));
                    }
                    eprintln!("{} 件", entries.len());
                }
            }
            Ok(())
        }
    }
}

/// `file:line SEG-n [element] reason (rule)`, as the HL7 and UKE problems print.
fn entry_line(e: &QuarantineEntry) -> String {
    let mut s = format!("{}\t{}\t{}", e.facility, e.kind, e.path);
    if let Some(l) = e.line {
        s.push_str(&format!(":{l}"));
    }
    match (&e.segment, e.field) {
        (Some(seg), Some(f)) => s.push_str(&format!(" {seg}-{f}")),
        (Some(seg), None) => s.push_str(&format!(" {seg}")),
        _ => {}
    }
    s.push('\t');
    if let Some(u) = &e.unit {
        s.push_str(&format!("[{u}] "));
    }
    s.push_str(&e.reason);
    if e.resolved_at.is_some() {
        s.push_str("\t(解決済み)");
    }
    s
}

fn entry_json(e: &QuarantineEntry) -> serde_json::Value {
    serde_json::json!({
        "facility": e.facility,
        "kind": e.kind.as_str(),
        "file": e.path,
        "sha256": e.file_sha256,
        "unit": e.unit,
        "line": e.line,
        "segment": e.segment,
        "field": e.field,
        "element": e.element,
        "rule": e.rule,
        "reason": e.reason,
        "content": e.content,
        "blob": e.blob_sha256,
        "at": musubi_fhir::datetime::format_instant(e.at),
        "resolved": e.resolved_at.is_some(),
        "resolved_at": e.resolved_at.map(musubi_fhir::datetime::format_instant),
    })
}
