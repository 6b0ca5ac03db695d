//! The master patient index's persistent side: which source patient (facility, local id) belongs
//! to which person, the review queue, pairs an operator kept apart, and the history of every
//! decision. The matcher itself (`musubi-identify`) keeps its index in memory and is rebuilt
//! from these tables at start-up.

use crate::sql::{Conn, Param};
use crate::{Reader, Store, StoreError};

/// A source patient's link to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    /// Facility code.
    pub facility: String,
    /// Local patient id.
    pub local_id: String,
    /// The Patient resource id.
    pub patient_id: String,
    /// The person.
    pub person_id: String,
    /// `insurance`, `cross_reference`, `probabilistic`, `new`, `review`, `operator`, `rebuild`.
    pub reason: String,
    /// When decided.
    pub decided: i64,
}

/// A pair for an operator to decide.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRow {
    /// Id.
    pub id: String,
    /// One record (facility, local id).
    pub a: (String, String),
    /// The other.
    pub b: (String, String),
    /// Match weight.
    pub weight: f64,
    /// Why it was held.
    pub hold: String,
    /// Created.
    pub created: i64,
    /// Resolved at.
    pub resolved: Option<i64>,
    /// `linked` or `kept-apart`.
    pub resolution: Option<String>,
}

/// A change to the MPI tables.
#[derive(Debug, Clone)]
pub enum MpiWrite {
    /// Set (insert or replace) a link.
    Link(LinkRow),
    /// Add a review item.
    Review(ReviewRow),
    /// Resolve a review item.
    Resolve {
        /// Id.
        id: String,
        /// `linked` or `kept-apart`.
        resolution: String,
        /// By whom.
        by: String,
        /// When.
        at: i64,
    },
    /// Remember that two records are different persons.
    KeepApart {
        /// `facility|local` of one.
        a: String,
        /// `facility|local` of the other.
        b: String,
        /// By whom.
        by: String,
        /// When.
        at: i64,
    },
    /// A history entry.
    History {
        /// Id.
        id: String,
        /// When.
        at: i64,
        /// `link`, `merge`, `split`, `keep-apart`, `rebuild`.
        action: String,
        /// JSON detail.
        detail: String,
        /// By whom.
        by: String,
    },
    /// Move every record of a source patient to a person (the resource table's person column).
    PersonOfPatient {
        /// Patient id.
        patient_id: String,
        /// Person id.
        person_id: String,
    },
    /// Drop every open review item (a rebuild replaces the queue).
    ClearOpenReviews,
    /// Tell the patient something (a facility was first linked to their person), in the same
    /// transaction as the link.
    Notify(crate::accounts::NotificationRow),
    /// Two persons became one: what the patient set up under the retired id (portal account,
    /// proxies, consent settings, residence, consent in person, notices, emergency grants)
    /// moves to the survivor. Settings the survivor already has win (they were set on the
    /// surviving record); the retired ones stay under the old id for the history.
    MovePerson {
        /// The retired person id.
        from: String,
        /// The surviving person id.
        to: String,
    },
}

fn apply(conn: &mut dyn Conn, w: &MpiWrite) -> Result<(), StoreError> {
    match w {
        MpiWrite::Link(l) => {
            conn.execute(
                "DELETE FROM mpi_link WHERE facility = $1 AND local_id = $2",
                &[Param::Text(&l.facility), Param::Text(&l.local_id)],
            )?;
            conn.execute(
                "INSERT INTO mpi_link (facility, local_id, patient_id, person_id, reason, decided) VALUES ($1, $2, $3, $4, $5, $6)",
                &[Param::Text(&l.facility), Param::Text(&l.local_id), Param::Text(&l.patient_id), Param::Text(&l.person_id), Param::Text(&l.reason), Param::I64(l.decided)],
            )?;
        }
        MpiWrite::Review(r) => {
            let weight = format!("{:.3}", r.weight);
            conn.execute(
                "INSERT INTO mpi_review (id, a_facility, a_local, b_facility, b_local, weight, hold, created, resolved, resolution, resolved_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, NULL)",
                &[Param::Text(&r.id), Param::Text(&r.a.0), Param::Text(&r.a.1), Param::Text(&r.b.0), Param::Text(&r.b.1), Param::Text(&weight), Param::Text(&r.hold), Param::I64(r.created)],
            )?;
        }
        MpiWrite::Resolve { id, resolution, by, at } => {
            conn.execute(
                "UPDATE mpi_review SET resolved = $1, resolution = $2, resolved_by = $3 WHERE id = $4",
                &[Param::I64(*at), Param::Text(resolution), Param::Text(by), Param::Text(id)],
            )?;
        }
        MpiWrite::KeepApart { a, b, by, at } => {
            let (x, y) = if a <= b { (a, b) } else { (b, a) };
            conn.execute(
                "DELETE FROM mpi_keep_apart WHERE a_key = $1 AND b_key = $2",
                &[Param::Text(x), Param::Text(y)],
            )?;
            conn.execute(
                "INSERT INTO mpi_keep_apart (a_key, b_key, created, created_by) VALUES ($1, $2, $3, $4)",
                &[Param::Text(x), Param::Text(y), Param::I64(*at), Param::Text(by)],
            )?;
        }
        MpiWrite::History { id, at, action, detail, by } => {
            conn.execute(
                "INSERT INTO mpi_history (id, at, action, detail, by_whom) VALUES ($1, $2, $3, $4, $5)",
                &[Param::Text(id), Param::I64(*at), Param::Text(action), Param::Text(detail), Param::Text(by)],
            )?;
        }
        MpiWrite::PersonOfPatient { patient_id, person_id } => {
            conn.execute(
                "UPDATE resource SET person_id = $1 WHERE patient_id = $2",
                &[Param::Text(person_id), Param::Text(patient_id)],
            )?;
        }
        MpiWrite::MovePerson { from, to } => {
            let p = [Param::Text(to), Param::Text(from)];
            // The audit trail cannot move (it is hash-chained): remember that `from` lives on
            // as `to`, and that every id retired into `from` now does too.
            conn.execute("UPDATE person_retired SET survivor_id = $1 WHERE survivor_id = $2", &p)?;
            conn.execute(
                "INSERT INTO person_retired (retired_id, survivor_id, at) VALUES ($2, $1, $3) \
                 ON CONFLICT (retired_id) DO UPDATE SET survivor_id = excluded.survivor_id, at = excluded.at",
                &[Param::Text(to), Param::Text(from), Param::I64(musubi_fhir::datetime::now_ms())],
            )?;
            for table in [
                "portal_account",
                "proxy_grant",
                "visit_consent",
                "emergency_grant",
                "notification",
                "person_code",
                "residence_event",
            ] {
                conn.execute(&format!("UPDATE {table} SET person_id = $1 WHERE person_id = $2"), &p)?;
            }
            for table in ["consent_setting", "residence", "participation"] {
                conn.execute(
                    &format!(
                        "UPDATE {table} SET person_id = $1 WHERE person_id = $2 \
                         AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.person_id = $1)"
                    ),
                    &p,
                )?;
            }
        }
        MpiWrite::ClearOpenReviews => {
            conn.execute("DELETE FROM mpi_review WHERE resolved IS NULL", &[])?;
        }
        MpiWrite::Notify(n) => {
            conn.execute(
                "INSERT INTO notification (id, person_id, kind, text, created, read_at) VALUES ($1, $2, $3, $4, $5, $6)",
                &[Param::Text(&n.id), Param::Text(&n.person_id), Param::Text(&n.kind), Param::Text(&n.text), Param::I64(n.created), n.read_at.into()],
            )?;
        }
    }
    Ok(())
}

impl Store {
    /// Applies MPI writes and audit records atomically.
    pub fn write_mpi(
        &self,
        writes: Vec<MpiWrite>,
        audit: Vec<musubi_domain::audit::AuditRecord>,
    ) -> Result<(), StoreError> {
        self.inner.writer.write(move |conn| {
            for w in &writes {
                apply(conn, w)?;
            }
            crate::ops::append_audit(conn, &audit)?;
            Ok(())
        })
    }
}

fn link_row(r: &crate::sql::Row) -> LinkRow {
    LinkRow {
        facility: r.str(0).into(),
        local_id: r.str(1).into(),
        patient_id: r.str(2).into(),
        person_id: r.str(3).into(),
        reason: r.str(4).into(),
        decided: r.i64(5),
    }
}

impl Reader<'_> {
    /// Every link.
    pub fn mpi_links(&mut self) -> Result<Vec<LinkRow>, StoreError> {
        let rows = self.conn.query("SELECT facility, local_id, patient_id, person_id, reason, decided FROM mpi_link ORDER BY facility, local_id", &[])?;
        Ok(rows.iter().map(link_row).collect())
    }

    /// The link of a Patient resource.
    pub fn mpi_link_of_patient(&mut self, patient_id: &str) -> Result<Option<LinkRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT facility, local_id, patient_id, person_id, reason, decided FROM mpi_link WHERE patient_id = $1",
            &[Param::Text(patient_id)],
        )?;
        Ok(rows.first().map(link_row))
    }

    /// The link of a source patient.
    pub fn mpi_link(&mut self, facility: &str, local_id: &str) -> Result<Option<LinkRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT facility, local_id, patient_id, person_id, reason, decided FROM mpi_link WHERE facility = $1 AND local_id = $2",
            &[Param::Text(facility), Param::Text(local_id)],
        )?;
        Ok(rows.first().map(link_row))
    }

    /// The links of a person.
    pub fn mpi_links_of_person(&mut self, person_id: &str) -> Result<Vec<LinkRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT facility, local_id, patient_id, person_id, reason, decided FROM mpi_link WHERE person_id = $1 ORDER BY facility, local_id",
            &[Param::Text(person_id)],
        )?;
        Ok(rows.iter().map(link_row).collect())
    }

    /// Review items (open ones only unless `all`), oldest first.
    pub fn mpi_reviews(&mut self, all: bool) -> Result<Vec<ReviewRow>, StoreError> {
        let sql = format!(
            "SELECT id, a_facility, a_local, b_facility, b_local, weight, hold, created, resolved, resolution FROM mpi_review {} ORDER BY created, id",
            if all { "" } else { "WHERE resolved IS NULL" }
        );
        let rows = self.conn.query(&sql, &[])?;
        Ok(rows
            .iter()
            .map(|r| ReviewRow {
                id: r.str(0).into(),
                a: (r.str(1).into(), r.str(2).into()),
                b: (r.str(3).into(), r.str(4).into()),
                weight: r.str(5).parse().unwrap_or(0.0),
                hold: r.str(6).into(),
                created: r.i64(7),
                resolved: r.opt_i64(8),
                resolution: r.opt_str(9).map(Into::into),
            })
            .collect())
    }

    /// Pairs kept apart (`facility|local` keys).
    pub fn mpi_kept_apart(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.conn.query("SELECT a_key, b_key FROM mpi_keep_apart ORDER BY a_key, b_key", &[])?;
        Ok(rows.iter().map(|r| (r.str(0).to_owned(), r.str(1).to_owned())).collect())
    }

    /// Every current Patient with its facility: (id, facility, JSON).
    pub fn all_patients(&mut self) -> Result<Vec<(String, Option<String>, String)>, StoreError> {
        let rows = self.conn.query(
            "SELECT r.id, r.facility, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version \
             WHERE r.rtype = 'Patient' AND r.deleted = 0 ORDER BY r.id",
            &[],
        )?;
        Ok(rows
            .into_iter()
            .map(|mut r| (r.str(0).to_owned(), r.opt_str(1).map(str::to_owned), r.take_str(2).unwrap_or_default()))
            .collect())
    }
}
