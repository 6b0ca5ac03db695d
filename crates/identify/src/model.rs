//! The Fellegi–Sunter model: for every field and level, `m` (the probability of that level
//! when the two records are the same person) and `u` (when they are not), the prior
//! probability that two random records match, and the two decision thresholds.
//!
//! A pair's *match weight* is `log2(λ/(1−λ)) + Σ log2(m/u)` over its comparison levels (a
//! missing value adds nothing); its match probability is `1 / (1 + 2^−weight)`.
//!
//! **Term frequencies.** Agreeing on a common name is weaker evidence than agreeing on a rare
//! one: for the name levels "kanji equal", "kana equal" and "kana equal phonetically" the `u`
//! of the level is replaced by the share of records carrying that value (`佐藤` ≈ 1.5 %,
//! `五十嵐` ≈ 0.05 %), as Splink's term-frequency adjustment does; the share is smoothed toward
//! the level's `u` while the index holds few records.
//!
//! **Estimation** (done by [`crate::IndexBuilder::finish`]) follows Splink's method:
//! 1. `u` from random pairs (almost all non-matches), counted per level over pairs where both
//!    values are present, with add-one smoothing;
//! 2. `m` by expectation–maximisation with `u` fixed, separately within two training blocks —
//!    pairs with the same birth date (estimating every field but the birth date) and pairs with
//!    the same kana name (estimating every field but the names) — so that no field's `m` is
//!    estimated from pairs selected on that field;
//! 3. the prior from the birth-date block: the expected number of matching pairs in that block
//!    divided by `m(birth date equal)` is the expected number of matching pairs overall.

use serde::{Deserialize, Serialize};

use crate::compare::{FIELDS, Field, Gamma, compare, name_level, pack, unpack};
use crate::features::{Features, Interner, Map, hash64, new_map};

/// The serialized model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Format version of this structure.
    pub format: u32,
    /// λ: the probability that two random records are the same person.
    pub prior: f64,
    /// Parameters per field, in [`Field::ALL`] order.
    pub fields: Vec<FieldParams>,
    /// Decision thresholds on the match weight.
    pub thresholds: Thresholds,
    /// How the parameters were obtained.
    pub trained_on: TrainSummary,
}

/// The m and u probabilities of one field's levels (index = level; level 0, missing, is
/// never weighed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldParams {
    /// The field.
    pub field: Field,
    /// Level labels.
    pub levels: Vec<String>,
    /// P(level | same person).
    pub m: Vec<f64>,
    /// P(level | different persons).
    pub u: Vec<f64>,
}

/// The two thresholds on the match weight: at or above `link` a pair links; below `review` it
/// stays apart; between, it goes to the review queue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Link at or above this weight.
    pub link: f64,
    /// Review at or above this weight (and below `link`).
    pub review: f64,
}

impl Default for Thresholds {
    /// Link at weight 4 (match probability ≈ 0.94), review from weight 0 (probability 0.5).
    ///
    /// Chosen on a synthetic region of 195,000 persons (seed 7), then checked on 142,000
    /// (seed 11): F1 is flat within 0.0003 for link thresholds from −4 to 6 and highest between
    /// 2 and 4; 4 leans to precision, since a wrong link shows one person's records to another's
    /// clinicians while a missed link only hides some history. Below weight 0 fewer than one
    /// pair in twenty is a true match, so review starts at 0.
    fn default() -> Self {
        Thresholds { link: 4.0, review: 0.0 }
    }
}

/// What the parameters were estimated from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Records.
    pub records: u64,
    /// Random pairs used for `u`.
    pub u_pairs: u64,
    /// Pairs in each EM training block (birth date, kana name).
    pub em_pairs: Vec<u64>,
    /// EM iterations run in each block.
    pub em_iterations: Vec<u32>,
}

/// Options of the estimation ([`crate::LinkConfig::train`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Seed of the random pair sample.
    pub seed: u64,
    /// Random pairs for `u`.
    pub u_pairs: usize,
    /// Largest training block used whole; larger blocks are sampled.
    pub max_block: usize,
    /// Maximum EM iterations per training block.
    pub max_iterations: u32,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions { seed: 0x4d55_5355_4249, u_pairs: 2_000_000, max_block: 400, max_iterations: 40 }
    }
}

/// Levels on which the term-frequency adjustment applies, per name field.
pub(crate) fn tf_level(level: u8) -> bool {
    matches!(level, name_level::KANJI | name_level::KANA | name_level::PHONETIC)
}

/// Term frequencies of names: records carrying each value, per name slot.
#[derive(Debug, Clone, Default)]
pub(crate) struct TermFrequencies {
    /// `[family kanji, given kanji, family phonetic kana, given phonetic kana]` per name symbol.
    counts: Vec<[u32; 4]>,
    pub total: u64,
}

impl TermFrequencies {
    pub(crate) fn add(&mut self, f: &Features, delta: i32) {
        let slots = [(0, f.family_kanji), (1, f.given_kanji), (2, f.family_phon), (3, f.given_phon)];
        for (slot, sym) in slots {
            if sym == 0 || sym == u32::MAX {
                continue;
            }
            let i = sym as usize;
            if self.counts.len() <= i {
                self.counts.resize(i + 1, [0; 4]);
            }
            if let Some(c) = self.counts.get_mut(i) {
                c[slot] = c[slot].saturating_add_signed(delta);
            }
        }
        self.total = self.total.saturating_add_signed(i64::from(delta));
    }

    fn count(&self, slot: usize, sym: u32) -> u32 {
        self.counts.get(sym as usize).map(|c| c[slot]).unwrap_or(0)
    }

    /// The share of records with this value, smoothed toward the level's average `u` while the
    /// index is small: `(count + K·u) / (total + K)` with K = 1,000 records, so that the first
    /// records of a new index do not make every name look unique (or universal).
    fn share(&self, slot: usize, sym: u32, u: f64) -> f64 {
        const K: f64 = 1000.0;
        (f64::from(self.count(slot, sym)) + K * u) / (self.total as f64 + K)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.counts.capacity() * 16
    }
}

/// Precomputed log2(m/u) per field and level.
#[derive(Debug, Clone)]
pub(crate) struct Weights {
    pub prior: f64,
    pub w: [[f64; 8]; FIELDS],
    pub log_m: [[f64; 8]; FIELDS],
    pub u: [[f64; 8]; FIELDS],
    pub thresholds: Thresholds,
}

impl Weights {
    pub(crate) fn new(model: &Model) -> Self {
        let mut w = [[0.0; 8]; FIELDS];
        let mut log_m = [[0.0; 8]; FIELDS];
        let mut us = [[1.0; 8]; FIELDS];
        for (fi, fp) in model.fields.iter().enumerate().take(FIELDS) {
            for l in 1..fp.m.len().min(8) {
                let m = fp.m[l].max(1e-12);
                let u = fp.u.get(l).copied().unwrap_or(1.0).max(1e-12);
                w[fi][l] = (m / u).log2();
                log_m[fi][l] = m.log2();
                us[fi][l] = u;
            }
        }
        let p = model.prior.clamp(1e-15, 1.0 - 1e-15);
        Weights { prior: (p / (1.0 - p)).log2(), w, log_m, u: us, thresholds: model.thresholds }
    }

    /// The match weight of a comparison vector between `a` and `b`, term-frequency adjusted.
    pub(crate) fn weight(&self, g: &Gamma, a: &Features, b: &Features, tf: &TermFrequencies) -> f64 {
        let mut s = self.prior;
        for (fi, &l) in g.iter().enumerate() {
            s += self.w[fi][l as usize & 7];
        }
        for (fi, kanji, both_kanji, phon, slot) in [
            (0usize, a.family_kanji, a.family_kanji != 0 && b.family_kanji != 0, a.family_phon, 0usize),
            (1, a.given_kanji, a.given_kanji != 0 && b.given_kanji != 0, a.given_phon, 1),
        ] {
            let l = g[fi];
            if tf_level(l) {
                let u = self.u[fi][l as usize];
                // An exact level reached on the kana alone weighs by the kana's frequency.
                let share = if l == name_level::KANJI && both_kanji {
                    tf.share(slot, kanji, u)
                } else {
                    tf.share(slot + 2, phon, u)
                };
                // Replace log2(m/u) by log2(m/share).
                s += -self.w[fi][l as usize] + self.log_m[fi][l as usize] - share.log2();
            }
        }
        s
    }
}

/// Match probability of a weight.
pub fn probability(weight: f64) -> f64 {
    1.0 / (1.0 + (-weight).exp2())
}

impl Model {
    /// A model with hand-set parameters (what the estimation starts from). Useful before any data
    /// exists; a trained model is much better.
    pub fn initial() -> Model {
        let fields = Field::ALL
            .iter()
            .map(|&f| {
                let (m, u): (&[f64], &[f64]) = match f {
                    Field::FamilyName | Field::GivenName => {
                        (&[0.0, 0.85, 0.05, 0.05, 0.03, 0.01, 0.01], &[0.0, 0.005, 0.001, 0.002, 0.01, 0.972, 0.01])
                    }
                    Field::BirthDate => (&[0.0, 0.98, 0.005, 0.01, 0.005], &[0.0, 0.00004, 0.0002, 0.001, 0.99876]),
                    Field::Sex => (&[0.0, 0.999, 0.001], &[0.0, 0.5, 0.5]),
                    Field::Address => (&[0.0, 0.6, 0.05, 0.15, 0.1, 0.1], &[0.0, 1e-6, 1e-4, 0.05, 0.3, 0.65]),
                    Field::PostalCode => (&[0.0, 0.6, 0.2, 0.2], &[0.0, 0.0001, 0.01, 0.99]),
                    Field::Phone => (&[0.0, 0.5, 0.5], &[0.0, 1e-5, 0.99999]),
                    Field::Insurance => (&[0.0, 0.6, 0.001, 0.1, 0.299], &[0.0, 1e-7, 1e-6, 0.05, 0.95]),
                };
                FieldParams {
                    field: f,
                    levels: f.levels().iter().map(|s| (*s).to_owned()).collect(),
                    m: m.to_vec(),
                    u: u.to_vec(),
                }
            })
            .collect();
        Model { format: 1, prior: 1e-6, fields, thresholds: Thresholds::default(), trained_on: TrainSummary::default() }
    }

    /// The model as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a model written by [`Model::to_json`], checking its shape.
    pub fn from_json(s: &str) -> Result<Model, ModelError> {
        let m: Model = serde_json::from_str(s).map_err(|e| ModelError::Json(e.to_string()))?;
        if m.fields.len() != FIELDS {
            return Err(ModelError::Shape(format!("{} fields, expected {FIELDS}", m.fields.len())));
        }
        for (fp, f) in m.fields.iter().zip(Field::ALL) {
            let n = f.levels().len();
            if fp.field != f || fp.m.len() != n || fp.u.len() != n {
                return Err(ModelError::Shape(format!("field {} must have {n} levels", f.name())));
            }
            if fp.m.iter().chain(&fp.u).any(|p| !(0.0..=1.0).contains(p)) {
                return Err(ModelError::Shape(format!("field {}: probabilities must be in 0..=1", f.name())));
            }
        }
        if !(m.prior > 0.0 && m.prior < 1.0) {
            return Err(ModelError::Shape("prior must be in (0, 1)".into()));
        }
        Ok(m)
    }

    /// The weight log2(m/u) of a field's level (without term-frequency adjustment).
    pub fn level_weight(&self, field: Field, level: u8) -> f64 {
        let fp = &self.fields[field.index()];
        let l = level as usize;
        match (fp.m.get(l), fp.u.get(l)) {
            (Some(m), Some(u)) if l > 0 => (m.max(1e-12) / u.max(1e-12)).log2(),
            _ => 0.0,
        }
    }
}

/// Why a model could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// Not valid JSON for a model.
    #[error("model JSON: {0}")]
    Json(String),
    /// Valid JSON of the wrong shape.
    #[error("model shape: {0}")]
    Shape(String),
}

/// A small deterministic generator (SplitMix64) for sampling pairs.
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix(seed)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

/// Estimates a model from records' features (see the module documentation).
pub(crate) fn train(feats: &[Features], names: &Interner, opts: &TrainOptions) -> Model {
    let mut model = Model::initial();
    let n = feats.len();
    model.trained_on.records = n as u64;
    if n < 2 {
        return model;
    }
    // 1. u from random pairs, sampled on two threads with their own fixed seeds (the result
    //    does not depend on the machine).
    let mut ucount = [[0u64; 8]; FIELDS];
    let pairs = opts.u_pairs.min(n * (n - 1) / 2).max(1);
    let halves = [pairs / 2, pairs - pairs / 2];
    let counts: Vec<[[u64; 8]; FIELDS]> = std::thread::scope(|s| {
        let hs: Vec<_> = halves
            .iter()
            .enumerate()
            .map(|(t, &count)| {
                s.spawn(move || {
                    let mut rng = SplitMix::new(opts.seed ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9));
                    let mut c = [[0u64; 8]; FIELDS];
                    for _ in 0..count {
                        let i = rng.below(n);
                        let mut j = rng.below(n);
                        if j == i {
                            j = (j + 1) % n;
                        }
                        let g = compare(&feats[i], &feats[j], names);
                        for (fi, &l) in g.iter().enumerate() {
                            c[fi][l as usize & 7] += 1;
                        }
                    }
                    c
                })
            })
            .collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for c in counts {
        for fi in 0..FIELDS {
            for l in 0..8 {
                ucount[fi][l] += c[fi][l];
            }
        }
    }
    model.trained_on.u_pairs = pairs as u64;
    for (fp, counts) in model.fields.iter_mut().zip(&ucount) {
        let levels = fp.u.len();
        let present: u64 = counts.iter().take(levels).skip(1).sum();
        for (u, c) in fp.u.iter_mut().zip(counts).skip(1) {
            *u = (*c as f64 + 1.0) / (present as f64 + (levels - 1) as f64);
        }
    }

    // 2. m by EM within training blocks.
    let blocks: [TrainingBlock; 2] = [
        (&[Field::BirthDate], |f| (f.birth != 0).then_some(u64::from(f.birth))),
        (&[Field::FamilyName, Field::GivenName], |f| {
            (f.family_phon != 0 && f.given_phon != 0).then(|| hash64(&(f.family_phon, f.given_phon)))
        }),
    ];
    let mut m_sum = [[0.0f64; 8]; FIELDS];
    let mut m_n = [0u32; FIELDS];
    let mut birth_block: Option<(f64, f64)> = None; // (expected matches, pairs)
    for (bi, (fixed, key)) in blocks.iter().enumerate() {
        let (patterns, total_pairs) = block_patterns(feats, names, *key, opts.max_block, opts.seed ^ bi as u64);
        model.trained_on.em_pairs.push(total_pairs);
        let free: Vec<usize> = Field::ALL.iter().filter(|f| !fixed.contains(f)).map(|f| f.index()).collect();
        let (m, lambda, iters) = em(&model, &patterns, &free, opts.max_iterations);
        model.trained_on.em_iterations.push(iters);
        for &fi in &free {
            for l in 0..8 {
                m_sum[fi][l] += m[fi][l];
            }
            m_n[fi] += 1;
        }
        if bi == 0 {
            birth_block = Some((lambda * total_pairs as f64, total_pairs as f64));
        }
    }
    for ((fp, sums), &k) in model.fields.iter_mut().zip(&m_sum).zip(&m_n) {
        if k > 0 {
            for (m, sum) in fp.m.iter_mut().zip(sums).skip(1) {
                *m = (sum / f64::from(k)).max(1e-9);
            }
        }
    }
    // 3. The prior.
    if let Some((expected, _)) = birth_block {
        let m_birth = model.fields[Field::BirthDate.index()].m[1].max(1e-6);
        let total_pairs = n as f64 * (n as f64 - 1.0) / 2.0;
        let matches = (expected / m_birth).max(1.0);
        model.prior = (matches / total_pairs).clamp(1e-15, 0.5);
    }
    model
}

/// A training block: the fields it fixes (not estimated there) and its key.
type TrainingBlock = (&'static [Field], fn(&Features) -> Option<u64>);

/// Pairs per training block beyond which blocks are sampled.
const MAX_EM_PAIRS: u64 = 2_000_000;

/// Comparison-vector counts of the pairs inside blocks of `key` (sampling blocks larger than
/// `max_block`), and the number of pairs in all blocks.
fn block_patterns(
    feats: &[Features],
    names: &Interner,
    key: fn(&Features) -> Option<u64>,
    max_block: usize,
    seed: u64,
) -> (Map<u32, f64>, u64) {
    let mut keyed: Vec<(u64, u32)> =
        feats.iter().enumerate().filter_map(|(i, f)| key(f).map(|k| (k, i as u32))).collect();
    keyed.sort_unstable();
    let mut patterns: Map<u32, f64> = new_map();
    let mut total: u64 = 0;
    let mut rng = SplitMix::new(seed);
    // Past a few million pairs EM gains nothing: keep each block with a probability that
    // brings the expected count down to about that, and weigh kept blocks up to stand for the rest.
    let all_pairs: u64 = keyed.chunk_by(|a, b| a.0 == b.0).map(|g| (g.len() * (g.len() - 1) / 2) as u64).sum();
    let keep = (MAX_EM_PAIRS as f64 / all_pairs.max(1) as f64).min(1.0);
    for group in keyed.chunk_by(|a, b| a.0 == b.0) {
        let k = group.len();
        if k < 2 {
            continue;
        }
        let block_pairs = (k * (k - 1) / 2) as u64;
        total += block_pairs;
        if keep < 1.0 && (rng.next() as f64 / u64::MAX as f64) >= keep {
            continue;
        }
        let scale_keep = 1.0 / keep;
        if k <= max_block {
            for x in 0..k {
                for y in x + 1..k {
                    let g = compare(&feats[group[x].1 as usize], &feats[group[y].1 as usize], names);
                    *patterns.entry(pack(&g)).or_insert(0.0) += scale_keep;
                }
            }
        } else {
            // Sample as many pairs as a max_block block has, each standing for several.
            let samples = max_block * (max_block - 1) / 2;
            let scale = block_pairs as f64 / samples as f64 * scale_keep;
            for _ in 0..samples {
                let x = rng.below(k);
                let mut y = rng.below(k);
                if y == x {
                    y = (y + 1) % k;
                }
                let g = compare(&feats[group[x].1 as usize], &feats[group[y].1 as usize], names);
                *patterns.entry(pack(&g)).or_insert(0.0) += scale;
            }
        }
    }
    (patterns, total)
}

/// EM with `u` fixed, updating `m` of the `free` fields and λ.
fn em(model: &Model, patterns: &Map<u32, f64>, free: &[usize], max_iter: u32) -> ([[f64; 8]; FIELDS], f64, u32) {
    let mut m = [[0.0f64; 8]; FIELDS];
    let mut u = [[1.0f64; 8]; FIELDS];
    for (fi, fp) in model.fields.iter().enumerate() {
        for l in 1..fp.m.len() {
            m[fi][l] = fp.m[l];
            u[fi][l] = fp.u[l];
        }
    }
    let mut pats: Vec<(Gamma, f64)> = patterns.iter().map(|(p, c)| (unpack(*p), *c)).collect();
    pats.sort_by_key(|(g, _)| pack(g));
    let total: f64 = pats.iter().map(|(_, c)| c).sum();
    if total <= 0.0 {
        return (m, 0.0, 0);
    }
    let mut lambda = 0.1;
    let mut iters = 0;
    for it in 0..max_iter {
        iters = it + 1;
        let mut acc = [[0.0f64; 8]; FIELDS];
        let mut acc_present = [0.0f64; FIELDS];
        let mut matches = 0.0;
        for (g, c) in &pats {
            let mut pm = lambda;
            let mut pu = 1.0 - lambda;
            for &fi in free {
                let l = g[fi] as usize;
                if l > 0 {
                    pm *= m[fi][l];
                    pu *= u[fi][l];
                }
            }
            let r = if pm + pu > 0.0 { pm / (pm + pu) } else { 0.0 };
            let w = r * c;
            matches += w;
            for &fi in free {
                let l = g[fi] as usize;
                if l > 0 {
                    acc[fi][l] += w;
                    acc_present[fi] += w;
                }
            }
        }
        let new_lambda = (matches / total).clamp(1e-9, 1.0 - 1e-9);
        let mut delta: f64 = (new_lambda - lambda).abs();
        lambda = new_lambda;
        for &fi in free {
            if acc_present[fi] > 0.0 {
                let levels = model.fields[fi].m.len();
                for l in 1..levels {
                    // A small pseudo-count keeps levels never seen among matches from weighing
                    // minus infinity.
                    let v = (acc[fi][l] + 0.01) / (acc_present[fi] + 0.01 * (levels - 1) as f64);
                    delta = delta.max((v - m[fi][l]).abs());
                    m[fi][l] = v;
                }
            }
        }
        if delta < 1e-6 {
            break;
        }
    }
    (m, lambda, iters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_shape_checks() {
        let m = Model::initial();
        let back = Model::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
        let mut bad = m.clone();
        bad.fields.pop();
        assert!(matches!(Model::from_json(&bad.to_json()), Err(ModelError::Shape(_))));
        assert!(matches!(Model::from_json("{"), Err(ModelError::Json(_))));
    }

    #[test]
    fn probability_of_weight() {
        assert!((probability(0.0) - 0.5).abs() < 1e-12);
        assert!((probability(10.0) - 0.999_024).abs() < 1e-5);
    }
}
