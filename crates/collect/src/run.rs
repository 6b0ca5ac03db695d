//! The collection pipeline: worker threads read, hash, map, validate and prepare files in
//! parallel; one committer takes the results back in file order and commits them in chunks
//! through the service.
//!
//! Files are taken in a fixed (sorted) order and committed in that order, whatever thread
//! finished first: the store sees the same sequence of changes on every run, so a run killed
//! at any point and started again ends where an uninterrupted run ends. Workers run at most
//! [`WINDOW`] files ahead of the committer, so memory stays bounded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use musubi_gate::Actor;
use musubi_service::ApiError;
use musubi_service::Service;
use musubi_service::collect::{CollectSession, CollectStats, DecidedChunk, PreparedFile, SourceFile, SourceProblem};
use musubi_store::collect::{FileState, SourceKind};

use crate::source::FileMeta;
use crate::{CollectError, CollectOptions, Progress, Summary};

/// How far (in files) workers may run ahead of the committer, per worker.
pub const WINDOW: usize = 256;

/// Files per chunk at most (besides the resource limit).
const MAX_FILES: usize = 4096;

/// One file to consider.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// Where it is.
    pub abs: PathBuf,
    /// The path its state is kept under.
    pub key: String,
    /// What the store remembers of it.
    pub known: Option<FileState>,
}

/// What a worker made of a file.
pub(crate) enum Item {
    /// Size and mtime as remembered: not read.
    Skip,
    /// Read, but the content is unchanged: only the state is written.
    Touch(PreparedFile, u64),
    /// Collected.
    File { prepared: PreparedFile, bytes: u64, records: u64 },
}

/// Maps one file's bytes (the format-specific part): the source file, the actor to write as,
/// and the number of records (UKE) read.
pub(crate) type MapFn<'a> = dyn Fn(FileMeta, &[u8]) -> (SourceFile, Actor, u64) + Sync + 'a;

fn mtime_ms(m: &std::fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A file that could not be read: quarantined with the reason, and its state made so that
/// the next run tries it again.
fn unreadable(kind: SourceKind, facility: &str, key: &str, e: &std::io::Error) -> SourceFile {
    SourceFile {
        facility: facility.to_owned(),
        kind,
        path: key.to_owned(),
        size: -1,
        mtime: -1,
        sha256: String::new(),
        seen_before: true,
        blob: None,
        units: Vec::new(),
        problems: vec![SourceProblem {
            reason: format!("ファイルを読み込めません（{e}）"), ..Default::default()
        }],
    }
}

fn work(
    service: &Service,
    job: &Job,
    opts: &CollectOptions,
    kind: SourceKind,
    fallback: &Actor,
    map: &MapFn<'_>,
) -> Item {
    let facility = job
        .known
        .as_ref()
        .map(|k| k.facility.clone())
        .unwrap_or_else(|| fallback.facility().map(|f| f.to_string()).unwrap_or_default());
    let meta = match std::fs::metadata(&job.abs) {
        Ok(m) => m,
        Err(e) => {
            let f = unreadable(kind, &facility, &job.key, &e);
            return Item::File { prepared: service.prepare_collected(fallback, f), bytes: 0, records: 0 };
        }
    };
    let size = meta.len() as i64;
    let mtime = mtime_ms(&meta);
    if !opts.force
        && let Some(k) = &job.known
        && k.size == size
        && k.mtime == mtime
    {
        return Item::Skip;
    }
    let bytes = match std::fs::read(&job.abs) {
        Ok(b) => b,
        Err(e) => {
            let f = unreadable(kind, &facility, &job.key, &e);
            return Item::File { prepared: service.prepare_collected(fallback, f), bytes: 0, records: 0 };
        }
    };
    let n = bytes.len() as u64;
    if !opts.force
        && let Some(k) = &job.known
        && k.sha256 == musubi_ssmix2::sha256_hex(&bytes)
    {
        let mut state = k.clone();
        state.size = bytes.len() as i64;
        state.mtime = mtime;
        return Item::Touch(PreparedFile::touch(fallback, state), n);
    }
    let meta = FileMeta { path: job.key.clone(), size: bytes.len() as i64, mtime, seen_before: job.known.is_some() };
    let (file, actor, records) = map(meta, &bytes);
    Item::File { prepared: service.prepare_collected(&actor, file), bytes: n, records }
}

/// Runs the pipeline over `jobs` (already in order).
pub(crate) fn run(
    service: &Service,
    kind: SourceKind,
    jobs: Vec<Job>,
    fallback: &Actor,
    opts: &CollectOptions,
    progress: &dyn Progress,
    map: &MapFn<'_>,
) -> Result<Summary, CollectError> {
    let start = Instant::now();
    let threads =
        if opts.threads == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { opts.threads };
    let window = WINDOW * threads;
    progress.start(jobs.len() as u64);
    let next = AtomicUsize::new(0);
    let front = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut summary = Summary { files_seen: jobs.len() as u64, ..Default::default() };
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Item)>(window);
    let result = std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, front, stop, jobs) = (&next, &front, &stop, &jobs);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    // Stay within the window ahead of the committer.
                    while i >= front.load(Ordering::Acquire) + window {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let item = work(service, job, opts, kind, fallback, map);
                    if tx.send((i, item)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        // However the committer ends (done, an error, a panic), the workers stop waiting.
        let _stop_workers = StopOnDrop(&stop);
        commit_in_order(service, rx, &front, opts, progress, &mut summary)
    });
    result?;
    summary.elapsed = start.elapsed();
    Ok(summary)
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn commit_in_order(
    service: &Service,
    rx: std::sync::mpsc::Receiver<(usize, Item)>,
    front: &AtomicUsize,
    opts: &CollectOptions,
    progress: &dyn Progress,
    summary: &mut Summary,
) -> Result<(), CollectError> {
    // Chunk N is written by its own thread while chunk N+1 is decided here; N+1 is handed
    // over only after N committed, so chunks commit one by one, in order.
    let (dtx, drx) = std::sync::mpsc::sync_channel::<DecidedChunk>(0);
    let (rtx, rrx) = std::sync::mpsc::sync_channel::<(u64, Result<CollectStats, ApiError>)>(1);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for d in drx {
                let n = d.chunk;
                if rtx.send((n, service.write_collected(d))).is_err() {
                    return;
                }
            }
        });
        let mut writer = Writer { service, session: CollectSession::new(), dtx, rrx, in_flight: false, progress };
        let r = order_and_chunk(&mut writer, rx, front, opts, progress, summary);
        let last = writer.wait(summary);
        r.and(last)
    })
}

/// The committer's side of the writing thread.
struct Writer<'a> {
    service: &'a Service,
    session: CollectSession,
    dtx: std::sync::mpsc::SyncSender<DecidedChunk>,
    rrx: std::sync::mpsc::Receiver<(u64, Result<CollectStats, ApiError>)>,
    in_flight: bool,
    progress: &'a dyn Progress,
}

impl Writer<'_> {
    /// Waits for the chunk in flight, if any.
    fn wait(&mut self, summary: &mut Summary) -> Result<(), CollectError> {
        if !self.in_flight {
            return Ok(());
        }
        self.in_flight = false;
        let (n, r) = self.rrx.recv().map_err(|_| ApiError::internal("the collection writer stopped"))?;
        let stats = r?;
        self.session.committed(n);
        tracing::debug!(files = stats.files, created = stats.created, updated = stats.updated, "chunk committed");
        self.progress.committed(&stats);
        summary.stats.add(&stats);
        Ok(())
    }

    /// Decides `chunk` (while the one before is being written), then hands it over.
    fn flush(&mut self, chunk: &mut Vec<PreparedFile>, summary: &mut Summary) -> Result<(), CollectError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let decided = self.service.decide_collected(&mut self.session, std::mem::take(chunk))?;
        self.wait(summary)?;
        self.dtx.send(decided).map_err(|_| ApiError::internal("the collection writer stopped"))?;
        self.in_flight = true;
        Ok(())
    }
}

fn order_and_chunk(
    writer: &mut Writer<'_>,
    rx: std::sync::mpsc::Receiver<(usize, Item)>,
    front: &AtomicUsize,
    opts: &CollectOptions,
    progress: &dyn Progress,
    summary: &mut Summary,
) -> Result<(), CollectError> {
    let limit = opts.chunk.max(1);
    let mut pending: BTreeMap<usize, Item> = BTreeMap::new();
    let mut next = 0usize;
    let mut chunk: Vec<PreparedFile> = Vec::new();
    let mut in_chunk = 0usize;
    for (i, item) in rx {
        pending.insert(i, item);
        while let Some(item) = pending.remove(&next) {
            next += 1;
            front.store(next, Ordering::Release);
            match item {
                Item::Skip => {
                    summary.files_unchanged += 1;
                    progress.file(0);
                }
                Item::Touch(p, bytes) => {
                    summary.files_unchanged += 1;
                    summary.bytes += bytes;
                    progress.file(bytes);
                    chunk.push(p);
                }
                Item::File { mut prepared, bytes, records } => {
                    summary.files_read += 1;
                    summary.bytes += bytes;
                    summary.records += records;
                    progress.file(bytes);
                    if prepared.quarantined() > 0 {
                        tracing::debug!(file = prepared.path(), entries = prepared.quarantined(), "quarantined");
                    }
                    while let Some(front_part) = prepared.split_off_front(limit.saturating_sub(in_chunk).max(1)) {
                        chunk.push(front_part);
                        writer.flush(&mut chunk, summary)?;
                        in_chunk = 0;
                    }
                    in_chunk += prepared.resources();
                    chunk.push(prepared);
                }
            }
            if in_chunk >= limit || chunk.len() >= MAX_FILES {
                writer.flush(&mut chunk, summary)?;
                in_chunk = 0;
            }
        }
    }
    writer.flush(&mut chunk, summary)
}
