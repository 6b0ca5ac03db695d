//! The emergency summary (救急用サマリ): what an emergency doctor needs first about a person,
//! prioritized, from the records the caller may see.
//!
//! [`Service::emergency_summary`] reads the person's record through the gate
//! ([`Service::person_record`], purpose `emergency-summary`, one audit record; break-glass
//! access is marked there) and hands it to [`build`], a pure function of the `musubi-record`
//! crate (re-exported here with the summary's types). The web viewer renders it as HTML and
//! `musubi_pdf::render_summary` as an A4 PDF.

pub use musubi_record::summary::*;

use crate::{ApiError, Ctx, ErrorKind, Service};

impl Service {
    /// The emergency summary of the person of `patient_id`, from what the caller may see
    /// (normal access or an emergency grant), audited once as `emergency-summary`.
    pub fn emergency_summary(&self, ctx: &Ctx, patient_id: &str) -> Result<EmergencySummary, ApiError> {
        if !musubi_fhir::is_valid_id(patient_id) {
            return Err(ApiError::new(ErrorKind::NotFound, "Patient が見つかりません"));
        }
        let rec = self.person_record(ctx, patient_id, "emergency-summary")?;
        Ok(build(&rec, patient_id, musubi_fhir::datetime::now_ms()))
    }
}
