//! Evidence the gate relies on that a requester cannot make up alone: one-time codes issued to
//! a person (the code a patient shows at the desk for consent at the visit; the activation code
//! a facility or the operator hands over after an identity check), the operator's confirmation
//! of a paper consent, alerts for the operator, and notices that go out by post to patients
//! without a portal account.
//!
//! Codes are stored only as hashes. Using one is a conditional update inside the same
//! transaction as what it allows, so a code opens exactly one thing, once, before it expires.

use musubi_domain::audit::AuditRecord;

use crate::accounts::{AccountWrite, NotificationRow};
use crate::ops::append_audit;
use crate::sql::{Conn, Param, Row};
use crate::{Reader, Store, StoreError};

/// What a one-time code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePurpose {
    /// Consent given in person at a visit (the patient shows it at the desk).
    VisitConsent,
    /// Binding a portal account to the person (handed over after an identity check).
    Activation,
}

impl CodePurpose {
    /// The stable code stored.
    pub fn code(self) -> &'static str {
        match self {
            CodePurpose::VisitConsent => "visit-consent",
            CodePurpose::Activation => "activation",
        }
    }
}

/// A one-time code issued to a person (only its hash is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonCodeRow {
    /// SHA-256 of the code (hex).
    pub code_hash: String,
    /// What it is for.
    pub purpose: CodePurpose,
    /// The person it opens.
    pub person_id: String,
    /// Who issued it (`portal:<account>`, `<facility>:<login>`, `operator:<name>`).
    pub issued_by: String,
    /// Issued (epoch ms).
    pub created: i64,
    /// Expires (epoch ms).
    pub expires: i64,
}

/// An alert for the operator (e.g. a user's emergency accesses over the limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    /// Id.
    pub id: String,
    /// `break-glass-rate`, …
    pub kind: String,
    /// The text (Japanese).
    pub text: String,
    /// Created.
    pub created: i64,
    /// Handled by (operator).
    pub handled_by: Option<String>,
    /// Handled at.
    pub handled_at: Option<i64>,
}

/// A change to the evidence tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceWrite {
    /// Issue a code. Earlier unused codes of the same person and purpose stop working, so only
    /// the newest code handed over is valid.
    IssueCode(PersonCodeRow),
    /// Use a code: fails the whole transaction with [`StoreError::Conflict`] (key
    /// `person_code`) unless an unused, unexpired code with this hash exists for this purpose
    /// (and this person, when given).
    UseCode {
        /// SHA-256 of the code.
        code_hash: String,
        /// What for.
        purpose: CodePurpose,
        /// The person it must belong to (None: any; the caller reads it back first).
        person_id: Option<String>,
        /// Now.
        at: i64,
        /// Who used it.
        by: String,
    },
    /// The operator confirms (or rejects) a consent at a visit registered on paper.
    DecideVisitConsent {
        /// The consent.
        id: String,
        /// `active` or `rejected`.
        status: &'static str,
        /// Operator.
        by: String,
        /// When.
        at: i64,
        /// The period from confirmation (epoch ms), for an accepted one.
        until: Option<i64>,
    },
    /// An alert for the operator.
    Alert(AlertRow),
    /// The operator handled an alert.
    HandleAlert {
        /// Alert id.
        id: String,
        /// Operator.
        by: String,
        /// When.
        at: i64,
    },
    /// Revoke a portal account (hijacked): disabled, detached from its person, sessions ended.
    RevokePortal {
        /// Account id.
        id: String,
    },
    /// The person's participation consent (参加同意), given or withdrawn.
    Participation {
        /// Person.
        person_id: String,
        /// Given (true) or withdrawn.
        participating: bool,
        /// When.
        at: i64,
        /// Who recorded it (`portal:<account>`, `<facility>:<login>`, `operator:<name>`).
        by: String,
        /// On what evidence (`portal`, `code`, `paper:<form>`).
        evidence: String,
    },
    /// A notice was sent by post.
    Posted {
        /// Notification id.
        id: String,
        /// When.
        at: i64,
    },
}

fn apply(conn: &mut dyn Conn, w: &EvidenceWrite) -> Result<(), StoreError> {
    match w {
        EvidenceWrite::IssueCode(c) => {
            conn.execute(
                "UPDATE person_code SET used_at = $1, used_by = 'superseded' WHERE person_id = $2 AND purpose = $3 AND used_at IS NULL",
                &[Param::I64(c.created), Param::Text(&c.person_id), Param::Text(c.purpose.code())],
            )?;
            conn.execute(
                "INSERT INTO person_code (code_hash, purpose, person_id, issued_by, created, expires) VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    Param::Text(&c.code_hash),
                    Param::Text(c.purpose.code()),
                    Param::Text(&c.person_id),
                    Param::Text(&c.issued_by),
                    Param::I64(c.created),
                    Param::I64(c.expires),
                ],
            )?;
        }
        EvidenceWrite::UseCode { code_hash, purpose, person_id, at, by } => {
            let n = match person_id {
                Some(p) => conn.execute(
                    "UPDATE person_code SET used_at = $1, used_by = $2 WHERE code_hash = $3 AND purpose = $4 AND person_id = $5 AND used_at IS NULL AND expires > $1",
                    &[Param::I64(*at), Param::Text(by), Param::Text(code_hash), Param::Text(purpose.code()), Param::Text(p)],
                )?,
                None => conn.execute(
                    "UPDATE person_code SET used_at = $1, used_by = $2 WHERE code_hash = $3 AND purpose = $4 AND used_at IS NULL AND expires > $1",
                    &[Param::I64(*at), Param::Text(by), Param::Text(code_hash), Param::Text(purpose.code())],
                )?,
            };
            if n != 1 {
                return Err(StoreError::Conflict {
                    key: "person_code".into(),
                    expected: "an unused code".into(),
                    found: "none".into(),
                });
            }
        }
        EvidenceWrite::DecideVisitConsent { id, status, by, at, until } => {
            let n = conn.execute(
                "UPDATE visit_consent SET status = $1, confirmed_by = $2, confirmed_at = $3, until_at = COALESCE($4, until_at) WHERE id = $5 AND status = 'pending'",
                &[Param::Text(status), Param::Text(by), Param::I64(*at), (*until).into(), Param::Text(id)],
            )?;
            if n != 1 {
                return Err(StoreError::Conflict {
                    key: format!("visit_consent/{id}"),
                    expected: "pending".into(),
                    found: "decided or missing".into(),
                });
            }
        }
        EvidenceWrite::Alert(a) => {
            conn.execute(
                "INSERT INTO operator_alert (id, kind, text, created) VALUES ($1, $2, $3, $4)",
                &[Param::Text(&a.id), Param::Text(&a.kind), Param::Text(&a.text), Param::I64(a.created)],
            )?;
        }
        EvidenceWrite::HandleAlert { id, by, at } => {
            conn.execute(
                "UPDATE operator_alert SET handled_by = $1, handled_at = $2 WHERE id = $3 AND handled_at IS NULL",
                &[Param::Text(by), Param::I64(*at), Param::Text(id)],
            )?;
        }
        EvidenceWrite::RevokePortal { id } => {
            conn.execute("UPDATE portal_account SET disabled = 1, person_id = NULL WHERE id = $1", &[Param::Text(id)])?;
            conn.execute("DELETE FROM session WHERE subject = $1 AND kind = 'portal'", &[Param::Text(id)])?;
        }
        EvidenceWrite::Participation { person_id, participating, at, by, evidence } => {
            conn.execute("DELETE FROM participation WHERE person_id = $1", &[Param::Text(person_id)])?;
            conn.execute(
                "INSERT INTO participation (person_id, participating, at, by_whom, evidence) VALUES ($1, $2, $3, $4, $5)",
                &[
                    Param::Text(person_id),
                    Param::I64(i64::from(*participating)),
                    Param::I64(*at),
                    Param::Text(by),
                    Param::Text(evidence),
                ],
            )?;
        }
        EvidenceWrite::Posted { id, at } => {
            conn.execute("UPDATE notification SET posted_at = $1 WHERE id = $2", &[Param::I64(*at), Param::Text(id)])?;
        }
    }
    Ok(())
}

impl Store {
    /// Records participation for every person with a source patient who has none recorded:
    /// for the demo region only (its synthetic patients "consented" when it was made).
    pub fn participation_for_everyone(&self, at: i64, by: String) -> Result<u64, StoreError> {
        self.inner.writer.write(move |conn| {
            conn.execute(
                "INSERT INTO participation (person_id, participating, at, by_whom, evidence) \
                 SELECT DISTINCT person_id, 1, $1, $2, 'demo' FROM resource \
                 WHERE rtype = 'Patient' AND person_id IS NOT NULL \
                 AND person_id NOT IN (SELECT person_id FROM participation)",
                &[Param::I64(at), Param::Text(&by)],
            )
        })
    }

    /// Applies evidence changes, account changes and audit records in one transaction: a code
    /// is used exactly when what it allows is recorded.
    pub fn write_evidence(
        &self,
        evidence: Vec<EvidenceWrite>,
        accounts: Vec<AccountWrite>,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<i64>, StoreError> {
        self.inner.writer.write(move |conn| {
            for w in &evidence {
                apply(conn, w)?;
            }
            for w in &accounts {
                crate::accounts::apply(conn, w)?;
            }
            append_audit(conn, &audit)
        })
    }
}

fn alert_row(r: &Row) -> AlertRow {
    AlertRow {
        id: r.str(0).into(),
        kind: r.str(1).into(),
        text: r.str(2).into(),
        created: r.i64(3),
        handled_by: r.opt_str(4).map(Into::into),
        handled_at: r.opt_i64(5),
    }
}

impl Reader<'_> {
    /// The person a code (by hash) was issued to, when it is unused and unexpired at `now`.
    pub fn code_person(
        &mut self,
        code_hash: &str,
        purpose: CodePurpose,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let rows = self.conn.query(
            "SELECT person_id FROM person_code WHERE code_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires > $3",
            &[Param::Text(code_hash), Param::Text(purpose.code()), Param::I64(now)],
        )?;
        Ok(rows.first().map(|r| r.str(0).to_owned()))
    }

    /// Who issued a code (`operator:<name>` or `<facility>:<login>`).
    pub fn code_issuer(&mut self, code_hash: &str, purpose: CodePurpose) -> Result<Option<String>, StoreError> {
        let rows = self.conn.query(
            "SELECT issued_by FROM person_code WHERE code_hash = $1 AND purpose = $2",
            &[Param::Text(code_hash), Param::Text(purpose.code())],
        )?;
        Ok(rows.first().map(|r| r.str(0).to_owned()))
    }

    /// Whether the person's participation consent is recorded (and not withdrawn).
    pub fn participating(&mut self, person_id: &str) -> Result<bool, StoreError> {
        let rows = self
            .conn
            .query("SELECT participating FROM participation WHERE person_id = $1", &[Param::Text(person_id)])?;
        Ok(rows.first().is_some_and(|r| r.i64(0) == 1))
    }

    /// Prefectures the person registered as their residence since `since` (epoch ms).
    pub fn residence_prefectures_since(&mut self, person_id: &str, since: i64) -> Result<Vec<i64>, StoreError> {
        let rows = self.conn.query(
            "SELECT DISTINCT prefecture FROM residence_event WHERE person_id = $1 AND at >= $2",
            &[Param::Text(person_id), Param::I64(since)],
        )?;
        Ok(rows.iter().map(|r| r.i64(0)).collect())
    }

    /// Every stored version of a source Patient written since `since`: (written, JSON).
    pub fn patient_versions_since(&mut self, patient_id: &str, since: i64) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = self.conn.query(
            "SELECT last_updated, content FROM resource_version WHERE rtype = 'Patient' AND id = $1 AND deleted = 0 AND last_updated >= $2",
            &[Param::Text(patient_id), Param::I64(since)],
        )?;
        Ok(rows.iter().filter_map(|r| Some((r.i64(0), r.opt_str(1)?.to_owned()))).collect())
    }

    /// Alerts not yet handled, oldest first.
    pub fn open_alerts(&mut self) -> Result<Vec<AlertRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT id, kind, text, created, handled_by, handled_at FROM operator_alert WHERE handled_at IS NULL ORDER BY created",
            &[],
        )?;
        Ok(rows.iter().map(alert_row).collect())
    }

    /// How many emergency grants a user started since `since` (epoch ms).
    pub fn emergency_count_since(&mut self, user_id: &str, since: i64) -> Result<i64, StoreError> {
        let rows = self.conn.query(
            "SELECT COUNT(*) FROM emergency_grant WHERE user_id = $1 AND started >= $2",
            &[Param::Text(user_id), Param::I64(since)],
        )?;
        Ok(rows.first().map_or(0, |r| r.i64(0)))
    }

    /// Notices to patients who have no portal account and have not been sent one by post yet
    /// (oldest first): the operator prints and posts them.
    pub fn notices_to_post(&mut self) -> Result<Vec<NotificationRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT n.id, n.person_id, n.kind, n.text, n.created, n.read_at FROM notification n \
             WHERE n.posted_at IS NULL AND (n.kind = 'portal-enrolled' OR (n.read_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM portal_account p WHERE p.person_id = n.person_id))) \
             ORDER BY n.created",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| NotificationRow {
                id: r.str(0).into(),
                person_id: r.str(1).into(),
                kind: r.str(2).into(),
                text: r.str(3).into(),
                created: r.i64(4),
                read_at: r.opt_i64(5),
            })
            .collect())
    }
}
