//! UKE (レセ電) receipt files: Shift_JIS decoding, record parsing and mapping to FHIR.
