//! The schema, as versioned migrations. One text serves both dialects: it uses only types and
//! statements SQLite and PostgreSQL (and the Postgres-compatible distributed engines) share —
//! TEXT, BIGINT, composite primary keys, `CREATE INDEX IF NOT EXISTS`.
//!
//! Integers are BIGINT everywhere so one parameter type binds in both dialects. Times are epoch
//! milliseconds. Resource JSON is TEXT in both: the bytes a client reads back are exactly the
//! bytes stored (stable ETags, cheap reads), and JSON queries are never needed because every
//! searchable value is in an index table.

use crate::StoreError;
use crate::sql::{Conn, Dialect, Param};

/// A migration: its version and statements.
pub struct Migration {
    /// Monotonic version number.
    pub version: i64,
    /// What it does.
    pub name: &'static str,
    /// The statements (`;`-separated).
    pub sql: &'static str,
}

/// Every migration, in order. Never edit a released migration: add a new one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "resources, versions, indexes, bundle submissions, audit chain, tokens, settings",
        sql: r#"
CREATE TABLE resource_version (
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BIGINT NOT NULL,
    content TEXT,
    PRIMARY KEY (rtype, id, version)
);
CREATE TABLE resource (
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BIGINT NOT NULL,
    content_hash TEXT NOT NULL,
    facility TEXT,
    submitter TEXT NOT NULL,
    patient_id TEXT,
    person_id TEXT,
    class TEXT NOT NULL,
    clinical_date BIGINT,
    flags BIGINT NOT NULL,
    retention_end TEXT,
    keep_last BIGINT,
    item_key TEXT,
    bundle_key TEXT,
    PRIMARY KEY (rtype, id)
);
CREATE INDEX IF NOT EXISTS resource_patient ON resource (patient_id, rtype);
CREATE INDEX IF NOT EXISTS resource_person ON resource (person_id);
CREATE INDEX IF NOT EXISTS resource_bundle ON resource (bundle_key);
CREATE INDEX IF NOT EXISTS resource_updated ON resource (rtype, last_updated);
CREATE INDEX IF NOT EXISTS resource_retention ON resource (retention_end);
CREATE TABLE idx_token (
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    system TEXT NOT NULL,
    code TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_token_lookup ON idx_token (rtype, param, code, system);
CREATE INDEX IF NOT EXISTS idx_token_resource ON idx_token (rtype, id);
CREATE TABLE idx_ref (
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    target TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_ref_lookup ON idx_ref (rtype, param, target);
CREATE INDEX IF NOT EXISTS idx_ref_resource ON idx_ref (rtype, id);
CREATE TABLE idx_date (
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    lo BIGINT NOT NULL,
    hi BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_date_lookup ON idx_date (rtype, param, lo);
CREATE INDEX IF NOT EXISTS idx_date_resource ON idx_date (rtype, id);
CREATE TABLE idx_string (
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_string_lookup ON idx_string (rtype, param, value);
CREATE INDEX IF NOT EXISTS idx_string_resource ON idx_string (rtype, id);
CREATE TABLE bundle_submission (
    bundle_key TEXT PRIMARY KEY,
    facility TEXT NOT NULL,
    kind TEXT NOT NULL,
    bundle_id TEXT,
    content_hash TEXT NOT NULL,
    received BIGINT NOT NULL
);
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    recorded BIGINT NOT NULL,
    agent TEXT NOT NULL,
    facility TEXT,
    patient_id TEXT,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    record TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_patient ON audit (patient_id, seq);
CREATE INDEX IF NOT EXISTS audit_recorded ON audit (recorded);
CREATE INDEX IF NOT EXISTS audit_agent ON audit (agent, seq);
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
CREATE TABLE api_token (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    facility TEXT,
    name TEXT NOT NULL,
    created BIGINT NOT NULL,
    revoked BIGINT NOT NULL
);
CREATE TABLE setting (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
"#,
    },
    Migration {
        version: 2,
        name: "collection: file states, quarantine, original bytes, source links, facility use",
        sql: r#"
CREATE TABLE collect_file (
    facility TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    mtime BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    outcome TEXT NOT NULL,
    resources BIGINT NOT NULL,
    quarantined BIGINT NOT NULL,
    collected_at BIGINT NOT NULL,
    PRIMARY KEY (facility, kind, path)
);
CREATE INDEX IF NOT EXISTS collect_file_path ON collect_file (kind, path);
CREATE TABLE collect_quarantine (
    facility TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    seq BIGINT NOT NULL,
    unit TEXT,
    line BIGINT,
    segment TEXT,
    field BIGINT,
    element TEXT,
    rule TEXT,
    reason TEXT NOT NULL,
    content TEXT,
    blob_sha256 TEXT,
    at BIGINT NOT NULL,
    resolved_at BIGINT,
    PRIMARY KEY (facility, kind, path, file_sha256, seq)
);
CREATE INDEX IF NOT EXISTS collect_quarantine_open ON collect_quarantine (resolved_at, facility);
CREATE TABLE collect_blob (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    encoding TEXT NOT NULL,
    data TEXT NOT NULL,
    stored_at BIGINT NOT NULL
);
CREATE TABLE collect_source (
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    facility TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_key TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    path TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    PRIMARY KEY (rtype, id)
);
CREATE TABLE facility_use (
    facility TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    year_month TEXT NOT NULL,
    insurance_id TEXT,
    file_sha256 TEXT NOT NULL,
    PRIMARY KEY (facility, patient_id, year_month)
);
CREATE INDEX IF NOT EXISTS facility_use_patient ON facility_use (patient_id);
CREATE INDEX IF NOT EXISTS facility_use_insurance ON facility_use (insurance_id)
"#,
    },
    Migration {
        version: 3,
        name: "facility registry, users and portal accounts, sessions, consent, care and emergency access, notifications, audit anchors",
        sql: r#"
CREATE TABLE facility (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    class TEXT NOT NULL,
    prefecture BIGINT NOT NULL,
    area TEXT NOT NULL,
    area_name TEXT NOT NULL,
    discloses BIGINT NOT NULL,
    views BIGINT NOT NULL,
    created BIGINT NOT NULL
);
CREATE TABLE area_city (
    area TEXT NOT NULL,
    prefecture BIGINT NOT NULL,
    city TEXT NOT NULL,
    PRIMARY KEY (prefecture, city)
);
CREATE TABLE user_account (
    id TEXT PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    kana TEXT NOT NULL,
    profession TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    totp_secret TEXT,
    failed_logins BIGINT NOT NULL,
    locked_until BIGINT,
    disabled BIGINT NOT NULL,
    created BIGINT NOT NULL
);
CREATE TABLE user_facility (
    user_id TEXT NOT NULL,
    facility TEXT NOT NULL,
    PRIMARY KEY (user_id, facility)
);
CREATE TABLE portal_account (
    id TEXT PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    person_id TEXT,
    password_hash TEXT NOT NULL,
    totp_secret TEXT,
    failed_logins BIGINT NOT NULL,
    locked_until BIGINT,
    disabled BIGINT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS portal_account_person ON portal_account (person_id);
CREATE TABLE proxy_grant (
    id TEXT PRIMARY KEY,
    proxy_account TEXT NOT NULL,
    person_id TEXT NOT NULL,
    relation TEXT NOT NULL,
    may_view_records BIGINT NOT NULL,
    may_manage_consent BIGINT NOT NULL,
    may_view_history BIGINT NOT NULL,
    granted_by TEXT NOT NULL,
    created BIGINT NOT NULL,
    revoked BIGINT
);
CREATE INDEX IF NOT EXISTS proxy_grant_account ON proxy_grant (proxy_account);
CREATE INDEX IF NOT EXISTS proxy_grant_person ON proxy_grant (person_id);
CREATE TABLE session (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    facility TEXT,
    acting_for TEXT,
    created BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    second_factor BIGINT NOT NULL,
    csrf TEXT NOT NULL
);
CREATE TABLE consent_setting (
    person_id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE residence (
    person_id TEXT PRIMARY KEY,
    prefecture BIGINT NOT NULL,
    area TEXT NOT NULL,
    recent TEXT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE TABLE visit_consent (
    id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    facility TEXT NOT NULL,
    given_at BIGINT NOT NULL,
    until_at BIGINT,
    recorded_by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS visit_consent_person ON visit_consent (person_id);
CREATE TABLE emergency_grant (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    user_login TEXT NOT NULL,
    facility TEXT NOT NULL,
    person_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    started BIGINT NOT NULL,
    until_at BIGINT NOT NULL,
    reviewed_by TEXT,
    reviewed_at BIGINT,
    review_note TEXT
);
CREATE INDEX IF NOT EXISTS emergency_grant_person ON emergency_grant (person_id);
CREATE INDEX IF NOT EXISTS emergency_grant_review ON emergency_grant (reviewed_at);
CREATE TABLE notification (
    id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    created BIGINT NOT NULL,
    read_at BIGINT
);
CREATE INDEX IF NOT EXISTS notification_person ON notification (person_id, created);
CREATE TABLE audit_anchor (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    created BIGINT NOT NULL,
    signature TEXT NOT NULL
);
ALTER TABLE audit ADD COLUMN person_id TEXT;
CREATE INDEX IF NOT EXISTS audit_person ON audit (person_id, seq);
CREATE INDEX IF NOT EXISTS resource_person_facility ON resource (person_id, facility)
"#,
    },
    Migration {
        version: 4,
        name: "master patient index: links, review queue, keep-apart pairs, history",
        sql: r#"
CREATE TABLE mpi_link (
    facility TEXT NOT NULL,
    local_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    decided BIGINT NOT NULL,
    PRIMARY KEY (facility, local_id)
);
CREATE INDEX IF NOT EXISTS mpi_link_person ON mpi_link (person_id);
CREATE INDEX IF NOT EXISTS mpi_link_patient ON mpi_link (patient_id);
CREATE TABLE mpi_review (
    id TEXT PRIMARY KEY,
    a_facility TEXT NOT NULL,
    a_local TEXT NOT NULL,
    b_facility TEXT NOT NULL,
    b_local TEXT NOT NULL,
    weight TEXT NOT NULL,
    hold TEXT NOT NULL,
    created BIGINT NOT NULL,
    resolved BIGINT,
    resolution TEXT,
    resolved_by TEXT
);
CREATE INDEX IF NOT EXISTS mpi_review_open ON mpi_review (resolved, created);
CREATE TABLE mpi_keep_apart (
    a_key TEXT NOT NULL,
    b_key TEXT NOT NULL,
    created BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (a_key, b_key)
);
CREATE TABLE mpi_history (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    by_whom TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS mpi_history_at ON mpi_history (at)
"#,
    },
    Migration {
        version: 5,
        name: "referral exchange: referrals (sent, received, deleted by retention), attached files",
        sql: r#"
CREATE TABLE referral (
    id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    addressee TEXT NOT NULL,
    bundle_id TEXT,
    bundle_key TEXT,
    discharge_id TEXT,
    patient_id TEXT,
    person_id TEXT,
    reply_to TEXT,
    summary TEXT,
    created BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires BIGINT NOT NULL,
    received_at BIGINT,
    received_by TEXT,
    received_by_name TEXT,
    signature_status TEXT NOT NULL,
    signature_report TEXT,
    deleted_at BIGINT,
    deleted_reason TEXT,
    signature TEXT,
    signed_content TEXT
);
CREATE INDEX IF NOT EXISTS referral_addressee ON referral (addressee, created);
CREATE INDEX IF NOT EXISTS referral_sender ON referral (sender, created);
CREATE INDEX IF NOT EXISTS referral_expires ON referral (deleted_at, expires);
CREATE INDEX IF NOT EXISTS referral_received ON referral (deleted_at, received_at);
CREATE INDEX IF NOT EXISTS referral_reply ON referral (reply_to);
CREATE UNIQUE INDEX IF NOT EXISTS referral_bundle_key ON referral (bundle_key);
CREATE TABLE referral_attachment (
    referral_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (referral_id, seq)
);
CREATE INDEX IF NOT EXISTS resource_item ON resource (person_id, rtype, item_key)
"#,
    },
    Migration {
        version: 6,
        name: "persons retired by a merge, and who they live on as (so their audit trail stays theirs)",
        sql: r#"
CREATE TABLE person_retired (
    retired_id TEXT PRIMARY KEY,
    survivor_id TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS person_retired_survivor ON person_retired (survivor_id)
"#,
    },
    Migration {
        version: 7,
        name: "referral exchange: who withdrew a letter (取り下げ)",
        sql: r#"
ALTER TABLE referral ADD COLUMN withdrawn_by TEXT
"#,
    },
    Migration {
        version: 8,
        name: "evidence for the gate: codes the patient shows, consent at the visit with its evidence and the operator's confirmation, operator alerts, notices sent by post",
        sql: r#"
ALTER TABLE visit_consent ADD COLUMN evidence TEXT;
ALTER TABLE visit_consent ADD COLUMN status TEXT;
ALTER TABLE visit_consent ADD COLUMN confirmed_by TEXT;
ALTER TABLE visit_consent ADD COLUMN confirmed_at BIGINT;
UPDATE visit_consent SET evidence = 'none', status = 'pending';
CREATE INDEX IF NOT EXISTS visit_consent_status ON visit_consent (status, given_at);
CREATE TABLE person_code (
    code_hash TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    person_id TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    created BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    used_at BIGINT,
    used_by TEXT
);
CREATE INDEX IF NOT EXISTS person_code_person ON person_code (person_id, purpose);
CREATE TABLE operator_alert (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    created BIGINT NOT NULL,
    handled_by TEXT,
    handled_at BIGINT
);
ALTER TABLE notification ADD COLUMN posted_at BIGINT;
CREATE TABLE participation (
    person_id TEXT PRIMARY KEY,
    participating BIGINT NOT NULL,
    at BIGINT NOT NULL,
    by_whom TEXT NOT NULL,
    evidence TEXT NOT NULL
);
CREATE TABLE residence_event (
    person_id TEXT NOT NULL,
    prefecture BIGINT NOT NULL,
    area TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS residence_event_person ON residence_event (person_id, at);
INSERT INTO residence_event (person_id, prefecture, area, at) SELECT person_id, prefecture, area, updated FROM residence
"#,
    },
    Migration {
        version: 9,
        name: "system tokens expire (rotation gives the old one a short overlap)",
        sql: r#"
ALTER TABLE api_token ADD COLUMN expires BIGINT
"#,
    },
    Migration {
        version: 11,
        name: "logins that resist guessing: the last accepted one-time-code step, throttles per account and address, idle session timeout",
        sql: r#"
ALTER TABLE user_account ADD COLUMN totp_last_step BIGINT;
ALTER TABLE user_account ADD COLUMN must_change_password BIGINT NOT NULL DEFAULT 0;
ALTER TABLE portal_account ADD COLUMN totp_last_step BIGINT;
ALTER TABLE session ADD COLUMN last_seen BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS session_subject ON session (kind, subject);
CREATE TABLE login_throttle (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_failure BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS login_throttle_last ON login_throttle (last_failure)

"#,
    },
    Migration {
        version: 12,
        name: "the database's copy of the signed audit anchors (to find lines removed from the external log)",
        sql: r#"
CREATE TABLE audit_anchor_log (
    n BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    created BIGINT NOT NULL,
    line_hash TEXT NOT NULL
)
"#,
    },
    Migration {
        version: 14,
        name: "collected resources moved from deterministic to keyed ids (the audit trail keeps the old ids; its queries follow the moves)",
        sql: r#"
CREATE TABLE id_rekeyed (
    rtype TEXT NOT NULL,
    old_id TEXT NOT NULL,
    new_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (rtype, old_id)
);
CREATE INDEX IF NOT EXISTS id_rekeyed_new ON id_rekeyed (new_id, rtype)
"#,
    },
];

/// Applies the migrations that have not run yet, each in its own transaction. Returns the
/// versions applied.
pub fn migrate(conn: &mut dyn Conn) -> Result<Vec<i64>, StoreError> {
    // A PostgreSQL role that is not the owner (see `Store::restrict_app_role`) may not create
    // tables, not even with IF NOT EXISTS: it only checks that everything is applied.
    let exists = conn.dialect() == Dialect::Postgres
        && !conn
            .query(
                "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'schema_migrations'",
                &[],
            )?
            .is_empty();
    if !exists {
        conn.batch("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)")?;
    }
    let begin = match conn.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        conn.batch(begin)?;
        if conn.dialect() == Dialect::Postgres {
            // Several servers may start at once against one database: one migrates, the others wait.
            conn.batch("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")?;
        }
        let done = !conn
            .query("SELECT version FROM schema_migrations WHERE version = $1", &[Param::I64(m.version)])?
            .is_empty();
        if done {
            conn.batch("COMMIT")?;
            continue;
        }
        let result = conn.batch(m.sql).and_then(|_| {
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[Param::I64(m.version), Param::Text(m.name), Param::I64(musubi_fhir::datetime::now_ms())],
            )
        });
        match result {
            Ok(_) => {
                conn.batch("COMMIT")?;
                applied.push(m.version);
            }
            Err(e) => {
                let _ = conn.batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(applied)
}
