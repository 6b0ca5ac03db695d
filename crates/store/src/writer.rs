//! The writer: one thread that owns the write connection and commits in groups.
//!
//! Every write (resource versions, Bundle submissions, audit records) is a job sent to this
//! thread. The thread takes the first waiting job and every job queued behind it (up to a
//! limit), runs each inside its own SAVEPOINT in one transaction, and commits once: one disk
//! sync for many requests (group commit). A job that fails is rolled back to its savepoint and
//! does not affect the others. Each caller is answered only after the COMMIT returned, so an
//! acknowledged write is durable, and the audit chain (which needs one writer) is never forked.

use std::thread::JoinHandle;

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::StoreError;
use crate::sql::{Conn, Dialect};

/// Called after the commit with its outcome.
type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// What a job runs in the transaction; says whether it succeeded and how to answer.
type Run = Box<dyn FnOnce(&mut dyn Conn) -> (bool, Done) + Send>;

/// How durable a job must be when its caller is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk (synced) before the answer: clinical data, accounts, consent.
    Full,
    /// Committed before the answer (it survives a crash of the process) and synced within
    /// [`SYNC_WINDOW`] (it survives a power loss from then on): the audit records of reads,
    /// which would otherwise make every read wait for a disk sync.
    Deferred,
}

/// The longest a [`Durability::Deferred`] commit waits for its disk sync.
pub const SYNC_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

struct Job {
    run: Run,
    durability: Durability,
}

/// How long a group of read-audit jobs waits for more jobs before committing.
const LINGER: std::time::Duration = std::time::Duration::from_micros(1000);

/// How many jobs at most share one transaction.
const MAX_GROUP: usize = 256;

/// The job queue. A mutex and a condition variable rather than a channel: waiting threads park
/// at once instead of spinning and yielding first, which on two shared cores cost more CPU
/// than the work itself (measured with perf on the read benchmark).
struct Queue {
    jobs: Mutex<(VecDeque<Job>, bool)>,
    ready: Condvar,
}

impl Queue {
    /// Waits up to `timeout` (forever when None) for jobs; returns whatever is queued (at most
    /// `max`), or None when closed and empty.
    fn take(&self, timeout: Option<Duration>, max: usize) -> Option<Vec<Job>> {
        let mut g = self.jobs.lock().ok()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        while g.0.is_empty() {
            if g.1 {
                return None;
            }
            match deadline {
                None => g = self.ready.wait(g).ok()?,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Some(Vec::new());
                    }
                    g = self.ready.wait_timeout(g, left).ok()?.0;
                }
            }
        }
        let n = g.0.len().min(max);
        Some(g.0.drain(..n).collect())
    }
}

/// A reply slot a caller parks on.
struct Reply<T> {
    slot: Mutex<Option<T>>,
    ready: Condvar,
}

impl<T> Reply<T> {
    fn put(&self, v: T) {
        if let Ok(mut g) = self.slot.lock() {
            *g = Some(v);
        }
        self.ready.notify_one();
    }

    fn wait(&self) -> Option<T> {
        let mut g = self.slot.lock().ok()?;
        loop {
            if let Some(v) = g.take() {
                return Some(v);
            }
            g = self.ready.wait(g).ok()?;
        }
    }
}

/// The highest audit chain head (seq, hash) this writer has committed.
type CommittedHead = Arc<Mutex<Option<(i64, String)>>>;

/// Handle to the writer thread.
pub struct Writer {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
    committed_head: CommittedHead,
}

impl Writer {
    /// Starts the thread. `connect` makes (and remakes, after a failure) the write connection.
    pub fn start(connect: Box<dyn Fn() -> Result<Box<dyn Conn>, StoreError> + Send>) -> Result<Self, StoreError> {
        let first = connect()?;
        let queue = Arc::new(Queue { jobs: Mutex::new((VecDeque::new(), false)), ready: Condvar::new() });
        let q = queue.clone();
        let committed_head: CommittedHead = Arc::new(Mutex::new(None));
        let ch = committed_head.clone();
        let thread = std::thread::Builder::new()
            .name("musubi-writer".into())
            .spawn(move || run(&q, first, connect, &ch))
            .map_err(|e| StoreError::backend("spawn writer", e))?;
        Ok(Writer { queue, thread: Some(thread), committed_head })
    }

    /// The highest audit chain head this writer committed (None before its first append).
    pub fn committed_audit_head(&self) -> Option<(i64, String)> {
        self.committed_head.lock().ok().and_then(|h| h.clone())
    }

    /// Runs `f` in a write transaction and returns its result once committed.
    pub fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_with(Durability::Full, f)
    }

    /// Runs `f` in a write transaction with the given durability.
    pub fn write_with<T: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reply = Arc::new(Reply { slot: Mutex::new(None), ready: Condvar::new() });
        let r = reply.clone();
        let run: Run = Box::new(move |conn| match f(conn) {
            Ok(v) => (
                true,
                Box::new(move |commit: Result<(), StoreError>| {
                    r.put(commit.map(|_| v));
                }),
            ),
            Err(e) => (
                false,
                Box::new(move |_| {
                    r.put(Err(e));
                }),
            ),
        });
        let job = Job { run, durability };
        {
            let mut g = self.queue.jobs.lock().map_err(|_| StoreError::Poisoned)?;
            if g.1 {
                return Err(StoreError::Closed);
            }
            g.0.push_back(job);
        }
        self.queue.ready.notify_one();
        reply.wait().ok_or(StoreError::Poisoned)?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish the jobs it has and stop.
        if let Ok(mut g) = self.queue.jobs.lock() {
            g.1 = true;
        }
        self.queue.ready.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn set_sync(conn: &mut dyn Conn, full: bool) -> Result<(), StoreError> {
    match (conn.dialect(), full) {
        (Dialect::Sqlite, true) => conn.batch("PRAGMA synchronous = FULL"),
        (Dialect::Sqlite, false) => conn.batch("PRAGMA synchronous = NORMAL"),
        // Inside the transaction: only this commit is affected.
        (Dialect::Postgres, true) => Ok(()),
        (Dialect::Postgres, false) => conn.batch("SET LOCAL synchronous_commit = off"),
    }
}

/// Syncs what deferred commits left unsynced: a tiny write committed with full durability
/// syncs the whole log before it (SQLite WAL and PostgreSQL WAL alike).
fn sync_tick(conn: &mut dyn Conn) -> Result<(), StoreError> {
    set_sync(conn, true)?;
    let begin = match conn.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    conn.batch(begin)?;
    let r = conn.execute("UPDATE audit_head SET seq = seq WHERE id = 1", &[]);
    match r {
        Ok(_) => conn.batch("COMMIT"),
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}

fn run(
    queue: &Queue,
    mut conn: Box<dyn Conn>,
    connect: Box<dyn Fn() -> Result<Box<dyn Conn>, StoreError> + Send>,
    committed_head: &CommittedHead,
) {
    let mut broken = false;
    // When the oldest commit not yet synced to disk was made.
    let mut unsynced_since: Option<std::time::Instant> = None;
    loop {
        let timeout = unsynced_since.map(|t| SYNC_WINDOW.saturating_sub(t.elapsed()));
        let Some(mut jobs) = queue.take(timeout, MAX_GROUP) else {
            if unsynced_since.is_some() {
                let _ = sync_tick(conn.as_mut());
            }
            break;
        };
        if jobs.is_empty() {
            match sync_tick(conn.as_mut()) {
                Ok(()) => unsynced_since = None,
                Err(e) => tracing::error!(error = %e, "could not sync deferred audit commits"),
            }
            continue;
        }
        if broken {
            match connect() {
                Ok(c) => {
                    conn = c;
                    broken = false;
                }
                Err(e) => {
                    tracing::error!(error = %e, "writer could not reconnect");
                    for j in jobs {
                        let (_, done) = (j.run)(&mut FailConn);
                        done(Err(e.clone()));
                    }
                    continue;
                }
            }
        }
        // Audit records of reads may wait a moment for company: one commit for many reads
        // costs far less than one each, and each read still waits for its record's commit.
        if jobs.len() < MAX_GROUP
            && jobs.iter().all(|j| j.durability == Durability::Deferred)
            && let Some(more) = queue.take(Some(LINGER), MAX_GROUP - jobs.len())
        {
            jobs.extend(more);
        }
        // Under steady load the queue never runs dry, so the idle-time sync above never comes.
        // On SQLite the store's background thread syncs the WAL file every SYNC_WINDOW
        // (`sqlite::Checkpointer`), off this thread; on PostgreSQL a group made when the oldest
        // unsynced commit is due is committed synchronously instead (which flushes everything
        // before it too).
        let sync_due =
            conn.dialect() == Dialect::Postgres && unsynced_since.is_some_and(|t| t.elapsed() >= SYNC_WINDOW);
        let full = sync_due || jobs.iter().any(|j| j.durability == Durability::Full);
        let begin = match conn.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        };
        let started = if conn.dialect() == Dialect::Sqlite {
            set_sync(conn.as_mut(), full).and_then(|_| conn.batch(begin))
        } else {
            conn.batch(begin).and_then(|_| set_sync(conn.as_mut(), full))
        };
        if let Err(e) = started {
            tracing::error!(error = %e, "writer could not begin a transaction");
            broken = true;
            for j in jobs {
                let (_, done) = (j.run)(&mut FailConn);
                done(Err(e.clone()));
            }
            continue;
        }
        let mut dones = Vec::with_capacity(jobs.len());
        // The audit head the group's kept jobs appended (a rolled-back job's does not count).
        let mut group_head: Option<(i64, String)> = None;
        for j in jobs {
            if let Err(e) = conn.batch("SAVEPOINT job") {
                let (_, done) = (j.run)(&mut FailConn);
                dones.push((false, done, Some(e)));
                continue;
            }
            crate::ops::take_appended_head();
            let (ok, done) = (j.run)(conn.as_mut());
            let appended = crate::ops::take_appended_head();
            let end = if ok { "RELEASE SAVEPOINT job" } else { "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job" };
            let end_err = conn.batch(end).err();
            if ok && end_err.is_none() && appended.is_some() {
                group_head = appended;
            }
            dones.push((ok, done, end_err));
        }
        let commit = conn.batch("COMMIT");
        if commit.is_ok()
            && let Some((seq, hash)) = group_head
            && let Ok(mut h) = committed_head.lock()
            && h.as_ref().is_none_or(|(s, _)| seq > *s)
        {
            *h = Some((seq, hash));
        }
        match &commit {
            Err(e) => {
                tracing::error!(error = %e, "commit failed; the group is rolled back");
                let _ = conn.batch("ROLLBACK");
                broken = matches!(e, StoreError::Backend { .. });
            }
            // A full commit syncs everything before it too.
            Ok(()) if full => unsynced_since = None,
            Ok(()) => {
                unsynced_since.get_or_insert_with(std::time::Instant::now);
            }
        }
        for (ok, done, end_err) in dones {
            match (&commit, end_err) {
                (Err(e), _) => done(Err(e.clone())),
                (Ok(()), Some(e)) if ok => done(Err(e)),
                _ => done(Ok(())),
            }
        }
    }
}

/// Stands in for the connection when there is none, so a job can still produce its answer.
struct FailConn;

impl Conn for FailConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    fn execute(&mut self, _: &str, _: &[crate::sql::Param<'_>]) -> Result<u64, StoreError> {
        Err(StoreError::Closed)
    }
    fn query(&mut self, _: &str, _: &[crate::sql::Param<'_>]) -> Result<Vec<crate::sql::Row>, StoreError> {
        Err(StoreError::Closed)
    }
    fn batch(&mut self, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Closed)
    }
    fn insert_rows(&mut self, _: &str, _: &[&str], _: &[Vec<crate::sql::Param<'_>>]) -> Result<(), StoreError> {
        Err(StoreError::Closed)
    }
}
