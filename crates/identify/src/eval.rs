//! Scoring a linkage against truth: pairwise precision, recall and F1.
//!
//! A *pair* is two source records put in the same person. Precision is the share of predicted
//! pairs that are true, recall the share of true pairs that were predicted. Computed from the
//! contingency table of (predicted person, true person) without listing pairs, so it costs
//! linear time on any number of records.

use serde::{Deserialize, Serialize};

use std::collections::HashMap;
use std::hash::BuildHasher;

use crate::features::{Map, new_map};
use crate::record::SourceKey;
use musubi_domain::FacilityCode;

/// Pairwise scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairwiseScores {
    /// Records scored (present in both the prediction and the truth).
    pub records: u64,
    /// Records of the prediction missing from the truth (not scored).
    pub missing_in_truth: u64,
    /// Records of the truth missing from the prediction (not scored).
    pub missing_in_prediction: u64,
    /// Predicted pairs.
    pub predicted_pairs: u64,
    /// True pairs.
    pub true_pairs: u64,
    /// Predicted pairs that are true.
    pub correct_pairs: u64,
    /// correct / predicted (1 when nothing was predicted).
    pub precision: f64,
    /// correct / true (1 when there is nothing to find).
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

fn pairs(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// Scores predicted labels against true labels, both keyed by source record. Labels are any
/// strings (person ids); only equality matters.
pub fn pairwise<'a, S: BuildHasher>(
    predicted: impl IntoIterator<Item = (&'a SourceKey, &'a str)>,
    truth: &HashMap<SourceKey, String, S>,
) -> PairwiseScores {
    let mut pred_label: Map<&str, u32> = new_map();
    let mut true_label: Map<&str, u32> = new_map();
    let mut pred_size: Map<u32, u64> = new_map();
    let mut true_size: Map<u32, u64> = new_map();
    let mut cell: Map<(u32, u32), u64> = new_map();
    let (mut records, mut missing) = (0u64, 0u64);
    let mut seen = 0u64;
    for (key, p) in predicted {
        let Some(t) = truth.get(key) else {
            missing += 1;
            continue;
        };
        seen += 1;
        let np = pred_label.len() as u32;
        let pi = *pred_label.entry(p).or_insert(np);
        let nt = true_label.len() as u32;
        let ti = *true_label.entry(t.as_str()).or_insert(nt);
        *pred_size.entry(pi).or_insert(0) += 1;
        *true_size.entry(ti).or_insert(0) += 1;
        *cell.entry((pi, ti)).or_insert(0) += 1;
        records += 1;
    }
    let predicted_pairs: u64 = pred_size.values().map(|n| pairs(*n)).sum();
    let true_pairs: u64 = true_size.values().map(|n| pairs(*n)).sum();
    let correct_pairs: u64 = cell.values().map(|n| pairs(*n)).sum();
    let precision = if predicted_pairs == 0 { 1.0 } else { correct_pairs as f64 / predicted_pairs as f64 };
    let recall = if true_pairs == 0 { 1.0 } else { correct_pairs as f64 / true_pairs as f64 };
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    PairwiseScores {
        records,
        missing_in_truth: missing,
        missing_in_prediction: (truth.len() as u64).saturating_sub(seen),
        predicted_pairs,
        true_pairs,
        correct_pairs,
        precision,
        recall,
        f1,
    }
}

/// Why a truth file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TruthError {
    /// A line is not `facility,local_id,person`.
    #[error("truth line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Reads a truth CSV `facility,local_id,person` (no header; a first line starting with
/// `facility` is taken as a header and skipped).
pub fn parse_truth(csv_bytes: &[u8]) -> Result<HashMap<SourceKey, String>, TruthError> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(csv_bytes);
    let mut out = HashMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i as u64 + 1;
        let rec = rec.map_err(|e| TruthError::Line { line, reason: e.to_string() })?;
        if rec.len() != 3 {
            return Err(TruthError::Line { line, reason: format!("{} fields, expected 3", rec.len()) });
        }
        let (f, l, p) = (&rec[0], &rec[1], &rec[2]);
        if line == 1 && f.trim() == "facility" {
            continue;
        }
        let facility: FacilityCode =
            f.parse().map_err(|e: musubi_domain::DomainError| TruthError::Line { line, reason: e.to_string() })?;
        out.insert(SourceKey::new(facility, l.trim()), p.trim().to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(l: &str) -> SourceKey {
        SourceKey::new("1311234567".parse().unwrap(), l)
    }

    #[test]
    fn scores_pairs() {
        let truth = parse_truth(
            b"facility,local_id,person\n1311234567,a,P1\n1311234567,b,P1\n1311234567,c,P1\n1311234567,d,P2\n",
        )
        .unwrap();
        // Predicted: {a,b} {c,d}: one correct pair (a,b), one wrong (c,d); true pairs 3.
        let pred = [(k("a"), "X"), (k("b"), "X"), (k("c"), "Y"), (k("d"), "Y")];
        let s = pairwise(pred.iter().map(|(k, p)| (k, *p)), &truth);
        assert_eq!((s.predicted_pairs, s.true_pairs, s.correct_pairs), (2, 3, 1));
        assert!((s.precision - 0.5).abs() < 1e-12);
        assert!((s.recall - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.f1 - 0.4).abs() < 1e-12);
        assert_eq!(s.records, 4);
    }

    #[test]
    fn bad_truth_lines() {
        assert!(matches!(parse_truth(b"1311234567,a\n"), Err(TruthError::Line { line: 1, .. })));
        assert!(matches!(parse_truth(b"1311234567,a,P\nxx,b,P\n"), Err(TruthError::Line { line: 2, .. })));
    }
}
