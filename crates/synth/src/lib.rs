//! A synthetic Japanese region for Musubi: people, facilities, care histories, and each
//! facility's view of its patients written as the real systems write it.
//!
//! Musubi must never touch real patient data, yet it has to be shown, tested and measured on
//! data that looks and behaves like a regional network. This crate generates that data, in the
//! spirit of Synthea but Japanese:
//!
//! - [`region()`]: prefectures and 二次医療圏 with hospitals, clinics, dental clinics,
//!   pharmacies and checkup centres (valid 医療機関コード), insurers (valid 保険者番号) and users.
//! - [`persons()`]: people with realistic names, ages, households, moves, insurance changes and
//!   care histories (chronic disease, acute episodes, admissions, referrals, dispensing,
//!   checkups, allergies, infections), plus each facility's registration with desk noise.
//! - [`generate()`]: streams every facility's output to disk: JP-CLINS FHIR Bundles (NDJSON),
//!   SS-MIX2 standardized storage trees, UKE receipt files, truth files and a manifest.
//!
//! Everything is deterministic for a seed: the same options give the same bytes, whatever the
//! number of threads.
//!
//! ```
//! use musubi_synth::{SynthOptions, persons, region};
//! let opts = SynthOptions::new(16, 7, std::env::temp_dir().join("synth-doc"));
//! let region = region(opts.seed, opts.persons);
//! let people: Vec<_> = persons(&region, &opts).collect();
//! assert_eq!(people.len(), 16);
//! assert!(region.facilities.iter().all(|f| f.code.has_valid_check_digit()));
//! ```

#![deny(missing_docs)]

pub mod care;
pub mod codes;
mod dates;
pub mod fhir;
mod generate;
pub mod geo;
pub mod names;
pub mod noise;
pub mod person;
pub mod region;
mod rng;
pub mod ssmix2;
pub mod uke;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use care::{CareHistory, Encounter, EncounterKind};
pub use generate::{Manifest, generate};
pub use noise::{NoiseKind, NoiseRates, SourcePatient};
pub use person::{Identity, Sex, Window};
pub use region::{Facility, FacilityType, Insurer, InsurerKind, Region, User, region};

/// Which outputs to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Formats {
    /// JP-CLINS FHIR Bundles (NDJSON per facility).
    pub fhir: bool,
    /// SS-MIX2 standardized storage trees (SS-MIX2 hospitals only).
    pub ssmix2: bool,
    /// UKE receipt files per facility per month.
    pub uke: bool,
    /// Truth files (source patient → person) and the noise list.
    pub truth: bool,
}

impl Default for Formats {
    fn default() -> Self {
        Formats { fhir: true, ssmix2: true, uke: true, truth: true }
    }
}

/// Options of a generation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthOptions {
    /// Number of people.
    pub persons: u64,
    /// Seed: the same seed and options give the same bytes.
    pub seed: u64,
    /// Output directory.
    pub out_dir: PathBuf,
    /// Outputs to write.
    pub formats: Formats,
    /// First year of history (January 1st).
    pub start_year: i32,
    /// Years of history.
    pub years: u32,
    /// Registration noise rates.
    pub noise: NoiseRates,
    /// Worker threads (0 = available parallelism). The output does not depend on it.
    pub threads: usize,
}

impl SynthOptions {
    /// Defaults: three years of history from 2023, every format, default noise.
    pub fn new(persons: u64, seed: u64, out_dir: impl Into<PathBuf>) -> Self {
        SynthOptions {
            persons,
            seed,
            out_dir: out_dir.into(),
            formats: Formats::default(),
            start_year: 2023,
            years: 3,
            noise: NoiseRates::default(),
            threads: 0,
        }
    }

    /// The history window.
    pub fn window(&self) -> Window {
        Window::new(self.start_year, self.years)
    }
}

/// Progress reporting (the CLI passes an indicatif bar).
pub trait Progress: Sync {
    /// `n` more people done.
    fn inc(&self, n: u64);
    /// What is happening now.
    fn set_message(&self, message: &str);
}

/// A progress sink that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn inc(&self, _: u64) {}
    fn set_message(&self, _: &str) {}
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// Writing an output file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The options are unusable.
    #[error("invalid options: {0}")]
    Options(String),
}

/// One person with everything the generator knows: identity, care, and the registrations at
/// each disclosing facility (the source patients).
#[derive(Debug, Clone)]
pub struct PersonHistory {
    /// Who the person is, over time.
    pub identity: Identity,
    /// Their care.
    pub care: CareHistory,
    /// How each disclosing facility registered them, in order of first visit.
    pub registrations: Vec<SourcePatient>,
}

impl PersonHistory {
    /// The registration at a facility.
    pub fn registration(&self, facility: u32) -> Option<&SourcePatient> {
        self.registrations.iter().find(|r| r.facility == facility)
    }
}

/// Generates the people of a block (see [`person::BLOCK`]).
pub(crate) fn block_people(region: &Region, opts: &SynthOptions, block: u64) -> Vec<PersonHistory> {
    let window = opts.window();
    person::block_identities(region, opts.seed, &window, block, opts.persons)
        .into_iter()
        .map(|identity| {
            let care = care::care_history(region, opts.seed, window, &identity);
            let mut registrations: Vec<SourcePatient> = Vec::new();
            for e in &care.encounters {
                let f = region.facility(e.facility);
                if !f.discloses {
                    continue;
                }
                let last = e.end.unwrap_or(e.date);
                match registrations.iter_mut().find(|r| r.facility == e.facility) {
                    Some(r) => r.last_visit = r.last_visit.max(last),
                    None => registrations.push(SourcePatient {
                        facility: e.facility,
                        local_id: String::new(),
                        first_visit: e.date,
                        last_visit: last,
                        family: String::new(),
                        given: String::new(),
                        family_kana: None,
                        given_kana: None,
                        sex: identity.sex,
                        birth: identity.birth,
                        address: identity.addresses[0].clone(),
                        phone: None,
                        insurance: identity.insurance[0].clone(),
                        noise: Vec::new(),
                    }),
                }
            }
            let registrations = registrations
                .into_iter()
                .map(|r| {
                    noise::register(
                        opts.seed,
                        &opts.noise,
                        &identity,
                        region.facility(r.facility),
                        r.first_visit,
                        r.last_visit,
                    )
                })
                .collect();
            PersonHistory { identity, care, registrations }
        })
        .collect()
}

/// All people of a run, in index order, generated lazily block by block (memory stays small).
pub fn persons<'a>(region: &'a Region, opts: &'a SynthOptions) -> impl Iterator<Item = PersonHistory> + 'a {
    let blocks = opts.persons.div_ceil(person::BLOCK);
    (0..blocks).flat_map(move |b| block_people(region, opts, b))
}
