//! Fuzzes what every FHIR submission goes through before it is stored: JSON parsing, JP Core /
//! JP-CLINS validation (resource and submission Bundle), classification and search-index
//! extraction, and the identifier types read from it (facility code, insurance id, Bundle
//! identifier). None of them may panic on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_fhir::ResourceType;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<musubi_domain::FacilityCode>();
        let _ = text.parse::<musubi_domain::InsuranceId>();
        let _ = text.parse::<musubi_domain::BundleIdentifier>();
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let validator = musubi_validate::Validator::shared();
    let _ = validator.validate_resource(&v);
    let _ = validator.validate_bundle(&v);
    if let Some(rtype) = v["resourceType"].as_str().and_then(|t| t.parse::<ResourceType>().ok()) {
        let _ = musubi_fhir::classify::classify(rtype, &v);
        let _ = musubi_fhir::index::extract(rtype, &v);
    }
});
