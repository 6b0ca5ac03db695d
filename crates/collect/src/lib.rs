//! Automatic collection into Musubi: the I/O side of the SS-MIX2 and UKE collectors.
//!
//! The pure halves ([`musubi_ssmix2`], [`musubi_uke`]) turn one file's bytes into FHIR
//! resources and located problems. This crate walks the SS-MIX2 standardized storage tree or
//! the UKE files, remembers what it collected (path, size, mtime, SHA-256) so that only new or
//! changed files are read, and writes everything through [`musubi_service`] — validation,
//! classification, the gate and the audit, as the facility's system — in chunks committed
//! atomically with the files' state rows.
//!
//! - **Nothing lost.** Every file lands, or goes (whole, or per message / receipt / resource)
//!   to the quarantine list with the file, line, segment or record, field, the validator's
//!   element and rule, and a reason in Japanese; the original bytes of every file are kept,
//!   content-addressed, as provenance.
//! - **Nothing twice.** Ids are deterministic and identical content changes nothing, so
//!   collecting the same tree twice changes nothing; a file with new content is collected again
//!   and its old quarantine entries are marked resolved.
//! - **Killed at any point, rerun, same store.** Files are committed in a fixed order, each
//!   chunk with its file states in one transaction, every change with its own version.
//! - **Fast.** Files are read, mapped, validated and prepared on every core; one committer
//!   decides each chunk (one batched lookup) while the previous chunk commits, and applies
//!   them in order. Measurements: `BENCH-RESULTS.md`.
//! - **One collector per facility at a time.** Two runs over the same facility at once do not
//!   corrupt anything (every write checks the version it expects) but the slower one stops
//!   with a conflict; run it again.
//!
//! Entry points: [`collect_ssmix2`], [`watch_ssmix2`] (the `--watch` mode and what a
//! scheduler runs per facility), [`collect_uke`]; [`source`] turns the pure crates' results
//! into the service's format-free input. The quarantine is read through
//! `musubi_service::Service::collect_quarantine` (audited).
//!
//! ```no_run
//! use musubi_collect::{CollectOptions, NoProgress, collect_ssmix2};
//! let store = musubi_store::Store::open_sqlite(std::path::Path::new("./musubi-data")).unwrap();
//! let service = musubi_service::Service::new(store, "collector");
//! let facility = "1318814790".parse().unwrap();
//! let summary = collect_ssmix2(&service, "/srv/ssmix2".as_ref(), facility, &CollectOptions::default(), &NoProgress)
//!     .unwrap();
//! println!("{} messages, {} quarantined", summary.stats.units, summary.stats.quarantined);
//! ```

#![deny(missing_docs)]

mod run;
pub mod source;

use std::path::{Path, PathBuf};
use std::time::Duration;

use musubi_domain::FacilityCode;
use musubi_gate::Actor;
use musubi_service::collect::CollectStats;
use musubi_service::{ApiError, Service};
use musubi_store::StoreError;
use musubi_store::collect::{FileState, Forget, SourceKind};

use crate::run::Job;

/// What can stop a collection run (problems with the data never do: they are quarantined).
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The root or an input path cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The service refused or failed (the chunk was rolled back; a rerun continues there).
    #[error("{}", musubi_service::import::describe(.0))]
    Service(ApiError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How to collect.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// Worker threads reading and mapping files (0: one per core).
    pub threads: usize,
    /// Resources per committed chunk (about).
    pub chunk: usize,
    /// Read every file again, even those whose size and mtime are unchanged (after an upgrade
    /// of the mapping, say). Identical results still change nothing.
    pub force: bool,
    /// The name of the collecting system, as the audit log shows it.
    pub system_name: Option<String>,
}

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions { threads: 0, chunk: 10_000, force: false, system_name: None }
    }
}

/// Progress callbacks (the CLI drives a progress bar with them).
pub trait Progress: Sync {
    /// `files` files will be looked at.
    fn start(&self, files: u64);
    /// One more file was looked at (`bytes` read; 0 when skipped unread).
    fn file(&self, bytes: u64);
    /// A chunk was committed (durable now).
    fn committed(&self, stats: &CollectStats);
}

/// No progress reporting.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: u64) {}
    fn file(&self, _: u64) {}
    fn committed(&self, _: &CollectStats) {}
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Files found.
    pub files_seen: u64,
    /// Files read and collected (new or changed).
    pub files_read: u64,
    /// Files unchanged since the last run (not collected again).
    pub files_unchanged: u64,
    /// Bytes read.
    pub bytes: u64,
    /// UKE records read.
    pub records: u64,
    /// Counts from the service: messages / receipts (`units`), resources, quarantine.
    pub stats: CollectStats,
    /// Wall time.
    #[serde(serialize_with = "ser_secs")]
    pub elapsed: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Summary {
    /// Per second of wall time.
    pub fn rate(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl From<ApiError> for CollectError {
    fn from(e: ApiError) -> Self {
        CollectError::Service(e)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CollectError + '_ {
    move |source| CollectError::Io { path: path.to_path_buf(), source }
}

fn hidden(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Every file under `dir` (hidden files and directories left out), sorted.
fn walk(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<Vec<PathBuf>, CollectError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let p = e.map_err(io(&d))?.path();
            if hidden(&p) {
                continue;
            }
            // Follows symbolic links, as the storage may be assembled from several volumes.
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(_) if keep(&p) => out.push(p),
                Ok(_) => {}
                // A file that vanished or cannot be inspected is still tried (and quarantined
                // with the reason if it cannot be read).
                Err(_) => out.push(p),
            }
        }
    }
    out.sort();
    Ok(out)
}

fn system(kind: SourceKind, facility: FacilityCode, opts: &CollectOptions) -> Actor {
    let name = opts.system_name.clone().unwrap_or_else(|| format!("{kind}-collector"));
    Actor::System { name, facility }
}

/// Collects an SS-MIX2 standardized storage tree once, for `facility`: every new or changed
/// file under `root` (paths relative to it, `PID[0:3]/PID[3:6]/PID/診療日|-/データ種別/file`).
pub fn collect_ssmix2(
    service: &Service,
    root: &Path,
    facility: FacilityCode,
    opts: &CollectOptions,
    progress: &dyn Progress,
) -> Result<Summary, CollectError> {
    let fac = facility.to_string();
    let known: std::collections::HashMap<String, FileState> =
        service.collected_files(Some(&fac), SourceKind::Ssmix2)?.into_iter().map(|s| (s.path.clone(), s)).collect();
    let files = walk(root, &|_| true)?;
    let mut jobs = Vec::with_capacity(files.len());
    let mut found = std::collections::HashSet::with_capacity(files.len());
    for abs in files {
        let rel = abs.strip_prefix(root).unwrap_or(&abs);
        // Keys use `/` whatever the platform, as the path rules do.
        let key = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        found.insert(key.clone());
        let known = known.get(&key).cloned();
        jobs.push(Job { abs, key, known });
    }
    // Files gone since the last run (moved away from quarantine, say).
    let gone: Vec<Forget> = known
        .keys()
        .filter(|k| !found.contains(*k))
        .map(|k| Forget { facility: fac.clone(), kind: SourceKind::Ssmix2, path: k.clone() })
        .collect();
    if !gone.is_empty() {
        tracing::info!(files = gone.len(), "files gone from the storage; their states are forgotten");
        service.forget_collected(gone)?;
    }
    let actor = system(SourceKind::Ssmix2, facility, opts);
    tracing::info!(root = %root.display(), %facility, files = jobs.len(), known = known.len(), "collecting SS-MIX2 storage");
    let map = |meta: source::FileMeta, bytes: &[u8]| (source::ssmix2_file(facility, meta, bytes), actor.clone(), 0u64);
    let s = run::run(service, SourceKind::Ssmix2, jobs, &actor, opts, progress, &map)?;
    tracing::info!(
        files = s.files_read,
        unchanged = s.files_unchanged,
        messages = s.stats.units,
        resources = s.stats.resources(),
        quarantined = s.stats.quarantined,
        secs = s.elapsed.as_secs_f64(),
        "SS-MIX2 collection done"
    );
    Ok(s)
}

/// Whether a file in a directory is a UKE file (`RECEIPTC.UKE`, `*.UKE`, any case).
pub fn is_uke_file(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("uke"))
}

/// Collects UKE receipt files once: the files given, and every `*.UKE` file under the
/// directories given. `facility`, when given, is the only facility accepted (a file of another
/// facility is quarantined). The state of each file is kept under its canonical path.
pub fn collect_uke(
    service: &Service,
    paths: &[PathBuf],
    facility: Option<FacilityCode>,
    opts: &CollectOptions,
    progress: &dyn Progress,
) -> Result<Summary, CollectError> {
    let mut files = Vec::new();
    for p in paths {
        let m = std::fs::metadata(p).map_err(io(p))?;
        if m.is_dir() {
            files.extend(walk(p, &is_uke_file)?);
        } else {
            files.push(p.clone());
        }
    }
    let mut jobs = Vec::with_capacity(files.len());
    for abs in files {
        let canon = std::fs::canonicalize(&abs).unwrap_or_else(|_| abs.clone());
        let key = canon.to_string_lossy().into_owned();
        let states = service.collected_file(SourceKind::Uke, &key)?;
        // The state of the facility asked for, else the one the file itself named last time.
        let known = match facility {
            Some(f) => states.into_iter().find(|s| s.facility == f.as_str()),
            None => states.into_iter().max_by_key(|s| s.collected_at),
        };
        jobs.push(Job { abs: canon, key, known });
    }
    jobs.sort_by(|a, b| a.key.cmp(&b.key));
    jobs.dedup_by(|a, b| a.key == b.key);
    // Writes are made as the facility the file names; this actor stands in for files whose
    // facility cannot be read (nothing of them is written but their quarantine entries).
    let fallback = match facility {
        Some(f) => system(SourceKind::Uke, f, opts),
        None => Actor::Operator { name: opts.system_name.clone().unwrap_or_else(|| "uke-collector".into()) },
    };
    tracing::info!(files = jobs.len(), "collecting UKE files");
    let map = |meta: source::FileMeta, bytes: &[u8]| {
        let (file, info) = source::uke_file(facility, meta, bytes);
        let actor = match info.facility {
            Some(f) => system(SourceKind::Uke, f, opts),
            None => fallback.clone(),
        };
        (file, actor, info.records as u64)
    };
    let s = run::run(service, SourceKind::Uke, jobs, &fallback, opts, progress, &map)?;
    tracing::info!(
        files = s.files_read,
        unchanged = s.files_unchanged,
        receipts = s.stats.units,
        records = s.records,
        resources = s.stats.resources(),
        quarantined = s.stats.quarantined,
        secs = s.elapsed.as_secs_f64(),
        "UKE collection done"
    );
    Ok(s)
}

/// How to watch a storage tree: every `interval`, until `stop` is set.
#[derive(Debug, Clone, Copy)]
pub struct Watch<'a> {
    /// Time between the end of one round and the start of the next.
    pub interval: Duration,
    /// Set it (from a signal handler or the scheduler) to end the watch after this round.
    pub stop: &'a std::sync::atomic::AtomicBool,
}

/// Collects an SS-MIX2 tree again and again until told to stop: the `--watch` mode, and what a
/// scheduler runs per registered facility. `each` sees every round's summary; an error ends
/// the watch (the next start continues where it stopped: every chunk is atomic).
pub fn watch_ssmix2(
    service: &Service,
    root: &Path,
    facility: FacilityCode,
    opts: &CollectOptions,
    watch: Watch<'_>,
    progress: &dyn Progress,
    mut each: impl FnMut(&Summary),
) -> Result<(), CollectError> {
    use std::sync::atomic::Ordering;
    while !watch.stop.load(Ordering::Relaxed) {
        let s = collect_ssmix2(service, root, facility, opts, progress)?;
        each(&s);
        let until = std::time::Instant::now() + watch.interval;
        while std::time::Instant::now() < until && !watch.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100).min(watch.interval));
        }
    }
    Ok(())
}
