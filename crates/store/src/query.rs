//! The read side: current rows, versions, history, search, Bundle submissions, the audit log
//! and tokens. Search returns record meta only ([`CurrentRow`]); the caller runs the gate on it
//! and loads the JSON of the page it will return.

use musubi_domain::audit::StoredAudit;
use musubi_domain::{Flags, ResourceClass};
use musubi_fhir::ResourceType;
use musubi_fhir::datetime::DateRange;
use musubi_gate::Scope;

use crate::sql::{Param, Row};
use crate::{BundleSubmission, CurrentRow, Reader, StoreError, StoredMeta, StoredResource, TokenRow};

pub(crate) const CURRENT_COLS: &str = "r.rtype, r.id, r.version, r.last_updated, r.deleted, r.content_hash, r.facility, r.submitter, \
     r.patient_id, r.person_id, r.class, r.clinical_date, r.flags, r.retention_end, r.keep_last, r.item_key, r.bundle_key";

/// The current row in columns `offset..offset + 17` of `row` ([`CURRENT_COLS`]); its text is
/// moved out, not copied (a whole-record read converts thousands of rows).
pub(crate) fn current_row(row: &mut Row, offset: usize) -> Result<CurrentRow, StoreError> {
    let c = |i: usize| offset + i;
    let rtype: ResourceType = row.str(c(0)).parse().map_err(StoreError::Corrupt)?;
    let class: ResourceClass = row.str(c(10)).parse().map_err(StoreError::Corrupt)?;
    Ok(CurrentRow {
        rtype,
        id: row.take_str(c(1)).unwrap_or_default(),
        version: row.i64(c(2)),
        last_updated: row.i64(c(3)),
        deleted: row.i64(c(4)) != 0,
        content_hash: row.take_str(c(5)).unwrap_or_default(),
        meta: StoredMeta {
            facility: row.opt_str(c(6)).and_then(|f| f.parse().ok()),
            submitter: row.take_str(c(7)).unwrap_or_default(),
            patient_id: row.take_str(c(8)),
            person_id: row.take_str(c(9)),
            class,
            clinical_date: row.opt_i64(c(11)),
            flags: Flags::from_bits(u8::try_from(row.i64(c(12))).unwrap_or(0)),
            retention_end: row.take_str(c(13)),
            keep_last: row.opt_i64(c(14)),
            item_key: row.take_str(c(15)),
            bundle_key: row.take_str(c(16)),
        },
    })
}

/// A date comparison prefix (FHIR search).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePrefix {
    /// The value's range lies within the parameter's.
    Eq,
    /// Not `eq`.
    Ne,
    /// Ends after the parameter ends.
    Gt,
    /// Starts before the parameter starts.
    Lt,
    /// Ends at or after the parameter starts.
    Ge,
    /// Starts at or before the parameter ends.
    Le,
    /// Starts after the parameter ends.
    Sa,
    /// Ends before the parameter starts.
    Eb,
    /// Overlaps the parameter widened by 10% (at least a day).
    Ap,
}

/// A date predicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatePred {
    /// The comparison.
    pub prefix: DatePrefix,
    /// The parameter's range.
    pub range: DateRange,
}

impl DatePred {
    /// SQL over columns `lo`/`hi`, pushing parameters.
    fn sql(&self, lo: &str, hi: &str, p: &mut dyn FnMut(i64) -> String) -> String {
        let (a, b) = (self.range.lo, self.range.hi);
        match self.prefix {
            DatePrefix::Eq => format!("({lo} >= {} AND {hi} <= {})", p(a), p(b)),
            DatePrefix::Ne => format!("NOT ({lo} >= {} AND {hi} <= {})", p(a), p(b)),
            DatePrefix::Gt => format!("{hi} > {}", p(b)),
            DatePrefix::Lt => format!("{lo} < {}", p(a)),
            DatePrefix::Ge => format!("{hi} >= {}", p(a)),
            DatePrefix::Le => format!("{lo} <= {}", p(b)),
            DatePrefix::Sa => format!("{lo} > {}", p(b)),
            DatePrefix::Eb => format!("{hi} < {}", p(a)),
            DatePrefix::Ap => {
                let d = ((b - a) / 10).max(86_400_000);
                format!("({lo} <= {} AND {hi} >= {})", p(b.saturating_add(d)), p(a.saturating_sub(d)))
            }
        }
    }

    /// Whether a point in time (epoch ms) satisfies the predicate (used on `last_updated`).
    pub fn matches_point(&self, t: i64) -> bool {
        let (a, b) = (self.range.lo, self.range.hi);
        match self.prefix {
            DatePrefix::Eq => t >= a && t <= b,
            DatePrefix::Ne => !(t >= a && t <= b),
            DatePrefix::Gt | DatePrefix::Sa => t > b,
            DatePrefix::Lt | DatePrefix::Eb => t < a,
            DatePrefix::Ge => t >= a,
            DatePrefix::Le => t <= b,
            DatePrefix::Ap => {
                let d = ((b - a) / 10).max(86_400_000);
                t >= a.saturating_sub(d) && t <= b.saturating_add(d)
            }
        }
    }
}

/// One token alternative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenMatch {
    /// `code`: any system.
    Code(String),
    /// `system|code`.
    SystemCode(String, String),
    /// `system|`: any code in the system.
    System(String),
    /// `|code`: no system.
    NoSystem(String),
}

/// One string alternative (on normalized values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrMatch {
    /// Starts with (the FHIR default).
    StartsWith(String),
    /// Equals (`:exact`).
    Exact(String),
    /// Contains (`:contains`).
    Contains(String),
}

/// A search filter; filters are ANDed, the alternatives inside one are ORed.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `_id`.
    Id(Vec<String>),
    /// `_lastUpdated`.
    LastUpdated(DatePred),
    /// `patient` (the stored patient column).
    Patient(Vec<String>),
    /// A token parameter; `negate` for `:not`.
    Token {
        /// Parameter name.
        param: &'static str,
        /// Alternatives.
        any: Vec<TokenMatch>,
        /// `:not`.
        negate: bool,
    },
    /// A reference parameter (targets `Type/id`).
    Ref {
        /// Parameter name.
        param: &'static str,
        /// Alternatives.
        any: Vec<String>,
    },
    /// A date parameter.
    Date {
        /// Parameter name.
        param: &'static str,
        /// The predicate.
        pred: DatePred,
    },
    /// A string parameter.
    Str {
        /// Parameter name.
        param: &'static str,
        /// Alternatives.
        any: Vec<StrMatch>,
    },
}

/// Result order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Newest write first (the default).
    #[default]
    LastUpdatedDesc,
    /// Oldest write first.
    LastUpdatedAsc,
    /// Newest clinical date first.
    DateDesc,
    /// Oldest clinical date first.
    DateAsc,
    /// By id.
    Id,
}

/// A search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// The type searched.
    pub rtype: ResourceType,
    /// The filters.
    pub filters: Vec<Filter>,
    /// The gate's scope.
    pub scope: Scope,
    /// The order.
    pub sort: Sort,
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

impl SearchQuery {
    /// Whether a selective filter (the patient column, ids, or a scope limited to persons)
    /// drives the query.
    fn is_driven(&self) -> bool {
        self.filters.iter().any(|f| matches!(f, Filter::Patient(_) | Filter::Id(_)))
            || self.scope.rules.as_ref().is_some_and(|rules| {
                !rules.is_empty() && rules.iter().all(|r| r.patients.is_some() || r.persons.is_some())
            })
    }
}

/// Builds SQL text with its parameters owned (search values come from the request).
struct SqlBuilder {
    params: Vec<OwnedParam>,
}

#[derive(Debug, Clone)]
enum OwnedParam {
    I64(i64),
    Text(String),
}

impl SqlBuilder {
    fn new() -> Self {
        SqlBuilder { params: Vec::new() }
    }

    fn text(&mut self, s: impl Into<String>) -> String {
        self.params.push(OwnedParam::Text(s.into()));
        format!("${}", self.params.len())
    }

    fn int(&mut self, v: i64) -> String {
        self.params.push(OwnedParam::I64(v));
        format!("${}", self.params.len())
    }

    fn params(&self) -> Vec<Param<'_>> {
        self.params
            .iter()
            .map(|p| match p {
                OwnedParam::I64(v) => Param::I64(*v),
                OwnedParam::Text(s) => Param::Text(s),
            })
            .collect()
    }

    fn date(&mut self, pred: &DatePred, lo: &str, hi: &str) -> String {
        pred.sql(lo, hi, &mut |v| self.int(v))
    }

    fn scope_sql(&mut self, scope: &Scope) -> Option<String> {
        let rules = scope.rules.as_ref()?;
        let mut ors = Vec::new();
        for rule in rules {
            let mut ands = Vec::new();
            if let Some(f) = &rule.facilities {
                let ps: Vec<String> = f.iter().map(|x| self.text(x.clone())).collect();
                ands.push(if ps.is_empty() {
                    "1 = 0".to_owned()
                } else {
                    format!("r.facility IN ({})", ps.join(", "))
                });
            }
            if let Some(c) = &rule.classes {
                let ps: Vec<String> = c.iter().map(|x| self.text(*x)).collect();
                ands.push(if ps.is_empty() { "1 = 0".to_owned() } else { format!("r.class IN ({})", ps.join(", ")) });
            }
            if let Some(p) = &rule.patients {
                let ps: Vec<String> = p.iter().map(|x| self.text(x.clone())).collect();
                ands.push(if ps.is_empty() {
                    "1 = 0".to_owned()
                } else {
                    format!("r.patient_id IN ({})", ps.join(", "))
                });
            }
            if let Some(p) = &rule.persons {
                let ps: Vec<String> = p.iter().map(|x| self.text(x.clone())).collect();
                ands.push(if ps.is_empty() {
                    "1 = 0".to_owned()
                } else {
                    format!("r.person_id IN ({})", ps.join(", "))
                });
            }
            if let Some(m) = rule.min_clinical_date {
                let mp = self.int(m);
                ands.push(format!("(r.clinical_date IS NULL OR r.clinical_date >= {mp})"));
            }
            if rule.exclude_flags != 0 {
                // Flags are three bits; a bitwise AND is spelled the same in both dialects.
                let fp = self.int(i64::from(rule.exclude_flags));
                ands.push(format!("(r.flags & {fp}) = 0"));
            }
            if let Some(x) = rule.exclude_facilities.as_ref().filter(|x| !x.is_empty()) {
                let ps: Vec<String> = x.iter().map(|f| self.text(f.clone())).collect();
                ands.push(format!("(r.facility IS NULL OR r.facility NOT IN ({}))", ps.join(", ")));
            }
            ors.push(if ands.is_empty() { "1 = 1".to_owned() } else { format!("({})", ands.join(" AND ")) });
        }
        Some(if ors.is_empty() { "1 = 0".to_owned() } else { format!("({})", ors.join(" OR ")) })
    }

    fn filter_sql(&mut self, q: &SearchQuery) -> String {
        let t = self.text(q.rtype.as_str());
        // With a selective driver (the patient column, or ids) the other filters are probed per
        // candidate row (EXISTS on the index tables' (rtype, id) index); without one they drive
        // the query themselves (IN on their lookup index). SQLite otherwise materializes a
        // non-selective IN list — every lab result of the network — for each query.
        let driven = q.is_driven();
        let sub = |table: &str, cond: String, negate: bool| -> String {
            if driven {
                format!(
                    "{}EXISTS (SELECT 1 FROM {table} i WHERE i.rtype = r.rtype AND i.id = r.id AND {cond})",
                    if negate { "NOT " } else { "" }
                )
            } else {
                format!(
                    "r.id {} (SELECT i.id FROM {table} i WHERE i.rtype = {t} AND {cond})",
                    if negate { "NOT IN" } else { "IN" }
                )
            }
        };
        let mut clauses = vec![format!("r.rtype = {t}"), "r.deleted = 0".to_owned()];
        if let Some(c) = self.scope_sql(&q.scope) {
            clauses.push(c);
        }
        for f in &q.filters {
            let c = match f {
                Filter::Id(ids) => {
                    let ps: Vec<String> = ids.iter().map(|x| self.text(x.clone())).collect();
                    format!("r.id IN ({})", ps.join(", "))
                }
                Filter::LastUpdated(pred) => self.date(pred, "r.last_updated", "r.last_updated"),
                Filter::Patient(ids) => {
                    let ps: Vec<String> = ids.iter().map(|x| self.text(x.clone())).collect();
                    format!("r.patient_id IN ({})", ps.join(", "))
                }
                Filter::Token { param, any, negate } => {
                    let pn = self.text(*param);
                    let alts: Vec<String> = any
                        .iter()
                        .map(|m| match m {
                            TokenMatch::Code(c) => format!("i.code = {}", self.text(c.clone())),
                            TokenMatch::SystemCode(s, c) => {
                                format!("(i.code = {} AND i.system = {})", self.text(c.clone()), self.text(s.clone()))
                            }
                            TokenMatch::System(s) => format!("i.system = {}", self.text(s.clone())),
                            TokenMatch::NoSystem(c) => format!("(i.code = {} AND i.system = '')", self.text(c.clone())),
                        })
                        .collect();
                    sub("idx_token", format!("i.param = {pn} AND ({})", alts.join(" OR ")), *negate)
                }
                Filter::Ref { param, any } => {
                    let pn = self.text(*param);
                    let ps: Vec<String> = any.iter().map(|x| self.text(x.clone())).collect();
                    sub("idx_ref", format!("i.param = {pn} AND i.target IN ({})", ps.join(", ")), false)
                }
                Filter::Date { param, pred } => {
                    let pn = self.text(*param);
                    let cond = self.date(pred, "i.lo", "i.hi");
                    sub("idx_date", format!("i.param = {pn} AND {cond}"), false)
                }
                Filter::Str { param, any } => {
                    let pn = self.text(*param);
                    let alts: Vec<String> = any
                        .iter()
                        .map(|m| match m {
                            StrMatch::StartsWith(v) => {
                                format!("i.value LIKE {} ESCAPE '\\'", self.text(format!("{}%", escape_like(v))))
                            }
                            StrMatch::Exact(v) => format!("i.value = {}", self.text(v.clone())),
                            StrMatch::Contains(v) => {
                                format!("i.value LIKE {} ESCAPE '\\'", self.text(format!("%{}%", escape_like(v))))
                            }
                        })
                        .collect();
                    sub("idx_string", format!("i.param = {pn} AND ({})", alts.join(" OR ")), false)
                }
            };
            clauses.push(c);
        }
        clauses.join(" AND ")
    }
}

/// The ORDER BY of a search. When a selective filter drives the query (`driven`), the sort
/// keys are written as expressions (`+ 0`) so that no index can serve the order: the planner
/// then reads the few rows of the patient through the selective index and sorts them, instead
/// of walking every row of the type in index order to avoid that small sort.
fn order_sql(sort: Sort, driven: bool) -> &'static str {
    if driven {
        return match sort {
            Sort::LastUpdatedDesc => "(r.last_updated + 0) DESC, r.id",
            Sort::LastUpdatedAsc => "(r.last_updated + 0) ASC, r.id",
            Sort::DateDesc => "(r.clinical_date + 0) DESC NULLS LAST, r.id",
            Sort::DateAsc => "(r.clinical_date + 0) ASC NULLS LAST, r.id",
            Sort::Id => "(r.id || '')",
        };
    }
    match sort {
        Sort::LastUpdatedDesc => "r.last_updated DESC, r.id",
        Sort::LastUpdatedAsc => "r.last_updated ASC, r.id",
        Sort::DateDesc => "r.clinical_date DESC NULLS LAST, r.id",
        Sort::DateAsc => "r.clinical_date ASC NULLS LAST, r.id",
        Sort::Id => "r.id",
    }
}

/// Filters on the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Records about this patient.
    pub patient: Option<String>,
    /// Records by this agent name.
    pub agent: Option<String>,
    /// Records by agents of this facility.
    pub facility: Option<String>,
    /// Action code.
    pub action: Option<String>,
    /// Outcome code.
    pub outcome: Option<String>,
    /// From this time (epoch ms, inclusive).
    pub from: Option<i64>,
    /// Until this time (inclusive).
    pub to: Option<i64>,
    /// Only this sequence number.
    pub seq: Option<i64>,
    /// Records about this person (any of their source patients, and any person merged into
    /// them).
    pub person: Option<String>,
}

impl AuditQuery {
    fn build(&self, b: &mut SqlBuilder) -> String {
        let mut c = vec!["1 = 1".to_owned()];
        if let Some(v) = &self.patient {
            // A patient's trail includes what was recorded under the deterministic id a rekey
            // moved it from (the audit chain is never rewritten).
            let p = b.text(v.clone());
            c.push(format!(
                "(patient_id = {p} OR patient_id IN (SELECT old_id FROM id_rekeyed WHERE new_id = {p} AND rtype = 'Patient'))"
            ));
        }
        if let Some(v) = &self.agent {
            c.push(format!("agent = {}", b.text(v.clone())));
        }
        if let Some(v) = &self.facility {
            c.push(format!("facility = {}", b.text(v.clone())));
        }
        if let Some(v) = &self.action {
            c.push(format!("action = {}", b.text(v.clone())));
        }
        if let Some(v) = &self.outcome {
            c.push(format!("outcome = {}", b.text(v.clone())));
        }
        if let Some(v) = self.from {
            c.push(format!("recorded >= {}", b.int(v)));
        }
        if let Some(v) = self.to {
            c.push(format!("recorded <= {}", b.int(v)));
        }
        if let Some(v) = self.seq {
            c.push(format!("seq = {}", b.int(v)));
        }
        if let Some(v) = &self.person {
            // A person's trail includes what was recorded under the ids merged into them, and
            // (a patient not linked yet is its own person) under a Patient id a rekey moved.
            let p = b.text(v.clone());
            c.push(format!(
                "(person_id = {p} OR person_id IN (SELECT retired_id FROM person_retired WHERE survivor_id = {p}) \
                 OR person_id IN (SELECT old_id FROM id_rekeyed WHERE new_id = {p} AND rtype = 'Patient'))"
            ));
        }
        c.join(" AND ")
    }
}

impl Reader<'_> {
    /// Current state of one resource (deleted ones included, marked).
    pub fn current(&mut self, rtype: ResourceType, id: &str) -> Result<Option<CurrentRow>, StoreError> {
        let sql = format!("SELECT {CURRENT_COLS} FROM resource r WHERE r.rtype = $1 AND r.id = $2");
        let rows = self.conn.query(&sql, &[Param::Text(rtype.as_str()), Param::Text(id)])?;
        rows.into_iter().next().map(|mut r| current_row(&mut r, 0)).transpose()
    }

    /// The current row and the content of one version (the current one when `version` is
    /// None), in one statement (atomic without a transaction).
    pub fn current_and_version(
        &mut self,
        rtype: ResourceType,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<(CurrentRow, Option<StoredResource>)>, StoreError> {
        let sql = format!(
            "SELECT {CURRENT_COLS}, v.version, v.last_updated, v.deleted, v.content FROM resource r \
             LEFT JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = COALESCE($3, r.version) \
             WHERE r.rtype = $1 AND r.id = $2"
        );
        let rows = self.conn.query(&sql, &[Param::Text(rtype.as_str()), Param::Text(id), version.into()])?;
        let Some(mut row) = rows.into_iter().next() else { return Ok(None) };
        let cur = current_row(&mut row, 0)?;
        let stored = row.opt_i64(17).map(|v| StoredResource {
            rtype,
            id: id.to_owned(),
            version: v,
            last_updated: row.i64(18),
            deleted: row.i64(19) != 0,
            content: row.take_str(20),
        });
        Ok(Some((cur, stored)))
    }

    /// One version's content (the current one when `version` is None).
    pub fn version(
        &mut self,
        rtype: ResourceType,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<StoredResource>, StoreError> {
        let rows = match version {
            Some(v) => self.conn.query(
                "SELECT version, last_updated, deleted, content FROM resource_version WHERE rtype = $1 AND id = $2 AND version = $3",
                &[Param::Text(rtype.as_str()), Param::Text(id), Param::I64(v)],
            )?,
            None => self.conn.query(
                "SELECT v.version, v.last_updated, v.deleted, v.content FROM resource r JOIN resource_version v \
                 ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE r.rtype = $1 AND r.id = $2",
                &[Param::Text(rtype.as_str()), Param::Text(id)],
            )?,
        };
        Ok(rows.into_iter().next().map(|mut r| StoredResource {
            rtype,
            id: id.to_owned(),
            version: r.i64(0),
            last_updated: r.i64(1),
            deleted: r.i64(2) != 0,
            content: r.take_str(3),
        }))
    }

    /// The current content of several resources, in the order asked (missing ones left out).
    pub fn contents(&mut self, keys: &[(ResourceType, String, i64)]) -> Result<Vec<StoredResource>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for (rtype, id, version) in keys {
            if let Some(r) = self.version(*rtype, id, Some(*version))? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The content of the current version of every live record of a person, with its key
    /// (type, id, version): one statement instead of one per record, for a whole-record read
    /// that misses the service's parsed-resource cache.
    pub fn person_contents(&mut self, person_id: &str) -> Result<Vec<StoredResource>, StoreError> {
        let rows = self.conn.query(
            "SELECT r.rtype, r.id, v.version, v.last_updated, v.deleted, v.content FROM resource r \
             JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version \
             WHERE r.person_id = $1 AND r.deleted = 0",
            &[Param::Text(person_id)],
        )?;
        rows.into_iter()
            .map(|mut r| {
                Ok(StoredResource {
                    rtype: r.str(0).parse().map_err(StoreError::Corrupt)?,
                    id: r.str(1).to_owned(),
                    version: r.i64(2),
                    last_updated: r.i64(3),
                    deleted: r.i64(4) != 0,
                    content: r.take_str(5),
                })
            })
            .collect()
    }

    /// History of a resource, a type, or everything (newest first): versions with the
    /// resource's current meta (for the gate). Returns the total and one page.
    pub fn history(
        &mut self,
        rtype: Option<ResourceType>,
        id: Option<&str>,
        since: Option<i64>,
        scope: &Scope,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<(StoredResource, CurrentRow)>), StoreError> {
        let mut b = SqlBuilder::new();
        let mut c = vec!["1 = 1".to_owned()];
        if let Some(t) = rtype {
            c.push(format!("v.rtype = {}", b.text(t.as_str())));
        }
        if let Some(i) = id {
            c.push(format!("v.id = {}", b.text(i)));
        }
        if let Some(s) = since {
            c.push(format!("v.last_updated >= {}", b.int(s)));
        }
        if let Some(sc) = b.scope_sql(scope) {
            c.push(sc);
        }
        let w = c.join(" AND ");
        let count_sql = format!(
            "SELECT COUNT(*) FROM resource_version v JOIN resource r ON r.rtype = v.rtype AND r.id = v.id WHERE {w}"
        );
        let total = self.conn.query(&count_sql, &b.params())?.first().map_or(0, |r| r.i64(0));
        let lim = b.int(limit);
        let off = b.int(offset);
        let sql = format!(
            "SELECT v.version, v.last_updated, v.deleted, v.content, {CURRENT_COLS} FROM resource_version v \
             JOIN resource r ON r.rtype = v.rtype AND r.id = v.id WHERE {w} \
             ORDER BY v.last_updated DESC, v.rtype, v.id, v.version DESC LIMIT {lim} OFFSET {off}"
        );
        let rows = self.conn.query(&sql, &b.params())?;
        let mut out = Vec::with_capacity(rows.len());
        for mut r in rows {
            let cur = current_row(&mut r, 4)?;
            let stored = StoredResource {
                rtype: cur.rtype,
                id: cur.id.clone(),
                version: r.i64(0),
                last_updated: r.i64(1),
                deleted: r.i64(2) != 0,
                content: r.take_str(3),
            };
            out.push((stored, cur));
        }
        Ok((total, out))
    }

    /// How many current resources match.
    pub fn search_count(&mut self, q: &SearchQuery) -> Result<i64, StoreError> {
        let mut b = SqlBuilder::new();
        let w = b.filter_sql(q);
        let sql = format!("SELECT COUNT(*) FROM resource r WHERE {w}");
        Ok(self.conn.query(&sql, &b.params())?.first().map_or(0, |r| r.i64(0)))
    }

    /// One page of matching current resources (meta only), in the query's order. `limit` None
    /// means all.
    pub fn search_rows(
        &mut self,
        q: &SearchQuery,
        offset: i64,
        limit: Option<i64>,
    ) -> Result<Vec<CurrentRow>, StoreError> {
        let mut b = SqlBuilder::new();
        let w = b.filter_sql(q);
        let mut sql =
            format!("SELECT {CURRENT_COLS} FROM resource r WHERE {w} ORDER BY {}", order_sql(q.sort, q.is_driven()));
        if let Some(l) = limit {
            let lp = b.int(l);
            let op = b.int(offset);
            sql.push_str(&format!(" LIMIT {lp} OFFSET {op}"));
        }
        let rows = self.conn.query(&sql, &b.params())?;
        rows.into_iter().map(|mut r| current_row(&mut r, 0)).collect()
    }

    /// Current rows of the given patients' records of `rtype`-less search: every current
    /// resource whose patient is one of `patients` (for `$everything`-style reads).
    pub fn patient_records(&mut self, patients: &[String]) -> Result<Vec<CurrentRow>, StoreError> {
        let mut b = SqlBuilder::new();
        if patients.is_empty() {
            return Ok(Vec::new());
        }
        let ps: Vec<String> = patients.iter().map(|p| b.text(p.clone())).collect();
        let sql = format!(
            "SELECT {CURRENT_COLS} FROM resource r WHERE r.patient_id IN ({}) AND r.deleted = 0 ORDER BY r.clinical_date DESC NULLS LAST, r.rtype, r.id",
            ps.join(", ")
        );
        let rows = self.conn.query(&sql, &b.params())?;
        rows.into_iter().map(|mut r| current_row(&mut r, 0)).collect()
    }

    /// Current, non-deleted resources of `rtype` carrying token `system|code` in `param`.
    pub fn find_by_token(
        &mut self,
        rtype: ResourceType,
        param: &str,
        system: &str,
        code: &str,
    ) -> Result<Vec<CurrentRow>, StoreError> {
        let sql = format!(
            "SELECT {CURRENT_COLS} FROM resource r WHERE r.rtype = $1 AND r.deleted = 0 AND r.id IN \
             (SELECT i.id FROM idx_token i WHERE i.rtype = $1 AND i.param = $2 AND i.code = $3 AND i.system = $4) ORDER BY r.id"
        );
        let rows = self
            .conn
            .query(&sql, &[Param::Text(rtype.as_str()), Param::Text(param), Param::Text(code), Param::Text(system)])?;
        rows.into_iter().map(|mut r| current_row(&mut r, 0)).collect()
    }

    /// A JP-CLINS Bundle submission by identifier.
    pub fn bundle_submission(&mut self, key: &str) -> Result<Option<BundleSubmission>, StoreError> {
        let rows = self.conn.query(
            "SELECT bundle_key, facility, kind, bundle_id, content_hash, received FROM bundle_submission WHERE bundle_key = $1",
            &[Param::Text(key)],
        )?;
        Ok(rows.first().map(|r| BundleSubmission {
            bundle_key: r.str(0).to_owned(),
            facility: r.str(1).to_owned(),
            kind: r.str(2).to_owned(),
            bundle_id: r.opt_str(3).map(str::to_owned),
            content_hash: r.str(4).to_owned(),
            received: r.i64(5),
        }))
    }

    /// The current, non-deleted resources that arrived in a Bundle submission.
    pub fn bundle_members(&mut self, key: &str) -> Result<Vec<CurrentRow>, StoreError> {
        let sql = format!(
            "SELECT {CURRENT_COLS} FROM resource r WHERE r.bundle_key = $1 AND r.deleted = 0 ORDER BY r.rtype, r.id"
        );
        let rows = self.conn.query(&sql, &[Param::Text(key)])?;
        rows.into_iter().map(|mut r| current_row(&mut r, 0)).collect()
    }

    /// The audit chain head.
    pub fn audit_head(&mut self) -> Result<(i64, String), StoreError> {
        let rows = self.conn.query("SELECT seq, hash FROM audit_head WHERE id = 1", &[])?;
        let r = rows.first().ok_or_else(|| StoreError::Corrupt("audit_head row is missing".into()))?;
        Ok((r.i64(0), r.str(1).to_owned()))
    }

    /// Audit records after `after_seq`, in order, for verification. A record whose query
    /// columns disagree with its hashed JSON is returned with its JSON marked so that the
    /// chain check fails on it (someone edited a column to hide an access).
    pub fn audit_page(&mut self, after_seq: i64, limit: i64) -> Result<Vec<StoredAudit>, StoreError> {
        let rows = self.conn.query(
            "SELECT seq, record, prev_hash, hash, agent, facility, patient_id, action, outcome, person_id FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[Param::I64(after_seq), Param::I64(limit)],
        )?;
        Ok(rows
            .into_iter()
            .map(|mut r| {
                let consistent = columns_match_record(&r);
                let mut record = r.take_str(1).unwrap_or_default();
                if !consistent {
                    record.push_str(" [query columns differ from the hashed record]");
                }
                StoredAudit { seq: r.i64(0), record, prev_hash: r.str(2).to_owned(), hash: r.str(3).to_owned() }
            })
            .collect())
    }

    /// Audit records matching `q`, newest first, with the total.
    pub fn audit_search(
        &mut self,
        q: &AuditQuery,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<(i64, String)>), StoreError> {
        let mut b = SqlBuilder::new();
        let w = q.build(&mut b);
        let total = self
            .conn
            .query(&format!("SELECT COUNT(*) FROM audit WHERE {w}"), &b.params())?
            .first()
            .map_or(0, |r| r.i64(0));
        let lp = b.int(limit);
        let op = b.int(offset);
        let rows = self.conn.query(
            &format!("SELECT seq, record FROM audit WHERE {w} ORDER BY seq DESC LIMIT {lp} OFFSET {op}"),
            &b.params(),
        )?;
        Ok((total, rows.into_iter().map(|mut r| (r.i64(0), r.take_str(1).unwrap_or_default())).collect()))
    }

    /// A token by its hash.
    pub fn token(&mut self, token_hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT token_hash, kind, facility, name, created, revoked, expires FROM api_token WHERE token_hash = $1",
            &[Param::Text(token_hash)],
        )?;
        Ok(rows.first().map(token_row))
    }

    /// Every token.
    pub fn tokens(&mut self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT token_hash, kind, facility, name, created, revoked, expires FROM api_token ORDER BY created",
            &[],
        )?;
        Ok(rows.iter().map(token_row).collect())
    }

    /// A setting.
    pub fn setting(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        let rows = self.conn.query("SELECT value FROM setting WHERE key = $1", &[Param::Text(key)])?;
        Ok(rows.first().map(|r| r.str(0).to_owned()))
    }

    /// Counts of current resources by type (for the operator and the demo).
    pub fn counts(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = self
            .conn
            .query("SELECT rtype, COUNT(*) FROM resource WHERE deleted = 0 GROUP BY rtype ORDER BY rtype", &[])?;
        Ok(rows.iter().map(|r| (r.str(0).to_owned(), r.i64(1))).collect())
    }
}

fn token_row(r: &Row) -> TokenRow {
    TokenRow {
        token_hash: r.str(0).to_owned(),
        kind: r.str(1).to_owned(),
        facility: r.opt_str(2).map(str::to_owned),
        name: r.str(3).to_owned(),
        created: r.i64(4),
        revoked: r.i64(5) != 0,
        expires: r.opt_i64(6),
    }
}

fn columns_match_record(r: &Row) -> bool {
    let Ok(rec) = serde_json::from_str::<musubi_domain::audit::AuditRecord>(r.str(1)) else {
        return false;
    };
    rec.agent.name == r.str(4)
        && rec.agent.facility.as_deref() == r.opt_str(5)
        && rec.patient.as_deref() == r.opt_str(6)
        && rec.action.code() == r.str(7)
        && rec.outcome.code() == r.str(8)
        && rec.person.as_deref().or(rec.patient.as_deref()) == r.opt_str(9)
}
