//! Musubi's store: versioned FHIR resources with the record meta the gate decides on, search
//! indexes, JP-CLINS Bundle submissions, the hash-chained audit log and API tokens.
//!
//! One [`Store`] type, two real backends behind a small SQL layer ([`sql::Conn`]):
//! an embedded SQLite file in the data directory (the default: nothing to install) and
//! PostgreSQL (`postgres://…`) for production. The schema and the queries are the same text for
//! both ([`schema`]); the same test suite runs against each.
//!
//! Writes go through one writer thread that commits in groups ([`writer`]); reads use a pool of
//! connections. All calls block: the server runs them on its blocking thread pool, never on the
//! async runtime.
//!
//! The store knows nothing of HTTP, tokens' meaning or access rules: callers (the gate) decide
//! who may see what; the store only keeps and finds.
//!
//! ```no_run
//! use musubi_store::Store;
//! let store = Store::open_sqlite(std::path::Path::new("./musubi-data")).unwrap();
//! let head = store.audit_head().unwrap();
//! println!("{} audit records", head.0);
//! ```

#![deny(missing_docs)]

pub mod accounts;
pub mod collect;
pub mod evidence;
pub mod mpi;
mod ops;
pub mod pg_tls;
mod pool;
mod postgres;
pub mod private;
mod query;
pub mod referral;
pub mod rekey;
pub mod schema;
pub mod sql;
mod sqlite;
pub mod writer;

use std::path::Path;
use std::sync::Arc;

use musubi_domain::audit::{AuditRecord, StoredAudit};
use musubi_domain::{FacilityCode, Flags, ResourceClass};
use musubi_fhir::ResourceType;
use musubi_fhir::index::IndexEntry;

pub use accounts::{
    AccountWrite, AnchorLogRow, AnchorRow, EmergencyRow, FacilityRow, NotificationRow, PersonRecordRow, PortalRow,
    ProxyGrantRow, SessionRow, Throttle, ThrottleRule, UserRow, VisitConsentRow,
};
pub use evidence::{AlertRow, CodePurpose, EvidenceWrite, PersonCodeRow};
/// The gate's search scope, which the store translates into SQL.
pub use musubi_gate::{Scope, ScopeRule};
pub use private::{private_append, private_create, private_dir};
pub use query::{AuditQuery, DatePred, DatePrefix, Filter, SearchQuery, Sort, StrMatch, TokenMatch};
pub use referral::{AttachmentRow, PurgeKey, Receipt, ReferralDeletion, ReferralRow};

use crate::pool::Pool;
use crate::sql::Conn;
use crate::writer::Writer;

/// What can go wrong in the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, connection, SQL). The message is for logs, not for clients.
    #[error("database error during {op}: {message}")]
    Backend {
        /// What the store was doing.
        op: &'static str,
        /// The backend's message.
        message: String,
    },
    /// A uniqueness rule was broken (e.g. creating a resource that exists).
    #[error("constraint violated: {0}")]
    Constraint(String),
    /// A versioned write found another version than it expected (someone else wrote first).
    #[error("version conflict on {key}: expected {expected}, found {found}")]
    Conflict {
        /// `Type/id`.
        key: String,
        /// What the caller expected.
        expected: String,
        /// What was there.
        found: String,
    },
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
    /// A lock was poisoned by a panic in another thread.
    #[error("internal lock poisoned")]
    Poisoned,
    /// Stored data could not be read back (corruption or a bug).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn backend(op: &'static str, e: impl std::fmt::Display) -> Self {
        StoreError::Backend { op, message: e.to_string() }
    }
}

/// The record meta stored beside a resource (see `musubi_fhir::classify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMeta {
    /// Source facility (10-digit code).
    pub facility: Option<FacilityCode>,
    /// Who submitted it: the facility code of the system token, or `admin` / `operator`.
    pub submitter: String,
    /// The Patient (logical id) it is about; for a Patient, its own id.
    pub patient_id: Option<String>,
    /// The MPI person, when linked.
    pub person_id: Option<String>,
    /// Class.
    pub class: ResourceClass,
    /// Clinical date (epoch ms).
    pub clinical_date: Option<i64>,
    /// Flags.
    pub flags: Flags,
    /// Retention end (YYYY-MM-DD), if any.
    pub retention_end: Option<String>,
    /// "Keep the last N" exception to the retention end.
    pub keep_last: Option<i64>,
    /// The item the keep-last rule counts by.
    pub item_key: Option<String>,
    /// The JP-CLINS Bundle identifier it arrived in.
    pub bundle_key: Option<String>,
}

/// A resource version as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResource {
    /// Type.
    pub rtype: ResourceType,
    /// Logical id.
    pub id: String,
    /// Version (1, 2, …).
    pub version: i64,
    /// When this version was written (epoch ms).
    pub last_updated: i64,
    /// Whether this version is a deletion.
    pub deleted: bool,
    /// The JSON (None for a deletion).
    pub content: Option<String>,
}

/// The current state of a resource with its meta (what search and the gate see).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentRow {
    /// Type.
    pub rtype: ResourceType,
    /// Logical id.
    pub id: String,
    /// Current version.
    pub version: i64,
    /// When the current version was written.
    pub last_updated: i64,
    /// Whether the current version is a deletion.
    pub deleted: bool,
    /// Hash of the content (without server meta), for idempotent re-submission.
    pub content_hash: String,
    /// The meta.
    pub meta: StoredMeta,
}

impl CurrentRow {
    /// What the gate looks at: the meta, never the JSON.
    pub fn view(&self) -> musubi_gate::RecordView {
        musubi_gate::RecordView {
            rtype: self.rtype,
            class: self.meta.class,
            facility: self.meta.facility,
            patient_id: self.meta.patient_id.clone(),
            person_id: self.meta.person_id.clone().or_else(|| self.meta.patient_id.clone()),
            flags: self.meta.flags,
            clinical_date: self.meta.clinical_date,
        }
    }

    /// `Type/id`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.rtype.as_str(), self.id)
    }
}

/// What a put expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing with this type and id exists (a create with a new id).
    Absent,
    /// The current version is this one (an update; anything else is a conflict).
    Version(i64),
}

/// A resource version to write.
#[derive(Debug, Clone)]
pub struct PutResource {
    /// Type.
    pub rtype: ResourceType,
    /// Logical id.
    pub id: String,
    /// The new version number.
    pub version: i64,
    /// What must be there now.
    pub expect: Expect,
    /// Write time (epoch ms), also in the JSON's meta.lastUpdated.
    pub last_updated: i64,
    /// The JSON, with id and meta set.
    pub content: String,
    /// Hash of the content without server meta.
    pub content_hash: String,
    /// The record meta.
    pub meta: StoredMeta,
    /// The search-index entries.
    pub index: Vec<IndexEntry>,
}

/// A deletion to write (a new version marked deleted).
#[derive(Debug, Clone)]
pub struct DeleteResource {
    /// Type.
    pub rtype: ResourceType,
    /// Logical id.
    pub id: String,
    /// Write time.
    pub last_updated: i64,
    /// If set, the current version must be this one.
    pub expect_version: Option<i64>,
}

/// A change to the JP-CLINS Bundle submissions.
#[derive(Debug, Clone)]
pub enum BundleOp {
    /// Record (or replace) a submission.
    Put(BundleSubmission),
    /// Forget a submission.
    Remove(String),
}

/// A JP-CLINS Bundle submission: which identifier, from whom, what it contained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSubmission {
    /// The Bundle identifier value (`facility^year^id`).
    pub bundle_key: String,
    /// The submitting facility.
    pub facility: String,
    /// `collection` (5情報) or `document`.
    pub kind: String,
    /// For documents, the id of the stored Bundle resource.
    pub bundle_id: Option<String>,
    /// Hash of the submitted Bundle (an identical resubmission changes nothing).
    pub content_hash: String,
    /// When it was received.
    pub received: i64,
}

/// Everything one request writes, committed atomically together with its audit records.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    /// Resource versions.
    pub puts: Vec<PutResource>,
    /// Deletions.
    pub deletes: Vec<DeleteResource>,
    /// Bundle submission changes.
    pub bundles: Vec<BundleOp>,
    /// Audit records appended in the same transaction.
    pub audit: Vec<AuditRecord>,
}

/// What a committed batch produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// For each delete: the version written (None if there was nothing to delete).
    pub deleted_versions: Vec<Option<i64>>,
    /// The sequence numbers of the audit records appended.
    pub audit_seqs: Vec<i64>,
}

/// An API token as stored (only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// `admin` or `system`.
    pub kind: String,
    /// The facility a system token acts for.
    pub facility: Option<String>,
    /// A name for people and the audit log.
    pub name: String,
    /// When issued.
    pub created: i64,
    /// Whether revoked.
    pub revoked: bool,
    /// When it stops being accepted (ms since the epoch); `None`: never (the administrator's
    /// token, and system tokens issued before expiry existed).
    pub expires: Option<i64>,
}

impl TokenRow {
    /// Whether the token is accepted at `now_ms` (not revoked, not expired).
    pub fn active_at(&self, now_ms: i64) -> bool {
        !self.revoked && self.expires.is_none_or(|e| now_ms < e)
    }
}

/// Tuning for opening a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Reader connections at most.
    pub readers: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { readers: 8 }
    }
}

pub(crate) struct Inner {
    backend: &'static str,
    readers: Pool,
    pub(crate) writer: Writer,
    /// The embedded store's background WAL checkpoints (None on PostgreSQL).
    _checkpointer: Option<sqlite::Checkpointer>,
}

/// The store. Cheap to clone; share it.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

/// The name of the embedded database file inside the data directory.
pub const SQLITE_FILE: &str = "musubi.db";

impl Store {
    /// Opens (creating and migrating) the embedded store in `dir`.
    pub fn open_sqlite(dir: &Path) -> Result<Store, StoreError> {
        Self::open_sqlite_with(dir, StoreOptions::default())
    }

    /// Opens the embedded store with options.
    pub fn open_sqlite_with(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        private::private_dir(dir).map_err(|e| StoreError::backend("create data directory", e))?;
        let path = dir.join(SQLITE_FILE);
        // SQLite gives its WAL and shared-memory files the mode of the database file: create
        // that 0600 before SQLite does (with the process umask, it would be world-readable).
        drop(private::private_append(&path).map_err(|e| StoreError::backend("create the database file", e))?);
        for suffix in ["-wal", "-shm"] {
            private::tighten(&dir.join(format!("{SQLITE_FILE}{suffix}")), 0o600);
        }
        let mut first = sqlite::SqliteConn::open(&path, false)?;
        schema::migrate(&mut first)?;
        // Planner statistics: without them SQLite may walk an ordering index over every row
        // instead of using a selective one. `optimize` analyzes only what needs it.
        first.batch("PRAGMA optimize = 0x10002")?;
        drop(first);
        let wpath = path.clone();
        let writer =
            Writer::start(Box::new(move || Ok(Box::new(sqlite::SqliteConn::open(&wpath, false)?) as Box<dyn Conn>)))?;
        let checkpointer = sqlite::Checkpointer::start(&path)?;
        let rpath = path;
        let readers = Pool::new(
            opts.readers,
            Box::new(move || Ok(Box::new(sqlite::SqliteConn::open(&rpath, true)?) as Box<dyn Conn>)),
        );
        Ok(Store { inner: Arc::new(Inner { backend: "sqlite", readers, writer, _checkpointer: Some(checkpointer) }) })
    }

    /// Connects to PostgreSQL at `url` (migrating the schema if needed).
    pub fn open_postgres(url: &str) -> Result<Store, StoreError> {
        Self::open_postgres_with(url, StoreOptions::default())
    }

    /// Connects to PostgreSQL with options.
    pub fn open_postgres_with(url: &str, opts: StoreOptions) -> Result<Store, StoreError> {
        let mut first = postgres::PgConn::connect(url)?;
        schema::migrate(&mut first)?;
        drop(first);
        let wurl = url.to_owned();
        let writer = Writer::start(Box::new(move || Ok(Box::new(postgres::PgConn::connect(&wurl)?) as Box<dyn Conn>)))?;
        let rurl = url.to_owned();
        let readers =
            Pool::new(opts.readers, Box::new(move || Ok(Box::new(postgres::PgConn::connect(&rurl)?) as Box<dyn Conn>)));
        Ok(Store { inner: Arc::new(Inner { backend: "postgres", readers, writer, _checkpointer: None }) })
    }

    /// Opens by a location: `postgres://…`/`postgresql://…` or a data directory.
    pub fn open(database_url: Option<&str>, data_dir: &Path) -> Result<Store, StoreError> {
        match database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Self::open_postgres(url),
            Some(other) => Err(StoreError::backend("open", format!("unsupported database URL scheme in {other:?}"))),
            None => Self::open_sqlite(data_dir),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.inner.backend
    }

    /// Commits a batch atomically (resources, Bundle submissions and audit records together).
    pub fn commit(&self, batch: WriteBatch) -> Result<Committed, StoreError> {
        self.inner.writer.write(move |conn| ops::apply(conn, &batch))
    }

    /// Appends audit records on their own (for reads, which write nothing else). They are
    /// committed when this returns and synced to disk within [`writer::SYNC_WINDOW`]
    /// ([`writer::Durability::Deferred`]).
    pub fn append_audit(&self, records: Vec<AuditRecord>) -> Result<Vec<i64>, StoreError> {
        self.inner.writer.write_with(writer::Durability::Deferred, move |conn| ops::append_audit(conn, &records))
    }

    /// Runs `f` on a reader connection inside a read-only transaction: one consistent snapshot
    /// for a search's count and page.
    pub fn snapshot<T>(&self, f: impl FnOnce(&mut Reader<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.inner.readers.with(|conn| {
            let begin = match conn.dialect() {
                sql::Dialect::Sqlite => "BEGIN",
                sql::Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            };
            conn.batch(begin)?;
            let result = f(&mut Reader { conn });
            let end = conn.batch("COMMIT");
            let v = result?;
            end?;
            Ok(v)
        })
    }

    /// Runs `f` on a reader connection (no transaction).
    pub fn read<T>(&self, f: impl FnOnce(&mut Reader<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.inner.readers.with(|conn| f(&mut Reader { conn }))
    }

    /// Current state of one resource.
    pub fn current(&self, rtype: ResourceType, id: &str) -> Result<Option<CurrentRow>, StoreError> {
        self.read(|r| r.current(rtype, id))
    }

    /// The audit chain head: (last sequence number, its hash).
    pub fn audit_head(&self) -> Result<(i64, String), StoreError> {
        self.read(|r| r.audit_head())
    }

    /// The highest chain head this process committed (None before its first audit record):
    /// a database head behind it means records were cut since.
    pub fn committed_audit_head(&self) -> Option<(i64, String)> {
        self.inner.writer.committed_audit_head()
    }

    /// Stores a new API token.
    pub fn insert_token(&self, t: TokenRow) -> Result<(), StoreError> {
        self.inner.writer.write(move |conn| ops::insert_token(conn, &t))
    }

    /// Revokes a token by name; returns how many were revoked.
    pub fn revoke_token(&self, name: String) -> Result<u64, StoreError> {
        self.inner.writer.write(move |conn| {
            conn.execute("UPDATE api_token SET revoked = 1 WHERE name = $1 AND revoked = 0", &[sql::Param::Text(&name)])
        })
    }

    /// Rotation: stores `new` and makes every active token of the same name expire at
    /// `old_until` at the latest (the overlap during which the facility's system switches to
    /// the new secret), in one transaction. Returns how many old tokens were cut short.
    pub fn rotate_token(&self, new: TokenRow, old_until: i64) -> Result<u64, StoreError> {
        self.inner.writer.write(move |conn| {
            let n = conn.execute(
                "UPDATE api_token SET expires = $1 WHERE name = $2 AND revoked = 0 AND (expires IS NULL OR expires > $1)",
                &[sql::Param::I64(old_until), sql::Param::Text(&new.name)],
            )?;
            ops::insert_token(conn, &new)?;
            Ok(n)
        })
    }

    /// Sets a setting.
    pub fn put_setting(&self, key: String, value: String) -> Result<(), StoreError> {
        self.inner.writer.write(move |conn| ops::put_setting(conn, &key, &value))
    }

    /// Reads a setting.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|r| r.setting(key))
    }
}

/// Read access on one connection (see [`Store::read`], [`Store::snapshot`]).
pub struct Reader<'a> {
    pub(crate) conn: &'a mut dyn Conn,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.inner.backend)
    }
}

/// Verifies the whole audit chain, reading it in pages. Returns the number of records verified,
/// or the first break.
pub fn verify_audit_chain(
    store: &Store,
    mut progress: impl FnMut(i64),
) -> Result<Result<i64, musubi_domain::audit::ChainBreak>, StoreError> {
    // After pruning, verification resumes at the boundary the pruning recorded.
    let (mut next, mut prev) = match store.setting("audit.pruned_through")?.and_then(|s| {
        let (seq, hash) = s.split_once(':')?;
        Some((seq.parse::<i64>().ok()? + 1, hash.to_owned()))
    }) {
        Some(b) => b,
        None => (1i64, musubi_domain::audit::GENESIS_HASH.to_owned()),
    };
    loop {
        let page: Vec<StoredAudit> = store.read(|r| r.audit_page(next - 1, 10_000))?;
        if page.is_empty() {
            break;
        }
        match musubi_domain::audit::verify_chain(&page, next, prev) {
            Ok((n, h)) => {
                next = n;
                prev = h;
                progress(next - 1);
            }
            Err(b) => return Ok(Err(b)),
        }
    }
    let (head_seq, head_hash) = store.audit_head()?;
    if head_seq != next - 1 {
        let reason = if head_seq > next - 1 {
            format!(
                "the chain head says {head_seq} records, but only {} are stored (the last ones were deleted)",
                next - 1
            )
        } else {
            format!("{} records are stored but the chain head says {head_seq}", next - 1)
        };
        return Ok(Err(musubi_domain::audit::ChainBreak { seq: next - 1, reason }));
    }
    if head_hash != prev {
        return Ok(Err(musubi_domain::audit::ChainBreak {
            seq: head_seq,
            reason: "the chain head hash does not match the last record".into(),
        }));
    }
    Ok(Ok(next - 1))
}
