//! JP Core / JP-CLINS validation of FHIR resources and submission Bundles.
