//! Rekeying a store: collected resources stored under the collectors' deterministic ids (UUID
//! v5 of public inputs) move to the keyed ids the service gives new collections (see
//! `musubi_service::ids`), in one transaction.
//!
//! The store decides *what* moves and carries it through every table; the caller (the service)
//! says what an id becomes and how a resource's JSON is rewritten ([`Rekeying`]).
//!
//! **Which ids move.** A resource moves when a collector wrote it (it has a `collect_source`
//! row) and its id is deterministic ([`Rekeying::new_id`]). A resource with a deterministic-
//! looking id that no collector wrote (a client chose it with `PUT`) keeps it: its writer knows
//! it by that id. A reference to a deterministic id that names no stored resource at all is
//! keyed too, exactly as the service keys it in a new collection (`ids::key_file`), so that it
//! resolves when the resource arrives.
//!
//! **What follows**, table by table (the schema is in [`crate::schema`]):
//!
//! | table | columns that move |
//! |---|---|
//! | `resource` | `id` (moved resources), `patient_id`, `person_id` (see below), `content_hash` (recomputed when the current version's JSON changed) |
//! | `resource_version` | `id`; `content`: the resource's own `id` and every reference, in every version of every resource (also of resources that do not move but point to moved ones). `version`, `last_updated`, `meta.versionId` and `meta.lastUpdated` stay: a rekey is not a new version |
//! | `idx_token`, `idx_date`, `idx_string` | `id` |
//! | `idx_ref` | `id`, `target` |
//! | `collect_source` | `id` |
//! | `facility_use`, `mpi_link`, `referral` | `patient_id` |
//! | `referral` (`bundle_id`, `discharge_id`), `bundle_submission` (`bundle_id`) | the ids of Bundles, should one move (collectors write none) |
//! | every person column: `resource`, `portal_account`, `proxy_grant`, `consent_setting`, `residence`, `residence_event`, `visit_consent`, `emergency_grant`, `notification`, `person_code`, `participation`, `referral` (`person_id`), `person_retired`, `session.acting_for`, `mpi_link` | only a value equal to a moved Patient's old id: a patient the MPI has not linked stands as its own person (`Persons::of` in the service) |
//!
//! What does **not** move: the audit trail (`audit` is a hash chain; rewriting it would break
//! `musubi audit verify`) — instead `id_rekeyed (rtype, old_id, new_id, at)` (migration 14)
//! keeps every move, and the audit queries by patient or person ([`crate::AuditQuery`]) and
//! the patient's access history follow it; `mpi_history` (a log of decisions, like the audit);
//! the collectors' quarantine and original bytes (`collect_quarantine`, `collect_blob`: what
//! came in, as it came); the content of `Bundle` resources (documents are kept as sent — a
//! referral letter may be signed — and their references point into the document); MPI
//! persons, facility-local patient numbers (`mpi_link.local_id`, `mpi_review`,
//! `mpi_keep_apart`), accounts, tokens and settings, which hold no resource ids.
//!
//! **Atomic and idempotent.** Everything runs as one writer job, in one transaction on both
//! backends: a crash or an error leaves the store as it was. After a successful run no
//! deterministic id of a collected resource remains, so a second run moves nothing and
//! rewrites nothing. The search indexes are moved, not recomputed: they hold what the rewritten
//! JSON yields, because the JSON and the index map every id the same way.

use std::collections::HashSet;

use musubi_domain::audit::AuditRecord;
use musubi_fhir::ResourceType;

use crate::sql::{Conn, Param};
use crate::{Reader, Store, StoreError};

/// The shape of a UUID version 5 for SQL `LIKE` (a cheap filter; [`Rekeying::new_id`] decides).
pub const DETERMINISTIC_ID_LIKE: &str = "________-____-5___-____-____________";

/// The setting that says since when (epoch ms) no collected resource has a deterministic id:
/// written by a rekey, or by the start-up check when it found none. Collections under the key
/// never store a deterministic id again (`ids::key_file` keeps an old id only while it is
/// stored), so the check need not look again.
pub const ALL_KEYED_SETTING: &str = "ids.all_keyed_since";

/// A resource version's JSON after rewriting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The new JSON.
    pub content: String,
    /// Its content hash (as the service computes it for a write: without the server's meta),
    /// stored for the current version.
    pub content_hash: String,
}

/// What a rekey needs from its caller.
pub trait Rekeying: Send {
    /// The new id of `id`, when it is a deterministic id (one to move); None otherwise.
    fn new_id(&self, id: &str) -> Option<String>;
    /// Rewrites the JSON of a version of a `rtype` resource: its own `id` and its references,
    /// each `Type/id` for which `moved` gives a new id. None when nothing changed. An error
    /// (JSON that does not parse) stops the rekey.
    fn rewrite(
        &self,
        rtype: ResourceType,
        content: &str,
        moved: &dyn Fn(ResourceType, &str) -> Option<String>,
    ) -> Result<Option<Rewritten>, String>;
    /// The audit record of the rekey, appended in its transaction.
    fn audit(&self, report: &RekeyReport) -> AuditRecord;
    /// Progress: `done` of `total` stored versions looked at.
    fn progress(&self, _done: u64, _total: u64) {}
}

/// What a rekey did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Resources that got a new id (the rows of `id_rekeyed` this run added).
    pub moved: u64,
    /// Stored versions looked at.
    pub versions_seen: u64,
    /// Stored versions whose JSON was rewritten (moved resources and those pointing to them).
    pub versions_rewritten: u64,
    /// Rows changed per `table.column`, besides `resource_version.content` (for the log).
    pub rows: Vec<(String, u64)>,
    /// The audit record's sequence number.
    pub audit_seq: Option<i64>,
}

/// Versions read per page while scanning.
const PAGE: i64 = 500;

/// Tables whose rows are keyed by (rtype, id) of a resource.
const ID_TABLES: &[&str] =
    &["resource", "resource_version", "idx_token", "idx_ref", "idx_date", "idx_string", "collect_source"];

/// Columns holding a source patient's id.
const PATIENT_COLUMNS: &[(&str, &str)] = &[
    ("resource", "patient_id"),
    ("facility_use", "patient_id"),
    ("mpi_link", "patient_id"),
    ("referral", "patient_id"),
];

/// Columns holding a person id (a patient not linked by the MPI is its own person).
const PERSON_COLUMNS: &[(&str, &str)] = &[
    ("resource", "person_id"),
    ("portal_account", "person_id"),
    ("proxy_grant", "person_id"),
    ("consent_setting", "person_id"),
    ("residence", "person_id"),
    ("residence_event", "person_id"),
    ("visit_consent", "person_id"),
    ("emergency_grant", "person_id"),
    ("notification", "person_id"),
    ("person_code", "person_id"),
    ("participation", "person_id"),
    ("referral", "person_id"),
    ("person_retired", "retired_id"),
    ("person_retired", "survivor_id"),
    ("session", "acting_for"),
    ("mpi_link", "person_id"),
];

/// Columns holding the id of a Bundle resource.
const BUNDLE_COLUMNS: &[(&str, &str)] =
    &[("referral", "bundle_id"), ("referral", "discharge_id"), ("bundle_submission", "bundle_id")];

impl Store {
    /// Moves every collected resource stored under a deterministic id to its new id, with
    /// everything that names it, in one transaction (see the module documentation). Run it
    /// while no server uses the store: a running server keeps its in-memory MPI index and
    /// caches of the old ids.
    pub fn rekey(&self, rules: Box<dyn Rekeying>) -> Result<RekeyReport, StoreError> {
        self.inner.writer.write(move |conn| run(conn, rules.as_ref()))
    }
}

impl Reader<'_> {
    /// Whether a collected resource is still stored under a deterministic id: false at once
    /// when [`ALL_KEYED_SETTING`] is set, else a `LIKE` over the collectors' source links that
    /// stops at the first one (a whole scan when there is none: 0.1 s on SQLite, 0.4 s on
    /// PostgreSQL for 600,000 collected resources). `musubi serve` asks at start.
    pub fn deterministic_ids_remain(&mut self) -> Result<bool, StoreError> {
        if self.setting(ALL_KEYED_SETTING)?.is_some() {
            return Ok(false);
        }
        let rows = self
            .conn
            .query("SELECT 1 FROM collect_source WHERE id LIKE $1 LIMIT 1", &[Param::Text(DETERMINISTIC_ID_LIKE)])?;
        Ok(!rows.is_empty())
    }

    /// The id a rekey moved `Type/old_id` to, if it did.
    pub fn rekeyed_to(&mut self, rtype: ResourceType, old_id: &str) -> Result<Option<String>, StoreError> {
        let rows = self.conn.query(
            "SELECT new_id FROM id_rekeyed WHERE rtype = $1 AND old_id = $2",
            &[Param::Text(rtype.as_str()), Param::Text(old_id)],
        )?;
        Ok(rows.first().and_then(|r| r.opt_str(0)).map(str::to_owned))
    }
}

/// What a `resource` row becomes: (type, old id, new id, content hash, patient), the last two
/// when they change.
type RowChange<'a> = (&'a str, &'a str, String, Option<String>, Option<String>);

/// Runs one UPDATE, counts its rows in the report and logs how long it took.
fn update(conn: &mut dyn Conn, report: &mut RekeyReport, what: String, sql: &str) -> Result<u64, StoreError> {
    let t = std::time::Instant::now();
    let n = conn.execute(sql, &[])?;
    tracing::debug!(what = %what, rows = n, ms = t.elapsed().as_secs_f64() * 1e3, "rekey update");
    report.rows.push((what, n));
    Ok(n)
}

fn count(conn: &mut dyn Conn, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
    Ok(conn.query(sql, params)?.first().map_or(0, |r| u64::try_from(r.i64(0)).unwrap_or(0)))
}

fn run(conn: &mut dyn Conn, rules: &dyn Rekeying) -> Result<RekeyReport, StoreError> {
    let started = std::time::Instant::now();
    let now = musubi_fhir::datetime::now_ms();
    let mut report = RekeyReport::default();
    let like = Param::Text(DETERMINISTIC_ID_LIKE);
    if conn.dialect() == crate::sql::Dialect::Postgres
        && conn.query("SHOW server_version_num", &[])?.first().and_then(|r| r.str(0).parse::<i64>().ok())
            >= Some(120_000)
    {
        // Plans for the parameters at hand: a generic plan does not know how few rows a page
        // or a key range holds.
        conn.batch("SET LOCAL plan_cache_mode = force_custom_plan")?;
    }

    // Resources with deterministic-looking ids that no collector wrote keep them.
    let kept: HashSet<(ResourceType, String)> = conn
        .query(
            "SELECT r.rtype, r.id FROM resource r WHERE r.id LIKE $1 AND NOT EXISTS \
             (SELECT 1 FROM collect_source s WHERE s.rtype = r.rtype AND s.id = r.id)",
            &[like],
        )?
        .iter()
        .filter_map(|r| Some((r.str(0).parse::<ResourceType>().ok()?, r.str(1).to_owned())))
        .collect();
    let moved = |t: ResourceType, id: &str| -> Option<String> {
        if kept.contains(&(t, id.to_owned())) { None } else { rules.new_id(id) }
    };

    // The collected resources that move (their rows may be gone already: a purge keeps the
    // source link).
    let mut moves: Vec<(String, String, String)> = Vec::new();
    for r in conn.query("SELECT rtype, id FROM collect_source WHERE id LIKE $1 ORDER BY rtype, id", &[like])? {
        let Ok(t) = r.str(0).parse::<ResourceType>() else { continue };
        if let Some(new) = moved(t, r.str(1)) {
            moves.push((t.as_str().to_owned(), r.str(1).to_owned(), new));
        }
    }
    report.moved = moves.len() as u64;

    // Staging tables of this connection (temporary: nobody else sees them).
    conn.batch(
        "CREATE TEMP TABLE IF NOT EXISTS rekey_move (rtype TEXT NOT NULL, old_id TEXT NOT NULL, new_id TEXT NOT NULL, \
         PRIMARY KEY (rtype, old_id)); \
         CREATE TEMP TABLE IF NOT EXISTS rekey_version (rtype TEXT NOT NULL, old_id TEXT NOT NULL, version BIGINT NOT NULL, \
         new_id TEXT NOT NULL, content TEXT NOT NULL, PRIMARY KEY (rtype, old_id, version)); \
         CREATE TEMP TABLE IF NOT EXISTS rekey_resource (rtype TEXT NOT NULL, old_id TEXT NOT NULL, new_id TEXT NOT NULL, \
         content_hash TEXT, patient_id TEXT, PRIMARY KEY (rtype, old_id)); \
         CREATE TEMP TABLE IF NOT EXISTS rekey_value (old TEXT PRIMARY KEY, new TEXT NOT NULL); \
         DELETE FROM rekey_move; DELETE FROM rekey_version; DELETE FROM rekey_resource; DELETE FROM rekey_value",
    )?;
    let rows: Vec<Vec<Param<'_>>> =
        moves.iter().map(|(t, old, new)| vec![Param::Text(t), Param::Text(old), Param::Text(new)]).collect();
    conn.insert_rows("rekey_move", &["rtype", "old_id", "new_id"], &rows)?;
    // A new id that is stored already would merge two resources: refuse, naming it.
    if let Some(r) = conn
        .query(
            "SELECT m.rtype, m.old_id, m.new_id FROM rekey_move m JOIN resource r ON r.rtype = m.rtype AND r.id = m.new_id \
             LIMIT 1",
            &[],
        )?
        .first()
    {
        return Err(StoreError::Constraint(format!(
            "{}/{} would move to {}/{}, which is stored already",
            r.str(0),
            r.str(1),
            r.str(0),
            r.str(2)
        )));
    }
    // The moves are kept for good: the audit trail, which never changes, names the old ids.
    // (An old id seen again maps to the same new id: the first row stays. `WHERE` keeps SQLite
    // from reading `ON` as a join.)
    conn.execute(
        "INSERT INTO id_rekeyed (rtype, old_id, new_id, at) SELECT rtype, old_id, new_id, $1 FROM rekey_move \
         WHERE 1 = 1 ON CONFLICT (rtype, old_id) DO NOTHING",
        &[Param::I64(now)],
    )?;

    // Every stored version: its JSON rewritten where it names a moved id, staged with the id
    // it will have; and at each current version, what its `resource` row becomes (id, content
    // hash, patient), so that each row is written once (on PostgreSQL every update writes a
    // new tuple and all its index entries). Paged by primary key over the table as it was
    // (nothing is changed until the scan is over).
    let total = count(conn, "SELECT COUNT(*) FROM resource_version", &[])?;
    rules.progress(0, total);
    // The page is cut in a subquery with a literal LIMIT, so that PostgreSQL plans an ordered
    // walk of the primary key from the last key on (a generic plan of `LIMIT $n` with a join
    // sorted the whole table for every page: 0.3 s a page at 600,000 versions).
    let page_sql = |cond: &str| {
        format!(
            "SELECT v.rtype, v.id, v.version, v.content, r.version, r.patient_id FROM \
             (SELECT rtype, id, version, content FROM resource_version {cond} ORDER BY rtype, id, version LIMIT {PAGE}) v \
             LEFT JOIN resource r ON r.rtype = v.rtype AND r.id = v.id ORDER BY v.rtype, v.id, v.version"
        )
    };
    let first_page = page_sql("");
    let next_page = page_sql("WHERE (rtype, id, version) > ($1, $2, $3)");
    let mut after: Option<(String, String, i64)> = None;
    loop {
        let page = match &after {
            None => conn.query(&first_page, &[])?,
            Some((t, id, v)) => conn.query(&next_page, &[Param::Text(t), Param::Text(id), Param::I64(*v)])?,
        };
        let Some(last) = page.last() else { break };
        after = Some((last.str(0).to_owned(), last.str(1).to_owned(), last.i64(2)));
        // (type, old id, version, new id, new JSON)
        let mut versions: Vec<(&str, &str, i64, String, String)> = Vec::new();
        let mut resources: Vec<RowChange<'_>> = Vec::new();
        for row in &page {
            report.versions_seen += 1;
            let Ok(t) = row.str(0).parse::<ResourceType>() else { continue };
            let id = row.str(1);
            let new_id = moved(t, id);
            let rewritten = match row.opt_str(3) {
                Some(content) => {
                    rules.rewrite(t, content, &moved).map_err(|e| StoreError::Corrupt(format!("{t}/{id}: {e}")))?
                }
                None => None,
            };
            let final_id = new_id.clone().unwrap_or_else(|| id.to_owned());
            if row.opt_i64(4) == Some(row.i64(2)) {
                let patient = row.opt_str(5).and_then(|p| moved(ResourceType::Patient, p));
                let hash = rewritten.as_ref().map(|r| r.content_hash.clone());
                if new_id.is_some() || hash.is_some() || patient.is_some() {
                    resources.push((row.str(0), id, final_id.clone(), hash, patient));
                }
            }
            if let Some(r) = rewritten {
                versions.push((row.str(0), id, row.i64(2), final_id, r.content));
            }
        }
        report.versions_rewritten += versions.len() as u64;
        let rows: Vec<Vec<Param<'_>>> = versions
            .iter()
            .map(|(t, old, v, new, content)| {
                vec![Param::Text(t), Param::Text(old), Param::I64(*v), Param::Text(new), Param::Text(content)]
            })
            .collect();
        conn.insert_rows("rekey_version", &["rtype", "old_id", "version", "new_id", "content"], &rows)?;
        let rows: Vec<Vec<Param<'_>>> = resources
            .iter()
            .map(|(t, old, new, hash, patient)| {
                vec![
                    Param::Text(t),
                    Param::Text(old),
                    Param::Text(new),
                    hash.as_deref().into(),
                    patient.as_deref().into(),
                ]
            })
            .collect();
        conn.insert_rows("rekey_resource", &["rtype", "old_id", "new_id", "content_hash", "patient_id"], &rows)?;
        rules.progress(report.versions_seen, total);
    }

    let t_scan = started.elapsed();
    if conn.dialect() == crate::sql::Dialect::Postgres {
        // Temporary tables get no statistics from autovacuum: without them the planner guesses
        // their size and may scan the big tables once per staged row.
        conn.batch("ANALYZE rekey_move; ANALYZE rekey_version; ANALYZE rekey_resource")?;
    }
    // The rewritten versions and the current rows, each written once.
    let n = update(
        conn,
        &mut report,
        "resource_version (id, content)".into(),
        "UPDATE resource_version SET id = s.new_id, content = s.content FROM rekey_version s \
         WHERE resource_version.rtype = s.rtype AND resource_version.id = s.old_id AND resource_version.version = s.version",
    )?;
    if n != report.versions_rewritten {
        return Err(StoreError::Corrupt(format!(
            "{} versions were rewritten but {n} stored rows took the new JSON",
            report.versions_rewritten
        )));
    }
    update(
        conn,
        &mut report,
        "resource (id, content_hash, patient_id)".into(),
        "UPDATE resource SET id = s.new_id, content_hash = COALESCE(s.content_hash, resource.content_hash), \
         patient_id = COALESCE(s.patient_id, resource.patient_id) FROM rekey_resource s \
         WHERE resource.rtype = s.rtype AND resource.id = s.old_id",
    )?;
    // Every other row keyed by a moved resource (versions that did not change, such as
    // deletions; the search indexes; source links; anything the scan could not see).
    for table in ID_TABLES {
        update(
            conn,
            &mut report,
            format!("{table}.id"),
            &format!(
                "UPDATE {table} SET id = m.new_id FROM rekey_move m \
                 WHERE {table}.rtype = m.rtype AND {table}.id = m.old_id"
            ),
        )?;
    }

    let t_moves = started.elapsed();
    // References in the search index.
    let mut values: Vec<(String, String)> = Vec::new();
    for r in conn.query(
        "SELECT DISTINCT target FROM idx_ref WHERE target LIKE $1",
        &[Param::Text(&format!("%/{DETERMINISTIC_ID_LIKE}"))],
    )? {
        let target = r.str(0);
        if let Some((t, id)) = target.split_once('/')
            && let Ok(rt) = t.parse::<ResourceType>()
            && let Some(new) = moved(rt, id)
        {
            values.push((target.to_owned(), format!("{t}/{new}")));
        }
    }
    stage_values(conn, &values)?;
    update(
        conn,
        &mut report,
        "idx_ref.target".into(),
        "UPDATE idx_ref SET target = m.new FROM rekey_value m WHERE idx_ref.target = m.old",
    )?;

    // Patients, and persons who are a patient not linked yet.
    let mut patients: Vec<String> =
        moves.iter().filter(|(t, _, _)| t == "Patient").map(|(_, o, _)| o.clone()).collect();
    for (table, col) in PATIENT_COLUMNS {
        for r in conn.query(&format!("SELECT DISTINCT {col} FROM {table} WHERE {col} LIKE $1"), &[like])? {
            patients.push(r.str(0).to_owned());
        }
    }
    patients.sort();
    patients.dedup();
    let values: Vec<(String, String)> =
        patients.into_iter().filter_map(|old| moved(ResourceType::Patient, &old).map(|new| (old, new))).collect();
    stage_values(conn, &values)?;
    for (table, col) in PATIENT_COLUMNS.iter().chain(PERSON_COLUMNS) {
        update(
            conn,
            &mut report,
            format!("{table}.{col}"),
            &format!("UPDATE {table} SET {col} = m.new FROM rekey_value m WHERE {table}.{col} = m.old"),
        )?;
    }
    for (table, col) in BUNDLE_COLUMNS {
        update(
            conn,
            &mut report,
            format!("{table}.{col}"),
            &format!(
                "UPDATE {table} SET {col} = m.new_id FROM rekey_move m \
                 WHERE m.rtype = 'Bundle' AND {table}.{col} = m.old_id"
            ),
        )?;
    }
    conn.batch(
        "DELETE FROM rekey_move; DELETE FROM rekey_version; DELETE FROM rekey_resource; DELETE FROM rekey_value",
    )?;
    report.rows.retain(|(_, n)| *n > 0);

    tracing::info!(
        moved = report.moved,
        versions = report.versions_seen,
        rewritten = report.versions_rewritten,
        scan_s = t_scan.as_secs_f64(),
        moves_s = (t_moves - t_scan).as_secs_f64(),
        columns_s = (started.elapsed() - t_moves).as_secs_f64(),
        "rekey done (not committed yet)"
    );
    crate::ops::put_setting(conn, ALL_KEYED_SETTING, &now.to_string())?;
    let seqs = crate::ops::append_audit(conn, &[rules.audit(&report)])?;
    report.audit_seq = seqs.first().copied();
    Ok(report)
}

fn stage_values(conn: &mut dyn Conn, values: &[(String, String)]) -> Result<(), StoreError> {
    conn.execute("DELETE FROM rekey_value", &[])?;
    let rows: Vec<Vec<Param<'_>>> = values.iter().map(|(o, n)| vec![Param::Text(o), Param::Text(n)]).collect();
    conn.insert_rows("rekey_value", &["old", "new"], &rows)?;
    if conn.dialect() == crate::sql::Dialect::Postgres {
        conn.batch("ANALYZE rekey_value")?;
    }
    Ok(())
}
