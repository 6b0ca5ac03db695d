//! The write side: applying a [`WriteBatch`] and appending audit records, inside the writer's
//! transaction. Creates of new resources are inserted table by table in bulk; updates and
//! deletions check the current version first.

use musubi_domain::audit::{AuditRecord, chain_hash};
use musubi_fhir::ResourceType;
use musubi_fhir::index::{IndexEntry, IndexValue};

use crate::sql::{Conn, Dialect, Param};
use crate::{BundleOp, Committed, DeleteResource, Expect, PutResource, StoreError, TokenRow, WriteBatch};

/// Applies a batch; the caller commits.
pub(crate) fn apply(conn: &mut dyn Conn, batch: &WriteBatch) -> Result<Committed, StoreError> {
    let mut creates: Vec<&PutResource> = Vec::new();
    for p in &batch.puts {
        match p.expect {
            Expect::Absent => creates.push(p),
            Expect::Version(v) => update(conn, p, v)?,
        }
    }
    insert_new(conn, &creates)?;
    let mut deleted_versions = Vec::with_capacity(batch.deletes.len());
    for d in &batch.deletes {
        deleted_versions.push(delete(conn, d)?);
    }
    for b in &batch.bundles {
        match b {
            BundleOp::Put(s) => {
                conn.execute("DELETE FROM bundle_submission WHERE bundle_key = $1", &[Param::Text(&s.bundle_key)])?;
                conn.execute(
                    "INSERT INTO bundle_submission (bundle_key, facility, kind, bundle_id, content_hash, received) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        Param::Text(&s.bundle_key),
                        Param::Text(&s.facility),
                        Param::Text(&s.kind),
                        s.bundle_id.as_deref().into(),
                        Param::Text(&s.content_hash),
                        Param::I64(s.received),
                    ],
                )?;
            }
            BundleOp::Remove(key) => {
                conn.execute("DELETE FROM bundle_submission WHERE bundle_key = $1", &[Param::Text(key)])?;
            }
        }
    }
    let audit_seqs = append_audit(conn, &batch.audit)?;
    Ok(Committed { deleted_versions, audit_seqs })
}

const VERSION_COLS: &[&str] = &["rtype", "id", "version", "last_updated", "deleted", "content"];
const RESOURCE_COLS: &[&str] = &[
    "rtype",
    "id",
    "version",
    "last_updated",
    "deleted",
    "content_hash",
    "facility",
    "submitter",
    "patient_id",
    "person_id",
    "class",
    "clinical_date",
    "flags",
    "retention_end",
    "keep_last",
    "item_key",
    "bundle_key",
];

fn resource_params<'a>(p: &'a PutResource, facility: &'a str) -> Vec<Param<'a>> {
    let m = &p.meta;
    vec![
        Param::Text(p.rtype.as_str()),
        Param::Text(&p.id),
        Param::I64(p.version),
        Param::I64(p.last_updated),
        Param::I64(0),
        Param::Text(&p.content_hash),
        if m.facility.is_some() { Param::Text(facility) } else { Param::Null },
        Param::Text(&m.submitter),
        m.patient_id.as_deref().into(),
        m.person_id.as_deref().into(),
        Param::Text(m.class.code()),
        m.clinical_date.into(),
        Param::I64(i64::from(m.flags.bits())),
        m.retention_end.as_deref().into(),
        m.keep_last.into(),
        m.item_key.as_deref().into(),
        m.bundle_key.as_deref().into(),
    ]
}

#[derive(Default)]
struct IndexRows<'a> {
    token: Vec<Vec<Param<'a>>>,
    reference: Vec<Vec<Param<'a>>>,
    date: Vec<Vec<Param<'a>>>,
    string: Vec<Vec<Param<'a>>>,
}

impl<'a> IndexRows<'a> {
    fn add(&mut self, rtype: ResourceType, id: &'a str, entries: &'a [IndexEntry]) {
        let t = Param::Text(rtype.as_str());
        for e in entries {
            let id = Param::Text(id);
            let param = Param::Text(e.param);
            match &e.value {
                IndexValue::Token { system, code } => {
                    self.token.push(vec![t, id, param, Param::Text(system), Param::Text(code)])
                }
                IndexValue::Ref(target) => self.reference.push(vec![t, id, param, Param::Text(target)]),
                IndexValue::Date(r) => self.date.push(vec![t, id, param, Param::I64(r.lo), Param::I64(r.hi)]),
                IndexValue::Str(s) => self.string.push(vec![t, id, param, Param::Text(s)]),
            }
        }
    }

    fn insert(&self, conn: &mut dyn Conn) -> Result<(), StoreError> {
        conn.insert_rows("idx_token", &["rtype", "id", "param", "system", "code"], &self.token)?;
        conn.insert_rows("idx_ref", &["rtype", "id", "param", "target"], &self.reference)?;
        conn.insert_rows("idx_date", &["rtype", "id", "param", "lo", "hi"], &self.date)?;
        conn.insert_rows("idx_string", &["rtype", "id", "param", "value"], &self.string)?;
        Ok(())
    }
}

fn insert_new(conn: &mut dyn Conn, creates: &[&PutResource]) -> Result<(), StoreError> {
    if creates.is_empty() {
        return Ok(());
    }
    let facilities: Vec<String> =
        creates.iter().map(|p| p.meta.facility.map(|f| f.to_string()).unwrap_or_default()).collect();
    let versions: Vec<Vec<Param<'_>>> = creates
        .iter()
        .map(|p| {
            vec![
                Param::Text(p.rtype.as_str()),
                Param::Text(&p.id),
                Param::I64(p.version),
                Param::I64(p.last_updated),
                Param::I64(0),
                Param::Text(&p.content),
            ]
        })
        .collect();
    let resources: Vec<Vec<Param<'_>>> = creates.iter().zip(&facilities).map(|(p, f)| resource_params(p, f)).collect();
    // The resource table's primary key turns a create of an existing id into a constraint
    // error, which the caller reports as a conflict.
    conn.insert_rows("resource", RESOURCE_COLS, &resources)?;
    conn.insert_rows("resource_version", VERSION_COLS, &versions)?;
    let mut idx = IndexRows::default();
    for p in creates {
        idx.add(p.rtype, &p.id, &p.index);
    }
    idx.insert(conn)
}

fn current_version(conn: &mut dyn Conn, rtype: ResourceType, id: &str) -> Result<Option<(i64, bool)>, StoreError> {
    let sql = match conn.dialect() {
        Dialect::Sqlite => "SELECT version, deleted FROM resource WHERE rtype = $1 AND id = $2",
        Dialect::Postgres => "SELECT version, deleted FROM resource WHERE rtype = $1 AND id = $2 FOR UPDATE",
    };
    let rows = conn.query(sql, &[Param::Text(rtype.as_str()), Param::Text(id)])?;
    Ok(rows.first().map(|r| (r.i64(0), r.i64(1) != 0)))
}

fn clear_index(conn: &mut dyn Conn, rtype: ResourceType, id: &str) -> Result<(), StoreError> {
    for table in ["idx_token", "idx_ref", "idx_date", "idx_string"] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE rtype = $1 AND id = $2"),
            &[Param::Text(rtype.as_str()), Param::Text(id)],
        )?;
    }
    Ok(())
}

fn update(conn: &mut dyn Conn, p: &PutResource, expected: i64) -> Result<(), StoreError> {
    let key = format!("{}/{}", p.rtype, p.id);
    let found = current_version(conn, p.rtype, &p.id)?;
    match found {
        Some((v, _)) if v == expected => {}
        other => {
            return Err(StoreError::Conflict {
                key,
                expected: format!("version {expected}"),
                found: other.map_or("nothing".into(), |(v, _)| format!("version {v}")),
            });
        }
    }
    conn.insert_rows(
        "resource_version",
        VERSION_COLS,
        &[vec![
            Param::Text(p.rtype.as_str()),
            Param::Text(&p.id),
            Param::I64(p.version),
            Param::I64(p.last_updated),
            Param::I64(0),
            Param::Text(&p.content),
        ]],
    )?;
    let facility = p.meta.facility.map(|f| f.to_string()).unwrap_or_default();
    let mut params = resource_params(p, &facility);
    // The MPI's person link is kept unless the writer sets one.
    params.drain(0..2);
    conn.execute(
        "UPDATE resource SET version = $3, last_updated = $4, deleted = $5, content_hash = $6, facility = $7, \
         submitter = $8, patient_id = $9, person_id = COALESCE($10, person_id), class = $11, clinical_date = $12, \
         flags = $13, retention_end = $14, keep_last = $15, item_key = $16, bundle_key = $17 \
         WHERE rtype = $1 AND id = $2",
        &[[Param::Text(p.rtype.as_str()), Param::Text(&p.id)].as_slice(), params.as_slice()].concat(),
    )?;
    clear_index(conn, p.rtype, &p.id)?;
    let mut idx = IndexRows::default();
    idx.add(p.rtype, &p.id, &p.index);
    idx.insert(conn)
}

fn delete(conn: &mut dyn Conn, d: &DeleteResource) -> Result<Option<i64>, StoreError> {
    let Some((v, deleted)) = current_version(conn, d.rtype, &d.id)? else {
        return Ok(None);
    };
    if let Some(expected) = d.expect_version
        && expected != v
    {
        return Err(StoreError::Conflict {
            key: format!("{}/{}", d.rtype, d.id),
            expected: format!("version {expected}"),
            found: format!("version {v}"),
        });
    }
    if deleted {
        return Ok(None);
    }
    let nv = v + 1;
    conn.insert_rows(
        "resource_version",
        VERSION_COLS,
        &[vec![
            Param::Text(d.rtype.as_str()),
            Param::Text(&d.id),
            Param::I64(nv),
            Param::I64(d.last_updated),
            Param::I64(1),
            Param::Null,
        ]],
    )?;
    conn.execute(
        "UPDATE resource SET version = $1, last_updated = $2, deleted = 1 WHERE rtype = $3 AND id = $4",
        &[Param::I64(nv), Param::I64(d.last_updated), Param::Text(d.rtype.as_str()), Param::Text(&d.id)],
    )?;
    clear_index(conn, d.rtype, &d.id)?;
    Ok(Some(nv))
}

thread_local! {
    /// The chain head the current writer job appended (the writer keeps it once committed, so
    /// the anchorer can tell when the database's head fell behind what this process wrote).
    static APPENDED_HEAD: std::cell::RefCell<Option<(i64, String)>> = const { std::cell::RefCell::new(None) };
}

/// Takes (and clears) the chain head the current job appended on this thread.
pub(crate) fn take_appended_head() -> Option<(i64, String)> {
    APPENDED_HEAD.with(|h| h.borrow_mut().take())
}

/// Appends audit records to the chain; returns their sequence numbers.
pub(crate) fn append_audit(conn: &mut dyn Conn, records: &[AuditRecord]) -> Result<Vec<i64>, StoreError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let sql = match conn.dialect() {
        Dialect::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
        // Serializes appends from several servers sharing one database.
        Dialect::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
    };
    // Client-supplied strings (login names, reasons, queries) are cut to their bounds before
    // they are hashed into the chain, whatever path the record came by.
    let capped: Vec<std::borrow::Cow<'_, AuditRecord>> = records.iter().map(AuditRecord::capped).collect();
    let records: Vec<&AuditRecord> = capped.iter().map(|c| c.as_ref()).collect();
    let head = conn.query(sql, &[])?;
    let head = head.first().ok_or_else(|| StoreError::Corrupt("audit_head row is missing".into()))?;
    let mut seq = head.i64(0);
    let mut prev = head.str(1).to_owned();
    let mut owned: Vec<(i64, String, String, String)> = Vec::with_capacity(records.len());
    for r in &records {
        seq += 1;
        let canonical = r.canonical_json();
        let hash = chain_hash(&prev, seq, &canonical);
        owned.push((seq, canonical, prev.clone(), hash.clone()));
        prev = hash;
    }
    let rows: Vec<Vec<Param<'_>>> = records
        .iter()
        .zip(&owned)
        .map(|(r, (seq, canonical, prev_hash, hash))| {
            vec![
                Param::I64(*seq),
                Param::I64(r.recorded),
                Param::Text(&r.agent.name),
                r.agent.facility.as_deref().into(),
                r.patient.as_deref().into(),
                r.person.as_deref().or(r.patient.as_deref()).into(),
                Param::Text(r.action.code()),
                Param::Text(r.outcome.code()),
                Param::Text(canonical),
                Param::Text(prev_hash),
                Param::Text(hash),
            ]
        })
        .collect();
    conn.insert_rows(
        "audit",
        &[
            "seq",
            "recorded",
            "agent",
            "facility",
            "patient_id",
            "person_id",
            "action",
            "outcome",
            "record",
            "prev_hash",
            "hash",
        ],
        &rows,
    )?;
    conn.execute("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", &[Param::I64(seq), Param::Text(&prev)])?;
    APPENDED_HEAD.with(|h| *h.borrow_mut() = Some((seq, prev)));
    Ok(owned.iter().map(|o| o.0).collect())
}

pub(crate) fn insert_token(conn: &mut dyn Conn, t: &TokenRow) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO api_token (token_hash, kind, facility, name, created, revoked, expires) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            Param::Text(&t.token_hash),
            Param::Text(&t.kind),
            t.facility.as_deref().into(),
            Param::Text(&t.name),
            Param::I64(t.created),
            Param::I64(i64::from(t.revoked)),
            t.expires.map_or(Param::Null, Param::I64),
        ],
    )
    .map(|_| ())
}

pub(crate) fn put_setting(conn: &mut dyn Conn, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM setting WHERE key = $1", &[Param::Text(key)])?;
    conn.execute("INSERT INTO setting (key, value) VALUES ($1, $2)", &[Param::Text(key), Param::Text(value)])
        .map(|_| ())
}
