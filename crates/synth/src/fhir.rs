//! JP-CLINS FHIR Bundles.
