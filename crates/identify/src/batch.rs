//! Batch linking of a whole set of records (`musubi mpi rebuild`, the evaluation).
//!
//! 1. Train the model on the records (unless one is given).
//! 2. Generate candidate pairs from the blocking keys ([`crate::index`]): every pair of records
//!    sharing a key, deduplicated. The cost is the sum of squared block sizes, near-linear in the
//!    number of records because blocks stay small as the population grows.
//! 3. Score the pairs on all cores; keep those at or above the review threshold, and those with
//!    deterministic evidence (same insurance identity, an explicit cross-reference). An edge
//!    whose identifier the given name and birth date do not back, or whose strong fields
//!    conflict (`index::strong_conflict`), links nothing by itself and goes to review.
//! 4. Cluster greedily: deterministic edges first, then by weight, best first, joining two
//!    clusters only if no pair across them is a hard negative — a given-name conflict (twins),
//!    two local ids of one facility, or a weight below the chain floor. This keeps a chain
//!    A–B–C from joining strangers A and C through B.
//! 5. Pairs between the review and the link thresholds that ended in different clusters, and
//!    refused joins, form the review queue.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Model;
use crate::compare::compare;
use crate::features::{Features, Map, new_map};
use crate::index::{
    Hold, Index, IndexBuilder, PersonId, block_keys, given_conflict, person_consistent, same_insurance, strong_conflict,
};
use crate::model::{TermFrequencies, Weights, train};
use crate::record::{SourceKey, SourceRecord};

/// A pair an operator should look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewPair {
    /// One record.
    pub a: SourceKey,
    /// The other.
    pub b: SourceKey,
    /// Match weight.
    pub weight: f64,
    /// Why it was not linked.
    pub hold: Hold,
}

/// What a batch run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchReport {
    /// The model used (trained on the data unless one was given).
    pub model: Model,
    /// Records linked.
    pub records: u64,
    /// Persons found.
    pub persons: u64,
    /// Distinct candidate pairs compared.
    pub candidate_pairs: u64,
    /// Blocks too large to expand (see [`crate::LinkConfig::max_block`]).
    pub oversized_blocks: u64,
    /// Joins made (edges that merged two clusters).
    pub joins: u64,
    /// Joins refused by a guard.
    pub refused_joins: u64,
    /// The review queue, highest weight first.
    pub review: Vec<ReviewPair>,
    /// Seconds spent per phase: train, pairs, score, cluster, load.
    pub seconds: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Copy)]
struct Edge {
    i: u32,
    j: u32,
    w: f32,
    /// 2 = cross-reference, 1 = same insurance, 0 = probabilistic.
    det: u8,
    conflict: bool,
    /// Why the edge may not link by itself ([`Hold::IdentifierOnly`], [`Hold::StrongConflict`]).
    held: Option<Hold>,
}

/// What an edge's comparison allows: an identifier shared without the demographics agreeing
/// links nothing, nor do strong fields in conflict (unless a corroborated identifier is shared).
fn edge_hold(g: &crate::compare::Gamma, det: u8) -> Option<Hold> {
    let corroborated = person_consistent(g);
    if det > 0 && !corroborated {
        Some(Hold::IdentifierOnly)
    } else if det == 0 && strong_conflict(g) {
        Some(Hold::StrongConflict)
    } else {
        None
    }
}

impl IndexBuilder {
    /// Links everything pushed and returns the index and a report.
    pub fn finish(self) -> (Index, BatchReport) {
        let IndexBuilder { config, norm, feats, records } = self;
        let mut seconds = Vec::new();
        let t = Instant::now();
        let mut model = match &config.model {
            Some(m) => m.clone(),
            None => train(&feats, &norm.names, &config.train),
        };
        if let Some(th) = config.thresholds {
            model.thresholds = th;
        }
        seconds.push(("train".to_owned(), t.elapsed().as_secs_f64()));
        let weights = Weights::new(&model);
        let mut tf = TermFrequencies::default();
        for f in &feats {
            tf.add(f, 1);
        }

        let t = Instant::now();
        let (pairs, oversized) = candidate_pairs(&feats, config.max_block);
        seconds.push(("pairs".to_owned(), t.elapsed().as_secs_f64()));

        let t = Instant::now();
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            config.threads
        };
        let review_th = model.thresholds.review;
        let guards = config.evidence_guards;
        let chunk = pairs.len().div_ceil(threads.max(1)).max(1);
        let mut edges: Vec<Edge> = std::thread::scope(|s| {
            let handles: Vec<_> = pairs
                .chunks(chunk)
                .map(|part| {
                    let (feats, norm, weights, tf) = (&feats, &norm, &weights, &tf);
                    s.spawn(move || {
                        let mut out = Vec::new();
                        for &p in part {
                            let (i, j) = ((p >> 32) as u32, p as u32);
                            let (Some(a), Some(b)) = (feats.get(i as usize), feats.get(j as usize)) else { continue };
                            let g = compare(a, b, &norm.names);
                            let w = weights.weight(&g, a, b, tf);
                            let det = u8::from(same_insurance(&g));
                            if w >= review_th || det > 0 {
                                let held = if guards { edge_hold(&g, det) } else { None };
                                out.push(Edge { i, j, w: w as f32, det, conflict: given_conflict(&g), held });
                            }
                        }
                        out
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        });
        // Cross-references.
        let mut key_to_rec: Map<&SourceKey, u32> = new_map();
        for (i, (k, _)) in records.iter().enumerate() {
            key_to_rec.insert(k, i as u32);
        }
        for (i, (_, xrefs)) in records.iter().enumerate() {
            for x in xrefs {
                if let Some(&j) = key_to_rec.get(x)
                    && j != i as u32
                    && let (Some(a), Some(b)) = (feats.get(i), feats.get(j as usize))
                {
                    let g = compare(a, b, &norm.names);
                    let w = weights.weight(&g, a, b, &tf);
                    let (i, j) = if (i as u32) < j { (i as u32, j) } else { (j, i as u32) };
                    let held = if config.evidence_guards { edge_hold(&g, 2) } else { None };
                    edges.push(Edge { i, j, w: w as f32, det: 2, conflict: given_conflict(&g), held });
                }
            }
        }
        drop(key_to_rec);
        seconds.push(("score".to_owned(), t.elapsed().as_secs_f64()));

        let t = Instant::now();
        edges.sort_unstable_by(|a, b| {
            b.det.cmp(&a.det).then(b.w.total_cmp(&a.w)).then(a.i.cmp(&b.i)).then(a.j.cmp(&b.j))
        });
        let n = feats.len();
        let mut uf = UnionFind::new(n);
        let mut members: Vec<Vec<u32>> = (0..n as u32).map(|i| vec![i]).collect();
        let link_th = model.thresholds.link as f32;
        let mut joins = 0u64;
        let mut refused = 0u64;
        let mut review = Vec::new();
        for e in &edges {
            let linkable = (e.det > 0 || e.w >= link_th) && e.held.is_none();
            if !linkable {
                continue;
            }
            let (ra, rb) = (uf.find(e.i), uf.find(e.j));
            if ra == rb {
                continue;
            }
            let hold =
                guard(&members[ra as usize], &members[rb as usize], &feats, &records, &norm, &weights, &tf, &config);
            match hold {
                None => {
                    let root = uf.union(ra, rb);
                    let other = if root == ra { rb } else { ra };
                    let moved = std::mem::take(&mut members[other as usize]);
                    members[root as usize].extend(moved);
                    joins += 1;
                }
                Some(h) => {
                    refused += 1;
                    // Person-level conflicts are confident non-matches (twins, siblings) unless
                    // the two records share an insurance identity or a cross-reference.
                    if h != Hold::GivenNameConflict || e.det > 0 {
                        review.push((e.i, e.j, f64::from(e.w), h));
                    }
                }
            }
        }
        for e in &edges {
            if uf.find(e.i) == uf.find(e.j) {
                continue;
            }
            if let Some(h) = e.held {
                // A given-name conflict is a confident non-match unless an identifier is shared.
                if e.det > 0 || (!e.conflict && e.w >= review_th as f32) {
                    review.push((e.i, e.j, f64::from(e.w), h));
                }
            } else if e.det == 0 && !e.conflict && e.w < link_th {
                review.push((e.i, e.j, f64::from(e.w), Hold::Uncertain));
            }
        }
        drop(members);
        review.sort_by(|a, b| b.2.total_cmp(&a.2));
        let review: Vec<ReviewPair> = review
            .into_iter()
            .filter_map(|(i, j, w, hold)| {
                Some(ReviewPair {
                    a: records.get(i as usize)?.0.clone(),
                    b: records.get(j as usize)?.0.clone(),
                    weight: w,
                    hold,
                })
            })
            .collect();
        let cluster: Vec<u32> = (0..n as u32).map(|i| uf.find(i)).collect();
        seconds.push(("cluster".to_owned(), t.elapsed().as_secs_f64()));

        let t = Instant::now();
        let mut index = Index::with_model(model.clone(), config);
        index.norm = norm;
        index.load_clusters(records, feats, &cluster, None);
        seconds.push(("load".to_owned(), t.elapsed().as_secs_f64()));
        let stats = index.stats();
        let report = BatchReport {
            model,
            records: n as u64,
            persons: stats.persons as u64,
            candidate_pairs: pairs.len() as u64,
            oversized_blocks: oversized,
            joins,
            refused_joins: refused,
            review,
            seconds,
        };
        (index, report)
    }
}

/// Whether two clusters may join; the reason if not.
#[allow(clippy::too_many_arguments)]
fn guard(
    a: &[u32],
    b: &[u32],
    feats: &[Features],
    records: &[(SourceKey, Vec<SourceKey>)],
    norm: &crate::features::Normalizer,
    weights: &Weights,
    tf: &TermFrequencies,
    config: &crate::LinkConfig,
) -> Option<Hold> {
    let mut same_facility = None;
    for &x in a {
        for &y in b {
            let (Some(fx), Some(fy)) = (feats.get(x as usize), feats.get(y as usize)) else { continue };
            let g = compare(fx, fy, &norm.names);
            if given_conflict(&g) {
                return Some(Hold::GivenNameConflict);
            }
            if weights.weight(&g, fx, fy, tf) < config.chain_floor && !same_insurance(&g) {
                return Some(Hold::Uncertain);
            }
            if config.same_facility_guard
                && let (Some(kx), Some(ky)) = (records.get(x as usize), records.get(y as usize))
                && kx.0.facility == ky.0.facility
            {
                // Two ids of one facility: a duplicate registration if the two agree as a
                // person (reviewable), otherwise two members of one household.
                if person_consistent(&g) {
                    same_facility = Some(Hold::SameFacility);
                } else {
                    return Some(Hold::GivenNameConflict);
                }
            }
        }
    }
    same_facility
}

/// All distinct pairs of records sharing a blocking key (as `i << 32 | j`, `i < j`), and the
/// number of blocks skipped for being larger than `max_block`.
fn candidate_pairs(feats: &[Features], max_block: usize) -> (Vec<u64>, u64) {
    let mut keyed: Vec<(u64, u32)> = Vec::with_capacity(feats.len() * 8);
    let mut keys = Vec::with_capacity(12);
    for (i, f) in feats.iter().enumerate() {
        block_keys(f, &mut keys);
        keyed.extend(keys.iter().map(|k| (*k, i as u32)));
    }
    keyed.sort_unstable();
    let mut pairs: Vec<u64> = Vec::new();
    let mut oversized = 0;
    for group in keyed.chunk_by(|a, b| a.0 == b.0) {
        if group.len() > max_block {
            oversized += 1;
            continue;
        }
        for x in 0..group.len() {
            for y in x + 1..group.len() {
                let (i, j) = (group[x].1, group[y].1);
                let (i, j) = if i < j { (i, j) } else { (j, i) };
                pairs.push(u64::from(i) << 32 | u64::from(j));
            }
        }
    }
    drop(keyed);
    pairs.sort_unstable();
    pairs.dedup();
    (pairs, oversized)
}

struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind { parent: (0..n as u32).collect(), size: vec![1; n] }
    }
    fn find(&mut self, mut x: u32) -> u32 {
        while let Some(&p) = self.parent.get(x as usize) {
            if p == x {
                break;
            }
            let gp = self.parent.get(p as usize).copied().unwrap_or(p);
            if let Some(slot) = self.parent.get_mut(x as usize) {
                *slot = gp;
            }
            x = p;
        }
        x
    }
    fn union(&mut self, a: u32, b: u32) -> u32 {
        let (sa, sb) = (self.size[a as usize], self.size[b as usize]);
        let (root, child) = if sa >= sb { (a, b) } else { (b, a) };
        self.parent[child as usize] = root;
        self.size[root as usize] = sa + sb;
        root
    }
}

/// The result of [`link_all`]: each input record's person, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Linkage {
    /// `(record key, person)` in input order.
    pub assignments: Vec<(SourceKey, PersonId)>,
    /// The run's report.
    pub report: BatchReport,
}

/// Links a set of records in one batch (see the module documentation).
pub fn link_all(records: &[SourceRecord], config: &crate::LinkConfig) -> Linkage {
    let mut b = IndexBuilder::new(config.clone());
    b.push_all(records);
    let (index, report) = b.finish();
    let assignments = records.iter().filter_map(|r| Some((r.key.clone(), index.person_of(&r.key)?))).collect();
    Linkage { assignments, report }
}
