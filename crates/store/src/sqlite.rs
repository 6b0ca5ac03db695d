//! The embedded backend: one SQLite file in the data directory, in WAL mode with
//! `synchronous=FULL`, so a commit that returned is on disk (a write is acknowledged only when
//! durable) and readers never block the writer.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, params_from_iter};

use crate::StoreError;
use crate::sql::{Conn, Dialect, Param, Row, Value, sqlite_placeholders};

/// A SQLite connection.
pub struct SqliteConn {
    conn: Connection,
}

impl SqliteConn {
    /// Opens (creating if needed) the database file.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::backend("open", e))?;
        conn.set_prepared_statement_cache_capacity(256);
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(|e| StoreError::backend("busy_timeout", e))?;
        let pragmas = if read_only {
            "PRAGMA query_only = ON; PRAGMA cache_size = -32000; PRAGMA mmap_size = 2147418112;"
        } else {
            // FULL: the WAL is synced at every commit, so an acknowledged write survives power
            // loss, not only a process crash.
            // The WAL is checkpointed by a background thread ([`Checkpointer`]), not by the
            // commit that happens to cross the threshold: that commit (often a read's audit
            // record, which the read waits for) would otherwise copy megabytes and sync the
            // file first. The threshold here is only the fallback if that thread falls behind.
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -64000; \
             PRAGMA wal_autocheckpoint = 16000; PRAGMA mmap_size = 268435456;"
        };
        conn.execute_batch(pragmas).map_err(|e| StoreError::backend("pragma", e))?;
        Ok(SqliteConn { conn })
    }
}

/// The embedded store's WAL upkeep, in a background thread, so that no request waits for it:
///
/// - every [`crate::writer::SYNC_WINDOW`] it syncs the WAL file to disk: the audit records of
///   reads are committed without a sync (`Durability::Deferred`), and this is what makes them
///   survive a power loss within that window, however busy the writer is;
/// - every [`Checkpointer::CHECKPOINT_EVERY`] it checkpoints the WAL in `PASSIVE` mode (it copies
///   what it can without waiting for readers or the writer, who never wait for it either).
///
/// Stops when dropped.
pub(crate) struct Checkpointer {
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    const CHECKPOINT_EVERY: u32 = 4;

    /// Starts the upkeep of the database at `path`.
    pub(crate) fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = SqliteConn::open(path, false)?.conn;
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal_path = std::path::PathBuf::from(wal_path);
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("musubi-checkpoint".into())
            .spawn(move || {
                let (lock, cvar) = &*flag;
                let mut wal: Option<std::fs::File> = None;
                let mut tick = 0u32;
                let mut stopped = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                while !*stopped {
                    stopped = cvar
                        .wait_timeout(stopped, crate::writer::SYNC_WINDOW)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                    if *stopped {
                        break;
                    }
                    drop(stopped);
                    // fsync applies to the file, whichever descriptor wrote it.
                    if wal.is_none() {
                        wal = std::fs::File::open(&wal_path).ok();
                    }
                    if let Some(f) = &wal
                        && let Err(e) = f.sync_data()
                    {
                        tracing::warn!(error = %e, "could not sync the WAL; retrying with a new handle");
                        wal = None;
                    }
                    tick = tick.wrapping_add(1);
                    if tick.is_multiple_of(Self::CHECKPOINT_EVERY)
                        && let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "background WAL checkpoint failed (the writer's own checkpoint stays as fallback)");
                    }
                    stopped = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            })
            .map_err(|e| StoreError::backend("start the checkpoint thread", e))?;
        Ok(Checkpointer { stop, thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct P<'a, 'b>(&'b Param<'a>);

impl rusqlite::ToSql for P<'_, '_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match self.0 {
            Param::Null => rusqlite::types::ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Param::I64(v) => rusqlite::types::ToSqlOutput::Owned(rusqlite::types::Value::Integer(*v)),
            Param::Text(s) => rusqlite::types::ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

impl Conn for SqliteConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let sql = sqlite_placeholders(sql);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| StoreError::backend("prepare", e))?;
        let n = stmt.execute(params_from_iter(params.iter().map(P))).map_err(map_err)?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let sql = sqlite_placeholders(sql);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| StoreError::backend("prepare", e))?;
        let ncols = stmt.column_count();
        let mut rows = stmt.query(params_from_iter(params.iter().map(P))).map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(map_err)? {
            let mut vals = Vec::with_capacity(ncols);
            for i in 0..ncols {
                vals.push(match r.get_ref(i).map_err(map_err)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::I64(v),
                    ValueRef::Real(f) => Value::I64(f as i64),
                    // The strict check is several times faster than the lossy one on valid text
                    // (always the case: the store writes only `&str`); lossy stays as a fallback.
                    ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(match std::str::from_utf8(t) {
                        Ok(s) => s.to_owned(),
                        Err(_) => String::from_utf8_lossy(t).into_owned(),
                    }),
                });
            }
            out.push(Row(vals));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.conn.execute_batch(sql).map_err(map_err)
    }

    fn insert_rows(&mut self, table: &str, columns: &[&str], rows: &[Vec<Param<'_>>]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let sql = format!("INSERT INTO {table} ({}) VALUES ({})", columns.join(", "), placeholders.join(", "));
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| StoreError::backend("prepare", e))?;
        for row in rows {
            stmt.execute(params_from_iter(row.iter().map(P))).map_err(map_err)?;
        }
        Ok(())
    }
}

fn map_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && f.code == rusqlite::ErrorCode::ConstraintViolation
    {
        return StoreError::Constraint(e.to_string());
    }
    StoreError::backend("sqlite", e)
}
