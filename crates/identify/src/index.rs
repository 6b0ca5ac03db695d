//! The master patient index: source records grouped into persons, in memory, incremental.
//!
//! - [`Index::add`] decides for one new or changed record: link to a person, send to review
//!   with candidates, or start a new person ([`Decision`]).
//! - [`IndexBuilder`] links a whole set at once (`musubi mpi rebuild`): it trains the model on
//!   the data, scores all blocked pairs, and clusters them (see [`crate::batch`]).
//! - [`Index::merge`], [`Index::split`] and [`Index::keep_apart`] are the operator's decisions.
//!
//! **Blocking.** A record is compared only with records sharing at least one blocking key:
//! the birth date with one of (given kana, given kanji, family kana, family kanji, postal
//! code); the kana name (phonetic family + given) and the kanji name (folded) each with the
//! birth year, and again with the birth month and day; each phone number; each insurance card's
//! 保険者番号・記号・番号 (without 枝番, so a family member is seen too); the given-name kana
//! with the full address. Every key combines values that together are rare, so blocks stay
//! small as the population grows (measured on synthetic regions: 3.4 candidate pairs per
//! record at 400,000 records, 8.7 at 3 million). Each key is a 64-bit hash in one posting
//! table (a hash map from key to the head of a linked list of records), so the index costs about
//! eight bytes per record and key, and a lookup touches only the records of its blocks.
//!
//! **Person ids** ([`PersonId`]) are UUID v5 values in a Musubi namespace computed from a
//! source key: a person created by [`Index::add`] takes the id of the record that created it;
//! a batch-built person takes the id of the smallest source key (facility code, then local id)
//! among its records, so the same clustering always gives the same ids. A person keeps its id as
//! records join or leave; a merge keeps the id of the larger person (ties: the smaller id) and
//! retires the other; a split-off record starts a person with its own key's id.

use std::fmt;

use musubi_domain::FacilityCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::compare::{FIELDS, Field, Gamma, compare, name_level};
use crate::features::{Features, Hasher, Map, Normalizer, hash64, new_map};
use crate::model::{Model, TermFrequencies, Thresholds, TrainOptions, Weights, probability};
use crate::record::{SourceKey, SourceRecord};

/// The namespace of person ids (UUID v5).
pub const PERSON_NAMESPACE: Uuid = Uuid::from_u128(0x6d75_7375_6269_4d50_4900_0000_0000_0001);

/// A person: a stable id for the records judged to be one human being.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PersonId(pub Uuid);

impl PersonId {
    /// The id a person founded by (or anchored at) `key` gets: UUID v5 of `facility|local_id`.
    pub fn for_key(key: &SourceKey) -> PersonId {
        PersonId(Uuid::new_v5(&PERSON_NAMESPACE, key.to_string().as_bytes()))
    }
}

impl fmt::Display for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a record was linked to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkReason {
    /// The same insurance identity (保険者番号・記号・番号・枝番, normalized).
    Insurance,
    /// The sender named the other facility's record (a cross-reference).
    CrossReference,
    /// The match weight reached the link threshold.
    Probabilistic,
}

/// Why a candidate was not linked automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    /// The weight is between the review and the link thresholds.
    Uncertain,
    /// The given names differ outright (twins and siblings look like this).
    GivenNameConflict,
    /// The person already has another record of the same facility.
    SameFacility,
    /// An operator said these records are different persons.
    KeptApart,
    /// Several persons qualify; linking to one would be a guess.
    Ambiguous,
    /// The link would rest only on an identifier the writer supplied (another facility's local
    /// id as a cross-reference, an insurance id) without the demographics agreeing (given name
    /// and birth date): anyone can copy an identifier, so an operator decides.
    IdentifierOnly,
    /// Strong fields conflict (another prefecture and another insurer, or no phone in common):
    /// namesakes living elsewhere look like this, however equal the name and birth date.
    StrongConflict,
}

/// A person the record may belong to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The person.
    pub person: PersonId,
    /// The record of that person that agrees best.
    pub record: SourceKey,
    /// Match weight against that record.
    pub weight: f64,
    /// Match probability (from the weight).
    pub probability: f64,
    /// The comparison levels against that record, by field.
    pub levels: Vec<(Field, String)>,
    /// Deterministic evidence, if any.
    pub deterministic: Option<LinkReason>,
    /// Why it was not linked automatically, if it was not.
    pub hold: Option<Hold>,
}

/// The decision for one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Linked to an existing person.
    Linked {
        /// The person.
        person: PersonId,
        /// Why.
        reason: LinkReason,
        /// The best candidate (the evidence).
        evidence: Box<Candidate>,
    },
    /// Kept as its own (new) person, but possibly the same as the candidates: an operator
    /// should decide.
    Review {
        /// The provisional person of the record.
        person: PersonId,
        /// Candidates, best first.
        candidates: Vec<Candidate>,
    },
    /// A new person (no candidate reached the review threshold).
    NewPerson {
        /// The new person.
        person: PersonId,
    },
}

impl Decision {
    /// The person the record now belongs to.
    pub fn person(&self) -> PersonId {
        match self {
            Decision::Linked { person, .. } | Decision::Review { person, .. } | Decision::NewPerson { person } => {
                *person
            }
        }
    }
}

/// Options of linking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkConfig {
    /// A model to use; `None` trains one on the data ([`IndexBuilder`]) or uses
    /// [`Model::initial`] ([`Index::new`]).
    pub model: Option<Model>,
    /// Thresholds to use instead of the model's.
    pub thresholds: Option<Thresholds>,
    /// Training options.
    pub train: TrainOptions,
    /// Two records of one facility are never linked automatically (a facility registers a
    /// person once; duplicates within a facility go to review).
    pub same_facility_guard: bool,
    /// A batch merge of two clusters is refused if any pair across them weighs less than this
    /// (guards against chaining strangers through a third record).
    pub chain_floor: f64,
    /// Blocks larger than this are not expanded into pairs in batch mode, and only their most
    /// recent records are scanned online (a safeguard against degenerate keys like a shared
    /// dummy phone number).
    pub max_block: usize,
    /// Worker threads for batch scoring (0 = available parallelism).
    pub threads: usize,
    /// The evidence guards: an identifier the demographics do not back ([`Hold::IdentifierOnly`])
    /// and strong fields in conflict ([`Hold::StrongConflict`]) never link automatically. Off
    /// only to measure what they cost and save (`mpi-eval --no-guards`).
    #[serde(default = "yes")]
    pub evidence_guards: bool,
}

fn yes() -> bool {
    true
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            model: None,
            thresholds: None,
            train: TrainOptions::default(),
            same_facility_guard: true,
            chain_floor: -10.0,
            max_block: 5000,
            threads: 0,
            evidence_guards: true,
        }
    }
}

/// Why an operator action failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// No such person.
    #[error("person {0} is not in the index")]
    UnknownPerson(PersonId),
    /// No such source record.
    #[error("source record {0} is not in the index")]
    UnknownRecord(SourceKey),
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeOutcome {
    /// The surviving person.
    pub survivor: PersonId,
    /// The retired person id (now part of the survivor).
    pub retired: PersonId,
}

/// Blocking keys of a record (tagged by rule so rules never collide).
pub(crate) fn block_keys(f: &Features, out: &mut Vec<u64>) {
    out.clear();
    if f.birth != 0 {
        // The birth date alone makes blocks of N/36,500 records; paired with one other value
        // the blocks stay tiny while any single name change (marriage) or missing kana is
        // still caught by another pair.
        for (tag, v) in
            [(1u8, f.given_phon), (2, f.given_kanji), (3, f.family_phon), (4, f.family_kanji), (5, f.postal)]
        {
            if v != 0 && v != u32::MAX {
                out.push(hash64(&(tag, f.birth, v)));
            }
        }
    }
    // Names alone make blocks that grow with the population (佐藤 浩 is thousands of records
    // in a million), so the name keys carry half of the birth date each: a mistyped birth
    // date changes either the year or the month and day, so one of the two keys still holds.
    let (year, month_day) = (f.birth / 10_000, f.birth % 10_000);
    if f.family_phon != 0 && f.given_phon != 0 {
        out.push(hash64(&(6u8, f.family_phon, f.given_phon, year)));
        out.push(hash64(&(7u8, f.family_phon, f.given_phon, month_day)));
    }
    if f.family_kanji != 0 && f.given_kanji != 0 {
        out.push(hash64(&(11u8, f.family_kanji, f.given_kanji, year)));
        out.push(hash64(&(12u8, f.family_kanji, f.given_kanji, month_day)));
    }
    for p in f.phones.iter().filter(|p| **p != 0) {
        out.push(hash64(&(8u8, *p)));
    }
    for i in f.insurance.iter() {
        out.push(hash64(&(9u8, i.household)));
    }
    // The given name at the same address (a married name with a mistyped birth date).
    if f.given_phon != 0 && f.addr != 0 && f.addr != u32::MAX {
        out.push(hash64(&(10u8, f.given_phon, f.addr)));
    }
    out.sort_unstable();
    out.dedup();
}

/// A person-level conflict, a hard stop for automatic linking whatever else agrees:
/// - the given names differ outright (the kana of both differ, not even one character off):
///   twins look exactly like this, with the same family name, address, birth date and
///   insurance card but for the 枝番;
/// - or the given names are not the same and either the birth dates differ beyond a typo or
///   the sexes differ: siblings of one household share every household field (address, phone,
///   insurance household) and would otherwise add up to a link;
/// - or both the birth dates (beyond a typo) and the sexes differ, whatever the names.
pub(crate) fn given_conflict(g: &Gamma) -> bool {
    let given = g[Field::GivenName.index()];
    let birth = g[Field::BirthDate.index()];
    let sex = g[Field::Sex.index()];
    let given_differs = matches!(given, name_level::FUZZY | name_level::DIFFERENT | name_level::KANJI_ONLY_DIFFERENT);
    given == name_level::DIFFERENT || (given_differs && (birth == 4 || sex == 2)) || (birth == 4 && sex == 2)
}

/// The two records agree as a person: the given names are the same (kanji, kana or phonetic
/// kana) and the birth dates equal or within a typo.
pub(crate) fn person_consistent(g: &Gamma) -> bool {
    matches!(g[Field::GivenName.index()], name_level::KANJI | name_level::KANA | name_level::PHONETIC)
        && matches!(g[Field::BirthDate.index()], 1..=3)
}

/// Whether the strong fields of two records conflict, which keeps a pair from being linked
/// automatically however equal the name and birth date (people with the same name and birth
/// date — 同姓同名・同生年月日 — are common in a nation of 120 million): they live in other
/// prefectures **and** their cards are of other insurers (not even the same 保険者番号), and no
/// phone number is in common; or their birth dates differ beyond a typo (one digit, two
/// digits swapped), whatever else agrees — one household can hold two people of the same name
/// (a grandparent and a grandchild), and the synthetic regions show exactly these as the wrong
/// links left once namesakes elsewhere are held.
///
/// A phone difference alone is no conflict: a desk writes the mobile or the landline, so one
/// person's records differ in phone often (measured with `mpi-eval`, BENCHMARKS.md §5: making a
/// phone difference a conflict sent 0.5 % of the true pairs to review, for fewer wrong links
/// kept out than the birth-date rule keeps out at no cost). A move to another prefecture alone,
/// or a new insurer alone (a job change, 後期高齢者 at 75), is ordinary life too.
pub(crate) fn strong_conflict(g: &Gamma) -> bool {
    let other_prefecture = g[Field::Address.index()] == 5;
    let other_insurer = g[Field::Insurance.index()] == 4;
    let same_phone = g[Field::Phone.index()] == 1;
    let other_birth = g[Field::BirthDate.index()] == 4;
    (other_prefecture && other_insurer && !same_phone) || other_birth
}

/// The same insurance identity on both records.
pub(crate) fn same_insurance(g: &Gamma) -> bool {
    g[Field::Insurance.index()] == 1
}

/// Posting lists: block key → records, as linked lists in one vector.
#[derive(Debug, Clone, Default)]
pub(crate) struct Postings {
    heads: Map<u64, u32>,
    /// (record, next entry or u32::MAX)
    entries: Vec<(u32, u32)>,
    free: Vec<u32>,
}

const NIL: u32 = u32::MAX;

impl Postings {
    fn new() -> Self {
        Postings { heads: new_map(), entries: Vec::new(), free: Vec::new() }
    }

    fn insert(&mut self, key: u64, rec: u32) {
        let next = self.heads.get(&key).copied().unwrap_or(NIL);
        let e = match self.free.pop() {
            Some(slot) => {
                if let Some(x) = self.entries.get_mut(slot as usize) {
                    *x = (rec, next);
                }
                slot
            }
            None => {
                self.entries.push((rec, next));
                (self.entries.len() - 1) as u32
            }
        };
        self.heads.insert(key, e);
    }

    fn remove(&mut self, key: u64, rec: u32) {
        let Some(&head) = self.heads.get(&key) else { return };
        let mut prev = NIL;
        let mut cur = head;
        while cur != NIL {
            let Some(&(r, next)) = self.entries.get(cur as usize) else { return };
            if r == rec {
                if prev == NIL {
                    if next == NIL {
                        self.heads.remove(&key);
                    } else {
                        self.heads.insert(key, next);
                    }
                } else if let Some(p) = self.entries.get_mut(prev as usize) {
                    p.1 = next;
                }
                self.free.push(cur);
                return;
            }
            prev = cur;
            cur = next;
        }
    }

    /// Records of a block, most recent first, at most `limit`.
    fn for_each(&self, key: u64, limit: usize, mut f: impl FnMut(u32)) {
        let mut cur = self.heads.get(&key).copied().unwrap_or(NIL);
        let mut n = 0;
        while cur != NIL && n < limit {
            let Some(&(r, next)) = self.entries.get(cur as usize) else { return };
            f(r);
            cur = next;
            n += 1;
        }
    }

    fn heap_bytes(&self) -> usize {
        self.heads.capacity() * (8 + 4 + 1) + self.entries.capacity() * 8 + self.free.capacity() * 4
    }
}

/// Source keys stored compactly: facility codes in one vector, local ids in one string.
#[derive(Debug, Clone, Default)]
struct KeyArena {
    facilities: Vec<FacilityCode>,
    ends: Vec<u32>,
    text: String,
}

impl KeyArena {
    fn push(&mut self, k: &SourceKey) {
        self.facilities.push(k.facility);
        self.text.push_str(&k.local_id);
        self.ends.push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
    }

    fn get(&self, r: u32) -> Option<(FacilityCode, &str)> {
        let i = r as usize;
        let start = if i == 0 { 0 } else { *self.ends.get(i - 1)? as usize };
        let end = *self.ends.get(i)? as usize;
        Some((*self.facilities.get(i)?, self.text.get(start..end)?))
    }

    fn heap_bytes(&self) -> usize {
        self.facilities.capacity() * std::mem::size_of::<FacilityCode>()
            + self.ends.capacity() * 4
            + self.text.capacity()
    }
}

#[derive(Debug, Clone)]
struct PersonSlot {
    id: PersonId,
    members: Vec<u32>,
}

/// The in-memory index. See the module documentation.
#[derive(Debug, Clone)]
pub struct Index {
    pub(crate) model: Model,
    pub(crate) weights: Weights,
    pub(crate) config: LinkConfig,
    pub(crate) norm: Normalizer,
    pub(crate) tf: TermFrequencies,
    pub(crate) feats: Vec<Features>,
    keys: KeyArena,
    /// hash of the key → record; exact keys of colliding hashes in `key_collisions`.
    key_index: Map<u64, u32>,
    key_collisions: Map<SourceKey, u32>,
    /// Person slot of each record (NIL = removed).
    rec_person: Vec<u32>,
    persons: Vec<PersonSlot>,
    free_persons: Vec<u32>,
    person_index: Map<PersonId, u32>,
    postings: Postings,
    /// Records that name a key as a cross-reference: hash of the named key → records.
    refs: Map<u64, Vec<u32>>,
    /// Cross-references of each record (hashes), for removal.
    rec_refs: Map<u32, Vec<(u64, SourceKey)>>,
    /// Operator decisions "not the same person", as ordered pairs of source-key hashes (so
    /// they survive a record being re-sent).
    kept_apart: std::collections::HashSet<(u64, u64), Hasher>,
    live: usize,
}

/// Size of an index (for capacity planning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStats {
    /// Source records.
    pub records: usize,
    /// Persons.
    pub persons: usize,
    /// Distinct blocking keys.
    pub block_keys: usize,
    /// Estimated heap bytes of the index structures.
    pub heap_bytes: usize,
}

impl Index {
    /// An empty index.
    pub fn new(config: LinkConfig) -> Index {
        let model = config.model.clone().unwrap_or_else(Model::initial);
        Index::with_model(model, config)
    }

    pub(crate) fn with_model(mut model: Model, config: LinkConfig) -> Index {
        if let Some(t) = config.thresholds {
            model.thresholds = t;
        }
        Index {
            weights: Weights::new(&model),
            model,
            config,
            norm: Normalizer::new(),
            tf: TermFrequencies::default(),
            feats: Vec::new(),
            keys: KeyArena::default(),
            key_index: new_map(),
            key_collisions: new_map(),
            rec_person: Vec::new(),
            persons: Vec::new(),
            free_persons: Vec::new(),
            person_index: new_map(),
            postings: Postings::new(),
            refs: new_map(),
            rec_refs: new_map(),
            kept_apart: std::collections::HashSet::with_hasher(Hasher::default()),
            live: 0,
        }
    }

    /// The model in use.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Sizes.
    pub fn stats(&self) -> IndexStats {
        let feats = self.feats.capacity() * std::mem::size_of::<Features>()
            + self.feats.iter().map(|f| f.insurance.len().saturating_sub(1) * 12).sum::<usize>();
        let keys = self.keys.heap_bytes();
        let persons = self.persons.capacity() * std::mem::size_of::<PersonSlot>()
            + self.persons.iter().map(|p| p.members.capacity() * 4 + 16).sum::<usize>();
        let heap = feats
            + keys
            + persons
            + self.key_index.capacity() * 13
            + self.rec_person.capacity() * 4
            + self.person_index.capacity() * 21
            + self.postings.heap_bytes()
            + self.tf.heap_bytes()
            + self.norm.names.heap_bytes()
            + self.norm.places.heap_bytes()
            + self.norm.insurance.heap_bytes();
        IndexStats {
            records: self.live,
            persons: self.person_index.len(),
            block_keys: self.postings.heads.len(),
            heap_bytes: heap,
        }
    }

    fn key_of(&self, rec: u32) -> Option<SourceKey> {
        self.keys.get(rec).map(|(f, l)| SourceKey::new(f, l))
    }

    fn record_of(&self, key: &SourceKey) -> Option<u32> {
        if let Some(&r) = self.key_collisions.get(key) {
            return Some(r);
        }
        let &r = self.key_index.get(&hash64(key))?;
        let (f, l) = self.keys.get(r)?;
        (f == key.facility && l == key.local_id && self.rec_person.get(r as usize).is_some_and(|p| *p != NIL))
            .then_some(r)
    }

    /// The person of a source record.
    pub fn person_of(&self, key: &SourceKey) -> Option<PersonId> {
        let r = self.record_of(key)?;
        let slot = *self.rec_person.get(r as usize)?;
        self.persons.get(slot as usize).map(|p| p.id)
    }

    /// The source records of a person, sorted.
    pub fn records_of(&self, person: PersonId) -> Option<Vec<SourceKey>> {
        let slot = *self.person_index.get(&person)?;
        let mut v: Vec<SourceKey> =
            self.persons.get(slot as usize)?.members.iter().filter_map(|&r| self.key_of(r)).collect();
        v.sort();
        Some(v)
    }

    /// Every (source key, person) pair, sorted by key (`musubi mpi links`).
    pub fn links(&self) -> Vec<(SourceKey, PersonId)> {
        let mut v: Vec<(SourceKey, PersonId)> = self
            .rec_person
            .iter()
            .enumerate()
            .filter(|(_, p)| **p != NIL)
            .filter_map(|(r, &p)| Some((self.key_of(r as u32)?, self.persons.get(p as usize)?.id)))
            .collect();
        v.sort();
        v
    }

    /// The comparison of two indexed records: match weight and levels (for a reviewer).
    pub fn explain(&self, a: &SourceKey, b: &SourceKey) -> Option<(f64, Vec<(Field, String)>)> {
        let fa = self.feats.get(self.record_of(a)? as usize)?;
        let fb = self.feats.get(self.record_of(b)? as usize)?;
        let g = compare(fa, fb, &self.norm.names);
        Some((self.weights.weight(&g, fa, fb, &self.tf), levels_of(&g)))
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Adds (or, if its key is already indexed, replaces) a record and decides its person.
    ///
    /// A replaced record is taken out first and decided afresh; if it was linked to others
    /// and still qualifies for the same person, it stays there.
    pub fn add(&mut self, rec: &SourceRecord) -> Decision {
        let previous = self.record_of(&rec.key).and_then(|r| {
            let slot = *self.rec_person.get(r as usize)?;
            let p = self.persons.get(slot as usize)?;
            (p.members.len() > 1).then_some(p.id)
        });
        let _ = self.remove(&rec.key);
        let f = self.norm.features(rec);
        let mut candidates = self.candidates(&f, &rec.key, &rec.cross_refs);
        // A record that was linked keeps its person if that person is still a candidate
        // that is not held for a hard reason. The evidence guards do not undo a link made
        // before (an operator's merge of a pair they held, or a person who has since moved).
        if let Some(prev) = previous
            && let Some(c) = candidates.iter_mut().find(|c| c.person == prev)
            && matches!(
                c.hold,
                None | Some(Hold::Uncertain | Hold::Ambiguous | Hold::IdentifierOnly | Hold::StrongConflict)
            )
            && (c.deterministic.is_some() || c.weight >= self.weights.thresholds.review)
        {
            c.hold = None;
            let evidence = c.clone();
            self.insert_record(rec, f, Some(prev));
            return Decision::Linked {
                person: prev,
                reason: evidence.deterministic.unwrap_or(LinkReason::Probabilistic),
                evidence: Box::new(evidence),
            };
        }
        let decision = decide(candidates);
        match decision {
            Decided::Link(c) => {
                let person = c.person;
                self.insert_record(rec, f, Some(person));
                Decision::Linked {
                    person,
                    reason: c.deterministic.unwrap_or(LinkReason::Probabilistic),
                    evidence: Box::new(c),
                }
            }
            Decided::Review(cands) => {
                let person = self.insert_record(rec, f, None);
                Decision::Review { person, candidates: cands }
            }
            Decided::New => {
                let person = self.insert_record(rec, f, None);
                Decision::NewPerson { person }
            }
        }
    }

    /// Candidates for a record without adding it (PDQm `$match`): persons whose best record
    /// weighs at least the review threshold, or with deterministic evidence, best first.
    pub fn evaluate(&self, rec: &SourceRecord) -> Vec<Candidate> {
        let f = self.norm.features_readonly(rec);
        let mut c = self.candidates(&f, &rec.key, &rec.cross_refs);
        c.retain(|c| c.deterministic.is_some() || c.weight >= self.weights.thresholds.review);
        c
    }

    /// Scores `f` against the records of its blocks and groups by person.
    fn candidates(&self, f: &Features, key: &SourceKey, cross_refs: &[SourceKey]) -> Vec<Candidate> {
        let mut keys = Vec::with_capacity(8);
        block_keys(f, &mut keys);
        let mut recs: Vec<u32> = Vec::with_capacity(64);
        for k in &keys {
            self.postings.for_each(*k, self.config.max_block, |r| recs.push(r));
        }
        recs.sort_unstable();
        recs.dedup();
        // Deterministic: cross-references both ways.
        let mut xref_recs: Vec<u32> = cross_refs.iter().filter_map(|k| self.record_of(k)).collect();
        if let Some(v) = self.refs.get(&hash64(key)) {
            xref_recs.extend(v.iter().copied());
        }
        let mut persons: Vec<u32> = recs
            .iter()
            .chain(&xref_recs)
            .filter_map(|r| self.rec_person.get(*r as usize).copied())
            .filter(|p| *p != NIL)
            .collect();
        persons.sort_unstable();
        persons.dedup();
        let mut out = Vec::with_capacity(persons.len());
        for slot in persons {
            let Some(p) = self.persons.get(slot as usize) else { continue };
            let mut best: Option<(f64, u32, Gamma)> = None;
            let mut hold: Option<Hold> = None;
            let mut det: Option<LinkReason> = None;
            // Whether a record sharing an identifier also agrees as a person (given name and
            // birth date), and whether every record of the person conflicts in strong fields.
            let mut corroborated = false;
            let mut all_conflict = true;
            for &m in &p.members {
                let Some(mf) = self.feats.get(m as usize) else { continue };
                let g = compare(f, mf, &self.norm.names);
                let w = self.weights.weight(&g, f, mf, &self.tf);
                if best.is_none_or(|(bw, _, _)| w > bw) {
                    best = Some((w, m, g));
                }
                let shared = if xref_recs.contains(&m) {
                    det = Some(LinkReason::CrossReference);
                    true
                } else if same_insurance(&g) {
                    det = det.or(Some(LinkReason::Insurance));
                    true
                } else {
                    false
                };
                if shared && person_consistent(&g) {
                    corroborated = true;
                }
                if !strong_conflict(&g) {
                    all_conflict = false;
                }
                if given_conflict(&g) {
                    hold = Some(Hold::GivenNameConflict);
                }
                if self.config.same_facility_guard
                    && let Some((fac, lid)) = self.keys.get(m)
                    && fac == key.facility
                    && lid != key.local_id
                    && hold != Some(Hold::GivenNameConflict)
                {
                    // A duplicate registration if the two agree as a person; otherwise a
                    // household member registered at the same facility.
                    hold = Some(if person_consistent(&g) { Hold::SameFacility } else { Hold::GivenNameConflict });
                }
            }
            let Some((w, m, g)) = best else { continue };
            let Some(record) = self.key_of(m) else { continue };
            let guards = self.config.evidence_guards;
            if guards && hold.is_none() && det.is_some() && !corroborated {
                // Anyone can copy another facility's patient number or a card number: an
                // identifier the demographics do not back is a question for an operator.
                hold = Some(Hold::IdentifierOnly);
            }
            if guards && hold.is_none() && all_conflict && !(det.is_some() && corroborated) {
                hold = Some(Hold::StrongConflict);
            }
            if hold.is_none() && det.is_none() && w < self.weights.thresholds.link {
                hold = Some(Hold::Uncertain);
            }
            out.push(Candidate {
                person: p.id,
                record,
                weight: w,
                probability: probability(w),
                levels: levels_of(&g),
                deterministic: det,
                hold,
            });
        }
        // Operator decisions.
        for c in out.iter_mut() {
            if self.kept_apart_with(key, c.person) {
                c.hold = Some(Hold::KeptApart);
            }
        }
        out.sort_by(|a, b| {
            b.deterministic.is_some().cmp(&a.deterministic.is_some()).then(b.weight.total_cmp(&a.weight))
        });
        out.retain(|c| c.deterministic.is_some() || c.weight >= self.weights.thresholds.review);
        out
    }

    fn kept_apart_with(&self, key: &SourceKey, person: PersonId) -> bool {
        if self.kept_apart.is_empty() {
            return false;
        }
        let h = hash64(key);
        let Some(&slot) = self.person_index.get(&person) else { return false };
        self.persons.get(slot as usize).is_some_and(|p| {
            p.members.iter().filter_map(|m| self.key_of(*m)).any(|k| self.kept_apart.contains(&ordered(h, hash64(&k))))
        })
    }

    /// Stores a record in `person` (or a new person) and returns the person.
    pub(crate) fn insert_record(&mut self, rec: &SourceRecord, f: Features, person: Option<PersonId>) -> PersonId {
        let r = self.feats.len() as u32;
        let mut keys = Vec::with_capacity(8);
        block_keys(&f, &mut keys);
        for k in &keys {
            self.postings.insert(*k, r);
        }
        self.tf.add(&f, 1);
        self.feats.push(f);
        self.keys.push(&rec.key);
        let h = hash64(&rec.key);
        if let Some(&other) = self.key_index.get(&h)
            && self.rec_person.get(other as usize).is_some_and(|p| *p != NIL)
            && self.keys.get(other).is_some_and(|(f, l)| f != rec.key.facility || l != rec.key.local_id)
        {
            self.key_collisions.insert(rec.key.clone(), r);
        } else {
            self.key_index.insert(h, r);
        }
        if !rec.cross_refs.is_empty() {
            let v: Vec<(u64, SourceKey)> = rec.cross_refs.iter().map(|k| (hash64(k), k.clone())).collect();
            for (hk, _) in &v {
                self.refs.entry(*hk).or_default().push(r);
            }
            self.rec_refs.insert(r, v);
        }
        self.live += 1;
        let slot = match person.and_then(|p| self.person_index.get(&p).copied()) {
            Some(s) => {
                if let Some(p) = self.persons.get_mut(s as usize) {
                    p.members.push(r);
                }
                s
            }
            None => self.new_person(PersonId::for_key(&rec.key), vec![r]),
        };
        self.rec_person.push(slot);
        self.persons.get(slot as usize).map(|p| p.id).unwrap_or_else(|| PersonId::for_key(&rec.key))
    }

    fn new_person(&mut self, mut id: PersonId, members: Vec<u32>) -> u32 {
        // An id already in use (the founding key came back after its person moved on):
        // derive a fresh one deterministically.
        let mut salt = 0u32;
        while self.person_index.contains_key(&id) {
            salt += 1;
            id = PersonId(Uuid::new_v5(&PERSON_NAMESPACE, format!("{id}#{salt}").as_bytes()));
        }
        let slot = match self.free_persons.pop() {
            Some(s) => {
                if let Some(p) = self.persons.get_mut(s as usize) {
                    *p = PersonSlot { id, members };
                }
                s
            }
            None => {
                self.persons.push(PersonSlot { id, members });
                (self.persons.len() - 1) as u32
            }
        };
        self.person_index.insert(id, slot);
        slot
    }

    /// Removes a record (the Patient was deleted). Its person keeps its id while it has other
    /// records and disappears otherwise.
    pub fn remove(&mut self, key: &SourceKey) -> Result<(), IndexError> {
        let r = self.record_of(key).ok_or_else(|| IndexError::UnknownRecord(key.clone()))?;
        let Some(f) = self.feats.get(r as usize).cloned() else { return Err(IndexError::UnknownRecord(key.clone())) };
        let mut keys = Vec::with_capacity(8);
        block_keys(&f, &mut keys);
        for k in &keys {
            self.postings.remove(*k, r);
        }
        self.tf.add(&f, -1);
        if let Some(v) = self.rec_refs.remove(&r) {
            for (hk, _) in v {
                if let Some(list) = self.refs.get_mut(&hk) {
                    list.retain(|x| *x != r);
                    if list.is_empty() {
                        self.refs.remove(&hk);
                    }
                }
            }
        }
        self.key_collisions.remove(key);
        if self.key_index.get(&hash64(key)) == Some(&r) {
            self.key_index.remove(&hash64(key));
        }
        let slot = self.rec_person.get(r as usize).copied().unwrap_or(NIL);
        if let Some(x) = self.rec_person.get_mut(r as usize) {
            *x = NIL;
        }
        // Free the features' heap part; the slot itself stays (record ids are never reused).
        if let Some(x) = self.feats.get_mut(r as usize) {
            x.insurance = Default::default();
        }
        self.live -= 1;
        self.detach(slot, r);
        Ok(())
    }

    fn detach(&mut self, slot: u32, r: u32) {
        let Some(p) = self.persons.get_mut(slot as usize) else { return };
        p.members.retain(|m| *m != r);
        if p.members.is_empty() {
            let id = p.id;
            self.person_index.remove(&id);
            self.free_persons.push(slot);
        }
    }

    /// Merges two persons (an operator's decision). See [`PersonId`] for which id survives.
    pub fn merge(&mut self, a: PersonId, b: PersonId) -> Result<MergeOutcome, IndexError> {
        let sa = *self.person_index.get(&a).ok_or(IndexError::UnknownPerson(a))?;
        let sb = *self.person_index.get(&b).ok_or(IndexError::UnknownPerson(b))?;
        if sa == sb {
            return Ok(MergeOutcome { survivor: a, retired: a });
        }
        let (la, lb) = (self.members_len(sa), self.members_len(sb));
        let (keep, drop) = if la > lb || (la == lb && a < b) { (sa, sb) } else { (sb, sa) };
        let moved = self.persons.get_mut(drop as usize).map(|p| std::mem::take(&mut p.members)).unwrap_or_default();
        for &m in &moved {
            if let Some(x) = self.rec_person.get_mut(m as usize) {
                *x = keep;
            }
            // An operator merge overrides earlier keep-apart decisions between the two.
        }
        if !self.kept_apart.is_empty() {
            let keep_members = self.persons.get(keep as usize).map(|p| p.members.clone()).unwrap_or_default();
            for &x in &keep_members {
                for &y in &moved {
                    if let (Some(kx), Some(ky)) = (self.key_of(x), self.key_of(y)) {
                        self.kept_apart.remove(&ordered(hash64(&kx), hash64(&ky)));
                    }
                }
            }
        }
        if let Some(p) = self.persons.get_mut(keep as usize) {
            p.members.extend(moved);
        }
        let survivor = self.persons.get(keep as usize).map(|p| p.id).unwrap_or(a);
        let retired = self.persons.get(drop as usize).map(|p| p.id).unwrap_or(b);
        self.person_index.remove(&retired);
        self.free_persons.push(drop);
        Ok(MergeOutcome { survivor, retired })
    }

    /// Takes a record out of its person into a new one (unmerge), and remembers that it is not
    /// the same person as the records it leaves ([`Index::keep_apart`]), so a later automatic
    /// decision does not undo the operator's. Returns the new person.
    pub fn split(&mut self, key: &SourceKey) -> Result<PersonId, IndexError> {
        let r = self.record_of(key).ok_or_else(|| IndexError::UnknownRecord(key.clone()))?;
        let slot = self.rec_person.get(r as usize).copied().unwrap_or(NIL);
        let others: Vec<u32> = self
            .persons
            .get(slot as usize)
            .map(|p| p.members.iter().copied().filter(|m| *m != r).collect())
            .unwrap_or_default();
        if others.is_empty() {
            return self.persons.get(slot as usize).map(|p| p.id).ok_or_else(|| IndexError::UnknownRecord(key.clone()));
        }
        self.detach(slot, r);
        let new_slot = self.new_person(PersonId::for_key(key), vec![r]);
        if let Some(x) = self.rec_person.get_mut(r as usize) {
            *x = new_slot;
        }
        let h = hash64(key);
        for o in others {
            if let Some(k) = self.key_of(o) {
                self.kept_apart.insert(ordered(h, hash64(&k)));
            }
        }
        self.persons.get(new_slot as usize).map(|p| p.id).ok_or_else(|| IndexError::UnknownRecord(key.clone()))
    }

    /// Records that two source records are different persons: automatic linking will never put
    /// them together (a merge by an operator still can).
    pub fn keep_apart(&mut self, a: &SourceKey, b: &SourceKey) -> Result<(), IndexError> {
        self.record_of(a).ok_or_else(|| IndexError::UnknownRecord(a.clone()))?;
        self.record_of(b).ok_or_else(|| IndexError::UnknownRecord(b.clone()))?;
        self.kept_apart.insert(ordered(hash64(a), hash64(b)));
        Ok(())
    }

    fn members_len(&self, slot: u32) -> usize {
        self.persons.get(slot as usize).map(|p| p.members.len()).unwrap_or(0)
    }

    /// Loads records with a precomputed clustering (batch mode): `cluster[i]` is the cluster
    /// of `feats[i]`; a cluster gets the id in `ids` if given, else the id of its smallest key.
    pub(crate) fn load_clusters(
        &mut self,
        records: Vec<(SourceKey, Vec<SourceKey>)>,
        feats: Vec<Features>,
        cluster: &[u32],
        ids: Option<&Map<u32, PersonId>>,
    ) {
        let n = feats.len();
        // Smallest key per cluster.
        let mut anchor: Map<u32, usize> = new_map();
        for (i, c) in cluster.iter().enumerate().take(n) {
            let e = anchor.entry(*c).or_insert(i);
            if records.get(i).map(|r| &r.0) < records.get(*e).map(|r| &r.0) {
                *e = i;
            }
        }
        let mut slot_of: Map<u32, u32> = new_map();
        let mut order: Vec<(u32, usize)> = anchor.iter().map(|(c, i)| (*c, *i)).collect();
        order.sort_unstable_by_key(|x| x.1);
        for (c, i) in order {
            if let Some((k, _)) = records.get(i) {
                let id = ids.and_then(|m| m.get(&c)).copied().unwrap_or_else(|| PersonId::for_key(k));
                let slot = self.new_person(id, Vec::new());
                slot_of.insert(c, slot);
            }
        }
        let mut keys = Vec::with_capacity(8);
        for (i, (f, (key, xrefs))) in feats.into_iter().zip(records).enumerate() {
            let r = self.feats.len() as u32;
            block_keys(&f, &mut keys);
            for k in &keys {
                self.postings.insert(*k, r);
            }
            self.tf.add(&f, 1);
            self.feats.push(f);
            let h = hash64(&key);
            if let std::collections::hash_map::Entry::Vacant(e) = self.key_index.entry(h) {
                e.insert(r);
            } else {
                self.key_collisions.insert(key.clone(), r);
            }
            if !xrefs.is_empty() {
                let v: Vec<(u64, SourceKey)> = xrefs.into_iter().map(|k| (hash64(&k), k)).collect();
                for (hk, _) in &v {
                    self.refs.entry(*hk).or_default().push(r);
                }
                self.rec_refs.insert(r, v);
            }
            self.keys.push(&key);
            let slot = cluster.get(i).and_then(|c| slot_of.get(c)).copied().unwrap_or(NIL);
            if let Some(p) = self.persons.get_mut(slot as usize) {
                p.members.push(r);
            }
            self.rec_person.push(slot);
            self.live += 1;
        }
        for p in self.persons.iter_mut() {
            p.members.shrink_to_fit();
        }
    }
}

fn ordered(a: u64, b: u64) -> (u64, u64) {
    if a < b { (a, b) } else { (b, a) }
}

pub(crate) fn levels_of(g: &Gamma) -> Vec<(Field, String)> {
    (0..FIELDS)
        .map(|i| {
            let f = Field::ALL[i];
            (f, f.levels().get(g[i] as usize).copied().unwrap_or("?").to_owned())
        })
        .collect()
}

enum Decided {
    Link(Candidate),
    Review(Vec<Candidate>),
    New,
}

/// The decision over scored candidates (best first).
fn decide(mut cands: Vec<Candidate>) -> Decided {
    // A person-level conflict (twins, siblings) is a confident "different person": it needs no
    // review unless deterministic evidence says otherwise.
    cands.retain(|c| c.deterministic.is_some() || c.hold != Some(Hold::GivenNameConflict));
    if cands.is_empty() {
        return Decided::New;
    }
    let hard = |h: Option<Hold>| {
        matches!(
            h,
            Some(
                Hold::GivenNameConflict
                    | Hold::SameFacility
                    | Hold::KeptApart
                    | Hold::IdentifierOnly
                    | Hold::StrongConflict
            )
        )
    };
    let det: Vec<usize> =
        (0..cands.len()).filter(|&i| cands[i].deterministic.is_some() && !hard(cands[i].hold)).collect();
    let prob: Vec<usize> = (0..cands.len()).filter(|&i| cands[i].hold.is_none()).collect();
    let chosen = if !det.is_empty() {
        if det.len() == 1 { Some(det[0]) } else { None }
    } else if prob.len() == 1 {
        Some(prob[0])
    } else {
        None
    };
    match chosen {
        Some(i) => {
            let mut c = cands.swap_remove(i);
            c.hold = None;
            Decided::Link(c)
        }
        None => {
            let several = det.len() > 1 || (det.is_empty() && prob.len() > 1);
            if several {
                for i in det.iter().chain(&prob) {
                    if let Some(c) = cands.get_mut(*i) {
                        c.hold = Some(Hold::Ambiguous);
                    }
                }
            }
            Decided::Review(cands)
        }
    }
}

/// Builds an index from a whole set of records at once (batch linking).
///
/// Push records (streaming: only their compact features are kept), then [`IndexBuilder::finish`].
#[derive(Debug)]
pub struct IndexBuilder {
    pub(crate) config: LinkConfig,
    pub(crate) norm: Normalizer,
    pub(crate) feats: Vec<Features>,
    pub(crate) records: Vec<(SourceKey, Vec<SourceKey>)>,
}

impl IndexBuilder {
    /// A builder.
    pub fn new(config: LinkConfig) -> Self {
        IndexBuilder { config, norm: Normalizer::new(), feats: Vec::new(), records: Vec::new() }
    }

    /// Adds a record (a later record with the same key replaces nothing: keys must be unique;
    /// duplicates are linked as separate records).
    pub fn push(&mut self, rec: &SourceRecord) {
        self.feats.push(self.norm.features(rec));
        self.records.push((rec.key.clone(), rec.cross_refs.clone()));
    }

    /// Adds many records, normalizing them on all cores (the interning stays sequential so
    /// symbol ids do not depend on the number of threads).
    pub fn push_all(&mut self, recs: &[SourceRecord]) {
        let threads = if self.config.threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            self.config.threads
        };
        let chunk = recs.len().div_ceil(threads.max(1)).max(1);
        let values: Vec<Vec<crate::features::NormalizedValues>> = std::thread::scope(|s| {
            let hs: Vec<_> = recs
                .chunks(chunk)
                .map(|part| s.spawn(move || part.iter().map(crate::features::NormalizedValues::of).collect::<Vec<_>>()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        self.feats.reserve(recs.len());
        self.records.reserve(recs.len());
        for (v, r) in values.iter().flatten().zip(recs) {
            self.feats.push(self.norm.intern(v));
            self.records.push((r.key.clone(), r.cross_refs.clone()));
        }
    }

    /// Restores an index from stored decisions instead of linking afresh (a server starting
    /// up): every pushed record goes to the person given in `assignments` (records without one
    /// become persons of their own), operator keep-apart pairs are restored, and `model` (the
    /// one saved when the links were made) is used for later decisions.
    pub fn restore(
        self,
        model: Model,
        assignments: &[(SourceKey, PersonId)],
        kept_apart: &[(SourceKey, SourceKey)],
    ) -> Index {
        let IndexBuilder { config, norm, feats, records } = self;
        let given: Map<&SourceKey, PersonId> = assignments.iter().map(|(k, p)| (k, *p)).collect();
        let mut label_of: Map<PersonId, u32> = new_map();
        let mut ids: Map<u32, PersonId> = new_map();
        let mut cluster = Vec::with_capacity(records.len());
        for (i, (k, _)) in records.iter().enumerate() {
            match given.get(k) {
                Some(p) => {
                    let next = (records.len() + label_of.len()) as u32;
                    let l = *label_of.entry(*p).or_insert(next);
                    ids.insert(l, *p);
                    cluster.push(l);
                }
                None => cluster.push(i as u32),
            }
        }
        drop(given);
        let mut index = Index::with_model(model, config);
        index.norm = norm;
        index.load_clusters(records, feats, &cluster, Some(&ids));
        for (a, b) in kept_apart {
            index.kept_apart.insert(ordered(hash64(a), hash64(b)));
        }
        index
    }

    /// Number of records pushed.
    pub fn len(&self) -> usize {
        self.feats.len()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.feats.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{BirthDate, PostalAddress, Sex};

    fn fac(code: &str) -> FacilityCode {
        code.parse().expect("valid facility code")
    }

    /// A person as one facility registered them (Tokyo, a 協会けんぽ card, a mobile phone).
    fn person(facility: &str, local: &str) -> SourceRecord {
        let mut r = SourceRecord::new(SourceKey::new(fac(facility), local));
        r.family_kanji = Some("佐藤".into());
        r.given_kanji = Some("浩".into());
        r.family_kana = Some("サトウ".into());
        r.given_kana = Some("ヒロシ".into());
        r.sex = Sex::Male;
        r.birth_date = BirthDate::new(1960, 7, 7);
        r.addresses = vec![PostalAddress {
            text: Some("東京都千代田区丸の内1-1-1".into()),
            postal_code: Some("100-0005".into()),
            ..Default::default()
        }];
        r.phones = vec!["090-1111-2222".into()];
        r.insurance = vec!["01130012:12:345:00".parse().expect("valid insurance id")];
        r
    }

    /// The namesake: same name, sex and birth date, living in Osaka with another insurer and
    /// another phone.
    fn namesake(facility: &str, local: &str) -> SourceRecord {
        let mut r = person(facility, local);
        r.addresses = vec![PostalAddress {
            text: Some("大阪府大阪市北区梅田2-2-2".into()),
            postal_code: Some("530-0001".into()),
            ..Default::default()
        }];
        r.phones = vec!["06-3333-4444".into()];
        r.insurance = vec!["06270011:77:888:00".parse().expect("valid insurance id")];
        r
    }

    fn levels(pairs: &[(Field, u8)]) -> Gamma {
        let mut g = [1u8; FIELDS];
        for (f, l) in pairs {
            g[f.index()] = *l;
        }
        g
    }

    #[test]
    fn strong_conflict_levels() {
        // Another prefecture and another insurer: a conflict unless a phone is shared.
        assert!(strong_conflict(&levels(&[(Field::Address, 5), (Field::Insurance, 4), (Field::Phone, 2)])));
        assert!(strong_conflict(&levels(&[(Field::Address, 5), (Field::Insurance, 4), (Field::Phone, 0)])));
        assert!(!strong_conflict(&levels(&[(Field::Address, 5), (Field::Insurance, 4), (Field::Phone, 1)])));
        // One strong field alone is ordinary life (a move, a job change, mobile vs landline).
        assert!(!strong_conflict(&levels(&[(Field::Address, 5)])));
        assert!(!strong_conflict(&levels(&[(Field::Insurance, 4)])));
        assert!(!strong_conflict(&levels(&[(Field::Address, 4), (Field::Insurance, 3)])));
        // Birth dates apart beyond a typo, whatever else agrees.
        assert!(strong_conflict(&levels(&[(Field::BirthDate, 4)])));
        assert!(!strong_conflict(&levels(&[(Field::BirthDate, 3)])));
        // Missing values are no conflict.
        assert!(!strong_conflict(&levels(&[(Field::Address, 0), (Field::Insurance, 4), (Field::Phone, 0)])));
    }

    #[test]
    fn a_namesake_elsewhere_is_never_linked() {
        let mut ix = Index::new(LinkConfig::default());
        let a = ix.add(&person("1311234567", "A1"));
        let b = ix.add(&namesake("2710000017", "B1"));
        assert_ne!(a.person(), b.person(), "{b:?}");
        match &b {
            Decision::Review { candidates, .. } => assert_eq!(candidates[0].hold, Some(Hold::StrongConflict)),
            Decision::NewPerson { .. } => {}
            other => panic!("a namesake elsewhere was linked: {other:?}"),
        }
        // The same person, moved to Osaka but keeping the mobile number, still links.
        let mut moved = namesake("2710000017", "B2");
        moved.phones = vec!["090-1111-2222".into()];
        let c = ix.add(&moved);
        assert_eq!(c.person(), a.person(), "{c:?}");
    }

    #[test]
    fn an_operators_merge_of_a_held_pair_survives_a_resend() {
        let mut ix = Index::new(LinkConfig::default());
        let a = ix.add(&person("1311234567", "A1"));
        let n = namesake("2710000017", "B1");
        let b = ix.add(&n);
        assert_ne!(a.person(), b.person());
        let merged = ix.merge(a.person(), b.person()).expect("both persons exist");
        // The facility sends the same Patient again (an update): it stays where the operator put it.
        let again = ix.add(&n);
        assert_eq!(again.person(), merged.survivor, "{again:?}");
    }

    #[test]
    fn an_identifier_without_the_demographics_goes_to_review() {
        let mut ix = Index::new(LinkConfig::default());
        let a = ix.add(&person("1311234567", "A1"));
        // Another facility names A1 as the same patient, with nothing else.
        let mut x = SourceRecord::new(SourceKey::new(fac("2710000017"), "X1"));
        x.cross_refs = vec![SourceKey::new(fac("1311234567"), "A1")];
        let dx = ix.add(&x);
        assert_ne!(dx.person(), a.person(), "{dx:?}");
        assert!(
            matches!(&dx, Decision::Review { candidates, .. } if candidates[0].hold == Some(Hold::IdentifierOnly)),
            "{dx:?}"
        );
        // Another facility copies A1's insurance card onto someone else.
        let mut y = namesake("2710000017", "Y1");
        y.given_kanji = Some("次郎".into());
        y.given_kana = Some("ジロウ".into());
        y.birth_date = BirthDate::new(1990, 1, 2);
        y.insurance = person("1311234567", "A1").insurance;
        let dy = ix.add(&y);
        assert_ne!(dy.person(), a.person(), "{dy:?}");
        assert!(matches!(dy, Decision::Review { .. }), "{dy:?}");
        // With the demographics agreeing, the cross-reference links at once.
        let mut z = person("2710000017", "Z1");
        z.insurance.clear();
        z.phones.clear();
        z.addresses.clear();
        z.cross_refs = vec![SourceKey::new(fac("1311234567"), "A1")];
        let dz = ix.add(&z);
        assert!(matches!(dz, Decision::Linked { reason: LinkReason::CrossReference, .. }), "{dz:?}");
        assert_eq!(dz.person(), a.person());
    }

    #[test]
    fn batch_linking_keeps_namesakes_and_bare_identifiers_apart() {
        let a = person("1311234567", "A1");
        let mut a2 = person("1312345678", "A2");
        a2.phones = vec!["03-5555-6666".into()];
        let n = namesake("2710000017", "N1");
        let mut x = SourceRecord::new(SourceKey::new(fac("1318814790"), "X1"));
        x.cross_refs = vec![a.key.clone()];
        let link = crate::link_all(&[a.clone(), a2.clone(), n.clone(), x.clone()], &LinkConfig::default());
        let of = |k: &SourceKey| link.assignments.iter().find(|(key, _)| key == k).map(|(_, p)| *p);
        assert_eq!(of(&a.key), of(&a2.key), "the same person at two facilities links");
        assert_ne!(of(&a.key), of(&n.key), "the namesake elsewhere does not");
        assert_ne!(of(&a.key), of(&x.key), "a bare cross-reference does not");
        assert!(link.report.review.iter().any(|r| r.hold == Hold::IdentifierOnly), "{:?}", link.report.review);
    }

    proptest::proptest! {
        /// Whatever the names, sex and birth date (equal on both sides), records living in
        /// other prefectures with other insurers and other phones are never linked online.
        #[test]
        fn strong_conflicts_never_link(
            family in "[ァ-ヴ]{1,4}", given in "[ァ-ヴ]{1,4}", kanji in "[一-龥]{1,3}",
            year in 1900u16..2020, month in 1u8..=12, day in 1u8..=28, female in proptest::bool::ANY,
        ) {
            let mut ix = Index::new(LinkConfig::default());
            let mut a = person("1311234567", "A1");
            let mut b = namesake("2710000017", "B1");
            for r in [&mut a, &mut b] {
                r.family_kana = Some(family.clone());
                r.given_kana = Some(given.clone());
                r.family_kanji = Some(kanji.clone());
                r.given_kanji = Some(kanji.chars().rev().collect());
                r.birth_date = BirthDate::new(year, month, day);
                r.sex = if female { Sex::Female } else { Sex::Male };
            }
            let da = ix.add(&a);
            let db = ix.add(&b);
            proptest::prop_assert!(!matches!(db, Decision::Linked { .. }), "{:?}", db);
            proptest::prop_assert_ne!(da.person(), db.person());
        }

        /// A Patient that only carries another facility's local id (whatever else it says that
        /// does not agree as a person) is never linked by that identifier.
        #[test]
        fn bare_cross_references_never_link(given in "[ァ-ヴ]{0,4}", year in 1900u16..2020) {
            let mut ix = Index::new(LinkConfig::default());
            let a = person("1311234567", "A1");
            let da = ix.add(&a);
            let mut x = SourceRecord::new(SourceKey::new(fac("2710000017"), "X1"));
            x.given_kana = Some(given.clone()).filter(|g| !g.is_empty() && g != "ヒロシ");
            x.birth_date = BirthDate::new(year, 1, 1).filter(|b| Some(*b) != a.birth_date);
            x.cross_refs = vec![a.key.clone()];
            let dx = ix.add(&x);
            proptest::prop_assert!(!matches!(dx, Decision::Linked { .. }), "{:?}", dx);
            proptest::prop_assert_ne!(da.person(), dx.person());
        }
    }
}
