//! Failed authentications, counted in memory per (source address, kind, period) and written to
//! the audit chain as one summary record per count when its period is over.
//!
//! Writing one chained record per failure let anyone without credentials make the single audit
//! writer work for each guess (and store a login name of any length). A summary keeps what the
//! operator needs (who tried from where, how often, why it failed, which login names) at a cost
//! that does not grow with the attacker's rate. Failures that change an account's state (a
//! wrong password for a real account, counted for its lockout) are still written with that
//! change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use musubi_domain::audit::{AuditAction, AuditAgent, AuditOutcome, AuditPurpose, AuditRecord, cap_chars};

/// The length of a counting period (one summary per source, kind and period).
pub const PERIOD_MS: i64 = 60_000;
/// Login names kept per summary (the count says how many were tried).
const MAX_LOGINS: usize = 5;
/// Distinct (source, kind) pairs counted at once; past it new sources share one overflow key,
/// so a flood of addresses cannot grow the map without bound.
const MAX_KEYS: usize = 10_000;
/// Distinct reasons kept per summary.
const MAX_REASONS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    period: i64,
    address: Option<String>,
    kind: String,
}

#[derive(Debug, Default)]
struct Tally {
    count: u64,
    reasons: BTreeMap<String, u64>,
    logins: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Inner {
    tallies: HashMap<Key, Tally>,
    /// Summaries whose write failed, retried at the next flush (bounded).
    unwritten: Vec<AuditRecord>,
}

/// The counts of the current (and not yet written) periods.
#[derive(Debug, Default, Clone)]
pub(crate) struct FailedAuth {
    inner: Arc<Mutex<Inner>>,
}

impl FailedAuth {
    /// Counts one failure at `now` (epoch ms). Never blocks on the store.
    pub(crate) fn note(&self, now: i64, address: Option<String>, kind: &str, login: Option<&str>, reason: &str) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let map = &mut inner.tallies;
        let mut key = Key {
            period: now.div_euclid(PERIOD_MS) * PERIOD_MS,
            address: address.map(|a| cap_chars(&a, 64)),
            kind: cap_chars(kind, 32),
        };
        if map.len() >= MAX_KEYS && !map.contains_key(&key) {
            key.address = Some("(other sources)".into());
            key.kind = "any".into();
        }
        let t = map.entry(key).or_default();
        t.count += 1;
        let reason = cap_chars(reason, 120);
        if t.reasons.len() < MAX_REASONS || t.reasons.contains_key(&reason) {
            *t.reasons.entry(reason).or_default() += 1;
        }
        if let Some(l) = login
            && t.logins.len() < MAX_LOGINS
        {
            t.logins.insert(cap_chars(l, musubi_domain::audit::MAX_NAME_CHARS));
        }
    }

    /// Takes the tallies whose period ended at or before `now` (all of them when `now` is
    /// `i64::MAX`), as summary records.
    pub(crate) fn take_due(&self, now: i64, node: &str) -> Vec<AuditRecord> {
        let Ok(mut inner) = self.inner.lock() else { return Vec::new() };
        let map = &mut inner.tallies;
        let due: Vec<Key> = map.keys().filter(|k| k.period.saturating_add(PERIOD_MS) <= now).cloned().collect();
        let mut out: Vec<(Key, Tally)> = due.into_iter().filter_map(|k| map.remove(&k).map(|t| (k, t))).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        let mut records = std::mem::take(&mut inner.unwritten);
        records.extend(out.into_iter().map(|(k, t)| summary(&k, &t, now.min(k.period + PERIOD_MS), node)));
        records
    }

    /// Keeps summaries that could not be written, for the next flush (the oldest are dropped
    /// past a bound, with a log line, rather than growing without limit).
    pub(crate) fn restore(&self, records: Vec<AuditRecord>) {
        let Ok(mut inner) = self.inner.lock() else { return };
        inner.unwritten.extend(records);
        let over = inner.unwritten.len().saturating_sub(MAX_KEYS);
        if over > 0 {
            tracing::error!(dropped = over, "failed-authentication summaries could not be written and were dropped");
            inner.unwritten.drain(..over);
        }
    }
}

fn summary(k: &Key, t: &Tally, recorded: i64, node: &str) -> AuditRecord {
    let reasons: Vec<String> = t.reasons.iter().map(|(r, n)| format!("{r} x{n}")).collect();
    let from = musubi_fhir::datetime::format_instant(k.period.max(0));
    let text = format!(
        "{} failed authentication(s) in the {} s from {from}: {}",
        t.count,
        PERIOD_MS / 1000,
        reasons.join("; ")
    );
    AuditRecord {
        recorded,
        action: AuditAction::Execute,
        subtype: "login-failures".into(),
        outcome: AuditOutcome::SeriousFailure,
        outcome_text: Some(text),
        agent: AuditAgent {
            kind: k.kind.clone(),
            name: "unauthenticated".into(),
            facility: None,
            profession: None,
            address: k.address.clone(),
        },
        purpose: AuditPurpose::Operations,
        patient: None,
        person: None,
        entities: t.logins.iter().map(|l| format!("user/{l}")).collect(),
        query: None,
        source: node.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_per_source_kind_and_period() {
        let f = FailedAuth::default();
        let t0 = 1_800_000_000_000; // a period boundary
        for _ in 0..3 {
            f.note(t0 + 5, Some("10.0.0.1".into()), "user", Some("nobody"), "unknown login");
        }
        f.note(t0 + 6, Some("10.0.0.2".into()), "token", None, "invalid or revoked token");
        f.note(t0 + PERIOD_MS + 1, Some("10.0.0.1".into()), "user", Some(&"x".repeat(500)), "unknown login");
        assert!(f.take_due(t0 + PERIOD_MS - 1, "n").is_empty(), "the period is not over");
        let due = f.take_due(t0 + PERIOD_MS, "n");
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].agent.address.as_deref(), Some("10.0.0.1"));
        assert!(due[0].outcome_text.as_deref().unwrap().starts_with("3 failed"), "{:?}", due[0].outcome_text);
        assert_eq!(due[0].entities, vec!["user/nobody".to_owned()]);
        assert_eq!(due[1].agent.kind, "token");
        let rest = f.take_due(i64::MAX, "n");
        assert_eq!(rest.len(), 1);
        assert!(rest[0].entities[0].chars().count() <= 5 + musubi_domain::audit::MAX_NAME_CHARS);
    }

    #[test]
    fn the_map_stays_bounded() {
        let f = FailedAuth::default();
        for i in 0..(MAX_KEYS + 50) {
            f.note(0, Some(format!("10.{i}")), "token", None, "bad");
        }
        assert_eq!(f.inner.lock().unwrap().tallies.len(), MAX_KEYS + 1);
    }
}
