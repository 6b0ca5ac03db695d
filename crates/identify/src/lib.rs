//! Musubi's master patient index: which source patients (a facility's local patient id) are
//! the same person.
//!
//! Japanese registration data has its own kinds of noise — variant kanji (`髙`/`高`), kana in
//! half-width or hiragana, long vowels written three ways, `ヅ`/`ズ`, married names, moves,
//! insurance changes — so the matcher normalizes each of them ([`normalize`]), compares records
//! field by field at graded levels ([`compare`]), and weighs the levels with a Fellegi–Sunter
//! model whose `m`/`u` probabilities are estimated from the data by EM with term-frequency
//! adjustment for names ([`model`]). Deterministic evidence (the same insurance identity, an
//! explicit cross-reference) links directly when the given name and birth date agree too —
//! an identifier alone is something anyone can copy, so it waits for an operator
//! ([`Hold::IdentifierOnly`]); given-name conflicts (twins), two ids of one facility and strong
//! fields in conflict (another prefecture and another insurer, birth dates apart: namesakes,
//! [`Hold::StrongConflict`]) never link automatically.
//!
//! - [`SourceRecord`]: the input, read from a JP Core Patient with
//!   [`SourceRecord::from_fhir_patient`].
//! - [`Index`]: in memory and incremental; [`Index::add`] gives a [`Decision`] (link, review,
//!   new person) for one record; merge, split and keep-apart are the operator's actions.
//! - [`IndexBuilder`] / [`link_all`]: batch linking of a whole set, training the model on it.
//! - [`eval`]: pairwise precision / recall / F1 against a truth file.
//!
//! No I/O: everything takes values and returns values.
//!
//! ## Using it from the service
//!
//! - **On every Patient write**: `SourceRecord::from_fhir_patient(&json, &facility)`, then
//!   [`Index::add`]; store the [`Decision`] (person, reason, evidence or candidates) with the
//!   write, in the same transaction as its audit record. A `Review` decision is a review-queue
//!   item; the record already belongs to its own provisional person.
//! - **Operator actions**: [`Index::merge`] / [`Index::split`] / [`Index::keep_apart`]; persist
//!   the outcome (surviving and retired person ids, keep-apart pairs) as history.
//! - **Start-up**: push every stored Patient into an [`IndexBuilder`] and
//!   [`IndexBuilder::restore`] with the stored links, keep-apart pairs and the stored [`Model`]
//!   ([`Model::to_json`] / [`Model::from_json`]).
//! - **`musubi mpi rebuild`**: push everything into an [`IndexBuilder`] and
//!   [`IndexBuilder::finish`]: it trains a new model on the data and relinks; the
//!   [`BatchReport`] has the model, the review queue and timings.
//! - **PIXm**: [`Index::person_of`] and [`Index::records_of`]; **PDQm `$match`**:
//!   [`Index::evaluate`] (candidates with weight and probability, nothing stored).
//! - **`musubi mpi links`**: [`Index::links`]; **`musubi mpi evaluate`**: [`eval::parse_truth`] and
//!   [`eval::pairwise`].
//!
//! The index is not thread-safe for writes by itself (`add` takes `&mut self`): keep it behind a
//! lock or feed it from the store's single writer; reads (`person_of`, `evaluate`) take `&self`.
//!
//! ```
//! use musubi_identify::{Decision, Index, LinkConfig, SourceKey, SourceRecord, BirthDate, Sex};
//! let fac = "1311234567".parse().unwrap();
//! let mut a = SourceRecord::new(SourceKey::new(fac, "1"));
//! a.family_kanji = Some("髙橋".into());
//! a.given_kanji = Some("花子".into());
//! a.family_kana = Some("タカハシ".into());
//! a.given_kana = Some("ハナコ".into());
//! a.sex = Sex::Female;
//! a.birth_date = BirthDate::new(1970, 4, 15);
//! a.phones = vec!["090-1234-5678".into()];
//! let mut b = a.clone();
//! b.key = SourceKey::new("2710000017".parse().unwrap(), "99");
//! b.family_kanji = Some("高橋".into());
//! b.family_kana = Some("ﾀｶﾊｼ".into());
//! let mut index = Index::new(LinkConfig::default());
//! let first = index.add(&a);
//! let second = index.add(&b);
//! assert!(matches!(second, Decision::Linked { .. }));
//! assert_eq!(first.person(), second.person());
//! ```

#![deny(missing_docs)]

mod batch;
pub mod compare;
pub mod eval;
mod features;
mod index;
pub mod model;
pub mod normalize;
mod record;

pub use batch::{BatchReport, Linkage, ReviewPair, link_all};
pub use compare::{FIELDS, Field};
pub use index::{
    Candidate, Decision, Hold, Index, IndexBuilder, IndexError, IndexStats, LinkConfig, LinkReason, MergeOutcome,
    PERSON_NAMESPACE, PersonId,
};
pub use model::{Model, ModelError, Thresholds, TrainOptions, probability};
pub use record::{BirthDate, PostalAddress, RecordError, Sex, SourceKey, SourceRecord, Warning};

/// A record's normalized values, as the matcher compares them (for export to other tools,
/// such as the Splink comparison, so that both see the same inputs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NormalizedRecord {
    /// `facility|local_id`.
    pub key: String,
    /// 姓 (kanji, variants folded).
    pub family_kanji: String,
    /// 名 (kanji, variants folded).
    pub given_kanji: String,
    /// セイ (katakana, full width).
    pub family_kana: String,
    /// メイ.
    pub given_kana: String,
    /// セイ, phonetic (long vowels, ヅ/ズ, small kana folded).
    pub family_phon: String,
    /// メイ, phonetic.
    pub given_phon: String,
    /// `YYYYMMDD` or empty.
    pub birth_date: String,
    /// `M`, `F` or empty.
    pub sex: String,
    /// Prefecture code or empty.
    pub prefecture: String,
    /// Prefecture + city.
    pub city: String,
    /// Prefecture + city + 町名.
    pub town: String,
    /// Prefecture + city + 町名 + numbers.
    pub address: String,
    /// Seven digits or empty.
    pub postal_code: String,
    /// First phone, digits.
    pub phone: String,
    /// Second phone, digits.
    pub phone2: String,
    /// First insurance identity, normalized (`match_key`).
    pub insurance: String,
    /// Its household part (保険者番号:記号:番号).
    pub insurance_household: String,
}

impl NormalizedRecord {
    /// Column names, in the order of [`NormalizedRecord::values`].
    pub const COLUMNS: [&'static str; 18] = [
        "key",
        "family_kanji",
        "given_kanji",
        "family_kana",
        "given_kana",
        "family_phon",
        "given_phon",
        "birth_date",
        "sex",
        "prefecture",
        "city",
        "town",
        "address",
        "postal_code",
        "phone",
        "phone2",
        "insurance",
        "insurance_household",
    ];

    /// The values, in the order of [`NormalizedRecord::COLUMNS`].
    pub fn values(&self) -> [&str; 18] {
        [
            &self.key,
            &self.family_kanji,
            &self.given_kanji,
            &self.family_kana,
            &self.given_kana,
            &self.family_phon,
            &self.given_phon,
            &self.birth_date,
            &self.sex,
            &self.prefecture,
            &self.city,
            &self.town,
            &self.address,
            &self.postal_code,
            &self.phone,
            &self.phone2,
            &self.insurance,
            &self.insurance_household,
        ]
    }

    /// The normalized values of a record.
    pub fn of(r: &SourceRecord) -> NormalizedRecord {
        let v = features::NormalizedValues::of(r);
        let phone = |p: u64| {
            if p == 0 {
                String::new()
            } else {
                let len = (p >> 56) as usize;
                format!("{:0len$}", p & ((1u64 << 56) - 1))
            }
        };
        let (ins, hh) = v
            .insurance
            .first()
            .map(|(h, _, b)| (if *b == 255 { format!("{h}:") } else { format!("{h}:{b:02}") }, h.clone()))
            .unwrap_or_default();
        NormalizedRecord {
            key: r.key.to_string(),
            family_kanji: v.family_kanji,
            given_kanji: v.given_kanji,
            family_kana: v.family_kana,
            given_kana: v.given_kana,
            family_phon: v.family_phon,
            given_phon: v.given_phon,
            birth_date: if v.birth == 0 { String::new() } else { v.birth.to_string() },
            sex: match v.sex {
                1 => "M".into(),
                2 => "F".into(),
                _ => String::new(),
            },
            prefecture: if v.pref == 0 { String::new() } else { v.pref.to_string() },
            city: v.city,
            town: v.town,
            address: v.addr,
            postal_code: if v.postal == 0 { String::new() } else { format!("{:07}", v.postal - 1) },
            phone: phone(v.phones[0]),
            phone2: phone(v.phones[1]),
            insurance: ins,
            insurance_household: hh,
        }
    }
}
