//! Projections of a person's record: pure functions from the visible records to what pages, the
//! emergency summary, the PDF, letters and the demo show.
//!
//! The service reads a person's record through the gate ([`PersonRecord`], one audit record) and
//! hands it here; nothing in this crate reads a store, asks the gate or does I/O, so the same
//! record gives the same projection everywhere:
//!
//! - [`identity`]: **the** reader of a FHIR Patient (names by representation, sex, birth date and
//!   age — also for partial dates —, address, phone, local ids, insurance ids) and the rule that
//!   picks a person's identity among their facilities' source Patients;
//! - [`summary`]: the emergency summary (救急用サマリ) and its builder;
//! - [`page`]: the patient page model (the clinician's page, the patient's own record);
//! - [`Derived`]: the per-version slot where readers keep what they derive from a stored version.

#![deny(missing_docs)]

mod derived;
mod entry;
pub mod identity;
pub mod page;
pub mod summary;

pub use derived::Derived;
pub use entry::{PersonRecord, RecordEntry};
pub use identity::PatientIdentity;
